/*
 * labels/labels.c - artist/genre id tables and lookup, the label vector with its lyric window,
 * and the LabelConditioner's timing bins, reproducing the reference's Python/PyTorch arithmetic
 * (spec sections 4.2, 6.3, 7.2-7.4). See labels.h for the API and the two lookup modes.
 */
#include "labels/labels.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

/* The timing and window arithmetic below must round after every operation, as separate fp32
 * tensor ops do: no a*b+c may become an FMA. Clang honours the pragma; for GCC (which contracts
 * across statements in GNU mode, -ffp-contract=fast) the two multiply-adds go through
 * mul_rounded(). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* fl32(a * b), never fused with a following addition. */
static float mul_rounded(float a, float b)
{
    volatile float r = a * b;
    return r;
}

#define MAX_ID_FILE_BYTES (64u << 20)
#define MAX_SUGGESTIONS 5
#define MAX_SUGGEST_QUERY 128 /* code points; longer queries get no suggestions */

/* ---------------------------------------------------------------------------------------- */
/* code point strings                                                                        */

struct cpstr {
    uint32_t *cp;
    size_t n;
};

/* Decodes UTF-8 into a malloc'd code point array. bad_status: what invalid UTF-8 is (a bad
 * argument or a bad file). */
static enum jb_status decode_utf8(const char *s,
                                  size_t len,
                                  struct cpstr *out,
                                  enum jb_status bad_status,
                                  const char *what)
{
    out->cp = jb_malloc((len ? len : 1) * sizeof(uint32_t));
    out->n  = 0;
    if (!out->cp) return JB_STATUS_ERR_NOMEM;
    for (size_t i = 0; i < len;) {
        size_t k = jb_utf8_next(s + i, len - i, &out->cp[out->n]);
        if (k == 0) {
            free(out->cp);
            out->cp = NULL;
            return jb_fail(bad_status, "%s: invalid UTF-8 at byte %zu", what, i);
        }
        out->n++;
        i += k;
    }
    return JB_STATUS_OK;
}

/* Encodes code points as a malloc'd NUL-terminated UTF-8 string. */
static enum jb_status encode_utf8(const uint32_t *cp, size_t n, char **out)
{
    size_t cap;
    if (!jb_mul_size(n, 4, &cap) || !jb_add_size(cap, 1, &cap))
        return jb_fail(JB_STATUS_ERR_NOMEM, "labels: string too long");
    char *s = jb_malloc(cap);
    if (!s) return JB_STATUS_ERR_NOMEM;
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp[i], (utf8proc_uint8_t *)s + w);
    s[w] = '\0';
    *out = s;
    return JB_STATUS_OK;
}

/* Python str.isspace(): bidi class WS/B/S or category Zs. */
static bool py_isspace(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Other_Lowercase / Other_Uppercase code points without a case mapping (PropList.txt): cased,
 * but invisible to utf8proc's category and mapping tables. */
static const uint32_t k_other_cased[][2] = {
    { 0xAA, 0xAA },       { 0xBA, 0xBA },       { 0x2B0, 0x2B8 },     { 0x2C0, 0x2C1 },
    { 0x2E0, 0x2E4 },     { 0x37A, 0x37A },     { 0x1D2C, 0x1D6A },   { 0x1D78, 0x1D78 },
    { 0x1D9B, 0x1DBF },   { 0x2071, 0x2071 },   { 0x207F, 0x207F },   { 0x2090, 0x209C },
    { 0x2C7C, 0x2C7D },   { 0xA69C, 0xA69D },   { 0xA770, 0xA770 },   { 0xA7F8, 0xA7F9 },
    { 0xAB5C, 0xAB5F },   { 0x10780, 0x10780 }, { 0x10783, 0x10785 }, { 0x10787, 0x107B0 },
    { 0x107B2, 0x107BA }, { 0x1F130, 0x1F149 }, { 0x1F150, 0x1F169 }, { 0x1F170, 0x1F189 },
};

/* Unicode "Cased": Lu, Ll, Lt, Other_Lowercase, Other_Uppercase. Only used for final sigma. */
static bool is_cased(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT)
        return true;
    if (utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
        utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c)
        return true;
    for (size_t i = 0; i < sizeof k_other_cased / sizeof k_other_cased[0]; i++)
        if (c >= k_other_cased[i][0] && c <= k_other_cased[i][1]) return true;
    return false;
}

