/* npy.c - NumPy .npy reading and writing (see npy.h for the format and the dtype mapping). */
#include "npy.h"
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAX_HEADER (1u << 20)   /* numpy itself refuses headers over 10000 bytes by default */

struct ssm_npy_reader {
    FILE *f;
    int own_file;
    char *label;
    unsigned char head[16];     /* bytes consumed before we got the FILE */
    size_t head_len, head_pos;
    ssm_tensor hdr;
    int fortran, swap;
    size_t width;               /* component size: the unit of byte swapping */
    uint64_t total, done;
    unsigned char *transposed;  /* Fortran order: the whole payload in C order */
    int ended, failed;
    char err[512];
};

static int fail(ssm_npy_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ssm_npy_reader *r, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->err, sizeof r->err, "%s: %s", r->label, msg);
    r->failed = 1;
    return -1;
}

static size_t raw_read(ssm_npy_reader *r, void *buf, size_t n) {
    size_t k = 0;
    unsigned char *p = buf;
    while (k < n && r->head_pos < r->head_len) p[k++] = r->head[r->head_pos++];
    if (k < n) k += fread(p + k, 1, n - k, r->f);
    return k;
}

/* ---- the dict-literal header ---------------------------------------------------------------- */
typedef struct {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c) { while (c->p < c->end && isspace((unsigned char)*c->p)) c->p++; }
static int take(cursor *c, char ch) {
    skip_space(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return 1; }
    return 0;
}
/* A quoted Python string (no escapes are needed by any valid header). */
static int parse_str(cursor *c, char *out, size_t n) {
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || k + 1 >= n) return 0;
        out[k++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    out[k] = 0;
    return 1;
}

static int parse_descr(ssm_npy_reader *r, const char *d) {
    char order = d[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return fail(r, "unsupported dtype '%s' (expected e.g. '<f4')", d);
    static const struct { const char *code; int dtype; } map[] = {
        {"f2", SSM_F16}, {"f4", SSM_F32}, {"f8", SSM_F64}, {"c8", SSM_C64}, {"c16", SSM_C128},
        {"i1", SSM_I8}, {"i2", SSM_I16}, {"i4", SSM_I32}, {"i8", SSM_I64}, {"u1", SSM_U8},
        {"u2", SSM_U16}, {"u4", SSM_U32}, {"u8", SSM_U64}, {"b1", SSM_BOOL}, {"V2", SSM_BF16},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(d + 1, map[i].code) == 0) {
            r->hdr.dtype = map[i].dtype;
            r->width = ssm_dtype_component_size(map[i].dtype);
            r->swap = order == '>' && r->width > 1 && map[i].dtype != SSM_BF16;
            return 0;
        }
    return fail(r, "unsupported dtype '%s' (ssm tensors hold f16/f32/f64, c64/c128, "
                   "i8..i64, u8..u64 and bool)", d);
}

static int parse_header(ssm_npy_reader *r, const char *text, size_t len) {
    cursor c = {text, text + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!take(&c, '{')) return fail(r, "malformed header (expected a dict)");
    while (!take(&c, '}')) {
        char key[64], sval[64];
        if (!parse_str(&c, key, sizeof key) || !take(&c, ':')) return fail(r, "malformed header dict");
        if (strcmp(key, "descr") == 0) {
            skip_space(&c);
            if (c.p < c.end && *c.p == '[') return fail(r, "structured dtypes are not supported");
            if (!parse_str(&c, sval, sizeof sval)) return fail(r, "malformed 'descr' in the header");
            if (parse_descr(r, sval) < 0) return -1;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            skip_space(&c);
            if ((size_t)(c.end - c.p) >= 4 && memcmp(c.p, "True", 4) == 0) { r->fortran = 1; c.p += 4; }
            else if ((size_t)(c.end - c.p) >= 5 && memcmp(c.p, "False", 5) == 0) { r->fortran = 0; c.p += 5; }
            else return fail(r, "malformed 'fortran_order' in the header");
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (!take(&c, '(')) return fail(r, "malformed 'shape' in the header");
            r->hdr.rank = 0;
            while (!take(&c, ')')) {
                skip_space(&c);
                char *e;
                errno = 0;
                long long v = c.p < c.end && isdigit((unsigned char)*c.p) ? strtoll(c.p, &e, 10) : -1;
                if (v < 0 || errno || e > c.end) return fail(r, "malformed 'shape' in the header");
                c.p = e;
                if (c.p < c.end && *c.p == 'L') c.p++;   /* Python 2 long */
                if (r->hdr.rank == SSM_MAX_RANK) return fail(r, "more than %d dims", SSM_MAX_RANK);
                r->hdr.dims[r->hdr.rank++] = v;
                if (!take(&c, ',')) {
                    if (!take(&c, ')')) return fail(r, "malformed 'shape' in the header");
                    break;
                }
            }
            have_shape = 1;
        } else {
            return fail(r, "unexpected key '%s' in the header", key);
        }
        if (!take(&c, ',')) {
            if (!take(&c, '}')) return fail(r, "malformed header dict");
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape) return fail(r, "header lacks descr, fortran_order or shape");
    int64_t n = ssm_tensor_numel(&r->hdr);
    if (n < 0 || (uint64_t)n > ((uint64_t)1 << 60) / ssm_dtype_size(r->hdr.dtype)) return fail(r, "shape overflows");
    r->total = (uint64_t)n * ssm_dtype_size(r->hdr.dtype);
    return 0;
}

void ssm_npy_name_from_path(const char *path, char *buf, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".npy") == 0) len -= 4;
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < n; i++) {
        if (base[i] == '%' && i + 2 < len && isxdigit((unsigned char)base[i + 1]) && isxdigit((unsigned char)base[i + 2])) {
            char hex[3] = {base[i + 1], base[i + 2], 0};
            buf[k++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            buf[k++] = base[i];
        }
    }
    buf[k] = 0;
}

