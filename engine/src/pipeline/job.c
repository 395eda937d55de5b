/*
 * pipeline/job.c - the windowed sampling pipeline of jukebox/sample.py (jukebox-spec §6):
 * modes primed / ancestral / continue / upsample, the level loop (top level first), get_starts
 * and partial windows, per-window labels (get_y: offset, timing bins, lyric window), the
 * upsamplers' conditioning on the upper level's codes, batch slicing of the candidates, and
 * progressive decoding of every level as its codes become final.
 *
 * Memory: everything a level needs (prior states, conditioning, context and output rows,
 * window list, audio chunk, decode work memory, the lyric encoder's state inside the prior
 * state) is reserved once before its window loop; the loops allocate nothing (a ctest counts).
 *
 * Randomness: candidate c of window `start` at level L draws from the sampler's stream c of
 * the seed mix(seed, L, start), so a candidate's tokens do not depend on the batch slicing and
 * windows never share random numbers.
 */
#include "pipeline/pipeline.h"
#include "pipeline/schedule.h"

#include "labels/lyrics.h"
#include "prior/prior.h"
#include "prior/sampler.h"
#include "vqvae/vqvae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_TOTAL_SECONDS 180.0
#define PROGRESS_INTERVAL 0.05 /* seconds between throttled progress events */

/* ---------------------------------------------------------------------------------------- */
/* parameters                                                                                */

void jb_job_params_init(struct jb_job_params *p)
{
    memset(p, 0, sizeof *p);
    p->mode           = JB_JOB_PRIMED;
    p->take_candidate = -1;
    p->n_candidates   = 1;
    p->finest_level   = 0;
    for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
        p->temp[L] = 0.99f;
    /* sample.py's hop_fraction, indexed by level: hops of 4096, 4096, 1024 tokens (Appendix C) */
    p->hop_fraction[0] = 0.5f;
    p->hop_fraction[1] = 0.5f;
    p->hop_fraction[2] = 0.125f;
}

/* Everything a job needs to know before it starts, validated. */
struct resolved {
    enum jb_job_mode mode;
    int n_levels, top, finest, n_cand;
    int src_cand[JB_JOB_MAX_CANDIDATES]; /* take candidate of each new one (-1: none) */
    int64_t riff_samples, sample_length, total_length;
    int64_t total[JB_MAX_LEVELS]; /* tokens per candidate when done */
    int64_t known[JB_MAX_LEVELS]; /* tokens per candidate at the start */
    bool sample[JB_MAX_LEVELS];   /* the job samples this level */
    int64_t hop_tok[JB_MAX_LEVELS];
    int64_t n_windows[JB_MAX_LEVELS];
    struct jb_take_settings set;
    const char *artist, *genre, *lyrics; /* borrowed (params or take) */
    int32_t artist_id[JB_MAX_LEVELS];
    int32_t genre_ids[JB_MAX_LEVELS][JB_LABEL_MAX_GENRES];
    int32_t *lyric_full; /* top prior's tokenised lyrics (owned), NULL if none */
    size_t n_lyric_full;
};

static void resolved_free(struct resolved *r)
{
    free(r->lyric_full);
    r->lyric_full = NULL;
}

static bool is_5b_like(const struct jb_prior_hparams *hp)
{
    return hp->variant == JB_PRIOR_TOP || hp->variant == JB_PRIOR_TOP_LYRICS_ENC;
}

static enum jb_status check_take_fits(const struct jb_session *s, const struct jb_take *t)
{
    if (t->n_levels != s->n_levels)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: the take has %d levels, this model %d: it was made with another model",
                       t->n_levels,
                       s->n_levels);
    for (int L = 0; L < s->n_levels; L++)
        if (t->hop[L] != s->hop[L])
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: the take's level-%d hop is %d samples, this model's %d: it was "
                           "made with another model",
                           L,
                           t->hop[L],
                           s->hop[L]);
    if (t->bins > s->vqvae->vq_hp.l_bins)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: the take uses %d codes, this model's codebook has %d",
                       t->bins,
                       s->vqvae->vq_hp.l_bins);
    return JB_STATUS_OK;
}

static enum jb_status resolve_labels(const struct jb_session *s, struct resolved *r)
{
    for (int i = 0; i < s->n_levels; i++) {
        const int L                       = s->top - i; /* top first: its table is the user's */
        const struct jb_model *m          = s->prior[L];
        const struct jb_prior_hparams *hp = &m->prior_hp;
        const enum jb_label_version v     = jb_prior_label_version(hp);
        if (hp->max_bow_genre_size < 1 || hp->max_bow_genre_size > JB_LABEL_MAX_GENRES)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "job: level-%d prior has %d genre slots",
                           L,
                           hp->max_bow_genre_size);
        enum jb_status st =
          jb_labels_artist_id(m->artists, v, JB_LABEL_STRICT, r->artist, &r->artist_id[L]);
        if (!st)
            st = jb_labels_genre_ids(
              m->genres, v, JB_LABEL_STRICT, r->genre, hp->max_bow_genre_size, r->genre_ids[L]);
        if (!st && r->artist_id[L] >= hp->n_artists)
            st = jb_fail(JB_STATUS_ERR_MODEL,
                         "job: artist id %d is outside the level-%d prior's "
                         "%d embeddings",
                         r->artist_id[L],
                         L,
                         hp->n_artists);
        for (int g = 0; !st && g < hp->max_bow_genre_size; g++)
            if (r->genre_ids[L][g] >= hp->n_genres)
                st = jb_fail(JB_STATUS_ERR_MODEL,
                             "job: genre id %d is outside the level-%d "
                             "prior's %d embeddings",
                             r->genre_ids[L][g],
                             L,
                             hp->n_genres);
        if (st != JB_STATUS_OK) {
            if (L == s->top) return st;
            char why[900]; /* the check's own "job: " is said once, in front */
            const char *msg = jb_last_error();
            snprintf(why, sizeof why, "%s", strncmp(msg, "job: ", 5) ? msg : msg + 5);
            return jb_fail(st, "job: level-%d upsampler: %s", L, why);
        }
    }
    const struct jb_prior_hparams *top = &s->prior[s->top]->prior_hp;
    const size_t nl                    = strlen(r->lyrics);
    if (top->n_tokens == 0) {
        if (nl > 0)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: this model's top prior takes no lyrics (it would ignore them); "
                           "leave the lyrics out or use a lyrics model (5b_lyrics, 1b_lyrics)");
        return JB_STATUS_OK;
    }
    if (nl > JB_LYRICS_MAX_BYTES)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: lyrics are %zu bytes, the limit is %d",
                       nl,
                       JB_LYRICS_MAX_BYTES);
    return jb_lyrics_encode(
      jb_prior_label_version(top), r->lyrics, nl, &r->lyric_full, &r->n_lyric_full, NULL);
}

