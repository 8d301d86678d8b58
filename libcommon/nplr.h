/* nplr.h - from the normal-plus-low-rank (NPLR) form of a HiPPO matrix to the diagonal-plus-low-rank
 * (DPLR) form S4 computes with.  Math: ../shared/REFERENCE.md section 2.
 *
 *   AP = A + sum_r P_r P_r^T is normal, of the form c I + S with S real skew-symmetric.
 *   Its eigenvalues are W = c + i w where (w, V) = eigh(-i S) (LAPACK zheevd, float64).
 *   S is real, so eigenvectors come in conjugate pairs (w, v) and (-w, conj v).  We keep the
 *   M = N/2 eigenvectors with w > 0 (Im W > 0) and, for each pair of zero eigenvalues (FouT has
 *   one), v = (q1 + i q2)/sqrt(2) with q1, q2 a real orthonormal basis of that null space pair,
 *   so that the full unitary basis is always V = [Vh, conj(Vh)] (N x N).  The kept half is ordered
 *   by increasing Im W.
 *
 * Conjugate-pair halving convention ("conj=half"):  with x = V xt (xt the state in the
 * eigenbasis), the full N-dim quantities are the stored halves followed by their conjugates:
 *     Lambda_full = [Lambda; conj Lambda],  P_full = V* P = [Ph; conj Ph] with Ph = Vh* P,
 *     B_full = V* B = [Bh; conj Bh] with Bh = Vh* B,    C_full = C V = [Ch, conj Ch] with Ch = C Vh,
 *     A_full = diag(Lambda_full) - P_full P_full*   (= V* A V exactly, no factor of 2 anywhere).
 * So C_full f(A_full) B_full = C f(A) B for every f: the DPLR form describes the same system, and
 * with P = 0 the kernel is K_l = 2 Re(sum_m Ch_m Abar_m^l Bbar_m).
 *
 * Layout: Vh is (N, M) complex row-major (Vh[(n*M + m)*2 + {0,1}]); Ph is (r, M) complex.
 */
#ifndef SSM_NPLR_H
#define SSM_NPLR_H

#include <stddef.h>

/* A (N, N), P (r, N) real row-major, N even.  Writes Lambda (M) complex and Vh (N, M) complex;
 * *recon_err (may be NULL) = ||V diag(W) V* - AP||_F / ||AP||_F with the full V, W.
 * Returns 0, or -1 with a one-line reason in err (AP not c I + skew, odd N, LAPACK failure). */
int nplr_decompose(int N, int r, const double *A, const double *P, double *Lambda, double *Vh,
                   double *recon_err, char *err, size_t errlen);

/* out (M complex) = Vh* x for a real column vector x (N): B and the rows of P. */
void nplr_project_column(int N, int M, const double *Vh, const double *x, double *out);
/* out (M complex) = c Vh for a real row vector c (N): C. */
void nplr_project_row(int N, int M, const double *Vh, const double *c, double *out);

/* The full N = 2M complex state matrix of a stored DPLR system, in the eigenbasis:
 * A_full (N, N) complex row-major = diag([Lambda; conj Lambda]) - P_full P_full*, with Lambda (M),
 * P (r, M) complex as stored. */
void dplr_full_matrix(int M, int r, const double *Lambda, const double *P, double *A_full);
/* x (M complex) -> [x; conj x] (N = 2M complex). */
void dplr_full_vector(int M, const double *x, double *x_full);

#endif
