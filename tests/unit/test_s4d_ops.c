/* test_s4d_ops.c - every fused S4D pass of s4d_ops.h against the plain composition of nn.h ops and
 * transposes it replaces (nn.h's ops are themselves checked against float64 references and finite
 * differences in test_nn.c), on fresh random inputs of odd sizes (L not a multiple of the tile,
 * H odd, batch 1), with and without dropout; and the parameter-gradient sums bit-identical for 1
 * and 3 threads. */
#include "check.h"
#include "nn.h"
#include "params.h"
#include "s4d_ops.h"
#include "ssm_kernel.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static float *randf(int64_t n, double scale) {
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(scale * test_normal());
    return v;
}
static float *copyf(const float *a, int64_t n) {
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    memcpy(v, a, (size_t)n * sizeof *v);
    return v;
}
static double *to_d(const float *a, int64_t n) {
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = a[i];
    return v;
}
static double rel(const float *got, const float *want, int64_t n) {
    double *w = to_d(want, n);
    double e = rel_err_f32(got, w, n);
    free(w);
    return e;
}
/* (B, L, H) -> (B, H, L) and back */
static void blh_to_bhl(float *out, const float *in, int64_t B, int64_t L, int64_t H) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t h = 0; h < H; h++) out[(b * H + h) * L + t] = in[(b * L + t) * H + h];
}
static void bhl_to_blh(float *out, const float *in, int64_t B, int64_t L, int64_t H) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++)
            for (int64_t h = 0; h < H; h++) out[(b * L + t) * H + h] = in[(b * H + h) * L + t];
}

static void check_layernorm(int64_t B, int64_t L, int64_t H) {
    int64_t M = B * L, n = M * H;
    float *h = randf(n, 2), *w = randf(H, 1), *bias = randf(H, 1), *dxt = randf(n, 1);
    for (int64_t i = 0; i < n; i++) h[i] += 0.5f;
    /* forward */
    float *xt = randf(n, 1), *mean = randf(M, 1), *rstd = randf(M, 1);
    s4d_layernorm_transpose_forward(xt, mean, rstd, h, w, bias, B, L, H, 1e-5f);
    float *xn = randf(n, 1), *xt_ref = randf(n, 1), *mean_ref = randf(M, 1), *rstd_ref = randf(M, 1);
    layernorm_forward(xn, mean_ref, rstd_ref, h, w, bias, M, H, 1e-5f);
    blh_to_bhl(xt_ref, xn, B, L, H);
    CHECK_REL_ERR(rel(xt, xt_ref, n), 1e-6, "layernorm+transpose forward (B %lld, L %lld, H %lld)", (long long)B, (long long)L, (long long)H);
    CHECK_REL_ERR(rel(mean, mean_ref, M) + rel(rstd, rstd_ref, M), 1e-6, "layernorm mean and rstd");
    /* backward: gradients accumulate onto random starting values */
    float *dh0 = randf(n, 1), *dw0 = randf(H, 1), *db0 = randf(H, 1);
    float *dh = copyf(dh0, n), *dw = copyf(dw0, H), *db = copyf(db0, H);
    float *dh_ref = copyf(dh0, n), *dw_ref = copyf(dw0, H), *db_ref = copyf(db0, H), *dxn = randf(n, 1);
    s4d_transpose_layernorm_backward(dh, dw, db, dxt, h, w, mean, rstd, B, L, H);
    bhl_to_blh(dxn, dxt, B, L, H);
    layernorm_backward(dh_ref, dw_ref, db_ref, dxn, h, w, mean, rstd, M, H);
    CHECK_REL_ERR(rel(dh, dh_ref, n), 1e-5, "transpose+layernorm backward: dh (B %lld, L %lld, H %lld)", (long long)B, (long long)L, (long long)H);
    CHECK_REL_ERR(rel(dw, dw_ref, H), 1e-5, "transpose+layernorm backward: dw");
    CHECK_REL_ERR(rel(db, db_ref, H), 1e-5, "transpose+layernorm backward: db");
    /* the parameter sums do not depend on the thread count */
    float *dw3 = copyf(dw0, H), *db3 = copyf(db0, H), *dh3 = copyf(dh0, n);
    float *dw1 = copyf(dw0, H), *db1 = copyf(db0, H), *dh1 = copyf(dh0, n);
    omp_set_num_threads(1);
    s4d_transpose_layernorm_backward(dh1, dw1, db1, dxt, h, w, mean, rstd, B, L, H);
    omp_set_num_threads(3);
    s4d_transpose_layernorm_backward(dh3, dw3, db3, dxt, h, w, mean, rstd, B, L, H);
    CHECK(memcmp(dw1, dw3, (size_t)H * 4) == 0 && memcmp(db1, db3, (size_t)H * 4) == 0 && memcmp(dh1, dh3, (size_t)n * 4) == 0,
          "layernorm backward bit-identical for 1 and 3 threads");
    omp_set_num_threads(2);
    free(h); free(w); free(bias); free(dxt); free(xt); free(mean); free(rstd); free(xn); free(xt_ref); free(mean_ref);
    free(rstd_ref); free(dh0); free(dw0); free(db0); free(dh); free(dw); free(db); free(dh_ref); free(dw_ref); free(db_ref);
    free(dxn); free(dw3); free(db3); free(dh3); free(dw1); free(db1); free(dh1);
}

