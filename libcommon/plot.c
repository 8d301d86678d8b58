/* plot.c - heatmaps, image grids and line plots drawn with cairo (see plot.h for the contract).
 *
 * Layout is in points: every drawing function measures its tick labels first, takes the margins
 * it needs from the rectangle it was given, and draws the data into what is left (the "area").
 * Raster content (heatmaps, images, colour bars) is rendered at the output's device resolution
 * (PNG: scale pixels per point; SVG: 2 pixels per point) into an image surface that is painted
 * 1:1, so no viewer-side smoothing blurs the cells.
 */
#include "plot.h"
#include "cli.h"

#include <cairo-svg.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FONT "DejaVu Sans"
#define TITLE_SIZE 13.0
#define LABEL_SIZE 11.0
#define TICK_SIZE 9.5
#define TICK_LEN 4.0
#define SVG_RASTER_RES 2.0   /* image pixels per point inside SVG files */

/* ---- figure ------------------------------------------------------------------------------- */
static cairo_status_t append_bytes(void *closure, const unsigned char *data, unsigned int length) {
    ssm_figure *fig = closure;
    if (fig->len + length > fig->cap) {
        size_t cap = fig->cap ? fig->cap : 65536;
        while (cap < fig->len + length) cap *= 2;
        fig->buf = ssm_xrealloc(fig->buf, cap);
        fig->cap = cap;
    }
    memcpy(fig->buf + fig->len, data, length);
    fig->len += length;
    return CAIRO_STATUS_SUCCESS;
}

static void check_cairo(ssm_figure *fig, const char *what) {
    cairo_status_t st = fig->cr ? cairo_status(fig->cr) : CAIRO_STATUS_SUCCESS;
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(fig->surface);
    if (st != CAIRO_STATUS_SUCCESS) ssm_die("%s: cairo: %s", what, cairo_status_to_string(st));
}

/* Figures alive, so that an exit through ssm_die can still release them. */
#define MAX_LIVE_FIGURES 8
static ssm_figure *live_figures[MAX_LIVE_FIGURES];

void ssm_plot_release_all(void) {
    for (int i = 0; i < MAX_LIVE_FIGURES; i++)
        if (live_figures[i]) ssm_figure_free(live_figures[i]);
    cairo_debug_reset_static_data();
    FcFini();
}

void ssm_figure_init(ssm_figure *fig, int format, double width, double height, double scale) {
    static int registered;
    if (!registered) { atexit(ssm_plot_release_all); registered = 1; }
    memset(fig, 0, sizeof *fig);
    for (int i = 0; i < MAX_LIVE_FIGURES; i++)
        if (!live_figures[i]) { live_figures[i] = fig; break; }
    fig->format = format;
    fig->width = width;
    fig->height = height;
    fig->scale = format == SSM_FIG_PNG ? scale : 1.0;
    if (format == SSM_FIG_PNG) {
        int pw = (int)lround(width * fig->scale), ph = (int)lround(height * fig->scale);
        fig->surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, pw, ph);
    } else {
        fig->surface = cairo_svg_surface_create_for_stream(append_bytes, fig, width, height);
    }
    check_cairo(fig, "creating the figure");
    fig->cr = cairo_create(fig->surface);
    check_cairo(fig, "creating the figure");
    cairo_scale(fig->cr, fig->scale, fig->scale);
    cairo_set_source_rgb(fig->cr, 1, 1, 1);
    cairo_paint(fig->cr);
    cairo_select_font_face(fig->cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
}

const unsigned char *ssm_figure_finish(ssm_figure *fig, size_t *len) {
    check_cairo(fig, "drawing");
    cairo_destroy(fig->cr);
    fig->cr = NULL;
    if (fig->format == SSM_FIG_PNG) {
        cairo_surface_flush(fig->surface);
        cairo_status_t st = cairo_surface_write_to_png_stream(fig->surface, append_bytes, fig);
        if (st != CAIRO_STATUS_SUCCESS) ssm_die("encoding PNG: cairo: %s", cairo_status_to_string(st));
    } else {
        cairo_surface_finish(fig->surface);
        check_cairo(fig, "writing SVG");
    }
    *len = fig->len;
    return fig->buf;
}

void ssm_figure_free(ssm_figure *fig) {
    for (int i = 0; i < MAX_LIVE_FIGURES; i++)
        if (live_figures[i] == fig) live_figures[i] = NULL;
    if (fig->cr) cairo_destroy(fig->cr);
    if (fig->surface) cairo_surface_destroy(fig->surface);
    free(fig->buf);
    memset(fig, 0, sizeof *fig);
}

