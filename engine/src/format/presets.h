/*
 * format/presets.h - the released Jukebox hyper-parameters (jukebox-spec §1.3-§1.4) by kind
 * name, the starting point of every import. Values a checkpoint or a JSON hps file provides
 * override them; structural sizes are then taken from the tensors themselves (model/import.c).
 */
#ifndef JB_FORMAT_PRESETS_H
#define JB_FORMAT_PRESETS_H

#include "format/hparams.h"

enum jb_model_preset {
    JB_PRESET_VQVAE,
    JB_PRESET_UPSAMPLER_LEVEL_0,
    JB_PRESET_UPSAMPLER_LEVEL_1,
    JB_PRESET_PRIOR_5B,
    JB_PRESET_PRIOR_5B_LYRICS,
    JB_PRESET_PRIOR_1B_LYRICS,
    JB_PRESET_COUNT
};

const char *jb_preset_name(enum jb_model_preset p);
bool jb_preset_parse(const char *name, enum jb_model_preset *out);

void jb_preset_vqvae(struct jb_vqvae_hparams *hp);
void jb_preset_prior(enum jb_model_preset p, struct jb_prior_hparams *hp);

#endif
