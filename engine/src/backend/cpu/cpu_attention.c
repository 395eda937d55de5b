/*
 * backend/cpu/cpu_attention.c - the KV-cache append and attention ops of every kind
 * (jukebox-spec §4.6, §5.2) on the CPU. Cache layouts and key sets: backend/ops.h.
 *
 * Keys are stored transposed per (candidate, head) block ([hd][cap]) so that the scores of a run
 * of keys come out of plain vector loops; values are row-major ([cap][hd]). The block kinds
 * (funcs 1-3) keep their keys row-major too, on this backend only (ops.h): their key runs are
 * short (at most B or R = T/B slots), and a transposed key spread its components over hd lines
 * 4·cap bytes apart (for func 2 in the upsamplers, 480 lines 32 KiB apart). Attention is then a
 * plain dot-product / softmax / weighted sum over one contiguous run of slots, with no mask: the
 * masked logits of the reference are −1e9 and get exactly zero weight, so leaving them out gives
 * the same probabilities. A query in block 0 of a func-3 layer has no keys: the reference attends
 * to B zero vectors, whose output is exactly zero, and so is ours.
 *
 * Half-precision caches (type F16) are read a block of keys at a time, converted to fp32 into the
 * thread's arena; every product and sum is fp32 in both cases.
 */
#include "backend/attn_keys.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/pool.h"

#include <math.h>
#include <string.h>

/* Slot of position j in the cache, or −1 when the layer does not keep it (func 7 past P'). */
static inline int64_t kv_slot(const struct jb_attn_desc *a, const struct jb_kv_cache *c, int64_t j)
{
    const int64_t B = a->block_ctx;
    switch (c->func) {
    case 0:
        return j;
    case 1:
        return j % B;
    case 2:
        return (j % B) * c->rows + j / B;
    case 3:
        return ((j / B) % 2) * B + j % B;
    case 6:
        return j < c->cap ? j : -1;
    case 7:
        return j < c->cap ? j : -1;
    default:
        return -1;
    }
}

/* Key set of query position i: slots [*first, *first + *n) (backend/attn_keys.h). */
static inline void key_range(const struct jb_attn_desc *a,
                             const struct jb_kv_cache *c,
                             int64_t i,
                             int64_t *first,
                             int64_t *n)
{
    jb_attn_key_range(c->func, a->block_ctx, c->rows, c->cap, i, first, n);
}

JB_CPU_CLONES JB_CPU_NO_TRAPPING_MATH static float exp_shift_sum(float *restrict s,
                                                                 int64_t n,
                                                                 float m,
                                                                 union jb_f32_bits *restrict u)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        const float x  = s[j] - m;
        const float xc = x > -87.3f ? x : -87.3f; /* 2^k stays normal */
        float kb;
        const float p = jb_cpu_exp_reduced(xc, &kb);
        s[j]          = x >= -87.3f ? p : 0.0f; /* 0 for −∞ and what would underflow */
        u[j].f        = kb;
    }
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        u[j].i = jb_cpu_exp2_bits(u[j].i); /* 2^k */
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        s[j] *= u[j].f;
        sum += s[j];
    }
    return sum;
}

/* The exported entry point is a plain function: clang 14 does not resolve calls from other
 * translation units to a target_clones function. */
float jb_cpu_exp_shift_sum(float *s, int64_t n, float m, union jb_f32_bits *u)
{
    return exp_shift_sum(s, n, m, u);
}

/* Keys converted per block of this many slots for half caches (hd·KBLK floats of the arena). */
#define KBLK 256

/* o[hd] = softmax_j(scale·(q·k_j)) · V over nk contiguous slots; s: 2·nk words of scratch.
 * kt is the head's transposed key block (kt[c·ldk + j] = component c of key j), so the scores
 * are accumulated across keys in vector lanes, with no horizontal sums; v is row-major. Scale
 * after the dot product and an fp32 softmax, as the reference in eval mode. */
JB_CPU_CLONES
static void scores_f32(const float *restrict q,
                       const float *restrict kt,
                       int64_t ldk,
                       int64_t nk,
                       int hd,
                       float *restrict s)
{
    int64_t j;
    int c = 0;
    for (j = 0; j < nk; j++)
        s[j] = 0.0f;
    for (; c + 4 <= hd; c += 4) {
        const float q0 = q[c], q1 = q[c + 1], q2 = q[c + 2], q3 = q[c + 3];
        const float *k0 = kt + c * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
#pragma omp simd
        for (j = 0; j < nk; j++)
            s[j] += (q0 * k0[j] + q1 * k1[j]) + (q2 * k2[j] + q3 * k3[j]);
    }
    for (; c < hd; c++) {
        const float qc  = q[c];
        const float *kc = kt + c * ldk;
#pragma omp simd
        for (j = 0; j < nk; j++)
            s[j] += qc * kc[j];
    }
}

