/* ssm-tensor - inspect, convert, generate and compare tensor streams.
 *
 * One subcommand per job, dispatched from the table in main.  Every subcommand streams: a tensor
 * that is passed through, exported, imported, generated or compared is moved in chunks of about
 * 1 MiB, never held whole (the exceptions: diff holds a tensor of B that arrives out of A's order,
 * and a Fortran-ordered .npy is transposed in memory).  See man/ssm-tensor.1. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "npy.h"
#include "safetensors.h"

static const char *usage =
    "Usage: ssm-tensor COMMAND [OPTIONS] [ARGS...]\n"
    "Inspect, convert, generate and compare tensor streams (see ssm-stream(5), ssm-tensor(1)).\n"
    "\n"
    "Commands (FILE... are tensor streams; none or '-' reads stdin):\n"
    "  info [FILE...]             name, dtype, shape, attributes, sizes, min/max/mean/std, NaN/Inf counts\n"
    "  cat [FILE...]              validate and concatenate streams\n"
    "  pick PATTERN... [-i FILE]  keep the tensors whose names match (names or globs like 'layers.2.*')\n"
    "  drop PATTERN... [-i FILE]  remove the tensors whose names match\n"
    "  rename OLD=NEW... [-i FILE]  rename tensors (exact names)\n"
    "  import FILE...             .npy and .safetensors files to a stream (--name, --prefix, --append)\n"
    "  export --format F [FILE...]  F = npy (--dir DIR: DIR/NAME.npy each), safetensors (-o FILE or\n"
    "                             DIR/tensors.safetensors), text (human-readable, -o FILE or stdout)\n"
    "  rand --shape S --name N    random tensor: --dist normal (--mean, --std) | uniform (--low, --high),\n"
    "                             --seed S (default 0; written as attribute seed=)\n"
    "  fill --shape S --name N --value V   constant tensor (complex: --value RE,IM)\n"
    "  arange --name N [--start A] [--step D] (--stop B | --shape S)   A, A+D, A+2D, ...\n"
    "  diff A B [--rtol R] [--atol T] [--exact]   compare two streams by name: exit 0 if all close,\n"
    "                             1 if not (|a-b| <= T + R|b|; defaults R=1e-5, T=1e-8)\n"
    "\n"
    "Generator and import options:\n"
    "      --dtype D           f32 (default), f64, f16, bf16, c64, c128, i8..i64, u8..u64, bool\n"
    "      --append[=FILE]     copy the stream FILE (default stdin) to the output first; a tensor of\n"
    "                          the same name in it is dropped (the new one replaces it)\n"
    "Common options:\n"
    "  -o, --output FILE   write to FILE (default stdout; '-' is stdout)\n"
    "  -i, --input FILE    input stream of pick/drop/rename (repeatable; default stdin)\n"
    "      --level N       compression level 0 (stored) .. 9 (default 1)\n"
    "      --threads N     threads for compression (default: all cores)\n"
    "  -q, --quiet         no warnings;  -v, --verbose  more messages\n"
    "  -h, --help          this text;    --version     the version\n"
    "Exit status: 0 ok (diff: all close), 1 data error (diff: a difference), 2 usage error.\n";

/* ---- options -------------------------------------------------------------------------------- */
enum {
    OPT_SHAPE = SSM_OPT_TOOL_FIRST, OPT_NAME, OPT_DTYPE, OPT_DIST, OPT_SEED, OPT_MEAN, OPT_STD,
    OPT_LOW, OPT_HIGH, OPT_VALUE, OPT_START, OPT_STOP, OPT_STEP, OPT_APPEND, OPT_FORMAT, OPT_DIR,
    OPT_RTOL, OPT_ATOL, OPT_EXACT, OPT_PREFIX, OPT_INPUT = 'i',
};

static struct {
    const char *inputs[256];
    int ninputs;
    const char *shape, *name, *dtype, *dist, *value, *format, *dir, *prefix, *append_file;
    const char *seed, *mean, *std, *low, *high, *start, *stop, *step, *rtol, *atol;
    int append, exact, output_given;
} o;

/* Parses the options of one subcommand; `allowed` lists the tool options it takes (the common
 * ones are always allowed).  Returns the index of the first positional argument (options and
 * arguments may be mixed; argv is permuted). */
static int parse_options(int argc, char **argv, const int *allowed) {
    static struct option opts[] = {
        SSM_CLI_COMMON_OPTS,
        {"input", required_argument, 0, OPT_INPUT},
        {"shape", required_argument, 0, OPT_SHAPE},
        {"name", required_argument, 0, OPT_NAME},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"dist", required_argument, 0, OPT_DIST},
        {"seed", required_argument, 0, OPT_SEED},
        {"mean", required_argument, 0, OPT_MEAN},
        {"std", required_argument, 0, OPT_STD},
        {"low", required_argument, 0, OPT_LOW},
        {"high", required_argument, 0, OPT_HIGH},
        {"value", required_argument, 0, OPT_VALUE},
        {"start", required_argument, 0, OPT_START},
        {"stop", required_argument, 0, OPT_STOP},
        {"step", required_argument, 0, OPT_STEP},
        {"append", optional_argument, 0, OPT_APPEND},
        {"format", required_argument, 0, OPT_FORMAT},
        {"dir", required_argument, 0, OPT_DIR},
        {"rtol", required_argument, 0, OPT_RTOL},
        {"atol", required_argument, 0, OPT_ATOL},
        {"exact", no_argument, 0, OPT_EXACT},
        {"prefix", required_argument, 0, OPT_PREFIX},
        {0, 0, 0, 0}};
    int c, idx;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":" SSM_CLI_COMMON_SHORT "i:", opts, &idx)) != -1) {
        if (c == '?') {
            if (optopt) ssm_usage_error("%s: unknown option '-%c'", argv[0], optopt);
            ssm_usage_error("%s: unknown option '%s'", argv[0], argv[optind - 1]);
        }
        if (c == ':') ssm_usage_error("%s: option '%s' needs a value", argv[0], argv[optind - 1]);
        if (c == 'o') o.output_given = 1;
        if (ssm_cli_common_option(c, optarg)) continue;
        int ok = 0;
        for (const int *a = allowed; *a; a++) ok |= *a == c;
        if (!ok) {
            const char *name = "?";
            for (struct option *p = opts; p->name; p++) if (p->val == c) name = p->name;
            ssm_usage_error("%s: --%s is not an option of this command", argv[0], name);
        }
        switch (c) {
        case OPT_INPUT:
            if (o.ninputs == (int)(sizeof o.inputs / sizeof o.inputs[0])) ssm_usage_error("-i: too many inputs");
            o.inputs[o.ninputs++] = optarg;
            break;
        case OPT_SHAPE: o.shape = optarg; break;
        case OPT_NAME: o.name = optarg; break;
        case OPT_DTYPE: o.dtype = optarg; break;
        case OPT_DIST: o.dist = optarg; break;
        case OPT_SEED: o.seed = optarg; break;
        case OPT_MEAN: o.mean = optarg; break;
        case OPT_STD: o.std = optarg; break;
        case OPT_LOW: o.low = optarg; break;
        case OPT_HIGH: o.high = optarg; break;
        case OPT_VALUE: o.value = optarg; break;
        case OPT_START: o.start = optarg; break;
        case OPT_STOP: o.stop = optarg; break;
        case OPT_STEP: o.step = optarg; break;
        case OPT_APPEND: o.append = 1; o.append_file = optarg; break;
        case OPT_FORMAT: o.format = optarg; break;
        case OPT_DIR: o.dir = optarg; break;
        case OPT_RTOL: o.rtol = optarg; break;
        case OPT_ATOL: o.atol = optarg; break;
        case OPT_EXACT: o.exact = 1; break;
        case OPT_PREFIX: o.prefix = optarg; break;
        }
    }
    return optind;
}

