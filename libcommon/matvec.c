/* matvec.c - matrix times a few vectors, f32 or bf16 weights (see matvec.h). */
#include "matvec.h"

#pragma GCC optimize("O3")

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void ssm_matvec_ref(float *out, int64_t ldo, const void *W, int bf16, int64_t ldw, const float *x,
                    int64_t ldx, int64_t n_out, int64_t n_in, int batch, int accumulate) {
    for (int b = 0; b < batch; b++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0;
            for (int64_t i = 0; i < n_in; i++) {
                float w;
                if (bf16) {
                    uint32_t bits = (uint32_t)((const uint16_t *)W)[o * ldw + i] << 16;
                    memcpy(&w, &bits, 4);
                } else {
                    w = ((const float *)W)[o * ldw + i];
                }
                s += (double)w * x[b * ldx + i];
            }
            out[b * ldo + o] = accumulate ? out[b * ldo + o] + (float)s : (float)s;
        }
}

/* ---- AVX-512 ----------------------------------------------------------------------------------
 * A block of RB rows times BB vectors keeps RB * BB accumulators of 16 lanes; the loop over i
 * loads RB rows of W and BB vectors of x per 16 columns, the last n_in % 16 columns masked. */
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

AVX512 static inline __attribute__((always_inline)) __m512 load_w_f32(const float *p) { return _mm512_loadu_ps(p); }
AVX512 static inline __attribute__((always_inline)) __m512 load_w_f32_mask(const float *p, __mmask16 k) {
    return _mm512_maskz_loadu_ps(k, p);
}
/* f32: two FMA chains per (row, vector), the first and the second 16 of each 32 columns (one
 * chain is bound by the FMA latency near 8.5 G weights/s on one core). */
AVX512 static inline __attribute__((always_inline)) void block_f32(
    float *out, int64_t ldo, const float *W, int64_t ldw, const float *x, int64_t ldx, int64_t n_in,
    int accumulate, const int RB, const int BB) {
    __m512 acc[2][4][2];
    _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++)
        _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) acc[r][b][0] = acc[r][b][1] = _mm512_setzero_ps();
    for (int64_t i0 = 0; i0 < n_in; i0 += 32) {
        _Pragma("GCC unroll 2") for (int hh = 0; hh < 2; hh++) {
            int64_t i = i0 + 16 * hh;
            if (i >= n_in) break;
            __m512 wv[2], xv[4];
            if (i + 16 <= n_in) {
                _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++) wv[r] = load_w_f32(W + r * ldw + i);
                _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) xv[b] = _mm512_loadu_ps(x + b * ldx + i);
            } else {
                __mmask16 k = (__mmask16)((1u << (n_in - i)) - 1);
                _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++) wv[r] = load_w_f32_mask(W + r * ldw + i, k);
                _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) xv[b] = _mm512_maskz_loadu_ps(k, x + b * ldx + i);
            }
            _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++)
                _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++)
                    acc[r][b][hh] = _mm512_fmadd_ps(wv[r], xv[b], acc[r][b][hh]);
        }
    }
    _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++)
        _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][b][0], acc[r][b][1]));
            float *o = out + b * ldo + r;
            *o = accumulate ? *o + s : s;
        }
}

/* bf16: 32 weights per 512-bit load; the low halves of its 16 dwords (the even weights) become
 * floats by a shift, the high halves (the odd weights) by a mask: no shuffle.  x comes
 * de-interleaved per block of 32 (16 even values, then 16 odd: deinterleave_x), zero-padded to a
 * multiple of 32 (ldx = that padded length); W's last block is loaded masked. */
