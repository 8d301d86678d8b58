/* device.c - the --device option (see device.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "device.h"

ssm_device ssm_parse_device(const char *arg) {
    if (!strcmp(arg, "cpu")) return SSM_DEVICE_CPU;
    if (strcmp(arg, "cuda")) ssm_usage_error("--device: expected cpu or cuda, got '%s'", arg);
#ifndef SSM_HAVE_CUDA
    ssm_usage_error("--device cuda: this build has no CUDA support (rebuild with nvcc installed)");
#endif
    return SSM_DEVICE_CUDA;
}

/* ---- the compute switch and the buffers of the models (see device.h) ---------------------------- */
static int g_on_gpu;

int ssm_compute_on_gpu(void) { return g_on_gpu; }

void ssm_compute_use_gpu(void) {
#ifdef SSM_HAVE_CUDA
    ssm_dev_require_cuda();
    g_on_gpu = 1;
#else
    ssm_usage_error("--device cuda: this build has no CUDA support (rebuild with nvcc installed)");
#endif
}

void *ssm_buf_calloc(size_t n, size_t size) {
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) return ssm_cuda_managed_calloc(n * size);
#endif
    return ssm_xcalloc(n, size);
}

void ssm_buf_free(void *p) {
    if (!p) return;
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) { ssm_cuda_free(p); return; }
#endif
    free(p);
}

void ssm_buf_zero(void *p, size_t bytes) {
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) { ssm_cuda_zero(p, bytes); return; }
#endif
    memset(p, 0, bytes);
}

void ssm_buf_sync(void) {
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) ssm_cuda_sync();
#endif
}

void ssm_buf_to_host(void *host, const void *buf, size_t bytes) {
    if (!bytes) return;
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) { ssm_cuda_copy(host, buf, bytes); return; }
#endif
    memcpy(host, buf, bytes);
}

void *ssm_host_calloc(size_t n, size_t size) {
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) return ssm_cuda_host_calloc(n * size);
#endif
    return ssm_xcalloc(n, size);
}

void ssm_host_free(void *p) {
    if (!p) return;
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) { ssm_cuda_host_free(p); return; }
#endif
    free(p);
}

void ssm_buf_from_host(void *buf, const void *host, size_t bytes) {
    if (!bytes) return;
#ifdef SSM_HAVE_CUDA
    if (g_on_gpu) { ssm_cuda_copy(buf, host, bytes); return; }
#endif
    memcpy(buf, host, bytes);
}
