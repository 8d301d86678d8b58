/* json.h - a small, strict JSON parser (RFC 8259) for the files the toolkit reads: HF
 * tokenizer.json and config.json, safetensors headers.
 *
 * Strict: no comments, no trailing commas, no NaN/Infinity, no leading zeros, no control characters
 * in strings, valid \u escapes (surrogate pairs combined; a lone surrogate is an error), nothing but
 * whitespace after the value, nesting at most SSM_JSON_MAX_DEPTH.  Errors are one line,
 * "line L, column C: what" (the caller prefixes the file name).
 *
 * The parse builds a tree of ssm_json nodes owned by the root (free it with ssm_json_free).
 * Strings are decoded to UTF-8 bytes, NUL-terminated, with their length kept separately (a "\u0000"
 * escape is legal JSON).  Numbers keep a double; those written as integers (no '.', no exponent)
 * that fit in int64 also keep the exact int64 value (is_int), which safetensors offsets need.
 * Objects keep their members in file order; lookup is linear and returns the first member of a
 * name (duplicate names are not rejected: tokenizer vocabularies are checked by their owner).
 */
#ifndef SSM_JSON_H
#define SSM_JSON_H

#include <stddef.h>
#include <stdint.h>

#define SSM_JSON_MAX_DEPTH 256

typedef enum {
    SSM_JSON_NULL, SSM_JSON_FALSE, SSM_JSON_TRUE, SSM_JSON_NUMBER, SSM_JSON_STRING,
    SSM_JSON_ARRAY, SSM_JSON_OBJECT
} ssm_json_type;

typedef struct ssm_json {
    ssm_json_type type;
    double number;           /* SSM_JSON_NUMBER */
    int64_t integer;         /* exact value when is_int */
    int is_int;
    char *str;               /* SSM_JSON_STRING: UTF-8, NUL-terminated */
    size_t len;              /* its length in bytes */
    int64_t n;               /* members of an array or object */
    struct ssm_json **items; /* array elements / object values */
    char **keys;             /* object member names (UTF-8, NUL-terminated) */
    size_t *key_lens;
} ssm_json;

/* Parses text[0..len).  NULL on error with the message in err ("line 3, column 7: expected ':'"). */
ssm_json *ssm_json_parse(const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses a file; errors are "PATH: line 3, column 7: ..." or "PATH: No such file...". */
ssm_json *ssm_json_parse_file(const char *path, char *err, size_t errlen);
void ssm_json_free(ssm_json *j);

/* The value of member `key` of an object, or NULL (also NULL when obj is not an object). */
const ssm_json *ssm_json_get(const ssm_json *obj, const char *key);
const char *ssm_json_type_name(ssm_json_type t);   /* "null", "number", ... */

/* Typed accessors for config files: return 1 and set *out when obj has member `key` of the
 * right type; 0 when absent (or JSON null); -1 when present with another type (or, for
 * get_int, a number that is not an integer). */
int ssm_json_get_int(const ssm_json *obj, const char *key, int64_t *out);
int ssm_json_get_number(const ssm_json *obj, const char *key, double *out);
int ssm_json_get_bool(const ssm_json *obj, const char *key, int *out);
int ssm_json_get_string(const ssm_json *obj, const char *key, const char **out);

#endif
