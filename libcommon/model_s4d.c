/* model_s4d.c - the S4D model: parameters, init, forward and backward (see model_s4d.h).
 *
 * One layer on M = batch * L rows (token-major (batch, L, H) except where noted):
 *     xn = LayerNorm(h);  xt = transpose(xn) (batch, H, L)
 *     K  = s4d_kernel(log_dt, A, B, C) (H, L);  yt = K * xt + D xt (batch, H, L);  ys = transpose(yt)
 *     g  = GELU(ys);  gd = dropout(g);  o = gd @ out_proj^T + b (M, 2H);  h += GLU(o)
 */
#include "model_s4d.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hippo.h"
#include "nn.h"
#include "s4d_ops.h"
#include "ssm_kernel.h"

typedef struct { int norm_w, norm_b, log_dt, A_re, A_im, B, C, D, out_w, out_b; } s4d_layer_index;
typedef struct { float *h_in, *mean, *rstd, *xn, *xt, *K, *A, *yt, *ys, *g, *gd, *o; } s4d_layer_acts;

struct s4d_model {
    s4d_config c;
    int M;                /* complex modes */
    int n_out;
    ssm_params ps;
    int emb, enc_w, enc_b, dec_w, dec_b;
    s4d_layer_index *li;
    int64_t cap_rows, cap_batch;
    s4d_layer_acts *acts;
    float *h_out, *pooled, *logits, *probs, *glu;
    float *dh, *dglu_o, *dgd, *dg, *dys, *dyt, *dxt, *dxn, *dK, *dA, *dlogits, *dpooled, *dfeat;
    float *sdlog_dt, *sdB, *sdC, *sdD;
    unsigned char *drop_mask;   /* (n_layers, rows, H): the dropout masks of the last training forward */
    s4d_workspace *ws;          /* scratch of the fused convolution passes (s4d_ops.h) */
    int batch, L, has_targets, training;
    uint64_t dropout_seed;
    const int32_t *tokens;
    const float *features;
    int32_t *targets;
    int64_t correct, counted;
};

s4d_config s4d_config_default(void) {
    s4d_config c = {0};
    c.d_model = 64; c.n_layers = 4; c.d_state = 64; c.vocab_size = 0; c.d_input = 1; c.n_classes = 0;
    c.pool_last = 0; c.dropout = 0.0f; c.dt_min = 0.001f; c.dt_max = 0.1f;
    return c;
}

void s4d_config_to_attrs(const s4d_config *c, ssm_tensor *t) {
    ssm_tensor_set_attr(t, "model", "s4d");
    ssm_tensor_set_attrf(t, "d_model", "%d", c->d_model);
    ssm_tensor_set_attrf(t, "n_layers", "%d", c->n_layers);
    ssm_tensor_set_attrf(t, "d_state", "%d", c->d_state);
    ssm_tensor_set_attrf(t, "vocab_size", "%d", c->vocab_size);
    ssm_tensor_set_attrf(t, "d_input", "%d", c->d_input);
    ssm_tensor_set_attrf(t, "n_classes", "%d", c->n_classes);
    ssm_tensor_set_attr(t, "pool", c->pool_last ? "last" : "mean");
    ssm_tensor_set_attrf(t, "dropout", "%.9g", c->dropout);
}

s4d_config s4d_config_from_attrs(const ssm_tensor *t) {
    const char *model = ssm_tensor_get_attr(t, "model");
    if (!model || strcmp(model, "s4d")) ssm_die("tensor '%s': model=%s, expected s4d", t->name, model ? model : "(none)");
    s4d_config c = s4d_config_default();
    c.d_model = ssm_tensor_attr_count(t, "d_model", 0, 1);
    c.n_layers = ssm_tensor_attr_count(t, "n_layers", 0, 1);
    c.d_state = ssm_tensor_attr_count(t, "d_state", 0, 1);
    c.vocab_size = ssm_tensor_attr_count(t, "vocab_size", 0, 1);
    c.d_input = ssm_tensor_attr_count(t, "d_input", 1, 0);
    c.n_classes = ssm_tensor_attr_count(t, "n_classes", 0, 0);
    const char *p = ssm_tensor_get_attr(t, "pool");
    c.pool_last = p && strcmp(p, "last") == 0;
    const char *d = ssm_tensor_get_attr(t, "dropout");
    if (d) c.dropout = strtof(d, NULL);
    return c;
}

