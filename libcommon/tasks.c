/* tasks.c - the tasks of ssm-train (see tasks.h). */
#include "tasks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cli.h"
#include "hippo.h"
#include "params.h"
#include "stream.h"

enum { T_SELCOPY, T_INDUCTION, T_FMNIST, T_TEXT, T_STREAM };

struct ssm_task {
    int kind;
    char name[32];
    int vocab, d_input, classes, out_vocab, L, copy_tokens, permuted;
    int64_t n_train, n_eval;
    /* data sets: train rows then eval rows */
    uint8_t *pix;                  /* fmnist (n, 784) */
    uint8_t *labels;               /* fmnist (n) */
    int32_t *perm_pixels;          /* fmnist-permuted */
    uint8_t *text;                 /* text */
    int64_t text_len, text_split;
    int32_t *x_tok;                /* stream (count, L) */
    float *x_feat;                 /* stream (count, L, F) */
    int32_t *y;                    /* stream (count) or (count, L) */
    int y_per_token;
    /* the current epoch's shuffle */
    int64_t perm_epoch;
    uint64_t perm_seed;
    int64_t *perm;
};

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static uint8_t *read_idx(const char *dir, const char *file, int want_rank, int64_t *n, int64_t *item) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    gzFile f = gzopen(path, "rb");
    if (!f) ssm_die("%s: cannot open: %s (install Debian's dataset-fashion-mnist, or give --data-dir)", path, strerror(errno));
    unsigned char h[16];
    int hl = 4 + 4 * want_rank;
    if (gzread(f, h, (unsigned)hl) != hl) ssm_die("%s: truncated IDX header", path);
    if (h[0] || h[1] || h[2] != 8 || h[3] != want_rank) ssm_die("%s: not an IDX file of rank %d unsigned bytes", path, want_rank);
    int64_t dims[3];
    for (int i = 0; i < want_rank; i++)
        dims[i] = ((int64_t)h[4 + 4 * i] << 24) | (h[5 + 4 * i] << 16) | (h[6 + 4 * i] << 8) | h[7 + 4 * i];
    *n = dims[0];
    *item = want_rank == 3 ? dims[1] * dims[2] : 1;
    size_t bytes = (size_t)(*n * *item);
    uint8_t *buf = ssm_xmalloc(bytes + 1);
    size_t got = 0;
    while (got < bytes) {
        int k = gzread(f, buf + got, (unsigned)(bytes - got > (1u << 30) ? (1u << 30) : bytes - got));
        if (k <= 0) ssm_die("%s: truncated IDX data", path);
        got += (size_t)k;
    }
    gzclose(f);
    return buf;
}

static void open_fmnist(ssm_task *t, const ssm_task_options *o) {
    const char *dir = o->data_dir ? o->data_dir : FMNIST_DIR;
    int64_t ntr, nte, it, one, nl;
    uint8_t *ptr = read_idx(dir, "train-images-idx3-ubyte.gz", 3, &ntr, &it);
    uint8_t *pte = read_idx(dir, "t10k-images-idx3-ubyte.gz", 3, &nte, &one);
    if (it != 784 || one != 784) ssm_die("%s: expected 28x28 images", dir);
    uint8_t *ltr = read_idx(dir, "train-labels-idx1-ubyte.gz", 1, &nl, &one);
    if (nl != ntr) ssm_die("%s: %lld training labels for %lld images", dir, (long long)nl, (long long)ntr);
    uint8_t *lte = read_idx(dir, "t10k-labels-idx1-ubyte.gz", 1, &nl, &one);
    if (nl != nte) ssm_die("%s: %lld test labels for %lld images", dir, (long long)nl, (long long)nte);
    t->pix = ssm_xmalloc((size_t)(ntr + nte) * 784);
    memcpy(t->pix, ptr, (size_t)ntr * 784);
    memcpy(t->pix + ntr * 784, pte, (size_t)nte * 784);
    t->labels = ssm_xmalloc((size_t)(ntr + nte));
    memcpy(t->labels, ltr, (size_t)ntr);
    memcpy(t->labels + ntr, lte, (size_t)nte);
    for (int64_t i = 0; i < ntr + nte; i++)
        if (t->labels[i] > 9) ssm_die("%s: label %d out of range", dir, t->labels[i]);
    free(ptr); free(pte); free(ltr); free(lte);
    t->n_train = ntr; t->n_eval = nte;
    t->L = 784; t->d_input = 1; t->classes = 10;
    if (t->permuted) {
        t->perm_pixels = ssm_xmalloc(784 * sizeof(int32_t));
        for (int i = 0; i < 784; i++) t->perm_pixels[i] = i;
        ssm_rng r;
        ssm_rng_init(&r, 1234, 0);
        for (int i = 783; i > 0; i--) {
            int j = (int)(ssm_rng_next(&r) % (uint64_t)(i + 1));
            int32_t s = t->perm_pixels[i]; t->perm_pixels[i] = t->perm_pixels[j]; t->perm_pixels[j] = s;
        }
    }
}

