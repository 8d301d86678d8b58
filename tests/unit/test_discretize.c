/* test_discretize.c - discretizations against independent references:
 *   - the Pade-13 matrix exponential against a Taylor series with scaling and squaring in long
 *     double (random matrices of several norms and odd sizes, and dt * A for every HiPPO matrix at
 *     dt = 1e-4 .. 1), to 1e-10 relative;
 *   - dense ZOH Bbar against the long-double Taylor exponential of [[A, B], [0, 0]] and the identity
 *     A Bbar = (Abar - I) B;
 *   - bilinear and backward-Euler identities ((I - dt/2 A) Abar = I + dt/2 A, ...);
 *   - diagonal forms against their closed formulas in long double (including dt A = 0 and tiny);
 *   - diagonal forms against the dense code on the equivalent real matrices (complex modes as 2x2
 *     blocks: checks the conj=half convention 2 Re(...) end to end);
 *   - |eig(Abar)| <= 1 for zoh and bilinear, every HiPPO/S4D init, dt in [1e-4, 1];
 *   - the dplr and dense forms of each HiPPO init give the same (bilinear) kernel. */
#include "check.h"
#include "cli.h"
#include "discretize.h"
#include "hippo.h"
#include "lapack_decl.h"
#include "nplr.h"

#include <complex.h>
#include <string.h>

typedef double complex cplx;
static const int hippo_kinds[4] = {SSM_INIT_LEGS, SSM_INIT_LEGT, SSM_INIT_LAGT, SSM_INIT_FOUT};

/* ---- the reference exponential: Taylor series in long double, scaling and squaring -------------- */
static void matmul_ld(int n, const long double *A, const long double *B, long double *C) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            long double s = 0;
            for (int k = 0; k < n; k++) s += A[(size_t)i * n + k] * B[(size_t)k * n + j];
            C[(size_t)i * n + j] = s;
        }
}

static void expm_taylor_ld(int n, const double *A, double *E_out) {
    size_t nn = (size_t)n * n;
    long double norm = 0;
    for (int j = 0; j < n; j++) {
        long double s = 0;
        for (int i = 0; i < n; i++) s += fabsl((long double)A[(size_t)i * n + j]);
        if (s > norm) norm = s;
    }
    int s = 0;
    while (norm > 0.25L) { norm /= 2; s++; }
    long double *X = ssm_xmalloc(sizeof(long double) * nn * 4), *T = X + nn, *E = X + 2 * nn, *W = X + 3 * nn;
    for (size_t i = 0; i < nn; i++) { X[i] = ldexpl((long double)A[i], -s); T[i] = E[i] = 0; }
    for (int i = 0; i < n; i++) T[(size_t)i * n + i] = E[(size_t)i * n + i] = 1;
    for (int k = 1; k < 60; k++) {
        matmul_ld(n, T, X, W);
        long double tn = 0, en = 0;
        for (size_t i = 0; i < nn; i++) { T[i] = W[i] / k; E[i] += T[i]; tn += fabsl(T[i]); en += fabsl(E[i]); }
        if (tn < 1e-24L * en) break;
    }
    for (int q = 0; q < s; q++) { matmul_ld(n, E, E, W); memcpy(E, W, sizeof(long double) * nn); }
    for (size_t i = 0; i < nn; i++) E_out[i] = (double)E[i];
    free(X);
}

static double *random_matrix(int n, double norm_target) {
    double *A = ssm_xmalloc(sizeof(double) * (size_t)n * n);
    for (int i = 0; i < n * n; i++) A[i] = test_normal() * norm_target / sqrt((double)n);
    return A;
}

