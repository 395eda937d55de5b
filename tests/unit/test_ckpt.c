/*
 * tests/unit/test_ckpt.c - the safe pickle VM and the PyTorch checkpoint reader.
 *
 * usage: test_ckpt [FIXTURE_DIR]   (e.g. ../shared/fixtures/jukebox-ref)
 *
 * Part 1 (needs the fixtures): every reference checkpoint, legacy and zip, is checked against
 * its *.params.json (names, order, shapes, dtypes, tied storages), legacy and zip must give
 * bit-identical data, and the VQ-VAE codebooks must equal the saved .npy arrays.
 * Part 2 (always): small checkpoints built here in both formats, with strided views and every
 * storage type, and hostile or corrupt inputs (code-running globals, absurd sizes, views
 * outside their storage, truncations, garbage), each of which must fail with a message.
 *
 * Set ENCORE_CKPT_SEED_DIR=dir to also write the small inputs as fuzz seeds.
 */
#include "core/common.h"
#include "format/ckpt.h"
#include "format/pickle.h"
#include "test_common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

/* One line per case. */
/* tests/common's reporting under this file's name */
#define check tc_check

/* ---- byte builder ------------------------------------------------------------------------ */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void b_put(struct buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void b_u8(struct buf *b, unsigned x)
{
    uint8_t v = (uint8_t)x;
    b_put(b, &v, 1);
}

static void b_le(struct buf *b, uint64_t x, int n)
{
    for (int i = 0; i < n; i++)
        b_u8(b, (unsigned)(x >> (8 * i)) & 0xff);
}

static void b_text(struct buf *b, const char *s)
{
    b_put(b, s, strlen(s));
}

/* Opcode bytes from a literal, which may hold NULs. */
#define B_OPS(b, lit) b_put((b), (lit), sizeof(lit) - 1)

static void b_str(struct buf *b, const char *s)
{
    b_u8(b, 'X');
    b_le(b, strlen(s), 4);
    b_text(b, s);
}

static void b_int(struct buf *b, int64_t x)
{
    if (x >= 0 && x < 256) {
        b_u8(b, 'K');
        b_u8(b, (unsigned)x);
    } else if (x >= INT32_MIN && x <= INT32_MAX) {
        b_u8(b, 'J');
        b_le(b, (uint64_t)x, 4);
    } else {
        b_u8(b, 0x8a);
        b_u8(b, 8);
        b_le(b, (uint64_t)x, 8);
    }
}

static void b_global(struct buf *b, const char *mod, const char *name)
{
    b_u8(b, 'c');
    b_text(b, mod);
    b_u8(b, '\n');
    b_text(b, name);
    b_u8(b, '\n');
}

static void b_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- fuzz seeds -------------------------------------------------------------------------- */

static void seed_write(const char *name, const void *data, size_t n)
{
    const char *dir = getenv("ENCORE_CKPT_SEED_DIR");
    if (!dir || !data || !n || n > 64 * 1024) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* ---- checkpoint builder ------------------------------------------------------------------ */

struct t_tensor {
    const char *name;
    const char *cls; /* storage class under torch. */
    const char *key;
    int64_t storage_numel;
    int64_t offset;
    int n_dims;
    int64_t size[10], stride[10];
    bool view; /* legacy view metadata (view_key = key + "v") */
    int64_t view_off, view_len;
};

struct t_blob {
    const char *key;
    const void *data;
    size_t nbytes;
    int64_t count; /* element count written in the legacy header */
};

/* The saved object: {'hps': {...}, 'model': OrderedDict(name -> tensor), 'step': 7}. */
static void build_object(struct buf *b, const struct t_tensor *t, int n, bool zip)
{
    B_OPS(b, "\x80\x02}q\x00(");
    b_str(b, "hps");
    B_OPS(b, "}(");
    b_str(b, "n_ctx");
    b_int(b, 8);
    b_str(b, "levels");
    b_int(b, 3);
    b_str(b, "lr");
    B_OPS(b, "G\x3f\x50\x62\x4d\xd2\xf1\xa9\xfc"); /* 0.001 */
    b_str(b, "name");
    b_str(b, "tiny");
    B_OPS(b, "u");
    b_str(b, "model");
    b_global(b, "collections", "OrderedDict");
    B_OPS(b, "q\x01)R(");
    for (int i = 0; i < n; i++) {
        b_str(b, t[i].name);
        b_global(b, "torch._utils", "_rebuild_tensor_v2");
        B_OPS(b, "((");
        b_str(b, "storage");
        b_global(b, "torch", t[i].cls);
        b_str(b, t[i].key);
        b_str(b, "cpu");
        b_int(b, t[i].storage_numel);
        if (!zip) {
            if (t[i].view) {
                char vk[64];
                snprintf(vk, sizeof vk, "%sv", t[i].key);
                b_str(b, vk);
                b_int(b, t[i].view_off);
                b_int(b, t[i].view_len);
                B_OPS(b, "\x87");
            } else {
                B_OPS(b, "N");
            }
        }
        B_OPS(b, "tQ");
        b_int(b, t[i].offset);
        B_OPS(b, "(");
        for (int d = 0; d < t[i].n_dims; d++)
            b_int(b, t[i].size[d]);
        B_OPS(b, "t(");
        for (int d = 0; d < t[i].n_dims; d++)
            b_int(b, t[i].stride[d]);
        B_OPS(b, "t\x89h\x01)Rtr\x00\x00\x01\x00R"); /* LONG_BINPUT 256 */
    }
    B_OPS(b, "u}"); /* BUILD state {'_metadata': OrderedDict()}, as torch writes */
    b_str(b, "_metadata");
    B_OPS(b, "h\x01)Rsb");
    b_str(b, "step");
    b_int(b, 7);
    B_OPS(b, "u.");
}

static void build_legacy_head(struct buf *b)
{
    B_OPS(b, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
    B_OPS(b, "\x80\x02M\xe9\x03.");
    B_OPS(b, "\x80\x02}(");
    b_str(b, "protocol_version");
    B_OPS(b, "M\xe9\x03");
    b_str(b, "little_endian");
    B_OPS(b, "\x88u.");
}

static void build_legacy_tail(struct buf *b, const struct t_blob *s, int n)
{
    B_OPS(b, "\x80\x02](");
    for (int i = 0; i < n; i++)
        b_str(b, s[i].key);
    B_OPS(b, "e.");
    for (int i = 0; i < n; i++) {
        b_le(b, (uint64_t)s[i].count, 8);
        b_put(b, s[i].data, s[i].nbytes);
    }
}

static void build_legacy(struct buf *b,
                         const struct t_tensor *t,
                         int nt,
                         const struct t_blob *s,
                         int ns)
{
    build_legacy_head(b);
    build_object(b, t, nt, false);
    build_legacy_tail(b, s, ns);
}

struct z_file {
    const char *name;
    const void *data;
    size_t n;
};

/* An in-memory zip (stored entries, as torch writes them). */
static bool build_zip_method(struct buf *out, const struct z_file *f, int n, int method)
{
    zip_error_t err;
    zip_error_init(&err);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &err);
    if (!src) return false;
    zip_source_keep(src);
    zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &err);
    if (!za) return false;
    for (int i = 0; i < n; i++) {
        zip_source_t *fs = zip_source_buffer(za, f[i].data, f[i].n, 0);
        zip_int64_t ix   = zip_file_add(za, f[i].name, fs, ZIP_FL_ENC_UTF_8);
        if (ix < 0) return false;
        zip_set_file_compression(za, (zip_uint64_t)ix, method, 0);
        zip_file_set_mtime(za, (zip_uint64_t)ix, 1577836800, 0); /* fixed: reproducible seeds */
    }
    if (zip_close(za) != 0) return false;
    zip_stat_t st;
    if (zip_source_stat(src, &st) != 0 || zip_source_open(src) != 0) return false;
    uint8_t *d = malloc(st.size ? st.size : 1);
    if (!d) abort();
    zip_int64_t got = zip_source_read(src, d, st.size);
    zip_source_close(src);
    zip_source_free(src);
    zip_error_fini(&err);
    b_put(out, d, (size_t)got);
    free(d);
    return got == (zip_int64_t)st.size;
}

static bool build_zip(struct buf *out, const struct z_file *f, int n)
{
    return build_zip_method(out, f, n, ZIP_CM_STORE);
}

static bool build_zip_ckpt_method(struct buf *out,
                                  const struct t_tensor *t,
                                  int nt,
                                  const struct t_blob *s,
                                  int ns,
                                  bool with_pkl,
                                  int method)
{
    struct buf pkl = { 0 };
    build_object(&pkl, t, nt, true);
    struct z_file f[16];
    char names[16][64];
    int n = 0;
    if (with_pkl) f[n++] = (struct z_file){ "archive/data.pkl", pkl.p, pkl.n };
    f[n++] = (struct z_file){ "archive/version", "3\n", 2 };
    for (int i = 0; i < ns && n < 16; i++, n++) {
        snprintf(names[n], sizeof names[n], "archive/data/%s", s[i].key);
        f[n] = (struct z_file){ names[n], s[i].data, s[i].nbytes };
    }
    bool ok = build_zip_method(out, f, n, method);
    b_free(&pkl);
    return ok;
}

static bool build_zip_ckpt(struct buf *out,
                           const struct t_tensor *t,
                           int nt,
                           const struct t_blob *s,
                           int ns,
                           bool with_pkl)
{
    return build_zip_ckpt_method(out, t, nt, s, ns, with_pkl, ZIP_CM_STORE);
}

/* ---- rejection cases --------------------------------------------------------------------- */

/* The input must be refused with a message (containing want, if given). */
static void expect_reject(const char *name, const void *data, size_t n, const char *want)
{
    jb_clear_error();
    struct jb_ckpt *c = jb_ckpt_open_memory(data, n);
    const char *msg   = jb_last_error();
    bool ok           = !c && msg && msg[0] && (!want || strstr(msg, want));
    check(ok, "reject %s: %s", name, msg && msg[0] ? msg : "(no message)");
    if (c) jb_ckpt_close(c);
    char seed[128];
    snprintf(seed, sizeof seed, "bad_%s", name);
    for (char *p = seed; *p; p++) {
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) *p = '_';
    }
    seed_write(seed, data, n);
}

