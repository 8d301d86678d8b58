/* bpe.c - byte-level BPE (see bpe.h for what is supported and how it differs from the official
 * tokenizer).  Tables: token id -> raw bytes; raw bytes -> id (open addressing); (left id, right
 * id) -> (rank, merged id) (open addressing on a 64-bit key). */
#include "bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    char *bytes;    /* raw bytes (NULL: no token has this id) */
    size_t len;
} token_entry;

typedef struct {
    uint64_t key;   /* (left << 32) | right, UINT64_MAX = empty */
    int32_t rank, merged;
} merge_slot;

typedef struct {
    char *text;     /* the literal text matched in the input */
    size_t len;
    int32_t id;
} added_token;

struct ssm_bpe {
    token_entry *tokens;       /* by id, n_ids entries */
    int64_t n_ids;
    int32_t *byte_slots;       /* hash of raw bytes -> id, -1 empty; cap_bytes slots */
    size_t cap_bytes;
    merge_slot *merges;
    size_t cap_merges;
    int64_t n_merges;
    int32_t byte_token[256];   /* id of the single-byte token, -1 if none */
    int32_t unk_id;            /* -1 if none */
    int ignore_merges;         /* a whole chunk found in the vocabulary is one token */
    int add_prefix_space;
    int use_regex;
    added_token *added;
    int n_added;
};

/* ---- GPT-2 byte <-> unicode alphabet -------------------------------------------------------- */
static int is_printable_byte(unsigned b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/* The non-printable bytes take U+0100.. in increasing byte order: 68 of them, up to U+0143. */
unsigned ssm_gpt2_byte_to_codepoint(unsigned char b) {
    if (is_printable_byte(b)) return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++) if (!is_printable_byte(x)) k++;
    return 256 + k;
}

int ssm_gpt2_codepoint_to_byte(unsigned cp) {
    static int table[256 + 68];   /* code point -> byte + 1 (0 = not in the alphabet) */
    static int ready;
    if (!ready) {   /* idempotent, so a race between threads only repeats the same writes */
        for (unsigned b = 0; b < 256; b++) table[ssm_gpt2_byte_to_codepoint((unsigned char)b)] = (int)b + 1;
        ready = 1;
    }
    return cp < 256 + 68 ? table[cp] - 1 : -1;
}

/* Decodes one UTF-8 code point at s[0..n); returns its length (1 for an invalid byte, with
 * *cp = 0xFFFFFFFF). */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    size_t k;
    unsigned v;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { k = 2; v = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { k = 3; v = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 4; v = c & 0x07; }
    else { *cp = 0xFFFFFFFFu; return 1; }
    if (n < k) { *cp = 0xFFFFFFFFu; return 1; }
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) { *cp = 0xFFFFFFFFu; return 1; }
        v = (v << 6) | (s[i] & 0x3f);
    }
    if ((k == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) || (k == 4 && (v < 0x10000 || v > 0x10ffff))) {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    *cp = v;
    return k;
}

/* Maps a vocabulary string (GPT-2 alphabet, UTF-8) to raw bytes in out (capacity >= len).
 * Returns the raw length, or -1 if a code point is not in the alphabet. */
static long alphabet_to_bytes(const char *s, size_t len, char *out) {
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned cp;
        size_t k = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        int b = cp == 0xFFFFFFFFu ? -1 : ssm_gpt2_codepoint_to_byte(cp);
        if (b < 0) return -1;
        out[n++] = (char)b;
        i += k;
    }
    return (long)n;
}

/* ---- the pre-tokenizer's character classes ------------------------------------------------- */
enum { CLS_SPACE, CLS_LETTER, CLS_NUMBER, CLS_OTHER };

typedef struct { unsigned lo, hi; } cp_range;

