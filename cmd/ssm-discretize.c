/* ssm-discretize - the parameters of H SSMs of state size N, continuous and discretized, as a tensor
 * stream: from a named initialization (--init) or from (A, B, C, D, dt) read on the input stream.
 * Only argument handling and wiring live here; the math is in libcommon/{hippo,nplr,discretize}.c.
 * Tensor names, shapes and the conjugate-pair convention: man/ssm-discretize.1 (TENSORS). */
#include <complex.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "discretize.h"
#include "hippo.h"
#include "lapack_decl.h"
#include "nplr.h"

typedef double complex cplx;

static const char *usage =
    "Usage: ssm-discretize --init NAME [OPTIONS]          (generate)\n"
    "       ssm-discretize [OPTIONS] [FILE...]           (re-discretize A, B, C, D, dt read from a stream)\n"
    "Parameters of H independent SSMs of state size N, continuous and discretized (see ssm-discretize(1)).\n"
    "\n"
    "  -i, --init NAME     legs, legt, lagt, fout (HiPPO); s4d-lin, s4d-inv, s4d-real, s4d-legs,\n"
    "                      mamba; random (Gaussian)\n"
    "  -N, --state N       state size (default 64; even where conjugate pairs are needed)\n"
    "  -H, --channels H    number of independent channels (default 1)\n"
    "  -f, --form FORM     dense | diag | dplr (default: dense for HiPPO and random, diag for s4d-*/mamba;\n"
    "                      input mode: the form of the input)\n"
    "  -m, --method M      zoh | bilinear | euler | backward-euler (default zoh; dplr: bilinear only)\n"
    "      --dt X          step size for every channel\n"
    "      --dt-min X      log-uniform dt per channel in [dt-min, dt-max] (defaults 0.001, 0.1)\n"
    "      --dt-max X\n"
    "      --rate R        multiply every dt by R (resolution change: R = 2 for half the sample rate)\n"
    "  -s, --seed S        seed of the random draws (C, D, dt, random A and B; default 0)\n"
    "      --dtype T       f32 | f64 (complex tensors c64 | c128; default f32)\n"
    "      --check         print the NPLR reconstruction error, max |eig(Abar)| and condition numbers\n"
    "                      to stderr\n"
    "\n"
    "Common options:\n"
    "  -o, --output FILE   write the stream to FILE (default stdout; '-' is stdout)\n"
    "      --level N       compression level 0 (stored) .. 9 (default 1)\n"
    "      --threads N     threads for compression (default: all cores)\n"
    "  -q, --quiet         no warnings;  -v, --verbose  more messages\n"
    "  -h, --help          this text;    --version     the version\n"
    "FILE '-' or no FILE reads stdin.  Exit status: 0 ok, 1 data error, 2 usage error.\n";

enum { FORM_DENSE = 0, FORM_DIAG, FORM_DPLR, FORM_COUNT };
static const char *const form_names[FORM_COUNT] = {"dense", "diag", "dplr"};

typedef struct {
    int init;                 /* ssm_init_kind, or -1 in input mode */
    const char *init_name;    /* attribute value */
    int form, method;         /* -1 = not given */
    int N;
    int64_t H;
    uint64_t seed;
    double dt, dt_min, dt_max, rate;
    int have_dt, have_dt_range;
    int dtype;                /* SSM_F32 or SSM_F64 */
    int have_dtype;
    int check;
} options;

/* One SSM per channel, all in double.  Which arrays are set depends on the form:
 *   dense:        A (H,N,N), B (H,N), C (H,N), Abar (H,N,N), Bbar (H,N)      real
 *   diag complex: A, B, C, Abar, Bbar (H,M) complex (interleaved)
 *   diag real:    A, B, C, Abar, Bbar (H,N) real; A_log (H,N) for mamba
 *   dplr:         Lambda (H,M), P (H,r,M), B (H,M), C (H,M) complex; no Abar/Bbar
 *   always        D (H), dt (H). */
typedef struct {
    int form, is_complex, N, M, r;
    int64_t H;
    double *A, *B, *C, *Abar, *Bbar, *Lambda, *P, *A_log, *D, *dt;
    double nplr_err;          /* NPLR reconstruction error, or -1 when not computed */
    double *dense_A;          /* for --check on dplr generated from a HiPPO matrix: A (N,N) */
} ssm_system;

/* ---- generation from a named init ----------------------------------------------------------- */

static int default_form(int init) {
    if (ssm_init_is_hippo(init) || init == SSM_INIT_RANDOM) return FORM_DENSE;
    return FORM_DIAG;
}

static int form_allowed(int init, int form) {
    if (ssm_init_is_hippo(init)) return form == FORM_DENSE || form == FORM_DPLR;
    if (init == SSM_INIT_RANDOM) return form == FORM_DENSE || form == FORM_DIAG;
    return form == FORM_DIAG;
}

static int init_is_complex_diag(int init) {
    return init == SSM_INIT_S4D_LIN || init == SSM_INIT_S4D_INV || init == SSM_INIT_S4D_LEGS;
}

/* A HiPPO matrix in its DPLR form: A (N, N), B (N), P (r, N), Lambda (M), Vh (N, M) (see nplr.h).
 * Dies on failure. */
static void hippo_dplr(int kind, int N, double *A, double *Bv, double *P, double *Lambda, double *Vh, double *err_out) {
    char err[512];
    int r = hippo_matrices(kind, N, A, Bv, P);
    if (nplr_decompose(N, r, A, P, Lambda, Vh, err_out, err, sizeof err) < 0)
        ssm_die("--init %s: NPLR decomposition: %s", ssm_init_name(kind), err);
}

