/* test_model_ref.c - whole-model loss and gradients of tiny Mamba and S4D models (token LM and
 * feature classifier variants, odd sizes; S4D and S4 (DPLR kernel)) against the PyTorch float64 reference
 * tests/ref/model_ref.py: the same loss and every gradient to 1e-4 relative error.
 * Also: the Mamba forward in recurrent mode (one token at a time, state carried) equals the
 * full-sequence forward.  And a few steps of the training loop (AdamW with its parameter groups,
 * weight decay, clipping, warmup + cosine) against tests/ref/train_ref.py, which replays them in
 * float64: the gradient check alone would not catch a wrong optimizer group or schedule.  Needs Debian's python3-torch (SSM_PYTHON overrides /usr/bin/python3). */
#include "check.h"
#include "cli.h"
#include "model_mamba.h"
#include "model_s4d.h"
#include "nn.h"
#include "optim.h"
#include "stream.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void perturb(ssm_params *ps, double scale) {
    for (int64_t i = 0; i < ps->total; i++) ps->data[i] += (float)(scale * test_normal());
}

/* Writes the case, runs the reference, CHECKs its verdict. */
static void run_reference(const char *label, ssm_tensor *config, ssm_params *ps, const int32_t *tokens,
                          const float *feats, int batch, int L, int d_input, const int32_t *targets,
                          int ntargets, double loss) {
    char path[] = "/tmp/ssm_model_ref_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    close(fd);
    ssm_tensor_set set;
    ssm_set_init(&set);
    ssm_set_put(&set, config);
    ssm_params_to_set(ps, ps->data, "", &set);
    ssm_params_to_set(ps, ps->grad, "grad.", &set);
    if (tokens) {
        ssm_tensor *t = ssm_tensor_new("tokens", SSM_I32, 2, (int64_t[]){batch, L});
        memcpy(t->data, tokens, (size_t)batch * L * sizeof(int32_t));
        ssm_set_put(&set, t);
    } else {
        ssm_tensor *t = ssm_tensor_new("features", SSM_F32, 3, (int64_t[]){batch, L, d_input});
        memcpy(t->data, feats, (size_t)batch * L * d_input * sizeof(float));
        ssm_set_put(&set, t);
    }
    ssm_tensor *tt = ssm_tensor_new("targets", SSM_I32, 1, (int64_t[]){ntargets});
    memcpy(tt->data, targets, (size_t)ntargets * sizeof(int32_t));
    ssm_set_put(&set, tt);
    ssm_tensor *lt = ssm_tensor_new("loss", SSM_F64, 0, NULL);
    *(double *)lt->data = loss;
    ssm_set_put(&set, lt);
    ssm_writer *w = ssm_writer_open(path, 0);
    for (int i = 0; i < set.n; i++) CHECK(ssm_writer_write(w, set.items[i]) == 0, "write");
    CHECK(ssm_writer_close(w, NULL, 0) == 0, "close");
    ssm_set_free(&set);
    const char *py = getenv("SSM_PYTHON") ? getenv("SSM_PYTHON") : "/usr/bin/python3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s tests/ref/model_ref.py %s 1e-4 2>&1", py, path);
    FILE *p = popen(cmd, "r");
    char line[512], last[512] = "";
    while (p && fgets(line, sizeof line, p)) { snprintf(last, sizeof last, "%s", line); if (getenv("SSM_VERBOSE")) fputs(line, stderr); }
    int st = p ? pclose(p) : -1;
    last[strcspn(last, "\n")] = 0;
    CHECK(st == 0, "%s: PyTorch reference: %s (rerun: %s)", label, last, cmd);
    fprintf(stderr, "%s: %s\n", label, last);
    if (st == 0) unlink(path);
}