static void check_gelu_dropout(int64_t B, int64_t L, int64_t H, float p) {
    int64_t n = B * L * H;
    uint64_t seed = test_next();
    float *yt = randf(n, 2), *dgd = randf(n, 1);
    float *ys = randf(n, 1), *gd = randf(n, 1);
    unsigned char *mask = malloc((size_t)n + 1);
    s4d_transpose_gelu_dropout_forward(ys, gd, p > 0 ? mask : NULL, yt, B, L, H, p, seed);
    float *ys_ref = randf(n, 1), *g = randf(n, 1), *gd_ref = randf(n, 1);
    bhl_to_blh(ys_ref, yt, B, L, H);
    gelu_forward(g, ys_ref, n);
    dropout_forward(gd_ref, g, n, p, seed);
    CHECK(memcmp(ys, ys_ref, (size_t)n * 4) == 0, "transpose in gelu+dropout forward (B %lld, L %lld, H %lld, p %g)",
          (long long)B, (long long)L, (long long)H, p);
    CHECK_REL_ERR(rel(gd, gd_ref, n), 1e-6, "gelu+dropout forward (p %g)", p);
    if (p > 0) {
        int64_t bad = 0, kept = 0;
        for (int64_t i = 0; i < n; i++) {
            bad += mask[i] != (ssm_hash_uniform(seed, (uint64_t)i) >= p);
            kept += mask[i];
        }
        CHECK(bad == 0 && (n < 20 || (kept > 0 && kept < n)), "dropout mask: %lld of %lld elements differ from nn.h's", (long long)bad, (long long)n);
    }
    float *dyt = randf(n, 1), *dg = calloc((size_t)n, 4), *dys = calloc((size_t)n, 4), *dyt_ref = randf(n, 1);
    s4d_gelu_dropout_transpose_backward(dyt, dgd, ys, p > 0 ? mask : NULL, B, L, H, p);
    dropout_backward(dg, dgd, n, p, seed);
    gelu_backward(dys, dg, ys_ref, n);
    blh_to_bhl(dyt_ref, dys, B, L, H);
    CHECK_REL_ERR(rel(dyt, dyt_ref, n), 4e-6, "gelu+dropout+transpose backward (p %g)", p);
    free(yt); free(dgd); free(ys); free(gd); free(mask); free(ys_ref); free(g); free(gd_ref); free(dyt); free(dg);
    free(dys); free(dyt_ref);
}

