/*
 * tools/parity/parity_prior.c - prior parity (jukebox-spec §8.2 P1-P7) for one manifest entry:
 * conditioning (start embedding, timing signal or upper-level conditioner, lyric encoder),
 * the transformer input and stored layer outputs and logits of a teacher-forced forward, the
 * KV-cached path token by token and with chunked priming, and greedy sampling (primed and from
 * nothing) token-identical to the reference. The checkpoint is imported in both formats; the
 * full comparison runs on the legacy import, the zip import must give identical logits.
 */
#include "parity.h"
#include "model/model.h"
#include "labels/labels.h"
#include "prior/prior.h"
#include "prior/sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4
/* Logits of the KV-cached paths with fp16 caches (--kv-f16): keys and values rounded to 11
 * significant bits; the bound and the measured errors are in docs/numerics.md. */
#define TOL_KV_F16 1e-3

struct layer_capture {
    const struct jb_npy *index; /* layer numbers stored in layer_outputs.npy */
    float *input;               /* [T, w]: layer -1 */
    float *layers;              /* [n_index, T, w] */
    int64_t T, w;
};

static void capture(void *user, int layer, int n_batch, int n_pos, int width, const float *h)
{
    struct layer_capture *c = user;
    if (n_batch != 1 || n_pos != c->T || width != c->w) return;
    size_t n = (size_t)n_pos * (size_t)width;
    if (layer < 0) {
        memcpy(c->input, h, n * sizeof *h);
        return;
    }
    for (int64_t j = 0; j < c->index->n; j++)
        if (jb_npy_get_i(c->index, j) == layer) memcpy(c->layers + (size_t)j * n, h, n * sizeof *h);
}

struct fixture {
    struct parity_ctx *ctx;
    const char *key;
    struct jb_model *model;
    struct jb_prior *prior;
    const struct jb_prior_hparams *hp;
    int64_t T, w, V, prefix;
    float *start_emb, *x, *enc_kv;
};

static float *npy_f32(struct fixture *f, const char *file, int64_t want_n)
{
    struct jb_npy a;
    char what[256];
    if (!parity_load_npy(f->ctx, f->key, file, &a)) return NULL;
    float *v = NULL;
    if (want_n >= 0 && a.n != want_n) {
        snprintf(what, sizeof what, "%s/%s", f->key, file);
        parity_fail(
          f->ctx, what, "has %lld values, expected %lld", (long long)a.n, (long long)want_n);
    } else {
        v = jb_npy_to_f32(&a);
    }
    jb_npy_free(&a);
    return v;
}

static int32_t *npy_i32(struct fixture *f, const char *file, int64_t *n)
{
    struct jb_npy a;
    if (!parity_load_npy(f->ctx, f->key, file, &a)) return NULL;
    int32_t *v = jb_npy_to_i32(&a);
    *n         = a.n;
    jb_npy_free(&a);
    return v;
}

static void compare(struct fixture *f,
                    const char *name,
                    const float *out,
                    const char *ref_file,
                    int64_t n)
{
    char what[256];
    float *ref = npy_f32(f, ref_file, n);
    snprintf(what, sizeof what, "%s/%s", f->key, name);
    const bool cached_path = strstr(name, "_cached_") != NULL;
    if (ref)
        parity_check_f32(
          f->ctx, what, out, ref, n, cached_path && f->ctx->kv_f16 ? TOL_KV_F16 : TOL);
    free(ref);
}

static void compare_tokens(struct fixture *f,
                           const char *name,
                           const int32_t *out,
                           int64_t n,
                           const char *ref_file)
{
    char what[256];
    int64_t n_ref = 0;
    int32_t *ref  = npy_i32(f, ref_file, &n_ref);
    snprintf(what, sizeof what, "%s/%s", f->key, name);
    if (!ref) return;
    if (n_ref != n) {
        parity_fail(f->ctx, what, "%lld tokens, expected %lld", (long long)n, (long long)n_ref);
    } else {
        int64_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
        for (int64_t i = 0; a && b && i < n; i++)
            a[i] = out[i], b[i] = ref[i];
        if (a && b) parity_check_int(f->ctx, what, a, b, n, NULL);
        free(a);
        free(b);
    }
    free(ref);
}