/* ---- text ---------------------------------------------------------------------------------- */
static double text_width(cairo_t *cr, const char *s, double size) {
    cairo_text_extents_t e;
    cairo_set_font_size(cr, size);
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

/* Draws s with its anchor at (x, y): ax 0/0.5/1 = left/centre/right, ay 0/0.5/1 = top/middle/
 * baseline, measured on the height of digits so that rows of labels line up. */
static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, double ay, double size) {
    cairo_text_extents_t e, digit;
    cairo_set_font_size(cr, size);
    cairo_text_extents(cr, s, &e);
    cairo_text_extents(cr, "0", &digit);
    double cap = -digit.y_bearing;
    cairo_move_to(cr, x - ax * e.x_advance, y + cap * (1 - ay));
    cairo_show_text(cr, s);
}

static void text_vertical(cairo_t *cr, double x, double y, const char *s, double size) {
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, s, 0.5, 0.5, size);
    cairo_restore(cr);
}

/* ---- ticks --------------------------------------------------------------------------------- */
int ssm_nice_ticks(double lo, double hi, int max_ticks, double *ticks) {
    if (max_ticks < 1) return 0;
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi)) { ticks[0] = lo; return 1; }
    static const double mult[] = {1, 2, 2.5, 5};
    double span = hi - lo;
    int k = (int)floor(log10(span / max_ticks)) - 1;
    for (;; k++) {
        for (int m = 0; m < 4; m++) {
            double step = mult[m] * pow(10, k);
            double first = ceil(lo / step - 1e-9), last = floor(hi / step + 1e-9);
            if (last - first + 1 > max_ticks) continue;
            int n = 0;
            for (double i = first; i <= last; i++) {
                double v = i * step;
                if (fabs(v) < step * 1e-9) v = 0;
                ticks[n++] = v;
            }
            return n;
        }
    }
}

void ssm_format_tick(double v, double step, char *buf, size_t n) {
    char tmp[64];
    double a = fabs(v);
    if (v == 0) snprintf(tmp, sizeof tmp, "0");
    else if (a >= 1e5 || a < 1e-3 || step < 1e-4) snprintf(tmp, sizeof tmp, "%.3g", v);
    else {
        int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        if (step < 1 && fabs(step * pow(10, decimals) - round(step * pow(10, decimals))) > 1e-6) decimals++;
        snprintf(tmp, sizeof tmp, "%.*f", decimals, v);
    }
    /* a typographic minus sign */
    if (tmp[0] == '-') snprintf(buf, n, "\xe2\x88\x92%s", tmp + 1);
    else snprintf(buf, n, "%s", tmp);
}

/* Decades 10^k inside [lo, hi] (lo > 0); thinned to at most max_ticks. */
static int decade_ticks(double lo, double hi, int max_ticks, double *ticks) {
    int k0 = (int)ceil(log10(lo) - 1e-9), k1 = (int)floor(log10(hi) + 1e-9);
    int every = 1;
    while ((k1 - k0) / every + 1 > max_ticks) every++;
    int n = 0;
    for (int k = k0; k <= k1; k += every) ticks[n++] = pow(10, k);
    return n;
}

static void format_decade(double v, char *buf, size_t n) {
    int k = (int)lround(log10(v));
    if (k >= -3 && k <= 4) snprintf(buf, n, "%g", v);
    else if (k < 0) snprintf(buf, n, "1e\xe2\x88\x92%d", -k);
    else snprintf(buf, n, "1e%d", k);
}

/* Tick values and labels for a value axis [lo, hi] under a colour scale kind. */
typedef struct {
    int n;
    double v[32];
    char label[32][48];
} tick_set;

