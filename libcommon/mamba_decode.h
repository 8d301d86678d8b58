/* mamba_decode.h - the recurrent decode step of a Mamba language model, built for speed: one
 * token for each of `batch` sequences per call, every weight streamed once per call.
 *
 *     mamba_decoder *d = mamba_decoder_new(m, SSM_F32 or SSM_BF16, max_batch, threads);
 *     mamba_state *s = mamba_state_new(m, batch);        (or filled by a parallel prompt pass)
 *     mamba_decode_step(d, tokens, batch, s, logits);    tokens (batch), logits (batch, vocab)
 *
 * It computes what mamba_forward(m, tokens, NULL, batch, 1, NULL, s) computes (the reference:
 * tests/unit/test_mamba_decode.c checks both on the logits to 1e-4 and the state), and updates
 * the same mamba_state, so a prompt can be prefilled in parallel mode and continued here.
 * Differences from that path, all by design:
 *   - A = -exp(A_log) is computed once, here; no allocation per step.
 *   - Weight dtype SSM_BF16: the matrices (in_proj, x_proj, dt_proj, out_proj, the embedding and
 *     an untied lm_head) are kept as bf16 copies (rounded to nearest even; exact when the
 *     checkpoint was bf16) and converted to float32 in registers (matvec.h); the norms, conv,
 *     biases, A, D and the state stay float32.  The results equal the float32 decoder's on a
 *     model whose matrices hold the same bf16-rounded values up to float32 summation order.
 *   - Threads: d_inner is cut into fixed chunks of 64 channels; the threads take chunks from a
 *     shared counter and run in_proj, conv, silu, x_proj (a partial sum per chunk, the partials
 *     added in chunk order), dt_proj and the scan of each; out_proj and the LM head by blocks of
 *     rows taken the same way.  Three barriers per layer, no allocation, no other
 *     synchronization.  Which thread computes a chunk never changes a sum: the results do not
 *     depend on the thread count.
 * Not for classification models (n_classes > 0) or feature input (vocab_size == 0).
 */
#ifndef SSM_MAMBA_DECODE_H
#define SSM_MAMBA_DECODE_H

#include <stdint.h>
#include "model_mamba.h"

typedef struct mamba_decoder mamba_decoder;

/* weight_dtype SSM_F32 (reads the model's parameters in place: keep m alive and unchanged) or
 * SSM_BF16; threads 0 = omp_get_max_threads(). */
mamba_decoder *mamba_decoder_new(mamba_model *m, int weight_dtype, int max_batch, int threads);
void mamba_decoder_free(mamba_decoder *d);

/* One step: tokens (batch) in [0, vocab); s holds batch sequences (s->batch == batch);
 * logits (batch, vocab_size) written. */
void mamba_decode_step(mamba_decoder *d, const int32_t *tokens, int batch, mamba_state *s, float *logits);

/* Bytes one step reads and writes: weights (every parameter it reads, in its dtype) and state
 * (conv and SSM state read and written, logits written) for the given batch. */
void mamba_decoder_bytes(const mamba_decoder *d, int batch, int64_t *weight_bytes, int64_t *state_bytes);

#endif
