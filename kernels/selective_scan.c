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
 *     chunks in reverse, recomputing the chunk's CHUNK states from its checkpoint and propagating
 *     g = dL/dx backward through them.  Memory: per thread (L / CHUNK + CHUNK + 1) * N * LANES
 *     floats of states, plus per-thread accumulators of the reduced gradients (dA, dD,
 *     ddelta_bias, dB, dC), summed at the end; nothing of size batch x L x D x N.
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

/* exp(x) in float, vectorizable: x = k ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 Taylor
 * polynomial (relative error < 2e-7 on that interval), 2^k put into the exponent bits.  Below
 * -87.3 it returns 0 (no denormals), above 88.7 +inf; NaN stays NaN. */
static inline float exp_approx(float x) {
    const float magic = 12582912.0f;   /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x < -87.3f ? -87.3f : x;
    xc = xc > 88.7f ? 88.7f : xc;
    float kf = xc * 1.44269504088896341f + magic;
    union { float f; int32_t i; } kb = {kf}, sc;
    kf -= magic;
    float r = xc - kf * 0.693145751953125f;
    r = r - kf * 1.428606765330187e-06f;
    float q = 1.0f / 720;
    q = q * r + 1.0f / 120;
    q = q * r + 1.0f / 24;
    q = q * r + 1.0f / 6;
    q = q * r + 0.5f;
    q = q * r + 1.0f;
    q = q * r + 1.0f;
    sc.i = (kb.i - 0x4B400000 + 127) << 23;   /* 0x4B400000 is the bit pattern of magic */
    float e = q * sc.f;
    e = x < -87.3f ? 0.0f : e;
    e = x > 88.7f ? INFINITY : e;
    return e;
}
static inline float softplus_f(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static inline float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

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
    s.chunk = p->chunk > 0 ? p->chunk : DEFAULT_CHUNK;
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
    /* per chunk, (T, LANES): step, step * u, u, softplus' of the raw step, pre-gate output */
    float *dt, *dtu, *u, *dspd, *ypre, *dyp;
    /* backward per chunk, (T, LANES): du and ddelta */
    float *du, *ddelta;
    /* selective B, C of the chunk, (T, N) */
    float *Bsr, *Bsi, *Csr, *Csi;
    unsigned char *reset;
    /* states: current (N, LANES); backward: chunk states (T + 1, N, LANES), checkpoints, g */
    float *xr, *xi, *xsr, *xsi, *ckr, *cki, *gr, *gi;
    /* backward accumulators per lane (N, LANES) and per block */
    float *dAr, *dAi, *dBr, *dBi, *dCr, *dCi;
} workspace;

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
    w->dt = alloc_floats(T * LANES); w->dtu = alloc_floats(T * LANES); w->u = alloc_floats(T * LANES);
    w->dspd = alloc_floats(T * LANES); w->ypre = alloc_floats(T * LANES); w->dyp = alloc_floats(T * LANES);
    w->du = alloc_floats(T * LANES); w->ddelta = alloc_floats(T * LANES);
    w->Bsr = alloc_floats(T * N); w->Csr = alloc_floats(T * N);
    w->reset = ssm_xcalloc((size_t)T, 1);
    if (cplx) {
        w->Ai = alloc_floats(NW); w->Bi = alloc_floats(NW); w->Ci = alloc_floats(NW);
        w->xi = alloc_floats(NW); w->Bsi = alloc_floats(T * N); w->Csi = alloc_floats(T * N);
    }
    if (backward) {
        int64_t nck = (p->L + T - 1) / T;
        w->xsr = alloc_floats((T + 1) * NW); w->ckr = alloc_floats(nck * NW); w->gr = alloc_floats(NW);
        w->dAr = alloc_floats(NW); w->dBr = alloc_floats(NW); w->dCr = alloc_floats(NW);
        if (cplx) {
            w->xsi = alloc_floats((T + 1) * NW); w->cki = alloc_floats(nck * NW); w->gi = alloc_floats(NW);
            w->dAi = alloc_floats(NW); w->dBi = alloc_floats(NW); w->dCi = alloc_floats(NW);
        }
    }
}
static void ws_free(workspace *w) {
    float *all[] = {w->Ar, w->Ai, w->Br, w->Bi, w->Cr, w->Ci, w->dt, w->dtu, w->u, w->dspd, w->ypre,
                    w->dyp, w->du, w->ddelta, w->Bsr, w->Bsi, w->Csr, w->Csi, w->xr, w->xi, w->xsr, w->xsi, w->ckr,
                    w->cki, w->gr, w->gi, w->dAr, w->dAi, w->dBr, w->dBi, w->dCr, w->dCi};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(w->reset);
}

