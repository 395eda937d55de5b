/*
 * model/model.c - loading an Encore model file: GGUF -> hyper-parameters -> built model, with
 * the strict "every tensor used, every shape as expected" check; plus `encore info`.
 */
#include "model/model.h"
#include "format/meta.h"
#include "labels/labels.h"
#include "prior/prior.h"
#include "vqvae/vqvae.h"

#include <stdio.h>
#include <string.h>

static const struct jb_tensor *gguf_find(void *ctx, const char *name)
{
    return jb_gguf_find_tensor(ctx, name);
}
static int64_t gguf_count(void *ctx)
{
    return jb_gguf_n_tensors(ctx);
}
static const struct jb_tensor *gguf_get(void *ctx, int64_t i)
{
    return jb_gguf_tensor(ctx, i);
}

/* A copied tensor's pages of the mapped file leave the process: after a backend's copy at load
 * they would otherwise count twice in its resident memory. */
static void gguf_copied(void *ctx, const struct jb_tensor *t)
{
    jb_gguf_drop_pages(ctx, t->data, jb_tensor_nbytes(t));
}

struct jb_weights_source jb_model_gguf_source(struct jb_gguf *g)
{
    return (struct jb_weights_source){
        .find = gguf_find, .count = gguf_count, .get = gguf_get, .copied = gguf_copied, .ctx = g
    };
}

enum jb_status jb_model_read_vqvae_hparams(const struct jb_gguf *g, struct jb_vqvae_hparams *hp)
{
    return jb_meta_read_vqvae(g, hp);
}

enum jb_status jb_model_read_prior_hparams(const struct jb_gguf *g, struct jb_prior_hparams *hp)
{
    return jb_meta_read_prior(g, hp);
}

/* Artist or genre names stored as two parallel arrays; absent tables give NULL (ids only). */
static enum jb_status load_vocab(const struct jb_gguf *g,
                                 const char *what,
                                 struct jb_label_vocab **out)
{
    char names_key[64], ids_key[64];
    snprintf(names_key, sizeof names_key, "jukebox.labels.%s_names", what);
    snprintf(ids_key, sizeof ids_key, "jukebox.labels.%s_ids", what);
    int64_t ki = jb_gguf_find_key(g, names_key), kd = jb_gguf_find_key(g, ids_key);
    *out = NULL;
    if (ki < 0 && kd < 0) return JB_STATUS_OK;
    if (ki < 0 || kd < 0 || jb_gguf_kv_type(g, ki) != JB_GGUF_TYPE_ARRAY ||
        jb_gguf_kv_type(g, kd) != JB_GGUF_TYPE_ARRAY ||
        jb_gguf_arr_type(g, ki) != JB_GGUF_TYPE_STRING ||
        jb_gguf_arr_len(g, ki) != jb_gguf_arr_len(g, kd))
        return jb_fail(JB_STATUS_ERR_MODEL, "model file has a malformed %s table", what);
    size_t n           = (size_t)jb_gguf_arr_len(g, ki);
    const char **names = jb_calloc(n ? n : 1, sizeof *names);
    int32_t *ids       = jb_calloc(n ? n : 1, sizeof *ids);
    enum jb_status st  = JB_STATUS_OK;
    if (!names || !ids) st = JB_STATUS_ERR_NOMEM;
    for (size_t i = 0; !st && i < n; i++) {
        int64_t id;
        names[i] = jb_gguf_get_arr_str(g, names_key, i);
        if (!names[i] || !jb_gguf_get_arr_int(g, ids_key, i, &id) || id < 0 || id > INT32_MAX)
            st =
              jb_fail(JB_STATUS_ERR_MODEL, "model file %s table entry %zu is malformed", what, i);
        else
            ids[i] = (int32_t)id;
    }
    if (!st) st = jb_label_vocab_from_arrays(names, ids, n, out);
    free(names);
    free(ids);
    return st;
}

