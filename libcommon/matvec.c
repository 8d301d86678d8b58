/* matvec.c - matrix times a few vectors, f32 or bf16 weights (see matvec.h). */
#include "matvec.h"

#pragma GCC optimize("O3")

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

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
AVX512 static inline __attribute__((always_inline)) __m512 load_w_bf16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
AVX512 static inline __attribute__((always_inline)) __m512 load_w_bf16_mask(const uint16_t *p, __mmask16 k) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

#define DEFINE_BLOCK(NAME, WT, LOAD, LOAD_MASK)                                                          \
    AVX512 static inline __attribute__((always_inline)) void NAME(                                       \
        float *out, int64_t ldo, const WT *W, int64_t ldw, const float *x, int64_t ldx, int64_t n_in,    \
        int accumulate, const int RB, const int BB) {                                                    \
        __m512 acc[8][4];                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++)                                             \
            _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) acc[r][b] = _mm512_setzero_ps();        \
        int64_t i = 0;                                                                                   \
        for (; i + 16 <= n_in; i += 16) {                                                                \
            __m512 xv[4], wv[8];                                                                         \
            _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) xv[b] = _mm512_loadu_ps(x + b * ldx + i); \
            _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++) wv[r] = LOAD(W + r * ldw + i);          \
            _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++)                                         \
                _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++)                                     \
                    acc[r][b] = _mm512_fmadd_ps(wv[r], xv[b], acc[r][b]);                                \
        }                                                                                                \
        if (i < n_in) {                                                                                  \
            __mmask16 k = (__mmask16)((1u << (n_in - i)) - 1);                                           \
            __m512 xv[4], wv[8];                                                                         \
            _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) xv[b] = _mm512_maskz_loadu_ps(k, x + b * ldx + i); \
            _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++) wv[r] = LOAD_MASK(W + r * ldw + i, k);  \
            _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++)                                         \
                _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++)                                     \
                    acc[r][b] = _mm512_fmadd_ps(wv[r], xv[b], acc[r][b]);                                \
        }                                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < RB; r++)                                             \
            _Pragma("GCC unroll 4") for (int b = 0; b < BB; b++) {                                       \
                float s = _mm512_reduce_add_ps(acc[r][b]);                                               \
                float *o = out + b * ldo + r;                                                            \
                *o = accumulate ? *o + s : s;                                                            \
            }                                                                                            \
    }

DEFINE_BLOCK(block_f32, float, load_w_f32, load_w_f32_mask)
DEFINE_BLOCK(block_bf16, uint16_t, load_w_bf16, load_w_bf16_mask)

/* Rows in blocks of 8 (one vector) or 4 (2 or more vectors), vectors in blocks of 4, 2, 1; the
 * leftover rows one at a time.  Every (row, vector) sum is the same sequence of operations
 * whatever block it falls in. */
#define DEFINE_MATVEC(NAME, WT, BLOCK)                                                                   \
    AVX512 static void NAME(float *out, int64_t ldo, const WT *W, int64_t ldw, const float *x,           \
                            int64_t ldx, int64_t n_out, int64_t n_in, int batch, int accumulate) {       \
        if (batch == 1) {                                                                                \
            int64_t o = 0;                                                                               \
            for (; o + 8 <= n_out; o += 8) BLOCK(out + o, ldo, W + o * ldw, ldw, x, ldx, n_in, accumulate, 8, 1); \
            for (; o < n_out; o++) BLOCK(out + o, ldo, W + o * ldw, ldw, x, ldx, n_in, accumulate, 1, 1); \
            return;                                                                                      \
        }                                                                                                \
        int64_t o = 0;                                                                                   \
        for (; o + 4 <= n_out; o += 4) {                                                                 \
            int b = 0;                                                                                   \
            for (; b + 4 <= batch; b += 4)                                                               \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 4, 4); \
            for (; b + 2 <= batch; b += 2)                                                               \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 4, 2); \
            for (; b < batch; b++)                                                                       \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 4, 1); \
        }                                                                                                \
        for (; o < n_out; o++) {                                                                         \
            int b = 0;                                                                                   \
            for (; b + 4 <= batch; b += 4)                                                               \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 1, 4); \
            for (; b < batch; b++)                                                                       \
                BLOCK(out + b * ldo + o, ldo, W + o * ldw, ldw, x + b * ldx, ldx, n_in, accumulate, 1, 1); \
        }                                                                                                \
    }

DEFINE_MATVEC(matvec_f32_avx512, float, block_f32)
DEFINE_MATVEC(matvec_bf16_avx512, uint16_t, block_bf16)

int ssm_matvec_fast(void) {
    static int fast = -1;
    if (fast < 0) {
        const char *e = getenv("SSM_MATVEC_PLAIN");
        fast = (!e || strcmp(e, "1") != 0) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
    return fast;
}

/* Without AVX-512: the same lane structure (16 partial sums per (row, vector), i mod 16) in plain
 * C, so that results agree with the fast kernel's up to the final reduction order. */
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

void ssm_matvec_bf16(float *out, int64_t ldo, const uint16_t *W, int64_t ldw, const float *x, int64_t ldx,
                     int64_t n_out, int64_t n_in, int batch, int accumulate) {
    if (ssm_matvec_fast()) matvec_bf16_avx512(out, ldo, W, ldw, x, ldx, n_out, n_in, batch, accumulate);
    else matvec_plain(out, ldo, W, 1, ldw, x, ldx, n_out, n_in, batch, accumulate);
}
