/* hippo.c - HiPPO matrices, S4D initializations and the documented seeded random draws.
 * Every formula here is written from ../shared/REFERENCE.md sections 2-3 (see hippo.h). */
#include "hippo.h"

#include <math.h>
#include <string.h>

static const char *const init_names[SSM_INIT_COUNT] = {
    "legs", "legt", "lagt", "fout", "s4d-lin", "s4d-inv", "s4d-real", "s4d-legs", "mamba", "random",
};

const char *ssm_init_name(int kind) {
    return kind >= 0 && kind < SSM_INIT_COUNT ? init_names[kind] : NULL;
}

int ssm_init_from_name(const char *name) {
    for (int k = 0; k < SSM_INIT_COUNT; k++)
        if (strcmp(init_names[k], name) == 0) return k;
    return -1;
}

int ssm_init_is_hippo(int kind) {
    return kind == SSM_INIT_LEGS || kind == SSM_INIT_LEGT || kind == SSM_INIT_LAGT || kind == SSM_INIT_FOUT;
}

int hippo_rank(int kind) {
    if (kind == SSM_INIT_LEGT) return 2;
    return ssm_init_is_hippo(kind) ? 1 : -1;
}

/* LegS: A[n,k] = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k); B[n] = sqrt(2n+1);
 * P[n] = sqrt(n + 1/2). */
static void hippo_legs(int N, double *A, double *B, double *P) {
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < N; k++) {
            double v = 0;
            if (n > k) v = -sqrt((2.0 * n + 1) * (2.0 * k + 1));   /* one rounding: exact when it can be */
            else if (n == k) v = -(n + 1.0);
            A[(int64_t)n * N + k] = v;
        }
        B[n] = sqrt(2.0 * n + 1);
        P[n] = sqrt(n + 0.5);
    }
}

/* LegT: A[i,j] = -1/2 sqrt(2i+1) sqrt(2j+1) * ((-1)^(i-j) if i < j else 1); B[i] = sqrt(2i+1)/2.
 * P is rank 2: P0[n] = sqrt(2n+1)/sqrt(2) on odd n (0 on even n), P1[n] the same on even n. */
static void hippo_legt(int N, double *A, double *B, double *P) {
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            double sign = (i < j && ((j - i) & 1)) ? -1.0 : 1.0;
            A[(int64_t)i * N + j] = -0.5 * sqrt((2.0 * i + 1) * (2.0 * j + 1)) * sign;
        }
        B[i] = 0.5 * sqrt(2.0 * i + 1);
        double p = sqrt(2.0 * i + 1) / sqrt(2.0);
        P[i] = (i & 1) ? p : 0.0;
        P[N + i] = (i & 1) ? 0.0 : p;
    }
}

/* LagT: A = I/2 - tril(ones) (lower triangle including the diagonal); B = 1; P = sqrt(1/2). */
static void hippo_lagt(int N, double *A, double *B, double *P) {
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < N; k++) A[(int64_t)n * N + k] = (n == k ? 0.5 : 0.0) - (k <= n ? 1.0 : 0.0);
        B[n] = 1.0;
        P[n] = sqrt(0.5);
    }
}

/* FouT: blocks pi [[0, -k], [k, 0]] on rows/columns (2k, 2k+1), then A -= B B^T with
 * B = (1, 0, sqrt2, 0, sqrt2, 0, ...); P = B. */
static void hippo_fout(int N, double *A, double *B, double *P) {
    memset(A, 0, sizeof(double) * (size_t)N * (size_t)N);
    for (int n = 0; n < N; n++) B[n] = (n & 1) ? 0.0 : (n == 0 ? 1.0 : sqrt(2.0));
    for (int k = 0; 2 * k + 1 < N; k++) {
        A[(int64_t)(2 * k) * N + 2 * k + 1] = -M_PI * k;
        A[(int64_t)(2 * k + 1) * N + 2 * k] = M_PI * k;
    }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < N; k++) A[(int64_t)n * N + k] -= B[n] * B[k];
    memcpy(P, B, sizeof(double) * (size_t)N);
}

int hippo_matrices(int kind, int N, double *A, double *B, double *P) {
    switch (kind) {
    case SSM_INIT_LEGS: hippo_legs(N, A, B, P); return 1;
    case SSM_INIT_LEGT: hippo_legt(N, A, B, P); return 2;
    case SSM_INIT_LAGT: hippo_lagt(N, A, B, P); return 1;
    case SSM_INIT_FOUT: hippo_fout(N, A, B, P); return 1;
    }
    return -1;
}

void s4d_lin_A(int N, double *A) {
    for (int m = 0; m < N / 2; m++) { A[2 * m] = -0.5; A[2 * m + 1] = M_PI * m; }
}

void s4d_inv_A(int N, double *A) {
    for (int m = 0; m < N / 2; m++) {
        A[2 * m] = -0.5;
        A[2 * m + 1] = ((double)N / M_PI) * ((double)N / (2.0 * m + 1) - 1.0);
    }
}

void s4d_real_A(int N, double *A) {
    for (int n = 0; n < N; n++) A[n] = -(n + 1.0);
}

void mamba_A_log(int N, double *A_log) {
    for (int n = 0; n < N; n++) A_log[n] = log(n + 1.0);
}

/* ---- random draws (the algorithm is specified in hippo.h) ---------------------------------------- */
void ssm_rng_init(ssm_rng *r, uint64_t seed, uint64_t tag) {
    r->state = seed ^ (tag * 0xD1B54A32D192ED03ull);
}

uint64_t ssm_rng_next(ssm_rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ssm_rng_uniform(ssm_rng *r) { return (double)(ssm_rng_next(r) >> 11) * 0x1p-53; }

double ssm_rng_normal(ssm_rng *r) {
    double u = ssm_rng_uniform(r), v = ssm_rng_uniform(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void ssm_draw_normal(uint64_t seed, uint64_t tag, int64_t n, double var, double *out) {
    ssm_rng r;
    ssm_rng_init(&r, seed, tag);
    double s = sqrt(var);
    for (int64_t i = 0; i < n; i++) out[i] = s * ssm_rng_normal(&r);
}

void ssm_draw_complex_normal(uint64_t seed, uint64_t tag, int64_t n, double var, double *out) {
    ssm_draw_normal(seed, tag, 2 * n, var / 2, out);
}

void ssm_draw_dt(uint64_t seed, int64_t H, double dt_min, double dt_max, double *dt) {
    ssm_rng r;
    ssm_rng_init(&r, seed, SSM_RNG_DT);
    double lo = log(dt_min), hi = log(dt_max);
    for (int64_t h = 0; h < H; h++) dt[h] = exp(lo + ssm_rng_uniform(&r) * (hi - lo));
}
