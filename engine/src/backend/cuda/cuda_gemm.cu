/*
 * backend/cuda/cuda_gemm.cu - jb_cuda_matmul: cuBLAS for real GEMMs, GEMV kernels for the
 * decode step, where the cost is one read of the weights (memory bound: the goal is the
 * device's bandwidth, jukebox docs/cuda.md).
 */
#include "backend/cuda/cuda_gemm.cuh"
#include "backend/cuda/cuda_impl.cuh"

#include <cstdint>
#include <type_traits>

#define GEMV_THREADS 256
#define GEMV_WARPS (GEMV_THREADS / 32)
#define GEMV_VEC 8                /* columns per lane: one 16-byte load of half weights */
#define GEMV_TILE (32 * GEMV_VEC) /* columns per block: a warp covers them */
#define GEMV_UNROLL 8             /* rows a warp loads before it uses any */
#define GEMV_SMEM_FLOATS 8192     /* the x tile */
/* Partials a thread loads before adding the first: a runtime-count `#pragma unroll` walks a
 * short count (15, 44 splits) mostly through its one-at-a-time remainder loop. */
#define GEMV_BATCH 16
/* A GEMV's grid is one wave: as many blocks as the device holds at once (SMs times the blocks
 * of that kernel instance an SM fits, about 2 at one row and 1 at eight). The first version
 * aimed for 264 blocks (two per SM of an H200) and rounded the split up: the 5b top prior's
 * matmuls came out at 266-285 blocks, so a handful of blocks ran as a second wave after the
 * first and every 5b GEMV took about twice its streaming time (2.1 TB/s of 4.3). */

static_assert(GEMV_TILE == GEMV_THREADS, "the cross-warp sum gives each thread one column");

/* 8 consecutive half weights as fp32, from one 16-byte word. */
template<typename T>
__device__ __forceinline__ void cvt8(const uint4 &u, float *o);
template<>
__device__ __forceinline__ void cvt8<__half>(const uint4 &u, float *o)
{
    const unsigned w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&w[i]));
        o[2 * i] = f.x, o[2 * i + 1] = f.y;
    }
}
template<>
__device__ __forceinline__ void cvt8<__nv_bfloat16>(const uint4 &u, float *o)
{
    const unsigned w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w[i]));
        o[2 * i] = f.x, o[2 * i + 1] = f.y;
    }
}

/* Rows kb, kb + GEMV_WARPS, ... (GEMV_UNROLL of them, those below kn) of a lane's 8 columns,
 * one 16-byte load each, all issued before any is used. */
template<typename T>
__device__ __forceinline__ void gemv_load_rows(uint4 *r,
                                               const T *__restrict__ wp,
                                               int64_t N,
                                               int64_t kb,
                                               int64_t kn)
{
#pragma unroll
    for (int u = 0; u < GEMV_UNROLL; u++) {
        const int64_t k = kb + u * GEMV_WARPS;
        r[u] = k < kn ? *reinterpret_cast<const uint4 *>(wp + k * N) : make_uint4(0u, 0u, 0u, 0u);
    }
}

/* !w_trans: W [K, N]. Block (column tile, k split): part[split][m][n] = Σ_{k in split}
 * x[m,k]·W[k,n] for the block's GEMV_TILE columns; lane l of every warp owns columns
 * 8l..8l+7, warp w the split's rows w, w + GEMV_WARPS, ..., and the warps' sums are added in
 * warp order (deterministic). vec: N % 8 == 0 and W 16-byte aligned (one load per lane-row). */
