/*
 * backend/cuda/cuda_vq.cuh - codebook search of the VQ-VAE bottleneck (C-callable; cuda.h).
 */
#ifndef JB_BACKEND_CUDA_VQ_CUH
#define JB_BACKEND_CUDA_VQ_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x (emb, T) channel-major, codebook [bins, emb] fp32; codes[t] = argmin_j
 * (‖x_t‖² − 2·x_t·k_j) + ‖k_j‖² in fp32, first index on ties (jb_vq_argmin). Each dot product
 * and norm is one FMA chain over emb in order, as the CPU SIMD kernels, so the codes match
 * the CPU's except where two distances are within an ulp. */
enum jb_status jb_cuda_vq_argmin(struct jb_cuda *cu,
                                 const float *x,
                                 int64_t emb,
                                 int64_t T,
                                 const float *codebook,
                                 int64_t bins,
                                 int32_t *codes);

#ifdef __cplusplus
}
#endif

#endif
