/* stream.c - the tensor stream format: frames of checksummed, compressed blocks.
 *
 * Wire layout (all integers little-endian; full text in man/ssm-stream.5):
 *
 *   frame header:  "SSMT" | u8 version | u8 flags | u8 dtype | u8 rank
 *                  | u32 name_len | u32 attrs_len | i64 dims[rank] | name | attrs | u32 crc32
 *                  (crc32 of every header byte before it; attrs are "key=value\n" lines)
 *   block:         u32 raw_len | u32 stored_len | u8 codec | u8 0 | u16 0 | u32 crc32 | stored bytes
 *                  (crc32 of the first 12 header bytes followed by the stored bytes)
 *   end block:     a block with raw_len = stored_len = 0
 *   abort frame:   a header with flags bit 0 set, dtype 0, rank 0 and the error message as name;
 *                  written by a tool that fails mid-stream, so readers report the failure.
 *
 * codec 0 = stored, 1 = raw deflate, 2 = byte shuffle (by the dtype's component size) + raw
 * deflate.  The writer stores a block raw whenever compression would not make it smaller.
 */
#include "stream.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const unsigned char MAGIC[4] = {'S', 'S', 'M', 'T'};
#define FLAG_ABORT 1u
#define BLOCK_HEADER_BYTES 16
#define CODEC_STORED 0
#define CODEC_DEFLATE 1
#define CODEC_SHUFFLE_DEFLATE 2

