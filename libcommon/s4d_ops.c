/* s4d_ops.c - the S4D layer's elementwise work fused into few passes (see s4d_ops.h).
 *
 * Why: the plain composition (LayerNorm, transpose, convolution, transpose, GELU, dropout, linear,
 * GLU, residual) makes a pass over memory per operation and a parallel region per pass; here a
 * pass reads an activation once and writes what the backward needs.  The per-tile workers are
 * compiled three times (x86-64-v4: AVX-512, v3: AVX2 + FMA, and the baseline) and picked at load time, so the
 * elementwise math runs 8 floats wide where the CPU allows; the numbers are those of nn.c's
 * formulas (fast_math.h), up to FMA rounding.
 */
#pragma GCC optimize("O3", "no-trapping-math")

#include "s4d_ops.h"

#include <fftw3.h>   /* before cblas.h (which includes complex.h): fftwf_complex stays float[2] */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fast_math.h"
#include "fftw_cache.h"
#include "params.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

#define TILE S4D_TILE
#define ROW_CHUNK 128   /* rows per partial sum of the GLU bias gradient (as nn.c's linear_backward) */

static int64_t tiles_of(int64_t L) { return (L + TILE - 1) / TILE; }

/* Float64 sums over a row in 8 interleaved lanes, combined in a fixed order: the same result on
 * every run and thread count, and vectorizable (a single running sum is a chain of dependent
 * adds, 4 cycles each, which made LayerNorm the slowest pass). */
#define LANES 8
static inline double combine_lanes(const double *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
static inline double sum_f64(const float *x, int64_t n) {
    double a[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int j = 0; j < LANES; j++) a[j] += x[c + j];
    for (int j = 0; c + j < n; j++) a[j] += x[c + j];
    return combine_lanes(a);
}
static inline double sum_sq_dev_f64(const float *x, double mu, int64_t n) {
    double a[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int j = 0; j < LANES; j++) a[j] += (x[c + j] - mu) * (x[c + j] - mu);
    for (int j = 0; c + j < n; j++) a[j] += (x[c + j] - mu) * (x[c + j] - mu);
    return combine_lanes(a);
}
static inline double dot_f64(const float *x, const float *y, int64_t n) {
    double a[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int j = 0; j < LANES; j++) a[j] += (double)x[c + j] * (double)y[c + j];
    for (int j = 0; c + j < n; j++) a[j] += (double)x[c + j] * (double)y[c + j];
    return combine_lanes(a);
}

/* ---- LayerNorm + transpose --------------------------------------------------------------------- */
/* Rows t0 .. t0+n-1 of one sequence: rows row0 + i of h (M, H), columns t0 + i of xtb (H, L),
 * that sequence's block; tile (TILE, H) scratch. */
VECTOR_CLONES
static void layernorm_tile(float *xtb, float *mean, float *rstd, const float *h, const float *w, const float *bias,
                           int64_t row0, int64_t t0, int64_t n, int64_t L, int64_t H, float eps, float *tile) {
    for (int64_t i = 0; i < n; i++) {
        int64_t row = row0 + i;
        const float *x = h + row * H;
        double mu = sum_f64(x, H) / (double)H, ss = sum_sq_dev_f64(x, mu, H);
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
        float *dst = xtb + c * L + t0;
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
            layernorm_tile(xt + bb * H * L, mean, rstd, h, w, b, bb * L + t0, t0, L - t0 < TILE ? L - t0 : TILE, L, H, eps, tile);
        }
        free(tile);
    }
}

