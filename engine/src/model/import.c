/*
 * model/import.c - `encore import`: an OpenAI checkpoint (.pth.tar, legacy or zip) to an Encore
 * GGUF model file.
 *
 * Hyper-parameters: the released preset of the model kind (jukebox-spec §1), overridden by a
 * JSON hps file or by the checkpoint's own 'hps' dict when asked, and then every structural
 * size (widths, depths, context, table sizes, codebook) is taken from the tensors themselves so
 * that a mismatching preset is caught here rather than at sampling time. Every hyper-parameter
 * is range-checked (format/meta.c) before any is used, and a value of the wrong type is an error
 * naming the field.
 *
 * Checks before writing: every tensor's shape is sane (at most 2^31 elements, no dimension 0),
 * needs no more elements than its storage holds (a stride-0 "broadcast" view of 800 bytes
 * standing for gigabytes is refused; no Jukebox parameter is a broadcast), and the model code
 * itself is built from the declared names and shapes (strict, like load_state_dict) before a
 * byte is written. The output is then bounded by the model's own size, which is bounded by the
 * bytes the checkpoint really stores, and free disk space is checked up front.
 *
 * Streaming: tensors are read, converted and written one at a time (two buffers of the largest
 * tensor), and the checkpoint's pages are given back as they are read (format/ckpt.c), so the
 * 5b prior imports in a few hundred MB. The output goes to a unique temporary beside the final
 * path (core/outfile.h, through the GGUF writer) and is renamed into place only when complete:
 * an interrupted or failed import leaves no half-written model.
 *
 * Id tables: priors get the artist and genre names of their label version (v2 for 5b,
 * 5b_lyrics and the upsamplers, v3 for 1b_lyrics) from the installed jukebox-ids folder unless
 * paths are given (see find_ids_dir).
 *
 * Storage: the chosen dtype applies to weight matrices (tensors with two or more dimensions)
 * except the VQ codebooks; biases, norms and codebooks stay fp32. For fp16_params priors (5b,
 * 5b_lyrics) every Conv1D '.w' is rounded to fp16 first, as the reference does at load time.
 */
#include "encore/engine.h"
#include "core/fp16.h"
#include "format/ckpt.h"
#include "format/gguf.h"
#include "format/meta.h"
#include "model/model.h"
#include "format/presets.h"
#include "labels/lyrics.h"
#include "labels/labels.h"

#include "prior/prior.h"
#include "vqvae/vqvae.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Largest tensor import accepts (the released 5b's largest has 2.3e7 elements). */
#define IMPORT_MAX_TENSOR_ELEMS ((int64_t)1 << 31)

/* ---------------------------------------------------------------------------------------- */
/* hyper-parameter sources: a JSON object or the checkpoint's pickled dict                   */

struct hps_src {
    const cJSON *json;
    const struct jb_pyval *py;
    enum jb_status err; /* first bad value (the message names the field) */
};

/* Records the first error; later setters keep going but change nothing. */
static void hps_bad(struct hps_src *s, const char *key, const char *why)
{
    if (s->err) return;
    s->err = jb_fail(JB_STATUS_ERR_INVALID_ARG,
                     "import: hyper-parameter '%s' %s (from %s)",
                     key,
                     why,
                     s->json ? "the --hps JSON" : "the checkpoint's hps");
}

/* A number (bools count as 0/1). Absent or None/null: false. Present but not a number: false
 * and an error naming the field. */
static bool hps_num(struct hps_src *s, const char *key, double *out)
{
    if (s->json) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->json, key);
        if (!v || cJSON_IsNull(v)) return false;
        if (cJSON_IsBool(v)) {
            *out = cJSON_IsTrue(v) ? 1 : 0;
            return true;
        }
        if (!cJSON_IsNumber(v)) {
            hps_bad(s, key, "is not a number");
            return false;
        }
        *out = v->valuedouble;
        return true;
    }
    if (s->py) {
        const struct jb_pyval *v = jb_pyval_dict_get(s->py, key);
        if (!v) return false;
        switch (jb_pyval_type(v)) {
        case JB_PY_NONE:
            return false;
        case JB_PY_BOOL:
        case JB_PY_INT:
            *out = (double)jb_pyval_int(v);
            return true;
        case JB_PY_FLOAT:
            *out = jb_pyval_float(v);
            return true;
        default: {
            char why[96];
            snprintf(
              why, sizeof why, "is a %s, not a number", jb_pyval_type_name(jb_pyval_type(v)));
            hps_bad(s, key, why);
            return false;
        }
        }
    }
    return false;
}