static void generate(const options *o, ssm_system *s) {
    const int N = o->N, M = N / 2;
    const int64_t H = o->H;
    const size_t NN = (size_t)N * (size_t)N;
    s->form = o->form;
    s->N = N;
    s->M = M;
    s->H = H;
    s->r = 0;
    s->nplr_err = -1;
    s->D = ssm_xmalloc(sizeof(double) * (size_t)H);
    if (o->init == SSM_INIT_MAMBA) for (int64_t h = 0; h < H; h++) s->D[h] = 1.0;
    else ssm_draw_normal(o->seed, SSM_RNG_D, H, 1.0, s->D);

    if (s->form == FORM_DENSE) {
        s->A = ssm_xmalloc(sizeof(double) * NN * (size_t)H);
        s->B = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
        s->C = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
        if (ssm_init_is_hippo(o->init)) {
            double *P = ssm_xmalloc(sizeof(double) * 2 * (size_t)N);
            hippo_matrices(o->init, N, s->A, s->B, P);
            free(P);
            for (int64_t h = 1; h < H; h++) {
                memcpy(s->A + (size_t)h * NN, s->A, sizeof(double) * NN);
                memcpy(s->B + (size_t)h * N, s->B, sizeof(double) * (size_t)N);
            }
        } else { /* random: A = G / sqrt(N) - I, B Gaussian */
            ssm_draw_normal(o->seed, SSM_RNG_A, (int64_t)NN * H, 1.0 / N, s->A);
            for (int64_t h = 0; h < H; h++)
                for (int n = 0; n < N; n++) s->A[(size_t)h * NN + (size_t)n * N + n] -= 1.0;
            ssm_draw_normal(o->seed, SSM_RNG_B, (int64_t)N * H, 1.0, s->B);
        }
        ssm_draw_normal(o->seed, SSM_RNG_C, (int64_t)N * H, 1.0, s->C);
        return;
    }

    if (s->form == FORM_DPLR || o->init == SSM_INIT_S4D_LEGS) {
        int kind = o->init == SSM_INIT_S4D_LEGS ? SSM_INIT_LEGS : o->init;
        int r = hippo_rank(kind);
        double *A = ssm_xmalloc(sizeof(double) * NN), *Bv = ssm_xmalloc(sizeof(double) * (size_t)N);
        double *P = ssm_xmalloc(sizeof(double) * (size_t)r * (size_t)N);
        double *Lambda = ssm_xmalloc(sizeof(double) * 2 * (size_t)M), *Vh = ssm_xmalloc(sizeof(double) * 2 * (size_t)N * (size_t)M);
        hippo_dplr(kind, N, A, Bv, P, Lambda, Vh, o->check ? &s->nplr_err : NULL);   /* O(N^3): only for --check */
        /* C: the same real draw as the dense form, moved into the eigenbasis: C <- C Vh. */
        double *Creal = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
        ssm_draw_normal(o->seed, SSM_RNG_C, (int64_t)N * H, 1.0, Creal);
        double *Bh = ssm_xmalloc(sizeof(double) * 2 * (size_t)M);
        nplr_project_column(N, M, Vh, Bv, Bh);
        s->B = ssm_xmalloc(sizeof(double) * 2 * (size_t)M * (size_t)H);
        s->C = ssm_xmalloc(sizeof(double) * 2 * (size_t)M * (size_t)H);
        double *diagA = ssm_xmalloc(sizeof(double) * 2 * (size_t)M * (size_t)H);
        for (int64_t h = 0; h < H; h++) {
            memcpy(diagA + (size_t)h * 2 * M, Lambda, sizeof(double) * 2 * (size_t)M);
            memcpy(s->B + (size_t)h * 2 * M, Bh, sizeof(double) * 2 * (size_t)M);
            nplr_project_row(N, M, Vh, Creal + (size_t)h * N, s->C + (size_t)h * 2 * M);
        }
        s->is_complex = 1;
        if (s->form == FORM_DPLR) {
            s->r = r;
            s->Lambda = diagA;
            s->P = ssm_xmalloc(sizeof(double) * 2 * (size_t)r * (size_t)M * (size_t)H);
            for (int k = 0; k < r; k++) nplr_project_column(N, M, Vh, P + (size_t)k * N, s->P + (size_t)k * 2 * M);
            for (int64_t h = 1; h < H; h++) memcpy(s->P + (size_t)h * 2 * r * M, s->P, sizeof(double) * 2 * (size_t)r * (size_t)M);
            s->dense_A = A;
            A = NULL;
        } else {
            s->A = diagA;
        }
        free(A); free(Bv); free(P); free(Lambda); free(Vh); free(Creal); free(Bh);
        return;
    }

    /* diagonal inits */
    if (init_is_complex_diag(o->init)) {
        s->is_complex = 1;
        s->A = ssm_xmalloc(sizeof(double) * 2 * (size_t)M * (size_t)H);
        s->B = ssm_xmalloc(sizeof(double) * 2 * (size_t)M * (size_t)H);
        s->C = ssm_xmalloc(sizeof(double) * 2 * (size_t)M * (size_t)H);
        if (o->init == SSM_INIT_S4D_LIN) s4d_lin_A(N, s->A);
        else s4d_inv_A(N, s->A);
        for (int64_t h = 1; h < H; h++) memcpy(s->A + (size_t)h * 2 * M, s->A, sizeof(double) * 2 * (size_t)M);
        for (int64_t i = 0; i < (int64_t)M * H; i++) { s->B[2 * i] = 1.0; s->B[2 * i + 1] = 0.0; }
        ssm_draw_complex_normal(o->seed, SSM_RNG_C, (int64_t)M * H, 1.0, s->C);
        return;
    }
    s->is_complex = 0;
    s->A = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
    s->B = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
    s->C = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
    if (o->init == SSM_INIT_RANDOM) { /* A_n = -exp(g), g standard normal; B Gaussian */
        ssm_draw_normal(o->seed, SSM_RNG_A, (int64_t)N * H, 1.0, s->A);
        for (int64_t i = 0; i < (int64_t)N * H; i++) s->A[i] = -exp(s->A[i]);
        ssm_draw_normal(o->seed, SSM_RNG_B, (int64_t)N * H, 1.0, s->B);
    } else {
        if (o->init == SSM_INIT_MAMBA) {
            s->A_log = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
            mamba_A_log(N, s->A_log);
            for (int n = 0; n < N; n++) s->A[n] = -exp(s->A_log[n]);
            for (int64_t h = 1; h < H; h++) memcpy(s->A_log + (size_t)h * N, s->A_log, sizeof(double) * (size_t)N);
        } else {
            s4d_real_A(N, s->A);
        }
        for (int64_t h = 1; h < H; h++) memcpy(s->A + (size_t)h * N, s->A, sizeof(double) * (size_t)N);
        for (int64_t i = 0; i < (int64_t)N * H; i++) s->B[i] = 1.0;
    }
    ssm_draw_normal(o->seed, SSM_RNG_C, (int64_t)N * H, 1.0, s->C);
}

