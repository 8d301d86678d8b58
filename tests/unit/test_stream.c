/* test_stream.c - the tensor stream format: round trips for every dtype and level, concatenation,
 * streaming reads, pass-through, and every kind of damage (truncation at every byte, flipped
 * bytes, lying headers) giving an error rather than data. */
#include "check.h"
#include "cli.h"
#include "stream.h"

#include <string.h>

/* Writes tensors to a memory buffer through a FILE (open_memstream). */
static unsigned char *write_stream(ssm_tensor **ts, int n, int level, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    ssm_writer *w = ssm_writer_open_file(f, "mem", level);
    for (int i = 0; i < n; i++) CHECK(ssm_writer_write(w, ts[i]) == 0, "write %s", ts[i]->name);
    CHECK(ssm_writer_close(w, NULL, 0) == 0, "close");
    fclose(f);
    return (unsigned char *)buf;
}

static ssm_tensor *random_tensor(const char *name, int dtype, int rank, const int64_t *dims) {
    ssm_tensor *t = ssm_tensor_new(name, dtype, rank, dims);
    unsigned char *p = t->data;
    size_t nb = ssm_tensor_nbytes(t);
    /* floats: normal values (compressible exponents); integers/bytes: random bytes */
    if (dtype == SSM_F32 || dtype == SSM_C64) for (size_t i = 0; i < nb / 4; i++) ((float *)p)[i] = (float)test_normal();
    else if (dtype == SSM_F64 || dtype == SSM_C128) for (size_t i = 0; i < nb / 8; i++) ((double *)p)[i] = test_normal();
    else for (size_t i = 0; i < nb; i++) p[i] = (unsigned char)test_next();
    if (dtype == SSM_BOOL) for (size_t i = 0; i < nb; i++) p[i] &= 1;
    return t;
}

static int same_tensor(const ssm_tensor *a, const ssm_tensor *b) {
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++) if (a->dims[i] != b->dims[i]) return 0;
    if (a->nattrs != b->nattrs) return 0;
    for (int i = 0; i < a->nattrs; i++) {
        const char *v = ssm_tensor_get_attr(b, a->attrs[i].key);
        if (!v || strcmp(v, a->attrs[i].value)) return 0;
    }
    return memcmp(a->data, b->data, ssm_tensor_nbytes(a)) == 0;
}

/* Reads every tensor of a buffer; returns the count, -1 on error (message in err). */
static int read_all(const unsigned char *buf, size_t len, ssm_tensor **out, int max, char *err) {
    ssm_reader *r = ssm_reader_open_memory(buf, len, "mem");
    int n = 0, st;
    ssm_tensor *t;
    while ((t = ssm_reader_read_tensor(r, &st))) {
        if (n < max) out[n++] = t; else ssm_tensor_free(t);
    }
    if (st < 0) { snprintf(err, 512, "%s", ssm_reader_error(r)); for (int i = 0; i < n; i++) ssm_tensor_free(out[i]); n = -1; }
    ssm_reader_close(r);
    return n;
}

static void test_round_trips(void) {
    int dtypes[] = {SSM_F32, SSM_F64, SSM_C64, SSM_C128, SSM_I32, SSM_I64, SSM_U8, SSM_BF16, SSM_F16,
                    SSM_I8, SSM_I16, SSM_U16, SSM_U32, SSM_U64, SSM_BOOL};
    int levels[] = {0, 1, 5, 9};
    int64_t shapes[][3] = {{3, 5, 7}, {1, 1, 1}, {0, 4, 2}, {2, 300000, 1}};
    for (size_t d = 0; d < sizeof dtypes / sizeof *dtypes; d++)
        for (size_t l = 0; l < 4; l++)
            for (int s = 0; s < 4; s++) {
                if (s == 3 && l > 1) continue;  /* the multi-block size once per dtype at fast levels */
                ssm_tensor *t = random_tensor("x.y", dtypes[d], 3, shapes[s]);
                ssm_tensor_set_attr(t, "init", "legs");
                ssm_tensor_set_attr(t, "dt", "0.01");
                size_t len;
                unsigned char *buf = write_stream(&t, 1, levels[l], &len);
                ssm_tensor *back[2];
                char err[512];
                int n = read_all(buf, len, back, 2, err);
                CHECK(n == 1, "dtype %s level %d shape %d: read %d (%s)", ssm_dtype_name(dtypes[d]), levels[l], s, n, n < 0 ? err : "");
                if (n == 1) {
                    CHECK(same_tensor(t, back[0]), "round trip %s level %d", ssm_dtype_name(dtypes[d]), levels[l]);
                    ssm_tensor_free(back[0]);
                }
                free(buf);
                ssm_tensor_free(t);
            }
    /* a scalar (rank 0) */
    ssm_tensor *s = random_tensor("scalar", SSM_F64, 0, NULL);
    size_t len;
    unsigned char *buf = write_stream(&s, 1, 1, &len);
    ssm_tensor *back[1];
    char err[512];
    CHECK(read_all(buf, len, back, 1, err) == 1 && same_tensor(s, back[0]), "scalar round trip");
    ssm_tensor_free(back[0]);
    free(buf);
    ssm_tensor_free(s);
}

