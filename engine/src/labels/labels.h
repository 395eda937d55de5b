/*
 * labels/labels.h - the label front end of the priors, exact to the reference
 * (jukebox/data/labels.py, artist_genre_processor.py, prior.get_y, LabelConditioner):
 *
 *   - artist/genre id tables ("name;id" lines) and their lookup (spec section 7.2),
 *   - the label vector y = [total_length, offset, length, artist, genres.., lyric window..]
 *     (section 7.3) with the lyric window of section 7.4, in the fp32 arithmetic of get_y or the
 *     float64 arithmetic of get_label,
 *   - the timing-signal bins of the LabelConditioner (section 4.2).
 *
 * Lookup modes. JB_LABEL_STRICT (the default for users) fails with JB_STATUS_ERR_LABEL on an
 * unknown artist or genre word, on a name that normalises to nothing, and on an empty genre,
 * and lists up to 5 close matches (edit distance over the table keys) in the message.
 * JB_LABEL_REFERENCE reproduces the reference: unknown names get id 0 (with a warning in the
 * log), for parity tests against it. Both modes fail on more genre words than the model has
 * slots (the reference asserts).
 *
 * Strings are UTF-8 (NUL-terminated); invalid UTF-8 is an error. Lowercasing is Python's
 * str.lower() (full case mapping: U+0130 -> "i\u0307", final sigma) via utf8proc's tables, whose
 * Unicode version (15) is newer than the reference's Python 3.7 (Unicode 11); this only matters
 * for characters that are in neither id table.
 *
 * Thread safety: everything is reentrant; a vocabulary is immutable once built and may be shared
 * between threads.
 */
#ifndef JB_PRIOR_LABELS_H
#define JB_PRIOR_LABELS_H

#include "core/common.h"
#include "labels/lyrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Genre slots: 5 for v2 models (bag of words), 1 for v3. Upper bound for callers' arrays. */
#define JB_LABEL_MAX_GENRES 5
#define JB_LABEL_V2_GENRES 5
#define JB_LABEL_V3_GENRES 1

enum jb_label_mode {
    JB_LABEL_STRICT    = 0, /* unknown/ambiguous names are errors (default)       */
    JB_LABEL_REFERENCE = 1, /* unknown names -> id 0, as the reference does        */
};

/* ---------------------------------------------------------------------------------------- */
/* id tables                                                                                 */

/* A name -> id table. Keys are Python name.lower() of the stored names; a later entry with the
 * same key overrides an earlier one (v3 artists: "speaker" 3675 then 7896 -> 7896). The raw
 * entries are kept in order so that the table can be embedded in a model file and rebuilt
 * identically with jb_label_vocab_from_arrays(). */
struct jb_label_vocab;

/* Reads "name;id" lines like the reference: each line (split at \n, \r\n or \r) is stripped of
 * Python whitespace and must contain exactly one ';'; the id is a decimal integer (optional
 * surrounding whitespace and '+', '_' between digits, as int() accepts) in [0, INT32_MAX].
 * Malformed lines are JB_STATUS_ERR_FORMAT (the reference raises too). */
enum jb_status jb_label_vocab_load_file(const char *path, struct jb_label_vocab **out);

/* Builds the same table from the raw names (as stored in the file, not lowercased) and ids, in
 * file order. */
enum jb_status jb_label_vocab_from_arrays(const char *const *names,
                                          const int32_t *ids,
                                          size_t n,
                                          struct jb_label_vocab **out);

void jb_label_vocab_free(struct jb_label_vocab *vocab);

/* Raw entries in file order (duplicates included): what an importer embeds. The name pointer
 * stays valid for the life of the vocabulary. */
size_t jb_label_vocab_count(const struct jb_label_vocab *vocab);
void jb_label_vocab_entry(const struct jb_label_vocab *vocab,
                          size_t i,
                          const char **name,
                          int32_t *id);
/* Largest id in the table (for checking against an embedding table's size); -1 if empty. */
int32_t jb_label_vocab_max_id(const struct jb_label_vocab *vocab);

/* Exact lookup of an already-lowercased key (code-point-exact, no normalisation). */
bool jb_label_vocab_lookup(const struct jb_label_vocab *vocab, const char *key, int32_t *id);

/* ---------------------------------------------------------------------------------------- */
/* name normalisation and lookup                                                             */

/* Python s.lower(). *out is malloc'd. */
enum jb_status jb_labels_lower(const char *s, char **out);

/* v2 norm(s): lower(), every code point outside [a-zA-Z0-9] -> '_', runs of '_' collapsed,
 * leading/trailing '_' stripped ("Céline Dion" -> "c_line_dion"). *out is malloc'd. */
enum jb_status jb_labels_norm(const char *s, char **out);

