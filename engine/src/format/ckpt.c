/*
 * format/ckpt.c - PyTorch checkpoint reader (legacy and zip torch.save formats), no Python.
 *
 * Open parses the pickled object with the safe VM (format/pickle.c), turns the 'model' state
 * dict into entries and checks every tensor against its storage: dims, non-negative sizes and
 * strides, overflow-free numel/extent, offset + extent inside the storage, one element type per
 * storage key, and storage data inside the file (legacy) or its zip entry (zip). Tensor data is
 * not read at open: legacy files are mmapped and read in place, zip storages are read on demand
 * (real checkpoints are ~10 GB). See ../shared/docs/jukebox-spec.md §2.2-§2.3.
 *
 * Threads: immutable after open; zip reads share one libzip handle and take a per-file lock.
 */
#include "format/ckpt.h"
#include "core/fp16.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ckpt.c reads little-endian storages in place: big-endian hosts are not supported"
#endif

#define CKPT_MAX_KEY_LEN 4096           /* storage key bytes (zip entry name part) */
#define CKPT_MAX_PKL_SIZE (64ull << 20) /* data.pkl of the zip format (real ones: < 1 MiB) */
#define CKPT_DROP_BYTES (32u << 20)     /* mapped bytes read before the pages are dropped */
#define CKPT_HPS_BUDGET (1u << 20)      /* values visited when checking that hps is plain */
#define CKPT_HPS_DEPTH 32

/* The legacy magic number 0x1950a86a20f9469cfc6c as LONG1 bytes (little-endian). */
static const uint8_t ckpt_legacy_magic[10] = { 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                               0x20, 0x6a, 0xa8, 0x50, 0x19 };

struct ckpt_storage {
    const char *key; /* points into the object pickle */
    enum jb_ckpt_dtype type;
    int64_t numel;
    size_t offset;       /* legacy: byte offset of element 0 in the file */
    zip_uint64_t zindex; /* zip: entry index */
    zip_uint64_t zsize;  /* zip: entry size in bytes */
    bool zstored;        /* zip: stored uncompressed, so libzip can seek in it */
    bool located;
    bool unused; /* named only outside 'model' (legacy: its blob is stepped over) */
};

/* Open-addressing string -> index table (slot = index + 1, 0 = empty). */
struct ckpt_index {
    int64_t *slot;
    size_t mask;
};

struct jb_ckpt {
    bool is_zip;
    const uint8_t *data;
    size_t size;
    bool mapped;
    zip_t *za;
    pthread_mutex_t zip_lock; /* zip_t is not safe for concurrent reads */
    bool lock_ready;
    const char *label;          /* path or "<memory>", for messages; only valid during open */
    struct jb_pickle *obj;      /* owns names, keys and the hps values */
    const struct jb_pyval *hps; /* NULL unless a dict of plain values */
    int64_t step;
    struct jb_ckpt_entry *entries;
    int64_t n_entries;
    struct ckpt_storage *storages;
    int64_t n_storages;
    struct ckpt_index by_name, by_key;
    size_t cap_storages;
    size_t read_since_drop; /* zip: bytes read through the mapping since the last drop */
};

static size_t ckpt_dtype_size(enum jb_ckpt_dtype t)
{
    switch (t) {
    case JB_CKPT_F64:
    case JB_CKPT_I64:
        return 8;
    case JB_CKPT_F32:
    case JB_CKPT_I32:
        return 4;
    case JB_CKPT_F16:
    case JB_CKPT_BF16:
    case JB_CKPT_I16:
        return 2;
    case JB_CKPT_I8:
    case JB_CKPT_U8:
    case JB_CKPT_BOOL:
        return 1;
    }
    return 0;
}

static bool ckpt_fail(const struct jb_ckpt *c, const char *fmt, ...) JB_PRINTF(2, 3);

/* One jb_fail per failure, prefixed with the file. */
static bool ckpt_fail(const struct jb_ckpt *c, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jb_fail(JB_STATUS_ERR_FORMAT, "ckpt %s: %s", c->label ? c->label : "", msg);
    return false;
}

/* Storage class global ("torch.cuda.HalfStorage") -> element type. */
static bool ckpt_storage_dtype(const char *global, enum jb_ckpt_dtype *t)
{
    static const struct {
        const char *name;
        enum jb_ckpt_dtype type;
    } map[] = {
        { "FloatStorage", JB_CKPT_F32 },     { "HalfStorage", JB_CKPT_F16 },
        { "BFloat16Storage", JB_CKPT_BF16 }, { "DoubleStorage", JB_CKPT_F64 },
        { "LongStorage", JB_CKPT_I64 },      { "IntStorage", JB_CKPT_I32 },
        { "ShortStorage", JB_CKPT_I16 },     { "CharStorage", JB_CKPT_I8 },
        { "ByteStorage", JB_CKPT_U8 },       { "BoolStorage", JB_CKPT_BOOL },
        { "UntypedStorage", JB_CKPT_U8 }, /* torch >= 2 loads untyped storages as uint8 */
    };
    const char *dot = global ? strrchr(global, '.') : NULL;
    if (!dot) return false;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(dot + 1, map[i].name) == 0) {
            *t = map[i].type;
            return true;
        }
    }
    return false;
}

/* ---- string index ------------------------------------------------------------------------ */

static uint64_t ckpt_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool ckpt_index_init(struct ckpt_index *ix, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    ix->slot = jb_calloc(cap, sizeof *ix->slot);
    ix->mask = cap - 1;
    return ix->slot != NULL;
}

