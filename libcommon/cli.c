/* cli.c - the error path, option helpers, stream wiring and progress shared by every tool. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

ssm_cli_state ssm_cli = {"ssm", "", "-", 0, SSM_DEFAULT_LEVEL, 0, 0};

/* Outputs opened through ssm_cli_open_output, so that ssm_die can abort them. */
#define MAX_OPEN_OUTPUTS 8
static ssm_writer *open_outputs[MAX_OPEN_OUTPUTS];
/* Inputs opened through ssm_cli_open_input.  They are not closed at exit (a tool may have closed
 * one itself); the table keeps them reachable so LeakSanitizer does not report their buffers. */
#define MAX_OPEN_INPUTS 64
static ssm_reader *open_inputs[MAX_OPEN_INPUTS];

void ssm_cli_init(int argc, char **argv, const char *prog, const char *usage) {
    (void)argc;
    (void)argv;
    ssm_cli.prog = prog;
    ssm_cli.usage = usage;
    /* A closed pipe downstream is reported as a write error instead of killing us silently. */
    signal(SIGPIPE, SIG_IGN);
}

static void abort_outputs(const char *msg) {
    for (int i = 0; i < MAX_OPEN_OUTPUTS; i++)
        if (open_outputs[i]) {
            ssm_writer *w = open_outputs[i];
            open_outputs[i] = NULL;
            ssm_writer_abort(w, msg);
        }
}

static void vdie(int status, const char *fmt, va_list ap) __attribute__((noreturn));
static void vdie(int status, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fflush(stdout);
    fprintf(stderr, "%s: %s\n", ssm_cli.prog, msg);
    if (status == 2 && ssm_cli.usage && *ssm_cli.usage) fprintf(stderr, "Try '%s --help' for more information.\n", ssm_cli.prog);
    char full[1200];
    snprintf(full, sizeof full, "%s: %s", ssm_cli.prog, msg);
    abort_outputs(full);
    exit(status);
}

void ssm_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(1, fmt, ap);
    va_end(ap);
}
void ssm_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(2, fmt, ap);
    va_end(ap);
}
void ssm_warn(const char *fmt, ...) {
    if (ssm_cli.verbose < 0) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: warning: ", ssm_cli.prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
void ssm_info(const char *fmt, ...) {
    if (ssm_cli.verbose < 1) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", ssm_cli.prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void *ssm_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) ssm_die("out of memory (allocating %zu bytes)", n);
    return p;
}
void *ssm_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) ssm_die("out of memory (allocating %zu x %zu bytes)", n, size);
    return p;
}
void *ssm_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) ssm_die("out of memory (allocating %zu bytes)", n);
    return q;
}
char *ssm_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = ssm_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

int ssm_cli_common_option(int opt, const char *arg) {
    switch (opt) {
    case 'h':
        fputs(ssm_cli.usage, stdout);
        exit(0);
    case SSM_OPT_VERSION:
        printf("%s (ssm toolkit) %s\n", ssm_cli.prog, SSM_VERSION_STRING);
        exit(0);
    case 'q': ssm_cli.verbose = -1; return 1;
    case 'v': ssm_cli.verbose = ssm_cli.verbose < 0 ? 1 : ssm_cli.verbose + 1; return 1;
    case 'o': ssm_cli.output = arg; return 1;
    case SSM_OPT_LEVEL: ssm_cli.level = (int)ssm_parse_int("--level", arg, 0, 9); return 1;
    case SSM_OPT_THREADS:
        ssm_cli.threads = (int)ssm_parse_int("--threads", arg, 1, 1024);
        ssm_stream_set_threads(ssm_cli.threads);
        return 1;
    case SSM_OPT_PROGRESS: ssm_cli.progress = 1; return 1;
    case '?': ssm_usage_error("invalid option");
    case ':': ssm_usage_error("option needs a value");
    }
    return 0;
}

long long ssm_parse_int(const char *opt, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) ssm_usage_error("%s: expected an integer, got '%s'", opt, s);
    if (v < lo || v > hi) ssm_usage_error("%s: %lld is out of range [%lld, %lld]", opt, v, lo, hi);
    return v;
}

double ssm_parse_double(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || isnan(v)) ssm_usage_error("%s: expected a number, got '%s'", opt, s);
    if (v < lo || v > hi) ssm_usage_error("%s: %g is out of range [%g, %g]", opt, v, lo, hi);
    return v;
}

int ssm_parse_shape(const char *opt, const char *s, int64_t *dims, int max_rank) {
    int rank = 0;
    const char *p = s;
    if (!*p) ssm_usage_error("%s: empty shape", opt);
    if (strcmp(p, "scalar") == 0 || strcmp(p, "[]") == 0) return 0;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || errno) ssm_usage_error("%s: malformed shape '%s' (expected e.g. 2,1024,64)", opt, s);
        if (rank == max_rank) ssm_usage_error("%s: more than %d dims in '%s'", opt, max_rank, s);
        dims[rank++] = v;
        p = end;
        if (*p == ',' || *p == 'x') {
            p++;
            if (!*p) ssm_usage_error("%s: malformed shape '%s'", opt, s);
        } else if (*p) ssm_usage_error("%s: malformed shape '%s' (expected e.g. 2,1024,64)", opt, s);
    }
    if (ssm_numel_of(rank, dims) < 0) ssm_usage_error("%s: shape '%s' is too large", opt, s);
    return rank;
}

