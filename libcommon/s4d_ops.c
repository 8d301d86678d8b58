/* s4d_ops.c - the S4D layer's elementwise work fused into few passes (see s4d_ops.h).
 *
 * Why: the plain composition (LayerNorm, transpose, convolution, transpose, GELU, dropout, linear,
 * GLU, residual) makes a pass over memory per operation and a parallel region per pass; here a
 * pass reads an activation once and writes what the backward needs.  The per-tile workers are
 * compiled twice (x86-64-v3: AVX2 + FMA, and the baseline) and picked at load time, so the
 * elementwise math runs 8 floats wide where the CPU allows; the numbers are those of nn.c's
 * formulas (fast_math.h), up to FMA rounding.
 */
#pragma GCC optimize("O3", "no-trapping-math")

#include "s4d_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fast_math.h"
#include "params.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

#define TILE S4D_TILE
#define ROW_CHUNK 128   /* rows per partial sum of the GLU bias gradient (as nn.c's linear_backward) */

static int64_t tiles_of(int64_t L) { return (L + TILE - 1) / TILE; }

/* ---- LayerNorm + transpose --------------------------------------------------------------------- */
/* Rows t0 .. t0+n-1 of sequence b; tile (TILE, H) scratch. */
VECTOR_CLONES
static void layernorm_tile(float *xt, float *mean, float *rstd, const float *h, const float *w, const float *bias,
                           int64_t b, int64_t t0, int64_t n, int64_t L, int64_t H, float eps, float *tile) {
    for (int64_t i = 0; i < n; i++) {
        int64_t row = b * L + t0 + i;
        const float *x = h + row * H;
        double s = 0, ss = 0;
        for (int64_t c = 0; c < H; c++) s += x[c];
        double mu = s / (double)H;
        for (int64_t c = 0; c < H; c++) ss += (x[c] - mu) * (x[c] - mu);
        float r = (float)(1.0 / sqrt(ss / (double)H + eps));
        float *o = tile + i * H;
        if (bias)
            for (int64_t c = 0; c < H; c++) o[c] = (float)((x[c] - mu) * r) * w[c] + bias[c];
        else
            for (int64_t c = 0; c < H; c++) o[c] = (float)((x[c] - mu) * r) * w[c];
        mean[row] = (float)mu;
        rstd[row] = r;
    }
    for (int64_t c = 0; c < H; c++) {
        float *dst = xt + (b * H + c) * L + t0;
        for (int64_t i = 0; i < n; i++) dst[i] = tile[i * H + c];
    }
}

void s4d_layernorm_transpose_forward(float *xt, float *mean, float *rstd, const float *h, const float *w,
                                     const float *b, int64_t B, int64_t L, int64_t H, float eps) {
    int64_t nt = tiles_of(L);
#pragma omp parallel
    {
        float *tile = ssm_xmalloc((size_t)(TILE * H) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t k = 0; k < B * nt; k++) {
            int64_t bb = k / nt, t0 = (k % nt) * TILE;
            layernorm_tile(xt, mean, rstd, h, w, b, bb, t0, L - t0 < TILE ? L - t0 : TILE, L, H, eps, tile);
        }
        free(tile);
    }
}

/* dxhat = dy w;  dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat));  pw, pb: this tile's sums */
VECTOR_CLONES
static void layernorm_backward_tile(float *dh, float *pw, float *pb, const float *dxt, const float *h, const float *w,
                                    const float *mean, const float *rstd, int64_t b, int64_t t0, int64_t n, int64_t L,
                                    int64_t H, float *tile) {
    for (int64_t c = 0; c < H; c++) {
        const float *src = dxt + (b * H + c) * L + t0;
        for (int64_t i = 0; i < n; i++) tile[i * H + c] = src[i];
    }
    for (int64_t c = 0; c < H; c++) pw[c] = pb[c] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = b * L + t0 + i;
        const float *x = h + row * H, *dy = tile + i * H;
        float mu = mean[row], r = rstd[row];
        double s1 = 0, s2 = 0;
        for (int64_t c = 0; c < H; c++) {
            float xhat = (x[c] - mu) * r, dxhat = dy[c] * w[c];
            s1 += dxhat;
            s2 += dxhat * xhat;
        }
        float m1 = (float)(s1 / (double)H), m2 = (float)(s2 / (double)H);
        float *d = dh + row * H;
        for (int64_t c = 0; c < H; c++) {
            float xhat = (x[c] - mu) * r, dxhat = dy[c] * w[c];
            d[c] += r * (dxhat - m1 - xhat * m2);
            pw[c] += dy[c] * xhat;
            pb[c] += dy[c];
        }
    }
}