/* Returns the index stored under s, or -1 and (if empty != NULL) the free slot to insert at. */
static int64_t ckpt_index_find(const struct ckpt_index *ix,
                               const char *s,
                               const char *(*name_of)(const struct jb_ckpt *, int64_t),
                               const struct jb_ckpt *c,
                               size_t *empty)
{
    for (size_t h = ckpt_hash(s) & ix->mask;; h = (h + 1) & ix->mask) {
        if (!ix->slot[h]) {
            if (empty) *empty = h;
            return -1;
        }
        if (strcmp(name_of(c, ix->slot[h] - 1), s) == 0) return ix->slot[h] - 1;
    }
}

static const char *ckpt_entry_name(const struct jb_ckpt *c, int64_t i)
{
    return c->entries[i].name;
}

static const char *ckpt_storage_key(const struct jb_ckpt *c, int64_t i)
{
    return c->storages[i].key;
}

/* ---- tensors ----------------------------------------------------------------------------- */

/* An int that is a true Python int (not bool) and within [lo, hi]. */
static bool ckpt_int(const struct jb_pyval *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (jb_pyval_type(v) != JB_PY_INT) return false;
    int64_t x = jb_pyval_int(v);
    if (x < lo || x > hi) return false;
    *out = x;
    return true;
}

/* A str without embedded NULs (names and keys are used as C strings). */
static const char *ckpt_cstr(const struct jb_pyval *v)
{
    const char *s = jb_pyval_str(v);
    if (jb_pyval_type(v) != JB_PY_STR || strlen(s) != jb_pyval_len(v)) return NULL;
    return s;
}

/* numel and extent (1 + largest element index) of a strided view; false on overflow. */
static bool ckpt_view_extent(int n_dims,
                             const int64_t *shape,
                             const int64_t *stride,
                             int64_t *numel,
                             int64_t *extent)
{
    int64_t n = 1, last = 0;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || stride[d] < 0) return false;
        if (__builtin_mul_overflow(n, shape[d], &n)) return false;
    }
    if (n == 0) {
        *numel  = 0;
        *extent = 0;
        return true;
    }
    for (int d = 0; d < n_dims; d++) {
        int64_t span;
        if (__builtin_mul_overflow(shape[d] - 1, stride[d], &span)) return false;
        if (__builtin_add_overflow(last, span, &last)) return false;
    }
    *numel = n;
    return !__builtin_add_overflow(last, 1, extent);
}

/* Parses the persistent id of a tensor's storage, registering the storage by key. Sets the
 * storage index and the element offset/limit of the (possibly viewed) storage. */
static bool ckpt_parse_storage(struct jb_ckpt *c,
                               const char *name,
                               const struct jb_pyval *persid,
                               int64_t *storage,
                               int64_t *base,
                               int64_t *limit)
{
    const struct jb_pyval *t = jb_pyval_item(persid, 0);
    size_t n                 = jb_pyval_len(t);
    if (jb_pyval_type(t) != JB_PY_TUPLE || (n != 5 && n != 6))
        return ckpt_fail(c, "tensor '%s': storage id is not a 5- or 6-tuple", name);
    const char *tag = ckpt_cstr(jb_pyval_item(t, 0));
    const char *cls = jb_pyval_str(jb_pyval_item(t, 1));
    const char *key = ckpt_cstr(jb_pyval_item(t, 2));
    enum jb_ckpt_dtype type;
    int64_t numel;
    if (!tag || strcmp(tag, "storage") != 0)
        return ckpt_fail(c, "tensor '%s': persistent id is not a ('storage', ...) tuple", name);
    if (jb_pyval_type(jb_pyval_item(t, 1)) != JB_PY_GLOBAL || !ckpt_storage_dtype(cls, &type))
        return ckpt_fail(c,
                         "tensor '%s': storage class %s%s%s is not allowed (not a torch storage "
                         "type)",
                         name,
                         cls ? "'" : "",
                         cls ? cls : "(not a global)",
                         cls ? "'" : "");
    if (!key || jb_pyval_len(jb_pyval_item(t, 2)) > CKPT_MAX_KEY_LEN)
        return ckpt_fail(c,
                         "tensor '%s': storage key is not a string of at most %d bytes",
                         name,
                         CKPT_MAX_KEY_LEN);
    size_t es       = ckpt_dtype_size(type);
    int64_t max_num = (int64_t)(INT64_MAX / (int64_t)es);
    if (!ckpt_int(jb_pyval_item(t, 4), 0, max_num, &numel))
        return ckpt_fail(c, "tensor '%s': storage '%s' has a bad element count", name, key);

    size_t slot = 0;
    int64_t s   = ckpt_index_find(&c->by_key, key, ckpt_storage_key, c, &slot);
    if (s < 0) { /* sized for one storage per tensor and per persistent id */
        if ((size_t)c->n_storages >= c->cap_storages)
            return ckpt_fail(c, "tensor '%s': more storages than persistent ids", name);
        s                       = c->n_storages++;
        struct ckpt_storage *st = &c->storages[s];
        st->key                 = key;
        st->type                = type;
        st->numel               = numel;
        c->by_key.slot[slot]    = s + 1;
    } else {
        const struct ckpt_storage *st = &c->storages[s];
        if (st->type != type)
            return ckpt_fail(
              c, "storage '%s' is used with two element types (tensor '%s')", key, name);
        if (st->numel != numel)
            return ckpt_fail(c,
                             "storage '%s' is declared with %lld and %lld elements",
                             key,
                             (long long)st->numel,
                             (long long)numel);
    }
    *storage = s;
    *base    = 0;
    *limit   = numel;

    /* legacy view_metadata: (view_key, offset, view_numel) slices the root storage */
    const struct jb_pyval *view = n == 6 ? jb_pyval_item(t, 5) : NULL;
    if (view && jb_pyval_type(view) != JB_PY_NONE) {
        int64_t off, len;
        if (c->is_zip || jb_pyval_type(view) != JB_PY_TUPLE || jb_pyval_len(view) != 3 ||
            !ckpt_cstr(jb_pyval_item(view, 0)) ||
            !ckpt_int(jb_pyval_item(view, 1), 0, numel, &off) ||
            !ckpt_int(jb_pyval_item(view, 2), 0, numel - off, &len))
            return ckpt_fail(c, "tensor '%s': bad storage view of '%s'", name, key);
        *base  = off;
        *limit = off + len;
    }
    return true;
}

