/* kernel_s4_cauchy.c - S4's DPLR kernel from its trained parameters (log_dt, Lambda, P, B, Ct),
 * forward and backward; the math and shapes are in s4_kernel.h.
 *
 * Per channel, Q = R + 1, the Q^2 products v_ij = a_i b_j (a = [Ct, conj P_1..R],
 * b = [B, P_1..R]) are formed once.  Then, for each frequency k < L/2 (z = i y, y real):
 *   r1_n = 1/(z - Lambda_n), r2_n = 1/(z - conj Lambda_n),  T_ij = sum_n v r1 + conj(v) r2,
 *   S = I + T_PP,  x = S^{-1} T_P0,  F = T_00 - T_0P x,  Khat = g F  (g = 2/(1 + w)).
 * Backward, complex gradients G = dL/dRe + i dL/dIm throughout:
 *   G_Khat_k = (c_k / L) rfft(dK)_k, c_k = 1 at k = 0 and k = L/2, else 2 (irfft's adjoint);
 *   G_F = conj(g) G_Khat;  with yv = S^{-T} T_0P:  G_T00 = G_F, G_T0j = -conj(x_j) G_F,
 *   G_Ti0 = -conj(yv_i) G_F, G_Tij = conj(yv_i x_j) G_F  (holomorphic: G_in = conj(f') G_out);
 *   T is not holomorphic in v or Lambda (conjugate terms), so for dT = r1 dv + r2 conj(dv):
 *   G_v += conj(r1) G_T + r2 conj(G_T);  G_Lambda += conj(v) (conj(r1^2) G_T + r2^2 conj(G_T));
 *   dL/dy += Re(conj(G_T) i dT/dz), dT/dz = -sum_n v r1^2 + conj(v) r2^2;  y = (2/dt) tan(.)
 *   so dL/dlog_dt += -y dL/dy.  Finally G_a_i = sum_j conj(b_j) G_v_ij, G_b_j = sum_i conj(a_i)
 *   G_v_ij, and a = conj P gives G_P = conj(G_a).
 * At k = L/2 (L even): Khat = dt sum_n Re(v_00): G_v00 += dt Re(G), dL/dlog_dt += Re(G) Khat.
 */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "complex_solve.h"
#include "fftw_cache.h"
#include "s4_kernel.h"

/* Per-thread scratch: re/im split arrays so that the mode loops vectorize. */
typedef struct {
    int64_t M, Q, L;
    double *vr, *vi;          /* Q^2 * M: products v_ij */
    double *lr, *li;          /* M: Lambda */
    double *r1r, *r1i, *r2r, *r2i, *s1r, *s1i, *s2r, *s2i;   /* M: r1, r2, r1^2, r2^2 */
    double *gvr, *gvi;        /* Q^2 * M: G_v (backward) */
    double *glr, *gli;        /* M: G_Lambda (backward) */
    fftw_complex *khat;       /* L/2 + 1 */
    double *buf;              /* L */
} s4k_work;

static void work_alloc(s4k_work *w, int64_t M, int64_t R, int64_t L) {
    int64_t Q = R + 1, q2 = Q * Q, m = M > 0 ? M : 1;
    w->M = M; w->Q = Q; w->L = L;
    double *d = ssm_xcalloc((size_t)(m * (4 * q2 + 12)), sizeof(double));
    w->vr = d; w->vi = d + q2 * m; w->gvr = d + 2 * q2 * m; w->gvi = d + 3 * q2 * m;
    double *e = d + 4 * q2 * m;
    w->lr = e; w->li = e + m; w->r1r = e + 2 * m; w->r1i = e + 3 * m; w->r2r = e + 4 * m; w->r2i = e + 5 * m;
    w->s1r = e + 6 * m; w->s1i = e + 7 * m; w->s2r = e + 8 * m; w->s2i = e + 9 * m; w->glr = e + 10 * m; w->gli = e + 11 * m;
    w->khat = fftw_malloc(sizeof(fftw_complex) * (size_t)(L / 2 + 1));
    w->buf = fftw_malloc(sizeof(double) * (size_t)L);
    if (!w->khat || !w->buf) ssm_die("s4 kernel: out of memory (L = %lld)", (long long)L);
}
static void work_free(s4k_work *w) { free(w->vr); fftw_free(w->khat); fftw_free(w->buf); }

