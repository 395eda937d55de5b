/* format/presets.c - released hyper-parameters, transcribed from jukebox-spec §1.3-§1.4. */
#include "format/presets.h"

#include <string.h>

static const char *const preset_names[JB_PRESET_COUNT] = {
    "vqvae",    "upsampler_level_0", "upsampler_level_1",
    "prior_5b", "prior_5b_lyrics",   "prior_1b_lyrics",
};

const char *jb_preset_name(enum jb_model_preset p)
{
    return (unsigned)p < JB_PRESET_COUNT ? preset_names[p] : "?";
}

bool jb_preset_parse(const char *name, enum jb_model_preset *out)
{
    for (int i = 0; i < JB_PRESET_COUNT; i++) {
        if (strcmp(name, preset_names[i]) == 0) {
            *out = (enum jb_model_preset)i;
            return true;
        }
    }
    return false;
}

void jb_preset_vqvae(struct jb_vqvae_hparams *hp)
{
    *hp = (struct jb_vqvae_hparams){
        .levels                   = 3,
        .downs_t                  = { 3, 2, 2 },
        .strides_t                = { 2, 2, 2 },
        .multipliers              = { 2, 1, 1 },
        .width                    = 32,
        .depth                    = 4,
        .emb_width                = 64,
        .l_bins                   = 2048,
        .dilation_growth_rate     = 3,
        .dilation_cycle           = 0,
        .reverse_decoder_dilation = true,
        .m_conv                   = 1.0f,
    };
}

void jb_preset_prior(enum jb_model_preset p, struct jb_prior_hparams *hp)
{
    struct jb_vqvae_hparams vq;
    jb_preset_vqvae(&vq);
    memset(hp, 0, sizeof *hp);
    hp->bins               = 2048;
    hp->sr                 = 44100;
    hp->n_genres           = 120;
    hp->n_artists          = 4111;
    hp->max_bow_genre_size = 5;
    hp->t_bins             = 128;
    hp->n_vocab            = 80;
    hp->alignment_layer    = -1;
    hp->alignment_head     = -1;
    hp->tr.m_attn          = 0.25f;
    hp->tr.m_mlp           = 1.0f;
    hp->tr.attn_order      = 2;
    hp->tr.blocks          = 128;
    hp->n_ctx              = 8192;

    switch (p) {
    case JB_PRESET_UPSAMPLER_LEVEL_0:
    case JB_PRESET_UPSAMPLER_LEVEL_1:
        hp->variant                   = JB_PRIOR_UPSAMPLER;
        hp->level                     = p == JB_PRESET_UPSAMPLER_LEVEL_0 ? 0 : 1;
        hp->tr.width                  = 1920;
        hp->tr.depth                  = 72;
        hp->tr.heads                  = 1;
        hp->cond_width                = 1024;
        hp->cond_depth                = 16;
        hp->cond_dilation_growth_rate = 3;
        hp->cond_dilation_cycle       = 8;
        hp->cond_res_scale            = p == JB_PRESET_UPSAMPLER_LEVEL_1;
        hp->cond_m_conv               = 1.0f;
        hp->cond_downs                = vq.downs_t[hp->level + 1];
        hp->cond_stride               = vq.strides_t[hp->level + 1];
        break;
    case JB_PRESET_PRIOR_5B:
    case JB_PRESET_PRIOR_5B_LYRICS:
        hp->variant        = p == JB_PRESET_PRIOR_5B ? JB_PRIOR_TOP : JB_PRIOR_TOP_LYRICS_ENC;
        hp->level          = 2;
        hp->tr.width       = 4800;
        hp->tr.depth       = p == JB_PRESET_PRIOR_5B ? 72 : 79;
        hp->tr.heads       = 8;
        hp->merged_decoder = true;
        hp->fp16_params    = true;
        hp->timing         = true;
        hp->min_duration   = p == JB_PRESET_PRIOR_5B ? 60.0 : 23.8;
        hp->max_duration   = 600.0;
        if (p == JB_PRESET_PRIOR_5B_LYRICS) {
            hp->tr.attn_order    = 10;
            hp->n_tokens         = 512;
            hp->alignment_layer  = 68;
            hp->alignment_head   = 2;
            hp->prime.width      = 1280;
            hp->prime.depth      = 18;
            hp->prime.heads      = 4;
            hp->prime.m_attn     = 0.25f;
            hp->prime.m_mlp      = 1.0f;
            hp->prime.attn_order = 2;
            hp->prime.blocks     = 32;
            hp->prime.seq_len    = 512;
        }
        break;
    case JB_PRESET_PRIOR_1B_LYRICS:
        hp->variant            = JB_PRIOR_TOP_SINGLE_ENC_DEC;
        hp->level              = 2;
        hp->n_ctx              = 6144;
        hp->tr.width           = 2048;
        hp->tr.depth           = 72;
        hp->tr.heads           = 2;
        hp->tr.attn_order      = 12;
        hp->tr.blocks          = 64;
        hp->labels_v3          = true;
        hp->n_genres           = 604;
        hp->n_artists          = 7898;
        hp->max_bow_genre_size = 1;
        hp->timing             = true;
        hp->t_bins             = 64;
        hp->min_duration       = 17.84;
        hp->max_duration       = 600.0;
        hp->n_tokens           = 384;
        hp->n_vocab            = 79;
        hp->alignment_layer    = 63;
        hp->alignment_head     = 0;
        break;
    case JB_PRESET_VQVAE:
    case JB_PRESET_COUNT:
        break;
    }
    hp->raw_to_tokens = jb_vqvae_hp_hop(&vq, hp->level);
    hp->tr.seq_len    = hp->n_ctx + (hp->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? hp->n_tokens : 0);
}