#define BF16_EVEN(v) _mm512_castsi512_ps(_mm512_slli_epi32((v), 16))
#define BF16_ODD(v) _mm512_castsi512_ps(_mm512_and_si512((v), _mm512_set1_epi32((int)0xffff0000u)))
AVX512 static inline __attribute__((always_inline)) void block_bf16(
    float *out, int64_t ldo, const uint16_t *W, int64_t ldw, const float *x, int64_t ldx, int64_t n_in,
    int accumulate, const int RB, const int BB) {
    /* four chains per (row, vector): the even and the odd weights of the first and of the second
     * 32 of each 64 (fewer chains leave the loop bound by the FMA latency: 8.5 G weights/s on one
     * core, half the memory's rate) */
    __m512 acc[2][2][4];
    _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++)
        _Pragma("GCC unroll 2") for (int b = 0; b < BB; b++)
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[r][b][k] = _mm512_setzero_ps();
    for (int64_t i0 = 0; i0 < n_in; i0 += 64) {
        _Pragma("GCC unroll 2") for (int hh = 0; hh < 2; hh++) {
            int64_t i = i0 + 32 * hh;
            if (i >= n_in) break;
            __m512i wv[2];
            if (i + 32 <= n_in) {
                _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++) wv[r] = _mm512_loadu_si512(W + r * ldw + i);
            } else {
                __mmask32 k = (__mmask32)((1ull << (n_in - i)) - 1);
                _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++) wv[r] = _mm512_maskz_loadu_epi16(k, W + r * ldw + i);
            }
            __m512 xe[2], xo[2];
            _Pragma("GCC unroll 2") for (int b = 0; b < BB; b++) {
                xe[b] = _mm512_loadu_ps(x + b * ldx + i);
                xo[b] = _mm512_loadu_ps(x + b * ldx + i + 16);
            }
            _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++) {
                __m512 we = BF16_EVEN(wv[r]), wo = BF16_ODD(wv[r]);
                _Pragma("GCC unroll 2") for (int b = 0; b < BB; b++) {
                    acc[r][b][2 * hh] = _mm512_fmadd_ps(we, xe[b], acc[r][b][2 * hh]);
                    acc[r][b][2 * hh + 1] = _mm512_fmadd_ps(wo, xo[b], acc[r][b][2 * hh + 1]);
                }
            }
        }
    }
    _Pragma("GCC unroll 2") for (int r = 0; r < RB; r++)
        _Pragma("GCC unroll 2") for (int b = 0; b < BB; b++) {
            __m512 t = _mm512_add_ps(_mm512_add_ps(acc[r][b][0], acc[r][b][1]), _mm512_add_ps(acc[r][b][2], acc[r][b][3]));
            float s = _mm512_reduce_add_ps(t);
            float *o = out + b * ldo + r;
            *o = accumulate ? *o + s : s;
        }
}

AVX512 static void matvec_bf16_avx512(float *out, int64_t ldo, const uint16_t *W, int64_t ldw, const float *x,
                                      int64_t ldx, int64_t n_out, int64_t n_in, int batch, int accumulate) {
    int64_t o = 0;
    if (batch == 1) {
        for (; o < n_out; o++) block_bf16(out + o, ldo, W + o * ldw, ldw, x, ldx, n_in, accumulate, 1, 1);
        return;
    }
    for (; o + 2 <= n_out; o += 2) {
        int b = 0;
        for (; b + 2 <= batch; b += 2) block_bf16(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 2, 2);
        for (; b < batch; b++) block_bf16(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 2, 1);
    }
    for (; o < n_out; o++) {
        int b = 0;
        for (; b + 2 <= batch; b += 2) block_bf16(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 1, 2);
        for (; b < batch; b++) block_bf16(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 1, 1);
    }
}

/* One vector: one row at a time, so that W is read as one sequential stream (several rows at
 * once are several streams 1 row apart, which the prefetchers follow worse: 21.6 against 31.7
 * GB/s on one core of this machine's EPYC, with huge pages).  Several vectors: rows in blocks of
 * 2, vectors in blocks of 4, 2, 1 (f32; bf16 above: 2 and 2, 1); the leftover rows one at a time.  Every
 * (row, vector) sum is the same sequence of operations whatever block it falls in. */
#define DEFINE_MATVEC(NAME, WT, BLOCK, RBM)                                                                   \
    AVX512 static void NAME(float *out, int64_t ldo, const WT *W, int64_t ldw, const float *x,           \
                            int64_t ldx, int64_t n_out, int64_t n_in, int batch, int accumulate) {       \
        if (batch == 1) {                                                                                \
            int64_t o = 0;                                                                               \
            for (; o < n_out; o++) BLOCK(out + o, ldo, W + o * ldw, ldw, x, ldx, n_in, accumulate, 1, 1); \
            return;                                                                                      \
        }                                                                                                \
        int64_t o = 0;                                                                                   \
        for (; o + RBM <= n_out; o += RBM) {                                                             \
            int b = 0;                                                                                   \
            for (; b + 4 <= batch; b += 4)                                                               \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, RBM, 4); \
            for (; b + 2 <= batch; b += 2)                                                               \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, RBM, 2); \
            for (; b < batch; b++)                                                                       \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, RBM, 1); \
        }                                                                                                \
        for (; o < n_out; o++) {                                                                         \
            int b = 0;                                                                                   \
            for (; b + 4 <= batch; b += 4)                                                               \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 1, 4); \
            for (; b < batch; b++)                                                                       \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 1, 1); \
        }                                                                                                \
    }

DEFINE_MATVEC(matvec_f32_avx512, float, block_f32, 2)

