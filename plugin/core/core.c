/*
 * plugin/core/core.c - capture, timeline placement, playback and mix (see core.h).
 *
 * Threads: fields marked RT are touched only by core_set_time/core_process/core_status (and by
 * core_restore, which hosts never run concurrently with them). Everything the other side sees
 * goes through the rings or the atomics below.
 */
#include "core.h"
#include "ring.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MSG_RING_BYTES 8192
#define COPY_PER_RUN 65536 /* riff frames copied from the history per process call */
#define MAX_GAP 16384      /* a forward jump up to this is missed cycles, not a locate */

struct core_take_set {
    int n_cand;
    int64_t n_frames;
    int64_t start;
    float *audio[CORE_LEVELS][CORE_MAX_CANDIDATES]; /* level 0 = final quality */
    _Atomic int64_t len[CORE_LEVELS][CORE_MAX_CANDIDATES];
    _Atomic bool complete;
};

enum cap_state { CAP_IDLE = 0, CAP_RECORDING, CAP_WAIT_END, CAP_COPYING };

struct core {
    struct core_config cfg;

    /* rings: RT -> non-RT messages, non-RT -> RT take sets */
    struct ring to_nrt, to_rt;
    unsigned char to_nrt_buf[MSG_RING_BYTES], to_rt_buf[MSG_RING_BYTES];

    /* RT: timeline */
    bool host_time; /* the last core_set_time had a position */
    bool rolling;
    int64_t now; /* timeline frame of the next sample */
    struct tl_grid grid;

    /* RT: capture history, mono, indexed by timeline frame modulo hist_cap */
    float *hist;
    int64_t hist_cap;
    int64_t hist_start, hist_end; /* contiguous frames [start, end) */

    /* RT: capture state */
    enum cap_state cap;
    int64_t cap_start, cap_end, cap_copied;
    bool riff_pending; /* a finished span waits for the non-RT side to release the riff */
    bool hist_frozen;  /* the timeline jumped during a copy: keep the source intact */

    /* riff staging buffer: written by RT while copying, read by non-RT after CORE_MSG_RIFF */
    float *riff;
    int64_t riff_cap;
    _Atomic int64_t riff_start, riff_frames;
    _Atomic bool riff_locked; /* set by RT on publish, cleared by core_riff_release */
    _Atomic int64_t riff_end_pub;

    /* RT: edges, playback */
    struct core_controls prev;
    struct core_take_set *takes;
    int64_t takes_offset; /* free-running clock: plays late takes from when they arrived */
    double export_waited_s;

    /* non-RT -> RT feedback */
    _Atomic int req_state;
    _Atomic float progress, eta_s;
    _Atomic uint32_t dropped, export_waited_ms;
    _Atomic bool export_timed_out;
    _Atomic int cap_pub;
    _Atomic int n_cand_pub;
};

/* ---------------------------------------------------------------------------------------- */

static void *alloc_touched(size_t n_floats)
{
    float *p = calloc(n_floats ? n_floats : 1, sizeof(float));
    if (p) /* calloc may hand out untouched zero pages: write them now, not in run() */
        memset(p, 0, n_floats * sizeof(float));
    return p;
}

struct core *core_init(const struct core_config *cfg)
{
    if (!cfg || !(cfg->rate >= 8000.0 && cfg->rate <= 768000.0) || cfg->max_block < 1 ||
        cfg->max_block > CORE_MAX_BLOCK || !(cfg->riff_max_s >= 1.0 && cfg->riff_max_s <= 120.0) ||
        !(cfg->export_wait_s >= 0.0 && cfg->export_wait_s <= 3600.0))
        return NULL;
    struct core *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cfg      = *cfg;
    c->riff_cap = (int64_t)ceil(cfg->riff_max_s * cfg->rate);
    /* slack: the copy into the riff buffer takes riff/COPY_PER_RUN calls of up to max_block */
    c->hist_cap = c->riff_cap + c->riff_cap / 4 + 2 * (int64_t)cfg->max_block + COPY_PER_RUN;
    c->hist     = alloc_touched((size_t)c->hist_cap);
    c->riff     = alloc_touched((size_t)c->riff_cap);
    if (!c->hist || !c->riff) {
        core_free(c);
        return NULL;
    }
    ring_init(&c->to_nrt, c->to_nrt_buf, MSG_RING_BYTES);
    ring_init(&c->to_rt, c->to_rt_buf, MSG_RING_BYTES);
    c->rolling        = true;
    c->prev.candidate = 1;
    atomic_init(&c->req_state, REQ_IDLE);
    atomic_init(&c->progress, 0.0f);
    atomic_init(&c->eta_s, -1.0f);
    atomic_init(&c->riff_locked, false);
    atomic_init(&c->riff_end_pub, -1);
    atomic_init(&c->riff_start, 0);
    atomic_init(&c->riff_frames, 0);
    return c;
}

