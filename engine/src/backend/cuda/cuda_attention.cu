/*
 * backend/cuda/cuda_attention.cu - KV store and attention kernels. One block answers one
 * (candidate, chunk row, head) query: scores of its contiguous key run in shared memory, an
 * fp32 softmax, then the weighted sum of values with threads along the head dimension.
 * Decode reads the position from device memory (graph replay).
 */
#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_impl.cuh"

#define ATTN_THREADS 128

struct attn_args {
    int func;
    int64_t B, rows, cap;
    int N, H, hd;
    float scale;
    __half *k, *v;
};

static attn_args args_of(const struct jb_cuda_attn *a)
{
    attn_args g;
    g.func  = a->func;
    g.B     = a->B;
    g.rows  = a->rows;
    g.cap   = a->cap;
    g.N     = a->N;
    g.H     = a->H;
    g.hd    = a->hd;
    g.scale = a->scale;
    g.k     = (__half *)a->k;
    g.v     = (__half *)a->v;
    return g;
}

/* Slot of position j, or −1 when the layer does not keep it. */
__device__ __forceinline__ int64_t kv_slot(const attn_args &a, int64_t j)
{
    switch (a.func) {
    case 0:
        return j;
    case 1:
        return j % a.B;
    case 2:
        return (j % a.B) * a.rows + j / a.B;
    case 3:
        return ((j / a.B) % 2) * a.B + j % a.B;
    case 7:
        return j < a.cap ? j : -1;
    default:
        return -1;
    }
}

/* Key run of query position i: slots [first, first + n). */
__device__ __forceinline__ void key_range(const attn_args &a, int64_t i, int64_t *first, int64_t *n)
{
    *first = 0;
    switch (a.func) {
    case 0:
        *n = i + 1;
        break;
    case 1:
        *n = i % a.B + 1;
        break;
    case 2:
        *first = (i % a.B) * a.rows;
        *n     = i / a.B + 1;
        break;
    case 3:
        *first = ((i / a.B + 1) % 2) * a.B;
        *n     = i / a.B >= 1 ? a.B : 0;
        break;
    case 6:
        *n = a.cap;
        break;
    case 7:
        *n = i + 1 < a.cap ? i + 1 : a.cap;
        break;
    default:
        *n = 0;
        break;
    }
}

/* Stores K and V of chunk rows [r0, r1) (positions S + r) as fp16. */
__global__ void kv_store_kernel(attn_args a,
                                int64_t S,
                                const int32_t *pos,
                                int C,
                                int r0,
                                int r1,
                                const float *__restrict__ qkv)
{
    if (pos) S = *pos;
    const int64_t ns = (int64_t)a.H * a.hd, nr = r1 - r0;
    const int64_t total = (int64_t)a.N * nr * ns;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t e = i % ns, r = r0 + (i / ns) % nr, n = i / (ns * nr);
        const int64_t slot = kv_slot(a, S + r);
        if (slot < 0) continue;
        const int64_t h = e / a.hd, c = e % a.hd;
        const float *row  = qkv + (n * C + r) * 3 * ns;
        const int64_t dst = ((n * a.H + h) * a.cap + slot) * a.hd + c;
        a.k[dst]          = __float2half_rn(row[ns + e]);
        a.v[dst]          = __float2half_rn(row[2 * ns + e]);
    }
}