/* Loads the block's A (and invariant B, C) as (N, LANES), padding lanes with 0. */
static void load_block_params(const scan_plan *s, workspace *w, int64_t d0, int nd) {
    const ssm_scan_params *p = s->p;
    int64_t N = p->N;
    int cplx = p->complex_A;
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
    for (int l = 0; l < nd; l++)
        for (int64_t n = 0; n < N; n++) {
            int64_t k = ((b * p->D) + d0 + l) * N + n, o = n * LANES + l;
            if (!p->complex_A) h[k] = w->xr[o];
            else { h[2 * k] = w->xr[o]; h[2 * k + 1] = w->xi[o]; }
        }
}

/* Packs time steps [t0, t0 + tn) of block (b, g, d0): steps, u, selective B and C, resets. */
static void pack_chunk(const scan_plan *s, workspace *w, int64_t b, int64_t g, int64_t d0, int nd,
                       int64_t t0, int tn) {
    const ssm_scan_params *p = s->p;
    for (int t = 0; t < tn; t++) {
        for (int l = 0; l < LANES; l++) {
            float dt = 0, u = 0, spd = 0;
            if (l < nd) {
                int64_t i = x_at(p, b, t0 + t, d0 + l);
                float raw = p->delta[i] + (p->delta_bias ? p->delta_bias[d0 + l] : 0.0f);
                dt = raw, spd = 1;
                if (p->softplus && raw <= 20.0f) { dt = softplus_f(raw); spd = sigmoid_f(raw); }
                u = p->u[i];
            }
            w->dt[t * LANES + l] = dt;
            w->dtu[t * LANES + l] = dt * u;
            w->u[t * LANES + l] = u;
            w->dspd[t * LANES + l] = spd;
        }
        int64_t tt = t0 + t;
        w->reset[t] = p->seq_idx && tt > 0 && p->seq_idx[b * p->L + tt] != p->seq_idx[b * p->L + tt - 1];
    }
    if (p->G == 0) return;
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

/* Real A: runs tn steps from the state w->xr.  ypre (T, LANES) gets sum_n x C (before D and the
 * gate); xs (when not NULL) gets the state after each step, (tn, N, LANES). */
static void chunk_forward_real(workspace *w, int selective, int tn, float *restrict ypre,
                               float *restrict xs) {
    const int64_t N = w->N;
    float *restrict x = w->xr;
    const float *restrict A = w->Ar;
    for (int t = 0; t < tn; t++) {
        if (w->reset[t]) memset(x, 0, (size_t)(N * LANES) * sizeof(float));
        const float *restrict dt = w->dt + t * LANES, *restrict dtu = w->dtu + t * LANES;
        float y[LANES] = {0};
        if (selective) {
            const float *restrict Bt = w->Bsr + t * N, *restrict Ct = w->Csr + t * N;
            for (int64_t n = 0; n < N; n++) {
                float *restrict xn = x + n * LANES;
                const float *restrict An = A + n * LANES;
                const float bn = Bt[n], cn = Ct[n];
#pragma omp simd
                for (int l = 0; l < LANES; l++) {
                    float v = exp_approx(dt[l] * An[l]) * xn[l] + dtu[l] * bn;
                    xn[l] = v;
                    y[l] += v * cn;
                }
            }
        } else {
            for (int64_t n = 0; n < N; n++) {
                float *restrict xn = x + n * LANES;
                const float *restrict An = A + n * LANES, *restrict Bn = w->Br + n * LANES,
                                      *restrict Cn = w->Cr + n * LANES;
#pragma omp simd
                for (int l = 0; l < LANES; l++) {
                    float v = exp_approx(dt[l] * An[l]) * xn[l] + dtu[l] * Bn[l];
                    xn[l] = v;
                    y[l] += v * Cn[l];
                }
            }
        }
        if (ypre) memcpy(ypre + t * LANES, y, sizeof y);
        if (xs) memcpy(xs + (int64_t)t * N * LANES, x, (size_t)(N * LANES) * sizeof(float));
    }
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
    else chunk_forward_real(w, s->p->G != 0, tn, ypre, xsr);
}

/* ---- forward ------------------------------------------------------------------------------------- */

static int thread_count(const ssm_scan_params *p) { return p->threads > 0 ? p->threads : omp_get_max_threads(); }

void selective_scan_forward(const ssm_scan_params *p, float *y, float *h_out) {
    const char *err = selective_scan_check(p);
    if (err) ssm_die("selective_scan_forward: %s", err);
    scan_plan s = make_plan(p);
    int64_t items = p->batch * s.nblocks;
#pragma omp parallel num_threads(thread_count(p)) if (items > 1)
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
            for (int64_t t0 = 0; t0 < p->L; t0 += s.chunk) {
                int tn = (int)(p->L - t0 < s.chunk ? p->L - t0 : s.chunk);
                pack_chunk(&s, &w, b, g, d0, nd, t0, tn);
                chunk_forward(&s, &w, tn, w.ypre, NULL, NULL);
                /* out = (y + D u) * silu(z), scattered back through the strides */
                for (int t = 0; t < tn; t++)
                    for (int l = 0; l < nd; l++) {
                        int64_t i = x_at(p, b, t0 + t, d0 + l);
                        float u = w.u[t * LANES + l];
                        float out = w.ypre[t * LANES + l] + (p->D_skip ? p->D_skip[d0 + l] * u : 0.0f);
                        if (p->z) out *= p->z[i] * sigmoid_f(p->z[i]);
                        y[i] = out;
                    }
            }
            if (h_out) store_state(&s, &w, b, d0, nd, h_out);
        }
        ws_free(&w);
    }
}

