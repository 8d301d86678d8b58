/* device.h - the --device option of the tools (cpu | cuda) and the host side of a CUDA run:
 * allocate, copy in, copy out, free, every CUDA call checked, every failure one ssm_die line.
 *
 * ssm_parse_device is always built.  The ssm_dev_* functions exist only when the build has CUDA
 * (SSM_HAVE_CUDA, defined by the Makefile when nvcc is present and NO_CUDA is unset); they live in
 * kernels/device_cuda.cu.  Callers guard their CUDA path with #ifdef SSM_HAVE_CUDA. */
#ifndef SSM_DEVICE_H
#define SSM_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SSM_DEVICE_CPU = 0, SSM_DEVICE_CUDA = 1 } ssm_device;

/* "cpu" or "cuda" -> the device.  Usage error (exit 2) for anything else, and for "cuda" when this
 * build has no CUDA support. */
ssm_device ssm_parse_device(const char *arg);

#ifdef SSM_HAVE_CUDA
/* Dies (exit 1) with "--device cuda: <the CUDA error>" unless a GPU can be used. */
void ssm_dev_require_cuda(void);
/* Device buffer of `bytes` bytes (uninitialized); `what` names it in an error message. */
void *ssm_dev_alloc(const char *what, size_t bytes);
/* Device copy of `bytes` bytes of host memory; NULL host gives NULL. */
void *ssm_dev_upload(const char *what, const void *host, size_t bytes);
/* Waits for the device, then copies `bytes` bytes of device memory to host. */
void ssm_dev_download(const char *what, void *host, const void *dev, size_t bytes);
/* rc of a *_cuda_* kernel call (0 ok, -1 failed): dies with "what: ssm_cuda_error()" on failure. */
void ssm_dev_check(const char *what, int rc);
/* Frees every buffer ssm_dev_alloc / ssm_dev_upload returned. */
void ssm_dev_free_all(void);
#endif

#ifdef __cplusplus
}
#endif

#endif
