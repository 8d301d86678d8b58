/* s4_kernel.h - S4's DPLR convolution kernel in the parameterization S4 trains, forward and
 * backward (REFERENCE.md section 5, "DPLR"), on the CPU.
 *
 * One layer of H channels, M = N/2 complex modes (one of each conjugate pair, conj=half), rank R:
 *   log_dt (H);  Lambda (H, M) complex (Re < 0 expected; the model keeps it so);
 *   P (H, R, M) complex;  B (H, M) complex;  Ct (H, M) complex  ->  K (H, L) real.
 * Ct is C-tilde = C (I - Abar^L): the trained C already absorbs the truncation term, as in S4's
 * training, so no power of Abar is taken here (s4_step.h recovers the true C for the recurrence).
 * The state matrix is A = diag(Lambda) - sum_r P_r P_r^* (full basis [x; conj x]), discretized
 * bilinearly with dt = exp(log_dt):
 *   w_k = exp(-2 pi i k / L), k = 0..L/2;  z_k = (2/dt)(1 - w_k)/(1 + w_k) = (2i/dt) tan(pi k/L);
 *   T_ab(z) = sum_n a_n b_n / (z - Lambda_n) + conj(a_n b_n) / (z - conj Lambda_n),
 *             a in {Ct, conj P_1..R}, b in {B, P_1..R};
 *   Khat_k = 2/(1 + w_k) (T_CB - r_CP (I + R_PP)^{-1} r_PB);  at w = -1 (k = L/2, L even) the
 *   limit is Khat = dt sum_n Re(Ct_n B_n) (the Woodbury term vanishes as 1/z^2);
 *   K = irfft(Khat, L).
 * Cost O(H M L (R+1)^2) (the naive Cauchy product), memory O(M (R+1)^2 + L) per thread.
 * Complex arrays are interleaved (re, im); complex gradients are d/dRe + i d/dIm (as
 * s4d_kernel_backward).  Gradients are written, not accumulated.
 * The _f32 versions take and return float arrays and compute in double inside (the kernel is
 * computed once per layer and step, so the cost of double is small beside the convolutions).
 */
#ifndef SSM_S4_KERNEL_H
#define SSM_S4_KERNEL_H

#include <stdint.h>

#define S4_KERNEL_MAX_RANK 8

/* Returns 0, or -1 if a Woodbury system was singular or K is not finite. */
int s4_kernel_forward(int64_t H, int64_t M, int64_t R, int64_t L, const double *log_dt,
                      const double *Lambda, const double *P, const double *B, const double *Ct,
                      double *K);
/* Given dK (H, L): dlog_dt (H), dLambda (H, M), dP (H, R, M), dB (H, M), dCt (H, M). */
void s4_kernel_backward(int64_t H, int64_t M, int64_t R, int64_t L, const double *log_dt,
                        const double *Lambda, const double *P, const double *B, const double *Ct,
                        const double *dK, double *dlog_dt, double *dLambda, double *dP, double *dB,
                        double *dCt);

int s4_kernel_forward_f32(int64_t H, int64_t M, int64_t R, int64_t L, const float *log_dt,
                          const float *Lambda, const float *P, const float *B, const float *Ct,
                          float *K);
void s4_kernel_backward_f32(int64_t H, int64_t M, int64_t R, int64_t L, const float *log_dt,
                            const float *Lambda, const float *P, const float *B, const float *Ct,
                            const float *dK, float *dlog_dt, float *dLambda, float *dP, float *dB,
                            float *dCt);

#endif
