/* safetensors.c - reading and writing .safetensors files (see safetensors.h).
 *
 * The header is parsed by the toolkit's strict JSON parser (json.h); members of a tensor entry
 * other than dtype, shape and data_offsets are ignored. */
#include "safetensors.h"
#include "cli.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20)   /* the limit the reference implementation uses */

static const struct { const char *name; int dtype; } st_dtypes[] = {
    {"F64", SSM_F64}, {"F32", SSM_F32}, {"F16", SSM_F16}, {"BF16", SSM_BF16}, {"I64", SSM_I64},
    {"I32", SSM_I32}, {"I16", SSM_I16}, {"I8", SSM_I8}, {"U64", SSM_U64}, {"U32", SSM_U32},
    {"U16", SSM_U16}, {"U8", SSM_U8}, {"BOOL", SSM_BOOL}, {"C64", SSM_C64},
};

const char *ssm_safetensors_dtype_name(int dtype) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dtype == dtype) return st_dtypes[i].name;
    return NULL;
}
static int dtype_from_st(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return st_dtypes[i].dtype;
    return 0;
}

/* ================================ reader ====================================================== */
typedef struct {
    ssm_tensor hdr;
    uint64_t begin, end;   /* within the data area */
} st_entry;

struct ssm_safetensors {
    int fd, own_fd;
    char *label;
    uint64_t data_start, data_len;
    st_entry *entries;
    int n, cap;
    char **meta_keys, **meta_values;
    int nmeta;
    char err[600];
};