static void expect_pickle_reject(const char *name, const void *data, size_t n, const char *want)
{
    jb_clear_error();
    struct jb_pickle *p = jb_pickle_load(data, n, NULL);
    const char *msg     = jb_last_error();
    bool ok             = !p && msg && msg[0] && (!want || strstr(msg, want));
    check(ok, "reject pickle %s: %s", name, msg && msg[0] ? msg : "(no message)");
    jb_pickle_free(p);
}

/* Wraps a raw object pickle in a legacy container and in a zip (not checked on its own). */
static void expect_reject_wrapped(const char *name, const struct buf *obj, const char *want)
{
    struct buf b = { 0 };
    build_legacy_head(&b);
    b_put(&b, obj->p, obj->n); /* last, so no later pickle can complete it */
    char label[128];
    snprintf(label, sizeof label, "legacy %s", name);
    expect_reject(label, b.p, b.n, want);
    b_free(&b);
    struct z_file f[] = { { "archive/data.pkl", obj->p, obj->n } };
    if (build_zip(&b, f, 1)) {
        snprintf(label, sizeof label, "zip %s", name);
        expect_reject(label, b.p, b.n, want);
    }
    b_free(&b);
}

/* The pickle alone, then wrapped in a legacy container and in a zip. */
static void expect_reject_object(const char *name, const struct buf *obj, const char *want)
{
    expect_pickle_reject(name, obj->p, obj->n, want);
    expect_reject_wrapped(name, obj, want);
}

/* ---- the small self-made checkpoint ------------------------------------------------------ */

static float f32_data[6]     = { 0, 1, 2, 3, 4, 5 };
static uint16_t f16_data[4]  = { 0x3c00, 0xc000, 0x3800, 0x7bff }; /* 1, -2, 0.5, 65504 */
static int64_t i64_data[3]   = { -7, 0, 1234567 };
static double f64_data[10]   = { 0, 10, 20, 30, 40, 50, 60, 70, 80, 90 };
static uint16_t bf16_data[2] = { 0x3f80, 0xc0a0 }; /* 1, -5 */
static int32_t i32_data[2]   = { -100000, 42 };
static uint8_t u8_data[3]    = { 0, 200, 255 };
static uint8_t bool_data[2]  = { 0, 1 };

#define N_TINY 13
static const struct t_tensor tiny_tensors[N_TINY] = {
    { "module.a", "FloatStorage", "0", 6, 0, 2, { 2, 3 }, { 3, 1 }, false, 0, 0 },
    { "b", "FloatStorage", "0", 6, 0, 2, { 3, 2 }, { 1, 3 }, false, 0, 0 }, /* a transposed */
    { "c", "HalfStorage", "1", 4, 0, 1, { 4 }, { 1 }, false, 0, 0 },
    { "d", "LongStorage", "2", 3, 0, 1, { 3 }, { 1 }, false, 0, 0 },
    { "e", "DoubleStorage", "3", 10, 1, 1, { 2 }, { 2 }, false, 0, 0 },
    { "f", "FloatStorage", "0", 6, 4, 0, { 0 }, { 0 }, false, 0, 0 }, /* scalar */
    { "g", "FloatStorage", "0", 6, 6, 2, { 0, 5 }, { 5, 1 }, false, 0, 0 },
    { "h", "BFloat16Storage", "4", 2, 0, 1, { 2 }, { 1 }, false, 0, 0 },
    { "i", "IntStorage", "5", 2, 0, 2, { 1, 2 }, { 2, 1 }, false, 0, 0 },
    { "j", "ByteStorage", "6", 3, 0, 1, { 3 }, { 1 }, false, 0, 0 },
    { "k", "BoolStorage", "7", 2, 0, 1, { 2 }, { 1 }, false, 0, 0 },
    { "l", "FloatStorage", "0", 6, 2, 1, { 3 }, { 0 }, false, 0, 0 }, /* broadcast */
    { "m", "FloatStorage", "0", 6, 0, 3, { 2, 1, 2 }, { 3, 7, 2 }, false, 0, 0 },
};
static const struct t_blob tiny_blobs[8] = {
    { "0", f32_data, sizeof f32_data, 6 },   { "1", f16_data, sizeof f16_data, 4 },
    { "2", i64_data, sizeof i64_data, 3 },   { "3", f64_data, sizeof f64_data, 10 },
    { "4", bf16_data, sizeof bf16_data, 2 }, { "5", i32_data, sizeof i32_data, 2 },
    { "6", u8_data, sizeof u8_data, 3 },     { "7", bool_data, sizeof bool_data, 2 },
};

static bool read_eq(const struct jb_ckpt *c, const char *name, const float *want, int n)
{
    const struct jb_ckpt_entry *e = jb_ckpt_find(c, name);
    float got[16];
    if (!e || n > 16) return false;
    if (jb_ckpt_read_f32(c, e, got) != JB_STATUS_OK) {
        printf("  %s: %s\n", name, jb_last_error());
        return false;
    }
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) {
            printf("  %s[%d] = %g, want %g\n", name, i, (double)got[i], (double)want[i]);
            return false;
        }
    return true;
}

