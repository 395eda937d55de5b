/*
 * prior/sampler.h - the ancestral / primed sampling loops (jukebox-spec §5.3) over a
 * jb_prior_state; the draw itself (§5.4: temperature, top-k, top-p, inverse CDF) is the backend's
 * sampling op (backend/ops.h, struct jb_sample_desc).
 *
 * Randomness: counter-based. Candidate i (counting from params.first_candidate) draws its token
 * at window position t with u = jb_rng_u01(seed, i, t) (Philox4x32-10), so it draws the same
 * numbers whatever the batch size, slicing or backend, and a draw needs no generator state.
 * top_k == 1 is exact greedy; top_k and top_p together are rejected, as in the reference.
 */
#ifndef JB_PRIOR_SAMPLER_H
#define JB_PRIOR_SAMPLER_H

#include "prior/prior.h"

struct jb_sample_params {
    float temp;              /* > 0; the reference uses 0.99 (notebook top level 0.98)         */
    int32_t top_k;           /* 0: off; 1: greedy                                               */
    float top_p;             /* 0: off; else in (0, 1]                                          */
    uint64_t seed;           /* RNG seed of the whole batch                                     */
    int32_t first_candidate; /* stream index of candidate 0 (for batch slices); usually 0       */
    int32_t chunk_size;      /* priming chunk (16 for 5b top levels, 32 elsewhere); 0: all at once;
                                larger than the state's max_chunk is clamped to it               */
};

/* temp 1, no top-k/top-p, seed 0, chunk 32. */
struct jb_sample_params jb_sample_params_default(void);

/* Validates sampling parameters (temp > 0, top_k ≥ 0, top_p in [0, 1], not both). */
enum jb_status jb_sample_params_check(const struct jb_sample_params *sp);

/* Called after every sampled position t with each candidate's sequence so far: candidate n's
 * token at t is seq[n·ld_seq + t]. Keep it short (it runs inside the sampling loop). */
typedef void (
  *jb_prior_token_fn)(void *user, int64_t t, int n_batch, const int32_t *seq, int64_t ld_seq);

/* Samples one window for the state's N candidates (conditioning already set with
 * jb_prior_state_set_cond; the caches are reset here). context [N, P] holds the known
 * transformer ids (P == 0: ancestral; variant D needs P ≥ n_tokens, the lyric prefix); the
 * context is fed in chunks of chunk_size, then positions P..sample_tokens−1 are drawn one at a
 * time. out [N, sample_tokens] receives the context followed by the drawn ids (for D the raw
 * merged ids; music codes are max(id − n_vocab, 0)). Progress ("sample", per position) and
 * cancellation (checked before every chunk and token: ERR_CANCELLED, out holds what was drawn)
 * go through cb; on_token (optional) streams tokens, once per position and in order. The drawn ids
 * are read back (into out, then on_token and progress for each) every
 * jb_prior_state_token_batch positions and before returning: 1 (right after each draw) except
 * on a backend that records its decode step (a GPU: 32, no host round trip per token).
 * Allocates nothing. */
enum jb_status jb_prior_sample(struct jb_prior_state *st,
                               const int32_t *context,
                               int P,
                               int sample_tokens,
                               const struct jb_sample_params *sp,
                               int32_t *out,
                               const struct jb_callbacks *cb,
                               jb_prior_token_fn on_token,
                               void *token_user);

#endif
