/*
 * backend/cuda/cuda_attention.cu - KV append and attention kernels. One block answers one
 * (candidate, chunk row, head) query: groups of threads per key compute its score from the
 * transposed keys (coalesced across the warp), an fp32 softmax in shared memory, then groups of
 * threads per head dimension sum the values. The position may come from device memory (graph
 * replay).
 */
#include "backend/attn_keys.h"
#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_impl.cuh"

#include <type_traits>

#define ATTN_MAX_THREADS 1024
#define ATTN_DIMS_PER_THREAD 16
#define ATTN_COMBINE_BATCH 8 /* partial outputs a thread loads at once when combining */

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
    jb_pdl_trigger(); /* launched with jb_cuda_launch */
    jb_pdl_wait();
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

/* Query (n, r, h), r in [r0, r1): block x = (n·(r1 − r0) + r − r0)·H + h; block y = its split
 * (a share of the key run, attn_splits); blockDim.x = jt·G threads. A decode step has one query
 * per (candidate, head) and a few dozen keys of up to 480 dims: one thread per key walking the
 * whole head dim (the first version, 128 threads) was a chain of ~hd dependent memory round
 * trips per layer (~100 µs, ~8 ms of a 72-layer upsampler step). Now the scores take G threads
 * per key, each over hd/G dims, summed in a fixed order (deterministic); the weighted sum of the
 * values takes vg = blockDim/hd threads per output dim, each over nk/vg keys (vw = 8: fp16
 * values with hd % 8 == 0, 8 dims per 16-byte load). Shared: 32 reduction words, q [hd],
 * partials [pf], scores [max(longest run, 2·splits)]. (Batches of 16 loads instead of `unroll 8`
 * measured slower on the H200: 64 registers at 1024 threads.) */
