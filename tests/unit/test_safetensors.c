/* test_safetensors.c - the safetensors reader/writer library: round trips of every dtype with
 * attributes and metadata (whole and in odd-sized pieces), the file layout checked byte by byte
 * against the format's definition, writer refusals, and damage: every truncation of a file and
 * random byte flips in its header give an error (or a file whose every read stays in bounds),
 * never a crash. */
#include "check.h"
#include "cli.h"
#include "safetensors.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static ssm_tensor *random_tensor(const char *name, int dtype, int rank, const int64_t *dims) {
    ssm_tensor *t = ssm_tensor_new(name, dtype, rank, dims);
    unsigned char *p = t->data;
    size_t nb = ssm_tensor_nbytes(t);
    for (size_t i = 0; i < nb; i++) p[i] = (unsigned char)test_next();
    if (dtype == SSM_BOOL) for (size_t i = 0; i < nb; i++) p[i] &= 1;
    return t;
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len ? *len : 1);
    if (fread(b, 1, *len, f) != *len) { free(b); b = NULL; }
    fclose(f);
    return b;
}

/* Opens path, and if that succeeds reads every tensor whole: returns 1 if it opened. */
static int open_and_read_all(const char *path) {
    char err[700];
    ssm_safetensors *st = ssm_safetensors_open(path, err, sizeof err);
    if (!st) return 0;
    for (int i = 0; i < ssm_safetensors_count(st); i++) {
        ssm_tensor *t = ssm_safetensors_load(st, i);
        CHECK(t != NULL, "a validated tensor reads: %s", ssm_safetensors_error(st));
        ssm_tensor_free(t);
    }
    ssm_safetensors_close(st);
    return 1;
}
/* The same for len bytes of buf, held in a memory file (a memfd is a regular file to fstat). */
static int memfd = -1;
static int open_bytes_and_read_all(const void *buf, size_t len) {
    char err[700];
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, buf, len, 0) != (ssize_t)len) { CHECK(0, "memfd write"); return 0; }
    ssm_safetensors *st = ssm_safetensors_open_fd(memfd, "mem", err, sizeof err);
    if (!st) return 0;
    for (int i = 0; i < ssm_safetensors_count(st); i++) {
        ssm_tensor *t = ssm_safetensors_load(st, i);
        CHECK(t != NULL, "a validated tensor reads: %s", ssm_safetensors_error(st));
        ssm_tensor_free(t);
    }
    ssm_safetensors_close(st);
    return 1;
}

