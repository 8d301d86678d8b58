/* nn_cuda.cu - the model operations of nn.h and the AdamW update of optim.h on the GPU (see
 * nn_cuda.h for the contract).  Row-major, float32; every kernel names its shapes.  Matrix products
 * are cuBLAS sgemm in full float32 (no TF32: cuBLAS's default math mode). */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cli.h"
#include "nn_cuda.h"
}

#define ROW_CHUNK 128      /* as nn.c: parameter gradients sum rows in chunks of 128, in order */
#define TPB 256

static void ck(cudaError_t e, const char *what) {
    if (e != cudaSuccess) ssm_die("--device cuda: %s: %s", what, cudaGetErrorString(e));
}
static void ck_launch(const char *what) { ck(cudaGetLastError(), what); }
static void ckb(cublasStatus_t s, const char *what) {
    if (s != CUBLAS_STATUS_SUCCESS) ssm_die("--device cuda: %s: cuBLAS status %d", what, (int)s);
}
static unsigned blocks_for(int64_t n, int t = TPB) { return (unsigned)((n + t - 1) / t); }

static cublasHandle_t blas(void) {
    static cublasHandle_t h;
    if (!h) ckb(cublasCreate(&h), "cublasCreate");
    return h;
}

/* Grow-only device scratch, one per slot (a slot is used by one op at a time). */
static void *scratch(int slot, size_t bytes) {
    static void *buf[4];
    static size_t cap[4];
    if (bytes > cap[slot]) {
        if (buf[slot]) ck(cudaFree(buf[slot]), "freeing scratch");
        ck(cudaMalloc(&buf[slot], bytes), "allocating scratch");
        cap[slot] = bytes;
    }
    return buf[slot];
}

/* ---- deterministic column sums: dst[c * stride] += sum over m of src[m, c] ---------------------
 * src (M, C).  Pass 1: partial (nk, C), thread (chunk k, column c) sums its 128 rows in order.
 * Pass 2: thread c adds the nk partial sums to dst in chunk order (nn.c's add_chunk_sums). */
__global__ void colsum_partial_kernel(float *partial, const float *src, int64_t M, int64_t C) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, k = blockIdx.y;
    if (c >= C) return;
    float s = 0;
    int64_t end = (k + 1) * ROW_CHUNK < M ? (k + 1) * ROW_CHUNK : M;
    for (int64_t m = k * ROW_CHUNK; m < end; m++) s += src[m * C + c];
    partial[k * C + c] = s;
}
__global__ void colsum_finish_kernel(float *dst, int64_t stride, const float *partial, int64_t nk, int64_t C) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C) return;
    float d = dst[c * stride];
    for (int64_t k = 0; k < nk; k++) d += partial[k * C + c];
    dst[c * stride] = d;
}
static void colsum_accum(float *dst, int64_t stride, const float *src, int64_t M, int64_t C) {
    if (M == 0 || C == 0) return;
    int64_t nk = (M + ROW_CHUNK - 1) / ROW_CHUNK;
    float *partial = (float *)scratch(0, (size_t)(nk * C) * sizeof(float));
    colsum_partial_kernel<<<dim3(blocks_for(C), (unsigned)nk), TPB>>>(partial, src, M, C);
    colsum_finish_kernel<<<blocks_for(C), TPB>>>(dst, stride, partial, nk, C);
    ck_launch("column sums");
}

/* ---- linear ------------------------------------------------------------------------------------
 * Row-major X (M, I) is column-major X^T (I x M, ld I): every product below is written for the
 * column-major views. */
__global__ void add_bias_kernel(float *out, const float *bias, int64_t M, int64_t Out) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;   /* out (M, Out) */
    if (i < M * Out) out[i] += bias[i % Out];
}

extern "C" void linear_forward_cuda(float *out, const float *inp, const float *W, const float *bias, int64_t M,
                                    int64_t In, int64_t Out) {
    if (M == 0) return;
    const float one = 1, zero = 0;
    /* out^T (Out x M) = W (Out x In; view W^T (In x Out) transposed) * inp^T (In x M) */
    ckb(cublasSgemm(blas(), CUBLAS_OP_T, CUBLAS_OP_N, (int)Out, (int)M, (int)In, &one, W, (int)In, inp, (int)In,
                    &zero, out, (int)Out), "linear forward");
    if (bias) { add_bias_kernel<<<blocks_for(M * Out), TPB>>>(out, bias, M, Out); ck_launch("linear bias"); }
}

