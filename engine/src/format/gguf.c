/*
 * format/gguf.c - GGUF (v2/v3) reader and streaming writer.
 *
 * The reader validates the whole file up front (header, metadata, tensor infos, data bounds),
 * so that every accessor afterwards is a plain lookup that cannot fail on bad data. It follows
 * the checks of ggml's gguf.cpp and adds a few of its own (no overlapping tensors, UTF-8
 * identifiers, bool bytes 0/1). Strings are copied out NUL-terminated; tensor data stays in
 * the mapping (or the caller's buffer).
 *
 * The writer collects metadata and tensor declarations in memory, then streams the file to a
 * unique temporary beside it (core/outfile.h: mkostemp, so a planted file or symlink is never
 * followed) and renames it into place only once every tensor has been written, so a crash or
 * an error never leaves a half-written model under the final name.
 */
#include "format/gguf.h"
#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads and writes little-endian data with memcpy: port it for big-endian hosts"
#endif

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_VERSION 3u
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_ALIGNMENT (1u << 16)
#define GGUF_MAX_NAME 255u /* bytes in a tensor name */
#define GGUF_MAX_DIMS 4u
#define GGUF_ALIGNMENT_KEY "general.alignment"

/* Smallest possible encodings, used to reject counts that cannot fit in the bytes left. */
#define GGUF_MIN_KV_BYTES 14u     /* u64 key len + 1 key byte + u32 type + 1 value byte      */
#define GGUF_MIN_TENSOR_BYTES 25u /* u64 name len + 1 byte + u32 n_dims + u32 type + u64 offset */

/* ggml_type ids of the element types Encore stores. */
enum {
    GGML_TYPE_F32  = 0,
    GGML_TYPE_F16  = 1,
    GGML_TYPE_I32  = 26,
    GGML_TYPE_BF16 = 30,
};

static const size_t kv_type_size[JB_GGUF_TYPE_COUNT] = {
    [JB_GGUF_TYPE_UINT8] = 1,   [JB_GGUF_TYPE_INT8] = 1,   [JB_GGUF_TYPE_UINT16] = 2,
    [JB_GGUF_TYPE_INT16] = 2,   [JB_GGUF_TYPE_UINT32] = 4, [JB_GGUF_TYPE_INT32] = 4,
    [JB_GGUF_TYPE_FLOAT32] = 4, [JB_GGUF_TYPE_BOOL] = 1,   [JB_GGUF_TYPE_STRING] = 0,
    [JB_GGUF_TYPE_ARRAY] = 0,   [JB_GGUF_TYPE_UINT64] = 8, [JB_GGUF_TYPE_INT64] = 8,
    [JB_GGUF_TYPE_FLOAT64] = 8,
};

const char *jb_gguf_type_name(enum jb_gguf_type type)
{
    static const char *const names[JB_GGUF_TYPE_COUNT] = {
        "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
        "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)type < JB_GGUF_TYPE_COUNT ? names[type] : "?";
}

/* Names of the ggml types we do not support, so the error says what the file contains. */
static const char *ggml_type_name(uint32_t t)
{
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",      [2] = "Q4_0",   [3] = "Q4_1",    [6] = "Q5_0",
        [7] = "Q5_1",    [8] = "Q8_0",     [9] = "Q8_1",   [10] = "Q2_K",   [11] = "Q3_K",
        [12] = "Q4_K",   [13] = "Q5_K",    [14] = "Q6_K",  [15] = "Q8_K",   [16] = "IQ2_XXS",
        [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
        [22] = "IQ2_S",  [23] = "IQ4_XS",  [24] = "I8",    [25] = "I16",    [26] = "I32",
        [27] = "I64",    [28] = "F64",     [29] = "IQ1_M", [30] = "BF16",
    };
    if (t < sizeof names / sizeof names[0] && names[t]) return names[t];
    return "unknown";
}

static bool ggml_to_dtype(uint32_t t, enum jb_dtype *out)
{
    switch (t) {
    case GGML_TYPE_F32:
        *out = JB_DTYPE_F32;
        return true;
    case GGML_TYPE_F16:
        *out = JB_DTYPE_F16;
        return true;
    case GGML_TYPE_BF16:
        *out = JB_DTYPE_BF16;
        return true;
    case GGML_TYPE_I32:
        *out = JB_DTYPE_I32;
        return true;
    default:
        return false;
    }
}

static uint32_t dtype_to_ggml(enum jb_dtype t)
{
    switch (t) {
    case JB_DTYPE_F32:
        return GGML_TYPE_F32;
    case JB_DTYPE_F16:
        return GGML_TYPE_F16;
    case JB_DTYPE_BF16:
        return GGML_TYPE_BF16;
    case JB_DTYPE_I32:
        return GGML_TYPE_I32;
    case JB_DTYPE_COUNT:
        break;
    }
    return UINT32_MAX;
}

static bool is_pow2(uint64_t x)
{
    return x && !(x & (x - 1));
}

/* Rounds x up to a multiple of align (a power of two); false on overflow. */
static bool align_up_u64(uint64_t x, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (__builtin_add_overflow(x, align - 1, &t)) return false;
    *out = t & ~(align - 1);
    return true;
}

/* Strict UTF-8 check: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

/* Keys and tensor names end up in messages and lookups, so they must be clean identifiers:
 * returns NULL when acceptable, or what is wrong with the name. */
static const char *name_problem(const char *s, size_t n, size_t max)
{
    if (n == 0) return "is empty";
    if (n > max) return "is too long";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0) return "contains a NUL byte";
        if (c < 0x20 || c == 0x7f) return "contains a control character";
    }
    if (!utf8_valid((const unsigned char *)s, n)) return "is not valid UTF-8";
    return NULL;
}

static char *dup_n(const char *s, size_t n)
{
    size_t sz;
    if (!jb_add_size(n, 1, &sz)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "gguf: string size overflow");
        return NULL;
    }
    char *d = jb_malloc(sz);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Reads one element of a numeric type from p (possibly unaligned) as an int64. */
static bool elem_to_int(enum jb_gguf_type t, const uint8_t *p, int64_t *out)
{
    switch (t) {
    case JB_GGUF_TYPE_UINT8:
        *out = p[0];
        return true;
    case JB_GGUF_TYPE_INT8:
        *out = (int8_t)p[0];
        return true;
    case JB_GGUF_TYPE_UINT16: {
        uint16_t v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return true;
    }
    case JB_GGUF_TYPE_INT16: {
        int16_t v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return true;
    }
    case JB_GGUF_TYPE_UINT32: {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return true;
    }
    case JB_GGUF_TYPE_INT32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return true;
    }
    case JB_GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        if (v > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v;
        return true;
    }
    case JB_GGUF_TYPE_INT64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return true;
    }
    default:
        return false;
    }
}

static bool elem_to_float(enum jb_gguf_type t, const uint8_t *p, double *out)
{
    if (t == JB_GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return true;
    }
    if (t == JB_GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return true;
    }
    return false;
}

/* =========================================================================================== */
/* reader                                                                                       */