void core_free(struct core *c)
{
    if (!c) return;
    struct core_msg m;
    while (core_poll(c, &m))
        if (m.type == CORE_MSG_RETIRED) core_takes_free(m.takes);
    struct core_take_set *t;
    while (ring_read(&c->to_rt, &t, sizeof t))
        core_takes_free(t);
    core_takes_free(c->takes);
    free(c->hist);
    free(c->riff);
    free(c);
}

/* ---------------------------------------------------------------------------------------- */
/* realtime side                                                                             */

static void send(struct core *c, const struct core_msg *m)
{
    if (!ring_write(&c->to_nrt, m, sizeof *m))
        atomic_fetch_add_explicit(&c->dropped, 1, memory_order_relaxed);
}

/* A capture span is known: clamp it to the history and start copying. */
static void capture_finish(struct core *c, int64_t start, int64_t end)
{
    int64_t lo = c->hist_end - c->hist_cap + c->cfg.max_block + COPY_PER_RUN;
    if (start < c->hist_start) start = c->hist_start;
    if (start < lo) start = lo;
    if (end > c->hist_end) end = c->hist_end;
    if (end - start > c->riff_cap) start = end - c->riff_cap;
    if (end <= start) {
        c->cap = CAP_IDLE;
        return;
    }
    c->cap_start    = start;
    c->cap_end      = end;
    c->cap_copied   = 0;
    c->cap          = CAP_COPYING;
    c->riff_pending = true;
}

static int64_t hist_index(const struct core *c, int64_t frame)
{
    int64_t i = frame % c->hist_cap;
    return i < 0 ? i + c->hist_cap : i;
}

/* Copies part of the span into the riff buffer; publishes it when done. */
static void capture_copy(struct core *c)
{
    if (c->cap != CAP_COPYING) return;
    if (c->cap_copied == 0 && atomic_load_explicit(&c->riff_locked, memory_order_acquire))
        return; /* the non-RT side still reads the previous riff */
    int64_t total = c->cap_end - c->cap_start;
    int64_t n     = total - c->cap_copied;
    if (n > COPY_PER_RUN) n = COPY_PER_RUN;
    for (int64_t k = 0; k < n;) {
        int64_t f   = c->cap_start + c->cap_copied + k;
        int64_t i   = hist_index(c, f);
        int64_t run = c->hist_cap - i;
        if (run > n - k) run = n - k;
        memcpy(c->riff + c->cap_copied + k, c->hist + i, (size_t)run * sizeof(float));
        k += run;
    }
    c->cap_copied += n;
    if (c->cap_copied < total) return;
    atomic_store_explicit(&c->riff_start, c->cap_start, memory_order_relaxed);
    atomic_store_explicit(&c->riff_frames, total, memory_order_relaxed);
    atomic_store_explicit(&c->riff_end_pub, c->cap_end, memory_order_relaxed);
    atomic_store_explicit(&c->riff_locked, true, memory_order_release);
    struct core_msg m = { .type = CORE_MSG_RIFF };
    send(c, &m);
    c->cap          = CAP_IDLE;
    c->riff_pending = false;
    c->hist_frozen  = false;
}

