/* test_npy.c - the .npy reader/writer library: save/load round trips of every dtype and of odd
 * shapes (scalar, empty, rank 1..4), hand-built files in the other layouts numpy writes (big-endian,
 * Fortran order, format 2.0 and 3.0 headers) against a reference computed here, streamed reads in
 * small pieces, tensor-name <-> file-name encoding, and damage: every truncation and random header
 * bytes give an error, never a crash or a wrong array. */
#include "check.h"
#include "cli.h"
#include "npy.h"

#include <string.h>
#include <unistd.h>

static ssm_tensor *random_tensor(const char *name, int dtype, int rank, const int64_t *dims) {
    ssm_tensor *t = ssm_tensor_new(name, dtype, rank, dims);
    unsigned char *p = t->data;
    size_t nb = ssm_tensor_nbytes(t);
    for (size_t i = 0; i < nb; i++) p[i] = (unsigned char)test_next();
    if (dtype == SSM_BOOL) for (size_t i = 0; i < nb; i++) p[i] &= 1;
    return t;
}

/* A .npy file in memory: the given header dict (padded as numpy does) then the data. */
static unsigned char *build_npy(int major, const char *dict, const void *data, size_t nb, size_t *len) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hlen = total - pre;
    unsigned char *b = malloc(total + nb + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    if (major == 1) { b[8] = (unsigned char)hlen; b[9] = (unsigned char)(hlen >> 8); }
    else for (int i = 0; i < 4; i++) b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memset(b + pre, ' ', hlen);
    memcpy(b + pre, dict, dl);
    b[total - 1] = '\n';
    memcpy(b + total, data, nb);
    *len = total + nb;
    return b;
}

/* Reads a whole array from memory through the streaming API, in pieces of `piece` bytes.
 * Returns a new tensor or NULL (error message in err). */
static ssm_tensor *read_mem(const unsigned char *buf, size_t len, size_t piece, char *err, size_t errlen) {
    FILE *f = fmemopen((void *)buf, len ? len : 1, "rb");
    if (len == 0) { fclose(f); f = fmemopen((void *)"", 1, "rb"); fgetc(f); }
    ssm_npy_reader *r = ssm_npy_open_stream(f, "mem.npy", NULL, 0, err, errlen);
    if (!r) { fclose(f); return NULL; }
    const ssm_tensor *h = ssm_npy_header(r);
    ssm_tensor *t = ssm_tensor_new(h->name, h->dtype, h->rank, h->dims);
    size_t nb = ssm_tensor_nbytes(t), off = 0;
    unsigned char *tmp = malloc(piece);
    for (;;) {
        int64_t k = ssm_npy_read_some(r, tmp, piece);
        if (k < 0) { snprintf(err, errlen, "%s", ssm_npy_error(r)); ssm_tensor_free(t); t = NULL; break; }
        if (k == 0) break;
        if (off + (size_t)k > nb) { snprintf(err, errlen, "more data than the shape"); ssm_tensor_free(t); t = NULL; break; }
        memcpy((char *)t->data + off, tmp, (size_t)k);
        off += (size_t)k;
    }
    if (t && off != nb) { snprintf(err, errlen, "short: %zu of %zu", off, nb); ssm_tensor_free(t); t = NULL; }
    free(tmp);
    ssm_npy_close(r);
    fclose(f);
    return t;
}

static int same_tensor(const ssm_tensor *a, const ssm_tensor *b) {
    if (a->dtype != b->dtype || a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++) if (a->dims[i] != b->dims[i]) return 0;
    return memcmp(a->data, b->data, ssm_tensor_nbytes(a)) == 0;
}

