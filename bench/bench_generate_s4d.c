/* bench_generate_s4d.c - recurrent decoding speed of the S4D language model (the path
 * ssm-generate runs for s4d checkpoints: s4d_recurrent.h).
 *
 * 1. Flat in context length: an S4D LM (d_model 64, 4 layers, d_state 64, byte vocabulary,
 *    random weights) is prefilled to positions 100, 10k and 100k (parallel mode, chunks of 2048
 *    carrying the state), then timed for 1000 greedy decode steps (the positions in turn, best of 5
 *    rounds, after a warm-up).
 *    Baseline: the rate at position 100.  The prefill rate is printed beside it.
 * 2. The prompt: parallel mode (FFT convolution + the per-mode state sums) against feeding the same
 *    prompt one recurrent step per token.  Baseline: the steps.
 * Environment: BENCH_GENERATE_QUICK=1 skips the 100k position.  On a shared machine set
 * OMP_NUM_THREADS.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "model_s4d.h"
#include "s4d_recurrent.h"

static double decode_rate(s4d_rec *r, s4d_state *s, int steps, int vocab) {
    int32_t tok = 1;
    double t0 = ssm_now();
    for (int k = 0; k < steps; k++) {
        s4d_rec_forward(r, &tok, NULL, 1, 1, s);
        const float *lg = s4d_rec_logits(r);
        int best = 0;
        for (int v = 1; v < vocab; v++) if (lg[v] > lg[best]) best = v;
        tok = best;
    }
    return steps / (ssm_now() - t0);
}


int main(void) {
    int quick = getenv("BENCH_GENERATE_QUICK") != NULL;
    s4d_config c = s4d_config_default();
    c.d_model = 64; c.n_layers = 4; c.d_state = 64; c.vocab_size = 256;
    s4d_model *m = s4d_new(&c);
    s4d_init_params(m, 1);
    s4d_rec *r = s4d_rec_new(m);
    int chunk = 2048;
    int32_t *tok = ssm_xmalloc((size_t)chunk * sizeof(int32_t));
    for (int i = 0; i < chunk; i++) tok[i] = (i * 7 + 3) % 256;

    {   /* warm-up of everything (allocations, BLAS, caches) before the first timing */
        s4d_state *s = s4d_state_new(r, 1);
        decode_rate(r, s, 2000, c.vocab_size);
        s4d_state_free(s);
    }
    int positions[3] = {100, 10000, 100000};
    double base = 0;
    printf("S4D decode rate against context position (d_model 64, 4 layers, d_state 64, batch 1)\n");
    printf("%10s %14s %10s %16s\n", "position", "tokens/s", "ratio", "prefill tok/s");
    int np = quick ? 2 : 3;
    s4d_state *states[3];
    double prefill[3], rate[3] = {0, 0, 0};
    for (int p = 0; p < np; p++) {
        states[p] = s4d_state_new(r, 1);
        int L = positions[p];
        double t0 = ssm_now();
        for (int off = 0; off < L; off += chunk) s4d_rec_forward(r, tok, NULL, 1, L - off < chunk ? L - off : chunk, states[p]);
        prefill[p] = L / (ssm_now() - t0);
    }
    /* the positions measured in turn, 5 rounds, the best of each (the machine is shared: the best
     * is the least disturbed; taking turns spreads the load changes over the positions) */
    for (int round = 0; round < 5; round++)
        for (int p = 0; p < np; p++) rate[p] = fmax(rate[p], decode_rate(r, states[p], 1000, c.vocab_size));
    for (int p = 0; p < np; p++) {
        if (p == 0) base = rate[p];
        printf("%10d %14.1f %10.2f %16.1f\n", positions[p], rate[p], rate[p] / base, prefill[p]);
        s4d_state_free(states[p]);
    }

    int Lp = 2048;
    s4d_state *s = s4d_state_new(r, 1);
    s4d_rec_forward(r, tok, NULL, 1, Lp, s);        /* warm-up (FFT plans, the kernel of length Lp) */
    double t_par = 1e30, t_step = 1e30;
    for (int k = 0; k < 3; k++) {   /* best of 3 */
        s4d_state_reset(s);
        double t0 = ssm_now();
        s4d_rec_forward(r, tok, NULL, 1, Lp, s);
        t_par = fmin(t_par, ssm_now() - t0);
        s4d_state_reset(s);
        t0 = ssm_now();
        for (int t = 0; t < Lp; t++) s4d_rec_forward(r, tok + t, NULL, 1, 1, s);
        t_step = fmin(t_step, ssm_now() - t0);
    }
    printf("\nprompt of %d tokens (from the empty state; the kernel of that length is kept)\n%-28s %14s %10s\n", Lp, "", "tokens/s", "ratio");
    printf("%-28s %14.1f %10.2f\n", "one recurrent step per token", Lp / t_step, 1.0);
    printf("%-28s %14.1f %10.2f\n", "parallel (FFT convolution)", Lp / t_par, t_step / t_par);
    s4d_state_free(s);
    free(tok);
    s4d_rec_free(r);
    s4d_free(m);
    return 0;
}