struct gguf_kv {
    char *key;
    enum jb_gguf_type type;
    enum jb_gguf_type arr_type; /* ARRAY only */
    uint64_t n;                 /* ARRAY: number of elements */
    uint8_t val[8];             /* scalar numbers and bools, raw little-endian bytes */
    const uint8_t *raw;         /* ARRAY of numbers/bools: the elements inside the buffer */
    char *str;                  /* STRING: NUL-terminated copy */
    char **strs;                /* ARRAY of STRING: n pointers into the same allocation */
};

struct gguf_tensor {
    struct jb_tensor t;
    char *name;
    uint64_t offset; /* relative to the data section */
    uint64_t nbytes;
};

struct name_ref {
    const char *name;
    int64_t idx;
};

struct jb_gguf {
    const uint8_t *buf;
    size_t size;
    void *map; /* our mmap, or NULL for a caller's buffer */
    size_t map_size;

    uint32_t version;
    size_t alignment;
    size_t data_offset; /* start of the data section within buf */

    int64_t n_kv;
    struct gguf_kv *kv;
    struct name_ref *kv_sorted; /* by key, for duplicate detection and lookup */

    int64_t n_tensors;
    struct gguf_tensor *tensors;
    struct name_ref *tensor_sorted;
};

/* Cursor over the input; src names it in messages (a path, or NULL for a memory buffer). */
struct reader {
    const uint8_t *p;
    size_t size;
    size_t pos;
    const char *src;
};

static void rd_fail(const struct reader *r, const char *fmt, ...) JB_PRINTF(2, 3);
static void rd_fail(const struct reader *r, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->src)
        jb_fail(JB_STATUS_ERR_FORMAT, "gguf: %s: %s", r->src, msg);
    else
        jb_fail(JB_STATUS_ERR_FORMAT, "gguf: %s", msg);
}

static size_t rd_left(const struct reader *r)
{
    return r->size - r->pos;
}

static bool rd_bytes(struct reader *r, void *dst, size_t n, const char *what)
{
    if (rd_left(r) < n) {
        rd_fail(r,
                "truncated file reading %s at offset %zu, got %zu bytes, expected %zu",
                what,
                r->pos,
                rd_left(r),
                n);
        return false;
    }
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return true;
}

static bool rd_u32(struct reader *r, uint32_t *v, const char *what)
{
    return rd_bytes(r, v, sizeof *v, what);
}

static bool rd_u64(struct reader *r, uint64_t *v, const char *what)
{
    return rd_bytes(r, v, sizeof *v, what);
}

/* Reads a gguf_string in place (not copied, not NUL-terminated). */
static bool rd_str(struct reader *r, const char **s, size_t *len, const char *what)
{
    uint64_t n;
    if (!rd_u64(r, &n, what)) return false;
    if (n > JB_GGUF_MAX_STRING) {
        rd_fail(r,
                "%s: string too long, got %" PRIu64 " bytes, expected <= %u",
                what,
                n,
                JB_GGUF_MAX_STRING);
        return false;
    }
    if (n > rd_left(r)) {
        rd_fail(r,
                "%s: string length past end of file, got %" PRIu64 ", expected <= %zu",
                what,
                n,
                rd_left(r));
        return false;
    }
    *s   = (const char *)r->p + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return true;
}

static bool check_bools(const struct reader *r,
                        const struct gguf_kv *kv,
                        const uint8_t *p,
                        uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] > 1) {
            rd_fail(r, "KV '%s': bad bool value, got %u, expected 0 or 1", kv->key, p[i]);
            return false;
        }
    }
    return true;
}

static bool rd_str_array(struct reader *r, struct gguf_kv *kv)
{
    /* Each element takes at least its u64 length: reject counts that cannot fit first, so a
     * hostile count cannot make us allocate a huge pointer table. */
    if (kv->n > rd_left(r) / 8) {
        rd_fail(r,
                "KV '%s': string array count past end of file, got %" PRIu64 ", expected <= %zu",
                kv->key,
                kv->n,
                rd_left(r) / 8);
        return false;
    }
    /* Pass 1: validate and measure; pass 2: copy into one block (pointers, then strings). */
    size_t start = r->pos, chars = 0;
    char what[80];
    snprintf(what, sizeof what, "element of array '%.40s'", kv->key);
    for (uint64_t i = 0; i < kv->n; i++) {
        const char *s;
        size_t len;
        if (!rd_str(r, &s, &len, what)) return false;
        if (!jb_add_size(chars, len + 1, &chars)) {
            rd_fail(r, "KV '%s': string array too large", kv->key);
            return false;
        }
    }
    size_t table, total;
    if (!jb_mul_size((size_t)kv->n, sizeof(char *), &table) || !jb_add_size(table, chars, &total)) {
        rd_fail(r, "KV '%s': string array too large", kv->key);
        return false;
    }
    char **strs = jb_malloc(total);
    if (!strs) return false;
    kv->strs  = strs;
    char *dst = (char *)strs + table;
    r->pos    = start;
    for (uint64_t i = 0; i < kv->n; i++) {
        const char *s;
        size_t len;
        if (!rd_str(r, &s, &len, what)) return false;
        memcpy(dst, s, len);
        dst[len] = '\0';
        strs[i]  = dst;
        dst += len + 1;
    }
    return true;
}

static bool rd_value(struct reader *r, struct gguf_kv *kv)
{
    switch (kv->type) {
    case JB_GGUF_TYPE_STRING: {
        const char *s;
        size_t len;
        char what[80];
        snprintf(what, sizeof what, "value of '%.40s'", kv->key);
        if (!rd_str(r, &s, &len, what)) return false;
        kv->str = dup_n(s, len);
        return kv->str != NULL;
    }
    case JB_GGUF_TYPE_ARRAY: {
        uint32_t at;
        if (!rd_u32(r, &at, "array type") || !rd_u64(r, &kv->n, "array count")) return false;
        if (at == JB_GGUF_TYPE_ARRAY) {
            rd_fail(r,
                    "KV '%s': nested arrays are not supported, got element type %u (array), "
                    "expected a scalar type",
                    kv->key,
                    at);
            return false;
        }
        if (at >= JB_GGUF_TYPE_COUNT) {
            rd_fail(r,
                    "KV '%s': unknown array element type, got %u, expected 0..%d",
                    kv->key,
                    at,
                    JB_GGUF_TYPE_COUNT - 1);
            return false;
        }
        kv->arr_type = (enum jb_gguf_type)at;
        if (kv->n > JB_GGUF_MAX_ARRAY) {
            rd_fail(r,
                    "KV '%s': array too long, got %" PRIu64 " elements, expected <= %u",
                    kv->key,
                    kv->n,
                    JB_GGUF_MAX_ARRAY);
            return false;
        }
        if (kv->arr_type == JB_GGUF_TYPE_STRING) return rd_str_array(r, kv);
        size_t esize = kv_type_size[kv->arr_type];
        if (kv->n > rd_left(r) / esize) {
            rd_fail(r,
                    "KV '%s': array data past end of file, got %" PRIu64
                    " elements of %zu bytes, expected <= %zu bytes",
                    kv->key,
                    kv->n,
                    esize,
                    rd_left(r));
            return false;
        }
        kv->raw = r->p + r->pos;
        if (kv->arr_type == JB_GGUF_TYPE_BOOL && !check_bools(r, kv, kv->raw, kv->n)) return false;
        r->pos += (size_t)kv->n * esize;
        return true;
    }
    default: {
        char what[80];
        snprintf(what, sizeof what, "%s value of '%.40s'", jb_gguf_type_name(kv->type), kv->key);
        if (!rd_bytes(r, kv->val, kv_type_size[kv->type], what)) return false;
        if (kv->type == JB_GGUF_TYPE_BOOL && !check_bools(r, kv, kv->val, 1)) return false;
        return true;
    }
    }
}

