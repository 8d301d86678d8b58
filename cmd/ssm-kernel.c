/* ssm-kernel - the convolution kernel K (H, L) of an SSM three ways (naive, vandermonde, cauchy),
 * the FFT convolution y = K * u + D u, and the gradients of both.  Only argument handling and
 * wiring live here; the math is in kernels/ (ssm_kernel.h) and, for re-discretizing at a new dt,
 * libcommon/discretize.h; --device cuda computes K (diag: Vandermonde, dplr: Cauchy) and the --apply
 * convolution with kernels/ssm_kernel_cuda.cu.
 * Tensor names: man/ssm-kernel.1 (TENSORS). */
#include <complex.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"
#include "discretize.h"
#include "ssm_kernel.h"
#ifdef SSM_HAVE_CUDA
#include "ssm_kernel_cuda.h"
#endif

static const char *usage =
    "Usage: ssm-kernel -L N [OPTIONS] [FILE...]             (kernel K of the SSM on the stream)\n"
    "       ssm-kernel --apply [OPTIONS] [FILE...]          (y = K * u + D u by FFT)\n"
    "       ssm-kernel --backward [OPTIONS] [FILE...]       (gradients from dK, or from dy)\n"
    "The SSM convolution kernel, its FFT convolution and their gradients (see ssm-kernel(1)).\n"
    "\n"
    "  -L, --length N      kernel length (default with --apply: the length of u)\n"
    "  -m, --method M      auto (default) | naive (dense form) | vandermonde (diag form) |\n"
    "                      cauchy (dplr form, bilinear)\n"
    "      --dt X          recompute at step X from the continuous A, B (every channel)\n"
    "      --rate R        recompute at step dt * R (resolution change)\n"
    "      --apply         read u (batch, H, L), write y = causal_conv(u, K) + D u\n"
    "      --bidirectional also add K2 applied to the reversed sequence (K2 from the stream, or\n"
    "                      the second half of a 2H-channel SSM)\n"
    "      --backward      read dK (or u and dy) and write the gradients dlog_dt, dA, dB, dC\n"
    "                      (complex diagonal ZOH form) and du, dK, dK2, dD (convolution)\n"
    "      --dtype T       f32 | f64 for the tensors written (default: that of the input)\n"
    "      --device cpu|cuda  the kernel K (diag and dplr forms) and the --apply convolution on\n"
    "                      the CPU [default] or an NVIDIA GPU (float32); dense K stays on the CPU\n"
    "      --measure       plan the FFTs with FFTW_MEASURE (slower start, faster transforms)\n"
    "      --layer PREFIX  the SSM is a checkpoint's S4D layer: PREFIX.{log_dt, A_real_log, A_imag,\n"
    "                      B, C, D} (e.g. layers.0.ssm); a stream with no A and exactly one such\n"
    "                      layer (ssm-tensor pick 'layers.2.*' < ckpt) uses it without --layer\n"
    "\n"
    "Common options:\n"
    "  -o, --output FILE   write the stream to FILE (default stdout; '-' is stdout)\n"
    "      --level N       compression level 0 (stored) .. 9 (default 1)\n"
    "      --threads N     threads (default: all cores)\n"
    "  -q, --quiet         no warnings;  -v, --verbose  more messages\n"
    "  -h, --help          this text;    --version     the version\n"
    "FILE '-' or no FILE reads stdin.  Exit status: 0 ok, 1 data error, 2 usage error.\n";

enum { METHOD_AUTO, METHOD_NAIVE, METHOD_VANDERMONDE, METHOD_CAUCHY };
static const char *const method_names[] = {"auto", "naive", "vandermonde", "cauchy"};
enum { FORM_NONE, FORM_DENSE, FORM_DIAG, FORM_DPLR };
static const char *const form_names[] = {"none", "dense", "diag", "dplr"};

typedef struct {
    int64_t L;
    int method, apply, bidirectional, backward, dtype, measure;
    ssm_device device;       /* --device: where K (diag, dplr) and the --apply convolution run */
    double dt, rate;
    int have_dt, have_rate;
    const char *layer;       /* --layer PREFIX: an S4D layer of a checkpoint */
} options;

/* The names this tool reads; every other tensor passes through as it arrives. */
static const char *const wanted_names[] = {"A", "B", "C", "D", "Abar", "Bbar", "Lambda", "P", "dt",
                                           "u", "K", "K2", "dK", "dy", NULL};
static int real_dtype_of(const ssm_tensor *t);
static void require_float(const ssm_tensor *t, int want_complex);
static ssm_tensor *make_tensor(const char *name, int dtype, int rank, const int64_t *dims,
                               const double *values, const ssm_tensor *attrs_from);
static int complex_of(int real_dtype);

static const char *const layer_names[] = {"log_dt", "A_real_log", "A_imag", "B", "C", "D", NULL};
static const char *const conv_names[] = {"u", "K", "K2", "dK", "dy", NULL};
static int in_list(const char *name, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (strcmp(name, list[i]) == 0) return 1;
    return 0;
}
/* "PREFIX.log_dt" etc.: a tensor that may belong to a checkpoint's S4D layer. */
static int layer_suffix(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && dot != name && in_list(dot + 1, layer_names);
}
static int want(const char *name, void *ctx) {
    const options *o = ctx;
    /* without --layer, S4D layer tensors are kept too, in case the stream is a picked layer */
    if (!o->layer) return in_list(name, wanted_names) || layer_suffix(name);
    size_t n = strlen(o->layer);
    if (strncmp(name, o->layer, n) == 0 && name[n] == '.' && in_list(name + n + 1, layer_names)) return 1;
    return in_list(name, conv_names);
}

/* A checkpoint's S4D layer PREFIX.{log_dt (H), A_real_log, A_imag (H, M), B, C (H, M) complex or
 * (H, M, 2) real, D (H)} as the complex diagonal form in continuous time: A = -exp(A_real_log) +
 * i A_imag, dt = exp(log_dt), method zoh (S4D's), into `lset` under the usual names. */