static const cp_range white_space[] = {
    {0x09, 0x0d}, {0x20, 0x20}, {0x85, 0x85}, {0xa0, 0xa0}, {0x1680, 0x1680}, {0x2000, 0x200a},
    {0x2028, 0x2029}, {0x202f, 0x202f}, {0x205f, 0x205f}, {0x3000, 0x3000},
};
static const cp_range numbers[] = {
    {0x30, 0x39}, {0xb2, 0xb3}, {0xb9, 0xb9}, {0xbc, 0xbe}, {0x660, 0x669}, {0x6f0, 0x6f9},
    {0x7c0, 0x7c9}, {0x966, 0x96f}, {0x9e6, 0x9ef}, {0xa66, 0xa6f}, {0xae6, 0xaef}, {0xb66, 0xb6f},
    {0xbe6, 0xbf2}, {0xc66, 0xc6f}, {0xce6, 0xcef}, {0xd66, 0xd78}, {0xe50, 0xe59}, {0xed0, 0xed9},
    {0xf20, 0xf33}, {0x1040, 0x1049}, {0x17e0, 0x17e9}, {0x1810, 0x1819}, {0x2070, 0x2070},
    {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249b},
    {0x24ea, 0x24ff}, {0x2776, 0x2793}, {0x3007, 0x3007}, {0x3021, 0x3029}, {0xff10, 0xff19},
};
/* Neither letter nor number nor space: punctuation, symbols, marks (approximate, see bpe.h). */
static const cp_range others[] = {
    {0x00, 0x08}, {0x0e, 0x1f}, {0x21, 0x2f}, {0x3a, 0x40}, {0x5b, 0x60}, {0x7b, 0x84},
    {0x86, 0x9f}, {0xa1, 0xa9}, {0xab, 0xb1}, {0xb4, 0xb4}, {0xb6, 0xb8}, {0xbb, 0xbb},
    {0xbf, 0xbf}, {0xd7, 0xd7}, {0xf7, 0xf7}, {0x2c2, 0x2c5}, {0x2d2, 0x2df}, {0x2e5, 0x2eb},
    {0x2ed, 0x2ed}, {0x2ef, 0x2ff}, {0x300, 0x36f}, {0x37e, 0x37e}, {0x384, 0x385}, {0x387, 0x387},
    {0x2010, 0x2027}, {0x2030, 0x205e}, {0x20a0, 0x20cf}, {0x20d0, 0x20ff}, {0x2190, 0x23ff},
    {0x2400, 0x245f}, {0x2500, 0x2775}, {0x2794, 0x2bff}, {0x3001, 0x3006}, {0x3008, 0x3020},
    {0xfe00, 0xfe0f}, {0xff01, 0xff0f}, {0xff1a, 0xff20}, {0xff3b, 0xff40}, {0xff5b, 0xff65},
    {0x1f000, 0x1faff},
};

static int in_ranges(unsigned cp, const cp_range *r, size_t n) {
    for (size_t i = 0; i < n; i++) if (cp >= r[i].lo && cp <= r[i].hi) return 1;
    return 0;
}

static int char_class(unsigned cp) {
    if (cp == 0xFFFFFFFFu) return CLS_LETTER;   /* invalid UTF-8 byte */
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CLS_LETTER;
        if (cp >= '0' && cp <= '9') return CLS_NUMBER;
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return CLS_SPACE;
        return CLS_OTHER;
    }
    if (in_ranges(cp, white_space, sizeof white_space / sizeof *white_space)) return CLS_SPACE;
    if (in_ranges(cp, numbers, sizeof numbers / sizeof *numbers)) return CLS_NUMBER;
    if (in_ranges(cp, others, sizeof others / sizeof *others)) return CLS_OTHER;
    return CLS_LETTER;
}

/* Class and length of the character at s[pos]. */
static int class_at(const char *s, size_t n, size_t pos, size_t *clen) {
    unsigned cp;
    *clen = utf8_decode((const unsigned char *)s + pos, n - pos, &cp);
    return char_class(cp);
}

/* End of the run of characters of class cls starting at pos. */
static size_t run_end(const char *s, size_t n, size_t pos, int cls) {
    while (pos < n) {
        size_t k = 0;
        if (class_at(s, n, pos, &k) != cls) break;
        pos += k;
    }
    return pos;
}

