/* model_mamba.c - the Mamba model: parameters, initialization, forward (with optional recurrent
 * state) and backward.  See model_mamba.h for the API and REFERENCE.md section 8 for the math.
 *
 * One layer, on M = batch * L token rows (token-major, every buffer (batch, L, width)):
 *     xn    = RMSNorm(h)                                  (M, d_model)
 *     xr, z = xn @ in_proj[:d_inner]^T, xn @ in_proj[d_inner:]^T      (M, d_inner) each
 *     xc    = causal depthwise conv1d(xr) + bias;  u = silu(xc)       (M, d_inner)
 *     dbc   = u @ x_proj^T = [dt_in | B | C]          (M, dt_rank + 2 N)
 *     delta = dt_in @ dt_proj^T                       (M, d_inner)  (its bias goes to the scan)
 *     y     = selective_scan(u, delta, A = -exp(A_log), B, C, D, z, delta_bias, softplus)
 *     h    += y @ out_proj^T
 */
#include "model_mamba.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "hippo.h"
#include "nn.h"
#include "selective_scan.h"
#ifdef SSM_HAVE_CUDA
#include "selective_scan_cuda.h"
#endif

/* --device cuda (device.h): every buffer here is GPU memory and every loop an op of nn.h that
 * runs on the GPU; the scan is selective_scan_cuda.  Inputs (tokens, features, targets) are copied
 * in at the start of a forward; the logits are copied out by mamba_logits. */

typedef struct {
    int norm, in_proj, conv_w, conv_b, x_proj, dt_w, dt_b, A_log, D, out_proj;
} layer_index;

typedef struct {     /* saved activations of one layer, M rows */
    float *h_in, *rstd, *xn, *xr, *z, *xc, *u, *dbc, *dt_in, *Bs, *Cs, *delta, *y, *A;
} layer_acts;

struct mamba_model {
    mamba_config c;
    int d_inner, dt_rank, nbc;      /* nbc = dt_rank + 2 N */
    ssm_params ps;
    int emb, enc_w, enc_b, norm_f, lm_head, head_w, head_b;
    layer_index *li;
    /* activations for up to cap_rows token rows and cap_batch sequences */
    int64_t cap_rows, cap_batch;
    layer_acts *acts;
    float *h_out, *rstd_f, *hf, *pooled, *logits, *probs;
    /* backward scratch */
    float *dh, *dxn, *dxr, *dz, *dxc, *du, *ddbc, *ddt_in, *ddelta, *dy, *dhf, *dlogits, *dpooled;
    float *sB, *sC, *sA, *sD, *sdz, *sdbias, *sdu, *sddelta;
    /* the last forward */
    int batch, L, has_targets, had_state;
    const int32_t *tokens;
    const float *features;
    int32_t *targets;
    int64_t correct, counted;
    double loss;
    /* the inputs of the last forward in the model's memory; the scan's final state; host copy
     * of the logits (GPU runs) */
    int32_t *tok_buf;
    float *feat_buf, *hbuf, *logits_host;
};

mamba_config mamba_config_default(void) {
    mamba_config c = {0};
    c.d_model = 64; c.n_layers = 2; c.d_state = 16; c.expand = 2; c.d_conv = 4; c.dt_rank = 0;
    c.vocab_size = 0; c.d_input = 1; c.n_classes = 0; c.tie_embeddings = 1;
    c.dt_min = 0.001f; c.dt_max = 0.1f; c.dt_init_floor = 1e-4f; c.norm_eps = 1e-5f;
    return c;
}

void mamba_config_to_attrs(const mamba_config *c, ssm_tensor *t) {
    ssm_tensor_set_attr(t, "model", "mamba");
    ssm_tensor_set_attrf(t, "d_model", "%d", c->d_model);
    ssm_tensor_set_attrf(t, "n_layers", "%d", c->n_layers);
    ssm_tensor_set_attrf(t, "d_state", "%d", c->d_state);
    ssm_tensor_set_attrf(t, "expand", "%d", c->expand);
    ssm_tensor_set_attrf(t, "d_conv", "%d", c->d_conv);
    ssm_tensor_set_attrf(t, "dt_rank", "%d", c->dt_rank ? c->dt_rank : (c->d_model + 15) / 16);
    ssm_tensor_set_attrf(t, "vocab_size", "%d", c->vocab_size);
    ssm_tensor_set_attrf(t, "d_input", "%d", c->d_input);
    ssm_tensor_set_attrf(t, "n_classes", "%d", c->n_classes);
    ssm_tensor_set_attrf(t, "tie_embeddings", "%d", c->tie_embeddings);
    ssm_tensor_set_attrf(t, "norm_eps", "%.9g", c->norm_eps);
}

