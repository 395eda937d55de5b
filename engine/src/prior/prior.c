/*
 * prior/prior.c - the prior transformers (jukebox-spec §4) and their incremental step (§5).
 *
 * One code path runs every variant: the input embedding of a chunk of positions, the stack of
 * ResAttnBlocks over the KV caches (attention in attention.c), and the output head. The
 * teacher-forced forward is a single chunk of T positions; sampling feeds priming chunks and
 * then one position at a time. Arithmetic follows the reference's fp32 path: sums in the order
 * the reference evaluates them, LayerNorm eps 1e-5, quick_gelu, and Conv1D weights in whatever
 * dtype they are stored (jb_matmul upcasts fp16/bf16).
 */
#include "prior/prior_impl.h"
#include "prior/sampler.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define JB_LN_EPS 1e-5f
/* Positions drawn before jb_prior_sample reads their tokens back, by default on a device. */
#define JB_TOKEN_BATCH 32
/* Rows of the conditioning computations (start_emb, y_pos) per round of ops. */
#define COND_ROWS 256

/* ---- loading ------------------------------------------------------------------------------ */

/* Loads the ResAttnBlocks "<prefix>.transformer._attn_mods.d.*" of one stack. */
static bool transformer_load(struct jb_transformer *tr,
                             struct jb_weights *w,
                             const char *prefix,
                             const struct jb_transformer_hparams *thp,
                             int attn_order,
                             int32_t enc_len,
                             int32_t prime_len)
{
    const int32_t W = thp->width;
    tr->width       = W;
    tr->n_state     = (int32_t)((double)thp->m_attn * W);
    tr->mlp_width   = (int32_t)((double)thp->m_mlp * W);
    tr->heads       = thp->heads;
    tr->depth       = thp->depth;
    tr->seq_len     = thp->seq_len;
    tr->enc_len     = enc_len;
    if (W <= 0 || thp->depth <= 0 || thp->heads <= 0 || thp->blocks <= 0 || tr->seq_len <= 0 ||
        tr->n_state <= 0 || tr->mlp_width <= 0 || tr->n_state % tr->heads ||
        tr->seq_len % thp->blocks) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "%s: bad transformer shape (width %d, depth %d, heads %d, n_state %d, seq_len %d, "
                "blocks %d)",
                prefix,
                W,
                thp->depth,
                thp->heads,
                tr->n_state,
                tr->seq_len,
                thp->blocks);
        return false;
    }
    tr->head_dim  = tr->n_state / tr->heads;
    tr->block_ctx = tr->seq_len / thp->blocks;
    /* func 7 key limit, rounded with the number of blocks (not block_ctx): 448 for 1b_lyrics */
    tr->prime_len = (prime_len / thp->blocks + 1) * thp->blocks;
    if (tr->prime_len > tr->seq_len) tr->prime_len = tr->seq_len;
    /* the reference multiplies q·k by (1/sqrt(sqrt(hd)))², a Python double, in fp32 */
    const double s = 1.0 / sqrt(sqrt((double)tr->head_dim));
    tr->scale      = (float)(s * s);
    tr->attn       = (struct jb_attn_desc){ .heads     = tr->heads,
                                            .head_dim  = tr->head_dim,
                                            .n_state   = tr->n_state,
                                            .seq_len   = tr->seq_len,
                                            .block_ctx = tr->block_ctx,
                                            .scale     = tr->scale };

    tr->blocks = jb_calloc((size_t)tr->depth, sizeof *tr->blocks);
    if (!tr->blocks) return false;

    const int64_t ns = tr->n_state, mlp = tr->mlp_width;
    for (int d = 0; d < tr->depth; d++) {
        struct jb_block *b = &tr->blocks[d];
        b->attn_func       = jb_attn_func(attn_order, d);
        switch (b->attn_func) {
        case 0:
        case 1:
        case 2:
        case 3:
        case 7:
            break;
        case 6:
            if (enc_len > 0) break;
            jb_fail(JB_STATUS_ERR_MODEL,
                    "%s: layer %d is cross-attention but there is no encoder",
                    prefix,
                    d);
            return false;
        default:
            jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                    "%s: attn_order %d gives attn_func %d at layer %d",
                    prefix,
                    attn_order,
                    b->attn_func,
                    d);
            return false;
        }
        const bool cross = b->attn_func == 6;
#define BLK(want, shape, name)                                                                     \
    jb_weights_get(w, want, shape, "%s.transformer._attn_mods.%d." name, prefix, d)
        b->ln_0_w   = BLK(JB_WANT_F32, JB_SHAPE1(W), "ln_0.weight");
        b->ln_0_b   = BLK(JB_WANT_F32, JB_SHAPE1(W), "ln_0.bias");
        b->c_attn_w = BLK(JB_WANT_ANY, JB_SHAPE2(W, cross ? ns : 3 * ns), "attn.c_attn.w");
        b->c_attn_b = (BLK(JB_WANT_F32, JB_SHAPE1(cross ? ns : 3 * ns), "attn.c_attn.b"));
        if (cross) {
            b->c_enc_kv_w = BLK(JB_WANT_ANY, JB_SHAPE2(W, 2 * ns), "attn.c_enc_kv.w");
            b->c_enc_kv_b = (BLK(JB_WANT_F32, JB_SHAPE1(2 * ns), "attn.c_enc_kv.b"));
        }
        b->c_proj_w   = BLK(JB_WANT_ANY, JB_SHAPE2(ns, W), "attn.c_proj.w");
        b->c_proj_b   = (BLK(JB_WANT_F32, JB_SHAPE1(W), "attn.c_proj.b"));
        b->ln_1_w     = BLK(JB_WANT_F32, JB_SHAPE1(W), "ln_1.weight");
        b->ln_1_b     = BLK(JB_WANT_F32, JB_SHAPE1(W), "ln_1.bias");
        b->c_fc_w     = BLK(JB_WANT_ANY, JB_SHAPE2(W, mlp), "mlp.c_fc.w");
        b->c_fc_b     = (BLK(JB_WANT_F32, JB_SHAPE1(mlp), "mlp.c_fc.b"));
        b->mlp_proj_w = BLK(JB_WANT_ANY, JB_SHAPE2(mlp, W), "mlp.c_proj.w");
        b->mlp_proj_b = (BLK(JB_WANT_F32, JB_SHAPE1(W), "mlp.c_proj.b"));
#undef BLK
        if (!jb_weights_ok(w)) return false;
    }
    return true;
}