static int64_t seconds_to_samples(double seconds)
{
    return (int64_t)floor(seconds * JB_SAMPLE_RATE);
}

/* All checks of a job, before anything is allocated beyond the lyric tokens. */
static enum jb_status resolve(const struct jb_session *s,
                              const struct jb_job_params *p,
                              struct resolved *r)
{
    memset(r, 0, sizeof *r);
    if (!s || !p) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "job: session and params are required");
    const struct jb_prior_hparams *top_hp = &s->prior[s->top]->prior_hp;
    const int64_t top_hop                 = s->hop[s->top];
    r->mode                               = p->mode;
    r->n_levels                           = s->n_levels;
    r->top                                = s->top;
    if (p->mode < JB_JOB_PRIMED || p->mode > JB_JOB_UPSAMPLE)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "job: unknown mode %d", (int)p->mode);

    /* settings */
    struct jb_take_settings *set = &r->set;
    set->mode                    = p->mode;
    set->seed                    = p->seed;
    set->top_k                   = p->top_k;
    set->top_p                   = p->top_p;
    if (p->top_k < 0 || !(p->top_p >= 0.0f && p->top_p <= 1.0f) || (p->top_k > 0 && p->top_p > 0))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: top_k %d / top_p %g: top_k >= 0, top_p in [0, 1], not both",
                       p->top_k,
                       (double)p->top_p);
    for (int L = 0; L < s->n_levels; L++) {
        const struct jb_prior_hparams *hp = &s->prior[L]->prior_hp;
        if (!(p->temp[L] >= JB_JOB_MIN_TEMP && p->temp[L] <= JB_JOB_MAX_TEMP))
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: temperature %g at level %d, expected [%g, %g]",
                           (double)p->temp[L],
                           L,
                           (double)JB_JOB_MIN_TEMP,
                           (double)JB_JOB_MAX_TEMP);
        if (!(p->hop_fraction[L] > 0.0f && p->hop_fraction[L] <= 1.0f))
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: hop fraction %g at level %d, expected (0, 1]",
                           (double)p->hop_fraction[L],
                           L);
        if (p->chunk_size[L] < 0 || p->chunk_size[L] > hp->tr.seq_len)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: priming chunk %d at level %d, expected 0 (default) .. %d",
                           p->chunk_size[L],
                           L,
                           hp->tr.seq_len);
        if (p->max_batch[L] < 0 || p->max_batch[L] > JB_JOB_MAX_CANDIDATES)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: batch size %d at level %d, expected 0 (default) .. %d",
                           p->max_batch[L],
                           L,
                           JB_JOB_MAX_CANDIDATES);
        const bool big_top   = L == s->top && is_5b_like(hp);
        set->temp[L]         = p->temp[L];
        set->hop_fraction[L] = p->hop_fraction[L];
        set->chunk_size[L]   = p->chunk_size[L] ? p->chunk_size[L] : big_top ? 16 : 32;
        set->max_batch[L]    = p->max_batch[L] ? p->max_batch[L] : big_top ? 3 : 16;
        if (set->chunk_size[L] > hp->tr.seq_len) set->chunk_size[L] = hp->tr.seq_len;
        r->hop_tok[L] = jb_schedule_hop(hp->n_ctx, (double)p->hop_fraction[L]);
    }
    if (p->finest_level < 0 || p->finest_level > s->top)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: finest level %d, expected 0..%d",
                       p->finest_level,
                       s->top);
    r->finest = p->finest_level;

    /* source: riff, nothing, or a take */
    const struct jb_take *take = NULL;
    if (p->mode == JB_JOB_CONTINUE || p->mode == JB_JOB_UPSAMPLE) {
        take = p->take;
        if (!take) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "job: continue/upsample needs a take");
        enum jb_status st = check_take_fits(s, take);
        if (st) return st;
        if (p->take_candidate < -1 || p->take_candidate >= take->n_candidates)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: take candidate %d, the take has %d (0..%d, or -1 for all)",
                           p->take_candidate,
                           take->n_candidates,
                           take->n_candidates - 1);
        r->n_cand = p->take_candidate < 0 ? take->n_candidates : p->n_candidates;
    } else {
        r->n_cand = p->n_candidates;
    }
    if (r->n_cand < 1 || r->n_cand > JB_JOB_MAX_CANDIDATES)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: %d candidates, expected 1..%d",
                       r->n_cand,
                       JB_JOB_MAX_CANDIDATES);
    for (int c = 0; c < r->n_cand; c++)
        r->src_cand[c] = !take ? -1 : p->take_candidate < 0 ? c : p->take_candidate;

    const double max_s = top_hp->max_duration;
    if (p->mode != JB_JOB_UPSAMPLE && !(p->seconds > 0.0 && isfinite(p->seconds)))
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "job: seconds to add is %g, expected > 0", p->seconds);
    int64_t start_samples = 0; /* what the source covers */
    switch (p->mode) {
    case JB_JOB_PRIMED:
        if (!p->riff || p->riff_samples <= 0)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG, "job: the riff is empty");
        if ((double)p->riff_samples > max_s * JB_SAMPLE_RATE)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: the riff is %.1f s long, this model takes songs of at most %.0f s",
                           (double)p->riff_samples / JB_SAMPLE_RATE,
                           max_s);
        start_samples = jb_schedule_round(p->riff_samples, top_hop);
        if (start_samples == 0)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: the riff is %lld samples, shorter than one top-level code (%lld)",
                           (long long)p->riff_samples,
                           (long long)top_hop);
        r->riff_samples = start_samples;
        break;
    case JB_JOB_ANCESTRAL:
        break;
    case JB_JOB_CONTINUE:
    case JB_JOB_UPSAMPLE:
        start_samples   = take->n_tokens[s->top] * top_hop;
        r->riff_samples = take->riff_samples;
        break;
    }
    if (p->mode == JB_JOB_UPSAMPLE) {
        r->sample_length = start_samples;
    } else {
        if (p->seconds > max_s)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: %.1f s to add, this model takes songs of at most %.0f s",
                           p->seconds,
                           max_s);
        r->sample_length =
          jb_schedule_round(start_samples + seconds_to_samples(p->seconds), top_hop);
        if (r->sample_length <= start_samples)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: %g s adds no top-level code (one code is %.4f s)",
                           p->seconds,
                           (double)top_hop / JB_SAMPLE_RATE);
    }
    if ((double)r->sample_length > max_s * JB_SAMPLE_RATE)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: riff + new audio is %.1f s, this model takes songs of at most %.0f s "
                       "(add at most %.1f s)",
                       (double)r->sample_length / JB_SAMPLE_RATE,
                       max_s,
                       max_s - (double)start_samples / JB_SAMPLE_RATE);
    /* each upsampler needs one full window of upper codes (the reference asserts it for level
     * 1: sample_length // 32 >= 8192); required whether or not this job renders those levels,
     * so that the take can be upsampled later */
    int64_t need   = 0;
    int need_level = 0;
    for (int L = 0; L < s->top; L++) {
        const int64_t n = (int64_t)s->prior[L]->prior_hp.n_ctx * s->hop[L];
        if (n > need) need = n, need_level = L;
    }
    if (r->sample_length < need)
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG,
          "job: riff + new audio is %.2f s, this model needs at least %.2f s (one full "
          "level-%d window); ask for at least %.2f s",
          (double)r->sample_length / JB_SAMPLE_RATE,
          (double)need / JB_SAMPLE_RATE,
          need_level,
          (double)(need - start_samples) / JB_SAMPLE_RATE + 0.005);

    /* song length for the labels */
    const int64_t min_total = (int64_t)ceil(top_hp->min_duration * JB_SAMPLE_RATE);
    const int64_t max_total = (int64_t)floor(max_s * JB_SAMPLE_RATE);
    if (p->total_seconds < 0 || !isfinite(p->total_seconds))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "job: total length %g s", p->total_seconds);
    if (p->total_seconds > 0) {
        r->total_length = seconds_to_samples(p->total_seconds);
        if (r->total_length < r->sample_length)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: the song length %.1f s is shorter than riff + new audio (%.1f s)",
                           p->total_seconds,
                           (double)r->sample_length / JB_SAMPLE_RATE);
    } else {
        r->total_length = take ? take->total_length : seconds_to_samples(DEFAULT_TOTAL_SECONDS);
        if (r->total_length < r->sample_length) r->total_length = r->sample_length;
        if (r->total_length < min_total) r->total_length = min_total;
    }
    if (top_hp->timing && (r->total_length < min_total || r->total_length >= max_total))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: song length %.1f s is outside what this model accepts "
                       "[%.1f s, %.1f s)",
                       (double)r->total_length / JB_SAMPLE_RATE,
                       top_hp->min_duration,
                       max_s);

    /* levels: what is known, what is produced */
    for (int L = 0; L < s->n_levels; L++) {
        r->total[L] = r->sample_length / s->hop[L];
        if (p->mode == JB_JOB_PRIMED)
            r->known[L] = r->riff_samples / s->hop[L];
        else if (take)
            r->known[L] = take->n_tokens[L];
        const bool in_range =
          p->mode == JB_JOB_UPSAMPLE ? (L < s->top && L >= r->finest) : L >= r->finest;
        r->sample[L] = in_range && r->total[L] > r->known[L];
        if (!r->sample[L]) r->total[L] = r->known[L]; /* unsampled levels keep what they had */
        if (r->sample[L])
            r->n_windows[L] = jb_schedule_level(
              r->total[L], r->known[L], s->prior[L]->prior_hp.n_ctx, r->hop_tok[L], NULL, 0);
    }
    if (p->mode == JB_JOB_UPSAMPLE) {
        if (r->finest >= s->top)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: upsample needs a finest level below the top level (%d)",
                           s->top);
        /* a level can only be sampled when the one above covers the whole take */
        for (int L = s->top - 1; L >= r->finest; L--)
            if (r->sample[L + 1] == false &&
                take->n_tokens[L + 1] * s->hop[L + 1] < r->sample_length)
                return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                               "job: the take's level %d does not cover the take",
                               L + 1);
    }

    /* labels */
    r->artist = p->artist ? p->artist : take ? take->artist : "unknown";
    r->genre  = p->genre ? p->genre : take ? take->genre : "unknown";
    r->lyrics = p->lyrics ? p->lyrics : take ? take->lyrics : "";
    if (strlen(r->artist) > JB_LABEL_MAX_BYTES || strlen(r->genre) > JB_LABEL_MAX_BYTES)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: artist or genre longer than %d bytes",
                       JB_LABEL_MAX_BYTES);
    enum jb_status st = resolve_labels(s, r);
    if (st) resolved_free(r);
    return st;
}

