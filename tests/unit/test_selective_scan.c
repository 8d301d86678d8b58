/* test_selective_scan.c - the selective scan (kernels/selective_scan.h) against a float64 reference
 * written here, independently of kernels/selective_scan_ref.c, from REFERENCE.md section 7:
 *   - forward, fast float32 vs this reference: 1e-5 relative (y and the final state), for real and
 *     complex A; selective, grouped and time-invariant B, C; with and without D, z, delta_bias,
 *     softplus, h0, seq_idx; layouts bld and bdl; odd sizes (L = 1, 7, 1000; N = 1, 3, 16, 300;
 *     batch 1; D not a multiple of the 16 lanes);
 *   - the library's double reference vs this one: 1e-12;
 *   - chunking: [0, L1) then [L1, L) with the state handed over equals one scan; the backward's
 *     recompute chunk does not change the gradients;
 *   - backward: the double reference backward vs central finite differences of this reference
 *     (1e-6) and the float32 backward vs the same finite differences (1e-4), for every input; at
 *     larger sizes (full 16-channel blocks, several chunks) float32 vs the double reference (1e-4);
 *   - the same bits with 1, 2 or 3 threads (forward and backward);
 *   - the vectorized exp vs libm (1e-6 relative on [-87, 88]) and its underflow / overflow.
 */
#include "check.h"
#include "cli.h"
#include "selective_scan.h"

#include <stdint.h>
#include <string.h>

/* ---- a test case: sizes, options, inputs in float (for the library) and double (for here) ----- */
enum { IN_U, IN_DELTA, IN_A, IN_B, IN_C, IN_D, IN_Z, IN_BIAS, IN_H0, NIN };
static const char *in_names[NIN] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0"};

typedef struct {
    int64_t batch, L, D, N, G;
    int cplx, softplus, has_D, has_z, has_bias, has_h0, has_seq, bdl;
} config;

typedef struct {
    config c;
    int64_t len[NIN];        /* floats in each input (0 = absent) */
    float *f[NIN];
    double *x[NIN];
    int32_t *seq;
    ssm_scan_params p;
    int64_t ny, nh;          /* floats in y and h */
} scase;

static double randn(void) { return test_normal(); }
static double randu(double lo, double hi) { return lo + (hi - lo) * test_uniform(); }

static void case_fill(scase *s) {
    const config *c = &s->c;
    int cf = c->cplx ? 2 : 1;
    for (int k = 0; k < NIN; k++) {
        if (!s->len[k]) continue;
        s->f[k] = ssm_xmalloc((size_t)s->len[k] * sizeof(float));
        s->x[k] = ssm_xmalloc((size_t)s->len[k] * sizeof(double));
        for (int64_t i = 0; i < s->len[k]; i++) {
            double v;
            switch (k) {
            case IN_DELTA: v = c->softplus ? randu(-3, 0.5) : randu(0.01, 0.6); break;
            case IN_A:
                v = (cf == 2 && i % 2) ? 3 * randn() : -randu(0.3, 2.0);
                break;
            case IN_BIAS: v = 0.3 * randn(); break;
            default: v = randn();
            }
            s->f[k][i] = (float)v;
            s->x[k][i] = (double)s->f[k][i];
        }
    }
    (void)cf;
}

