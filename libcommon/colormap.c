/* colormap.c - colour maps from published anchor tables, and value -> t scales (colormap.h). */
#include "colormap.h"

#include <math.h>
#include <string.h>

/* Anchor colours as 0xRRGGBB, equally spaced in t. */
static const unsigned viridis_anchors[] = {
    0x440154, 0x482475, 0x414487, 0x355f8d, 0x2a788e, 0x21918c,
    0x22a884, 0x44bf70, 0x7ad151, 0xbddf26, 0xfde725,
};
/* ColorBrewer RdBu, 11 classes, listed from the blue end (negative) to the red end (positive). */
static const unsigned diverging_anchors[] = {
    0x053061, 0x2166ac, 0x4393c3, 0x92c5de, 0xd1e5f0, 0xf7f7f7,
    0xfddbc7, 0xf4a582, 0xd6604d, 0xb2182b, 0x67001f,
};
static const unsigned gray_anchors[] = {0x000000, 0xffffff};
/* A hue wheel at moderate saturation, closed (first == last) so that -pi and pi look the same. */
static const unsigned phase_anchors[] = {
    0xd94c4c, 0xd9a04c, 0xb8d94c, 0x4cd97a, 0x4cc7d9, 0x4c6fd9, 0x9a4cd9, 0xd94ca6, 0xd94c4c,
};

static const struct {
    const char *name;
    const unsigned *anchors;
    int n;
} maps[] = {
    [SSM_CMAP_VIRIDIS] = {"viridis", viridis_anchors, sizeof viridis_anchors / sizeof *viridis_anchors},
    [SSM_CMAP_DIVERGING] = {"diverging", diverging_anchors, sizeof diverging_anchors / sizeof *diverging_anchors},
    [SSM_CMAP_GRAY] = {"gray", gray_anchors, 2},
    [SSM_CMAP_PHASE] = {"phase", phase_anchors, sizeof phase_anchors / sizeof *phase_anchors},
};
#define NMAPS (int)(sizeof maps / sizeof maps[0])

int ssm_colormap_from_name(const char *name) {
    for (int i = 0; i < NMAPS; i++)
        if (strcmp(name, maps[i].name) == 0) return i;
    if (strcmp(name, "rdbu") == 0) return SSM_CMAP_DIVERGING;
    if (strcmp(name, "grey") == 0) return SSM_CMAP_GRAY;
    return -1;
}

const char *ssm_colormap_name(int cmap) { return cmap >= 0 && cmap < NMAPS ? maps[cmap].name : "?"; }

void ssm_colormap_nan(int cmap, double rgb[3]) {
    if (cmap == SSM_CMAP_GRAY) { rgb[0] = 1; rgb[1] = 0; rgb[2] = 0; }
    else if (cmap == SSM_CMAP_PHASE) { rgb[0] = rgb[1] = rgb[2] = 0; }
    else { rgb[0] = 1; rgb[1] = 0; rgb[2] = 1; }
}

const char *ssm_colormap_nan_name(int cmap) {
    return cmap == SSM_CMAP_GRAY ? "red" : cmap == SSM_CMAP_PHASE ? "black" : "magenta";
}

void ssm_colormap_rgb(int cmap, double t, double rgb[3]) {
    if (isnan(t) || cmap < 0 || cmap >= NMAPS) { ssm_colormap_nan(cmap, rgb); return; }
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    const unsigned *a = maps[cmap].anchors;
    int segments = maps[cmap].n - 1;
    double pos = t * segments;
    int i = (int)pos;
    if (i >= segments) i = segments - 1;
    double f = pos - i;
    for (int c = 0; c < 3; c++) {
        int shift = 16 - 8 * c;
        double lo = (double)((a[i] >> shift) & 0xff), hi = (double)((a[i + 1] >> shift) & 0xff);
        rgb[c] = (lo + f * (hi - lo)) / 255.0;
    }
}

static double symlog(double v, double c) { return copysign(log10(1 + fabs(v) / c), v); }
static double symlog_inverse(double f, double c) { return copysign(c * (pow(10, fabs(f)) - 1), f); }

static double forward(const ssm_color_scale *s, double v) {
    switch (s->kind) {
    case SSM_SCALE_LOG: return v > 0 ? log10(v) : NAN;
    case SSM_SCALE_SYMLOG: return symlog(v, s->linthresh);
    default: return v;
    }
}

double ssm_scale_t(const ssm_color_scale *s, double v) {
    if (!isfinite(v)) return NAN;
    if (s->kind == SSM_SCALE_LOG && v <= 0) return 0;   /* below any positive range */
    double lo = forward(s, s->vmin), hi = forward(s, s->vmax), f = forward(s, v);
    double t = hi > lo ? (f - lo) / (hi - lo) : 0.5;
    return t < 0 ? 0 : t > 1 ? 1 : t;
}

double ssm_scale_value(const ssm_color_scale *s, double t) {
    double lo = forward(s, s->vmin), hi = forward(s, s->vmax), f = lo + t * (hi - lo);
    switch (s->kind) {
    case SSM_SCALE_LOG: return pow(10, f);
    case SSM_SCALE_SYMLOG: return symlog_inverse(f, s->linthresh);
    default: return f;
    }
}
