/*
 * tests/unit/test_pool.c - the CPU backend's thread pool (backend/cpu/pool.h): every index runs
 * exactly once in chunks of at least `grain`, slots are unique among concurrent tasks, small loops
 * and nested calls run inline on the caller, two pools used at once do not interfere, and an idle
 * pool uses no CPU, also after a token loop asked its workers to spin longer. Prints one line per
 * check and "N passed, M failed"; exits 1 on any failure.
 */
#include "backend/cpu/pool.h"
#include "core/common.h"
#include "test_common.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* tests/common's reporting under this file's name */
#define report tc_check

#define N_MAX 100000

struct cover {
    atomic_int hits[N_MAX];
    atomic_int busy[64];
    atomic_int clash, short_chunk, calls;
    int64_t grain, n;
    pthread_t caller;
    atomic_int off_caller;
};

static void cover_fn(void *arg, int64_t b, int64_t e, int slot)
{
    struct cover *c = arg;
    if (atomic_fetch_add(&c->busy[slot], 1)) c->clash = 1;
    if (e - b < c->grain && !(b == 0 && e == c->n)) c->short_chunk = 1;
    if (!pthread_equal(pthread_self(), c->caller)) c->off_caller = 1;
    c->calls++;
    for (int64_t i = b; i < e; i++) {
        atomic_fetch_add(&c->hits[i], 1);
        if (i % 64 == 0) /* a little work, so that workers get chunks too */
            for (volatile int k = 0; k < 200; k = k + 1) {
            }
    }
    atomic_fetch_sub(&c->busy[slot], 1);
}

static bool run_cover(struct jb_pool *p, int64_t n, int64_t grain, struct cover *c)
{
    memset(c, 0, sizeof *c);
    c->grain  = grain;
    c->n      = n;
    c->caller = pthread_self();
    jb_pool_for(p, n, grain, cover_fn, c);
    for (int64_t i = 0; i < n; i++)
        if (c->hits[i] != 1) return false;
    return !c->clash && !c->short_chunk;
}

static void test_cover(void)
{
    struct cover *c           = calloc(1, sizeof *c);
    struct jb_pool *p[3]      = { jb_pool_new(1), jb_pool_new(2), jb_pool_new(5) };
    bool ok                   = c && p[0] && p[1] && p[2];
    static const int64_t ns[] = { 1, 2, 3, 7, 64, 1000, 99991 }, gs[] = { 1, 3, 100 };
    for (int k = 0; ok && k < 3; k++)
        for (size_t i = 0; ok && i < sizeof ns / sizeof ns[0]; i++)
            for (size_t g = 0; ok && g < sizeof gs / sizeof gs[0]; g++)
                for (int rep = 0; ok && rep < 20; rep++)
                    ok = run_cover(p[k], ns[i], gs[g], c);
    report(ok, "every index exactly once, chunks >= grain, one task per slot at a time");
    ok = c && p[1] && run_cover(p[1], 10, 6, c) && !c->off_caller && c->calls == 1;
    report(ok, "a loop shorter than 2 x grain runs inline on the caller, in one call");
    free(c);
    for (int k = 0; k < 3; k++)
        jb_pool_free(p[k]);
    jb_pool_free(NULL);
}

struct nest {
    struct jb_pool *pool;
    atomic_int bad;
    atomic_int inner_hits[256];
};

static void inner_fn(void *arg, int64_t b, int64_t e, int slot)
{
    struct nest *n = arg;
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add(&n->inner_hits[i], 1);
    (void)slot;
}

static void outer_fn(void *arg, int64_t b, int64_t e, int slot)
{
    struct nest *n = arg;
    (void)slot;
    for (int64_t i = b; i < e; i++)
        jb_pool_for(n->pool, 256, 1, inner_fn, n);
}

struct slotcheck {
    int want, calls;
    bool bad;
};

static void slot_fn(void *arg, int64_t b, int64_t e, int slot)
{
    struct slotcheck *s = arg;
    s->calls++;
    if (slot != s->want || b != 0 || e != 1000) s->bad = true;
}

