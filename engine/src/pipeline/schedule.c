/*
 * pipeline/schedule.c - window arithmetic of the sampling driver (jukebox-spec §6.4).
 */
#include "pipeline/schedule.h"

int64_t jb_schedule_hop(int64_t n_ctx, double hop_fraction)
{
    /* Python int(hop_fraction * n_ctx): truncation of the double product */
    int64_t hop = (int64_t)(hop_fraction * (double)n_ctx);
    return hop >= 1 ? hop : 1;
}

int64_t jb_schedule_round(int64_t n_samples, int64_t top_hop)
{
    if (n_samples <= 0 || top_hop <= 0) return 0;
    return n_samples / top_hop * top_hop;
}

int64_t jb_schedule_starts(int64_t total, int64_t n_ctx, int64_t hop, int64_t *starts, int64_t cap)
{
    if (total < n_ctx || n_ctx <= 0 || hop <= 0) return 0;
    int64_t n = 0;
    for (int64_t start = 0; start < total - n_ctx + hop; start += hop) {
        int64_t s = start + n_ctx >= total ? total - n_ctx : start;
        if (n < cap) starts[n] = s;
        n++;
    }
    return n;
}

int64_t jb_schedule_level(int64_t total,
                          int64_t known,
                          int64_t n_ctx,
                          int64_t hop,
                          struct jb_window *w,
                          int64_t cap)
{
    if (n_ctx <= 0 || hop <= 0 || known < 0 || total <= known) return 0;
    if (total <= n_ctx) {
        if (cap > 0) w[0] = (struct jb_window){ .start = 0, .n_known = known, .n_tokens = total };
        return 1;
    }
    int64_t n = 0, cur = known;
    for (int64_t start = 0; start < total - n_ctx + hop; start += hop) {
        const int64_t s   = start + n_ctx >= total ? total - n_ctx : start;
        const int64_t end = s + n_ctx;
        const int64_t P   = (cur < end ? cur : end) - s; /* cur >= s: windows overlap or touch */
        if (P >= n_ctx) continue;                        /* already fully known */
        if (n < cap) w[n] = (struct jb_window){ .start = s, .n_known = P, .n_tokens = n_ctx };
        n++;
        cur = end;
    }
    return n;
}
