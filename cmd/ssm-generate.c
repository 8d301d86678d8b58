/* ssm-generate - text generation from a Mamba or S4D checkpoint: the prompt in parallel mode (the
 * selective scan, or the FFT convolution, over the whole prompt), then one recurrent step per new
 * token (the same model code with L = 1, the state carried).  Wiring only: the models are
 * libcommon/model_mamba and libcommon/s4d_recurrent (over model_s4d), the tokenizer libcommon/bpe, the import of published checkpoints libcommon/mamba_import, the
 * choice of tokens libcommon/sampling. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "cli.h"
#include "device.h"
#include "json.h"
#include "mamba_decode.h"
#include "mamba_import.h"
#include "model_mamba.h"
#include "model_s4d.h"
#include "s4d_recurrent.h"
#include "safetensors.h"
#include "sampling.h"

static const char *usage =
    "Usage: ssm-generate -m CHECKPOINT [OPTIONS]\n"
    "Generate tokens from a Mamba or S4D language model: the prompt is processed in parallel\n"
    "mode, each new token by one recurrent step.  Tokens go to stdout as they are produced;\n"
    "statistics to stderr.\n"
    "\n"
    "Model and tokenizer:\n"
    "  -m, --model FILE        checkpoint: a tensor stream (from ssm-train or an import), or a\n"
    "                          .safetensors file (with --config)\n"
    "      --config FILE       FILE is a published config.json: -m holds the state dict under the\n"
    "                          transformers or state-spaces names and is imported on the fly\n"
    "      --tokenizer FILE    HF tokenizer.json (byte-level BPE); without it, checkpoints with\n"
    "                          tokenizer=bytes use bytes, others need --tokens and print ids\n"
    "Prompt (one of; optional with --state-in):\n"
    "      --prompt TEXT       --prompt-file FILE     --tokens ID,ID,...\n"
    "Several prompts, generated as one batch (one output line per prompt):\n"
    "      --prompt TEXT or --tokens IDS given several times, or --prompt-lines FILE (a prompt per\n"
    "                          non-empty line)\n"
    "Generation:\n"
    "  -n, --max-tokens N      tokens to generate (default 64; 0 = only process the prompt)\n"
    "      --temperature T     0 = greedy (default 1)\n"
    "      --top-k K           keep the K most probable tokens (default 0 = all)\n"
    "      --top-p P           keep the smallest set reaching probability P (default 1)\n"
    "      --seed S            random seed (default 0; with --state-in: continue the saved one)\n"
    "      --ids               print token ids (space-separated) instead of text\n"
    "      --prefill-chunk L   prompt tokens per parallel pass (default 512; bounds memory)\n"
    "      --weights f32|bf16  weights of the recurrent steps (default: bf16 when the checkpoint's\n"
    "                          matrices are bf16, else f32); the state is float32\n"
    "Classification (models with n_classes > 0, mamba or s4d):\n"
    "      --classify [FILE]   read `x` (count, L) i32 tokens or (count, L[, F]) f32 features\n"
    "                          and optional `y` (count) i32 labels from FILE (default stdin);\n"
    "                          print one predicted class per line (accuracy on stderr)\n"
    "      --batch N           examples per forward pass (default 32)\n"
    "Device:\n"
    "      --device cpu|cuda   where the model runs (default cpu; cuda: on the GPU)\n"
    "State and diagnostics:\n"
    "      --state-in FILE     continue from a state saved by --state-out\n"
    "      --state-out FILE    save the recurrent state (after the last token) as a tensor stream\n"
    "      --logits-out FILE   write the logits of every prompt position, (L, vocab) f32\n"
    "Common options:\n"
    "  -o, --output FILE       write the text to FILE (default stdout)\n"
    "  -q, --quiet             no statistics;  -v, --verbose  more messages\n"
    "  -h, --help              this text;      --version     the version\n"
    "Exit status: 0 ok, 1 data error, 2 usage error.  See ssm-generate(1).\n";

#define SAMPLING_RNG_TAG 0x73616d706c65ull   /* the sampling stream of --seed ("sample") */

enum {
    OPT_CONFIG = SSM_OPT_TOOL_FIRST, OPT_TOKENIZER, OPT_PROMPT, OPT_PROMPT_FILE, OPT_TOKENS, OPT_TEMPERATURE,
    OPT_TOP_K, OPT_TOP_P, OPT_SEED, OPT_IDS, OPT_STATE_IN, OPT_STATE_OUT, OPT_LOGITS_OUT, OPT_CHUNK,
    OPT_CLASSIFY, OPT_BATCH, OPT_PROMPT_LINES, OPT_WEIGHTS, OPT_DEVICE
};

#define MAX_LISTED_PROMPTS 4096

typedef struct {
    const char *model, *config, *tokenizer, *prompt, *prompt_file, *tokens;
    const char *state_in, *state_out, *logits_out;
    int64_t n_new, chunk, batch;
    int classify;
    const char *classify_input;
    ssm_sampling sampling;
    uint64_t seed;
    int seed_given, ids;
    /* every --prompt / --tokens in order (batch mode when more than one), or --prompt-lines */
    const char *listed[MAX_LISTED_PROMPTS];
    int n_listed;
    const char *prompt_lines;
    int weights;           /* SSM_F32, SSM_BF16, or -1: as the checkpoint */
    int on_gpu;
} options;

