/* fuzz_stream.c - libFuzzer target for the stream reader: any input must give frames or a clean
 * error, never a crash, a hang, a leak or an allocation sized by an unchecked header.  Each input
 * is read twice: whole tensors (ssm_reader_read_tensor) and streamed in small pieces with
 * pass-through to a writer, the two paths tools use. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ssm_reader *r = ssm_reader_open_memory(data, size, "fuzz");
    int st;
    ssm_tensor *t;
    while ((t = ssm_reader_read_tensor(r, &st))) ssm_tensor_free(t);
    ssm_reader_close(r);

    r = ssm_reader_open_memory(data, size, "fuzz");
    FILE *sink = fopen("/dev/null", "wb");
    ssm_writer *w = ssm_writer_open_file(sink, "null", 1);
    ssm_tensor *h;
    int i = 0;
    unsigned char piece[4093];
    while (ssm_reader_next(r, &h) == 1) {
        if (i++ % 2) {
            if (ssm_pass_through(r, w, h) < 0) break;
        } else {
            int64_t k;
            while ((k = ssm_reader_read_some(r, piece, sizeof piece)) > 0) {}
            if (k < 0) break;
        }
    }
    ssm_writer_abort(w, "done");
    fclose(sink);
    ssm_reader_close(r);
    return 0;
}