enum jb_status jb_job_plan(const struct jb_session *s,
                           const struct jb_job_params *p,
                           struct jb_job_plan *plan)
{
    if (!plan) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_job_plan: plan is required");
    memset(plan, 0, sizeof *plan);
    struct resolved r;
    enum jb_status st = resolve(s, p, &r);
    if (st) return st;
    plan->sample_length = r.sample_length;
    plan->riff_samples  = r.riff_samples;
    plan->total_length  = r.total_length;
    plan->n_candidates  = r.n_cand;
    plan->top_level     = r.mode == JB_JOB_UPSAMPLE ? r.top - 1 : r.top;
    plan->finest_level  = r.finest;
    for (int L = 0; L < r.n_levels; L++) {
        plan->n_tokens[L]  = r.total[L];
        plan->n_new[L]     = r.sample[L] ? r.total[L] - r.known[L] : 0;
        plan->n_windows[L] = r.n_windows[L];
    }
    resolved_free(&r);
    return JB_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* the memory plan                                                                           */

/* Bytes sample_level reserves for level L with a batch of nb candidates (and a last slice of
 * n_rem): the prior states on the backend, plus on a backend whose buffers are host memory the
 * host-side conditioning arrays. */
static double level_plan(const struct jb_session *s,
                         const struct resolved *r,
                         int L,
                         int nb,
                         int n_rem,
                         bool host)
{
    const struct jb_model *m          = s->prior[L];
    const struct jb_prior_hparams *hp = &m->prior_hp;
    const int chunk                   = r->set.chunk_size[L];
    double b                          = jb_prior_state_plan_bytes(m->prior, nb, chunk, s->kv_type) +
               jb_prior_state_plan_bytes(m->prior, n_rem, chunk, s->kv_type);
    if (host) {
        const double T = hp->tr.seq_len, W = hp->tr.width;
        double f = nb * T * W + nb * W; /* x, start_emb */
        if (hp->variant == JB_PRIOR_TOP_LYRICS_ENC)
            f += (double)nb * jb_prior_enc_len(m->prior) * W;
        b += f * sizeof(float) + (2.0 * nb * T + (double)nb * hp->n_tokens) * sizeof(int32_t);
    }
    return b;
}

static void memory_plan(const struct jb_session *s,
                        const struct resolved *r,
                        struct jb_job_memory *m)
{
    memset(m, 0, sizeof *m);
    m->need_level = -1;
    size_t fr = 0, tot = 0;
    if (jb_backend_memory(s->backend, &fr, &tot) != JB_STATUS_OK) fr = tot = 0;
    m->backend_free  = (double)fr;
    m->backend_total = (double)tot;
    /* cuBLAS workspaces, a CUDA context, fragmentation, the rest of the process */
    const double margin = 0.02 * (double)tot > 268435456.0 ? 0.02 * (double)tot : 268435456.0;
    m->budget           = tot ? (double)fr - margin : INFINITY;
    if (s->memory_limit > 0 && s->memory_limit < m->budget) m->budget = s->memory_limit;
    if (m->budget < 0) m->budget = 0;
    const bool host = s->backend->iface->memory_is_host;
    for (int L = 0; L < r->n_levels; L++) {
        if (!r->sample[L]) continue;
        const int N = r->n_cand, Nb = N < r->set.max_batch[L] ? N : r->set.max_batch[L];
        const int n_rem     = N > Nb ? N % Nb : 0;
        m->batch[L]         = Nb;
        m->level_bytes[L]   = level_plan(s, r, L, Nb, n_rem, host);
        m->per_candidate[L] = level_plan(s, r, L, 2, 0, host) - level_plan(s, r, L, 1, 0, host);
        /* this level's prior comes back if it was offloaded; with offload the others leave */
        m->level_bytes[L] += jb_weights_placed_bytes(s->prior[L]->weights, false);
        for (int K = 0; K < s->n_levels && s->offload; K++)
            if (K != L) m->level_bytes[L] -= jb_weights_placed_bytes(s->prior[K]->weights, true);
        if (m->level_bytes[L] < 0) m->level_bytes[L] = 0;
        if (m->level_bytes[L] > m->need) {
            m->need       = m->level_bytes[L];
            m->need_level = L;
        }
    }
    m->max_batch_fit = JB_JOB_MAX_CANDIDATES;
    for (int L = 0; L < r->n_levels; L++) {
        if (!r->sample[L] || m->per_candidate[L] <= 0) continue;
        const double fixed = level_plan(s, r, L, 1, 0, host) - m->per_candidate[L];
        const double fit   = floor((m->budget - fixed) / m->per_candidate[L]);
        if (fit < m->max_batch_fit) m->max_batch_fit = fit > 0 ? (int)fit : 0;
    }
}

enum jb_status jb_job_memory(const struct jb_session *s,
                             const struct jb_job_params *p,
                             struct jb_job_memory *m)
{
    if (!m) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_job_memory: memory is required");
    memset(m, 0, sizeof *m);
    struct resolved r;
    enum jb_status st = resolve(s, p, &r);
    if (st) return st;
    memory_plan(s, &r, m);
    resolved_free(&r);
    return JB_STATUS_OK;
}

/* "812 KB", "3.4 MB", "12.50 GB" */
static const char *human(double bytes, char *buf, size_t n)
{
    if (bytes >= 1e9)
        snprintf(buf, n, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6)
        snprintf(buf, n, "%.1f MB", bytes / 1e6);
    else
        snprintf(buf, n, "%.0f KB", bytes / 1e3);
    return buf;
}

/* Refuses, before any work, a job whose largest level does not fit the budget. */
static enum jb_status check_memory(const struct jb_session *s, const struct resolved *r)
{
    struct jb_job_memory m;
    memory_plan(s, r, &m);
    if (m.need_level < 0 || m.need <= m.budget) return JB_STATUS_OK;
    const int L = m.need_level;
    char need[32], per[32], fixed[32], budget[32], fr[32], tot[32];
    return jb_fail(JB_STATUS_ERR_NOMEM,
                   "job does not fit in the memory of the %s backend: level %d needs %s (%d "
                   "candidate%s at once x %s + %s) but the job may use %s (%s free of %s%s); at "
                   "most %d candidate%s at once would fit (set max_batch%s)",
                   jb_backend_name(s->backend),
                   L,
                   human(m.need, need, sizeof need),
                   m.batch[L],
                   m.batch[L] == 1 ? "" : "s",
                   human(m.per_candidate[L], per, sizeof per),
                   human(m.need - m.batch[L] * m.per_candidate[L], fixed, sizeof fixed),
                   human(m.budget, budget, sizeof budget),
                   human(m.backend_free, fr, sizeof fr),
                   human(m.backend_total, tot, sizeof tot),
                   s->memory_limit > 0 ? ", capped by the session's memory limit" : "",
                   m.max_batch_fit,
                   m.max_batch_fit == 1 ? "" : "s",
                   m.max_batch_fit > 0 ? " or fewer candidates" : ": none does, even alone");
}

/* ---------------------------------------------------------------------------------------- */
/* the running job                                                                           */

struct job {
    struct jb_session *s;
    const struct jb_job_callbacks *cb;
    struct resolved *r;
    struct jb_take *take;      /* the result, filled in place */
    struct jb_callbacks inner; /* should_stop for the callees */