/* ---- discretization of every channel -------------------------------------------------------- */

static void discretize_all(const options *o, ssm_system *s) {
    const int N = s->N, M = s->M;
    const int64_t H = s->H;
    const size_t NN = (size_t)N * (size_t)N;
    if (s->form == FORM_DPLR) return;   /* bilinear inside ssm-kernel's Cauchy algorithm */
    if (s->form == FORM_DENSE) {
        s->Abar = ssm_xmalloc(sizeof(double) * NN * (size_t)H);
        s->Bbar = ssm_xmalloc(sizeof(double) * (size_t)N * (size_t)H);
        for (int64_t h = 0; h < H; h++)
            if (discretize_dense(o->method, N, s->dt[h], s->A + (size_t)h * NN, s->B + (size_t)h * N,
                                 s->Abar + (size_t)h * NN, s->Bbar + (size_t)h * N) < 0)
                ssm_die("channel %lld: --method %s at dt %g: singular linear system", (long long)h,
                        ssm_method_name(o->method), s->dt[h]);
        return;
    }
    int64_t n = s->is_complex ? M : N;
    size_t w = s->is_complex ? 2 : 1;
    s->Abar = ssm_xmalloc(sizeof(double) * w * (size_t)n * (size_t)H);
    s->Bbar = ssm_xmalloc(sizeof(double) * w * (size_t)n * (size_t)H);
    for (int64_t h = 0; h < H; h++) {
        size_t off = w * (size_t)n * (size_t)h;
        if (s->is_complex) discretize_diag_complex(o->method, n, s->dt[h], s->A + off, s->B + off, s->Abar + off, s->Bbar + off);
        else discretize_diag_real(o->method, n, s->dt[h], s->A + off, s->B + off, s->Abar + off, s->Bbar + off);
    }
}

/* ---- --check: stability margin, NPLR error, condition numbers ---------------------------------- */

/* Eigenvalues of a real (n, n) row-major matrix into wr, wi; 0 / -1. */
static int eig_real(int n, const double *Am, double *wr, double *wi) {
    double *a = ssm_xmalloc(sizeof(double) * (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) a[(size_t)j * n + i] = Am[(size_t)i * n + j];
    int lwork = -1, info = 0, one = 1;
    double q, dummy;
    dgeev_("N", "N", &n, a, &n, wr, wi, &dummy, &one, &dummy, &one, &q, &lwork, &info, 1, 1);
    lwork = (int)q;
    if (lwork < 4 * n) lwork = 4 * n;
    double *work = ssm_xmalloc(sizeof(double) * (size_t)lwork);
    dgeev_("N", "N", &n, a, &n, wr, wi, &dummy, &one, &dummy, &one, work, &lwork, &info, 1, 1);
    free(work);
    free(a);
    return info == 0 ? 0 : -1;
}

/* 2-norm condition number of a real (n, n) matrix (singular values, dgesvd); inf if singular. */
static double cond2_real(int n, const double *Am) {
    double *a = ssm_xmalloc(sizeof(double) * (size_t)n * (size_t)n), *sv = ssm_xmalloc(sizeof(double) * (size_t)n);
    memcpy(a, Am, sizeof(double) * (size_t)n * (size_t)n);   /* the transpose has the same singular values */
    int lwork = -1, info = 0, one = 1;
    double q, dummy;
    dgesvd_("N", "N", &n, &n, a, &n, sv, &dummy, &one, &dummy, &one, &q, &lwork, &info, 1, 1);
    lwork = (int)q;
    if (lwork < 5 * n) lwork = 5 * n;
    double *work = ssm_xmalloc(sizeof(double) * (size_t)lwork);
    dgesvd_("N", "N", &n, &n, a, &n, sv, &dummy, &one, &dummy, &one, work, &lwork, &info, 1, 1);
    double c = info == 0 && sv[n - 1] > 0 ? sv[0] / sv[n - 1] : INFINITY;
    free(work); free(a); free(sv);
    return c;
}

/* Condition number of the eigenvector matrix of a real (n, n) A (columns normalized). */
static double eigvec_cond_real(int n, const double *Am) {
    double *a = ssm_xmalloc(sizeof(double) * (size_t)n * (size_t)n);
    double *vr = ssm_xmalloc(sizeof(double) * (size_t)n * (size_t)n);
    double *wr = ssm_xmalloc(sizeof(double) * (size_t)n), *wi = ssm_xmalloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) a[(size_t)j * n + i] = Am[(size_t)i * n + j];
    int lwork = -1, info = 0, one = 1;
    double q, dummy;
    dgeev_("N", "V", &n, a, &n, wr, wi, &dummy, &one, vr, &n, &q, &lwork, &info, 1, 1);
    lwork = (int)q;
    if (lwork < 4 * n) lwork = 4 * n;
    double *work = ssm_xmalloc(sizeof(double) * (size_t)lwork);
    dgeev_("N", "V", &n, a, &n, wr, wi, &dummy, &one, vr, &n, work, &lwork, &info, 1, 1);
    double c = INFINITY;
    if (info == 0) {
        /* dgeev returns a complex pair (v, conj v) as the real columns (Re v, Im v); the map
         * (v, conj v) -> (Re v, Im v) is sqrt(2) times a unitary one, so the condition number of
         * these real columns (each normalized) equals that of the complex eigenvector matrix up
         * to the column scaling: an estimate of the right order, which is all this is for. */
        double *rowmajor = ssm_xmalloc(sizeof(double) * (size_t)n * (size_t)n);
        for (int j = 0; j < n; j++) {
            double norm = 0;
            for (int i = 0; i < n; i++) norm += vr[(size_t)j * n + i] * vr[(size_t)j * n + i];
            norm = norm > 0 ? sqrt(norm) : 1;
            for (int i = 0; i < n; i++) rowmajor[(size_t)i * n + j] = vr[(size_t)j * n + i] / norm;
        }
        c = cond2_real(n, rowmajor);
        free(rowmajor);
    }
    free(work); free(a); free(vr); free(wr); free(wi);
    return c;
}