extern "C" void linear_backward_cuda(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                                     const float *W, int64_t M, int64_t In, int64_t Out) {
    if (M == 0) return;
    const float one = 1;
    if (dinp)   /* dinp^T (In x M) += W^T (In x Out) * dout^T (Out x M) */
        ckb(cublasSgemm(blas(), CUBLAS_OP_N, CUBLAS_OP_N, (int)In, (int)M, (int)Out, &one, W, (int)In, dout, (int)Out,
                        &one, dinp, (int)In), "linear backward (input)");
    if (dW)     /* dW^T (In x Out) += inp^T (In x M) * dout (M x Out) */
        ckb(cublasSgemm(blas(), CUBLAS_OP_N, CUBLAS_OP_T, (int)In, (int)Out, (int)M, &one, inp, (int)In, dout, (int)Out,
                        &one, dW, (int)In), "linear backward (weight)");
    if (dbias) colsum_accum(dbias, 1, dout, M, Out);
}

/* ---- warp helpers ------------------------------------------------------------------------------ */
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
#define WARPS_PER_BLOCK 8
/* one warp per row: row index and lane */
#define ROW_OF_WARP() (blockIdx.x * (int64_t)WARPS_PER_BLOCK + threadIdx.x / 32)
#define LANE() (threadIdx.x % 32)
static unsigned row_blocks(int64_t M) { return (unsigned)((M + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK); }

/* ---- LayerNorm: inp, out (M, C); mean, rstd (M); w, b (C) ---------------------------------------- */
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                         const float *b, int64_t M, int64_t C, float eps) {
    int64_t m = ROW_OF_WARP();
    if (m >= M) return;
    const float *x = inp + m * C;
    double s = 0, ss = 0;
    for (int64_t c = LANE(); c < C; c += 32) s += x[c];
    double mu = warp_sum(s) / (double)C;
    for (int64_t c = LANE(); c < C; c += 32) ss += (x[c] - mu) * (x[c] - mu);
    ss = warp_sum(ss);
    float r = (float)(1.0 / sqrt(ss / (double)C + eps));
    for (int64_t c = LANE(); c < C; c += 32) out[m * C + c] = (float)((x[c] - mu) * r) * w[c] + (b ? b[c] : 0.0f);
    if (LANE() == 0) { mean[m] = (float)mu; rstd[m] = r; }
}
/* dinp (M, C) += ...; prod (M, C) receives dout * xhat for dw's column sums */
__global__ void layernorm_backward_kernel(float *dinp, float *prod, const float *dout, const float *inp,
                                          const float *w, const float *mean, const float *rstd, int64_t M, int64_t C) {
    int64_t m = ROW_OF_WARP();
    if (m >= M) return;
    const float *x = inp + m * C, *dy = dout + m * C;
    float mu = mean[m], r = rstd[m];
    double s1 = 0, s2 = 0;
    for (int64_t c = LANE(); c < C; c += 32) {
        float xhat = (x[c] - mu) * r, dxhat = dy[c] * w[c];
        s1 += dxhat;
        s2 += dxhat * xhat;
    }
    float m1 = (float)(warp_sum(s1) / (double)C), m2 = (float)(warp_sum(s2) / (double)C);
    for (int64_t c = LANE(); c < C; c += 32) {
        float xhat = (x[c] - mu) * r, dxhat = dy[c] * w[c];
        dinp[m * C + c] += r * (dxhat - m1 - xhat * m2);
        prod[m * C + c] = dy[c] * xhat;
    }
}

extern "C" void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                       const float *b, int64_t M, int64_t C, float eps) {
    if (M == 0) return;
    layernorm_forward_kernel<<<row_blocks(M), 32 * WARPS_PER_BLOCK>>>(out, mean, rstd, inp, w, b, M, C, eps);
    ck_launch("layernorm forward");
}
extern "C" void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                        const float *w, const float *mean, const float *rstd, int64_t M, int64_t C) {
    if (M == 0) return;
    float *prod = (float *)scratch(1, (size_t)(M * C) * sizeof(float));
    layernorm_backward_kernel<<<row_blocks(M), 32 * WARPS_PER_BLOCK>>>(dinp, prod, dout, inp, w, mean, rstd, M, C);
    ck_launch("layernorm backward");
    if (dw) colsum_accum(dw, 1, prod, M, C);
    if (db) colsum_accum(db, 1, dout, M, C);
}