static int parse_dtype_option(int dflt) {
    if (!o.dtype) return dflt;
    int d = ssm_dtype_from_name(o.dtype);
    if (!d) ssm_usage_error("--dtype: unknown dtype '%s' (f32 f64 f16 bf16 c64 c128 i8 i16 i32 i64 u8 u16 u32 u64 bool)", o.dtype);
    return d;
}

static void check_name(const char *opt, const char *name) {
    if (!name[0] || strlen(name) > SSM_MAX_NAME) ssm_usage_error("%s: a tensor name must be 1..%d bytes", opt, SSM_MAX_NAME);
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 32 || *p == 127) ssm_usage_error("%s: tensor name contains a control character", opt);
}

/* ---- temporary outputs (removed if we die before renaming them into place) ------------------ */
static char *pending_tmp[4];
static ssm_safetensors_writer *pending_st;
static void remove_pending(void) {
    for (int i = 0; i < 4; i++) if (pending_tmp[i]) unlink(pending_tmp[i]);
    if (pending_st) { ssm_safetensors_writer *w = pending_st; pending_st = NULL; ssm_safetensors_writer_abort(w); }
}
static void track_tmp(char *path) {
    static int registered;
    if (!registered) { atexit(remove_pending); registered = 1; }
    for (int i = 0; i < 4; i++) if (!pending_tmp[i]) { pending_tmp[i] = path; return; }
}
static void untrack_tmp(char *path) {
    for (int i = 0; i < 4; i++) if (pending_tmp[i] == path) pending_tmp[i] = NULL;
}
/* Opens "path.tmp.XXXXXX" for writing; *tmp receives its name (tracked). */
static FILE *open_tmp(const char *path, char **tmp) {
    size_t n = strlen(path) + 16;
    *tmp = ssm_xmalloc(n);
    snprintf(*tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(*tmp);
    if (fd < 0) ssm_die("%s: cannot create: %s", path, strerror(errno));
    track_tmp(*tmp);
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    FILE *f = fdopen(fd, "wb");
    if (!f) ssm_die("%s: %s", path, strerror(errno));
    return f;
}
static void commit_tmp(FILE *f, char *tmp, const char *path) {
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) ssm_die("%s: write error: %s", path, strerror(errno));
    if (rename(tmp, path) != 0) ssm_die("%s: cannot rename into place: %s", path, strerror(errno));
    untrack_tmp(tmp);
    free(tmp);
}

/* ---- memory held while a command may die ----------------------------------------------------
 * ssm_die exits at once.  What a command holds at that moment is released by exit, but a leak
 * checker (the ASan build) reports every block that is no longer reachable, so the blocks live
 * while a command can die are kept reachable from here: the two chunk buffers, and the blocks
 * registered with hold() until unhold(). */
#define CHUNK_BYTES (1u << 20)
static unsigned char *chunk_buffers[2];
static unsigned char *chunk_buffer(int i) {
    if (!chunk_buffers[i]) chunk_buffers[i] = ssm_xmalloc(CHUNK_BYTES);
    return chunk_buffers[i];
}
static void *held_blocks[32];
static void *hold(void *p) {
    for (int i = 0; i < 32; i++) if (!held_blocks[i]) { held_blocks[i] = p; break; }
    return p;
}
static void unhold(void *p) {
    for (int i = 0; i < 32; i++) if (held_blocks[i] == p) { held_blocks[i] = NULL; break; }
}

/* ---- streaming the elements of a payload ----------------------------------------------------- */

/* Reads up to n bytes of the current payload (fewer only at its end). */
static size_t read_full(ssm_reader *r, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        int64_t k = ssm_reader_read_some(r, (unsigned char *)buf + got, n - got);
        if (k < 0) ssm_die("%s", ssm_reader_error(r));
        if (k == 0) break;
        got += (size_t)k;
    }
    return got;
}

/* Calls fn on successive chunks of whole elements of the reader's current payload:
 * view->data holds `count` elements, the first of which is element `first` of the tensor. */
typedef void (*chunk_fn)(const ssm_tensor *view, int64_t first, int64_t count, void *ctx);
static void for_each_chunk(ssm_reader *r, const ssm_tensor *h, chunk_fn fn, void *ctx) {
    size_t es = ssm_dtype_size(h->dtype), cap = CHUNK_BYTES / es * es;
    unsigned char *buf = chunk_buffer(0);
    ssm_tensor view = *h;
    view.data = buf;
    int64_t first = 0;
    for (;;) {
        size_t got = read_full(r, buf, cap);
        if (got == 0) break;
        if (got % es) ssm_die("%s: tensor '%s': payload is not a whole number of elements", ssm_reader_label(r), h->name);
        fn(&view, first, (int64_t)(got / es), ctx);
        first += (int64_t)(got / es);
    }
}

/* Element i as long double: exact for every integer dtype (i64/u64 included). */
static long double get_ld(const ssm_tensor *t, int64_t i) {
    if (t->dtype == SSM_I64) return (long double)((const int64_t *)t->data)[i];
    if (t->dtype == SSM_U64) return (long double)((const uint64_t *)t->data)[i];
    return ssm_tensor_get_f64(t, i);
}
static double get_imag(const ssm_tensor *t, int64_t i) {
    if (t->dtype == SSM_C64) return ((const float *)t->data)[2 * i + 1];
    if (t->dtype == SSM_C128) return ((const double *)t->data)[2 * i + 1];
    return 0;
}
/* Significant digits that print a value of this dtype uniquely. */
static int dtype_digits(int d) {
    switch (d) {
    case SSM_F64: case SSM_C128: return 17;
    case SSM_F16: return 5;
    case SSM_BF16: return 4;
    default: return 9;
    }
}
static int is_integer_dtype(int d) { return !ssm_dtype_is_float(d) && !ssm_dtype_is_complex(d); }

/* Element i of t as text: "1.5", "-3", "1.5+2j". */
static void format_value(char *buf, size_t n, const ssm_tensor *t, int64_t i) {
    int dg = dtype_digits(t->dtype);
    if (t->dtype == SSM_I64) snprintf(buf, n, "%lld", (long long)((const int64_t *)t->data)[i]);
    else if (t->dtype == SSM_U64) snprintf(buf, n, "%llu", (unsigned long long)((const uint64_t *)t->data)[i]);
    else if (is_integer_dtype(t->dtype)) snprintf(buf, n, "%.0f", ssm_tensor_get_f64(t, i));
    else if (ssm_dtype_is_complex(t->dtype)) snprintf(buf, n, "%.*g%+.*gj", dg, ssm_tensor_get_f64(t, i), dg, get_imag(t, i));
    else snprintf(buf, n, "%.*g", dg, ssm_tensor_get_f64(t, i));
}
/* Flat index -> "[i, j, k]". */
static void format_index(char *buf, size_t n, const ssm_tensor *t, int64_t flat) {
    int64_t idx[SSM_MAX_RANK];
    for (int d = t->rank - 1; d >= 0; d--) {
        idx[d] = t->dims[d] ? flat % t->dims[d] : 0;
        flat = t->dims[d] ? flat / t->dims[d] : 0;
    }
    ssm_shape_string(t->rank, idx, buf, n);
}

