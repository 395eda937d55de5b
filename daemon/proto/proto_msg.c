/*
 * daemon/proto/proto_msg.c - protocol messages as CBOR maps (libcbor): building, encoding to a
 * frame, and a decoder that validates the whole payload (shape, depth, item count, UTF-8)
 * before libcbor builds anything from it.
 *
 * Messages are built with indefinite-length maps and arrays (they grow as fields are set) and
 * converted to definite-length ones when encoded: the decoder accepts only definite lengths,
 * so every count is known and checked before anything is allocated.
 */
#include "encore_proto.h"

#include <cbor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ep_msg {
    cbor_item_t *map;
};

static void say(char *why, size_t len, const char *msg)
{
    if (why && len) snprintf(why, len, "%s", msg);
}

bool ep_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0)
            k = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            k = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            k = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += k + 1;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* building                                                                                  */

struct ep_msg *ep_msg_new(const char *type)
{
    struct ep_msg *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->map = cbor_new_indefinite_map();
    if (!m->map || (type && !ep_msg_set_str(m, "type", type))) {
        ep_msg_free(m);
        return NULL;
    }
    return m;
}

void ep_msg_free(struct ep_msg *msg)
{
    if (!msg) return;
    if (msg->map) cbor_decref(&msg->map);
    free(msg);
}

static cbor_item_t *find(const cbor_item_t *map, const char *key);

/* Sets key -> value, replacing an earlier value of the key (value is taken: its reference
 * passes to the map). */
static bool set_item(struct ep_msg *msg, const char *key, cbor_item_t *value)
{
    if (!msg || !key || !value) {
        if (value) cbor_decref(&value);
        return false;
    }
    const size_t n = cbor_map_size(msg->map), kl = strlen(key);
    struct cbor_pair *pairs = cbor_map_handle(msg->map);
    for (size_t i = 0; i < n; i++) {
        const cbor_item_t *k = pairs[i].key;
        if (cbor_isa_string(k) && cbor_string_length(k) == kl &&
            memcmp(cbor_string_handle(k), key, kl) == 0) {
            cbor_decref(&pairs[i].value);
            pairs[i].value = value; /* our reference moves into the map */
            return true;
        }
    }
    cbor_item_t *k = cbor_build_string(key);
    bool ok        = k && cbor_map_add(msg->map, (struct cbor_pair){ .key = k, .value = value });
    if (k) cbor_decref(&k);
    cbor_decref(&value);
    return ok;
}

bool ep_msg_set_int(struct ep_msg *msg, const char *key, int64_t v)
{
    return set_item(msg,
                    key,
                    v >= 0 ? cbor_build_uint64((uint64_t)v)
                           : cbor_build_negint64((uint64_t)(-(v + 1))));
}

bool ep_msg_set_double(struct ep_msg *msg, const char *key, double v)
{
    return set_item(msg, key, cbor_build_float8(v));
}

bool ep_msg_set_bool(struct ep_msg *msg, const char *key, bool v)
{
    return set_item(msg, key, cbor_build_bool(v));
}

bool ep_msg_set_str(struct ep_msg *msg, const char *key, const char *v)
{
    if (!v || !ep_utf8_valid((const uint8_t *)v, strlen(v))) return false;
    return set_item(msg, key, cbor_build_stringn(v, strlen(v)));
}

bool ep_msg_set_bytes(struct ep_msg *msg, const char *key, const void *data, size_t len)
{
    return set_item(msg, key, cbor_build_bytestring(data ? data : (const void *)"", len));
}

/* int32 and float32 go little-endian whatever the host (x86 and arm64 are LE: a plain copy) */
static bool set_le32(struct ep_msg *msg, const char *key, const void *v, size_t n)
{
    if (n > SIZE_MAX / 4) return false;
    uint8_t *b = malloc(n * 4 + 1);
    if (!b) return false;
    const uint8_t *src = v;
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, src + 4 * i, 4);
        b[4 * i + 0] = (uint8_t)x, b[4 * i + 1] = (uint8_t)(x >> 8);
        b[4 * i + 2] = (uint8_t)(x >> 16), b[4 * i + 3] = (uint8_t)(x >> 24);
    }
    bool ok = ep_msg_set_bytes(msg, key, b, n * 4);
    free(b);
    return ok;
}

bool ep_msg_set_f32(struct ep_msg *msg, const char *key, const float *v, size_t n)
{
    return set_le32(msg, key, v, n);
}