static scase *case_new(config c) {
    scase *s = ssm_xcalloc(1, sizeof *s);
    s->c = c;
    int cf = c.cplx ? 2 : 1;
    int64_t nx = c.batch * c.L * c.D;
    s->len[IN_U] = s->len[IN_DELTA] = nx;
    s->len[IN_A] = c.D * c.N * cf;
    s->len[IN_B] = s->len[IN_C] = c.G ? c.batch * c.L * c.G * c.N * cf : c.D * c.N * cf;
    s->len[IN_D] = c.has_D ? c.D : 0;
    s->len[IN_Z] = c.has_z ? nx : 0;
    s->len[IN_BIAS] = c.has_bias ? c.D : 0;
    s->len[IN_H0] = c.has_h0 ? c.batch * c.D * c.N * cf : 0;
    case_fill(s);
    s->ny = nx;
    s->nh = c.batch * c.D * c.N * cf;
    if (c.has_seq) {
        /* random packed sequences: a new one starts with probability 0.15 */
        s->seq = ssm_xmalloc((size_t)(c.batch * c.L + 1) * sizeof(int32_t));
        for (int64_t b = 0; b < c.batch; b++) {
            int32_t id = 0;
            for (int64_t t = 0; t < c.L; t++) {
                if (t > 0 && test_uniform() < 0.15) id++;
                s->seq[b * c.L + t] = id;
            }
        }
    }
    ssm_scan_params *p = &s->p;
    p->batch = c.batch; p->L = c.L; p->D = c.D; p->N = c.N; p->G = c.G;
    p->complex_A = c.cplx;
    p->softplus = c.softplus;
    p->x_strides = c.bdl ? ssm_scan_layout_bdl(c.L, c.D) : ssm_scan_layout_bld(c.L, c.D);
    p->bc_strides = c.bdl ? ssm_scan_layout_bdl(c.L, c.G * c.N) : ssm_scan_layout_bld(c.L, c.G * c.N);
    p->u = s->f[IN_U]; p->delta = s->f[IN_DELTA]; p->A = s->f[IN_A]; p->B = s->f[IN_B]; p->C = s->f[IN_C];
    p->D_skip = s->f[IN_D]; p->z = s->f[IN_Z]; p->delta_bias = s->f[IN_BIAS]; p->h0 = s->f[IN_H0];
    p->seq_idx = s->seq;
    p->threads = 2;
    return s;
}

static void case_free(scase *s) {
    for (int k = 0; k < NIN; k++) { free(s->f[k]); free(s->x[k]); }
    free(s->seq);
    free(s);
}

static void describe(const config *c, char *buf, size_t n) {
    snprintf(buf, n, "batch %lld L %lld D %lld N %lld G %lld %s%s%s%s%s%s%s%s",
             (long long)c->batch, (long long)c->L, (long long)c->D, (long long)c->N, (long long)c->G,
             c->cplx ? "complex" : "real", c->softplus ? " softplus" : "", c->has_D ? " D" : "",
             c->has_z ? " z" : "", c->has_bias ? " bias" : "", c->has_h0 ? " h0" : "",
             c->has_seq ? " seq_idx" : "", c->bdl ? " bdl" : " bld");
}

/* ---- the independent float64 reference ------------------------------------------------------- *
 * Written with explicit (re, im) pairs.  Reads the double inputs in[] in the case's layout. */
static void reference_forward(const scase *s, double *const in[NIN], double *y, double *h) {
    const config *c = &s->c;
    const ssm_scan_params *p = &s->p;
    int64_t N = c->N, per_group = c->G ? c->D / c->G : 0;
    int cf = c->cplx ? 2 : 1;
    double *xr = calloc((size_t)N + 1, sizeof(double)), *xi = calloc((size_t)N + 1, sizeof(double));
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t d = 0; d < c->D; d++) {
            for (int64_t n = 0; n < N; n++) {
                int64_t k = ((b * c->D + d) * N + n) * cf;
                xr[n] = c->has_h0 ? in[IN_H0][k] : 0;
                xi[n] = c->has_h0 && cf == 2 ? in[IN_H0][k + 1] : 0;
            }
            for (int64_t t = 0; t < c->L; t++) {
                if (s->seq && t > 0 && s->seq[b * c->L + t] != s->seq[b * c->L + t - 1])
                    for (int64_t n = 0; n < N; n++) xr[n] = xi[n] = 0;
                int64_t i = b * p->x_strides.batch + t * p->x_strides.time + d * p->x_strides.channel;
                double dt = in[IN_DELTA][i] + (c->has_bias ? in[IN_BIAS][d] : 0);
                if (c->softplus && dt <= 20) dt = log(1 + exp(dt));
                double u = in[IN_U][i], acc = 0;
                for (int64_t n = 0; n < N; n++) {
                    int64_t kb = c->G ? (b * p->bc_strides.batch + t * p->bc_strides.time +
                                         ((d / per_group) * N + n) * p->bc_strides.channel) * cf
                                      : (d * N + n) * cf;
                    int64_t ka = (d * N + n) * cf;
                    double Ar = in[IN_A][ka], Ai = cf == 2 ? in[IN_A][ka + 1] : 0;
                    double Br = in[IN_B][kb], Bi = cf == 2 ? in[IN_B][kb + 1] : 0;
                    double Cr = in[IN_C][kb], Ci = cf == 2 ? in[IN_C][kb + 1] : 0;
                    double m = exp(dt * Ar), ar = m * cos(dt * Ai), ai = m * sin(dt * Ai);
                    double nr = ar * xr[n] - ai * xi[n] + dt * u * Br;
                    double ni = ar * xi[n] + ai * xr[n] + dt * u * Bi;
                    xr[n] = nr, xi[n] = ni;
                    acc += nr * Cr - ni * Ci;
                }
                double out = (cf == 2 ? 2 * acc : acc) + (c->has_D ? in[IN_D][d] * u : 0);
                if (c->has_z) { double zz = in[IN_Z][i]; out *= zz / (1 + exp(-zz)); }
                y[i] = out;
            }
            for (int64_t n = 0; n < N; n++) {
                int64_t k = ((b * c->D + d) * N + n) * cf;
                h[k] = xr[n];
                if (cf == 2) h[k + 1] = xi[n];
            }
        }
    free(xr);
    free(xi);
}

