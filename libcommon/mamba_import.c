/* mamba_import.c - state dict + config.json -> checkpoint tensors (see mamba_import.h). */
#include "mamba_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define IMPORT_FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

/* A positive integer member; *out keeps its default when absent. */
static int get_pos_int(const ssm_json *obj, const char *key, int64_t *out, int required, const char *label,
                       char *err, size_t errlen) {
    int64_t v;
    int r = ssm_json_get_int(obj, key, &v);
    if (r == 0 && !required) return 0;
    if (r == 0) IMPORT_FAIL("%s: missing \"%s\"", label, key);
    if (r < 0 || v <= 0 || v > (1LL << 31)) IMPORT_FAIL("%s: %s: expected a positive integer", label, key);
    *out = v;
    return 0;
}

static int get_bool(const ssm_json *obj, const char *key, int *out, const char *label, char *err, size_t errlen) {
    if (ssm_json_get_bool(obj, key, out) < 0) IMPORT_FAIL("%s: %s: expected true or false", label, key);
    return 0;
}

int ssm_mamba_import_read_config(const ssm_json *config, const char *label, mamba_import_config *c,
                                 char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!config || config->type != SSM_JSON_OBJECT) IMPORT_FAIL("%s: expected a JSON object", label);
    c->d_state = 16;
    c->d_conv = 4;
    c->expand = 2;
    c->norm_eps = 1e-5;
    c->tie_embeddings = 1;
    c->conv_bias = 1;
    const char *s;
    if (ssm_json_get_string(config, "model_type", &s) == 1 && strcmp(s, "mamba") != 0)
        IMPORT_FAIL("%s: model_type '%s' is not supported (only mamba)", label, s);
    if (ssm_json_get(config, "hidden_size")) {
        c->layout = MAMBA_LAYOUT_HF;
        if (get_pos_int(config, "hidden_size", &c->d_model, 1, label, err, errlen) ||
            get_pos_int(config, "num_hidden_layers", &c->n_layers, 1, label, err, errlen) ||
            get_pos_int(config, "vocab_size", &c->vocab_size_unpadded, 1, label, err, errlen) ||
            get_pos_int(config, "state_size", &c->d_state, 0, label, err, errlen) ||
            get_pos_int(config, "conv_kernel", &c->d_conv, 0, label, err, errlen) ||
            get_pos_int(config, "expand", &c->expand, 0, label, err, errlen))
            return -1;
        c->d_inner = c->expand * c->d_model;
        if (get_pos_int(config, "intermediate_size", &c->d_inner, 0, label, err, errlen)) return -1;
        if (c->d_inner % c->d_model)
            IMPORT_FAIL("%s: intermediate_size %lld is not a multiple of hidden_size %lld (not supported)", label,
                        (long long)c->d_inner, (long long)c->d_model);
        c->expand = c->d_inner / c->d_model;
        c->dt_rank = (c->d_model + 15) / 16;
        const ssm_json *r = ssm_json_get(config, "time_step_rank");
        if (r && !(r->type == SSM_JSON_STRING && strcmp(r->str, "auto") == 0) &&
            get_pos_int(config, "time_step_rank", &c->dt_rank, 0, label, err, errlen))
            return -1;
        int use_bias = 0;
        if (get_bool(config, "use_bias", &use_bias, label, err, errlen) ||
            get_bool(config, "use_conv_bias", &c->conv_bias, label, err, errlen) ||
            get_bool(config, "tie_word_embeddings", &c->tie_embeddings, label, err, errlen))
            return -1;
        if (use_bias) IMPORT_FAIL("%s: use_bias=true (biases on in_proj/out_proj) is not supported", label);
        if (ssm_json_get_number(config, "layer_norm_epsilon", &c->norm_eps) < 0 || c->norm_eps <= 0 || c->norm_eps > 1)
            IMPORT_FAIL("%s: layer_norm_epsilon: expected a number in (0, 1]", label);
        c->vocab_size = c->vocab_size_unpadded;
    } else if (ssm_json_get(config, "d_model")) {
        c->layout = MAMBA_LAYOUT_STATE_SPACES;
        int64_t pad = 8;
        if (get_pos_int(config, "d_model", &c->d_model, 1, label, err, errlen) ||
            get_pos_int(config, "n_layer", &c->n_layers, 1, label, err, errlen) ||
            get_pos_int(config, "vocab_size", &c->vocab_size_unpadded, 1, label, err, errlen) ||
            get_pos_int(config, "pad_vocab_size_multiple", &pad, 0, label, err, errlen))
            return -1;
        int rms = 1;
        if (get_bool(config, "rms_norm", &rms, label, err, errlen)) return -1;
        if (!rms) IMPORT_FAIL("%s: rms_norm=false (LayerNorm) is not supported", label);
        int64_t d_intermediate = 0;
        if (ssm_json_get_int(config, "d_intermediate", &d_intermediate) == 1 && d_intermediate != 0)
            IMPORT_FAIL("%s: d_intermediate=%lld (MLP blocks) is not supported", label, (long long)d_intermediate);
        const ssm_json *attn = ssm_json_get(config, "attn_layer_idx");
        if (attn && attn->type == SSM_JSON_ARRAY && attn->n > 0)
            IMPORT_FAIL("%s: attn_layer_idx (hybrid attention layers) is not supported", label);
        c->dt_rank = (c->d_model + 15) / 16;
        const ssm_json *ssm_cfg = ssm_json_get(config, "ssm_cfg");
        if (ssm_cfg && ssm_cfg->type == SSM_JSON_OBJECT) {
            if (ssm_json_get_string(ssm_cfg, "layer", &s) == 1 && strcmp(s, "Mamba1") != 0)
                IMPORT_FAIL("%s: ssm_cfg.layer '%s' is not supported (only Mamba1)", label, s);
            if (get_pos_int(ssm_cfg, "d_state", &c->d_state, 0, label, err, errlen) ||
                get_pos_int(ssm_cfg, "d_conv", &c->d_conv, 0, label, err, errlen) ||
                get_pos_int(ssm_cfg, "expand", &c->expand, 0, label, err, errlen))
                return -1;
            const ssm_json *r = ssm_json_get(ssm_cfg, "dt_rank");
            if (r && !(r->type == SSM_JSON_STRING && strcmp(r->str, "auto") == 0) &&
                get_pos_int(ssm_cfg, "dt_rank", &c->dt_rank, 0, label, err, errlen))
                return -1;
            int b = 0;
            if (ssm_json_get_bool(ssm_cfg, "bias", &b) == 1 && b) IMPORT_FAIL("%s: ssm_cfg.bias=true is not supported", label);
            if (ssm_json_get_bool(ssm_cfg, "conv_bias", &b) == 1) c->conv_bias = b;
        }
        c->d_inner = c->expand * c->d_model;
        c->vocab_size = (c->vocab_size_unpadded + pad - 1) / pad * pad;
        c->tie_embeddings = 1;
        int tie;
        if (ssm_json_get_bool(config, "tie_embeddings", &tie) == 1) c->tie_embeddings = tie;
    } else {
        IMPORT_FAIL("%s: neither \"hidden_size\" (transformers) nor \"d_model\" (state-spaces): not a Mamba config.json", label);
    }
    return 0;
}

