/* test_mamba_import.c - state dicts in the HF transformers and state-spaces layouts, built here
 * from random tensors of a tiny model, imported to checkpoint names: names, data (unchanged
 * bytes, dtypes kept), the config tensor, tied/untied heads, vocabulary padding, and one-line
 * errors for a missing tensor, a shape contradicting config.json, a stray tensor, bad configs. */
#include "check.h"
#include "cli.h"
#include "json.h"
#include "mamba_import.h"

#include <string.h>

enum { DM = 8, NL = 2, NS = 4, DC = 4, DI = 16, DTR = 1 };

static ssm_tensor *rnd(const char *name, int dtype, int rank, int64_t a, int64_t b, int64_t c) {
    int64_t dims[3] = {a, b, c};
    ssm_tensor *t = ssm_tensor_new(name, dtype, rank, dims);
    int64_t n = ssm_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        float v = (float)test_normal();
        if (dtype == SSM_F32) ((float *)t->data)[i] = v;
        else if (dtype == SSM_BF16) ((uint16_t *)t->data)[i] = ssm_f32_to_bf16(v);
        else ((uint16_t *)t->data)[i] = ssm_f32_to_f16(v);
    }
    return t;
}

/* A state dict of the tiny model; prefix_embed is "embeddings" (HF) or "embedding". */
static void build(ssm_tensor_set *s, const char *embed, int64_t vocab, int dtype, int with_head) {
    char n[200];
    snprintf(n, sizeof n, "backbone.%s.weight", embed);
    ssm_set_put(s, rnd(n, dtype, 2, vocab, DM, 0));
    for (int i = 0; i < NL; i++) {
#define P(suffix, rank, a, b, c) do { snprintf(n, sizeof n, "backbone.layers.%d.%s", i, suffix); \
        ssm_set_put(s, rnd(n, dtype, rank, a, b, c)); } while (0)
        P("norm.weight", 1, DM, 0, 0);
        P("mixer.A_log", 2, DI, NS, 0);
        P("mixer.D", 1, DI, 0, 0);
        P("mixer.in_proj.weight", 2, 2 * DI, DM, 0);
        P("mixer.conv1d.weight", 3, DI, 1, DC);
        P("mixer.conv1d.bias", 1, DI, 0, 0);
        P("mixer.x_proj.weight", 2, DTR + 2 * NS, DI, 0);
        P("mixer.dt_proj.weight", 2, DI, DTR, 0);
        P("mixer.dt_proj.bias", 1, DI, 0, 0);
        P("mixer.out_proj.weight", 2, DM, DI, 0);
#undef P
    }
    ssm_set_put(s, rnd("backbone.norm_f.weight", dtype, 1, DM, 0, 0));
    if (with_head) ssm_set_put(s, rnd("lm_head.weight", dtype, 2, vocab, DM, 0));
}

static const char *hf_config =
    "{\"model_type\": \"mamba\", \"hidden_size\": 8, \"num_hidden_layers\": 2, \"intermediate_size\": 16,"
    " \"state_size\": 4, \"conv_kernel\": 4, \"time_step_rank\": 1, \"vocab_size\": 24, \"use_bias\": false,"
    " \"use_conv_bias\": true, \"layer_norm_epsilon\": 1e-05, \"expand\": 2%s}";

/* Imports a clone of src with the config text; returns 0/-1 and the error. */
static int run_import(const ssm_tensor_set *src, const char *config, ssm_tensor_set *out, char *err, size_t errlen) {
    ssm_tensor_set in;
    ssm_set_init(&in);
    for (int i = 0; i < src->n; i++) ssm_set_put(&in, ssm_tensor_clone(src->items[i]));
    char perr[256];
    ssm_json *j = ssm_json_parse(config, strlen(config), perr, sizeof perr);
    CHECK(j != NULL, "config parses: %s", perr);
    ssm_set_init(out);
    int rc = ssm_mamba_import(&in, j, "config.json", out, err, errlen);
    ssm_json_free(j);
    ssm_set_free(&in);
    return rc;
}