static void value_ticks(int kind, double lo, double hi, double linthresh, int max_ticks, tick_set *ts) {
    ts->n = 0;
    if (kind == SSM_SCALE_LOG && lo > 0) {
        ts->n = decade_ticks(lo, hi, max_ticks, ts->v);
        if (ts->n >= 2) {
            for (int i = 0; i < ts->n; i++) format_decade(ts->v[i], ts->label[i], sizeof ts->label[i]);
            return;
        }
    } else if (kind == SSM_SCALE_SYMLOG && lo < 0 && hi > 0) {
        /* 0 and +-10^k above the linear zone, symmetric, thinned together */
        double m = fmax(-lo, hi);
        double pos[32];
        int np = decade_ticks(fmax(linthresh * 10, m * 1e-6), m, (max_ticks - 1) / 2, pos);
        if (np >= 1) {
            int n = 0;
            for (int i = np - 1; i >= 0; i--) if (-pos[i] >= lo) ts->v[n++] = -pos[i];
            ts->v[n++] = 0;
            for (int i = 0; i < np; i++) if (pos[i] <= hi) ts->v[n++] = pos[i];
            ts->n = n;
            for (int i = 0; i < n; i++) {
                char d[40];
                if (ts->v[i] == 0) { snprintf(ts->label[i], sizeof ts->label[i], "0"); continue; }
                format_decade(fabs(ts->v[i]), d, sizeof d);
                snprintf(ts->label[i], sizeof ts->label[i], "%s%s", ts->v[i] < 0 ? "\xe2\x88\x92" : "", d);
            }
            return;
        }
    }
    ts->n = ssm_nice_ticks(lo, hi, max_ticks, ts->v);
    double step = ts->n >= 2 ? ts->v[1] - ts->v[0] : fabs(hi - lo) > 0 ? fabs(hi - lo) : fabs(lo) + 1;
    for (int i = 0; i < ts->n; i++) ssm_format_tick(ts->v[i], step, ts->label[i], sizeof ts->label[i]);
}

static double max_label_width(cairo_t *cr, const tick_set *ts, double size) {
    double w = 0;
    for (int i = 0; i < ts->n; i++) w = fmax(w, text_width(cr, ts->label[i], size));
    return w;
}

/* Index ticks (integers) over [first, last]. */
static void index_ticks(int64_t first, int64_t last, int max_ticks, tick_set *ts) {
    double v[32];
    int n = ssm_nice_ticks((double)first, (double)last, max_ticks, v);
    ts->n = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] != floor(v[i])) continue;
        ts->v[ts->n] = v[i];
        snprintf(ts->label[ts->n], sizeof ts->label[ts->n], "%.0f", v[i]);
        ts->n++;
    }
}

/* ---- downsampling and raster rendering ------------------------------------------------------ */
void ssm_downsample_maxabs(const double *x, int64_t n, int64_t stride, double *out, int npix) {
    if (n <= npix) {
        for (int j = 0; j < npix; j++) {
            double v = x[(int64_t)j * n / npix * stride];
            out[j] = isfinite(v) ? v : NAN;
        }
        return;
    }
    int64_t i = 0;
    for (int j = 0; j < npix; j++) {
        int64_t end = ((int64_t)(j + 1) * n + npix - 1) / npix;   /* first sample of the next pixel */
        double best = 0, best_abs = -1;
        int bad = 0;
        for (; i < end; i++) {
            double v = x[i * stride];
            if (!isfinite(v)) bad = 1;
            else if (fabs(v) > best_abs) { best_abs = fabs(v); best = v; }
        }
        out[j] = bad ? NAN : best;
    }
}

/* Folds b into a (both pw long): the larger magnitude wins, NaN wins over everything. */
static void fold_maxabs(double *a, const double *b, int n) {
    for (int j = 0; j < n; j++)
        if (isnan(b[j]) || (!isnan(a[j]) && fabs(b[j]) > fabs(a[j]))) a[j] = b[j];
}

#define LUT_SIZE 4096
static void build_lut(const ssm_color_scale *s, uint32_t *lut, uint32_t *nan_pixel) {
    double rgb[3];
    for (int i = 0; i < LUT_SIZE; i++) {
        ssm_colormap_rgb(s->cmap, (double)i / (LUT_SIZE - 1), rgb);
        lut[i] = 0xff000000u | (uint32_t)lround(rgb[0] * 255) << 16 | (uint32_t)lround(rgb[1] * 255) << 8 |
                 (uint32_t)lround(rgb[2] * 255);
    }
    ssm_colormap_nan(s->cmap, rgb);
    *nan_pixel = 0xff000000u | (uint32_t)lround(rgb[0] * 255) << 16 | (uint32_t)lround(rgb[1] * 255) << 8 |
                 (uint32_t)lround(rgb[2] * 255);
}

