/*
 * backend/cuda/cuda_conv.cuh - VQ-VAE and conditioner convolutions: im2col / col2im around one
 * fp32 cuBLAS GEMM (C-callable; cuda.h). PyTorch semantics, as jb_conv1d and
 * jb_conv_transpose1d (backend/ops.h): x (Cin, T) channel-major for one batch item.
 */
#ifndef JB_BACKEND_CUDA_CONV_CUH
#define JB_BACKEND_CUDA_CONV_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* w [Cout, Cin, k] fp32, b [Cout] or NULL; y (Cout, Tout) must not alias x.
 * Arena: jb_cuda_conv1d_arena() bytes (the im2col columns). */
enum jb_status jb_cuda_conv1d(struct jb_cuda *cu,
                              const float *x,
                              int64_t Cin,
                              int64_t T,
                              const float *w,
                              int64_t Cout,
                              int k,
                              const float *b,
                              int stride,
                              int pad,
                              int dil,
                              float *y);
size_t jb_cuda_conv1d_arena(int64_t Cin, int64_t T, int k, int stride, int pad, int dil);

/* w [Cin, Cout, k] fp32, Tout = (T − 1)·s − 2p + k. Arena: jb_cuda_conv_transpose1d_arena(). */
enum jb_status jb_cuda_conv_transpose1d(struct jb_cuda *cu,
                                        const float *x,
                                        int64_t Cin,
                                        int64_t T,
                                        const float *w,
                                        int64_t Cout,
                                        int k,
                                        const float *b,
                                        int stride,
                                        int pad,
                                        float *y);
size_t jb_cuda_conv_transpose1d_arena(int64_t Cout, int64_t T, int k);

#ifdef __cplusplus
}
#endif

#endif
