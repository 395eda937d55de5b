/*
 * labels/unidecode_table.h - the transliteration table generated at build time by
 * tools/gen_unidecode_table.py from Python's unidecode package (see that script). Private to
 * labels/lyrics.c.
 *
 * Code point c (< 0xF0000) has data iff c >> 8 < jb_unidecode_n_sections and
 * jb_unidecode_section_base[c >> 8] >= 0; then e = jb_unidecode_entries[base + (c & 0xFF)] is
 * UINT32_MAX (no replacement: unidecode drops the character) or the replacement string
 * jb_unidecode_pool + (e >> 8) of length e & 0xFF (ASCII, possibly empty, not terminated).
 */
#ifndef JB_PRIOR_UNIDECODE_TABLE_H
#define JB_PRIOR_UNIDECODE_TABLE_H

#include <stdint.h>

extern const char jb_unidecode_version[];
extern const uint32_t jb_unidecode_n_sections;
extern const int32_t jb_unidecode_section_base[];
extern const uint32_t jb_unidecode_entries[];
extern const char jb_unidecode_pool[];

#endif
