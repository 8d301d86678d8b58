/* test_bpe.c - the JSON parser and the byte-level BPE tokenizer.
 *
 * JSON: values, escapes, exact integers, and one-line errors with line/column for malformed text.
 * BPE: tokenizer.json files built here (random vocabularies and ranked merges) against a naive
 * reference BPE written from the definition (merge the lowest-ranked adjacent pair, all its
 * occurrences left to right, until none is left); merge order; both merge spellings; round trips
 * on random bytes; unknown bytes, unk_token and unknown ids; added tokens; the GPT-2 pre-tokenizer
 * against Python's re running the GPT-2 regex restricted to ASCII (exact there). */
#include "check.h"
#include "bpe.h"
#include "cli.h"
#include "json.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- JSON ------------------------------------------------------------------------------------ */
static void test_json_values(void) {
    const char *doc =
        "{\"a\": [1, -2.5e3, true, false, null, \"x\\n\\u00e9\\ud83d\\ude00\\u0000y\"],\n"
        " \"big\": 9007199254740993, \"neg\": -0, \"obj\": {\"k\": {}}, \"e\": []}";
    char err[300];
    ssm_json *j = ssm_json_parse(doc, strlen(doc), err, sizeof err);
    CHECK(j != NULL, "parse: %s", err);
    if (!j) return;
    const ssm_json *a = ssm_json_get(j, "a");
    CHECK(a && a->type == SSM_JSON_ARRAY && a->n == 6, "array a");
    if (a && a->n == 6) {
        CHECK(a->items[0]->is_int && a->items[0]->integer == 1, "1");
        CHECK(!a->items[1]->is_int && a->items[1]->number == -2500.0, "-2.5e3");
        CHECK(a->items[2]->type == SSM_JSON_TRUE && a->items[3]->type == SSM_JSON_FALSE, "bools");
        CHECK(a->items[4]->type == SSM_JSON_NULL, "null");
        const char want[] = "x\n\xc3\xa9\xf0\x9f\x98\x80\0y";
        CHECK(a->items[5]->len == sizeof want - 1 && memcmp(a->items[5]->str, want, sizeof want - 1) == 0,
              "escapes decode to UTF-8 (len %zu)", a->items[5]->len);
    }
    int64_t v;
    CHECK(ssm_json_get_int(j, "big", &v) == 1 && v == 9007199254740993LL, "exact int64 beyond 2^53");
    CHECK(ssm_json_get_int(j, "obj", &v) == -1, "type mismatch is -1");
    CHECK(ssm_json_get_int(j, "missing", &v) == 0, "absent is 0");
    CHECK(ssm_json_get(ssm_json_get(j, "obj"), "k")->type == SSM_JSON_OBJECT, "nested object");
    ssm_json_free(j);
}

static void test_json_errors(void) {
    struct { const char *text, *want; } bad[] = {
        {"[1, 2,]", "line 1, column 7: expected a value"},
        {"{\"a\": 1,}", "expected a member name"},
        {"01", "leading zero"},
        {"[1] x", "unexpected 'x' after the value"},
        {"\"abc", "unterminated string"},
        {"\"a\tb\"", "control character 0x09"},
        {"\"\\ud800x\"", "not followed by a low surrogate"},
        {"\"\\udc00\"", "lone low surrogate"},
        {"\"\\q\"", "invalid escape"},
        {"NaN", "expected a value, got 'N'"},
        {"{\"a\" 1}", "expected ':'"},
        {"// c\n1", "expected a value, got '/'"},
        {"\n\n  [1 2]", "line 3, column 6: expected ',' or ']'"},
        {"", "got end of input"},
        {"1.", "expected a digit after '.'"},
        {"\"\xff\"", "invalid UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[300] = "";
        ssm_json *j = ssm_json_parse(bad[i].text, strlen(bad[i].text), err, sizeof err);
        CHECK(j == NULL, "'%s' must not parse", bad[i].text);
        CHECK(strstr(err, bad[i].want) != NULL, "'%s': message '%s' lacks '%s'", bad[i].text, err, bad[i].want);
        CHECK(strchr(err, '\n') == NULL, "one-line message");
        ssm_json_free(j);
    }
    /* nesting limit */
    char deep[1200];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    char err[300];
    ssm_json *j = ssm_json_parse(deep, 1200, err, sizeof err);
    CHECK(j == NULL && strstr(err, "nesting deeper"), "depth limit: %s", err);
    ssm_json_free(j);
}

/* ---- building tokenizer.json files ----------------------------------------------------------- */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) { b->cap = (b->n + n + 1) * 2; b->s = ssm_xrealloc(b->s, b->cap); }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Appends raw bytes as a JSON string in the GPT-2 alphabet (UTF-8, escaping " and \). */
static void sb_alphabet(sbuf *b, const char *raw, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned cp = ssm_gpt2_byte_to_codepoint((unsigned char)raw[i]);
        char u[4];
        if (cp == '"' || cp == '\\') { u[0] = '\\'; u[1] = (char)cp; sb_put(b, u, 2); }
        else if (cp < 0x80) { u[0] = (char)cp; sb_put(b, u, 1); }
        else { u[0] = (char)(0xc0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3f)); sb_put(b, u, 2); }
    }
}

