/*
 * backend/check/check.c - the `check` backend (tests only): the CPU kernels, run on buffers that
 * no one may touch outside an op.
 *
 * Every buffer of the backend lives in one reserved address range that is PROT_NONE; an op (or
 * set_tensor / get_tensor) opens just the buffers it was given while it runs, so model code that
 * reads or writes backend memory directly - a host loop over activations, a memcpy out of a work
 * buffer, a weight read through tensor->data - faults at once instead of silently working on the
 * CPU backend and failing on a device. It also declares host_memory = false, so weights are copied
 * in through set_tensor at load like on a device, and it has no host fallback (be->cpu == NULL): an
 * op it lacked would stop the program. Not thread-safe across calls (one caller at a time, as every
 * backend); the kernels themselves use the CPU context's threads.
 */
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK_RESERVE ((size_t)64 << 30) /* address space, not memory (MAP_NORESERVE) */
#define CHECK_ALIGN ((size_t)4096)
#define CHECK_HUGE ((size_t)2 << 20)

struct block {
    size_t off, size;
    bool used;
};

struct check {
    struct jb_cpu *cpu;
    uint8_t *map;  /* the reservation, CHECK_RESERVE + CHECK_HUGE bytes */
    uint8_t *base; /* its first 2 MiB boundary: buffers start here */
    size_t top;    /* high-water mark: [base, base + top) holds every block */
    struct block *blocks;
    int n_blocks, cap_blocks;
    pthread_mutex_t lock;
};

/* ---- first-fit allocator over the range ------------------------------------------------------ */

static bool insert_block(struct check *c, int at, struct block b)
{
    if (c->n_blocks == c->cap_blocks) {
        int cap          = c->cap_blocks ? 2 * c->cap_blocks : 256;
        struct block *nb = realloc(c->blocks, (size_t)cap * sizeof *nb);
        if (!nb) return false;
        c->blocks     = nb;
        c->cap_blocks = cap;
    }
    memmove(&c->blocks[at + 1], &c->blocks[at], (size_t)(c->n_blocks - at) * sizeof *c->blocks);
    c->blocks[at] = b;
    c->n_blocks++;
    return true;
}

static void remove_block(struct check *c, int at)
{
    memmove(&c->blocks[at], &c->blocks[at + 1], (size_t)(c->n_blocks - at - 1) * sizeof *c->blocks);
    c->n_blocks--;
}