/* Element i of a list value ([3, 2, 2], [120, 4111]); a missing element keeps the preset. */
static bool hps_arr(struct hps_src *s, const char *key, int i, double *out)
{
    if (s->json) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->json, key);
        if (!v || cJSON_IsNull(v)) return false;
        if (!cJSON_IsArray(v)) {
            hps_bad(s, key, "is not a list of numbers");
            return false;
        }
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!e) return false;
        if (!cJSON_IsNumber(e)) {
            hps_bad(s, key, "is not a list of numbers");
            return false;
        }
        *out = e->valuedouble;
        return true;
    }
    if (s->py) {
        const struct jb_pyval *v = jb_pyval_dict_get(s->py, key);
        if (!v || jb_pyval_type(v) == JB_PY_NONE) return false;
        if (jb_pyval_type(v) != JB_PY_LIST && jb_pyval_type(v) != JB_PY_TUPLE) {
            hps_bad(s, key, "is not a list of numbers");
            return false;
        }
        if ((size_t)i >= jb_pyval_len(v)) return false;
        const struct jb_pyval *e = jb_pyval_item(v, (size_t)i);
        if (jb_pyval_type(e) == JB_PY_INT)
            *out = (double)jb_pyval_int(e);
        else if (jb_pyval_type(e) == JB_PY_FLOAT)
            *out = jb_pyval_float(e);
        else {
            hps_bad(s, key, "is not a list of numbers");
            return false;
        }
        return true;
    }
    return false;
}

static bool hps_is_null(const struct hps_src *s, const char *key)
{
    if (s->json) return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s->json, key));
    if (s->py) {
        const struct jb_pyval *v = jb_pyval_dict_get(s->py, key);
        return v && jb_pyval_type(v) == JB_PY_NONE;
    }
    return false;
}

/* An integer that fits int32 (the ranges of each field are checked by the validators). */
static bool hps_int_ok(struct hps_src *s, const char *key, double v)
{
    if (v == floor(v) && v >= -2147483648.0 && v <= 2147483647.0) return true;
    char why[96];
    snprintf(why, sizeof why, "= %g is not a 32-bit integer", v);
    hps_bad(s, key, why);
    return false;
}

static void set_i32(struct hps_src *s, const char *key, int32_t *dst)
{
    double v;
    if (hps_num(s, key, &v) && hps_int_ok(s, key, v)) *dst = (int32_t)v;
}
static void set_f32(struct hps_src *s, const char *key, float *dst)
{
    double v;
    if (!hps_num(s, key, &v)) return;
    if (!(fabs(v) <= 1e30)) {
        hps_bad(s, key, "is not a finite number");
        return;
    }
    *dst = (float)v;
}
static void set_f64(struct hps_src *s, const char *key, double *dst)
{
    double v;
    if (!hps_num(s, key, &v)) return;
    if (!isfinite(v)) {
        hps_bad(s, key, "is not a finite number");
        return;
    }
    *dst = v;
}
static void set_bool(struct hps_src *s, const char *key, bool *dst)
{
    double v;
    if (hps_num(s, key, &v)) *dst = v != 0;
}
static void set_arr3(struct hps_src *s, const char *key, int32_t *dst)
{
    for (int i = 0; i < 3; i++) {
        double v;
        if (hps_arr(s, key, i, &v) && hps_int_ok(s, key, v)) dst[i] = (int32_t)v;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* kind detection and structure from tensor shapes                                           */

static const struct jb_ckpt_entry *find_shape(const struct jb_ckpt *c, const char *name, int n_dims)
{
    const struct jb_ckpt_entry *e = jb_ckpt_find(c, name);
    return (e && e->n_dims == n_dims) ? e : NULL;
}

/* How many consecutive indices first, first+1, ... name an existing tensor. */
static int count_indexed_from(const struct jb_ckpt *c, const char *fmt, int first)
{
    char name[256];
    int n = first;
    for (;; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!jb_ckpt_find(c, name)) return n - first;
    }
}

static int count_indexed(const struct jb_ckpt *c, const char *fmt)
{
    return count_indexed_from(c, fmt, 0);
}

static bool x_out_tied(const struct jb_ckpt *c)
{
    const struct jb_ckpt_entry *a = jb_ckpt_find(c, "prior.x_emb.weight");
    const struct jb_ckpt_entry *b = jb_ckpt_find(c, "prior.x_out.weight");
    return a && b && a->storage == b->storage && a->storage_offset == b->storage_offset;
}

static enum jb_status detect_kind(const struct jb_ckpt *c,
                                  struct hps_src *hs,
                                  enum jb_model_preset *kind)
{
    if (jb_ckpt_find(c, "bottleneck.level_blocks.0.k")) {
        *kind = JB_PRESET_VQVAE;
        return JB_STATUS_OK;
    }
    if (!jb_ckpt_find(c, "prior.x_emb.weight"))
        return jb_fail(JB_STATUS_ERR_MODEL,
                       "import: checkpoint is neither a Jukebox VQ-VAE nor a prior "
                       "(no 'bottleneck.level_blocks.0.k' or 'prior.x_emb.weight')");
    if (jb_ckpt_find(c, "conditioner_blocks.0.x_emb.weight")) {
        double level;
        if (!hps_num(hs, "level", &level) || (level != 0 && level != 1))
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "import: this is an upsampler but its level is unknown; pass --kind "
                           "upsampler_level_0 or upsampler_level_1");
        *kind = level == 0 ? JB_PRESET_UPSAMPLER_LEVEL_0 : JB_PRESET_UPSAMPLER_LEVEL_1;
    } else if (jb_ckpt_find(c, "prime_prior.x_emb.weight")) {
        *kind = JB_PRESET_PRIOR_5B_LYRICS;
    } else if (x_out_tied(c)) {
        *kind = JB_PRESET_PRIOR_1B_LYRICS;
    } else {
        *kind = JB_PRESET_PRIOR_5B;
    }
    return JB_STATUS_OK;
}