static void check_tiny(struct jb_ckpt *c, const char *what, bool with_view)
{
    if (!c) {
        check(false, "%s: open: %s", what, jb_last_error());
        return;
    }
    int64_t want_n = N_TINY + (with_view ? 1 : 0);
    check(
      jb_ckpt_n_entries(c) == want_n, "%s: %lld entries", what, (long long)jb_ckpt_n_entries(c));
    const struct jb_ckpt_entry *a = jb_ckpt_find(c, "a"), *b = jb_ckpt_find(c, "b");
    check(a && b && !jb_ckpt_find(c, "module.a") && a->storage == b->storage &&
            a->type == JB_CKPT_F32 && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 3,
          "%s: 'module.' stripped, shape [2, 3], shared storage",
          what);
    check(read_eq(c, "a", (const float[]){ 0, 1, 2, 3, 4, 5 }, 6), "%s: read a", what);
    check(read_eq(c, "b", (const float[]){ 0, 3, 1, 4, 2, 5 }, 6), "%s: read b (transposed)", what);
    check(read_eq(c, "c", (const float[]){ 1, -2, 0.5f, 65504 }, 4), "%s: read f16", what);
    check(read_eq(c, "d", (const float[]){ -7, 0, 1234567 }, 3), "%s: read i64", what);
    check(read_eq(c, "e", (const float[]){ 10, 30 }, 2), "%s: read f64 strided", what);
    check(read_eq(c, "f", (const float[]){ 4 }, 1), "%s: read scalar", what);
    check(read_eq(c, "g", (const float[]){ 0 }, 0) && jb_ckpt_find(c, "g")->shape[0] == 0,
          "%s: read empty",
          what);
    check(read_eq(c, "h", (const float[]){ 1, -5 }, 2), "%s: read bf16", what);
    check(read_eq(c, "i", (const float[]){ -100000, 42 }, 2), "%s: read i32", what);
    check(read_eq(c, "j", (const float[]){ 0, 200, 255 }, 3), "%s: read u8", what);
    check(read_eq(c, "k", (const float[]){ 0, 1 }, 2), "%s: read bool", what);
    check(read_eq(c, "l", (const float[]){ 2, 2, 2 }, 3), "%s: read broadcast", what);
    check(read_eq(c, "m", (const float[]){ 0, 2, 3, 5 }, 4), "%s: read 3-d strided", what);
    if (with_view)
        check(read_eq(c, "v", (const float[]){ 30, 50 }, 2) &&
                jb_ckpt_find(c, "v")->storage_offset == 3,
              "%s: read legacy storage view",
              what);
    const struct jb_pyval *hps = jb_ckpt_hps(c);
    check(jb_pyval_int(jb_pyval_dict_get(hps, "n_ctx")) == 8 &&
            fabs(jb_pyval_float(jb_pyval_dict_get(hps, "lr")) - 0.001) < 1e-12 &&
            strcmp(jb_pyval_str(jb_pyval_dict_get(hps, "name")), "tiny") == 0 &&
            jb_ckpt_step(c) == 7,
          "%s: hps and step",
          what);

    if (!a) {
        jb_ckpt_close(c);
        return;
    }
    /* a caller's copy of an entry is re-checked against the storage */
    struct jb_ckpt_entry bad = *a;
    float out[64];
    bad.stride[0] = 4;
    jb_clear_error();
    enum jb_status st = jb_ckpt_read_f32(c, &bad, out);
    check(st == JB_STATUS_ERR_FORMAT && jb_last_error()[0],
          "%s: read of a view past its storage: %s",
          what,
          jb_last_error());
    bad         = *a;
    bad.storage = 1000;
    jb_clear_error();
    st = jb_ckpt_read_f32(c, &bad, out);
    check(st == JB_STATUS_ERR_INVALID_ARG && jb_last_error()[0],
          "%s: read with a bad storage index: %s",
          what,
          jb_last_error());
    bad      = *a;
    bad.type = JB_CKPT_F64;
    jb_clear_error();
    st = jb_ckpt_read_f32(c, &bad, out);
    check(st == JB_STATUS_ERR_INVALID_ARG,
          "%s: read with the wrong element type: %s",
          what,
          jb_last_error());
    jb_ckpt_close(c);
}

static void make_tiny_legacy(struct buf *b)
{
    struct t_tensor t[N_TINY + 1];
    memcpy(t, tiny_tensors, sizeof tiny_tensors);
    t[N_TINY] = (struct t_tensor){ "v", "DoubleStorage", "3", 10, 1, 1, { 2 }, { 2 }, true, 2, 5 };
    build_legacy(b, t, N_TINY + 1, tiny_blobs, 8);
}

static void test_tiny(void)
{
    struct buf b = { 0 };
    make_tiny_legacy(&b);
    seed_write("ok_tiny_legacy", b.p, b.n);
    check_tiny(jb_ckpt_open_memory(b.p, b.n), "tiny legacy", true);

    /* the file path (mmap) */
    char path[] = "/tmp/test_ckpt_XXXXXX";
    int fd      = mkstemp(path);
    if (fd >= 0) {
        bool wrote = write(fd, b.p, b.n) == (ssize_t)b.n;
        close(fd);
        struct jb_ckpt *c = wrote ? jb_ckpt_open(path) : NULL;
        check(c && !jb_ckpt_is_zip(c), "tiny legacy via jb_ckpt_open (mmap)");
        check_tiny(c, "tiny legacy file", true);
        unlink(path);
    }

    /* every truncation must fail cleanly */
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        jb_clear_error();
        struct jb_ckpt *c = jb_ckpt_open_memory(b.p, n);
        if (c || !jb_last_error()[0]) bad++;
        jb_ckpt_close(c);
        if (n % 97 == 0) {
            char seed[64];
            snprintf(seed, sizeof seed, "trunc_legacy_%zu", n);
            seed_write(seed, b.p, n);
        }
    }
    check(bad == 0, "reject tiny legacy truncated at each of %zu offsets (%d accepted)", b.n, bad);
    b_free(&b);

    if (!build_zip_ckpt(&b, tiny_tensors, N_TINY, tiny_blobs, 8, true)) {
        check(false, "build tiny zip");
        return;
    }
    seed_write("ok_tiny_zip", b.p, b.n);
    struct jb_ckpt *z = jb_ckpt_open_memory(b.p, b.n);
    check(z && jb_ckpt_is_zip(z), "tiny zip opens as zip");
    check_tiny(z, "tiny zip", false);
    bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        jb_clear_error();
        struct jb_ckpt *c = jb_ckpt_open_memory(b.p, n);
        if (c || !jb_last_error()[0]) bad++;
        jb_ckpt_close(c);
        if (n % 211 == 0) {
            char seed[64];
            snprintf(seed, sizeof seed, "trunc_zip_%zu", n);
            seed_write(seed, b.p, n);
        }
    }
    check(bad == 0, "reject tiny zip truncated at each of %zu offsets (%d accepted)", b.n, bad);
    b_free(&b);

    /* deflated entries cannot seek: reads skip forward instead */
    if (build_zip_ckpt_method(&b, tiny_tensors, N_TINY, tiny_blobs, 8, true, ZIP_CM_DEFLATE)) {
        seed_write("ok_tiny_zip_deflate", b.p, b.n);
        check_tiny(jb_ckpt_open_memory(b.p, b.n), "tiny zip deflate", false);
    }
    b_free(&b);
}

/* ---- hostile and corrupt inputs ---------------------------------------------------------- */

/* A legacy checkpoint with one tensor described by t and one blob. */
static void one_tensor_legacy(const char *name,
                              struct t_tensor t,
                              int64_t count,
                              const void *data,
                              size_t nbytes,
                              const char *want)
{
    struct buf b       = { 0 };
    struct t_blob blob = { t.key, data, nbytes, count };
    build_legacy(&b, &t, 1, &blob, 1);
    expect_reject(name, b.p, b.n, want);
    b_free(&b);
}

