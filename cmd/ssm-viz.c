/* ssm-viz - draw a tensor (or ssm-train's log) as a PNG or SVG picture.
 *
 * Argument handling and wiring only: the drawing is libcommon/plot.c, the colour maps
 * libcommon/colormap.c, the training log reader libcommon/train_log.c.  The picture is rendered
 * in memory and written in one go (to a temporary file renamed into place), so a failed run never
 * leaves a file that looks complete.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "colormap.h"
#include "plot.h"
#include "train_log.h"

static const char *usage =
    "Usage: ssm-viz [OPTIONS] [FILE]\n"
    "Draw a tensor from a stream, or ssm-train's log, as a PNG or SVG picture.\n"
    "1-D tensors become line plots, 2-D tensors heatmaps (rows = channels), --reshape HxW draws\n"
    "each channel as an H x W image in a grid; a training log becomes loss/accuracy curves.\n"
    "\n"
    "What to draw:\n"
    "      --tensor NAME   the tensor to draw (default: the last one in the stream)\n"
    "      --channels A:B  rows A..B-1 of a 2-D tensor, or images A..B-1 with --reshape\n"
    "      --columns A:B   columns A..B-1 (e.g. the first lags of a kernel) of a 1-D or 2-D tensor\n"
    "      --reshape HxW   each channel of H*W values as an H x W image, tiled in a grid\n"
    "      --lines         draw the rows of a 2-D tensor as line series (at most 12)\n"
    "      --heatmap       draw a 1-D tensor as a one-row heatmap\n"
    "      --complex PART  complex tensors: abs (default), phase, real or imag\n"
    "      --curves        read FILE as a training log (detected automatically otherwise)\n"
    "Colours and axes:\n"
    "      --cmap NAME     viridis, diverging, gray or phase (default: diverging centred on\n"
    "                      zero when the data has negative values, else viridis)\n"
    "      --range LO:HI   colour range (line plots: y range); default from the data\n"
    "      --log           log colour scale / y axis (symmetric log for signed data)\n"
    "      --normalize     divide each row (each image) by its largest magnitude\n"
    "      --title TEXT    --xlabel TEXT   --ylabel TEXT\n"
    "Output:\n"
    "  -o, --output FILE   FILE.png or FILE.svg (default: PNG on stdout, never to a terminal)\n"
    "      --format F      png or svg, whatever the extension\n"
    "      --size WxH      figure size in points (default 800x450)\n"
    "      --scale S       PNG pixels per point (default 1; PNG is W*S x H*S pixels)\n"
    "  -q, --quiet         no warnings;  -v, --verbose  more messages\n"
    "  -h, --help          this text;    --version     the version\n"
    "FILE '-' or no FILE reads stdin.  Exit status: 0 ok, 1 data error, 2 usage error.\n";

enum { PART_ABS, PART_PHASE, PART_REAL, PART_IMAG };
static const char *const part_names[] = {"abs", "phase", "real", "imag"};

typedef struct {
    const char *input, *tensor, *channels, *columns, *cmap_name, *range, *title, *xlabel, *ylabel, *format_name;
    double range_lo, range_hi;   /* --range, when range is set */
    int64_t reshape_h, reshape_w;
    int lines, heatmap, curves, log, normalize, part, part_given;
    double width, height, scale;
} options;

enum { OPT_TENSOR = SSM_OPT_TOOL_FIRST, OPT_CHANNELS, OPT_RESHAPE, OPT_LINES, OPT_HEATMAP, OPT_COMPLEX,
       OPT_CURVES, OPT_CMAP, OPT_RANGE, OPT_LOG, OPT_TITLE, OPT_XLABEL, OPT_YLABEL, OPT_FORMAT, OPT_SIZE,
       OPT_SCALE, OPT_COLUMNS, OPT_NORMALIZE };

static void parse_range(const char *s, double *lo, double *hi) {
    const char *colon = strchr(s, ':');
    if (!colon) ssm_usage_error("--range: expected LO:HI, got '%s'", s);
    char a[64], b[64];
    snprintf(a, sizeof a, "%.*s", (int)(colon - s < 63 ? colon - s : 63), s);
    snprintf(b, sizeof b, "%s", colon + 1);
    *lo = ssm_parse_double("--range", a, -1e300, 1e300);
    *hi = ssm_parse_double("--range", b, -1e300, 1e300);
    if (!(*lo < *hi)) ssm_usage_error("--range: LO must be below HI, got '%s'", s);
}

