/* fast_math.h - vectorizable float exp, sigmoid and normal cdf for the elementwise loops of nn.c,
 * s4d_ops.c and mamba_decode.c (static inline: every loop that calls them can be vectorized).  No -ffast-math:
 * each is a fixed sequence of float operations, the same result for every thread count. */
#ifndef SSM_FAST_MATH_H
#define SSM_FAST_MATH_H

#include <math.h>
#include <stdint.h>

/* exp for vectorized loops: exp(x) = 2^k exp(r), |r| <= ln2/2, a degree-6 polynomial for exp(r)
 * (relative error < 2e-7); clamped to [-87, 88] (no overflow, no denormals). */
static inline float fast_expf(float x) {
    const float magic = 12582912.0f;   /* 1.5 * 2^23: adding it rounds to an integer */
    float in = x;
    x = x == x ? x : 0.0f;             /* NaN: computed on 0, returned as NaN below */
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float kf = (x * 1.44269504088896341f + magic) - magic;
    float r = x - kf * 0.693145751953125f - kf * 1.428606765330187e-06f;
    float q = 1.0f / 720;
    q = q * r + 1.0f / 120; q = q * r + 1.0f / 24; q = q * r + 1.0f / 6;
    q = q * r + 0.5f; q = q * r + 1.0f; q = q * r + 1.0f;
    union { float f; int32_t i; } sc;
    sc.i = ((int32_t)kf + 127) * (1 << 23);
    return in == in ? q * sc.f : in;
}
static inline float fast_sigmoidf(float x) { return 1.0f / (1.0f + fast_expf(-x)); }
/* Phi(x) = (1 + erf(x / sqrt 2)) / 2 through erfc's Chebyshev fit (Numerical Recipes erfcc,
 * fractional error < 1.2e-7 everywhere), vectorizable. */
static inline float fast_normal_cdf(float x) {
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = -z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
              t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
              t * (-0.82215223f + t * 0.17087277f))))))));
    float erfc = t * fast_expf(p);
    return x >= 0 ? 1.0f - 0.5f * erfc : 0.5f * erfc;
}

#endif
