/*
 * backend/cuda/cuda_sample.cu - one block per candidate. The filters work on a (value, index)
 * bitonic sort in shared memory; the draw is a two-level inverse CDF: each thread sums a
 * contiguous chunk of exp(ℓ − max) in double, the chunk offsets are scanned, and the thread
 * whose chunk holds the target walks it in index order, as the CPU sampler walks the whole row.
 */
#include "backend/cuda/cuda_impl.cuh"
#include "backend/cuda/cuda_sample.cuh"
#include "core/rng.h"

#define SAMPLE_THREADS 256

static __device__ __forceinline__ bool before(float a, int ia, float b, int ib)
{
    return a > b || (a == b && ia < ib); /* descending value, ascending index */
}

__global__ void sample_kernel(struct jb_cuda_sample_params sp,
                              int V,
                              int P, /* power of two >= V */
                              float *logits,
                              int64_t ldl,
                              const int32_t *pos,
                              int64_t t_host,
                              int32_t *tokens,
                              int32_t *seq,
                              int64_t ld_seq)
{
    extern __shared__ double smd[];
    double *part = smd;                  /* [SAMPLE_THREADS] chunk sums */
    double *q    = smd + SAMPLE_THREADS; /* [P] with top-p: sorted probabilities */
    float *key   = (float *)(q + (sp.top_p > 0.0f ? P : 0)); /* [P] */
    int *idx     = (int *)(key + P);                         /* [P] */
    __shared__ float red[32];
    __shared__ int chosen;
    __shared__ double target_sh;
    const int n     = blockIdx.x;
    const int tid   = threadIdx.x;
    float *l        = logits + (int64_t)n * ldl;
    const int64_t t = pos ? (int64_t)*pos : t_host;

    if (sp.top_k == 1) { /* greedy: first index of the max, no randomness */
        float m = -INFINITY;
        for (int j = tid; j < V; j += blockDim.x)
            m = fmaxf(m, l[j]);
        m = jb_block_max(m, red);
        if (tid == 0) chosen = V;
        __syncthreads();
        for (int j = tid; j < V; j += blockDim.x)
            if (l[j] == m) atomicMin(&chosen, j);
        __syncthreads();
        if (tid == 0) {
            const int j = chosen < V ? chosen : 0; /* NaN logits: nothing compares equal */
            tokens[n]   = j;
            if (seq) seq[(int64_t)n * ld_seq + t] = j;
        }
        return;
    }

    for (int j = tid; j < V; j += blockDim.x)
        l[j] = l[j] / sp.temp;
    __syncthreads();

    if (sp.top_k > 0 || sp.top_p > 0.0f) {
        for (int j = tid; j < P; j += blockDim.x) {
            key[j] = j < V ? l[j] : -INFINITY;
            idx[j] = j;
        }
        __syncthreads();
        for (int size = 2; size <= P; size <<= 1) {
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int i = tid; i < P; i += blockDim.x) {
                    const int jx = i ^ stride;
                    if (jx > i) {
                        const bool up = (i & size) == 0; /* this pair sorts "before" first */
                        const bool sw = up ? before(key[jx], idx[jx], key[i], idx[i])
                                           : before(key[i], idx[i], key[jx], idx[jx]);
                        if (sw) {
                            const float kt = key[i];
                            const int it   = idx[i];
                            key[i] = key[jx], idx[i] = idx[jx];
                            key[jx] = kt, idx[jx] = it;
                        }
                    }
                }
                __syncthreads();
            }
        }
        if (sp.top_k > 0) {
            const int k     = sp.top_k < V ? sp.top_k : V;
            const float tau = key[k - 1];
            for (int j = tid; j < V; j += blockDim.x)
                if (l[j] < tau) l[j] = -INFINITY;
        } else {
            /* keep sorted entry r while the mass of entries 0..r−1 is <= top_p. The sums run
             * in one thread in sorted order, as before; the exps and quotients (the same values
             * in any order) are spread over the block: one thread doing it all took ~230 us. */
            const float m = key[0];
            __syncthreads(); /* key[0] read by all before it is overwritten */
            for (int j = tid; j < V; j += blockDim.x) /* −0: a filtered entry (e >= +0) */
                key[j] = key[j] == -INFINITY ? -0.0f : expf(key[j] - m);
            __syncthreads();
            if (tid == 0) {
                double z = 0.0;
                for (int r = 0; r < V; r++)
                    z += (double)key[r]; /* + −0 leaves z as it is */
                target_sh = z;
            }
            __syncthreads();
            const double z = target_sh;
            for (int j = tid; j < V; j += blockDim.x)
                q[j] = key[j] == 0.0f && signbit(key[j]) ? 0.0 : (double)key[j] / z;
            __syncthreads();
            if (tid == 0) {
                double mass = 0.0;
                int r       = 0;
                while (r < V && mass <= (double)sp.top_p)
                    mass += q[r++];
                chosen = r;
            }
            __syncthreads();
            for (int r = chosen + tid; r < V; r += blockDim.x)
                l[idx[r]] = -INFINITY;
        }
        __syncthreads();
    }

    /* inverse CDF of softmax(ℓ) with one uniform */
    float m = -INFINITY;
    for (int j = tid; j < V; j += blockDim.x)
        m = fmaxf(m, l[j]);
    m            = jb_block_max(m, red);
    const int cs = (V + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int j0 = tid * cs, j1 = j0 + cs < V ? j0 + cs : V;
    double s = 0.0;
    for (int j = j0; j < j1; j++)
        s += l[j] == -INFINITY ? 0.0 : (double)expf(l[j] - m);
    part[tid] = s;
    __syncthreads();
    if (tid == 0) {
        double acc = 0.0; /* exclusive prefix, in thread order */
        for (int i = 0; i < SAMPLE_THREADS; i++) {
            const double v = part[i];
            part[i]        = acc;
            acc += v;
        }
        chosen         = -1;
        const double u = jb_rng_uniform53(sp.seed, sp.first_candidate + (uint64_t)n, (uint64_t)t);
        target_sh      = u * acc;
    }
    __syncthreads();
    const double target = target_sh;
    const double start  = part[tid];
    if (start <= target && start + s > target) {
        /* the walk sums in another order than s was (start + e0 + e1... vs start + (e0 + e1
         * ...)): if rounding keeps cum at or below the target, the chunk's last drawable entry
         * holds it, not the row's */
        double cum = start;
        int last   = -1;
        for (int j = j0; j < j1; j++) {
            if (l[j] == -INFINITY) continue;
            const double e = (double)expf(l[j] - m);
            if (e <= 0.0) continue;
            last = j;
            cum += e;
            if (cum > target) break;
        }
        chosen = last;
    }
    __syncthreads();
    if (tid == 0) {
        int j = chosen;
        if (j < 0) { /* rounding left the target at the very end: last drawable entry */
            for (j = V - 1; j > 0 && (l[j] == -INFINITY || expf(l[j] - m) <= 0.0f); j--)
                ;
        }
        tokens[n] = j;
        if (seq) seq[(int64_t)n * ld_seq + t] = j;
    }
}