static void *check_buffer_alloc(void *ctx, size_t nbytes)
{
    struct check *c = ctx;
    size_t size     = (nbytes + CHECK_ALIGN - 1) & ~(CHECK_ALIGN - 1);
    if (size == 0) size = CHECK_ALIGN;
    void *p = NULL;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n_blocks && !p; i++) { /* a free block that fits */
        struct block *b = &c->blocks[i];
        if (b->used || b->size < size) continue;
        if (b->size > size) {
            struct block rest = { b->off + size, b->size - size, false };
            if (!insert_block(c, i + 1, rest)) break;
            b = &c->blocks[i];
        }
        b->size = size;
        b->used = true;
        p       = c->base + b->off;
    }
    if (!p && size <= CHECK_RESERVE - c->top) { /* grow at the top */
        struct block b = { c->top, size, true };
        if (insert_block(c, c->n_blocks, b)) {
            p = c->base + c->top;
            c->top += size;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return p;
}

static void check_buffer_free(void *ctx, void *buf)
{
    struct check *c = ctx;
    size_t off      = (size_t)((uint8_t *)buf - c->base);
    pthread_mutex_lock(&c->lock);
    int i = 0;
    while (i < c->n_blocks && c->blocks[i].off != off)
        i++;
    JB_ASSERT(i < c->n_blocks && c->blocks[i].used && "check backend: bad buffer_free");
    c->blocks[i].used = false;
    /* give big blocks' memory back (small ones share huge pages with their neighbours) */
    if (c->blocks[i].size >= CHECK_HUGE) madvise(c->base + off, c->blocks[i].size, MADV_DONTNEED);
    if (i + 1 < c->n_blocks && !c->blocks[i + 1].used) {
        c->blocks[i].size += c->blocks[i + 1].size;
        remove_block(c, i + 1);
    }
    if (i > 0 && !c->blocks[i - 1].used) {
        c->blocks[i - 1].size += c->blocks[i].size;
        remove_block(c, i);
    }
    pthread_mutex_unlock(&c->lock);
}

static void check_free(void *ctx)
{
    struct check *c = ctx;
    if (!c) return;
    if (c->map) munmap(c->map, CHECK_RESERVE + CHECK_HUGE);
    jb_cpu_delete(c->cpu);
    free(c->blocks);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- per-op access: only the blocks an op's arguments point into ---------------------------- */

/* Every op opens exactly the blocks its pointer arguments (activations, ids, scratch, the data
 * of weight tensors, the K/V of caches) point into, and closes them afterwards: changing the
 * protection of the whole range costs a page-table walk over all of it on every op. A pointer
 * argument outside the backend's memory is a model bug (a host array handed to an op: a device
 * could not read it) and stops the program. */
#define CHECK_MAX_OPEN 24
struct opened {
    int idx[CHECK_MAX_OPEN];
    int n;
};

static int find_block(const struct check *c, const void *p)
{
    const uint8_t *u = p;
    if (u < c->base || u >= c->base + c->top) return -1;
    const size_t off = (size_t)(u - c->base);
    int lo = 0, hi = c->n_blocks - 1;
    while (lo <= hi) {
        int mid               = (lo + hi) / 2;
        const struct block *b = &c->blocks[mid];
        if (off < b->off)
            hi = mid - 1;
        else if (off >= b->off + b->size)
            lo = mid + 1;
        else
            return b->used ? mid : -1;
    }
    return -1;
}

static void touch_ptr(struct check *c, struct opened *o, const void *p)
{
    if (!p) return;
    const int i = find_block(c, p);
    JB_ASSERT(i >= 0 && "check backend: an op got a pointer outside the backend's buffers");
    for (int k = 0; k < o->n; k++)
        if (o->idx[k] == i) return;
    JB_ASSERT(o->n < CHECK_MAX_OPEN);
    o->idx[o->n++] = i;
}

static void touch_f(struct check *c, struct opened *o, const float *p)
{
    touch_ptr(c, o, p);
}
static void touch_i(struct check *c, struct opened *o, const int32_t *p)
{
    touch_ptr(c, o, p);
}
static void touch_t(struct check *c, struct opened *o, const struct jb_tensor *t)
{
    if (t) touch_ptr(c, o, t->data);
}
static void touch_kv(struct check *c, struct opened *o, const struct jb_kv_cache *kv)
{
    touch_ptr(c, o, kv->k);
    touch_ptr(c, o, kv->v);
}
static void touch_none(struct check *c, struct opened *o, ...)
{
    (void)c, (void)o;
}

#define CHECK_TOUCH(x)                                                                             \
    _Generic((x),                                                                                  \
      float *: touch_f,                                                                            \
      const float *: touch_f,                                                                      \
      int32_t *: touch_i,                                                                          \
      const int32_t *: touch_i,                                                                    \
      const struct jb_tensor *: touch_t,                                                           \
      struct jb_kv_cache *: touch_kv,                                                              \
      const struct jb_kv_cache *: touch_kv,                                                        \
      default: touch_none)(chk_, &open_, x);

/* CHECK_EACH(m, a, b, c) -> m(a) m(b) m(c), up to 12 arguments */
#define CHECK_E1(m, x) m(x)
#define CHECK_E2(m, x, ...) m(x) CHECK_E1(m, __VA_ARGS__)
#define CHECK_E3(m, x, ...) m(x) CHECK_E2(m, __VA_ARGS__)
#define CHECK_E4(m, x, ...) m(x) CHECK_E3(m, __VA_ARGS__)
#define CHECK_E5(m, x, ...) m(x) CHECK_E4(m, __VA_ARGS__)
#define CHECK_E6(m, x, ...) m(x) CHECK_E5(m, __VA_ARGS__)
#define CHECK_E7(m, x, ...) m(x) CHECK_E6(m, __VA_ARGS__)
#define CHECK_E8(m, x, ...) m(x) CHECK_E7(m, __VA_ARGS__)
#define CHECK_E9(m, x, ...) m(x) CHECK_E8(m, __VA_ARGS__)
#define CHECK_E10(m, x, ...) m(x) CHECK_E9(m, __VA_ARGS__)
#define CHECK_E11(m, x, ...) m(x) CHECK_E10(m, __VA_ARGS__)
#define CHECK_E12(m, x, ...) m(x) CHECK_E11(m, __VA_ARGS__)
#define CHECK_PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, NAME, ...) NAME
#define CHECK_EACH(m, ...)                                                                         \
    CHECK_PICK(__VA_ARGS__,                                                                        \
               CHECK_E12,                                                                          \
               CHECK_E11,                                                                          \
               CHECK_E10,                                                                          \
               CHECK_E9,                                                                           \
               CHECK_E8,                                                                           \
               CHECK_E7,                                                                           \
               CHECK_E6,                                                                           \
               CHECK_E5,                                                                           \
               CHECK_E4,                                                                           \
               CHECK_E3,                                                                           \
               CHECK_E2,                                                                           \
               CHECK_E1)                                                                           \
    (m, __VA_ARGS__)

static void set_blocks(struct check *c, const struct opened *o, int prot)
{
    for (int k = 0; k < o->n; k++) {
        const struct block *b = &c->blocks[o->idx[k]];
        if (mprotect(c->base + b->off, b->size, prot) != 0)
            JB_ASSERT(!"check backend: mprotect failed");
    }
}

/* every op: open its blocks, run the CPU kernel, close them again */
#define JB_OP(ID, name, params, args)                                                              \
    static void check_slot_##name(void *ctx, JB_UNPAREN params)                                    \
    {                                                                                              \
        struct check *chk_  = ctx;                                                                 \
        struct opened open_ = { .n = 0 };                                                          \
        pthread_mutex_lock(&chk_->lock);                                                           \
        CHECK_EACH(CHECK_TOUCH, JB_UNPAREN args)                                                   \
        set_blocks(chk_, &open_, PROT_READ | PROT_WRITE);                                          \
        pthread_mutex_unlock(&chk_->lock);                                                         \
        jb_cpu_op_##name(chk_->cpu, JB_UNPAREN args);                                              \
        set_blocks(chk_, &open_, PROT_NONE);                                                       \
    }
#include "backend/ops.def"
#undef JB_OP

/* host <-> one block (the copy must stay inside the block it starts in) */
static void copy_block(struct check *c, void *dst, const void *src, size_t n, const void *dev)
{
    pthread_mutex_lock(&c->lock);
    const int i = find_block(c, dev);
    JB_ASSERT(i >= 0 && "check backend: set/get_tensor outside the backend's buffers");
    const struct block b = c->blocks[i];
    pthread_mutex_unlock(&c->lock);
    JB_ASSERT((const uint8_t *)dev + n <= c->base + b.off + b.size);
    if (mprotect(c->base + b.off, b.size, PROT_READ | PROT_WRITE) != 0)
        JB_ASSERT(!"check backend: mprotect failed");
    memcpy(dst, src, n);
    if (mprotect(c->base + b.off, b.size, PROT_NONE) != 0)
        JB_ASSERT(!"check backend: mprotect failed");
}

static void check_set(void *ctx, void *dst, const void *src, size_t n)
{
    copy_block(ctx, dst, src, n, dst);
}

static void check_get(void *ctx, void *dst, const void *src, size_t n)
{
    copy_block(ctx, dst, src, n, src);
}

static enum jb_status check_memory_info(void *ctx, size_t *free_bytes, size_t *total)
{
    (void)ctx;
    return jb_host_memory(free_bytes, total);
}

/* token loops tune the CPU kernels' thread sharing as on the CPU backend */
static void check_loop_step(void *ctx, uintptr_t key, int max_groups)
{
    jb_cpu_loop_step(((struct check *)ctx)->cpu, key, max_groups);
}

/* as the CPU backend chooses, but the groups run one after another (no run_groups): the guard
 * around each op (mprotect) is process-wide, so two ops at once would fault each other */
static int check_loop_groups(void *ctx)
{
    return jb_cpu_loop_groups(((struct check *)ctx)->cpu);
}

static void check_pin_loop_arm(void *ctx, int arm)
{
    jb_cpu_pin_loop_arm(((struct check *)ctx)->cpu, arm);
}

static void check_loop_end(void *ctx)
{
    jb_cpu_loop_end(((struct check *)ctx)->cpu);
}

static const struct jb_backend_i check_iface = {
    .name         = "check",
    .host_memory  = false,
    .memory_info    = check_memory_info,
    .memory_is_host = true,
    .free         = check_free,
    .supports_op  = NULL,
    .buffer_alloc = check_buffer_alloc,
    .buffer_free  = check_buffer_free,
    .set_tensor   = check_set,
    .get_tensor   = check_get,
    .synchronize  = NULL,
    .loop_step    = check_loop_step,
    .loop_end     = check_loop_end,
    .loop_groups  = check_loop_groups,
    .pin_loop_arm = check_pin_loop_arm,
    .ops =
      {
#define JB_OP(ID, name, params, args) .name = check_slot_##name,
#include "backend/ops.def"
#undef JB_OP
      },
};

struct jb_backend *jb_backend_check_init(int n_threads)
{
    struct jb_backend *be = jb_calloc(1, sizeof *be);
    struct check *c       = jb_calloc(1, sizeof *c);
    if (!be || !c) goto fail;
    pthread_mutex_init(&c->lock, NULL);
    c->base =
      mmap(NULL, CHECK_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (c->base == MAP_FAILED) {
        c->base = NULL;
        jb_fail(JB_STATUS_ERR_NOMEM, "check backend: cannot reserve its address range");
        goto fail;
    }
    c->cpu = jb_cpu_new(n_threads);
    if (!c->cpu) goto fail;
    be->iface     = &check_iface;
    be->ctx       = c;
    be->cpu       = NULL; /* no host fallback: the point of this backend */
    be->n_threads = c->cpu->n_threads;
    return be;

fail:
    if (c) check_free(c);
    free(be);
    return NULL;
}
