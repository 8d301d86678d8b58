/* test_mamba_init.c - the Mamba initialization of REFERENCE.md section 8 and the optimizer group
 * of every parameter: what the whole-model gradient check (test_model_ref) cannot see, because it
 * perturbs the parameters and compares gradients only.  A wrong init or group still trains, only
 * slowly.  Checks, on a model of odd sizes with fresh seeds:
 *   - dt = softplus(dt_proj.bias) lies in [dt_min, dt_max] and is log-uniform there (the mean and
 *     the spread of log dt), i.e. the bias is the inverse softplus of the sampled dt;
 *   - A_log[d, n] = log(n + 1) for every channel, D = 1, every norm weight 1;
 *   - uniform inits fill their bound: in_proj 1/sqrt(d_model), conv1d 1/sqrt(d_conv), x_proj
 *     1/sqrt(d_inner), dt_proj.weight dt_rank^-1/2, out_proj 1/sqrt(d_inner)/sqrt(n_layers);
 *     the embedding is normal with std 0.02;
 *   - groups: weight matrices (embedding, in_proj, conv1d, x_proj, dt_proj, out_proj) decay;
 *     A_log, D, biases and norms do not. */
#include "check.h"
#include "model_mamba.h"

#include <math.h>
#include <string.h>

static const float *param(ssm_params *ps, const char *name, int64_t *n, int *group) {
    int i = ssm_params_find(ps, name);
    CHECK(i >= 0, "parameter %s exists", name);
    if (i < 0) { *n = 0; return NULL; }
    *n = ps->p[i].nfloats;
    *group = ps->p[i].group;
    return ssm_params_data(ps, i);
}

/* max |w| within bound and above 0.85 bound (n is large enough for that), mean near 0 */
static void check_uniform(ssm_params *ps, const char *name, double bound) {
    int64_t n;
    int g;
    const float *w = param(ps, name, &n, &g);
    if (!w) return;
    double mx = 0, mean = 0;
    for (int64_t i = 0; i < n; i++) { mx = fmax(mx, fabs(w[i])); mean += w[i]; }
    mean /= (double)n;
    CHECK(mx <= bound * (1 + 1e-6) && mx >= 0.85 * bound, "%s: max |w| %g, want U(+-%g)", name, mx, bound);
    CHECK(fabs(mean) < 5 * bound / sqrt(3.0 * (double)n), "%s: mean %g for U(+-%g), n %lld", name, mean, bound, (long long)n);
}

