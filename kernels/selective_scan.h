/* selective_scan.h - Mamba's selective scan (S6) and the time-invariant recurrence, on the CPU.
 * Semantics: ../shared/REFERENCE.md section 7 (the official selective_scan_ref), exactly.
 *
 * This is the library API that ssm-scan, ssm-train and ssm-generate call in-process.  A single
 * decoding step is the same call with L = 1 (state in through h0, out through h_out).
 *
 * Layout: explicit element strides for every (batch, time, channel) tensor, so both the official
 * channel-first layout "bdl" (batch, D, L) and the token-major "bld" (batch, L, D) work without
 * copies.  ssm_scan_layout_bld / _bdl fill the strides for a contiguous tensor.
 *
 * Shapes (N = state size per channel; complex A means N complex modes, stored (re, im)):
 *   u, delta, z, y      (batch, L, D) through the strides in ssm_scan_strides
 *   A                   (D, N) real, or (D, N, 2) complex when complex_A
 *   B, C  selective     (batch, L, G, N) [through bc_strides], channel d uses group d / (D / G);
 *                       complex_A: (batch, L, G, N, 2)
 *         invariant     (D, N) when G == 0 (complex_A: (D, N, 2))
 *   D_skip, delta_bias  (D) or NULL
 *   h0, h_out           (batch, D, N) or (batch, D, N, 2) complex; NULL = zeros / not wanted
 *   seq_idx             (batch, L) int32 or NULL: the state is reset to zero at every t > 0 where
 *                       seq_idx[b, t] != seq_idx[b, t - 1] (packed variable-length batches)
 * All arithmetic is float32 with float32 state (double in the _ref functions).
 *
 * Complex A comes with complex B and C (as in the official code, where a complex A makes B and C
 * complex; a real B or C is passed as complex with im = 0).  Complex tensors are interleaved
 * (re, im) floats and every stride counts complex elements: element i starts at float 2 * i.
 * y = 2 Re(sum_n x[n] C[n]) then, one of each conjugate pair being stored (REFERENCE.md section 1).
 * Gradients of complex tensors follow PyTorch: dX = dL/dRe(X) + i dL/dIm(X).
 *
 * bc_strides for a contiguous selective B of shape (batch, L, G, N) are ssm_scan_layout_bld(L, G*N);
 * for the official (batch, G, N, L) they are ssm_scan_layout_bdl(L, G*N).
 */
#ifndef SSM_SELECTIVE_SCAN_H
#define SSM_SELECTIVE_SCAN_H

#include <stdint.h>

typedef struct {
    int64_t batch, time, channel;   /* element strides */
} ssm_scan_strides;

typedef struct {
    int64_t batch, L, D, N;
    int64_t G;                      /* groups of B/C; 0 = time-invariant B, C of shape (D, N) */
    int complex_A;
    int softplus;                   /* delta = softplus(delta + delta_bias) (x > 20: x) */
    ssm_scan_strides x_strides;     /* for u, delta, z, y, du, ddelta, dz */
    ssm_scan_strides bc_strides;    /* for selective B, C: (batch, time, group*N [*2]) */
    const float *u, *delta, *A, *B, *C;
    const float *D_skip, *z, *delta_bias, *h0;
    const int32_t *seq_idx;
    int threads;                    /* 0 = all */
    int chunk;                      /* backward: time steps recomputed per chunk; 0 = default */
} ssm_scan_params;

/* NULL when p is consistent (sizes >= 0, G divides D, required pointers set), else a message.
 * The scan functions die (ssm_die) with this message on an inconsistent p: a programming error. */
const char *selective_scan_check(const ssm_scan_params *p);

/* Fills strides for contiguous (batch, L, D) or (batch, D, L) tensors of D channels. */
ssm_scan_strides ssm_scan_layout_bld(int64_t L, int64_t D);
ssm_scan_strides ssm_scan_layout_bdl(int64_t L, int64_t D);

/* Forward: y through x_strides; h_out (may be NULL) gets the final state. */
void selective_scan_forward(const ssm_scan_params *p, float *y, float *h_out);

/* Gradients (outputs; each may be NULL when not wanted).  Shapes as their inputs: du, ddelta, dz
 * through x_strides; dA like A; dB, dC like B, C; dD_skip, ddelta_bias (D); dh0 like h0. */
typedef struct {
    float *du, *ddelta, *dA, *dB, *dC, *dD_skip, *dz, *ddelta_bias, *dh0;
} ssm_scan_grads;

/* Backward: dy through x_strides, dh_out (batch, D, N[, 2]) or NULL.  Recomputes states per chunk
 * instead of storing (batch, L, D, N).  Gradients are written (not accumulated). */
void selective_scan_backward(const ssm_scan_params *p, const float *dy, const float *dh_out,
                             const ssm_scan_grads *g);

/* The plain reference, in double, straight from the formulas: the oracle for tests. */
void selective_scan_forward_ref(const ssm_scan_params *p, double *y, double *h_out);

/* The reference backward in double (stores every state; for tests and small inputs).  dy through
 * x_strides (doubles), dh_out as h_out or NULL; gradients as in ssm_scan_grads, written. */
typedef struct {
    double *du, *ddelta, *dA, *dB, *dC, *dD_skip, *dz, *ddelta_bias, *dh0;
} ssm_scan_grads_f64;
void selective_scan_backward_ref(const ssm_scan_params *p, const double *dy, const double *dh_out,
                                 const ssm_scan_grads_f64 *g);

/* The scan's vectorized float exp over an array: y[i] = exp(x[i]) with relative error < 1e-6 for
 * x in [-87, 88]; below -87.3 it gives 1.2e-38, above 88.4 +inf, and a NaN gives a finite value.
 * For tests and the benchmark's floor. */
void ssm_scan_exp_f32(const float *x, float *y, int64_t n);

#endif