template<typename T, int MM>
__global__ void __launch_bounds__(GEMV_THREADS) gemv_kn_kernel(int64_t N,
                                                               int64_t K,
                                                               int64_t ks,
                                                               const float *__restrict__ x,
                                                               int64_t ldx,
                                                               const T *__restrict__ w,
                                                               float *__restrict__ part,
                                                               bool vec,
                                                               unsigned *count,
                                                               const float *__restrict__ bias,
                                                               float *__restrict__ y,
                                                               int64_t ldy,
                                                               bool accumulate)
{
    extern __shared__ float xs[]; /* [MM][ks], then red [GEMV_WARPS][GEMV_TILE] */
    float *red       = xs + MM * ks;
    const int64_t k0 = (int64_t)blockIdx.y * ks;
    const int64_t kn = K - k0 < ks ? K - k0 : ks;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n0 = (int64_t)blockIdx.x * GEMV_TILE + lane * GEMV_VEC;
    const bool live  = n0 < N;
    const T *wp      = w + k0 * N + n0;
    const int step   = GEMV_WARPS * GEMV_UNROLL;
    /* the first rows are requested before the x tile, so the two round trips overlap */
    uint4 cur[GEMV_UNROLL], nxt[GEMV_UNROLL];
    if (vec && live) gemv_load_rows<T>(cur, wp, N, warp, kn);
    /* weights only so far: the previous kernel may still be running (jb_cuda_launch) */
    jb_pdl_trigger();
    jb_pdl_wait();
    for (int64_t i = threadIdx.x; i < (int64_t)MM * kn; i += blockDim.x)
        xs[i] = x[(i / kn) * ldx + k0 + i % kn];
    __syncthreads();

    float acc[MM][GEMV_VEC];
#pragma unroll
    for (int m = 0; m < MM; m++)
#pragma unroll
        for (int c = 0; c < GEMV_VEC; c++)
            acc[m][c] = 0.0f;
    if (live && vec) {
        for (int64_t kb = warp; kb < kn; kb += step) {
            /* the next rows are in flight while these are used */
            if (kb + step < kn) gemv_load_rows<T>(nxt, wp, N, kb + step, kn);
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const int64_t k = kb + u * GEMV_WARPS;
                if (k < kn) {
                    float wv[GEMV_VEC];
                    cvt8<T>(cur[u], wv);
#pragma unroll
                    for (int m = 0; m < MM; m++) {
                        const float xv = xs[m * kn + k];
#pragma unroll
                        for (int c = 0; c < GEMV_VEC; c++)
                            acc[m][c] = fmaf(xv, wv[c], acc[m][c]);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++)
                cur[u] = nxt[u];
        }
    } else if (live) {
        for (int64_t kb = warp; kb < kn; kb += step) {
            float wv[GEMV_UNROLL][GEMV_VEC];
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const int64_t k = kb + u * GEMV_WARPS;
#pragma unroll
                for (int c = 0; c < GEMV_VEC; c++)
                    wv[u][c] = k < kn && n0 + c < N ? jb_ld(wp, k * N + c) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const int64_t k = kb + u * GEMV_WARPS;
                if (k < kn) {
#pragma unroll
                    for (int m = 0; m < MM; m++) {
                        const float xv = xs[m * kn + k];
#pragma unroll
                        for (int c = 0; c < GEMV_VEC; c++)
                            acc[m][c] = fmaf(xv, wv[u][c], acc[m][c]);
                    }
                }
            }
        }
    }
    float *pp       = part + (int64_t)blockIdx.y * MM * N;
    const int64_t n = (int64_t)blockIdx.x * GEMV_TILE + threadIdx.x;
#pragma unroll
    for (int m = 0; m < MM; m++) {
#pragma unroll
        for (int c = 0; c < GEMV_VEC; c++)
            red[warp * GEMV_TILE + lane * GEMV_VEC + c] = acc[m][c];
        __syncthreads();
        float t = 0.0f;
#pragma unroll
        for (int i = 0; i < GEMV_WARPS; i++)
            t += red[i * GEMV_TILE + threadIdx.x];
        if (n < N) pp[(int64_t)m * N + n] = t;
        __syncthreads();
    }
    if (!count) return; /* gemv_reduce_kernel follows */
    /* The tile's last block to finish adds the splits' partials, in split order (the same sums
     * as gemv_reduce_kernel), and re-arms the counter for the next GEMV or replay. */
    __shared__ bool last;
    __threadfence(); /* this block's partials reach L2 before it is counted */
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&count[blockIdx.x], 1u) == gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (n < N) {
#pragma unroll
        for (int m = 0; m < MM; m++) {
            float t = 0.0f;
            for (unsigned p0 = 0; p0 < gridDim.y; p0 += GEMV_BATCH) {
                float v[GEMV_BATCH]; /* L2: other blocks wrote them */
#pragma unroll
                for (int u = 0; u < GEMV_BATCH; u++)
                    v[u] = p0 + u < gridDim.y ? __ldcg(part + ((int64_t)(p0 + u) * MM + m) * N + n)
                                              : 0.0f;
#pragma unroll
                for (int u = 0; u < GEMV_BATCH; u++)
                    if (p0 + u < gridDim.y) t += v[u];
            }
            if (bias) t += bias[n];
            float *yp = y + m * ldy + n;
            *yp       = accumulate ? *yp + t : t;
        }
    }
    if (threadIdx.x == 0) count[blockIdx.x] = 0;
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
    for (int p0 = 0; p0 < splits; p0 += GEMV_BATCH) {
        float v[GEMV_BATCH];
#pragma unroll
        for (int u = 0; u < GEMV_BATCH; u++)
            v[u] = p0 + u < splits ? part[(int64_t)(p0 + u) * M * N + i] : 0.0f;
#pragma unroll
        for (int u = 0; u < GEMV_BATCH; u++)
            if (p0 + u < splits) s += v[u];
    }
    if (bias) s += bias[n];
    float *yp = y + m * ldy + n;
    *yp       = accumulate ? *yp + s : s;
}

