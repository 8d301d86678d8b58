/* tensor.c - dtypes, in-memory tensors, tensor sets, glob matching. */
#include "tensor.h"
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Payloads above this are refused outright (2^60 bytes: far beyond any disk, below overflow). */
#define SSM_MAX_BYTES ((int64_t)1 << 60)

static const struct {
    int code;
    const char *name;
    size_t size, component;
} dtype_table[] = {
    {SSM_F32, "f32", 4, 4},   {SSM_F64, "f64", 8, 8},   {SSM_C64, "c64", 8, 4},
    {SSM_C128, "c128", 16, 8}, {SSM_I32, "i32", 4, 4},   {SSM_I64, "i64", 8, 8},
    {SSM_U8, "u8", 1, 1},     {SSM_BF16, "bf16", 2, 2}, {SSM_F16, "f16", 2, 2},
    {SSM_I8, "i8", 1, 1},     {SSM_I16, "i16", 2, 2},   {SSM_U16, "u16", 2, 2},
    {SSM_U32, "u32", 4, 4},   {SSM_U64, "u64", 8, 8},   {SSM_BOOL, "bool", 1, 1},
};
#define NDTYPES (int)(sizeof dtype_table / sizeof dtype_table[0])

static int dtype_index(int code) {
    for (int i = 0; i < NDTYPES; i++)
        if (dtype_table[i].code == code) return i;
    return -1;
}
size_t ssm_dtype_size(int d) { int i = dtype_index(d); return i < 0 ? 0 : dtype_table[i].size; }
size_t ssm_dtype_component_size(int d) {
    int i = dtype_index(d);
    return i < 0 ? 0 : dtype_table[i].component;
}
const char *ssm_dtype_name(int d) { int i = dtype_index(d); return i < 0 ? NULL : dtype_table[i].name; }
int ssm_dtype_from_name(const char *name) {
    static const struct { const char *alias; int code; } aliases[] = {
        {"float32", SSM_F32}, {"float64", SSM_F64}, {"float", SSM_F32}, {"double", SSM_F64},
        {"complex64", SSM_C64}, {"complex128", SSM_C128}, {"int32", SSM_I32}, {"int64", SSM_I64},
        {"uint8", SSM_U8}, {"bfloat16", SSM_BF16}, {"float16", SSM_F16}, {"half", SSM_F16},
        {"int8", SSM_I8}, {"int16", SSM_I16}, {"uint16", SSM_U16}, {"uint32", SSM_U32},
        {"uint64", SSM_U64},
    };
    for (int i = 0; i < NDTYPES; i++)
        if (strcmp(dtype_table[i].name, name) == 0) return dtype_table[i].code;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(aliases[i].alias, name) == 0) return aliases[i].code;
    return 0;
}
int ssm_dtype_is_complex(int d) { return d == SSM_C64 || d == SSM_C128; }
int ssm_dtype_is_float(int d) { return d == SSM_F32 || d == SSM_F64 || d == SSM_BF16 || d == SSM_F16; }

int64_t ssm_numel_of(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return -1;
        if (dims[i] == 0) n = 0;
        else if (n > SSM_MAX_BYTES / dims[i]) return -1;
        else n *= dims[i];
    }
    /* keep going even after a zero dim: a negative dim later must still be refused */
    return n;
}
int64_t ssm_tensor_numel(const ssm_tensor *t) { return ssm_numel_of(t->rank, t->dims); }
size_t ssm_tensor_nbytes(const ssm_tensor *t) {
    return (size_t)ssm_tensor_numel(t) * ssm_dtype_size(t->dtype);
}

ssm_tensor *ssm_tensor_new_header(const ssm_tensor *like) {
    ssm_tensor *t = ssm_xcalloc(1, sizeof *t);
    t->name = ssm_xstrdup(like->name ? like->name : "");
    t->dtype = like->dtype;
    t->rank = like->rank;
    memcpy(t->dims, like->dims, sizeof t->dims);
    ssm_tensor_copy_attrs(t, like);
    return t;
}

