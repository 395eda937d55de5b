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

/* Reads back the tokens of positions t0..t1−1 into out, then runs the per-token callbacks in
 * order, as if each had come right after its draw. */
static enum jb_status deliver(struct jb_prior_state *st,
                              int64_t t0,
                              int64_t t1,
                              int32_t *out,
                              int64_t ld,
                              const struct jb_callbacks *cb,
                              jb_prior_token_fn on_token,
                              void *token_user,
                              int64_t total,
                              double t_start)
{
    enum jb_status s = jb_prior_state_drawn(st, t0, t1, out + t0, ld);
    if (s != JB_STATUS_OK) return s;
    for (int64_t t = t0; t < t1; t++) {
        if (on_token) on_token(token_user, t, st->n_batch, out, ld);
        jb_progress_report(cb, "sample", st->p->hp.level, t + 1, total, t_start);
    }
    return JB_STATUS_OK;
}

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

    /* one position at a time: logits, draw, fed back on the backend; the tokens come back to
     * out (and the callbacks run) every `batch` positions, and before any return. The backend
     * may tune itself over the steps of this loop kind (this prior with this many candidates). */
    const uintptr_t loop = (uintptr_t)p ^ ((uintptr_t)N << 1) ^ 1u;
    const int batch      = jb_prior_state_token_batch(st); /* 32 on a GPU, else 1 */
    int64_t t_read       = P;     /* first position whose tokens are not in out yet */
    bool failed          = false; /* the device failed: nothing more to read back */
    for (int t = P; t < sample_tokens; t++) {
        if (jb_should_stop(cb)) {
            status = jb_fail(JB_STATUS_ERR_CANCELLED, "sample: cancelled");
            break;
        }
        status = jb_prior_step_draw(st, out, ld, &sd);
        if (status != JB_STATUS_OK) {
            failed = true;
            break;
        }
        if (t + 1 - t_read >= batch) {
            status =
              deliver(st, t_read, t + 1, out, ld, cb, on_token, token_user, sample_tokens, t_start);
            if (status != JB_STATUS_OK) {
                failed = true;
                break;
            }
            t_read = t + 1;
        }
        jb_backend_loop_step(p->be, loop, N); /* a step could run its candidates apart */
    }
    jb_backend_loop_end(p->be);
    if (failed) return status;
    if (t_read < jb_prior_state_pos(st)) { /* the last partial batch, or what ran before a stop */
        const enum jb_status s = deliver(st,
                                         t_read,
                                         jb_prior_state_pos(st),
                                         out,
                                         ld,
                                         cb,
                                         on_token,
                                         token_user,
                                         sample_tokens,
                                         t_start);
        if (s != JB_STATUS_OK) return s;
    }
    return status;
}
