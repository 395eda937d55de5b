/*
 * prior/attention.c - factorised attention over a KV cache (jukebox-spec §4.6, §5.2).
 *
 * Each layer keeps its keys and values per (candidate, head) in a layout chosen so that the key
 * set S(i) of any query position i is a contiguous run of slots (B = block_ctx, R = ceil(T/B)):
 *
 *   func  slot of position j            keys of query i                    capacity (§5.2)
 *   0     j                             slots [0, i]                       T
 *   1     j mod B                       slots [0, i mod B]                 B
 *   2     (j mod B)·R + j div B         column i mod B, rows [0, i div B]  T (R·B)
 *   3     ((j div B) mod 2)·B + j mod B the B slots of block i div B − 1   2B
 *   6     encoder position (set once)   all enc_len                        enc_len
 *   7     j, only while j < P'          slots [0, min(i, P'−1)]            P'
 *
 * so attention is a plain dot-product/softmax/weighted-sum over one contiguous run, with no
 * mask: the masked logits of the reference are −1e9 and get exactly zero weight, so leaving
 * them out gives the same probabilities. Keys are stored transposed per (candidate, head)
 * block ([hd][cap]) so that the scores of a run of keys come out of plain vector loops; values
 * are row-major ([cap][hd]). A query in block 0 of a func-3 layer has no keys: the
 * reference attends to B zero vectors, whose output is exactly zero, and so is ours.
 *
 * A chunk of new positions is handled in block-aligned segments for funcs 1 and 3 (store the
 * segment's keys, then answer its queries), so a ring slot is only overwritten after every
 * query that reads it has been answered; for the other funcs nothing is ever overwritten and
 * the whole chunk is stored first. Causality inside a chunk comes from the key counts above.
 * The full-sequence forward is this code with one chunk of T positions, i.e. blocked
 * attention: per-block problems for funcs 1 and 3, per-column problems for func 2.
 */
#include "prior/prior_impl.h"

#include "backend/cpu/pool.h"

#include <math.h>
#include <string.h>

int32_t jb_kv_cache_capacity(const struct jb_transformer *tr, int func)
{
    const int32_t B = tr->block_ctx, T = tr->seq_len;
    switch (func) {
    case 0:
        return T;
    case 1:
        return B;
    case 2:
        return ((T + B - 1) / B) * B;
    case 3:
        return 2 * B;
    case 6:
        return tr->enc_len;
    case 7:
        return tr->prime_len;
    default:
        return 0;
    }
}

int64_t jb_attention_max_keys(const struct jb_transformer *tr)
{
    int64_t m = 1;
    for (int d = 0; d < tr->depth; d++) {
        int f = tr->blocks[d].attn_func;
        int64_t n =
          f == 2 ? (tr->seq_len + tr->block_ctx - 1) / tr->block_ctx : jb_kv_cache_capacity(tr, f);
        if (n > m) m = n;
    }
    return m;
}

/* Slot of position j in the cache, or −1 when the layer does not keep it (func 7 past P'). */
static inline int64_t kv_slot(const struct jb_transformer *tr,
                              const struct jb_kv_cache *c,
                              int64_t j)
{
    const int64_t B = tr->block_ctx;
    switch (c->func) {
    case 0:
        return j;
    case 1:
        return j % B;
    case 2:
        return (j % B) * c->rows + j / B;
    case 3:
        return ((j / B) % 2) * B + j % B;
    case 7:
        return j < c->cap ? j : -1;
    default:
        return -1;
    }
}

/* Key set of query position i: slots [*first, *first + *n). */
static inline void key_range(const struct jb_transformer *tr,
                             const struct jb_kv_cache *c,
                             int64_t i,
                             int64_t *first,
                             int64_t *n)
{
    const int64_t B = tr->block_ctx;
    *first          = 0;
    switch (c->func) {
    case 0:
        *n = i + 1;
        break;
    case 1:
        *n = i % B + 1;
        break;
    case 2:
        *first = (i % B) * c->rows;
        *n     = i / B + 1;
        break;
    case 3:
        *first = ((i / B + 1) % 2) * B; /* block i/B − 1 */
        *n     = i / B >= 1 ? B : 0;
        break;
    case 6:
        *n = c->cap;
        break;
    case 7:
        *n = i + 1 < c->cap ? i + 1 : c->cap;
        break;
    default:
        *n = 0;
        break;
    }
}

/* The kernel below is built for several ISA levels (the engine targets x86-64-v2; the
 * dispatch picks AVX-512 / AVX2 at load time through an ifunc). */
#if defined(__x86_64__) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define JB_ATTN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JB_ATTN_CLONES
#endif

/* GCC only vectorises the selects of the exp below when it may assume that floating-point
 * operations do not trap (they don't here: the engine never enables FP exceptions); clang
 * already assumes so. */
