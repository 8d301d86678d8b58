/* test_kernel_s4d.c - the S4D kernel from (log_dt, A, B, C) with ZOH (kernels/kernel_vandermonde.c):
 * forward against the closed form K_l = 2 Re sum C B (e^{dtA}-1)/A e^{l dt A} evaluated term by
 * term with cexp, float32 against float64, and every gradient (log_dt, A, B, C) against central
 * finite differences in float64. */
#include "check.h"
#include "ssm_kernel.h"

#include <complex.h>
#include <stdlib.h>
#include <string.h>

/* s4d-lin-like modes with random perturbations; B, C complex normal; log dt in [log 1e-3, log 1e-1] */
static void random_s4d(int64_t H, int64_t M, double *log_dt, double *A, double *B, double *C) {
    for (int64_t h = 0; h < H; h++) {
        log_dt[h] = log(1e-3) + test_uniform() * (log(1e-1) - log(1e-3));
        for (int64_t m = 0; m < M; m++) {
            int64_t i = 2 * (h * M + m);
            A[i] = -0.5 * (0.5 + test_uniform());
            A[i + 1] = M_PI * (double)m * (0.8 + 0.4 * test_uniform());
            B[i] = test_normal(); B[i + 1] = test_normal();
            C[i] = test_normal(); C[i + 1] = test_normal();
        }
    }
}

static void closed_form(int64_t H, int64_t M, int64_t L, const double *log_dt, const double *A,
                        const double *B, const double *C, double *K) {
    for (int64_t h = 0; h < H; h++) {
        double dt = exp(log_dt[h]);
        for (int64_t l = 0; l < L; l++) {
            double complex s = 0;
            for (int64_t m = 0; m < M; m++) {
                int64_t i = 2 * (h * M + m);
                double complex a = A[i] + I * A[i + 1], b = B[i] + I * B[i + 1], c = C[i] + I * C[i + 1];
                s += c * b * (cexp(dt * a) - 1) / a * cexp((double)l * dt * a);
            }
            K[h * L + l] = 2 * creal(s);
        }
    }
}

static void test_forward(int64_t H, int64_t M, int64_t L) {
    double *ld = malloc(8 * (size_t)H), *A = malloc(16 * (size_t)(H * M)), *B = malloc(16 * (size_t)(H * M));
    double *C = malloc(16 * (size_t)(H * M)), *K = malloc(8 * (size_t)(H * L)), *ref = malloc(8 * (size_t)(H * L));
    random_s4d(H, M, ld, A, B, C);
    s4d_kernel_forward(H, M, L, ld, A, B, C, K);
    closed_form(H, M, L, ld, A, B, C, ref);
    CHECK_REL_ERR(rel_err_f64(K, ref, H * L), 1e-10, "s4d forward H %lld M %lld L %lld", (long long)H, (long long)M, (long long)L);
    /* float32 entry point on the same (rounded) inputs */
    float *ld32 = malloc(4 * (size_t)H), *A32 = malloc(8 * (size_t)(H * M)), *B32 = malloc(8 * (size_t)(H * M));
    float *C32 = malloc(8 * (size_t)(H * M)), *K32 = malloc(4 * (size_t)(H * L));
    for (int64_t i = 0; i < H; i++) { ld32[i] = (float)ld[i]; ld[i] = ld32[i]; }
    for (int64_t i = 0; i < 2 * H * M; i++) {
        A32[i] = (float)A[i]; A[i] = A32[i];
        B32[i] = (float)B[i]; B[i] = B32[i];
        C32[i] = (float)C[i]; C[i] = C32[i];
    }
    closed_form(H, M, L, ld, A, B, C, ref);
    s4d_kernel_forward_f32(H, M, L, ld32, A32, B32, C32, K32);
    CHECK_REL_ERR(rel_err_f32(K32, ref, H * L), 1e-6, "s4d forward f32 L %lld", (long long)L);
    free(ld); free(A); free(B); free(C); free(K); free(ref); free(ld32); free(A32); free(B32); free(C32); free(K32);
}

static double loss(int64_t H, int64_t M, int64_t L, const double *ld, const double *A, const double *B,
                   const double *C, const double *dK, double *K) {
    s4d_kernel_forward(H, M, L, ld, A, B, C, K);
    double s = 0;
    for (int64_t i = 0; i < H * L; i++) s += dK[i] * K[i];
    return s;
}

/* Central differences.  K depends on A only through dt A (and dt), so the step in A is scaled by
 * 1/dt of its channel: the same relative change of dt A whatever dt is (a fixed step at dt = 1e-3
 * would drown the small gradient in rounding). */
