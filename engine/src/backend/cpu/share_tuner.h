/*
 * backend/cpu/share_tuner.h - picks, by measuring whole token steps, how eagerly the CPU
 * backend's threads share the ops of a repeated loop.
 *
 * Why: whether handing an op to a second core pays depends on more than the op. A GEMV of a
 * few microseconds split in two saves half its time, but its input row must travel to the other
 * core and half of its output back, and the next op waits for that (~0.2 µs per cache-line round
 * trip between the two vCPUs of this VM). At a small transformer (w256d8) the sum over a step is
 * a loss (2 threads 0.85x of 1) although each op alone measures a gain. So the backend tries a
 * few sharing thresholds ("arms": ops with less work than the threshold run on the caller alone)
 * one block of steps each, keeps the fastest by the median step time, and re-checks the others
 * now and then (less often while the choice holds), per loop kind (a prior and its candidate
 * count). Arm 0 is the default behaviour; arm 3 shares nothing. A loop whose steps can run
 * their candidates apart has a fifth arm, JB_SHARE_ARM_GROUPS: each thread runs a group of the
 * candidates through the whole step alone (nothing crosses between cores within a step, but
 * each thread reads all the weights; it pays where they stay in cache).
 *
 * Pure logic on timestamps given by the caller, so that it is tested with synthetic times
 * (test_share_tuner); the CPU backend feeds it from its loop_step/loop_end hooks.
 */
#ifndef JB_BACKEND_CPU_SHARE_TUNER_H
#define JB_BACKEND_CPU_SHARE_TUNER_H

#include <stdbool.h>
#include <stdint.h>

#define JB_SHARE_ARMS 4       /* the sharing thresholds every loop has */
#define JB_SHARE_ARM_GROUPS 4 /* the fifth arm, of loops that can cut a step into groups */
#define JB_SHARE_MAX_ARMS 5
#define JB_SHARE_BLOCK 8 /* steps per measured block */
#define JB_SHARE_LOOPS 8 /* loop kinds remembered (least recently used goes) */

/* The sharing threshold of each arm, in work units (see jb_cpu_team); arm 3 (and the groups'
 * arm, whose ops run inside one thread's group) is +infinity. */
double jb_share_arm_min_work(int arm);

struct jb_share_loop {
    uintptr_t key; /* 0: free */
    int64_t used;  /* tuner clock at the last step (least recently used is replaced) */
    int n_arms;    /* JB_SHARE_ARMS, or JB_SHARE_MAX_ARMS with the groups' arm */
    int arm;       /* the arm the current block runs */
    int best;      /* the arm chosen; -1 during the first round of trials */
    bool exploring;
    int n;                            /* steps measured in the current block */
    double t[JB_SHARE_BLOCK];         /* their durations, ns */
    double arm_ns[JB_SHARE_MAX_ARMS]; /* each arm's median step at its last block; 0: none */
    int exploit_left, exploit_len;    /* blocks before the next round of trials, and that round's */
};

struct jb_share_tuner {
    struct jb_share_loop loops[JB_SHARE_LOOPS];
    int current;     /* the loop whose step ended last; -1: none (outside a loop) */
    int64_t last_ns; /* when it ended */
    int64_t clock;
};

void jb_share_tuner_init(struct jb_share_tuner *t);
/* A step of loop `key` (nonzero) ended at now_ns; returns the arm to run the next step with. The
 * first step of a loop (or after another loop's) only starts the clock. groups: the loop's steps
 * can be cut into candidate groups (the loop gets the groups' arm; fixed when the loop is new). */
int jb_share_tuner_step(struct jb_share_tuner *t, uintptr_t key, int64_t now_ns, bool groups);
/* The loop ended (the next step of any loop starts a fresh clock); returns arm 0, the default. */
int jb_share_tuner_end(struct jb_share_tuner *t);

#endif
