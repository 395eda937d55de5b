/*
 * format/npy.c - NumPy .npy reader and writer (format 1.0, 2.0 and 3.0).
 *
 * The header is a Python dict literal; rather than evaluating Python we accept exactly the
 * grammar numpy writes ({'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }, keys in
 * any order, either quote style, optional trailing comma), and reject everything else with a
 * message. Only little-endian, C-order arrays of a few plain dtypes are supported; the data
 * size must match the shape exactly.
 */
#include "format/npy.h"
#include "core/outfile.h"
#include "core/fp16.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads little-endian data with memcpy: port it for big-endian hosts"
#endif

#define NPY_MAGIC_LEN 6
#define NPY_PREFIX_V1 10          /* magic, 2 version bytes, u16 header length */
#define NPY_PREFIX_V2 12          /* magic, 2 version bytes, u32 header length */
#define NPY_MAX_HEADER (1u << 20) /* numpy itself refuses headers over 10000 bytes by default */

static const char npy_magic[NPY_MAGIC_LEN] = { '\x93', 'N', 'U', 'M', 'P', 'Y' };

static const struct {
    const char *code; /* descr without the byte-order mark */
    enum jb_npy_type type;
    size_t size;
} npy_types[] = {
    { "f4", JB_NPY_F32, 4 },  { "f8", JB_NPY_F64, 8 }, { "i4", JB_NPY_I32, 4 },
    { "i8", JB_NPY_I64, 8 },  { "f2", JB_NPY_F16, 2 }, { "u1", JB_NPY_U8, 1 },
    { "b1", JB_NPY_BOOL, 1 },
};
#define NPY_N_TYPES (sizeof npy_types / sizeof npy_types[0])

static size_t npy_type_size(enum jb_npy_type t)
{
    for (size_t i = 0; i < NPY_N_TYPES; i++)
        if (npy_types[i].type == t) return npy_types[i].size;
    return 0;
}

