/* nn_cuda.h - the CUDA versions of the model operations of libcommon/nn.h and optim.h, used when
 * the models compute on the GPU (device.h: ssm_compute_use_gpu).  Same arguments, same meaning,
 * same layouts (row-major, Linear weights (out, in)); every pointer is a device (or managed)
 * pointer; everything runs on the default stream, asynchronously, except where a result comes
 * back to the host (crossentropy_forward_cuda, grad_sumsq_cuda, embedding_backward_cuda).
 * Failures die with one line (ssm_die).  Built only with SSM_HAVE_CUDA (kernels/nn_cuda.cu).
 *
 * Agreement with the CPU (nn.c): the same formulas and, for the sums over rows (parameter
 * gradients), the same order (chunks of 128 rows, then the chunk sums in chunk order), so the
 * differences are float32 rounding: cuBLAS's summation order in the matrix products, FMA
 * contraction, and CUDA's expf/erfcf against nn.c's polynomial exp and erfc. */
#ifndef SSM_NN_CUDA_H
#define SSM_NN_CUDA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void linear_forward_cuda(float *out, const float *inp, const float *W, const float *bias, int64_t M,
                         int64_t In, int64_t Out);
void linear_backward_cuda(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                          const float *W, int64_t M, int64_t In, int64_t Out);
void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int64_t M, int64_t C, float eps);
void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, const float *mean, const float *rstd, int64_t M, int64_t C);
void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *w, int64_t M,
                          int64_t C, float eps);
void rmsnorm_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                           const float *rstd, int64_t M, int64_t C);
void gelu_forward_cuda(float *out, const float *inp, int64_t n);
void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t n);
void silu_forward_cuda(float *out, const float *inp, int64_t n);
void silu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t n);
void glu_forward_cuda(float *out, const float *inp, int64_t M, int64_t C);
void glu_backward_cuda(float *dinp, const float *dout, const float *inp, int64_t M, int64_t C);
void embedding_forward_cuda(float *out, const int32_t *tokens, const float *table, int64_t M, int64_t C);
void embedding_backward_cuda(float *dtable, const float *dout, const int32_t *tokens, int64_t M, int64_t C);
void conv1d_causal_forward_cuda(float *out, const float *inp, const float *weight, const float *bias,
                                const float *state, float *new_state, int64_t B, int64_t L, int64_t C,
                                int64_t K);
void conv1d_causal_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight, int64_t B, int64_t L, int64_t C,
                                 int64_t K);
double crossentropy_forward_cuda(float *probs, const float *logits, const int32_t *targets, int64_t M,
                                 int64_t V, int64_t *counted, int64_t *correct);
void crossentropy_backward_cuda(float *dlogits, const float *probs, const int32_t *targets, int64_t M,
                                int64_t V, float dloss);
void dropout_forward_cuda(float *out, const float *inp, int64_t n, float p, uint64_t seed);
void dropout_backward_cuda(float *dinp, const float *dout, int64_t n, float p, uint64_t seed);
void meanpool_forward_cuda(float *out, const float *inp, int64_t B, int64_t L, int64_t C);
void meanpool_backward_cuda(float *dinp, const float *dout, int64_t B, int64_t L, int64_t C);

/* The small glue ops of nn.h (nn_copy2d ...), same meaning. */
void nn_copy2d_cuda(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols);
void nn_add2d_cuda(float *dst, int64_t dpitch, const float *src, int64_t spitch, int64_t rows, int64_t cols);
void nn_mul_add_cuda(float *dst, const float *a, const float *b, int64_t n);
void nn_neg_exp_cuda(float *out, const float *in, int64_t n);
void nn_transpose_cuda(float *out, const float *in, int64_t B, int64_t R, int64_t C);
void nn_s4d_A_forward_cuda(float *A, const float *are, const float *aim, int64_t n);
void nn_s4d_A_backward_cuda(float *gre, float *gim, const float *dA, const float *A, int64_t n);

/* optim.c: sum of squares of n floats in double (a fixed order: the same for every run). */
double grad_sumsq_cuda(const float *g, int64_t n);
/* One AdamW update of n floats (optim.h), the gradient scaled by gscale first. */
void adamw_update_cuda(float *w, const float *g, float *m, float *v, int64_t n, float gscale, float lr,
                       float wd, float beta1, float beta2, float eps, float bc1, float bc2);

#ifdef __cplusplus
}
#endif

#endif