    /* error raised inside a callback (decode failure): stops the sampler, reported after */
    enum jb_status deferred;
    char deferred_msg[1024];

    /* progress of the level being sampled */
    int level, window, n_windows;
    int64_t done, total;
    double t_level, t_last_report;

    /* progressive audio of the level being sampled */
    int64_t emitted[JB_JOB_MAX_CANDIDATES]; /* next code to emit, per candidate */
    int64_t margin, chunk_min, chunk_max;
    float *audio;                   /* [chunk_max * hop] */
    struct jb_vqvae_work *dec_work; /* decode_range work memory of the level */

    /* the window being sampled: where on_token writes */
    int64_t win_start, win_prefix, win_vocab_shift;
    int slice_c0;
};

static bool job_should_stop(void *user)
{
    struct job *j = user;
    if (j->deferred != JB_STATUS_OK) return true;
    return j->cb && j->cb->should_stop && j->cb->should_stop(j->cb->user);
}

static void defer_error(struct job *j, enum jb_status st)
{
    if (j->deferred != JB_STATUS_OK) return;
    j->deferred = st;
    snprintf(j->deferred_msg, sizeof j->deferred_msg, "%s", jb_last_error());
}

static void report_progress(struct job *j, bool force)
{
    if (!j->cb || !j->cb->on_progress) return;
    const double now = jb_time_now();
    if (!force && now - j->t_last_report < PROGRESS_INTERVAL) return;
    j->t_last_report         = now;
    struct jb_job_progress p = { .level     = j->level,
                                 .window    = j->window,
                                 .n_windows = j->n_windows,
                                 .done      = j->done,
                                 .total     = j->total };
    p.elapsed                = now - j->t_level;
    p.tokens_per_s           = p.elapsed > 0 ? (double)p.done / p.elapsed : 0.0;
    p.eta                    = p.tokens_per_s > 0  ? (double)(p.total - p.done) / p.tokens_per_s
                               : p.done == p.total ? 0
                                                   : -1;
    j->cb->on_progress(&p, j->cb->user);
}

static int32_t *level_codes(struct job *j, int L, int c)
{
    return j->take->codes[L] + (size_t)c * (size_t)j->take->n_tokens[L];
}

/* Decodes and emits candidate c's level-L codes [emitted, limit) in chunks of at most chunk_max;
 * with `all` false only once at least chunk_min codes are final. */
static enum jb_status emit_audio(struct job *j, int L, int c, int64_t limit, bool all)
{
    if (!j->cb || !j->cb->on_audio) return JB_STATUS_OK;
    const int64_t hop = j->s->hop[L], n = j->take->n_tokens[L];
    while (limit - j->emitted[c] >= (all ? 1 : j->chunk_min)) {
        if (job_should_stop(j)) return jb_fail(JB_STATUS_ERR_CANCELLED, "job: cancelled");
        const int64_t a   = j->emitted[c];
        const int64_t b   = limit - a > j->chunk_max ? a + j->chunk_max : limit;
        enum jb_status st = jb_vqvae_decode_range(
          j->s->vqvae->vqvae, L, level_codes(j, L, c), n, a, b, j->audio, j->dec_work);
        if (st != JB_STATUS_OK) return st;
        struct jb_job_audio au = { .candidate = c,
                                   .level     = L,
                                   .role = L == j->r->finest ? JB_AUDIO_FINAL : JB_AUDIO_PREVIEW,
                                   .first_sample = a * hop,
                                   .n_samples    = (b - a) * hop,
                                   .samples      = j->audio };
        j->cb->on_audio(&au, j->cb->user);
        j->emitted[c] = b;
    }
    return JB_STATUS_OK;
}

/* Sampler hook after every drawn position t of the window (transformer positions, including a
 * lyric prefix): store the codes, emit what became final, report progress. */
static void on_token(void *user, int64_t t, int n_batch, const int32_t *seq, int64_t ld_seq)
{
    struct job *j     = user;
    const int L       = j->level;
    const int64_t pos = j->win_start + (t - j->win_prefix); /* level position */
    for (int n = 0; n < n_batch; n++) {
        int32_t code                            = seq[n * ld_seq + t] - (int32_t)j->win_vocab_shift;
        level_codes(j, L, j->slice_c0 + n)[pos] = code > 0 ? code : 0;
    }
    j->done += n_batch;
    if (j->deferred == JB_STATUS_OK) {
        const int64_t limit = pos + 1 - j->margin; /* codes whose decoder input is all known */
        for (int n = 0; n < n_batch; n++) {
            enum jb_status st = emit_audio(j, L, j->slice_c0 + n, limit, false);
            if (st != JB_STATUS_OK) {
                defer_error(j, st);
                break;
            }
        }
    }
    if (j->done < j->total) report_progress(j, false); /* the level's end is reported once */
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t window_seed(uint64_t seed, int level, int64_t start)
{
    uint64_t z = mix64(seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(level + 1));
    return mix64(z ^ ((uint64_t)start * 0xd1b54a32d192ed03ULL));
}

/* Per-level reservation: everything the window loop touches. */
struct level_bufs {
    struct jb_prior_state *st_full, *st_rem; /* batch of max rows, and the last smaller slice */
    struct jb_window *windows;
    float *x;               /* [Nb, seq_len, w] */
    float *start_emb;       /* [Nb, w] */
    float *enc_kv;          /* [Nb, enc_len, w] (5b_lyrics) */
    int32_t *ctx, *out;     /* [Nb, seq_len] */
    int32_t *k_abs, *k_rel; /* [n_ctx] */
    int32_t *lyr;           /* [Nb, n_tokens] */
};

static void level_bufs_free(struct level_bufs *b)
{
    jb_prior_state_free(b->st_full);
    jb_prior_state_free(b->st_rem);
    free(b->windows);
    free(b->x);
    free(b->start_emb);
    free(b->enc_kv);
    free(b->ctx);
    free(b->out);
    free(b->k_abs);
    free(b->k_rel);
    free(b->lyr);
    memset(b, 0, sizeof *b);
}

static void *reserve(size_t a, size_t b, size_t elem)
{
    size_t n, bytes;
    if (!jb_mul_size(a, b, &n) || !jb_mul_size(n, elem, &bytes)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "job: buffer size overflow");
        return NULL;
    }
    return jb_aligned_alloc(bytes ? bytes : 1);
}

/* The window's conditioning that is the same for every candidate: the timing signal (top
 * level) into row 0 of x, copied to the other rows, and the lyric window. */
static enum jb_status window_labels(struct job *j,
                                    int L,
                                    const struct jb_window *w,
                                    struct level_bufs *b,
                                    int Nb)
{
    struct jb_prior *p                = j->s->prior[L]->prior;
    const struct jb_prior_hparams *hp = &j->s->prior[L]->prior_hp;
    const int64_t T = hp->tr.seq_len, W = hp->tr.width;
    const int64_t offset = w->start * hp->raw_to_tokens;           /* get_y: y[1] */
    const int64_t length = (int64_t)hp->n_ctx * hp->raw_to_tokens; /* y[2] */
    enum jb_status st    = JB_STATUS_OK;
    if (hp->timing) {
        int32_t k_tot;
        st = jb_labels_timing_bins(j->r->total_length,
                                   offset,
                                   length,
                                   hp->n_ctx,
                                   hp->t_bins,
                                   hp->min_duration,
                                   hp->max_duration,
                                   hp->sr,
                                   0,
                                   &k_tot,
                                   b->k_abs,
                                   b->k_rel);
        if (!st) st = jb_prior_x_timing(p, k_tot, b->k_abs, b->k_rel, b->x);
        for (int n = 1; !st && n < Nb; n++)
            memcpy(b->x + (size_t)n * T * W, b->x, (size_t)(T * W) * sizeof(float));
    }
    if (!st && hp->n_tokens > 0) {
        st = jb_labels_lyric_window(j->r->lyric_full,
                                    j->r->n_lyric_full,
                                    hp->n_tokens,
                                    j->r->total_length,
                                    offset,
                                    length,
                                    JB_LABEL_ARITH_F32,
                                    b->lyr,
                                    NULL);
        if (!st && hp->variant == JB_PRIOR_TOP_LYRICS_ENC) {
            const size_t E = (size_t)jb_prior_enc_len(p) * (size_t)W;
            st             = jb_prior_state_encoder_kv(b->st_full, b->lyr, b->enc_kv);
            for (int n = 1; !st && n < Nb; n++)
                memcpy(b->enc_kv + (size_t)n * E, b->enc_kv, E * sizeof(float));
        }
    }
    return st;
}

/* Samples level L from window first_window on (0, or where a resumed job left off). */
static enum jb_status sample_level(struct job *j, int L, int64_t first_window)
{
    struct jb_session *s              = j->s;
    const struct resolved *r          = j->r;
    struct jb_prior *p                = s->prior[L]->prior;
    const struct jb_prior_hparams *hp = &s->prior[L]->prior_hp;
    const int64_t T = hp->tr.seq_len, W = hp->tr.width, n_ctx = hp->n_ctx;
    const int prefix  = jb_prior_prefix_len(p);
    const bool single = hp->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC;
    const int N = r->n_cand, Nb = N < r->set.max_batch[L] ? N : r->set.max_batch[L];
    const int n_rem       = N > Nb ? N % Nb : 0;
    const int64_t total_L = r->total[L], known_L = r->known[L];
    struct level_bufs b = { 0 };
    enum jb_status st   = JB_STATUS_OK;

