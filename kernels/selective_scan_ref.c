/* selective_scan_ref.c - the plain reference of the selective scan, in double, straight from the
 * formulas of REFERENCE.md section 7.  Slow on purpose: one channel at a time, one state at a
 * time, every state kept for the backward.  The fast float32 kernels in selective_scan.c are
 * tested against this (and this against finite differences, in tests/unit/test_selective_scan.c).
 *
 * For one batch element b and channel d (x[n] is the state, complex when complex_A):
 *     dt_t  = delta[b,t,d] + delta_bias[d];  if softplus: dt_t = log(1 + exp(dt_t)) (dt_t > 20: dt_t)
 *     x[n]  = 0 at t > 0 where seq_idx[b,t] != seq_idx[b,t-1];  x = h0[b,d] before t = 0
 *     x[n]  = exp(dt_t A[d,n]) x[n] + dt_t B[n,t] u_t
 *     y_t   = sum_n x[n] C[n,t]          (complex: 2 Re(...))
 *     out_t = (y_t + D[d] u_t) * (z ? z_t sigmoid(z_t) : 1)
 */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "selective_scan.h"

/* Offsets (in elements) of the tensors, shared by forward and backward. */
static int64_t x_at(const ssm_scan_params *p, int64_t b, int64_t t, int64_t d) {
    return b * p->x_strides.batch + t * p->x_strides.time + d * p->x_strides.channel;
}
/* B or C for channel d, state n at (b, t): selective (through bc_strides) or invariant (D, N). */
static int64_t bc_at(const ssm_scan_params *p, int64_t b, int64_t t, int64_t d, int64_t n) {
    if (p->G == 0) return d * p->N + n;
    int64_t g = d / (p->D / p->G);
    return b * p->bc_strides.batch + t * p->bc_strides.time + (g * p->N + n) * p->bc_strides.channel;
}
static int64_t h_at(const ssm_scan_params *p, int64_t b, int64_t d, int64_t n) {
    return (b * p->D + d) * p->N + n;
}
static int resets_at(const ssm_scan_params *p, int64_t b, int64_t t) {
    return p->seq_idx && t > 0 && p->seq_idx[b * p->L + t] != p->seq_idx[b * p->L + t - 1];
}
/* A complex number stored as (re, im) floats at element i. */
static double complex cget(const float *a, int64_t i) { return a[2 * i] + I * (double)a[2 * i + 1]; }
static double complex value_at(const float *a, int64_t i, int cplx) { return cplx ? cget(a, i) : a[i]; }
static void cadd(double *g, int64_t i, double complex v, int cplx) {
    if (cplx) { g[2 * i] += creal(v); g[2 * i + 1] += cimag(v); }
    else g[i] += creal(v);
}
static double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }
static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

/* Step size before and after softplus for (b, t, d). */
static double step_of(const ssm_scan_params *p, int64_t b, int64_t t, int64_t d, double *raw) {
    double r = (double)p->delta[x_at(p, b, t, d)] + (p->delta_bias ? (double)p->delta_bias[d] : 0.0);
    if (raw) *raw = r;
    return p->softplus ? softplus(r) : r;
}

/* Runs the recurrence of channel (b, d); states (L+1, N) are written to xs when not NULL (xs[0] is
 * the state before t = 0, xs[t+1] after step t), y_pre (L) gets y_t + D u_t before the gate. */
static void run_channel(const ssm_scan_params *p, int64_t b, int64_t d, double complex *x,
                        double complex *xs, double *y_pre) {
    int64_t N = p->N;
    int cplx = p->complex_A;
    for (int64_t n = 0; n < N; n++) x[n] = p->h0 ? value_at(p->h0, h_at(p, b, d, n), cplx) : 0;
    if (xs) memcpy(xs, x, (size_t)N * sizeof *x);
    for (int64_t t = 0; t < p->L; t++) {
        if (resets_at(p, b, t)) for (int64_t n = 0; n < N; n++) x[n] = 0;
        double dt = step_of(p, b, t, d, NULL), u = p->u[x_at(p, b, t, d)];
        double complex y = 0;
        for (int64_t n = 0; n < N; n++) {
            double complex A = value_at(p->A, d * N + n, cplx);
            double complex Bv = value_at(p->B, bc_at(p, b, t, d, n), cplx);
            double complex Cv = value_at(p->C, bc_at(p, b, t, d, n), cplx);
            x[n] = cexp(dt * A) * x[n] + dt * Bv * u;
            y += x[n] * Cv;
        }
        if (xs) memcpy(xs + (t + 1) * N, x, (size_t)N * sizeof *x);
        y_pre[t] = (cplx ? 2 * creal(y) : creal(y)) + (p->D_skip ? p->D_skip[d] * u : 0);
    }
}

void selective_scan_forward_ref(const ssm_scan_params *p, double *y, double *h_out) {
    const char *err = selective_scan_check(p);
    if (err) ssm_die("selective_scan_forward_ref: %s", err);
    int cplx = p->complex_A;
    double complex *x = ssm_xmalloc((size_t)(p->N ? p->N : 1) * sizeof *x);
    double *y_pre = ssm_xmalloc((size_t)(p->L ? p->L : 1) * sizeof *y_pre);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t d = 0; d < p->D; d++) {
            run_channel(p, b, d, x, NULL, y_pre);
            for (int64_t t = 0; t < p->L; t++) {
                int64_t i = x_at(p, b, t, d);
                double out = y_pre[t];
                if (p->z) out *= p->z[i] * sigmoid(p->z[i]);
                y[i] = out;
            }
            if (h_out)
                for (int64_t n = 0; n < p->N; n++) {
                    int64_t i = h_at(p, b, d, n);
                    if (cplx) { h_out[2 * i] = creal(x[n]); h_out[2 * i + 1] = cimag(x[n]); }
                    else h_out[i] = creal(x[n]);
                }
        }
    free(x);
    free(y_pre);
}