void ssm_parse_range(const char *opt, const char *s, int64_t n, int64_t *lo, int64_t *hi) {
    const char *colon = strchr(s, ':');
    long long a = 0, b = n;
    char *end;
    if (!colon) {
        a = strtoll(s, &end, 10);
        if (end == s || *end) ssm_usage_error("%s: expected a range like 0:8, got '%s'", opt, s);
        b = a + 1;
    } else {
        if (colon != s) {
            a = strtoll(s, &end, 10);
            if (end != colon) ssm_usage_error("%s: expected a range like 0:8, got '%s'", opt, s);
        }
        if (colon[1]) {
            b = strtoll(colon + 1, &end, 10);
            if (*end) ssm_usage_error("%s: expected a range like 0:8, got '%s'", opt, s);
        }
    }
    if (a < 0) a += n;
    if (b < 0) b += n;
    if (a < 0) a = 0;
    if (b > n) b = n;
    if (a >= b) ssm_usage_error("%s: range '%s' selects nothing of %lld", opt, s, (long long)n);
    *lo = a;
    *hi = b;
}

/* ---- stream wiring ------------------------------------------------------------------------- */
ssm_reader *ssm_cli_open_input(const char *path) {
    ssm_reader *r = ssm_reader_open(path);
    if (!r) ssm_die("%s: %s", path, strerror(errno));
    for (int i = 0; i < MAX_OPEN_INPUTS; i++)
        if (!open_inputs[i]) { open_inputs[i] = r; break; }
    return r;
}

void ssm_cli_close_input(ssm_reader *r) {
    for (int i = 0; i < MAX_OPEN_INPUTS; i++)
        if (open_inputs[i] == r) open_inputs[i] = NULL;
    ssm_reader_close(r);
}

ssm_writer *ssm_cli_open_output(const char *path) {
    if (!path || strcmp(path, "-") == 0) {
        if (isatty(STDOUT_FILENO))
            ssm_usage_error("refusing to write a binary tensor stream to a terminal; redirect it (> FILE, | ssm-tensor info) or use -o FILE");
    }
    ssm_writer *w = ssm_writer_open(path, ssm_cli.level);
    if (!w) ssm_die("%s: cannot open for writing: %s", path, strerror(errno));
    for (int i = 0; i < MAX_OPEN_OUTPUTS; i++)
        if (!open_outputs[i]) { open_outputs[i] = w; return w; }
    ssm_die("internal error: too many open outputs");
}

static void forget_output(ssm_writer *w) {
    for (int i = 0; i < MAX_OPEN_OUTPUTS; i++)
        if (open_outputs[i] == w) open_outputs[i] = NULL;
}

void ssm_cli_close_output(ssm_writer *w) {
    forget_output(w);
    char msg[1100];
    if (ssm_writer_close(w, msg, sizeof msg) < 0) ssm_die("%s", msg);
}

void ssm_cli_finish(ssm_writer *out) {
    if (out) {
        forget_output(out);
        char msg[1100];
        if (ssm_writer_close(out, msg, sizeof msg) < 0) ssm_die("%s", msg);
    }
    exit(0);
}

int ssm_next_or_die(ssm_reader *r, ssm_tensor **hdr) {
    int rc = ssm_reader_next(r, hdr);
    if (rc < 0) ssm_die("%s", ssm_reader_error(r));
    return rc;
}
void ssm_read_payload_or_die(ssm_reader *r, ssm_tensor *t) {
    t->data = ssm_reader_read_payload_alloc(r);
    if (!t->data) ssm_die("%s", ssm_reader_error(r));
}
void ssm_pass_through_or_die(ssm_reader *r, ssm_writer *w, const ssm_tensor *hdr) {
    if (ssm_pass_through(r, w, hdr) < 0) {
        const char *re = ssm_reader_error(r), *we = ssm_writer_error(w);
        ssm_die("%s", strcmp(re, "no error") ? re : we);
    }
}
void ssm_write_or_die(ssm_writer *w, const ssm_tensor *t) {
    if (ssm_writer_write(w, t) < 0) ssm_die("%s", ssm_writer_error(w));
}

void ssm_collect_or_pass(ssm_reader *in, ssm_writer *out, int (*want)(const char *, void *), void *ctx,
                         ssm_tensor_set *set) {
    ssm_tensor *h;
    while (ssm_next_or_die(in, &h)) {
        if (want(h->name, ctx)) {
            ssm_tensor *t = ssm_tensor_new_header(h);
            ssm_read_payload_or_die(in, t);
            ssm_set_put(set, t);
        } else if (out) {
            ssm_pass_through_or_die(in, out, h);
        } else if (ssm_reader_skip(in) < 0) {
            ssm_die("%s", ssm_reader_error(in));
        }
    }
}

