// selective_scan_cuda.cu - the selective scan (S6) forward and backward on an NVIDIA GPU.
// Semantics: REFERENCE.md section 7; API and layout rules: selective_scan_cuda.h.
//
// Shapes (through strides, as the CPU API): u, delta, z, y, dy (batch, L, D); A (D, N[,2]);
// B, C selective (batch, L, G, N[,2]) or time-invariant (D, N[,2]); D_skip, delta_bias (D);
// h0, h_out (batch, D, N[,2]); seq_idx (batch, L).
//
// Design (numbers and variants in kernels/dev/NOTES.md):
//   one thread owns one (batch b, channel d, chunk c of T steps) and a register block of NB
//   states; it walks its chunk 8 steps at a time (16-byte loads along L when L is contiguous).
//   Parallelism over L comes from chunks: with real or complex diagonal A the decay of a whole
//   chunk is exp(A * sum(delta)), so a chunk is summarized by (local end state from zero, sum of
//   delta, "a seq_idx reset happened").  Forward = (1) summaries of chunks 0..nc-2, (2) a carry
//   pass over chunks per (b, d, n) that turns them into each chunk's true start state, (3) the
//   scan of every chunk from its start state, writing y.  With nc == 1, (1) and (2) are skipped.
//   exp(delta A) is one MUFU ex2 with A pre-scaled by log2(e); a seq_idx reset adds -inf to the
//   exponent (the decay becomes 0) so resets cost nothing in the inner loop.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>
#include <math.h>
#include <string.h>

#include "selective_scan_cuda.h"

// ---------------------------------------------------------------------------------------------
// errors
static char g_err[512];
static void set_err(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); vsnprintf(g_err, sizeof g_err, fmt, ap); va_end(ap);
}
extern "C" const char *ssm_cuda_error(void) { return g_err; }
extern "C" void ssm_cuda_set_error(const char *msg) { set_err("%s", msg); }   // for the other .cu files
#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            set_err("%s: %s", #call, cudaGetErrorString(e_));                             \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)
#define CK_LAUNCH(what) CK((cudaGetLastError(), cudaPeekAtLastError()))

extern "C" int ssm_cuda_available(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) { set_err("no CUDA device: %s", cudaGetErrorString(e)); return 0; }
    if (n == 0) { set_err("no CUDA device found"); return 0; }
    return 1;
}

// ---------------------------------------------------------------------------------------------
// element access: float32, bf16, f16 -> float
__device__ __forceinline__ float tof(float v) { return v; }
__device__ __forceinline__ float tof(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float tof(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T fromf(float v);
template <> __device__ __forceinline__ float fromf<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 fromf<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half fromf<__half>(float v) { return __float2half(v); }

// 8 consecutive-in-time elements starting at p (element stride st); vec: 16-byte loads allowed
// (st == 1, p 16-byte aligned) and all 8 valid.  Invalid tail elements read as 0.
__device__ __forceinline__ void unpack8(const uint4 &w, const __nv_bfloat16 *, float v[8]) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&w);
#pragma unroll
    for (int i = 0; i < 4; i++) { float2 f = __bfloat1622float2(h[i]); v[2 * i] = f.x; v[2 * i + 1] = f.y; }
}
__device__ __forceinline__ void unpack8(const uint4 &w, const __half *, float v[8]) {
    const __half2 *h = reinterpret_cast<const __half2 *>(&w);
#pragma unroll
    for (int i = 0; i < 4; i++) { float2 f = __half22float2(h[i]); v[2 * i] = f.x; v[2 * i + 1] = f.y; }
}
template <typename T>
__device__ __forceinline__ void ld8(const T *p, int64_t st, int nv, bool vec, float v[8]) {
    if (vec && nv == 8) {
        if constexpr (sizeof(T) == 4) {
            float4 a = __ldg(reinterpret_cast<const float4 *>(p));
            float4 b = __ldg(reinterpret_cast<const float4 *>(p) + 1);
            v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        } else {
            uint4 w = __ldg(reinterpret_cast<const uint4 *>(p));
            unpack8(w, p, v);
        }
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = j < nv ? tof(p[j * st]) : 0.f;
    }
}
// complex: element j at p[2 j st] (re), p[2 j st + 1] (im)
template <typename T>
__device__ __forceinline__ void ld8c(const T *p, int64_t st, int nv, bool vec, float re[8], float im[8]) {
    if (vec && nv == 8) {
        float v[16];
        ld8(p, 1, 8, true, v);
        ld8(p + 8, 1, 8, true, v + 8);
#pragma unroll
        for (int j = 0; j < 8; j++) { re[j] = v[2 * j]; im[j] = v[2 * j + 1]; }
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) {
            re[j] = j < nv ? tof(p[2 * j * st]) : 0.f;
            im[j] = j < nv ? tof(p[2 * j * st + 1]) : 0.f;
        }
    }
}
template <typename T>
__device__ __forceinline__ void st8(T *p, int64_t st, int nv, bool vec, const float v[8]) {
    if (vec && nv == 8) {
        if constexpr (sizeof(T) == 4) {
            reinterpret_cast<float4 *>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
            reinterpret_cast<float4 *>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
        } else {
            uint4 w;
            T *h = reinterpret_cast<T *>(&w);
#pragma unroll
            for (int j = 0; j < 8; j++) h[j] = fromf<T>(v[j]);
            *reinterpret_cast<uint4 *>(p) = w;
        }
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) if (j < nv) p[j * st] = fromf<T>(v[j]);
    }
}

__device__ __forceinline__ float ex2(float x) {  // 2^x, one MUFU op; ex2(-inf) = 0
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ float lg2(float x) {
    float r;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}
// softplus(x) = ln(1 + e^x) with two MUFU ops, e = 2^(x log2 e); x > 20: x (the official cut).
// Where e < 1/8 (x < -2.08), log1p(e) by its series to e^8 (relative error < e^8/9 < 7e-9):
// ln2 * log2(1 + e) alone loses relative accuracy there (1 + e rounds to float with an absolute
// error up to 6e-8, and lg2.approx has an absolute error near 1), about 1e-4 relative at x = -7,
// which made y differ from the CPU beyond rtol 1e-4 at b8 D1536 L2048 (kernels/dev/NOTES.md).
__device__ __forceinline__ float softplusf(float x) {
    const float e = ex2(x * 1.4426950408889634f);
    float s = fmaf(e, -1.f / 8, 1.f / 7);
    s = fmaf(e, s, -1.f / 6);
    s = fmaf(e, s, 1.f / 5);
    s = fmaf(e, s, -1.f / 4);
    s = fmaf(e, s, 1.f / 3);
    s = fmaf(e, s, -1.f / 2);
    s = fmaf(e, s, 1.f);
    const float series = e * s;
    const float logv = 0.6931471805599453f * lg2(1.f + e);
    return x > 20.f ? x : e < 0.125f ? series : logv;
}
__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + __expf(-x)); }
#define LOG2E 1.4426950408889634f
#ifndef SMEM_MINB
#define SMEM_MINB 4   // blocks of 128 per SM the fast forward kernel is compiled for (register cap)
#endif

// ---------------------------------------------------------------------------------------------
struct ScanArgs {
    int64_t batch, L, D, N, G, T, nc;           // T = chunk length (multiple of 8), nc chunks
    int64_t xsb, xst, xsd, bcsb, bcst, bcsc;    // element strides (complex elements for complex B/C)
    const void *u, *delta, *z, *B, *C;
    const float *A, *Dskip, *dbias, *h0;
    const int32_t *seq;
    void *y;
    float *hout;
    float *hst;      // (batch, nc, D, NS) chunk summaries, then chunk start states
    float *dsum;     // (batch, nc, D) sum of delta over the chunk
    int *rflag;      // (batch, nc, D) 1 when a seq_idx reset lies in the chunk
    float *ybuf;     // (batch, D, L) partial y when N needs several register blocks
    int softplus, vec_x, vec_bc, sel, cplx;
    // backward
    const void *dy;
    const float *dhout;
    float *gst;      // (batch, nc, D, NS) reverse summaries, then chunk-end adjoints
    float *du, *ddelta, *dA, *dB, *dC, *dD, *dz, *ddbias, *dh0;
    int64_t gsb, gst_, gsd;                     // strides of the float gradients du, ddelta, dz
    // fast backward: partial sums written once each, summed by sum_rows_kernel / scan_bwd_bc_sum_kernel
    float *wsBC;     // (batch, dblocks of 128, 2 (dB, dC), N, L) selective dB, dC per block of channels
    float *wsA;      // (batch, nc, D, N) dA per chunk
    float *wsD, *wsDb;  // (batch, nc, D) dD, ddelta_bias per chunk
};

// The inputs of one 8-step tile of one channel: delta after bias/softplus (0 beyond the chunk),
// u, delta*u and the reset offsets (-inf where seq_idx starts a new sequence).
template <typename T>
struct Tile {
    float dl[8], du[8], off[8];
    __device__ __forceinline__ void load(const ScanArgs &a, int64_t b, int64_t d, int64_t t0, int nv,
                                         float bias) {
        const int64_t row = b * a.xsb + d * a.xsd;
        const bool vec = a.vec_x;
        float u[8];
        ld8((const T *)a.u + row + t0 * a.xst, a.xst, nv, vec, u);
        ld8((const T *)a.delta + row + t0 * a.xst, a.xst, nv, vec, dl);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float v = dl[j] + bias;
            if (a.softplus) v = softplusf(v);
            dl[j] = j < nv ? v : 0.f;
            du[j] = dl[j] * u[j];
            off[j] = 0.f;
        }
        if (a.seq) {
            const int32_t *s = a.seq + b * a.L;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                int64_t t = t0 + j;
                if (j < nv && t > 0 && s[t] != s[t - 1]) off[j] = -INFINITY;
            }
        }
    }
};

// Offsets of selective B/C for (b, group g, mode n) at time t0.
__device__ __forceinline__ int64_t bc_off(const ScanArgs &a, int64_t b, int64_t g, int64_t n, int64_t t0) {
    return b * a.bcsb + t0 * a.bcst + (g * a.N + n) * a.bcsc;
}

