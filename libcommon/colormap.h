/* colormap.h - colour maps and the value -> colour scales used by ssm-viz.
 *
 * Colour maps take t in [0, 1] to an sRGB colour (components in [0, 1]) by linear interpolation
 * between published anchor colours:
 *   viridis    perceptually uniform, lightness increasing (van der Walt & Smith's matplotlib map,
 *              sampled at 11 points); for data of one sign.
 *   diverging  ColorBrewer RdBu (11 classes), reversed so that t = 0 is dark blue, 0.5 near white,
 *              1 dark red; for signed data with the centre at zero.
 *   gray       black to white.
 *   phase      a cyclic hue wheel (t = 0 and t = 1 are the same colour) for angles.
 * Non-finite values get a colour that occurs in none of the maps' ranges (see ssm_colormap_nan).
 */
#ifndef SSM_COLORMAP_H
#define SSM_COLORMAP_H

typedef enum { SSM_CMAP_VIRIDIS, SSM_CMAP_DIVERGING, SSM_CMAP_GRAY, SSM_CMAP_PHASE } ssm_cmap;

/* "viridis", "diverging" (also "rdbu"), "gray" (also "grey"), "phase"; -1 if unknown. */
int ssm_colormap_from_name(const char *name);
const char *ssm_colormap_name(int cmap);
/* t is clipped to [0, 1]; a NaN t gives the NaN colour. */
void ssm_colormap_rgb(int cmap, double t, double rgb[3]);
/* The colour drawn for NaN/Inf values: magenta, except red for gray and black for phase. */
void ssm_colormap_nan(int cmap, double rgb[3]);
const char *ssm_colormap_nan_name(int cmap);   /* "magenta", ... (for messages) */

/* How values map to t in [0, 1]. */
typedef enum { SSM_SCALE_LINEAR, SSM_SCALE_LOG, SSM_SCALE_SYMLOG } ssm_scale_kind;
typedef struct {
    int cmap;
    int kind;          /* ssm_scale_kind */
    double vmin, vmax; /* the values at t = 0 and t = 1 (LOG: both > 0) */
    double linthresh;  /* SYMLOG: f(v) = sign(v) log10(1 + |v| / linthresh) */
} ssm_color_scale;

/* t for v, clipped to [0, 1] (v <= 0 on a LOG scale gives 0); NaN for a non-finite v. */
double ssm_scale_t(const ssm_color_scale *s, double v);
/* The inverse: the value at t (for colour bar ticks). */
double ssm_scale_value(const ssm_color_scale *s, double t);

#endif
