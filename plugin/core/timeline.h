/*
 * plugin/core/timeline.h - host time to bar lines.
 *
 * A host reports its transport as a position (frame, bar, beat within the bar, tempo, metre,
 * speed), from LV2 time:Position or JACK transport. From one report this module derives the
 * bar grid (frame of a bar line and frames per bar), so capture can snap to bar lines and the
 * riff's place on the timeline is known in frames. Pure functions, safe on any thread.
 */
#ifndef ENCORE_PLUGIN_TIMELINE_H
#define ENCORE_PLUGIN_TIMELINE_H

#include <stdbool.h>
#include <stdint.h>

struct tl_pos {
    bool has_frame;       /* frame is known (host transport present) */
    bool has_bbt;         /* tempo, metre and bar/beat are known */
    int64_t frame;        /* timeline frame of this sample */
    double speed;         /* 0 = stopped, 1 = rolling */
    double bpm;           /* beats per minute */
    double beats_per_bar; /* e.g. 4 */
    int64_t bar;          /* bar number (0-based as LV2 time:bar) */
    double bar_beat;      /* beats since the start of the bar, [0, beats_per_bar) */
};

/* Bar lines at anchor + k * frames_per_bar (k any integer). */
struct tl_grid {
    bool valid;
    double anchor;         /* frame of a bar line */
    double frames_per_bar; /* > 0 */
};

/* Builds the grid for `pos` at `rate` Hz; invalid without tempo/metre or with silly values. */
struct tl_grid tl_grid_from_pos(const struct tl_pos *pos, double rate);

/* Frame of the nearest bar line, the last bar line at or before, the first at or after. */
int64_t tl_snap_nearest(const struct tl_grid *g, int64_t frame);
int64_t tl_snap_floor(const struct tl_grid *g, int64_t frame);
int64_t tl_snap_ceil(const struct tl_grid *g, int64_t frame);

/* Length of n bars in frames (rounded), or n * 2 s (120 BPM 4/4) without a grid. */
int64_t tl_bars_frames(const struct tl_grid *g, int n_bars, double rate);

#endif
