/* model_mamba.h - the Mamba language model / classifier on the CPU, forward and backward.
 * Math: ../shared/REFERENCE.md section 8 (block, init) and 7 (the selective scan).
 *
 * API for ssm-train (training) and ssm-generate (recurrent decoding):
 *
 *     mamba_config c = mamba_config_default();  c.d_model = 64; c.n_layers = 2; c.vocab_size = 16;
 *     mamba_model *m = mamba_new(&c);            mamba_init_params(m, seed);
 *       or  m = mamba_from_set(&checkpoint_tensors);     (parameters by checkpoint name)
 *
 *     Training (no state):  loss = mamba_forward(m, tokens, NULL, batch, L, targets, NULL);
 *                           mamba_backward(m);   (accumulates into m->params.grad)
 *     Inference, full sequence or one token at a time (the same code path, L = 1 is a step):
 *         mamba_state *s = mamba_state_new(m, batch);        (zeros = empty history)
 *         mamba_forward(m, prompt, NULL, batch, Lp, NULL, s);   logits of every position
 *         mamba_forward(m, &next, NULL, batch, 1, NULL, s);     one step, s updated in place
 *         const float *logits = mamba_logits(m);   (batch, L, vocab_size) of the last call
 *
 * Inputs: tokens (batch, L) int32 in [0, vocab_size) when vocab_size > 0, else features
 * (batch, L, d_input) float32 through a linear encoder.  Outputs: when n_classes == 0, per-token
 * logits (batch, L, vocab_size) from the LM head (tied to the embedding unless untied); when
 * n_classes > 0, the mean over time of the final hidden state through a linear head:
 * logits (batch, n_classes).
 * Targets: int32 (batch, L) per token (-1 = ignored position) or (batch) class ids; the loss is
 * the mean softmax cross-entropy over the counted positions, and mamba_forward returns it
 * (0 when targets is NULL).
 *
 * State per layer i (mamba_state): conv_state[i] (batch, d_inner, d_conv) holds the last d_conv
 * inputs of the causal conv1d (oldest first, x after in_proj, before the conv); ssm_state[i]
 * (batch, d_inner, d_state) the scan state h.  Both are read as the history before the call's
 * first token and overwritten with the history after its last token.
 *
 * Parameter names (checkpoint names of HELPERS.md):
 *   embedding.weight (vocab, d_model)  | encoder.weight (d_model, d_input), encoder.bias (d_model)
 *   layers.{i}.norm.weight (d_model)
 *   layers.{i}.mixer.in_proj.weight (2 d_inner, d_model)
 *   layers.{i}.mixer.conv1d.weight (d_inner, 1, d_conv), layers.{i}.mixer.conv1d.bias (d_inner)
 *   layers.{i}.mixer.x_proj.weight (dt_rank + 2 d_state, d_inner)
 *   layers.{i}.mixer.dt_proj.weight (d_inner, dt_rank), layers.{i}.mixer.dt_proj.bias (d_inner)
 *   layers.{i}.mixer.A_log (d_inner, d_state), layers.{i}.mixer.D (d_inner)
 *   layers.{i}.mixer.out_proj.weight (d_model, d_inner)
 *   norm_f.weight (d_model);  lm_head.weight (vocab, d_model) only when untied;
 *   head.weight (n_classes, d_model), head.bias (n_classes) for classification.
 */
#ifndef SSM_MODEL_MAMBA_H
#define SSM_MODEL_MAMBA_H

#include <stdint.h>
#include "params.h"
#include "tensor.h"

typedef struct {
    int d_model, n_layers, d_state, expand, d_conv, dt_rank;   /* dt_rank 0 = ceil(d_model/16) */
    int vocab_size;        /* > 0: token input (embedding); 0: feature input */
    int d_input;           /* features per step when vocab_size == 0 */
    int n_classes;         /* > 0: pooled classification head; 0: per-token LM head */
    int tie_embeddings;    /* LM head shares embedding.weight (default 1) */
    float dt_min, dt_max, dt_init_floor;
    float norm_eps;        /* RMSNorm epsilon, 1e-5 */
} mamba_config;

mamba_config mamba_config_default(void);
/* Writes the config as attributes on t (model=mamba d_model= ...) and reads it back. */
void mamba_config_to_attrs(const mamba_config *c, ssm_tensor *t);
mamba_config mamba_config_from_attrs(const ssm_tensor *t);   /* dies on a missing key */

typedef struct mamba_model mamba_model;
typedef struct {
    int batch, n_layers, d_inner, d_conv, d_state;
    float **conv_state;    /* [n_layers] -> (batch, d_inner, d_conv) */
    float **ssm_state;     /* [n_layers] -> (batch, d_inner, d_state) */
} mamba_state;

mamba_model *mamba_new(const mamba_config *c);        /* parameters allocated, zero */
void mamba_free(mamba_model *m);
const mamba_config *mamba_get_config(const mamba_model *m);
ssm_params *mamba_params(mamba_model *m);
/* The initialization of REFERENCE.md section 8 from a seed. */
void mamba_init_params(mamba_model *m, uint64_t seed);
/* A model from checkpoint tensors: the `config` tensor's attributes and every parameter. */
mamba_model *mamba_from_set(const ssm_tensor_set *set);

mamba_state *mamba_state_new(const mamba_model *m, int batch);   /* zeros */
void mamba_state_reset(mamba_state *s);
void mamba_state_free(mamba_state *s);

/* Forward over (batch, L); see the top of this file.  threads: 0 = all. */
float mamba_forward(mamba_model *m, const int32_t *tokens, const float *features, int batch,
                    int L, const int32_t *targets, mamba_state *state);
/* Backward of the last forward (which must have had targets and no state): adds the gradients
 * of the loss to mamba_params(m)->grad. */
void mamba_backward(mamba_model *m);
/* Logits of the last forward: (batch, L, vocab_size), or (batch, n_classes). */
const float *mamba_logits(const mamba_model *m);
/* Correct predictions (argmax == target) and counted positions of the last forward. */
void mamba_accuracy(const mamba_model *m, int64_t *correct, int64_t *counted);

#endif
