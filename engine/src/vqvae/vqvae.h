/*
 * vqvae/vqvae.h - the 3-level Jukebox VQ-VAE (jukebox-spec §3): encode mono 44.1 kHz audio to the
 * codes of any level, decode any level's codes back to audio, whole or in chunks.
 *
 * The levels are independent encoder/decoder pairs: encoder L reads the raw audio, decoder L
 * reads only level-L codes. Everything runs in fp32.
 *
 * Chunking (§3.7): decoding codes [a, b) with context [max(0, a − M), min(n, b + M)), where M is
 * jb_vqvae_decode_margin_level(), computes exactly the same sums as decoding the whole sequence;
 * with the backend's length-independent kernels the results are bit-identical. Encoding chunks
 * use jb_vqvae_encode_margin_level() the same way. Margins are computed at init from the
 * hyper-parameters by propagating index intervals through the layers (released model: decode
 * 5742 / 80 / 82 codes).
 *
 * Memory: each call reserves its work buffers once, sized for its (chunk) length, and frees them
 * before returning; nothing is allocated per layer, block or chunk. Whole-sequence work memory
 * grows linearly with the length; chunked calls are bounded by the chunk size plus the margins.
 *
 * Data: every array of this interface is host memory; weights, activations and work memory are
 * the backend's (the forward passes are backend ops).
 *
 * Ownership and threads: jb_vqvae_init keeps pointers into `w` (which must outlive the VQ-VAE)
 * and into the backend; it requests every VQ-VAE tensor, so the caller can run
 * jb_weights_check_all_used() afterwards. A jb_vqvae is read-only after init and each call has
 * its own work memory, but the backend's kernels take one caller at a time: make one call at a
 * time per backend (the calls parallelise internally over the backend's threads). Callbacks run on
 * the calling thread, between level blocks and chunks.
 *
 * Long sequences: whole-sequence decoding at level 0 reserves about 2 · emb_width · n_samples
 * floats (≈ 430 MiB for 20 s); pass chunk_codes (e.g. 4 · margin) to bound it, and use
 * jb_vqvae_decode_work_bytes() / jb_vqvae_encode_work_bytes() for admission control.
 */
#ifndef JB_VQVAE_VQVAE_H
#define JB_VQVAE_VQVAE_H

#include "backend/backend.h"
#include "format/hparams.h"
#include "format/weights.h"

struct jb_vqvae;

/* NULL after jb_fail() on bad hyper-parameters, OOM, or a missing / mis-shaped tensor. */
struct jb_vqvae *jb_vqvae_init(const struct jb_vqvae_hparams *hp,
                               struct jb_weights *w,
                               struct jb_backend *be);
void jb_vqvae_free(struct jb_vqvae *vq); /* NULL is a no-op */

const struct jb_vqvae_hparams *jb_vqvae_get_hparams(const struct jb_vqvae *vq);

/* Encodes audio (n_samples mono fp32, a positive multiple of the top-level hop
 * jb_vqvae_hp_hop(hp, levels − 1)) with encoder `level`: codes receives
 * n_samples / hop(level) values in [0, l_bins); prequant (optional) receives the encoder output
 * before quantisation, (emb_width, n_codes) row-major. Whole sequence in one pass. */
enum jb_status jb_vqvae_encode_level(struct jb_vqvae *vq,
                                     int level,
                                     const float *audio,
                                     int64_t n_samples,
                                     int32_t *codes,
                                     float *prequant,
                                     const struct jb_callbacks *cb);

/* As jb_vqvae_encode_level, computing chunk_codes codes at a time with the encode margin on each
 * side (memory bounded by the chunk; 0 = whole sequence). Same results as the whole pass. */
enum jb_status jb_vqvae_encode_level_chunked(struct jb_vqvae *vq,
                                             int level,
                                             const float *audio,
                                             int64_t n_samples,
                                             int32_t *codes,
                                             float *prequant,
                                             int64_t chunk_codes,
                                             const struct jb_callbacks *cb);

