/* test_kernel_methods.c - the three kernel methods agree:
 *   cauchy (DPLR, bilinear)  vs  naive (dense powers of the same system written as a real matrix)
 *   vandermonde (complex and real diagonal)  vs  naive (the same diagonal as a dense matrix)
 *   s4d_kernel_forward (ZOH from log_dt)  vs  vandermonde on the ZOH-discretized diagonal
 * on random systems with odd M, L odd / not a power of two, rank 1 and 2 corrections.
 * The dense matrices are built here from the definitions (REFERENCE.md sections 1, 2, 4). */
#include "check.h"
#include "ssm_kernel.h"

#include <complex.h>
#include <stdlib.h>
#include <string.h>

/* Solves X A = ... : returns inv(M1) applied: out = M1^{-1} rhs for an n x n real M1 (row-major)
 * and ncols right-hand sides (n x ncols, row-major).  Gauss-Jordan with partial pivoting. */
static void solve_dense_test(int64_t n, double *m1, double *rhs, int64_t ncols) {
    for (int64_t k = 0; k < n; k++) {
        int64_t p = k;
        for (int64_t i = k + 1; i < n; i++) if (fabs(m1[i * n + k]) > fabs(m1[p * n + k])) p = i;
        for (int64_t j = 0; j < n; j++) { double t = m1[k * n + j]; m1[k * n + j] = m1[p * n + j]; m1[p * n + j] = t; }
        for (int64_t j = 0; j < ncols; j++) { double t = rhs[k * ncols + j]; rhs[k * ncols + j] = rhs[p * ncols + j]; rhs[p * ncols + j] = t; }
        for (int64_t i = 0; i < n; i++) {
            if (i == k) continue;
            double f = m1[i * n + k] / m1[k * n + k];
            if (f == 0) continue;
            for (int64_t j = k; j < n; j++) m1[i * n + j] -= f * m1[k * n + j];
            for (int64_t j = 0; j < ncols; j++) rhs[i * ncols + j] -= f * rhs[k * ncols + j];
        }
    }
    for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < ncols; j++) rhs[k * ncols + j] /= m1[k * n + k];
}

/* Bilinear discretization of a real dense (A, B): Abar = (I - dt/2 A)^{-1}(I + dt/2 A),
 * Bbar = (I - dt/2 A)^{-1} dt B.  A (n, n), B (n) -> Abar (n, n), Bbar (n). */
static void bilinear_dense(int64_t n, double dt, const double *A, const double *B, double *Abar, double *Bbar) {
    double *m1 = malloc(8 * (size_t)(n * n)), *rhs = malloc(8 * (size_t)(n * (n + 1)));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            m1[i * n + j] = (i == j) - dt / 2 * A[i * n + j];
            rhs[i * (n + 1) + j] = (i == j) + dt / 2 * A[i * n + j];
        }
        rhs[i * (n + 1) + n] = dt * B[i];
    }
    solve_dense_test(n, m1, rhs, n + 1);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) Abar[i * n + j] = rhs[i * (n + 1) + j];
        Bbar[i] = rhs[i * (n + 1) + n];
    }
    free(m1); free(rhs);
}

/* The real 2M-dimensional system of a half-stored complex DPLR channel: state (Re z, Im z),
 * z' = Lambda z - sum_r P_r 2 Re(P_r^* z) + B u,  y = 2 Re(C z). */
static void dplr_to_real_dense(int64_t M, int64_t R, const double complex *lam, const double complex *P,
                               const double complex *B, const double complex *C, double *A, double *Br, double *Cr) {
    int64_t n = 2 * M;
    memset(A, 0, 8 * (size_t)(n * n));
    for (int64_t i = 0; i < M; i++) {
        A[i * n + i] = creal(lam[i]); A[i * n + M + i] = -cimag(lam[i]);
        A[(M + i) * n + i] = cimag(lam[i]); A[(M + i) * n + M + i] = creal(lam[i]);
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < M; j++) {
                double complex pi = P[r * M + i], pj = P[r * M + j];
                A[i * n + j] -= 2 * creal(pi) * creal(pj);
                A[i * n + M + j] -= 2 * creal(pi) * cimag(pj);
                A[(M + i) * n + j] -= 2 * cimag(pi) * creal(pj);
                A[(M + i) * n + M + j] -= 2 * cimag(pi) * cimag(pj);
            }
        Br[i] = creal(B[i]); Br[M + i] = cimag(B[i]);
        Cr[i] = 2 * creal(C[i]); Cr[M + i] = -2 * cimag(C[i]);
    }
}

