/* test_s4_kernel.c - S4's DPLR kernel in its training parameterization (kernels/s4_kernel.h):
 *   forward (double) vs the naive dense kernel of the same system written as a real 2M matrix,
 *     with Ct = C (I - Abar^L) computed here densely, and vs cauchy_kernel_dplr (which takes C);
 *   forward and backward float32 vs double;
 *   every gradient (dlog_dt, dLambda, dP, dB, dCt, real and imaginary parts) vs central finite
 *     differences in float64 of sum(dK * K) with a random dK;
 * on fresh random inputs: L odd and not a power of two, L even (the w = -1 frequency), M = 1, 3,
 * R = 0, 1, 2, H odd. */
#include "check.h"
#include "s4_kernel.h"
#include "ssm_kernel.h"

#include <complex.h>
#include <stdlib.h>
#include <string.h>

/* out = m1^{-1} rhs, m1 (n, n), rhs (n, ncols) row-major; both overwritten (Gauss-Jordan). */
static void solve_dense(int64_t n, double *m1, double *rhs, int64_t ncols) {
    for (int64_t k = 0; k < n; k++) {
        int64_t p = k;
        for (int64_t i = k + 1; i < n; i++) if (fabs(m1[i * n + k]) > fabs(m1[p * n + k])) p = i;
        for (int64_t j = 0; j < n; j++) { double t = m1[k * n + j]; m1[k * n + j] = m1[p * n + j]; m1[p * n + j] = t; }
        for (int64_t j = 0; j < ncols; j++) { double t = rhs[k * ncols + j]; rhs[k * ncols + j] = rhs[p * ncols + j]; rhs[p * ncols + j] = t; }
        for (int64_t i = 0; i < n; i++) {
            if (i == k) continue;
            double f = m1[i * n + k] / m1[k * n + k];
            for (int64_t j = k; j < n; j++) m1[i * n + j] -= f * m1[k * n + j];
            for (int64_t j = 0; j < ncols; j++) rhs[i * ncols + j] -= f * rhs[k * ncols + j];
        }
    }
    for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < ncols; j++) rhs[k * ncols + j] /= m1[k * n + k];
}

/* The real 2M system of one half-stored channel: state (Re x, Im x),
 * x' = Lambda x - sum_r P_r 2 Re(P_r^* x) + B u,  y = 2 Re(C x), bilinear with step dt.
 * Abar (2M, 2M), Bbar (2M), Cr (2M). */
static void dense_system(int64_t M, int64_t R, double dt, const double complex *lam, const double complex *P,
                         const double complex *B, const double complex *C, double *Abar, double *Bbar, double *Cr) {
    int64_t n = 2 * M;
    double *A = calloc((size_t)(n * n), 8), *m1 = malloc(8 * (size_t)(n * n)), *rhs = malloc(8 * (size_t)(n * (n + 1)));
    for (int64_t i = 0; i < M; i++) {
        A[i * n + i] = creal(lam[i]); A[i * n + M + i] = -cimag(lam[i]);
        A[(M + i) * n + i] = cimag(lam[i]); A[(M + i) * n + M + i] = creal(lam[i]);
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < M; j++) {
                double complex pi = P[r * M + i], pj = P[r * M + j];
                A[i * n + j] -= 2 * creal(pi) * creal(pj);
                A[i * n + M + j] -= 2 * creal(pi) * cimag(pj);
                A[(M + i) * n + j] -= 2 * cimag(pi) * creal(pj);
                A[(M + i) * n + M + j] -= 2 * cimag(pi) * cimag(pj);
            }
        Cr[i] = 2 * creal(C[i]); Cr[M + i] = -2 * cimag(C[i]);
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            m1[i * n + j] = (i == j) - dt / 2 * A[i * n + j];
            rhs[i * (n + 1) + j] = (i == j) + dt / 2 * A[i * n + j];
        }
        rhs[i * (n + 1) + n] = dt * (i < M ? creal(B[i]) : cimag(B[i - M]));
    }
    solve_dense(n, m1, rhs, n + 1);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) Abar[i * n + j] = rhs[i * (n + 1) + j];
        Bbar[i] = rhs[i * (n + 1) + n];
    }
    free(A); free(m1); free(rhs);
}

/* ct = C (I - Abar^L) as a half-stored complex vector, from the real row Cr. */
static void ctilde_dense(int64_t M, int64_t L, const double *Abar, const double *Cr, double complex *ct) {
    int64_t n = 2 * M;
    double *c = malloc(8 * (size_t)n), *t = malloc(8 * (size_t)n);
    memcpy(c, Cr, 8 * (size_t)n);
    for (int64_t l = 0; l < L; l++) {   /* c <- c Abar */
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += c[i] * Abar[i * n + j];
            t[j] = s;
        }
        memcpy(c, t, 8 * (size_t)n);
    }
    for (int64_t i = 0; i < M; i++) {
        double re = Cr[i] - c[i], im = -(Cr[M + i] - c[M + i]);
        ct[i] = re / 2 + I * im / 2;
    }
    free(c); free(t);
}

static double complex crandn(void) { return test_normal() + I * test_normal(); }