size_t ssm_gpt2_split_next(const char *s, size_t n, size_t pos) {
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (s[pos] == '\'' && pos + 1 < n) {
        char a = s[pos + 1], b = pos + 2 < n ? s[pos + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
    }
    /* ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+' */
    size_t start = pos + (s[pos] == ' ' ? 1 : 0);
    if (start < n) {
        size_t k = 0;
        int cls = class_at(s, n, start, &k);
        if (cls != CLS_SPACE) return run_end(s, n, start, cls);
    }
    /* '\s+(?!\S)|\s+': a whitespace run; when a non-space follows a run of two or more, its last
     * character is left to start the next chunk (it becomes the ' ?' of a word when it is ' '). */
    size_t end = run_end(s, n, pos, CLS_SPACE);
    if (end == n) return end;
    size_t last = pos, k;
    for (size_t i = pos; i < end; i += k) { class_at(s, n, i, &k); last = i; }
    return last > pos ? last : end;
}

/* ---- hash tables ----------------------------------------------------------------------------- */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int32_t ssm_bpe_token_id(const ssm_bpe *t, const char *s, size_t len) {
    size_t mask = t->cap_bytes - 1;
    for (size_t i = hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->byte_slots[i];
        if (id < 0) return -1;
        const token_entry *e = &t->tokens[id];
        if (e->len == len && memcmp(e->bytes, s, len) == 0) return id;
    }
}

/* Inserts id (whose bytes are set); returns the id already holding those bytes, or -1. */
static int32_t bytes_insert(ssm_bpe *t, int32_t id) {
    const token_entry *e = &t->tokens[id];
    size_t mask = t->cap_bytes - 1;
    for (size_t i = hash_bytes(e->bytes, e->len) & mask;; i = (i + 1) & mask) {
        int32_t o = t->byte_slots[i];
        if (o < 0) { t->byte_slots[i] = id; return -1; }
        if (t->tokens[o].len == e->len && memcmp(t->tokens[o].bytes, e->bytes, e->len) == 0) return o;
    }
}

static const merge_slot *merge_find(const ssm_bpe *t, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t mask = t->cap_merges - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        const merge_slot *m = &t->merges[i];
        if (m->key == UINT64_MAX) return NULL;
        if (m->key == key) return m;
    }
}

/* Adds a merge unless the pair already has one (the first, lowest rank wins). */
static void merge_insert(ssm_bpe *t, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t mask = t->cap_merges - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        merge_slot *m = &t->merges[i];
        if (m->key == key) return;
        if (m->key == UINT64_MAX) { m->key = key; m->rank = rank; m->merged = merged; return; }
    }
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* ---- loading --------------------------------------------------------------------------------- */
void ssm_bpe_free(ssm_bpe *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n_ids; i++) free(t->tokens[i].bytes);
    free(t->tokens);
    free(t->byte_slots);
    free(t->merges);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].text);
    free(t->added);
    free(t);
}

#define BPE_FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); ssm_bpe_free(t); return NULL; } while (0)

/* Reads the ByteLevel pre-tokenizer's options from a pre_tokenizer object; 1 if it is one. */
static int read_byte_level(const ssm_json *pt, ssm_bpe *t) {
    const char *type = NULL;
    if (ssm_json_get_string(pt, "type", &type) != 1 || strcmp(type, "ByteLevel") != 0) return 0;
    int b;
    if (ssm_json_get_bool(pt, "add_prefix_space", &b) == 1) t->add_prefix_space = b;
    if (ssm_json_get_bool(pt, "use_regex", &b) == 1) t->use_regex = b;
    return 1;
}

/* Splits a merge entry into its two sides (GPT-2 alphabet strings). */
static int merge_sides(const ssm_json *m, const char **a, size_t *alen, const char **b, size_t *blen,
                       char *tmp, size_t tmpcap) {
    if (m->type == SSM_JSON_ARRAY) {
        if (m->n != 2 || m->items[0]->type != SSM_JSON_STRING || m->items[1]->type != SSM_JSON_STRING) return -1;
        *a = m->items[0]->str; *alen = m->items[0]->len;
        *b = m->items[1]->str; *blen = m->items[1]->len;
        return 0;
    }
    if (m->type != SSM_JSON_STRING || m->len + 1 > tmpcap) return -1;
    const char *sp = memchr(m->str, ' ', m->len);
    if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->str))) return -1;
    memcpy(tmp, m->str, m->len + 1);
    *a = tmp; *alen = (size_t)(sp - m->str);
    *b = tmp + *alen + 1; *blen = m->len - *alen - 1;
    return 0;
}