/* v_ij = a_i b_j and Lambda into the split arrays. */
static void channel_setup(s4k_work *w, int64_t R, const double complex *lam, const double complex *P,
                          const double complex *B, const double complex *Ct) {
    int64_t M = w->M, Q = w->Q;
    for (int64_t i = 0; i < Q; i++)
        for (int64_t j = 0; j < Q; j++)
            for (int64_t n = 0; n < M; n++) {
                double complex a = i == 0 ? Ct[n] : conj(P[(i - 1) * M + n]);
                double complex b = j == 0 ? B[n] : P[(j - 1) * M + n];
                double complex v = a * b;
                w->vr[(i * Q + j) * M + n] = creal(v);
                w->vi[(i * Q + j) * M + n] = cimag(v);
            }
    for (int64_t n = 0; n < M; n++) { w->lr[n] = creal(lam[n]); w->li[n] = cimag(lam[n]); }
    (void)R;
}

/* The frequency of index k (k < L/2 or L odd): y (z = i y) and g = 2 / (1 + w). */
static void frequency(int64_t k, int64_t L, double dt, double *y, double complex *g) {
    double half = M_PI * (double)k / (double)L;
    *y = (2 / dt) * tan(half);
    *g = cexp(I * half) / cos(half);
}

/* r1 = 1/(iy - Lambda), r2 = 1/(iy - conj Lambda) (and their squares when squares != 0). */
static void resolvents(s4k_work *w, double y, int squares) {
    int64_t M = w->M;
    const double *lr = w->lr, *li = w->li;
#pragma omp simd
    for (int64_t n = 0; n < M; n++) {
        double a = -lr[n], b1 = y - li[n], b2 = y + li[n];
        double i1 = 1 / (a * a + b1 * b1), i2 = 1 / (a * a + b2 * b2);
        double r1r = a * i1, r1i = -b1 * i1, r2r = a * i2, r2i = -b2 * i2;
        w->r1r[n] = r1r; w->r1i[n] = r1i; w->r2r[n] = r2r; w->r2i[n] = r2i;
        if (squares) {
            w->s1r[n] = r1r * r1r - r1i * r1i; w->s1i[n] = 2 * r1r * r1i;
            w->s2r[n] = r2r * r2r - r2i * r2i; w->s2i[n] = 2 * r2r * r2i;
        }
    }
}

/* The Q^2 Cauchy sums T at the current resolvents. */
static void cauchy_sums(const s4k_work *w, double complex *T) {
    int64_t M = w->M, Q = w->Q;
    const double *r1r = w->r1r, *r1i = w->r1i, *r2r = w->r2r, *r2i = w->r2i;
    for (int64_t q = 0; q < Q * Q; q++) {
        const double *vr = w->vr + q * M, *vi = w->vi + q * M;
        double re = 0, im = 0;
#pragma omp simd reduction(+ : re, im)
        for (int64_t n = 0; n < M; n++) {
            /* v r1 + conj(v) r2 */
            re += vr[n] * (r1r[n] + r2r[n]) - vi[n] * (r1i[n] - r2i[n]);
            im += vr[n] * (r1i[n] + r2i[n]) + vi[n] * (r1r[n] - r2r[n]);
        }
        T[q] = re + I * im;
    }
}

/* Woodbury on the sums: F = T_00 - T_0P x with x = S^{-1} T_P0, S = I + T_PP; x (R) kept. */
static int woodbury(int64_t R, const double complex *T, double complex *x, double complex *S, double complex *F) {
    int64_t Q = R + 1;
    *F = T[0];
    if (R == 0) return 0;
    for (int64_t i = 0; i < R; i++) {
        for (int64_t j = 0; j < R; j++) S[i * R + j] = (i == j) + T[(i + 1) * Q + j + 1];
        x[i] = T[(i + 1) * Q];
    }
    if (complex_solve_small((int)R, S, x, 0)) return -1;
    for (int64_t j = 0; j < R; j++) *F -= T[j + 1] * x[j];
    return 0;
}