/* The timeline jumped or stopped: a capture in progress ends where the history ends. */
static void timeline_break(struct core *c, int64_t new_frame, bool rolling)
{
    bool busy = c->cap == CAP_RECORDING || c->cap == CAP_WAIT_END;
    if (busy && c->rolling && c->hist_end > c->hist_start) {
        int64_t end = c->cap == CAP_WAIT_END && c->cap_end < c->hist_end ? c->cap_end : c->hist_end;
        capture_finish(c, c->cap_start, end);
    } else if (busy && rolling) {
        /* armed while stopped: recording starts at the bar line where the transport starts */
        c->cap_start = tl_snap_nearest(&c->grid, new_frame);
    }
    if (c->cap == CAP_COPYING) capture_copy(c);
    c->hist_frozen = c->cap == CAP_COPYING; /* new frames would land on the copy's source */
    c->hist_start  = new_frame;
    c->hist_end    = new_frame;
}

void core_set_time(struct core *c, const struct tl_pos *pos)
{
    if (!pos || !pos->has_frame) {
        if (c->host_time) { /* host stopped sending time: our own clock from here */
            c->host_time = false;
            c->rolling   = true;
        }
        return;
    }
    bool rolling = pos->speed > 0.0;
    int64_t gap  = pos->frame - c->now;
    if (c->host_time && rolling && c->rolling && gap > 0 && gap <= MAX_GAP && !c->hist_frozen) {
        /* the host skipped cycles (an xrun) but the transport rolled on: the timeline is
         * continuous, the missed input is silence */
        for (int64_t f = c->now; f < pos->frame; f++)
            c->hist[hist_index(c, f)] = 0.0f;
        if (c->hist_end == c->now) c->hist_end = pos->frame;
        c->now = pos->frame;
    } else if (c->host_time && rolling && c->rolling && gap < 0 && -gap <= c->cfg.max_block &&
               !c->hist_frozen) {
        /* JACK under xruns may report the same frame for two cycles: not a locate */
        if (c->hist_end == c->now) c->hist_end = pos->frame;
        c->now = pos->frame;
    }
    struct tl_grid g = tl_grid_from_pos(pos, c->cfg.rate);
    bool broke       = !c->host_time || pos->frame != c->now || rolling != c->rolling;
    /* Keep one grid while the transport rolls on: hosts round the beat position (JACK to
     * whole ticks), and a JACK timebase master that misses a cycle leaves a stale BBT beside
     * a fresh frame, so re-deriving it every cycle would move bar lines. A locate, a start,
     * or a tempo or metre change takes the new one. */
    if (g.valid && (broke || !c->grid.valid ||
                    fabs(g.frames_per_bar - c->grid.frames_per_bar) > 1e-9 * g.frames_per_bar))
        c->grid = g;
    if (broke) timeline_break(c, pos->frame, rolling);
    c->host_time = true;
    c->rolling   = rolling;
    c->now       = pos->frame;
}