static void check_glu(int64_t M, int64_t H) {
    float *o0 = randf(M * 2 * H, 2), *bias = randf(2 * H, 1), *h = randf(M * H, 1), *dh = randf(M * H, 1);
    float *o = copyf(o0, M * 2 * H), *hn = randf(M * H, 1);
    s4d_bias_glu_residual_forward(hn, o, bias, h, M, H);
    float *o_ref = copyf(o0, M * 2 * H), *glu = randf(M * H, 1);
    for (int64_t r = 0; r < M; r++)
        for (int64_t c = 0; c < 2 * H; c++) o_ref[r * 2 * H + c] += bias[c];
    glu_forward(glu, o_ref, M, H);
    for (int64_t i = 0; i < M * H; i++) glu[i] += h[i];
    CHECK(memcmp(o, o_ref, (size_t)(M * 2 * H) * 4) == 0, "bias add kept in o (M %lld, H %lld)", (long long)M, (long long)H);
    CHECK_REL_ERR(rel(hn, glu, M * H), 1e-6, "bias+GLU+residual forward");
    float *db0 = randf(2 * H, 1), *db = copyf(db0, 2 * H), *db_ref = copyf(db0, 2 * H);
    float *dout = randf(M * 2 * H, 1), *dout_ref = calloc((size_t)(M * 2 * H), 4);
    s4d_glu_backward(dout, db, dh, o, M, H);
    glu_backward(dout_ref, dh, o_ref, M, H);
    linear_backward(NULL, NULL, db_ref, dout_ref, NULL, NULL, M, H, 2 * H);
    CHECK_REL_ERR(rel(dout, dout_ref, M * 2 * H), 1e-6, "GLU backward");
    CHECK_REL_ERR(rel(db, db_ref, 2 * H), 1e-6, "GLU backward: the bias gradient accumulates the row sums");
    /* the linear input gradient is written (beta 0), not added */
    float *W = randf(2 * H * H, 1), *dinp = randf(M * H, 1), *dinp_ref = calloc((size_t)(M * H), 4);
    s4d_linear_input_grad(dinp, dout_ref, W, M, H, 2 * H);
    linear_backward(dinp_ref, NULL, NULL, dout_ref, NULL, W, M, H, 2 * H);
    CHECK_REL_ERR(rel(dinp, dinp_ref, M * H), 1e-6, "linear input gradient written");
    /* the row-split matmuls (blocks of 1024 rows: M above and below a block) */
    {
        int64_t Mb = M * 40 + 3;
        float *x = randf(Mb * H, 1), *dy = randf(Mb * 2 * H, 1), *y = randf(Mb * 2 * H, 1), *y_ref = randf(Mb * 2 * H, 1);
        float *dx = randf(Mb * H, 1), *dx_ref = calloc((size_t)(Mb * H), 4), *dW0 = randf(2 * H * H, 1);
        float *dW = copyf(dW0, 2 * H * H), *dW_ref = copyf(dW0, 2 * H * H), *dW1 = copyf(dW0, 2 * H * H);
        s4d_workspace *ws = s4d_workspace_new();
        s4d_linear_forward_rows(y, x, W, Mb, H, 2 * H);
        linear_forward(y_ref, x, W, NULL, Mb, H, 2 * H);
        CHECK_REL_ERR(rel(y, y_ref, Mb * 2 * H), 1e-6, "row-split linear forward (M %lld)", (long long)Mb);
        s4d_linear_backward_rows(ws, dx, dW, dy, x, W, Mb, H, 2 * H);
        linear_backward(dx_ref, dW_ref, NULL, dy, x, W, Mb, H, 2 * H);
        CHECK_REL_ERR(rel(dx, dx_ref, Mb * H), 1e-6, "row-split linear backward: dinp written");
        CHECK_REL_ERR(rel(dW, dW_ref, 2 * H * H), 1e-5, "row-split linear backward: dW added");
        omp_set_num_threads(1);
        s4d_linear_backward_rows(ws, NULL, dW1, dy, x, W, Mb, H, 2 * H);
        omp_set_num_threads(2);
        CHECK(memcmp(dW1, dW, (size_t)(2 * H * H) * 4) == 0, "row-split dW bit-identical for 1 and 2 threads");
        s4d_workspace_free(ws);
        free(x); free(dy); free(y); free(y_ref); free(dx); free(dx_ref); free(dW0); free(dW); free(dW_ref); free(dW1);
    }
    free(o0); free(bias); free(h); free(dh); free(o); free(hn); free(o_ref); free(glu); free(db0); free(db); free(db_ref);
    free(dout); free(dout_ref); free(W); free(dinp); free(dinp_ref);
}