struct jb_prior *jb_prior_init(const struct jb_prior_hparams *hp,
                               struct jb_weights *w,
                               struct jb_backend *be)
{
    if (!hp || !w || !be) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "jb_prior_init: NULL argument");
        return NULL;
    }
    const enum jb_prior_variant var = hp->variant;
    if (var < JB_PRIOR_UPSAMPLER || var > JB_PRIOR_TOP_SINGLE_ENC_DEC) {
        jb_fail(JB_STATUS_ERR_MODEL, "prior: unknown variant %d", (int)var);
        return NULL;
    }
    const bool single    = var == JB_PRIOR_TOP_SINGLE_ENC_DEC;
    const bool lyr_enc   = var == JB_PRIOR_TOP_LYRICS_ENC;
    const int32_t prefix = single ? hp->n_tokens : 0;
    if (hp->bins <= 0 || hp->n_ctx <= 0 || hp->tr.seq_len != hp->n_ctx + prefix ||
        ((single || lyr_enc) && (hp->n_tokens <= 0 || hp->n_vocab <= 0)) ||
        hp->max_bow_genre_size <= 0 || hp->n_genres <= 0 || hp->n_artists <= 0 ||
        (hp->timing && hp->t_bins <= 0)) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "prior: inconsistent hyper-parameters (bins %d, n_ctx %d, seq_len %d, n_tokens "
                "%d, n_vocab %d)",
                hp->bins,
                hp->n_ctx,
                hp->tr.seq_len,
                hp->n_tokens,
                hp->n_vocab);
        return NULL;
    }
    if (var == JB_PRIOR_UPSAMPLER ? hp->timing : !hp->timing) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "prior: the timing signal must be %s for this variant",
                hp->timing ? "off" : "on");
        return NULL;
    }

    struct jb_prior *p = jb_calloc(1, sizeof *p);
    if (!p) return NULL;
    jb_weights_set_backend(w, be); /* every weight below lives where the ops run */
    p->hp           = *hp;
    p->be           = be;
    p->width        = hp->tr.width;
    p->seq_len      = hp->tr.seq_len;
    p->prefix_len   = prefix;
    p->vocab        = single ? hp->n_vocab + hp->bins : hp->bins;
    p->add_x_after  = !hp->merged_decoder;
    const int64_t W = p->width, V = p->vocab, T = p->seq_len;

    if (!transformer_load(&p->tr,
                          w,
                          "prior",
                          &hp->tr,
                          hp->tr.attn_order,
                          lyr_enc ? hp->n_tokens : 0,
                          single ? hp->n_tokens : 0))
        goto fail;

    p->x_emb   = jb_weights_get(w, JB_WANT_ANY, JB_SHAPE2(V, W), "prior.x_emb.weight");
    p->pos_emb = jb_weights_get(w, JB_WANT_F32, JB_SHAPE2(T, W), "prior.pos_emb.pos_emb");
    /* Tied in the released upsamplers and 1b (one storage): the embedding serves both roles,
     * and Encore files store it once; a file that kept the duplicate is accepted as well. */
    if (hp->merged_decoder) {
        p->x_out = jb_weights_get(w, JB_WANT_ANY, JB_SHAPE2(V, W), "prior.x_out.weight");
    } else {
        p->x_out = p->x_emb;
        jb_weights_skip(w, "prior.x_out.weight");
    }

    p->genre_emb =
      jb_weights_get(w, JB_WANT_ANY, JB_SHAPE2(hp->n_genres, W), "y_emb.bow_genre_emb.emb.weight");
    p->artist_emb =
      jb_weights_get(w, JB_WANT_ANY, JB_SHAPE2(hp->n_artists, W), "y_emb.artist_emb.emb.weight");
    if (hp->timing) {
        p->total_emb = jb_weights_get(
          w, JB_WANT_F32, JB_SHAPE2(hp->t_bins, W), "y_emb.total_length_emb.emb.weight");
        p->abs_emb = jb_weights_get(
          w, JB_WANT_F32, JB_SHAPE2(hp->t_bins, W), "y_emb.absolute_pos_emb.emb.weight");
        p->rel_emb = jb_weights_get(
          w, JB_WANT_F32, JB_SHAPE2(hp->t_bins, W), "y_emb.relative_pos_emb.emb.weight");
    }
    if (!jb_weights_ok(w)) goto fail;

    if (lyr_enc) {
        struct jb_transformer_hparams php = hp->prime;
        php.seq_len                       = hp->n_tokens;
        if (!transformer_load(&p->prime, w, "prime_prior", &php, php.attn_order, 0, 0)) goto fail;
        const int64_t Wp = p->prime.width;
        p->prime_start =
          jb_weights_get(w, JB_WANT_F32, JB_SHAPE2(1, Wp), "prime_prior.start_token");
        p->prime_x_emb =
          jb_weights_get(w, JB_WANT_ANY, JB_SHAPE2(hp->n_vocab, Wp), "prime_prior.x_emb.weight");
        p->prime_pos_emb = jb_weights_get(
          w, JB_WANT_F32, JB_SHAPE2(hp->n_tokens, Wp), "prime_prior.pos_emb.pos_emb");
        p->prime_proj_w = jb_weights_get(w, JB_WANT_ANY, JB_SHAPE2(Wp, W), "prime_state_proj.w");
        p->prime_proj_b = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "prime_state_proj.b");
        p->prime_ln_w   = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "prime_state_ln.weight");
        p->prime_ln_b   = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "prime_state_ln.bias");
        jb_weights_skip(w, "prime_x_out.weight"); /* lyric LM head: training only */
        if (!jb_weights_ok(w)) goto fail;
    }

    if (var == JB_PRIOR_UPSAMPLER) {
        p->cond = jb_upsampler_cond_init(hp, w, be);
        if (!p->cond) goto fail;
    }
    p->cond_a        = jb_backend_alloc(be, (size_t)COND_ROWS * (size_t)W * sizeof(float));
    p->cond_b        = jb_backend_alloc(be, (size_t)COND_ROWS * (size_t)W * sizeof(float));
    p->cond_ids      = jb_backend_alloc(be, 3 * COND_ROWS * sizeof(int32_t));
    p->cond_ids_host = jb_calloc(3 * COND_ROWS, sizeof(int32_t));
    if (!p->cond_a || !p->cond_b || !p->cond_ids || !p->cond_ids_host) goto fail;
    return p;

fail:
    jb_prior_free(p);
    return NULL;
}

void jb_prior_free(struct jb_prior *p)
{
    if (!p) return;
    if (p->cond) jb_upsampler_cond_free(p->cond);
    jb_backend_free_buffer(p->be, p->cond_a);
    jb_backend_free_buffer(p->be, p->cond_b);
    jb_backend_free_buffer(p->be, p->cond_ids);
    free(p->cond_ids_host);
    free(p->tr.blocks);
    free(p->prime.blocks);
    free(p);
}

int32_t jb_prior_width(const struct jb_prior *p)
{
    return p->width;
}
int32_t jb_prior_seq_len(const struct jb_prior *p)
{
    return p->seq_len;
}
int32_t jb_prior_vocab(const struct jb_prior *p)
{
    return p->vocab;
}
int32_t jb_prior_prefix_len(const struct jb_prior *p)
{
    return p->prefix_len;
}
int32_t jb_prior_enc_len(const struct jb_prior *p)
{
    return p->tr.enc_len;
}

/* ---- conditioning ------------------------------------------------------------------------- */

/* Uploads n ids from the prior's host staging to its backend id buffer (at offset `at`). */
static void upload_ids(struct jb_prior *p, int64_t at, int64_t n)
{
    jb_backend_set(p->be, p->cond_ids + at, p->cond_ids_host + at, (size_t)n * sizeof(int32_t));
}