static void test_mamba(int classify) {
    mamba_config c = mamba_config_default();
    c.d_model = 8; c.n_layers = 2; c.d_state = 5; c.expand = 2; c.d_conv = 4; c.dt_rank = 2;
    int batch = 2, L = 9;
    if (classify) { c.vocab_size = 0; c.d_input = 3; c.n_classes = 4; }
    else { c.vocab_size = 7; c.tie_embeddings = 1; }
    mamba_model *m = mamba_new(&c);
    mamba_init_params(m, test_next());
    ssm_params *ps = mamba_params(m);
    perturb(ps, 0.1);
    int32_t tokens[18], targets[18];
    float feats[2 * 9 * 3];
    for (int i = 0; i < batch * L; i++) {
        tokens[i] = (int32_t)(test_next() % 7);
        targets[i] = i % 5 == 3 ? -1 : (int32_t)(test_next() % 7);
    }
    for (int i = 0; i < batch * L * 3; i++) feats[i] = (float)test_normal();
    if (classify) for (int b = 0; b < batch; b++) targets[b] = (int32_t)(test_next() % 4);
    ssm_params_zero_grad(ps);
    float loss = mamba_forward(m, classify ? NULL : tokens, classify ? feats : NULL, batch, L, targets, NULL);
    mamba_backward(m);
    ssm_tensor *cfg = ssm_tensor_new("config", SSM_U8, 1, (int64_t[]){0});
    mamba_config_to_attrs(mamba_get_config(m), cfg);
    run_reference(classify ? "mamba classifier" : "mamba LM", cfg, ps, classify ? NULL : tokens, feats, batch, L, 3,
                  targets, classify ? batch : batch * L, loss);

    /* recurrent mode: one call per token with the state carried == the full forward */
    if (!classify) {
        int V = c.vocab_size;
        float *full = malloc((size_t)batch * L * V * sizeof(float));
        memcpy(full, mamba_logits(m), (size_t)batch * L * V * sizeof(float));
        mamba_state *s = mamba_state_new(m, batch);
        double *ref = malloc((size_t)batch * L * V * sizeof(double));
        float *step = malloc((size_t)batch * L * V * sizeof(float));
        for (int t = 0; t < L; t++) {
            int32_t tok[2] = {tokens[t], tokens[L + t]};
            mamba_forward(m, tok, NULL, batch, 1, NULL, s);
            for (int b = 0; b < batch; b++) memcpy(step + ((int64_t)b * L + t) * V, mamba_logits(m) + b * V, (size_t)V * sizeof(float));
        }
        for (int64_t i = 0; i < (int64_t)batch * L * V; i++) ref[i] = full[i];
        CHECK_REL_ERR(rel_err_f32(step, ref, batch * L * V), 1e-5, "mamba step-by-step logits vs full sequence");
        /* a prefix of 4 then 5 more tokens in one call */
        mamba_state_reset(s);
        int32_t pre[8] = {tokens[0], tokens[1], tokens[2], tokens[3], tokens[9], tokens[10], tokens[11], tokens[12]};
        int32_t post[10] = {tokens[4], tokens[5], tokens[6], tokens[7], tokens[8], tokens[13], tokens[14], tokens[15], tokens[16], tokens[17]};
        mamba_forward(m, pre, NULL, batch, 4, NULL, s);
        mamba_forward(m, post, NULL, batch, 5, NULL, s);
        float chunk[2 * 5 * 7];
        double want[2 * 5 * 7];
        memcpy(chunk, mamba_logits(m), sizeof chunk);
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < 5; t++)
                for (int v = 0; v < V; v++) want[(b * 5 + t) * V + v] = full[((int64_t)b * L + 4 + t) * V + v];
        CHECK_REL_ERR(rel_err_f32(chunk, want, 2 * 5 * 7), 1e-5, "mamba chunked prefill with state vs full sequence");
        mamba_state_free(s);
        free(full); free(ref); free(step);
    }
    mamba_free(m);
}

