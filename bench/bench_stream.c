/* bench_stream.c - tensor stream throughput: encode, decode and pass-through of random float32
 * data at each level, against plain deflate level 1 (zlib compress2) measured in the same run.
 * Prints one table row per case: MB/s of raw data, compression ratio, ratio to the baseline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <zlib.h>

#include "cli.h"
#include "stream.h"

static double normal(unsigned long long *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double u = ((*s >> 11) + 0.5) * 0x1p-53;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double v = (*s >> 11) * 0x1p-53;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? (size_t)atoi(argv[1]) : 256;
    int64_t n = (int64_t)(mb << 20) / 4;
    ssm_tensor *t = ssm_tensor_new("u", SSM_F32, 1, &n);
    unsigned long long s = 42;
    for (int64_t i = 0; i < n; i++) ((float *)t->data)[i] = (float)normal(&s);
    size_t raw = ssm_tensor_nbytes(t);
    printf("# tensor stream throughput, %zu MiB of random normal float32, %d threads\n", mb,
           ssm_cli.threads ? ssm_cli.threads : 0);
    printf("%-26s %10s %10s %8s\n", "case", "MB/s", "ratio", "vs-base");

    /* baseline: plain deflate level 1 on one core over 1 MiB blocks */
    double t0 = ssm_now();
    size_t zc = 0;
    unsigned char *zbuf = malloc(compressBound(1 << 20));
    for (size_t off = 0; off < raw; off += 1 << 20) {
        uLongf dl = compressBound(1 << 20);
        compress2(zbuf, &dl, (unsigned char *)t->data + off, 1 << 20, 1);
        zc += dl;
    }
    double base = raw / 1e6 / (ssm_now() - t0);
    printf("%-26s %10.0f %10.3f %8.2f\n", "deflate-1 (baseline)", base, (double)zc / raw, 1.0);

    int levels[] = {0, 1, 4, 7};
    for (int li = 0; li < 4; li++) {
        char name[64];
        /* encode: to /dev/null, so only the format's work is timed (best of 3) */
        double enc = 0;
        for (int rep = 0; rep < 3; rep++) {
            FILE *null = fopen("/dev/null", "wb");
            t0 = ssm_now();
            ssm_writer *w = ssm_writer_open_file(null, "null", levels[li]);
            if (ssm_writer_write(w, t) < 0 || ssm_writer_close(w, NULL, 0) < 0) { fprintf(stderr, "write failed\n"); return 1; }
            fflush(null);
            double r = raw / 1e6 / (ssm_now() - t0);
            if (r > enc) enc = r;
            fclose(null);
        }
        /* the encoded stream, in memory, for the decode and pass-through cases (untimed) */
        char *buf = NULL;
        size_t len;
        FILE *f = open_memstream(&buf, &len);
        ssm_writer *w = ssm_writer_open_file(f, "mem", levels[li]);
        if (ssm_writer_write(w, t) < 0 || ssm_writer_close(w, NULL, 0) < 0) return 1;
        fflush(f);
        snprintf(name, sizeof name, "encode level %d", levels[li]);
        printf("%-26s %10.0f %10.3f %8.2f\n", name, enc, (double)len / raw, enc / base);

        /* decode into a preallocated, touched buffer (best of 3) */
        unsigned char *dst = malloc(raw);
        memset(dst, 1, raw);
        double dec = 0;
        for (int rep = 0; rep < 3; rep++) {
            ssm_reader *r = ssm_reader_open_memory(buf, len, "mem");
            ssm_tensor *h;
            t0 = ssm_now();
            if (ssm_reader_next(r, &h) != 1 || ssm_reader_read_payload(r, dst) < 0) { fprintf(stderr, "decode failed\n"); return 1; }
            double d = raw / 1e6 / (ssm_now() - t0);
            if (d > dec) dec = d;
            ssm_reader_close(r);
        }
        if (memcmp(dst, t->data, raw)) { fprintf(stderr, "decode mismatch\n"); return 1; }
        free(dst);
        snprintf(name, sizeof name, "decode level %d", levels[li]);
        printf("%-26s %10.0f %10.3f %8.2f\n", name, dec, (double)len / raw, dec / base);

        /* pass-through: verify checksums and copy blocks to /dev/null (best of 3) */
        double pt = 0;
        for (int rep = 0; rep < 3; rep++) {
            ssm_reader *r = ssm_reader_open_memory(buf, len, "mem");
            FILE *null = fopen("/dev/null", "wb");
            ssm_writer *ow = ssm_writer_open_file(null, "null", levels[li]);
            ssm_tensor *h;
            t0 = ssm_now();
            ssm_reader_next(r, &h);
            if (ssm_pass_through(r, ow, h) < 0) { fprintf(stderr, "pass-through failed\n"); return 1; }
            ssm_writer_close(ow, NULL, 0);
            fflush(null);
            double p = raw / 1e6 / (ssm_now() - t0);
            if (p > pt) pt = p;
            fclose(null);
            ssm_reader_close(r);
        }
        snprintf(name, sizeof name, "pass-through level %d", levels[li]);
        printf("%-26s %10.0f %10.3f %8.2f\n", name, pt, (double)len / raw, pt / base);
        fclose(f);
        free(buf);
    }
    ssm_tensor_free(t);
    free(zbuf);
    return 0;
}
