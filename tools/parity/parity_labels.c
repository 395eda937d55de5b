/*
 * tools/parity/parity_labels.c - label front-end parity (jukebox-spec §8.2 T1-T3): for every
 * manifest case, artist and genre ids from the id tables, cleaned lyrics, full lyric tokens, the
 * initial label vector (get_label, fp64 window midpoint), the per-window vectors (get_y, fp32
 * midpoint) and lyric window indices, plus the fp32 midpoint traps. All compared exactly.
 */
#include "parity.h"
#include "format/presets.h"
#include "labels/labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tables {
    struct jb_label_vocab *artists, *genres;
};

static bool load_tables(struct parity_ctx *ctx, const char *v, struct tables *t)
{
    char a[4096], g[4096], what[64];
    snprintf(a, sizeof a, "%s/%s_artist_ids.txt", ctx->ids_dir, v);
    snprintf(g, sizeof g, "%s/%s_genre_ids.txt", ctx->ids_dir, v);
    snprintf(what, sizeof what, "labels/%s id tables", v);
    if (jb_label_vocab_load_file(a, &t->artists) || jb_label_vocab_load_file(g, &t->genres)) {
        parity_fail(ctx, what, "%s", jb_last_error());
        return false;
    }
    return true;
}

/* Compares n values of y with row `row` of an (rows, n) or (n,) int npy. */
static void check_row(struct parity_ctx *ctx,
                      const char *what,
                      const int64_t *y,
                      int64_t n,
                      const struct jb_npy *ref,
                      int64_t row)
{
    int64_t *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r || (row + 1) * n > ref->n) {
        parity_fail(ctx,
                    what,
                    "reference has %lld values, expected at least %lld",
                    (long long)ref->n,
                    (long long)((row + 1) * n));
        free(r);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        r[i] = jb_npy_get_i(ref, row * n + i);
    parity_check_int(ctx, what, y, r, n, NULL);
    free(r);
}

