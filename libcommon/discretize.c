/* discretize.c - ZOH, bilinear, forward and backward Euler for diagonal and dense state matrices,
 * and the Pade-13 matrix exponential (see discretize.h for the formulas). */
#include "discretize.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lapack_decl.h"

typedef double complex cplx;

static const char *const method_names[SSM_METHOD_COUNT] = {"zoh", "bilinear", "euler", "backward-euler"};

const char *ssm_method_name(int method) {
    return method >= 0 && method < SSM_METHOD_COUNT ? method_names[method] : NULL;
}

int ssm_method_from_name(const char *name) {
    for (int k = 0; k < SSM_METHOD_COUNT; k++)
        if (strcmp(method_names[k], name) == 0) return k;
    return -1;
}

/* ---- diagonal forms ------------------------------------------------------------------------ */

/* phi1(z) = (exp(z) - 1)/z for complex z, without cancellation:
 * expm1(x + iy) = (expm1(x) cos y - 2 sin^2(y/2)) + i exp(x) sin y, accurate for small |z|. */
static cplx phi1_complex(cplx z) {
    double x = creal(z), y = cimag(z);
    if (x == 0 && y == 0) return 1;
    if (cabs(z) < 1e-8) return 1 + z / 2 + z * z / 6;   /* the series is exact to rounding here */
    double s = sin(0.5 * y);
    cplx em1 = (expm1(x) * cos(y) - 2 * s * s) + I * (exp(x) * sin(y));
    return em1 / z;
}

static double phi1_real(double x) {
    if (x == 0) return 1;
    if (fabs(x) < 1e-8) return 1 + x / 2 + x * x / 6;
    return expm1(x) / x;
}

void discretize_diag_complex(int method, int64_t M, double dt, const double *A_, const double *B_,
                             double *Abar_, double *Bbar_) {
    const cplx *A = (const cplx *)A_, *B = (const cplx *)B_;
    cplx *Abar = (cplx *)Abar_, *Bbar = (cplx *)Bbar_;
    for (int64_t m = 0; m < M; m++) {
        cplx z = dt * A[m];
        switch (method) {
        case SSM_METHOD_ZOH: Abar[m] = cexp(z); Bbar[m] = dt * phi1_complex(z) * B[m]; break;
        case SSM_METHOD_BILINEAR: Abar[m] = (1 + z / 2) / (1 - z / 2); Bbar[m] = dt * B[m] / (1 - z / 2); break;
        case SSM_METHOD_EULER: Abar[m] = 1 + z; Bbar[m] = dt * B[m]; break;
        default: Abar[m] = 1 / (1 - z); Bbar[m] = Abar[m] * dt * B[m]; break;
        }
    }
}

void discretize_diag_real(int method, int64_t N, double dt, const double *A, const double *B, double *Abar,
                          double *Bbar) {
    for (int64_t n = 0; n < N; n++) {
        double z = dt * A[n];
        switch (method) {
        case SSM_METHOD_ZOH: Abar[n] = exp(z); Bbar[n] = dt * phi1_real(z) * B[n]; break;
        case SSM_METHOD_BILINEAR: Abar[n] = (1 + z / 2) / (1 - z / 2); Bbar[n] = dt * B[n] / (1 - z / 2); break;
        case SSM_METHOD_EULER: Abar[n] = 1 + z; Bbar[n] = dt * B[n]; break;
        default: Abar[n] = 1 / (1 - z); Bbar[n] = Abar[n] * dt * B[n]; break;
        }
    }
}

/* ---- dense linear algebra helpers ------------------------------------------------------------ */

void matmul_real(int n, const double *A, const double *B, double *C) {
    /* Row-major C = A B is column-major C^T = B^T A^T. */
    const double one = 1, zero = 0;
    dgemm_("N", "N", &n, &n, &n, &one, B, &n, A, &n, &zero, C, &n, 1, 1);
}

int solve_real(int n, int nrhs, const double *M, double *R) {
    double *a = ssm_xmalloc(sizeof(double) * (size_t)n * (size_t)n);
    double *b = ssm_xmalloc(sizeof(double) * (size_t)n * (size_t)nrhs);
    int *ipiv = ssm_xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) a[(size_t)j * n + i] = M[(size_t)i * n + j];
        for (int j = 0; j < nrhs; j++) b[(size_t)j * n + i] = R[(size_t)i * nrhs + j];
    }
    int info = 0;
    dgesv_(&n, &nrhs, a, &n, ipiv, b, &n, &info);
    if (info == 0)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < nrhs; j++) R[(size_t)i * nrhs + j] = b[(size_t)j * n + i];
    free(a);
    free(b);
    free(ipiv);
    return info == 0 ? 0 : -1;
}

