/*
 * tests/unit/test_npy.c - .npy reader/writer tests.
 *
 * Round trips for every supported dtype and several shapes, the converters, handcrafted bad
 * headers (one defect each), and - when a fixture directory is given - real files written by
 * NumPy: a float32 and an int64 array checked value by value against their raw bytes, then
 * every .npy file under the directory parsed.
 *
 * Usage: test_npy [FIXTURE_DIR]   (e.g. /work/shared/fixtures/jukebox-ref)
 */
#include "core/fp16.h"
#include "format/npy.h"
#include "test_common.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* tests/common's reporting and file reading under this file's names */
#define CHECK TC_REQUIRE
#define report tc_report
#define run_case tc_run_case
#define read_all(path, size) ((uint8_t *)tc_read_file((path), (size)))

static char tmp_dir[64];

/* ------------------------------------------------------------------------------------------ */
/* round trips                                                                                 */

static size_t type_size(enum jb_npy_type t)
{
    switch (t) {
    case JB_NPY_F32:
    case JB_NPY_I32:
        return 4;
    case JB_NPY_F64:
    case JB_NPY_I64:
        return 8;
    case JB_NPY_F16:
        return 2;
    case JB_NPY_U8:
    case JB_NPY_BOOL:
        return 1;
    }
    return 0;
}

/* Writes, checks the header layout numpy expects, reads back and compares. */
static bool round_trip(enum jb_npy_type type, int n_dims, const int64_t *shape, const char *descr)
{
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++)
        n *= shape[d];
    size_t nbytes = (size_t)n * type_size(type);
    uint8_t *data = malloc(nbytes ? nbytes : 1);
    CHECK(data);
    for (size_t i = 0; i < nbytes; i++)
        data[i] = type == JB_NPY_BOOL ? (uint8_t)(i % 3 == 0) : (uint8_t)(i * 37 + 11);
    if (type == JB_NPY_F16) /* keep the values finite so that get_f is comparable */
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)data)[i] = jb_f32_to_f16((float)i - 3.5f);
    if (type == JB_NPY_F32)
        for (int64_t i = 0; i < n; i++)
            ((float *)data)[i] = (float)i * 0.5f - 1.0f;
    if (type == JB_NPY_F64)
        for (int64_t i = 0; i < n; i++)
            ((double *)data)[i] = (double)i * 0.1;

    char path[128];
    snprintf(path, sizeof path, "%s/rt.npy", tmp_dir);
    enum jb_status st = jb_npy_write(path, type, n_dims, shape, data);
    if (st != JB_STATUS_OK) free(data);
    CHECK(st == JB_STATUS_OK);

    size_t size;
    uint8_t *file = read_all(path, &size);
    bool ok       = file && size >= nbytes + 64;
    if (ok) {
        size_t off = size - nbytes;
        ok         = memcmp(file, "\x93NUMPY\x01\x00", 8) == 0 && off % 64 == 0 &&
             (size_t)(file[8] | file[9] << 8) + 10 == off && file[off - 1] == '\n' &&
             memmem(file, off, descr, strlen(descr)) != NULL;
    }
    free(file);
    if (!ok) free(data);
    CHECK(ok);

    struct jb_npy a;
    st = jb_npy_read(path, &a);
    if (st != JB_STATUS_OK) free(data);
    CHECK(st == JB_STATUS_OK);
    ok = a.type == type && a.n_dims == n_dims && a.n == n &&
         (nbytes == 0 || memcmp(a.data, data, nbytes) == 0);
    for (int d = 0; ok && d < n_dims; d++)
        ok = a.shape[d] == shape[d];
    jb_npy_free(&a);
    free(data);
    remove(path);
    CHECK(ok);
    return true;
}