/* Unicode "Case_Ignorable": Mn, Me, Cf, Lm, Sk, and Word_Break MidLetter/MidNumLet/Single_Quote. */
static bool is_case_ignorable(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return true;
    default:
        break;
    }
    switch (c) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A:
        return true;
    default:
        return false;
    }
}

/* CPython's handle_capital_sigma(): U+03A3 lowercases to final sigma U+03C2 when preceded by a
 * cased letter and not followed by one (case-ignorable characters skipped both ways). */
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && is_case_ignorable(s[j - 1]))
        j--;
    bool final = j > 0 && is_cased(s[j - 1]);
    if (final) {
        j = i + 1;
        while (j < n && is_case_ignorable(s[j]))
            j++;
        final = j == n || !is_cased(s[j]);
    }
    return final ? 0x3C2 : 0x3C3;
}

/* Python str.lower() on code points; out must hold 2 * in->n entries (U+0130 expands). */
static void lower_cps(const struct cpstr *in, uint32_t *out, size_t *n_out)
{
    size_t w = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->cp[i];
        if (c == 0x130) { /* the one unconditional multi-character lowercase mapping */
            out[w++] = 0x69;
            out[w++] = 0x307;
        } else if (c == 0x3A3) {
            out[w++] = lower_sigma(in->cp, in->n, i);
        } else {
            out[w++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    *n_out = w;
}

/* lower() of a UTF-8 byte range into a code point string. */
static enum jb_status lower_to_cps(const char *s,
                                   size_t len,
                                   struct cpstr *out,
                                   enum jb_status bad_status,
                                   const char *what)
{
    struct cpstr in   = { 0 };
    enum jb_status st = decode_utf8(s, len, &in, bad_status, what);
    if (st != JB_STATUS_OK) return st;
    size_t cap;
    if (!jb_mul_size(in.n ? in.n : 1, 2 * sizeof(uint32_t), &cap)) {
        free(in.cp);
        return jb_fail(JB_STATUS_ERR_NOMEM, "labels: string too long");
    }
    out->cp = jb_malloc(cap);
    if (!out->cp) {
        free(in.cp);
        return JB_STATUS_ERR_NOMEM;
    }
    lower_cps(&in, out->cp, &out->n);
    free(in.cp);
    return JB_STATUS_OK;
}

enum jb_status jb_labels_lower(const char *s, char **out)
{
    if (!s || !out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    struct cpstr lo   = { 0 };
    enum jb_status st = lower_to_cps(s, strlen(s), &lo, JB_STATUS_ERR_INVALID_ARG, "label");
    if (st != JB_STATUS_OK) return st;
    st = encode_utf8(lo.cp, lo.n, out);
    free(lo.cp);
    return st;
}

static bool is_ascii_alnum(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

enum jb_status jb_labels_norm(const char *s, char **out)
{
    if (!s || !out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    struct cpstr lo   = { 0 };
    enum jb_status st = lower_to_cps(s, strlen(s), &lo, JB_STATUS_ERR_INVALID_ARG, "label");
    if (st != JB_STATUS_OK) return st;
    /* '_'.join(filter(None, re.split('[^a-zA-Z0-9]', s.lower()))): the result is ASCII. */
    char *r = jb_malloc(lo.n + 1);
    if (!r) {
        free(lo.cp);
        return JB_STATUS_ERR_NOMEM;
    }
    size_t w     = 0;
    bool pending = false; /* a separator seen since the last word */
    for (size_t i = 0; i < lo.n; i++) {
        if (!is_ascii_alnum(lo.cp[i])) {
            pending = true;
            continue;
        }
        if (pending && w > 0) r[w++] = '_';
        pending = false;
        r[w++]  = (char)lo.cp[i];
    }
    r[w] = '\0';
    free(lo.cp);
    *out = r;
    return JB_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* id tables                                                                                 */

struct vocab_key {
    char *key;  /* lowercased name, UTF-8 */
    int32_t id; /* last id assigned to this key */
};

struct jb_label_vocab {
    char **names; /* raw entries, file order */
    int32_t *ids;
    size_t n;

    struct vocab_key *keys; /* unique keys in order of first appearance */
    size_t n_keys;
    uint32_t *slots; /* open-addressing hash: key index + 1, 0 = empty */
    size_t n_slots;
    int32_t max_id;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Slot of key: its index + 1 if present, else the empty slot where it would go (value 0). */
static size_t vocab_find_slot(const struct jb_label_vocab *v, const char *key)
{
    size_t mask = v->n_slots - 1;
    for (size_t i = (size_t)hash_str(key) & mask;; i = (i + 1) & mask) {
        uint32_t k = v->slots[i];
        if (k == 0 || strcmp(v->keys[k - 1].key, key) == 0) return i;
    }
}

void jb_label_vocab_free(struct jb_label_vocab *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n; i++)
        free(v->names[i]);
    for (size_t i = 0; i < v->n_keys; i++)
        free(v->keys[i].key);
    free(v->names);
    free(v->ids);
    free(v->keys);
    free(v->slots);
    free(v);
}

static enum jb_status vocab_alloc(size_t n, struct jb_label_vocab **out)
{
    if (n > (size_t)UINT32_MAX / 4)
        return jb_fail(JB_STATUS_ERR_FORMAT, "label table: too many entries (%zu)", n);
    struct jb_label_vocab *v = jb_calloc(1, sizeof(*v));
    if (!v) return JB_STATUS_ERR_NOMEM;
    v->n_slots = 16;
    while (v->n_slots < 2 * n)
        v->n_slots *= 2; /* load factor <= 1/2 */
    v->names  = jb_calloc(n ? n : 1, sizeof(*v->names));
    v->ids    = jb_calloc(n ? n : 1, sizeof(*v->ids));
    v->keys   = jb_calloc(n ? n : 1, sizeof(*v->keys));
    v->slots  = jb_calloc(v->n_slots, sizeof(*v->slots));
    v->max_id = -1;
    if (!v->names || !v->ids || !v->keys || !v->slots) {
        jb_label_vocab_free(v);
        return JB_STATUS_ERR_NOMEM;
    }
    *out = v;
    return JB_STATUS_OK;
}

/* Appends the raw entry (name[0..len)) and sets lower(name) -> id, overriding an earlier key. */
static enum jb_status vocab_add(struct jb_label_vocab *v,
                                const char *name,
                                size_t len,
                                int32_t id,
                                const char *where)
{
    char *raw = jb_malloc(len + 1);
    if (!raw) return JB_STATUS_ERR_NOMEM;
    memcpy(raw, name, len);
    raw[len]       = '\0';
    v->names[v->n] = raw;
    v->ids[v->n]   = id;
    v->n++;

    struct cpstr lo   = { 0 };
    enum jb_status st = lower_to_cps(name, len, &lo, JB_STATUS_ERR_FORMAT, where);
    if (st != JB_STATUS_OK) return st;
    char *key = NULL;
    st        = encode_utf8(lo.cp, lo.n, &key);
    free(lo.cp);
    if (st != JB_STATUS_OK) return st;

    size_t slot = vocab_find_slot(v, key);
    if (v->slots[slot]) {
        v->keys[v->slots[slot] - 1].id = id; /* later lines win, as in the reference's dict */
        free(key);
    } else {
        v->keys[v->n_keys] = (struct vocab_key){ key, id };
        v->slots[slot]     = (uint32_t)(++v->n_keys);
    }
    if (id > v->max_id) v->max_id = id;
    return JB_STATUS_OK;
}

enum jb_status jb_label_vocab_from_arrays(const char *const *names,
                                          const int32_t *ids,
                                          size_t n,
                                          struct jb_label_vocab **out)
{
    if (!out || (n && (!names || !ids)))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    *out                     = NULL;
    struct jb_label_vocab *v = NULL;
    enum jb_status st        = vocab_alloc(n, &v);
    if (st != JB_STATUS_OK) return st;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || ids[i] < 0) {
            jb_label_vocab_free(v);
            return jb_fail(
              JB_STATUS_ERR_FORMAT, "label table: entry %zu has no name or a negative id", i);
        }
        st = vocab_add(v, names[i], strlen(names[i]), ids[i], "label table entry");
        if (st != JB_STATUS_OK) {
            jb_label_vocab_free(v);
            return st;
        }
    }
    *out = v;
    return JB_STATUS_OK;
}

/* Python int(s) for the id field, restricted to ASCII digits: whitespace, optional sign, digits
 * with single '_' between them, whitespace. */
static bool parse_id(const struct cpstr *s, size_t b, size_t e, int32_t *id)
{
    while (b < e && py_isspace(s->cp[b]))
        b++;
    while (e > b && py_isspace(s->cp[e - 1]))
        e--;
    bool neg = false;
    if (b < e && (s->cp[b] == '+' || s->cp[b] == '-')) neg = s->cp[b++] == '-';
    if (b == e) return false;
    int64_t v = 0;
    for (size_t i = b; i < e; i++) {
        uint32_t c = s->cp[i];
        if (c == '_' && i > b && i + 1 < e && s->cp[i - 1] != '_' && s->cp[i + 1] != '_') continue;
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
        if (v > INT32_MAX) return false;
    }
    if (neg && v != 0) return false; /* an id indexes an embedding table */
    *id = (int32_t)v;
    return true;
}

enum jb_status jb_label_vocab_load_file(const char *path, struct jb_label_vocab **out)
{
    if (!path || !out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    *out    = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return jb_fail(JB_STATUS_ERR_IO, "label table %s: %s", path, strerror(errno));
    char *buf  = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_ID_FILE_BYTES) {
                free(buf);
                fclose(f);
                return jb_fail(JB_STATUS_ERR_FORMAT,
                               "label table %s: larger than %u bytes",
                               path,
                               MAX_ID_FILE_BYTES);
            }
            cap     = cap ? cap * 2 : 65536;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return jb_fail(JB_STATUS_ERR_NOMEM, "label table %s: out of memory", path);
            }
            buf = p;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    bool io_err = ferror(f);
    fclose(f);
    if (io_err) {
        free(buf);
        return jb_fail(JB_STATUS_ERR_IO, "label table %s: read error", path);
    }

    struct cpstr text = { 0 };
    enum jb_status st = decode_utf8(buf, len, &text, JB_STATUS_ERR_FORMAT, path);
    free(buf);
    if (st != JB_STATUS_OK) return st;

    /* Lines as Python's universal-newline text mode yields them: ended by \n, \r\n or \r. */
    size_t n_lines = 0;
    for (size_t i = 0; i < text.n; i++)
        if (text.cp[i] == '\n' ||
            (text.cp[i] == '\r' && (i + 1 == text.n || text.cp[i + 1] != '\n')))
            n_lines++;
    if (text.n && text.cp[text.n - 1] != '\n' && text.cp[text.n - 1] != '\r') n_lines++;

    struct jb_label_vocab *v = NULL;
    st                       = vocab_alloc(n_lines, &v);
    for (size_t i = 0, line = 1; st == JB_STATUS_OK && i < text.n; line++) {
        size_t e = i;
        while (e < text.n && text.cp[e] != '\n' && text.cp[e] != '\r')
            e++;
        size_t next = e;
        if (next < text.n)
            next +=
              (text.cp[next] == '\r' && next + 1 < text.n && text.cp[next + 1] == '\n') ? 2 : 1;
        /* line.strip().split(';') must give exactly two fields */
        size_t b = i;
        while (b < e && py_isspace(text.cp[b]))
            b++;
        while (e > b && py_isspace(text.cp[e - 1]))
            e--;
        size_t semi = SIZE_MAX, n_semi = 0, n_nul = 0;
        for (size_t j = b; j < e; j++) {
            if (text.cp[j] == ';') semi = j, n_semi++;
            n_nul += text.cp[j] == 0; /* a C string cannot hold it */
        }
        int32_t id = 0;
        if (n_nul) {
            st = jb_fail(JB_STATUS_ERR_FORMAT, "label table %s:%zu: NUL character", path, line);
        } else if (n_semi != 1) {
            st =
              jb_fail(JB_STATUS_ERR_FORMAT, "label table %s:%zu: expected 'name;id'", path, line);
        } else if (!parse_id(&text, semi + 1, e, &id)) {
            st = jb_fail(JB_STATUS_ERR_FORMAT, "label table %s:%zu: bad id", path, line);
        } else {
            char *name = NULL;
            st         = encode_utf8(text.cp + b, semi - b, &name);
            if (st == JB_STATUS_OK) st = vocab_add(v, name, strlen(name), id, path);
            free(name);
        }
        i = next;
    }
    free(text.cp);
    if (st != JB_STATUS_OK) {
        jb_label_vocab_free(v);
        return st;
    }
    *out = v;
    return JB_STATUS_OK;
}

size_t jb_label_vocab_count(const struct jb_label_vocab *v)
{
    return v ? v->n : 0;
}

void jb_label_vocab_entry(const struct jb_label_vocab *v, size_t i, const char **name, int32_t *id)
{
    JB_ASSERT(v && i < v->n);
    if (name) *name = v->names[i];
    if (id) *id = v->ids[i];
}

int32_t jb_label_vocab_max_id(const struct jb_label_vocab *v)
{
    return v ? v->max_id : -1;
}

bool jb_label_vocab_lookup(const struct jb_label_vocab *v, const char *key, int32_t *id)
{
    if (!v || !key) return false;
    uint32_t k = v->slots[vocab_find_slot(v, key)];
    if (!k) return false;
    if (id) *id = v->keys[k - 1].id;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* lookup with strict-mode diagnostics                                                       */

/* Levenshtein distance over code points, or limit + 1 once it must exceed limit. */
static size_t edit_distance(const uint32_t *a,
                            size_t na,
                            const uint32_t *b,
                            size_t nb,
                            size_t limit,
                            size_t *row)
{
    if ((na > nb ? na - nb : nb - na) > limit) return limit + 1;
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0], best = i;
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t d  = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < d) d = up + 1;
            if (row[j - 1] + 1 < d) d = row[j - 1] + 1;
            row[j] = d;
            diag   = up;
            if (d < best) best = d;
        }
        if (best > limit) return limit + 1;
    }
    return row[nb];
}