typedef struct {
    char *bytes[4096];
    size_t len[4096];
    int n;
    int ml[4096], mr[4096];   /* merges as token indices, in rank order */
    int nm;
} vocab_spec;

static int spec_find(const vocab_spec *v, const char *s, size_t n) {
    for (int i = 0; i < v->n; i++) if (v->len[i] == n && memcmp(v->bytes[i], s, n) == 0) return i;
    return -1;
}

static int spec_add(vocab_spec *v, const char *s, size_t n) {
    int i = spec_find(v, s, n);
    if (i >= 0) return i;
    v->bytes[v->n] = ssm_xmalloc(n + 1);
    memcpy(v->bytes[v->n], s, n);
    v->len[v->n] = n;
    return v->n++;
}

static void spec_free(vocab_spec *v) { for (int i = 0; i < v->n; i++) free(v->bytes[i]); }

/* The spec as tokenizer.json text.  pair_form: merges as ["a","b"]; skip_byte >= 0 leaves that
 * single byte out of the vocabulary; extra: text inserted in the "model" object. */
static char *spec_json(const vocab_spec *v, int pair_form, int use_regex, const char *model_extra,
                       const char *added_tokens) {
    sbuf b = {0};
    sb_str(&b, "{\"version\": \"1.0\", \"added_tokens\": [");
    sb_str(&b, added_tokens ? added_tokens : "");
    sb_str(&b, "], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
               "\"trim_offsets\": true, \"use_regex\": ");
    sb_str(&b, use_regex ? "true" : "false");
    sb_str(&b, "}, \"model\": {\"type\": \"BPE\", ");
    if (model_extra) sb_str(&b, model_extra);
    sb_str(&b, "\"vocab\": {");
    for (int i = 0; i < v->n; i++) {
        char num[32];
        sb_str(&b, i ? ", \"" : "\"");
        sb_alphabet(&b, v->bytes[i], v->len[i]);
        snprintf(num, sizeof num, "\": %d", i);
        sb_str(&b, num);
    }
    sb_str(&b, "}, \"merges\": [");
    for (int i = 0; i < v->nm; i++) {
        sb_str(&b, i ? ", " : "");
        sb_str(&b, pair_form ? "[\"" : "\"");
        sb_alphabet(&b, v->bytes[v->ml[i]], v->len[v->ml[i]]);
        sb_str(&b, pair_form ? "\", \"" : " ");
        sb_alphabet(&b, v->bytes[v->mr[i]], v->len[v->mr[i]]);
        sb_str(&b, pair_form ? "\"]" : "\"");
    }
    sb_str(&b, "]}}");
    return b.s;
}

static ssm_bpe *load_text(const char *json, char *err, size_t errlen) {
    char perr[256];
    ssm_json *j = ssm_json_parse(json, strlen(json), perr, sizeof perr);
    if (!j) { snprintf(err, errlen, "json: %s", perr); return NULL; }
    ssm_bpe *t = ssm_bpe_from_json(j, "test.json", err, errlen);
    ssm_json_free(j);
    return t;
}