static void parse_options(int argc, char **argv, options *o) {
    static struct option opts[] = {
        SSM_CLI_COMMON_OPTS,
        {"model", required_argument, 0, 'm'},
        {"max-tokens", required_argument, 0, 'n'},
        {"config", required_argument, 0, OPT_CONFIG},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"prompt", required_argument, 0, OPT_PROMPT},
        {"prompt-file", required_argument, 0, OPT_PROMPT_FILE},
        {"tokens", required_argument, 0, OPT_TOKENS},
        {"temperature", required_argument, 0, OPT_TEMPERATURE},
        {"top-k", required_argument, 0, OPT_TOP_K},
        {"top-p", required_argument, 0, OPT_TOP_P},
        {"seed", required_argument, 0, OPT_SEED},
        {"ids", no_argument, 0, OPT_IDS},
        {"state-in", required_argument, 0, OPT_STATE_IN},
        {"state-out", required_argument, 0, OPT_STATE_OUT},
        {"logits-out", required_argument, 0, OPT_LOGITS_OUT},
        {"prefill-chunk", required_argument, 0, OPT_CHUNK},
        {"classify", no_argument, 0, OPT_CLASSIFY},
        {"batch", required_argument, 0, OPT_BATCH},
        {"prompt-lines", required_argument, 0, OPT_PROMPT_LINES},
        {"weights", required_argument, 0, OPT_WEIGHTS},
        {"device", required_argument, 0, OPT_DEVICE},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->n_new = 64;
    o->chunk = 512;
    o->batch = 32;
    o->sampling = (ssm_sampling){1.0, 0, 1.0};
    o->weights = -1;
    int c;
    while ((c = getopt_long(argc, argv, SSM_CLI_COMMON_SHORT "m:n:", opts, NULL)) != -1) {
        if (ssm_cli_common_option(c, optarg)) continue;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'n': o->n_new = ssm_parse_int("--max-tokens", optarg, 0, 1LL << 40); break;
        case OPT_CONFIG: o->config = optarg; break;
        case OPT_TOKENIZER: o->tokenizer = optarg; break;
        case OPT_PROMPT:
        case OPT_TOKENS:
            if (o->n_listed == MAX_LISTED_PROMPTS) ssm_usage_error("more than %d prompts: use --prompt-lines", MAX_LISTED_PROMPTS);
            o->listed[o->n_listed++] = optarg;
            if (c == OPT_PROMPT && !o->prompt) o->prompt = optarg;
            if (c == OPT_TOKENS && !o->tokens) o->tokens = optarg;
            break;
        case OPT_PROMPT_LINES: o->prompt_lines = optarg; break;
        case OPT_WEIGHTS:
            if (strcmp(optarg, "f32") == 0) o->weights = SSM_F32;
            else if (strcmp(optarg, "bf16") == 0) o->weights = SSM_BF16;
            else ssm_usage_error("--weights: expected f32 or bf16, got '%s'", optarg);
            break;
        case OPT_PROMPT_FILE: o->prompt_file = optarg; break;
        case OPT_TEMPERATURE: o->sampling.temperature = ssm_parse_double("--temperature", optarg, 0, 1e6); break;
        case OPT_TOP_K: o->sampling.top_k = ssm_parse_int("--top-k", optarg, 0, 1LL << 31); break;
        case OPT_TOP_P: o->sampling.top_p = ssm_parse_double("--top-p", optarg, 1e-9, 1); break;
        case OPT_SEED: o->seed = (uint64_t)ssm_parse_int("--seed", optarg, 0, INT64_MAX); o->seed_given = 1; break;
        case OPT_IDS: o->ids = 1; break;
        case OPT_STATE_IN: o->state_in = optarg; break;
        case OPT_STATE_OUT: o->state_out = optarg; break;
        case OPT_LOGITS_OUT: o->logits_out = optarg; break;
        case OPT_CHUNK: o->chunk = ssm_parse_int("--prefill-chunk", optarg, 1, 1 << 20); break;
        case OPT_CLASSIFY: o->classify = 1; break;
        case OPT_BATCH: o->batch = ssm_parse_int("--batch", optarg, 1, 1 << 20); break;
        case OPT_DEVICE: o->on_gpu = ssm_parse_device(optarg) == SSM_DEVICE_CUDA; break;
        default: ssm_usage_error("unknown option");
        }
    }
    if (!o->model) ssm_usage_error("-m CHECKPOINT is required");
    if (o->classify) {
        if (argc - optind > 1) ssm_usage_error("--classify reads one input (FILE or stdin)");
        o->classify_input = optind < argc ? argv[optind] : "-";
        if (o->prompt || o->prompt_file || o->tokens || o->state_in || o->state_out || o->logits_out)
            ssm_usage_error("--classify takes no prompt or state options");
        return;
    }
    if (optind < argc) ssm_usage_error("unexpected argument '%s'", argv[optind]);
    if (!!o->prompt + !!o->prompt_file + !!o->tokens + !!o->prompt_lines > 1)
        ssm_usage_error("--prompt, --prompt-file, --tokens and --prompt-lines exclude each other");
    if ((o->n_listed > 1 || o->prompt_lines) && (o->state_in || o->state_out || o->logits_out))
        ssm_usage_error("--state-in, --state-out and --logits-out take a single prompt (not yet a batch)");
    if (!o->prompt && !o->prompt_file && !o->tokens && !o->prompt_lines && !o->state_in)
        ssm_usage_error("no prompt: give --prompt, --prompt-file or --tokens (or --state-in)");
}

/* ---- loading -------------------------------------------------------------------------------- */
static int want_all(const char *name, void *ctx) { (void)name; (void)ctx; return 1; }

