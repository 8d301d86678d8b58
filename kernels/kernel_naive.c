/* kernel_naive.c - the convolution kernel by dense powers: the slow, obviously-right reference.
 * REFERENCE.md section 5 ("Naive").
 *
 *   Abar (H, N, N) row-major, Bbar (H, N), C (H, N) real  ->  K (H, L),  K_l = C Abar^l Bbar.
 *
 * x starts at Bbar and is multiplied by Abar L - 1 times: O(N^2 L) time per channel and O(N)
 * memory beyond the input (the states are not kept).  Channels run on OpenMP threads.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ssm_kernel.h"

void naive_kernel_dense(int64_t H, int64_t N, int64_t L, const double *Abar, const double *Bbar,
                        const double *C, double *K) {
#pragma omp parallel
    {
        double *x = ssm_xmalloc(sizeof(double) * (size_t)(N > 0 ? 2 * N : 1)), *xn = x + N;
#pragma omp for schedule(dynamic)
        for (int64_t h = 0; h < H; h++) {
            const double *a = Abar + h * N * N, *c = C + h * N;
            memcpy(x, Bbar + h * N, sizeof(double) * (size_t)N);
            for (int64_t l = 0; l < L; l++) {
                double s = 0;
                for (int64_t n = 0; n < N; n++) s += c[n] * x[n];
                K[h * L + l] = s;
                if (l + 1 == L) break;
                for (int64_t i = 0; i < N; i++) {   /* xn = Abar x */
                    const double *row = a + i * N;
                    double r = 0;
#pragma omp simd reduction(+ : r)
                    for (int64_t j = 0; j < N; j++) r += row[j] * x[j];
                    xn[i] = r;
                }
                memcpy(x, xn, sizeof(double) * (size_t)N);
            }
        }
        free(x);
    }
}
