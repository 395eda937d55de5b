/*
 * tests/gpu/gpu_util.h - what the CUDA tests share: skipping without a device (exit 77, saying
 * why), random data, device round trips and error measures. Header-only (static functions), so
 * each test stays one executable.
 */
#ifndef JB_TESTS_GPU_UTIL_H
#define JB_TESTS_GPU_UTIL_H

#include "backend/cuda/cuda.h"
#include "core/common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

/* Exits 77 (ctest: skipped) when no CUDA device is usable, saying why. */
static inline struct jb_cuda *gpu_open_or_skip(const char *test)
{
    const char *why = NULL;
    if (jb_cuda_device_count(&why) == 0) {
        printf("SKIP %s: no CUDA device (%s); nothing was run on a GPU\n", test, why ? why : "?");
        exit(77);
    }
    struct jb_cuda *cu = NULL;
    if (jb_cuda_open(0, &cu) != JB_STATUS_OK) {
        fprintf(stderr, "FAIL %s: cuda:0 did not open: %s\n", test, jb_last_error());
        exit(1);
    }
    printf("%s on cuda:0, %s\n", test, jb_cuda_describe(cu));
    return cu;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static inline float frand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * 0x1.0p-52 - 1.0);
}
static inline float *rand_vec(size_t n, float scale)
{
    float *v = malloc(n * sizeof *v);
    if (!v) abort();
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

/* A device copy of n bytes of host memory (aborts the test on failure: setup, not the subject). */
static inline void *dev_copy(struct jb_cuda *cu, const void *src, size_t n)
{
    void *d = NULL;
    if (jb_cuda_malloc(cu, n, &d) != JB_STATUS_OK || (src && jb_cuda_upload(cu, d, src, n))) {
        fprintf(stderr, "FAIL setup: %s\n", jb_last_error());
        exit(1);
    }
    return d;
}
static inline void *host_copy(struct jb_cuda *cu, const void *d, size_t n)
{
    void *h = malloc(n ? n : 1);
    if (!h || jb_cuda_download(cu, h, d, n) != JB_STATUS_OK) {
        fprintf(stderr, "FAIL download: %s\n", h ? jb_last_error() : "out of memory");
        exit(1);
    }
    return h;
}

/* max |a − b| / max(max |b|, 1e-20) */
static inline double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 1e-20;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= num)) num = d; /* NaN propagates as a failure */
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / den;
}

#endif