mamba_config mamba_config_from_attrs(const ssm_tensor *t) {
    const char *model = ssm_tensor_get_attr(t, "model");
    if (!model || strcmp(model, "mamba")) ssm_die("tensor '%s': model=%s, expected mamba", t->name, model ? model : "(none)");
    mamba_config c = mamba_config_default();
    c.d_model = ssm_tensor_attr_count(t, "d_model", 0, 1);
    c.n_layers = ssm_tensor_attr_count(t, "n_layers", 0, 1);
    c.d_state = ssm_tensor_attr_count(t, "d_state", 0, 1);
    c.expand = ssm_tensor_attr_count(t, "expand", 2, 0);
    c.d_conv = ssm_tensor_attr_count(t, "d_conv", 4, 0);
    c.dt_rank = ssm_tensor_attr_count(t, "dt_rank", 0, 0);
    c.vocab_size = ssm_tensor_attr_count(t, "vocab_size", 0, 1);
    c.d_input = ssm_tensor_attr_count(t, "d_input", 1, 0);
    c.n_classes = ssm_tensor_attr_count(t, "n_classes", 0, 0);
    c.tie_embeddings = ssm_tensor_attr_count(t, "tie_embeddings", 1, 0);
    const char *e = ssm_tensor_get_attr(t, "norm_eps");
    if (e) c.norm_eps = strtof(e, NULL);
    return c;
}

mamba_model *mamba_new(const mamba_config *cfg) {
    mamba_config c = *cfg;
    if (c.dt_rank == 0) c.dt_rank = (c.d_model + 15) / 16;
    if (c.d_model < 1 || c.n_layers < 1 || c.d_state < 1 || c.expand < 1 || c.d_conv < 1 || c.d_conv > 64)
        ssm_die("mamba: bad config (d_model %d, n_layers %d, d_state %d, expand %d, d_conv %d)",
                c.d_model, c.n_layers, c.d_state, c.expand, c.d_conv);
    if (c.vocab_size == 0 && c.d_input < 1) ssm_die("mamba: need vocab_size or d_input");
    if (c.vocab_size == 0 && c.n_classes == 0) ssm_die("mamba: feature input needs a classification head");
    mamba_model *m = ssm_xcalloc(1, sizeof *m);
    m->c = c;
    int64_t dm = c.d_model, di = (int64_t)c.expand * c.d_model, N = c.d_state, R = c.dt_rank;
    m->d_inner = (int)di; m->dt_rank = (int)R; m->nbc = (int)(R + 2 * N);
    ssm_params *ps = &m->ps;
    ssm_params_init(ps);
    m->emb = m->enc_w = m->enc_b = m->lm_head = m->head_w = m->head_b = -1;
    if (c.vocab_size > 0) m->emb = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){c.vocab_size, dm}, "embedding.weight");
    else {
        m->enc_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){dm, c.d_input}, "encoder.weight");
        m->enc_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){dm}, "encoder.bias");
    }
    m->li = ssm_xcalloc((size_t)c.n_layers, sizeof *m->li);
    for (int i = 0; i < c.n_layers; i++) {
        layer_index *l = &m->li[i];
        l->norm = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){dm}, "layers.%d.norm.weight", i);
        l->A_log = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 2, (int64_t[]){di, N}, "layers.%d.mixer.A_log", i);
        l->D = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){di}, "layers.%d.mixer.D", i);
        l->in_proj = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){2 * di, dm}, "layers.%d.mixer.in_proj.weight", i);
        l->conv_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 3, (int64_t[]){di, 1, c.d_conv}, "layers.%d.mixer.conv1d.weight", i);
        l->conv_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){di}, "layers.%d.mixer.conv1d.bias", i);
        l->x_proj = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){R + 2 * N, di}, "layers.%d.mixer.x_proj.weight", i);
        l->dt_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){di, R}, "layers.%d.mixer.dt_proj.weight", i);
        l->dt_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){di}, "layers.%d.mixer.dt_proj.bias", i);
        l->out_proj = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){dm, di}, "layers.%d.mixer.out_proj.weight", i);
    }
    m->norm_f = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){dm}, "norm_f.weight");
    if (c.n_classes > 0) {
        m->head_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){c.n_classes, dm}, "head.weight");
        m->head_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){c.n_classes}, "head.bias");
    } else if (!c.tie_embeddings) {
        m->lm_head = ssm_params_add(ps, SSM_F32, SSM_GROUP_DECAY, 2, (int64_t[]){c.vocab_size, dm}, "lm_head.weight");
    }
    ssm_params_alloc(ps);
    return m;
}

