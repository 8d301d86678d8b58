/* selective_scan.c - the fast float32 selective scan (forward and backward) on the CPU.
 * Semantics: REFERENCE.md section 7; the plain double version is selective_scan_ref.c.
 *
 * How the work is cut:
 *   - A work item is one batch element b and a block of LANES consecutive channels d0 .. d0+nd-1
 *     (all in one group of B/C).  Threads take work items (OpenMP, dynamic schedule).
 *   - Channels are the vector lanes: every state array is (N, LANES), so the recurrence
 *         x[n][w] = exp(dt[w] A[n][w]) x[n][w] + dt[w] u[w] B[n]        (B[n] shared by the block)
 *     is one vector statement per (t, n), with no horizontal sums (y[w] += x[n][w] C[n] too).
 *     Lanes beyond nd are padding (dt = u = 0: the state stays 0) and are never written out.
 *   - Time is processed in chunks of CHUNK steps: the chunk's inputs are first packed, whatever
 *     the layout (bld, bdl or any strides), into (CHUNK, LANES) arrays, then the recurrence runs on
 *     the packed arrays, then y is gated and scattered back.
 *   - The backward stores the state at the start of every chunk (forward pass), then walks the
 *     chunks in reverse, recomputing the chunk's CHUNK states (and their decays) from its
 *     checkpoint and propagating g = dL/dx backward through them.  Memory per thread:
 *     (L / CHUNK + 4 CHUNK + 1) * N * LANES floats of states, decays and lane partials, 5 L * LANES
 *     floats of packed steps, and the decays of the whole sequence (L * N * LANES floats) when
 *     they fit in 32 MiB, which spares the second pass its exps; nothing of size
 *     batch x L x D x N.  Sums over channels and batch (dA, dD,
 *     ddelta_bias, dB, dC) go through per-work-item partials summed in a fixed order, so the
 *     gradients are the same bits whatever the thread count (selective dB, dC: one (L, N) slab
 *     per work item, at most batch * G * 16 of them).
 * exp is a float polynomial (exp_approx) that the compiler vectorizes with the lanes loop.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "selective_scan.h"

#define LANES 16            /* channels per work item: one AVX-512 vector, two AVX2 vectors */
#define DEFAULT_CHUNK 64    /* time steps per packed chunk (and per backward recompute) */

ssm_scan_strides ssm_scan_layout_bld(int64_t L, int64_t D) {
    ssm_scan_strides s = {L * D, D, 1};
    return s;
}
ssm_scan_strides ssm_scan_layout_bdl(int64_t L, int64_t D) {
    ssm_scan_strides s = {D * L, 1, L};
    return s;
}

const char *selective_scan_check(const ssm_scan_params *p) {
    if (!p) return "no parameters";
    if (p->batch < 0 || p->L < 0 || p->D < 0 || p->N < 0 || p->G < 0) return "negative size";
    if (p->G > 0 && p->D % p->G != 0) return "the number of groups G does not divide D";
    if (p->batch && p->L && p->D && (!p->u || !p->delta)) return "u and delta are required";
    if (p->D && p->N && (!p->A || (((p->batch && p->L) || p->G == 0) && (!p->B || !p->C))))
        return "A, B and C are required";
    if (p->chunk < 0) return "negative chunk";
    return NULL;
}

/* ---- elementwise helpers ------------------------------------------------------------------- */

/* Hot loops are compiled three times (AVX-512, AVX2+FMA, baseline SSE2) and the best for the CPU
 * is picked at load time (GCC's target_clones, an ifunc): the build stays -O2 with no -march, and
 * the binary runs everywhere.  Only the vectorizable real-A loops need it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SSM_NO_CLONES)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

static inline int32_t float_bits(float f) { int32_t i; memcpy(&i, &f, sizeof i); return i; }
static inline float bits_float(int32_t i) { float f; memcpy(&f, &i, sizeof f); return f; }

/* exp(x) in float, vectorizable: x = k ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 Taylor
 * polynomial (relative error < 2e-7 on that interval), 2^k put into the exponent bits.
 * The argument is first clamped to [-87.3, 88.7] by two integer minimums on its bit pattern
 * (unsigned for the negative side, signed for the positive side): float compares would keep GCC
 * from vectorizing under the default -ftrapping-math, and these are one instruction each.
 * So: x < -87.3 gives 1.2e-38 (not 0: never a denormal), x > 88.4 gives +inf, and a NaN gives a
 * finite value (callers check their inputs; in the scan a NaN reaches the state through dt u B). */
static inline __attribute__((always_inline)) float exp_approx(float x) {
    const float magic = 12582912.0f;                        /* 1.5 * 2^23: + rounds to integer */
    const int32_t magic_bits = 0x4B400000;
    uint32_t ux = (uint32_t)float_bits(x);
    ux = ux < 0xC2AE999Au ? ux : 0xC2AE999Au;               /* x >= -87.3 */
    int32_t ix = (int32_t)ux;
    ix = ix < 0x42B16666 ? ix : 0x42B16666;                 /* x <= 88.7 */
    float xc = bits_float(ix);
    float kf = xc * 1.44269504088896341f + magic;
    int32_t k = float_bits(kf) - magic_bits;                /* round(x / ln 2), in [-126, 128] */
    kf -= magic;
    float r = xc - kf * 0.693145751953125f;                 /* ln 2 in two parts (Cody-Waite) */
    r = r - kf * 1.428606765330187e-06f;
    float q = 1.0f / 720;
    q = q * r + 1.0f / 120;
    q = q * r + 1.0f / 24;
    q = q * r + 1.0f / 6;
    q = q * r + 0.5f;
    q = q * r + 1.0f;
    q = q * r + 1.0f;
    return q * bits_float((k + 127) << 23);                 /* k = 128 makes the inf pattern */
}
VECTOR_CLONES void ssm_scan_exp_f32(const float *restrict x, float *restrict y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = exp_approx(x[i]);
}

/* softplus(x) = max(x, 0) + log1p(exp(-|x|)), with log1p(e) = 2 atanh(e / (2 + e)) summed as its
 * series (e in (0, 1] so s = e / (2 + e) <= 1/3: 9 terms leave < 1e-9 relative).  No cancellation
 * for small e, no select: for x > 20 the log term (< 2.1e-9) vanishes in x's rounding, giving x
 * exactly, as torch's threshold does. */
static inline __attribute__((always_inline)) float softplus_approx(float x) {
    float ax = fabsf(x);
    float e = exp_approx(-ax);
    float s = e / (2.0f + e), s2 = s * s;
    float q = 1.0f / 17;
    q = q * s2 + 1.0f / 15;
    q = q * s2 + 1.0f / 13;
    q = q * s2 + 1.0f / 11;
    q = q * s2 + 1.0f / 9;
    q = q * s2 + 1.0f / 7;
    q = q * s2 + 1.0f / 5;
    q = q * s2 + 1.0f / 3;
    q = q * s2 + 1.0f;
    return 0.5f * (x + ax) + 2.0f * s * q;
}
static inline __attribute__((always_inline)) float sigmoid_approx(float x) {
    return 1.0f / (1.0f + exp_approx(-x));
}

/* ---- the plan: how channels are cut into blocks ---------------------------------------------- */
typedef struct {
    const ssm_scan_params *p;
    int64_t Dg;            /* channels per group (D when B, C are time-invariant) */
    int64_t per_group;     /* blocks per group */
    int64_t nblocks;       /* blocks over all channels */
    int chunk;
    int cf;                /* floats per element of A, B, C, h: 1 real, 2 complex */
} scan_plan;

static scan_plan make_plan(const ssm_scan_params *p) {
    scan_plan s;
    s.p = p;
    int64_t G = p->G ? p->G : 1;
    s.Dg = p->D / G;
    s.per_group = (s.Dg + LANES - 1) / LANES;
    s.nblocks = s.per_group * G;
    /* the backward's chunk buffers are 4 x chunk x N x LANES floats: keep them near 16 MiB for
     * large N (no limit on N beyond memory) */
    s.chunk = p->chunk > 0 ? p->chunk : DEFAULT_CHUNK;
    if (p->chunk <= 0 && p->N > 1024) s.chunk = (int)(65536 / p->N > 8 ? 65536 / p->N : 8);
    if (p->L > 0 && s.chunk > p->L) s.chunk = (int)p->L;   /* small buffers for a decoding step */
    s.cf = p->complex_A ? 2 : 1;
    return s;
}
/* Block k: group *g, channels d0 .. d0 + nd - 1. */
static void block_of(const scan_plan *s, int64_t k, int64_t *g, int64_t *d0, int *nd) {
    *g = k / s->per_group;
    *d0 = *g * s->Dg + (k % s->per_group) * LANES;
    int64_t end = (*g + 1) * s->Dg;
    *nd = (int)(end - *d0 < LANES ? end - *d0 : LANES);
}