static bool ckpt_add_tensor(struct jb_ckpt *c, const struct jb_pyval *kv, const struct jb_pyval *v)
{
    const char *name = ckpt_cstr(kv);
    if (!name) return ckpt_fail(c, "state dict key %lld is not a string", (long long)c->n_entries);
    if (jb_pyval_type(v) == JB_PY_OPAQUE)
        return ckpt_fail(c,
                         "state dict entry '%s': global '%s' is not allowed here (never "
                         "called; only tensor rebuilds are)",
                         name,
                         jb_pyval_str(v));
    if (jb_pyval_type(v) != JB_PY_TENSOR)
        return ckpt_fail(c,
                         "state dict entry '%s' has type %s, not a tensor",
                         name,
                         jb_pyval_type_name(jb_pyval_type(v)));
    if (strncmp(name, "module.", 7) == 0) name += 7; /* DistributedDataParallel prefix */

    struct jb_ckpt_entry *e = &c->entries[c->n_entries];
    memset(e, 0, sizeof *e);
    e->name = name;

    int64_t base = 0, limit = 0, offset = 0, numel = 0, extent = 0;
    if (!ckpt_parse_storage(c, name, jb_pyval_item(v, 0), &e->storage, &base, &limit)) return false;
    e->type                     = c->storages[e->storage].type;
    const struct jb_pyval *size = jb_pyval_item(v, 2);
    const struct jb_pyval *strd = jb_pyval_item(v, 3);
    size_t ndims                = jb_pyval_len(size);
    if (ndims > JB_CKPT_MAX_DIMS)
        return ckpt_fail(
          c, "tensor '%s' has %zu dimensions (at most %d)", name, ndims, JB_CKPT_MAX_DIMS);
    e->n_dims = (int)ndims;
    for (size_t d = 0; d < ndims; d++) {
        if (!ckpt_int(jb_pyval_item(size, d), 0, INT64_MAX, &e->shape[d]))
            return ckpt_fail(c, "tensor '%s': dimension %zu is negative", name, d);
        if (!ckpt_int(jb_pyval_item(strd, d), 0, INT64_MAX, &e->stride[d]))
            return ckpt_fail(c, "tensor '%s': stride %zu is negative", name, d);
    }
    if (!ckpt_int(jb_pyval_item(v, 1), 0, INT64_MAX, &offset))
        return ckpt_fail(c, "tensor '%s': storage offset is negative", name);
    if (!ckpt_view_extent(e->n_dims, e->shape, e->stride, &numel, &extent) ||
        numel > (int64_t)(SIZE_MAX / sizeof(float)))
        return ckpt_fail(c, "tensor '%s': element count overflows", name);
    int64_t end;
    if (__builtin_add_overflow(base, offset, &e->storage_offset) ||
        __builtin_add_overflow(e->storage_offset, extent, &end))
        return ckpt_fail(c, "tensor '%s': storage offset + extent overflows", name);
    if (end > limit)
        return ckpt_fail(c,
                         "tensor '%s' spans elements [%lld, %lld) outside storage '%s' "
                         "[%lld, %lld)",
                         name,
                         (long long)e->storage_offset,
                         (long long)end,
                         c->storages[e->storage].key,
                         (long long)base,
                         (long long)limit);
    size_t slot = 0;
    if (ckpt_index_find(&c->by_name, name, ckpt_entry_name, c, &slot) >= 0)
        return ckpt_fail(c, "duplicate tensor name '%s'", name);
    c->by_name.slot[slot] = ++c->n_entries;
    return true;
}

/* True if v is None/bool/int/float/str/bytes, or a list/tuple/dict of such, within budget. */
static bool ckpt_is_plain(const struct jb_pyval *v, int depth, size_t *budget)
{
    if (!*budget || depth > CKPT_HPS_DEPTH) return false;
    --*budget;
    switch (jb_pyval_type(v)) {
    case JB_PY_NONE:
    case JB_PY_BOOL:
    case JB_PY_INT:
    case JB_PY_LONG:
    case JB_PY_FLOAT:
    case JB_PY_STR:
    case JB_PY_BYTES:
    case JB_PY_OPAQUE: /* an inert placeholder (a numpy scalar, say) */
        return true;
    case JB_PY_DICT:
    case JB_PY_LIST:
    case JB_PY_TUPLE:
        for (size_t i = 0; i < jb_pyval_len(v); i++) {
            const struct jb_pyval *key = jb_pyval_dict_key(v, i); /* NULL unless a dict */
            if (key && !ckpt_is_plain(key, depth + 1, budget)) return false;
            if (!ckpt_is_plain(jb_pyval_item(v, i), depth + 1, budget)) return false;
        }
        return true;
    default:
        return false;
    }
}

/* Registers the storage a persistent id outside 'model' names (an optimizer state's, say), so
 * that the legacy reader can step over its blob. Malformed ids are left alone: nothing reads
 * them, and a blob they should describe is then reported as unknown. */