static void parse_options(int argc, char **argv, options *o) {
    static struct option opts[] = {
        SSM_CLI_COMMON_OPTS,
        {"tensor", required_argument, 0, OPT_TENSOR},   {"channels", required_argument, 0, OPT_CHANNELS},
        {"reshape", required_argument, 0, OPT_RESHAPE}, {"lines", no_argument, 0, OPT_LINES},
        {"heatmap", no_argument, 0, OPT_HEATMAP},       {"complex", required_argument, 0, OPT_COMPLEX},
        {"curves", no_argument, 0, OPT_CURVES},         {"cmap", required_argument, 0, OPT_CMAP},
        {"range", required_argument, 0, OPT_RANGE},     {"log", no_argument, 0, OPT_LOG},
        {"title", required_argument, 0, OPT_TITLE},     {"xlabel", required_argument, 0, OPT_XLABEL},
        {"ylabel", required_argument, 0, OPT_YLABEL},   {"format", required_argument, 0, OPT_FORMAT},
        {"size", required_argument, 0, OPT_SIZE},       {"scale", required_argument, 0, OPT_SCALE},
        {"columns", required_argument, 0, OPT_COLUMNS}, {"normalize", no_argument, 0, OPT_NORMALIZE},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->width = 800;
    o->height = 450;
    o->scale = 1;
    int c;
    while ((c = getopt_long(argc, argv, SSM_CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (ssm_cli_common_option(c, optarg)) continue;
        switch (c) {
        case OPT_TENSOR: o->tensor = optarg; break;
        case OPT_CHANNELS: o->channels = optarg; break;
        case OPT_COLUMNS: o->columns = optarg; break;
        case OPT_NORMALIZE: o->normalize = 1; break;
        case OPT_RESHAPE: {
            int64_t d[SSM_MAX_RANK];
            if (ssm_parse_shape("--reshape", optarg, d, SSM_MAX_RANK) != 2 || d[0] < 1 || d[1] < 1)
                ssm_usage_error("--reshape: expected HxW with H, W >= 1, got '%s'", optarg);
            o->reshape_h = d[0];
            o->reshape_w = d[1];
            break;
        }
        case OPT_LINES: o->lines = 1; break;
        case OPT_HEATMAP: o->heatmap = 1; break;
        case OPT_COMPLEX: {
            o->part = -1;
            for (int i = 0; i < 4; i++) if (strcmp(optarg, part_names[i]) == 0) o->part = i;
            if (o->part < 0) ssm_usage_error("--complex: expected abs, phase, real or imag, got '%s'", optarg);
            o->part_given = 1;
            break;
        }
        case OPT_CURVES: o->curves = 1; break;
        case OPT_CMAP:
            if (ssm_colormap_from_name(optarg) < 0)
                ssm_usage_error("--cmap: unknown colour map '%s' (viridis, diverging, gray, phase)", optarg);
            o->cmap_name = optarg;
            break;
        case OPT_RANGE: o->range = optarg; parse_range(optarg, &o->range_lo, &o->range_hi); break;
        case OPT_LOG: o->log = 1; break;
        case OPT_TITLE: o->title = optarg; break;
        case OPT_XLABEL: o->xlabel = optarg; break;
        case OPT_YLABEL: o->ylabel = optarg; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "png") && strcmp(optarg, "svg")) ssm_usage_error("--format: expected png or svg, got '%s'", optarg);
            o->format_name = optarg;
            break;
        case OPT_SIZE: {
            int64_t d[SSM_MAX_RANK];
            if (ssm_parse_shape("--size", optarg, d, SSM_MAX_RANK) != 2 || d[0] < 100 || d[1] < 80 || d[0] > 20000 || d[1] > 20000)
                ssm_usage_error("--size: expected WxH between 100x80 and 20000x20000, got '%s'", optarg);
            o->width = (double)d[0];
            o->height = (double)d[1];
            break;
        }
        case OPT_SCALE: o->scale = ssm_parse_double("--scale", optarg, 0.25, 8); break;
        default: ssm_usage_error("unknown option");
        }
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) ssm_usage_error("one input at a time (got '%s' after '%s')", argv[optind], o->input);
    if (!o->input) o->input = "-";
    if (o->lines && o->heatmap) ssm_usage_error("--lines and --heatmap: pick one");
    if (o->reshape_h && (o->lines || o->heatmap)) ssm_usage_error("--reshape draws images: it does not go with --lines or --heatmap");
    if (o->reshape_h && o->columns) ssm_usage_error("--columns does not go with --reshape (images take whole channels)");
    if (o->width * o->scale > 32000 || o->height * o->scale > 32000) ssm_usage_error("--size x --scale: at most 32000 pixels a side");
}

/* ---- output ------------------------------------------------------------------------------- */
static char tmp_path[4200];   /* the temporary output, removed at exit unless renamed into place */
static void remove_tmp(void) { if (tmp_path[0]) unlink(tmp_path); }

static int output_format(const options *o) {
    if (o->format_name) return strcmp(o->format_name, "svg") == 0 ? SSM_FIG_SVG : SSM_FIG_PNG;
    const char *out = ssm_cli.output;
    if (strcmp(out, "-") == 0) return SSM_FIG_PNG;
    const char *dot = strrchr(out, '.');
    if (dot && strcasecmp(dot, ".png") == 0) return SSM_FIG_PNG;
    if (dot && strcasecmp(dot, ".svg") == 0) return SSM_FIG_SVG;
    ssm_usage_error("-o %s: cannot tell the image format from the name (use .png or .svg, or --format)", out);
}

/* Checks the output can be written before any work is done; returns the open temporary file. */
static FILE *open_output(void) {
    const char *out = ssm_cli.output;
    if (strcmp(out, "-") == 0) {
        if (isatty(STDOUT_FILENO)) ssm_usage_error("refusing to write an image to a terminal; use -o FILE.png or redirect");
        return stdout;
    }
    if (strlen(out) > 4000) ssm_usage_error("-o: file name too long");
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp.XXXXXX", out);
    int fd = mkstemp(tmp_path);
    if (fd < 0) { tmp_path[0] = 0; ssm_die("%s: cannot open for writing: %s", out, strerror(errno)); }
    atexit(remove_tmp);
    FILE *f = fdopen(fd, "wb");
    if (!f) ssm_die("%s: cannot open for writing: %s", out, strerror(errno));
    return f;
}

static void write_output(FILE *f, const unsigned char *bytes, size_t len) {
    const char *out = ssm_cli.output;
    if (fwrite(bytes, 1, len, f) != len || fflush(f) != 0) ssm_die("%s: write failed: %s", out, strerror(errno));
    if (f == stdout) return;
    if (fsync(fileno(f)) != 0 && errno != EINVAL) ssm_die("%s: write failed: %s", out, strerror(errno));
    if (fclose(f) != 0) ssm_die("%s: write failed: %s", out, strerror(errno));
    mode_t mask = umask(0);   /* mkstemp made it 0600: give it the usual permissions */
    umask(mask);
    if (chmod(tmp_path, 0666 & ~mask) != 0) ssm_die("%s: %s", out, strerror(errno));
    if (rename(tmp_path, out) != 0) ssm_die("%s: cannot rename into place: %s", out, strerror(errno));
    tmp_path[0] = 0;
}

/* ---- input -------------------------------------------------------------------------------- */
/* A tensor stream starts with "SSMT" (or is empty); anything else is taken for a training log.
 * Named pipes and other non-regular files are taken for streams (use --curves for a log there). */
static int input_is_stream(const char *path) {
    int c;
    if (strcmp(path, "-") == 0) {
        c = getc(stdin);
        if (c != EOF) ungetc(c, stdin);
    } else {
        struct stat st;
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) return 1;   /* a pipe cannot be peeked twice */
        FILE *f = fopen(path, "rb");
        if (!f) ssm_die("%s: %s", path, strerror(errno));
        c = getc(f);
        fclose(f);
    }
    return c == EOF || c == 'S';
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) ssm_die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = ssm_xmalloc(cap);
    for (;;) {
        if (n == cap) buf = ssm_xrealloc(buf, cap *= 2);
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) ssm_die("%s: read error: %s", path, strerror(errno));
    if (f != stdin) fclose(f);
    *len = n;
    return buf;
}