static int stream_threads = 0;
void ssm_stream_set_threads(int n) { stream_threads = n; }
static int nthreads(void) {
    if (stream_threads > 0) return stream_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
/* Blocks handled together in one parallel batch. */
static int batch_blocks(void) { int n = 2 * nthreads(); return n < 2 ? 2 : n > 64 ? 64 : n; }

static void put_u16(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* crc32 over a possibly > 4 GiB range (zlib takes uInt lengths). */
static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t n) {
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

/* ---- shuffle -------------------------------------------------------------------------------- */
/* Byte shuffle: the j-th byte of every w-byte element goes to plane j.  Floats' sign/exponent
 * bytes then sit together and compress well even when the mantissas are random. */
static void shuffle_bytes(unsigned char *dst, const unsigned char *src, size_t n, size_t w) {
    size_t count = n / w;
    if (w == 4) {
        unsigned char *d0 = dst, *d1 = dst + count, *d2 = dst + 2 * count, *d3 = dst + 3 * count;
        for (size_t i = 0; i < count; i++) {
            d0[i] = src[4 * i]; d1[i] = src[4 * i + 1]; d2[i] = src[4 * i + 2]; d3[i] = src[4 * i + 3];
        }
        return;
    }
    for (size_t j = 0; j < w; j++)
        for (size_t i = 0; i < count; i++) dst[j * count + i] = src[i * w + j];
}
static void unshuffle_bytes(unsigned char *dst, const unsigned char *src, size_t n, size_t w) {
    size_t count = n / w;
    if (w == 4) {
        const unsigned char *s0 = src, *s1 = src + count, *s2 = src + 2 * count, *s3 = src + 3 * count;
        for (size_t i = 0; i < count; i++) {
            dst[4 * i] = s0[i]; dst[4 * i + 1] = s1[i]; dst[4 * i + 2] = s2[i]; dst[4 * i + 3] = s3[i];
        }
        return;
    }
    for (size_t j = 0; j < w; j++)
        for (size_t i = 0; i < count; i++) dst[i * w + j] = src[j * count + i];
}

/* ---- block codec ---------------------------------------------------------------------------- */
typedef struct {
    unsigned char *raw;       /* raw bytes (writer input / reader output) */
    uint32_t raw_len;
    unsigned char *stored;    /* encoded bytes including the 16-byte block header */
    uint32_t stored_len;      /* excluding the header */
    size_t stored_cap;
    int codec;
    int status;               /* reader: 0 ok, else an error code below */
} block;

enum { BLOCK_OK = 0, BLOCK_BAD_CRC, BLOCK_BAD_DATA, BLOCK_BAD_SHUFFLE };

static void block_finish_header(block *b) {
    unsigned char *h = b->stored;
    put_u32(h, b->raw_len);
    put_u32(h + 4, b->stored_len);
    h[8] = (unsigned char)b->codec;
    h[9] = 0;
    put_u16(h + 10, 0);
    uint32_t crc = crc_update(0, h, 12);
    crc = crc_update(crc, h + BLOCK_HEADER_BYTES, b->stored_len);
    put_u32(h + 12, crc);
}

/* Level -> zlib parameters.  Level 0 stores.  1-3: byte shuffle then Huffman-only coding, which
 * codes the exponent planes of floats tightly at several hundred MB/s; 4-6: shuffle + run-length
 * matching; 7-9: shuffle + full deflate at that level (slow; for archives). */
static void level_params(int level, int *zlevel, int *strategy) {
    if (level <= 3) { *zlevel = 1; *strategy = Z_HUFFMAN_ONLY; }
    else if (level <= 6) { *zlevel = 1; *strategy = Z_RLE; }
    else { *zlevel = level; *strategy = Z_DEFAULT_STRATEGY; }
}

/* Encodes b->raw into b->stored (allocating), choosing stored when compression does not help. */
static void block_encode(block *b, int level, size_t width, unsigned char *scratch) {
    size_t bound = BLOCK_HEADER_BYTES + (size_t)b->raw_len + 64;
    if (b->stored_cap < bound) {
        free(b->stored);
        b->stored = ssm_xmalloc(bound);
        b->stored_cap = bound;
    }
    unsigned char *out = b->stored + BLOCK_HEADER_BYTES;
    int done = 0;
    if (level > 0 && b->raw_len > 0) {
        const unsigned char *src = b->raw;
        int codec = CODEC_DEFLATE;
        if (width > 1 && b->raw_len % width == 0) {
            shuffle_bytes(scratch, b->raw, b->raw_len, width);
            src = scratch;
            codec = CODEC_SHUFFLE_DEFLATE;
        }
        int zlevel, strategy;
        level_params(level, &zlevel, &strategy);
        z_stream z;
        memset(&z, 0, sizeof z);
        if (deflateInit2(&z, zlevel, Z_DEFLATED, -15, 8, strategy) != Z_OK) ssm_die("zlib: deflateInit2 failed");
        z.next_in = (unsigned char *)src;
        z.avail_in = b->raw_len;
        z.next_out = out;
        z.avail_out = b->raw_len - 1;  /* only worth it if strictly smaller */
        int rc = deflate(&z, Z_FINISH);
        if (rc == Z_STREAM_END) {
            b->stored_len = (uint32_t)z.total_out;
            b->codec = codec;
            done = 1;
        }
        deflateEnd(&z);
    }
    if (!done) {
        memcpy(out, b->raw, b->raw_len);
        b->stored_len = b->raw_len;
        b->codec = CODEC_STORED;
    }
    block_finish_header(b);
}

/* Verifies and decodes b->stored (header already parsed into raw_len/stored_len/codec) into
 * b->raw (raw_len bytes, provided by the caller).  Sets b->status. */
static void block_decode(block *b, size_t width, unsigned char *scratch, int verify_only) {
    const unsigned char *h = b->stored, *in = b->stored + BLOCK_HEADER_BYTES;
    uint32_t crc = crc_update(crc_update(0, h, 12), in, b->stored_len);
    if (crc != get_u32(h + 12)) { b->status = BLOCK_BAD_CRC; return; }
    if (verify_only) { b->status = BLOCK_OK; return; }
    if (b->codec == CODEC_STORED) {
        memcpy(b->raw, in, b->raw_len);
        b->status = BLOCK_OK;
        return;
    }
    if (b->codec == CODEC_SHUFFLE_DEFLATE && (width == 0 || b->raw_len % width)) {
        b->status = BLOCK_BAD_SHUFFLE;
        return;
    }
    unsigned char *dst = b->codec == CODEC_SHUFFLE_DEFLATE ? scratch : b->raw;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK) ssm_die("zlib: inflateInit2 failed");
    z.next_in = (unsigned char *)in;
    z.avail_in = b->stored_len;
    z.next_out = dst;
    z.avail_out = b->raw_len;
    int rc = inflate(&z, Z_FINISH);
    int ok = rc == Z_STREAM_END && z.total_out == b->raw_len && z.avail_in == 0;
    inflateEnd(&z);
    if (!ok) { b->status = BLOCK_BAD_DATA; return; }
    if (b->codec == CODEC_SHUFFLE_DEFLATE) unshuffle_bytes(b->raw, scratch, b->raw_len, width);
    b->status = BLOCK_OK;
}

/* ================================ reader ====================================================== */
struct ssm_reader {
    FILE *f;
    int own_file;
    const unsigned char *mem;
    size_t mem_len, mem_pos;
    char *label;
    char err[1024];
    int frames;               /* frames fully read so far */
    int failed;               /* sticky error */
    /* current frame */
    ssm_tensor hdr;
    int in_payload;           /* a header was returned and its end block not yet read */
    uint64_t payload_total, payload_done;   /* raw bytes declared / delivered or skipped */
    size_t width;             /* shuffle width of the current dtype */
    /* decoded bytes not yet handed out by read_some */
    unsigned char *pending;
    size_t pending_len, pending_pos, pending_cap;
    /* batch buffers */
    block *blocks;
    int nblocks_cap;
    unsigned char **scratch;  /* shuffle scratch per batch slot, scratch_cap[i] bytes */
    size_t *scratch_cap;
};

static int rerr(ssm_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rerr(ssm_reader *r, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->in_payload || r->hdr.name)
        snprintf(r->err, sizeof r->err, "%s: tensor '%.200s': %s", r->label, r->hdr.name ? r->hdr.name : "", msg);
    else
        snprintf(r->err, sizeof r->err, "%s: %s", r->label, msg);
    r->failed = 1;
    return -1;
}

static ssm_reader *reader_new(const char *label) {
    ssm_reader *r = ssm_xcalloc(1, sizeof *r);
    r->label = ssm_xstrdup(label);
    return r;
}

ssm_reader *ssm_reader_open(const char *path) {
    if (!path || strcmp(path, "-") == 0) {
        ssm_reader *r = reader_new("stdin");
        r->f = stdin;
        return r;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) { fclose(f); errno = EISDIR; return NULL; }
    ssm_reader *r = reader_new(path);
    r->f = f;
    r->own_file = 1;
    return r;
}

ssm_reader *ssm_reader_open_memory(const void *buf, size_t len, const char *label) {
    ssm_reader *r = reader_new(label ? label : "memory");
    r->mem = buf;
    r->mem_len = len;
    return r;
}

static void clear_header(ssm_reader *r) {
    for (int i = 0; i < r->hdr.nattrs; i++) { free(r->hdr.attrs[i].key); free(r->hdr.attrs[i].value); }
    free(r->hdr.attrs);
    free(r->hdr.name);
    memset(&r->hdr, 0, sizeof r->hdr);
}

void ssm_reader_close(ssm_reader *r) {
    if (!r) return;
    if (r->own_file) fclose(r->f);
    clear_header(r);
    for (int i = 0; i < r->nblocks_cap; i++) { free(r->blocks[i].stored); free(r->scratch[i]); }
    free(r->blocks);
    free(r->scratch);
    free(r->scratch_cap);
    free(r->pending);
    free(r->label);
    free(r);
}
const char *ssm_reader_error(const ssm_reader *r) { return r->err[0] ? r->err : "no error"; }
const char *ssm_reader_label(const ssm_reader *r) { return r->label; }

/* Reads up to n bytes; returns how many arrived (short only at end of input or on an I/O error). */
static size_t read_bytes(ssm_reader *r, void *buf, size_t n) {
    if (r->mem) {
        size_t k = r->mem_len - r->mem_pos;
        if (k > n) k = n;
        memcpy(buf, r->mem + r->mem_pos, k);
        r->mem_pos += k;
        return k;
    }
    return fread(buf, 1, n, r->f);
}
static int io_failed(ssm_reader *r) { return r->f && ferror(r->f); }

static int read_exact(ssm_reader *r, void *buf, size_t n, const char *what) {
    size_t got = read_bytes(r, buf, n);
    if (got == n) return 0;
    if (io_failed(r)) return rerr(r, "read error in %s: %s", what, strerror(errno));
    return rerr(r, "truncated %s (stream ends %zu bytes early)", what, n - got);
}

/* Parses an abort frame whose 4 magic bytes were already consumed. */
static int read_abort_frame(ssm_reader *r, const unsigned char *first12) {
    uint32_t name_len = get_u32(first12 + 4);   /* first12 starts at the version byte */
    char msg[512] = "";
    if (name_len < sizeof msg) {
        size_t got = read_bytes(r, msg, name_len);
        msg[got] = 0;
        for (size_t i = 0; i < got; i++)
            if ((unsigned char)msg[i] < 32) msg[i] = ' ';
    }
    return rerr(r, "the tool writing this stream failed%s%s", msg[0] ? ": " : "", msg);
}

static int parse_attrs(ssm_reader *r, char *text, size_t len) {
    size_t i = 0;
    while (i < len) {
        char *line = text + i;
        char *nl = memchr(line, '\n', len - i);
        if (!nl) return rerr(r, "malformed attributes (no newline after the last one)");
        *nl = 0;
        char *eq = strchr(line, '=');
        if (!eq || eq == line) return rerr(r, "malformed attribute '%.60s' (expected key=value)", line);
        *eq = 0;
        ssm_tensor_set_attr(&r->hdr, line, eq + 1);
        i = (size_t)(nl - text) + 1;
    }
    return 0;
}

int ssm_reader_next(ssm_reader *r, ssm_tensor **out) {
    if (r->failed) return -1;
    if (r->in_payload && ssm_reader_skip(r) < 0) return -1;
    clear_header(r);
    unsigned char h[16];
    size_t got = read_bytes(r, h, 4);
    if (got == 0) {
        if (io_failed(r)) return rerr(r, "read error: %s", strerror(errno));
        return 0;
    }
    if (got < 4 || memcmp(h, MAGIC, 4) != 0) {
        if (r->frames == 0) return rerr(r, "not a tensor stream (bad magic; expected 'SSMT')");
        return rerr(r, "garbage after frame %d (bad magic; expected 'SSMT')", r->frames);
    }
    if (read_exact(r, h + 4, 12, "frame header") < 0) return -1;
    unsigned version = h[4], flags = h[5], dtype = h[6], rank = h[7];
    uint32_t name_len = get_u32(h + 8), attrs_len = get_u32(h + 12);
    if (flags & FLAG_ABORT) return read_abort_frame(r, h + 4);
    if (version != SSM_STREAM_VERSION)
        return rerr(r, "unsupported format version %u (this build reads version %d)", version, SSM_STREAM_VERSION);
    if (flags) return rerr(r, "unknown header flags 0x%02x", flags);
    if (ssm_dtype_size((int)dtype) == 0) return rerr(r, "unknown dtype code %u", dtype);
    if (rank > SSM_MAX_RANK) return rerr(r, "rank %u exceeds the maximum %d", rank, SSM_MAX_RANK);
    if (name_len == 0 || name_len > SSM_MAX_NAME) return rerr(r, "bad name length %u", name_len);
    if (attrs_len > SSM_MAX_ATTRS_BYTES) return rerr(r, "attributes too long (%u bytes)", attrs_len);

    size_t var_len = 8u * rank + name_len + attrs_len + 4;
    unsigned char *var = ssm_xmalloc(var_len);
    if (read_exact(r, var, var_len, "frame header") < 0) { free(var); return -1; }
    uint32_t crc = crc_update(crc_update(0, h, 16), var, var_len - 4);
    if (crc != get_u32(var + var_len - 4)) { free(var); return rerr(r, "frame header checksum mismatch"); }

    r->hdr.dtype = dtype;
    r->hdr.rank = (int)rank;
    for (unsigned i = 0; i < rank; i++) {
        uint64_t d = get_u64(var + 8 * i);
        if (d > (uint64_t)INT64_MAX) { free(var); return rerr(r, "negative dimension %u", i); }
        r->hdr.dims[i] = (int64_t)d;
    }
    char *name = (char *)var + 8 * rank;
    for (uint32_t i = 0; i < name_len; i++)
        if ((unsigned char)name[i] < 32 || name[i] == 127) { free(var); return rerr(r, "tensor name contains a control character"); }
    r->hdr.name = ssm_xmalloc(name_len + 1);
    memcpy(r->hdr.name, name, name_len);
    r->hdr.name[name_len] = 0;
    if (parse_attrs(r, name + name_len, attrs_len) < 0) { free(var); return -1; }
    free(var);

    int64_t numel = ssm_tensor_numel(&r->hdr);
    if (numel < 0 || (uint64_t)numel > ((uint64_t)1 << 60) / ssm_dtype_size(dtype)) {
        char shape[256];
        return rerr(r, "dims %s overflow (too many elements)", ssm_shape_string(r->hdr.rank, r->hdr.dims, shape, sizeof shape));
    }
    r->payload_total = (uint64_t)numel * ssm_dtype_size(dtype);
    r->payload_done = 0;
    r->width = ssm_dtype_component_size(dtype);
    r->in_payload = 1;
    r->pending_len = r->pending_pos = 0;
    *out = &r->hdr;
    return 1;
}

static void ensure_blocks(ssm_reader *r, int n) {
    if (n <= r->nblocks_cap) return;
    r->blocks = ssm_xrealloc(r->blocks, (size_t)n * sizeof *r->blocks);
    r->scratch = ssm_xrealloc(r->scratch, (size_t)n * sizeof *r->scratch);
    r->scratch_cap = ssm_xrealloc(r->scratch_cap, (size_t)n * sizeof *r->scratch_cap);
    for (int i = r->nblocks_cap; i < n; i++) {
        memset(&r->blocks[i], 0, sizeof(block));
        r->scratch[i] = NULL;
        r->scratch_cap[i] = 0;
    }
    r->nblocks_cap = n;
}

/* Reads the headers and stored bytes of up to max blocks of the current payload into r->blocks.
 * Stops after the end block.  Returns the number of data blocks read (>= 0), sets *ended when the
 * end block was consumed, -1 on error.  Sizes are checked before anything is allocated. */
static int read_block_batch(ssm_reader *r, int max, int *ended) {
    ensure_blocks(r, max);
    *ended = 0;
    int n = 0;
    uint64_t expect = r->payload_done;
    while (n < max) {
        unsigned char h[BLOCK_HEADER_BYTES];
        if (read_exact(r, h, 4, "payload block header") < 0) return -1;
        if (memcmp(h, MAGIC, 4) == 0) {
            unsigned char rest[12];
            if (read_exact(r, rest, 12, "payload") < 0) return -1;
            if (rest[1] & FLAG_ABORT) return read_abort_frame(r, rest);
            return rerr(r, "payload shorter than its dims say (%llu of %llu bytes before the next frame)",
                        (unsigned long long)expect, (unsigned long long)r->payload_total);
        }
        if (read_exact(r, h + 4, BLOCK_HEADER_BYTES - 4, "payload block header") < 0) return -1;
        uint32_t raw_len = get_u32(h), stored_len = get_u32(h + 4);
        int codec = h[8];
        if (raw_len == 0) {
            if (stored_len != 0 || codec != 0) return rerr(r, "malformed end block");
            uint32_t crc = crc_update(0, h, 12);
            if (crc != get_u32(h + 12)) return rerr(r, "end block checksum mismatch");
            if (expect != r->payload_total)
                return rerr(r, "payload shorter than its dims say (%llu of %llu bytes)",
                            (unsigned long long)expect, (unsigned long long)r->payload_total);
            *ended = 1;
            return n;
        }
        if (h[9] || h[10] || h[11]) return rerr(r, "malformed block header (reserved bytes set)");
        if (codec > CODEC_SHUFFLE_DEFLATE) return rerr(r, "unknown block codec %d", codec);
        if (raw_len > SSM_MAX_BLOCK_BYTES) return rerr(r, "block of %u bytes exceeds the %u-byte limit", raw_len, SSM_MAX_BLOCK_BYTES);
        if (stored_len > raw_len || (codec == CODEC_STORED && stored_len != raw_len))
            return rerr(r, "malformed block header (stored %u bytes for %u raw)", stored_len, raw_len);
        if (expect + raw_len > r->payload_total)
            return rerr(r, "payload longer than its dims say (more than %llu bytes)", (unsigned long long)r->payload_total);
        block *b = &r->blocks[n];
        size_t need = BLOCK_HEADER_BYTES + (size_t)stored_len;
        if (b->stored_cap < need) { free(b->stored); b->stored = ssm_xmalloc(need); b->stored_cap = need; }
        memcpy(b->stored, h, BLOCK_HEADER_BYTES);
        if (read_exact(r, b->stored + BLOCK_HEADER_BYTES, stored_len, "payload block") < 0) return -1;
        b->raw_len = raw_len;
        b->stored_len = stored_len;
        b->codec = codec;
        b->status = BLOCK_OK;
        expect += raw_len;
        n++;
    }
    return n;
}

static int block_error(ssm_reader *r, int status, uint64_t offset) {
    switch (status) {
    case BLOCK_BAD_CRC: return rerr(r, "checksum mismatch in the block at payload byte %llu", (unsigned long long)offset);
    case BLOCK_BAD_SHUFFLE: return rerr(r, "shuffled block does not fit the dtype (payload byte %llu)", (unsigned long long)offset);
    default: return rerr(r, "corrupt compressed data in the block at payload byte %llu", (unsigned long long)offset);
    }
}

/* Decodes blocks [0, n) of the batch in parallel into dst (consecutive), or only verifies them if
 * dst is NULL. */
static int decode_batch(ssm_reader *r, int n, unsigned char *dst) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        r->blocks[i].raw = dst ? dst + off : NULL;
        off += r->blocks[i].raw_len;
        if (dst && r->blocks[i].codec == CODEC_SHUFFLE_DEFLATE && r->scratch_cap[i] < r->blocks[i].raw_len) {
            free(r->scratch[i]);
            r->scratch[i] = ssm_xmalloc(r->blocks[i].raw_len);
            r->scratch_cap[i] = r->blocks[i].raw_len;
        }
    }
    /* Threads only pay for inflating: checksums and copies run at memory speed on one core, and
     * OpenMP's spinning workers would steal the core the next tool in a pipeline needs. */
    int nt = nthreads(), compressed = 0;
    for (int i = 0; dst && i < n; i++) compressed += r->blocks[i].codec != CODEC_STORED;
