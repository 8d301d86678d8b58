/* bench_generate.c - recurrent decoding speed of the Mamba model (the step ssm-generate runs:
 * mamba_decode.h), against baselines measured in the same run.
 *
 * 1. The memory floor: a read-bandwidth kernel (AVX-512 loads summed into 8 registers) over a
 *    1 GiB buffer (32x the 32 MiB L3) in transparent huge pages (as the weights: params.c), on 1
 *    and on 2 threads, best of 5.
 * 2. A mamba-130m-shaped model (24 layers, d_model 768, d_state 16, vocab 50280, random weights):
 *    the exact bytes one step reads (every matrix once, the small vectors, the state read and
 *    written; mamba_decoder_bytes) give the floor: tokens/s <= bandwidth / bytes.  Decode at
 *    batch 1, float32 and bf16 weights, 1 and 2 threads; ratio = rate / floor (same threads).
 *    The bandwidth of a shared machine drifts by 2x within a minute, so the floor and the decode
 *    rate are measured in alternation (5 rounds of: read bandwidth, best of 2; 12 decode steps)
 *    and the table gives the median round's ratio, and the best floor and best rate.
 * 3. Batch curve: total tokens/s for batch 1..64 (f32 and bf16 weights, 2 threads), against the
 *    compute ceiling: the same matvec kernel on a weight held in L2 with 64 vectors (GFLOP/s).
 * 4. Flat in context length: a small model (d_model 64, 2 layers, bytes) prefilled in parallel mode
 *    to positions 100, 10k and 100k, then decode steps timed.  Baseline: the rate at 100.
 * Environment: BENCH_GENERATE_QUICK=1 shortens the runs; BENCH_GENERATE_THREADS=N caps threads.
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli.h"
#include "mamba_decode.h"
#include "matvec.h"
#include "model_mamba.h"
#include "tensor.h"

static void print_load(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    char buf[128] = "?";
    if (f) { if (!fgets(buf, sizeof buf, f)) buf[0] = 0; fclose(f); }
    buf[strcspn(buf, "\n")] = 0;
    printf("# load average (%s): %s\n", when, buf);
}

/* Seconds to read n floats once on `threads` threads, best of reps. */
__attribute__((target("avx512f")))
static double read_time(const float *buf, int64_t n, int threads, int reps, double *sink) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = ssm_now(), total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n / 128; i++) {
                const float *p = buf + i * 128;
                a0 = _mm512_add_ps(a0, _mm512_load_ps(p)); a1 = _mm512_add_ps(a1, _mm512_load_ps(p + 16));
                a2 = _mm512_add_ps(a2, _mm512_load_ps(p + 32)); a3 = _mm512_add_ps(a3, _mm512_load_ps(p + 48));
                a4 = _mm512_add_ps(a4, _mm512_load_ps(p + 64)); a5 = _mm512_add_ps(a5, _mm512_load_ps(p + 80));
                a6 = _mm512_add_ps(a6, _mm512_load_ps(p + 96)); a7 = _mm512_add_ps(a7, _mm512_load_ps(p + 112));
            }
            __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                     _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
            total += _mm512_reduce_add_ps(s);
        }
        double t = ssm_now() - t0;
        *sink += total;
        if (t < best) best = t;
    }
    return best;
}

/* Mean tokens/s (all sequences) over `steps` decode steps after 2 warm-up steps. */
static double decode_rate(mamba_decoder *d, mamba_state *s, int batch, int steps, int vocab, float *logits) {
    int32_t tok[64];
    for (int b = 0; b < batch; b++) tok[b] = 1 + b;
    double t0 = 0;
    for (int k = -2; k < steps; k++) {
        if (k == 0) t0 = ssm_now();
        mamba_decode_step(d, tok, batch, s, logits);
        for (int b = 0; b < batch; b++) {   /* greedy: the next token depends on the logits */
            const float *lg = logits + (int64_t)b * vocab;
            int best = 0;
            for (int v = 1; v < vocab; v++) if (lg[v] > lg[best]) best = v;
            tok[b] = best;
        }
    }
    return (double)steps * batch / (ssm_now() - t0);
}