static double rel_err_ff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- forward ---------------------------------------------------------------------------------- */
static void check_forward(config c) {
    char what[256];
    describe(&c, what, sizeof what);
    scase *s = case_new(c);
    double *yr = calloc((size_t)s->ny + 1, sizeof(double)), *hr = calloc((size_t)s->nh + 1, sizeof(double));
    double *yl = calloc((size_t)s->ny + 1, sizeof(double)), *hl = calloc((size_t)s->nh + 1, sizeof(double));
    float *y = calloc((size_t)s->ny + 1, sizeof(float)), *h = calloc((size_t)s->nh + 1, sizeof(float));
    reference_forward(s, s->x, yr, hr);
    selective_scan_forward(&s->p, y, h);
    CHECK_REL_ERR(rel_err_f32(y, yr, (long)s->ny), 1e-5, "forward y: %s", what);
    CHECK_REL_ERR(rel_err_f32(h, hr, (long)s->nh), 1e-5, "forward h: %s", what);
    selective_scan_forward_ref(&s->p, yl, hl);
    CHECK_REL_ERR(rel_err_f64(yl, yr, (long)s->ny), 1e-12, "library reference y: %s", what);
    CHECK_REL_ERR(rel_err_f64(hl, hr, (long)s->nh), 1e-12, "library reference h: %s", what);
    /* y without h_out is the same */
    float *y2 = calloc((size_t)s->ny + 1, sizeof(float));
    selective_scan_forward(&s->p, y2, NULL);
    CHECK(memcmp(y, y2, (size_t)s->ny * sizeof(float)) == 0, "forward without h_out: %s", what);
    free(yr); free(hr); free(yl); free(hl); free(y); free(h); free(y2);
    case_free(s);
}

/* Scanning [0, L1) then [L1, L) with the state handed over equals one scan of [0, L).  Layout bld
 * or bdl: the second part is addressed through offset pointers and the same strides. */
static void check_chunking(config c, int64_t L1) {
    char what[256];
    describe(&c, what, sizeof what);
    scase *s = case_new(c);
    int cf = c.cplx ? 2 : 1;
    float *y = calloc((size_t)s->ny, sizeof(float)), *h = calloc((size_t)s->nh, sizeof(float));
    float *y2 = calloc((size_t)s->ny, sizeof(float)), *hmid = calloc((size_t)s->nh, sizeof(float));
    float *h2 = calloc((size_t)s->nh, sizeof(float));
    selective_scan_forward(&s->p, y, h);
    ssm_scan_params a = s->p, b = s->p;
    a.L = L1;
    selective_scan_forward(&a, y2, hmid);
    b.L = c.L - L1;
    int64_t ox = L1 * s->p.x_strides.time, obc = L1 * s->p.bc_strides.time * cf;
    b.u += ox; b.delta += ox;
    if (b.z) b.z += ox;
    if (c.G) { b.B += obc; b.C += obc; }
    b.h0 = hmid;
    /* the strides still describe the full tensors: only L changes */
    selective_scan_forward(&b, y2 + ox, h2);
    CHECK_REL_ERR(rel_err_ff(y2, y, s->ny), 1e-6, "chunked y (L1 = %lld): %s", (long long)L1, what);
    CHECK_REL_ERR(rel_err_ff(h2, h, s->nh), 1e-6, "chunked h (L1 = %lld): %s", (long long)L1, what);
    free(y); free(h); free(y2); free(hmid); free(h2);
    case_free(s);
}

