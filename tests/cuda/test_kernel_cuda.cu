// test_kernel_cuda.cu - the S4D Vandermonde kernel and the cuFFT convolution against double CPU
// references on fresh random inputs (odd sizes), then one timing of each.  Exit status: failures.
#include <cuda_runtime.h>
#include <complex>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vector>
#include <algorithm>

#include "ssm_kernel_cuda.h"
#include "selective_scan_cuda.h"

#define CUDA_OK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_)); exit(100); } } while (0)
#define SSM_OK(x) do { if ((x) != 0) { fprintf(stderr, "%s: %s\n", #x, ssm_cuda_error()); exit(100); } } while (0)

static unsigned long long rng = 1;
static double urand() { rng = rng * 6364136223846793005ull + 1442695040888963407ull; return (double)(rng >> 11) * 0x1p-53; }
static float uni(double lo, double hi) { return (float)(lo + (hi - lo) * urand()); }
static int n_checks, n_failed;
static void check(double err, double tol, const char *what) {
    n_checks++;
    bool ok = err <= tol;
    if (!ok) n_failed++;
    printf("%s %-50s rel err %.2e (tol %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
}
static float *dev(const std::vector<float> &h) {
    float *d; CUDA_OK(cudaMalloc(&d, h.size() * 4 + 16));
    CUDA_OK(cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    return d;
}
static std::vector<float> host(const float *d, size_t n) {
    std::vector<float> h(n); CUDA_OK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost)); return h;
}
static double rel(const std::vector<float> &a, const std::vector<double> &b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void s4d_case(int64_t H, int64_t M, int64_t L) {
    std::vector<float> ldt(H), A(2 * H * M), B(2 * H * M), C(2 * H * M);
    for (auto &v : ldt) v = uni(log(0.001), log(0.1));
    for (int64_t i = 0; i < H * M; i++) {
        A[2 * i] = uni(-1, -0.05); A[2 * i + 1] = (float)(M_PI * (i % M)) + uni(-0.5, 0.5);
        B[2 * i] = uni(-1, 1); B[2 * i + 1] = uni(-1, 1); C[2 * i] = uni(-1, 1); C[2 * i + 1] = uni(-1, 1);
    }
    std::vector<double> ref(H * L);
    typedef std::complex<double> cd;
    for (int64_t h = 0; h < H; h++) {
        double dt = exp((double)ldt[h]);
        for (int64_t l = 0; l < L; l++) {
            cd acc = 0;
            for (int64_t m = 0; m < M; m++) {
                int64_t k = h * M + m;
                cd a(A[2 * k], A[2 * k + 1]), b(B[2 * k], B[2 * k + 1]), c(C[2 * k], C[2 * k + 1]);
                cd ab = std::exp(dt * a), bb = (ab - 1.0) / a * b;
                acc += c * bb * std::exp((double)l * dt * a);
            }
            ref[h * L + l] = 2 * acc.real();
        }
    }
    float *dl = dev(ldt), *dA = dev(A), *dB = dev(B), *dC = dev(C), *dK;
    CUDA_OK(cudaMalloc(&dK, H * L * 4)); CUDA_OK(cudaMemset(dK, 0xff, H * L * 4));
    SSM_OK(s4d_kernel_forward_cuda(H, M, L, dl, dA, dB, dC, dK, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    char nm[120]; snprintf(nm, sizeof nm, "s4d kernel H%lld M%lld L%lld", (long long)H, (long long)M, (long long)L);
    check(rel(host(dK, H * L), ref), 1e-4, nm);
    for (float *p : {dl, dA, dB, dC, dK}) CUDA_OK(cudaFree(p));
}

static void conv_case(int64_t batch, int64_t H, int64_t L, bool withD) {
    std::vector<float> u(batch * H * L), K(H * L), D(H);
    for (auto &v : u) v = uni(-1, 1);
    for (int64_t h = 0; h < H; h++) for (int64_t l = 0; l < L; l++) K[h * L + l] = uni(-1, 1) * expf(-0.01f * l);
    for (auto &v : D) v = uni(-1, 1);
    std::vector<double> ref(batch * H * L);
    for (int64_t b = 0; b < batch; b++) for (int64_t h = 0; h < H; h++) {
        const float *ur = &u[(b * H + h) * L];
        for (int64_t t = 0; t < L; t++) {
            double acc = withD ? (double)D[h] * ur[t] : 0;
            for (int64_t s = 0; s <= t; s++) acc += (double)K[h * L + s] * ur[t - s];
            ref[(b * H + h) * L + t] = acc;
        }
    }
    float *du = dev(u), *dK = dev(K), *dD = dev(D), *dy;
    CUDA_OK(cudaMalloc(&dy, u.size() * 4)); CUDA_OK(cudaMemset(dy, 0xff, u.size() * 4));
    SSM_OK(fft_conv_forward_cuda(batch, H, L, du, dK, withD ? dD : nullptr, dy, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    char nm[120]; snprintf(nm, sizeof nm, "fft conv b%lld H%lld L%lld%s", (long long)batch, (long long)H, (long long)L, withD ? " D" : "");
    check(rel(host(dy, u.size()), ref), 1e-5, nm);
    for (float *p : {du, dK, dD, dy}) CUDA_OK(cudaFree(p));
}

static float timed(int which, int64_t a1, int64_t a2, int64_t a3) {
    // which 0: s4d (H, M, L); 1: conv (batch, H, L)
    size_t n1 = which ? a1 * a2 * a3 : a1, n2 = which ? a2 * a3 : 2 * a1 * a2;
    float *p1, *p2, *p3, *p4, *out;
    CUDA_OK(cudaMalloc(&p1, n1 * 4)); CUDA_OK(cudaMalloc(&p2, n2 * 4)); CUDA_OK(cudaMalloc(&p3, n2 * 4)); CUDA_OK(cudaMalloc(&p4, n2 * 4));
    CUDA_OK(cudaMemset(p1, 0, n1 * 4)); CUDA_OK(cudaMemset(p2, 0, n2 * 4)); CUDA_OK(cudaMemset(p3, 0, n2 * 4)); CUDA_OK(cudaMemset(p4, 0, n2 * 4));
    size_t no = which ? n1 : a1 * a3;
    CUDA_OK(cudaMalloc(&out, no * 4));
    cudaEvent_t e0, e1; CUDA_OK(cudaEventCreate(&e0)); CUDA_OK(cudaEventCreate(&e1));
    std::vector<float> ts;
    for (int i = 0; i < 13; i++) {
        CUDA_OK(cudaEventRecord(e0));
        if (which) SSM_OK(fft_conv_forward_cuda(a1, a2, a3, p1, p2, p3, out, nullptr));
        else SSM_OK(s4d_kernel_forward_cuda(a1, a2, a3, p1, p2, p3, p4, out, nullptr));
        CUDA_OK(cudaEventRecord(e1)); CUDA_OK(cudaEventSynchronize(e1));
        float ms; CUDA_OK(cudaEventElapsedTime(&ms, e0, e1)); if (i >= 3) ts.push_back(ms);
    }
    std::sort(ts.begin(), ts.end());
    for (float *p : {p1, p2, p3, p4, out}) CUDA_OK(cudaFree(p));
    return ts[ts.size() / 2];
}

int main(int argc, char **argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    unsigned long long seed = argc > 1 ? strtoull(argv[1], 0, 10) : (unsigned long long)time(nullptr);
    rng = seed * 2862933555777941757ull + 3037000493ull;
    printf("seed %llu\n", seed);
    if (!ssm_cuda_available()) { fprintf(stderr, "test_kernel_cuda: %s\n", ssm_cuda_error()); return 100; }
    s4d_case(1, 1, 1); s4d_case(3, 7, 1000); s4d_case(2, 64, 4097); s4d_case(5, 300, 333);
    conv_case(1, 1, 1, true); conv_case(2, 3, 1000, true); conv_case(3, 2, 777, false); conv_case(1, 5, 4099, true);
    printf("timing (median of 10, zeros are fine here: no data-dependent paths)\n");
    printf("s4d kernel H1536 M32 L16384: %.3f ms\n", timed(0, 1536, 32, 16384));
    printf("fft conv b8 H1536 L2048: %.3f ms (u + y = %.0f MB)\n", timed(1, 8, 1536, 2048), 2.0 * 8 * 1536 * 2048 * 4 / 1e6);
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed > 100 ? 100 : n_failed;
}