/* Reads the stream and returns the tensor to draw (by name, or the last one); *dt gets the
 * stream's `dt` tensor when there is one (for the title), else NULL. */
static ssm_tensor *load_tensor(const char *path, const char *name, ssm_tensor **dt) {
    ssm_reader *r = ssm_cli_open_input(path);
    ssm_tensor *h, *found = NULL;
    char names[512] = "";
    size_t nl = 0;
    int count = 0;
    *dt = NULL;
    while (ssm_next_or_die(r, &h)) {
        count++;
        if (nl < sizeof names - 80)
            nl += (size_t)snprintf(names + nl, sizeof names - nl, "%s%s", nl ? ", " : "", h->name);
        int want = name ? strcmp(h->name, name) == 0 : 1;
        int want_dt = strcmp(h->name, "dt") == 0 && ssm_tensor_numel(h) <= 65536;
        if (!want && !want_dt) {
            if (ssm_reader_skip(r) < 0) ssm_die("%s", ssm_reader_error(r));
            continue;
        }
        ssm_tensor *t = ssm_tensor_new_header(h);
        ssm_read_payload_or_die(r, t);
        if (want_dt) {
            if (*dt) ssm_tensor_free(*dt);
            *dt = want ? ssm_tensor_clone(t) : t;
            if (!want) continue;
        }
        if (found) ssm_tensor_free(found);
        found = t;
    }
    const char *label = ssm_reader_label(r);
    if (!found) {
        if (count == 0) ssm_die("%s: empty stream: no tensor to draw", label);
        ssm_die("%s: no tensor '%s' (the stream has: %s%s)", label, name, names, nl >= sizeof names - 80 ? ", ..." : "");
    }
    ssm_reader_close(r);
    return found;
}