static void open_text(ssm_task *t, const ssm_task_options *o) {
    if (!o->file) ssm_usage_error("--task text needs a FILE (--task text:FILE or --data FILE)");
    FILE *f = fopen(o->file, "rb");
    if (!f) ssm_die("%s: cannot open: %s", o->file, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    t->text = ssm_xmalloc(cap);
    for (;;) {
        if (n == cap) t->text = ssm_xrealloc(t->text, cap *= 2);
        size_t k = fread(t->text + n, 1, cap - n, f);
        if (k == 0) break;
        n += k;
    }
    if (ferror(f)) ssm_die("%s: read error: %s", o->file, strerror(errno));
    fclose(f);
    t->text_len = (int64_t)n;
    t->text_split = t->text_len * 9 / 10;
    t->L = o->seq_len ? o->seq_len : 256;
    if (t->text_split < t->L + 1 || t->text_len - t->text_split < t->L + 1)
        ssm_die("%s: %lld bytes is too short for windows of %d bytes (90%%/10%% split)", o->file, (long long)n, t->L);
    t->vocab = t->out_vocab = 256;
    t->n_train = 0;
    t->n_eval = (t->text_len - t->text_split) / (t->L + 1);
    if (t->n_eval > 512) t->n_eval = 512;
}

static void open_stream(ssm_task *t, const ssm_task_options *o) {
    if (!o->file) ssm_usage_error("--task stream needs a FILE");
    ssm_reader *r = ssm_cli_open_input(o->file);
    ssm_tensor_set set;
    ssm_set_init(&set);
    ssm_tensor *h;
    while (ssm_next_or_die(r, &h)) {
        if (strcmp(h->name, "x") && strcmp(h->name, "y")) { if (ssm_reader_skip(r)) ssm_die("%s", ssm_reader_error(r)); continue; }
        ssm_tensor *full = ssm_tensor_new_header(h);
        ssm_read_payload_or_die(r, full);
        ssm_set_put(&set, full);
    }
    ssm_reader_close(r);
    ssm_tensor *x = ssm_require(&set, "x", "i32 [count, L] or f32 [count, L, F]");
    ssm_tensor *y = ssm_require(&set, "y", "i32 [count] or [count, L]");
    if (x->rank < 2 || x->rank > 3 || x->dims[0] < 2) ssm_die("%s: tensor 'x': expected [count >= 2, L] or [count, L, F]", o->file);
    int64_t count = x->dims[0];
    t->L = (int)x->dims[1];
    if (x->rank == 2) {
        if (ssm_dtype_is_float(x->dtype) || ssm_dtype_is_complex(x->dtype)) ssm_die("%s: tensor 'x': 2-D x must hold integer tokens", o->file);
        ssm_tensor *c = ssm_tensor_convert(x, SSM_I32);
        if (!c) ssm_die("%s: tensor 'x': tokens do not fit i32", o->file);
        t->x_tok = ssm_xmalloc((size_t)(count * t->L) * sizeof(int32_t));
        memcpy(t->x_tok, c->data, (size_t)(count * t->L) * sizeof(int32_t));
        ssm_tensor_free(c);
        int32_t mx = 0;
        for (int64_t i = 0; i < count * t->L; i++) {
            if (t->x_tok[i] < 0) ssm_die("%s: tensor 'x': negative token %d", o->file, t->x_tok[i]);
            if (t->x_tok[i] > mx) mx = t->x_tok[i];
        }
        t->vocab = mx + 1;
    } else {
        t->d_input = (int)x->dims[2];
        t->x_feat = ssm_as_f32(x, 1);
    }
    if (ssm_dtype_is_float(y->dtype) || ssm_dtype_is_complex(y->dtype)) ssm_die("%s: tensor 'y': regression targets are not supported yet; give i32 class ids", o->file);
    if (y->dims[0] != count || y->rank > 2 || (y->rank == 2 && y->dims[1] != t->L))
        ssm_die("%s: tensor 'y': expected [%lld] or [%lld, %d]", o->file, (long long)count, (long long)count, t->L);
    ssm_tensor *yc = ssm_tensor_convert(y, SSM_I32);
    if (!yc) ssm_die("%s: tensor 'y': targets do not fit i32", o->file);
    int64_t ny = ssm_tensor_numel(yc);
    t->y = ssm_xmalloc((size_t)ny * sizeof(int32_t));
    memcpy(t->y, yc->data, (size_t)ny * sizeof(int32_t));
    ssm_tensor_free(yc);
    int32_t ymax = 0;
    for (int64_t i = 0; i < ny; i++) {
        if (t->y[i] < -1) ssm_die("%s: tensor 'y': target %d (class ids >= 0, -1 = ignored)", o->file, t->y[i]);
        if (t->y[i] > ymax) ymax = t->y[i];
    }
    t->y_per_token = y->rank == 2;
    if (t->y_per_token) {
        t->out_vocab = ymax + 1;
        if (t->vocab == 0) ssm_die("%s: per-token targets need token input x [count, L]", o->file);
        if (t->out_vocab > t->vocab) t->vocab = t->out_vocab;
        t->out_vocab = t->vocab;
    } else {
        t->classes = ymax + 1;
        if (t->classes < 2) t->classes = 2;
    }
    t->n_eval = count / 10 > 0 ? count / 10 : 1;
    t->n_train = count - t->n_eval;
    ssm_set_free(&set);
}

ssm_task *ssm_task_open(const char *name, const ssm_task_options *o) {
    ssm_task *t = ssm_xcalloc(1, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->perm_epoch = -1;
    if (strcmp(name, "selective-copy") == 0) {
        t->kind = T_SELCOPY;
        t->vocab = t->out_vocab = o->vocab ? o->vocab : 16;
        t->copy_tokens = o->copy_tokens ? o->copy_tokens : 16;
        int sl = o->seq_len ? o->seq_len : 256;
        if (t->vocab < 3) ssm_usage_error("--vocab: selective-copy needs at least 3 tokens (blank, data, marker)");
        if (t->copy_tokens > sl) ssm_usage_error("--copy-tokens %d is more than --seq-len %d", t->copy_tokens, sl);
        t->L = sl + t->copy_tokens;
        t->n_eval = 1024;
    } else if (strcmp(name, "induction") == 0) {
        t->kind = T_INDUCTION;
        t->vocab = t->out_vocab = o->vocab ? o->vocab : 16;
        t->L = o->seq_len ? o->seq_len : 256;
        if (t->vocab < 3) ssm_usage_error("--vocab: induction needs at least 3 tokens");
        if (t->L < 4) ssm_usage_error("--seq-len: induction needs at least 4 steps");
        t->n_eval = 1024;
    } else if (strcmp(name, "fmnist") == 0 || strcmp(name, "fmnist-permuted") == 0) {
        t->kind = T_FMNIST;
        t->permuted = strcmp(name, "fmnist-permuted") == 0;
        open_fmnist(t, o);
    } else if (strcmp(name, "text") == 0) {
        t->kind = T_TEXT;
        open_text(t, o);
    } else if (strcmp(name, "stream") == 0) {
        t->kind = T_STREAM;
        open_stream(t, o);
    } else {
        ssm_usage_error("--task: unknown task '%s' (selective-copy, induction, fmnist, fmnist-permuted, text, stream)", name);
    }
    return t;
}

void ssm_task_free(ssm_task *t) {
    if (!t) return;
    free(t->pix); free(t->labels); free(t->perm_pixels); free(t->text); free(t->x_tok); free(t->x_feat);
    free(t->y); free(t->perm);
    free(t);
}

const char *ssm_task_name(const ssm_task *t) { return t->name; }
int ssm_task_vocab(const ssm_task *t) { return t->vocab; }
int ssm_task_d_input(const ssm_task *t) { return t->d_input; }
int ssm_task_classes(const ssm_task *t) { return t->classes; }
int ssm_task_out_vocab(const ssm_task *t) { return t->out_vocab; }
int ssm_task_length(const ssm_task *t) { return t->L; }
int64_t ssm_task_train_size(const ssm_task *t) { return t->n_train; }
int64_t ssm_task_eval_size(const ssm_task *t) { return t->n_eval; }

void ssm_task_describe(const ssm_task *t, char *buf, int n) {
    switch (t->kind) {
    case T_SELCOPY: snprintf(buf, (size_t)n, "seq_len=%d copy_tokens=%d vocab=%d", t->L - t->copy_tokens, t->copy_tokens, t->vocab); break;
    case T_INDUCTION: snprintf(buf, (size_t)n, "seq_len=%d vocab=%d", t->L, t->vocab); break;
    case T_TEXT: snprintf(buf, (size_t)n, "seq_len=%d bytes=%lld", t->L, (long long)t->text_len); break;
    default: snprintf(buf, (size_t)n, "L=%d train=%lld eval=%lld", t->L, (long long)t->n_train, (long long)t->n_eval);
    }
}

/* A generator for one example: a distinct stream for every (seed, split, example). */
static void example_rng(ssm_rng *r, uint64_t seed, int split, int64_t ex) {
    ssm_rng_init(r, seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)split << 62) ^ (uint64_t)ex * 0xd6e8feb86659fd93ull, 0);
    ssm_rng_next(r);
}

