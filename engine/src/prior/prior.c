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

#include "backend/cpu/cpu.h"
#include "prior/sampler.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#if defined(__has_include)
#if __has_include("prior/conditioner.h")
#include "prior/conditioner.h"
#define JB_HAVE_UPSAMPLER_COND 1
#endif
#endif

#define JB_LN_EPS 1e-5f

/* ---- loading ------------------------------------------------------------------------------ */

static const float *bias_data(const struct jb_tensor *t)
{
    return t ? (const float *)t->data : NULL;
}

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
        b->c_attn_b = bias_data(BLK(JB_WANT_F32, JB_SHAPE1(cross ? ns : 3 * ns), "attn.c_attn.b"));
        if (cross) {
            b->c_enc_kv_w = BLK(JB_WANT_ANY, JB_SHAPE2(W, 2 * ns), "attn.c_enc_kv.w");
            b->c_enc_kv_b = bias_data(BLK(JB_WANT_F32, JB_SHAPE1(2 * ns), "attn.c_enc_kv.b"));
        }
        b->c_proj_w   = BLK(JB_WANT_ANY, JB_SHAPE2(ns, W), "attn.c_proj.w");
        b->c_proj_b   = bias_data(BLK(JB_WANT_F32, JB_SHAPE1(W), "attn.c_proj.b"));
        b->ln_1_w     = BLK(JB_WANT_F32, JB_SHAPE1(W), "ln_1.weight");
        b->ln_1_b     = BLK(JB_WANT_F32, JB_SHAPE1(W), "ln_1.bias");
        b->c_fc_w     = BLK(JB_WANT_ANY, JB_SHAPE2(W, mlp), "mlp.c_fc.w");
        b->c_fc_b     = bias_data(BLK(JB_WANT_F32, JB_SHAPE1(mlp), "mlp.c_fc.b"));
        b->mlp_proj_w = BLK(JB_WANT_ANY, JB_SHAPE2(mlp, W), "mlp.c_proj.w");
        b->mlp_proj_b = bias_data(BLK(JB_WANT_F32, JB_SHAPE1(W), "mlp.c_proj.b"));
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
        p->prime_proj_b =
          bias_data(jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "prime_state_proj.b"));
        p->prime_ln_w = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "prime_state_ln.weight");
        p->prime_ln_b = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "prime_state_ln.bias");
        jb_weights_skip(w, "prime_x_out.weight"); /* lyric LM head: training only */
        if (!jb_weights_ok(w)) goto fail;
    }

#ifdef JB_HAVE_UPSAMPLER_COND
    if (var == JB_PRIOR_UPSAMPLER) {
        p->cond = jb_upsampler_cond_init(hp, w, be);
        if (!p->cond) goto fail;
    }
#endif
    return p;

fail:
    jb_prior_free(p);
    return NULL;
}

void jb_prior_free(struct jb_prior *p)
{
    if (!p) return;
#ifdef JB_HAVE_UPSAMPLER_COND
    if (p->cond) jb_upsampler_cond_free(p->cond);
#endif
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

/* Row `row` of an embedding table in any float dtype, as fp32. */
static void table_row(const struct jb_tensor *t, int64_t row, float *dst)
{
    const int64_t W = t->shape[1];
    jb_convert_to_f32(
      t->type, (const char *)t->data + (size_t)(row * W) * jb_dtype_size(t->type), dst, (size_t)W);
}

static const float *f32_row(const struct jb_tensor *t, int64_t row)
{
    return (const float *)t->data + row * t->shape[1];
}

enum jb_status jb_prior_start_emb(const struct jb_prior *p,
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
    for (int g = 0; g < G; g++)
        if (genres[g] >= p->hp.n_genres)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "prior: genre id %d out of range [0, %d)",
                           genres[g],
                           p->hp.n_genres);
    float *row = jb_malloc((size_t)W * sizeof *row);
    if (!row) return JB_STATUS_ERR_NOMEM;
    /* bag of genres: masked rows summed in slot order, then the artist row */
    for (int64_t c = 0; c < W; c++)
        start_emb[c] = 0.0f;
    for (int g = 0; g < G; g++) {
        const float mask = genres[g] >= 0 ? 1.0f : 0.0f;
        table_row(p->genre_emb, genres[g] > 0 ? genres[g] : 0, row);
        for (int64_t c = 0; c < W; c++)
            start_emb[c] += row[c] * mask;
    }
    table_row(p->artist_emb, artist, row);
    for (int64_t c = 0; c < W; c++)
        start_emb[c] += row[c];
    free(row);
    return JB_STATUS_OK;
}