static bool test_rt_f32(void)
{
    return round_trip(JB_NPY_F32, 2, (const int64_t[]){ 3, 5 }, "'<f4'");
}
static bool test_rt_f64(void)
{
    return round_trip(JB_NPY_F64, 1, (const int64_t[]){ 7 }, "'<f8'");
}
static bool test_rt_i32(void)
{
    return round_trip(JB_NPY_I32, 3, (const int64_t[]){ 2, 3, 4 }, "'<i4'");
}
static bool test_rt_i64(void)
{
    return round_trip(JB_NPY_I64, 2, (const int64_t[]){ 1, 9 }, "(1, 9)");
}
static bool test_rt_f16(void)
{
    return round_trip(JB_NPY_F16, 1, (const int64_t[]){ 5 }, "'<f2'");
}
static bool test_rt_u8(void)
{
    return round_trip(JB_NPY_U8, 1, (const int64_t[]){ 300 }, "'|u1'");
}
static bool test_rt_bool(void)
{
    return round_trip(JB_NPY_BOOL, 2, (const int64_t[]){ 4, 4 }, "'|b1'");
}
static bool test_rt_scalar(void)
{
    return round_trip(JB_NPY_F32, 0, NULL, "'shape': ()");
}
static bool test_rt_empty(void)
{
    return round_trip(JB_NPY_I64, 2, (const int64_t[]){ 0, 3 }, "(0, 3)");
}
static bool test_rt_1d_tuple(void)
{
    return round_trip(JB_NPY_I32, 1, (const int64_t[]){ 6 }, "(6,)");
}
static bool test_rt_8d(void)
{
    return round_trip(
      JB_NPY_F32, 8, (const int64_t[]){ 1, 2, 1, 2, 1, 2, 1, 3 }, "(1, 2, 1, 2, 1, 2, 1, 3)");
}

static bool test_write_errors(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/bad.npy", tmp_dir);
    CHECK(jb_npy_write(path, JB_NPY_F32, 9, (const int64_t[]){ 1, 1, 1, 1, 1, 1, 1, 1, 1 }, "") ==
          JB_STATUS_ERR_INVALID_ARG);
    printf("     message: %s\n", jb_last_error());
    CHECK(jb_npy_write(path, JB_NPY_F32, 1, (const int64_t[]){ -1 }, "") ==
          JB_STATUS_ERR_INVALID_ARG);
    printf("     message: %s\n", jb_last_error());
    CHECK(jb_npy_write(path, JB_NPY_BOOL, 1, (const int64_t[]){ 2 }, (const uint8_t[]){ 1, 2 }) ==
          JB_STATUS_ERR_INVALID_ARG);
    printf("     message: %s\n", jb_last_error());
    CHECK(
      jb_npy_write(
        "/nonexistent-dir/a.npy", JB_NPY_F32, 1, (const int64_t[]){ 1 }, (const float[]){ 1 }) ==
      JB_STATUS_ERR_IO);
    printf("     message: %s\n", jb_last_error());
    struct stat st;
    CHECK(stat(path, &st) != 0);
    return true;
}