static void read_all(const char *path, ssm_tensor_set *set) {
    ssm_reader *r = ssm_cli_open_input(path);
    ssm_collect_or_pass(r, NULL, want_all, NULL, set);
    ssm_reader_close(r);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Every tensor of a .safetensors file. */
static void read_safetensors(const char *path, ssm_tensor_set *set) {
    char err[1024];
    ssm_safetensors *st = ssm_safetensors_open(path, err, sizeof err);
    if (!st) ssm_die("%s", err);
    for (int i = 0; i < ssm_safetensors_count(st); i++) {
        ssm_tensor *t = ssm_safetensors_load(st, i);
        if (!t) ssm_die("%s", ssm_safetensors_error(st));
        ssm_set_put(set, t);
    }
    ssm_safetensors_close(st);
}

/* 1 when the checkpoint file held a bf16 matrix (--weights then defaults to bf16). */
static int checkpoint_bf16;

/* The checkpoint of -m (a tensor stream, or a .safetensors file), imported through config.json
 * when --config is given. */
static void load_checkpoint(const options *o, ssm_tensor_set *ckpt) {
    ssm_tensor_set raw;
    ssm_set_init(&raw);
    if (ends_with(o->model, ".safetensors")) read_safetensors(o->model, &raw);
    else read_all(o->model, &raw);
    for (int i = 0; i < raw.n; i++)
        if (raw.items[i]->dtype == SSM_BF16 && raw.items[i]->rank == 2) checkpoint_bf16 = 1;
    if (!o->config) { *ckpt = raw; return; }
    char err[1024];
    ssm_json *cfg = ssm_json_parse_file(o->config, err, sizeof err);
    if (!cfg) ssm_die("%s", err);
    ssm_set_init(ckpt);
    if (ssm_mamba_import(&raw, cfg, o->config, ckpt, err, sizeof err)) ssm_die("%s: %s", o->model, err);
    ssm_json_free(cfg);
    ssm_set_free(&raw);
}

/* ---- tokens --------------------------------------------------------------------------------- */
typedef struct {
    ssm_bpe *bpe;      /* BPE, or NULL */
    int bytes;         /* byte-level tokens (ssm-train's text models) */
} tokenizer;

static int32_t *parse_token_list(const char *s, int64_t vocab, int64_t *n) {
    int64_t cap = 16, k = 0;
    int32_t *ids = ssm_xmalloc((size_t)cap * sizeof(int32_t));
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p) ssm_usage_error("--tokens: expected integers separated by commas, got '%s'", p);
        if (v < 0 || v >= vocab) ssm_usage_error("--tokens: token id %lld is not in [0, %lld)", v, (long long)vocab);
        if (k == cap) { cap *= 2; ids = ssm_xrealloc(ids, (size_t)cap * sizeof(int32_t)); }
        ids[k++] = (int32_t)v;
        p = end;
    }
    *n = k;
    return ids;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) ssm_die("%s: cannot open: %m", path);
    size_t cap = 1 << 16, n = 0, k;
    char *buf = ssm_xmalloc(cap);
    while ((k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) { cap *= 2; buf = ssm_xrealloc(buf, cap); }
    }
    if (ferror(f)) ssm_die("%s: read error", path);
    fclose(f);
    *len = n;
    return buf;
}

static int32_t *encode_text(const tokenizer *tk, const char *text, size_t len, const char *what, int64_t vocab, int64_t *n) {
    int32_t *ids;
    if (tk->bpe) {
        char err[512];
        *n = ssm_bpe_encode(tk->bpe, text, len, &ids, err, sizeof err);
        if (*n < 0) ssm_die("%s: %s", what, err);
    } else if (tk->bytes) {
        ids = ssm_xmalloc((len + 1) * sizeof(int32_t));
        for (size_t i = 0; i < len; i++) ids[i] = (unsigned char)text[i];
        *n = (int64_t)len;
    } else {
        ssm_usage_error("%s: this checkpoint's tokenizer is not built in: give --tokenizer tokenizer.json, or --tokens", what);
    }
    for (int64_t i = 0; i < *n; i++)
        if (ids[i] >= vocab) ssm_die("%s: token id %d from the tokenizer is not below the model's vocab_size %lld", what, ids[i], (long long)vocab);
    return ids;
}

/* Writes one generated token: text (its bytes) or its id. */
static void emit_token(FILE *out, const tokenizer *tk, int ids_only, int32_t id, int first) {
    if (ids_only || (!tk->bpe && !tk->bytes)) {
        fprintf(out, first ? "%d" : " %d", id);
    } else if (tk->bpe) {
        size_t len;
        const char *b = ssm_bpe_token_bytes(tk->bpe, id, &len);
        if (b) fwrite(b, 1, len, out);
        else ssm_warn("token id %d has no text in the tokenizer", id);
    } else if (id < 256) {
        fputc(id, out);
    }
    fflush(out);
    if (ferror(out)) ssm_die("%s: write error", ssm_cli.output);
}

/* ---- recurrent state files ------------------------------------------------------------------ */
/* A fingerprint of the weights (FNV-1a over the bits of about 64k evenly spaced parameters and
 * their count), so that a state is not continued with another model of the same shape. */
static uint64_t weights_fingerprint(const ssm_params *ps) {
    int64_t step = ps->total / 65536 + 1;
    uint64_t h = 1469598103934665603ull ^ (uint64_t)ps->total;
    for (int64_t i = 0; i < ps->total; i += step) {
        uint32_t bits;
        memcpy(&bits, &ps->data[i], 4);
        for (int b = 0; b < 4; b++) { h ^= (bits >> (8 * b)) & 0xff; h *= 1099511628211ull; }
    }
    return h;
}

/* Stream: `generate_state` (u8 [0]) with the model's dimensions, the position and the rng;
 * `state.layers.{i}.conv_state` (batch, d_inner, d_conv) and `state.layers.{i}.ssm_state`
 * (batch, d_inner, d_state) f32; `state.logits` (batch, vocab) f32: the next-token logits. */
static void save_state(const char *path, mamba_model *m, const mamba_state *s, const float *logits,
                       int64_t position, const ssm_rng *rng) {
    const mamba_config *c = mamba_get_config(m);
    ssm_buf_sync();   /* the state may be GPU memory (--device cuda) */
    ssm_writer *w = ssm_cli_open_output(path);
    ssm_tensor *h = ssm_tensor_new("generate_state", SSM_U8, 1, (int64_t[]){0});
    mamba_config_to_attrs(c, h);
    ssm_tensor_set_attrf(h, "position", "%lld", (long long)position);
    ssm_tensor_set_attrf(h, "rng", "%016llx", (unsigned long long)rng->state);
    ssm_tensor_set_attrf(h, "weights", "%016llx", (unsigned long long)weights_fingerprint(mamba_params(m)));
    ssm_write_or_die(w, h);
    ssm_tensor_free(h);
    for (int i = 0; i < s->n_layers; i++) {
        char name[128];
        int64_t dc[3] = {s->batch, s->d_inner, s->d_conv}, ds[3] = {s->batch, s->d_inner, s->d_state};
        snprintf(name, sizeof name, "state.layers.%d.conv_state", i);
        ssm_tensor t = {.name = name, .dtype = SSM_F32, .rank = 3, .data = s->conv_state[i]};
        memcpy(t.dims, dc, sizeof dc);
        ssm_write_or_die(w, &t);
        snprintf(name, sizeof name, "state.layers.%d.ssm_state", i);
        memcpy(t.dims, ds, sizeof ds);
        t.data = s->ssm_state[i];
        ssm_write_or_die(w, &t);
    }
    ssm_tensor t = {.name = "state.logits", .dtype = SSM_F32, .rank = 2, .dims = {s->batch, c->vocab_size}, .data = (void *)logits};
    ssm_write_or_die(w, &t);
    ssm_cli_close_output(w);
}