int ssm_matvec_fast(void) {
    static int fast = -1;
    if (fast < 0) {
        const char *e = getenv("SSM_MATVEC_PLAIN");
        fast = (!e || strcmp(e, "1") != 0) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
    return fast;
}

/* Without AVX-512: 16 partial sums per (row, vector) over i mod 16 in plain C (one chain; the
 * results agree with the fast kernels' to rounding). */
static void matvec_plain(float *out, int64_t ldo, const void *W, int bf16, int64_t ldw, const float *x, int64_t ldx,
                         int64_t n_out, int64_t n_in, int batch, int accumulate) {
    for (int b = 0; b < batch; b++)
        for (int64_t o = 0; o < n_out; o++) {
            float lane[16] = {0};
            for (int64_t i = 0; i < n_in; i++) {
                float w;
                if (bf16) {
                    uint32_t bits = (uint32_t)((const uint16_t *)W)[o * ldw + i] << 16;
                    memcpy(&w, &bits, 4);
                } else {
                    w = ((const float *)W)[o * ldw + i];
                }
                lane[i & 15] += w * x[b * ldx + i];
            }
            float s = 0;
            for (int j = 0; j < 16; j++) s += lane[j];
            out[b * ldo + o] = accumulate ? out[b * ldo + o] + s : s;
        }
}

void ssm_matvec_f32(float *out, int64_t ldo, const float *W, int64_t ldw, const float *x, int64_t ldx,
                    int64_t n_out, int64_t n_in, int batch, int accumulate) {
    if (ssm_matvec_fast()) matvec_f32_avx512(out, ldo, W, ldw, x, ldx, n_out, n_in, batch, accumulate);
    else matvec_plain(out, ldo, W, 0, ldw, x, ldx, n_out, n_in, batch, accumulate);
}

int64_t ssm_matvec_bf16_padded(int64_t n_in) { return (n_in + 31) / 32 * 32; }

/* x (batch, n_in) at stride ldx -> xs (batch, n32): for the AVX-512 kernel, per block of 32 the
 * 16 even then the 16 odd values; for the plain loop, in order; zeros beyond n_in. */
void ssm_matvec_bf16_prepare(float *xs, const float *x, int64_t ldx, int64_t n_in, int batch) {
    int64_t n32 = ssm_matvec_bf16_padded(n_in);
    int fast = ssm_matvec_fast();
    for (int b = 0; b < batch; b++) {
        float *dst = xs + b * n32;
        const float *src = x + b * ldx;
        if (!fast) {
            memcpy(dst, src, (size_t)n_in * sizeof(float));
            memset(dst + n_in, 0, (size_t)(n32 - n_in) * sizeof(float));
            continue;
        }
        int64_t full = n_in / 32 * 32;
        for (int64_t i = 0; i < full; i += 32)
            for (int j = 0; j < 16; j++) { dst[i + j] = src[i + 2 * j]; dst[i + 16 + j] = src[i + 2 * j + 1]; }
        for (int64_t i = full; i < n32; i += 32)
            for (int j = 0; j < 16; j++) {
                dst[i + j] = i + 2 * j < n_in ? src[i + 2 * j] : 0.0f;
                dst[i + 16 + j] = i + 2 * j + 1 < n_in ? src[i + 2 * j + 1] : 0.0f;
            }
    }
}

void ssm_matvec_bf16_prepared(float *out, int64_t ldo, const uint16_t *W, int64_t ldw, const float *xs, int64_t n_out,
                              int64_t n_in, int batch, int accumulate) {
    int64_t n32 = ssm_matvec_bf16_padded(n_in);
    if (ssm_matvec_fast()) matvec_bf16_avx512(out, ldo, W, ldw, xs, n32, n_out, n_in, batch, accumulate);
    else matvec_plain(out, ldo, W, 1, ldw, xs, n32, n_out, n_in, batch, accumulate);
}

/* One buffer per thread for the prepared x of ssm_matvec_bf16, grown as needed. */
static __thread float *xs_buf;
static __thread int64_t xs_cap;

void ssm_matvec_bf16(float *out, int64_t ldo, const uint16_t *W, int64_t ldw, const float *x, int64_t ldx,
                     int64_t n_out, int64_t n_in, int batch, int accumulate) {
    int64_t n32 = ssm_matvec_bf16_padded(n_in);
    if (xs_cap < batch * n32) {
        free(xs_buf);
        xs_cap = batch * n32;
        xs_buf = ssm_xmalloc((size_t)xs_cap * sizeof(float));
    }
    ssm_matvec_bf16_prepare(xs_buf, x, ldx, n_in, batch);
    ssm_matvec_bf16_prepared(out, ldo, W, ldw, xs_buf, n_out, n_in, batch, accumulate);
}
