/* s4_step.c - S4's DPLR recurrence: setup from the trained parameters and the O(M R) step
 * (math in s4_step.h). */
#include "s4_step.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define S4_STEP_MAX_RANK 8

/* Solves a x = b (n x n real, row-major; a and b overwritten), partial pivoting.  -1 if singular. */
static int solve_real(int64_t n, double *a, double *b) {
    for (int64_t k = 0; k < n; k++) {
        int64_t p = k;
        for (int64_t i = k + 1; i < n; i++) if (fabs(a[i * n + k]) > fabs(a[p * n + k])) p = i;
        if (!(fabs(a[p * n + k]) > 0)) return -1;
        if (p != k) {
            for (int64_t j = 0; j < n; j++) { double t = a[k * n + j]; a[k * n + j] = a[p * n + j]; a[p * n + j] = t; }
            double t = b[k]; b[k] = b[p]; b[p] = t;
        }
        for (int64_t i = k + 1; i < n; i++) {
            double f = a[i * n + k] / a[k * n + k];
            if (f == 0) continue;
            for (int64_t j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j];
            b[i] -= f * b[k];
        }
    }
    for (int64_t k = n - 1; k >= 0; k--) {
        double s = b[k];
        for (int64_t j = k + 1; j < n; j++) s -= a[k * n + j] * b[j];
        b[k] = s / a[k * n + k];
    }
    return 0;
}

/* out = a b for n x n real matrices (out distinct from a and b). */
static void matmul(int64_t n, const double *a, const double *b, double *out) {
    for (int64_t i = 0; i < n; i++) {
        double *o = out + i * n;
        for (int64_t j = 0; j < n; j++) o[j] = 0;
        for (int64_t k = 0; k < n; k++) {
            double f = a[i * n + k];
            const double *r = b + k * n;
            for (int64_t j = 0; j < n; j++) o[j] += f * r[j];
        }
    }
}

/* One channel.  lam, B, Ct (M), P (R, M) complex; writes e, U, W, Bbar, C (double complex). */
static int setup_channel(int64_t M, int64_t R, int64_t L, double dt, const double complex *lam,
                         const double complex *P, const double complex *B, const double complex *Ct,
                         double complex *e, double complex *U, double complex *W, double complex *Bbar,
                         double complex *C) {
    double h = dt / 2;
    double Kp[S4_STEP_MAX_RANK * S4_STEP_MAX_RANK], Sinv[S4_STEP_MAX_RANK * S4_STEP_MAX_RANK];
    double SK[S4_STEP_MAX_RANK * S4_STEP_MAX_RANK];
    double complex *inv_d1 = ssm_xmalloc((size_t)(M > 0 ? M : 1) * sizeof(double complex));
    int rc = 0;
    for (int64_t n = 0; n < M; n++) {
        inv_d1[n] = 1 / (1 - h * lam[n]);
        e[n] = (1 + h * lam[n]) * inv_d1[n];
    }
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < R; j++) {
            double complex s = 0;
            for (int64_t n = 0; n < M; n++) s += conj(P[i * M + n]) * P[j * M + n] * inv_d1[n];
            Kp[i * R + j] = 2 * creal(s);
        }
    for (int64_t j = 0; j < R; j++) {   /* Sinv column by column, S = I/h + Kp */
        double a[S4_STEP_MAX_RANK * S4_STEP_MAX_RANK], b[S4_STEP_MAX_RANK];
        for (int64_t i = 0; i < R * R; i++) a[i] = Kp[i] + (i / R == i % R ? 1 / h : 0);
        for (int64_t i = 0; i < R; i++) b[i] = i == j;
        if (solve_real(R, a, b)) { rc = -1; goto out; }
        for (int64_t i = 0; i < R; i++) Sinv[i * R + j] = b[i];
    }
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < R; j++) {
            SK[i * R + j] = 0;
            for (int64_t k = 0; k < R; k++) SK[i * R + j] += Sinv[i * R + k] * Kp[k * R + j];
        }
    for (int64_t j = 0; j < R; j++)
        for (int64_t n = 0; n < M; n++) {
            U[j * M + n] = inv_d1[n] * P[j * M + n];
            double complex w = -h * conj(P[j * M + n]);
            for (int64_t i = 0; i < R; i++) w += (-e[n] * Sinv[j * R + i] + h * SK[j * R + i]) * conj(P[i * M + n]);
            W[j * M + n] = w;
        }
    {   /* Bbar = M1^{-1} dt B = y - U Sinv (P^* y), y = D1^{-1} dt B */
        double t[S4_STEP_MAX_RANK], x[S4_STEP_MAX_RANK];
        for (int64_t i = 0; i < R; i++) {
            double complex s = 0;
            for (int64_t n = 0; n < M; n++) s += conj(P[i * M + n]) * dt * B[n] * inv_d1[n];
            t[i] = 2 * creal(s);
        }
        for (int64_t i = 0; i < R; i++) {
            x[i] = 0;
            for (int64_t j = 0; j < R; j++) x[i] += Sinv[i * R + j] * t[j];
        }
        for (int64_t n = 0; n < M; n++) {
            double complex b = dt * B[n] * inv_d1[n];
            for (int64_t j = 0; j < R; j++) b -= U[j * M + n] * x[j];
            Bbar[n] = b;
        }
    }
    {   /* C = Ct (I - Abar^L)^{-1} with the real 2M x 2M matrix of Abar on (Re x, Im x) */
        int64_t n2 = 2 * M;
        size_t sz = (size_t)(n2 * n2 > 0 ? n2 * n2 : 1);
        double *A = ssm_xcalloc(sz, sizeof(double)), *Pw = ssm_xcalloc(sz, sizeof(double));
        double *T = ssm_xcalloc(sz, sizeof(double)), *G = ssm_xcalloc(sz, sizeof(double));
        double *f = ssm_xcalloc((size_t)n2 + 1, sizeof(double));
        for (int64_t k = 0; k < n2; k++) {   /* column k: x = e_k (k < M) or i e_{k-M} */
            int64_t m = k % M;
            double complex xk = k < M ? 1 : I;
            double alpha[S4_STEP_MAX_RANK];
            for (int64_t j = 0; j < R; j++) alpha[j] = 2 * creal(W[j * M + m] * xk);
            for (int64_t r = 0; r < M; r++) {
                double complex v = r == m ? e[r] * xk : 0;
                for (int64_t j = 0; j < R; j++) v += U[j * M + r] * alpha[j];
                A[r * n2 + k] = creal(v);
                A[(M + r) * n2 + k] = cimag(v);
            }
        }
        /* Pw = A^L by repeated squaring */
        for (int64_t i = 0; i < n2; i++) Pw[i * n2 + i] = 1;
        for (int64_t p = L; p > 0; p >>= 1) {
            if (p & 1) { matmul(n2, Pw, A, T); memcpy(Pw, T, sz * sizeof(double)); }
            if (p > 1) { matmul(n2, A, A, T); memcpy(A, T, sz * sizeof(double)); }
        }
        /* f_C (I - A^L) = f_Ct with f = (2 Re c, -2 Im c):  (I - A^L)^T f_C = f_Ct */
        for (int64_t i = 0; i < n2; i++)
            for (int64_t j = 0; j < n2; j++) G[i * n2 + j] = (i == j) - Pw[j * n2 + i];
        for (int64_t m = 0; m < M; m++) { f[m] = 2 * creal(Ct[m]); f[M + m] = -2 * cimag(Ct[m]); }
        if (solve_real(n2, G, f)) rc = -1;
        else
            for (int64_t m = 0; m < M; m++) C[m] = f[m] / 2 - I * f[M + m] / 2;
        free(A); free(Pw); free(T); free(G); free(f);
    }