static void copy_f32(const ssm_tensor_set *set, const char *name, int rank, const int64_t *dims, float *dst) {
    ssm_tensor *t = ssm_require(set, name, "f32 state");
    ssm_require_shape(t, rank, dims);
    if (t->dtype != SSM_F32) ssm_die("tensor '%s': dtype %s, expected f32", name, ssm_dtype_name(t->dtype));
    ssm_buf_from_host(dst, t->data, ssm_tensor_nbytes(t));
}

static void load_state(const char *path, mamba_model *m, mamba_state *s, float *logits, int64_t *position,
                       ssm_rng *rng, int keep_rng) {
    const mamba_config *c = mamba_get_config(m);
    ssm_tensor_set set;
    ssm_set_init(&set);
    read_all(path, &set);
    ssm_buf_sync();
    ssm_tensor *h = ssm_require(&set, "generate_state", "u8 [0] with the model's attributes");
    mamba_config saved = mamba_config_from_attrs(h);
    if (saved.d_model != c->d_model || saved.n_layers != c->n_layers || saved.d_state != c->d_state ||
        saved.expand != c->expand || saved.d_conv != c->d_conv || saved.vocab_size != c->vocab_size)
        ssm_die("%s: the state is of another model (d_model %d, n_layers %d, vocab_size %d; this one %d, %d, %d)", path,
                saved.d_model, saved.n_layers, saved.vocab_size, c->d_model, c->n_layers, c->vocab_size);
    const char *pos = ssm_tensor_get_attr(h, "position"), *r = ssm_tensor_get_attr(h, "rng");
    const char *fp = ssm_tensor_get_attr(h, "weights");
    if (!pos || !r || !fp) ssm_die("%s: tensor 'generate_state': missing attribute position, rng or weights", path);
    if (strtoull(fp, NULL, 16) != weights_fingerprint(mamba_params(m)))
        ssm_die("%s: the state is of another model (same shape, other weights)", path);
    *position = strtoll(pos, NULL, 10);
    if (!keep_rng) rng->state = strtoull(r, NULL, 16);
    for (int i = 0; i < s->n_layers; i++) {
        char name[128];
        int64_t dc[3] = {s->batch, s->d_inner, s->d_conv}, ds[3] = {s->batch, s->d_inner, s->d_state};
        snprintf(name, sizeof name, "state.layers.%d.conv_state", i);
        copy_f32(&set, name, 3, dc, s->conv_state[i]);
        snprintf(name, sizeof name, "state.layers.%d.ssm_state", i);
        copy_f32(&set, name, 3, ds, s->ssm_state[i]);
    }
    copy_f32(&set, "state.logits", 2, (int64_t[]){s->batch, c->vocab_size}, logits);
    ssm_set_free(&set);
}

/* S4D (and S4) models: `generate_state` (u8 [0]) with the model's attributes, the position, the
 * rng and the weights fingerprint; `state.layers.{i}.ssm_state` (batch, d_model, modes) c64: the
 * complex state of each channel's modes (S4D: d_state/2 modes, x_m <- Abar_m x_m + Bbar_m u);
 * `state.logits` (batch, vocab) f32: the next-token logits. */
static void save_state_s4d(const char *path, s4d_model *m, const s4d_state *s, const float *logits, int64_t position,
                           const ssm_rng *rng) {
    const s4d_config *c = s4d_get_config(m);
    ssm_writer *w = ssm_cli_open_output(path);
    ssm_tensor *h = ssm_tensor_new("generate_state", SSM_U8, 1, (int64_t[]){0});
    s4d_config_to_attrs(c, h);
    ssm_tensor_set_attrf(h, "position", "%lld", (long long)position);
    ssm_tensor_set_attrf(h, "rng", "%016llx", (unsigned long long)rng->state);
    ssm_tensor_set_attrf(h, "weights", "%016llx", (unsigned long long)weights_fingerprint(s4d_params(m)));
    ssm_write_or_die(w, h);
    ssm_tensor_free(h);
    for (int i = 0; i < s->n_layers; i++) {
        char name[128];
        snprintf(name, sizeof name, "state.layers.%d.ssm_state", i);
        ssm_tensor t = {.name = name, .dtype = SSM_C64, .rank = 3, .dims = {s->batch, s->H, s->S[i] / 2}, .data = s->x[i]};
        ssm_write_or_die(w, &t);
    }
    ssm_tensor t = {.name = "state.logits", .dtype = SSM_F32, .rank = 2, .dims = {s->batch, c->vocab_size}, .data = (void *)logits};
    ssm_write_or_die(w, &t);
    ssm_cli_close_output(w);
}