/* w_trans: W [N, K]; one warp per output column n, lanes along k (8 consecutive k per lane
 * and load when vec: K % 8 == 0 and W 16-byte aligned). */
template<typename T, int MM>
__global__ void gemv_nk_kernel(int64_t N,
                               int64_t K,
                               const float *__restrict__ x,
                               int64_t ldx,
                               const T *__restrict__ w,
                               const float *__restrict__ bias,
                               float *__restrict__ y,
                               int64_t ldy,
                               bool accumulate,
                               bool vec)
{
    jb_pdl_trigger(); /* launched with jb_cuda_launch; waits before any early return */
    jb_pdl_wait();
    const int64_t n = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane  = threadIdx.x & 31;
    if (n >= N) return;
    float acc[MM];
#pragma unroll
    for (int m = 0; m < MM; m++)
        acc[m] = 0.0f;
    const T *wr = w + n * K;
    if (vec) {
        const int64_t K8 = K / GEMV_VEC;
        for (int64_t kb = lane; kb < K8; kb += 32 * GEMV_UNROLL) {
            uint4 raw[GEMV_UNROLL];
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const int64_t k8 = kb + u * 32;
                raw[u]           = k8 < K8 ? *reinterpret_cast<const uint4 *>(wr + k8 * GEMV_VEC)
                                           : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const int64_t k8 = kb + u * 32;
                if (k8 < K8) {
                    float wv[GEMV_VEC];
                    cvt8<T>(raw[u], wv);
#pragma unroll
                    for (int m = 0; m < MM; m++)
#pragma unroll
                        for (int c = 0; c < GEMV_VEC; c++)
                            acc[m] = fmaf(x[m * ldx + k8 * GEMV_VEC + c], wv[c], acc[m]);
                }
            }
        }
    } else {
#pragma unroll 8
        for (int64_t k = lane; k < K; k += 32) {
            const float wv = jb_ld(wr, k);
#pragma unroll
            for (int m = 0; m < MM; m++)
                acc[m] = fmaf(x[m * ldx + k], wv, acc[m]);
        }
    }
#pragma unroll
    for (int m = 0; m < MM; m++) {
        float s = jb_warp_sum(acc[m]);
        if (lane == 0) {
            if (bias) s += bias[n];
            float *yp = y + m * ldy + n;
            *yp       = accumulate ? *yp + s : s;
        }
    }
}

template<typename T>
__global__ void to_half_kernel(int64_t M, int64_t K, const float *x, int64_t ldx, T *o);
template<>
__global__ void to_half_kernel<__half>(int64_t M, int64_t K, const float *x, int64_t ldx, __half *o)
{
    jb_pdl_trigger(); /* launched with jb_cuda_launch */
    jb_pdl_wait();
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
    jb_pdl_trigger(); /* launched with jb_cuda_launch */
    jb_pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < M * K) o[i] = __float2bfloat16_rn(x[(i / K) * ldx + i % K]);
}

__global__ void add_bias_rows_kernel(int64_t M, int64_t N, const float *bias, float *y, int64_t ldy)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < M * N) y[(i / N) * ldy + i % N] += bias[i % N];
}

/* Split of K for the !w_trans GEMV: at most `resident` blocks (one wave), at least 32·M rows
 * per split (the partial sums, 8·M bytes per column and split, stay within 1/16 of the weights'
 * bytes), and the x tile fits in shared memory. (64 rows at M = 1, so fewer partials for the
 * last block to add, measured 15-20 % slower on the upsampler's matmuls: fewer blocks.) */
static int64_t gemv_splits(int64_t M, int64_t N, int64_t K, int64_t resident)
{
    const int64_t tiles = (N + GEMV_TILE - 1) / GEMV_TILE;
    int64_t s           = resident / tiles;
    const int64_t cap   = K / (32 * M);
    if (s > cap) s = cap;
    if (s < 1) s = 1;
    while ((K + s - 1) / s * M > GEMV_SMEM_FLOATS)
        s++;
    return s;
}

/* Shared memory of a gemv_kn_kernel block with splits of ks rows. */
static size_t gemv_smem(int64_t M, int64_t ks)
{
    return (size_t)(M * ks + GEMV_WARPS * GEMV_TILE) * sizeof(float);
}

/* Blocks of gemv_kn_kernel<T, MM> the device holds at once: SMs times what one SM fits with
 * the largest x tile (asked once per instance and device, before any capture can need it). */
template<typename T, int MM>
static int64_t gemv_resident(struct jb_cuda *cu)
{
    static_assert(JB_CUDA_GEMV_MAX_M < 9, "cu->gemv_per_sm has a slot per row count");
    int *per_sm = &cu->gemv_per_sm[std::is_same<T, __half>::value ? 0 : 1][MM];
    if (!*per_sm) {
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
              &n, gemv_kn_kernel<T, MM>, GEMV_THREADS, gemv_smem(MM, GEMV_SMEM_FLOATS / MM)) !=
              cudaSuccess ||
            n < 1)
            n = 1;
        *per_sm = n;
    }
    return (int64_t)*per_sm * (cu->sm_count > 0 ? cu->sm_count : 1);
}