static inline int64_t x_at(const ssm_scan_params *p, int64_t b, int64_t t, int64_t d) {
    return b * p->x_strides.batch + t * p->x_strides.time + d * p->x_strides.channel;
}
static inline int64_t bc_sel_at(const ssm_scan_params *p, int64_t b, int64_t t, int64_t g, int64_t n) {
    return b * p->bc_strides.batch + t * p->bc_strides.time + (g * p->N + n) * p->bc_strides.channel;
}

/* ---- per-thread workspace ---------------------------------------------------------------------- */
typedef struct {
    int64_t N;
    int T;
    /* per block: A (and invariant B, C) transposed to (N, LANES); complex: re and im arrays */
    float *Ar, *Ai, *Br, *Bi, *Cr, *Ci;
    /* per chunk, (T, LANES): step, step * u, u, softplus' of the raw step, z (views into the
     * base_ arrays), pre-gate output, gradient before the gate */
    float *dt, *dtu, *u, *dspd, *z, *ypre, *dyp;
    unsigned char *reset;
    float *base_dt, *base_dtu, *base_u, *base_dspd, *base_z;
    /* backward: dyp, out (dz), du, ddelta of the whole sequence (L, LANES), viewed per chunk, so
     * that dy is gathered and dz, du, ddelta scattered one tensor at a time */
    float *base_dyp, *base_out, *base_du, *base_ddelta;
    unsigned char *base_reset;
    int has_z;
    /* the gated output (backward: dz), (T, LANES); backward per chunk: du and ddelta */
    float *out, *du, *ddelta;
    /* selective B, C of the chunk, (T, N) */
    float *Bsr, *Bsi, *Csr, *Csi;
    /* real selective B, C are read in place: at (b, t0, g, 0), strides per time step and state */
    const float *Bsel, *Csel;
    int64_t bc_t, bc_n;
    /* backward, real time-contiguous (bdl) selective B, C: packed (L, N) for the whole sequence
     * of one (b, g), reused by both passes and by the following blocks of the work item (when
     * 2 L N floats take at most 32 MiB; else NULL and packed per chunk) */
    float *Bseq, *Cseq;
    int64_t seq_b, seq_g;
    /* states: current (N, LANES); backward: chunk states (T + 1, N, LANES), checkpoints, g */
    float *xr, *xi, *xsr, *xsi, *ckr, *cki, *gr, *gi;
    float *zeros;     /* (N, LANES) zeros: the state after a reset */
    float *as;        /* backward, real A: the decays exp(dt A) of the chunk, (T, N, LANES), a view */
    float *base_as;   /* ... into this: one chunk, or the whole sequence when keep_all_a */
    int keep_all_a;
    float *hb, *hc;   /* backward, real selective: per-lane shares of dB, dC of one step, (N, LANES) */
    /* backward accumulators per lane (N, LANES) and per block */
    float *dAr, *dAi, *dBr, *dBi, *dCr, *dCi;
} workspace;

/* Points the per-chunk step arrays at chunk c of the base arrays (always 0 in the forward). */
static void ws_view_chunk(workspace *w, int64_t c) {
    int64_t o = c * w->T * LANES;
    w->dt = w->base_dt + o, w->dtu = w->base_dtu + o, w->u = w->base_u + o, w->dspd = w->base_dspd + o;
    w->z = w->has_z ? w->base_z + o : w->base_z;
    w->reset = w->base_reset + c * w->T;
    w->dyp = w->base_dyp + o, w->out = w->base_out + o, w->du = w->base_du + o, w->ddelta = w->base_ddelta + o;
    if (w->keep_all_a) w->as = w->base_as + c * w->T * w->N * LANES;
}

static float *alloc_floats(int64_t n) { return ssm_xcalloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static void ws_init(workspace *w, const scan_plan *s, int backward) {
    memset(w, 0, sizeof *w);
    const ssm_scan_params *p = s->p;
    int64_t N = p->N, NW = N * LANES, T = s->chunk;
    int cplx = p->complex_A;
    w->N = N;
    w->T = (int)T;
    w->Ar = alloc_floats(NW); w->Br = alloc_floats(NW); w->Cr = alloc_floats(NW);
    w->xr = alloc_floats(NW);
    /* the backward keeps the packed steps of the whole sequence (from its first pass), so the
     * second pass needs no gathering: (L, LANES) floats each, w->dt etc. view one chunk */
    int64_t steps = backward ? (p->L + T - 1) / T * T : T;
    w->base_dt = alloc_floats(steps * LANES); w->base_dtu = alloc_floats(steps * LANES);
    w->base_u = alloc_floats(steps * LANES); w->base_dspd = alloc_floats(steps * LANES);
    w->has_z = p->z != NULL;
    w->base_z = alloc_floats(p->z ? steps * LANES : 1);
    w->base_reset = ssm_xcalloc((size_t)steps, 1);
    w->ypre = alloc_floats(T * LANES); w->base_dyp = alloc_floats(steps * LANES);
    w->base_du = alloc_floats(steps * LANES); w->base_ddelta = alloc_floats(steps * LANES);
    w->base_out = alloc_floats(steps * LANES);
    ws_view_chunk(w, 0);
    w->Bsr = alloc_floats(T * N); w->Csr = alloc_floats(T * N);
    if (cplx) {
        w->Ai = alloc_floats(NW); w->Bi = alloc_floats(NW); w->Ci = alloc_floats(NW);
        w->xi = alloc_floats(NW); w->Bsi = alloc_floats(T * N); w->Csi = alloc_floats(T * N);
    }
    if (backward) {
        int64_t nck = (p->L + T - 1) / T;
        w->xsr = alloc_floats((T + 1) * NW); w->ckr = alloc_floats(nck * NW); w->gr = alloc_floats(NW);
        w->zeros = alloc_floats(NW);
        /* the decays of the whole sequence when they take at most 32 MiB per thread: then the
         * second pass computes no exp */
        w->keep_all_a = !cplx && (double)nck * T * NW * sizeof(float) <= 32.0 * (1 << 20);
        if (!cplx) { w->base_as = w->as = alloc_floats((w->keep_all_a ? nck : 1) * T * NW); w->hb = alloc_floats(NW); w->hc = alloc_floats(NW); }
        w->dAr = alloc_floats(NW); w->dBr = alloc_floats(NW); w->dCr = alloc_floats(NW);
        w->seq_b = w->seq_g = -1;
        if (!cplx && p->G != 0 && p->bc_strides.time == 1 && p->bc_strides.channel != 1 && N > 1 &&
            2.0 * (double)p->L * N * sizeof(float) <= 32.0 * (1 << 20)) {
            w->Bseq = alloc_floats(p->L * N);
            w->Cseq = alloc_floats(p->L * N);
        }
        if (cplx) {
            w->xsi = alloc_floats((T + 1) * NW); w->cki = alloc_floats(nck * NW); w->gi = alloc_floats(NW);
            w->dAi = alloc_floats(NW); w->dBi = alloc_floats(NW); w->dCi = alloc_floats(NW);
        }
    }
}
static void ws_free(workspace *w) {
    float *all[] = {w->Ar, w->Ai, w->Br, w->Bi, w->Cr, w->Ci, w->base_dt, w->base_dtu, w->base_u,
                    w->base_dspd, w->base_z, w->ypre, w->base_dyp, w->base_du, w->base_ddelta, w->base_out, w->Bseq, w->Cseq, w->Bsr, w->Bsi, w->Csr, w->Csi, w->xr, w->xi, w->xsr, w->xsi, w->ckr,
                    w->cki, w->gr, w->gi, w->zeros, w->base_as, w->hb, w->hc, w->dAr, w->dAi, w->dBr, w->dBi, w->dCr, w->dCi};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(w->base_reset);
}

/* GCC vector extensions (lowered to the target's shuffles in each compiled variant). */
typedef float v16sf __attribute__((vector_size(64)));
typedef int32_t v16si __attribute__((vector_size(64)));

/* Transposes a 16 x 16 tile: row i of src (16 floats at src + i * ss) becomes column i of dst
 * (row j at dst + j * ds).  Four stages; stage s swaps bit s of the row and the column index
 * between rows i and i + 2^s, two two-source shuffles per pair of rows. */
VECTOR_CLONES static void transpose16(const float *restrict src, int64_t ss, float *restrict dst, int64_t ds) {
    v16sf r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) memcpy(&r[i], src + i * ss, sizeof r[i]);
#define STAGE(h, lo, hi)                                                              \
    _Pragma("GCC unroll 16")                                                          \
    for (int i = 0; i < 16; i++)                                                      \
        if (!(i & (h))) {                                                             \
            v16sf a = r[i], b = r[i + (h)];                                           \
            r[i] = __builtin_shuffle(a, b, (v16si)lo);                                \
            r[i + (h)] = __builtin_shuffle(a, b, (v16si)hi);                          \
        }
    STAGE(1, ((v16si){0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}),
          ((v16si){1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}))
    STAGE(2, ((v16si){0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}),
          ((v16si){2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}))
    STAGE(4, ((v16si){0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}),
          ((v16si){4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}))
    STAGE(8, ((v16si){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}),
          ((v16si){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}))
#undef STAGE
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) memcpy(dst + j * ds, &r[j], sizeof r[j]);
}

