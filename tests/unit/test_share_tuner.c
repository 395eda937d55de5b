/*
 * tests/unit/test_share_tuner.c - the CPU backend's choice of how eagerly to share a token
 * loop's ops between threads (backend/cpu/share_tuner.h), on synthetic step times: it settles
 * on the fastest arm, ignores preempted steps, drops a clearly slow arm after two steps, follows
 * a change of the fastest arm, re-checks less often while its choice holds (also among arms
 * that only noise tells apart), keeps loop kinds apart and never times the gap between two
 * loops, and offers the candidate groups' arm only to loops that can cut their steps. Also that
 * the pool honours the minimum work it sets. Prints one line per check and
 * "N passed, M failed"; exits 1 on any failure.
 */
#include "backend/cpu/pool.h"
#include "backend/cpu/share_tuner.h"
#include "test_common.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct sim {
    struct jb_share_tuner t;
    int64_t now;
    int arm; /* the arm the next step runs with */
    long steps_at[JB_SHARE_MAX_ARMS];
    bool groups;  /* the loop can cut its steps into candidate groups (the fifth arm) */
    double noise; /* each step's time times 1 + noise·u, u uniform in [-1, 1) */
    uint64_t rng;
};

/* Runs `n` steps of loop `key`, each taking cost[arm] µs (every `outlier_every`-th step 20x:
 * a preemption), counting steps per arm. */
static void run(struct sim *s, uintptr_t key, int n, const double *cost, int outlier_every)
{
    for (int i = 0; i < n; i++) {
        double us = cost[s->arm];
        if (outlier_every > 0 && i % outlier_every == outlier_every - 1) us *= 20.0;
        if (s->noise > 0) us *= 1.0 + s->noise * (double)tc_rng_uniform(&s->rng);
        s->now += (int64_t)(us * 1000.0);
        s->steps_at[s->arm]++;
        s->arm = jb_share_tuner_step(&s->t, key, s->now, s->groups);
        if (s->arm < 0 || s->arm >= (s->groups ? JB_SHARE_MAX_ARMS : JB_SHARE_ARMS)) {
            tc_check(false, "arm %d out of range", s->arm);
            return;
        }
    }
}

static void sim_init(struct sim *s)
{
    memset(s, 0, sizeof *s);
    jb_share_tuner_init(&s->t);
    s->now = 1000000000;
    s->rng = 12345;
}

static const struct jb_share_loop *loop_of(const struct sim *s, uintptr_t key)
{
    for (int i = 0; i < JB_SHARE_LOOPS; i++)
        if (s->t.loops[i].key == key) return &s->t.loops[i];
    return NULL;
}

static void test_settles_on_fastest(void)
{
    struct sim s;
    sim_init(&s);
    const double cost[JB_SHARE_ARMS] = { 100, 90, 80, 95 };
    run(&s, 7, 200, cost, 0);
    const struct jb_share_loop *L = loop_of(&s, 7);
    tc_check(L && L->best == 2, "settles on the fastest arm (best %d, want 2)", L ? L->best : -9);
    memset(s.steps_at, 0, sizeof s.steps_at);
    run(&s, 7, 1000, cost, 0);
    tc_check(
      s.steps_at[2] >= 900, "then runs it for most steps (%ld of 1000 at arm 2)", s.steps_at[2]);
}

static void test_ignores_preemption(void)
{
    struct sim s;
    sim_init(&s);
    const double cost[JB_SHARE_ARMS] = { 100, 92, 85, 300 };
    run(&s, 7, 2000, cost, 7); /* one step in 7 preempted: up to 2 per block of 8 */
    const struct jb_share_loop *L = loop_of(&s, 7);
    tc_check(L && L->best == 2,
             "preempted steps (1 in 7, 20x) do not change the choice (best %d, want 2)",
             L ? L->best : -9);
}

static void test_drops_slow_arm_early(void)
{
    struct sim s;
    sim_init(&s);
    const double cost[JB_SHARE_ARMS] = { 100, 100, 100, 300 };
    run(&s, 7, 4 * JB_SHARE_BLOCK, cost, 0); /* the first round of trials */
    tc_check(s.steps_at[3] == 2,
             "an arm 3x slower than the best costs 2 steps per trial, not a block (%ld)",
             s.steps_at[3]);
}