static void gen_selective_copy(const ssm_task *t, ssm_rng *r, int32_t *tok, int32_t *tgt) {
    int sl = t->L - t->copy_tokens, k = t->copy_tokens;
    for (int i = 0; i < t->L; i++) { tok[i] = 0; tgt[i] = -1; }
    /* k distinct positions in [0, sl), in increasing order: choose by selection sampling */
    int chosen = 0;
    for (int i = 0; i < sl && chosen < k; i++) {
        if (ssm_rng_uniform(r) * (sl - i) < (k - chosen)) {
            int32_t v = 1 + (int32_t)(ssm_rng_next(r) % (uint64_t)(t->vocab - 2));
            tok[i] = v;
            tgt[sl + chosen] = v;
            chosen++;
        }
    }
    for (int j = 0; j < k; j++) tok[sl + j] = t->vocab - 1;
}

static void gen_induction(const ssm_task *t, ssm_rng *r, int32_t *tok, int32_t *tgt) {
    int L = t->L, V = t->vocab;
    for (int i = 0; i < L; i++) { tok[i] = (int32_t)(ssm_rng_next(r) % (uint64_t)(V - 1)); tgt[i] = -1; }
    int p = (int)(ssm_rng_next(r) % (uint64_t)(L - 2));    /* trigger at p, key at p + 1 < L - 1 */
    tok[p] = V - 1;
    tok[L - 1] = V - 1;
    tgt[L - 1] = tok[p + 1];
}

