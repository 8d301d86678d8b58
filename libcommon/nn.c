/* nn.c - forward and backward of the model operations (see nn.h for the conventions). */
#include "nn.h"

/* The elementwise loops (exp, sigmoid, normal cdf) only vectorize with -O3 (if-conversion and
 * the full cost model) and without trapping math (so a ternary on floats becomes a select); the
 * build default is -O2.  Neither changes a result: no -ffast-math. */
#pragma GCC optimize("O3", "no-trapping-math")

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "fast_math.h"
#include "params.h"

/* --device cuda: every op runs its CUDA version (kernels/nn_cuda.cu) when the models compute on
 * the GPU (device.h), so that nothing of a training step touches the host. */
#ifdef SSM_HAVE_CUDA
#include "nn_cuda.h"
#define ON_GPU(call) do { if (ssm_compute_on_gpu()) { call; return; } } while (0)
#define ON_GPU_RET(call) do { if (ssm_compute_on_gpu()) return call; } while (0)
#else
#define ON_GPU(call) do { } while (0)
#define ON_GPU_RET(call) do { } while (0)
#endif

void openblas_set_num_threads(int);

/* ---- deterministic sums over rows --------------------------------------------------------------
 * Parameter gradients sum over all M rows.  Rows are cut into fixed chunks of ROW_CHUNK (not one
 * per thread), each chunk summed in row order in parallel, then the chunk sums added in chunk
 * order: the result depends on M only, never on the thread count, and memory is read row-major. */
#define ROW_CHUNK 128
static int64_t nchunks_of(int64_t M) { return (M + ROW_CHUNK - 1) / ROW_CHUNK; }
static void add_chunk_sums(float *dst, float *partial, int64_t nchunks, int64_t C) {
    for (int64_t k = 0; k < nchunks; k++)
        for (int64_t c = 0; c < C; c++) dst[c] += partial[k * C + c];
    free(partial);
}

void nn_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

/* ---- linear -------------------------------------------------------------------------------- */
void linear_forward(float *out, const float *inp, const float *W, const float *bias, int64_t M,
                    int64_t In, int64_t Out) {
    ON_GPU(linear_forward_cuda(out, inp, W, bias, M, In, Out));
    if (M == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Out, (int)In, 1.0f, inp, (int)In,
                W, (int)In, 0.0f, out, (int)Out);
    if (bias) {
#pragma omp parallel for schedule(static) if (M * Out >= (1 << 15))
        for (int64_t m = 0; m < M; m++)
            for (int64_t o = 0; o < Out; o++) out[m * Out + o] += bias[o];
    }
}