static void nested_slot_fn(void *arg, int64_t b, int64_t e, int slot)
{
    struct nest *n = arg;
    for (int64_t i = b; i < e; i++) {
        struct slotcheck s = { slot, 0, false };
        jb_pool_for(n->pool, 1000, 1, slot_fn, &s);
        if (s.bad || s.calls != 1) n->bad = 1;
    }
}

static void test_nested(void)
{
    struct nest *n = calloc(1, sizeof *n);
    n->pool        = jb_pool_new(3);
    bool ok        = n->pool != NULL;
    if (ok) jb_pool_for(n->pool, 12, 1, outer_fn, n);
    for (int i = 0; ok && i < 256; i++)
        ok = n->inner_hits[i] == 12;
    report(ok, "a loop nested in a task covers its range once per outer item");
    if (n->pool) jb_pool_for(n->pool, 64, 1, nested_slot_fn, n);
    report(ok && !n->bad, "a nested loop runs inline as one call on the enclosing task's slot");
    jb_pool_free(n->pool);
    free(n);
}

struct sum_ctx {
    struct jb_pool *pool;
    int64_t total;
    atomic_llong sum;
    bool ok;
};

static void sum_fn(void *arg, int64_t b, int64_t e, int slot)
{
    struct sum_ctx *c = arg;
    long long s       = 0;
    for (int64_t i = b; i < e; i++)
        s += i;
    atomic_fetch_add(&c->sum, s);
    (void)slot;
}

static void *sum_main(void *p)
{
    struct sum_ctx *c = p;
    c->ok             = true;
    for (int rep = 0; rep < 2000 && c->ok; rep++) {
        atomic_store(&c->sum, 0);
        jb_pool_for(c->pool, c->total, 16, sum_fn, c);
        c->ok = atomic_load(&c->sum) == (long long)c->total * (c->total - 1) / 2;
    }
    return NULL;
}

static void test_two_pools(void)
{
    struct sum_ctx c[2] = { { jb_pool_new(2), 5000, 0, false },
                            { jb_pool_new(3), 7777, 0, false } };
    pthread_t th[2];
    bool ok         = c[0].pool && c[1].pool;
    bool started[2] = { false, false };
    for (int i = 0; ok && i < 2; i++)
        ok = started[i] = pthread_create(&th[i], NULL, sum_main, &c[i]) == 0;
    for (int i = 0; i < 2; i++)
        if (started[i]) pthread_join(th[i], NULL);
    report(ok && c[0].ok && c[1].ok, "two pools driven at once from two threads: 2000 jobs each");
    jb_pool_free(c[0].pool);
    jb_pool_free(c[1].pool);
}

/* seconds on a clock: CPU time of the process or of this thread */
static double clock_seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    return clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

/* CPU time of every thread but this one: the pool's workers */
static double workers_cpu_seconds(void)
{
    return cpu_seconds() - clock_seconds(CLOCK_THREAD_CPUTIME_ID);
}

/* CPU seconds the process uses in 0.3 s of sleep, starting 20 ms from now (past any spin) */
static double idle_cpu_seconds(void)
{
    struct timespec ms = { 0, 20 * 1000000 };
    nanosleep(&ms, NULL);
    double c0          = cpu_seconds();
    struct timespec hs = { 0, 300 * 1000000 };
    nanosleep(&hs, NULL);
    return cpu_seconds() - c0;
}

static void test_idle(void)
{
    struct jb_pool *p = jb_pool_new(4);
    struct sum_ctx c  = { p, 100000, 0, false };
    bool ok           = p != NULL;
    if (ok) jb_pool_for(p, c.total, 16, sum_fn, &c); /* wake every worker once */
    double used = idle_cpu_seconds();
    report(ok && used < 0.02, "an idle 4-thread pool uses no CPU: %.4f s of CPU in 0.3 s", used);
    jb_pool_free(p);
}