// ---------------------------------------------------------------------------------------------
// Forward scan of chunks.  PASS 1: summaries of chunks 0..nc-2 (local end state from zero, sum of
// delta, reset flag).  PASS 3: scan each chunk from its start state and write y (and h_out).
// Grid: 1-D over (b, chunk, d-block), blockDim.x channels.
template <typename T, int NB, bool CPLX, bool SEL, int PASS>
__global__ void __launch_bounds__(128, 4) scan_fwd_kernel(const ScanArgs a) {
    const int64_t dblocks = (a.D + blockDim.x - 1) / blockDim.x;
    const int64_t ncp = PASS == 1 ? a.nc - 1 : a.nc;
    const int64_t blk = blockIdx.x;
    const int64_t d = (blk % dblocks) * blockDim.x + threadIdx.x;
    const int64_t c = (blk / dblocks) % ncp;
    const int64_t b = blk / (dblocks * ncp);
    if (d >= a.D) return;
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = a.dbias ? a.dbias[d] : 0.f;
    const float Dv = a.Dskip ? a.Dskip[d] : 0.f;
    const int64_t g = SEL ? d / (a.D / a.G) : 0;
    const int64_t NS = CPLX ? 2 * a.N : a.N;           // floats per state vector
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t srow = ((b * a.nc + c) * a.D + d) * NS;  // this chunk's slot in hst

    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        float Ar[NB], Ai[NB], xr[NB], xi[NB], Bcr[NB], Bci[NB], Ccr[NB], Cci[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) {
            const bool ok = n0 + n < a.N;
            const int64_t k = d * a.N + n0 + n;
            Ar[n] = ok ? (CPLX ? a.A[2 * k] : a.A[k]) * LOG2E : 0.f;
            Ai[n] = ok && CPLX ? a.A[2 * k + 1] : 0.f;
            xr[n] = 0.f; xi[n] = 0.f;
            Bcr[n] = Bci[n] = Ccr[n] = Cci[n] = 0.f;
            if (!SEL && ok) {
                const float *Bf = (const float *)a.B, *Cf = (const float *)a.C;
                if (CPLX) { Bcr[n] = Bf[2 * k]; Bci[n] = Bf[2 * k + 1]; Ccr[n] = Cf[2 * k]; Cci[n] = Cf[2 * k + 1]; }
                else { Bcr[n] = Bf[k]; Ccr[n] = Cf[k]; }
            }
            if (PASS == 3 && ok) {
                if (a.nc > 1) {
                    if (CPLX) { xr[n] = a.hst[srow + 2 * (n0 + n)]; xi[n] = a.hst[srow + 2 * (n0 + n) + 1]; }
                    else xr[n] = a.hst[srow + n0 + n];
                } else if (a.h0) {
                    const int64_t h = (b * a.D + d) * NS;
                    if (CPLX) { xr[n] = a.h0[h + 2 * (n0 + n)]; xi[n] = a.h0[h + 2 * (n0 + n) + 1]; }
                    else xr[n] = a.h0[h + n0 + n];
                }
            }
        }
        float dsum = 0.f;
        int reset = 0;
        for (int64_t t0 = t_begin; t0 < t_end; t0 += 8) {
            const int nv = (int)min((int64_t)8, t_end - t0);
            Tile<T> tl;
            tl.load(a, b, d, t0, nv, bias);
            if (PASS == 1 && nb == 0) {
#pragma unroll
                for (int j = 0; j < 8; j++) { dsum += tl.dl[j]; reset |= tl.off[j] != 0.f; }
            }
            float y[8];
#pragma unroll
            for (int j = 0; j < 8; j++) y[j] = 0.f;
#pragma unroll
            for (int n = 0; n < NB; n++) {
                if (NB > 4 && n0 + n >= a.N) break;   // (NB 4 handles N 1..3 with zero padding)
                float Br[8], Bi[8], Cr[8], Ci[8];
#pragma unroll
                for (int j = 0; j < 8; j++) Bi[j] = Ci[j] = Cr[j] = 0.f;
                if (SEL) {
                    if (n0 + n < a.N) {
                        const int64_t o = bc_off(a, b, g, n0 + n, t0);
                        if (CPLX) {
                            ld8c((const T *)a.B + 2 * o, a.bcst, nv, a.vec_bc, Br, Bi);
                            if (PASS == 3) ld8c((const T *)a.C + 2 * o, a.bcst, nv, a.vec_bc, Cr, Ci);
                        } else {
                            ld8((const T *)a.B + o, a.bcst, nv, a.vec_bc, Br);
                            if (PASS == 3) ld8((const T *)a.C + o, a.bcst, nv, a.vec_bc, Cr);
                        }
                    } else {   // padding mode of a small N: contributes nothing
#pragma unroll
                        for (int j = 0; j < 8; j++) Br[j] = 0.f;
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 8; j++) { Br[j] = Bcr[n]; Bi[j] = Bci[n]; Cr[j] = Ccr[n]; Ci[j] = Cci[n]; }
                }
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (!CPLX) {
                        const float dA = ex2(fmaf(tl.dl[j], Ar[n], tl.off[j]));
                        xr[n] = fmaf(dA, xr[n], tl.du[j] * Br[j]);
                        if (PASS == 3) y[j] = fmaf(xr[n], Cr[j], y[j]);
                    } else {
                        const float mag = ex2(fmaf(tl.dl[j], Ar[n], tl.off[j]));
                        float s, co;
                        __sincosf(tl.dl[j] * Ai[n], &s, &co);
                        const float ar = mag * co, ai = mag * s;
                        const float nr = fmaf(ar, xr[n], fmaf(-ai, xi[n], tl.du[j] * Br[j]));
                        const float ni = fmaf(ar, xi[n], fmaf(ai, xr[n], tl.du[j] * Bi[j]));
                        xr[n] = nr; xi[n] = ni;
                        if (PASS == 3) y[j] = fmaf(xr[n], Cr[j], fmaf(-xi[n], Ci[j], y[j]));
                    }
                }
            }
            if (PASS == 3) {
                if (CPLX) {
#pragma unroll
                    for (int j = 0; j < 8; j++) y[j] *= 2.f;
                }
                const int64_t row = b * a.xsb + d * a.xsd + t0 * a.xst;
                float *yb = a.ybuf ? a.ybuf + (b * a.D + d) * a.L + t0 : nullptr;
                if (nb > 0) {
#pragma unroll
                    for (int j = 0; j < 8; j++) if (j < nv) y[j] += yb[j];
                }
                if (nb < nblk - 1) {
#pragma unroll
                    for (int j = 0; j < 8; j++) if (j < nv) yb[j] = y[j];
                } else {
                    float o[8];
#pragma unroll
                    for (int j = 0; j < 8; j++) o[j] = y[j];
                    if (a.Dskip) {   // u reloaded (an L1 hit) rather than kept live across the modes
                        float uu[8];
                        ld8((const T *)a.u + row, a.xst, nv, a.vec_x, uu);
#pragma unroll
                        for (int j = 0; j < 8; j++) o[j] = fmaf(Dv, uu[j], o[j]);
                    }
                    if (a.z) {
                        float zz[8];
                        ld8((const T *)a.z + row, a.xst, nv, a.vec_x, zz);
#pragma unroll
                        for (int j = 0; j < 8; j++) o[j] *= zz[j] * sigmoidf_(zz[j]);
                    }
                    st8((T *)a.y + row, a.xst, nv, a.vec_x, o);
                }
            }
        }
        // chunk done for this register block
#pragma unroll
        for (int n = 0; n < NB; n++) {
            if (n0 + n >= a.N) break;
            if (PASS == 1) {
                if (CPLX) { a.hst[srow + 2 * (n0 + n)] = xr[n]; a.hst[srow + 2 * (n0 + n) + 1] = xi[n]; }
                else a.hst[srow + n0 + n] = xr[n];
            } else if (a.hout && c == a.nc - 1) {
                const int64_t h = (b * a.D + d) * NS;
                if (CPLX) { a.hout[h + 2 * (n0 + n)] = xr[n]; a.hout[h + 2 * (n0 + n) + 1] = xi[n]; }
                else a.hout[h + n0 + n] = xr[n];
            }
        }
        if (PASS == 1 && nb == 0) {
            const int64_t s = (b * a.nc + c) * a.D + d;
            a.dsum[s] = dsum;
            a.rflag[s] = reset;
        }
    }
}

// Fast path of the forward scan (kernels/dev/NOTES.md, variant v2): selective B/C of the block's group staged through shared memory
// (double-buffered: after computing a stage each thread copies E elements of the next one; the
// other blocks on the SM hide that latency), u/delta of the next 8 steps prefetched into registers.  Every channel of a block
// is in one group (G == 1, or D/G a multiple of 128); no seq_idx (the generic kernel does resets).  Stage length TS = E*128/(2*NB*K) steps.
template <typename T, int NB, bool CPLX, int PASS>
__global__ void __launch_bounds__(128, SMEM_MINB) scan_fwd_smem_kernel(const ScanArgs a) {
    constexpr int K = CPLX ? 2 : 1;
    constexpr int E = 8;
    extern __shared__ float4 smem4[];
    float *smem = reinterpret_cast<float *>(smem4);
    constexpr int bd = 128;                             // launched with 128 threads
    constexpr int TS = E * bd / (2 * NB * K);
    constexpr int stage = NB * K * TS;                  // floats of one array in one buffer
    const int64_t dblocks = (a.D + bd - 1) / bd;
    const int64_t ncp = PASS == 1 ? a.nc - 1 : a.nc;
    const int64_t blk = blockIdx.x;
    const int64_t d0 = (blk % dblocks) * bd;
    const int64_t d = d0 + threadIdx.x;
    const int64_t c = (blk / dblocks) % ncp;
    const int64_t b = blk / (dblocks * ncp);
    const bool active = d < a.D;
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = active && a.dbias ? a.dbias[d] : 0.f;
    const float Dv = active && a.Dskip ? a.Dskip[d] : 0.f;
    const int64_t g = d0 / (a.D / a.G);
    const int64_t NS = CPLX ? 2 * a.N : a.N;
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t srow = ((b * a.nc + c) * a.D + d) * NS;
    const int64_t xrow = b * a.xsb + d * a.xsd;
    const T *Bp = (const T *)a.B, *Cp = (const T *)a.C;

    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        // stage fetch: element e = (array, mode*K + part, step) with the step fastest
        auto fetch = [&](int64_t ts0, float r[E]) {
#pragma unroll
            for (int i = 0; i < E; i++) {
                const int e = threadIdx.x + i * bd;
                const int arr = e / stage, rem = e - arr * stage;
                const int nk = rem / TS, t = rem - nk * TS;
                const int64_t n = n0 + nk / K, tt = ts0 + t;
                r[i] = 0.f;
                if (tt < t_end && n < a.N && (PASS == 3 || arr == 0)) {
                    const int64_t o = (b * a.bcsb + tt * a.bcst + (g * a.N + n) * a.bcsc) * K + (nk % K);
                    r[i] = tof(arr ? Cp[o] : Bp[o]);
                }
            }
        };
        auto put = [&](int buf, const float r[E]) {
#pragma unroll
            for (int i = 0; i < E; i++) smem[buf * 2 * stage + threadIdx.x + i * bd] = r[i];
        };
        float Ar[NB], Ai[NB], xr[NB], xi[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) {
            const bool ok = active && n0 + n < a.N;
            const int64_t k = d * a.N + n0 + n;
            Ar[n] = ok ? (CPLX ? a.A[2 * k] : a.A[k]) * LOG2E : 0.f;
            Ai[n] = ok && CPLX ? a.A[2 * k + 1] : 0.f;
            xr[n] = 0.f; xi[n] = 0.f;
            if (PASS == 3 && ok) {
                if (a.nc > 1) {
                    if (CPLX) { xr[n] = a.hst[srow + 2 * (n0 + n)]; xi[n] = a.hst[srow + 2 * (n0 + n) + 1]; }
                    else xr[n] = a.hst[srow + n0 + n];
                } else if (a.h0) {
                    const int64_t h = (b * a.D + d) * NS;
                    if (CPLX) { xr[n] = a.h0[h + 2 * (n0 + n)]; xi[n] = a.h0[h + 2 * (n0 + n) + 1]; }
                    else xr[n] = a.h0[h + n0 + n];
                }
            }
        }
        float dsum = 0.f;
        {
            float r[E];
            fetch(t_begin, r);
            put(0, r);
        }
        __syncthreads();
        // raw u, delta of the next 8 steps
        float pu[8], pd[8];
        if (active) {
            const int nv = (int)min((int64_t)8, t_end - t_begin);
            ld8((const T *)a.u + xrow + t_begin * a.xst, a.xst, nv, a.vec_x, pu);
            ld8((const T *)a.delta + xrow + t_begin * a.xst, a.xst, nv, a.vec_x, pd);
        }
        int k = 0;
        for (int64_t ts0 = t_begin; ts0 < t_end; ts0 += TS, k++) {
            const bool has_next = ts0 + TS < t_end;
            const float *sB = smem + (k & 1) * 2 * stage, *sC = sB + stage;
#pragma unroll 1
            for (int s = 0; s < TS; s += 8) {
                const int64_t t0 = ts0 + s;
                if (t0 >= t_end) break;
                const int nv = (int)min((int64_t)8, t_end - t0);
                float dl[8], du[8], y[8];
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float v = pd[j] + bias;
                    if (a.softplus) v = softplusf(v);
                    dl[j] = j < nv ? v : 0.f;
                    du[j] = dl[j] * pu[j];
                    y[j] = nb == 0 ? (CPLX ? 0.5f : 1.f) * Dv * pu[j] : 0.f;   // skip term, once (y *= 2 later when complex)
                }
                if (active && t0 + 8 < t_end) {   // prefetch the next 8 steps
                    const int nv2 = (int)min((int64_t)8, t_end - t0 - 8);
                    ld8((const T *)a.u + xrow + (t0 + 8) * a.xst, a.xst, nv2, a.vec_x, pu);
                    ld8((const T *)a.delta + xrow + (t0 + 8) * a.xst, a.xst, nv2, a.vec_x, pd);
                }
                if (PASS == 1 && nb == 0) {
#pragma unroll
                    for (int j = 0; j < 8; j++) dsum += dl[j];
                }
#pragma unroll
                for (int n = 0; n < NB; n++) {
                    float Br[8], Bi[8], Cr[8], Ci[8];
                    if (!CPLX) {
                        const float4 *q = reinterpret_cast<const float4 *>(sB + n * TS + s);
                        float4 q0 = q[0], q1 = q[1];
                        Br[0] = q0.x; Br[1] = q0.y; Br[2] = q0.z; Br[3] = q0.w; Br[4] = q1.x; Br[5] = q1.y; Br[6] = q1.z; Br[7] = q1.w;
                        if (PASS == 3) {
                            const float4 *w = reinterpret_cast<const float4 *>(sC + n * TS + s);
                            float4 w0 = w[0], w1 = w[1];
                            Cr[0] = w0.x; Cr[1] = w0.y; Cr[2] = w0.z; Cr[3] = w0.w; Cr[4] = w1.x; Cr[5] = w1.y; Cr[6] = w1.z; Cr[7] = w1.w;
                        }
                    } else {
#pragma unroll
                        for (int j = 0; j < 8; j++) {
                            Br[j] = sB[(2 * n) * TS + s + j]; Bi[j] = sB[(2 * n + 1) * TS + s + j];
                            if (PASS == 3) { Cr[j] = sC[(2 * n) * TS + s + j]; Ci[j] = sC[(2 * n + 1) * TS + s + j]; }
                        }
                    }
#pragma unroll
                    for (int j = 0; j < 8; j++) {
                        if (!CPLX) {
                            const float dA = ex2(dl[j] * Ar[n]);
                            xr[n] = fmaf(dA, xr[n], du[j] * Br[j]);
                            if (PASS == 3) y[j] = fmaf(xr[n], Cr[j], y[j]);
                        } else {
                            const float mag = ex2(dl[j] * Ar[n]);
                            float sn, co;
                            __sincosf(dl[j] * Ai[n], &sn, &co);
                            const float ar = mag * co, ai = mag * sn;
                            const float nr = fmaf(ar, xr[n], fmaf(-ai, xi[n], du[j] * Br[j]));
                            const float ni = fmaf(ar, xi[n], fmaf(ai, xr[n], du[j] * Bi[j]));
                            xr[n] = nr; xi[n] = ni;
                            if (PASS == 3) y[j] = fmaf(xr[n], Cr[j], fmaf(-xi[n], Ci[j], y[j]));
                        }
                    }
                }
                if (PASS == 3 && active) {
                    if (CPLX) {
#pragma unroll
                        for (int j = 0; j < 8; j++) y[j] *= 2.f;
                    }
                    const int64_t row = xrow + t0 * a.xst;
                    float *yb = a.ybuf ? a.ybuf + (b * a.D + d) * a.L + t0 : nullptr;
                    if (nb > 0) {
#pragma unroll
                        for (int j = 0; j < 8; j++) if (j < nv) y[j] += yb[j];
                    }
                    if (nb < nblk - 1) {
#pragma unroll
                        for (int j = 0; j < 8; j++) if (j < nv) yb[j] = y[j];
                    } else {
                        float o[8];
#pragma unroll
                        for (int j = 0; j < 8; j++) o[j] = y[j];
                        if (a.z) {
                            float zz[8];
                            ld8((const T *)a.z + row, a.xst, nv, a.vec_x, zz);
#pragma unroll
                            for (int j = 0; j < 8; j++) o[j] *= zz[j] * sigmoidf_(zz[j]);
                        }
                        st8((T *)a.y + row, a.xst, nv, a.vec_x, o);
                    }
                }
            }
            if (has_next) {   // other blocks on the SM hide this latency
                float r[E];
                fetch(ts0 + TS, r);
                put((k + 1) & 1, r);
            }
            __syncthreads();
        }
        if (active) {
#pragma unroll
            for (int n = 0; n < NB; n++) {
                if (n0 + n < a.N) {
                    if (PASS == 1) {
                        if (CPLX) { a.hst[srow + 2 * (n0 + n)] = xr[n]; a.hst[srow + 2 * (n0 + n) + 1] = xi[n]; }
                        else a.hst[srow + n0 + n] = xr[n];
                    } else if (a.hout && c == a.nc - 1) {
                        const int64_t h = (b * a.D + d) * NS;
                        if (CPLX) { a.hout[h + 2 * (n0 + n)] = xr[n]; a.hout[h + 2 * (n0 + n) + 1] = xi[n]; }
                        else a.hout[h + n0 + n] = xr[n];
                    }
                }
            }
            if (PASS == 1 && nb == 0) {
                const int64_t sidx = (b * a.nc + c) * a.D + d;
                a.dsum[sidx] = dsum;
                a.rflag[sidx] = 0;
            }
        }
    }
}