/* P1-P3: start embedding, X and (5b_lyrics) encoder_kv from the label vector y and inputs. */
static bool conditioning(struct fixture *f)
{
    int64_t ny = 0;
    int32_t *y = npy_i32(f, "y.npy", &ny);
    char what[256];
    int G = f->hp->max_bow_genre_size;
    if (!y) return false;
    bool ok = ny >= 4 + G;
    snprintf(what, sizeof what, "%s/y_cond", f->key);
    if (!ok || jb_prior_start_emb(f->prior, y[3], y + 4, f->start_emb)) {
        parity_fail(f->ctx, what, "%s", ok ? jb_last_error() : "label vector too short");
        free(y);
        return false;
    }
    compare(f, "y_cond", f->start_emb, "y_cond.npy", f->w);

    int64_t n_ctx = f->hp->n_ctx;
    if (f->hp->variant == JB_PRIOR_UPSAMPLER) {
        int64_t nz  = 0;
        int32_t *zc = npy_i32(f, "z_cond.npy", &nz);
        snprintf(what, sizeof what, "%s/x_cond", f->key);
        if (!zc || jb_prior_x_upsampler(f->prior, zc, f->x)) {
            if (zc) parity_fail(f->ctx, what, "%s", jb_last_error());
            ok = false;
        } else {
            compare(f, "x_cond (conditioner)", f->x, "x_cond.npy", n_ctx * f->w);
        }
        free(zc);
    } else {
        int32_t k_tot, *k_abs = malloc((size_t)n_ctx * sizeof *k_abs),
                       *k_rel = malloc((size_t)n_ctx * sizeof *k_rel);
        snprintf(what, sizeof what, "%s/x_cond", f->key);
        if (!k_abs || !k_rel ||
            jb_labels_timing_bins(y[0],
                                  y[1],
                                  y[2],
                                  (int)n_ctx,
                                  f->hp->t_bins,
                                  f->hp->min_duration,
                                  f->hp->max_duration,
                                  f->hp->sr,
                                  0,
                                  &k_tot,
                                  k_abs,
                                  k_rel) ||
            jb_prior_x_timing(f->prior, k_tot, k_abs, k_rel, f->x)) {
            parity_fail(f->ctx, what, "%s", jb_last_error());
            ok = false;
        } else {
            compare(
              f, "x_cond (timing signal)", f->x + f->prefix * f->w, "x_cond.npy", n_ctx * f->w);
            if (f->prefix) compare(f, "merged_x_cond", f->x, "merged_x_cond.npy", f->T * f->w);
        }
        free(k_abs);
        free(k_rel);
    }
    if (ok && f->hp->variant == JB_PRIOR_TOP_LYRICS_ENC) {
        int64_t nl   = 0;
        int32_t *lyr = npy_i32(f, "lyric_tokens.npy", &nl);
        int64_t enc  = jb_prior_enc_len(f->prior);
        float *acts  = malloc((size_t)(enc * f->hp->prime.width) * sizeof *acts);
        snprintf(what, sizeof what, "%s/encoder_kv", f->key);
        if (!lyr || nl != enc || !acts || jb_prior_encoder_kv(f->prior, 1, lyr, f->enc_kv, acts)) {
            parity_fail(
              f->ctx, what, "%s", lyr && nl != enc ? "lyric window length" : jb_last_error());
            ok = false;
        } else {
            compare(f, "prime_acts", acts, "prime_acts.npy", enc * f->hp->prime.width);
            compare(f, "encoder_kv", f->enc_kv, "encoder_kv.npy", enc * f->w);
        }
        free(lyr);
        free(acts);
    }
    free(y);
    return ok;
}