template<typename T>
__global__ void __launch_bounds__(ATTN_MAX_THREADS) attend_kernel(attn_args a,
                                                                  int jt,
                                                                  int vw,
                                                                  int pf,
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
                                                                  int64_t ldo,
                                                                  float *__restrict__ gpart,
                                                                  unsigned *count)
{
    extern __shared__ float sm[];
    float *red = sm, *qs = sm + 32, *part = qs + a.hd, *s = part + pf;
    const int P = gridDim.y; /* key splits of this query (attn_splits) */
    jb_pdl_trigger();        /* launched with jb_cuda_launch */
    jb_pdl_wait();
    const int nr  = r1 - r0;
    const int h   = blockIdx.x % a.H;
    const int r   = r0 + (blockIdx.x / a.H) % nr;
    const int n   = blockIdx.x / (a.H * nr);
    const int tid = threadIdx.x, nt = blockDim.x;
    float *o        = out + ((int64_t)n * C + r) * ldo + (int64_t)h * a.hd;
    const float *qr = q + ((int64_t)n * C + r) * ldq + (int64_t)h * a.hd;
    for (int c = tid; c < a.hd; c += nt) /* q and the position: one round trip */
        qs[c] = qr[c];
    if (pos) S = *pos;
    int64_t first, nk;
    key_range(a, S + r, &first, &nk);
    if (nk == 0) { /* func 3 in block 0: B zero keys/values -> zero output */
        if (blockIdx.y == 0)
            for (int c = tid; c < a.hd; c += nt)
                o[c] = 0.0f;
        return;
    }
    /* this block's share of the run: keys [ja, jb) of it (P > 1: flash-decoding style) */
    float *dst = o;
    if (P > 1) {
        const int64_t chunk = (nk + P - 1) / P, ja = blockIdx.y * chunk;
        const int64_t jb = ja + chunk < nk ? ja + chunk : nk;
        first += ja;
        nk  = jb > ja ? jb - ja : 0;
        dst = gpart + ((int64_t)blockIdx.x * P + blockIdx.y) * (a.hd + 2) + 2;
    }
    __syncthreads();
    if (nk > 0) {
        const int64_t blk = (int64_t)n * a.H + h;
        const T *kb       = kc + blk * a.hd * a.cap + first; /* kb[c·cap + j] */
        const T *vb       = vc + (blk * a.cap + first) * a.hd;
        const int G = nt / jt, jj = tid % jt, g = tid / jt;
        const int cs = (a.hd + G - 1) / G, c0 = g * cs, c1 = c0 + cs < a.hd ? c0 + cs : a.hd;
        float m = -INFINITY;
        for (int64_t j0 = 0; j0 < nk; j0 += jt) {
            const int64_t j = j0 + jj;
            float d         = 0.0f;
            if (j < nk) {
                const T *kp = kb + j;
#pragma unroll 8
                for (int c = c0; c < c1; c++) /* loads independent of d: 8 in flight */
                    d = fmaf(qs[c], jb_ld(kp, (int64_t)c * a.cap), d);
            }
            part[tid] = d;
            __syncthreads();
            if (tid < jt && j < nk) {
                float t = 0.0f;
                for (int u = 0; u < G; u++)
                    t += part[u * jt + tid];
                s[j] = t * a.scale;
                m    = fmaxf(m, s[j]);
            }
            __syncthreads();
        }
        m         = jb_block_max(m, red);
        float sum = 0.0f;
        for (int64_t j = tid; j < nk; j += nt) {
            const float e = expf(s[j] - m);
            s[j]          = e;
            sum += e;
        }
        sum = jb_block_sum(sum, red); /* its barriers publish s[] */
        /* one block: normalised here; split: unnormalised, the last block rescales */
        const float inv = P > 1 ? 1.0f : 1.0f / sum;
        if (P > 1 && tid == 0) dst[-2] = m, dst[-1] = sum;
        if constexpr (std::is_same<T, __half>::value) {
            if (vw == 8) { /* 16-byte loads of 8 dims: a few keys per thread, all loads at once */
                const int dg = a.hd / 8, vg8 = nt / dg, g8 = tid % dg, u = tid / dg;
                if (u < vg8) {
                    const int64_t kn = (nk + vg8 - 1) / vg8, ja = u * kn;
                    const int64_t jb = ja + kn < nk ? ja + kn : nk;
                    float acc[8]     = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
#pragma unroll 4
                    for (int64_t j = ja; j < jb; j++) {
                        const uint4 raw = *reinterpret_cast<const uint4 *>(vb + j * a.hd + g8 * 8);
                        const unsigned wd[4] = { raw.x, raw.y, raw.z, raw.w };
                        const float p        = s[j] * inv;
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const float2 f =
                              __half22float2(*reinterpret_cast<const __half2 *>(&wd[e]));
                            acc[2 * e]     = fmaf(p, f.x, acc[2 * e]);
                            acc[2 * e + 1] = fmaf(p, f.y, acc[2 * e + 1]);
                        }
                    }
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        part[u * a.hd + g8 * 8 + e] = acc[e];
                }
                __syncthreads();
                for (int cc = tid; cc < a.hd; cc += nt) {
                    float t = 0.0f;
                    for (int uu = 0; uu < vg8; uu++)
                        t += part[uu * a.hd + cc];
                    dst[cc] = t;
                }
                goto combine; /* past the other value paths */
            }
        }
        {
            const int vg = nt / a.hd;
            if (vg <= 1) {
                for (int c = tid; c < a.hd; c += nt) {
                    float acc = 0.0f;
#pragma unroll 8
                    for (int64_t j = 0; j < nk; j++)
                        acc = fmaf(s[j] * inv, jb_ld(vb, j * a.hd + c), acc);
                    dst[c] = acc;
                }
                goto combine;
            }
            /* vg key groups per dim; part[] is free (the last score tile ended with a barrier) */
            const int c = tid % a.hd, u = tid / a.hd;
            if (u < vg) {
                const int64_t kn = (nk + vg - 1) / vg, ja = u * kn,
                              jb = ja + kn < nk ? ja + kn : nk;
                float acc        = 0.0f;
#pragma unroll 8
                for (int64_t j = ja; j < jb; j++)
                    acc = fmaf(s[j] * inv, jb_ld(vb, j * a.hd + c), acc);
                part[u * a.hd + c] = acc;
            }
            __syncthreads();
            for (int cc = tid; cc < a.hd; cc += nt) {
                float t = 0.0f;
                for (int uu = 0; uu < vg; uu++)
                    t += part[uu * a.hd + cc];
                dst[cc] = t;
            }
        }
    } else if (tid == 0) { /* a split with no keys: weight zero in the combination */
        dst[-2] = -INFINITY, dst[-1] = 0.0f;
    }