static void test_follows_change(void)
{
    struct sim s;
    sim_init(&s);
    const double before[JB_SHARE_ARMS] = { 100, 90, 80, 95 };
    const double after[JB_SHARE_ARMS]  = { 60, 90, 80, 95 };
    run(&s, 7, 3000, before, 0);
    run(&s, 7, 3000, after, 0); /* trials come at least every 128 blocks + a round */
    const struct jb_share_loop *L = loop_of(&s, 7);
    tc_check(
      L && L->best == 0, "follows a change of the fastest arm (best %d, want 0)", L ? L->best : -9);
}

static void test_backs_off(void)
{
    struct sim s;
    sim_init(&s);
    const double cost[JB_SHARE_ARMS] = { 100, 130, 140, 150 };
    run(&s, 7, 20000, cost, 0);
    const struct jb_share_loop *L = loop_of(&s, 7);
    tc_check(L && L->exploit_len == 128,
             "re-checks less often while the choice holds (%d blocks between rounds, want 128)",
             L ? L->exploit_len : -1);
    memset(s.steps_at, 0, sizeof s.steps_at);
    run(&s, 7, 20000, cost, 0);
    long other = s.steps_at[1] + s.steps_at[2] + s.steps_at[3];
    tc_check(other * 100 < 20000 * 2,
             "then spends under 2%% of the steps on the other arms (%ld of 20000)",
             other);
}

/* Arms that behave alike (at a small width no op reaches the thresholds of arms 1-3, so all
 * three share nothing) must not reset the back-off when noise makes another of them the
 * fastest: each reset brings the next round of trials, and so the slower arm 0, 4 blocks on. */
static void test_alike_arms_hold(void)
{
    struct sim s;
    sim_init(&s);
    s.noise                          = 0.04;
    const double cost[JB_SHARE_ARMS] = { 118, 100, 100, 100 };
    run(&s, 7, 20000, cost, 0);
    const struct jb_share_loop *L = loop_of(&s, 7);
    tc_check(L && L->exploit_len == 128 && L->best > 0,
             "alike arms under 4%% noise: the choice holds (arm %d, %d blocks between rounds, "
             "want 1-3 and 128)",
             L ? L->best : -9,
             L ? L->exploit_len : -1);
    memset(s.steps_at, 0, sizeof s.steps_at);
    run(&s, 7, 20000, cost, 0);
    tc_check(s.steps_at[0] * 100 < 20000 * 2,
             "and under 2%% of the steps go to the slower arm 0 (%ld of 20000)",
             s.steps_at[0]);
}

static void test_loop_kinds_apart(void)
{
    struct sim s;
    sim_init(&s);
    const double a_cost[JB_SHARE_ARMS] = { 100, 90, 80, 60 };
    const double b_cost[JB_SHARE_ARMS] = { 50, 90, 95, 99 };
    for (int r = 0; r < 40; r++) { /* the two loops take turns, 64 steps each */
        run(&s, 11, 64, a_cost, 0);
        s.arm = jb_share_tuner_end(&s.t);
        s.now += 5000000000; /* seconds between loops: never timed as a step */
        run(&s, 22, 64, b_cost, 0);
        s.arm = jb_share_tuner_end(&s.t);
        s.now += 5000000000;
    }
    const struct jb_share_loop *A = loop_of(&s, 11), *B = loop_of(&s, 22);
    tc_check(A && B && A->best == 3 && B->best == 0,
             "two loop kinds keep their own choices (%d and %d, want 3 and 0)",
             A ? A->best : -9,
             B ? B->best : -9);
    bool sane = A && B;
    for (int a = 0; sane && a < JB_SHARE_ARMS; a++)
        sane = A->arm_ns[a] < 1e6 && B->arm_ns[a] < 1e6;
    tc_check(sane, "the gaps between loops were never timed as steps");
    tc_check(jb_share_tuner_end(&s.t) == 0, "outside a loop the default arm (0) applies");
}

/* A loop that can cut its steps into candidate groups has the fifth arm: chosen where fastest,
 * dropped after two steps where clearly slow (a model whose weights do not stay in cache). */