/* ---- RMSNorm: inp, out (M, C); rstd (M); w (C) --------------------------------------------------- */
__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *w, int64_t M,
                                       int64_t C, float eps) {
    int64_t m = ROW_OF_WARP();
    if (m >= M) return;
    const float *x = inp + m * C;
    double ss = 0;
    for (int64_t c = LANE(); c < C; c += 32) ss += (double)x[c] * x[c];
    ss = warp_sum(ss);
    float r = (float)(1.0 / sqrt(ss / (double)C + eps));
    for (int64_t c = LANE(); c < C; c += 32) out[m * C + c] = x[c] * r * w[c];
    if (LANE() == 0) rstd[m] = r;
}
/* dinp (M, C) += ...; prod (M, C) = dout * x * rstd for dw */
__global__ void rmsnorm_backward_kernel(float *dinp, float *prod, const float *dout, const float *inp,
                                        const float *w, const float *rstd, int64_t M, int64_t C) {
    int64_t m = ROW_OF_WARP();
    if (m >= M) return;
    const float *x = inp + m * C, *dy = dout + m * C;
    float r = rstd[m];
    double s = 0;
    for (int64_t c = LANE(); c < C; c += 32) s += (double)dy[c] * w[c] * x[c];
    float k = (float)(warp_sum(s) / (double)C) * r * r * r;
    for (int64_t c = LANE(); c < C; c += 32) {
        dinp[m * C + c] += r * dy[c] * w[c] - x[c] * k;
        prod[m * C + c] = dy[c] * x[c] * r;
    }
}
extern "C" void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *w, int64_t M,
                                     int64_t C, float eps) {
    if (M == 0) return;
    rmsnorm_forward_kernel<<<row_blocks(M), 32 * WARPS_PER_BLOCK>>>(out, rstd, inp, w, M, C, eps);
    ck_launch("rmsnorm forward");
}
extern "C" void rmsnorm_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                                      const float *rstd, int64_t M, int64_t C) {
    if (M == 0) return;
    float *prod = (float *)scratch(1, (size_t)(M * C) * sizeof(float));
    rmsnorm_backward_kernel<<<row_blocks(M), 32 * WARPS_PER_BLOCK>>>(dinp, prod, dout, inp, w, rstd, M, C);
    ck_launch("rmsnorm backward");
    colsum_accum(dw, 1, prod, M, C);
}

/* ---- elementwise (n values) ---------------------------------------------------------------------- */
__device__ __forceinline__ float normal_cdf(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void gelu_forward_kernel(float *out, const float *inp, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) { float x = inp[i]; out[i] = x * normal_cdf(x); }
}
__global__ void gelu_backward_kernel(float *dinp, const float *dout, const float *inp, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) {
        float x = inp[i];
        dinp[i] += dout[i] * (normal_cdf(x) + x * expf(-0.5f * x * x) * 0.3989422804014327f);
    }
}
__global__ void silu_forward_kernel(float *out, const float *inp, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = inp[i] * sigmoid(inp[i]);
}
__global__ void silu_backward_kernel(float *dinp, const float *dout, const float *inp, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) { float s = sigmoid(inp[i]); dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s)); }
}
/* inp (M, 2C) = [a | g], out (M, C) */
__global__ void glu_forward_kernel(float *out, const float *inp, int64_t M, int64_t C) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= M * C) return;
    int64_t m = i / C, c = i % C;
    out[i] = inp[m * 2 * C + c] * sigmoid(inp[m * 2 * C + C + c]);
}
__global__ void glu_backward_kernel(float *dinp, const float *dout, const float *inp, int64_t M, int64_t C) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= M * C) return;
    int64_t m = i / C, c = i % C;
    float a = inp[m * 2 * C + c], s = sigmoid(inp[m * 2 * C + C + c]), d = dout[i];
    dinp[m * 2 * C + c] += d * s;
    dinp[m * 2 * C + C + c] += d * a * s * (1.0f - s);
}
#define LAUNCH_N(kernel, n, ...) do { if ((n) > 0) { kernel<<<blocks_for(n), TPB>>>(__VA_ARGS__); ck_launch(#kernel); } } while (0)
extern "C" void gelu_forward_cuda(float *out, const float *inp, int64_t n) { LAUNCH_N(gelu_forward_kernel, n, out, inp, n); }
extern "C" void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t n) { LAUNCH_N(gelu_backward_kernel, n, dinp, dout, inp, n); }
extern "C" void silu_forward_cuda(float *out, const float *inp, int64_t n) { LAUNCH_N(silu_forward_kernel, n, out, inp, n); }
extern "C" void silu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t n) { LAUNCH_N(silu_backward_kernel, n, dinp, dout, inp, n); }
extern "C" void glu_forward_cuda(float *out, const float *inp, int64_t M, int64_t C) { LAUNCH_N(glu_forward_kernel, M * C, out, inp, M, C); }
extern "C" void glu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t M, int64_t C) { LAUNCH_N(glu_backward_kernel, M * C, dinp, dout, inp, M, C); }