/* The tensor's values as doubles, complex ones reduced to the chosen part. */
static double *tensor_values(const ssm_tensor *t, int part) {
    int64_t n = ssm_tensor_numel(t);
    if (!ssm_dtype_is_complex(t->dtype)) return ssm_as_f64(t, 0);
    double *z = ssm_as_c128(t, 0), *v = ssm_xmalloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        double re = z[2 * i], im = z[2 * i + 1];
        v[i] = part == PART_ABS ? hypot(re, im) : part == PART_PHASE ? atan2(im, re) : part == PART_REAL ? re : im;
    }
    free(z);
    return v;
}

/* "K  [4, 1024]  init=legs  method=zoh  dt=0.01" */
static void default_title(const ssm_tensor *t, const ssm_tensor *dt, const options *o, char *buf, size_t n) {
    char shape[256];
    size_t k = (size_t)snprintf(buf, n, "%s  %s", t->name, ssm_shape_string(t->rank, t->dims, shape, sizeof shape));
    static const char *keys[] = {"init", "form", "method"};
    for (int i = 0; i < 3 && k < n; i++) {
        const char *v = ssm_tensor_get_attr(t, keys[i]);
        if (v) k += (size_t)snprintf(buf + k, n - k, "  %s=%s", keys[i], v);
    }
    /* the step belongs to tensors made from a discretization (they carry method=) */
    if (dt && dt != t && ssm_tensor_get_attr(t, "method") && k < n && ssm_tensor_numel(dt) > 0 &&
        !ssm_dtype_is_complex(dt->dtype)) {
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < ssm_tensor_numel(dt); i++) {
            double v = ssm_tensor_get_f64(dt, i);
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
        if (lo == hi) k += (size_t)snprintf(buf + k, n - k, "  dt=%.3g", lo);
        else if (lo < hi) k += (size_t)snprintf(buf + k, n - k, "  dt=%.3g..%.3g", lo, hi);
    }
    if (ssm_dtype_is_complex(t->dtype) && k < n) snprintf(buf + k, n - k, "  (%s)", part_names[o->part]);
}