/* All 256 bytes, then nm random merges of existing tokens over the alphabet `letters`. */
static void random_spec(vocab_spec *v, int nm, const char *letters) {
    memset(v, 0, sizeof *v);
    for (int c = 0; c < 256; c++) { char ch = (char)c; spec_add(v, &ch, 1); }
    int nl = (int)strlen(letters);
    int tries = 0;
    while (v->nm < nm && tries++ < 100000) {
        /* pick pieces among the alphabet's tokens and the merged ones, so merges chain */
        int a = test_next() % 3 ? (unsigned char)letters[test_next() % nl] : 256 + (int)(test_next() % (v->n - 255));
        int c = test_next() % 3 ? (unsigned char)letters[test_next() % nl] : 256 + (int)(test_next() % (v->n - 255));
        if (a >= v->n) a = (unsigned char)letters[0];
        if (c >= v->n) c = (unsigned char)letters[1 % nl];
        if (v->len[a] + v->len[c] > 12) continue;
        char cat[32];
        memcpy(cat, v->bytes[a], v->len[a]);
        memcpy(cat + v->len[a], v->bytes[c], v->len[c]);
        int dup = 0;
        for (int i = 0; i < v->nm; i++) if (v->ml[i] == a && v->mr[i] == c) dup = 1;
        if (dup) continue;
        int m = spec_add(v, cat, v->len[a] + v->len[c]);
        v->ml[v->nm] = a; v->mr[v->nm] = c; v->nm++;
        (void)m;
    }
}

/* The reference BPE from the definition HF tokenizers implements, on one chunk: repeatedly merge
 * the single pair occurrence with the lowest (rank, position) among the current symbols.  (GPT-2's
 * original Python merges every occurrence of the best pair at once; the two differ when a merge
 * creates a pair of lower rank than itself, which random merge tables do produce.)  Returns the
 * token count, ids in out. */
static int ref_bpe(const vocab_spec *v, const char *s, size_t n, int *out) {
    int m = 0;
    for (size_t i = 0; i < n; i++) out[m++] = (unsigned char)s[i];
    for (;;) {
        int best = -1, best_rank = 1 << 30, best_pos = -1;
        for (int i = 0; i + 1 < m; i++)
            for (int r = 0; r < v->nm && r < best_rank; r++)
                if (v->ml[r] == out[i] && v->mr[r] == out[i + 1]) { best_rank = r; best = r; best_pos = i; break; }
        if (best < 0) return m;
        char cat[32];
        memcpy(cat, v->bytes[v->ml[best]], v->len[v->ml[best]]);
        memcpy(cat + v->len[v->ml[best]], v->bytes[v->mr[best]], v->len[v->mr[best]]);
        out[best_pos] = spec_find(v, cat, v->len[v->ml[best]] + v->len[v->mr[best]]);
        memmove(out + best_pos + 1, out + best_pos + 2, (size_t)(m - best_pos - 2) * sizeof *out);
        m--;
    }
}

static void test_against_reference(void) {
    for (int trial = 0; trial < 6; trial++) {
        vocab_spec v;
        random_spec(&v, 40 + trial * 40, trial % 2 ? "ab" : "abcd");
        char *json = spec_json(&v, trial % 2, 0, NULL, NULL);
        char err[300];
        ssm_bpe *t = load_text(json, err, sizeof err);
        CHECK(t != NULL, "load random tokenizer: %s", err);
        free(json);
        if (!t) { spec_free(&v); continue; }
        CHECK(ssm_bpe_merge_count(t) == v.nm, "merge count");
        int mismatches = 0;
        for (int s = 0; s < 200; s++) {
            char text[80];
            size_t n = 1 + test_next() % 79;
            const char *alpha = trial % 2 ? "ab" : "abcd";
            for (size_t i = 0; i < n; i++) text[i] = alpha[test_next() % strlen(alpha)];
            int want[80];
            int nw = ref_bpe(&v, text, n, want);
            int32_t *got;
            int64_t ng = ssm_bpe_encode(t, text, n, &got, err, sizeof err);
            int same = ng == nw;
            for (int i = 0; same && i < nw; i++) same = got[i] == want[i];
            if (!same && mismatches++ < 3) CHECK(same, "trial %d: '%.*s': %lld tokens, reference %d", trial, (int)n, text, (long long)ng, nw);
            free(got);
        }
        CHECK(mismatches == 0, "trial %d: %d of 200 strings differ from the reference BPE", trial, mismatches);
        ssm_bpe_free(t);
        spec_free(&v);
    }
}

