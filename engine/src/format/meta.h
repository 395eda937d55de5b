/*
 * format/meta.h - hyper-parameters <-> GGUF metadata. One table per struct lists every field
 * with its key, so writing (import, default model) and reading (load) cannot drift apart.
 * Keys: "jukebox.vqvae.<field>", "jukebox.prior.<field>"; see docs/model-format.md.
 */
#ifndef JB_FORMAT_META_H
#define JB_FORMAT_META_H

#include "format/gguf.h"
#include "format/hparams.h"

#define JB_META_ARCH "jukebox"

void jb_meta_write_vqvae(struct jb_gguf_writer *w, const struct jb_vqvae_hparams *hp);
void jb_meta_write_prior(struct jb_gguf_writer *w, const struct jb_prior_hparams *hp);

/* Read and validate (ranges, consistency); ERR_MODEL with the offending key on failure. */
enum jb_status jb_meta_read_vqvae(const struct jb_gguf *g, struct jb_vqvae_hparams *hp);
enum jb_status jb_meta_read_prior(const struct jb_gguf *g, struct jb_prior_hparams *hp);

/* Range and consistency checks shared by import and load. */
enum jb_status jb_vqvae_hparams_validate(const struct jb_vqvae_hparams *hp);
enum jb_status jb_prior_hparams_validate(const struct jb_prior_hparams *hp);

#endif