enum jb_status jb_prior_start_emb(struct jb_prior *p,
                                  int32_t artist,
                                  const int32_t *genres,
                                  float *start_emb)
{
    const int64_t W = p->width;
    const int G     = p->hp.max_bow_genre_size;
    if (artist < 0 || artist >= p->hp.n_artists)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "prior: artist id %d out of range [0, %d)",
                       artist,
                       p->hp.n_artists);
    if (G + 1 > 3 * COND_ROWS)
        return jb_fail(JB_STATUS_ERR_MODEL, "prior: %d genre slots is too many", G);
    for (int g = 0; g < G; g++)
        if (genres[g] >= p->hp.n_genres)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "prior: genre id %d out of range [0, %d)",
                           genres[g],
                           p->hp.n_genres);
    /* bag of genres: the unmasked rows (genre ≥ 0) summed in slot order, then the artist row
     * (a masked slot adds row·0 = 0 in the reference, which changes nothing) */
    for (int g = 0; g < G; g++)
        p->cond_ids_host[g] = genres[g] > 0 ? genres[g] : 0;
    p->cond_ids_host[G] = artist;
    upload_ids(p, 0, G + 1);
    jb_fill(p->be, W, 0.0f, p->cond_a);
    for (int g = 0; g < G; g++) {
        if (genres[g] < 0) continue;
        jb_embedding(p->be, p->genre_emb, p->cond_ids + g, 1, p->cond_b);
        jb_add(p->be, W, p->cond_a, p->cond_b, p->cond_a);
    }
    jb_embedding(p->be, p->artist_emb, p->cond_ids + G, 1, p->cond_b);
    jb_add(p->be, W, p->cond_a, p->cond_b, p->cond_a);
    jb_backend_get(p->be, start_emb, p->cond_a, (size_t)W * sizeof *start_emb);
    return JB_STATUS_OK;
}

enum jb_status jb_prior_y_pos(struct jb_prior *p,
                              int32_t k_tot,
                              const int32_t *k_abs,
                              const int32_t *k_rel,
                              float *y_pos)
{
    if (!p->hp.timing)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: this prior has no timing signal");
    const int32_t nb = p->hp.t_bins;
    const int64_t W = p->width, n = p->hp.n_ctx;
    if (k_tot < 0 || k_tot >= nb)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: total-length bin %d out of range", k_tot);
    for (int64_t i = 0; i < n; i++)
        if (k_abs[i] < 0 || k_abs[i] >= nb || k_rel[i] < 0 || k_rel[i] >= nb)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "prior: timing bins (%d, %d) at position %lld out of range",
                           k_abs[i],
                           k_rel[i],
                           (long long)i);
    /* y[i] = (Tot[k_tot] + Abs[k_abs[i]]) + Rel[k_rel[i]], COND_ROWS positions at a time */
    int32_t *ids = p->cond_ids_host;
    for (int64_t i0 = 0; i0 < n; i0 += COND_ROWS) {
        const int64_t m = n - i0 < COND_ROWS ? n - i0 : COND_ROWS;
        for (int64_t i = 0; i < m; i++) {
            ids[i]                 = k_tot;
            ids[COND_ROWS + i]     = k_abs[i0 + i];
            ids[2 * COND_ROWS + i] = k_rel[i0 + i];
        }
        jb_backend_set(p->be, p->cond_ids, ids, 3 * COND_ROWS * sizeof *ids);
        jb_embedding(p->be, p->total_emb, p->cond_ids, m, p->cond_a);
        jb_embedding(p->be, p->abs_emb, p->cond_ids + COND_ROWS, m, p->cond_b);
        jb_add(p->be, m * W, p->cond_a, p->cond_b, p->cond_a);
        jb_embedding(p->be, p->rel_emb, p->cond_ids + 2 * COND_ROWS, m, p->cond_b);
        jb_add(p->be, m * W, p->cond_a, p->cond_b, p->cond_a);
        jb_backend_get(p->be, y_pos + i0 * W, p->cond_a, (size_t)(m * W) * sizeof *y_pos);
    }
    return JB_STATUS_OK;
}

enum jb_status jb_prior_x_timing(struct jb_prior *p,
                                 int32_t k_tot,
                                 const int32_t *k_abs,
                                 const int32_t *k_rel,
                                 float *x)
{
    const size_t pre = (size_t)p->prefix_len * (size_t)p->width;
    memset(x, 0, pre * sizeof *x); /* the lyric prefix of D has no conditioning (host array) */
    return jb_prior_y_pos(p, k_tot, k_abs, k_rel, x + pre);
}

enum jb_status jb_prior_x_upsampler(struct jb_prior *p, const int32_t *z_upper, float *x)
{
    if (p->hp.variant != JB_PRIOR_UPSAMPLER)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: not an upsampler");
    return jb_upsampler_cond_forward(p->cond, z_upper, x);
}

/* ---- transformer state -------------------------------------------------------------------- */

static void transformer_state_free(struct jb_transformer_state *ts)
{
    struct jb_backend *be = ts->be;
    if (ts->caches) {
        for (int d = 0; d < ts->tr->depth; d++) {
            jb_backend_free_buffer(be, ts->caches[d].k);
            jb_backend_free_buffer(be, ts->caches[d].v);
        }
    }
    free(ts->caches);
    if (be) {
        jb_backend_free_buffer(be, ts->h);
        jb_backend_free_buffer(be, ts->cur);
        jb_backend_free_buffer(be, ts->qkv);
        jb_backend_free_buffer(be, ts->att);
        jb_backend_free_buffer(be, ts->mlp);
        jb_backend_free_buffer(be, ts->enc_in);
        jb_backend_free_buffer(be, ts->enc);
    }
    memset(ts, 0, sizeof *ts);
}

/* a·b elements of `elem` bytes in a backend buffer, counted in *bytes; false on overflow/OOM. */
static bool reserve_be(struct jb_backend *be,
                       void *dst,
                       int64_t a,
                       int64_t b,
                       size_t elem,
                       size_t *bytes)
{
    size_t n, nb;
    if (a < 0 || b < 0 || !jb_mul_size((size_t)a, (size_t)b, &n) || !jb_mul_size(n, elem, &nb)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "prior: buffer size overflow");
        return false;
    }
    void *p = jb_backend_alloc(be, nb ? nb : 1);
    memcpy(dst, &p, sizeof p);
    if (bytes) *bytes += nb;
    return p != NULL;
}

static bool reserve(struct jb_transformer_state *ts, float **dst, int64_t a, int64_t b)
{
    return reserve_be(ts->be, dst, a, b, sizeof(float), &ts->bytes);
}

