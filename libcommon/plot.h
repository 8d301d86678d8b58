/* plot.h - figures drawn with cairo: heatmaps with a colour bar, line plots with axes, ticks,
 * legend and title, grids of small images, and training curves.  Used by ssm-viz.
 *
 * Units: a figure is width x height "points".  PNG output has round(width * scale) x
 * round(height * scale) pixels; SVG output is width x height pt (scale is ignored).  Text is real
 * text (DejaVu Sans through cairo's font API), so figures can go into papers as they are.
 *
 * Data are double arrays, row-major; NaN and +-Inf are "non-finite": heatmaps and images draw them
 * in the colour map's NaN colour (colormap.h), line plots break the line there.
 *
 * Large inputs: a heatmap or image is first reduced to at most one sample per device pixel by
 * ssm_downsample_maxabs (the sample of largest magnitude in each pixel's span wins), so a single
 * narrow spike stays visible at any zoom and the cost is one pass over the data.
 */
#ifndef SSM_PLOT_H
#define SSM_PLOT_H

#include <stddef.h>
#include <stdint.h>
#include <cairo.h>

#include "colormap.h"

typedef enum { SSM_FIG_PNG, SSM_FIG_SVG } ssm_fig_format;

typedef struct {
    int format;                /* ssm_fig_format */
    double width, height;      /* points */
    double scale;              /* device pixels per point (PNG); 1 for SVG */
    cairo_surface_t *surface;
    cairo_t *cr;
    unsigned char *buf;        /* encoded output, filled by ssm_figure_finish (and by SVG writes) */
    size_t len, cap;
} ssm_figure;

typedef struct { double x, y, w, h; } ssm_rect;

/* A white figure; dies (ssm_die) if cairo cannot create the surface. */
void ssm_figure_init(ssm_figure *fig, int format, double width, double height, double scale);
/* Finishes drawing and returns the encoded file (PNG or SVG bytes, owned by fig) in *len. */
const unsigned char *ssm_figure_finish(ssm_figure *fig, size_t *len);
void ssm_figure_free(ssm_figure *fig);
/* Frees every figure still alive and cairo's and fontconfig's process-wide caches (registered with
 * atexit by the first ssm_figure_init, so leak checkers see a clean exit, error exits included). */
void ssm_plot_release_all(void);

/* x is a strided sequence of n values (x[0], x[stride], ...).  Writes npix values to out: when
 * n > npix, out[j] is the value of largest |x| among the samples i with floor(i*npix/n) == j (NaN
 * if any of them is non-finite, so bad values are never hidden); when n <= npix, out[j] is
 * x[floor(j*n/npix)] (nearest sample).  n >= 1, npix >= 1. */
void ssm_downsample_maxabs(const double *x, int64_t n, int64_t stride, double *out, int npix);

/* Reduces/enlarges a (rows, cols) matrix to (ph, pw) "pixels" with ssm_downsample_maxabs along
 * both axes (columns first) and colours it; returns an ARGB32 image surface ph x pw.
 * *nonfinite_pixels (if not NULL) gets the count of pixels drawn in the NaN colour. */
cairo_surface_t *ssm_render_matrix(const double *data, int64_t rows, int64_t cols, const ssm_color_scale *scale,
                                   int pw, int ph, int64_t *nonfinite_pixels);

/* A heatmap of a (rows, cols) matrix with axes (row index from row0 on the y axis, column index
 * from col0 on x), a colour bar on the right, and a title.  Returns the plot area in *area (may be
 * NULL). */
typedef struct {
    const double *data;        /* (rows, cols) */
    int64_t rows, cols;
    int64_t row0;              /* label of the first row (e.g. the first channel picked) */
    ssm_color_scale scale;
    const char *title, *xlabel, *ylabel, *cbar_label;
    int64_t col0;              /* label of the first column (e.g. the first lag picked) */
} ssm_heatmap;
void ssm_draw_heatmap(ssm_figure *fig, const ssm_heatmap *hm, ssm_rect *area);

/* A grid of n images of h x w each (data is (n, h, w)), sharing one colour scale shown in a
 * colour bar; image i is labelled "index0 + i" when there is room. */
typedef struct {
    const double *data;        /* (n, h, w) */
    int64_t n, h, w;
    int64_t index0;
    ssm_color_scale scale;
    const char *title, *cbar_label;
} ssm_image_grid;
void ssm_draw_image_grid(ssm_figure *fig, const ssm_image_grid *g);

/* Line plots.  x may be NULL (then x_i = i).  Series with more points than twice the plot's pixel
 * width are drawn as a per-pixel-column min/max envelope (spikes stay visible). */
typedef struct {
    const double *x, *y;       /* n values each */
    int64_t n;
    const char *label;         /* legend entry; NULL for none */
    int colour;                /* index into the palette; -1: the series' position */
    int dashed, markers;
} ssm_series;
typedef struct {
    const char *title, *xlabel, *ylabel;
    int logy;                  /* log10 y axis (values <= 0 are left out) */
    double ylo, yhi;           /* the y range when ylo < yhi, else from the data */
} ssm_axes;
/* Draws into the rectangle `panel` of the figure (margins for ticks and labels included). */
void ssm_draw_lines(ssm_figure *fig, ssm_rect panel, const ssm_axes *axes, const ssm_series *series, int nseries);

/* The palette for series (Okabe & Ito's colour-blind-safe set), cycling. */
void ssm_palette_rgb(int i, double rgb[3]);

/* "Nice" tick values (1, 2, 5 x 10^k) covering [lo, hi], at most max_ticks of them inside it.
 * Returns the count written to ticks (<= max_ticks). */
int ssm_nice_ticks(double lo, double hi, int max_ticks, double *ticks);
/* A tick label for v on an axis whose tick step is `step`; uses a proper minus sign (UTF-8). */
void ssm_format_tick(double v, double step, char *buf, size_t n);

#endif