/* dxhat = dy w;  dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat));  pw, pb: this tile's sums */
VECTOR_CLONES
static void layernorm_backward_tile(float *dh, float *pw, float *pb, const float *dxtb, const float *h, const float *w,
                                    const float *mean, const float *rstd, int64_t row0, int64_t t0, int64_t n, int64_t L,
                                    int64_t H, float *tile) {
    for (int64_t c = 0; c < H; c++) {
        const float *src = dxtb + c * L + t0;
        for (int64_t i = 0; i < n; i++) tile[i * H + c] = src[i];
    }
    for (int64_t c = 0; c < H; c++) pw[c] = pb[c] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = row0 + i;
        const float *x = h + row * H, *dy = tile + i * H;
        float mu = mean[row], r = rstd[row];
        float *dxhat = tile + TILE * H, *xhat = dxhat + H;   /* 2 H more floats of scratch */
        for (int64_t c = 0; c < H; c++) {
            xhat[c] = (x[c] - mu) * r;
            dxhat[c] = dy[c] * w[c];
        }
        float m1 = (float)(sum_f64(dxhat, H) / (double)H), m2 = (float)(dot_f64(dxhat, xhat, H) / (double)H);
        float *d = dh + row * H;
        for (int64_t c = 0; c < H; c++) {
            d[c] += r * (dxhat[c] - m1 - xhat[c] * m2);
            pw[c] += dy[c] * xhat[c];
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
        float *tile = ssm_xmalloc((size_t)((TILE + 2) * H) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t k = 0; k < ntot; k++) {
            int64_t bb = k / nt, t0 = (k % nt) * TILE;
            layernorm_backward_tile(dh, pw + k * H, pb + k * H, dxt + bb * H * L, h, w, mean, rstd, bb * L + t0, t0,
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

/* ---- transpose + GELU + dropout ----------------------------------------------------------------
 * The dropout decision of nn.h, ssm_hash_uniform(seed, i) >= p, inline so that it vectorizes:
 * the same splitmix64 steps as params.c, and (z >> 11) 2^-53 >= p  <=>  (z >> 11) >= ceil(p 2^53)
 * (both sides exact in float64).  test_s4d_ops checks the masks against ssm_hash_uniform. */
static inline uint64_t splitmix_step(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline int dropout_keep(uint64_t seed, uint64_t i, uint64_t threshold) {
    uint64_t s = seed ^ (i * 0xd1b54a32d192ed03ull);
    splitmix_step(&s);
    return (splitmix_step(&s) >> 11) >= threshold;
}
VECTOR_CLONES
static void gelu_dropout_tile(float *ys, float *gd, unsigned char *mask, const float *ytb, int64_t row0, int64_t t0,
                              int64_t n, int64_t L, int64_t H, float p, uint64_t seed) {
    int64_t base = row0 * H, cnt = n * H;
    float *y = ys + base, *g = gd + base;
    for (int64_t c = 0; c < H; c++) {
        const float *src = ytb + c * L + t0;
        for (int64_t i = 0; i < n; i++) y[i * H + c] = src[i];
    }
    for (int64_t j = 0; j < cnt; j++) g[j] = y[j] * fast_normal_cdf(y[j]);
    if (p > 0) {
        float keep = 1.0f / (1.0f - p);
        uint64_t threshold = (uint64_t)ceil((double)p * 0x1p53);
        unsigned char *mk = mask + base;
        for (int64_t j = 0; j < cnt; j++) {
            int k = dropout_keep(seed, (uint64_t)(base + j), threshold);
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
        gelu_dropout_tile(ys, gd, mask, yt + bb * H * L, bb * L + t0, t0, L - t0 < TILE ? L - t0 : TILE, L, H, p, seed);
    }
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
VECTOR_CLONES
static void gelu_dropout_backward_tile(float *dytb, const float *dgd, const float *ys, const unsigned char *mask,
                                       int64_t row0, int64_t t0, int64_t n, int64_t L, int64_t H, float p, float *tile) {
    int64_t base = row0 * H, cnt = n * H;
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
        float *dst = dytb + c * L + t0;
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
            gelu_dropout_backward_tile(dyt + bb * H * L, dgd, ys, mask, bb * L + t0, t0, L - t0 < TILE ? L - t0 : TILE, L, H, p,
                                       tile);
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

/* ---- the convolution part of a layer, one sequence per thread ----------------------------------
 * The passes above, run back to back on one sequence while its (H, L) blocks are in the core's
 * L2 cache: LayerNorm + transpose -> H FFT convolutions -> transpose + GELU + dropout (and the
 * reverse for the backward).  The arithmetic of the convolution is fft_conv_template.h's (length
 * n = 2L real transforms, the kernel spectrum scaled by 1/n), so the results equal
 * s4d_layernorm_transpose_forward + fft_conv_forward_f32 + s4d_transpose_gelu_dropout_forward
 * (the dK, dD sums over the batch are added in batch order, dD per sequence in float64). */
struct s4d_workspace { float *p; int64_t n; };

s4d_workspace *s4d_workspace_new(void) { return ssm_xcalloc(1, sizeof(s4d_workspace)); }
void s4d_workspace_free(s4d_workspace *ws) {
    if (!ws) return;
    fftwf_free(ws->p);
    free(ws);
}
/* n floats, FFTW-aligned (every sub-buffer below starts at a multiple of 16 floats from it) */
static float *workspace_get(s4d_workspace *ws, int64_t n) {
    if (n > ws->n) {
        fftwf_free(ws->p);
        ws->p = fftwf_malloc((size_t)n * sizeof(float));
        if (!ws->p) ssm_die("s4d: out of memory for a %lld-float workspace", (long long)n);
        ws->n = n;
    }
    return ws->p;
}
static int64_t align16(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct { float *blk, *blk2, *blk3, *buf, *tile; fftwf_complex *F1, *F2; } thread_bufs;
static int64_t thread_floats(int64_t L, int64_t H) {
    return 3 * align16(H * L) + align16(2 * L) + 2 * align16(2 * (L + 1)) + align16((TILE + 2) * H);
}
static thread_bufs thread_slice(float *base, int64_t L, int64_t H) {
    thread_bufs t;
    t.blk = base; base += align16(H * L);
    t.blk2 = base; base += align16(H * L);
    t.blk3 = base; base += align16(H * L);
    t.buf = base; base += align16(2 * L);
    t.F1 = (fftwf_complex *)base; base += align16(2 * (L + 1));
    t.F2 = (fftwf_complex *)base; base += align16(2 * (L + 1));
    t.tile = base;
    return t;
}

/* KF (H, L+1) = rfft(K[h] / n zero-padded to n = 2L), threads over channels.  Rows of KF are
 * kf_stride complex apart: FFTW writes them, so each starts 64-byte aligned as its plan requires. */
static int64_t kf_stride(int64_t L) { return align16(2 * (L + 1)) / 2; }
static void kernel_spectra(fftwf_complex *KF, const float *K, int64_t H, int64_t L, fftwf_plan r2c, float *thr,
                           int64_t tf) {
    int64_t n = 2 * L;
    float s = 1.0f / (float)n;
#pragma omp parallel
    {
        thread_bufs t = thread_slice(thr + omp_get_thread_num() * tf, L, H);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < H; c++) {
            for (int64_t d = 0; d < L; d++) t.buf[d] = K[c * L + d] * s;
            memset(t.buf + L, 0, (size_t)L * sizeof(float));
            fftwf_execute_dft_r2c(r2c, t.buf, KF + c * kf_stride(L));
        }
    }
}

void s4d_conv_forward_fused(s4d_workspace *ws, float *xt, float *mean, float *rstd, float *ys, float *gd,
                            unsigned char *mask, const float *h, const float *w, const float *bias, const float *K,
                            const float *D, int64_t B, int64_t L, int64_t H, float eps, float p, uint64_t seed) {
    if (B <= 0 || L <= 0 || H <= 0) return;
    if (p > 0 && !mask) ssm_die("internal: s4d dropout needs a mask buffer");
    int64_t n = 2 * L, nf = L + 1, nt = tiles_of(L), tf = thread_floats(L, H);
    int T = omp_get_max_threads();
    float *base = workspace_get(ws, 2 * H * kf_stride(L) + T * tf);
    fftwf_complex *KF = (fftwf_complex *)base;
    float *thr = base + 2 * H * kf_stride(L);
    fftwf_plan r2c, c2r;
    fftw_cached_plans_f32(n, &r2c, &c2r);
    kernel_spectra(KF, K, H, L, r2c, thr, tf);
#pragma omp parallel
    {
        thread_bufs t = thread_slice(thr + omp_get_thread_num() * tf, L, H);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            float *xtb = xt ? xt + b * H * L : t.blk2;
            for (int64_t k = 0; k < nt; k++) {
                int64_t t0 = k * TILE;
                layernorm_tile(xtb, mean, rstd, h, w, bias, b * L + t0, t0, L - t0 < TILE ? L - t0 : TILE, L, H, eps, t.tile);
            }
            for (int64_t c = 0; c < H; c++) {   /* y = K * u + D u: (H, L) into blk */
                const float *u = xtb + c * L;
                const fftwf_complex *kf = KF + c * kf_stride(L);
                float *y = t.blk + c * L, d = D ? D[c] : 0.0f;
                memcpy(t.buf, u, (size_t)L * sizeof(float));
                memset(t.buf + L, 0, (size_t)L * sizeof(float));
                fftwf_execute_dft_r2c(r2c, t.buf, t.F1);
                for (int64_t k = 0; k < nf; k++) {
                    float ar = t.F1[k][0], ai = t.F1[k][1], br = kf[k][0], bi = kf[k][1];
                    t.F1[k][0] = ar * br - ai * bi;
                    t.F1[k][1] = ar * bi + ai * br;
                }
                fftwf_execute_dft_c2r(c2r, t.F1, t.buf);
                for (int64_t s = 0; s < L; s++) y[s] = t.buf[s] + d * u[s];
            }
            for (int64_t k = 0; k < nt; k++) {
                int64_t t0 = k * TILE;
                gelu_dropout_tile(ys, gd, mask, t.blk, b * L + t0, t0, L - t0 < TILE ? L - t0 : TILE, L, H, p, seed);
            }
        }
    }
}

void s4d_conv_backward_fused(s4d_workspace *ws, float *dh, float *dnorm_w, float *dnorm_b, float *dK, float *dD,
                             const float *dgd, const float *ys, const unsigned char *mask, const float *xt,
                             const float *h, const float *w, const float *bias, float *mean, float *rstd,
                             const float *K, const float *D, int64_t B, int64_t L, int64_t H, float eps, float p) {
    if (B <= 0 || L <= 0 || H <= 0) return;
    int64_t n = 2 * L, nf = L + 1, nt = tiles_of(L), tf = thread_floats(L, H);
    int T = omp_get_max_threads();
    int64_t o_kf = 0, o_p = o_kf + 2 * H * kf_stride(L), o_dd = o_p + align16(B * H * 2 * nf);
    int64_t o_pw = o_dd + align16(2 * B * H), o_pb = o_pw + align16(B * nt * H), o_thr = o_pb + align16(B * nt * H);
    float *base = workspace_get(ws, o_thr + T * tf);
    fftwf_complex *KF = (fftwf_complex *)(base + o_kf), *P = (fftwf_complex *)(base + o_p);
    double *Dp = (double *)(base + o_dd);
    float *pw = base + o_pw, *pb = base + o_pb, *thr = base + o_thr;
    fftwf_plan r2c, c2r;
    fftw_cached_plans_f32(n, &r2c, &c2r);
    kernel_spectra(KF, K, H, L, r2c, thr, tf);
    float s = 1.0f / (float)n;
#pragma omp parallel
    {
        thread_bufs t = thread_slice(thr + omp_get_thread_num() * tf, L, H);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            const float *xtb = xt ? xt + b * H * L : t.blk3;
            if (!xt)   /* the forward's LayerNorm again (the same arithmetic, so the same xt, mean, rstd) */
                for (int64_t k = 0; k < nt; k++) {
                    int64_t t0 = k * TILE;
                    layernorm_tile(t.blk3, mean, rstd, h, w, bias, b * L + t0, t0, L - t0 < TILE ? L - t0 : TILE, L, H, eps,
                                   t.tile);
                }
            for (int64_t k = 0; k < nt; k++) {   /* dy (H, L) into blk */
                int64_t t0 = k * TILE;
                gelu_dropout_backward_tile(t.blk, dgd, ys, mask, b * L + t0, t0, L - t0 < TILE ? L - t0 : TILE, L, H, p, t.tile);
            }
            for (int64_t c = 0; c < H; c++) {   /* du (H, L) into blk2; the dK spectrum of (b, c) into P */
                const float *u = xtb + c * L, *dy = t.blk + c * L;
                const fftwf_complex *kf = KF + c * kf_stride(L);
                fftwf_complex *pbc = P + (b * H + c) * nf;
                float *du = t.blk2 + c * L, d = D ? D[c] : 0.0f;
                memcpy(t.buf, u, (size_t)L * sizeof(float));
                memset(t.buf + L, 0, (size_t)L * sizeof(float));
                fftwf_execute_dft_r2c(r2c, t.buf, t.F1);
                memcpy(t.buf, dy, (size_t)L * sizeof(float));
                memset(t.buf + L, 0, (size_t)L * sizeof(float));
                fftwf_execute_dft_r2c(r2c, t.buf, t.F2);
                for (int64_t k = 0; k < nf; k++) {
                    float yr = t.F2[k][0], yi = t.F2[k][1], ur = t.F1[k][0], ui = t.F1[k][1], kr = kf[k][0], ki = kf[k][1];
                    pbc[k][0] = (yr * ur + yi * ui) * s;      /* YF conj(UF) / n */
                    pbc[k][1] = (yi * ur - yr * ui) * s;
                    t.F2[k][0] = yr * kr + yi * ki;           /* YF conj(KF) */
                    t.F2[k][1] = yi * kr - yr * ki;
                }
                fftwf_execute_dft_c2r(c2r, t.F2, t.buf);
                for (int64_t j = 0; j < L; j++) du[j] = t.buf[j] + d * dy[j];
                Dp[b * H + c] = dot_f64(dy, u, L);
            }
            for (int64_t k = 0; k < nt; k++) {
                int64_t t0 = k * TILE, kk = b * nt + k;
                layernorm_backward_tile(dh, pw + kk * H, pb + kk * H, t.blk2, h, w, mean, rstd, b * L + t0, t0,
                                        L - t0 < TILE ? L - t0 : TILE, L, H, t.tile);
            }
        }
        /* dK, dD: sums over the batch in batch order, threads over channels */
#pragma omp for schedule(static)
        for (int64_t c = 0; c < H; c++) {
            double dsum = 0;
            for (int64_t k = 0; k < nf; k++) t.F1[k][0] = t.F1[k][1] = 0;
            for (int64_t b = 0; b < B; b++) {
                const fftwf_complex *pbc = P + (b * H + c) * nf;
                for (int64_t k = 0; k < nf; k++) {
                    t.F1[k][0] += pbc[k][0];
                    t.F1[k][1] += pbc[k][1];
                }
                dsum += Dp[b * H + c];
            }
            if (dD) dD[c] = (float)dsum;
            if (dK) {
                fftwf_execute_dft_c2r(c2r, t.F1, t.buf);
                memcpy(dK + c * L, t.buf, (size_t)L * sizeof(float));
            }
        }
    }
    for (int64_t k = 0; k < B * nt; k++)     /* tile order: independent of the threads */
        for (int64_t c = 0; c < H; c++) {
            if (dnorm_w) dnorm_w[c] += pw[k * H + c];
            if (dnorm_b) dnorm_b[c] += pb[k * H + c];
        }
}

/* ---- the out_proj matmuls on the OpenMP threads --------------------------------------------------
 * OpenBLAS's own threads and OpenMP's compete for the same cores (an idle OpenMP thread waits
 * while OpenBLAS runs, and the reverse); on a shared machine each wait can last a scheduler
 * quantum.  Here OpenBLAS runs single-threaded inside each OpenMP thread, on fixed blocks of
 * GEMM_ROWS rows; the weight gradient adds its per-block products in block order, so the result
 * depends on M only, never on the thread count. */
#define GEMM_ROWS 1024
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);

void s4d_linear_forward_rows(float *out, const float *inp, const float *W, int64_t M, int64_t In, int64_t Out) {
    if (M <= 0) return;
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
    int64_t nb = (M + GEMM_ROWS - 1) / GEMM_ROWS;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) {
        int64_t r0 = k * GEMM_ROWS, rows = M - r0 < GEMM_ROWS ? M - r0 : GEMM_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)Out, (int)In, 1.0f, inp + r0 * In, (int)In, W,
                    (int)In, 0.0f, out + r0 * Out, (int)Out);
    }
    openblas_set_num_threads(saved);
}

void s4d_linear_backward_rows(s4d_workspace *ws, float *dinp, float *dW, const float *dout, const float *inp,
                              const float *W, int64_t M, int64_t In, int64_t Out) {
    if (M <= 0) return;
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
    int64_t nb = (M + GEMM_ROWS - 1) / GEMM_ROWS, wsz = align16(Out * In);
    float *part = dW ? workspace_get(ws, nb * wsz) : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++) {
        int64_t r0 = k * GEMM_ROWS, rows = M - r0 < GEMM_ROWS ? M - r0 : GEMM_ROWS;
        if (dinp)   /* dinp rows = dout rows @ W (written) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)In, (int)Out, 1.0f, dout + r0 * Out,
                        (int)Out, W, (int)In, 0.0f, dinp + r0 * In, (int)In);
        if (dW)     /* this block's dout^T @ inp */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Out, (int)In, (int)rows, 1.0f, dout + r0 * Out,
                        (int)Out, inp + r0 * In, (int)In, 0.0f, part + k * wsz, (int)In);
    }
    openblas_set_num_threads(saved);
    if (dW)
        for (int64_t k = 0; k < nb; k++)
            for (int64_t j = 0; j < Out * In; j++) dW[j] += part[k * wsz + j];
}