static enum jb_status vqvae_hparams(const struct jb_ckpt *c,
                                    struct hps_src *hs,
                                    struct jb_vqvae_hparams *hp)
{
    jb_preset_vqvae(hp);
    set_i32(hs, "levels", &hp->levels);
    set_arr3(hs, "downs_t", hp->downs_t);
    set_arr3(hs, "strides_t", hp->strides_t);
    set_arr3(hs, "hvqvae_multipliers", hp->multipliers);
    set_i32(hs, "width", &hp->width);
    set_i32(hs, "depth", &hp->depth);
    set_i32(hs, "dilation_growth_rate", &hp->dilation_growth_rate);
    if (hps_is_null(hs, "dilation_cycle"))
        hp->dilation_cycle = 0;
    else
        set_i32(hs, "dilation_cycle", &hp->dilation_cycle);
    set_bool(hs, "vqvae_reverse_decoder_dilation", &hp->reverse_decoder_dilation);
    set_f32(hs, "m_conv", &hp->m_conv);
    if (hs->err) return hs->err;

    /* structure from the tensors */
    const struct jb_ckpt_entry *k = find_shape(c, "bottleneck.level_blocks.0.k", 2);
    if (!k)
        return jb_fail(JB_STATUS_ERR_MODEL,
                       "import: not a VQ-VAE checkpoint (no 2-D 'bottleneck.level_blocks.0.k'); "
                       "check --kind");
    hp->l_bins    = (int32_t)k->shape[0];
    hp->emb_width = (int32_t)k->shape[1];
    hp->levels    = count_indexed(c, "bottleneck.level_blocks.%d.k");
    return jb_vqvae_hparams_validate(hp);
}

static enum jb_status prior_hparams(const struct jb_ckpt *c,
                                    enum jb_model_preset kind,
                                    struct hps_src *hs,
                                    struct jb_prior_hparams *hp)
{
    jb_preset_prior(kind, hp);
    /* behavioural fields from the hps (structural sizes are re-derived below) */
    set_i32(hs, "heads", &hp->tr.heads);
    set_i32(hs, "attn_order", &hp->tr.attn_order);
    set_i32(hs, "blocks", &hp->tr.blocks);
    set_f32(hs, "m_mlp", &hp->tr.m_mlp);
    set_bool(hs, "labels_v3", &hp->labels_v3);
    set_i32(hs, "max_bow_genre_size", &hp->max_bow_genre_size);
    set_f64(hs, "min_duration", &hp->min_duration);
    set_f64(hs, "max_duration", &hp->max_duration);
    set_i32(hs, "sr", &hp->sr);
    set_bool(hs, "fp16_params", &hp->fp16_params);
    set_i32(hs, "n_tokens", &hp->n_tokens);
    set_i32(hs, "n_vocab", &hp->n_vocab);
    if (!hps_is_null(hs, "alignment_layer")) set_i32(hs, "alignment_layer", &hp->alignment_layer);
    if (!hps_is_null(hs, "alignment_head")) set_i32(hs, "alignment_head", &hp->alignment_head);
    if (hp->variant == JB_PRIOR_UPSAMPLER) {
        set_i32(hs, "cond_dilation_growth_rate", &hp->cond_dilation_growth_rate);
        if (hps_is_null(hs, "cond_dilation_cycle"))
            hp->cond_dilation_cycle = 0;
        else
            set_i32(hs, "cond_dilation_cycle", &hp->cond_dilation_cycle);
        set_bool(hs, "cond_res_scale", &hp->cond_res_scale);
        set_f32(hs, "cond_m_conv", &hp->cond_m_conv);
        hp->n_tokens = 0;
    }
    if (hp->variant == JB_PRIOR_TOP_LYRICS_ENC) {
        set_i32(hs, "prime_heads", &hp->prime.heads);
        set_i32(hs, "prime_attn_order", &hp->prime.attn_order);
        set_i32(hs, "prime_blocks", &hp->prime.blocks);
        set_f32(hs, "prime_m_mlp", &hp->prime.m_mlp);
    }
    if (hp->variant == JB_PRIOR_TOP) hp->n_tokens = 0;
    if (hs->err) return hs->err;