ssm_tensor *ssm_tensor_new(const char *name, int dtype, int rank, const int64_t *dims) {
    if (rank < 0 || rank > SSM_MAX_RANK) ssm_die("tensor '%s': rank %d out of range", name, rank);
    ssm_tensor *t = ssm_xcalloc(1, sizeof *t);
    t->name = ssm_xstrdup(name);
    t->dtype = dtype;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
    int64_t n = ssm_tensor_numel(t);
    if (n < 0 || ssm_dtype_size(dtype) == 0) ssm_die("tensor '%s': invalid shape or dtype", name);
    t->data = ssm_xcalloc((size_t)n ? (size_t)n : 1, ssm_dtype_size(dtype));
    return t;
}

ssm_tensor *ssm_tensor_clone(const ssm_tensor *src) {
    ssm_tensor *t = ssm_tensor_new_header(src);
    if (src->data) {
        size_t nb = ssm_tensor_nbytes(src);
        t->data = ssm_xmalloc(nb ? nb : 1);
        memcpy(t->data, src->data, nb);
    }
    return t;
}

void ssm_tensor_free(ssm_tensor *t) {
    if (!t) return;
    for (int i = 0; i < t->nattrs; i++) { free(t->attrs[i].key); free(t->attrs[i].value); }
    free(t->attrs);
    free(t->name);
    free(t->data);
    free(t);
}

void ssm_tensor_set_name(ssm_tensor *t, const char *name) {
    char *n = ssm_xstrdup(name);
    free(t->name);
    t->name = n;
}

void ssm_tensor_set_attr(ssm_tensor *t, const char *key, const char *value) {
    for (int i = 0; i < t->nattrs; i++)
        if (strcmp(t->attrs[i].key, key) == 0) {
            char *v = ssm_xstrdup(value);
            free(t->attrs[i].value);
            t->attrs[i].value = v;
            return;
        }
    t->attrs = ssm_xrealloc(t->attrs, (size_t)(t->nattrs + 1) * sizeof *t->attrs);
    t->attrs[t->nattrs].key = ssm_xstrdup(key);
    t->attrs[t->nattrs].value = ssm_xstrdup(value);
    t->nattrs++;
}

void ssm_tensor_set_attrf(ssm_tensor *t, const char *key, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ssm_tensor_set_attr(t, key, buf);
}

const char *ssm_tensor_get_attr(const ssm_tensor *t, const char *key) {
    for (int i = 0; i < t->nattrs; i++)
        if (strcmp(t->attrs[i].key, key) == 0) return t->attrs[i].value;
    return NULL;
}

int ssm_tensor_attr_count(const ssm_tensor *t, const char *key, int dflt, int required) {
    const char *v = ssm_tensor_get_attr(t, key);
    if (!v) {
        if (required) ssm_die("tensor '%s': missing attribute '%s'", t->name, key);
        return dflt;
    }
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < 0 || x > (1L << 30)) ssm_die("tensor '%s': attribute %s='%s' is not a count", t->name, key, v);
    return (int)x;
}

void ssm_tensor_copy_attrs(ssm_tensor *dst, const ssm_tensor *src) {
    for (int i = 0; i < src->nattrs; i++) ssm_tensor_set_attr(dst, src->attrs[i].key, src->attrs[i].value);
}

