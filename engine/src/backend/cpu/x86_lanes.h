/*
 * backend/cpu/x86_lanes.h - lane masks and out-of-row addresses for the AVX-512 and AMX kernels
 * (cpu_x86.c, cpu_amx.c): 16-lane masks of the columns inside a sequence, and element addresses
 * computed in integers where a masked vector starts before its row (the zero padding).
 * Include only where JB_CPU_X86 is set.
 */
#ifndef JB_BACKEND_CPU_X86_LANES_H
#define JB_BACKEND_CPU_X86_LANES_H

#include <immintrin.h>
#include <stdint.h>

static inline __mmask16 lanes_below(int64_t n) /* lanes [0, n) of 16, n clamped to [0, 16] */
{
    return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

static inline __mmask16 lanes_in(int64_t T, int64_t p) /* lanes l with 0 <= p + l < T */
{
    return (__mmask16)(lanes_below(T - p) & ~lanes_below(-p));
}

/* Address of element off of row base p, computed in integers: off may lie before the row when
 * the tile overlaps the zero padding (those lanes are masked off and never read). */
static inline const float *addr_at(const float *p, int64_t off)
{
    return (const float *)((uintptr_t)p + (uintptr_t)off * sizeof(float));
}

#endif
