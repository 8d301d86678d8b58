/* kernel_cauchy.c - the kernel of a DPLR SSM by S4's algorithm (REFERENCE.md section 5, "DPLR").
 *
 *   dt (H); Lambda, B, C (H, M) complex; P (H, R, M) complex  ->  K (H, L) real.
 *
 * The state matrix (eigenbasis) is A = diag(Lambda) - sum_r P_r P_r^*, discretized bilinearly.
 * Only one mode of each conjugate pair is stored (conj=half): the full N = 2M vectors are
 * [x; conj(x)], so every full inner product is a half sum plus its conjugate term.
 *
 * Per channel:
 *  1. Ctilde = C (I - Abar^L).  The row vector C Abar^L is advanced L times by c <- c Abar, with
 *     Abar = M1^{-1} M2 (M1 = I - dt/2 A, M2 = I + dt/2 A) multiplied out by Woodbury into a
 *     diagonal plus a rank-R term (see ctilde): O(M R) per step, O(M R L) time, O(M) memory.
 *  2. w_k = exp(-2 pi i k / L), k = 0..L/2;  z_k = (2/dt)(1 - w)/(1 + w) = (2i/dt) tan(pi k / L)
 *     (purely imaginary, computed from the half angle, no cancellation) and 2/(1 + w) =
 *     exp(i pi k / L) / cos(pi k / L).  At w = -1 (k = L/2, L even) the limit is exact:
 *     (I + Abar)^{-1} Bbar = dt/2 B, so Khat = dt/2 Ctilde B.  At w = 1 (k = 0, z = 0) the
 *     resolvent (0 - A)^{-1} does not exist when A is singular (FouT: Lambda has an exact zero
 *     pair), although Khat(1) = sum_l K_l is finite: step 1 accumulates that sum on the way
 *     (K_l = (C Abar^l) Bbar with Bbar from the same Woodbury factors), and k = 0 uses it.
 *  3. The (R+1)^2 Cauchy sums T[a][b](z) = sum_n a_n b_n / (z - Lambda_n) + conj(a_n b_n) /
 *     (z - conj Lambda_n), a in {Ctilde, conj P_1..R}, b in {B, P_1..R}  (T[0][0] = r_CB,
 *     T[0][j] = r_CP, T[i][0] = r_PB, T[i][j] = r_PP).  With z = i y the two reciprocals are real
 *     formulas; each sum then costs 4 multiply-adds per mode.  O(M L) time (the naive Cauchy
 *     product), O(M + L) memory.
 *  4. Woodbury: Khat = (2/(1+w)) (r_CB - r_CP (I + R_PP)^{-1} r_PB).
 *  5. K = irfft(Khat, L) (FFTW c2r of length L, divided by L).
 */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fftw_cache.h"
#include "complex_solve.h"
#include "ssm_kernel.h"

#define CAUCHY_MAX_RANK 8
_Static_assert(CAUCHY_MAX_RANK <= COMPLEX_SOLVE_MAX, "complex_solve_small holds rank <= COMPLEX_SOLVE_MAX");

/* Per-thread scratch. */
typedef struct {
    double complex *ct;                           /* M: Ctilde */
    double *cr, *ci, *er, *ei, *bbr, *bbi;        /* M each: c, e = D2/D1, Bbar (split re/im) */
    double *ur, *ui, *wr, *wi;                    /* R*M each: U = P/D1, W^* (see ctilde) */
    double *lr, *li, *sr, *si, *dr, *di;          /* M each */
    double *pr, *pi;                              /* (R+1)^2 * M: products a_n b_n */
    fftw_complex *khat;                           /* L/2 + 1 */
    double *out;                                  /* L */
} cauchy_work;