static bool transformer_state_init(struct jb_transformer_state *ts,
                                   struct jb_backend *be,
                                   const struct jb_transformer *tr,
                                   enum jb_dtype kv_type,
                                   int n_batch,
                                   int max_chunk)
{
    memset(ts, 0, sizeof *ts);
    ts->tr          = tr;
    ts->be          = be;
    ts->n_batch     = n_batch;
    ts->max_chunk   = max_chunk;
    ts->kv_type     = kv_type;
    const int64_t M = (int64_t)n_batch * max_chunk, W = tr->width, ns = tr->n_state;
    bool ok = reserve(ts, &ts->h, M, W) && reserve(ts, &ts->cur, M, W) &&
              reserve(ts, &ts->qkv, M, 3 * ns) && reserve(ts, &ts->att, M, ns) &&
              reserve(ts, &ts->mlp, M, tr->mlp_width);
    if (ok && tr->enc_len > 0)
        ok = reserve(ts, &ts->enc_in, (int64_t)n_batch * tr->enc_len, W) &&
             reserve(ts, &ts->enc, (int64_t)n_batch * tr->enc_len, 2 * ns);
    if (ok) ok = (ts->caches = jb_calloc((size_t)tr->depth, sizeof *ts->caches)) != NULL;
    const size_t es = jb_dtype_size(kv_type);
    for (int d = 0; ok && d < tr->depth; d++) {
        struct jb_kv_cache *c = &ts->caches[d];
        c->func               = tr->blocks[d].attn_func;
        c->cap                = jb_kv_cache_capacity(tr, c->func);
        c->rows               = (tr->seq_len + tr->block_ctx - 1) / tr->block_ctx;
        c->type               = kv_type;
        const int64_t len     = (int64_t)n_batch * c->cap;
        ok                    = reserve_be(be, &c->k, len, ns, es, &ts->bytes) &&
             reserve_be(be, &c->v, len, ns, es, &ts->bytes);
        if (ok && c->func >= 1 && c->func <= 3) {
            /* Every page of a block-kind cache is written within its first two blocks of
             * positions (func 2's first block writes a key into every 4 KiB page of its keys
             * and a value row into every 2 MiB page of its values: large buffers are huge
             * pages), so zeroing it here brings in nothing that decoding would not; it moves
             * the first-touch page faults (upsampler: 738 MB per candidate; in a VM up to 3-6
             * ms per 2 MiB page, 20-70 ms per token at positions 32-40) out of the token loop
             * into the state's set-up. Values are never read before kv_append writes them.
             * Dense, encoder and prime caches fill in position order and fault as they fill. */
            const int64_t words = len * ns * (int64_t)es / (int64_t)sizeof(float);
            jb_fill(be, words, 0.0f, c->k);
            jb_fill(be, words, 0.0f, c->v);
        }
    }
    if (!ok) transformer_state_free(ts);
    return ok;
}

/* ---- the transformer ---------------------------------------------------------------------- */

/* Runs the C positions S..S+C−1 of every candidate through the stack: ts->h holds the input
 * rows [N·C, w] and receives the output. encoder_kv [N, enc_len, w] (host) feeds the func-6
 * layers: uploaded and projected once, at S == 0. hook_h: host copy of h for the hook. */
static void transformer_chunk(const struct jb_transformer *tr,
                              struct jb_transformer_state *ts,
                              int64_t S,
                              int C,
                              const int32_t *pos,
                              const float *encoder_kv,
                              jb_prior_hook_fn hook,
                              void *hook_user,
                              float *hook_h)
{
    struct jb_backend *be = ts->be;
    const int64_t M = (int64_t)ts->n_batch * C, W = tr->width, ns = tr->n_state;
    const int64_t mlp = tr->mlp_width, Me = (int64_t)ts->n_batch * tr->enc_len;
    float *const h = ts->h, *const cur = ts->cur;
    if (tr->enc_len > 0 && S == 0)
        jb_backend_set(be, ts->enc_in, encoder_kv, (size_t)(Me * W) * sizeof(float));

    for (int d = 0; d < tr->depth; d++) {
        const struct jb_block *blk = &tr->blocks[d];
        struct jb_kv_cache view    = ts->caches[d];
        struct jb_kv_cache *cache  = &view;
        const bool cross           = blk->attn_func == 6;
        if (ts->cand0 > 0) { /* a group's candidates: their blocks of the cache (ops.h) */
            const size_t off =
              (size_t)ts->cand0 * (size_t)view.cap * (size_t)ns * jb_dtype_size(view.type);
            view.k = (uint8_t *)view.k + off;
            view.v = (uint8_t *)view.v + off;
        }

        { // attention: h = h + c_proj(attn(ln_0(h)))
            jb_layernorm(be, M, W, h, blk->ln_0_w, blk->ln_0_b, JB_LN_EPS, cur);
            if (cross && S == 0) {
                jb_matmul(be,
                          Me,
                          2 * ns,
                          W,
                          ts->enc_in,
                          W,
                          blk->c_enc_kv_w,
                          false,
                          blk->c_enc_kv_b,
                          ts->enc,
                          2 * ns,
                          false);
                jb_attention_set_encoder(be, tr, cache, ts->n_batch, ts->enc);
            }
            const int64_t nq = cross ? ns : 3 * ns;
            jb_matmul(
              be, M, nq, W, cur, W, blk->c_attn_w, false, blk->c_attn_b, ts->qkv, nq, false);
            jb_attention_chunk(be, tr, cache, ts->n_batch, S, C, pos, ts->qkv, ts->att);
            /* accumulate: h ← (x·c_proj + (h + b)), one pass instead of a separate add */
            jb_matmul(be, M, W, ns, ts->att, ns, blk->c_proj_w, false, blk->c_proj_b, h, W, true);
        }
        { // mlp: h = h + c_proj(quick_gelu(c_fc(ln_1(h))))
            jb_layernorm(be, M, W, h, blk->ln_1_w, blk->ln_1_b, JB_LN_EPS, cur);
            jb_matmul(be, M, mlp, W, cur, W, blk->c_fc_w, false, blk->c_fc_b, ts->mlp, mlp, false);
            jb_quick_gelu(be, M * mlp, ts->mlp);
            jb_matmul(
              be, M, W, mlp, ts->mlp, mlp, blk->mlp_proj_w, false, blk->mlp_proj_b, h, W, true);
        }
        if (hook) {
            jb_backend_get(be, hook_h, h, (size_t)(M * W) * sizeof *hook_h);
            hook(hook_user, d, ts->n_batch, C, (int)W, hook_h);
        }
    }
}

/* ---- lyric encoder (variant C) ------------------------------------------------------------ */

static enum jb_status check_lyrics(const struct jb_prior *p, int N, const int32_t *lyric_ids)
{
    if (p->hp.variant != JB_PRIOR_TOP_LYRICS_ENC)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: no lyric encoder in this prior");
    if (N <= 0) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: batch %d", N);
    for (int64_t i = 0; i < (int64_t)N * p->prime.seq_len; i++)
        if (lyric_ids[i] < 0 || lyric_ids[i] >= p->hp.n_vocab)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "prior: lyric id %d out of range [0, %d)",
                           lyric_ids[i],
                           p->hp.n_vocab);
    return JB_STATUS_OK;
}

/* The lyric encoder on ts (N candidates, chunk T): ids [N·T] backend ids uploaded by the caller
 * (entry n·T + t is lyr[t − 1], entry n·T the start token's placeholder); out [N·T, w] backend. */
static void encoder_run(struct jb_prior *p,
                        struct jb_transformer_state *ts,
                        int N,
                        const int32_t *ids,
                        float *out)
{
    const struct jb_transformer *tr = &p->prime;
    struct jb_backend *be           = p->be;
    const int64_t T = tr->seq_len, Wp = tr->width, W = p->width, M = (int64_t)N * T;
    /* input: e[0] = start_token, e[t] = LyrEmb[lyr[t−1]]; h0 = e + Pos (no X) */
    jb_embedding(be, p->prime_x_emb, ids, M, ts->h);
    for (int n = 0; n < N; n++) {
        float *h = ts->h + (int64_t)n * T * Wp;
        jb_copy(be, 1, Wp, p->prime_start->data, Wp, h, Wp);
        jb_add(be, T * Wp, h, p->prime_pos_emb->data, h);
    }
    transformer_chunk(tr, ts, 0, (int)T, NULL, NULL, NULL, NULL, NULL);
    /* encoder_kv = prime_state_ln(acts · prime_state_proj + b) */
    jb_matmul(be, M, W, Wp, ts->h, Wp, p->prime_proj_w, false, p->prime_proj_b, out, W, false);
    jb_layernorm(be, M, W, out, p->prime_ln_w, p->prime_ln_b, JB_LN_EPS, out);
}