/* ================================ info ======================================================= */
typedef struct {
    long double sum, sumsq;
    double mn, mx;
    int64_t count, nan, inf;
} stats;

static void stats_chunk(const ssm_tensor *v, int64_t first, int64_t count, void *ctx) {
    (void)first;
    stats *s = ctx;
    for (int64_t i = 0; i < count; i++) {
        double x = ssm_tensor_get_f64(v, i);
        if (isnan(x)) { s->nan++; continue; }
        if (isinf(x)) { s->inf++; continue; }
        if (x < s->mn) s->mn = x;
        if (x > s->mx) s->mx = x;
        s->sum += x;
        s->sumsq += (long double)x * x;
        s->count++;
    }
}

static void info_tensor(ssm_reader *r, ssm_tensor *h) {
    char desc[600];
    ssm_tensor_describe(h, desc, sizeof desc);
    int64_t n = ssm_tensor_numel(h);
    printf("%-24s %s  %lld elements, %zu bytes\n", h->name, desc, (long long)n, ssm_tensor_nbytes(h));
    for (int i = 0; i < h->nattrs; i++) printf("    %s=%s\n", h->attrs[i].key, h->attrs[i].value);
    stats s = {0, 0, INFINITY, -INFINITY, 0, 0, 0};
    for_each_chunk(r, h, stats_chunk, &s);
    if (n == 0) return;
    if (s.count) {
        long double mean = s.sum / s.count, var = s.sumsq / s.count - mean * mean;
        printf("    min %.6g  max %.6g  mean %.6g  std %.6g", s.mn, s.mx, (double)mean, var > 0 ? sqrt((double)var) : 0.0);
    } else {
        printf("    min nan  max nan  mean nan  std nan");
    }
    printf("  nan %lld  inf %lld%s\n", (long long)s.nan, (long long)s.inf,
           ssm_dtype_is_complex(h->dtype) ? "  (real parts)" : "");
}

static int cmd_info(int argc, char **argv) {
    static const int allowed[] = {0};
    int first = parse_options(argc, argv, allowed);
    int nfiles = argc - first;
    for (int f = 0; f < (nfiles ? nfiles : 1); f++) {
        ssm_reader *r = ssm_cli_open_input(nfiles ? argv[first + f] : "-");
        if (nfiles > 1) printf("== %s\n", ssm_reader_label(r));
        ssm_tensor *h;
        int count = 0;
        while (ssm_next_or_die(r, &h)) { info_tensor(r, h); count++; }
        if (count == 0) printf("%s: empty stream\n", ssm_reader_label(r));
        ssm_reader_close(r);
    }
    return 0;
}

/* ================================ cat ======================================================== */
static int cmd_cat(int argc, char **argv) {
    static const int allowed[] = {0};
    int first = parse_options(argc, argv, allowed);
    ssm_writer *w = ssm_cli_open_output(ssm_cli.output);
    int nfiles = argc - first;
    for (int f = 0; f < (nfiles ? nfiles : 1); f++) {
        ssm_reader *r = ssm_cli_open_input(nfiles ? argv[first + f] : "-");
        ssm_tensor *h;
        while (ssm_next_or_die(r, &h)) ssm_pass_through_or_die(r, w, h);
        ssm_reader_close(r);
    }
    ssm_cli_finish(w);
}

/* ================================ pick, drop, rename ========================================== */
/* Runs fn over every frame of the -i inputs (default stdin). */
typedef void (*frame_fn)(ssm_reader *r, ssm_tensor *h, ssm_writer *w, void *ctx);
static void for_each_frame(ssm_writer *w, frame_fn fn, void *ctx) {
    for (int f = 0; f < (o.ninputs ? o.ninputs : 1); f++) {
        ssm_reader *r = ssm_cli_open_input(o.ninputs ? o.inputs[f] : "-");
        ssm_tensor *h;
        while (ssm_next_or_die(r, &h)) fn(r, h, w, ctx);
        ssm_reader_close(r);
    }
}

typedef struct {
    char **patterns;
    int n, *hits, keep_matching;
} select_ctx;

static void select_frame(ssm_reader *r, ssm_tensor *h, ssm_writer *w, void *ctx) {
    select_ctx *s = ctx;
    int match = 0;
    for (int i = 0; i < s->n; i++)
        if (ssm_glob_match(s->patterns[i], h->name)) { s->hits[i]++; match = 1; }
    if (match == s->keep_matching) ssm_pass_through_or_die(r, w, h);
    else if (ssm_reader_skip(r) < 0) ssm_die("%s", ssm_reader_error(r));
}

static int cmd_select(int argc, char **argv, int keep) {
    static const int allowed[] = {OPT_INPUT, 0};
    int first = parse_options(argc, argv, allowed);
    if (first == argc) ssm_usage_error("%s: no PATTERN given (names or globs such as 'layers.2.*')", argv[0]);
    static select_ctx s;
    s = (select_ctx){argv + first, argc - first, ssm_xcalloc((size_t)(argc - first), sizeof(int)), keep};
    ssm_writer *w = ssm_cli_open_output(ssm_cli.output);
    for_each_frame(w, select_frame, &s);
    for (int i = 0; i < s.n; i++)
        if (!s.hits[i]) {
            if (keep) ssm_die("pick: no tensor matches '%s'", s.patterns[i]);
            ssm_warn("drop: no tensor matches '%s'", s.patterns[i]);
        }
    free(s.hits);
    ssm_cli_finish(w);
}
static int cmd_pick(int argc, char **argv) { return cmd_select(argc, argv, 1); }
static int cmd_drop(int argc, char **argv) { return cmd_select(argc, argv, 0); }

typedef struct {
    char **old, **new_;
    int n, *hits;
    char **seen;          /* names written so far, and whether each came from a rename */
    int *seen_renamed, nseen, capseen;
} rename_ctx;

static void rename_frame(ssm_reader *r, ssm_tensor *h, ssm_writer *w, void *ctx) {
    rename_ctx *c = ctx;
    int which = -1;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->old[i], h->name) == 0) { which = i; break; }
    const char *out = which >= 0 ? c->new_[which] : h->name;
    for (int i = 0; i < c->nseen; i++)
        if (strcmp(c->seen[i], out) == 0 && (which >= 0 || c->seen_renamed[i]))
            ssm_die("rename: the output would hold two tensors named '%s'", out);
    if (c->nseen == c->capseen) {
        c->capseen = c->capseen ? 2 * c->capseen : 64;
        c->seen = ssm_xrealloc(c->seen, (size_t)c->capseen * sizeof *c->seen);
        c->seen_renamed = ssm_xrealloc(c->seen_renamed, (size_t)c->capseen * sizeof *c->seen_renamed);
    }
    c->seen[c->nseen] = ssm_xstrdup(out);
    c->seen_renamed[c->nseen++] = which >= 0;
    if (which < 0) { ssm_pass_through_or_die(r, w, h); return; }
    c->hits[which]++;
    ssm_tensor *nh = hold(ssm_tensor_new_header(h));
    ssm_tensor_set_name(nh, out);
    ssm_pass_through_or_die(r, w, nh);
    unhold(nh);
    ssm_tensor_free(nh);
}

