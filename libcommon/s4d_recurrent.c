/* s4d_recurrent.c - S4D / S4 models with a recurrent state (see s4d_recurrent.h).
 *
 * One layer on rows = batch * L (token-major (batch, L, H) except where noted), as s4d_forward:
 *     xn = LayerNorm(h);  xt = transpose(xn) (batch, H, L)
 *     yt = SSM layer(xt) from the state (chunk, or step when L == 1);  ys = transpose(yt)
 *     g  = GELU(ys);  o = g @ out_proj^T + b (rows, 2H);  h += GLU(o)
 */
#include "s4d_recurrent.h"

#include <complex.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nn.h"
#include "s4_step.h"
#include "ssm_kernel.h"

/* ---- the S4D layer ------------------------------------------------------------------------ */
typedef struct {
    int64_t H, M;
    float *log_dt, *A, *B, *C, *D;   /* copies: A = -exp(A_real_log) + i A_imag (H, M) complex (re, im) */
    float *Abar, *Bbar;              /* (H, M) complex (re, im), f32 for the step */
    double *Ar, *Ai, *Br, *Bi;       /* the same in double, split (H, M) re / im: the chunk's sums */
    float *K;                        /* (H, Klen) the kernel of the last chunk length (kept: the
                                        parameters do not change, chunks mostly share a length) */
    int64_t Klen;
} s4d_layer_ctx;

/* (e^x - 1)/x for complex x, accurate near 0 */
static double complex expm1_over_x(double complex x) {
    if (cabs(x) < 1e-5) return 1 + x / 2 + x * x / 6;
    return (cexp(x) - 1) / x;
}

/* state (batch, H, 2M), u, y (batch, H): x <- Abar x + Bbar u;  y = 2 Re sum_m C_m x_m + D u */
static void s4d_layer_step(void *vctx, int64_t batch, float *state, const float *u, float *y) {
    const s4d_layer_ctx *c = vctx;
    int64_t H = c->H, M = c->M;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < H; h++) {
            const float *a = c->Abar + 2 * h * M, *bb = c->Bbar + 2 * h * M, *cc = c->C + 2 * h * M;
            float *x = state + 2 * (b * H + h) * M;
            float uu = u[b * H + h], acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t m = 0; m < M; m++) {
                float xr = x[2 * m], xi = x[2 * m + 1];
                float nr = a[2 * m] * xr - a[2 * m + 1] * xi + bb[2 * m] * uu;
                float ni = a[2 * m] * xi + a[2 * m + 1] * xr + bb[2 * m + 1] * uu;
                x[2 * m] = nr; x[2 * m + 1] = ni;
                acc += cc[2 * m] * nr - cc[2 * m + 1] * ni;
            }
            y[b * H + h] = 2 * acc + c->D[h] * uu;
        }
}

