// ssm_kernel_cuda.cu - S4D Vandermonde kernel and cuFFT convolution (API: ssm_kernel_cuda.h).
#include <cuda_runtime.h>
#include <cufft.h>
#include <stdint.h>
#include <stdio.h>

#include "ssm_kernel_cuda.h"
#include "selective_scan_cuda.h"

extern "C" void ssm_cuda_set_error(const char *msg);   // selective_scan_cuda.cu

#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            char m_[300];                                                                 \
            snprintf(m_, sizeof m_, "%s: %s", #call, cudaGetErrorString(e_));             \
            ssm_cuda_set_error(m_);                                                       \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)
#define CKF(call)                                                                         \
    do {                                                                                  \
        cufftResult r_ = (call);                                                          \
        if (r_ != CUFFT_SUCCESS) {                                                        \
            char m_[300];                                                                 \
            snprintf(m_, sizeof m_, "%s: cuFFT error %d", #call, (int)r_);                \
            ssm_cuda_set_error(m_);                                                       \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

// ---- S4D kernel: one block per (channel h, 256 steps); modes' Ct and dt*A in shared memory.
// Abar^l = exp(l dt A) evaluated directly (no repeated products: no error growth with l); the
// phase l*dt*Im(A) is reduced in double so long kernels keep their accuracy.
__global__ void s4d_kernel_fwd(int64_t H, int64_t M, int64_t L, const float *log_dt, const float *A,
                               const float *B, const float *C, float *K) {
    extern __shared__ float sm[];   // per mode: Re, Im of dt*A, then Re, Im of Ct
    const int64_t h = blockIdx.y;
    const float dt = expf(log_dt[h]);
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
        const int64_t k = h * M + m;
        const float ar = A[2 * k], ai = A[2 * k + 1];
        const float zr = dt * ar, zi = dt * ai;   // dt A
        float s, c;
        sincosf(zi, &s, &c);
        const float e = expf(zr);
        const float er = e * c - 1.f, ei = e * s;  // Abar - 1
        const float den = ar * ar + ai * ai;       // (Abar - 1) / A
        const float qr = (er * ar + ei * ai) / den, qi = (ei * ar - er * ai) / den;
        const float br = B[2 * k], bi = B[2 * k + 1], cr = C[2 * k], ci = C[2 * k + 1];
        const float bbr = qr * br - qi * bi, bbi = qr * bi + qi * br;   // Bbar
        sm[4 * m] = zr; sm[4 * m + 1] = zi;
        sm[4 * m + 2] = cr * bbr - ci * bbi; sm[4 * m + 3] = cr * bbi + ci * bbr;
    }
    __syncthreads();
    const int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (l >= L) return;
    float acc = 0.f;
    for (int64_t m = 0; m < M; m++) {
        const float zr = sm[4 * m], zi = sm[4 * m + 1], tr = sm[4 * m + 2], ti = sm[4 * m + 3];
        const float mag = expf(zr * (float)l);
        double ph = (double)zi * (double)l;
        ph -= 6.283185307179586 * rint(ph / 6.283185307179586);
        float s, c;
        sincosf((float)ph, &s, &c);
        acc += mag * (tr * c - ti * s);
    }
    K[h * L + l] = 2.f * acc;
}

extern "C" int s4d_kernel_forward_cuda(int64_t H, int64_t M, int64_t L, const float *log_dt, const float *A,
                                       const float *B, const float *C, float *K, void *stream) {
    if (H < 1 || M < 1 || L < 1) { ssm_cuda_set_error("s4d_kernel_forward_cuda: empty shape"); return -1; }
    if (H > 65535) { ssm_cuda_set_error("s4d_kernel_forward_cuda: H > 65535 not supported yet"); return -1; }
    const size_t sm = (size_t)M * 4 * sizeof(float);
    if (sm > 48 * 1024) CK(cudaFuncSetAttribute(s4d_kernel_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
    dim3 grid((unsigned)((L + 255) / 256), (unsigned)H);
    s4d_kernel_fwd<<<grid, 256, sm, (cudaStream_t)stream>>>(H, M, L, log_dt, A, B, C, K);
    CK(cudaGetLastError());
    return 0;
}

// ---- FFT convolution
__global__ void pad_rows(const float *src, float *dst, int64_t rows, int64_t L) {   // (rows, L) -> (rows, 2L)
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * 2 * L) return;
    const int64_t r = i / (2 * L), t = i % (2 * L);
    dst[i] = t < L ? src[r * L + t] : 0.f;
}
__global__ void mul_spectra(cufftComplex *U, const cufftComplex *Kf, int64_t batch, int64_t H, int64_t F) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= batch * H * F) return;
    const int64_t f = i % F, h = (i / F) % H;
    const cufftComplex a = U[i], k = Kf[h * F + f];
    U[i] = make_cuFloatComplex(a.x * k.x - a.y * k.y, a.x * k.y + a.y * k.x);
}
__global__ void finish_conv(const float *full, const float *u, const float *D, float *y, int64_t batch, int64_t H,
                            int64_t L) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= batch * H * L) return;
    const int64_t t = i % L, r = i / L, h = r % H;
    y[i] = full[r * 2 * L + t] * (1.f / (2.f * (float)L)) + (D ? D[h] * u[i] : 0.f);
}