ssm_bpe *ssm_bpe_from_json(const ssm_json *root, const char *label, char *err, size_t errlen) {
    ssm_bpe *t = ssm_xcalloc(1, sizeof *t);
    t->unk_id = -1;
    t->use_regex = 1;
    for (int b = 0; b < 256; b++) t->byte_token[b] = -1;
    const ssm_json *model = ssm_json_get(root, "model");
    if (!model || model->type != SSM_JSON_OBJECT) BPE_FAIL("%s: no \"model\" object (not a tokenizer.json?)", label);
    const char *type = NULL;
    if (ssm_json_get_string(model, "type", &type) == 1 && strcmp(type, "BPE") != 0)
        BPE_FAIL("%s: model type '%s' is not supported (only byte-level BPE)", label, type);
    const ssm_json *vocab = ssm_json_get(model, "vocab");
    const ssm_json *merges = ssm_json_get(model, "merges");
    if (!vocab || vocab->type != SSM_JSON_OBJECT) BPE_FAIL("%s: model.vocab is missing or not an object", label);
    if (!merges || merges->type != SSM_JSON_ARRAY) BPE_FAIL("%s: model.merges is missing or not an array", label);
    int flag;
    if (ssm_json_get_bool(model, "byte_fallback", &flag) == 1 && flag)
        BPE_FAIL("%s: model.byte_fallback (SentencePiece-style BPE) is not supported", label);
    const char *affix = NULL;
    if ((ssm_json_get_string(model, "continuing_subword_prefix", &affix) == 1 && affix[0]) ||
        (ssm_json_get_string(model, "end_of_word_suffix", &affix) == 1 && affix[0]))
        BPE_FAIL("%s: subword prefixes/suffixes ('%s') are not supported", label, affix);
    if (ssm_json_get_bool(model, "ignore_merges", &flag) == 1) t->ignore_merges = flag;

    /* The pre-tokenizer must be byte-level (the vocabulary is in the GPT-2 alphabet). */
    const ssm_json *pt = ssm_json_get(root, "pre_tokenizer");
    int byte_level = 0;
    if (pt && pt->type == SSM_JSON_OBJECT) {
        byte_level = read_byte_level(pt, t);
        const ssm_json *seq = ssm_json_get(pt, "pretokenizers");
        if (!byte_level && seq && seq->type == SSM_JSON_ARRAY) {
            for (int64_t i = 0; i < seq->n; i++) {
                const char *st = NULL;
                if (read_byte_level(seq->items[i], t)) byte_level = 1;
                else if (ssm_json_get_string(seq->items[i], "type", &st) == 1)
                    BPE_FAIL("%s: pre_tokenizer '%s' is not supported (only ByteLevel)", label, st);
            }
        }
    }
    if (!byte_level) BPE_FAIL("%s: the pre_tokenizer is not ByteLevel (only byte-level BPE is supported)", label);

    /* Vocabulary: ids, then the raw bytes of each token. */
    int64_t max_id = -1;
    for (int64_t i = 0; i < vocab->n; i++) {
        const ssm_json *v = vocab->items[i];
        if (v->type != SSM_JSON_NUMBER || !v->is_int || v->integer < 0 || v->integer >= INT32_MAX / 2)
            BPE_FAIL("%s: model.vocab entry '%s': id is not an integer in [0, 2^30)", label, vocab->keys[i]);
        if (v->integer > max_id) max_id = v->integer;
    }
    const ssm_json *added = ssm_json_get(root, "added_tokens");
    if (added && added->type != SSM_JSON_ARRAY) BPE_FAIL("%s: added_tokens is not an array", label);
    for (int64_t i = 0; added && i < added->n; i++) {
        int64_t id;
        const char *content;
        if (ssm_json_get_int(added->items[i], "id", &id) != 1 || id < 0 || id >= INT32_MAX / 2 ||
            ssm_json_get_string(added->items[i], "content", &content) != 1)
            BPE_FAIL("%s: added_tokens[%lld]: needs an integer \"id\" and a string \"content\"", label, (long long)i);
        if (id > max_id) max_id = id;
    }
    t->n_ids = max_id + 1;
    t->tokens = ssm_xcalloc((size_t)t->n_ids + 1, sizeof *t->tokens);
    t->cap_bytes = pow2_at_least((size_t)vocab->n * 2 + 16);
    t->byte_slots = ssm_xmalloc(t->cap_bytes * sizeof(int32_t));
    memset(t->byte_slots, 0xff, t->cap_bytes * sizeof(int32_t));
    for (int64_t i = 0; i < vocab->n; i++) {
        int32_t id = (int32_t)vocab->items[i]->integer;
        const char *s = vocab->keys[i];
        size_t slen = vocab->key_lens[i];
        token_entry *e = &t->tokens[id];
        if (e->bytes) BPE_FAIL("%s: model.vocab: id %d is given to two tokens", label, id);
        e->bytes = ssm_xmalloc(slen + 1);
        long n = alphabet_to_bytes(s, slen, e->bytes);
        if (n < 0) {
            /* not in the byte alphabet: decodes to its own text, never produced by merges */
            memcpy(e->bytes, s, slen);
            e->len = slen;
            continue;
        }
        e->len = (size_t)n;
        int32_t other = bytes_insert(t, id);
        if (other >= 0) BPE_FAIL("%s: model.vocab: token '%s' appears twice (ids %d and %d)", label, s, other, id);
        if (n == 1) t->byte_token[(unsigned char)e->bytes[0]] = id;
    }
    const char *unk = NULL;
    if (ssm_json_get_string(model, "unk_token", &unk) == 1) {
        const ssm_json *u = ssm_json_get(vocab, unk);
        if (!u) BPE_FAIL("%s: model.unk_token '%s' is not in the vocabulary", label, unk);
        t->unk_id = (int32_t)u->integer;
    }

    /* Added tokens: matched literally in the input text. */
    if (added && added->n) {
        t->added = ssm_xcalloc((size_t)added->n, sizeof *t->added);
        for (int64_t i = 0; i < added->n; i++) {
            const ssm_json *a = ssm_json_get(added->items[i], "content");
            int64_t id;
            ssm_json_get_int(added->items[i], "id", &id);
            if (a->len == 0) continue;
            added_token *at = &t->added[t->n_added++];
            at->text = ssm_xmalloc(a->len + 1);
            memcpy(at->text, a->str, a->len + 1);
            at->len = a->len;
            at->id = (int32_t)id;
            token_entry *e = &t->tokens[id];
            if (!e->bytes) {   /* only in added_tokens: decodes to its content */
                e->bytes = ssm_xmalloc(a->len + 1);
                memcpy(e->bytes, a->str, a->len);
                e->len = a->len;
            }
        }
    }

    /* Merges, ranked by position. */
    t->cap_merges = pow2_at_least((size_t)merges->n * 2 + 16);
    t->merges = ssm_xmalloc(t->cap_merges * sizeof *t->merges);
    for (size_t i = 0; i < t->cap_merges; i++) t->merges[i].key = UINT64_MAX;
    size_t tmpcap = 1024;
    char *tmp = ssm_xmalloc(tmpcap), *raw = ssm_xmalloc(tmpcap * 2);
    for (int64_t r = 0; r < merges->n; r++) {
        const ssm_json *m = merges->items[r];
        if (m->type == SSM_JSON_STRING && m->len + 1 > tmpcap) {
            tmpcap = m->len + 1;
            tmp = ssm_xrealloc(tmp, tmpcap);
            raw = ssm_xrealloc(raw, tmpcap * 2);
        }
        const char *a, *b;
        size_t alen, blen;
        if (merge_sides(m, &a, &alen, &b, &blen, tmp, tmpcap)) {
            free(tmp); free(raw);
            BPE_FAIL("%s: model.merges[%lld]: expected \"a b\" or [\"a\", \"b\"]", label, (long long)r);
        }
        if (alen + blen + 2 > tmpcap * 2) { tmpcap = alen + blen + 2; raw = ssm_xrealloc(raw, tmpcap * 2); }
        long na = alphabet_to_bytes(a, alen, raw);
        long nb = na < 0 ? -1 : alphabet_to_bytes(b, blen, raw + na);
        int32_t ia = na < 0 ? -1 : ssm_bpe_token_id(t, raw, (size_t)na);
        int32_t ib = nb < 0 ? -1 : ssm_bpe_token_id(t, raw + na, (size_t)nb);
        int32_t iab = (ia < 0 || ib < 0) ? -1 : ssm_bpe_token_id(t, raw, (size_t)(na + nb));
        if (ia < 0 || ib < 0 || iab < 0) {
            int la = (int)(alen > 60 ? 60 : alen), lb = (int)(blen > 60 ? 60 : blen);
            char what[200];
            if (ia < 0) snprintf(what, sizeof what, "'%.*s' is not in the vocabulary", la, a);
            else if (ib < 0) snprintf(what, sizeof what, "'%.*s' is not in the vocabulary", lb, b);
            else snprintf(what, sizeof what, "the merged token '%.*s%.*s' is not in the vocabulary", la, a, lb, b);
            snprintf(err, errlen, "%s: model.merges[%lld] ('%.*s %.*s'): %s", label, (long long)r, la, a, lb, b, what);
            free(tmp);
            free(raw);
            ssm_bpe_free(t);
            return NULL;
        }
        merge_insert(t, ia, ib, (int32_t)r, iab);
    }
    free(tmp);
    free(raw);
    t->n_merges = merges->n;
    return t;
}

