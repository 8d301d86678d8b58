/* test_s4d_generate.c - what generation relies on in the S4D model (s4d_recurrent.h), on fresh
 * random models of odd sizes (H odd, M = 1 and 3, prompts not a power of two):
 * (1) the parallel pass of s4d_rec_forward equals the training forward s4d_forward (an
 *     independent path: kernel + FFT convolution, no state);
 * (2) step mode equals parallel mode: the logits of every prompt position fed one token at a
 *     time through the recurrent state equal the parallel pass, to 1e-4 relative, and so do the
 *     final states (the parallel pass's state from its per-mode sums);
 * (3) a prompt in uneven chunks carrying the state (the initial-state response) equals one pass;
 * (4) a state copied out and back in (what --state-out/--state-in do) continues exactly as an
 *     uninterrupted run, bit for bit;
 * (5) a layer with no chunk function (how a layer kind with only a step plugs in) gives the
 *     same logits through step calls;
 * (6) one S4D layer against a float64 reference of the recurrence written from REFERENCE 4/6.
 * (1)-(5) also for S4 models (S4's DPLR step, s4_step.h): their "parallel pass" is the step
 * (no chunk function), so (1) is S4's step == the training forward with the Cauchy kernel. */
#include "check.h"
#include "cli.h"
#include "model_s4d.h"
#include "s4d_recurrent.h"

#include <complex.h>
#include <string.h>

static s4d_model *random_model(int d_model, int n_layers, int d_state, int vocab, int dplr, int L) {
    s4d_config c = s4d_config_default();
    c.d_model = d_model; c.n_layers = n_layers; c.d_state = d_state; c.vocab_size = vocab;
    c.dplr = dplr; c.l_kernel = dplr ? L : 0;   /* S4: C-tilde for the prompt's length */
    c.dt_min = 0.01f; c.dt_max = 0.5f;   /* slow and fast modes: long memory is exercised */
    s4d_model *m = s4d_new(&c);
    s4d_init_params(m, test_next());
    ssm_params *ps = s4d_params(m);
    for (int64_t i = 0; i < ps->total; i++) ps->data[i] += 0.05f * (float)test_normal();
    return m;
}

static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int64_t state_floats(const s4d_state *s, int i) { return (int64_t)s->batch * s->H * s->S[i]; }

static void copy_state(s4d_state *dst, const s4d_state *src) {
    for (int i = 0; i < src->n_layers; i++) memcpy(dst->x[i], src->x[i], (size_t)state_floats(src, i) * sizeof(float));
}

static int argmax(const float *x, int n) {
    int k = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[k]) k = i;
    return k;
}

/* a layer that forwards to another one's step only (no chunk), without owning it */
static void step_only(void *ctx, int64_t batch, float *state, const float *u, float *y) {
    const ssm_rec_layer *l = ctx;
    l->step(l->ctx, batch, state, u, y);
}