static int cmp_name_ref(const void *a, const void *b)
{
    return strcmp(((const struct name_ref *)a)->name, ((const struct name_ref *)b)->name);
}

/* Sorts refs by name; fails on the first duplicate. */
static bool sort_unique(const struct reader *r,
                        struct name_ref *refs,
                        int64_t n,
                        const char *what,
                        const char *where)
{
    if (n > 1) qsort(refs, (size_t)n, sizeof *refs, cmp_name_ref);
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(refs[i - 1].name, refs[i].name) == 0) {
            int64_t a = refs[i - 1].idx < refs[i].idx ? refs[i - 1].idx : refs[i].idx;
            int64_t b = refs[i - 1].idx < refs[i].idx ? refs[i].idx : refs[i - 1].idx;
            rd_fail(r,
                    "duplicate %s '%s', got it at %s %" PRId64 " and %s %" PRId64
                    ", expected unique %ss",
                    what,
                    refs[i].name,
                    where,
                    a,
                    where,
                    b,
                    what);
            return false;
        }
    }
    return true;
}

static int64_t find_ref(const struct name_ref *refs, int64_t n, const char *name)
{
    if (!refs || !name || n <= 0) return -1;
    struct name_ref key        = { .name = name };
    const struct name_ref *hit = bsearch(&key, refs, (size_t)n, sizeof *refs, cmp_name_ref);
    return hit ? hit->idx : -1;
}

static bool parse_header(struct reader *r, struct jb_gguf *g, uint64_t *n_tensors, uint64_t *n_kv)
{
    uint32_t magic;
    if (!rd_u32(r, &magic, "magic")) return false;
    if (magic != GGUF_MAGIC) {
        char txt[5];
        for (int i = 0; i < 4; i++) {
            unsigned char c = (unsigned char)(magic >> (8 * i));
            txt[i]          = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
        }
        txt[4] = '\0';
        rd_fail(
          r, "bad magic, got 0x%08x (\"%s\"), expected 0x%08x (\"GGUF\")", magic, txt, GGUF_MAGIC);
        return false;
    }
    if (!rd_u32(r, &g->version, "version")) return false;
    if (g->version == 0x02000000u || g->version == 0x03000000u) {
        rd_fail(r,
                "big-endian GGUF files are not supported, got version 0x%08x, expected 2 or 3",
                g->version);
        return false;
    }
    if (g->version != 2 && g->version != 3) {
        rd_fail(r, "unsupported version, got %u, expected 2 or 3", g->version);
        return false;
    }
    if (!rd_u64(r, n_tensors, "tensor count") || !rd_u64(r, n_kv, "KV count")) return false;
    if (*n_tensors > JB_GGUF_MAX_TENSORS) {
        rd_fail(
          r, "too many tensors, got %" PRIu64 ", expected <= %u", *n_tensors, JB_GGUF_MAX_TENSORS);
        return false;
    }
    if (*n_kv > JB_GGUF_MAX_KV) {
        rd_fail(r, "too many KVs, got %" PRIu64 ", expected <= %u", *n_kv, JB_GGUF_MAX_KV);
        return false;
    }
    uint64_t need = *n_kv * GGUF_MIN_KV_BYTES + *n_tensors * GGUF_MIN_TENSOR_BYTES; /* < 2^22 */
    if (need > rd_left(r)) {
        rd_fail(r,
                "%" PRIu64 " KVs and %" PRIu64 " tensors cannot fit in the file, got %zu bytes "
                "left, expected >= %" PRIu64,
                *n_kv,
                *n_tensors,
                rd_left(r),
                need);
        return false;
    }
    return true;
}

static bool parse_kvs(struct reader *r, struct jb_gguf *g, uint64_t n_kv)
{
    g->kv        = jb_calloc(n_kv, sizeof *g->kv);
    g->kv_sorted = jb_calloc(n_kv, sizeof *g->kv_sorted);
    if (!g->kv || !g->kv_sorted) return false;
    g->n_kv = (int64_t)n_kv; /* entries are zeroed, so a partial parse frees cleanly */
    for (int64_t i = 0; i < g->n_kv; i++) {
        struct gguf_kv *kv = &g->kv[i];
        const char *key;
        size_t len;
        char what[64];
        snprintf(what, sizeof what, "key of KV %" PRId64, i);
        if (!rd_str(r, &key, &len, what)) return false;
        const char *bad = name_problem(key, len, JB_GGUF_MAX_STRING);
        if (bad) {
            rd_fail(r, "key of KV %" PRId64 " %s, expected a non-empty UTF-8 identifier", i, bad);
            return false;
        }
        if (!(kv->key = dup_n(key, len))) return false;
        g->kv_sorted[i] = (struct name_ref){ kv->key, i };
        uint32_t type;
        if (!rd_u32(r, &type, "KV value type")) return false;
        if (type >= JB_GGUF_TYPE_COUNT) {
            rd_fail(r,
                    "KV '%s': unknown value type, got %u, expected 0..%d",
                    kv->key,
                    type,
                    JB_GGUF_TYPE_COUNT - 1);
            return false;
        }
        kv->type = (enum jb_gguf_type)type;
        if (!rd_value(r, kv)) return false;
    }
    if (!sort_unique(r, g->kv_sorted, g->n_kv, "key", "KV")) return false;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai   = find_ref(g->kv_sorted, g->n_kv, GGUF_ALIGNMENT_KEY);
    if (ai >= 0) {
        const struct gguf_kv *kv = &g->kv[ai];
        if (kv->type != JB_GGUF_TYPE_UINT32) {
            rd_fail(r,
                    "bad type of %s, got %s, expected u32",
                    GGUF_ALIGNMENT_KEY,
                    jb_gguf_type_name(kv->type));
            return false;
        }
        uint32_t a;
        memcpy(&a, kv->val, sizeof a);
        if (!is_pow2(a) || a > GGUF_MAX_ALIGNMENT) {
            rd_fail(r,
                    "bad %s, got %u, expected a power of two <= %u",
                    GGUF_ALIGNMENT_KEY,
                    a,
                    GGUF_MAX_ALIGNMENT);
            return false;
        }
        g->alignment = a;
    }
    return true;
}

