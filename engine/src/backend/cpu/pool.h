/*
 * backend/cpu/pool.h - the CPU backend's own thread pool (one per backend context).
 *
 * Every parallel loop of the CPU kernels goes through jb_pool_for, never through process-wide
 * OpenMP or OpenBLAS thread settings, so two backends in one process do not interfere and an
 * idle process uses no CPU (workers spin briefly, then sleep on a futex).
 *
 * jb_pool_for(pool, n, grain, fn, arg) splits [0, n) into contiguous ranges of at least `grain`
 * items and calls fn(arg, begin, end, slot) for each, on the caller and the workers; it returns
 * when all are done. `slot` (0 .. jb_pool_threads()-1) is unique among concurrent calls, so
 * kernels index per-thread scratch (the backend arena) with it. Loops with fewer than 2 * grain
 * items run inline on the caller without waking anyone. A call from inside a pool task runs
 * inline (serially) with the caller's slot.
 */
#ifndef JB_BACKEND_CPU_POOL_H
#define JB_BACKEND_CPU_POOL_H

#include <stdbool.h>
#include <stdint.h>

struct jb_pool;

typedef void (*jb_pool_fn)(void *arg, int64_t begin, int64_t end, int slot);

/* n_threads >= 1 (the caller counts as one). NULL + jb_fail on failure. */
struct jb_pool *jb_pool_new(int n_threads);
void jb_pool_free(struct jb_pool *pool); /* NULL is a no-op */
int jb_pool_threads(const struct jb_pool *pool);
void jb_pool_for(struct jb_pool *pool, int64_t n, int64_t grain, jb_pool_fn fn, void *arg);
/* jb_pool_for with the loop's total work (about one FMA or element per unit) as a hint: a loop
 * too small to pay for waking a sleeping thread (a futex wake and a scheduler round trip, tens of
 * microseconds in a VM) runs inline unless a worker is still awake, spinning from the last job. */
void jb_pool_for_work(struct jb_pool *pool,
                      int64_t n,
                      int64_t grain,
                      double work,
                      jb_pool_fn fn,
                      void *arg);
/* True when a worker is awake (spinning from a recent job), so that a loop of a few microseconds
 * is worth sharing. False from a pool of one thread, inside a pool task, or while all workers
 * sleep; in the last case, when such calls come in a stream (tens of microseconds apart), it wakes
 * the workers for the loops that follow. */
bool jb_pool_ready(struct jb_pool *pool);
/* Loops given with less work than `min_work` units run inline on the caller (default 0: none);
 * the CPU backend raises it during a token loop when sharing small ops measures slower
 * (share_tuner.h). Any thread may read it while the owner changes it. */
void jb_pool_set_min_work(struct jb_pool *pool, double min_work);
double jb_pool_min_work(const struct jb_pool *pool);
/* How long a worker spins after its last job before it sleeps, from the next wait on: 0 (or
 * anything shorter than the default, 20 µs) restores the default; at most 1 ms. The CPU backend
 * lengthens it during a token loop whose small ops are shared, so that a worker does not fall
 * asleep between them (a wake-up costs more than the op); it is reset when the loop ends. */
void jb_pool_set_spin(struct jb_pool *pool, int64_t spin_ns);

#endif
