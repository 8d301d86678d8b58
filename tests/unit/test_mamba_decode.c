/* test_mamba_decode.c - the fast decode step (mamba_decode.h) and its matrix-vector kernel
 * (matvec.h), on fresh random inputs of odd sizes:
 *   1. ssm_matvec_f32 / _bf16 (AVX-512 when present) equal the plain double loop to 1e-5, with
 *      row strides, odd n_in (masked tails), n_out not a multiple of the blocks, batch 1..9,
 *      writing and accumulating;
 *   2. a decode step equals mamba_forward with L = 1 (the reference step, itself tested against
 *      the parallel pass in test_generate_step.c): logits and states to 1e-4 over 24 steps, for
 *      batch 1, 3 and 5, d_inner of one chunk and of several (64 channels each, the last one
 *      partial); one thread and three give the same bits; a sequence decoded alone gives the same
 *      bits as in a batch;
 *   3. the bf16 decoder equals the f32 decoder on a model whose matrices hold the same
 *      bf16-rounded values (to 1e-5: only the order of float32 sums differs), and differs from the
 *      unrounded model's by more (the test can fail). */
#include "check.h"
#include "cli.h"
#include "matvec.h"
#include "mamba_decode.h"
#include "model_mamba.h"
#include "tensor.h"

#include <string.h>

static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_matvec(int64_t n_out, int64_t n_in, int batch, int bf16, int accumulate) {
    int64_t ldw = n_in + (int64_t)(test_next() % 5), ldx = n_in + (int64_t)(test_next() % 3), ldo = n_out + 2;
    float *W = ssm_xmalloc((size_t)(n_out * ldw) * sizeof(float));
    uint16_t *Wb = ssm_xmalloc((size_t)(n_out * ldw) * sizeof(uint16_t));
    float *x = ssm_xmalloc((size_t)(batch * ldx) * sizeof(float));
    float *got = ssm_xmalloc((size_t)(batch * ldo) * sizeof(float)), *want = ssm_xmalloc((size_t)(batch * ldo) * sizeof(float));
    for (int64_t i = 0; i < n_out * ldw; i++) { W[i] = (float)test_normal(); Wb[i] = ssm_f32_to_bf16(W[i]); }
    for (int64_t i = 0; i < batch * ldx; i++) x[i] = (float)test_normal();
    for (int64_t i = 0; i < batch * ldo; i++) got[i] = want[i] = (float)test_normal();
    if (bf16) {
        ssm_matvec_bf16(got, ldo, Wb, ldw, x, ldx, n_out, n_in, batch, accumulate);
        ssm_matvec_ref(want, ldo, Wb, 1, ldw, x, ldx, n_out, n_in, batch, accumulate);
    } else {
        ssm_matvec_f32(got, ldo, W, ldw, x, ldx, n_out, n_in, batch, accumulate);
        ssm_matvec_ref(want, ldo, W, 0, ldw, x, ldx, n_out, n_in, batch, accumulate);
    }
    CHECK_REL_ERR(rel_err(got, want, batch * ldo), 1e-5, "matvec %s %lldx%lld batch %d%s (fast kernel %d)", bf16 ? "bf16" : "f32",
                  (long long)n_out, (long long)n_in, batch, accumulate ? " accumulate" : "", ssm_matvec_fast());
    free(W); free(Wb); free(x); free(got); free(want);
}

static mamba_model *random_model(int d_model, int n_layers, int d_state, int d_conv, int vocab, int tied, uint64_t seed) {
    mamba_config c = mamba_config_default();
    c.d_model = d_model; c.n_layers = n_layers; c.d_state = d_state; c.d_conv = d_conv; c.vocab_size = vocab;
    c.tie_embeddings = tied;
    mamba_model *m = mamba_new(&c);
    mamba_init_params(m, seed);
    ssm_params *ps = mamba_params(m);
    test_seed(seed);
    for (int64_t i = 0; i < ps->total; i++) ps->data[i] += 0.05f * (float)test_normal();
    return m;
}

static void copy_state(mamba_state *dst, int bd, const mamba_state *src, int bs) {
    int64_t nc = (int64_t)src->d_inner * src->d_conv, ns = (int64_t)src->d_inner * src->d_state;
    for (int i = 0; i < src->n_layers; i++) {
        memcpy(dst->conv_state[i] + bd * nc, src->conv_state[i] + bs * nc, (size_t)nc * sizeof(float));
        memcpy(dst->ssm_state[i] + bd * ns, src->ssm_state[i] + bs * ns, (size_t)ns * sizeof(float));
    }
}

