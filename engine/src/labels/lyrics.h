/*
 * labels/lyrics.h - lyric text front end of the lyric priors (spec section 7.1, Appendix B):
 * the reference's TextProcessor.clean() and tokenise(), exact to the byte.
 *
 *   clean(text)     = unidecode(text) -> every '\' becomes '\n' -> delete characters outside
 *                     the vocabulary
 *   tokenise(clean) = [1 + index of c in the vocabulary string for c in clean]
 *
 * Two vocabularies exist: v2 (80 ids incl. 0, has '+'; prior_5b_lyrics and the labellers of
 * prior_5b and the upsamplers) and v3 (79 ids; prior_1b_lyrics). Id 0 is <unk>/padding and is
 * never produced by tokenise().
 *
 * unidecode is Python's transliteration table, compiled in from the file generated at build time
 * by tools/gen_unidecode_table.py (see labels/unidecode_table.h); jb_unidecode_table_version()
 * names the package version it came from. The reference pins unidecode 1.1.1; Debian 12 ships
 * 1.3.6. The two agree on common text (Latin accents, quotes, dashes, CJK) but differ on rarer
 * code points (1.1.1 emits "[?]" for many characters that 1.3.6 drops), so lyrics with such
 * characters tokenise differently from the original reference environment.
 *
 * All functions are thread-safe (no mutable global state). Input text is UTF-8 with an explicit
 * length (embedded NULs are allowed, as in a Python str); invalid UTF-8 (overlong forms,
 * surrogates, > U+10FFFF, truncated sequences) is rejected with JB_STATUS_ERR_INVALID_ARG,
 * because a Python str cannot hold it. Output buffers are malloc'd, NUL-terminated and owned
 * by the caller (free()), also when empty.
 */
#ifndef JB_PRIOR_LYRICS_H
#define JB_PRIOR_LYRICS_H

#include "core/common.h"

#include <stddef.h>
#include <stdint.h>

/* Label/vocabulary generation; shared with labels/labels.h. The value is the version number. */
enum jb_label_version {
    JB_LABEL_V2 = 2, /* upsamplers, prior_5b, prior_5b_lyrics: norm() + bag of genre words */
    JB_LABEL_V3 = 3, /* prior_1b_lyrics: lowercase exact match, one genre                  */
};

/* The vocabulary string in id order (id = index + 1), or NULL for an invalid version. */
const char *jb_lyrics_vocab(enum jb_label_version version);
/* Number of ids including 0: 80 (v2), 79 (v3); 0 for an invalid version. */
int jb_lyrics_n_vocab(enum jb_label_version version);
/* Id of byte c (1..n_vocab-1), or 0 if c is not in the vocabulary. */
int jb_lyrics_char_id(enum jb_label_version version, unsigned char c);

/* Python unidecode(text) with errors='ignore': ASCII passes through, other code points are
 * replaced by their table string (possibly empty) or dropped. */
enum jb_status jb_unidecode(const char *text, size_t len, char **out, size_t *out_len);
/* Version of the Python unidecode package the compiled-in table was generated from. */
const char *jb_unidecode_table_version(void);

/* TextProcessor(v3).clean(text). out_len may be NULL. */
enum jb_status jb_lyrics_clean(enum jb_label_version version,
                               const char *text,
                               size_t len,
                               char **out,
                               size_t *out_len);

/* TextProcessor(v3).tokenise(cleaned): ids into a malloc'd array (*tokens is a valid pointer
 * also when *n_tokens is 0). A byte outside the vocabulary (text that was not cleaned) is an
 * error, as the reference's dict lookup would raise. */
enum jb_status jb_lyrics_tokenise(enum jb_label_version version,
                                  const char *cleaned,
                                  size_t len,
                                  int32_t **tokens,
                                  size_t *n_tokens);

/* clean() then tokenise(): the label's full_tokens. cleaned may be NULL if not wanted. */
enum jb_status jb_lyrics_encode(enum jb_label_version version,
                                const char *text,
                                size_t len,
                                int32_t **tokens,
                                size_t *n_tokens,
                                char **cleaned);

/* Strict UTF-8 decoder (RFC 3629): decodes the code point at s[0..len) into *cp and returns
 * its byte length (1..4), or 0 if the bytes there are not valid UTF-8 (or len is 0). */
size_t jb_utf8_next(const char *s, size_t len, uint32_t *cp);

#endif
