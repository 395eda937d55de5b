/*
 * backend/cpu/pool.c - the CPU backend's thread pool: n_threads − 1 workers plus the caller.
 *
 * A job is [0, n) cut into n_chunks contiguous chunks (at most 4 per thread, each >= grain
 * items). Every participant, caller included, claims chunks one at a time from a single atomic
 * word holding (generation, n_chunks, next chunk), so
 *   - a worker that wakes late (asleep, or preempted on a shared machine) finds the chunks already
 *     taken and does nothing: the caller never waits for a thread that has not started;
 *   - a stale worker cannot claim a chunk of a later job (the generation in the word differs, so
 *     its compare-and-swap fails), and once a chunk is claimed the job cannot finish before it,
 *     so the job's parameters stay valid while the worker reads them.
 * The caller returns when all chunks are done (a counter), spinning first, then sleeping.
 *
 * Waiting: a worker spins on the wake word for JB_POOL_SPIN_NS (a prior's token loop issues one
 * job every few microseconds, and a futex wake costs ~5-50 µs), then sleeps on it with
 * FUTEX_WAIT; the caller issues FUTEX_WAKE only when someone sleeps (a Dekker-style handshake on
 * seq_cst atomics: the sleeper announces itself, then re-reads the word). An idle pool therefore
 * costs nothing after JB_POOL_SPIN_NS. Linux futexes; other systems would need a condvar here.
 *
 * Oversubscription: on a machine busier than its cores (a DAW, other jobs), a worker preempted
 * while it holds a chunk makes the caller wait a scheduler period or more, and a fork-join loop
 * with threads can then run slower than without. The caller measures each job: when it waited
 * for late workers longer than its own share took (and over LATE_NS), the pool runs the next
 * jobs inline for a period that doubles while lateness persists (1 ms .. 256 ms) and halves with
 * each punctual job. On an idle machine workers are never late and this never triggers.
 */
#include "backend/cpu/pool.h"
#include "core/common.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define JB_POOL_SPIN_NS 20000 /* how long an idle thread spins before sleeping */
#define CHUNKS_PER_THREAD 4
#define MAX_CHUNKS 0xffff /* chunk counts live in 16 bits of the claim word */
#define LATE_NS 50000     /* a wait for workers shorter than this is never "late" */
#define BACKOFF_MIN_NS 1000000
#define WAKE_MIN_WORK 4e6 /* units (~0.1-0.2 ms on one core) worth waking a sleeping worker for */
#define BACKOFF_MAX_NS 256000000

struct worker {
    struct jb_pool *pool;
    pthread_t thread;
    int slot;
    bool started;
};

struct jb_pool {
    int n_threads;
    struct worker *workers;   /* n_threads − 1 */
    pthread_mutex_t dispatch; /* one job at a time, should two threads share a backend */

    /* the job: written by the caller before it publishes the claim word */
    jb_pool_fn fn;
    void *arg;
    int64_t n;

    _Alignas(64) atomic_uint_least64_t claim; /* generation << 32 | n_chunks << 16 | next */
    _Alignas(64) atomic_int done;             /* chunks finished */
    atomic_int caller_sleeping;
    _Alignas(64) atomic_int wake; /* bumped per job; workers wait on it */
    atomic_int sleepers;
    atomic_bool stop;
    uint32_t gen;

    /* caller-side lateness tracking (under `dispatch`), see jb_pool_for */
    int64_t serial_until_ns; /* run jobs inline until then */
    int64_t backoff_ns;      /* length of the next inline period */
};

/* The pool and slot of the task this thread is running, for nested calls. */
static _Thread_local const struct jb_pool *tls_pool;
static _Thread_local int tls_slot;

static void futex_wait(atomic_int *addr, int expected)
{
    /* EAGAIN (value changed) and EINTR both just mean "look again" */
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(atomic_int *addr, int count)
{
    syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until *addr != value or the spin time is up; true if it changed. */
static bool spin_while_equal(atomic_int *addr, int value)
{
    int64_t t_end = 0;
    for (int i = 0;; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != value) return true;
        cpu_relax();
        if ((i & 255) == 255) {
            int64_t t = now_ns();
            if (!t_end)
                t_end = t + JB_POOL_SPIN_NS;
            else if (t > t_end)
                return false;
        }
    }
}

/* Claims and runs chunks of the current job until none is left. */
static void run_chunks(struct jb_pool *pool, int slot)
{
    for (;;) {
        uint64_t c   = atomic_load(&pool->claim);
        uint32_t nch = (uint32_t)(c >> 16) & 0xffff, i = (uint32_t)c & 0xffff;
        if (i >= nch) return;
        if (!atomic_compare_exchange_weak(&pool->claim, &c, c + 1)) continue;
        /* chunk i is ours: the job cannot complete (nor its parameters change) before we do */
        const int64_t n = pool->n;
        const int64_t b = n * i / nch, e = n * (i + 1) / nch;
        const struct jb_pool *outer_pool = tls_pool;
        int outer_slot                   = tls_slot;
        tls_pool                         = pool;
        tls_slot                         = slot;
        pool->fn(pool->arg, b, e, slot);
        tls_pool = outer_pool;
        tls_slot = outer_slot;
        if (atomic_fetch_add(&pool->done, 1) + 1 == (int)nch && atomic_load(&pool->caller_sleeping))
            futex_wake(&pool->done, 1);
    }
}

static void *worker_main(void *p)
{
    struct worker *w     = p;
    struct jb_pool *pool = w->pool;
    int seen             = 0; /* the wake word's value at creation (we may start late) */
    for (;;) {
        if (!spin_while_equal(&pool->wake, seen)) {
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->wake) == seen)
                futex_wait(&pool->wake, seen);
            atomic_fetch_sub(&pool->sleepers, 1);
        }
        seen = atomic_load(&pool->wake);
        if (atomic_load(&pool->stop)) return NULL;
        run_chunks(pool, w->slot);
    }
}

