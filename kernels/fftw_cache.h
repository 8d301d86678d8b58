/* fftw_cache.h - FFTW plans shared by the kernels (implemented in fft_conv.c).
 * FFTW's planner is not thread-safe: every plan is made under one lock and cached by length;
 * callers run the plans on their own fftw_malloc'd buffers with the new-array execute functions
 * (fftw_execute_dft_r2c / _c2r), which are thread-safe.  Plans live until the process exits. */
#ifndef SSM_FFTW_CACHE_H
#define SSM_FFTW_CACHE_H

#include <fftw3.h>
#include <stdint.h>

/* Out-of-place real plans of length n: r2c (n reals -> n/2+1 complex), c2r (destroys its input). */
void fftw_cached_plans(int64_t n, fftw_plan *r2c, fftw_plan *c2r);
void fftw_cached_plans_f32(int64_t n, fftwf_plan *r2c, fftwf_plan *c2r);

#endif
