/*
 * backend/cuda/cuda_norm.cu - one block per row; two passes over the row (mean, then the
 * centred second moment) as the CPU kernel, so no cancellation in the variance.
 */
#include "backend/cuda/cuda_impl.cuh"
#include "backend/cuda/cuda_norm.cuh"

#define NORM_THREADS 256
#define NORM_MAX_THREADS 1024
#define NORM_PER_THREAD 8 /* row elements a thread keeps in registers */

/* Rows of up to NORM_MAX_THREADS·NORM_PER_THREAD: each thread loads its elements once, all
 * loads issued together, and keeps them for both passes and the output. A decode step's rows
 * (one per candidate) were read three times with a dependent memory round trip per 256
 * elements: ~5 us per 1920-wide row, 9 us at 4800, 144 of them per step. */
__global__ void __launch_bounds__(NORM_MAX_THREADS) layernorm_reg_kernel(
  int64_t W,
  const float *x, /* may be y: each element is read, then written, by one thread */
  const float *__restrict__ gamma,
  const float *__restrict__ beta,
  float eps,
  float *y)
{
    __shared__ float red[32];
    const float *xr = x + (int64_t)blockIdx.x * W;
    float *yr       = y + (int64_t)blockIdx.x * W;
    float v[NORM_PER_THREAD], g[NORM_PER_THREAD], b[NORM_PER_THREAD];
    float s = 0.0f;
#pragma unroll
    for (int p = 0; p < NORM_PER_THREAD; p++) { /* weights: before the previous kernel ends */
        const int64_t i = threadIdx.x + (int64_t)p * blockDim.x;
        g[p]            = i < W && gamma ? gamma[i] : 1.0f;
        b[p]            = i < W && beta ? beta[i] : 0.0f;
    }
    jb_pdl_trigger();
    jb_pdl_wait();
#pragma unroll
    for (int p = 0; p < NORM_PER_THREAD; p++) {
        const int64_t i = threadIdx.x + (int64_t)p * blockDim.x;
        v[p]            = i < W ? xr[i] : 0.0f;
    }
#pragma unroll
    for (int p = 0; p < NORM_PER_THREAD; p++)
        s += v[p];
    const float mean = jb_block_sum(s, red) / (float)W;
    float q          = 0.0f;
#pragma unroll
    for (int p = 0; p < NORM_PER_THREAD; p++) {
        const int64_t i = threadIdx.x + (int64_t)p * blockDim.x;
        const float d   = v[p] - mean;
        if (i < W) q = fmaf(d, d, q);
    }
    const float var = jb_block_sum(q, red) / (float)W;
    const float inv = 1.0f / sqrtf(var + eps);
#pragma unroll
    for (int p = 0; p < NORM_PER_THREAD; p++) {
        const int64_t i = threadIdx.x + (int64_t)p * blockDim.x;
        if (i < W) {
            float o = (v[p] - mean) * inv;
            if (gamma) o *= g[p];
            if (beta) o += b[p];
            yr[i] = o;
        }
    }
}

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
    if (W <= (int64_t)NORM_MAX_THREADS * NORM_PER_THREAD) {
        /* about 4 elements per thread: a short walk, and several loads in flight each */
        int64_t t = ((W + 3) / 4 + 31) / 32 * 32;
        t         = t < 32 ? 32 : t; /* above 1024 threads, 1024 x 8 still covers W */
        CUDA_CHECK(jb_cuda_launch(cu,
                                  layernorm_reg_kernel,
                                  dim3((unsigned)rows),
                                  dim3((unsigned)(t < NORM_MAX_THREADS ? t : NORM_MAX_THREADS)),
                                  0,
                                  W,
                                  x,
                                  gamma,
                                  beta,
                                  eps,
                                  y));
    } else {
        layernorm_kernel<<<(unsigned)rows, NORM_THREADS, 0, cu->stream>>>(
          W, x, gamma, beta, eps, y);
    }
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
