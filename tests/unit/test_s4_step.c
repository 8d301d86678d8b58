/* test_s4_step.c - S4's recurrent step (libcommon/s4_step.h) equals the convolution with the
 * Cauchy kernel of length L (kernels/s4_kernel.h, double) for every t < L: outputs of a batch
 * stepped token by token with a float32 state, against y = K * u + D u computed directly in
 * double, to 1e-4 relative.  Systems: random DPLR (Re Lambda < 0, R = 1, 2, M odd) and
 * HiPPO-LegS in its DPLR form (the model's init, N = 64), dt log-uniform in [1e-3, 1e-1] (S4's
 * init range); L odd, not a power of two; batch 1 and 3; H odd.  Also: the setup's Abar and Bbar
 * reproduce the kernel with the true C (K_0 = C Bbar, K_1 = C Abar Bbar, ... checked through the
 * step outputs of a unit impulse). */
#include "check.h"
#include "hippo.h"
#include "nplr.h"
#include "s4_kernel.h"
#include "s4_step.h"

#include <complex.h>
#include <stdlib.h>
#include <string.h>

static void run_case(const char *what, int64_t H, int64_t M, int64_t R, int64_t L, int64_t batch,
                     const float *log_dt, const float *lam, const float *P, const float *B, const float *Ct,
                     const float *D) {
    int64_t nc = 2 * H * M, np = 2 * H * R * M;
    double *ld = malloc(8 * (size_t)H), *dl = malloc(8 * (size_t)nc), *dp = malloc(8 * (size_t)np + 8);
    double *db = malloc(8 * (size_t)nc), *dc = malloc(8 * (size_t)nc), *K = malloc(8 * (size_t)(H * L));
    for (int64_t i = 0; i < H; i++) ld[i] = log_dt[i];
    for (int64_t i = 0; i < nc; i++) { dl[i] = lam[i]; db[i] = B[i]; dc[i] = Ct[i]; }
    for (int64_t i = 0; i < np; i++) dp[i] = P[i];
    CHECK(s4_kernel_forward(H, M, R, L, ld, dl, dp, db, dc, K) == 0, "%s: kernel", what);
    float *u = malloc(4 * (size_t)(batch * H * L)), *ys = malloc(4 * (size_t)(batch * H * L));
    double *ref = malloc(8 * (size_t)(batch * H * L));
    for (int64_t i = 0; i < batch * H * L; i++) u[i] = (float)test_normal();
    /* u, ys, ref are (batch, H, L) */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < L; t++) {
                const float *ur = u + (b * H + h) * L;
                double s = D[h] * (double)ur[t];
                for (int64_t k = 0; k <= t; k++) s += K[h * L + k] * ur[t - k];
                ref[(b * H + h) * L + t] = s;
            }
    s4_step_params sp;
    int rc = s4_step_setup(&sp, H, M, R, L, log_dt, lam, P, B, Ct);
    CHECK(rc == 0, "%s: setup returned %d", what, rc);
    if (rc == 0) {
        float *state = calloc((size_t)(2 * batch * H * M), 4), *ut = malloc(4 * (size_t)(batch * H)), *yt = malloc(4 * (size_t)(batch * H));
        for (int64_t t = 0; t < L; t++) {
            for (int64_t i = 0; i < batch * H; i++) ut[i] = u[i * L + t];
            s4_step(&sp, batch, state, ut, D, yt);
            for (int64_t i = 0; i < batch * H; i++) ys[i * L + t] = yt[i];
        }
        double e = rel_err_f32(ys, ref, batch * H * L);
        CHECK_REL_ERR(e, 1e-4, "%s: step vs convolution, H %lld M %lld R %lld L %lld batch %lld", what, (long long)H,
                      (long long)M, (long long)R, (long long)L, (long long)batch);
        fprintf(stderr, "  %-6s H %lld M %lld R %lld L %lld batch %lld: step vs convolution %.2e\n", what, (long long)H,
                (long long)M, (long long)R, (long long)L, (long long)batch, e);
        /* a unit impulse in a fresh state: y_t - D delta_t = K_t */
        memset(state, 0, 4 * (size_t)(2 * batch * H * M));
        float *kt = malloc(4 * (size_t)(H * L));
        for (int64_t t = 0; t < L; t++) {
            for (int64_t h = 0; h < H; h++) ut[h] = t == 0;
            s4_step(&sp, 1, state, ut, NULL, yt);
            for (int64_t h = 0; h < H; h++) kt[h * L + t] = yt[h];
        }
        double ek = rel_err_f32(kt, K, H * L);
        CHECK_REL_ERR(ek, 1e-4, "%s: impulse response vs kernel", what);
        free(kt); free(state); free(ut); free(yt);
        s4_step_free(&sp);
    }
    free(ld); free(dl); free(dp); free(db); free(dc); free(K); free(u); free(ys); free(ref);
}