#pragma omp parallel for num_threads(nt) schedule(dynamic) if (compressed > 1)
    for (int i = 0; i < n; i++) block_decode(&r->blocks[i], r->width, r->scratch[i], dst == NULL);
    uint64_t pos = r->payload_done;
    for (int i = 0; i < n; i++) {
        if (r->blocks[i].status != BLOCK_OK) {
            for (int j = 0; j < n; j++) r->blocks[j].raw = NULL;
            return block_error(r, r->blocks[i].status, pos);
        }
        pos += r->blocks[i].raw_len;
    }
    for (int j = 0; j < n; j++) r->blocks[j].raw = NULL;  /* raw points into caller memory */
    r->payload_done = pos;
    return 0;
}

int64_t ssm_reader_read_some(ssm_reader *r, void *buf, size_t max) {
    if (r->failed) return -1;
    if (max == 0) return 0;
    if (!r->in_payload && r->pending_pos == r->pending_len) return 0;
    if (r->pending_pos == r->pending_len) {
        if (!r->in_payload) return 0;
        int ended;
        int n = read_block_batch(r, batch_blocks(), &ended);
        if (n < 0) return -1;
        size_t total = 0;
        for (int i = 0; i < n; i++) total += r->blocks[i].raw_len;
        if (total > r->pending_cap) { free(r->pending); r->pending = ssm_xmalloc(total); r->pending_cap = total; }
        if (decode_batch(r, n, r->pending) < 0) return -1;
        r->pending_len = total;
        r->pending_pos = 0;
        if (ended) { r->in_payload = 0; r->frames++; }
        if (n == 0 && ended) return 0;
        /* not ended with a full batch: more blocks follow on the next call */
    }
    size_t k = r->pending_len - r->pending_pos;
    if (k > max) k = max;
    memcpy(buf, r->pending + r->pending_pos, k);
    r->pending_pos += k;
    if (k == 0 && r->in_payload) return ssm_reader_read_some(r, buf, max);
    return (int64_t)k;
}