ssm_bpe *ssm_bpe_load(const char *path, char *err, size_t errlen) {
    ssm_json *j = ssm_json_parse_file(path, err, errlen);
    if (!j) return NULL;
    ssm_bpe *t = ssm_bpe_from_json(j, path, err, errlen);
    ssm_json_free(j);
    return t;
}

int64_t ssm_bpe_vocab_size(const ssm_bpe *t) { return t->n_ids; }
int64_t ssm_bpe_merge_count(const ssm_bpe *t) { return t->n_merges; }

const char *ssm_bpe_token_bytes(const ssm_bpe *t, int64_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || !t->tokens[id].bytes) return NULL;
    *len = t->tokens[id].len;
    return t->tokens[id].bytes;
}

/* ---- encoding ------------------------------------------------------------------------------ */
typedef struct {
    int32_t *v;
    int64_t n, cap;
} id_list;

static void id_push(id_list *l, int32_t id) {
    if (l->n == l->cap) { l->cap = l->cap ? l->cap * 2 : 64; l->v = ssm_xrealloc(l->v, (size_t)l->cap * sizeof(int32_t)); }
    l->v[l->n++] = id;
}

/* A candidate merge of the symbols at pos and next(pos); ordered by (rank, pos). */
typedef struct {
    int32_t rank, pos, left, right;
} candidate;