static int cmd_rename(int argc, char **argv) {
    static const int allowed[] = {OPT_INPUT, 0};
    int first = parse_options(argc, argv, allowed);
    int n = argc - first;
    if (n == 0) ssm_usage_error("rename: no OLD=NEW given");
    static rename_ctx c;
    c.n = n;
    c.old = ssm_xcalloc((size_t)n, sizeof(char *));
    c.new_ = ssm_xcalloc((size_t)n, sizeof(char *));
    c.hits = ssm_xcalloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        char *arg = argv[first + i], *eq = strchr(arg, '=');
        if (!eq || eq == arg || !eq[1]) ssm_usage_error("rename: expected OLD=NEW, got '%s'", arg);
        c.old[i] = ssm_xstrdup(arg);
        c.old[i][eq - arg] = 0;
        c.new_[i] = eq + 1;
        check_name("rename", c.new_[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(c.old[j], c.old[i]) == 0) ssm_usage_error("rename: '%s' is renamed twice", c.old[i]);
    }
    ssm_writer *w = ssm_cli_open_output(ssm_cli.output);
    for_each_frame(w, rename_frame, &c);
    for (int i = 0; i < n; i++)
        if (!c.hits[i]) ssm_die("rename: no tensor named '%s'", c.old[i]);
    ssm_cli_finish(w);
}

/* ================================ generators ================================================= */
/* The stream named by --append (stdin by default) goes first, less the tensors named in `skip`. */
static void copy_appended(ssm_writer *w, char **skip, int nskip) {
    if (!o.append) return;
    ssm_reader *r = ssm_cli_open_input(o.append_file ? o.append_file : "-");
    ssm_tensor *h;
    while (ssm_next_or_die(r, &h)) {
        int replaced = 0;
        for (int i = 0; i < nskip; i++) replaced |= strcmp(skip[i], h->name) == 0;
        if (!replaced) { ssm_pass_through_or_die(r, w, h); continue; }
        ssm_info("replacing tensor '%s' of the appended stream", h->name);
        if (ssm_reader_skip(r) < 0) ssm_die("%s", ssm_reader_error(r));
    }
    ssm_reader_close(r);
}

/* xoshiro256** seeded through splitmix64: fast, and the same numbers on every platform. */
typedef struct { uint64_t s[4]; int have_spare; double spare; } rng;
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static void rng_seed(rng *g, uint64_t seed) {
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&seed);
    g->have_spare = 0;
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t rng_next(rng *g) {
    uint64_t *s = g->s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
}
static double rng_uniform(rng *g) { return (double)(rng_next(g) >> 11) * 0x1p-53; }   /* [0, 1) */
static double rng_normal(rng *g) {   /* Box-Muller, both values used */
    if (g->have_spare) { g->have_spare = 0; return g->spare; }
    double u1 = 1.0 - rng_uniform(g), u2 = rng_uniform(g);   /* u1 in (0, 1] */
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    g->spare = rad * sin(th);
    g->have_spare = 1;
    return rad * cos(th);
}

/* Stores (re, im) as element i of a dtype; 0 if it does not fit (integers: range, integrality is
 * rounded to nearest; bool: 0 or 1). */
static int store_value(void *buf, int dtype, int64_t i, long double re, long double im) {
    switch (dtype) {
    case SSM_F32: ((float *)buf)[i] = (float)re; return 1;
    case SSM_F64: ((double *)buf)[i] = (double)re; return 1;
    case SSM_F16: ((uint16_t *)buf)[i] = ssm_f32_to_f16((float)re); return 1;
    case SSM_BF16: ((uint16_t *)buf)[i] = ssm_f32_to_bf16((float)re); return 1;
    case SSM_C64: ((float *)buf)[2 * i] = (float)re; ((float *)buf)[2 * i + 1] = (float)im; return 1;
    case SSM_C128: ((double *)buf)[2 * i] = (double)re; ((double *)buf)[2 * i + 1] = (double)im; return 1;
    }
    long double r = nearbyintl(re);
    if (isnan(r)) return 0;
    switch (dtype) {
    case SSM_I8: if (r < -128 || r > 127) return 0; ((int8_t *)buf)[i] = (int8_t)r; return 1;
    case SSM_I16: if (r < -32768 || r > 32767) return 0; ((int16_t *)buf)[i] = (int16_t)r; return 1;
    case SSM_I32: if (r < INT32_MIN || r > INT32_MAX) return 0; ((int32_t *)buf)[i] = (int32_t)r; return 1;
    case SSM_I64: if (r < -9223372036854775808.0L || r >= 9223372036854775808.0L) return 0; ((int64_t *)buf)[i] = (int64_t)r; return 1;
    case SSM_U8: if (r < 0 || r > 255) return 0; ((uint8_t *)buf)[i] = (uint8_t)r; return 1;
    case SSM_U16: if (r < 0 || r > 65535) return 0; ((uint16_t *)buf)[i] = (uint16_t)r; return 1;
    case SSM_U32: if (r < 0 || r > 4294967295.0L) return 0; ((uint32_t *)buf)[i] = (uint32_t)r; return 1;
    case SSM_U64: if (r < 0 || r >= 18446744073709551616.0L) return 0; ((uint64_t *)buf)[i] = (uint64_t)r; return 1;
    case SSM_BOOL: if (r != 0 && r != 1) return 0; ((uint8_t *)buf)[i] = (uint8_t)r; return 1;
    }
    return 0;
}

static long double parse_ld(const char *opt, const char *s) {
    char *end;
    errno = 0;
    long double v = strtold(s, &end);
    if (!*s || *end || errno == ERANGE) ssm_usage_error("%s: expected a number, got '%s'", opt, s);
    return v;
}

enum { GEN_RAND, GEN_FILL, GEN_ARANGE };
typedef struct {
    int kind, dtype, normal;
    long double a, b;     /* rand: mean, std (normal) or low, high (uniform); fill: re, im; arange: start, step */
    rng g;
} generator;

static void generate_chunk(generator *gen, void *buf, int64_t first, int64_t count) {
    int cplx = ssm_dtype_is_complex(gen->dtype), integer = is_integer_dtype(gen->dtype);
    for (int64_t i = 0; i < count; i++) {
        long double re = 0, im = 0;
        if (gen->kind == GEN_FILL) { re = gen->a; im = gen->b; }
        else if (gen->kind == GEN_ARANGE) re = gen->a + gen->b * (long double)(first + i);
        else if (integer) re = floorl(gen->a + (gen->b - gen->a) * (long double)rng_uniform(&gen->g));
        else if (gen->normal) {
            re = gen->a + gen->b * rng_normal(&gen->g);
            if (cplx) im = gen->a + gen->b * rng_normal(&gen->g);
        } else {
            re = gen->a + (gen->b - gen->a) * rng_uniform(&gen->g);
            if (cplx) im = gen->a + (gen->b - gen->a) * rng_uniform(&gen->g);
        }
        if (!store_value(buf, gen->dtype, i, re, im))
            ssm_die("value %.17Lg at element %lld does not fit dtype %s", re, (long long)(first + i), ssm_dtype_name(gen->dtype));
    }
}