static void draw_common(int64_t H, int64_t M, float *log_dt, float *Ct, float *D) {
    for (int64_t h = 0; h < H; h++) {
        log_dt[h] = (float)(log(1e-3) + test_uniform() * (log(1e-1) - log(1e-3)));
        D[h] = (float)test_normal();
    }
    for (int64_t i = 0; i < 2 * H * M; i++) Ct[i] = (float)(sqrt(0.5) * test_normal());
}

static void test_random(int64_t H, int64_t M, int64_t R, int64_t L, int64_t batch) {
    float *ld = malloc(4 * (size_t)H), *D = malloc(4 * (size_t)H), *lam = malloc(8 * (size_t)(H * M));
    float *P = malloc(8 * (size_t)(H * R * M) + 4), *B = malloc(8 * (size_t)(H * M)), *Ct = malloc(8 * (size_t)(H * M));
    draw_common(H, M, ld, Ct, D);
    for (int64_t i = 0; i < H * M; i++) {
        lam[2 * i] = (float)(-0.5 * (0.3 + test_uniform()));
        lam[2 * i + 1] = (float)(M_PI * (double)(i % M) * (0.5 + test_uniform()));
        B[2 * i] = (float)test_normal(); B[2 * i + 1] = (float)test_normal();
    }
    for (int64_t i = 0; i < 2 * H * R * M; i++) P[i] = (float)(0.5 * test_normal());
    run_case("random", H, M, R, L, batch, ld, lam, P, B, Ct, D);
    free(ld); free(D); free(lam); free(P); free(B); free(Ct);
}

static void test_legs(int64_t H, int N, int64_t L, int64_t batch) {
    int64_t M = N / 2;
    double *A = malloc(8 * (size_t)(N * N)), *Bl = malloc(8 * (size_t)N), *Pl = malloc(8 * (size_t)N);
    double *lam = malloc(16 * (size_t)M), *Vh = malloc(16 * (size_t)(N * M)), *bh = malloc(16 * (size_t)M), *ph = malloc(16 * (size_t)M);
    int r = hippo_matrices(SSM_INIT_LEGS, N, A, Bl, Pl);
    char err[256];
    CHECK(r == 1 && nplr_decompose(N, 1, A, Pl, lam, Vh, NULL, err, sizeof err) == 0, "LegS DPLR form");
    nplr_project_column(N, (int)M, Vh, Bl, bh);
    nplr_project_column(N, (int)M, Vh, Pl, ph);
    float *ld = malloc(4 * (size_t)H), *D = malloc(4 * (size_t)H), *fl = malloc(8 * (size_t)(H * M));
    float *P = malloc(8 * (size_t)(H * M)), *B = malloc(8 * (size_t)(H * M)), *Ct = malloc(8 * (size_t)(H * M));
    draw_common(H, M, ld, Ct, D);
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < 2 * M; i++) { fl[2 * h * M + i] = (float)lam[i]; P[2 * h * M + i] = (float)ph[i]; B[2 * h * M + i] = (float)bh[i]; }
    run_case("legs", H, M, 1, L, batch, ld, fl, P, B, Ct, D);
    free(A); free(Bl); free(Pl); free(lam); free(Vh); free(bh); free(ph);
    free(ld); free(D); free(fl); free(P); free(B); free(Ct);
}

int main(void) {
    test_seed_from_env("test_s4_step");
    test_random(3, 3, 1, 37, 3);
    test_random(1, 1, 1, 10, 1);
    test_random(5, 5, 2, 101, 2);
    test_legs(3, 64, 200, 1);
    test_legs(5, 16, 99, 3);
    test_legs(3, 64, 784, 1);   /* the Fashion-MNIST length */
    return check_summary("test_s4_step");
}
