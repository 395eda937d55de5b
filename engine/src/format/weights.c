/* format/weights.c - checked name -> tensor lookup with strict "every tensor used" accounting. */
#include "format/weights.h"
#include "backend/backend.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct converted {
    struct jb_tensor t;
    const struct jb_tensor *src; /* placed copies: the host tensor it was made from */
    size_t arena_off;            /* placed in the arena at this offset; SIZE_MAX: not */
    bool of_source;              /* placed copies: src is a tensor of the source itself */
    struct converted *next;
};

struct jb_weights {
    struct jb_weights_source src;
    int64_t n;
    uint8_t *used; /* per source tensor: requested or skipped */
    bool ok;
    struct converted *copies;
    struct jb_backend *be; /* where tensors are placed (NULL: host) */
    /* A host-memory backend's copies of large tensors (jb_backend.weights_copy_min), back to back
     * in one buffer: one per tensor would round each up to the CPU backend's 2 MiB pages (~9% more
     * memory at the upsamplers' 5.5-7.4 MB matrices). Sized for every large source tensor at the
     * first copy; pages of tensors never copied into it (converted ones) are never touched. It
     * belongs to the backend placed on at that first copy (the weights may be placed on another
     * backend later: that one's copies are its own). */
    struct jb_backend *arena_be; /* NULL until the first copy asks for the arena */
    char *arena;
    size_t arena_size, arena_used;
};

struct jb_weights *jb_weights_init(const struct jb_weights_source *src)
{
    struct jb_weights *w = jb_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->src  = *src;
    w->n    = src->count ? src->count(src->ctx) : 0;
    w->used = jb_calloc((size_t)(w->n > 0 ? w->n : 1), 1);
    w->ok   = true;
    if (!w->used) {
        free(w);
        return NULL;
    }
    return w;
}

void jb_weights_free(struct jb_weights *w)
{
    if (!w) return;
    for (struct converted *c = w->copies; c;) {
        struct converted *next = c->next;
        if (c->arena_off == SIZE_MAX) { /* those in the arena go with it */
            if (c->t.backend)
                jb_backend_free_buffer(c->t.backend, c->t.data);
            else
                free(c->t.data);
        }
        free(c);
        c = next;
    }
    if (w->arena) jb_backend_free_buffer(w->arena_be, w->arena);
    free(w->used);
    free(w);
}

static void mark_used(struct jb_weights *w, const struct jb_tensor *t)
{
    for (int64_t i = 0; i < w->n; i++) {
        if (w->src.get(w->src.ctx, i) == t) {
            w->used[i] = 1;
            return;
        }
    }
}

double jb_weights_bytes(const struct jb_weights *w)
{
    double b = 0;
    for (int64_t i = 0; w && i < w->n; i++)
        b += (double)jb_tensor_nbytes(w->src.get(w->src.ctx, i));
    return b;
}

double jb_weights_offload(struct jb_weights *w)
{
    double b = 0;
    for (struct converted *c = w ? w->copies : NULL; c; c = c->next) {
        if (!c->t.backend || !c->t.data) continue;
        if (c->arena_off == SIZE_MAX) jb_backend_free_buffer(c->t.backend, c->t.data);
        c->t.data = NULL;
        b += (double)jb_tensor_nbytes(&c->t);
    }
    if (w && w->arena) {
        jb_backend_free_buffer(w->arena_be, w->arena);
        w->arena = NULL;
    }
    return b;
}

enum jb_status jb_weights_reload(struct jb_weights *w)
{
    if (w && !w->arena && w->arena_used) {
        w->arena = jb_backend_alloc(w->arena_be, w->arena_size);
        if (!w->arena) return JB_STATUS_ERR_NOMEM;
    }
    for (struct converted *c = w ? w->copies : NULL; c; c = c->next) {
        if (!c->t.backend || c->t.data) continue;
        const size_t n = jb_tensor_nbytes(&c->t);
        void *data =
          c->arena_off != SIZE_MAX ? w->arena + c->arena_off : jb_backend_alloc(c->t.backend, n);
        if (!data) return JB_STATUS_ERR_NOMEM;
        jb_backend_set(c->t.backend, data, c->src->data, n);
        if (c->of_source && w->src.copied) w->src.copied(w->src.ctx, c->src);
        c->t.data = data;
    }
    return jb_backend_status(w ? w->be : NULL);
}

double jb_weights_placed_bytes(const struct jb_weights *w, bool resident)
{
    double b = 0;
    for (const struct converted *c = w ? w->copies : NULL; c; c = c->next)
        if (c->t.backend && (c->t.data != NULL) == resident) b += (double)jb_tensor_nbytes(&c->t);
    return b;
}

void jb_weights_set_backend(struct jb_weights *w, struct jb_backend *be)
{
    w->be = be;
}

static size_t round64(size_t n)
{
    return (n + 63) / 64 * 64;
}