/* (N, LANES) block arrays from / to rows of a (D, N) matrix (A, invariant B and C, states):
 * lane l is row l at src + l * ss.  Full blocks go through 16 x 16 transposes. */
static void rows_to_lanes(const float *src, int64_t ss, float *dst, int64_t N, int nd) {
    int64_t n0 = 0;
    if (nd == LANES)
        for (; n0 + 16 <= N; n0 += 16) transpose16(src + n0, ss, dst + n0 * LANES, LANES);
    for (int64_t n = n0; n < N; n++)
        for (int l = 0; l < LANES; l++) dst[n * LANES + l] = l < nd ? src[l * ss + n] : 0.0f;
}
static void lanes_to_rows(const float *src, float *dst, int64_t ds, int64_t N, int nd) {
    int64_t n0 = 0;
    if (nd == LANES)
        for (; n0 + 16 <= N; n0 += 16) transpose16(src + n0 * LANES, LANES, dst + n0, ds);
    for (int64_t n = n0; n < N; n++)
        for (int l = 0; l < nd; l++) dst[l * ds + n] = src[n * LANES + l];
}

/* Loads the block's A (and invariant B, C) as (N, LANES), padding lanes with 0. */
static void load_block_params(const scan_plan *s, workspace *w, int64_t d0, int nd) {
    const ssm_scan_params *p = s->p;
    int64_t N = p->N;
    int cplx = p->complex_A;
    if (!cplx) {
        rows_to_lanes(p->A + d0 * N, N, w->Ar, N, nd);
        if (p->G == 0) {
            rows_to_lanes(p->B + d0 * N, N, w->Br, N, nd);
            rows_to_lanes(p->C + d0 * N, N, w->Cr, N, nd);
        }
        return;
    }
    for (int64_t n = 0; n < N; n++)
        for (int l = 0; l < LANES; l++) {
            int64_t k = (d0 + l) * N + n, o = n * LANES + l;
            int live = l < nd;
            if (!cplx) {
                w->Ar[o] = live ? p->A[k] : 0;
                if (p->G == 0) { w->Br[o] = live ? p->B[k] : 0; w->Cr[o] = live ? p->C[k] : 0; }
            } else {
                w->Ar[o] = live ? p->A[2 * k] : 0; w->Ai[o] = live ? p->A[2 * k + 1] : 0;
                if (p->G == 0) {
                    w->Br[o] = live ? p->B[2 * k] : 0; w->Bi[o] = live ? p->B[2 * k + 1] : 0;
                    w->Cr[o] = live ? p->C[2 * k] : 0; w->Ci[o] = live ? p->C[2 * k + 1] : 0;
                }
            }
        }
}

/* Initial state of block (b, d0): h0 or zeros. */
static void load_state(const scan_plan *s, workspace *w, int64_t b, int64_t d0, int nd) {
    const ssm_scan_params *p = s->p;
    int64_t N = p->N;
    if (!p->complex_A) {
        if (p->h0) rows_to_lanes(p->h0 + (b * p->D + d0) * N, N, w->xr, N, nd);
        else memset(w->xr, 0, (size_t)(N * LANES) * sizeof(float));
        return;
    }
    for (int64_t n = 0; n < N; n++)
        for (int l = 0; l < LANES; l++) {
            int64_t k = ((b * p->D) + d0 + l) * N + n, o = n * LANES + l;
            int live = l < nd && p->h0;
            if (!p->complex_A) w->xr[o] = live ? p->h0[k] : 0;
            else { w->xr[o] = live ? p->h0[2 * k] : 0; w->xi[o] = live ? p->h0[2 * k + 1] : 0; }
        }
}
static void store_state(const scan_plan *s, const workspace *w, int64_t b, int64_t d0, int nd,
                        float *h) {
    const ssm_scan_params *p = s->p;
    int64_t N = p->N;
    if (!p->complex_A) {
        lanes_to_rows(w->xr, h + (b * p->D + d0) * N, N, N, nd);
        return;
    }
    for (int l = 0; l < nd; l++)
        for (int64_t n = 0; n < N; n++) {
            int64_t k = ((b * p->D) + d0 + l) * N + n, o = n * LANES + l;
            if (!p->complex_A) h[k] = w->xr[o];
            else { h[2 * k] = w->xr[o]; h[2 * k + 1] = w->xi[o]; }
        }
}

/* Steps and their inputs of one packed chunk, vectorized over (T, LANES): from the raw delta in
 * dt, dt = softplus(delta + bias) or delta + bias; dtu = dt u; dspd = d dt / d raw. */
VECTOR_CLONES static void chunk_steps(float *restrict dt, float *restrict dtu, float *restrict dspd,
                                      const float *restrict u, const float *restrict bias, int tn,
                                      int softplus, int need_dspd) {
    for (int t = 0; t < tn; t++) {
        float *restrict d = dt + t * LANES, *restrict du = dtu + t * LANES, *restrict sp = dspd + t * LANES;
        const float *restrict ut = u + t * LANES;
        if (softplus && !need_dspd) {   /* the forward needs no derivative */
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float v = softplus_approx(d[l] + bias[l]);
                d[l] = v;
                du[l] = v * ut[l];
            }
        } else if (softplus) {
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float raw = d[l] + bias[l];
                float v = softplus_approx(raw);
                d[l] = v;
                du[l] = v * ut[l];
                sp[l] = sigmoid_approx(raw);
            }
        } else {
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float v = d[l] + bias[l];
                d[l] = v;
                du[l] = v * ut[l];
                sp[l] = 1.0f;
            }
        }
    }
}

/* out = (ypre + D u) * z sigmoid(z) (no gate when z is NULL), over (tn, LANES). */
VECTOR_CLONES static void chunk_gate(float *restrict out, const float *restrict ypre,
                                     const float *restrict u, const float *restrict z,
                                     const float *restrict dskip, int tn) {
    for (int t = 0; t < tn; t++) {
        const int o = t * LANES;
        if (z) {
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float zz = z[o + l];
                out[o + l] = (ypre[o + l] + dskip[l] * u[o + l]) * zz * sigmoid_approx(zz);
            }
        } else {
#pragma omp simd
            for (int l = 0; l < LANES; l++) out[o + l] = ypre[o + l] + dskip[l] * u[o + l];
        }
    }
}

/* Backward of the gate over (tn, LANES): dy (in dyp) becomes the gradient before the gate;
 * dz = dy (ypre + D u) sigmoid(z) (1 + z (1 - sigmoid(z))); dD_acc += dyp u. */