static void free_acts(mamba_model *m) {
    if (!m->acts) return;
    for (int i = 0; i < m->c.n_layers; i++) {
        layer_acts *a = &m->acts[i];
        float *bufs[] = {a->h_in, a->rstd, a->xn, a->xr, a->z, a->xc, a->u, a->dbc, a->dt_in, a->Bs, a->Cs, a->delta, a->y, a->A};
        for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) ssm_buf_free(bufs[k]);
    }
    free(m->acts);
    m->acts = NULL;
    float *bufs[] = {m->h_out, m->rstd_f, m->hf, m->pooled, m->logits, m->probs, m->dh, m->dxn, m->dxr, m->dz,
                     m->dxc, m->du, m->ddbc, m->ddt_in, m->ddelta, m->dy, m->dhf, m->dlogits, m->dpooled,
                     m->sB, m->sC, m->sA, m->sD, m->sdz, m->sdbias, m->sdu, m->sddelta, m->feat_buf, m->hbuf};
    for (size_t k = 0; k < sizeof bufs / sizeof *bufs; k++) ssm_buf_free(bufs[k]);
    ssm_buf_free(m->targets);
    ssm_buf_free(m->tok_buf);
    ssm_host_free(m->logits_host);
    m->targets = m->tok_buf = NULL;
    m->logits_host = NULL;
}

void mamba_free(mamba_model *m) {
    if (!m) return;
    free_acts(m);
    free(m->li);
    ssm_params_free(&m->ps);
    free(m);
}

const mamba_config *mamba_get_config(const mamba_model *m) { return &m->c; }
ssm_params *mamba_params(mamba_model *m) { return &m->ps; }

#define FALLOC(n) ((float *)ssm_buf_calloc((size_t)(n) + 1, sizeof(float)))

static void ensure_acts(mamba_model *m, int64_t batch, int64_t rows) {
    if (m->acts && rows <= m->cap_rows && batch <= m->cap_batch) return;
    free_acts(m);
    m->cap_rows = rows; m->cap_batch = batch;
    int64_t dm = m->c.d_model, di = m->d_inner, N = m->c.d_state, R = m->dt_rank;
    m->acts = ssm_xcalloc((size_t)m->c.n_layers, sizeof *m->acts);
    for (int i = 0; i < m->c.n_layers; i++) {
        layer_acts *a = &m->acts[i];
        a->h_in = FALLOC(rows * dm); a->rstd = FALLOC(rows); a->xn = FALLOC(rows * dm);
        a->xr = FALLOC(rows * di); a->z = FALLOC(rows * di); a->xc = FALLOC(rows * di); a->u = FALLOC(rows * di);
        a->dbc = FALLOC(rows * m->nbc); a->dt_in = FALLOC(rows * R); a->Bs = FALLOC(rows * N); a->Cs = FALLOC(rows * N);
        a->delta = FALLOC(rows * di); a->y = FALLOC(rows * di); a->A = FALLOC(di * N);
    }
    int64_t V = m->c.n_classes > 0 ? m->c.n_classes : m->c.vocab_size;
    int64_t out_rows = m->c.n_classes > 0 ? batch : rows;
    m->h_out = FALLOC(rows * dm); m->rstd_f = FALLOC(rows); m->hf = FALLOC(rows * dm);
    m->pooled = FALLOC(batch * dm); m->logits = FALLOC(out_rows * V); m->probs = FALLOC(out_rows * V);
    m->dh = FALLOC(rows * dm); m->dxn = FALLOC(rows * dm); m->dxr = FALLOC(rows * di); m->dz = FALLOC(rows * di);
    m->dxc = FALLOC(rows * di); m->du = FALLOC(rows * di); m->ddbc = FALLOC(rows * m->nbc);
    m->ddt_in = FALLOC(rows * R); m->ddelta = FALLOC(rows * di); m->dy = FALLOC(rows * di);
    m->dhf = FALLOC(rows * dm); m->dlogits = FALLOC(out_rows * V); m->dpooled = FALLOC(batch * dm);
    m->sB = FALLOC(rows * N); m->sC = FALLOC(rows * N); m->sA = FALLOC(di * N); m->sD = FALLOC(di);
    m->sdz = FALLOC(rows * di); m->sdbias = FALLOC(di); m->sdu = FALLOC(rows * di); m->sddelta = FALLOC(rows * di);
    m->targets = ssm_buf_calloc((size_t)rows + 1, sizeof(int32_t));
    m->tok_buf = ssm_buf_calloc((size_t)rows + 1, sizeof(int32_t));
    m->feat_buf = m->c.vocab_size > 0 ? NULL : FALLOC(rows * m->c.d_input);
    m->hbuf = FALLOC(batch * di * N);
    m->logits_host = ssm_compute_on_gpu() ? ssm_host_calloc((size_t)(out_rows * V) + 1, sizeof(float)) : NULL;
}

