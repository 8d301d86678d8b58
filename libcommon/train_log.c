/* train_log.c - the training log reader (TSV or JSON lines) and the training-curve figure. */
#include "train_log.h"
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COL_STEP, COL_SPLIT, COL_LOSS, COL_ACCURACY, COL_LR, NCOLS };
static const char *const col_names[NCOLS] = {"step", "split", "loss", "accuracy", "lr"};

typedef struct {
    const char *label;
    int64_t line;
    char *err;
    size_t errlen;
} parse_ctx;

static int fail(parse_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parse_ctx *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: line %lld: %s", c->label, (long long)c->line, msg);
    return -1;
}

static void log_append(ssm_train_log *log, int64_t *cap, const double v[NCOLS], int is_eval) {
    if (log->n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        log->step = ssm_xrealloc(log->step, (size_t)*cap * sizeof(double));
        log->loss = ssm_xrealloc(log->loss, (size_t)*cap * sizeof(double));
        log->accuracy = ssm_xrealloc(log->accuracy, (size_t)*cap * sizeof(double));
        log->lr = ssm_xrealloc(log->lr, (size_t)*cap * sizeof(double));
        log->is_eval = ssm_xrealloc(log->is_eval, (size_t)*cap);
    }
    log->step[log->n] = v[COL_STEP];
    log->loss[log->n] = v[COL_LOSS];
    log->accuracy[log->n] = v[COL_ACCURACY];
    log->lr[log->n] = v[COL_LR];
    log->is_eval[log->n] = (unsigned char)is_eval;
    log->n++;
}

/* A number field: empty, "nan" or "null" -> NaN. */
static int parse_number(parse_ctx *c, const char *s, size_t n, const char *col, double *out) {
    char buf[64];
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n == 0 || (n == 4 && strncmp(s, "null", 4) == 0)) { *out = NAN; return 0; }
    if (n >= sizeof buf) return fail(c, "%s: not a number", col);
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    *out = strtod(buf, &end);
    if (*end) return fail(c, "%s: expected a number, got '%s'", col, buf);
    return 0;
}

static int split_is_eval(parse_ctx *c, const char *s, size_t n, int *is_eval) {
    if (n == 5 && strncmp(s, "train", 5) == 0) *is_eval = 0;
    else if (n == 4 && strncmp(s, "eval", 4) == 0) *is_eval = 1;
    else return fail(c, "split: expected train or eval, got '%.*s'", (int)(n < 40 ? n : 40), s);
    return 0;
}

/* ---- TSV -------------------------------------------------------------------------------------- */
static int parse_tsv(parse_ctx *c, const char *text, size_t len, ssm_train_log *log) {
    int col_of[NCOLS];   /* field index of each known column, -1 if absent */
    int nfields = 0, have_header = 0;
    int64_t cap = 0;
    size_t pos = 0;
    for (int k = 0; k < NCOLS; k++) col_of[k] = -1;
    while (pos < len) {
        size_t eol = pos;
        while (eol < len && text[eol] != '\n') eol++;
        size_t end = eol > pos && text[eol - 1] == '\r' ? eol - 1 : eol;
        c->line++;
        const char *line = text + pos;
        size_t n = end - pos;
        pos = eol + 1;
        if (n == 0) continue;
        /* cut into fields */
        const char *f[64];
        size_t fl[64];
        int nf = 0;
        size_t s = 0;
        for (size_t i = 0; i <= n; i++)
            if (i == n || line[i] == '\t') {
                if (nf == 64) return fail(c, "more than 64 fields");
                f[nf] = line + s;
                fl[nf++] = i - s;
                s = i + 1;
            }
        if (!have_header) {
            for (int i = 0; i < nf; i++)
                for (int k = 0; k < NCOLS; k++)
                    if (fl[i] == strlen(col_names[k]) && strncmp(f[i], col_names[k], fl[i]) == 0) col_of[k] = i;
            if (col_of[COL_STEP] < 0 || col_of[COL_LOSS] < 0)
                return fail(c, "expected a header line with tab-separated columns step, split, loss, accuracy, ...");
            nfields = nf;
            have_header = 1;
            continue;
        }
        if (nf != nfields) return fail(c, "expected %d tab-separated fields, got %d", nfields, nf);
        double v[NCOLS];
        int is_eval = 0;
        for (int k = 0; k < NCOLS; k++) {
            v[k] = NAN;
            if (col_of[k] < 0) continue;
            int i = col_of[k];
            if (k == COL_SPLIT) { if (split_is_eval(c, f[i], fl[i], &is_eval) < 0) return -1; }
            else if (parse_number(c, f[i], fl[i], col_names[k], &v[k]) < 0) return -1;
        }
        if (isnan(v[COL_STEP])) return fail(c, "step is empty");
        log_append(log, &cap, v, is_eval);
    }
    if (!have_header) return fail(c, "empty log");
    return 0;
}