VECTOR_CLONES static void chunk_gate_backward(float *restrict dyp, float *restrict dz,
                                              const float *restrict ypre, const float *restrict u,
                                              const float *restrict z, const float *restrict dskip,
                                              float *restrict dD_acc, int tn) {
    for (int t = 0; t < tn; t++) {
        const int o = t * LANES;
        if (z) {
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float zz = z[o + l], sg = sigmoid_approx(zz), dy = dyp[o + l];
                float out = ypre[o + l] + dskip[l] * u[o + l];
                dz[o + l] = dy * out * sg * (1.0f + zz * (1.0f - sg));
                dyp[o + l] = dy * zz * sg;
            }
        }
#pragma omp simd
        for (int l = 0; l < LANES; l++) dD_acc[l] += dyp[o + l] * u[o + l];
    }
}

/* Gathers lanes [0, nd) of an x-shaped tensor at (b, t0 .. t0 + tn) into (tn, LANES); 0 beyond.
 * Channel-contiguous (bld) tensors are read a row at a time, time-contiguous (bdl) a lane at a time. */
static void gather_lanes(const ssm_scan_params *p, const float *src, float *restrict dst, int64_t b,
                         int64_t d0, int nd, int64_t t0, int tn) {
    const float *s = src + x_at(p, b, t0, d0);
    const int64_t st = p->x_strides.time, sc = p->x_strides.channel;
    if (nd < LANES)
        for (int t = 0; t < tn; t++) for (int l = nd; l < LANES; l++) dst[t * LANES + l] = 0;
    if (sc == 1 && nd == LANES) {
        /* a constant-size copy is inlined (a copy loop would become a memcpy call) */
        for (int t = 0; t < tn; t++) memcpy(dst + t * LANES, s + t * st, LANES * sizeof(float));
    } else if (sc == 1) {
        for (int t = 0; t < tn; t++) memcpy(dst + t * LANES, s + t * st, (size_t)nd * sizeof(float));
    } else {
        int t = 0;
        if (st == 1 && nd == LANES)   /* time-contiguous (bdl): 16 x 16 tiles transposed */
            for (; t + 16 <= tn; t += 16) transpose16(s + t, sc, dst + t * LANES, LANES);
        for (int l = 0; l < nd; l++) {
            const float *sl = s + l * sc;
            for (int tt = t; tt < tn; tt++) dst[tt * LANES + l] = sl[tt * st];
        }
    }
}
static void scatter_lanes(const ssm_scan_params *p, const float *restrict src, float *dst, int64_t b,
                          int64_t d0, int nd, int64_t t0, int tn) {
    float *d = dst + x_at(p, b, t0, d0);
    const int64_t st = p->x_strides.time, sc = p->x_strides.channel;
    if (sc == 1 && nd == LANES) {
        for (int t = 0; t < tn; t++) memcpy(d + t * st, src + t * LANES, LANES * sizeof(float));
    } else if (sc == 1) {
        for (int t = 0; t < tn; t++) memcpy(d + t * st, src + t * LANES, (size_t)nd * sizeof(float));
    } else {
        int t = 0;
        if (st == 1 && nd == LANES)
            for (; t + 16 <= tn; t += 16) transpose16(src + t * LANES, LANES, d + t, sc);
        for (int l = 0; l < nd; l++) {
            float *dl = d + l * sc;
            for (int tt = t; tt < tn; tt++) dl[tt * st] = src[tt * LANES + l];
        }
    }
}

/* Packs time steps [t0, t0 + tn) of block (b, d0): steps, u, z, resets. */
static void pack_steps(const scan_plan *s, workspace *w, int64_t b, int64_t d0, int nd, int64_t t0, int tn,
                       int need_dspd) {
    const ssm_scan_params *p = s->p;
    gather_lanes(p, p->delta, w->dt, b, d0, nd, t0, tn);
    gather_lanes(p, p->u, w->u, b, d0, nd, t0, tn);
    if (p->z) gather_lanes(p, p->z, w->z, b, d0, nd, t0, tn);
    float bias[LANES] = {0};
    if (p->delta_bias) for (int l = 0; l < nd; l++) bias[l] = p->delta_bias[d0 + l];
    chunk_steps(w->dt, w->dtu, w->dspd, w->u, bias, tn, p->softplus, need_dspd);
    for (int t = 0; t < tn; t++) {
        int64_t tt = t0 + t;
        w->reset[t] = p->seq_idx && tt > 0 && p->seq_idx[b * p->L + tt] != p->seq_idx[b * p->L + tt - 1];
    }
}

/* (tn, N) rows from N time-contiguous rows of src (row n at src + n * sn): the official layout's
 * (batch, G*N, L) B and C of one chunk, made state-contiguous.  16 x 16 tiles transposed. */
static void time_rows_to_steps(const float *src, int64_t sn, float *restrict dst, int64_t N, int tn) {
    int64_t n0 = 0;
    for (; n0 + 16 <= N; n0 += 16) {
        int t = 0;
        for (; t + 16 <= tn; t += 16) transpose16(src + n0 * sn + t, sn, dst + t * N + n0, N);
        for (; t < tn; t++)
            for (int64_t n = n0; n < n0 + 16; n++) dst[t * N + n] = src[n * sn + t];
    }
    for (int64_t n = n0; n < N; n++)
        for (int t = 0; t < tn; t++) dst[t * N + n] = src[n * sn + t];
}

/* Selective B, C of the chunk, real: read in place (pointers) when state-contiguous; in the
 * time-contiguous layout (bdl: bc_strides.time == 1) packed to (T, N) first, since the scan would
 * otherwise read 2 N scattered floats per step, 4 KiB apart when L = 1024 (all in one L1 set).
 * Complex ones are always packed (T, N). */
static void pack_bc(const scan_plan *s, workspace *w, int64_t b, int64_t g, int64_t t0, int tn) {
    const ssm_scan_params *p = s->p;
    if (p->G == 0) return;
    if (!p->complex_A) {
        w->Bsel = p->B + bc_sel_at(p, b, t0, g, 0);
        w->Csel = p->C + bc_sel_at(p, b, t0, g, 0);
        w->bc_t = p->bc_strides.time;
        w->bc_n = p->bc_strides.channel;
        if (w->bc_t == 1 && w->bc_n != 1 && p->N > 1 && w->Bseq) {
            if (w->seq_b != b || w->seq_g != g) {   /* the whole sequence, once per (b, g) */
                const float *B0 = p->B + bc_sel_at(p, b, 0, g, 0), *C0 = p->C + bc_sel_at(p, b, 0, g, 0);
                const int64_t piece = 1 << 20;
                for (int64_t s0 = 0; s0 < p->L; s0 += piece) {
                    int sn = (int)(p->L - s0 < piece ? p->L - s0 : piece);
                    time_rows_to_steps(B0 + s0, w->bc_n, w->Bseq + s0 * p->N, p->N, sn);
                    time_rows_to_steps(C0 + s0, w->bc_n, w->Cseq + s0 * p->N, p->N, sn);
                }
                w->seq_b = b, w->seq_g = g;
            }
            w->Bsel = w->Bseq + t0 * p->N, w->Csel = w->Cseq + t0 * p->N;
            w->bc_t = p->N, w->bc_n = 1;
        } else if (w->bc_t == 1 && w->bc_n != 1 && p->N > 1) {
            time_rows_to_steps(w->Bsel, w->bc_n, w->Bsr, p->N, tn);
            time_rows_to_steps(w->Csel, w->bc_n, w->Csr, p->N, tn);
            w->Bsel = w->Bsr, w->Csel = w->Csr;
            w->bc_t = p->N, w->bc_n = 1;
        }
        return;
    }
    int64_t N = p->N;
    for (int t = 0; t < tn; t++)
        for (int64_t n = 0; n < N; n++) {
            int64_t k = bc_sel_at(p, b, t0 + t, g, n);
            if (!p->complex_A) { w->Bsr[t * N + n] = p->B[k]; w->Csr[t * N + n] = p->C[k]; }
            else {
                w->Bsr[t * N + n] = p->B[2 * k]; w->Bsi[t * N + n] = p->B[2 * k + 1];
                w->Csr[t * N + n] = p->C[2 * k]; w->Csi[t * N + n] = p->C[2 * k + 1];
            }
        }
}

/* ---- the recurrence on a packed chunk ----------------------------------------------------------- */