/* PyTorch's default Linear/Conv1d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void fill_uniform(ssm_rng *r, float *w, int64_t n, double bound) {
    for (int64_t i = 0; i < n; i++) w[i] = (float)((2 * ssm_rng_uniform(r) - 1) * bound);
}

void mamba_init_params(mamba_model *m, uint64_t seed) {
    ssm_rng r;
    ssm_rng_init(&r, seed, 0);
    ssm_params *ps = &m->ps;
    const mamba_config *c = &m->c;
    int64_t dm = c->d_model, di = m->d_inner, N = c->d_state, R = m->dt_rank, K = c->d_conv;
    if (m->emb >= 0) {
        float *e = ssm_params_data(ps, m->emb);
        for (int64_t i = 0; i < (int64_t)c->vocab_size * dm; i++) e[i] = (float)(0.02 * ssm_rng_normal(&r));
    } else {
        fill_uniform(&r, ssm_params_data(ps, m->enc_w), dm * c->d_input, 1 / sqrt((double)c->d_input));
        fill_uniform(&r, ssm_params_data(ps, m->enc_b), dm, 1 / sqrt((double)c->d_input));
    }
    for (int i = 0; i < c->n_layers; i++) {
        const layer_index *l = &m->li[i];
        float *w;
        w = ssm_params_data(ps, l->norm);
        for (int64_t j = 0; j < dm; j++) w[j] = 1;
        fill_uniform(&r, ssm_params_data(ps, l->in_proj), 2 * di * dm, 1 / sqrt((double)dm));
        fill_uniform(&r, ssm_params_data(ps, l->conv_w), di * K, 1 / sqrt((double)K));
        fill_uniform(&r, ssm_params_data(ps, l->conv_b), di, 1 / sqrt((double)K));
        fill_uniform(&r, ssm_params_data(ps, l->x_proj), (R + 2 * N) * di, 1 / sqrt((double)di));
        fill_uniform(&r, ssm_params_data(ps, l->dt_w), di * R, 1 / sqrt((double)R));   /* U(+-dt_rank^-0.5) */
        w = ssm_params_data(ps, l->dt_b);
        for (int64_t j = 0; j < di; j++) {
            /* dt log-uniform in [dt_min, dt_max], floored; bias = inverse softplus(dt) */
            double dt = exp(ssm_rng_uniform(&r) * (log(c->dt_max) - log(c->dt_min)) + log(c->dt_min));
            if (dt < c->dt_init_floor) dt = c->dt_init_floor;
            w[j] = (float)(dt + log(-expm1(-dt)));
        }
        w = ssm_params_data(ps, l->A_log);
        double *alog = ssm_xmalloc((size_t)N * sizeof(double));
        mamba_A_log((int)N, alog);                  /* A_log = log(1..N) for every channel (hippo.c) */
        for (int64_t d = 0; d < di; d++)
            for (int64_t n = 0; n < N; n++) w[d * N + n] = (float)alog[n];
        free(alog);
        w = ssm_params_data(ps, l->D);
        for (int64_t d = 0; d < di; d++) w[d] = 1;
        /* out_proj: the default init scaled by 1/sqrt(n_layers) */
        fill_uniform(&r, ssm_params_data(ps, l->out_proj), dm * di, 1 / sqrt((double)di) / sqrt((double)c->n_layers));
    }
    float *w = ssm_params_data(ps, m->norm_f);
    for (int64_t j = 0; j < dm; j++) w[j] = 1;
    if (m->head_w >= 0) {
        fill_uniform(&r, ssm_params_data(ps, m->head_w), (int64_t)c->n_classes * dm, 1 / sqrt((double)dm));
        fill_uniform(&r, ssm_params_data(ps, m->head_b), c->n_classes, 1 / sqrt((double)dm));
    }
    if (m->lm_head >= 0) {
        float *e = ssm_params_data(ps, m->lm_head);
        for (int64_t i = 0; i < (int64_t)c->vocab_size * dm; i++) e[i] = (float)(0.02 * ssm_rng_normal(&r));
    }
}