static void ckpt_note_other_storage(struct jb_ckpt *c, const struct jb_pyval *persid)
{
    const struct jb_pyval *t = jb_pyval_item(persid, 0);
    size_t n                 = jb_pyval_len(t);
    if (jb_pyval_type(t) != JB_PY_TUPLE || (n != 5 && n != 6)) return;
    const char *tag = ckpt_cstr(jb_pyval_item(t, 0));
    const char *cls = jb_pyval_str(jb_pyval_item(t, 1));
    const char *key = ckpt_cstr(jb_pyval_item(t, 2));
    enum jb_ckpt_dtype type;
    int64_t numel;
    if (!tag || strcmp(tag, "storage") != 0 || !key || strlen(key) > CKPT_MAX_KEY_LEN ||
        jb_pyval_type(jb_pyval_item(t, 1)) != JB_PY_GLOBAL || !ckpt_storage_dtype(cls, &type) ||
        !ckpt_int(jb_pyval_item(t, 4), 0, INT64_MAX / 8, &numel))
        return;
    size_t slot = 0;
    if (ckpt_index_find(&c->by_key, key, ckpt_storage_key, c, &slot) >= 0) return;
    if ((size_t)c->n_storages >= c->cap_storages) return;
    int64_t s               = c->n_storages++;
    struct ckpt_storage *st = &c->storages[s];
    st->key                 = key;
    st->type                = type;
    st->numel               = numel;
    st->unused              = true;
    c->by_key.slot[slot]    = s + 1;
}

/* Reads 'model', 'hps' and 'step' from the checkpoint object; everything else in it (metrics,
 * optimizer state, placeholders for unknown objects) is passed over. */
static bool ckpt_parse_object(struct jb_ckpt *c)
{
    const struct jb_pyval *obj = jb_pickle_result(c->obj);
    if (jb_pyval_type(obj) == JB_PY_OPAQUE)
        return ckpt_fail(c,
                         "the saved object: global '%s' is not allowed here (never called; "
                         "expected a dict with a 'model' entry)",
                         jb_pyval_str(obj));
    if (jb_pyval_type(obj) != JB_PY_DICT)
        return ckpt_fail(c,
                         "the saved object is a %s, not a dict with a 'model' entry",
                         jb_pyval_type_name(jb_pyval_type(obj)));
    const struct jb_pyval *model = jb_pyval_dict_get(obj, "model");
    if (jb_pyval_type(model) == JB_PY_OPAQUE)
        return ckpt_fail(c,
                         "'model': global '%s' is not allowed here (never called; expected a "
                         "state dict of tensors)",
                         jb_pyval_str(model));
    if (jb_pyval_type(model) != JB_PY_DICT)
        return ckpt_fail(c, "the saved object has no 'model' state dict");

    size_t n        = jb_pyval_len(model);
    size_t n_ids    = jb_pickle_n_persids(c->obj);
    size_t n_st     = n + n_ids;
    c->cap_storages = n_st;
    c->entries      = jb_calloc(n ? n : 1, sizeof *c->entries);
    c->storages     = jb_calloc(n_st ? n_st : 1, sizeof *c->storages);
    if (!c->entries || !c->storages || !ckpt_index_init(&c->by_name, n) ||
        !ckpt_index_init(&c->by_key, n_st))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ckpt_add_tensor(c, jb_pyval_dict_key(model, i), jb_pyval_item(model, i))) return false;
    if (!c->is_zip) /* the legacy blobs of the other storages must be stepped over */
        for (size_t i = 0; i < n_ids; i++)
            ckpt_note_other_storage(c, jb_pickle_persid(c->obj, i));

    /* hps (a Hyperparams object, read as a dict) may hold placeholders for objects such as
     * numpy scalars: they are inert leaves; a cyclic or too deep hps is ignored. */
    const struct jb_pyval *hps = jb_pyval_dict_get(obj, "hps");
    size_t budget              = CKPT_HPS_BUDGET;
    if (jb_pyval_type(hps) == JB_PY_DICT && ckpt_is_plain(hps, 0, &budget))
        c->hps = hps;
    else if (hps)
        jb_log(JB_LOG_WARN, "ckpt %s: 'hps' is not a dict of plain values; ignored", c->label);
    const struct jb_pyval *step = jb_pyval_dict_get(obj, "step");
    c->step                     = jb_pyval_type(step) == JB_PY_INT ? jb_pyval_int(step) : -1;
    return true;
}

/* ---- legacy format ----------------------------------------------------------------------- */

/* Runs the next pickle at *pos; the caller frees the result. Only the object pickle may hold
 * unknown globals (as inert placeholders). */
static struct jb_pickle *ckpt_next_pickle(struct jb_ckpt *c,
                                          size_t *pos,
                                          const char *what,
                                          bool lenient)
{
    char ctx[1024];
    snprintf(ctx, sizeof ctx, "ckpt %s: legacy %s", c->label, what);
    size_t used;
    struct jb_pickle_opts o = { .context = ctx, .base_offset = *pos, .opaque_globals = lenient };
    struct jb_pickle *p     = jb_pickle_load_opts(c->data + *pos, c->size - *pos, &used, &o);
    if (p) *pos += used;
    return p;
}