static int channel_forward(s4k_work *w, int64_t R, double dt, double *K, fftw_plan c2r) {
    int64_t L = w->L, M = w->M, nf = L / 2 + 1;
    double complex T[(S4_KERNEL_MAX_RANK + 1) * (S4_KERNEL_MAX_RANK + 1)];
    double complex S[S4_KERNEL_MAX_RANK * S4_KERNEL_MAX_RANK], x[S4_KERNEL_MAX_RANK];
    for (int64_t k = 0; k < nf; k++) {
        double complex khat;
        if (2 * k == L) {
            double s = 0;
            for (int64_t n = 0; n < M; n++) s += w->vr[n];
            khat = dt * s;
        } else {
            double y;
            double complex g, F;
            frequency(k, L, dt, &y, &g);
            resolvents(w, y, 0);
            cauchy_sums(w, T);
            if (woodbury(R, T, x, S, &F)) return -1;
            khat = g * F;
        }
        w->khat[k] = khat;
    }
    fftw_execute_dft_c2r(c2r, w->khat, w->buf);
    int bad = 0;
    for (int64_t l = 0; l < L; l++) {
        K[l] = w->buf[l] / (double)L;
        if (!isfinite(K[l])) bad = 1;
    }
    return bad ? -1 : 0;
}

static void channel_backward(s4k_work *w, int64_t R, double dt, const double *dK, fftw_plan r2c,
                             const double complex *P, const double complex *B, const double complex *Ct,
                             double *dlog_dt, double complex *dLambda, double complex *dP,
                             double complex *dB, double complex *dCt) {
    int64_t L = w->L, M = w->M, Q = w->Q, q2 = Q * Q, nf = L / 2 + 1;
    double complex T[(S4_KERNEL_MAX_RANK + 1) * (S4_KERNEL_MAX_RANK + 1)];
    double complex GT[(S4_KERNEL_MAX_RANK + 1) * (S4_KERNEL_MAX_RANK + 1)];
    double complex S[S4_KERNEL_MAX_RANK * S4_KERNEL_MAX_RANK], x[S4_KERNEL_MAX_RANK], yv[S4_KERNEL_MAX_RANK];
    memcpy(w->buf, dK, (size_t)L * sizeof(double));
    fftw_execute_dft_r2c(r2c, w->buf, w->khat);   /* khat now holds rfft(dK) */
    memset(w->gvr, 0, (size_t)(2 * q2 * M) * sizeof(double));
    memset(w->glr, 0, (size_t)M * sizeof(double));
    memset(w->gli, 0, (size_t)M * sizeof(double));
    double gdt = 0;
    for (int64_t k = 0; k < nf; k++) {
        double ck = (k == 0 || 2 * k == L) ? 1.0 : 2.0;
        double complex G = ck / (double)L * w->khat[k];
        if (2 * k == L) {   /* Khat = dt sum Re(v_00) */
            double gr = creal(G), s = 0;
            for (int64_t n = 0; n < M; n++) { s += w->vr[n]; w->gvr[n] += dt * gr; }
            gdt += gr * dt * s;
            continue;
        }
        double y;
        double complex g, F;
        frequency(k, L, dt, &y, &g);
        resolvents(w, y, 1);
        cauchy_sums(w, T);
        if (woodbury(R, T, x, S, &F)) continue;   /* the forward reported it */
        double complex GF = conj(g) * G;
        GT[0] = GF;
        if (R > 0) {
            for (int64_t i = 0; i < R; i++) yv[i] = T[i + 1];
            complex_solve_small((int)R, S, yv, 1);
            for (int64_t j = 0; j < R; j++) {
                GT[j + 1] = -conj(x[j]) * GF;
                GT[(j + 1) * Q] = -conj(yv[j]) * GF;
            }
            for (int64_t i = 0; i < R; i++)
                for (int64_t j = 0; j < R; j++) GT[(i + 1) * Q + j + 1] = conj(yv[i] * x[j]) * GF;
        }
        const double *r1r = w->r1r, *r1i = w->r1i, *r2r = w->r2r, *r2i = w->r2i;
        const double *s1r = w->s1r, *s1i = w->s1i, *s2r = w->s2r, *s2i = w->s2i;
        double *glr = w->glr, *gli = w->gli;
        double dLdy = 0;
        for (int64_t q = 0; q < q2; q++) {
            double Gr = creal(GT[q]), Gi = cimag(GT[q]);
            const double *vr = w->vr + q * M, *vi = w->vi + q * M;
            double *gvr = w->gvr + q * M, *gvi = w->gvi + q * M;
            double dzr = 0, dzi = 0;
#pragma omp simd reduction(+ : dzr, dzi)
            for (int64_t n = 0; n < M; n++) {
                /* G_v += conj(r1) G + r2 conj(G) */
                gvr[n] += r1r[n] * Gr + r1i[n] * Gi + r2r[n] * Gr + r2i[n] * Gi;
                gvi[n] += r1r[n] * Gi - r1i[n] * Gr + r2i[n] * Gr - r2r[n] * Gi;
                /* W = conj(r1^2) G + r2^2 conj(G);  G_Lambda += conj(v) W */
                double Wr = s1r[n] * Gr + s1i[n] * Gi + s2r[n] * Gr + s2i[n] * Gi;
                double Wi = s1r[n] * Gi - s1i[n] * Gr + s2i[n] * Gr - s2r[n] * Gi;
                glr[n] += vr[n] * Wr + vi[n] * Wi;
                gli[n] += vr[n] * Wi - vi[n] * Wr;
                /* dT/dz = -(v r1^2 + conj(v) r2^2) */
                dzr -= vr[n] * s1r[n] - vi[n] * s1i[n] + vr[n] * s2r[n] + vi[n] * s2i[n];
                dzi -= vr[n] * s1i[n] + vi[n] * s1r[n] + vr[n] * s2i[n] - vi[n] * s2r[n];
            }
            /* Re(conj(G) i dTdz) = -Im(conj(G) dTdz) */
            dLdy -= Gr * dzi - Gi * dzr;
        }
        gdt += -y * dLdy;
    }
    *dlog_dt = gdt;
    for (int64_t n = 0; n < M; n++) dLambda[n] = w->glr[n] + I * w->gli[n];
    /* G_a_i = sum_j conj(b_j) G_v_ij;  G_b_j = sum_i conj(a_i) G_v_ij */
    for (int64_t n = 0; n < M; n++) {
        dB[n] = 0;
        dCt[n] = 0;
        for (int64_t r = 0; r < R; r++) dP[r * M + n] = 0;
    }
    for (int64_t i = 0; i < Q; i++)
        for (int64_t j = 0; j < Q; j++)
            for (int64_t n = 0; n < M; n++) {
                double complex a = i == 0 ? Ct[n] : conj(P[(i - 1) * M + n]);
                double complex b = j == 0 ? B[n] : P[(j - 1) * M + n];
                double complex gv = w->gvr[(i * Q + j) * M + n] + I * w->gvi[(i * Q + j) * M + n];
                double complex ga = conj(b) * gv, gb = conj(a) * gv;
                if (i == 0) dCt[n] += ga;
                else dP[(i - 1) * M + n] += conj(ga);
                if (j == 0) dB[n] += gb;
                else dP[(j - 1) * M + n] += gb;
            }
}

