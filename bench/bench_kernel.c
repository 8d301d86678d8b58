/* bench_kernel.c - the SSM kernel three ways, and the FFT convolution.
 *
 * Part 1: time and peak memory of cauchy (dplr, LegS) and vandermonde (diag, S4D-Lin) against
 * naive (dense, LegS bilinear) at N = 64, 256, 512 (M = N/2 complex modes for the first two),
 * H = 256 channels, L = 1024 .. 16384, as ratios measured in one run.
 *
 *   Time is CPU time of one thread (CLOCK_PROCESS_CPUTIME_ID), not wall time: the machine this
 *   was written on is shared by many processes (load average ~10 on 2 cores), where wall-clock
 *   times of short runs vary by 10x while CPU time measures the work.  Every method treats the
 *   channels independently, so with T threads the wall time on an idle machine is about
 *   CPU time / T (the table's seconds are for one thread).
 *
 *   Each measurement runs in a fresh forked child: it builds its inputs for h channels from a
 *   one-channel prototype, runs the method once and reports its CPU time and its peak resident
 *   memory (getrusage ru_maxrss minus the resident size when the child started).  Peak memory
 *   therefore counts the inputs the method needs (naive: the dense Abar, N^2 per channel), the
 *   output K and the work buffers (of one thread).
 *
 *   Extrapolation (marked *): when a full run would be too long the child runs h < H channels
 *   and, for naive only, Lrun = min(L, 2048) steps (each of naive's steps is the same matrix-
 *   vector product, so its time is exactly linear in L); then
 *       time(H, L) = time(h, Lrun) (H / h) (L / Lrun),
 *       memory(H, L) = [peak(h, Lrun) - io(h, Lrun)] + io(H, L),
 *   where io is the exact byte count of the inputs and the output K (the work buffers do not
 *   grow with the channel count).  h is chosen so that one measurement takes about BENCH_BUDGET
 *   CPU seconds (default 0.3; environment variable BENCH_BUDGET), from a first run at h = 1.
 *
 * Part 2: FFT convolution (float32), batch 16 x H 256 x L 4096, one thread (CPU time, best of
 * 3): GFLOP/s counting FFTW's own operation count (fftw_flops) of the transforms it runs plus the
 * pointwise work, against FFTW alone running the same transforms (same plans and buffer sizes,
 * no convolution around them), with FFTW_ESTIMATE and FFTW_MEASURE plans; and against the direct
 * O(L^2) convolution (a few rows, scaled).
 *
 * Usage: bench_kernel [--quick]   (--quick: N = 64 and 256, L up to 4096, a smaller convolution)
 */
#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "discretize.h"
#include "fftw_cache.h"
#include "hippo.h"
#include "nplr.h"
#include "ssm_kernel.h"

enum { NAIVE, VANDERMONDE, CAUCHY };
static const char *const names[] = {"naive", "vandermonde", "cauchy"};
static const int64_t H_FULL = 256;

/* one-channel prototypes (built in the parent, copied to h channels in the child) */
typedef struct {
    int N, M, R;
    double *Abar_dense, *Bbar_dense, *C_dense;          /* LegS, bilinear, dt 0.01 */
    double *Abar_diag, *Bbar_diag, *C_diag;             /* S4D-Lin, ZOH, dt 0.01 */
    double *Lambda, *P, *B, *C;                         /* LegS dplr */
} prototype;

static double uniform01(unsigned long long *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1p-53;
}