static void test_hostile_pickles(void)
{
    struct buf b = { 0 };

    /* GLOBAL posix.system + REDUCE('echo pwned') */
    B_OPS(&b, "\x80\x02");
    b_global(&b, "posix", "system");
    B_OPS(&b, "q\x00");
    b_str(&b, "echo pwned");
    B_OPS(&b, "\x85R.");
    expect_reject_object("GLOBAL posix.system REDUCE", &b, "global 'posix.system' is not allowed");
    b_free(&b);

    /* STACK_GLOBAL os.system (protocol 4) */
    B_OPS(&b,
          "\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x0a"
          "echo pwned\x85R.");
    expect_reject_object("STACK_GLOBAL os.system", &b, "global 'os.system' is not allowed");
    b_free(&b);

    B_OPS(&b, "\x80\x02");
    b_global(&b, "builtins", "eval");
    b_str(&b, "__import__('os').system('echo pwned')");
    B_OPS(&b, "\x85R.");
    expect_reject_object("builtins.eval", &b, "global 'builtins.eval' is not allowed");
    b_free(&b);

    B_OPS(&b, "\x80\x02");
    b_global(&b, "torch.storage", "_load_from_bytes");
    B_OPS(&b, "C\x01xR.");
    expect_reject_object("torch.storage._load_from_bytes", &b, "is not allowed");
    b_free(&b);

    /* a storage class is allowed as a value but must not be called */
    B_OPS(&b, "\x80\x02");
    b_global(&b, "torch", "FloatStorage");
    B_OPS(&b, "K\x05\x85R.");
    expect_reject_object("REDUCE on a storage class", &b, "not supported");
    b_free(&b);

    B_OPS(&b, "\x80\x02");
    b_global(&b, "collections", "OrderedDict");
    B_OPS(&b,
          "](K\x01K\x02\x86"
          "e\x85R.");
    expect_reject_object("OrderedDict with arguments", &b, "with arguments");
    b_free(&b);

    B_OPS(&b, "\x80\x02");
    b_global(&b, "torch._utils", "_rebuild_tensor_v2");
    B_OPS(&b, "(K\x00K\x00)\x89NtR.");
    expect_reject_object("_rebuild_tensor_v2 with bad arguments", &b, "_rebuild_tensor_v2");
    b_free(&b);

    B_OPS(&b, "\x80\x02");
    b_global(&b, "torch._utils", "_rebuild_tensor_v2");
    B_OPS(&b, ")\x81.");
    expect_reject_object("NEWOBJ of a function", &b, "NEWOBJ");
    b_free(&b);

    /* protocol-2 bytes go through _codecs.encode, which is not on the list: the strict VM
     * refuses it; a checkpoint's object pickle keeps an inert placeholder (never called), so
     * the object is refused for lacking 'model' */
    B_OPS(&b, "\x80\x02}");
    b_str(&b, "b");
    b_global(&b, "_codecs", "encode");
    B_OPS(&b, "X\x02\x00\x00\x00\x00\x01X\x06\x00\x00\x00latin1\x86Rs.");
    expect_pickle_reject("_codecs.encode", b.p, b.n, "not allowed");
    expect_reject_wrapped("_codecs.encode in a checkpoint", &b, "model");
    b_free(&b);

    struct {
        const char *name;
        const char *bytes;
        size_t n;
        const char *want;
    } raw[] = {
        { "BINUNICODE length 0xffffffff",
          "\x80\x02X\xff\xff\xff\xff"
          "abc.",
          11,
          "bytes" },
        { "BINUNICODE8 length 2^63",
          "\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x80"
          "a.",
          13,
          "bytes" },
        { "BINBYTES8 length 2^64-1", "\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff.", 12, "bytes" },
        { "BINSTRING negative length", "\x80\x02T\xff\xff\xff\xff.", 8, "negative" },
        { "LONG4 length 2^31", "\x80\x02\x8b\x00\x00\x00\x80.", 8, "LONG" },
        { "FRAME past end", "\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.", 13, "FRAME" },
        { "protocol 9", "\x80\x09N.", 4, "protocol" },
        { "BINGET unset memo", "\x80\x02h\x05.", 5, "memo" },
        { "LONG_BINGET 0xffffffff", "\x80\x02j\xff\xff\xff\xff.", 8, "memo" },
        { "LONG_BINPUT 0xffffffff", "\x80\x02Nr\xff\xff\xff\xff.", 9, "memo index" },
        { "REDUCE on empty stack", "\x80\x02R.", 4, "underflow" },
        { "APPEND to a dict", "\x80\x02}Na.", 6, "APPEND" },
        { "SETITEM on a list", "\x80\x02]NNs.", 7, "SETITEM" },
        { "SETITEMS odd", "\x80\x02}(Nu.", 7, "odd" },
        { "POP_MARK without MARK",
          "\x80\x02"
          "1.",
          4,
          "MARK" },
        { "APPENDS below the mark", "\x80\x02(]e.", 6, "underflow" },
        { "reach below MARK", "\x80\x02N(0N(\x85.", 9, "underflow" },
        { "STOP on empty stack", "\x80\x02.", 3, "underflow" },
        { "no STOP", "\x80\x02N", 3, "before STOP" },
        { "unknown opcode 0xff", "\x80\x02\xff.", 4, "unknown opcode 0xff" },
        { "INST opcode", "\x80\x02iposix\nsystem\n.", 17, "INST" },
        { "EXT1 opcode", "\x80\x02\x82\x01.", 5, "EXT1" },
        { "GLOBAL without newline",
          "\x80\x02"
          "cposix",
          8,
          "GLOBAL" },
        { "STACK_GLOBAL of ints", "\x80\x04K\x01K\x02\x93.", 8, "strings" },
        { "BUILD on a list", "\x80\x02]Nb.", 6, "BUILD" },
        { "BINPERSID on nothing", "\x80\x02Q.", 4, "underflow" },
        { "empty", "", 0, NULL },
        { "one byte", "\x80", 1, NULL },
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        struct buf o = { 0 };
        b_put(&o, raw[i].bytes, raw[i].n);
        expect_reject_object(raw[i].name, &o, raw[i].want);
        b_free(&o);
    }

    /* too many MARKs and too deep a stack: bounded, not a crash */
    B_OPS(&b, "\x80\x02");
    for (int i = 0; i < (1 << 20) + 1; i++)
        b_u8(&b, '(');
    B_OPS(&b, ".");
    expect_pickle_reject("2^20+1 MARKs", b.p, b.n, "marks");
    b_free(&b);
    B_OPS(&b, "\x80\x02N");
    for (int i = 0; i < (1 << 20) + 1; i++)
        b_u8(&b, '2');
    B_OPS(&b, ".");
    expect_pickle_reject("2^20+1 DUPs", b.p, b.n, "stack deeper");
    b_free(&b);
}