static int cmd_generate(int argc, char **argv, int kind) {
    static const int allowed_rand[] = {OPT_SHAPE, OPT_NAME, OPT_DTYPE, OPT_DIST, OPT_SEED, OPT_MEAN, OPT_STD, OPT_LOW, OPT_HIGH, OPT_APPEND, 0};
    static const int allowed_fill[] = {OPT_SHAPE, OPT_NAME, OPT_DTYPE, OPT_VALUE, OPT_APPEND, 0};
    static const int allowed_arange[] = {OPT_SHAPE, OPT_NAME, OPT_DTYPE, OPT_START, OPT_STOP, OPT_STEP, OPT_APPEND, 0};
    const char *cmd = argv[0];
    int first = parse_options(argc, argv, kind == GEN_RAND ? allowed_rand : kind == GEN_FILL ? allowed_fill : allowed_arange);
    if (first < argc) ssm_usage_error("%s: unexpected argument '%s' (use --append=FILE to extend a stream)", cmd, argv[first]);
    if (!o.name) ssm_usage_error("%s: --name is required", cmd);
    check_name("--name", o.name);
    generator gen = {0};
    gen.kind = kind;
    gen.dtype = parse_dtype_option(SSM_F32);
    int64_t dims[SSM_MAX_RANK];
    int rank = -1;
    if (o.shape) rank = ssm_parse_shape("--shape", o.shape, dims, SSM_MAX_RANK);
    ssm_tensor *hdr = NULL;
    if (kind == GEN_RAND) {
        if (rank < 0) ssm_usage_error("rand: --shape is required (e.g. --shape 2,1024,64)");
        const char *dist = o.dist ? o.dist : (is_integer_dtype(gen.dtype) ? "uniform" : "normal");
        if (strcmp(dist, "normal") == 0) gen.normal = 1;
        else if (strcmp(dist, "uniform") != 0) ssm_usage_error("--dist: expected normal or uniform, got '%s'", dist);
        if (gen.normal && is_integer_dtype(gen.dtype)) ssm_usage_error("rand: --dist normal needs a float or complex --dtype, not %s", ssm_dtype_name(gen.dtype));
        if (gen.normal && (o.low || o.high)) ssm_usage_error("rand: --low/--high go with --dist uniform");
        if (!gen.normal && (o.mean || o.std)) ssm_usage_error("rand: --mean/--std go with --dist normal");
        if (gen.normal) {
            gen.a = o.mean ? parse_ld("--mean", o.mean) : 0;
            gen.b = o.std ? parse_ld("--std", o.std) : 1;
            if (gen.b < 0) ssm_usage_error("--std: must be >= 0");
        } else {
            int integer = is_integer_dtype(gen.dtype);
            gen.a = o.low ? parse_ld("--low", o.low) : 0;
            gen.b = o.high ? parse_ld("--high", o.high) : integer ? 2 : 1;
            if (integer) { gen.a = ceill(gen.a); gen.b = ceill(gen.b); }
            if (!(gen.b > gen.a)) ssm_usage_error("rand: --high must be greater than --low%s", integer ? " (integers are drawn from [low, high))" : "");
        }
        uint64_t seed = o.seed ? (uint64_t)ssm_parse_int("--seed", o.seed, 0, INT64_MAX) : 0;
        rng_seed(&gen.g, seed);
        hdr = hold(ssm_tensor_new_header(&(ssm_tensor){.name = (char *)o.name, .dtype = gen.dtype, .rank = rank}));
        memcpy(hdr->dims, dims, sizeof(int64_t) * (size_t)rank);
        ssm_tensor_set_attr(hdr, "dist", gen.normal ? "normal" : "uniform");
        ssm_tensor_set_attrf(hdr, "seed", "%llu", (unsigned long long)seed);
        ssm_info("rand: seed %llu", (unsigned long long)seed);
    } else if (kind == GEN_FILL) {
        if (rank < 0) ssm_usage_error("fill: --shape is required");
        if (!o.value) ssm_usage_error("fill: --value is required");
        char *comma = strchr(o.value, ',');
        if (comma) {
            if (!ssm_dtype_is_complex(gen.dtype)) ssm_usage_error("--value: RE,IM needs a complex --dtype (c64 or c128)");
            char *re = hold(ssm_xstrdup(o.value));
            re[comma - o.value] = 0;
            gen.a = parse_ld("--value", re);
            gen.b = parse_ld("--value", comma + 1);
            unhold(re);
            free(re);
        } else {
            gen.a = parse_ld("--value", o.value);
        }
        unsigned char probe[16];
        if (!store_value(probe, gen.dtype, 0, gen.a, gen.b) || (is_integer_dtype(gen.dtype) && nearbyintl(gen.a) != gen.a))
            ssm_usage_error("--value: '%s' is not a value of dtype %s", o.value, ssm_dtype_name(gen.dtype));
        hdr = hold(ssm_tensor_new_header(&(ssm_tensor){.name = (char *)o.name, .dtype = gen.dtype, .rank = rank}));
        memcpy(hdr->dims, dims, sizeof(int64_t) * (size_t)rank);
    } else {
        gen.a = o.start ? parse_ld("--start", o.start) : 0;
        gen.b = o.step ? parse_ld("--step", o.step) : 1;
        if (gen.b == 0 || !isfinite(gen.b) || !isfinite(gen.a)) ssm_usage_error("arange: --start and --step must be finite and --step nonzero");
        int64_t n = -1;
        if (o.stop) {
            long double stop = parse_ld("--stop", o.stop), cnt = ceill((stop - gen.a) / gen.b);
            if (!isfinite(stop)) ssm_usage_error("--stop: must be finite");
            n = cnt > 0 ? (int64_t)cnt : 0;
            if (cnt > 1e15) ssm_usage_error("arange: %.0Lf elements is too many", cnt);
        }
        if (rank < 0) {
            if (n < 0) ssm_usage_error("arange: give --stop or --shape");
            rank = 1;
            dims[0] = n;
        } else if (n >= 0 && ssm_numel_of(rank, dims) != n) {
            ssm_usage_error("arange: --shape %s holds %lld elements but --start/--stop/--step give %lld", o.shape,
                            (long long)ssm_numel_of(rank, dims), (long long)n);
        }
        hdr = hold(ssm_tensor_new_header(&(ssm_tensor){.name = (char *)o.name, .dtype = gen.dtype, .rank = rank}));
        memcpy(hdr->dims, dims, sizeof(int64_t) * (size_t)rank);
    }
    ssm_writer *w = ssm_cli_open_output(ssm_cli.output);
    copy_appended(w, (char **)&o.name, 1);
    if (ssm_writer_begin(w, hdr) < 0) ssm_die("%s", ssm_writer_error(w));
    size_t es = ssm_dtype_size(gen.dtype), per = CHUNK_BYTES / es;
    unsigned char *buf = chunk_buffer(0);
    int64_t total = ssm_tensor_numel(hdr);
    for (int64_t done = 0; done < total;) {
        int64_t k = total - done < (int64_t)per ? total - done : (int64_t)per;
        generate_chunk(&gen, buf, done, k);
        if (ssm_writer_feed(w, buf, (size_t)k * es) < 0) ssm_die("%s", ssm_writer_error(w));
        done += k;
    }
    if (ssm_writer_end(w) < 0) ssm_die("%s", ssm_writer_error(w));
    unhold(hdr);
    ssm_tensor_free(hdr);
    ssm_cli_finish(w);
}
static int cmd_rand(int argc, char **argv) { return cmd_generate(argc, argv, GEN_RAND); }
static int cmd_fill(int argc, char **argv) { return cmd_generate(argc, argv, GEN_FILL); }
static int cmd_arange(int argc, char **argv) { return cmd_generate(argc, argv, GEN_ARANGE); }

/* ================================ import ===================================================== */
/* An import source: one .npy array or one .safetensors file. */
typedef struct {
    FILE *f;
    ssm_npy_reader *npy;
    ssm_safetensors *st;
} source;

