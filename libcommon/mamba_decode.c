/* mamba_decode.c - the recurrent decode step (see mamba_decode.h for the contract).
 *
 * One layer for B sequences (every buffer (B, width), row b = sequence b), the d_inner channels
 * in chunks q of CHUNK channels [c0, c1); the threads take chunks (and blocks of rows) from a
 * shared counter, so a thread slowed by the machine is not waited for longer than one chunk:
 *     xn        = RMSNorm(h)                                 (private to each thread: tiny)
 *   per chunk:
 *     xr, z     = in_proj[c] . xn,  in_proj[d_inner + c] . xn
 *     xc        = conv_b[c] + sum_k conv_w[c, k] [conv_state[c, 1..K-1] | xr][k];  state shifted
 *     u         = silu(xc)
 *     dbc_q     = x_proj[:, c0:c1] . u[c0:c1]                (nbc = dt_rank + 2 N partial sums;
 *                 x_proj is copied chunk-major at load, so that each chunk's columns are one
 *                 contiguous block: a column slice of the row-major matrix streams at half speed)
 *   barrier;  dbc = sum over chunks in chunk order (each thread its own copy)
 *   per chunk:
 *     dt        = softplus(dt_proj[c] . dbc[:dt_rank] + dt_bias[c])
 *     h[c, n]   = exp(dt A[c, n]) h[c, n] + dt u B[n];   y = sum_n C[n] h[c, n] + D[c] u
 *     y        *= silu(z)
 *   barrier;  out = out_proj . y, by blocks of whole rows (one stream each)
 *   barrier;  h += out (each thread its own copy)
 * Then RMSNorm(h) and the LM head by blocks of rows.  Which thread computes what never changes a
 * sum, so the results do not depend on the thread count.
 */
#include "mamba_decode.h"

#pragma GCC optimize("O3", "no-trapping-math")

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli.h"
#include "fast_math.h"
#include "matvec.h"
#include "tensor.h"

typedef struct {
    const float *norm, *conv_w, *conv_b, *dt_b, *D;
    float *A;                                     /* -exp(A_log), (d_inner, N) */
    const void *in_proj, *x_proj, *dt_w, *out_proj;   /* f32 or bf16 */
} dec_layer;

typedef struct {     /* one thread's private vectors, (max_batch, width) each */
    float *h, *xn, *dbc;
    float *xn_p, *dt_p, *u_p, *y_p;   /* bf16 weights: xn, dbc's dt part, a chunk of u, y prepared */
} dec_private;

struct mamba_decoder {
    mamba_model *m;
    int dm, di, N, R, K, nbc, V, n_layers, bf16, threads, nchunks, max_batch;
    int *next_work;           /* per step: a counter per (layer, phase) and one for the head */
    float eps;
    dec_layer *layer;
    const float *norm_f;
    const void *emb, *head;
    uint16_t *bf16_store;
    float *A_store;
    /* shared: (max_batch, d_inner) each; partial sums (nchunks, max_batch, nbc) */
    float *xr, *z, *u, *y, *delta, *dbc_part, *out;
    float *x_proj_store;      /* f32 weights: the part-major copies of x_proj */
    dec_private *priv;
};

#define FALLOC(n) ((float *)ssm_xcalloc((size_t)(n) + 16, sizeof(float)))

static const float *param(mamba_model *m, const char *fmt, int i) {
    char name[128];
    snprintf(name, sizeof name, fmt, i);
    ssm_params *ps = mamba_params(m);
    int k = ssm_params_find(ps, name);
    if (k < 0) ssm_die("mamba decoder: missing parameter '%s'", name);
    return ssm_params_data(ps, k);
}

#define CHUNK 64          /* channels per chunk */
#define OUT_ROWS 32       /* out_proj rows per block */
#define HEAD_ROWS 512     /* LM head rows per block */

/* x_proj (nbc, di) -> chunk-major (the block of chunk q: (nbc, c1 - c0) at nbc * c0). */
static void x_proj_chunk_major(float *dst, const float *src, int64_t nbc, int64_t di) {
    for (int64_t c0 = 0; c0 < di; c0 += CHUNK) {
        int64_t c1 = c0 + CHUNK < di ? c0 + CHUNK : di, nc = c1 - c0;
        for (int64_t j = 0; j < nbc; j++) memcpy(dst + nbc * c0 + j * nc, src + j * di + c0, (size_t)nc * sizeof(float));
    }
}

