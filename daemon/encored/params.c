/*
 * daemon/encored/params.c - a `submit` message as engine job params: every field checked
 * against its type, range and the daemon's limits before anything is allocated or queued.
 */
#include "encored.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABEL 256
#define MAX_LYRICS (256 * 1024)

static bool bad(char *code, char *why, size_t len, const char *c, const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));
static bool bad(char *code, char *why, size_t len, const char *c, const char *fmt, ...)
{
    snprintf(code, 32, "%s", c);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return false;
}

void submit_free(struct submit *s)
{
    free(s->artist);
    free(s->genre);
    free(s->lyrics);
    memset(s, 0, sizeof *s);
}

/* an optional number field: absent keeps *out; present must be finite and in [lo, hi] */
static bool num(const struct ep_msg *m,
                const char *key,
                double lo,
                double hi,
                double *out,
                char *code,
                char *why,
                size_t len)
{
    if (!ep_msg_has(m, key)) return true;
    double v;
    if (!ep_msg_get_double(m, key, &v) || !isfinite(v) || v < lo || v > hi)
        return bad(code, why, len, "invalid_arg", "%s must be a number in [%g, %g]", key, lo, hi);
    *out = v;
    return true;
}

static bool str(const struct ep_msg *m,
                const char *key,
                size_t max,
                char **out,
                char *code,
                char *why,
                size_t len)
{
    if (!ep_msg_has(m, key)) return true;
    *out = ep_msg_dup_str(m, key, max);
    if (!*out)
        return bad(code, why, len, "invalid_arg", "%s must be text of at most %zu bytes", key, max);
    return true;
}