/* ---- JSON lines: one flat object per line ------------------------------------------------------ */
static const char *skip_ws(const char *p, const char *e) {
    while (p < e && isspace((unsigned char)*p)) p++;
    return p;
}

/* A JSON string starting at p (the quote); sets [*s, *s + *n) to its raw contents (escapes kept,
 * which is enough for the keys and values we compare).  Returns the position after it or NULL. */
static const char *json_string(const char *p, const char *e, const char **s, size_t *n) {
    if (p >= e || *p != '"') return NULL;
    const char *q = ++p;
    while (q < e && *q != '"') q += *q == '\\' ? 2 : 1;
    if (q >= e) return NULL;
    *s = p;
    *n = (size_t)(q - p);
    return q + 1;
}

static int parse_json_line(parse_ctx *c, const char *p, const char *e, double v[NCOLS], int *is_eval, int *seen_step) {
    for (int k = 0; k < NCOLS; k++) v[k] = NAN;
    *is_eval = 0;
    *seen_step = 0;
    p = skip_ws(p, e);
    if (p >= e || *p != '{') return fail(c, "expected a JSON object");
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}') return fail(c, "empty JSON object");
    for (;;) {
        const char *key, *val;
        size_t klen, vlen;
        p = json_string(skip_ws(p, e), e, &key, &klen);
        if (!p) return fail(c, "expected a quoted key");
        p = skip_ws(p, e);
        if (p >= e || *p != ':') return fail(c, "expected ':' after a key");
        p = skip_ws(p + 1, e);
        int is_string = p < e && *p == '"';
        if (is_string) {
            p = json_string(p, e, &val, &vlen);
            if (!p) return fail(c, "unterminated string");
        } else {
            val = p;
            while (p < e && *p != ',' && *p != '}' && !isspace((unsigned char)*p)) p++;
            vlen = (size_t)(p - val);
            if (vlen && (*val == '{' || *val == '[')) return fail(c, "nested values are not supported");
        }
        for (int k = 0; k < NCOLS; k++) {
            if (klen != strlen(col_names[k]) || strncmp(key, col_names[k], klen) != 0) continue;
            if (k == COL_SPLIT) {
                if (!is_string) return fail(c, "split: expected a string");
                if (split_is_eval(c, val, vlen, is_eval) < 0) return -1;
            } else {
                if (is_string) return fail(c, "%s: expected a number, got a string", col_names[k]);
                if (parse_number(c, val, vlen, col_names[k], &v[k]) < 0) return -1;
                if (k == COL_STEP) *seen_step = 1;
            }
        }
        p = skip_ws(p, e);
        if (p < e && *p == ',') { p++; continue; }
        if (p < e && *p == '}') { p = skip_ws(p + 1, e); break; }
        return fail(c, "expected ',' or '}'");
    }
    if (p != e) return fail(c, "trailing characters after the object");
    return 0;
}