/* n floats -> bf16 at *next (round to nearest even), returns the copy. */
static const void *to_bf16(uint16_t **next, const float *src, int64_t n) {
    uint16_t *dst = *next;
    for (int64_t i = 0; i < n; i++) dst[i] = ssm_f32_to_bf16(src[i]);
    *next += n;
    return dst;
}

mamba_decoder *mamba_decoder_new(mamba_model *m, int weight_dtype, int max_batch, int threads) {
    const mamba_config *c = mamba_get_config(m);
    if (c->vocab_size <= 0 || c->n_classes > 0) ssm_die("mamba decoder: needs a language model (vocab_size > 0, no classification head)");
    if (weight_dtype != SSM_F32 && weight_dtype != SSM_BF16) ssm_die("mamba decoder: weights must be f32 or bf16");
    if (max_batch < 1) ssm_die("mamba decoder: max_batch %d", max_batch);
    mamba_decoder *d = ssm_xcalloc(1, sizeof *d);
    d->m = m;
    d->dm = c->d_model; d->di = c->expand * c->d_model; d->N = c->d_state;
    d->R = c->dt_rank ? c->dt_rank : (c->d_model + 15) / 16;
    d->K = c->d_conv; d->nbc = d->R + 2 * d->N; d->V = c->vocab_size; d->n_layers = c->n_layers;
    d->eps = c->norm_eps; d->bf16 = weight_dtype == SSM_BF16; d->max_batch = max_batch;
    d->threads = threads > 0 ? threads : omp_get_max_threads();
    d->nchunks = (d->di + CHUNK - 1) / CHUNK;
    d->next_work = ssm_xcalloc((size_t)(3 * d->n_layers + 1), sizeof(int));
    int64_t dm = d->dm, di = d->di, N = d->N, R = d->R, nbc = d->nbc, V = d->V;
    int64_t per_layer = 2 * di * dm + nbc * di + di * R + dm * di;
    const float *lm_head = NULL;
    {
        ssm_params *ps = mamba_params(m);
        int k = ssm_params_find(ps, "lm_head.weight");
        if (k >= 0) lm_head = ssm_params_data(ps, k);
    }
    const float *emb = param(m, "embedding.weight", 0);
    uint16_t *next = NULL;
    if (d->bf16) {
        int64_t total = per_layer * d->n_layers + V * dm * (lm_head ? 2 : 1);
        /* on 2 MiB boundaries with transparent huge pages asked for, as params.c does */
        size_t bytes = (size_t)total * sizeof(uint16_t), align = (size_t)2 << 20;
        size_t rounded = (bytes + align - 1) / align * align;
        void *p = NULL;
        if (posix_memalign(&p, align, rounded) != 0) ssm_die("mamba decoder: out of memory (%zu bytes of bf16 weights)", rounded);
        madvise(p, rounded, MADV_HUGEPAGE);
        d->bf16_store = p;
        next = d->bf16_store;
    }
    d->A_store = FALLOC((int64_t)d->n_layers * di * N);
    d->x_proj_store = FALLOC((int64_t)d->n_layers * nbc * di);
    d->layer = ssm_xcalloc((size_t)d->n_layers, sizeof *d->layer);
    for (int i = 0; i < d->n_layers; i++) {
        dec_layer *l = &d->layer[i];
        l->norm = param(m, "layers.%d.norm.weight", i);
        l->conv_w = param(m, "layers.%d.mixer.conv1d.weight", i);
        l->conv_b = param(m, "layers.%d.mixer.conv1d.bias", i);
        l->dt_b = param(m, "layers.%d.mixer.dt_proj.bias", i);
        l->D = param(m, "layers.%d.mixer.D", i);
        const float *alog = param(m, "layers.%d.mixer.A_log", i);
        l->A = d->A_store + (int64_t)i * di * N;
        for (int64_t j = 0; j < di * N; j++) l->A[j] = -expf(alog[j]);   /* as mamba_forward */
        const float *in_proj = param(m, "layers.%d.mixer.in_proj.weight", i);
        float *x_proj = d->x_proj_store + (int64_t)i * nbc * di;
        x_proj_chunk_major(x_proj, param(m, "layers.%d.mixer.x_proj.weight", i), nbc, di);
        const float *dt_w = param(m, "layers.%d.mixer.dt_proj.weight", i);
        const float *out_proj = param(m, "layers.%d.mixer.out_proj.weight", i);
        if (d->bf16) {
            l->in_proj = to_bf16(&next, in_proj, 2 * di * dm);
            l->x_proj = to_bf16(&next, x_proj, nbc * di);
            l->dt_w = to_bf16(&next, dt_w, di * R);
            l->out_proj = to_bf16(&next, out_proj, dm * di);
        } else {
            l->in_proj = in_proj; l->x_proj = x_proj; l->dt_w = dt_w; l->out_proj = out_proj;
        }
    }
    d->norm_f = param(m, "norm_f.weight", 0);
    if (d->bf16) {
        d->emb = to_bf16(&next, emb, V * dm);
        d->head = lm_head ? to_bf16(&next, lm_head, V * dm) : d->emb;
    } else {
        d->emb = emb;
        d->head = lm_head ? lm_head : emb;
    }
    int64_t B = max_batch;
    d->xr = FALLOC(B * di); d->z = FALLOC(B * di); d->u = FALLOC(B * di); d->y = FALLOC(B * di);
    d->delta = FALLOC(B * di);
    d->dbc_part = FALLOC((int64_t)d->nchunks * B * nbc);
    d->out = FALLOC(B * dm);
    d->priv = ssm_xcalloc((size_t)d->threads, sizeof *d->priv);
    for (int t = 0; t < d->threads; t++) {
        d->priv[t].h = FALLOC(B * dm); d->priv[t].xn = FALLOC(B * dm); d->priv[t].dbc = FALLOC(B * nbc);
        if (d->bf16) {
            d->priv[t].xn_p = FALLOC(B * ssm_matvec_bf16_padded(dm));
            d->priv[t].dt_p = FALLOC(B * ssm_matvec_bf16_padded(R));
            d->priv[t].u_p = FALLOC(B * ssm_matvec_bf16_padded(CHUNK));
            d->priv[t].y_p = FALLOC(B * ssm_matvec_bf16_padded(di));
        }
    }
    return d;
}