static bool test_convert(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/conv.npy", tmp_dir);
    struct jb_npy a;

    /* f16 -> f32 */
    uint16_t h[3] = { jb_f32_to_f16(1.5f), jb_f32_to_f16(-2.0f), jb_f32_to_f16(0.25f) };
    CHECK(jb_npy_write(path, JB_NPY_F16, 1, (const int64_t[]){ 3 }, h) == JB_STATUS_OK);
    CHECK(jb_npy_read(path, &a) == JB_STATUS_OK);
    float *f = jb_npy_to_f32(&a);
    bool ok  = f && f[0] == 1.5f && f[1] == -2.0f && f[2] == 0.25f && jb_npy_get_i(&a, 0) == 1 &&
              jb_npy_get_i(&a, 1) == -2;
    free(f);
    int32_t *i32 = jb_npy_to_i32(&a); /* 1.5 is not an integer */
    ok           = ok && i32 == NULL;
    printf("     message: %s\n", jb_last_error());
    jb_npy_free(&a);
    CHECK(ok);

    /* i64 -> i32 (fits), then one that does not */
    int64_t v[3] = { 5, -7, 2147483647 };
    CHECK(jb_npy_write(path, JB_NPY_I64, 1, (const int64_t[]){ 3 }, v) == JB_STATUS_OK);
    CHECK(jb_npy_read(path, &a) == JB_STATUS_OK);
    i32 = jb_npy_to_i32(&a);
    ok  = i32 && i32[0] == 5 && i32[1] == -7 && i32[2] == 2147483647 && jb_npy_get_f(&a, 1) == -7.0;
    free(i32);
    jb_npy_free(&a);
    CHECK(ok);
    v[2] = 2147483648LL;
    CHECK(jb_npy_write(path, JB_NPY_I64, 1, (const int64_t[]){ 3 }, v) == JB_STATUS_OK);
    CHECK(jb_npy_read(path, &a) == JB_STATUS_OK);
    i32 = jb_npy_to_i32(&a);
    printf("     message: %s\n", jb_last_error());
    ok = i32 == NULL && strstr(jb_last_error(), "2147483648");
    jb_npy_free(&a);
    CHECK(ok);

    /* f64 -> int saturates, NaN -> 0; integral floats convert to i32 */
    double d[4] = { 1e300, -1e300, NAN, 3.0 };
    CHECK(jb_npy_write(path, JB_NPY_F64, 1, (const int64_t[]){ 4 }, d) == JB_STATUS_OK);
    CHECK(jb_npy_read(path, &a) == JB_STATUS_OK);
    ok = jb_npy_get_i(&a, 0) == INT64_MAX && jb_npy_get_i(&a, 1) == INT64_MIN &&
         jb_npy_get_i(&a, 2) == 0 && jb_npy_get_i(&a, 3) == 3;
    jb_npy_free(&a);
    CHECK(ok);
    remove(path);
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* handcrafted headers                                                                         */

struct buf {
    uint8_t p[1024];
    size_t n;
};

/* magic, version major.minor, header length (u16 for v1, else u32), header, data bytes */
static void make(struct buf *b, int major, int minor, const char *header, size_t data_bytes)
{
    size_t hl = strlen(header);
    memcpy(b->p, "\x93NUMPY", 6);
    b->p[6] = (uint8_t)major;
    b->p[7] = (uint8_t)minor;
    size_t pre;
    if (major == 1) {
        b->p[8] = (uint8_t)hl;
        b->p[9] = (uint8_t)(hl >> 8);
        pre     = 10;
    } else {
        uint32_t v = (uint32_t)hl;
        memcpy(b->p + 8, &v, 4);
        pre = 12;
    }
    memcpy(b->p + pre, header, hl);
    b->n = pre + hl;
    for (size_t i = 0; i < data_bytes; i++)
        b->p[b->n++] = (uint8_t)(i % 2);
}

struct hdr_case {
    const char *name;
    int major, minor;
    const char *header;
    size_t data_bytes;
    const char *expect; /* NULL: valid */
};

#define H(d, f, s) "{'descr': '" d "', 'fortran_order': " f ", 'shape': " s ", }\n"

static const struct hdr_case hdr_cases[] = {
    { "v1 valid", 1, 0, H("<f4", "False", "(2, 3)"), 24, NULL },
    { "v2 valid", 2, 0, H("<f4", "False", "(2, 3)"), 24, NULL },
    { "v3 valid", 3, 0, H("<i8", "False", "(3,)"), 24, NULL },
    { "double quotes, no trailing comma, keys reordered",
      1,
      0,
      "{\"shape\": (4,), \"fortran_order\": False, \"descr\": \"|u1\"}",
      4,
      NULL },
    { "python 2 long suffix", 1, 0, H("<i4", "False", "(2L, 1L)"), 8, NULL },
    { "native byte order '='", 1, 0, H("=f8", "False", "(1,)"), 8, NULL },
    { "bool 0/1", 1, 0, H("|b1", "False", "(4,)"), 4, NULL },
    { "version 4.0", 4, 0, H("<f4", "False", "(1,)"), 4, "unsupported format version" },
    { "version 1.1", 1, 1, H("<f4", "False", "(1,)"), 4, "unsupported format version" },
    { "fortran order", 1, 0, H("<f4", "True", "(2, 2)"), 16, "fortran_order True" },
    { "big-endian", 1, 0, H(">f4", "False", "(1,)"), 4, "big-endian" },
    { "'|' on a 4-byte type", 1, 0, H("|f4", "False", "(1,)"), 4, "byte order" },
    { "complex dtype", 1, 0, H("<c8", "False", "(1,)"), 8, "unsupported dtype" },
    { "unicode dtype", 1, 0, H("<U10", "False", "(1,)"), 40, "unsupported dtype" },
    { "structured dtype",
      1,
      0,
      "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
      4,
      "structured" },
    { "one byte too many", 1, 0, H("<f4", "False", "(2,)"), 9, "data size mismatch" },
    { "one byte missing", 1, 0, H("<f4", "False", "(2,)"), 7, "data size mismatch" },
    { "9 dimensions",
      1,
      0,
      H("<f4", "False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"),
      4,
      "too many dimensions" },
    { "dimension overflows int64",
      1,
      0,
      H("<f4", "False", "(99999999999999999999,)"),
      4,
      "overflows" },
    { "element count overflows",
      1,
      0,
      H("<f4", "False", "(4294967296, 4294967296)"),
      4,
      "overflows" },
    { "byte size overflows", 1, 0, H("<f8", "False", "(4611686018427387904,)"), 8, "overflows" },
    { "negative dimension", 1, 0, H("<f4", "False", "(-1,)"), 4, "negative" },
    { "shape not a tuple", 1, 0, H("<f4", "False", "(3)"), 12, "not a tuple" },
    { "missing key", 1, 0, "{'descr': '<f4', 'shape': (1,), }", 4, "lacks 'fortran_order'" },
    { "duplicate key",
      1,
      0,
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
      4,
      "duplicate header key" },
    { "extra key",
      1,
      0,
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1, }",
      4,
      "unexpected header key" },
    { "junk after dict",
      1,
      0,
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x",
      4,
      "after the header dict" },
    { "unterminated dict", 1, 0, "{'descr': '<f4', 'fortran_order': False", 0, "expected ','" },
    { "not a dict", 1, 0, "['<f4']", 0, "not a dict" },
    { "bool value 2", 1, 0, H("|b1", "False", "(1,)"), 0, NULL }, /* data patched below */
    { "non-ASCII header",
      1,
      0,
      "{'descr': '<f4\xc3\xa9', 'fortran_order': False, 'shape': (1,), }",
      4,
      "non-ASCII" },
};
#define N_HDR_CASES (sizeof hdr_cases / sizeof hdr_cases[0])