static void run_check(const options *o, const ssm_system *s) {
    const int N = s->N, M = s->M;
    const int64_t H = s->H;
    const size_t NN = (size_t)N * (size_t)N;
    const char *meth = ssm_method_name(o->method);
    if (s->nplr_err >= 0) fprintf(stderr, "%s: check: NPLR reconstruction ||V diag(W) V* - (A + P P^T)|| / ||A + P P^T|| = %.3g\n", ssm_cli.prog, s->nplr_err);
    double rho = 0;
    int64_t worst = 0;
    double *wr = ssm_xmalloc(sizeof(double) * (size_t)(2 * N + 2)), *wi = wr + N + 1;
    if (s->form == FORM_DENSE) {
        for (int64_t h = 0; h < H; h++) {
            if (eig_real(N, s->Abar + (size_t)h * NN, wr, wi) < 0) ssm_die("--check: LAPACK dgeev failed on channel %lld", (long long)h);
            for (int i = 0; i < N; i++) { double a = hypot(wr[i], wi[i]); if (a > rho) { rho = a; worst = h; } }
        }
        /* A is the same for every channel of a HiPPO init: condition numbers of channel 0 (and of
         * the worst channel for the solve). */
        double cv = eigvec_cond_real(N, s->A);
        fprintf(stderr, "%s: check: cond(eigenvectors of A) = %.3g (channel 0%s)\n", ssm_cli.prog, cv,
                isinf(cv) ? ": A is defective, not diagonalizable" : cv > 1e8 ? ": diagonalizing A would lose every digit; use the dplr form" : "");
        if (o->method == SSM_METHOD_BILINEAR || o->method == SSM_METHOD_BACKWARD_EULER) {
            double h2 = o->method == SSM_METHOD_BILINEAR ? 0.5 : 1.0, cmax = 0;
            double *Mx = ssm_xmalloc(sizeof(double) * NN);
            for (int64_t h = 0; h < H && h < 64; h++) {
                for (size_t i = 0; i < NN; i++) Mx[i] = -h2 * s->dt[h] * s->A[(size_t)h * NN + i];
                for (int i = 0; i < N; i++) Mx[(size_t)i * N + i] += 1;
                double c = cond2_real(N, Mx);
                if (c > cmax) cmax = c;
            }
            free(Mx);
            fprintf(stderr, "%s: check: cond(I - %s dt A) = %.3g (max over the first %lld channels)\n", ssm_cli.prog,
                    o->method == SSM_METHOD_BILINEAR ? "1/2" : "", cmax, (long long)(H < 64 ? H : 64));
        }
    } else if (s->form == FORM_DIAG) {
        int64_t n = s->is_complex ? M : N;
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < n; i++) {
                double a = s->is_complex ? hypot(s->Abar[2 * (h * n + i)], s->Abar[2 * (h * n + i) + 1]) : fabs(s->Abar[h * n + i]);
                if (a > rho) { rho = a; worst = h; }
            }
    } else {
        /* dplr: max |eig| of the bilinear Abar.  From the dense HiPPO matrix when we have it (its
         * eigenvalues are well computed); else from the full complex matrix in the eigenbasis. */
        double *Abar = ssm_xmalloc(sizeof(double) * NN), *Bbar = ssm_xmalloc(sizeof(double) * (size_t)N);
        double *Bz = ssm_xcalloc((size_t)N, sizeof(double));
        for (int64_t h = 0; h < H; h++) {
            if (!s->dense_A) break;
            if (discretize_dense(SSM_METHOD_BILINEAR, N, s->dt[h], s->dense_A, Bz, Abar, Bbar) < 0 || eig_real(N, Abar, wr, wi) < 0)
                ssm_die("--check: channel %lld: LAPACK failed", (long long)h);
            for (int i = 0; i < N; i++) { double a = hypot(wr[i], wi[i]); if (a > rho) { rho = a; worst = h; } }
        }
        free(Abar); free(Bbar); free(Bz);
        if (!s->dense_A) {
            cplx *Af = ssm_xmalloc(sizeof(cplx) * NN), *Ab = ssm_xmalloc(sizeof(cplx) * NN);
            cplx *Bf = ssm_xcalloc((size_t)N, sizeof(cplx)), *Bb = ssm_xmalloc(sizeof(cplx) * (size_t)N);
            cplx *w = ssm_xmalloc(sizeof(cplx) * (size_t)N);
            double *rwork = ssm_xmalloc(sizeof(double) * 2 * (size_t)N);
            for (int64_t h = 0; h < H; h++) {
                dplr_full_matrix(M, s->r, s->Lambda + (size_t)h * 2 * M, s->P + (size_t)h * 2 * s->r * M, (double *)Af);
                if (discretize_dense_complex(SSM_METHOD_BILINEAR, N, s->dt[h], (double *)Af, (double *)Bf, (double *)Ab, (double *)Bb) < 0)
                    ssm_die("--check: channel %lld: singular bilinear solve", (long long)h);
                /* zgeev needs column-major: transpose (eigenvalues of the transpose are the same). */
                int lwork = 4 * N, info = 0, one = 1;
                cplx *work = ssm_xmalloc(sizeof(cplx) * (size_t)lwork), dummy;
                zgeev_("N", "N", &N, (double *)Ab, &N, (double *)w, (double *)&dummy, &one, (double *)&dummy, &one, (double *)work, &lwork, rwork, &info, 1, 1);
                free(work);
                if (info) ssm_die("--check: LAPACK zgeev failed on channel %lld", (long long)h);
                for (int i = 0; i < N; i++) if (cabs(w[i]) > rho) { rho = cabs(w[i]); worst = h; }
            }
            free(Af); free(Ab); free(Bf); free(Bb); free(w); free(rwork);
        }
        meth = "bilinear";
        fprintf(stderr, "%s: check: cond(V) = 1 (the DPLR basis is unitary)%s\n", ssm_cli.prog,
                s->dense_A ? "" : "; eigenvalues of the full bilinear Abar from zgeev (they may be ill-conditioned)");
    }
    free(wr);
    fprintf(stderr, "%s: check: stability margin max |eig(Abar)| = %.17g (%s, worst channel %lld, dt %g)%s\n", ssm_cli.prog, rho,
            meth, (long long)worst, s->dt[worst], rho > 1 + 1e-12 ? ": UNSTABLE" : "");
    if (rho > 1 + 1e-12 && o->method == SSM_METHOD_EULER)
        fprintf(stderr, "%s: check: forward Euler is unstable at this dt (|1 + dt lambda| > 1); use zoh or bilinear, or a smaller dt\n", ssm_cli.prog);
}

