/*
 * model/import.c - `encore import`: an OpenAI checkpoint (.pth.tar, legacy or zip) to an Encore
 * GGUF model file.
 *
 * Hyper-parameters: the released preset of the model kind (jukebox-spec §1), overridden by a
 * JSON hps file or by the checkpoint's own 'hps' dict when asked, and then every structural
 * size (widths, depths, context, table sizes, codebook) is taken from the tensors themselves so
 * that a mismatching preset is caught here rather than at sampling time. The written file is
 * loaded back with the model code before it is moved into place: an import succeeds only if the
 * engine can build the model from it (strict names and shapes, like load_state_dict).
 *
 * Storage: the chosen dtype applies to weight matrices (tensors with two or more dimensions)
 * except the VQ codebooks; biases, norms and codebooks stay fp32. For fp16_params priors (5b,
 * 5b_lyrics) every Conv1D '.w' is rounded to fp16 first, as the reference does at load time.
 */
#include "encore/engine.h"
#include "core/fp16.h"
#include "model/ckpt.h"
#include "model/gguf.h"
#include "model/meta.h"
#include "model/model.h"
#include "model/presets.h"
#include "prior/lyrics.h"
#include "prior/labels.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* hyper-parameter sources: a JSON object or the checkpoint's pickled dict                   */

struct hps_src {
    const cJSON *json;
    const struct jb_pyval *py;
};

static bool hps_num(const struct hps_src *s, const char *key, double *out)
{
    if (s->json) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->json, key);
        if (cJSON_IsBool(v)) {
            *out = cJSON_IsTrue(v) ? 1 : 0;
            return true;
        }
        if (!cJSON_IsNumber(v)) return false;
        *out = v->valuedouble;
        return true;
    }
    if (s->py) {
        const struct jb_pyval *v = jb_pyval_dict_get(s->py, key);
        if (!v) return false;
        switch (jb_pyval_type(v)) {
        case JB_PY_BOOL:
        case JB_PY_INT:
            *out = (double)jb_pyval_int(v);
            return true;
        case JB_PY_FLOAT:
            *out = jb_pyval_float(v);
            return true;
        default:
            return false;
        }
    }
    return false;
}