/* ---- embedding: tokens (M), table (V, C), out (M, C) ---------------------------------------------- */
__global__ void embedding_forward_kernel(float *out, const int32_t *tokens, const float *table, int64_t M, int64_t C) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < M * C) out[i] = table[(int64_t)tokens[i / C] * C + i % C];
}
/* Rows grouped by token (order: rows of one token in row order): group g holds rows
 * perm[start[g] .. start[g+1]) of token tok[g]; thread (g, c) adds them to dtable[tok[g], c] in
 * row order, as nn.c does (so no atomics and the same sums). */
__global__ void embedding_backward_kernel(float *dtable, const float *dout, const int32_t *perm, const int32_t *start,
                                          const int32_t *tok, int64_t ngroups, int64_t C) {
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int64_t g = blockIdx.y; g < ngroups; g += gridDim.y) {
        float *d = dtable + (int64_t)tok[g] * C + c;
        float s = *d;
        for (int32_t k = start[g]; k < start[g + 1]; k++) s += dout[(int64_t)perm[k] * C + c];
        *d = s;
    }
}
extern "C" void embedding_forward_cuda(float *out, const int32_t *tokens, const float *table, int64_t M, int64_t C) {
    LAUNCH_N(embedding_forward_kernel, M * C, out, tokens, table, M, C);
}
extern "C" void embedding_backward_cuda(float *dtable, const float *dout, const int32_t *tokens, int64_t M, int64_t C) {
    if (M == 0) return;
    /* the grouping is made on the host from a copy of the tokens (M ints) */
    int32_t *tk = (int32_t *)ssm_xmalloc((size_t)M * sizeof(int32_t));
    ck(cudaMemcpy(tk, tokens, (size_t)M * sizeof(int32_t), cudaMemcpyDefault), "embedding backward: tokens");
    int32_t vmax = 0;
    for (int64_t m = 0; m < M; m++) if (tk[m] > vmax) vmax = tk[m];
    int32_t *count = (int32_t *)ssm_xcalloc((size_t)vmax + 2, sizeof(int32_t));
    for (int64_t m = 0; m < M; m++) count[tk[m]]++;
    /* host buffer: perm (M), start (ngroups + 1), tok (ngroups) */
    int32_t *host = (int32_t *)ssm_xmalloc((size_t)(3 * M + 2) * sizeof(int32_t));
    int32_t *perm = host, *start = host + M, *gtok = NULL;
    int64_t ng = 0;
    int32_t *pos = (int32_t *)ssm_xmalloc(((size_t)vmax + 1) * sizeof(int32_t));
    int32_t at = 0;
    for (int32_t v = 0; v <= vmax; v++) if (count[v]) { start[ng++] = at; pos[v] = at; at += count[v]; }
    start[ng] = at;
    gtok = start + ng + 1;
    ng = 0;
    for (int32_t v = 0; v <= vmax; v++) if (count[v]) gtok[ng++] = v;
    for (int64_t m = 0; m < M; m++) perm[pos[tk[m]]++] = (int32_t)m;
    size_t bytes = (size_t)(M + 2 * ng + 1) * sizeof(int32_t);
    int32_t *dev = (int32_t *)scratch(2, bytes);
    ck(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "embedding backward: groups");
    embedding_backward_kernel<<<dim3(blocks_for(C, 64), (unsigned)(ng < 65535 ? ng : 65535)), 64>>>(dtable, dout, dev, dev + M, dev + M + ng + 1, ng, C);
    ck_launch("embedding backward");
    free(tk); free(count); free(host); free(pos);
}