/* s[j] = q·k_j over nk row-major keys (k_j at k + j·hd): 16 partial sums per key in a fixed
 * order, so every SIMD level adds the same way. */
JB_CPU_CLONES
static void scores_rows_f32(const float *restrict q,
                            const float *restrict k,
                            int64_t nk,
                            int hd,
                            float *restrict s)
{
    enum { L = 16 };
    const int hv = hd / L * L;
    for (int64_t j = 0; j < nk; j++) {
        const float *kj = k + j * hd;
        float acc[L]    = { 0 };
        for (int c0 = 0; c0 < hv; c0 += L) {
#pragma omp simd
            for (int l = 0; l < L; l++)
                acc[l] += q[c0 + l] * kj[c0 + l];
        }
        float tail = 0.0f;
        for (int c = hv; c < hd; c++)
            tail += q[c] * kj[c];
        for (int w = L / 2; w > 0; w /= 2)
            for (int l = 0; l < w; l++)
                acc[l] += acc[l + w];
        s[j] = acc[0] + tail;
    }
}

/* Keys of this cache row-major ([cap][hd] per block, as the values) rather than transposed. */
static inline bool keys_by_row(const struct jb_kv_cache *c)
{
    return c->func >= 1 && c->func <= 3;
}

JB_CPU_CLONES
static void weighted_sum_f32(const float *restrict s,
                             float inv,
                             const float *restrict v,
                             int64_t nk,
                             int hd,
                             float *restrict o)
{
    int64_t j;
    int c;
    for (j = 0; j + 4 <= nk; j += 4) {
        const float p0 = s[j] * inv, p1 = s[j + 1] * inv, p2 = s[j + 2] * inv, p3 = s[j + 3] * inv;
        const float *v0 = v + j * hd, *v1 = v0 + hd, *v2 = v1 + hd, *v3 = v2 + hd;
#pragma omp simd
        for (c = 0; c < hd; c++)
            o[c] += (p0 * v0[c] + p1 * v1[c]) + (p2 * v2[c] + p3 * v3[c]);
    }
    for (; j < nk; j++) {
        const float pj  = s[j] * inv;
        const float *vj = v + j * hd;
#pragma omp simd
        for (c = 0; c < hd; c++)
            o[c] += pj * vj[c];
    }
}

/* One query against nk slots starting at k0 of the (candidate, head) block at `off`. */
static void attend_one(const struct jb_cpu *cpu,
                       const struct jb_kv_cache *c,
                       size_t off,
                       int64_t k0,
                       int64_t nk,
                       const float *q,
                       int hd,
                       float scale,
                       float *o,
                       float *mem)
{
    memset(o, 0, (size_t)hd * sizeof *o);
    if (nk == 0) return; /* func 3 in block 0: B zero keys/values -> zero output */
    float *s             = mem;
    union jb_f32_bits *u = (union jb_f32_bits *)(mem + nk);
    float *blk           = mem + 2 * ((nk + 15) & ~(int64_t)15);
    const int64_t cap    = c->cap;
    if (keys_by_row(c) && c->type == JB_DTYPE_F32) {
        scores_rows_f32(q, (const float *)c->k + off + (size_t)k0 * (size_t)hd, nk, hd, s);
    } else if (keys_by_row(c)) {
        const uint16_t *k = (const uint16_t *)c->k + off + (size_t)k0 * (size_t)hd;
        for (int64_t j0 = 0; j0 < nk; j0 += KBLK) {
            const int64_t n = nk - j0 < KBLK ? nk - j0 : KBLK;
            jb_cpu_to_f32(cpu, JB_DTYPE_F16, k + j0 * hd, blk, n * hd);
            scores_rows_f32(q, blk, n, hd, s + j0);
        }
    } else if (c->type == JB_DTYPE_F32) {
        const float *kt = (const float *)c->k + off + k0;
        scores_f32(q, kt, cap, nk, hd, s);
    } else {
        const uint16_t *kt = (const uint16_t *)c->k + off + k0;
        for (int64_t j0 = 0; j0 < nk; j0 += KBLK) {
            const int64_t n = nk - j0 < KBLK ? nk - j0 : KBLK;
            for (int ch = 0; ch < hd; ch++)
                jb_cpu_to_f32(
                  cpu, JB_DTYPE_F16, kt + (int64_t)ch * cap + j0, blk + (int64_t)ch * n, n);
            scores_f32(q, blk, n, n, hd, s + j0);
        }
    }
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < nk; j++) {
        s[j] *= scale;
        m = s[j] > m ? s[j] : m;
    }
    const float inv = 1.0f / exp_shift_sum(s, nk, m, u);
    if (c->type == JB_DTYPE_F32) {
        weighted_sum_f32(s, inv, (const float *)c->v + off + (size_t)k0 * (size_t)hd, nk, hd, o);
    } else {
        const uint16_t *v = (const uint16_t *)c->v + off + (size_t)k0 * (size_t)hd;
        for (int64_t j0 = 0; j0 < nk; j0 += KBLK) {
            const int64_t n = nk - j0 < KBLK ? nk - j0 : KBLK;
            jb_cpu_to_f32(cpu, JB_DTYPE_F16, v + j0 * hd, blk, n * hd);
            weighted_sum_f32(s + j0, inv, blk, n, hd, o);
        }
    }
}