/* ---- output ----------------------------------------------------------------------------------- */

static void emit(ssm_writer *w, const options *o, const ssm_system *s, const char *name, int is_complex, int rank,
                 const int64_t *dims, const double *data) {
    int dt64 = is_complex ? SSM_C128 : SSM_F64;
    ssm_tensor *t = ssm_tensor_new(name, dt64, rank, dims);
    memcpy(t->data, data, ssm_tensor_nbytes(t));
    if (ssm_tensor_count_nonfinite(t))
        ssm_die("tensor '%s': non-finite values (--method %s at this dt overflows?)", name, ssm_method_name(o->method));
    ssm_tensor_set_attr(t, "form", form_names[s->form]);
    ssm_tensor_set_attr(t, "init", o->init_name);
    ssm_tensor_set_attrf(t, "N", "%d", s->N);
    ssm_tensor_set_attr(t, "method", ssm_method_name(o->method));
    if (is_complex) ssm_tensor_set_attr(t, "conj", "half");
    if (s->form == FORM_DPLR) ssm_tensor_set_attrf(t, "rank", "%d", s->r);
    int want = is_complex ? (o->dtype == SSM_F32 ? SSM_C64 : SSM_C128) : o->dtype;
    if (want != dt64) {
        ssm_tensor *c = ssm_tensor_convert(t, want);
        if (!c) ssm_die("tensor '%s': cannot convert to %s", name, ssm_dtype_name(want));
        ssm_tensor_free(t);
        t = c;
    }
    ssm_write_or_die(w, t);
    ssm_tensor_free(t);
}

static void write_system(ssm_writer *w, const options *o, const ssm_system *s) {
    const int64_t H = s->H, N = s->N, M = s->M;
    int64_t d1[1] = {H};
    if (s->form == FORM_DENSE) {
        int64_t dA[3] = {H, N, N}, dB[2] = {H, N};
        emit(w, o, s, "A", 0, 3, dA, s->A);
        emit(w, o, s, "B", 0, 2, dB, s->B);
        emit(w, o, s, "C", 0, 2, dB, s->C);
        emit(w, o, s, "Abar", 0, 3, dA, s->Abar);
        emit(w, o, s, "Bbar", 0, 2, dB, s->Bbar);
    } else if (s->form == FORM_DIAG) {
        int64_t d[2] = {H, s->is_complex ? M : N};
        if (s->A_log) emit(w, o, s, "A_log", 0, 2, d, s->A_log);
        emit(w, o, s, "A", s->is_complex, 2, d, s->A);
        emit(w, o, s, "B", s->is_complex, 2, d, s->B);
        emit(w, o, s, "C", s->is_complex, 2, d, s->C);
        emit(w, o, s, "Abar", s->is_complex, 2, d, s->Abar);
        emit(w, o, s, "Bbar", s->is_complex, 2, d, s->Bbar);
    } else {
        int64_t d[2] = {H, M}, dP[3] = {H, s->r, M};
        emit(w, o, s, "Lambda", 1, 2, d, s->Lambda);
        emit(w, o, s, "P", 1, 3, dP, s->P);
        emit(w, o, s, "B", 1, 2, d, s->B);
        emit(w, o, s, "C", 1, 2, d, s->C);
    }
    emit(w, o, s, "D", 0, 1, d1, s->D);
    emit(w, o, s, "dt", 0, 1, d1, s->dt);
}