static void handle_controls(struct core *c, const struct core_controls *ctl)
{
    struct core_controls *p = &c->prev;
    if (ctl->record && !p->record && c->cap != CAP_COPYING) {
        c->cap       = CAP_RECORDING;
        c->cap_start = tl_snap_nearest(&c->grid, c->now);
    } else if (!ctl->record && p->record && c->cap == CAP_RECORDING) {
        c->cap_end = tl_snap_nearest(&c->grid, c->now);
        c->cap     = CAP_WAIT_END;
    }
    if (ctl->capture_last && !p->capture_last && c->cap != CAP_COPYING) {
        int bars     = ctl->capture_bars < 1 ? 1 : ctl->capture_bars > 64 ? 64 : ctl->capture_bars;
        c->cap_end   = tl_snap_nearest(&c->grid, c->now);
        c->cap_start = c->cap_end - tl_bars_frames(&c->grid, bars, c->cfg.rate);
        c->cap       = CAP_WAIT_END;
    }
    if (c->cap == CAP_WAIT_END && c->hist_end >= c->cap_end)
        capture_finish(c, c->cap_start, c->cap_end);
    if (ctl->request && !p->request) {
        struct core_msg m = { .type = CORE_MSG_REQUEST, .params = ctl->params };
        if (m.params.add_bars > 0)
            m.params.seconds =
              (double)tl_bars_frames(&c->grid, m.params.add_bars, c->cfg.rate) / c->cfg.rate;
        else
            m.params.seconds = m.params.add_seconds;
        send(c, &m);
    }
    if (ctl->extend && !p->extend) {
        struct core_msg m = { .type = CORE_MSG_EXTEND, .params = ctl->params };
        m.candidate       = ctl->candidate;
        m.params.seconds =
          m.params.add_bars > 0
            ? (double)tl_bars_frames(&c->grid, m.params.add_bars, c->cfg.rate) / c->cfg.rate
            : m.params.add_seconds;
        send(c, &m);
    }
    if (ctl->upsample && !p->upsample) {
        struct core_msg m = { .type = CORE_MSG_UPSAMPLE, .params = ctl->params };
        m.candidate       = ctl->candidate;
        send(c, &m);
    }
    if (ctl->cancel && !p->cancel) {
        struct core_msg m = { .type = CORE_MSG_CANCEL };
        send(c, &m);
    }
    *p = *ctl;
}

static void take_new_sets(struct core *c)
{
    struct core_take_set *t;
    /* take a new set only when the old one can be handed back at once */
    while (ring_write_space(&c->to_nrt) >= sizeof(struct core_msg) &&
           ring_read(&c->to_rt, &t, sizeof t)) {
        if (c->takes) {
            struct core_msg m = { .type = CORE_MSG_RETIRED, .takes = c->takes };
            ring_write(&c->to_nrt, &m, sizeof m);
        }
        c->takes        = t;
        c->takes_offset = 0;
        if (t && !c->host_time && t->start < c->now) c->takes_offset = c->now - t->start;
    }
}

/* The finest level that has arrived at idx; in export, waits (bounded) for the final level. */
static float take_sample(struct core *c,
                         struct core_take_set *t,
                         int cand,
                         int64_t idx,
                         bool freewheel)
{
    if (freewheel && idx >= atomic_load_explicit(&t->len[0][cand], memory_order_acquire) &&
        !atomic_load_explicit(&t->complete, memory_order_acquire) &&
        c->export_waited_s < c->cfg.export_wait_s) {
        struct timespec ts = { 0, 1000000 };
        while (c->export_waited_s < c->cfg.export_wait_s &&
               !atomic_load_explicit(&t->complete, memory_order_acquire) &&
               idx >= atomic_load_explicit(&t->len[0][cand], memory_order_acquire)) {
            nanosleep(&ts, NULL);
            c->export_waited_s += 0.001;
        }
        atomic_store_explicit(
          &c->export_waited_ms, (uint32_t)(c->export_waited_s * 1000.0), memory_order_relaxed);
        if (c->export_waited_s >= c->cfg.export_wait_s)
            atomic_store_explicit(&c->export_timed_out, true, memory_order_relaxed);
    }
    for (int lv = 0; lv < CORE_LEVELS; lv++)
        if (idx < atomic_load_explicit(&t->len[lv][cand], memory_order_acquire))
            return t->audio[lv][cand][idx];
    return 0.0f;
}

