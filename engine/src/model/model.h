/*
 * model/model.h - struct jb_model internals: one loaded Encore model file (GGUF), its
 * hyper-parameters and the built model (VQ-VAE or prior). Metadata keys are listed in
 * docs/model-format.md; model/model.c reads them, model/import.c writes them.
 */
#ifndef JB_MODEL_MODEL_H
#define JB_MODEL_MODEL_H

#include "backend/backend.h"
#include "format/gguf.h"
#include "format/hparams.h"
#include "format/weights.h"

struct jb_vqvae;
struct jb_prior;
struct jb_label_vocab;

struct jb_model {
    enum jb_model_kind kind;
    struct jb_backend *backend;
    struct jb_gguf *gguf;
    struct jb_weights *weights;
    char name[128];
    bool untrained;

    struct jb_vqvae_hparams vq_hp;
    struct jb_prior_hparams prior_hp;

    struct jb_vqvae *vqvae;                  /* kind == VQVAE */
    struct jb_prior *prior;                  /* kind == PRIOR */
    struct jb_label_vocab *artists, *genres; /* priors: names and ids stored in the file */
};

/* Reads the hyper-parameters stored in a GGUF file's metadata. */
enum jb_status jb_model_read_vqvae_hparams(const struct jb_gguf *g, struct jb_vqvae_hparams *hp);
enum jb_status jb_model_read_prior_hparams(const struct jb_gguf *g, struct jb_prior_hparams *hp);

/* Weights source over a GGUF reader. */
struct jb_weights_source jb_model_gguf_source(struct jb_gguf *g);

#endif