out:
    free(inv_d1);
    return rc;
}

int s4_step_setup(s4_step_params *p, int64_t H, int64_t M, int64_t R, int64_t L, const float *log_dt,
                  const float *Lambda, const float *P, const float *B, const float *Ct) {
    if (R < 0 || R > S4_STEP_MAX_RANK) ssm_die("s4 step: rank %lld of P is not in 0..%d", (long long)R, S4_STEP_MAX_RANK);
    if (L < 1) ssm_die("s4 step: kernel length %lld < 1", (long long)L);
    memset(p, 0, sizeof *p);
    p->H = H; p->M = M; p->R = R;
    size_t hm = (size_t)(2 * H * M + 1), hrm = (size_t)(2 * H * R * M + 1);
    p->e = ssm_xmalloc(hm * sizeof(float)); p->Bbar = ssm_xmalloc(hm * sizeof(float)); p->C = ssm_xmalloc(hm * sizeof(float));
    p->U = ssm_xmalloc(hrm * sizeof(float)); p->W = ssm_xmalloc(hrm * sizeof(float));
    int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
    for (int64_t hh = 0; hh < H; hh++) {
        size_t m1 = (size_t)(M > 0 ? M : 1), rm = (size_t)(R * M > 0 ? R * M : 1);
        double complex *lam = ssm_xmalloc(m1 * sizeof *lam), *b = ssm_xmalloc(m1 * sizeof *b), *ct = ssm_xmalloc(m1 * sizeof *ct);
        double complex *pp = ssm_xmalloc(rm * sizeof *pp), *e = ssm_xmalloc(m1 * sizeof *e), *bb = ssm_xmalloc(m1 * sizeof *bb);
        double complex *c = ssm_xmalloc(m1 * sizeof *c), *u = ssm_xmalloc(rm * sizeof *u), *w = ssm_xmalloc(rm * sizeof *w);
        for (int64_t n = 0; n < M; n++) {
            int64_t q = 2 * (hh * M + n);
            lam[n] = Lambda[q] + I * Lambda[q + 1];
            b[n] = B[q] + I * B[q + 1];
            ct[n] = Ct[q] + I * Ct[q + 1];
        }
        for (int64_t k = 0; k < R * M; k++) pp[k] = P[2 * (hh * R * M + k)] + I * P[2 * (hh * R * M + k) + 1];
        if (setup_channel(M, R, L, exp((double)log_dt[hh]), lam, pp, b, ct, e, u, w, bb, c)) failed = 1;
        else {
            for (int64_t n = 0; n < M; n++) {
                int64_t q = 2 * (hh * M + n);
                p->e[q] = (float)creal(e[n]); p->e[q + 1] = (float)cimag(e[n]);
                p->Bbar[q] = (float)creal(bb[n]); p->Bbar[q + 1] = (float)cimag(bb[n]);
                p->C[q] = (float)creal(c[n]); p->C[q + 1] = (float)cimag(c[n]);
                if (!isfinite(p->C[q]) || !isfinite(p->C[q + 1]) || !isfinite(p->Bbar[q]) || !isfinite(p->Bbar[q + 1])) failed = 1;
            }
            for (int64_t k = 0; k < R * M; k++) {
                int64_t q = 2 * (hh * R * M + k);
                p->U[q] = (float)creal(u[k]); p->U[q + 1] = (float)cimag(u[k]);
                p->W[q] = (float)creal(w[k]); p->W[q + 1] = (float)cimag(w[k]);
            }
        }
        free(lam); free(b); free(ct); free(pp); free(e); free(bb); free(c); free(u); free(w);
    }
    if (failed) { s4_step_free(p); return -1; }
    return 0;
}

