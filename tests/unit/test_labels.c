/*
 * tests/unit/test_labels.c - the label/lyrics front end (labels/labels.h, labels/lyrics.h) against
 * the reference fixtures, plus fixture-independent unit checks.
 *
 * usage: test_labels [FIXTURE_DIR [IDS_DIR]]
 *   FIXTURE_DIR  e.g. ../shared/fixtures/jukebox-ref (manifest.json and the labels folder of .npy
 * files) IDS_DIR      e.g. ../shared/data/jukebox-ids (v2_artist_ids.txt, ...) Without them (or if
 * they are missing) only the unit checks run and "SKIP: ../shared not found" is printed. Prints one
 * line per comparison and "N passed, M failed"; exits 1 on any failure.
 */
#include "labels/labels.h"
#include "labels/lyrics.h"
#include "test_common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* tests/common's reporting under this file's name */
#define check tc_check

static bool is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---------------------------------------------------------------------------------------- */
/* minimal .npy reader: little-endian int64, C order (all the label fixtures)                */

struct i64arr {
    int64_t *v;
    int64_t n;
    int n_dims;
    int64_t shape[4];
};

static bool read_npy_i64(const char *path, struct i64arr *a)
{
    memset(a, 0, sizeof(*a));
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    unsigned char pre[10];
    bool ok     = fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0;
    size_t hlen = 0;
    if (ok && pre[6] == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
    } else if (ok && (pre[6] == 2 || pre[6] == 3)) {
        unsigned char b[2];
        ok   = fread(b, 1, 2, f) == 2;
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)b[0] << 16 | (size_t)b[1] << 24;
    } else {
        ok = false;
    }
    char *h  = ok && hlen < 65536 ? calloc(1, hlen + 1) : NULL;
    ok       = h && fread(h, 1, hlen, f) == hlen;
    ok       = ok && strstr(h, "'descr': '<i8'") && strstr(h, "'fortran_order': False");
    char *sh = ok ? strstr(h, "'shape': (") : NULL;
    if (sh) {
        sh += strlen("'shape': (");
        a->n = 1;
        while (*sh && *sh != ')' && a->n_dims < 4) {
            char *end;
            long long d = strtoll(sh, &end, 10);
            if (end == sh) break;
            a->shape[a->n_dims++] = d;
            a->n *= d;
            sh = end;
            while (*sh == ',' || *sh == ' ')
                sh++;
        }
        ok = *sh == ')';
    } else {
        ok = false;
    }
    free(h);
    if (ok) {
        a->v = malloc((size_t)(a->n ? a->n : 1) * sizeof(int64_t));
        ok   = a->v && fread(a->v, sizeof(int64_t), (size_t)a->n, f) == (size_t)a->n;
    }
    fclose(f);
    if (!ok) {
        free(a->v);
        a->v = NULL;
    }
    return ok;
}

static bool eq_i64_i32(const int64_t *a, const int32_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* fixture-independent checks                                                                */

/* got/want printed with C escapes so that newlines and tabs stay on one line */
static void print_escaped(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            printf("\\n");
        else if (*s == '\t')
            printf("\\t");
        else
            putchar(*s);
    }
}

static void check_str(const char *what, const char *got, const char *want)
{
    bool ok = got && strcmp(got, want) == 0;
    check(ok, "%s", what);
    printf("     got '");
    print_escaped(got ? got : "(null)");
    printf("'");
    if (!ok) {
        printf(", want '");
        print_escaped(want);
        printf("'");
    }
    printf("\n");
}

static void unit_norm_lower(void)
{
    static const char *norm_cases[][2] = {
        { "Alan Jackson", "alan_jackson" },
        { "C\xc3\xa9line Dion", "c_line_dion" },
        { "  --Blues__Rock!! ", "blues_rock" },
        { "", "" },
        { "!!!", "" },
        { "\xc4\xb0stanbul", "i_stanbul" }, /* U+0130 -> "i" + U+0307 */
        { "\xe2\x84\xaa"
          "elvin",
          "kelvin" }, /* Kelvin sign lowercases to ASCII k */
        { "AC/DC", "ac_dc" },
    };
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        char *r = NULL;
        jb_labels_norm(norm_cases[i][0], &r);
        char what[64];
        snprintf(what, sizeof what, "norm #%zu", i);
        check_str(what, r, norm_cases[i][1]);
        free(r);
    }
    static const char *lower_cases[][2] = {
        { "ABC xyz", "abc xyz" },
        { "\xc4\xb0", "i\xcc\x87" },                                /* İ -> i̇ */
        { "\xce\xa3", "\xcf\x83" },                                 /* lone Σ -> σ */
        { "\xce\xa3\xce\x91\xce\xa3", "\xcf\x83\xce\xb1\xcf\x82" }, /* ΣΑΣ -> σας */
        { "\xce\x91\xce\xa3\x62", "\xce\xb1\xcf\x83\x62" },         /* ΑΣb -> ασb */
        { "\xc3\x89\xc3\x96\xc3\x85", "\xc3\xa9\xc3\xb6\xc3\xa5" }, /* ÉÖÅ */
    };
    for (size_t i = 0; i < sizeof lower_cases / sizeof lower_cases[0]; i++) {
        char *r = NULL;
        jb_labels_lower(lower_cases[i][0], &r);
        char what[64];
        snprintf(what, sizeof what, "lower #%zu", i);
        check_str(what, r, lower_cases[i][1]);
        free(r);
    }
    char *r = NULL;
    check(jb_labels_norm("bad \xc3 utf8", &r) == JB_STATUS_ERR_INVALID_ARG && !r,
          "norm rejects invalid UTF-8");
}

