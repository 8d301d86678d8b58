/* test_hippo.c - HiPPO matrices against their closed forms (written again here, differently, for
 * N = 1..64), S4D inits, the seeded random draws, and the NPLR -> DPLR decomposition:
 * V diag(W) V* == A + P P^T and V (diag(W) - Pf Pf*) V* == A to 1e-10 for legs, legt, lagt, fout
 * at N = 8, 64, 256, with V unitary and the eigenvalues equal to those of A + P P^T computed by an
 * independent general eigensolver (dgeev). */
#include "check.h"
#include "cli.h"
#include "hippo.h"
#include "lapack_decl.h"
#include "nplr.h"

#include <complex.h>
#include <string.h>

typedef double complex cplx;
static const int hippo_kinds[4] = {SSM_INIT_LEGS, SSM_INIT_LEGT, SSM_INIT_LAGT, SSM_INIT_FOUT};

/* ---- closed forms, written independently of libcommon/hippo.c ------------------------------------ */

/* LegS as S4's paper writes it: A = -(tril(q q^T) - diag(n)), q = sqrt(2n+1). */
static double legs_entry(int n, int k) {
    if (n < k) return 0;
    double q = sqrt((double)(2 * n + 1) * (double)(2 * k + 1));
    return n == k ? -(double)(2 * n + 1) + n : -q;
}
static double legt_entry(int i, int j) {
    double R = sqrt((double)(2 * i + 1) * (double)(2 * j + 1));
    double sign = i < j ? pow(-1.0, i - j) : 1.0;
    return -R * sign / 2;
}
static double lagt_entry(int i, int j) {
    if (i == j) return -0.5;
    return j < i ? -1.0 : 0.0;
}
static double fout_B(int n) { return n == 0 ? 1.0 : (n % 2 == 0 ? M_SQRT2 : 0.0); }
static double fout_entry(int i, int j) {
    double J = 0;
    if (i % 2 == 1 && j == i - 1) J = M_PI * (i / 2);           /* lower entry of block k = i/2 */
    if (i % 2 == 0 && j == i + 1) J = -M_PI * (i / 2);          /* upper entry */
    return J - fout_B(i) * fout_B(j);
}

/* Relative difference, treating values that should be exact integers exactly. */
static int same_value(double got, double want) {
    if (want == floor(want) && fabs(want) < 1e6) return got == want;
    return fabs(got - want) <= 4e-16 * fabs(want);
}

static void test_closed_forms(void) {
    for (int N = 1; N <= 64; N++) {
        double *A = ssm_xmalloc(sizeof(double) * (size_t)N * N), *B = ssm_xmalloc(sizeof(double) * N);
        double *P = ssm_xmalloc(sizeof(double) * 2 * N);
        for (int t = 0; t < 4; t++) {
            int kind = hippo_kinds[t];
            int r = hippo_matrices(kind, N, A, B, P);
            CHECK(r == (kind == SSM_INIT_LEGT ? 2 : 1) && r == hippo_rank(kind), "%s rank %d", ssm_init_name(kind), r);
            int bad = 0;
            for (int i = 0; i < N; i++) {
                for (int j = 0; j < N; j++) {
                    double want = kind == SSM_INIT_LEGS ? legs_entry(i, j) : kind == SSM_INIT_LEGT ? legt_entry(i, j)
                                : kind == SSM_INIT_LAGT ? lagt_entry(i, j) : fout_entry(i, j);
                    if (!same_value(A[(size_t)i * N + j], want)) {
                        if (!bad) fprintf(stderr, "%s N=%d A[%d,%d] = %.17g, want %.17g\n", ssm_init_name(kind), N, i, j, A[(size_t)i * N + j], want);
                        bad++;
                    }
                }
                double wantB = kind == SSM_INIT_LEGS ? sqrt(2.0 * i + 1) : kind == SSM_INIT_LEGT ? sqrt(2.0 * i + 1) / 2
                             : kind == SSM_INIT_LAGT ? 1.0 : fout_B(i);
                if (!same_value(B[i], wantB)) bad++;
                /* P: legs sqrt(n+1/2); legt two rows sqrt(n+1/2) on alternating parities; lagt
                 * sqrt(1/2); fout = B. */
                double p = sqrt(i + 0.5);
                if (kind == SSM_INIT_LEGS && !same_value(P[i], p)) bad++;
                if (kind == SSM_INIT_LEGT && !(same_value(P[i] + P[N + i], p) && P[i] * P[N + i] == 0 && (P[i] != 0) == (i % 2 == 1))) bad++;
                if (kind == SSM_INIT_LAGT && !same_value(P[i], sqrt(0.5))) bad++;
                if (kind == SSM_INIT_FOUT && P[i] != fout_B(i)) bad++;
            }
            CHECK(bad == 0, "%s N=%d: %d entries differ from the closed form", ssm_init_name(kind), N, bad);
            /* A + sum P P^T = c I + skew-symmetric (the NPLR property). */
            double defect = 0, norm = 0, c = 0;
            for (int i = 0; i < N; i++) {
                double v = A[(size_t)i * N + i];
                for (int k = 0; k < r; k++) v += P[k * N + i] * P[k * N + i];
                c += v / N;
            }
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) {
                    double a = A[(size_t)i * N + j], b = A[(size_t)j * N + i];
                    for (int k = 0; k < r; k++) { a += P[k * N + i] * P[k * N + j]; b += P[k * N + i] * P[k * N + j]; }
                    if (i == j) { a -= c; b -= c; }
                    defect += (a + b) * (a + b);
                    norm += a * a;
                }
            CHECK(sqrt(defect) <= 1e-13 * (sqrt(norm) + 1), "%s N=%d: A + P P^T - cI not skew (%.3g)", ssm_init_name(kind), N, sqrt(defect));
        }
        free(A); free(B); free(P);
    }
    CHECK(hippo_matrices(SSM_INIT_S4D_LIN, 4, NULL, NULL, NULL) == -1, "non-HiPPO kind refused");
}

