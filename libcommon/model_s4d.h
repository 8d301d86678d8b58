/* model_s4d.h - the S4D model (diagonal SSM convolution layers) on the CPU, forward and backward.
 * Math: ../shared/REFERENCE.md sections 3-5; the kernel and the FFT convolution come from
 * kernels/ssm_kernel.h (s4d_kernel_*_f32, fft_conv_*_f32).
 *
 *   encoder (embedding, or Linear d_input -> H)
 *   n_layers x [ h += GLU(Linear_{H->2H}(dropout(GELU(S4D(LayerNorm(h)))))) ]
 *   -> per-token decoder (n_classes == 0: logits (batch, L, vocab_size)), or
 *      mean over time (pool=mean) / last step (pool=last) -> decoder (batch, n_classes).
 * S4D layer: per channel h, K = s4d_kernel(log_dt, A = -exp(A_real_log) + i A_imag, B, C) (ZOH,
 * M = d_state/2 complex modes, one of each conjugate pair), y = K * u + D u.
 * Init: S4D-Lin (A = -1/2 + i pi n), B = 1, C complex normal (variance 1: 0.5 per part), D normal,
 * log dt uniform in [log dt_min, log dt_max].  log_dt, A_real_log, A_imag, B are in the "ssm"
 * optimizer group (own learning rate, no weight decay).
 *
 * Parameter names:
 *   embedding.weight (vocab, H) | encoder.weight (H, d_input), encoder.bias (H)
 *   layers.{i}.norm.weight, layers.{i}.norm.bias (H)
 *   layers.{i}.ssm.log_dt (H), .A_real_log (H, M), .A_imag (H, M), .B (H, M) c64, .C (H, M) c64,
 *   layers.{i}.ssm.D (H)
 *   layers.{i}.out_proj.weight (2H, H), layers.{i}.out_proj.bias (2H)
 *   decoder.weight (n_out, H), decoder.bias (n_out)
 * Inputs, targets and the loss as in model_mamba.h.
 *
 * S4 (config dplr = 1, model=s4 in the checkpoint): the same block with S4's DPLR/Cauchy kernel
 * (kernels/s4_kernel.h, bilinear): Lambda = -exp(Lambda_real_log) + i Lambda_imag (H, M), P (H, R, M),
 * B (H, M), C (H, M) where C is C-tilde = C (I - Abar^L) as S4 trains it (s4_step.h recovers the
 * C of the recurrence).  Init: HiPPO-LegS in its DPLR form (nplr.h; R = 1), the same for every
 * channel; C complex normal (taken as C-tilde); D, log dt as S4D.  Optimizer groups as S4: log_dt,
 * Lambda_real_log, Lambda_imag, P, B in "ssm" (own lr, no weight decay); C with weight decay.
 * Names: layers.{i}.ssm.log_dt (H), .Lambda_real_log (H, M), .Lambda_imag (H, M), .P (H, R, M) c64,
 *        .B (H, M) c64, .C (H, M) c64 (C-tilde), .D (H); the rest as S4D.  config attributes rank and
 *        l_kernel (the training length L of C-tilde: the recurrent step needs it, s4_step.h).
 */
#ifndef SSM_MODEL_S4D_H
#define SSM_MODEL_S4D_H

#include <stdint.h>
#include "params.h"
#include "tensor.h"

typedef struct {
    int d_model, n_layers, d_state;   /* d_state N: M = N/2 complex modes */
    int vocab_size, d_input, n_classes;
    int pool_last;                    /* classification: 0 mean over time, 1 last step */
    float dropout;
    float dt_min, dt_max;
    int dplr, rank;                   /* 1: S4 (DPLR/Cauchy kernel, rank of P); 0: S4D */
    int l_kernel;                     /* S4: the length L that C-tilde was trained for (0: unknown) */
} s4d_config;

s4d_config s4d_config_default(void);
void s4d_config_to_attrs(const s4d_config *c, ssm_tensor *t);
s4d_config s4d_config_from_attrs(const ssm_tensor *t);

typedef struct s4d_model s4d_model;
s4d_model *s4d_new(const s4d_config *c);
void s4d_free(s4d_model *m);
const s4d_config *s4d_get_config(const s4d_model *m);
ssm_params *s4d_params(s4d_model *m);
void s4d_init_params(s4d_model *m, uint64_t seed);
s4d_model *s4d_from_set(const ssm_tensor_set *set);

/* Forward over (batch, L).  training: dropout on, masks from dropout_seed (a different seed
 * each step; the same seed gives the same masks whatever the thread count). */
float s4d_forward(s4d_model *m, const int32_t *tokens, const float *features, int batch, int L,
                  const int32_t *targets, int training, uint64_t dropout_seed);
void s4d_backward(s4d_model *m);     /* adds to s4d_params(m)->grad */
const float *s4d_logits(const s4d_model *m);
void s4d_accuracy(const s4d_model *m, int64_t *correct, int64_t *counted);

#endif