void ssm_npy_file_name(const char *name, char *buf, size_t n) {
    size_t k = 0;
    for (const char *p = name; *p && k + 4 < n; p++) {
        if (*p == '/' || *p == '%') k += (size_t)snprintf(buf + k, n - k, "%%%02X", (unsigned char)*p);
        else buf[k++] = *p;
    }
    snprintf(buf + k, n - k, ".npy");
}

static void swap_bytes(unsigned char *p, size_t n, size_t w) {
    for (size_t i = 0; i + w <= n; i += w)
        for (size_t a = 0, b = w - 1; a < b; a++, b--) {
            unsigned char t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
}

/* Reads the whole payload of a Fortran-ordered array and rearranges it in C order. */
static int load_transposed(ssm_npy_reader *r) {
    size_t es = ssm_dtype_size(r->hdr.dtype), got = 0;
    size_t cap = r->total < (64u << 20) ? (size_t)r->total : (64u << 20);
    unsigned char *f = malloc(cap ? cap : 1);
    if (!f) return fail(r, "out of memory");
    while (got < r->total) {   /* grow with the data that arrives: never trust the header */
        if (got == cap) {
            size_t nc = cap * 2 < r->total ? cap * 2 : (size_t)r->total;
            unsigned char *q = realloc(f, nc);
            if (!q) { free(f); return fail(r, "out of memory"); }
            f = q;
            cap = nc;
        }
        size_t k = raw_read(r, f + got, cap - got);
        if (k == 0) { free(f); return fail(r, "truncated payload (ends %llu bytes early)", (unsigned long long)(r->total - got)); }
        got += k;
    }
    unsigned char extra;
    if (raw_read(r, &extra, 1) == 1) { free(f); return fail(r, "unexpected data after the array"); }
    unsigned char *c = malloc(r->total ? (size_t)r->total : 1);
    if (!c) { free(f); return fail(r, "out of memory"); }
    /* C index (i0..ik) walks row-major; its Fortran offset is sum i_j * prod_{l<j} d_l. */
    int rank = r->hdr.rank;
    int64_t idx[SSM_MAX_RANK] = {0}, stride[SSM_MAX_RANK];
    int64_t s = 1;
    for (int j = 0; j < rank; j++) { stride[j] = s; s *= r->hdr.dims[j]; }
    int64_t n = ssm_tensor_numel(&r->hdr), off = 0;
    for (int64_t i = 0; i < n; i++) {
        memcpy(c + (size_t)i * es, f + (size_t)off * es, es);
        for (int j = rank - 1; j >= 0; j--) {
            idx[j]++;
            off += stride[j];
            if (idx[j] < r->hdr.dims[j]) break;
            off -= stride[j] * idx[j];
            idx[j] = 0;
        }
    }
    free(f);
    r->transposed = c;
    return 0;
}

ssm_npy_reader *ssm_npy_open_stream(FILE *f, const char *label, const void *head, size_t head_len,
                                    char *err, size_t errlen) {
    ssm_npy_reader *r = ssm_xcalloc(1, sizeof *r);
    r->f = f;
    r->label = ssm_xstrdup(label);
    if (head_len > sizeof r->head) head_len = sizeof r->head;
    if (head_len) memcpy(r->head, head, head_len);
    r->head_len = head_len;
    unsigned char pre[10];
    size_t got = raw_read(r, pre, 8);
    char *text = NULL;
    if (got < 8 || memcmp(pre, NPY_MAGIC, 6) != 0) { fail(r, "not a .npy file (bad magic)"); goto bad; }
    unsigned major = pre[6], minor = pre[7];
    size_t hlen;
    if (major == 1) {
        if (raw_read(r, pre, 2) != 2) { fail(r, "truncated header"); goto bad; }
        hlen = (size_t)pre[0] | (size_t)pre[1] << 8;
    } else if (major == 2 || major == 3) {
        if (raw_read(r, pre, 4) != 4) { fail(r, "truncated header"); goto bad; }
        hlen = (size_t)pre[0] | (size_t)pre[1] << 8 | (size_t)pre[2] << 16 | (size_t)pre[3] << 24;
    } else {
        fail(r, "unsupported .npy format version %u.%u", major, minor);
        goto bad;
    }
    if (hlen > NPY_MAX_HEADER) { fail(r, "header too long (%zu bytes)", hlen); goto bad; }
    text = ssm_xmalloc(hlen + 1);
    if (raw_read(r, text, hlen) != hlen) { fail(r, "truncated header"); goto bad; }
    text[hlen] = 0;
    if (parse_header(r, text, hlen) < 0) goto bad;
    free(text);
    text = NULL;
    char name[SSM_MAX_NAME];
    if (strcmp(label, "stdin") == 0) snprintf(name, sizeof name, "array");
    else ssm_npy_name_from_path(label, name, sizeof name);
    if (!name[0]) snprintf(name, sizeof name, "array");
    r->hdr.name = ssm_xstrdup(name);
    if (r->fortran && r->hdr.rank >= 2 && load_transposed(r) < 0) goto bad;
    return r;
bad:
    free(text);
    snprintf(err, errlen, "%s", r->err);
    r->f = NULL;
    ssm_npy_close(r);
    return NULL;
}

ssm_npy_reader *ssm_npy_open(const char *path, char *err, size_t errlen) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        snprintf(err, errlen, "%s: %s", path, strerror(EISDIR));
        return NULL;
    }
    ssm_npy_reader *r = ssm_npy_open_stream(f, is_stdin ? "stdin" : path, NULL, 0, err, errlen);
    if (!r) { if (!is_stdin) fclose(f); return NULL; }
    r->own_file = !is_stdin;
    return r;
}

