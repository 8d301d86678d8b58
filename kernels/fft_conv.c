/* fft_conv.c - y = causal_conv(u, K) + D u by real FFTs of length 2L (REFERENCE.md section 5).
 *
 *   u, y, dy, du (batch, H, L); K, K2, dK, dK2 (H, L); D, dD (H).
 *
 * Zero-padding u and K to n = 2L makes the circular convolution of length n equal the linear
 * (causal) one on the first L outputs.  The bidirectional mode adds the anti-causal term
 * y[t] += sum_{s >= t} K2[s - t] u[s] (K2 applied to the reversed sequence); both kernels share
 * one circular kernel kc of length n: kc[d] = K[d], kc[(n - d) mod n] += K2[d], so it costs
 * nothing extra.  The backward pass is the adjoint: correlations instead of convolutions
 * (multiply by the conjugate spectrum).
 *
 * FFTW: plans are made once per length under fftw_planner_lock (FFTW's planner is not
 * thread-safe) and cached; all threads then run them on their own buffers with the new-array
 * execute functions (thread-safe).  Threads run over channels h; each thread transforms the
 * kernel of its channel once and then every batch row of it.
 *
 * fft_conv_direct_f64 is the O(L^2) reference the tests compare against.
 */
#include <fftw3.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fftw_cache.h"
#include "ssm_kernel.h"

static pthread_mutex_t fftw_planner_lock = PTHREAD_MUTEX_INITIALIZER;
static int fft_conv_measure;

void fft_conv_set_measure(int measure) { fft_conv_measure = measure; }

#define REAL float
#define FFTW(name) fftwf_##name
#define CONV(name) name##_f32
#include "fft_conv_template.h"
#undef REAL
#undef FFTW
#undef CONV

#define REAL double
#define FFTW(name) fftw_##name
#define CONV(name) name
#include "fft_conv_template.h"
#undef REAL
#undef FFTW
#undef CONV

/* The O(L^2) reference: u, y (batch, H, L); K, K2 (H, L) or NULL; D (H) or NULL. */
void fft_conv_direct_f64(int64_t batch, int64_t H, int64_t L, const double *u, const double *K,
                         const double *K2, const double *D, double *y) {
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < H; h++) {
            const double *ub = u + (b * H + h) * L, *k = K + h * L;
            double *yb = y + (b * H + h) * L;
            for (int64_t t = 0; t < L; t++) {
                double s = D ? D[h] * ub[t] : 0;
                for (int64_t j = 0; j <= t; j++) s += k[t - j] * ub[j];
                if (K2)
                    for (int64_t j = t; j < L; j++) s += K2[h * L + j - t] * ub[j];
                yb[t] = s;
            }
        }
}