static void test_model(int H, int n_layers, int d_state, int vocab, int L, int dplr) {
    s4d_model *m = random_model(H, n_layers, d_state, vocab, dplr, L);
    int32_t *tok = ssm_xmalloc((size_t)L * sizeof(int32_t));
    for (int t = 0; t < L; t++) tok[t] = (int32_t)(test_next() % (uint64_t)vocab);
    int64_t n = (int64_t)L * vocab;
    float *train = ssm_xmalloc((size_t)n * sizeof(float)), *par = ssm_xmalloc((size_t)n * sizeof(float));
    s4d_forward(m, tok, NULL, 1, L, NULL, 0, 0);
    memcpy(train, s4d_logits(m), (size_t)n * sizeof(float));

    s4d_rec *r = s4d_rec_new(m);
    s4d_state *sp = s4d_state_new(r, 1);
    s4d_rec_forward(r, tok, NULL, 1, L, sp);
    memcpy(par, s4d_rec_logits(r), (size_t)n * sizeof(float));
    /* S4 layers have no chunk function: the "parallel pass" is S4's step, against the Cauchy kernel */
    CHECK_REL_ERR(rel_err(par, train, n), dplr ? 1e-4 : 1e-5, "%s: parallel pass vs s4d_forward (H %d, M %d, L %d)",
                  dplr ? "s4" : "s4d", H, d_state / 2, L);
    if (dplr) printf("# s4: recurrent steps vs s4d_forward (Cauchy kernel): %.3g (H %d, M %d, L %d)\n", rel_err(par, train, n), H, d_state / 2, L);

    /* step by step */
    s4d_state *ss = s4d_state_new(r, 1);
    double worst = 0;
    int worst_t = -1;
    for (int t = 0; t < L; t++) {
        s4d_rec_forward(r, tok + t, NULL, 1, 1, ss);
        double e = rel_err(s4d_rec_logits(r), par + (int64_t)t * vocab, vocab);
        if (e > worst) { worst = e; worst_t = t; }
    }
    CHECK_REL_ERR(worst, 1e-4, "step vs parallel, worst position %d of %d (H %d, M %d)", worst_t, L, H, d_state / 2);
    printf("# step vs parallel: worst relative error %.3g at position %d of %d (H %d, M %d)\n", worst, worst_t, L, H,
           d_state / 2);
    double se = 0;
    for (int i = 0; i < n_layers; i++) se = fmax(se, rel_err(ss->x[i], sp->x[i], state_floats(ss, i)));
    CHECK_REL_ERR(se, 1e-4, "final states of step and parallel modes");

    /* three uneven chunks carrying the state */
    int c1 = 1 + (int)(test_next() % (uint64_t)(L / 2)), c2 = c1 + 1 + (int)(test_next() % (uint64_t)(L - c1 - 1));
    int cuts[4] = {0, c1, c2, L};
    s4d_state *sc = s4d_state_new(r, 1);
    double ec = 0;
    for (int k = 0; k < 3; k++) {
        int len = cuts[k + 1] - cuts[k];
        s4d_rec_forward(r, tok + cuts[k], NULL, 1, len, sc);
        ec = fmax(ec, rel_err(s4d_rec_logits(r), par + (int64_t)cuts[k] * vocab, (int64_t)len * vocab));
    }
    CHECK_REL_ERR(ec, 1e-4, "prompt in chunks [0,%d) [%d,%d) [%d,%d)", c1, c1, c2, c2, L);
    for (int i = 0; i < n_layers; i++) se = fmax(se, rel_err(sc->x[i], sp->x[i], state_floats(sc, i)));
    CHECK_REL_ERR(se, 1e-4, "final state after chunks");

    /* save / restore: 8 greedy steps from a copied state == uninterrupted, bit for bit */
    s4d_state *saved = s4d_state_new(r, 1);
    copy_state(saved, sp);
    int32_t got[2][8];
    for (int run = 0; run < 2; run++) {
        s4d_state *s = run ? saved : sp;
        float *cur = ssm_xmalloc((size_t)vocab * sizeof(float));
        memcpy(cur, par + (int64_t)(L - 1) * vocab, (size_t)vocab * sizeof(float));
        if (run) {   /* something else runs in between and overwrites the buffers */
            s4d_state *other = s4d_state_new(r, 1);
            s4d_rec_forward(r, tok, NULL, 1, L, other);
            s4d_state_free(other);
        }
        for (int k = 0; k < 8; k++) {
            int32_t next = argmax(cur, vocab);
            got[run][k] = next;
            s4d_rec_forward(r, &next, NULL, 1, 1, s);
            memcpy(cur, s4d_rec_logits(r), (size_t)vocab * sizeof(float));
        }
        free(cur);
    }
    CHECK(memcmp(got[0], got[1], sizeof got[0]) == 0, "restored state continues with the same tokens");
    int same = 1;
    for (int i = 0; i < n_layers; i++) same &= memcmp(sp->x[i], saved->x[i], (size_t)state_floats(sp, i) * sizeof(float)) == 0;
    CHECK(same, "restored run ends in the same state, bit for bit");

    /* a step-only layer (the fallback of ssm_rec_layer_run) in place of layer 0 */
    s4d_rec *r2 = s4d_rec_new(m);
    ssm_rec_layer inner = *s4d_rec_layer(r, 0);
    s4d_rec_set_layer(r2, 0, (ssm_rec_layer){.H = inner.H, .S = inner.S, .ctx = (void *)s4d_rec_layer(r, 0), .step = step_only});
    s4d_state *s2 = s4d_state_new(r2, 1);
    s4d_rec_forward(r2, tok, NULL, 1, L, s2);
    CHECK_REL_ERR(rel_err(s4d_rec_logits(r2), par, n), 1e-4, "model with a step-only layer 0 vs parallel");

    /* batch 2 (the prompt and another one): row 0 equals the batch-1 pass; steps equal parallel */
    int32_t *tok2 = ssm_xmalloc((size_t)(2 * L) * sizeof(int32_t));
    memcpy(tok2, tok, (size_t)L * sizeof(int32_t));
    for (int t = 0; t < L; t++) tok2[L + t] = (int32_t)(test_next() % (uint64_t)vocab);
    s4d_state *sb = s4d_state_new(r, 2), *sbs = s4d_state_new(r, 2);
    s4d_rec_forward(r, tok2, NULL, 2, L, sb);
    float *parb = ssm_xmalloc((size_t)(2 * n) * sizeof(float));
    memcpy(parb, s4d_rec_logits(r), (size_t)(2 * n) * sizeof(float));
    CHECK_REL_ERR(rel_err(parb, par, n), 1e-6, "batch 2, row 0 vs batch 1");
    double eb = 0;
    for (int t = 0; t < L; t++) {
        int32_t two[2] = {tok2[t], tok2[L + t]};
        s4d_rec_forward(r, two, NULL, 2, 1, sbs);
        for (int b = 0; b < 2; b++)
            eb = fmax(eb, rel_err(s4d_rec_logits(r) + b * vocab, parb + ((int64_t)b * L + t) * vocab, vocab));
    }
    CHECK_REL_ERR(eb, 1e-4, "batch 2: step vs parallel");
    free(parb); free(tok2);
    s4d_state_free(sb); s4d_state_free(sbs);

    s4d_state_free(s2);
    s4d_rec_free(r2);
    s4d_state_free(saved);
    s4d_state_free(sc);
    s4d_state_free(ss);
    s4d_state_free(sp);
    s4d_rec_free(r);
    free(train); free(par); free(tok);
    s4d_free(m);
}