/* Element i of a list value ([3, 2, 2], [120, 4111]). */
static bool hps_arr(const struct hps_src *s, const char *key, int i, double *out)
{
    if (s->json) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->json, key);
        if (!cJSON_IsArray(v)) return false;
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e)) return false;
        *out = e->valuedouble;
        return true;
    }
    if (s->py) {
        const struct jb_pyval *v = jb_pyval_dict_get(s->py, key);
        if (!v || (jb_pyval_type(v) != JB_PY_LIST && jb_pyval_type(v) != JB_PY_TUPLE)) return false;
        if ((size_t)i >= jb_pyval_len(v)) return false;
        const struct jb_pyval *e = jb_pyval_item(v, (size_t)i);
        if (jb_pyval_type(e) == JB_PY_INT)
            *out = (double)jb_pyval_int(e);
        else if (jb_pyval_type(e) == JB_PY_FLOAT)
            *out = jb_pyval_float(e);
        else
            return false;
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

static void set_i32(const struct hps_src *s, const char *key, int32_t *dst)
{
    double v;
    if (hps_num(s, key, &v) && v >= -2147483648.0 && v <= 2147483647.0) *dst = (int32_t)v;
}
static void set_f32(const struct hps_src *s, const char *key, float *dst)
{
    double v;
    if (hps_num(s, key, &v)) *dst = (float)v;
}
static void set_f64(const struct hps_src *s, const char *key, double *dst)
{
    double v;
    if (hps_num(s, key, &v)) *dst = v;
}
static void set_bool(const struct hps_src *s, const char *key, bool *dst)
{
    double v;
    if (hps_num(s, key, &v)) *dst = v != 0;
}
static void set_arr3(const struct hps_src *s, const char *key, int32_t *dst)
{
    for (int i = 0; i < 3; i++) {
        double v;
        if (hps_arr(s, key, i, &v) && v >= 0 && v < 1e6) dst[i] = (int32_t)v;
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
                                  const struct hps_src *hs,
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
                                    const struct hps_src *hs,
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
                                    const struct hps_src *hs,
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

    /* structural sizes from the tensors */
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

static enum jb_dtype storage_for(const struct jb_ckpt_entry *e,
                                 enum jb_model_preset kind,
                                 enum jb_dtype storage)
{
    if (e->n_dims < 2) return JB_DTYPE_F32;
    if (kind == JB_PRESET_VQVAE && strncmp(e->name, "bottleneck.", 11) == 0) return JB_DTYPE_F32;
    return storage;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
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
    char tmp_path[4096];
    bool wrote = false;

    ckpt = jb_ckpt_open(params->src_path);
    if (!ckpt) return JB_STATUS_ERR_FORMAT;

    struct hps_src hs = { 0 };
    if (params->hps_json_path) {
        FILE *f = fopen(params->hps_json_path, "rb");
        if (!f) {
            st =
              jb_fail(JB_STATUS_ERR_IO, "import: cannot open hps file '%s'", params->hps_json_path);
            goto done;
        }
        char *text = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
            if (len + 4096 + 1 > cap) {
                cap      = cap ? cap * 2 : 65536;
                char *np = cap < (64u << 20) ? realloc(text, cap) : NULL;
                if (!np) {
                    free(text);
                    fclose(f);
                    st = jb_fail(JB_STATUS_ERR_FORMAT, "import: hps file too large");
                    goto done;
                }
                text = np;
            }
            size_t got = fread(text + len, 1, 4096, f);
            len += got;
            if (got < 4096) break;
        }
        fclose(f);
        text[len] = '\0';
        json      = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(json)) {
            st = jb_fail(JB_STATUS_ERR_FORMAT,
                         "import: '%s' is not a JSON object of hps",
                         params->hps_json_path);
            goto done;
        }
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

    struct jb_prior_hparams php = { 0 };
    if (kind == JB_PRESET_VQVAE) {
        struct jb_vqvae_hparams vhp;
        if ((st = vqvae_hparams(ckpt, &hs, &vhp))) goto done;
        jb_gguf_writer_set_str(w, "encore.kind", "vqvae");
        jb_meta_write_vqvae(w, &vhp);
    } else {
        if ((st = prior_hparams(ckpt, kind, &hs, &php))) goto done;
        jb_gguf_writer_set_str(w, "encore.kind", "prior");
        jb_meta_write_prior(w, &php);
        jb_gguf_writer_set_str(
          w, "jukebox.lyrics.vocab", jb_lyrics_vocab(php.labels_v3 ? JB_LABEL_V3 : JB_LABEL_V2));
        if (params->artist_ids_path &&
            (st = write_vocab(w, "artist", params->artist_ids_path, php.n_artists)))
            goto done;
        if (params->genre_ids_path &&
            (st = write_vocab(w, "genre", params->genre_ids_path, php.n_genres)))
            goto done;
    }

    /* declare tensors (the tied duplicate output matrix is stored once, as x_emb) */
    int64_t n_entries = jb_ckpt_n_entries(ckpt);
    order             = jb_calloc((size_t)(n_entries ? n_entries : 1), sizeof *order);
    if (!order) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    int64_t n_out    = 0;
    size_t max_elems = 1;
    bool tied        = kind != JB_PRESET_VQVAE && !php.merged_decoder;
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
        if (e->n_dims > JB_MAX_DIMS || e->n_dims < 1) {
            st = jb_fail(
              JB_STATUS_ERR_MODEL, "import: tensor '%s' has %d dimensions", e->name, e->n_dims);
            goto done;
        }
        size_t numel = 1;
        for (int d = 0; d < e->n_dims; d++) {
            if (e->shape[d] <= 0 || !jb_mul_size(numel, (size_t)e->shape[d], &numel) ||
                numel > ((size_t)1 << 34)) {
                st = jb_fail(JB_STATUS_ERR_MODEL, "import: tensor '%s' has a bad shape", e->name);
                goto done;
            }
        }
        if (numel > max_elems) max_elems = numel;
        if (jb_gguf_writer_add_tensor(
              w, e->name, storage_for(e, kind, params->storage), e->n_dims, e->shape) < 0) {
            st = JB_STATUS_ERR_MODEL;
            goto done;
        }
        order[n_out++] = i;
    }

    snprintf(tmp_path, sizeof tmp_path, "%s.import", params->dst_path);
    f32 = jb_aligned_alloc(max_elems * sizeof(float));
    out = jb_aligned_alloc(max_elems * sizeof(float));
    if (!f32 || !out) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    if ((st = jb_gguf_writer_begin(w, tmp_path))) goto done;
    wrote     = true;
    double t0 = jb_time_now();
    for (int64_t k = 0; k < n_out; k++) {
        if (jb_should_stop(cb)) {
            st = jb_fail(JB_STATUS_ERR_CANCELLED, "import: cancelled");
            goto done;
        }
        const struct jb_ckpt_entry *e = jb_ckpt_entry(ckpt, order[k]);
        size_t n                      = 1;
        for (int d = 0; d < e->n_dims; d++)
            n *= (size_t)e->shape[d];
        if ((st = jb_ckpt_read_f32(ckpt, e, f32))) goto done;
        if (php.fp16_params && is_fp16_param(e->name))
            for (size_t i = 0; i < n; i++)
                f32[i] = jb_f16_to_f32(jb_f32_to_f16(f32[i]));
        enum jb_dtype type = storage_for(e, kind, params->storage);
        jb_convert_from_f32(type, f32, out, n);
        if ((st = jb_gguf_writer_write_tensor(w, out, n * jb_dtype_size(type)))) goto done;
        jb_progress_report(cb, "import", -1, k + 1, n_out, t0);
    }
    if ((st = jb_gguf_writer_finish(w))) goto done;

    /* The model code is the judge of names and shapes: build it from the new file. */
    {
        struct jb_backend *be = jb_backend_init("cpu", 1);
        struct jb_model *m    = be ? jb_model_load(tmp_path, be) : NULL;
        if (!m) {
            char why[1024];
            snprintf(why, sizeof why, "%s", jb_last_error());
            jb_backend_free(be);
            st = jb_fail(JB_STATUS_ERR_MODEL,
                         "import: checkpoint does not match the %s model: %s",
                         jb_preset_name(kind),
                         why);
            goto done;
        }
        jb_model_free(m);
        jb_backend_free(be);
    }
    if (rename(tmp_path, params->dst_path) != 0) {
        st =
          jb_fail(JB_STATUS_ERR_IO, "import: cannot move '%s' to '%s'", tmp_path, params->dst_path);
        goto done;
    }
    wrote = false;

done:
    if (wrote) unlink(tmp_path);
    free(order);
    free(f32);
    free(out);
    jb_gguf_writer_free(w);
    cJSON_Delete(json);
    jb_ckpt_close(ckpt);
    return st;
}