int ssm_reader_read_payload(ssm_reader *r, void *buf) {
    if (r->failed) return -1;
    unsigned char *dst = buf;
    /* Any bytes already decoded by read_some go first. */
    size_t off = 0;
    if (r->pending_pos < r->pending_len) {
        size_t k = r->pending_len - r->pending_pos;
        memcpy(dst, r->pending + r->pending_pos, k);
        off = k;
        r->pending_pos = r->pending_len;
    }
    while (r->in_payload) {
        int ended;
        int n = read_block_batch(r, batch_blocks(), &ended);
        if (n < 0) return -1;
        size_t total = 0;
        for (int i = 0; i < n; i++) total += r->blocks[i].raw_len;
        if (decode_batch(r, n, dst + off) < 0) return -1;
        off += total;
        if (ended) { r->in_payload = 0; r->frames++; }
    }
    return 0;
}

int ssm_reader_skip(ssm_reader *r) {
    if (r->failed) return -1;
    r->pending_pos = r->pending_len = 0;
    while (r->in_payload) {
        int ended;
        int n = read_block_batch(r, batch_blocks(), &ended);
        if (n < 0) return -1;
        if (decode_batch(r, n, NULL) < 0) return -1;
        if (ended) { r->in_payload = 0; r->frames++; }
    }
    return 0;
}