int main(void) {
    int quick = getenv("BENCH_GENERATE_QUICK") != NULL;
    int max_threads = omp_get_num_procs();
    if (getenv("BENCH_GENERATE_THREADS")) max_threads = atoi(getenv("BENCH_GENERATE_THREADS"));
    if (max_threads < 1) max_threads = 1;
    int t2 = max_threads >= 2 ? 2 : 1;
    printf("# %d cores available, matvec kernel: %s\n", omp_get_num_procs(), ssm_matvec_fast() ? "AVX-512" : "plain C");
    print_load("start");

    /* ---- 1. the memory floor ---- */
    int64_t nbuf = (int64_t)1 << 28;   /* 1 GiB of floats */
    float *buf = aligned_alloc((size_t)2 << 20, (size_t)nbuf * sizeof(float));
    madvise(buf, (size_t)nbuf * sizeof(float), MADV_HUGEPAGE);   /* as the weights (params.c) */
#pragma omp parallel for num_threads(t2) schedule(static)
    for (int64_t i = 0; i < nbuf; i++) buf[i] = (float)(i & 1023) * 1e-3f;
    double sink = 0;
    double bw1 = (double)nbuf * 4 / read_time(buf, nbuf, 1, quick ? 3 : 5, &sink);
    double bw2 = (double)nbuf * 4 / read_time(buf, nbuf, t2, quick ? 3 : 5, &sink);
    printf("\nread bandwidth over a 1 GiB buffer: %.2f GB/s on 1 thread, %.2f GB/s on %d threads\n", bw1 / 1e9, bw2 / 1e9, t2);

    /* ---- 2. mamba-130m shape against the floor ---- */
    mamba_config c = mamba_config_default();
    c.d_model = 768; c.n_layers = 24; c.d_state = 16; c.vocab_size = 50280;
    mamba_model *m = mamba_new(&c);
    mamba_init_params(m, 2);
    int64_t params = mamba_params(m)->total;
    float *logits = ssm_xmalloc((size_t)64 * c.vocab_size * sizeof(float));
    printf("\nmamba-130m shape (24 x 768, d_state 16, vocab 50280, tied): %.1f M parameters\n", params / 1e6);
    printf("%-26s %7s %12s %11s %9s %9s %9s\n", "", "threads", "bytes/token", "floor tok/s", "tokens/s", "ratio", "med.ratio");
    double rate_f32 = 0, rate_bf16 = 0;
    for (int dt = 0; dt < 2; dt++) {
        int dtype = dt ? SSM_BF16 : SSM_F32;
        for (int th = 1; th <= t2; th++) {
            mamba_decoder *d = mamba_decoder_new(m, dtype, 64, th);
            mamba_state *s = mamba_state_new(m, 1);
            int64_t wb, sb;
            mamba_decoder_bytes(d, 1, &wb, &sb);
            double best_floor = 0, best_rate = 0, ratios[5];
            int rounds = quick ? 3 : 5;
            for (int k = 0; k < rounds; k++) {
                double bw = (double)nbuf * 4 / read_time(buf, nbuf, th, 2, &sink), floor_rate = bw / (double)(wb + sb);
                double r = decode_rate(d, s, 1, quick ? 6 : 12, c.vocab_size, logits);
                ratios[k] = r / floor_rate;
                if (floor_rate > best_floor) best_floor = floor_rate;
                if (r > best_rate) best_rate = r;
            }
            for (int a = 0; a < rounds; a++)   /* sort for the median */
                for (int b = a + 1; b < rounds; b++)
                    if (ratios[b] < ratios[a]) { double x = ratios[a]; ratios[a] = ratios[b]; ratios[b] = x; }
            printf("%-26s %7d %12.4g %11.2f %9.2f %9.2f %9.2f\n", dt ? "decode, bf16 weights" : "decode, float32 weights", th,
                   (double)(wb + sb), best_floor, best_rate, best_rate / best_floor, ratios[rounds / 2]);
            if (th == t2) { if (dt) rate_bf16 = best_rate; else rate_f32 = best_rate; }
            mamba_state_free(s);
            mamba_decoder_free(d);
        }
    }
    printf("bf16 / float32 rate (%d threads, best rates): %.2f\n", t2, rate_bf16 / rate_f32);
    free(buf);

    /* ---- 3. batch curve ---- */
    int64_t dm = 768, di = 1536, R = 48, nbc = 80;
    double flops_token = 2.0 * ((2 * di * dm + nbc * di + di * R + dm * di) * 24 + (double)c.vocab_size * dm);
    {   /* compute ceiling: a 768 x 768 weight in L2, 64 vectors, on t2 threads */
        float *W = ssm_xmalloc((size_t)(dm * dm) * sizeof(float)), *x = ssm_xmalloc((size_t)(64 * dm) * sizeof(float));
        float *o = ssm_xcalloc((size_t)(t2 * 64 * dm), sizeof(float));
        for (int64_t i = 0; i < dm * dm; i++) W[i] = (float)((i * 37) % 101) * 1e-3f;
        for (int64_t i = 0; i < 64 * dm; i++) x[i] = (float)((i * 13) % 97) * 1e-3f;
        int reps = quick ? 20 : 60;
        double t0 = ssm_now();
#pragma omp parallel num_threads(t2)
        for (int k = 0; k < reps; k++) ssm_matvec_f32(o + omp_get_thread_num() * 64 * dm, dm, W, dm, x, dm, dm, dm, 64, 0);
        double gf = 2.0 * dm * dm * 64 * reps * t2 / (ssm_now() - t0) / 1e9;
        printf("\ncompute ceiling: matvec kernel, 768x768 f32 weight in cache x 64 vectors, %d threads: %.1f GFLOP/s"
               " = %.0f tokens/s at %.3g GFLOP/token\n", t2, gf, gf * 1e9 / flops_token, flops_token / 1e9);
        free(W); free(x); free(o);
    }
    printf("batch curve, %d threads: total tokens/s (ratio to batch 1)\n", t2);
    printf("%8s %14s %8s %14s %8s\n", "batch", "f32 tokens/s", "ratio", "bf16 tokens/s", "ratio");
    int batches[] = {1, 2, 4, 8, 16, 32, 64};
    mamba_decoder *df = mamba_decoder_new(m, SSM_F32, 64, t2), *db = mamba_decoder_new(m, SSM_BF16, 64, t2);
    double base_f = 0, base_b = 0;
    for (int k = 0; k < 7; k++) {
        int B = batches[k];
        int steps = quick ? 3 : (B <= 8 ? 12 : 6);
        mamba_state *s = mamba_state_new(m, B);
        double rf = decode_rate(df, s, B, steps, c.vocab_size, logits);
        mamba_state_reset(s);
        double rb = decode_rate(db, s, B, steps, c.vocab_size, logits);
        if (k == 0) { base_f = rf; base_b = rb; }
        printf("%8d %14.1f %8.2f %14.1f %8.2f\n", B, rf, rf / base_f, rb, rb / base_b);
        fflush(stdout);
        mamba_state_free(s);
    }
    mamba_decoder_free(df); mamba_decoder_free(db);
    free(logits);
    mamba_free(m);

    /* ---- 4. flat in context length ---- */
    c = mamba_config_default();
    c.d_model = 64; c.n_layers = 2; c.vocab_size = 256;
    m = mamba_new(&c);
    mamba_init_params(m, 1);
    mamba_decoder *d = mamba_decoder_new(m, SSM_F32, 1, 1);
    float *lg = ssm_xmalloc((size_t)c.vocab_size * sizeof(float));
    int positions[3] = {100, 10000, 100000};
    double base = 0;
    printf("\ndecode rate against context position (d_model 64, 2 layers, batch 1, 1 thread)\n");
    printf("%10s %14s %10s\n", "position", "tokens/s", "ratio");
    for (int p = 0; p < 3; p++) {
        mamba_state *s = mamba_state_new(m, 1);
        int L = positions[p], chunk = 2048;
        int32_t *tok = ssm_xmalloc((size_t)chunk * sizeof(int32_t));
        for (int i = 0; i < chunk; i++) tok[i] = (i * 7 + 3) % 256;
        for (int off = 0; off < L; off += chunk) mamba_forward(m, tok, NULL, 1, L - off < chunk ? L - off : chunk, NULL, s);
        double r = decode_rate(d, s, 1, quick ? 300 : 2000, c.vocab_size, lg);
        if (p == 0) base = r;
        printf("%10d %14.1f %10.2f\n", L, r, r / base);
        free(tok);
        mamba_state_free(s);
    }
    free(lg);
    mamba_decoder_free(d);
    mamba_free(m);
    print_load("end");
    if (sink == 12345.678) printf("\n");   /* keeps the sums alive */
    return 0;
}
