/*
 * backend/cuda/cuda_elementwise.cu - grid-stride element-wise kernels (memory bound; nothing
 * to tune beyond coalescing).
 */
#include "backend/cuda/cuda_elementwise.cuh"
#include "backend/cuda/cuda_impl.cuh"

#define EW_THREADS 256
#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

static inline unsigned ew_blocks(int64_t n)
{
    const int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(b < 1 ? 1 : (b > 8192 ? 8192 : b));
}

__global__ void relu_kernel(int64_t n, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] = fmaxf(x[i], 0.0f);
}
__global__ void axpy_kernel(int64_t n, float alpha, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] = fmaf(alpha, x[i], y[i]);
}
__global__ void add_kernel(int64_t n, const float *a, const float *b, float *y)
{
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
__global__ void scale_kernel(int64_t n, float alpha, const float *x, float *y)
{
    GRID_STRIDE(i, n) y[i] = alpha * x[i];
}
__global__ void fill_kernel(int64_t n, float value, float *y)
{
    GRID_STRIDE(i, n) y[i] = value;
}
__global__ void add_i32_kernel(int64_t n, int32_t delta, int32_t *x)
{
    GRID_STRIDE(i, n) x[i] += delta;
}
__global__ void store_i32_at_kernel(int64_t n,
                                    const int32_t *src,
                                    const int32_t *pos,
                                    int64_t ld,
                                    int32_t *dst)
{
    GRID_STRIDE(i, n) dst[(int64_t)pos[i] * ld + i] = src[i];
}
__global__ void quick_gelu_kernel(int64_t n, float *x)
{
    jb_pdl_trigger(); /* launched with jb_cuda_launch */
    jb_pdl_wait();
    GRID_STRIDE(i, n)
    {
        const float v = x[i];
        x[i]          = v * (1.0f / (1.0f + expf(-1.702f * v)));
    }
}
template<typename T>
__global__ void embedding_kernel(const T *table,
                                 int64_t W,
                                 const int32_t *ids,
                                 int64_t n,
                                 float *out)
{
    GRID_STRIDE(i, n * W) out[i] = jb_ld(table, (int64_t)ids[i / W] * W + i % W);
}
/* 32x32 tiles; blockIdx.y strides over the row tiles (gridDim.y is at most 65535, and a
 * VQ-VAE chunk can have more than 65535·32 time steps). */
__global__ void transpose_kernel(int64_t rows, int64_t cols, const float *in, float *out)
{
    __shared__ float tile[32][33];
    const int64_t c0 = (int64_t)blockIdx.x * 32, row_tiles = (rows + 31) / 32;
    for (int64_t ty = blockIdx.y; ty < row_tiles; ty += gridDim.y) { /* uniform per block */
        const int64_t r0 = ty * 32;
        for (int j = threadIdx.y; j < 32; j += blockDim.y) {
            const int64_t r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) tile[j][threadIdx.x] = in[r * cols + c];
        }
        __syncthreads();
        for (int j = threadIdx.y; j < 32; j += blockDim.y) {
            const int64_t c = c0 + j, r = r0 + threadIdx.x;
            if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][j];
        }
        __syncthreads(); /* the tile is read before the next round overwrites it */
    }
}
__global__ void to_f16_kernel(int64_t n, const float *s, __half *d)
{
    GRID_STRIDE(i, n) d[i] = __float2half_rn(s[i]);
}
__global__ void to_bf16_kernel(int64_t n, const float *s, __nv_bfloat16 *d)
{
    GRID_STRIDE(i, n) d[i] = __float2bfloat16_rn(s[i]);
}
template<typename T>
__global__ void to_f32_kernel(int64_t n, const T *s, float *d)
{
    GRID_STRIDE(i, n) d[i] = jb_ld(s, i);
}

#define LAUNCH_EW(kernel, n, ...)                                                                  \
    do {                                                                                           \
        if ((n) <= 0) return JB_STATUS_OK;                                                         \
        kernel<<<ew_blocks(n), EW_THREADS, 0, cu->stream>>>(__VA_ARGS__);                          \
        CUDA_CHECK_LAUNCH();                                                                       \
        return JB_STATUS_OK;                                                                       \
    } while (0)