/* Backward by the chain rule through the stored states, in reverse time.  With g = dL/dx (complex:
 * dL/dRe x + i dL/dIm x), a complex product w = a x passes conj(a) g to x and conj(x) g to a. */
void selective_scan_backward_ref(const ssm_scan_params *p, const double *dy, const double *dh_out,
                                 const ssm_scan_grads_f64 *g) {
    const char *err = selective_scan_check(p);
    if (err) ssm_die("selective_scan_backward_ref: %s", err);
    int64_t N = p->N, L = p->L, D = p->D;
    int cplx = p->complex_A, cf = cplx ? 2 : 1;
    double yfac = cplx ? 2 : 1;
    /* zero the gradients that accumulate; the per-element ones are written below */
    if (g->dA) memset(g->dA, 0, (size_t)(D * N * cf) * sizeof(double));
    int64_t nbc = p->G == 0 ? D * N : 0;
    if (p->G) /* selective: the largest offset + 1 */
        nbc = (p->batch - 1) * p->bc_strides.batch + (L - 1) * p->bc_strides.time +
              (p->G * N - 1) * p->bc_strides.channel + 1;
    if (p->batch && L && N) {
        if (g->dB) memset(g->dB, 0, (size_t)(nbc * cf) * sizeof(double));
        if (g->dC) memset(g->dC, 0, (size_t)(nbc * cf) * sizeof(double));
    }
    if (g->dD_skip) memset(g->dD_skip, 0, (size_t)D * sizeof(double));
    if (g->ddelta_bias) memset(g->ddelta_bias, 0, (size_t)D * sizeof(double));

    double complex *x = ssm_xmalloc((size_t)(N ? N : 1) * sizeof *x);
    double complex *xs = ssm_xmalloc((size_t)((L + 1) * (N ? N : 1)) * sizeof *xs);
    double complex *gx = ssm_xmalloc((size_t)(N ? N : 1) * sizeof *gx);
    double *y_pre = ssm_xmalloc((size_t)(L ? L : 1) * sizeof *y_pre);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t d = 0; d < D; d++) {
            run_channel(p, b, d, x, xs, y_pre);
            for (int64_t n = 0; n < N; n++) gx[n] = dh_out ? (cplx ? dh_out[2 * h_at(p, b, d, n)] + I * dh_out[2 * h_at(p, b, d, n) + 1] : dh_out[h_at(p, b, d, n)]) : 0;
            for (int64_t t = L - 1; t >= 0; t--) {
                int64_t i = x_at(p, b, t, d);
                double u = p->u[i], raw, dt = step_of(p, b, t, d, &raw);
                /* the gate: out = y_pre * silu(z) */
                double dyp = dy[i];
                if (p->z) {
                    double zz = p->z[i], s = sigmoid(zz);
                    if (g->dz) g->dz[i] = dy[i] * y_pre[t] * s * (1 + zz * (1 - s));
                    dyp = dy[i] * zz * s;
                } else if (g->dz) g->dz[i] = 0;
                double du = p->D_skip ? dyp * p->D_skip[d] : 0;
                if (g->dD_skip) g->dD_skip[d] += dyp * u;   /* at D = 0 when there is no D */
                double ddt = 0;
                int reset = resets_at(p, b, t);
                for (int64_t n = 0; n < N; n++) {
                    double complex A = value_at(p->A, d * N + n, cplx);
                    int64_t k = bc_at(p, b, t, d, n);
                    double complex Bv = value_at(p->B, k, cplx), Cv = value_at(p->C, k, cplx);
                    double complex xt = xs[(t + 1) * N + n], xprev = reset ? 0 : xs[t * N + n];
                    double complex a = cexp(dt * A);
                    /* y_t = yfac Re(sum x C) */
                    gx[n] += yfac * dyp * conj(Cv);
                    if (g->dC) cadd(g->dC, k, yfac * dyp * conj(xt), cplx);
                    /* x_t = a x_{t-1} + dt u B */
                    if (g->dB) cadd(g->dB, k, dt * u * gx[n], cplx);
                    double gBu = creal(gx[n] * conj(Bv));
                    ddt += gBu * u;
                    du += gBu * dt;
                    double complex ga = gx[n] * conj(xprev);     /* dL/da */
                    if (g->dA) cadd(g->dA, d * N + n, dt * conj(a) * ga, cplx);
                    ddt += creal(ga * conj(A * a));
                    gx[n] = reset ? 0 : conj(a) * gx[n];
                }
                if (g->du) g->du[i] = du;
                double dd = ddt * (p->softplus && raw <= 20 ? sigmoid(raw) : 1);
                if (g->ddelta) g->ddelta[i] = dd;
                if (g->ddelta_bias) g->ddelta_bias[d] += dd;
            }
            if (g->dh0)
                for (int64_t n = 0; n < N; n++) {
                    int64_t k = h_at(p, b, d, n);
                    if (cplx) { g->dh0[2 * k] = creal(gx[n]); g->dh0[2 * k + 1] = cimag(gx[n]); }
                    else g->dh0[k] = creal(gx[n]);
                }
        }
    free(x);
    free(xs);
    free(gx);
    free(y_pre);
}