// Carry pass: one thread per (b, d, n).  Turns the summaries of chunks 0..nc-2 in hst into every
// chunk's start state (slot c of hst = state before chunk c).
template <bool CPLX>
__global__ void scan_carry_kernel(const ScanArgs a) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.batch * a.D * a.N) return;
    const int64_t n = i % a.N, d = (i / a.N) % a.D, b = i / (a.N * a.D);
    const int64_t NS = CPLX ? 2 * a.N : a.N;
    const int64_t k = d * a.N + n;
    const float Ar = (CPLX ? a.A[2 * k] : a.A[k]) * LOG2E, Ai = CPLX ? a.A[2 * k + 1] : 0.f;
    float hr = 0.f, hi = 0.f;
    if (a.h0) {
        const int64_t h = (b * a.D + d) * NS;
        if (CPLX) { hr = a.h0[h + 2 * n]; hi = a.h0[h + 2 * n + 1]; } else hr = a.h0[h + n];
    }
    // chunks in groups of CU: the group's loads are issued together (independent of the chain;
    // one load at a time, as in the first version, made this kernel latency-bound: 0.29 ms at nc 32)
    constexpr int CU = 8;
    for (int64_t c0 = 0; c0 < a.nc; c0 += CU) {
      float glr[CU], gli[CU], gsum[CU];
      int grf[CU];
#pragma unroll
      for (int u = 0; u < CU; u++) {
        const int64_t c = c0 + u;
        glr[u] = gli[u] = gsum[u] = 0.f; grf[u] = 0;
        if (c < a.nc - 1) {
            const int64_t s = (b * a.nc + c) * a.D + d, o = s * NS + (CPLX ? 2 * n : n);
            glr[u] = a.hst[o]; if (CPLX) gli[u] = a.hst[o + 1];
            gsum[u] = a.dsum[s]; grf[u] = a.rflag[s];
        }
      }
#pragma unroll
      for (int u = 0; u < CU; u++) {
        const int64_t c = c0 + u;
        if (c >= a.nc) break;
        const int64_t s = (b * a.nc + c) * a.D + d;
        const int64_t o = s * NS + (CPLX ? 2 * n : n);
        const float lr = glr[u], li = gli[u], sum = gsum[u];
        const int rf = grf[u];
        a.hst[o] = hr; if (CPLX) a.hst[o + 1] = hi;
        if (c < a.nc - 1) {
            const float mag = rf ? 0.f : exp2f(sum * Ar);
            if (CPLX) {
                float sn, cs;
                sincosf(sum * Ai, &sn, &cs);
                const float ar = mag * cs, ai = mag * sn;
                const float nr = ar * hr - ai * hi + lr, ni = ar * hi + ai * hr + li;
                hr = nr; hi = ni;
            } else {
                hr = mag * hr + lr;
            }
        }
      }
    }
}

// ---------------------------------------------------------------------------------------------
// host side
static void *g_ws;
static size_t g_ws_size;
static int64_t g_chunk_fwd, g_chunk_bwd;
static int g_force_generic;   // tests: 1 = always the generic (direct-load) forward kernel
static int g_num_sms;

extern "C" void selective_scan_cuda_set_chunk(int64_t f, int64_t b) { g_chunk_fwd = f; g_chunk_bwd = b; }
extern "C" void selective_scan_cuda_set_variant(int generic) { g_force_generic = generic; }

static int ws_reserve(size_t bytes, void **out) {
    if (bytes > g_ws_size) {
        if (g_ws) CK(cudaFree(g_ws));
        g_ws = nullptr; g_ws_size = 0;
        CK(cudaMalloc(&g_ws, bytes));
        g_ws_size = bytes;
    }
    *out = g_ws;
    return 0;
}

static size_t elt_size(ssm_cuda_dtype t) { return t == SSM_CUDA_F32 ? 4 : 2; }
static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static int check_params(const ssm_scan_params *p) {
    if (p->batch < 1 || p->L < 1 || p->D < 1 || p->N < 1) { set_err("empty shape"); return -1; }
    if (p->G < 0 || (p->G > 0 && p->D % p->G != 0)) { set_err("D (%lld) not a multiple of G (%lld)", (long long)p->D, (long long)p->G); return -1; }
    if (!p->u || !p->delta || !p->A || !p->B || !p->C) { set_err("missing u, delta, A, B or C"); return -1; }
    if (g_num_sms == 0) {
        int dev = 0;
        CK(cudaGetDevice(&dev));
        CK(cudaDeviceGetAttribute(&g_num_sms, cudaDevAttrMultiProcessorCount, dev));
    }
    return 0;
}

// Chunk length: enough (b, d, chunk) threads to fill the GPU, chunks of at least 64 steps.
static int64_t pick_chunk(const ssm_scan_params *p, int64_t forced, int64_t target_threads, int64_t min_chunk) {
    int64_t T;
    if (forced > 0) T = forced;
    else {
        int64_t ch = p->batch * p->D;
        int64_t nc = (target_threads + ch - 1) / ch;
        int64_t maxnc = (p->L + min_chunk - 1) / min_chunk;
        if (nc > maxnc) nc = maxnc;
        if (nc < 1) nc = 1;
        T = (p->L + nc - 1) / nc;
    }
    T = (T + 7) / 8 * 8;
    if (T < 8) T = 8;
    return T;
}

// Forward chunk length (kernels/dev/NOTES.md, session 3, section 4): enough chunks that PASS 3 fills
// ~0.85 of a wave of 128-thread blocks (4 per SM; at b8 D1536 L2048: 5 chunks of 416 steps, 0.447
// ms f32 / 0.484 bf16, against 0.483 / 0.549 with 4 chunks of 512), each chunk 256..1024 steps
// (b1 D1536 L131072: 1024, 3.47 ms against 3.56 at 1496 and 4.02 at 2048).
static int64_t pick_chunk_fwd(const ssm_scan_params *p) {
    const int64_t blocks_per_chunk = p->batch * ((p->D + 127) / 128);
    const int64_t want = (int64_t)g_num_sms * 4 * 85 / 100;
    const int64_t nc = (want + blocks_per_chunk - 1) / blocks_per_chunk;
    int64_t T = (p->L + nc - 1) / nc;
    if (T < 256) T = 256;
    if (T > 1024) T = 1024;
    return (T + 7) / 8 * 8;
}

static void fill_common(ScanArgs &a, const ssm_scan_params *p, ssm_cuda_dtype dt) {
    memset(&a, 0, sizeof a);
    a.batch = p->batch; a.L = p->L; a.D = p->D; a.N = p->N; a.G = p->G;
    a.xsb = p->x_strides.batch; a.xst = p->x_strides.time; a.xsd = p->x_strides.channel;
    a.bcsb = p->bc_strides.batch; a.bcst = p->bc_strides.time; a.bcsc = p->bc_strides.channel;
    a.u = p->u; a.delta = p->delta; a.z = p->z; a.B = p->B; a.C = p->C;
    a.A = p->A; a.Dskip = p->D_skip; a.dbias = p->delta_bias; a.h0 = p->h0; a.seq = p->seq_idx;
    a.softplus = p->softplus; a.sel = p->G > 0; a.cplx = p->complex_A;
    const int64_t es = (int64_t)elt_size(dt);
    const int64_t v = 16 / es;   // elements per 16 bytes
    a.vec_x = a.xst == 1 && a.xsb % v == 0 && a.xsd % v == 0 && aligned16(p->u) && aligned16(p->delta) &&
              (!p->z || aligned16(p->z));
    const int64_t vc = p->complex_A ? v / 2 : v;  // complex elements per 16 bytes
    a.vec_bc = a.sel && a.bcst == 1 && a.bcsb % vc == 0 && a.bcsc % vc == 0 && aligned16(p->B) && aligned16(p->C);
}

template <typename T, int NB, bool CPLX, bool SEL>
static int launch_fwd(ScanArgs &a, cudaStream_t st) {
    const bool smem_path = SEL && !g_force_generic && !a.seq && (a.G == 1 || (a.D / a.G) % 128 == 0);
    const int bd = smem_path || a.D >= 128 ? 128 : (int)((a.D + 31) / 32 * 32);
    const int64_t dblocks = (a.D + bd - 1) / bd;
    if (smem_path) {
        constexpr int K = CPLX ? 2 : 1;
        const size_t sm = (size_t)2 * 8 * bd * sizeof(float);
        if (2 * NB * K > 8 * bd / 8) { set_err("internal: stage too short"); return -1; }
        if (a.nc > 1) {
            scan_fwd_smem_kernel<T, NB, CPLX, 1><<<(unsigned)(a.batch * (a.nc - 1) * dblocks), bd, sm, st>>>(a);
            CK(cudaGetLastError());
            const int64_t nthr = a.batch * a.D * a.N;
            scan_carry_kernel<CPLX><<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
            CK(cudaGetLastError());
        }
        scan_fwd_smem_kernel<T, NB, CPLX, 3><<<(unsigned)(a.batch * a.nc * dblocks), bd, sm, st>>>(a);
        CK(cudaGetLastError());
        return 0;
    }
    if (a.nc > 1) {
        scan_fwd_kernel<T, NB, CPLX, SEL, 1><<<(unsigned)(a.batch * (a.nc - 1) * dblocks), bd, 0, st>>>(a);
        CK(cudaGetLastError());
        const int64_t nthr = a.batch * a.D * a.N;
        scan_carry_kernel<CPLX><<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
        CK(cudaGetLastError());
    }
    scan_fwd_kernel<T, NB, CPLX, SEL, 3><<<(unsigned)(a.batch * a.nc * dblocks), bd, 0, st>>>(a);
    CK(cudaGetLastError());
    return 0;
}

template <typename T, bool SEL>
static int dispatch_fwd2(ScanArgs &a, cudaStream_t st) {
    if (a.cplx) return a.N <= 4 ? launch_fwd<T, 4, true, SEL>(a, st) : launch_fwd<T, 8, true, SEL>(a, st);
    return a.N <= 4 ? launch_fwd<T, 4, false, SEL>(a, st) : launch_fwd<T, 16, false, SEL>(a, st);
}
template <typename T>
static int dispatch_fwd(ScanArgs &a, cudaStream_t st) {
    return a.sel ? dispatch_fwd2<T, true>(a, st) : dispatch_fwd2<T, false>(a, st);
}

