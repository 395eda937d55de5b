/* backend/cpu/blas.c - OpenBLAS through dlopen (see blas.h) */
#include "backend/cpu/blas.h"
#include "core/common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static struct jb_blas g_blas;
static __typeof__(openblas_get_corename) *g_corename;
static char g_error[512];
static atomic_bool g_open;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void open_once(void)
{
    /* the SONAME every Debian variant (pthread, openmp, serial) provides */
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(g_error, sizeof g_error, "%s", dlerror());
        return;
    }
    __typeof__(openblas_set_num_threads) *set_threads = dlsym(h, "openblas_set_num_threads");
    g_blas.sgemm                                      = dlsym(h, "cblas_sgemm");
    g_blas.sgemv                                      = dlsym(h, "cblas_sgemv");
    g_corename                                        = dlsym(h, "openblas_get_corename");
    if (!set_threads || !g_blas.sgemm || !g_blas.sgemv || !g_corename) {
        snprintf(g_error, sizeof g_error, "libopenblas.so.0 lacks a cblas symbol");
        return; /* the handle stays open: the library's threads may already run */
    }
    /* OpenBLAS runs single-threaded inside our pools, one setting for the process (cpu.h) */
    set_threads(1);
    atomic_store(&g_open, true);
}

bool jb_blas_open(void)
{
    pthread_once(&g_once, open_once);
    if (atomic_load(&g_open)) return true;
    jb_fail(JB_STATUS_ERR_UNSUPPORTED,
            "OpenBLAS, which the portable CPU kernels (no AVX2) need, could not be opened: %s",
            g_error);
    return false;
}

const char *jb_blas_corename(void)
{
    return atomic_load(&g_open) ? g_corename() : "not loaded";
}

/* The SIMD levels' fallbacks reach BLAS without a backend at the portable level: the library
 * opens here, inside a kernel, where a failure (a broken install: libopenblas-dev is a build
 * dependency) can only be reported. */
const struct jb_blas *jb_blas(void)
{
    if (atomic_load(&g_open) || jb_blas_open()) return &g_blas;
    fprintf(stderr, "encore: %s\n", jb_last_error());
    abort();
}
