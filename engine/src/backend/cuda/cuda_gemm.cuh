/*
 * backend/cuda/cuda_gemm.cuh - matrix products (C-callable; see cuda.h for conventions).
 */
#ifndef JB_BACKEND_CUDA_GEMM_CUH
#define JB_BACKEND_CUDA_GEMM_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[M, N] (+)= x[M, K] · W (+ bias[N]), row-major, the semantics of jb_matmul (backend/ops.h):
 * W is [K, N] when !w_trans, [N, K] when w_trans, of dtype wtype (F32, F16 or BF16).
 *   F32 weights: cublasSgemm in fp32 (no TF32), as the reference keeps them.
 *   F16/BF16, M <= JB_CUDA_GEMV_MAX_M (decode: one row per candidate, up to 8): our GEMV kernels,
 * fp32 activations times half weights with fp32 accumulation; every candidate's row is computed
 *     from one read of the weights (split over K into the arena, then reduced in a fixed order).
 *   F16/BF16, larger M (priming, conditioner): x rounded to wtype in the arena, cublasGemmEx
 *     with fp32 accumulation and fp32 output (tensor cores), as the reference's fp16 path.
 * Arena: jb_cuda_matmul_arena() bytes. */
#define JB_CUDA_GEMV_MAX_M 8
enum jb_status jb_cuda_matmul(struct jb_cuda *cu,
                              int64_t M,
                              int64_t N,
                              int64_t K,
                              const float *x,
                              int64_t ldx,
                              const void *w,
                              enum jb_dtype wtype,
                              bool w_trans,
                              const float *bias,
                              float *y,
                              int64_t ldy,
                              bool accumulate);
size_t jb_cuda_matmul_arena(int64_t M, int64_t N, int64_t K, enum jb_dtype wtype);
/* At most `splits` K-splits per GEMV (fewer partials for the last block, fewer blocks); 0
 * restores the default. For tuning (bench_gpu --gemv-max-splits). */
void jb_cuda_set_gemv_max_splits(struct jb_cuda *cu, int splits);

#ifdef __cplusplus
}
#endif

#endif