static double complex crandn(void) { return test_normal() + I * test_normal(); }

static void test_cauchy_vs_naive(int64_t H, int64_t M, int64_t R, int64_t L, double dt_lo, double dt_hi) {
    int64_t n = 2 * M;
    double *dt = malloc(8 * (size_t)H);
    double complex *lam = malloc(16 * (size_t)(H * M)), *P = malloc(16 * (size_t)(H * R * M));
    double complex *B = malloc(16 * (size_t)(H * M)), *C = malloc(16 * (size_t)(H * M));
    double *A = malloc(8 * (size_t)(n * n)), *Bd = malloc(8 * (size_t)n);
    double *Abar = malloc(8 * (size_t)(H * n * n)), *Bbar = malloc(8 * (size_t)(H * n)), *Cd = malloc(8 * (size_t)(H * n));
    double *K = malloc(8 * (size_t)(H * L)), *ref = malloc(8 * (size_t)(H * L));
    for (int64_t h = 0; h < H; h++) {
        dt[h] = exp(log(dt_lo) + test_uniform() * (log(dt_hi) - log(dt_lo)));
        for (int64_t m = 0; m < M; m++) {
            lam[h * M + m] = -0.5 * (0.5 + test_uniform()) + I * M_PI * (double)m * (0.5 + test_uniform());
            B[h * M + m] = crandn();
            C[h * M + m] = crandn();
        }
        for (int64_t i = 0; i < R * M; i++) P[h * R * M + i] = 0.5 * crandn();
        dplr_to_real_dense(M, R, lam + h * M, P + h * R * M, B + h * M, C + h * M, A, Bd, Cd + h * n);
        bilinear_dense(n, dt[h], A, Bd, Abar + h * n * n, Bbar + h * n);
    }
    naive_kernel_dense(H, n, L, Abar, Bbar, Cd, ref);
    int rc = cauchy_kernel_dplr(H, M, R, L, dt, (double *)lam, (double *)P, (double *)B, (double *)C, K);
    CHECK(rc == 0, "cauchy returned %d", rc);
    CHECK_REL_ERR(rel_err_f64(K, ref, H * L), 1e-9, "cauchy vs naive, H %lld M %lld R %lld L %lld dt [%g, %g]",
                  (long long)H, (long long)M, (long long)R, (long long)L, dt_lo, dt_hi);
    free(dt); free(lam); free(P); free(B); free(C); free(A); free(Bd); free(Abar); free(Bbar); free(Cd); free(K); free(ref);
}

/* complex diagonal: the 2x2 real blocks of each mode are a dense matrix for naive */
static void test_vandermonde_vs_naive(int64_t H, int64_t M, int64_t L) {
    int64_t n = 2 * M;
    double complex *Abar = malloc(16 * (size_t)(H * M)), *Bbar = malloc(16 * (size_t)(H * M)), *C = malloc(16 * (size_t)(H * M));
    double *Ad = calloc((size_t)(H * n * n), 8), *Bd = malloc(8 * (size_t)(H * n)), *Cd = malloc(8 * (size_t)(H * n));
    double *K = malloc(8 * (size_t)(H * L)), *ref = malloc(8 * (size_t)(H * L));
    for (int64_t h = 0; h < H; h++) {
        double dt = exp(log(1e-3) + test_uniform() * (log(1e-1) - log(1e-3)));
        for (int64_t m = 0; m < M; m++) {
            double complex a = -0.5 + I * M_PI * (double)m;
            double complex ab = cexp(dt * a);
            Abar[h * M + m] = ab;
            Bbar[h * M + m] = (ab - 1) / a * crandn();
            C[h * M + m] = crandn();
            double *A = Ad + h * n * n;
            A[m * n + m] = creal(ab); A[m * n + M + m] = -cimag(ab);
            A[(M + m) * n + m] = cimag(ab); A[(M + m) * n + M + m] = creal(ab);
            Bd[h * n + m] = creal(Bbar[h * M + m]); Bd[h * n + M + m] = cimag(Bbar[h * M + m]);
            Cd[h * n + m] = 2 * creal(C[h * M + m]); Cd[h * n + M + m] = -2 * cimag(C[h * M + m]);
        }
    }
    naive_kernel_dense(H, n, L, Ad, Bd, Cd, ref);
    vandermonde_kernel_complex(H, M, L, (double *)Abar, (double *)Bbar, (double *)C, K);
    CHECK_REL_ERR(rel_err_f64(K, ref, H * L), 1e-10, "vandermonde complex vs naive, M %lld L %lld", (long long)M, (long long)L);
    free(Abar); free(Bbar); free(C); free(Ad); free(Bd); free(Cd); free(K); free(ref);
}