void *ssm_reader_read_payload_alloc(ssm_reader *r) {
    if (r->failed || !r->in_payload) { if (!r->failed) rerr(r, "internal error: no payload to read"); return NULL; }
    /* The buffer grows with the data that actually arrives, so a header claiming a huge payload
     * costs nothing until its blocks are there. */
    size_t nb = (size_t)r->payload_total, cap = nb < (64u << 20) ? nb : (64u << 20), got = 0;
    unsigned char *data = malloc(cap ? cap : 1);
    int ok = data != NULL;
    while (ok > 0 && got < nb) {
        if (got == cap) {
            size_t ncap = cap * 2 < nb ? cap * 2 : nb;
            unsigned char *p = realloc(data, ncap);
            if (!p) { ok = 0; break; }
            data = p;
            cap = ncap;
        }
        int64_t k = ssm_reader_read_some(r, data + got, cap - got);
        if (k <= 0) { ok = -1; break; }   /* the reader has the message (short payloads included) */
        got += (size_t)k;
    }
    if (ok == 0) rerr(r, "out of memory reading %zu bytes", nb);
    if (ok > 0 && ssm_reader_skip(r) == 0) return data;  /* skip reads and verifies the end block */
    free(data);
    return NULL;
}

ssm_tensor *ssm_reader_read_tensor(ssm_reader *r, int *status) {
    ssm_tensor *h;
    int rc = ssm_reader_next(r, &h);
    *status = rc;
    if (rc <= 0) return NULL;
    ssm_tensor *t = ssm_tensor_new_header(h);
    t->data = ssm_reader_read_payload_alloc(r);
    if (!t->data) { ssm_tensor_free(t); *status = -1; return NULL; }
    return t;
}

