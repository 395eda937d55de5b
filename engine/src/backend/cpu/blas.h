/*
 * backend/cpu/blas.h - OpenBLAS, opened on first use. Only the portable kernels (CPUs without
 * AVX2, or ENCORE_CPU_ISA=portable) and the SIMD levels' rare fallbacks call BLAS. Debian's
 * OpenBLAS (pthread build) starts nproc - 1 threads when it loads and they spin before they
 * sleep, so a process that linked it spent ~0.1 s of CPU on them at start whether it ever called
 * BLAS or not. Opened with dlopen only where those kernels run, the library, and its threads,
 * never exist in the other processes.
 */
#ifndef JB_BACKEND_CPU_BLAS_H
#define JB_BACKEND_CPU_BLAS_H

#include <cblas.h>
#include <stdbool.h>

/* The library's functions the kernels call, typed by cblas.h's own declarations. */
struct jb_blas {
    __typeof__(cblas_sgemm) *sgemm;
    __typeof__(cblas_sgemv) *sgemv;
};

/* Opens libopenblas.so.0 once per process and sets it single-threaded (cpu.h: Threading).
 * false, with jb_last_error set, where the library or one of its symbols is missing. */
bool jb_blas_open(void);
/* OpenBLAS's name for the core it tuned for; "not loaded" before jb_blas_open. */
const char *jb_blas_corename(void);

/* The functions, for a call. A backend at the portable level opens the library when it is
 * created or lowered there; the SIMD levels' fallbacks (more than 16 taps, transposed strides
 * over 2) open it here on their first call, and abort with the reason if it cannot be opened. */
const struct jb_blas *jb_blas(void);

#endif