static void test_hostile_containers(void)
{
    static const float six[6] = { 0, 1, 2, 3, 4, 5 };
    struct t_tensor base = { "w", "FloatStorage", "0", 6, 0, 2, { 2, 3 }, { 3, 1 }, false, 0, 0 };
    struct t_tensor t;

    t               = base;
    t.storage_numel = (int64_t)1 << 62;
    one_tensor_legacy("storage numel 2^62", t, (int64_t)1 << 62, six, sizeof six, "element count");
    t.storage_numel = (int64_t)1 << 60; /* 2^62 bytes */
    one_tensor_legacy("storage numel 2^60", t, (int64_t)1 << 60, six, sizeof six, "past end");
    t               = base;
    t.storage_numel = INT64_MAX;
    one_tensor_legacy("storage numel 2^63-1", t, 6, six, sizeof six, "element count");
    t         = base;
    t.size[0] = -2;
    one_tensor_legacy("negative dim", t, 6, six, sizeof six, "negative");
    t           = base;
    t.stride[1] = -1;
    one_tensor_legacy("negative stride", t, 6, six, sizeof six, "negative");
    t        = base;
    t.offset = -1;
    one_tensor_legacy("negative offset", t, 6, six, sizeof six, "negative");
    t           = base;
    t.stride[0] = 3;
    t.stride[1] = 2;
    one_tensor_legacy("stride outside storage", t, 6, six, sizeof six, "outside storage");
    t        = base;
    t.offset = 1;
    one_tensor_legacy("offset + extent past storage", t, 6, six, sizeof six, "outside storage");
    t         = base;
    t.offset  = 7;
    t.size[0] = 0;
    one_tensor_legacy("empty tensor past storage", t, 6, six, sizeof six, "outside storage");
    t         = base;
    t.size[0] = (int64_t)1 << 40;
    t.size[1] = (int64_t)1 << 40;
    one_tensor_legacy("numel overflow", t, 6, six, sizeof six, "overflow");
    t           = base;
    t.size[0]   = (int64_t)1 << 62;
    t.stride[0] = 4;
    one_tensor_legacy("extent overflow", t, 6, six, sizeof six, "overflow");
    t        = base;
    t.n_dims = 9;
    for (int d = 0; d < 9; d++)
        t.size[d] = 1, t.stride[d] = 1;
    one_tensor_legacy("9 dimensions", t, 6, six, sizeof six, "dimensions");
    t     = base;
    t.cls = "ComplexFloatStorage";
    one_tensor_legacy("unknown storage class", t, 6, six, sizeof six, "not allowed");
    t          = base;
    t.view     = true;
    t.view_off = 4;
    t.view_len = 5;
    one_tensor_legacy("storage view past its root", t, 6, six, sizeof six, "view");
    t          = base;
    t.view     = true;
    t.view_off = 2;
    t.view_len = 4;
    one_tensor_legacy("tensor past its storage view", t, 6, six, sizeof six, "outside storage");
    one_tensor_legacy("blob count differs", base, 5, six, 20, "elements");
    one_tensor_legacy("tensor data past end of file", base, 6, six, 20, "past end");

    /* two tensors disagreeing about one storage */
    struct t_tensor two[2] = { base, base };
    two[1].name            = "v";
    two[1].cls             = "HalfStorage";
    struct buf b           = { 0 };
    struct t_blob blob     = { "0", six, sizeof six, 6 };
    build_legacy(&b, two, 2, &blob, 1);
    expect_reject("storage with two element types", b.p, b.n, "two element types");
    b_free(&b);
    two[1]               = base;
    two[1].name          = "v";
    two[1].storage_numel = 5;
    build_legacy(&b, two, 2, &blob, 1);
    expect_reject("storage with two sizes", b.p, b.n, "declared with");
    b_free(&b);
    two[1]      = base;
    two[1].name = "module.w";
    build_legacy(&b, two, 2, &blob, 1);
    expect_reject("duplicate name after 'module.' strip", b.p, b.n, "duplicate tensor name");
    b_free(&b);
    struct t_blob blobs2[2] = { blob, blob };
    build_legacy(&b, &base, 1, blobs2, 2);
    expect_reject("storage key listed twice", b.p, b.n, "listed twice");
    b_free(&b);
    blobs2[1].key = "9";
    build_legacy(&b, &base, 1, blobs2, 2);
    expect_reject("storage key listed but unused", b.p, b.n, "not the key of any persistent id");
    b_free(&b);
    build_legacy(&b, &base, 1, &blob, 0);
    expect_reject("storage without data", b.p, b.n, "has no data");
    b_free(&b);

    /* legacy header pickles */
    build_legacy(&b, &base, 1, &blob, 1);
    b.p[5] ^= 1;
    expect_reject("wrong magic number", b.p, b.n, "magic");
    b.p[5] ^= 1;
    b.p[18] = 0xe8; /* protocol 1000 */
    expect_reject("protocol 1000", b.p, b.n, "1001");
    b_free(&b);

    /* objects without a state dict */
#define LIT(s) s, sizeof(s) - 1
    struct {
        const char *name;
        const char *bytes;
        size_t n;
        const char *want;
    } objs[] = {
        { "object is a list", LIT("\x80\x02]."), "not a dict" },
        { "no 'model' key", LIT("\x80\x02}X\x04\x00\x00\x00stepK\x01s."), "no 'model'" },
        { "'model' is a list", LIT("\x80\x02}X\x05\x00\x00\x00model]s."), "no 'model'" },
        { "entry is an int",
          LIT("\x80\x02}X\x05\x00\x00\x00model}X\x01\x00\x00\x00wK\x01ss."),
          "not a tensor" },
        { "entry name is an int",
          LIT("\x80\x02}X\x05\x00\x00\x00model}K\x01K\x01ss."),
          "not a string" },
    };
#undef LIT
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++) {
        build_legacy_head(&b);
        b_put(&b, objs[i].bytes, objs[i].n);
        B_OPS(&b, "\x80\x02].");
        expect_reject(objs[i].name, b.p, b.n, objs[i].want);
        b_free(&b);
    }

    /* zip structure */
    struct t_blob zb = { "0", six, sizeof six, 6 };
    if (build_zip_ckpt(&b, &base, 1, &zb, 1, false))
        expect_reject("zip without data.pkl", b.p, b.n, "data.pkl");
    b_free(&b);
    if (build_zip_ckpt(&b, &base, 1, &zb, 0, true))
        expect_reject("zip without the storage entry", b.p, b.n, "has no entry");
    b_free(&b);
    zb.nbytes = 20;
    if (build_zip_ckpt(&b, &base, 1, &zb, 1, true))
        expect_reject("zip storage entry too small", b.p, b.n, "holds 20 bytes");
    b_free(&b);
    t               = base;
    t.storage_numel = (int64_t)1 << 60;
    zb.nbytes       = sizeof six;
    if (build_zip_ckpt(&b, &t, 1, &zb, 1, true))
        expect_reject("zip storage numel 2^60", b.p, b.n, "declares");
    b_free(&b);
    {
        struct buf pkl = { 0 };
        build_object(&pkl, &base, 1, true);
        struct z_file f[] = { { "a/data.pkl", pkl.p, pkl.n }, { "b/data.pkl", pkl.p, pkl.n } };
        if (build_zip(&b, f, 2)) expect_reject("zip with two data.pkl", b.p, b.n, "more than one");
        b_free(&b);
        struct z_file g[] = { { "archive/data.pkl", pkl.p, pkl.n },
                              { "archive/byteorder", "big", 3 },
                              { "archive/data/0", six, sizeof six } };
        if (build_zip(&b, g, 3)) expect_reject("zip big-endian", b.p, b.n, "byteorder");
        b_free(&b);
        /* change a byte of the stored data.pkl, keeping it a valid pickle: CRC mismatch */
        struct z_file h[] = { { "archive/data.pkl", pkl.p, pkl.n },
                              { "archive/data/0", six, sizeof six } };
        if (build_zip(&b, h, 2)) {
            for (size_t i = 0; i + 4 < b.n; i++)
                if (memcmp(b.p + i, "tiny", 4) == 0) {
                    b.p[i + 3] = 'x';
                    break;
                }
            expect_reject("zip data.pkl with a bad CRC", b.p, b.n, "CRC");
        }
        b_free(&b);
        b_free(&pkl);
    }

    /* garbage */
    uint8_t g[4096];
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof g; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        g[i] = (uint8_t)s;
    }
    g[0] = 0x13;
    expect_reject("4 KiB of random bytes", g, sizeof g, "not a PyTorch checkpoint");
    g[0] = 0x80;
    expect_reject("0x80 then random bytes", g, sizeof g, NULL);
    memcpy(g, "PK\x03\x04", 4);
    expect_reject("PK\\x03\\x04 then random bytes", g, sizeof g, "zip");
    expect_reject("NULL input", NULL, 0, "empty");
    jb_clear_error();
    check(!jb_ckpt_open("/nonexistent/ckpt.pth.tar") && jb_last_error()[0],
          "reject missing file: %s",
          jb_last_error());
    jb_clear_error();
    check(!jb_ckpt_open("/tmp") && jb_last_error()[0], "reject a directory: %s", jb_last_error());
}

/* ---- the VM on real pickles -------------------------------------------------------------- */

static bool hex_decode(const char *hex, struct buf *b)
{
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned x;
        if (sscanf(hex, "%2x", &x) != 1) return false;
        b_u8(b, x);
    }
    return true;
}