static int parse_jsonl(parse_ctx *c, const char *text, size_t len, ssm_train_log *log) {
    int64_t cap = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t eol = pos;
        while (eol < len && text[eol] != '\n') eol++;
        c->line++;
        const char *p = skip_ws(text + pos, text + eol), *e = text + eol;
        pos = eol + 1;
        if (p == e) continue;
        double v[NCOLS];
        int is_eval, seen_step;
        if (parse_json_line(c, p, e, v, &is_eval, &seen_step) < 0) return -1;
        if (!seen_step || isnan(v[COL_STEP])) return fail(c, "no step");
        log_append(log, &cap, v, is_eval);
    }
    return 0;
}

int ssm_train_log_parse(const char *text, size_t len, const char *label, ssm_train_log *log, char *err, size_t errlen) {
    memset(log, 0, sizeof *log);
    parse_ctx c = {label, 0, err, errlen};
    const char *p = skip_ws(text, text + len);
    int rc = p < text + len && *p == '{' ? parse_jsonl(&c, text, len, log) : parse_tsv(&c, text, len, log);
    if (rc == 0 && log->n == 0) { c.line = 0; rc = fail(&c, "no records in the log"); }
    if (rc < 0) ssm_train_log_free(log);
    return rc;
}

void ssm_train_log_free(ssm_train_log *log) {
    free(log->step);
    free(log->loss);
    free(log->accuracy);
    free(log->lr);
    free(log->is_eval);
    memset(log, 0, sizeof *log);
}

/* ---- the figure ---------------------------------------------------------------------------- */
/* Copies the records of one split that have a finite value into (x, y); returns their count. */
static int64_t select_split(const ssm_train_log *log, const double *values, int eval, double *x, double *y) {
    int64_t m = 0;
    for (int64_t i = 0; i < log->n; i++)
        if (log->is_eval[i] == eval && isfinite(values[i])) { x[m] = log->step[i]; y[m] = values[i]; m++; }
    return m;
}

void ssm_draw_training_curves(ssm_figure *fig, const ssm_train_log *log, const char *title, int logy) {
    int64_t n = log->n;
    double *buf = ssm_xmalloc((size_t)(8 * n + 8) * sizeof(double));
    double *x[4], *y[4];
    for (int k = 0; k < 4; k++) { x[k] = buf + (2 * k) * n; y[k] = buf + (2 * k + 1) * n; }
    int64_t m[4];
    m[0] = select_split(log, log->loss, 0, x[0], y[0]);
    m[1] = select_split(log, log->loss, 1, x[1], y[1]);
    m[2] = select_split(log, log->accuracy, 0, x[2], y[2]);
    m[3] = select_split(log, log->accuracy, 1, x[3], y[3]);
    int panels = m[2] + m[3] > 0 ? 2 : 1;
    double top = 0;
    if (title && *title) {
        cairo_set_source_rgb(fig->cr, 0, 0, 0);
        cairo_set_font_size(fig->cr, 13);
        cairo_text_extents_t e;
        cairo_text_extents(fig->cr, title, &e);
        cairo_move_to(fig->cr, fig->width / 2 - e.x_advance / 2, 22);
        cairo_show_text(fig->cr, title);
        top = 24;
    }
    double pw = fig->width / panels;
    for (int p = 0; p < panels; p++) {
        ssm_series s[2];
        int ns = 0;
        for (int split = 0; split < 2; split++) {
            int k = 2 * p + split;
            if (m[k] == 0) continue;
            s[ns++] = (ssm_series){x[k], y[k], m[k], split ? "eval" : "train", split, split, split && m[k] <= 400};
        }
        ssm_axes ax = {p == 0 ? "loss" : "accuracy", "step", p == 0 ? "loss" : "accuracy", p == 0 && logy, 0, 0};
        ssm_draw_lines(fig, (ssm_rect){p * pw, top, pw, fig->height - top}, &ax, s, ns);
    }
    free(buf);
}