s4d_model *s4d_new(const s4d_config *cfg) {
    s4d_config c = *cfg;
    if (c.d_model < 1 || c.n_layers < 1 || c.d_state < 2 || c.d_state % 2)
        ssm_die("s4d: bad config (d_model %d, n_layers %d, d_state %d: an even state size >= 2)", c.d_model, c.n_layers, c.d_state);
    if (c.vocab_size == 0 && c.d_input < 1) ssm_die("s4d: need vocab_size or d_input");
    if (c.vocab_size == 0 && c.n_classes == 0) ssm_die("s4d: feature input needs a classification head");
    if (c.dropout < 0 || c.dropout >= 1) ssm_die("s4d: dropout %g not in [0, 1)", c.dropout);
    s4d_model *m = ssm_xcalloc(1, sizeof *m);
    m->c = c;
    int64_t H = c.d_model, Mm = c.d_state / 2;
    m->M = (int)Mm;
    m->n_out = c.n_classes > 0 ? c.n_classes : c.vocab_size;
    ssm_params *ps = &m->ps;
    ssm_params_init(ps);
    m->emb = m->enc_w = m->enc_b = -1;
    if (c.vocab_size > 0) m->emb = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){c.vocab_size, H}, "embedding.weight");
    else {
        m->enc_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){H, c.d_input}, "encoder.weight");
        m->enc_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){H}, "encoder.bias");
    }
    m->li = ssm_xcalloc((size_t)c.n_layers, sizeof *m->li);
    for (int i = 0; i < c.n_layers; i++) {
        s4d_layer_index *l = &m->li[i];
        l->norm_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){H}, "layers.%d.norm.weight", i);
        l->norm_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){H}, "layers.%d.norm.bias", i);
        l->log_dt = ssm_params_add(ps, SSM_F32, SSM_GROUP_SSM, 1, (int64_t[]){H}, "layers.%d.ssm.log_dt", i);
        l->A_re = ssm_params_add(ps, SSM_F32, SSM_GROUP_SSM, 2, (int64_t[]){H, Mm}, "layers.%d.ssm.A_real_log", i);
        l->A_im = ssm_params_add(ps, SSM_F32, SSM_GROUP_SSM, 2, (int64_t[]){H, Mm}, "layers.%d.ssm.A_imag", i);
        l->B = ssm_params_add(ps, SSM_C64, SSM_GROUP_SSM, 2, (int64_t[]){H, Mm}, "layers.%d.ssm.B", i);
        l->C = ssm_params_add(ps, SSM_C64, SSM_GROUP_DECAY, 2, (int64_t[]){H, Mm}, "layers.%d.ssm.C", i);
        l->D = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){H}, "layers.%d.ssm.D", i);
        l->out_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){2 * H, H}, "layers.%d.out_proj.weight", i);
        l->out_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){2 * H}, "layers.%d.out_proj.bias", i);
    }
    m->dec_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){m->n_out, H}, "decoder.weight");
    m->dec_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){m->n_out}, "decoder.bias");
    ssm_params_alloc(ps);
    return m;
}

static void free_acts(s4d_model *m) {
    if (!m->acts) return;
    for (int i = 0; i < m->c.n_layers; i++) {
        s4d_layer_acts *a = &m->acts[i];
        float *b[] = {a->h_in, a->mean, a->rstd, a->xn, a->xt, a->K, a->A, a->yt, a->ys, a->g, a->gd, a->o};
        for (size_t k = 0; k < sizeof b / sizeof *b; k++) free(b[k]);
    }
    free(m->acts);
    m->acts = NULL;
    float *b[] = {m->h_out, m->pooled, m->logits, m->probs, m->glu, m->dh, m->dglu_o, m->dgd, m->dg, m->dys, m->dyt,
                  m->dxt, m->dxn, m->dK, m->dA, m->dlogits, m->dpooled, m->dfeat, m->sdlog_dt, m->sdB, m->sdC, m->sdD};
    for (size_t k = 0; k < sizeof b / sizeof *b; k++) free(b[k]);
    free(m->targets);
    m->targets = NULL;
    free(m->drop_mask);
    m->drop_mask = NULL;
}

