/* test_plot.c - colour maps, scales, downsampling, raster rendering, ticks, the training log
 * reader and figure encoding (libcommon/colormap.c, plot.c, train_log.c). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "colormap.h"
#include "plot.h"
#include "train_log.h"

/* CIE L* of an sRGB colour (components in [0, 1]): the lightness a reader perceives. */
static double lightness(const double rgb[3]) {
    double lin[3];
    for (int c = 0; c < 3; c++)
        lin[c] = rgb[c] <= 0.04045 ? rgb[c] / 12.92 : pow((rgb[c] + 0.055) / 1.055, 2.4);
    double y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
    return y > 216.0 / 24389 ? 116 * cbrt(y) - 16 : y * 24389.0 / 27;
}
static double pixel_lightness(uint32_t p) {
    double rgb[3] = {((p >> 16) & 0xff) / 255.0, ((p >> 8) & 0xff) / 255.0, (p & 0xff) / 255.0};
    return lightness(rgb);
}

static void test_colormap_ramps(void) {
    double prev = -1, rgb[3];
    int monotone = 1;
    for (int i = 0; i <= 1000; i++) {
        ssm_colormap_rgb(SSM_CMAP_VIRIDIS, i / 1000.0, rgb);
        double l = lightness(rgb);
        if (!(l > prev)) monotone = 0;
        prev = l;
    }
    CHECK(monotone, "viridis lightness must increase strictly along the map");
    /* diverging: lighter towards the centre from both ends, symmetric-ish, centre near white */
    int up = 1, down = 1;
    prev = -1;
    for (int i = 0; i <= 500; i++) {
        ssm_colormap_rgb(SSM_CMAP_DIVERGING, i / 1000.0, rgb);
        double l = lightness(rgb);
        if (!(l > prev)) up = 0;
        prev = l;
    }
    for (int i = 501; i <= 1000; i++) {
        ssm_colormap_rgb(SSM_CMAP_DIVERGING, i / 1000.0, rgb);
        double l = lightness(rgb);
        if (!(l < prev)) down = 0;
        prev = l;
    }
    CHECK(up && down, "diverging lightness must rise to the centre and fall after it");
    ssm_colormap_rgb(SSM_CMAP_DIVERGING, 0.5, rgb);
    CHECK(lightness(rgb) > 95, "diverging centre should be near white, L* = %g", lightness(rgb));
    ssm_colormap_rgb(SSM_CMAP_DIVERGING, 0.0, rgb);
    CHECK(rgb[2] > rgb[0], "negative end should be blue");
    ssm_colormap_rgb(SSM_CMAP_DIVERGING, 1.0, rgb);
    CHECK(rgb[0] > rgb[2], "positive end should be red");
    double a[3], b[3];
    ssm_colormap_rgb(SSM_CMAP_PHASE, 0, a);
    ssm_colormap_rgb(SSM_CMAP_PHASE, 1, b);
    CHECK(a[0] == b[0] && a[1] == b[1] && a[2] == b[2], "phase map must be cyclic");
    /* the NaN colour is far from every colour of its map */
    for (int m = 0; m < 4; m++) {
        double nan_rgb[3], min_d = 1e9;
        ssm_colormap_nan(m, nan_rgb);
        for (int i = 0; i <= 200; i++) {
            ssm_colormap_rgb(m, i / 200.0, rgb);
            double d = fabs(rgb[0] - nan_rgb[0]) + fabs(rgb[1] - nan_rgb[1]) + fabs(rgb[2] - nan_rgb[2]);
            min_d = fmin(min_d, d);
        }
        CHECK(min_d > 0.3, "NaN colour of map %s is too close to the map (%g)", ssm_colormap_name(m), min_d);
    }
    CHECK(ssm_colormap_from_name("rdbu") == SSM_CMAP_DIVERGING && ssm_colormap_from_name("jet") < 0, "names");
}

static void test_scales(void) {
    for (int trial = 0; trial < 20; trial++) {
        double m = exp(6 * test_uniform() - 3);
        ssm_color_scale s = {SSM_CMAP_DIVERGING, SSM_SCALE_LINEAR, -m, m, 0};
        CHECK_CLOSE(ssm_scale_t(&s, 0), 0.5, 1e-12, "zero sits at the centre of a symmetric range");
        s.kind = SSM_SCALE_SYMLOG;
        s.linthresh = m * 1e-3;
        CHECK_CLOSE(ssm_scale_t(&s, 0), 0.5, 1e-12, "symlog: zero at the centre");
        double v = (2 * test_uniform() - 1) * m;
        CHECK_CLOSE(ssm_scale_value(&s, ssm_scale_t(&s, v)), v, 1e-9, "symlog round trip");
        ssm_color_scale lg = {SSM_CMAP_VIRIDIS, SSM_SCALE_LOG, m * 1e-3, m, 0};
        CHECK_CLOSE(ssm_scale_t(&lg, m * 1e-2), 1.0 / 3, 1e-9, "log: one decade of three");
        CHECK(ssm_scale_t(&lg, -1) == 0 && isnan(ssm_scale_t(&lg, NAN)), "log: <= 0 clips low, NaN stays NaN");
    }
}