void core_process(struct core *c,
                  const struct core_controls *ctl,
                  const float *in_l,
                  const float *in_r,
                  float *out_l,
                  float *out_r,
                  uint32_t n)
{
    if (n > c->cfg.max_block)
        n = c->cfg.max_block; /* host broke its promise: never write past our buffers */
    take_new_sets(c);
    handle_controls(c, ctl);
    capture_copy(c);

    float mix = ctl->mix;
    if (!(mix >= 0.0f)) mix = 0.0f;
    if (mix > 1.0f) mix = 1.0f;
    float dry = mix <= 0.5f ? 1.0f : 2.0f * (1.0f - mix);
    float wet = mix >= 0.5f ? 1.0f : 2.0f * mix;

    struct core_take_set *t = c->takes;
    int cand                = ctl->candidate - 1;
    if (t && (cand < 0 || cand >= t->n_cand)) cand = 0;
    if (!ctl->freewheel) c->export_waited_s = 0.0; /* the wait budget is per export */

    for (uint32_t i = 0; i < n; i++) {
        float l    = in_l ? in_l[i] : in_r ? in_r[i] : 0.0f;
        float r    = in_r ? in_r[i] : l;
        float mono = 0.5f * (l + r); /* Jukebox is mono */
        float w    = 0.0f;
        if (c->rolling) {
            int64_t f = c->now;
            if (!c->hist_frozen) {
                c->hist[hist_index(c, f)] = mono;
                if (c->hist_end != f) /* first frame after a break */
                    c->hist_start = f;
                c->hist_end = f + 1;
                if (c->hist_end - c->hist_start > c->hist_cap)
                    c->hist_start = c->hist_end - c->hist_cap;
            }
            if (t) {
                int64_t idx = f - t->start + c->takes_offset;
                if (idx >= 0 && idx < t->n_frames) w = take_sample(c, t, cand, idx, ctl->freewheel);
            }
            c->now++;
        }
        if (out_l) out_l[i] = dry * l + wet * w;
        if (out_r) out_r[i] = dry * r + wet * w;
    }
    if (c->cap == CAP_WAIT_END && c->hist_end >= c->cap_end)
        capture_finish(c, c->cap_start, c->cap_end);
    atomic_store_explicit(&c->cap_pub, (int)c->cap, memory_order_relaxed);
    atomic_store_explicit(&c->n_cand_pub, t ? t->n_cand : 0, memory_order_relaxed);
}

void core_status(struct core *c, struct core_status *st)
{
    st->req_state        = (enum req_state)atomic_load(&c->req_state);
    st->progress         = atomic_load(&c->progress);
    st->eta_s            = atomic_load(&c->eta_s);
    st->capture          = atomic_load(&c->cap_pub);
    st->riff_start       = atomic_load(&c->riff_start);
    st->riff_frames      = atomic_load(&c->riff_frames);
    st->n_candidates     = atomic_load(&c->n_cand_pub);
    st->dropped          = atomic_load(&c->dropped);
    st->export_waited_ms = atomic_load(&c->export_waited_ms);
    st->export_timed_out = atomic_load(&c->export_timed_out);
}

int64_t core_now(const struct core *c)
{
    return c->now;
}

/* ---------------------------------------------------------------------------------------- */
/* non-realtime side                                                                         */

bool core_poll(struct core *c, struct core_msg *msg)
{
    return ring_read(&c->to_nrt, msg, sizeof *msg);
}

void core_riff_view(struct core *c, const float **data, int64_t *n_frames, int64_t *start)
{
    bool locked = atomic_load_explicit(&c->riff_locked, memory_order_acquire);
    *data       = c->riff;
    *n_frames   = locked ? atomic_load(&c->riff_frames) : 0;
    *start      = atomic_load(&c->riff_start);
}

void core_riff_release(struct core *c)
{
    atomic_store_explicit(&c->riff_locked, false, memory_order_release);
}

int64_t core_riff_end(const struct core *c)
{
    return atomic_load(&((struct core *)c)->riff_end_pub);
}

void core_set_request(struct core *c, enum req_state s, float progress, float eta_s)
{
    atomic_store(&c->progress, progress);
    atomic_store(&c->eta_s, eta_s);
    atomic_store(&c->req_state, (int)s);
}

bool core_publish_takes(struct core *c, struct core_take_set *t)
{
    return ring_write(&c->to_rt, &t, sizeof t);
}

