/* stream.h - reading and writing tensor streams (the format is specified in man/ssm-stream.5).
 *
 * A stream is a sequence of frames, one named tensor each.  Each frame is a checksummed header
 * followed by independently checksummed payload blocks (raw, or byte-shuffled and deflated) and an
 * end block.  Concatenated streams are a stream; an empty file is an empty stream.
 *
 * Reading: the reader never trusts a size before the bytes arrive; every block is verified.
 * Errors are returned (-1) with a one-line message from ssm_reader_error() of the form
 * "FILE: tensor 'NAME': what went wrong", so that a fuzzer can drive the reader without exiting.
 * Tools normally use the *_or_die wrappers in cli.h's spirit: ssm_reader_next_or_die etc.
 *
 * Writing: payloads are cut into blocks of SSM_BLOCK_BYTES raw bytes, compressed on all threads
 * (OpenMP) and written in order.  A tensor whose payload is being passed through is copied block by
 * block without re-encoding (ssm_pass_through).
 */
#ifndef SSM_STREAM_H
#define SSM_STREAM_H

#include <stdio.h>
#include "tensor.h"

#define SSM_STREAM_VERSION 1
#define SSM_BLOCK_BYTES (1u << 20)        /* raw bytes per block the writer emits */
#define SSM_MAX_BLOCK_BYTES (64u << 20)   /* largest raw block a reader accepts */
#define SSM_DEFAULT_LEVEL 1

/* ---- reader ------------------------------------------------------------------------------- */
typedef struct ssm_reader ssm_reader;

/* path "-" or NULL means stdin.  Returns NULL (with errno) if the file cannot be opened. */
ssm_reader *ssm_reader_open(const char *path);
/* Reads from a memory buffer (for the fuzzer and tests); the buffer must outlive the reader. */
ssm_reader *ssm_reader_open_memory(const void *buf, size_t len, const char *label);
void ssm_reader_close(ssm_reader *r);
const char *ssm_reader_error(const ssm_reader *r);
const char *ssm_reader_label(const ssm_reader *r);   /* file name, or "stdin" */

/* Reads the next frame header into *hdr (hdr->data = NULL; strings owned by the reader until the
 * next call; copy with ssm_tensor_new_header if they must live longer).
 * Returns 1 for a frame, 0 at a clean end of stream, -1 on error.  If the previous frame's payload
 * was not consumed, it is skipped (and verified) first. */
int ssm_reader_next(ssm_reader *r, ssm_tensor **hdr);

/* Reads the whole payload of the current frame into buf (ssm_tensor_nbytes bytes).  0 / -1. */
int ssm_reader_read_payload(ssm_reader *r, void *buf);
/* Streaming: reads up to max bytes of the payload into buf; returns bytes read, 0 at the end of
 * the payload (after the end block verified), -1 on error. */
int64_t ssm_reader_read_some(ssm_reader *r, void *buf, size_t max);
/* Reads the whole payload into a new malloc'd buffer that grows as data arrives (a header that
 * claims a huge size costs nothing until its blocks arrive).  NULL on error. */
void *ssm_reader_read_payload_alloc(ssm_reader *r);
/* Skips (and verifies) the rest of the current payload.  0 / -1. */
int ssm_reader_skip(ssm_reader *r);

/* Convenience: the next whole tensor (header + data), NULL at end of stream or on error
 * (distinguish with *status: 1 tensor, 0 end, -1 error). */
ssm_tensor *ssm_reader_read_tensor(ssm_reader *r, int *status);

/* ---- writer ------------------------------------------------------------------------------- */
typedef struct ssm_writer ssm_writer;

/* path "-" or NULL means stdout.  A file is written to a temporary name and renamed into place by
 * ssm_writer_close, so a failed run never leaves a file that looks complete.  level: 0 stored,
 * 1-9 shuffle+deflate (see ssm-stream(5) for what each level means).  NULL on error (errno). */
ssm_writer *ssm_writer_open(const char *path, int level);
ssm_writer *ssm_writer_open_file(FILE *f, const char *label, int level); /* does not close f */
/* Flushes, syncs and renames a file output, and frees w; 0 / -1 (the message is copied to errbuf,
 * which may be NULL). */
int ssm_writer_close(ssm_writer *w, char *errbuf, size_t errlen);
/* Abandons the output: removes the temporary file, or (for a pipe) writes an abort frame so the
 * next tool reports the failure instead of seeing a stream that looks complete. */
void ssm_writer_abort(ssm_writer *w, const char *message);
const char *ssm_writer_error(const ssm_writer *w);
void ssm_writer_set_level(ssm_writer *w, int level);

/* Writes a whole tensor (t->data must hold its payload).  0 / -1. */
int ssm_writer_write(ssm_writer *w, const ssm_tensor *t);
/* Streaming write: begin with the header, feed exactly nbytes(hdr) bytes in any pieces, end. */
int ssm_writer_begin(ssm_writer *w, const ssm_tensor *hdr);
int ssm_writer_feed(ssm_writer *w, const void *buf, size_t n);
int ssm_writer_end(ssm_writer *w);

/* Copies the payload of the reader's current frame to w unchanged (verified, not re-encoded),
 * under the header `hdr` (which may be the reader's header, or one with a new name/attributes but
 * the same dtype and dims).  0 / -1 (the message is in the reader's or the writer's error). */
int ssm_pass_through(ssm_reader *r, ssm_writer *w, const ssm_tensor *hdr);

/* Number of threads used for compression (default: OpenMP's, i.e. the cores). */
void ssm_stream_set_threads(int n);

#endif