/* Offset of the (candidate, head) block: keys transposed [hd][cap], values [cap][hd]. */
static inline size_t block_off(const struct jb_kv_cache *c, int H, int hd, int n, int h)
{
    return ((size_t)n * (size_t)H + (size_t)h) * (size_t)c->cap * (size_t)hd;
}

/* n floats to fp16: F16C where the CPU has it, the same bits as the scalar conversion, whose
 * branches cost ~1.4 ns an element (timed alone): ~1.5 ms of a 4-candidate w1920d72 step with a
 * half cache (3840 values per layer and candidate). */
static void to_f16(const struct jb_cpu *cpu, const float *src, uint16_t *dst, int64_t n)
{
    if (cpu->isa >= JB_CPU_ISA_AVX2)
        jb_cpu_to_f16_avx2(src, dst, n);
    else
        jb_convert_from_f32(JB_DTYPE_F16, src, dst, (size_t)n);
}

/* A transposed key is written one component per cache line, each a miss once the token step's
 * weights have streamed through the caches (~10-50 ns, tens to a thousand units of
 * jb_cpu_team's work). That is latency, not bandwidth, so the append is shared over (candidate,
 * head, component chunk) items: two threads take about half the time of one. */
#define APPEND_COMPS 64            /* components of one item */
#define APPEND_WORK_PER_KEY 1024.0 /* work units of one strided key write */

/* m contiguous components into a cache of fp32 or fp16 at element offset off */
static void store_run(const struct jb_cpu *cpu,
                      bool half,
                      void *base,
                      size_t off,
                      const float *src,
                      int m)
{
    if (half)
        to_f16(cpu, src, (uint16_t *)base + off, m);
    else
        memcpy((float *)base + off, src, (size_t)m * sizeof *src);
}

struct append_job {
    struct jb_cpu *cpu;
    const struct jb_attn_desc *a;
    struct jb_kv_cache *c;
    int C, r0, r1, n_chunks;
    int64_t S;
    const float *k, *v;
    int64_t ld;
};

static void append_items(void *arg, int64_t i0, int64_t i1, int slot_unused)
{
    (void)slot_unused;
    const struct append_job *j  = arg;
    const struct jb_kv_cache *c = j->c;
    const int H = j->a->heads, hd = j->a->head_dim;
    const bool half = c->type == JB_DTYPE_F16, by_row = keys_by_row(c);
    uint16_t kbuf[APPEND_COMPS]; /* a key's fp16 components, before they are spread out */
    for (int64_t it = i0; it < i1; it++) {
        const int ch = (int)(it % j->n_chunks);
        const int h  = (int)((it / j->n_chunks) % H);
        const int n  = (int)(it / ((int64_t)j->n_chunks * H));
        const int c0 = ch * APPEND_COMPS, m = hd - c0 < APPEND_COMPS ? hd - c0 : APPEND_COMPS;
        const size_t off = block_off(c, H, hd, n, h);
        for (int r = j->r0; r < j->r1; r++) {
            const int64_t slot = kv_slot(j->a, c, c->func == 6 ? r : j->S + r);
            if (slot < 0) continue;
            const float *kh   = j->k + ((int64_t)n * j->C + r) * j->ld + (int64_t)h * hd + c0;
            const float *vh   = j->v + ((int64_t)n * j->C + r) * j->ld + (int64_t)h * hd + c0;
            const size_t voff = off + (size_t)slot * (size_t)hd + (size_t)c0;
            store_run(j->cpu, half, c->v, voff, vh, m);
            if (by_row) { /* laid out as the values */
                store_run(j->cpu, half, c->k, voff, kh, m);
                continue;
            }
            const size_t koff = off + (size_t)c0 * (size_t)c->cap + (size_t)slot;
            if (half) {
                uint16_t *kt = (uint16_t *)c->k + koff;
                to_f16(j->cpu, kh, kbuf, m);
                for (int i = 0; i < m; i++)
                    kt[(int64_t)i * c->cap] = kbuf[i];
            } else {
                float *kt = (float *)c->k + koff;
                for (int i = 0; i < m; i++)
                    kt[(int64_t)i * c->cap] = kh[i];
            }
        }
    }
}

