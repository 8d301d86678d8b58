/* params.h - a model's parameters: one contiguous float32 buffer (and one for the gradients),
 * each parameter a named slice of it with a shape and an optimizer group.
 *
 * Names are the checkpoint names (HELPERS.md: "layers.0.mixer.in_proj.weight", ...).  Complex
 * parameters (S4D's B, C) are stored as (re, im) float pairs and written as c64 tensors.
 * One buffer makes the optimizer, gradient clipping and checkpointing a loop over floats.
 */
#ifndef SSM_PARAMS_H
#define SSM_PARAMS_H

#include <stdint.h>
#include "tensor.h"

/* Optimizer groups (see optim.h): weights get weight decay; "no decay" holds norms, biases,
 * embeddings' companions and skip terms D; "ssm" holds the state-space parameters (log dt, A)
 * which get their own learning rate and no weight decay (the S4 rule). */
enum { SSM_GROUP_DECAY = 0, SSM_GROUP_NO_DECAY = 1, SSM_GROUP_SSM = 2, SSM_NGROUPS = 3 };

typedef struct {
    char name[128];
    int dtype;                  /* SSM_F32, or SSM_C64 (numel counts complex elements) */
    int rank;
    int64_t dims[4];
    int64_t offset;             /* in floats, into data / grad */
    int64_t nfloats;            /* floats it occupies (2 x numel for c64) */
    int group;
} ssm_param;

typedef struct {
    int n, cap;
    ssm_param *p;
    int64_t total;              /* floats */
    float *data, *grad;         /* total floats each, after ssm_params_alloc */
} ssm_params;

void ssm_params_init(ssm_params *ps);
void ssm_params_free(ssm_params *ps);
/* Declares a parameter (before ssm_params_alloc); returns its index.  Name is printf-style. */
int ssm_params_add(ssm_params *ps, int dtype, int group, int rank, const int64_t *dims,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void ssm_params_alloc(ssm_params *ps);           /* zeroed data and grad */
float *ssm_params_data(const ssm_params *ps, int index);
float *ssm_params_grad(const ssm_params *ps, int index);
int ssm_params_find(const ssm_params *ps, const char *name);   /* -1 if absent */
void ssm_params_zero_grad(ssm_params *ps);

/* Every parameter as a tensor (copies) appended to set, with the given prefix ("" or "adam.m.")
 * and the values from buf (data, grad, or an optimizer moment of total floats). */
void ssm_params_to_set(const ssm_params *ps, const float *buf, const char *prefix, ssm_tensor_set *set);
/* Fills buf from the tensors of set named prefix+name; dies naming the tensor when one is missing
 * or has another shape.  Returns the number of tensors read. */
int ssm_params_from_set(const ssm_params *ps, float *buf, const char *prefix, const ssm_tensor_set *set);

/* ---- random numbers: sequential draws use hippo.h's ssm_rng (splitmix64); for dropout masks
 * computed in parallel, a hash of (seed, counter) -> [0, 1): the same whatever the thread count. */
double ssm_hash_uniform(uint64_t seed, uint64_t counter);

#endif
