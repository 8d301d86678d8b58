/* test_nn.c - every op of nn.h against an independent float64 reference forward written here
 * from the formulas, and every backward against central finite differences of that float64
 * reference (loss = sum(out * R) for a random R).  Backwards must ACCUMULATE: the gradients start
 * from random values that are subtracted afterwards.  Odd sizes, batch 1. */
#include "check.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXIN 4
typedef struct {
    int64_t M, C, I, O, B, L, K, V;
    int32_t *tok;
    float p;
    uint64_t seed;
} ctx_t;

typedef void (*ref_fn)(double **in, double *out, const ctx_t *c);
typedef void (*fwd_fn)(float **in, float *out, const ctx_t *c);
typedef void (*bwd_fn)(float **in, const float *dout, float **din, const ctx_t *c);

static double *rand_vec(int64_t n, double scale) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = scale * test_normal();
    return v;
}

/* The whole check for one op: nin inputs of sizes n[], output of size nout. */
static void check_op(const char *name, int nin, const int64_t *n, int64_t nout, ref_fn ref, fwd_fn fwd,
                     bwd_fn bwd, const ctx_t *c, double fwd_tol, double grad_tol) {
    double *x[MAXIN];
    float *xf[MAXIN], *gf[MAXIN], *g0[MAXIN];
    for (int i = 0; i < nin; i++) {
        x[i] = rand_vec(n[i], 1.0);
        if (strcmp(name, "layernorm") == 0 && i == 0) for (int64_t j = 0; j < n[i]; j++) x[i][j] += 0.5;
        xf[i] = malloc((size_t)n[i] * sizeof(float));
        for (int64_t j = 0; j < n[i]; j++) { xf[i][j] = (float)x[i][j]; x[i][j] = xf[i][j]; }
        gf[i] = malloc((size_t)n[i] * sizeof(float));
        g0[i] = malloc((size_t)n[i] * sizeof(float));
        /* a small nonzero start: the backward must accumulate (an overwrite shows as a 1e-3 error),
         * and (g0 + grad) - g0 loses nothing to float32 cancellation when the gradient is small
         * (a crossentropy whose random output weight is near zero gave 3e-4 with unit-size g0) */
        for (int64_t j = 0; j < n[i]; j++) g0[i][j] = gf[i][j] = (float)(1e-3 * test_normal());
    }
    double *out = malloc((size_t)nout * sizeof *out), *R = rand_vec(nout, 1.0);
    float *outf = malloc((size_t)nout * sizeof(float)), *Rf = malloc((size_t)nout * sizeof(float));
    for (int64_t j = 0; j < nout; j++) Rf[j] = (float)R[j], R[j] = Rf[j];
    ref(x, out, c);
    fwd(xf, outf, c);
    CHECK_REL_ERR(rel_err_f32(outf, out, nout), fwd_tol, "%s forward vs float64 reference", name);
    bwd(xf, Rf, gf, c);
    for (int i = 0; i < nin; i++) {
        double *fd = malloc((size_t)n[i] * sizeof *fd);
        float *got = malloc((size_t)n[i] * sizeof(float));
        for (int64_t j = 0; j < n[i]; j++) {
            double save = x[i][j], h = 1e-6 * (fabs(save) > 1 ? fabs(save) : 1), lp = 0, lm = 0;
            x[i][j] = save + h; ref(x, out, c);
            for (int64_t k = 0; k < nout; k++) lp += out[k] * R[k];
            x[i][j] = save - h; ref(x, out, c);
            for (int64_t k = 0; k < nout; k++) lm += out[k] * R[k];
            x[i][j] = save;
            fd[j] = (lp - lm) / (2 * h);
            got[j] = gf[i][j] - g0[i][j];
        }
        CHECK_REL_ERR(rel_err_f32(got, fd, n[i]), grad_tol, "%s backward, input %d vs finite differences", name, i);
        free(fd); free(got);
    }
    for (int i = 0; i < nin; i++) { free(x[i]); free(xf[i]); free(gf[i]); free(g0[i]); }
    free(out); free(R); free(outf); free(Rf);
}

