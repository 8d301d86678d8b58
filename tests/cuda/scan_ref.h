/* scan_ref.h - double-precision oracle for the CUDA selective scan tests (see scan_ref.c). */
#ifndef SSM_TESTS_CUDA_SCAN_REF_H
#define SSM_TESTS_CUDA_SCAN_REF_H

#include "selective_scan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y (same layout as u, doubles), h_out (batch, D, N[,2]) or NULL. */
void scan_ref_forward(const ssm_scan_params *p, double *y, double *h_out);

/* Real or complex A (complex: dA, dB, dC, dh0 interleaved pairs).  Accumulating outputs (dA, dB, dC, dD, ddelta_bias) must be zeroed by the caller. */
typedef struct {
    double *du, *ddelta, *dz, *dA, *dB, *dC, *dD, *ddelta_bias, *dh0;
} scan_ref_grads;
void scan_ref_backward(const ssm_scan_params *p, const float *dy, const float *dh_out, scan_ref_grads *g);

#ifdef __cplusplus
}
#endif

#endif
