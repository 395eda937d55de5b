/*
 * pipeline/session.c - loading the four models of one Jukebox variant from a folder and checking
 * that they fit together; session queries (levels, windows, label tables).
 */
#include "pipeline/pipeline.h"

#include "prior/prior.h"
#include "vqvae/vqvae.h"

#include <stdio.h>
#include <string.h>

static const char *variant_name(enum jb_prior_variant v)
{
    switch (v) {
    case JB_PRIOR_UPSAMPLER:
        return "upsampler";
    case JB_PRIOR_TOP:
        return "prior_5b";
    case JB_PRIOR_TOP_LYRICS_ENC:
        return "prior_5b_lyrics";
    case JB_PRIOR_TOP_SINGLE_ENC_DEC:
        return "prior_1b_lyrics";
    }
    return "?";
}

static struct jb_model *load_one(const char *dir,
                                 const char *file,
                                 struct jb_backend *be,
                                 enum jb_model_kind kind)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "session: model folder path is too long");
        return NULL;
    }
    struct jb_model *m = jb_model_load(path, be);
    if (!m) {
        /* keep the loader's reason, prefixed with the file it was about */
        char why[1024];
        snprintf(why, sizeof why, "%s", jb_last_error());
        jb_fail(JB_STATUS_ERR_MODEL, "session: cannot load '%s': %s", path, why);
        return NULL;
    }
    if (m->kind != kind) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "session: '%s' is a %s file, expected a %s",
                path,
                m->kind == JB_MODEL_VQVAE ? "VQ-VAE" : "prior",
                kind == JB_MODEL_VQVAE ? "VQ-VAE" : "prior");
        jb_model_free(m);
        return NULL;
    }
    return m;
}

/* The models must describe one hierarchy: prior L at level L with the VQ-VAE's hop and
 * codebook, upsamplers conditioned on exactly the ratio between their level and the next. */
static enum jb_status check_fit(const struct jb_session *s)
{
    const struct jb_vqvae_hparams *vq = &s->vqvae->vq_hp;
    for (int L = 0; L < s->n_levels; L++) {
        const struct jb_prior_hparams *hp = &s->prior[L]->prior_hp;
        const char *name                  = s->prior[L]->name;
        const bool top                    = L == s->top;
        if (hp->level != L)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "session: the level-%d prior file ('%s') is for level %d",
                           L,
                           name,
                           hp->level);
        if (hp->raw_to_tokens != s->hop[L])
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "session: level-%d prior has %d samples per token, the VQ-VAE %d",
                           L,
                           hp->raw_to_tokens,
                           s->hop[L]);
        if (hp->bins != vq->l_bins)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "session: level-%d prior has %d codes, the VQ-VAE codebook %d",
                           L,
                           hp->bins,
                           vq->l_bins);
        if (top == (hp->variant == JB_PRIOR_UPSAMPLER))
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "session: level %d needs %s, got a %s",
                           L,
                           top ? "a top-level prior" : "an upsampler",
                           variant_name(hp->variant));
        if (!s->prior[L]->artists || !s->prior[L]->genres)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "session: level-%d prior '%s' has no artist/genre tables (re-import it "
                           "with --artist-ids and --genre-ids)",
                           L,
                           name);
        if (top) continue;
        int64_t ratio = 1;
        for (int i = 0; i < hp->cond_downs; i++)
            ratio *= hp->cond_stride;
        if (ratio != s->hop[L + 1] / s->hop[L] || hp->n_ctx % ratio != 0)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "session: level-%d upsampler conditions on 1 upper code per %lld "
                           "tokens, the VQ-VAE hops give %d (n_ctx %d)",
                           L,
                           (long long)ratio,
                           s->hop[L + 1] / s->hop[L],
                           hp->n_ctx);
    }
    return JB_STATUS_OK;
}

struct jb_session *jb_session_load(const char *dir, struct jb_backend *backend)
{
    if (!dir || !backend) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_session_load: dir and backend are required");
        return NULL;
    }
    struct jb_session *s = jb_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->backend = backend;
    s->vqvae   = load_one(dir, "vqvae.gguf", backend, JB_MODEL_VQVAE);
    if (!s->vqvae) goto fail;
    s->n_levels = s->vqvae->vq_hp.levels;
    if (s->n_levels < 2 || s->n_levels > JB_MAX_LEVELS) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "session: the VQ-VAE has %d levels, expected 2..%d",
                s->n_levels,
                JB_MAX_LEVELS);
        goto fail;
    }
    s->top = s->n_levels - 1;
    for (int L = 0; L < s->n_levels; L++)
        s->hop[L] = jb_vqvae_hp_hop(&s->vqvae->vq_hp, L);
    for (int L = 0; L < s->n_levels; L++) {
        char file[64];
        if (L == s->top)
            snprintf(file, sizeof file, "prior_level_%d.gguf", L);
        else
            snprintf(file, sizeof file, "upsampler_level_%d.gguf", L);
        s->prior[L] = load_one(dir, file, backend, JB_MODEL_PRIOR);
        if (!s->prior[L]) goto fail;
    }
    if (check_fit(s) != JB_STATUS_OK) goto fail;
    s->untrained = s->vqvae->untrained;
    for (int L = 0; L < s->n_levels; L++)
        s->untrained |= s->prior[L]->untrained;
    return s;