/* Real A: runs tn steps.  Forward (recompute = 0): from and into the state w->xr; ypre (T, LANES)
 * gets sum_n x C (before D and the gate).  Recompute for the backward: xs is (tn + 1, N, LANES)
 * with xs[0] the state before the chunk; step t reads xs[t] (zeros after a reset) and writes
 * xs[t + 1].  The decays a = exp(dt A) of the chunk, (tn, N, LANES) at w->as, are stored
 * (store_a) or, when the backward's first pass stored them, read instead of computed (load_a).
 * Inlined into the compiled variants below, so that the choices cost nothing inside the loops. */
static inline __attribute__((always_inline)) void forward_real_body(
    workspace *w, int selective, int tn, float *restrict ypre, float *restrict xs, const int recompute,
    const int store_a, const int load_a) {
    const int64_t N = w->N, NW = N * LANES;
    const float *restrict A = w->Ar;
    for (int t = 0; t < tn; t++) {
        float *restrict xout = recompute ? xs + (t + 1) * NW : w->xr;
        const float *xin = recompute ? xs + t * NW : w->xr;
        if (w->reset[t]) {
            if (recompute) xin = w->zeros;
            else memset(w->xr, 0, (size_t)NW * sizeof(float));
        }
        const float *restrict dt = w->dt + t * LANES, *restrict dtu = w->dtu + t * LANES;
        float *restrict at = store_a || load_a ? w->as + (int64_t)t * NW : NULL;
        float y[LANES] = {0};
        if (selective) {
            const float *restrict Bt = w->Bsel + t * w->bc_t, *restrict Ct = w->Csel + t * w->bc_t;
            const int64_t sn = w->bc_n;
            for (int64_t n = 0; n < N; n++) {
                float *xo = xout + n * LANES;
                const float *xi = xin + n * LANES;
                const float *restrict An = A + n * LANES;
                const float bn = Bt[n * sn], cn = Ct[n * sn];
#pragma omp simd
                for (int l = 0; l < LANES; l++) {
                    float a = load_a ? at[n * LANES + l] : exp_approx(dt[l] * An[l]);
                    if (store_a) at[n * LANES + l] = a;
                    float v = a * xi[l] + dtu[l] * bn;
                    xo[l] = v;
                    y[l] += v * cn;
                }
            }
        } else {
            for (int64_t n = 0; n < N; n++) {
                float *xo = xout + n * LANES;
                const float *xi = xin + n * LANES;
                const float *restrict An = A + n * LANES, *restrict Bn = w->Br + n * LANES,
                                      *restrict Cn = w->Cr + n * LANES;
#pragma omp simd
                for (int l = 0; l < LANES; l++) {
                    float a = load_a ? at[n * LANES + l] : exp_approx(dt[l] * An[l]);
                    if (store_a) at[n * LANES + l] = a;
                    float v = a * xi[l] + dtu[l] * Bn[l];
                    xo[l] = v;
                    y[l] += v * Cn[l];
                }
            }
        }
        if (ypre) memcpy(ypre + t * LANES, y, sizeof y);
    }
}
VECTOR_CLONES static void chunk_forward_real(workspace *w, int selective, int tn, float *ypre) {
    forward_real_body(w, selective, tn, ypre, NULL, 0, 0, 0);
}
/* The backward's first pass when it keeps the decays of the whole sequence. */
VECTOR_CLONES static void chunk_forward_keep_a(workspace *w, int selective, int tn) {
    forward_real_body(w, selective, tn, NULL, NULL, 0, 1, 0);
}
/* The backward's recompute of a chunk's states: from kept decays, or computing and storing them. */
VECTOR_CLONES static void chunk_recompute_real(workspace *w, int selective, int tn, float *ypre, float *xs) {
    if (w->keep_all_a) forward_real_body(w, selective, tn, ypre, xs, 1, 0, 1);
    else forward_real_body(w, selective, tn, ypre, xs, 1, 1, 0);
}

/* Complex A (and B, C): the same with (re, im) arrays; y is 2 Re(sum_n x C). */
static void chunk_forward_complex(workspace *w, int selective, int tn, float *restrict ypre,
                                  float *restrict xsr, float *restrict xsi) {
    const int64_t N = w->N;
    float *restrict xr = w->xr, *restrict xi = w->xi;
    for (int t = 0; t < tn; t++) {
        if (w->reset[t]) {
            memset(xr, 0, (size_t)(N * LANES) * sizeof(float));
            memset(xi, 0, (size_t)(N * LANES) * sizeof(float));
        }
        const float *restrict dt = w->dt + t * LANES, *restrict dtu = w->dtu + t * LANES;
        float y[LANES] = {0};
        for (int64_t n = 0; n < N; n++) {
            float *restrict xrn = xr + n * LANES, *restrict xin = xi + n * LANES;
            const float *restrict Arn = w->Ar + n * LANES, *restrict Ain = w->Ai + n * LANES;
            for (int l = 0; l < LANES; l++) {
                float br, bi, cr, ci;
                if (selective) {
                    br = w->Bsr[t * N + n]; bi = w->Bsi[t * N + n];
                    cr = w->Csr[t * N + n]; ci = w->Csi[t * N + n];
                } else {
                    br = w->Br[n * LANES + l]; bi = w->Bi[n * LANES + l];
                    cr = w->Cr[n * LANES + l]; ci = w->Ci[n * LANES + l];
                }
                float m = exp_approx(dt[l] * Arn[l]), ph = dt[l] * Ain[l];
                float ar = m * cosf(ph), ai = m * sinf(ph);
                float vr = ar * xrn[l] - ai * xin[l] + dtu[l] * br;
                float vi = ar * xin[l] + ai * xrn[l] + dtu[l] * bi;
                xrn[l] = vr; xin[l] = vi;
                y[l] += 2 * (vr * cr - vi * ci);
            }
        }
        if (ypre) memcpy(ypre + t * LANES, y, sizeof y);
        if (xsr) {
            memcpy(xsr + (int64_t)t * N * LANES, xr, (size_t)(N * LANES) * sizeof(float));
            memcpy(xsi + (int64_t)t * N * LANES, xi, (size_t)(N * LANES) * sizeof(float));
        }
    }
}

static void chunk_forward(const scan_plan *s, workspace *w, int tn, float *ypre, float *xsr, float *xsi) {
    if (s->p->complex_A) chunk_forward_complex(w, s->p->G != 0, tn, ypre, xsr, xsi);
    else chunk_forward_real(w, s->p->G != 0, tn, ypre);
}

/* ---- forward ------------------------------------------------------------------------------------- */

/* Threads for a call: p->threads (0: OpenMP's default), but one for a small call such as a
 * decoding step (batch x L x D x N under 2^20 state updates, some 0.2 ms of work), where waking
 * other threads costs more than it saves (and much more on a busy machine). */
static int thread_count(const ssm_scan_params *p) {
    int n = p->threads > 0 ? p->threads : omp_get_max_threads();
    double work = (double)p->batch * (double)p->L * (double)p->D * (double)(p->N ? p->N : 1);
    return work < (double)(1 << 20) ? 1 : n;
}

void selective_scan_forward(const ssm_scan_params *p, float *y, float *h_out) {
    const char *err = selective_scan_check(p);
    if (err) ssm_die("selective_scan_forward: %s", err);
    scan_plan s = make_plan(p);
    int64_t items = p->batch * s.nblocks;
    int nthreads = thread_count(p);
#pragma omp parallel num_threads(nthreads) if (items > 1 && nthreads > 1)
    {
        workspace w;
        ws_init(&w, &s, 0);
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) {
            int64_t b = item / s.nblocks, g, d0;
            int nd;
            block_of(&s, item % s.nblocks, &g, &d0, &nd);
            load_block_params(&s, &w, d0, nd);
            load_state(&s, &w, b, d0, nd);
            float dskip[LANES] = {0};
            if (p->D_skip) for (int l = 0; l < nd; l++) dskip[l] = p->D_skip[d0 + l];
            for (int64_t t0 = 0; t0 < p->L; t0 += s.chunk) {
                int tn = (int)(p->L - t0 < s.chunk ? p->L - t0 : s.chunk);
                pack_steps(&s, &w, b, d0, nd, t0, tn, 0);
                pack_bc(&s, &w, b, g, t0, tn);
                chunk_forward(&s, &w, tn, w.ypre, NULL, NULL);
                /* out = (y + D u) * silu(z), scattered back through the strides */
                chunk_gate(w.out, w.ypre, w.u, p->z ? w.z : NULL, dskip, tn);
                scatter_lanes(p, w.out, y, b, d0, nd, t0, tn);
            }
            if (h_out) store_state(&s, &w, b, d0, nd, h_out);
        }
        ws_free(&w);
    }
}

