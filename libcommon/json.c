/* json.c - the strict JSON parser of json.h: recursive descent over the text, one node per value. */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
    int failed;
} parser;

/* Records the first error with the line and column of the current position. */
static void fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(parser *p, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    long line = 1, col = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->s[i] == '\n') { line++; col = 1; } else col++;
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "line %ld, column %ld: %s", line, col, msg);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

/* What is at the current position, for messages: "'x'", "end of input". */
static const char *describe_here(parser *p, char *buf, size_t n) {
    if (p->pos >= p->len) return "end of input";
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, n, "'%c'", c);
    else snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static ssm_json *new_node(ssm_json_type t) {
    ssm_json *j = ssm_xcalloc(1, sizeof *j);
    j->type = t;
    return j;
}

static int hex4(parser *p, unsigned *out) {
    if (p->len - p->pos < 4) { fail(p, "truncated \\u escape"); return -1; }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else { p->pos += (size_t)i; fail(p, "invalid hex digit in \\u escape"); return -1; }
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of a valid UTF-8 sequence starting at s (at most n bytes), 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { k = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { k = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 4; cp = c & 0x07; }
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return k;
}

/* Parses a string literal at p->pos (which is '"'); returns a malloc'd UTF-8 copy. */
static char *parse_string_raw(parser *p, size_t *out_len) {
    p->pos++; /* opening quote */
    /* The decoded string is never longer than the literal. */
    size_t start = p->pos, cap = 16;
    for (size_t i = start; i < p->len && p->s[i] != '"'; i++) { cap++; if (p->s[i] == '\\') { i++; cap++; } }
    char *o = ssm_xmalloc(cap + 4);
    size_t n = 0;
    for (;;) {
        if (p->pos >= p->len) { fail(p, "unterminated string"); free(o); return NULL; }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) { fail(p, "control character 0x%02x in a string (must be escaped)", c); free(o); return NULL; }
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->len) { fail(p, "unterminated string"); free(o); return NULL; }
            char e = p->s[p->pos++];
            switch (e) {
            case '"': o[n++] = '"'; break;
            case '\\': o[n++] = '\\'; break;
            case '/': o[n++] = '/'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (hex4(p, &cp)) { free(o); return NULL; }
                if (cp >= 0xdc00 && cp <= 0xdfff) { fail(p, "lone low surrogate \\u%04x", cp); free(o); return NULL; }
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo;
                    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                        fail(p, "high surrogate \\u%04x not followed by a low surrogate", cp); free(o); return NULL;
                    }
                    p->pos += 2;
                    if (hex4(p, &lo)) { free(o); return NULL; }
                    if (lo < 0xdc00 || lo > 0xdfff) { fail(p, "high surrogate \\u%04x not followed by a low surrogate", cp); free(o); return NULL; }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                n += put_utf8(o + n, cp);
                break;
            }
            default:
                p->pos--;
                fail(p, "invalid escape '\\%c'", e);
                free(o);
                return NULL;
            }
            continue;
        }
        size_t k = utf8_valid_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (!k) { fail(p, "invalid UTF-8 in a string"); free(o); return NULL; }
        memcpy(o + n, p->s + p->pos, k);
        n += k;
        p->pos += k;
    }
    o[n] = 0;
    *out_len = n;
    return o;
}

static int parse_number(parser *p, ssm_json *j) {
    size_t start = p->pos;
    const char *s = p->s;
    int is_int = 1;
    if (p->pos < p->len && s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') { fail(p, "expected a digit"); return -1; }
    if (s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') { fail(p, "leading zero in a number"); return -1; }
    } else {
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && s[p->pos] == '.') {
        is_int = 0;
        p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') { fail(p, "expected a digit after '.'"); return -1; }
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        is_int = 0;
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') { fail(p, "expected a digit in the exponent"); return -1; }
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    char buf[512];
    size_t n = p->pos - start;
    if (n >= sizeof buf) { p->pos = start; fail(p, "number literal too long"); return -1; }
    memcpy(buf, s + start, n);
    buf[n] = 0;
    j->number = strtod(buf, NULL);
    if (!isfinite(j->number)) { p->pos = start; fail(p, "number out of range"); return -1; }
    if (is_int) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == 0) { j->is_int = 1; j->integer = v; }
    }
    return 0;
}

static ssm_json *parse_value(parser *p, int depth);

static void push(void ***arr, int64_t n, int64_t *cap, void *item) {
    if (n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *arr = ssm_xrealloc(*arr, (size_t)*cap * sizeof(void *));
    }
    (*arr)[n] = item;
}

static ssm_json *parse_array(parser *p, int depth) {
    ssm_json *j = new_node(SSM_JSON_ARRAY);
    int64_t cap = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; return j; }
    for (;;) {
        ssm_json *v = parse_value(p, depth + 1);
        if (!v) { ssm_json_free(j); return NULL; }
        push((void ***)&j->items, j->n, &cap, v);
        j->n++;
        skip_ws(p);
        char here[32];
        if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; return j; }
        fail(p, "expected ',' or ']' in an array, got %s", describe_here(p, here, sizeof here));
        ssm_json_free(j);
        return NULL;
    }
}

