/* nplr.c - NPLR -> DPLR decomposition with LAPACK zheevd (see nplr.h for the conventions). */
#include "nplr.h"

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lapack_decl.h"

typedef double complex cplx;

/* Real orthonormal basis of span{Re z_j, Im z_j} for the z complex vectors Z (N, z) column-major
 * (modified Gram-Schmidt, twice, dropping vectors that vanish).  Writes up to z vectors into
 * Q (z, N) (row j = vector j) and returns how many it found. */
static int real_basis_of_null_space(int N, int z, const cplx *Z, double *Q) {
    int found = 0;
    double *v = ssm_xmalloc(sizeof(double) * (size_t)N);
    for (int j = 0; j < 2 * z && found < z; j++) {
        const cplx *col = Z + (size_t)(j / 2) * (size_t)N;
        double norm0 = 0;
        for (int n = 0; n < N; n++) {
            v[n] = (j & 1) ? cimag(col[n]) : creal(col[n]);
            norm0 += v[n] * v[n];
        }
        if (norm0 < 1e-20) continue;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < found; i++) {
                double d = 0;
                for (int n = 0; n < N; n++) d += Q[(size_t)i * N + n] * v[n];
                for (int n = 0; n < N; n++) v[n] -= d * Q[(size_t)i * N + n];
            }
        double norm = 0;
        for (int n = 0; n < N; n++) norm += v[n] * v[n];
        if (norm < 1e-12 * norm0) continue;
        norm = sqrt(norm);
        for (int n = 0; n < N; n++) Q[(size_t)found * N + n] = v[n] / norm;
        found++;
    }
    free(v);
    return found;
}

int nplr_decompose(int N, int r, const double *A, const double *P, double *Lambda_out, double *Vh_out,
                   double *recon_err, char *err, size_t errlen) {
    if (N <= 0 || N % 2) { snprintf(err, errlen, "N = %d: the DPLR form needs an even state size (conjugate pairs)", N); return -1; }
    const size_t NN = (size_t)N * (size_t)N;
    const int M = N / 2;
    int status = -1;

    /* AP = A + sum_r P_r P_r^T; c = mean(diag(AP)); S = AP - c I must be skew-symmetric. */
    double *AP = ssm_xmalloc(sizeof(double) * NN);
    double c = 0, norm_AP = 0, asym = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double v = A[(size_t)i * N + j];
            for (int k = 0; k < r; k++) v += P[(size_t)k * N + i] * P[(size_t)k * N + j];
            AP[(size_t)i * N + j] = v;
            norm_AP += v * v;
        }
    for (int i = 0; i < N; i++) c += AP[(size_t)i * N + i];
    c /= N;
    norm_AP = sqrt(norm_AP);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double sij = AP[(size_t)i * N + j] - (i == j ? c : 0), sji = AP[(size_t)j * N + i] - (i == j ? c : 0);
            asym += (sij + sji) * (sij + sji);
        }
    if (sqrt(asym) > 1e-12 * (norm_AP > 0 ? norm_AP : 1)) {
        snprintf(err, errlen, "A + P P^T is not c I + skew-symmetric (relative defect %.3g): not a normal-plus-low-rank matrix",
                 sqrt(asym) / (norm_AP > 0 ? norm_AP : 1));
        free(AP);
        return -1;
    }

    /* Hermitian H = -i S, column-major for LAPACK (the lower triangle is read). */
    cplx *H = ssm_xmalloc(sizeof(cplx) * NN);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) H[(size_t)j * N + i] = -I * (AP[(size_t)i * N + j] - (i == j ? c : 0));
    /* zheevd (divide and conquer): the same eigenpairs as zheev, several times faster at N >= 256. */
    double *w = ssm_xmalloc(sizeof(double) * (size_t)N);
    int lwork = -1, lrwork = -1, liwork = -1, info = 0, iwq = 0;
    cplx wq;
    double rwq;
    zheevd_("V", "L", &N, (double *)H, &N, w, (double *)&wq, &lwork, &rwq, &lrwork, &iwq, &liwork, &info, 1, 1);
    lwork = (int)creal(wq) > 2 * N + N * N ? (int)creal(wq) : 2 * N + N * N;
    lrwork = (int)rwq > 1 + 5 * N + 2 * N * N ? (int)rwq : 1 + 5 * N + 2 * N * N;
    liwork = iwq > 3 + 5 * N ? iwq : 3 + 5 * N;
    cplx *work = ssm_xmalloc(sizeof(cplx) * (size_t)lwork);
    double *rwork = ssm_xmalloc(sizeof(double) * (size_t)lrwork);
    int *iwork = ssm_xmalloc(sizeof(int) * (size_t)liwork);
    zheevd_("V", "L", &N, (double *)H, &N, w, (double *)work, &lwork, rwork, &lrwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(rwork);
    free(iwork);
    cplx *Lambda = (cplx *)Lambda_out, *Vh = (cplx *)Vh_out;
    double *Q = NULL;
    if (info != 0) { snprintf(err, errlen, "LAPACK zheevd failed (info %d)", info); goto out; }

    /* w ascending.  Zero eigenvalues: |w| <= tol.  Positives and negatives must balance. */
    double wmax = fmax(fabs(w[0]), fabs(w[N - 1]));
    double tol = 1e-9 * (wmax > 1 ? wmax : 1);
    int nneg = 0, nzero = 0, npos = 0;
    for (int i = 0; i < N; i++) {
        if (w[i] < -tol) nneg++;
        else if (w[i] > tol) npos++;
        else nzero++;
    }
    if (nneg != npos || nzero % 2) {
        snprintf(err, errlen, "eigenvalues of A + P P^T do not pair up (%d with Im < 0, %d with Im > 0, %d zero)", nneg, npos, nzero);
        goto out;
    }
    int m = 0;
    if (nzero) {
        /* Replace the zero-eigenvalue eigenvectors by conjugate pairs (q1 + i q2)/sqrt2. */
        Q = ssm_xmalloc(sizeof(double) * (size_t)nzero * (size_t)N);
        int got = real_basis_of_null_space(N, nzero, H + (size_t)nneg * N, Q);
        if (got != nzero) { snprintf(err, errlen, "null space of A + P P^T - c I has no real basis (%d of %d)", got, nzero); goto out; }
        for (int j = 0; j < nzero / 2; j++, m++) {
            Lambda[m] = c;
            for (int n = 0; n < N; n++)
                Vh[(size_t)n * M + m] = (Q[(size_t)(2 * j) * N + n] + I * Q[(size_t)(2 * j + 1) * N + n]) / sqrt(2.0);
        }
    }
    for (int i = nneg + nzero; i < N; i++, m++) {
        Lambda[m] = c + I * w[i];
        for (int n = 0; n < N; n++) Vh[(size_t)n * M + m] = H[(size_t)i * N + n];
    }

    if (recon_err) {
        /* ||V diag(W) V* - AP||_F / ||AP||_F with V = [Vh, conj Vh]:
         * (V W V*)[i,j] = sum_m Vh[i,m] L_m conj(Vh[j,m]) + conj(Vh[i,m]) conj(L_m) Vh[j,m]
         *              = 2 Re(sum_m Vh[i,m] L_m conj(Vh[j,m])). */
        double num = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                cplx s = 0;
                for (int k = 0; k < M; k++) s += Vh[(size_t)i * M + k] * Lambda[k] * conj(Vh[(size_t)j * M + k]);
                double d = 2 * creal(s) - AP[(size_t)i * N + j];
                num += d * d;
            }
        *recon_err = sqrt(num) / (norm_AP > 0 ? norm_AP : 1);
    }
    status = 0;