static void test_vandermonde_real_vs_naive(int64_t H, int64_t N, int64_t L) {
    double *Abar = malloc(8 * (size_t)(H * N)), *Bbar = malloc(8 * (size_t)(H * N)), *C = malloc(8 * (size_t)(H * N));
    double *Ad = calloc((size_t)(H * N * N), 8), *K = malloc(8 * (size_t)(H * L)), *ref = malloc(8 * (size_t)(H * L));
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < N; i++) {
            double dt = 0.01 * (1 + test_uniform());
            Abar[h * N + i] = exp(-dt * (double)(i + 1));   /* s4d-real / mamba: A = -(n+1) */
            if (i == 1) Abar[h * N + i] = -0.9;               /* a negative mode too */
            Bbar[h * N + i] = test_normal();
            C[h * N + i] = test_normal();
            Ad[h * N * N + i * N + i] = Abar[h * N + i];
        }
    naive_kernel_dense(H, N, L, Ad, Bbar, C, ref);
    vandermonde_kernel_real(H, N, L, Abar, Bbar, C, K);
    CHECK_REL_ERR(rel_err_f64(K, ref, H * L), 1e-10, "vandermonde real vs naive, N %lld L %lld", (long long)N, (long long)L);
    free(Abar); free(Bbar); free(C); free(Ad); free(K); free(ref);
}

static void test_s4d_vs_vandermonde(int64_t H, int64_t M, int64_t L) {
    double *ld = malloc(8 * (size_t)H);
    double complex *A = malloc(16 * (size_t)(H * M)), *B = malloc(16 * (size_t)(H * M)), *C = malloc(16 * (size_t)(H * M));
    double complex *Abar = malloc(16 * (size_t)(H * M)), *Bbar = malloc(16 * (size_t)(H * M));
    double *K = malloc(8 * (size_t)(H * L)), *ref = malloc(8 * (size_t)(H * L));
    for (int64_t h = 0; h < H; h++) {
        ld[h] = log(1e-3) + test_uniform() * (log(1e-1) - log(1e-3));
        for (int64_t m = 0; m < M; m++) {
            int64_t i = h * M + m;
            A[i] = -0.5 + I * (M / M_PI) * ((double)M / (2 * m + 1) - 1);   /* s4d-inv */
            B[i] = 1;
            C[i] = crandn();
            Abar[i] = cexp(exp(ld[h]) * A[i]);
            Bbar[i] = (Abar[i] - 1) / A[i] * B[i];
        }
    }
    s4d_kernel_forward(H, M, L, ld, (double *)A, (double *)B, (double *)C, K);
    vandermonde_kernel_complex(H, M, L, (double *)Abar, (double *)Bbar, (double *)C, ref);
    CHECK_REL_ERR(rel_err_f64(K, ref, H * L), 1e-10, "s4d (log_dt, A, B, C) vs vandermonde on ZOH, L %lld", (long long)L);
    free(ld); free(A); free(B); free(C); free(Abar); free(Bbar); free(K); free(ref);
}

int main(void) {
    test_seed_from_env("test_kernel_methods");
    test_cauchy_vs_naive(2, 5, 1, 37, 1e-2, 1e-1);
    test_cauchy_vs_naive(3, 8, 1, 1000, 1e-3, 1e-1);
    test_cauchy_vs_naive(1, 16, 2, 1024, 1e-3, 1e-1);
    test_cauchy_vs_naive(1, 1, 1, 1, 1e-1, 1e-1);
    test_cauchy_vs_naive(1, 7, 0, 301, 1e-2, 1e-1);
    test_cauchy_vs_naive(1, 32, 1, 4096, 1e-1, 1e-1);
    test_vandermonde_vs_naive(2, 7, 301);
    test_vandermonde_vs_naive(1, 32, 4096);
    test_vandermonde_real_vs_naive(2, 9, 500);
    test_s4d_vs_vandermonde(2, 32, 3000);
    return check_summary("test_kernel_methods");
}