    /* reserve everything for the level */
    const int64_t n_win = r->n_windows[L];
    const int chunk     = r->set.chunk_size[L];
    b.windows           = jb_calloc((size_t)n_win, sizeof *b.windows);
    b.st_full           = jb_prior_state_init_ex(p, Nb, chunk, s->kv_type);
    if (n_rem) b.st_rem = jb_prior_state_init_ex(p, n_rem, chunk, s->kv_type);
    b.x         = reserve((size_t)Nb * (size_t)T, (size_t)W, sizeof(float));
    b.start_emb = reserve((size_t)Nb, (size_t)W, sizeof(float));
    b.ctx       = reserve((size_t)Nb, (size_t)T, sizeof(int32_t));
    b.out       = reserve((size_t)Nb, (size_t)T, sizeof(int32_t));
    b.k_abs     = reserve((size_t)n_ctx, 1, sizeof(int32_t));
    b.k_rel     = reserve((size_t)n_ctx, 1, sizeof(int32_t));
    b.lyr = reserve((size_t)Nb, (size_t)(hp->n_tokens > 0 ? hp->n_tokens : 1), sizeof(int32_t));
    if (hp->variant == JB_PRIOR_TOP_LYRICS_ENC)
        b.enc_kv = reserve((size_t)Nb * (size_t)jb_prior_enc_len(p), (size_t)W, sizeof(float));
    j->margin = jb_vqvae_decode_margin_level(s->vqvae->vqvae, L);
    /* chunks of at least the margin (decoding overhead <= 3x) and a quarter second */
    j->chunk_min =
      j->margin > JB_SAMPLE_RATE / 4 / s->hop[L] ? j->margin : JB_SAMPLE_RATE / 4 / s->hop[L];
    if (j->chunk_min < 1) j->chunk_min = 1;
    j->chunk_max = 2 * j->chunk_min;
    j->audio     = reserve((size_t)j->chunk_max, (size_t)s->hop[L], sizeof(float));
    if (j->cb && j->cb->on_audio)
        j->dec_work = jb_vqvae_decode_work_init(s->vqvae->vqvae, L, total_L, j->chunk_max);
    if ((j->cb && j->cb->on_audio && !j->dec_work) || !b.windows || !b.st_full ||
        (n_rem && !b.st_rem) || !b.x || !b.start_emb || !b.ctx || !b.out || !b.k_abs || !b.k_rel ||
        !b.lyr || (hp->variant == JB_PRIOR_TOP_LYRICS_ENC && !b.enc_kv) || !j->audio) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    jb_schedule_level(total_L, known_L, n_ctx, r->hop_tok[L], b.windows, n_win);
    memset(b.x, 0, (size_t)T * (size_t)W * sizeof(float));