static void layer_to_diag(const ssm_tensor_set *set, const char *prefix, ssm_tensor_set *lset) {
    char name[512];
    ssm_tensor *t[6];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, layer_names[i]);
        t[i] = ssm_set_get(set, name);
        if (!t[i] && i < 5) ssm_die("missing tensor '%s' (--layer %s: an S4D layer)", name, prefix);
    }
    ssm_tensor *ld = t[0], *ar = t[1], *ai = t[2];
    require_float(ld, 0); require_float(ar, 0); require_float(ai, 0);
    ssm_require_shape(ld, 1, (int64_t[]){-1});
    int64_t H = ld->dims[0];
    ssm_require_shape(ar, 2, (int64_t[]){H, -1});
    int64_t M = ar->dims[1], hm[2] = {H, M}, h1[1] = {H};
    ssm_require_shape(ai, 2, hm);
    int rd = real_dtype_of(t[4]);
    double *a = ssm_as_f64(ar, 1), *b = ssm_as_f64(ai, 1), *d = ssm_as_f64(ld, 1);
    double *A = ssm_xmalloc(sizeof(double) * (size_t)(2 * H * M + 1));
    for (int64_t i = 0; i < H * M; i++) { A[2 * i] = -exp(a[i]); A[2 * i + 1] = b[i]; }
    for (int64_t h = 0; h < H; h++) d[h] = exp(d[h]);
    const char *names2[] = {"B", "C"};
    for (int k = 0; k < 2; k++) {   /* complex (H, M), or real (H, M, 2) pairs */
        ssm_tensor *x = t[3 + k];
        double *v;
        if (ssm_dtype_is_complex(x->dtype)) { ssm_require_shape(x, 2, hm); v = ssm_as_c128(x, 1); }
        else { require_float(x, 0); ssm_require_shape(x, 3, (int64_t[]){H, M, 2}); v = ssm_as_f64(x, 1); }
        ssm_set_put(lset, make_tensor(names2[k], complex_of(rd), 2, hm, v, NULL));
        free(v);
    }
    ssm_set_put(lset, make_tensor("A", complex_of(rd), 2, hm, A, NULL));
    ssm_set_put(lset, make_tensor("dt", rd, 1, h1, d, NULL));
    if (t[5]) {
        require_float(t[5], 0);
        double *D = ssm_as_f64(t[5], 1);
        ssm_set_put(lset, make_tensor("D", real_dtype_of(t[5]), t[5]->rank, t[5]->dims, D, NULL));
        free(D);
    }
    for (int i = 0; i < lset->n; i++) {
        ssm_tensor_set_attr(lset->items[i], "form", "diag");
        ssm_tensor_set_attr(lset->items[i], "method", "zoh");
        ssm_tensor_set_attr(lset->items[i], "init", prefix);
        if (ssm_dtype_is_complex(lset->items[i]->dtype)) ssm_tensor_set_attr(lset->items[i], "conj", "half");
    }
    free(a); free(b); free(d); free(A);
}

/* ---- the SSM on the stream ---------------------------------------------------------------- */
typedef struct {
    int form, is_complex, disc_method;
    int64_t H, N, M, R;            /* N real states or M complex modes (diag/dplr); R rank */
    ssm_tensor *A, *B, *C, *Abar, *Bbar, *Lambda, *P, *dt;
    int out_dtype_real;            /* SSM_F32 or SSM_F64: the precision of the input */
    double *dt_eff;                /* (H) once --dt/--rate were applied (then A, B are re-discretized) */
} ssm_input;

static int real_dtype_of(const ssm_tensor *t) {
    return (t->dtype == SSM_F64 || t->dtype == SSM_C128) ? SSM_F64 : SSM_F32;
}

static int form_of(const ssm_tensor_set *set) {
    if (ssm_set_get(set, "Lambda")) return FORM_DPLR;
    const ssm_tensor *a = ssm_set_get(set, "Abar");
    if (!a) a = ssm_set_get(set, "A");
    if (!a) return FORM_NONE;
    const char *f = ssm_tensor_get_attr(a, "form");
    if (f && strcmp(f, "dense") == 0) return FORM_DENSE;
    if (f && strcmp(f, "diag") == 0) return FORM_DIAG;
    if (f && strcmp(f, "dplr") == 0) ssm_die("tensor '%s': form=dplr but no tensor 'Lambda'", a->name);
    return a->rank == 3 ? FORM_DENSE : FORM_DIAG;
}

static void require_float(const ssm_tensor *t, int want_complex) {
    if (want_complex && !ssm_dtype_is_complex(t->dtype))
        ssm_die("tensor '%s': expected a complex dtype (c64/c128), got %s", t->name, ssm_dtype_name(t->dtype));
    if (!want_complex && !ssm_dtype_is_float(t->dtype))
        ssm_die("tensor '%s': expected a real float dtype (f32/f64), got %s", t->name, ssm_dtype_name(t->dtype));
}