/* ---- colour scale ------------------------------------------------------------------------- */
static ssm_color_scale choose_scale(const options *o, const double *v, int64_t n) {
    double mn = INFINITY, mx = -INFINITY, min_pos = INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        mn = fmin(mn, v[i]);
        mx = fmax(mx, v[i]);
        if (v[i] > 0) min_pos = fmin(min_pos, v[i]);
    }
    int any = mn <= mx;
    ssm_color_scale s = {0};
    if (o->cmap_name) s.cmap = ssm_colormap_from_name(o->cmap_name);
    else if (o->part_given && o->part == PART_PHASE) s.cmap = SSM_CMAP_PHASE;
    else s.cmap = any && mn < 0 ? SSM_CMAP_DIVERGING : SSM_CMAP_VIRIDIS;
    if (o->range) {
        s.vmin = o->range_lo;
        s.vmax = o->range_hi;
    } else if (o->part_given && o->part == PART_PHASE) {
        s.vmin = -M_PI;
        s.vmax = M_PI;
    } else if (!any) {
        s.vmin = 0;
        s.vmax = 1;
    } else if (s.cmap == SSM_CMAP_DIVERGING) {
        double m = fmax(fabs(mn), fabs(mx));
        if (m == 0) m = 1;
        s.vmin = -m;
        s.vmax = m;
    } else {
        s.vmin = mn;
        s.vmax = mx;
        if (s.vmin == s.vmax) {
            double d = s.vmin != 0 ? 0.1 * fabs(s.vmin) : 0.5;
            s.vmin -= d;
            s.vmax += d;
        }
    }
    if (o->log) {
        if (s.vmin < 0) {
            s.kind = SSM_SCALE_SYMLOG;
            s.linthresh = 1e-3 * fmax(fabs(s.vmin), fabs(s.vmax));
        } else {
            s.kind = SSM_SCALE_LOG;
            if (s.vmin <= 0) {
                if (!isfinite(min_pos)) ssm_die("--log: the data has no positive values");
                if (o->range) ssm_usage_error("--log: the range must be positive, got '%s'", o->range);
                s.vmin = min_pos;
            }
            if (s.vmax <= s.vmin) s.vmax = s.vmin * 10;
        }
    }
    return s;
}

static void warn_nonfinite(const ssm_tensor *t, const double *v, int64_t n, const char *how) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(v[i]);
    if (bad) ssm_warn("tensor '%s': %lld NaN/Inf value%s %s", t->name, (long long)bad, bad == 1 ? "" : "s", how);
}

/* ---- the three kinds of tensor picture ---------------------------------------------------- */
static void draw_images(ssm_figure *fig, const options *o, const ssm_tensor *t, const double *v, const char *title,
                        const char *cbar) {
    int64_t hw = o->reshape_h * o->reshape_w, n = ssm_tensor_numel(t), tail = 1;
    int fits = 0;
    char shape[256];
    for (int d = t->rank - 1; d >= 0 && tail <= hw; d--) {
        tail *= t->dims[d];
        if (tail == hw) fits = 1;
    }
    if (!fits)
        ssm_die("tensor '%s' %s: its trailing dimensions do not hold %lldx%lld = %lld values per image", t->name,
                ssm_shape_string(t->rank, t->dims, shape, sizeof shape), (long long)o->reshape_h, (long long)o->reshape_w,
                (long long)hw);
    int64_t nimg = n / hw, lo = 0, hi = nimg;
    if (o->channels) ssm_parse_range("--channels", o->channels, nimg, &lo, &hi);
    const double *sel = v + lo * hw;
    int64_t m = (hi - lo) * hw;
    char how[64];
    ssm_color_scale s = choose_scale(o, sel, m);
    snprintf(how, sizeof how, "drawn in %s", ssm_colormap_nan_name(s.cmap));
    warn_nonfinite(t, sel, m, how);
    ssm_image_grid g = {sel, hi - lo, o->reshape_h, o->reshape_w, lo, s, title, cbar};
    ssm_draw_image_grid(fig, &g);
    ssm_info("%lld images of %lldx%lld, colour map %s, range [%g, %g]", (long long)(hi - lo), (long long)o->reshape_h,
             (long long)o->reshape_w, ssm_colormap_name(s.cmap), s.vmin, s.vmax);
}