    /* structural sizes from the tensors (check_tensors bounded every dimension to int32) */
    const struct jb_ckpt_entry *x_emb = find_shape(c, "prior.x_emb.weight", 2);
    const struct jb_ckpt_entry *pos   = find_shape(c, "prior.pos_emb.pos_emb", 2);
    const struct jb_ckpt_entry *genre = find_shape(c, "y_emb.bow_genre_emb.emb.weight", 2);
    const struct jb_ckpt_entry *art   = find_shape(c, "y_emb.artist_emb.emb.weight", 2);
    const struct jb_ckpt_entry *attn0 =
      find_shape(c, "prior.transformer._attn_mods.0.attn.c_attn.w", 2);
    if (!x_emb || !pos || !genre || !art || !attn0)
        return jb_fail(JB_STATUS_ERR_MODEL,
                       "import: not a %s checkpoint (no prior.x_emb, pos_emb, y_emb tables or "
                       "layer 0); check --kind",
                       jb_preset_name(kind));
    hp->tr.width  = (int32_t)x_emb->shape[1];
    hp->tr.depth  = count_indexed(c, "prior.transformer._attn_mods.%d.ln_0.weight");
    hp->tr.m_attn = (float)((double)attn0->shape[1] / 3.0 / (double)hp->tr.width);
    hp->n_genres  = (int32_t)genre->shape[0];
    hp->n_artists = (int32_t)art->shape[0];
    if (hp->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC) {
        hp->bins  = (int32_t)(x_emb->shape[0] - hp->n_vocab);
        hp->n_ctx = (int32_t)(pos->shape[0] - hp->n_tokens);
    } else {
        hp->bins  = (int32_t)x_emb->shape[0];
        hp->n_ctx = (int32_t)pos->shape[0];
    }
    hp->tr.seq_len                  = (int32_t)pos->shape[0];
    const struct jb_ckpt_entry *tot = find_shape(c, "y_emb.total_length_emb.emb.weight", 2);
    hp->timing                      = tot != NULL;
    if (tot) hp->t_bins = (int32_t)tot->shape[0];

    if (hp->variant == JB_PRIOR_UPSAMPLER) {
        const struct jb_ckpt_entry *c0 =
          find_shape(c, "conditioner_blocks.0.cond.model.0.weight", 3);
        if (!c0) return jb_fail(JB_STATUS_ERR_MODEL, "import: upsampler without conditioner conv");
        hp->cond_width = (int32_t)c0->shape[0];
        hp->cond_downs = count_indexed_from(c, "conditioner_blocks.0.cond.model.%d.1.weight", 1);
        hp->cond_depth =
          count_indexed(c, "conditioner_blocks.0.cond.model.1.0.blocks.%d.model.1.weight");
        if (hp->cond_downs < 1)
            return jb_fail(JB_STATUS_ERR_MODEL, "import: upsampler conditioner has no stages");
    }
    if (hp->variant == JB_PRIOR_TOP_LYRICS_ENC) {
        const struct jb_ckpt_entry *pe = find_shape(c, "prime_prior.x_emb.weight", 2);
        const struct jb_ckpt_entry *pp = find_shape(c, "prime_prior.pos_emb.pos_emb", 2);
        const struct jb_ckpt_entry *pa =
          find_shape(c, "prime_prior.transformer._attn_mods.0.attn.c_attn.w", 2);
        if (!pe || !pp || !pa)
            return jb_fail(JB_STATUS_ERR_MODEL, "import: lyric prior lacks its lyric encoder");
        hp->n_vocab       = (int32_t)pe->shape[0];
        hp->prime.width   = (int32_t)pe->shape[1];
        hp->prime.depth   = count_indexed(c, "prime_prior.transformer._attn_mods.%d.ln_0.weight");
        hp->prime.seq_len = (int32_t)pp->shape[0];
        hp->prime.m_attn  = (float)((double)pa->shape[1] / 3.0 / (double)hp->prime.width);
        hp->n_tokens      = hp->prime.seq_len;
    }
    return jb_prior_hparams_validate(hp);
}

/* ---------------------------------------------------------------------------------------- */
/* vocabularies                                                                              */

