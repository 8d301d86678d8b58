/* sampling.c - see sampling.h. */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>

#include "cli.h"

static const double *sort_prob;   /* qsort has no context argument */

static int by_prob_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (sort_prob[i] != sort_prob[j]) return sort_prob[i] > sort_prob[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

int32_t ssm_sample_token(const float *logits, int64_t V, const ssm_sampling *s, ssm_rng *rng,
                         ssm_sampling_scratch *sc) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    if (s->temperature <= 0 || s->top_k == 1) return (int32_t)best;
    if (sc->cap < V) {
        sc->prob = ssm_xrealloc(sc->prob, (size_t)V * sizeof(double));
        sc->order = ssm_xrealloc(sc->order, (size_t)V * sizeof(int32_t));
        sc->cap = V;
    }
    /* softmax of logits / T, in double, shifted by the maximum */
    double mx = logits[best], total = 0;
    for (int64_t i = 0; i < V; i++) {
        sc->prob[i] = exp(((double)logits[i] - mx) / s->temperature);
        total += sc->prob[i];
    }
    int filter = (s->top_k > 0 && s->top_k < V) || s->top_p < 1;
    int64_t keep = V;
    if (!filter) {
        /* draw over all tokens in id order */
        double u = ssm_rng_uniform(rng) * total, acc = 0;
        for (int64_t i = 0; i < V; i++) {
            acc += sc->prob[i];
            if (u < acc) return (int32_t)i;
        }
        return (int32_t)best;   /* rounding at the very end */
    }
    for (int64_t i = 0; i < V; i++) sc->order[i] = (int32_t)i;
    sort_prob = sc->prob;
    qsort(sc->order, (size_t)V, sizeof(int32_t), by_prob_desc);
    if (s->top_k > 0 && s->top_k < keep) keep = s->top_k;
    if (s->top_p < 1) {
        /* the smallest prefix (of the top-k survivors) whose share of their mass reaches top_p */
        double kept = 0, acc = 0;
        for (int64_t r = 0; r < keep; r++) kept += sc->prob[sc->order[r]];
        int64_t r = 0;
        while (r < keep) {
            acc += sc->prob[sc->order[r++]];
            if (acc >= s->top_p * kept) break;
        }
        keep = r;
    }
    double mass = 0;
    for (int64_t r = 0; r < keep; r++) mass += sc->prob[sc->order[r]];
    double u = ssm_rng_uniform(rng) * mass, acc = 0;
    for (int64_t r = 0; r < keep; r++) {
        acc += sc->prob[sc->order[r]];
        if (u < acc) return sc->order[r];
    }
    return sc->order[keep - 1];
}

void ssm_sampling_scratch_free(ssm_sampling_scratch *sc) {
    free(sc->prob);
    free(sc->order);
    sc->prob = NULL;
    sc->order = NULL;
    sc->cap = 0;
}