/* The transformer ids of a teacher-forced window: music codes, or for 1b the merged ids. */
static int32_t *window_tokens(struct fixture *f)
{
    int64_t n  = 0;
    int32_t *t = npy_i32(f, f->prefix ? "merged_tokens.npy" : "z.npy", &n);
    if (t && n != f->T) {
        parity_fail(
          f->ctx, f->key, "window has %lld tokens, expected %lld", (long long)n, (long long)f->T);
        free(t);
        return NULL;
    }
    return t;
}

/* P4-P5: teacher-forced forward. */
static void forward(struct fixture *f, const int32_t *tokens)
{
    struct jb_npy index;
    if (!parity_load_npy(f->ctx, f->key, "layer_outputs_index.npy", &index)) return;
    size_t tw              = (size_t)(f->T * f->w);
    struct layer_capture c = { .index = &index, .T = f->T, .w = f->w };
    c.input                = calloc(tw, sizeof(float));
    c.layers               = calloc(tw * (size_t)index.n, sizeof(float));
    float *logits          = malloc((size_t)(f->T * f->V) * sizeof *logits);
    char what[256];
    snprintf(what, sizeof what, "%s/forward", f->key);
    if (!c.input || !c.layers || !logits ||
        jb_prior_forward(
          f->prior, 1, (int)f->T, tokens, f->start_emb, f->x, f->enc_kv, logits, capture, &c)) {
        parity_fail(f->ctx, what, "%s", jb_last_error());
    } else {
        compare(f, "transformer_input", c.input, "transformer_input.npy", (int64_t)tw);
        float *ref = npy_f32(f, "layer_outputs.npy", (int64_t)tw * index.n);
        for (int64_t j = 0; ref && j < index.n; j++) {
            snprintf(what,
                     sizeof what,
                     "%s/layer_outputs[%lld]",
                     f->key,
                     (long long)jb_npy_get_i(&index, j));
            parity_check_f32(
              f->ctx, what, c.layers + (size_t)j * tw, ref + (size_t)j * tw, (int64_t)tw, TOL);
        }
        free(ref);
        compare(f, "logits_forward", logits, "logits_forward.npy", f->T * f->V);
    }
    free(c.input);
    free(c.layers);
    free(logits);
    jb_npy_free(&index);
}

/* P6: the KV-cached path, primed with chunks of the given sizes then one position at a time. */
static enum jb_status cached(struct fixture *f,
                             const int32_t *seq,
                             int64_t n_prime,
                             int chunk,
                             float *logits)
{
    struct jb_prior_state *st = jb_prior_state_init_ex(
      f->prior, 1, chunk > 0 ? chunk : 1, f->ctx->kv_f16 ? JB_DTYPE_F16 : JB_DTYPE_F32);
    enum jb_status rc =
      st ? jb_prior_state_set_cond(st, f->start_emb, f->x, f->enc_kv) : JB_STATUS_ERR_NOMEM;
    int64_t pos = 0;
    /* reference chunking: full chunks, the remainder last (spec §5.3) */
    while (!rc && pos < n_prime) {
        int64_t left = n_prime - pos;
        int C        = (int)(left > chunk ? chunk : left);
        rc           = jb_prior_step(st, C, seq, f->T, logits + pos * f->V);
        pos += C;
    }
    while (!rc && pos < f->T) {
        rc = jb_prior_step(st, 1, seq, f->T, logits + pos * f->V);
        pos++;
    }
    jb_prior_state_free(st);
    return rc;
}