void linear_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                     const float *W, int64_t M, int64_t In, int64_t Out) {
    ON_GPU(linear_backward_cuda(dinp, dW, dbias, dout, inp, W, M, In, Out));
    if (M == 0) return;
    if (dinp)   /* dinp (M, In) += dout (M, Out) @ W (Out, In) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)In, (int)Out, 1.0f, dout,
                    (int)Out, W, (int)In, 1.0f, dinp, (int)In);
    if (dW)     /* dW (Out, In) += dout^T (Out, M) @ inp (M, In) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Out, (int)In, (int)M, 1.0f, dout,
                    (int)Out, inp, (int)In, 1.0f, dW, (int)In);
    if (dbias) {
        int64_t nk = nchunks_of(M);
        float *part = calloc((size_t)(nk * Out), sizeof(float));
#pragma omp parallel for schedule(static) if (M * Out >= (1 << 15))
        for (int64_t k = 0; k < nk; k++) {
            float *p = part + k * Out;
            for (int64_t m = k * ROW_CHUNK; m < M && m < (k + 1) * ROW_CHUNK; m++)
                for (int64_t o = 0; o < Out; o++) p[o] += dout[m * Out + o];
        }
        add_chunk_sums(dbias, part, nk, Out);
    }
}

/* ---- LayerNorm ----------------------------------------------------------------------------- */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int64_t M, int64_t C, float eps) {
    ON_GPU(layernorm_forward_cuda(out, mean, rstd, inp, w, b, M, C, eps));
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C;
        double s = 0, ss = 0;
        for (int64_t c = 0; c < C; c++) s += x[c];
        double mu = s / (double)C;
        for (int64_t c = 0; c < C; c++) ss += (x[c] - mu) * (x[c] - mu);
        float r = (float)(1.0 / sqrt(ss / (double)C + eps));
        for (int64_t c = 0; c < C; c++) out[m * C + c] = (float)((x[c] - mu) * r) * w[c] + (b ? b[c] : 0.0f);
        mean[m] = (float)mu;
        rstd[m] = r;
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int64_t M, int64_t C) {
    ON_GPU(layernorm_backward_cuda(dinp, dw, db, dout, inp, w, mean, rstd, M, C));
    /* xhat = (x - mu) r; dxhat = dout * w;
     * dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C, *dy = dout + m * C;
        float mu = mean[m], r = rstd[m];
        double s1 = 0, s2 = 0;
        for (int64_t c = 0; c < C; c++) {
            float xhat = (x[c] - mu) * r, dxhat = dy[c] * w[c];
            s1 += dxhat;
            s2 += dxhat * xhat;
        }
        float m1 = (float)(s1 / (double)C), m2 = (float)(s2 / (double)C);
        for (int64_t c = 0; c < C; c++) {
            float xhat = (x[c] - mu) * r, dxhat = dy[c] * w[c];
            dinp[m * C + c] += r * (dxhat - m1 - xhat * m2);
        }
    }
    int64_t nk = nchunks_of(M);
    float *pw = calloc((size_t)(nk * C), sizeof(float)), *pb = calloc((size_t)(nk * C), sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nk; k++)
        for (int64_t m = k * ROW_CHUNK; m < M && m < (k + 1) * ROW_CHUNK; m++)
            for (int64_t c = 0; c < C; c++) {
                float xhat = (inp[m * C + c] - mean[m]) * rstd[m];
                pw[k * C + c] += dout[m * C + c] * xhat;
                pb[k * C + c] += dout[m * C + c];
            }
    if (dw) add_chunk_sums(dw, pw, nk, C); else free(pw);
    if (db) add_chunk_sums(db, pb, nk, C); else free(pb);
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int64_t M,
                     int64_t C, float eps) {
    ON_GPU(rmsnorm_forward_cuda(out, rstd, inp, w, M, C, eps));
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + eps));
        for (int64_t c = 0; c < C; c++) out[m * C + c] = x[c] * r * w[c];
        rstd[m] = r;
    }
}

void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int64_t M, int64_t C) {
    ON_GPU(rmsnorm_backward_cuda(dinp, dw, dout, inp, w, rstd, M, C));
    /* y = x r w, r = (mean(x^2) + eps)^-1/2:  dx = r (dout w) - x r^3 mean(dout w x) */
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C, *dy = dout + m * C;
        float r = rstd[m];
        double s = 0;
        for (int64_t c = 0; c < C; c++) s += (double)dy[c] * w[c] * x[c];
        float k = (float)(s / (double)C) * r * r * r;
        for (int64_t c = 0; c < C; c++) dinp[m * C + c] += r * dy[c] * w[c] - x[c] * k;
    }
    int64_t nk = nchunks_of(M);
    float *pw = calloc((size_t)(nk * C), sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nk; k++)
        for (int64_t m = k * ROW_CHUNK; m < M && m < (k + 1) * ROW_CHUNK; m++)
            for (int64_t c = 0; c < C; c++) pw[k * C + c] += dout[m * C + c] * inp[m * C + c] * rstd[m];
    add_chunk_sums(dw, pw, nk, C);
}