extern "C" void jb_cuda_set_gemv_max_splits(struct jb_cuda *cu, int splits)
{
    cu->gemv_max_splits = splits > 0 ? splits : 0;
}

/* The largest split any device can choose (no device asked): at most 1/16 of the weights. */
extern "C" size_t jb_cuda_matmul_arena(int64_t M, int64_t N, int64_t K, enum jb_dtype wtype)
{
    if (wtype == JB_DTYPE_F32) return 0;
    if (M <= JB_CUDA_GEMV_MAX_M)
        return (size_t)gemv_splits(M, N, K, INT64_MAX / 2) * (size_t)(M * N) * 4;
    return (size_t)(M * K) * 2;
}

template<typename T, int MM>
static enum jb_status gemv_launch_m(struct jb_cuda *cu,
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
        const bool vec = K % GEMV_VEC == 0 && ((uintptr_t)w % 16) == 0;
        CUDA_CHECK(jb_cuda_launch(cu,
                                  gemv_nk_kernel<T, MM>,
                                  dim3(jb_cuda_blocks(N * 32, 256)),
                                  dim3(256),
                                  0,
                                  N,
                                  K,
                                  x,
                                  ldx,
                                  wt,
                                  bias,
                                  y,
                                  ldy,
                                  accumulate,
                                  vec));
        return JB_STATUS_OK;
    }
    int64_t splits = gemv_splits(MM, N, K, gemv_resident<T, MM>(cu));
    if (cu->gemv_max_splits > 0 && splits > cu->gemv_max_splits) /* bench_gpu comparison */
        splits = cu->gemv_max_splits;
    const int64_t ks = (K + splits - 1) / splits;
    void *part;
    enum jb_status st = jb_cuda_arena(cu, (size_t)splits * (size_t)(MM * N) * 4, &part);
    if (st != JB_STATUS_OK) return st;
    const bool vec = N % GEMV_VEC == 0 && ((uintptr_t)w % 16) == 0;
    dim3 grid((unsigned)((N + GEMV_TILE - 1) / GEMV_TILE), (unsigned)((K + ks - 1) / ks));
    const size_t smem = gemv_smem(MM, ks);
    /* the last block of each tile reduces, where there is a counter for every tile */
    unsigned *count = grid.x <= JB_CUDA_GEMV_COUNTERS ? cu->gemv_count : NULL;
    CUDA_CHECK(jb_cuda_launch(cu,
                              gemv_kn_kernel<T, MM>,
                              grid,
                              dim3(GEMV_THREADS),
                              smem,
                              N,
                              K,
                              ks,
                              x,
                              ldx,
                              wt,
                              (float *)part,
                              vec,
                              count,
                              bias,
                              y,
                              ldy,
                              accumulate));
    if (!count) {
        gemv_reduce_kernel<<<jb_cuda_blocks(MM * N, 256), 256, 0, cu->stream>>>(
          MM, N, (int)grid.y, (const float *)part, bias, y, ldy, accumulate);
        CUDA_CHECK_LAUNCH();
    }
    return JB_STATUS_OK;
}

/* One instantiation per row count, so the accumulators of absent rows take no registers. */
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
    static_assert(JB_CUDA_GEMV_MAX_M == 8, "one case per row count");
#define GEMV_CASE(mm)                                                                              \
    case mm:                                                                                       \
        return gemv_launch_m<T, mm>(cu, N, K, x, ldx, w, w_trans, bias, y, ldy, accumulate)
    switch (M) {
        GEMV_CASE(1);
        GEMV_CASE(2);
        GEMV_CASE(3);
        GEMV_CASE(4);
        GEMV_CASE(5);
        GEMV_CASE(6);
        GEMV_CASE(7);
        GEMV_CASE(8);
    default:
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "cuda gemv: %lld rows", (long long)M);
    }
#undef GEMV_CASE
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
        const dim3 grid(jb_cuda_blocks(M * K, 256)), block(256);
        if (wtype == JB_DTYPE_F16)
            CUDA_CHECK(jb_cuda_launch(
              cu, to_half_kernel<__half>, grid, block, 0, M, K, x, ldx, (__half *)xh));
        else
            CUDA_CHECK(jb_cuda_launch(cu,
                                      to_half_kernel<__nv_bfloat16>,
                                      grid,
                                      block,
                                      0,
                                      M,
                                      K,
                                      x,
                                      ldx,
                                      (__nv_bfloat16 *)xh));
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