void s4d_free(s4d_model *m) {
    if (!m) return;
    free_acts(m);
    s4d_workspace_free(m->ws);
    free(m->li);
    ssm_params_free(&m->ps);
    free(m);
}
const s4d_config *s4d_get_config(const s4d_model *m) { return &m->c; }
ssm_params *s4d_params(s4d_model *m) { return &m->ps; }

#define FALLOC(n) ((float *)ssm_xcalloc((size_t)(n) + 1, sizeof(float)))

static void ensure_acts(s4d_model *m, int64_t batch, int64_t L) {
    int64_t rows = batch * L;
    free_acts(m);   /* called when the shape changes: the K buffers are (H, L) */
    m->cap_rows = rows; m->cap_batch = batch;
    int64_t H = m->c.d_model, Mm = m->M, V = m->n_out;
    m->acts = ssm_xcalloc((size_t)m->c.n_layers, sizeof *m->acts);
    for (int i = 0; i < m->c.n_layers; i++) {
        s4d_layer_acts *a = &m->acts[i];
        a->h_in = FALLOC(rows * H); a->mean = FALLOC(rows); a->rstd = FALLOC(rows); a->xn = FALLOC(rows * H);
        a->xt = FALLOC(rows * H); a->K = FALLOC(H * L); a->A = FALLOC(2 * H * Mm); a->yt = FALLOC(rows * H);
        a->ys = FALLOC(rows * H); a->g = FALLOC(rows * H); a->gd = FALLOC(rows * H); a->o = FALLOC(rows * 2 * H);
    }
    int64_t out_rows = m->c.n_classes > 0 ? batch : rows;
    m->h_out = FALLOC(rows * H); m->pooled = FALLOC(batch * H); m->logits = FALLOC(out_rows * V);
    m->probs = FALLOC(out_rows * V); m->glu = FALLOC(rows * H);
    m->dh = FALLOC(rows * H); m->dglu_o = FALLOC(rows * 2 * H); m->dgd = FALLOC(rows * H); m->dg = FALLOC(rows * H);
    m->dys = FALLOC(rows * H); m->dyt = FALLOC(rows * H); m->dxt = FALLOC(rows * H); m->dxn = FALLOC(rows * H);
    m->dK = FALLOC(H * L); m->dA = FALLOC(2 * H * Mm); m->dlogits = FALLOC(out_rows * V); m->dpooled = FALLOC(batch * H);
    m->dfeat = NULL;
    m->sdlog_dt = FALLOC(H); m->sdB = FALLOC(2 * H * Mm); m->sdC = FALLOC(2 * H * Mm); m->sdD = FALLOC(H);
    m->targets = ssm_xcalloc((size_t)rows + 1, sizeof(int32_t));
    if (m->c.dropout > 0) m->drop_mask = ssm_xmalloc((size_t)(m->c.n_layers * rows * H) + 1);
}

static void fill_uniform(ssm_rng *r, float *w, int64_t n, double bound) {
    for (int64_t i = 0; i < n; i++) w[i] = (float)((2 * ssm_rng_uniform(r) - 1) * bound);
}