static void cached_paths(struct fixture *f, const int32_t *tokens)
{
    float *logits = malloc((size_t)(f->T * f->V) * sizeof *logits);
    char what[256];
    if (!logits) return;
    snprintf(what, sizeof what, "%s/logits_cached_tokenwise", f->key);
    if (cached(f, tokens, 0, 1, logits))
        parity_fail(f->ctx, what, "%s", jb_last_error());
    else
        compare(f, "logits_cached_tokenwise", logits, "logits_cached_tokenwise.npy", f->T * f->V);

    const cJSON *ch =
      cJSON_GetObjectItemCaseSensitive(parity_model_entry(f->ctx, f->key), "chunked");
    const cJSON *n_prime = cJSON_GetObjectItemCaseSensitive(ch, "n_prime");
    const cJSON *chunk   = cJSON_GetObjectItemCaseSensitive(ch, "chunk_size");
    int64_t n            = 0;
    int32_t *seq         = npy_i32(f, "chunked_sequence.npy", &n);
    snprintf(what, sizeof what, "%s/logits_cached_chunked", f->key);
    if (!cJSON_IsNumber(n_prime) || !cJSON_IsNumber(chunk) || !seq || n != f->T ||
        n_prime->valueint < 1 || n_prime->valueint > f->T || chunk->valueint < 1) {
        parity_fail(f->ctx, what, "manifest 'chunked' entry or chunked_sequence.npy is unusable");
    } else if (cached(f, seq, n_prime->valueint, chunk->valueint, logits)) {
        parity_fail(f->ctx, what, "%s", jb_last_error());
    } else {
        snprintf(what,
                 sizeof what,
                 "logits_cached_chunked (chunk %d, prime %d)",
                 chunk->valueint,
                 n_prime->valueint);
        compare(f, what, logits, "logits_cached_chunked.npy", f->T * f->V);
        if (jb_prior_forward(
              f->prior, 1, (int)f->T, seq, f->start_emb, f->x, f->enc_kv, logits, NULL, NULL) ==
            JB_STATUS_OK)
            compare(f,
                    "logits_forward_on_chunked_sequence",
                    logits,
                    "logits_forward_on_chunked_sequence.npy",
                    f->T * f->V);
    }
    free(seq);
    free(logits);
}

/* P7: greedy sampling, primed and from nothing. For 1b the context starts with the lyric
 * window and the raw merged ids are compared as well as the music codes. */
static void greedy(struct fixture *f,
                   const char *name,
                   const int32_t *prime,
                   int64_t n_prime,
                   int64_t n_new,
                   const char *out_file,
                   const char *raw_file)
{
    char what[256];
    int64_t nl = 0, P = f->prefix + n_prime, total = f->prefix + n_prime + n_new;
    int32_t *lyr = f->prefix ? npy_i32(f, "lyric_tokens.npy", &nl) : NULL;
    int32_t *ctx = malloc((size_t)(P > 0 ? P : 1) * sizeof *ctx);
    int32_t *out = malloc((size_t)total * sizeof *out);
    struct jb_prior_state *st =
      jb_prior_state_init_ex(f->prior, 1, 13, f->ctx->kv_f16 ? JB_DTYPE_F16 : JB_DTYPE_F32);
    snprintf(what, sizeof what, "%s/%s", f->key, name);
    if (!ctx || !out || !st || (f->prefix && (!lyr || nl != f->prefix))) {
        parity_fail(f->ctx, what, "setup failed: %s", jb_last_error());
        goto done;
    }
    for (int64_t i = 0; i < f->prefix; i++)
        ctx[i] = lyr[i];
    for (int64_t i = 0; i < n_prime; i++)
        ctx[f->prefix + i] = prime[i] + (f->prefix ? f->hp->n_vocab : 0);
    struct jb_sample_params sp = jb_sample_params_default();
    sp.top_k                   = 1;
    sp.chunk_size              = 13;
    if (jb_prior_state_set_cond(st, f->start_emb, f->x, f->enc_kv) ||
        jb_prior_sample(st, ctx, (int)P, (int)total, &sp, out, NULL, NULL, NULL)) {
        parity_fail(f->ctx, what, "%s", jb_last_error());
        goto done;
    }
    if (raw_file) {
        char raw_name[128];
        snprintf(raw_name, sizeof raw_name, "%s (raw merged ids)", name);
        compare_tokens(f, raw_name, out, total, raw_file);
    }
    for (int64_t i = f->prefix; i < total; i++)
        out[i - f->prefix] =
          f->prefix ? (out[i] - f->hp->n_vocab > 0 ? out[i] - f->hp->n_vocab : 0) : out[i];
    compare_tokens(f, name, out, total - f->prefix, out_file);
done:
    jb_prior_state_free(st);
    free(lyr);
    free(ctx);
    free(out);
}

