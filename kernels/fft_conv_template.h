/* fft_conv_template.h - the body of fft_conv.c, instantiated once for float (fftwf_*, suffix
 * _f32) and once for double (fftw_*, no suffix).  Not a public header: fft_conv.c includes it
 * with REAL, FFTW(name), CONV(name) defined.  See fft_conv.c for the math. */

/* Cached plan pair for real transforms of length n (r2c and c2r, out of place, created on
 * fftw_malloc'd arrays so every thread's fftw_malloc'd buffers share their alignment). */
typedef struct {
    int64_t n;
    FFTW(plan) r2c, c2r;
} CONV(plan_pair);

/* Grows without eviction (a plan may be running on another thread; a process uses few lengths). */
static CONV(plan_pair) *CONV(plan_cache);
static int CONV(plan_count), CONV(plan_cap);

void CONV(fftw_cached_plans)(int64_t n, FFTW(plan) *r2c, FFTW(plan) *c2r) {
    if (n < 1 || n > INT_MAX) ssm_die("fft: a transform of length %lld is beyond FFTW's int sizes", (long long)n);
    pthread_mutex_lock(&fftw_planner_lock);   /* one lock for every FFTW planner call */
    for (int i = 0; i < CONV(plan_count); i++)
        if (CONV(plan_cache)[i].n == n) {
            *r2c = CONV(plan_cache)[i].r2c;
            *c2r = CONV(plan_cache)[i].c2r;
            pthread_mutex_unlock(&fftw_planner_lock);
            return;
        }
    REAL *x = FFTW(malloc)(sizeof(REAL) * (size_t)n);
    FFTW(complex) *X = FFTW(malloc)(sizeof(FFTW(complex)) * (size_t)(n / 2 + 1));
    if (!x || !X) ssm_die("fft convolution: out of memory for a length %lld transform", (long long)n);
    unsigned flags = (fft_conv_measure ? FFTW_MEASURE : FFTW_ESTIMATE);
    FFTW(plan) p = FFTW(plan_dft_r2c_1d)((int)n, x, X, flags);
    FFTW(plan) q = FFTW(plan_dft_c2r_1d)((int)n, X, x, flags | FFTW_DESTROY_INPUT);
    if (!p || !q) ssm_die("fft convolution: FFTW could not plan a length %lld transform", (long long)n);
    FFTW(free)(x);
    FFTW(free)(X);
    if (CONV(plan_count) == CONV(plan_cap)) {
        CONV(plan_cap) = CONV(plan_cap) ? 2 * CONV(plan_cap) : 16;
        CONV(plan_cache) = ssm_xrealloc(CONV(plan_cache), sizeof *CONV(plan_cache) * (size_t)CONV(plan_cap));
    }
    CONV(plan_cache)[CONV(plan_count)++] = (CONV(plan_pair)){n, p, q};
    *r2c = p;
    *c2r = q;
    pthread_mutex_unlock(&fftw_planner_lock);
}

/* The combined circular kernel of length n = 2L, scaled by 1/n and transformed into KF:
 * kc[d] = K[d] (d < L), kc[n - d] += K2[d] (anti-causal part; kc[0] += K2[0]). */
static void CONV(kernel_spectrum)(int64_t L, const REAL *K, const REAL *K2, REAL *kbuf,
                                  FFTW(complex) *KF, FFTW(plan) r2c) {
    int64_t n = 2 * L;
    REAL s = (REAL)1 / (REAL)n;
    for (int64_t d = 0; d < L; d++) kbuf[d] = K[d] * s;
    for (int64_t d = L; d < n; d++) kbuf[d] = 0;
    if (K2) {
        kbuf[0] += K2[0] * s;
        for (int64_t d = 1; d < L; d++) kbuf[n - d] += K2[d] * s;
    }
    FFTW(execute_dft_r2c)(r2c, kbuf, KF);
}

/* u, y (batch, H, L); K, K2 (H, L); D (H) */
void CONV(fft_conv_forward)(int64_t batch, int64_t H, int64_t L, const REAL *u, const REAL *K,
                            const REAL *K2, const REAL *D, REAL *y) {
    if (batch <= 0 || H <= 0 || L <= 0) return;
    int64_t n = 2 * L, nf = L + 1;
    FFTW(plan) r2c, c2r;
    CONV(fftw_cached_plans)(n, &r2c, &c2r);
#pragma omp parallel
    {
        REAL *buf = FFTW(malloc)(sizeof(REAL) * (size_t)n);
        FFTW(complex) *KF = FFTW(malloc)(sizeof(FFTW(complex)) * (size_t)nf);
        FFTW(complex) *UF = FFTW(malloc)(sizeof(FFTW(complex)) * (size_t)nf);
        if (!buf || !KF || !UF) ssm_die("fft convolution: out of memory (L = %lld)", (long long)L);
#pragma omp for schedule(dynamic)
        for (int64_t h = 0; h < H; h++) {
            CONV(kernel_spectrum)(L, K + h * L, K2 ? K2 + h * L : NULL, buf, KF, r2c);
            REAL d = D ? D[h] : 0;
            for (int64_t b = 0; b < batch; b++) {
                const REAL *ub = u + (b * H + h) * L;
                REAL *yb = y + (b * H + h) * L;
                memcpy(buf, ub, sizeof(REAL) * (size_t)L);
                memset(buf + L, 0, sizeof(REAL) * (size_t)L);
                FFTW(execute_dft_r2c)(r2c, buf, UF);
                for (int64_t k = 0; k < nf; k++) {
                    REAL ar = UF[k][0], ai = UF[k][1], br = KF[k][0], bi = KF[k][1];
                    UF[k][0] = ar * br - ai * bi;
                    UF[k][1] = ar * bi + ai * br;
                }
                FFTW(execute_dft_c2r)(c2r, UF, buf);
                for (int64_t t = 0; t < L; t++) yb[t] = buf[t] + d * ub[t];
            }
        }
        FFTW(free)(buf);
        FFTW(free)(KF);
        FFTW(free)(UF);
    }
}

