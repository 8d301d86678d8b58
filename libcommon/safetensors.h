/* safetensors.h - Hugging Face .safetensors files <-> ssm tensors, streamed.
 *
 * The format: a u64 little-endian header length N, then N bytes of JSON
 *   {"__metadata__": {"k": "v", ...},
 *    "NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...}
 * then the data area; a tensor's bytes are data[BEGIN, END), little-endian, row-major.
 * dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL (and C64, which recent safetensors
 * versions add) map to the ssm dtypes of the same meaning; F8_* and others are refused.
 *
 * Reading never trusts the header: the header length must fit in the file, every tensor's
 * offsets must lie inside the data area, match dtype x shape exactly and not overlap another
 * tensor's; duplicate names are refused.  Tensors are listed in the order of their data in the
 * file, so reading them in order reads the file sequentially.  Payloads are read on demand (pread),
 * so a checkpoint larger than memory can be converted piece by piece.
 *
 * Attributes: safetensors has one string->string __metadata__ map per file.  On reading, an entry
 * "ssm:NAME" holds tensor NAME's attributes as "key=value" lines (this is how ssm writes them);
 * every other entry becomes an attribute of every tensor (newlines in values become spaces;
 * entries whose key is empty or holds '=' are dropped).  On writing, each tensor's attributes go
 * to "ssm:NAME", and ssm_safetensors_writer_set_metadata adds file-wide entries.
 */
#ifndef SSM_SAFETENSORS_H
#define SSM_SAFETENSORS_H

#include <stdint.h>
#include "tensor.h"

typedef struct ssm_safetensors ssm_safetensors;

/* Opens path ("-" = stdin, which must then be a regular file) and validates the header.
 * NULL on error with a one-line message in err ("m.safetensors: tensor 'w': ..."). */
ssm_safetensors *ssm_safetensors_open(const char *path, char *err, size_t errlen);
/* The same on an open descriptor of a regular file (not closed by ssm_safetensors_close). */
ssm_safetensors *ssm_safetensors_open_fd(int fd, const char *label, char *err, size_t errlen);
void ssm_safetensors_close(ssm_safetensors *st);

int ssm_safetensors_count(const ssm_safetensors *st);
/* Tensor i's header (name, dtype, dims, attributes; data NULL), owned by st. */
const ssm_tensor *ssm_safetensors_header(const ssm_safetensors *st, int i);
/* Index of the tensor called name, or -1. */
int ssm_safetensors_find(const ssm_safetensors *st, const char *name);
/* A file-wide __metadata__ value, or NULL. */
const char *ssm_safetensors_metadata(const ssm_safetensors *st, const char *key);

/* Reads bytes [offset, offset + n) of tensor i's payload into buf.  0, or -1 (message in
 * ssm_safetensors_error) on an I/O error or a range outside the tensor. */
int ssm_safetensors_read(ssm_safetensors *st, int i, uint64_t offset, void *buf, size_t n);
/* Tensor i whole (a new tensor the caller frees); NULL on error. */
ssm_tensor *ssm_safetensors_load(ssm_safetensors *st, int i);
const char *ssm_safetensors_error(const ssm_safetensors *st);

/* ---- writing ---------------------------------------------------------------------------------
 * The header must list every tensor before the data, so payloads are spooled to a temporary file
 * beside the output (or in $TMPDIR for stdout) and copied after the header on close: memory use
 * stays small whatever the sizes.  A file output is written to a temporary name and renamed into
 * place, so a failed run leaves no file that looks complete. */
typedef struct ssm_safetensors_writer ssm_safetensors_writer;

/* path "-" means stdout.  NULL on error (message in err). */
ssm_safetensors_writer *ssm_safetensors_writer_open(const char *path, char *err, size_t errlen);
void ssm_safetensors_writer_set_metadata(ssm_safetensors_writer *w, const char *key, const char *value);
/* Streaming: begin with the header (refused: a dtype safetensors lacks, c128; a duplicate name),
 * feed exactly nbytes(hdr) bytes in any pieces, end.  0 / -1. */
int ssm_safetensors_writer_begin(ssm_safetensors_writer *w, const ssm_tensor *hdr);
int ssm_safetensors_writer_feed(ssm_safetensors_writer *w, const void *buf, size_t n);
int ssm_safetensors_writer_end(ssm_safetensors_writer *w);
int ssm_safetensors_writer_write(ssm_safetensors_writer *w, const ssm_tensor *t);
/* Writes the header and the data and renames the file into place; frees w.  0 / -1 (the message
 * is copied to err). */
int ssm_safetensors_writer_close(ssm_safetensors_writer *w, char *err, size_t errlen);
/* Abandons the output (removes the temporary files) and frees w. */
void ssm_safetensors_writer_abort(ssm_safetensors_writer *w);
const char *ssm_safetensors_writer_error(const ssm_safetensors_writer *w);

/* "F32" for SSM_F32 ...; NULL when safetensors has no such dtype. */
const char *ssm_safetensors_dtype_name(int dtype);

#endif