static void test_groups_arm(void)
{
    struct sim s;
    sim_init(&s);
    s.groups                             = true;
    const double fast[JB_SHARE_MAX_ARMS] = { 100, 98, 97, 96, 80 };
    run(&s, 7, 2000, fast, 0);
    const struct jb_share_loop *L = loop_of(&s, 7);
    tc_check(L && L->best == JB_SHARE_ARM_GROUPS && s.steps_at[JB_SHARE_ARM_GROUPS] > 1700,
             "a loop with groups settles on them where fastest (best %d, %ld of 2000 steps)",
             L ? L->best : -9,
             s.steps_at[JB_SHARE_ARM_GROUPS]);
    sim_init(&s);
    s.groups                             = true;
    const double slow[JB_SHARE_MAX_ARMS] = { 100, 98, 97, 96, 190 };
    run(&s, 7, 5 * JB_SHARE_BLOCK, slow, 0); /* the first round of trials */
    tc_check(s.steps_at[JB_SHARE_ARM_GROUPS] == 2,
             "and tries them for 2 steps, not a block, where they are ~2x slower (%ld)",
             s.steps_at[JB_SHARE_ARM_GROUPS]);
    sim_init(&s);
    s.groups                                  = true;
    const double long_step[JB_SHARE_MAX_ARMS] = { 5000, 5000, 5000, 5100, 2500 };
    run(&s, 7, 2000, long_step, 0);
    tc_check(s.steps_at[JB_SHARE_ARM_GROUPS] == 0,
             "nor tries them at all where a step takes 5 ms (weights from memory: %ld steps)",
             s.steps_at[JB_SHARE_ARM_GROUPS]);
    sim_init(&s); /* s.groups false: the same costs never reach the fifth arm */
    run(&s, 7, 2000, fast, 0);
    tc_check(s.steps_at[JB_SHARE_ARM_GROUPS] == 0,
             "a loop without groups never gets their arm (%ld steps)",
             s.steps_at[JB_SHARE_ARM_GROUPS]);
}

static void test_arm_thresholds(void)
{
    bool rising = true;
    for (int a = 1; a < JB_SHARE_ARMS; a++)
        rising = rising && jb_share_arm_min_work(a) > jb_share_arm_min_work(a - 1);
    tc_check(rising && isinf(jb_share_arm_min_work(JB_SHARE_ARMS - 1)) &&
               isinf(jb_share_arm_min_work(JB_SHARE_ARM_GROUPS)),
             "arms share ever less, the last nothing; the groups' arm shares no op either");
}

struct on_caller {
    pthread_t caller;
    atomic_int off_caller, items;
};

static void note_thread(void *arg, int64_t b, int64_t e, int slot)
{
    (void)slot;
    struct on_caller *c = arg;
    if (!pthread_equal(pthread_self(), c->caller)) c->off_caller = 1;
    c->items += (int)(e - b);
}

static void test_pool_min_work(void)
{
    struct jb_pool *pool = jb_pool_new(2);
    if (!pool) {
        tc_check(false, "pool of 2 threads");
        return;
    }
    jb_pool_set_min_work(pool, INFINITY);
    struct on_caller c = { .caller = pthread_self() };
    for (int r = 0; r < 200; r++)
        jb_pool_for_work(pool, 1000, 1, 1e12, note_thread, &c);
    tc_check(c.items == 200 * 1000 && !c.off_caller,
             "minimum work +inf: every loop with a work hint runs on the caller (%d items, off "
             "the caller: %d)",
             (int)c.items,
             (int)c.off_caller);
    tc_check(isinf(jb_pool_min_work(pool)), "and reads back as +inf");
    jb_pool_set_min_work(pool, 0.0);
    c.items = 0;
    for (int r = 0; r < 200; r++)
        jb_pool_for_work(pool, 1000, 1, 1e12, note_thread, &c);
    tc_check(c.items == 200 * 1000 && jb_pool_min_work(pool) == 0.0,
             "minimum work 0: loops still cover every item");
    jb_pool_free(pool);
}

int main(void)
{
    test_settles_on_fastest();
    test_ignores_preemption();
    test_drops_slow_arm_early();
    test_follows_change();
    test_backs_off();
    test_alike_arms_hold();
    test_loop_kinds_apart();
    test_groups_arm();
    test_arm_thresholds();
    test_pool_min_work();
    return tc_summary();
}