static void free_system(ssm_system *s) {
    free(s->A); free(s->B); free(s->C); free(s->Abar); free(s->Bbar); free(s->Lambda); free(s->P);
    free(s->A_log); free(s->D); free(s->dt); free(s->dense_A);
}

/* ---- input mode: (A, B, C, D, dt) read from a stream ----------------------------------------------- */

static const char *const consumed_names[] = {"A", "A_log", "B", "C", "D", "dt", "Lambda", "P", "Abar", "Bbar", NULL};

static int want_parameter(const char *name, void *ctx) {
    (void)ctx;
    for (int i = 0; consumed_names[i]; i++)
        if (strcmp(consumed_names[i], name) == 0) return 1;
    return 0;
}

/* A complex (or real, promoted) tensor of the given shape as interleaved doubles; dies on NaN/Inf. */
static double *take_complex(const ssm_tensor_set *set, const char *name, int rank, const int64_t *dims, const char *expect) {
    ssm_tensor *t = ssm_require(set, name, expect);
    ssm_require_shape(t, rank, dims);
    if (!ssm_dtype_is_complex(t->dtype) && !ssm_dtype_is_float(t->dtype))
        ssm_die("tensor '%s': expected a float or complex dtype, got %s", name, ssm_dtype_name(t->dtype));
    return ssm_as_c128(t, 1);
}

static double *take_real(const ssm_tensor_set *set, const char *name, int rank, const int64_t *dims, const char *expect) {
    ssm_tensor *t = ssm_require(set, name, expect);
    ssm_require_shape(t, rank, dims);
    if (!ssm_dtype_is_float(t->dtype)) ssm_die("tensor '%s': expected a real float dtype, got %s", name, ssm_dtype_name(t->dtype));
    return ssm_as_f64(t, 1);
}

static void read_system(options *o, const ssm_tensor_set *set, ssm_system *s) {
    ssm_tensor *A = ssm_set_get(set, "A"), *Alog = ssm_set_get(set, "A_log"), *Lam = ssm_set_get(set, "Lambda");
    ssm_tensor *first = Lam ? Lam : Alog ? Alog : A;
    if (!first) ssm_die("missing tensor 'A' (expected A (H, N, N) dense, A (H, M) or (H, N) diag, A_log (H, N), or Lambda and P for dplr)");
    char buf[64];
    s->nplr_err = -1;
    if (Lam) {
        if (A) ssm_die("tensor 'A': both 'A' and 'Lambda' in the input: is it dense/diag or dplr?");
        if (Lam->rank != 2) ssm_die("tensor 'Lambda': expected shape [H, M], got %s", ssm_shape_string(Lam->rank, Lam->dims, buf, sizeof buf));
        ssm_tensor *P = ssm_require(set, "P", "complex [H, r, M]");
        if (P->rank != 3) ssm_die("tensor 'P': expected shape [H, r, M], got %s", ssm_shape_string(P->rank, P->dims, buf, sizeof buf));
        s->form = FORM_DPLR;
        s->is_complex = 1;
        s->H = Lam->dims[0];
        s->M = (int)Lam->dims[1];
        s->N = 2 * s->M;
        s->r = (int)P->dims[1];
        int64_t d2[2] = {s->H, s->M}, d3[3] = {s->H, s->r, s->M};
        s->Lambda = take_complex(set, "Lambda", 2, d2, "complex [H, M]");
        s->P = take_complex(set, "P", 3, d3, "complex [H, r, M]");
        s->B = take_complex(set, "B", 2, d2, "complex [H, M]");
        s->C = take_complex(set, "C", 2, d2, "complex [H, M]");
    } else if (Alog || (A && A->rank == 2)) {
        ssm_tensor *a = Alog ? Alog : A;
        if (a->rank != 2) ssm_die("tensor '%s': expected shape [H, N], got %s", a->name, ssm_shape_string(a->rank, a->dims, buf, sizeof buf));
        s->form = FORM_DIAG;
        s->H = a->dims[0];
        s->is_complex = !Alog && ssm_dtype_is_complex(A->dtype);
        int64_t n = a->dims[1];
        s->N = (int)(s->is_complex ? 2 * n : n);
        s->M = (int)(s->is_complex ? n : n / 2);
        int64_t d2[2] = {s->H, n};
        if (s->is_complex) {
            s->A = take_complex(set, "A", 2, d2, "complex [H, M]");
            s->B = take_complex(set, "B", 2, d2, "complex [H, M]");
            s->C = take_complex(set, "C", 2, d2, "complex [H, M]");
        } else {
            if (Alog) {
                s->A_log = take_real(set, "A_log", 2, d2, "real [H, N]");
                s->A = ssm_xmalloc(sizeof(double) * (size_t)(s->H * n));
                for (int64_t i = 0; i < s->H * n; i++) s->A[i] = -exp(s->A_log[i]);
            } else {
                s->A = take_real(set, "A", 2, d2, "real [H, N]");
            }
            s->B = take_real(set, "B", 2, d2, "real [H, N]");
            s->C = take_real(set, "C", 2, d2, "real [H, N]");
        }
    } else {
        if (A->rank != 3 || A->dims[1] != A->dims[2])
            ssm_die("tensor 'A': expected shape [H, N, N] (dense) or [H, N] (diag), got %s", ssm_shape_string(A->rank, A->dims, buf, sizeof buf));
        if (ssm_dtype_is_complex(A->dtype)) ssm_die("tensor 'A': a dense A must be real, got %s", ssm_dtype_name(A->dtype));
        s->form = FORM_DENSE;
        s->H = A->dims[0];
        s->N = (int)A->dims[1];
        s->M = s->N / 2;
        int64_t d3[3] = {s->H, s->N, s->N}, d2[2] = {s->H, s->N};
        s->A = take_real(set, "A", 3, d3, "real [H, N, N]");
        s->B = take_real(set, "B", 2, d2, "real [H, N]");
        s->C = take_real(set, "C", 2, d2, "real [H, N]");
    }
    if (s->H <= 0 || s->N <= 0) ssm_die("tensor '%s': empty shape %s", first->name, ssm_shape_string(first->rank, first->dims, buf, sizeof buf));
    int64_t dH[1] = {s->H};
    s->D = take_real(set, "D", 1, dH, "real [H]");

    /* attributes and defaults carried over from the input */
    const char *init = ssm_tensor_get_attr(first, "init");
    o->init_name = ssm_xstrdup(init ? init : "input");   /* the set is freed before writing */
    if (o->form >= 0 && o->form != s->form)
        ssm_usage_error("--form %s: the input is in form %s; converting between forms is not supported", form_names[o->form], form_names[s->form]);
    o->form = s->form;
    if (o->method < 0) {
        const char *m = ssm_tensor_get_attr(first, "method");
        o->method = m && ssm_method_from_name(m) >= 0 ? ssm_method_from_name(m) : (s->form == FORM_DPLR ? SSM_METHOD_BILINEAR : SSM_METHOD_ZOH);
    }
    if (s->form == FORM_DPLR && o->method != SSM_METHOD_BILINEAR)
        ssm_usage_error("--method %s: the dplr form is discretized by bilinear only (S4's algorithm)", ssm_method_name(o->method));
    if (!o->have_dtype) o->dtype = (first->dtype == SSM_F64 || first->dtype == SSM_C128) ? SSM_F64 : SSM_F32;

    /* dt: --dt, else the stream's dt, else a draw when --dt-min/--dt-max were given */
    s->dt = ssm_xmalloc(sizeof(double) * (size_t)s->H);
    if (o->have_dt) {
        for (int64_t h = 0; h < s->H; h++) s->dt[h] = o->dt;
    } else if (ssm_set_get(set, "dt")) {
        double *dt = take_real(set, "dt", 1, dH, "real [H]");
        for (int64_t h = 0; h < s->H; h++) {
            if (!(dt[h] > 0)) ssm_die("tensor 'dt': channel %lld: step %g is not > 0", (long long)h, dt[h]);
            s->dt[h] = dt[h];
        }
        free(dt);
    } else if (o->have_dt_range) {
        ssm_draw_dt(o->seed, s->H, o->dt_min, o->dt_max, s->dt);
    } else {
        ssm_die("missing tensor 'dt' (expected real [H]; or give --dt X, or --dt-min/--dt-max)");
    }
    for (int64_t h = 0; h < s->H; h++) s->dt[h] *= o->rate;
}

