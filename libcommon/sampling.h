/* sampling.h - choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus).
 *
 * Order (as in the common implementations): logits / temperature, keep the top_k largest, keep the
 * smallest set of the most probable tokens whose probability reaches top_p, renormalize, draw one
 * token with a uniform number from rng (hippo.h's seeded ssm_rng, so a saved rng state continues
 * the same sequence).  temperature 0 is greedy: the first index of the largest logit, and rng is
 * not used.  Ties in the sort are broken by the lower token id, so the result is deterministic.
 */
#ifndef SSM_SAMPLING_H
#define SSM_SAMPLING_H

#include <stdint.h>

#include "hippo.h"   /* ssm_rng */

typedef struct {
    double temperature;   /* 0 = greedy */
    int64_t top_k;        /* 0 = all */
    double top_p;         /* 1 = all */
} ssm_sampling;

/* logits is (V); scratch is NULL or a buffer the function may grow (free it at the end). */
typedef struct {
    double *prob;
    int32_t *order;
    int64_t cap;
} ssm_sampling_scratch;

int32_t ssm_sample_token(const float *logits, int64_t V, const ssm_sampling *s, ssm_rng *rng,
                         ssm_sampling_scratch *scratch);
void ssm_sampling_scratch_free(ssm_sampling_scratch *scratch);

#endif