static void build_prototype(int N, prototype *p) {
    int M = N / 2;
    p->N = N; p->M = M; p->R = 1;
    double dt = 0.01;
    double *A = ssm_xmalloc(sizeof(double) * (size_t)N * N), *B = ssm_xmalloc(sizeof(double) * (size_t)N);
    double *P = ssm_xmalloc(sizeof(double) * (size_t)N), *Vh = ssm_xmalloc(sizeof(double) * 2 * (size_t)N * M);
    unsigned long long s = 12345;
    hippo_matrices(SSM_INIT_LEGS, N, A, B, P);
    p->Abar_dense = ssm_xmalloc(sizeof(double) * (size_t)N * N);
    p->Bbar_dense = ssm_xmalloc(sizeof(double) * (size_t)N);
    p->C_dense = ssm_xmalloc(sizeof(double) * (size_t)N);
    for (int n = 0; n < N; n++) p->C_dense[n] = uniform01(&s) - 0.5;
    if (discretize_dense(SSM_METHOD_BILINEAR, N, dt, A, B, p->Abar_dense, p->Bbar_dense) < 0) ssm_die("discretize");
    char err[256];
    p->Lambda = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    if (nplr_decompose(N, 1, A, P, p->Lambda, Vh, NULL, err, sizeof err) < 0) ssm_die("nplr: %s", err);
    p->P = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    p->B = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    p->C = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    nplr_project_column(N, M, Vh, P, p->P);
    nplr_project_column(N, M, Vh, B, p->B);
    nplr_project_row(N, M, Vh, p->C_dense, p->C);
    double *Ad = ssm_xmalloc(sizeof(double) * 2 * (size_t)M), *Bd = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    s4d_lin_A(N, Ad);
    for (int m = 0; m < M; m++) { Bd[2 * m] = 1; Bd[2 * m + 1] = 0; }
    p->Abar_diag = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    p->Bbar_diag = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    p->C_diag = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
    discretize_diag_complex(SSM_METHOD_ZOH, M, dt, Ad, Bd, p->Abar_diag, p->Bbar_diag);
    for (int i = 0; i < 2 * M; i++) p->C_diag[i] = uniform01(&s) - 0.5;
    free(A); free(B); free(P); free(Vh); free(Ad); free(Bd);
}

static void free_prototype(prototype *p) {
    free(p->Abar_dense); free(p->Bbar_dense); free(p->C_dense); free(p->Abar_diag); free(p->Bbar_diag);
    free(p->C_diag); free(p->Lambda); free(p->P); free(p->B); free(p->C);
}

/* exact bytes of the inputs and the output K for h channels */
static double io_bytes(int method, const prototype *p, int64_t h, int64_t L) {
    double N = p->N, M = p->M, per;
    if (method == NAIVE) per = (N * N + 2 * N) * 8;
    else if (method == VANDERMONDE) per = 3 * M * 16;
    else per = (3 + p->R) * M * 16 + 8;
    return (double)h * (per + 8.0 * (double)L);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long rss_now_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) { if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0; fclose(f); }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static double *replicate(const double *x, size_t n, int64_t h) {
    double *y = ssm_xmalloc(sizeof(double) * n * (size_t)h);
    for (int64_t i = 0; i < h; i++) memcpy(y + (size_t)i * n, x, sizeof(double) * n);
    return y;
}

