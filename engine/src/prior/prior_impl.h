/*
 * prior/prior_impl.h - (private to engine/src/prior) the transformer stack of the priors, its
 * KV caches and the sampling state, shared by prior.c, attention.c and sampler.c.
 *
 * One struct jb_transformer describes a stack of ResAttnBlocks (jukebox-spec §4.5): the main
 * prior's transformer, or the 5b_lyrics lyric encoder. A struct jb_transformer_state holds
 * everything one batch of N candidates needs to run it over chunks of positions: the per-layer
 * KV caches (sized by the retention rules of §5.2, layouts in attention.c) and the activation
 * buffers for at most max_chunk positions per candidate, all in backend memory; model code only
 * calls ops on them and moves host data with jb_backend_set / jb_backend_get. Nothing is
 * allocated after init.
 */
#ifndef JB_PRIOR_PRIOR_IMPL_H
#define JB_PRIOR_PRIOR_IMPL_H

#include "backend/ops.h"
#include "prior/conditioner.h"
#include "prior/prior.h"

#include <math.h>

/* One ResAttnBlock: pre-LN attention + pre-LN MLP. Conv1D weights are [n_in, n_out] (x·w + b)
 * in any float dtype; LayerNorm parameters and biases are fp32. */
struct jb_block {
    int32_t attn_func;                       /* 0, 1, 2, 3, 6 or 7 */
    const struct jb_tensor *ln_0_w, *ln_0_b; /* [w] */
    const struct jb_tensor *c_attn_w;        /* [w, 3ns] or [w, ns] (func 6) */
    const struct jb_tensor *c_attn_b;
    const struct jb_tensor *c_enc_kv_w; /* [w, 2ns] (func 6 only) */
    const struct jb_tensor *c_enc_kv_b;
    const struct jb_tensor *c_proj_w; /* [ns, w] */
    const struct jb_tensor *c_proj_b;
    const struct jb_tensor *ln_1_w, *ln_1_b; /* [w] */
    const struct jb_tensor *c_fc_w;          /* [w, mlp] */
    const struct jb_tensor *c_fc_b;
    const struct jb_tensor *mlp_proj_w; /* [mlp, w] */
    const struct jb_tensor *mlp_proj_b;
};

struct jb_transformer {
    int32_t width, n_state, heads, head_dim, mlp_width, depth;
    int32_t seq_len;          /* T: positions of one window */
    int32_t block_ctx;        /* B = T / blocks */
    int32_t prime_len;        /* func 7 key limit P' = (prime_len/blocks + 1)·blocks, ≤ T */
    int32_t enc_len;          /* func 6: encoder positions (0: no cross-attention) */
    float scale;              /* fl32((1/sqrt(sqrt(hd)))²), applied after the dot product */
    struct jb_attn_desc attn; /* the above, as the attention ops take it */
    struct jb_block *blocks;  /* [depth] */
};

/* Everything one batch of N candidates needs to run a transformer over chunks of positions, all
 * in backend memory: the per-layer KV caches (backend/ops.h) and activations for at most
 * max_chunk positions per candidate. */
struct jb_transformer_state {
    const struct jb_transformer *tr;
    struct jb_backend *be;
    int32_t n_batch, max_chunk;
    /* A view of candidates [cand0, cand0 + n_batch) of a state (a decode step cut into groups):
     * the activations point at those rows and the caches are offset by cand0 candidates (0 for
     * the state itself). */
    int32_t cand0;
    enum jb_dtype kv_type; /* F32, or F16 (half-precision cache) */
    /* activations for n_batch·max_chunk rows, candidate-major ([n][r]) */
    float *h;                   /* residual stream [rows, w] */
    float *cur;                 /* LayerNorm output [rows, w] */
    float *qkv;                 /* [rows, 3ns] */
    float *att;                 /* [rows, ns] */
    float *mlp;                 /* [rows, mlp] */
    float *enc_in;              /* encoder_kv input [n_batch·enc_len, w] (func 6) */
    float *enc;                 /* its K|V projection [n_batch·enc_len, 2ns] (func 6) */
    struct jb_kv_cache *caches; /* [depth] */
    size_t bytes;               /* reserved memory, for reporting */
};

struct jb_prior {
    struct jb_prior_hparams hp;
    struct jb_backend *be;
    struct jb_transformer tr;    /* main transformer */
    struct jb_transformer prime; /* variant C lyric encoder (depth 0 otherwise) */
    int32_t width, seq_len, vocab, prefix_len;
    bool add_x_after; /* tied head, X re-added (A, D) */

    const struct jb_tensor *x_emb;   /* [vocab, w] token embedding */
    const struct jb_tensor *pos_emb; /* [T, w] F32 */
    const struct jb_tensor *x_out;   /* [vocab, w] head matrix (== x_emb when tied) */

    /* LabelConditioner */
    const struct jb_tensor *genre_emb, *artist_emb;        /* [n_genres|n_artists, w] */
    const struct jb_tensor *total_emb, *abs_emb, *rel_emb; /* [t_bins, w] F32 (timing) */