/* ---- backward ------------------------------------------------------------------------------------ */


/* sums[k] += the sum of the LANES values of v[k], k < count; v is (count, LANES).  Sixteen rows at
 * a time by a transposing tree (GCC vector extensions, lowered to the target's shuffles): 15 adds
 * and 30 two-source shuffles give 16 sums, against ~15 operations for each sum on its own.  (A
 * horizontal sum per k in the scan's inner loop would be compiled to a scalar loop.) */
#define FOLD(a, b, ma, mb) (__builtin_shuffle((a), (b), (ma)) + __builtin_shuffle((a), (b), (mb)))
static inline __attribute__((always_inline)) void add_row_sums16(const float *m, float *sums) {
    const v16si m1a = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const v16si m1b = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
    const v16si m2a = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
    const v16si m2b = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
    const v16si m3a = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29};
    const v16si m3b = {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31};
    const v16si m4a = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    const v16si m4b = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    /* rows 2i, 2i+1 -> 8 partial sums each; then 4, 2, 1 (written out: arrays of vectors would
     * stay in memory at -O2) */
    v16sf r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15;
    memcpy(&r0, m, 64), memcpy(&r1, m + 16, 64), memcpy(&r2, m + 32, 64), memcpy(&r3, m + 48, 64);
    memcpy(&r4, m + 64, 64), memcpy(&r5, m + 80, 64), memcpy(&r6, m + 96, 64), memcpy(&r7, m + 112, 64);
    memcpy(&r8, m + 128, 64), memcpy(&r9, m + 144, 64), memcpy(&r10, m + 160, 64), memcpy(&r11, m + 176, 64);
    memcpy(&r12, m + 192, 64), memcpy(&r13, m + 208, 64), memcpy(&r14, m + 224, 64), memcpy(&r15, m + 240, 64);
    v16sf q0 = FOLD(FOLD(r0, r1, m1a, m1b), FOLD(r2, r3, m1a, m1b), m2a, m2b);
    v16sf q1 = FOLD(FOLD(r4, r5, m1a, m1b), FOLD(r6, r7, m1a, m1b), m2a, m2b);
    v16sf q2 = FOLD(FOLD(r8, r9, m1a, m1b), FOLD(r10, r11, m1a, m1b), m2a, m2b);
    v16sf q3 = FOLD(FOLD(r12, r13, m1a, m1b), FOLD(r14, r15, m1a, m1b), m2a, m2b);
    v16sf e0 = FOLD(q0, q1, m3a, m3b), e1 = FOLD(q2, q3, m3a, m3b);
    v16sf total = FOLD(e0, e1, m4a, m4b), old;
    memcpy(&old, sums, sizeof old);
    old += total;
    memcpy(sums, &old, sizeof old);
}
#undef FOLD
#if LANES != 16
#error "sum_lanes assumes 16 lanes"
#endif
static inline __attribute__((always_inline)) void sum_lanes(const float *restrict v, float *restrict sums,
                                                          int64_t count) {
    int64_t k = 0;
    for (; k + 16 <= count; k += 16) add_row_sums16(v + k * LANES, sums + k);
    for (; k < count; k++) {
        float acc = 0;
        for (int l = 0; l < LANES; l++) acc += v[k * LANES + l];
        sums[k] += acc;
    }
}

/* Real A: backward through one chunk of tn steps.  xs holds (tn + 1, N, LANES) states: xs[0]
 * before the first step (before any reset), xs[t + 1] after step t.  g (N, LANES) is dL/dx after
 * the chunk on entry and before it on return.  Per-lane outputs go to w->du and w->ddelta
 * (softplus' applied), and the per-lane accumulators; selective dB, dC of step t go per lane to
 * w->hb, w->hc (N, LANES), L1-resident, and are summed over the lanes into dBs, dCs (tn, N) right
 * after the step.  has_reset = 0 (no seq_idx) drops the reset mask from the inner loop. */
static inline __attribute__((always_inline)) void backward_real_body(
    workspace *w, int tn, const float *restrict dskip, const int selective, const int has_reset,
    float *restrict dBs, float *restrict dCs) {
    const int64_t N = w->N, NW = N * LANES;
    /* everything the loops touch, in locals: stores through one pointer then cannot make the
     * compiler reload the others */
    float *restrict g = w->gr, *restrict dA = w->dAr, *restrict dBi = w->dBr, *restrict dCi = w->dCr;
    float *restrict hb = w->hb, *restrict hc = w->hc;
    const float *restrict A = w->Ar, *restrict Bi = w->Br, *restrict Ci = w->Cr;
    const float *restrict as = w->as, *restrict xs = w->xsr;
    const float *restrict Bsel = w->Bsel, *restrict Csel = w->Csel;
    const int64_t bc_t = w->bc_t, bc_n = w->bc_n;
    for (int t = tn - 1; t >= 0; t--) {
        const float *restrict dt = w->dt + t * LANES, *restrict dtu = w->dtu + t * LANES;
        const float *restrict dyp = w->dyp + t * LANES;
        const float *restrict xt = xs + (t + 1) * NW, *restrict xp = xs + t * NW;
        const float *restrict at = as + t * NW;
        float *restrict hbt = hb, *restrict hct = hc;
        const float keep = has_reset && w->reset[t] ? 0.0f : 1.0f;
        float sBu[LANES] = {0}, sAa[LANES] = {0};
        for (int64_t n = 0; n < N; n++) {
            const int64_t o = n * LANES;
            float bn = 0, cn = 0;
            if (selective) bn = Bsel[t * bc_t + n * bc_n], cn = Csel[t * bc_t + n * bc_n];
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                float a = at[o + l];
                float b = selective ? bn : Bi[o + l], c = selective ? cn : Ci[o + l];
                float gg = g[o + l] + dyp[l] * c;          /* dL/dx_t */
                float dc = dyp[l] * xt[o + l], db = gg * dtu[l];
                if (selective) {   /* per-lane shares, summed over the lanes afterwards */
                    hct[o + l] = dc;
                    hbt[o + l] = db;
                } else {
                    dCi[o + l] += dc;
                    dBi[o + l] += db;
                }
                sBu[l] += gg * b;                          /* -> du, ddelta */
                float gaa = gg * keep * xp[o + l] * a;     /* dL/da * a */
                dA[o + l] += gaa * dt[l];
                sAa[l] += gaa * A[o + l];
                g[o + l] = keep * a * gg;                  /* dL/dx_{t-1} */
            }
        }
        if (selective) {   /* the lanes' shares of dB, dC summed over the block */
            sum_lanes(hbt, dBs + (int64_t)t * N, N);
            sum_lanes(hct, dCs + (int64_t)t * N, N);
        }
        float *restrict du = w->du + t * LANES, *restrict dd = w->ddelta + t * LANES;
        const float *restrict u = w->u + t * LANES, *restrict spd = w->dspd + t * LANES;
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            du[l] = sBu[l] * dt[l] + dyp[l] * dskip[l];
            dd[l] = (sBu[l] * u[l] + sAa[l]) * spd[l];
        }
    }
}
VECTOR_CLONES static void chunk_backward_real(workspace *w, int selective, int has_reset, int tn,
                                             const float *dskip, float *dBs, float *dCs) {
    if (selective && has_reset) backward_real_body(w, tn, dskip, 1, 1, dBs, dCs);
    else if (selective) backward_real_body(w, tn, dskip, 1, 0, dBs, dCs);
    else if (has_reset) backward_real_body(w, tn, dskip, 0, 1, NULL, NULL);
    else backward_real_body(w, tn, dskip, 0, 0, NULL, NULL);
}

/* Complex A, B, C: the same with g = dL/dRe x + i dL/dIm x; a product w = a x passes conj(a) g to
 * x and conj(x) g to a. */