/* One layer, batch 2, from a nonzero state, against the recurrence in double:
 * Abar = exp(dt A), Bbar = (Abar - 1)/A B, x <- Abar x + Bbar u, y = 2 Re C x + D u. */
static void test_layer_reference(int64_t H, int64_t M, int64_t L) {
    int64_t batch = 2, n = 2 * H * M;
    float *log_dt = ssm_xmalloc((size_t)H * sizeof(float)), *D = ssm_xmalloc((size_t)H * sizeof(float));
    float *Are = ssm_xmalloc((size_t)(H * M) * sizeof(float)), *Aim = ssm_xmalloc((size_t)(H * M) * sizeof(float));
    float *B = ssm_xmalloc((size_t)n * sizeof(float)), *C = ssm_xmalloc((size_t)n * sizeof(float));
    for (int64_t h = 0; h < H; h++) { log_dt[h] = (float)(log(0.01) + test_uniform() * log(50.0)); D[h] = (float)test_normal(); }
    for (int64_t j = 0; j < H * M; j++) { Are[j] = (float)(test_normal() - 1); Aim[j] = (float)(3 * test_normal()); }
    for (int64_t j = 0; j < n; j++) { B[j] = (float)test_normal(); C[j] = (float)test_normal(); }
    float *x0 = ssm_xmalloc((size_t)(batch * n) * sizeof(float)), *u = ssm_xmalloc((size_t)(batch * H * L) * sizeof(float));
    for (int64_t j = 0; j < batch * n; j++) x0[j] = (float)test_normal();
    for (int64_t j = 0; j < batch * H * L; j++) u[j] = (float)test_normal();
    double *yref = ssm_xmalloc((size_t)(batch * H * L) * sizeof(double)), *xref = ssm_xmalloc((size_t)(batch * n) * sizeof(double));
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < H; h++) {
            double dt = exp((double)log_dt[h]);
            for (int64_t t = 0; t < L; t++) yref[(b * H + h) * L + t] = (double)D[h] * u[(b * H + h) * L + t];
            for (int64_t mm = 0; mm < M; mm++) {
                int64_t j = h * M + mm;
                double complex a = -exp((double)Are[j]) + I * (double)Aim[j], ab = cexp(dt * a);
                double complex bb = (ab - 1) / a * (B[2 * j] + I * (double)B[2 * j + 1]), cc = C[2 * j] + I * (double)C[2 * j + 1];
                double complex x = x0[2 * (b * H * M + j)] + I * (double)x0[2 * (b * H * M + j) + 1];
                for (int64_t t = 0; t < L; t++) {
                    x = ab * x + bb * u[(b * H + h) * L + t];
                    yref[(b * H + h) * L + t] += 2 * creal(cc * x);
                }
                xref[2 * (b * H * M + j)] = creal(x); xref[2 * (b * H * M + j) + 1] = cimag(x);
            }
        }
    ssm_rec_layer l = s4d_rec_layer_new(H, M, log_dt, Are, Aim, B, C, D);
    float *x = ssm_xmalloc((size_t)(batch * n) * sizeof(float)), *y = ssm_xmalloc((size_t)(batch * H * L) * sizeof(float));
    double *y64 = ssm_xmalloc((size_t)(batch * H * L) * sizeof(double)), *x64 = ssm_xmalloc((size_t)(batch * n) * sizeof(double));
    for (int mode = 0; mode < 2; mode++) {   /* 0: chunk, 1: steps (chunk removed) */
        memcpy(x, x0, (size_t)(batch * n) * sizeof(float));
        ssm_rec_layer lm = l;
        if (mode) lm.chunk = NULL;
        ssm_rec_layer_run(&lm, batch, L, x, u, y);
        for (int64_t j = 0; j < batch * H * L; j++) y64[j] = y[j];
        for (int64_t j = 0; j < batch * n; j++) x64[j] = x[j];
        CHECK_REL_ERR(rel_err_f64(y64, yref, (long)(batch * H * L)), 1e-5, "layer %s vs float64 recurrence (H %lld, M %lld, L %lld)",
                      mode ? "steps" : "chunk", (long long)H, (long long)M, (long long)L);
        CHECK_REL_ERR(rel_err_f64(x64, xref, (long)(batch * n)), 1e-5, "layer %s final state vs float64 recurrence", mode ? "steps" : "chunk");
    }
    ssm_rec_layer_free(&l);
    free(log_dt); free(D); free(Are); free(Aim); free(B); free(C); free(x0); free(u); free(yref); free(xref);
    free(x); free(y); free(y64); free(x64);
}

int main(void) {
    test_seed_from_env("test_s4d_generate");
    test_layer_reference(5, 3, 37);
    test_layer_reference(1, 1, 2);
    test_model(7, 2, 6, 23, 45, 0);     /* H odd, M = 3, L not a power of two */
    test_model(5, 3, 2, 11, 19, 0);     /* M = 1 */
    test_model(9, 1, 6, 13, 3, 0);      /* shortest useful prompt */
    test_model(3, 2, 2, 7, 300, 0);     /* a longer prompt */
    test_model(7, 2, 6, 23, 45, 1);     /* S4 (DPLR step), H odd, M = 3 */
    test_model(5, 2, 2, 11, 19, 1);     /* S4, M = 1 */
    test_model(3, 2, 16, 7, 200, 1);    /* S4, M = 8, a longer prompt */
    return check_summary("test_s4d_generate");
}
