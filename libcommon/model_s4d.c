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
#include "device.h"
#include "hippo.h"
#include "nn.h"
#include "nplr.h"
#include "s4_kernel.h"
#include "s4d_ops.h"
#include "ssm_kernel.h"
#ifdef SSM_HAVE_CUDA
#include "selective_scan_cuda.h"
#include "ssm_kernel_cuda.h"
#endif

/* --device cuda (device.h): every buffer here is GPU memory, every loop an op of nn.h, the kernel
 * and the convolution their CUDA versions (kernels/ssm_kernel_cuda.h). */

typedef struct { int norm_w, norm_b, log_dt, A_re, A_im, B, C, D, out_w, out_b; } s4d_layer_index;
/* S4 (dplr): A_re, A_im are Lambda_real_log, Lambda_imag; P (H, R, M) is indexed here */
typedef struct { int P; } s4_layer_index;
typedef struct { float *h_in, *mean, *rstd, *xn, *xt, *K, *A, *yt, *ys, *g, *gd, *o; } s4d_layer_acts;

struct s4d_model {
    s4d_config c;
    int M;                /* complex modes */
    int n_out;
    ssm_params ps;
    int emb, enc_w, enc_b, dec_w, dec_b;
    s4d_layer_index *li;
    s4_layer_index *li4;  /* S4 only */
    float *sdP;           /* S4 only: dP (H, R, M) complex of one layer */
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
    int32_t *tok_buf;        /* the inputs of the last forward, in the model's memory */
    float *feat_buf, *logits_host;
};

s4d_config s4d_config_default(void) {
    s4d_config c = {0};
    c.d_model = 64; c.n_layers = 4; c.d_state = 64; c.vocab_size = 0; c.d_input = 1; c.n_classes = 0;
    c.pool_last = 0; c.dropout = 0.0f; c.dt_min = 0.001f; c.dt_max = 0.1f;
    c.dplr = 0; c.rank = 1;
    return c;
}

void s4d_config_to_attrs(const s4d_config *c, ssm_tensor *t) {
    ssm_tensor_set_attr(t, "model", c->dplr ? "s4" : "s4d");
    if (c->dplr) ssm_tensor_set_attrf(t, "rank", "%d", c->rank);
    if (c->dplr && c->l_kernel > 0) ssm_tensor_set_attrf(t, "l_kernel", "%d", c->l_kernel);
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
    if (!model || (strcmp(model, "s4d") && strcmp(model, "s4")))
        ssm_die("tensor '%s': model=%s, expected s4d or s4", t->name, model ? model : "(none)");
    s4d_config c = s4d_config_default();
    c.dplr = strcmp(model, "s4") == 0;
    if (c.dplr) c.rank = ssm_tensor_attr_count(t, "rank", 1, 1);
    if (c.dplr) c.l_kernel = ssm_tensor_attr_count(t, "l_kernel", 0, 0);
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
    if (c.dplr && (c.rank < 1 || c.rank > S4_KERNEL_MAX_RANK)) ssm_die("s4: rank %d not in 1..%d", c.rank, S4_KERNEL_MAX_RANK);
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
    m->li4 = ssm_xcalloc((size_t)c.n_layers, sizeof *m->li4);
    for (int i = 0; i < c.n_layers; i++) {
        s4d_layer_index *l = &m->li[i];
        l->norm_w = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){H}, "layers.%d.norm.weight", i);
        l->norm_b = ssm_params_add(ps, SSM_F32, SSM_GROUP_NO_DECAY, 1, (int64_t[]){H}, "layers.%d.norm.bias", i);
        l->log_dt = ssm_params_add(ps, SSM_F32, SSM_GROUP_SSM, 1, (int64_t[]){H}, "layers.%d.ssm.log_dt", i);
        l->A_re = ssm_params_add(ps, SSM_F32, SSM_GROUP_SSM, 2, (int64_t[]){H, Mm}, c.dplr ? "layers.%d.ssm.Lambda_real_log" : "layers.%d.ssm.A_real_log", i);
        l->A_im = ssm_params_add(ps, SSM_F32, SSM_GROUP_SSM, 2, (int64_t[]){H, Mm}, c.dplr ? "layers.%d.ssm.Lambda_imag" : "layers.%d.ssm.A_imag", i);
        m->li4[i].P = c.dplr ? ssm_params_add(ps, SSM_C64, SSM_GROUP_SSM, 3, (int64_t[]){H, c.rank, Mm}, "layers.%d.ssm.P", i) : -1;
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
        for (size_t k = 0; k < sizeof b / sizeof *b; k++) ssm_buf_free(b[k]);
    }
    free(m->acts);
    m->acts = NULL;
    float *b[] = {m->h_out, m->pooled, m->logits, m->probs, m->glu, m->dh, m->dglu_o, m->dgd, m->dg, m->dys, m->dyt,
                  m->dxt, m->dxn, m->dK, m->dA, m->dlogits, m->dpooled, m->dfeat, m->sdlog_dt, m->sdB, m->sdC, m->sdD,
                  m->feat_buf};
    for (size_t k = 0; k < sizeof b / sizeof *b; k++) ssm_buf_free(b[k]);
    ssm_buf_free(m->targets);
    ssm_buf_free(m->tok_buf);
    ssm_host_free(m->logits_host);
    ssm_buf_free(m->sdP);
    m->targets = m->tok_buf = NULL;
    m->sdP = NULL;
    free(m->drop_mask);
    m->drop_mask = NULL;
    m->logits_host = NULL;
}