static void read_ssm(const ssm_tensor_set *set, ssm_input *s) {
    memset(s, 0, sizeof *s);
    s->form = form_of(set);
    if (s->form == FORM_NONE) return;
    s->C = ssm_require(set, "C", "the output vector of the SSM, (H, N) or (H, M) complex");
    s->dt = ssm_set_get(set, "dt");
    s->A = ssm_set_get(set, "A");
    s->B = ssm_set_get(set, "B");
    s->Abar = ssm_set_get(set, "Abar");
    s->Bbar = ssm_set_get(set, "Bbar");
    s->out_dtype_real = real_dtype_of(s->C);
    const char *m = ssm_tensor_get_attr(s->C, "method");
    if (!m && s->Abar) m = ssm_tensor_get_attr(s->Abar, "method");
    s->disc_method = m ? ssm_method_from_name(m) : SSM_METHOD_ZOH;
    if (s->disc_method < 0) ssm_die("tensor '%s': unknown method=%s", s->C->name, m);
    if (s->C->rank != 2) ssm_require_shape(s->C, 2, (int64_t[]){-1, -1});
    s->H = s->C->dims[0];
    if (s->form == FORM_DPLR) {
        s->Lambda = ssm_require(set, "Lambda", "(H, M) complex");
        s->P = ssm_require(set, "P", "(H, r, M) complex");
        s->B = ssm_require(set, "B", "(H, M) complex");
        s->dt = ssm_require(set, "dt", "(H)");
        s->is_complex = 1;
        s->M = s->Lambda->rank == 2 ? s->Lambda->dims[1] : -1;
        ssm_require_shape(s->Lambda, 2, (int64_t[]){s->H, -1});
        ssm_require_shape(s->P, 3, (int64_t[]){s->H, -1, s->M});
        s->R = s->P->dims[1];
        if (s->R > 8) ssm_die("tensor 'P': rank %lld is more than 8", (long long)s->R);
        for (int i = 0; i < 4; i++) {
            const ssm_tensor *t = (const ssm_tensor *[]){s->Lambda, s->P, s->B, s->C}[i];
            require_float(t, 1);
        }
        ssm_require_shape(s->B, 2, (int64_t[]){s->H, s->M});
        ssm_require_shape(s->C, 2, (int64_t[]){s->H, s->M});
        ssm_require_shape(s->dt, 1, (int64_t[]){s->H});
        if (m && s->disc_method != SSM_METHOD_BILINEAR)
            ssm_die("tensor 'C': the dplr form is discretized bilinearly (S4), but method=%s", m);
        return;
    }
    s->is_complex = ssm_dtype_is_complex(s->C->dtype);
    if (s->form == FORM_DENSE) {
        s->N = s->C->dims[1];
        if (s->is_complex) ssm_die("tensor 'C': the dense form is real, got %s", ssm_dtype_name(s->C->dtype));
    } else {
        s->N = s->C->dims[1];
        s->M = s->N;
    }
    const ssm_tensor *ts[] = {s->A, s->B, s->Abar, s->Bbar};
    for (int i = 0; i < 4; i++) {
        if (!ts[i]) continue;
        require_float(ts[i], s->is_complex);
        if (s->form == FORM_DENSE && (i == 0 || i == 2))
            ssm_require_shape(ts[i], 3, (int64_t[]){s->H, s->N, s->N});
        else
            ssm_require_shape(ts[i], 2, (int64_t[]){s->H, s->N});
    }
    require_float(s->C, s->is_complex);
    if (s->dt) {
        require_float(s->dt, 0);
        ssm_require_shape(s->dt, 1, (int64_t[]){s->H});
    }
}

/* dt per channel after --dt / --rate (NULL-safe: dies if neither the stream nor --dt has it) */
static double *channel_dt(const ssm_input *s, const options *o) {
    double *dt = ssm_xmalloc(sizeof(double) * (size_t)(s->H > 0 ? s->H : 1));
    if (s->dt_eff) {   /* already resolved (and the stream's dt replaced) */
        memcpy(dt, s->dt_eff, sizeof(double) * (size_t)s->H);
        return dt;
    }
    if (o->have_dt) for (int64_t h = 0; h < s->H; h++) dt[h] = o->dt;
    else {
        if (!s->dt) ssm_die("missing tensor 'dt' (expected (H); or give --dt)");
        double *d = ssm_as_f64(s->dt, 1);
        memcpy(dt, d, sizeof(double) * (size_t)s->H);
        free(d);
    }
    for (int64_t h = 0; h < s->H; h++) {
        dt[h] *= o->have_rate ? o->rate : 1;
        if (!(dt[h] > 0)) ssm_die("tensor 'dt': channel %lld has dt = %g (must be > 0)", (long long)h, dt[h]);
    }
    return dt;
}

/* Writes `values` (n doubles, or n complex pairs) as a tensor shaped like `like` (dtype `dtype`). */
static ssm_tensor *make_tensor(const char *name, int dtype, int rank, const int64_t *dims,
                               const double *values, const ssm_tensor *attrs_from) {
    ssm_tensor *t = ssm_tensor_new(name, dtype, rank, dims);
    if (attrs_from) ssm_tensor_copy_attrs(t, attrs_from);
    int64_t n = ssm_tensor_numel(t) * (ssm_dtype_is_complex(dtype) ? 2 : 1);
    if (dtype == SSM_F32 || dtype == SSM_C64)
        for (int64_t i = 0; i < n; i++) ((float *)t->data)[i] = (float)values[i];
    else
        memcpy(t->data, values, sizeof(double) * (size_t)n);
    return t;
}

static int complex_of(int real_dtype) { return real_dtype == SSM_F64 ? SSM_C128 : SSM_C64; }

#ifdef SSM_HAVE_CUDA
/* K (H, L) of a diagonal form on the GPU (vandermonde_kernel_cuda, float32): Abar, Bbar, C (H, n),
 * complex (conj=half, K = 2 Re sum ...) or real (as complex modes: log|Abar| + i pi for Abar < 0). */
static void kernel_diag_cuda(int64_t H, int64_t n, int64_t L, int is_complex, const double *Abar,
                             const double *Bbar, const double *C, double *K) {
    size_t nm = (size_t)(H * n);
    double *la = ssm_xmalloc(sizeof(double) * (2 * nm + 1)), *ct = ssm_xmalloc(sizeof(double) * (2 * nm + 1));
    for (size_t i = 0; i < nm; i++) {
        if (is_complex) {
            double complex a = Abar[2 * i] + I * Abar[2 * i + 1];
            double complex c = (C[2 * i] + I * C[2 * i + 1]) * (Bbar[2 * i] + I * Bbar[2 * i + 1]);
            double complex l = a == 0 ? -INFINITY : clog(a);
            la[2 * i] = creal(l); la[2 * i + 1] = a == 0 ? 0 : cimag(l);
            ct[2 * i] = creal(c); ct[2 * i + 1] = cimag(c);
        } else {
            double a = Abar[i];
            la[2 * i] = a == 0 ? -INFINITY : log(fabs(a)); la[2 * i + 1] = a < 0 ? M_PI : 0;
            ct[2 * i] = C[i] * Bbar[i]; ct[2 * i + 1] = 0;
        }
    }
    const double *dla = ssm_dev_upload("log Abar", la, sizeof(double) * 2 * nm);
    const double *dct = ssm_dev_upload("C Bbar", ct, sizeof(double) * 2 * nm);
    float *dK = ssm_dev_alloc("K", sizeof(float) * (size_t)(H * L));
    ssm_dev_check("Vandermonde kernel", vandermonde_kernel_cuda(H, n, L, dla, dct, is_complex ? 2.f : 1.f, dK, NULL));
    float *k32 = ssm_xmalloc(sizeof(float) * (size_t)(H * L));
    ssm_dev_download("K", k32, dK, sizeof(float) * (size_t)(H * L));
    ssm_dev_free_all();
    for (int64_t i = 0; i < H * L; i++) K[i] = k32[i];
    free(la); free(ct); free(k32);
}