static void unit_vocab(void)
{
    const char *names[] = { "Foo", "bar", "FOO", "psychedelic rock\xe2\x80\x8e", "psychedelic rock",
                            "" };
    int32_t ids[]       = { 1, 2, 3, 7, 185, 0 };
    struct jb_label_vocab *v = NULL;
    check(jb_label_vocab_from_arrays(names, ids, 6, &v) == JB_STATUS_OK, "vocab from arrays");
    if (!v) return;
    int32_t id = -5;
    bool found = jb_label_vocab_lookup(v, "foo", &id);
    check(found && id == 3, "vocab: later entry overrides (foo=%d)", id);
    found = jb_label_vocab_lookup(v, "bar", &id);
    check(found && id == 2, "vocab: bar=%d", id);
    check(!jb_label_vocab_lookup(v, "Foo", &id), "vocab: keys are lowercased");
    check(jb_label_vocab_lookup(v, "psychedelic rock", &id) && id == 185 &&
            jb_label_vocab_lookup(v, "psychedelic rock\xe2\x80\x8e", &id) && id == 7,
          "vocab: exact code-point match (U+200E kept)");
    check(jb_label_vocab_lookup(v, "", &id) && id == 0, "vocab: empty name is a key");
    const char *n0;
    int32_t i0;
    jb_label_vocab_entry(v, 0, &n0, &i0);
    check(jb_label_vocab_count(v) == 6 && strcmp(n0, "Foo") == 0 && i0 == 1 &&
            jb_label_vocab_max_id(v) == 185,
          "vocab: raw entries enumerate in order");
    jb_label_vocab_free(v);

    /* file parsing: CRLF, lone CR, surrounding whitespace, int() forms */
    char path[] = "/tmp/test_labels_ids_XXXXXX";
    int fd      = mkstemp(path);
    if (fd < 0) return;
    const char *text = "unknown;0\r\n  Foo Bar ;12\rbaz; +1_0 \n\xc3\x89t\xc3\xa9;5\nfoo bar;13\n";
    FILE *f          = fdopen(fd, "wb");
    fputs(text, f);
    fclose(f);
    check(jb_label_vocab_load_file(path, &v) == JB_STATUS_OK, "vocab file loads");
    if (v) {
        check(jb_label_vocab_count(v) == 5, "vocab file: 5 lines (%zu)", jb_label_vocab_count(v));
        found = jb_label_vocab_lookup(v, "foo bar", &id);
        check(found && id == 13, "vocab file: 'foo bar'=%d (later line wins)", id);
        found = jb_label_vocab_lookup(v, "baz", &id);
        check(found && id == 10, "vocab file: int(' +1_0 ')=%d", id);
        check(jb_label_vocab_lookup(v, "\xc3\xa9t\xc3\xa9", &id) && id == 5,
              "vocab file: UTF-8 key");
        jb_label_vocab_free(v);
        v = NULL;
    }
    static const char *bad[] = { "a;1\n\nb;2\n", "a;1;2\n",  "a;x\n",
                                 "a;-3\n",       "a;1__0\n", "a;\xff\n" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "wb");
        fputs(bad[i], f);
        fclose(f);
        enum jb_status st = jb_label_vocab_load_file(path, &v);
        check(st == JB_STATUS_ERR_FORMAT && !v,
              "vocab file: malformed #%zu rejected (%s)",
              i,
              jb_last_error());
        jb_label_vocab_free(v);
        v = NULL;
    }
    remove(path);
    check(jb_label_vocab_load_file("/nonexistent/ids.txt", &v) == JB_STATUS_ERR_IO,
          "vocab: missing file");
}

