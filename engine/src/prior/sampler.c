/*
 * prior/sampler.c - the ancestral/primed sampling loops of jukebox-spec §5.3: priming chunks,
 * then one position at a time through jb_prior_step_sample (the draw is a backend op).
 *
 * The loops allocate nothing: logits, ids and drawn tokens live in the jb_prior_state.
 */
#include "prior/sampler.h"
#include "prior/prior_impl.h"

#include <math.h>
#include <string.h>

struct jb_sample_params jb_sample_params_default(void)
{
    return (struct jb_sample_params){ .temp = 1.0f, .chunk_size = 32 };
}

enum jb_status jb_sample_params_check(const struct jb_sample_params *sp)
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
    return JB_STATUS_OK;
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
    enum jb_status status = jb_sample_params_check(sp);
    if (status != JB_STATUS_OK) return status;
    const struct jb_sample_desc sd = { .temp            = sp->temp,
                                       .top_k           = sp->top_k,
                                       .top_p           = sp->top_p,
                                       .seed            = sp->seed,
                                       .first_candidate = sp->first_candidate };

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

    /* one position at a time: logits, draw, feed back. The backend may tune itself over the
     * steps of this loop kind (this prior with this many candidates). */
    const uintptr_t loop = (uintptr_t)p ^ ((uintptr_t)N << 1) ^ 1u;
    for (int t = P; t < sample_tokens; t++) {
        if (jb_should_stop(cb)) {
            status = jb_fail(JB_STATUS_ERR_CANCELLED, "sample: cancelled");
            break;
        }
        status = jb_prior_step_sample(st, out, ld, &sd, st->ids_host);
        if (status != JB_STATUS_OK) break;
        for (int n = 0; n < N; n++)
            out[n * ld + t] = st->ids_host[n];
        if (on_token) on_token(token_user, t, N, out, ld);
        jb_progress_report(cb, "sample", level, t + 1, sample_tokens, t_start);
        jb_backend_loop_step(p->be, loop);
    }
    jb_backend_loop_end(p->be);
    return status;
}