static void work_alloc(cauchy_work *w, int64_t M, int64_t R, int64_t L) {
    size_t m = (size_t)(M > 0 ? M : 1), q = (size_t)((R + 1) * (R + 1)), r = (size_t)R;
    w->ct = ssm_xmalloc(sizeof(double complex) * m);
    double *d = ssm_xmalloc(sizeof(double) * m * (16 + 4 * r + 2 * q));
    w->cr = d; w->ci = d + m; w->er = d + 2 * m; w->ei = d + 3 * m; w->bbr = d + 8 * m; w->bbi = d + 9 * m;
    w->lr = d + 10 * m; w->li = d + 11 * m; w->sr = d + 12 * m; w->si = d + 13 * m; w->dr = d + 14 * m;
    w->di = d + 15 * m;
    w->ur = d + 16 * m; w->ui = w->ur + r * m; w->wr = w->ui + r * m; w->wi = w->wr + r * m;
    w->pr = w->wi + r * m; w->pi = w->pr + q * m;
    w->khat = fftw_malloc(sizeof(fftw_complex) * (size_t)(L / 2 + 1));
    w->out = fftw_malloc(sizeof(double) * (size_t)L);
    if (!w->khat || !w->out) ssm_die("cauchy kernel: out of memory (L = %lld)", (long long)L);
}
static void work_free(cauchy_work *w) {
    free(w->ct); free(w->cr); fftw_free(w->khat); fftw_free(w->out);
}

/* Step 1: w->ct = C (I - Abar^L), and *ksum = sum_l K_l.  P is (R, M).
 *
 * In the full basis, with D1 = I - dt/2 diag(Lambda), D2 = I + dt/2 diag(Lambda), h = dt/2,
 * M1 = I - h A = D1 + h P P^*, M2 = I + h A = D2 - h P P^*, Woodbury gives
 *     M1^{-1} = D1^{-1} - D1^{-1} P S^{-1} P^* D1^{-1},   S = (1/h) I + Kp,  Kp = P^* D1^{-1} P,
 * and multiplying out, Abar = M1^{-1} M2 is a diagonal plus a rank-R term:
 *     Abar = diag(e) + U W^*,   e = D2 / D1,   U = D1^{-1} P,
 *     W^* = -h P^* - S^{-1} P^* diag(e) + h S^{-1} Kp P^*.
 * S and Kp are real R x R (full sums of conjugate pairs).  A row step c <- c Abar is then
 *     alpha_j = (c U_j) (full sum = 2 Re of the half sum),   c <- c e + sum_j alpha_j W^*_j,
 * two passes over the modes, O(M R) each.  Vectors are split into re/im arrays so that each
 * pass vectorizes. */