static void test_concatenation_and_empty(void) {
    int64_t d1[] = {4, 9}, d2[] = {1000};
    ssm_tensor *a = random_tensor("a", SSM_F32, 2, d1), *b = random_tensor("b", SSM_I64, 1, d2);
    size_t la, lb;
    unsigned char *ba = write_stream(&a, 1, 1, &la), *bb = write_stream(&b, 1, 0, &lb);
    unsigned char *cat = malloc(la + lb);
    memcpy(cat, ba, la);
    memcpy(cat + la, bb, lb);
    ssm_tensor *back[3];
    char err[512];
    int n = read_all(cat, la + lb, back, 3, err);
    CHECK(n == 2, "concatenated streams read as one: %d", n);
    if (n == 2) {
        CHECK(same_tensor(a, back[0]) && same_tensor(b, back[1]), "concatenated contents");
        ssm_tensor_free(back[0]);
        ssm_tensor_free(back[1]);
    }
    CHECK(read_all(cat, 0, back, 3, err) == 0, "empty input is an empty stream");
    free(ba); free(bb); free(cat);
    ssm_tensor_free(a); ssm_tensor_free(b);
}

/* Every prefix of a valid stream that is not a whole number of frames must be an error. */
static void test_truncation_everywhere(void) {
    int64_t d1[] = {3, 300}, d2[] = {5};
    ssm_tensor *ts[2] = {random_tensor("first", SSM_F32, 2, d1), random_tensor("second", SSM_I32, 1, d2)};
    ssm_tensor_set_attr(ts[0], "k", "v");
    size_t len, len1;
    unsigned char *one = write_stream(ts, 1, 1, &len1);
    unsigned char *buf = write_stream(ts, 2, 1, &len);
    int wrong = 0;
    for (size_t cut = 0; cut < len; cut++) {
        ssm_tensor *back[3];
        char err[512];
        int n = read_all(buf, cut, back, 3, err);
        int expect = cut == 0 ? 0 : cut == len1 ? 1 : -1;
        if (n != expect) { wrong++; if (wrong < 5) fprintf(stderr, "cut %zu: read %d, expected %d\n", cut, n, expect); }
        for (int i = 0; i < n; i++) ssm_tensor_free(back[i]);
    }
    CHECK(wrong == 0, "%d truncation points misread", wrong);
    free(one);
    free(buf);
    ssm_tensor_free(ts[0]); ssm_tensor_free(ts[1]);
}

/* Flipping any single byte must give an error (or, for a flip inside a name/attr byte that keeps
 * the header checksum... impossible: the header is checksummed too). */
static void test_flipped_bytes(void) {
    int64_t d[] = {2, 500};
    ssm_tensor *t = random_tensor("w", SSM_F32, 2, d);
    for (int level = 0; level <= 1; level++) {
        size_t len;
        unsigned char *buf = write_stream(&t, 1, level, &len);
        int undetected = 0;
        for (size_t i = 0; i < len; i++) {
            buf[i] ^= 0x5a;
            ssm_tensor *back[2];
            char err[512];
            int n = read_all(buf, len, back, 2, err);
            if (n >= 0) { undetected++; for (int k = 0; k < n; k++) ssm_tensor_free(back[k]); }
            buf[i] ^= 0x5a;
        }
        CHECK(undetected == 0, "level %d: %d of %zu byte flips went undetected", level, undetected, len);
        free(buf);
    }
    ssm_tensor_free(t);
}

/* Error messages name the file, the tensor and the problem. */
static void test_messages(void) {
    char err[512];
    ssm_tensor *back[1];
    const char junk[] = "hello world, not a stream";
    CHECK(read_all((const unsigned char *)junk, sizeof junk, back, 1, err) < 0 && strstr(err, "not a tensor stream"), "junk: %s", err);
    int64_t d[] = {100};
    ssm_tensor *t = random_tensor("weights", SSM_F32, 1, d);
    size_t len;
    unsigned char *buf = write_stream(&t, 1, 0, &len);
    CHECK(read_all(buf, len - 20, back, 1, err) < 0 && strstr(err, "weights") && strstr(err, "truncated"), "truncated: %s", err);
    buf[4] = 9;  /* version */
    CHECK(read_all(buf, len, back, 1, err) < 0 && strstr(err, "version"), "version: %s", err);
    buf[4] = 1;
    buf[6] = 99; /* dtype */
    CHECK(read_all(buf, len, back, 1, err) < 0 && strstr(err, "dtype"), "dtype: %s", err);
    free(buf);
    ssm_tensor_free(t);
}