static enum jb_status write_vocab(struct jb_gguf_writer *w,
                                  const char *what,
                                  const char *path,
                                  int32_t table_size)
{
    struct jb_label_vocab *v = NULL;
    enum jb_status st        = jb_label_vocab_load_file(path, &v);
    if (st) return st;
    size_t n           = jb_label_vocab_count(v);
    const char **names = jb_calloc(n ? n : 1, sizeof *names);
    int32_t *ids       = jb_calloc(n ? n : 1, sizeof *ids);
    if (!names || !ids) {
        free(names);
        free(ids);
        jb_label_vocab_free(v);
        return JB_STATUS_ERR_NOMEM;
    }
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name;
        int32_t id;
        jb_label_vocab_entry(v, i, &name, &id);
        if (id < 0 || id >= table_size) {
            dropped++;
            continue;
        }
        names[kept] = name;
        ids[kept++] = id;
    }
    if (dropped)
        jb_log(JB_LOG_WARN,
               "import: %zu %s names have ids beyond the model's table of %d; dropped",
               dropped,
               what,
               table_size);
    char key[64];
    snprintf(key, sizeof key, "jukebox.labels.%s_names", what);
    jb_gguf_writer_set_arr_str(w, key, names, kept);
    snprintf(key, sizeof key, "jukebox.labels.%s_ids", what);
    jb_gguf_writer_set_arr_i32(w, key, ids, kept);
    free(names);
    free(ids);
    jb_label_vocab_free(v);
    return JB_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------- */

static bool is_fp16_param(const char *name)
{
    size_t n = strlen(name);
    return n > 2 && strcmp(name + n - 2, ".w") == 0;
}

enum jb_dtype jb_import_tensor_dtype(const char *name,
                                     int n_dims,
                                     bool vqvae,
                                     enum jb_dtype storage)
{
    if (n_dims < 2) return JB_DTYPE_F32;
    if (vqvae && strncmp(name, "bottleneck.", 11) == 0) return JB_DTYPE_F32;
    return storage;
}

static enum jb_dtype storage_for(const struct jb_ckpt_entry *e,
                                 enum jb_model_preset kind,
                                 enum jb_dtype storage)
{
    return jb_import_tensor_dtype(e->name, e->n_dims, kind == JB_PRESET_VQVAE, storage);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---------------------------------------------------------------------------------------- */
/* checks before anything is written                                                         */

static int64_t entry_numel(const struct jb_ckpt_entry *e)
{
    int64_t n = 1;
    for (int d = 0; d < e->n_dims; d++)
        n *= e->shape[d]; /* bounded by check_tensors */
    return n;
}

/* Every tensor: 1..JB_MAX_DIMS dimensions of at least 1, at most 2^31 elements, and no more
 * elements than its storage holds: a view that needs more (stride 0, overlapping strides)
 * makes a few bytes stand for gigabytes, and no Jukebox parameter is such a broadcast. */
static enum jb_status check_tensors(const struct jb_ckpt *c)
{
    for (int64_t i = 0; i < jb_ckpt_n_entries(c); i++) {
        const struct jb_ckpt_entry *e = jb_ckpt_entry(c, i);
        if (e->n_dims < 1 || e->n_dims > JB_MAX_DIMS)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "import: tensor '%s' has %d dimensions (1 to %d expected)",
                           e->name,
                           e->n_dims,
                           JB_MAX_DIMS);
        int64_t n = 1;
        for (int d = 0; d < e->n_dims; d++) {
            if (e->shape[d] < 1 || e->shape[d] > INT32_MAX ||
                __builtin_mul_overflow(n, e->shape[d], &n) || n > IMPORT_MAX_TENSOR_ELEMS)
                return jb_fail(JB_STATUS_ERR_MODEL,
                               "import: tensor '%s' has a bad shape (a dimension of %lld; at "
                               "most 2^31 elements in all)",
                               e->name,
                               (long long)e->shape[d]);
        }
        int64_t held = jb_ckpt_storage_numel(c, e->storage);
        if (n > held)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "import: tensor '%s' needs %lld elements but its storage holds %lld "
                           "(a stride-0 or overlapping view); refused",
                           e->name,
                           (long long)n,
                           (long long)held);
    }
    return JB_STATUS_OK;
}

/* Weights source over the declared output tensors: the model code checks names and shapes
 * against them exactly as it will against the file. Their data is a read-only mapping of
 * zero pages (never written, costs no memory), declared fp32 so that nothing is converted. */
struct decl_source {
    struct jb_tensor *t;
    int64_t n;
};

static const struct jb_tensor *decl_find(void *ctx, const char *name)
{
    struct decl_source *d = ctx;
    for (int64_t i = 0; i < d->n; i++)
        if (strcmp(d->t[i].name, name) == 0) return &d->t[i];
    return NULL;
}
static int64_t decl_count(void *ctx)
{
    return ((struct decl_source *)ctx)->n;
}
static const struct jb_tensor *decl_get(void *ctx, int64_t i)
{
    struct decl_source *d = ctx;
    return i >= 0 && i < d->n ? &d->t[i] : NULL;
}

