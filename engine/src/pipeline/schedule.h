/*
 * pipeline/schedule.h - window arithmetic of the sampling driver (jukebox-spec §6.1, §6.4,
 * Appendix C): sample lengths, hops, get_starts and the list of windows that extend one level.
 *
 * Pure functions of integers: no allocation, no state, safe from any thread.
 */
#ifndef JB_PIPELINE_SCHEDULE_H
#define JB_PIPELINE_SCHEDULE_H

#include <stdint.h>

/* One sampling window of a level, in that level's token positions. */
struct jb_window {
    int64_t start;    /* first position of the window                                     */
    int64_t n_known;  /* P: positions start..start+P-1 are known and fed as context       */
    int64_t n_tokens; /* sample_tokens: the window ends at start + n_tokens (<= n_ctx)    */
};

/* hop = int(hop_fraction * n_ctx) as the reference computes it (at least 1). */
int64_t jb_schedule_hop(int64_t n_ctx, double hop_fraction);

/* sample_length = (n_samples // top_hop) * top_hop: the reference's rounding of
 * sample_length_in_seconds * sr (and of the prompt length D). */
int64_t jb_schedule_round(int64_t n_samples, int64_t top_hop);

/* get_starts(total, n_ctx, hop): start = 0, hop, 2 hop, ... while start < total - n_ctx + hop,
 * the last one pulled back to total - n_ctx. Writes min(count, cap) starts (starts may be NULL
 * when cap is 0) and returns the count; 0 for total < n_ctx or bad arguments. */
int64_t jb_schedule_starts(int64_t total, int64_t n_ctx, int64_t hop, int64_t *starts, int64_t cap);

/* The windows that extend a level holding `known` tokens to `total` tokens, in order:
 *   total <= n_ctx: one window at 0 with P = known, ending at total (sample_partial_window, with
 *                   exactly total - known new tokens: the reference's continue-mode quirk of
 *                   appending `total` new tokens is treated as the bug it is, §6.7);
 *   total >  n_ctx: the get_starts windows, each primed with what is known inside it by then;
 *                   windows already fully known are skipped (sample_single_window).
 * Writes min(count, cap) windows (w may be NULL when cap is 0) and returns the count; 0 when
 * nothing is to be sampled or on bad arguments. */
int64_t jb_schedule_level(int64_t total,
                          int64_t known,
                          int64_t n_ctx,
                          int64_t hop,
                          struct jb_window *w,
                          int64_t cap);

#endif
