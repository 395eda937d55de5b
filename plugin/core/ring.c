/*
 * plugin/core/ring.c - SPSC ring (see ring.h). Each side owns one index; the other index is
 * only read, with acquire ordering, so the data copied before a release store is visible.
 */
#include "ring.h"

#include <string.h>

bool ring_init(struct ring *r, void *storage, size_t capacity)
{
    if (!r || !storage || capacity < 2 || (capacity & (capacity - 1)) != 0) return false;
    r->buf  = storage;
    r->mask = capacity - 1;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    return true;
}

size_t ring_pow2(size_t n)
{
    size_t p = 2;
    while (p < n) {
        if (p > ((size_t)-1) / 2) return 0;
        p *= 2;
    }
    return p;
}

size_t ring_read_space(const struct ring *r)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    return head - tail;
}

size_t ring_write_space(const struct ring *r)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    return (r->mask + 1) - (head - tail);
}

static void copy_in(struct ring *r, size_t at, const unsigned char *src, size_t n)
{
    size_t off   = at & r->mask;
    size_t first = r->mask + 1 - off;
    if (first > n) first = n;
    memcpy(r->buf + off, src, first);
    memcpy(r->buf, src + first, n - first);
}

static void copy_out(const struct ring *r, size_t at, unsigned char *dst, size_t n)
{
    size_t off   = at & r->mask;
    size_t first = r->mask + 1 - off;
    if (first > n) first = n;
    memcpy(dst, r->buf + off, first);
    memcpy(dst + first, r->buf, n - first);
}

bool ring_write(struct ring *r, const void *data, size_t n)
{
    if (n > ring_write_space(r)) return false;
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    copy_in(r, head, data, n);
    atomic_store_explicit(&r->head, head + n, memory_order_release);
    return true;
}

bool ring_peek(const struct ring *r, void *data, size_t n)
{
    if (n > ring_read_space(r)) return false;
    copy_out(r, atomic_load_explicit(&r->tail, memory_order_relaxed), data, n);
    return true;
}

bool ring_read(struct ring *r, void *data, size_t n)
{
    if (!ring_peek(r, data, n)) return false;
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail + n, memory_order_release);
    return true;
}