void s4d_transpose_layernorm_backward(float *dh, float *dw, float *db, const float *dxt, const float *h,
                                      const float *w, const float *mean, const float *rstd, int64_t B,
                                      int64_t L, int64_t H) {
    int64_t nt = tiles_of(L), ntot = B * nt;
    float *pw = ssm_xmalloc((size_t)(ntot * H + 1) * sizeof(float)), *pb = ssm_xmalloc((size_t)(ntot * H + 1) * sizeof(float));
#pragma omp parallel
    {
        float *tile = ssm_xmalloc((size_t)(TILE * H) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t k = 0; k < ntot; k++) {
            int64_t bb = k / nt, t0 = (k % nt) * TILE;
            layernorm_backward_tile(dh, pw + k * H, pb + k * H, dxt, h, w, mean, rstd, bb, t0,
                                    L - t0 < TILE ? L - t0 : TILE, L, H, tile);
        }
        free(tile);
    }
    for (int64_t k = 0; k < ntot; k++)     /* tile order: independent of the threads */
        for (int64_t c = 0; c < H; c++) {
            if (dw) dw[c] += pw[k * H + c];
            if (db) db[c] += pb[k * H + c];
        }
    free(pw);
    free(pb);
}

/* ---- transpose + GELU + dropout ---------------------------------------------------------------- */
VECTOR_CLONES
static void gelu_dropout_tile(float *ys, float *gd, unsigned char *mask, const float *yt, int64_t b, int64_t t0,
                              int64_t n, int64_t L, int64_t H, float p, uint64_t seed) {
    int64_t base = (b * L + t0) * H, cnt = n * H;
    float *y = ys + base, *g = gd + base;
    for (int64_t c = 0; c < H; c++) {
        const float *src = yt + (b * H + c) * L + t0;
        for (int64_t i = 0; i < n; i++) y[i * H + c] = src[i];
    }
    for (int64_t j = 0; j < cnt; j++) g[j] = y[j] * fast_normal_cdf(y[j]);
    if (p > 0) {
        float keep = 1.0f / (1.0f - p);
        unsigned char *mk = mask + base;
        for (int64_t j = 0; j < cnt; j++) {
            int k = ssm_hash_uniform(seed, (uint64_t)(base + j)) >= p;
            mk[j] = (unsigned char)k;
            g[j] = k ? g[j] * keep : 0.0f;
        }
    }
}

void s4d_transpose_gelu_dropout_forward(float *ys, float *gd, unsigned char *mask, const float *yt, int64_t B,
                                        int64_t L, int64_t H, float p, uint64_t seed) {
    if (p > 0 && !mask) ssm_die("internal: s4d dropout needs a mask buffer");
    int64_t nt = tiles_of(L);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < B * nt; k++) {
        int64_t bb = k / nt, t0 = (k % nt) * TILE;
        gelu_dropout_tile(ys, gd, mask, yt, bb, t0, L - t0 < TILE ? L - t0 : TILE, L, H, p, seed);
    }
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
VECTOR_CLONES
static void gelu_dropout_backward_tile(float *dyt, const float *dgd, const float *ys, const unsigned char *mask,
                                       int64_t b, int64_t t0, int64_t n, int64_t L, int64_t H, float p, float *tile) {
    int64_t base = (b * L + t0) * H, cnt = n * H;
    const float *x = ys + base, *d = dgd + base;
    if (p > 0) {
        float keep = 1.0f / (1.0f - p);
        const unsigned char *mk = mask + base;
        for (int64_t j = 0; j < cnt; j++) {
            float cdf = fast_normal_cdf(x[j]), pdf = fast_expf(-0.5f * x[j] * x[j]) * 0.3989422804014327f;
            float dg = mk[j] ? d[j] * keep : 0.0f;
            tile[j] = dg * (cdf + x[j] * pdf);
        }
    } else {
        for (int64_t j = 0; j < cnt; j++) {
            float cdf = fast_normal_cdf(x[j]), pdf = fast_expf(-0.5f * x[j] * x[j]) * 0.3989422804014327f;
            tile[j] = d[j] * (cdf + x[j] * pdf);
        }
    }
    for (int64_t c = 0; c < H; c++) {
        float *dst = dyt + (b * H + c) * L + t0;
        for (int64_t i = 0; i < n; i++) dst[i] = tile[i * H + c];
    }
}

