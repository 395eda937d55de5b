/*
 * backend/cuda/cuda_sample.cuh - drawing tokens on the device (jukebox-spec §5.4), with the
 * counter-based generator of core/rng.h so a seed gives the same take on CPU and GPU
 * (C-callable; cuda.h).
 */
#ifndef JB_BACKEND_CUDA_SAMPLE_CUH
#define JB_BACKEND_CUDA_SAMPLE_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

struct jb_cuda_sample_params {
    float temp;               /* > 0                                      */
    int32_t top_k;            /* 0 off, 1 greedy (first index of the max) */
    float top_p;              /* 0 off, else (0, 1]; exclusive with top_k */
    uint64_t seed;            /* the job's seed                           */
    uint64_t first_candidate; /* stream index of candidate 0              */
};

/* Largest vocabulary the kernel takes (2127 for 1b_lyrics; the sort buffer is a power of 2). */
#define JB_CUDA_SAMPLE_MAX_VOCAB 4096

/* The sample op (backend/ops.h, jukebox-spec §5.4): for each candidate n < N, ℓ = the logits
 * row n (ldl apart) / temp, top-k or top-p filter, then inverse-CDF sampling of softmax(ℓ) with
 * u = jb_rng_uniform53(seed, first_candidate + n, t) (core/rng.h, the CPU op's stream), t the
 * window position: *pos when pos is non-NULL (device; graph replay), else t_host. tokens[n]
 * (device) receives the draw, and seq[n·ld_seq + t] too when seq is non-NULL. The logits are
 * overwritten with the filtered values divided by temp. */
enum jb_status jb_cuda_sample(struct jb_cuda *cu,
                              const struct jb_cuda_sample_params *sp,
                              int N,
                              int V,
                              float *logits,
                              int64_t ldl,
                              const int32_t *pos,
                              int64_t t_host,
                              int32_t *tokens,
                              int32_t *seq,
                              int64_t ld_seq);

#ifdef __cplusplus
}
#endif

#endif