static void test_expm(void) {
    int sizes[] = {1, 2, 5, 16, 33};
    double norms[] = {1e-3, 0.5, 4, 30, 200};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) {
            int n = sizes[a];
            double *A = random_matrix(n, norms[b]), *E = ssm_xmalloc(sizeof(double) * n * n), *R = ssm_xmalloc(sizeof(double) * n * n);
            /* a shift keeps exp(A) from being dominated by a single huge growing mode */
            for (int i = 0; i < n; i++) A[i * n + i] -= norms[b];
            CHECK(expm_pade13(n, A, E) == 0, "expm n=%d", n);
            expm_taylor_ld(n, A, R);
            CHECK_REL_ERR(rel_err_f64(E, R, n * n), 1e-10, "expm random n=%d norm %g", n, norms[b]);
            free(A); free(E); free(R);
        }
    /* exp(0) = I exactly, and a diagonal matrix against exp() of its entries */
    double Z[9] = {0}, EZ[9], D[9] = {-3, 0, 0, 0, 0.25, 0, 0, 0, -40}, ED[9];
    expm_pade13(3, Z, EZ);
    CHECK(EZ[0] == 1 && EZ[4] == 1 && EZ[8] == 1 && EZ[1] == 0 && EZ[3] == 0, "exp(0) = I");
    expm_pade13(3, D, ED);
    CHECK_CLOSE(ED[0], exp(-3.0), 1e-14, "exp diag");
    CHECK_CLOSE(ED[4], exp(0.25), 1e-14, "exp diag");
    CHECK_CLOSE(ED[8], exp(-40.0), 1e-12, "exp diag");
    /* dt A for every HiPPO matrix */
    int Ns[] = {8, 31, 64};
    double dts[] = {1e-4, 1e-2, 1};
    for (int t = 0; t < 4; t++)
        for (int s = 0; s < 3; s++)
            for (int d = 0; d < 3; d++) {
                int N = Ns[s];
                double *A = ssm_xmalloc(sizeof(double) * N * N), *B = ssm_xmalloc(sizeof(double) * N), *P = ssm_xmalloc(sizeof(double) * 2 * N);
                double *E = ssm_xmalloc(sizeof(double) * N * N), *R = ssm_xmalloc(sizeof(double) * N * N);
                hippo_matrices(hippo_kinds[t], N, A, B, P);
                for (int i = 0; i < N * N; i++) A[i] *= dts[d];
                CHECK(expm_pade13(N, A, E) == 0, "expm");
                expm_taylor_ld(N, A, R);
                CHECK_REL_ERR(rel_err_f64(E, R, N * N), 1e-10, "expm(dt A) %s N=%d dt=%g", ssm_init_name(hippo_kinds[t]), N, dts[d]);
                free(A); free(B); free(P); free(E); free(R);
            }
}

/* ---- dense discretizations ------------------------------------------------------------------------ */
static void matvec(int n, const double *A, const double *x, double *y) {
    for (int i = 0; i < n; i++) { double s = 0; for (int k = 0; k < n; k++) s += A[(size_t)i * n + k] * x[k]; y[i] = s; }
}

