/* test_kernel_fft_conv.c - FFT convolution (kernels/fft_conv.c) against the direct O(L^2) sum,
 * causal and bidirectional, float32 and float64; its backward pass against the direct adjoint
 * sums and against central finite differences of <dy, y> in float64. */
#include "check.h"
#include "ssm_kernel.h"

#include <stdlib.h>
#include <string.h>

static double *randn(int64_t n) {
    double *x = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = test_normal();
    return x;
}
static float *to32(const double *x, int64_t n) {
    float *y = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}
static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* forward: f32 and f64 FFT vs the direct sum (computed in double from the same values) */
static void test_forward(int64_t batch, int64_t H, int64_t L, int bidir) {
    int64_t nu = batch * H * L, nk = H * L;
    double *u = randn(nu), *K = randn(nk), *K2 = bidir ? randn(nk) : NULL, *D = randn(H);
    /* a decaying kernel, like a real SSM's */
    for (int64_t h = 0; h < H; h++)
        for (int64_t l = 0; l < L; l++) {
            K[h * L + l] *= exp(-3.0 * l / L);
            if (K2) K2[h * L + l] *= exp(-3.0 * l / L);
        }
    /* the reference uses exactly the float32-rounded inputs */
    float *u32 = to32(u, nu), *K32 = to32(K, nk), *K232 = bidir ? to32(K2, nk) : NULL, *D32 = to32(D, H);
    for (int64_t i = 0; i < nu; i++) u[i] = u32[i];
    for (int64_t i = 0; i < nk; i++) { K[i] = K32[i]; if (K2) K2[i] = K232[i]; }
    for (int64_t i = 0; i < H; i++) D[i] = D32[i];
    double *ref = malloc(sizeof(double) * (size_t)nu), *y = malloc(sizeof(double) * (size_t)nu);
    float *y32 = malloc(sizeof(float) * (size_t)nu);
    fft_conv_direct_f64(batch, H, L, u, K, K2, D, ref);
    fft_conv_forward(batch, H, L, u, K, K2, D, y);
    fft_conv_forward_f32(batch, H, L, u32, K32, K232, D32, y32);
    CHECK_REL_ERR(rel_err_f64(y, ref, nu), 1e-12, "f64 fft conv vs direct, batch %lld H %lld L %lld bidir %d",
                  (long long)batch, (long long)H, (long long)L, bidir);
    CHECK_REL_ERR(rel_err_f32(y32, ref, nu), 1e-5, "f32 fft conv vs direct, batch %lld H %lld L %lld bidir %d",
                  (long long)batch, (long long)H, (long long)L, bidir);
    /* without D: the skip term really is D u */
    fft_conv_forward(batch, H, L, u, K, K2, NULL, y);
    double err = 0, den = 0;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < L; t++) {
                int64_t i = (b * H + h) * L + t;
                double e = y[i] + D[h] * u[i] - ref[i];
                err += e * e; den += ref[i] * ref[i];
            }
    CHECK_REL_ERR(sqrt(err / den), 1e-12, "D = NULL leaves out exactly D u");
    free(u); free(K); free(K2); free(D); free(u32); free(K32); free(K232); free(D32);
    free(ref); free(y); free(y32);
}