static void test_hf(void) {
    ssm_tensor_set src, out;
    ssm_set_init(&src);
    build(&src, "embeddings", 24, SSM_BF16, 1);
    char cfg[1024], err[512];
    snprintf(cfg, sizeof cfg, hf_config, "");
    int rc = run_import(&src, cfg, &out, err, sizeof err);
    CHECK(rc == 0, "HF import: %s", err);
    CHECK(out.n == 1 + 1 + NL * 10 + 1, "tensor count %d (tied head dropped)", out.n);
    CHECK(!ssm_set_get(&out, "lm_head.weight"), "tied lm_head dropped");
    ssm_tensor *cfgt = ssm_set_get(&out, "config");
    CHECK(cfgt && cfgt->dtype == SSM_U8 && cfgt->rank == 1 && cfgt->dims[0] == 0, "config tensor u8 [0]");
    if (cfgt) {
        const char *want[][2] = {{"model", "mamba"}, {"d_model", "8"}, {"n_layers", "2"}, {"d_state", "4"},
                                 {"expand", "2"}, {"d_conv", "4"}, {"dt_rank", "1"}, {"vocab_size", "24"},
                                 {"tokenizer", "bpe"}, {"source", "hf"}, {"tie_embeddings", "1"}};
        for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
            const char *v = ssm_tensor_get_attr(cfgt, want[k][0]);
            CHECK(v && strcmp(v, want[k][1]) == 0, "config %s=%s (got %s)", want[k][0], want[k][1], v ? v : "none");
        }
    }
    /* data unchanged, dtype kept, renamed */
    const char *pairs[][2] = {{"backbone.embeddings.weight", "embedding.weight"},
                              {"backbone.layers.1.mixer.x_proj.weight", "layers.1.mixer.x_proj.weight"},
                              {"backbone.layers.0.norm.weight", "layers.0.norm.weight"},
                              {"backbone.norm_f.weight", "norm_f.weight"}};
    for (int k = 0; k < 4; k++) {
        ssm_tensor *a = ssm_set_get(&src, pairs[k][0]), *b = ssm_set_get(&out, pairs[k][1]);
        CHECK(b && b->dtype == SSM_BF16 && memcmp(a->data, b->data, ssm_tensor_nbytes(a)) == 0, "%s -> %s", pairs[k][0], pairs[k][1]);
    }
    ssm_set_free(&out);

    /* untied: lm_head.weight kept; missing it is an error */
    snprintf(cfg, sizeof cfg, hf_config, ", \"tie_word_embeddings\": false");
    CHECK(run_import(&src, cfg, &out, err, sizeof err) == 0 && ssm_set_get(&out, "lm_head.weight"), "untied head kept: %s", err);
    ssm_set_free(&out);
    ssm_tensor_free(ssm_set_take(&src, "lm_head.weight"));
    CHECK(run_import(&src, cfg, &out, err, sizeof err) == -1 && strstr(err, "missing tensor 'lm_head.weight'"), "untied without head: %s", err);
    ssm_set_free(&out);

    /* no conv bias: zeros are supplied; the bias present anyway is an error */
    snprintf(cfg, sizeof cfg, hf_config, ", \"use_conv_bias\": false");
    /* (the second use_conv_bias member: lookup takes the first, so build the text without it) */
    char cfg2[1024];
    snprintf(cfg2, sizeof cfg2, "%s", cfg);
    char *p = strstr(cfg2, " \"use_conv_bias\": true,");
    if (p) memmove(p, p + strlen(" \"use_conv_bias\": true,"), strlen(p + strlen(" \"use_conv_bias\": true,")) + 1);
    CHECK(run_import(&src, cfg2, &out, err, sizeof err) == -1 && strstr(err, "use_conv_bias=false"), "stray conv bias: %s", err);
    ssm_set_free(&out);
    ssm_tensor_set nob;
    ssm_set_init(&nob);
    for (int i = 0; i < src.n; i++)
        if (!strstr(src.items[i]->name, "conv1d.bias")) ssm_set_put(&nob, ssm_tensor_clone(src.items[i]));
    CHECK(run_import(&nob, cfg2, &out, err, sizeof err) == 0, "no conv bias: %s", err);
    ssm_tensor *zb = ssm_set_get(&out, "layers.1.mixer.conv1d.bias");
    CHECK(zb && zb->dims[0] == DI && ssm_tensor_get_f64(zb, 3) == 0, "zero conv bias supplied");
    ssm_set_free(&out);
    ssm_set_free(&nob);

    /* errors */
    snprintf(cfg, sizeof cfg, hf_config, "");
    ssm_tensor *d = ssm_set_take(&src, "backbone.layers.1.mixer.D");
    CHECK(run_import(&src, cfg, &out, err, sizeof err) == -1 && strcmp(err, "missing tensor 'backbone.layers.1.mixer.D'") == 0,
          "missing tensor named: %s", err);
    ssm_set_free(&out);
    ssm_set_put(&src, rnd("backbone.layers.1.mixer.D", SSM_F32, 1, DI + 1, 0, 0));
    CHECK(run_import(&src, cfg, &out, err, sizeof err) == -1 &&
          strcmp(err, "tensor 'backbone.layers.1.mixer.D': shape [17] contradicts config.json (expected [16])") == 0,
          "wrong shape named: %s", err);
    ssm_set_free(&out);
    ssm_set_put(&src, d);
    ssm_set_put(&src, rnd("backbone.layers.2.mixer.D", SSM_F32, 1, DI, 0, 0));
    CHECK(run_import(&src, cfg, &out, err, sizeof err) == -1 && strstr(err, "tensor 'backbone.layers.2.mixer.D': not a parameter of a 2-layer"),
          "extra layer: %s", err);
    ssm_set_free(&out);
    ssm_tensor_free(ssm_set_take(&src, "backbone.layers.2.mixer.D"));
    const char *bad_cfgs[][2] = {
        {"{\"hidden_size\": 8}", "config.json: missing \"num_hidden_layers\""},
        {"{\"hidden_size\": -8, \"num_hidden_layers\": 2, \"vocab_size\": 24}", "config.json: hidden_size: expected a positive integer"},
        {"{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"vocab_size\": 24, \"use_bias\": true}", "use_bias=true"},
        {"{\"model_type\": \"llama\"}", "model_type 'llama' is not supported"},
        {"{\"n_embd\": 8}", "not a Mamba config.json"},
        {"{\"d_model\": 8, \"n_layer\": 2, \"vocab_size\": 20, \"ssm_cfg\": {\"layer\": \"Mamba2\"}}", "ssm_cfg.layer 'Mamba2'"},
        {"[]", "expected a JSON object"},
    };
    for (size_t k = 0; k < sizeof bad_cfgs / sizeof *bad_cfgs; k++) {
        CHECK(run_import(&src, bad_cfgs[k][0], &out, err, sizeof err) == -1 && strstr(err, bad_cfgs[k][1]),
              "bad config %zu: '%s' lacks '%s'", k, err, bad_cfgs[k][1]);
        ssm_set_free(&out);
    }
    ssm_set_free(&src);
}