static bool parse_tensor_info(struct reader *r, struct jb_gguf *g, int64_t i)
{
    struct gguf_tensor *ti = &g->tensors[i];
    const char *name;
    size_t len;
    char what[64];
    snprintf(what, sizeof what, "name of tensor %" PRId64, i);
    if (!rd_str(r, &name, &len, what)) return false;
    const char *bad = name_problem(name, len, GGUF_MAX_NAME);
    if (bad) {
        rd_fail(r,
                "name of tensor %" PRId64 " %s (%zu bytes), expected 1..%u bytes of UTF-8",
                i,
                bad,
                len,
                GGUF_MAX_NAME);
        return false;
    }
    if (!(ti->name = dup_n(name, len))) return false;
    ti->t.name          = ti->name;
    g->tensor_sorted[i] = (struct name_ref){ ti->name, i };

    uint32_t n_dims;
    if (!rd_u32(r, &n_dims, "tensor n_dims")) return false;
    if (n_dims > GGUF_MAX_DIMS) {
        rd_fail(r,
                "tensor '%s': too many dimensions, got %u, expected <= %u",
                ti->name,
                n_dims,
                GGUF_MAX_DIMS);
        return false;
    }
    uint64_t ne[GGUF_MAX_DIMS];
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (!rd_u64(r, &ne[d], "tensor dimension")) return false;
        if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX) {
            rd_fail(r,
                    "tensor '%s': bad dimension %u, got %" PRId64 ", expected >= 1",
                    ti->name,
                    d,
                    (int64_t)ne[d]);
            return false;
        }
        if (__builtin_mul_overflow(numel, (int64_t)ne[d], &numel)) {
            rd_fail(r,
                    "tensor '%s': element count overflows int64 at dimension %u, expected "
                    "a product of dimensions < 2^63",
                    ti->name,
                    d);
            return false;
        }
    }
    uint32_t gt;
    if (!rd_u32(r, &gt, "tensor type")) return false;
    if (!ggml_to_dtype(gt, &ti->t.type)) {
        rd_fail(r,
                "tensor '%s': unsupported ggml type, got %u (%s), expected 0 (F32), 1 (F16), "
                "30 (BF16) or 26 (I32)",
                ti->name,
                gt,
                ggml_type_name(gt));
        return false;
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)jb_dtype_size(ti->t.type), &nbytes) ||
        nbytes > (uint64_t)INT64_MAX || nbytes > (uint64_t)SIZE_MAX) {
        rd_fail(r,
                "tensor '%s': byte size overflows, got %" PRId64 " elements of %zu bytes",
                ti->name,
                numel,
                jb_dtype_size(ti->t.type));
        return false;
    }
    ti->nbytes = nbytes;
    if (!rd_u64(r, &ti->offset, "tensor offset")) return false;
    if (ti->offset % g->alignment) {
        rd_fail(r,
                "tensor '%s': unaligned data offset, got %" PRIu64 ", expected a multiple of %zu",
                ti->name,
                ti->offset,
                g->alignment);
        return false;
    }
    ti->t.n_dims = (int)n_dims;
    for (uint32_t d = 0; d < n_dims; d++)
        ti->t.shape[d] = (int64_t)ne[n_dims - 1 - d];
    return true;
}

struct extent {
    uint64_t begin, end;
    int64_t idx;
};

static int cmp_extent(const void *a, const void *b)
{
    const struct extent *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Places the data section and checks every tensor lies inside it, without overlaps. */
static bool check_data(struct reader *r, struct jb_gguf *g)
{
    uint64_t start;
    if (!align_up_u64(r->pos, g->alignment, &start)) {
        rd_fail(r, "data section offset overflows");
        return false;
    }
    if (g->n_tensors == 0) {
        /* metadata-only file: the padding before the (empty) data section is optional */
        g->data_offset = start <= r->size ? (size_t)start : r->size;
        return true;
    }
    if (start > r->size) {
        rd_fail(r,
                "data section starts past end of file, got file size %zu, expected >= %" PRIu64,
                r->size,
                start);
        return false;
    }
    g->data_offset   = (size_t)start;
    size_t data_size = r->size - g->data_offset;

    struct extent *ext = jb_calloc((size_t)g->n_tensors, sizeof *ext);
    if (!ext) return false;
    bool ok = true;
    for (int64_t i = 0; i < g->n_tensors && ok; i++) {
        const struct gguf_tensor *ti = &g->tensors[i];
        uint64_t end;
        if (__builtin_add_overflow(ti->offset, ti->nbytes, &end) || end > data_size) {
            rd_fail(r,
                    "tensor '%s': data past end of file, got offset %" PRIu64 " + %" PRIu64
                    " bytes, expected <= %zu bytes of data",
                    ti->name,
                    ti->offset,
                    ti->nbytes,
                    data_size);
            ok = false;
        }
        ext[i] = (struct extent){ ti->offset, end, i };
    }
    if (ok) qsort(ext, (size_t)g->n_tensors, sizeof *ext, cmp_extent);
    for (int64_t k = 1; k < g->n_tensors && ok; k++) {
        if (ext[k].begin < ext[k - 1].end) {
            rd_fail(r,
                    "tensors '%s' and '%s' overlap, got offset %" PRIu64
                    " for the second, expected >= %" PRIu64,
                    g->tensors[ext[k - 1].idx].name,
                    g->tensors[ext[k].idx].name,
                    ext[k].begin,
                    ext[k - 1].end);
            ok = false;
        }
    }
    /* Every writer (ggml, gguf-py, ours) pads the last tensor too, and ggml's own reader
     * needs those bytes: a shorter file is truncated. */
    if (ok) {
        const struct extent *last = &ext[g->n_tensors - 1];
        uint64_t padded;
        if (!align_up_u64(last->end, g->alignment, &padded)) padded = UINT64_MAX;
        if (padded > data_size) {
            rd_fail(r,
                    "data section truncated, got %zu bytes, expected >= %" PRIu64
                    " (last tensor '%s' padded to the alignment %zu)",
                    data_size,
                    padded,
                    g->tensors[last->idx].name,
                    g->alignment);
            ok = false;
        }
    }
    free(ext);
    if (!ok) return false;
    for (int64_t i = 0; i < g->n_tensors; i++)
        g->tensors[i].t.data = (void *)(uintptr_t)(g->buf + g->data_offset + g->tensors[i].offset);
    return true;
}

static void gguf_free_contents(struct jb_gguf *g)
{
    for (int64_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
        free(g->kv[i].strs);
    }
    for (int64_t i = 0; g->tensors && i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->kv);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->tensor_sorted);
}

static struct jb_gguf *gguf_parse(const uint8_t *buf, size_t size, const char *src)
{
    struct reader r   = { .p = buf, .size = size, .pos = 0, .src = src };
    struct jb_gguf *g = jb_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->buf  = buf;
    g->size = size;

    uint64_t n_tensors = 0, n_kv = 0;
    bool ok = parse_header(&r, g, &n_tensors, &n_kv) && parse_kvs(&r, g, n_kv);
    if (ok) {
        g->tensors       = jb_calloc(n_tensors, sizeof *g->tensors);
        g->tensor_sorted = jb_calloc(n_tensors, sizeof *g->tensor_sorted);
        ok               = g->tensors && g->tensor_sorted;
    }
    if (ok) {
        g->n_tensors = (int64_t)n_tensors;
        for (int64_t i = 0; i < g->n_tensors && ok; i++)
            ok = parse_tensor_info(&r, g, i);
    }
    ok = ok && sort_unique(&r, g->tensor_sorted, g->n_tensors, "tensor name", "tensor") &&
         check_data(&r, g);
    if (!ok) {
        gguf_free_contents(g);
        free(g);
        return NULL;
    }
    return g;
}

struct jb_gguf *jb_gguf_open_memory(const void *data, size_t size)
{
    static const uint8_t empty[1] = { 0 };
    if (!data && size) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf: NULL buffer of %zu bytes", size);
        return NULL;
    }
    return gguf_parse(data ? data : empty, size, NULL);
}