extern "C" int selective_scan_cuda_forward(const ssm_scan_params *p, ssm_cuda_dtype dtype, void *y,
                                           float *h_out, void *stream) {
    g_err[0] = 0;
    if (check_params(p)) return -1;
    if (!y) { set_err("y is NULL"); return -1; }
    ScanArgs a;
    fill_common(a, p, dtype);
    a.y = y; a.hout = h_out;
    if (a.vec_x && !aligned16(y)) a.vec_x = 0;
    a.T = g_chunk_fwd > 0 ? pick_chunk(p, g_chunk_fwd, 0, 0) : pick_chunk_fwd(p);
    a.nc = (a.L + a.T - 1) / a.T;
    const int64_t NS = p->complex_A ? 2 * p->N : p->N;
    const int NB = p->complex_A ? (p->N <= 4 ? 4 : 8) : (p->N <= 4 ? 4 : 16);
    const bool multi = p->N > NB;
    size_t hbytes = a.nc > 1 ? (size_t)(a.batch * a.nc * a.D) * (NS * 4 + 8) : 0;
    size_t ybytes = multi ? (size_t)(a.batch * a.D * a.L) * 4 : 0;
    hbytes = (hbytes + 255) / 256 * 256;
    void *ws = nullptr;
    if (hbytes + ybytes && ws_reserve(hbytes + ybytes, &ws)) return -1;
    if (a.nc > 1) {
        a.hst = (float *)ws;
        a.dsum = a.hst + a.batch * a.nc * a.D * NS;
        a.rflag = (int *)(a.dsum + a.batch * a.nc * a.D);
    }
    if (multi) a.ybuf = (float *)((char *)ws + hbytes);
    cudaStream_t st = (cudaStream_t)stream;
    switch (dtype) {
    case SSM_CUDA_F32: return dispatch_fwd<float>(a, st);
    case SSM_CUDA_BF16: return dispatch_fwd<__nv_bfloat16>(a, st);
    case SSM_CUDA_F16: return dispatch_fwd<__half>(a, st);
    }
    set_err("unknown dtype %d", (int)dtype);
    return -1;
}

// =============================================================================================
// Backward (real A).  With g_t = dL/dx_t:  g_t = C_t dy'_t + a_{t+1} g_{t+1},  dy' = dout*silu(z).
// Chunked like the forward: (1) forward chunk summaries + carry -> each chunk's start state (the
// forward kernels, PASS 1); (2) reverse chunk summaries Q_c = a_{t0} g_{t0} from a zero adjoint at
// the chunk end (chunks 1..nc-1), (3) a reverse carry -> each chunk's incoming adjoint
// ga_c = a_{t1} g_{t1}; (4) the main pass: per chunk and register block of NB modes, a forward
// sweep saves the state at every 8-step tile start in shared memory, then tiles are visited in
// reverse, the 8 states of a tile recomputed per mode and the adjoint run backwards through them.
// dB, dC (selective) are summed over the 32 channels of a warp by shuffles, then atomically added;
// dA, time-invariant dB/dC, dD, ddelta_bias per thread, then atomically added.
// No (batch, L, D, N) tensor: the workspace is (batch, nc, D, N) twice.

// one 8-step tile of backward inputs for channel (b, d)
// NEED_U: u (and du) wanted; NEED_DY: dout, z (and dyp) wanted.  What is not wanted is not read.
template <typename T, bool NEED_U = true, bool NEED_DY = true>
__device__ __forceinline__ void bwd_tile_inputs(const ScanArgs &a, int64_t b, int64_t d, int64_t t0, int nv,
                                                float bias, float dl[8], float u[8], float du[8], float dyp[8],
                                                float draw[8], float dout[8], float zz[8], float off[8]) {
    const int64_t row = b * a.xsb + d * a.xsd + t0 * a.xst;
#pragma unroll
    for (int j = 0; j < 8; j++) u[j] = dout[j] = zz[j] = 0.f;
    if (NEED_U) ld8((const T *)a.u + row, a.xst, nv, a.vec_x, u);
    ld8((const T *)a.delta + row, a.xst, nv, a.vec_x, draw);
    if (NEED_DY) ld8((const T *)a.dy + row, a.xst, nv, a.vec_x, dout);
    if (NEED_DY && a.z) ld8((const T *)a.z + row, a.xst, nv, a.vec_x, zz);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        draw[j] += bias;
        float v = a.softplus ? softplusf(draw[j]) : draw[j];
        dl[j] = j < nv ? v : 0.f;
        du[j] = dl[j] * u[j];
        dyp[j] = NEED_DY && j < nv ? (a.z ? dout[j] * zz[j] * sigmoidf_(zz[j]) : dout[j]) : 0.f;
        off[j] = 0.f;
    }
    if (a.seq) {
        const int32_t *s = a.seq + b * a.L;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int64_t t = t0 + j;
            if (j < nv && t > 0 && s[t] != s[t - 1]) off[j] = -INFINITY;
        }
    }
}
template <typename T, bool SEL>
__device__ __forceinline__ void bwd_load_bc(const ScanArgs &a, const T *P, int64_t b, int64_t g, int64_t d, int64_t n,
                                            int64_t t0, int nv, float v[8]) {
    if (n >= a.N) {
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = 0.f;
    } else if (SEL) {
        ld8(P + b * a.bcsb + t0 * a.bcst + (g * a.N + n) * a.bcsc, a.bcst, nv, a.vec_bc, v);
    } else {
        const float c = ((const float *)P)[d * a.N + n];
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = c;
    }
}

// (2) reverse summaries of chunks 1..nc-1: Q_c into gst slot c; also the chunk's delta sum and
// reset flag (dsum/rflag slots of chunk c, written again: the same values as the forward pass).
template <typename T, int NB, bool SEL>
__global__ void __launch_bounds__(64) scan_bwd_rsum_kernel(const ScanArgs a) {
    const int64_t dblocks = (a.D + 63) / 64;
    const int64_t ncp = a.nc - 1;
    const int64_t blk = blockIdx.x;
    const int64_t d = (blk % dblocks) * 64 + threadIdx.x;
    const int64_t c = 1 + (blk / dblocks) % ncp;
    const int64_t b = blk / (dblocks * ncp);
    if (d >= a.D) return;
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = a.dbias ? a.dbias[d] : 0.f;
    const int64_t g = SEL ? d / (a.D / a.G) : 0;
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t ntiles = (t_end - t_begin + 7) / 8;
    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        float Ar[NB], ga[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) { Ar[n] = n0 + n < a.N ? a.A[d * a.N + n0 + n] * LOG2E : 0.f; ga[n] = 0.f; }
        float dsum = 0.f;
        int reset = 0;
        for (int64_t k = ntiles - 1; k >= 0; k--) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], u[8], du[8], dyp[8], draw[8], dout[8], zz[8], off[8];
            bwd_tile_inputs<T, false, true>(a, b, d, t0, nv, bias, dl, u, du, dyp, draw, dout, zz, off);
            if (nb == 0) {
#pragma unroll
                for (int j = 0; j < 8; j++) { dsum += dl[j]; reset |= off[j] != 0.f; }
            }
#pragma unroll
            for (int n = 0; n < NB; n++) {
                float Cv[8];
                bwd_load_bc<T, SEL>(a, (const T *)a.C, b, g, d, n0 + n, t0, nv, Cv);
#pragma unroll
                for (int j = 7; j >= 0; j--) {
                    const float gg = fmaf(Cv[j], dyp[j], ga[n]);
                    ga[n] = ex2(fmaf(dl[j], Ar[n], off[j])) * gg;
                }
            }
        }
        const int64_t s = (b * a.nc + c) * a.D + d;
#pragma unroll
        for (int n = 0; n < NB; n++) if (n0 + n < a.N) a.gst[s * a.N + n0 + n] = ga[n];
        if (nb == 0) { a.dsum[s] = dsum; a.rflag[s] = reset; }
    }
}

// (3) reverse carry, one thread per (b, d, n): gst slot c <- incoming adjoint at chunk c's end.
__global__ void scan_bwd_carry_kernel(const ScanArgs a) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.batch * a.D * a.N) return;
    const int64_t n = i % a.N, d = (i / a.N) % a.D, b = i / (a.N * a.D);
    const float Ar = a.A[d * a.N + n] * LOG2E;
    float G = a.dhout ? a.dhout[(b * a.D + d) * a.N + n] : 0.f;
    constexpr int CU = 8;   // loads of CU chunks issued together (as scan_carry_kernel)
    for (int64_t c0 = a.nc - 1; c0 >= 0; c0 -= CU) {
        float gq[CU], gdec[CU];
#pragma unroll
        for (int u = 0; u < CU; u++) {
            const int64_t c = c0 - u;
            gq[u] = 0.f; gdec[u] = 0.f;
            if (c >= 1) {
                const int64_t s = (b * a.nc + c) * a.D + d;
                gq[u] = a.gst[s * a.N + n];
                gdec[u] = a.rflag[s] ? 0.f : exp2f(a.dsum[s] * Ar);
            }
        }
#pragma unroll
        for (int u = 0; u < CU; u++) {
            const int64_t c = c0 - u;
            if (c < 0) break;
            a.gst[((b * a.nc + c) * a.D + d) * a.N + n] = G;
            if (c >= 1) G = fmaf(gdec[u], G, gq[u]);
        }
    }
}

// 16 values per lane summed over the 32 lanes of a warp; lanes 2i and 2i+1 end with the sum of
// value index ((l>>4)&1)*8 + ((l>>3)&1)*4 + ((l>>2)&1)*2 + ((l>>1)&1).  Returns that sum.
// (Stages as templates: the first version's `for (m = 8; m >= 1; m /= 2)` was not unrolled, so v[]
// lived in local memory: 64 bytes of stack and ~47 local loads/stores per call; kernels/dev/NOTES.md.)
template <int M>
__device__ __forceinline__ void reduce_stage(float v[16], int lane) {
    const bool up = lane & (2 * M);
#pragma unroll
    for (int i = 0; i < M; i++) {
        const float keep = up ? v[i + M] : v[i], give = up ? v[i] : v[i + M];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, give, 2 * M);
    }
}
__device__ __forceinline__ float warp_reduce16(float v[16], int lane) {
    reduce_stage<8>(v, lane);
    reduce_stage<4>(v, lane);
    reduce_stage<2>(v, lane);
    reduce_stage<1>(v, lane);
    return v[0] + __shfl_xor_sync(0xffffffffu, v[0], 1);
}

// (4) main pass.  Block: 64 consecutive channels of one (b, chunk).  Dynamic shared memory:
// (T/8) tile-start states x NB modes x 64 threads.
template <typename T, int NB, bool SEL>
__global__ void __launch_bounds__(64) scan_bwd_main_kernel(const ScanArgs a) {
    extern __shared__ float sstate[];
    const int64_t dblocks = (a.D + 63) / 64;
    const int64_t blk = blockIdx.x;
    const int64_t d = (blk % dblocks) * 64 + threadIdx.x;
    const int64_t c = (blk / dblocks) % a.nc;
    const int64_t b = blk / (dblocks * a.nc);
    const int lane = threadIdx.x & 31;
    const bool active = d < a.D;
    const int64_t dd = active ? d : a.D - 1;          // inactive lanes compute on a valid channel, write nothing
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = a.dbias ? a.dbias[dd] : 0.f;
    const float Dv = a.Dskip ? a.Dskip[dd] : 0.f;
    const int64_t g = SEL ? dd / (a.D / a.G) : 0;
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t ntiles = (t_end - t_begin + 7) / 8;
    // can this warp sum dB/dC with shuffles (all lanes active, one group)?
    const int64_t g_lane0 = __shfl_sync(0xffffffffu, g, 0);   // every lane shuffles (no short circuit)
    const bool warp_sum = SEL && __all_sync(0xffffffffu, active && g == g_lane0);
    const int64_t s = (b * a.nc + c) * a.D + dd;
    float dD_acc = 0.f, dbias_acc = 0.f;
    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        const bool last = nb == nblk - 1;
        float Ar[NB], ga[NB], x[NB], dA_acc[NB], dBi[NB], dCi[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) {
            const bool ok = n0 + n < a.N;
            Ar[n] = ok ? a.A[dd * a.N + n0 + n] * LOG2E : 0.f;
            x[n] = !ok ? 0.f : a.nc > 1 ? a.hst[s * a.N + n0 + n] : a.h0 ? a.h0[(b * a.D + dd) * a.N + n0 + n] : 0.f;
            ga[n] = !ok ? 0.f : a.nc > 1 ? a.gst[s * a.N + n0 + n] : a.dhout ? a.dhout[(b * a.D + dd) * a.N + n0 + n] : 0.f;
            dA_acc[n] = dBi[n] = dCi[n] = 0.f;
        }
        // forward sweep: tile-start states to shared memory
        for (int64_t k = 0; k < ntiles; k++) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], u[8], du[8], dyp[8], draw[8], dout[8], zz[8], off[8];
            bwd_tile_inputs<T, true, false>(a, b, dd, t0, nv, bias, dl, u, du, dyp, draw, dout, zz, off);
#pragma unroll
            for (int n = 0; n < NB; n++) {
                sstate[(k * NB + n) * 64 + threadIdx.x] = x[n];
                float Bv[8];
                bwd_load_bc<T, SEL>(a, (const T *)a.B, b, g, dd, n0 + n, t0, nv, Bv);
#pragma unroll
                for (int j = 0; j < 8; j++) x[n] = fmaf(ex2(fmaf(dl[j], Ar[n], off[j])), x[n], du[j] * Bv[j]);
            }
        }
        // reverse over tiles
        for (int64_t k = ntiles - 1; k >= 0; k--) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], u[8], du[8], dyp[8], draw[8], dout[8], zz[8], off[8];
            bwd_tile_inputs<T>(a, b, dd, t0, nv, bias, dl, u, du, dyp, draw, dout, zz, off);
            float gdu[8], gdd[8], yv[8];