static void load_state_s4d(const char *path, const char *mine, s4d_model *m, s4d_state *s, float *logits,
                           int64_t *position, ssm_rng *rng, int keep_rng) {
    const s4d_config *c = s4d_get_config(m);
    ssm_tensor_set set;
    ssm_set_init(&set);
    read_all(path, &set);
    ssm_tensor *h = ssm_require(&set, "generate_state", "u8 [0] with the model's attributes");
    const char *kind = ssm_tensor_get_attr(h, "model");
    if (!kind || strcmp(kind, mine))
        ssm_die("%s: the state is of another model (model=%s, this one %s)", path, kind ? kind : "(none)", mine);
    s4d_config saved = s4d_config_from_attrs(h);
    if (saved.d_model != c->d_model || saved.n_layers != c->n_layers || saved.d_state != c->d_state ||
        saved.vocab_size != c->vocab_size)
        ssm_die("%s: the state is of another model (d_model %d, n_layers %d, vocab_size %d; this one %d, %d, %d)", path,
                saved.d_model, saved.n_layers, saved.vocab_size, c->d_model, c->n_layers, c->vocab_size);
    const char *pos = ssm_tensor_get_attr(h, "position"), *r = ssm_tensor_get_attr(h, "rng");
    const char *fp = ssm_tensor_get_attr(h, "weights");
    if (!pos || !r || !fp) ssm_die("%s: tensor 'generate_state': missing attribute position, rng or weights", path);
    if (strtoull(fp, NULL, 16) != weights_fingerprint(s4d_params(m)))
        ssm_die("%s: the state is of another model (same shape, other weights)", path);
    *position = strtoll(pos, NULL, 10);
    if (!keep_rng) rng->state = strtoull(r, NULL, 16);
    for (int i = 0; i < s->n_layers; i++) {
        char name[128];
        snprintf(name, sizeof name, "state.layers.%d.ssm_state", i);
        ssm_tensor *t = ssm_require(&set, name, "c64 state");
        ssm_require_shape(t, 3, (int64_t[]){s->batch, s->H, s->S[i] / 2});
        if (t->dtype != SSM_C64) ssm_die("tensor '%s': dtype %s, expected c64", name, ssm_dtype_name(t->dtype));
        memcpy(s->x[i], t->data, ssm_tensor_nbytes(t));
    }
    copy_f32(&set, "state.logits", 2, (int64_t[]){s->batch, c->vocab_size}, logits);
    ssm_set_free(&set);
}

/* ---- the language model: mamba, or s4d in recurrent mode; its state ------------------------ */
typedef struct {
    mamba_model *mm;
    mamba_state *ms;
    s4d_model *sm;
    s4d_rec *sr;
    s4d_state *ss;
    int64_t V;
    char kind[16];   /* the checkpoint's model= */
} lm;

static lm lm_open(const char *path, const ssm_tensor_set *ckpt, const char *kind) {
    lm g = {0};
    int n_classes;
    snprintf(g.kind, sizeof g.kind, "%s", kind ? kind : "");
    if (kind && strcmp(kind, "mamba") == 0) {
        g.mm = mamba_from_set(ckpt);
        n_classes = mamba_get_config(g.mm)->n_classes;
        g.V = mamba_get_config(g.mm)->vocab_size;
    } else if (kind && (strcmp(kind, "s4d") == 0 || strcmp(kind, "s4") == 0)) {   /* s4: S4's DPLR layers */
        g.sm = s4d_from_set(ckpt);
        n_classes = s4d_get_config(g.sm)->n_classes;
        g.V = s4d_get_config(g.sm)->vocab_size;
    } else {
        ssm_die("%s: model=%s: ssm-generate runs mamba, s4d and s4 models", path, kind ? kind : "(none)");
    }
    if (n_classes > 0) ssm_die("%s: a classification model (n_classes=%d): use --classify", path, n_classes);
    if (g.V <= 0) ssm_die("%s: not a language model (vocab_size=0)", path);
    if (g.mm) g.ms = mamba_state_new(g.mm, 1);
    else { g.sr = s4d_rec_new(g.sm); g.ss = s4d_state_new(g.sr, 1); }
    return g;
}

/* tokens (1, L) from the state; the logits (L, V) are then lm_logits */
static void lm_forward(lm *g, const int32_t *tokens, int L) {
    if (g->mm) mamba_forward(g->mm, tokens, NULL, 1, L, NULL, g->ms);
    else s4d_rec_forward(g->sr, tokens, NULL, 1, L, g->ss);
}
static const float *lm_logits(const lm *g) { return g->mm ? mamba_logits(g->mm) : s4d_rec_logits(g->sr); }

static void lm_save_state(const char *path, lm *g, const float *logits, int64_t position, const ssm_rng *rng) {
    if (g->mm) save_state(path, g->mm, g->ms, logits, position, rng);
    else save_state_s4d(path, g->sm, g->ss, logits, position, rng);
}
static void lm_load_state(const char *path, lm *g, float *logits, int64_t *position, ssm_rng *rng, int keep_rng) {
    if (g->mm) load_state(path, g->mm, g->ms, logits, position, rng, keep_rng);
    else load_state_s4d(path, g->kind, g->sm, g->ss, logits, position, rng, keep_rng);
}
static void lm_free(lm *g) {
    mamba_state_free(g->ms);
    mamba_free(g->mm);
    s4d_state_free(g->ss);
    s4d_rec_free(g->sr);
    s4d_free(g->sm);
}

/* ---- classification ------------------------------------------------------------------------- */
/* Predicts the class of every example of `x` with a mamba or s4d classifier; prints one class id
 * per line; with `y`, the accuracy on stderr. */
