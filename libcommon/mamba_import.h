/* mamba_import.h - a published Mamba checkpoint (its state dict and config.json) -> the toolkit's
 * checkpoint names (HELPERS.md "Checkpoints") and `config` tensor, with every shape checked
 * against config.json.
 *
 * Two layouts are recognised (REFERENCE.md section 8):
 *   HF transformers MambaForCausalLM   backbone.embeddings.weight, backbone.layers.{i}.norm.weight,
 *                                      backbone.layers.{i}.mixer.*, backbone.norm_f.weight,
 *                                      lm_head.weight (tied unless tie_word_embeddings is false);
 *                                      config.json: hidden_size, num_hidden_layers,
 *                                      intermediate_size, state_size, conv_kernel, time_step_rank,
 *                                      vocab_size, use_bias, use_conv_bias, layer_norm_epsilon.
 *   state-spaces/mamba                 backbone.embedding.weight, same layers, lm_head.weight
 *                                      (always tied); config.json: d_model, n_layer, vocab_size,
 *                                      pad_vocab_size_multiple, ssm_cfg {d_state, d_conv,
 *                                      expand, dt_rank}, rms_norm.
 * Checkpoint names: embedding.weight, layers.{i}.norm.weight, layers.{i}.mixer.{A_log, D,
 * in_proj.weight, conv1d.weight, conv1d.bias, x_proj.weight, dt_proj.weight, dt_proj.bias,
 * out_proj.weight}, norm_f.weight, lm_head.weight (untied only).  Weights keep their dtype
 * (f32, f16, bf16; f64 also accepted).  use_conv_bias=false gets a zero conv1d.bias; use_bias=true
 * (biases on in_proj/out_proj), LayerNorm models (rms_norm=false) and Mamba-2 are refused.
 *
 * The `config` tensor (u8, shape [0]) gets: model=mamba d_model n_layers d_state expand d_conv
 * dt_rank d_inner vocab_size (the embedding's rows, i.e. padded) vocab_size_unpadded norm_eps
 * tie_embeddings tokenizer=bpe task=lm source=hf|state-spaces.
 */
#ifndef SSM_MAMBA_IMPORT_H
#define SSM_MAMBA_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "tensor.h"

typedef enum { MAMBA_LAYOUT_HF = 1, MAMBA_LAYOUT_STATE_SPACES = 2 } mamba_layout;

/* The model's dimensions as config.json gives them. */
typedef struct {
    mamba_layout layout;
    int64_t d_model, n_layers, d_state, d_conv, expand, d_inner, dt_rank;
    int64_t vocab_size;            /* rows of the embedding (padded) */
    int64_t vocab_size_unpadded;   /* config.json's vocab_size */
    double norm_eps;
    int tie_embeddings;
    int conv_bias;                 /* the checkpoint has conv1d.bias */
} mamba_import_config;

/* Reads config.json (either layout).  label names the file in messages.  0, or -1 with a one-line
 * message ("config.json: hidden_size: expected a positive integer"). */
int ssm_mamba_import_read_config(const ssm_json *config, const char *label, mamba_import_config *c,
                                 char *err, size_t errlen);

/* The checkpoint name of a state-dict name (either layout) into buf, or NULL if the name is not
 * part of a Mamba LM ("lm_head.weight" maps to itself). */
const char *ssm_mamba_checkpoint_name(const char *name, char *buf, size_t n);

/* The shape config.json implies for checkpoint name `ckpt`: the rank, dims filled; -1 for a name
 * that is not a parameter of that model (e.g. layers.30 of a 24-layer model). */
int ssm_mamba_expected_shape(const mamba_import_config *c, const char *ckpt, int64_t *dims);

/* Converts a whole state dict: every tensor of `in` is taken (in is left empty), renamed, checked,
 * and put in `out` together with the `config` tensor.  0, or -1 with a one-line message naming the
 * tensor ("tensor 'backbone.layers.0.mixer.in_proj.weight': shape [3072, 760] contradicts
 * config.json (expected [3072, 768])", "missing tensor 'backbone.layers.3.mixer.D'"). */
int ssm_mamba_import(ssm_tensor_set *in, const ssm_json *config, const char *config_label,
                     ssm_tensor_set *out, char *err, size_t errlen);

#endif
