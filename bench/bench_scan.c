/* bench_scan.c - the selective scan at the size (batch 2, D 768, N 16, L 1024, with z, D,
 * delta_bias and softplus, float32) against PyTorch's plain scan loop (bench/scan_torch.py, Debian's
 * python3-torch, same threads, measured in the same run), and against the floor of this CPU: the
 * vectorized exp's throughput (one exp per state update) and the memory bandwidth (the bytes the
 * forward must move).  Medians of a few runs; the machine is shared, so figures move.
 *
 *     build/bench/bench_scan [REPEATS]        (make bench; BENCH_ONLY=scan)
 * BENCH_SCAN_NO_TORCH=1 skips the baseline (for profiling).
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "selective_scan.h"

enum { BATCH = 2, DM = 768, NS = 16, LL = 1024 };

#include <time.h>
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
static double minimum(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}
static float *randn(int64_t n, float scale, float shift) {
    float *a = ssm_xmalloc((size_t)n * sizeof(float));
    unsigned long long s = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        double u1 = ((s >> 11) + 0.5) * 0x1p-53;
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        double u2 = (s >> 11) * 0x1p-53;
        a[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2)) * scale + shift;
    }
    return a;
}

/* exp throughput: every thread applies the scan's exp to an L1-resident array.  Returns exps per
 * second of wall-clock time (all threads) and, in *per_cpu_s, per second of CPU time. */