/* One (setup, meta) pair: returns false if something could not even be computed. */
static void check_case(struct parity_ctx *ctx,
                       const cJSON *c,
                       const cJSON *metas,
                       struct tables *tables)
{
    const char *setup = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "setup"));
    int mi            = cJSON_GetObjectItemCaseSensitive(c, "meta_index")->valueint;
    bool v3           = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "v3"));
    int G             = cJSON_GetObjectItemCaseSensitive(c, "max_bow_genre_size")->valueint;
    int n_tok         = cJSON_GetObjectItemCaseSensitive(c, "n_tokens")->valueint;
    int64_t len       = (int64_t)cJSON_GetObjectItemCaseSensitive(c, "sample_length")->valuedouble;
    const cJSON *meta = cJSON_GetArrayItem(metas, mi);
    if (!setup || !meta || G < 1 || G > JB_LABEL_MAX_GENRES || n_tok < 0 || n_tok > 100000) {
        parity_fail(ctx, "labels/case", "malformed case in manifest");
        return;
    }
    enum jb_model_preset kind;
    if (strlen(setup) < 4 || !jb_preset_parse(setup + 3, &kind)) {
        parity_fail(ctx, "labels/case", "unknown setup '%s'", setup);
        return;
    }
    struct jb_prior_hparams php;
    jb_preset_prior(kind, &php);
    enum jb_label_version ver = v3 ? JB_LABEL_V3 : JB_LABEL_V2;
    struct tables *tab        = &tables[v3];
    const char *art = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "artist"));
    const char *gen = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "genre"));
    const char *lyr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "lyrics"));
    int64_t total   = (int64_t)cJSON_GetObjectItemCaseSensitive(meta, "total_length")->valuedouble;
    int64_t offset  = (int64_t)cJSON_GetObjectItemCaseSensitive(meta, "offset")->valuedouble;
    char what[320], file[256];
    if (!art || !gen || !lyr) {
        parity_fail(ctx, "labels/case", "meta %d lacks artist/genre/lyrics", mi);
        return;
    }

    int32_t artist = -1, genres[JB_LABEL_MAX_GENRES];
    snprintf(what, sizeof what, "labels/%s_meta%d artist+genre ids", setup, mi);
    if (jb_labels_artist_id(tab->artists, ver, JB_LABEL_REFERENCE, art, &artist) ||
        jb_labels_genre_ids(tab->genres, ver, JB_LABEL_REFERENCE, gen, G, genres)) {
        parity_fail(ctx, what, "%s", jb_last_error());
        return;
    }
    int64_t got[1 + JB_LABEL_MAX_GENRES], want[1 + JB_LABEL_MAX_GENRES];
    got[0]            = artist;
    want[0]           = (int64_t)cJSON_GetObjectItemCaseSensitive(c, "artist_id")->valuedouble;
    const cJSON *gids = cJSON_GetObjectItemCaseSensitive(c, "genre_ids");
    for (int g = 0; g < G; g++) {
        got[1 + g]  = genres[g];
        want[1 + g] = (int64_t)cJSON_GetArrayItem(gids, g)->valuedouble;
    }
    parity_check_int(ctx, what, got, want, 1 + G, NULL);

    /* lyrics: cleaned text and full token list */
    int32_t *full = NULL;
    size_t n_full = 0;
    char *clean   = NULL;
    snprintf(what, sizeof what, "labels/%s_meta%d cleaned lyrics", setup, mi);
    if (jb_lyrics_encode(ver, lyr, strlen(lyr), &full, &n_full, &clean)) {
        parity_fail(ctx, what, "%s", jb_last_error());
        return;
    }
    const char *ref_clean =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "cleaned_lyrics"));
    if (ref_clean && strcmp(clean, ref_clean) == 0)
        parity_pass(ctx, what, "identical (%zu bytes)", strlen(clean));
    else
        parity_fail(ctx, what, "differs: got '%.60s...'", clean);

    struct jb_npy ref = { 0 };
    snprintf(file, sizeof file, "%s_meta%d_full_tokens.npy", setup, mi);
    if (parity_load_npy(ctx, "labels", file, &ref)) {
        int64_t *t = malloc((n_full ? n_full : 1) * sizeof *t);
        for (size_t i = 0; t && i < n_full; i++)
            t[i] = full[i];
        snprintf(what, sizeof what, "labels/%s", file);
        if (t && (size_t)ref.n == n_full)
            check_row(ctx, what, t, (int64_t)n_full, &ref, 0);
        else
            parity_fail(ctx, what, "%zu tokens, expected %lld", n_full, (long long)ref.n);
        free(t);
        jb_npy_free(&ref);
    }

    /* initial label (get_label: fp64 midpoint) and per-window labels (get_y: fp32) */
    int64_t ny   = 4 + G + n_tok;
    int64_t *y   = malloc((size_t)ny * sizeof *y);
    int64_t *idx = malloc((size_t)(n_tok ? n_tok : 1) * sizeof *idx);
    if (!y || !idx) goto done;
    snprintf(file, sizeof file, "%s_meta%d_y.npy", setup, mi);
    if (parity_load_npy(ctx, "labels", file, &ref)) {
        snprintf(what, sizeof what, "labels/%s", file);
        if (jb_labels_make_y(total,
                             offset,
                             len,
                             artist,
                             genres,
                             G,
                             full,
                             n_full,
                             n_tok,
                             JB_LABEL_ARITH_F64,
                             y,
                             idx))
            parity_fail(ctx, what, "%s", jb_last_error());
        else
            check_row(ctx, what, y, ny, &ref, 0);
        jb_npy_free(&ref);
        if (n_tok > 0) {
            snprintf(file, sizeof file, "%s_meta%d_indices.npy", setup, mi);
            if (parity_load_npy(ctx, "labels", file, &ref)) {
                snprintf(what, sizeof what, "labels/%s", file);
                check_row(ctx, what, idx, n_tok, &ref, 0);
                jb_npy_free(&ref);
            }
        }
    }
    const cJSON *starts   = cJSON_GetObjectItemCaseSensitive(c, "get_y_starts");
    struct jb_npy ref_idx = { 0 };
    snprintf(file, sizeof file, "%s_meta%d_get_y.npy", setup, mi);
    bool have_y = parity_load_npy(ctx, "labels", file, &ref);
    snprintf(file, sizeof file, "%s_meta%d_get_y_indices.npy", setup, mi);
    bool have_idx = n_tok > 0 && parity_load_npy(ctx, "labels", file, &ref_idx);
    for (int s = 0; have_y && s < cJSON_GetArraySize(starts); s++) {
        int64_t start = (int64_t)cJSON_GetArrayItem(starts, s)->valuedouble;
        snprintf(
          what, sizeof what, "labels/%s_meta%d get_y start %lld", setup, mi, (long long)start);
        if (jb_labels_make_y(total,
                             offset + start * php.raw_to_tokens,
                             len,
                             artist,
                             genres,
                             G,
                             full,
                             n_full,
                             n_tok,
                             JB_LABEL_ARITH_F32,
                             y,
                             idx)) {
            parity_fail(ctx, what, "%s", jb_last_error());
            continue;
        }
        check_row(ctx, what, y, ny, &ref, s);
        if (have_idx) {
            snprintf(what,
                     sizeof what,
                     "labels/%s_meta%d get_y indices start %lld",
                     setup,
                     mi,
                     (long long)start);
            check_row(ctx, what, idx, n_tok, &ref_idx, s);
        }
    }
    jb_npy_free(&ref);
    jb_npy_free(&ref_idx);