    /* the artist/genre embedding does not change between windows */
    st = jb_prior_start_emb(p, r->artist_id[L], r->genre_ids[L], b.start_emb);
    for (int n = 1; !st && n < Nb; n++)
        memcpy(b.start_emb + (size_t)n * W, b.start_emb, (size_t)W * sizeof(float));
    if (st) goto done;

    /* progress and audio state */
    j->level     = L;
    j->window    = 0;
    j->n_windows = (int)n_win;
    j->done      = 0;
    j->total     = (total_L - known_L) * N;
    if (first_window > n_win) first_window = n_win;
    for (int64_t wi = 0; wi < first_window; wi++) /* tokens a resumed job already has */
        j->done += (b.windows[wi].n_tokens - b.windows[wi].n_known) * N;
    j->t_level = jb_time_now();
    for (int c = 0; c < N; c++)
        j->emitted[c] = known_L;
    report_progress(j, true);

    int64_t ratio = 1; /* upper codes per lower code */
    if (L < s->top) ratio = s->hop[L + 1] / s->hop[L];

    for (int64_t wi = first_window; wi < n_win; wi++) {
        const struct jb_window *w = &b.windows[wi];
        j->window                 = (int)wi;
        if (job_should_stop(j)) {
            st = jb_fail(JB_STATUS_ERR_CANCELLED, "job: cancelled");
            break;
        }
        st = window_labels(j, L, w, &b, Nb);
        if (st) break;
        const int P = (int)w->n_known, n_tok = (int)w->n_tokens;
        for (int c0 = 0; c0 < N && !st; c0 += Nb) {
            const int n               = N - c0 < Nb ? N - c0 : Nb;
            struct jb_prior_state *ps = n == Nb ? b.st_full : b.st_rem;
            if (L < s->top) { /* upsampler: conditioning on each candidate's upper codes */
                for (int k = 0; k < n && !st; k++)
                    st = jb_prior_x_upsampler(p,
                                              level_codes(j, L + 1, c0 + k) + w->start / ratio,
                                              b.x + (size_t)k * (size_t)(T * W));
                if (st) break;
            }
            st = jb_prior_state_set_cond(ps, b.start_emb, b.x, b.enc_kv);
            if (st) break;
            /* context: [lyric prefix ;] known codes of the window (merged ids for 1b_lyrics) */
            const int shift = single ? hp->n_vocab : 0;
            for (int k = 0; k < n; k++) {
                int32_t *row     = b.ctx + (size_t)k * (size_t)(prefix + P);
                const int32_t *z = level_codes(j, L, c0 + k) + w->start;
                memcpy(row, b.lyr, (size_t)prefix * sizeof *row);
                for (int i = 0; i < P; i++)
                    row[prefix + i] = z[i] + shift;
            }
            struct jb_sample_params sp = jb_sample_params_default();
            sp.temp                    = r->set.temp[L];
            sp.top_k                   = r->set.top_k;
            sp.top_p                   = r->set.top_p;
            sp.seed                    = window_seed(r->set.seed, L, w->start);
            sp.first_candidate         = c0;
            sp.chunk_size              = chunk;
            j->win_start               = w->start;
            j->win_prefix              = prefix;
            j->win_vocab_shift         = shift;
            j->slice_c0                = c0;
            st                         = jb_prior_sample(
              ps, b.ctx, prefix + P, prefix + n_tok, &sp, b.out, &j->inner, on_token, j);
        }
        if (st) break;
        if (j->cb && j->cb->on_checkpoint) {
            struct jb_job_checkpoint ck = {
                .level = L, .windows_done = (int)wi + 1, .n_windows = (int)n_win, .partial = j->take
            };
            j->cb->on_checkpoint(&ck, j->cb->user);
        }
    }
    if (st == JB_STATUS_ERR_CANCELLED && j->deferred)
        st = jb_fail(j->deferred, "%s", j->deferred_msg);
    if (st) goto done;