void s4d_init_params(s4d_model *m, uint64_t seed) {
    ssm_rng r;
    ssm_rng_init(&r, seed, 0);
    ssm_params *ps = &m->ps;
    const s4d_config *c = &m->c;
    int64_t H = c->d_model, Mm = m->M;
    if (m->emb >= 0) {
        float *e = ssm_params_data(ps, m->emb);
        for (int64_t i = 0; i < (int64_t)c->vocab_size * H; i++) e[i] = (float)ssm_rng_normal(&r);
    } else {
        fill_uniform(&r, ssm_params_data(ps, m->enc_w), H * c->d_input, 1 / sqrt((double)c->d_input));
        fill_uniform(&r, ssm_params_data(ps, m->enc_b), H, 1 / sqrt((double)c->d_input));
    }
    for (int i = 0; i < c->n_layers; i++) {
        const s4d_layer_index *l = &m->li[i];
        float *w = ssm_params_data(ps, l->norm_w);
        for (int64_t j = 0; j < H; j++) w[j] = 1;
        w = ssm_params_data(ps, l->log_dt);
        for (int64_t j = 0; j < H; j++)
            w[j] = (float)(log(c->dt_min) + ssm_rng_uniform(&r) * (log(c->dt_max) - log(c->dt_min)));
        float *are = ssm_params_data(ps, l->A_re), *aim = ssm_params_data(ps, l->A_im);
        float *B = ssm_params_data(ps, l->B), *C = ssm_params_data(ps, l->C);
        double *alin = ssm_xmalloc((size_t)(2 * Mm) * sizeof(double));
        s4d_lin_A((int)(2 * Mm), alin);             /* S4D-Lin: A = -1/2 + i pi n (hippo.c) */
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < Mm; n++) {
                are[h * Mm + n] = (float)log(-alin[2 * n]);
                aim[h * Mm + n] = (float)alin[2 * n + 1];
                B[2 * (h * Mm + n)] = 1; B[2 * (h * Mm + n) + 1] = 0;
                C[2 * (h * Mm + n)] = (float)(sqrt(0.5) * ssm_rng_normal(&r));
                C[2 * (h * Mm + n) + 1] = (float)(sqrt(0.5) * ssm_rng_normal(&r));
            }
        free(alin);
        w = ssm_params_data(ps, l->D);
        for (int64_t j = 0; j < H; j++) w[j] = (float)ssm_rng_normal(&r);
        fill_uniform(&r, ssm_params_data(ps, l->out_w), 2 * H * H, 1 / sqrt((double)H));
        fill_uniform(&r, ssm_params_data(ps, l->out_b), 2 * H, 1 / sqrt((double)H));
    }
    fill_uniform(&r, ssm_params_data(ps, m->dec_w), (int64_t)m->n_out * H, 1 / sqrt((double)H));
    fill_uniform(&r, ssm_params_data(ps, m->dec_b), m->n_out, 1 / sqrt((double)H));
}

s4d_model *s4d_from_set(const ssm_tensor_set *set) {
    ssm_tensor *cfg = ssm_set_get(set, "config");
    if (!cfg) ssm_die("missing tensor 'config' (the model's attributes)");
    s4d_config c = s4d_config_from_attrs(cfg);
    s4d_model *m = s4d_new(&c);
    ssm_params_from_set(&m->ps, m->ps.data, "", set);
    return m;
}

static uint64_t layer_seed(uint64_t seed, int i) { return seed * 0x9e3779b97f4a7c15ull + (uint64_t)(i + 1) * 0xbf58476d1ce4e5b9ull; }

