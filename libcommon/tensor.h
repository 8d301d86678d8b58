/* tensor.h - dtypes, in-memory tensors and tensor sets.
 *
 * A tensor is a named, row-major array with up to SSM_MAX_RANK dims (outermost first) and optional
 * text attributes (key=value).  This is the unit that flows through every tool; stream.h moves it
 * to and from the wire format described in man/ssm-stream.5.
 *
 * Conventions: complex dtypes store (re, im) pairs; dims are int64_t; a rank-0 tensor is a scalar
 * holding one element; a tensor may have zero elements.
 */
#ifndef SSM_TENSOR_H
#define SSM_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define SSM_MAX_RANK 16
#define SSM_MAX_NAME 4096         /* bytes in a tensor name */
#define SSM_MAX_ATTRS_BYTES (1 << 20)

/* dtype codes are part of the wire format: never renumber. */
typedef enum {
    SSM_F32 = 1,
    SSM_F64 = 2,
    SSM_C64 = 3,   /* complex float: 2 x f32 */
    SSM_C128 = 4,  /* complex double: 2 x f64 */
    SSM_I32 = 5,
    SSM_I64 = 6,
    SSM_U8 = 7,
    SSM_BF16 = 8,
    SSM_F16 = 9,
    SSM_I8 = 10,
    SSM_I16 = 11,
    SSM_U16 = 12,
    SSM_U32 = 13,
    SSM_U64 = 14,
    SSM_BOOL = 15, /* one byte, 0 or 1 */
} ssm_dtype;

/* Size in bytes of one element (a complex element counts both parts); 0 for an unknown code. */
size_t ssm_dtype_size(int dtype);
/* Size of one scalar component: equals ssm_dtype_size except complex (half). */
size_t ssm_dtype_component_size(int dtype);
const char *ssm_dtype_name(int dtype);           /* "f32", ...; NULL if unknown */
int ssm_dtype_from_name(const char *name);       /* 0 if unknown */
int ssm_dtype_is_complex(int dtype);
int ssm_dtype_is_float(int dtype);               /* f16, bf16, f32, f64 (not complex) */

typedef struct {
    char *key;
    char *value;
} ssm_attr;

typedef struct ssm_tensor {
    char *name;
    int dtype;
    int rank;
    int64_t dims[SSM_MAX_RANK];
    int nattrs;
    ssm_attr *attrs;
    void *data; /* numel * dtype size bytes, or NULL when only the header is known */
} ssm_tensor;

/* Number of elements; -1 if the product overflows int64 or exceeds SSM_MAX_BYTES bytes. */
int64_t ssm_numel_of(int rank, const int64_t *dims);
int64_t ssm_tensor_numel(const ssm_tensor *t);
size_t ssm_tensor_nbytes(const ssm_tensor *t);

/* A new tensor with zeroed data (calloc).  Dies on allocation failure. */
ssm_tensor *ssm_tensor_new(const char *name, int dtype, int rank, const int64_t *dims);
/* A new tensor with the header (name, dtype, dims, attributes) of `like` and no data. */
ssm_tensor *ssm_tensor_new_header(const ssm_tensor *like);
ssm_tensor *ssm_tensor_clone(const ssm_tensor *t);
void ssm_tensor_free(ssm_tensor *t);
void ssm_tensor_set_name(ssm_tensor *t, const char *name);

/* Attributes: set replaces an existing key; get returns NULL when absent. */
void ssm_tensor_set_attr(ssm_tensor *t, const char *key, const char *value);
void ssm_tensor_set_attrf(ssm_tensor *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *ssm_tensor_get_attr(const ssm_tensor *t, const char *key);
void ssm_tensor_copy_attrs(ssm_tensor *dst, const ssm_tensor *src);
/* An attribute holding a count in [0, 2^30]: dflt when absent (or a one-line error when
 * required); a malformed value is a one-line error naming the tensor. */
int ssm_tensor_attr_count(const ssm_tensor *t, const char *key, int dflt, int required);

/* "f32 [2, 1024, 64]" into buf. */
const char *ssm_tensor_describe(const ssm_tensor *t, char *buf, size_t n);
/* "[2, 1024, 64]" into buf. */
const char *ssm_shape_string(int rank, const int64_t *dims, char *buf, size_t n);

/* Conversion between dtypes.  Real -> complex sets im = 0; complex -> real is refused (returns
 * NULL; use ssm_tensor_real/imag explicitly).  Float -> integer rounds to nearest and is refused
 * (NULL) for NaN or out-of-range values.  The result is a new tensor with the same name/attrs. */
ssm_tensor *ssm_tensor_convert(const ssm_tensor *t, int dtype);
/* Element i as double (real part for complex); works for every dtype. */
double ssm_tensor_get_f64(const ssm_tensor *t, int64_t i);

/* bf16/f16 <-> f32 scalar conversions (round to nearest even). */
float ssm_bf16_to_f32(uint16_t h);
uint16_t ssm_f32_to_bf16(float f);
float ssm_f16_to_f32(uint16_t h);
uint16_t ssm_f32_to_f16(float f);

/* Count of NaN or Inf elements (0 for integer dtypes). */
int64_t ssm_tensor_count_nonfinite(const ssm_tensor *t);

/* ---- tensor sets: an ordered list of tensors, looked up by name ---------------------------- */
typedef struct {
    int n, cap;
    ssm_tensor **items;
} ssm_tensor_set;

void ssm_set_init(ssm_tensor_set *s);
void ssm_set_free(ssm_tensor_set *s);           /* frees the tensors too */
/* Adds t (taking ownership); a tensor of the same name is replaced (and freed). */
void ssm_set_put(ssm_tensor_set *s, ssm_tensor *t);
ssm_tensor *ssm_set_get(const ssm_tensor_set *s, const char *name);   /* NULL if absent */
/* Removes and returns the tensor (caller owns it), or NULL. */
ssm_tensor *ssm_set_take(ssm_tensor_set *s, const char *name);

/* Shell-style glob match (*, ?, [...]) used by pick/drop and by tools that select tensors. */
int ssm_glob_match(const char *pattern, const char *name);

#endif
