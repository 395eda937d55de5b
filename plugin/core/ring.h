/*
 * plugin/core/ring.h - single-producer/single-consumer byte ring on C11 atomics.
 *
 * The realtime thread and the non-realtime side exchange fixed-size messages and audio through
 * these rings; neither side ever allocates, locks or waits. Storage is handed in by the owner
 * (allocated once, before the audio thread runs) and its size must be a power of two. Exactly
 * one thread may write and exactly one thread may read; the indices are published with
 * release stores and read with acquire loads, so the bytes a reader sees are complete.
 */
#ifndef ENCORE_PLUGIN_RING_H
#define ENCORE_PLUGIN_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct ring {
    unsigned char *buf;
    size_t mask;         /* capacity - 1 */
    _Atomic size_t head; /* total bytes written, owned by the producer */
    _Atomic size_t tail; /* total bytes read, owned by the consumer */
};

/* Uses `storage` (capacity bytes, a power of two >= 2). Returns false on a bad capacity. */
bool ring_init(struct ring *r, void *storage, size_t capacity);

size_t ring_read_space(const struct ring *r);  /* consumer side */
size_t ring_write_space(const struct ring *r); /* producer side */

/* All or nothing: returns false (and writes nothing) when n bytes do not fit. */
bool ring_write(struct ring *r, const void *data, size_t n);

/* All or nothing: returns false (and consumes nothing) when fewer than n bytes are ready. */
bool ring_read(struct ring *r, void *data, size_t n);
bool ring_peek(const struct ring *r, void *data, size_t n);

/* Smallest power of two >= n (n >= 2), or 0 on overflow. */
size_t ring_pow2(size_t n);

#endif
