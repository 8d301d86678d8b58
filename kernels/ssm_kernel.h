/* ssm_kernel.h - the SSM convolution kernel K (H, L) and FFT convolution, on the CPU.
 * Math: ../shared/REFERENCE.md sections 1, 5, 6.  Library API used by ssm-kernel and ssm-train.
 *
 * Conventions (stated once):
 *   - H independent channels, each a SISO SSM; L kernel length.
 *   - Diagonal complex forms store M = N/2 modes, one of each conjugate pair; the kernel is
 *     K_l = 2 Re(sum_m Ct_m Abar_m^l) with Ct = C * Bbar.  Real diagonal forms store N modes and
 *     K_l = sum_n C_n Abar_n^l Bbar_n.
 *   - Complex numbers are interleaved (re, im) pairs of double (or float where noted).
 *   - Everything here is double unless the name ends in _f32.
 */
#ifndef SSM_SSM_KERNEL_H
#define SSM_SSM_KERNEL_H

#include <stdint.h>

/* ---- S4D: diagonal kernel (Vandermonde) and its gradient ------------------------------------
 * Parameters of one layer in the form S4D trains (ZOH discretization):
 *   log_dt (H), A (H, M) complex, B (H, M) complex, C (H, M) complex   -> K (H, L).
 * O(H (M + L)) memory: Abar^l is advanced by blocks, never the (M, L) matrix. */
void s4d_kernel_forward(int64_t H, int64_t M, int64_t L, const double *log_dt, const double *A,
                        const double *B, const double *C, double *K);
void s4d_kernel_forward_f32(int64_t H, int64_t M, int64_t L, const float *log_dt, const float *A,
                            const float *B, const float *C, float *K);
/* Given dK (H, L), writes dlog_dt (H), dA, dB, dC (H, M) complex (written, not accumulated;
 * complex gradients are d/dRe + i d/dIm). */
void s4d_kernel_backward(int64_t H, int64_t M, int64_t L, const double *log_dt, const double *A,
                         const double *B, const double *C, const double *dK, double *dlog_dt,
                         double *dA, double *dB, double *dC);
void s4d_kernel_backward_f32(int64_t H, int64_t M, int64_t L, const float *log_dt, const float *A,
                             const float *B, const float *C, const float *dK, float *dlog_dt,
                             float *dA, float *dB, float *dC);

/* ---- FFT convolution: y = causal_conv(u, K) + D u ------------------------------------------
 * u, y (batch, H, L); K (H, L); D (H) or NULL.  Real FFTs of length 2L (linear convolution),
 * plans cached (made under a lock, FFTW_ESTIMATE unless fft_conv_set_measure(1)), OpenMP threads
 * over H.  bidirectional: K2 (H, L) applied to the reversed sequence and added:
 * y[t] += sum_{s >= t} K2[s - t] u[s]  (K2 NULL otherwise). */
void fft_conv_forward_f32(int64_t batch, int64_t H, int64_t L, const float *u, const float *K,
                          const float *K2, const float *D, float *y);
/* Given dy (batch, H, L): du (batch, H, L), dK (H, L), dK2 (H, L) or NULL, dD (H) or NULL. */
void fft_conv_backward_f32(int64_t batch, int64_t H, int64_t L, const float *u, const float *K,
                           const float *K2, const float *D, const float *dy, float *du, float *dK,
                           float *dK2, float *dD);

/* Double versions of the FFT convolution (same shapes and meaning). */
void fft_conv_forward(int64_t batch, int64_t H, int64_t L, const double *u, const double *K,
                      const double *K2, const double *D, double *y);
void fft_conv_backward(int64_t batch, int64_t H, int64_t L, const double *u, const double *K,
                       const double *K2, const double *D, const double *dy, double *du,
                       double *dK, double *dK2, double *dD);
/* The O(L^2) direct convolution (the reference for tests): same shapes as fft_conv_forward. */
void fft_conv_direct_f64(int64_t batch, int64_t H, int64_t L, const double *u, const double *K,
                         const double *K2, const double *D, double *y);
/* FFTW planning effort for plans made from now on: 0 FFTW_ESTIMATE (default), 1 FFTW_MEASURE. */
void fft_conv_set_measure(int measure);
/* FFTW's own operation count (fftw_flops: add + mul + 2 fma) for one r2c plus one c2r transform
 * of length n, in float / double; used by the benchmark. */
double fft_conv_fftw_flops_f32(int64_t n);
double fft_conv_fftw_flops(int64_t n);

/* ---- the kernel K (H, L) from each form ssm-discretize writes ------------------------------- */
/* Diagonal, complex modes (conj=half): Abar, Bbar, C (H, M) complex -> K_l = 2 Re sum C Bbar Abar^l.
 * O(M + L) memory per channel. */
void vandermonde_kernel_complex(int64_t H, int64_t M, int64_t L, const double *Abar,
                                const double *Bbar, const double *C, double *K);
/* Diagonal, real modes: Abar, Bbar, C (H, N) real -> K_l = sum C Bbar Abar^l. */
void vandermonde_kernel_real(int64_t H, int64_t N, int64_t L, const double *Abar,
                             const double *Bbar, const double *C, double *K);
/* Dense (the reference): Abar (H, N, N), Bbar (H, N), C (H, N) real; x <- Abar x, L times.
 * O(N^2 L) time, O(N) memory beyond the input. */
void naive_kernel_dense(int64_t H, int64_t N, int64_t L, const double *Abar, const double *Bbar,
                        const double *C, double *K);
/* DPLR, bilinear (S4's algorithm, REFERENCE 5): state matrix diag(Lambda) - sum_r P_r P_r^*
 * in the eigenbasis, half of each conjugate pair stored.  dt (H); Lambda, B, C (H, M) complex;
 * P (H, R, M) complex.  Returns 0, or -1 if a Woodbury system was singular (K then holds NaN). */
int cauchy_kernel_dplr(int64_t H, int64_t M, int64_t R, int64_t L, const double *dt,
                       const double *Lambda, const double *P, const double *B, const double *C,
                       double *K);

#endif