static void classify(const options *o, const ssm_tensor_set *ckpt, const char *kind) {
    mamba_model *mm = NULL;
    s4d_model *sm = NULL;
    int vocab, d_input, n_classes;
    if (strcmp(kind, "mamba") == 0) {
        mm = mamba_from_set(ckpt);
        const mamba_config *c = mamba_get_config(mm);
        vocab = c->vocab_size; d_input = c->d_input; n_classes = c->n_classes;
    } else if (strcmp(kind, "s4d") == 0) {
        sm = s4d_from_set(ckpt);
        const s4d_config *c = s4d_get_config(sm);
        vocab = c->vocab_size; d_input = c->d_input; n_classes = c->n_classes;
    } else {
        ssm_die("%s: model=%s: --classify runs mamba and s4d models", o->model, kind);
    }
    if (n_classes <= 0) ssm_die("%s: not a classification model (n_classes=0): use it without --classify", o->model);
    ssm_tensor_set in;
    ssm_set_init(&in);
    read_all(o->classify_input, &in);
    const char *label = strcmp(o->classify_input, "-") ? o->classify_input : "stdin";
    ssm_tensor *x = ssm_set_get(&in, "x");
    if (!x) ssm_die("%s: missing tensor 'x' (count, L) i32 tokens or (count, L, F) f32 features", label);
    int64_t count = x->rank >= 1 ? x->dims[0] : 0, L = x->rank >= 2 ? x->dims[1] : 0;
    int32_t *tokens = NULL;
    float *features = NULL;
    char shape[200];
    ssm_shape_string(x->rank, x->dims, shape, sizeof shape);
    if (vocab > 0) {
        if (x->dtype != SSM_I32 || x->rank != 2)
            ssm_die("%s: tensor 'x': expected i32 tokens (count, L) for this model, got %s %s", label, ssm_dtype_name(x->dtype), shape);
        tokens = x->data;
        for (int64_t i = 0; i < count * L; i++)
            if (tokens[i] < 0 || tokens[i] >= vocab)
                ssm_die("%s: tensor 'x': token %d at %lld is not in [0, %d)", label, tokens[i], (long long)i, vocab);
    } else {
        int ok = (x->rank == 3 && x->dims[2] == d_input) || (x->rank == 2 && d_input == 1);
        if (!ok || !ssm_dtype_is_float(x->dtype))
            ssm_die("%s: tensor 'x': expected float features (count, L, %d) for this model, got %s %s", label, d_input,
                    ssm_dtype_name(x->dtype), shape);
        features = ssm_as_f32(x, 1);
    }
    if (count == 0 || L == 0) ssm_die("%s: tensor 'x': no examples (shape %s)", label, shape);
    ssm_tensor *y = ssm_set_get(&in, "y");
    if (y) {
        if (y->dtype != SSM_I32 || y->rank != 1 || y->dims[0] != count)
            ssm_die("%s: tensor 'y': expected i32 [%lld] class labels", label, (long long)count);
    }
    FILE *out = stdout;
    if (strcmp(ssm_cli.output, "-") != 0 && !(out = fopen(ssm_cli.output, "wb")))
        ssm_die("%s: cannot open for writing: %m", ssm_cli.output);
    int64_t correct = 0;
    double t0 = ssm_now();
    for (int64_t first = 0; first < count; first += o->batch) {
        int nb = (int)(count - first < o->batch ? count - first : o->batch);
        const int32_t *tk = tokens ? tokens + first * L : NULL;
        const float *ft = features ? features + first * L * d_input : NULL;
        const float *lg;
        if (mm) { mamba_forward(mm, tk, ft, nb, (int)L, NULL, NULL); lg = mamba_logits(mm); }
        else { s4d_forward(sm, tk, ft, nb, (int)L, NULL, 0, 0); lg = s4d_logits(sm); }
        for (int b = 0; b < nb; b++) {
            int best = 0;
            for (int k = 1; k < n_classes; k++) if (lg[b * n_classes + k] > lg[b * n_classes + best]) best = k;
            fprintf(out, "%d\n", best);
            if (y && ((int32_t *)y->data)[first + b] == best) correct++;
        }
    }
    double dt = ssm_now() - t0;
    if (out != stdout ? fclose(out) != 0 : fflush(out) != 0) ssm_die("%s: write error", ssm_cli.output);
    if (ssm_cli.verbose >= 0) {
        fprintf(stderr, "ssm-generate: classified %lld examples in %.3f s (%.1f examples/s)", (long long)count, dt, count / (dt > 0 ? dt : 1e-9));
        if (y) fprintf(stderr, "; accuracy %lld/%lld = %.2f%%", (long long)correct, (long long)count, 100.0 * correct / count);
        fputc('\n', stderr);
    }
    if (features) free(features);
    ssm_set_free(&in);
    if (mm) mamba_free(mm);
    if (sm) s4d_free(sm);
}

/* ---- several prompts as one batch ------------------------------------------------------------ */
/* Writes the bytes of a generated text on one line: newline, carriage return and backslash as
 * \n, \r and \\. */
static void put_escaped(FILE *out, const char *b, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (b[i] == '\n') fputs("\\n", out);
        else if (b[i] == '\r') fputs("\\r", out);
        else if (b[i] == '\\') fputs("\\\\", out);
        else fputc(b[i], out);
    }
}

/* The prompts of --prompt/--tokens (given several times) or --prompt-lines, each encoded;
 * returns their count. */
static int read_batch_prompts(const options *o, const tokenizer *tk, int64_t V, int32_t ***ids, int64_t **lens) {
    int cap = 16, n = 0;
    *ids = ssm_xmalloc((size_t)cap * sizeof **ids);
    *lens = ssm_xmalloc((size_t)cap * sizeof **lens);
    char *text = NULL;
    size_t text_len = 0;
    const char *p = NULL, *end = NULL;
    if (o->prompt_lines) {
        text = read_file(o->prompt_lines, &text_len);
        p = text; end = text + text_len;
    }
    for (int k = 0;; k++) {
        int32_t *t;
        int64_t len;
        if (o->prompt_lines) {
            if (p >= end) break;
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *stop = nl ? nl : end;
            size_t L = (size_t)(stop - p);
            if (L > 0 && p[L - 1] == '\r') L--;
            const char *line = p;
            p = nl ? nl + 1 : end;
            if (L == 0) continue;   /* blank lines separate nothing */
            t = encode_text(tk, line, L, o->prompt_lines, V, &len);
            if (len == 0) ssm_die("%s: line %d: empty prompt (at least one token is needed)", o->prompt_lines, k + 1);
        } else {
            if (k == o->n_listed) break;
            const char *what = o->tokens ? "--tokens" : "--prompt";
            if (o->tokens) t = parse_token_list(o->listed[k], V, &len);
            else t = encode_text(tk, o->listed[k], strlen(o->listed[k]), what, V, &len);
            if (len == 0) ssm_usage_error("%s (prompt %d): empty prompt (at least one token is needed)", what, k + 1);
        }
        if (n == cap) {
            cap *= 2;
            *ids = ssm_xrealloc(*ids, (size_t)cap * sizeof **ids);
            *lens = ssm_xrealloc(*lens, (size_t)cap * sizeof **lens);
        }
        (*ids)[n] = t;
        (*lens)[n++] = len;
    }
    free(text);
    if (n == 0) ssm_die("%s: no prompt (every line is empty)", o->prompt_lines);
    return n;
}

/* Batch mode: each prompt is processed alone in parallel mode (its state then copied into its row
 * of a batch state), then every step decodes one token for all of them at once (the weights are
 * read once per step for the whole batch).  Sequence b samples with its own generator (stream
 * b of --seed), so the first prompt gives the tokens it gives alone.  At the end, one line per
 * prompt: its generated text (escaped: put_escaped) or ids. */