/* "abc" with merges (b c) before (a b) is a|bc; the other order is ab|c. */
static void test_merge_order(void) {
    for (int order = 0; order < 2; order++) {
        vocab_spec v;
        memset(&v, 0, sizeof v);
        for (int c = 0; c < 256; c++) { char ch = (char)c; spec_add(&v, &ch, 1); }
        int ab = spec_add(&v, "ab", 2), bc = spec_add(&v, "bc", 2);
        if (order == 0) { v.ml[0] = 'b'; v.mr[0] = 'c'; v.ml[1] = 'a'; v.mr[1] = 'b'; }
        else { v.ml[0] = 'a'; v.mr[0] = 'b'; v.ml[1] = 'b'; v.mr[1] = 'c'; }
        v.nm = 2;
        for (int pair_form = 0; pair_form < 2; pair_form++) {
            char *json = spec_json(&v, pair_form, 1, NULL, NULL);
            char err[300];
            ssm_bpe *t = load_text(json, err, sizeof err);
            free(json);
            CHECK(t != NULL, "load: %s", err);
            if (!t) continue;
            int32_t *ids;
            int64_t n = ssm_bpe_encode(t, "abc", 3, &ids, err, sizeof err);
            if (order == 0) CHECK(n == 2 && ids[0] == 'a' && ids[1] == bc, "(b c) first: a|bc (pair form %d)", pair_form);
            else CHECK(n == 2 && ids[0] == ab && ids[1] == 'c', "(a b) first: ab|c (pair form %d)", pair_form);
            free(ids);
            ssm_bpe_free(t);
        }
        spec_free(&v);
    }
}

/* GPT-2 style: ' ' is 'Ġ' in the file; " the" with merges (Ġ t), (Ġt h), (Ġth e) is one token. */
static void test_space_alphabet(void) {
    const char *json =
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<|endoftext|>\", \"special\": true}],"
        " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\", \"add_prefix_space\": false}]},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"<|endoftext|>\": 0, \"t\": 1, \"h\": 2, \"e\": 3, \"\\u0120\": 4,"
        " \"\\u0120t\": 5, \"\\u0120th\": 6, \"\\u0120the\": 7, \"\\u010a\": 8, \"th\": 9},"
        " \"merges\": [\"\\u0120 t\", \"\\u0120t h\", [\"\\u0120th\", \"e\"], \"t h\"]}}";
    char err[300];
    ssm_bpe *t = load_text(json, err, sizeof err);
    CHECK(t != NULL, "load: %s", err);
    if (!t) return;
    CHECK(ssm_bpe_vocab_size(t) == 10, "vocab size");
    int32_t *ids;
    const char *text = "the the<|endoftext|>\nthe";
    int64_t n = ssm_bpe_encode(t, text, strlen(text), &ids, err, sizeof err);
    int want[] = {9, 3, 7, 0, 8, 9, 3};
    CHECK(n == 7, "token count %lld: %s", (long long)n, n < 0 ? err : "");
    for (int i = 0; n == 7 && i < 7; i++) CHECK(ids[i] == want[i], "token %d: %d, want %d", i, ids[i], want[i]);
    char *back;
    size_t blen;
    if (n > 0) {
        CHECK(ssm_bpe_decode(t, ids, n, &back, &blen, err, sizeof err) == 0, "decode");
        CHECK(blen == strlen(text) && memcmp(back, text, blen) == 0, "decode gives the text back");
        free(back);
        free(ids);
    }
    /* 'x' has no token and there is no unk_token */
    n = ssm_bpe_encode(t, "tx", 2, &ids, err, sizeof err);
    CHECK(n == -1 && strstr(err, "byte 0x78 has no token"), "unknown byte: %s", err);
    int32_t bad[] = {3, 10};
    CHECK(ssm_bpe_decode(t, bad, 2, &back, &blen, err, sizeof err) == -1 && strstr(err, "token id 10 is not in the vocabulary"),
          "unknown id: %s", err);
    int32_t neg[] = {-1};
    CHECK(ssm_bpe_decode(t, neg, 1, &back, &blen, err, sizeof err) == -1, "negative id");
    ssm_bpe_free(t);
}