extern "C" enum jb_status jb_cuda_relu(struct jb_cuda *cu, int64_t n, const float *x, float *y)
{
    LAUNCH_EW(relu_kernel, n, n, x, y);
}
extern "C" enum jb_status jb_cuda_axpy(struct jb_cuda *cu,
                                       int64_t n,
                                       float alpha,
                                       const float *x,
                                       float *y)
{
    LAUNCH_EW(axpy_kernel, n, n, alpha, x, y);
}
extern "C" enum jb_status jb_cuda_add(struct jb_cuda *cu,
                                      int64_t n,
                                      const float *a,
                                      const float *b,
                                      float *y)
{
    LAUNCH_EW(add_kernel, n, n, a, b, y);
}
extern "C" enum jb_status jb_cuda_scale(struct jb_cuda *cu,
                                        int64_t n,
                                        float alpha,
                                        const float *x,
                                        float *y)
{
    LAUNCH_EW(scale_kernel, n, n, alpha, x, y);
}
extern "C" enum jb_status jb_cuda_fill(struct jb_cuda *cu, int64_t n, float value, float *y)
{
    LAUNCH_EW(fill_kernel, n, n, value, y);
}
extern "C" enum jb_status jb_cuda_add_i32(struct jb_cuda *cu, int64_t n, int32_t delta, int32_t *x)
{
    LAUNCH_EW(add_i32_kernel, n, n, delta, x);
}
extern "C" enum jb_status jb_cuda_store_i32_at(struct jb_cuda *cu,
                                               int64_t n,
                                               const int32_t *src,
                                               const int32_t *pos,
                                               int64_t ld,
                                               int32_t *dst)
{
    LAUNCH_EW(store_i32_at_kernel, n, n, src, pos, ld, dst);
}
extern "C" enum jb_status jb_cuda_copy2d(struct jb_cuda *cu,
                                         int64_t rows,
                                         int64_t cols,
                                         const float *src,
                                         int64_t lds,
                                         float *dst,
                                         int64_t ldd)
{
    if (rows <= 0 || cols <= 0) return JB_STATUS_OK;
    CUDA_CHECK(cudaMemcpy2DAsync(dst,
                                 (size_t)ldd * 4,
                                 src,
                                 (size_t)lds * 4,
                                 (size_t)cols * 4,
                                 (size_t)rows,
                                 cudaMemcpyDeviceToDevice,
                                 cu->stream));
    return JB_STATUS_OK;
}
extern "C" enum jb_status jb_cuda_quick_gelu(struct jb_cuda *cu, int64_t n, float *x)
{
    if (n <= 0) return JB_STATUS_OK;
    CUDA_CHECK(
      jb_cuda_launch(cu, quick_gelu_kernel, dim3(ew_blocks(n)), dim3(EW_THREADS), 0, n, x));
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_embedding(struct jb_cuda *cu,
                                            const void *table,
                                            enum jb_dtype type,
                                            int64_t W,
                                            const int32_t *ids,
                                            int64_t n,
                                            float *out)
{
    switch (type) {
    case JB_DTYPE_F32:
        LAUNCH_EW(embedding_kernel<float>, n * W, (const float *)table, W, ids, n, out);
    case JB_DTYPE_F16:
        LAUNCH_EW(embedding_kernel<__half>, n * W, (const __half *)table, W, ids, n, out);
    case JB_DTYPE_BF16:
        LAUNCH_EW(
          embedding_kernel<__nv_bfloat16>, n * W, (const __nv_bfloat16 *)table, W, ids, n, out);
    default:
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda embedding: table dtype %d", (int)type);
    }
}

extern "C" enum jb_status jb_cuda_transpose(struct jb_cuda *cu,
                                            int64_t rows,
                                            int64_t cols,
                                            const float *in,
                                            float *out)
{
    if (rows <= 0 || cols <= 0) return JB_STATUS_OK;
    const int64_t col_tiles = (cols + 31) / 32, row_tiles = (rows + 31) / 32;
    if (col_tiles > JB_CUDA_MAX_BLOCKS)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda transpose: %lld columns", (long long)cols);
    const dim3 grid((unsigned)col_tiles, (unsigned)(row_tiles < 65535 ? row_tiles : 65535)),
      block(32, 8);
    transpose_kernel<<<grid, block, 0, cu->stream>>>(rows, cols, in, out);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_convert_from_f32(struct jb_cuda *cu,
                                                   enum jb_dtype type,
                                                   const float *src,
                                                   void *dst,
                                                   int64_t n)
{
    switch (type) {
    case JB_DTYPE_F32:
        if (n > 0)
            CUDA_CHECK(
              cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, cu->stream));
        return JB_STATUS_OK;
    case JB_DTYPE_F16:
        LAUNCH_EW(to_f16_kernel, n, n, src, (__half *)dst);
    case JB_DTYPE_BF16:
        LAUNCH_EW(to_bf16_kernel, n, n, src, (__nv_bfloat16 *)dst);
    default:
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda convert: dtype %d", (int)type);
    }
}

extern "C" enum jb_status jb_cuda_convert_to_f32(struct jb_cuda *cu,
                                                 enum jb_dtype type,
                                                 const void *src,
                                                 float *dst,
                                                 int64_t n)
{
    switch (type) {
    case JB_DTYPE_F32:
        if (n > 0)
            CUDA_CHECK(
              cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, cu->stream));
        return JB_STATUS_OK;
    case JB_DTYPE_F16:
        LAUNCH_EW(to_f32_kernel<__half>, n, n, (const __half *)src, dst);
    case JB_DTYPE_BF16:
        LAUNCH_EW(to_f32_kernel<__nv_bfloat16>, n, n, (const __nv_bfloat16 *)src, dst);
    default:
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda convert: dtype %d", (int)type);
    }
}