/* ids with the start placeholder: dst[n·T + t] = lyr[n·T + t − 1] (t ≥ 1), 0 at t = 0 */
static void shift_ids(const int32_t *lyr, int N, int64_t T, int32_t *dst)
{
    for (int n = 0; n < N; n++) {
        dst[(int64_t)n * T] = 0;
        for (int64_t t = 1; t < T; t++)
            dst[(int64_t)n * T + t] = lyr[(int64_t)n * T + t - 1];
    }
}

enum jb_status jb_prior_encoder_kv(struct jb_prior *p,
                                   int N,
                                   const int32_t *lyric_ids,
                                   float *encoder_kv,
                                   float *prime_acts)
{
    enum jb_status st = check_lyrics(p, N, lyric_ids);
    if (st != JB_STATUS_OK) return st;
    const struct jb_transformer *tr = &p->prime;
    const int64_t T = tr->seq_len, Wp = tr->width, W = p->width, M = (int64_t)N * T;
    struct jb_transformer_state ts;
    if (!transformer_state_init(&ts, p->be, tr, JB_DTYPE_F32, N, (int)T))
        return JB_STATUS_ERR_NOMEM;
    int32_t *ids_host = jb_malloc((size_t)M * sizeof *ids_host);
    int32_t *ids      = NULL;
    float *out        = NULL;
    if (!ids_host || !reserve_be(p->be, &ids, M, 1, sizeof(int32_t), NULL) ||
        !reserve_be(p->be, &out, M, W, sizeof(float), NULL)) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    shift_ids(lyric_ids, N, T, ids_host);
    jb_backend_set(p->be, ids, ids_host, (size_t)M * sizeof *ids);
    encoder_run(p, &ts, N, ids, out);
    if (prime_acts) jb_backend_get(p->be, prime_acts, ts.h, (size_t)(M * Wp) * sizeof *prime_acts);
    jb_backend_get(p->be, encoder_kv, out, (size_t)(M * W) * sizeof *encoder_kv);
done:
    free(ids_host);
    jb_backend_free_buffer(p->be, ids);
    jb_backend_free_buffer(p->be, out);
    transformer_state_free(&ts);
    return st;
}

enum jb_status jb_prior_state_encoder_kv(struct jb_prior_state *st,
                                         const int32_t *lyric_ids,
                                         float *encoder_kv)
{
    struct jb_prior *p = st->p;
    enum jb_status s   = check_lyrics(p, 1, lyric_ids);
    if (s != JB_STATUS_OK) return s;
    const int64_t T = p->prime.seq_len, W = p->width;
    shift_ids(lyric_ids, 1, T, st->enc_ids_host);
    jb_backend_set(p->be, st->enc_ids, st->enc_ids_host, (size_t)T * sizeof *st->enc_ids);
    encoder_run(p, &st->enc_ts, 1, st->enc_ids, st->enc_out);
    jb_backend_get(p->be, encoder_kv, st->enc_out, (size_t)(T * W) * sizeof *encoder_kv);
    return JB_STATUS_OK;
}

/* ---- memory plan ---------------------------------------------------------------------------- */

/* Bytes transformer_state_init reserves (the same sums, without allocating). */
static double transformer_state_plan(const struct jb_transformer *tr,
                                     enum jb_dtype kv_type,
                                     int n_batch,
                                     int max_chunk)
{
    const double M = (double)n_batch * max_chunk, W = tr->width, ns = tr->n_state;
    double f = M * W * 2 + M * 3 * ns + M * ns + M * tr->mlp_width;
    if (tr->enc_len > 0) f += (double)n_batch * tr->enc_len * (W + 2 * ns);
    double b = f * sizeof(float);
    for (int d = 0; d < tr->depth; d++)
        b += 2.0 * n_batch * jb_kv_cache_capacity(tr, tr->blocks[d].attn_func) * ns *
             (double)jb_dtype_size(kv_type);
    return b;
}

double jb_prior_state_plan_bytes(const struct jb_prior *p,
                                 int n_batch,
                                 int max_chunk,
                                 enum jb_dtype kv_type)
{
    if (n_batch <= 0 || max_chunk <= 0) return 0.0;
    const double M = (double)n_batch * max_chunk, T = p->seq_len;
    double b = transformer_state_plan(&p->tr, kv_type, n_batch, max_chunk);
    b += (M * p->vocab + M * p->width) * sizeof(float) +
         (M + 3.0 * n_batch + T * n_batch) * sizeof(int32_t);
    if (!p->be->iface->host_memory) b += (double)n_batch * T * p->width * sizeof(float); /* x_dev */
    if (p->hp.variant == JB_PRIOR_TOP_LYRICS_ENC) {
        const double Tp = p->prime.seq_len;
        b += transformer_state_plan(&p->prime, JB_DTYPE_F32, 1, (int)Tp) + Tp * sizeof(int32_t) +
             Tp * p->width * sizeof(float);
    }
    return b;
}

/* ---- state and step ----------------------------------------------------------------------- */

struct jb_prior_state *jb_prior_state_init_ex(struct jb_prior *p,
                                              int n_batch,
                                              int max_chunk,
                                              enum jb_dtype kv_type)
{
    if (n_batch <= 0 || max_chunk <= 0 || max_chunk > p->seq_len ||
        (kv_type != JB_DTYPE_F32 && kv_type != JB_DTYPE_F16)) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "prior: state for %d candidates, chunks of %d (T = %d), KV type %s",
                n_batch,
                max_chunk,
                p->seq_len,
                jb_dtype_name(kv_type));
        return NULL;
    }
    struct jb_prior_state *st = jb_calloc(1, sizeof *st);
    if (!st) return NULL;
    st->p           = p;
    st->n_batch     = n_batch;
    st->max_chunk   = max_chunk;
    const int64_t M = (int64_t)n_batch * max_chunk, T = p->seq_len;
    const int64_t n_ids             = M > 2 * n_batch ? M : 2 * n_batch; /* ids, or the cursor */
    struct jb_transformer_state *ts = &st->ts;
    bool ok =
      transformer_state_init(ts, p->be, &p->tr, kv_type, n_batch, max_chunk) &&
      reserve(ts, &st->logits, M, p->vocab) && reserve(ts, &st->xrow, M, p->width) &&
      reserve_be(p->be, &st->ids, M, 1, sizeof(int32_t), &ts->bytes) &&
      reserve_be(p->be, &st->drawn, n_batch, 1, sizeof(int32_t), &ts->bytes) &&
      reserve_be(p->be, &st->cursor, 2 * n_batch, 1, sizeof(int32_t), &ts->bytes) &&
      reserve_be(p->be, &st->hist, T, n_batch, sizeof(int32_t), &ts->bytes) &&
      (p->be->iface->host_memory || reserve(ts, &st->x_buf, (int64_t)n_batch * T, p->width)) &&
      (st->ids_host = jb_calloc((size_t)n_ids, sizeof *st->ids_host)) != NULL &&
      (st->drawn_host = jb_calloc((size_t)n_batch, sizeof *st->drawn_host)) != NULL &&
      (st->hist_host = jb_calloc((size_t)(T * n_batch), sizeof *st->hist_host)) != NULL;
    st->x_dev       = (struct jb_tensor){ .type   = JB_DTYPE_F32,
                                          .n_dims = 2,
                                          .shape  = { (int64_t)n_batch * T, p->width },
                                          .data   = st->x_buf,
                                          .name   = "prior state X" };
    st->cursor_host = -1;
    st->use_graph   = true;
    if (ok && p->hp.variant == JB_PRIOR_TOP_LYRICS_ENC) {
        const int64_t Tp = p->prime.seq_len;
        ok = transformer_state_init(&st->enc_ts, p->be, &p->prime, JB_DTYPE_F32, 1, (int)Tp) &&
             reserve_be(p->be, &st->enc_ids, Tp, 1, sizeof(int32_t), &ts->bytes) &&
             reserve_be(p->be, &st->enc_out, Tp, p->width, sizeof(float), &ts->bytes) &&
             (st->enc_ids_host = jb_calloc((size_t)Tp, sizeof *st->enc_ids_host)) != NULL;
        if (ok) ts->bytes += st->enc_ts.bytes;
    }
    if (!ok) {
        jb_prior_state_free(st);
        return NULL;
    }
    return st;
}