/* dy (batch, H, L) -> du (batch, H, L), dK, dK2 (H, L), dD (H).
 * du = correlation of dy with the combined kernel (+ D dy); dkc = sum_b correlation of dy with u,
 * dK[d] = dkc[d], dK2[d] = dkc[(n - d) mod n]; dD = sum_b,t dy u. */
void CONV(fft_conv_backward)(int64_t batch, int64_t H, int64_t L, const REAL *u, const REAL *K,
                             const REAL *K2, const REAL *D, const REAL *dy, REAL *du, REAL *dK,
                             REAL *dK2, REAL *dD) {
    if (H <= 0 || L <= 0) return;
    int64_t n = 2 * L, nf = L + 1;
    FFTW(plan) r2c, c2r;
    CONV(fftw_cached_plans)(n, &r2c, &c2r);
#pragma omp parallel
    {
        REAL *buf = FFTW(malloc)(sizeof(REAL) * (size_t)n);
        FFTW(complex) *KF = FFTW(malloc)(sizeof(FFTW(complex)) * (size_t)nf);
        FFTW(complex) *UF = FFTW(malloc)(sizeof(FFTW(complex)) * (size_t)nf);
        FFTW(complex) *YF = FFTW(malloc)(sizeof(FFTW(complex)) * (size_t)nf);
        FFTW(complex) *acc = FFTW(malloc)(sizeof(FFTW(complex)) * (size_t)nf);
        if (!buf || !KF || !UF || !YF || !acc)
            ssm_die("fft convolution: out of memory (L = %lld)", (long long)L);
#pragma omp for schedule(dynamic)
        for (int64_t h = 0; h < H; h++) {
            CONV(kernel_spectrum)(L, K + h * L, K2 ? K2 + h * L : NULL, buf, KF, r2c);
            REAL d = D ? D[h] : 0;
            double dsum = 0;
            REAL s = (REAL)1 / (REAL)n;
            memset(acc, 0, sizeof(FFTW(complex)) * (size_t)nf);
            for (int64_t b = 0; b < batch; b++) {
                const REAL *ub = u + (b * H + h) * L, *dyb = dy + (b * H + h) * L;
                REAL *dub = du ? du + (b * H + h) * L : NULL;
                memcpy(buf, ub, sizeof(REAL) * (size_t)L);
                memset(buf + L, 0, sizeof(REAL) * (size_t)L);
                FFTW(execute_dft_r2c)(r2c, buf, UF);
                memcpy(buf, dyb, sizeof(REAL) * (size_t)L);
                memset(buf + L, 0, sizeof(REAL) * (size_t)L);
                FFTW(execute_dft_r2c)(r2c, buf, YF);
                for (int64_t k = 0; k < nf; k++) {   /* acc += YF conj(UF) / n */
                    REAL yr = YF[k][0], yi = YF[k][1], ur = UF[k][0], ui = UF[k][1];
                    acc[k][0] += (yr * ur + yi * ui) * s;
                    acc[k][1] += (yi * ur - yr * ui) * s;
                }
                if (dub) {
                    for (int64_t k = 0; k < nf; k++) {   /* YF *= conj(KF) (KF holds the 1/n) */
                        REAL yr = YF[k][0], yi = YF[k][1], kr = KF[k][0], ki = KF[k][1];
                        YF[k][0] = yr * kr + yi * ki;
                        YF[k][1] = yi * kr - yr * ki;
                    }
                    FFTW(execute_dft_c2r)(c2r, YF, buf);
                    for (int64_t t = 0; t < L; t++) dub[t] = buf[t] + d * dyb[t];
                }
                for (int64_t t = 0; t < L; t++) dsum += (double)dyb[t] * (double)ub[t];
            }
            if (dD) dD[h] = (REAL)dsum;
            if (dK || dK2) {
                FFTW(execute_dft_c2r)(c2r, acc, buf);
                if (dK) memcpy(dK + h * L, buf, sizeof(REAL) * (size_t)L);
                if (dK2) {
                    dK2[h * L] = buf[0];
                    for (int64_t j = 1; j < L; j++) dK2[h * L + j] = buf[n - j];
                }
            }
        }
        FFTW(free)(buf);
        FFTW(free)(KF);
        FFTW(free)(UF);
        FFTW(free)(YF);
        FFTW(free)(acc);
    }
}

/* Floating-point operations FFTW counts for one r2c + one c2r of length n (for the benchmark). */
double CONV(fft_conv_fftw_flops)(int64_t n) {
    FFTW(plan) r2c, c2r;
    CONV(fftw_cached_plans)(n, &r2c, &c2r);
    double a, m, f, total = 0;
    FFTW(flops)(r2c, &a, &m, &f);
    total += a + m + 2 * f;
    FFTW(flops)(c2r, &a, &m, &f);
    total += a + m + 2 * f;
    return total;
}