/* Room for an n-byte copy in the arena (made at the first call, on w->be), or NULL. */
static void *arena_take(struct jb_weights *w, size_t n, size_t *off)
{
    if (!w->arena_be) {
        w->arena_be = w->be;
        for (int64_t i = 0; i < w->n; i++) {
            const struct jb_tensor *s = w->src.get(w->src.ctx, i);
            const size_t b            = s ? jb_tensor_nbytes(s) : 0;
            if (b >= w->be->weights_copy_min) w->arena_size += round64(b);
        }
        w->arena = w->arena_size ? jb_backend_alloc(w->be, w->arena_size) : NULL;
    }
    if (w->arena_be != w->be || !w->arena || w->arena_size - w->arena_used < round64(n))
        return NULL;
    *off = w->arena_used;
    w->arena_used += round64(n);
    return w->arena + *off;
}

/* The tensor as the backend uses it: itself where the backend reads host memory (zero copy),
 * else one copy in a backend buffer, uploaded once with set_tensor and shared by every request of
 * the same tensor. A host-memory backend may still want its own copy of a large tensor of the
 * source (weights_copy_min: the CPU backend's 2 MiB pages); where that copy cannot be made, the
 * tensor is used in place as before. */
static const struct jb_tensor *place(struct jb_weights *w, const struct jb_tensor *t, bool source)
{
    if (!w->be || t->backend == w->be) return t;
    const size_t n  = jb_tensor_nbytes(t);
    const bool host = w->be->iface->host_memory;
    if (host && !(source && w->be->weights_copy_min && n >= w->be->weights_copy_min)) return t;
    for (struct converted *c = w->copies; c; c = c->next)
        if (c->src == t && c->t.backend == w->be) return &c->t;
    struct converted *c = jb_calloc(1, sizeof *c);
    size_t off          = SIZE_MAX;
    void *data          = !c ? NULL : host ? arena_take(w, n, &off) : jb_backend_alloc(w->be, n);
    if (!data) {
        const bool in_place = host && c; /* no room for the copy: the tensor itself will do */
        free(c);
        if (in_place) return t;
        w->ok = false;
        return NULL;
    }
    jb_backend_set(w->be, data, t->data, n);
    if (source && w->src.copied) w->src.copied(w->src.ctx, t);
    c->t         = *t;
    c->t.data    = data;
    c->t.backend = w->be;
    c->src       = t;
    c->of_source = source;
    c->arena_off = off;
    c->next      = w->copies;
    w->copies    = c;
    return &c->t;
}

const struct jb_tensor *jb_weights_get(struct jb_weights *w,
                                       enum jb_weights_want want,
                                       int n_dims,
                                       const int64_t *shape,
                                       const char *fmt,
                                       ...)
{
    if (!w->ok) return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);

    const struct jb_tensor *t = w->src.find(w->src.ctx, name);
    if (!t) {
        w->ok = false;
        jb_fail(JB_STATUS_ERR_MODEL, "model file has no tensor '%s'", name);
        return NULL;
    }
    bool same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char got[96], want_s[96];
        w->ok = false;
        jb_fail(JB_STATUS_ERR_MODEL,
                "tensor '%s' has shape %s, expected %s",
                name,
                jb_shape_str(t->n_dims, t->shape, got, sizeof got),
                jb_shape_str(n_dims, shape, want_s, sizeof want_s));
        return NULL;
    }
    if (t->type != JB_DTYPE_F32 && t->type != JB_DTYPE_F16 && t->type != JB_DTYPE_BF16) {
        w->ok = false;
        jb_fail(JB_STATUS_ERR_MODEL,
                "tensor '%s' has type %s, expected a float type",
                name,
                jb_dtype_name(t->type));
        return NULL;
    }
    mark_used(w, t);
    if (want == JB_WANT_ANY || t->type == JB_DTYPE_F32) return place(w, t, true);

    /* The kernel needs fp32: convert once and keep the copy for the model's lifetime. */
    struct converted *c = jb_calloc(1, sizeof *c);
    size_t n            = (size_t)jb_tensor_nelements(t);
    float *data         = c ? jb_aligned_alloc(n * sizeof(float)) : NULL;
    if (!data) {
        free(c);
        w->ok = false;
        return NULL;
    }
    jb_convert_to_f32(t->type, t->data, data, n);
    if (w->src.copied) w->src.copied(w->src.ctx, t); /* nothing reads it again */
    c->t         = *t;
    c->t.type    = JB_DTYPE_F32;
    c->t.data    = data;
    c->arena_off = SIZE_MAX;
    c->next      = w->copies;
    w->copies    = c;
    return place(w, &c->t, false);
}

bool jb_weights_has(struct jb_weights *w, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return w->src.find(w->src.ctx, name) != NULL;
}

void jb_weights_skip(struct jb_weights *w, const char *name)
{
    const struct jb_tensor *t = w->src.find(w->src.ctx, name);
    if (t) mark_used(w, t);
}

bool jb_weights_ok(const struct jb_weights *w)
{
    return w->ok;
}

enum jb_status jb_weights_check_all_used(struct jb_weights *w)
{
    if (!w->ok) return JB_STATUS_ERR_MODEL;
    for (int64_t i = 0; i < w->n; i++) {
        if (!w->used[i]) {
            const struct jb_tensor *t = w->src.get(w->src.ctx, i);
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "model file has an unexpected tensor '%s'",
                           t && t->name ? t->name : "?");
        }
    }
    return JB_STATUS_OK;
}