ssm_tensor *ssm_npy_header(ssm_npy_reader *r) { return &r->hdr; }
int ssm_npy_fortran_order(const ssm_npy_reader *r) { return r->fortran; }
const char *ssm_npy_error(const ssm_npy_reader *r) { return r->err[0] ? r->err : "no error"; }

int64_t ssm_npy_read_some(ssm_npy_reader *r, void *buf, size_t max) {
    if (r->failed) return -1;
    uint64_t left = r->total - r->done;
    if (left == 0) {
        if (!r->ended && !r->transposed) {   /* a .npy holds one array: nothing may follow it */
            unsigned char extra;
            if (raw_read(r, &extra, 1) == 1) return fail(r, "unexpected data after the array");
            if (ferror(r->f)) return fail(r, "read error: %s", strerror(errno));
        }
        r->ended = 1;
        return 0;
    }
    size_t k = max < left ? max : (size_t)left;
    if (r->transposed) {
        memcpy(buf, r->transposed + r->done, k);
    } else {
        /* keep whole components together so byte swapping never splits one */
        if (r->swap) {
            if (k < r->width) return fail(r, "internal error: read of %zu bytes splits an element", k);
            k -= (size_t)((r->done + k) % r->width);
        }
        size_t got = raw_read(r, buf, k);
        if (got < k) {
            if (ferror(r->f)) return fail(r, "read error: %s", strerror(errno));
            return fail(r, "truncated payload (ends %llu bytes early)", (unsigned long long)(left - got));
        }
    }
    if (r->swap) swap_bytes(buf, k, r->width);
    r->done += k;
    return (int64_t)k;
}

void ssm_npy_close(ssm_npy_reader *r) {
    if (!r) return;
    if (r->own_file && r->f) fclose(r->f);
    for (int i = 0; i < r->hdr.nattrs; i++) { free(r->hdr.attrs[i].key); free(r->hdr.attrs[i].value); }
    free(r->hdr.attrs);
    free(r->hdr.name);
    free(r->transposed);
    free(r->label);
    free(r);
}