void s4d_free(s4d_model *m) {
    if (!m) return;
    free_acts(m);
    s4d_workspace_free(m->ws);
    free(m->li);
    free(m->li4);
    ssm_params_free(&m->ps);
    free(m);
}
const s4d_config *s4d_get_config(const s4d_model *m) { return &m->c; }
ssm_params *s4d_params(s4d_model *m) { return &m->ps; }

#define FALLOC(n) ((float *)ssm_buf_calloc((size_t)(n) + 1, sizeof(float)))

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
    m->targets = ssm_buf_calloc((size_t)rows + 1, sizeof(int32_t));
    m->tok_buf = ssm_buf_calloc((size_t)rows + 1, sizeof(int32_t));
    m->feat_buf = m->c.vocab_size > 0 ? NULL : FALLOC(rows * m->c.d_input);
    m->logits_host = ssm_compute_on_gpu() ? ssm_host_calloc((size_t)(out_rows * V) + 1, sizeof(float)) : NULL;
    if (m->c.dropout > 0) m->drop_mask = ssm_xmalloc((size_t)(m->c.n_layers * rows * H) + 1);
    if (m->c.dplr) m->sdP = FALLOC(2 * H * m->c.rank * Mm);
}

/* S4's init of layer i: HiPPO-LegS in DPLR form (nplr.h), the same for every channel:
 * Lambda_real_log = log(-Re Lambda), Lambda_imag = Im Lambda, P = Vh* P_legs, B = Vh* B_legs. */