static void run_hdr_cases(void)
{
    for (size_t i = 0; i < N_HDR_CASES; i++) {
        const struct hdr_case *c = &hdr_cases[i];
        struct buf b;
        make(&b, c->major, c->minor, c->header, c->data_bytes);
        const char *expect = c->expect;
        if (strcmp(c->name, "bool value 2") == 0) {
            b.p[b.n++] = 2;
            expect     = "expected 0 or 1";
        }
        uint8_t *copy = malloc(b.n); /* exact size, so ASan sees over-reads */
        if (!copy) abort();
        memcpy(copy, b.p, b.n);
        struct jb_npy a;
        jb_clear_error();
        enum jb_status st = jb_npy_read_memory(copy, b.n, &a);
        char name[128], detail[700];
        snprintf(name, sizeof name, "header %s", c->name);
        bool ok;
        if (!expect) {
            ok = st == JB_STATUS_OK && a.data != NULL;
            snprintf(detail, sizeof detail, "%s", ok ? "read" : jb_last_error());
        } else {
            ok = st == JB_STATUS_ERR_FORMAT && a.data == NULL && strstr(jb_last_error(), expect);
            snprintf(detail,
                     sizeof detail,
                     "%s",
                     st == JB_STATUS_OK ? "unexpectedly read" : jb_last_error());
        }
        report(name, ok, detail);
        jb_npy_free(&a);
        free(copy);
    }
}

/* Every truncation of a valid file must fail, and so must the empty file. */
static bool test_truncation(void)
{
    struct buf b;
    make(&b, 1, 0, H("<f4", "False", "(2, 3)"), 24);
    int opened = 0;
    for (size_t len = 0; len <= b.n; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        if (!copy) abort();
        memcpy(copy, b.p, len);
        struct jb_npy a;
        if (jb_npy_read_memory(copy, len, &a) == JB_STATUS_OK) {
            opened++;
            CHECK(len == b.n);
        }
        jb_npy_free(&a);
        free(copy);
    }
    printf("     %zu prefixes: %d read (the whole file)\n", b.n + 1, opened);
    CHECK(opened == 1);
    return true;
}

