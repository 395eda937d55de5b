/*
 * pipeline/take.c - takes: the codes of every level for each candidate, with the labels and
 * settings that made them; saved as GGUF (the model files' container, so a take file gets the
 * same hostile-input checks) and decoded to audio on demand.
 *
 * File layout: general.architecture "jukebox", encore.kind "take", encore.take.* metadata (see
 * take_write_meta) and one int32 tensor "codes.level{L}" [n_candidates, n_tokens[L]] per level
 * that holds codes (a level with no codes has no tensor; n_tokens says 0).
 */
#include "pipeline/pipeline.h"

#include "format/gguf.h"
#include "format/meta.h"
#include "vqvae/vqvae.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char *dup_str(const char *s)
{
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d  = jb_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

struct jb_take *jb_take_alloc(int n_levels,
                              int n_candidates,
                              const int32_t *hop,
                              int32_t bins,
                              const int64_t *n_tokens,
                              const char *artist,
                              const char *genre,
                              const char *lyrics)
{
    if (n_levels < 1 || n_levels > JB_MAX_LEVELS || n_candidates < 1 ||
        n_candidates > JB_JOB_MAX_CANDIDATES || bins < 1) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "take: %d levels, %d candidates, %d bins",
                n_levels,
                n_candidates,
                bins);
        return NULL;
    }
    struct jb_take *t = jb_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n_levels     = n_levels;
    t->n_candidates = n_candidates;
    t->bins         = bins;
    for (int L = 0; L < n_levels; L++) {
        t->hop[L]      = hop[L];
        t->n_tokens[L] = n_tokens[L];
        if (n_tokens[L] < 0 || n_tokens[L] > ((int64_t)1 << 40)) {
            jb_fail(
              JB_STATUS_ERR_INVALID_ARG, "take: %lld codes at level %d", (long long)n_tokens[L], L);
            goto fail;
        }
        if (n_tokens[L] > 0 &&
            !(t->codes[L] = jb_calloc((size_t)n_candidates * (size_t)n_tokens[L], sizeof(int32_t))))
            goto fail;
    }
    t->artist = dup_str(artist);
    t->genre  = dup_str(genre);
    t->lyrics = dup_str(lyrics);
    if (!t->artist || !t->genre || !t->lyrics) goto fail;
    return t;

fail:
    jb_take_free(t);
    return NULL;
}

void jb_take_free(struct jb_take *t)
{
    if (!t) return;
    for (int L = 0; L < JB_MAX_LEVELS; L++)
        free(t->codes[L]);
    free(t->artist);
    free(t->genre);
    free(t->lyrics);
    free(t);
}

int jb_take_finest_level(const struct jb_take *t)
{
    const int top      = t->n_levels - 1;
    const int64_t span = t->n_tokens[top] * t->hop[top];
    int L              = top;
    while (L > 0 && t->n_tokens[L - 1] * t->hop[L - 1] >= span)
        L--;
    return L;
}

void jb_take_get_info(const struct jb_take *t, struct jb_take_info *info)
{
    memset(info, 0, sizeof *info);
    if (!t) return;
    const int top      = t->n_levels - 1;
    info->mode         = t->settings.mode;
    info->n_levels     = t->n_levels;
    info->n_candidates = t->n_candidates;
    for (int L = 0; L < t->n_levels; L++) {
        info->hop[L]      = t->hop[L];
        info->n_tokens[L] = t->n_tokens[L];
        info->temp[L]     = t->settings.temp[L];
    }
    info->sample_length = t->n_tokens[top] * t->hop[top];
    info->riff_samples  = t->riff_samples;
    info->total_length  = t->total_length;
    info->finest_level  = jb_take_finest_level(t);
    info->seed          = t->settings.seed;
    info->top_k         = t->settings.top_k;
    info->top_p         = t->settings.top_p;
    info->artist        = t->artist;
    info->genre         = t->genre;
    info->lyrics        = t->lyrics;
}

const int32_t *jb_take_codes(const struct jb_take *t, int level, int candidate)
{
    if (!t || level < 0 || level >= t->n_levels || candidate < 0 || candidate >= t->n_candidates ||
        !t->codes[level])
        return NULL;
    return t->codes[level] + (size_t)candidate * (size_t)t->n_tokens[level];
}

/* ---------------------------------------------------------------------------------------- */
/* save                                                                                      */