/* ---- backward --------------------------------------------------------------------------------- */
/* loss = sum y wy + sum h wh, so dy = wy, dh = wh. */
static double loss_of(const scase *s, double *const in[NIN], const double *wy, const double *wh,
                      double *y, double *h) {
    reference_forward(s, in, y, h);
    double l = 0;
    for (int64_t i = 0; i < s->ny; i++) l += y[i] * wy[i];
    for (int64_t i = 0; i < s->nh; i++) l += h[i] * wh[i];
    return l;
}

static void check_backward(config c) {
    char what[256];
    describe(&c, what, sizeof what);
    scase *s = case_new(c);
    double *wy = malloc((size_t)s->ny * sizeof(double)), *wh = malloc((size_t)s->nh * sizeof(double));
    float *wyf = malloc((size_t)s->ny * sizeof(float)), *whf = malloc((size_t)s->nh * sizeof(float));
    for (int64_t i = 0; i < s->ny; i++) { wyf[i] = (float)randn(); wy[i] = wyf[i]; }
    for (int64_t i = 0; i < s->nh; i++) { whf[i] = (float)randn(); wh[i] = whf[i]; }
    double *y = malloc((size_t)s->ny * sizeof(double)), *h = malloc((size_t)s->nh * sizeof(double));
    /* analytic gradients: double reference and float32 (twice: default and a short chunk) */
    double *gd[NIN];
    float *gf[NIN], *gf2[NIN];
    for (int k = 0; k < NIN; k++) {
        int64_t n = s->len[k] ? s->len[k] : 1;
        gd[k] = calloc((size_t)n, sizeof(double));
        gf[k] = calloc((size_t)n, sizeof(float));
        gf2[k] = calloc((size_t)n, sizeof(float));
    }
    /* no gradient is asked for an absent input */
#define G_(a, k) (s->len[k] ? a[k] : NULL)
#define GRADS_(a) {G_(a, IN_U), G_(a, IN_DELTA), G_(a, IN_A), G_(a, IN_B), G_(a, IN_C), G_(a, IN_D), \
                   G_(a, IN_Z), G_(a, IN_BIAS), G_(a, IN_H0)}
    ssm_scan_grads_f64 g64 = GRADS_(gd);
    ssm_scan_grads g32 = GRADS_(gf), g32b = GRADS_(gf2);
    selective_scan_backward_ref(&s->p, wy, wh, &g64);
    selective_scan_backward(&s->p, wyf, whf, &g32);
    ssm_scan_params p2 = s->p;
    p2.chunk = 3;
    selective_scan_backward(&p2, wyf, whf, &g32b);
    /* central differences, every element of every input */
    const double eps = 1e-6;
    for (int k = 0; k < NIN; k++) {
        if (!s->len[k]) continue;
        int64_t n = s->len[k];
        double *fd = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            double keep = s->x[k][i];
            s->x[k][i] = keep + eps;
            double lp = loss_of(s, s->x, wy, wh, y, h);
            s->x[k][i] = keep - eps;
            double lm = loss_of(s, s->x, wy, wh, y, h);
            s->x[k][i] = keep;
            fd[i] = (lp - lm) / (2 * eps);
        }
        CHECK_REL_ERR(rel_err_f64(gd[k], fd, (long)n), 1e-6, "d%s, double reference vs finite differences: %s", in_names[k], what);
        CHECK_REL_ERR(rel_err_f32(gf[k], fd, (long)n), 1e-4, "d%s, float32 vs finite differences: %s", in_names[k], what);
        CHECK_REL_ERR(rel_err_ff(gf2[k], gf[k], n), 1e-5, "d%s, recompute chunk 3 vs default: %s", in_names[k], what);
        free(fd);
    }
    for (int k = 0; k < NIN; k++) { free(gd[k]); free(gf[k]); free(gf2[k]); }
    free(wy); free(wh); free(wyf); free(whf); free(y); free(h);
    case_free(s);
}

/* The float32 backward against the library's double reference backward at sizes where the fast
 * paths engage (full 16-channel blocks, 16 x 16 transposes in bdl, several recompute chunks). */
