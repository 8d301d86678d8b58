/* bpe.h - byte-level BPE tokenization from a Hugging Face tokenizer.json (GPT-2 / GPT-NeoX style,
 * as used by the Mamba language models).
 *
 * What is read from tokenizer.json:
 *   model.type "BPE"; model.vocab {token: id}; model.merges, ranked by position, each either the
 *   string "a b" or the pair ["a", "b"]; model.unk_token (optional); model.ignore_merges (optional);
 *   added_tokens [{id, content, ...}]; pre_tokenizer ByteLevel (alone or inside a Sequence) with
 *   add_prefix_space and use_regex.
 * Vocabulary and merge strings are in GPT-2's byte-to-unicode alphabet (every byte is one printable
 * code point: 0x21-0x7e, 0xa1-0xac and 0xae-0xff map to themselves, the other 68 bytes to
 * U+0100.. in order, so ' ' is 'Ġ' and '\n' is 'Ċ').  They are mapped back to raw bytes at load
 * time, and all the work happens on raw bytes.  A vocabulary entry that is not in that alphabet
 * (some special tokens) can only be produced by the added-token match and decodes to its text.
 *
 * Encoding: (1) the text is cut at occurrences of added tokens (leftmost, longest; their
 * lstrip/rstrip/single_word flags are not applied), (2) each piece is split by the GPT-2
 * pre-tokenizer (below), (3) each chunk starts as one symbol per byte and the adjacent pair of
 * lowest merge rank is merged, leftmost first, until no pair has a rank (O(n log n) with a heap).
 * A byte without a vocabulary entry becomes unk_token, or is an error when there is none.
 * Normalizers (NFC for GPT-NeoX) are not applied: NFC is the identity on ASCII and on text that is
 * already composed.
 *
 * The GPT-2 split regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * is implemented by hand (ssm_gpt2_split_next).  It is exact for ASCII.  For other code points the
 * classes come from a small table: Unicode White_Space is exact; \p{N} covers Latin-1
 * superscripts and fractions, the common decimal digit blocks (Arabic-Indic, Devanagari..,
 * fullwidth), super/subscripts, number forms, circled numbers; [^\s\p{L}\p{N}] covers Latin-1
 * punctuation and symbols, combining marks, general punctuation, currency, arrows, math and
 * technical symbols, box drawing, shapes, dingbats, CJK punctuation, fullwidth ASCII punctuation
 * and emoji.  Every other code point is taken as a letter (so punctuation of other scripts may be
 * split differently from the official tokenizer).  Invalid UTF-8 bytes are taken one at a time
 * as letters; any split is lossless, so decode(encode(x)) == x for every byte string.
 */
#ifndef SSM_BPE_H
#define SSM_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

typedef struct ssm_bpe ssm_bpe;

/* Loads tokenizer.json.  NULL on error with a one-line message ("tokenizer.json: merge 12
 * ('a b'): 'ab' is not in the vocabulary"). */
ssm_bpe *ssm_bpe_load(const char *path, char *err, size_t errlen);
/* The same from a parsed document; `label` prefixes messages. */
ssm_bpe *ssm_bpe_from_json(const ssm_json *root, const char *label, char *err, size_t errlen);
void ssm_bpe_free(ssm_bpe *t);

/* 1 + the largest token id. */
int64_t ssm_bpe_vocab_size(const ssm_bpe *t);
int64_t ssm_bpe_merge_count(const ssm_bpe *t);

/* Encodes text[0..len) to token ids: *ids is malloc'd (free it), the count is returned; -1 on
 * error (a byte with no token and no unk_token) with the message in err. */
int64_t ssm_bpe_encode(const ssm_bpe *t, const char *text, size_t len, int32_t **ids,
                       char *err, size_t errlen);

/* The raw bytes of token `id` (not NUL-terminated), or NULL if no token has that id. */
const char *ssm_bpe_token_bytes(const ssm_bpe *t, int64_t id, size_t *len);
/* The id of the token whose raw bytes are s[0..len), or -1. */
int32_t ssm_bpe_token_id(const ssm_bpe *t, const char *s, size_t len);

/* Decodes ids into a malloc'd buffer (*out, *len; NUL-terminated for convenience).  -1 on an id
 * that is not in the vocabulary ("token id 70000 is not in the vocabulary (size 50280)"). */
int ssm_bpe_decode(const ssm_bpe *t, const int32_t *ids, int64_t n, char **out, size_t *len,
                   char *err, size_t errlen);

/* The GPT-2 pre-tokenizer: the end of the chunk that starts at s[pos] (pos < n). */
size_t ssm_gpt2_split_next(const char *s, size_t n, size_t pos);

/* GPT-2's byte-to-unicode alphabet: the code point of byte b, and back (-1 if cp is not one). */
unsigned ssm_gpt2_byte_to_codepoint(unsigned char b);
int ssm_gpt2_codepoint_to_byte(unsigned cp);

#endif