/* The definition, by brute force: pixel j takes the samples i with floor(i*npix/n) == j. */
static void downsample_reference(const double *x, int64_t n, double *out, int npix) {
    for (int j = 0; j < npix; j++) {
        if (n <= npix) { out[j] = x[(int64_t)j * n / npix]; continue; }
        double best = 0, babs = -1;
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (i * npix / n != j) continue;
            if (!isfinite(x[i])) bad = 1;
            else if (fabs(x[i]) > babs) { babs = fabs(x[i]); best = x[i]; }
        }
        out[j] = bad ? NAN : best;
    }
}

static void test_downsample(void) {
    for (int trial = 0; trial < 30; trial++) {
        int64_t n = 1 + (int64_t)(test_uniform() * (trial < 10 ? 50 : 5000));
        int npix = 1 + (int)(test_uniform() * 700);
        double *x = malloc((size_t)n * sizeof *x), *got = malloc((size_t)npix * sizeof *got),
               *want = malloc((size_t)npix * sizeof *want);
        for (int64_t i = 0; i < n; i++) x[i] = test_normal();
        if (trial % 3 == 0) x[(int64_t)(test_uniform() * n)] = NAN;
        ssm_downsample_maxabs(x, n, 1, got, npix);
        downsample_reference(x, n, want, npix);
        int same = 1;
        for (int j = 0; j < npix; j++)
            if (!(got[j] == want[j] || (isnan(got[j]) && isnan(want[j])))) same = 0;
        CHECK(same, "downsample of n=%lld to %d pixels differs from the brute-force definition", (long long)n, npix);
        free(x); free(got); free(want);
    }
    /* a single narrow spike in a long noisy signal survives at any width */
    for (int trial = 0; trial < 10; trial++) {
        int64_t n = 100000 + (int64_t)(test_uniform() * 100001);
        int npix = 200 + (int)(test_uniform() * 800);
        double *x = malloc((size_t)n * sizeof *x), *out = malloc((size_t)npix * sizeof *out);
        for (int64_t i = 0; i < n; i++) x[i] = 0.01 * test_normal();
        int64_t at = (int64_t)(test_uniform() * n);
        double spike = test_uniform() < 0.5 ? -7 : 7;
        x[at] = spike;
        ssm_downsample_maxabs(x, n, 1, out, npix);
        int j = (int)(at * npix / n), others_small = 1;
        for (int k = 0; k < npix; k++) if (k != j && fabs(out[k]) > 1) others_small = 0;
        CHECK(out[j] == spike, "spike at %lld of %lld lost in pixel %d of %d (got %g)", (long long)at, (long long)n, j, npix, out[j]);
        CHECK(others_small, "only the spike's pixel may be large");
        free(x); free(out);
    }
    /* strided access (columns of a matrix) */
    double m[3 * 4] = {1, 2, 3, 4, -9, 6, 7, 8, 9, 10, 11, 12};
    double col[1];
    ssm_downsample_maxabs(m, 3, 4, col, 1);
    CHECK(col[0] == -9 || col[0] == 9, "strided max-abs over column 0");
    CHECK(col[0] == -9, "ties keep the first of equal magnitude (got %g)", col[0]);
}