static void shuffle_for_epoch(ssm_task *t, uint64_t seed, int64_t epoch) {
    if (t->perm && t->perm_epoch == epoch && t->perm_seed == seed) return;
    if (!t->perm) t->perm = ssm_xmalloc((size_t)t->n_train * sizeof(int64_t));
    for (int64_t i = 0; i < t->n_train; i++) t->perm[i] = i;
    ssm_rng r;
    example_rng(&r, seed, 2, epoch);
    for (int64_t i = t->n_train - 1; i > 0; i--) {
        int64_t j = (int64_t)(ssm_rng_next(&r) % (uint64_t)(i + 1));
        int64_t s = t->perm[i]; t->perm[i] = t->perm[j]; t->perm[j] = s;
    }
    t->perm_epoch = epoch;
    t->perm_seed = seed;
}

void ssm_task_examples(ssm_task *t, int split, uint64_t seed, int64_t first, int count,
                       int32_t *tokens, float *features, int32_t *targets) {
    int L = t->L;
    for (int i = 0; i < count; i++) {
        int64_t ex = first + i;
        int32_t *tok = tokens ? tokens + (int64_t)i * L : NULL;
        int32_t *tgt_tok = targets + (int64_t)i * L;
        ssm_rng r;
        switch (t->kind) {
        case T_SELCOPY:
            example_rng(&r, seed, split, ex);
            gen_selective_copy(t, &r, tok, tgt_tok);
            break;
        case T_INDUCTION:
            example_rng(&r, seed, split, ex);
            gen_induction(t, &r, tok, tgt_tok);
            break;
        case T_TEXT: {
            int64_t start;
            if (split == 0) {
                example_rng(&r, seed, split, ex);
                start = (int64_t)(ssm_rng_next(&r) % (uint64_t)(t->text_split - L));
            } else {
                start = t->text_split + (ex % t->n_eval) * (L + 1);
            }
            for (int j = 0; j < L; j++) { tok[j] = t->text[start + j]; tgt_tok[j] = t->text[start + j + 1]; }
            break;
        }
        case T_FMNIST:
        case T_STREAM: {
            int64_t row;
            if (split == 0) {
                shuffle_for_epoch(t, seed, ex / t->n_train);
                row = t->perm[ex % t->n_train];
            } else {
                row = t->n_train + ex % t->n_eval;
            }
            if (t->kind == T_FMNIST) {
                const uint8_t *px = t->pix + row * 784;
                float *f = features + (int64_t)i * 784;
                /* mean 0.2860, std 0.3530 of Fashion-MNIST's training pixels */
                for (int j = 0; j < 784; j++) {
                    int src = t->perm_pixels ? t->perm_pixels[j] : j;
                    f[j] = ((float)px[src] / 255.0f - 0.2860f) / 0.3530f;
                }
                targets[i] = t->labels[row];
            } else {
                if (t->x_tok) memcpy(tok, t->x_tok + row * L, (size_t)L * sizeof(int32_t));
                else memcpy(features + (int64_t)i * L * t->d_input, t->x_feat + row * L * t->d_input,
                            (size_t)L * t->d_input * sizeof(float));
                if (t->y_per_token) memcpy(tgt_tok, t->y + row * L, (size_t)L * sizeof(int32_t));
                else targets[i] = t->y[row];
            }
            break;
        }
        }
    }
}