static const char *mode_name(enum jb_job_mode m)
{
    switch (m) {
    case JB_JOB_PRIMED:
        return "primed";
    case JB_JOB_ANCESTRAL:
        return "ancestral";
    case JB_JOB_CONTINUE:
        return "continue";
    case JB_JOB_UPSAMPLE:
        return "upsample";
    }
    return "?";
}

static bool mode_parse(const char *s, enum jb_job_mode *m)
{
    for (int i = JB_JOB_PRIMED; i <= JB_JOB_UPSAMPLE; i++) {
        if (strcmp(s, mode_name((enum jb_job_mode)i)) == 0) {
            *m = (enum jb_job_mode)i;
            return true;
        }
    }
    return false;
}

static void take_write_meta(struct jb_gguf_writer *w, const struct jb_take *t)
{
    const struct jb_take_settings *s = &t->settings;
    const size_t n                   = (size_t)t->n_levels;
    int64_t ntok[JB_MAX_LEVELS];
    for (int L = 0; L < t->n_levels; L++)
        ntok[L] = t->n_tokens[L];
    jb_gguf_writer_set_str(w, "general.architecture", JB_META_ARCH);
    jb_gguf_writer_set_str(w, "encore.kind", "take");
    jb_gguf_writer_set_u32(w, "encore.take.version", JB_TAKE_FORMAT_VERSION);
    jb_gguf_writer_set_i32(w, "encore.take.sample_rate", JB_SAMPLE_RATE);
    jb_gguf_writer_set_i32(w, "encore.take.levels", t->n_levels);
    jb_gguf_writer_set_i32(w, "encore.take.n_candidates", t->n_candidates);
    jb_gguf_writer_set_i32(w, "encore.take.bins", t->bins);
    jb_gguf_writer_set_arr_i32(w, "encore.take.hops", t->hop, n);
    jb_gguf_writer_set_arr(w, "encore.take.n_tokens", JB_GGUF_TYPE_INT64, ntok, n);
    jb_gguf_writer_set_i64(w, "encore.take.riff_samples", t->riff_samples);
    jb_gguf_writer_set_i64(w, "encore.take.total_length", t->total_length);
    jb_gguf_writer_set_str(w, "encore.take.artist", t->artist);
    jb_gguf_writer_set_str(w, "encore.take.genre", t->genre);
    jb_gguf_writer_set_str(w, "encore.take.lyrics", t->lyrics);
    jb_gguf_writer_set_str(w, "encore.take.mode", mode_name(s->mode));
    /* i64 bit pattern of the u64 seed: the reader's integer getter is int64 */
    jb_gguf_writer_set_i64(w, "encore.take.seed", (int64_t)s->seed);
    jb_gguf_writer_set_arr_f32(w, "encore.take.temp", s->temp, n);
    jb_gguf_writer_set_i32(w, "encore.take.top_k", s->top_k);
    jb_gguf_writer_set_f32(w, "encore.take.top_p", s->top_p);
    jb_gguf_writer_set_arr_f32(w, "encore.take.hop_fraction", s->hop_fraction, n);
    jb_gguf_writer_set_arr_i32(w, "encore.take.chunk_size", s->chunk_size, n);
    jb_gguf_writer_set_arr_i32(w, "encore.take.max_batch", s->max_batch, n);
}