static bool test_read_missing(void)
{
    struct jb_npy a;
    CHECK(jb_npy_read("/nonexistent-dir/x.npy", &a) == JB_STATUS_ERR_IO && a.data == NULL);
    printf("     message: %s\n", jb_last_error());
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* fixtures written by NumPy                                                                   */

static const char *fixture_dir;

/* Reads path both ways: with jb_npy_read and as raw bytes, whose header we locate here. */
static bool fixture_check(const char *rel, enum jb_npy_type type, int n_dims, const int64_t *shape)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, rel);
    struct jb_npy a;
    CHECK(jb_npy_read(path, &a) == JB_STATUS_OK);
    bool ok = a.type == type && a.n_dims == n_dims;
    for (int d = 0; ok && d < n_dims; d++)
        ok = a.shape[d] == shape[d];
    size_t size;
    uint8_t *raw = read_all(path, &size);
    ok           = ok && raw && size > 10;
    if (ok) {
        size_t off = 10 + (size_t)(raw[8] | raw[9] << 8);
        ok         = raw[6] == 1 && size - off == (size_t)a.n * (type == JB_NPY_F32 ? 4 : 8) &&
             memcmp(raw + off, a.data, size - off) == 0;
    }
    free(raw);
    if (ok && type == JB_NPY_F32) { /* a codebook: finite values, not all zero */
        float *f     = jb_npy_to_f32(&a);
        bool nonzero = false;
        for (int64_t i = 0; f && i < a.n; i++) {
            ok      = ok && isfinite(f[i]);
            nonzero = nonzero || f[i] != 0.0f;
        }
        ok = ok && f && nonzero && (double)f[3] == jb_npy_get_f(&a, 3);
        free(f);
    }
    if (ok && type == JB_NPY_I64) { /* VQ codes: indices into a 64-entry codebook */
        int32_t *c = jb_npy_to_i32(&a);
        for (int64_t i = 0; c && i < a.n; i++)
            ok = ok && c[i] >= 0 && c[i] < 64;
        ok = ok && c && c[a.n - 1] == jb_npy_get_i(&a, a.n - 1);
        free(c);
    }
    jb_npy_free(&a);
    CHECK(ok);
    return true;
}

static bool test_fixture_f32(void)
{
    return fixture_check("vqvae/codebook_level0.npy", JB_NPY_F32, 2, (const int64_t[]){ 64, 16 });
}

static bool test_fixture_i64(void)
{
    return fixture_check("vqvae/codes_level0.npy", JB_NPY_I64, 2, (const int64_t[]){ 1, 8256 });
}

static int read_tree(const char *dir, int depth, int *failed)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth < 4) {
            n += read_tree(path, depth + 1, failed);
        } else if (S_ISREG(st.st_mode) && strlen(e->d_name) > 4 &&
                   strcmp(e->d_name + strlen(e->d_name) - 4, ".npy") == 0) {
            struct jb_npy a;
            if (jb_npy_read(path, &a) != JB_STATUS_OK) {
                printf("     %s\n", jb_last_error());
                (*failed)++;
            }
            jb_npy_free(&a);
            n++;
        }
    }
    closedir(d);
    return n;
}

static bool test_fixture_all(void)
{
    int failed = 0, n = read_tree(fixture_dir, 0, &failed);
    printf("     %d .npy files under %s, %d rejected\n", n, fixture_dir, failed);
    CHECK(n > 0 && failed == 0);
    return true;
}

static void run_fixture_cases(const char *dir)
{
    struct stat st;
    char probe[512];
    if (!dir) {
        printf("SKIP fixtures: no fixture directory given (usage: test_npy FIXTURE_DIR)\n");
        return;
    }
    snprintf(probe, sizeof probe, "%s/vqvae", dir);
    if (stat(probe, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("SKIP fixtures: %s not found\n", probe);
        return;
    }
    fixture_dir = dir;
    run_case("fixture vqvae/codebook_level0.npy (<f4, (64, 16))", test_fixture_f32);
    run_case("fixture vqvae/codes_level0.npy (<i8, (1, 8256))", test_fixture_i64);
    run_case("fixture: every .npy file parses", test_fixture_all);
}

int main(int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "usage: %s [FIXTURE_DIR]\n", argv[0]);
        return 2;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_npy_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    run_case("round trip <f4 (3, 5)", test_rt_f32);
    run_case("round trip <f8 (7,)", test_rt_f64);
    run_case("round trip <i4 (2, 3, 4)", test_rt_i32);
    run_case("round trip <i8 (1, 9)", test_rt_i64);
    run_case("round trip <f2 (5,)", test_rt_f16);
    run_case("round trip |u1 (300,)", test_rt_u8);
    run_case("round trip |b1 (4, 4)", test_rt_bool);
    run_case("round trip scalar ()", test_rt_scalar);
    run_case("round trip empty (0, 3)", test_rt_empty);
    run_case("round trip 1-d tuple (6,)", test_rt_1d_tuple);
    run_case("round trip 8 dimensions", test_rt_8d);
    run_case("write: bad arguments", test_write_errors);
    run_case("converters", test_convert);
    run_hdr_cases();
    run_case("every truncation of a valid file", test_truncation);
    run_case("missing file", test_read_missing);
    run_fixture_cases(argc == 2 ? argv[1] : NULL);
    rmdir(tmp_dir);
    return tc_summary();
}