static void unit_vocab_tables(void)
{
    const char *v2 = jb_lyrics_vocab(JB_LABEL_V2), *v3 = jb_lyrics_vocab(JB_LABEL_V3);
    check(jb_lyrics_n_vocab(JB_LABEL_V2) == 80 && jb_lyrics_n_vocab(JB_LABEL_V3) == 79 && v2 && v3,
          "Appendix B: n_vocab 80 / 79");
    struct {
        enum jb_label_version v;
        char c;
        int id;
    } t[] = {
        { JB_LABEL_V2, 'A', 1 },   { JB_LABEL_V2, 'Z', 26 },  { JB_LABEL_V2, 'a', 27 },
        { JB_LABEL_V2, 'z', 52 },  { JB_LABEL_V2, '0', 53 },  { JB_LABEL_V2, '9', 62 },
        { JB_LABEL_V2, '.', 63 },  { JB_LABEL_V2, ',', 64 },  { JB_LABEL_V2, ':', 65 },
        { JB_LABEL_V2, ';', 66 },  { JB_LABEL_V2, '!', 67 },  { JB_LABEL_V2, '?', 68 },
        { JB_LABEL_V2, '-', 69 },  { JB_LABEL_V2, '+', 70 },  { JB_LABEL_V2, '\'', 71 },
        { JB_LABEL_V2, '"', 72 },  { JB_LABEL_V2, '(', 73 },  { JB_LABEL_V2, ')', 74 },
        { JB_LABEL_V2, '[', 75 },  { JB_LABEL_V2, ']', 76 },  { JB_LABEL_V2, ' ', 77 },
        { JB_LABEL_V2, '\t', 78 }, { JB_LABEL_V2, '\n', 79 }, { JB_LABEL_V3, '-', 69 },
        { JB_LABEL_V3, '\'', 70 }, { JB_LABEL_V3, '"', 71 },  { JB_LABEL_V3, '(', 72 },
        { JB_LABEL_V3, ')', 73 },  { JB_LABEL_V3, '[', 74 },  { JB_LABEL_V3, ']', 75 },
        { JB_LABEL_V3, ' ', 76 },  { JB_LABEL_V3, '\t', 77 }, { JB_LABEL_V3, '\n', 78 },
        { JB_LABEL_V3, '+', 0 },   { JB_LABEL_V2, '/', 0 },   { JB_LABEL_V2, '\r', 0 },
        { JB_LABEL_V2, '\0', 0 },  { JB_LABEL_V3, '_', 0 },
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (jb_lyrics_char_id(t[i].v, (unsigned char)t[i].c) != t[i].id) {
            printf("  v%d char 0x%02x: id %d, want %d\n",
                   (int)t[i].v,
                   (unsigned char)t[i].c,
                   jb_lyrics_char_id(t[i].v, (unsigned char)t[i].c),
                   t[i].id);
            bad++;
        }
    check(bad == 0, "Appendix B: character ids (%zu probes)", sizeof t / sizeof t[0]);

    char *c = NULL;
    jb_lyrics_clean(JB_LABEL_V2, "a\\b+c{}/\r_x", 11, &c, NULL);
    check_str("clean v2 ASCII", c, "a\nb+cx");
    free(c);
    c = NULL;
    jb_lyrics_clean(JB_LABEL_V3, "a\\b+c{}/\r_x", 11, &c, NULL);
    check_str("clean v3 ASCII", c, "a\nbcx");
    free(c);
    c = NULL;
    /* transliteration (compiled-in table) */
    const char *in = "Caf\xc3\xa9 \xe2\x80\x9cq\xe2\x80\x9d \xe2\x80\x94 \xc3\xa6\xc3\xb8\xc3\xa5 "
                     "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80";
    jb_lyrics_clean(JB_LABEL_V2, in, strlen(in), &c, NULL);
    check_str("clean v2 non-ASCII", c, "Cafe \"q\" -- aeoa Ni Hao  ");
    free(c);
    c = NULL;
    check(jb_lyrics_clean(JB_LABEL_V2, "x\xed\xa0\x80", 4, &c, NULL) == JB_STATUS_ERR_INVALID_ARG,
          "clean rejects a UTF-8 surrogate");
    check(jb_lyrics_clean(JB_LABEL_V2, "a\0b", 3, &c, NULL) == JB_STATUS_OK && c &&
            strcmp(c, "ab") == 0,
          "clean drops an embedded NUL");
    free(c);
    int32_t *tok = NULL;
    size_t nt    = 0;
    check(jb_lyrics_tokenise(JB_LABEL_V3, "Aa+", 3, &tok, &nt) == JB_STATUS_ERR_INVALID_ARG,
          "tokenise rejects uncleaned text");
    check(jb_lyrics_tokenise(JB_LABEL_V2, "Aa+\n", 4, &tok, &nt) == JB_STATUS_OK && nt == 4 &&
            tok[0] == 1 && tok[1] == 27 && tok[2] == 70 && tok[3] == 79,
          "tokenise v2");
    free(tok);
    printf("     (unidecode table: %s)\n", jb_unidecode_table_version());
}

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static void unit_strict(void)
{
    const char *an[] = {
        "unknown", "various", "", "elvis_presley", "elvis_costello", "elvis_crespo"
    };
    int32_t ai[]              = { 0, 0, 0, 1114, 2, 3 };
    const char *gn[]          = { "unknown", "pop", "rock", "jazz", "blues", "soul", "vocal" };
    int32_t gi[]              = { 0, 14, 8, 9, 2, 6, 16 };
    struct jb_label_vocab *av = NULL, *gv = NULL;
    jb_label_vocab_from_arrays(an, ai, 6, &av);
    jb_label_vocab_from_arrays(gn, gi, 7, &gv);
    if (!av || !gv) {
        check(false, "strict: vocab setup");
        return;
    }
    int32_t id        = -7;
    enum jb_status st = jb_labels_artist_id(av, JB_LABEL_V2, JB_LABEL_STRICT, "Elvis Presly", &id);
    check(st == JB_STATUS_ERR_LABEL && contains(jb_last_error(), "unknown artist 'Elvis Presly'") &&
            contains(jb_last_error(), "close matches: elvis_presley"),
          "strict: unknown artist -> %s",
          jb_last_error());
    st = jb_labels_artist_id(av, JB_LABEL_V2, JB_LABEL_REFERENCE, "Elvis Presly", &id);
    check(st == JB_STATUS_OK && id == 0, "reference mode: unknown artist -> id %d", id);
    st = jb_labels_artist_id(av, JB_LABEL_V2, JB_LABEL_STRICT, "ELVIS  presley!", &id);
    check(st == JB_STATUS_OK && id == 1114, "strict: v2 artist normalised -> %d", id);
    st = jb_labels_artist_id(av, JB_LABEL_V2, JB_LABEL_STRICT, "?!", &id);
    check(st == JB_STATUS_ERR_LABEL, "strict: artist empty after norm -> %s", jb_last_error());
    st = jb_labels_artist_id(av, JB_LABEL_V2, JB_LABEL_REFERENCE, "?!", &id);
    check(st == JB_STATUS_OK && id == 0, "reference mode: artist '?!' -> '' -> %d", id);
    st = jb_labels_artist_id(av, JB_LABEL_V2, JB_LABEL_STRICT, "Zzzzzzzzzzzzzzzzzzzzzz", &id);
    check(st == JB_STATUS_ERR_LABEL && contains(jb_last_error(), "no close matches"),
          "strict: no close matches -> %s",
          jb_last_error());

    int32_t g[5];
    st = jb_labels_genre_ids(gv, JB_LABEL_V2, JB_LABEL_STRICT, "Vocal Jazz/Soul", 5, g);
    check(st == JB_STATUS_OK && g[0] == 16 && g[1] == 9 && g[2] == 6 && g[3] == -1 && g[4] == -1,
          "strict: v2 bag of genre words");
    st = jb_labels_genre_ids(gv, JB_LABEL_V2, JB_LABEL_STRICT, "Synthwave Pop", 5, g);
    check(st == JB_STATUS_ERR_LABEL && contains(jb_last_error(), "genre word 'synthwave'"),
          "strict: unknown genre word -> %s",
          jb_last_error());
    st = jb_labels_genre_ids(gv, JB_LABEL_V2, JB_LABEL_REFERENCE, "Synthwave Pop", 5, g);
    check(st == JB_STATUS_OK && g[0] == 0 && g[1] == 14 && g[2] == -1,
          "reference mode: [0, 14, -1..]");
    st = jb_labels_genre_ids(gv, JB_LABEL_V2, JB_LABEL_STRICT, " - ", 5, g);
    check(st == JB_STATUS_ERR_LABEL, "strict: empty genre -> %s", jb_last_error());
    st = jb_labels_genre_ids(gv, JB_LABEL_V2, JB_LABEL_REFERENCE, "", 5, g);
    check(st == JB_STATUS_OK && g[0] == 0 && g[1] == -1,
          "reference mode: empty genre -> [0, -1..]");
    st = jb_labels_genre_ids(
      gv, JB_LABEL_V2, JB_LABEL_REFERENCE, "pop rock jazz blues soul vocal", 5, g);
    check(st == JB_STATUS_ERR_LABEL && contains(jb_last_error(), "6 words"),
          "both modes: too many genre words -> %s",
          jb_last_error());
    st = jb_labels_genre_ids(gv, JB_LABEL_V3, JB_LABEL_STRICT, "Pop", 1, g);
    check(st == JB_STATUS_OK && g[0] == 14, "v3 genre exact lowercase");
    st = jb_labels_genre_ids(gv, JB_LABEL_V3, JB_LABEL_STRICT, "Pop Rock", 1, g);
    check(st == JB_STATUS_ERR_LABEL && contains(jb_last_error(), "close matches: rock"),
          "strict: v3 genre is one key -> %s",
          jb_last_error());
    jb_label_vocab_free(av);
    jb_label_vocab_free(gv);
}

static void unit_window_and_timing(void)
{
    int32_t full[10];
    for (int i = 0; i < 10; i++)
        full[i] = 100 + i;
    int32_t tok[16];
    int64_t idx[16];
    enum jb_status st =
      jb_labels_lyric_window(full, 10, 16, 1000, 0, 100, JB_LABEL_ARITH_F32, tok, idx);
    check(st == JB_STATUS_OK && tok[0] == 0 && idx[5] == -1 && tok[6] == 100 && idx[6] == 0 &&
            tok[15] == 109,
          "lyric window: short lyrics left-padded");
    st = jb_labels_lyric_window(full, 10, 4, 1000, 990, 100, JB_LABEL_ARITH_F32, tok, idx);
    check(st == JB_STATUS_OK && idx[0] == 6 && idx[3] == 9, "lyric window: clamped at the end");
    st = jb_labels_lyric_window(full, 10, 4, 1000, 0, 100, JB_LABEL_ARITH_F64, tok, idx);
    check(st == JB_STATUS_OK && idx[0] == 0, "lyric window: clamped at the start");
    st = jb_labels_lyric_window(full, 10, 4, 1000, 1000, 100, JB_LABEL_ARITH_F64, tok, idx);
    check(st == JB_STATUS_ERR_INVALID_ARG, "lyric window: offset >= total rejected");

    /* spec 4.2 worked example: prior_5b_lyrics, 180 s, offset 0, one 8192-token window */
    static int32_t ka[8192], kr[8192];
    for (unsigned fl = 0; fl <= JB_TIMING_TRUE_DIV; fl++) {
        int32_t kt = -1;
        st         = jb_labels_timing_bins(
          7938000, 0, 1048576, 8192, 128, 23.8, 600.0, 44100, fl, &kt, ka, kr);
        check(st == JB_STATUS_OK && kt == 34 && ka[0] == 0 && ka[8191] == 5 && kr[0] == 0 &&
                kr[8191] == 16,
              "timing bins worked example (%s): k_tot %d, k_abs %d..%d, k_rel %d..%d",
              fl ? "true div" : "reciprocal",
              kt,
              ka[0],
              ka[8191],
              kr[0],
              kr[8191]);
    }
    int32_t kt;
    st = jb_labels_timing_bins(1000000, 0, 1048576, 8192, 128, 23.8, 600.0, 44100, 0, &kt, ka, kr);
    check(
      st == JB_STATUS_ERR_INVALID_ARG, "timing: total below min_duration -> %s", jb_last_error());
    st = jb_labels_timing_bins(26460000, 0, 1048576, 8192, 128, 23.8, 600.0, 44100, 0, &kt, ka, kr);
    check(st == JB_STATUS_ERR_INVALID_ARG, "timing: total = max_duration rejected");
    st = jb_labels_timing_bins(
      7938000, 7938000, 1048576, 8192, 128, 23.8, 600.0, 44100, 0, &kt, ka, kr);
    check(st == JB_STATUS_ERR_INVALID_ARG, "timing: offset = total rejected");
    st = jb_labels_timing_bins(
      7938000, 26000000, 1048576, 8192, 128, 23.8, 600.0, 44100, 0, &kt, ka, kr);
    check(st == JB_STATUS_ERR_INVALID_ARG, "timing: window end past max_duration rejected");
    /* end past the song is clamped for the relative bins, not an error */
    st = jb_labels_timing_bins(
      7938000, 7900000, 1048576, 8192, 128, 23.8, 600.0, 44100, 0, &kt, ka, kr);
    check(st == JB_STATUS_OK && kr[8191] == 127,
          "timing: relative end clamped to 1 (k_rel %d)",
          kr[8191]);
}

/* ---------------------------------------------------------------------------------------- */
/* fixtures                                                                                  */

struct tables {
    struct jb_label_vocab *artists, *genres;
};

static int raw_to_tokens_of(const char *setup)
{
    if (strstr(setup, "upsampler_level_0")) return 8;
    if (strstr(setup, "upsampler_level_1")) return 32;
    return 128; /* prior_5b, prior_5b_lyrics, prior_1b_lyrics */
}

static bool load_tables(const char *ids_dir, const char *ver, struct tables *t)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s_artist_ids.txt", ids_dir, ver);
    bool ok = jb_label_vocab_load_file(p, &t->artists) == JB_STATUS_OK;
    snprintf(p, sizeof p, "%s/%s_genre_ids.txt", ids_dir, ver);
    ok = ok && jb_label_vocab_load_file(p, &t->genres) == JB_STATUS_OK;
    check(ok,
          "load %s id tables (%zu artists, %zu genres)",
          ver,
          jb_label_vocab_count(t->artists),
          jb_label_vocab_count(t->genres));
    return ok;
}