static void generate_batch(const options *o, mamba_model *m, const tokenizer *tk, int64_t V, int weights) {
    int32_t **prompts;
    int64_t *lens;
    int B = read_batch_prompts(o, tk, V, &prompts, &lens);
    mamba_state *state = mamba_state_new(m, B), *one = mamba_state_new(m, 1);
    float *next_logits = ssm_xcalloc((size_t)B * V, sizeof(float));
    int64_t n_prompt = 0;
    double t0 = ssm_now();
    for (int b = 0; b < B; b++) {
        mamba_state_reset(one);
        for (int64_t off = 0; off < lens[b]; off += o->chunk) {
            int L = (int)(lens[b] - off < o->chunk ? lens[b] - off : o->chunk);
            mamba_forward(m, prompts[b] + off, NULL, 1, L, NULL, one);
            memcpy(next_logits + (int64_t)b * V, mamba_logits(m) + (int64_t)(L - 1) * V, (size_t)V * sizeof(float));
        }
        int64_t nc = (int64_t)one->d_inner * one->d_conv, ns = (int64_t)one->d_inner * one->d_state;
        ssm_buf_sync();   /* the states may be GPU memory (--device cuda) */
        for (int i = 0; i < one->n_layers; i++) {
            memcpy(state->conv_state[i] + b * nc, one->conv_state[i], (size_t)nc * sizeof(float));
            memcpy(state->ssm_state[i] + b * ns, one->ssm_state[i], (size_t)ns * sizeof(float));
        }
        n_prompt += lens[b];
    }
    double t_prompt = ssm_now() - t0;
    /* the steps: the CPU decode path, or with --device cuda the model itself with L = 1 */
    mamba_decoder *dec = ssm_compute_on_gpu() ? NULL : mamba_decoder_new(m, weights, B, ssm_cli.threads);
    ssm_rng *rng = ssm_xmalloc((size_t)B * sizeof *rng);
    for (int b = 0; b < B; b++) ssm_rng_init(&rng[b], o->seed, SAMPLING_RNG_TAG + (uint64_t)b);
    int32_t *tok = ssm_xmalloc((size_t)B * sizeof(int32_t));
    int32_t *gen = ssm_xmalloc((size_t)(B * (o->n_new > 0 ? o->n_new : 1)) * sizeof(int32_t));
    ssm_sampling_scratch sc = {0};
    t0 = ssm_now();
    for (int64_t k = 0; k < o->n_new; k++) {
        for (int b = 0; b < B; b++) {
            tok[b] = ssm_sample_token(next_logits + (int64_t)b * V, V, &o->sampling, &rng[b], &sc);
            gen[(int64_t)b * o->n_new + k] = tok[b];
        }
        if (k + 1 < o->n_new && dec) mamba_decode_step(dec, tok, B, state, next_logits);
        else if (k + 1 < o->n_new) {
            mamba_forward(m, tok, NULL, B, 1, NULL, state);
            memcpy(next_logits, mamba_logits(m), (size_t)B * V * sizeof(float));
        }
    }
    double t_gen = ssm_now() - t0;
    FILE *out = stdout;
    if (strcmp(ssm_cli.output, "-") != 0 && !(out = fopen(ssm_cli.output, "wb")))
        ssm_die("%s: cannot open for writing: %m", ssm_cli.output);
    for (int b = 0; b < B; b++) {
        for (int64_t k = 0; k < o->n_new; k++) {
            int32_t id = gen[(int64_t)b * o->n_new + k];
            if (o->ids || (!tk->bpe && !tk->bytes)) {
                fprintf(out, k ? " %d" : "%d", id);
            } else if (tk->bpe) {
                size_t len;
                const char *bytes = ssm_bpe_token_bytes(tk->bpe, id, &len);
                if (bytes) put_escaped(out, bytes, len);
            } else if (id < 256) {
                char c = (char)id;
                put_escaped(out, &c, 1);
            }
        }
        fputc('\n', out);
    }
    if (out != stdout ? fclose(out) != 0 : fflush(out) != 0) ssm_die("%s: write error", ssm_cli.output);
    if (ssm_cli.verbose >= 0)
        fprintf(stderr, "ssm-generate: %d prompts, %lld tokens in %.3f s (%.1f tokens/s); generated %d x %lld tokens in %.3f s "
                "(%.1f tokens/s in all, %s weights)\n", B, (long long)n_prompt, t_prompt, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9),
                B, (long long)o->n_new, t_gen, B * o->n_new / (t_gen > 0 ? t_gen : 1e-9), weights == SSM_BF16 ? "bf16" : "f32");
    ssm_sampling_scratch_free(&sc);
    for (int b = 0; b < B; b++) free(prompts[b]);
    free(prompts); free(lens); free(next_logits); free(rng); free(tok); free(gen);
    if (dec) mamba_decoder_free(dec);
    mamba_state_free(one);
    mamba_state_free(state);
}

