/* npy.h - NumPy .npy files <-> ssm tensors, streamed.
 *
 * The .npy format (numpy.lib.format): the magic "\x93NUMPY", a major/minor version (1.0, 2.0 or
 * 3.0), a header length (u16 LE in 1.0, u32 LE in 2.0/3.0) and a header that is a Python dict
 * literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }, padded with spaces and a
 * newline; then the raw array data.
 *
 * dtypes: '<f2' '<f4' '<f8' '<c8' '<c16' '|i1' '<i2' '<i4' '<i8' '|u1' '<u2' '<u4' '<u8' '|b1' map
 * to f16 f32 f64 c64 c128 i8 i16 i32 i64 u8 u16 u32 u64 bool; big-endian ('>') data is byte-swapped
 * on reading.  bf16 has no NumPy dtype: it is written as the 2-byte void dtype '|V2' (what np.save
 * writes for an ml_dtypes.bfloat16 array; view it with .view(ml_dtypes.bfloat16) or .view('<u2')),
 * and '|V2' is read back as bf16.  Fortran-ordered arrays of rank >= 2 are transposed to C order
 * on reading, which loads that one array whole; every other array is streamed.
 *
 * The reader never trusts the header: the payload must be exactly as long as the shape says (no
 * more, no less), and errors name the file ("x.npy: truncated payload (ends 12 bytes early)").
 */
#ifndef SSM_NPY_H
#define SSM_NPY_H

#include <stdio.h>
#include "tensor.h"

typedef struct ssm_npy_reader ssm_npy_reader;

/* Opens path ("-" = stdin) and parses its header.  NULL on error, with the message in err. */
ssm_npy_reader *ssm_npy_open(const char *path, char *err, size_t errlen);
/* The same for a FILE from which the first head_len bytes (the start of the file, e.g. read to
 * sniff its format) were already consumed into head.  f is not closed by ssm_npy_close. */
ssm_npy_reader *ssm_npy_open_stream(FILE *f, const char *label, const void *head, size_t head_len,
                                    char *err, size_t errlen);
/* The array's header as a tensor (data NULL), named after the file stem (ssm_npy_name_from_path;
 * "array" for stdin).  Owned by the reader; rename it with ssm_tensor_set_name if needed. */
ssm_tensor *ssm_npy_header(ssm_npy_reader *r);
int ssm_npy_fortran_order(const ssm_npy_reader *r);
/* Reads up to max bytes of the payload in C order, little-endian.  Returns the bytes read, 0 at
 * the end (after checking that nothing follows the array), -1 on error (ssm_npy_error). */
int64_t ssm_npy_read_some(ssm_npy_reader *r, void *buf, size_t max);
const char *ssm_npy_error(const ssm_npy_reader *r);
void ssm_npy_close(ssm_npy_reader *r);

/* Reads a whole .npy file into a new tensor; NULL on error (message in err). */
ssm_tensor *ssm_npy_load(const char *path, char *err, size_t errlen);

/* Writing: the header for t's dtype and dims (format 1.0, or 2.0 when the header needs it),
 * aligned to 64 bytes as numpy does.  The caller then writes ssm_tensor_nbytes(t) bytes of data.
 * Returns 0, or -1 with the message in err (errno for I/O errors). */
int ssm_npy_write_header(FILE *f, const ssm_tensor *t, char *err, size_t errlen);
/* Writes a whole tensor to path (through a temporary file renamed into place).  0 / -1. */
int ssm_npy_save(const char *path, const ssm_tensor *t, char *err, size_t errlen);
/* The descr string for a dtype ("<f4", "|V2" for bf16), NULL if none. */
const char *ssm_npy_descr(int dtype);

/* Tensor names <-> file names: '/' and '%' are written as %2F and %25 (so any name makes one
 * file in one directory) and decoded back on reading.  name_from_path strips the directory and
 * the ".npy" suffix. */
void ssm_npy_file_name(const char *tensor_name, char *buf, size_t n);
void ssm_npy_name_from_path(const char *path, char *buf, size_t n);

#endif