static int st_fail(ssm_safetensors *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int st_fail(ssm_safetensors *st, const char *fmt, ...) {
    char msg[500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(st->err, sizeof st->err, "%s: %s", st->label, msg);
    return -1;
}

static void clear_entry(st_entry *e) {
    for (int i = 0; i < e->hdr.nattrs; i++) { free(e->hdr.attrs[i].key); free(e->hdr.attrs[i].value); }
    free(e->hdr.attrs);
    free(e->hdr.name);
}

/* "__metadata__": an object of strings, or null. */
static int parse_metadata(ssm_safetensors *st, const ssm_json *m) {
    if (m->type == SSM_JSON_NULL) return 0;
    if (m->type != SSM_JSON_OBJECT) return st_fail(st, "__metadata__ must be an object of strings");
    for (int64_t i = 0; i < m->n; i++) {
        if (m->items[i]->type != SSM_JSON_STRING)
            return st_fail(st, "__metadata__ '%.60s' must be a string, not %s", m->keys[i], ssm_json_type_name(m->items[i]->type));
        st->meta_keys = ssm_xrealloc(st->meta_keys, (size_t)(st->nmeta + 1) * sizeof(char *));
        st->meta_values = ssm_xrealloc(st->meta_values, (size_t)(st->nmeta + 1) * sizeof(char *));
        st->meta_keys[st->nmeta] = ssm_xstrdup(m->keys[i]);
        st->meta_values[st->nmeta] = ssm_xstrdup(m->items[i]->str);
        st->nmeta++;
    }
    return 0;
}

/* A JSON number that is an exact non-negative integer. */
static int json_uint(const ssm_json *v, uint64_t *out) {
    if (v->type != SSM_JSON_NUMBER || !v->is_int || v->integer < 0) return -1;
    *out = (uint64_t)v->integer;
    return 0;
}

/* One "NAME": {...} entry (e->hdr.name is set); other members of the entry are ignored. */
static int parse_entry(ssm_safetensors *st, const ssm_json *v, st_entry *e) {
    const char *name = e->hdr.name;
    if (v->type != SSM_JSON_OBJECT) return st_fail(st, "tensor '%s': the entry must be an object", name);
    const ssm_json *dtype = ssm_json_get(v, "dtype"), *shape = ssm_json_get(v, "shape"),
                   *offsets = ssm_json_get(v, "data_offsets");
    if (!dtype || !shape || !offsets) return st_fail(st, "tensor '%s': entry lacks dtype, shape or data_offsets", name);
    if (dtype->type != SSM_JSON_STRING) return st_fail(st, "tensor '%s': dtype must be a string", name);
    e->hdr.dtype = dtype_from_st(dtype->str);
    if (!e->hdr.dtype) return st_fail(st, "tensor '%s': unsupported dtype '%.40s'", name, dtype->str);
    if (shape->type != SSM_JSON_ARRAY) return st_fail(st, "tensor '%s': shape must be an array", name);
    if (shape->n > SSM_MAX_RANK) return st_fail(st, "tensor '%s': more dims than ssm tensors allow (%d)", name, SSM_MAX_RANK);
    for (int64_t i = 0; i < shape->n; i++) {
        uint64_t d;
        if (json_uint(shape->items[i], &d) < 0 || d > (uint64_t)INT64_MAX)
            return st_fail(st, "tensor '%s': shape must hold non-negative integers", name);
        e->hdr.dims[e->hdr.rank++] = (int64_t)d;
    }
    if (offsets->type != SSM_JSON_ARRAY || offsets->n != 2 || json_uint(offsets->items[0], &e->begin) < 0 ||
        json_uint(offsets->items[1], &e->end) < 0)
        return st_fail(st, "tensor '%s': data_offsets must be [BEGIN, END]", name);
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Metadata -> attributes (see safetensors.h). */
static void apply_metadata(ssm_safetensors *st) {
    for (int m = 0; m < st->nmeta; m++) {
        const char *k = st->meta_keys[m], *v = st->meta_values[m];
        if (strncmp(k, "ssm:", 4) == 0) {
            int i = ssm_safetensors_find(st, k + 4);
            if (i < 0) continue;
            char *copy = ssm_xstrdup(v), *line = copy;
            while (*line) {
                char *nl = strchr(line, '\n');
                if (nl) *nl = 0;
                char *eq = strchr(line, '=');
                if (eq && eq != line) { *eq = 0; ssm_tensor_set_attr(&st->entries[i].hdr, line, eq + 1); }
                if (!nl) break;
                line = nl + 1;
            }
            free(copy);
            continue;
        }
        if (!*k || strchr(k, '=') || strchr(k, '\n')) continue;
        char *val = ssm_xstrdup(v);
        for (char *p = val; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
        for (int i = 0; i < st->n; i++)
            if (!ssm_tensor_get_attr(&st->entries[i].hdr, k)) ssm_tensor_set_attr(&st->entries[i].hdr, k, val);
        free(val);
    }
}

static int parse_header(ssm_safetensors *st, const char *text, size_t len) {
    char jmsg[300] = "";
    ssm_json *root = ssm_json_parse(text, len, jmsg, sizeof jmsg);
    if (!root) return st_fail(st, "header: %s", jmsg);
    int rc = 0;
    if (root->type != SSM_JSON_OBJECT) { rc = st_fail(st, "the header must be a JSON object"); goto done; }
    for (int64_t m = 0; m < root->n; m++) {
        const char *name = root->keys[m];
        if (strcmp(name, "__metadata__") == 0) {
            if ((rc = parse_metadata(st, root->items[m])) < 0) goto done;
            continue;
        }
        if (!name[0] || strlen(name) != root->key_lens[m] || strlen(name) > SSM_MAX_NAME) {
            rc = st_fail(st, "bad tensor name '%.60s'", name);
            goto done;
        }
        for (const char *p = name; *p; p++)
            if ((unsigned char)*p < 32 || *p == 127) { rc = st_fail(st, "tensor name '%.60s' contains a control character", name); goto done; }
        if (ssm_safetensors_find(st, name) >= 0) { rc = st_fail(st, "duplicate tensor '%s' in the header", name); goto done; }
        if (st->n == st->cap) {
            st->cap = st->cap ? 2 * st->cap : 16;
            st->entries = ssm_xrealloc(st->entries, (size_t)st->cap * sizeof *st->entries);
        }
        st_entry *e = &st->entries[st->n++];
        memset(e, 0, sizeof *e);
        e->hdr.name = ssm_xstrdup(name);
        if ((rc = parse_entry(st, root->items[m], e)) < 0) goto done;
    }
done:
    ssm_json_free(root);
    if (rc < 0) return rc;

    /* every tensor: offsets inside the data, exactly dtype x shape bytes, no overlaps */
    for (int i = 0; i < st->n; i++) {
        st_entry *e = &st->entries[i];
        int64_t numel = ssm_tensor_numel(&e->hdr);
        size_t es = ssm_dtype_size(e->hdr.dtype);
        char shape[256];
        if (numel < 0 || (uint64_t)numel > ((uint64_t)1 << 60) / es)
            return st_fail(st, "tensor '%s': shape %s overflows", e->hdr.name, ssm_shape_string(e->hdr.rank, e->hdr.dims, shape, sizeof shape));
        if (e->end < e->begin) return st_fail(st, "tensor '%s': data_offsets [%llu, %llu] run backwards", e->hdr.name, (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->end - e->begin != (uint64_t)numel * es)
            return st_fail(st, "tensor '%s': data_offsets give %llu bytes but %s %s needs %llu", e->hdr.name,
                           (unsigned long long)(e->end - e->begin), ssm_safetensors_dtype_name(e->hdr.dtype),
                           ssm_shape_string(e->hdr.rank, e->hdr.dims, shape, sizeof shape), (unsigned long long)numel * es);
        if (e->end > st->data_len)
            return st_fail(st, "tensor '%s': data_offsets end at %llu, past the end of the data (%llu bytes; truncated file?)",
                           e->hdr.name, (unsigned long long)e->end, (unsigned long long)st->data_len);
    }
    qsort(st->entries, (size_t)st->n, sizeof *st->entries, by_offset);
    for (int i = 1; i < st->n; i++)
        if (st->entries[i].begin < st->entries[i - 1].end)
            return st_fail(st, "tensors '%s' and '%s' overlap in the data", st->entries[i - 1].hdr.name, st->entries[i].hdr.name);
    apply_metadata(st);
    return 0;
}

ssm_safetensors *ssm_safetensors_open_fd(int fd, const char *label, char *err, size_t errlen) {
    ssm_safetensors *st = ssm_xcalloc(1, sizeof *st);
    st->fd = fd;
    st->label = ssm_xstrdup(label);
    char *text = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st_fail(st, "not a regular file (safetensors needs random access: give a file, not a pipe)");
        goto bad;
    }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char pre[8];
    if (size < 8 || pread(fd, pre, 8, 0) != 8) { st_fail(st, "not a safetensors file (shorter than 8 bytes)"); goto bad; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | pre[i];
    if (hlen > ST_MAX_HEADER) { st_fail(st, "not a safetensors file (header length %llu is too large)", (unsigned long long)hlen); goto bad; }
    if (hlen > size - 8) { st_fail(st, "truncated header (%llu bytes announced, %llu present)", (unsigned long long)hlen, (unsigned long long)(size - 8)); goto bad; }
    text = ssm_xmalloc(hlen + 1);
    if (pread(fd, text, hlen, 8) != (ssize_t)hlen) { st_fail(st, "read error: %s", strerror(errno)); goto bad; }
    text[hlen] = 0;
    st->data_start = 8 + hlen;
    st->data_len = size - 8 - hlen;
    if (parse_header(st, text, hlen) < 0) goto bad;
    free(text);
    return st;
bad:
    free(text);
    snprintf(err, errlen, "%s", st->err);
    ssm_safetensors_close(st);
    return NULL;
}

ssm_safetensors *ssm_safetensors_open(const char *path, char *err, size_t errlen) {
    if (strcmp(path, "-") == 0) return ssm_safetensors_open_fd(0, "stdin", err, errlen);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    ssm_safetensors *st = ssm_safetensors_open_fd(fd, path, err, errlen);
    if (!st) { close(fd); return NULL; }
    st->own_fd = 1;
    return st;
}

void ssm_safetensors_close(ssm_safetensors *st) {
    if (!st) return;
    if (st->own_fd) close(st->fd);
    for (int i = 0; i < st->n; i++) clear_entry(&st->entries[i]);
    free(st->entries);
    for (int m = 0; m < st->nmeta; m++) { free(st->meta_keys[m]); free(st->meta_values[m]); }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->label);
    free(st);
}

int ssm_safetensors_count(const ssm_safetensors *st) { return st->n; }
const ssm_tensor *ssm_safetensors_header(const ssm_safetensors *st, int i) {
    return i >= 0 && i < st->n ? &st->entries[i].hdr : NULL;
}
int ssm_safetensors_find(const ssm_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->entries[i].hdr.name, name) == 0) return i;
    return -1;
}
const char *ssm_safetensors_metadata(const ssm_safetensors *st, const char *key) {
    for (int m = 0; m < st->nmeta; m++)
        if (strcmp(st->meta_keys[m], key) == 0) return st->meta_values[m];
    return NULL;
}
const char *ssm_safetensors_error(const ssm_safetensors *st) { return st->err[0] ? st->err : "no error"; }

int ssm_safetensors_read(ssm_safetensors *st, int i, uint64_t offset, void *buf, size_t n) {
    if (i < 0 || i >= st->n) return st_fail(st, "no tensor %d", i);
    st_entry *e = &st->entries[i];
    if (offset > e->end - e->begin || n > e->end - e->begin - offset)
        return st_fail(st, "tensor '%s': read outside its data", e->hdr.name);
    unsigned char *p = buf;
    uint64_t pos = st->data_start + e->begin + offset;
    while (n) {
        ssize_t k = pread(st->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)pos);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return st_fail(st, "tensor '%s': read error: %s", e->hdr.name, strerror(errno));
        if (k == 0) return st_fail(st, "tensor '%s': the file ends early (truncated while reading?)", e->hdr.name);
        p += k;
        pos += (uint64_t)k;
        n -= (size_t)k;
    }
    return 0;
}

ssm_tensor *ssm_safetensors_load(ssm_safetensors *st, int i) {
    if (i < 0 || i >= st->n) { st_fail(st, "no tensor %d", i); return NULL; }
    ssm_tensor *t = ssm_tensor_new_header(&st->entries[i].hdr);
    size_t nb = ssm_tensor_nbytes(t);
    t->data = malloc(nb ? nb : 1);
    if (!t->data) { ssm_tensor_free(t); st_fail(st, "out of memory (%zu bytes)", nb); return NULL; }
    if (ssm_safetensors_read(st, i, 0, t->data, nb) < 0) { ssm_tensor_free(t); return NULL; }
    return t;
}

/* ================================ writer ====================================================== */
typedef struct {
    char *name;
    int dtype, rank;
    int64_t dims[SSM_MAX_RANK];
    uint64_t begin, end;
} wt_entry;

struct ssm_safetensors_writer {
    char *path, *tmp_path;   /* tmp_path: the output being written (file outputs) */
    FILE *spool;             /* payloads, in order */
    uint64_t spooled;
    wt_entry *entries;
    int n, cap;
    char **meta_keys, **meta_values;
    int nmeta;
    int in_tensor, failed;
    uint64_t want;           /* bytes the current tensor still needs */
    char err[600];
};

static int w_fail(ssm_safetensors_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int w_fail(ssm_safetensors_writer *w, const char *fmt, ...) {
    if (w->failed) return -1;
    char msg[500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(w->err, sizeof w->err, "%s: %s", strcmp(w->path, "-") ? w->path : "stdout", msg);
    w->failed = 1;
    return -1;
}
const char *ssm_safetensors_writer_error(const ssm_safetensors_writer *w) { return w->err[0] ? w->err : "no error"; }

/* An unlinked temporary file in dir (so nothing is left behind whatever happens). */
static FILE *spool_file(const char *dir) {
    size_t n = strlen(dir) + 32;
    char *t = ssm_xmalloc(n);
    snprintf(t, n, "%s/.ssm-spool.XXXXXX", dir);
    int fd = mkstemp(t);
    FILE *f = NULL;
    if (fd >= 0) {
        unlink(t);
        f = fdopen(fd, "w+b");
        if (!f) close(fd);
    }
    free(t);
    return f;
}

ssm_safetensors_writer *ssm_safetensors_writer_open(const char *path, char *err, size_t errlen) {
    ssm_safetensors_writer *w = ssm_xcalloc(1, sizeof *w);
    w->path = ssm_xstrdup(path);
    char *dir;
    if (strcmp(path, "-") == 0) {
        const char *t = getenv("TMPDIR");
        dir = ssm_xstrdup(t && *t ? t : "/tmp");
    } else {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            snprintf(err, errlen, "%s: %s", path, strerror(EISDIR));
            free(w->path);
            free(w);
            return NULL;
        }
        dir = ssm_xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (slash == dir) slash[1] = 0;
        else if (slash) *slash = 0;
        else strcpy(dir, ".");
        /* the output's temporary name: created now so an unwritable place fails early */
        size_t n = strlen(path) + 16;
        w->tmp_path = ssm_xmalloc(n);
        snprintf(w->tmp_path, n, "%s.tmp.XXXXXX", path);
        int fd = mkstemp(w->tmp_path);
        if (fd < 0) {
            snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
            free(dir);
            free(w->tmp_path);
            free(w->path);
            free(w);
            return NULL;
        }
        mode_t um = umask(0);
        umask(um);
        fchmod(fd, 0666 & ~um);
        close(fd);
    }
    w->spool = spool_file(dir);
    if (!w->spool) {
        snprintf(err, errlen, "%s: cannot create a temporary file in %s: %s", path, dir, strerror(errno));
        free(dir);
        ssm_safetensors_writer_abort(w);
        return NULL;
    }
    free(dir);
    return w;
}

void ssm_safetensors_writer_set_metadata(ssm_safetensors_writer *w, const char *key, const char *value) {
    for (int m = 0; m < w->nmeta; m++)
        if (strcmp(w->meta_keys[m], key) == 0) {
            free(w->meta_values[m]);
            w->meta_values[m] = ssm_xstrdup(value);
            return;
        }
    w->meta_keys = ssm_xrealloc(w->meta_keys, (size_t)(w->nmeta + 1) * sizeof(char *));
    w->meta_values = ssm_xrealloc(w->meta_values, (size_t)(w->nmeta + 1) * sizeof(char *));
    w->meta_keys[w->nmeta] = ssm_xstrdup(key);
    w->meta_values[w->nmeta] = ssm_xstrdup(value);
    w->nmeta++;
}

int ssm_safetensors_writer_begin(ssm_safetensors_writer *w, const ssm_tensor *hdr) {
    if (w->failed) return -1;
    if (w->in_tensor) return w_fail(w, "internal error: tensor not finished before '%s'", hdr->name);
    const char *dn = ssm_safetensors_dtype_name(hdr->dtype);
    if (!dn) return w_fail(w, "tensor '%s': safetensors has no %s dtype (use npy, or convert it)", hdr->name, ssm_dtype_name(hdr->dtype));
    if (strcmp(hdr->name, "__metadata__") == 0) return w_fail(w, "a tensor may not be called '__metadata__' in safetensors");
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].name, hdr->name) == 0)
            return w_fail(w, "duplicate tensor name '%s' (safetensors names are unique)", hdr->name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->entries = ssm_xrealloc(w->entries, (size_t)w->cap * sizeof *w->entries);
    }
    wt_entry *e = &w->entries[w->n++];
    e->name = ssm_xstrdup(hdr->name);
    e->dtype = hdr->dtype;
    e->rank = hdr->rank;
    memcpy(e->dims, hdr->dims, sizeof e->dims);
    e->begin = w->spooled;
    w->want = ssm_tensor_nbytes(hdr);
    e->end = e->begin + w->want;
    if (hdr->nattrs) {   /* attributes as "key=value" lines under "ssm:NAME" */
        size_t len = 1;
        for (int i = 0; i < hdr->nattrs; i++) len += strlen(hdr->attrs[i].key) + strlen(hdr->attrs[i].value) + 2;
        char *text = ssm_xmalloc(len), *p = text;
        for (int i = 0; i < hdr->nattrs; i++) p += sprintf(p, "%s=%s\n", hdr->attrs[i].key, hdr->attrs[i].value);
        *p = 0;
        size_t kn = strlen(hdr->name) + 5;
        char *key = ssm_xmalloc(kn);
        snprintf(key, kn, "ssm:%s", hdr->name);
        ssm_safetensors_writer_set_metadata(w, key, text);
        free(key);
        free(text);
    }
    w->in_tensor = 1;
    return 0;
}