/* ---- linear: in x (M, I), W (O, I), b (O) ------------------------------------------------ */
static void ref_linear(double **in, double *out, const ctx_t *c) {
    for (int64_t m = 0; m < c->M; m++)
        for (int64_t o = 0; o < c->O; o++) {
            double s = in[2][o];
            for (int64_t i = 0; i < c->I; i++) s += in[0][m * c->I + i] * in[1][o * c->I + i];
            out[m * c->O + o] = s;
        }
}
static void fwd_linear(float **in, float *out, const ctx_t *c) { linear_forward(out, in[0], in[1], in[2], c->M, c->I, c->O); }
static void bwd_linear(float **in, const float *d, float **g, const ctx_t *c) {
    linear_backward(g[0], g[1], g[2], d, in[0], in[1], c->M, c->I, c->O);
}

/* ---- layernorm / rmsnorm: x (M, C), w (C), b (C) ------------------------------------------- */
static void ref_layernorm(double **in, double *out, const ctx_t *c) {
    for (int64_t m = 0; m < c->M; m++) {
        double mu = 0, var = 0;
        for (int64_t j = 0; j < c->C; j++) mu += in[0][m * c->C + j];
        mu /= c->C;
        for (int64_t j = 0; j < c->C; j++) var += pow(in[0][m * c->C + j] - mu, 2);
        var /= c->C;
        for (int64_t j = 0; j < c->C; j++)
            out[m * c->C + j] = (in[0][m * c->C + j] - mu) / sqrt(var + 1e-5) * in[1][j] + in[2][j];
    }
}
static void fwd_layernorm(float **in, float *out, const ctx_t *c) {
    float mean[64], rstd[64];
    layernorm_forward(out, mean, rstd, in[0], in[1], in[2], c->M, c->C, 1e-5f);
}
static void bwd_layernorm(float **in, const float *d, float **g, const ctx_t *c) {
    float mean[64], rstd[64], *tmp = malloc((size_t)(c->M * c->C) * sizeof(float));
    layernorm_forward(tmp, mean, rstd, in[0], in[1], in[2], c->M, c->C, 1e-5f);
    layernorm_backward(g[0], g[1], g[2], d, in[0], in[1], mean, rstd, c->M, c->C);
    free(tmp);
}
static void ref_rmsnorm(double **in, double *out, const ctx_t *c) {
    for (int64_t m = 0; m < c->M; m++) {
        double ms = 0;
        for (int64_t j = 0; j < c->C; j++) ms += pow(in[0][m * c->C + j], 2);
        ms /= c->C;
        for (int64_t j = 0; j < c->C; j++) out[m * c->C + j] = in[0][m * c->C + j] / sqrt(ms + 1e-5) * in[1][j];
    }
}
static void fwd_rmsnorm(float **in, float *out, const ctx_t *c) {
    float rstd[64];
    rmsnorm_forward(out, rstd, in[0], in[1], c->M, c->C, 1e-5f);
}
static void bwd_rmsnorm(float **in, const float *d, float **g, const ctx_t *c) {
    float rstd[64], *tmp = malloc((size_t)(c->M * c->C) * sizeof(float));
    rmsnorm_forward(tmp, rstd, in[0], in[1], c->M, c->C, 1e-5f);
    rmsnorm_backward(g[0], g[1], d, in[0], in[1], rstd, c->M, c->C);
    free(tmp);
}