static bool npy(const char *dir, const char *setup, int meta, const char *suffix, struct i64arr *a)
{
    char p[1024];
    if (meta >= 0)
        snprintf(p, sizeof p, "%s/labels/%s_meta%d_%s.npy", dir, setup, meta, suffix);
    else
        snprintf(p, sizeof p, "%s/labels/%s_%s.npy", dir, setup, suffix);
    bool ok = read_npy_i64(p, a);
    if (!ok) check(false, "read %s", p);
    return ok;
}

static int64_t jint(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? (int64_t)x->valuedouble : -999999;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* Everything a case needs from its meta: ids, cleaned text, tokens. */
struct prepared {
    int32_t artist, genres[JB_LABEL_MAX_GENRES];
    char *cleaned;
    int32_t *full;
    size_t n_full;
};

static bool prepare(const struct tables *t,
                    enum jb_label_version ver,
                    int n_genres,
                    const cJSON *meta,
                    struct prepared *p)
{
    memset(p, 0, sizeof(*p));
    const char *lyr = jstr(meta, "lyrics");
    if (!lyr) lyr = "";
    return jb_labels_artist_id(
             t->artists, ver, JB_LABEL_REFERENCE, jstr(meta, "artist"), &p->artist) ==
             JB_STATUS_OK &&
           jb_labels_genre_ids(
             t->genres, ver, JB_LABEL_REFERENCE, jstr(meta, "genre"), n_genres, p->genres) ==
             JB_STATUS_OK &&
           jb_lyrics_encode(ver, lyr, strlen(lyr), &p->full, &p->n_full, &p->cleaned) ==
             JB_STATUS_OK;
}

static void run_case(const char *dir, const cJSON *c, const cJSON *metas, struct tables tabs[2])
{
    const char *setup         = jstr(c, "setup");
    int mi                    = (int)jint(c, "meta_index");
    bool v3                   = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "v3"));
    int G                     = (int)jint(c, "max_bow_genre_size");
    int K                     = (int)jint(c, "n_tokens");
    int64_t sl                = jint(c, "sample_length");
    const cJSON *meta         = cJSON_GetArrayItem(metas, mi);
    enum jb_label_version ver = v3 ? JB_LABEL_V3 : JB_LABEL_V2;
    const struct tables *t    = &tabs[v3];
    if (!setup || !meta || G < 1 || G > JB_LABEL_MAX_GENRES || K < 0) {
        check(false, "case malformed");
        return;
    }
    char name[128];
    snprintf(name, sizeof name, "%s meta%d", setup, mi);
    int64_t total = jint(meta, "total_length"), offset = jint(meta, "offset");

    struct prepared p;
    if (!prepare(t, ver, G, meta, &p)) {
        check(false, "%s: prepare: %s", name, jb_last_error());
        goto out;
    }
    /* ids */
    const cJSON *jg = cJSON_GetObjectItemCaseSensitive(c, "genre_ids");
    bool gok        = cJSON_GetArraySize(jg) == G;
    for (int g = 0; gok && g < G; g++)
        gok = p.genres[g] == (int32_t)cJSON_GetArrayItem(jg, g)->valuedouble;
    check(p.artist == jint(c, "artist_id") && gok,
          "%s: artist_id %d, genre_ids [%d%s]",
          name,
          p.artist,
          p.genres[0],
          G > 1 ? ", .." : "");
    /* text */
    const char *want_clean = jstr(c, "cleaned_lyrics");
    check(want_clean && strcmp(p.cleaned, want_clean) == 0,
          "%s: cleaned lyrics (%zu chars)",
          name,
          strlen(p.cleaned));
    struct i64arr ft;
    if (npy(dir, setup, mi, "full_tokens", &ft)) {
        check((size_t)ft.n == p.n_full && eq_i64_i32(ft.v, p.full, p.n_full) &&
                (int64_t)p.n_full == jint(c, "n_full_tokens"),
              "%s: full_tokens (%zu)",
              name,
              p.n_full);
        free(ft.v);
    }
    /* get_label: float64 window */
    size_t ylen  = 4 + (size_t)G + (size_t)K;
    int64_t *y   = calloc(ylen, sizeof(int64_t));
    int64_t *ind = calloc(K ? (size_t)K : 1, sizeof(int64_t));
    struct i64arr ya;
    if (npy(dir, setup, mi, "y", &ya)) {
        enum jb_status st = jb_labels_make_y(total,
                                             offset,
                                             sl,
                                             p.artist,
                                             p.genres,
                                             G,
                                             p.full,
                                             p.n_full,
                                             K,
                                             JB_LABEL_ARITH_F64,
                                             y,
                                             ind);
        check(st == JB_STATUS_OK && (size_t)ya.n == ylen && memcmp(ya.v, y, ylen * 8) == 0,
              "%s: y (get_label, float64 window)",
              name);
        free(ya.v);
        struct i64arr ia;
        if (K > 0 && npy(dir, setup, mi, "indices", &ia)) {
            check(
              ia.n == K && memcmp(ia.v, ind, (size_t)K * 8) == 0, "%s: indices (get_label)", name);
            free(ia.v);
        }
    }
    /* get_y for every start: float32 window */
    const cJSON *starts = cJSON_GetObjectItemCaseSensitive(c, "get_y_starts");
    struct i64arr gy, gi;
    bool have_gi = false;
    if (npy(dir, setup, mi, "get_y", &gy)) {
        if (K > 0) have_gi = npy(dir, setup, mi, "get_y_indices", &gi);
        int ns = cJSON_GetArraySize(starts);
        check(gy.n_dims == 2 && gy.shape[0] == ns && (size_t)gy.shape[1] == ylen,
              "%s: get_y shape %lldx%lld",
              name,
              (long long)gy.shape[0],
              (long long)gy.shape[1]);
        for (int s = 0; s < ns && gy.shape[0] == ns && (size_t)gy.shape[1] == ylen; s++) {
            int64_t start     = (int64_t)cJSON_GetArrayItem(starts, s)->valuedouble;
            int64_t off       = offset + start * raw_to_tokens_of(setup);
            enum jb_status st = jb_labels_make_y(total,
                                                 off,
                                                 sl,
                                                 p.artist,
                                                 p.genres,
                                                 G,
                                                 p.full,
                                                 p.n_full,
                                                 K,
                                                 JB_LABEL_ARITH_F32,
                                                 y,
                                                 ind);
            check(st == JB_STATUS_OK && memcmp(gy.v + (size_t)s * ylen, y, ylen * 8) == 0,
                  "%s: get_y start %lld",
                  name,
                  (long long)start);
            if (have_gi)
                check(gi.n == (int64_t)ns * K &&
                        memcmp(gi.v + (size_t)s * (size_t)K, ind, (size_t)K * 8) == 0,
                      "%s: get_y indices start %lld",
                      name,
                      (long long)start);
        }
        free(gy.v);
        if (have_gi) free(gi.v);
    }
    free(y);
    free(ind);
