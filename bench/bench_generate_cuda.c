/* bench_generate_cuda.c - recurrent decoding on the GPU (--device cuda): tokens/s of a
 * mamba-130m-shaped model (24 layers, d_model 768, d_state 16, vocab 50280, random weights,
 * float32) at several batch sizes, the path ssm-generate runs (model_mamba with L = 1, the state
 * carried; the logits copied back to the host and the next token chosen there, greedy, per sequence).
 *
 * Each batch size: a prompt of 64 tokens per sequence in parallel mode, then BENCH_STEPS (default
 * 100) decode steps after 5 warm-up steps.  tokens/s = batch x steps / seconds.  The baseline of
 * the table is batch 1.  "step only" times the same steps without the logits' copy to the host and
 * the choice of the next token (mamba_forward, then a wait for the GPU): the model's own rate.  Memory floor of one step: every weight read once (517 MB) at the device's
 * copy bandwidth (~3 TB/s on an H100): ~0.17 ms, i.e. ~5800 steps/s.
 *
 * Runs only with BENCH_DEVICE=cuda on a machine with a GPU (tests/cuda/models.sh sets it); without
 * it, it prints one line and exits 0 (`make bench` on a CPU machine).  BENCH_BATCHES="1 64"
 * (default "1 8 64") and BENCH_SMALL=1 (d_model 64, 2 layers, vocab 256) for a quick check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "model_mamba.h"

int main(void) {
    const char *dev = getenv("BENCH_DEVICE");
    if (!dev || strcmp(dev, "cuda") != 0) {
        printf("skipped: set BENCH_DEVICE=cuda on a machine with a GPU (CPU decoding: bench_generate)\n");
        return 0;
    }
    ssm_compute_use_gpu();
    int small = getenv("BENCH_SMALL") != NULL;
    int steps = getenv("BENCH_STEPS") ? atoi(getenv("BENCH_STEPS")) : 100;
    const char *batches = getenv("BENCH_BATCHES") ? getenv("BENCH_BATCHES") : "1 8 64";
    mamba_config c = mamba_config_default();
    c.d_model = small ? 64 : 768; c.n_layers = small ? 2 : 24; c.d_state = 16; c.vocab_size = small ? 256 : 50280;
    mamba_model *m = mamba_new(&c);
    mamba_init_params(m, 1);
    int V = c.vocab_size;
    printf("model: d_model %d, %d layers, vocab %d, %lld parameters (%.0f MB f32); %d decode steps per batch\n",
           c.d_model, c.n_layers, V, (long long)mamba_params(m)->total, mamba_params(m)->total * 4e-6, steps);
    printf("%-8s %14s %14s %10s %22s\n", "batch", "steps/s", "tokens/s", "vs batch 1", "step only: tokens/s");
    double base = 0;
    const char *p = batches;
    while (*p) {
        char *end;
        long B = strtol(p, &end, 10);
        if (end == p) break;
        p = end;
        if (B < 1) continue;
        mamba_state *s = mamba_state_new(m, (int)B);
        int Lp = 64;
        int32_t *prompt = ssm_xmalloc((size_t)(B * Lp) * sizeof(int32_t));
        for (long i = 0; i < B * Lp; i++) prompt[i] = (int32_t)((i * 7919) % V);
        mamba_forward(m, prompt, NULL, (int)B, Lp, NULL, s);
        int32_t *tok = ssm_xmalloc((size_t)B * sizeof(int32_t));
        for (long b = 0; b < B; b++) tok[b] = (int32_t)(b % V);
        double t0 = 0;
        for (int k = 0; k < steps + 5; k++) {
            if (k == 5) t0 = ssm_now();
            mamba_forward(m, tok, NULL, (int)B, 1, NULL, s);
            const float *lg = mamba_logits(m);
            for (long b = 0; b < B; b++) {
                int best = 0;
                for (int v = 1; v < V; v++) if (lg[b * V + v] > lg[b * V + best]) best = v;
                tok[b] = best;
            }
        }
        double dt = ssm_now() - t0;
        double rate = steps / dt, toks = rate * (double)B;
        t0 = ssm_now();
        for (int k = 0; k < steps; k++) mamba_forward(m, tok, NULL, (int)B, 1, NULL, s);
        ssm_buf_sync();
        double only = steps * (double)B / (ssm_now() - t0);
        if (base == 0) base = toks;
        printf("%-8ld %14.1f %14.1f %9.2fx %22.1f\n", B, rate, toks, toks / base, only);
        fflush(stdout);
        free(prompt); free(tok);
        mamba_state_free(s);
    }
    mamba_free(m);
    return 0;
}