void s4d_gelu_dropout_transpose_backward(float *dyt, const float *dgd, const float *ys, const unsigned char *mask,
                                         int64_t B, int64_t L, int64_t H, float p) {
    int64_t nt = tiles_of(L);
#pragma omp parallel
    {
        float *tile = ssm_xmalloc((size_t)(TILE * H) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t k = 0; k < B * nt; k++) {
            int64_t bb = k / nt, t0 = (k % nt) * TILE;
            gelu_dropout_backward_tile(dyt, dgd, ys, mask, bb, t0, L - t0 < TILE ? L - t0 : TILE, L, H, p, tile);
        }
        free(tile);
    }
}

/* ---- bias + GLU + residual --------------------------------------------------------------------- */
VECTOR_CLONES
static void glu_rows(float *hnext, float *o, const float *bias, const float *h, int64_t r0, int64_t r1, int64_t H) {
    for (int64_t r = r0; r < r1; r++) {
        float *orow = o + r * 2 * H;
        if (bias)
            for (int64_t c = 0; c < 2 * H; c++) orow[c] += bias[c];
        for (int64_t c = 0; c < H; c++) hnext[r * H + c] = h[r * H + c] + orow[c] * fast_sigmoidf(orow[H + c]);
    }
}

void s4d_bias_glu_residual_forward(float *hnext, float *o, const float *bias, const float *h, int64_t M, int64_t H) {
    int64_t nk = (M + ROW_CHUNK - 1) / ROW_CHUNK;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nk; k++)
        glu_rows(hnext, o, bias, h, k * ROW_CHUNK, (k + 1) * ROW_CHUNK < M ? (k + 1) * ROW_CHUNK : M, H);
}

VECTOR_CLONES
static void glu_backward_rows(float *dout, float *pb, const float *dh, const float *o, int64_t r0, int64_t r1,
                              int64_t H) {
    for (int64_t c = 0; c < 2 * H; c++) pb[c] = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *orow = o + r * 2 * H, *d = dh + r * H;
        float *drow = dout + r * 2 * H;
        for (int64_t c = 0; c < H; c++) {
            float a = orow[c], s = fast_sigmoidf(orow[H + c]);
            drow[c] = d[c] * s;
            drow[H + c] = d[c] * a * s * (1.0f - s);
        }
        for (int64_t c = 0; c < 2 * H; c++) pb[c] += drow[c];
    }
}

void s4d_glu_backward(float *dout, float *dbias, const float *dh, const float *o, int64_t M, int64_t H) {
    int64_t nk = (M + ROW_CHUNK - 1) / ROW_CHUNK;
    float *pb = ssm_xmalloc((size_t)(nk * 2 * H + 1) * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nk; k++)
        glu_backward_rows(dout, pb + k * 2 * H, dh, o, k * ROW_CHUNK, (k + 1) * ROW_CHUNK < M ? (k + 1) * ROW_CHUNK : M, H);
    if (dbias)
        for (int64_t k = 0; k < nk; k++)
            for (int64_t c = 0; c < 2 * H; c++) dbias[c] += pb[k * 2 * H + c];
    free(pb);
}

/* ---- linear ------------------------------------------------------------------------------------ */
void s4d_linear_input_grad(float *dinp, const float *dout, const float *W, int64_t M, int64_t In, int64_t Out) {
    if (M == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)In, (int)Out, 1.0f, dout, (int)Out, W, (int)In,
                0.0f, dinp, (int)In);
}