    /* variant C: lyric encoder input and encoder_kv projection */
    const struct jb_tensor *prime_start;   /* [1, w_p] F32 */
    const struct jb_tensor *prime_x_emb;   /* [n_vocab, w_p] */
    const struct jb_tensor *prime_pos_emb; /* [n_tokens, w_p] F32 */
    const struct jb_tensor *prime_proj_w;  /* [w_p, w] */
    const struct jb_tensor *prime_proj_b;
    const struct jb_tensor *prime_ln_w, *prime_ln_b;

    struct jb_upsampler_cond *cond; /* variant A */

    /* conditioning scratch (start_emb, y_pos), reserved at init: COND_ROWS rows at a time */
    float *cond_a, *cond_b; /* backend [COND_ROWS, w] each */
    int32_t *cond_ids;      /* backend [3·COND_ROWS] */
    int32_t *cond_ids_host; /* host [3·COND_ROWS] */
};

struct jb_prior_state {
    struct jb_prior *p;
    struct jb_transformer_state ts;
    int32_t n_batch, max_chunk;
    int64_t pos;                             /* sample_t: positions already in the caches */
    const float *start_emb, *x, *encoder_kv; /* borrowed host arrays, see set_cond */
    float *logits;                           /* backend [n_batch·max_chunk, vocab] */
    float *xrow;                             /* backend [n_batch·max_chunk, w]: X of the chunk */
    /* X of the window where the ops read it: [n_batch·T, w] F32, row n·T + i = X[n, i]. A copy
     * in backend memory uploaded once per window by set_cond (x_buf), or on a backend that reads
     * host memory the borrowed host array itself (x_buf NULL). */
    struct jb_tensor x_dev;
    float *x_buf;
    int32_t *ids;      /* backend [n_batch·max_chunk]: input ids */
    int32_t *ids_host; /* host staging of ids */
    int32_t *drawn;    /* backend [n_batch]: tokens of the sampling op */
    /* the decode step (jb_prior_step_sample) reads its position from `cursor` and the previous
     * tokens from `drawn`, and advances the cursor itself, so it can be recorded once (a CUDA
     * graph) and replayed per token. The host mirrors say what they hold (−1: unknown). */
    int32_t *cursor;     /* backend [2·n_batch]: entry n = the position S being decoded, entry
                            n_batch + n = n·T + S, candidate n's row of x_dev */
    int64_t cursor_host; /* S, −1 unknown */
    int32_t *drawn_host; /* host [n_batch]: what `drawn` holds when drawn_known */
    bool drawn_known;
    /* `drawn` holds the last decode step's draw and the host has not read it back: the next
     * decode step feeds it from there and does not read seq (jb_prior_step_draw) */
    bool drawn_pending;
    int32_t *hist;      /* backend [T, n_batch]: the token drawn at each decoded position */
    int32_t *hist_host; /* host [T·n_batch]: staging of jb_prior_state_drawn */
    int64_t hist_from;  /* hist holds the positions hist_from..pos−1 */
    int token_batch;    /* jb_prior_state_set_token_batch (0: automatic) */
    bool use_graph;     /* record the decode step where the backend can (default on) */
    void *graph;        /* the recorded decode step (backend graph), NULL: none yet */
    struct jb_sample_desc graph_sd; /* the draw parameters it was recorded with */
    char graph_why[320];            /* why use_graph went off by itself ("" when it did not) */
    int64_t decode_steps; /* decode steps run directly since the state was made (warm-up) */
    float *hook_h;        /* host copy of h for the hook (with a hook) */
    jb_prior_hook_fn hook;
    void *hook_user;
    /* variant C: the lyric encoder for one candidate, reserved with the state */
    struct jb_transformer_state enc_ts;
    int32_t *enc_ids;      /* backend [n_tokens] */
    int32_t *enc_ids_host; /* host [n_tokens] */
    float *enc_out;        /* backend [n_tokens, w] */
};

/* ---- attention.c ------------------------------------------------------------------------- */

/* Slots per (candidate, head) that attn_func `func` needs for a whole window (§5.2 maximum). */
int32_t jb_kv_cache_capacity(const struct jb_transformer *tr, int func);

/* Stores the encoder keys/values of a func-6 layer: kv = encoder_kv·c_enc_kv + b,
 * [n_batch·enc_len, 2ns] (backend memory) with K in columns [0, ns) and V in [ns, 2ns). */
void jb_attention_set_encoder(struct jb_backend *be,
                              const struct jb_transformer *tr,
                              struct jb_kv_cache *c,
                              int n_batch,
                              const float *kv);

/* Attention of the C new positions S..S+C−1 of every candidate: appends their keys/values
 * (columns [ns, 3ns) of qkv; none for func 6) to the cache and writes att[n·C + r] =
 * concat_h softmax(q·Kᵀ·scale) V over the key set S(S+r) of §4.6. qkv rows are n·C + r with
 * row stride 3ns (ns for func 6). All backend memory; only op calls. pos (backend, optional):
 * the decode step (C == 1) at the position pos[0] instead of S (the *_at ops). */
void jb_attention_chunk(struct jb_backend *be,
                        const struct jb_transformer *tr,
                        struct jb_kv_cache *c,
                        int N,
                        int64_t S,
                        int C,
                        const int32_t *pos,
                        const float *qkv,
                        float *att);

#endif
