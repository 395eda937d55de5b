/*
 * backend/cpu/cpu_sample.c - the sampling step (jukebox-spec §5.4) on the CPU: temperature,
 * top-k, top-p and an inverse-CDF draw with the counter-based uniform of backend/ops.h, one
 * candidate per pool task, each with its own slot of the arena as filter scratch.
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/pool.h"

#include <math.h>
#include <string.h>

struct draw_mem {
    float *val;              /* [V] selection copy / exp values */
    int32_t *idx;            /* [V] top-p heap */
    union jb_f32_bits *bits; /* [V] scratch of jb_cpu_exp_shift_sum */
};

static float max_value(const float *x, int64_t n)
{
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int64_t j = 1; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

/* First index of the largest value (the max is found vectorised, then its first position). */
static int32_t argmax(const float *x, int64_t n)
{
    const float m = max_value(x, n);
    for (int64_t j = 0; j < n; j++)
        if (x[j] == m) return (int32_t)j;
    return 0; /* NaN logits: nothing compares equal */
}

/* The k-th largest of a[0..n) (1 ≤ k ≤ n), reordering a (quickselect, Hoare partition). */
static float kth_largest(float *a, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        const float pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot)
                i++;
            while (a[j] < pivot)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i]    = a[j];
                a[j]    = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break; /* a[want] equals the pivot */
    }
    return a[want];
}

/* Max-heap of indices ordered by x. */
static void heap_sift(int32_t *h, int64_t n, int64_t i, const float *x)
{
    for (;;) {
        int64_t l = 2 * i + 1, best = i;
        if (l < n && x[h[l]] > x[h[best]]) best = l;
        if (l + 1 < n && x[h[l + 1]] > x[h[best]]) best = l + 1;
        if (best == i) return;
        int32_t t = h[i];
        h[i]      = h[best];
        h[best]   = t;
        i         = best;
    }
}

/* Nucleus filter: walk the logits in descending order, keep entry r while the probability mass
 * of entries 0..r−1 is ≤ top_p, set everything after to −∞. */
static void top_p_filter(const struct draw_mem *m, float top_p, float *l, int64_t V)
{
    const float mx = max_value(l, V);
    memcpy(m->val, l, (size_t)V * sizeof *l);
    const double z = jb_cpu_exp_shift_sum(m->val, V, mx, m->bits);
    int32_t *h     = m->idx;
    int64_t n      = V;
    for (int64_t j = 0; j < V; j++)
        h[j] = (int32_t)j;
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        heap_sift(h, n, i, l);
    double before = 0.0;
    while (n > 0 && before <= (double)top_p) {
        const int32_t j = h[0];
        h[0]            = h[--n];
        heap_sift(h, n, 0, l);
        before += (double)m->val[j] / z;
    }
    for (int64_t i = 0; i < n; i++)
        l[h[i]] = -INFINITY; /* what is left in the heap */
}

static int32_t draw(const struct jb_sample_desc *sp,
                    const struct draw_mem *m,
                    float *logits,
                    int64_t V,
                    double u)
{
    if (sp->top_k == 1) return argmax(logits, V); /* greedy: exact, no randomness */

    const float temp = sp->temp;
#pragma omp simd
    for (int64_t j = 0; j < V; j++)
        logits[j] = logits[j] / temp;
    if (sp->top_k > 0) {
        const int64_t k = sp->top_k < V ? sp->top_k : V;
        memcpy(m->val, logits, (size_t)V * sizeof *logits);
        const float tau = kth_largest(m->val, V, k);
        for (int64_t j = 0; j < V; j++)
            if (logits[j] < tau) logits[j] = -INFINITY;
    }
    if (sp->top_p > 0.0f) top_p_filter(m, sp->top_p, logits, V);

    /* inverse CDF of softmax(logits) with one uniform */
    memcpy(m->val, logits, (size_t)V * sizeof *logits);
    const double total  = jb_cpu_exp_shift_sum(m->val, V, max_value(logits, V), m->bits);
    const double target = u * total;
    double cum          = 0.0;
    int32_t last        = 0;
    for (int64_t j = 0; j < V; j++) {
        if (m->val[j] <= 0.0f) continue;
        cum += (double)m->val[j];
        last = (int32_t)j;
        if (cum > target) return (int32_t)j;
    }
    return last; /* rounding left target at the very end */
}

struct sample_job {
    struct jb_cpu *cpu;
    const struct jb_sample_desc *sp;
    int64_t V, ldl, t;
    float *logits;
    int32_t *tokens;
};

static void sample_range(void *arg, int64_t n0, int64_t n1, int slot)
{
    const struct sample_job *j = arg;
    float *mem                 = j->cpu->arena + (size_t)slot * JB_CPU_ARENA_FLOATS;
    const int64_t V16          = (j->V + 15) & ~(int64_t)15;
    const struct draw_mem m = { mem, (int32_t *)(mem + V16), (union jb_f32_bits *)(mem + 2 * V16) };
    for (int64_t n = n0; n < n1; n++) {
        const uint64_t stream = (uint64_t)j->sp->first_candidate + (uint64_t)n;
        const double u        = jb_rng_u01(j->sp->seed, stream, (uint64_t)j->t);
        j->tokens[n]          = draw(j->sp, &m, j->logits + n * j->ldl, j->V, u);
    }
}

void jb_cpu_op_sample(struct jb_cpu *cpu,
                      const struct jb_sample_desc *sp,
                      int N,
                      int64_t V,
                      float *logits,
                      int64_t ldl,
                      int64_t t,
                      int32_t *tokens)
{
    JB_ASSERT(3 * ((V + 15) & ~(int64_t)15) <= (int64_t)JB_CPU_ARENA_FLOATS);
    struct sample_job job = { cpu, sp, V, ldl, t, logits, tokens };
    /* a draw is cheap next to the step that made the logits: several candidates per task */
    jb_pool_for(cpu->pool, N, V >= 4096 ? 1 : N, sample_range, &job);
}

void jb_cpu_op_sample_at(struct jb_cpu *cpu,
                         const struct jb_sample_desc *sp,
                         int N,
                         int64_t V,
                         float *logits,
                         int64_t ldl,
                         const int32_t *pos,
                         int32_t *tokens)
{
    jb_cpu_op_sample(cpu, sp, N, V, logits, ldl, (int64_t)pos[0], tokens);
}