static void s4_init_legs(s4d_model *m, int i) {
    int N = m->c.d_state, Mm = m->M, R = m->c.rank;
    int64_t H = m->c.d_model;
    double *A = ssm_xcalloc((size_t)N * N, sizeof(double)), *Bl = ssm_xcalloc((size_t)N, sizeof(double));
    double *Pl = ssm_xcalloc((size_t)N * R, sizeof(double)), *lam = ssm_xmalloc((size_t)(2 * Mm) * sizeof(double));
    double *Vh = ssm_xmalloc((size_t)(2 * N * Mm) * sizeof(double)), *bh = ssm_xmalloc((size_t)(2 * Mm) * sizeof(double));
    double *ph = ssm_xcalloc((size_t)(2 * R * Mm), sizeof(double));
    int r = hippo_matrices(SSM_INIT_LEGS, N, A, Bl, Pl);   /* r = 1; rows of P beyond r stay zero */
    char err[256];
    if (nplr_decompose(N, r, A, Pl, lam, Vh, NULL, err, sizeof err)) ssm_die("s4: HiPPO-LegS init: %s", err);
    nplr_project_column(N, Mm, Vh, Bl, bh);
    for (int k = 0; k < r && k < R; k++) nplr_project_column(N, Mm, Vh, Pl + (size_t)k * N, ph + 2 * k * Mm);
    const ssm_params *ps = &m->ps;
    const s4d_layer_index *l = &m->li[i];
    float *are = ssm_params_data(ps, l->A_re), *aim = ssm_params_data(ps, l->A_im);
    float *B = ssm_params_data(ps, l->B), *P = ssm_params_data(ps, m->li4[i].P);
    for (int64_t h = 0; h < H; h++) {
        for (int n = 0; n < Mm; n++) {
            /* LegS: Re Lambda = -1/2 exactly; keep it strictly negative */
            are[h * Mm + n] = (float)log(fmax(-lam[2 * n], 1e-4));
            aim[h * Mm + n] = (float)lam[2 * n + 1];
            B[2 * (h * Mm + n)] = (float)bh[2 * n]; B[2 * (h * Mm + n) + 1] = (float)bh[2 * n + 1];
        }
        for (int64_t k = 0; k < 2 * R * Mm; k++) P[2 * h * R * Mm + k] = (float)ph[k];
    }
    free(A); free(Bl); free(Pl); free(lam); free(Vh); free(bh); free(ph);
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
        if (c->dplr) s4_init_legs(m, i);   /* Lambda, P, B; C and the rest below as S4D */
        double *alin = ssm_xmalloc((size_t)(2 * Mm) * sizeof(double));
        s4d_lin_A((int)(2 * Mm), alin);             /* S4D-Lin: A = -1/2 + i pi n (hippo.c) */
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < Mm; n++) {
                if (!c->dplr) {
                    are[h * Mm + n] = (float)log(-alin[2 * n]);
                    aim[h * Mm + n] = (float)alin[2 * n + 1];
                    B[2 * (h * Mm + n)] = 1; B[2 * (h * Mm + n) + 1] = 0;
                }
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

#ifdef SSM_HAVE_CUDA
/* (batch, L, H) <-> (batch, H, L) on the GPU (the CPU path transposes inside s4d_ops.c) */
static void transpose_blh(float *out, const float *in, int64_t B, int64_t L, int64_t H) { nn_transpose(out, in, B, L, H); }
static void transpose_bhl(float *out, const float *in, int64_t B, int64_t L, int64_t H) { nn_transpose(out, in, B, H, L); }
#endif

static uint64_t layer_seed(uint64_t seed, int i) { return seed * 0x9e3779b97f4a7c15ull + (uint64_t)(i + 1) * 0xbf58476d1ce4e5b9ull; }

float s4d_forward(s4d_model *m, const int32_t *tokens, const float *features, int batch, int L,
                  const int32_t *targets, int training, uint64_t dropout_seed) {
    const s4d_config *c = &m->c;
    int64_t Mr = (int64_t)batch * L, H = c->d_model, Mm = m->M;
    if (!m->acts || Mr > m->cap_rows || batch > m->cap_batch || L != m->L) ensure_acts(m, batch, L);
    const ssm_params *ps = &m->ps;
    m->batch = batch; m->L = L;
    int use_tok = m->emb >= 0 && tokens, use_feat = m->emb < 0 && features;
    if (use_tok) ssm_buf_from_host(m->tok_buf, tokens, (size_t)Mr * sizeof(int32_t));
    if (use_feat) ssm_buf_from_host(m->feat_buf, features, (size_t)(Mr * c->d_input) * sizeof(float));
    m->tokens = use_tok ? m->tok_buf : NULL;
    m->features = use_feat ? m->feat_buf : NULL;
    m->has_targets = targets != NULL; m->training = training; m->dropout_seed = dropout_seed;
    float p = training ? c->dropout : 0.0f;
    float *h = m->acts[0].h_in;
    if (m->emb >= 0) {
        for (int64_t i = 0; i < Mr; i++)
            if (tokens[i] < 0 || tokens[i] >= c->vocab_size) ssm_die("s4d: token %d out of range [0, %d)", tokens[i], c->vocab_size);
        embedding_forward(h, m->tokens, ssm_params_data(ps, m->emb), Mr, H);
    } else {
        linear_forward(h, m->features, ssm_params_data(ps, m->enc_w), ssm_params_data(ps, m->enc_b), Mr, c->d_input, H);
    }
    for (int i = 0; i < c->n_layers; i++) {
        const s4d_layer_index *l = &m->li[i];
        s4d_layer_acts *a = &m->acts[i];
        float *hnext = i + 1 < c->n_layers ? m->acts[i + 1].h_in : m->h_out;
        const float *are = ssm_params_data(ps, l->A_re), *aim = ssm_params_data(ps, l->A_im);
        nn_s4d_A_forward(a->A, are, aim, H * Mm);
        /* the kernel K (H, L): S4's DPLR kernel (on the host, also with --device cuda), or S4D's */
        if (c->dplr) {
            if (ssm_compute_on_gpu()) ssm_buf_sync();   /* a->A was written by the GPU */
            if (s4_kernel_forward_f32(H, Mm, c->rank, L, ssm_params_data(ps, l->log_dt), a->A, ssm_params_data(ps, m->li4[i].P),
                                      ssm_params_data(ps, l->B), ssm_params_data(ps, l->C), a->K))
                ssm_die("s4: layer %d: the DPLR kernel is not finite (singular Woodbury system)", i);
        } else
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu())
            ssm_dev_check("S4D kernel", s4d_kernel_forward_cuda(H, Mm, L, ssm_params_data(ps, l->log_dt), a->A,
                                                                ssm_params_data(ps, l->B), ssm_params_data(ps, l->C), a->K, NULL));
        else
#endif
            s4d_kernel_forward_f32(H, Mm, L, ssm_params_data(ps, l->log_dt), a->A, ssm_params_data(ps, l->B),
                                   ssm_params_data(ps, l->C), a->K);
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu()) {
            /* GPU: the layer as separate ops of nn.h, each on the device */
            layernorm_forward(a->xn, a->mean, a->rstd, a->h_in, ssm_params_data(ps, l->norm_w), ssm_params_data(ps, l->norm_b), Mr, H, 1e-5f);
            transpose_blh(a->xt, a->xn, batch, L, H);
            ssm_dev_check("FFT convolution", fft_conv_forward_cuda(batch, H, L, a->xt, a->K, ssm_params_data(ps, l->D), a->yt, NULL));
            transpose_bhl(a->ys, a->yt, batch, L, H);
            gelu_forward(a->g, a->ys, Mr * H);
            dropout_forward(a->gd, a->g, Mr * H, p, layer_seed(dropout_seed, i));
            linear_forward(a->o, a->gd, ssm_params_data(ps, l->out_w), ssm_params_data(ps, l->out_b), Mr, H, 2 * H);
            glu_forward(m->glu, a->o, Mr, H);
            nn_copy(hnext, a->h_in, Mr * H);
            nn_add(hnext, m->glu, Mr * H);
            continue;
        }
#endif
        /* CPU: LayerNorm, convolution, GELU and dropout fused per sequence (s4d_ops.h) */
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
            nn_copy2d(m->pooled, H, m->h_out + (int64_t)(L - 1) * H, (int64_t)L * H, batch, H);
        else meanpool_forward(m->pooled, m->h_out, batch, L, H);
        linear_forward(m->logits, m->pooled, ssm_params_data(ps, m->dec_w), ssm_params_data(ps, m->dec_b), batch, H, m->n_out);
        if (targets) {
            for (int b = 0; b < batch; b++)
                if (targets[b] >= m->n_out) ssm_die("s4d: class %d out of range [0, %d)", targets[b], m->n_out);
            ssm_buf_from_host(m->targets, targets, (size_t)batch * sizeof(int32_t));
            loss = crossentropy_forward(m->probs, m->logits, m->targets, batch, m->n_out, &m->counted, &m->correct);
        }
    } else {
        linear_forward(m->logits, m->h_out, ssm_params_data(ps, m->dec_w), ssm_params_data(ps, m->dec_b), Mr, H, m->n_out);
        if (targets) {
            for (int64_t i = 0; i < Mr; i++)
                if (targets[i] >= m->n_out) ssm_die("s4d: target %d out of range [0, %d)", targets[i], m->n_out);
            ssm_buf_from_host(m->targets, targets, (size_t)Mr * sizeof(int32_t));
            loss = crossentropy_forward(m->probs, m->logits, m->targets, Mr, m->n_out, &m->counted, &m->correct);
        }
    }
    return (float)loss;
}