extern "C" enum jb_status jb_cuda_sample(struct jb_cuda *cu,
                                         const struct jb_cuda_sample_params *sp,
                                         int N,
                                         int V,
                                         float *logits,
                                         int64_t ldl,
                                         const int32_t *pos,
                                         int64_t t_host,
                                         int32_t *tokens,
                                         int32_t *seq,
                                         int64_t ld_seq)
{
    if (N <= 0) return JB_STATUS_OK;
    if (V <= 0 || V > JB_CUDA_SAMPLE_MAX_VOCAB || !(sp->temp > 0.0f) || sp->top_k < 0 ||
        sp->top_p < 0.0f || sp->top_p > 1.0f || (sp->top_k > 0 && sp->top_p > 0.0f))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "cuda sample: vocab %d (max %d), temp %g, top_k %d, top_p %g",
                       V,
                       JB_CUDA_SAMPLE_MAX_VOCAB,
                       (double)sp->temp,
                       sp->top_k,
                       (double)sp->top_p);
    int P = 1;
    while (P < V)
        P <<= 1;
    const size_t smem =
      SAMPLE_THREADS * sizeof(double) +
      (size_t)P * (sizeof(float) + sizeof(int) + (sp->top_p > 0.0f ? sizeof(double) : 0));
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(
          sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    sample_kernel<<<(unsigned)N, SAMPLE_THREADS, smem, cu->stream>>>(
      *sp, V, P, logits, ldl, pos, t_host, tokens, seq, ld_seq);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}