/* Block (n, r, h) for r in [r0, r1). Shared: q [hd], scores [max keys], 32 reduction words. */
__global__ void attend_kernel(attn_args a,
                              int64_t S,
                              const int32_t *pos,
                              int C,
                              int r0,
                              int r1,
                              const float *__restrict__ q,
                              int64_t ldq,
                              float *__restrict__ att)
{
    extern __shared__ float sm[];
    float *red = sm, *qs = sm + 32, *s = qs + a.hd;
    if (pos) S = *pos;
    const int nr     = r1 - r0;
    const int h      = blockIdx.x % a.H;
    const int r      = r0 + (blockIdx.x / a.H) % nr;
    const int n      = blockIdx.x / (a.H * nr);
    const int64_t ns = (int64_t)a.H * a.hd;
    float *o         = att + ((int64_t)n * C + r) * ns + (int64_t)h * a.hd;
    int64_t first, nk;
    key_range(a, S + r, &first, &nk);
    if (nk == 0) { /* func 3 in block 0: B zero keys/values -> zero output */
        for (int c = threadIdx.x; c < a.hd; c += blockDim.x)
            o[c] = 0.0f;
        return;
    }
    const float *qr = q + ((int64_t)n * C + r) * ldq + (int64_t)h * a.hd;
    for (int c = threadIdx.x; c < a.hd; c += blockDim.x)
        qs[c] = qr[c];
    __syncthreads();

    const int64_t blk = ((int64_t)n * a.H + h) * a.cap;
    const __half *kb = a.k + (blk + first) * a.hd, *vb = a.v + (blk + first) * a.hd;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int64_t j = warp; j < nk; j += nw) {
        const __half *kj = kb + j * a.hd;
        float d          = 0.0f;
        for (int c = lane; c < a.hd; c += 32)
            d = fmaf(qs[c], __half2float(kj[c]), d);
        d = jb_warp_sum(d);
        if (lane == 0) s[j] = d * a.scale;
    }
    __syncthreads();
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x)
        m = fmaxf(m, s[j]);
    m         = jb_block_max(m, red);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
        const float e = expf(s[j] - m);
        s[j]          = e;
        sum += e;
    }
    const float inv = 1.0f / jb_block_sum(sum, red); /* the block sum's barriers publish s[] */
    for (int c = threadIdx.x; c < a.hd; c += blockDim.x) {
        float acc = 0.0f;
        for (int64_t j = 0; j < nk; j++)
            acc = fmaf(s[j] * inv, __half2float(vb[j * a.hd + c]), acc);
        o[c] = acc;
    }
}

__global__ void set_encoder_kernel(attn_args a, const float *__restrict__ kv)
{
    const int64_t ns = (int64_t)a.H * a.hd, total = (int64_t)a.N * a.cap * ns;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t e = i % ns, j = (i / ns) % a.cap, n = i / (ns * a.cap);
        const int64_t h = e / a.hd, c = e % a.hd;
        const float *row  = kv + (n * a.cap + j) * 2 * ns;
        const int64_t dst = ((n * a.H + h) * a.cap + j) * a.hd + c;
        a.k[dst]          = __float2half_rn(row[e]);
        a.v[dst]          = __float2half_rn(row[ns + e]);
    }
}

__global__ void position_add_kernel(int32_t *pos, int32_t by)
{
    *pos += by;
}

extern "C" size_t jb_cuda_attn_cache_bytes(const struct jb_cuda_attn *a)
{
    return (size_t)a->N * (size_t)a->H * (size_t)a->cap * (size_t)a->hd * sizeof(__half);
}

/* The most keys one query can see: the shared memory of the scores. */
static int64_t max_keys(const attn_args &a)
{
    return a.func == 2 ? a.rows : a.cap;
}