/* v is (rows, cols), columns col0.. of the tensor t */
static void draw_heatmap(ssm_figure *fig, const options *o, const ssm_tensor *t, const double *v, int64_t rows,
                         int64_t cols, int64_t col0, const char *title, const char *cbar, const char *xlabel) {
    int64_t lo = 0, hi = rows;
    if (o->channels) ssm_parse_range("--channels", o->channels, rows, &lo, &hi);
    const double *sel = v + lo * cols;
    int64_t m = (hi - lo) * cols;
    ssm_color_scale s = choose_scale(o, sel, m);
    char how[64];
    snprintf(how, sizeof how, "drawn in %s", ssm_colormap_nan_name(s.cmap));
    warn_nonfinite(t, sel, m, how);
    ssm_heatmap hm = {sel, hi - lo, cols, lo, s, title, o->xlabel ? o->xlabel : xlabel,
                      o->ylabel ? o->ylabel : (t->rank == 2 ? "channel" : ""), cbar, col0};
    ssm_rect area;
    ssm_draw_heatmap(fig, &hm, &area);
    double sc = fig->scale;
    ssm_info("heatmap of %lld x %lld, colour map %s, range [%g, %g], area at x=%.0f y=%.0f w=%.0f h=%.0f pixels",
             (long long)(hi - lo), (long long)cols, ssm_colormap_name(s.cmap), s.vmin, s.vmax, area.x * sc, area.y * sc,
             area.w * sc, area.h * sc);
}

#define MAX_SERIES 12
static void draw_lines(ssm_figure *fig, const options *o, const ssm_tensor *t, const double *v, int64_t rows,
                       int64_t cols, int64_t col0, const char *title, const char *xlabel) {
    int64_t lo = 0, hi = rows;
    if (o->channels) ssm_parse_range("--channels", o->channels, rows, &lo, &hi);
    if (hi - lo > MAX_SERIES) {
        ssm_warn("tensor '%s': drawing the first %d of %lld rows as lines (pick others with --channels)", t->name,
                 MAX_SERIES, (long long)(hi - lo));
        hi = lo + MAX_SERIES;
    }
    warn_nonfinite(t, v + lo * cols, (hi - lo) * cols, "left out of the lines");
    double *x = ssm_xmalloc((size_t)cols * sizeof *x);
    for (int64_t i = 0; i < cols; i++) x[i] = (double)(col0 + i);
    ssm_series series[MAX_SERIES];
    char labels[MAX_SERIES][64];
    int ns = 0;
    for (int64_t r = lo; r < hi; r++, ns++) {
        if (t->rank == 2) snprintf(labels[ns], sizeof labels[ns], "%.40s[%lld]", t->name, (long long)r);
        else snprintf(labels[ns], sizeof labels[ns], "%.40s", t->name);
        series[ns] = (ssm_series){x, v + r * cols, cols, hi - lo > 1 ? labels[ns] : NULL, -1, 0, 0};
    }
    ssm_axes ax = {title, o->xlabel ? o->xlabel : xlabel, o->ylabel ? o->ylabel : "", o->log, 0, 0};
    if (o->range) { ax.ylo = o->range_lo; ax.yhi = o->range_hi; }
    ssm_draw_lines(fig, (ssm_rect){0, 0, fig->width, fig->height}, &ax, series, ns);
    ssm_info("%d line series of %lld points", ns, (long long)cols);
    free(x);
}

/* Divides each run of n values by its largest finite magnitude (runs of zeros stay zero). */
static void normalize_runs(double *v, int64_t total, int64_t n) {
    for (int64_t r = 0; r + n <= total; r += n) {
        double m = 0;
        for (int64_t i = r; i < r + n; i++) if (isfinite(v[i]) && fabs(v[i]) > m) m = fabs(v[i]);
        if (m > 0) for (int64_t i = r; i < r + n; i++) v[i] /= m;
    }
}

