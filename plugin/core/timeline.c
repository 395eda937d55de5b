/*
 * plugin/core/timeline.c - bar grid from a host position (see timeline.h).
 */
#include "timeline.h"

#include <math.h>

struct tl_grid tl_grid_from_pos(const struct tl_pos *pos, double rate)
{
    struct tl_grid g = { 0 };
    if (!pos || !pos->has_frame || !pos->has_bbt || !(rate > 0) || !(pos->bpm >= 1.0) ||
        !(pos->bpm <= 1000.0) || !(pos->beats_per_bar >= 1.0) || !(pos->beats_per_bar <= 64.0) ||
        !(pos->bar_beat >= 0.0) || !isfinite(pos->bar_beat))
        return g;
    double frames_per_beat = rate * 60.0 / pos->bpm;
    g.frames_per_bar       = frames_per_beat * pos->beats_per_bar;
    g.anchor               = (double)pos->frame - pos->bar_beat * frames_per_beat;
    g.valid                = true;
    return g;
}

static int64_t line_at(const struct tl_grid *g, double k)
{
    return (int64_t)llround(g->anchor + k * g->frames_per_bar);
}

int64_t tl_snap_nearest(const struct tl_grid *g, int64_t frame)
{
    if (!g || !g->valid) return frame;
    return line_at(g, round(((double)frame - g->anchor) / g->frames_per_bar));
}

int64_t tl_snap_floor(const struct tl_grid *g, int64_t frame)
{
    if (!g || !g->valid) return frame;
    double k  = floor(((double)frame - g->anchor) / g->frames_per_bar);
    int64_t f = line_at(g, k);
    if (f > frame) /* rounding of a fractional anchor */
        f = line_at(g, k - 1);
    return f;
}

int64_t tl_snap_ceil(const struct tl_grid *g, int64_t frame)
{
    if (!g || !g->valid) return frame;
    double k  = ceil(((double)frame - g->anchor) / g->frames_per_bar);
    int64_t f = line_at(g, k);
    if (f < frame) f = line_at(g, k + 1);
    return f;
}

int64_t tl_bars_frames(const struct tl_grid *g, int n_bars, double rate)
{
    if (g && g->valid) return (int64_t)llround(n_bars * g->frames_per_bar);
    return (int64_t)llround(n_bars * 2.0 * rate);
}