static int ctilde(int64_t M, int64_t R, int64_t L, double dt, const double complex *lam,
                  const double complex *P, const double complex *B, const double complex *C,
                  cauchy_work *w, double *ksum) {
    double *cr = w->cr, *ci = w->ci, *er = w->er, *ei = w->ei, *bbr = w->bbr, *bbi = w->bbi;
    double *ur = w->ur, *ui = w->ui, *wr = w->wr, *wi = w->wi;
    double h = dt / 2, Kp[CAUCHY_MAX_RANK * CAUCHY_MAX_RANK], Sinv[CAUCHY_MAX_RANK * CAUCHY_MAX_RANK];
    double SK[CAUCHY_MAX_RANK * CAUCHY_MAX_RANK];
    double complex *inv_d1 = w->ct;   /* scratch until the end */
    for (int64_t n = 0; n < M; n++) {
        inv_d1[n] = 1 / (1 - h * lam[n]);
        double complex e = (1 + h * lam[n]) * inv_d1[n];
        er[n] = creal(e); ei[n] = cimag(e);
        cr[n] = creal(C[n]); ci[n] = cimag(C[n]);
    }
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < R; j++) {
            double complex s = 0;
            for (int64_t n = 0; n < M; n++) s += conj(P[i * M + n]) * P[j * M + n] * inv_d1[n];
            Kp[i * R + j] = 2 * creal(s);
        }
    for (int64_t j = 0; j < R; j++) {   /* Sinv column by column */
        double complex a[CAUCHY_MAX_RANK * CAUCHY_MAX_RANK], b[CAUCHY_MAX_RANK];
        for (int64_t i = 0; i < R * R; i++) a[i] = Kp[i] + (i / R == i % R ? 1 / h : 0);
        for (int64_t i = 0; i < R; i++) b[i] = i == j;
        if (complex_solve_small((int)R, a, b, 0)) return -1;
        for (int64_t i = 0; i < R; i++) Sinv[i * R + j] = creal(b[i]);
    }
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < R; j++) {
            SK[i * R + j] = 0;
            for (int64_t k = 0; k < R; k++) SK[i * R + j] += Sinv[i * R + k] * Kp[k * R + j];
        }
    /* Bbar = M1^{-1} dt B = y - D1^{-1} P Sinv (P^* y),  y = D1^{-1} dt B.  During the steps
     * ksum = sum_l (C Abar^l) Bbar = sum_l K_l, the value of Khat at w = 1 (see step 2). */
    {
        double t[CAUCHY_MAX_RANK], x[CAUCHY_MAX_RANK];
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
            for (int64_t j = 0; j < R; j++) b -= inv_d1[n] * P[j * M + n] * x[j];
            bbr[n] = creal(b);
            bbi[n] = cimag(b);
        }
    }
    /* U_j = D1^{-1} P_j;  W^*_j = -h conj(P_j) - e sum_i Sinv_ji conj(P_i) + h sum_i SK_ji conj(P_i) */
    for (int64_t j = 0; j < R; j++)
        for (int64_t n = 0; n < M; n++) {
            double complex u = inv_d1[n] * P[j * M + n], ws = -h * conj(P[j * M + n]), e = er[n] + I * ei[n];
            for (int64_t i = 0; i < R; i++) ws += (-e * Sinv[j * R + i] + h * SK[j * R + i]) * conj(P[i * M + n]);
            ur[j * M + n] = creal(u); ui[j * M + n] = cimag(u);
            wr[j * M + n] = creal(ws); wi[j * M + n] = cimag(ws);
        }
    double ks = 0;
    for (int64_t step = 0; step < L; step++) {
        double alpha[CAUCHY_MAX_RANK], s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t n = 0; n < M; n++) s += cr[n] * bbr[n] - ci[n] * bbi[n];
        ks += 2 * s;
        for (int64_t j = 0; j < R; j++) {
            const double *u_r = ur + j * M, *u_i = ui + j * M;
            double a = 0;
#pragma omp simd reduction(+ : a)
            for (int64_t n = 0; n < M; n++) a += cr[n] * u_r[n] - ci[n] * u_i[n];
            alpha[j] = 2 * a;
        }
        if (R == 1) {   /* the common case in one pass */
            double a = alpha[0];
#pragma omp simd
            for (int64_t n = 0; n < M; n++) {
                double r = cr[n] * er[n] - ci[n] * ei[n] + a * wr[n];
                double i = cr[n] * ei[n] + ci[n] * er[n] + a * wi[n];
                cr[n] = r; ci[n] = i;
            }
        } else {
#pragma omp simd
            for (int64_t n = 0; n < M; n++) {
                double r = cr[n] * er[n] - ci[n] * ei[n], i = cr[n] * ei[n] + ci[n] * er[n];
                cr[n] = r; ci[n] = i;
            }
            for (int64_t j = 0; j < R; j++) {
                const double *w_r = wr + j * M, *w_i = wi + j * M;
                double a = alpha[j];
#pragma omp simd
                for (int64_t n = 0; n < M; n++) { cr[n] += a * w_r[n]; ci[n] += a * w_i[n]; }
            }
        }
    }
    for (int64_t n = 0; n < M; n++) w->ct[n] = C[n] - (cr[n] + I * ci[n]);
    *ksum = ks;
    return 0;
}