/* u, y (batch, H, L); state (batch, H, 2M) in and out. */
static void s4d_layer_chunk(void *vctx, int64_t batch, int64_t L, float *state, const float *u, float *y) {
    s4d_layer_ctx *c = vctx;
    int64_t H = c->H, M = c->M;
    if (L != c->Klen) {
        free(c->K);
        c->K = ssm_xmalloc((size_t)(H * L) * sizeof(float));
        s4d_kernel_forward_f32(H, M, L, c->log_dt, c->A, c->B, c->C, c->K);
        c->Klen = L;
    }
    /* zero-state response: the causal convolution with K, plus D u */
    fft_conv_forward_f32(batch, H, L, u, c->K, NULL, c->D, y);
    /* complex arithmetic written out on split re / im arrays (vectorizes over the modes, and
     * avoids the library calls of C's complex multiply) */
#pragma omp parallel
    {
        double *xr = ssm_xmalloc((size_t)(M ? 4 * M : 1) * sizeof(double)), *xi = xr + M, *pr = xr + 2 * M, *pi = xr + 3 * M;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < batch * H; bh++) {
            int64_t h = bh % H;
            const double *ar = c->Ar + h * M, *ai = c->Ai + h * M, *br = c->Br + h * M, *bi = c->Bi + h * M;
            const float *cc = c->C + 2 * h * M;
            float *xs = state + 2 * bh * M;
            const float *ub = u + bh * L;
            float *yb = y + bh * L;
            int nonzero = 0;
            for (int64_t m = 0; m < 2 * M; m++) nonzero |= xs[m] != 0;
            for (int64_t m = 0; m < M; m++) { xr[m] = xs[2 * m]; xi[m] = xs[2 * m + 1]; }
            if (nonzero) {
                /* with the response to the initial state, y_t += 2 Re sum_m C_m Abar_m^(t+1) x0_m
                 * (p = C x0 advanced by Abar), in the same pass as the state sums below */
                for (int64_t m = 0; m < M; m++) {
                    pr[m] = (double)cc[2 * m] * xs[2 * m] - (double)cc[2 * m + 1] * xs[2 * m + 1];
                    pi[m] = (double)cc[2 * m] * xs[2 * m + 1] + (double)cc[2 * m + 1] * xs[2 * m];
                }
                for (int64_t t = 0; t < L; t++) {
                    double acc = 0, ut = ub[t];
#pragma omp simd reduction(+ : acc)
                    for (int64_t m = 0; m < M; m++) {
                        double nr = ar[m] * pr[m] - ai[m] * pi[m], ni = ar[m] * pi[m] + ai[m] * pr[m];
                        pr[m] = nr; pi[m] = ni;
                        acc += nr;
                        double sr = ar[m] * xr[m] - ai[m] * xi[m] + br[m] * ut, si = ar[m] * xi[m] + ai[m] * xr[m] + bi[m] * ut;
                        xr[m] = sr; xi[m] = si;
                    }
                    yb[t] += (float)(2 * acc);
                }
            }
            /* the state after the chunk, sum_t Abar^(L-1-t) Bbar u_t (Horner), when x0 = 0 (else
             * Abar^L x0 + that sum came from the pass above) */
            for (int64_t t = 0; !nonzero && t < L; t++) {
                double ut = ub[t];
#pragma omp simd
                for (int64_t m = 0; m < M; m++) {
                    double nr = ar[m] * xr[m] - ai[m] * xi[m] + br[m] * ut, ni = ar[m] * xi[m] + ai[m] * xr[m] + bi[m] * ut;
                    xr[m] = nr; xi[m] = ni;
                }
            }
            for (int64_t m = 0; m < M; m++) { xs[2 * m] = (float)xr[m]; xs[2 * m + 1] = (float)xi[m]; }
        }
        free(xr);
    }
}

static void s4d_layer_free(void *vctx) {
    s4d_layer_ctx *c = vctx;
    if (!c) return;
    free(c->log_dt); free(c->A); free(c->B); free(c->C); free(c->D);
    free(c->Abar); free(c->Bbar); free(c->Ar); free(c->Ai); free(c->Br); free(c->Bi); free(c->K);
    free(c);
}

static float *copy_floats(const float *src, int64_t n) {
    float *d = ssm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(d, src, (size_t)n * sizeof(float));
    return d;
}

