/*
 * backend/cpu/share_tuner.c - see share_tuner.h.
 */
#include "backend/cpu/share_tuner.h"
#include "backend/cpu/cpu.h"

#include <math.h>
#include <string.h>

#define FIRST_EXPLOIT 4 /* blocks between the first round of trials and the next */
#define MAX_EXPLOIT 128 /* at most this many blocks between rounds while the choice holds */
#define CLEARLY_SLOWER                                                                             \
    1.25 /* a trial whose first steps all take longer than this times the                          \
          * best known ends early: a bad arm costs two steps, not a block */
/* Arms that behave alike (at small widths no op reaches the thresholds of arms 1-3) would take
 * turns by noise, and a new choice restarting the back-off brings the trials of a slow arm every
 * few blocks (measured: 11% of the steps on arm 0 with 4% noise). So the choice holds unless
 * another arm was faster by more than HOLD_MARGIN, and only a change by more than
 * RESTART_MARGIN (the machine changed) restarts the back-off. */
#define HOLD_MARGIN 1.03
#define RESTART_MARGIN 1.10
/* Candidate groups make every thread read all the weights of a step: that pays only while they
 * stay in cache (the bundled model, w256d8: 8 MB, steps of ~0.2 ms), not where a step streams
 * them from memory (w1024d24: 300 MB, w1920d72: 3.2 GB, steps of ms to 100 ms), where a trial
 * would cost two steps of twice the time each round. So the arm is tried only for loops whose
 * steps (on arm 0) take less than this. */
#define GROUPS_MAX_STEP_NS 2e6

double jb_share_arm_min_work(int arm)
{
    static const double min_work[JB_SHARE_MAX_ARMS] = {
        JB_CPU_SHARE_MIN_WORK, 1048576.0, 8388608.0, INFINITY, INFINITY
    };
    return arm >= 0 && arm < JB_SHARE_MAX_ARMS ? min_work[arm] : min_work[0];
}

void jb_share_tuner_init(struct jb_share_tuner *t)
{
    memset(t, 0, sizeof *t);
    t->current = -1;
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++) /* insertion sort: n <= JB_SHARE_BLOCK */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double x = v[j];
            v[j]     = v[j - 1];
            v[j - 1] = x;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int find_or_add(struct jb_share_tuner *t, uintptr_t key, bool groups)
{
    int victim = 0;
    for (int i = 0; i < JB_SHARE_LOOPS; i++) {
        if (t->loops[i].key == key) return i;
        if (t->loops[i].used < t->loops[victim].used) victim = i;
    }
    struct jb_share_loop *L = &t->loops[victim];
    memset(L, 0, sizeof *L);
    L->key       = key;
    L->n_arms    = groups ? JB_SHARE_MAX_ARMS : JB_SHARE_ARMS;
    L->best      = -1;
    L->exploring = true;
    if (t->current == victim) t->current = -1;
    return victim;
}

/* The fastest arm measured, other than `skip` (-1: none); -1 if none was measured. */
static int fastest(const struct jb_share_loop *L, int skip)
{
    int b = -1;
    for (int a = 0; a < L->n_arms; a++)
        if (a != skip && L->arm_ns[a] > 0 && (b < 0 || L->arm_ns[a] < L->arm_ns[b])) b = a;
    return b;
}

static int next_trial(const struct jb_share_loop *L, int after)
{
    int a = after + 1;
    if (a == L->best) a++;
    /* the groups' arm last, and only for short steps (arm 0's, measured by then) */
    if (a == JB_SHARE_ARM_GROUPS && a != L->best && L->arm_ns[0] > GROUPS_MAX_STEP_NS) a++;
    return a;
}

int jb_share_tuner_step(struct jb_share_tuner *t, uintptr_t key, int64_t now_ns, bool groups)
{
    t->clock++;
    const int idx           = find_or_add(t, key, groups);
    struct jb_share_loop *L = &t->loops[idx];
    L->used                 = t->clock;
    if (t->current != idx || t->last_ns == 0) { /* first step: nothing to time yet */
        t->current = idx;
        t->last_ns = now_ns;
        L->n       = 0;
        return L->arm;
    }
    L->t[L->n++] = (double)(now_ns - t->last_ns);
    t->last_ns   = now_ns;

    bool block_done = L->n == JB_SHARE_BLOCK;
    if (!block_done && L->exploring && L->n >= 2) {
        int b               = fastest(L, L->arm);
        double fastest_step = L->t[0];
        for (int i = 1; i < L->n; i++)
            if (L->t[i] < fastest_step) fastest_step = L->t[i];
        block_done = b >= 0 && fastest_step > CLEARLY_SLOWER * L->arm_ns[b];
    }
    if (!block_done) return L->arm;
    L->arm_ns[L->arm] = median(L->t, L->n);
    L->n              = 0;

    if (L->exploring) {
        int next = next_trial(L, L->arm);
        if (next < L->n_arms) return L->arm = next;
        /* the round is over: every arm has a fresh time (the best from its last block) */
        int b = fastest(L, -1);
        if (L->best >= 0 && b != L->best && L->arm_ns[L->best] <= HOLD_MARGIN * L->arm_ns[b])
            b = L->best;
        const bool changed = L->best < 0 || L->arm_ns[L->best] > RESTART_MARGIN * L->arm_ns[b];
        L->exploit_len     = changed                            ? FIRST_EXPLOIT
                             : 2 * L->exploit_len > MAX_EXPLOIT ? MAX_EXPLOIT
                                                                : 2 * L->exploit_len;
        L->best            = b;
        L->exploring       = false;
        L->exploit_left    = L->exploit_len;
        return L->arm      = b;
    }
    if (--L->exploit_left > 0) return L->arm;
    L->exploring  = true; /* a round of trials of the other arms */
    return L->arm = next_trial(L, -1);
}

int jb_share_tuner_end(struct jb_share_tuner *t)
{
    t->current = -1;
    t->last_ns = 0;
    return 0;
}