cairo_surface_t *ssm_render_matrix(const double *data, int64_t rows, int64_t cols, const ssm_color_scale *scale,
                                   int pw, int ph, int64_t *nonfinite_pixels) {
    if (pw < 1) pw = 1;
    if (ph < 1) ph = 1;
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, pw, ph);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS)
        ssm_die("rendering a %d x %d image: cairo: %s", pw, ph, cairo_status_to_string(cairo_surface_status(img)));
    uint32_t *lut = ssm_xmalloc(LUT_SIZE * sizeof *lut), nan_pixel;
    build_lut(scale, lut, &nan_pixel);
    unsigned char *pixels = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    double *acc = ssm_xmalloc((size_t)pw * sizeof *acc), *row = ssm_xmalloc((size_t)pw * sizeof *row);
    int64_t bad = 0, prev_r0 = -1, prev_r1 = -1;
    for (int i = 0; i < ph; i++) {
        /* the data rows this pixel row covers: a span when shrinking, the nearest row otherwise */
        int64_t r0, r1;
        if (rows > ph) { r0 = ((int64_t)i * rows + ph - 1) / ph; r1 = ((int64_t)(i + 1) * rows + ph - 1) / ph; }
        else { r0 = (int64_t)i * rows / ph; r1 = r0 + 1; }
        if (r0 != prev_r0 || r1 != prev_r1) {
            ssm_downsample_maxabs(data + r0 * cols, cols, 1, acc, pw);
            for (int64_t r = r0 + 1; r < r1; r++) {
                ssm_downsample_maxabs(data + r * cols, cols, 1, row, pw);
                fold_maxabs(acc, row, pw);
            }
            prev_r0 = r0;
            prev_r1 = r1;
        }
        uint32_t *out = (uint32_t *)(pixels + (size_t)i * (size_t)stride);
        for (int j = 0; j < pw; j++) {
            double t = ssm_scale_t(scale, acc[j]);
            if (isnan(t)) { out[j] = nan_pixel; bad++; }
            else out[j] = lut[(int)(t * (LUT_SIZE - 1) + 0.5)];
        }
    }
    cairo_surface_mark_dirty(img);
    free(acc);
    free(row);
    free(lut);
    if (nonfinite_pixels) *nonfinite_pixels = bad;
    return img;
}

/* Device pixels per point for raster content. */
static double raster_res(const ssm_figure *fig) { return fig->format == SSM_FIG_PNG ? fig->scale : SVG_RASTER_RES; }

/* Snaps a rectangle to whole device pixels (PNG), so rasters are painted 1:1. */
static ssm_rect snap(const ssm_figure *fig, ssm_rect r) {
    if (fig->format != SSM_FIG_PNG) return r;
    double s = fig->scale;
    double x0 = round(r.x * s), y0 = round(r.y * s), x1 = round((r.x + r.w) * s), y1 = round((r.y + r.h) * s);
    return (ssm_rect){x0 / s, y0 / s, (x1 - x0) / s, (y1 - y0) / s};
}

/* Paints data (rows, cols) into rectangle r of the figure. */
static void paint_matrix(ssm_figure *fig, ssm_rect r, const double *data, int64_t rows, int64_t cols,
                         const ssm_color_scale *scale) {
    double res = raster_res(fig);
    int pw = (int)lround(r.w * res), ph = (int)lround(r.h * res);
    if (pw < 1 || ph < 1) return;
    cairo_surface_t *img = ssm_render_matrix(data, rows, cols, scale, pw, ph, NULL);
    cairo_t *cr = fig->cr;
    cairo_save(cr);
    cairo_translate(cr, r.x, r.y);
    cairo_scale(cr, r.w / pw, r.h / ph);
    cairo_set_source_surface(cr, img, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_rectangle(cr, 0, 0, pw, ph);
    cairo_fill(cr);
    cairo_restore(cr);
    cairo_surface_destroy(img);
}

static void frame(cairo_t *cr, ssm_rect r, double grey, double width) {
    cairo_set_source_rgb(cr, grey, grey, grey);
    cairo_set_line_width(cr, width);
    cairo_rectangle(cr, r.x, r.y, r.w, r.h);
    cairo_stroke(cr);
}

/* ---- colour bar ---------------------------------------------------------------------------- */
static void colour_bar_ticks(const ssm_color_scale *s, tick_set *ts) {
    value_ticks(s->kind, s->vmin, s->vmax, s->linthresh, 9, ts);
}

/* Width a colour bar needs (bar, ticks, labels, the rotated label). */
static double colour_bar_width(cairo_t *cr, const ssm_color_scale *s, const char *label) {
    tick_set ts;
    colour_bar_ticks(s, &ts);
    return 14 + 14 + TICK_LEN + 3 + max_label_width(cr, &ts, TICK_SIZE) + (label && *label ? 20 : 0) + 6;
}

static void draw_colour_bar(ssm_figure *fig, ssm_rect bar, const ssm_color_scale *s, const char *label) {
    cairo_t *cr = fig->cr;
    bar = snap(fig, bar);
    /* a column of colours, t = 1 at the top */
    int ph = (int)lround(bar.h * raster_res(fig));
    if (ph < 2) return;
    double *col = ssm_xmalloc((size_t)ph * sizeof *col);
    for (int i = 0; i < ph; i++) col[i] = ssm_scale_value(s, 1 - (i + 0.5) / ph);
    ssm_color_scale lin = *s;
    paint_matrix(fig, bar, col, ph, 1, &lin);
    free(col);
    frame(cr, bar, 0, 0.8);
    tick_set ts;
    colour_bar_ticks(s, &ts);
    double lw = 0;
    cairo_set_line_width(cr, 0.8);
    for (int i = 0; i < ts.n; i++) {
        double t = ssm_scale_t(s, ts.v[i]);
        if (isnan(t)) continue;
        double y = bar.y + (1 - t) * bar.h;
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, bar.x + bar.w, y);
        cairo_line_to(cr, bar.x + bar.w + TICK_LEN, y);
        cairo_stroke(cr);
        text_at(cr, bar.x + bar.w + TICK_LEN + 3, y, ts.label[i], 0, 0.5, TICK_SIZE);
        lw = fmax(lw, text_width(cr, ts.label[i], TICK_SIZE));
    }
    if (label && *label) text_vertical(cr, bar.x + bar.w + TICK_LEN + 3 + lw + 12, bar.y + bar.h / 2, label, LABEL_SIZE);
}