static void chunk_backward_complex(workspace *w, int selective, int tn, const float *restrict dskip,
                                   float *restrict dBs, float *restrict dCs) {
    const int64_t N = w->N;
    for (int t = tn - 1; t >= 0; t--) {
        const float *dt = w->dt + t * LANES, *dtu = w->dtu + t * LANES, *dyp = w->dyp + t * LANES;
        const int64_t ot = (int64_t)(t + 1) * N * LANES, op = (int64_t)t * N * LANES;
        const float keep = w->reset[t] ? 0.0f : 1.0f;
        float sBu[LANES] = {0}, sAa[LANES] = {0};
        for (int64_t n = 0; n < N; n++) {
            float sBr = 0, sBi = 0, sCr = 0, sCi = 0;
            for (int l = 0; l < LANES; l++) {
                int64_t o = n * LANES + l;
                float br, bi, cr, ci;
                if (selective) {
                    br = w->Bsr[t * N + n]; bi = w->Bsi[t * N + n];
                    cr = w->Csr[t * N + n]; ci = w->Csi[t * N + n];
                } else {
                    br = w->Br[o]; bi = w->Bi[o]; cr = w->Cr[o]; ci = w->Ci[o];
                }
                float Ar = w->Ar[o], Ai = w->Ai[o];
                float m = exp_approx(dt[l] * Ar), ph = dt[l] * Ai;
                float ar = m * cosf(ph), ai = m * sinf(ph);
                /* y = 2 Re(x C): g += 2 dy conj(C); dC = 2 dy conj(x) */
                float gr = w->gr[o] + 2 * dyp[l] * cr, gi = w->gi[o] - 2 * dyp[l] * ci;
                float dcr = 2 * dyp[l] * w->xsr[ot + o], dci = -2 * dyp[l] * w->xsi[ot + o];
                float dbr = gr * dtu[l], dbi = gi * dtu[l];
                if (selective) { sCr += dcr; sCi += dci; sBr += dbr; sBi += dbi; }
                else { w->dCr[o] += dcr; w->dCi[o] += dci; w->dBr[o] += dbr; w->dBi[o] += dbi; }
                sBu[l] += gr * br + gi * bi;                       /* Re(g conj(B)) */
                float xpr = keep * w->xsr[op + o], xpi = keep * w->xsi[op + o];
                float gar = gr * xpr + gi * xpi, gai = gi * xpr - gr * xpi;     /* g conj(x_prev) */
                /* dA += dt conj(a) ga;  ddt += Re(ga conj(A a)) */
                w->dAr[o] += dt[l] * (ar * gar + ai * gai);
                w->dAi[o] += dt[l] * (ar * gai - ai * gar);
                float aar = Ar * ar - Ai * ai, aai = Ar * ai + Ai * ar;
                sAa[l] += gar * aar + gai * aai;
                w->gr[o] = keep * (ar * gr + ai * gi);                 /* conj(a) g */
                w->gi[o] = keep * (ar * gi - ai * gr);
            }
            if (selective) {
                dBs[2 * (t * N + n)] += sBr; dBs[2 * (t * N + n) + 1] += sBi;
                dCs[2 * (t * N + n)] += sCr; dCs[2 * (t * N + n) + 1] += sCi;
            }
        }
        float *du = w->du + t * LANES, *dd = w->ddelta + t * LANES;
        const float *u = w->u + t * LANES, *spd = w->dspd + t * LANES;
        for (int l = 0; l < LANES; l++) {
            du[l] = sBu[l] * dt[l] + dyp[l] * dskip[l];
            dd[l] = (sBu[l] * u[l] + sAa[l]) * spd[l];
        }
    }
}

/* Where one work item of the backward puts what is summed over work items: per batch element
 * (batch, D, N) for dA and time-invariant dB, dC, (batch, D) for dD and ddelta_bias, and for
 * selective dB, dC one (L, N) slab per work item.  Every entry is written by one work item, and
 * the sums over them run in a fixed order afterwards: the gradients do not depend on the number
 * of threads or on which thread ran what. */
typedef struct {
    float *dA, *dB, *dC, *dD, *dbias;     /* (batch, D, N [, 2]), (batch, D) */
    float *sB, *sC;                       /* selective: (items, L, N [, 2]) */
} partial_grads;

/* The backward of one block of channels (b, g, d0 .. d0 + nd - 1).  Selective dB, dC are added
 * into sB, sC, (L, N [, 2]); everything else is written. */
static void block_backward(const scan_plan *s, workspace *w, int64_t b, int64_t g, int64_t d0, int nd,
                           const float *dy, const float *dh_out, const ssm_scan_grads *gr,
                           const partial_grads *pg, float *sB, float *sC, float *dBs, float *dCs) {
    const ssm_scan_params *p = s->p;
    const int64_t N = p->N, D = p->D, L = p->L, T = s->chunk, NW = N * LANES;
    const int cf = s->cf, cplx = p->complex_A, selective = p->G != 0;
    const int64_t nck = (L + T - 1) / T;
    load_block_params(s, w, d0, nd);
    load_state(s, w, b, d0, nd);
    /* pass 1: the forward, keeping the state at every chunk start and the packed steps.  The
     * steps of the whole sequence are packed first, one input tensor after the other: in the bdl
     * layout that reads 16 rows at a time sequentially (not 48 interleaved streams). */
    const int64_t piece = T * (T < (1 << 20) ? (1 << 20) / T : 1);   /* int indices inside */
    for (int64_t t0 = 0; t0 < L; t0 += piece) {
        ws_view_chunk(w, t0 / T);
        pack_steps(s, w, b, d0, nd, t0, (int)(L - t0 < piece ? L - t0 : piece), 1);
    }
    for (int64_t c = 0; c < nck; c++) {
        int64_t t0 = c * T;
        int tn = (int)(L - t0 < T ? L - t0 : T);
        memcpy(w->ckr + c * NW, w->xr, (size_t)NW * sizeof(float));
        if (cplx) memcpy(w->cki + c * NW, w->xi, (size_t)NW * sizeof(float));
        ws_view_chunk(w, c);
        pack_bc(s, w, b, g, t0, tn);
        if (w->keep_all_a) chunk_forward_keep_a(w, selective, tn);
        else chunk_forward(s, w, tn, NULL, NULL, NULL);
    }
    /* pass 2: chunks in reverse, g = dL/dx carried backward from dh_out */
    memset(w->gr, 0, (size_t)NW * sizeof(float));
    if (cplx) memset(w->gi, 0, (size_t)NW * sizeof(float));
    if (dh_out)
        for (int64_t n = 0; n < N; n++)
            for (int l = 0; l < nd; l++) {
                int64_t k = ((b * D) + d0 + l) * N + n;
                if (cplx) { w->gr[n * LANES + l] = dh_out[2 * k]; w->gi[n * LANES + l] = dh_out[2 * k + 1]; }
                else w->gr[n * LANES + l] = dh_out[k];
            }
    memset(w->dAr, 0, (size_t)NW * sizeof(float));
    memset(w->dBr, 0, (size_t)NW * sizeof(float));
    memset(w->dCr, 0, (size_t)NW * sizeof(float));
    if (cplx) {
        memset(w->dAi, 0, (size_t)NW * sizeof(float));
        memset(w->dBi, 0, (size_t)NW * sizeof(float));
        memset(w->dCi, 0, (size_t)NW * sizeof(float));
    }
    float dskip[LANES] = {0}, dD_acc[LANES] = {0}, dbias_acc[LANES] = {0};
    for (int l = 0; l < nd; l++) dskip[l] = p->D_skip ? p->D_skip[d0 + l] : 0;
    for (int64_t t0 = 0; t0 < L; t0 += piece)   /* dy of the whole sequence */
        gather_lanes(p, dy, w->base_dyp + t0 * LANES, b, d0, nd, t0, (int)(L - t0 < piece ? L - t0 : piece));
    for (int64_t c = nck - 1; c >= 0; c--) {
        int64_t t0 = c * T;
        int tn = (int)(L - t0 < T ? L - t0 : T);
        ws_view_chunk(w, c);          /* the steps packed by pass 1 */
        pack_bc(s, w, b, g, t0, tn);
        memcpy(w->xr, w->ckr + c * NW, (size_t)NW * sizeof(float));
        memcpy(w->xsr, w->xr, (size_t)NW * sizeof(float));
        if (cplx) {
            memcpy(w->xi, w->cki + c * NW, (size_t)NW * sizeof(float));
            memcpy(w->xsi, w->xi, (size_t)NW * sizeof(float));
            chunk_forward(s, w, tn, w->ypre, w->xsr + NW, w->xsi + NW);
        } else {
            chunk_recompute_real(w, selective, tn, w->ypre, w->xsr);
        }
        /* the gate: out = (ypre + D u) silu(z) */
        chunk_gate_backward(w->dyp, w->out, w->ypre, w->u, p->z ? w->z : NULL, dskip, dD_acc, tn);
        if (cplx) {
            if (selective) {
                memset(dBs, 0, (size_t)(T * N * cf) * sizeof(float));
                memset(dCs, 0, (size_t)(T * N * cf) * sizeof(float));
            }
            chunk_backward_complex(w, selective, tn, dskip, dBs, dCs);
            if (selective)
                for (int64_t i = 0; i < tn * N * cf; i++) {
                    sB[t0 * N * cf + i] += dBs[i];
                    sC[t0 * N * cf + i] += dCs[i];
                }
        } else {   /* selective dB, dC: the lanes' sums added straight into the item's slab */
            chunk_backward_real(w, selective, p->seq_idx != NULL, tn, dskip,
                                selective ? sB + t0 * N : NULL, selective ? sC + t0 * N : NULL);
        }
        for (int t = 0; t < tn; t++)
            for (int l = 0; l < LANES; l++) dbias_acc[l] += w->ddelta[t * LANES + l];
    }
    /* dz, du, ddelta of the whole sequence, one tensor after the other */
    if (gr->dz && !p->z) memset(w->base_out, 0, (size_t)(L * LANES) * sizeof(float));
    for (int64_t t0 = 0; t0 < L; t0 += piece) {
        int tn = (int)(L - t0 < piece ? L - t0 : piece);
        if (gr->dz) scatter_lanes(p, w->base_out + t0 * LANES, gr->dz, b, d0, nd, t0, tn);
        if (gr->du) scatter_lanes(p, w->base_du + t0 * LANES, gr->du, b, d0, nd, t0, tn);
        if (gr->ddelta) scatter_lanes(p, w->base_ddelta + t0 * LANES, gr->ddelta, b, d0, nd, t0, tn);
    }
    /* the block's per-lane accumulators; dh0 */
    for (int l = 0; l < nd; l++) {
        pg->dD[b * D + d0 + l] = dD_acc[l];
        pg->dbias[b * D + d0 + l] = dbias_acc[l];
        for (int64_t n = 0; n < N; n++) {
            int64_t o = n * LANES + l, k = (b * D + d0 + l) * N + n;
            if (!cplx) {
                pg->dA[k] = w->dAr[o];
                if (!selective) { pg->dB[k] = w->dBr[o]; pg->dC[k] = w->dCr[o]; }
                if (gr->dh0) gr->dh0[k] = w->gr[o];
            } else {
                pg->dA[2 * k] = w->dAr[o]; pg->dA[2 * k + 1] = w->dAi[o];
                if (!selective) {
                    pg->dB[2 * k] = w->dBr[o]; pg->dB[2 * k + 1] = w->dBi[o];
                    pg->dC[2 * k] = w->dCr[o]; pg->dC[2 * k + 1] = w->dCi[o];
                }
                if (gr->dh0) { gr->dh0[2 * k] = w->gr[o]; gr->dh0[2 * k + 1] = w->gi[o]; }
            }
        }
    }
}