static void run_fixture(struct parity_ctx *ctx, const char *key)
{
    struct fixture f = { .ctx = ctx, .key = key };
    f.model          = parity_import_and_load(ctx, key, false);
    if (!f.model) return;
    if (jb_model_get_kind(f.model) != JB_MODEL_PRIOR) {
        parity_fail(ctx, key, "imported model is not a prior");
        jb_model_free(f.model);
        return;
    }
    f.prior     = f.model->prior;
    f.hp        = &f.model->prior_hp;
    f.T         = jb_prior_seq_len(f.prior);
    f.w         = jb_prior_width(f.prior);
    f.V         = jb_prior_vocab(f.prior);
    f.prefix    = jb_prior_prefix_len(f.prior);
    f.start_emb = malloc((size_t)f.w * sizeof(float));
    f.x         = calloc((size_t)(f.T * f.w), sizeof(float));
    if (f.hp->variant == JB_PRIOR_TOP_LYRICS_ENC)
        f.enc_kv = malloc((size_t)(jb_prior_enc_len(f.prior) * f.w) * sizeof(float));
    int32_t *tokens = NULL;
    if (f.start_emb && f.x && conditioning(&f) && (tokens = window_tokens(&f))) {
        forward(&f, tokens);
        cached_paths(&f, tokens);
        int64_t n_prime = 0, n_anc = 0;
        int32_t *prime = npy_i32(&f, "greedy_primed_prime.npy", &n_prime);
        int32_t *anc   = npy_i32(&f, "greedy_ancestral_out.npy", &n_anc);
        if (prime)
            greedy(&f,
                   "greedy_primed",
                   prime,
                   n_prime,
                   f.hp->n_ctx - n_prime,
                   "greedy_primed_out.npy",
                   f.prefix ? "greedy_primed_raw_merged.npy" : NULL);
        if (anc)
            greedy(&f,
                   "greedy_ancestral",
                   NULL,
                   0,
                   n_anc,
                   "greedy_ancestral_out.npy",
                   f.prefix ? "greedy_ancestral_raw_merged.npy" : NULL);
        free(prime);
        free(anc);

        /* the zip import must be the same model: identical teacher-forced logits */
        struct jb_model *zm = parity_import_and_load(ctx, key, true);
        float *a            = malloc((size_t)(f.T * f.V) * sizeof *a),
              *b            = malloc((size_t)(f.T * f.V) * sizeof *b);
        if (zm && a && b &&
            !jb_prior_forward(
              f.prior, 1, (int)f.T, tokens, f.start_emb, f.x, f.enc_kv, a, NULL, NULL) &&
            !jb_prior_forward(
              zm->prior, 1, (int)f.T, tokens, f.start_emb, f.x, f.enc_kv, b, NULL, NULL)) {
            char what[256];
            snprintf(what, sizeof what, "%s/zip import == legacy import (logits)", key);
            parity_check_f32(ctx, what, b, a, f.T * f.V, 0.0);
        }
        free(a);
        free(b);
        jb_model_free(zm);
    }
    free(tokens);
    free(f.start_emb);
    free(f.x);
    free(f.enc_kv);
    jb_model_free(f.model);
}

void parity_prior(struct parity_ctx *ctx, const char *model_key)
{
    run_fixture(ctx, model_key);
}