float s4d_forward(s4d_model *m, const int32_t *tokens, const float *features, int batch, int L,
                  const int32_t *targets, int training, uint64_t dropout_seed) {
    const s4d_config *c = &m->c;
    int64_t Mr = (int64_t)batch * L, H = c->d_model, Mm = m->M;
    if (!m->acts || Mr > m->cap_rows || batch > m->cap_batch || L != m->L) ensure_acts(m, batch, L);
    const ssm_params *ps = &m->ps;
    m->batch = batch; m->L = L; m->tokens = tokens; m->features = features;
    m->has_targets = targets != NULL; m->training = training; m->dropout_seed = dropout_seed;
    float p = training ? c->dropout : 0.0f;
    float *h = m->acts[0].h_in;
    if (m->emb >= 0) {
        for (int64_t i = 0; i < Mr; i++)
            if (tokens[i] < 0 || tokens[i] >= c->vocab_size) ssm_die("s4d: token %d out of range [0, %d)", tokens[i], c->vocab_size);
        embedding_forward(h, tokens, ssm_params_data(ps, m->emb), Mr, H);
    } else {
        linear_forward(h, features, ssm_params_data(ps, m->enc_w), ssm_params_data(ps, m->enc_b), Mr, c->d_input, H);
    }
    for (int i = 0; i < c->n_layers; i++) {
        const s4d_layer_index *l = &m->li[i];
        s4d_layer_acts *a = &m->acts[i];
        float *hnext = i + 1 < c->n_layers ? m->acts[i + 1].h_in : m->h_out;
        const float *are = ssm_params_data(ps, l->A_re), *aim = ssm_params_data(ps, l->A_im);
        for (int64_t j = 0; j < H * Mm; j++) { a->A[2 * j] = -expf(are[j]); a->A[2 * j + 1] = aim[j]; }
        s4d_kernel_forward_f32(H, Mm, L, ssm_params_data(ps, l->log_dt), a->A, ssm_params_data(ps, l->B),
                               ssm_params_data(ps, l->C), a->K);
        if (!m->ws) m->ws = s4d_workspace_new();
        s4d_conv_forward_fused(m->ws, NULL, a->mean, a->rstd, a->ys, a->gd, p > 0 ? m->drop_mask + i * Mr * H : NULL,
                               a->h_in, ssm_params_data(ps, l->norm_w), ssm_params_data(ps, l->norm_b), a->K,
                               ssm_params_data(ps, l->D), batch, L, H, 1e-5f, p, layer_seed(dropout_seed, i));
        s4d_linear_forward_rows(a->o, a->gd, ssm_params_data(ps, l->out_w), Mr, H, 2 * H);
        s4d_bias_glu_residual_forward(hnext, a->o, ssm_params_data(ps, l->out_b), a->h_in, Mr, H);
    }
    m->correct = m->counted = 0;
    double loss = 0;
    if (c->n_classes > 0) {
        if (c->pool_last)
            for (int b = 0; b < batch; b++) memcpy(m->pooled + b * H, m->h_out + ((int64_t)b * L + L - 1) * H, (size_t)H * sizeof(float));
        else meanpool_forward(m->pooled, m->h_out, batch, L, H);
        linear_forward(m->logits, m->pooled, ssm_params_data(ps, m->dec_w), ssm_params_data(ps, m->dec_b), batch, H, m->n_out);
        if (targets) {
            for (int b = 0; b < batch; b++)
                if (targets[b] >= m->n_out) ssm_die("s4d: class %d out of range [0, %d)", targets[b], m->n_out);
            memcpy(m->targets, targets, (size_t)batch * sizeof(int32_t));
            loss = crossentropy_forward(m->probs, m->logits, m->targets, batch, m->n_out, &m->counted, &m->correct);
        }
    } else {
        linear_forward(m->logits, m->h_out, ssm_params_data(ps, m->dec_w), ssm_params_data(ps, m->dec_b), Mr, H, m->n_out);
        if (targets) {
            for (int64_t i = 0; i < Mr; i++)
                if (targets[i] >= m->n_out) ssm_die("s4d: target %d out of range [0, %d)", targets[i], m->n_out);
            memcpy(m->targets, targets, (size_t)Mr * sizeof(int32_t));
            loss = crossentropy_forward(m->probs, m->logits, m->targets, Mr, m->n_out, &m->counted, &m->correct);
        }
    }
    return (float)loss;
}

const float *s4d_logits(const s4d_model *m) { return m->logits; }
void s4d_accuracy(const s4d_model *m, int64_t *correct, int64_t *counted) {
    if (correct) *correct = m->correct;
    if (counted) *counted = m->counted;
}

static void zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof(float)); }

