/* ssm-scan - Mamba's selective scan (and the time-invariant diagonal recurrence) on a tensor
 * stream, forward or backward.  Argument handling and wiring only: the math is in
 * kernels/selective_scan.c (float32), kernels/selective_scan_ref.c (--reference, double) and
 * kernels/selective_scan_cuda.cu (--device cuda, float32 on the GPU).
 *
 * Reads u, delta, A, B, C and optional D, z, delta_bias, h0, seq_idx (or lengths); writes y and the
 * final state h.  --backward also reads dy (and optional dh) and writes the gradients.  The inputs
 * are written back (after the tensors passed through), so a backward pass can follow in the same
 * pipeline; an incoming tensor named like an output of this run (y, h; or the gradients) is
 * replaced.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "selective_scan.h"
#ifdef SSM_HAVE_CUDA
#include "selective_scan_cuda.h"
#endif

static const char *usage =
    "Usage: ssm-scan [OPTIONS] [FILE...]\n"
    "Mamba's selective scan (S6) on the tensors of a stream: reads u, delta, A, B, C [, D, z,\n"
    "delta_bias, h0, seq_idx | lengths] and writes y and the final state h (see ssm-scan(1)).\n"
    "\n"
    "Options:\n"
    "      --layout bdl|bld  u, delta, z, y (and selective B, C) are (batch, D, L) as in the\n"
    "                        official code [bdl, the default] or (batch, L, D) [bld]\n"
    "      --softplus        delta = softplus(delta + delta_bias)\n"
    "      --backward        also read dy [, dh]; write du, ddelta, dA, dB, dC, dD, dz,\n"
    "                        ddelta_bias, dh0 (instead of y and h)\n"
    "      --chunk N         backward: time steps recomputed per chunk (default 64)\n"
    "      --reference       use the plain double reference (slow; f64 outputs)\n"
    "      --device cpu|cuda run on the CPU [default] or an NVIDIA GPU (float32)\n"
    "  -o, --output FILE     write the stream to FILE (default stdout)\n"
    "      --threads N       threads (default: all cores);  --level N  compression 0..9\n"
    "  -q, --quiet  -v, --verbose  -h, --help  --version\n"
    "FILE '-' or no FILE reads stdin.  Exit status: 0 ok, 1 data error, 2 usage error.\n";

enum { OPT_LAYOUT = SSM_OPT_TOOL_FIRST, OPT_SOFTPLUS, OPT_BACKWARD, OPT_CHUNK, OPT_REFERENCE, OPT_DEVICE };

/* The tensors this tool reads (kept and written back) and the ones it replaces. */
static const char *input_names[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0",
                                    "seq_idx", "lengths", "dy", "dh"};