/* ---- main ------------------------------------------------------------------------------------ */
int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-generate", usage);
    options o;
    parse_options(argc, argv, &o);

    if (o.on_gpu) ssm_compute_use_gpu();   /* before the model is allocated; exit 1 without a GPU */
    ssm_tensor_set ckpt;
    load_checkpoint(&o, &ckpt);
    ssm_tensor *cfg = ssm_require(&ckpt, "config", "u8 [0] holding the model's attributes");
    const char *kind = ssm_tensor_get_attr(cfg, "model");
    if (o.classify) {
        classify(&o, &ckpt, kind ? kind : "(none)");
        ssm_set_free(&ckpt);
        return 0;
    }
    lm g = lm_open(o.model, &ckpt, kind);
    int64_t V = g.V;

    tokenizer tk = {0};
    const char *tok_kind = ssm_tensor_get_attr(cfg, "tokenizer");
    if (o.tokenizer) {
        char err[1024];
        tk.bpe = ssm_bpe_load(o.tokenizer, err, sizeof err);
        if (!tk.bpe) ssm_die("%s", err);
    } else if (tok_kind && strcmp(tok_kind, "bytes") == 0) {
        if (V < 256) ssm_die("%s: tokenizer=bytes needs vocab_size >= 256, got %lld", o.model, (long long)V);
        tk.bytes = 1;
    }
    ssm_set_free(&ckpt);
    int weights = o.weights >= 0 ? o.weights : checkpoint_bf16 ? SSM_BF16 : SSM_F32;
    if (o.on_gpu && o.weights == SSM_BF16) ssm_usage_error("--weights bf16: not on the GPU yet (--device cuda runs float32 weights)");
    if (o.on_gpu) weights = SSM_F32;
    if (!g.mm && o.weights == SSM_BF16) ssm_usage_error("--weights bf16: only mamba models have a bf16 decode path so far");
    if (o.n_listed > 1 || o.prompt_lines) {
        if (!g.mm) ssm_usage_error("several prompts: batches run mamba models only so far (not %s)", g.kind);
        generate_batch(&o, g.mm, &tk, V, weights);
        lm_free(&g);
        ssm_bpe_free(tk.bpe);
        return 0;
    }

    /* the prompt */
    int64_t n_prompt = 0;
    int32_t *prompt = NULL;
    if (o.tokens) prompt = parse_token_list(o.tokens, V, &n_prompt);
    else if (o.prompt) {
        if (!o.prompt[0]) ssm_usage_error("--prompt: empty prompt (at least one token is needed)");
        prompt = encode_text(&tk, o.prompt, strlen(o.prompt), "--prompt", V, &n_prompt);
    } else if (o.prompt_file) {
        size_t len;
        char *text = read_file(o.prompt_file, &len);
        if (len == 0) ssm_die("%s: empty prompt (at least one token is needed)", o.prompt_file);
        prompt = encode_text(&tk, text, len, o.prompt_file, V, &n_prompt);
        free(text);
    }
    if ((o.prompt || o.prompt_file || o.tokens) && n_prompt == 0)
        ssm_usage_error("%s: empty prompt (at least one token is needed)",
                        o.tokens ? "--tokens" : o.prompt ? "--prompt" : o.prompt_file);
    if (o.logits_out && n_prompt == 0) ssm_usage_error("--logits-out needs a prompt");
    if (ssm_cli.verbose > 0) {
        fprintf(stderr, "ssm-generate: prompt tokens:");
        for (int64_t i = 0; i < n_prompt; i++) fprintf(stderr, " %d", prompt[i]);
        fputc('\n', stderr);
    }

    float *next_logits = ssm_xcalloc((size_t)V, sizeof(float));
    ssm_rng rng;
    ssm_rng_init(&rng, o.seed, SAMPLING_RNG_TAG);
    int64_t position = 0;
    if (o.state_in) lm_load_state(o.state_in, &g, next_logits, &position, &rng, o.seed_given);

    /* prompt in parallel mode, in chunks that carry the state */
    float *all_logits = o.logits_out ? ssm_xmalloc((size_t)(n_prompt * V) * sizeof(float)) : NULL;
    double t0 = ssm_now();
    for (int64_t off = 0; off < n_prompt; off += o.chunk) {
        int L = (int)(n_prompt - off < o.chunk ? n_prompt - off : o.chunk);
        lm_forward(&g, prompt + off, L);
        const float *lg = lm_logits(&g);
        if (all_logits) memcpy(all_logits + off * V, lg, (size_t)L * V * sizeof(float));
        memcpy(next_logits, lg + (int64_t)(L - 1) * V, (size_t)V * sizeof(float));
    }
    double t_prompt = ssm_now() - t0;
    position += n_prompt;
    if (o.logits_out) {
        ssm_writer *w = ssm_cli_open_output(o.logits_out);
        ssm_tensor t = {.name = "logits", .dtype = SSM_F32, .rank = 2, .dims = {n_prompt, V}, .data = all_logits};
        ssm_write_or_die(w, &t);
        ssm_cli_close_output(w);
    }

    /* recurrent generation */
    FILE *out = stdout;
    if (strcmp(ssm_cli.output, "-") != 0) {
        out = fopen(ssm_cli.output, "wb");
        if (!out) ssm_die("%s: cannot open for writing: %m", ssm_cli.output);
    }
    ssm_sampling_scratch sc = {0};
    /* the recurrent steps: Mamba through its decode path, S4D/S4 through the model's step */
    mamba_decoder *dec = g.mm && !o.on_gpu ? mamba_decoder_new(g.mm, weights, 1, ssm_cli.threads) : NULL;
    if (ssm_cli.verbose > 0) fprintf(stderr, "ssm-generate: recurrent steps with %s weights\n", weights == SSM_BF16 ? "bf16" : "f32");
    t0 = ssm_now();
    for (int64_t k = 0; k < o.n_new; k++) {
        int32_t tok = ssm_sample_token(next_logits, V, &o.sampling, &rng, &sc);
        emit_token(out, &tk, o.ids, tok, k == 0);
        if (k + 1 < o.n_new || o.state_out) {
            if (dec) mamba_decode_step(dec, &tok, 1, g.ms, next_logits);
            else {
                lm_forward(&g, &tok, 1);
                memcpy(next_logits, lm_logits(&g), (size_t)V * sizeof(float));
            }
            position++;
        }
    }
    double t_gen = ssm_now() - t0;
    if (o.n_new > 0 && (o.ids || (!tk.bpe && !tk.bytes))) fputc('\n', out);
    if (out != stdout ? fclose(out) != 0 : fflush(out) != 0) ssm_die("%s: write error", ssm_cli.output);
    if (o.state_out) lm_save_state(o.state_out, &g, next_logits, position, &rng);

    if (ssm_cli.verbose >= 0) {
        fprintf(stderr, "ssm-generate: prompt %lld tokens in %.3f s (%.1f tokens/s); generated %lld tokens in %.3f s (%.1f tokens/s)\n",
                (long long)n_prompt, t_prompt, n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), (long long)o.n_new, t_gen,
                o.n_new / (t_gen > 0 ? t_gen : 1e-9));
    }
    ssm_sampling_scratch_free(&sc);
    free(all_logits);
    free(next_logits);
    free(prompt);
    if (dec) mamba_decoder_free(dec);
    lm_free(&g);
    ssm_bpe_free(tk.bpe);
    return 0;
}
