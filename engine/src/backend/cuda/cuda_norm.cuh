/*
 * backend/cuda/cuda_norm.cuh - layer norm and softmax over rows (C-callable; cuda.h).
 */
#ifndef JB_BACKEND_CUDA_NORM_CUH
#define JB_BACKEND_CUDA_NORM_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* LayerNorm over the last dim W of x[rows, W] (biased variance, eps inside the sqrt), fp32
 * statistics as jb_layernorm; gamma/beta [W] fp32 or NULL (1 / 0). y may equal x. */
enum jb_status jb_cuda_layernorm(struct jb_cuda *cu,
                                 int64_t rows,
                                 int64_t W,
                                 const float *x,
                                 const float *gamma,
                                 const float *beta,
                                 float eps,
                                 float *y);

/* In-place softmax over rows of length n (max-subtracted, fp32), as jb_softmax_rows. */
enum jb_status jb_cuda_softmax_rows(struct jb_cuda *cu, int64_t rows, int64_t n, float *x);

#ifdef __cplusplus
}
#endif

#endif