/* ---- heatmap ------------------------------------------------------------------------------- */
/* A title centred at cx, shrunk (down to 7 pt) to fit maxw, and kept inside [0, fig_w]. */
static void draw_title(cairo_t *cr, double cx, double y, const char *title, double maxw, double fig_w) {
    if (!title || !*title) return;
    double size = TITLE_SIZE, w = text_width(cr, title, size);
    if (w > maxw) { size = fmax(7, size * maxw / w); w = text_width(cr, title, size); }
    if (cx - w / 2 < 4) cx = 4 + w / 2;
    if (cx + w / 2 > fig_w - 4) cx = fmax(4 + w / 2, fig_w - 4 - w / 2);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, cx, y, title, 0.5, 0, size);
}

void ssm_draw_heatmap(ssm_figure *fig, const ssm_heatmap *hm, ssm_rect *area_out) {
    cairo_t *cr = fig->cr;
    tick_set xt, yt;
    index_ticks(hm->col0, hm->col0 + hm->cols - 1, 9, &xt);
    index_ticks(hm->row0, hm->row0 + hm->rows - 1, hm->rows < 8 ? (int)hm->rows : 8, &yt);
    double top = hm->title && *hm->title ? 34 : 14;
    double left = 10 + (hm->ylabel && *hm->ylabel ? 20 : 0) + max_label_width(cr, &yt, TICK_SIZE) + 3 + TICK_LEN;
    double bottom = TICK_LEN + 4 + 10 + (hm->xlabel && *hm->xlabel ? 22 : 0) + 8;
    double right = colour_bar_width(cr, &hm->scale, hm->cbar_label);
    ssm_rect area = snap(fig, (ssm_rect){left, top, fig->width - left - right, fig->height - top - bottom});
    if (area.w < 10 || area.h < 10) ssm_die("figure size %gx%g is too small for a heatmap", fig->width, fig->height);

    paint_matrix(fig, area, hm->data, hm->rows, hm->cols, &hm->scale);
    frame(cr, area, 0, 0.8);

    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 0.8);
    for (int i = 0; i < xt.n; i++) {
        double x = area.x + (xt.v[i] - (double)hm->col0 + 0.5) / (double)hm->cols * area.w;
        cairo_move_to(cr, x, area.y + area.h);
        cairo_line_to(cr, x, area.y + area.h + TICK_LEN);
        cairo_stroke(cr);
        text_at(cr, x, area.y + area.h + TICK_LEN + 3, xt.label[i], 0.5, 0, TICK_SIZE);
    }
    for (int i = 0; i < yt.n; i++) {
        double y = area.y + (yt.v[i] - (double)hm->row0 + 0.5) / (double)hm->rows * area.h;
        cairo_move_to(cr, area.x, y);
        cairo_line_to(cr, area.x - TICK_LEN, y);
        cairo_stroke(cr);
        text_at(cr, area.x - TICK_LEN - 3, y, yt.label[i], 1, 0.5, TICK_SIZE);
    }
    if (hm->xlabel && *hm->xlabel)
        text_at(cr, area.x + area.w / 2, area.y + area.h + TICK_LEN + 20, hm->xlabel, 0.5, 0, LABEL_SIZE);
    if (hm->ylabel && *hm->ylabel) text_vertical(cr, 16, area.y + area.h / 2, hm->ylabel, LABEL_SIZE);
    draw_title(cr, area.x + area.w / 2, 10, hm->title, fig->width - 8, fig->width);
    draw_colour_bar(fig, (ssm_rect){area.x + area.w + 14, area.y, 14, area.h}, &hm->scale, hm->cbar_label);
    if (area_out) *area_out = area;
}

