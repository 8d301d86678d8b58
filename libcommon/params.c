/* params.c - named slices of one float buffer; the seeded random source. */
#include "params.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli.h"
#include "device.h"

void ssm_params_init(ssm_params *ps) { memset(ps, 0, sizeof *ps); }

void ssm_params_free(ssm_params *ps) {
    free(ps->p);
    ssm_buf_free(ps->data);
    ssm_buf_free(ps->grad);
    memset(ps, 0, sizeof *ps);
}

int ssm_params_add(ssm_params *ps, int dtype, int group, int rank, const int64_t *dims,
                   const char *fmt, ...) {
    if (ps->data) ssm_die("internal: parameter added after allocation");
    if (rank < 1 || rank > 4) ssm_die("internal: parameter rank %d", rank);
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 32;
        ps->p = ssm_xrealloc(ps->p, (size_t)ps->cap * sizeof *ps->p);
    }
    ssm_param *p = &ps->p[ps->n];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->dtype = dtype;
    p->group = group;
    p->rank = rank;
    int64_t n = 1;
    for (int i = 0; i < rank; i++) { p->dims[i] = dims[i]; n *= dims[i]; }
    p->nfloats = dtype == SSM_C64 ? 2 * n : n;
    p->offset = ps->total;
    ps->total += p->nfloats;
    return ps->n++;
}

/* Zeroed floats; a large buffer starts on a 2 MiB boundary with transparent huge pages asked
 * for (madvise), so that streaming the weights (a decode step reads every one of them) does not
 * miss the TLB every 4 KiB: about 1.4x the read bandwidth on one core (bench_generate). */
static float *alloc_floats_huge(size_t n) {
    size_t bytes = n * sizeof(float), align = (size_t)2 << 20;
    if (bytes < ((size_t)4 << 20)) return ssm_xcalloc(n, sizeof(float));
    size_t rounded = (bytes + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, rounded) != 0) ssm_die("out of memory (%zu bytes of parameters)", rounded);
    madvise(p, rounded, MADV_HUGEPAGE);
    memset(p, 0, bytes);
    return p;
}

void ssm_params_alloc(ssm_params *ps) {
    /* managed GPU memory with --device cuda (device.h); on the CPU the weights on huge pages */
    ps->data = ssm_compute_on_gpu() ? ssm_buf_calloc((size_t)ps->total + 1, sizeof(float)) : alloc_floats_huge((size_t)ps->total + 1);
    ps->grad = ssm_buf_calloc((size_t)ps->total + 1, sizeof(float));
}

float *ssm_params_data(const ssm_params *ps, int i) { return ps->data + ps->p[i].offset; }
float *ssm_params_grad(const ssm_params *ps, int i) { return ps->grad + ps->p[i].offset; }

int ssm_params_find(const ssm_params *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0) return i;
    return -1;
}

void ssm_params_zero_grad(ssm_params *ps) { ssm_buf_zero(ps->grad, (size_t)ps->total * sizeof(float)); }

void ssm_params_to_set(const ssm_params *ps, const float *buf, const char *prefix, ssm_tensor_set *set) {
    ssm_buf_sync();   /* buf may be GPU memory the GPU is still writing */
    for (int i = 0; i < ps->n; i++) {
        const ssm_param *p = &ps->p[i];
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        ssm_tensor *t = ssm_tensor_new(name, p->dtype, p->rank, p->dims);
        memcpy(t->data, buf + p->offset, (size_t)p->nfloats * sizeof(float));
        ssm_set_put(set, t);
    }
}

int ssm_params_from_set(const ssm_params *ps, float *buf, const char *prefix, const ssm_tensor_set *set) {
    ssm_buf_sync();
    int count = 0;
    for (int i = 0; i < ps->n; i++) {
        const ssm_param *p = &ps->p[i];
        char name[256], want[128], got[128];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        ssm_tensor *t = ssm_set_get(set, name);
        ssm_shape_string(p->rank, p->dims, want, sizeof want);
        if (!t) ssm_die("missing tensor '%s' (expected %s %s)", name, ssm_dtype_name(p->dtype), want);
        int same = t->rank == p->rank;
        for (int d = 0; same && d < p->rank; d++) same = t->dims[d] == p->dims[d];
        if (!same) {
            ssm_shape_string(t->rank, t->dims, got, sizeof got);
            ssm_die("tensor '%s': expected shape %s, got %s", name, want, got);
        }
        if (p->dtype == SSM_C64) {
            if (!ssm_dtype_is_complex(t->dtype)) ssm_die("tensor '%s': expected a complex dtype, got %s", name, ssm_dtype_name(t->dtype));
            ssm_tensor *c = t->dtype == SSM_C64 ? t : ssm_tensor_convert(t, SSM_C64);
            if (!c) ssm_die("tensor '%s': cannot convert to c64", name);
            memcpy(buf + p->offset, c->data, (size_t)p->nfloats * sizeof(float));
            if (c != t) ssm_tensor_free(c);
        } else {
            float *f = ssm_as_f32(t, 1);
            memcpy(buf + p->offset, f, (size_t)p->nfloats * sizeof(float));
            free(f);
        }
        count++;
    }
    return count;
}

/* splitmix64: small, fast, and every state gives a good stream. */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
double ssm_hash_uniform(uint64_t seed, uint64_t counter) {
    uint64_t s = seed ^ (counter * 0xd1b54a32d192ed03ull);
    splitmix(&s);
    return (double)(splitmix(&s) >> 11) * 0x1p-53;
}