/* ================================ writer ====================================================== */
struct ssm_writer {
    FILE *f;
    int own_file;
    char *label;
    char *final_path, *tmp_path;
    int level;
    char err[1024];
    int failed;
    /* current frame */
    int in_frame;
    char *name;
    uint64_t total, fed;
    size_t width;
    /* batch of raw blocks being filled */
    block *blocks;
    unsigned char **scratch;
    int nb, nb_cap;
    size_t raw_cap;  /* bytes allocated for each blocks[i].raw and scratch[i] */
    size_t fill;     /* bytes in blocks[nb] (the block being filled) */
};

static int werr(ssm_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int werr(ssm_writer *w, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(w->err, sizeof w->err, "%s: %s", w->label, msg);
    w->failed = 1;
    return -1;
}
const char *ssm_writer_error(const ssm_writer *w) { return w->err[0] ? w->err : "no error"; }
void ssm_writer_set_level(ssm_writer *w, int level) { w->level = level < 0 ? 0 : level > 9 ? 9 : level; }

static ssm_writer *writer_new(FILE *f, const char *label, int level) {
    ssm_writer *w = ssm_xcalloc(1, sizeof *w);
    w->f = f;
    w->label = ssm_xstrdup(label);
    ssm_writer_set_level(w, level);
    return w;
}

ssm_writer *ssm_writer_open_file(FILE *f, const char *label, int level) { return writer_new(f, label, level); }

ssm_writer *ssm_writer_open(const char *path, int level) {
    if (!path || strcmp(path, "-") == 0) return writer_new(stdout, "stdout", level);
    struct stat st;
    /* Special files (/dev/null, a FIFO) are written directly: they cannot be renamed into. */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) { errno = EISDIR; return NULL; }
        FILE *f = fopen(path, "wb");
        if (!f) return NULL;
        ssm_writer *w = writer_new(f, path, level);
        w->own_file = 1;
        return w;
    }
    size_t n = strlen(path) + 16;
    char *tmp = ssm_xmalloc(n);
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) { int e = errno; free(tmp); errno = e; return NULL; }
    FILE *f = fdopen(fd, "wb");
    if (!f) { int e = errno; close(fd); unlink(tmp); free(tmp); errno = e; return NULL; }
    {   /* mkstemp makes 0600; an output file gets the usual 0666 less umask */
        mode_t um = umask(0);
        umask(um);
        fchmod(fd, 0666 & ~um);
    }
    ssm_writer *w = writer_new(f, path, level);
    w->own_file = 1;
    w->final_path = ssm_xstrdup(path);
    w->tmp_path = tmp;
    return w;
}

static int write_bytes(ssm_writer *w, const void *p, size_t n) {
    if (w->failed) return -1;
    if (n && fwrite(p, 1, n, w->f) != n) return werr(w, "write error: %s", strerror(errno));
    return 0;
}

static void free_writer_blocks(ssm_writer *w) {
    for (int i = 0; i < w->nb_cap; i++) { free(w->blocks[i].raw); free(w->blocks[i].stored); free(w->scratch[i]); }
    free(w->blocks);
    free(w->scratch);
    w->blocks = NULL;
    w->scratch = NULL;
    w->nb_cap = 0;
    w->raw_cap = 0;
}