struct jb_gguf *jb_gguf_open(const char *path)
{
    static const uint8_t empty[1] = { 0 };
    if (!path) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf: NULL path");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        jb_fail(JB_STATUS_ERR_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        jb_fail(JB_STATUS_ERR_IO, "gguf: cannot stat '%s': %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        jb_fail(JB_STATUS_ERR_IO, "gguf: '%s' is not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX) {
        jb_fail(JB_STATUS_ERR_IO, "gguf: '%s' is too large to map", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map   = NULL;
    if (size > 0) { /* mmap of 0 bytes fails; an empty file is reported by the parser */
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            jb_fail(JB_STATUS_ERR_IO, "gguf: cannot map '%s': %s", path, strerror(errno));
            close(fd);
            return NULL;
        }
    }
    close(fd); /* the mapping stays valid */
    struct jb_gguf *g = gguf_parse(map ? map : empty, size, path);
    if (!g) {
        if (map) munmap(map, size);
        return NULL;
    }
    g->map      = map;
    g->map_size = size;
    return g;
}

void jb_gguf_drop_pages(const struct jb_gguf *g, const void *p, size_t n)
{
    if (!g || !g->map || !p || !n) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), map = (uintptr_t)g->map;
    uintptr_t lo = ((uintptr_t)p + page - 1) / page * page, hi = ((uintptr_t)p + n) / page * page;
    if (lo < map) lo = map; /* only whole pages of the tensor: its neighbours may be in use */
    if (hi > map + g->map_size) hi = (map + g->map_size) / page * page;
    /* the mapping is private and read-only, so nothing is lost: a later read faults the page in
     * again from the page cache */
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void jb_gguf_close(struct jb_gguf *g)
{
    if (!g) return;
    gguf_free_contents(g);
    if (g->map) munmap(g->map, g->map_size);
    free(g);
}

uint32_t jb_gguf_version(const struct jb_gguf *g)
{
    return g ? g->version : 0;
}

size_t jb_gguf_alignment(const struct jb_gguf *g)
{
    return g ? g->alignment : 0;
}

size_t jb_gguf_data_offset(const struct jb_gguf *g)
{
    return g ? g->data_offset : 0;
}

int64_t jb_gguf_n_kv(const struct jb_gguf *g)
{
    return g ? g->n_kv : 0;
}

int64_t jb_gguf_find_key(const struct jb_gguf *g, const char *key)
{
    return g ? find_ref(g->kv_sorted, g->n_kv, key) : -1;
}

static const struct gguf_kv *kv_at(const struct jb_gguf *g, int64_t i)
{
    return (g && i >= 0 && i < g->n_kv) ? &g->kv[i] : NULL;
}

static const struct gguf_kv *kv_by_key(const struct jb_gguf *g, const char *key)
{
    return g ? kv_at(g, jb_gguf_find_key(g, key)) : NULL;
}

const char *jb_gguf_key(const struct jb_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

enum jb_gguf_type jb_gguf_kv_type(const struct jb_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : JB_GGUF_TYPE_COUNT;
}

enum jb_gguf_type jb_gguf_arr_type(const struct jb_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == JB_GGUF_TYPE_ARRAY ? kv->arr_type : JB_GGUF_TYPE_COUNT;
}

uint64_t jb_gguf_arr_len(const struct jb_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == JB_GGUF_TYPE_ARRAY ? kv->n : 0;
}

bool jb_gguf_get_int(const struct jb_gguf *g, const char *key, int64_t *out)
{
    const struct gguf_kv *kv = kv_by_key(g, key);
    int64_t v;
    if (!kv || !elem_to_int(kv->type, kv->val, &v)) return false;
    *out = v;
    return true;
}

bool jb_gguf_get_float(const struct jb_gguf *g, const char *key, double *out)
{
    const struct gguf_kv *kv = kv_by_key(g, key);
    double v;
    if (!kv || !elem_to_float(kv->type, kv->val, &v)) return false;
    *out = v;
    return true;
}

bool jb_gguf_get_bool(const struct jb_gguf *g, const char *key, bool *out)
{
    const struct gguf_kv *kv = kv_by_key(g, key);
    if (!kv || kv->type != JB_GGUF_TYPE_BOOL) return false;
    *out = kv->val[0] != 0;
    return true;
}

const char *jb_gguf_get_str(const struct jb_gguf *g, const char *key)
{
    const struct gguf_kv *kv = kv_by_key(g, key);
    return kv && kv->type == JB_GGUF_TYPE_STRING ? kv->str : NULL;
}

/* The array KV under key with element i present, or NULL. */
static const struct gguf_kv *arr_elem(const struct jb_gguf *g, const char *key, uint64_t i)
{
    const struct gguf_kv *kv = kv_by_key(g, key);
    return kv && kv->type == JB_GGUF_TYPE_ARRAY && i < kv->n ? kv : NULL;
}

/* Element i of a numeric or bool array (NULL for string arrays, which have no raw data). */
static const uint8_t *arr_raw(const struct gguf_kv *kv, uint64_t i)
{
    return kv && kv->raw ? kv->raw + i * kv_type_size[kv->arr_type] : NULL;
}

bool jb_gguf_get_arr_int(const struct jb_gguf *g, const char *key, uint64_t i, int64_t *out)
{
    const struct gguf_kv *kv = arr_elem(g, key, i);
    const uint8_t *p         = arr_raw(kv, i);
    int64_t v;
    if (!p || !elem_to_int(kv->arr_type, p, &v)) return false;
    *out = v;
    return true;
}

bool jb_gguf_get_arr_float(const struct jb_gguf *g, const char *key, uint64_t i, double *out)
{
    const struct gguf_kv *kv = arr_elem(g, key, i);
    const uint8_t *p         = arr_raw(kv, i);
    double v;
    if (!p || !elem_to_float(kv->arr_type, p, &v)) return false;
    *out = v;
    return true;
}

bool jb_gguf_get_arr_bool(const struct jb_gguf *g, const char *key, uint64_t i, bool *out)
{
    const struct gguf_kv *kv = arr_elem(g, key, i);
    const uint8_t *p         = arr_raw(kv, i);
    if (!p || kv->arr_type != JB_GGUF_TYPE_BOOL) return false;
    *out = *p != 0;
    return true;
}

const char *jb_gguf_get_arr_str(const struct jb_gguf *g, const char *key, uint64_t i)
{
    const struct gguf_kv *kv = arr_elem(g, key, i);
    return kv && kv->arr_type == JB_GGUF_TYPE_STRING ? kv->strs[i] : NULL;
}

int64_t jb_gguf_n_tensors(const struct jb_gguf *g)
{
    return g ? g->n_tensors : 0;
}

const struct jb_tensor *jb_gguf_tensor(const struct jb_gguf *g, int64_t i)
{
    return (g && i >= 0 && i < g->n_tensors) ? &g->tensors[i].t : NULL;
}

uint64_t jb_gguf_tensor_offset(const struct jb_gguf *g, int64_t i)
{
    return (g && i >= 0 && i < g->n_tensors) ? g->tensors[i].offset : 0;
}

const struct jb_tensor *jb_gguf_find_tensor(const struct jb_gguf *g, const char *name)
{
    return g ? jb_gguf_tensor(g, find_ref(g->tensor_sorted, g->n_tensors, name)) : NULL;
}

/* =========================================================================================== */
/* writer                                                                                       */

struct wkv {
    char *key;
    enum jb_gguf_type type;
    enum jb_gguf_type arr_type;
    uint64_t n;
    uint8_t val[8]; /* scalar */
    void *arr;      /* numeric array copy */
    char *str;
    char **strs; /* n separately allocated strings */
};

struct wtensor {
    char *name;
    enum jb_dtype type;
    int n_dims;
    int64_t shape[JB_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;
};

enum wstate { W_COLLECT, W_DATA, W_DONE, W_FAILED };

struct jb_gguf_writer {
    struct wkv *kv;
    size_t n_kv, cap_kv;
    struct wtensor *t;
    size_t n_t, cap_t;

    enum wstate state;
    enum jb_status err; /* first error; sticky */
    char err_msg[256];

    FILE *f;
    struct jb_outfile out; /* the temporary and the final path */
    uint64_t pos;          /* bytes written to f */
    size_t next;           /* next tensor to write */
    size_t alignment;
};

/* Records the first error (its message is already set by jb_fail), drops the temporary file
 * and refuses further work: a half-built model is never renamed into place. */
static enum jb_status w_poison(struct jb_gguf_writer *w, enum jb_status st)
{
    if (w->err == JB_STATUS_OK) {
        w->err = st;
        snprintf(w->err_msg, sizeof w->err_msg, "%s", jb_last_error());
    }
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
        jb_outfile_release_fd(&w->out);
    }
    jb_outfile_abort(&w->out);
    w->state = W_FAILED;
    return st;
}

static enum jb_status w_failed(const struct jb_gguf_writer *w)
{
    return jb_fail(w->err, "gguf writer: stopped by an earlier error: %s", w->err_msg);
}

static void wkv_clear(struct wkv *kv)
{
    free(kv->arr);
    free(kv->str);
    for (uint64_t i = 0; kv->strs && i < kv->n; i++)
        free(kv->strs[i]);
    free(kv->strs);
    kv->arr  = NULL;
    kv->str  = NULL;
    kv->strs = NULL;
    kv->n    = 0;
}

struct jb_gguf_writer *jb_gguf_writer_init(void)
{
    struct jb_gguf_writer *w = jb_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->out.fd    = -1; /* no temporary yet */
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    /* written explicitly so readers never depend on the default */
    jb_gguf_writer_set_u32(w, GGUF_ALIGNMENT_KEY, GGUF_DEFAULT_ALIGNMENT);
    if (w->err != JB_STATUS_OK) {
        jb_gguf_writer_free(w);
        return NULL;
    }
    return w;
}

void jb_gguf_writer_free(struct jb_gguf_writer *w)
{
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        jb_outfile_release_fd(&w->out);
    }
    jb_outfile_abort(&w->out);
    for (size_t i = 0; i < w->n_kv; i++) {
        wkv_clear(&w->kv[i]);
        free(w->kv[i].key);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Grows an array of elements of `size` bytes to hold at least n+1. */
static bool grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return true;
    size_t ncap = *cap ? *cap * 2 : 16, bytes;
    if (!jb_mul_size(ncap, size, &bytes)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "gguf writer: too many entries");
        return false;
    }
    void *p = realloc(*arr, bytes);
    if (!p) {
        jb_fail(
          JB_STATUS_ERR_NOMEM, "gguf writer: out of memory growing a table to %zu bytes", bytes);
        return false;
    }
    *arr = p;
    *cap = ncap;
    return true;
}

/* The slot for key: the existing one emptied (the last value set wins, keeping its position)
 * or a new one. NULL after poisoning the writer. */
static struct wkv *w_slot(struct jb_gguf_writer *w, const char *key, enum jb_gguf_type type)
{
    if (w->state != W_COLLECT) {
        if (w->state != W_FAILED) {
            jb_fail(JB_STATUS_ERR_INVALID_ARG,
                    "gguf writer: cannot set '%s' after begin()",
                    key ? key : "(null)");
            w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        }
        return NULL;
    }
    if (!key) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: NULL key");
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return NULL;
    }
    const char *bad = name_problem(key, strlen(key), JB_GGUF_MAX_STRING);
    if (bad) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: key '%.64s' %s", key, bad);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return NULL;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            wkv_clear(&w->kv[i]);
            w->kv[i].type = type;
            return &w->kv[i];
        }
    }
    if (w->n_kv >= JB_GGUF_MAX_KV) {
        jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "gguf writer: too many KVs, expected <= %u", JB_GGUF_MAX_KV);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return NULL;
    }
    char *k = dup_n(key, strlen(key));
    if (!k || !grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv)) {
        free(k);
        w_poison(w, JB_STATUS_ERR_NOMEM);
        return NULL;
    }
    struct wkv *kv = &w->kv[w->n_kv++];
    memset(kv, 0, sizeof *kv);
    kv->key  = k;
    kv->type = type;
    return kv;
}