static int cand_less(const candidate *a, const candidate *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(candidate *h, int64_t *n, candidate c) {
    int64_t i = (*n)++;
    h[i] = c;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!cand_less(&h[i], &h[p])) break;
        candidate t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
    }
}

static candidate heap_pop(candidate *h, int64_t *n) {
    candidate top = h[0];
    h[0] = h[--(*n)];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && cand_less(&h[l], &h[m])) m = l;
        if (r < *n && cand_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        candidate t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
    return top;
}

/* BPE on one pre-tokenized chunk s[0..n); appends the ids.  -1 on a byte with no token. */
static int encode_chunk(const ssm_bpe *t, const char *s, size_t n, id_list *out, char *err, size_t errlen) {
    if (t->ignore_merges) {
        int32_t id = ssm_bpe_token_id(t, s, n);
        if (id >= 0) { id_push(out, id); return 0; }
    }
    int32_t *sym = ssm_xmalloc(n * sizeof(int32_t));
    int32_t *next = ssm_xmalloc(n * sizeof(int32_t)), *prev = ssm_xmalloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_token[(unsigned char)s[i]];
        if (id < 0) {
            if (t->unk_id < 0) {
                snprintf(err, errlen, "byte 0x%02x has no token in the vocabulary and the tokenizer has no unk_token",
                         (unsigned char)s[i]);
                free(sym); free(next); free(prev);
                return -1;
            }
            id = t->unk_id;
        }
        sym[i] = id;
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    candidate *heap = ssm_xmalloc((3 * n + 1) * sizeof *heap);   /* n - 1 pairs + 2 per merge */
    int64_t nh = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const merge_slot *m = merge_find(t, sym[i], sym[i + 1]);
        if (m) heap_push(heap, &nh, (candidate){m->rank, (int32_t)i, sym[i], sym[i + 1]});
    }
    while (nh > 0) {
        candidate c = heap_pop(heap, &nh);
        int32_t p = c.pos, q = next[p];
        /* stale: the left symbol grew or was absorbed (sym = -1), or its right neighbour changed */
        if (sym[p] != c.left || q < 0 || sym[q] != c.right) continue;
        sym[p] = merge_find(t, c.left, c.right)->merged;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) {
            const merge_slot *m = merge_find(t, sym[prev[p]], sym[p]);
            if (m) heap_push(heap, &nh, (candidate){m->rank, prev[p], sym[prev[p]], sym[p]});
        }
        if (next[p] >= 0) {
            const merge_slot *m = merge_find(t, sym[p], sym[next[p]]);
            if (m) heap_push(heap, &nh, (candidate){m->rank, p, sym[p], sym[next[p]]});
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i]) id_push(out, sym[i]);
    free(heap); free(sym); free(next); free(prev);
    return 0;
}

