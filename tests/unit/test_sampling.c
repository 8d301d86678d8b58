/* test_sampling.c - greedy, temperature, top-k and top-p against the distributions they must
 * draw from (frequencies over many draws within 5 standard deviations), and determinism of a
 * saved rng state. */
#include "check.h"
#include "sampling.h"

#include <string.h>

/* Draws n tokens and checks the frequencies against want[] (0 = never drawn). */
static void check_freq(const float *logits, int V, ssm_sampling s, const double *want, const char *what) {
    ssm_rng rng;
    ssm_rng_init(&rng, test_next(), 0);
    ssm_sampling_scratch sc = {0};
    enum { DRAWS = 40000 };
    int count[16] = {0};
    for (int i = 0; i < DRAWS; i++) {
        int32_t t = ssm_sample_token(logits, V, &s, &rng, &sc);
        CHECK(t >= 0 && t < V, "%s: token %d in range", what, t);
        if (t >= 0 && t < V) count[t]++;
    }
    for (int v = 0; v < V; v++) {
        double f = (double)count[v] / DRAWS, sd = sqrt(want[v] * (1 - want[v]) / DRAWS);
        if (want[v] == 0) CHECK(count[v] == 0, "%s: token %d must never be drawn (%d times)", what, v, count[v]);
        else CHECK(fabs(f - want[v]) <= 5 * sd + 1e-9, "%s: token %d frequency %.4f, want %.4f (sd %.4f)", what, v, f, want[v], sd);
    }
    ssm_sampling_scratch_free(&sc);
}

static void softmax(const float *l, int V, double T, double *p) {
    double mx = -1e300, tot = 0;
    for (int i = 0; i < V; i++) if (l[i] > mx) mx = l[i];
    for (int i = 0; i < V; i++) { p[i] = exp((l[i] - mx) / T); tot += p[i]; }
    for (int i = 0; i < V; i++) p[i] /= tot;
}

int main(void) {
    test_seed_from_env("test_sampling");
    enum { V = 7 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)test_normal();
    int argmax = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[argmax]) argmax = i;
    ssm_rng rng;
    ssm_rng_init(&rng, 1, 0);
    ssm_sampling_scratch sc = {0};
    ssm_sampling greedy = {0, 0, 1}, k1 = {1.5, 1, 1};
    CHECK(ssm_sample_token(logits, V, &greedy, &rng, &sc) == argmax, "greedy is the argmax");
    CHECK(ssm_sample_token(logits, V, &k1, &rng, &sc) == argmax, "top-k 1 is the argmax");

    double want[V], p[V];
    for (int t = 0; t < 2; t++) {
        double T = t ? 2.0 : 0.7;
        softmax(logits, V, T, want);
        check_freq(logits, V, (ssm_sampling){T, 0, 1}, want, t ? "T=2" : "T=0.7");
    }
    /* top-k 3: the 3 most probable, renormalized */
    softmax(logits, V, 1, p);
    int order[V];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++) for (int j = i + 1; j < V; j++) if (p[order[j]] > p[order[i]]) { int x = order[i]; order[i] = order[j]; order[j] = x; }
    double m3 = p[order[0]] + p[order[1]] + p[order[2]];
    memset(want, 0, sizeof want);
    for (int r = 0; r < 3; r++) want[order[r]] = p[order[r]] / m3;
    check_freq(logits, V, (ssm_sampling){1, 3, 1}, want, "top-k 3");
    /* top-p on a known distribution: probabilities .5 .3 .15 .05 */
    float known[4] = {(float)log(0.5), (float)log(0.3), (float)log(0.15), (float)log(0.05)};
    double w75[4] = {0.5 / 0.8, 0.3 / 0.8, 0, 0}, w9[4] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, w4[4] = {1, 0, 0, 0};
    check_freq(known, 4, (ssm_sampling){1, 0, 0.75}, w75, "top-p 0.75");
    check_freq(known, 4, (ssm_sampling){1, 0, 0.9}, w9, "top-p 0.9");
    check_freq(known, 4, (ssm_sampling){1, 0, 0.4}, w4, "top-p 0.4");
    /* top-k 3 then top-p 0.9 of the survivors' mass (.95): .5 .3 reach .8 < .855, so 3 tokens */
    check_freq(known, 4, (ssm_sampling){1, 3, 0.9}, w9, "top-k 3 + top-p 0.9");

    /* the same rng state gives the same tokens */
    ssm_rng a, b;
    ssm_rng_init(&a, 42, 0);
    for (int i = 0; i < 10; i++) ssm_sample_token(logits, V, &(ssm_sampling){1, 0, 1}, &a, &sc);
    b = a;
    int same = 1;
    for (int i = 0; i < 50; i++)
        same &= ssm_sample_token(logits, V, &(ssm_sampling){0.9, 5, 0.95}, &a, &sc) ==
                ssm_sample_token(logits, V, &(ssm_sampling){0.9, 5, 0.95}, &b, &sc);
    CHECK(same, "a copied rng state continues identically");
    ssm_sampling_scratch_free(&sc);
    return check_summary("test_sampling");
}