/* ---- causal depthwise conv1d: inp, out (B, L, C); weight (C, K); bias (C); state (B, C, K) -------- */
__global__ void conv1d_forward_kernel(float *out, const float *inp, const float *weight, const float *bias,
                                      const float *state, int64_t B, int64_t L, int64_t C, int64_t K) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= B * L * C) return;
    int64_t c = i % C, t = (i / C) % L, b = i / (C * L);
    const float *x = inp + b * L * C;
    const float *st = state ? state + b * C * K : NULL;
    float s = bias ? bias[c] : 0.0f;
    for (int64_t k = 0; k < K; k++) {
        int64_t tt = t - (K - 1) + k;
        float v = tt >= 0 ? x[tt * C + c] : (st ? st[c * K + (K + tt)] : 0.0f);
        s += weight[c * K + k] * v;
    }
    out[i] = s;
}
/* new_state (B, C, K) = the last K inputs of [state | x]; thread (b, c); may alias state */
__global__ void conv1d_state_kernel(float *new_state, const float *inp, const float *state, int64_t B, int64_t L,
                                    int64_t C, int64_t K) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= B * C) return;
    int64_t b = i / C, c = i % C;
    const float *x = inp + b * L * C;
    const float *st = state ? state + b * C * K : NULL;
    float tmp[64];
    for (int64_t k = 0; k < K; k++) {
        int64_t tt = L - K + k;
        tmp[k] = tt >= 0 ? x[tt * C + c] : (st ? st[c * K + (K + tt)] : 0.0f);
    }
    for (int64_t k = 0; k < K; k++) new_state[(b * C + c) * K + k] = tmp[k];
}
__global__ void conv1d_backward_input_kernel(float *dinp, const float *dout, const float *weight, int64_t B,
                                             int64_t L, int64_t C, int64_t K) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= B * L * C) return;
    int64_t c = i % C, t = (i / C) % L, b = i / (C * L);
    float s = 0;
    for (int64_t k = 0; k < K; k++) {
        int64_t to = t + (K - 1) - k;
        if (to < L) s += weight[c * K + k] * dout[(b * L + to) * C + c];
    }
    dinp[i] += s;
}
/* prod (M, C) = dy[m, c] * x[m - back, c] where row m - back is in the same sequence, else 0 */
__global__ void conv1d_weight_prod_kernel(float *prod, const float *dout, const float *inp, int64_t M, int64_t L,
                                          int64_t C, int64_t back) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= M * C) return;
    int64_t m = i / C, t = m % L;
    prod[i] = t >= back ? dout[i] * inp[i - back * C] : 0.0f;
}
extern "C" void conv1d_causal_forward_cuda(float *out, const float *inp, const float *weight, const float *bias,
                                           const float *state, float *new_state, int64_t B, int64_t L, int64_t C,
                                           int64_t K) {
    if (K > 64) ssm_die("--device cuda: conv1d: d_conv %lld > 64", (long long)K);
    LAUNCH_N(conv1d_forward_kernel, B * L * C, out, inp, weight, bias, state, B, L, C, K);
    if (new_state) LAUNCH_N(conv1d_state_kernel, B * C, new_state, inp, state, B, L, C, K);
}
extern "C" void conv1d_causal_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout,
                                            const float *inp, const float *weight, int64_t B, int64_t L, int64_t C,
                                            int64_t K) {
    int64_t M = B * L;
    LAUNCH_N(conv1d_backward_input_kernel, M * C, dinp, dout, weight, B, L, C, K);
    float *prod = (float *)scratch(1, (size_t)(M * C) * sizeof(float));
    for (int64_t k = 0; k < K; k++) {
        LAUNCH_N(conv1d_weight_prod_kernel, M * C, prod, dout, inp, M, L, C, (K - 1) - k);
        colsum_accum(dweight + k, K, prod, M, C);
    }
    if (dbias) colsum_accum(dbias, 1, dout, M, C);
}