const char *ssm_mamba_checkpoint_name(const char *name, char *buf, size_t n) {
    if (strcmp(name, "lm_head.weight") == 0) { snprintf(buf, n, "%s", name); return buf; }
    if (strncmp(name, "backbone.", 9) != 0) return NULL;
    const char *rest = name + 9;
    if (strcmp(rest, "embeddings.weight") == 0 || strcmp(rest, "embedding.weight") == 0) {
        snprintf(buf, n, "embedding.weight");
        return buf;
    }
    if (strcmp(rest, "norm_f.weight") == 0 || strncmp(rest, "layers.", 7) == 0) {
        snprintf(buf, n, "%s", rest);
        return buf;
    }
    return NULL;
}

static int shape(int64_t *dims, int rank, int64_t a, int64_t b, int64_t c) {
    dims[0] = a; dims[1] = b; dims[2] = c;
    return rank;
}

int ssm_mamba_expected_shape(const mamba_import_config *c, const char *ckpt, int64_t *dims) {
    if (strcmp(ckpt, "embedding.weight") == 0 || strcmp(ckpt, "lm_head.weight") == 0)
        return shape(dims, 2, c->vocab_size, c->d_model, 0);
    if (strcmp(ckpt, "norm_f.weight") == 0) return shape(dims, 1, c->d_model, 0, 0);
    if (strncmp(ckpt, "layers.", 7) != 0) return -1;
    char *end;
    long i = strtol(ckpt + 7, &end, 10);
    if (end == ckpt + 7 || *end != '.' || i < 0 || i >= c->n_layers || (ckpt[7] == '0' && end != ckpt + 8)) return -1;
    const char *p = end + 1;
    int64_t di = c->d_inner, N = c->d_state;
    if (strcmp(p, "norm.weight") == 0) return shape(dims, 1, c->d_model, 0, 0);
    if (strncmp(p, "mixer.", 6) != 0) return -1;
    p += 6;
    if (strcmp(p, "A_log") == 0) return shape(dims, 2, di, N, 0);
    if (strcmp(p, "D") == 0) return shape(dims, 1, di, 0, 0);
    if (strcmp(p, "in_proj.weight") == 0) return shape(dims, 2, 2 * di, c->d_model, 0);
    if (strcmp(p, "conv1d.weight") == 0) return shape(dims, 3, di, 1, c->d_conv);
    if (strcmp(p, "conv1d.bias") == 0) return shape(dims, 1, di, 0, 0);
    if (strcmp(p, "x_proj.weight") == 0) return shape(dims, 2, c->dt_rank + 2 * N, di, 0);
    if (strcmp(p, "dt_proj.weight") == 0) return shape(dims, 2, di, c->dt_rank, 0);
    if (strcmp(p, "dt_proj.bias") == 0) return shape(dims, 1, di, 0, 0);
    if (strcmp(p, "out_proj.weight") == 0) return shape(dims, 2, c->d_model, di, 0);
    return -1;
}