/* Streaming reads in odd piece sizes give the same bytes; pass-through copies blocks verbatim. */
static void test_streaming_and_pass_through(void) {
    int64_t d[] = {3, 700001};
    ssm_tensor *t = random_tensor("big", SSM_F32, 2, d);
    size_t len;
    unsigned char *buf = write_stream(&t, 1, 1, &len);
    ssm_reader *r = ssm_reader_open_memory(buf, len, "mem");
    ssm_tensor *h;
    CHECK(ssm_reader_next(r, &h) == 1, "header");
    size_t nb = ssm_tensor_nbytes(t), got = 0;
    unsigned char *out = malloc(nb), piece[77777];
    int64_t k;
    while ((k = ssm_reader_read_some(r, piece, sizeof piece)) > 0) { memcpy(out + got, piece, (size_t)k); got += (size_t)k; }
    CHECK(k == 0 && got == nb && memcmp(out, t->data, nb) == 0, "streamed read");
    CHECK(ssm_reader_next(r, &h) == 0, "end after streamed read");
    ssm_reader_close(r);

    /* pass-through with a rename: bytes of the payload unchanged */
    r = ssm_reader_open_memory(buf, len, "mem");
    CHECK(ssm_reader_next(r, &h) == 1, "header 2");
    char *obuf = NULL;
    size_t olen;
    FILE *f = open_memstream(&obuf, &olen);
    ssm_writer *w = ssm_writer_open_file(f, "mem", 1);
    ssm_tensor *nh = ssm_tensor_new_header(h);
    ssm_tensor_set_name(nh, "renamed");
    CHECK(ssm_pass_through(r, w, nh) == 0, "pass through");
    CHECK(ssm_writer_close(w, NULL, 0) == 0, "close");
    fclose(f);
    ssm_reader_close(r);
    ssm_tensor *back[1];
    char err[512];
    CHECK(read_all((unsigned char *)obuf, olen, back, 1, err) == 1, "read passed-through");
    CHECK(strcmp(back[0]->name, "renamed") == 0 && memcmp(back[0]->data, t->data, nb) == 0, "pass-through contents");
    ssm_tensor_free(back[0]);
    ssm_tensor_free(nh);
    free(obuf);
    free(out);
    free(buf);
    ssm_tensor_free(t);
}

/* A header claiming a huge payload is refused when the blocks do not arrive, without allocating. */
static void test_lying_header(void) {
    int64_t d[] = {10};
    ssm_tensor *t = random_tensor("liar", SSM_F32, 1, d);
    t->dims[0] = (int64_t)1 << 40;  /* claims 4 TiB */
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    ssm_writer *w = ssm_writer_open_file(f, "mem", 0);
    CHECK(ssm_writer_begin(w, t) == 0, "begin");
    ssm_writer_abort(w, "test abort");   /* leaves header + abort frame */
    fclose(f);
    ssm_tensor *back[1];
    char err[512];
    int n = read_all((unsigned char *)buf, len, back, 1, err);
    CHECK(n < 0 && strstr(err, "failed") && strstr(err, "test abort"), "abort frame reported: %s", err);
    free(buf);
    t->dims[0] = 10;
    ssm_tensor_free(t);
}

static void test_convert_and_glob(void) {
    CHECK(ssm_glob_match("layers.2.*", "layers.2.ssm.log_dt"), "glob *");
    CHECK(!ssm_glob_match("layers.2.*", "layers.12.ssm"), "glob * no");
    CHECK(ssm_glob_match("a?c", "abc") && !ssm_glob_match("a?c", "ac"), "glob ?");
    CHECK(ssm_glob_match("x[0-9]", "x7") && !ssm_glob_match("x[!0-9]", "x7"), "glob []");
    for (int i = 0; i < 1000; i++) {
        float f = (float)(test_normal() * 100);
        CHECK(fabsf(ssm_bf16_to_f32(ssm_f32_to_bf16(f)) - f) <= fabsf(f) * 0x1p-8f, "bf16 %g", f);
        CHECK(fabsf(ssm_f16_to_f32(ssm_f32_to_f16(f)) - f) <= fabsf(f) * 0x1p-11f + 0x1p-24f, "f16 %g", f);
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ssm_f16_to_f32((uint16_t)h);
        if (f == f) CHECK(ssm_f32_to_f16(f) == h || (f == 0 && (ssm_f32_to_f16(f) & 0x7fff) == 0), "f16 exact %04x", h);
    }
}

int main(void) {
    test_seed_from_env("test_stream");
    test_round_trips();
    test_concatenation_and_empty();
    test_truncation_everywhere();
    test_flipped_bytes();
    test_messages();
    test_streaming_and_pass_through();
    test_lying_header();
    test_convert_and_glob();
    return check_summary("test_stream");
}