#if defined(__GNUC__) && !defined(__clang__)
#define JB_NO_TRAPPING_MATH __attribute__((optimize("no-trapping-math")))
#else
#define JB_NO_TRAPPING_MATH
#endif

JB_ATTN_CLONES JB_NO_TRAPPING_MATH static float exp_shift_sum(float *restrict s,
                                                              int64_t n,
                                                              float m,
                                                              union jb_f32_bits *restrict u)
{
    /* e^x = 2^k · e^r with k = round(x / ln 2), r = x − k·ln 2 (in two parts), |r| ≤ ln2 / 2 */
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        const float x  = s[j] - m;
        const float xc = x > -87.3f ? x : -87.3f;               /* 2^k stays normal */
        const float kb = xc * 1.44269504088896341f + 0x1.8p23f; /* k in the low bits */
        const float k  = kb - 0x1.8p23f;
        const float r  = (xc - k * 0.693359375f) + k * 2.12194440e-4f;
        float p        = 1.9875691500e-4f;
        p              = p * r + 1.3981999507e-3f;
        p              = p * r + 8.3334519073e-3f;
        p              = p * r + 4.1665795894e-2f;
        p              = p * r + 1.6666665459e-1f;
        p              = p * r + 5.0000001201e-1f;
        p              = p * (r * r) + r + 1.0f;
        s[j]           = x >= -87.3f ? p : 0.0f; /* 0 for −∞ and what would underflow */
        u[j].f         = kb;
    }
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        u[j].i = (u[j].i - 0x4B400000 + 127) << 23; /* 2^k */
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
float jb_exp_shift_sum(float *s, int64_t n, float m, union jb_f32_bits *u)
{
    return exp_shift_sum(s, n, m, u);
}

/* o[hd] = softmax_j(scale·(q·k_j)) · V over nk contiguous slots; s: 2·nk words of scratch.
 * kt is the head's transposed key block (kt[c·ldk + j] = component c of key j), so the scores
 * are accumulated across keys in vector lanes, with no horizontal sums; v is row-major. Scale
 * after the dot product and an fp32 softmax, as the reference in eval mode. */