    /* the level is complete: the rest of its audio is final */
    j->window = n_win > 0 ? (int)n_win - 1 : 0;
    for (int c = 0; c < N && !st; c++) {
        if (job_should_stop(j))
            st = jb_fail(JB_STATUS_ERR_CANCELLED, "job: cancelled");
        else
            st = emit_audio(j, L, c, total_L, true);
    }
    if (!st) report_progress(j, true);

done:
    level_bufs_free(&b);
    free(j->audio);
    j->audio = NULL;
    jb_vqvae_work_free(j->dec_work);
    j->dec_work = NULL;
    return st;
}

/* The known codes of level L at the start: the riff's VQ-VAE codes (same for every candidate)
 * or the source take's. */
static enum jb_status fill_known(struct job *j, const struct jb_job_params *p, int L)
{
    const struct resolved *r = j->r;
    const int64_t k          = r->known[L];
    if (k == 0) return JB_STATUS_OK;
    if (r->mode == JB_JOB_PRIMED) {
        int32_t *c0         = level_codes(j, L, 0);
        const int64_t chunk = ((int64_t)1 << 17) / j->s->hop[L]; /* ~3 s: bounded work memory */
        enum jb_status st   = jb_vqvae_encode_level_chunked(
          j->s->vqvae->vqvae, L, p->riff, r->riff_samples, c0, NULL, chunk, &j->inner);
        if (st) return st;
        for (int c = 1; c < r->n_cand; c++)
            memcpy(level_codes(j, L, c), c0, (size_t)k * sizeof *c0);
        return JB_STATUS_OK;
    }
    for (int c = 0; c < r->n_cand; c++)
        memcpy(level_codes(j, L, c),
               jb_take_codes(p->take, L, r->src_cand[c]),
               (size_t)k * sizeof(int32_t));
    return JB_STATUS_OK;
}

/* A checkpoint take must have the shape of this job's take and point at a sampled level. */
static enum jb_status check_resume(struct job *j, const struct jb_job_params *p)
{
    const struct jb_take *t = p->resume, *o = j->take;
    if (t->n_levels != o->n_levels || t->n_candidates != o->n_candidates)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: resume take has %d levels x %d candidates, expected %d x %d",
                       t->n_levels,
                       t->n_candidates,
                       o->n_levels,
                       o->n_candidates);
    for (int L = 0; L < o->n_levels; L++)
        if (t->n_tokens[L] != o->n_tokens[L])
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "job: resume take has %lld level-%d codes, expected %lld",
                           (long long)t->n_tokens[L],
                           L,
                           (long long)o->n_tokens[L]);
    const int L = p->resume_level;
    if (L < 0 || L >= o->n_levels || !j->r->sample[L] || p->resume_window < 0 ||
        p->resume_window > j->r->n_windows[L])
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "job: cannot resume at level %d window %d",
                       L,
                       p->resume_window);
    return JB_STATUS_OK;
}