static void test_vm(void)
{
    /* pickle.dumps({'a': 1, 'neg': -5, 'big': -(2**40), 'f': 0.5, 's': 'hé', 'b': b'\0\1',
     * 'l': [1, 2, [3]], 't': (1, 'x'), 'T': True, 'F': False, 'n': None, 'u': 2**70}, 4) */
    static const char p4[] =
      "8004957f000000000000007d94288c0161944b018c036e6567944afbffffff8c03626967948a060000000000ff"
      "8c016694473fe00000000000008c0173948c0368c3a9948c01629443020001948c016c945d94284b014b025d94"
      "4b0361658c0174944b018c01789486948c015494888c014694898c016e944e8c0175948a090000000000000000"
      "40752e";
    struct buf b = { 0 };
    hex_decode(p4, &b);
    size_t used              = 0;
    struct jb_pickle *p      = jb_pickle_load(b.p, b.n, &used);
    const struct jb_pyval *d = jb_pickle_result(p);
    const struct jb_pyval *l = jb_pyval_dict_get(d, "l");
    const struct jb_pyval *u = jb_pyval_dict_get(d, "u");
    bool ok =
      p && used == b.n && jb_pyval_len(d) == 12 && jb_pyval_int(jb_pyval_dict_get(d, "a")) == 1 &&
      jb_pyval_int(jb_pyval_dict_get(d, "neg")) == -5 &&
      jb_pyval_int(jb_pyval_dict_get(d, "big")) == -((int64_t)1 << 40) &&
      jb_pyval_float(jb_pyval_dict_get(d, "f")) == 0.5 &&
      strcmp(jb_pyval_str(jb_pyval_dict_get(d, "s")), "h\xc3\xa9") == 0 &&
      jb_pyval_type(jb_pyval_dict_get(d, "b")) == JB_PY_BYTES &&
      jb_pyval_len(jb_pyval_dict_get(d, "b")) == 2 && jb_pyval_len(l) == 3 &&
      jb_pyval_int(jb_pyval_item(jb_pyval_item(l, 2), 0)) == 3 &&
      jb_pyval_type(jb_pyval_dict_get(d, "t")) == JB_PY_TUPLE &&
      jb_pyval_type(jb_pyval_dict_get(d, "T")) == JB_PY_BOOL &&
      jb_pyval_int(jb_pyval_dict_get(d, "T")) == 1 &&
      jb_pyval_type(jb_pyval_dict_get(d, "n")) == JB_PY_NONE && jb_pyval_type(u) == JB_PY_LONG &&
      jb_pyval_len(u) == 9 && jb_pyval_bytes(u)[8] == 0x40;
    check(ok, "vm: protocol 4 dict from CPython (FRAME, MEMOIZE, SHORT_BINUNICODE, LONG1, ...)");
    jb_pickle_free(p);
    b_free(&b);

    /* jukebox Hyperparams: NEWOBJ, SETITEMS, BUILD with a dict state */
    B_OPS(&b, "\x80\x02}(");
    b_str(&b, "hps");
    b_global(&b, "jukebox.hparams", "Hyperparams");
    B_OPS(&b, ")\x81(");
    b_str(&b, "n_ctx");
    b_int(&b, 8192);
    B_OPS(&b, "u}");
    b_str(&b, "levels");
    b_int(&b, 3);
    B_OPS(&b, "sb");
    b_str(&b, "model");
    B_OPS(&b, "}u.");
    struct jb_ckpt *c = NULL;
    {
        struct buf f = { 0 };
        build_legacy_head(&f);
        b_put(&f, b.p, b.n);
        B_OPS(&f, "\x80\x02].");
        seed_write("ok_hparams", f.p, f.n);
        c                          = jb_ckpt_open_memory(f.p, f.n);
        const struct jb_pyval *hps = jb_ckpt_hps(c);
        check(c && jb_ckpt_n_entries(c) == 0 &&
                jb_pyval_int(jb_pyval_dict_get(hps, "n_ctx")) == 8192 &&
                jb_pyval_int(jb_pyval_dict_get(hps, "levels")) == 3 && jb_ckpt_step(c) == -1,
              "vm: jukebox.hparams.Hyperparams read as a dict, empty model, no step");
        jb_ckpt_close(c);
        b_free(&f);
    }
    b_free(&b);

    /* a list that contains itself: hps is not plain, but open must not loop */
    B_OPS(&b, "\x80\x02}(");
    b_str(&b, "hps");
    B_OPS(&b, "}");
    b_str(&b, "x");
    B_OPS(&b,
          "]q\x07h\x07"
          "as");
    b_str(&b, "model");
    B_OPS(&b, "}");
    b_str(&b, "step");
    b_int(&b, -3);
    B_OPS(&b, "u.");
    {
        struct buf f = { 0 };
        build_legacy_head(&f);
        b_put(&f, b.p, b.n);
        B_OPS(&f, "\x80\x02].");
        seed_write("ok_cyclic_hps", f.p, f.n);
        c = jb_ckpt_open_memory(f.p, f.n);
        check(c && !jb_ckpt_hps(c) && jb_ckpt_step(c) == -3,
              "vm: cyclic hps is ignored, step -3 read");
        jb_ckpt_close(c);
        b_free(&f);
    }
    b_free(&b);
}

/* ---- fixtures ---------------------------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(sz > 0 ? (size_t)sz : 1);
    if (d && fread(d, 1, (size_t)sz, f) != (size_t)sz) {
        free(d);
        d = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return d;
}

static const char *dtype_str(enum jb_ckpt_dtype t)
{
    switch (t) {
    case JB_CKPT_F32:
        return "float32";
    case JB_CKPT_F16:
        return "float16";
    case JB_CKPT_BF16:
        return "bfloat16";
    case JB_CKPT_F64:
        return "float64";
    case JB_CKPT_I64:
        return "int64";
    case JB_CKPT_I32:
        return "int32";
    case JB_CKPT_I16:
        return "int16";
    case JB_CKPT_I8:
        return "int8";
    case JB_CKPT_U8:
        return "uint8";
    case JB_CKPT_BOOL:
        return "bool";
    }
    return "?";
}

static int64_t entry_numel(const struct jb_ckpt_entry *e)
{
    int64_t n = 1;
    for (int d = 0; d < e->n_dims; d++)
        n *= e->shape[d];
    return n;
}

/* Entries, order, shapes, dtypes and tied storages against *.params.json. */
static bool check_against_params(const struct jb_ckpt *c, const cJSON *params, const char *what)
{
    int n = cJSON_GetArraySize(params);
    if (jb_ckpt_n_entries(c) != n) {
        printf(
          "  %s: %lld entries, params.json has %d\n", what, (long long)jb_ckpt_n_entries(c), n);
        return false;
    }
    int n_shared = 0, n_bad = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *p                = cJSON_GetArrayItem(params, i);
        const char *name              = cJSON_GetObjectItem(p, "name")->valuestring;
        const char *dt                = cJSON_GetObjectItem(p, "dtype")->valuestring;
        const cJSON *sh               = cJSON_GetObjectItem(p, "shape");
        const cJSON *tied             = cJSON_GetObjectItem(p, "shares_storage_with");
        const struct jb_ckpt_entry *e = jb_ckpt_entry(c, i);
        bool ok = e && strcmp(e->name, name) == 0 && strcmp(dtype_str(e->type), dt) == 0 &&
                  e->n_dims == cJSON_GetArraySize(sh) &&
                  entry_numel(e) == (int64_t)cJSON_GetObjectItem(p, "numel")->valuedouble;
        for (int d = 0; ok && d < e->n_dims; d++)
            ok = e->shape[d] == (int64_t)cJSON_GetArrayItem(sh, d)->valuedouble;
        if (ok && cJSON_IsString(tied)) {
            const struct jb_ckpt_entry *o = jb_ckpt_find(c, tied->valuestring);
            ok                            = o && o->storage == e->storage;
            n_shared++;
        }
        if (!ok && n_bad++ < 5)
            printf("  %s: entry %d ('%s') differs from params.json\n", what, i, name);
    }
    /* no sharing beyond what params.json lists */
    int64_t max_storage = -1;
    for (int64_t i = 0; i < jb_ckpt_n_entries(c); i++)
        if (jb_ckpt_entry(c, i)->storage > max_storage) max_storage = jb_ckpt_entry(c, i)->storage;
    if (max_storage + 1 != n - n_shared) {
        printf("  %s: %lld storages for %d entries with %d tied\n",
               what,
               (long long)(max_storage + 1),
               n,
               n_shared);
        n_bad++;
    }
    return n_bad == 0;
}

/* Compares a checkpoint tensor with a little-endian float32 C-order .npy file. */
static bool equals_npy(const struct jb_ckpt *c, const char *name, const char *npy_path)
{
    size_t n;
    uint8_t *d = read_file(npy_path, &n);
    if (!d || n < 12 || memcmp(d, "\x93NUMPY", 6) != 0) {
        free(d);
        return false;
    }
    size_t hlen = d[6] == 1 ? (size_t)(d[8] | d[9] << 8) : (size_t)(d[8] | d[9] << 8 | d[10] << 16);
    size_t off  = d[6] == 1 ? 10 + hlen : 12 + hlen;
    const struct jb_ckpt_entry *e = jb_ckpt_find(c, name);
    bool ok                       = e && off <= n && memmem(d + off - hlen, hlen, "'<f4'", 5) &&
              (n - off) == (size_t)entry_numel(e) * 4;
    if (ok) {
        float *got = malloc((size_t)entry_numel(e) * 4);
        ok =
          got && jb_ckpt_read_f32(c, e, got) == JB_STATUS_OK && memcmp(got, d + off, n - off) == 0;
        free(got);
    }
    free(d);
    return ok;
}