static void w_set_scalar(struct jb_gguf_writer *w,
                         const char *key,
                         enum jb_gguf_type type,
                         const void *v)
{
    if (!w) return;
    struct wkv *kv = w_slot(w, key, type);
    if (kv) memcpy(kv->val, v, kv_type_size[type]);
}

void jb_gguf_writer_set_u8(struct jb_gguf_writer *w, const char *key, uint8_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_UINT8, &v);
}
void jb_gguf_writer_set_i8(struct jb_gguf_writer *w, const char *key, int8_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_INT8, &v);
}
void jb_gguf_writer_set_u16(struct jb_gguf_writer *w, const char *key, uint16_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_UINT16, &v);
}
void jb_gguf_writer_set_i16(struct jb_gguf_writer *w, const char *key, int16_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_INT16, &v);
}
void jb_gguf_writer_set_u32(struct jb_gguf_writer *w, const char *key, uint32_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_UINT32, &v);
}
void jb_gguf_writer_set_i32(struct jb_gguf_writer *w, const char *key, int32_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_INT32, &v);
}
void jb_gguf_writer_set_u64(struct jb_gguf_writer *w, const char *key, uint64_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_UINT64, &v);
}
void jb_gguf_writer_set_i64(struct jb_gguf_writer *w, const char *key, int64_t v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_INT64, &v);
}
void jb_gguf_writer_set_f32(struct jb_gguf_writer *w, const char *key, float v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_FLOAT32, &v);
}
void jb_gguf_writer_set_f64(struct jb_gguf_writer *w, const char *key, double v)
{
    w_set_scalar(w, key, JB_GGUF_TYPE_FLOAT64, &v);
}
void jb_gguf_writer_set_bool(struct jb_gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    w_set_scalar(w, key, JB_GGUF_TYPE_BOOL, &b);
}

static bool w_check_str(struct jb_gguf_writer *w, const char *key, const char *v)
{
    if (!v) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: NULL string for key '%.64s'", key);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return false;
    }
    if (strlen(v) > JB_GGUF_MAX_STRING) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: string for key '%.64s' too long, got %zu bytes, expected <= %u",
                key,
                strlen(v),
                JB_GGUF_MAX_STRING);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return false;
    }
    return true;
}