combine:
    if (P == 1) return;
    /* The query's last split to finish combines the P partials in split order (deterministic):
     * o = Σ_b e^(m_b − m) o_b / Σ_b e^(m_b − m) l_b, and re-arms the counter. A split without
     * keys wrote m_b = −inf, l_b = 0 and no o_b: its weight is zero and its o_b is not read. */
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(&count[blockIdx.x], 1u) == (unsigned)P - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    /* Every load of a round is issued before any is used (a loop over P with one load per
     * iteration waited one L2 round trip per split: 3·P of them). Shared: m_b in s[0, P),
     * l_b in s[P, 2P), then the weights e^(m_b − m) in s[0, P). */
    const float *gp = gpart + (int64_t)blockIdx.x * P * (a.hd + 2);
    for (int i = tid; i < 2 * P; i += nt)
        s[i] = __ldcg(gp + (int64_t)(i % P) * (a.hd + 2) + i / P);
    __syncthreads();
    float mx = -INFINITY;
    for (int b = 0; b < P; b++)
        mx = fmaxf(mx, s[b]);
    float l = 0.0f;
    for (int b = 0; b < P; b++)
        l += s[b] == -INFINITY ? 0.0f : expf(s[b] - mx) * s[P + b];
    __syncthreads(); /* everyone has read m_b before it becomes a weight */
    for (int b = tid; b < P; b += nt)
        s[b] = s[b] == -INFINITY ? 0.0f : expf(s[b] - mx);
    __syncthreads();
    const float il = 1.0f / l;
    for (int c = tid; c < a.hd; c += nt) {
        float t = 0.0f;
        for (int b0 = 0; b0 < P; b0 += ATTN_COMBINE_BATCH) {
            float v[ATTN_COMBINE_BATCH];
#pragma unroll
            for (int u = 0; u < ATTN_COMBINE_BATCH; u++)
                v[u] = b0 + u < P && s[b0 + u] != 0.0f
                         ? __ldcg(gp + (int64_t)(b0 + u) * (a.hd + 2) + 2 + c)
                         : 0.0f;
#pragma unroll
            for (int u = 0; u < ATTN_COMBINE_BATCH; u++)
                if (b0 + u < P) t = fmaf(s[b0 + u], v[u], t);
        }
        o[c] = t * il;
    }
    if (tid == 0) count[blockIdx.x] = 0;
}

/* Keys per score tile (a power of two >= 32 covering the keys a block takes, at most the
 * block) and threads per block: enough key-groups that a thread walks about
 * ATTN_DIMS_PER_THREAD dims of a key. Depends on the layer's shape only, so every call of a
 * layer does the same arithmetic. */
static void attn_config(const attn_args &g, int64_t keys, int *jt, int *threads)
{
    int t = 32;
    while (t < keys && t < ATTN_MAX_THREADS)
        t <<= 1;
    int groups = (g.hd + ATTN_DIMS_PER_THREAD - 1) / ATTN_DIMS_PER_THREAD;
    if (groups > ATTN_MAX_THREADS / t) groups = ATTN_MAX_THREADS / t;
    if (groups < 1) groups = 1;
    *jt      = t;
    *threads = t * groups;
}

/* Key splits of a query (gridDim.y). A decode step has few queries (1 for the upsampler at one
 * candidate, 8 for the 5b top prior), so one block per query ran on 1-8 SMs, walking up to 256
 * keys of 480 dims in ~8 dependent load rounds (9-15 µs per layer on an H200). Splitting the key
 * run so that a block takes about ATTN_SPLIT_KEYS keys, while all blocks fit in one wave (one
 * block of up to 1024 threads per SM: two per SM made the 5b top prior's 16-candidate step run
 * two waves, 10 -> 18 µs per layer), spreads it; the last split of each query combines the
 * partials. Prefill chunks have
 * enough queries and keep one block each (and their numerics). Depends on the layer's shape
 * and the device only, so every call of a layer (and its graph replay) splits the same way. */