bool submit_parse(const struct ep_msg *m, struct submit *s, char *code, char *why, size_t len)
{
    memset(s, 0, sizeof *s);
    jb_job_params_init(&s->p);
    s->rate                  = JB_SAMPLE_RATE;
    s->stream                = true;
    s->has_tag               = ep_msg_get_int(m, "tag", &s->tag);
    const struct limits *lim = &g_cfg.lim;

    char mode[16] = "";
    if (!ep_msg_get_strbuf(m, "mode", mode, sizeof mode))
        return bad(
          code, why, len, "invalid_arg", "mode must be primed, ancestral, continue or upsample");
    if (!strcmp(mode, "primed"))
        s->p.mode = JB_JOB_PRIMED;
    else if (!strcmp(mode, "ancestral"))
        s->p.mode = JB_JOB_ANCESTRAL;
    else if (!strcmp(mode, "continue"))
        s->p.mode = JB_JOB_CONTINUE;
    else if (!strcmp(mode, "upsample"))
        s->p.mode = JB_JOB_UPSAMPLE;
    else
        return bad(code,
                   why,
                   len,
                   "invalid_arg",
                   "unknown mode '%s' (primed, ancestral, continue, upsample)",
                   mode);

    char set[64] = "";
    s->set       = 0;
    if (ep_msg_has(m, "model_set")) {
        if (!ep_msg_get_strbuf(m, "model_set", set, sizeof set))
            return bad(code, why, len, "invalid_arg", "model_set must be short text");
        s->set = -1;
        for (int i = 0; i < g_cfg.n_sets; i++)
            if (!strcmp(g_cfg.sets[i].name, set)) s->set = i;
        if (s->set < 0) return bad(code, why, len, "not_found", "no model set '%s'", set);
    }

    double d;
    if (s->p.mode != JB_JOB_UPSAMPLE) {
        d = 0;
        if (!ep_msg_get_double(m, "seconds", &d) || !isfinite(d) || d <= 0 || d > lim->job_seconds)
            return bad(code,
                       why,
                       len,
                       "limit",
                       "seconds must be > 0 and at most %g (got %g)",
                       lim->job_seconds,
                       d);
        s->p.seconds = d;
    }
    if (!num(m, "total_seconds", 0, 36000, &s->p.total_seconds, code, why, len)) return false;
    if (!str(m, "artist", MAX_LABEL, &s->artist, code, why, len) ||
        !str(m, "genre", MAX_LABEL, &s->genre, code, why, len) ||
        !str(m, "lyrics", MAX_LYRICS, &s->lyrics, code, why, len))
        return false;
    s->p.artist = s->artist;
    s->p.genre  = s->genre;
    s->p.lyrics = s->lyrics;

    d = 0.99;
    if (!num(m, "temp", 1e-3, 100, &d, code, why, len)) return false;
    for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
        s->p.temp[L] = (float)d;
    static const char *lkeys[JB_JOB_MAX_LEVELS] = { "temp_level0", "temp_level1", "temp_level2" };
    for (int L = 0; L < JB_JOB_MAX_LEVELS; L++) {
        d = s->p.temp[L];
        if (!num(m, lkeys[L], 1e-3, 100, &d, code, why, len)) return false;
        s->p.temp[L] = (float)d;
    }
    d = 0;
    if (!num(m, "top_k", 0, 1 << 20, &d, code, why, len)) return false;
    s->p.top_k = (int)d;
    d          = 0;
    if (!num(m, "top_p", 0, 1, &d, code, why, len)) return false;
    s->p.top_p = (float)d;
    d          = 0;
    if (!num(m, "seed", 0, 9.007199254740992e15, &d, code, why, len)) return false;
    int64_t seed;
    s->p.seed = ep_msg_get_int(m, "seed", &seed) ? (uint64_t)seed : (uint64_t)d;
    d         = 1;
    if (!num(m, "candidates", 1, lim->candidates, &d, code, why, len)) return false;
    s->p.n_candidates = (int)d;
    d                 = 0;
    if (!num(m, "finest_level", 0, JB_JOB_MAX_LEVELS - 1, &d, code, why, len)) return false;
    s->p.finest_level = (int)d;
    d                 = JB_SAMPLE_RATE;
    if (!num(m, "rate", 8000, 192000, &d, code, why, len)) return false;
    s->rate = (int)d;
    if (ep_msg_has(m, "stream") && !ep_msg_get_bool(m, "stream", &s->stream))
        return bad(code, why, len, "invalid_arg", "stream must be a boolean");

    if (s->p.mode == JB_JOB_CONTINUE || s->p.mode == JB_JOB_UPSAMPLE) {
        if (!ep_msg_get_int(m, "take", &s->take_id) || s->take_id <= 0)
            return bad(code, why, len, "invalid_arg", "%s needs a take id", mode);
        d = -1;
        if (!num(m, "take_candidate", -1, JB_JOB_MAX_CANDIDATES - 1, &d, code, why, len))
            return false;
        s->p.take_candidate = (int)d;
        if (s->p.take_candidate < 0) s->p.n_candidates = 1;
    }
    if (s->p.mode == JB_JOB_PRIMED) {
        d = 0;
        if (!ep_msg_has(m, "riff_rate") || !num(m, "riff_rate", 8000, 192000, &d, code, why, len))
            return bad(code, why, len, "invalid_arg", "riff_rate must be 8000..192000 Hz");
        s->riff_rate = (int)d;
        d            = 1;
        if (!num(m, "riff_channels", 1, 8, &d, code, why, len)) return false;
        s->riff_channels = (int)d;
        if (!ep_msg_get_int(m, "riff_frames", &s->riff_frames) || s->riff_frames <= 0)
            return bad(code, why, len, "invalid_arg", "riff_frames must be > 0 (an empty riff)");
        if ((double)s->riff_frames > lim->riff_seconds * s->riff_rate)
            return bad(code,
                       why,
                       len,
                       "limit",
                       "the riff is %.1f s, the limit is %g s",
                       (double)s->riff_frames / s->riff_rate,
                       lim->riff_seconds);
    }
    return true;
}