struct read_all_arg {
    const struct jb_ckpt *c;
    const float *ref; /* concatenation of every entry, or NULL to fill */
    size_t total;
    bool ok;
};

static void *read_all_thread(void *arg)
{
    struct read_all_arg *a = arg;
    float *buf             = malloc(a->total * sizeof(float) + 4);
    size_t pos             = 0;
    a->ok                  = buf != NULL;
    for (int64_t i = 0; a->ok && i < jb_ckpt_n_entries(a->c); i++) {
        const struct jb_ckpt_entry *e = jb_ckpt_entry(a->c, i);
        a->ok                         = jb_ckpt_read_f32(a->c, e, buf + pos) == JB_STATUS_OK;
        pos += (size_t)entry_numel(e);
    }
    a->ok = a->ok && memcmp(buf, a->ref, a->total * sizeof(float)) == 0;
    free(buf);
    return NULL;
}

static size_t total_numel(const struct jb_ckpt *c)
{
    size_t total = 0;
    for (int64_t i = 0; i < jb_ckpt_n_entries(c); i++)
        total += (size_t)entry_numel(jb_ckpt_entry(c, i));
    return total;
}

/* Reads every tensor; NULL on failure. */
static float *read_all(const struct jb_ckpt *c)
{
    float *all = malloc(total_numel(c) * sizeof(float) + 4);
    size_t pos = 0;
    for (int64_t i = 0; all && i < jb_ckpt_n_entries(c); i++) {
        const struct jb_ckpt_entry *e = jb_ckpt_entry(c, i);
        if (jb_ckpt_read_f32(c, e, all + pos) != JB_STATUS_OK) {
            printf("  read '%s': %s\n", e->name, jb_last_error());
            free(all);
            return NULL;
        }
        pos += (size_t)entry_numel(e);
    }
    return all;
}