const char *ssm_shape_string(int rank, const int64_t *dims, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

const char *ssm_tensor_describe(const ssm_tensor *t, char *buf, size_t n) {
    char shape[512];
    const char *dn = ssm_dtype_name(t->dtype);
    snprintf(buf, n, "%s %s", dn ? dn : "?", ssm_shape_string(t->rank, t->dims, shape, sizeof shape));
    return buf;
}

/* ---- half precision ------------------------------------------------------------------------ */
float ssm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t ssm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                          /* nearest even */
    return (uint16_t)(u >> 16);
}
float ssm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    if (exp == 0) {
        if (mant == 0) u = sign;
        else { /* subnormal: value = mant * 2^-24 */
            float f = (float)mant * 0x1p-24f;
            return sign ? -f : f;
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
    else u = sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t ssm_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;            /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;           /* overflow (incl. inf) after rounding */
    if (a < 0x38800000u) {                                /* subnormal or zero in f16 */
        float af;
        memcpy(&af, &a, 4);
        float scaled = af * 0x1p24f;                      /* exact units of 2^-24 */
        return sign | (uint16_t)lrintf(scaled);           /* round to nearest even */
    }
    uint32_t mant = a & 0x7fffff, exp = (a >> 23) - 112;
    uint32_t r = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return sign | (uint16_t)r;
}

/* ---- element access and conversion --------------------------------------------------------- */
static double get_component(const void *data, int dtype, int64_t i) {
    switch (dtype) {
    case SSM_F32: return ((const float *)data)[i];
    case SSM_F64: return ((const double *)data)[i];
    case SSM_C64: return ((const float *)data)[2 * i];
    case SSM_C128: return ((const double *)data)[2 * i];
    case SSM_I32: return ((const int32_t *)data)[i];
    case SSM_I64: return (double)((const int64_t *)data)[i];
    case SSM_U8: case SSM_BOOL: return ((const uint8_t *)data)[i];
    case SSM_BF16: return ssm_bf16_to_f32(((const uint16_t *)data)[i]);
    case SSM_F16: return ssm_f16_to_f32(((const uint16_t *)data)[i]);
    case SSM_I8: return ((const int8_t *)data)[i];
    case SSM_I16: return ((const int16_t *)data)[i];
    case SSM_U16: return ((const uint16_t *)data)[i];
    case SSM_U32: return ((const uint32_t *)data)[i];
    case SSM_U64: return (double)((const uint64_t *)data)[i];
    }
    return NAN;
}
double ssm_tensor_get_f64(const ssm_tensor *t, int64_t i) { return get_component(t->data, t->dtype, i); }

static double get_imag(const void *data, int dtype, int64_t i) {
    if (dtype == SSM_C64) return ((const float *)data)[2 * i + 1];
    if (dtype == SSM_C128) return ((const double *)data)[2 * i + 1];
    return 0;
}

/* Integer dtypes: exact copies between integer types go through int64/uint64 to avoid rounding. */
static int is_integer(int d) {
    return d == SSM_I32 || d == SSM_I64 || d == SSM_U8 || d == SSM_I8 || d == SSM_I16 ||
           d == SSM_U16 || d == SSM_U32 || d == SSM_U64 || d == SSM_BOOL;
}
static int get_int(const void *data, int dtype, int64_t i, long double *out) {
    switch (dtype) {
    case SSM_I64: *out = (long double)((const int64_t *)data)[i]; return 1;
    case SSM_U64: *out = (long double)((const uint64_t *)data)[i]; return 1;
    default: *out = get_component(data, dtype, i); return 1;
    }
}
static int put_int(void *data, int dtype, int64_t i, long double v) {
    long double r = nearbyintl(v);
    if (isnan(r)) return 0;
    switch (dtype) {
    case SSM_I32: if (r < INT32_MIN || r > INT32_MAX) return 0; ((int32_t *)data)[i] = (int32_t)r; return 1;
    case SSM_I64: if (r < -9223372036854775808.0L || r >= 9223372036854775808.0L) return 0;
        ((int64_t *)data)[i] = (int64_t)r; return 1;
    case SSM_U8: if (r < 0 || r > 255) return 0; ((uint8_t *)data)[i] = (uint8_t)r; return 1;
    case SSM_BOOL: if (r != 0 && r != 1) return 0; ((uint8_t *)data)[i] = (uint8_t)r; return 1;
    case SSM_I8: if (r < -128 || r > 127) return 0; ((int8_t *)data)[i] = (int8_t)r; return 1;
    case SSM_I16: if (r < -32768 || r > 32767) return 0; ((int16_t *)data)[i] = (int16_t)r; return 1;
    case SSM_U16: if (r < 0 || r > 65535) return 0; ((uint16_t *)data)[i] = (uint16_t)r; return 1;
    case SSM_U32: if (r < 0 || r > 4294967295.0L) return 0; ((uint32_t *)data)[i] = (uint32_t)r; return 1;
    case SSM_U64: if (r < 0 || r >= 18446744073709551616.0L) return 0; ((uint64_t *)data)[i] = (uint64_t)r; return 1;
    }
    return 0;
}

ssm_tensor *ssm_tensor_convert(const ssm_tensor *t, int dtype) {
    if (ssm_dtype_size(dtype) == 0 || !t->data) return NULL;
    if (ssm_dtype_is_complex(t->dtype) && !ssm_dtype_is_complex(dtype)) return NULL;
    int64_t n = ssm_tensor_numel(t);
    ssm_tensor *o = ssm_tensor_new_header(t);
    o->dtype = dtype;
    o->data = ssm_xcalloc((size_t)(n ? n : 1), ssm_dtype_size(dtype));
    if (dtype == t->dtype) {
        memcpy(o->data, t->data, ssm_tensor_nbytes(t));
        return o;
    }
    for (int64_t i = 0; i < n; i++) {
        if (is_integer(dtype)) {
            long double v;
            get_int(t->data, t->dtype, i, &v);
            if (!put_int(o->data, dtype, i, v)) { ssm_tensor_free(o); return NULL; }
            continue;
        }
        double re = get_component(t->data, t->dtype, i), im = get_imag(t->data, t->dtype, i);
        switch (dtype) {
        case SSM_F32: ((float *)o->data)[i] = (float)re; break;
        case SSM_F64:
            if (t->dtype == SSM_I64 || t->dtype == SSM_U64) { long double v; get_int(t->data, t->dtype, i, &v); re = (double)v; }
            ((double *)o->data)[i] = re; break;
        case SSM_C64: ((float *)o->data)[2 * i] = (float)re; ((float *)o->data)[2 * i + 1] = (float)im; break;
        case SSM_C128: ((double *)o->data)[2 * i] = re; ((double *)o->data)[2 * i + 1] = im; break;
        case SSM_BF16: ((uint16_t *)o->data)[i] = ssm_f32_to_bf16((float)re); break;
        case SSM_F16: ((uint16_t *)o->data)[i] = ssm_f32_to_f16((float)re); break;
        }
    }
    return o;
}

int64_t ssm_tensor_count_nonfinite(const ssm_tensor *t) {
    if (!t->data || is_integer(t->dtype)) return 0;
    int64_t n = ssm_tensor_numel(t), bad = 0;
    int cplx = ssm_dtype_is_complex(t->dtype);
    for (int64_t i = 0; i < n; i++) {
        double re = get_component(t->data, t->dtype, i);
        double im = cplx ? get_imag(t->data, t->dtype, i) : 0;
        if (!isfinite(re) || !isfinite(im)) bad++;
    }
    return bad;
}

/* ---- tensor sets --------------------------------------------------------------------------- */
void ssm_set_init(ssm_tensor_set *s) { memset(s, 0, sizeof *s); }
void ssm_set_free(ssm_tensor_set *s) {
    for (int i = 0; i < s->n; i++) ssm_tensor_free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}
void ssm_set_put(ssm_tensor_set *s, ssm_tensor *t) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->items[i]->name, t->name) == 0) {
            ssm_tensor_free(s->items[i]);
            s->items[i] = t;
            return;
        }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->items = ssm_xrealloc(s->items, (size_t)s->cap * sizeof *s->items);
    }
    s->items[s->n++] = t;
}
ssm_tensor *ssm_set_get(const ssm_tensor_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->items[i]->name, name) == 0) return s->items[i];
    return NULL;
}
ssm_tensor *ssm_set_take(ssm_tensor_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->items[i]->name, name) == 0) {
            ssm_tensor *t = s->items[i];
            memmove(s->items + i, s->items + i + 1, (size_t)(s->n - i - 1) * sizeof *s->items);
            s->n--;
            return t;
        }
    return NULL;
}

/* ---- glob ---------------------------------------------------------------------------------- */
int ssm_glob_match(const char *p, const char *s) {
    for (; *p; p++, s++) {
        if (*p == '*') {
            while (p[1] == '*') p++;
            if (!p[1]) return 1;
            for (; *s; s++)
                if (ssm_glob_match(p + 1, s)) return 1;
            return ssm_glob_match(p + 1, s);
        }
        if (!*s) return 0;
        if (*p == '?') continue;
        if (*p == '[') {
            const char *q = p + 1;
            int negate = (*q == '!' || *q == '^');
            if (negate) q++;
            int hit = 0;
            const char *start = q;
            while (*q && (*q != ']' || q == start)) {
                if (q[1] == '-' && q[2] && q[2] != ']') {
                    if (*s >= q[0] && *s <= q[2]) hit = 1;
                    q += 3;
                } else {
                    if (*s == *q) hit = 1;
                    q++;
                }
            }
            if (*q != ']') { if (*s != '[') return 0; continue; } /* unterminated: literal '[' */
            if (hit == negate) return 0;
            p = q;
            continue;
        }
        if (*p == '\\' && p[1]) p++;
        if (*p != *s) return 0;
    }
    return *s == 0;
}
