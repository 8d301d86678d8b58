/* selective_scan_cuda.h - the selective scan (Mamba's S6) on an NVIDIA GPU: C-callable API.
 * Semantics: ../shared/REFERENCE.md section 7, exactly as kernels/selective_scan.h (the CPU API);
 * the parameter struct is the same ssm_scan_params, with every pointer a DEVICE pointer.
 *
 * Differences from the CPU call, all stated here:
 *   - dtype: u, delta, z, selective B, C and y hold `dtype` elements (float32, bf16 or f16; for the
 *     16-bit types the `const float *` fields are reinterpreted as pointers to 16-bit data).  A,
 *     D_skip, delta_bias, h0, h_out and time-invariant B, C are always float32.  All arithmetic and
 *     the state are float32.
 *   - complex_A: strides count complex elements; (re, im) are adjacent floats (the official layout:
 *     selective complex B of shape (batch, G, N, L) complex is a float tensor (batch, G, N, 2L)).
 *   - seq_idx is contiguous (batch, L) int32.
 *   - Gradients (selective_scan_cuda_backward) are float32 whatever the input dtype, written with
 *     the strides of their inputs (du, ddelta, dz through x_strides, dB, dC through bc_strides).
 *   - p->threads is ignored.  The optional stream is a cudaStream_t (NULL = default stream).
 * No limit on N, D, L or batch beyond memory: N is processed in register blocks of 16 (8 complex);
 * L is cut into chunks scanned in parallel (chunk summaries + a carry pass), so batch * D can be
 * small.  Internal workspace is cached per process (not thread-safe: one caller at a time).
 *
 * Every function returns 0 on success, -1 on failure with the reason in ssm_cuda_error().
 */
#ifndef SSM_SELECTIVE_SCAN_CUDA_H
#define SSM_SELECTIVE_SCAN_CUDA_H

#include "selective_scan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SSM_CUDA_F32 = 0, SSM_CUDA_BF16 = 1, SSM_CUDA_F16 = 2 } ssm_cuda_dtype;

/* 1 when a CUDA device can be used, else 0 (the reason in ssm_cuda_error()). */
int ssm_cuda_available(void);
/* The last error of any ssm *_cuda_* call in this process ("" when none). */
const char *ssm_cuda_error(void);

/* Forward: y (dtype, through x_strides) and h_out (batch, D, N[, 2]) float32 or NULL. */
int selective_scan_cuda_forward(const ssm_scan_params *p, ssm_cuda_dtype dtype, void *y,
                                float *h_out, void *stream);

/* Backward (real or complex A): dy (dtype, through x_strides), dh_out (batch, D, N[, 2]) float32 or NULL.
 * Recomputes states per chunk: no (batch, L, D, N) tensor.  Gradients written, not accumulated. */
int selective_scan_cuda_backward(const ssm_scan_params *p, ssm_cuda_dtype dtype, const void *dy,
                                 const float *dh_out, const ssm_scan_grads *g, void *stream);

/* Tuning knob for tests and benchmarks: chunk length along L (0 = automatic). */
void selective_scan_cuda_set_chunk(int64_t forward_chunk, int64_t backward_chunk);
/* Tests: 1 = force the generic forward kernel (direct loads) instead of the shared-memory one. */
void selective_scan_cuda_set_variant(int generic);

#ifdef __cplusplus
}
#endif

#endif