int solve_complex(int n, int nrhs, const double *M_, double *R_) {
    const cplx *M = (const cplx *)M_;
    cplx *R = (cplx *)R_;
    cplx *a = ssm_xmalloc(sizeof(cplx) * (size_t)n * (size_t)n);
    cplx *b = ssm_xmalloc(sizeof(cplx) * (size_t)n * (size_t)nrhs);
    int *ipiv = ssm_xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) a[(size_t)j * n + i] = M[(size_t)i * n + j];
        for (int j = 0; j < nrhs; j++) b[(size_t)j * n + i] = R[(size_t)i * nrhs + j];
    }
    int info = 0;
    zgesv_(&n, &nrhs, (double *)a, &n, ipiv, (double *)b, &n, &info);
    if (info == 0)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < nrhs; j++) R[(size_t)i * nrhs + j] = b[(size_t)j * n + i];
    free(a);
    free(b);
    free(ipiv);
    return info == 0 ? 0 : -1;
}

/* ---- matrix exponential: scaling and squaring, Pade 13 (Higham 2005) -------------------------- */

int expm_pade13(int N, const double *A, double *E) {
    const int m = 13;
    const double theta13 = 5.371920351148152;
    const size_t NN = (size_t)N * (size_t)N;
    /* Pade coefficients c_j = (2m-j)! m! / ((2m)! j! (m-j)!), by the recurrence
     * c_0 = 1, c_{j+1} = c_j (m-j) / ((j+1)(2m-j)). */
    double c[14];
    c[0] = 1;
    for (int j = 0; j < m; j++) c[j + 1] = c[j] * (double)(m - j) / ((double)(j + 1) * (double)(2 * m - j));

    double norm1 = 0;   /* ||A||_1: largest column sum */
    for (int j = 0; j < N; j++) {
        double s = 0;
        for (int i = 0; i < N; i++) s += fabs(A[(size_t)i * N + j]);
        if (s > norm1) norm1 = s;
    }
    if (!isfinite(norm1)) return -1;
    int s = 0;
    if (norm1 > theta13) s = (int)ceil(log2(norm1 / theta13));
    double scale = ldexp(1.0, -s);

    double *X = ssm_xmalloc(sizeof(double) * NN * 7);
    double *A1 = X, *A2 = X + NN, *A4 = X + 2 * NN, *A6 = X + 3 * NN, *U = X + 4 * NN, *V = X + 5 * NN, *T = X + 6 * NN;
    for (size_t i = 0; i < NN; i++) A1[i] = A[i] * scale;
    matmul_real(N, A1, A1, A2);
    matmul_real(N, A2, A2, A4);
    matmul_real(N, A4, A2, A6);
    /* U = A1 (A6 (c13 A6 + c11 A4 + c9 A2) + c7 A6 + c5 A4 + c3 A2 + c1 I) */
    for (size_t i = 0; i < NN; i++) T[i] = c[13] * A6[i] + c[11] * A4[i] + c[9] * A2[i];
    matmul_real(N, A6, T, V);
    for (size_t i = 0; i < NN; i++) V[i] += c[7] * A6[i] + c[5] * A4[i] + c[3] * A2[i];
    for (int i = 0; i < N; i++) V[(size_t)i * N + i] += c[1];
    matmul_real(N, A1, V, U);
    /* V = A6 (c12 A6 + c10 A4 + c8 A2) + c6 A6 + c4 A4 + c2 A2 + c0 I */
    for (size_t i = 0; i < NN; i++) T[i] = c[12] * A6[i] + c[10] * A4[i] + c[8] * A2[i];
    matmul_real(N, A6, T, V);
    for (size_t i = 0; i < NN; i++) V[i] += c[6] * A6[i] + c[4] * A4[i] + c[2] * A2[i];
    for (int i = 0; i < N; i++) V[(size_t)i * N + i] += c[0];
    /* (V - U) R = (V + U) */
    for (size_t i = 0; i < NN; i++) { T[i] = V[i] - U[i]; E[i] = V[i] + U[i]; }
    int rc = solve_real(N, N, T, E);
    for (int k = 0; rc == 0 && k < s; k++) {
        matmul_real(N, E, E, T);
        memcpy(E, T, sizeof(double) * NN);
    }
    free(X);
    return rc;
}