static const char *output_names[] = {"y", "h", "du", "ddelta", "dA", "dB", "dC", "dD", "dz",
                                     "ddelta_bias", "dh0"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The outputs of this run (forward: y, h; backward: the gradients) replace tensors of the same
 * name; ctx points to the backward flag. */
static int is_output(const char *name, int backward) {
    for (int i = backward ? 2 : 0; i < (backward ? COUNT(output_names) : 2); i++)
        if (!strcmp(name, output_names[i])) return 1;
    return 0;
}
static int wanted(const char *name, void *ctx) {
    for (int i = 0; i < COUNT(input_names); i++) if (!strcmp(name, input_names[i])) return 1;
    return is_output(name, *(const int *)ctx);
}

/* ---- checks that name the tensor, the expectation and what came ---------------------------- */
static void require_real_float(const ssm_tensor *t) {
    if (!ssm_dtype_is_float(t->dtype))
        ssm_die("tensor '%s': expected a real float dtype (f32, f64, f16, bf16), got %s", t->name,
                ssm_dtype_name(t->dtype));
}
static void require_same_dtype(const ssm_tensor *t, const ssm_tensor *like) {
    require_real_float(t);
    if (t->dtype != like->dtype)
        ssm_die("tensor '%s': dtype %s does not match %s's %s", t->name, ssm_dtype_name(t->dtype),
                like->name, ssm_dtype_name(like->dtype));
}
/* Real or complex float, as A: complex A makes every state-space tensor complex. */
static void require_float_or_complex(const ssm_tensor *t, int cplx) {
    if (ssm_dtype_is_complex(t->dtype) && !cplx)
        ssm_die("tensor '%s': complex (%s) but A is real", t->name, ssm_dtype_name(t->dtype));
    if (!ssm_dtype_is_complex(t->dtype)) require_real_float(t);
}

/* f32 copy of a real tensor, NaN/Inf refused. */
static float *load_real(const ssm_tensor *t) { return ssm_as_f32(t, 1); }
/* Interleaved (re, im) f32 copy (real inputs get im = 0), NaN/Inf refused. */
static float *load_complex(const ssm_tensor *t) {
    double *c = ssm_as_c128(t, 1);
    int64_t n = ssm_tensor_numel(t);
    float *f = ssm_xmalloc((size_t)(n ? n : 1) * 2 * sizeof(float));
    for (int64_t i = 0; i < 2 * n; i++) f[i] = (float)c[i];
    free(c);
    return f;
}
static float *load_params(const ssm_tensor *t, int cplx) { return cplx ? load_complex(t) : load_real(t); }

/* "[2, 16, 1024]" */
static const char *shape3(char *buf, size_t n, int64_t a, int64_t b, int64_t c) {
    snprintf(buf, n, "[%lld, %lld, %lld]", (long long)a, (long long)b, (long long)c);
    return buf;
}

/* ---- output tensors ------------------------------------------------------------------------ */
/* A new tensor of dtype `dtype` (f32 or f64; complex when cplx) with the dims of `like` (or the
 * given dims), filled from float or double data of numel(*cf) values. */
static ssm_tensor *make_output(const char *name, int real_dtype, int cplx, int rank, const int64_t *dims,
                               const float *f, const double *d) {
    int dtype = cplx ? (real_dtype == SSM_F64 ? SSM_C128 : SSM_C64) : real_dtype;
    ssm_tensor *t = ssm_tensor_new(name, dtype, rank, dims);
    int64_t n = ssm_tensor_numel(t) * (cplx ? 2 : 1);
    for (int64_t i = 0; i < n; i++) {
        double v = f ? f[i] : d[i];
        if (!isfinite(v))
            ssm_die("%s: non-finite values in the result (the state overflowed: does A have positive "
                    "entries, or delta large values?)", name);
        if (real_dtype == SSM_F64) ((double *)t->data)[i] = v;
        else ((float *)t->data)[i] = (float)v;
    }
    return t;
}
/* The real part of a complex gradient, for a tensor given real while A is complex. */
static void keep_real_part(float *f, double *d, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (f) f[i] = f[2 * i];
        if (d) d[i] = d[2 * i];
    }
}

#ifdef SSM_HAVE_CUDA
/* ---- --device cuda: copy in, run kernels/selective_scan_cuda.cu, copy out ------------------
 * Sizes in floats: nx = batch*L*D (u, delta, z, y), nA = A's, nbc = B's (= C's), nh = h0's. */
typedef struct { int64_t nx, nA, nbc, nh; } scan_sizes;

static ssm_scan_params params_on_gpu(const ssm_scan_params *p, scan_sizes n) {
    ssm_scan_params d = *p;
    size_t f = sizeof(float);
    d.u = ssm_dev_upload("u", p->u, n.nx * f);
    d.delta = ssm_dev_upload("delta", p->delta, n.nx * f);
    d.z = ssm_dev_upload("z", p->z, n.nx * f);
    d.A = ssm_dev_upload("A", p->A, n.nA * f);
    d.B = ssm_dev_upload("B", p->B, n.nbc * f);
    d.C = ssm_dev_upload("C", p->C, n.nbc * f);
    d.D_skip = ssm_dev_upload("D", p->D_skip, p->D * f);
    d.delta_bias = ssm_dev_upload("delta_bias", p->delta_bias, p->D * f);
    d.h0 = ssm_dev_upload("h0", p->h0, n.nh * f);
    d.seq_idx = ssm_dev_upload("seq_idx", p->seq_idx, p->batch * p->L * sizeof(int32_t));
    return d;
}

static void forward_cuda(const ssm_scan_params *p, scan_sizes n, float *y, float *h) {
    ssm_scan_params d = params_on_gpu(p, n);
    float *dy = ssm_dev_alloc("y", n.nx * sizeof(float)), *dh = ssm_dev_alloc("h", n.nh * sizeof(float));
    ssm_dev_check("selective scan forward", selective_scan_cuda_forward(&d, SSM_CUDA_F32, dy, dh, NULL));
    ssm_dev_download("y", y, dy, n.nx * sizeof(float));
    ssm_dev_download("h", h, dh, n.nh * sizeof(float));
    ssm_dev_free_all();
}

