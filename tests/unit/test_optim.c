/* test_optim.c - AdamW against a float64 reference written here from the formulas (three groups,
 * clipping, several steps), and the warmup + cosine schedule at its landmarks. */
#include "check.h"
#include "optim.h"

#include <math.h>
#include <stdlib.h>

int main(void) {
    test_seed_from_env("test_optim");
    ssm_params ps;
    ssm_params_init(&ps);
    int groups[3] = {SSM_GROUP_DECAY, SSM_GROUP_NO_DECAY, SSM_GROUP_SSM};
    int64_t dims[3][2] = {{3, 5}, {7, 1}, {2, 3}};
    for (int i = 0; i < 3; i++) ssm_params_add(&ps, i == 2 ? SSM_C64 : SSM_F32, groups[i], 2, dims[i], "p%d", i);
    ssm_params_alloc(&ps);
    CHECK(ps.total == 15 + 7 + 12, "total floats %lld", (long long)ps.total);
    int64_t n = ps.total;
    double *w = malloc(n * sizeof *w), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    for (int64_t i = 0; i < n; i++) w[i] = ps.data[i] = (float)test_normal();
    adamw o = adamw_default();
    o.lr = 0.01f; o.ssm_lr = 0.002f; o.weight_decay = 0.1f; o.clip = 1.5f; o.warmup = 2; o.total_steps = 6;
    o.min_lr_ratio = 0.1f;
    adamw_alloc(&o, &ps);
    for (int step = 0; step < 6; step++) {
        double scale = step % 2 ? 0.1 : 3.0;       /* alternately clipped and not */
        double norm = 0;
        for (int64_t i = 0; i < n; i++) { ps.grad[i] = (float)(scale * test_normal()); norm += (double)ps.grad[i] * ps.grad[i]; }
        norm = sqrt(norm);
        double gs = norm > 1.5 ? 1.5 / (norm + 1e-6) : 1;
        double f = step < 2 ? (step + 1) / 2.0 : 0.1 + 0.9 * 0.5 * (1 + cos(M_PI * (step - 2) / 4.0));
        for (int g = 0; g < 3; g++) {
            const ssm_param *p = &ps.p[g];
            double lr = (g == 2 ? 0.002 : 0.01) * f, wd = g == 0 ? 0.1 : 0;
            for (int64_t j = p->offset; j < p->offset + p->nfloats; j++) {
                double gj = ps.grad[j] * gs;
                m[j] = 0.9 * m[j] + 0.1 * gj;
                v[j] = 0.999 * v[j] + 0.001 * gj * gj;
                double mh = m[j] / (1 - pow(0.9, step + 1)), vh = v[j] / (1 - pow(0.999, step + 1));
                w[j] -= lr * (mh / (sqrt(vh) + 1e-8) + wd * w[j]);
            }
        }
        double got_norm = adamw_step(&o, &ps);
        CHECK_CLOSE(got_norm, norm, 1e-5, "gradient norm step %d", step);
        CHECK_REL_ERR(rel_err_f32(ps.data, w, n), 1e-5, "parameters after step %d", step);
    }
    CHECK(o.step == 6, "step count");
    CHECK_CLOSE(adamw_lr_factor(&o, 0), 0.5, 1e-6, "warmup start");
    CHECK_CLOSE(adamw_lr_factor(&o, 2), 1.0, 1e-6, "peak");
    CHECK_CLOSE(adamw_lr_factor(&o, 4), 0.55, 1e-6, "cosine middle");
    CHECK_CLOSE(adamw_lr_factor(&o, 6), 0.1, 1e-6, "end at min ratio");
    adamw_free(&o);
    ssm_params_free(&ps);
    free(w); free(m); free(v);
    return check_summary("test_optim");
}
