/*
 * backend/cuda/cuda_gemm.cu - jb_cuda_matmul: cuBLAS for real GEMMs, GEMV kernels for the
 * decode step, where the cost is one read of the weights (memory bound: the goal is the
 * device's bandwidth, jukebox docs/cuda.md).
 */
#include "backend/cuda/cuda_gemm.cuh"
#include "backend/cuda/cuda_impl.cuh"

#define GEMV_THREADS 128
#define GEMV_VEC 4 /* columns per thread: one 8-byte load of half weights */
#define GEMV_SMEM_FLOATS 8192

/* Half weights as 4 consecutive values. */
template<typename T>
struct vec4_of;
template<>
struct vec4_of<__half> {
    static __device__ __forceinline__ void load(const __half *p, float *o)
    {
        const uint2 u  = *reinterpret_cast<const uint2 *>(p);
        const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&u.x));
        const float2 b = __half22float2(*reinterpret_cast<const __half2 *>(&u.y));
        o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y;
    }
};
template<>
struct vec4_of<__nv_bfloat16> {
    static __device__ __forceinline__ void load(const __nv_bfloat16 *p, float *o)
    {
        const uint2 u  = *reinterpret_cast<const uint2 *>(p);
        const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
        const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
        o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y;
    }
};

/* !w_trans: W [K, N]. Block (column tile, k split): part[split][m][n] = Σ_{k in split}
 * x[m,k]·W[k,n] for the block's GEMV_THREADS·GEMV_VEC columns. vec: N % 4 == 0 (aligned 8-byte
 * loads). */
template<typename T>
__global__ void gemv_kn_kernel(int M,
                               int64_t N,
                               int64_t K,
                               int64_t ks,
                               const float *__restrict__ x,
                               int64_t ldx,
                               const T *__restrict__ w,
                               float *__restrict__ part,
                               bool vec)
{
    extern __shared__ float xs[]; /* [M][ks] */
    const int64_t k0 = (int64_t)blockIdx.y * ks;
    const int64_t kn = K - k0 < ks ? K - k0 : ks;
    for (int64_t i = threadIdx.x; i < (int64_t)M * kn; i += blockDim.x)
        xs[i] = x[(i / kn) * ldx + k0 + i % kn];
    __syncthreads();

    const int64_t n0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * GEMV_VEC;
    if (n0 >= N) return;
    float acc[JB_CUDA_GEMV_MAX_M][GEMV_VEC];
#pragma unroll
    for (int m = 0; m < JB_CUDA_GEMV_MAX_M; m++)
#pragma unroll
        for (int c = 0; c < GEMV_VEC; c++)
            acc[m][c] = 0.0f;
    const T *wp = w + k0 * N + n0;
    if (vec) {
#pragma unroll 4
        for (int64_t k = 0; k < kn; k++) {
            float wv[GEMV_VEC];
            vec4_of<T>::load(wp + k * N, wv);
#pragma unroll
            for (int m = 0; m < JB_CUDA_GEMV_MAX_M; m++) {
                if (m < M) {
                    const float xv = xs[m * kn + k];
#pragma unroll
                    for (int c = 0; c < GEMV_VEC; c++)
                        acc[m][c] = fmaf(xv, wv[c], acc[m][c]);
                }
            }
        }
    } else {
        for (int64_t k = 0; k < kn; k++) {
            float wv[GEMV_VEC];
#pragma unroll
            for (int c = 0; c < GEMV_VEC; c++)
                wv[c] = n0 + c < N ? jb_ld(wp, k * N + c) : 0.0f;
#pragma unroll
            for (int m = 0; m < JB_CUDA_GEMV_MAX_M; m++) {
                if (m < M) {
                    const float xv = xs[m * kn + k];
#pragma unroll
                    for (int c = 0; c < GEMV_VEC; c++)
                        acc[m][c] = fmaf(xv, wv[c], acc[m][c]);
                }
            }
        }
    }
    float *pp = part + (int64_t)blockIdx.y * M * N;
#pragma unroll
    for (int m = 0; m < JB_CUDA_GEMV_MAX_M; m++)
        if (m < M)
#pragma unroll
            for (int c = 0; c < GEMV_VEC; c++)
                if (n0 + c < N) pp[(int64_t)m * N + n0 + c] = acc[m][c];
}