static void check_rank(int64_t R) {
    if (R < 0 || R > S4_KERNEL_MAX_RANK) ssm_die("s4 kernel: rank %lld of P is not in 0..%d", (long long)R, S4_KERNEL_MAX_RANK);
}

int s4_kernel_forward(int64_t H, int64_t M, int64_t R, int64_t L, const double *log_dt,
                      const double *Lambda, const double *P, const double *B, const double *Ct,
                      double *K) {
    check_rank(R);
    if (H <= 0 || L <= 0) return 0;
    fftw_plan r2c, c2r;
    fftw_cached_plans(L, &r2c, &c2r);
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        s4k_work w;
        work_alloc(&w, M, R, L);
#pragma omp for schedule(dynamic)
        for (int64_t h = 0; h < H; h++) {
            channel_setup(&w, R, (const double complex *)(Lambda + 2 * h * M), (const double complex *)(P + 2 * h * R * M),
                          (const double complex *)(B + 2 * h * M), (const double complex *)(Ct + 2 * h * M));
            if (channel_forward(&w, R, exp(log_dt[h]), K + h * L, c2r)) failed = 1;
        }
        work_free(&w);
    }
    return failed ? -1 : 0;
}

void s4_kernel_backward(int64_t H, int64_t M, int64_t R, int64_t L, const double *log_dt,
                        const double *Lambda, const double *P, const double *B, const double *Ct,
                        const double *dK, double *dlog_dt, double *dLambda, double *dP, double *dB,
                        double *dCt) {
    check_rank(R);
    if (H <= 0) return;
    if (L <= 0) {
        memset(dlog_dt, 0, (size_t)H * sizeof(double));
        memset(dLambda, 0, (size_t)(2 * H * M) * sizeof(double));
        memset(dP, 0, (size_t)(2 * H * R * M) * sizeof(double));
        memset(dB, 0, (size_t)(2 * H * M) * sizeof(double));
        memset(dCt, 0, (size_t)(2 * H * M) * sizeof(double));
        return;
    }
    fftw_plan r2c, c2r;
    fftw_cached_plans(L, &r2c, &c2r);
#pragma omp parallel
    {
        s4k_work w;
        work_alloc(&w, M, R, L);
#pragma omp for schedule(dynamic)
        for (int64_t h = 0; h < H; h++) {
            const double complex *Ph = (const double complex *)(P + 2 * h * R * M);
            const double complex *Bh = (const double complex *)(B + 2 * h * M);
            const double complex *Ch = (const double complex *)(Ct + 2 * h * M);
            channel_setup(&w, R, (const double complex *)(Lambda + 2 * h * M), Ph, Bh, Ch);
            channel_backward(&w, R, exp(log_dt[h]), dK + h * L, r2c, Ph, Bh, Ch, dlog_dt + h,
                             (double complex *)(dLambda + 2 * h * M), (double complex *)(dP + 2 * h * R * M),
                             (double complex *)(dB + 2 * h * M), (double complex *)(dCt + 2 * h * M));
        }
        work_free(&w);
    }
}