/* ---- elementwise: x (M) ------------------------------------------------------------------ */
static void ref_gelu(double **in, double *out, const ctx_t *c) {
    for (int64_t i = 0; i < c->M * c->C; i++) out[i] = 0.5 * in[0][i] * (1 + erf(in[0][i] / sqrt(2.0)));
}
static void fwd_gelu(float **in, float *out, const ctx_t *c) { gelu_forward(out, in[0], c->M * c->C); }
static void bwd_gelu(float **in, const float *d, float **g, const ctx_t *c) { gelu_backward(g[0], d, in[0], c->M * c->C); }
static void ref_silu(double **in, double *out, const ctx_t *c) {
    for (int64_t i = 0; i < c->M * c->C; i++) out[i] = in[0][i] / (1 + exp(-in[0][i]));
}
static void fwd_silu(float **in, float *out, const ctx_t *c) { silu_forward(out, in[0], c->M * c->C); }
static void bwd_silu(float **in, const float *d, float **g, const ctx_t *c) { silu_backward(g[0], d, in[0], c->M * c->C); }
static void ref_glu(double **in, double *out, const ctx_t *c) {
    for (int64_t m = 0; m < c->M; m++)
        for (int64_t j = 0; j < c->C; j++)
            out[m * c->C + j] = in[0][m * 2 * c->C + j] / (1 + exp(-in[0][m * 2 * c->C + c->C + j]));
}
static void fwd_glu(float **in, float *out, const ctx_t *c) { glu_forward(out, in[0], c->M, c->C); }
static void bwd_glu(float **in, const float *d, float **g, const ctx_t *c) { glu_backward(g[0], d, in[0], c->M, c->C); }

/* ---- embedding: table (V, C), tokens in ctx (repeats included) ---------------------------- */
static void ref_embedding(double **in, double *out, const ctx_t *c) {
    for (int64_t m = 0; m < c->M; m++)
        for (int64_t j = 0; j < c->C; j++) out[m * c->C + j] = in[0][c->tok[m] * c->C + j];
}
static void fwd_embedding(float **in, float *out, const ctx_t *c) { embedding_forward(out, c->tok, in[0], c->M, c->C); }
static void bwd_embedding(float **in, const float *d, float **g, const ctx_t *c) {
    (void)in;
    embedding_backward(g[0], d, c->tok, c->M, c->C);
}

/* ---- conv1d: x (B, L, C), w (C, K), bias (C) ---------------------------------------------- */
static void ref_conv(double **in, double *out, const ctx_t *c) {
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < c->L; t++)
            for (int64_t j = 0; j < c->C; j++) {
                double s = in[2][j];
                for (int64_t k = 0; k < c->K; k++) {
                    int64_t tt = t - (c->K - 1) + k;
                    if (tt >= 0) s += in[1][j * c->K + k] * in[0][(b * c->L + tt) * c->C + j];
                }
                out[(b * c->L + t) * c->C + j] = s;
            }
}
static void fwd_conv(float **in, float *out, const ctx_t *c) {
    conv1d_causal_forward(out, in[0], in[1], in[2], NULL, NULL, c->B, c->L, c->C, c->K);
}
static void bwd_conv(float **in, const float *d, float **g, const ctx_t *c) {
    conv1d_causal_backward(g[0], g[1], g[2], d, in[0], in[1], c->B, c->L, c->C, c->K);
}

/* ---- cross-entropy: logits (M, V), targets in ctx; out = the scalar mean loss ------------- */
static void ref_ce(double **in, double *out, const ctx_t *c) {
    double tot = 0;
    int64_t n = 0;
    for (int64_t m = 0; m < c->M; m++) {
        if (c->tok[m] < 0) continue;
        double s = 0;
        for (int64_t v = 0; v < c->V; v++) s += exp(in[0][m * c->V + v]);
        tot += log(s) - in[0][m * c->V + c->tok[m]];
        n++;
    }
    out[0] = tot / n;
}
static float ce_probs[4096];
static void fwd_ce(float **in, float *out, const ctx_t *c) {
    out[0] = (float)crossentropy_forward(ce_probs, in[0], c->tok, c->M, c->V, NULL, NULL);
}
static void bwd_ce(float **in, const float *d, float **g, const ctx_t *c) {
    crossentropy_forward(ce_probs, in[0], c->tok, c->M, c->V, NULL, NULL);
    crossentropy_backward(g[0], ce_probs, c->tok, c->M, c->V, d[0]);
}