/* K (H, L) of the DPLR form on the GPU (cauchy_kernel_dplr_cuda, float32 in and out). */
static void kernel_dplr_cuda(int64_t H, int64_t M, int64_t R, int64_t L, const double *dt, const double *lam,
                             const double *P, const double *B, const double *C, double *K) {
    const double *src[5] = {dt, lam, P, B, C};
    const size_t cnt[5] = {(size_t)H, (size_t)(2 * H * M), (size_t)(2 * H * R * M), (size_t)(2 * H * M), (size_t)(2 * H * M)};
    const char *names[5] = {"dt", "Lambda", "P", "B", "C"};
    const float *dv[5];
    for (int i = 0; i < 5; i++) {
        float *f = ssm_xmalloc(sizeof(float) * (cnt[i] + 1));
        for (size_t j = 0; j < cnt[i]; j++) f[j] = (float)src[i][j];
        dv[i] = ssm_dev_upload(names[i], f, sizeof(float) * (cnt[i] + 1));
        free(f);
    }
    float *dK = ssm_dev_alloc("K", sizeof(float) * (size_t)(H * L));
    ssm_dev_check("cauchy kernel", cauchy_kernel_dplr_cuda(H, M, R, L, dv[0], dv[1], dv[2], dv[3], dv[4], dK, NULL));
    float *k32 = ssm_xmalloc(sizeof(float) * (size_t)(H * L));
    ssm_dev_download("K", k32, dK, sizeof(float) * (size_t)(H * L));
    ssm_dev_free_all();
    for (int64_t i = 0; i < H * L; i++) K[i] = k32[i];
    free(k32);
}
#endif

/* Computes K (H, L) in double (float32 on the GPU with --device cuda: diag and dplr forms);
 * replaces Abar, Bbar, dt in `set` when --dt/--rate changed them. */
static double *compute_kernel(ssm_input *s, const options *o, ssm_tensor_set *set, int *method_used) {
    int method = o->method;
    if (method == METHOD_AUTO)
        method = s->form == FORM_DENSE ? METHOD_NAIVE : s->form == FORM_DIAG ? METHOD_VANDERMONDE : METHOD_CAUCHY;
    int needs = method == METHOD_NAIVE ? FORM_DENSE : method == METHOD_VANDERMONDE ? FORM_DIAG : FORM_DPLR;
    if (needs != s->form)
        ssm_usage_error("--method %s: needs the %s form, but the input has the %s form", method_names[method],
                        form_names[needs], form_names[s->form]);
    *method_used = method;
    int64_t H = s->H, L = o->L;
    double *K = ssm_xmalloc(sizeof(double) * (size_t)(H * L > 0 ? H * L : 1));
    if (s->form == FORM_DPLR) {
        double *dt = channel_dt(s, o);
        double *lam = ssm_as_c128(s->Lambda, 1), *P = ssm_as_c128(s->P, 1);
        double *B = ssm_as_c128(s->B, 1), *C = ssm_as_c128(s->C, 1);
#ifdef SSM_HAVE_CUDA
        if (o->device == SSM_DEVICE_CUDA) kernel_dplr_cuda(H, s->M, s->R, L, dt, lam, P, B, C, K);
        else
#endif
        if (cauchy_kernel_dplr(H, s->M, s->R, L, dt, lam, P, B, C, K) < 0)
            ssm_die("cauchy kernel: a Woodbury system was singular or the kernel is not finite");
        if (o->have_dt || o->have_rate) {
            int64_t d[1] = {H};
            ssm_set_put(set, make_tensor("dt", s->dt->dtype, 1, d, dt, s->dt));
            s->dt = ssm_set_get(set, "dt");
            s->dt_eff = ssm_xmalloc(sizeof(double) * (size_t)H);
            memcpy(s->dt_eff, dt, sizeof(double) * (size_t)H);
        }
        free(dt); free(lam); free(P); free(B); free(C);
        return K;
    }
    /* dense and diagonal: Abar, Bbar from the stream, or from A, B at the (new) dt */
    int64_t n = s->N, per = s->form == FORM_DENSE ? n * n : n, cw = s->is_complex ? 2 : 1;
    double *Abar, *Bbar;
    if (o->have_dt || o->have_rate || !s->Abar || !s->Bbar) {
        if (!s->A) ssm_die("missing tensor 'A' (needed to discretize%s)", o->have_dt || o->have_rate ? " at the new dt" : "");
        if (!s->B) ssm_die("missing tensor 'B' (needed to discretize)");
        double *dt = channel_dt(s, o);
        double *A = s->is_complex ? ssm_as_c128(s->A, 1) : ssm_as_f64(s->A, 1);
        double *B = s->is_complex ? ssm_as_c128(s->B, 1) : ssm_as_f64(s->B, 1);
        Abar = ssm_xmalloc(sizeof(double) * (size_t)(H * per * cw));
        Bbar = ssm_xmalloc(sizeof(double) * (size_t)(H * n * cw));
        for (int64_t h = 0; h < H; h++) {
            if (s->form == FORM_DENSE) {
                if (discretize_dense(s->disc_method, (int)n, dt[h], A + h * per, B + h * n, Abar + h * per, Bbar + h * n) < 0)
                    ssm_die("channel %lld: discretizing (%s) at dt %g: singular system", (long long)h,
                            ssm_method_name(s->disc_method), dt[h]);
            } else if (s->is_complex) {
                discretize_diag_complex(s->disc_method, n, dt[h], A + 2 * h * n, B + 2 * h * n, Abar + 2 * h * n, Bbar + 2 * h * n);
            } else {
                discretize_diag_real(s->disc_method, n, dt[h], A + h * n, B + h * n, Abar + h * n, Bbar + h * n);
            }
        }
        /* the stream keeps telling the truth: the new dt, Abar, Bbar replace the old ones */
        int rdt = s->out_dtype_real, dtA = s->is_complex ? complex_of(rdt) : rdt;
        int64_t dd[1] = {H}, da[3] = {H, n, n}, db[2] = {H, n};
        ssm_tensor *attrs = s->Abar ? s->Abar : s->A;
        ssm_set_put(set, make_tensor("Abar", dtA, s->form == FORM_DENSE ? 3 : 2, s->form == FORM_DENSE ? da : db, Abar, attrs));
        ssm_set_put(set, make_tensor("Bbar", dtA, 2, db, Bbar, s->Bbar ? s->Bbar : s->B));
        if (s->dt || o->have_dt) ssm_set_put(set, make_tensor("dt", s->dt ? s->dt->dtype : rdt, 1, dd, dt, s->dt ? s->dt : s->C));
        s->Abar = ssm_set_get(set, "Abar");
        s->Bbar = ssm_set_get(set, "Bbar");
        s->dt = ssm_set_get(set, "dt");
        s->dt_eff = dt;
        free(A); free(B);
    } else {
        Abar = s->is_complex ? ssm_as_c128(s->Abar, 1) : ssm_as_f64(s->Abar, 1);
        Bbar = s->is_complex ? ssm_as_c128(s->Bbar, 1) : ssm_as_f64(s->Bbar, 1);
    }
    double *C = s->is_complex ? ssm_as_c128(s->C, 1) : ssm_as_f64(s->C, 1);
    if (s->form == FORM_DENSE && o->device == SSM_DEVICE_CUDA)
        ssm_info("--device cuda: the dense form's kernel is computed on the CPU");
#ifdef SSM_HAVE_CUDA
    if (s->form != FORM_DENSE && o->device == SSM_DEVICE_CUDA) kernel_diag_cuda(H, n, L, s->is_complex, Abar, Bbar, C, K);
    else
#endif
    if (s->form == FORM_DENSE) naive_kernel_dense(H, n, L, Abar, Bbar, C, K);
    else if (s->is_complex) vandermonde_kernel_complex(H, n, L, Abar, Bbar, C, K);
    else vandermonde_kernel_real(H, n, L, Abar, Bbar, C, K);
    free(Abar); free(Bbar); free(C);
    for (int64_t i = 0; i < H * L; i++)
        if (!isfinite(K[i])) ssm_die("kernel: not finite at channel %lld, l = %lld (unstable system?)", (long long)(i / L), (long long)(i % L));
    return K;
}