out:
    free(p.cleaned);
    free(p.full);
}

static void run_trap(const char *dir, const cJSON *trap, const cJSON *cases, struct tables tabs[2])
{
    const char *setup = jstr(trap, "setup");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(trap, "meta");
    const cJSON *c    = NULL, *it;
    cJSON_ArrayForEach(it, cases) if (setup && jstr(it, "setup") &&
                                      strcmp(jstr(it, "setup"), setup) == 0) c = it;
    if (!c || !meta) {
        check(false, "trap %s: no matching case", setup ? setup : "?");
        return;
    }
    bool v3                   = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "v3"));
    enum jb_label_version ver = v3 ? JB_LABEL_V3 : JB_LABEL_V2;
    int G = (int)jint(c, "max_bow_genre_size"), K = (int)jint(c, "n_tokens");
    int64_t sl    = jint(c, "sample_length");
    int64_t total = jint(meta, "total_length"), offset = jint(meta, "offset");
    struct prepared p;
    if (K <= 0 || !prepare(&tabs[v3], ver, G, meta, &p)) {
        check(false, "trap %s: prepare: %s", setup, jb_last_error());
        return;
    }
    check((int64_t)p.n_full == jint(trap, "n_full_tokens"),
          "trap %s: %zu full tokens",
          setup,
          p.n_full);
    size_t ylen  = 4 + (size_t)G + (size_t)K;
    int64_t *y   = calloc(ylen, sizeof(int64_t));
    int64_t *ind = calloc((size_t)K, sizeof(int64_t));
    struct {
        const char *suffix, *mid_key;
        enum jb_label_arith arith;
    } modes[2] = { { "f32trap_y_get_label", "midpoint_float64", JB_LABEL_ARITH_F64 },
                   { "f32trap_y_get_y", "midpoint_float32", JB_LABEL_ARITH_F32 } };
    for (int m = 0; m < 2; m++) {
        struct i64arr a;
        if (!npy(dir, setup, -1, modes[m].suffix, &a)) continue;
        enum jb_status st = jb_labels_make_y(
          total, offset, sl, p.artist, p.genres, G, p.full, p.n_full, K, modes[m].arith, y, ind);
        int64_t mid = ind[0] + K / 2;
        check(st == JB_STATUS_OK && (size_t)a.n == ylen && memcmp(a.v, y, ylen * 8) == 0 &&
                mid == jint(trap, modes[m].mid_key),
              "trap %s: %s (midpoint %lld)",
              setup,
              modes[m].suffix,
              (long long)mid);
        free(a.v);
    }
    free(y);
    free(ind);
    free(p.cleaned);
    free(p.full);
}

