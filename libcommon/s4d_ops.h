/* s4d_ops.h - the S4D layer's elementwise work fused into few passes (the fast path of
 * model_s4d.c).  Each function equals a composition of nn.h operations and a transpose between
 * the token-major layout (B, L, H) of the linear layers and the channel-major layout (B, H, L) of
 * the FFT convolution; tests/unit/test_s4d_ops.c compares each with that composition.
 *
 * Work is cut into tiles of S4D_TILE time steps of one sequence (B * ceil(L / S4D_TILE) tiles, so
 * even batch 1 keeps every thread busy); a tile of H channels stays in L1 while it is transposed.
 * Sums over rows (parameter gradients) add per-tile partial sums in tile order: the result
 * depends on (B, L, H) only, never on the thread count.  Conventions as nn.h (forward outputs are
 * written; backward gradients as stated per function).
 */
#ifndef SSM_S4D_OPS_H
#define SSM_S4D_OPS_H

#include <stdint.h>

#define S4D_TILE 16

/* xt (B, H, L) = transpose(LayerNorm(h (B, L, H))); mean, rstd (B * L) saved.  b may be NULL. */
void s4d_layernorm_transpose_forward(float *xt, float *mean, float *rstd, const float *h, const float *w,
                                     const float *b, int64_t B, int64_t L, int64_t H, float eps);
/* dh (B, L, H) += LayerNorm backward of dxn = transpose(dxt (B, H, L)); dw, db (H) += (either may
 * be NULL). */
void s4d_transpose_layernorm_backward(float *dh, float *dw, float *db, const float *dxt, const float *h,
                                      const float *w, const float *mean, const float *rstd, int64_t B,
                                      int64_t L, int64_t H);

/* ys (B, L, H) = transpose(yt (B, H, L)); gd = dropout(GELU(ys)) with nn.h's dropout masks
 * (element i of the (B, L, H) array kept when ssm_hash_uniform(seed, i) >= p, scaled 1/(1-p));
 * mask (B * L * H bytes, 1 = kept) is written when p > 0 (then it must not be NULL). */
void s4d_transpose_gelu_dropout_forward(float *ys, float *gd, unsigned char *mask, const float *yt, int64_t B,
                                        int64_t L, int64_t H, float p, uint64_t seed);
/* dyt (B, H, L) = transpose(GELU'(ys) * dropout'(dgd)) (written, not added); mask as saved by
 * the forward (ignored when p == 0). */
void s4d_gelu_dropout_transpose_backward(float *dyt, const float *dgd, const float *ys, const unsigned char *mask,
                                         int64_t B, int64_t L, int64_t H, float p);

/* o (M, 2H) += bias (2H) (o keeps the biased value for the backward); hnext (M, H) =
 * h (M, H) + GLU(o) (written; hnext may not alias h). */
void s4d_bias_glu_residual_forward(float *hnext, float *o, const float *bias, const float *h, int64_t M, int64_t H);
/* do (M, 2H) = GLU backward of dh (written, not added); dbias (2H) += sum over rows of do. */
void s4d_glu_backward(float *dout, float *dbias, const float *dh, const float *o, int64_t M, int64_t H);

/* dinp (M, In) = dout (M, Out) @ W (Out, In): written, not added (sgemm with beta 0). */
void s4d_linear_input_grad(float *dinp, const float *dout, const float *W, int64_t M, int64_t In, int64_t Out);

/* The convolution part of a layer, fused per sequence (threads over the batch):
 *   xt (B, H, L) = transpose(LayerNorm(h)), yt = K * xt + D xt (K (H, L), D (H) or NULL),
 *   ys (B, L, H) = transpose(yt), gd = dropout(GELU(ys))
 * equal to s4d_layernorm_transpose_forward + fft_conv_forward_f32 (ssm_kernel.h) +
 * s4d_transpose_gelu_dropout_forward.  xt may be NULL: then it is not stored, and the backward
 * (given xt NULL too) recomputes it from h and the LayerNorm weights, in the core's cache, instead
 * of reading it back from memory.  The backward takes dgd (B, L, H) and the forward's saved ys,
 * mask (and xt, mean, rstd); dh (B, L, H), dnorm_w, dnorm_b (H) are added to; dK (H, L) and
 * dD (H) written (either may be NULL).  A workspace holds the scratch between calls. */
typedef struct s4d_workspace s4d_workspace;
s4d_workspace *s4d_workspace_new(void);
void s4d_workspace_free(s4d_workspace *ws);
void s4d_conv_forward_fused(s4d_workspace *ws, float *xt, float *mean, float *rstd, float *ys, float *gd,
                            unsigned char *mask, const float *h, const float *w, const float *bias, const float *K,
                            const float *D, int64_t B, int64_t L, int64_t H, float eps, float p, uint64_t seed);
void s4d_conv_backward_fused(s4d_workspace *ws, float *dh, float *dnorm_w, float *dnorm_b, float *dK, float *dD,
                             const float *dgd, const float *ys, const unsigned char *mask, const float *xt,
                             const float *h, const float *w, const float *bias, float *mean, float *rstd,
                             const float *K, const float *D, int64_t B, int64_t L, int64_t H, float eps, float p);

/* The out_proj matmuls with the rows split over the OpenMP threads (OpenBLAS single-threaded in
 * each): out (M, Out) = inp (M, In) @ W^T (written; no bias); dinp (M, In) = dout @ W (written),
 * dW (Out, In) += dout^T @ inp (blocks of rows added in a fixed order).  dinp, dW may be NULL.
 * The backward uses ws for its partial sums (not at the same time as the fused passes). */
void s4d_linear_forward_rows(float *out, const float *inp, const float *W, int64_t M, int64_t In, int64_t Out);
void s4d_linear_backward_rows(s4d_workspace *ws, float *dinp, float *dW, const float *dout, const float *inp,
                              const float *W, int64_t M, int64_t In, int64_t Out);

#endif