mamba_model *mamba_from_set(const ssm_tensor_set *set) {
    ssm_tensor *cfg = ssm_set_get(set, "config");
    if (!cfg) ssm_die("missing tensor 'config' (the model's attributes)");
    mamba_config c = mamba_config_from_attrs(cfg);
    mamba_model *m = mamba_new(&c);
    ssm_params_from_set(&m->ps, m->ps.data, "", set);
    return m;
}

mamba_state *mamba_state_new(const mamba_model *m, int batch) {
    mamba_state *s = ssm_xcalloc(1, sizeof *s);
    s->batch = batch; s->n_layers = m->c.n_layers; s->d_inner = m->d_inner;
    s->d_conv = m->c.d_conv; s->d_state = m->c.d_state;
    s->conv_state = ssm_xcalloc((size_t)s->n_layers, sizeof(float *));
    s->ssm_state = ssm_xcalloc((size_t)s->n_layers, sizeof(float *));
    for (int i = 0; i < s->n_layers; i++) {
        s->conv_state[i] = FALLOC((int64_t)batch * s->d_inner * s->d_conv);   /* GPU memory with --device cuda */
        s->ssm_state[i] = FALLOC((int64_t)batch * s->d_inner * s->d_state);
    }
    return s;
}
void mamba_state_reset(mamba_state *s) {
    for (int i = 0; i < s->n_layers; i++) {
        ssm_buf_zero(s->conv_state[i], (size_t)s->batch * s->d_inner * s->d_conv * sizeof(float));
        ssm_buf_zero(s->ssm_state[i], (size_t)s->batch * s->d_inner * s->d_state * sizeof(float));
    }
}
void mamba_state_free(mamba_state *s) {
    if (!s) return;
    for (int i = 0; i < s->n_layers; i++) { ssm_buf_free(s->conv_state[i]); ssm_buf_free(s->ssm_state[i]); }
    free(s->conv_state); free(s->ssm_state); free(s);
}

static ssm_scan_params scan_params(const mamba_model *m, const layer_acts *a, const float *D,
                                   const float *dt_bias, const float *h0, int64_t batch, int64_t L) {
    ssm_scan_params p;
    memset(&p, 0, sizeof p);
    p.batch = batch; p.L = L; p.D = m->d_inner; p.N = m->c.d_state; p.G = 1;
    p.complex_A = 0; p.softplus = 1;
    p.x_strides = ssm_scan_layout_bld(L, m->d_inner);
    p.bc_strides = ssm_scan_layout_bld(L, m->c.d_state);   /* (batch, L, 1 group * N) */
    p.u = a->u; p.delta = a->delta; p.A = a->A; p.B = a->Bs; p.C = a->Cs;
    p.D_skip = D; p.z = a->z; p.delta_bias = dt_bias; p.h0 = h0; p.seq_idx = NULL;
    p.threads = 0;
    return p;
}