static const char *npy_type_code(enum jb_npy_type t)
{
    for (size_t i = 0; i < NPY_N_TYPES; i++)
        if (npy_types[i].type == t) return npy_types[i].code;
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* header parsing                                                                              */

struct hdr {
    const char *s;
    size_t n, i;
    const char *src; /* for messages */
};

static enum jb_status hdr_fail(const struct hdr *h, const char *fmt, ...) JB_PRINTF(2, 3);
static enum jb_status hdr_fail(const struct hdr *h, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jb_fail(JB_STATUS_ERR_FORMAT, "npy: %s: %s", h->src, msg);
}

static void skip_ws(struct hdr *h)
{
    while (h->i < h->n && (h->s[h->i] == ' ' || h->s[h->i] == '\t'))
        h->i++;
}

static bool expect(struct hdr *h, char c)
{
    skip_ws(h);
    if (h->i < h->n && h->s[h->i] == c) {
        h->i++;
        return true;
    }
    return false;
}

/* A quoted string without escapes (numpy never writes any in descr or keys). */
static bool parse_quoted(struct hdr *h, char *out, size_t cap)
{
    skip_ws(h);
    if (h->i >= h->n || (h->s[h->i] != '\'' && h->s[h->i] != '"')) return false;
    char q     = h->s[h->i++];
    size_t len = 0;
    while (h->i < h->n && h->s[h->i] != q) {
        char c = h->s[h->i++];
        if (c == '\\' || (unsigned char)c < 0x20 || len + 1 >= cap) return false;
        out[len++] = c;
    }
    if (h->i >= h->n) return false;
    h->i++; /* closing quote */
    out[len] = '\0';
    return true;
}

static enum jb_status parse_descr(struct hdr *h, struct jb_npy *out)
{
    char d[16];
    if (!parse_quoted(h, d, sizeof d))
        return hdr_fail(h,
                        "'descr' must be a simple dtype string like '<f4' (structured dtypes "
                        "are not supported)");
    if (strlen(d) != 3)
        return hdr_fail(
          h, "unsupported dtype, got '%s', expected one of <f4 <f8 <i4 <i8 <f2 |u1 |b1", d);
    if (d[0] == '>') return hdr_fail(h, "big-endian dtype '%s' is not supported", d);
    for (size_t k = 0; k < NPY_N_TYPES; k++) {
        if (strcmp(d + 1, npy_types[k].code) != 0) continue;
        /* '|' means "not applicable" and is only valid for 1-byte types; '=' is native (LE) */
        bool ok = npy_types[k].size == 1 ? (d[0] == '|' || d[0] == '<' || d[0] == '=')
                                         : (d[0] == '<' || d[0] == '=');
        if (!ok)
            return hdr_fail(h,
                            "bad byte order in dtype, got '%s', expected '%c%s'",
                            d,
                            npy_types[k].size == 1 ? '|' : '<',
                            npy_types[k].code);
        out->type = npy_types[k].type;
        return JB_STATUS_OK;
    }
    return hdr_fail(
      h, "unsupported dtype, got '%s', expected one of <f4 <f8 <i4 <i8 <f2 |u1 |b1", d);
}

static enum jb_status parse_fortran(struct hdr *h)
{
    skip_ws(h);
    if (h->n - h->i >= 5 && memcmp(h->s + h->i, "False", 5) == 0) {
        h->i += 5;
        return JB_STATUS_OK;
    }
    if (h->n - h->i >= 4 && memcmp(h->s + h->i, "True", 4) == 0)
        return hdr_fail(h, "fortran_order True is not supported, expected False (C order)");
    return hdr_fail(h, "'fortran_order' must be False");
}

static enum jb_status parse_shape(struct hdr *h, struct jb_npy *out)
{
    if (!expect(h, '(')) return hdr_fail(h, "'shape' must be a tuple");
    int n = 0;
    for (;;) {
        skip_ws(h);
        if (h->i < h->n && h->s[h->i] == ')') break;
        if (h->i < h->n && h->s[h->i] == '-')
            return hdr_fail(h, "negative dimension %d in 'shape'", n);
        if (h->i >= h->n || h->s[h->i] < '0' || h->s[h->i] > '9')
            return hdr_fail(h, "'shape' must contain non-negative integers");
        int64_t v = 0;
        while (h->i < h->n && h->s[h->i] >= '0' && h->s[h->i] <= '9') {
            if (__builtin_mul_overflow(v, 10, &v) ||
                __builtin_add_overflow(v, h->s[h->i] - '0', &v))
                return hdr_fail(h, "dimension %d of 'shape' overflows int64", n);
            h->i++;
        }
        if (h->i < h->n && h->s[h->i] == 'L') h->i++; /* Python 2 long suffix */
        if (n >= JB_NPY_MAX_DIMS)
            return hdr_fail(h, "too many dimensions, expected <= %d", JB_NPY_MAX_DIMS);
        out->shape[n++] = v;
        if (expect(h, ',')) continue;
        skip_ws(h);
        if (h->i < h->n && h->s[h->i] == ')') {
            if (n == 1) /* "(3)" is an int in Python, not a tuple */
                return hdr_fail(
                  h, "'shape' (%" PRId64 ") is not a tuple, expected (%" PRId64 ",)", v, v);
            break;
        }
        return hdr_fail(h, "malformed 'shape' tuple");
    }
    h->i++; /* ')' */
    out->n_dims = n;
    return JB_STATUS_OK;
}

/* Parses the header dict into out->type, n_dims and shape. */
static enum jb_status parse_dict(struct hdr *h, struct jb_npy *out)
{
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    if (!expect(h, '{')) return hdr_fail(h, "header is not a dict");
    for (;;) {
        if (expect(h, '}')) break;
        char key[32];
        if (!parse_quoted(h, key, sizeof key)) return hdr_fail(h, "malformed header dict key");
        if (!expect(h, ':')) return hdr_fail(h, "expected ':' after key '%s'", key);
        bool *seen;
        enum jb_status st;
        if (strcmp(key, "descr") == 0)
            seen = &seen_descr;
        else if (strcmp(key, "fortran_order") == 0)
            seen = &seen_fortran;
        else if (strcmp(key, "shape") == 0)
            seen = &seen_shape;
        else
            return hdr_fail(
              h, "unexpected header key '%s', expected descr, fortran_order, shape", key);
        if (*seen) return hdr_fail(h, "duplicate header key '%s'", key);
        *seen = true;
        if (seen == &seen_descr)
            st = parse_descr(h, out);
        else if (seen == &seen_fortran)
            st = parse_fortran(h);
        else
            st = parse_shape(h, out);
        if (st != JB_STATUS_OK) return st;
        if (expect(h, ',')) continue;
        if (expect(h, '}')) break;
        return hdr_fail(h, "expected ',' or '}' after '%s'", key);
    }
    /* numpy pads with spaces and ends the header with '\n' */
    while (h->i < h->n &&
           (h->s[h->i] == ' ' || h->s[h->i] == '\t' || h->s[h->i] == '\n' || h->s[h->i] == '\r'))
        h->i++;
    if (h->i != h->n) return hdr_fail(h, "unexpected bytes after the header dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return hdr_fail(h,
                        "header dict lacks '%s'",
                        !seen_descr     ? "descr"
                        : !seen_fortran ? "fortran_order"
                                        : "shape");
    return JB_STATUS_OK;
}

/* Validates the prefix and header of buf; on success fills out (not data) and *data_off. */
static enum jb_status npy_parse(const uint8_t *buf,
                                size_t size,
                                const char *src,
                                struct jb_npy *out,
                                size_t *data_off)
{
    struct hdr h = { .src = src };
    if (size < NPY_PREFIX_V1 || memcmp(buf, npy_magic, NPY_MAGIC_LEN) != 0)
        return hdr_fail(&h, "not a .npy file (bad magic or shorter than %d bytes)", NPY_PREFIX_V1);
    uint8_t major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return hdr_fail(
          &h, "unsupported format version, got %u.%u, expected 1.0, 2.0 or 3.0", major, minor);
    size_t prefix = major == 1 ? NPY_PREFIX_V1 : NPY_PREFIX_V2, hlen;
    if (size < prefix) return hdr_fail(&h, "truncated header length");
    if (major == 1) {
        uint16_t v;
        memcpy(&v, buf + 8, sizeof v);
        hlen = v;
    } else {
        uint32_t v;
        memcpy(&v, buf + 8, sizeof v);
        hlen = v;
    }
    if (hlen > NPY_MAX_HEADER)
        return hdr_fail(&h, "header too long, got %zu bytes, expected <= %u", hlen, NPY_MAX_HEADER);
    if (hlen > size - prefix)
        return hdr_fail(
          &h, "header past end of file, got length %zu, expected <= %zu", hlen, size - prefix);
    h.s = (const char *)buf + prefix;
    h.n = hlen;
    for (size_t i = 0; i < hlen; i++) /* v3 allows UTF-8, but no supported header needs it */
        if ((unsigned char)h.s[i] >= 0x80 || h.s[i] == '\0')
            return hdr_fail(&h, "non-ASCII byte in header at offset %zu", prefix + i);
    memset(out, 0, sizeof *out);
    enum jb_status st = parse_dict(&h, out);
    if (st != JB_STATUS_OK) return st;

    int64_t n = 1;
    for (int d = 0; d < out->n_dims; d++)
        if (__builtin_mul_overflow(n, out->shape[d], &n))
            return hdr_fail(&h, "element count overflows int64");
    size_t nbytes;
    if ((uint64_t)n > SIZE_MAX || !jb_mul_size((size_t)n, npy_type_size(out->type), &nbytes))
        return hdr_fail(&h, "data size overflows");
    size_t off  = prefix + hlen;
    size_t left = size - off;
    if (left != nbytes)
        return hdr_fail(&h,
                        "data size mismatch, got %zu bytes, expected %zu (%" PRId64
                        " elements of %zu bytes)",
                        left,
                        nbytes,
                        n,
                        npy_type_size(out->type));
    if (out->type == JB_NPY_BOOL) {
        for (size_t i = 0; i < nbytes; i++)
            if (buf[off + i] > 1)
                return hdr_fail(&h, "bool element %zu is %u, expected 0 or 1", i, buf[off + i]);
    }
    out->n    = n;
    *data_off = off;
    return JB_STATUS_OK;
}

enum jb_status jb_npy_read_memory(const void *buf, size_t size, struct jb_npy *out)
{
    if (!out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: NULL output");
    memset(out, 0, sizeof *out);
    if (!buf && size) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: NULL buffer");
    struct jb_npy a;
    size_t off;
    enum jb_status st = npy_parse(buf, buf ? size : 0, "<memory>", &a, &off);
    if (st != JB_STATUS_OK) return st;
    size_t nbytes = size - off;
    a.data        = jb_malloc(nbytes);
    if (!a.data) return JB_STATUS_ERR_NOMEM;
    if (nbytes) memcpy(a.data, (const uint8_t *)buf + off, nbytes);
    *out = a;
    return JB_STATUS_OK;
}

enum jb_status jb_npy_read(const char *path, struct jb_npy *out)
{
    if (!out) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return jb_fail(JB_STATUS_ERR_IO, "npy: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t)st.st_size > SIZE_MAX) {
        fclose(f);
        return jb_fail(JB_STATUS_ERR_IO, "npy: '%s' is not a readable regular file", path);
    }
    /* Read everything, validate, then slide the data to the front: one allocation, owned by
     * the result. */
    size_t size  = (size_t)st.st_size;
    uint8_t *buf = jb_malloc(size);
    if (!buf) {
        fclose(f);
        return JB_STATUS_ERR_NOMEM;
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    bool err   = ferror(f) != 0;
    fclose(f);
    if (got != size || err) {
        free(buf);
        return jb_fail(
          JB_STATUS_ERR_IO, "npy: cannot read '%s' (%zu of %zu bytes)", path, got, size);
    }
    struct jb_npy a;
    size_t off;
    enum jb_status s = npy_parse(buf, size, path, &a, &off);
    if (s != JB_STATUS_OK) {
        free(buf);
        return s;
    }
    size_t nbytes = size - off;
    memmove(buf, buf + off, nbytes);
    void *shrunk = realloc(buf, nbytes ? nbytes : 1);
    a.data       = shrunk ? shrunk : buf;
    *out         = a;
    return JB_STATUS_OK;
}

void jb_npy_free(struct jb_npy *a)
{
    if (!a) return;
    free(a->data);
    a->data = NULL;
    a->n    = 0;
}

double jb_npy_get_f(const struct jb_npy *a, int64_t i)
{
    JB_ASSERT(a && i >= 0 && i < a->n);
    const uint8_t *p = (const uint8_t *)a->data + (size_t)i * npy_type_size(a->type);
    switch (a->type) {
    case JB_NPY_F32: {
        float v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case JB_NPY_F64: {
        double v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case JB_NPY_I32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case JB_NPY_I64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return (double)v;
    }
    case JB_NPY_F16: {
        uint16_t v;
        memcpy(&v, p, sizeof v);
        return jb_f16_to_f32(v);
    }
    case JB_NPY_U8:
    case JB_NPY_BOOL:
        return *p;
    }
    return 0.0;
}

/* Float to int64 truncating toward zero, saturating, NaN -> 0 (a plain cast would be UB). */
static int64_t f_to_i64(double v)
{
    if (isnan(v)) return 0;
    if (v >= 9223372036854775808.0) return INT64_MAX;
    if (v < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

int64_t jb_npy_get_i(const struct jb_npy *a, int64_t i)
{
    JB_ASSERT(a && i >= 0 && i < a->n);
    const uint8_t *p = (const uint8_t *)a->data + (size_t)i * npy_type_size(a->type);
    switch (a->type) {
    case JB_NPY_I32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case JB_NPY_I64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case JB_NPY_U8:
    case JB_NPY_BOOL:
        return *p;
    case JB_NPY_F32:
    case JB_NPY_F64:
    case JB_NPY_F16:
        return f_to_i64(jb_npy_get_f(a, i));
    }
    return 0;
}

float *jb_npy_to_f32(const struct jb_npy *a)
{
    float *dst = jb_calloc((size_t)a->n, sizeof *dst);
    if (!dst) return NULL;
    if (a->type == JB_NPY_F32) {
        if (a->n) memcpy(dst, a->data, (size_t)a->n * sizeof *dst);
        return dst;
    }
    for (int64_t i = 0; i < a->n; i++)
        dst[i] = (float)jb_npy_get_f(a, i);
    return dst;
}

int32_t *jb_npy_to_i32(const struct jb_npy *a)
{
    int32_t *dst = jb_calloc((size_t)a->n, sizeof *dst);
    if (!dst) return NULL;
    bool is_float = a->type == JB_NPY_F32 || a->type == JB_NPY_F64 || a->type == JB_NPY_F16;
    for (int64_t i = 0; i < a->n; i++) {
        if (is_float) {
            double v = jb_npy_get_f(a, i);
            if (!(v >= INT32_MIN && v <= INT32_MAX) || v != floor(v)) {
                jb_fail(JB_STATUS_ERR_FORMAT,
                        "npy: element %" PRId64 " is %g, expected an integer in int32 range",
                        i,
                        v);
                free(dst);
                return NULL;
            }
            dst[i] = (int32_t)v;
        } else {
            int64_t v = jb_npy_get_i(a, i);
            if (v < INT32_MIN || v > INT32_MAX) {
                jb_fail(JB_STATUS_ERR_FORMAT,
                        "npy: element %" PRId64 " is %" PRId64 ", which does not fit in int32",
                        i,
                        v);
                free(dst);
                return NULL;
            }
            dst[i] = (int32_t)v;
        }
    }
    return dst;
}

/* ------------------------------------------------------------------------------------------ */
/* writer                                                                                      */

enum jb_status jb_npy_write(const char *path,
                            enum jb_npy_type type,
                            int n_dims,
                            const int64_t *shape,
                            const void *data)
{
    const char *code = npy_type_code(type);
    if (!path) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: NULL path");
    if (!code) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: %s: bad type %d", path, (int)type);
    if (n_dims < 0 || n_dims > JB_NPY_MAX_DIMS || (n_dims > 0 && !shape))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "npy: %s: bad n_dims %d, expected 0..%d",
                       path,
                       n_dims,
                       JB_NPY_MAX_DIMS);
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(n, shape[d], &n))
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "npy: %s: bad shape (dimension %d = %" PRId64 ")",
                           path,
                           d,
                           shape[d]);
    size_t nbytes;
    if ((uint64_t)n > SIZE_MAX || !jb_mul_size((size_t)n, npy_type_size(type), &nbytes))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: %s: data size overflows", path);
    if (nbytes && !data) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "npy: %s: NULL data", path);
    if (type == JB_NPY_BOOL) /* keep what we write readable by our own strict reader */
        for (size_t i = 0; i < nbytes; i++)
            if (((const uint8_t *)data)[i] > 1)
                return jb_fail(
                  JB_STATUS_ERR_INVALID_ARG, "npy: %s: bool element %zu is not 0 or 1", path, i);

    /* "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" padded with spaces and a
     * final '\n' so that the data starts on a 64-byte boundary, like numpy. */
    char hdr[512];
    size_t len = (size_t)snprintf(hdr,
                                  sizeof hdr,
                                  "{'descr': '%c%s', 'fortran_order': False, 'shape': (",
                                  npy_type_size(type) == 1 ? '|' : '<',
                                  code);
    for (int d = 0; d < n_dims; d++)
        len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s%" PRId64, d ? ", " : "", shape[d]);
    len += (size_t)snprintf(hdr + len, sizeof hdr - len, "%s), }", n_dims == 1 ? "," : "");
    size_t total = (NPY_PREFIX_V1 + len + 1 + 63) / 64 * 64; /* +1 for '\n' */
    size_t hlen  = total - NPY_PREFIX_V1;
    memset(hdr + len, ' ', hlen - 1 - len);
    hdr[hlen - 1] = '\n';

    uint8_t prefix[NPY_PREFIX_V1];
    memcpy(prefix, npy_magic, NPY_MAGIC_LEN);
    prefix[6]   = 1;
    prefix[7]   = 0;
    uint16_t hl = (uint16_t)hlen;
    memcpy(prefix + 8, &hl, sizeof hl);

    /* A unique temporary beside the file (never a planted name or symlink), renamed into
     * place once complete, so readers never see a partial file. */
    struct jb_outfile out;
    enum jb_status st = jb_outfile_open(&out, path);
    if (st) return st;
    FILE *f = fdopen(out.fd, "wb");
    if (!f) {
        st = jb_fail(JB_STATUS_ERR_IO, "npy: cannot write '%s': %s", path, strerror(errno));
        jb_outfile_abort(&out);
        return st;
    }
    jb_outfile_release_fd(&out);
    bool ok = fwrite(prefix, 1, sizeof prefix, f) == sizeof prefix &&
              fwrite(hdr, 1, hlen, f) == hlen &&
              (nbytes == 0 || fwrite(data, 1, nbytes, f) == nbytes) && fflush(f) == 0 &&
              fsync(fileno(f)) == 0;
    int err = errno;
    ok      = (fclose(f) == 0) && ok;
    if (!ok) {
        st = jb_fail(JB_STATUS_ERR_IO, "npy: cannot write '%s': %s", path, strerror(err));
        jb_outfile_abort(&out);
        return st;
    }
    return jb_outfile_commit(&out);
}