/* Level L's prior on the backend (back from an earlier offloading job if need be); with offload
 * on, the others leave first, so their memory is free for it. Between levels only: no prior
 * state or recorded decode step holds weight pointers then. */
static enum jb_status make_resident(struct jb_session *s, int L)
{
    for (int K = 0; K < s->n_levels && s->offload; K++)
        if (K != L) jb_weights_offload(s->prior[K]->weights);
    return jb_weights_reload(s->prior[L]->weights);
}

enum jb_status jb_job_run(struct jb_session *s,
                          const struct jb_job_params *p,
                          const struct jb_job_callbacks *cb,
                          struct jb_take **out)
{
    if (!out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_job_run: out is required");
    *out = NULL;
    struct resolved r;
    enum jb_status st = resolve(s, p, &r);
    if (st) return st;
    st = check_memory(s, &r);
    if (st) {
        resolved_free(&r);
        return st;
    }

    struct job j = { .s = s, .cb = cb, .r = &r };
    j.inner      = (struct jb_callbacks){ .should_stop = job_should_stop, .user = &j };
    int32_t hop[JB_MAX_LEVELS];
    for (int L = 0; L < s->n_levels; L++)
        hop[L] = s->hop[L];
    j.take = jb_take_alloc(
      s->n_levels, r.n_cand, hop, s->vqvae->vq_hp.l_bins, r.total, r.artist, r.genre, r.lyrics);
    if (!j.take) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    j.take->riff_samples = r.riff_samples;
    j.take->total_length = r.total_length;
    j.take->settings     = r.set;

    if (p->resume) {
        st = check_resume(&j, p);
        if (st) goto done;
    }

    /* top level first; each level's prompt codes are encoded just before it is sampled, so the
     * first preview does not wait for the (slow) level-0 encoder */
    for (int L = s->top; L >= 0 && !st; L--) {
        if (job_should_stop(&j)) {
            st = jb_fail(JB_STATUS_ERR_CANCELLED, "job: cancelled");
            break;
        }
        if (p->resume && L >= p->resume_level) { /* codes from the checkpoint */
            for (int c = 0; c < r.n_cand; c++)
                memcpy(level_codes(&j, L, c),
                       jb_take_codes(p->resume, L, c),
                       (size_t)j.take->n_tokens[L] * sizeof(int32_t));
            if (L == p->resume_level) st = make_resident(s, L);
            if (!st && L == p->resume_level) st = sample_level(&j, L, p->resume_window);
            continue;
        }
        st = fill_known(&j, p, L);
        if (!st && r.sample[L]) st = make_resident(s, L);
        if (!st && r.sample[L]) st = sample_level(&j, L, 0);
    }

done:
    resolved_free(&r);
    if (st) {
        jb_take_free(j.take);
        return st;
    }
    *out = j.take;
    return JB_STATUS_OK;
}