/* ---- gradients of the S4D kernel (complex diagonal, ZOH) ------------------------------------ */
static void s4d_backward(ssm_input *s, const options *o, const double *dK, ssm_tensor_set *out) {
    if (s->form != FORM_DIAG || !s->is_complex)
        ssm_die("--backward: the kernel gradient is for the complex diagonal (S4D) form; the input has the %s%s form",
                s->form == FORM_DIAG ? "real " : "", form_names[s->form]);
    if (s->disc_method != SSM_METHOD_ZOH)
        ssm_die("--backward: the S4D kernel gradient is for method=zoh, the input has method=%s", ssm_method_name(s->disc_method));
    if (!s->A) ssm_die("missing tensor 'A' (expected (H, M) complex: --backward needs the continuous A)");
    if (!s->B) ssm_die("missing tensor 'B' (expected (H, M) complex)");
    int64_t H = s->H, M = s->N, L = o->L;
    double *dt = channel_dt(s, o), *A = ssm_as_c128(s->A, 1), *B = ssm_as_c128(s->B, 1), *C = ssm_as_c128(s->C, 1);
    double *ld = ssm_xmalloc(sizeof(double) * (size_t)H);
    for (int64_t h = 0; h < H; h++) ld[h] = log(dt[h]);
    double *dld = ssm_xmalloc(sizeof(double) * (size_t)H), *dA = ssm_xmalloc(sizeof(double) * (size_t)(2 * H * M + 1));
    double *dB = ssm_xmalloc(sizeof(double) * (size_t)(2 * H * M + 1)), *dC = ssm_xmalloc(sizeof(double) * (size_t)(2 * H * M + 1));
    s4d_kernel_backward(H, M, L, ld, A, B, C, dK, dld, dA, dB, dC);
    int rd = o->dtype ? o->dtype : s->out_dtype_real;
    int64_t d1[1] = {H}, d2[2] = {H, M};
    ssm_set_put(out, make_tensor("dlog_dt", rd, 1, d1, dld, NULL));
    ssm_set_put(out, make_tensor("dA", complex_of(rd), 2, d2, dA, s->A));
    ssm_set_put(out, make_tensor("dB", complex_of(rd), 2, d2, dB, s->B));
    ssm_set_put(out, make_tensor("dC", complex_of(rd), 2, d2, dC, s->C));
    if (o->layer) {   /* the checkpoint's own parameters: A = -exp(A_real_log) + i A_imag */
        double *a = ssm_as_c128(s->A, 0), *dr = ssm_xmalloc(sizeof(double) * (size_t)(H * M + 1));
        double *di = ssm_xmalloc(sizeof(double) * (size_t)(H * M + 1));
        for (int64_t i = 0; i < H * M; i++) { dr[i] = dA[2 * i] * a[2 * i]; di[i] = dA[2 * i + 1]; }
        ssm_set_put(out, make_tensor("dA_real_log", rd, 2, d2, dr, NULL));
        ssm_set_put(out, make_tensor("dA_imag", rd, 2, d2, di, NULL));
        free(a); free(dr); free(di);
    }
    free(dt); free(A); free(B); free(C); free(ld); free(dld); free(dA); free(dB); free(dC);
}