void jb_gguf_writer_set_str(struct jb_gguf_writer *w, const char *key, const char *v)
{
    if (!w) return;
    struct wkv *kv = w_slot(w, key, JB_GGUF_TYPE_STRING);
    if (!kv || !w_check_str(w, key, v)) return;
    if (!(kv->str = dup_n(v, strlen(v)))) w_poison(w, JB_STATUS_ERR_NOMEM);
}

static bool w_check_arr_len(struct jb_gguf_writer *w, const char *key, size_t n)
{
    if (n > JB_GGUF_MAX_ARRAY) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: array '%.64s' too long, got %zu elements, expected <= %u",
                key,
                n,
                JB_GGUF_MAX_ARRAY);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return false;
    }
    return true;
}

void jb_gguf_writer_set_arr(struct jb_gguf_writer *w,
                            const char *key,
                            enum jb_gguf_type type,
                            const void *v,
                            size_t n)
{
    if (!w) return;
    struct wkv *kv = w_slot(w, key, JB_GGUF_TYPE_ARRAY);
    if (!kv) return;
    kv->arr_type = type;
    if ((unsigned)type >= JB_GGUF_TYPE_COUNT || type == JB_GGUF_TYPE_STRING ||
        type == JB_GGUF_TYPE_ARRAY) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: array '%.64s': element type %d is not a number or bool "
                "(use set_arr_str for strings)",
                key,
                (int)type);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return;
    }
    if (!w_check_arr_len(w, key, n)) return;
    if (n && !v) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: array '%.64s': NULL data", key);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return;
    }
    size_t bytes = n * kv_type_size[type]; /* n <= 2^24: no overflow */
    if (type == JB_GGUF_TYPE_BOOL) {
        for (size_t i = 0; i < n; i++) {
            if (((const uint8_t *)v)[i] > 1) {
                jb_fail(JB_STATUS_ERR_INVALID_ARG,
                        "gguf writer: array '%.64s': bool element %zu is %u, expected 0 or 1",
                        key,
                        i,
                        ((const uint8_t *)v)[i]);
                w_poison(w, JB_STATUS_ERR_INVALID_ARG);
                return;
            }
        }
    }
    kv->arr = jb_malloc(bytes);
    if (!kv->arr) {
        w_poison(w, JB_STATUS_ERR_NOMEM);
        return;
    }
    if (bytes) memcpy(kv->arr, v, bytes);
    kv->n = n;
}

void jb_gguf_writer_set_arr_i32(struct jb_gguf_writer *w,
                                const char *key,
                                const int32_t *v,
                                size_t n)
{
    jb_gguf_writer_set_arr(w, key, JB_GGUF_TYPE_INT32, v, n);
}

void jb_gguf_writer_set_arr_f32(struct jb_gguf_writer *w, const char *key, const float *v, size_t n)
{
    jb_gguf_writer_set_arr(w, key, JB_GGUF_TYPE_FLOAT32, v, n);
}

void jb_gguf_writer_set_arr_str(struct jb_gguf_writer *w,
                                const char *key,
                                const char *const *v,
                                size_t n)
{
    if (!w) return;
    struct wkv *kv = w_slot(w, key, JB_GGUF_TYPE_ARRAY);
    if (!kv) return;
    kv->arr_type = JB_GGUF_TYPE_STRING;
    if (!w_check_arr_len(w, key, n)) return;
    if (n && !v) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: array '%.64s': NULL data", key);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!w_check_str(w, key, v[i])) return;
    kv->strs = jb_calloc(n, sizeof *kv->strs);
    if (!kv->strs) {
        w_poison(w, JB_STATUS_ERR_NOMEM);
        return;
    }
    kv->n = n; /* set first so that a partial copy is freed */
    for (size_t i = 0; i < n; i++) {
        if (!(kv->strs[i] = dup_n(v[i], strlen(v[i])))) {
            w_poison(w, JB_STATUS_ERR_NOMEM);
            return;
        }
    }
}

int64_t jb_gguf_writer_add_tensor(struct jb_gguf_writer *w,
                                  const char *name,
                                  enum jb_dtype type,
                                  int n_dims,
                                  const int64_t *shape)
{
    if (!w) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: NULL writer");
        return -1;
    }
    if (w->state != W_COLLECT) {
        if (w->state == W_FAILED)
            w_failed(w);
        else {
            jb_fail(JB_STATUS_ERR_INVALID_ARG,
                    "gguf writer: cannot add tensor '%s' after begin()",
                    name ? name : "(null)");
            w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        }
        return -1;
    }
    const char *bad = name ? name_problem(name, strlen(name), GGUF_MAX_NAME) : "is NULL";
    if (bad) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: tensor name '%.64s' %s, expected 1..%u "
                "bytes of UTF-8",
                name ? name : "",
                bad,
                GGUF_MAX_NAME);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return -1;
    }
    if ((unsigned)type >= JB_DTYPE_COUNT) {
        jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "gguf writer: tensor '%s': bad dtype %d", name, (int)type);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return -1;
    }
    if (n_dims < 0 || n_dims > (int)GGUF_MAX_DIMS || (n_dims > 0 && !shape)) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: tensor '%s': bad n_dims, got %d, expected 0..%u",
                name,
                n_dims,
                GGUF_MAX_DIMS);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return -1;
    }
    int64_t numel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 1) {
            jb_fail(JB_STATUS_ERR_INVALID_ARG,
                    "gguf writer: tensor '%s': bad dimension %d, got %" PRId64 ", expected >= 1",
                    name,
                    d,
                    shape[d]);
            w_poison(w, JB_STATUS_ERR_INVALID_ARG);
            return -1;
        }
        if (__builtin_mul_overflow(numel, shape[d], &numel)) {
            jb_fail(JB_STATUS_ERR_INVALID_ARG,
                    "gguf writer: tensor '%s': element count overflows int64 at dimension %d",
                    name,
                    d);
            w_poison(w, JB_STATUS_ERR_INVALID_ARG);
            return -1;
        }
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)jb_dtype_size(type), &nbytes) ||
        nbytes > (uint64_t)INT64_MAX || nbytes > (uint64_t)SIZE_MAX) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: tensor '%s': byte size overflows", name);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return -1;
    }
    /* Writers see thousands of tensors at most, so a linear scan is fine here. */
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0) {
            jb_fail(JB_STATUS_ERR_INVALID_ARG,
                    "gguf writer: duplicate tensor name '%s' (already tensor %zu)",
                    name,
                    i);
            w_poison(w, JB_STATUS_ERR_INVALID_ARG);
            return -1;
        }
    }
    if (w->n_t >= JB_GGUF_MAX_TENSORS) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: too many tensors, expected <= %u",
                JB_GGUF_MAX_TENSORS);
        w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        return -1;
    }
    char *copy = dup_n(name, strlen(name));
    if (!copy || !grow((void **)&w->t, &w->cap_t, w->n_t, sizeof *w->t)) {
        free(copy);
        w_poison(w, JB_STATUS_ERR_NOMEM);
        return -1;
    }
    struct wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name   = copy;
    t->type   = type;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++)
        t->shape[d] = shape[d];
    t->nbytes = nbytes;
    return (int64_t)w->n_t++;
}

static bool w_put(struct jb_gguf_writer *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n) {
        jb_fail(
          JB_STATUS_ERR_IO, "gguf writer: cannot write '%s': %s", w->out.path, strerror(errno));
        return false;
    }
    w->pos += n;
    return true;
}