struct jb_model *jb_model_load(const char *path, struct jb_backend *backend)
{
    if (!path || !backend) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_model_load: path and backend are required");
        return NULL;
    }
    struct jb_model *m = jb_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->backend = backend;
    m->gguf    = jb_gguf_open(path);
    if (!m->gguf) goto fail;

    const char *arch = jb_gguf_get_str(m->gguf, "general.architecture");
    const char *kind = jb_gguf_get_str(m->gguf, "encore.kind");
    if (!arch || strcmp(arch, JB_META_ARCH) != 0) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "'%s' is not an Encore Jukebox model (architecture '%s')",
                path,
                arch ? arch : "(none)");
        goto fail;
    }
    const char *name = jb_gguf_get_str(m->gguf, "general.name");
    snprintf(m->name, sizeof m->name, "%s", name ? name : "");
    jb_gguf_get_bool(m->gguf, "encore.untrained", &m->untrained);

    struct jb_weights_source src = jb_model_gguf_source(m->gguf);
    m->weights                   = jb_weights_init(&src);
    if (!m->weights) goto fail;

    if (kind && strcmp(kind, "vqvae") == 0) {
        m->kind = JB_MODEL_VQVAE;
        if (jb_meta_read_vqvae(m->gguf, &m->vq_hp)) goto fail;
        m->vqvae = jb_vqvae_init(&m->vq_hp, m->weights, backend);
        if (!m->vqvae) goto fail;
    } else if (kind && strcmp(kind, "prior") == 0) {
        m->kind = JB_MODEL_PRIOR;
        if (jb_meta_read_prior(m->gguf, &m->prior_hp)) goto fail;
        if (load_vocab(m->gguf, "artist", &m->artists)) goto fail;
        if (load_vocab(m->gguf, "genre", &m->genres)) goto fail;
        m->prior = jb_prior_init(&m->prior_hp, m->weights, backend);
        if (!m->prior) goto fail;
    } else {
        jb_fail(
          JB_STATUS_ERR_MODEL, "'%s': unknown encore.kind '%s'", path, kind ? kind : "(none)");
        goto fail;
    }
    if (jb_weights_check_all_used(m->weights)) goto fail;
    return m;

fail:
    jb_model_free(m);
    return NULL;
}

void jb_model_free(struct jb_model *m)
{
    if (!m) return;
    jb_vqvae_free(m->vqvae);
    jb_prior_free(m->prior);
    jb_label_vocab_free(m->artists);
    jb_label_vocab_free(m->genres);
    jb_weights_free(m->weights);
    jb_gguf_close(m->gguf);
    free(m);
}

enum jb_model_kind jb_model_get_kind(const struct jb_model *m)
{
    return m->kind;
}

/* ---------------------------------------------------------------------------------------- */
/* encore info                                                                               */

/* Strings in a model file are untrusted: control characters are shown as \xNN. */
static const char *escaped(const char *s, char *buf, size_t len)
{
    jb_text_escape(s ? s : "", buf, len);
    return buf;
}

static void describe_value(const struct jb_gguf *g, int64_t i, FILE *out)
{
    const char *key = jb_gguf_key(g, i);
    char buf[1024];
    int64_t iv;
    double fv;
    bool bv;
    switch (jb_gguf_kv_type(g, i)) {
    case JB_GGUF_TYPE_STRING:
        fprintf(out, "'%s'", escaped(jb_gguf_get_str(g, key), buf, sizeof buf));
        break;
    case JB_GGUF_TYPE_BOOL:
        jb_gguf_get_bool(g, key, &bv);
        fprintf(out, "%s", bv ? "true" : "false");
        break;
    case JB_GGUF_TYPE_FLOAT32:
    case JB_GGUF_TYPE_FLOAT64:
        jb_gguf_get_float(g, key, &fv);
        fprintf(out, "%g", fv);
        break;
    case JB_GGUF_TYPE_ARRAY: {
        uint64_t n = jb_gguf_arr_len(g, i);
        if (jb_gguf_arr_type(g, i) == JB_GGUF_TYPE_STRING) {
            fprintf(out, "[%llu strings", (unsigned long long)n);
            for (uint64_t k = 0; k < n && k < 3; k++)
                fprintf(out,
                        "%s'%s'",
                        k ? ", " : ": ",
                        escaped(jb_gguf_get_arr_str(g, key, k), buf, sizeof buf));
            fprintf(out, "%s]", n > 3 ? ", ..." : "");
        } else {
            fprintf(out, "[");
            for (uint64_t k = 0; k < n && k < 8; k++) {
                if (jb_gguf_get_arr_int(g, key, k, &iv))
                    fprintf(out, "%s%lld", k ? ", " : "", (long long)iv);
                else if (jb_gguf_get_arr_float(g, key, k, &fv))
                    fprintf(out, "%s%g", k ? ", " : "", fv);
            }
            fprintf(out, "%s]", n > 8 ? ", ..." : "");
        }
        break;
    }
    default:
        if (jb_gguf_get_int(g, key, &iv))
            fprintf(out, "%lld", (long long)iv);
        else
            fprintf(out, "?");
    }
}