static void test_unk_and_load_errors(void) {
    /* unk_token replaces bytes that have no token */
    const char *json =
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\","
        " \"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"ab\": 3}, \"merges\": [\"a b\"]}}";
    char err[300];
    ssm_bpe *t = load_text(json, err, sizeof err);
    CHECK(t != NULL, "load: %s", err);
    if (t) {
        int32_t *ids;
        int64_t n = ssm_bpe_encode(t, "abzab", 5, &ids, err, sizeof err);
        CHECK(n == 3 && ids[0] == 3 && ids[1] == 0 && ids[2] == 3, "unk in the middle (%lld)", (long long)n);
        if (n >= 0) free(ids);
        ssm_bpe_free(t);
    }
    struct { const char *json, *want; } bad[] = {
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
         "model.merges[0] ('a b'): the merged token 'ab' is not in the vocabulary"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0, \"ab\": 1}, \"merges\": [\"a b\"]}}",
         "model.merges[0] ('a b'): 'b' is not in the vocabulary"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}",
         "model.merges[0]: expected"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
         "id 0 is given to two tokens"},
        {"{\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"model\": {\"vocab\": {}, \"merges\": []}}",
         "not ByteLevel"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
         "model type 'WordPiece' is not supported"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}}",
         "unk_token '<unk>' is not in the vocabulary"},
        {"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": -3}, \"merges\": []}}",
         "id is not an integer"},
        {"{\"vocab\": {}}", "no \"model\" object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        t = load_text(bad[i].json, err, sizeof err);
        CHECK(t == NULL, "bad tokenizer %zu must not load", i);
        CHECK(strstr(err, bad[i].want) && strncmp(err, "test.json: ", 11) == 0, "bad tokenizer %zu: '%s' lacks '%s'", i, err, bad[i].want);
        ssm_bpe_free(t);
    }
}

/* decode(encode(x)) == x for random byte strings, pre-tokenizer on, added tokens present. */
static void test_round_trip(void) {
    vocab_spec v;
    random_spec(&v, 300, "ab \n'e\xc3\xa9");
    char *json = spec_json(&v, 0, 1, NULL,
                           "{\"id\": 3000, \"content\": \"<|endoftext|>\", \"special\": true},"
                           "{\"id\": 3001, \"content\": \"  \", \"special\": false}");
    char err[300];
    ssm_bpe *t = load_text(json, err, sizeof err);
    free(json);
    CHECK(t != NULL, "load: %s", err);
    if (!t) { spec_free(&v); return; }
    int failures = 0;
    for (int trial = 0; trial < 300; trial++) {
        size_t n = test_next() % 200;
        char text[256];
        for (size_t i = 0; i < n; i++) {
            unsigned r = (unsigned)test_next();
            /* a mix of any byte, the merge alphabet, spaces and an added token */
            if (r % 4 == 0) text[i] = (char)(r >> 8);
            else text[i] = "ab \n'e\xc3\xa9 .1"[(r >> 8) % 11];
        }
        if (n > 20 && trial % 5 == 0) memcpy(text + 5, "<|endoftext|>", 13);
        int32_t *ids;
        int64_t m = ssm_bpe_encode(t, text, n, &ids, err, sizeof err);
        char *back = NULL;
        size_t blen = 0;
        int ok = m >= 0 && ssm_bpe_decode(t, ids, m, &back, &blen, err, sizeof err) == 0 && blen == n &&
                 memcmp(back, text, n) == 0;
        if (!ok && failures++ < 3) CHECK(ok, "round trip of %zu random bytes (trial %d): %s", n, trial, err);
        if (m >= 0) free(ids);
        free(back);
    }
    CHECK(failures == 0, "%d of 300 round trips failed", failures);
    /* the added token is matched as one id */
    int32_t *ids;
    int64_t m = ssm_bpe_encode(t, "a<|endoftext|>b", 15, &ids, err, sizeof err);
    CHECK(m == 3 && ids[1] == 3000, "added token matched (%lld tokens)", (long long)m);
    if (m >= 0) free(ids);
    ssm_bpe_free(t);
    spec_free(&v);
}

static void test_alphabet(void) {
    CHECK(ssm_gpt2_byte_to_codepoint(' ') == 0x120, "' ' is U+0120");
    CHECK(ssm_gpt2_byte_to_codepoint('\n') == 0x10a, "'\\n' is U+010A");
    CHECK(ssm_gpt2_byte_to_codepoint(0) == 0x100, "0 is U+0100");
    CHECK(ssm_gpt2_byte_to_codepoint(0xad) == 0x143, "0xad is U+0143");
    CHECK(ssm_gpt2_byte_to_codepoint('A') == 'A' && ssm_gpt2_byte_to_codepoint(0xe9) == 0xe9, "printable bytes are themselves");
    int seen[400] = {0}, ok = 1;
    for (int b = 0; b < 256; b++) {
        unsigned cp = ssm_gpt2_byte_to_codepoint((unsigned char)b);
        if (cp >= 400 || seen[cp]++ || ssm_gpt2_codepoint_to_byte(cp) != b) ok = 0;
    }
    CHECK(ok, "byte <-> code point is a bijection");
    CHECK(ssm_gpt2_codepoint_to_byte(0x144) == -1 && ssm_gpt2_codepoint_to_byte(0xad) == -1, "outside the alphabet");
}

