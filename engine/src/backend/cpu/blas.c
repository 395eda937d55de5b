/* backend/cpu/blas.c - OpenBLAS through dlopen (see blas.h) */
#include "backend/cpu/blas.h"
#include "core/common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*sgemm_fn)(enum CBLAS_ORDER,
                         enum CBLAS_TRANSPOSE,
                         enum CBLAS_TRANSPOSE,
                         int,
                         int,
                         int,
                         float,
                         const float *,
                         int,
                         const float *,
                         int,
                         float,
                         float *,
                         int);
typedef void (*sgemv_fn)(enum CBLAS_ORDER,
                         enum CBLAS_TRANSPOSE,
                         int,
                         int,
                         float,
                         const float *,
                         int,
                         const float *,
                         int,
                         float,
                         float *,
                         int);

static struct {
    sgemm_fn sgemm;
    sgemv_fn sgemv;
    char *(*corename)(void);
    char error[512];
} g_blas;
static atomic_bool g_open;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void open_once(void)
{
    /* the SONAME every Debian variant (pthread, openmp, serial) provides */
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(g_blas.error, sizeof g_blas.error, "%s", dlerror());
        return;
    }
    void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    g_blas.sgemm             = (sgemm_fn)dlsym(h, "cblas_sgemm");
    g_blas.sgemv             = (sgemv_fn)dlsym(h, "cblas_sgemv");
    g_blas.corename          = (char *(*)(void))dlsym(h, "openblas_get_corename");
    if (!set_threads || !g_blas.sgemm || !g_blas.sgemv || !g_blas.corename) {
        snprintf(g_blas.error, sizeof g_blas.error, "libopenblas.so.0 lacks a cblas symbol");
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
            g_blas.error);
    return false;
}

/* The SIMD levels' rare fallbacks (more than 16 taps, transposed strides over 2) reach BLAS
 * without a backend at the portable level: the library opens there, inside a kernel, where a
 * failure (a broken install: libopenblas-dev is a build dependency) can only be reported. */
static void open_or_abort(void)
{
    if (atomic_load(&g_open) || jb_blas_open()) return;
    fprintf(stderr, "encore: %s\n", jb_last_error());
    abort();
}

const char *jb_blas_corename(void)
{
    return atomic_load(&g_open) ? g_blas.corename() : "not loaded";
}

void jb_blas_sgemm(enum CBLAS_ORDER order,
                   enum CBLAS_TRANSPOSE ta,
                   enum CBLAS_TRANSPOSE tb,
                   int m,
                   int n,
                   int k,
                   float alpha,
                   const float *a,
                   int lda,
                   const float *b,
                   int ldb,
                   float beta,
                   float *c,
                   int ldc)
{
    open_or_abort();
    g_blas.sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void jb_blas_sgemv(enum CBLAS_ORDER order,
                   enum CBLAS_TRANSPOSE ta,
                   int m,
                   int n,
                   float alpha,
                   const float *a,
                   int lda,
                   const float *x,
                   int incx,
                   float beta,
                   float *y,
                   int incy)
{
    open_or_abort();
    g_blas.sgemv(order, ta, m, n, alpha, a, lda, x, incx, beta, y, incy);
}