int ssm_writer_close(ssm_writer *w, char *errbuf, size_t errlen) {
    int rc = w->failed ? -1 : 0;
    if (w->in_frame && !w->failed) rc = werr(w, "internal error: frame '%s' was not finished", w->name);
    if (rc == 0 && fflush(w->f) != 0) rc = werr(w, "write error: %s", strerror(errno));
    if (rc == 0 && w->tmp_path && fsync(fileno(w->f)) != 0) rc = werr(w, "fsync failed: %s", strerror(errno));
    if (w->own_file && fclose(w->f) != 0 && rc == 0) rc = werr(w, "close failed: %s", strerror(errno));
    if (w->tmp_path) {
        if (rc == 0 && rename(w->tmp_path, w->final_path) != 0) rc = werr(w, "cannot rename into place: %s", strerror(errno));
        if (rc != 0) unlink(w->tmp_path);
    }
    if (errbuf && errlen) snprintf(errbuf, errlen, "%s", rc ? w->err : "");
    free_writer_blocks(w);
    free(w->tmp_path);
    free(w->final_path);
    free(w->name);
    free(w->label);
    free(w);
    return rc;
}

void ssm_writer_abort(ssm_writer *w, const char *message) {
    if (w->tmp_path) {
        fclose(w->f);
        unlink(w->tmp_path);
    } else {
        /* An abort frame: downstream readers report the failure instead of a clean end. */
        size_t len = strlen(message);
        if (len > 400) len = 400;
        unsigned char h[16];
        memcpy(h, MAGIC, 4);
        h[4] = SSM_STREAM_VERSION;
        h[5] = FLAG_ABORT;
        h[6] = 0;
        h[7] = 0;
        put_u32(h + 8, (uint32_t)len);
        put_u32(h + 12, 0);
        unsigned char c[4];
        put_u32(c, crc_update(crc_update(0, h, 16), (const unsigned char *)message, len));
        fwrite(h, 1, 16, w->f);
        fwrite(message, 1, len, w->f);
        fwrite(c, 1, 4, w->f);
        fflush(w->f);
        if (w->own_file) fclose(w->f);
    }
    free_writer_blocks(w);
    free(w->tmp_path);
    free(w->final_path);
    free(w->name);
    free(w->label);
    free(w);
}

static int write_header(ssm_writer *w, const ssm_tensor *t) {
    if (w->failed) return -1;
    size_t name_len = strlen(t->name ? t->name : "");
    if (name_len == 0 || name_len > SSM_MAX_NAME) return werr(w, "tensor name '%.60s' must be 1..%d bytes", t->name ? t->name : "", SSM_MAX_NAME);
    for (size_t i = 0; i < name_len; i++)
        if ((unsigned char)t->name[i] < 32 || t->name[i] == 127) return werr(w, "tensor name contains a control character");
    if (ssm_dtype_size(t->dtype) == 0) return werr(w, "tensor '%s': unknown dtype %d", t->name, t->dtype);
    if (t->rank < 0 || t->rank > SSM_MAX_RANK) return werr(w, "tensor '%s': bad rank %d", t->name, t->rank);
    if (ssm_tensor_numel(t) < 0) return werr(w, "tensor '%s': dims overflow", t->name);
    size_t attrs_len = 0;
    for (int i = 0; i < t->nattrs; i++) {
        const char *k = t->attrs[i].key, *v = t->attrs[i].value;
        if (!*k || strchr(k, '=') || strchr(k, '\n') || strchr(v, '\n'))
            return werr(w, "tensor '%s': attribute '%.40s' must be key=value without newlines", t->name, k);
        attrs_len += strlen(k) + strlen(v) + 2;
    }
    if (attrs_len > SSM_MAX_ATTRS_BYTES) return werr(w, "tensor '%s': attributes too long", t->name);
    size_t n = 16 + 8 * (size_t)t->rank + name_len + attrs_len + 4;
    unsigned char *h = ssm_xmalloc(n), *p = h;
    memcpy(p, MAGIC, 4);
    p[4] = SSM_STREAM_VERSION;
    p[5] = 0;
    p[6] = (unsigned char)t->dtype;
    p[7] = (unsigned char)t->rank;
    put_u32(p + 8, (uint32_t)name_len);
    put_u32(p + 12, (uint32_t)attrs_len);
    p += 16;
    for (int i = 0; i < t->rank; i++, p += 8) put_u64(p, (uint64_t)t->dims[i]);
    memcpy(p, t->name, name_len);
    p += name_len;
    for (int i = 0; i < t->nattrs; i++) {
        p += sprintf((char *)p, "%s=%s\n", t->attrs[i].key, t->attrs[i].value);
    }
    put_u32(p, crc_update(0, h, (size_t)(p - h)));
    int rc = write_bytes(w, h, n);
    free(h);
    return rc;
}