struct jb_pool *jb_pool_new(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    struct jb_pool *pool = jb_calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->dispatch, NULL);
    atomic_init(&pool->claim, 0);
    atomic_init(&pool->done, 0);
    atomic_init(&pool->caller_sleeping, 0);
    atomic_init(&pool->wake, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stop, false);
    if (n_threads == 1) return pool;
    pool->workers = jb_calloc((size_t)n_threads - 1, sizeof *pool->workers);
    if (!pool->workers) {
        jb_pool_free(pool);
        return NULL;
    }
    for (int k = 0; k < n_threads - 1; k++) {
        struct worker *w = &pool->workers[k];
        w->pool          = pool;
        w->slot          = k + 1;
        int rc           = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            jb_fail(JB_STATUS_ERR_NOMEM,
                    "cpu pool: cannot start thread %d of %d (error %d)",
                    k + 2,
                    n_threads,
                    rc);
            jb_pool_free(pool);
            return NULL;
        }
        w->started = true;
    }
    return pool;
}

void jb_pool_free(struct jb_pool *pool)
{
    if (!pool) return;
    if (pool->workers) {
        atomic_store(&pool->stop, true);
        atomic_fetch_add(&pool->wake, 1);
        futex_wake(&pool->wake, INT_MAX);
        for (int k = 0; k < pool->n_threads - 1; k++)
            if (pool->workers[k].started) pthread_join(pool->workers[k].thread, NULL);
        free(pool->workers);
    }
    pthread_mutex_destroy(&pool->dispatch);
    free(pool);
}

int jb_pool_threads(const struct jb_pool *pool)
{
    return pool ? pool->n_threads : 1;
}

static void pool_for(struct jb_pool *pool,
                     int64_t n,
                     int64_t grain,
                     double work,
                     jb_pool_fn fn,
                     void *arg);

void jb_pool_for(struct jb_pool *pool, int64_t n, int64_t grain, jb_pool_fn fn, void *arg)
{
    pool_for(pool, n, grain, -1.0, fn, arg);
}

void jb_pool_for_work(struct jb_pool *pool,
                      int64_t n,
                      int64_t grain,
                      double work,
                      jb_pool_fn fn,
                      void *arg)
{
    pool_for(pool, n, grain, work, fn, arg);
}

static void pool_for(struct jb_pool *pool,
                     int64_t n,
                     int64_t grain,
                     double work,
                     jb_pool_fn fn,
                     void *arg)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    /* nested in one of our own tasks: serially, on that task's slot */
    if (pool && tls_pool == pool) {
        fn(arg, 0, n, tls_slot);
        return;
    }
    int64_t nch = n / grain, cap = pool ? (int64_t)pool->n_threads * CHUNKS_PER_THREAD : 1;
    if (nch > cap) nch = cap;
    if (nch > MAX_CHUNKS) nch = MAX_CHUNKS;
    if (!pool || pool->n_threads == 1 || nch < 2) {
        fn(arg, 0, n, 0); /* the caller's own slot; a nested call may still use the pool */
        return;
    }

    pthread_mutex_lock(&pool->dispatch);
    int64_t t0 = now_ns();
    /* workers have been late: no fork-join for a while; or a small loop while all sleep */
    if (t0 < pool->serial_until_ns || (work >= 0 && work < WAKE_MIN_WORK &&
                                       atomic_load(&pool->sleepers) == pool->n_threads - 1)) {
        pthread_mutex_unlock(&pool->dispatch);
        fn(arg, 0, n, 0);
        return;
    }
    pool->fn  = fn;
    pool->arg = arg;
    pool->n   = n;
    atomic_store(&pool->done, 0);
    pool->gen++;
    atomic_store(&pool->claim, (uint64_t)pool->gen << 32 | (uint64_t)nch << 16);
    atomic_fetch_add(&pool->wake, 1);
    int sleeping = atomic_load(&pool->sleepers);
    if (sleeping > 0) futex_wake(&pool->wake, (int)(nch - 1 < sleeping ? nch - 1 : sleeping));

    run_chunks(pool, 0);
    int64_t t1 = now_ns();

    for (;;) { /* spin while chunks keep finishing; sleep once nothing moves for a while */
        int done = atomic_load(&pool->done);
        if (done == (int)nch) break;
        if (spin_while_equal(&pool->done, done)) continue;
        atomic_store(&pool->caller_sleeping, 1);
        while ((done = atomic_load(&pool->done)) != (int)nch)
            futex_wait(&pool->done, done);
        atomic_store(&pool->caller_sleeping, 0);
        break;
    }
    int64_t t2 = now_ns(), waited = t2 - t1;
    if (waited > LATE_NS && waited > t1 - t0) {
        pool->backoff_ns = pool->backoff_ns ? pool->backoff_ns * 2 : BACKOFF_MIN_NS;
        if (pool->backoff_ns > BACKOFF_MAX_NS) pool->backoff_ns = BACKOFF_MAX_NS;
        pool->serial_until_ns = t2 + pool->backoff_ns;
    } else {
        pool->backoff_ns /= 2; /* lateness fades out, one punctual job at a time */
    }
    pthread_mutex_unlock(&pool->dispatch);
}