void s4d_backward(s4d_model *m) {
    if (!m->has_targets) ssm_die("internal: s4d_backward needs a forward with targets");
    const s4d_config *c = &m->c;
    int batch = m->batch, L = m->L;
    int64_t Mr = (int64_t)batch * L, H = c->d_model, Mm = m->M;
    ssm_params *ps = &m->ps;
    float p = m->training ? c->dropout : 0.0f;
    zero(m->dh, Mr * H);
    if (c->n_classes > 0) {
        zero(m->dlogits, (int64_t)batch * m->n_out);
        crossentropy_backward(m->dlogits, m->probs, m->targets, batch, m->n_out, 1.0f);
        zero(m->dpooled, (int64_t)batch * H);
        linear_backward(m->dpooled, ssm_params_grad(ps, m->dec_w), ssm_params_grad(ps, m->dec_b), m->dlogits, m->pooled,
                        ssm_params_data(ps, m->dec_w), batch, H, m->n_out);
        if (c->pool_last) {
            for (int b = 0; b < batch; b++)
                for (int64_t j = 0; j < H; j++) m->dh[((int64_t)b * L + L - 1) * H + j] += m->dpooled[b * H + j];
        } else meanpool_backward(m->dh, m->dpooled, batch, L, H);
    } else {
        zero(m->dlogits, Mr * m->n_out);
        crossentropy_backward(m->dlogits, m->probs, m->targets, Mr, m->n_out, 1.0f);
        linear_backward(m->dh, ssm_params_grad(ps, m->dec_w), ssm_params_grad(ps, m->dec_b), m->dlogits, m->h_out,
                        ssm_params_data(ps, m->dec_w), Mr, H, m->n_out);
    }
    for (int i = c->n_layers - 1; i >= 0; i--) {
        const s4d_layer_index *l = &m->li[i];
        s4d_layer_acts *a = &m->acts[i];
        /* h_next = h + GLU(o): dh passes through; do = GLU'(dh) */
        s4d_glu_backward(m->dglu_o, ssm_params_grad(ps, l->out_b), m->dh, a->o, Mr, H);
        s4d_linear_backward_rows(m->ws, m->dgd, ssm_params_grad(ps, l->out_w), m->dglu_o, a->gd, ssm_params_data(ps, l->out_w),
                                 Mr, H, 2 * H);
        s4d_conv_backward_fused(m->ws, m->dh, ssm_params_grad(ps, l->norm_w), ssm_params_grad(ps, l->norm_b), m->dK, m->sdD,
                                m->dgd, a->ys, p > 0 ? m->drop_mask + i * Mr * H : NULL, NULL, a->h_in,
                                ssm_params_data(ps, l->norm_w), ssm_params_data(ps, l->norm_b), a->mean, a->rstd, a->K,
                                ssm_params_data(ps, l->D), batch, L, H, 1e-5f, p);
        float *gD = ssm_params_grad(ps, l->D);
        for (int64_t j = 0; j < H; j++) gD[j] += m->sdD[j];
        s4d_kernel_backward_f32(H, Mm, L, ssm_params_data(ps, l->log_dt), a->A, ssm_params_data(ps, l->B),
                                ssm_params_data(ps, l->C), m->dK, m->sdlog_dt, m->dA, m->sdB, m->sdC);
        float *g = ssm_params_grad(ps, l->log_dt);
        for (int64_t j = 0; j < H; j++) g[j] += m->sdlog_dt[j];
        /* A = -exp(A_real_log) + i A_imag */
        float *gre = ssm_params_grad(ps, l->A_re), *gim = ssm_params_grad(ps, l->A_im);
        for (int64_t j = 0; j < H * Mm; j++) { gre[j] += m->dA[2 * j] * a->A[2 * j]; gim[j] += m->dA[2 * j + 1]; }
        float *gB = ssm_params_grad(ps, l->B), *gC = ssm_params_grad(ps, l->C);
        for (int64_t j = 0; j < 2 * H * Mm; j++) { gB[j] += m->sdB[j]; gC[j] += m->sdC[j]; }
    }
    if (m->emb >= 0) embedding_backward(ssm_params_grad(ps, m->emb), m->dh, m->tokens, Mr, H);
    else linear_backward(NULL, ssm_params_grad(ps, m->enc_w), ssm_params_grad(ps, m->enc_b), m->dh, m->features,
                         ssm_params_data(ps, m->enc_w), Mr, c->d_input, H);
}