static void test_dense(void) {
    int Ns[] = {1, 7, 16, 64};
    double dts[] = {1e-4, 3e-3, 0.1, 1};
    for (int t = 0; t < 5; t++)
        for (int s = 0; s < 4; s++)
            for (int d = 0; d < 4; d++) {
                int N = Ns[s];
                double dt = dts[d];
                size_t NN = (size_t)N * N;
                double *A, *B = ssm_xmalloc(sizeof(double) * N), *P = ssm_xmalloc(sizeof(double) * 2 * N);
                const char *name;
                if (t < 4) { A = ssm_xmalloc(sizeof(double) * NN); hippo_matrices(hippo_kinds[t], N, A, B, P); name = ssm_init_name(hippo_kinds[t]); }
                else { A = random_matrix(N, 3); for (int i = 0; i < N; i++) { A[i * N + i] -= 3; B[i] = test_normal(); } name = "random"; }
                double *Abar = ssm_xmalloc(sizeof(double) * NN), *Bbar = ssm_xmalloc(sizeof(double) * N);
                double *lhs = ssm_xmalloc(sizeof(double) * NN), *rhs = ssm_xmalloc(sizeof(double) * NN);
                double *v1 = ssm_xmalloc(sizeof(double) * N), *v2 = ssm_xmalloc(sizeof(double) * N);

                /* ZOH: against exp of the augmented matrix in long double Taylor */
                CHECK(discretize_dense(SSM_METHOD_ZOH, N, dt, A, B, Abar, Bbar) == 0, "zoh");
                int N1 = N + 1;
                double *Z = ssm_xcalloc((size_t)N1 * N1, sizeof(double)), *EZ = ssm_xmalloc(sizeof(double) * N1 * N1);
                for (int i = 0; i < N; i++) { for (int j = 0; j < N; j++) Z[i * N1 + j] = dt * A[i * N + j]; Z[i * N1 + N] = dt * B[i]; }
                expm_taylor_ld(N1, Z, EZ);
                for (int i = 0; i < N; i++) { for (int j = 0; j < N; j++) rhs[i * N + j] = EZ[i * N1 + j]; v1[i] = EZ[i * N1 + N]; }
                CHECK_REL_ERR(rel_err_f64(Abar, rhs, (long)NN), 1e-10, "zoh Abar %s N=%d dt=%g", name, N, dt);
                CHECK_REL_ERR(rel_err_f64(Bbar, v1, N), 1e-10, "zoh Bbar %s N=%d dt=%g", name, N, dt);
                /* and the reference formula Bbar = A^{-1}(Abar - I) B as A Bbar = (Abar - I) B (LegS: A invertible) */
                if (t == 0) {
                    matvec(N, A, Bbar, v1);
                    for (int i = 0; i < N; i++) Abar[i * N + i] -= 1;
                    matvec(N, Abar, B, v2);
                    CHECK_REL_ERR(rel_err_f64(v1, v2, N), 1e-9, "zoh A Bbar = (Abar - I) B, legs N=%d dt=%g", N, dt);
                }
                free(Z); free(EZ);

                /* bilinear: (I - dt/2 A) Abar = I + dt/2 A,  (I - dt/2 A) Bbar = dt B */
                CHECK(discretize_dense(SSM_METHOD_BILINEAR, N, dt, A, B, Abar, Bbar) == 0, "bilinear");
                double *Mx = ssm_xmalloc(sizeof(double) * NN);
                for (size_t i = 0; i < NN; i++) { Mx[i] = -dt / 2 * A[i]; rhs[i] = dt / 2 * A[i]; }
                for (int i = 0; i < N; i++) { Mx[i * N + i] += 1; rhs[i * N + i] += 1; }
                matmul_real(N, Mx, Abar, lhs);
                CHECK_REL_ERR(rel_err_f64(lhs, rhs, (long)NN), 1e-12, "bilinear Abar identity %s N=%d dt=%g", name, N, dt);
                matvec(N, Mx, Bbar, v1);
                for (int i = 0; i < N; i++) v2[i] = dt * B[i];
                CHECK_REL_ERR(rel_err_f64(v1, v2, N), 1e-12, "bilinear Bbar identity %s N=%d dt=%g", name, N, dt);
                /* Cayley: (I - dt/2 A)(Abar + I) = 2 I */
                for (int i = 0; i < N; i++) Abar[i * N + i] += 1;
                matmul_real(N, Mx, Abar, lhs);
                memset(rhs, 0, sizeof(double) * NN);
                for (int i = 0; i < N; i++) rhs[i * N + i] = 2;
                CHECK_REL_ERR(rel_err_f64(lhs, rhs, (long)NN), 1e-12, "bilinear Cayley identity %s N=%d dt=%g", name, N, dt);

                /* backward Euler: (I - dt A) Abar = I, Bbar = Abar dt B; forward Euler exact */
                CHECK(discretize_dense(SSM_METHOD_BACKWARD_EULER, N, dt, A, B, Abar, Bbar) == 0, "backward euler");
                for (size_t i = 0; i < NN; i++) Mx[i] = -dt * A[i];
                for (int i = 0; i < N; i++) Mx[i * N + i] += 1;
                matmul_real(N, Mx, Abar, lhs);
                memset(rhs, 0, sizeof(double) * NN);
                for (int i = 0; i < N; i++) rhs[i * N + i] = 1;
                CHECK_REL_ERR(rel_err_f64(lhs, rhs, (long)NN), 1e-12, "backward euler identity %s N=%d dt=%g", name, N, dt);
                for (int i = 0; i < N; i++) v2[i] = dt * B[i];
                matvec(N, Abar, v2, v1);
                CHECK_REL_ERR(rel_err_f64(Bbar, v1, N), 1e-12, "backward euler Bbar %s N=%d dt=%g", name, N, dt);
                CHECK(discretize_dense(SSM_METHOD_EULER, N, dt, A, B, Abar, Bbar) == 0, "euler");
                int bad = 0;
                for (int i = 0; i < N; i++) {
                    if (Bbar[i] != dt * B[i]) bad++;
                    for (int j = 0; j < N; j++) if (Abar[i * N + j] != (i == j) + dt * A[i * N + j]) bad++;
                }
                CHECK(bad == 0, "euler exact %s N=%d", name, N);
                free(A); free(B); free(P); free(Abar); free(Bbar); free(lhs); free(rhs); free(v1); free(v2); free(Mx);
            }
}