#define ATTN_SPLIT_KEYS 32
#define ATTN_MAX_SPLITS 64
static int attn_splits(const struct jb_cuda *cu, int64_t queries, int64_t keys)
{
    if (queries > JB_CUDA_GEMV_COUNTERS) return 1; /* one arrival counter per query */
    const int64_t per = cu->attn_split_keys > 0 ? cu->attn_split_keys : ATTN_SPLIT_KEYS;
    int64_t p         = (keys + per - 1) / per;
    const int64_t fit = (int64_t)(cu->sm_count > 0 ? cu->sm_count : 1) / queries;
    if (p > fit) p = fit;
    if (p > ATTN_MAX_SPLITS) p = ATTN_MAX_SPLITS;
    return p < 1 ? 1 : (int)p;
}

extern "C" void jb_cuda_set_attn_split_keys(struct jb_cuda *cu, int keys)
{
    cu->attn_split_keys = keys > 0 ? keys : 0;
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

/* The launches of one cache dtype; the entry points check the layer and pick T from it. */
template<typename T>
static enum jb_status kv_append_typed(struct jb_cuda *cu,
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
    const int64_t n = (int64_t)a->N * (r1 - r0) * a->H * a->hd;
    CUDA_CHECK(jb_cuda_launch(cu,
                              kv_append_kernel<T>,
                              dim3(jb_cuda_blocks(n, 256)),
                              dim3(256),
                              0,
                              args_of(a),
                              (T *)a->k,
                              (T *)a->v,
                              C,
                              S,
                              pos,
                              r0,
                              r1,
                              k,
                              v,
                              ld));
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
    return a->type == JB_DTYPE_F16 ? kv_append_typed<__half>(cu, a, C, S, pos, r0, r1, k, v, ld)
                                   : kv_append_typed<float>(cu, a, C, S, pos, r0, r1, k, v, ld);
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

template<typename T>
static enum jb_status attention_typed(struct jb_cuda *cu,
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
    enum jb_status s;
    const attn_args g = args_of(a);
    const int64_t nb  = (int64_t)a->N * (r1 - r0) * a->H; /* queries (one per row and head) */
    if (nb > JB_CUDA_MAX_BLOCKS)
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "cuda attention: %lld queries", (long long)nb);
    const int64_t keys = a->func == 2 ? a->rows : a->cap; /* longest key run */
    const int P        = attn_splits(cu, nb, keys);
    int jt, threads;
    attn_config(g, (keys + P - 1) / P, &jt, &threads);
    void *gpart = NULL; /* P > 1: per split m, l and the unnormalised output */
    if (P > 1) {
        const size_t bytes = (size_t)nb * P * (size_t)(a->hd + 2) * sizeof(float);
        if ((s = jb_cuda_reserve(cu, bytes)) != JB_STATUS_OK ||
            (s = jb_cuda_arena(cu, bytes, &gpart)) != JB_STATUS_OK)
            return s;
    }
    /* the scores, and when combining splits their maxima and sums (2·P floats) */
    const int64_t sf = keys > 2 * (int64_t)P ? keys : 2 * (int64_t)P;
    /* values in 16-byte loads (fp16, hd % 8 == 0) where their partials fit in 48 KiB */
    int vw = 1, pf = threads;
    if (std::is_same<T, __half>::value && a->hd % 8 == 0 && a->hd / 8 <= threads) {
        const int pf8 = threads / (a->hd / 8) * a->hd;
        if ((size_t)(32 + a->hd + (pf8 > pf ? pf8 : pf) + sf) * sizeof(float) <= 48 * 1024)
            vw = 8, pf = pf8 > pf ? pf8 : pf;
    }
    const size_t smem = (size_t)(32 + a->hd + pf + sf) * sizeof(float);
    const dim3 blocks((unsigned)nb, (unsigned)P);
    if ((s = smem_optin<T>(cu, smem, g)) != JB_STATUS_OK) return s;
    CUDA_CHECK(jb_cuda_launch(cu,
                              attend_kernel<T>,
                              blocks,
                              dim3(threads),
                              smem,
                              g,
                              jt,
                              vw,
                              pf,
                              (const T *)a->k,
                              (const T *)a->v,
                              C,
                              S,
                              pos,
                              r0,
                              r1,
                              q,
                              ldq,
                              out,
                              ldo,
                              (float *)gpart,
                              cu->gemv_count));
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
    return a->type == JB_DTYPE_F16
             ? attention_typed<__half>(cu, a, C, S, pos, r0, r1, q, ldq, out, ldo)
             : attention_typed<float>(cu, a, C, S, pos, r0, r1, q, ldq, out, ldo);
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