/* Work items of the backward: (b, group, one of at most MAX_BLOCK_RUNS runs of consecutive blocks
 * of the group).  A fixed cut, whatever the thread count, so that the sums are reproducible. */
#define MAX_BLOCK_RUNS 16

void selective_scan_backward(const ssm_scan_params *p, const float *dy, const float *dh_out,
                             const ssm_scan_grads *gr) {
    const char *err = selective_scan_check(p);
    if (err) ssm_die("selective_scan_backward: %s", err);
    scan_plan s = make_plan(p);
    const int64_t N = p->N, D = p->D, L = p->L, T = s.chunk, batch = p->batch;
    const int cf = s.cf, selective = p->G != 0;
    const int64_t G = p->G ? p->G : 1;
    const int64_t runs = s.per_group < MAX_BLOCK_RUNS ? s.per_group : MAX_BLOCK_RUNS;
    const int64_t items = batch * G * runs;
    partial_grads pg;
    pg.dA = alloc_floats(batch * D * N * cf);
    pg.dD = alloc_floats(batch * D);
    pg.dbias = alloc_floats(batch * D);
    pg.dB = selective ? NULL : alloc_floats(batch * D * N * cf);
    pg.dC = selective ? NULL : alloc_floats(batch * D * N * cf);
    pg.sB = selective ? alloc_floats(items * L * N * cf) : NULL;
    pg.sC = selective ? alloc_floats(items * L * N * cf) : NULL;
    int nthreads = thread_count(p);
    if (items < nthreads) nthreads = items > 0 ? (int)items : 1;

#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        workspace w;
        ws_init(&w, &s, 1);
        float *dBs = alloc_floats(T * N * cf), *dCs = alloc_floats(T * N * cf);
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) {
            int64_t b = item / (G * runs), g = item / runs % G, run = item % runs;
            int64_t k0 = run * s.per_group / runs, k1 = (run + 1) * s.per_group / runs;
            float *sB = selective ? pg.sB + item * L * N * cf : NULL;
            float *sC = selective ? pg.sC + item * L * N * cf : NULL;
            for (int64_t k = k0; k < k1; k++) {
                int64_t gg, d0;
                int nd;
                block_of(&s, g * s.per_group + k, &gg, &d0, &nd);
                block_backward(&s, &w, b, gg, d0, nd, dy, dh_out, gr, &pg, sB, sC, dBs, dCs);
            }
        }
        ws_free(&w);
        free(dBs);
        free(dCs);
    }
    /* the sums over work items, in a fixed order */
    const int64_t nA = D * N * cf;
    if (gr->dA)
        for (int64_t i = 0; i < nA; i++) {
            float acc = 0;
            for (int64_t b = 0; b < batch; b++) acc += pg.dA[b * nA + i];
            gr->dA[i] = acc;
        }
    for (int64_t d = 0; d < D; d++) {
        float aD = 0, ab = 0;
        for (int64_t b = 0; b < batch; b++) aD += pg.dD[b * D + d], ab += pg.dbias[b * D + d];
        if (gr->dD_skip) gr->dD_skip[d] = aD;
        if (gr->ddelta_bias) gr->ddelta_bias[d] = ab;
    }
    if (!selective) {
        for (int64_t i = 0; i < nA; i++) {
            float aB = 0, aC = 0;
            for (int64_t b = 0; b < batch; b++) aB += pg.dB[b * nA + i], aC += pg.dC[b * nA + i];
            if (gr->dB) gr->dB[i] = aB;
            if (gr->dC) gr->dC[i] = aC;
        }
    } else {
        /* dB[b, t, g, n] = the sum over the runs of group g (0 + run 0 + run 1 + ..., elementwise
         * over the slabs, so the loops are contiguous), scattered through bc_strides */
        const int64_t slab = L * N * cf;
        float *aB = alloc_floats(slab), *aC = alloc_floats(slab);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t g = 0; g < G; g++) {
                memset(aB, 0, (size_t)slab * sizeof(float));
                memset(aC, 0, (size_t)slab * sizeof(float));
                for (int64_t r = 0; r < runs; r++) {
                    const float *sB = pg.sB + ((b * G + g) * runs + r) * slab;
                    const float *sC = pg.sC + ((b * G + g) * runs + r) * slab;
                    for (int64_t i = 0; i < slab; i++) aB[i] += sB[i], aC[i] += sC[i];
                }
                for (int64_t t = 0; t < L; t++)
                    for (int64_t n = 0; n < N; n++) {
                        int64_t k = bc_sel_at(p, b, t, g, n);
                        for (int c = 0; c < cf; c++) {
                            if (gr->dB) gr->dB[cf * k + c] = aB[(t * N + n) * cf + c];
                            if (gr->dC) gr->dC[cf * k + c] = aC[(t * N + n) * cf + c];
                        }
                    }
            }
        free(aB);
        free(aC);
    }
    free(pg.dA); free(pg.dD); free(pg.dbias); free(pg.dB); free(pg.dC); free(pg.sB); free(pg.sC);
}