static enum jb_status check_against_model(enum jb_model_preset kind,
                                          const struct jb_vqvae_hparams *vhp,
                                          const struct jb_prior_hparams *php,
                                          struct jb_tensor *t,
                                          int64_t n,
                                          size_t max_bytes)
{
    void *zeros = mmap(NULL,
                       max_bytes ? max_bytes : 1,
                       PROT_READ,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1,
                       0);
    if (zeros == MAP_FAILED)
        return jb_fail(JB_STATUS_ERR_NOMEM, "import: cannot map %zu bytes", max_bytes);
    for (int64_t i = 0; i < n; i++)
        t[i].data = zeros;
    struct decl_source ds        = { t, n };
    struct jb_weights_source src = {
        .find = decl_find, .count = decl_count, .get = decl_get, .ctx = &ds
    };
    enum jb_status st     = JB_STATUS_OK;
    struct jb_backend *be = jb_backend_init("cpu", 1);
    if (be) be->weights_copy_min = 0; /* the zero pages are never read: nothing to copy */
    struct jb_weights *w = be ? jb_weights_init(&src) : NULL;
    if (!w) {
        st = JB_STATUS_ERR_NOMEM;
    } else if (kind == JB_PRESET_VQVAE) {
        struct jb_vqvae *vq = jb_vqvae_init(vhp, w, be);
        st                  = vq ? jb_weights_check_all_used(w) : JB_STATUS_ERR_MODEL;
        jb_vqvae_free(vq);
    } else {
        struct jb_prior *pr = jb_prior_init(php, w, be);
        st                  = pr ? jb_weights_check_all_used(w) : JB_STATUS_ERR_MODEL;
        jb_prior_free(pr);
    }
    if (st) {
        char why[1024];
        snprintf(why, sizeof why, "%s", jb_last_error());
        st = jb_fail(JB_STATUS_ERR_MODEL,
                     "import: checkpoint does not match the %s model: %s",
                     jb_preset_name(kind),
                     why);
    }
    jb_weights_free(w);
    jb_backend_free(be);
    munmap(zeros, max_bytes ? max_bytes : 1);
    for (int64_t i = 0; i < n; i++)
        t[i].data = NULL;
    return st;
}

/* The folder holding the installed jukebox-ids tables, or NULL: $ENCORE_DATA_DIR, then
 * ../share/encore beside the running program, then the install and build-tree folders the
 * engine was configured with. */
static const char *find_ids_dir(char *buf, size_t len)
{
    struct stat st;
    const char *env = getenv("ENCORE_DATA_DIR");
    if (env && *env) {
        snprintf(buf, len, "%s/jukebox-ids", env);
        if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return buf;
    }
    char exe[PATH_MAX / 2];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n]      = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/../share/encore/jukebox-ids", exe);
            if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return buf;
        }
    }
#ifdef ENCORE_DATA_INSTALL_DIR
    snprintf(buf, len, "%s/jukebox-ids", ENCORE_DATA_INSTALL_DIR);
    if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return buf;
#endif
#ifdef ENCORE_DATA_BUILD_DIR
    snprintf(buf, len, "%s/jukebox-ids", ENCORE_DATA_BUILD_DIR);
    if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return buf;
#endif
    return NULL;
}

/* Embeds the artist and genre names: the given tables, else the installed ones of the
 * model's label version. Missing installed tables only cost the names (ids still work). */
static enum jb_status write_vocabs(struct jb_gguf_writer *w,
                                   const struct jb_import_params *params,
                                   const struct jb_prior_hparams *php)
{
    char dir_buf[PATH_MAX], art[PATH_MAX + 32], gen[PATH_MAX + 32];
    const char *artist = params->artist_ids_path, *genre = params->genre_ids_path;
    const char *v = php->labels_v3 ? "v3" : "v2";
    if (!artist || !genre) {
        const char *dir = params->ids_dir ? params->ids_dir : find_ids_dir(dir_buf, sizeof dir_buf);
        if (dir) {
            snprintf(art, sizeof art, "%s/%s_artist_ids.txt", dir, v);
            snprintf(gen, sizeof gen, "%s/%s_genre_ids.txt", dir, v);
            if (!artist) artist = access(art, R_OK) == 0 ? art : NULL;
            if (!genre) genre = access(gen, R_OK) == 0 ? gen : NULL;
            if (!artist || !genre)
                jb_log(JB_LOG_WARN,
                       "import: %s lacks the %s %s table; the model will take numeric ids for "
                       "it",
                       dir,
                       v,
                       !artist ? "artist" : "genre");
        } else {
            jb_log(JB_LOG_WARN,
                   "import: no installed %s artist/genre id tables found (set ENCORE_DATA_DIR or "
                   "pass --artist-ids/--genre-ids); the model will take numeric ids only",
                   v);
        }
    }
    enum jb_status st;
    if (artist && (st = write_vocab(w, "artist", artist, php->n_artists))) return st;
    if (genre && (st = write_vocab(w, "genre", genre, php->n_genres))) return st;
    return JB_STATUS_OK;
}