/* ---- options ------------------------------------------------------------------------------------ */

enum { OPT_DT = SSM_OPT_TOOL_FIRST, OPT_DT_MIN, OPT_DT_MAX, OPT_RATE, OPT_DTYPE, OPT_CHECK };

static void parse_options(int argc, char **argv, options *o) {
    static struct option opts[] = {
        {"init", required_argument, 0, 'i'},     {"state", required_argument, 0, 'N'},
        {"channels", required_argument, 0, 'H'}, {"form", required_argument, 0, 'f'},
        {"method", required_argument, 0, 'm'},   {"seed", required_argument, 0, 's'},
        {"dt", required_argument, 0, OPT_DT},    {"dt-min", required_argument, 0, OPT_DT_MIN},
        {"dt-max", required_argument, 0, OPT_DT_MAX}, {"rate", required_argument, 0, OPT_RATE},
        {"dtype", required_argument, 0, OPT_DTYPE}, {"check", no_argument, 0, OPT_CHECK},
        SSM_CLI_COMMON_OPTS, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "i:N:H:f:m:s:" SSM_CLI_COMMON_SHORT, opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            o->init = ssm_init_from_name(optarg);
            if (o->init < 0)
                ssm_usage_error("--init: unknown initialization '%s' (legs, legt, lagt, fout, s4d-lin, s4d-inv, s4d-real, s4d-legs, mamba, random)", optarg);
            o->init_name = ssm_init_name(o->init);
            break;
        case 'N': o->N = (int)ssm_parse_int("-N", optarg, 1, 1 << 16); break;
        case 'H': o->H = ssm_parse_int("-H", optarg, 1, 1 << 24); break;
        case 'f':
            o->form = -1;
            for (int k = 0; k < FORM_COUNT; k++) if (strcmp(optarg, form_names[k]) == 0) o->form = k;
            if (o->form < 0) ssm_usage_error("--form: unknown form '%s' (dense, diag, dplr)", optarg);
            break;
        case 'm':
            o->method = ssm_method_from_name(optarg);
            if (o->method < 0) ssm_usage_error("--method: unknown method '%s' (zoh, bilinear, euler, backward-euler)", optarg);
            break;
        case 's': o->seed = (uint64_t)ssm_parse_int("--seed", optarg, 0, INT64_MAX); break;
        case OPT_DT: o->dt = ssm_parse_double("--dt", optarg, 0, INFINITY); o->have_dt = 1; break;
        case OPT_DT_MIN: o->dt_min = ssm_parse_double("--dt-min", optarg, 0, INFINITY); o->have_dt_range = 1; break;
        case OPT_DT_MAX: o->dt_max = ssm_parse_double("--dt-max", optarg, 0, INFINITY); o->have_dt_range = 1; break;
        case OPT_RATE: o->rate = ssm_parse_double("--rate", optarg, 0, INFINITY); break;
        case OPT_DTYPE:
            if (strcmp(optarg, "f32") == 0) o->dtype = SSM_F32;
            else if (strcmp(optarg, "f64") == 0) o->dtype = SSM_F64;
            else ssm_usage_error("--dtype: expected f32 or f64, got '%s'", optarg);
            o->have_dtype = 1;
            break;
        case OPT_CHECK: o->check = 1; break;
        default:
            if (!ssm_cli_common_option(c, optarg)) ssm_usage_error("unknown option");
        }
    }
    if (o->have_dt && !(o->dt > 0 && isfinite(o->dt))) ssm_usage_error("--dt: must be a finite number > 0, got %g", o->dt);
    if (o->have_dt_range && !(o->dt_min > 0 && o->dt_max >= o->dt_min && isfinite(o->dt_max)))
        ssm_usage_error("--dt-min/--dt-max: need 0 < dt-min <= dt-max, got %g, %g", o->dt_min, o->dt_max);
    if (o->have_dt && o->have_dt_range) ssm_usage_error("--dt: give either --dt or --dt-min/--dt-max, not both");
    if (!(o->rate > 0) || !isfinite(o->rate)) ssm_usage_error("--rate: must be a finite number > 0, got %g", o->rate);
}