bool ep_msg_set_i32(struct ep_msg *msg, const char *key, const int32_t *v, size_t n)
{
    return set_le32(msg, key, v, n);
}

static cbor_item_t *find(const cbor_item_t *map, const char *key)
{
    if (!map || !cbor_isa_map(map)) return NULL;
    const size_t n = cbor_map_size(map), kl = strlen(key);
    struct cbor_pair *pairs = cbor_map_handle(map);
    for (size_t i = 0; i < n; i++) {
        const cbor_item_t *k = pairs[i].key;
        if (cbor_isa_string(k) && cbor_string_is_definite(k) && cbor_string_length(k) == kl &&
            memcmp(cbor_string_handle(k), key, kl) == 0)
            return pairs[i].value;
    }
    return NULL;
}

/* The array under key, created (indefinite) if absent. */
static cbor_item_t *array_for(struct ep_msg *msg, const char *key)
{
    cbor_item_t *a = find(msg->map, key);
    if (a) return cbor_isa_array(a) ? a : NULL;
    a = cbor_new_indefinite_array();
    if (!a) return NULL;
    cbor_item_t *keep = cbor_incref(a);
    if (!set_item(msg, key, a)) {
        cbor_decref(&keep);
        return NULL;
    }
    cbor_decref(&keep); /* the map holds it now */
    return find(msg->map, key);
}

bool ep_msg_add_item(struct ep_msg *msg, const char *key, const struct ep_msg *item)
{
    if (!msg || !item) return false;
    cbor_item_t *a = array_for(msg, key);
    return a && cbor_array_push(a, item->map);
}

bool ep_msg_add_str(struct ep_msg *msg, const char *key, const char *v)
{
    if (!msg || !v || !ep_utf8_valid((const uint8_t *)v, strlen(v))) return false;
    cbor_item_t *a = array_for(msg, key);
    cbor_item_t *s = a ? cbor_build_stringn(v, strlen(v)) : NULL;
    bool ok        = s && cbor_array_push(a, s);
    if (s) cbor_decref(&s);
    return ok;
}

/* ---------------------------------------------------------------------------------------- */
/* getters                                                                                   */

const char *ep_msg_type(const struct ep_msg *msg)
{
    /* decoded messages are checked to have a text type; built ones were given one. Types are
     * short: keep a copy in a thread-local buffer so callers get a C string. */
    static _Thread_local char buf[64];
    if (!ep_msg_get_strbuf(msg, "type", buf, sizeof buf)) return "";
    return buf;
}

bool ep_msg_has(const struct ep_msg *msg, const char *key)
{
    return msg && find(msg->map, key) != NULL;
}

static bool item_int(const cbor_item_t *v, int64_t *out)
{
    if (!v) return false;
    if (cbor_isa_uint(v)) {
        uint64_t x = cbor_get_int(v);
        if (x > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)x;
        return true;
    }
    if (cbor_isa_negint(v)) {
        uint64_t x = cbor_get_int(v);
        if (x > (uint64_t)INT64_MAX) return false;
        *out = -(int64_t)x - 1;
        return true;
    }
    return false;
}

bool ep_msg_get_int(const struct ep_msg *msg, const char *key, int64_t *out)
{
    return msg && item_int(find(msg->map, key), out);
}

bool ep_msg_get_double(const struct ep_msg *msg, const char *key, double *out)
{
    if (!msg) return false;
    const cbor_item_t *v = find(msg->map, key);
    int64_t i;
    if (item_int(v, &i)) {
        *out = (double)i;
        return true;
    }
    if (v && cbor_isa_float_ctrl(v) && cbor_float_get_width(v) != CBOR_FLOAT_0) {
        *out = cbor_float_get_float(v);
        return true;
    }
    return false;
}

bool ep_msg_get_bool(const struct ep_msg *msg, const char *key, bool *out)
{
    if (!msg) return false;
    const cbor_item_t *v = find(msg->map, key);
    /* cbor_is_bool asserts on floats: check the width first */
    if (!v || !cbor_isa_float_ctrl(v) || cbor_float_get_width(v) != CBOR_FLOAT_0 ||
        !cbor_is_bool(v))
        return false;
    *out = cbor_get_bool(v);
    return true;
}

