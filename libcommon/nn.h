/* nn.h - the neural-network operations the models are made of, each a forward and a backward,
 * float32, on the CPU (llm.c style).
 *
 * Conventions (stated once):
 *   - Row-major.  "M rows" are the flattened (batch, time) positions; every op on a row of C
 *     features works along the last dimension.
 *   - Linear weights are (out, in) as in PyTorch: y = x W^T + b.
 *   - Every backward ACCUMULATES (+=) into its input gradients and parameter gradients; the caller
 *     zeroes them.  Forward outputs are written.
 *   - Threads (OpenMP) split independent rows; sums over rows (parameter gradients) run in a fixed
 *     order, so results do not depend on the thread count.
 * The float64 finite-difference checks are in tests/unit/test_nn.c.
 */
#ifndef SSM_NN_H
#define SSM_NN_H

#include <stdint.h>

/* out (M, O) = inp (M, I) @ W^T (W is (O, I)) + bias (O) [bias may be NULL]. OpenBLAS sgemm. */
void linear_forward(float *out, const float *inp, const float *W, const float *bias, int64_t M,
                    int64_t In, int64_t Out);
/* dinp (M, I) += dout @ W; dW (O, I) += dout^T @ inp; dbias (O) += sum over rows of dout.
 * dinp, dW, dbias may be NULL (not wanted). */
void linear_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                     const float *W, int64_t M, int64_t In, int64_t Out);

/* LayerNorm over C: out = (x - mean) * rstd * w + b.  mean, rstd (M) saved for the backward. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int64_t M, int64_t C, float eps);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int64_t M, int64_t C);

/* RMSNorm over C: out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); rstd (M) saved. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int64_t M,
                     int64_t C, float eps);
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int64_t M, int64_t C);

/* Elementwise over n values.  GELU is the exact one (erf), as torch.nn.GELU(). */
void gelu_forward(float *out, const float *inp, int64_t n);
void gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n);
void silu_forward(float *out, const float *inp, int64_t n);
void silu_backward(float *dinp, const float *dout, const float *inp, int64_t n);

/* GLU along the last dim: inp (M, 2C) = [a | g], out (M, C) = a * sigmoid(g). */
void glu_forward(float *out, const float *inp, int64_t M, int64_t C);
void glu_backward(float *dinp, const float *dout, const float *inp, int64_t M, int64_t C);

/* Embedding: out (M, C) = table[tokens[m]] ; table (V, C); tokens checked by the caller. */
void embedding_forward(float *out, const int32_t *tokens, const float *table, int64_t M, int64_t C);
void embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int64_t M, int64_t C);

/* Causal depthwise conv1d, token-major: inp, out (B, L, C); weight (C, K); bias (C) or NULL.
 *   out[b,t,c] = bias[c] + sum_k weight[c,k] * x[b, t - (K-1) + k, c]
 * where x at negative times comes from state (B, C, K), the last K inputs before t = 0 (oldest
 * first; NULL = zeros).  When new_state is not NULL it receives the last K inputs after the call
 * (it may be the same buffer as state).  The backward assumes a zero initial state. */
void conv1d_causal_forward(float *out, const float *inp, const float *weight, const float *bias,
                           const float *state, float *new_state, int64_t B, int64_t L, int64_t C,
                           int64_t K);
void conv1d_causal_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int64_t B, int64_t L, int64_t C,
                            int64_t K);

/* Softmax cross-entropy: logits (M, V), targets (M) in [0, V) or -1 (ignored).  probs (M, V)
 * receives the softmax.  Returns the mean loss over the counted rows (0 if none) and sets
 * *counted, *correct (argmax == target; either may be NULL). */
double crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int64_t M,
                            int64_t V, int64_t *counted, int64_t *correct);
/* dlogits (M, V) += dloss * (probs - onehot(target)) / counted on counted rows. */
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int64_t M,
                           int64_t V, float dloss);

/* Dropout (inverted): out = inp * keep / (1 - p), keep[i] = hash(seed, i) >= p.  p = 0 copies. */
void dropout_forward(float *out, const float *inp, int64_t n, float p, uint64_t seed);
void dropout_backward(float *dinp, const float *dout, int64_t n, float p, uint64_t seed);

/* Mean over time: inp (B, L, C) -> out (B, C). */
void meanpool_forward(float *out, const float *inp, int64_t B, int64_t L, int64_t C);
void meanpool_backward(float *dinp, const float *dout, int64_t B, int64_t L, int64_t C);

/* ---- glue between the ops (the models' own loops), so that they too run where the model runs
 * (device.h: on the GPU when ssm_compute_use_gpu was called).  Pitches count floats. */
void nn_zero(float *p, int64_t n);
void nn_copy(float *dst, const float *src, int64_t n);
/* dst (rows, cols at pitch dpitch) = / += src (rows, cols at pitch spitch) */
void nn_copy2d(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols);
void nn_add2d(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols);
void nn_add(float *dst, const float *src, int64_t n);                    /* dst += src */
void nn_mul_add(float *dst, const float *a, const float *b, int64_t n);  /* dst += a * b */
void nn_neg_exp(float *out, const float *in, int64_t n);                 /* out = -exp(in) */
/* in (B, R, C) -> out (B, C, R) */
void nn_transpose(float *out, const float *in, int64_t B, int64_t R, int64_t C);
/* S4D's A (n, 2) complex = -exp(are) + i aim; backward: gre += Re(dA) Re(A), gim += Im(dA) */
void nn_s4d_A_forward(float *A, const float *are, const float *aim, int64_t n);
void nn_s4d_A_backward(float *gre, float *gim, const float *dA, const float *A, int64_t n);

/* Threads for OpenMP loops and OpenBLAS (0 = all cores). */
void nn_set_threads(int n);

#endif
