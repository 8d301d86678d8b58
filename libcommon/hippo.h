/* hippo.h - the continuous-time initializations of an SSM: HiPPO matrices (LegS, LegT, LagT, FouT)
 * with their input vector B and low-rank correction P, the diagonal S4D initializations, Mamba's
 * S4D-real, a Gaussian "random" init, and the seeded random draws of C, D, B and dt.
 * Math: ../shared/REFERENCE.md sections 2 and 3.
 *
 * Conventions (stated once):
 *   - Matrices are row-major doubles: A is (N, N) with A[n*N + k] = A[n, k]; P is (r, N).
 *   - Complex values are interleaved (re, im) doubles.  Diagonal complex inits store M = N/2 modes,
 *     one of each conjugate pair (the one with Im >= 0).
 *
 * Random numbers (documented so that any implementation can reproduce them):
 *   Each purpose draws from its own stream, so that e.g. C does not change when dt is drawn or
 *   given.  A stream is splitmix64 started at state = seed XOR (tag * 0xD1B54A32D192ED03), where
 *   tag is SSM_RNG_C = 1, SSM_RNG_B = 2, SSM_RNG_A = 3, SSM_RNG_D = 4, SSM_RNG_DT = 5.  One step:
 *       state += 0x9E3779B97F4A7C15; z = state;
 *       z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *       return z ^ (z >> 31)
 *   uniform u = (next >> 11) * 2^-53 in [0, 1); normal = sqrt(-2 ln u1) cos(2 pi u2) from two
 *   uniforms (u1 clamped at 1e-300), one normal per two draws.
 *   Draw order: channel-major, then index, then (re, im) for complex values.
 */
#ifndef SSM_HIPPO_H
#define SSM_HIPPO_H

#include <stdint.h>

typedef enum {
    SSM_INIT_LEGS = 0,
    SSM_INIT_LEGT,
    SSM_INIT_LAGT,
    SSM_INIT_FOUT,
    SSM_INIT_S4D_LIN,
    SSM_INIT_S4D_INV,
    SSM_INIT_S4D_REAL,
    SSM_INIT_S4D_LEGS,
    SSM_INIT_MAMBA,
    SSM_INIT_RANDOM,
    SSM_INIT_COUNT
} ssm_init_kind;

const char *ssm_init_name(int kind);              /* "legs", ...; NULL if unknown */
int ssm_init_from_name(const char *name);         /* -1 if unknown */
int ssm_init_is_hippo(int kind);                  /* legs, legt, lagt, fout */

/* ---- HiPPO matrices --------------------------------------------------------------------------
 * Rank r of the correction P such that A + P^T P... precisely A + sum_r P_r P_r^T is normal:
 * 1 for legs, lagt, fout; 2 for legt. */
int hippo_rank(int kind);
/* Fills A (N, N), B (N) and P (r, N) for a HiPPO kind, any N >= 1 (FouT with odd N has one
 * unpaired state at the end).  Returns r, or -1 if kind is not a HiPPO kind. */
int hippo_matrices(int kind, int N, double *A, double *B, double *P);

/* ---- S4D diagonal inits (REFERENCE section 3), M = N/2 complex modes -------------------------- */
void s4d_lin_A(int N, double *A);    /* A (M) complex: -1/2 + i pi m */
void s4d_inv_A(int N, double *A);    /* A (M) complex: -1/2 + i (N/pi)(N/(2m+1) - 1) */
void s4d_real_A(int N, double *A);   /* A (N) real: -(n+1) */
void mamba_A_log(int N, double *A_log); /* A_log (N) = log(n+1); A = -exp(A_log) */

/* ---- seeded random draws ---------------------------------------------------------------------- */
enum { SSM_RNG_C = 1, SSM_RNG_B = 2, SSM_RNG_A = 3, SSM_RNG_D = 4, SSM_RNG_DT = 5 };
typedef struct { uint64_t state; } ssm_rng;
void ssm_rng_init(ssm_rng *r, uint64_t seed, uint64_t tag);
uint64_t ssm_rng_next(ssm_rng *r);
double ssm_rng_uniform(ssm_rng *r);
double ssm_rng_normal(ssm_rng *r);

/* n normals of variance `var` from stream tag (real), or n complex normals with variance var/2
 * per part (2n doubles, interleaved). */
void ssm_draw_normal(uint64_t seed, uint64_t tag, int64_t n, double var, double *out);
void ssm_draw_complex_normal(uint64_t seed, uint64_t tag, int64_t n, double var, double *out);
/* dt (H): log-uniform in [dt_min, dt_max] from stream SSM_RNG_DT (u = uniform per channel,
 * dt = exp(ln dt_min + u (ln dt_max - ln dt_min))). */
void ssm_draw_dt(uint64_t seed, int64_t H, double dt_min, double dt_max, double *dt);

#endif