ssm_tensor *ssm_require(const ssm_tensor_set *set, const char *name, const char *expect) {
    ssm_tensor *t = ssm_set_get(set, name);
    if (!t) ssm_die("missing tensor '%s'%s%s%s", name, expect ? " (expected " : "", expect ? expect : "", expect ? ")" : "");
    return t;
}

void ssm_require_shape(const ssm_tensor *t, int rank, const int64_t *dims) {
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        if (dims[i] >= 0 && t->dims[i] != dims[i]) ok = 0;
    if (!ok) {
        char want[256], got[256];
        int k = 0;
        k += snprintf(want + k, sizeof want - (size_t)k, "[");
        for (int i = 0; i < rank; i++) {
            if (dims[i] >= 0) k += snprintf(want + k, sizeof want - (size_t)k, "%s%lld", i ? ", " : "", (long long)dims[i]);
            else k += snprintf(want + k, sizeof want - (size_t)k, "%s*", i ? ", " : "");
        }
        snprintf(want + k, sizeof want - (size_t)k, "]");
        ssm_die("tensor '%s': expected shape %s, got %s", t->name, want, ssm_shape_string(t->rank, t->dims, got, sizeof got));
    }
}

static void check_finite_or_die(const ssm_tensor *t) {
    int64_t bad = ssm_tensor_count_nonfinite(t);
    if (bad) ssm_die("tensor '%s': %lld NaN/Inf values in the input", t->name, (long long)bad);
}

double *ssm_as_f64(const ssm_tensor *t, int check_finite) {
    if (ssm_dtype_is_complex(t->dtype)) ssm_die("tensor '%s': expected a real dtype, got %s", t->name, ssm_dtype_name(t->dtype));
    if (check_finite) check_finite_or_die(t);
    int64_t n = ssm_tensor_numel(t);
    double *o = ssm_xmalloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) o[i] = ssm_tensor_get_f64(t, i);
    return o;
}

float *ssm_as_f32(const ssm_tensor *t, int check_finite) {
    if (ssm_dtype_is_complex(t->dtype)) ssm_die("tensor '%s': expected a real dtype, got %s", t->name, ssm_dtype_name(t->dtype));
    if (check_finite) check_finite_or_die(t);
    int64_t n = ssm_tensor_numel(t);
    float *o = ssm_xmalloc((size_t)(n ? n : 1) * sizeof(float));
    if (t->dtype == SSM_F32) memcpy(o, t->data, (size_t)n * sizeof(float));
    else for (int64_t i = 0; i < n; i++) o[i] = (float)ssm_tensor_get_f64(t, i);
    return o;
}

double *ssm_as_c128(const ssm_tensor *t, int check_finite) {
    if (check_finite) check_finite_or_die(t);
    int64_t n = ssm_tensor_numel(t);
    double *o = ssm_xmalloc((size_t)(n ? n : 1) * 2 * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == SSM_C64) { o[2 * i] = ((float *)t->data)[2 * i]; o[2 * i + 1] = ((float *)t->data)[2 * i + 1]; }
        else if (t->dtype == SSM_C128) { o[2 * i] = ((double *)t->data)[2 * i]; o[2 * i + 1] = ((double *)t->data)[2 * i + 1]; }
        else { o[2 * i] = ssm_tensor_get_f64(t, i); o[2 * i + 1] = 0; }
    }
    return o;
}

/* ---- progress ------------------------------------------------------------------------------ */
double ssm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ssm_progress_start(ssm_progress *p, const char *what, int64_t total) {
    p->what = what;
    p->total = total;
    p->done = 0;
    p->t0 = p->last = ssm_now();
    p->active = ssm_cli.verbose >= 0 && (ssm_cli.progress || isatty(STDERR_FILENO));
}

void ssm_progress_update(ssm_progress *p, int64_t done) {
    p->done = done;
    if (!p->active) return;
    double t = ssm_now();
    if (t - p->last < 0.25 && done < p->total) return;
    p->last = t;
    double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
    if (p->total > 0) {
        double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
        fprintf(stderr, "\r%s: %s %lld/%lld (%.0f%%), %.3g/s, ETA %.0fs   ", ssm_cli.prog, p->what,
                (long long)done, (long long)p->total, 100.0 * (double)done / (double)p->total, rate, eta);
    } else {
        fprintf(stderr, "\r%s: %s %lld, %.3g/s   ", ssm_cli.prog, p->what, (long long)done, rate);
    }
    fflush(stderr);
}

void ssm_progress_end(ssm_progress *p) {
    if (!p->active) return;
    ssm_progress_update(p, p->total > 0 ? p->total : p->done);
    fprintf(stderr, " done in %.2fs\n", ssm_now() - p->t0);
}