enum jb_status jb_prior_y_pos(const struct jb_prior *p,
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
    const float *tot = f32_row(p->total_emb, k_tot);
    for (int64_t i = 0; i < n; i++) {
        const float *ab = f32_row(p->abs_emb, k_abs[i]);
        const float *re = f32_row(p->rel_emb, k_rel[i]);
        float *y        = y_pos + i * W;
        for (int64_t c = 0; c < W; c++)
            y[c] = (tot[c] + ab[c]) + re[c];
    }
    return JB_STATUS_OK;
}

enum jb_status jb_prior_x_timing(const struct jb_prior *p,
                                 int32_t k_tot,
                                 const int32_t *k_abs,
                                 const int32_t *k_rel,
                                 float *x)
{
    const size_t pre = (size_t)p->prefix_len * (size_t)p->width;
    memset(x, 0, pre * sizeof *x); /* the lyric prefix of D has no conditioning */
    return jb_prior_y_pos(p, k_tot, k_abs, k_rel, x + pre);
}

enum jb_status jb_prior_x_upsampler(struct jb_prior *p, const int32_t *z_upper, float *x)
{
    if (p->hp.variant != JB_PRIOR_UPSAMPLER)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: not an upsampler");
#ifdef JB_HAVE_UPSAMPLER_COND
    return jb_upsampler_cond_forward(p->cond, z_upper, x);
#else
    (void)z_upper;
    (void)x;
    return jb_fail(JB_STATUS_ERR_UNSUPPORTED, "prior: built without the upsampler conditioner");
#endif
}

/* ---- transformer state -------------------------------------------------------------------- */

static void transformer_state_free(struct jb_transformer_state *ts)
{
    if (ts->caches) {
        for (int d = 0; d < ts->tr->depth; d++) {
            free(ts->caches[d].k);
            free(ts->caches[d].v);
        }
    }
    free(ts->caches);
    free(ts->h);
    free(ts->cur);
    free(ts->qkv);
    free(ts->att);
    free(ts->mlp);
    free(ts->enc);
    free(ts->scratch);
    memset(ts, 0, sizeof *ts);
}

/* n floats, 64-byte aligned, counted in ts->bytes; false on overflow or OOM. */
static bool reserve(struct jb_transformer_state *ts, float **dst, int64_t a, int64_t b)
{
    size_t n, bytes;
    if (a < 0 || b < 0 || !jb_mul_size((size_t)a, (size_t)b, &n) ||
        !jb_mul_size(n, sizeof(float), &bytes)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "prior: buffer size overflow");
        return false;
    }
    *dst = jb_aligned_alloc(bytes);
    ts->bytes += bytes;
    return *dst != NULL;
}

static bool transformer_state_init(struct jb_transformer_state *ts,
                                   const struct jb_transformer *tr,
                                   struct jb_backend *be,
                                   int n_batch,
                                   int max_chunk)
{
    memset(ts, 0, sizeof *ts);
    ts->tr          = tr;
    ts->n_batch     = n_batch;
    ts->max_chunk   = max_chunk;
    ts->n_threads   = be && be->n_threads > 0 ? be->n_threads : 1;
    ts->pool        = jb_cpu_of(be)->pool;
    const int64_t M = (int64_t)n_batch * max_chunk, W = tr->width, ns = tr->n_state;
    bool ok = reserve(ts, &ts->h, M, W) && reserve(ts, &ts->cur, M, W) &&
              reserve(ts, &ts->qkv, M, 3 * ns) && reserve(ts, &ts->att, M, ns) &&
              reserve(ts, &ts->mlp, M, tr->mlp_width);
    if (ok && tr->enc_len > 0) ok = reserve(ts, &ts->enc, (int64_t)n_batch * tr->enc_len, 2 * ns);
    ts->scratch_len = (2 * jb_attention_max_keys(tr) + 15) & ~(int64_t)15;
    if (ok) ok = reserve(ts, &ts->scratch, ts->n_threads, ts->scratch_len);
    if (ok) ok = (ts->caches = jb_calloc((size_t)tr->depth, sizeof *ts->caches)) != NULL;
    for (int d = 0; ok && d < tr->depth; d++) {
        struct jb_kv_cache *c = &ts->caches[d];
        c->func               = tr->blocks[d].attn_func;
        c->cap                = jb_kv_cache_capacity(tr, c->func);
        c->rows               = (tr->seq_len + tr->block_ctx - 1) / tr->block_ctx;
        const int64_t len     = (int64_t)n_batch * c->cap;
        ok                    = reserve(ts, &c->k, len, ns) && reserve(ts, &c->v, len, ns);
    }
    if (!ok) transformer_state_free(ts);
    return ok;
}

/* ---- the transformer ---------------------------------------------------------------------- */