#pragma unroll
            for (int j = 0; j < 8; j++) gdu[j] = gdd[j] = yv[j] = 0.f;
#pragma unroll
            for (int n = 0; n < NB; n++) {
                float Bv[8], Cv[8], av[8], xp[9];
                bwd_load_bc<T, SEL>(a, (const T *)a.B, b, g, dd, n0 + n, t0, nv, Bv);
                bwd_load_bc<T, SEL>(a, (const T *)a.C, b, g, dd, n0 + n, t0, nv, Cv);
                xp[0] = sstate[(k * NB + n) * 64 + threadIdx.x];
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    av[j] = ex2(fmaf(dl[j], Ar[n], off[j]));
                    xp[j + 1] = fmaf(av[j], xp[j], du[j] * Bv[j]);
                }
                const float An = Ar[n] * (1.f / LOG2E);
                float red[16];   // dB (0..7), dC (8..15) of this mode, per step
#pragma unroll
                for (int j = 7; j >= 0; j--) {
                    const float gg = fmaf(Cv[j], dyp[j], ga[n]);
                    red[j] = gg * du[j];
                    red[8 + j] = xp[j + 1] * dyp[j];
                    gdu[j] = fmaf(gg * dl[j], Bv[j], gdu[j]);
                    const float axp = av[j] * xp[j];
                    gdd[j] = fmaf(gg, fmaf(u[j], Bv[j], An * axp), gdd[j]);
                    dA_acc[n] = fmaf(gg * dl[j], axp, dA_acc[n]);
                    yv[j] = fmaf(Cv[j], xp[j + 1], yv[j]);
                    ga[n] = av[j] * gg;
                }
                if (SEL) {
                    const int64_t o = b * a.bcsb + t0 * a.bcst + (g * a.N + n0 + n) * a.bcsc;
                    if (warp_sum) {
                        const float v = warp_reduce16(red, lane);
                        const int idx = ((lane >> 4) & 1) * 8 + ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2 + ((lane >> 1) & 1);
                        const int j = idx & 7;
                        if ((lane & 1) == 0 && j < nv && n0 + n < a.N) atomicAdd((idx < 8 ? a.dB : a.dC) + o + j * a.bcst, v);
                    } else if (active && n0 + n < a.N) {
#pragma unroll
                        for (int j = 0; j < 8; j++) if (j < nv) { atomicAdd(a.dB + o + j * a.bcst, red[j]); atomicAdd(a.dC + o + j * a.bcst, red[8 + j]); }
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 8; j++) { dBi[n] += red[j]; dCi[n] += red[8 + j]; }
                }
            }
            if (!active) continue;
            // combine with the other register blocks; finish on the last one
            const int64_t go = b * a.gsb + dd * a.gsd + t0 * a.gst_;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (j >= nv) continue;
                const int64_t o = go + j * a.gst_;
                float vdu = gdu[j], vdd = gdd[j], vy = yv[j];
                if (nb > 0) { vdu += a.du[o]; vdd += a.ddelta[o]; if (a.z) vy += a.dz[o]; }
                if (!last) {
                    a.du[o] = vdu; a.ddelta[o] = vdd; if (a.z) a.dz[o] = vy;
                    continue;
                }
                a.du[o] = fmaf(Dv, dyp[j], vdu);
                if (a.softplus && draw[j] <= 20.f) vdd *= sigmoidf_(draw[j]);
                a.ddelta[o] = vdd;
                dbias_acc += vdd;
                dD_acc = fmaf(dyp[j], u[j], dD_acc);
                if (a.z) {
                    const float sg = sigmoidf_(zz[j]);
                    a.dz[o] = dout[j] * fmaf(Dv, u[j], vy) * sg * (1.f + zz[j] * (1.f - sg));
                }
            }
        }
        if (active) {
#pragma unroll
            for (int n = 0; n < NB; n++) {
                if (n0 + n >= a.N) continue;
                atomicAdd(a.dA + d * a.N + n0 + n, dA_acc[n]);
                if (!SEL) { atomicAdd(a.dB + d * a.N + n0 + n, dBi[n]); atomicAdd(a.dC + d * a.N + n0 + n, dCi[n]); }
                if (c == 0 && a.dh0) a.dh0[(b * a.D + d) * a.N + n0 + n] = ga[n];
            }
        }
    }
    if (active) {
        if (a.dD) atomicAdd(a.dD + d, dD_acc);
        if (a.ddbias) atomicAdd(a.ddbias + d, dbias_acc);
    }
}


// =============================================================================================
// Fast backward (kernels/dev/NOTES.md, "backward v2"): selective B/C with every block of 128
// channels in one group (G == 1 or D/G a multiple of 128), real A, no seq_idx.  Differences from
// the generic backward below: 128-channel blocks with B, C of the chunk staged once in shared
// memory; all 16 modes of a thread in one register block (u, delta, dy, z read once per sweep,
// no read-modify-write of du/ddelta/dz for N <= 16); dB, dC summed over the block's 4 warps in
// shared memory and written once per (block, mode, step) into a workspace (no atomics), summed over
// the blocks of a group by scan_bwd_bc_sum_kernel; dA, dD, ddelta_bias written per chunk and summed
// by sum_rows_kernel (deterministic: no atomics anywhere).
#ifndef BWD_MINB
#define BWD_MINB 2    // blocks of 128 per SM the fast backward main kernel is compiled for
#endif
#define BWD_FAST_T 64 // chunk length of the fast backward (shared memory holds T/8 states per mode)
#ifndef SUM_MINB
#define SUM_MINB 4    // blocks of 128 per SM for scan_bwd_sum_fast_kernel (182 registers unbounded: 2)
#endif

// B and C (or C alone: arrays = 1) of steps [t_begin, t_end) and modes n0..n0+NB-1 into
// s[arr][n][t - t_begin] (T floats per mode), zero beyond.
template <typename T, int NB>
__device__ __forceinline__ void stage_bc(const ScanArgs &a, float *s, int arrays, int64_t b, int64_t g, int64_t n0,
                                         int64_t t_begin, int64_t t_end) {
    const int64_t TT = a.T;
    for (int64_t e = threadIdx.x; e < arrays * NB * TT; e += blockDim.x) {
        const int64_t arr = e / (NB * TT), rem = e - arr * NB * TT;
        const int64_t n = rem / TT, t = t_begin + (rem - n * TT);
        const T *P = arrays == 2 && arr == 0 ? (const T *)a.B : (const T *)a.C;
        float v = 0.f;
        if (t < t_end && n0 + n < a.N) v = tof(P[b * a.bcsb + t * a.bcst + (g * a.N + n0 + n) * a.bcsc]);
        s[e] = v;
    }
}
__device__ __forceinline__ void lds8(const float *p, float v[8]) {   // p 16-byte aligned
    const float4 q0 = reinterpret_cast<const float4 *>(p)[0], q1 = reinterpret_cast<const float4 *>(p)[1];
    v[0] = q0.x; v[1] = q0.y; v[2] = q0.z; v[3] = q0.w; v[4] = q1.x; v[5] = q1.y; v[6] = q1.z; v[7] = q1.w;
}

// Both chunk summaries of the fast backward in one pass (B, C staged in shared memory): for each
// chunk, the end state from zero x (forward summary, chunks 0..nc-2) and the reverse summary
// Q = a_{t0} g_{t0} from a zero adjoint at the chunk end (chunks 1..nc-1), computed FORWARD in time
// with the running decay P_t = a_{t0} ... a_t:  Q = sum_t P_t C_t dy'_t.  One ex2 per (t, n) serves
// both (the generic backward spends two: scan_fwd_kernel PASS 1 and scan_bwd_rsum_kernel).
template <typename T, int NB>
__global__ void __launch_bounds__(128, SUM_MINB) scan_bwd_sum_fast_kernel(const ScanArgs a) {
    extern __shared__ float4 smem4[];
    float *sB = reinterpret_cast<float *>(smem4);
    float *sC = sB + NB * a.T;
    const int64_t dblocks = (a.D + 127) / 128;
    const int64_t blk = blockIdx.x;
    const int64_t d0 = (blk % dblocks) * 128, d = d0 + threadIdx.x;
    const int64_t c = (blk / dblocks) % a.nc;
    const int64_t b = blk / (dblocks * a.nc);
    const bool active = d < a.D;
    const int64_t dd = active ? d : a.D - 1;
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = a.dbias ? a.dbias[dd] : 0.f;
    const int64_t g = d0 / (a.D / a.G);
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t ntiles = (t_end - t_begin + 7) / 8;
    const int64_t row = b * a.xsb + dd * a.xsd;
    const int64_t s = (b * a.nc + c) * a.D + dd;
    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        __syncthreads();
        stage_bc<T, NB>(a, sB, 2, b, g, n0, t_begin, t_end);
        __syncthreads();
        float Ar[NB], x[NB], P[NB], Q[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) {
            Ar[n] = n0 + n < a.N ? a.A[dd * a.N + n0 + n] * LOG2E : 0.f;
            x[n] = 0.f; P[n] = 1.f; Q[n] = 0.f;
        }
        float dsum = 0.f;
        for (int64_t k = 0; k < ntiles; k++) {
            const int64_t t0 = t_begin + 8 * k, r0 = row + t0 * a.xst;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], du[8], dyp[8];
            {
                float uu[8], dout[8], zz[8];
                ld8((const T *)a.u + r0, a.xst, nv, a.vec_x, uu);
                ld8((const T *)a.delta + r0, a.xst, nv, a.vec_x, dl);
                ld8((const T *)a.dy + r0, a.xst, nv, a.vec_x, dout);
                if (a.z) ld8((const T *)a.z + r0, a.xst, nv, a.vec_x, zz);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const float v = a.softplus ? softplusf(dl[j] + bias) : dl[j] + bias;
                    dl[j] = j < nv ? v : 0.f;
                    dsum += dl[j];
                    du[j] = dl[j] * uu[j];
                    dyp[j] = j < nv ? (a.z ? dout[j] * zz[j] * sigmoidf_(zz[j]) : dout[j]) : 0.f;
                }
            }
#pragma unroll
            for (int n = 0; n < NB; n++) {
                float Bv[8], Cv[8];
                lds8(sB + n * a.T + 8 * k, Bv);
                lds8(sC + n * a.T + 8 * k, Cv);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const float av = ex2(dl[j] * Ar[n]);
                    x[n] = fmaf(av, x[n], du[j] * Bv[j]);
                    P[n] *= av;
                    Q[n] = fmaf(P[n], Cv[j] * dyp[j], Q[n]);
                }
            }
        }
        if (active) {
#pragma unroll
            for (int n = 0; n < NB; n++) {
                if (n0 + n >= a.N) continue;
                if (c < a.nc - 1) a.hst[s * a.N + n0 + n] = x[n];
                if (c >= 1) a.gst[s * a.N + n0 + n] = Q[n];
            }
            if (nb == 0) { a.dsum[s] = dsum; a.rflag[s] = 0; }
        }
    }
}

// Main pass of the fast backward.  Block: 128 consecutive channels of one (b, chunk).  Dynamic
// shared memory: B, C [2][NB][T]; dB/dC warp sums [2 buffers][4 warps][NB][16];
// tile-start states [T/8][NB][128].
template <typename T, int NB>
__global__ void __launch_bounds__(128, BWD_MINB) scan_bwd_fast_kernel(const ScanArgs a) {
    extern __shared__ float4 smem4[];
    float *sB = reinterpret_cast<float *>(smem4);
    float *sC = sB + NB * a.T;
    float *sred = sC + NB * a.T;
    float *sst = sred + 2 * 4 * NB * 16;
    const int64_t dblocks = (a.D + 127) / 128;
    const int64_t blk = blockIdx.x;
    const int64_t dblk = blk % dblocks, d0 = dblk * 128, d = d0 + threadIdx.x;
    const int64_t c = (blk / dblocks) % a.nc;
    const int64_t b = blk / (dblocks * a.nc);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool active = d < a.D;
    const int64_t dd = active ? d : a.D - 1;   // inactive lanes: dy' = 0, u = 0, zero adjoint: they add nothing
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = a.dbias ? a.dbias[dd] : 0.f;
    const float Dv = a.Dskip ? a.Dskip[dd] : 0.f;
    const int64_t g = d0 / (a.D / a.G);
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t ntiles = (t_end - t_begin + 7) / 8;
    const int64_t s = (b * a.nc + c) * a.D + dd;
    const int64_t row = b * a.xsb + dd * a.xsd;
    const float umask = active ? 1.f : 0.f;
    const int ridx = ((lane >> 4) & 1) * 8 + ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2 + ((lane >> 1) & 1);
    float dD_acc = 0.f, dbias_acc = 0.f;
    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        const bool last = nb == nblk - 1;
        __syncthreads();   // the previous register block is done with sB, sC
        stage_bc<T, NB>(a, sB, 2, b, g, n0, t_begin, t_end);
        __syncthreads();
        float Ar[NB], ga[NB], x[NB], dA_acc[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) {
            const bool ok = active && n0 + n < a.N;
            Ar[n] = n0 + n < a.N ? a.A[dd * a.N + n0 + n] * LOG2E : 0.f;
            x[n] = !ok ? 0.f : a.nc > 1 ? a.hst[s * a.N + n0 + n] : a.h0 ? a.h0[(b * a.D + dd) * a.N + n0 + n] : 0.f;
            ga[n] = !ok ? 0.f : a.nc > 1 ? a.gst[s * a.N + n0 + n] : a.dhout ? a.dhout[(b * a.D + dd) * a.N + n0 + n] : 0.f;
            dA_acc[n] = 0.f;
        }
        // forward sweep: tile-start states to shared memory (raw u, delta prefetched one tile ahead)
        float pu[8], pd[8];
        ld8((const T *)a.u + row + t_begin * a.xst, a.xst, (int)min((int64_t)8, t_end - t_begin), a.vec_x, pu);
        ld8((const T *)a.delta + row + t_begin * a.xst, a.xst, (int)min((int64_t)8, t_end - t_begin), a.vec_x, pd);
        for (int64_t k = 0; k < ntiles; k++) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], du[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float v = a.softplus ? softplusf(pd[j] + bias) : pd[j] + bias;
                dl[j] = j < nv ? v : 0.f;
                du[j] = dl[j] * pu[j] * umask;
            }
            if (k + 1 < ntiles) {
                const int nv2 = (int)min((int64_t)8, t_end - t0 - 8);
                ld8((const T *)a.u + row + (t0 + 8) * a.xst, a.xst, nv2, a.vec_x, pu);
                ld8((const T *)a.delta + row + (t0 + 8) * a.xst, a.xst, nv2, a.vec_x, pd);
            }