/* ---- image grid ---------------------------------------------------------------------------- */
void ssm_draw_image_grid(ssm_figure *fig, const ssm_image_grid *g) {
    cairo_t *cr = fig->cr;
    double top = g->title && *g->title ? 34 : 10;
    double right = colour_bar_width(cr, &g->scale, g->cbar_label);
    ssm_rect avail = {10, top, fig->width - 10 - right, fig->height - top - 10};
    const double gap = 4;
    /* the column count that gives the largest tiles */
    int64_t best_cols = 1;
    double best_zoom = -1, label_h = 0;
    for (int pass = 0; pass < 2; pass++) {
        best_zoom = -1;
        for (int64_t nc = 1; nc <= g->n; nc++) {
            int64_t nr = (g->n + nc - 1) / nc;
            double cw = (avail.w - gap * (double)(nc - 1)) / (double)nc;
            double ch = (avail.h - gap * (double)(nr - 1)) / (double)nr - label_h;
            double zoom = fmin(cw / (double)g->w, ch / (double)g->h);
            if (zoom > best_zoom) { best_zoom = zoom; best_cols = nc; }
        }
        /* labels only when tiles are big enough to carry them */
        if (pass == 0 && g->n > 1 && best_zoom * (double)g->w >= 24) label_h = 11;
        else break;
    }
    if (best_zoom <= 0) ssm_die("figure size %gx%g is too small for %lld images", fig->width, fig->height, (long long)g->n);
    int64_t nc = best_cols, nr = (g->n + nc - 1) / nc;
    double tw = best_zoom * (double)g->w, th = best_zoom * (double)g->h;
    double gw = (double)nc * tw + (double)(nc - 1) * gap, gh = (double)nr * (th + label_h) + (double)(nr - 1) * gap;
    double x0 = avail.x + (avail.w - gw) / 2, y0 = avail.y + (avail.h - gh) / 2;
    for (int64_t i = 0; i < g->n; i++) {
        int64_t r = i / nc, c = i % nc;
        ssm_rect tile = snap(fig, (ssm_rect){x0 + (double)c * (tw + gap), y0 + (double)r * (th + label_h + gap) + label_h, tw, th});
        paint_matrix(fig, tile, g->data + i * g->h * g->w, g->h, g->w, &g->scale);
        frame(cr, tile, 0.5, 0.5);
        if (label_h > 0) {
            char lab[32];
            snprintf(lab, sizeof lab, "%lld", (long long)(g->index0 + i));
            cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
            text_at(cr, tile.x + tile.w / 2, tile.y - 2, lab, 0.5, 1, 8);
        }
    }
    draw_title(cr, avail.x + avail.w / 2, 10, g->title, fig->width - 8, fig->width);
    double bar_h = fmin(gh, avail.h);
    draw_colour_bar(fig, (ssm_rect){fig->width - right + 14, y0 + label_h, 14, bar_h - label_h}, &g->scale, g->cbar_label);
}

/* ---- line plots ---------------------------------------------------------------------------- */
void ssm_palette_rgb(int i, double rgb[3]) {
    /* Okabe & Ito (2008), ordered for contrast on white; yellow last. */
    static const unsigned pal[] = {0x0072b2, 0xd55e00, 0x009e73, 0xcc79a7, 0xe69f00, 0x56b4e9, 0x000000, 0xf0e442};
    unsigned c = pal[((i % 8) + 8) % 8];
    rgb[0] = ((c >> 16) & 0xff) / 255.0;
    rgb[1] = ((c >> 8) & 0xff) / 255.0;
    rgb[2] = (c & 0xff) / 255.0;
}

static double series_x(const ssm_series *s, int64_t i) { return s->x ? s->x[i] : (double)i; }
static int usable_y(double y, int logy) { return isfinite(y) && (!logy || y > 0); }