fail:
    jb_session_free(s);
    return NULL;
}

void jb_session_free(struct jb_session *s)
{
    if (!s) return;
    for (int L = 0; L < JB_MAX_LEVELS; L++)
        jb_model_free(s->prior[L]);
    jb_model_free(s->vqvae);
    free(s);
}

void jb_session_get_info(const struct jb_session *s, struct jb_session_info *info)
{
    memset(info, 0, sizeof *info);
    if (!s) return;
    const struct jb_prior_hparams *top = &s->prior[s->top]->prior_hp;
    info->n_levels                     = s->n_levels;
    for (int L = 0; L < s->n_levels; L++) {
        info->hop[L]   = s->hop[L];
        info->n_ctx[L] = s->prior[L]->prior_hp.n_ctx;
    }
    info->bins         = s->vqvae->vq_hp.l_bins;
    info->top_kind     = variant_name(top->variant);
    info->lyrics       = top->n_tokens > 0;
    info->min_duration = top->min_duration;
    info->max_duration = top->max_duration;
    /* every upsampler needs one full window of upper codes (the reference's assertion for
     * level 1, which implies the weaker one for level 0 with the released models) */
    int64_t min_samples = 0;
    for (int L = 0; L < s->top; L++) {
        int64_t need = (int64_t)info->n_ctx[L] * s->hop[L];
        if (need > min_samples) min_samples = need;
    }
    info->min_seconds = (double)min_samples / JB_SAMPLE_RATE;
    info->untrained   = s->untrained;
    info->vqvae_bytes = jb_weights_bytes(s->vqvae->weights);
    for (int L = 0; L < s->n_levels; L++) {
        const struct jb_model *m = s->prior[L];
        const bool big           = L == s->top && (m->prior_hp.variant == JB_PRIOR_TOP ||
                                         m->prior_hp.variant == JB_PRIOR_TOP_LYRICS_ENC);
        const int chunk          = big ? 16 : 32; /* the job's default priming chunk (job.c) */
        info->prior_bytes[L]     = jb_weights_bytes(m->weights);
        info->prior_resident[L]  = jb_weights_placed_bytes(m->weights, true);
        info->candidate_bytes[L] = jb_prior_state_plan_bytes(m->prior, 2, chunk, s->kv_type) -
                                   jb_prior_state_plan_bytes(m->prior, 1, chunk, s->kv_type);
    }
    size_t fr = 0, tot = 0;
    if (jb_backend_memory(s->backend, &fr, &tot) == JB_STATUS_OK) {
        info->backend_free  = (double)fr;
        info->backend_total = (double)tot;
    }
}

enum jb_status jb_session_check_labels(const struct jb_session *s,
                                       const char *artist,
                                       const char *genre)
{
    if (!s) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_session_check_labels: no session");
    /* the top prior first: its table is the one users pick names from */
    for (int i = 0; i < s->n_levels; i++) {
        const struct jb_model *m          = s->prior[s->top - i];
        const struct jb_prior_hparams *hp = &m->prior_hp;
        enum jb_label_version v           = jb_prior_label_version(hp);
        int32_t id, ids[JB_LABEL_MAX_GENRES];
        enum jb_status st = JB_STATUS_OK;
        if (artist) st = jb_labels_artist_id(m->artists, v, JB_LABEL_STRICT, artist, &id);
        if (!st && genre) {
            int slots = hp->max_bow_genre_size;
            if (slots < 1 || slots > JB_LABEL_MAX_GENRES)
                return jb_fail(
                  JB_STATUS_ERR_MODEL, "level-%d prior has %d genre slots", hp->level, slots);
            st = jb_labels_genre_ids(m->genres, v, JB_LABEL_STRICT, genre, slots, ids);
        }
        if (st != JB_STATUS_OK) {
            if (i == 0) return st;
            char why[900];
            snprintf(why, sizeof why, "%s", jb_last_error());
            return jb_fail(st, "level-%d upsampler: %s", hp->level, why);
        }
    }
    return JB_STATUS_OK;
}

int64_t jb_session_label_count(const struct jb_session *s, bool genre)
{
    if (!s) return 0;
    const struct jb_model *m = s->prior[s->top];
    return (int64_t)jb_label_vocab_count(genre ? m->genres : m->artists);
}

const char *jb_session_label_name(const struct jb_session *s, bool genre, int64_t i)
{
    if (!s || i < 0 || i >= jb_session_label_count(s, genre)) return NULL;
    const struct jb_model *m = s->prior[s->top];
    const char *name;
    int32_t id;
    jb_label_vocab_entry(genre ? m->genres : m->artists, (size_t)i, &name, &id);
    return name;
}

void jb_session_set_offload(struct jb_session *session, bool offload)
{
    if (session) session->offload = offload;
}

void jb_session_set_memory_limit(struct jb_session *session, double bytes)
{
    if (session) session->memory_limit = bytes > 0 ? bytes : 0;
}

void jb_session_set_kv_f16(struct jb_session *session, bool f16)
{
    if (session) session->kv_type = f16 ? JB_DTYPE_F16 : JB_DTYPE_F32;
}