static void test_s4d(int classify, int pool_last, int dplr) {
    s4d_config c = s4d_config_default();
    c.d_model = 6; c.n_layers = 2; c.d_state = 6; c.dropout = 0; c.dplr = dplr;
    int batch = 2, L = 10;
    if (classify) { c.vocab_size = 0; c.d_input = 2; c.n_classes = 3; c.pool_last = pool_last; }
    else c.vocab_size = 5;
    s4d_model *m = s4d_new(&c);
    s4d_init_params(m, test_next());
    ssm_params *ps = s4d_params(m);
    perturb(ps, 0.05);
    int32_t tokens[20], targets[20];
    float feats[2 * 10 * 2];
    for (int i = 0; i < batch * L; i++) {
        tokens[i] = (int32_t)(test_next() % 5);
        targets[i] = i % 7 == 2 ? -1 : (int32_t)(test_next() % 5);
    }
    for (int i = 0; i < batch * L * 2; i++) feats[i] = (float)test_normal();
    if (classify) for (int b = 0; b < batch; b++) targets[b] = (int32_t)(test_next() % 3);
    ssm_params_zero_grad(ps);
    float loss = s4d_forward(m, classify ? NULL : tokens, classify ? feats : NULL, batch, L, targets, 1, 7);
    s4d_backward(m);
    ssm_tensor *cfg = ssm_tensor_new("config", SSM_U8, 1, (int64_t[]){0});
    s4d_config_to_attrs(s4d_get_config(m), cfg);
    char label[64];
    snprintf(label, sizeof label, "%s %s", dplr ? "s4" : "s4d", classify ? (pool_last ? "classifier (last)" : "classifier (mean)") : "LM");
    run_reference(label, cfg, ps,
                  classify ? NULL : tokens, feats, batch, L, 2, targets, classify ? batch : batch * L, loss);
    s4d_free(m);
}

/* Runs the reference script on a case file, CHECKs its verdict. */
static void run_script(const char *label, const char *script, const char *tol, ssm_tensor_set *set) {
    char path[] = "/tmp/ssm_train_ref_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    close(fd);
    ssm_writer *w = ssm_writer_open(path, 0);
    for (int i = 0; i < set->n; i++) CHECK(ssm_writer_write(w, set->items[i]) == 0, "write");
    CHECK(ssm_writer_close(w, NULL, 0) == 0, "close");
    const char *py = getenv("SSM_PYTHON") ? getenv("SSM_PYTHON") : "/usr/bin/python3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s %s %s 2>&1", py, script, path, tol);
    FILE *p = popen(cmd, "r");
    char line[512], last[512] = "";
    while (p && fgets(line, sizeof line, p)) { snprintf(last, sizeof last, "%s", line); if (getenv("SSM_VERBOSE")) fputs(line, stderr); }
    int st = p ? pclose(p) : -1;
    last[strcspn(last, "\n")] = 0;
    CHECK(st == 0, "%s: PyTorch reference: %s (rerun: %s)", label, last, cmd);
    fprintf(stderr, "%s: %s\n", label, last);
    if (st == 0) unlink(path);
}

/* STEPS optimizer steps of a tiny LM on fresh random batches, with every optimizer feature active:
 * weight decay, a separate ssm_lr (S4D's SSM group), clipping below the gradient norm, warmup then
 * cosine down to min_lr_ratio within the run. */