/* Runs the C positions S..S+C−1 of every candidate through the stack: ts->h holds the input
 * rows [N·C, w] and receives the output. encoder_kv [N, enc_len, w] feeds the func-6 layers
 * (their K/V are projected once, at S == 0). */
static void transformer_chunk(struct jb_backend *be,
                              const struct jb_transformer *tr,
                              struct jb_transformer_state *ts,
                              int64_t S,
                              int C,
                              const float *encoder_kv,
                              jb_prior_hook_fn hook,
                              void *hook_user)
{
    const int64_t M = (int64_t)ts->n_batch * C, W = tr->width, ns = tr->n_state;
    const int64_t mlp = tr->mlp_width;
    float *const h = ts->h, *const cur = ts->cur;

    for (int d = 0; d < tr->depth; d++) {
        const struct jb_block *blk = &tr->blocks[d];
        struct jb_kv_cache *cache  = &ts->caches[d];
        const bool cross           = blk->attn_func == 6;

        { // attention: h = h + c_proj(attn(ln_0(h)))
            jb_layernorm(be, M, W, h, blk->ln_0_w, blk->ln_0_b, JB_LN_EPS, cur);
            if (cross && S == 0) {
                const int64_t Me = (int64_t)ts->n_batch * tr->enc_len;
                jb_matmul(be,
                          Me,
                          2 * ns,
                          W,
                          encoder_kv,
                          W,
                          blk->c_enc_kv_w,
                          false,
                          blk->c_enc_kv_b,
                          ts->enc,
                          2 * ns,
                          false);
                jb_attention_set_encoder(tr, cache, ts->n_batch, ts->enc);
            }
            const int64_t nq = cross ? ns : 3 * ns;
            jb_matmul(
              be, M, nq, W, cur, W, blk->c_attn_w, false, blk->c_attn_b, ts->qkv, nq, false);
            jb_attention_chunk(tr, cache, ts, S, C, ts->qkv, ts->att);
            /* accumulate: h ← (x·c_proj + (h + b)), one pass instead of a separate add */
            jb_matmul(be, M, W, ns, ts->att, ns, blk->c_proj_w, false, blk->c_proj_b, h, W, true);
        }
        { // mlp: h = h + c_proj(quick_gelu(c_fc(ln_1(h))))
            jb_layernorm(be, M, W, h, blk->ln_1_w, blk->ln_1_b, JB_LN_EPS, cur);
            jb_matmul(be, M, mlp, W, cur, W, blk->c_fc_w, false, blk->c_fc_b, ts->mlp, mlp, false);
            jb_quick_gelu(M * mlp, ts->mlp);
            jb_matmul(
              be, M, W, mlp, ts->mlp, mlp, blk->mlp_proj_w, false, blk->mlp_proj_b, h, W, true);
        }
        if (hook) hook(hook_user, d, ts->n_batch, C, (int)W, h);
    }
}

/* ---- lyric encoder (variant C) ------------------------------------------------------------ */

enum jb_status jb_prior_encoder_kv(struct jb_prior *p,
                                   int N,
                                   const int32_t *lyric_ids,
                                   float *encoder_kv,
                                   float *prime_acts)
{
    if (p->hp.variant != JB_PRIOR_TOP_LYRICS_ENC)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: no lyric encoder in this prior");
    const struct jb_transformer *tr = &p->prime;
    const int64_t T = tr->seq_len, Wp = tr->width, W = p->width;
    if (N <= 0) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: batch %d", N);
    for (int64_t i = 0; i < (int64_t)N * T; i++)
        if (lyric_ids[i] < 0 || lyric_ids[i] >= p->hp.n_vocab)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "prior: lyric id %d out of range [0, %d)",
                           lyric_ids[i],
                           p->hp.n_vocab);

    struct jb_transformer_state ts;
    if (!transformer_state_init(&ts, tr, p->be, N, (int)T)) return JB_STATUS_ERR_NOMEM;

    { // input: e[0] = start_token, e[t] = LyrEmb[lyr[t−1]]; h0 = e + Pos (no X)
        for (int n = 0; n < N; n++) {
            for (int64_t t = 0; t < T; t++) {
                float *row = ts.h + ((int64_t)n * T + t) * Wp;
                if (t == 0)
                    memcpy(row, p->prime_start->data, (size_t)Wp * sizeof *row);
                else
                    table_row(p->prime_x_emb, lyric_ids[(int64_t)n * T + t - 1], row);
                const float *pos = f32_row(p->prime_pos_emb, t);
                for (int64_t c = 0; c < Wp; c++)
                    row[c] += pos[c];
            }
        }
    }
    transformer_chunk(p->be, tr, &ts, 0, (int)T, NULL, NULL, NULL);
    if (prime_acts) memcpy(prime_acts, ts.h, (size_t)(N * T * Wp) * sizeof *prime_acts);

    { // encoder_kv = prime_state_ln(acts · prime_state_proj + b)
        const int64_t M = (int64_t)N * T;
        jb_matmul(
          p->be, M, W, Wp, ts.h, Wp, p->prime_proj_w, false, p->prime_proj_b, encoder_kv, W, false);
        jb_layernorm(p->be, M, W, encoder_kv, p->prime_ln_w, p->prime_ln_b, JB_LN_EPS, encoder_kv);
    }
    transformer_state_free(&ts);
    return JB_STATUS_OK;
}