bool core_restore(struct core *c,
                  const float *riff,
                  int64_t n,
                  int64_t start,
                  struct core_take_set *t)
{
    if (n < 0 || n > c->riff_cap || (n > 0 && !riff)) return false;
    if (n > 0) memcpy(c->riff, riff, (size_t)n * sizeof(float));
    atomic_store(&c->riff_start, start);
    atomic_store(&c->riff_frames, n);
    atomic_store(&c->riff_end_pub, n > 0 ? start + n : -1);
    core_takes_free(c->takes);
    c->takes        = t;
    c->takes_offset = 0;
    atomic_store(&c->n_cand_pub, t ? t->n_cand : 0);
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* take sets                                                                                 */

struct core_take_set *core_takes_new(int n_cand, int64_t n_frames, int64_t start)
{
    if (n_cand < 1 || n_cand > CORE_MAX_CANDIDATES || n_frames < 1 || n_frames > (int64_t)1 << 32)
        return NULL;
    struct core_take_set *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n_cand   = n_cand;
    t->n_frames = n_frames;
    t->start    = start;
    for (int lv = 0; lv < CORE_LEVELS; lv++)
        for (int k = 0; k < n_cand; k++) {
            t->audio[lv][k] = alloc_touched((size_t)n_frames);
            if (!t->audio[lv][k]) {
                core_takes_free(t);
                return NULL;
            }
            atomic_init(&t->len[lv][k], 0);
        }
    atomic_init(&t->complete, false);
    return t;
}

void core_takes_free(struct core_take_set *t)
{
    if (!t) return;
    for (int lv = 0; lv < CORE_LEVELS; lv++)
        for (int k = 0; k < CORE_MAX_CANDIDATES; k++)
            free(t->audio[lv][k]);
    free(t);
}

bool core_takes_write(struct core_take_set *t,
                      int cand,
                      int level,
                      int64_t offset,
                      const float *data,
                      int64_t n)
{
    if (!t || cand < 0 || cand >= t->n_cand || level < 0 || level >= CORE_LEVELS || offset < 0 ||
        n < 0 || (n > 0 && !data))
        return false;
    _Atomic int64_t *len = &t->len[level][cand];
    float *buf           = t->audio[level][cand];
    int64_t have         = atomic_load_explicit(len, memory_order_relaxed);
    if (offset > t->n_frames) return false;
    if (offset + n > t->n_frames)
        n = t->n_frames - offset; /* the daemon may round up to whole tokens: keep what fits */
    if (offset + n <= have)
        return true; /* already there: never rewrite what the realtime side may be reading */
    int64_t skip = have > offset ? have - offset : 0;
    if (offset > have) memset(buf + have, 0, (size_t)(offset - have) * sizeof(float));
    memcpy(buf + offset + skip, data + skip, (size_t)(n - skip) * sizeof(float));
    atomic_store_explicit(len, offset + n, memory_order_release);
    return true;
}

void core_takes_set_complete(struct core_take_set *t)
{
    if (t) atomic_store_explicit(&t->complete, true, memory_order_release);
}

bool core_takes_complete(const struct core_take_set *t)
{
    return t && atomic_load_explicit(&((struct core_take_set *)t)->complete, memory_order_acquire);
}

int core_takes_count(const struct core_take_set *t)
{
    return t ? t->n_cand : 0;
}

int64_t core_takes_frames(const struct core_take_set *t)
{
    return t ? t->n_frames : 0;
}

int64_t core_takes_start(const struct core_take_set *t)
{
    return t ? t->start : 0;
}

int64_t core_takes_available(const struct core_take_set *t, int cand, int level)
{
    if (!t || cand < 0 || cand >= t->n_cand || level < 0 || level >= CORE_LEVELS) return 0;
    return atomic_load_explicit(&((struct core_take_set *)t)->len[level][cand],
                                memory_order_acquire);
}

void core_takes_render(const struct core_take_set *t, int cand, float *out)
{
    int64_t have[CORE_LEVELS];
    for (int lv = 0; lv < CORE_LEVELS; lv++)
        have[lv] = core_takes_available(t, cand, lv);
    for (int64_t i = 0; i < t->n_frames; i++) {
        out[i] = 0.0f;
        for (int lv = 0; lv < CORE_LEVELS; lv++)
            if (i < have[lv]) {
                out[i] = t->audio[lv][cand][i];
                break;
            }
    }
}