enum jb_status jb_take_save(const struct jb_take *t, const char *path)
{
    if (!t || !path)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_take_save: take and path are required");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    if (!w) return JB_STATUS_ERR_NOMEM;
    take_write_meta(w, t);
    for (int L = 0; L < t->n_levels; L++) {
        if (t->n_tokens[L] == 0) continue;
        char name[32];
        snprintf(name, sizeof name, "codes.level%d", L);
        jb_gguf_writer_add_tensor(
          w, name, JB_DTYPE_I32, 2, (const int64_t[]){ t->n_candidates, t->n_tokens[L] });
    }
    enum jb_status st = jb_gguf_writer_begin(w, path);
    for (int L = 0; !st && L < t->n_levels; L++) {
        if (t->n_tokens[L] == 0) continue;
        size_t bytes = (size_t)t->n_candidates * (size_t)t->n_tokens[L] * sizeof(int32_t);
        st           = jb_gguf_writer_write_tensor(w, t->codes[L], bytes);
    }
    if (!st) st = jb_gguf_writer_finish(w);
    jb_gguf_writer_free(w);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* load: every value is checked before use; the file is closed before returning               */

#define BAD(...) jb_fail(JB_STATUS_ERR_FORMAT, __VA_ARGS__)

static enum jb_status get_i64(const struct jb_gguf *g,
                              const char *path,
                              const char *key,
                              int64_t lo,
                              int64_t hi,
                              int64_t *out)
{
    if (!jb_gguf_get_int(g, key, out))
        return BAD("take '%s': metadata '%s' is missing or not an integer", path, key);
    if (*out < lo || *out > hi)
        return BAD("take '%s': %s = %lld, expected %lld..%lld",
                   path,
                   key,
                   (long long)*out,
                   (long long)lo,
                   (long long)hi);
    return JB_STATUS_OK;
}

static enum jb_status get_arr(const struct jb_gguf *g,
                              const char *path,
                              const char *key,
                              int n,
                              bool is_float)
{
    int64_t k = jb_gguf_find_key(g, key);
    if (k < 0 || jb_gguf_kv_type(g, k) != JB_GGUF_TYPE_ARRAY ||
        jb_gguf_arr_len(g, k) != (uint64_t)n)
        return BAD(
          "take '%s': metadata '%s' is missing or not an array of %d values", path, key, n);
    enum jb_gguf_type at = jb_gguf_arr_type(g, k);
    bool ok =
      is_float ? (at == JB_GGUF_TYPE_FLOAT32 || at == JB_GGUF_TYPE_FLOAT64)
               : (at != JB_GGUF_TYPE_FLOAT32 && at != JB_GGUF_TYPE_FLOAT64 &&
                  at != JB_GGUF_TYPE_STRING && at != JB_GGUF_TYPE_ARRAY && at != JB_GGUF_TYPE_BOOL);
    return ok ? JB_STATUS_OK
              : BAD("take '%s': metadata '%s' has elements of type %s",
                    path,
                    key,
                    jb_gguf_type_name(at));
}

static const char *get_str(const struct jb_gguf *g,
                           const char *path,
                           const char *key,
                           size_t max,
                           enum jb_status *st)
{
    const char *s = jb_gguf_get_str(g, key);
    if (!s)
        *st = BAD("take '%s': metadata '%s' is missing or not a string", path, key);
    else if (strlen(s) > max)
        *st =
          BAD("take '%s': metadata '%s' is %zu bytes, the limit is %zu", path, key, strlen(s), max);
    return *st ? NULL : s;
}

static enum jb_status take_read(const struct jb_gguf *g, const char *path, struct jb_take **out)
{
    const char *arch = jb_gguf_get_str(g, "general.architecture");
    const char *kind = jb_gguf_get_str(g, "encore.kind");
    if (!arch || strcmp(arch, JB_META_ARCH) != 0 || !kind || strcmp(kind, "take") != 0)
        return BAD(
          "'%s' is not an Encore take file (encore.kind '%s')", path, kind ? kind : "(none)");
    int64_t version, sr, levels, n_cand, bins, riff, total, top_k;
    enum jb_status st;
    if ((st = get_i64(g, path, "encore.take.version", 1, JB_TAKE_FORMAT_VERSION, &version)) ||
        (st = get_i64(g, path, "encore.take.sample_rate", JB_SAMPLE_RATE, JB_SAMPLE_RATE, &sr)) ||
        (st = get_i64(g, path, "encore.take.levels", 1, JB_MAX_LEVELS, &levels)) ||
        (st = get_i64(g, path, "encore.take.n_candidates", 1, JB_JOB_MAX_CANDIDATES, &n_cand)) ||
        (st = get_i64(g, path, "encore.take.bins", 1, 1 << 20, &bins)) ||
        (st = get_i64(g, path, "encore.take.total_length", 1, (int64_t)1 << 40, &total)) ||
        (st = get_i64(g, path, "encore.take.top_k", 0, INT32_MAX, &top_k)))
        return st;
    const int n = (int)levels;
    if ((st = get_arr(g, path, "encore.take.hops", n, false)) ||
        (st = get_arr(g, path, "encore.take.n_tokens", n, false)) ||
        (st = get_arr(g, path, "encore.take.temp", n, true)) ||
        (st = get_arr(g, path, "encore.take.hop_fraction", n, true)) ||
        (st = get_arr(g, path, "encore.take.chunk_size", n, false)) ||
        (st = get_arr(g, path, "encore.take.max_batch", n, false)))
        return st;