static cufftHandle g_plan_f, g_plan_i, g_plan_k;
static int64_t g_pb = -1, g_ph = -1, g_pl = -1;
static void *g_buf;
static size_t g_buf_size;

extern "C" int fft_conv_forward_cuda(int64_t batch, int64_t H, int64_t L, const float *u, const float *K,
                                     const float *D, float *y, void *stream) {
    if (batch < 1 || H < 1 || L < 1) { ssm_cuda_set_error("fft_conv_forward_cuda: empty shape"); return -1; }
    const int64_t n = 2 * L, F = L + 1, rows = batch * H;
    if (n > (1ll << 30) || rows > (1ll << 30)) { ssm_cuda_set_error("fft_conv_forward_cuda: too large"); return -1; }
    if (g_pb != batch || g_ph != H || g_pl != L) {
        if (g_pb >= 0) { cufftDestroy(g_plan_f); cufftDestroy(g_plan_i); cufftDestroy(g_plan_k); g_pb = -1; }
        int nn = (int)n;
        CKF(cufftPlanMany(&g_plan_f, 1, &nn, nullptr, 1, (int)n, nullptr, 1, (int)F, CUFFT_R2C, (int)rows));
        CKF(cufftPlanMany(&g_plan_i, 1, &nn, nullptr, 1, (int)F, nullptr, 1, (int)n, CUFFT_C2R, (int)rows));
        CKF(cufftPlanMany(&g_plan_k, 1, &nn, nullptr, 1, (int)n, nullptr, 1, (int)F, CUFFT_R2C, (int)H));
        g_pb = batch; g_ph = H; g_pl = L;
    }
    // buffers: padded u (rows, n) real, its spectrum (rows, F) complex, padded K (H, n), K spectrum (H, F)
    const size_t bu = (size_t)rows * n * 4, su = (size_t)rows * F * 8, bk = (size_t)H * n * 4, sk = (size_t)H * F * 8;
    const size_t need = bu + su + bk + sk + 4 * 256;
    if (need > g_buf_size) {
        if (g_buf) CK(cudaFree(g_buf));
        g_buf = nullptr; g_buf_size = 0;
        CK(cudaMalloc(&g_buf, need));
        g_buf_size = need;
    }
    char *p = (char *)g_buf;
    float *up = (float *)p; p += (bu + 255) / 256 * 256;
    cufftComplex *us = (cufftComplex *)p; p += (su + 255) / 256 * 256;
    float *kp = (float *)p; p += (bk + 255) / 256 * 256;
    cufftComplex *ks = (cufftComplex *)p;
    cudaStream_t st = (cudaStream_t)stream;
    CKF(cufftSetStream(g_plan_f, st)); CKF(cufftSetStream(g_plan_i, st)); CKF(cufftSetStream(g_plan_k, st));
    pad_rows<<<(unsigned)((rows * n + 255) / 256), 256, 0, st>>>(u, up, rows, L);
    CK(cudaGetLastError());
    pad_rows<<<(unsigned)((H * n + 255) / 256), 256, 0, st>>>(K, kp, H, L);
    CK(cudaGetLastError());
    CKF(cufftExecR2C(g_plan_f, up, us));
    CKF(cufftExecR2C(g_plan_k, kp, ks));
    mul_spectra<<<(unsigned)((rows * F + 255) / 256), 256, 0, st>>>(us, ks, batch, H, F);
    CK(cudaGetLastError());
    CKF(cufftExecC2R(g_plan_i, us, up));
    finish_conv<<<(unsigned)((rows * L + 255) / 256), 256, 0, st>>>(up, u, D, y, batch, H, L);
    CK(cudaGetLastError());
    return 0;
}