void ssm_draw_lines(ssm_figure *fig, ssm_rect panel, const ssm_axes *ax, const ssm_series *series, int nseries) {
    cairo_t *cr = fig->cr;
    /* data ranges */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int k = 0; k < nseries; k++)
        for (int64_t i = 0; i < series[k].n; i++) {
            double x = series_x(&series[k], i), y = series[k].y[i];
            if (!isfinite(x) || !usable_y(y, ax->logy)) continue;
            xmin = fmin(xmin, x); xmax = fmax(xmax, x);
            ymin = fmin(ymin, y); ymax = fmax(ymax, y);
        }
    if (!(xmin <= xmax)) { xmin = 0; xmax = 1; }
    if (!(ymin <= ymax)) { ymin = ax->logy ? 0.1 : 0; ymax = 1; }
    if (xmax == xmin) { xmin -= 0.5; xmax += 0.5; }
    double fy0, fy1;   /* the y range in axis coordinates (log10 for a log axis), padded 5% */
    if (ax->logy) { fy0 = log10(ymin); fy1 = log10(ymax); }
    else { fy0 = ymin; fy1 = ymax; }
    if (fy1 == fy0) { double d = fabs(fy0) > 0 ? 0.1 * fabs(fy0) : 1; fy0 -= d; fy1 += d; }
    double pad = 0.05 * (fy1 - fy0);
    fy0 -= pad;
    fy1 += pad;
    if (ax->ylo < ax->yhi && (!ax->logy || ax->ylo > 0)) {
        fy0 = ax->logy ? log10(ax->ylo) : ax->ylo;
        fy1 = ax->logy ? log10(ax->yhi) : ax->yhi;
    }

    tick_set xt, yt;
    value_ticks(SSM_SCALE_LINEAR, xmin, xmax, 0, 8, &xt);
    if (ax->logy) {
        value_ticks(SSM_SCALE_LOG, pow(10, fy0), pow(10, fy1), 0, 8, &yt);
    } else {
        value_ticks(SSM_SCALE_LINEAR, fy0, fy1, 0, 8, &yt);
    }

    double top = ax->title && *ax->title ? 30 : 12;
    double left = 10 + (ax->ylabel && *ax->ylabel ? 20 : 0) + max_label_width(cr, &yt, TICK_SIZE) + 3 + TICK_LEN;
    double bottom = TICK_LEN + 4 + 10 + (ax->xlabel && *ax->xlabel ? 22 : 0) + 8;
    double right = 12 + text_width(cr, xt.n ? xt.label[xt.n - 1] : "0", TICK_SIZE) / 2;
    ssm_rect area = {panel.x + left, panel.y + top, panel.w - left - right, panel.h - top - bottom};
    if (area.w < 20 || area.h < 20) ssm_die("figure size %gx%g is too small for a line plot", fig->width, fig->height);