static enum jb_status attend_launch(struct jb_cuda *cu,
                                    const attn_args &g,
                                    int64_t S,
                                    const int32_t *pos,
                                    int C,
                                    int r0,
                                    int r1,
                                    const float *q,
                                    int64_t ldq,
                                    float *att)
{
    const size_t smem = (size_t)(32 + g.hd + max_keys(g)) * sizeof(float);
    if (smem > 48 * 1024) {
        int dev_max = 0;
        CUDA_CHECK(
          cudaDeviceGetAttribute(&dev_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, cu->device));
        if (smem > (size_t)dev_max)
            return jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                           "cuda attention: %lld keys of head dim %d need %zu bytes of shared "
                           "memory, the device has %d",
                           (long long)max_keys(g),
                           g.hd,
                           smem,
                           dev_max);
        CUDA_CHECK(cudaFuncSetAttribute(
          attend_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
    const unsigned blocks = (unsigned)((int64_t)g.N * (r1 - r0) * g.H);
    attend_kernel<<<blocks, ATTN_THREADS, smem, cu->stream>>>(g, S, pos, C, r0, r1, q, ldq, att);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

static enum jb_status store_launch(struct jb_cuda *cu,
                                   const attn_args &g,
                                   int64_t S,
                                   const int32_t *pos,
                                   int C,
                                   int r0,
                                   int r1,
                                   const float *qkv)
{
    const int64_t n = (int64_t)g.N * (r1 - r0) * g.H * g.hd;
    kv_store_kernel<<<jb_cuda_blocks(n, 256), 256, 0, cu->stream>>>(g, S, pos, C, r0, r1, qkv);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

static enum jb_status check_func(const struct jb_cuda_attn *a)
{
    if (a->func < 0 || a->func > 7 || a->func == 4 || a->func == 5)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                       "cuda attention: attn_func %d (4 and 5 have no sampling path in the "
                       "reference)",
                       a->func);
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_attention_chunk(struct jb_cuda *cu,
                                                  const struct jb_cuda_attn *a,
                                                  int64_t S,
                                                  int C,
                                                  const float *qkv,
                                                  float *att)
{
    enum jb_status st = check_func(a);
    if (st != JB_STATUS_OK || C <= 0) return st;
    const attn_args g = args_of(a);
    const int64_t ns  = (int64_t)a->H * a->hd;
    const int64_t ldq = a->func == 6 ? ns : 3 * ns;
    if (a->func == 6) return attend_launch(cu, g, S, NULL, C, 0, C, qkv, ldq, att);
    if (a->func == 1 || a->func == 3) {
        for (int r0 = 0; r0 < C;) {
            int r1 = r0 + (int)(a->B - (S + r0) % a->B);
            if (r1 > C) r1 = C;
            if ((st = store_launch(cu, g, S, NULL, C, r0, r1, qkv)) != JB_STATUS_OK) return st;
            if ((st = attend_launch(cu, g, S, NULL, C, r0, r1, qkv, ldq, att)) != JB_STATUS_OK)
                return st;
            r0 = r1;
        }
        return JB_STATUS_OK;
    }
    if ((st = store_launch(cu, g, S, NULL, C, 0, C, qkv)) != JB_STATUS_OK) return st;
    return attend_launch(cu, g, S, NULL, C, 0, C, qkv, ldq, att);
}

extern "C" enum jb_status jb_cuda_attention_decode(struct jb_cuda *cu,
                                                   const struct jb_cuda_attn *a,
                                                   const int32_t *pos,
                                                   const float *qkv,
                                                   float *att)
{
    enum jb_status st = check_func(a);
    if (st != JB_STATUS_OK) return st;
    const attn_args g = args_of(a);
    const int64_t ns  = (int64_t)a->H * a->hd;
    if (a->func != 6 && (st = store_launch(cu, g, 0, pos, 1, 0, 1, qkv)) != JB_STATUS_OK) return st;
    return attend_launch(cu, g, 0, pos, 1, 0, 1, qkv, a->func == 6 ? ns : 3 * ns, att);
}

extern "C" enum jb_status jb_cuda_attention_set_encoder(struct jb_cuda *cu,
                                                        const struct jb_cuda_attn *a,
                                                        const float *kv)
{
    const attn_args g = args_of(a);
    const int64_t n   = (int64_t)a->N * a->cap * a->H * a->hd;
    set_encoder_kernel<<<jb_cuda_blocks(n, 256), 256, 0, cu->stream>>>(g, kv);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_position_add(struct jb_cuda *cu, int32_t *pos, int32_t by)
{
    position_add_kernel<<<1, 1, 0, cu->stream>>>(pos, by);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}