void mamba_decoder_free(mamba_decoder *d) {
    if (!d) return;
    for (int t = 0; t < d->threads; t++) {
        dec_private *p = &d->priv[t];
        free(p->h); free(p->xn); free(p->dbc); free(p->xn_p); free(p->dt_p); free(p->u_p); free(p->y_p);
    }
    free(d->priv);
    free(d->xr); free(d->z); free(d->u); free(d->y); free(d->delta); free(d->dbc_part); free(d->out); free(d->x_proj_store);
    free(d->next_work);
    free(d->layer); free(d->A_store); free(d->bf16_store);
    free(d);
}

void mamba_decoder_bytes(const mamba_decoder *d, int batch, int64_t *weight_bytes, int64_t *state_bytes) {
    int64_t dm = d->dm, di = d->di, N = d->N, R = d->R, nbc = d->nbc, V = d->V, K = d->K;
    int64_t wb = d->bf16 ? 2 : 4;
    int64_t matrices = (2 * di * dm + nbc * di + di * R + dm * di) * d->n_layers + V * dm;
    if (d->head != d->emb) matrices += V * dm;
    int64_t vectors = (dm + di * K + di + di + di + di * N) * d->n_layers + dm;   /* norm conv_w conv_b dt_b D A; norm_f */
    *weight_bytes = matrices * wb + vectors * 4 + (int64_t)batch * dm * wb;   /* + the embedding rows */
    *state_bytes = 2 * (int64_t)batch * d->n_layers * di * (K + N) * 4 + (int64_t)batch * V * 4;
}

/* ---- the step -------------------------------------------------------------------------------- */
/* softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]; log1p(e) = 2 atanh(s),
 * s = e / (2 + e) <= 1/3, by its series to s^13 (error < 1e-7). */
static inline float fast_softplus(float x) {
    float e = fast_expf(-fabsf(x));
    float s = e / (2.0f + e), s2 = s * s;
    float p = 1.0f / 13;
    p = p * s2 + 1.0f / 11; p = p * s2 + 1.0f / 9; p = p * s2 + 1.0f / 7; p = p * s2 + 1.0f / 5;
    p = p * s2 + 1.0f / 3; p = p * s2 + 1.0f;
    return (x > 0 ? x : 0.0f) + 2.0f * s * p;
}
static inline float fast_silu(float x) { return x / (1.0f + fast_expf(-x)); }

/* out = W x: float32 W reads x (ldx); bf16 W reads xp, x prepared by ssm_matvec_bf16_prepare. */
static inline void matvec(const mamba_decoder *d, float *out, int64_t ldo, const void *W, int64_t w_off, int64_t ldw,
                          const float *x, int64_t ldx, const float *xp, int64_t n_out, int64_t n_in, int batch) {
    if (d->bf16) ssm_matvec_bf16_prepared(out, ldo, (const uint16_t *)W + w_off, ldw, xp, n_out, n_in, batch, 0);
    else ssm_matvec_f32(out, ldo, (const float *)W + w_off, ldw, x, ldx, n_out, n_in, batch, 0);
}

