/* test_generate_step.c - what generation relies on in the Mamba model, on fresh random models of
 * odd sizes: (1) step mode equals parallel mode: the logits of every prompt position from one
 * parallel pass equal those from feeding the tokens one at a time through the recurrent state
 * (conv_state + ssm_state), to 1e-4 relative; (2) a prompt processed in chunks that carry the state
 * equals one pass; (3) a state copied out and back in (what --state-out/--state-in do) continues
 * exactly as an uninterrupted run, bit for bit. */
#include "check.h"
#include "cli.h"
#include "model_mamba.h"

#include <string.h>

static mamba_model *random_model(int d_model, int n_layers, int d_state, int d_conv, int vocab) {
    mamba_config c = mamba_config_default();
    c.d_model = d_model; c.n_layers = n_layers; c.d_state = d_state; c.d_conv = d_conv; c.vocab_size = vocab;
    mamba_model *m = mamba_new(&c);
    mamba_init_params(m, test_next());
    /* perturb every parameter so that nothing sits at its init constant (D = 1, norms = 1) */
    ssm_params *ps = mamba_params(m);
    for (int64_t i = 0; i < ps->total; i++) ps->data[i] += 0.05f * (float)test_normal();
    return m;
}

static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void copy_state(mamba_state *dst, const mamba_state *src) {
    for (int i = 0; i < src->n_layers; i++) {
        memcpy(dst->conv_state[i], src->conv_state[i], (size_t)src->batch * src->d_inner * src->d_conv * sizeof(float));
        memcpy(dst->ssm_state[i], src->ssm_state[i], (size_t)src->batch * src->d_inner * src->d_state * sizeof(float));
    }
}

static void test_step_equals_parallel(int d_model, int n_layers, int d_state, int d_conv, int vocab, int L) {
    mamba_model *m = random_model(d_model, n_layers, d_state, d_conv, vocab);
    int32_t *tok = ssm_xmalloc((size_t)L * sizeof(int32_t));
    for (int t = 0; t < L; t++) tok[t] = (int32_t)(test_next() % (uint64_t)vocab);
    /* parallel, with a state so that the final state can be compared too */
    mamba_state *sp = mamba_state_new(m, 1);
    mamba_forward(m, tok, NULL, 1, L, NULL, sp);
    float *par = ssm_xmalloc((size_t)L * vocab * sizeof(float));
    memcpy(par, mamba_logits(m), (size_t)L * vocab * sizeof(float));
    /* stateless parallel pass gives the same logits */
    mamba_forward(m, tok, NULL, 1, L, NULL, NULL);
    CHECK_REL_ERR(rel_err(mamba_logits(m), par, (int64_t)L * vocab), 1e-6, "stateless vs stateful parallel pass");
    /* step by step */
    mamba_state *ss = mamba_state_new(m, 1);
    double worst = 0;
    int worst_t = -1;
    for (int t = 0; t < L; t++) {
        mamba_forward(m, tok + t, NULL, 1, 1, NULL, ss);
        double e = rel_err(mamba_logits(m), par + (int64_t)t * vocab, vocab);
        if (e > worst) { worst = e; worst_t = t; }
    }
    CHECK_REL_ERR(worst, 1e-4, "step vs parallel, worst position %d of %d (d_model %d, N %d, d_conv %d)", worst_t, L,
                  d_model, d_state, d_conv);
    double se = 0;
    for (int i = 0; i < n_layers; i++) {
        se = fmax(se, rel_err(ss->ssm_state[i], sp->ssm_state[i], (int64_t)ss->d_inner * ss->d_state));
        se = fmax(se, rel_err(ss->conv_state[i], sp->conv_state[i], (int64_t)ss->d_inner * ss->d_conv));
    }
    CHECK_REL_ERR(se, 1e-4, "final states of step and parallel modes");
    /* chunked prompt: two uneven chunks carrying the state */
    int cut = 1 + (int)(test_next() % (uint64_t)(L - 1));
    mamba_state *sc = mamba_state_new(m, 1);
    mamba_forward(m, tok, NULL, 1, cut, NULL, sc);
    double e1 = rel_err(mamba_logits(m), par, (int64_t)cut * vocab);
    mamba_forward(m, tok + cut, NULL, 1, L - cut, NULL, sc);
    double e2 = rel_err(mamba_logits(m), par + (int64_t)cut * vocab, (int64_t)(L - cut) * vocab);
    CHECK_REL_ERR(fmax(e1, e2), 1e-4, "prompt in chunks of %d and %d", cut, L - cut);

    /* save / restore: continue 8 greedy steps from a copied state == uninterrupted */
    mamba_state *saved = mamba_state_new(m, 1);
    copy_state(saved, sp);
    int32_t next = 0, a_tokens[8], b_tokens[8];
    const float *lg = par + (int64_t)(L - 1) * vocab;
    float *last = ssm_xmalloc((size_t)vocab * sizeof(float));
    memcpy(last, lg, (size_t)vocab * sizeof(float));
    for (int run = 0; run < 2; run++) {
        mamba_state *s = run ? saved : sp;
        float *cur = ssm_xmalloc((size_t)vocab * sizeof(float));
        memcpy(cur, last, (size_t)vocab * sizeof(float));
        if (run) {   /* something else runs in between and overwrites the model's buffers */
            mamba_state *other = mamba_state_new(m, 1);
            mamba_forward(m, tok, NULL, 1, L, NULL, other);
            mamba_state_free(other);
        }
        for (int k = 0; k < 8; k++) {
            next = 0;
            for (int v = 1; v < vocab; v++) if (cur[v] > cur[next]) next = v;
            (run ? b_tokens : a_tokens)[k] = next;
            mamba_forward(m, &next, NULL, 1, 1, NULL, s);
            memcpy(cur, mamba_logits(m), (size_t)vocab * sizeof(float));
        }
        free(cur);
    }
    CHECK(memcmp(a_tokens, b_tokens, sizeof a_tokens) == 0, "restored state continues with the same tokens");
    int same_state = 1;
    for (int i = 0; i < n_layers; i++)
        same_state &= memcmp(sp->ssm_state[i], saved->ssm_state[i], (size_t)sp->d_inner * sp->d_state * sizeof(float)) == 0 &&
                      memcmp(sp->conv_state[i], saved->conv_state[i], (size_t)sp->d_inner * sp->d_conv * sizeof(float)) == 0;
    CHECK(same_state, "restored run ends in the same state, bit for bit");
    free(last);
    mamba_state_free(saved);
    mamba_state_free(sc);
    mamba_state_free(ss);
    mamba_state_free(sp);
    free(par);
    free(tok);
    mamba_free(m);
}

int main(void) {
    test_seed_from_env("test_generate_step");
    test_step_equals_parallel(16, 2, 16, 4, 50, 33);
    test_step_equals_parallel(12, 3, 5, 3, 37, 41);    /* odd N, d_conv 3, L not a power of two */
    test_step_equals_parallel(8, 1, 1, 4, 11, 2);      /* N = 1, shortest prompt */
    return check_summary("test_generate_step");
}