static void open_source(const char *path, source *s) {
    memset(s, 0, sizeof *s);
    int is_stdin = strcmp(path, "-") == 0;
    s->f = is_stdin ? stdin : fopen(path, "rb");
    if (!s->f) ssm_die("%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(s->f), &sb) == 0 && S_ISDIR(sb.st_mode)) ssm_die("%s: %s", path, strerror(EISDIR));
    unsigned char head[9];
    size_t got = fread(head, 1, sizeof head, s->f);
    char err[700];
    const char *label = is_stdin ? "stdin" : path;
    if (got >= 6 && memcmp(head, "\x93NUMPY", 6) == 0) {
        s->npy = ssm_npy_open_stream(s->f, label, head, got, err, sizeof err);
        if (!s->npy) ssm_die("%s", err);
    } else if (got == 9 && head[8] == '{') {
        s->st = ssm_safetensors_open_fd(fileno(s->f), label, err, sizeof err);
        if (!s->st) ssm_die("%s", err);
    } else {
        if (ferror(s->f)) ssm_die("%s: read error: %s", label, strerror(errno));
        ssm_die("%s: not a .npy or .safetensors file", label);
    }
}
static void close_source(source *s) {
    ssm_npy_close(s->npy);
    ssm_safetensors_close(s->st);
    if (s->f && s->f != stdin) fclose(s->f);
}
static int source_count(const source *s) { return s->npy ? 1 : ssm_safetensors_count(s->st); }
static const ssm_tensor *source_header(source *s, int i) { return s->npy ? ssm_npy_header(s->npy) : ssm_safetensors_header(s->st, i); }

/* The name a tensor gets: --name (single npy), else its own, with --prefix. */
static char *import_name(const ssm_tensor *h, int single_npy) {
    const char *base = single_npy && o.name ? o.name : h->name;
    size_t n = strlen(base) + (o.prefix ? strlen(o.prefix) : 0) + 1;
    char *s = ssm_xmalloc(n);
    snprintf(s, n, "%s%s", o.prefix ? o.prefix : "", base);
    return s;
}

static void import_tensor(ssm_writer *w, source *s, int i, const char *name) {
    ssm_tensor *hdr = hold(ssm_tensor_new_header(source_header(s, i)));
    ssm_tensor_set_name(hdr, name);
    if (ssm_writer_begin(w, hdr) < 0) ssm_die("%s", ssm_writer_error(w));
    unsigned char *buf = chunk_buffer(0);
    uint64_t total = ssm_tensor_nbytes(hdr), done = 0;
    if (s->npy) {
        for (;;) {
            int64_t k = ssm_npy_read_some(s->npy, buf, CHUNK_BYTES);
            if (k < 0) ssm_die("%s", ssm_npy_error(s->npy));
            if (k == 0) break;
            if (ssm_writer_feed(w, buf, (size_t)k) < 0) ssm_die("%s", ssm_writer_error(w));
            done += (uint64_t)k;
        }
    } else {
        while (done < total) {
            size_t k = total - done < CHUNK_BYTES ? (size_t)(total - done) : CHUNK_BYTES;
            if (ssm_safetensors_read(s->st, i, done, buf, k) < 0) ssm_die("%s", ssm_safetensors_error(s->st));
            if (ssm_writer_feed(w, buf, k) < 0) ssm_die("%s", ssm_writer_error(w));
            done += k;
        }
    }
    if (ssm_writer_end(w) < 0) ssm_die("%s", ssm_writer_error(w));
    unhold(hdr);
    ssm_tensor_free(hdr);
}

static int cmd_import(int argc, char **argv) {
    static const int allowed[] = {OPT_NAME, OPT_PREFIX, OPT_APPEND, 0};
    int first = parse_options(argc, argv, allowed);
    int nfiles = argc - first;
    if (nfiles == 0) ssm_usage_error("import: no FILE given (.npy or .safetensors)");
    if (o.name) {
        check_name("--name", o.name);
        if (nfiles != 1) ssm_usage_error("import: --name takes a single .npy FILE (use --prefix for many)");
    }
    if (o.append && !o.append_file)
        for (int f = 0; f < nfiles; f++)
            if (strcmp(argv[first + f], "-") == 0) ssm_usage_error("import: stdin cannot be both --append's stream and a FILE");
    static char **names;
    static int nnames;
    if (o.append) {   /* the names about to be imported replace those of the appended stream */
        for (int f = 0; f < nfiles; f++) {
            source s;
            open_source(argv[first + f], &s);
            for (int i = 0; i < source_count(&s); i++) {
                names = ssm_xrealloc(names, (size_t)(nnames + 1) * sizeof *names);
                names[nnames++] = import_name(source_header(&s, i), s.npy != NULL);
            }
            close_source(&s);
        }
    }
    ssm_writer *w = ssm_cli_open_output(ssm_cli.output);
    copy_appended(w, names, nnames);
    for (int f = 0; f < nfiles; f++) {
        source s;
        open_source(argv[first + f], &s);
        if (o.name && !s.npy) ssm_usage_error("import: --name is for a .npy file (a safetensors file names its tensors)");
        for (int i = 0; i < source_count(&s); i++) {
            char *name = hold(import_name(source_header(&s, i), s.npy != NULL));
            import_tensor(w, &s, i, name);
            unhold(name);
            free(name);
        }
        close_source(&s);
    }
    for (int i = 0; i < nnames; i++) free(names[i]);
    free(names);
    ssm_cli_finish(w);
}

/* ================================ export ===================================================== */
static void make_dirs(const char *dir) {
    char *p = hold(ssm_xstrdup(dir));
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) ssm_die("export: cannot create directory '%s': %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    struct stat sb;
    unhold(p);
    free(p);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) ssm_die("export: '%s' is not a directory", dir);
}

typedef struct {
    FILE *f;
    int64_t row;   /* elements per printed line (the last dim) */
} text_ctx;

static void text_chunk(const ssm_tensor *v, int64_t first, int64_t count, void *ctx) {
    text_ctx *c = ctx;
    char buf[128];
    for (int64_t i = 0; i < count; i++) {
        int64_t g = first + i;
        format_value(buf, sizeof buf, v, i);
        fputs(buf, c->f);
        fputc((g + 1) % c->row == 0 ? '\n' : ' ', c->f);
    }
}

/* The text form: a header line per tensor, its attributes, then one line per row of the last
 * dim, values printed with enough digits to identify each exactly. */
static void export_text_tensor(FILE *f, ssm_reader *r, ssm_tensor *h) {
    char desc[600];
    fprintf(f, "# %s %s\n", h->name, ssm_tensor_describe(h, desc, sizeof desc));
    for (int i = 0; i < h->nattrs; i++) fprintf(f, "#   %s=%s\n", h->attrs[i].key, h->attrs[i].value);
    text_ctx c = {f, h->rank ? h->dims[h->rank - 1] : 1};
    if (c.row == 0) c.row = 1;
    for_each_chunk(r, h, text_chunk, &c);
    if (ferror(f)) ssm_die("export: write error: %s", strerror(errno));
}

static void copy_payload_to_file(ssm_reader *r, FILE *f, const char *path) {
    unsigned char *buf = chunk_buffer(0);
    for (;;) {
        int64_t k = ssm_reader_read_some(r, buf, CHUNK_BYTES);
        if (k < 0) ssm_die("%s", ssm_reader_error(r));
        if (k == 0) break;
        if (fwrite(buf, 1, (size_t)k, f) != (size_t)k) ssm_die("%s: write error: %s", path, strerror(errno));
    }
}

