/*
 * tests/common/model_builders.h - the Jukebox state-dict layouts (jukebox-spec §2.5-§2.8),
 * written once for the tests, the benches and tools/mkdefault: every tensor's name, shape and
 * init rule, in a fixed order. A sink decides how values are drawn (tc_weights_sink: uniform in
 * memory; mkdefault: normal, streamed into a GGUF file), so the same layout serves a fast
 * in-memory model and the byte-stable bundled default model.
 */
#ifndef JB_TESTS_COMMON_MODEL_BUILDERS_H
#define JB_TESTS_COMMON_MODEL_BUILDERS_H

#include "format/hparams.h"
#include "test_common.h"

#include <stdbool.h>
#include <stdint.h>

enum tc_init {
    TC_INIT_ZERO,   /* biases of the transformer, LayerNorm biases */
    TC_INIT_ONE,    /* LayerNorm gains: 1 plus noise of standard deviation 0.01 */
    TC_INIT_RANDOM, /* zero-mean noise whose standard deviation is the given scale */
};

/* Receives the tensors in order; false stops the build (OOM, writer error). */
struct tc_sink {
    bool (*add)(void *ctx,
                const char *name,
                int n_dims,
                const int64_t *shape,
                enum tc_init init,
                float scale);
    void *ctx;
};

/* Every tensor of a VQ-VAE (jukebox-spec §2.5): conv weights of standard deviation
 * gain/sqrt(fan-in) (deep stacks stay O(1)), biases 0.01, codebooks 1; the codebooks come last. */
bool tc_build_vqvae(struct tc_sink s, const struct jb_vqvae_hparams *hp);

/* Every tensor of a prior without a lyric encoder (upsamplers, 5b; §2.6-§2.8): label embeddings,
 * the upsampler's conditioner, then (unless conditioner_only) the transformer and the separate
 * output head of a merged decoder. Transformer weights have scale 0.5/sqrt(width). */
bool tc_build_prior(struct tc_sink s, const struct jb_prior_hparams *hp, bool conditioner_only);

/* A sink into in-memory weights: RANDOM uniform with standard deviation `scale`, ONE 1 plus
 * such noise of 0.01, ZERO 0; all
 * F32 (tc_weights_to_storage stores them in another dtype, as jb_import does). */
struct tc_sink tc_weights_sink(struct tc_weights *w);

#endif