static void setup_generate(options *o) {
    if (o->form < 0) o->form = default_form(o->init);
    if (!form_allowed(o->init, o->form))
        ssm_usage_error("--form %s: init '%s' cannot be represented exactly in that form (%s)", form_names[o->form], o->init_name,
                        ssm_init_is_hippo(o->init) ? "HiPPO matrices: dense or dplr; their diagonal part alone is s4d-legs"
                        : o->init == SSM_INIT_RANDOM ? "random: dense or diag" : "diagonal inits: diag");
    int needs_pairs = o->form == FORM_DPLR || init_is_complex_diag(o->init);
    if (needs_pairs && o->N % 2)
        ssm_usage_error("-N %d: init '%s' in form %s needs an even state size (conjugate pairs)", o->N, o->init_name, form_names[o->form]);
    if (o->form == FORM_DPLR) {
        if (o->method >= 0 && o->method != SSM_METHOD_BILINEAR)
            ssm_usage_error("--method %s: the dplr form is discretized by bilinear only (S4's algorithm); use --form dense", ssm_method_name(o->method));
        o->method = SSM_METHOD_BILINEAR;
    }
    if (o->method < 0) o->method = SSM_METHOD_ZOH;
}

static void make_dt(const options *o, ssm_system *s) {
    s->dt = ssm_xmalloc(sizeof(double) * (size_t)s->H);
    if (o->have_dt) for (int64_t h = 0; h < s->H; h++) s->dt[h] = o->dt;
    else ssm_draw_dt(o->seed, s->H, o->dt_min, o->dt_max, s->dt);
    for (int64_t h = 0; h < s->H; h++) {
        if (o->init == SSM_INIT_MAMBA && s->dt[h] < 1e-4) s->dt[h] = 1e-4;   /* Mamba's dt floor */
        s->dt[h] *= o->rate;
    }
}

static double min_of(const double *x, int64_t n) { double m = x[0]; for (int64_t i = 1; i < n; i++) m = fmin(m, x[i]); return m; }
static double max_of(const double *x, int64_t n) { double m = x[0]; for (int64_t i = 1; i < n; i++) m = fmax(m, x[i]); return m; }

int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-discretize", usage);
    options o = {.init = -1, .init_name = NULL, .form = -1, .method = -1, .N = 64, .H = 1, .seed = 0,
                 .dt = 0, .dt_min = 0.001, .dt_max = 0.1, .rate = 1.0, .dtype = SSM_F32};
    parse_options(argc, argv, &o);
    ssm_system s;
    memset(&s, 0, sizeof s);
    ssm_writer *w;
    if (o.init >= 0) {
        if (optind < argc) ssm_usage_error("--init generates parameters: no input FILE is read (got '%s')", argv[optind]);
        setup_generate(&o);
        w = ssm_cli_open_output(ssm_cli.output);
        s.H = o.H;
        make_dt(&o, &s);
        generate(&o, &s);
    } else {
        if (optind == argc && isatty(STDIN_FILENO))
            ssm_usage_error("no --init and no input: give --init NAME, or pipe a stream with A, B, C, D, dt");
        w = ssm_cli_open_output(ssm_cli.output);
        ssm_tensor_set set;
        ssm_set_init(&set);
        int nfiles = argc - optind;
        for (int f = 0; f < (nfiles ? nfiles : 1); f++) {
            ssm_reader *r = ssm_cli_open_input(nfiles ? argv[optind + f] : "-");
            ssm_collect_or_pass(r, w, want_parameter, NULL, &set);
            ssm_reader_close(r);
        }
        read_system(&o, &set, &s);
        ssm_set_free(&set);
    }
    ssm_info("init %s, form %s, N %d, H %lld, method %s, dt in [%g, %g]", o.init_name, form_names[s.form], s.N,
             (long long)s.H, ssm_method_name(o.method), min_of(s.dt, s.H), max_of(s.dt, s.H));
    discretize_all(&o, &s);
    if (o.check) run_check(&o, &s);
    write_system(w, &o, &s);
    free_system(&s);
    ssm_cli_finish(w);
}
