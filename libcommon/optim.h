/* optim.h - AdamW with parameter groups, global gradient-norm clipping, warmup + cosine schedule.
 *
 * Groups (params.h): SSM_GROUP_DECAY gets lr and weight_decay; SSM_GROUP_NO_DECAY gets lr and no
 * decay; SSM_GROUP_SSM (log dt, A) gets ssm_lr and no decay (the S4 rule: <= 1e-3).  The schedule
 * multiplies every group's rate by the same factor:
 *     step < warmup:  (step + 1) / warmup
 *     after:          min_ratio + (1 - min_ratio) * 0.5 (1 + cos(pi * progress)),
 *                     progress = (step - warmup) / (total - warmup)
 * AdamW (decoupled decay, bias-corrected):  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *     p -= lr_t * (mhat / (sqrt(vhat) + eps) + wd * p).
 * Everything is elementwise or a sum in a fixed order: the same result for any thread count.
 * The moments and the step are saved in checkpoints (adam.m.NAME, adam.v.NAME) for --resume.
 */
#ifndef SSM_OPTIM_H
#define SSM_OPTIM_H

#include <stdint.h>
#include "params.h"

typedef struct {
    float lr, ssm_lr, weight_decay;
    float beta1, beta2, eps;
    float clip;                 /* max global gradient norm; 0 = no clipping */
    int64_t warmup, total_steps;
    float min_lr_ratio;
    int64_t step;               /* updates done so far */
    int64_t n;                  /* floats */
    float *m, *v;
} adamw;

adamw adamw_default(void);
void adamw_alloc(adamw *o, const ssm_params *ps);      /* zero moments */
void adamw_free(adamw *o);
float adamw_lr_factor(const adamw *o, int64_t step);   /* the schedule above */
/* Global L2 norm of the gradients (double, in order). */
double grad_global_norm(const ssm_params *ps);
/* Clips (if o->clip > 0 and the norm exceeds it), then one AdamW update; step++.
 * Returns the gradient norm before clipping. */
double adamw_step(adamw *o, ssm_params *ps);

#endif