void s4_step_free(s4_step_params *p) {
    free(p->e); free(p->U); free(p->W); free(p->Bbar); free(p->C);
    memset(p, 0, sizeof *p);
}

void s4_step(const s4_step_params *p, int64_t batch, float *state, const float *u, const float *D, float *y) {
    int64_t H = p->H, M = p->M, R = p->R;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < H; h++) {
            float *x = state + 2 * (b * H + h) * M;
            const float *e = p->e + 2 * h * M, *bb = p->Bbar + 2 * h * M, *c = p->C + 2 * h * M;
            float alpha[S4_STEP_MAX_RANK];
            for (int64_t j = 0; j < R; j++) {
                const float *w = p->W + 2 * (h * R + j) * M;
                float a = 0;
                for (int64_t n = 0; n < M; n++) a += w[2 * n] * x[2 * n] - w[2 * n + 1] * x[2 * n + 1];
                alpha[j] = 2 * a;
            }
            float uv = u[b * H + h], out = 0;
            for (int64_t n = 0; n < M; n++) {
                float xr = x[2 * n], xi = x[2 * n + 1];
                float nr = e[2 * n] * xr - e[2 * n + 1] * xi + bb[2 * n] * uv;
                float ni = e[2 * n] * xi + e[2 * n + 1] * xr + bb[2 * n + 1] * uv;
                for (int64_t j = 0; j < R; j++) {
                    const float *uu = p->U + 2 * (h * R + j) * M;
                    nr += alpha[j] * uu[2 * n];
                    ni += alpha[j] * uu[2 * n + 1];
                }
                x[2 * n] = nr; x[2 * n + 1] = ni;
                out += c[2 * n] * nr - c[2 * n + 1] * ni;
            }
            y[b * H + h] = 2 * out + (D ? D[h] * uv : 0);
        }
}

/* ---- the layer of s4d_recurrent.h ----------------------------------------------------------- */
typedef struct {
    s4_step_params sp;
    float *D;
} s4_layer_ctx;

static void s4_layer_step(void *vctx, int64_t batch, float *state, const float *u, float *y) {
    const s4_layer_ctx *c = vctx;
    s4_step(&c->sp, batch, state, u, c->D, y);
}

static void s4_layer_free(void *vctx) {
    s4_layer_ctx *c = vctx;
    if (!c) return;
    s4_step_free(&c->sp);
    free(c->D);
    free(c);
}

ssm_rec_layer s4_rec_layer_new(int64_t H, int64_t M, int64_t R, const float *log_dt,
                               const float *Lambda_real_log, const float *Lambda_imag, const float *P,
                               const float *B, const float *C_tilde, const float *D, int64_t L_train) {
    if (L_train < 1) ssm_die("s4: the training length of C-tilde is unknown (config attribute l_kernel)");
    float *lam = ssm_xmalloc((size_t)(2 * H * M + 1) * sizeof(float));
    for (int64_t j = 0; j < H * M; j++) { lam[2 * j] = -expf(Lambda_real_log[j]); lam[2 * j + 1] = Lambda_imag[j]; }
    s4_layer_ctx *c = ssm_xcalloc(1, sizeof *c);
    if (s4_step_setup(&c->sp, H, M, R, L_train, log_dt, lam, P, B, C_tilde))
        ssm_die("s4: no recurrent form: I - Abar^L (L = %lld) is singular or the step is not finite", (long long)L_train);
    free(lam);
    c->D = ssm_xmalloc((size_t)(H + 1) * sizeof(float));
    memcpy(c->D, D, (size_t)H * sizeof(float));
    return (ssm_rec_layer){.H = H, .S = 2 * M, .ctx = c, .step = s4_layer_step, .chunk = NULL, .free_ctx = s4_layer_free};
}