static void test_training(int is_mamba) {
    enum { STEPS = 6, BATCH = 2, L = 9, V = 7 };
    mamba_model *mm = NULL;
    s4d_model *sm = NULL;
    ssm_params *ps;
    ssm_tensor *cfg = ssm_tensor_new("config", SSM_U8, 1, (int64_t[]){0});
    if (is_mamba) {
        mamba_config c = mamba_config_default();
        c.d_model = 8; c.n_layers = 2; c.d_state = 5; c.dt_rank = 2; c.vocab_size = V;
        mm = mamba_new(&c);
        mamba_init_params(mm, test_next());
        ps = mamba_params(mm);
        mamba_config_to_attrs(mamba_get_config(mm), cfg);
    } else {
        s4d_config c = s4d_config_default();
        c.d_model = 6; c.n_layers = 2; c.d_state = 6; c.dropout = 0; c.vocab_size = V;
        sm = s4d_new(&c);
        s4d_init_params(sm, test_next());
        ps = s4d_params(sm);
        s4d_config_to_attrs(s4d_get_config(sm), cfg);
    }
    adamw o = adamw_default();
    o.lr = 2e-2f; o.ssm_lr = 5e-3f; o.weight_decay = 0.1f; o.clip = 0.3f;
    o.warmup = 2; o.total_steps = STEPS; o.min_lr_ratio = 0.1f;
    adamw_alloc(&o, ps);
    ssm_tensor_set set;
    ssm_set_init(&set);
    ssm_set_put(&set, cfg);
    ssm_tensor *ot = ssm_tensor_new("optim", SSM_U8, 1, (int64_t[]){0});
    ssm_tensor_set_attrf(ot, "lr", "%.9g", o.lr); ssm_tensor_set_attrf(ot, "ssm_lr", "%.9g", o.ssm_lr);
    ssm_tensor_set_attrf(ot, "weight_decay", "%.9g", o.weight_decay); ssm_tensor_set_attrf(ot, "beta1", "%.9g", o.beta1);
    ssm_tensor_set_attrf(ot, "beta2", "%.9g", o.beta2); ssm_tensor_set_attrf(ot, "eps", "%.9g", o.eps);
    ssm_tensor_set_attrf(ot, "clip", "%.9g", o.clip); ssm_tensor_set_attrf(ot, "warmup", "%lld", (long long)o.warmup);
    ssm_tensor_set_attrf(ot, "total_steps", "%lld", (long long)o.total_steps);
    ssm_tensor_set_attrf(ot, "min_lr_ratio", "%.9g", o.min_lr_ratio);
    ssm_set_put(&set, ot);
    int first = set.n;
    ssm_params_to_set(ps, ps->data, "init.", &set);
    for (int i = first; i < set.n; i++) ssm_tensor_set_attrf(set.items[i], "group", "%d", ps->p[i - first].group);
    ssm_tensor *tt = ssm_tensor_new("tokens", SSM_I32, 3, (int64_t[]){STEPS, BATCH, L});
    ssm_tensor *gt = ssm_tensor_new("targets", SSM_I32, 2, (int64_t[]){STEPS, BATCH * L});
    ssm_tensor *lt = ssm_tensor_new("losses", SSM_F64, 1, (int64_t[]){STEPS});
    int32_t *tok = (int32_t *)tt->data, *tgt = (int32_t *)gt->data;
    double maxnorm = 0;
    for (int s = 0; s < STEPS; s++) {
        int32_t *ts = tok + s * BATCH * L, *gs = tgt + s * BATCH * L;
        for (int i = 0; i < BATCH * L; i++) {
            ts[i] = (int32_t)(test_next() % V);
            gs[i] = i % 4 == 1 ? -1 : (int32_t)(test_next() % V);
        }
        ssm_params_zero_grad(ps);
        float loss = is_mamba ? mamba_forward(mm, ts, NULL, BATCH, L, gs, NULL) : s4d_forward(sm, ts, NULL, BATCH, L, gs, 1, 3);
        if (is_mamba) mamba_backward(mm); else s4d_backward(sm);
        ((double *)lt->data)[s] = loss;
        double norm = adamw_step(&o, ps);
        if (norm > maxnorm) maxnorm = norm;
    }
    CHECK(maxnorm > o.clip, "the case clips (max gradient norm %g, clip %g)", maxnorm, (double)o.clip);
    ssm_set_put(&set, tt); ssm_set_put(&set, gt); ssm_set_put(&set, lt);
    ssm_params_to_set(ps, ps->data, "final.", &set);
    run_script(is_mamba ? "mamba training steps" : "s4d training steps", "tests/ref/train_ref.py", "1e-4", &set);
    ssm_set_free(&set);
    adamw_free(&o);
    if (mm) mamba_free(mm);
    if (sm) s4d_free(sm);
}

int main(void) {
    test_seed_from_env("test_model_ref");
    nn_set_threads(2);
    test_mamba(0);
    test_mamba(1);
    test_s4d(0, 0, 0);
    test_s4d(1, 0, 0);
    test_s4d(1, 1, 0);
    test_s4d(0, 0, 1);   /* S4: the DPLR/Cauchy kernel */
    test_s4d(1, 1, 1);
    test_training(1);
    test_training(0);
    return check_summary("test_model_ref");
}