/* backward: direct adjoint sums (every size) */
static void test_backward_adjoint(int64_t batch, int64_t H, int64_t L, int bidir) {
    int64_t nu = batch * H * L, nk = H * L;
    double *u = randn(nu), *K = randn(nk), *K2 = bidir ? randn(nk) : NULL, *D = randn(H), *dy = randn(nu);
    double *du = calloc((size_t)nu, 8), *dK = calloc((size_t)nk, 8), *dK2 = calloc((size_t)nk, 8), *dD = calloc((size_t)H, 8);
    double *rdu = calloc((size_t)nu, 8), *rdK = calloc((size_t)nk, 8), *rdK2 = calloc((size_t)nk, 8), *rdD = calloc((size_t)H, 8);
    fft_conv_backward(batch, H, L, u, K, K2, D, dy, du, dK, bidir ? dK2 : NULL, dD);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < H; h++) {
            const double *ub = u + (b * H + h) * L, *g = dy + (b * H + h) * L;
            double *r = rdu + (b * H + h) * L;
            for (int64_t t = 0; t < L; t++) {
                rdD[h] += g[t] * ub[t];
                r[t] += D[h] * g[t];
                for (int64_t s = 0; s <= t; s++) {      /* y[t] += K[t-s] u[s] */
                    r[s] += g[t] * K[h * L + t - s];
                    rdK[h * L + t - s] += g[t] * ub[s];
                }
                if (bidir)
                    for (int64_t s = t; s < L; s++) {   /* y[t] += K2[s-t] u[s] */
                        r[s] += g[t] * K2[h * L + s - t];
                        rdK2[h * L + s - t] += g[t] * ub[s];
                    }
            }
        }
    CHECK_REL_ERR(rel_err_f64(du, rdu, nu), 1e-12, "du, L %lld bidir %d", (long long)L, bidir);
    CHECK_REL_ERR(rel_err_f64(dK, rdK, nk), 1e-12, "dK, L %lld bidir %d", (long long)L, bidir);
    if (bidir) CHECK_REL_ERR(rel_err_f64(dK2, rdK2, nk), 1e-12, "dK2, L %lld", (long long)L);
    CHECK_REL_ERR(rel_err_f64(dD, rdD, H), 1e-12, "dD, L %lld bidir %d", (long long)L, bidir);

    /* float32 against the same references */
    float *u32 = to32(u, nu), *K32 = to32(K, nk), *K232 = bidir ? to32(K2, nk) : NULL, *D32 = to32(D, H), *dy32 = to32(dy, nu);
    float *du32 = calloc((size_t)nu, 4), *dK32 = calloc((size_t)nk, 4), *dK232 = calloc((size_t)nk, 4), *dD32 = calloc((size_t)H, 4);
    fft_conv_backward_f32(batch, H, L, u32, K32, K232, D32, dy32, du32, dK32, bidir ? dK232 : NULL, dD32);
    CHECK_REL_ERR(rel_err_f32(du32, rdu, nu), 1e-5, "f32 du, L %lld", (long long)L);
    CHECK_REL_ERR(rel_err_f32(dK32, rdK, nk), 1e-5, "f32 dK, L %lld", (long long)L);
    if (bidir) CHECK_REL_ERR(rel_err_f32(dK232, rdK2, nk), 1e-5, "f32 dK2, L %lld", (long long)L);
    CHECK_REL_ERR(rel_err_f32(dD32, rdD, H), 1e-5, "f32 dD, L %lld", (long long)L);
    free(u); free(K); free(K2); free(D); free(dy); free(du); free(dK); free(dK2); free(dD);
    free(rdu); free(rdK); free(rdK2); free(rdD);
    free(u32); free(K32); free(K232); free(D32); free(dy32); free(du32); free(dK32); free(dK232); free(dD32);
}

/* backward: central finite differences of loss = <dy, y(u, K, K2, D)> for every coordinate */
static double loss(int64_t batch, int64_t H, int64_t L, const double *u, const double *K,
                   const double *K2, const double *D, const double *dy, double *y) {
    fft_conv_forward(batch, H, L, u, K, K2, D, y);
    return dot(dy, y, batch * H * L);
}
static void fd_check(const char *what, double *x, int64_t n, const double *grad, int64_t batch,
                     int64_t H, int64_t L, double *u, double *K, double *K2, double *D, double *dy, double *y) {
    double *fd = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        double x0 = x[i], e = 1e-5 * (1 + fabs(x0));
        x[i] = x0 + e;
        double lp = loss(batch, H, L, u, K, K2, D, dy, y);
        x[i] = x0 - e;
        double lm = loss(batch, H, L, u, K, K2, D, dy, y);
        x[i] = x0;
        fd[i] = (lp - lm) / (2 * e);
    }
    CHECK_REL_ERR(rel_err_f64(grad, fd, n), 1e-6, "%s vs central finite differences", what);
    free(fd);
}
static void test_backward_fd(void) {
    int64_t batch = 2, H = 2, L = 17, nu = batch * H * L, nk = H * L;
    double *u = randn(nu), *K = randn(nk), *K2 = randn(nk), *D = randn(H), *dy = randn(nu), *y = malloc(8 * (size_t)nu);
    double *du = malloc(8 * (size_t)nu), *dK = malloc(8 * (size_t)nk), *dK2 = malloc(8 * (size_t)nk), *dD = malloc(8 * (size_t)H);
    fft_conv_backward(batch, H, L, u, K, K2, D, dy, du, dK, dK2, dD);
    fd_check("du", u, nu, du, batch, H, L, u, K, K2, D, dy, y);
    fd_check("dK", K, nk, dK, batch, H, L, u, K, K2, D, dy, y);
    fd_check("dK2", K2, nk, dK2, batch, H, L, u, K, K2, D, dy, y);
    fd_check("dD", D, H, dD, batch, H, L, u, K, K2, D, dy, y);
    free(u); free(K); free(K2); free(D); free(dy); free(y); free(du); free(dK); free(dK2); free(dD);
}

int main(void) {
    test_seed_from_env("test_kernel_fft_conv");
    int64_t Ls[] = {1, 2, 37, 300, 1024};
    for (int i = 0; i < 5; i++)
        for (int bidir = 0; bidir < 2; bidir++) {
            test_forward(1, 1, Ls[i], bidir);
            test_forward(3, 5, Ls[i], bidir);
            test_backward_adjoint(2, 3, Ls[i], bidir);
        }
    test_forward(2, 3, 4096, 0);
    test_backward_fd();
    return check_summary("test_kernel_fft_conv");
}
