/* optim.c - AdamW with groups, clipping and the warmup + cosine schedule (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>

#include "cli.h"
#include "device.h"
#ifdef SSM_HAVE_CUDA
#include "nn_cuda.h"
#endif

adamw adamw_default(void) {
    adamw o = {0};
    o.lr = 1e-3f; o.ssm_lr = 1e-3f; o.weight_decay = 0.01f;
    o.beta1 = 0.9f; o.beta2 = 0.999f; o.eps = 1e-8f;
    o.clip = 1.0f; o.warmup = 0; o.total_steps = 1; o.min_lr_ratio = 0.0f;
    return o;
}

void adamw_alloc(adamw *o, const ssm_params *ps) {
    o->n = ps->total;
    o->m = ssm_buf_calloc((size_t)o->n + 1, sizeof(float));   /* on the GPU with --device cuda */
    o->v = ssm_buf_calloc((size_t)o->n + 1, sizeof(float));
}
void adamw_free(adamw *o) { ssm_buf_free(o->m); ssm_buf_free(o->v); o->m = o->v = NULL; }

float adamw_lr_factor(const adamw *o, int64_t step) {
    if (o->warmup > 0 && step < o->warmup) return (float)(step + 1) / (float)o->warmup;
    int64_t span = o->total_steps - o->warmup;
    double progress = span > 0 ? (double)(step - o->warmup) / (double)span : 1.0;
    if (progress > 1) progress = 1;
    if (progress < 0) progress = 0;
    return (float)(o->min_lr_ratio + (1 - o->min_lr_ratio) * 0.5 * (1 + cos(M_PI * progress)));
}

double grad_global_norm(const ssm_params *ps) {
#ifdef SSM_HAVE_CUDA
    if (ssm_compute_on_gpu()) return sqrt(grad_sumsq_cuda(ps->grad, ps->total));
#endif
    double s = 0;
    for (int64_t i = 0; i < ps->total; i++) s += (double)ps->grad[i] * ps->grad[i];
    return sqrt(s);
}

double adamw_step(adamw *o, ssm_params *ps) {
    double norm = grad_global_norm(ps);
    float gscale = 1.0f;
    if (o->clip > 0 && norm > o->clip) gscale = (float)(o->clip / (norm + 1e-6));
    float f = adamw_lr_factor(o, o->step);
    int64_t t = o->step + 1;
    float bc1 = 1.0f - powf(o->beta1, (float)t), bc2 = 1.0f - powf(o->beta2, (float)t);
    for (int i = 0; i < ps->n; i++) {
        const ssm_param *p = &ps->p[i];
        float lr = (p->group == SSM_GROUP_SSM ? o->ssm_lr : o->lr) * f;
        float wd = p->group == SSM_GROUP_DECAY ? o->weight_decay : 0.0f;
        float *w = ps->data + p->offset, *g = ps->grad + p->offset;
        float *m = o->m + p->offset, *v = o->v + p->offset;
#ifdef SSM_HAVE_CUDA
        if (ssm_compute_on_gpu()) {
            adamw_update_cuda(w, g, m, v, p->nfloats, gscale, lr, wd, o->beta1, o->beta2, o->eps, bc1, bc2);
            continue;
        }
#endif
        /* threads only for large tensors: a parallel region per small tensor costs more than its
         * work, and far more on a loaded machine (each barrier waits for a descheduled thread) */
#pragma omp parallel for schedule(static) if (p->nfloats >= (1 << 16))
        for (int64_t j = 0; j < p->nfloats; j++) {
            float gj = g[j] * gscale;
            m[j] = o->beta1 * m[j] + (1 - o->beta1) * gj;
            v[j] = o->beta2 * v[j] + (1 - o->beta2) * gj * gj;
            float mhat = m[j] / bc1, vhat = v[j] / bc2;
            w[j] -= lr * (mhat / (sqrtf(vhat) + o->eps) + wd * w[j]);
        }
    }
    o->step++;
    return norm;
}
