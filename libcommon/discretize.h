/* discretize.h - continuous (A, B) -> discrete (Abar, Bbar) at step dt, for diagonal (real or
 * complex) and dense state matrices.  Math: ../shared/REFERENCE.md section 4.
 *
 *   zoh             Abar = exp(dt A),                    Bbar = A^{-1} (exp(dt A) - I) B
 *   bilinear        Abar = (I - dt/2 A)^{-1} (I + dt/2 A), Bbar = (I - dt/2 A)^{-1} dt B
 *   euler           Abar = I + dt A,                     Bbar = dt B
 *   backward-euler  Abar = (I - dt A)^{-1},              Bbar = Abar dt B
 *
 * Implementation notes (equal in exact arithmetic to the formulas above):
 *   - diagonal ZOH computes Bbar = dt * phi1(dt A) * B with phi1(z) = expm1(z)/z evaluated without
 *     cancellation (phi1(0) = 1), so A = 0 and tiny |dt A| are exact;
 *   - dense ZOH takes both Abar and Bbar from one matrix exponential of the (N+1) x (N+1) block
 *     matrix dt [[A, B], [0, 0]] = [[exp(dt A), dt phi1(dt A) B], [0, 1]]; this needs no A^{-1}
 *     (FouT's A is singular);
 *   - the matrix exponential is scaling and squaring with the degree-13 Pade approximant
 *     (Higham 2005: s = max(0, ceil(log2(||A||_1 / theta_13))), theta_13 = 5.371920351148152);
 *   - linear solves are LAPACK dgesv / zgesv (LU with partial pivoting).
 * Layouts: row-major doubles; complex values interleaved (re, im).
 */
#ifndef SSM_DISCRETIZE_H
#define SSM_DISCRETIZE_H

#include <stdint.h>

typedef enum {
    SSM_METHOD_ZOH = 0,
    SSM_METHOD_BILINEAR,
    SSM_METHOD_EULER,
    SSM_METHOD_BACKWARD_EULER,
    SSM_METHOD_COUNT
} ssm_method;

const char *ssm_method_name(int method);          /* "zoh", ...; NULL if unknown */
int ssm_method_from_name(const char *name);       /* -1 if unknown */

/* Diagonal complex: A, B (M) complex -> Abar, Bbar (M) complex.  Outputs may not alias inputs. */
void discretize_diag_complex(int method, int64_t M, double dt, const double *A, const double *B,
                             double *Abar, double *Bbar);
/* Diagonal real: A, B (N) -> Abar, Bbar (N). */
void discretize_diag_real(int method, int64_t N, double dt, const double *A, const double *B,
                          double *Abar, double *Bbar);
/* Dense real: A (N, N), B (N) -> Abar (N, N), Bbar (N).  0, or -1 if a solve is singular. */
int discretize_dense(int method, int N, double dt, const double *A, const double *B, double *Abar,
                     double *Bbar);
/* Dense complex (used for the full matrix of a DPLR system): bilinear, euler and backward-euler;
 * returns -1 for zoh (not implemented for complex) or a singular solve. */
int discretize_dense_complex(int method, int N, double dt, const double *A, const double *B,
                             double *Abar, double *Bbar);

/* E (N, N) = exp(A) by scaling and squaring with Pade 13.  0, or -1 (non-finite input/singular). */
int expm_pade13(int N, const double *A, double *E);

/* Solves M X = R in place (X overwrites R): M (n, n), R (n, nrhs), row-major.  0 / -1 singular. */
int solve_real(int n, int nrhs, const double *M, double *R);
int solve_complex(int n, int nrhs, const double *M, double *R);

/* C (n, n) = A B, row-major (OpenBLAS dgemm). */
void matmul_real(int n, const double *A, const double *B, double *C);

#endif