static ssm_json *parse_object(parser *p, int depth) {
    ssm_json *j = new_node(SSM_JSON_OBJECT);
    int64_t cap = 0, kcap = 0, lcap = 0;
    char here[32];
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; return j; }
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            fail(p, "expected a member name (a string), got %s", describe_here(p, here, sizeof here));
            ssm_json_free(j);
            return NULL;
        }
        size_t klen;
        char *key = parse_string_raw(p, &klen);
        if (!key) { ssm_json_free(j); return NULL; }
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            fail(p, "expected ':' after member name, got %s", describe_here(p, here, sizeof here));
            free(key);
            ssm_json_free(j);
            return NULL;
        }
        p->pos++;
        ssm_json *v = parse_value(p, depth + 1);
        if (!v) { free(key); ssm_json_free(j); return NULL; }
        push((void ***)&j->keys, j->n, &kcap, key);
        if (j->n == lcap) { lcap = lcap ? lcap * 2 : 8; j->key_lens = ssm_xrealloc(j->key_lens, (size_t)lcap * sizeof(size_t)); }
        j->key_lens[j->n] = klen;
        push((void ***)&j->items, j->n, &cap, v);
        j->n++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; return j; }
        fail(p, "expected ',' or '}' in an object, got %s", describe_here(p, here, sizeof here));
        ssm_json_free(j);
        return NULL;
    }
}

static int match_word(parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->len - p->pos >= n && memcmp(p->s + p->pos, w, n) == 0) { p->pos += n; return 1; }
    return 0;
}

static ssm_json *parse_value(parser *p, int depth) {
    char here[32];
    if (depth > SSM_JSON_MAX_DEPTH) { fail(p, "nesting deeper than %d", SSM_JSON_MAX_DEPTH); return NULL; }
    skip_ws(p);
    if (p->pos >= p->len) { fail(p, "expected a value, got end of input"); return NULL; }
    char c = p->s[p->pos];
    if (c == '{') return parse_object(p, depth);
    if (c == '[') return parse_array(p, depth);
    if (c == '"') {
        ssm_json *j = new_node(SSM_JSON_STRING);
        j->str = parse_string_raw(p, &j->len);
        if (!j->str) { free(j); return NULL; }
        return j;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        ssm_json *j = new_node(SSM_JSON_NUMBER);
        if (parse_number(p, j)) { free(j); return NULL; }
        return j;
    }
    if (match_word(p, "true")) return new_node(SSM_JSON_TRUE);
    if (match_word(p, "false")) return new_node(SSM_JSON_FALSE);
    if (match_word(p, "null")) return new_node(SSM_JSON_NULL);
    fail(p, "expected a value, got %s", describe_here(p, here, sizeof here));
    return NULL;
}

ssm_json *ssm_json_parse(const char *text, size_t len, char *err, size_t errlen) {
    parser p = {text, len, 0, err, errlen, 0};
    if (err && errlen) err[0] = 0;
    ssm_json *j = parse_value(&p, 0);
    if (!j) return NULL;
    skip_ws(&p);
    if (p.pos < p.len) {
        char here[32];
        fail(&p, "unexpected %s after the value", describe_here(&p, here, sizeof here));
        ssm_json_free(j);
        return NULL;
    }
    return j;
}

ssm_json *ssm_json_parse_file(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = ssm_xmalloc(cap);
    for (;;) {
        if (n == cap) { cap *= 2; buf = ssm_xrealloc(buf, cap); }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { snprintf(err, errlen, "%s: read error", path); free(buf); return NULL; }
    char msg[300];
    ssm_json *j = ssm_json_parse(buf, n, msg, sizeof msg);
    free(buf);
    if (!j) snprintf(err, errlen, "%s: %s", path, msg);
    return j;
}

void ssm_json_free(ssm_json *j) {
    if (!j) return;
    for (int64_t i = 0; i < j->n; i++) {
        if (j->items) ssm_json_free(j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->key_lens);
    free(j->str);
    free(j);
}

const ssm_json *ssm_json_get(const ssm_json *obj, const char *key) {
    if (!obj || obj->type != SSM_JSON_OBJECT) return NULL;
    for (int64_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
    return NULL;
}

const char *ssm_json_type_name(ssm_json_type t) {
    switch (t) {
    case SSM_JSON_NULL: return "null";
    case SSM_JSON_FALSE: case SSM_JSON_TRUE: return "boolean";
    case SSM_JSON_NUMBER: return "number";
    case SSM_JSON_STRING: return "string";
    case SSM_JSON_ARRAY: return "array";
    case SSM_JSON_OBJECT: return "object";
    }
    return "?";
}

int ssm_json_get_int(const ssm_json *obj, const char *key, int64_t *out) {
    const ssm_json *v = ssm_json_get(obj, key);
    if (!v || v->type == SSM_JSON_NULL) return 0;
    if (v->type != SSM_JSON_NUMBER) return -1;
    if (v->is_int) { *out = v->integer; return 1; }
    /* 768.0 is accepted as an integer; 0.5 is not */
    if (v->number == floor(v->number) && fabs(v->number) < 9e15) { *out = (int64_t)v->number; return 1; }
    return -1;
}

int ssm_json_get_number(const ssm_json *obj, const char *key, double *out) {
    const ssm_json *v = ssm_json_get(obj, key);
    if (!v || v->type == SSM_JSON_NULL) return 0;
    if (v->type != SSM_JSON_NUMBER) return -1;
    *out = v->number;
    return 1;
}

int ssm_json_get_bool(const ssm_json *obj, const char *key, int *out) {
    const ssm_json *v = ssm_json_get(obj, key);
    if (!v || v->type == SSM_JSON_NULL) return 0;
    if (v->type != SSM_JSON_TRUE && v->type != SSM_JSON_FALSE) return -1;
    *out = v->type == SSM_JSON_TRUE;
    return 1;
}

int ssm_json_get_string(const ssm_json *obj, const char *key, const char **out) {
    const ssm_json *v = ssm_json_get(obj, key);
    if (!v || v->type == SSM_JSON_NULL) return 0;
    if (v->type != SSM_JSON_STRING) return -1;
    *out = v->str;
    return 1;
}