/* In a child: run `method` on h channels; returns seconds and peak bytes above the start. */
static int run_child(int method, const prototype *p, int64_t h, int64_t L, double *seconds, double *peak_bytes) {
    int fd[2];
    if (pipe(fd) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        omp_set_num_threads(1);   /* CPU time of one thread: see the top of the file */
        double warm = 0;
        if (method == CAUCHY) { fftw_plan a, b; fftw_cached_plans(L, &a, &b); }
        long rss0 = rss_now_kb();
        int N = p->N, M = p->M;
        double *K = ssm_xmalloc(sizeof(double) * (size_t)(h * L));
        memset(K, 0, sizeof(double) * (size_t)(h * L));
        double t = 0;
        if (method == NAIVE) {
            double *A = replicate(p->Abar_dense, (size_t)N * N, h), *B = replicate(p->Bbar_dense, (size_t)N, h);
            double *C = replicate(p->C_dense, (size_t)N, h);
            t = cpu_now();
            naive_kernel_dense(h, N, L, A, B, C, K);
            t = cpu_now() - t;
        } else if (method == VANDERMONDE) {
            double *A = replicate(p->Abar_diag, 2 * (size_t)M, h), *B = replicate(p->Bbar_diag, 2 * (size_t)M, h);
            double *C = replicate(p->C_diag, 2 * (size_t)M, h);
            t = cpu_now();
            vandermonde_kernel_complex(h, M, L, A, B, C, K);
            t = cpu_now() - t;
        } else {
            double *lam = replicate(p->Lambda, 2 * (size_t)M, h), *P = replicate(p->P, 2 * (size_t)M, h);
            double *B = replicate(p->B, 2 * (size_t)M, h), *C = replicate(p->C, 2 * (size_t)M, h);
            double dt1 = 0.01, *dt = replicate(&dt1, 1, h);
            t = cpu_now();
            if (cauchy_kernel_dplr(h, M, 1, L, dt, lam, P, B, C, K) < 0) _exit(3);
            t = cpu_now() - t;
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double out[2] = {t, ((double)ru.ru_maxrss - (double)rss0) * 1024.0 + 0 * warm};
        if (write(fd[1], out, sizeof out) != (ssize_t)sizeof out) _exit(2);
        _exit(0);
    }
    close(fd[1]);
    double in[2];
    ssize_t got = read(fd[0], in, sizeof in);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof in || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    *seconds = in[0];
    *peak_bytes = in[1];
    return 0;
}

typedef struct {
    double seconds, bytes;
    int64_t h, Lrun;
} result;

static result measure(int method, const prototype *p, int64_t L, double budget) {
    result r = {0, 0, 1, L};
    double t, b;
    int64_t h = 1, Lrun = method == NAIVE && L > 2048 ? 2048 : L;
    if (run_child(method, p, h, Lrun, &t, &b) < 0) ssm_die("%s N %d L %lld: child failed", names[method], p->N, (long long)L);
    if (t < budget / 2) {
        double want = (double)h * budget / (t > 1e-6 ? t : 1e-6);
        int64_t h2 = want > (double)H_FULL ? H_FULL : (int64_t)want;
        if (h2 > h) {
            h = h2;
            if (run_child(method, p, h, Lrun, &t, &b) < 0) ssm_die("%s: child failed", names[method]);
        }
    }
    r.h = h;
    r.Lrun = Lrun;
    r.seconds = t * (double)H_FULL / (double)h * (double)L / (double)Lrun;
    r.bytes = b - io_bytes(method, p, h, Lrun) + io_bytes(method, p, H_FULL, L);
    return r;
}

static void fmt_mem(double bytes, char *buf, size_t n) {
    if (bytes >= 1e9) snprintf(buf, n, "%.2fG", bytes / 1e9);
    else snprintf(buf, n, "%.1fM", bytes / 1e6);
}

/* ---- part 2: FFT convolution ------------------------------------------------------------------ */
/* Runs in a child (so that FFTW_MEASURE plans do not meet the ESTIMATE ones in the cache).
 * out: [conv seconds, fftw-alone seconds, flops of conv, flops of fftw alone] */
static void fft_child(int measure_plans, int64_t batch, int64_t H, int64_t L, double out[4]) {
    omp_set_num_threads(1);
    fft_conv_set_measure(measure_plans);
    int64_t n = 2 * L, nu = batch * H * L;
    float *u = fftwf_malloc(sizeof(float) * (size_t)nu), *y = fftwf_malloc(sizeof(float) * (size_t)nu);
    float *K = malloc(sizeof(float) * (size_t)(H * L)), *D = malloc(sizeof(float) * (size_t)H);
    unsigned long long s = 7;
    for (int64_t i = 0; i < nu; i++) u[i] = (float)(uniform01(&s) - 0.5);
    for (int64_t h = 0; h < H; h++) {
        D[h] = (float)uniform01(&s);
        for (int64_t l = 0; l < L; l++) K[h * L + l] = (float)((uniform01(&s) - 0.5) * exp(-4.0 * l / L));
    }
    fft_conv_forward_f32(batch, H, L, u, K, NULL, D, y);   /* plans + warm-up */
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t = cpu_now();
        fft_conv_forward_f32(batch, H, L, u, K, NULL, D, y);
        t = cpu_now() - t;
        if (t < best) best = t;
    }
    /* FFTW's count: r2c + c2r per batch row, one r2c per channel for K; plus 6 flops per complex
     * product and 2 per output sample for the skip term */
    fftwf_plan r2c, c2r;
    fftw_cached_plans_f32(n, &r2c, &c2r);
    double a, m, f;
    fftwf_flops(r2c, &a, &m, &f);
    double fr2c = a + m + 2 * f;
    fftwf_flops(c2r, &a, &m, &f);
    double fc2r = a + m + 2 * f;
    double transforms = (double)H * ((double)batch * (fr2c + fc2r) + fr2c);
    double pointwise = (double)H * (double)batch * (6.0 * (double)(L + 1) + 2.0 * (double)L);
    /* FFTW alone: the same transforms, same plans, on buffers of the same alignment */
    double best_alone = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t = cpu_now();
#pragma omp parallel
        {
            float *x = fftwf_malloc(sizeof(float) * (size_t)n);
            fftwf_complex *X = fftwf_malloc(sizeof(fftwf_complex) * (size_t)(L + 1));
            memset(x, 0, sizeof(float) * (size_t)n);
#pragma omp for schedule(dynamic)
            for (int64_t h = 0; h < H; h++) {
                memcpy(x, K + h * L, sizeof(float) * (size_t)L);
                fftwf_execute_dft_r2c(r2c, x, X);
                for (int64_t b = 0; b < batch; b++) {
                    memcpy(x, u + (b * H + h) * L, sizeof(float) * (size_t)L);
                    memset(x + L, 0, sizeof(float) * (size_t)L);
                    fftwf_execute_dft_r2c(r2c, x, X);
                    fftwf_execute_dft_c2r(c2r, X, x);
                }
            }
            fftwf_free(x);
            fftwf_free(X);
        }
        t = cpu_now() - t;
        if (t < best_alone) best_alone = t;
    }
    out[0] = best;
    out[1] = best_alone;
    out[2] = transforms + pointwise;
    out[3] = transforms;
    fftwf_free(u); fftwf_free(y); free(K); free(D);
}