/* ---- dense discretizations ----------------------------------------------------------------------- */

int discretize_dense(int method, int N, double dt, const double *A, const double *B, double *Abar, double *Bbar) {
    const size_t NN = (size_t)N * (size_t)N;
    if (method == SSM_METHOD_ZOH) {
        /* exp(dt [[A, B], [0, 0]]) = [[exp(dt A), dt phi1(dt A) B], [0, 1]] */
        const int N1 = N + 1;
        double *Z = ssm_xcalloc((size_t)N1 * (size_t)N1, sizeof(double));
        double *EZ = ssm_xmalloc(sizeof(double) * (size_t)N1 * (size_t)N1);
        for (int i = 0; i < N; i++) {
            for (int j = 0; j < N; j++) Z[(size_t)i * N1 + j] = dt * A[(size_t)i * N + j];
            Z[(size_t)i * N1 + N] = dt * B[i];
        }
        int rc = expm_pade13(N1, Z, EZ);
        if (rc == 0)
            for (int i = 0; i < N; i++) {
                memcpy(Abar + (size_t)i * N, EZ + (size_t)i * N1, sizeof(double) * (size_t)N);
                Bbar[i] = EZ[(size_t)i * N1 + N];
            }
        free(Z);
        free(EZ);
        return rc;
    }
    if (method == SSM_METHOD_EULER) {
        for (size_t i = 0; i < NN; i++) Abar[i] = dt * A[i];
        for (int i = 0; i < N; i++) { Abar[(size_t)i * N + i] += 1; Bbar[i] = dt * B[i]; }
        return 0;
    }
    /* bilinear: (I - dt/2 A) [Abar | Bbar] = [I + dt/2 A | dt B]
     * backward: (I - dt A)   [Abar | Bbar] = [I | dt B] */
    double h = method == SSM_METHOD_BILINEAR ? dt / 2 : dt;
    double *Mx = ssm_xmalloc(sizeof(double) * NN);
    double *R = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)(N + 1));
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            double a = A[(size_t)i * N + j], id = i == j ? 1.0 : 0.0;
            Mx[(size_t)i * N + j] = id - h * a;
            R[(size_t)i * (N + 1) + j] = method == SSM_METHOD_BILINEAR ? id + h * a : id;
        }
        R[(size_t)i * (N + 1) + N] = dt * B[i];
    }
    int rc = solve_real(N, N + 1, Mx, R);
    if (rc == 0)
        for (int i = 0; i < N; i++) {
            memcpy(Abar + (size_t)i * N, R + (size_t)i * (N + 1), sizeof(double) * (size_t)N);
            Bbar[i] = R[(size_t)i * (N + 1) + N];
        }
    free(Mx);
    free(R);
    return rc;
}

int discretize_dense_complex(int method, int N, double dt, const double *A_, const double *B_, double *Abar_,
                             double *Bbar_) {
    const cplx *A = (const cplx *)A_, *B = (const cplx *)B_;
    cplx *Abar = (cplx *)Abar_, *Bbar = (cplx *)Bbar_;
    const size_t NN = (size_t)N * (size_t)N;
    if (method == SSM_METHOD_ZOH) return -1;
    if (method == SSM_METHOD_EULER) {
        for (size_t i = 0; i < NN; i++) Abar[i] = dt * A[i];
        for (int i = 0; i < N; i++) { Abar[(size_t)i * N + i] += 1; Bbar[i] = dt * B[i]; }
        return 0;
    }
    double h = method == SSM_METHOD_BILINEAR ? dt / 2 : dt;
    cplx *Mx = ssm_xmalloc(sizeof(cplx) * NN);
    cplx *R = ssm_xmalloc(sizeof(cplx) * (size_t)N * (size_t)(N + 1));
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            cplx a = A[(size_t)i * N + j];
            double id = i == j ? 1.0 : 0.0;
            Mx[(size_t)i * N + j] = id - h * a;
            R[(size_t)i * (N + 1) + j] = method == SSM_METHOD_BILINEAR ? id + h * a : id;
        }
        R[(size_t)i * (N + 1) + N] = dt * B[i];
    }
    int rc = solve_complex(N, N + 1, (const double *)Mx, (double *)R);
    if (rc == 0)
        for (int i = 0; i < N; i++) {
            memcpy(Abar + (size_t)i * N, R + (size_t)i * (N + 1), sizeof(cplx) * (size_t)N);
            Bbar[i] = R[(size_t)i * (N + 1) + N];
        }
    free(Mx);
    free(R);
    return rc;
}
