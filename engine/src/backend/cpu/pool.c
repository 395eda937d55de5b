/*
 * backend/cpu/pool.c - placeholder: runs every loop serially on the caller (slot 0). The real
 * pool (workers that spin briefly, then sleep) replaces this; the interface is final.
 */
#include "backend/cpu/pool.h"
#include "core/common.h"

#include <stdlib.h>

struct jb_pool {
    int n_threads;
};

struct jb_pool *jb_pool_new(int n_threads)
{
    struct jb_pool *pool = jb_calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = n_threads < 1 ? 1 : n_threads;
    return pool;
}

void jb_pool_free(struct jb_pool *pool)
{
    free(pool);
}

int jb_pool_threads(const struct jb_pool *pool)
{
    return pool ? pool->n_threads : 1;
}

void jb_pool_for(struct jb_pool *pool, int64_t n, int64_t grain, jb_pool_fn fn, void *arg)
{
    (void)pool;
    (void)grain;
    if (n > 0) fn(arg, 0, n, 0);
}
