/*
 * backend/cuda/cuda_attention.cu - KV append and attention kernels. One block answers one
 * (candidate, chunk row, head) query: a thread per key computes its score from the transposed
 * keys (coalesced across the warp), an fp32 softmax in shared memory, then threads along the
 * head dimension sum the values. The position may come from device memory (graph replay).
 */
#include "backend/attn_keys.h"
#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_impl.cuh"

#define ATTN_THREADS 128

struct attn_args {
    int func;
    int64_t B, rows, cap;
    int N, H, hd;
    float scale;
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
    return g;
}

__device__ __forceinline__ void st(float *p, float v)
{
    *p = v;
}
__device__ __forceinline__ void st(__half *p, float v)
{
    *p = __float2half_rn(v);
}

/* Slot of position j, or −1 when the layer does not keep it (func 6: the row itself). */
__device__ __forceinline__ int64_t kv_slot(const attn_args &a, int64_t j, int64_t r)
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
    case 6:
        return r < a.cap ? r : -1;
    case 7:
        return j < a.cap ? j : -1;
    default:
        return -1;
    }
}

/* Key run of query position i: slots [first, first + n) (backend/attn_keys.h). */
__device__ __forceinline__ void key_range(const attn_args &a, int64_t i, int64_t *first, int64_t *n)
{
    jb_attn_key_range(a.func, a.B, a.rows, a.cap, i, first, n);
}

template<typename T>
__global__ void kv_append_kernel(attn_args a,
                                 T *kc,
                                 T *vc,
                                 int C,
                                 int64_t S,
                                 const int32_t *pos,
                                 int r0,
                                 int r1,
                                 const float *__restrict__ k,
                                 const float *__restrict__ v,
                                 int64_t ld)
{
    if (pos) S = *pos;
    const int64_t ns = (int64_t)a.H * a.hd, nr = r1 - r0;
    const int64_t total = (int64_t)a.N * nr * ns;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t e = i % ns, r = r0 + (i / ns) % nr, n = i / (ns * nr);
        const int64_t slot = kv_slot(a, S + r, r);
        if (slot < 0) continue;
        const int64_t h = e / a.hd, c = e % a.hd, src = (n * C + r) * ld + e;
        st(kc + ((n * a.H + h) * a.hd + c) * a.cap + slot, k[src]);
        st(vc + ((n * a.H + h) * a.cap + slot) * a.hd + c, v[src]);
    }
}

/* Block (n, r, h) for r in [r0, r1). Shared: 32 reduction words, q [hd], scores [max keys]. */
template<typename T>
__global__ void attend_kernel(attn_args a,
                              const T *__restrict__ kc,
                              const T *__restrict__ vc,
                              int C,
                              int64_t S,
                              const int32_t *pos,
                              int r0,
                              int r1,
                              const float *__restrict__ q,
                              int64_t ldq,
                              float *__restrict__ out,
                              int64_t ldo)
{
    extern __shared__ float sm[];
    float *red = sm, *qs = sm + 32, *s = qs + a.hd;
    if (pos) S = *pos;
    const int nr = r1 - r0;
    const int h  = blockIdx.x % a.H;
    const int r  = r0 + (blockIdx.x / a.H) % nr;
    const int n  = blockIdx.x / (a.H * nr);
    float *o     = out + ((int64_t)n * C + r) * ldo + (int64_t)h * a.hd;
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

    const int64_t blk = (int64_t)n * a.H + h;
    const T *kb       = kc + blk * a.hd * a.cap + first; /* kb[c·cap + j] */
    const T *vb       = vc + (blk * a.cap + first) * a.hd;
    float m           = -INFINITY;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
        float d = 0.0f;
        for (int c = 0; c < a.hd; c++)
            d = fmaf(qs[c], jb_ld(kb, (int64_t)c * a.cap + j), d);
        s[j] = d * a.scale;
        m    = fmaxf(m, s[j]);
    }
    m         = jb_block_max(m, red);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
        const float e = expf(s[j] - m);
        s[j]          = e;
        sum += e;
    }
    const float inv = 1.0f / jb_block_sum(sum, red); /* its barriers publish s[] */
    for (int c = threadIdx.x; c < a.hd; c += blockDim.x) {
        float acc = 0.0f;
        for (int64_t j = 0; j < nk; j++)
            acc = fmaf(s[j] * inv, jb_ld(vb, j * a.hd + c), acc);
        o[c] = acc;
    }
}

__global__ void position_add_kernel(int32_t *pos, int32_t by)
{
    *pos += by;
}

extern "C" size_t jb_cuda_attn_cache_bytes(const struct jb_cuda_attn *a)
{
    return (size_t)a->N * (size_t)a->H * (size_t)a->cap * (size_t)a->hd *
           (a->type == JB_DTYPE_F16 ? 2 : 4);
}

