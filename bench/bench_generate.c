/* bench_generate.c - recurrent decoding speed of the Mamba model (the path ssm-generate runs).
 *
 * 1. Flat in context length: a small model (d_model 64, 2 layers, byte vocabulary) is prefilled to
 *    positions 100, 10k and 100k (parallel mode, chunks of 2048), then timed for decode steps.
 *    Baseline: the rate at position 100.
 * 2. A mamba-130m-shaped model (24 layers, d_model 768, d_state 16, vocab 50280, random weights,
 *    float32: 129M parameters, 517 MB) decoding one token per step, against the memory floor:
 *    every step must read every weight once, so tokens/s <= (bandwidth) / (weight bytes).  The
 *    bandwidth is measured here on the same threads by summing a buffer of the same size.
 *    Baseline: that floor.
 * Environment: BENCH_GENERATE_QUICK=1 skips the 100k position and shortens the runs (for a busy
 * machine); BENCH_GENERATE_130M_ONLY=1 runs part 2 only.  On a shared machine set OMP_NUM_THREADS
 * (OpenMP barriers with descheduled threads cost milliseconds per parallel region).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_mamba.h"

static double decode_rate(mamba_model *m, mamba_state *s, int steps, int vocab) {
    int32_t tok = 1;
    double t0 = ssm_now();
    for (int k = 0; k < steps; k++) {
        mamba_forward(m, &tok, NULL, 1, 1, NULL, s);
        const float *lg = mamba_logits(m);
        int best = 0;
        for (int v = 1; v < vocab; v++) if (lg[v] > lg[best]) best = v;
        tok = best;
    }
    return steps / (ssm_now() - t0);
}

/* Seconds to read n floats once, best of reps: a sum into 16 independent float lanes (so the loop
 * is bound by memory, not by the latency of one chain of additions), on all OpenMP threads. */
static double read_time(const float *buf, int64_t n, int reps, double *sink) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = ssm_now(), total = 0;
#pragma omp parallel reduction(+ : total)
        {
            float lane[16] = {0};
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n / 16; i++)
                for (int j = 0; j < 16; j++) lane[j] += buf[i * 16 + j];
            for (int j = 0; j < 16; j++) total += lane[j];
        }
        double t = ssm_now() - t0;
        *sink += total;
        if (t < best) best = t;
    }
    return best;
}

int main(void) {
    int quick = getenv("BENCH_GENERATE_QUICK") != NULL;
    /* ---- 1. flat in context length ---- */
    mamba_config c = mamba_config_default();
    c.d_model = 64; c.n_layers = 2; c.vocab_size = 256;
    mamba_model *m = mamba_new(&c);
    mamba_init_params(m, 1);
    int positions[3] = {100, 10000, 100000};
    double base = 0;
    printf("decode rate against context position (d_model 64, 2 layers, batch 1)\n");
    printf("%10s %14s %10s\n", "position", "tokens/s", "ratio");
    for (int p = 0; p < (quick ? 2 : 3) && !getenv("BENCH_GENERATE_130M_ONLY"); p++) {
        mamba_state *s = mamba_state_new(m, 1);
        int L = positions[p], chunk = 2048;
        int32_t *tok = ssm_xmalloc((size_t)chunk * sizeof(int32_t));
        for (int i = 0; i < chunk; i++) tok[i] = (i * 7 + 3) % 256;
        for (int off = 0; off < L; off += chunk) mamba_forward(m, tok, NULL, 1, L - off < chunk ? L - off : chunk, NULL, s);
        double r = decode_rate(m, s, 300, c.vocab_size);
        if (p == 0) base = r;
        printf("%10d %14.1f %10.2f\n", L, r, r / base);
        free(tok);
        mamba_state_free(s);
    }
    mamba_free(m);

    /* ---- 2. mamba-130m shape against the memory floor ---- */
    c = mamba_config_default();
    c.d_model = 768; c.n_layers = 24; c.d_state = 16; c.vocab_size = 50280;
    m = mamba_new(&c);
    mamba_init_params(m, 2);
    ssm_params *ps = mamba_params(m);
    double bytes = (double)ps->total * sizeof(float);
    double sink = 0;
    double t_read = read_time(ps->data, ps->total, 5, &sink);
    double floor_rate = 1.0 / t_read;
    mamba_state *s = mamba_state_new(m, 1);
    decode_rate(m, s, 2, c.vocab_size);                /* warm-up */
    double r = decode_rate(m, s, quick ? 5 : 20, c.vocab_size);
    printf("\nmamba-130m shape (24 x 768, vocab 50280): %.0f M parameters, %.0f MB float32\n", ps->total / 1e6, bytes / 1e6);
    printf("%-36s %12s %10s\n", "", "tokens/s", "ratio");
    printf("%-36s %12.1f %10.2f   (%.1f GB/s read)\n", "memory floor (read all weights once)", floor_rate, 1.0,
           bytes / t_read / 1e9);
    printf("%-36s %12.1f %10.2f\n", "decode, float32 weights", r, r / floor_rate);
    printf("%-36s %12s %10s   (the model computes from float32 copies)\n", "decode, bf16 weights", "n/a", "-");
    if (sink == 12345.678) printf("\n");   /* keeps the sums alive */
    mamba_state_free(s);
    mamba_free(m);
    return 0;
}
