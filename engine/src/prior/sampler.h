/*
 * prior/sampler.h - drawing tokens from prior logits (jukebox-spec §5.4) and the ancestral /
 * primed sampling loops (§5.3) over a jb_prior_state.
 *
 * Randomness: each candidate has its own xoshiro256** generator (Blackman & Vigna, 2018).
 * The base state is four outputs of splitmix64 started at `seed`; candidate i (counting from
 * params.first_candidate) starts from the base state advanced by i calls of the generator's
 * jump() (2^128 steps each), so streams never overlap and candidate i draws the same numbers
 * whatever the batch size or slicing. One uniform per sampled token and candidate:
 * u = (next() >> 11)·2^−53 in [0, 1).
 *
 * Draw for one candidate: ℓ ← ℓ / temp (fp32); top-k: entries strictly below the k-th largest
 * value become −∞ (ties survive); top-p: sort descending, drop entry r iff the cumulative
 * softmax of entries 0..r−1 exceeds top_p (the top entry always stays); then inverse-CDF
 * sampling of softmax(ℓ) with u. top_k == 1 is exact greedy: the first index of the largest
 * logit, no randomness. top_k and top_p together are rejected, as in the reference.
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

/* xoshiro256** */
struct jb_rng {
    uint64_t s[4];
};
void jb_rng_seed(struct jb_rng *rng, uint64_t seed, uint64_t stream);
uint64_t jb_rng_next(struct jb_rng *rng);
double jb_rng_uniform(struct jb_rng *rng); /* [0, 1), 53 bits */

/* Per-candidate generators and the scratch the filters need, reserved once. */
struct jb_sampler;
struct jb_sampler *jb_sampler_init(int n_batch, int vocab);
void jb_sampler_free(struct jb_sampler *s);
/* Validates the parameters and seeds every candidate's generator. */
enum jb_status jb_sampler_reset(struct jb_sampler *s, const struct jb_sample_params *sp);
/* Draws candidate `cand`'s token from logits[vocab] (overwritten by the filtered values). */
int32_t jb_sampler_draw(struct jb_sampler *s, int cand, float *logits);

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
 * go through cb; on_token (optional) streams tokens. Allocates nothing. */
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
