/*
 * prior/conditioner.h - the upsamplers' upper-level conditioner, conditioner_blocks.0
 * (jukebox-spec §2.7, §4.3): embeds the upper level's codes of one sampling window and
 * upsamples them with conv / Resnet1D / transposed-conv stages to x_cond, one LayerNorm'ed
 * prior_width vector per token of the window.
 *
 *     u = x_emb[z_upper]                         (T_u, w) -> (w, T_u)
 *     u = conv1d(u; k3 p1)                       w -> cond_width
 *     cond_downs x [ Resnet1D(cond_depth, dilation growth^(r mod cycle), not reversed, ρ)
 *                    conv_transpose1d(k = 2s, stride s, pad s/2) ]   last stage -> w
 *     x_cond = LayerNorm(u^T)                    (n_ctx, w), eps 1e-5
 *
 * with T_u = n_ctx / cond_stride^cond_downs and ρ = 1/sqrt(cond_depth) if cond_res_scale else 1.
 * It must be evaluated per window on exactly that window's codes (zero padding at the window
 * edges, as the reference): its receptive field is wider than the window.
 *
 * Ownership and threads: init keeps pointers into `w` (must outlive the conditioner) and
 * reserves all work memory for one window, so forward never allocates. One call at a time per
 * object and per backend (the work memory is shared between calls, and the backend's kernels
 * take one caller at a time).
 */
#ifndef JB_PRIOR_CONDITIONER_H
#define JB_PRIOR_CONDITIONER_H

#include "backend/backend.h"
#include "format/hparams.h"
#include "format/weights.h"

struct jb_upsampler_cond;

/* Requests every conditioner_blocks.0.* tensor. NULL after jb_fail() on bad hyper-parameters,
 * OOM or a missing / mis-shaped tensor. */
struct jb_upsampler_cond *jb_upsampler_cond_init(const struct jb_prior_hparams *hp,
                                                 struct jb_weights *w,
                                                 struct jb_backend *be);
void jb_upsampler_cond_free(struct jb_upsampler_cond *c); /* NULL is a no-op */

/* Number of upper-level codes per window (n_ctx / cond_stride^cond_downs). */
int64_t jb_upsampler_cond_n_upper(const struct jb_upsampler_cond *c);

/* z_upper: jb_upsampler_cond_n_upper() codes in [0, bins); x_cond: [n_ctx, prior_width]
 * row-major (time, channel). ERR_INVALID_ARG on an out-of-range code. */
enum jb_status jb_upsampler_cond_forward(struct jb_upsampler_cond *c,
                                         const int32_t *z_upper,
                                         float *x_cond);

#endif
