/*
 * backend/check/check.c - the `check` backend (tests only): the CPU kernels, run on buffers that
 * no one may touch outside an op.
 *
 * Every buffer of the backend lives in one reserved address range that is PROT_NONE except
 * while one of its own ops (or set_tensor / get_tensor) runs, so model code that reads or writes
 * backend memory directly - a host loop over activations, a memcpy out of a work buffer, a weight
 * read through tensor->data - faults at once instead of silently working on the CPU backend and
 * failing on a device. It also declares host_memory = false, so weights are copied in through
 * set_tensor at load like on a device, and it has no host fallback (be->cpu == NULL): an op it
 * lacked would stop the program. Not thread-safe across calls (one caller at a time, as every
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

struct block {
    size_t off, size;
    bool used;
};

struct check {
    struct jb_cpu *cpu;
    uint8_t *base;
    size_t top; /* high-water mark: [base, base + top) holds every block */
    struct block *blocks;
    int n_blocks, cap_blocks;
    int open; /* nesting depth of open() */
    pthread_mutex_t lock;
};

/* ---- the guarded range ---------------------------------------------------------------------- */

static void set_access(struct check *c, int prot)
{
    if (c->top && mprotect(c->base, c->top, prot) != 0)
        JB_ASSERT(!"check backend: mprotect failed");
}

static void guard_open(struct check *c)
{
    if (c->open++ == 0) set_access(c, PROT_READ | PROT_WRITE);
}

static void guard_close(struct check *c)
{
    if (--c->open == 0) set_access(c, PROT_NONE);
}

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
            if (c->open) set_access(c, PROT_READ | PROT_WRITE);
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
    madvise(c->base + off, c->blocks[i].size, MADV_DONTNEED); /* give the memory back */
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

static void check_set(void *ctx, void *dst, const void *src, size_t n)
{
    struct check *c = ctx;
    guard_open(c);
    memcpy(dst, src, n);
    guard_close(c);
}

static void check_get(void *ctx, void *dst, const void *src, size_t n)
{
    struct check *c = ctx;
    guard_open(c);
    memcpy(dst, src, n);
    guard_close(c);
}

static void check_free(void *ctx)
{
    struct check *c = ctx;
    if (!c) return;
    if (c->base) munmap(c->base, CHECK_RESERVE);
    jb_cpu_delete(c->cpu);
    free(c->blocks);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* every op: open the range, run the CPU kernel, close it again */
#define JB_OP(ID, name, params, args)                                                              \
    static void check_slot_##name(void *ctx, JB_UNPAREN params)                                    \
    {                                                                                              \
        struct check *chk_ = ctx;                                                                  \
        guard_open(chk_);                                                                          \
        jb_cpu_op_##name(chk_->cpu, JB_UNPAREN args);                                              \
        guard_close(chk_);                                                                         \
    }
#include "backend/ops.def"
#undef JB_OP

static const struct jb_backend_i check_iface = {
    .name         = "check",
    .host_memory  = false,
    .free         = check_free,
    .supports_op  = NULL,
    .buffer_alloc = check_buffer_alloc,
    .buffer_free  = check_buffer_free,
    .set_tensor   = check_set,
    .get_tensor   = check_get,
    .synchronize  = NULL,
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