static const char *layer_params[] = {"norm.weight", "mixer.A_log", "mixer.D", "mixer.in_proj.weight",
                                     "mixer.conv1d.weight", "mixer.conv1d.bias", "mixer.x_proj.weight",
                                     "mixer.dt_proj.weight", "mixer.dt_proj.bias", "mixer.out_proj.weight"};

/* The state-dict name a checkpoint name came from, for messages. */
static void source_name(const mamba_import_config *c, const char *ckpt, char *buf, size_t n) {
    if (strcmp(ckpt, "lm_head.weight") == 0) snprintf(buf, n, "%s", ckpt);
    else if (strcmp(ckpt, "embedding.weight") == 0)
        snprintf(buf, n, "backbone.%s", c->layout == MAMBA_LAYOUT_HF ? "embeddings.weight" : "embedding.weight");
    else snprintf(buf, n, "backbone.%s", ckpt);
}

int ssm_mamba_import(ssm_tensor_set *in, const ssm_json *config, const char *config_label, ssm_tensor_set *out,
                     char *err, size_t errlen) {
    mamba_import_config c;
    if (ssm_mamba_import_read_config(config, config_label, &c, err, errlen)) return -1;
    ssm_tensor_set got;
    ssm_set_init(&got);
    int rc = -1;
    char ckpt[512], desc[600], want[600], src[600];
    /* rename and check each tensor */
    while (in->n > 0) {
        ssm_tensor *t = ssm_set_take(in, in->items[0]->name);
        int64_t dims[SSM_MAX_RANK];
        const char *name = ssm_mamba_checkpoint_name(t->name, ckpt, sizeof ckpt);
        int rank = name ? ssm_mamba_expected_shape(&c, name, dims) : -1;
        if (rank < 0) {
            snprintf(err, errlen, "tensor '%s': not a parameter of a %lld-layer Mamba language model", t->name,
                     (long long)c.n_layers);
            ssm_tensor_free(t);
            goto done;
        }
        if (t->dtype != SSM_F32 && t->dtype != SSM_F16 && t->dtype != SSM_BF16 && t->dtype != SSM_F64) {
            snprintf(err, errlen, "tensor '%s': dtype %s, expected f32, f16 or bf16", t->name, ssm_dtype_name(t->dtype));
            ssm_tensor_free(t);
            goto done;
        }
        int same = t->rank == rank;
        for (int d = 0; same && d < rank; d++) same = t->dims[d] == dims[d];
        if (!same) {
            ssm_shape_string(t->rank, t->dims, desc, sizeof desc);
            ssm_shape_string(rank, dims, want, sizeof want);
            snprintf(err, errlen, "tensor '%s': shape %s contradicts %s (expected %s)", t->name, desc, config_label, want);
            ssm_tensor_free(t);
            goto done;
        }
        if (ssm_set_get(&got, name)) {
            snprintf(err, errlen, "tensor '%s': a second tensor for checkpoint name '%s'", t->name, name);
            ssm_tensor_free(t);
            goto done;
        }
        ssm_tensor_set_name(t, name);
        ssm_set_put(&got, t);
    }
    /* tied head: drop lm_head.weight; untied: it must be there */
    ssm_tensor *head = ssm_set_get(&got, "lm_head.weight");
    if (c.tie_embeddings && head) ssm_tensor_free(ssm_set_take(&got, "lm_head.weight"));
    if (!c.tie_embeddings && !head) { snprintf(err, errlen, "missing tensor 'lm_head.weight' (tie_word_embeddings is false)"); goto done; }
    if (!c.conv_bias) {
        for (int64_t i = 0; i < c.n_layers; i++) {
            snprintf(ckpt, sizeof ckpt, "layers.%lld.mixer.conv1d.bias", (long long)i);
            if (ssm_set_get(&got, ckpt)) {
                snprintf(err, errlen, "tensor 'backbone.%s': present although %s says use_conv_bias=false", ckpt, config_label);
                goto done;
            }
            int64_t d = c.d_inner;
            ssm_set_put(&got, ssm_tensor_new(ckpt, SSM_F32, 1, &d));
        }
    }
    /* everything present, in the order of HELPERS.md */
    const char *globals[] = {"embedding.weight", "norm_f.weight"};
    for (int g = 0; g < 2; g++)
        if (!ssm_set_get(&got, globals[g])) {
            source_name(&c, globals[g], src, sizeof src);
            snprintf(err, errlen, "missing tensor '%s'", src);
            goto done;
        }
    ssm_tensor *cfg = ssm_tensor_new("config", SSM_U8, 1, (int64_t[]){0});
    ssm_tensor_set_attr(cfg, "model", "mamba");
    ssm_tensor_set_attrf(cfg, "d_model", "%lld", (long long)c.d_model);
    ssm_tensor_set_attrf(cfg, "n_layers", "%lld", (long long)c.n_layers);
    ssm_tensor_set_attrf(cfg, "d_state", "%lld", (long long)c.d_state);
    ssm_tensor_set_attrf(cfg, "expand", "%lld", (long long)c.expand);
    ssm_tensor_set_attrf(cfg, "d_conv", "%lld", (long long)c.d_conv);
    ssm_tensor_set_attrf(cfg, "dt_rank", "%lld", (long long)c.dt_rank);
    ssm_tensor_set_attrf(cfg, "d_inner", "%lld", (long long)c.d_inner);
    ssm_tensor_set_attrf(cfg, "vocab_size", "%lld", (long long)c.vocab_size);
    ssm_tensor_set_attrf(cfg, "vocab_size_unpadded", "%lld", (long long)c.vocab_size_unpadded);
    ssm_tensor_set_attrf(cfg, "norm_eps", "%.9g", c.norm_eps);
    ssm_tensor_set_attrf(cfg, "tie_embeddings", "%d", c.tie_embeddings);
    ssm_tensor_set_attr(cfg, "tokenizer", "bpe");
    ssm_tensor_set_attr(cfg, "task", "lm");
    ssm_tensor_set_attr(cfg, "source", c.layout == MAMBA_LAYOUT_HF ? "hf" : "state-spaces");
    ssm_set_put(out, cfg);
    ssm_set_put(out, ssm_set_take(&got, "embedding.weight"));
    for (int64_t i = 0; i < c.n_layers; i++)
        for (size_t k = 0; k < sizeof layer_params / sizeof *layer_params; k++) {
            snprintf(ckpt, sizeof ckpt, "layers.%lld.%s", (long long)i, layer_params[k]);
            ssm_tensor *t = ssm_set_take(&got, ckpt);
            if (!t) {
                source_name(&c, ckpt, src, sizeof src);
                snprintf(err, errlen, "missing tensor '%s'", src);
                goto done;
            }
            ssm_set_put(out, t);
        }
    ssm_set_put(out, ssm_set_take(&got, "norm_f.weight"));
    if (!c.tie_embeddings) ssm_set_put(out, ssm_set_take(&got, "lm_head.weight"));
    rc = 0;
done:
    ssm_set_free(&got);
    return rc;
}