static void draw_tensor(ssm_figure *fig, const options *o, const ssm_tensor *t, const ssm_tensor *dt) {
    char shape[256];
    ssm_shape_string(t->rank, t->dims, shape, sizeof shape);
    if (t->rank == 0) ssm_die("tensor '%s' is a scalar: nothing to draw", t->name);
    if (ssm_tensor_numel(t) == 0) ssm_die("tensor '%s' %s is empty: nothing to draw", t->name, shape);
    if (t->rank > 2 && !o->reshape_h)
        ssm_die("tensor '%s' is %d-D %s: draw it as images with --reshape HxW, or pick a 1-D or 2-D tensor", t->name,
                t->rank, shape);
    if (o->channels && t->rank == 1 && !o->reshape_h) ssm_usage_error("--channels: tensor '%s' is 1-D", t->name);
    int cplx = ssm_dtype_is_complex(t->dtype);
    if (o->part_given && !cplx) ssm_warn("tensor '%s' is real: --complex ignored", t->name);
    double *v = tensor_values(t, o->part);
    char title[512], cbar[128];
    if (o->title) snprintf(title, sizeof title, "%s", o->title);
    else default_title(t, dt, o, title, sizeof title);
    if (cplx && o->part == PART_ABS) snprintf(cbar, sizeof cbar, "|%.100s|", t->name);
    else if (cplx) snprintf(cbar, sizeof cbar, "%s(%.100s)", o->part == PART_PHASE ? "arg" : o->part == PART_REAL ? "Re" : "Im", t->name);
    else snprintf(cbar, sizeof cbar, "%.100s", t->name);
    if (o->normalize) {
        size_t k = strlen(cbar);
        snprintf(cbar + k, sizeof cbar - k, " / max per %s", o->reshape_h ? "image" : "row");
    }
    const char *xlabel = strcmp(t->name, "K") == 0 || strcmp(t->name, "dK") == 0 ? "lag l" : "index";
    int64_t n = ssm_tensor_numel(t);
    if (o->reshape_h) {
        if (o->normalize) normalize_runs(v, n, o->reshape_h * o->reshape_w);
        draw_images(fig, o, t, v, title, cbar);
        free(v);
        return;
    }
    int64_t rows = t->rank == 2 ? t->dims[0] : 1, cols = t->dims[t->rank - 1], c0 = 0, c1 = cols;
    if (o->columns) {   /* keep columns c0..c1-1 of every row */
        ssm_parse_range("--columns", o->columns, cols, &c0, &c1);
        for (int64_t r = 0; r < rows; r++) memmove(v + r * (c1 - c0), v + r * cols + c0, (size_t)(c1 - c0) * sizeof *v);
        cols = c1 - c0;
    }
    if (o->normalize) normalize_runs(v, rows * cols, cols);
    if (o->lines || (t->rank == 1 && !o->heatmap)) draw_lines(fig, o, t, v, rows, cols, c0, title, xlabel);
    else draw_heatmap(fig, o, t, v, rows, cols, c0, title, cbar, xlabel);
    free(v);
}

int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-viz", usage);
    options o;
    parse_options(argc, argv, &o);
    int format = output_format(&o);
    FILE *out = open_output();
    double t0 = ssm_now();

    ssm_figure fig;
    ssm_figure_init(&fig, format, o.width, o.height, o.scale);
    if (o.curves || !input_is_stream(o.input)) {
        if (o.tensor || o.reshape_h || o.channels || o.lines || o.heatmap)
            ssm_usage_error("%s is a training log: --tensor, --channels, --reshape, --lines, --heatmap do not apply", o.input);
        size_t len;
        char *text = read_all(o.input, &len), err[700];
        ssm_train_log log;
        if (ssm_train_log_parse(text, len, strcmp(o.input, "-") ? o.input : "stdin", &log, err, sizeof err) < 0)
            ssm_die("%s", err);
        ssm_draw_training_curves(&fig, &log, o.title, o.log);
        ssm_info("training log: %lld records", (long long)log.n);
        ssm_train_log_free(&log);
        free(text);
    } else {
        ssm_tensor *dt, *t = load_tensor(o.input, o.tensor, &dt);
        draw_tensor(&fig, &o, t, dt);
        ssm_tensor_free(t);
        if (dt) ssm_tensor_free(dt);
    }
    size_t len;
    const unsigned char *bytes = ssm_figure_finish(&fig, &len);
    write_output(out, bytes, len);
    ssm_info("wrote %s (%s, %zu bytes) in %.3f s", ssm_cli.output, format == SSM_FIG_SVG ? "SVG" : "PNG", len, ssm_now() - t0);
    ssm_figure_free(&fig);
    return 0;
}