/* ---- float32 interface: convert, compute in double, convert back ---------------------------- */
static double *to_f64(const float *x, int64_t n) {
    double *d = ssm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static void to_f32(float *out, const double *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)x[i];
}

int s4_kernel_forward_f32(int64_t H, int64_t M, int64_t R, int64_t L, const float *log_dt,
                          const float *Lambda, const float *P, const float *B, const float *Ct,
                          float *K) {
    double *ld = to_f64(log_dt, H), *lam = to_f64(Lambda, 2 * H * M), *p = to_f64(P, 2 * H * R * M);
    double *b = to_f64(B, 2 * H * M), *c = to_f64(Ct, 2 * H * M);
    double *k = ssm_xmalloc((size_t)(H * L > 0 ? H * L : 1) * sizeof(double));
    int rc = s4_kernel_forward(H, M, R, L, ld, lam, p, b, c, k);
    to_f32(K, k, H * L);
    free(ld); free(lam); free(p); free(b); free(c); free(k);
    return rc;
}

void s4_kernel_backward_f32(int64_t H, int64_t M, int64_t R, int64_t L, const float *log_dt,
                            const float *Lambda, const float *P, const float *B, const float *Ct,
                            const float *dK, float *dlog_dt, float *dLambda, float *dP, float *dB,
                            float *dCt) {
    double *ld = to_f64(log_dt, H), *lam = to_f64(Lambda, 2 * H * M), *p = to_f64(P, 2 * H * R * M);
    double *b = to_f64(B, 2 * H * M), *c = to_f64(Ct, 2 * H * M), *dk = to_f64(dK, H * L);
    double *g = ssm_xmalloc((size_t)(H + 2 * H * M * (3 + R) + 1) * sizeof(double));
    double *gdt = g, *glam = g + H, *gp = glam + 2 * H * M, *gb = gp + 2 * H * R * M, *gc = gb + 2 * H * M;
    s4_kernel_backward(H, M, R, L, ld, lam, p, b, c, dk, gdt, glam, gp, gb, gc);
    to_f32(dlog_dt, gdt, H); to_f32(dLambda, glam, 2 * H * M); to_f32(dP, gp, 2 * H * R * M);
    to_f32(dB, gb, 2 * H * M); to_f32(dCt, gc, 2 * H * M);
    free(ld); free(lam); free(p); free(b); free(c); free(dk); free(g);
}