struct jb_prior_state *jb_prior_state_init(struct jb_prior *p, int n_batch, int max_chunk)
{
    return jb_prior_state_init_ex(p, n_batch, max_chunk, JB_DTYPE_F32);
}

void jb_prior_state_free(struct jb_prior_state *st)
{
    if (!st) return;
    struct jb_backend *be = st->p->be;
    jb_backend_free_buffer(be, st->logits);
    jb_backend_free_buffer(be, st->xrow);
    jb_backend_free_buffer(be, st->ids);
    jb_backend_free_buffer(be, st->drawn);
    jb_backend_free_buffer(be, st->cursor);
    jb_backend_free_buffer(be, st->hist);
    jb_backend_free_buffer(be, st->x_buf);
    jb_backend_graph_free(be, st->graph);
    free(st->drawn_host);
    free(st->hist_host);
    jb_backend_free_buffer(be, st->enc_ids);
    jb_backend_free_buffer(be, st->enc_out);
    transformer_state_free(&st->ts);
    transformer_state_free(&st->enc_ts);
    free(st->ids_host);
    free(st->enc_ids_host);
    free(st->hook_h);
    free(st);
}

void jb_prior_state_reset(struct jb_prior_state *st)
{
    st->pos           = 0;
    st->hist_from     = 0;
    st->drawn_pending = false;
}

enum jb_status jb_prior_state_set_cond(struct jb_prior_state *st,
                                       const float *start_emb,
                                       const float *x,
                                       const float *encoder_kv)
{
    if (!start_emb || !x || (st->p->tr.enc_len > 0 && !encoder_kv))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "prior: missing conditioning (start_emb, x%s)",
                       st->p->tr.enc_len > 0 ? ", encoder_kv" : "");
    st->start_emb  = start_emb;
    st->x          = x;
    st->encoder_kv = encoder_kv;
    jb_prior_state_reset(st);
    /* X once per window where the ops read it; the steps gather their rows from there */
    struct jb_backend *be = st->p->be;
    if (st->x_buf)
        jb_backend_set(be,
                       st->x_buf,
                       x,
                       (size_t)st->n_batch * (size_t)st->p->seq_len * (size_t)st->p->width *
                         sizeof(float));
    else
        st->x_dev.data = (void *)x; /* host memory: the ops read the borrowed array (read only) */
    return jb_backend_status(be);
}

void jb_prior_state_set_hook(struct jb_prior_state *st, jb_prior_hook_fn hook, void *user)
{
    if (hook && !st->hook_h) {
        const size_t n = (size_t)st->n_batch * (size_t)st->max_chunk * (size_t)st->p->width;
        st->hook_h     = jb_malloc(n * sizeof *st->hook_h);
        if (!st->hook_h) hook = NULL; /* jb_fail said why; no observer rather than a crash */
    }
    st->hook      = hook;
    st->hook_user = user;
}

int64_t jb_prior_state_pos(const struct jb_prior_state *st)
{
    return st->pos;
}
int jb_prior_state_n_batch(const struct jb_prior_state *st)
{
    return st->n_batch;
}
int jb_prior_state_max_chunk(const struct jb_prior_state *st)
{
    return st->max_chunk;
}
size_t jb_prior_state_bytes(const struct jb_prior_state *st)
{
    return st->ts.bytes;
}
size_t jb_prior_state_kv_bytes(const struct jb_prior_state *st)
{
    size_t n = 0;
    for (int d = 0; d < st->p->tr.depth; d++)
        n += 2 * (size_t)st->n_batch * (size_t)st->ts.caches[d].cap * (size_t)st->p->tr.n_state *
             jb_dtype_size(st->ts.kv_type);
    return n;
}

/* The transformer pass of jb_prior_step, on ids already validated; logits (backend, optional)
 * receives [N·C, V]. */
static void step_run(struct jb_prior_state *st,
                     int C,
                     const int32_t *seq,
                     int64_t ld_seq,
                     bool head)
{
    struct jb_prior *p              = st->p;
    struct jb_backend *be           = p->be;
    struct jb_transformer_state *ts = &st->ts;
    const int N                     = st->n_batch;
    const int64_t S = st->pos, W = p->width, T = p->seq_len, V = p->vocab;
    const int64_t M = (int64_t)N * C;

    // input embedding: h0[i] = ((start_emb if i == 0 else TokEmb[s[i−1]]) + Pos[i]) + X[i]
    for (int n = 0; n < N; n++)
        for (int r = 0; r < C; r++) {
            const int64_t i                  = S + r;
            st->ids_host[(int64_t)n * C + r] = i == 0 ? 0 : seq[n * ld_seq + i - 1];
        }
    jb_backend_set(be, st->ids, st->ids_host, (size_t)M * sizeof *st->ids);
    jb_embedding(be, p->x_emb, st->ids, M, ts->h);
    const float *x_dev = st->x_dev.data;
    for (int n = 0; n < N; n++) {
        float *hn = ts->h + (int64_t)n * C * W;
        if (S == 0) jb_backend_set(be, hn, st->start_emb + (int64_t)n * W, (size_t)W * sizeof *hn);
        jb_add(be, C * W, hn, (const float *)p->pos_emb->data + S * W, hn);
        jb_copy(be, C, W, x_dev + ((int64_t)n * T + S) * W, W, st->xrow + (int64_t)n * C * W, W);
    }
    jb_add(be, M * W, ts->h, st->xrow, ts->h);
    if (st->hook) {
        jb_backend_get(be, st->hook_h, ts->h, (size_t)(M * W) * sizeof *st->hook_h);
        st->hook(st->hook_user, -1, N, C, (int)W, st->hook_h);
    }

    transformer_chunk(&p->tr, ts, S, C, NULL, st->encoder_kv, st->hook, st->hook_user, st->hook_h);

    if (head) { // head: (h + X)·TokEmbᵀ for A/D (tied), h·OutWᵀ for B/C
        if (p->add_x_after) jb_add(be, M * W, ts->h, st->xrow, ts->h);
        jb_matmul(be, M, V, W, ts->h, W, p->x_out, true, NULL, st->logits, V, false);
    }
    st->pos           = S + C;
    st->hist_from     = S + C; /* positions from here on are decoded (and kept in hist) */
    st->drawn_pending = false; /* the next decode step takes its previous tokens from seq */
}