int ssm_safetensors_writer_feed(ssm_safetensors_writer *w, const void *buf, size_t n) {
    if (w->failed) return -1;
    if (!w->in_tensor || n > w->want) return w_fail(w, "internal error: more bytes than the tensor's dims");
    if (n && fwrite(buf, 1, n, w->spool) != n) return w_fail(w, "write error on the temporary file: %s", strerror(errno));
    w->want -= n;
    w->spooled += n;
    return 0;
}

int ssm_safetensors_writer_end(ssm_safetensors_writer *w) {
    if (w->failed) return -1;
    if (!w->in_tensor || w->want) return w_fail(w, "internal error: tensor '%s' ended %llu bytes short",
                                                w->n ? w->entries[w->n - 1].name : "?", (unsigned long long)w->want);
    w->in_tensor = 0;
    return 0;
}

int ssm_safetensors_writer_write(ssm_safetensors_writer *w, const ssm_tensor *t) {
    if (ssm_safetensors_writer_begin(w, t) < 0) return -1;
    if (ssm_safetensors_writer_feed(w, t->data, ssm_tensor_nbytes(t)) < 0) return -1;
    return ssm_safetensors_writer_end(w);
}

/* A JSON string (UTF-8 passed through; quotes, backslashes and control characters escaped). */
static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void free_writer(ssm_safetensors_writer *w) {
    if (w->spool) fclose(w->spool);
    for (int i = 0; i < w->n; i++) free(w->entries[i].name);
    free(w->entries);
    for (int m = 0; m < w->nmeta; m++) { free(w->meta_keys[m]); free(w->meta_values[m]); }
    free(w->meta_keys);
    free(w->meta_values);
    free(w->tmp_path);
    free(w->path);
    free(w);
}