#pragma unroll
            for (int n = 0; n < NB; n++) {
                sst[(k * NB + n) * 128 + threadIdx.x] = x[n];
                float Bv[8];
                lds8(sB + n * a.T + 8 * k, Bv);
#pragma unroll
                for (int j = 0; j < 8; j++) x[n] = fmaf(ex2(dl[j] * Ar[n]), x[n], du[j] * Bv[j]);
            }
        }
        // reverse over tiles.  The raw u, delta, dy, z of tile k-1 are loaded right after tile k's
        // mode loop (v5), so their latency overlaps the block sync, the dB/dC stores and the finish.
        float ru[8], rd[8], rdy[8], rz[8];
#pragma unroll
        for (int j = 0; j < 8; j++) rz[j] = 0.f;
        {
            const int64_t t0 = t_begin + 8 * (ntiles - 1), r0 = row + t0 * a.xst;
            const int nv = (int)min((int64_t)8, t_end - t0);
            ld8((const T *)a.u + r0, a.xst, nv, a.vec_x, ru);
            ld8((const T *)a.delta + r0, a.xst, nv, a.vec_x, rd);
            ld8((const T *)a.dy + r0, a.xst, nv, a.vec_x, rdy);
            if (a.z) ld8((const T *)a.z + r0, a.xst, nv, a.vec_x, rz);
        }
        for (int64_t k = ntiles - 1; k >= 0; k--) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            const int64_t r0 = row + t0 * a.xst;
            float dl[8], u[8], du[8], dyp[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float v = a.softplus ? softplusf(rd[j] + bias) : rd[j] + bias;
                dl[j] = j < nv ? v : 0.f;
                u[j] = ru[j] * umask;
                du[j] = dl[j] * u[j];
                dyp[j] = j < nv ? umask * (a.z ? rdy[j] * rz[j] * sigmoidf_(rz[j]) : rdy[j]) : 0.f;
            }
            // per step, summed over the modes: gB = sum g B, gA = sum A g a x_prev, yv = sum C x
            float gB[8], gA[8], yv[8];
#pragma unroll
            for (int j = 0; j < 8; j++) gB[j] = gA[j] = yv[j] = 0.f;
            float *rw = sred + (k & 1) * 4 * NB * 16;
#pragma unroll
            for (int n = 0; n < NB; n++) {
                float Bv[8], Cv[8], av[8], xp[9];
                lds8(sB + n * a.T + 8 * k, Bv);
                lds8(sC + n * a.T + 8 * k, Cv);
                xp[0] = sst[(k * NB + n) * 128 + threadIdx.x];
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    av[j] = ex2(dl[j] * Ar[n]);
                    xp[j + 1] = fmaf(av[j], xp[j], du[j] * Bv[j]);
                }
                const float An = Ar[n] * (1.f / LOG2E);
                float red[16];   // dB (0..7), dC (8..15) of this mode, per step
#pragma unroll
                for (int j = 7; j >= 0; j--) {
                    const float gg = fmaf(Cv[j], dyp[j], ga[n]);
                    red[j] = gg * du[j];
                    red[8 + j] = xp[j + 1] * dyp[j];
                    gB[j] = fmaf(gg, Bv[j], gB[j]);
                    const float gax = gg * (av[j] * xp[j]);
                    gA[j] = fmaf(An, gax, gA[j]);
                    dA_acc[n] = fmaf(dl[j], gax, dA_acc[n]);
                    yv[j] = fmaf(Cv[j], xp[j + 1], yv[j]);
                    ga[n] = av[j] * gg;
                }
                const float v = warp_reduce16(red, lane);
                if ((lane & 1) == 0) rw[(warp * NB + n) * 16 + ridx] = v;
            }
            if (k > 0) {   // prefetch tile k-1 (always 8 valid steps)
                const int64_t r1 = r0 - 8 * a.xst;
                ld8((const T *)a.u + r1, a.xst, 8, a.vec_x, ru);
                ld8((const T *)a.delta + r1, a.xst, 8, a.vec_x, rd);
                ld8((const T *)a.dy + r1, a.xst, 8, a.vec_x, rdy);
                if (a.z) ld8((const T *)a.z + r1, a.xst, 8, a.vec_x, rz);
            }
            __syncthreads();
            for (int v = threadIdx.x; v < NB * 16; v += 128) {   // sums over the 4 warps, one store each
                const int n = v >> 4, idx = v & 15, j = idx & 7, arr = idx >> 3;
                const float sum = rw[v] + rw[NB * 16 + v] + rw[2 * NB * 16 + v] + rw[3 * NB * 16 + v];
                if (j < nv && n0 + n < a.N)
                    a.wsBC[(((b * dblocks + dblk) * 2 + arr) * a.N + n0 + n) * a.L + t0 + j] = sum;
            }
            if (!active) continue;
            float gdu[8], gdd[8];   // du = delta sum g B;  ddelta (before softplus') = u sum g B + sum A g a x_prev
#pragma unroll
            for (int j = 0; j < 8; j++) { gdu[j] = dl[j] * gB[j]; gdd[j] = fmaf(u[j], gB[j], gA[j]); }
            // combine with the other register blocks; finish on the last one
            const int64_t go = b * a.gsb + dd * a.gsd + t0 * a.gst_;
            if (!last) {
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (j >= nv) continue;
                    const int64_t o = go + j * a.gst_;
                    float vdu = gdu[j], vdd = gdd[j], vy = yv[j];
                    if (nb > 0) { vdu += a.du[o]; vdd += a.ddelta[o]; if (a.z) vy += a.dz[o]; }
                    a.du[o] = vdu; a.ddelta[o] = vdd; if (a.z) a.dz[o] = vy;
                }
                continue;
            }
            float draw[8], dout[8], zz[8];   // reloaded (L1 hits) rather than kept live over the modes
            ld8((const T *)a.delta + r0, a.xst, nv, a.vec_x, draw);
            ld8((const T *)a.dy + r0, a.xst, nv, a.vec_x, dout);
            if (a.z) ld8((const T *)a.z + r0, a.xst, nv, a.vec_x, zz);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (j >= nv) continue;
                const int64_t o = go + j * a.gst_;
                float vdu = gdu[j], vdd = gdd[j], vy = yv[j];
                if (nb > 0) { vdu += a.du[o]; vdd += a.ddelta[o]; if (a.z) vy += a.dz[o]; }
                a.du[o] = fmaf(Dv, dyp[j], vdu);
                const float raw = draw[j] + bias;
                if (a.softplus && raw <= 20.f) vdd *= sigmoidf_(raw);
                a.ddelta[o] = vdd;
                dbias_acc += vdd;
                dD_acc = fmaf(dyp[j], u[j], dD_acc);
                if (a.z) {
                    const float sg = sigmoidf_(zz[j]);
                    a.dz[o] = dout[j] * fmaf(Dv, u[j], vy) * sg * (1.f + zz[j] * (1.f - sg));
                }
            }
        }
        if (active) {
#pragma unroll
            for (int n = 0; n < NB; n++) {
                if (n0 + n >= a.N) continue;
                a.wsA[s * a.N + n0 + n] = dA_acc[n];
                if (c == 0 && a.dh0) a.dh0[(b * a.D + d) * a.N + n0 + n] = ga[n];
            }
        }
    }
    if (active) { a.wsD[s] = dD_acc; a.wsDb[s] = dbias_acc; }
}

// out[i] = sum over r < rows of ws[r * m + i].  Block: 32 columns x 8 row groups.
__global__ void sum_rows_kernel(const float *ws, int64_t rows, int64_t m, float *out) {
    __shared__ float part[8][33];
    const int64_t i = (int64_t)blockIdx.x * 32 + threadIdx.x;
    float acc = 0.f;
    if (i < m)
        for (int64_t r = threadIdx.y; r < rows; r += 8) acc += ws[r * m + i];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && i < m) {
        float t = 0.f;
#pragma unroll
        for (int k = 0; k < 8; k++) t += part[k][threadIdx.x];
        out[i] = t;
    }
}

// dB, dC (b, g, n, t) = sum of wsBC over the blocks of 128 channels of group g.
__global__ void scan_bwd_bc_sum_kernel(const ScanArgs a) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t total = a.batch * 2 * a.G * a.N * a.L;
    if (i >= total) return;
    const int64_t t = i % a.L, n = (i / a.L) % a.N, g = (i / (a.L * a.N)) % a.G;
    const int64_t arr = (i / (a.L * a.N * a.G)) % 2, b = i / (a.L * a.N * a.G * 2);
    const int64_t dblocks = (a.D + 127) / 128, per = a.G == 1 ? dblocks : (a.D / a.G) / 128;
    float acc = 0.f;
    for (int64_t k = g * per; k < (g + 1) * per; k++) acc += a.wsBC[(((b * dblocks + k) * 2 + arr) * a.N + n) * a.L + t];
    (arr ? a.dC : a.dB)[b * a.bcsb + t * a.bcst + (g * a.N + n) * a.bcsc] = acc;
}

static bool bwd_fast_eligible(const ScanArgs &a) {
    return a.sel && !a.cplx && !a.seq && !g_force_generic && (a.G == 1 || (a.D / a.G) % 128 == 0);
}
static size_t bwd_fast_smem(int64_t T, int NB) {
    return (size_t)(2 * NB * T + 2 * 4 * NB * 16 + (T / 8) * NB * 128) * sizeof(float);
}