/* ---- elementwise --------------------------------------------------------------------------- */
void gelu_forward(float *out, const float *inp, int64_t n) {
    ON_GPU(gelu_forward_cuda(out, inp, n));
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = x * fast_normal_cdf(x);
    }
}
void gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
    ON_GPU(gelu_backward_cuda(dinp, dout, inp, n));
    /* d/dx x Phi(x) = Phi(x) + x phi(x) */
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = fast_normal_cdf(x);
        float pdf = fast_expf(-0.5f * x * x) * 0.3989422804014327f;
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

static inline float sigmoidf(float x) { return fast_sigmoidf(x); }

void silu_forward(float *out, const float *inp, int64_t n) {
    ON_GPU(silu_forward_cuda(out, inp, n));
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(inp[i]);
}
void silu_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
    ON_GPU(silu_backward_cuda(dinp, dout, inp, n));
    /* d/dx x s(x) = s (1 + x (1 - s)) */
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(inp[i]);
        dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

void glu_forward(float *out, const float *inp, int64_t M, int64_t C) {
    ON_GPU(glu_forward_cuda(out, inp, M, C));
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++)
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            out[m * C + c] = inp[m * 2 * C + c] * sigmoidf(inp[m * 2 * C + C + c]);
}
void glu_backward(float *dinp, const float *dout, const float *inp, int64_t M, int64_t C) {
    ON_GPU(glu_backward_cuda(dinp, dout, inp, M, C));
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++)
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
            float a = inp[m * 2 * C + c], s = sigmoidf(inp[m * 2 * C + C + c]), d = dout[m * C + c];
            dinp[m * 2 * C + c] += d * s;
            dinp[m * 2 * C + C + c] += d * a * s * (1.0f - s);
        }
}

/* ---- embedding ----------------------------------------------------------------------------- */
void embedding_forward(float *out, const int32_t *tokens, const float *table, int64_t M, int64_t C) {
    ON_GPU(embedding_forward_cuda(out, tokens, table, M, C));
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) memcpy(out + m * C, table + (int64_t)tokens[m] * C, (size_t)C * sizeof(float));
}
void embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int64_t M, int64_t C) {
    ON_GPU(embedding_backward_cuda(dtable, dout, tokens, M, C));
    /* rows with the same token add up: in row order, for determinism */
    for (int64_t m = 0; m < M; m++) {
        float *d = dtable + (int64_t)tokens[m] * C;
        for (int64_t c = 0; c < C; c++) d[c] += dout[m * C + c];
    }
}

/* ---- causal depthwise conv1d --------------------------------------------------------------- */
void conv1d_causal_forward(float *out, const float *inp, const float *weight, const float *bias,
                           const float *state, float *new_state, int64_t B, int64_t L, int64_t C,
                           int64_t K) {
    ON_GPU(conv1d_causal_forward_cuda(out, inp, weight, bias, state, new_state, B, L, C, K));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *x = inp + b * L * C;
        const float *st = state ? state + b * C * K : NULL;
        for (int64_t t = 0; t < L; t++)
            for (int64_t c = 0; c < C; c++) {
                float s = bias ? bias[c] : 0.0f;
                for (int64_t k = 0; k < K; k++) {
                    int64_t tt = t - (K - 1) + k;     /* input time */
                    float v;
                    if (tt >= 0) v = x[tt * C + c];
                    else v = st ? st[c * K + (K + tt)] : 0.0f;   /* x_{-j} = state[K - j] */
                    s += weight[c * K + k] * v;
                }
                out[(b * L + t) * C + c] = s;
            }
        if (new_state) {
            /* the last K inputs of [state | x]: x_{L-K..L-1}, from the old state where L < K */
            float tmp[64];
            float *ns = new_state + b * C * K;
            for (int64_t c = 0; c < C; c++) {
                for (int64_t k = 0; k < K; k++) {
                    int64_t tt = L - K + k;
                    tmp[k] = tt >= 0 ? x[tt * C + c] : (st ? st[c * K + (K + tt)] : 0.0f);
                }
                memcpy(ns + c * K, tmp, (size_t)K * sizeof(float));
            }
        }
    }
}