    int32_t hop[JB_MAX_LEVELS];
    int64_t ntok[JB_MAX_LEVELS];
    for (int L = 0; L < n; L++) {
        int64_t h, k;
        jb_gguf_get_arr_int(g, "encore.take.hops", (uint64_t)L, &h);
        jb_gguf_get_arr_int(g, "encore.take.n_tokens", (uint64_t)L, &k);
        /* hops grow by whole factors; each level's span fits the top level's */
        if (h < 1 || h > (1 << 20) || (L > 0 && (h <= hop[L - 1] || h % hop[L - 1] != 0)))
            return BAD("take '%s': hop %lld at level %d is not a multiple of the level below",
                       path,
                       (long long)h,
                       L);
        if (k < 0 || k > ((int64_t)1 << 40) / h)
            return BAD("take '%s': %lld codes at level %d", path, (long long)k, L);
        hop[L]  = (int32_t)h;
        ntok[L] = k;
    }
    const int64_t span = ntok[n - 1] * hop[n - 1];
    if (ntok[n - 1] < 1) return BAD("take '%s': the top level holds no codes", path);
    for (int L = 0; L < n - 1; L++)
        if (ntok[L] * hop[L] > span)
            return BAD("take '%s': level %d covers %lld samples, more than the top level's %lld",
                       path,
                       L,
                       (long long)(ntok[L] * hop[L]),
                       (long long)span);
    if ((st = get_i64(g, path, "encore.take.riff_samples", 0, span, &riff))) return st;
    if (riff % hop[n - 1] != 0)
        return BAD("take '%s': riff_samples %lld is not a multiple of the top-level hop %d",
                   path,
                   (long long)riff,
                   hop[n - 1]);

    const char *artist = get_str(g, path, "encore.take.artist", JB_LABEL_MAX_BYTES, &st);
    const char *genre  = st ? NULL : get_str(g, path, "encore.take.genre", JB_LABEL_MAX_BYTES, &st);
    const char *lyrics =
      st ? NULL : get_str(g, path, "encore.take.lyrics", JB_LYRICS_MAX_BYTES, &st);
    const char *mode_s = st ? NULL : get_str(g, path, "encore.take.mode", 32, &st);
    if (st) return st;
    struct jb_take_settings set = { 0 };
    if (!mode_parse(mode_s, &set.mode)) return BAD("take '%s': unknown mode '%s'", path, mode_s);
    int64_t seed;
    if (!jb_gguf_get_int(g, "encore.take.seed", &seed))
        return BAD("take '%s': metadata 'encore.take.seed' is missing or not an integer", path);
    set.seed  = (uint64_t)seed;
    set.top_k = (int32_t)top_k;
    double top_p;
    if (!jb_gguf_get_float(g, "encore.take.top_p", &top_p) || !(top_p >= 0.0 && top_p <= 1.0))
        return BAD("take '%s': metadata 'encore.take.top_p' is missing or outside [0, 1]", path);
    set.top_p = (float)top_p;
    for (int L = 0; L < n; L++) {
        double tv, hf;
        int64_t cs, mb;
        jb_gguf_get_arr_float(g, "encore.take.temp", (uint64_t)L, &tv);
        jb_gguf_get_arr_float(g, "encore.take.hop_fraction", (uint64_t)L, &hf);
        jb_gguf_get_arr_int(g, "encore.take.chunk_size", (uint64_t)L, &cs);
        jb_gguf_get_arr_int(g, "encore.take.max_batch", (uint64_t)L, &mb);
        if (!(tv > 0.0 && tv < 1e6) || !(hf >= 0.0 && hf <= 1.0) || cs < 0 || cs > (1 << 20) ||
            mb < 0 || mb > JB_JOB_MAX_CANDIDATES)
            return BAD("take '%s': settings of level %d out of range (temp %g, hop fraction %g, "
                       "chunk %lld, batch %lld)",
                       path,
                       L,
                       tv,
                       hf,
                       (long long)cs,
                       (long long)mb);
        set.temp[L]         = (float)tv;
        set.hop_fraction[L] = (float)hf;
        set.chunk_size[L]   = (int32_t)cs;
        set.max_batch[L]    = (int32_t)mb;
    }