/* ---- softmax cross-entropy: logits, probs (M, V); targets (M) ------------------------------------
 * One warp per row.  rowloss (M) double and rowok (M) int (-1 ignored, 0 wrong, 1 right) come back
 * to the host, which sums the loss in row order as nn.c does. */
__global__ void crossentropy_forward_kernel(float *probs, double *rowloss, int *rowok, const float *logits,
                                            const int32_t *targets, int64_t M, int64_t V) {
    int64_t m = ROW_OF_WARP();
    if (m >= M) return;
    const float *z = logits + m * V;
    float mx = -INFINITY;
    int64_t arg = V;
    for (int64_t v = LANE(); v < V; v += 32)
        if (arg == V || z[v] > mx) { mx = z[v]; arg = v; }
    /* the first index of the maximum, as nn.c's scan */
    for (int o = 16; o > 0; o >>= 1) {
        float om = __shfl_xor_sync(0xffffffffu, mx, o);
        int64_t oa = __shfl_xor_sync(0xffffffffu, arg, o);
        if (om > mx || (om == mx && oa < arg)) { mx = om; arg = oa; }
    }
    double s = 0, sd = 0;
    for (int64_t v = LANE(); v < V; v += 32) {
        float e = expf(z[v] - mx);
        probs[m * V + v] = e;
        s += e;
        sd += exp((double)z[v] - mx);
    }
    s = warp_sum(s);
    sd = warp_sum(sd);
    for (int64_t v = LANE(); v < V; v += 32) probs[m * V + v] = (float)(probs[m * V + v] / s);
    if (LANE() == 0) {
        int32_t t = targets[m];
        rowok[m] = t >= 0 ? (arg == t) : -1;
        rowloss[m] = t >= 0 ? log(sd) + mx - z[t] : 0.0;
    }
}
extern "C" double crossentropy_forward_cuda(float *probs, const float *logits, const int32_t *targets, int64_t M,
                                            int64_t V, int64_t *counted, int64_t *correct) {
    if (M == 0) { if (counted) *counted = 0; if (correct) *correct = 0; return 0; }
    double *rowloss = (double *)scratch(3, (size_t)M * (sizeof(double) + sizeof(int)));
    int *rowok = (int *)(rowloss + M);
    crossentropy_forward_kernel<<<row_blocks(M), 32 * WARPS_PER_BLOCK>>>(probs, rowloss, rowok, logits, targets, M, V);
    ck_launch("cross-entropy forward");
    double *h = (double *)ssm_xmalloc((size_t)M * (sizeof(double) + sizeof(int)));
    ck(cudaMemcpy(h, rowloss, (size_t)M * (sizeof(double) + sizeof(int)), cudaMemcpyDeviceToHost), "cross-entropy: the loss");
    int *ok = (int *)(h + M);
    double total = 0;
    int64_t n = 0, nok = 0;
    for (int64_t m = 0; m < M; m++)
        if (ok[m] >= 0) { total += h[m]; n++; nok += ok[m]; }
    free(h);
    if (counted) *counted = n;
    if (correct) *correct = nok;
    return n ? total / (double)n : 0.0;
}
/* count (1 int) = rows with a target >= 0; one block */
__global__ void count_targets_kernel(int *count, const int32_t *targets, int64_t M) {
    __shared__ int part[TPB];
    int s = 0;
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) s += targets[m] >= 0;
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = TPB / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *count = part[0];
}
__global__ void crossentropy_backward_kernel(float *dlogits, const float *probs, const int32_t *targets,
                                             const int *count, int64_t M, int64_t V, float dloss) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= M * V || *count == 0) return;
    int64_t m = i / V, v = i % V;
    if (targets[m] < 0) return;
    float scale = dloss / (float)*count;
    dlogits[i] += scale * (probs[i] - (v == targets[m] ? 1.0f : 0.0f));
}
extern "C" void crossentropy_backward_cuda(float *dlogits, const float *probs, const int32_t *targets, int64_t M,
                                           int64_t V, float dloss) {
    if (M == 0) return;
    int *count = (int *)scratch(2, sizeof(int));
    count_targets_kernel<<<1, TPB>>>(count, targets, M);
    LAUNCH_N(crossentropy_backward_kernel, M * V, dlogits, probs, targets, count, M, V, dloss);
}