/* prev_on_device: the decode step's previous tokens are in backend memory (drawn_pending), so
 * seq is not read. */
static enum jb_status step_check(const struct jb_prior_state *st,
                                 int C,
                                 const int32_t *seq,
                                 int64_t ld_seq,
                                 bool prev_on_device)
{
    const struct jb_prior *p = st->p;
    const int64_t S = st->pos, T = p->seq_len, V = p->vocab;
    if (C < 1 || C > st->max_chunk || S + C > T)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "prior: step of %d positions at %lld (max chunk %d, window %lld)",
                       C,
                       (long long)S,
                       st->max_chunk,
                       (long long)T);
    if (!st->x || !st->start_emb)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: step without conditioning");
    if (prev_on_device) return JB_STATUS_OK;
    if (S + C > 1 && (!seq || ld_seq < S + C - 1))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: step needs the previous tokens");
    for (int n = 0; n < st->n_batch; n++) {
        for (int64_t i = S > 1 ? S : 1; i < S + C; i++) {
            const int32_t tok = seq[n * ld_seq + i - 1];
            if (tok < 0 || tok >= V)
                return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                               "prior: token %d at position %lld out of range [0, %lld)",
                               tok,
                               (long long)(i - 1),
                               (long long)V);
        }
    }
    return JB_STATUS_OK;
}

enum jb_status jb_prior_step(struct jb_prior_state *st,
                             int C,
                             const int32_t *seq,
                             int64_t ld_seq,
                             float *logits)
{
    enum jb_status s = step_check(st, C, seq, ld_seq, false);
    if (s != JB_STATUS_OK) return s;
    step_run(st, C, seq, ld_seq, logits != NULL);
    if (logits)
        jb_backend_get(st->p->be,
                       logits,
                       st->logits,
                       (size_t)st->n_batch * (size_t)C * (size_t)st->p->vocab * sizeof *logits);
    return jb_backend_status(st->p->be); /* a device op may have failed */
}

/* ---- the decode step ---------------------------------------------------------------------- */

/* Makes the device inputs of the decode step of position S = st->pos hold what the host says:
 * the position (and each candidate's row of x_dev) in `cursor`, the previous tokens in `drawn`
 * (S ≥ 1; the start embedding in h at S = 0). Each is skipped when the previous step left it
 * there itself: it advanced the cursor, and it drew the tokens (drawn_pending, or the host mirror
 * equals seq). Host copies only: never recorded; in steady state there are none. */
static void decode_inputs(struct jb_prior_state *st, const int32_t *seq, int64_t ld_seq)
{
    struct jb_prior *p    = st->p;
    struct jb_backend *be = p->be;
    const int N           = st->n_batch;
    const int64_t S = st->pos, W = p->width, T = p->seq_len;
    if (st->cursor_host != S) {
        for (int n = 0; n < N; n++) {
            st->ids_host[n]     = (int32_t)S;
            st->ids_host[N + n] = (int32_t)(n * T + S);
        }
        jb_backend_set(be, st->cursor, st->ids_host, (size_t)(2 * N) * sizeof *st->cursor);
        st->cursor_host = S;
    }
    if (S > 0 && !st->drawn_pending) {
        bool same = st->drawn_known;
        for (int n = 0; n < N && same; n++)
            same = st->drawn_host[n] == seq[n * ld_seq + S - 1];
        if (!same) {
            for (int n = 0; n < N; n++)
                st->drawn_host[n] = seq[n * ld_seq + S - 1];
            jb_backend_set(be, st->drawn, st->drawn_host, (size_t)N * sizeof *st->drawn);
            st->drawn_known = true;
        }
    } else if (S == 0) {
        for (int n = 0; n < N; n++)
            jb_backend_set(
              be, st->ts.h + (int64_t)n * W, st->start_emb + (int64_t)n * W, (size_t)W * 4);
    }
}

/* The decode step proper: only ops, the position read from `cursor` (so a recording of it
 * serves every S ≥ 1): h0 = TokEmb[drawn] (start_emb at S = 0) + Pos[cursor] + X[cursor] (the
 * row gathered from x_dev), the stack, the head, the draw into `drawn` and into hist at the
 * position, cursor += 1. Same arithmetic, in the same order, as the chunk path of step_run.
 * Runs candidates [n0, n0 + n) of the state: all of them, or one group of a step cut into
 * groups (decode_groups). Every op works row by row or candidate by candidate, with sums that
 * do not depend on the number of rows (backend/ops.h), so a group's results are bitwise those
 * of the whole batch. */
static void decode_range(struct jb_prior_state *st,
                         int64_t S,
                         const struct jb_sample_desc *sd,
                         int n0,
                         int n)
{
    struct jb_prior *p    = st->p;
    struct jb_backend *be = p->be;
    const int N           = st->n_batch;
    const int64_t W = p->width, V = p->vocab, M = n, ns = p->tr.n_state;
    const int64_t enc              = (int64_t)n0 * p->tr.enc_len;
    struct jb_transformer_state ts = st->ts; /* the view of candidates [n0, n0 + n) */
    ts.n_batch                     = n;
    ts.cand0                       = n0;
    ts.h += n0 * W;
    ts.cur += n0 * W;
    ts.qkv += n0 * 3 * ns;
    ts.att += n0 * ns;
    ts.mlp += n0 * p->tr.mlp_width;
    if (ts.enc_in) ts.enc_in += enc * W, ts.enc += enc * 2 * ns;
    int32_t *drawn = st->drawn + n0, *pos = st->cursor + n0, *xpos = st->cursor + N + n0;
    float *xrow = st->xrow + n0 * W, *logits = st->logits + n0 * V;
    struct jb_sample_desc sdn = *sd;
    sdn.first_candidate += n0; /* each candidate keeps its random stream */

    if (S > 0) jb_embedding(be, p->x_emb, drawn, n, ts.h);
    jb_embedding(be, p->pos_emb, pos, n, ts.cur);
    jb_add(be, M * W, ts.h, ts.cur, ts.h);
    jb_embedding(be, &st->x_dev, xpos, n, xrow);
    jb_add(be, M * W, ts.h, xrow, ts.h);
    if (st->hook) { /* never in a group (decode_groups) */
        jb_backend_get(be, st->hook_h, ts.h, (size_t)(M * W) * sizeof *st->hook_h);
        st->hook(st->hook_user, -1, n, 1, (int)W, st->hook_h);
    }
    transformer_chunk(&p->tr,
                      &ts,
                      S,
                      1,
                      pos,
                      st->encoder_kv ? st->encoder_kv + enc * W : NULL,
                      st->hook,
                      st->hook_user,
                      st->hook_h);
    if (p->add_x_after) jb_add(be, M * W, ts.h, xrow, ts.h);
    jb_matmul(be, M, V, W, ts.h, W, p->x_out, true, NULL, logits, V, false);
    jb_sample_at(be, &sdn, n, V, logits, V, pos, drawn);
    jb_store_i32_at(be, n, drawn, pos, N, st->hist + n0);
    if (n == N) {
        jb_add_i32(be, 2 * N, 1, st->cursor); /* the position and the rows of x_dev */
    } else {
        jb_add_i32(be, n, 1, pos);
        jb_add_i32(be, n, 1, xpos);
    }
}

