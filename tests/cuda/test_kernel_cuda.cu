// test_kernel_cuda.cu - the GPU kernels of ssm_kernel_cuda.h against double CPU references written
// here (direct sums, no blocking, no FFT), on fresh random inputs of odd sizes, then timings with
// CUDA events.  Exit status: the number of failed checks (100 on a CUDA error).
//   S4D kernel forward and gradient, the general Vandermonde kernel (complex and real modes),
//   the FFT convolution forward and backward, the DPLR Cauchy kernel (dense bilinear reference).
// Usage: test_kernel_cuda [SEED] [check|bench|all]
#include <cuda_runtime.h>
#include <algorithm>
#include <complex>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vector>

#include "ssm_kernel_cuda.h"
#include "selective_scan_cuda.h"

#define CUDA_OK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_)); exit(100); } } while (0)
#define SSM_OK(x) do { if ((x) != 0) { fprintf(stderr, "%s: %s\n", #x, ssm_cuda_error()); exit(100); } } while (0)

typedef std::complex<double> cd;
typedef std::vector<float> vf;
typedef std::vector<double> vd;

static unsigned long long rng = 1;
static double urand() { rng = rng * 6364136223846793005ull + 1442695040888963407ull; return (double)(rng >> 11) * 0x1p-53; }
static float uni(double lo, double hi) { return (float)(lo + (hi - lo) * urand()); }
static int n_checks, n_failed;
static void check(double err, double tol, const char *what) {
    n_checks++;
    bool ok = err <= tol;   // NaN fails
    if (!ok) n_failed++;
    printf("%s %-62s rel err %.2e (tol %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
}
static float *dev(const vf &h) {
    float *d; CUDA_OK(cudaMalloc(&d, h.size() * 4 + 16));
    CUDA_OK(cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    return d;
}
static double *devd(const vd &h) {
    double *d; CUDA_OK(cudaMalloc(&d, h.size() * 8 + 16));
    CUDA_OK(cudaMemcpy(d, h.data(), h.size() * 8, cudaMemcpyHostToDevice));
    return d;
}
static float *poisoned(size_t n) {   // NaN-filled output: anything not written shows up
    float *d; CUDA_OK(cudaMalloc(&d, n * 4 + 16)); CUDA_OK(cudaMemset(d, 0xff, n * 4 + 16)); return d;
}
static vf host(const float *d, size_t n) {
    vf h(n); CUDA_OK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost)); return h;
}
// normwise ||a - b|| / ||b||
static double rel(const vf &a, const vd &b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static cd at(const vf &v, int64_t i) { return cd(v[2 * i], v[2 * i + 1]); }

// ---- S4D: random parameters like S4D-Lin (Re A < 0, Im A ~ pi m), dt log-uniform in [1e-3, 1e-1]
struct S4D { int64_t H, M, L; vf ldt, A, B, C; };
static S4D s4d_random(int64_t H, int64_t M, int64_t L) {
    S4D s{H, M, L, vf(H), vf(2 * H * M), vf(2 * H * M), vf(2 * H * M)};
    for (auto &v : s.ldt) v = uni(log(0.001), log(0.1));
    for (int64_t i = 0; i < H * M; i++) {
        s.A[2 * i] = uni(-1, -0.05); s.A[2 * i + 1] = (float)(M_PI * (i % M)) + uni(-0.5, 0.5);
        s.B[2 * i] = uni(-1, 1); s.B[2 * i + 1] = uni(-1, 1); s.C[2 * i] = uni(-1, 1); s.C[2 * i + 1] = uni(-1, 1);
    }
    return s;
}

static void s4d_case(int64_t H, int64_t M, int64_t L) {
    S4D s = s4d_random(H, M, L);
    vd ref(H * L);
    for (int64_t h = 0; h < H; h++) {
        double dt = exp((double)s.ldt[h]);
        for (int64_t l = 0; l < L; l++) {
            cd acc = 0;
            for (int64_t m = 0; m < M; m++) {
                int64_t k = h * M + m;
                cd a = at(s.A, k), ab = std::exp(dt * a), bb = (ab - 1.0) / a * at(s.B, k);
                acc += at(s.C, k) * bb * std::exp((double)l * dt * a);
            }
            ref[h * L + l] = 2 * acc.real();
        }
    }
    float *dl = dev(s.ldt), *dA = dev(s.A), *dB = dev(s.B), *dC = dev(s.C), *dK = poisoned(H * L);
    SSM_OK(s4d_kernel_forward_cuda(H, M, L, dl, dA, dB, dC, dK, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    char nm[120]; snprintf(nm, sizeof nm, "s4d kernel H%lld M%lld L%lld", (long long)H, (long long)M, (long long)L);
    check(rel(host(dK, H * L), ref), 1e-4, nm);
    for (float *p : {dl, dA, dB, dC, dK}) CUDA_OK(cudaFree(p));
}

// Reference gradient of f = sum_{h,l} dK K for one channel, directly per l (no Horner):
// x = dt a, phi = (e^x - 1)/a, S0 = sum_l dK_l e^{lx}, S1 = sum_l l dK_l e^{lx};
// dF/dc = 2 b phi S0, dF/db = 2 c phi S0, dF/da = 2 c b (dphi/da S0 + phi dt S1),
// dF/ddt = 2 c b (e^x S0 + phi a S1); gradients are conj(dF/dz), dlog_dt = dt Re sum dF/ddt.
static void s4d_grad_ref(const S4D &s, const vf &dK, vd &dld, vd &dA, vd &dB, vd &dC) {
    int64_t H = s.H, M = s.M, L = s.L;
    dld.assign(H, 0); dA.assign(2 * H * M, 0); dB.assign(2 * H * M, 0); dC.assign(2 * H * M, 0);
    for (int64_t h = 0; h < H; h++) {
        double dt = exp((double)s.ldt[h]), ddt = 0;
        for (int64_t m = 0; m < M; m++) {
            int64_t k = h * M + m;
            cd a = at(s.A, k), b = at(s.B, k), c = at(s.C, k), x = dt * a, ex = std::exp(x);
            cd phi = (ex - 1.0) / a, dphi = (x * ex - (ex - 1.0)) / (a * a), S0 = 0, S1 = 0;
            for (int64_t l = 0; l < L; l++) {
                cd p = std::exp((double)l * x) * (double)dK[h * L + l];
                S0 += p; S1 += (double)l * p;
            }
            cd fc = 2.0 * b * phi * S0, fb = 2.0 * c * phi * S0, fa = 2.0 * c * b * (dphi * S0 + phi * dt * S1);
            ddt += (2.0 * c * b * (ex * S0 + phi * a * S1)).real();
            dC[2 * k] = fc.real(); dC[2 * k + 1] = -fc.imag();
            dB[2 * k] = fb.real(); dB[2 * k + 1] = -fb.imag();
            dA[2 * k] = fa.real(); dA[2 * k + 1] = -fa.imag();
        }
        dld[h] = dt * ddt;
    }
}
// f = sum dK K in double, for the finite-difference check of the reference itself
static double s4d_loss(const S4D &s, const vd &ldt, const vd &A, const vd &B, const vd &C, const vf &dK) {
    double f = 0;
    for (int64_t h = 0; h < s.H; h++) {
        double dt = exp(ldt[h]);
        for (int64_t m = 0; m < s.M; m++) {
            int64_t k = h * s.M + m;
            cd a(A[2 * k], A[2 * k + 1]), b(B[2 * k], B[2 * k + 1]), c(C[2 * k], C[2 * k + 1]);
            cd ct = c * b * (std::exp(dt * a) - 1.0) / a;
            for (int64_t l = 0; l < s.L; l++) f += dK[h * s.L + l] * 2 * (ct * std::exp((double)l * dt * a)).real();
        }
    }
    return f;
}
static void s4d_grad_fd_selftest() {
    S4D s = s4d_random(2, 3, 50);
    vf dK(s.H * s.L); for (auto &v : dK) v = uni(-1, 1);
    vd dld, dA, dB, dC; s4d_grad_ref(s, dK, dld, dA, dB, dC);
    vd p[4] = {vd(s.ldt.begin(), s.ldt.end()), vd(s.A.begin(), s.A.end()), vd(s.B.begin(), s.B.end()), vd(s.C.begin(), s.C.end())};
    const vd *g[4] = {&dld, &dA, &dB, &dC};
    double num = 0, den = 0, eps = 1e-6;
    for (int w = 0; w < 4; w++)
        for (size_t i = 0; i < p[w].size(); i++) {
            double keep = p[w][i];
            p[w][i] = keep + eps; double fp = s4d_loss(s, p[0], p[1], p[2], p[3], dK);
            p[w][i] = keep - eps; double fm = s4d_loss(s, p[0], p[1], p[2], p[3], dK);
            p[w][i] = keep;
            double fd = (fp - fm) / (2 * eps), an = (*g[w])[i];
            num += (fd - an) * (fd - an); den += an * an;
        }
    check(sqrt(num / den), 1e-6, "s4d gradient reference vs finite differences (CPU)");
}

static void s4d_grad_case(int64_t H, int64_t M, int64_t L) {
    S4D s = s4d_random(H, M, L);
    vf dK(H * L); for (auto &v : dK) v = uni(-1, 1);
    vd rld, rA, rB, rC; s4d_grad_ref(s, dK, rld, rA, rB, rC);
    float *dl = dev(s.ldt), *dA = dev(s.A), *dB = dev(s.B), *dC = dev(s.C), *ddK = dev(dK);
    float *gl = poisoned(H), *gA = poisoned(2 * H * M), *gB = poisoned(2 * H * M), *gC = poisoned(2 * H * M);
    SSM_OK(s4d_kernel_backward_cuda(H, M, L, dl, dA, dB, dC, ddK, gl, gA, gB, gC, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const char *names[4] = {"dlog_dt", "dA", "dB", "dC"};
    float *outs[4] = {gl, gA, gB, gC};
    vd *refs[4] = {&rld, &rA, &rB, &rC};
    for (int w = 0; w < 4; w++) {
        char nm[120]; snprintf(nm, sizeof nm, "s4d gradient %s H%lld M%lld L%lld", names[w], (long long)H, (long long)M, (long long)L);
        check(rel(host(outs[w], refs[w]->size()), *refs[w]), 1e-4, nm);
    }
    for (float *p : {dl, dA, dB, dC, ddK, gl, gA, gB, gC}) CUDA_OK(cudaFree(p));
}

// General Vandermonde: complex modes (scale 2) or real modes (scale 1; Abar < 0 and Abar = 0 included)
static void vand_case(int64_t H, int64_t M, int64_t L, bool real_modes) {
    vd la(2 * H * M), ct(2 * H * M), ref(H * L, 0.0);
    std::vector<cd> abar(H * M);
    for (int64_t i = 0; i < H * M; i++) {
        cd a, c;
        if (real_modes) {
            double r = i % 5 == 4 ? 0.0 : uni(-0.999, 0.999);
            a = r; c = uni(-1, 1);
            la[2 * i] = r == 0 ? -INFINITY : log(fabs(r)); la[2 * i + 1] = r < 0 ? M_PI : 0;
        } else {
            a = std::polar((double)uni(0.5, 0.999), (double)uni(-M_PI, M_PI)); c = cd(uni(-1, 1), uni(-1, 1));
            cd l = std::log(a); la[2 * i] = l.real(); la[2 * i + 1] = l.imag();
        }
        abar[i] = a; ct[2 * i] = c.real(); ct[2 * i + 1] = c.imag();
    }
    for (int64_t h = 0; h < H; h++)
        for (int64_t m = 0; m < M; m++) {
            cd p = cd(ct[2 * (h * M + m)], ct[2 * (h * M + m) + 1]);
            for (int64_t l = 0; l < L; l++) { ref[h * L + l] += (real_modes ? 1 : 2) * p.real(); p *= abar[h * M + m]; }
        }
    double *dla = devd(la), *dct = devd(ct);
    float *dK = poisoned(H * L);
    SSM_OK(vandermonde_kernel_cuda(H, M, L, dla, dct, real_modes ? 1.f : 2.f, dK, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    char nm[120]; snprintf(nm, sizeof nm, "vandermonde %s H%lld M%lld L%lld", real_modes ? "real" : "complex", (long long)H, (long long)M, (long long)L);
    check(rel(host(dK, H * L), ref), 1e-4, nm);
    CUDA_OK(cudaFree(dla)); CUDA_OK(cudaFree(dct)); CUDA_OK(cudaFree(dK));
}

// ---- FFT convolution, against the direct O(L^2) sums in double
static void conv_case(int64_t batch, int64_t H, int64_t L, bool withD) {
    vf u(batch * H * L), K(H * L), D(H), dy(batch * H * L);
    for (auto &v : u) v = uni(-1, 1);
    for (auto &v : dy) v = uni(-1, 1);
    for (int64_t h = 0; h < H; h++) for (int64_t l = 0; l < L; l++) K[h * L + l] = uni(-1, 1) * expf(-0.01f * l);
    for (auto &v : D) v = uni(-1, 1);
    vd ref(batch * H * L), rdu(batch * H * L), rdK(H * L, 0.0), rdD(H, 0.0);
    for (int64_t b = 0; b < batch; b++) for (int64_t h = 0; h < H; h++) {
        const float *ur = &u[(b * H + h) * L], *yr = &dy[(b * H + h) * L];
        for (int64_t t = 0; t < L; t++) {
            double acc = withD ? (double)D[h] * ur[t] : 0, g = withD ? (double)D[h] * yr[t] : 0;
            for (int64_t s = 0; s <= t; s++) acc += (double)K[h * L + s] * ur[t - s];
            for (int64_t s = t; s < L; s++) g += (double)yr[s] * K[h * L + s - t];   // du[t] = sum_s dy[s] K[s-t]
            for (int64_t s = t; s < L; s++) rdK[h * L + t] += (double)yr[s] * ur[s - t];   // dK[t] = sum_s dy[s] u[s-t]
            ref[(b * H + h) * L + t] = acc; rdu[(b * H + h) * L + t] = g;
            rdD[h] += (double)yr[t] * ur[t];
        }
    }
    float *du = dev(u), *dK = dev(K), *dD = dev(D), *ddy = dev(dy), *y = poisoned(u.size());
    float *gu = poisoned(u.size()), *gK = poisoned(H * L), *gD = poisoned(H);
    SSM_OK(fft_conv_forward_cuda(batch, H, L, du, dK, withD ? dD : nullptr, y, nullptr));
    SSM_OK(fft_conv_backward_cuda(batch, H, L, du, dK, withD ? dD : nullptr, ddy, gu, gK, gD, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    char nm[120], sh[60];
    snprintf(sh, sizeof sh, "b%lld H%lld L%lld%s", (long long)batch, (long long)H, (long long)L, withD ? " D" : "");
    snprintf(nm, sizeof nm, "fft conv %s", sh); check(rel(host(y, u.size()), ref), 1e-5, nm);
    snprintf(nm, sizeof nm, "fft conv backward du %s", sh); check(rel(host(gu, u.size()), rdu), 1e-5, nm);
    snprintf(nm, sizeof nm, "fft conv backward dK %s", sh); check(rel(host(gK, H * L), rdK), 1e-5, nm);
    snprintf(nm, sizeof nm, "fft conv backward dD %s", sh); check(rel(host(gD, H), rdD), 1e-5, nm);
    for (float *p : {du, dK, dD, ddy, y, gu, gK, gD}) CUDA_OK(cudaFree(p));
}

// ---- DPLR: dense bilinear reference in the full basis (N = 2M: [x; conj x]):
// A = diag(Lambda) - sum_r P_r P_r^*, Abar = (I - dt/2 A)^{-1} (I + dt/2 A), Bbar = (I - dt/2 A)^{-1} dt B,
// K_l = C^T Abar^l Bbar (C not conjugated, as kernel_cauchy.c).
static void solve_dense(int n, std::vector<cd> &a, std::vector<cd> &b, int nrhs) {   // a (n,n), b (n,nrhs) row-major
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++) if (std::abs(a[i * n + k]) > std::abs(a[p * n + k])) p = i;
        if (p != k) {
            for (int j = 0; j < n; j++) std::swap(a[k * n + j], a[p * n + j]);
            for (int j = 0; j < nrhs; j++) std::swap(b[k * nrhs + j], b[p * nrhs + j]);
        }
        for (int i = k + 1; i < n; i++) {
            cd f = a[i * n + k] / a[k * n + k];
            if (f == 0.0) continue;
            for (int j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j];
            for (int j = 0; j < nrhs; j++) b[i * nrhs + j] -= f * b[k * nrhs + j];
        }
    }
    for (int k = n - 1; k >= 0; k--)
        for (int j = 0; j < nrhs; j++) {
            cd s = b[k * nrhs + j];
            for (int i = k + 1; i < n; i++) s -= a[k * n + i] * b[i * nrhs + j];
            b[k * nrhs + j] = s / a[k * n + k];
        }
}
struct DPLR { int64_t H, M, R, L; vf dt, lam, P, B, C; };
static DPLR dplr_random(int64_t H, int64_t M, int64_t R, int64_t L) {
    DPLR d{H, M, R, L, vf(H), vf(2 * H * M), vf(2 * H * R * M + 2), vf(2 * H * M), vf(2 * H * M)};
    for (auto &v : d.dt) v = (float)exp(uni(log(0.001), log(0.1)));
    for (int64_t i = 0; i < H * M; i++) {
        d.lam[2 * i] = uni(-1, -0.1); d.lam[2 * i + 1] = (float)(M_PI * (i % M)) + uni(-0.5, 0.5);
        d.B[2 * i] = uni(-1, 1); d.B[2 * i + 1] = uni(-1, 1); d.C[2 * i] = uni(-1, 1); d.C[2 * i + 1] = uni(-1, 1);
    }
    for (int64_t i = 0; i < 2 * H * R * M; i++) d.P[i] = uni(-0.5, 0.5);
    return d;
}
static vd dplr_ref(const DPLR &d) {
    const int64_t H = d.H, M = d.M, R = d.R, L = d.L;
    const vf &dt = d.dt, &lam = d.lam, &P = d.P, &B = d.B, &C = d.C;
    vd ref(H * L);
    int n = (int)(2 * M);
    for (int64_t h = 0; h < H; h++) {
        std::vector<cd> Af(n * n, 0.0), Pf(R * n), Bf(n), Cf(n);
        for (int64_t m = 0; m < M; m++) {
            cd l = at(lam, h * M + m), b = at(B, h * M + m), c = at(C, h * M + m);
            Af[m * n + m] = l; Af[(m + M) * n + m + M] = std::conj(l);
            Bf[m] = b; Bf[m + M] = std::conj(b); Cf[m] = c; Cf[m + M] = std::conj(c);
            for (int64_t r = 0; r < R; r++) { cd p = at(P, (h * R + r) * M + m); Pf[r * n + m] = p; Pf[r * n + m + M] = std::conj(p); }
        }
        for (int64_t r = 0; r < R; r++)
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) Af[i * n + j] -= Pf[r * n + i] * std::conj(Pf[r * n + j]);
        double hh = dt[h] / 2.0;
        std::vector<cd> M1(n * n), rhs(n * (n + 1));   // rhs = [M2 | dt B]
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                M1[i * n + j] = (i == j ? 1.0 : 0.0) - hh * Af[i * n + j];
                rhs[i * (n + 1) + j] = (i == j ? 1.0 : 0.0) + hh * Af[i * n + j];
            }
            rhs[i * (n + 1) + n] = (double)dt[h] * Bf[i];
        }
        solve_dense(n, M1, rhs, n + 1);
        std::vector<cd> x(n), nx(n);
        for (int i = 0; i < n; i++) x[i] = rhs[i * (n + 1) + n];
        for (int64_t l = 0; l < L; l++) {
            cd s = 0;
            for (int i = 0; i < n; i++) s += Cf[i] * x[i];
            ref[h * L + l] = s.real();
            for (int i = 0; i < n; i++) { cd t = 0; for (int j = 0; j < n; j++) t += rhs[i * (n + 1) + j] * x[j]; nx[i] = t; }
            x.swap(nx);
        }
    }
    return ref;
}
static void cauchy_case(int64_t H, int64_t M, int64_t R, int64_t L) {
    DPLR d = dplr_random(H, M, R, L);
    vd ref = dplr_ref(d);
    const vf &dt = d.dt, &lam = d.lam, &P = d.P, &B = d.B, &C = d.C;
    float *ddt = dev(dt), *dl = dev(lam), *dP = dev(P), *dB = dev(B), *dC = dev(C), *dK = poisoned(H * L);
    SSM_OK(cauchy_kernel_dplr_cuda(H, M, R, L, ddt, dl, dP, dB, dC, dK, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    char nm[120]; snprintf(nm, sizeof nm, "cauchy dplr H%lld M%lld R%lld L%lld", (long long)H, (long long)M, (long long)R, (long long)L);
    check(rel(host(dK, H * L), ref), 1e-4, nm);
    for (float *p : {ddt, dl, dP, dB, dC, dK}) CUDA_OK(cudaFree(p));
}

#ifdef CPU_SELFTEST
// The references above against the CPU library (kernels/ssm_kernel.h, double): run on a machine
// without a GPU, `test_kernel_cuda SEED selftest` (built with -DCPU_SELFTEST and build/libssm.a).
extern "C" {
#include "ssm_kernel.h"
}
static vd to_d(const vf &v) { return vd(v.begin(), v.end()); }
static double reld(const vd &a, const vd &b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static void cpu_selftest() {
    for (auto sh : std::vector<std::vector<int64_t>>{{1, 1, 1, 1}, {2, 3, 1, 1000}, {3, 16, 2, 777}, {1, 300, 1, 333},
                                                      {2, 5, 0, 64}, {1, 7, 3, 4097}, {1, 8, 8, 100}, {2, 32, 1, 2}}) {
        DPLR d = dplr_random(sh[0], sh[1], sh[2], sh[3]);
        vd ref = dplr_ref(d), K(d.H * d.L);
        cauchy_kernel_dplr(d.H, d.M, d.R, d.L, to_d(d.dt).data(), to_d(d.lam).data(), to_d(d.P).data(), to_d(d.B).data(),
                           to_d(d.C).data(), K.data());
        char nm[120]; snprintf(nm, sizeof nm, "CPU cauchy_kernel_dplr vs dense reference H%lld M%lld R%lld L%lld",
                               (long long)d.H, (long long)d.M, (long long)d.R, (long long)d.L);
        check(reld(K, ref), 1e-9, nm);
    }
    for (auto sh : std::vector<std::vector<int64_t>>{{3, 7, 1000}, {2, 64, 4097}, {1, 3, 2049}}) {
        S4D s = s4d_random(sh[0], sh[1], sh[2]);
        vf dK(s.H * s.L); for (auto &v : dK) v = uni(-1, 1);
        vd rld, rA, rB, rC, g[4] = {vd(s.H), vd(2 * s.H * s.M), vd(2 * s.H * s.M), vd(2 * s.H * s.M)};
        s4d_grad_ref(s, dK, rld, rA, rB, rC);
        s4d_kernel_backward(s.H, s.M, s.L, to_d(s.ldt).data(), to_d(s.A).data(), to_d(s.B).data(), to_d(s.C).data(),
                            to_d(dK).data(), g[0].data(), g[1].data(), g[2].data(), g[3].data());
        vd *r[4] = {&rld, &rA, &rB, &rC};
        for (int w = 0; w < 4; w++) {
            char nm[120]; snprintf(nm, sizeof nm, "CPU s4d_kernel_backward vs reference, output %d, L%lld", w, (long long)s.L);
            check(reld(g[w], *r[w]), 1e-9, nm);
        }
    }
}
#endif

// ---- timings: CUDA events, 3 warm-ups, median of 20; random inputs
static vf rand_vec(size_t n, double lo, double hi) { vf v(n); for (auto &x : v) x = uni(lo, hi); return v; }
template <typename F> static float median_ms(F run) {
    cudaEvent_t e0, e1; CUDA_OK(cudaEventCreate(&e0)); CUDA_OK(cudaEventCreate(&e1));
    std::vector<float> ts;
    for (int i = 0; i < 23; i++) {
        CUDA_OK(cudaEventRecord(e0)); run(); CUDA_OK(cudaEventRecord(e1)); CUDA_OK(cudaEventSynchronize(e1));
        float ms; CUDA_OK(cudaEventElapsedTime(&ms, e0, e1)); if (i >= 3) ts.push_back(ms);
    }
    CUDA_OK(cudaEventDestroy(e0)); CUDA_OK(cudaEventDestroy(e1));
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}
static void row(const char *what, float ms, double floor_ms, const char *floor_what) {
    printf("| %-40s | %8.3f | %8.3f | %5.1fx | %s |\n", what, ms, floor_ms, ms / floor_ms, floor_what);
}
static void bench() {
    // device copy bandwidth (read + write) for the memory floors
    size_t nb = 1ull << 30; void *a, *b; CUDA_OK(cudaMalloc(&a, nb)); CUDA_OK(cudaMalloc(&b, nb));
    float cms = median_ms([&] { CUDA_OK(cudaMemcpyAsync(b, a, nb, cudaMemcpyDeviceToDevice)); });
    CUDA_OK(cudaFree(a)); CUDA_OK(cudaFree(b));
    double bw = 2.0 * nb / (cms * 1e-3);   // bytes/s
    int dev_id; cudaDeviceProp prop; CUDA_OK(cudaGetDevice(&dev_id)); CUDA_OK(cudaGetDeviceProperties(&prop, dev_id));
    int clk_khz = 0; cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, dev_id);
    double fp32 = (double)prop.multiProcessorCount * 128 * clk_khz * 1e3;   // FP32 lane-ops/s
    printf("device %s, %d SMs, %.0f MHz; copy %.2f TB/s; FP32 %.1f T ops/s\n", prop.name, prop.multiProcessorCount,
           clk_khz / 1e3, bw / 1e12, fp32 / 1e12);
    printf("| %-40s | %8s | %8s | %6s | %s |\n", "kernel", "ms", "floor", "ratio", "floor from");
    char fw[200];
    {   // S4D kernel forward and backward, H1536 M32 L16384
        int64_t H = 1536, M = 32, L = 16384;
        S4D s = s4d_random(H, M, L);
        float *dl = dev(s.ldt), *dA = dev(s.A), *dB = dev(s.B), *dC = dev(s.C), *dK = poisoned(H * L);
        float *ddK = dev(rand_vec(H * L, -1, 1)), *g = poisoned(H + 6 * H * M);
        double ops = (double)H * M * L, fl = std::max(5 * ops / fp32, 4.0 * H * L / bw) * 1e3;
        snprintf(fw, sizeof fw, "5 FP32 ops per (h,l,m): %.3f ms; K write %.3f ms", 5 * ops / fp32 * 1e3, 4.0 * H * L / bw * 1e3);
        row("s4d kernel fwd H1536 M32 L16384", median_ms([&] { SSM_OK(s4d_kernel_forward_cuda(H, M, L, dl, dA, dB, dC, dK, nullptr)); }), fl, fw);
        fl = std::max(8 * ops / fp32, 4.0 * H * L / bw) * 1e3;
        snprintf(fw, sizeof fw, "8 FP32 ops per (h,l,m): %.3f ms; dK read %.3f ms", 8 * ops / fp32 * 1e3, 4.0 * H * L / bw * 1e3);
        row("s4d kernel bwd H1536 M32 L16384", median_ms([&] { SSM_OK(s4d_kernel_backward_cuda(H, M, L, dl, dA, dB, dC, ddK, g, g + H, g + H + 2 * H * M, g + H + 4 * H * M, nullptr)); }), fl, fw);
        for (float *p : {dl, dA, dB, dC, dK, ddK, g}) CUDA_OK(cudaFree(p));
    }
    {   // FFT convolution b8 H1536 L2048
        int64_t bt = 8, H = 1536, L = 2048;
        size_t n = bt * H * L;
        float *u = dev(rand_vec(n, -1, 1)), *dy = dev(rand_vec(n, -1, 1)), *K = dev(rand_vec(H * L, -0.1, 0.1));
        float *D = dev(rand_vec(H, -1, 1)), *y = poisoned(n), *du = poisoned(n), *dK = poisoned(H * L), *dD = poisoned(H);
        snprintf(fw, sizeof fw, "read u, write y: %.0f MB", 8.0 * n / 1e6);
        row("fft conv fwd b8 H1536 L2048", median_ms([&] { SSM_OK(fft_conv_forward_cuda(bt, H, L, u, K, D, y, nullptr)); }), 8.0 * n / bw * 1e3, fw);
        snprintf(fw, sizeof fw, "read u, dy, write du: %.0f MB", 12.0 * n / 1e6);
        row("fft conv bwd b8 H1536 L2048", median_ms([&] { SSM_OK(fft_conv_backward_cuda(bt, H, L, u, K, D, dy, du, dK, dD, nullptr)); }), 12.0 * n / bw * 1e3, fw);
        for (float *p : {u, dy, K, D, y, du, dK, dD}) CUDA_OK(cudaFree(p));
    }
    // DPLR Cauchy kernel: the Cauchy sums cost H (L/2) M (R+1)^2 x ~4 FMA + 2 reciprocals per (k, n);
    // Ctilde needs L dependent steps per channel (latency, not throughput)
    int64_t shapes[2][4] = {{256, 32, 1, 4096}, {1536, 32, 1, 16384}};
    for (auto &sh : shapes) {
        int64_t H = sh[0], M = sh[1], R = sh[2], L = sh[3];
        vf dt(H), lam(2 * H * M), P = rand_vec(2 * H * R * M, -0.5, 0.5), B = rand_vec(2 * H * M, -1, 1), C = rand_vec(2 * H * M, -1, 1);
        for (auto &v : dt) v = (float)exp(uni(log(0.001), log(0.1)));
        for (int64_t i = 0; i < H * M; i++) { lam[2 * i] = -0.5f; lam[2 * i + 1] = (float)(M_PI * (i % M)); }
        float *ddt = dev(dt), *dl = dev(lam), *dP = dev(P), *dB = dev(B), *dC = dev(C), *dK = poisoned(H * L);
        double ops = (double)H * (L / 2) * M * (4.0 * (R + 1) * (R + 1) + 16);
        snprintf(fw, sizeof fw, "Cauchy sums %.3f ms (FP32); + %lld dependent steps per channel", ops / fp32 * 1e3, (long long)L);
        char nm[80]; snprintf(nm, sizeof nm, "cauchy dplr H%lld M%lld R%lld L%lld", (long long)H, (long long)M, (long long)R, (long long)L);
        row(nm, median_ms([&] { SSM_OK(cauchy_kernel_dplr_cuda(H, M, R, L, ddt, dl, dP, dB, dC, dK, nullptr)); }), ops / fp32 * 1e3, fw);
        for (float *p : {ddt, dl, dP, dB, dC, dK}) CUDA_OK(cudaFree(p));
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    unsigned long long seed = argc > 1 ? strtoull(argv[1], 0, 10) : (unsigned long long)time(nullptr);
    const char *mode = argc > 2 ? argv[2] : "all";
    rng = seed * 2862933555777941757ull + 3037000493ull;
    printf("seed %llu\n", seed);
#ifdef CPU_SELFTEST
    if (strcmp(mode, "selftest") == 0) {
        s4d_grad_fd_selftest();
        cpu_selftest();
        printf("%d checks, %d failed\n", n_checks, n_failed);
        return n_failed;
    }
#endif
    if (!ssm_cuda_available()) { fprintf(stderr, "test_kernel_cuda: %s\n", ssm_cuda_error()); return 100; }
    if (strcmp(mode, "bench") != 0) {
        s4d_case(1, 1, 1); s4d_case(3, 7, 1000); s4d_case(2, 64, 4097); s4d_case(5, 300, 333); s4d_case(3, 3, 16385);
        s4d_grad_fd_selftest();
        s4d_grad_case(1, 1, 1); s4d_grad_case(3, 7, 1000); s4d_grad_case(2, 64, 4097); s4d_grad_case(5, 300, 333);
        s4d_grad_case(1, 3, 2049); s4d_grad_case(7, 33, 5000);
        vand_case(3, 5, 1000, false); vand_case(2, 300, 333, false); vand_case(3, 7, 777, true); vand_case(1, 1, 1, true);
        conv_case(1, 1, 1, true); conv_case(2, 3, 1000, true); conv_case(3, 2, 777, false); conv_case(1, 5, 4099, true);
        cauchy_case(1, 1, 1, 1); cauchy_case(2, 3, 1, 1000); cauchy_case(3, 16, 2, 777); cauchy_case(1, 300, 1, 333);
        cauchy_case(2, 5, 0, 64); cauchy_case(1, 7, 3, 4097); cauchy_case(1, 8, 8, 100); cauchy_case(2, 32, 1, 2);
        printf("%d checks, %d failed\n", n_checks, n_failed);
    }
    if (strcmp(mode, "check") != 0) bench();
    return n_failed > 99 ? 99 : n_failed;
}
