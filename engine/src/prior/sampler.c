/*
 * prior/sampler.c - token draws (temperature, top-k, top-p, inverse CDF) with per-candidate
 * xoshiro256** streams, and the ancestral/primed sampling loops of jukebox-spec §5.3-5.4.
 *
 * The loops allocate nothing: the logits row, the generators and the filter scratch live in
 * the jb_prior_state (reserved by jb_prior_state_init).
 */
#include "prior/sampler.h"
#include "prior/prior_impl.h"

#include <math.h>
#include <string.h>

struct jb_sampler {
    int n_batch, vocab;
    struct jb_sample_params sp;
    struct jb_rng *rng;      /* [n_batch] */
    float *val;              /* [vocab] scratch: selection copy / exp values */
    int32_t *idx;            /* [vocab] scratch: top-p heap */
    union jb_f32_bits *bits; /* [vocab] scratch of jb_exp_shift_sum */
};

struct jb_sample_params jb_sample_params_default(void)
{
    return (struct jb_sample_params){ .temp = 1.0f, .chunk_size = 32 };
}

/* ---- xoshiro256** and splitmix64 (public-domain reference algorithms) -------------------- */

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t jb_rng_next(struct jb_rng *rng)
{
    uint64_t *s      = rng->s;
    const uint64_t r = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Advances by 2^128 calls of next(): the start of the next non-overlapping stream. */
static void rng_jump(struct jb_rng *rng)
{
    static const uint64_t jump[4] = {
        0x180ec6d33cfd0abaULL, 0xd5a61266f0c9392cULL, 0xa9582618e03fc9aaULL, 0x39abdc4529b1661cULL
    };
    uint64_t t[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 4; i++) {
        for (int b = 0; b < 64; b++) {
            if (jump[i] & (UINT64_C(1) << b))
                for (int k = 0; k < 4; k++)
                    t[k] ^= rng->s[k];
            jb_rng_next(rng);
        }
    }
    memcpy(rng->s, t, sizeof t);
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void jb_rng_seed(struct jb_rng *rng, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed;
    for (int k = 0; k < 4; k++)
        rng->s[k] = splitmix64(&x);
    for (uint64_t i = 0; i < stream; i++)
        rng_jump(rng);
}

double jb_rng_uniform(struct jb_rng *rng)
{
    return (double)(jb_rng_next(rng) >> 11) * 0x1.0p-53;
}

/* ---- sampler object ----------------------------------------------------------------------- */

struct jb_sampler *jb_sampler_init(int n_batch, int vocab)
{
    if (n_batch <= 0 || vocab <= 0) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "sampler: %d candidates, vocab %d", n_batch, vocab);
        return NULL;
    }
    struct jb_sampler *s = jb_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_batch = n_batch;
    s->vocab   = vocab;
    s->sp      = jb_sample_params_default();
    s->rng     = jb_calloc((size_t)n_batch, sizeof *s->rng);
    s->val     = jb_calloc((size_t)vocab, sizeof *s->val);
    s->idx     = jb_calloc((size_t)vocab, sizeof *s->idx);
    s->bits    = jb_calloc((size_t)vocab, sizeof *s->bits);
    if (!s->rng || !s->val || !s->idx || !s->bits) {
        jb_sampler_free(s);
        return NULL;
    }
    return s;
}

void jb_sampler_free(struct jb_sampler *s)
{
    if (!s) return;
    free(s->rng);
    free(s->val);
    free(s->idx);
    free(s->bits);
    free(s);
}

enum jb_status jb_sampler_reset(struct jb_sampler *s, const struct jb_sample_params *sp)
{
    if (!(sp->temp > 0.0f) || !isfinite(sp->temp) || sp->top_k < 0 || !(sp->top_p >= 0.0f) ||
        sp->top_p > 1.0f || sp->chunk_size < 0 || sp->first_candidate < 0)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "sampler: bad parameters (temp %g, top_k %d, top_p %g, chunk %d)",
                       (double)sp->temp,
                       sp->top_k,
                       (double)sp->top_p,
                       sp->chunk_size);
    if (sp->top_k > 0 && sp->top_p > 0.0f)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "sampler: top_k and top_p are exclusive");
    s->sp = *sp;
    for (int n = 0; n < s->n_batch; n++)
        jb_rng_seed(&s->rng[n], sp->seed, (uint64_t)sp->first_candidate + (uint64_t)n);
    return JB_STATUS_OK;
}

/* ---- filters ------------------------------------------------------------------------------ */