/* Pre-tokenizes and encodes a piece of text that contains no added token. */
static int encode_piece(const ssm_bpe *t, const char *s, size_t n, id_list *out, char *err, size_t errlen) {
    size_t pos = 0;
    while (pos < n) {
        size_t end = t->use_regex ? ssm_gpt2_split_next(s, n, pos) : n;
        if (encode_chunk(t, s + pos, end - pos, out, err, errlen)) return -1;
        pos = end;
    }
    return 0;
}

/* The longest added token that starts at s[pos], or -1. */
static int added_at(const ssm_bpe *t, const char *s, size_t n, size_t pos) {
    int best = -1;
    for (int i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        if (a->len <= n - pos && memcmp(s + pos, a->text, a->len) == 0 && (best < 0 || a->len > t->added[best].len))
            best = i;
    }
    return best;
}

int64_t ssm_bpe_encode(const ssm_bpe *t, const char *text, size_t len, int32_t **ids, char *err, size_t errlen) {
    id_list out = {0};
    char *buf = NULL;
    if (t->add_prefix_space && len > 0 && text[0] != ' ') {
        buf = ssm_xmalloc(len + 1);
        buf[0] = ' ';
        memcpy(buf + 1, text, len);
        text = buf;
        len++;
    }
    size_t piece = 0, pos = 0;
    while (pos < len) {
        int a = t->n_added ? added_at(t, text, len, pos) : -1;
        if (a < 0) { pos++; continue; }
        if (encode_piece(t, text + piece, pos - piece, &out, err, errlen)) goto fail;
        id_push(&out, t->added[a].id);
        pos += t->added[a].len;
        piece = pos;
    }
    if (encode_piece(t, text + piece, len - piece, &out, err, errlen)) goto fail;
    free(buf);
    if (!out.v) out.v = ssm_xmalloc(sizeof(int32_t));
    *ids = out.v;
    return out.n;
fail:
    free(buf);
    free(out.v);
    return -1;
}

int ssm_bpe_decode(const ssm_bpe *t, const int32_t *ids, int64_t n, char **out, size_t *len, char *err, size_t errlen) {
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t k = 0;
        if (!ssm_bpe_token_bytes(t, ids[i], &k)) {
            snprintf(err, errlen, "token id %d is not in the vocabulary (size %lld)", ids[i], (long long)t->n_ids);
            return -1;
        }
        total += k;
    }
    char *o = ssm_xmalloc(total + 1);
    size_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t k = 0;
        const char *b = ssm_bpe_token_bytes(t, ids[i], &k);
        memcpy(o + at, b, k);
        at += k;
    }
    o[at] = 0;
    *out = o;
    *len = at;
    return 0;
}