template <typename T, int NB>
static int launch_bwd_fast(ScanArgs &a, cudaStream_t st) {
    const int64_t dblocks = (a.D + 127) / 128;
    const int64_t nthr = a.batch * a.D * a.N;
    if (a.nc > 1) {
        scan_bwd_sum_fast_kernel<T, NB><<<(unsigned)(a.batch * a.nc * dblocks), 128, (size_t)2 * NB * a.T * 4, st>>>(a);
        CK(cudaGetLastError());
        scan_carry_kernel<false><<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
        CK(cudaGetLastError());
        scan_bwd_carry_kernel<<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
        CK(cudaGetLastError());
    }
    const size_t sm = bwd_fast_smem(a.T, NB);
    static size_t sm_set[2];
    size_t &cur = sm_set[NB == 16];
    if (sm > cur) {
        CK(cudaFuncSetAttribute(scan_bwd_fast_kernel<T, NB>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
        cur = sm;
    }
    scan_bwd_fast_kernel<T, NB><<<(unsigned)(a.batch * a.nc * dblocks), 128, sm, st>>>(a);
    CK(cudaGetLastError());
    const int64_t rows = a.batch * a.nc;
    sum_rows_kernel<<<(unsigned)((a.D * a.N + 31) / 32), dim3(32, 8), 0, st>>>(a.wsA, rows, a.D * a.N, a.dA);
    CK(cudaGetLastError());
    if (a.dD) { sum_rows_kernel<<<(unsigned)((a.D + 31) / 32), dim3(32, 8), 0, st>>>(a.wsD, rows, a.D, a.dD); CK(cudaGetLastError()); }
    if (a.ddbias) { sum_rows_kernel<<<(unsigned)((a.D + 31) / 32), dim3(32, 8), 0, st>>>(a.wsDb, rows, a.D, a.ddbias); CK(cudaGetLastError()); }
    const int64_t nbc = a.batch * 2 * a.G * a.N * a.L;
    scan_bwd_bc_sum_kernel<<<(unsigned)((nbc + 255) / 256), 256, 0, st>>>(a);
    CK(cudaGetLastError());
    return 0;
}

template <typename T, bool SEL>
static int launch_bwd(ScanArgs &a, cudaStream_t st) {
    constexpr int NB = 8;
    if (a.nc > 1) {
        const int bd = a.D >= 128 ? 128 : (int)((a.D + 31) / 32 * 32);
        const int64_t dblocks = (a.D + bd - 1) / bd;
        scan_fwd_kernel<T, 16, false, SEL, 1><<<(unsigned)(a.batch * (a.nc - 1) * dblocks), bd, 0, st>>>(a);
        CK(cudaGetLastError());
        const int64_t nthr = a.batch * a.D * a.N;
        scan_carry_kernel<false><<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
        CK(cudaGetLastError());
        const int64_t db64 = (a.D + 63) / 64;
        scan_bwd_rsum_kernel<T, NB, SEL><<<(unsigned)(a.batch * (a.nc - 1) * db64), 64, 0, st>>>(a);
        CK(cudaGetLastError());
        scan_bwd_carry_kernel<<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
        CK(cudaGetLastError());
    }
    const int64_t db64 = (a.D + 63) / 64;
    const size_t sm = (size_t)(a.T / 8) * NB * 64 * sizeof(float);
    scan_bwd_main_kernel<T, NB, SEL><<<(unsigned)(a.batch * a.nc * db64), 64, sm, st>>>(a);
    CK(cudaGetLastError());
    return 0;
}


// =============================================================================================
// Complex-A backward (generic kernels, the structure of the real ones above).  g = dL/dRe x +
// i dL/dIm x; y = 2 Re(sum C x); a product w = a x passes conj(a) g to x and conj(x) g to a:
//   g_t = 2 dy'_t conj(C_t) + conj(a_{t+1}) g_{t+1};   dB_t += delta u g_t;  dC_t += 2 dy'_t conj(x_t);
//   du += delta Re(g conj(B));  dA += delta conj(a) g conj(x_{t-1});
//   ddelta += u Re(g conj(B)) + Re(g conj(x_{t-1}) conj(A a)).
// Complex values are (re, im) float pairs; strides count complex elements.
template <typename T, bool SEL>
__device__ __forceinline__ void bwd_load_bc_cplx(const ScanArgs &a, const T *P, int64_t b, int64_t g, int64_t d, int64_t n,
                                                 int64_t t0, int nv, float re[8], float im[8]) {
    if (n >= a.N) {
#pragma unroll
        for (int j = 0; j < 8; j++) re[j] = im[j] = 0.f;
    } else if (SEL) {
        ld8c(P + 2 * (b * a.bcsb + t0 * a.bcst + (g * a.N + n) * a.bcsc), a.bcst, nv, a.vec_bc, re, im);
    } else {
        const float cr = ((const float *)P)[2 * (d * a.N + n)], ci = ((const float *)P)[2 * (d * a.N + n) + 1];
#pragma unroll
        for (int j = 0; j < 8; j++) { re[j] = cr; im[j] = ci; }
    }
}
// decay a = exp(delta A) (A's real part pre-scaled by log2 e; off = -inf at a reset)
__device__ __forceinline__ void cdecay(float dl, float Ar, float Ai, float off, float &ar, float &ai) {
    const float mag = ex2(fmaf(dl, Ar, off));
    float sn, cs;
    __sincosf(dl * Ai, &sn, &cs);
    ar = mag * cs; ai = mag * sn;
}

// reverse summaries of chunks 1..nc-1 (complex)
template <typename T, int NB, bool SEL>
__global__ void __launch_bounds__(64) scan_bwd_rsum_cplx_kernel(const ScanArgs a) {
    const int64_t dblocks = (a.D + 63) / 64, ncp = a.nc - 1;
    const int64_t blk = blockIdx.x;
    const int64_t d = (blk % dblocks) * 64 + threadIdx.x;
    const int64_t c = 1 + (blk / dblocks) % ncp;
    const int64_t b = blk / (dblocks * ncp);
    if (d >= a.D) return;
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = a.dbias ? a.dbias[d] : 0.f;
    const int64_t g = SEL ? d / (a.D / a.G) : 0;
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t ntiles = (t_end - t_begin + 7) / 8;
    const int64_t s = (b * a.nc + c) * a.D + d;
    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        float Ar[NB], Ai[NB], gr[NB], gi[NB];
#pragma unroll
        for (int n = 0; n < NB; n++) {
            const bool ok = n0 + n < a.N;
            Ar[n] = ok ? a.A[2 * (d * a.N + n0 + n)] * LOG2E : 0.f;
            Ai[n] = ok ? a.A[2 * (d * a.N + n0 + n) + 1] : 0.f;
            gr[n] = gi[n] = 0.f;
        }
        float dsum = 0.f;
        int reset = 0;
        for (int64_t k = ntiles - 1; k >= 0; k--) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], u[8], du[8], dyp[8], draw[8], dout[8], zz[8], off[8];
            bwd_tile_inputs<T, false, true>(a, b, d, t0, nv, bias, dl, u, du, dyp, draw, dout, zz, off);
            if (nb == 0) {
#pragma unroll
                for (int j = 0; j < 8; j++) { dsum += dl[j]; reset |= off[j] != 0.f; }
            }
#pragma unroll
            for (int n = 0; n < NB; n++) {
                float Cr[8], Ci[8];
                bwd_load_bc_cplx<T, SEL>(a, (const T *)a.C, b, g, d, n0 + n, t0, nv, Cr, Ci);
#pragma unroll
                for (int j = 7; j >= 0; j--) {
                    const float ggr = fmaf(2.f * dyp[j], Cr[j], gr[n]), ggi = fmaf(-2.f * dyp[j], Ci[j], gi[n]);
                    float ar, ai;
                    cdecay(dl[j], Ar[n], Ai[n], off[j], ar, ai);
                    gr[n] = fmaf(ar, ggr, ai * ggi);
                    gi[n] = fmaf(ar, ggi, -ai * ggr);
                }
            }
        }
#pragma unroll
        for (int n = 0; n < NB; n++)
            if (n0 + n < a.N) { a.gst[s * 2 * a.N + 2 * (n0 + n)] = gr[n]; a.gst[s * 2 * a.N + 2 * (n0 + n) + 1] = gi[n]; }
        if (nb == 0) { a.dsum[s] = dsum; a.rflag[s] = reset; }
    }
}

// reverse carry (complex), one thread per (b, d, n): G <- Q_c + conj(exp(A sum delta)) G
__global__ void scan_bwd_carry_cplx_kernel(const ScanArgs a) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.batch * a.D * a.N) return;
    const int64_t n = i % a.N, d = (i / a.N) % a.D, b = i / (a.N * a.D);
    const float Ar = a.A[2 * (d * a.N + n)] * LOG2E, Ai = a.A[2 * (d * a.N + n) + 1];
    const int64_t h = 2 * ((b * a.D + d) * a.N + n);
    float Gr = a.dhout ? a.dhout[h] : 0.f, Gi = a.dhout ? a.dhout[h + 1] : 0.f;
    for (int64_t c = a.nc - 1; c >= 0; c--) {
        const int64_t s = (b * a.nc + c) * a.D + d, o = 2 * (s * a.N + n);
        const float qr = c >= 1 ? a.gst[o] : 0.f, qi = c >= 1 ? a.gst[o + 1] : 0.f;
        a.gst[o] = Gr; a.gst[o + 1] = Gi;
        if (c >= 1) {
            const float mag = a.rflag[s] ? 0.f : exp2f(a.dsum[s] * Ar);
            float sn, cs;
            sincosf(a.dsum[s] * Ai, &sn, &cs);
            const float er = mag * cs, ei = mag * sn;
            const float nr = qr + er * Gr + ei * Gi, ni = qi + er * Gi - ei * Gr;
            Gr = nr; Gi = ni;
        }
    }
}