ssm_rec_layer s4d_rec_layer_new(int64_t H, int64_t M, const float *log_dt, const float *A_real_log,
                                const float *A_imag, const float *B, const float *C, const float *D) {
    s4d_layer_ctx *c = ssm_xcalloc(1, sizeof *c);
    c->H = H; c->M = M;
    int64_t n = 2 * H * M;
    c->log_dt = copy_floats(log_dt, H);
    c->B = copy_floats(B, n);
    c->C = copy_floats(C, n);
    c->D = copy_floats(D, H);
    c->A = ssm_xmalloc((size_t)(n ? n : 1) * sizeof(float));
    c->Abar = ssm_xmalloc((size_t)(n ? n : 1) * sizeof(float));
    c->Bbar = ssm_xmalloc((size_t)(n ? n : 1) * sizeof(float));
    double **split[4] = {&c->Ar, &c->Ai, &c->Br, &c->Bi};
    for (int k = 0; k < 4; k++) *split[k] = ssm_xmalloc((size_t)(H * M > 0 ? H * M : 1) * sizeof(double));
    for (int64_t h = 0; h < H; h++) {
        double dt = exp((double)log_dt[h]);
        for (int64_t m = 0; m < M; m++) {
            int64_t j = h * M + m;
            c->A[2 * j] = -expf(A_real_log[j]);      /* as s4d_forward, in float */
            c->A[2 * j + 1] = A_imag[j];
            double complex a = CMPLX((double)c->A[2 * j], (double)c->A[2 * j + 1]);
            double complex ab = cexp(dt * a);
            double complex bb = dt * expm1_over_x(dt * a) * CMPLX((double)B[2 * j], (double)B[2 * j + 1]);
            c->Ar[j] = creal(ab); c->Ai[j] = cimag(ab);
            c->Br[j] = creal(bb); c->Bi[j] = cimag(bb);
            c->Abar[2 * j] = (float)creal(ab); c->Abar[2 * j + 1] = (float)cimag(ab);
            c->Bbar[2 * j] = (float)creal(bb); c->Bbar[2 * j + 1] = (float)cimag(bb);
        }
    }
    return (ssm_rec_layer){.H = H, .S = 2 * M, .ctx = c, .step = s4d_layer_step, .chunk = s4d_layer_chunk,
                           .free_ctx = s4d_layer_free};
}

void ssm_rec_layer_free(ssm_rec_layer *l) {
    if (l->free_ctx) l->free_ctx(l->ctx);
    memset(l, 0, sizeof *l);
}

void ssm_rec_layer_run(const ssm_rec_layer *l, int64_t batch, int64_t L, float *state, const float *u, float *y) {
    if (L == 1) { l->step(l->ctx, batch, state, u, y); return; }
    if (l->chunk) { l->chunk(l->ctx, batch, L, state, u, y); return; }
    int64_t H = l->H;
    float *ut = ssm_xmalloc((size_t)(batch * H) * sizeof(float)), *yt = ssm_xmalloc((size_t)(batch * H) * sizeof(float));
    for (int64_t t = 0; t < L; t++) {
        for (int64_t bh = 0; bh < batch * H; bh++) ut[bh] = u[bh * L + t];
        l->step(l->ctx, batch, state, ut, yt);
        for (int64_t bh = 0; bh < batch * H; bh++) y[bh * L + t] = yt[bh];
    }
    free(ut);
    free(yt);
}

/* ---- the model ------------------------------------------------------------------------------ */
typedef struct { const float *norm_w, *norm_b, *out_w, *out_b; } rec_block;

struct s4d_rec {
    s4d_model *m;
    s4d_config c;
    int64_t H, V;
    const float *emb, *enc_w, *enc_b, *dec_w, *dec_b;
    rec_block *blk;
    ssm_rec_layer *layers;
    int64_t cap_rows;
    float *h, *xn, *mean, *rstd, *xt, *yt, *ys, *g, *o, *glu, *logits;
};

static const float *param(s4d_model *m, const char *name, int required) {
    const ssm_params *ps = s4d_params(m);
    int k = ssm_params_find(ps, name);
    if (k < 0) {
        if (required) ssm_die("s4d: missing parameter '%s'", name);
        return NULL;
    }
    return ssm_params_data(ps, k);
}

/* The recurrent layer i from the parameters present: S4D (A_real_log, A_imag).  Other layer
 * kinds (S4's DPLR: its own parameter names) add a branch here returning their ssm_rec_layer. */