typedef struct {
    int64_t H, M, R, L;
    double *log_dt, *lam, *P, *B, *Ct;   /* interleaved complex */
} sys;

static void sys_random(sys *s, int64_t H, int64_t M, int64_t R, int64_t L, double dt_lo, double dt_hi) {
    s->H = H; s->M = M; s->R = R; s->L = L;
    s->log_dt = malloc(8 * (size_t)H);
    s->lam = malloc(16 * (size_t)(H * M)); s->P = malloc(16 * (size_t)(H * R * M + 1));
    s->B = malloc(16 * (size_t)(H * M)); s->Ct = malloc(16 * (size_t)(H * M));
    for (int64_t h = 0; h < H; h++) {
        s->log_dt[h] = log(dt_lo) + test_uniform() * (log(dt_hi) - log(dt_lo));
        for (int64_t m = 0; m < M; m++) {
            double complex l = -0.5 * (0.3 + test_uniform()) + I * M_PI * (double)m * (0.5 + test_uniform());
            double complex b = crandn(), c = crandn();
            memcpy(s->lam + 2 * (h * M + m), &l, 16);
            memcpy(s->B + 2 * (h * M + m), &b, 16);
            memcpy(s->Ct + 2 * (h * M + m), &c, 16);
        }
        for (int64_t i = 0; i < R * M; i++) {
            double complex p = 0.5 * crandn();
            memcpy(s->P + 2 * (h * R * M + i), &p, 16);
        }
    }
}
static void sys_free(sys *s) { free(s->log_dt); free(s->lam); free(s->P); free(s->B); free(s->Ct); }

/* forward vs naive dense and vs cauchy_kernel_dplr (given C, which computes Ct itself) */
static void test_forward(int64_t H, int64_t M, int64_t R, int64_t L, double dt_lo, double dt_hi) {
    sys s;
    sys_random(&s, H, M, R, L, dt_lo, dt_hi);   /* s.Ct holds the true C here */
    int64_t n = 2 * M;
    double *Abar = malloc(8 * (size_t)(H * n * n)), *Bbar = malloc(8 * (size_t)(H * n)), *Cr = malloc(8 * (size_t)(H * n));
    double complex *ct = malloc(16 * (size_t)(H * M));
    double *dt = malloc(8 * (size_t)H);
    for (int64_t h = 0; h < H; h++) {
        dt[h] = exp(s.log_dt[h]);
        dense_system(M, R, dt[h], (double complex *)s.lam + h * M, (double complex *)s.P + h * R * M,
                     (double complex *)s.B + h * M, (double complex *)s.Ct + h * M, Abar + h * n * n, Bbar + h * n, Cr + h * n);
        ctilde_dense(M, L, Abar + h * n * n, Cr + h * n, ct + h * M);
    }
    double *ref = malloc(8 * (size_t)(H * L)), *ref2 = malloc(8 * (size_t)(H * L)), *K = malloc(8 * (size_t)(H * L));
    naive_kernel_dense(H, n, L, Abar, Bbar, Cr, ref);
    CHECK(cauchy_kernel_dplr(H, M, R, L, dt, s.lam, s.P, s.B, s.Ct, ref2) == 0, "cauchy_kernel_dplr");
    int rc = s4_kernel_forward(H, M, R, L, s.log_dt, s.lam, s.P, s.B, (double *)ct, K);
    CHECK(rc == 0, "s4_kernel_forward returned %d", rc);
    double e1 = rel_err_f64(K, ref, H * L), e2 = rel_err_f64(K, ref2, H * L);
    CHECK_REL_ERR(e1, 1e-9, "s4 kernel vs naive dense, H %lld M %lld R %lld L %lld", (long long)H, (long long)M, (long long)R, (long long)L);
    CHECK_REL_ERR(e2, 1e-9, "s4 kernel vs cauchy_kernel_dplr, H %lld M %lld R %lld L %lld", (long long)H, (long long)M, (long long)R, (long long)L);
    fprintf(stderr, "  forward H %lld M %lld R %lld L %lld dt [%g, %g]: vs naive %.2e, vs cauchy_kernel_dplr %.2e\n",
            (long long)H, (long long)M, (long long)R, (long long)L, dt_lo, dt_hi, e1, e2);
    free(Abar); free(Bbar); free(Cr); free(ct); free(dt); free(ref); free(ref2); free(K);
    sys_free(&s);
}

static double objective(const sys *s, const double *dK, double *K) {
    s4_kernel_forward(s->H, s->M, s->R, s->L, s->log_dt, s->lam, s->P, s->B, s->Ct, K);
    double f = 0;
    for (int64_t i = 0; i < s->H * s->L; i++) f += dK[i] * K[i];
    return f;
}

static void copy_f32(float *o, const double *x, int64_t n) { for (int64_t i = 0; i < n; i++) o[i] = (float)x[i]; }