static int same_state(const mamba_state *a, const mamba_state *b) {
    int same = 1;
    for (int i = 0; i < a->n_layers; i++)
        same &= memcmp(a->ssm_state[i], b->ssm_state[i], (size_t)a->batch * a->d_inner * a->d_state * sizeof(float)) == 0 &&
                memcmp(a->conv_state[i], b->conv_state[i], (size_t)a->batch * a->d_inner * a->d_conv * sizeof(float)) == 0;
    return same;
}

static void test_decode_equals_forward(int d_model, int n_layers, int d_state, int d_conv, int vocab, int tied, int batch) {
    uint64_t seed = test_next();
    mamba_model *m = random_model(d_model, n_layers, d_state, d_conv, vocab, tied, seed);
    mamba_decoder *d1 = mamba_decoder_new(m, SSM_F32, batch, 1), *d2 = mamba_decoder_new(m, SSM_F32, batch, 3);
    mamba_state *sr = mamba_state_new(m, batch), *s1 = mamba_state_new(m, batch), *s2 = mamba_state_new(m, batch);
    /* a short parallel prefill so that the states start non-zero */
    int32_t pre[5];
    for (int k = 0; k < 5; k++) pre[k] = (int32_t)(test_next() % (uint64_t)vocab);
    mamba_state *one = mamba_state_new(m, 1);
    mamba_forward(m, pre, NULL, 1, 5, NULL, one);
    for (int b = 0; b < batch; b++) { copy_state(sr, b, one, 0); copy_state(s1, b, one, 0); copy_state(s2, b, one, 0); }
    float *l1 = ssm_xmalloc((size_t)batch * vocab * sizeof(float)), *l2 = ssm_xmalloc((size_t)batch * vocab * sizeof(float));
    int32_t tok[16];
    double worst = 0, worst_state = 0;
    int same12 = 1, steps = 24;
    for (int k = 0; k < steps; k++) {
        for (int b = 0; b < batch; b++) tok[b] = (int32_t)(test_next() % (uint64_t)vocab);
        mamba_forward(m, tok, NULL, batch, 1, NULL, sr);
        mamba_decode_step(d1, tok, batch, s1, l1);
        mamba_decode_step(d2, tok, batch, s2, l2);
        worst = fmax(worst, rel_err(l1, mamba_logits(m), (int64_t)batch * vocab));
        same12 &= memcmp(l1, l2, (size_t)batch * vocab * sizeof(float)) == 0;
    }
    for (int i = 0; i < n_layers; i++) {
        worst_state = fmax(worst_state, rel_err(s1->ssm_state[i], sr->ssm_state[i], (int64_t)batch * sr->d_inner * sr->d_state));
        worst_state = fmax(worst_state, rel_err(s1->conv_state[i], sr->conv_state[i], (int64_t)batch * sr->d_inner * sr->d_conv));
    }
    CHECK_REL_ERR(worst, 1e-4, "decode step vs mamba_forward L=1, logits over %d steps (d_model %d, N %d, K %d, batch %d, %s)",
                  steps, d_model, d_state, d_conv, batch, tied ? "tied" : "untied");
    CHECK_REL_ERR(worst_state, 1e-4, "decode step vs mamba_forward L=1, final states");
    CHECK(same12 && same_state(s1, s2), "1 and 3 threads give the same bits (batch %d)", batch);
    if (batch > 1) {   /* the last sequence alone, from the same start, ends in the same bits */
        mamba_decoder *da = mamba_decoder_new(m, SSM_F32, 1, 2);
        mamba_state *sa = mamba_state_new(m, 1);
        copy_state(sa, 0, one, 0);
        test_seed(seed ^ 0x55);
        float *la = ssm_xmalloc((size_t)vocab * sizeof(float)), *lb = ssm_xmalloc((size_t)batch * vocab * sizeof(float));
        mamba_state *sb = mamba_state_new(m, batch);
        for (int b = 0; b < batch; b++) copy_state(sb, b, one, 0);
        int same = 1;
        for (int k = 0; k < 6; k++) {
            for (int b = 0; b < batch; b++) tok[b] = (int32_t)((k * 7 + b * 3) % vocab);
            mamba_decode_step(d2, tok, batch, sb, lb);
            mamba_decode_step(da, tok + batch - 1, 1, sa, la);
            same &= memcmp(la, lb + (int64_t)(batch - 1) * vocab, (size_t)vocab * sizeof(float)) == 0;
        }
        CHECK(same, "a sequence decoded alone equals it in a batch of %d, bit for bit", batch);
        free(la); free(lb);
        mamba_state_free(sa); mamba_state_free(sb);
        mamba_decoder_free(da);
    }
    free(l1); free(l2);
    mamba_state_free(one); mamba_state_free(sr); mamba_state_free(s1); mamba_state_free(s2);
    mamba_decoder_free(d1); mamba_decoder_free(d2);
    mamba_free(m);
}