static void check_backward_vs_reference(config c) {
    char what[256];
    describe(&c, what, sizeof what);
    scase *s = case_new(c);
    double *wy = malloc((size_t)s->ny * sizeof(double)), *wh = malloc((size_t)s->nh * sizeof(double));
    float *wyf = malloc((size_t)s->ny * sizeof(float)), *whf = malloc((size_t)s->nh * sizeof(float));
    for (int64_t i = 0; i < s->ny; i++) { wyf[i] = (float)randn(); wy[i] = wyf[i]; }
    for (int64_t i = 0; i < s->nh; i++) { whf[i] = (float)randn(); wh[i] = whf[i]; }
    double *gd[NIN];
    float *gf[NIN];
    for (int k = 0; k < NIN; k++) {
        int64_t n = s->len[k] ? s->len[k] : 1;
        gd[k] = calloc((size_t)n, sizeof(double));
        gf[k] = calloc((size_t)n, sizeof(float));
    }
    ssm_scan_grads_f64 g64 = GRADS_(gd);
    ssm_scan_grads g32 = GRADS_(gf);
    selective_scan_backward_ref(&s->p, wy, wh, &g64);
    selective_scan_backward(&s->p, wyf, whf, &g32);
    for (int k = 0; k < NIN; k++)
        if (s->len[k])
            CHECK_REL_ERR(rel_err_f32(gf[k], gd[k], (long)s->len[k]), 1e-4, "d%s, float32 vs double reference: %s", in_names[k], what);
    for (int k = 0; k < NIN; k++) { free(gd[k]); free(gf[k]); }
    free(wy); free(wh); free(wyf); free(whf);
    case_free(s);
}

/* The results do not depend on the thread count: the same bits with 1, 2 and 3 threads. */
static void check_thread_invariance(config c) {
    char what[256];
    describe(&c, what, sizeof what);
    scase *s = case_new(c);
    float *dy = malloc((size_t)s->ny * sizeof(float));
    for (int64_t i = 0; i < s->ny; i++) dy[i] = (float)randn();
    float *ref[NIN + 1] = {0}, *got[NIN + 1] = {0};
    for (int run = 0; run < 3; run++) {
        float **o = run == 0 ? ref : got;
        for (int k = 0; k < NIN; k++) o[k] = calloc((size_t)(s->len[k] ? s->len[k] : 1), sizeof(float));
        o[NIN] = calloc((size_t)s->ny, sizeof(float));
        s->p.threads = run + 1;
        ssm_scan_grads g = GRADS_(o);
        selective_scan_backward(&s->p, dy, NULL, &g);
        selective_scan_forward(&s->p, o[NIN], NULL);
        if (run > 0) {
            for (int k = 0; k < NIN; k++)
                if (s->len[k])
                    CHECK(memcmp(ref[k], got[k], (size_t)s->len[k] * sizeof(float)) == 0,
                          "d%s with %d threads differs from 1 thread: %s", in_names[k], run + 1, what);
            CHECK(memcmp(ref[NIN], got[NIN], (size_t)s->ny * sizeof(float)) == 0, "y with %d threads: %s", run + 1, what);
            for (int k = 0; k <= NIN; k++) { free(got[k]); got[k] = NULL; }
        }
    }
    for (int k = 0; k <= NIN; k++) free(ref[k]);
    free(dy);
    case_free(s);
}

/* The vectorized exp against libm's exp in double: relative error below 1e-6 on [-87, 88]. */
static void check_exp(void) {
    enum { n = 200001 };
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = -87.0f + 175.0f * (float)i / (n - 1);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-30f, x[3] = -1e-8f;
    ssm_scan_exp_f32(x, y, n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs(y[i] - exp((double)x[i])) / exp((double)x[i]);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-6, "exp: worst relative error %.3g", worst);
    float edge[4] = {-1000.0f, -88.0f, 89.0f, 1000.0f}, out[4];
    ssm_scan_exp_f32(edge, out, 4);
    CHECK(out[0] >= 0 && out[0] < 2e-38f && out[1] >= 0 && out[1] < 2e-38f, "exp underflow: %g %g", out[0], out[1]);
    CHECK(isinf(out[2]) && isinf(out[3]), "exp overflow: %g %g", out[2], out[3]);
    free(x);
    free(y);
}