done:
    free(y);
    free(idx);
    free(full);
    free(clean);
}

/* Metas whose fp32 and fp64 lyric-window midpoints differ by one token (spec §7.4). */
static void check_trap(struct parity_ctx *ctx, const cJSON *trap, struct tables *tables)
{
    const char *setup = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(trap, "setup"));
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(trap, "meta");
    enum jb_model_preset kind;
    if (!setup || !meta || strlen(setup) < 4 || !jb_preset_parse(setup + 3, &kind)) {
        parity_fail(ctx, "labels/f32trap", "malformed trap entry");
        return;
    }
    struct jb_prior_hparams php;
    jb_preset_prior(kind, &php);
    bool v3                   = setup[1] == '3';
    enum jb_label_version ver = v3 ? JB_LABEL_V3 : JB_LABEL_V2;
    const char *art = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "artist"));
    const char *gen = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "genre"));
    const char *lyr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "lyrics"));
    int64_t total   = (int64_t)cJSON_GetObjectItemCaseSensitive(meta, "total_length")->valuedouble;
    int64_t offset  = (int64_t)cJSON_GetObjectItemCaseSensitive(meta, "offset")->valuedouble;
    int G = php.max_bow_genre_size, n_tok = php.n_tokens;
    int32_t artist, genres[JB_LABEL_MAX_GENRES], *full = NULL;
    size_t n_full = 0;
    if (!art || !gen || !lyr ||
        jb_labels_artist_id(tables[v3].artists, ver, JB_LABEL_REFERENCE, art, &artist) ||
        jb_labels_genre_ids(tables[v3].genres, ver, JB_LABEL_REFERENCE, gen, G, genres) ||
        jb_lyrics_encode(ver, lyr, strlen(lyr), &full, &n_full, NULL)) {
        parity_fail(ctx, "labels/f32trap", "%s: %s", setup, jb_last_error());
        return;
    }
    int64_t ny = 4 + G + n_tok, *y = malloc((size_t)ny * sizeof *y);
    static const struct {
        const char *suffix;
        enum jb_label_arith arith;
    } variants[] = { { "f32trap_y_get_label.npy", JB_LABEL_ARITH_F64 },
                     { "f32trap_y_get_y.npy", JB_LABEL_ARITH_F32 } };
    for (int v = 0; y && v < 2; v++) {
        char file[256], what[320];
        struct jb_npy ref;
        snprintf(file, sizeof file, "%s_%s", setup, variants[v].suffix);
        if (!parity_load_npy(ctx, "labels", file, &ref)) continue;
        snprintf(what, sizeof what, "labels/%s", file);
        if (jb_labels_make_y(total,
                             offset,
                             php.n_ctx * (int64_t)php.raw_to_tokens,
                             artist,
                             genres,
                             G,
                             full,
                             n_full,
                             n_tok,
                             variants[v].arith,
                             y,
                             NULL))
            parity_fail(ctx, what, "%s", jb_last_error());
        else
            check_row(ctx, what, y, ny, &ref, 0);
        jb_npy_free(&ref);
    }
    free(y);
    free(full);
}

void parity_labels(struct parity_ctx *ctx)
{
    const cJSON *entry      = parity_model_entry(ctx, "labels");
    struct tables tables[2] = { { 0 } };
    if (!load_tables(ctx, "v2", &tables[0]) || !load_tables(ctx, "v3", &tables[1])) goto done;
    const cJSON *metas = cJSON_GetObjectItemCaseSensitive(entry, "metas");
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(entry, "cases"))
      check_case(ctx, c, metas, tables);
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(entry, "float32_midpoint_traps"))
      check_trap(ctx, c, tables);
done:
    for (int i = 0; i < 2; i++) {
        jb_label_vocab_free(tables[i].artists);
        jb_label_vocab_free(tables[i].genres);
    }
}