/* CPU seconds the pool's workers use over `wakes` wake-ups without a job, each started by a
 * stream of jb_pool_ready calls (a token loop's) while every worker sleeps. The wake-ups are
 * 0.27 s apart, past the pool's kick back-off (up to 0.256 s after a kick that no job used), so
 * each stream wakes them. Measured as the process's CPU less this thread's: it needs no second
 * free core, so it holds on a machine busy with other tests, where the woken worker may share
 * this thread's core. */
static double worker_cpu_per_wake(struct jb_pool *p, int wakes)
{
    struct timespec gap = { 0, 270 * 1000000 };
    nanosleep(&gap, NULL); /* asleep first: a new worker spins too */
    double c0 = workers_cpu_seconds();
    for (int i = 0; i < wakes; i++) {
        /* two calls within 50 µs make the kick; 40 µs of calls make at most one */
        double t_end = jb_time_now() + 40e-6;
        while (jb_time_now() < t_end && !jb_pool_ready(p)) {
        }
        nanosleep(&gap, NULL);
    }
    return (workers_cpu_seconds() - c0) / wakes;
}

/* jb_pool_set_spin: a worker asked to spin longer (a token loop's, kept to 1 ms) spins after a
 * wake-up several times as long as with the default spin (20 µs); and however long was asked,
 * an idle pool then uses no CPU. */
static void test_spin(void)
{
    struct jb_pool *p = jb_pool_new(2);
    bool ok           = p != NULL;
    double plain = 0, spun = 0;
    if (ok) {
        plain = worker_cpu_per_wake(p, 6);
        jb_pool_set_spin(p, 10LL * 1000000000); /* 10 s */
        spun = worker_cpu_per_wake(p, 6);
    }
    report(ok && spun > 0.3e-3 && spun > 3 * plain,
           "jb_pool_set_spin: a worker spins longer after a wake-up: %.3f ms of CPU per wake-up "
           "against %.3f ms with the default spin",
           1e3 * spun,
           1e3 * plain);
    double used = idle_cpu_seconds();
    report(ok && used < 0.02,
           "a spin asked for 10 s is kept to 1 ms: %.4f s of CPU in the 0.3 s after",
           used);
    jb_pool_free(p);
}

struct ready_ctx {
    struct jb_pool *pool;
    atomic_int ready_inside;
};

static void ready_fn(void *arg, int64_t b, int64_t e, int slot)
{
    struct ready_ctx *r = arg;
    (void)b, (void)e, (void)slot;
    if (jb_pool_ready(r->pool)) r->ready_inside = 1;
}

/* Small loops (a token loop's): jb_pool_ready never says yes where sharing is impossible; a
 * stream of them (which wakes the workers) still covers every index once; afterwards the pool
 * goes back to sleep. */
static void test_small_loops(void)
{
    struct jb_pool *p1 = jb_pool_new(1), *p2 = jb_pool_new(2);
    struct cover *c = calloc(1, sizeof *c);
    bool ok         = p1 && p2 && c;
    report(ok && !jb_pool_ready(NULL) && !jb_pool_ready(p1),
           "jb_pool_ready: false without a pool and for one thread");
    struct ready_ctx r = { p2, 0 };
    if (ok) jb_pool_for(p2, 100000, 16, ready_fn, &r);
    report(ok && !r.ready_inside, "jb_pool_ready: false inside a task of the same pool");

    bool covered = ok;
    for (int rep = 0; covered && rep < 3000; rep++) {
        memset(c, 0, sizeof *c);
        c->grain  = 1;
        c->n      = 64;
        c->caller = pthread_self();
        jb_pool_for_work(p2, 64, 1, 50000.0, cover_fn, c);
        for (int64_t i = 0; i < 64; i++)
            if (c->hits[i] != 1) covered = false;
        covered = covered && !c->clash;
    }
    report(covered, "a stream of small loops: every index exactly once, one task per slot");
    double used = idle_cpu_seconds();
    report(ok && used < 0.02, "idle again after a stream of small loops: %.4f s of CPU", used);
    free(c);
    jb_pool_free(p1);
    jb_pool_free(p2);
}

int main(void)
{
    test_cover();
    test_nested();
    test_two_pools();
    test_idle();
    test_small_loops();
    test_spin();
    return tc_summary();
}
