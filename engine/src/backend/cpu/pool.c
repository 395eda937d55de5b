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
 * During a token loop that shares its small ops the owner lengthens the spin (jb_pool_set_spin,
 * at most JB_POOL_SPIN_MAX_NS), so that the worker stays awake across a whole step.
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
#include <math.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define JB_POOL_SPIN_NS 20000       /* how long an idle thread spins before sleeping */
#define JB_POOL_SPIN_MAX_NS 1000000 /* the longest jb_pool_set_spin may ask for */
#define JOIN_SPIN_MAX_NS 1000000    /* the longest a caller spins for its workers before sleeping */
#define CHUNKS_PER_THREAD 4
#define MAX_CHUNKS 0xffff /* chunk counts live in 16 bits of the claim word */
#define LATE_NS 50000     /* a wait for workers shorter than this is never "late" */
#define BACKOFF_MIN_NS 1000000
#define WAKE_MIN_WORK 4e6 /* units (~0.1-0.2 ms on one core) worth waking a sleeping worker for */
#define SMALL_GAIN_MIN -0.05 /* small loops shared lose more than this on average: stop a while */
#define ABSENT_MAX 8         /* jobs in a row without a worker's help before they count as late */
#define KICK_GAP_NS                                                                                \
    50000 /* small loops this close together: wake the workers for the next ones                   \
           */
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

    /* caller-side lateness tracking (written under `dispatch`), see jb_pool_for */
    atomic_int_least64_t serial_until_ns; /* run jobs inline until then */
    int64_t backoff_ns;                   /* length of the next inline period */
    int absent;                           /* jobs in a row whose chunks the caller all ran */
    /* small loops (shared only with an awake worker): what sharing gains, see pool_for */
    double small_gain;                       /* running mean of (serial - shared) / serial */
    int64_t small_backoff_ns;                /* length of the next period without sharing */
    atomic_int_least64_t small_off_until_ns; /* small loops inline until then */
    /* the last small loop that ran inline because every worker slept, see jb_pool_ready */
    atomic_int_least64_t last_miss_ns;
    atomic_int_least64_t last_kick_ns;    /* and the last wake it caused */
    atomic_int_least64_t kick_backoff_ns; /* no kick before last_kick_ns + this */
    atomic_long helped;                   /* jobs a worker took part in so far */
    atomic_long helped_at_kick;           /* ... at the last kick */
    atomic_llong min_work;                /* loops with less work run inline (set_min_work) */
    atomic_int_least64_t spin_ns;         /* a worker's spin before it sleeps (set_spin) */
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
static bool spin_while_equal(atomic_int *addr, int value, int64_t spin_ns)
{
    int64_t t_end = 0;
    for (int i = 0;; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != value) return true;
        cpu_relax();
        if ((i & 255) == 255) {
            int64_t t = now_ns();
            if (!t_end)
                t_end = t + spin_ns;
            else if (t > t_end)
                return false;
        }
    }
}