/* ---- main ----------------------------------------------------------------------------------- */
enum { OPT_DT = SSM_OPT_TOOL_FIRST, OPT_RATE, OPT_APPLY, OPT_BIDIR, OPT_BACKWARD, OPT_DTYPE, OPT_MEASURE, OPT_LAYER, OPT_DEVICE };

static void parse(int argc, char **argv, options *o, int *first) {
    static struct option opts[] = {
        SSM_CLI_COMMON_OPTS,
        {"length", required_argument, 0, 'L'},   {"method", required_argument, 0, 'm'},
        {"dt", required_argument, 0, OPT_DT},    {"rate", required_argument, 0, OPT_RATE},
        {"apply", no_argument, 0, OPT_APPLY},    {"bidirectional", no_argument, 0, OPT_BIDIR},
        {"backward", no_argument, 0, OPT_BACKWARD}, {"dtype", required_argument, 0, OPT_DTYPE},
        {"measure", no_argument, 0, OPT_MEASURE}, {"layer", required_argument, 0, OPT_LAYER},
        {"device", required_argument, 0, OPT_DEVICE}, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->L = -1;
    int c;
    while ((c = getopt_long(argc, argv, SSM_CLI_COMMON_SHORT "L:m:", opts, NULL)) != -1) {
        if (ssm_cli_common_option(c, optarg)) continue;
        switch (c) {
        case 'L': o->L = ssm_parse_int("--length", optarg, 1, (long long)1 << 31); break;
        case 'm': {
            int k = -1;
            for (int i = 0; i < 4; i++) if (strcmp(optarg, method_names[i]) == 0) k = i;
            if (k < 0) ssm_usage_error("--method: expected auto, naive, vandermonde or cauchy, got '%s'", optarg);
            o->method = k;
            break;
        }
        case OPT_DT: o->dt = ssm_parse_double("--dt", optarg, 1e-300, 1e300); o->have_dt = 1; break;
        case OPT_RATE: o->rate = ssm_parse_double("--rate", optarg, 1e-300, 1e300); o->have_rate = 1; break;
        case OPT_APPLY: o->apply = 1; break;
        case OPT_BIDIR: o->bidirectional = 1; break;
        case OPT_BACKWARD: o->backward = 1; break;
        case OPT_DTYPE:
            if (strcmp(optarg, "f32") == 0) o->dtype = SSM_F32;
            else if (strcmp(optarg, "f64") == 0) o->dtype = SSM_F64;
            else ssm_usage_error("--dtype: expected f32 or f64, got '%s'", optarg);
            break;
        case OPT_MEASURE: o->measure = 1; break;
        case OPT_DEVICE: o->device = ssm_parse_device(optarg); break;
        case OPT_LAYER:
            if (!*optarg || strlen(optarg) > 400) ssm_usage_error("--layer: expected a tensor name prefix such as layers.0.ssm");
            o->layer = optarg;
            break;
        default: ssm_usage_error("unknown option");
        }
    }
    if (o->bidirectional && !o->apply && !o->backward) ssm_usage_error("--bidirectional: only with --apply or --backward");
    if (o->device == SSM_DEVICE_CUDA && (o->backward || o->bidirectional))
        ssm_usage_error("--device cuda: the kernel and the --apply convolution run on the GPU so far (not --backward "
                        "or --bidirectional)");
#ifdef SSM_HAVE_CUDA
    if (o->device == SSM_DEVICE_CUDA) ssm_dev_require_cuda();   /* before reading any input */
#endif
    *first = optind;
}

#ifdef SSM_HAVE_CUDA
/* y = causal_conv(u, K) + D u on the GPU: u, y (batch, H, L); K (H, L); D (H) or NULL; float32. */
static void conv_forward_cuda(int64_t batch, int64_t H, int64_t L, const float *u, const float *K,
                              const float *D, float *y) {
    size_t nx = sizeof(float) * (size_t)(batch * H * L);
    const float *du = ssm_dev_upload("u", u, nx);
    const float *dK = ssm_dev_upload("K", K, sizeof(float) * (size_t)(H * L));
    const float *dD = ssm_dev_upload("D", D, sizeof(float) * (size_t)H);
    float *dy = ssm_dev_alloc("y", nx);
    ssm_dev_check("FFT convolution", fft_conv_forward_cuda(batch, H, L, du, dK, dD, dy, NULL));
    ssm_dev_download("y", y, dy, nx);
    ssm_dev_free_all();
}
#endif

/* kept in a global so that an error exit (ssm_die) leaves it reachable, not leaked */
static ssm_reader *input_reader;

int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-kernel", usage);
    options o;
    int first;
    parse(argc, argv, &o, &first);
    if (ssm_cli.threads > 0) omp_set_num_threads(ssm_cli.threads);
    fft_conv_set_measure(o.measure);
    if (argc - first > 1) ssm_usage_error("at most one input FILE");
    ssm_reader *in = input_reader = ssm_cli_open_input(first < argc ? argv[first] : "-");
    ssm_writer *out = ssm_cli_open_output(ssm_cli.output);
    ssm_tensor_set set;
    ssm_set_init(&set);
    ssm_collect_or_pass(in, out, want, &o, &set);
    /* the SSM's tensors: the stream's, or a checkpoint layer's under the usual names (those are
     * not written out; the layer's own tensors pass back unchanged) */
    ssm_tensor_set lset, *params = &set;
    ssm_set_init(&lset);
    if (!o.layer && !ssm_set_get(&set, "A") && !ssm_set_get(&set, "Lambda") && !ssm_set_get(&set, "Abar") &&
        !ssm_set_get(&set, "K")) {
        /* no SSM under the usual names: a stream holding exactly one checkpoint S4D layer
         * (ssm-tensor pick 'layers.2.*' < ckpt) is used as if --layer named it */
        static char prefix[512];
        int found = 0;
        char several[1024] = "";
        for (int i = 0; i < set.n; i++) {
            const char *nm = set.items[i]->name;
            size_t len = strlen(nm);
            if (len > 7 && strcmp(nm + len - 7, ".log_dt") == 0 && len - 7 < sizeof prefix) {
                if (found++ == 0) snprintf(prefix, sizeof prefix, "%.*s", (int)(len - 7), nm);
                size_t k = strlen(several);
                snprintf(several + k, sizeof several - k, "%s%.*s", k ? ", " : "", (int)(len - 7), nm);
            }
        }
        if (found > 1) ssm_usage_error("the stream holds %d S4D layers (%s): choose one with --layer", found, several);
        if (found == 1) {
            o.layer = prefix;
            ssm_info("using the S4D layer '%s' (as --layer %s)", prefix, prefix);
        }
    }
    if (o.layer) {
        layer_to_diag(&set, o.layer, &lset);
        params = &lset;
    }

    ssm_input s;
    read_ssm(params, &s);
    ssm_tensor *u = ssm_set_get(&set, "u"), *dy = ssm_set_get(&set, "dy");
    ssm_tensor *Kin = ssm_set_get(&set, "K"), *K2in = ssm_set_get(&set, "K2"), *dKin = ssm_set_get(&set, "dK");
    int conv = o.apply || (o.backward && dy);
    int64_t batch = 0, Hu = 0;
    if (conv) {
        if (!u) ssm_die("missing tensor 'u' (expected (batch, H, L) for %s)", o.apply ? "--apply" : "--backward with dy");
        require_float(u, 0);
        if (u->rank != 3) ssm_require_shape(u, 3, (int64_t[]){-1, -1, -1});
        batch = u->dims[0];
        Hu = u->dims[1];
        if (o.L < 0) o.L = u->dims[2];
        if (o.L != u->dims[2]) ssm_usage_error("--length %lld: u has length %lld", (long long)o.L, (long long)u->dims[2]);
        if (dy) { require_float(dy, 0); ssm_require_shape(dy, 3, u->dims); }
    }
    if (o.backward && !dy && !dKin) ssm_die("missing tensor 'dK' (expected (H, L); or give u and dy)");
    if (o.backward && dy && dKin) ssm_die("tensor 'dK': ambiguous with 'dy' on the same stream (give one)");
    if (o.L < 0 && dKin && dKin->rank == 2) o.L = dKin->dims[1];
    if (o.L < 0 && Kin && Kin->rank == 2) o.L = Kin->dims[1];
    if (o.L < 0) ssm_usage_error("--length: required (the kernel length L)");

    int real_dtype = o.dtype ? o.dtype : s.form != FORM_NONE ? s.out_dtype_real : u ? real_dtype_of(u) : Kin ? real_dtype_of(Kin) : SSM_F32;
    ssm_tensor_set outs;       /* new tensors, written after the ones read */
    ssm_set_init(&outs);

    /* the kernel: computed from the SSM, or read as K (and K2) */
    double *K = NULL;
    int64_t HK = 0;
    int method_used = -1;
    if (s.form != FORM_NONE && !(Kin && (o.apply || o.backward))) {
        K = compute_kernel(&s, &o, params, &method_used);
        HK = s.H;
        int64_t dk[2] = {HK, o.L};
        ssm_tensor *t = make_tensor("K", real_dtype, 2, dk, K, NULL);
        ssm_tensor_set_attrf(t, "L", "%lld", (long long)o.L);
        ssm_tensor_set_attr(t, "method", method_names[method_used]);
        ssm_tensor_set_attr(t, "form", form_names[s.form]);
        const char *init = ssm_tensor_get_attr(s.C, "init");
        if (init) ssm_tensor_set_attr(t, "init", init);
        if (o.have_dt || o.have_rate) ssm_tensor_set_attr(t, "redisc", "1");
        ssm_set_put(&outs, t);
    } else if (Kin) {
        require_float(Kin, 0);
        ssm_require_shape(Kin, 2, (int64_t[]){-1, o.L});
        K = ssm_as_f64(Kin, 1);
        HK = Kin->dims[0];
    } else if (o.apply || (o.backward && dy)) {
        ssm_die("missing tensor 'K' (or an SSM: A/Abar, B/Bbar, C, or Lambda, P, B, C, dt)");
    } else if (!o.backward) {
        ssm_die("missing tensors: no SSM on the input (A/Abar, B/Bbar, C; or Lambda, P, B, C, dt)");
    }

    if (conv) {
        /* the kernels for the convolution: K (Hu, L), K2 (Hu, L) with --bidirectional */
        const double *Kc = K, *K2c = NULL;
        double *K2own = NULL;
        if (o.bidirectional) {
            if (K2in && !(s.form != FORM_NONE && !Kin)) {
                require_float(K2in, 0);
                ssm_require_shape(K2in, 2, (int64_t[]){Hu, o.L});
                K2own = ssm_as_f64(K2in, 1);
                K2c = K2own;
                if (HK != Hu) ssm_die("tensor 'K': expected %lld channels (as u), got %lld", (long long)Hu, (long long)HK);
            } else {
                if (HK != 2 * Hu) ssm_die("--bidirectional: the SSM has %lld channels, expected 2 x %lld (u's channels), or give K2", (long long)HK, (long long)Hu);
                K2c = K + Hu * o.L;
            }
        } else if (HK != Hu) {
            ssm_die("tensor 'u': %lld channels, but the kernel has %lld", (long long)Hu, (long long)HK);
        }
        ssm_tensor *Dt = ssm_set_get(params, "D");
        double *D = NULL;
        if (Dt) {   /* (H); a 2H-channel bidirectional SSM may carry (2H): its first H are used */
            require_float(Dt, 0);
            if (!(o.bidirectional && HK == 2 * Hu && Dt->rank == 1 && Dt->dims[0] == 2 * Hu))
                ssm_require_shape(Dt, 1, (int64_t[]){Hu});
            D = ssm_as_f64(Dt, 1);
        }
        /* y and du are computed straight into the output tensors, in u's precision (float32 is
         * what ssm-train runs); only the (H, L) kernels and gradients go through double */
        int conv_dtype = o.dtype ? o.dtype : real_dtype_of(u);
        int64_t nk = Hu * o.L, dk[2] = {Hu, o.L}, dh[1] = {Hu};
        ssm_tensor *y = o.apply ? ssm_tensor_new("y", conv_dtype, 3, u->dims) : NULL;
        ssm_tensor *du = dy ? ssm_tensor_new("du", conv_dtype, 3, u->dims) : NULL;
        double *dK = dy ? ssm_xcalloc((size_t)(2 * nk + 1), sizeof(double)) : NULL;   /* dK, then dK2 */
        double *dD = dy ? ssm_xcalloc((size_t)(Hu + 1), sizeof(double)) : NULL;
        if (o.device == SSM_DEVICE_CUDA && conv_dtype != SSM_F32)
            ssm_die("--device cuda: the GPU convolution is float32, u is %s (add --dtype f32)", ssm_dtype_name(u->dtype));
        if (conv_dtype == SSM_F32) {
            float *u32 = u->dtype == SSM_F32 ? u->data : ssm_as_f32(u, 1);
            float *dy32 = !dy ? NULL : dy->dtype == SSM_F32 ? dy->data : ssm_as_f32(dy, 1);
            float *K32 = ssm_xmalloc(sizeof(float) * (size_t)(2 * nk + 1)), *D32 = ssm_xmalloc(sizeof(float) * (size_t)(Hu + 1));
            float *K232 = K2c ? K32 + nk : NULL;
            for (int64_t i = 0; i < nk; i++) { K32[i] = (float)Kc[i]; if (K232) K232[i] = (float)K2c[i]; }
            for (int64_t h = 0; h < Hu; h++) D32[h] = D ? (float)D[h] : 0;
#ifdef SSM_HAVE_CUDA
            if (y && o.device == SSM_DEVICE_CUDA) conv_forward_cuda(batch, Hu, o.L, u32, K32, D ? D32 : NULL, y->data);
            else
#endif
            if (y) fft_conv_forward_f32(batch, Hu, o.L, u32, K32, K232, D ? D32 : NULL, y->data);
            if (dy) {
                float *g = ssm_xmalloc(sizeof(float) * (size_t)(2 * nk + Hu + 1));
                fft_conv_backward_f32(batch, Hu, o.L, u32, K32, K232, D ? D32 : NULL, dy32, du->data, g,
                                      K232 ? g + nk : NULL, g + 2 * nk);
                for (int64_t i = 0; i < nk; i++) { dK[i] = g[i]; if (K232) dK[nk + i] = g[nk + i]; }
                for (int64_t h = 0; h < Hu; h++) dD[h] = g[2 * nk + h];
                free(g);
            }
            if (u32 != u->data) free(u32);
            if (dy && dy32 != dy->data) free(dy32);
            free(K32); free(D32);
        } else {
            double *ud = u->dtype == SSM_F64 ? u->data : ssm_as_f64(u, 1);
            double *dyd = !dy ? NULL : dy->dtype == SSM_F64 ? dy->data : ssm_as_f64(dy, 1);
            if (y) fft_conv_forward(batch, Hu, o.L, ud, Kc, K2c, D, y->data);
            if (dy) fft_conv_backward(batch, Hu, o.L, ud, Kc, K2c, D, dyd, du->data, dK, K2c ? dK + nk : NULL, dD);
            if (ud != u->data) free(ud);
            if (dy && dyd != dy->data) free(dyd);
        }
        if (y) {
            ssm_tensor_copy_attrs(y, u);
            if (o.bidirectional) ssm_tensor_set_attr(y, "bidirectional", "1");
            if (ssm_tensor_count_nonfinite(y)) ssm_die("tensor 'y': the convolution is not finite (NaN or Inf in u?)");
            ssm_set_put(&outs, y);
        }
        if (dy) {
            if (ssm_tensor_count_nonfinite(du)) ssm_die("tensor 'du': not finite (NaN or Inf in dy?)");
            ssm_tensor_copy_attrs(du, u);
            ssm_set_put(&outs, du);
            ssm_set_put(&outs, make_tensor("dK", conv_dtype, 2, dk, dK, NULL));
            if (K2c) ssm_set_put(&outs, make_tensor("dK2", conv_dtype, 2, dk, dK + nk, NULL));
            if (D) ssm_set_put(&outs, make_tensor("dD", conv_dtype, 1, dh, dD, Dt));
            /* the kernel gradient flows on to the SSM parameters when the SSM is on the stream
             * (bidirectional: its 2H channels take dK then dK2, contiguous in dK) */
            if (s.form != FORM_NONE && !Kin) s4d_backward(&s, &o, dK, &outs);
        }
        free(K2own); free(D); free(dK); free(dD);
    } else if (o.backward) {
        if (s.form == FORM_NONE) ssm_die("missing tensors: --backward with dK needs the SSM (A, B, C, dt of the diagonal form)");
        require_float(dKin, 0);
        ssm_require_shape(dKin, 2, (int64_t[]){s.H, o.L});
        double *dK = ssm_as_f64(dKin, 1);
        s4d_backward(&s, &o, dK, &outs);
        free(dK);
    }

    /* what was read goes back out (context for the next tool), then what was made */
    for (int i = 0; i < set.n; i++)
        if (!ssm_set_get(&outs, set.items[i]->name)) ssm_write_or_die(out, set.items[i]);
    for (int i = 0; i < outs.n; i++) ssm_write_or_die(out, outs.items[i]);
    free(K);
    free(s.dt_eff);
    ssm_set_free(&set);
    ssm_set_free(&lset);
    ssm_set_free(&outs);
    ssm_reader_close(in);
    input_reader = NULL;
    ssm_cli_finish(out);
}