void jb_cpu_op_kv_append(struct jb_cpu *cpu,
                         const struct jb_attn_desc *a,
                         struct jb_kv_cache *c,
                         int N,
                         int C,
                         int64_t S,
                         int r0,
                         int r1,
                         const float *k,
                         const float *v,
                         int64_t ld)
{
    const int H = a->heads, hd = a->head_dim;
    if (r1 <= r0 || N <= 0) return;
    const int n_chunks    = (hd + APPEND_COMPS - 1) / APPEND_COMPS;
    struct append_job job = { cpu, a, c, C, r0, r1, n_chunks, S, k, v, ld };
    const int64_t n_items = (int64_t)N * H * n_chunks;
    const double per_key  = keys_by_row(c) ? 2.0 : APPEND_WORK_PER_KEY; /* a copy, or a miss */
    const double per_item = (double)(r1 - r0) * (hd < APPEND_COMPS ? hd : APPEND_COMPS);
    jb_cpu_for(cpu, n_items, per_item * per_key, append_items, &job);
}

struct attn_job {
    struct jb_cpu *cpu;
    const struct jb_attn_desc *a;
    const struct jb_kv_cache *c;
    int C, r0, nr;
    int64_t S;
    const float *q;
    int64_t ldq;
    float *out;
    int64_t ldo;
};

static void attend_items(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct attn_job *j = arg;
    const int H = j->a->heads, hd = j->a->head_dim;
    float *mem = j->cpu->arena + (size_t)slot * JB_CPU_ARENA_FLOATS;
    for (int64_t it = i0; it < i1; it++) {
        const int h = (int)(it % H);
        const int r = j->r0 + (int)((it / H) % j->nr);
        const int n = (int)(it / ((int64_t)H * j->nr));
        int64_t k0, nk;
        key_range(j->a, j->c, j->S + r, &k0, &nk);
        attend_one(j->cpu,
                   j->c,
                   block_off(j->c, H, hd, n, h),
                   k0,
                   nk,
                   j->q + ((int64_t)n * j->C + r) * j->ldq + (int64_t)h * hd,
                   hd,
                   j->a->scale,
                   j->out + ((int64_t)n * j->C + r) * j->ldo + (int64_t)h * hd,
                   mem);
    }
}

void jb_cpu_op_attention(struct jb_cpu *cpu,
                         const struct jb_attn_desc *a,
                         const struct jb_kv_cache *c,
                         int N,
                         int C,
                         int64_t S,
                         int r0,
                         int r1,
                         const float *q,
                         int64_t ldq,
                         float *out,
                         int64_t ldo)
{
    const int H = a->heads, hd = a->head_dim, nr = r1 - r0;
    if (nr <= 0 || N <= 0) return;
    const int64_t n_items = (int64_t)N * nr * H;
    /* memory of one item: 2 words per key + a converted key block for half caches */
    int64_t first, nk_max;
    key_range(a, c, S + r1 - 1, &first, &nk_max);
    JB_ASSERT(2 * ((nk_max + 15) & ~(int64_t)15) + (int64_t)hd * KBLK <=
              (int64_t)JB_CPU_ARENA_FLOATS);
    struct attn_job job = { cpu, a, c, C, r0, nr, S, q, ldq, out, ldo };
    /* one item per task when threads pay off (jb_cpu_team: long contexts, big chunks, or a
     * worker already awake in a token loop), else all on the caller without asking the pool;
     * the work hint lets the pool keep mid-sized ones on the caller too while its workers sleep */
    const int64_t work  = n_items * (nk_max + 1) * hd;
    const int64_t grain = jb_cpu_team(cpu, 2.0 * (double)work) > 1 ? 1 : n_items;
    jb_pool_for_work(cpu->pool, n_items, grain, 2.0 * (double)work, attend_items, &job);
}

/* ---- at a position in (host-readable) backend memory ---------------------------------------- */

void jb_cpu_op_kv_append_at(struct jb_cpu *cpu,
                            const struct jb_attn_desc *a,
                            struct jb_kv_cache *c,
                            int N,
                            const int32_t *pos,
                            const float *k,
                            const float *v,
                            int64_t ld)
{
    jb_cpu_op_kv_append(cpu, a, c, N, 1, (int64_t)pos[0], 0, 1, k, v, ld);
}

void jb_cpu_op_attention_at(struct jb_cpu *cpu,
                            const struct jb_attn_desc *a,
                            const struct jb_kv_cache *c,
                            int N,
                            const int32_t *pos,
                            const float *q,
                            int64_t ldq,
                            float *out,
                            int64_t ldo)
{
    jb_cpu_op_attention(cpu, a, c, N, 1, (int64_t)pos[0], 0, 1, q, ldq, out, ldo);
}