/* g holds host buffers (NULL where absent) of the sizes in `sizes` (floats, the order of
 * ssm_scan_grads). */
static void backward_cuda(const ssm_scan_params *p, scan_sizes n, const float *dy, const float *dh,
                          const ssm_scan_grads *g, const int64_t sizes[9], const char *const names[9]) {
    ssm_scan_params d = params_on_gpu(p, n);
    const float *ddy = ssm_dev_upload("dy", dy, n.nx * sizeof(float));
    const float *ddh = ssm_dev_upload("dh", dh, n.nh * sizeof(float));
    float *host[9] = {g->du, g->ddelta, g->dA, g->dB, g->dC, g->dD_skip, g->dz, g->ddelta_bias, g->dh0};
    float *dev[9];
    for (int k = 0; k < 9; k++) dev[k] = host[k] ? ssm_dev_alloc(names[k], sizes[k] * sizeof(float)) : NULL;
    ssm_scan_grads dg = {dev[0], dev[1], dev[2], dev[3], dev[4], dev[5], dev[6], dev[7], dev[8]};
    ssm_dev_check("selective scan backward", selective_scan_cuda_backward(&d, SSM_CUDA_F32, ddy, ddh, &dg, NULL));
    for (int k = 0; k < 9; k++)
        if (host[k]) ssm_dev_download(names[k], host[k], dev[k], sizes[k] * sizeof(float));
    ssm_dev_free_all();
}
#endif