enum jb_status jb_model_file_describe(const char *path, FILE *out, bool verbose)
{
    struct jb_gguf *g = jb_gguf_open(path);
    if (!g) return JB_STATUS_ERR_FORMAT;
    char pbuf[4096];
    fprintf(out,
            "%s: GGUF v%u, %lld tensors, %lld metadata keys\n",
            escaped(path, pbuf, sizeof pbuf),
            jb_gguf_version(g),
            (long long)jb_gguf_n_tensors(g),
            (long long)jb_gguf_n_kv(g));
    bool untrained = false;
    if (jb_gguf_get_bool(g, "encore.untrained", &untrained) && untrained)
        fprintf(out, "  NOTE: untrained model (random weights) - for testing the pipeline only\n");
    for (int64_t i = 0; i < jb_gguf_n_kv(g); i++) {
        char key[1024];
        fprintf(out, "  %-40s ", escaped(jb_gguf_key(g, i), key, sizeof key));
        describe_value(g, i, out);
        fputc('\n', out);
    }
    uint64_t bytes[JB_DTYPE_COUNT] = { 0 }, count[JB_DTYPE_COUNT] = { 0 }, params = 0;
    for (int64_t i = 0; i < jb_gguf_n_tensors(g); i++) {
        const struct jb_tensor *t = jb_gguf_tensor(g, i);
        bytes[t->type] += jb_tensor_nbytes(t);
        count[t->type]++;
        params += (uint64_t)jb_tensor_nelements(t);
        if (verbose) {
            char shape[96], name[1024];
            fprintf(out,
                    "  tensor %-70s %-5s %s\n",
                    escaped(t->name, name, sizeof name),
                    jb_dtype_name(t->type),
                    jb_shape_str(t->n_dims, t->shape, shape, sizeof shape));
        }
    }
    fprintf(out, "  parameters: %llu\n", (unsigned long long)params);
    for (int d = 0; d < JB_DTYPE_COUNT; d++)
        if (count[d])
            fprintf(out,
                    "  %-4s tensors: %llu (%.1f MiB)\n",
                    jb_dtype_name((enum jb_dtype)d),
                    (unsigned long long)count[d],
                    (double)bytes[d] / (1024.0 * 1024.0));
    jb_gguf_close(g);
    return JB_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* VQ-VAE public API                                                                         */

static struct jb_vqvae *as_vqvae(const struct jb_model *m, int level, enum jb_status *st)
{
    if (!m || m->kind != JB_MODEL_VQVAE) {
        *st = jb_fail(JB_STATUS_ERR_INVALID_ARG, "model is not a VQ-VAE");
        return NULL;
    }
    if (level < 0 || level >= m->vq_hp.levels) {
        *st = jb_fail(JB_STATUS_ERR_INVALID_ARG,
                      "level %d is out of range (model has %d levels)",
                      level,
                      m->vq_hp.levels);
        return NULL;
    }
    return m->vqvae;
}

int jb_vqvae_levels(const struct jb_model *m)
{
    return m && m->kind == JB_MODEL_VQVAE ? m->vq_hp.levels : 0;
}

int jb_vqvae_hop(const struct jb_model *m, int level)
{
    if (!m || m->kind != JB_MODEL_VQVAE || level < 0 || level >= m->vq_hp.levels) return 0;
    return jb_vqvae_hp_hop(&m->vq_hp, level);
}

int jb_vqvae_bins(const struct jb_model *m)
{
    return m && m->kind == JB_MODEL_VQVAE ? m->vq_hp.l_bins : 0;
}

int jb_vqvae_emb_width(const struct jb_model *m)
{
    return m && m->kind == JB_MODEL_VQVAE ? m->vq_hp.emb_width : 0;
}

enum jb_status jb_vqvae_encode(struct jb_model *m,
                               int level,
                               const float *audio,
                               int64_t n_samples,
                               int32_t *codes,
                               float *prequant,
                               const struct jb_callbacks *cb)
{
    enum jb_status st   = JB_STATUS_OK;
    struct jb_vqvae *vq = as_vqvae(m, level, &st);
    /* in chunks with margins: the same codes as one pass, memory bounded whatever the length */
    return vq ? jb_vqvae_encode_level_chunked(vq,
                                              level,
                                              audio,
                                              n_samples,
                                              codes,
                                              prequant,
                                              jb_vqvae_encode_chunk_default(vq, level, n_samples),
                                              cb)
              : st;
}

enum jb_status jb_vqvae_decode(struct jb_model *m,
                               int level,
                               const int32_t *codes,
                               int64_t n_codes,
                               float *audio,
                               int64_t chunk_codes,
                               const struct jb_callbacks *cb)
{
    enum jb_status st   = JB_STATUS_OK;
    struct jb_vqvae *vq = as_vqvae(m, level, &st);
    return vq ? jb_vqvae_decode_level(vq, level, codes, n_codes, audio, chunk_codes, cb) : st;
}

int64_t jb_vqvae_decode_margin(const struct jb_model *m, int level)
{
    enum jb_status st   = JB_STATUS_OK;
    struct jb_vqvae *vq = as_vqvae(m, level, &st);
    return vq ? jb_vqvae_decode_margin_level(vq, level) : -1;
}
