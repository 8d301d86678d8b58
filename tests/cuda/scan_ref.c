/* scan_ref.c - the selective scan straight from REFERENCE.md section 7, in double, on the CPU:
 * the oracle of the CUDA tests (tests/cuda/run.sh builds it with nvcc alone, without libssm).
 * Inputs are host float arrays laid out as ssm_scan_params says (complex: interleaved pairs,
 * strides in complex elements); outputs are double arrays with the same layout as their inputs. */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scan_ref.h"

static double softplus_d(double x) { return x > 20 ? x : log1p(exp(x)); }

static int64_t xoff(const ssm_scan_params *p, int64_t b, int64_t t, int64_t d) {
    return b * p->x_strides.batch + t * p->x_strides.time + d * p->x_strides.channel;
}
/* float offset of the real part of B/C for (b, d, n, t) */
static int64_t bcoff(const ssm_scan_params *p, int64_t b, int64_t d, int64_t n, int64_t t) {
    int64_t o;
    if (p->G > 0) {
        int64_t g = d / (p->D / p->G);
        o = b * p->bc_strides.batch + t * p->bc_strides.time + (g * p->N + n) * p->bc_strides.channel;
    } else {
        o = d * p->N + n;
    }
    return p->complex_A ? 2 * o : o;
}

static double delta_at(const ssm_scan_params *p, int64_t b, int64_t t, int64_t d, double *raw) {
    double v = p->delta[xoff(p, b, t, d)] + (p->delta_bias ? p->delta_bias[d] : 0.0);
    if (raw) *raw = v;
    return p->softplus ? softplus_d(v) : v;
}
static int reset_at(const ssm_scan_params *p, int64_t b, int64_t t) {
    return p->seq_idx && t > 0 && p->seq_idx[b * p->L + t] != p->seq_idx[b * p->L + t - 1];
}

void scan_ref_forward(const ssm_scan_params *p, double *y, double *h_out) {
    const int64_t N = p->N, K = p->complex_A ? 2 : 1;
    double *x = malloc(sizeof(double) * N * 2);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t d = 0; d < p->D; d++) {
            for (int64_t n = 0; n < N; n++) {
                x[2 * n] = p->h0 ? p->h0[(b * p->D + d) * N * K + n * K] : 0;
                x[2 * n + 1] = p->h0 && K == 2 ? p->h0[(b * p->D + d) * N * K + n * K + 1] : 0;
            }
            for (int64_t t = 0; t < p->L; t++) {
                double dl = delta_at(p, b, t, d, NULL);
                double u = p->u[xoff(p, b, t, d)];
                if (reset_at(p, b, t)) memset(x, 0, sizeof(double) * N * 2);
                double acc = 0;
                for (int64_t n = 0; n < N; n++) {
                    int64_t o = bcoff(p, b, d, n, t);
                    if (K == 1) {
                        double a = exp(dl * p->A[d * N + n]);
                        x[2 * n] = a * x[2 * n] + dl * u * p->B[o];
                        acc += x[2 * n] * p->C[o];
                    } else {
                        double ar = p->A[2 * (d * N + n)], ai = p->A[2 * (d * N + n) + 1];
                        double m = exp(dl * ar), cr = m * cos(dl * ai), ci = m * sin(dl * ai);
                        double xr = x[2 * n], xi = x[2 * n + 1];
                        x[2 * n] = cr * xr - ci * xi + dl * u * p->B[o];
                        x[2 * n + 1] = cr * xi + ci * xr + dl * u * p->B[o + 1];
                        acc += 2 * (x[2 * n] * p->C[o] - x[2 * n + 1] * p->C[o + 1]);
                    }
                }
                double out = acc + (p->D_skip ? p->D_skip[d] * u : 0);
                if (p->z) {
                    double z = p->z[xoff(p, b, t, d)];
                    out *= z / (1 + exp(-z));
                }
                y[xoff(p, b, t, d)] = out;
            }
            if (h_out)
                for (int64_t n = 0; n < N; n++)
                    for (int64_t k = 0; k < K; k++) h_out[(b * p->D + d) * N * K + n * K + k] = x[2 * n + k];
        }
    free(x);
}

/* Backward, real or complex A (then A, B, C, h0, dh_out and dA, dB, dC, dh0 are interleaved
 * (re, im) pairs; g = dL/dRe + i dL/dIm, y = 2 Re(sum C x): a product w = a x passes conj(a) g to x
 * and conj(x) g to a).  Keeps one channel's states (L + 1, N) at a time. */