/* ---- backward ------------------------------------------------------------------------------------ */

/* Reduced gradients, accumulated per thread and summed at the end. */
typedef struct {
    float *dA, *dB, *dC, *dD, *dbias;
} reduced_grads;

/* Real A: backward through one chunk of tn steps.  xs holds (tn + 1, N, LANES) states: xs[0]
 * before the first step (before any reset), xs[t + 1] after step t.  g (N, LANES) is dL/dx after
 * the chunk on entry and before it on return.  Per-lane outputs go to w->du and w->ddelta
 * (softplus' applied), and the per-lane accumulators; selective dB, dC go to dBs, dCs (tn, N). */
static void chunk_backward_real(workspace *w, int selective, int tn, const float *restrict dskip,
                                float *restrict dBs, float *restrict dCs) {
    const int64_t N = w->N;
    float *restrict g = w->gr;
    const float *restrict A = w->Ar;
    for (int t = tn - 1; t >= 0; t--) {
        const float *restrict dt = w->dt + t * LANES, *restrict dtu = w->dtu + t * LANES;
        const float *restrict dyp = w->dyp + t * LANES;
        const float *restrict xt = w->xsr + (int64_t)(t + 1) * N * LANES;
        const float *restrict xp = w->xsr + (int64_t)t * N * LANES;
        const float keep = w->reset[t] ? 0.0f : 1.0f;
        float sBu[LANES] = {0}, sAa[LANES] = {0};
        for (int64_t n = 0; n < N; n++) {
            float *restrict gn = g + n * LANES, *restrict dAn = w->dAr + n * LANES;
            const float *restrict An = A + n * LANES;
            const float *restrict xtn = xt + n * LANES, *restrict xpn = xp + n * LANES;
            if (selective) {
                const float bn = w->Bsr[t * N + n], cn = w->Csr[t * N + n];
                float sB = 0, sC = 0;
#pragma omp simd reduction(+ : sB, sC)
                for (int l = 0; l < LANES; l++) {
                    float a = exp_approx(dt[l] * An[l]);
                    float gg = gn[l] + dyp[l] * cn;
                    sC += dyp[l] * xtn[l];
                    sB += gg * dtu[l];
                    sBu[l] += gg * bn;
                    float gaa = gg * keep * xpn[l] * a;
                    dAn[l] += gaa * dt[l];
                    sAa[l] += gaa * An[l];
                    gn[l] = keep * a * gg;
                }
                dBs[t * N + n] += sB;
                dCs[t * N + n] += sC;
            } else {
                float *restrict dBn = w->dBr + n * LANES, *restrict dCn = w->dCr + n * LANES;
                const float *restrict Bn = w->Br + n * LANES, *restrict Cn = w->Cr + n * LANES;
#pragma omp simd
                for (int l = 0; l < LANES; l++) {
                    float a = exp_approx(dt[l] * An[l]);
                    float gg = gn[l] + dyp[l] * Cn[l];
                    dCn[l] += dyp[l] * xtn[l];
                    dBn[l] += gg * dtu[l];
                    sBu[l] += gg * Bn[l];
                    float gaa = gg * keep * xpn[l] * a;
                    dAn[l] += gaa * dt[l];
                    sAa[l] += gaa * An[l];
                    gn[l] = keep * a * gg;
                }
            }
        }
        float *restrict du = w->du + t * LANES, *restrict dd = w->ddelta + t * LANES;
        const float *restrict u = w->u + t * LANES, *restrict spd = w->dspd + t * LANES;
        for (int l = 0; l < LANES; l++) {
            du[l] = sBu[l] * dt[l] + dyp[l] * dskip[l];
            dd[l] = (sBu[l] * u[l] + sAa[l]) * spd[l];
        }
    }
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

void selective_scan_backward(const ssm_scan_params *p, const float *dy, const float *dh_out,
                             const ssm_scan_grads *gr) {
    const char *err = selective_scan_check(p);
    if (err) ssm_die("selective_scan_backward: %s", err);
    scan_plan s = make_plan(p);
    const int64_t N = p->N, D = p->D, L = p->L, T = s.chunk;
    const int cf = s.cf, cplx = p->complex_A, selective = p->G != 0;
    /* sizes of the reduced gradients */
    int64_t nA = D * N * cf;
    int64_t nBC = selective ? p->batch * L * p->G * N * cf : nA;  /* accumulated as (batch, L, G, N) */
    int64_t items = p->batch * s.nblocks;
    int nthreads = thread_count(p);
    if (items < nthreads) nthreads = items > 0 ? (int)items : 1;
    reduced_grads *acc = ssm_xcalloc((size_t)nthreads, sizeof *acc);
    int64_t nck = (L + T - 1) / T;

#pragma omp parallel num_threads(nthreads)
    {
        int tid = omp_get_thread_num();
        reduced_grads *r = &acc[tid];
        r->dA = alloc_floats(nA);
        r->dB = alloc_floats(nBC);
        r->dC = alloc_floats(nBC);
        r->dD = alloc_floats(D);
        r->dbias = alloc_floats(D);
        workspace w;
        ws_init(&w, &s, 1);
        float *dBs = alloc_floats(T * N * cf), *dCs = alloc_floats(T * N * cf);
        const int64_t NW = N * LANES;
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) {
            int64_t b = item / s.nblocks, g, d0;
            int nd;
            block_of(&s, item % s.nblocks, &g, &d0, &nd);
            load_block_params(&s, &w, d0, nd);
            load_state(&s, &w, b, d0, nd);
            /* pass 1: checkpoints at chunk starts */
            for (int64_t c = 0; c < nck; c++) {
                int64_t t0 = c * T;
                int tn = (int)(L - t0 < T ? L - t0 : T);
                memcpy(w.ckr + c * NW, w.xr, (size_t)NW * sizeof(float));
                if (cplx) memcpy(w.cki + c * NW, w.xi, (size_t)NW * sizeof(float));
                pack_chunk(&s, &w, b, g, d0, nd, t0, tn);
                chunk_forward(&s, &w, tn, NULL, NULL, NULL);
            }
            /* pass 2: chunks in reverse */
            memset(w.gr, 0, (size_t)NW * sizeof(float));
            if (cplx) memset(w.gi, 0, (size_t)NW * sizeof(float));
            if (dh_out)
                for (int64_t n = 0; n < N; n++)
                    for (int l = 0; l < nd; l++) {
                        int64_t k = ((b * D) + d0 + l) * N + n;
                        if (cplx) { w.gr[n * LANES + l] = dh_out[2 * k]; w.gi[n * LANES + l] = dh_out[2 * k + 1]; }
                        else w.gr[n * LANES + l] = dh_out[k];
                    }
            memset(w.dAr, 0, (size_t)NW * sizeof(float));
            memset(w.dBr, 0, (size_t)NW * sizeof(float));
            memset(w.dCr, 0, (size_t)NW * sizeof(float));
            if (cplx) {
                memset(w.dAi, 0, (size_t)NW * sizeof(float));
                memset(w.dBi, 0, (size_t)NW * sizeof(float));
                memset(w.dCi, 0, (size_t)NW * sizeof(float));
            }
            float dskip[LANES] = {0};
            for (int l = 0; l < nd; l++) dskip[l] = p->D_skip ? p->D_skip[d0 + l] : 0;
            for (int64_t c = nck - 1; c >= 0; c--) {
                int64_t t0 = c * T;
                int tn = (int)(L - t0 < T ? L - t0 : T);
                pack_chunk(&s, &w, b, g, d0, nd, t0, tn);
                memcpy(w.xr, w.ckr + c * NW, (size_t)NW * sizeof(float));
                memcpy(w.xsr, w.xr, (size_t)NW * sizeof(float));
                if (cplx) {
                    memcpy(w.xi, w.cki + c * NW, (size_t)NW * sizeof(float));
                    memcpy(w.xsi, w.xi, (size_t)NW * sizeof(float));
                }
                chunk_forward(&s, &w, tn, w.ypre, w.xsr + NW, cplx ? w.xsi + NW : NULL);
                /* the gate: out = (ypre + D u) silu(z) */
                for (int t = 0; t < tn; t++)
                    for (int l = 0; l < LANES; l++) {
                        float v = 0;
                        if (l < nd) {
                            int64_t i = x_at(p, b, t0 + t, d0 + l);
                            v = dy[i];
                            if (p->z) {
                                float zz = p->z[i], sg = sigmoid_f(zz);
                                float out = w.ypre[t * LANES + l] + dskip[l] * w.u[t * LANES + l];
                                if (gr->dz) gr->dz[i] = v * out * sg * (1 + zz * (1 - sg));
                                v *= zz * sg;
                            } else if (gr->dz) gr->dz[i] = 0;
                            r->dD[d0 + l] += v * w.u[t * LANES + l];
                        }
                        w.dyp[t * LANES + l] = v;
                    }
                if (selective) {
                    memset(dBs, 0, (size_t)(T * N * cf) * sizeof(float));
                    memset(dCs, 0, (size_t)(T * N * cf) * sizeof(float));
                }
                if (cplx) chunk_backward_complex(&w, selective, tn, dskip, dBs, dCs);
                else chunk_backward_real(&w, selective, tn, dskip, dBs, dCs);
                for (int t = 0; t < tn; t++)
                    for (int l = 0; l < nd; l++) {
                        int64_t i = x_at(p, b, t0 + t, d0 + l);
                        if (gr->du) gr->du[i] = w.du[t * LANES + l];
                        if (gr->ddelta) gr->ddelta[i] = w.ddelta[t * LANES + l];
                        r->dbias[d0 + l] += w.ddelta[t * LANES + l];
                    }
                if (selective)
                    for (int t = 0; t < tn; t++) {
                        float *rb = r->dB + (((b * L) + t0 + t) * p->G + g) * N * cf;
                        float *rc = r->dC + (((b * L) + t0 + t) * p->G + g) * N * cf;
                        for (int64_t n = 0; n < N * cf; n++) {
                            rb[n] += dBs[t * N * cf + n];
                            rc[n] += dCs[t * N * cf + n];
                        }
                    }
            }
            /* per-lane accumulators into the thread's reduced gradients; dh0 */
            for (int l = 0; l < nd; l++)
                for (int64_t n = 0; n < N; n++) {
                    int64_t o = n * LANES + l, k = (d0 + l) * N + n;
                    if (!cplx) {
                        r->dA[k] += w.dAr[o];
                        if (!selective) { r->dB[k] += w.dBr[o]; r->dC[k] += w.dCr[o]; }
                        if (gr->dh0) gr->dh0[(b * D + d0 + l) * N + n] = w.gr[o];
                    } else {
                        r->dA[2 * k] += w.dAr[o]; r->dA[2 * k + 1] += w.dAi[o];
                        if (!selective) {
                            r->dB[2 * k] += w.dBr[o]; r->dB[2 * k + 1] += w.dBi[o];
                            r->dC[2 * k] += w.dCr[o]; r->dC[2 * k + 1] += w.dCi[o];
                        }
                        if (gr->dh0) {
                            int64_t h = (b * D + d0 + l) * N + n;
                            gr->dh0[2 * h] = w.gr[o]; gr->dh0[2 * h + 1] = w.gi[o];
                        }
                    }
                }
        }
        ws_free(&w);
        free(dBs);
        free(dCs);
    }
    /* sum the per-thread accumulators into the outputs */
    for (int th = 1; th < nthreads; th++) {
        for (int64_t i = 0; i < nA; i++) acc[0].dA[i] += acc[th].dA[i];
        for (int64_t i = 0; i < nBC; i++) { acc[0].dB[i] += acc[th].dB[i]; acc[0].dC[i] += acc[th].dC[i]; }
        for (int64_t i = 0; i < D; i++) { acc[0].dD[i] += acc[th].dD[i]; acc[0].dbias[i] += acc[th].dbias[i]; }
    }
    if (gr->dA) memcpy(gr->dA, acc[0].dA, (size_t)nA * sizeof(float));
    if (gr->dD_skip) memcpy(gr->dD_skip, acc[0].dD, (size_t)D * sizeof(float));
    if (gr->ddelta_bias) memcpy(gr->ddelta_bias, acc[0].dbias, (size_t)D * sizeof(float));
    if (!selective) {
        if (gr->dB) memcpy(gr->dB, acc[0].dB, (size_t)nA * sizeof(float));
        if (gr->dC) memcpy(gr->dC, acc[0].dC, (size_t)nA * sizeof(float));
    } else {
        /* scatter (batch, L, G, N) through bc_strides */
        for (int64_t b = 0; b < p->batch; b++)
            for (int64_t t = 0; t < L; t++)
                for (int64_t g = 0; g < p->G; g++)
                    for (int64_t n = 0; n < N; n++) {
                        int64_t k = bc_sel_at(p, b, t, g, n), a = ((b * L + t) * p->G + g) * N + n;
                        for (int c = 0; c < cf; c++) {
                            if (gr->dB) gr->dB[cf * k + c] = acc[0].dB[cf * a + c];
                            if (gr->dC) gr->dC[cf * k + c] = acc[0].dC[cf * a + c];
                        }
                    }
    }
    for (int th = 0; th < nthreads; th++) {
        free(acc[th].dA); free(acc[th].dB); free(acc[th].dC); free(acc[th].dD); free(acc[th].dbias);
    }
    free(acc);
}