static void test_s4d_inits(void) {
    int Ns[] = {2, 8, 64, 6};
    for (int t = 0; t < 4; t++) {
        int N = Ns[t], M = N / 2;
        double lin[128], inv[128], real[64], alog[64];
        s4d_lin_A(N, lin);
        s4d_inv_A(N, inv);
        s4d_real_A(N, real);
        mamba_A_log(N, alog);
        int bad = 0;
        for (int m = 0; m < M; m++) {
            if (lin[2 * m] != -0.5 || fabs(lin[2 * m + 1] - 3.14159265358979323846 * m) > 1e-15 * (m + 1)) bad++;
            double want = N / 3.14159265358979323846 * ((double)N / (2 * m + 1) - 1);
            if (inv[2 * m] != -0.5 || fabs(inv[2 * m + 1] - want) > 1e-14 * (fabs(want) + 1)) bad++;
        }
        for (int n = 0; n < N; n++) {
            if (real[n] != -(double)(n + 1)) bad++;
            if (fabs(-exp(alog[n]) + (n + 1)) > 1e-14 * (n + 1)) bad++;
        }
        CHECK(bad == 0, "s4d inits N=%d: %d values differ", N, bad);
    }
}

static void test_rng(void) {
    /* Reproducible, stream-separated, and the documented algorithm (first value of stream 1, seed
     * 0, recomputed here by hand). */
    ssm_rng r;
    ssm_rng_init(&r, 0, SSM_RNG_C);
    uint64_t z = 0x9E3779B97F4A7C15ull + 1 * 0xD1B54A32D192ED03ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    CHECK(ssm_rng_next(&r) == z, "splitmix64 as documented");
    double a[1000], b[1000], c[1000];
    ssm_draw_normal(42, SSM_RNG_C, 1000, 1.0, a);
    ssm_draw_normal(42, SSM_RNG_C, 1000, 1.0, b);
    ssm_draw_normal(42, SSM_RNG_D, 1000, 1.0, c);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same draws");
    CHECK(memcmp(a, c, sizeof a) != 0, "different streams differ");
    static double big[200000];
    ssm_draw_normal(7, SSM_RNG_C, 200000, 1.0, big);
    double mean = 0, var = 0;
    for (int i = 0; i < 200000; i++) mean += big[i] / 200000;
    for (int i = 0; i < 200000; i++) var += (big[i] - mean) * (big[i] - mean) / 200000;
    CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.02, "normal draws: mean %g var %g", mean, var);
    double dt[1000];
    ssm_draw_dt(3, 1000, 1e-3, 1e-1, dt);
    double lo = 1, hi = 0, meanlog = 0;
    for (int i = 0; i < 1000; i++) { lo = fmin(lo, dt[i]); hi = fmax(hi, dt[i]); meanlog += log(dt[i]) / 1000; }
    CHECK(lo >= 1e-3 && hi <= 1e-1 && fabs(meanlog - log(1e-2)) < 0.2, "dt log-uniform: [%g, %g], mean log %g", lo, hi, meanlog);
}