static double complex cval(const float *p, int64_t k, int cplx) {
    return cplx ? p[2 * k] + I * p[2 * k + 1] : p[k];
}
static void cacc(double *p, int64_t k, double complex v, int cplx) {
    if (cplx) { p[2 * k] += creal(v); p[2 * k + 1] += cimag(v); }
    else p[k] += creal(v);
}
void scan_ref_backward(const ssm_scan_params *p, const float *dy, const float *dh_out, scan_ref_grads *g) {
    const int64_t N = p->N, L = p->L;
    const int cplx = p->complex_A;
    const double yfac = cplx ? 2 : 1;
    double complex *xs = malloc(sizeof(double complex) * (L + 1) * N);   /* xs[t + 1] = state after step t */
    double complex *gn = malloc(sizeof(double complex) * N);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t d = 0; d < p->D; d++) {
            const int64_t h = (b * p->D + d) * N;
            for (int64_t n = 0; n < N; n++) xs[n] = p->h0 ? cval(p->h0, h + n, cplx) : 0;
            for (int64_t t = 0; t < L; t++) {
                double dl = delta_at(p, b, t, d, NULL), u = p->u[xoff(p, b, t, d)];
                int r = reset_at(p, b, t);
                for (int64_t n = 0; n < N; n++) {
                    int64_t k = bcoff(p, b, d, n, t) / (cplx ? 2 : 1);
                    double complex a = r ? 0 : cexp(dl * cval(p->A, d * N + n, cplx));
                    xs[(t + 1) * N + n] = a * xs[t * N + n] + dl * u * cval(p->B, k, cplx);
                }
            }
            for (int64_t n = 0; n < N; n++) gn[n] = dh_out ? cval(dh_out, h + n, cplx) : 0;
            for (int64_t t = L - 1; t >= 0; t--) {
                double raw, dl = delta_at(p, b, t, d, &raw), u = p->u[xoff(p, b, t, d)];
                int64_t xo = xoff(p, b, t, d);
                double yv = 0;
                for (int64_t n = 0; n < N; n++) {
                    int64_t k = bcoff(p, b, d, n, t) / (cplx ? 2 : 1);
                    yv += yfac * creal(xs[(t + 1) * N + n] * cval(p->C, k, cplx));
                }
                double o = yv + (p->D_skip ? p->D_skip[d] * u : 0);
                double dout = dy[xo], dyv = dout;
                if (p->z) {
                    double z = p->z[xo], s = 1 / (1 + exp(-z));
                    dyv = dout * z * s;
                    g->dz[xo] = dout * o * s * (1 + z * (1 - s));
                }
                double du = p->D_skip ? p->D_skip[d] * dyv : 0, ddl = 0;
                if (p->D_skip) g->dD[d] += dyv * u;
                int r = reset_at(p, b, t);
                for (int64_t n = 0; n < N; n++) {
                    int64_t k = bcoff(p, b, d, n, t) / (cplx ? 2 : 1);
                    double complex A = cval(p->A, d * N + n, cplx), a = r ? 0 : cexp(dl * A);
                    double complex Bv = cval(p->B, k, cplx), Cv = cval(p->C, k, cplx);
                    double complex gg = gn[n] + yfac * dyv * conj(Cv);
                    double complex xprev = xs[t * N + n];
                    cacc(g->dC, k, yfac * dyv * conj(xs[(t + 1) * N + n]), cplx);
                    cacc(g->dB, k, gg * dl * u, cplx);
                    double gBu = creal(gg * conj(Bv));
                    du += gBu * dl;
                    double complex ga = gg * conj(xprev);     /* dL/da */
                    ddl += gBu * u + creal(ga * conj(A * a));
                    cacc(g->dA, d * N + n, dl * conj(a) * ga, cplx);
                    gn[n] = conj(a) * gg;
                }
                if (p->softplus && raw <= 20) ddl *= 1 / (1 + exp(-raw));
                g->du[xo] = du;
                g->ddelta[xo] = ddl;
                if (p->delta_bias) g->ddelta_bias[d] += ddl;
            }
            for (int64_t n = 0; n < N; n++) {
                if (cplx) { g->dh0[2 * (h + n)] = creal(gn[n]); g->dh0[2 * (h + n) + 1] = cimag(gn[n]); }
                else g->dh0[h + n] = creal(gn[n]);
            }
        }
    free(xs);
    free(gn);
}