/* ---- diagonal forms -------------------------------------------------------------------------------- */
static void test_diag_closed_forms(void) {
    enum { M = 9 };
    cplx A[M], B[M], Abar[M], Bbar[M];
    double dts[] = {1e-4, 0.01, 0.3, 1};
    for (int m = 0; m < M; m++) { A[m] = -exp(test_normal()) + I * 10 * test_normal(); B[m] = test_normal() + I * test_normal(); }
    A[0] = 0;                  /* phi1(0) = 1: Bbar = dt B */
    A[1] = -1e-13 + 1e-12 * I; /* tiny |dt A|: no cancellation */
    for (int d = 0; d < 4; d++) {
        double dt = dts[d];
        for (int meth = 0; meth < SSM_METHOD_COUNT; meth++) {
            discretize_diag_complex(meth, M, dt, (double *)A, (double *)B, (double *)Abar, (double *)Bbar);
            double ea = 0, eb = 0;
            for (int m = 0; m < M; m++) {
                long double complex z = (long double)dt * (long double complex)A[m], ra, rb;
                long double complex b = B[m];
                switch (meth) {
                case SSM_METHOD_ZOH:
                    ra = cexpl(z);
                    /* (exp(dt A) - 1)/A B, with the series where |z| is tiny (long double has room) */
                    rb = cabsl(z) < 1e-6L ? (long double)dt * (1 + z / 2 + z * z / 6) * b : (ra - 1) / (long double complex)A[m] * b;
                    break;
                case SSM_METHOD_BILINEAR: ra = (1 + z / 2) / (1 - z / 2); rb = (long double)dt * b / (1 - z / 2); break;
                case SSM_METHOD_EULER: ra = 1 + z; rb = (long double)dt * b; break;
                default: ra = 1 / (1 - z); rb = ra * (long double)dt * b; break;
                }
                ea = fmax(ea, (double)(cabsl((long double complex)Abar[m] - ra) / cabsl(ra)));
                eb = fmax(eb, (double)(cabsl((long double complex)Bbar[m] - rb) / cabsl(rb)));
            }
            CHECK_REL_ERR(ea, 1e-14, "diag complex %s Abar dt=%g", ssm_method_name(meth), dt);
            CHECK_REL_ERR(eb, 1e-14, "diag complex %s Bbar dt=%g", ssm_method_name(meth), dt);
            /* real diagonal: the real parts of the same formulas with real A */
            double Ar[M], Br[M], Abr[M], Bbr[M];
            for (int m = 0; m < M; m++) { Ar[m] = creal(A[m]); Br[m] = creal(B[m]); }
            discretize_diag_real(meth, M, dt, Ar, Br, Abr, Bbr);
            ea = eb = 0;
            for (int m = 0; m < M; m++) {
                long double z = (long double)dt * Ar[m], ra, rb;
                switch (meth) {
                case SSM_METHOD_ZOH: ra = expl(z); rb = fabsl(z) < 1e-6L ? (long double)dt * (1 + z / 2 + z * z / 6) * Br[m] : expm1l(z) / Ar[m] * Br[m]; break;
                case SSM_METHOD_BILINEAR: ra = (1 + z / 2) / (1 - z / 2); rb = (long double)dt * Br[m] / (1 - z / 2); break;
                case SSM_METHOD_EULER: ra = 1 + z; rb = (long double)dt * Br[m]; break;
                default: ra = 1 / (1 - z); rb = ra * (long double)dt * Br[m]; break;
                }
                ea = fmax(ea, (double)(fabsl(Abr[m] - ra) / fabsl(ra)));
                eb = fmax(eb, (double)(fabsl(Bbr[m] - rb) / fabsl(rb)));
            }
            CHECK_REL_ERR(ea, 1e-14, "diag real %s Abar dt=%g", ssm_method_name(meth), dt);
            CHECK_REL_ERR(eb, 1e-14, "diag real %s Bbar dt=%g", ssm_method_name(meth), dt);
        }
    }
}

/* Complex modes z' = a z + b u, y = 2 Re(c z) as real 2x2 blocks on (Re z, Im z):
 * A = [[Re a, -Im a], [Im a, Re a]], B = (Re b, Im b), C = (2 Re c, -2 Im c).  Discretizing
 * either way must give the same kernel K_l = 2 Re(sum c Abar^l Bbar) = C_r Abar_r^l Bbar_r. */
