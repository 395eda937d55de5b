/*
 * backend/cuda/cuda_vq.cu - one block per time step: x_t in shared memory, threads over the
 * codebook entries, a (distance, index) arg-min reduction that keeps the first index on ties.
 */
#include "backend/cuda/cuda_impl.cuh"
#include "backend/cuda/cuda_vq.cuh"

#define VQ_THREADS 256

__global__ void vq_kernel(const float *__restrict__ x,
                          int64_t emb,
                          int64_t T,
                          const float *__restrict__ kb,
                          int64_t bins,
                          int32_t *codes)
{
    extern __shared__ float xs[]; /* [emb] */
    __shared__ float bd[VQ_THREADS];
    __shared__ int32_t bj[VQ_THREADS];
    const int64_t t = blockIdx.x;
    for (int64_t e = threadIdx.x; e < emb; e += blockDim.x)
        xs[e] = x[e * T + t];
    __syncthreads();
    float xn = 0.0f;
    for (int64_t e = 0; e < emb; e++)
        xn = fmaf(xs[e], xs[e], xn);
    float best     = INFINITY;
    int32_t best_j = INT32_MAX;
    for (int64_t j = threadIdx.x; j < bins; j += blockDim.x) {
        const float *k = kb + j * emb;
        float dot = 0.0f, kn = 0.0f;
        for (int64_t e = 0; e < emb; e++) {
            dot = fmaf(xs[e], k[e], dot);
            kn  = fmaf(k[e], k[e], kn);
        }
        const float d = (xn - 2.0f * dot) + kn;
        if (d < best) { /* j increases within a thread: first index kept */
            best   = d;
            best_j = (int32_t)j;
        }
    }
    bd[threadIdx.x] = best;
    bj[threadIdx.x] = best_j;
    __syncthreads();
    for (int s = VQ_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float d2   = bd[threadIdx.x + s];
            const int32_t j2 = bj[threadIdx.x + s];
            if (d2 < bd[threadIdx.x] || (d2 == bd[threadIdx.x] && j2 < bj[threadIdx.x])) {
                bd[threadIdx.x] = d2;
                bj[threadIdx.x] = j2;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) codes[t] = bj[0] == INT32_MAX ? 0 : bj[0];
}

extern "C" enum jb_status jb_cuda_vq_argmin(struct jb_cuda *cu,
                                            const float *x,
                                            int64_t emb,
                                            int64_t T,
                                            const float *codebook,
                                            int64_t bins,
                                            int32_t *codes)
{
    if (T <= 0) return JB_STATUS_OK;
    if (T > JB_CUDA_MAX_BLOCKS)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda codebook search: %lld steps", (long long)T);
    vq_kernel<<<(unsigned)T, VQ_THREADS, (size_t)emb * sizeof(float), cu->stream>>>(
      x, emb, T, codebook, bins, codes);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}