void conv1d_causal_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int64_t B, int64_t L, int64_t C,
                            int64_t K) {
    ON_GPU(conv1d_causal_backward_cuda(dinp, dweight, dbias, dout, inp, weight, B, L, C, K));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t c = 0; c < C; c++) {
                /* x[t] feeds out[t + (K-1) - k] with weight k */
                float s = 0;
                for (int64_t k = 0; k < K; k++) {
                    int64_t to = t + (K - 1) - k;
                    if (to < L) s += weight[c * K + k] * dout[(b * L + to) * C + c];
                }
                dinp[(b * L + t) * C + c] += s;
            }
    int64_t M = B * L, nk = nchunks_of(M);
    float *pw = calloc((size_t)(nk * C * K), sizeof(float)), *pb = calloc((size_t)(nk * C), sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < nk; ch++)
        for (int64_t m = ch * ROW_CHUNK; m < M && m < (ch + 1) * ROW_CHUNK; m++) {
            int64_t t = m % L;
            const float *dy = dout + m * C;
            for (int64_t k = 0; k < K; k++) {
                int64_t back = (K - 1) - k;   /* input row m - back, in the same sequence */
                if (t < back) continue;
                const float *x = inp + (m - back) * C;
                float *p = pw + ch * C * K;
                for (int64_t c = 0; c < C; c++) p[c * K + k] += dy[c] * x[c];
            }
            for (int64_t c = 0; c < C; c++) pb[ch * C + c] += dy[c];
        }
    add_chunk_sums(dweight, pw, nk, C * K);
    if (dbias) add_chunk_sums(dbias, pb, nk, C); else free(pb);
}

/* ---- softmax cross-entropy ----------------------------------------------------------------- */
double crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int64_t M,
                            int64_t V, int64_t *counted, int64_t *correct) {
    ON_GPU_RET(crossentropy_forward_cuda(probs, logits, targets, M, V, counted, correct));
    double total = 0;
    int64_t n = 0, ok = 0;
#pragma omp parallel for schedule(static) reduction(+ : n, ok) if (M * V >= (1 << 15))
    for (int64_t m = 0; m < M; m++) {
        const float *z = logits + m * V;
        float mx = z[0];
        int64_t arg = 0;
        for (int64_t v = 1; v < V; v++)
            if (z[v] > mx) { mx = z[v]; arg = v; }
        double s = 0;
        for (int64_t v = 0; v < V; v++) { float e = expf(z[v] - mx); probs[m * V + v] = e; s += e; }
        for (int64_t v = 0; v < V; v++) probs[m * V + v] = (float)(probs[m * V + v] / s);
        if (targets[m] >= 0) { n++; ok += arg == targets[m]; }
    }
    /* the loss sum in row order (deterministic) */
    for (int64_t m = 0; m < M; m++)
        if (targets[m] >= 0) {
            const float *z = logits + m * V;
            float mx = z[0];
            for (int64_t v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
            double s = 0;
            for (int64_t v = 0; v < V; v++) s += exp((double)z[v] - mx);
            total += log(s) + mx - z[targets[m]];
        }
    if (counted) *counted = n;
    if (correct) *correct = ok;
    return n ? total / (double)n : 0.0;
}

void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int64_t M,
                           int64_t V, float dloss) {
    ON_GPU(crossentropy_backward_cuda(dlogits, probs, targets, M, V, dloss));
    int64_t n = 0;
    for (int64_t m = 0; m < M; m++) n += targets[m] >= 0;
    if (n == 0) return;
    float scale = dloss / (float)n;
#pragma omp parallel for schedule(static) if (M * V >= (1 << 15))
    for (int64_t m = 0; m < M; m++) {
        if (targets[m] < 0) continue;
        for (int64_t v = 0; v < V; v++)
            dlogits[m * V + v] += scale * (probs[m * V + v] - (v == targets[m] ? 1.0f : 0.0f));
    }
}

