/* check.h - the unit-test harness: a test program is a main() that calls CHECK* and ends with
 * return check_summary(); each failed check prints file:line and the values, and the program's
 * exit status is the number of failures (capped).  tests/run.sh runs every build/tests/test_*.
 *
 *   CHECK(cond, "what")                 - a condition
 *   CHECK_CLOSE(got, want, rtol, "what") - |got - want| <= rtol * max(|want|, tiny)
 *   CHECK_REL_ERR(err, tol, "what")      - a relative error (e.g. ||a-b|| / ||b||) below tol
 */
#ifndef SSM_TEST_CHECK_H
#define SSM_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int check_total, check_failed;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        check_total++;                                                              \
        if (!(cond)) {                                                              \
            check_failed++;                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

#define CHECK_CLOSE(got, want, rtol, ...)                                           \
    do {                                                                            \
        double g_ = (double)(got), w_ = (double)(want);                             \
        double s_ = fabs(w_) > 1e-300 ? fabs(w_) : 1e-300;                          \
        check_total++;                                                              \
        if (!(fabs(g_ - w_) <= (rtol) * s_)) {                                      \
            check_failed++;                                                         \
            fprintf(stderr, "FAIL %s:%d: got %.17g, want %.17g (rel err %.3g > %.3g): ", \
                    __FILE__, __LINE__, g_, w_, fabs(g_ - w_) / s_, (double)(rtol)); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

#define CHECK_REL_ERR(err, tol, ...)                                                \
    do {                                                                            \
        double e_ = (double)(err);                                                  \
        check_total++;                                                              \
        if (!(e_ <= (tol))) {                                                       \
            check_failed++;                                                         \
            fprintf(stderr, "FAIL %s:%d: relative error %.3g > %.3g: ", __FILE__, __LINE__, \
                    e_, (double)(tol));                                             \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

/* ||a - b|| / ||b|| over n doubles (0 when both are zero). */
static inline double rel_err_f64(const double *a, const double *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}
static inline double rel_err_f32(const float *a, const double *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}

/* A small deterministic generator for test inputs (splitmix64), seeded per test run. */
static unsigned long long test_rng_state = 0x9e3779b97f4a7c15ull;
static inline void test_seed(unsigned long long s) { test_rng_state = s * 0x9e3779b97f4a7c15ull + 1; }
static inline unsigned long long test_next(void) {
    unsigned long long z = (test_rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline double test_uniform(void) { return (double)(test_next() >> 11) * 0x1p-53; }
static inline double test_normal(void) {
    double u = test_uniform(), v = test_uniform();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}
/* Seeds from SSM_TEST_SEED if set, else from the time (printed, so a failure can be replayed). */
static inline void test_seed_from_env(const char *name) {
    const char *s = getenv("SSM_TEST_SEED");
    unsigned long long seed = s ? strtoull(s, NULL, 10) : (unsigned long long)time(NULL);
    fprintf(stderr, "%s: seed %llu (set SSM_TEST_SEED to replay)\n", name, seed);
    test_seed(seed);
}

static inline int check_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_total, check_failed);
    return check_failed ? 1 : 0;
}

#endif