float mamba_forward(mamba_model *m, const int32_t *tokens, const float *features, int batch,
                    int L, const int32_t *targets, mamba_state *state) {
    const mamba_config *c = &m->c;
    int64_t M = (int64_t)batch * L, dm = c->d_model, di = m->d_inner, N = c->d_state, R = m->dt_rank;
    int64_t nbc = m->nbc, K = c->d_conv;
    ensure_acts(m, batch, M);
    const ssm_params *ps = &m->ps;
    m->batch = batch; m->L = L;
    m->had_state = state != NULL; m->has_targets = targets != NULL;
    /* the inputs into the model's own buffers (the GPU's, with --device cuda) */
    int use_tok = m->emb >= 0 && tokens, use_feat = m->emb < 0 && features;
    if (use_tok) ssm_buf_from_host(m->tok_buf, tokens, (size_t)M * sizeof(int32_t));
    if (use_feat) ssm_buf_from_host(m->feat_buf, features, (size_t)(M * c->d_input) * sizeof(float));
    m->tokens = use_tok ? m->tok_buf : NULL;
    m->features = use_feat ? m->feat_buf : NULL;
    if (state && (state->batch != batch || state->n_layers != c->n_layers)) ssm_die("mamba: state for batch %d, called with %d", state->batch, batch);
    /* encoder -> the residual stream h (M, dm): layer 0's h_in */
    float *h = m->acts[0].h_in;
    if (m->emb >= 0) {
        for (int64_t i = 0; i < M; i++)
            if (tokens[i] < 0 || tokens[i] >= c->vocab_size) ssm_die("mamba: token %d out of range [0, %d)", tokens[i], c->vocab_size);
        embedding_forward(h, m->tokens, ssm_params_data(ps, m->emb), M, dm);
    } else {
        linear_forward(h, m->features, ssm_params_data(ps, m->enc_w), ssm_params_data(ps, m->enc_b), M, c->d_input, dm);
    }
    for (int i = 0; i < c->n_layers; i++) {
        const layer_index *l = &m->li[i];
        layer_acts *a = &m->acts[i];
        float *hnext = i + 1 < c->n_layers ? m->acts[i + 1].h_in : m->h_out;
        rmsnorm_forward(a->xn, a->rstd, a->h_in, ssm_params_data(ps, l->norm), M, dm, c->norm_eps);
        const float *Win = ssm_params_data(ps, l->in_proj);
        linear_forward(a->xr, a->xn, Win, NULL, M, dm, di);
        linear_forward(a->z, a->xn, Win + di * dm, NULL, M, dm, di);
        float *cs = state ? state->conv_state[i] : NULL;
        conv1d_causal_forward(a->xc, a->xr, ssm_params_data(ps, l->conv_w), ssm_params_data(ps, l->conv_b),
                              cs, cs, batch, L, di, K);
        silu_forward(a->u, a->xc, M * di);
        linear_forward(a->dbc, a->u, ssm_params_data(ps, l->x_proj), NULL, M, di, nbc);
        nn_copy2d(a->dt_in, R, a->dbc, nbc, M, R);
        nn_copy2d(a->Bs, N, a->dbc + R, nbc, M, N);
        nn_copy2d(a->Cs, N, a->dbc + R + N, nbc, M, N);
        linear_forward(a->delta, a->dt_in, ssm_params_data(ps, l->dt_w), NULL, M, R, di);
        const float *Alog = ssm_params_data(ps, l->A_log);
        nn_neg_exp(a->A, Alog, di * N);
        ssm_scan_params sp = scan_params(m, a, ssm_params_data(ps, l->D), ssm_params_data(ps, l->dt_b),
                                         state ? state->ssm_state[i] : NULL, batch, L);
        float *hout = state ? m->hbuf : NULL;
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu())
            ssm_dev_check("selective scan forward", selective_scan_cuda_forward(&sp, SSM_CUDA_F32, a->y, hout, NULL));
        else
#endif
            selective_scan_forward(&sp, a->y, hout);
        if (state) nn_copy(state->ssm_state[i], hout, batch * di * N);
        /* h_next = h + out_proj(y) */
        linear_forward(hnext, a->y, ssm_params_data(ps, l->out_proj), NULL, M, di, dm);
        nn_add(hnext, a->h_in, M * dm);
    }
    rmsnorm_forward(m->hf, m->rstd_f, m->h_out, ssm_params_data(ps, m->norm_f), M, dm, c->norm_eps);
    m->loss = 0; m->correct = m->counted = 0;
    if (c->n_classes > 0) {
        meanpool_forward(m->pooled, m->hf, batch, L, dm);
        linear_forward(m->logits, m->pooled, ssm_params_data(ps, m->head_w), ssm_params_data(ps, m->head_b), batch, dm, c->n_classes);
        if (targets) {
            ssm_buf_from_host(m->targets, targets, (size_t)batch * sizeof(int32_t));
            for (int b = 0; b < batch; b++)
                if (targets[b] >= c->n_classes) ssm_die("mamba: class %d out of range [0, %d)", targets[b], c->n_classes);
            m->loss = crossentropy_forward(m->probs, m->logits, m->targets, batch, c->n_classes, &m->counted, &m->correct);
        }
    } else {
        const float *W = m->lm_head >= 0 ? ssm_params_data(ps, m->lm_head) : ssm_params_data(ps, m->emb);
        linear_forward(m->logits, m->hf, W, NULL, M, dm, c->vocab_size);
        if (targets) {
            ssm_buf_from_host(m->targets, targets, (size_t)M * sizeof(int32_t));
            for (int64_t i = 0; i < M; i++)
                if (targets[i] >= c->vocab_size) ssm_die("mamba: target %d out of range [0, %d)", targets[i], c->vocab_size);
            m->loss = crossentropy_forward(m->probs, m->logits, m->targets, M, c->vocab_size, &m->counted, &m->correct);
        }
    }
    return (float)m->loss;
}