/* ---- dropout: the mask of params.c's ssm_hash_uniform(seed, i) >= p, bit for bit ---------------- */
__device__ __forceinline__ uint64_t splitmix_dev(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
__device__ __forceinline__ double hash_uniform_dev(uint64_t seed, uint64_t counter) {
    uint64_t s = seed ^ (counter * 0xd1b54a32d192ed03ull);
    splitmix_dev(&s);
    return (double)(splitmix_dev(&s) >> 11) * 0x1p-53;
}
__global__ void dropout_kernel(float *out, const float *inp, int64_t n, float p, uint64_t seed, int accumulate) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float keep = 1.0f / (1.0f - p);
    float v = p > 0 ? (hash_uniform_dev(seed, (uint64_t)i) >= p ? inp[i] * keep : 0.0f) : inp[i];
    if (accumulate) out[i] += v; else out[i] = v;
}
extern "C" void dropout_forward_cuda(float *out, const float *inp, int64_t n, float p, uint64_t seed) {
    LAUNCH_N(dropout_kernel, n, out, inp, n, p, seed, 0);
}
extern "C" void dropout_backward_cuda(float *dinp, const float *dout, int64_t n, float p, uint64_t seed) {
    LAUNCH_N(dropout_kernel, n, dinp, dout, n, p, seed, 1);
}

/* ---- mean over time: inp (B, L, C) -> out (B, C) ------------------------------------------------- */
__global__ void meanpool_forward_kernel(float *out, const float *inp, int64_t B, int64_t L, int64_t C) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= B * C) return;
    int64_t b = i / C, c = i % C;
    float s = 0;
    for (int64_t t = 0; t < L; t++) s += inp[(b * L + t) * C + c];
    out[i] = s / (float)L;
}
__global__ void meanpool_backward_kernel(float *dinp, const float *dout, int64_t B, int64_t L, int64_t C) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= B * L * C) return;
    int64_t c = i % C, b = i / (L * C);
    dinp[i] += dout[b * C + c] / (float)L;
}
extern "C" void meanpool_forward_cuda(float *out, const float *inp, int64_t B, int64_t L, int64_t C) {
    LAUNCH_N(meanpool_forward_kernel, B * C, out, inp, B, L, C);
}
extern "C" void meanpool_backward_cuda(float *dinp, const float *dout, int64_t B, int64_t L, int64_t C) {
    LAUNCH_N(meanpool_backward_kernel, B * L * C, dinp, dout, B, L, C);
}