int main(void) {
    test_seed_from_env("test_safetensors");
    snprintf(dir, sizeof dir, "/tmp/test_safetensors.XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char path[128], err[700];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);

    /* ---- round trip of every dtype safetensors has, odd shapes, attributes, metadata ---- */
    static const int dtypes[] = {SSM_F32, SSM_F64, SSM_F16, SSM_BF16, SSM_I8, SSM_I16, SSM_I32, SSM_I64,
                                 SSM_U8, SSM_U16, SSM_U32, SSM_U64, SSM_BOOL, SSM_C64};
    enum { NT = sizeof dtypes / sizeof dtypes[0] };
    ssm_tensor *ts[NT + 2];
    int nt = 0;
    for (int k = 0; k < NT; k++) {
        int64_t dims[3] = {1 + (int64_t)(test_next() % 5), 1 + (int64_t)(test_next() % 7), 1 + (int64_t)(test_next() % 3)};
        char name[64];
        snprintf(name, sizeof name, "layers.%d.w \"q\"\\", k);
        ts[nt] = random_tensor(name, dtypes[k], 1 + k % 3, dims);
        if (k % 2) ssm_tensor_set_attrf(ts[nt], "k", "v%d", k);
        nt++;
    }
    ts[nt++] = random_tensor("scalar", SSM_F64, 0, NULL);
    int64_t zero[2] = {0, 4};
    ts[nt++] = random_tensor("empty", SSM_F32, 2, zero);
    ssm_safetensors_writer *w = ssm_safetensors_writer_open(path, err, sizeof err);
    CHECK(w != NULL, "writer opens: %s", err);
    ssm_safetensors_writer_set_metadata(w, "format", "pt");
    for (int i = 0; i < nt; i++) {
        /* feed in uneven pieces */
        CHECK(ssm_safetensors_writer_begin(w, ts[i]) == 0, "begin %s", ts[i]->name);
        size_t nb = ssm_tensor_nbytes(ts[i]), off = 0;
        while (off < nb) {
            size_t k = 1 + test_next() % 13;
            if (k > nb - off) k = nb - off;
            CHECK(ssm_safetensors_writer_feed(w, (char *)ts[i]->data + off, k) == 0, "feed");
            off += k;
        }
        CHECK(ssm_safetensors_writer_end(w) == 0, "end %s", ts[i]->name);
    }
    CHECK(ssm_safetensors_writer_close(w, err, sizeof err) == 0, "close: %s", err);

    ssm_safetensors *st = ssm_safetensors_open(path, err, sizeof err);
    CHECK(st != NULL, "reader opens: %s", err);
    if (st) {
        CHECK(ssm_safetensors_count(st) == nt, "count %d", ssm_safetensors_count(st));
        CHECK(ssm_safetensors_metadata(st, "format") && strcmp(ssm_safetensors_metadata(st, "format"), "pt") == 0, "metadata");
        for (int i = 0; i < nt; i++) {
            int j = ssm_safetensors_find(st, ts[i]->name);
            CHECK(j == i, "tensor %s found at %d (data order is write order)", ts[i]->name, j);
            if (j < 0) continue;
            const ssm_tensor *h = ssm_safetensors_header(st, j);
            CHECK(h->dtype == ts[i]->dtype && h->rank == ts[i]->rank, "dtype/rank of %s", ts[i]->name);
            for (int d = 0; d < h->rank; d++) CHECK(h->dims[d] == ts[i]->dims[d], "dim");
            const char *kv = ssm_tensor_get_attr(h, "k"), *want = ssm_tensor_get_attr(ts[i], "k");
            CHECK((kv == NULL) == (want == NULL) && (!kv || strcmp(kv, want) == 0), "attribute k of %s", ts[i]->name);
            CHECK(ssm_tensor_get_attr(h, "format") && strcmp(ssm_tensor_get_attr(h, "format"), "pt") == 0, "file metadata as attribute");
            ssm_tensor *t = ssm_safetensors_load(st, j);
            size_t nb = ssm_tensor_nbytes(ts[i]);
            CHECK(t && memcmp(t->data, ts[i]->data, nb) == 0, "payload of %s", ts[i]->name);
            ssm_tensor_free(t);
            /* a piece from the middle */
            if (nb > 3) {
                unsigned char piece[8];
                size_t off = 1 + test_next() % (nb - 2), k = nb - off < 8 ? nb - off : 8;
                CHECK(ssm_safetensors_read(st, j, off, piece, k) == 0 && memcmp(piece, (char *)ts[i]->data + off, k) == 0, "piece");
                CHECK(ssm_safetensors_read(st, j, off, piece, nb) < 0, "a read past the tensor is refused");
            }
        }
        ssm_safetensors_close(st);
    }

    /* ---- the layout, checked against the format's definition ---- */
    size_t len = 0;
    unsigned char *file = slurp(path, &len);
    CHECK(file != NULL && len >= 8, "file");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | file[i];
    CHECK(hlen % 8 == 0 && 8 + hlen <= len, "header length %llu is 8-aligned and fits", (unsigned long long)hlen);
    CHECK(file[8] == '{', "header is a JSON object");
    size_t data_bytes = 0;
    for (int i = 0; i < nt; i++) data_bytes += ssm_tensor_nbytes(ts[i]);
    CHECK(len == 8 + hlen + data_bytes, "data area holds exactly the payloads (%zu vs %zu)", len, (size_t)(8 + hlen + data_bytes));
    CHECK(memcmp(file + 8 + hlen, ts[0]->data, ssm_tensor_nbytes(ts[0])) == 0, "first payload right after the header");

    /* ---- every truncation is an error, never a crash (files in memory: memfd) ---- */
    char cut[160];
    memfd = memfd_create("st", 0);
    CHECK(memfd >= 0, "memfd_create");
    int opened = 0;
    for (size_t n = 0; n < len; n += (n < 8 + hlen + 64 ? 1 : 1 + test_next() % 97)) {
        opened += open_bytes_and_read_all(file, n);
    }
    CHECK(opened == 0, "%d truncated files opened", opened);

    /* ---- byte flips in the header: an error, or a file whose reads stay in bounds ---- */
    int survived = 0;
    for (int trial = 0; trial < 3000; trial++) {
        unsigned char *m = malloc(len);
        memcpy(m, file, len);
        int flips = 1 + (int)(test_next() % 3);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)(test_next() % (8 + hlen));
            m[at] = (test_next() & 1) ? (unsigned char)test_next() : (unsigned char)"0123456789{}[],:\"\\ "[test_next() % 19];
        }
        survived += open_bytes_and_read_all(m, len);
        free(m);
    }
    printf("byte flips: %d of 3000 damaged headers still parsed (all reads in bounds)\n", survived);
    free(file);

    /* ---- writer refusals ---- */
    w = ssm_safetensors_writer_open(path, err, sizeof err);
    ssm_tensor *c = random_tensor("c", SSM_C128, 1, (int64_t[]){2});
    CHECK(ssm_safetensors_writer_write(w, c) < 0, "c128 refused");
    CHECK(strstr(ssm_safetensors_writer_error(w), "c128") != NULL, "message names the dtype: %s", ssm_safetensors_writer_error(w));
    ssm_safetensors_writer_abort(w);
    w = ssm_safetensors_writer_open(path, err, sizeof err);
    CHECK(ssm_safetensors_writer_write(w, ts[0]) == 0, "first");
    CHECK(ssm_safetensors_writer_write(w, ts[0]) < 0, "duplicate refused");
    CHECK(ssm_safetensors_writer_close(w, err, sizeof err) < 0, "close after an error fails");
    CHECK(open_and_read_all(path), "the earlier file is still there, untouched");
    ssm_tensor_set_name(c, "__metadata__");
    c->dtype = SSM_F64;
    w = ssm_safetensors_writer_open(path, err, sizeof err);
    CHECK(ssm_safetensors_writer_write(w, c) < 0, "the name __metadata__ refused");
    ssm_safetensors_writer_abort(w);
    snprintf(cut, sizeof cut, "%s/no/such/dir/x.safetensors", dir);
    CHECK(ssm_safetensors_writer_open(cut, err, sizeof err) == NULL, "unwritable place refused early");
    CHECK(ssm_safetensors_open(dir, err, sizeof err) == NULL, "a directory is refused");
    ssm_tensor_free(c);

    for (int i = 0; i < nt; i++) ssm_tensor_free(ts[i]);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("test_safetensors");
}