int ssm_safetensors_writer_close(ssm_safetensors_writer *w, char *err, size_t errlen) {
    int rc = w->failed ? -1 : 0;
    if (rc == 0 && w->in_tensor) rc = w_fail(w, "internal error: the last tensor was not finished");
    /* the header, built in memory */
    char *json = NULL;
    size_t jlen = 0;
    if (rc == 0) {
        FILE *m = open_memstream(&json, &jlen);
        if (!m) { rc = w_fail(w, "out of memory"); goto done; }
        fputc('{', m);
        int first = 1;
        if (w->nmeta) {
            fputs("\"__metadata__\":{", m);
            for (int i = 0; i < w->nmeta; i++) {
                if (i) fputc(',', m);
                put_json_string(m, w->meta_keys[i]);
                fputc(':', m);
                put_json_string(m, w->meta_values[i]);
            }
            fputc('}', m);
            first = 0;
        }
        for (int i = 0; i < w->n; i++) {
            wt_entry *e = &w->entries[i];
            if (!first) fputc(',', m);
            first = 0;
            put_json_string(m, e->name);
            fprintf(m, ":{\"dtype\":\"%s\",\"shape\":[", ssm_safetensors_dtype_name(e->dtype));
            for (int d = 0; d < e->rank; d++) fprintf(m, "%s%lld", d ? "," : "", (long long)e->dims[d]);
            fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)e->begin, (unsigned long long)e->end);
        }
        fputc('}', m);
        while ((ftell(m) & 7) != 0) fputc(' ', m);   /* 8-byte alignment of the data */
        fclose(m);
    }
    if (rc == 0) {
        FILE *out = w->tmp_path ? fopen(w->tmp_path, "wb") : stdout;
        if (!out) { rc = w_fail(w, "cannot open for writing: %s", strerror(errno)); goto done; }
        unsigned char pre[8];
        for (int i = 0; i < 8; i++) pre[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
        int ok = fwrite(pre, 1, 8, out) == 8 && fwrite(json, 1, jlen, out) == jlen;
        if (ok && fflush(w->spool) == 0 && fseeko(w->spool, 0, SEEK_SET) == 0) {
            char *buf = ssm_xmalloc(1u << 20);
            uint64_t left = w->spooled;
            while (ok && left) {
                size_t k = fread(buf, 1, left < (1u << 20) ? (size_t)left : (1u << 20), w->spool);
                if (k == 0 || fwrite(buf, 1, k, out) != k) ok = 0;
                left -= k;
            }
            free(buf);
        } else {
            ok = 0;
        }
        if (fflush(out) != 0) ok = 0;
        if (ok && w->tmp_path && fsync(fileno(out)) != 0) ok = 0;
        if (w->tmp_path && fclose(out) != 0) ok = 0;
        if (!ok) rc = w_fail(w, "write error: %s", strerror(errno));
        if (rc == 0 && w->tmp_path && rename(w->tmp_path, w->path) != 0) rc = w_fail(w, "cannot rename into place: %s", strerror(errno));
    }
done:
    free(json);
    if (rc != 0 && w->tmp_path) unlink(w->tmp_path);
    if (err && errlen) snprintf(err, errlen, "%s", rc ? w->err : "");
    free_writer(w);
    return rc;
}

void ssm_safetensors_writer_abort(ssm_safetensors_writer *w) {
    if (w->tmp_path) unlink(w->tmp_path);
    free_writer(w);
}