static bool ckpt_open_legacy(struct jb_ckpt *c)
{
    size_t pos               = 0;
    struct jb_pickle *p      = ckpt_next_pickle(c, &pos, "magic number", false);
    const struct jb_pyval *v = jb_pickle_result(p);
    if (!p) return false;
    bool ok = jb_pyval_type(v) == JB_PY_LONG && jb_pyval_len(v) == sizeof ckpt_legacy_magic &&
              memcmp(jb_pyval_bytes(v), ckpt_legacy_magic, sizeof ckpt_legacy_magic) == 0;
    jb_pickle_free(p);
    if (!ok) return ckpt_fail(c, "legacy: bad magic number (not a torch.save file)");

    p = ckpt_next_pickle(c, &pos, "protocol version", false);
    if (!p) return false;
    v  = jb_pickle_result(p);
    ok = jb_pyval_type(v) == JB_PY_INT && jb_pyval_int(v) == 1001;
    jb_pickle_free(p);
    if (!ok) return ckpt_fail(c, "legacy: protocol version is not 1001");

    p = ckpt_next_pickle(c, &pos, "sys info", false);
    if (!p) return false;
    v                         = jb_pickle_result(p);
    const struct jb_pyval *le = jb_pyval_dict_get(v, "little_endian");
    ok                        = jb_pyval_type(v) == JB_PY_DICT &&
         (!le || jb_pyval_type(le) != JB_PY_BOOL || jb_pyval_int(le));
    jb_pickle_free(p);
    if (!ok) return ckpt_fail(c, "legacy: sys info is not a dict or says big-endian");

    c->obj = ckpt_next_pickle(c, &pos, "object", true);
    if (!c->obj || !ckpt_parse_object(c)) return false;

    p = ckpt_next_pickle(c, &pos, "storage key list", false);
    if (!p) return false;
    v = jb_pickle_result(p);
    if (jb_pyval_type(v) != JB_PY_LIST) {
        jb_pickle_free(p);
        return ckpt_fail(c, "legacy: the storage key list is not a list");
    }
    /* Blobs follow in list order: int64 element count, then the raw elements. */
    ok = true;
    for (size_t i = 0; ok && i < jb_pyval_len(v); i++) {
        const char *key = ckpt_cstr(jb_pyval_item(v, i));
        int64_t s       = key ? ckpt_index_find(&c->by_key, key, ckpt_storage_key, c, NULL) : -1;
        if (s < 0) {
            ok =
              ckpt_fail(c, "legacy: storage list item %zu is not the key of any persistent id", i);
            break;
        }
        struct ckpt_storage *st = &c->storages[s];
        if (st->located) {
            ok = ckpt_fail(c, "legacy: storage '%s' is listed twice", key);
            break;
        }
        size_t bytes;
        if (c->size - pos < 8) {
            ok = ckpt_fail(c, "legacy: storage '%s' header past end of file", key);
            break;
        }
        uint64_t count = 0;
        for (int k = 7; k >= 0; k--)
            count = (count << 8) | c->data[pos + (size_t)k];
        pos += 8;
        if (count != (uint64_t)st->numel) {
            ok = ckpt_fail(c,
                           "legacy: storage '%s' has %llu elements in the file, %lld declared",
                           key,
                           (unsigned long long)count,
                           (long long)st->numel);
            break;
        }
        if (!jb_mul_size((size_t)count, ckpt_dtype_size(st->type), &bytes) ||
            bytes > c->size - pos) {
            ok = ckpt_fail(c,
                           "legacy: storage '%s' data (%llu elements) past end of file",
                           key,
                           (unsigned long long)count);
            break;
        }
        st->offset  = pos;
        st->located = true;
        pos += bytes;
    }
    jb_pickle_free(p);
    if (!ok) return false;
    for (int64_t s = 0; s < c->n_storages; s++)
        if (!c->storages[s].located && !c->storages[s].unused)
            return ckpt_fail(c, "legacy: storage '%s' has no data", c->storages[s].key);
    return true;
}

/* ---- zip format -------------------------------------------------------------------------- */

static bool ckpt_zip_fail(struct jb_ckpt *c, const char *what)
{
    return ckpt_fail(c, "zip: %s: %s", what, zip_strerror(c->za));
}

/* Reads len bytes at off of entry idx into dst (seeks in stored entries, else skips). Not
 * thread-safe on one zip_t: callers after open hold zip_lock. */
static bool ckpt_zip_read(zip_t *za,
                          zip_uint64_t idx,
                          bool can_seek,
                          zip_uint64_t off,
                          void *dst,
                          zip_uint64_t len,
                          bool to_end,
                          const char *what)
{
    zip_file_t *f = zip_fopen_index(za, idx, 0);
    if (!f) {
        jb_fail(JB_STATUS_ERR_FORMAT, "%s: zip: cannot open entry: %s", what, zip_strerror(za));
        return false;
    }
    bool ok = true;
    if (off && can_seek) {
        ok = zip_fseek(f, (zip_int64_t)off, SEEK_SET) == 0;
    } else if (off) { /* a failed zip_fseek poisons the handle: skip compressed data instead */
        char skip[4096];
        zip_uint64_t left = off;
        while (ok && left) {
            zip_uint64_t n = left < sizeof skip ? left : sizeof skip;
            ok             = zip_fread(f, skip, n) == (zip_int64_t)n;
            left -= n;
        }
    }
    uint8_t *d        = dst;
    zip_uint64_t done = 0;
    while (ok && done < len) {
        zip_int64_t n = zip_fread(f, d + done, len - done);
        if (n <= 0)
            ok = false;
        else
            done += (zip_uint64_t)n;
    }
    /* libzip checks the CRC when a read that began at 0 hits the end: make it do so */
    uint8_t extra;
    if (ok && to_end && (off == 0 || !can_seek) && zip_fread(f, &extra, 1) != 0) ok = false;
    if (!ok)
        jb_fail(
          JB_STATUS_ERR_FORMAT, "%s: zip: short or corrupt read: %s", what, zip_file_strerror(f));
    zip_fclose(f);
    return ok;
}

/* Stats an entry that we will read; only stored or deflated, unencrypted, sane sizes. */
static bool ckpt_zip_stat(struct jb_ckpt *c,
                          zip_uint64_t idx,
                          const char *name,
                          zip_uint64_t *size,
                          bool *stored)
{
    zip_stat_t sb;
    zip_stat_init(&sb);
    if (zip_stat_index(c->za, idx, 0, &sb) != 0) return ckpt_zip_fail(c, name);
    zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
    if ((sb.valid & need) != need) return ckpt_fail(c, "zip: entry '%s' has no sizes", name);
    if ((sb.valid & ZIP_STAT_ENCRYPTION_METHOD) && sb.encryption_method != ZIP_EM_NONE)
        return ckpt_fail(c, "zip: entry '%s' is encrypted", name);
    if (sb.comp_method != ZIP_CM_STORE && sb.comp_method != ZIP_CM_DEFLATE)
        return ckpt_fail(
          c, "zip: entry '%s' uses compression method %u", name, (unsigned)sb.comp_method);
    /* deflate expands at most ~1032x: larger claims are corrupt (or a zip bomb) */
    if (sb.comp_size > c->size || (sb.comp_method == ZIP_CM_STORE && sb.size != sb.comp_size) ||
        sb.size / 1032 > sb.comp_size + 1)
        return ckpt_fail(c, "zip: entry '%s' sizes are inconsistent with the archive", name);
    *size = sb.size;
    if (stored) *stored = sb.comp_method == ZIP_CM_STORE;
    return true;
}