static void test_diag_vs_dense(void) {
    int Ms[] = {1, 3, 8};
    for (int s = 0; s < 3; s++)
        for (int meth = 0; meth < SSM_METHOD_COUNT; meth++) {
            int M = Ms[s], N = 2 * M, L = 50;
            double dt = 0.05 + 0.2 * test_uniform();
            cplx *a = ssm_xmalloc(sizeof(cplx) * M), *b = ssm_xmalloc(sizeof(cplx) * M), *c = ssm_xmalloc(sizeof(cplx) * M);
            cplx *ab = ssm_xmalloc(sizeof(cplx) * M), *bb = ssm_xmalloc(sizeof(cplx) * M);
            double *A = ssm_xcalloc((size_t)N * N, sizeof(double)), *B = ssm_xmalloc(sizeof(double) * N), *C = ssm_xmalloc(sizeof(double) * N);
            double *Ab = ssm_xmalloc(sizeof(double) * N * N), *Bb = ssm_xmalloc(sizeof(double) * N), *x = ssm_xmalloc(sizeof(double) * N), *y = ssm_xmalloc(sizeof(double) * N);
            double *K1 = ssm_xmalloc(sizeof(double) * L), *K2 = ssm_xmalloc(sizeof(double) * L);
            for (int m = 0; m < M; m++) {
                a[m] = -0.5 * exp(test_normal()) + I * 5 * test_normal();
                b[m] = test_normal() + I * test_normal();
                c[m] = test_normal() + I * test_normal();
                A[(2 * m) * N + 2 * m] = creal(a[m]); A[(2 * m) * N + 2 * m + 1] = -cimag(a[m]);
                A[(2 * m + 1) * N + 2 * m] = cimag(a[m]); A[(2 * m + 1) * N + 2 * m + 1] = creal(a[m]);
                B[2 * m] = creal(b[m]); B[2 * m + 1] = cimag(b[m]);
                C[2 * m] = 2 * creal(c[m]); C[2 * m + 1] = -2 * cimag(c[m]);
            }
            discretize_diag_complex(meth, M, dt, (double *)a, (double *)b, (double *)ab, (double *)bb);
            CHECK(discretize_dense(meth, N, dt, A, B, Ab, Bb) == 0, "dense");
            memcpy(x, Bb, sizeof(double) * N);
            for (int l = 0; l < L; l++) {
                cplx k = 0;
                for (int m = 0; m < M; m++) k += c[m] * cpow(ab[m], l) * bb[m];
                K1[l] = 2 * creal(k);
                double s2 = 0;
                for (int i = 0; i < N; i++) s2 += C[i] * x[i];
                K2[l] = s2;
                matvec(N, Ab, x, y);
                memcpy(x, y, sizeof(double) * N);
            }
            CHECK_REL_ERR(rel_err_f64(K1, K2, L), 1e-12, "diag complex vs dense 2x2 blocks, %s M=%d", ssm_method_name(meth), M);
            free(a); free(b); free(c); free(ab); free(bb); free(A); free(B); free(C); free(Ab); free(Bb); free(x); free(y); free(K1); free(K2);
        }
}

/* ---- stability: |eig(Abar)| <= 1 for zoh and bilinear, every HiPPO / S4D init, dt in [1e-4, 1] ---- */
static double spectral_radius(int n, const double *A) {
    double *a = ssm_xmalloc(sizeof(double) * (size_t)n * n), *wr = ssm_xmalloc(sizeof(double) * n), *wi = ssm_xmalloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) a[(size_t)j * n + i] = A[(size_t)i * n + j];
    int lwork = 8 * n + 64, info, one = 1;
    double *work = ssm_xmalloc(sizeof(double) * lwork), dummy, rho = 0;
    dgeev_("N", "N", &n, a, &n, wr, wi, &dummy, &one, &dummy, &one, work, &lwork, &info, 1, 1);
    CHECK(info == 0, "dgeev");
    for (int i = 0; i < n; i++) rho = fmax(rho, hypot(wr[i], wi[i]));
    free(a); free(wr); free(wi); free(work);
    return rho;
}