static ssm_rec_layer make_layer(s4d_model *m, int i) {
    const s4d_config *c = s4d_get_config(m);
    char pre[64], name[128];
    snprintf(pre, sizeof pre, "layers.%d.ssm.", i);
#define P(field, req) (snprintf(name, sizeof name, "%s%s", pre, field), param(m, name, req))
    const float *A_re = P("A_real_log", 0), *A_im = P("A_imag", 0);
    if (A_re && A_im)
        return s4d_rec_layer_new(c->d_model, c->d_state / 2, P("log_dt", 1), A_re, A_im, P("B", 1), P("C", 1), P("D", 1));
    const float *L_re = P("Lambda_real_log", 0), *L_im = P("Lambda_imag", 0);
    if (L_re && L_im)   /* S4: its DPLR step (s4_step.h) */
        return s4_rec_layer_new(c->d_model, c->d_state / 2, c->rank, P("log_dt", 1), L_re, L_im, P("P", 1), P("B", 1),
                                P("C", 1), P("D", 1), c->l_kernel);
#undef P
    ssm_die("s4d: layer %d: no recurrent form for its SSM parameters (expected %sA_real_log)", i, pre);
}

s4d_rec *s4d_rec_new(s4d_model *m) {
    s4d_rec *r = ssm_xcalloc(1, sizeof *r);
    r->m = m;
    r->c = *s4d_get_config(m);
    if (r->c.n_classes > 0) ssm_die("s4d: a classification model (n_classes=%d) has no per-token outputs", r->c.n_classes);
    r->H = r->c.d_model;
    r->V = r->c.vocab_size;
    r->emb = param(m, "embedding.weight", 0);
    r->enc_w = param(m, "encoder.weight", 0);
    r->enc_b = param(m, "encoder.bias", 0);
    r->dec_w = param(m, "decoder.weight", 1);
    r->dec_b = param(m, "decoder.bias", 1);
    r->blk = ssm_xcalloc((size_t)r->c.n_layers, sizeof *r->blk);
    r->layers = ssm_xcalloc((size_t)r->c.n_layers, sizeof *r->layers);
    for (int i = 0; i < r->c.n_layers; i++) {
        char name[128];
#define P(field) (snprintf(name, sizeof name, "layers.%d.%s", i, field), param(m, name, 1))
        r->blk[i] = (rec_block){P("norm.weight"), P("norm.bias"), P("out_proj.weight"), P("out_proj.bias")};
#undef P
        r->layers[i] = make_layer(m, i);
    }
    return r;
}

static void free_scratch(s4d_rec *r) {
    float *b[] = {r->h, r->xn, r->mean, r->rstd, r->xt, r->yt, r->ys, r->g, r->o, r->glu, r->logits};
    for (size_t k = 0; k < sizeof b / sizeof *b; k++) free(b[k]);
}

void s4d_rec_free(s4d_rec *r) {
    if (!r) return;
    for (int i = 0; i < r->c.n_layers; i++) ssm_rec_layer_free(&r->layers[i]);
    free(r->layers);
    free(r->blk);
    free_scratch(r);
    free(r);
}

void s4d_rec_set_layer(s4d_rec *r, int i, ssm_rec_layer layer) {
    if (i < 0 || i >= r->c.n_layers) ssm_die("internal: s4d_rec_set_layer: layer %d of %d", i, r->c.n_layers);
    if (layer.H != r->H) ssm_die("internal: s4d_rec_set_layer: layer of %lld channels, model %lld", (long long)layer.H, (long long)r->H);
    ssm_rec_layer_free(&r->layers[i]);
    r->layers[i] = layer;
}

const ssm_rec_layer *s4d_rec_layer(const s4d_rec *r, int i) { return &r->layers[i]; }

s4d_state *s4d_state_new(const s4d_rec *r, int batch) {
    s4d_state *s = ssm_xcalloc(1, sizeof *s);
    s->batch = batch; s->n_layers = r->c.n_layers; s->H = r->H;
    s->S = ssm_xcalloc((size_t)s->n_layers, sizeof *s->S);
    s->x = ssm_xcalloc((size_t)s->n_layers, sizeof *s->x);
    for (int i = 0; i < s->n_layers; i++) {
        s->S[i] = r->layers[i].S;
        s->x[i] = ssm_xcalloc((size_t)(batch * s->H * s->S[i]) + 1, sizeof(float));
    }
    return s;
}

