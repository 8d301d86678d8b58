/* ssm_kernel_cuda.h - the S4D (Vandermonde) kernel and FFT convolution on an NVIDIA GPU.
 * Semantics as kernels/ssm_kernel.h (the CPU API), float32, every pointer a DEVICE pointer.
 * Return 0, or -1 with the reason in ssm_cuda_error() (selective_scan_cuda.h).
 * Not yet here: the Vandermonde gradient and the Cauchy (DPLR) kernel. */
#ifndef SSM_SSM_KERNEL_CUDA_H
#define SSM_SSM_KERNEL_CUDA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* log_dt (H), A, B, C (H, M) complex interleaved -> K (H, L):
 * K_l = 2 Re sum_m C_m Bbar_m Abar_m^l, ZOH: Abar = exp(dt A), Bbar = (Abar - 1)/A B, dt = exp(log_dt). */
int s4d_kernel_forward_cuda(int64_t H, int64_t M, int64_t L, const float *log_dt, const float *A,
                            const float *B, const float *C, float *K, void *stream);

/* y = causal_conv(u, K) + D u: u, y (batch, H, L); K (H, L); D (H) or NULL.  cuFFT real
 * transforms of length 2L (linear, not circular, convolution); plans cached per (batch, H, L). */
int fft_conv_forward_cuda(int64_t batch, int64_t H, int64_t L, const float *u, const float *K,
                          const float *D, float *y, void *stream);

#ifdef __cplusplus
}
#endif

#endif
