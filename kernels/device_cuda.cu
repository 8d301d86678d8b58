/* device_cuda.cu - host side of a tool's --device cuda run (see libcommon/device.h): device
 * buffers, copies, and CUDA failures turned into one-line ssm_die messages (exit 1). */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cli.h"
#include "device.h"
#include "selective_scan_cuda.h"
}

static void **g_bufs;          /* every buffer handed out, freed by ssm_dev_free_all */
static size_t g_nbufs, g_cap;

static void check(cudaError_t e, const char *op, const char *what) {
    if (e != cudaSuccess) ssm_die("--device cuda: %s %s: %s", op, what, cudaGetErrorString(e));
}

extern "C" void ssm_dev_require_cuda(void) {
    if (!ssm_cuda_available()) ssm_die("--device cuda: %s", ssm_cuda_error());
}

extern "C" void *ssm_dev_alloc(const char *what, size_t bytes) {
    void *p = NULL;
    check(cudaMalloc(&p, bytes ? bytes : 1), "allocating", what);
    if (g_nbufs == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 32;
        g_bufs = (void **)ssm_xrealloc(g_bufs, g_cap * sizeof *g_bufs);
    }
    g_bufs[g_nbufs++] = p;
    return p;
}

extern "C" void *ssm_dev_upload(const char *what, const void *host, size_t bytes) {
    if (!host) return NULL;
    void *p = ssm_dev_alloc(what, bytes);
    check(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice), "copying to the GPU", what);
    return p;
}

extern "C" void ssm_dev_download(const char *what, void *host, const void *dev, size_t bytes) {
    check(cudaDeviceSynchronize(), "computing", what);
    check(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), "copying from the GPU", what);
}

extern "C" void ssm_dev_check(const char *what, int rc) {
    if (rc) ssm_die("--device cuda: %s: %s", what, ssm_cuda_error());
}

extern "C" void ssm_dev_free_all(void) {
    for (size_t i = 0; i < g_nbufs; i++) check(cudaFree(g_bufs[i]), "freeing", "a buffer");
    free(g_bufs);
    g_bufs = NULL, g_nbufs = g_cap = 0;
}

/* ---- managed buffers of the models (libcommon/device.h: ssm_buf_*) ------------------------------- */
extern "C" void *ssm_cuda_managed_calloc(size_t bytes) {
    void *p = NULL;
    /* never more managed memory than the GPU has free (oversubscription can hang the device) */
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "querying", "the GPU's free memory");
    if (bytes + ((size_t)256 << 20) > free_b)
        ssm_die("--device cuda: a model buffer of %.0f MB does not fit: %.0f MB free on the GPU", bytes / 1e6, free_b / 1e6);
    check(cudaMallocManaged(&p, bytes ? bytes : 1, cudaMemAttachGlobal), "allocating", "a model buffer");
    /* zeroed by the GPU, so that the pages start out in GPU memory */
    check(cudaMemset(p, 0, bytes ? bytes : 1), "zeroing", "a model buffer");
    return p;
}
extern "C" void ssm_cuda_free(void *p) { check(cudaFree(p), "freeing", "a model buffer"); }
extern "C" void ssm_cuda_zero(void *p, size_t bytes) {
    if (bytes) check(cudaMemsetAsync(p, 0, bytes, 0), "zeroing", "a buffer");
}
extern "C" void ssm_cuda_sync(void) { check(cudaDeviceSynchronize(), "computing", "the model"); }
extern "C" void *ssm_cuda_host_calloc(size_t bytes) {
    void *p = NULL;
    check(cudaMallocHost(&p, bytes ? bytes : 1), "allocating", "page-locked host memory");
    memset(p, 0, bytes);
    return p;
}
extern "C" void ssm_cuda_host_free(void *p) { check(cudaFreeHost(p), "freeing", "page-locked host memory"); }
extern "C" void ssm_cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "copying", "a buffer");
}