static double exp_rate(int threads, double *per_cpu_s) {
    const int n = 4096, reps = 4000;
    double t0 = 0, t1 = 0, cpu = 0;
#pragma omp parallel num_threads(threads) reduction(+ : cpu)
    {
        float *x = randn(n, 3, -4), *y = ssm_xmalloc(n * sizeof(float));
        struct timespec a, b;
#pragma omp barrier
#pragma omp master
        t0 = ssm_now();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        for (int r = 0; r < reps; r++) { ssm_scan_exp_f32(x, y, n); x[r % n] = y[(r * 7) % n] * 1e-3f; }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        cpu += (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
#pragma omp barrier
#pragma omp master
        t1 = ssm_now();
        free(x); free(y);
    }
    *per_cpu_s = (double)n * reps * threads / cpu;
    return (double)n * reps * threads / (t1 - t0);
}

/* memory bandwidth: every thread copies its share of 2 x 256 MiB (bytes read + written). */
static double bandwidth(int threads) {
    const int64_t n = 64ll << 20;   /* floats: 256 MiB */
    float *a = ssm_xmalloc((size_t)n * 4), *b = ssm_xmalloc((size_t)n * 4);
#pragma omp parallel for num_threads(threads)
    for (int64_t i = 0; i < n; i++) a[i] = (float)i, b[i] = 0;
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = ssm_now();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; i++) b[i] = a[i] * 1.0001f;
        double t = ssm_now() - t0;
        if (t < best) best = t;
    }
    free(a); free(b);
    return 2.0 * (double)n * 4 / best;
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    if (repeats < 1) repeats = 1;
    if (repeats > 64) repeats = 64;
    int threads = omp_get_max_threads();
    const int64_t nx = (int64_t)BATCH * DM * LL, nbc = (int64_t)BATCH * NS * LL;
    float *u = randn(nx, 1, 0), *delta = randn(nx, 1, -1), *z = randn(nx, 1, 0);
    float *A = randn(DM * NS, 0.3f, -1), *B = randn(nbc, 1, 0), *C = randn(nbc, 1, 0);
    float *Dk = randn(DM, 1, 0), *bias = randn(DM, 0.1f, 0), *dy = randn(nx, 1, 0);
    for (int i = 0; i < DM * NS; i++) A[i] = -fabsf(A[i]) - 0.1f;
    float *y = ssm_xmalloc((size_t)nx * 4), *h = ssm_xmalloc((size_t)BATCH * DM * NS * 4);
    float *gu = ssm_xmalloc((size_t)nx * 4), *gd = ssm_xmalloc((size_t)nx * 4), *gz = ssm_xmalloc((size_t)nx * 4);
    float *gA = ssm_xmalloc(DM * NS * 4), *gB = ssm_xmalloc((size_t)nbc * 4), *gC = ssm_xmalloc((size_t)nbc * 4);
    float *gD = ssm_xmalloc(DM * 4), *gbias = ssm_xmalloc(DM * 4), *gh0 = ssm_xmalloc((size_t)BATCH * DM * NS * 4);
    ssm_scan_grads g = {gu, gd, gA, gB, gC, gD, gz, gbias, gh0};

    /* the baseline, same threads, in this run */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/scan_torch.py %d %d %d %d %d 3", BATCH, DM, LL, NS, threads);
    double torch_ms = NAN, torch_cpu_ms = NAN;
    FILE *pp = NULL;
    if (getenv("BENCH_SCAN_NO_TORCH")) {
    } else if (access("bench/scan_torch.py", R_OK) != 0) {
        fprintf(stderr, "bench_scan: bench/scan_torch.py not found: run from the repository root (make bench)\n");
    } else {
        pp = popen(cmd, "r");
    }
    if (pp) {
        char line[256];
        while (fgets(line, sizeof line, pp)) {
            sscanf(line, "forward_ms %lf", &torch_ms);
            sscanf(line, "forward_cpu_ms %lf", &torch_cpu_ms);
        }
        pclose(pp);
    }

    double updates = (double)BATCH * LL * DM * NS;
    double fwd[2], bwd[2], fwd_cpu[2], bwd_cpu[2];
    for (int lay = 0; lay < 2; lay++) {
        ssm_scan_params p;
        memset(&p, 0, sizeof p);
        p.batch = BATCH, p.L = LL, p.D = DM, p.N = NS, p.G = 1, p.softplus = 1;
        p.x_strides = lay ? ssm_scan_layout_bld(LL, DM) : ssm_scan_layout_bdl(LL, DM);
        p.bc_strides = lay ? ssm_scan_layout_bld(LL, NS) : ssm_scan_layout_bdl(LL, NS);
        p.u = u, p.delta = delta, p.A = A, p.B = B, p.C = C, p.D_skip = Dk, p.z = z, p.delta_bias = bias;
        p.threads = threads;
        double t[64], c[64];
        selective_scan_forward(&p, y, h);   /* warm-up */
        for (int r = 0; r < repeats; r++) {
            double t0 = ssm_now(), c0 = cpu_now();
            selective_scan_forward(&p, y, h);
            t[r] = ssm_now() - t0, c[r] = cpu_now() - c0;
        }
        fwd[lay] = median(t, repeats), fwd_cpu[lay] = minimum(c, repeats);
        selective_scan_backward(&p, dy, NULL, &g);
        for (int r = 0; r < repeats; r++) {
            double t0 = ssm_now(), c0 = cpu_now();
            selective_scan_backward(&p, dy, NULL, &g);
            t[r] = ssm_now() - t0, c[r] = cpu_now() - c0;
        }
        bwd[lay] = median(t, repeats), bwd_cpu[lay] = minimum(c, repeats);
    }
    double er_cpu, er = exp_rate(threads, &er_cpu), bw = bandwidth(threads);
    /* the forward must read u, delta, z and write y (x-shape), read B, C */
    double bytes = 4.0 * (4 * nx + 2 * nbc);
    double floor_s = fmax(updates / er, bytes / bw);

    double floor_cpu = updates / er_cpu;   /* CPU seconds of exps, all threads together */
    printf("# batch %d, D %d, N %d, L %d, z, D, delta_bias, softplus, float32, %d threads, median of %d\n",
           BATCH, DM, NS, LL, threads, repeats);
    printf("# floor: exp %.2f G/s (%.2f ms for %.0f M exps), bandwidth %.1f GB/s (%.2f ms for %.1f MB): %.2f ms\n",
           er * 1e-9, updates / er * 1e3, updates * 1e-6, bw * 1e-9, bytes / bw * 1e3, bytes * 1e-6, floor_s * 1e3);
    printf("# per CPU second: exp %.2f G/s, so %.2f CPU ms of exps (the machine is shared: CPU time is the\n"
           "# steadier measure; 'cpu ms' is the least CPU time of the runs, all threads together)\n",
           er_cpu * 1e-9, floor_cpu * 1e3);
    printf("%-30s %9s %9s %9s %10s %8s %9s %7s\n", "what", "ms", "cpu ms", "G upd/s", "vs PyTorch", "(cpu)", "of floor", "(cpu)");
    printf("%-30s %9.2f %9.2f %9.3f %10s %8s %9s %7s\n", "PyTorch plain loop fwd (bdl)", torch_ms, torch_cpu_ms, updates / torch_ms * 1e-6, "1.00x", "1.00x", "-", "-");
    const char *names[2] = {"bdl", "bld"};
    for (int lay = 0; lay < 2; lay++) {
        char what[64];
        snprintf(what, sizeof what, "ssm forward (%s)", names[lay]);
        printf("%-30s %9.2f %9.2f %9.3f %9.1fx %7.1fx %8.0f%% %6.0f%%\n", what, fwd[lay] * 1e3, fwd_cpu[lay] * 1e3,
               updates / fwd[lay] * 1e-9, torch_ms * 1e-3 / fwd[lay], torch_cpu_ms * 1e-3 / fwd_cpu[lay],
               100 * floor_s / fwd[lay], 100 * floor_cpu / fwd_cpu[lay]);
        snprintf(what, sizeof what, "ssm backward (%s)", names[lay]);
        printf("%-30s %9.2f %9.2f %9.3f\n", what, bwd[lay] * 1e3, bwd_cpu[lay] * 1e3, updates / bwd[lay] * 1e-9);
        snprintf(what, sizeof what, "  backward / forward (%s)", names[lay]);
        printf("%-30s %8.2fx %8.2fx\n", what, bwd[lay] / fwd[lay], bwd_cpu[lay] / fwd_cpu[lay]);
    }
    free(u); free(delta); free(z); free(A); free(B); free(C); free(Dk); free(bias); free(dy); free(y); free(h);
    free(gu); free(gd); free(gz); free(gA); free(gB); free(gC); free(gD); free(gbias); free(gh0);
    return 0;
}
