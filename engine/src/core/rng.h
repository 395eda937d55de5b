/*
 * core/rng.h - the counter-based random numbers of token sampling, the same on CPU and GPU.
 *
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
 * generator of cuRAND and PyTorch. A draw is a pure function of its coordinates, so any device,
 * batch size, slicing or order of evaluation gives the same number:
 *
 *   key     = (seed & 0xffffffff, seed >> 32)
 *   counter = (t & 0xffffffff, t >> 32, stream & 0xffffffff, stream >> 32)
 *   u       = ((r0 << 32 | r1) >> 11) · 2^−53, in [0, 1)
 *
 * stream = the candidate's index in the job (first_candidate + n), t = the window position
 * sampled: the sampling op of every backend (jb_rng_u01 in backend/ops.h, the CUDA kernel in
 * backend/cuda/cuda_sample.cu) draws through jb_rng_uniform53.
 *
 * This header is plain C11 and also compiles as CUDA C++ (the functions become
 * __host__ __device__ under nvcc), so the CPU sampler and the CUDA sampling kernel share one
 * definition. No state, no allocation.
 */
#ifndef JB_CORE_RNG_H
#define JB_CORE_RNG_H

#include <stdint.h>

#if defined(__CUDACC__)
#define JB_RNG_FN static inline __host__ __device__
#else
#define JB_RNG_FN static inline
#endif

struct jb_philox_out {
    uint32_t v[4];
};

JB_RNG_FN uint32_t jb_philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
    const uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi              = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Philox4x32 with 10 rounds on counter c and key (k0, k1). */
JB_RNG_FN struct jb_philox_out jb_philox4x32(uint32_t c0,
                                             uint32_t c1,
                                             uint32_t c2,
                                             uint32_t c3,
                                             uint32_t k0,
                                             uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        const uint32_t lo0 = jb_philox_mulhilo(0xD2511F53u, c0, &hi0);
        const uint32_t lo1 = jb_philox_mulhilo(0xCD9E8D57u, c2, &hi1);
        const uint32_t n0  = hi1 ^ c1 ^ k0;
        const uint32_t n2  = hi0 ^ c3 ^ k1;
        c0                 = n0;
        c1                 = lo1;
        c2                 = n2;
        c3                 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    struct jb_philox_out o;
    o.v[0] = c0;
    o.v[1] = c1;
    o.v[2] = c2;
    o.v[3] = c3;
    return o;
}

/* The uniform in [0, 1) (53 bits) of position t of stream `stream` under `seed`. */
JB_RNG_FN double jb_rng_uniform53(uint64_t seed, uint64_t stream, uint64_t t)
{
    const struct jb_philox_out o = jb_philox4x32((uint32_t)t,
                                                 (uint32_t)(t >> 32),
                                                 (uint32_t)stream,
                                                 (uint32_t)(stream >> 32),
                                                 (uint32_t)seed,
                                                 (uint32_t)(seed >> 32));
    const uint64_t bits          = ((uint64_t)o.v[0] << 32 | (uint64_t)o.v[1]) >> 11;
    return (double)bits * (1.0 / 9007199254740992.0); /* 2^-53 */
}

#endif