static bool ckpt_open_zip(struct jb_ckpt *c)
{
    zip_error_t zerr;
    zip_error_init(&zerr);
    zip_source_t *src = zip_source_buffer_create(c->data, c->size, 0, &zerr);
    if (src) {
        c->za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
        if (!c->za) zip_source_free(src);
    }
    if (!c->za) {
        ckpt_fail(c, "zip: cannot open archive: %s", zip_error_strerror(&zerr));
        zip_error_fini(&zerr);
        return false;
    }
    zip_error_fini(&zerr);
    if (pthread_mutex_init(&c->zip_lock, NULL) != 0) return ckpt_fail(c, "zip: mutex init failed");
    c->lock_ready = true;

    /* The archive folder name varies: find the one "<dir>/data.pkl" with no other '/'. */
    zip_int64_t n_zip = zip_get_num_entries(c->za, 0), pkl = -1;
    size_t dir_len = 0;
    for (zip_int64_t i = 0; i < n_zip; i++) {
        const char *nm    = zip_get_name(c->za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        const char *slash = nm ? strchr(nm, '/') : NULL;
        if (!slash || slash == nm || strcmp(slash, "/data.pkl") != 0) continue;
        if (pkl >= 0) return ckpt_fail(c, "zip: more than one <archive>/data.pkl entry");
        pkl     = i;
        dir_len = (size_t)(slash - nm);
    }
    if (pkl < 0) return ckpt_fail(c, "zip: no <archive>/data.pkl entry (not a torch.save file)");
    if (dir_len > 1024) return ckpt_fail(c, "zip: archive folder name too long");
    char dir[1025];
    memcpy(dir, zip_get_name(c->za, (zip_uint64_t)pkl, ZIP_FL_ENC_RAW), dir_len);
    dir[dir_len] = '\0';

    char name[1024 + CKPT_MAX_KEY_LEN + 16], ctx[1100];
    zip_int64_t bo;
    snprintf(ctx, sizeof ctx, "ckpt %s", c->label);
    snprintf(name, sizeof name, "%s/byteorder", dir); /* torch >= 2.1 records it */
    if ((bo = zip_name_locate(c->za, name, ZIP_FL_ENC_RAW)) >= 0) {
        zip_uint64_t size = 0;
        char order[8]     = { 0 };
        if (!ckpt_zip_stat(c, (zip_uint64_t)bo, name, &size, NULL)) return false;
        if (size != 6) return ckpt_fail(c, "zip: byteorder is not 'little'");
        if (!ckpt_zip_read(c->za, (zip_uint64_t)bo, false, 0, order, 6, true, ctx)) return false;
        if (memcmp(order, "little", 6) != 0) return ckpt_fail(c, "zip: byteorder is not 'little'");
    }

    zip_uint64_t pkl_size = 0;
    snprintf(name, sizeof name, "%s/data.pkl", dir);
    if (!ckpt_zip_stat(c, (zip_uint64_t)pkl, name, &pkl_size, NULL)) return false;
    if (pkl_size > CKPT_MAX_PKL_SIZE)
        return ckpt_fail(c, "zip: data.pkl is %llu bytes", (unsigned long long)pkl_size);
    uint8_t *buf = jb_malloc((size_t)pkl_size);
    if (!buf) return false;
    if (!ckpt_zip_read(c->za, (zip_uint64_t)pkl, false, 0, buf, pkl_size, true, ctx)) {
        free(buf);
        return false;
    }
    snprintf(ctx, sizeof ctx, "ckpt %s: zip data.pkl", c->label);
    struct jb_pickle_opts o = { .context = ctx, .opaque_globals = true };
    c->obj                  = jb_pickle_load_opts(buf, (size_t)pkl_size, NULL, &o);
    free(buf); /* the VM copied every string it kept */
    if (!c->obj || !ckpt_parse_object(c)) return false;

    for (int64_t s = 0; s < c->n_storages; s++) { /* only the storages of 'model' */
        struct ckpt_storage *st = &c->storages[s];
        snprintf(name, sizeof name, "%s/data/%s", dir, st->key);
        zip_int64_t idx = zip_name_locate(c->za, name, ZIP_FL_ENC_RAW);
        if (idx < 0) return ckpt_fail(c, "zip: storage '%s' has no entry '%s'", st->key, name);
        size_t bytes;
        if (!ckpt_zip_stat(c, (zip_uint64_t)idx, name, &st->zsize, &st->zstored)) return false;
        if (!jb_mul_size((size_t)st->numel, ckpt_dtype_size(st->type), &bytes) || bytes > st->zsize)
            return ckpt_fail(c,
                             "zip: storage '%s' declares %lld elements but '%s' holds %llu bytes",
                             st->key,
                             (long long)st->numel,
                             name,
                             (unsigned long long)st->zsize);
        st->zindex  = (zip_uint64_t)idx;
        st->located = true;
    }
    return true;
}

/* ---- open / close ------------------------------------------------------------------------ */

static struct jb_ckpt *ckpt_open_buffer(const uint8_t *data,
                                        size_t size,
                                        const char *label,
                                        bool mapped)
{
    struct jb_ckpt *c = jb_calloc(1, sizeof *c);
    if (!c) {
        if (mapped) munmap((void *)data, size);
        return NULL;
    }
    c->data   = data;
    c->size   = size;
    c->mapped = mapped;
    c->label  = label;
    c->step   = -1;
    bool ok;
    if (size >= 4 && memcmp(data, "PK\x03\x04", 4) == 0) {
        c->is_zip = true;
        ok        = ckpt_open_zip(c);
    } else if (size >= 2 && data[0] == 0x80) {
        ok = ckpt_open_legacy(c);
    } else {
        uint8_t h[4] = { 0 };
        memcpy(h, data, size < 4 ? size : 4);
        ok = ckpt_fail(c,
                       "not a PyTorch checkpoint: starts with %02x %02x %02x %02x (expected "
                       "'PK\\x03\\x04' for zip or 80 02 for the legacy format)",
                       h[0],
                       h[1],
                       h[2],
                       h[3]);
    }
    c->label = NULL;
    if (!ok) {
        jb_ckpt_close(c);
        return NULL;
    }
    return c;
}

struct jb_ckpt *jb_ckpt_open_memory(const void *data, size_t size)
{
    if (!data || !size) {
        jb_fail(JB_STATUS_ERR_FORMAT, "ckpt <memory>: empty input");
        return NULL;
    }
    return ckpt_open_buffer(data, size, "<memory>", false);
}

struct jb_ckpt *jb_ckpt_open(const char *path)
{
    if (!path) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "ckpt: NULL path");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        jb_fail(JB_STATUS_ERR_IO, "ckpt %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        jb_fail(JB_STATUS_ERR_IO, "ckpt %s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        jb_fail(JB_STATUS_ERR_FORMAT, "ckpt %s: empty file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *map   = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err     = errno;
    close(fd);
    if (map == MAP_FAILED) {
        jb_fail(JB_STATUS_ERR_IO, "ckpt %s: mmap failed: %s", path, strerror(err));
        return NULL;
    }
    return ckpt_open_buffer(map, size, path, true);
}

void jb_ckpt_close(struct jb_ckpt *c)
{
    if (!c) return;
    if (c->za) zip_discard(c->za); /* also frees the buffer source */
    if (c->lock_ready) pthread_mutex_destroy(&c->zip_lock);
    if (c->mapped) munmap((void *)c->data, c->size);
    jb_pickle_free(c->obj);
    free(c->entries);
    free(c->storages);
    free(c->by_name.slot);
    free(c->by_key.slot);
    free(c);
}

bool jb_ckpt_is_zip(const struct jb_ckpt *c)
{
    return c && c->is_zip;
}

int64_t jb_ckpt_n_entries(const struct jb_ckpt *c)
{
    return c ? c->n_entries : 0;
}

const struct jb_ckpt_entry *jb_ckpt_entry(const struct jb_ckpt *c, int64_t i)
{
    return c && i >= 0 && i < c->n_entries ? &c->entries[i] : NULL;
}

const struct jb_ckpt_entry *jb_ckpt_find(const struct jb_ckpt *c, const char *name)
{
    if (!c || !name) return NULL;
    int64_t i = ckpt_index_find(&c->by_name, name, ckpt_entry_name, c, NULL);
    return i >= 0 ? &c->entries[i] : NULL;
}

int64_t jb_ckpt_storage_numel(const struct jb_ckpt *c, int64_t storage)
{
    return c && storage >= 0 && storage < c->n_storages ? c->storages[storage].numel : 0;
}

const struct jb_pyval *jb_ckpt_hps(const struct jb_ckpt *c)
{
    return c ? c->hps : NULL;
}

int64_t jb_ckpt_step(const struct jb_ckpt *c)
{
    return c ? c->step : -1;
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Gives back the pages of [off, off + len) of a mapped file once read: they are clean copies of
 * the file, so dropping them loses nothing, and an import of a 10 GB checkpoint then holds a
 * few tensors' worth of it in memory instead of all it has read (RSS counts mapped pages). */
static void ckpt_drop_pages(const struct jb_ckpt *c, size_t off, size_t len)
{
    if (!c->mapped || !len || off >= c->size) return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t lo   = off / page * page;
    size_t hi   = len > c->size - off ? c->size : off + len;
    (void)madvise((void *)(c->data + lo), hi - lo, MADV_DONTNEED);
}

/* Converts n elements spaced `stride` elements apart, starting at src. */
static void ckpt_convert_run(enum jb_ckpt_dtype t,
                             const uint8_t *src,
                             int64_t stride,
                             int64_t n,
                             float *dst)
{
    size_t step = (size_t)stride * ckpt_dtype_size(t);
#define CKPT_RUN(ctype, expr)                                                                      \
    for (int64_t i = 0; i < n; i++, src += step) {                                                 \
        ctype x;                                                                                   \
        memcpy(&x, src, sizeof x); /* storages in a legacy file are unaligned */                   \
        dst[i] = (expr);                                                                           \
    }
    switch (t) {
    case JB_CKPT_F32:
        if (stride == 1)
            memcpy(dst, src, (size_t)n * sizeof(float));
        else
            CKPT_RUN(float, x);
        break;
    case JB_CKPT_F16:
        CKPT_RUN(uint16_t, jb_f16_to_f32(x));
        break;
    case JB_CKPT_BF16:
        CKPT_RUN(uint16_t, jb_bf16_to_f32(x));
        break;
    case JB_CKPT_F64:
        CKPT_RUN(double, (float)x);
        break;
    case JB_CKPT_I64:
        CKPT_RUN(int64_t, (float)x);
        break;
    case JB_CKPT_I32:
        CKPT_RUN(int32_t, (float)x);
        break;
    case JB_CKPT_I16:
        CKPT_RUN(int16_t, (float)x);
        break;
    case JB_CKPT_I8:
        CKPT_RUN(int8_t, (float)x);
        break;
    case JB_CKPT_U8:
        CKPT_RUN(uint8_t, (float)x);
        break;
    case JB_CKPT_BOOL:
        CKPT_RUN(uint8_t, x ? 1.0f : 0.0f);
        break;
    }
#undef CKPT_RUN
}

/* Row-major dense: the elements are exactly storage[0 .. numel) in order. */
static bool ckpt_is_contiguous(int n_dims, const int64_t *shape, const int64_t *stride)
{
    int64_t expect = 1;
    for (int d = n_dims - 1; d >= 0; d--) {
        if (shape[d] == 1) continue;
        if (stride[d] != expect) return false;
        expect *= shape[d];
    }
    return true;
}

/* Walks the view: merged dims, innermost run converted in one go. src = element 0 of the view. */
static void ckpt_convert_view(enum jb_ckpt_dtype t,
                              const uint8_t *src,
                              int n_dims,
                              const int64_t *shape,
                              const int64_t *stride,
                              int64_t numel,
                              float *dst)
{
    /* Drop size-1 dims and merge dims that are contiguous with the next one. */
    int64_t sz[JB_CKPT_MAX_DIMS], st[JB_CKPT_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] == 1) continue;
        if (nd && st[nd - 1] == shape[d] * stride[d]) {
            sz[nd - 1] *= shape[d];
            st[nd - 1] = stride[d];
        } else {
            sz[nd] = shape[d];
            st[nd] = stride[d];
            nd++;
        }
    }
    if (nd == 0) {
        ckpt_convert_run(t, src, 1, numel, dst); /* a scalar or all dims 1 */
        return;
    }
    size_t es                     = ckpt_dtype_size(t);
    int64_t inner                 = sz[nd - 1];
    int64_t idx[JB_CKPT_MAX_DIMS] = { 0 };
    for (int64_t done = 0; done < numel; done += inner) {
        int64_t off = 0;
        for (int d = 0; d < nd - 1; d++)
            off += idx[d] * st[d];
        ckpt_convert_run(t, src + (size_t)off * es, st[nd - 1], inner, dst + done);
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < sz[d]) break;
            idx[d] = 0;
        }
    }
}