int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-scan", usage);
    static struct option opts[] = {
        SSM_CLI_COMMON_OPTS,
        {"layout", required_argument, 0, OPT_LAYOUT},
        {"softplus", no_argument, 0, OPT_SOFTPLUS},
        {"backward", no_argument, 0, OPT_BACKWARD},
        {"chunk", required_argument, 0, OPT_CHUNK},
        {"reference", no_argument, 0, OPT_REFERENCE},
        {"device", required_argument, 0, OPT_DEVICE},
        {0, 0, 0, 0}};
    int bld = 0, softplus = 0, backward = 0, reference = 0, chunk = 0, c;
    ssm_device device = SSM_DEVICE_CPU;
    while ((c = getopt_long(argc, argv, SSM_CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (ssm_cli_common_option(c, optarg)) continue;
        switch (c) {
        case OPT_LAYOUT:
            if (!strcmp(optarg, "bld")) bld = 1;
            else if (!strcmp(optarg, "bdl")) bld = 0;
            else ssm_usage_error("--layout: expected bdl or bld, got '%s'", optarg);
            break;
        case OPT_SOFTPLUS: softplus = 1; break;
        case OPT_BACKWARD: backward = 1; break;
        case OPT_CHUNK: chunk = (int)ssm_parse_int("--chunk", optarg, 1, 1 << 20); break;
        case OPT_REFERENCE: reference = 1; break;
        case OPT_DEVICE: device = ssm_parse_device(optarg); break;
        default: ssm_usage_error("unknown option");
        }
    }

    if (device == SSM_DEVICE_CUDA && reference) ssm_usage_error("--reference: runs on the CPU only, not with --device cuda");
#ifdef SSM_HAVE_CUDA
    if (device == SSM_DEVICE_CUDA) ssm_dev_require_cuda();   /* before reading any input */
#endif

    /* read: collect our tensors, pass the others through as they arrive */
    ssm_writer *out = ssm_cli_open_output(ssm_cli.output);
    ssm_tensor_set set;
    ssm_set_init(&set);
    int nfiles = argc - optind;
    for (int f = 0; f < (nfiles ? nfiles : 1); f++) {
        ssm_reader *in = ssm_cli_open_input(nfiles ? argv[optind + f] : "-");
        ssm_collect_or_pass(in, out, wanted, &backward, &set);
        ssm_reader_close(in);
    }
    for (int i = 0; i < COUNT(output_names); i++)
        if (is_output(output_names[i], backward)) ssm_tensor_free(ssm_set_take(&set, output_names[i]));

    /* u fixes batch, D, L; A fixes N and whether the state is complex */
    const char *xshape = bld ? "[batch, L, D]" : "[batch, D, L]";
    char e1[400], e2[160];
    snprintf(e1, sizeof e1, "f32/f64 %s", xshape);
    ssm_tensor *u = ssm_require(&set, "u", e1);
    require_real_float(u);
    if (u->rank != 3) ssm_die("tensor 'u': expected shape %s, got %s", xshape, ssm_shape_string(u->rank, u->dims, e2, sizeof e2));
    int64_t batch = u->dims[0], D = u->dims[bld ? 2 : 1], L = u->dims[bld ? 1 : 2];
    ssm_tensor *delta = ssm_require(&set, "delta", e1);
    require_same_dtype(delta, u);
    ssm_require_shape(delta, 3, u->dims);
    snprintf(e1, sizeof e1, "real or complex [D, N] with D = %lld", (long long)D);
    ssm_tensor *A = ssm_require(&set, "A", e1);
    int cplx = ssm_dtype_is_complex(A->dtype);
    require_float_or_complex(A, cplx);
    if (A->rank != 2 || A->dims[0] != D)
        ssm_die("tensor 'A': expected shape [%lld, N], got %s", (long long)D, ssm_shape_string(A->rank, A->dims, e2, sizeof e2));
    int64_t N = A->dims[1];

    /* B and C: invariant (D, N), selective (batch, N, L) | (batch, L, N), grouped with G */
    ssm_tensor *BC[2];
    const char *bcname[2] = {"B", "C"};
    int64_t G = 0;
    for (int k = 0; k < 2; k++) {
        snprintf(e1, sizeof e1, "[D, N] = [%lld, %lld], %s or %s", (long long)D, (long long)N,
                 bld ? shape3(e2, 80, batch, L, N) : shape3(e2, 80, batch, N, L),
                 bld ? "[batch, L, G, N]" : "[batch, G, N, L]");
        ssm_tensor *t = BC[k] = ssm_require(&set, bcname[k], e1);
        require_float_or_complex(t, cplx);
        int64_t g = -1;
        if (t->rank == 2 && t->dims[0] == D && t->dims[1] == N) g = 0;
        else if (t->rank == 3 && t->dims[0] == batch &&
                 (bld ? t->dims[1] == L && t->dims[2] == N : t->dims[1] == N && t->dims[2] == L)) g = 1;
        else if (t->rank == 4 && t->dims[0] == batch &&
                 (bld ? t->dims[1] == L && t->dims[3] == N : t->dims[2] == N && t->dims[3] == L)) {
            g = t->dims[bld ? 2 : 1];
            if (g < 1 || D % g) ssm_die("tensor '%s': %lld groups do not divide D = %lld channels", t->name, (long long)g, (long long)D);
        }
        if (g < 0) {
            char got[160];
            ssm_die("tensor '%s': expected shape %s, got %s", t->name, e1, ssm_shape_string(t->rank, t->dims, got, sizeof got));
        }
        /* per-token tensors share u's precision (c64 goes with f32, c128 with f64) */
        if (g > 0 && (int)ssm_dtype_component_size(t->dtype) != (int)ssm_dtype_size(u->dtype))
            ssm_die("tensor '%s': dtype %s does not match u's %s", t->name, ssm_dtype_name(t->dtype), ssm_dtype_name(u->dtype));
        if (k == 1 && g != G)
            ssm_die("tensor 'C': %s but B is %s (B and C must be of the same kind)",
                    g ? "selective" : "time-invariant", G ? "selective" : "time-invariant");
        G = g;
    }

    ssm_scan_params p;
    memset(&p, 0, sizeof p);
    p.batch = batch, p.L = L, p.D = D, p.N = N, p.G = G;
    p.complex_A = cplx;
    p.softplus = softplus;
    p.x_strides = bld ? ssm_scan_layout_bld(L, D) : ssm_scan_layout_bdl(L, D);
    p.bc_strides = bld ? ssm_scan_layout_bld(L, G * N) : ssm_scan_layout_bdl(L, G * N);
    p.threads = ssm_cli.threads;
    p.chunk = chunk;
    float *fu = load_real(u), *fdelta = load_real(delta), *fA = load_params(A, cplx);
    float *fB = load_params(BC[0], cplx), *fC = load_params(BC[1], cplx);
    p.u = fu, p.delta = fdelta, p.A = fA, p.B = fB, p.C = fC;

    int64_t vec_dims[1] = {D};
    float *fD = NULL, *fz = NULL, *fbias = NULL, *fh0 = NULL;
    ssm_tensor *t;
    if ((t = ssm_set_get(&set, "D"))) { require_real_float(t); ssm_require_shape(t, 1, vec_dims); p.D_skip = fD = load_real(t); }
    if ((t = ssm_set_get(&set, "delta_bias"))) { require_real_float(t); ssm_require_shape(t, 1, vec_dims); p.delta_bias = fbias = load_real(t); }
    ssm_tensor *z = ssm_set_get(&set, "z");
    if (z) { require_same_dtype(z, u); ssm_require_shape(z, 3, u->dims); p.z = fz = load_real(z); }
    int64_t h_dims[3] = {batch, D, N};
    ssm_tensor *h0 = ssm_set_get(&set, "h0");
    if (h0) { require_float_or_complex(h0, cplx); ssm_require_shape(h0, 3, h_dims); p.h0 = fh0 = load_params(h0, cplx); }

    /* packed sequences: seq_idx (batch, L), or lengths (batch, S) / (S) turned into seq_idx */
    int32_t *seq = NULL;
    ssm_tensor *si = ssm_set_get(&set, "seq_idx"), *ln = ssm_set_get(&set, "lengths");
    if (si && ln) ssm_die("tensor 'lengths': give seq_idx or lengths, not both");
    if (si) {
        if (si->dtype != SSM_I32 && si->dtype != SSM_I64)
            ssm_die("tensor 'seq_idx': expected an integer dtype (i32, i64), got %s", ssm_dtype_name(si->dtype));
        int64_t sd[2] = {batch, L};
        ssm_require_shape(si, 2, sd);
        seq = ssm_xmalloc((size_t)(batch * L + 1) * sizeof *seq);
        for (int64_t i = 0; i < batch * L; i++) seq[i] = (int32_t)ssm_tensor_get_f64(si, i);
    } else if (ln) {
        if (ln->dtype != SSM_I32 && ln->dtype != SSM_I64)
            ssm_die("tensor 'lengths': expected an integer dtype (i32, i64), got %s", ssm_dtype_name(ln->dtype));
        if (!(ln->rank == 1 || (ln->rank == 2 && ln->dims[0] == batch)))
            ssm_die("tensor 'lengths': expected shape [batch, S] with batch = %lld, or [S], got %s",
                    (long long)batch, ssm_shape_string(ln->rank, ln->dims, e2, sizeof e2));
        int64_t S = ln->dims[ln->rank - 1];
        seq = ssm_xmalloc((size_t)(batch * L + 1) * sizeof *seq);
        for (int64_t b = 0; b < batch; b++) {
            int64_t t0 = 0;
            int32_t id = 0;
            for (int64_t s = 0; s < S; s++) {
                double len = ssm_tensor_get_f64(ln, (ln->rank == 2 ? b * S : 0) + s);
                if (len < 0 || t0 + len > L)
                    ssm_die("tensor 'lengths': row %lld: lengths must be >= 0 and sum to at most L = %lld", (long long)b, (long long)L);
                for (int64_t k = 0; k < (int64_t)len; k++) seq[b * L + t0 + k] = id;
                t0 += (int64_t)len;
                if (len > 0) id++;
            }
            for (; t0 < L; t0++) seq[b * L + t0] = id;
        }
    }
    p.seq_idx = seq;

    int out_dtype = (reference || u->dtype == SSM_F64) ? SSM_F64 : SSM_F32;
    int cf = cplx ? 2 : 1;
    int64_t nx = batch * L * D, nh = batch * D * N, nbc = ssm_tensor_numel(BC[0]) * cf;
#ifdef SSM_HAVE_CUDA
    scan_sizes gpu_sizes = {nx, D * N * cf, nbc, nh * cf};
#endif
    ssm_tensor *result[16];
    int nres = 0;
    if (!backward) {
        if (reference) {
            double *y = ssm_xmalloc((size_t)(nx ? nx : 1) * sizeof(double)), *h = ssm_xmalloc((size_t)(nh ? nh : 1) * cf * sizeof(double));
            selective_scan_forward_ref(&p, y, h);
            result[nres++] = make_output("y", out_dtype, 0, 3, u->dims, NULL, y);
            result[nres++] = make_output("h", out_dtype, cplx, 3, h_dims, NULL, h);
            free(y); free(h);
        } else {
            float *y = ssm_xmalloc((size_t)(nx ? nx : 1) * sizeof(float)), *h = ssm_xmalloc((size_t)(nh ? nh : 1) * cf * sizeof(float));
#ifdef SSM_HAVE_CUDA
            if (device == SSM_DEVICE_CUDA) forward_cuda(&p, gpu_sizes, y, h);
            else
#endif
                selective_scan_forward(&p, y, h);
            result[nres++] = make_output("y", out_dtype, 0, 3, u->dims, y, NULL);
            result[nres++] = make_output("h", out_dtype, cplx, 3, h_dims, h, NULL);
            free(y); free(h);
        }
        ssm_tensor_set_attr(result[0], "layout", bld ? "bld" : "bdl");
    } else {
        snprintf(e1, sizeof e1, "the shape of y, %s", xshape);
        ssm_tensor *dy = ssm_require(&set, "dy", e1);
        require_same_dtype(dy, u);
        ssm_require_shape(dy, 3, u->dims);
        ssm_tensor *dh = ssm_set_get(&set, "dh");
        if (dh) { require_float_or_complex(dh, cplx); ssm_require_shape(dh, 3, h_dims); }
        int64_t nA = D * N * cf;
        /* gradients: float or double buffers by mode */
        int64_t sizes[9] = {nx, nx, nA, nbc, nbc, D, nx, D, nh * cf};
        const char *names[9] = {"du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias", "dh0"};
        const ssm_tensor *like[9] = {u, u, A, BC[0], BC[1], NULL, u, NULL, NULL};
        int present[9] = {1, 1, 1, 1, 1, fD != NULL, z != NULL, fbias != NULL, 1};
        float *gf[9] = {0};
        double *gd[9] = {0};
        for (int k = 0; k < 9; k++) {
            if (!present[k]) continue;
            if (reference) gd[k] = ssm_xcalloc((size_t)(sizes[k] ? sizes[k] : 1), sizeof(double));
            else gf[k] = ssm_xcalloc((size_t)(sizes[k] ? sizes[k] : 1), sizeof(float));
        }
        if (reference) {
            double *ddy = ssm_as_f64(dy, 1), *ddh = NULL;
            if (dh) {
                ddh = ssm_as_c128(dh, 1);
                if (!cplx) keep_real_part(NULL, ddh, nh);
            }
            ssm_scan_grads_f64 g = {gd[0], gd[1], gd[2], gd[3], gd[4], gd[5], gd[6], gd[7], gd[8]};
            selective_scan_backward_ref(&p, ddy, ddh, &g);
            free(ddy); free(ddh);
        } else {
            float *fdy = load_real(dy), *fdh = dh ? load_params(dh, cplx) : NULL;
            ssm_scan_grads g = {gf[0], gf[1], gf[2], gf[3], gf[4], gf[5], gf[6], gf[7], gf[8]};
#ifdef SSM_HAVE_CUDA
            if (device == SSM_DEVICE_CUDA) backward_cuda(&p, gpu_sizes, fdy, fdh, &g, sizes, names);
            else
#endif
                selective_scan_backward(&p, fdy, fdh, &g);
            free(fdy); free(fdh);
        }
        for (int k = 0; k < 9; k++) {
            if (!present[k]) continue;
            int kc = 0;   /* complex output? */
            int rank = 1;
            const int64_t *dims = vec_dims;
            if (k == 8) { rank = 3; dims = h_dims; kc = cplx; }
            else if (like[k]) {
                rank = like[k]->rank; dims = like[k]->dims;
                kc = cplx && (k == 2 || k == 3 || k == 4);
                if (kc && !ssm_dtype_is_complex(like[k]->dtype)) {
                    /* B or C given real with a complex A: its gradient is the real part */
                    keep_real_part(gf[k], gd[k], sizes[k] / 2);
                    kc = 0;
                }
            }
            result[nres++] = make_output(names[k], out_dtype, kc, rank, dims, gf[k], gd[k]);
            free(gf[k]); free(gd[k]);
        }
    }

    /* write back what we read (so a backward pass can follow), then the results */
    for (int i = 0; i < COUNT(input_names); i++)
        if ((t = ssm_set_get(&set, input_names[i]))) ssm_write_or_die(out, t);
    for (int i = 0; i < nres; i++) { ssm_write_or_die(out, result[i]); ssm_tensor_free(result[i]); }
    free(fu); free(fdelta); free(fA); free(fB); free(fC); free(fD); free(fz); free(fbias); free(fh0); free(seq);
    ssm_set_free(&set);
    ssm_cli_finish(out);
}