/* every gradient vs central differences; f32 vs f64 */
static void test_backward(int64_t H, int64_t M, int64_t R, int64_t L, double dt_lo, double dt_hi) {
    sys s;
    sys_random(&s, H, M, R, L, dt_lo, dt_hi);
    int64_t nK = H * L, nc = 2 * H * M, np = 2 * H * R * M;
    double *dK = malloc(8 * (size_t)nK), *K = malloc(8 * (size_t)nK);
    for (int64_t i = 0; i < nK; i++) dK[i] = test_normal();
    double *g = calloc((size_t)(H + 3 * nc + np + 1), 8);
    double *gdt = g, *glam = g + H, *gp = glam + nc, *gb = gp + np, *gc = gb + nc;
    s4_kernel_backward(H, M, R, L, s.log_dt, s.lam, s.P, s.B, s.Ct, dK, gdt, glam, gp, gb, gc);
    struct { const char *name; double *x, *grad; int64_t n; } ps[] = {
        {"dlog_dt", s.log_dt, gdt, H}, {"dLambda", s.lam, glam, nc}, {"dP", s.P, gp, np},
        {"dB", s.B, gb, nc}, {"dCt", s.Ct, gc, nc}};
    for (size_t q = 0; q < sizeof ps / sizeof *ps; q++) {
        if (ps[q].n == 0) continue;
        double *fd = malloc(8 * (size_t)ps[q].n);
        for (int64_t i = 0; i < ps[q].n; i++) {
            double x0 = ps[q].x[i], eps = 1e-5 * fmax(1, fabs(x0));
            ps[q].x[i] = x0 + eps;
            double fp = objective(&s, dK, K);
            ps[q].x[i] = x0 - eps;
            double fm = objective(&s, dK, K);
            ps[q].x[i] = x0;
            fd[i] = (fp - fm) / (2 * eps);
        }
        double e = rel_err_f64(ps[q].grad, fd, ps[q].n);
        CHECK_REL_ERR(e, 1e-6, "%s vs central differences, H %lld M %lld R %lld L %lld", ps[q].name, (long long)H,
                      (long long)M, (long long)R, (long long)L);
        fprintf(stderr, "  backward H %lld M %lld R %lld L %lld: %-8s vs finite differences %.2e\n", (long long)H,
                (long long)M, (long long)R, (long long)L, ps[q].name, e);
        free(fd);
    }
    /* float32 interface vs double */
    float *f = malloc(4 * (size_t)(H + 3 * nc + np + 2 * nK + 1));
    float *fl = f, *flam = fl + H, *fp = flam + nc, *fb = fp + np, *fc = fb + nc, *fdK = fc + nc, *fK = fdK + nK;
    copy_f32(fl, s.log_dt, H); copy_f32(flam, s.lam, nc); copy_f32(fp, s.P, np); copy_f32(fb, s.B, nc);
    copy_f32(fc, s.Ct, nc); copy_f32(fdK, dK, nK);
    /* the reference at the float32-rounded inputs */
    for (int64_t i = 0; i < H; i++) s.log_dt[i] = fl[i];
    for (int64_t i = 0; i < nc; i++) { s.lam[i] = flam[i]; s.B[i] = fb[i]; s.Ct[i] = fc[i]; }
    for (int64_t i = 0; i < np; i++) s.P[i] = fp[i];
    for (int64_t i = 0; i < nK; i++) dK[i] = fdK[i];
    s4_kernel_forward(H, M, R, L, s.log_dt, s.lam, s.P, s.B, s.Ct, K);
    CHECK(s4_kernel_forward_f32(H, M, R, L, fl, flam, fp, fb, fc, fK) == 0, "f32 forward");
    CHECK_REL_ERR(rel_err_f32(fK, K, nK), 1e-6, "f32 forward vs f64");
    s4_kernel_backward(H, M, R, L, s.log_dt, s.lam, s.P, s.B, s.Ct, dK, gdt, glam, gp, gb, gc);
    float *fg = malloc(4 * (size_t)(H + 3 * nc + np + 1));
    s4_kernel_backward_f32(H, M, R, L, fl, flam, fp, fb, fc, fdK, fg, fg + H, fg + H + nc, fg + H + nc + np, fg + H + 2 * nc + np);
    CHECK_REL_ERR(rel_err_f32(fg, g, H + 3 * nc + np), 1e-6, "f32 backward vs f64");
    free(f); free(fg); free(dK); free(K); free(g);
    sys_free(&s);
}

int main(void) {
    test_seed_from_env("test_s4_kernel");
    test_forward(3, 3, 1, 37, 1e-2, 1e-1);
    test_forward(1, 1, 1, 10, 1e-1, 5e-1);
    test_forward(3, 3, 2, 24, 1e-3, 1e-1);
    test_forward(5, 4, 1, 100, 1e-3, 1e-1);
    test_forward(1, 2, 0, 9, 1e-2, 1e-1);
    test_backward(3, 1, 1, 7, 1e-2, 1e-1);
    test_backward(1, 3, 2, 10, 1e-1, 5e-1);
    test_backward(3, 3, 1, 16, 1e-3, 1e-1);
    test_backward(1, 2, 0, 9, 1e-2, 1e-1);
    test_backward(3, 3, 2, 45, 1e-2, 3e-1);
    return check_summary("test_s4_kernel");
}