// main pass (complex).  Block: 64 channels of one (b, chunk); shared memory (T/8) x NB x 2 x 64.
template <typename T, int NB, bool SEL>
__global__ void __launch_bounds__(64) scan_bwd_main_cplx_kernel(const ScanArgs a) {
    extern __shared__ float sstate[];
    const int64_t dblocks = (a.D + 63) / 64;
    const int64_t blk = blockIdx.x;
    const int64_t d = (blk % dblocks) * 64 + threadIdx.x;
    const int64_t c = (blk / dblocks) % a.nc;
    const int64_t b = blk / (dblocks * a.nc);
    const int lane = threadIdx.x & 31;
    const bool active = d < a.D;
    const int64_t dd = active ? d : a.D - 1;
    const int64_t t_begin = c * a.T, t_end = min(a.L, t_begin + a.T);
    const float bias = a.dbias ? a.dbias[dd] : 0.f;
    const float Dv = a.Dskip ? a.Dskip[dd] : 0.f;
    const int64_t g = SEL ? dd / (a.D / a.G) : 0;
    const int nblk = (int)((a.N + NB - 1) / NB);
    const int64_t ntiles = (t_end - t_begin + 7) / 8;
    const int64_t g_lane0 = __shfl_sync(0xffffffffu, g, 0);
    const bool warp_sum = SEL && __all_sync(0xffffffffu, active && g == g_lane0);
    const int ridx = ((lane >> 4) & 1) * 8 + ((lane >> 3) & 1) * 4 + ((lane >> 2) & 1) * 2 + ((lane >> 1) & 1);
    const int64_t s = (b * a.nc + c) * a.D + dd;
    const int64_t NS = 2 * a.N;
    float dD_acc = 0.f, dbias_acc = 0.f;
    for (int nb = 0; nb < nblk; nb++) {
        const int64_t n0 = (int64_t)nb * NB;
        const bool last = nb == nblk - 1;
        float Ar[NB], Ai[NB], gr[NB], gi[NB], xr[NB], xi[NB], dAr[NB], dAi[NB], dBs[NB][4];
#pragma unroll
        for (int n = 0; n < NB; n++) {
            const bool ok = n0 + n < a.N;
            const int64_t k = dd * a.N + n0 + n, hs = (b * a.D + dd) * NS + 2 * (n0 + n);
            Ar[n] = ok ? a.A[2 * k] * LOG2E : 0.f;
            Ai[n] = ok ? a.A[2 * k + 1] : 0.f;
            xr[n] = !ok ? 0.f : a.nc > 1 ? a.hst[s * NS + 2 * (n0 + n)] : a.h0 ? a.h0[hs] : 0.f;
            xi[n] = !ok ? 0.f : a.nc > 1 ? a.hst[s * NS + 2 * (n0 + n) + 1] : a.h0 ? a.h0[hs + 1] : 0.f;
            gr[n] = !ok ? 0.f : a.nc > 1 ? a.gst[s * NS + 2 * (n0 + n)] : a.dhout ? a.dhout[hs] : 0.f;
            gi[n] = !ok ? 0.f : a.nc > 1 ? a.gst[s * NS + 2 * (n0 + n) + 1] : a.dhout ? a.dhout[hs + 1] : 0.f;
            dAr[n] = dAi[n] = 0.f;
            dBs[n][0] = dBs[n][1] = dBs[n][2] = dBs[n][3] = 0.f;
        }
        // forward sweep: tile-start states to shared memory
        for (int64_t k = 0; k < ntiles; k++) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], u[8], du[8], dyp[8], draw[8], dout[8], zz[8], off[8];
            bwd_tile_inputs<T, true, false>(a, b, dd, t0, nv, bias, dl, u, du, dyp, draw, dout, zz, off);
#pragma unroll
            for (int n = 0; n < NB; n++) {
                sstate[((k * NB + n) * 2) * 64 + threadIdx.x] = xr[n];
                sstate[((k * NB + n) * 2 + 1) * 64 + threadIdx.x] = xi[n];
                float Br[8], Bi[8];
                bwd_load_bc_cplx<T, SEL>(a, (const T *)a.B, b, g, dd, n0 + n, t0, nv, Br, Bi);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float ar, ai;
                    cdecay(dl[j], Ar[n], Ai[n], off[j], ar, ai);
                    const float nr = fmaf(ar, xr[n], fmaf(-ai, xi[n], du[j] * Br[j]));
                    const float ni = fmaf(ar, xi[n], fmaf(ai, xr[n], du[j] * Bi[j]));
                    xr[n] = nr; xi[n] = ni;
                }
            }
        }
        // reverse over tiles
        for (int64_t k = ntiles - 1; k >= 0; k--) {
            const int64_t t0 = t_begin + 8 * k;
            const int nv = (int)min((int64_t)8, t_end - t0);
            float dl[8], u[8], du[8], dyp[8], draw[8], dout[8], zz[8], off[8];
            bwd_tile_inputs<T>(a, b, dd, t0, nv, bias, dl, u, du, dyp, draw, dout, zz, off);
            float gdu[8], gdd[8], yv[8];
#pragma unroll
            for (int j = 0; j < 8; j++) gdu[j] = gdd[j] = yv[j] = 0.f;
#pragma unroll
            for (int n = 0; n < NB; n++) {
                float Br[8], Bi[8], Cr[8], Ci[8], avr[8], avi[8], xpr[9], xpi[9];
                bwd_load_bc_cplx<T, SEL>(a, (const T *)a.B, b, g, dd, n0 + n, t0, nv, Br, Bi);
                bwd_load_bc_cplx<T, SEL>(a, (const T *)a.C, b, g, dd, n0 + n, t0, nv, Cr, Ci);
                xpr[0] = sstate[((k * NB + n) * 2) * 64 + threadIdx.x];
                xpi[0] = sstate[((k * NB + n) * 2 + 1) * 64 + threadIdx.x];
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    cdecay(dl[j], Ar[n], Ai[n], off[j], avr[j], avi[j]);
                    xpr[j + 1] = fmaf(avr[j], xpr[j], fmaf(-avi[j], xpi[j], du[j] * Br[j]));
                    xpi[j + 1] = fmaf(avr[j], xpi[j], fmaf(avi[j], xpr[j], du[j] * Bi[j]));
                }
                const float Anr = Ar[n] * (1.f / LOG2E), Ani = Ai[n];
                float rre[16], rim[16];   // dB (0..7), dC (8..15) of this mode: real, imaginary parts
#pragma unroll
                for (int j = 7; j >= 0; j--) {
                    const float ggr = fmaf(2.f * dyp[j], Cr[j], gr[n]), ggi = fmaf(-2.f * dyp[j], Ci[j], gi[n]);
                    rre[j] = du[j] * ggr; rim[j] = du[j] * ggi;
                    rre[8 + j] = 2.f * dyp[j] * xpr[j + 1]; rim[8 + j] = -2.f * dyp[j] * xpi[j + 1];
                    const float sBu = fmaf(ggr, Br[j], ggi * Bi[j]);
                    gdu[j] = fmaf(dl[j], sBu, gdu[j]);
                    const float gxr = fmaf(ggr, xpr[j], ggi * xpi[j]), gxi = fmaf(ggi, xpr[j], -ggr * xpi[j]);
                    dAr[n] = fmaf(dl[j], fmaf(avr[j], gxr, avi[j] * gxi), dAr[n]);
                    dAi[n] = fmaf(dl[j], fmaf(avr[j], gxi, -avi[j] * gxr), dAi[n]);
                    const float Aar = fmaf(Anr, avr[j], -Ani * avi[j]), Aai = fmaf(Anr, avi[j], Ani * avr[j]);
                    gdd[j] = fmaf(u[j], sBu, fmaf(gxr, Aar, fmaf(gxi, Aai, gdd[j])));
                    yv[j] = fmaf(2.f * xpr[j + 1], Cr[j], fmaf(-2.f * xpi[j + 1], Ci[j], yv[j]));
                    gr[n] = fmaf(avr[j], ggr, avi[j] * ggi);
                    gi[n] = fmaf(avr[j], ggi, -avi[j] * ggr);
                }
                if (SEL) {
                    const int64_t o = b * a.bcsb + t0 * a.bcst + (g * a.N + n0 + n) * a.bcsc;
                    if (warp_sum) {
                        const float vr = warp_reduce16(rre, lane), vi = warp_reduce16(rim, lane);
                        const int j = ridx & 7;
                        float *dst = ridx < 8 ? a.dB : a.dC;
                        if ((lane & 1) == 0 && j < nv && n0 + n < a.N) {
                            atomicAdd(dst + 2 * (o + j * a.bcst), vr);
                            atomicAdd(dst + 2 * (o + j * a.bcst) + 1, vi);
                        }
                    } else if (active && n0 + n < a.N) {
#pragma unroll
                        for (int j = 0; j < 8; j++) if (j < nv) {
                            const int64_t q = 2 * (o + j * a.bcst);
                            atomicAdd(a.dB + q, rre[j]); atomicAdd(a.dB + q + 1, rim[j]);
                            atomicAdd(a.dC + q, rre[8 + j]); atomicAdd(a.dC + q + 1, rim[8 + j]);
                        }
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 8; j++) {
                        dBs[n][0] += rre[j]; dBs[n][1] += rim[j]; dBs[n][2] += rre[8 + j]; dBs[n][3] += rim[8 + j];
                    }
                }
            }
            if (!active) continue;
            const int64_t go = b * a.gsb + dd * a.gsd + t0 * a.gst_;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (j >= nv) continue;
                const int64_t o = go + j * a.gst_;
                float vdu = gdu[j], vdd = gdd[j], vy = yv[j];
                if (nb > 0) { vdu += a.du[o]; vdd += a.ddelta[o]; if (a.z) vy += a.dz[o]; }
                if (!last) {
                    a.du[o] = vdu; a.ddelta[o] = vdd; if (a.z) a.dz[o] = vy;
                    continue;
                }
                a.du[o] = fmaf(Dv, dyp[j], vdu);
                if (a.softplus && draw[j] <= 20.f) vdd *= sigmoidf_(draw[j]);
                a.ddelta[o] = vdd;
                dbias_acc += vdd;
                dD_acc = fmaf(dyp[j], u[j], dD_acc);
                if (a.z) {
                    const float sg = sigmoidf_(zz[j]);
                    a.dz[o] = dout[j] * fmaf(Dv, u[j], vy) * sg * (1.f + zz[j] * (1.f - sg));
                }
            }
        }
        if (active) {
#pragma unroll
            for (int n = 0; n < NB; n++) {
                if (n0 + n >= a.N) continue;
                const int64_t k = 2 * (d * a.N + n0 + n);
                atomicAdd(a.dA + k, dAr[n]); atomicAdd(a.dA + k + 1, dAi[n]);
                if (!SEL) {
                    atomicAdd(a.dB + k, dBs[n][0]); atomicAdd(a.dB + k + 1, dBs[n][1]);
                    atomicAdd(a.dC + k, dBs[n][2]); atomicAdd(a.dC + k + 1, dBs[n][3]);
                }
                if (c == 0 && a.dh0) {
                    const int64_t h = (b * a.D + d) * NS + 2 * (n0 + n);
                    a.dh0[h] = gr[n]; a.dh0[h + 1] = gi[n];
                }
            }
        }
    }
    if (active) {
        if (a.dD) atomicAdd(a.dD + d, dD_acc);
        if (a.ddbias) atomicAdd(a.ddbias + d, dbias_acc);
    }
}

template <typename T, bool SEL>
static int launch_bwd_cplx(ScanArgs &a, cudaStream_t st) {
    constexpr int NB = 4;
    const int64_t nthr = a.batch * a.D * a.N;
    if (a.nc > 1) {
        const int bd = a.D >= 128 ? 128 : (int)((a.D + 31) / 32 * 32);
        const int64_t dblocks = (a.D + bd - 1) / bd;
        scan_fwd_kernel<T, 8, true, SEL, 1><<<(unsigned)(a.batch * (a.nc - 1) * dblocks), bd, 0, st>>>(a);
        CK(cudaGetLastError());
        scan_carry_kernel<true><<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
        CK(cudaGetLastError());
        const int64_t db64 = (a.D + 63) / 64;
        scan_bwd_rsum_cplx_kernel<T, NB, SEL><<<(unsigned)(a.batch * (a.nc - 1) * db64), 64, 0, st>>>(a);
        CK(cudaGetLastError());
        scan_bwd_carry_cplx_kernel<<<(unsigned)((nthr + 255) / 256), 256, 0, st>>>(a);
        CK(cudaGetLastError());
    }
    const int64_t db64 = (a.D + 63) / 64;
    const size_t sm = (size_t)(a.T / 8) * NB * 2 * 64 * sizeof(float);
    scan_bwd_main_cplx_kernel<T, NB, SEL><<<(unsigned)(a.batch * a.nc * db64), 64, sm, st>>>(a);
    CK(cudaGetLastError());
    return 0;
}

static int64_t span_elems(const ssm_scan_strides &s, int64_t nb, int64_t nt, int64_t nc) {
    return (nb - 1) * s.batch + (nt - 1) * s.time + (nc - 1) * s.channel + 1;
}

extern "C" int selective_scan_cuda_backward(const ssm_scan_params *p, ssm_cuda_dtype dtype, const void *dy,
                                            const float *dh_out, const ssm_scan_grads *gr, void *stream) {
    g_err[0] = 0;
    if (check_params(p)) return -1;
    if (!dy || !gr || !gr->du || !gr->ddelta || !gr->dA || !gr->dB || !gr->dC) {
        set_err("backward: dy, du, ddelta, dA, dB and dC are required");
        return -1;
    }
    if (p->z && !gr->dz) { set_err("backward: z given but dz is NULL"); return -1; }
    ScanArgs a;
    fill_common(a, p, dtype);
    a.dy = dy; a.dhout = dh_out;
    if (a.vec_x && !aligned16(dy)) a.vec_x = 0;
    a.du = gr->du; a.ddelta = gr->ddelta; a.dA = gr->dA; a.dB = gr->dB; a.dC = gr->dC;
    a.dD = p->D_skip ? gr->dD_skip : nullptr; a.dz = p->z ? gr->dz : nullptr;
    a.ddbias = p->delta_bias ? gr->ddelta_bias : nullptr; a.dh0 = gr->dh0;
    a.gsb = a.xsb; a.gst_ = a.xst; a.gsd = a.xsd;   // float gradients share the input strides
    const bool fast = bwd_fast_eligible(a);
    int64_t T;
    if (fast) {
        T = g_chunk_bwd > 0 ? (g_chunk_bwd + 7) / 8 * 8 : BWD_FAST_T;
        if (T > BWD_FAST_T) T = BWD_FAST_T;   // shared memory holds T/8 states per mode
    } else {
        T = pick_chunk(p, g_chunk_bwd, (int64_t)g_num_sms * 512, 64);
        if (T > 128) T = 128;
    }
    a.T = T;
    a.nc = (a.L + a.T - 1) / a.T;
    const size_t per = (size_t)(a.batch * a.nc * a.D);
    const size_t dblocks = (size_t)((a.D + 127) / 128);
    // floats: hst, gst (per N each), dsum, rflag (per each); fast: wsA (per N), wsD, wsDb (per), wsBC
    const size_t K = p->complex_A ? 2 : 1;
    size_t nf = a.nc > 1 ? per * (2 * K * (size_t)p->N + 2) : 0;
    const size_t fast_off = nf;
    if (fast) nf += per * ((size_t)p->N + 2) + (size_t)a.batch * dblocks * 2 * (size_t)p->N * (size_t)a.L;
    void *ws = nullptr;
    if (nf && ws_reserve(nf * 4, &ws)) return -1;
    if (a.nc > 1) {
        a.hst = (float *)ws;
        a.gst = a.hst + per * K * p->N;
        a.dsum = a.gst + per * K * p->N;
        a.rflag = (int *)(a.dsum + per);
    }
    if (fast) {
        a.wsA = (float *)ws + fast_off;
        a.wsD = a.wsA + per * p->N;
        a.wsDb = a.wsD + per;
        a.wsBC = a.wsDb + per;
    }
    cudaStream_t st = (cudaStream_t)stream;
    // accumulated outputs start at zero
    CK(cudaMemsetAsync(a.dA, 0, (size_t)(p->D * p->N) * K * 4, st));
    const size_t nbc = p->G > 0 ? (size_t)span_elems(p->bc_strides, p->batch, p->L, p->G * p->N) : (size_t)(p->D * p->N);
    CK(cudaMemsetAsync(a.dB, 0, nbc * K * 4, st));
    CK(cudaMemsetAsync(a.dC, 0, nbc * K * 4, st));
    if (a.dD) CK(cudaMemsetAsync(a.dD, 0, (size_t)p->D * 4, st));
    if (a.ddbias) CK(cudaMemsetAsync(a.ddbias, 0, (size_t)p->D * 4, st));
    if (fast) {
        switch (dtype) {
        case SSM_CUDA_F32: return p->N <= 8 ? launch_bwd_fast<float, 8>(a, st) : launch_bwd_fast<float, 16>(a, st);
        case SSM_CUDA_BF16: return p->N <= 8 ? launch_bwd_fast<__nv_bfloat16, 8>(a, st) : launch_bwd_fast<__nv_bfloat16, 16>(a, st);
        case SSM_CUDA_F16: return p->N <= 8 ? launch_bwd_fast<__half, 8>(a, st) : launch_bwd_fast<__half, 16>(a, st);
        }
    }
    if (a.cplx) {
        switch (dtype) {
        case SSM_CUDA_F32: return a.sel ? launch_bwd_cplx<float, true>(a, st) : launch_bwd_cplx<float, false>(a, st);
        case SSM_CUDA_BF16: return a.sel ? launch_bwd_cplx<__nv_bfloat16, true>(a, st) : launch_bwd_cplx<__nv_bfloat16, false>(a, st);
        case SSM_CUDA_F16: return a.sel ? launch_bwd_cplx<__half, true>(a, st) : launch_bwd_cplx<__half, false>(a, st);
        }
    }
    switch (dtype) {
    case SSM_CUDA_F32: return a.sel ? launch_bwd<float, true>(a, st) : launch_bwd<float, false>(a, st);
    case SSM_CUDA_BF16: return a.sel ? launch_bwd<__nv_bfloat16, true>(a, st) : launch_bwd<__nv_bfloat16, false>(a, st);
    case SSM_CUDA_F16: return a.sel ? launch_bwd<__half, true>(a, st) : launch_bwd<__half, false>(a, st);
    }
    set_err("unknown dtype %d", (int)dtype);
    return -1;
}