static enum jb_status check_attn(const struct jb_cuda_attn *a)
{
    if (a->func < 0 || a->func > 7 || a->func == 4 || a->func == 5)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                       "cuda attention: attn_func %d (4 and 5 have no sampling path in the "
                       "reference)",
                       a->func);
    if (a->type != JB_DTYPE_F32 && a->type != JB_DTYPE_F16)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda attention: cache dtype %d", (int)a->type);
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_kv_append(struct jb_cuda *cu,
                                            const struct jb_cuda_attn *a,
                                            int C,
                                            int64_t S,
                                            const int32_t *pos,
                                            int r0,
                                            int r1,
                                            const float *k,
                                            const float *v,
                                            int64_t ld)
{
    enum jb_status s = check_attn(a);
    if (s != JB_STATUS_OK || r1 <= r0) return s;
    const attn_args g   = args_of(a);
    const int64_t n     = (int64_t)a->N * (r1 - r0) * a->H * a->hd;
    const unsigned grid = jb_cuda_blocks(n, 256);
    if (a->type == JB_DTYPE_F16)
        kv_append_kernel<__half><<<grid, 256, 0, cu->stream>>>(
          g, (__half *)a->k, (__half *)a->v, C, S, pos, r0, r1, k, v, ld);
    else
        kv_append_kernel<float><<<grid, 256, 0, cu->stream>>>(
          g, (float *)a->k, (float *)a->v, C, S, pos, r0, r1, k, v, ld);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

template<typename T>
static enum jb_status smem_optin(struct jb_cuda *cu, size_t smem, const attn_args &g)
{
    if (smem <= 48 * 1024) return JB_STATUS_OK;
    int dev_max = 0;
    CUDA_CHECK(
      cudaDeviceGetAttribute(&dev_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, cu->device));
    if (smem > (size_t)dev_max)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                       "cuda attention: %lld keys of head dim %d need %zu bytes of shared "
                       "memory, the device has %d",
                       (long long)g.cap,
                       g.hd,
                       smem,
                       dev_max);
    CUDA_CHECK(cudaFuncSetAttribute(
      attend_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_attention(struct jb_cuda *cu,
                                            const struct jb_cuda_attn *a,
                                            int C,
                                            int64_t S,
                                            const int32_t *pos,
                                            int r0,
                                            int r1,
                                            const float *q,
                                            int64_t ldq,
                                            float *out,
                                            int64_t ldo)
{
    enum jb_status s = check_attn(a);
    if (s != JB_STATUS_OK || r1 <= r0) return s;
    const attn_args g  = args_of(a);
    const int64_t keys = a->func == 2 ? a->rows : a->cap; /* longest key run */
    const size_t smem  = (size_t)(32 + a->hd + keys) * sizeof(float);
    const int64_t nb   = (int64_t)a->N * (r1 - r0) * a->H; /* one block per query and head */
    if (nb > JB_CUDA_MAX_BLOCKS)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda attention: %lld queries", (long long)nb);
    const unsigned blocks = (unsigned)nb;
    if (a->type == JB_DTYPE_F16) {
        if ((s = smem_optin<__half>(cu, smem, g)) != JB_STATUS_OK) return s;
        attend_kernel<__half><<<blocks, ATTN_THREADS, smem, cu->stream>>>(
          g, (const __half *)a->k, (const __half *)a->v, C, S, pos, r0, r1, q, ldq, out, ldo);
    } else {
        if ((s = smem_optin<float>(cu, smem, g)) != JB_STATUS_OK) return s;
        attend_kernel<float><<<blocks, ATTN_THREADS, smem, cu->stream>>>(
          g, (const float *)a->k, (const float *)a->v, C, S, pos, r0, r1, q, ldq, out, ldo);
    }
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_attention_chunk(struct jb_cuda *cu,
                                                  const struct jb_cuda_attn *a,
                                                  int64_t S,
                                                  const int32_t *pos,
                                                  int C,
                                                  const float *qkv,
                                                  float *att)
{
    const int64_t ns = (int64_t)a->H * a->hd;
    if (a->func == 6) return jb_cuda_attention(cu, a, C, S, pos, 0, C, qkv, ns, att, ns);
    const float *k = qkv + ns, *v = qkv + 2 * ns;
    const int64_t ld = 3 * ns;
    enum jb_status s;
    /* with the position on the device the chunk must be one segment (decode: C = 1) */
    if ((a->func == 1 || a->func == 3) && !pos) {
        for (int r0 = 0; r0 < C;) {
            int r1 = r0 + (int)(a->B - (S + r0) % a->B);
            if (r1 > C) r1 = C;
            if ((s = jb_cuda_kv_append(cu, a, C, S, NULL, r0, r1, k, v, ld)) != JB_STATUS_OK)
                return s;
            if ((s = jb_cuda_attention(cu, a, C, S, NULL, r0, r1, qkv, ld, att, ns)) !=
                JB_STATUS_OK)
                return s;
            r0 = r1;
        }
        return JB_STATUS_OK;
    }
    if (pos && C != 1 && (a->func == 1 || a->func == 3))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "cuda attention: a device position takes C = 1");
    if ((s = jb_cuda_kv_append(cu, a, C, S, pos, 0, C, k, v, ld)) != JB_STATUS_OK) return s;
    return jb_cuda_attention(cu, a, C, S, pos, 0, C, qkv, ld, att, ns);
}

extern "C" enum jb_status jb_cuda_position_add(struct jb_cuda *cu, int32_t *pos, int32_t by)
{
    position_add_kernel<<<1, 1, 0, cu->stream>>>(pos, by);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}