    /* tensors: exactly the levels with codes, int32 [n_candidates, n_tokens], codes < bins */
    int64_t expected = 0;
    for (int L = 0; L < n; L++)
        expected += ntok[L] > 0;
    if (jb_gguf_n_tensors(g) != expected)
        return BAD("take '%s': %lld tensors, expected %lld",
                   path,
                   (long long)jb_gguf_n_tensors(g),
                   (long long)expected);
    /* shapes first, so that a hostile header cannot make us allocate what the file lacks */
    const struct jb_tensor *tens[JB_MAX_LEVELS] = { 0 };
    for (int L = 0; L < n; L++) {
        if (ntok[L] == 0) continue;
        char name[32];
        snprintf(name, sizeof name, "codes.level%d", L);
        const struct jb_tensor *tt = jb_gguf_find_tensor(g, name);
        if (!tt || tt->type != JB_DTYPE_I32 || tt->n_dims != 2 || tt->shape[0] != n_cand ||
            tt->shape[1] != ntok[L])
            return BAD("take '%s': tensor '%s' is missing or not int32 [%lld, %lld]",
                       path,
                       name,
                       (long long)n_cand,
                       (long long)ntok[L]);
        tens[L] = tt;
    }
    struct jb_take *t =
      jb_take_alloc(n, (int)n_cand, hop, (int32_t)bins, ntok, artist, genre, lyrics);
    if (!t) return JB_STATUS_ERR_NOMEM;
    t->riff_samples = riff;
    t->total_length = total;
    t->settings     = set;
    for (int L = 0; L < n && !st; L++) {
        if (!tens[L]) continue;
        const size_t count = (size_t)n_cand * (size_t)ntok[L];
        memcpy(t->codes[L], tens[L]->data, count * sizeof(int32_t));
        for (size_t i = 0; i < count; i++) {
            if (t->codes[L][i] < 0 || t->codes[L][i] >= bins) {
                st = BAD("take '%s': code %d at level %d is outside [0, %lld)",
                         path,
                         t->codes[L][i],
                         L,
                         (long long)bins);
                break;
            }
        }
    }
    if (st) {
        jb_take_free(t);
        return st;
    }
    *out = t;
    return JB_STATUS_OK;
}

enum jb_status jb_take_load(const char *path, struct jb_take **out)
{
    if (!out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_take_load: out is required");
    *out = NULL;
    if (!path) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_take_load: path is required");
    struct jb_gguf *g = jb_gguf_open(path);
    if (!g) {
        char why[900];
        snprintf(why, sizeof why, "%s", jb_last_error());
        /* an unreadable file stays an I/O error; anything the reader rejected is a format error */
        return jb_fail(access(path, R_OK) == 0 ? JB_STATUS_ERR_FORMAT : JB_STATUS_ERR_IO,
                       "take '%s': %s",
                       path,
                       why);
    }
    enum jb_status st = take_read(g, path, out);
    jb_gguf_close(g);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* decode                                                                                    */

enum jb_status jb_take_decode(struct jb_session *s,
                              const struct jb_take *t,
                              int candidate,
                              int level,
                              float *out,
                              const struct jb_callbacks *cb)
{
    if (!s || !t || !out)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_take_decode: NULL argument");
    if (level < 0 || level >= t->n_levels || candidate < 0 || candidate >= t->n_candidates)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "jb_take_decode: level %d / candidate %d out of range (%d levels, %d "
                       "candidates)",
                       level,
                       candidate,
                       t->n_levels,
                       t->n_candidates);
    if (t->n_levels != s->n_levels || t->hop[level] != s->hop[level] ||
        t->bins > s->vqvae->vq_hp.l_bins)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "jb_take_decode: the take (%d levels, hop %d, %d codes) was not made with "
                       "this model (%d levels, hop %d, %d codes)",
                       t->n_levels,
                       t->hop[level],
                       t->bins,
                       s->n_levels,
                       s->hop[level],
                       s->vqvae->vq_hp.l_bins);
    if (t->n_tokens[level] == 0) return JB_STATUS_OK;
    /* about 3 s of audio per chunk bounds the decoder's work memory */
    const int64_t chunk = ((int64_t)1 << 17) / t->hop[level];
    return jb_vqvae_decode_level(s->vqvae->vqvae,
                                 level,
                                 jb_take_codes(t, level, candidate),
                                 t->n_tokens[level],
                                 out,
                                 chunk,
                                 cb);
}