static void fd(const char *what, double *x, int64_t n, const double *grad, int64_t H, int64_t M,
               int64_t L, double *ld, double *A, double *B, double *C, double *dK, double *K) {
    double *g = malloc(8 * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        double x0 = x[i], e = 1e-6 * (1 + fabs(x0));
        if (x == A) e = 1e-6 * (1 + fabs(x0) * exp(ld[i / (2 * M)])) / exp(ld[i / (2 * M)]);
        x[i] = x0 + e;
        double lp = loss(H, M, L, ld, A, B, C, dK, K);
        x[i] = x0 - e;
        double lm = loss(H, M, L, ld, A, B, C, dK, K);
        x[i] = x0;
        g[i] = (lp - lm) / (2 * e);
    }
    CHECK_REL_ERR(rel_err_f64(grad, g, n), 1e-6, "%s vs central finite differences (M %lld L %lld)", what, (long long)M, (long long)L);
    free(g);
}

static void test_backward(int64_t H, int64_t M, int64_t L) {
    int64_t nm = 2 * H * M;
    double *ld = malloc(8 * (size_t)H), *A = malloc(8 * (size_t)nm), *B = malloc(8 * (size_t)nm), *C = malloc(8 * (size_t)nm);
    double *K = malloc(8 * (size_t)(H * L)), *dK = malloc(8 * (size_t)(H * L));
    double *dld = malloc(8 * (size_t)H), *dA = malloc(8 * (size_t)nm), *dB = malloc(8 * (size_t)nm), *dC = malloc(8 * (size_t)nm);
    random_s4d(H, M, ld, A, B, C);
    for (int64_t i = 0; i < H * L; i++) dK[i] = test_normal();
    s4d_kernel_backward(H, M, L, ld, A, B, C, dK, dld, dA, dB, dC);
    fd("dlog_dt", ld, H, dld, H, M, L, ld, A, B, C, dK, K);
    fd("dA", A, nm, dA, H, M, L, ld, A, B, C, dK, K);
    fd("dB", B, nm, dB, H, M, L, ld, A, B, C, dK, K);
    fd("dC", C, nm, dC, H, M, L, ld, A, B, C, dK, K);
    /* float32 entry point against the float64 gradients */
    float *ld32 = malloc(4 * (size_t)H), *A32 = malloc(4 * (size_t)nm), *B32 = malloc(4 * (size_t)nm), *C32 = malloc(4 * (size_t)nm);
    float *dK32 = malloc(4 * (size_t)(H * L));
    float *dld32 = malloc(4 * (size_t)H), *dA32 = malloc(4 * (size_t)nm), *dB32 = malloc(4 * (size_t)nm), *dC32 = malloc(4 * (size_t)nm);
    for (int64_t i = 0; i < H; i++) { ld32[i] = (float)ld[i]; ld[i] = ld32[i]; }
    for (int64_t i = 0; i < nm; i++) {
        A32[i] = (float)A[i]; A[i] = A32[i];
        B32[i] = (float)B[i]; B[i] = B32[i];
        C32[i] = (float)C[i]; C[i] = C32[i];
    }
    for (int64_t i = 0; i < H * L; i++) { dK32[i] = (float)dK[i]; dK[i] = dK32[i]; }
    s4d_kernel_backward(H, M, L, ld, A, B, C, dK, dld, dA, dB, dC);
    s4d_kernel_backward_f32(H, M, L, ld32, A32, B32, C32, dK32, dld32, dA32, dB32, dC32);
    CHECK_REL_ERR(rel_err_f32(dld32, dld, H), 1e-6, "f32 dlog_dt");
    CHECK_REL_ERR(rel_err_f32(dA32, dA, nm), 1e-6, "f32 dA");
    CHECK_REL_ERR(rel_err_f32(dB32, dB, nm), 1e-6, "f32 dB");
    CHECK_REL_ERR(rel_err_f32(dC32, dC, nm), 1e-6, "f32 dC");
    free(ld); free(A); free(B); free(C); free(K); free(dK); free(dld); free(dA); free(dB); free(dC);
    free(ld32); free(A32); free(B32); free(C32); free(dK32); free(dld32); free(dA32); free(dB32); free(dC32);
}

int main(void) {
    test_seed_from_env("test_kernel_s4d");
    test_forward(1, 1, 1);
    test_forward(3, 7, 37);
    test_forward(2, 32, 1000);     /* several blocks of powers, L not a power of two */
    test_forward(1, 64, 4096);
    test_backward(1, 1, 5);
    test_backward(2, 5, 300);      /* crosses a block boundary of the Horner pass */
    test_backward(1, 8, 777);
    return check_summary("test_kernel_s4d");
}
