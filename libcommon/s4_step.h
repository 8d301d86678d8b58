/* s4_step.h - S4's recurrent (step) mode: from the parameters S4 trains (log_dt, Lambda, P, B,
 * C-tilde, as in kernels/s4_kernel.h) to a step x_t = Abar x_{t-1} + Bbar u_t,
 * y_t = 2 Re(C x_t) + D u_t that reproduces the convolution with the length-L kernel for t < L.
 * Math: ../shared/REFERENCE.md sections 5 and 6.
 *
 * Setup (double inside), per channel, with h = dt/2, D1 = 1 - h Lambda, D2 = 1 + h Lambda:
 *   - Abar = (I - h A)^{-1} (I + h A) for A = diag(Lambda) - P P^* (full basis [x; conj x]) is, by
 *     Woodbury, a diagonal plus a rank-R term:  Abar = diag(e) + U W^*,  e = D2/D1,  U = P/D1,
 *     W^* = -h P^* - S^{-1} P^* diag(e) + h S^{-1} Kp P^*,  S = I/h + Kp,  Kp = P^* D1^{-1} P
 *     (R x R, real: full sums over conjugate pairs).  Bbar = (I - h A)^{-1} dt B (Woodbury too).
 *   - The true C: the trained C is C-tilde = C (I - Abar^L), so C = Ct (I - Abar^L)^{-1}.  Solved
 *     once with the real 2M x 2M matrix of Abar (Abar^L by repeated squaring; Gaussian elimination
 *     with partial pivoting).  (I - Abar^L) is ill-conditioned when Abar^L is near I (dt tiny
 *     against L); the setup returns -1 if it is singular.
 * Step (float32 state, O(M R) per channel and token):
 *   alpha_j = 2 Re(sum_n W*_jn x_n);  x <- e x + sum_j alpha_j U_j + Bbar u;  y = 2 Re(C x) + D u.
 * Shapes: log_dt (H); Lambda, B, Ct (H, M) complex; P (H, R, M) complex; state (batch, H, M)
 * complex; u, y (batch, H).  Complex arrays are interleaved (re, im) floats.
 */
#ifndef SSM_S4_STEP_H
#define SSM_S4_STEP_H

#include <stdint.h>
#include "s4d_recurrent.h"

typedef struct {
    int64_t H, M, R;
    float *e;       /* (H, M) complex: diagonal of Abar */
    float *U;       /* (H, R, M) complex */
    float *W;       /* (H, R, M) complex: the rows W^*_j (half) */
    float *Bbar;    /* (H, M) complex */
    float *C;       /* (H, M) complex: the true C of the recurrence */
} s4_step_params;

/* Builds the step of one layer for kernel length L.  Returns 0, or -1 (a Woodbury system or
 * I - Abar^L singular, or a non-finite result); p is usable (and must be freed) only on 0. */
int s4_step_setup(s4_step_params *p, int64_t H, int64_t M, int64_t R, int64_t L, const float *log_dt,
                  const float *Lambda, const float *P, const float *B, const float *Ct);
void s4_step_free(s4_step_params *p);

/* One token for a batch: state (batch, H, M) complex updated in place; u, y (batch, H);
 * D (H) or NULL.  y may alias u. */
void s4_step(const s4_step_params *p, int64_t batch, float *state, const float *u, const float *D, float *y);

/* S4's layer for s4d_recurrent.h (generation), from the model's parameters: log_dt (H),
 * Lambda_real_log, Lambda_imag (H, M), P (H, R, M), B, C-tilde (H, M) complex, D (H), and the
 * length L_train C-tilde was trained for.  State S = 2M floats per channel (M complex modes);
 * step only (no chunk: a prompt runs as steps, O(M R) per token and channel, exact).  Dies with a
 * one-line error when the setup fails (I - Abar^L singular). */
ssm_rec_layer s4_rec_layer_new(int64_t H, int64_t M, int64_t R, const float *log_dt,
                               const float *Lambda_real_log, const float *Lambda_imag, const float *P,
                               const float *B, const float *C_tilde, const float *D, int64_t L_train);

#endif