static int cauchy_channel(int64_t M, int64_t R, int64_t L, double dt, const double complex *lam,
                          const double complex *P, const double complex *B,
                          const double complex *C, double *K, cauchy_work *w, fftw_plan c2r) {
    double ksum;
    if (ctilde(M, R, L, dt, lam, P, B, C, w, &ksum)) return -1;
    int64_t Q = R + 1, nf = L / 2 + 1;
    /* products a_n b_n for a in {Ctilde, conj P_i}, b in {B, P_j} */
    for (int64_t i = 0; i < Q; i++)
        for (int64_t j = 0; j < Q; j++)
            for (int64_t n = 0; n < M; n++) {
                double complex a = i == 0 ? w->ct[n] : conj(P[(i - 1) * M + n]);
                double complex b = j == 0 ? B[n] : P[(j - 1) * M + n];
                double complex ab = a * b;
                w->pr[(i * Q + j) * M + n] = creal(ab);
                w->pi[(i * Q + j) * M + n] = cimag(ab);
            }
    for (int64_t n = 0; n < M; n++) { w->lr[n] = creal(lam[n]); w->li[n] = cimag(lam[n]); }
    for (int64_t k = 0; k < nf; k++) {
        double complex khat;
        if (k == 0) {       /* w = 1, z = 0: sum_l K_l from step 1 (A may be singular) */
            khat = ksum;
        } else if (2 * k == L) {   /* w = -1: exactly dt/2 Ctilde B (full sum) */
            double s = 0;
            for (int64_t n = 0; n < M; n++) s += w->pr[n];
            khat = dt * s;
        } else {
            double half = M_PI * (double)k / (double)L;
            double y = (2 / dt) * tan(half);
            double complex g = cexp(I * half) / cos(half);
            const double *lr = w->lr, *li = w->li;
            double *sr = w->sr, *si = w->si, *dr = w->dr, *di = w->di;
#pragma omp simd
            for (int64_t n = 0; n < M; n++) {
                /* r1 = 1/(iy - Lambda), r2 = 1/(iy - conj Lambda) */
                double a = -lr[n], b1 = y - li[n], b2 = y + li[n];
                double i1 = 1 / (a * a + b1 * b1), i2 = 1 / (a * a + b2 * b2);
                double r1r = a * i1, r1i = -b1 * i1, r2r = a * i2, r2i = -b2 * i2;
                sr[n] = r1r + r2r; si[n] = r1i + r2i;
                dr[n] = r1r - r2r; di[n] = r1i - r2i;
            }
            double complex T[(CAUCHY_MAX_RANK + 1) * (CAUCHY_MAX_RANK + 1)];
            for (int64_t q = 0; q < Q * Q; q++) {
                const double *vr = w->pr + q * M, *vi = w->pi + q * M;
                double re = 0, im = 0;
#pragma omp simd reduction(+ : re, im)
                for (int64_t n = 0; n < M; n++) {
                    re += vr[n] * sr[n] - vi[n] * di[n];
                    im += vr[n] * si[n] + vi[n] * dr[n];
                }
                T[q] = re + I * im;
            }
            khat = T[0];
            if (R > 0) {   /* Woodbury: - r_CP (I + R_PP)^{-1} r_PB */
                double complex a[CAUCHY_MAX_RANK * CAUCHY_MAX_RANK], x[CAUCHY_MAX_RANK];
                for (int64_t i = 0; i < R; i++) {
                    for (int64_t j = 0; j < R; j++) a[i * R + j] = (i == j) + T[(i + 1) * Q + j + 1];
                    x[i] = T[(i + 1) * Q];
                }
                if (complex_solve_small((int)R, a, x, 0)) return -1;
                for (int64_t j = 0; j < R; j++) khat -= T[j + 1] * x[j];
            }
            khat *= g;
        }
        w->khat[k] = khat;   /* fftw_complex is double complex when <complex.h> comes first */
    }
    fftw_execute_dft_c2r(c2r, w->khat, w->out);
    int bad = 0;
    for (int64_t l = 0; l < L; l++) {
        K[l] = w->out[l] / (double)L;
        if (!isfinite(K[l])) bad = 1;
    }
    return bad ? -1 : 0;
}

int cauchy_kernel_dplr(int64_t H, int64_t M, int64_t R, int64_t L, const double *dt,
                       const double *Lambda, const double *P, const double *B, const double *C,
                       double *K) {
    if (R < 0 || R > CAUCHY_MAX_RANK) ssm_die("cauchy kernel: rank %lld of P is not in 0..%d", (long long)R, CAUCHY_MAX_RANK);
    if (H <= 0 || L <= 0) return 0;
    fftw_plan r2c, c2r;
    fftw_cached_plans(L, &r2c, &c2r);
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        cauchy_work w;
        work_alloc(&w, M, R, L);
#pragma omp for schedule(dynamic)
        for (int64_t h = 0; h < H; h++)
            if (cauchy_channel(M, R, L, dt[h], (const double complex *)(Lambda + 2 * h * M),
                               (const double complex *)(P + 2 * h * R * M),
                               (const double complex *)(B + 2 * h * M),
                               (const double complex *)(C + 2 * h * M), K + h * L, &w, c2r))
                failed = 1;
        work_free(&w);
    }
    return failed ? -1 : 0;
}