static void test_render_matrix(void) {
    /* a ramp rendered through the whole path gives monotone lightness (viridis) */
    int64_t n = 257 + (int64_t)(test_uniform() * 5000);
    double lo = 10 * test_normal(), hi = lo + 0.1 + 10 * test_uniform();
    double *ramp = malloc((size_t)n * sizeof *ramp);
    for (int64_t i = 0; i < n; i++) ramp[i] = lo + (hi - lo) * (double)i / (double)(n - 1);
    ssm_color_scale s = {SSM_CMAP_VIRIDIS, SSM_SCALE_LINEAR, lo, hi, 0};
    int pw = 100 + (int)(test_uniform() * 300);
    int64_t bad = -1;
    cairo_surface_t *img = ssm_render_matrix(ramp, 1, n, &s, pw, 3, &bad);
    uint32_t *px = (uint32_t *)cairo_image_surface_get_data(img);
    /* monotone up to the rounding of each channel to 8 bits (a fraction of one L* unit) */
    int monotone = 1;
    for (int j = 1; j < pw; j++) if (!(pixel_lightness(px[j]) >= pixel_lightness(px[j - 1]) - 0.5)) monotone = 0;
    for (int j = 8; j < pw; j += 8) if (!(pixel_lightness(px[j]) > pixel_lightness(px[j - 8]))) monotone = 0;
    CHECK(monotone, "ramp of %lld values over %d pixels: lightness not monotone", (long long)n, pw);
    CHECK(pixel_lightness(px[pw - 1]) - pixel_lightness(px[0]) > 50, "ramp spans the map");
    CHECK(bad == 0, "no NaN pixels in a ramp");
    cairo_surface_destroy(img);
    /* a NaN sample shows as the NaN colour, in its pixel only */
    ramp[n / 2] = NAN;
    img = ssm_render_matrix(ramp, 1, n, &s, pw, 2, &bad);
    px = (uint32_t *)cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img) / 4;
    CHECK(bad == 2, "one NaN column of 2 rows: %lld NaN pixels", (long long)bad);
    CHECK((px[(n / 2) * pw / n] & 0xffffff) == 0xff00ff && (px[stride + (n / 2) * pw / n] & 0xffffff) == 0xff00ff,
          "NaN pixel is magenta");
    cairo_surface_destroy(img);
    free(ramp);
    /* a spike in a (rows, cols) matrix wider and taller than the picture keeps its colour */
    int64_t rows = 300, cols = 20011, r0 = (int64_t)(test_uniform() * rows), c0 = (int64_t)(test_uniform() * cols);
    double *m = calloc((size_t)(rows * cols), sizeof *m);
    m[r0 * cols + c0] = -1;
    ssm_color_scale d = {SSM_CMAP_DIVERGING, SSM_SCALE_LINEAR, -1, 1, 0};
    img = ssm_render_matrix(m, rows, cols, &d, 200, 100, NULL);
    px = (uint32_t *)cairo_image_surface_get_data(img);
    stride = cairo_image_surface_get_stride(img) / 4;
    int pi = (int)(r0 * 100 / rows), pj = (int)(c0 * 200 / cols);
    CHECK((px[pi * stride + pj] & 0xffffff) == 0x053061, "spike pixel (%d, %d) should be the darkest blue, got %06x", pi, pj,
          px[pi * stride + pj] & 0xffffff);
    int blues = 0;
    for (int i = 0; i < 100; i++) for (int j = 0; j < 200; j++) blues += (px[i * stride + j] & 0xffffff) == 0x053061;
    CHECK(blues == 1, "exactly one pixel carries the spike (got %d)", blues);
    cairo_surface_destroy(img);
    free(m);
}

static void test_ticks(void) {
    for (int trial = 0; trial < 200; trial++) {
        double lo = test_normal() * pow(10, (int)(8 * test_uniform()) - 4), hi = lo + exp(20 * test_uniform() - 10);
        double t[32];
        int maxt = 2 + (int)(test_uniform() * 8);
        int n = ssm_nice_ticks(lo, hi, maxt, t);
        int ok = n >= 1 && n <= maxt;
        double step = n >= 2 ? t[1] - t[0] : 0;
        for (int i = 0; i < n; i++) {
            double eps = 1e-9 * fmax(fabs(hi), fabs(lo)) + 1e-12 * (hi - lo);
            if (t[i] < lo - eps || t[i] > hi + eps) ok = 0;
            if (i >= 1 && fabs(t[i] - t[i - 1] - step) > 1e-6 * step) ok = 0;
        }
        if (n >= 2) {   /* step is 1, 2, 2.5 or 5 times a power of ten */
            double mant = step / pow(10, floor(log10(step) + 1e-6));
            if (!(fabs(mant - 1) < 1e-6 || fabs(mant - 2) < 1e-6 || fabs(mant - 2.5) < 1e-6 || fabs(mant - 5) < 1e-6)) ok = 0;
        }
        CHECK(ok, "ticks for [%g, %g] max %d: n=%d step=%g", lo, hi, maxt, n, step);
        if (maxt >= 5) CHECK(n >= 2, "at least two ticks for [%g, %g] with up to %d", lo, hi, maxt);
    }
    char buf[64];
    ssm_format_tick(-0.5, 0.5, buf, sizeof buf);
    CHECK(strcmp(buf, "\xe2\x88\x92" "0.5") == 0, "tick label with a minus sign: '%s'", buf);
    ssm_format_tick(1500, 500, buf, sizeof buf);
    CHECK(strcmp(buf, "1500") == 0, "integer tick label: '%s'", buf);
    ssm_format_tick(0.25, 0.25, buf, sizeof buf);
    CHECK(strcmp(buf, "0.25") == 0, "step 0.25 needs two decimals: '%s'", buf);
}

