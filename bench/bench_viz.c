/* bench_viz.c - how fast ssm-viz draws a large kernel heatmap (256 x 16384 float32, the issue's
 * target: under a second), against the floor measured in the same run: one pass over the data
 * computing max |K| (every value must be read once to downsample it).
 * Rows: median seconds of 5 runs and the ratio to that floor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "plot.h"
#include "stream.h"

#define RUNS 5

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *t) { qsort(t, RUNS, sizeof *t, cmp_double); return t[RUNS / 2]; }

static volatile double sink;

int main(void) {
    const int64_t H = 256, L = 16384;
    int64_t dims[2] = {H, L};
    ssm_tensor *k = ssm_tensor_new("K", SSM_F32, 2, dims);
    float *kf = k->data;
    unsigned long long s = 7;
    for (int64_t h = 0; h < H; h++)
        for (int64_t l = 0; l < L; l++) {   /* damped oscillations plus a little noise */
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            double noise = ((double)(s >> 11) * 0x1p-53 - 0.5) * 1e-3;
            kf[h * L + l] = (float)(exp(-(double)l / (20.0 * (double)(h + 1))) * cos(0.05 * (double)l * (double)(h % 7 + 1)) + noise);
        }
    double *kd = ssm_as_f64(k, 0);
    char path[] = "/tmp/bench_viz_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); return 1; }
    close(fd);
    ssm_writer *w = ssm_writer_open(path, 1);
    if (!w || ssm_writer_write(w, k) < 0 || ssm_writer_close(w, NULL, 0) < 0) { fprintf(stderr, "writing %s failed\n", path); return 1; }

    printf("# ssm-viz heatmap of K [%lld, %lld] float32 (%.0f MiB), default 800x450 figure\n", (long long)H,
           (long long)L, (double)(H * L * 4) / (1 << 20));
    printf("%-40s %10s %8s\n", "case", "seconds", "vs-floor");
    double t[RUNS];

    for (int r = 0; r < RUNS; r++) {   /* floor: one pass over the doubles */
        double t0 = ssm_now(), m = 0;
        for (int64_t i = 0; i < H * L; i++) { double a = fabs(kd[i]); if (a > m) m = a; }
        sink = m;
        t[r] = ssm_now() - t0;
    }
    double floor_s = median(t);
    printf("%-40s %10.4f %8.2f\n", "floor: max|K| over all values", floor_s, 1.0);

    ssm_color_scale sc = {SSM_CMAP_DIVERGING, SSM_SCALE_LINEAR, -1, 1, 0};
    for (int r = 0; r < RUNS; r++) {
        double t0 = ssm_now();
        cairo_surface_t *img = ssm_render_matrix(kd, H, L, &sc, 670, 368, NULL);
        t[r] = ssm_now() - t0;
        cairo_surface_destroy(img);
    }
    double m = median(t);
    printf("%-40s %10.4f %8.2f\n", "downsample + colour to 670x368 px", m, m / floor_s);

    const char *fmt_name[2] = {"PNG", "SVG"};
    for (int f = 0; f < 2; f++) {
        for (int r = 0; r < RUNS; r++) {
            double t0 = ssm_now();
            ssm_figure fig;
            ssm_figure_init(&fig, f == 0 ? SSM_FIG_PNG : SSM_FIG_SVG, 800, 450, 1);
            ssm_heatmap hm = {kd, H, L, 0, sc, "K  [256, 16384]", "lag l", "channel", "K", 0};
            ssm_draw_heatmap(&fig, &hm, NULL);
            size_t len;
            ssm_figure_finish(&fig, &len);
            ssm_figure_free(&fig);
            t[r] = ssm_now() - t0;
        }
        char name[64];
        snprintf(name, sizeof name, "heatmap figure, %s encoded", fmt_name[f]);
        m = median(t);
        printf("%-40s %10.4f %8.2f\n", name, m, m / floor_s);
    }

    for (int r = 0; r < RUNS; r++) {   /* what the tool does: read the stream, convert, draw, encode */
        double t0 = ssm_now();
        ssm_reader *rd = ssm_reader_open(path);
        int st;
        ssm_tensor *in = ssm_reader_read_tensor(rd, &st);
        if (!in) { fprintf(stderr, "reading %s failed\n", path); return 1; }
        double *v = ssm_as_f64(in, 0);
        ssm_figure fig;
        ssm_figure_init(&fig, SSM_FIG_PNG, 800, 450, 1);
        ssm_heatmap hm = {v, H, L, 0, sc, "K", "lag l", "channel", "K", 0};
        ssm_draw_heatmap(&fig, &hm, NULL);
        size_t len;
        ssm_figure_finish(&fig, &len);
        ssm_figure_free(&fig);
        free(v);
        ssm_tensor_free(in);
        ssm_reader_close(rd);
        t[r] = ssm_now() - t0;
    }
    m = median(t);
    printf("%-40s %10.4f %8.2f   (target < 1 s)\n", "end to end: stream file -> PNG", m, m / floor_s);
    unlink(path);
    free(kd);
    ssm_tensor_free(k);
    return 0;
}
