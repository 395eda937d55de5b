/*
 * format/hparams.h - hyper-parameters of the VQ-VAE and of the priors, as stored in an Encore
 * model file's metadata (keys "jukebox.<field>") and as the model code consumes them.
 *
 * The released values are in jukebox-spec.md §1.3-§1.4 (presets in format/presets.c); the
 * fixtures use small values of the same fields, so model code must use these, never constants.
 */
#ifndef JB_FORMAT_HPARAMS_H
#define JB_FORMAT_HPARAMS_H

#include "core/common.h"

#define JB_MAX_LEVELS 3

struct jb_vqvae_hparams {
    int32_t levels;                     /* 3 */
    int32_t downs_t[JB_MAX_LEVELS];     /* (3, 2, 2) */
    int32_t strides_t[JB_MAX_LEVELS];   /* (2, 2, 2) */
    int32_t multipliers[JB_MAX_LEVELS]; /* hvqvae_multipliers (2, 1, 1) */
    int32_t width;                      /* 32 */
    int32_t depth;                      /* 4 */
    int32_t emb_width;                  /* 64 */
    int32_t l_bins;                     /* 2048 */
    int32_t dilation_growth_rate;       /* 3 */
    int32_t dilation_cycle;             /* 0 = None */
    bool reverse_decoder_dilation;      /* true */
    float m_conv;                       /* 1.0 */
};

/* Per-level derived quantities. */
int32_t jb_vqvae_hp_width(const struct jb_vqvae_hparams *hp, int level); /* width * mult */
int32_t jb_vqvae_hp_depth(const struct jb_vqvae_hparams *hp, int level); /* depth * mult */
int32_t jb_vqvae_hp_hop(const struct jb_vqvae_hparams *hp, int level);   /* Π strides^downs */

/* Transformer stack (the main prior, or the 5b_lyrics lyric encoder). */
struct jb_transformer_hparams {
    int32_t width; /* prior_width w */
    int32_t depth; /* number of ResAttnBlocks */
    int32_t heads;
    float m_attn;       /* n_state = m_attn * width */
    float m_mlp;        /* MLP hidden = m_mlp * width */
    int32_t attn_order; /* layer pattern, jukebox-spec §4.7 */
    int32_t blocks;     /* block_ctx = seq_len / blocks */
    int32_t seq_len;    /* full transformer sequence length (incl. lyric prefix for 1b) */
};

enum jb_prior_variant {
    JB_PRIOR_UPSAMPLER          = 0, /* A: levels 0, 1 */
    JB_PRIOR_TOP                = 1, /* B: prior_5b */
    JB_PRIOR_TOP_LYRICS_ENC     = 2, /* C: prior_5b_lyrics (separate lyric encoder) */
    JB_PRIOR_TOP_SINGLE_ENC_DEC = 3, /* D: prior_1b_lyrics */
};

struct jb_prior_hparams {
    enum jb_prior_variant variant;
    int32_t level;         /* 0, 1, 2 */
    int32_t n_ctx;         /* music tokens per window */
    int32_t bins;          /* music codebook size l_bins (2048) */
    int32_t raw_to_tokens; /* audio samples per token at this level (8, 32, 128) */
    struct jb_transformer_hparams tr;
    bool merged_decoder; /* true: separate x_out, no x_cond re-added (5b, 5b_lyrics) */
    bool fp16_params;    /* released 5b/5b_lyrics keep Conv1D .w in fp16 */

    /* labels */
    bool labels_v3;
    int32_t n_genres;  /* y_bins[0] */
    int32_t n_artists; /* y_bins[1] */
    int32_t max_bow_genre_size;
    bool timing; /* top level: total/absolute/relative position embeddings */
    int32_t t_bins;
    double min_duration, max_duration; /* seconds */
    int32_t sr;                        /* 44100 */

    /* lyrics */
    int32_t n_tokens; /* lyric tokens per window (0: none) */
    int32_t n_vocab;  /* lyric character vocabulary (80 v2, 79 v3) */

    /* upper-level conditioner (upsamplers) */
    int32_t cond_width, cond_depth;
    int32_t cond_dilation_growth_rate, cond_dilation_cycle;
    bool cond_res_scale; /* residual scale 1/sqrt(cond_depth) when true */
    float cond_m_conv;
    int32_t cond_downs;  /* stages between the upper level and this one (downs_t[level+1]) */
    int32_t cond_stride; /* stride of each stage (strides_t[level+1]) */

    /* lyric encoder (variant C) */
    struct jb_transformer_hparams prime;

    int32_t alignment_layer, alignment_head; /* -1 if none */
};

/* attn_func of layer d for an attn_order (jukebox-spec §4.7); -1 for unknown orders. */
int jb_attn_func(int attn_order, int layer);

#endif