static bool w_u32(struct jb_gguf_writer *w, uint32_t v)
{
    return w_put(w, &v, sizeof v);
}

static bool w_u64(struct jb_gguf_writer *w, uint64_t v)
{
    return w_put(w, &v, sizeof v);
}

static bool w_str(struct jb_gguf_writer *w, const char *s)
{
    size_t n = strlen(s);
    return w_u64(w, n) && w_put(w, s, n);
}

static bool w_pad(struct jb_gguf_writer *w)
{
    static const uint8_t zeros[64] = { 0 };
    size_t rem                     = (size_t)(w->pos % w->alignment);
    size_t n                       = rem ? w->alignment - rem : 0;
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (!w_put(w, zeros, k)) return false;
        n -= k;
    }
    return true;
}

static bool w_kv(struct jb_gguf_writer *w, const struct wkv *kv)
{
    if (!w_str(w, kv->key) || !w_u32(w, (uint32_t)kv->type)) return false;
    switch (kv->type) {
    case JB_GGUF_TYPE_STRING:
        return w_str(w, kv->str);
    case JB_GGUF_TYPE_ARRAY:
        if (!w_u32(w, (uint32_t)kv->arr_type) || !w_u64(w, kv->n)) return false;
        if (kv->arr_type == JB_GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < kv->n; i++)
                if (!w_str(w, kv->strs[i])) return false;
            return true;
        }
        return w_put(w, kv->arr, (size_t)kv->n * kv_type_size[kv->arr_type]);
    default:
        return w_put(w, kv->val, kv_type_size[kv->type]);
    }
}

enum jb_status jb_gguf_writer_begin(struct jb_gguf_writer *w, const char *path)
{
    if (!w) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: NULL writer");
    if (w->state == W_FAILED) return w_failed(w);
    if (w->state != W_COLLECT) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: begin() called twice");
        return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
    }
    if (!path || !*path) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: empty path");
        return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
    }
    /* general.alignment may have been overridden. Readers (ggml's too) demand a u32, so an
     * integer of another type (e.g. copied from a file with set_i32) is stored as u32. */
    for (size_t i = 0; i < w->n_kv; i++) {
        struct wkv *kv = &w->kv[i];
        if (strcmp(kv->key, GGUF_ALIGNMENT_KEY) != 0) continue;
        int64_t a = 0;
        if (!elem_to_int(kv->type, kv->val, &a) || !is_pow2((uint64_t)a) ||
            a > GGUF_MAX_ALIGNMENT) {
            jb_fail(JB_STATUS_ERR_INVALID_ARG,
                    "gguf writer: bad %s, got type %s value %" PRId64
                    ", expected a power of two <= %u",
                    GGUF_ALIGNMENT_KEY,
                    jb_gguf_type_name(kv->type),
                    a,
                    GGUF_MAX_ALIGNMENT);
            return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        }
        uint32_t a32 = (uint32_t)a;
        kv->type     = JB_GGUF_TYPE_UINT32;
        memset(kv->val, 0, sizeof kv->val);
        memcpy(kv->val, &a32, sizeof a32);
        w->alignment = a32;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t end;
        w->t[i].offset = off;
        if (__builtin_add_overflow(off, w->t[i].nbytes, &end) ||
            !align_up_u64(end, w->alignment, &off) || off > (uint64_t)INT64_MAX) {
            jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: total tensor size overflows");
            return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
        }
    }
    enum jb_status ost = jb_outfile_open(&w->out, path);
    if (ost) return w_poison(w, ost);
    w->f = fdopen(w->out.fd, "wb");
    if (!w->f) {
        jb_fail(JB_STATUS_ERR_IO, "gguf writer: cannot write '%s': %s", path, strerror(errno));
        return w_poison(w, JB_STATUS_ERR_IO);
    }
    w->pos = 0;
    bool ok =
      w_u32(w, GGUF_MAGIC) && w_u32(w, GGUF_VERSION) && w_u64(w, w->n_t) && w_u64(w, w->n_kv);
    for (size_t i = 0; ok && i < w->n_kv; i++)
        ok = w_kv(w, &w->kv[i]);
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        ok                      = w_str(w, t->name) && w_u32(w, (uint32_t)t->n_dims);
        for (int d = t->n_dims - 1; ok && d >= 0; d--)
            ok = w_u64(w, (uint64_t)t->shape[d]);
        ok = ok && w_u32(w, dtype_to_ggml(t->type)) && w_u64(w, t->offset);
    }
    ok = ok && w_pad(w);
    if (!ok) return w_poison(w, JB_STATUS_ERR_IO);
    w->state = W_DATA;
    w->next  = 0;
    return JB_STATUS_OK;
}

enum jb_status jb_gguf_writer_write_tensor(struct jb_gguf_writer *w,
                                           const void *data,
                                           size_t nbytes)
{
    if (!w) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: NULL writer");
    if (w->state == W_FAILED) return w_failed(w);
    if (w->state != W_DATA) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: write_tensor() outside begin()..finish()");
        return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
    }
    if (w->next >= w->n_t) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: write_tensor() called more often than the %zu declared tensors",
                w->n_t);
        return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
    }
    const struct wtensor *t = &w->t[w->next];
    if (nbytes != t->nbytes || !data) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: tensor '%s': got %zu bytes%s, expected %" PRIu64,
                t->name,
                nbytes,
                data ? "" : " (NULL data)",
                t->nbytes);
        return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
    }
    if (w->pos % w->alignment) {
        jb_fail(JB_STATUS_ERR_IO, "gguf writer: internal offset mismatch before '%s'", t->name);
        return w_poison(w, JB_STATUS_ERR_IO);
    }
    if (!w_put(w, data, nbytes) || !w_pad(w)) return w_poison(w, JB_STATUS_ERR_IO);
    w->next++;
    return JB_STATUS_OK;
}

enum jb_status jb_gguf_writer_finish(struct jb_gguf_writer *w)
{
    if (!w) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: NULL writer");
    if (w->state == W_FAILED) return w_failed(w);
    if (w->state != W_DATA) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "gguf writer: finish() without begin()");
        return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
    }
    if (w->next != w->n_t) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG,
                "gguf writer: finish() after %zu of %zu tensors, expected all written (next: "
                "'%s')",
                w->next,
                w->n_t,
                w->t[w->next].name);
        return w_poison(w, JB_STATUS_ERR_INVALID_ARG);
    }
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
        jb_fail(
          JB_STATUS_ERR_IO, "gguf writer: cannot flush '%s': %s", w->out.path, strerror(errno));
        return w_poison(w, JB_STATUS_ERR_IO);
    }
    FILE *f = w->f;
    w->f    = NULL;
    jb_outfile_release_fd(&w->out);
    if (fclose(f) != 0) {
        jb_fail(
          JB_STATUS_ERR_IO, "gguf writer: cannot close '%s': %s", w->out.path, strerror(errno));
        return w_poison(w, JB_STATUS_ERR_IO);
    }
    enum jb_status st = jb_outfile_commit(&w->out); /* rename + folder fsync */
    if (st) return w_poison(w, st);
    w->state = W_DONE;
    return JB_STATUS_OK;
}