/* Codes per chunk that jb_vqvae_encode() (the engine API) uses for n_samples of audio: 0 (one
 * pass) up to 2^20 samples (about 24 s: at most ≈ 400 MB of work at level 0 of the released
 * model), beyond that the largest chunk whose work memory stays within 128 MiB, so that long
 * audio costs no more memory than ~24 s (level 0 then redoes ~35% of its work in the margins).
 * -1 on a bad level. */
int64_t jb_vqvae_encode_chunk_default(const struct jb_vqvae *vq, int level, int64_t n_samples);
/* The largest chunk (codes) whose encode work memory fits work_bytes, 0 when one pass fits;
 * -1 on bad arguments. */
int64_t jb_vqvae_encode_chunk_for_budget(const struct jb_vqvae *vq,
                                         int level,
                                         int64_t n_samples,
                                         size_t work_bytes);

/* Decodes n_codes level-`level` codes (each in [0, l_bins)) to n_codes * hop(level) samples
 * (unclamped). chunk_codes > 0 decodes chunk_codes codes at a time, each with the decode margin
 * of context on both sides; 0 (or >= n_codes) decodes the whole sequence at once. Progress is
 * reported in codes, per level block and per chunk; should_stop is polled between them. */
enum jb_status jb_vqvae_decode_level(struct jb_vqvae *vq,
                                     int level,
                                     const int32_t *codes,
                                     int64_t n_codes,
                                     float *audio,
                                     int64_t chunk_codes,
                                     const struct jb_callbacks *cb);

/* Work memory for decode_range calls of `level` on sequences of up to n_codes codes, ranges of up
 * to chunk_codes codes: reserve it once per job, not per chunk. NULL after jb_fail. */
struct jb_vqvae_work;
struct jb_vqvae_work *jb_vqvae_decode_work_init(struct jb_vqvae *vq,
                                                int level,
                                                int64_t n_codes,
                                                int64_t chunk_codes);
void jb_vqvae_work_free(struct jb_vqvae_work *wk); /* NULL is a no-op */

/* Decodes codes [a, b) of the sequence codes[0, n_codes) into audio[(b − a) * hop(level)] using
 * the context codes [max(0, a − M), min(n_codes, b + M)): the samples equal those of decoding
 * the whole sequence. The building block for streaming / progressive decoding. work: from
 * jb_vqvae_decode_work_init (allocates nothing), or NULL (reserves and frees its own). */
enum jb_status jb_vqvae_decode_range(struct jb_vqvae *vq,
                                     int level,
                                     const int32_t *codes,
                                     int64_t n_codes,
                                     int64_t a,
                                     int64_t b,
                                     float *audio,
                                     struct jb_vqvae_work *work);

/* Codes of context needed on each side of a decoded chunk (M above); -1 on a bad level. */
int64_t jb_vqvae_decode_margin_level(const struct jb_vqvae *vq, int level);

/* Codes of context (each hop(level) samples) needed on each side of an encoded chunk; -1 on a
 * bad level. Code c depends on samples [hop·c − lo, hop·c + hi] (released level 0: 45935 /
 * 45942); the margin is ceil(max(lo, hi) / hop). lo/hi are returned if non-NULL. */
int64_t jb_vqvae_encode_margin_level(const struct jb_vqvae *vq,
                                     int level,
                                     int64_t *lo_samples,
                                     int64_t *hi_samples);

/* Bytes of work memory a decode / encode call with these arguments reserves (for admission
 * control before starting a job); 0 on bad arguments or overflow. */
size_t jb_vqvae_decode_work_bytes(const struct jb_vqvae *vq,
                                  int level,
                                  int64_t n_codes,
                                  int64_t chunk_codes);
size_t jb_vqvae_encode_work_bytes(const struct jb_vqvae *vq,
                                  int level,
                                  int64_t n_samples,
                                  int64_t chunk_codes);

#endif
