/*
 * backend/cuda/cuda_elementwise.cuh - element-wise ops, gathers and layout changes
 * (C-callable; cuda.h). Same semantics as the CPU ops of backend/ops.h.
 */
#ifndef JB_BACKEND_CUDA_ELEMENTWISE_CUH
#define JB_BACKEND_CUDA_ELEMENTWISE_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

enum jb_status jb_cuda_relu(struct jb_cuda *cu, int64_t n, const float *x, float *y);
/* y += alpha · x */
enum jb_status jb_cuda_axpy(struct jb_cuda *cu, int64_t n, float alpha, const float *x, float *y);
/* y = a + b (y may alias a or b) */
enum jb_status jb_cuda_add(struct jb_cuda *cu, int64_t n, const float *a, const float *b, float *y);
/* y = alpha · x (y may equal x) */
enum jb_status jb_cuda_scale(struct jb_cuda *cu, int64_t n, float alpha, const float *x, float *y);
/* y[0, n) = value */
enum jb_status jb_cuda_fill(struct jb_cuda *cu, int64_t n, float value, float *y);
/* x[i] += delta (int32 counters: the decode position; graph-capturable) */
enum jb_status jb_cuda_add_i32(struct jb_cuda *cu, int64_t n, int32_t delta, int32_t *x);
/* dst[pos[i]·ld + i] = src[i] for i < n (the drawn tokens kept at the device position). */
enum jb_status jb_cuda_store_i32_at(struct jb_cuda *cu,
                                    int64_t n,
                                    const int32_t *src,
                                    const int32_t *pos,
                                    int64_t ld,
                                    int32_t *dst);
/* dst[r·ldd + c] = src[r·lds + c] for r < rows, c < cols */
enum jb_status jb_cuda_copy2d(struct jb_cuda *cu,
                              int64_t rows,
                              int64_t cols,
                              const float *src,
                              int64_t lds,
                              float *dst,
                              int64_t ldd);
/* x = x · sigmoid(1.702 x), in place */
enum jb_status jb_cuda_quick_gelu(struct jb_cuda *cu, int64_t n, float *x);
/* out[i, :] = table[ids[i], :] for i < n; table [V, W] of dtype type; ids on the device. */
enum jb_status jb_cuda_embedding(struct jb_cuda *cu,
                                 const void *table,
                                 enum jb_dtype type,
                                 int64_t W,
                                 const int32_t *ids,
                                 int64_t n,
                                 float *out);
/* out[c, r] = in[r, c] for in [rows, cols] (out must not alias in). */
enum jb_status jb_cuda_transpose(struct jb_cuda *cu,
                                 int64_t rows,
                                 int64_t cols,
                                 const float *in,
                                 float *out);
/* n values between fp32 and a storage dtype (round to nearest even). */
enum jb_status jb_cuda_convert_from_f32(struct jb_cuda *cu,
                                        enum jb_dtype type,
                                        const float *src,
                                        void *dst,
                                        int64_t n);
enum jb_status jb_cuda_convert_to_f32(struct jb_cuda *cu,
                                      enum jb_dtype type,
                                      const void *src,
                                      float *dst,
                                      int64_t n);

#ifdef __cplusplus
}
#endif

#endif
