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

/* ---- where the models compute (ssm-train, ssm-generate) ----------------------------------------
 * One process-wide switch, set by the tool once, BEFORE any model or optimizer is allocated.  When
 * it is on (--device cuda), ssm_buf_* hand out CUDA managed memory (host code can still read and
 * write it, correct but slow through page migration) and every op of nn.h / optim.h dispatches to
 * its CUDA version (kernels/nn_cuda.h), so that the data stays on the GPU.  Host code that reads a
 * buffer the GPU wrote calls ssm_buf_sync() first (the ops run asynchronously).  Off (the default)
 * ssm_buf_* are calloc / free / memset / memcpy. */
/* Dies (exit 1) with "--device cuda: <the CUDA error>" unless a GPU can be used; then switches on. */
void ssm_compute_use_gpu(void);
int ssm_compute_on_gpu(void);          /* 1 when switched on */
void *ssm_buf_calloc(size_t n, size_t size);   /* zeroed; dies when out of memory */
void ssm_buf_free(void *p);
void ssm_buf_zero(void *p, size_t bytes);
void ssm_buf_sync(void);                       /* wait for the GPU's queued work */
void ssm_buf_to_host(void *host, const void *buf, size_t bytes);    /* waits, then copies */
void ssm_buf_from_host(void *buf, const void *host, size_t bytes);
/* Host memory the GPU copies to and from fast (page-locked when on the GPU; calloc otherwise). */
void *ssm_host_calloc(size_t n, size_t size);
void ssm_host_free(void *p);

#ifdef SSM_HAVE_CUDA
/* The CUDA side of the ssm_buf_* functions above (kernels/device_cuda.cu). */
void *ssm_cuda_managed_calloc(size_t bytes);
void ssm_cuda_free(void *p);
void ssm_cuda_zero(void *p, size_t bytes);
void ssm_cuda_sync(void);
void ssm_cuda_copy(void *dst, const void *src, size_t bytes);   /* any direction, synchronous */
void *ssm_cuda_host_calloc(size_t bytes);
void ssm_cuda_host_free(void *p);

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