JB_ATTN_CLONES
static void attend_one(const float *restrict q,
                       const float *restrict kt,
                       int64_t ldk,
                       const float *restrict v,
                       int64_t nk,
                       int hd,
                       float scale,
                       float *restrict o,
                       float *restrict s)
{
    if (nk == 0) { /* func 3 in block 0: B zero keys/values -> zero output */
        memset(o, 0, (size_t)hd * sizeof *o);
        return;
    }
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

    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (j = 0; j < nk; j++) {
        s[j] *= scale;
        m = s[j] > m ? s[j] : m;
    }
    const float inv = 1.0f / exp_shift_sum(s, nk, m, (union jb_f32_bits *)(s + nk));

    memset(o, 0, (size_t)hd * sizeof *o);
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

/* Offsets of the (candidate, head) blocks: keys transposed [hd][cap], values [cap][hd]. */
static inline size_t block_off(const struct jb_kv_cache *c, int H, int hd, int n, int h)
{
    return ((size_t)n * (size_t)H + (size_t)h) * (size_t)c->cap * (size_t)hd;
}

/* Writes one key and one value (hd floats each) into slot `slot` of block (n, h). */
static inline void put_kv(struct jb_kv_cache *c,
                          int H,
                          int hd,
                          int n,
                          int h,
                          int64_t slot,
                          const float *k,
                          const float *v)
{
    float *kt = c->k + block_off(c, H, hd, n, h) + slot;
    for (int i = 0; i < hd; i++)
        kt[(int64_t)i * c->cap] = k[i];
    memcpy(c->v + block_off(c, H, hd, n, h) + (size_t)slot * (size_t)hd, v, (size_t)hd * sizeof *v);
}

/* Copies the keys/values of chunk rows [r0, r1) into their slots. */
static void store_kv(const struct jb_transformer *tr,
                     struct jb_kv_cache *c,
                     int N,
                     int C,
                     int64_t S,
                     int r0,
                     int r1,
                     const float *qkv)
{
    const int H = tr->heads, hd = tr->head_dim, ns = tr->n_state;
    const int64_t ld = 3 * (int64_t)ns;
    for (int n = 0; n < N; n++) {
        for (int r = r0; r < r1; r++) {
            const int64_t slot = kv_slot(tr, c, S + r);
            if (slot < 0) continue;
            const float *row = qkv + ((int64_t)n * C + r) * ld;
            for (int h = 0; h < H; h++)
                put_kv(
                  c, H, hd, n, h, slot, row + ns + (int64_t)h * hd, row + 2 * ns + (int64_t)h * hd);
        }
    }
}

/* One query: candidate n, chunk row r, head h. */
static inline void attend_item(const struct jb_transformer *tr,
                               const struct jb_kv_cache *c,
                               int C,
                               int64_t S,
                               int n,
                               int r,
                               int h,
                               const float *q,
                               int64_t ldq,
                               float *att,
                               float *scratch)
{
    const int H = tr->heads, hd = tr->head_dim, ns = tr->n_state;
    int64_t k0, nk;
    key_range(tr, c, S + r, &k0, &nk);
    const size_t off = block_off(c, H, hd, n, h);
    attend_one(q + ((int64_t)n * C + r) * ldq + (int64_t)h * hd,
               c->k + off + k0,
               c->cap,
               c->v + off + (size_t)k0 * (size_t)hd,
               nk,
               hd,
               tr->scale,
               att + ((int64_t)n * C + r) * ns + (int64_t)h * hd,
               scratch);
}

struct attend_task {
    const struct jb_transformer *tr;
    const struct jb_kv_cache *c;
    struct jb_transformer_state *ts;
    int C;
    int64_t S;
    int r0, nr;
    const float *q;
    int64_t ldq;
    float *att;
};

static void attend_items(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct attend_task *t = arg;
    const int H                 = t->tr->heads;
    float *scratch              = t->ts->scratch + (int64_t)slot * t->ts->scratch_len;
    for (int64_t it = i0; it < i1; it++) {
        const int h = (int)(it % H);
        const int r = t->r0 + (int)((it / H) % t->nr);
        const int n = (int)(it / ((int64_t)H * t->nr));
        attend_item(t->tr, t->c, t->C, t->S, n, r, h, t->q, t->ldq, t->att, scratch);
    }
}

/* Answers the queries of chunk rows [r0, r1) for every candidate and head. */
static void attend_rows(const struct jb_transformer *tr,
                        const struct jb_kv_cache *c,
                        struct jb_transformer_state *ts,
                        int C,
                        int64_t S,
                        int r0,
                        int r1,
                        const float *q,
                        int64_t ldq,
                        float *att)
{
    const int N = ts->n_batch, H = tr->heads, hd = tr->head_dim;
    const int nr          = r1 - r0;
    const int64_t n_items = (int64_t)N * nr * H;

    /* Threads only pay off for real work (long contexts or big chunks); for one token of a small
     * model the pool is not even asked (it would run the loop inline anyway). */
    int64_t first, nk_max;
    key_range(tr, c, S + r1 - 1, &first, &nk_max);
    const int nt = ts->n_threads;
    if (nt <= 1 || n_items <= 1 || n_items * (nk_max + 1) * hd < (1 << 17)) {
        for (int n = 0; n < N; n++)
            for (int r = r0; r < r1; r++)
                for (int h = 0; h < H; h++)
                    attend_item(tr, c, C, S, n, r, h, q, ldq, att, ts->scratch);
        return;
    }
    struct attend_task t = { tr, c, ts, C, S, r0, nr, q, ldq, att };
    jb_pool_for_work(
      ts->pool, n_items, 1, 2.0 * (double)n_items * (double)(nk_max + 1) * hd, attend_items, &t);
}

void jb_attention_set_encoder(const struct jb_transformer *tr,
                              struct jb_kv_cache *c,
                              int n_batch,
                              const float *kv)
{
    const int H = tr->heads, hd = tr->head_dim, ns = tr->n_state;
    for (int n = 0; n < n_batch; n++) {
        for (int j = 0; j < c->cap; j++) {
            const float *row = kv + ((int64_t)n * c->cap + j) * 2 * ns;
            for (int h = 0; h < H; h++)
                put_kv(c, H, hd, n, h, j, row + (int64_t)h * hd, row + ns + (int64_t)h * hd);
        }
    }
}

void jb_attention_chunk(const struct jb_transformer *tr,
                        struct jb_kv_cache *c,
                        struct jb_transformer_state *ts,
                        int64_t S,
                        int C,
                        const float *qkv,
                        float *att)
{
    const int N       = ts->n_batch;
    const int64_t B   = tr->block_ctx;
    const int64_t ldq = c->func == 6 ? tr->n_state : 3 * (int64_t)tr->n_state;

    switch (c->func) {
    case 1:
    case 3:
        /* block-aligned segments: a ring slot is reused only after its readers are done */
        for (int r0 = 0; r0 < C;) {
            int r1 = r0 + (int)(B - (S + r0) % B);
            if (r1 > C) r1 = C;
            store_kv(tr, c, N, C, S, r0, r1, qkv);
            attend_rows(tr, c, ts, C, S, r0, r1, qkv, ldq, att);
            r0 = r1;
        }
        break;
    case 6:
        attend_rows(tr, c, ts, C, S, 0, C, qkv, ldq, att);
        break;
    default:
        store_kv(tr, c, N, C, S, 0, C, qkv);
        attend_rows(tr, c, ts, C, S, 0, C, qkv, ldq, att);
        break;
    }
}