/* Claims and runs chunks of the current job until none is left; returns how many it ran. */
static int run_chunks(struct jb_pool *pool, int slot)
{
    for (int ran = 0;; ran++) {
        uint64_t c   = atomic_load(&pool->claim);
        uint32_t nch = (uint32_t)(c >> 16) & 0xffff, i = (uint32_t)c & 0xffff;
        if (i >= nch) return ran;
        if (!atomic_compare_exchange_weak(&pool->claim, &c, c + 1)) {
            ran--;
            continue;
        }
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
        int64_t spin_ns = atomic_load_explicit(&pool->spin_ns, memory_order_relaxed);
        if (!spin_while_equal(&pool->wake, seen, spin_ns)) {
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
    atomic_init(&pool->serial_until_ns, 0);
    atomic_init(&pool->last_miss_ns, INT64_MIN / 2);
    atomic_init(&pool->last_kick_ns, INT64_MIN / 2);
    atomic_init(&pool->kick_backoff_ns, 0);
    atomic_init(&pool->small_off_until_ns, 0);
    atomic_init(&pool->helped, 0);
    atomic_init(&pool->helped_at_kick, 0);
    atomic_init(&pool->min_work, 0);
    atomic_init(&pool->spin_ns, JB_POOL_SPIN_NS);
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

void jb_pool_set_min_work(struct jb_pool *pool, double min_work)
{
    if (!pool) return;
    long long w = !(min_work > 0) ? 0 : min_work < 9e18 ? (long long)min_work : LLONG_MAX;
    atomic_store_explicit(&pool->min_work, w, memory_order_relaxed);
}

double jb_pool_min_work(const struct jb_pool *pool)
{
    if (!pool) return 0;
    long long w = atomic_load_explicit(&((struct jb_pool *)pool)->min_work, memory_order_relaxed);
    return w == LLONG_MAX ? INFINITY : (double)w;
}

void jb_pool_set_spin(struct jb_pool *pool, int64_t spin_ns)
{
    if (!pool) return;
    if (spin_ns < JB_POOL_SPIN_NS) spin_ns = JB_POOL_SPIN_NS;
    if (spin_ns > JB_POOL_SPIN_MAX_NS) spin_ns = JB_POOL_SPIN_MAX_NS;
    atomic_store_explicit(&pool->spin_ns, spin_ns, memory_order_relaxed);
}

static void pool_for(struct jb_pool *pool,
                     int64_t n,
                     int64_t grain,
                     double work,
                     jb_pool_fn fn,
                     void *arg);

bool jb_pool_ready(struct jb_pool *pool)
{
    if (!pool || pool->n_threads == 1 || tls_pool == pool) return false;
    int64_t t = now_ns();
    if (t < atomic_load_explicit(&pool->serial_until_ns, memory_order_relaxed) ||
        t < atomic_load_explicit(&pool->small_off_until_ns, memory_order_relaxed))
        return false;
    if (atomic_load_explicit(&pool->sleepers, memory_order_relaxed) < pool->n_threads - 1)
        return true;
    /* everyone sleeps: this loop runs inline, but when such loops come in a stream (a token
     * loop: dozens per step, microseconds apart), wake the workers without a job, so that they
     * spin and take the next loops (a wake costs tens of microseconds: not for this one) */
    int64_t last = atomic_exchange_explicit(&pool->last_miss_ns, t, memory_order_relaxed);
    int64_t kick = atomic_load_explicit(&pool->last_kick_ns, memory_order_relaxed);
    int64_t wait = atomic_load_explicit(&pool->kick_backoff_ns, memory_order_relaxed);
    if (t - last < KICK_GAP_NS && t - kick > KICK_GAP_NS + wait) {
        /* the last kick brought no worker to a job (none got a core: the machine is busier
         * than its cores): each kick costs the caller a wake-up and a worker's spin; back off */
        long helped = atomic_load_explicit(&pool->helped, memory_order_relaxed);
        bool wasted = helped == atomic_load_explicit(&pool->helped_at_kick, memory_order_relaxed) &&
                      t - kick < BACKOFF_MAX_NS;
        wait = wasted ? (wait ? 2 * wait : BACKOFF_MIN_NS) : wait / 2;
        atomic_store_explicit(&pool->kick_backoff_ns,
                              wait < BACKOFF_MAX_NS ? wait : BACKOFF_MAX_NS,
                              memory_order_relaxed);
        atomic_store_explicit(&pool->helped_at_kick, helped, memory_order_relaxed);
        atomic_store_explicit(&pool->last_kick_ns, t, memory_order_relaxed);
        atomic_fetch_add(&pool->wake, 1);
        futex_wake(&pool->wake, INT_MAX);
    }
    return false;
}

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
    if (!pool || pool->n_threads == 1 || nch < 2 ||
        (work >= 0 && work < (double)atomic_load_explicit(&pool->min_work, memory_order_relaxed))) {
        fn(arg, 0, n, 0); /* the caller's own slot; a nested call may still use the pool */
        return;
    }

    pthread_mutex_lock(&pool->dispatch);
    int64_t t0 = now_ns();
    /* workers have been late: no fork-join for a while; or a small loop while all sleep */
    if (t0 < atomic_load_explicit(&pool->serial_until_ns, memory_order_relaxed) ||
        (work >= 0 && work < WAKE_MIN_WORK && !jb_pool_ready(pool))) {
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

    const int mine = run_chunks(pool, 0);
    int64_t t1     = now_ns();

    /* spin while chunks keep finishing; sleep once nothing moves for a while: as long as the
     * caller's own share took (a worker's share of a big GEMV from DRAM can end 20 µs after the
     * caller's, and a futex wake-up then costs it tens of µs), at least JB_POOL_SPIN_NS, at most
     * 1 ms */
    int64_t spin_ns = t1 - t0 < JB_POOL_SPIN_NS ? JB_POOL_SPIN_NS : t1 - t0;
    if (spin_ns > JOIN_SPIN_MAX_NS) spin_ns = JOIN_SPIN_MAX_NS;
    for (;;) {
        int done = atomic_load(&pool->done);
        if (done == (int)nch) break;
        if (spin_while_equal(&pool->done, done, spin_ns)) continue;
        atomic_store(&pool->caller_sleeping, 1);
        while ((done = atomic_load(&pool->done)) != (int)nch)
            futex_wait(&pool->done, done);
        atomic_store(&pool->caller_sleeping, 0);
        break;
    }
    int64_t t2 = now_ns(), waited = t2 - t1;
    /* a worker "awake" but not on a core (the machine is busier than its cores) leaves every
     * chunk to the caller: its spinning only takes CPU time from the caller */
    if (work >= 0 && work < WAKE_MIN_WORK && mine > 0) {
        /* a small loop: the serial time, estimated from the caller's own chunks, against the
         * time shared. Handing over costs ~0.2 µs between idle cores, but microseconds when the
         * other core is busy (another process, a hyperthread sibling): sharing loops of a few
         * microseconds then loses, and stops for a while (1 ms .. 256 ms, doubling) */
        double serial = (double)(t1 - t0) * (double)nch / (double)mine;
        double gain   = (serial - (double)(t2 - t0)) / serial;
        pool->small_gain += (gain - pool->small_gain) / 16.0;
        if (pool->small_gain < SMALL_GAIN_MIN) {
            pool->small_backoff_ns =
              pool->small_backoff_ns ? 2 * pool->small_backoff_ns : BACKOFF_MIN_NS;
            if (pool->small_backoff_ns > BACKOFF_MAX_NS) pool->small_backoff_ns = BACKOFF_MAX_NS;
            atomic_store_explicit(
              &pool->small_off_until_ns, t2 + pool->small_backoff_ns, memory_order_relaxed);
            pool->small_gain = 0.0;
        } else if (pool->small_gain > 0.0) {
            pool->small_backoff_ns /= 2;
        }
    }
    pool->absent = mine == (int)nch ? pool->absent + 1 : 0;
    if (mine < (int)nch) atomic_fetch_add_explicit(&pool->helped, 1, memory_order_relaxed);
    if ((waited > LATE_NS && waited > t1 - t0) || pool->absent >= ABSENT_MAX) {
        pool->absent     = 0;
        pool->backoff_ns = pool->backoff_ns ? pool->backoff_ns * 2 : BACKOFF_MIN_NS;
        if (pool->backoff_ns > BACKOFF_MAX_NS) pool->backoff_ns = BACKOFF_MAX_NS;
        atomic_store_explicit(&pool->serial_until_ns, t2 + pool->backoff_ns, memory_order_relaxed);
    } else {
        pool->backoff_ns /= 2; /* lateness fades out, one punctual job at a time */
    }
    pthread_mutex_unlock(&pool->dispatch);
}