out:
    free(Q);
    free(w);
    free(H);
    free(AP);
    return status;
}

void nplr_project_column(int N, int M, const double *Vh_, const double *x, double *out_) {
    const cplx *Vh = (const cplx *)Vh_;
    cplx *out = (cplx *)out_;
    for (int m = 0; m < M; m++) {
        cplx s = 0;
        for (int n = 0; n < N; n++) s += conj(Vh[(size_t)n * M + m]) * x[n];
        out[m] = s;
    }
}

void nplr_project_row(int N, int M, const double *Vh_, const double *c, double *out_) {
    const cplx *Vh = (const cplx *)Vh_;
    cplx *out = (cplx *)out_;
    for (int m = 0; m < M; m++) {
        cplx s = 0;
        for (int n = 0; n < N; n++) s += c[n] * Vh[(size_t)n * M + m];
        out[m] = s;
    }
}

void dplr_full_vector(int M, const double *x_, double *full_) {
    const cplx *x = (const cplx *)x_;
    cplx *full = (cplx *)full_;
    for (int m = 0; m < M; m++) { full[m] = x[m]; full[M + m] = conj(x[m]); }
}

void dplr_full_matrix(int M, int r, const double *Lambda_, const double *P_, double *A_) {
    const cplx *Lambda = (const cplx *)Lambda_, *P = (const cplx *)P_;
    cplx *A = (cplx *)A_;
    const int N = 2 * M;
    cplx *Pf = ssm_xmalloc(sizeof(cplx) * (size_t)(r > 0 ? r : 1) * (size_t)N);
    for (int k = 0; k < r; k++) dplr_full_vector(M, (const double *)(P + (size_t)k * M), (double *)(Pf + (size_t)k * N));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            cplx s = 0;
            for (int k = 0; k < r; k++) s += Pf[(size_t)k * N + i] * conj(Pf[(size_t)k * N + j]);
            A[(size_t)i * N + j] = (i == j ? (i < M ? Lambda[i] : conj(Lambda[i - M])) : 0) - s;
        }
    free(Pf);
}