static void test_stability(void) {
    const int nd = 9;
    int Ns[] = {16, 31, 64};
    for (int meth = 0; meth < 2; meth++)   /* zoh, bilinear */
        for (int k = 0; k < nd; k++) {
            double dt = pow(10.0, -4 + 4.0 * k / (nd - 1));
            for (int t = 0; t < 4; t++)
                for (int s = 0; s < 3; s++) {
                    int N = Ns[s];
                    double *A = ssm_xmalloc(sizeof(double) * N * N), *B = ssm_xmalloc(sizeof(double) * N), *P = ssm_xmalloc(sizeof(double) * 2 * N);
                    double *Ab = ssm_xmalloc(sizeof(double) * N * N), *Bb = ssm_xmalloc(sizeof(double) * N);
                    hippo_matrices(hippo_kinds[t], N, A, B, P);
                    discretize_dense(meth, N, dt, A, B, Ab, Bb);
                    double rho = spectral_radius(N, Ab);
                    CHECK(rho <= 1 + 1e-10, "%s %s N=%d dt=%g: max |eig(Abar)| = %.17g", ssm_init_name(hippo_kinds[t]), ssm_method_name(meth), N, dt, rho);
                    free(A); free(B); free(P); free(Ab); free(Bb);
                }
            /* diagonal inits, N = 64 (M = 32) */
            int N = 64, M = 32;
            cplx A[64], B[64], Ab[64], Bb[64];
            double Ar[64], Br[64], Abr[64], Bbr[64];
            for (int i = 0; i < 64; i++) { B[i] = 1; Br[i] = 1; }
            for (int v = 0; v < 4; v++) {
                if (v == 0) s4d_lin_A(N, (double *)A);
                if (v == 1) s4d_inv_A(N, (double *)A);
                if (v < 2) {
                    discretize_diag_complex(meth, M, dt, (double *)A, (double *)B, (double *)Ab, (double *)Bb);
                    double rho = 0;
                    for (int m = 0; m < M; m++) rho = fmax(rho, cabs(Ab[m]));
                    CHECK(rho <= 1, "s4d %d %s dt=%g: %.17g", v, ssm_method_name(meth), dt, rho);
                } else {
                    if (v == 2) s4d_real_A(N, Ar);
                    else { mamba_A_log(N, Ar); for (int n = 0; n < N; n++) Ar[n] = -exp(Ar[n]); }
                    discretize_diag_real(meth, N, dt, Ar, Br, Abr, Bbr);
                    double rho = 0;
                    for (int n = 0; n < N; n++) rho = fmax(rho, fabs(Abr[n]));
                    CHECK(rho <= 1, "real diag %d %s dt=%g: %.17g", v, ssm_method_name(meth), dt, rho);
                }
            }
        }
    /* s4d-legs is the diagonal of the legs DPLR form: Re Lambda = -1/2, so stable too (checked in
     * test_hippo).  Forward Euler is not: legs at dt = 1 has |1 + dt lambda| = N - 1 > 1. */
    double A[64], B[8], P[8], Ab[64], Bb[8];
    hippo_matrices(SSM_INIT_LEGS, 8, A, B, P);
    discretize_dense(SSM_METHOD_EULER, 8, 1.0, A, B, Ab, Bb);
    CHECK(spectral_radius(8, Ab) > 1, "forward euler unstable at dt = 1 (a check that can fail)");
}