static void decode_run(struct jb_prior_state *st, int64_t S, const struct jb_sample_desc *sd)
{
    decode_range(st, S, sd, 0, st->n_batch);
}

struct decode_group_job {
    struct jb_prior_state *st;
    int64_t S;
    const struct jb_sample_desc *sd;
    int groups;
};

static void decode_group(void *arg, int g)
{
    const struct decode_group_job *j = arg;
    const int N                      = j->st->n_batch;
    const int n0 = N * g / j->groups, n1 = N * (g + 1) / j->groups;
    decode_range(j->st, j->S, j->sd, n0, n1 - n0);
}

/* The decode step cut into `groups` groups of candidates that the backend runs side by side
 * (jb_backend_run_groups: on the CPU, one per thread, each reading the weights itself). Only
 * where the backend's tuning of this token loop chose it (jb_backend_loop_groups). */
static void decode_groups(struct jb_prior_state *st,
                          int64_t S,
                          const struct jb_sample_desc *sd,
                          int groups)
{
    struct decode_group_job job = { st, S, sd, groups };
    jb_backend_run_groups(st->p->be, groups, decode_group, &job);
}

static bool same_desc(const struct jb_sample_desc *a, const struct jb_sample_desc *b)
{
    return a->temp == b->temp && a->top_k == b->top_k && a->top_p == b->top_p &&
           a->seed == b->seed && a->first_candidate == b->first_candidate;
}

void jb_prior_state_set_graphs(struct jb_prior_state *st, bool on)
{
    st->use_graph    = on;
    st->graph_why[0] = '\0';
}

bool jb_prior_state_graph_live(const struct jb_prior_state *st)
{
    return st->graph != NULL;
}

void jb_prior_state_set_token_batch(struct jb_prior_state *st, int n)
{
    st->token_batch = n > 0 ? n : 0;
}

int jb_prior_state_token_batch(const struct jb_prior_state *st)
{
    if (st->token_batch > 0) return st->token_batch;
    return jb_backend_has_graphs(st->p->be) ? JB_TOKEN_BATCH : 1;
}

const char *jb_prior_state_graph_why(const struct jb_prior_state *st)
{
    return st->graph_why[0] ? st->graph_why : NULL;
}

enum jb_status jb_prior_step_draw(struct jb_prior_state *st,
                                  const int32_t *seq,
                                  int64_t ld_seq,
                                  const struct jb_sample_desc *sd)
{
    enum jb_status s = step_check(st, 1, seq, ld_seq, st->drawn_pending);
    if (s != JB_STATUS_OK) return s;
    struct jb_prior *p    = st->p;
    struct jb_backend *be = p->be;
    const int64_t S       = st->pos;
    decode_inputs(st, seq, ld_seq);
    /* Recorded once the step ran directly (its first run sizes the device's work memory), from
     * S = 1 on (S = 0 takes the start embedding), without a hook (it reads h on the host). */
    bool replay =
      st->use_graph && S > 0 && !st->hook && st->decode_steps > 0 && jb_backend_has_graphs(be);
    if (replay && st->graph && !same_desc(&st->graph_sd, sd)) {
        jb_backend_graph_free(be, st->graph);
        st->graph = NULL;
    }
    if (replay && !st->graph) {
        if (jb_backend_graph_begin(be) == JB_STATUS_OK) {
            decode_run(st, S, sd);
            st->graph    = jb_backend_graph_end(be);
            st->graph_sd = *sd;
            if (!st->graph && jb_backend_status(be) != JB_STATUS_OK) return jb_backend_status(be);
        }
        if (!st->graph) { /* cannot record here (none of the ops ran): run them directly */
            snprintf(st->graph_why, sizeof st->graph_why, "%s", jb_last_error());
            st->use_graph = false;
            replay        = false;
        }
    }
    int groups = replay || st->hook ? 1 : jb_backend_loop_groups(be);
    if (groups > st->n_batch) groups = st->n_batch;
    if (replay) {
        jb_backend_graph_launch(be, st->graph);
    } else {
        if (groups > 1)
            decode_groups(st, S, sd, groups);
        else
            decode_run(st, S, sd);
        st->decode_steps++;
    }
    st->pos           = S + 1;
    st->cursor_host   = S + 1;
    st->drawn_pending = true;
    st->drawn_known   = false;
    return jb_backend_status(be); /* a device op may have failed */
}

enum jb_status jb_prior_step_sample(struct jb_prior_state *st,
                                    const int32_t *seq,
                                    int64_t ld_seq,
                                    const struct jb_sample_desc *sd,
                                    int32_t *tokens)
{
    enum jb_status s = jb_prior_step_draw(st, seq, ld_seq, sd);
    if (s != JB_STATUS_OK) return s;
    struct jb_backend *be = st->p->be;
    jb_backend_get(be, tokens, st->drawn, (size_t)st->n_batch * sizeof *tokens);
    memcpy(st->drawn_host, tokens, (size_t)st->n_batch * sizeof *tokens);
    st->drawn_known   = true;
    st->drawn_pending = false; /* the host has them: the next step compares seq with them */
    return jb_backend_status(be);
}

enum jb_status jb_prior_state_drawn(struct jb_prior_state *st,
                                    int64_t t0,
                                    int64_t t1,
                                    int32_t *out,
                                    int64_t ld_out)
{
    const int N = st->n_batch;
    if (t0 < st->hist_from || t1 < t0 || t1 > st->pos || !out || ld_out < t1 - t0)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "prior: drawn tokens of positions [%lld, %lld) asked, decoded are [%lld, "
                       "%lld)",
                       (long long)t0,
                       (long long)t1,
                       (long long)st->hist_from,
                       (long long)st->pos);
    if (t0 == t1) return JB_STATUS_OK;
    struct jb_backend *be = st->p->be;
    jb_backend_get(be, st->hist_host, st->hist + t0 * N, (size_t)((t1 - t0) * N) * sizeof *out);
    enum jb_status s = jb_backend_status(be);
    if (s != JB_STATUS_OK) return s;
    for (int64_t t = t0; t < t1; t++)
        for (int n = 0; n < N; n++)
            out[n * ld_out + (t - t0)] = st->hist_host[(t - t0) * N + n];
    return JB_STATUS_OK;
}

enum jb_status jb_prior_forward(struct jb_prior *p,
                                int N,
                                int T,
                                const int32_t *tokens,
                                const float *start_emb,
                                const float *x,
                                const float *encoder_kv,
                                float *logits,
                                jb_prior_hook_fn hook,
                                void *hook_user)
{
    if (N <= 0 || T <= 0 || T > p->seq_len)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "prior: forward of %d x %d positions (T = %d)",
                       N,
                       T,
                       p->seq_len);
    struct jb_prior_state *st = jb_prior_state_init(p, N, T);
    if (!st) return JB_STATUS_ERR_NOMEM;
    jb_prior_state_set_hook(st, hook, hook_user);
    enum jb_status s = jb_prior_state_set_cond(st, start_emb, x, encoder_kv);
    if (s == JB_STATUS_OK) s = jb_prior_step(st, T, tokens, T, logits);
    jb_prior_state_free(st);
    return s;
}