const float *s4d_logits(const s4d_model *m) {
    if (!m->logits_host) return m->logits;
    int64_t n = (m->c.n_classes > 0 ? (int64_t)m->batch : (int64_t)m->batch * m->L) * m->n_out;
    ssm_buf_to_host(m->logits_host, m->logits, (size_t)n * sizeof(float));
    return m->logits_host;
}
void s4d_accuracy(const s4d_model *m, int64_t *correct, int64_t *counted) {
    if (correct) *correct = m->correct;
    if (counted) *counted = m->counted;
}

static void zero(float *p, int64_t n) { nn_zero(p, n); }

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
            nn_add2d(m->dh + (int64_t)(L - 1) * H, (int64_t)L * H, m->dpooled, H, batch, H);
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
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu()) {
            /* GPU: the separate ops of nn.h, each on the device */
            zero(m->dglu_o, Mr * 2 * H);
            glu_backward(m->dglu_o, m->dh, a->o, Mr, H);
            zero(m->dgd, Mr * H);
            linear_backward(m->dgd, ssm_params_grad(ps, l->out_w), ssm_params_grad(ps, l->out_b), m->dglu_o, a->gd,
                            ssm_params_data(ps, l->out_w), Mr, H, 2 * H);
            zero(m->dg, Mr * H);
            dropout_backward(m->dg, m->dgd, Mr * H, p, layer_seed(m->dropout_seed, i));
            zero(m->dys, Mr * H);
            gelu_backward(m->dys, m->dg, a->ys, Mr * H);
            transpose_blh(m->dyt, m->dys, batch, L, H);
            ssm_dev_check("FFT convolution backward", fft_conv_backward_cuda(batch, H, L, a->xt, a->K, ssm_params_data(ps, l->D),
                                                                             m->dyt, m->dxt, m->dK, m->sdD, NULL));
        } else