/* ---- glue ops: dst, src (rows, cols) with row pitches in floats --------------------------------- */
__global__ void copy2d_kernel(float *dst, int64_t dp, const float *src, int64_t sp, int64_t rows, int64_t cols, int add) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    int64_t r = i / cols, c = i % cols;
    if (add) dst[r * dp + c] += src[r * sp + c]; else dst[r * dp + c] = src[r * sp + c];
}
extern "C" void nn_copy2d_cuda(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols) {
    LAUNCH_N(copy2d_kernel, rows * cols, dst, dpitch, src, spitch, rows, cols, 0);
}
extern "C" void nn_add2d_cuda(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols) {
    LAUNCH_N(copy2d_kernel, rows * cols, dst, dpitch, src, spitch, rows, cols, 1);
}
__global__ void mul_add_kernel(float *dst, const float *a, const float *b, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] += a[i] * b[i];
}
extern "C" void nn_mul_add_cuda(float *dst, const float *a, const float *b, int64_t n) { LAUNCH_N(mul_add_kernel, n, dst, a, b, n); }
__global__ void neg_exp_kernel(float *out, const float *in, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = -expf(in[i]);
}
extern "C" void nn_neg_exp_cuda(float *out, const float *in, int64_t n) { LAUNCH_N(neg_exp_kernel, n, out, in, n); }
/* in (B, R, C) -> out (B, C, R), through 32 x 32 shared tiles */
__global__ void transpose_kernel(float *out, const float *in, int64_t R, int64_t C) {
    __shared__ float tile[32][33];
    int64_t b = blockIdx.z, r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
    const float *ib = in + b * R * C;
    float *ob = out + b * R * C;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int64_t r = r0 + k, c = c0 + threadIdx.x;
        if (r < R && c < C) tile[k][threadIdx.x] = ib[r * C + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int64_t c = c0 + k, r = r0 + threadIdx.x;
        if (r < R && c < C) ob[c * R + r] = tile[threadIdx.x][k];
    }
}
extern "C" void nn_transpose_cuda(float *out, const float *in, int64_t B, int64_t R, int64_t C) {
    if (B * R * C == 0) return;
    transpose_kernel<<<dim3((unsigned)((C + 31) / 32), (unsigned)((R + 31) / 32), (unsigned)B), dim3(32, 8)>>>(out, in, R, C);
    ck_launch("transpose");
}
/* A (n, 2) complex = -exp(are) + i aim; are, aim (n) */
__global__ void s4d_A_forward_kernel(float *A, const float *are, const float *aim, int64_t n) {
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j < n) { A[2 * j] = -expf(are[j]); A[2 * j + 1] = aim[j]; }
}
__global__ void s4d_A_backward_kernel(float *gre, float *gim, const float *dA, const float *A, int64_t n) {
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j < n) { gre[j] += dA[2 * j] * A[2 * j]; gim[j] += dA[2 * j + 1]; }
}
extern "C" void nn_s4d_A_forward_cuda(float *A, const float *are, const float *aim, int64_t n) { LAUNCH_N(s4d_A_forward_kernel, n, A, are, aim, n); }
extern "C" void nn_s4d_A_backward_cuda(float *gre, float *gim, const float *dA, const float *A, int64_t n) {
    LAUNCH_N(s4d_A_backward_kernel, n, gre, gim, dA, A, n);
}

/* ---- optimizer ------------------------------------------------------------------------------------
 * Sum of squares: block k of SUMSQ_BLOCKS sums the elements i = k*TPB + j + s*(SUMSQ_BLOCKS*TPB) in
 * double, a tree in shared memory, then one block adds the partial sums in block order: a fixed
 * order, so the same result on every run. */
#define SUMSQ_BLOCKS 256
__global__ void sumsq_partial_kernel(double *partial, const float *g, int64_t n) {
    __shared__ double s[TPB];
    double acc = 0;
    for (int64_t i = blockIdx.x * (int64_t)TPB + threadIdx.x; i < n; i += (int64_t)SUMSQ_BLOCKS * TPB)
        acc += (double)g[i] * g[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = TPB / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}
extern "C" double grad_sumsq_cuda(const float *g, int64_t n) {
    double *partial = (double *)scratch(3, SUMSQ_BLOCKS * sizeof(double));
    sumsq_partial_kernel<<<SUMSQ_BLOCKS, TPB>>>(partial, g, n);
    ck_launch("gradient norm");
    double h[SUMSQ_BLOCKS], s = 0;
    ck(cudaMemcpy(h, partial, sizeof h, cudaMemcpyDeviceToHost), "gradient norm");
    for (int k = 0; k < SUMSQ_BLOCKS; k++) s += h[k];
    return s;
}
/* w, g, m, v (n) */
__global__ void adamw_kernel(float *w, const float *g, float *m, float *v, int64_t n, float gscale, float lr, float wd,
                             float beta1, float beta2, float eps, float bc1, float bc2) {
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j >= n) return;
    float gj = g[j] * gscale;
    float mj = beta1 * m[j] + (1 - beta1) * gj;
    float vj = beta2 * v[j] + (1 - beta2) * gj * gj;
    m[j] = mj; v[j] = vj;
    float mhat = mj / bc1, vhat = vj / bc2;
    w[j] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * w[j]);
}
extern "C" void adamw_update_cuda(float *w, const float *g, float *m, float *v, int64_t n, float gscale, float lr,
                                  float wd, float beta1, float beta2, float eps, float bc1, float bc2) {
    LAUNCH_N(adamw_kernel, n, w, g, m, v, n, gscale, lr, wd, beta1, beta2, eps, bc1, bc2);
}
