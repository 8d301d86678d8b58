/* bench_s4d_step.c - one S4D training step (forward, backward, AdamW) at the Fashion-MNIST size
 * (d_model 64, 4 layers, d_state 64, L 784, batch 32, dropout 0.1), timed, against its floor: the
 * floating-point operations the step must do (the out_proj matmuls, the FFT convolutions as FFTW
 * counts them, the Vandermonde kernel and its gradient) at this CPU's sgemm rate, measured here on
 * a matmul of the same shape.  The elementwise work (LayerNorm, GELU, GLU, dropout, transposes) is
 * memory traffic, counted separately: bytes the step must move at least, at the measured copy rate.
 *
 *     build/bench/bench_s4d_step [STEPS [THREADS [BATCH [D_MODEL [N_LAYERS]]]]]
 * Prints wall and CPU seconds per step (median of STEPS, after one warm-up) and the floors.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model_s4d.h"
#include "nn.h"
#include "optim.h"
#include "ssm_kernel.h"

void openblas_set_num_threads(int);

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 5, threads = argc > 2 ? atoi(argv[2]) : 2;
    int batch = argc > 3 ? atoi(argv[3]) : 32, H = argc > 4 ? atoi(argv[4]) : 64;
    int layers = argc > 5 ? atoi(argv[5]) : 4, L = 784, N = 64;
    if (steps < 1) steps = 1;
    nn_set_threads(threads);
    if (getenv("BENCH_BLAS_THREADS")) openblas_set_num_threads(atoi(getenv("BENCH_BLAS_THREADS")));
    fft_conv_set_measure(1);
    s4d_config c = s4d_config_default();
    c.d_model = H; c.n_layers = layers; c.d_state = N; c.d_input = 1; c.n_classes = 10; c.dropout = 0.1f;
    s4d_model *m = s4d_new(&c);
    s4d_init_params(m, 1);
    ssm_params *ps = s4d_params(m);
    adamw opt = adamw_default();
    opt.total_steps = steps + 1;
    adamw_alloc(&opt, ps);
    float *x = ssm_xmalloc((size_t)batch * L * sizeof(float));
    int32_t *y = ssm_xmalloc((size_t)batch * sizeof(int32_t));
    for (int64_t i = 0; i < (int64_t)batch * L; i++) x[i] = (float)sin(0.37 * (double)i);
    for (int b = 0; b < batch; b++) y[b] = b % 10;
    double *tw = ssm_xmalloc((size_t)steps * sizeof(double)), *tc = ssm_xmalloc((size_t)steps * sizeof(double));
    double *tf = ssm_xmalloc((size_t)steps * sizeof(double)), *tb = ssm_xmalloc((size_t)steps * sizeof(double));
    for (int s = -1; s < steps; s++) {
        double w0 = wall_now(), c0 = cpu_now();
        ssm_params_zero_grad(ps);
        s4d_forward(m, NULL, x, batch, L, y, 1, (uint64_t)s + 7);
        double w1 = wall_now();
        s4d_backward(m);
        double w2 = wall_now();
        adamw_step(&opt, ps);
        if (s >= 0) { tw[s] = wall_now() - w0; tc[s] = cpu_now() - c0; tf[s] = w1 - w0; tb[s] = w2 - w1; }
    }
    double step_w = median(tw, steps), step_c = median(tc, steps);
    double fwd = median(tf, steps), bwd = median(tb, steps);

    /* the floor: flops */
    double R = (double)batch * L, Mm = N / 2.0;
    double f_linear = 3 * (2 * R * H * 2 * H) * layers + 3 * 2 * R * H;        /* out_proj x3 + encoder */
    double fft_pair = fft_conv_fftw_flops_f32(2 * L);                            /* one r2c + one c2r */
    double nf = L + 1;
    double f_fft = layers * (batch * H * (2.5 * fft_pair + 6 * nf + 12 * nf) + 2 * H * fft_pair);
    double f_kernel = layers * (double)H * Mm * L * (8 + 16);
    double flops = f_linear + f_fft + f_kernel;
    /* the sgemm rate of this machine on the out_proj shape (all threads) */
    float *A = ssm_xcalloc((size_t)(R * H), sizeof(float)), *B = ssm_xcalloc((size_t)(2 * H * H), sizeof(float));
    float *Cm = ssm_xcalloc((size_t)(R * 2 * H), sizeof(float));
    for (int64_t i = 0; i < (int64_t)(R * H); i++) A[i] = (float)(i % 7);
    double gt[5], gc[5];
    openblas_set_num_threads(1);     /* the per-core rate: ssm-train runs one sgemm per thread */
    for (int r = 0; r < 5; r++) {
        double t0 = wall_now(), c0 = cpu_now();
        for (int k = 0; k < 4; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, 2 * H, H, 1.0f, A, H, B, H, 0.0f, Cm, 2 * H);
        gt[r] = (wall_now() - t0) / 4;
        gc[r] = (cpu_now() - c0) / 4;
    }
    double gemm_rate = threads * 2 * R * H * 2 * H / median(gt, 5), gemm_cpu_rate = 2 * R * H * 2 * H / median(gc, 5);
    /* the memory floor: per layer, forward reads h, writes the saved activations (h_in, xt, ys, gd,
     * o (2H), next h) and the backward reads them back and writes dh, both about 2x that */
    double act = R * H * 4;
    double bytes = layers * act * (2 + 2 + 2 + 2 + 4 + 2 + 2 * 3);
    double t1 = wall_now(), c1 = cpu_now();
    for (int r = 0; r < 4; r++) memcpy(Cm, A, (size_t)(R * H * 4));
    double copy_rate = threads * 4 * 2 * act / (wall_now() - t1), copy_cpu_rate = 4 * 2 * act / (cpu_now() - c1);
    double floor_s = flops / gemm_rate + bytes / copy_rate, floor_cpu = flops / gemm_cpu_rate + bytes / copy_cpu_rate;
    printf("s4d step: d_model %d, %d layers, N %d, L %d, batch %d, %d threads, %d steps (median)\n", H, layers, N, L,
           batch, threads, steps);
    printf("  step      %8.1f ms wall (forward %.1f, backward %.1f, adamw %.1f), %.1f ms CPU\n", 1e3 * step_w, 1e3 * fwd,
           1e3 * bwd, 1e3 * (step_w - fwd - bwd), 1e3 * step_c);
    printf("  flops     %8.3f G/step: out_proj+encoder %.3f, FFT conv %.3f, kernel %.3f\n", flops / 1e9, f_linear / 1e9,
           f_fft / 1e9, f_kernel / 1e9);
    printf("  sgemm     %8.1f GFLOP/s (out_proj shape, one thread x %d, this run)  copy %.1f GB/s\n", gemm_rate / 1e9, threads,
           copy_rate / 1e9);
    printf("  floor     %8.1f ms (flops at the sgemm rate %.1f ms + %.0f MB at the copy rate %.1f ms); step/floor %.1fx\n",
           1e3 * floor_s, 1e3 * flops / gemm_rate, bytes / 1e6, 1e3 * bytes / copy_rate, step_w / floor_s);
    printf("  CPU time  %8.1f ms/step against a floor of %.1f ms CPU (sgemm %.1f GFLOP per CPU-s, copy one thread); %.1fx\n",
           1e3 * step_c, 1e3 * floor_cpu, gemm_cpu_rate / 1e9, step_c / floor_cpu);
    printf("  achieved  %8.1f GFLOP/s, %.0f tokens/s\n", flops / step_w / 1e9, R / step_w);
    free(A); free(B); free(Cm); free(x); free(y); free(tw); free(tc); free(tf); free(tb);
    adamw_free(&opt);
    s4d_free(m);
    return 0;
}