/* Artist id: v2 looks up norm(artist), v3 artist.lower(). */
enum jb_status jb_labels_artist_id(const struct jb_label_vocab *artists,
                                   enum jb_label_version version,
                                   enum jb_label_mode mode,
                                   const char *artist,
                                   int32_t *id);

/* Genre ids into ids[0..n_slots): v2 looks up each '_'-separated word of norm(genre) (bag of
 * words), v3 the single key genre.lower(); unused slots are -1. More words than n_slots is an
 * error in both modes. In reference mode an empty v2 genre yields one word "" (-> id 0, as
 * Python's ''.split('_') == ['']); in strict mode it is an error. */
enum jb_status jb_labels_genre_ids(const struct jb_label_vocab *genres,
                                   enum jb_label_version version,
                                   enum jb_label_mode mode,
                                   const char *genre,
                                   int n_slots,
                                   int32_t *ids);

/* ---------------------------------------------------------------------------------------- */
/* label vector and lyric window                                                             */

/* Arithmetic of the window midpoint (spec 7.4). */
enum jb_label_arith {
    JB_LABEL_ARITH_F32 = 0, /* SimplePrior.get_y (every sampling window): fp32 tensor math */
    JB_LABEL_ARITH_F64 = 1, /* Labeller.get_label (the initial label): Python doubles        */
};

/* get_relevant_lyric_tokens(full, n_tokens, total_length, offset, duration): the n_tokens
 * (even, > 0) ids of the window into tokens[] and, if indices is not NULL, the index into full
 * of each slot (-1 = left padding, whose token is 0). Requires 0 <= offset < total_length when
 * n_full >= n_tokens (the reference asserts). */
enum jb_status jb_labels_lyric_window(const int32_t *full,
                                      size_t n_full,
                                      int n_tokens,
                                      int64_t total_length,
                                      int64_t offset,
                                      int64_t duration,
                                      enum jb_label_arith arith,
                                      int32_t *tokens,
                                      int64_t *indices);

/* The label vector of one window, y[0 .. 4 + n_genres + n_tokens):
 *   [total_length, offset, length, artist_id, genre_ids[0..n_genres), lyric window]
 * For get_y of sampling window `start` (in tokens of this prior) pass
 *   offset = meta offset + start * raw_to_tokens, length = the prior's sample_length,
 *   arith = JB_LABEL_ARITH_F32;
 * for the reference's get_label pass the meta offset and JB_LABEL_ARITH_F64. n_tokens = 0 for
 * priors without lyrics (full_tokens is then ignored and may be NULL). indices (n_tokens
 * entries) may be NULL. */
enum jb_status jb_labels_make_y(int64_t total_length,
                                int64_t offset,
                                int64_t length,
                                int32_t artist_id,
                                const int32_t *genre_ids,
                                int n_genres,
                                const int32_t *full_tokens,
                                size_t n_full,
                                int n_tokens,
                                enum jb_label_arith arith,
                                int64_t *y,
                                int64_t *indices);

/* ---------------------------------------------------------------------------------------- */
/* timing signal bins (LabelConditioner, spec 4.2)                                           */

/* Flag for jb_labels_timing_bins. By default "fp32 tensor / Python scalar" is evaluated as the
 * reference does on CUDA (multiplication by fl32(1 / fl32(c))); with this flag as a true fp32
 * division, as CPU PyTorch does. Tensor/tensor divisions are true divisions either way. The
 * two differ only when a value lands on a bin edge (about 1-2 % of windows, at one token): both
 * reproduce the CPU-made fixtures' x_cond bit for bit. */
#define JB_TIMING_TRUE_DIV 1u

/* Bins of the top-level priors' timing signal for the window [offset, offset + length) of a
 * song of total_length samples:
 *   *k_tot     total-length bin, range [min_duration*sr, max_duration*sr)
 *   k_abs[i]   absolute position bin of token i (i < n_ctx), range [0, max_duration*sr)
 *   k_rel[i]   relative position bin of token i, range [0, 1), window end clamped to [0, 1]
 * all in [0, t_bins), computed in fp32 exactly as RangeEmbedding. The reference's range
 * assertions (Tmin <= total < Tmax, 0 <= offset < Tmax, 0 <= offset + length <= Tmax,
 * 0 <= offset/total < 1, in fp32) and any bin outside [0, t_bins) are
 * JB_STATUS_ERR_INVALID_ARG. */
enum jb_status jb_labels_timing_bins(int64_t total_length,
                                     int64_t offset,
                                     int64_t length,
                                     int n_ctx,
                                     int t_bins,
                                     double min_duration,
                                     double max_duration,
                                     int sr,
                                     unsigned flags,
                                     int32_t *k_tot,
                                     int32_t *k_abs,
                                     int32_t *k_rel);

#endif
