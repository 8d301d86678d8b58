/* complex_solve.h - the small dense complex solve of the DPLR kernels' Woodbury steps (rank <= 8),
 * shared by kernel_cauchy.c and kernel_s4_cauchy.c.  Gaussian elimination with partial pivoting
 * on a copy of a (n x n, row-major; trans: solves a^T x = b); b (n) receives the solution.
 * Returns -1 if singular. */
#ifndef SSM_COMPLEX_SOLVE_H
#define SSM_COMPLEX_SOLVE_H

#include <complex.h>
#include <math.h>

#define COMPLEX_SOLVE_MAX 8

static inline int complex_solve_small(int n, const double complex *a_in, double complex *b, int trans) {
    double complex a[COMPLEX_SOLVE_MAX * COMPLEX_SOLVE_MAX];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) a[i * n + j] = trans ? a_in[j * n + i] : a_in[i * n + j];
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++) if (cabs(a[i * n + k]) > cabs(a[p * n + k])) p = i;
        if (a[p * n + k] == 0) return -1;
        if (p != k) {
            for (int j = 0; j < n; j++) { double complex t = a[k * n + j]; a[k * n + j] = a[p * n + j]; a[p * n + j] = t; }
            double complex t = b[k]; b[k] = b[p]; b[p] = t;
        }
        for (int i = k + 1; i < n; i++) {
            double complex f = a[i * n + k] / a[k * n + k];
            for (int j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j];
            b[i] -= f * b[k];
        }
    }
    for (int k = n - 1; k >= 0; k--) {
        double complex s = b[k];
        for (int j = k + 1; j < n; j++) s -= a[k * n + j] * b[j];
        b[k] = s / a[k * n + k];
    }
    return 0;
}

#endif