/* Appends "; close matches: a, b, ..." (or "; no close matches") for key to msg. Best effort:
 * on allocation failure the list is just left out. */
static void append_suggestions(const struct jb_label_vocab *v,
                               const char *key,
                               char *msg,
                               size_t cap)
{
    size_t used    = strlen(msg);
    struct cpstr q = { 0 };
    if (decode_utf8(key, strlen(key), &q, JB_STATUS_ERR_INVALID_ARG, "label") != JB_STATUS_OK)
        return;
    size_t best_i[MAX_SUGGESTIONS], best_d[MAX_SUGGESTIONS], n_best = 0;
    size_t limit = q.n / 2 > 3 ? q.n / 2 : 3;
    size_t *row  = NULL;
    if (q.n <= MAX_SUGGEST_QUERY) row = malloc((MAX_SUGGEST_QUERY + limit + 2) * sizeof(*row));
    for (size_t i = 0; row && i < v->n_keys; i++) {
        const char *k = v->keys[i].key;
        size_t kl     = strlen(k);
        if (kl == 0 || kl > 4 * (MAX_SUGGEST_QUERY + limit)) continue;
        struct cpstr kc = { 0 };
        if (decode_utf8(k, kl, &kc, JB_STATUS_ERR_INVALID_ARG, "label") != JB_STATUS_OK) break;
        size_t d = kc.n <= MAX_SUGGEST_QUERY + limit
                     ? edit_distance(q.cp, q.n, kc.cp, kc.n, limit, row)
                     : limit + 1;
        free(kc.cp);
        if (d > limit) continue;
        /* insertion sort by (distance, table order) into the top list */
        size_t pos = n_best;
        while (pos > 0 && best_d[pos - 1] > d)
            pos--;
        if (pos >= MAX_SUGGESTIONS) continue;
        size_t last = n_best < MAX_SUGGESTIONS ? n_best : MAX_SUGGESTIONS - 1;
        for (size_t j = last; j > pos; j--)
            best_i[j] = best_i[j - 1], best_d[j] = best_d[j - 1];
        best_i[pos] = i, best_d[pos] = d;
        if (n_best < MAX_SUGGESTIONS) n_best++;
    }
    free(row);
    free(q.cp);
    if (n_best == 0) {
        snprintf(msg + used, cap - used, "; no close matches");
        return;
    }
    used += (size_t)snprintf(msg + used, cap - used, "; close matches: ");
    for (size_t j = 0; j < n_best && used < cap; j++)
        used +=
          (size_t)snprintf(msg + used, cap - used, "%s%s", j ? ", " : "", v->keys[best_i[j]].key);
}