static void test_train_log(void) {
    const char *tsv = "step\tsplit\tloss\taccuracy\tlr\ttokens_per_s\ttime_s\n"
                      "0\ttrain\t2.5\t\t0.001\t100\t0.1\n"
                      "10\teval\t2.0\t0.4\t0.001\t\t1.0\r\n"
                      "\n"
                      "20\ttrain\t1.5\t\t0.001\t120\t2.0\n";
    ssm_train_log log;
    char err[256];
    int rc = ssm_train_log_parse(tsv, strlen(tsv), "t.tsv", &log, err, sizeof err);
    CHECK(rc == 0, "TSV parses: %s", rc ? err : "");
    if (rc == 0) {
        CHECK(log.n == 3 && log.step[2] == 20 && log.loss[1] == 2.0 && log.is_eval[1] == 1 && log.is_eval[0] == 0,
              "TSV records");
        CHECK(isnan(log.accuracy[0]) && log.accuracy[1] == 0.4, "empty accuracy is NaN");
        ssm_train_log_free(&log);
    }
    const char *jsonl = "{\"step\": 5, \"split\": \"train\", \"loss\": 0.7, \"accuracy\": null, \"lr\": 1e-3}\n"
                        "  {\"loss\":0.6,\"step\":6,\"split\":\"eval\",\"accuracy\":0.9,\"note\":\"x, y}\"}\n";
    rc = ssm_train_log_parse(jsonl, strlen(jsonl), "t.jsonl", &log, err, sizeof err);
    CHECK(rc == 0, "JSON lines parse: %s", rc ? err : "");
    if (rc == 0) {
        CHECK(log.n == 2 && log.step[1] == 6 && log.loss[1] == 0.6 && log.is_eval[1] && log.accuracy[1] == 0.9 &&
              isnan(log.accuracy[0]), "JSON records");
        ssm_train_log_free(&log);
    }
    static const struct { const char *text, *want; } bad[] = {
        {"step\tsplit\tloss\n1\ttrain\n", "t: line 2: expected 3 tab-separated fields, got 2"},
        {"step\tsplit\tloss\n1\ttest\t0.5\n", "t: line 2: split: expected train or eval, got 'test'"},
        {"epoch\tloss\n", "t: line 1: expected a header line"},
        {"{\"step\": 1, \"loss\": \"high\"}\n", "t: line 1: loss: expected a number, got a string"},
        {"{\"step\": 1, \"loss\": 2} x\n", "t: line 1: trailing characters"},
        {"step\tloss\n", "t: line 0: no records"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = ssm_train_log_parse(bad[i].text, strlen(bad[i].text), "t", &log, err, sizeof err);
        CHECK(rc == -1 && strncmp(err, bad[i].want, strlen(bad[i].want)) == 0, "bad log %zu: got '%s'", i,
              rc ? err : "success");
    }
}

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void test_figure_encoding(void) {
    ssm_figure fig;
    int w = 300 + (int)(test_uniform() * 200), h = 200 + (int)(test_uniform() * 100);
    ssm_figure_init(&fig, SSM_FIG_PNG, w, h, 2);
    double y[5] = {1, 3, 2, 5, 4};
    ssm_series s = {NULL, y, 5, "y", -1, 0, 1};
    ssm_axes ax = {"title", "x", "y", 0, 0, 0};
    ssm_draw_lines(&fig, (ssm_rect){0, 0, w, h}, &ax, &s, 1);
    size_t len;
    const unsigned char *png = ssm_figure_finish(&fig, &len);
    CHECK(len > 33 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(png + 12, "IHDR", 4) == 0, "PNG signature");
    if (len > 33) CHECK(be32(png + 16) == (uint32_t)(2 * w) && be32(png + 20) == (uint32_t)(2 * h), "PNG is size x scale");
    ssm_figure_free(&fig);
    ssm_figure_init(&fig, SSM_FIG_SVG, w, h, 2);
    ssm_draw_lines(&fig, (ssm_rect){0, 0, w, h}, &ax, &s, 1);
    const unsigned char *svg = ssm_figure_finish(&fig, &len);
    char want[64];
    snprintf(want, sizeof want, "width=\"%dpt\" height=\"%dpt\"", w, h);
    CHECK(len > 100 && memmem(svg, len, "<svg", 4) && memmem(svg, len, want, strlen(want)), "SVG with %s", want);
    ssm_figure_free(&fig);
}

int main(void) {
    test_seed_from_env("test_plot");
    test_colormap_ramps();
    test_scales();
    test_downsample();
    test_render_matrix();
    test_ticks();
    test_train_log();
    test_figure_encoding();
    return check_summary("test_plot");
}