int main(void) {
    test_seed_from_env("test_selective_scan");
    /* the Mamba block's call: selective, everything on */
    config mamba = {2, 33, 40, 16, 1, 0, 1, 1, 1, 1, 1, 0, 0};
    check_forward(mamba);
    /* sizes from the issue */
    int64_t Ls[] = {1, 7, 1000}, Ns[] = {1, 3, 16, 300};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            int64_t D = Ns[j] >= 300 && Ls[i] >= 1000 ? 5 : 19;
            config c = {1, Ls[i], D, Ns[j], 1, 0, 1, 1, 1, 1, 1, 0, 0};
            check_forward(c);
            c.cplx = 1;
            check_forward(c);
        }
    /* every option on and off, each B/C kind, each layout, real and complex */
    for (int cplx = 0; cplx < 2; cplx++)
        for (int G = 0; G <= 3; G += (G == 0 ? 1 : 2))    /* invariant, 1 group, 3 groups */
            for (int bdl = 0; bdl < 2; bdl++)
                for (int opts = 0; opts < 4; opts++) {
                    config c = {3, 45, 2 * 3 * 7, 5, G, cplx, opts & 1, opts & 1, (opts >> 1) & 1,
                                opts & 1, (opts >> 1) & 1, opts == 3, bdl};
                    check_forward(c);
                }
    /* chunking with the state handed over */
    for (int cplx = 0; cplx < 2; cplx++)
        for (int bdl = 0; bdl < 2; bdl++) {
            config c = {2, 77, 21, 7, 1, cplx, 1, 1, 1, 1, 1, 0, bdl};
            check_chunking(c, 30);
            check_chunking(c, 1);
            c.G = 0;
            check_chunking(c, 64);
        }
    /* backward against finite differences */
    for (int cplx = 0; cplx < 2; cplx++)
        for (int G = 0; G <= 2; G++)
            for (int bdl = 0; bdl < 2; bdl++) {
                config c = {2, 7, 2 * 5, 3, G, cplx, 1, 1, 1, 1, 1, 1, bdl};
                check_backward(c);
            }
    config plain = {1, 9, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    check_backward(plain);
    config one = {1, 1, 17, 4, 1, 0, 1, 1, 1, 1, 1, 0, 0};
    check_backward(one);
    for (int bdl = 0; bdl < 2; bdl++) {
        /* over 2^20 state updates: the multi-threaded path */
        config c = {2, 400, 96, 16, 1, 0, 1, 1, 1, 1, 1, 1, bdl};
        check_backward_vs_reference(c);
        c.L = 150, c.D = 40;
        c.G = 2, c.N = 5, c.has_seq = 0;
        check_backward_vs_reference(c);
        c.G = 0;
        check_backward_vs_reference(c);
        c.cplx = 1, c.G = 1, c.L = 70;
        check_backward_vs_reference(c);
    }
    /* bdl with N over 16 and chunks not a multiple of 16 steps: B, C packed by 16 x 16 tiles
     * plus the leftover steps and states */
    config bdl17 = {1, 100, 20, 17, 1, 0, 1, 1, 1, 1, 1, 0, 1};
    check_forward(bdl17);
    check_backward_vs_reference(bdl17);
    /* bdl with runs of several blocks (18 per group, 16 runs) and two groups: the B, C packed
     * once per (b, g) are reused by the next block of a run and repacked for the next group */
    config runs = {2, 70, 2 * 288, 3, 2, 0, 1, 1, 1, 1, 1, 0, 1};
    check_backward_vs_reference(runs);
    config bigN = {1, 130, 3, 1100, 1, 0, 1, 1, 1, 1, 1, 1, 0};   /* N > 1024: a shorter chunk */
    check_backward_vs_reference(bigN);
    config longLN = {1, 2000, 3, 300, 1, 0, 1, 1, 1, 1, 1, 1, 0};  /* decays over 32 MiB: recomputed */
    check_backward_vs_reference(longLN);
    config det = {3, 400, 70, 16, 1, 0, 1, 1, 1, 1, 1, 0, 0};   /* over 2^20 updates: threads used */
    check_thread_invariance(det);
    det.G = 0;
    check_thread_invariance(det);
    check_exp();
    return check_summary("test_selective_scan");
}