static enum jb_status read_hps_json(const char *path, cJSON **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return jb_fail(JB_STATUS_ERR_IO, "import: cannot open hps file '%s'", path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap      = cap ? cap * 2 : 65536;
            char *np = cap < (64u << 20) ? realloc(text, cap) : NULL;
            if (!np) {
                free(text);
                fclose(f);
                return jb_fail(JB_STATUS_ERR_FORMAT, "import: hps file '%s' is too large", path);
            }
            text = np;
        }
        size_t got = fread(text + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    fclose(f);
    text[len] = '\0';
    *out      = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(*out))
        return jb_fail(JB_STATUS_ERR_FORMAT, "import: '%s' is not a JSON object of hps", path);
    return JB_STATUS_OK;
}

/* Free space in the folder of path, or UINT64_MAX if unknown. */
static uint64_t free_space(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) return UINT64_MAX;
    return (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
}

enum jb_status jb_import(const struct jb_import_params *params, const struct jb_callbacks *cb)
{
    if (!params || !params->src_path || !params->dst_path)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "import: source and destination are required");
    if (params->storage != JB_DTYPE_F32 && params->storage != JB_DTYPE_F16 &&
        params->storage != JB_DTYPE_BF16)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "import: storage must be f32, f16 or bf16");

    enum jb_status st        = JB_STATUS_OK;
    struct jb_ckpt *ckpt     = NULL;
    cJSON *json              = NULL;
    struct jb_gguf_writer *w = NULL;
    float *f32               = NULL;
    void *out                = NULL;
    int64_t *order           = NULL;
    struct jb_tensor *decl   = NULL;
    uint8_t *seen            = NULL;

    ckpt = jb_ckpt_open(params->src_path);
    if (!ckpt) return JB_STATUS_ERR_FORMAT;
    if ((st = check_tensors(ckpt))) goto done;

    struct hps_src hs = { 0 };
    if (params->hps_json_path) {
        if ((st = read_hps_json(params->hps_json_path, &json))) goto done;
        hs.json = json;
    } else if (params->use_ckpt_hps) {
        hs.py = jb_ckpt_hps(ckpt);
        if (!hs.py || jb_pyval_type(hs.py) != JB_PY_DICT) {
            st = jb_fail(JB_STATUS_ERR_MODEL, "import: checkpoint has no 'hps' dict to use");
            goto done;
        }
    }

    enum jb_model_preset kind;
    if (params->kind) {
        if (!jb_preset_parse(params->kind, &kind)) {
            st = jb_fail(JB_STATUS_ERR_INVALID_ARG,
                         "import: unknown kind '%s' (vqvae, upsampler_level_0, upsampler_level_1, "
                         "prior_5b, prior_5b_lyrics, prior_1b_lyrics)",
                         params->kind);
            goto done;
        }
    } else if ((st = detect_kind(ckpt, &hs, &kind))) {
        goto done;
    }

    w = jb_gguf_writer_init();
    if (!w) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    jb_gguf_writer_set_str(w, "general.architecture", JB_META_ARCH);
    jb_gguf_writer_set_str(w, "general.name", params->name ? params->name : jb_preset_name(kind));
    jb_gguf_writer_set_str(w, "encore.preset", jb_preset_name(kind));
    jb_gguf_writer_set_str(w, "encore.source", base_name(params->src_path));
    jb_gguf_writer_set_bool(w, "encore.untrained", params->untrained);

    struct jb_vqvae_hparams vhp = { 0 };
    struct jb_prior_hparams php = { 0 };
    if (kind == JB_PRESET_VQVAE) {
        if ((st = vqvae_hparams(ckpt, &hs, &vhp))) goto done;
        jb_gguf_writer_set_str(w, "encore.kind", "vqvae");
        jb_meta_write_vqvae(w, &vhp);
    } else {
        if ((st = prior_hparams(ckpt, kind, &hs, &php))) goto done;
        jb_gguf_writer_set_str(w, "encore.kind", "prior");
        jb_meta_write_prior(w, &php);
        jb_gguf_writer_set_str(
          w, "jukebox.lyrics.vocab", jb_lyrics_vocab(php.labels_v3 ? JB_LABEL_V3 : JB_LABEL_V2));
        if ((st = write_vocabs(w, params, &php))) goto done;
    }

    /* declare tensors (the tied duplicate output matrix is stored once, as x_emb) */
    int64_t n_entries = jb_ckpt_n_entries(ckpt);
    order             = jb_calloc((size_t)(n_entries ? n_entries : 1), sizeof *order);
    decl              = jb_calloc((size_t)(n_entries ? n_entries : 1), sizeof *decl);
    if (!order || !decl) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    int64_t n_out = 0, max_elems = 1, max_storage = 0;
    uint64_t out_bytes = 0;
    bool tied          = kind != JB_PRESET_VQVAE && !php.merged_decoder;
    for (int64_t i = 0; i < n_entries; i++) {
        const struct jb_ckpt_entry *e = jb_ckpt_entry(ckpt, i);
        if (tied && strcmp(e->name, "prior.x_out.weight") == 0) {
            if (!x_out_tied(ckpt)) {
                st = jb_fail(JB_STATUS_ERR_MODEL,
                             "import: prior.x_out.weight must be tied to prior.x_emb.weight for "
                             "%s, but they are stored separately",
                             jb_preset_name(kind));
                goto done;
            }
            continue;
        }
        int64_t numel      = entry_numel(e);
        enum jb_dtype type = storage_for(e, kind, params->storage);
        if (numel > max_elems) max_elems = numel;
        if (e->storage > max_storage) max_storage = e->storage;
        out_bytes += (uint64_t)numel * jb_dtype_size(type);
        struct jb_tensor *t = &decl[n_out];
        t->type             = JB_DTYPE_F32;
        t->n_dims           = e->n_dims;
        t->name             = e->name;
        memcpy(t->shape, e->shape, (size_t)e->n_dims * sizeof *t->shape);
        if (jb_gguf_writer_add_tensor(w, e->name, type, e->n_dims, e->shape) < 0) {
            st = JB_STATUS_ERR_MODEL;
            goto done;
        }
        order[n_out++] = i;
    }

    /* The model code is the judge of names and shapes: build it from the declarations. */
    if ((st =
           check_against_model(kind, &vhp, &php, decl, n_out, (size_t)max_elems * sizeof(float))))
        goto done;

    /* What is written is bounded by what the checkpoint really stores: overlapping views of a
     * few storages (or compressed storages) cannot make a small file write a huge one. */
    seen = jb_calloc((size_t)max_storage + 1, 1);
    if (!seen) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    uint64_t stored = 0, written = 0;
    for (int64_t k = 0; k < n_out; k++) {
        const struct jb_ckpt_entry *e = jb_ckpt_entry(ckpt, order[k]);
        written += (uint64_t)entry_numel(e);
        if (!seen[e->storage]) {
            seen[e->storage] = 1;
            stored += (uint64_t)jb_ckpt_storage_numel(ckpt, e->storage);
        }
    }
    struct stat sst;
    uint64_t file_size = stat(params->src_path, &sst) == 0 ? (uint64_t)sst.st_size : 0;
    if (written > stored || stored > file_size) {
        st = jb_fail(JB_STATUS_ERR_MODEL,
                     "import: the model's %llu elements are not all stored in the checkpoint "
                     "(%llu elements stored, file of %llu bytes): overlapping or compressed "
                     "storages are refused",
                     (unsigned long long)written,
                     (unsigned long long)stored,
                     (unsigned long long)file_size);
        goto done;
    }
    uint64_t avail = free_space(params->dst_path);
    if (out_bytes + (1u << 20) > avail) {
        st = jb_fail(JB_STATUS_ERR_IO,
                     "import: '%s' needs %.1f MiB but its folder has %.1f MiB free",
                     params->dst_path,
                     (double)out_bytes / 1048576.0,
                     (double)avail / 1048576.0);
        goto done;
    }

    f32 = jb_aligned_alloc((size_t)max_elems * sizeof(float));
    out = jb_aligned_alloc((size_t)max_elems * sizeof(float));
    if (!f32 || !out) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    /* a unique temporary beside dst_path, renamed into place by finish() */
    if ((st = jb_gguf_writer_begin(w, params->dst_path))) goto done;
    double t0 = jb_time_now();
    for (int64_t k = 0; k < n_out; k++) {
        if (jb_should_stop(cb)) {
            st = jb_fail(JB_STATUS_ERR_CANCELLED, "import: cancelled");
            goto done;
        }
        const struct jb_ckpt_entry *e = jb_ckpt_entry(ckpt, order[k]);
        size_t n                      = (size_t)entry_numel(e);
        if ((st = jb_ckpt_read_f32(ckpt, e, f32))) goto done;
        if (php.fp16_params && is_fp16_param(e->name))
            for (size_t i = 0; i < n; i++)
                f32[i] = jb_f16_to_f32(jb_f32_to_f16(f32[i]));
        enum jb_dtype type = storage_for(e, kind, params->storage);
        jb_convert_from_f32(type, f32, out, n);
        if ((st = jb_gguf_writer_write_tensor(w, out, n * jb_dtype_size(type)))) goto done;
        jb_progress_report(cb, "import", -1, k + 1, n_out, t0);
    }
    st = jb_gguf_writer_finish(w);

done:
    jb_gguf_writer_free(w); /* removes the temporary unless finish() renamed it */
    free(order);
    free(decl);
    free(seen);
    free(f32);
    free(out);
    cJSON_Delete(json);
    jb_ckpt_close(ckpt);
    return st;
}