/* state-spaces: vocab_size 20 padded to 24 (pad_vocab_size_multiple 8), f32 and f16. */
static void test_state_spaces(void) {
    for (int dt = 0; dt < 2; dt++) {
        ssm_tensor_set src, out;
        ssm_set_init(&src);
        build(&src, "embedding", 24, dt ? SSM_F16 : SSM_F32, 1);
        const char *cfg = "{\"d_model\": 8, \"n_layer\": 2, \"vocab_size\": 20, \"ssm_cfg\": {\"d_state\": 4, \"dt_rank\": 1},"
                          " \"rms_norm\": true, \"residual_in_fp32\": true, \"fused_add_norm\": true, \"pad_vocab_size_multiple\": 8}";
        char err[512];
        CHECK(run_import(&src, cfg, &out, err, sizeof err) == 0, "state-spaces import: %s", err);
        ssm_tensor *c = ssm_set_get(&out, "config");
        CHECK(c && strcmp(ssm_tensor_get_attr(c, "vocab_size"), "24") == 0 &&
              strcmp(ssm_tensor_get_attr(c, "vocab_size_unpadded"), "20") == 0 &&
              strcmp(ssm_tensor_get_attr(c, "source"), "state-spaces") == 0, "padded vocab");
        ssm_tensor *e = ssm_set_get(&out, "embedding.weight");
        CHECK(e && e->dtype == (dt ? SSM_F16 : SSM_F32), "embedding kept its dtype");
        CHECK(!ssm_set_get(&out, "lm_head.weight"), "state-spaces head is tied");
        ssm_set_free(&out);
        /* the HF embedding name in a state-spaces file still maps; a wrong vocab does not */
        const char *cfg_bad = "{\"d_model\": 8, \"n_layer\": 2, \"vocab_size\": 30, \"ssm_cfg\": {\"d_state\": 4, \"dt_rank\": 1}}";
        CHECK(run_import(&src, cfg_bad, &out, err, sizeof err) == -1 &&
              strstr(err, "shape [24, 8] contradicts config.json (expected [32, 8])"), "vocab contradiction: %s", err);
        ssm_set_free(&out);
        ssm_set_free(&src);
    }
}

int main(void) {
    test_seed_from_env("test_mamba_import");
    test_hf();
    test_state_spaces();
    return check_summary("test_mamba_import");
}
