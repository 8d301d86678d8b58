/* ssm_kernel_cuda.h - the SSM convolution kernels and FFT convolution on an NVIDIA GPU.
 * Semantics as kernels/ssm_kernel.h (the CPU API), float32, every pointer a DEVICE pointer.
 * Outputs are written, never accumulated.  Return 0, or -1 with the reason in ssm_cuda_error()
 * (selective_scan_cuda.h).  Calls are ordered on `stream` (a cudaStream_t, NULL = default);
 * each function keeps a cached workspace, so two calls must not run at once on different streams.
 * Not here yet: the bidirectional convolution (K2) and the Cauchy kernel's gradient. */
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

/* The gradient of s4d_kernel_forward_cuda: given dK (H, L), writes dlog_dt (H) and dA, dB, dC
 * (H, M) complex (d/dRe + i d/dIm), as s4d_kernel_backward_f32. */
int s4d_kernel_backward_cuda(int64_t H, int64_t M, int64_t L, const float *log_dt, const float *A,
                             const float *B, const float *C, const float *dK, float *dlog_dt,
                             float *dA, float *dB, float *dC, void *stream);

/* Any diagonal form: log_Abar (H, M) complex double (Re = -inf for Abar = 0) and Ct = C Bbar
 * (H, M) complex double -> K_l = scale Re sum_m Ct_m exp(l log_Abar_m), K (H, L) float.
 * scale 2 for conj=half complex modes; real modes are complex ones with Im Ct = 0,
 * log_Abar = log|Abar| (+ i pi when Abar < 0) and scale 1. */
int vandermonde_kernel_cuda(int64_t H, int64_t M, int64_t L, const double *log_Abar,
                            const double *Ct, float scale, float *K, void *stream);

/* y = causal_conv(u, K) + D u: u, y (batch, H, L); K (H, L); D (H) or NULL.  cuFFT real
 * transforms of length 2L (linear, not circular, convolution); plans cached per (batch, H, L). */
int fft_conv_forward_cuda(int64_t batch, int64_t H, int64_t L, const float *u, const float *K,
                          const float *D, float *y, void *stream);

/* Given dy (batch, H, L): du (batch, H, L) = correlation of dy with K + D dy, dK (H, L) = sum over
 * the batch of the correlation of dy with u, dD (H) = sum dy u.  du, dK or dD may be NULL (not
 * computed); D NULL means no D term (dD may still be asked for). */
int fft_conv_backward_cuda(int64_t batch, int64_t H, int64_t L, const float *u, const float *K,
                           const float *D, const float *dy, float *du, float *dK, float *dD,
                           void *stream);

/* DPLR kernel, bilinear, S4's algorithm (cauchy_kernel_dplr in float32 on the GPU): dt (H);
 * Lambda, B, C (H, M) complex; P (H, R, M) complex, 0 <= R <= 8 -> K (H, L).  -1 also when a
 * Woodbury system is singular or K is not finite (the call then waits for the stream). */
int cauchy_kernel_dplr_cuda(int64_t H, int64_t M, int64_t R, int64_t L, const float *dt,
                            const float *Lambda, const float *P, const float *B, const float *C,
                            float *K, void *stream);

#ifdef __cplusplus
}
#endif

#endif