/* ---- state and step ----------------------------------------------------------------------- */

struct jb_prior_state *jb_prior_state_init(struct jb_prior *p, int n_batch, int max_chunk)
{
    if (n_batch <= 0 || max_chunk <= 0 || max_chunk > p->seq_len) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "prior: state for %d candidates, chunks of %d (T = %d)",
                n_batch,
                max_chunk,
                p->seq_len);
        return NULL;
    }
    struct jb_prior_state *st = jb_calloc(1, sizeof *st);
    if (!st) return NULL;
    st->p         = p;
    st->n_batch   = n_batch;
    st->max_chunk = max_chunk;
    if (!transformer_state_init(&st->ts, &p->tr, p->be, n_batch, max_chunk) ||
        !reserve(&st->ts, &st->logits, n_batch, p->vocab) ||
        !(st->sampler = jb_sampler_init(n_batch, p->vocab))) {
        jb_prior_state_free(st);
        return NULL;
    }
    return st;
}

void jb_prior_state_free(struct jb_prior_state *st)
{
    if (!st) return;
    transformer_state_free(&st->ts);
    free(st->logits);
    jb_sampler_free(st->sampler);
    free(st);
}

void jb_prior_state_reset(struct jb_prior_state *st)
{
    st->pos = 0;
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
    st->pos        = 0;
    return JB_STATUS_OK;
}

void jb_prior_state_set_hook(struct jb_prior_state *st, jb_prior_hook_fn hook, void *user)
{
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

enum jb_status jb_prior_step(struct jb_prior_state *st,
                             int C,
                             const int32_t *seq,
                             int64_t ld_seq,
                             float *logits)
{
    struct jb_prior *p = st->p;
    const int N        = st->n_batch;
    const int64_t S = st->pos, W = p->width, T = p->seq_len, V = p->vocab;
    if (C < 1 || C > st->max_chunk || S + C > T)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "prior: step of %d positions at %lld (max chunk %d, window %lld)",
                       C,
                       (long long)S,
                       st->max_chunk,
                       (long long)T);
    if (!st->x || !st->start_emb)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: step without conditioning");
    if (S + C > 1 && (!seq || ld_seq < S + C - 1))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "prior: step needs the previous tokens");
    for (int n = 0; n < N; n++) {
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

    struct jb_transformer_state *ts = &st->ts;
    { // input embedding: h0[i] = ((start_emb if i == 0 else TokEmb[s[i−1]]) + Pos[i]) + X[i]
        for (int n = 0; n < N; n++) {
            for (int r = 0; r < C; r++) {
                const int64_t i = S + r;
                float *row      = ts->h + ((int64_t)n * C + r) * W;
                if (i == 0)
                    memcpy(row, st->start_emb + (int64_t)n * W, (size_t)W * sizeof *row);
                else
                    table_row(p->x_emb, seq[n * ld_seq + i - 1], row);
                const float *pos = f32_row(p->pos_emb, i);
                const float *x   = st->x + ((int64_t)n * T + i) * W;
                for (int64_t c = 0; c < W; c++)
                    row[c] = (row[c] + pos[c]) + x[c];
            }
        }
        if (st->hook) st->hook(st->hook_user, -1, N, C, (int)W, ts->h);
    }

    transformer_chunk(p->be, &p->tr, ts, S, C, st->encoder_kv, st->hook, st->hook_user);

    if (logits) { // head: (h + X)·TokEmbᵀ for A/D (tied), h·OutWᵀ for B/C
        const int64_t M = (int64_t)N * C;
        if (p->add_x_after) {
            for (int n = 0; n < N; n++) {
                const float *x = st->x + ((int64_t)n * T + S) * W;
                float *row     = ts->h + (int64_t)n * C * W;
                jb_add((int64_t)C * W, row, x, row);
            }
        }
        jb_matmul(p->be, M, V, W, ts->h, W, p->x_out, true, NULL, logits, V, false);
    }
    st->pos = S + C;
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