static void test_bf16(int d_model, int n_layers, int d_state, int vocab, int tied, int batch) {
    uint64_t seed = test_next();
    mamba_model *m = random_model(d_model, n_layers, d_state, 4, vocab, tied, seed);
    mamba_model *r = random_model(d_model, n_layers, d_state, 4, vocab, tied, seed);   /* the same, matrices rounded */
    ssm_params *ps = mamba_params(r);
    for (int k = 0; k < ps->n; k++) {
        const char *nm = ps->p[k].name;
        if (strstr(nm, "proj.weight") || strstr(nm, "embedding.weight") || strstr(nm, "lm_head.weight")) {
            float *w = ssm_params_data(ps, k);
            for (int64_t i = 0; i < ps->p[k].nfloats; i++) w[i] = ssm_bf16_to_f32(ssm_f32_to_bf16(w[i]));
        }
    }
    mamba_decoder *db = mamba_decoder_new(m, SSM_BF16, batch, 2), *dr = mamba_decoder_new(r, SSM_F32, batch, 2),
                  *df = mamba_decoder_new(m, SSM_F32, batch, 2);
    mamba_state *sb = mamba_state_new(m, batch), *sr = mamba_state_new(m, batch), *sf = mamba_state_new(m, batch);
    float *lb = ssm_xmalloc((size_t)batch * vocab * sizeof(float)), *lr = ssm_xmalloc((size_t)batch * vocab * sizeof(float)),
          *lf = ssm_xmalloc((size_t)batch * vocab * sizeof(float));
    int32_t tok[16];
    double same = 0, diff = 0;
    for (int k = 0; k < 12; k++) {
        for (int b = 0; b < batch; b++) tok[b] = (int32_t)(test_next() % (uint64_t)vocab);
        mamba_decode_step(db, tok, batch, sb, lb);
        mamba_decode_step(dr, tok, batch, sr, lr);
        mamba_decode_step(df, tok, batch, sf, lf);
        same = fmax(same, rel_err(lb, lr, (int64_t)batch * vocab));
        diff = fmax(diff, rel_err(lb, lf, (int64_t)batch * vocab));
    }
    for (int i = 0; i < n_layers; i++) same = fmax(same, rel_err(sb->ssm_state[i], sr->ssm_state[i], (int64_t)batch * sb->d_inner * d_state));
    CHECK_REL_ERR(same, 1e-5, "bf16 weights vs f32 weights holding the bf16-rounded values, logits and states (batch %d, %s)",
                  batch, tied ? "tied" : "untied");
    CHECK(diff > 1e-5 && diff < 0.05, "bf16 rounding changes the logits of the unrounded model by %.2e (expected 1e-5 .. 0.05)", diff);
    free(lb); free(lr); free(lf);
    mamba_state_free(sb); mamba_state_free(sr); mamba_state_free(sf);
    mamba_decoder_free(db); mamba_decoder_free(dr); mamba_decoder_free(df);
    mamba_free(m); mamba_free(r);
}

int main(void) {
    test_seed_from_env("test_mamba_decode");
    int64_t outs[] = {1, 3, 8, 13, 37}, ins[] = {1, 15, 16, 17, 48, 99};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 6; b++) {
            int batch = 1 + (int)(test_next() % 9);
            test_matvec(outs[a], ins[b], batch, (a + b) & 1, (a * 6 + b) % 3 == 0);
        }
    test_matvec(40, 64, 1, 0, 0);
    test_matvec(40, 64, 1, 1, 1);
    test_decode_equals_forward(16, 2, 16, 4, 50, 1, 1);
    test_decode_equals_forward(12, 3, 5, 3, 37, 0, 3);   /* odd N, d_conv 3, untied head, batch 3 */
    test_decode_equals_forward(8, 1, 1, 4, 11, 1, 5);    /* N = 1 */
    test_decode_equals_forward(80, 2, 7, 4, 29, 1, 2);   /* d_inner 160: chunks of 64, 64, 32 */
    test_bf16(16, 2, 16, 50, 1, 1);
    test_bf16(12, 2, 5, 37, 0, 6);
    test_bf16(72, 1, 16, 41, 1, 3);                      /* d_inner 144: 3 chunks */
    return check_summary("test_mamba_decode");
}