static inline void rmsnorm_rows(float *out, const float *x, const float *w, int batch, int64_t C, float eps) {
    for (int b = 0; b < batch; b++) {
        const float *xb = x + b * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xb[c] * xb[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + eps));
        for (int64_t c = 0; c < C; c++) out[b * C + c] = xb[c] * r * w[c];
    }
}

static inline __attribute__((always_inline)) void step_thread(mamba_decoder *d, const int32_t *tokens, int batch,
                                                              mamba_state *s, float *logits, int t, int T) {
    const int64_t dm = d->dm, di = d->di, N = d->N, R = d->R, K = d->K, nbc = d->nbc, V = d->V;
    (void)T;
    const int Q = d->nchunks;
    int *next_work = d->next_work;
    dec_private *pv = &d->priv[t];
    float *h = pv->h, *xn = pv->xn, *dbc = pv->dbc;
    for (int b = 0; b < batch; b++) {
        if (d->bf16) {
            const uint16_t *e = (const uint16_t *)d->emb + (int64_t)tokens[b] * dm;
            for (int64_t j = 0; j < dm; j++) { uint32_t bits = (uint32_t)e[j] << 16; memcpy(&h[b * dm + j], &bits, 4); }
        } else {
            memcpy(h + b * dm, (const float *)d->emb + (int64_t)tokens[b] * dm, (size_t)dm * sizeof(float));
        }
    }
    for (int i = 0; i < d->n_layers; i++) {
        const dec_layer *l = &d->layer[i];
        float *conv_state = s->conv_state[i], *ssm_state = s->ssm_state[i];
        rmsnorm_rows(xn, h, l->norm, batch, dm, d->eps);
        if (d->bf16) ssm_matvec_bf16_prepare(pv->xn_p, xn, dm, dm, batch);
        for (int q; (q = __atomic_fetch_add(&next_work[3 * i], 1, __ATOMIC_RELAXED)) < Q;) {
            int64_t c0 = (int64_t)q * CHUNK, c1 = c0 + CHUNK < di ? c0 + CHUNK : di, nc = c1 - c0;
            matvec(d, d->xr + c0, di, l->in_proj, c0 * dm, dm, xn, dm, pv->xn_p, nc, dm, batch);
            matvec(d, d->z + c0, di, l->in_proj, (di + c0) * dm, dm, xn, dm, pv->xn_p, nc, dm, batch);
            for (int b = 0; b < batch; b++) {
                float *xr = d->xr + b * di, *u = d->u + b * di;
                for (int64_t c = c0; c < c1; c++) {
                    float *st = conv_state + ((int64_t)b * di + c) * K;
                    const float *w = l->conv_w + c * K;
                    float acc = l->conv_b[c];
                    for (int64_t k = 0; k + 1 < K; k++) { acc += w[k] * st[k + 1]; st[k] = st[k + 1]; }
                    acc += w[K - 1] * xr[c];
                    st[K - 1] = xr[c];
                    u[c] = acc;
                }
                for (int64_t c = c0; c < c1; c++) u[c] = fast_silu(u[c]);
            }
            if (d->bf16) ssm_matvec_bf16_prepare(pv->u_p, d->u + c0, di, nc, batch);
            matvec(d, d->dbc_part + (int64_t)q * batch * nbc, nbc, l->x_proj, nbc * c0, nc, d->u + c0, di, pv->u_p, nbc, nc, batch);
        }
#pragma omp barrier
        for (int64_t j = 0; j < batch * nbc; j++) {
            float acc = d->dbc_part[j];
            for (int q = 1; q < Q; q++) acc += d->dbc_part[(int64_t)q * batch * nbc + j];
            dbc[j] = acc;
        }
        if (d->bf16) ssm_matvec_bf16_prepare(pv->dt_p, dbc, nbc, R, batch);
        for (int q; (q = __atomic_fetch_add(&next_work[3 * i + 1], 1, __ATOMIC_RELAXED)) < Q;) {
            int64_t c0 = (int64_t)q * CHUNK, c1 = c0 + CHUNK < di ? c0 + CHUNK : di, nc = c1 - c0;
            matvec(d, d->delta + c0, di, l->dt_w, c0 * R, R, dbc, nbc, pv->dt_p, nc, R, batch);
            for (int b = 0; b < batch; b++) {
                const float *Bv = dbc + b * nbc + R, *Cv = Bv + N;
                float *delta = d->delta + b * di, *u = d->u + b * di, *z = d->z + b * di, *y = d->y + b * di;
                for (int64_t c = c0; c < c1; c++) delta[c] = fast_softplus(delta[c] + l->dt_b[c]);
                for (int64_t c = c0; c < c1; c++) {
                    float dt = delta[c], dtu = dt * u[c];
                    float *hs = ssm_state + ((int64_t)b * di + c) * N;
                    const float *A = l->A + c * N;
                    float prod[64], acc = 0;
                    if (N <= 64) {
                        for (int64_t n = 0; n < N; n++) {
                            float hn = fast_expf(dt * A[n]) * hs[n] + dtu * Bv[n];
                            hs[n] = hn;
                            prod[n] = Cv[n] * hn;
                        }
                        for (int64_t n = 0; n < N; n++) acc += prod[n];
                    } else {
                        for (int64_t n = 0; n < N; n++) {
                            float hn = fast_expf(dt * A[n]) * hs[n] + dtu * Bv[n];
                            hs[n] = hn;
                            acc += Cv[n] * hn;
                        }
                    }
                    y[c] = acc + l->D[c] * u[c];
                }
                for (int64_t c = c0; c < c1; c++) y[c] *= fast_silu(z[c]);
            }
        }
#pragma omp barrier
        if (d->bf16) ssm_matvec_bf16_prepare(pv->y_p, d->y, di, di, batch);
        for (int q; (q = __atomic_fetch_add(&next_work[3 * i + 2], 1, __ATOMIC_RELAXED)) * OUT_ROWS < dm;) {
            int64_t o0 = (int64_t)q * OUT_ROWS, o1 = o0 + OUT_ROWS < dm ? o0 + OUT_ROWS : dm;
            matvec(d, d->out + o0, dm, l->out_proj, o0 * di, di, d->y, di, pv->y_p, o1 - o0, di, batch);
        }
#pragma omp barrier
        for (int64_t j = 0; j < batch * dm; j++) h[j] += d->out[j];
    }
    rmsnorm_rows(xn, h, d->norm_f, batch, dm, d->eps);
    if (d->bf16) ssm_matvec_bf16_prepare(pv->xn_p, xn, dm, dm, batch);
    for (int q; (q = __atomic_fetch_add(&next_work[3 * d->n_layers], 1, __ATOMIC_RELAXED)) * (int64_t)HEAD_ROWS < V;) {
        int64_t r0 = (int64_t)q * HEAD_ROWS, r1 = r0 + HEAD_ROWS < V ? r0 + HEAD_ROWS : V;
        matvec(d, logits + r0, V, d->head, r0 * dm, dm, xn, dm, pv->xn_p, r1 - r0, dm, batch);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,prefer-vector-width=512")))
static void step_thread_avx512(mamba_decoder *d, const int32_t *tokens, int batch, mamba_state *s, float *logits, int t, int T) {
    step_thread(d, tokens, batch, s, logits, t, T);
}
static void step_thread_plain(mamba_decoder *d, const int32_t *tokens, int batch, mamba_state *s, float *logits, int t, int T) {
    step_thread(d, tokens, batch, s, logits, t, T);
}

void mamba_decode_step(mamba_decoder *d, const int32_t *tokens, int batch, mamba_state *s, float *logits) {
    if (batch < 1 || batch > d->max_batch) ssm_die("mamba decoder: batch %d not in [1, %d]", batch, d->max_batch);
    if (s->batch != batch || s->n_layers != d->n_layers || s->d_inner != d->di || s->d_state != d->N || s->d_conv != d->K)
        ssm_die("mamba decoder: the state is for batch %d (%d layers), the step for batch %d", s->batch, s->n_layers, batch);
    for (int b = 0; b < batch; b++)
        if (tokens[b] < 0 || tokens[b] >= d->V) ssm_die("mamba: token %d out of range [0, %d)", tokens[b], d->V);
    int fast = ssm_matvec_fast();
    memset(d->next_work, 0, (size_t)(3 * d->n_layers + 1) * sizeof(int));
#pragma omp parallel num_threads(d->threads) if (d->threads > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        if (fast) step_thread_avx512(d, tokens, batch, s, logits, t, T);
        else step_thread_plain(d, tokens, batch, s, logits, t, T);
    }
}