#endif
        {
            /* CPU: fused passes (s4d_ops.h); dK, sdD and the LayerNorm's dh out */
            s4d_glu_backward(m->dglu_o, ssm_params_grad(ps, l->out_b), m->dh, a->o, Mr, H);
            s4d_linear_backward_rows(m->ws, m->dgd, ssm_params_grad(ps, l->out_w), m->dglu_o, a->gd, ssm_params_data(ps, l->out_w),
                                     Mr, H, 2 * H);
            s4d_conv_backward_fused(m->ws, m->dh, ssm_params_grad(ps, l->norm_w), ssm_params_grad(ps, l->norm_b), m->dK, m->sdD,
                                    m->dgd, a->ys, p > 0 ? m->drop_mask + i * Mr * H : NULL, NULL, a->h_in,
                                    ssm_params_data(ps, l->norm_w), ssm_params_data(ps, l->norm_b), a->mean, a->rstd, a->K,
                                    ssm_params_data(ps, l->D), batch, L, H, 1e-5f, p);
        }
        /* the kernel's gradient from dK */
        if (c->dplr) {
            if (ssm_compute_on_gpu()) ssm_buf_sync();   /* dK was written by the GPU */
            s4_kernel_backward_f32(H, Mm, c->rank, L, ssm_params_data(ps, l->log_dt), a->A, ssm_params_data(ps, m->li4[i].P),
                                   ssm_params_data(ps, l->B), ssm_params_data(ps, l->C), m->dK, m->sdlog_dt, m->dA, m->sdP,
                                   m->sdB, m->sdC);
            nn_add(ssm_params_grad(ps, m->li4[i].P), m->sdP, 2 * H * c->rank * Mm);
        } else
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu())
            ssm_dev_check("S4D kernel backward", s4d_kernel_backward_cuda(H, Mm, L, ssm_params_data(ps, l->log_dt), a->A,
                                                                          ssm_params_data(ps, l->B), ssm_params_data(ps, l->C), m->dK,
                                                                          m->sdlog_dt, m->dA, m->sdB, m->sdC, NULL));
        else
#endif
            s4d_kernel_backward_f32(H, Mm, L, ssm_params_data(ps, l->log_dt), a->A, ssm_params_data(ps, l->B),
                                    ssm_params_data(ps, l->C), m->dK, m->sdlog_dt, m->dA, m->sdB, m->sdC);
        nn_add(ssm_params_grad(ps, l->D), m->sdD, H);
        nn_add(ssm_params_grad(ps, l->log_dt), m->sdlog_dt, H);
        /* A = -exp(A_real_log) + i A_imag */
        nn_s4d_A_backward(ssm_params_grad(ps, l->A_re), ssm_params_grad(ps, l->A_im), m->dA, a->A, H * Mm);
        nn_add(ssm_params_grad(ps, l->B), m->sdB, 2 * H * Mm);
        nn_add(ssm_params_grad(ps, l->C), m->sdC, 2 * H * Mm);
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu()) {
            zero(m->dxn, Mr * H);
            transpose_bhl(m->dxn, m->dxt, batch, L, H);
            layernorm_backward(m->dh, ssm_params_grad(ps, l->norm_w), ssm_params_grad(ps, l->norm_b), m->dxn, a->h_in,
                               ssm_params_data(ps, l->norm_w), a->mean, a->rstd, Mr, H);
        }
#endif
    }
    if (m->emb >= 0) embedding_backward(ssm_params_grad(ps, m->emb), m->dh, m->tokens, Mr, H);
    else linear_backward(NULL, ssm_params_grad(ps, m->enc_w), ssm_params_grad(ps, m->enc_b), m->dh, m->features,
                         ssm_params_data(ps, m->enc_w), Mr, c->d_input, H);
}