/* Block buffers for a frame of `total` payload bytes: small tensors get small buffers. */
static void ensure_writer_blocks(ssm_writer *w, uint64_t total) {
    int want = batch_blocks();
    size_t need = total < SSM_BLOCK_BYTES ? (size_t)total : SSM_BLOCK_BYTES;
    if (need < 4096) need = 4096;
    need = (need + 63) & ~(size_t)63;   /* a multiple of every element size: shuffle works */
    if (w->nb_cap >= want && w->raw_cap >= need) return;
    if (need < w->raw_cap) need = w->raw_cap;
    free_writer_blocks(w);
    w->blocks = ssm_xcalloc((size_t)want, sizeof *w->blocks);
    w->scratch = ssm_xcalloc((size_t)want, sizeof *w->scratch);
    for (int i = 0; i < want; i++) {
        w->blocks[i].raw = ssm_xmalloc(need);
        w->scratch[i] = ssm_xmalloc(need);
    }
    w->nb_cap = want;
    w->raw_cap = need;
}

/* Encodes blocks [0, n) in parallel and writes them in order. */
static int flush_batch(ssm_writer *w, int n) {
    int nt = nthreads(), level = w->level;
    size_t width = w->width;
#pragma omp parallel for num_threads(nt) schedule(dynamic) if (n > 1 && level > 0)
    for (int i = 0; i < n; i++) block_encode(&w->blocks[i], level, width, w->scratch[i]);
    for (int i = 0; i < n; i++)
        if (write_bytes(w, w->blocks[i].stored, BLOCK_HEADER_BYTES + w->blocks[i].stored_len) < 0) return -1;
    return 0;
}

int ssm_writer_begin(ssm_writer *w, const ssm_tensor *hdr) {
    if (w->failed) return -1;
    if (w->in_frame) return werr(w, "internal error: frame '%s' not finished before '%s'", w->name, hdr->name);
    if (write_header(w, hdr) < 0) return -1;
    ensure_writer_blocks(w, ssm_tensor_nbytes(hdr));
    free(w->name);
    w->name = ssm_xstrdup(hdr->name);
    w->in_frame = 1;
    w->total = ssm_tensor_nbytes(hdr);
    w->fed = 0;
    w->width = ssm_dtype_component_size(hdr->dtype);
    w->nb = 0;
    w->fill = 0;
    return 0;
}

int ssm_writer_feed(ssm_writer *w, const void *buf, size_t n) {
    if (w->failed) return -1;
    if (!w->in_frame) return werr(w, "internal error: data outside a frame");
    if (n > w->total - w->fed) return werr(w, "internal error: tensor '%s' given more bytes than its dims", w->name);
    const unsigned char *p = buf;
    while (n) {
        size_t k = w->raw_cap - w->fill;
        if (k > n) k = n;
        memcpy(w->blocks[w->nb].raw + w->fill, p, k);
        w->fill += k;
        w->fed += k;
        p += k;
        n -= k;
        if (w->fill == w->raw_cap) {
            w->blocks[w->nb].raw_len = (uint32_t)w->raw_cap;
            w->nb++;
            w->fill = 0;
            if (w->nb == w->nb_cap) {
                if (flush_batch(w, w->nb) < 0) return -1;
                w->nb = 0;
            }
        }
    }
    return 0;
}

static int write_end_block(ssm_writer *w) {
    unsigned char h[BLOCK_HEADER_BYTES] = {0};
    put_u32(h + 12, crc_update(0, h, 12));
    return write_bytes(w, h, BLOCK_HEADER_BYTES);
}

int ssm_writer_end(ssm_writer *w) {
    if (w->failed) return -1;
    if (!w->in_frame) return werr(w, "internal error: end outside a frame");
    if (w->fed != w->total)
        return werr(w, "internal error: tensor '%s' got %llu of %llu bytes", w->name,
                    (unsigned long long)w->fed, (unsigned long long)w->total);
    if (w->fill) {
        w->blocks[w->nb].raw_len = (uint32_t)w->fill;
        w->nb++;
        w->fill = 0;
    }
    if (w->nb && flush_batch(w, w->nb) < 0) return -1;
    w->nb = 0;
    w->in_frame = 0;
    return write_end_block(w);
}

int ssm_writer_write(ssm_writer *w, const ssm_tensor *t) {
    if (ssm_writer_begin(w, t) < 0) return -1;
    if (ssm_writer_feed(w, t->data, ssm_tensor_nbytes(t)) < 0) return -1;
    return ssm_writer_end(w);
}

int ssm_pass_through(ssm_reader *r, ssm_writer *w, const ssm_tensor *hdr) {
    if (r->failed) return -1;
    if (!r->in_payload) return rerr(r, "internal error: no payload to pass through");
    if (hdr->dtype != r->hdr.dtype || hdr->rank != r->hdr.rank ||
        memcmp(hdr->dims, r->hdr.dims, sizeof(int64_t) * (size_t)hdr->rank) != 0)
        return rerr(r, "internal error: pass-through header does not match the payload");
    if (r->pending_pos != 0 || r->pending_len != 0) return rerr(r, "internal error: payload partly read");
    if (write_header(w, hdr) < 0) return -1;
    while (r->in_payload) {
        int ended;
        int n = read_block_batch(r, batch_blocks(), &ended);
        if (n < 0) return -1;
        if (decode_batch(r, n, NULL) < 0) return -1;   /* verify checksums only */
        for (int i = 0; i < n; i++)
            if (write_bytes(w, r->blocks[i].stored, BLOCK_HEADER_BYTES + r->blocks[i].stored_len) < 0) return -1;
        if (ended) { r->in_payload = 0; r->frames++; }
    }
    return write_end_block(w);
}
