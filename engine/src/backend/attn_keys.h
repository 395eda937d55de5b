/*
 * backend/attn_keys.h - which KV-cache slots a query of each attention kind reads (jukebox-spec
 * §5): one definition for the CPU kernels and the CUDA kernels, so the two cannot drift.
 */
#ifndef JB_BACKEND_ATTN_KEYS_H
#define JB_BACKEND_ATTN_KEYS_H

#include <stdint.h>

#if defined(__CUDACC__)
#define JB_ATTN_FN static inline __host__ __device__
#else
#define JB_ATTN_FN static inline
#endif

/* Key run of query position i: slots [*first, *first + *n). func is the cache's attention kind
 * (0 dense, 1 block, 2 transpose-block, 3 previous-block, 6 encoder-decoder, 7 prime), B the
 * block length, rows the cache's rows (kind 2), cap its capacity. Unknown kinds read nothing. */
JB_ATTN_FN void jb_attn_key_range(int func,
                                  int64_t B,
                                  int64_t rows,
                                  int64_t cap,
                                  int64_t i,
                                  int64_t *first,
                                  int64_t *n)
{
    *first = 0;
    switch (func) {
    case 0:
        *n = i + 1;
        break;
    case 1:
        *n = i % B + 1;
        break;
    case 2:
        *first = (i % B) * rows;
        *n     = i / B + 1;
        break;
    case 3:
        *first = ((i / B + 1) % 2) * B; /* block i/B − 1 */
        *n     = i / B >= 1 ? B : 0;
        break;
    case 6:
        *n = cap;
        break;
    case 7:
        *n = i + 1 < cap ? i + 1 : cap;
        break;
    default:
        *n = 0;
        break;
    }
}

#endif