int main(void) {
    test_seed_from_env("test_mamba_init");
    mamba_config c = mamba_config_default();
    c.d_model = 40; c.n_layers = 3; c.d_state = 7; c.expand = 2; c.d_conv = 3; c.vocab_size = 300;
    mamba_model *m = mamba_new(&c);
    mamba_init_params(m, test_next());
    ssm_params *ps = mamba_params(m);
    const mamba_config *k = mamba_get_config(m);
    int64_t dm = c.d_model, di = c.expand * dm, N = c.d_state, R = k->dt_rank;
    CHECK(R == 3, "dt_rank ceil(40/16) = 3, got %lld", (long long)R);
    int64_t n;
    int g;
    for (int l = 0; l < c.n_layers; l++) {
        char nm[128];
        /* dt: log-uniform in [dt_min, dt_max] */
        snprintf(nm, sizeof nm, "layers.%d.mixer.dt_proj.bias", l);
        const float *b = param(ps, nm, &n, &g);
        CHECK(g == SSM_GROUP_NO_DECAY, "%s: no decay", nm);
        double lo = log(k->dt_min), hi = log(k->dt_max), s = 0, s2 = 0, mn = 1e9, mx = -1e9;
        for (int64_t d = 0; d < n; d++) {
            double dt = log1p(exp((double)b[d]));                 /* softplus */
            CHECK(dt >= k->dt_min * (1 - 1e-4) && dt <= k->dt_max * (1 + 1e-4), "%s[%lld]: dt %g outside [%g, %g]", nm, (long long)d, dt, (double)k->dt_min, (double)k->dt_max);
            double ld = log(dt);
            s += ld; s2 += ld * ld; mn = fmin(mn, ld); mx = fmax(mx, ld);
        }
        double mean = s / (double)n, sd = sqrt(s2 / (double)n - mean * mean), w = hi - lo;
        /* uniform on [lo, hi]: mean (lo+hi)/2 (sd of the mean w/sqrt(12 n)), sd w/sqrt(12) */
        CHECK(fabs(mean - (lo + hi) / 2) < 5 * w / sqrt(12.0 * (double)n), "%s: mean log dt %g, want %g", nm, mean, (lo + hi) / 2);
        CHECK(fabs(sd - w / sqrt(12.0)) < 0.25 * w / sqrt(12.0), "%s: sd of log dt %g, want %g", nm, sd, w / sqrt(12.0));
        CHECK(mn < lo + 0.15 * w && mx > hi - 0.15 * w, "%s: log dt spans [%g, %g] of [%g, %g]", nm, mn, mx, lo, hi);
        /* A_log, D, norm */
        snprintf(nm, sizeof nm, "layers.%d.mixer.A_log", l);
        const float *a = param(ps, nm, &n, &g);
        CHECK(n == di * N && g == SSM_GROUP_NO_DECAY, "%s: (d_inner, N), no decay", nm);
        double worst = 0;
        for (int64_t d = 0; d < di; d++)
            for (int64_t j = 0; j < N; j++) worst = fmax(worst, fabs(a[d * N + j] - log((double)j + 1)));
        CHECK(worst < 1e-6, "%s: A_log = log(n + 1), worst error %g", nm, worst);
        snprintf(nm, sizeof nm, "layers.%d.mixer.D", l);
        const float *D = param(ps, nm, &n, &g);
        CHECK(g == SSM_GROUP_NO_DECAY, "%s: no decay", nm);
        for (int64_t d = 0; d < n; d++) CHECK(D[d] == 1.0f, "%s[%lld] = %g, want 1", nm, (long long)d, D[d]);
        snprintf(nm, sizeof nm, "layers.%d.norm.weight", l);
        const float *nw = param(ps, nm, &n, &g);
        CHECK(g == SSM_GROUP_NO_DECAY, "%s: no decay", nm);
        for (int64_t d = 0; d < n; d++) CHECK(nw[d] == 1.0f, "%s[%lld] = %g, want 1", nm, (long long)d, nw[d]);
        /* uniform inits and their groups */
        struct { const char *name; double bound; int group; } u[] = {
            {"in_proj.weight", 1 / sqrt((double)dm), SSM_GROUP_DECAY},
            {"conv1d.weight", 1 / sqrt((double)c.d_conv), SSM_GROUP_DECAY},
            {"conv1d.bias", 1 / sqrt((double)c.d_conv), SSM_GROUP_NO_DECAY},
            {"x_proj.weight", 1 / sqrt((double)di), SSM_GROUP_DECAY},
            {"dt_proj.weight", 1 / sqrt((double)R), SSM_GROUP_DECAY},
            {"out_proj.weight", 1 / sqrt((double)di) / sqrt((double)c.n_layers), SSM_GROUP_DECAY},
        };
        for (size_t i = 0; i < sizeof u / sizeof *u; i++) {
            snprintf(nm, sizeof nm, "layers.%d.mixer.%s", l, u[i].name);
            check_uniform(ps, nm, u[i].bound);
            param(ps, nm, &n, &g);
            CHECK(g == u[i].group, "%s: group %d, want %d", nm, g, u[i].group);
        }
    }
    const float *nf = param(ps, "norm_f.weight", &n, &g);
    CHECK(g == SSM_GROUP_NO_DECAY, "norm_f: no decay");
    for (int64_t d = 0; d < n; d++) CHECK(nf[d] == 1.0f, "norm_f.weight[%lld] = %g", (long long)d, nf[d]);
    const float *e = param(ps, "embedding.weight", &n, &g);
    CHECK(g == SSM_GROUP_DECAY, "embedding: decay");
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) { s += e[i]; s2 += (double)e[i] * e[i]; }
    double sd = sqrt(s2 / (double)n - (s / (double)n) * (s / (double)n));
    CHECK(fabs(sd - 0.02) < 0.002, "embedding std %g, want 0.02", sd);
    CHECK(ssm_params_find(ps, "lm_head.weight") < 0, "the LM head is tied to the embedding");
    mamba_free(m);
    return check_summary("test_mamba_init");
}