/* ---- dropout ------------------------------------------------------------------------------- */
void dropout_forward(float *out, const float *inp, int64_t n, float p, uint64_t seed) {
    ON_GPU(dropout_forward_cuda(out, inp, n, p, seed));
    float keep = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        out[i] = p > 0 ? (ssm_hash_uniform(seed, (uint64_t)i) >= p ? inp[i] * keep : 0.0f) : inp[i];
}
void dropout_backward(float *dinp, const float *dout, int64_t n, float p, uint64_t seed) {
    ON_GPU(dropout_backward_cuda(dinp, dout, n, p, seed));
    float keep = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        dinp[i] += p > 0 ? (ssm_hash_uniform(seed, (uint64_t)i) >= p ? dout[i] * keep : 0.0f) : dout[i];
}

/* ---- mean pooling over time ---------------------------------------------------------------- */
void meanpool_forward(float *out, const float *inp, int64_t B, int64_t L, int64_t C) {
    ON_GPU(meanpool_forward_cuda(out, inp, B, L, C));
#pragma omp parallel for schedule(static) if (B > 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            float s = 0;
            for (int64_t t = 0; t < L; t++) s += inp[(b * L + t) * C + c];
            out[b * C + c] = s / (float)L;
        }
}
void meanpool_backward(float *dinp, const float *dout, int64_t B, int64_t L, int64_t C) {
    ON_GPU(meanpool_backward_cuda(dinp, dout, B, L, C));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t c = 0; c < C; c++) dinp[(b * L + t) * C + c] += dout[b * C + c] / (float)L;
}

/* ---- glue ops (nn.h) ----------------------------------------------------------------------- */
void nn_zero(float *p, int64_t n) { ssm_buf_zero(p, (size_t)n * sizeof(float)); }
void nn_copy(float *dst, const float *src, int64_t n) {
    ON_GPU(nn_copy2d_cuda(dst, n, src, n, 1, n));
    memcpy(dst, src, (size_t)n * sizeof(float));
}
void nn_copy2d(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols) {
    ON_GPU(nn_copy2d_cuda(dst, dpitch, src, spitch, rows, cols));
    for (int64_t r = 0; r < rows; r++) memcpy(dst + r * dpitch, src + r * spitch, (size_t)cols * sizeof(float));
}
void nn_add2d(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols) {
    ON_GPU(nn_add2d_cuda(dst, dpitch, src, spitch, rows, cols));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[r * dpitch + c] += src[r * spitch + c];
}
void nn_add(float *dst, const float *src, int64_t n) { nn_add2d(dst, n, src, n, 1, n); }
void nn_mul_add(float *dst, const float *a, const float *b, int64_t n) {
    ON_GPU(nn_mul_add_cuda(dst, a, b, n));
    for (int64_t i = 0; i < n; i++) dst[i] += a[i] * b[i];
}
void nn_neg_exp(float *out, const float *in, int64_t n) {
    ON_GPU(nn_neg_exp_cuda(out, in, n));
    for (int64_t i = 0; i < n; i++) out[i] = -expf(in[i]);
}
void nn_transpose(float *out, const float *in, int64_t B, int64_t R, int64_t C) {
    ON_GPU(nn_transpose_cuda(out, in, B, R, C));
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) out[(b * C + c) * R + r] = in[(b * R + r) * C + c];
}
void nn_s4d_A_forward(float *A, const float *are, const float *aim, int64_t n) {
    ON_GPU(nn_s4d_A_forward_cuda(A, are, aim, n));
    for (int64_t j = 0; j < n; j++) { A[2 * j] = -expf(are[j]); A[2 * j + 1] = aim[j]; }
}
void nn_s4d_A_backward(float *gre, float *gim, const float *dA, const float *A, int64_t n) {
    ON_GPU(nn_s4d_A_backward_cuda(gre, gim, dA, A, n));
    for (int64_t j = 0; j < n; j++) { gre[j] += dA[2 * j] * A[2 * j]; gim[j] += dA[2 * j + 1]; }
}