/* Resolves one key; unknown keys fail in strict mode and warn + give 0 in reference mode.
 * desc names the label for messages, e.g. "artist 'Elvis Presly'". */
static enum jb_status resolve_key(const struct jb_label_vocab *v,
                                  enum jb_label_version version,
                                  enum jb_label_mode mode,
                                  const char *desc,
                                  const char *key,
                                  int32_t *id)
{
    if (jb_label_vocab_lookup(v, key, id)) return JB_STATUS_OK;
    if (mode == JB_LABEL_REFERENCE) {
        jb_log(JB_LOG_WARN,
               "%s is not in the v%d table; using id 0 (reference behaviour)",
               desc,
               (int)version);
        *id = 0;
        return JB_STATUS_OK;
    }
    char msg[900];
    snprintf(msg, sizeof msg, "unknown %s for this model (v%d table)", desc, (int)version);
    append_suggestions(v, key, msg, sizeof msg);
    return jb_fail(JB_STATUS_ERR_LABEL, "%s", msg);
}

static enum jb_status check_args(const struct jb_label_vocab *v,
                                 enum jb_label_version version,
                                 enum jb_label_mode mode,
                                 const char *s,
                                 const void *out,
                                 const char *fn)
{
    if (!v || !s || !out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (version != JB_LABEL_V2 && version != JB_LABEL_V3)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: unknown label version %d", fn, (int)version);
    if (mode != JB_LABEL_STRICT && mode != JB_LABEL_REFERENCE)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: unknown mode %d", fn, (int)mode);
    return JB_STATUS_OK;
}

enum jb_status jb_labels_artist_id(const struct jb_label_vocab *artists,
                                   enum jb_label_version version,
                                   enum jb_label_mode mode,
                                   const char *artist,
                                   int32_t *id)
{
    enum jb_status st = check_args(artists, version, mode, artist, id, __func__);
    if (st != JB_STATUS_OK) return st;
    char *key = NULL;
    st = version == JB_LABEL_V2 ? jb_labels_norm(artist, &key) : jb_labels_lower(artist, &key);
    if (st != JB_STATUS_OK) return st;
    if (mode == JB_LABEL_STRICT && key[0] == '\0') {
        /* v2's "" is a real key (id 0, like "unknown"): a name without letters or digits would
         * silently lose the artist conditioning. */
        free(key);
        return jb_fail(JB_STATUS_ERR_LABEL,
                       "artist '%s' is empty after normalisation (v%d table)",
                       artist,
                       (int)version);
    }
    char desc[400];
    if (strcmp(artist, key) == 0)
        snprintf(desc, sizeof desc, "artist '%s'", artist);
    else
        snprintf(desc, sizeof desc, "artist '%s' (looked up as '%s')", artist, key);
    st = resolve_key(artists, version, mode, desc, key, id);
    free(key);
    return st;
}

enum jb_status jb_labels_genre_ids(const struct jb_label_vocab *genres,
                                   enum jb_label_version version,
                                   enum jb_label_mode mode,
                                   const char *genre,
                                   int n_slots,
                                   int32_t *ids)
{
    enum jb_status st = check_args(genres, version, mode, genre, ids, __func__);
    if (st != JB_STATUS_OK) return st;
    if (n_slots < 1 || n_slots > JB_LABEL_MAX_GENRES)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "%s: %d genre slots (1..%d)",
                       __func__,
                       n_slots,
                       JB_LABEL_MAX_GENRES);
    char *key = NULL;
    st        = version == JB_LABEL_V2 ? jb_labels_norm(genre, &key) : jb_labels_lower(genre, &key);
    if (st != JB_STATUS_OK) return st;
    if (mode == JB_LABEL_STRICT && key[0] == '\0') {
        free(key);
        return jb_fail(JB_STATUS_ERR_LABEL,
                       "genre '%s' is empty%s (v%d table)",
                       genre,
                       version == JB_LABEL_V2 ? " after normalisation" : "",
                       (int)version);
    }
    /* v2: norm(genre).split('_'); norm() leaves no empty words except for an empty string,
     * which splits into one empty word. v3: the whole lowercased genre is one word. */
    int n_words = 1;
    if (version == JB_LABEL_V2)
        for (const char *p = key; *p; p++)
            n_words += *p == '_';
    if (n_words > n_slots) {
        st = jb_fail(JB_STATUS_ERR_LABEL,
                     "genre '%s' has %d words, but this model takes at most %d",
                     genre,
                     n_words,
                     n_slots);
        free(key);
        return st;
    }
    int slot   = 0;
    char *word = key;
    for (;;) {
        char *sep = version == JB_LABEL_V2 ? strchr(word, '_') : NULL;
        if (sep) *sep = '\0';
        char desc[400];
        if (version == JB_LABEL_V2)
            snprintf(desc, sizeof desc, "genre word '%s' (from '%s')", word, genre);
        else if (strcmp(genre, word) == 0)
            snprintf(desc, sizeof desc, "genre '%s'", genre);
        else
            snprintf(desc, sizeof desc, "genre '%s' (looked up as '%s')", genre, word);
        st = resolve_key(genres, version, mode, desc, word, &ids[slot]);
        if (st != JB_STATUS_OK) break;
        slot++;
        if (!sep) break;
        word = sep + 1;
    }
    free(key);
    if (st != JB_STATUS_OK) return st;
    for (; slot < n_slots; slot++)
        ids[slot] = -1;
    return JB_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* lyric window and label vector                                                             */

enum jb_status jb_labels_lyric_window(const int32_t *full,
                                      size_t n_full,
                                      int n_tokens,
                                      int64_t total_length,
                                      int64_t offset,
                                      int64_t duration,
                                      enum jb_label_arith arith,
                                      int32_t *tokens,
                                      int64_t *indices)
{
    if (n_tokens <= 0 || n_tokens % 2 || !tokens || (n_full && !full))
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "%s: bad arguments (n_tokens %d)", __func__, n_tokens);
    if (arith != JB_LABEL_ARITH_F32 && arith != JB_LABEL_ARITH_F64)
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "%s: unknown arithmetic %d", __func__, (int)arith);
    size_t k = (size_t)n_tokens;
    if (n_full < k) { /* short lyrics: left-pad with 0 and use them whole in every window */
        size_t pad = k - n_full;
        for (size_t i = 0; i < k; i++) {
            tokens[i] = i < pad ? 0 : full[i - pad];
            if (indices) indices[i] = i < pad ? -1 : (int64_t)(i - pad);
        }
        return JB_STATUS_OK;
    }
    if (!(offset >= 0 && offset < total_length))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "lyric window: offset %lld outside the song [0, %lld)",
                       (long long)offset,
                       (long long)total_length);
    if (n_full > (size_t)INT32_MAX)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "lyric window: %zu lyric tokens", n_full);

    /* midpoint = int(len(full) * (offset + duration / 2.0) / total_length) */
    double mid_f;
    if (arith == JB_LABEL_ARITH_F32) {
        /* get_y: the operands are int64 tensor elements, so every step is an fp32 tensor op */
        float a = (float)duration / 2.0f;
        float b = (float)offset + a;
        float c = (float)n_full * b;
        float m = c / (float)total_length;
        mid_f   = (double)m;
    } else {
        double b = (double)offset + (double)duration / 2.0;
        mid_f    = (double)n_full * b / (double)total_length;
    }
    if (!(mid_f >= 0.0 && mid_f < 9.0e18))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "lyric window: midpoint out of range");
    int64_t mid  = (int64_t)mid_f; /* int(): truncation toward zero */
    int64_t half = n_tokens / 2;
    if (mid < half) mid = half;
    if (mid > (int64_t)n_full - half) mid = (int64_t)n_full - half;
    for (size_t i = 0; i < k; i++) {
        int64_t j = mid - half + (int64_t)i;
        tokens[i] = full[j];
        if (indices) indices[i] = j;
    }
    return JB_STATUS_OK;
}

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
                                int64_t *indices)
{
    if (!y || (n_genres > 0 && !genre_ids) || n_genres < 0 || n_genres > JB_LABEL_MAX_GENRES ||
        n_tokens < 0)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: bad arguments", __func__);
    y[0] = total_length;
    y[1] = offset;
    y[2] = length;
    y[3] = artist_id;
    for (int g = 0; g < n_genres; g++)
        y[4 + g] = genre_ids[g];
    if (n_tokens == 0) return JB_STATUS_OK;

    int32_t *win = jb_malloc((size_t)n_tokens * sizeof(*win));
    if (!win) return JB_STATUS_ERR_NOMEM;
    enum jb_status st = jb_labels_lyric_window(
      full_tokens, n_full, n_tokens, total_length, offset, length, arith, win, indices);
    if (st == JB_STATUS_OK)
        for (int i = 0; i < n_tokens; i++)
            y[4 + n_genres + i] = win[i];
    free(win);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* timing bins                                                                               */

/* "fp32 tensor / Python scalar c": CUDA multiplies by the fp32 reciprocal, CPU divides. */
static float div_scalar(float x, double c, bool true_div)
{
    float cf = (float)c;
    if (true_div) return x / cf;
    float inv = 1.0f / cf;
    return x * inv;
}

/* floor(bins * x) as RangeEmbedding does, checked against the embedding table. */
static bool to_bin(float x, int bins, int32_t *out)
{
    float t = (float)bins * x;
    float f = floorf(t);
    if (!(f >= 0.0f && f < (float)bins)) return false;
    *out = (int32_t)f;
    return true;
}

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
                                     int32_t *k_rel)
{
    if (!k_tot || !k_abs || !k_rel || n_ctx < 1 || t_bins < 1 || sr < 1 ||
        (flags & ~JB_TIMING_TRUE_DIV))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: bad arguments", __func__);
    int64_t end;
    if (__builtin_add_overflow(offset, length, &end))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "timing: offset + length overflows");
    bool true_div = flags & JB_TIMING_TRUE_DIV;

    /* Python doubles, then fp32 where they meet fp32 tensors */
    double t_min  = min_duration * sr;
    double t_max  = max_duration * sr;
    float t_min_f = (float)t_min;
    float t_max_f = (float)t_max;

    float l_tot = (float)total_length;
    float s     = (float)offset;
    float e     = (float)end;

    /* the reference's range assertions, compared in fp32 */
    if (!(t_min_f <= l_tot && l_tot < t_max_f))
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG,
          "timing: total length %lld samples is outside [%.0f, %.0f) (%.2f s to %.0f s)",
          (long long)total_length,
          t_min,
          t_max,
          min_duration,
          max_duration);
    if (!(0.0f <= s && s < t_max_f))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "timing: offset %lld is outside [0, %.0f)",
                       (long long)offset,
                       t_max);
    if (!(0.0f <= e && e <= t_max_f))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "timing: window end %lld is outside [0, %.0f]",
                       (long long)end,
                       t_max);
    float rs = s / l_tot;
    float re = e / l_tot;
    re       = re < 0.0f ? 0.0f : re > 1.0f ? 1.0f : re; /* clamp=True on the end only */
    if (!(0.0f <= rs && rs < 1.0f))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "timing: offset %lld is not inside the song (total length %lld)",
                       (long long)offset,
                       (long long)total_length);

    /* total length: one bin, range [t_min, t_max) */
    float tn = div_scalar(l_tot - t_min_f, t_max - t_min, true_div);
    if (!to_bin(tn, t_bins, k_tot))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "timing: total-length bin out of range");

    float d_abs = e - s;
    float d_rel = re - rs;
    for (int i = 0; i < n_ctx; i++) {
        /* arange(n) / n; the reference skips the interpolation for n == 1 (same result) */
        float f  = div_scalar((float)i, (double)n_ctx, true_div);
        float ma = mul_rounded(d_abs, f);
        float p  = s + ma;
        float mr = mul_rounded(d_rel, f);
        float q  = rs + mr;
        /* (x - 0.0) / (range - 0.0): subtracting 0 and dividing by 1.0 are exact */
        if (!to_bin(div_scalar(p, t_max, true_div), t_bins, &k_abs[i]) ||
            !to_bin(div_scalar(q, 1.0, true_div), t_bins, &k_rel[i]))
            return jb_fail(
              JB_STATUS_ERR_INVALID_ARG, "timing: position bin of token %d out of range", i);
    }
    return JB_STATUS_OK;
}