static int cmd_export(int argc, char **argv) {
    static const int allowed[] = {OPT_FORMAT, OPT_DIR, 0};
    int first = parse_options(argc, argv, allowed);
    if (!o.format) ssm_usage_error("export: --format npy|safetensors|text is required");
    enum { NPY, ST, TEXT } fmt;
    if (strcmp(o.format, "npy") == 0) fmt = NPY;
    else if (strcmp(o.format, "safetensors") == 0) fmt = ST;
    else if (strcmp(o.format, "text") == 0) fmt = TEXT;
    else ssm_usage_error("--format: expected npy, safetensors or text, got '%s'", o.format);
    if (fmt == NPY && !o.dir) ssm_usage_error("export: --format npy needs --dir DIR (one DIR/NAME.npy per tensor)");
    if (fmt == NPY && o.output_given) ssm_usage_error("export: --format npy writes to --dir, not -o");
    if (fmt == TEXT && o.dir) ssm_usage_error("export: --format text writes to -o FILE or stdout, not --dir");
    if (fmt == ST && o.dir && o.output_given) ssm_usage_error("export: give either -o FILE or --dir DIR for safetensors");

    FILE *text = NULL;
    char *text_tmp = NULL;
    static char *st_path;
    ssm_safetensors_writer *stw = NULL;
    if (fmt == NPY || (fmt == ST && o.dir)) make_dirs(o.dir);
    if (fmt == TEXT) {
        if (strcmp(ssm_cli.output, "-") == 0) text = stdout;
        else text = open_tmp(ssm_cli.output, &text_tmp);
    } else if (fmt == ST) {
        if (o.dir) {
            size_t n = strlen(o.dir) + 24;
            st_path = ssm_xmalloc(n);
            snprintf(st_path, n, "%s/tensors.safetensors", o.dir);
        } else {
            st_path = ssm_xstrdup(ssm_cli.output);
            if (strcmp(st_path, "-") == 0 && isatty(STDOUT_FILENO))
                ssm_usage_error("refusing to write a binary safetensors file to a terminal; redirect it or use -o FILE");
        }
        char err[700];
        stw = ssm_safetensors_writer_open(st_path, err, sizeof err);
        if (!stw) ssm_die("export: %s", err);
        pending_st = stw;
        track_tmp(NULL);   /* registers the cleanup */
    }

    static char **seen;
    static int nseen;
    int nfiles = argc - first;
    for (int fi = 0; fi < (nfiles ? nfiles : 1); fi++) {
        ssm_reader *r = ssm_cli_open_input(nfiles ? argv[first + fi] : "-");
        ssm_tensor *h;
        while (ssm_next_or_die(r, &h)) {
            if (fmt == TEXT) { export_text_tensor(text, r, h); continue; }
            if (fmt == ST) {
                if (ssm_safetensors_writer_begin(stw, h) < 0) ssm_die("export: %s", ssm_safetensors_writer_error(stw));
                unsigned char *buf = chunk_buffer(0);
                for (;;) {
                    int64_t k = ssm_reader_read_some(r, buf, CHUNK_BYTES);
                    if (k < 0) ssm_die("%s", ssm_reader_error(r));
                    if (k == 0) break;
                    if (ssm_safetensors_writer_feed(stw, buf, (size_t)k) < 0) ssm_die("export: %s", ssm_safetensors_writer_error(stw));
                }
                if (ssm_safetensors_writer_end(stw) < 0) ssm_die("export: %s", ssm_safetensors_writer_error(stw));
                continue;
            }
            /* npy: one file per tensor, written under a temporary name and renamed */
            for (int i = 0; i < nseen; i++)
                if (strcmp(seen[i], h->name) == 0) ssm_die("export: two tensors named '%s' (npy export writes one file per name)", h->name);
            seen = ssm_xrealloc(seen, (size_t)(nseen + 1) * sizeof *seen);
            seen[nseen++] = ssm_xstrdup(h->name);
            char fname[SSM_MAX_NAME * 3 + 8];
            ssm_npy_file_name(h->name, fname, sizeof fname);
            size_t n = strlen(o.dir) + strlen(fname) + 2;
            char *path = hold(ssm_xmalloc(n)), *tmp;
            snprintf(path, n, "%s/%s", o.dir, fname);
            FILE *f = open_tmp(path, &tmp);
            char err[400];
            if (ssm_npy_write_header(f, h, err, sizeof err) < 0) ssm_die("%s: %s", path, err);
            copy_payload_to_file(r, f, path);
            commit_tmp(f, tmp, path);
            ssm_info("wrote %s", path);
            unhold(path);
            free(path);
        }
        ssm_reader_close(r);
    }
    for (int i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
    if (text_tmp) commit_tmp(text, text_tmp, ssm_cli.output);
    else if (text && fflush(text) != 0) ssm_die("export: write error: %s", strerror(errno));
    if (stw) {
        char err[700];
        pending_st = NULL;
        if (ssm_safetensors_writer_close(stw, err, sizeof err) < 0) ssm_die("export: %s", err);
        ssm_info("wrote %s", st_path);
    }
    free(st_path);
    return 0;
}

/* ================================ diff ======================================================= */
/* A source of elements for one side of a comparison: the reader's current payload, or a tensor
 * held in memory. */
typedef struct {
    ssm_reader *r;
    const ssm_tensor *mem;
    int64_t pos;
} side;

static int64_t side_read(side *s, void *buf, int64_t max_elems, size_t es) {
    if (s->r) return (int64_t)(read_full(s->r, buf, (size_t)max_elems * es) / es);
    int64_t n = ssm_tensor_numel(s->mem) - s->pos;
    if (n > max_elems) n = max_elems;
    memcpy(buf, (const unsigned char *)s->mem->data + (size_t)s->pos * es, (size_t)n * es);
    s->pos += n;
    return n;
}

typedef struct {
    double rtol, atol;
    int exact;
    int64_t bad, worst;
    double worst_score, worst_err, worst_rel, max_abs, max_rel;
    char worst_a[128], worst_b[128];
} compare;

/* Compares count elements; the element's badness is |a-b| / (atol + rtol |b|). */
static void compare_chunk(compare *c, const ssm_tensor *va, const ssm_tensor *vb, int64_t first, int64_t count) {
    size_t es = ssm_dtype_size(va->dtype);
    int cplx = ssm_dtype_is_complex(va->dtype);
    for (int64_t i = 0; i < count; i++) {
        double err, mag, score;
        int close;
        long double a = get_ld(va, i), b = get_ld(vb, i);
        double ai = cplx ? get_imag(va, i) : 0, bi = cplx ? get_imag(vb, i) : 0;
        int a_nan = isnan((double)a) || isnan(ai), b_nan = isnan((double)b) || isnan(bi);
        if (a_nan || b_nan) {
            close = a_nan && b_nan;
            err = close ? 0 : INFINITY;
            mag = 0;
        } else if (isinf((double)a) || isinf((double)b) || isinf(ai) || isinf(bi)) {
            close = a == b && ai == bi;
            err = close ? 0 : INFINITY;
            mag = INFINITY;
        } else {
            err = cplx ? hypot((double)(a - b), ai - bi) : (double)fabsl(a - b);
            mag = cplx ? hypot((double)b, bi) : (double)fabsl(b);
            close = err <= c->atol + c->rtol * mag;
        }
        double tol = c->atol + c->rtol * (isfinite(mag) ? mag : 0);
        score = tol > 0 ? err / tol : (close ? 0 : INFINITY);
        if (c->exact) {   /* bits: -0 differs from 0, NaN payloads count */
            close = memcmp((const char *)va->data + (size_t)i * es, (const char *)vb->data + (size_t)i * es, es) == 0;
            score = close ? 0 : INFINITY;
        }
        double rel = mag > 0 && isfinite(mag) ? err / mag : (err > 0 ? INFINITY : 0);
        if (err > c->max_abs || isnan(c->max_abs)) c->max_abs = err;
        if (rel > c->max_rel) c->max_rel = rel;
        if (!close) c->bad++;
        if (c->worst < 0 || score > c->worst_score || (score == c->worst_score && err > c->worst_err)) {
            c->worst = first + i;
            c->worst_score = score;
            c->worst_err = err;
            c->worst_rel = rel;
            format_value(c->worst_a, sizeof c->worst_a, va, i);
            format_value(c->worst_b, sizeof c->worst_b, vb, i);
        }
    }
}

static double diff_rtol, diff_atol;
static int diff_differ, diff_compared;

/* Compares the tensor ha (payload in sa) with hb (in sb).  Prints a line when they differ (or
 * always with -v). */
static void diff_pair(const ssm_tensor *ha, side *sa, const ssm_tensor *hb, side *sb) {
    char da[600], db[600];
    diff_compared++;
    if (ha->dtype != hb->dtype || ha->rank != hb->rank || memcmp(ha->dims, hb->dims, sizeof(int64_t) * (size_t)ha->rank)) {
        diff_differ++;
        if (ssm_cli.verbose >= 0)
            printf("%s: %s vs %s\n", ha->name, ssm_tensor_describe(ha, da, sizeof da), ssm_tensor_describe(hb, db, sizeof db));
        if (sa->r && ssm_reader_skip(sa->r) < 0) ssm_die("%s", ssm_reader_error(sa->r));
        if (sb->r && ssm_reader_skip(sb->r) < 0) ssm_die("%s", ssm_reader_error(sb->r));
        return;
    }
    size_t es = ssm_dtype_size(ha->dtype), per = CHUNK_BYTES / es;
    ssm_tensor va = *ha, vb = *hb;
    va.data = chunk_buffer(0);
    vb.data = chunk_buffer(1);
    compare c = {diff_rtol, diff_atol, o.exact, 0, -1, 0, 0, 0, 0, 0, "", ""};
    int64_t first = 0;
    for (;;) {
        int64_t ka = side_read(sa, va.data, (int64_t)per, es), kb = side_read(sb, vb.data, (int64_t)per, es);
        if (ka != kb) ssm_die("tensor '%s': payloads of different lengths", ha->name);
        if (ka == 0) break;
        compare_chunk(&c, &va, &vb, first, ka);
        first += ka;
    }
    if (c.bad) diff_differ++;
    if (ssm_cli.verbose < 0 || (!c.bad && ssm_cli.verbose < 1)) return;
    char idx[400];
    if (c.worst < 0) { printf("%s: equal (no elements)\n", ha->name); return; }
    format_index(idx, sizeof idx, ha, c.worst);
    if (c.bad)
        printf("%s: %lld of %lld elements differ; worst at %s: %s vs %s (abs err %.3g, rel err %.3g)\n", ha->name,
               (long long)c.bad, (long long)ssm_tensor_numel(ha), idx, c.worst_a, c.worst_b, c.worst_err,
               c.worst_rel);
    else
        printf("%s: close (max abs err %.3g, max rel err %.3g)\n", ha->name, c.max_abs, c.max_rel);
}

static int cmd_diff(int argc, char **argv) {
    static const int allowed[] = {OPT_RTOL, OPT_ATOL, OPT_EXACT, 0};
    int first = parse_options(argc, argv, allowed);
    if (argc - first != 2) ssm_usage_error("diff: expected two streams A B, got %d argument%s", argc - first, argc - first == 1 ? "" : "s");
    diff_rtol = o.rtol ? ssm_parse_double("--rtol", o.rtol, 0, INFINITY) : 1e-5;
    diff_atol = o.atol ? ssm_parse_double("--atol", o.atol, 0, INFINITY) : 1e-8;
    if (o.exact && (o.rtol || o.atol)) ssm_usage_error("diff: --exact compares bits; it takes no --rtol/--atol");
    const char *pa = argv[first], *pb = argv[first + 1];
    if (strcmp(pa, "-") == 0 && strcmp(pb, "-") == 0) ssm_usage_error("diff: A and B cannot both be stdin");
    ssm_reader *ra = ssm_cli_open_input(pa), *rb = ssm_cli_open_input(pb);
    static ssm_tensor_set held;   /* tensors of B read ahead of A's order */
    ssm_set_init(&held);
    int b_done = 0;
    ssm_tensor *h;
    while (ssm_next_or_die(ra, &h)) {
        ssm_tensor *ha = hold(ssm_tensor_new_header(h));
        side sa = {ra, NULL, 0};
        ssm_tensor *mem = ssm_set_take(&held, ha->name);
        if (mem) {
            side sb = {NULL, hold(mem), 0};
            diff_pair(ha, &sa, mem, &sb);
            unhold(mem);
            ssm_tensor_free(mem);
        } else {
            int found = 0;
            ssm_tensor *hb;
            while (!b_done) {
                if (!ssm_next_or_die(rb, &hb)) { b_done = 1; break; }
                if (strcmp(hb->name, ha->name) == 0) {
                    side sb = {rb, NULL, 0};
                    diff_pair(ha, &sa, hb, &sb);
                    found = 1;
                    break;
                }
                ssm_tensor *t = hold(ssm_tensor_new_header(hb));
                ssm_read_payload_or_die(rb, t);
                unhold(t);
                ssm_set_put(&held, t);
            }
            if (!found) {
                diff_differ++;
                if (ssm_cli.verbose >= 0) printf("%s: only in %s\n", ha->name, ssm_reader_label(ra));
                if (ssm_reader_skip(ra) < 0) ssm_die("%s", ssm_reader_error(ra));
            }
        }
        unhold(ha);
        ssm_tensor_free(ha);
    }
    for (int i = 0; i < held.n; i++) {
        diff_differ++;
        if (ssm_cli.verbose >= 0) printf("%s: only in %s\n", held.items[i]->name, ssm_reader_label(rb));
    }
    while (!b_done && ssm_next_or_die(rb, &h)) {
        diff_differ++;
        if (ssm_cli.verbose >= 0) printf("%s: only in %s\n", h->name, ssm_reader_label(rb));
    }
    if (ssm_cli.verbose >= 1)
        printf("%d tensors compared, %d differ (rtol %g, atol %g%s)\n", diff_compared, diff_differ, diff_rtol, diff_atol, o.exact ? ", exact" : "");
    ssm_set_free(&held);
    ssm_reader_close(ra);
    ssm_reader_close(rb);
    fflush(stdout);
    return diff_differ ? 1 : 0;
}

int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-tensor", usage);
    if (argc < 2) ssm_usage_error("no command given");
    static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
        {"info", cmd_info},     {"cat", cmd_cat},       {"pick", cmd_pick},     {"drop", cmd_drop},
        {"rename", cmd_rename}, {"import", cmd_import}, {"export", cmd_export}, {"rand", cmd_rand},
        {"fill", cmd_fill},     {"arange", cmd_arange}, {"diff", cmd_diff},
    };
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) { fputs(usage, stdout); return 0; }
    if (strcmp(cmd, "--version") == 0) ssm_cli_common_option(SSM_OPT_VERSION, NULL);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmds[i].name, cmd) == 0) return cmds[i].fn(argc - 1, argv + 1);
    ssm_usage_error("unknown command '%s'", cmd);
}