/* ---- dropout: x (M); the mask is a function of (seed, index) ------------------------------ */
static void ref_dropout(double **in, double *out, const ctx_t *c) {
    float *x = malloc((size_t)c->M * sizeof(float)), *y = malloc((size_t)c->M * sizeof(float));
    for (int64_t i = 0; i < c->M; i++) x[i] = 1.0f;
    dropout_forward(y, x, c->M, c->p, c->seed);   /* the mask, scaled */
    for (int64_t i = 0; i < c->M; i++) out[i] = in[0][i] * y[i];
    free(x); free(y);
}
static void fwd_dropout(float **in, float *out, const ctx_t *c) { dropout_forward(out, in[0], c->M, c->p, c->seed); }
static void bwd_dropout(float **in, const float *d, float **g, const ctx_t *c) {
    (void)in;
    dropout_backward(g[0], d, c->M, c->p, c->seed);
}

/* ---- mean pooling: x (B, L, C) -------------------------------------------------------------- */
static void ref_pool(double **in, double *out, const ctx_t *c) {
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t j = 0; j < c->C; j++) {
            double s = 0;
            for (int64_t t = 0; t < c->L; t++) s += in[0][(b * c->L + t) * c->C + j];
            out[b * c->C + j] = s / c->L;
        }
}
static void fwd_pool(float **in, float *out, const ctx_t *c) { meanpool_forward(out, in[0], c->B, c->L, c->C); }
static void bwd_pool(float **in, const float *d, float **g, const ctx_t *c) {
    (void)in;
    meanpool_backward(g[0], d, c->B, c->L, c->C);
}

/* The conv with a state must equal the conv over the concatenated sequence, and the new state
 * must be the last K inputs: run a sequence in one call and in pieces (including L = 1 steps). */
static void test_conv_state(void) {
    int64_t B = 2, L = 11, C = 5, K = 4;
    float *x = malloc(B * L * C * sizeof(float)), *w = malloc(C * K * sizeof(float)), *bias = malloc(C * sizeof(float));
    for (int64_t i = 0; i < B * L * C; i++) x[i] = (float)test_normal();
    for (int64_t i = 0; i < C * K; i++) w[i] = (float)test_normal();
    for (int64_t i = 0; i < C; i++) bias[i] = (float)test_normal();
    float *full = malloc(B * L * C * sizeof(float)), *piece = malloc(B * L * C * sizeof(float));
    conv1d_causal_forward(full, x, w, bias, NULL, NULL, B, L, C, K);
    float *state = calloc(B * C * K, sizeof(float));
    int64_t cuts[] = {0, 2, 3, 4, 9, 11};   /* pieces of 2, 1, 1, 5, 2 steps */
    for (int p = 0; p < 5; p++) {
        int64_t t0 = cuts[p], n = cuts[p + 1] - cuts[p];
        float *xs = malloc(B * n * C * sizeof(float)), *ys = malloc(B * n * C * sizeof(float));
        for (int64_t b = 0; b < B; b++) memcpy(xs + b * n * C, x + (b * L + t0) * C, n * C * sizeof(float));
        conv1d_causal_forward(ys, xs, w, bias, state, state, B, n, C, K);
        for (int64_t b = 0; b < B; b++) memcpy(piece + (b * L + t0) * C, ys + b * n * C, n * C * sizeof(float));
        free(xs); free(ys);
    }
    double *fd = malloc(B * L * C * sizeof(double));
    for (int64_t i = 0; i < B * L * C; i++) fd[i] = full[i];
    CHECK_REL_ERR(rel_err_f32(piece, fd, B * L * C), 1e-6, "conv1d in pieces with state vs one call");
    int ok = 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < K; k++) ok &= state[(b * C + c) * K + k] == x[(b * L + L - K + k) * C + c];
    CHECK(ok, "conv state after the sequence holds its last K inputs");
    free(x); free(w); free(bias); free(full); free(piece); free(state); free(fd);
}

