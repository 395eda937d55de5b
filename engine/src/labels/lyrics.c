/*
 * labels/lyrics.c - TextProcessor.clean()/tokenise() of the reference (spec section 7.1,
 * Appendix B): unidecode transliteration, '\' -> '\n', vocabulary filter, character ids.
 *
 * The transliteration table (labels/unidecode_table.h) is generated at build time by
 * tools/gen_unidecode_table.py and linked into the engine next to this file.
 */
#include "labels/lyrics.h"

#include "labels/unidecode_table.h"

#include <string.h>

/* Appendix B. v2 is v3 with '+' inserted after '-'. */
static const char k_vocab_v2[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                 ".,:;!?-+'\"()[] \t\n";
static const char k_vocab_v3[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                 ".,:;!?-'\"()[] \t\n";

const char *jb_lyrics_vocab(enum jb_label_version version)
{
    switch (version) {
    case JB_LABEL_V2:
        return k_vocab_v2;
    case JB_LABEL_V3:
        return k_vocab_v3;
    }
    return NULL;
}

int jb_lyrics_n_vocab(enum jb_label_version version)
{
    const char *v = jb_lyrics_vocab(version);
    return v ? (int)strlen(v) + 1 : 0;
}

int jb_lyrics_char_id(enum jb_label_version version, unsigned char c)
{
    const char *v = jb_lyrics_vocab(version);
    if (!v || c == 0) return 0; /* strchr would find the terminator */
    const char *p = strchr(v, c);
    return p ? (int)(p - v) + 1 : 0;
}

size_t jb_utf8_next(const char *s, size_t len, uint32_t *cp)
{
    if (len == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    uint32_t c             = u[0];
    size_t n;
    uint32_t min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, min = 0x80, c &= 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, min = 0x800, c &= 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0; /* continuation byte, C0/C1 (overlong) or F5..FF */
    }
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (u[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return n;
}

const char *jb_unidecode_table_version(void)
{
    return jb_unidecode_version;
}

/* Replacement of a non-ASCII code point: returns false if unidecode has no data for it (the
 * character is dropped), else sets *repl and *n (n may be 0). */
static bool unidecode_lookup(uint32_t cp, const char **repl, size_t *n)
{
    if (cp > 0xEFFFF) return false; /* unidecode ignores the private-use planes and above */
    uint32_t sec = cp >> 8;
    if (sec >= jb_unidecode_n_sections) return false;
    int32_t base = jb_unidecode_section_base[sec];
    if (base < 0) return false;
    uint32_t e = jb_unidecode_entries[(uint32_t)base + (cp & 0xFF)];
    if (e == UINT32_MAX) return false;
    *repl = jb_unidecode_pool + (e >> 8);
    *n    = e & 0xFF;
    return true;
}

/* Growable byte buffer; the final string is NUL-terminated. */
struct strbuf {
    char *p;
    size_t n, cap;
};

static bool strbuf_put(struct strbuf *b, const char *s, size_t n)
{
    size_t need;
    if (!jb_add_size(b->n, n, &need) || !jb_add_size(need, 1, &need)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "lyrics: text too long");
        return false;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need) {
            if (!jb_mul_size(cap, 2, &cap)) {
                jb_fail(JB_STATUS_ERR_NOMEM, "lyrics: text too long");
                return false;
            }
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            jb_fail(JB_STATUS_ERR_NOMEM, "lyrics: out of memory (%zu bytes)", cap);
            return false;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

enum jb_status jb_unidecode(const char *text, size_t len, char **out, size_t *out_len)
{
    if (!out || (!text && len))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    *out              = NULL;
    struct strbuf buf = { 0 };
    if (!strbuf_put(&buf, "", 0)) return JB_STATUS_ERR_NOMEM;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = jb_utf8_next(text + i, len - i, &cp);
        if (k == 0) {
            free(buf.p);
            return jb_fail(JB_STATUS_ERR_INVALID_ARG, "lyrics: invalid UTF-8 at byte %zu", i);
        }
        const char *repl = text + i;
        size_t n         = 1;
        if (cp >= 0x80 && !unidecode_lookup(cp, &repl, &n)) n = 0;
        if (n && !strbuf_put(&buf, repl, n)) {
            free(buf.p);
            return JB_STATUS_ERR_NOMEM;
        }
        i += k;
    }
    *out = buf.p;
    if (out_len) *out_len = buf.n;
    return JB_STATUS_OK;
}

enum jb_status jb_lyrics_clean(enum jb_label_version version,
                               const char *text,
                               size_t len,
                               char **out,
                               size_t *out_len)
{
    if (!jb_lyrics_vocab(version))
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "%s: unknown vocabulary version %d", __func__, (int)version);
    char *s           = NULL;
    size_t n          = 0;
    enum jb_status st = jb_unidecode(text, len, &s, &n);
    if (st != JB_STATUS_OK) return st;
    /* In place: the backslash substitution happens after transliteration (a table string may
     * contain '\'), then everything outside the vocabulary is deleted. */
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        unsigned char c = (unsigned char)s[r];
        if (c == '\\') c = '\n';
        if (jb_lyrics_char_id(version, c)) s[w++] = (char)c;
    }
    s[w] = '\0';
    *out = s;
    if (out_len) *out_len = w;
    return JB_STATUS_OK;
}

enum jb_status jb_lyrics_tokenise(enum jb_label_version version,
                                  const char *cleaned,
                                  size_t len,
                                  int32_t **tokens,
                                  size_t *n_tokens)
{
    if (!tokens || !n_tokens || (!cleaned && len))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    if (!jb_lyrics_vocab(version))
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "%s: unknown vocabulary version %d", __func__, (int)version);
    int32_t *t = jb_malloc((len ? len : 1) * sizeof(*t));
    if (!t) return JB_STATUS_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) {
        int id = jb_lyrics_char_id(version, (unsigned char)cleaned[i]);
        if (!id) {
            free(t);
            return jb_fail(
              JB_STATUS_ERR_INVALID_ARG,
              "%s: byte 0x%02x at %zu is not in the v%d vocabulary (clean the text first)",
              __func__,
              (unsigned char)cleaned[i],
              i,
              (int)version);
        }
        t[i] = id;
    }
    *tokens   = t;
    *n_tokens = len;
    return JB_STATUS_OK;
}

enum jb_status jb_lyrics_encode(enum jb_label_version version,
                                const char *text,
                                size_t len,
                                int32_t **tokens,
                                size_t *n_tokens,
                                char **cleaned)
{
    char *c           = NULL;
    size_t n          = 0;
    enum jb_status st = jb_lyrics_clean(version, text, len, &c, &n);
    if (st != JB_STATUS_OK) return st;
    st = jb_lyrics_tokenise(version, c, n, tokens, n_tokens);
    if (st == JB_STATUS_OK && cleaned)
        *cleaned = c;
    else
        free(c);
    return st;
}