static const uint8_t *text_of(const cbor_item_t *v, size_t *len)
{
    if (!v || !cbor_isa_string(v) || !cbor_string_is_definite(v)) return NULL;
    *len = cbor_string_length(v);
    if (memchr(cbor_string_handle(v), 0, *len)) return NULL;
    return cbor_string_handle(v) ? cbor_string_handle(v) : (const uint8_t *)"";
}

char *ep_msg_dup_str(const struct ep_msg *msg, const char *key, size_t max_len)
{
    size_t len;
    const uint8_t *s = msg ? text_of(find(msg->map, key), &len) : NULL;
    if (!s || len > max_len) return NULL;
    char *out = malloc(len + 1);
    if (!out) return NULL;
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

bool ep_msg_get_strbuf(const struct ep_msg *msg, const char *key, char *buf, size_t cap)
{
    size_t len;
    const uint8_t *s = msg ? text_of(find(msg->map, key), &len) : NULL;
    if (!s || len >= cap) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return true;
}

const uint8_t *ep_msg_get_bytes(const struct ep_msg *msg, const char *key, size_t *len)
{
    const cbor_item_t *v = msg ? find(msg->map, key) : NULL;
    if (!v || !cbor_isa_bytestring(v) || !cbor_bytestring_is_definite(v)) return NULL;
    *len = cbor_bytestring_length(v);
    return cbor_bytestring_handle(v) ? cbor_bytestring_handle(v) : (const uint8_t *)"";
}

static void *get_le32(const struct ep_msg *msg, const char *key, size_t max_n, size_t *n)
{
    size_t len;
    const uint8_t *b = ep_msg_get_bytes(msg, key, &len);
    if (!b || len % 4 || len / 4 > max_n) return NULL;
    *n         = len / 4;
    uint8_t *o = malloc(len + 4);
    if (!o) return NULL;
    for (size_t i = 0; i < *n; i++) {
        uint32_t x = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                     (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        memcpy(o + 4 * i, &x, 4);
    }
    return o;
}

float *ep_msg_get_f32(const struct ep_msg *msg, const char *key, size_t max_n, size_t *n)
{
    return get_le32(msg, key, max_n, n);
}

int32_t *ep_msg_get_i32(const struct ep_msg *msg, const char *key, size_t max_n, size_t *n)
{
    return get_le32(msg, key, max_n, n);
}

size_t ep_msg_list_len(const struct ep_msg *msg, const char *key)
{
    const cbor_item_t *a = msg ? find(msg->map, key) : NULL;
    return a && cbor_isa_array(a) ? cbor_array_size(a) : 0;
}

struct ep_msg *ep_msg_list_item(const struct ep_msg *msg, const char *key, size_t i)
{
    const cbor_item_t *a = msg ? find(msg->map, key) : NULL;
    if (!a || !cbor_isa_array(a) || i >= cbor_array_size(a)) return NULL;
    cbor_item_t *it = cbor_array_get(a, i); /* incref'd */
    if (!it) return NULL;
    if (!cbor_isa_map(it)) {
        cbor_decref(&it);
        return NULL;
    }
    struct ep_msg *m = calloc(1, sizeof *m);
    if (!m) {
        cbor_decref(&it);
        return NULL;
    }
    m->map = it;
    return m;
}

bool ep_msg_list_str(const struct ep_msg *msg, const char *key, size_t i, char *buf, size_t cap)
{
    const cbor_item_t *a = msg ? find(msg->map, key) : NULL;
    if (!a || !cbor_isa_array(a) || i >= cbor_array_size(a)) return false;
    cbor_item_t *it = cbor_array_get(a, i);
    size_t len;
    const uint8_t *s = text_of(it, &len);
    bool ok          = s && len < cap;
    if (ok) memcpy(buf, s, len), buf[len] = '\0';
    if (it) cbor_decref(&it);
    return ok;
}

/* ---------------------------------------------------------------------------------------- */
/* encoding                                                                                  */

/* A definite-length deep copy of maps and arrays (scalars are shared). New reference. */
static cbor_item_t *definite(cbor_item_t *it, int depth)
{
    if (depth > EP_MAX_DEPTH) return NULL;
    if (cbor_isa_map(it)) {
        const size_t n = cbor_map_size(it);
        cbor_item_t *m = cbor_new_definite_map(n);
        if (!m) return NULL;
        struct cbor_pair *p = cbor_map_handle(it);
        for (size_t i = 0; i < n; i++) {
            cbor_item_t *v = definite(p[i].value, depth + 1);
            bool ok = v && cbor_map_add(m, (struct cbor_pair){ .key = p[i].key, .value = v });
            if (v) cbor_decref(&v);
            if (!ok) {
                cbor_decref(&m);
                return NULL;
            }
        }
        return m;
    }
    if (cbor_isa_array(it)) {
        const size_t n = cbor_array_size(it);
        cbor_item_t *a = cbor_new_definite_array(n);
        if (!a) return NULL;
        cbor_item_t **h = cbor_array_handle(it);
        for (size_t i = 0; i < n; i++) {
            cbor_item_t *v = definite(h[i], depth + 1);
            bool ok        = v && cbor_array_push(a, v);
            if (v) cbor_decref(&v);
            if (!ok) {
                cbor_decref(&a);
                return NULL;
            }
        }
        return a;
    }
    return cbor_incref(it);
}

bool ep_msg_encode(const struct ep_msg *msg, size_t max_frame, uint8_t **frame, size_t *len)
{
    *frame = NULL;
    *len   = 0;
    if (!msg) return false;
    if (max_frame == 0 || max_frame > EP_MAX_FRAME_LIMIT) max_frame = EP_MAX_FRAME_LIMIT;
    cbor_item_t *d = definite(msg->map, 0);
    if (!d) return false;
    unsigned char *payload = NULL;
    size_t cap             = 0;
    size_t n               = cbor_serialize_alloc(d, &payload, &cap);
    cbor_decref(&d);
    if (n == 0 || n > max_frame) {
        free(payload);
        return false;
    }
    uint8_t *f = malloc(n + EP_FRAME_HEADER);
    if (!f) {
        free(payload);
        return false;
    }
    f[0] = (uint8_t)(n >> 24), f[1] = (uint8_t)(n >> 16), f[2] = (uint8_t)(n >> 8);
    f[3] = (uint8_t)n;
    memcpy(f + EP_FRAME_HEADER, payload, n);
    free(payload);
    *frame = f;
    *len   = n + EP_FRAME_HEADER;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* decoding: a validating pass with libcbor's streaming decoder, then cbor_load              */

struct scan {
    size_t remaining[EP_MAX_DEPTH + 1]; /* items still expected in each open container */
    bool is_map[EP_MAX_DEPTH + 1];
    int depth; /* open containers */
    size_t items;
    bool bad;
    const char *why;
    /* what the last header was */
    enum { S_SCALAR, S_TEXT, S_CONTAINER } kind;
    size_t size;
    bool text_is_key_position;
};

static void fail(struct scan *s, const char *why)
{
    if (!s->bad) s->bad = true, s->why = why;
}

static void cb_string(void *ctx, cbor_data d, size_t n)
{
    struct scan *s = ctx;
    s->kind        = S_TEXT;
    if (!ep_utf8_valid(d, n)) fail(s, "text string is not valid UTF-8");
}
static void cb_bytes(void *ctx, cbor_data d, size_t n)
{
    (void)d, (void)n;
    ((struct scan *)ctx)->kind = S_SCALAR;
}
static void cb_array(void *ctx, size_t n)
{
    struct scan *s = ctx;
    s->kind = S_CONTAINER, s->size = n;
}
static void cb_map(void *ctx, size_t n)
{
    struct scan *s = ctx;
    s->kind = S_CONTAINER, s->size = n;
    if (n > SIZE_MAX / 2) fail(s, "map too large");
    s->size = 2 * n;
}
static void cb_indef(void *ctx)
{
    fail(ctx, "indefinite-length items are not accepted");
}
static void cb_tag(void *ctx, uint64_t t)
{
    (void)t;
    fail(ctx, "CBOR tags are not accepted");
}
static void cb_u8(void *c, uint8_t v)
{
    (void)v, ((struct scan *)c)->kind = S_SCALAR;
}
static void cb_u16(void *c, uint16_t v)
{
    (void)v, ((struct scan *)c)->kind = S_SCALAR;
}
static void cb_u32(void *c, uint32_t v)
{
    (void)v, ((struct scan *)c)->kind = S_SCALAR;
}
static void cb_u64(void *c, uint64_t v)
{
    (void)v, ((struct scan *)c)->kind = S_SCALAR;
}
static void cb_f(void *c, float v)
{
    (void)v, ((struct scan *)c)->kind = S_SCALAR;
}
static void cb_d(void *c, double v)
{
    (void)v, ((struct scan *)c)->kind = S_SCALAR;
}
static void cb_simple(void *c)
{
    ((struct scan *)c)->kind = S_SCALAR;
}
static void cb_bool(void *c, bool v)
{
    (void)v, ((struct scan *)c)->kind = S_SCALAR;
}

static bool scan_payload(const uint8_t *p, size_t len, const char **why)
{
    struct cbor_callbacks cb = cbor_empty_callbacks;
    cb.uint8 = cb_u8, cb.uint16 = cb_u16, cb.uint32 = cb_u32, cb.uint64 = cb_u64;
    cb.negint8 = cb_u8, cb.negint16 = cb_u16, cb.negint32 = cb_u32, cb.negint64 = cb_u64;
    cb.byte_string = cb_bytes, cb.string = cb_string;
    cb.byte_string_start = cb_indef, cb.string_start = cb_indef;
    cb.indef_array_start = cb_indef, cb.indef_map_start = cb_indef, cb.indef_break = cb_indef;
    cb.array_start = cb_array, cb.map_start = cb_map, cb.tag = cb_tag;
    cb.float2 = cb_f, cb.float4 = cb_f, cb.float8 = cb_d;
    cb.undefined = cb_simple, cb.null = cb_simple, cb.boolean = cb_bool;

    struct scan s = { .depth = -1 };
    size_t off    = 0;
    bool top_done = false;
    while (!s.bad) {
        if (top_done) {
            if (off != len) fail(&s, "trailing bytes after the message");
            break;
        }
        if (off >= len) {
            fail(&s, "truncated CBOR");
            break;
        }
        /* a key position in a map must hold text */
        const bool key_pos = s.depth >= 0 && s.is_map[s.depth] && (s.remaining[s.depth] % 2 == 0);
        s.kind             = S_SCALAR;
        struct cbor_decoder_result res = cbor_stream_decode(p + off, len - off, &cb, &s);
        if (res.status != CBOR_DECODER_FINISHED) {
            fail(&s, res.status == CBOR_DECODER_NEDATA ? "truncated CBOR" : "malformed CBOR");
            break;
        }
        off += res.read;
        if (++s.items > EP_MAX_ITEMS) fail(&s, "too many CBOR items");
        if (s.bad) break;
        if (s.depth < 0 && (s.kind != S_CONTAINER || p[0] >> 5 != 5)) { /* major type 5 */
            fail(&s, "a message must be a CBOR map");
            break;
        }
        if (key_pos && s.kind != S_TEXT) {
            fail(&s, "map keys must be text");
            break;
        }
        /* this item fills one slot of the enclosing container */
        if (s.depth >= 0) s.remaining[s.depth]--;
        if (s.kind == S_CONTAINER) {
            if (s.depth + 1 > EP_MAX_DEPTH) {
                fail(&s, "CBOR nested too deeply");
                break;
            }
            if (s.size > len - off) { /* each item takes at least one byte */
                fail(&s, "container larger than the frame");
                break;
            }
            s.depth++;
            s.remaining[s.depth] = s.size;
            s.is_map[s.depth]    = (p[off - res.read] >> 5) == 5;
        }
        while (s.depth >= 0 && s.remaining[s.depth] == 0)
            s.depth--;
        if (s.depth < 0) top_done = true;
    }
    *why = s.why;
    return !s.bad;
}

struct ep_msg *ep_msg_decode(const uint8_t *payload, size_t len, char *why, size_t why_len)
{
    const char *reason = NULL;
    if (len == 0) {
        say(why, why_len, "empty frame");
        return NULL;
    }
    if (!scan_payload(payload, len, &reason)) {
        say(why, why_len, reason ? reason : "malformed CBOR");
        return NULL;
    }
    struct cbor_load_result res;
    cbor_item_t *item = cbor_load(payload, len, &res);
    if (!item || res.error.code != CBOR_ERR_NONE || res.read != len || !cbor_isa_map(item)) {
        if (item) cbor_decref(&item);
        say(why, why_len, "malformed CBOR");
        return NULL;
    }
    struct ep_msg *m = calloc(1, sizeof *m);
    if (!m) {
        cbor_decref(&item);
        say(why, why_len, "out of memory");
        return NULL;
    }
    m->map = item;
    char type[64];
    if (!ep_msg_get_strbuf(m, "type", type, sizeof type) || !type[0]) {
        ep_msg_free(m);
        say(why, why_len, "message has no text \"type\" (at most 63 bytes)");
        return NULL;
    }
    return m;
}