/* Eigenvalues of a real (n, n) row-major matrix with dgeev. */
static void eig_real(int n, const double *A, cplx *w) {
    double *a = ssm_xmalloc(sizeof(double) * (size_t)n * n), *wr = ssm_xmalloc(sizeof(double) * n), *wi = ssm_xmalloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) a[(size_t)j * n + i] = A[(size_t)i * n + j];
    int lwork = 8 * n + 64, info, one = 1;
    double *work = ssm_xmalloc(sizeof(double) * lwork), dummy;
    dgeev_("N", "N", &n, a, &n, wr, wi, &dummy, &one, &dummy, &one, work, &lwork, &info, 1, 1);
    CHECK(info == 0, "dgeev");
    for (int i = 0; i < n; i++) w[i] = wr[i] + I * wi[i];
    free(a); free(wr); free(wi); free(work);
}

static int cmp_imag(const void *a, const void *b) {
    double x = cimag(*(const cplx *)a), y = cimag(*(const cplx *)b);
    return x < y ? -1 : x > y;
}

static void test_nplr(void) {
    int Ns[3] = {8, 64, 256};
    for (int t = 0; t < 4; t++)
        for (int s = 0; s < 3; s++) {
            int kind = hippo_kinds[t], N = Ns[s], M = N / 2;
            size_t NN = (size_t)N * N;
            double *A = ssm_xmalloc(sizeof(double) * NN), *B = ssm_xmalloc(sizeof(double) * N), *P = ssm_xmalloc(sizeof(double) * 2 * N);
            int r = hippo_matrices(kind, N, A, B, P);
            cplx *Lambda = ssm_xmalloc(sizeof(cplx) * M), *Vh = ssm_xmalloc(sizeof(cplx) * N * M);
            double rec = -1;
            char err[256] = "";
            int rc = nplr_decompose(N, r, A, P, (double *)Lambda, (double *)Vh, &rec, err, sizeof err);
            CHECK(rc == 0, "%s N=%d: %s", ssm_init_name(kind), N, err);
            if (rc) continue;
            /* Full V = [Vh, conj Vh], W = [Lambda, conj Lambda]; AP = A + P P^T. */
            cplx *V = ssm_xmalloc(sizeof(cplx) * NN), *W = ssm_xmalloc(sizeof(cplx) * N);
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) { V[(size_t)n * N + m] = Vh[(size_t)n * M + m]; V[(size_t)n * N + M + m] = conj(Vh[(size_t)n * M + m]); }
            for (int m = 0; m < M; m++) { W[m] = Lambda[m]; W[M + m] = conj(Lambda[m]); }
            double *AP = ssm_xmalloc(sizeof(double) * NN);
            for (size_t i = 0; i < NN; i++) AP[i] = A[i];
            for (int k = 0; k < r; k++) for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) AP[(size_t)i * N + j] += P[k * N + i] * P[k * N + j];
            /* projected P (full) = V* P */
            cplx *Pf = ssm_xmalloc(sizeof(cplx) * 2 * N);
            for (int k = 0; k < r; k++) {
                cplx *ph = ssm_xmalloc(sizeof(cplx) * M);
                nplr_project_column(N, M, (double *)Vh, P + k * N, (double *)ph);
                for (int m = 0; m < M; m++) { Pf[k * N + m] = ph[m]; Pf[k * N + M + m] = conj(ph[m]); }
                free(ph);
            }
            double e1 = 0, n1 = 0, e2 = 0, n2 = 0, eu = 0;
            cplx *VW = ssm_xmalloc(sizeof(cplx) * NN), *VA = ssm_xmalloc(sizeof(cplx) * NN);
            for (int i = 0; i < N; i++)
                for (int m = 0; m < N; m++) {
                    VW[(size_t)i * N + m] = V[(size_t)i * N + m] * W[m];
                    /* V (diag W - Pf Pf*) row i, column m */
                    cplx s2 = V[(size_t)i * N + m] * W[m];
                    cplx vp[2] = {0, 0};
                    for (int k = 0; k < r; k++) for (int q = 0; q < N; q++) vp[k] += V[(size_t)i * N + q] * Pf[k * N + q];
                    for (int k = 0; k < r; k++) s2 -= vp[k] * conj(Pf[k * N + m]);
                    VA[(size_t)i * N + m] = s2;
                }
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) {
                    cplx a = 0, b = 0, u = 0;
                    for (int m = 0; m < N; m++) {
                        a += VW[(size_t)i * N + m] * conj(V[(size_t)j * N + m]);
                        b += VA[(size_t)i * N + m] * conj(V[(size_t)j * N + m]);
                        u += conj(V[(size_t)m * N + i]) * V[(size_t)m * N + j];
                    }
                    e1 += pow(cabs(a - AP[(size_t)i * N + j]), 2); n1 += AP[(size_t)i * N + j] * AP[(size_t)i * N + j];
                    e2 += pow(cabs(b - A[(size_t)i * N + j]), 2); n2 += A[(size_t)i * N + j] * A[(size_t)i * N + j];
                    eu += pow(cabs(u - (i == j)), 2);
                }
            CHECK_REL_ERR(sqrt(e1 / n1), 1e-10, "%s N=%d: V diag(W) V* vs A + P P^T", ssm_init_name(kind), N);
            CHECK_REL_ERR(sqrt(e2 / n2), 1e-10, "%s N=%d: V (diag(W) - Pf Pf*) V* vs A", ssm_init_name(kind), N);
            CHECK_REL_ERR(sqrt(eu / N), 1e-10, "%s N=%d: V unitary", ssm_init_name(kind), N);
            CHECK(rec >= 0 && rec < 1e-12 && fabs(rec - sqrt(e1 / n1)) < 1e-12, "%s N=%d: reported error %.3g vs %.3g", ssm_init_name(kind), N, rec, sqrt(e1 / n1));
            /* Eigenvalues: kept half has Im >= 0, sorted by Im; with their conjugates they are the
             * eigenvalues of the normal matrix AP (dgeev, well conditioned for a normal matrix). */
            cplx *ev = ssm_xmalloc(sizeof(cplx) * N);
            eig_real(N, AP, ev);
            /* the M with the largest imaginary parts (a zero pair contributes one) */
            qsort(ev, (size_t)N, sizeof(cplx), cmp_imag);
            memmove(ev, ev + M, sizeof(cplx) * M);
            int kept = M;
            double emax = 0, scale = 0;
            int order_ok = 1;
            for (int m = 0; m < M; m++) {
                if (m < kept) emax = fmax(emax, cabs(ev[m] - Lambda[m]));
                scale = fmax(scale, cabs(Lambda[m]));
                if (cimag(Lambda[m]) < -1e-12 || (m && cimag(Lambda[m]) < cimag(Lambda[m - 1]))) order_ok = 0;
            }
            CHECK(emax <= 1e-10 * (scale + 1), "%s N=%d: Lambda vs eig(A + P P^T): %.3g", ssm_init_name(kind), N, emax);
            CHECK(order_ok, "%s N=%d: Lambda has Im >= 0 and increasing", ssm_init_name(kind), N);
            /* closed forms of the spectrum: LegS Re = -1/2; FouT Lambda_m = i pi m. */
            for (int m = 0; m < M; m++) {
                if (kind == SSM_INIT_LEGS) CHECK(fabs(creal(Lambda[m]) + 0.5) < 1e-12, "legs Re Lambda");
                if (kind == SSM_INIT_FOUT) CHECK(cabs(Lambda[m] - I * M_PI * m) < 1e-10 * N, "fout Lambda_%d = %g%+gi", m, creal(Lambda[m]), cimag(Lambda[m]));
            }
            free(A); free(B); free(P); free(Lambda); free(Vh); free(V); free(W); free(AP); free(Pf); free(VW); free(VA); free(ev);
        }
    /* refusals */
    double A[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, P[4] = {0}, L[4], V[16];
    char err[256];
    CHECK(nplr_decompose(4, 1, A, P, L, V, NULL, err, sizeof err) == -1 && strstr(err, "skew"), "non-normal refused: %s", err);
    CHECK(nplr_decompose(3, 1, A, P, L, V, NULL, err, sizeof err) == -1 && strstr(err, "even"), "odd N refused: %s", err);
}

int main(void) {
    test_seed_from_env("test_hippo");
    test_closed_forms();
    test_s4d_inits();
    test_rng();
    test_nplr();
    return check_summary("test_hippo");
}
