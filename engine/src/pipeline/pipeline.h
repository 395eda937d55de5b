/*
 * pipeline/pipeline.h - (private to engine/src/pipeline) the objects behind the public session,
 * job and take API of encore/engine.h: struct jb_session (the four models of one Jukebox
 * variant), struct jb_take (codes of every level per candidate, plus labels and settings), and
 * the helpers session.c, take.c and job.c share.
 *
 * Ownership: a session owns its models and borrows the backend; a take owns all its arrays and
 * strings. Threads: see the public header (one job per session at a time; takes are values).
 */
#ifndef JB_PIPELINE_PIPELINE_H
#define JB_PIPELINE_PIPELINE_H

#include "model/model.h"
#include "labels/labels.h"

#define JB_TAKE_FORMAT_VERSION 1
#define JB_LYRICS_MAX_BYTES (256 * 1024) /* UTF-8 lyrics of one song (cap before parsing) */
#define JB_LABEL_MAX_BYTES 1024          /* one artist or genre name                      */

struct jb_session {
    struct jb_backend *backend;            /* borrowed */
    struct jb_model *vqvae;                /* owned */
    struct jb_model *prior[JB_MAX_LEVELS]; /* prior[L] samples level L; owned */
    int n_levels, top;                     /* top = n_levels - 1 */
    int hop[JB_MAX_LEVELS];                /* raw_to_tokens of each level */
    bool untrained;
    enum jb_dtype kv_type; /* priors' KV caches: F32 (default) or F16 (jb_session_set_kv_f16) */
    double memory_limit;   /* bytes a job may take; 0: the backend's free memory */
    bool offload;          /* only the sampled level's prior on the backend (set_offload) */
};

/* Settings a take remembers about the job that made it (stored in the take file). */
struct jb_take_settings {
    enum jb_job_mode mode;
    uint64_t seed;
    float temp[JB_MAX_LEVELS];
    int32_t top_k;
    float top_p;
    float hop_fraction[JB_MAX_LEVELS];
    int32_t chunk_size[JB_MAX_LEVELS];
    int32_t max_batch[JB_MAX_LEVELS];
};

struct jb_take {
    int32_t n_levels, n_candidates;
    int32_t hop[JB_MAX_LEVELS];
    int32_t bins;                    /* codes are in [0, bins) */
    int64_t n_tokens[JB_MAX_LEVELS]; /* per candidate */
    int32_t *codes[JB_MAX_LEVELS];   /* [n_candidates, n_tokens[L]] row-major; NULL if 0 */
    int64_t riff_samples, total_length;
    char *artist, *genre, *lyrics; /* owned, never NULL */
    struct jb_take_settings settings;
};

/* An empty take with arrays for n_candidates x n_tokens[L] codes (zeroed) and copies of the
 * strings (NULL -> ""). NULL on OOM or bad sizes. */
struct jb_take *jb_take_alloc(int n_levels,
                              int n_candidates,
                              const int32_t *hop,
                              int32_t bins,
                              const int64_t *n_tokens,
                              const char *artist,
                              const char *genre,
                              const char *lyrics);

/* Lowest level whose codes cover the top level's span (n_levels - 1 if only the top does). */
int jb_take_finest_level(const struct jb_take *take);

/* Label version of a prior (v2 for the upsamplers and 5b priors, v3 for 1b_lyrics). */
static inline enum jb_label_version jb_prior_label_version(const struct jb_prior_hparams *hp)
{
    return hp->labels_v3 ? JB_LABEL_V3 : JB_LABEL_V2;
}

#endif