ssm_tensor *ssm_npy_load(const char *path, char *err, size_t errlen) {
    ssm_npy_reader *r = ssm_npy_open(path, err, errlen);
    if (!r) return NULL;
    ssm_tensor *t = ssm_tensor_new(r->hdr.name, r->hdr.dtype, r->hdr.rank, r->hdr.dims);
    unsigned char *p = t->data;
    uint64_t off = 0;
    for (;;) {
        int64_t k = ssm_npy_read_some(r, p + off, (size_t)(r->total - off));
        if (k < 0) { snprintf(err, errlen, "%s", r->err); ssm_tensor_free(t); ssm_npy_close(r); return NULL; }
        if (k == 0) break;
        off += (uint64_t)k;
    }
    ssm_npy_close(r);
    return t;
}

/* ---- writing -------------------------------------------------------------------------------- */
const char *ssm_npy_descr(int dtype) {
    switch (dtype) {
    case SSM_F16: return "<f2";
    case SSM_F32: return "<f4";
    case SSM_F64: return "<f8";
    case SSM_C64: return "<c8";
    case SSM_C128: return "<c16";
    case SSM_I8: return "|i1";
    case SSM_I16: return "<i2";
    case SSM_I32: return "<i4";
    case SSM_I64: return "<i8";
    case SSM_U8: return "|u1";
    case SSM_U16: return "<u2";
    case SSM_U32: return "<u4";
    case SSM_U64: return "<u8";
    case SSM_BOOL: return "|b1";
    case SSM_BF16: return "|V2";
    }
    return NULL;
}

int ssm_npy_write_header(FILE *f, const ssm_tensor *t, char *err, size_t errlen) {
    const char *descr = ssm_npy_descr(t->dtype);
    if (!descr) { snprintf(err, errlen, "tensor '%s': dtype has no .npy equivalent", t->name); return -1; }
    size_t cap = 128 + 24 * (size_t)t->rank, k = 0;
    char *dict = ssm_xmalloc(cap + 64);
    k += (size_t)snprintf(dict + k, cap - k, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->rank; i++) k += (size_t)snprintf(dict + k, cap - k, "%lld,%s", (long long)t->dims[i], i + 1 < t->rank ? " " : "");
    if (t->rank > 1) k--;   /* numpy writes (5,) for rank 1 and (2, 3) otherwise */
    k += (size_t)snprintf(dict + k, cap - k, "), }");
    /* pad with spaces to a multiple of 64 bytes including the preamble, ending in '\n' */
    size_t pre = 10;
    size_t total = (pre + k + 1 + 63) / 64 * 64;
    if (total - pre > 65535) { pre = 12; total = (pre + k + 1 + 63) / 64 * 64; }
    while (pre + k + 1 < total) dict[k++] = ' ';
    dict[k++] = '\n';
    unsigned char p[12];
    memcpy(p, NPY_MAGIC, 6);
    size_t hlen = k;
    if (pre == 10) { p[6] = 1; p[7] = 0; p[8] = (unsigned char)hlen; p[9] = (unsigned char)(hlen >> 8); }
    else { p[6] = 2; p[7] = 0; for (int i = 0; i < 4; i++) p[8 + i] = (unsigned char)(hlen >> (8 * i)); }
    int ok = fwrite(p, 1, pre, f) == pre && fwrite(dict, 1, hlen, f) == hlen;
    free(dict);
    if (!ok) { snprintf(err, errlen, "write error: %s", strerror(errno)); return -1; }
    return 0;
}

int ssm_npy_save(const char *path, const ssm_tensor *t, char *err, size_t errlen) {
    size_t n = strlen(path) + 16;
    char *tmp = ssm_xmalloc(n);
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) { snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)); free(tmp); return -1; }
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    FILE *f = fdopen(fd, "wb");
    char e2[300] = "";
    int rc = f ? ssm_npy_write_header(f, t, e2, sizeof e2) : -1;
    size_t nb = ssm_tensor_nbytes(t);
    if (rc == 0 && nb && fwrite(t->data, 1, nb, f) != nb) { rc = -1; snprintf(e2, sizeof e2, "write error: %s", strerror(errno)); }
    if (f && fclose(f) != 0 && rc == 0) { rc = -1; snprintf(e2, sizeof e2, "write error: %s", strerror(errno)); }
    if (!f) close(fd);
    if (rc == 0 && rename(tmp, path) != 0) { rc = -1; snprintf(e2, sizeof e2, "cannot rename into place: %s", strerror(errno)); }
    if (rc != 0) { unlink(tmp); snprintf(err, errlen, "%s: %s", path, e2); }
    free(tmp);
    return rc;
}