static void run_fixtures(const char *dir, const char *ids_dir)
{
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    char *text  = tc_read_file(mpath, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *labels =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "models"), "labels");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(labels, "cases");
    const cJSON *metas = cJSON_GetObjectItemCaseSensitive(labels, "metas");
    const cJSON *traps = cJSON_GetObjectItemCaseSensitive(labels, "float32_midpoint_traps");
    if (!cJSON_IsArray(cases) || !cJSON_IsArray(metas)) {
        check(false, "manifest %s: models.labels.cases/metas", mpath);
        cJSON_Delete(root);
        return;
    }
    struct tables tabs[2] = { { 0 } };
    if (load_tables(ids_dir, "v2", &tabs[0]) && load_tables(ids_dir, "v3", &tabs[1])) {
        /* spec 7.2 examples and the strict-mode message on the real tables */
        int32_t id = -1;
        jb_labels_artist_id(tabs[1].artists, JB_LABEL_V3, JB_LABEL_STRICT, "speaker", &id);
        check(id == 7896, "v3 'speaker' -> %d (later line wins)", id);
        enum jb_status st =
          jb_labels_artist_id(tabs[0].artists, JB_LABEL_V2, JB_LABEL_STRICT, "Elvis Presly", &id);
        check(st == JB_STATUS_ERR_LABEL && contains(jb_last_error(), "elvis_presley"),
              "strict v2: %s",
              jb_last_error());
        st =
          jb_labels_artist_id(tabs[1].artists, JB_LABEL_V3, JB_LABEL_STRICT, "Elvis Presly", &id);
        check(st == JB_STATUS_ERR_LABEL && contains(jb_last_error(), "elvis presley"),
              "strict v3: %s",
              jb_last_error());
        st =
          jb_labels_artist_id(tabs[0].artists, JB_LABEL_V2, JB_LABEL_STRICT, "Nobody Atall", &id);
        check(st == JB_STATUS_ERR_LABEL, "strict v2: %s", jb_last_error());
        int32_t g[5];
        st = jb_labels_genre_ids(
          tabs[0].genres, JB_LABEL_V2, JB_LABEL_STRICT, "Synthwave Chiptune", 5, g);
        check(st == JB_STATUS_ERR_LABEL, "strict v2: %s", jb_last_error());
        st = jb_labels_genre_ids(
          tabs[1].genres, JB_LABEL_V3, JB_LABEL_STRICT, "Vocal Jazz Swing Soul Pop", 1, g);
        check(st == JB_STATUS_ERR_LABEL, "strict v3: %s", jb_last_error());

        const cJSON *c;
        cJSON_ArrayForEach(c, cases) run_case(dir, c, metas, tabs);
        const cJSON *trap;
        cJSON_ArrayForEach(trap, traps) run_trap(dir, trap, cases, tabs);
        check(cJSON_GetArraySize(traps) == 2, "both float32 midpoint traps present");
    }
    for (int i = 0; i < 2; i++) {
        jb_label_vocab_free(tabs[i].artists);
        jb_label_vocab_free(tabs[i].genres);
    }
    cJSON_Delete(root);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : NULL, *ids = argc > 2 ? argv[2] : NULL;

    unit_norm_lower();
    unit_vocab();
    unit_vocab_tables();
    unit_strict();
    unit_window_and_timing();

    if (is_dir(dir) && is_dir(ids))
        run_fixtures(dir, ids);
    else
        printf("SKIP: ../shared not found\n");

    return tc_summary();
}
