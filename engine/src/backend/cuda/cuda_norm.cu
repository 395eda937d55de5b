/*
 * backend/cuda/cuda_norm.cu - one block per row; two passes over the row (mean, then the
 * centred second moment) as the CPU kernel, so no cancellation in the variance.
 */
#include "backend/cuda/cuda_impl.cuh"
#include "backend/cuda/cuda_norm.cuh"

#define NORM_THREADS 256

__global__ void layernorm_kernel(int64_t W,
                                 const float *__restrict__ x,
                                 const float *__restrict__ gamma,
                                 const float *__restrict__ beta,
                                 float eps,
                                 float *y)
{
    __shared__ float red[32];
    const float *xr = x + (int64_t)blockIdx.x * W;
    float *yr       = y + (int64_t)blockIdx.x * W;
    float s         = 0.0f;
    for (int64_t i = threadIdx.x; i < W; i += blockDim.x)
        s += xr[i];
    const float mean = jb_block_sum(s, red) / (float)W;
    float v          = 0.0f;
    for (int64_t i = threadIdx.x; i < W; i += blockDim.x) {
        const float d = xr[i] - mean;
        v             = fmaf(d, d, v);
    }
    const float var = jb_block_sum(v, red) / (float)W;
    const float inv = 1.0f / sqrtf(var + eps);
    for (int64_t i = threadIdx.x; i < W; i += blockDim.x) {
        float o = (xr[i] - mean) * inv;
        if (gamma) o *= gamma[i];
        if (beta) o += beta[i];
        yr[i] = o;
    }
}

__global__ void softmax_rows_kernel(int64_t n, float *x)
{
    __shared__ float red[32];
    float *xr = x + (int64_t)blockIdx.x * n;
    float m   = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        m = fmaxf(m, xr[i]);
    m       = jb_block_max(m, red);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float e = expf(xr[i] - m);
        xr[i]         = e;
        s += e;
    }
    const float inv = 1.0f / jb_block_sum(s, red);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        xr[i] *= inv;
}

extern "C" enum jb_status jb_cuda_layernorm(struct jb_cuda *cu,
                                            int64_t rows,
                                            int64_t W,
                                            const float *x,
                                            const float *gamma,
                                            const float *beta,
                                            float eps,
                                            float *y)
{
    if (rows <= 0) return JB_STATUS_OK;
    if (rows > JB_CUDA_MAX_BLOCKS)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda layernorm: %lld rows", (long long)rows);
    layernorm_kernel<<<(unsigned)rows, NORM_THREADS, 0, cu->stream>>>(W, x, gamma, beta, eps, y);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_softmax_rows(struct jb_cuda *cu,
                                               int64_t rows,
                                               int64_t n,
                                               float *x)
{
    if (rows <= 0) return JB_STATUS_OK;
    if (rows > JB_CUDA_MAX_BLOCKS)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda softmax: %lld rows", (long long)rows);
    softmax_rows_kernel<<<(unsigned)rows, NORM_THREADS, 0, cu->stream>>>(n, x);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}
