/* matvec.h - matrix times a few vectors, for recurrent decoding: every weight is read once per
 * call whatever the batch, so a decode step streams the model's weights at memory bandwidth.
 *
 *   out[b * ldo + o]  = sum_{i < n_in} W[o * ldw + i] * x[b * ldx + i]      (accumulate 0)
 *   out[b * ldo + o] += ...                                                  (accumulate 1)
 * for o < n_out, b < batch.  W is (n_out, ldw) row-major, float32 or bf16 (the upper 16 bits of
 * a float32, converted exactly to float32 in registers); sums in float32.
 *
 * The AVX-512 kernels (used when the CPU has them) keep 16 partial sums per (row, vector) and add
 * them in a fixed order, so a result depends on the sizes only, never on the batch it is computed
 * in nor on the thread.  The f32 kernel sums lane i mod 16 in two chains (i / 16 even, odd); the
 * bf16 kernel takes 32 weights per load and sums the even and the odd ones of lane j in four
 * chains (conversion by shift and mask, no shuffle), so the two agree to rounding, not bit for
 * bit.  The plain loop ssm_matvec_ref is their
 * reference (tests/unit/test_mamba_decode.c).
 */
#ifndef SSM_MATVEC_H
#define SSM_MATVEC_H

#include <stdint.h>

void ssm_matvec_f32(float *out, int64_t ldo, const float *W, int64_t ldw, const float *x,
                    int64_t ldx, int64_t n_out, int64_t n_in, int batch, int accumulate);
void ssm_matvec_bf16(float *out, int64_t ldo, const uint16_t *W, int64_t ldw, const float *x,
                     int64_t ldx, int64_t n_out, int64_t n_in, int batch, int accumulate);
/* ssm_matvec_bf16 rearranges x for its kernel on every call; a caller that applies several
 * matrices to the same x prepares it once: xs (batch, ssm_matvec_bf16_padded(n_in)) floats. */
int64_t ssm_matvec_bf16_padded(int64_t n_in);
void ssm_matvec_bf16_prepare(float *xs, const float *x, int64_t ldx, int64_t n_in, int batch);
void ssm_matvec_bf16_prepared(float *out, int64_t ldo, const uint16_t *W, int64_t ldw, const float *xs,
                              int64_t n_out, int64_t n_in, int batch, int accumulate);
/* The plain loop (double sums), W f32 when bf16 == 0 else uint16 bf16. */
void ssm_matvec_ref(float *out, int64_t ldo, const void *W, int bf16, int64_t ldw, const float *x,
                    int64_t ldx, int64_t n_out, int64_t n_in, int batch, int accumulate);
/* 1 when the AVX-512 kernel is in use (SSM_MATVEC_PLAIN=1 in the environment forces the plain
 * C loop, for comparisons). */
int ssm_matvec_fast(void);

#endif