/* The fused per-sequence convolution pass against the separate passes + fft_conv_*_f32. */
static void check_fused_conv(int64_t B, int64_t L, int64_t H, float p, int store_xt) {
    int64_t M = B * L, n = M * H;
    uint64_t seed = test_next();
    float *h = randf(n, 1.5), *w = randf(H, 1), *bias = randf(H, 1), *K = randf(H * L, 0.3), *D = randf(H, 1);
    float *dgd = randf(n, 1);
    /* reference: the separate passes */
    float *xt_r = randf(n, 1), *mean_r = randf(M, 1), *rstd_r = randf(M, 1), *yt_r = randf(n, 1), *ys_r = randf(n, 1);
    float *gd_r = randf(n, 1), *dyt_r = randf(n, 1), *dxt_r = randf(n, 1), *dK_r = randf(H * L, 1), *dD_r = randf(H, 1);
    unsigned char *mask_r = malloc((size_t)n + 1), *mask = malloc((size_t)n + 1);
    s4d_layernorm_transpose_forward(xt_r, mean_r, rstd_r, h, w, bias, B, L, H, 1e-5f);
    fft_conv_forward_f32(B, H, L, xt_r, K, NULL, D, yt_r);
    s4d_transpose_gelu_dropout_forward(ys_r, gd_r, mask_r, yt_r, B, L, H, p, seed);
    float *dh0 = randf(n, 1), *dw0 = randf(H, 1), *db0 = randf(H, 1);
    float *dh_r = copyf(dh0, n), *dw_r = copyf(dw0, H), *db_r = copyf(db0, H);
    s4d_gelu_dropout_transpose_backward(dyt_r, dgd, ys_r, mask_r, B, L, H, p);
    fft_conv_backward_f32(B, H, L, xt_r, K, NULL, D, dyt_r, dxt_r, dK_r, NULL, dD_r);
    s4d_transpose_layernorm_backward(dh_r, dw_r, db_r, dxt_r, h, w, mean_r, rstd_r, B, L, H);
    /* fused */
    s4d_workspace *ws = s4d_workspace_new();
    float *xt = store_xt ? randf(n, 1) : NULL, *mean = randf(M, 1), *rstd = randf(M, 1), *ys = randf(n, 1), *gd = randf(n, 1);
    s4d_conv_forward_fused(ws, xt, mean, rstd, ys, gd, mask, h, w, bias, K, D, B, L, H, 1e-5f, p, seed);
    const char *how = store_xt ? "xt stored" : "xt recomputed";
    if (xt) CHECK_REL_ERR(rel(xt, xt_r, n), 1e-6, "fused forward: xt (B %lld, L %lld, H %lld)", (long long)B, (long long)L, (long long)H);
    CHECK_REL_ERR(rel(mean, mean_r, M) + rel(rstd, rstd_r, M), 1e-6, "fused forward: mean, rstd");
    CHECK_REL_ERR(rel(ys, ys_r, n), 1e-6, "fused forward: ys (B %lld, L %lld, H %lld, p %g)", (long long)B, (long long)L, (long long)H, p);
    CHECK_REL_ERR(rel(gd, gd_r, n), 1e-6, "fused forward: gd");
    CHECK(p == 0 || memcmp(mask, mask_r, (size_t)n) == 0, "fused forward: the dropout mask");
    float *dh = copyf(dh0, n), *dw = copyf(dw0, H), *db = copyf(db0, H), *dK = randf(H * L, 1), *dD = randf(H, 1);
    s4d_conv_backward_fused(ws, dh, dw, db, dK, dD, dgd, ys, mask, xt, h, w, bias, mean, rstd, K, D, B, L, H, 1e-5f, p);
    CHECK_REL_ERR(rel(dh, dh_r, n), 1e-5, "fused backward (%s): dh", how);
    CHECK_REL_ERR(rel(dw, dw_r, H) + rel(db, db_r, H), 1e-5, "fused backward (%s): dnorm_w, dnorm_b", how);
    CHECK_REL_ERR(rel(dK, dK_r, H * L), 1e-5, "fused backward (%s): dK", how);
    CHECK_REL_ERR(rel(dD, dD_r, H), 1e-5, "fused backward (%s): dD", how);
    /* bit-identical for 1 and 3 threads */
    float *dh1 = copyf(dh0, n), *dw1 = copyf(dw0, H), *dK1 = randf(H * L, 1), *dD1 = randf(H, 1);
    float *dh3 = copyf(dh0, n), *dw3 = copyf(dw0, H), *dK3 = randf(H * L, 1), *dD3 = randf(H, 1);
    omp_set_num_threads(1);
    s4d_conv_backward_fused(ws, dh1, dw1, NULL, dK1, dD1, dgd, ys, mask, xt, h, w, bias, mean, rstd, K, D, B, L, H, 1e-5f, p);
    omp_set_num_threads(3);
    s4d_conv_backward_fused(ws, dh3, dw3, NULL, dK3, dD3, dgd, ys, mask, xt, h, w, bias, mean, rstd, K, D, B, L, H, 1e-5f, p);
    omp_set_num_threads(2);
    CHECK(memcmp(dh1, dh3, (size_t)n * 4) == 0 && memcmp(dw1, dw3, (size_t)H * 4) == 0 &&
          memcmp(dK1, dK3, (size_t)(H * L) * 4) == 0 && memcmp(dD1, dD3, (size_t)H * 4) == 0,
          "fused backward bit-identical for 1 and 3 threads");
    s4d_workspace_free(ws);
    free(h); free(w); free(bias); free(K); free(D); free(dgd); free(xt_r); free(mean_r); free(rstd_r); free(yt_r); free(ys_r);
    free(gd_r); free(dyt_r); free(dxt_r); free(dK_r); free(dD_r); free(mask_r); free(mask); free(dh0); free(dw0); free(db0);
    free(dh_r); free(dw_r); free(db_r); free(xt); free(mean); free(rstd); free(ys); free(gd); free(dh); free(dw); free(db);
    free(dK); free(dD); free(dh1); free(dw1); free(dK1); free(dD1); free(dh3); free(dw3); free(dK3); free(dD3);
}

int main(void) {
    test_seed_from_env("test_s4d_ops");
    nn_set_threads(2);
    int64_t sizes[][3] = {{3, 37, 5}, {1, 16, 8}, {1, 1, 3}, {2, 50, 64}, {4, 19, 33}};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t B = sizes[k][0], L = sizes[k][1], H = sizes[k][2];
        check_layernorm(B, L, H);
        check_gelu_dropout(B, L, H, 0.0f);
        check_gelu_dropout(B, L, H, 0.25f);
        check_glu(B * L, H);
        check_fused_conv(B, L, H, 0.0f, 1);
        check_fused_conv(B, L, H, 0.3f, 0);
    }
    return check_summary("test_s4d_ops");
}