int main(void) {
    test_seed_from_env("test_nn");
    nn_set_threads(2);
    ctx_t c = {0};
    int32_t tok[64];
    for (int rep = 0; rep < 2; rep++) {
        c.M = rep ? 1 : 7; c.I = 5; c.O = 3; c.C = 9;
        check_op("linear", 3, (int64_t[]){c.M * c.I, c.O * c.I, c.O}, c.M * c.O, ref_linear, fwd_linear, bwd_linear, &c, 1e-6, 1e-5);
        check_op("layernorm", 3, (int64_t[]){c.M * c.C, c.C, c.C}, c.M * c.C, ref_layernorm, fwd_layernorm, bwd_layernorm, &c, 1e-6, 1e-4);
        check_op("rmsnorm", 2, (int64_t[]){c.M * c.C, c.C}, c.M * c.C, ref_rmsnorm, fwd_rmsnorm, bwd_rmsnorm, &c, 1e-6, 1e-4);
        check_op("gelu", 1, (int64_t[]){c.M * c.C}, c.M * c.C, ref_gelu, fwd_gelu, bwd_gelu, &c, 1e-6, 1e-5);
        check_op("silu", 1, (int64_t[]){c.M * c.C}, c.M * c.C, ref_silu, fwd_silu, bwd_silu, &c, 1e-6, 1e-5);
        check_op("glu", 1, (int64_t[]){c.M * 2 * c.C}, c.M * c.C, ref_glu, fwd_glu, bwd_glu, &c, 1e-6, 1e-5);
        c.V = 6;
        for (int64_t m = 0; m < c.M; m++) tok[m] = (int32_t)(test_next() % (uint64_t)c.V);
        c.tok = tok;
        check_op("embedding", 1, (int64_t[]){c.V * c.C}, c.M * c.C, ref_embedding, fwd_embedding, bwd_embedding, &c, 1e-7, 1e-6);
        for (int64_t m = 0; m < c.M; m++) tok[m] = m == 2 ? -1 : (int32_t)(test_next() % (uint64_t)c.V);
        check_op("crossentropy", 1, (int64_t[]){c.M * c.V}, 1, ref_ce, fwd_ce, bwd_ce, &c, 1e-6, 1e-5);
        c.B = rep ? 1 : 3; c.L = rep ? 1 : 10; c.C = 5; c.K = 4;
        check_op("conv1d", 3, (int64_t[]){c.B * c.L * c.C, c.C * c.K, c.C}, c.B * c.L * c.C, ref_conv, fwd_conv, bwd_conv, &c, 1e-6, 1e-5);
        check_op("meanpool", 1, (int64_t[]){c.B * c.L * c.C}, c.B * c.C, ref_pool, fwd_pool, bwd_pool, &c, 1e-6, 1e-5);
        c.M = 101; c.p = 0.3f; c.seed = test_next();
        check_op("dropout", 1, (int64_t[]){c.M}, c.M, ref_dropout, fwd_dropout, bwd_dropout, &c, 1e-7, 1e-6);
    }
    /* dropout drops about p of the values */
    {
        int64_t n = 100000, zeros = 0;
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
        for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
        dropout_forward(y, x, n, 0.25f, 42);
        for (int64_t i = 0; i < n; i++) zeros += y[i] == 0;
        CHECK(fabs(zeros / (double)n - 0.25) < 0.01, "dropout rate %g", zeros / (double)n);
        free(x); free(y);
    }
    test_conv_state();
    return check_summary("test_nn");
}