/* Splits text with ssm_gpt2_split_next into "|"-joined chunks. */
static void split_string(const char *s, size_t n, char *out) {
    size_t pos = 0, o = 0;
    while (pos < n) {
        size_t end = ssm_gpt2_split_next(s, n, pos);
        if (pos) out[o++] = '|';
        memcpy(out + o, s + pos, end - pos);
        o += end - pos;
        pos = end;
    }
    out[o] = 0;
}

static void test_pretokenizer_known(void) {
    struct { const char *in, *want; } cases[] = {
        {"Hello world", "Hello| world"},
        {"I'm here's 'x", "I|'m| here|'s| '|x"},
        {"a  b", "a| | b"},
        {"a\n\nb", "a|\n|\n|b"},
        {"x = 42;  ", "x| =| 42|;|  "},
        {"it'll've", "it|'ll|'ve"},
        {"caf\xc3\xa9 na\xc3\xafve", "caf\xc3\xa9| na\xc3\xafve"},
        {"a\xe2\x80\x94" "b", "a|\xe2\x80\x94|b"},              /* em dash is punctuation */
        {"x\xc2\xa0y", "x|\xc2\xa0|y"},                            /* no-break space is a space */
        {"\xd9\xa3\xd9\xa4 ab", "\xd9\xa3\xd9\xa4| ab"},           /* Arabic-Indic digits */
        {"a\xff\xfe" "b", "a\xff\xfe" "b"},                        /* invalid bytes: letters */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[256];
        split_string(cases[i].in, strlen(cases[i].in), out);
        CHECK(strcmp(out, cases[i].want) == 0, "split '%s': got '%s', want '%s'", cases[i].in, out, cases[i].want);
    }
}

/* Random ASCII strings split by Python's re with the GPT-2 regex restricted to ASCII. */
static void test_pretokenizer_python(void) {
    if (access("/usr/bin/python3", X_OK) != 0) { CHECK(0, "/usr/bin/python3 is needed for the pre-tokenizer reference"); return; }
    char path[] = "/tmp/ssm_test_bpe_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    enum { NS = 300 };
    static char texts[NS][64];
    static size_t lens[NS];
    const char *alpha = "ab Z9 \n\t'sre.,!-  \r";
    for (int i = 0; i < NS; i++) {
        lens[i] = 1 + test_next() % 60;
        for (size_t k = 0; k < lens[i]; k++) texts[i][k] = alpha[test_next() % strlen(alpha)];
        for (size_t k = 0; k < lens[i]; k++) fprintf(f, "%02x", (unsigned char)texts[i][k]);
        fputc('\n', f);
    }
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import re,sys\n"
             "p=re.compile(r\\\"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\\\\s A-Za-z0-9]+|\\\\s+(?!\\\\S)|\\\\s+\\\", re.ASCII)\n"
             "for l in open(sys.argv[1]):\n"
             " s=bytes.fromhex(l.strip()).decode('ascii')\n"
             " print(' '.join(str(m.end()) for m in p.finditer(s)))\" %s", path);
    FILE *py = popen(cmd, "r");
    CHECK(py != NULL, "run python");
    if (!py) { unlink(path); return; }
    char line[1024];
    int bad = 0, count = 0;
    for (int i = 0; i < NS && fgets(line, sizeof line, py); i++, count++) {
        char mine[1024];
        size_t pos = 0, o = 0;
        while (pos < lens[i]) {
            pos = ssm_gpt2_split_next(texts[i], lens[i], pos);
            o += (size_t)snprintf(mine + o, sizeof mine - o, o ? " %zu" : "%zu", pos);
        }
        mine[o] = 0;
        line[strcspn(line, "\n")] = 0;
        if (strcmp(mine, line) && bad++ < 3)
            CHECK(0, "split of '%.*s': ends %s, python re %s", (int)lens[i], texts[i], mine, line);
    }
    CHECK(pclose(py) == 0 && count == NS, "python reference ran (%d lines)", count);
    CHECK(bad == 0, "%d of %d random strings split differently from python re", bad, NS);
    unlink(path);
}

int main(void) {
    test_seed_from_env("test_bpe");
    test_json_values();
    test_json_errors();
    test_alphabet();
    test_pretokenizer_known();
    test_pretokenizer_python();
    test_merge_order();
    test_space_alphabet();
    test_unk_and_load_errors();
    test_against_reference();
    test_round_trip();
    return check_summary("test_bpe");
}