#define PX(xv) (area.x + ((xv) - xmin) / (xmax - xmin) * area.w)
#define PY(fy) (area.y + area.h - ((fy) - fy0) / (fy1 - fy0) * area.h)

    /* grid lines and ticks */
    cairo_set_line_width(cr, 0.6);
    for (int i = 0; i < xt.n; i++) {
        double x = PX(xt.v[i]);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x, area.y);
        cairo_line_to(cr, x, area.y + area.h);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, x, area.y + area.h);
        cairo_line_to(cr, x, area.y + area.h + TICK_LEN);
        cairo_stroke(cr);
        text_at(cr, x, area.y + area.h + TICK_LEN + 3, xt.label[i], 0.5, 0, TICK_SIZE);
    }
    for (int i = 0; i < yt.n; i++) {
        double fy = ax->logy ? log10(yt.v[i]) : yt.v[i];
        if (fy < fy0 || fy > fy1) continue;
        double y = PY(fy);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, area.x, y);
        cairo_line_to(cr, area.x + area.w, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, area.x, y);
        cairo_line_to(cr, area.x - TICK_LEN, y);
        cairo_stroke(cr);
        text_at(cr, area.x - TICK_LEN - 3, y, yt.label[i], 1, 0.5, TICK_SIZE);
    }
    if (!ax->logy && fy0 < 0 && fy1 > 0) {   /* the zero line */
        cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
        cairo_move_to(cr, area.x, PY(0));
        cairo_line_to(cr, area.x + area.w, PY(0));
        cairo_stroke(cr);
    }

    /* the series, clipped to the area */
    cairo_save(cr);
    cairo_rectangle(cr, area.x, area.y, area.w, area.h);
    cairo_clip(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int k = 0; k < nseries; k++) {
        const ssm_series *s = &series[k];
        double rgb[3];
        ssm_palette_rgb(s->colour >= 0 ? s->colour : k, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_set_line_width(cr, 1.4);
        double dash[] = {5, 3};
        cairo_set_dash(cr, dash, s->dashed ? 2 : 0, 0);
        int sorted = 1;
        for (int64_t i = 1; i < s->n && sorted; i++) if (series_x(s, i) < series_x(s, i - 1)) sorted = 0;
        double px_w = area.w * raster_res(fig);
        int pen = 0;
        if (sorted && (double)s->n > 2 * px_w) {
            /* envelope: min and max of each device-pixel column, so narrow spikes survive */
            int ncol = (int)ceil(px_w);
            int64_t i = 0;
            for (int c = 0; c < ncol && i < s->n; c++) {
                double xend = xmin + (double)(c + 1) / ncol * (xmax - xmin);
                double lo = INFINITY, hi = -INFINITY, xc = NAN;
                for (; i < s->n && (series_x(s, i) <= xend || c == ncol - 1); i++) {
                    double y = s->y[i];
                    if (!usable_y(y, ax->logy)) continue;
                    double fy = ax->logy ? log10(y) : y;
                    lo = fmin(lo, fy); hi = fmax(hi, fy);
                    if (isnan(xc)) xc = series_x(s, i);
                }
                if (isnan(xc)) { pen = 0; continue; }
                double x = PX(xc);
                if (!pen) cairo_move_to(cr, x, PY(lo)); else cairo_line_to(cr, x, PY(lo));
                cairo_line_to(cr, x, PY(hi));
                pen = 1;
            }
        } else {
            for (int64_t i = 0; i < s->n; i++) {
                double x = series_x(s, i), y = s->y[i];
                if (!isfinite(x) || !usable_y(y, ax->logy)) { pen = 0; continue; }
                double px = PX(x), py = PY(ax->logy ? log10(y) : y);
                if (!pen) cairo_move_to(cr, px, py); else cairo_line_to(cr, px, py);
                pen = 1;
            }
        }
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        int64_t usable = 0;
        for (int64_t i = 0; i < s->n && usable < 2; i++) usable += isfinite(series_x(s, i)) && usable_y(s->y[i], ax->logy);
        if ((s->markers && s->n <= 400) || usable == 1)   /* a lone point needs a marker to be seen */
            for (int64_t i = 0; i < s->n; i++) {
                double x = series_x(s, i), y = s->y[i];
                if (!isfinite(x) || !usable_y(y, ax->logy)) continue;
                cairo_arc(cr, PX(x), PY(ax->logy ? log10(y) : y), 2.2, 0, 2 * M_PI);
                cairo_fill(cr);
            }
    }
    cairo_restore(cr);
    frame(cr, area, 0, 0.8);

    /* legend, top right inside the area */
    int nleg = 0;
    double legw = 0;
    for (int k = 0; k < nseries; k++)
        if (series[k].label && *series[k].label) { nleg++; legw = fmax(legw, text_width(cr, series[k].label, TICK_SIZE)); }
    if (nleg > 0) {
        double row = 13, lw = 8 + 22 + 5 + legw + 8, lh = 6 + row * nleg + 2;
        double lx = area.x + area.w - lw - 6, ly = area.y + 6;
        cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
        cairo_rectangle(cr, lx, ly, lw, lh);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
        cairo_set_line_width(cr, 0.6);
        cairo_stroke(cr);
        int e = 0;
        for (int k = 0; k < nseries; k++) {
            const ssm_series *s = &series[k];
            if (!s->label || !*s->label) continue;
            double y = ly + 6 + row * e + row / 2 - 1, rgb[3];
            ssm_palette_rgb(s->colour >= 0 ? s->colour : k, rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_set_line_width(cr, 1.6);
            double dash[] = {5, 3};
            cairo_set_dash(cr, dash, s->dashed ? 2 : 0, 0);
            cairo_move_to(cr, lx + 8, y);
            cairo_line_to(cr, lx + 30, y);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
            if (s->markers) { cairo_arc(cr, lx + 19, y, 2.2, 0, 2 * M_PI); cairo_fill(cr); }
            cairo_set_source_rgb(cr, 0, 0, 0);
            text_at(cr, lx + 35, y, s->label, 0, 0.5, TICK_SIZE);
            e++;
        }
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (ax->xlabel && *ax->xlabel) text_at(cr, area.x + area.w / 2, area.y + area.h + TICK_LEN + 20, ax->xlabel, 0.5, 0, LABEL_SIZE);
    if (ax->ylabel && *ax->ylabel) text_vertical(cr, panel.x + 16, area.y + area.h / 2, ax->ylabel, LABEL_SIZE);
    draw_title(cr, area.x + area.w / 2, panel.y + 9, ax->title, panel.w - 8, fig->width);
#undef PX
#undef PY
}