/* ---- dplr vs dense: the same system, hence the same kernel --------------------------------------- */
static void test_dplr_same_kernel(void) {
    int Ns[] = {8, 64};
    for (int t = 0; t < 4; t++)
        for (int s = 0; s < 2; s++) {
            int kind = hippo_kinds[t], N = Ns[s], M = N / 2, L = 300;
            size_t NN = (size_t)N * N;
            double dt = 0.01 + 0.1 * test_uniform();
            double *A = ssm_xmalloc(sizeof(double) * NN), *B = ssm_xmalloc(sizeof(double) * N), *P = ssm_xmalloc(sizeof(double) * 2 * N);
            double *C = ssm_xmalloc(sizeof(double) * N);
            int r = hippo_matrices(kind, N, A, B, P);
            for (int n = 0; n < N; n++) C[n] = test_normal();
            /* dense kernel, bilinear */
            double *Ab = ssm_xmalloc(sizeof(double) * NN), *Bb = ssm_xmalloc(sizeof(double) * N), *x = ssm_xmalloc(sizeof(double) * N), *y = ssm_xmalloc(sizeof(double) * N);
            double *K1 = ssm_xmalloc(sizeof(double) * L), *K2 = ssm_xmalloc(sizeof(double) * L);
            discretize_dense(SSM_METHOD_BILINEAR, N, dt, A, B, Ab, Bb);
            memcpy(x, Bb, sizeof(double) * N);
            for (int l = 0; l < L; l++) {
                double k = 0;
                for (int n = 0; n < N; n++) k += C[n] * x[n];
                K1[l] = k;
                matvec(N, Ab, x, y);
                memcpy(x, y, sizeof(double) * N);
            }
            /* dplr: Lambda, Ph, Bh, Ch as ssm-discretize writes them; full system by conjugate extension */
            cplx *Lambda = ssm_xmalloc(sizeof(cplx) * M), *Vh = ssm_xmalloc(sizeof(cplx) * N * M), *Ph = ssm_xmalloc(sizeof(cplx) * 2 * M);
            cplx *Bh = ssm_xmalloc(sizeof(cplx) * M), *Ch = ssm_xmalloc(sizeof(cplx) * M);
            char err[256];
            CHECK(nplr_decompose(N, r, A, P, (double *)Lambda, (double *)Vh, NULL, err, sizeof err) == 0, "%s", err);
            for (int k = 0; k < r; k++) nplr_project_column(N, M, (double *)Vh, P + k * N, (double *)(Ph + k * M));
            nplr_project_column(N, M, (double *)Vh, B, (double *)Bh);
            nplr_project_row(N, M, (double *)Vh, C, (double *)Ch);
            cplx *Af = ssm_xmalloc(sizeof(cplx) * NN), *Abf = ssm_xmalloc(sizeof(cplx) * NN), *Bf = ssm_xmalloc(sizeof(cplx) * N);
            cplx *Bbf = ssm_xmalloc(sizeof(cplx) * N), *Cf = ssm_xmalloc(sizeof(cplx) * N), *xc = ssm_xmalloc(sizeof(cplx) * N), *yc = ssm_xmalloc(sizeof(cplx) * N);
            dplr_full_matrix(M, r, (double *)Lambda, (double *)Ph, (double *)Af);
            dplr_full_vector(M, (double *)Bh, (double *)Bf);
            dplr_full_vector(M, (double *)Ch, (double *)Cf);
            for (int m = M; m < N; m++) Cf[m] = conj(Ch[m - M]);   /* row vector: [Ch, conj Ch] (same thing) */
            CHECK(discretize_dense_complex(SSM_METHOD_BILINEAR, N, dt, (double *)Af, (double *)Bf, (double *)Abf, (double *)Bbf) == 0, "complex bilinear");
            memcpy(xc, Bbf, sizeof(cplx) * N);
            double imag_max = 0;
            for (int l = 0; l < L; l++) {
                cplx k = 0;
                for (int n = 0; n < N; n++) k += Cf[n] * xc[n];
                K2[l] = creal(k);
                imag_max = fmax(imag_max, fabs(cimag(k)));
                for (int i = 0; i < N; i++) { cplx s2 = 0; for (int j = 0; j < N; j++) s2 += Abf[(size_t)i * N + j] * xc[j]; yc[i] = s2; }
                memcpy(xc, yc, sizeof(cplx) * N);
            }
            double kn = 0;
            for (int l = 0; l < L; l++) kn = fmax(kn, fabs(K1[l]));
            CHECK_REL_ERR(rel_err_f64(K2, K1, L), 1e-10, "dplr vs dense kernel %s N=%d dt=%g", ssm_init_name(kind), N, dt);
            CHECK(imag_max <= 1e-10 * kn, "dplr kernel is real: %s N=%d imag %.3g", ssm_init_name(kind), N, imag_max);
            free(A); free(B); free(P); free(C); free(Ab); free(Bb); free(x); free(y); free(K1); free(K2);
            free(Lambda); free(Vh); free(Ph); free(Bh); free(Ch); free(Af); free(Abf); free(Bf); free(Bbf); free(Cf); free(xc); free(yc);
        }
}

int main(void) {
    test_seed_from_env("test_discretize");
    test_expm();
    test_dense();
    test_diag_closed_forms();
    test_diag_vs_dense();
    test_stability();
    test_dplr_same_kernel();
    return check_summary("test_discretize");
}