const float *mamba_logits(const mamba_model *m) {
    if (!m->logits_host) return m->logits;
    int64_t n = m->c.n_classes > 0 ? (int64_t)m->batch * m->c.n_classes : (int64_t)m->batch * m->L * m->c.vocab_size;
    ssm_buf_to_host(m->logits_host, m->logits, (size_t)n * sizeof(float));
    return m->logits_host;
}
void mamba_accuracy(const mamba_model *m, int64_t *correct, int64_t *counted) {
    if (correct) *correct = m->correct;
    if (counted) *counted = m->counted;
}

static void zero(float *p, int64_t n) { nn_zero(p, n); }
static void add_to(float *dst, const float *src, int64_t n) { nn_add(dst, src, n); }

void mamba_backward(mamba_model *m) {
    if (!m->has_targets || m->had_state) ssm_die("internal: mamba_backward needs a forward with targets and no state");
    const mamba_config *c = &m->c;
    int batch = m->batch, L = m->L;
    int64_t M = (int64_t)batch * L, dm = c->d_model, di = m->d_inner, N = c->d_state, R = m->dt_rank;
    int64_t nbc = m->nbc, K = c->d_conv;
    ssm_params *ps = &m->ps;
    /* head -> dhf (M, dm) */
    zero(m->dhf, M * dm);
    if (c->n_classes > 0) {
        zero(m->dlogits, (int64_t)batch * c->n_classes);
        crossentropy_backward(m->dlogits, m->probs, m->targets, batch, c->n_classes, 1.0f);
        zero(m->dpooled, (int64_t)batch * dm);
        linear_backward(m->dpooled, ssm_params_grad(ps, m->head_w), ssm_params_grad(ps, m->head_b), m->dlogits,
                        m->pooled, ssm_params_data(ps, m->head_w), batch, dm, c->n_classes);
        meanpool_backward(m->dhf, m->dpooled, batch, L, dm);
    } else {
        zero(m->dlogits, M * c->vocab_size);
        crossentropy_backward(m->dlogits, m->probs, m->targets, M, c->vocab_size, 1.0f);
        int w = m->lm_head >= 0 ? m->lm_head : m->emb;
        linear_backward(m->dhf, ssm_params_grad(ps, w), NULL, m->dlogits, m->hf, ssm_params_data(ps, w), M, dm, c->vocab_size);
    }
    /* dh: gradient of the residual stream, carried down through the layers */
    zero(m->dh, M * dm);
    rmsnorm_backward(m->dh, ssm_params_grad(ps, m->norm_f), m->dhf, m->h_out, ssm_params_data(ps, m->norm_f), m->rstd_f, M, dm);
    for (int i = c->n_layers - 1; i >= 0; i--) {
        const layer_index *l = &m->li[i];
        layer_acts *a = &m->acts[i];
        /* h_next = h + out_proj(y): dh passes through, and dy = dh @ out_proj */
        zero(m->dy, M * di);
        linear_backward(m->dy, ssm_params_grad(ps, l->out_proj), NULL, m->dh, a->y, ssm_params_data(ps, l->out_proj), M, di, dm);
        /* the scan (its backward reduces dA, dD, ddelta_bias, dB, dC in a fixed order: the
         * gradients are bit-identical for any thread count) */
        ssm_scan_params sp = scan_params(m, a, ssm_params_data(ps, l->D), ssm_params_data(ps, l->dt_b), NULL, batch, L);
        ssm_scan_grads g = {.du = m->sdu, .ddelta = m->sddelta, .dA = m->sA, .dB = m->sB, .dC = m->sC,
                            .dD_skip = m->sD, .dz = m->sdz, .ddelta_bias = m->sdbias, .dh0 = NULL};
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu())
            ssm_dev_check("selective scan backward", selective_scan_cuda_backward(&sp, SSM_CUDA_F32, m->dy, NULL, &g, NULL));
        else
#endif
            selective_scan_backward(&sp, m->dy, NULL, &g);
        /* A = -exp(A_log): dA_log = dA * A */
        float *gAlog = ssm_params_grad(ps, l->A_log);
        nn_mul_add(gAlog, m->sA, a->A, di * N);
        add_to(ssm_params_grad(ps, l->D), m->sD, di);
        add_to(ssm_params_grad(ps, l->dt_b), m->sdbias, di);
        /* delta = dt_in @ dt_proj^T */
        zero(m->ddt_in, M * R);
        linear_backward(m->ddt_in, ssm_params_grad(ps, l->dt_w), NULL, m->sddelta, a->dt_in, ssm_params_data(ps, l->dt_w), M, R, di);
        /* [dt_in | B | C] = u @ x_proj^T */
        nn_copy2d(m->ddbc, nbc, m->ddt_in, R, M, R);
        nn_copy2d(m->ddbc + R, nbc, m->sB, N, M, N);
        nn_copy2d(m->ddbc + R + N, nbc, m->sC, N, M, N);
        nn_copy(m->du, m->sdu, M * di);   /* du from the scan, then += x_proj's */
        linear_backward(m->du, ssm_params_grad(ps, l->x_proj), NULL, m->ddbc, a->u, ssm_params_data(ps, l->x_proj), M, di, nbc);
        /* u = silu(xc); xc = conv(xr) */
        zero(m->dxc, M * di);
        silu_backward(m->dxc, m->du, a->xc, M * di);
        zero(m->dxr, M * di);
        conv1d_causal_backward(m->dxr, ssm_params_grad(ps, l->conv_w), ssm_params_grad(ps, l->conv_b), m->dxc, a->xr,
                               ssm_params_data(ps, l->conv_w), batch, L, di, K);
        /* [xr | z] = xn @ in_proj^T */
        zero(m->dxn, M * dm);
        const float *Win = ssm_params_data(ps, l->in_proj);
        float *gWin = ssm_params_grad(ps, l->in_proj);
        linear_backward(m->dxn, gWin, NULL, m->dxr, a->xn, Win, M, dm, di);
        linear_backward(m->dxn, gWin + di * dm, NULL, m->sdz, a->xn, Win + di * dm, M, dm, di);
        /* xn = RMSNorm(h): dh += ... (the residual path already carries dh) */
        rmsnorm_backward(m->dh, ssm_params_grad(ps, l->norm), m->dxn, a->h_in, ssm_params_data(ps, l->norm), a->rstd, M, dm);
    }
    if (m->emb >= 0) embedding_backward(ssm_params_grad(ps, m->emb), m->dh, m->tokens, M, dm);
    else linear_backward(NULL, ssm_params_grad(ps, m->enc_w), ssm_params_grad(ps, m->enc_b), m->dh, m->features,
                         ssm_params_data(ps, m->enc_w), M, c->d_input, dm);
}
