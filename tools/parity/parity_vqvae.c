/*
 * tools/parity/parity_vqvae.c - VQ-VAE parity (jukebox-spec §8.2 V1-V4): encoder outputs
 * before quantisation, codes (identical except documented near-ties), audio decoded from each
 * level, and chunked against whole-sequence decoding inside the engine. Both checkpoint formats.
 */
#include "parity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Near-ties: frames whose margin to the second-best code is < 1e-5 of ‖x‖² may flip under a
 * different summation order (reference-numerics.md). */
static bool *near_ties(const struct jb_npy *margin, const float *prequant, int64_t emb, int64_t n)
{
    bool *allow = calloc((size_t)n, sizeof *allow);
    if (!allow) return NULL;
    for (int64_t t = 0; t < n && t < margin->n; t++) {
        double norm = 0;
        for (int64_t c = 0; c < emb; c++)
            norm += (double)prequant[c * n + t] * prequant[c * n + t];
        allow[t] = jb_npy_get_f(margin, t) < 1e-5 * norm;
    }
    return allow;
}

static void check_format(struct parity_ctx *ctx, bool zip)
{
    const char *fmt     = zip ? "zip" : "legacy";
    struct jb_model *vq = parity_import_and_load(ctx, "vqvae", zip);
    if (!vq) return;
    struct jb_npy audio_npy;
    if (!parity_load_npy(ctx, "vqvae", "input_audio.npy", &audio_npy)) {
        jb_model_free(vq);
        return;
    }
    float *audio = jb_npy_to_f32(&audio_npy);
    int64_t n    = audio_npy.n;
    int emb      = jb_vqvae_emb_width(vq);
    char what[128], file[128];

    for (int L = 0; L < jb_vqvae_levels(vq); L++) {
        int64_t hop = jb_vqvae_hop(vq, L), n_codes = n / hop;
        int32_t *codes        = malloc((size_t)n_codes * sizeof *codes);
        float *prequant       = malloc((size_t)(n_codes * emb) * sizeof *prequant);
        float *decoded        = malloc((size_t)n * sizeof *decoded);
        float *chunked        = malloc((size_t)n * sizeof *chunked);
        int64_t *got          = malloc((size_t)n_codes * sizeof *got);
        struct jb_npy ref_pre = { 0 }, ref_codes = { 0 }, ref_margin = { 0 }, ref_dec = { 0 };
        if (!codes || !prequant || !decoded || !chunked || !got) goto next;

        snprintf(what, sizeof what, "vqvae[%s]/encode level %d", fmt, L);
        if (jb_vqvae_encode(vq, L, audio, n, codes, prequant, NULL)) {
            parity_fail(ctx, what, "%s", jb_last_error());
            goto next;
        }
        snprintf(file, sizeof file, "prequant_level%d.npy", L);
        if (parity_load_npy(ctx, "vqvae", file, &ref_pre)) {
            float *ref = jb_npy_to_f32(&ref_pre);
            snprintf(what, sizeof what, "vqvae[%s]/prequant_level%d", fmt, L);
            if (ref && ref_pre.n == n_codes * emb)
                parity_check_f32(ctx, what, prequant, ref, ref_pre.n, 1e-4);
            else
                parity_fail(ctx,
                            what,
                            "shape mismatch (%lld vs %lld)",
                            (long long)ref_pre.n,
                            (long long)(n_codes * emb));
            free(ref);
        }
        snprintf(file, sizeof file, "codes_level%d.npy", L);
        bool have_codes = parity_load_npy(ctx, "vqvae", file, &ref_codes);
        snprintf(file, sizeof file, "code_margin_level%d.npy", L);
        if (have_codes && parity_load_npy(ctx, "vqvae", file, &ref_margin)) {
            float *ref_pre_f = jb_npy_to_f32(&ref_pre);
            bool *allow      = ref_pre_f ? near_ties(&ref_margin, ref_pre_f, emb, n_codes) : NULL;
            int64_t *ref     = malloc((size_t)n_codes * sizeof *ref);
            snprintf(what, sizeof what, "vqvae[%s]/codes_level%d", fmt, L);
            if (ref && ref_codes.n == n_codes) {
                for (int64_t i = 0; i < n_codes; i++) {
                    got[i] = codes[i];
                    ref[i] = jb_npy_get_i(&ref_codes, i);
                }
                parity_check_int(ctx, what, got, ref, n_codes, allow);
            } else {
                parity_fail(ctx, what, "shape mismatch");
            }
            free(ref);
            free(allow);
            free(ref_pre_f);
        }
        /* decode the reference codes, so that decoder parity does not depend on the encoder */
        snprintf(file, sizeof file, "decoded_from_level%d.npy", L);
        if (have_codes && ref_codes.n == n_codes && parity_load_npy(ctx, "vqvae", file, &ref_dec)) {
            for (int64_t i = 0; i < n_codes; i++)
                codes[i] = (int32_t)jb_npy_get_i(&ref_codes, i);
            float *ref = jb_npy_to_f32(&ref_dec);
            snprintf(what, sizeof what, "vqvae[%s]/decoded_from_level%d", fmt, L);
            if (jb_vqvae_decode(vq, L, codes, n_codes, decoded, 0, NULL))
                parity_fail(ctx, what, "%s", jb_last_error());
            else if (ref && ref_dec.n == n)
                parity_check_f32(ctx, what, decoded, ref, n, 1e-4);
            else
                parity_fail(ctx, what, "shape mismatch");
            free(ref);
            /* V4: chunked decoding inside the engine equals whole decoding */
            int64_t chunk = n_codes / 5 + 3;
            snprintf(what,
                     sizeof what,
                     "vqvae[%s]/chunked_decode_level%d (chunk %lld)",
                     fmt,
                     L,
                     (long long)chunk);
            if (jb_vqvae_decode(vq, L, codes, n_codes, chunked, chunk, NULL))
                parity_fail(ctx, what, "%s", jb_last_error());
            else
                parity_check_f32(ctx, what, chunked, decoded, n, 1e-5);
        }
    next:
        jb_npy_free(&ref_pre);
        jb_npy_free(&ref_codes);
        jb_npy_free(&ref_margin);
        jb_npy_free(&ref_dec);
        free(codes);
        free(prequant);
        free(decoded);
        free(chunked);
        free(got);
    }
    free(audio);
    jb_npy_free(&audio_npy);
    jb_model_free(vq);
}

void parity_vqvae(struct parity_ctx *ctx)
{
    check_format(ctx, false);
    check_format(ctx, true);
}