/* y[m, n] = (accumulate ? y : 0) + bias[n] + Σ_s part[s][m][n], s in order. */
__global__ void gemv_reduce_kernel(int M,
                                   int64_t N,
                                   int splits,
                                   const float *__restrict__ part,
                                   const float *__restrict__ bias,
                                   float *__restrict__ y,
                                   int64_t ldy,
                                   bool accumulate)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)M * N) return;
    const int64_t m = i / N, n = i % N;
    float s = 0.0f;
    for (int p = 0; p < splits; p++)
        s += part[(int64_t)p * M * N + i];
    if (bias) s += bias[n];
    float *yp = y + m * ldy + n;
    *yp       = accumulate ? *yp + s : s;
}

/* w_trans: W [N, K]; one warp per output column n, lanes along k. */
template<typename T>
__global__ void gemv_nk_kernel(int M,
                               int64_t N,
                               int64_t K,
                               const float *__restrict__ x,
                               int64_t ldx,
                               const T *__restrict__ w,
                               const float *__restrict__ bias,
                               float *__restrict__ y,
                               int64_t ldy,
                               bool accumulate)
{
    const int64_t n = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane  = threadIdx.x & 31;
    if (n >= N) return;
    float acc[JB_CUDA_GEMV_MAX_M];
#pragma unroll
    for (int m = 0; m < JB_CUDA_GEMV_MAX_M; m++)
        acc[m] = 0.0f;
    const T *wr = w + n * K;
    for (int64_t k = lane; k < K; k += 32) {
        const float wv = jb_ld(wr, k);
#pragma unroll
        for (int m = 0; m < JB_CUDA_GEMV_MAX_M; m++)
            if (m < M) acc[m] = fmaf(x[m * ldx + k], wv, acc[m]);
    }
#pragma unroll
    for (int m = 0; m < JB_CUDA_GEMV_MAX_M; m++) {
        if (m < M) {
            float s = jb_warp_sum(acc[m]);
            if (lane == 0) {
                if (bias) s += bias[n];
                float *yp = y + m * ldy + n;
                *yp       = accumulate ? *yp + s : s;
            }
        }
    }
}

template<typename T>
__global__ void to_half_kernel(int64_t M, int64_t K, const float *x, int64_t ldx, T *o);
template<>
__global__ void to_half_kernel<__half>(int64_t M, int64_t K, const float *x, int64_t ldx, __half *o)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < M * K) o[i] = __float2half_rn(x[(i / K) * ldx + i % K]);
}
template<>
__global__ void to_half_kernel<__nv_bfloat16>(int64_t M,
                                              int64_t K,
                                              const float *x,
                                              int64_t ldx,
                                              __nv_bfloat16 *o)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < M * K) o[i] = __float2bfloat16_rn(x[(i / K) * ldx + i % K]);
}

__global__ void add_bias_rows_kernel(int64_t M, int64_t N, const float *bias, float *y, int64_t ldy)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < M * N) y[(i / N) * ldy + i % N] += bias[i % N];
}

/* Split of K for the !w_trans GEMV: enough blocks to cover the SMs, few enough that the
 * partial sums stay small next to the weights, and the x tile fits in shared memory. */
static int64_t gemv_splits(int64_t M, int64_t N, int64_t K)
{
    const int64_t tiles = (N + GEMV_THREADS * GEMV_VEC - 1) / (GEMV_THREADS * GEMV_VEC);
    int64_t s           = (528 + tiles - 1) / tiles;
    const int64_t cap   = K / (64 * M);
    if (s > cap) s = cap;
    if (s < 1) s = 1;
    while ((K + s - 1) / s * M > GEMV_SMEM_FLOATS)
        s++;
    return s;
}

extern "C" size_t jb_cuda_matmul_arena(int64_t M, int64_t N, int64_t K, enum jb_dtype wtype)
{
    if (wtype == JB_DTYPE_F32) return 0;
    if (M <= JB_CUDA_GEMV_MAX_M) return (size_t)gemv_splits(M, N, K) * (size_t)(M * N) * 4;
    return (size_t)(M * K) * 2;
}