void s4d_state_reset(s4d_state *s) {
    for (int i = 0; i < s->n_layers; i++) memset(s->x[i], 0, (size_t)(s->batch * s->H * s->S[i]) * sizeof(float));
}

void s4d_state_free(s4d_state *s) {
    if (!s) return;
    for (int i = 0; i < s->n_layers; i++) free(s->x[i]);
    free(s->x); free(s->S); free(s);
}

#define FALLOC(n) ((float *)ssm_xcalloc((size_t)(n) + 1, sizeof(float)))

static void ensure_scratch(s4d_rec *r, int64_t rows) {
    if (rows <= r->cap_rows) return;
    free_scratch(r);
    int64_t H = r->H;
    r->cap_rows = rows;
    r->h = FALLOC(rows * H); r->xn = FALLOC(rows * H);
    r->mean = FALLOC(rows); r->rstd = FALLOC(rows); r->xt = FALLOC(rows * H); r->yt = FALLOC(rows * H);
    r->ys = FALLOC(rows * H); r->g = FALLOC(rows * H); r->o = FALLOC(rows * 2 * H); r->glu = FALLOC(rows * H);
    r->logits = FALLOC(rows * r->V);
}

/* (batch, L, H) <-> (batch, H, L) */
static void to_bhl(float *out, const float *in, int64_t B, int64_t L, int64_t H) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t h = 0; h < H; h++) out[(b * H + h) * L + t] = in[(b * L + t) * H + h];
}
static void to_blh(float *out, const float *in, int64_t B, int64_t L, int64_t H) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < L; t++) out[(b * L + t) * H + h] = in[(b * H + h) * L + t];
}

void s4d_rec_forward(s4d_rec *r, const int32_t *tokens, const float *features, int batch, int L, s4d_state *s) {
    const s4d_config *c = &r->c;
    if (s->batch != batch || s->n_layers != c->n_layers) ssm_die("s4d: state for batch %d, called with %d", s->batch, batch);
    if (L < 1) ssm_die("internal: s4d_rec_forward with L = %d", L);
    int64_t rows = (int64_t)batch * L, H = r->H;
    ensure_scratch(r, rows);
    /* a step (a few rows) runs on this thread: the OpenMP regions of the ops would cost more in
     * barriers than they save (on a loaded machine, ten times the step) */
    int threads = omp_get_max_threads(), serial = rows * H < (1 << 16);
    if (serial) omp_set_num_threads(1);
    if (r->emb) {
        for (int64_t i = 0; i < rows; i++)
            if (tokens[i] < 0 || tokens[i] >= c->vocab_size) ssm_die("s4d: token %d out of range [0, %d)", tokens[i], c->vocab_size);
        embedding_forward(r->h, tokens, r->emb, rows, H);
    } else {
        linear_forward(r->h, features, r->enc_w, r->enc_b, rows, c->d_input, H);
    }
    for (int i = 0; i < c->n_layers; i++) {
        const rec_block *b = &r->blk[i];
        layernorm_forward(r->xn, r->mean, r->rstd, r->h, b->norm_w, b->norm_b, rows, H, 1e-5f);
        if (L == 1) {   /* (batch, 1, H) is (batch, H, 1): no transposes */
            ssm_rec_layer_run(&r->layers[i], batch, 1, s->x[i], r->xn, r->ys);
        } else {
            to_bhl(r->xt, r->xn, batch, L, H);
            ssm_rec_layer_run(&r->layers[i], batch, L, s->x[i], r->xt, r->yt);
            to_blh(r->ys, r->yt, batch, L, H);
        }
        gelu_forward(r->g, r->ys, rows * H);
        linear_forward(r->o, r->g, b->out_w, b->out_b, rows, H, 2 * H);
        glu_forward(r->glu, r->o, rows, H);
        for (int64_t j = 0; j < rows * H; j++) r->h[j] += r->glu[j];
    }
    linear_forward(r->logits, r->h, r->dec_w, r->dec_b, rows, H, r->V);
    if (serial) omp_set_num_threads(threads);
}

const float *s4d_rec_logits(const s4d_rec *r) { return r->logits; }