static float max_value(const float *x, int n)
{
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int j = 1; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

/* First index of the largest value (the max is found vectorised, then its first position). */
static int32_t argmax(const float *x, int n)
{
    const float m = max_value(x, n);
    for (int j = 0; j < n; j++)
        if (x[j] == m) return j;
    return 0; /* NaN logits: nothing compares equal */
}

/* The k-th largest of a[0..n) (1 ≤ k ≤ n), reordering a (quickselect, Hoare partition). */
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        const float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
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
static void heap_sift(int32_t *h, int n, int i, const float *x)
{
    for (;;) {
        int l = 2 * i + 1, best = i;
        if (l < n && x[h[l]] > x[h[best]]) best = l;
        if (l + 1 < n && x[h[l + 1]] > x[h[best]]) best = l + 1;
        if (best == i) return;
        int32_t t = h[i];
        h[i]      = h[best];
        h[best]   = t;
        i         = best;
    }
}

/* Nucleus filter (§5.4 step 3): walk the logits in descending order, keep entry r while the
 * probability mass of entries 0..r−1 is ≤ top_p, set everything after to −∞. */
static void top_p_filter(struct jb_sampler *s, float *l)
{
    const int V   = s->vocab;
    const float m = max_value(l, V);
    memcpy(s->val, l, (size_t)V * sizeof *l);
    const double z = jb_exp_shift_sum(s->val, V, m, s->bits);
    int32_t *h     = s->idx;
    int n          = V;
    for (int j = 0; j < V; j++)
        h[j] = j;
    for (int i = n / 2 - 1; i >= 0; i--)
        heap_sift(h, n, i, l);
    double before = 0.0;
    while (n > 0 && before <= (double)s->sp.top_p) {
        const int32_t j = h[0];
        h[0]            = h[--n];
        heap_sift(h, n, 0, l);
        before += (double)s->val[j] / z;
    }
    for (int i = 0; i < n; i++)
        l[h[i]] = -INFINITY; /* what is left in the heap */
}

int32_t jb_sampler_draw(struct jb_sampler *s, int cand, float *logits)
{
    const int V                       = s->vocab;
    const struct jb_sample_params *sp = &s->sp;
    if (sp->top_k == 1) return argmax(logits, V); /* greedy: exact, no randomness */

    const float temp = sp->temp;
#pragma omp simd
    for (int j = 0; j < V; j++)
        logits[j] = logits[j] / temp;
    if (sp->top_k > 0) {
        const int k = sp->top_k < V ? sp->top_k : V;
        memcpy(s->val, logits, (size_t)V * sizeof *logits);
        const float tau = kth_largest(s->val, V, k);
        for (int j = 0; j < V; j++)
            if (logits[j] < tau) logits[j] = -INFINITY;
    }
    if (sp->top_p > 0.0f) top_p_filter(s, logits);

    /* inverse CDF of softmax(logits) with one uniform */
    memcpy(s->val, logits, (size_t)V * sizeof *logits);
    const double total  = jb_exp_shift_sum(s->val, V, max_value(logits, V), s->bits);
    const double target = jb_rng_uniform(&s->rng[cand]) * total;
    double cum          = 0.0;
    int32_t last        = 0;
    for (int j = 0; j < V; j++) {
        if (s->val[j] <= 0.0f) continue;
        cum += (double)s->val[j];
        last = j;
        if (cum > target) return j;
    }
    return last; /* rounding left target at the very end */
}

/* ---- sampling loop ------------------------------------------------------------------------ */

enum jb_status jb_prior_sample(struct jb_prior_state *st,
                               const int32_t *context,
                               int P,
                               int sample_tokens,
                               const struct jb_sample_params *sp,
                               int32_t *out,
                               const struct jb_callbacks *cb,
                               jb_prior_token_fn on_token,
                               void *token_user)
{
    struct jb_prior *p = st->p;
    const int N        = st->n_batch;
    const int64_t V = p->vocab, ld = sample_tokens;
    if (!sp || !out || sample_tokens < 1 || sample_tokens > p->seq_len || P < 0 ||
        P > sample_tokens || (P > 0 && !context))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "sample: %d context positions, %d tokens (window %d)",
                       P,
                       sample_tokens,
                       p->seq_len);
    if (P < p->prefix_len)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "sample: this prior needs its %d lyric ids as context (got %d)",
                       p->prefix_len,
                       P);
    for (int64_t i = 0; i < (int64_t)N * P; i++)
        if (context[i] < 0 || context[i] >= V)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "sample: context id %d out of range [0, %lld)",
                           context[i],
                           (long long)V);
    if (!st->x || !st->start_emb)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "sample: conditioning not set");
    enum jb_status status = jb_sampler_reset(st->sampler, sp);
    if (status != JB_STATUS_OK) return status;

    for (int n = 0; n < N && P > 0; n++)
        memcpy(out + n * ld, context + (int64_t)n * P, (size_t)P * sizeof *out);
    jb_prior_state_reset(st);
    const double t_start = jb_time_now();
    const int level      = p->hp.level;

    /* priming: the context in chunks (only the caches matter, no logits) */
    int chunk = sp->chunk_size > 0 ? sp->chunk_size : P;
    if (chunk > st->max_chunk) chunk = st->max_chunk;
    for (int a = 0; a < P;) {
        if (jb_should_stop(cb)) return jb_fail(JB_STATUS_ERR_CANCELLED, "sample: cancelled");
        const int C = P - a < chunk ? P - a : chunk;
        status      = jb_prior_step(st, C, out, ld, NULL);
        if (status != JB_STATUS_OK) return status;
        a += C;
        jb_progress_report(cb, "sample", level, a, sample_tokens, t_start);
    }

    /* one position at a time: logits, draw, feed back */
    for (int t = P; t < sample_tokens; t++) {
        if (jb_should_stop(cb)) return jb_fail(JB_STATUS_ERR_CANCELLED, "sample: cancelled");
        status = jb_prior_step(st, 1, out, ld, st->logits);
        if (status != JB_STATUS_OK) return status;
        for (int n = 0; n < N; n++)
            out[n * ld + t] = jb_sampler_draw(st->sampler, n, st->logits + n * V);
        if (on_token) on_token(token_user, t, N, out, ld);
        jb_progress_report(cb, "sample", level, t + 1, sample_tokens, t_start);
    }
    return JB_STATUS_OK;
}