template<typename T>
static enum jb_status gemv_launch(struct jb_cuda *cu,
                                  int64_t M,
                                  int64_t N,
                                  int64_t K,
                                  const float *x,
                                  int64_t ldx,
                                  const void *w,
                                  bool w_trans,
                                  const float *bias,
                                  float *y,
                                  int64_t ldy,
                                  bool accumulate)
{
    const T *wt = (const T *)w;
    if (w_trans) {
        gemv_nk_kernel<T><<<jb_cuda_blocks(N * 32, 256), 256, 0, cu->stream>>>(
          (int)M, N, K, x, ldx, wt, bias, y, ldy, accumulate);
        CUDA_CHECK_LAUNCH();
        return JB_STATUS_OK;
    }
    const int64_t splits = gemv_splits(M, N, K);
    const int64_t ks     = (K + splits - 1) / splits;
    void *part;
    enum jb_status st = jb_cuda_arena(cu, (size_t)splits * (size_t)(M * N) * 4, &part);
    if (st != JB_STATUS_OK) return st;
    const bool vec = N % GEMV_VEC == 0 && ((uintptr_t)w % 8) == 0;
    dim3 grid((unsigned)((N + GEMV_THREADS * GEMV_VEC - 1) / (GEMV_THREADS * GEMV_VEC)),
              (unsigned)((K + ks - 1) / ks));
    gemv_kn_kernel<T><<<grid, GEMV_THREADS, (size_t)(M * ks) * sizeof(float), cu->stream>>>(
      (int)M, N, K, ks, x, ldx, wt, (float *)part, vec);
    CUDA_CHECK_LAUNCH();
    gemv_reduce_kernel<<<jb_cuda_blocks(M * N, 256), 256, 0, cu->stream>>>(
      (int)M, N, (int)grid.y, (const float *)part, bias, y, ldy, accumulate);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_matmul(struct jb_cuda *cu,
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
                                         bool accumulate)
{
    if (M <= 0 || N <= 0) return JB_STATUS_OK;
    if (wtype != JB_DTYPE_F32 && wtype != JB_DTYPE_F16 && wtype != JB_DTYPE_BF16)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda matmul: weight dtype %d", (int)wtype);
    if (wtype != JB_DTYPE_F32 && M <= JB_CUDA_GEMV_MAX_M)
        return wtype == JB_DTYPE_F16
                 ? gemv_launch<__half>(cu, M, N, K, x, ldx, w, w_trans, bias, y, ldy, accumulate)
                 : gemv_launch<__nv_bfloat16>(
                     cu, M, N, K, x, ldx, w, w_trans, bias, y, ldy, accumulate);

    /* Column-major view: y^T (N x M, ld ldy) = op(W) (N x K) · x^T (K x M). */
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const cublasOperation_t opw = w_trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int lda               = (int)(w_trans ? K : N);
    if (wtype == JB_DTYPE_F32) {
        CUBLAS_CHECK(jb_cublas.sgemm(cu->blas,
                                     opw,
                                     CUBLAS_OP_N,
                                     (int)N,
                                     (int)M,
                                     (int)K,
                                     &one,
                                     (const float *)w,
                                     lda,
                                     x,
                                     (int)ldx,
                                     &beta,
                                     y,
                                     (int)ldy));
    } else {
        void *xh;
        enum jb_status st = jb_cuda_arena(cu, (size_t)(M * K) * 2, &xh);
        if (st != JB_STATUS_OK) return st;
        const cudaDataType_t ht = wtype == JB_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
        if (wtype == JB_DTYPE_F16)
            to_half_kernel<__half>
              <<<jb_cuda_blocks(M * K, 256), 256, 0, cu->stream>>>(M, K, x, ldx, (__half *)xh);
        else
            to_half_kernel<__nv_bfloat16><<<jb_cuda_blocks(M * K, 256), 256, 0, cu->stream>>>(
              M, K, x, ldx, (__nv_bfloat16 *)xh);
        CUDA_CHECK_LAUNCH();
        CUBLAS_CHECK(jb_cublas.gemm_ex(cu->blas,
                                       opw,
                                       CUBLAS_OP_N,
                                       (int)N,
                                       (int)M,
                                       (int)K,
                                       &one,
                                       w,
                                       ht,
                                       lda,
                                       xh,
                                       ht,
                                       (int)K,
                                       &beta,
                                       y,
                                       CUDA_R_32F,
                                       (int)ldy,
                                       CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT));
    }
    if (bias) {
        add_bias_rows_kernel<<<jb_cuda_blocks(M * N, 256), 256, 0, cu->stream>>>(
          M, N, bias, y, ldy);
        CUDA_CHECK_LAUNCH();
    }
    return JB_STATUS_OK;
}