static int fft_in_child(int measure_plans, int64_t batch, int64_t H, int64_t L, double out[4]) {
    int fd[2];
    if (pipe(fd) < 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        double o[4];
        fft_child(measure_plans, batch, H, L, o);
        if (write(fd[1], o, sizeof o) != (ssize_t)sizeof o) _exit(2);
        _exit(0);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], out, 4 * sizeof(double));
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return got == 4 * (ssize_t)sizeof(double) && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* the direct O(L^2) convolution on `rows` (batch row, channel) pairs, in a child; seconds */
static double direct_rows_seconds(int64_t L, int64_t rows) {
    int fd[2];
    if (pipe(fd) < 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        double *u = malloc(sizeof(double) * (size_t)(rows * L)), *y = malloc(sizeof(double) * (size_t)(rows * L));
        double *K = malloc(sizeof(double) * (size_t)(rows * L));
        unsigned long long s = 3;
        for (int64_t i = 0; i < rows * L; i++) { u[i] = uniform01(&s); K[i] = uniform01(&s); }
        double t = cpu_now();
        fft_conv_direct_f64(1, rows, L, u, K, NULL, NULL, y);
        t = cpu_now() - t;
        if (write(fd[1], &t, sizeof t) != (ssize_t)sizeof t) _exit(2);
        _exit(0);
    }
    close(fd[1]);
    double t = -1;
    if (read(fd[0], &t, sizeof t) != (ssize_t)sizeof t) t = -1;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return t;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    /* no OpenMP region may run in the parent before the forks (libgomp does not survive fork) */
    const char *eb = getenv("BENCH_BUDGET");
    double budget = eb ? atof(eb) : 0.3;
    int Ns[] = {64, 256, 512};
    int64_t Ls[] = {1024, 2048, 4096, 8192, 16384};
    int nN = quick ? 2 : 3, nL = quick ? 3 : 5;
    double krylov_note = 0, cauchy_last = 1;

    printf("# SSM kernel, H = %lld channels: CPU seconds of one thread (wall time on T idle cores ~ this / T)\n"
           "# and peak memory (inputs + K + work of one thread)\n", (long long)H_FULL);
    printf("# naive = dense LegS (bilinear), cauchy = LegS dplr (rank 1), vandermonde = S4D-Lin (ZOH);\n");
    printf("# '*' = measured on h < %lld channels (naive: and <= 2048 steps) and scaled (see the top of\n"
           "# bench/bench_kernel.c); t n/c = naive time / cauchy time, mem n/c likewise\n", (long long)H_FULL);
    printf("%5s %6s | %10s %10s %10s | %9s %9s %9s | %8s %8s | %8s %8s\n", "N", "L", "naive s", "cauchy s",
           "vander s", "naive", "cauchy", "vander", "t n/c", "t n/v", "mem n/c", "mem n/v");
    for (int i = 0; i < nN; i++) {
        prototype p;
        build_prototype(Ns[i], &p);
        for (int j = 0; j < nL; j++) {
            result r[3];
            for (int m = 0; m < 3; m++) r[m] = measure(m, &p, Ls[j], budget);
            char mem[3][32], ts[3][32];
            for (int m = 0; m < 3; m++) {
                fmt_mem(r[m].bytes, mem[m], sizeof mem[m]);
                snprintf(ts[m], sizeof ts[m], "%.3f%s", r[m].seconds, r[m].h < H_FULL || r[m].Lrun < Ls[j] ? "*" : "");
            }
            printf("%5d %6lld | %10s %10s %10s | %9s %9s %9s | %8.1f %8.1f | %8.1f %8.1f\n", Ns[i], (long long)Ls[j],
                   ts[NAIVE], ts[CAUCHY], ts[VANDERMONDE], mem[NAIVE], mem[CAUCHY], mem[VANDERMONDE],
                   r[NAIVE].seconds / r[CAUCHY].seconds, r[NAIVE].seconds / r[VANDERMONDE].seconds,
                   r[NAIVE].bytes / r[CAUCHY].bytes, r[NAIVE].bytes / r[VANDERMONDE].bytes);
            fflush(stdout);
            if (i == nN - 1 && j == nL - 1)
                krylov_note = (double)H_FULL * Ns[i] * (double)Ls[j] * 8 + r[NAIVE].bytes, cauchy_last = r[CAUCHY].bytes;
        }
        free_prototype(&p);
    }
    /* The S4 paper's memory baseline (LSSL) keeps the L states of the naive recurrence (the
     * Krylov matrix, N x L per channel); our naive does not.  Its size is exact arithmetic: */
    printf("# a naive method that keeps its states (N x L per channel, as LSSL does) would need %.1f GB at\n"
           "# N = %d, L = %lld: %.0fx the cauchy peak (computed from the byte count, not run)\n",
           krylov_note / 1e9, Ns[nN - 1], (long long)Ls[nL - 1], krylov_note / cauchy_last);

    int64_t batch = 16, H = 256, L = 4096;
    if (quick) { batch = 4; H = 64; }
    printf("\n# FFT convolution (float32), batch %lld x H %lld x L %lld, one thread (CPU time, best of 3);\n"
           "# GFLOP/s = FFTW's own count (fftw_flops) of the transforms + 8 flops per output sample\n",
           (long long)batch, (long long)H, (long long)L);
    printf("%-22s %10s %10s %12s %12s %8s\n", "planner", "conv ms", "GFLOP/s", "FFTW-only ms", "FFTW GFLOP/s", "ratio");
    for (int meas = 0; meas < 2; meas++) {
        double o[4];
        if (fft_in_child(meas, batch, H, L, o) < 0) ssm_die("fft child failed");
        printf("%-22s %10.1f %10.2f %12.1f %12.2f %8.2f\n", meas ? "FFTW_MEASURE" : "FFTW_ESTIMATE", o[0] * 1e3,
               o[2] / o[0] / 1e9, o[1] * 1e3, o[3] / o[1] / 1e9, (o[2] / o[0]) / (o[3] / o[1]));
    }
    int64_t rows = 4;
    double td = direct_rows_seconds(L, rows);
    double direct_total = td * (double)(batch * H) / (double)rows;
    double o[4];
    if (fft_in_child(0, batch, H, L, o) == 0)
        printf("direct O(L^2) (f64, %lld rows scaled to %lld): %.2f s; FFT conv is %.0fx faster\n",
               (long long)rows, (long long)(batch * H), direct_total, direct_total / o[0]);
    /* memory floor: read u, write y (float32) */
    printf("bytes floor: u + y = %.0f MB per call\n", 2.0 * 4 * (double)(batch * H * L) / 1e6);
    return 0;
}