int main(void) {
    test_seed_from_env("test_npy");
    char dir[64] = "/tmp/test_npy.XXXXXX", path[128], err[600];
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }

    /* ---- save/load round trips: every dtype, ranks 0..4, empty ---- */
    static const int dtypes[] = {SSM_F32, SSM_F64, SSM_C64, SSM_C128, SSM_I32, SSM_I64, SSM_U8, SSM_BF16,
                                 SSM_F16, SSM_I8, SSM_I16, SSM_U16, SSM_U32, SSM_U64, SSM_BOOL};
    for (size_t k = 0; k < sizeof dtypes / sizeof dtypes[0]; k++)
        for (int rank = 0; rank <= 4; rank++) {
            int64_t dims[4];
            for (int d = 0; d < rank; d++) dims[d] = 1 + (int64_t)(test_next() % 6);
            if (rank == 2 && k % 3 == 0) dims[0] = 0;
            ssm_tensor *t = random_tensor("x", dtypes[k], rank, dims);
            snprintf(path, sizeof path, "%s/x.npy", dir);
            CHECK(ssm_npy_save(path, t, err, sizeof err) == 0, "save: %s", err);
            ssm_tensor *u = ssm_npy_load(path, err, sizeof err);
            CHECK(u && same_tensor(t, u), "round trip %s rank %d: %s", ssm_dtype_name(dtypes[k]), rank, u ? "data differs" : err);
            CHECK(u && strcmp(u->name, "x") == 0, "name from the file stem");
            ssm_tensor_free(u);
            /* the same through the streaming reader in odd pieces */
            size_t len;
            FILE *f = fopen(path, "rb");
            unsigned char *buf = malloc(1 << 16);
            len = fread(buf, 1, 1 << 16, f);
            fclose(f);
            CHECK(len % 64 == ssm_tensor_nbytes(t) % 64, "header padded to 64 bytes");
            u = read_mem(buf, len, 1 + test_next() % 7 * ssm_dtype_size(dtypes[k]), err, sizeof err);
            CHECK(u && same_tensor(t, u), "streamed read %s: %s", ssm_dtype_name(dtypes[k]), u ? "data differs" : err);
            ssm_tensor_free(u);
            free(buf);
            ssm_tensor_free(t);
        }

    /* ---- big-endian: the reader swaps every component ---- */
    {
        int64_t dims[2] = {3, 5};
        ssm_tensor *t = random_tensor("be", SSM_C128, 2, dims);
        size_t nb = ssm_tensor_nbytes(t), len;
        unsigned char *swapped = malloc(nb);
        for (size_t i = 0; i < nb; i += 8) for (int j = 0; j < 8; j++) swapped[i + j] = ((unsigned char *)t->data)[i + 7 - j];
        unsigned char *file = build_npy(1, "{'descr': '>c16', 'fortran_order': False, 'shape': (3, 5), }", swapped, nb, &len);
        ssm_tensor *u = read_mem(file, len, 24, err, sizeof err);
        CHECK(u && same_tensor(t, u), "big-endian c128: %s", u ? "data differs" : err);
        ssm_tensor_free(u);
        free(file);
        free(swapped);
        ssm_tensor_free(t);
    }

    /* ---- Fortran order (column-major) is transposed to C order ---- */
    {
        int64_t dims[3] = {3, 4, 5};
        ssm_tensor *t = random_tensor("f", SSM_F32, 3, dims);
        float *c = t->data, *fo = malloc(60 * sizeof(float));
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 5; k++) fo[i + 3 * j + 12 * k] = c[(i * 4 + j) * 5 + k];
        size_t len;
        unsigned char *file = build_npy(2, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4, 5), }", fo, 240, &len);
        ssm_tensor *u = read_mem(file, len, 100, err, sizeof err);
        CHECK(u && same_tensor(t, u), "Fortran order (format 2.0): %s", u ? "data differs" : err);
        ssm_tensor_free(u);
        free(file);
        file = build_npy(3, "{\"descr\": \"<f4\", \"fortran_order\": True, \"shape\": (3, 4, 5)}", fo, 240, &len);
        u = read_mem(file, len, 1 << 20, err, sizeof err);
        CHECK(u && same_tensor(t, u), "format 3.0, double quotes, no trailing comma: %s", u ? "data differs" : err);
        ssm_tensor_free(u);

        /* ---- every truncation is an error ---- */
        int accepted = 0;
        for (size_t n = 0; n < len; n++) {
            ssm_tensor *v = read_mem(file, n, 64, err, sizeof err);
            accepted += v != NULL;
            ssm_tensor_free(v);
        }
        CHECK(accepted == 0, "%d truncated files accepted", accepted);
        /* ---- trailing bytes are an error ---- */
        unsigned char *longer = malloc(len + 1);
        memcpy(longer, file, len);
        longer[len] = 0;
        u = read_mem(longer, len + 1, 64, err, sizeof err);
        CHECK(u == NULL && strstr(err, "unexpected data after the array"), "trailing byte: %s", err);
        free(longer);
        free(file);
        free(fo);
        ssm_tensor_free(t);
    }

    /* ---- random header damage: an error, or an array exactly as long as its shape ---- */
    {
        int64_t dims[2] = {4, 6};
        ssm_tensor *t = random_tensor("d", SSM_I16, 2, dims);
        size_t len;
        unsigned char *file = build_npy(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (4, 6), }", t->data, 48, &len);
        int survived = 0;
        for (int trial = 0; trial < 3000; trial++) {
            unsigned char *m = malloc(len);
            memcpy(m, file, len);
            for (int f = 0; f < 1 + (int)(test_next() % 3); f++)
                m[test_next() % (len - 48)] = (test_next() & 1) ? (unsigned char)test_next() : (unsigned char)"0123456789(),:'<>|TrueFalse "[test_next() % 28];
            ssm_tensor *v = read_mem(m, len, 1 + test_next() % 50, err, sizeof err);
            survived += v != NULL;
            ssm_tensor_free(v);
            free(m);
        }
        printf("header damage: %d of 3000 still parsed (each exactly as long as its shape)\n", survived);
        free(file);
        ssm_tensor_free(t);
    }

    /* ---- refusals with their messages ---- */
    {
        size_t len;
        struct { const char *dict, *want; } bad[] = {
            {"{'descr': '<U4', 'fortran_order': False, 'shape': (2,), }", "unsupported dtype '<U4'"},
            {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", "structured dtypes"},
            {"{'descr': '<f4', 'fortran_order': False, }", "lacks"},
            {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", "fortran_order"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", "shape"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", "overflows"},
            {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unexpected key"},
        };
        float data[2] = {1, 2};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            unsigned char *file = build_npy(1, bad[i].dict, data, 8, &len);
            ssm_tensor *u = read_mem(file, len, 64, err, sizeof err);
            CHECK(u == NULL && strstr(err, bad[i].want) && strncmp(err, "mem.npy: ", 9) == 0, "'%s': got '%s'", bad[i].dict, u ? "accepted" : err);
            ssm_tensor_free(u);
            free(file);
        }
        unsigned char *file = build_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data, 8, &len);
        file[6] = 4;
        ssm_tensor *u = read_mem(file, len, 64, err, sizeof err);
        CHECK(u == NULL && strstr(err, "version 4.0"), "version: %s", err);
        free(file);
        snprintf(path, sizeof path, "%s/none.npy", dir);
        CHECK(ssm_npy_load(path, err, sizeof err) == NULL && strstr(err, "No such file"), "missing file: %s", err);
        CHECK(ssm_npy_load(dir, err, sizeof err) == NULL && strstr(err, "directory"), "a directory: %s", err);
    }

    /* ---- names: any tensor name makes one file name and comes back ---- */
    {
        const char *names[] = {"u", "layers.0.mixer.A_log", "a/b/c", "100%", "%2F", "..", "x.npy"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char file[256], back[256], full[300];
            ssm_npy_file_name(names[i], file, sizeof file);
            CHECK(strchr(file, '/') == NULL, "no '/' in %s", file);
            snprintf(full, sizeof full, "some/dir/%s", file);
            ssm_npy_name_from_path(full, back, sizeof back);
            CHECK(strcmp(back, names[i]) == 0, "name '%s' -> '%s' -> '%s'", names[i], file, back);
        }
    }

    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("test_npy");
}
