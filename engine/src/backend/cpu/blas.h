/*
 * backend/cpu/blas.h - OpenBLAS, opened on first use. Only the portable kernels (CPUs without
 * AVX2, or ENCORE_CPU_ISA=portable) call BLAS. Debian's OpenBLAS (pthread build) starts
 * nproc - 1 threads when it loads and they spin before they sleep, so a process that linked it
 * spent ~0.13 s of CPU on them at start whether it ever called BLAS or not. Opened with dlopen
 * only where a backend runs at the portable level, the library, and its threads, never exist in
 * the other processes.
 */
#ifndef JB_BACKEND_CPU_BLAS_H
#define JB_BACKEND_CPU_BLAS_H

#include <cblas.h>
#include <stdbool.h>

/* Opens libopenblas.so.0 once per process and sets it single-threaded (cpu.h: Threading).
 * false, with jb_last_error set, where the library or one of its symbols is missing. */
bool jb_blas_open(void);
/* OpenBLAS's name for the core it tuned for; "not loaded" before jb_blas_open. */
const char *jb_blas_corename(void);

/* cblas_sgemm and cblas_sgemv. A backend at the portable level opens the library when it is
 * created or lowered there; the SIMD levels' fallbacks (more than 16 taps, transposed strides
 * over 2) open it on their first call, and abort with the reason if it cannot be opened. */
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
                   int ldc);
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
                   int incy);

#endif