static void test_fixture(const char *root, const char *dir, const char *base)
{
    char path[1024], zpath[1024], jpath[1024];
    snprintf(path, sizeof path, "%s/%s/%s.pth.tar", root, dir, base);
    snprintf(zpath, sizeof zpath, "%s/%s/%s.zip.pth.tar", root, dir, base);
    snprintf(jpath, sizeof jpath, "%s/%s/%s.params.json", root, dir, base);
    size_t jn;
    char *js      = (char *)read_file(jpath, &jn);
    cJSON *params = js ? cJSON_ParseWithLength(js, jn) : NULL;
    free(js);
    if (!cJSON_IsArray(params)) {
        check(false, "%s: cannot read %s", dir, jpath);
        cJSON_Delete(params);
        return;
    }
    double t0         = jb_time_now();
    struct jb_ckpt *l = jb_ckpt_open(path);
    double t1         = jb_time_now();
    struct jb_ckpt *z = jb_ckpt_open(zpath);
    double t2         = jb_time_now();
    check(l && !jb_ckpt_is_zip(l),
          "%s legacy: open (%.1f ms) %s",
          dir,
          1e3 * (t1 - t0),
          l ? "" : jb_last_error());
    check(z && jb_ckpt_is_zip(z),
          "%s zip: open (%.1f ms) %s",
          dir,
          1e3 * (t2 - t1),
          z ? "" : jb_last_error());
    if (!l || !z) goto done;
    check(check_against_params(l, params, "legacy"),
          "%s legacy: %d entries match params.json",
          dir,
          cJSON_GetArraySize(params));
    check(check_against_params(z, params, "zip"),
          "%s zip: %d entries match params.json",
          dir,
          cJSON_GetArraySize(params));
    for (int k = 0; k < 2; k++) {
        const struct jb_ckpt *c    = k ? z : l;
        const struct jb_pyval *hps = jb_ckpt_hps(c);
        const struct jb_pyval *v   = jb_pyval_dict_get(hps, "n_ctx");
        if (!v) v = jb_pyval_dict_get(hps, "levels");
        check(jb_pyval_type(hps) == JB_PY_DICT && jb_pyval_type(v) == JB_PY_INT &&
                jb_ckpt_step(c) >= 0,
              "%s %s: hps dict of %zu items (%s = %lld), step %lld",
              dir,
              k ? "zip" : "legacy",
              jb_pyval_len(hps),
              jb_pyval_dict_get(hps, "n_ctx") ? "n_ctx" : "levels",
              (long long)jb_pyval_int(v),
              (long long)jb_ckpt_step(c));
    }
    float *a = read_all(l), *b = read_all(z);
    size_t total = total_numel(l);
    check(a && b && total == total_numel(z) && memcmp(a, b, total * sizeof(float)) == 0,
          "%s: legacy and zip data bit-identical (%zu values)",
          dir,
          total);
    /* concurrent reads of one zip (libzip handle under the ckpt's lock) */
    if (b) {
        pthread_t th[4];
        struct read_all_arg args[4];
        bool all_ok = true;
        for (int i = 0; i < 4; i++) {
            args[i] = (struct read_all_arg){ z, b, total, false };
            pthread_create(&th[i], NULL, read_all_thread, &args[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            all_ok &= args[i].ok;
        }
        check(all_ok, "%s zip: 4 threads read identical data", dir);
    }
    free(a);
    free(b);
    if (strcmp(dir, "vqvae") == 0) {
        for (int lv = 0; lv < 3; lv++) {
            char name[64], npy[1024];
            snprintf(name, sizeof name, "bottleneck.level_blocks.%d.k", lv);
            snprintf(npy, sizeof npy, "%s/vqvae/codebook_level%d.npy", root, lv);
            check(equals_npy(l, name, npy) && equals_npy(z, name, npy),
                  "vqvae: %s equals codebook_level%d.npy",
                  name,
                  lv);
        }
    }
done:
    jb_ckpt_close(l);
    jb_ckpt_close(z);
    cJSON_Delete(params);
}

/* Truncations of a real file: every 997 bytes, and each of the last 16 bytes. */
static void test_fixture_truncations(const char *root)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/vqvae/vqvae.pth.tar", root);
    size_t n;
    uint8_t *d = read_file(path, &n);
    if (!d) {
        check(false, "read %s", path);
        return;
    }
    int bad = 0, cases = 0;
    char first[256] = "", mid[256] = "";
    for (size_t len = 0; len < n; len += 997, cases++) {
        jb_clear_error();
        struct jb_ckpt *c = jb_ckpt_open_memory(d, len);
        if (c || !jb_last_error()[0]) bad++;
        if (len == 997) snprintf(first, sizeof first, "%s", jb_last_error());
        if (len == 997 * 600) snprintf(mid, sizeof mid, "%s", jb_last_error());
        jb_ckpt_close(c);
    }
    check(bad == 0,
          "reject vqvae legacy truncated every 997 bytes (%d cases, %d accepted)",
          cases,
          bad);
    printf("  e.g. at 997: %s\n  e.g. at %d: %s\n", first, 997 * 600, mid);
    for (size_t k = 1; k <= 16; k++) {
        jb_clear_error();
        struct jb_ckpt *c = jb_ckpt_open_memory(d, n - k);
        check(!c && jb_last_error()[0],
              "reject vqvae legacy without its last %zu bytes: %s",
              k,
              jb_last_error());
        jb_ckpt_close(c);
    }
    free(d);

    snprintf(path, sizeof path, "%s/vqvae/vqvae.zip.pth.tar", root);
    d = read_file(path, &n);
    if (!d) return;
    bad = 0, cases = 0;
    for (size_t len = 0; len < n; len += 997, cases++) {
        jb_clear_error();
        struct jb_ckpt *c = jb_ckpt_open_memory(d, len);
        if (c || !jb_last_error()[0]) bad++;
        jb_ckpt_close(c);
    }
    check(
      bad == 0, "reject vqvae zip truncated every 997 bytes (%d cases, %d accepted)", cases, bad);
    free(d);
}

/* ---- issue 10 item 1: containers that grow each other --------------------------------------- */

/* Two Hyperparams dicts A and B; then `rounds` times: A takes B's items (BUILD), B takes A's.
 * Their sizes grow like Fibonacci numbers: without a bound on container items and on the bytes
 * of the value graph, 200 rounds in 1.4 KB need more memory than any machine has. */
static void build_growth(struct buf *b, int rounds)
{
    B_OPS(b, "\x80\x02");
    b_global(b, "jukebox.hparams", "Hyperparams");
    B_OPS(b, "q\x00)\x81q\x01(");
    b_str(b, "a");
    B_OPS(b, "K\x01uh\x00)\x81q\x02(");
    b_str(b, "b");
    B_OPS(b, "K\x02u");
    for (int i = 0; i < rounds; i++)
        B_OPS(b,
              "h\x01h\x02"
              "b0h\x02h\x01"
              "b0");
    B_OPS(b, "h\x01.");
}

static void test_bounded_growth(void)
{
    struct buf b = { 0 };
    build_growth(&b, 200);
    seed_write("bad_hparams_build_growth", b.p, b.n);
    double t0 = jb_time_now();
    expect_pickle_reject("BUILD growing two Hyperparams into each other", b.p, b.n, "items");
    /* and as the object of a checkpoint (lenient VM): refused, not run out of memory */
    expect_reject_wrapped("BUILD growth", &b, "items");
    double dt = jb_time_now() - t0;
    check(dt < 10, "BUILD growth refused in %.2f s (%zu bytes of pickle)", dt, b.n);
    b_free(&b);

    /* a few rounds are fine: the result is a dict with both keys */
    build_growth(&b, 3);
    struct jb_pickle *p      = jb_pickle_load(b.p, b.n, NULL);
    const struct jb_pyval *r = jb_pickle_result(p);
    check(p && jb_pyval_dict_get(r, "a") && jb_pyval_dict_get(r, "b") &&
            jb_pickle_bytes(p) < ((size_t)1 << 20),
          "3 rounds of BUILD growth load (%zu items, %zu bytes)",
          jb_pyval_len(r),
          jb_pickle_bytes(p));
    jb_pickle_free(p);
    b_free(&b);

    /* a byte budget also bounds plain strings held by the memo */
    B_OPS(&b, "\x80\x02]");
    for (int i = 0; i < 64; i++) {
        b_u8(&b, 'B');
        b_le(&b, 1u << 20, 4);
        for (int k = 0; k < (1 << 20); k++)
            b_u8(&b, 'x');
        b_u8(&b, 'a');
    }
    B_OPS(&b, ".");
    struct jb_pickle_opts o = { .max_bytes = 16u << 20 };
    p                       = jb_pickle_load_opts(b.p, b.n, NULL, &o);
    check(!p && strstr(jb_last_error(), "MiB"),
          "a 16 MiB value budget refuses 64 MiB of strings: %s",
          jb_last_error());
    jb_pickle_free(p);
    b_free(&b);
}

/* ---- issue 11 item 4: unknown globals outside 'model' are inert placeholders -------------- */

static void test_placeholders(void)
{
    struct buf b = { 0 };
    /* numpy.float64(0.125) as pickled by numpy, and a NEWOBJ_EX, SETITEMS, APPENDS and BUILD
     * on placeholders; none of them is ever called */
    B_OPS(&b, "\x80\x02}(");
    b_str(&b, "loss");
    b_global(&b, "numpy.core.multiarray", "scalar");
    b_global(&b, "numpy", "dtype");
    b_str(&b, "f8");
    B_OPS(&b, "\x89\x88\x87R(K\x03");
    b_str(&b, "<");
    B_OPS(&b,
          "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbC\x08\x00\x00\x00\x00\x00\x00\xc0?\x86R");
    b_str(&b, "odd");
    b_global(&b, "some.module", "Thing");
    B_OPS(&b, ")}\x92(");
    b_str(&b, "k");
    B_OPS(&b,
          "K\x01u(K\x02"
          "eNb");
    b_str(&b, "model");
    B_OPS(&b, "}u.");
    struct jb_pickle_opts o     = { .opaque_globals = true };
    struct jb_pickle *p         = jb_pickle_load_opts(b.p, b.n, NULL, &o);
    const struct jb_pyval *r    = jb_pickle_result(p);
    const struct jb_pyval *loss = jb_pyval_dict_get(r, "loss");
    const struct jb_pyval *odd  = jb_pyval_dict_get(r, "odd");
    check(p && jb_pyval_type(loss) == JB_PY_OPAQUE &&
            strcmp(jb_pyval_str(loss), "numpy.core.multiarray.scalar") == 0 &&
            jb_pyval_type(odd) == JB_PY_OPAQUE &&
            strcmp(jb_pyval_str(odd), "some.module.Thing") == 0,
          "lenient VM: numpy scalar and NEWOBJ_EX/SETITEMS/APPENDS/BUILD on placeholders: %s",
          p ? "ok" : jb_last_error());
    jb_pickle_free(p);
    /* the strict VM still refuses them, naming the global */
    expect_pickle_reject("strict VM: numpy scalar", b.p, b.n, "numpy.core.multiarray.scalar");
    /* as a checkpoint: metrics outside 'model' pass, the (empty) model opens */
    struct buf f = { 0 };
    build_legacy_head(&f);
    b_put(&f, b.p, b.n);
    B_OPS(&f, "\x80\x02].");
    seed_write("ok_numpy_metrics", f.p, f.n);
    struct jb_ckpt *c = jb_ckpt_open_memory(f.p, f.n);
    check(c && jb_ckpt_n_entries(c) == 0,
          "checkpoint with numpy metrics opens: %s",
          c ? "ok" : jb_last_error());
    jb_ckpt_close(c);
    b_free(&f);
    b_free(&b);

    /* NEWOBJ_EX of an allowed class stays unsupported */
    B_OPS(&b, "\x80\x04");
    b_global(&b, "collections", "OrderedDict");
    B_OPS(&b, ")}\x92.");
    expect_reject_wrapped("NEWOBJ_EX of OrderedDict", &b, "NEWOBJ_EX");
    b_free(&b);

    /* inside 'model' a placeholder is refused, naming the global */
    B_OPS(&b, "\x80\x02}(");
    b_str(&b, "model");
    B_OPS(&b, "}(");
    b_str(&b, "w");
    b_global(&b, "posix", "system");
    b_str(&b, "echo pwned");
    B_OPS(&b, "\x85Ruu.");
    expect_reject_wrapped(
      "state dict entry made by posix.system", &b, "global 'posix.system' is not allowed");
    b_free(&b);
    B_OPS(&b, "\x80\x02}(");
    b_str(&b, "model");
    b_global(&b, "builtins", "eval");
    b_str(&b, "1");
    B_OPS(&b, "\x85Ru.");
    expect_reject_wrapped(
      "'model' made by builtins.eval", &b, "global 'builtins.eval' is not allowed");
    b_free(&b);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : NULL;
    struct stat st;
    char probe[1024];
    if (root) snprintf(probe, sizeof probe, "%s/vqvae/vqvae.pth.tar", root);
    if (!root || stat(probe, &st) != 0) {
        printf("SKIP: ../shared fixtures not found\n");
    } else {
        static const char *models[][2] = {
            { "vqvae", "vqvae" },
            { "upsampler_level_0", "prior_level_0" },
            { "upsampler_level_1", "prior_level_1" },
            { "prior_5b", "prior_level_2" },
            { "prior_5b_lyrics", "prior_level_2" },
            { "prior_1b_lyrics", "prior_level_2" },
        };
        for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
            test_fixture(root, models[i][0], models[i][1]);
        test_fixture_truncations(root);
    }
    test_vm();
    test_tiny();
    test_hostile_pickles();
    test_hostile_containers();
    test_bounded_growth();
    test_placeholders();
    return tc_summary();
}