enum jb_status jb_ckpt_read_f32(const struct jb_ckpt *c, const struct jb_ckpt_entry *e, float *dst)
{
    if (!c || !e || !dst) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    if (e->storage < 0 || e->storage >= c->n_storages || e->n_dims < 0 ||
        e->n_dims > JB_CKPT_MAX_DIMS)
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "%s: entry does not belong to this checkpoint", __func__);
    /* Re-derive the bounds from the entry itself: it may be a caller's copy. */
    const struct ckpt_storage *st = &c->storages[e->storage];
    int64_t numel, extent, end;
    if (e->type != st->type)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "%s: tensor '%s' has another type than its storage",
                       __func__,
                       e->name ? e->name : "?");
    if (e->storage_offset < 0 ||
        !ckpt_view_extent(e->n_dims, e->shape, e->stride, &numel, &extent) ||
        numel > (int64_t)(SIZE_MAX / sizeof(float)) ||
        __builtin_add_overflow(e->storage_offset, extent, &end) || end > st->numel)
        return jb_fail(JB_STATUS_ERR_FORMAT,
                       "%s: tensor '%s' lies outside its storage '%s' (%lld elements)",
                       __func__,
                       e->name ? e->name : "?",
                       st->key,
                       (long long)st->numel);
    if (numel == 0) return JB_STATUS_OK;

    size_t es = ckpt_dtype_size(st->type);
    if (!c->is_zip) {
        /* offset + numel * es was checked against the file size at open */
        const uint8_t *base = c->data + st->offset + (size_t)e->storage_offset * es;
        ckpt_convert_view(st->type, base, e->n_dims, e->shape, e->stride, numel, dst);
        ckpt_drop_pages(c, st->offset + (size_t)e->storage_offset * es, (size_t)extent * es);
        return JB_STATUS_OK;
    }

    /* zip: read the byte range the view spans, then convert it in memory */
    zip_uint64_t lo = (zip_uint64_t)e->storage_offset * es, len = (zip_uint64_t)extent * es;
    if (lo + len > st->zsize)
        return jb_fail(JB_STATUS_ERR_FORMAT,
                       "%s: tensor '%s' lies outside its zip entry",
                       __func__,
                       e->name ? e->name : "?");
    bool direct  = st->type == JB_CKPT_F32 && ckpt_is_contiguous(e->n_dims, e->shape, e->stride);
    uint8_t *buf = direct ? (uint8_t *)dst : jb_malloc((size_t)len);
    if (!buf) return JB_STATUS_ERR_NOMEM;
    /* c is const to callers, but the lock lives in the heap object: taking it is not a write */
    pthread_mutex_t *lock = (pthread_mutex_t *)&c->zip_lock;
    pthread_mutex_lock(lock);
    char ctx[256];
    snprintf(ctx, sizeof ctx, "%s: tensor '%.200s'", __func__, e->name ? e->name : "?");
    bool ok =
      ckpt_zip_read(c->za, st->zindex, st->zstored, lo, buf, len, lo + len == st->zsize, ctx);
    /* libzip read through the mapping (a buffer source): drop what it touched now and then */
    size_t *since = (size_t *)&c->read_since_drop;
    *since += (size_t)len;
    if (*since >= CKPT_DROP_BYTES) {
        ckpt_drop_pages(c, 0, c->size);
        *since = 0;
    }
    pthread_mutex_unlock(lock);
    if (ok && !direct) ckpt_convert_view(st->type, buf, e->n_dims, e->shape, e->stride, numel, dst);
    if (!direct) free(buf);
    return ok ? JB_STATUS_OK : JB_STATUS_ERR_FORMAT;
}
