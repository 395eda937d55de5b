/*
 * test_plugin_core - the plugin's host-agnostic core: bar snapping, capture (record toggle and
 * "last N bars"), timeline placement of a continuation, request states, the SPSC ring under a
 * producer and a consumer thread, and restore of riff + takes.
 */
#include "core.h"
#include "curated.h"
#include "request.h"
#include "ring.h"
#include "timeline.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void test_snapping(void)
{
    /* 120 BPM 4/4 at 48 kHz: a bar is 96000 frames; frame 100000 is bar 1, beat 0.0833 */
    struct tl_pos p  = { .has_frame     = true,
                         .has_bbt       = true,
                         .frame         = 100000,
                         .speed         = 1,
                         .bpm           = 120,
                         .beats_per_bar = 4,
                         .bar           = 1,
                         .bar_beat      = 4000.0 / 24000.0 };
    struct tl_grid g = tl_grid_from_pos(&p, 48000);
    CHECK(g.valid);
    CHECK(fabs(g.frames_per_bar - 96000) < 1e-9);
    CHECK(tl_snap_nearest(&g, 100000) == 96000);
    CHECK(tl_snap_nearest(&g, 150000) == 192000);
    CHECK(tl_snap_floor(&g, 191999) == 96000);
    CHECK(tl_snap_floor(&g, 192000) == 192000);
    CHECK(tl_snap_ceil(&g, 96001) == 192000);
    CHECK(tl_snap_ceil(&g, 96000) == 96000);
    CHECK(tl_bars_frames(&g, 3, 48000) == 288000);
    /* 3/4 at 90 BPM, 44.1 kHz: frames per bar = 3 * 44100 * 60 / 90 = 88200 */
    p.bpm = 90, p.beats_per_bar = 3, p.frame = 1000, p.bar_beat = 0;
    g = tl_grid_from_pos(&p, 44100);
    CHECK(tl_snap_nearest(&g, 1000 + 88200 * 5 + 40000) == 1000 + 88200 * 5);
    CHECK(tl_snap_nearest(&g, 1000 + 88200 * 5 + 50000) == 1000 + 88200 * 6);
    /* no tempo: no grid, no snapping, 2 s per bar */
    p.has_bbt = false;
    g         = tl_grid_from_pos(&p, 48000);
    CHECK(!g.valid);
    CHECK(tl_snap_nearest(&g, 12345) == 12345);
    CHECK(tl_bars_frames(&g, 2, 48000) == 192000);
    p.has_bbt = true, p.bpm = 0;
    CHECK(!tl_grid_from_pos(&p, 48000).valid);
}

static void test_request_states(void)
{
    CHECK(req_next(REQ_IDLE, REQ_EV_SUBMIT) == REQ_CONNECTING);
    CHECK(req_next(REQ_CONNECTING, REQ_EV_CONNECTED) == REQ_QUEUED);
    CHECK(req_next(REQ_QUEUED, REQ_EV_STARTED) == REQ_GENERATING);
    CHECK(req_next(REQ_GENERATING, REQ_EV_AUDIO) == REQ_STREAMING);
    CHECK(req_next(REQ_STREAMING, REQ_EV_FINISHED) == REQ_DONE);
    CHECK(req_next(REQ_DONE, REQ_EV_SUBMIT) == REQ_CONNECTING);
    CHECK(req_next(REQ_ERROR, REQ_EV_SUBMIT) == REQ_CONNECTING); /* retry */
    CHECK(req_next(REQ_STREAMING, REQ_EV_SUBMIT) == -1);         /* one job at a time */
    CHECK(req_next(REQ_CONNECTING, REQ_EV_FAILED) == REQ_ERROR);
    CHECK(req_next(REQ_STREAMING, REQ_EV_FAILED) == REQ_ERROR);
    CHECK(req_next(REQ_IDLE, REQ_EV_FAILED) == -1);
    CHECK(req_next(REQ_QUEUED, REQ_EV_CANCEL) == REQ_IDLE);
    CHECK(req_next(REQ_DONE, REQ_EV_CANCEL) == -1);
    CHECK(req_next((enum req_state)99, REQ_EV_SUBMIT) == -1);
    CHECK(strcmp(req_state_name(REQ_STREAMING), "streaming") == 0);
    CHECK(curated_n_artists >= 40 && curated_n_genres >= 20);
    CHECK(curated_artist(0) == NULL && curated_artist(1) &&
          !strcmp(curated_artist(1), "Alan Jackson"));
    CHECK(curated_artist((float)curated_n_artists + 1) == NULL && curated_genre(NAN) == NULL);
}

/* A host: runs blocks of varying size with time:Position at every block start. */
struct host {
    struct core *c;
    double rate;
    int64_t frame;
    double bpm;
    bool rolling, send_time;
    float *in, *out_l, *out_r;
    int64_t len, pos; /* pos = index into in/out (wall samples) */
};

static void host_run(struct host *h, struct core_controls *ctl, int64_t n_total)
{
    static const uint32_t sizes[] = { 1, 7, 64, 333, 512, 1000, 4096, 8192, 129 };
    int k                         = 0;
    while (n_total > 0) {
        uint32_t n = sizes[k++ % 9];
        if (n > n_total) n = (uint32_t)n_total;
        if (h->send_time) {
            double spb      = h->rate * 60.0 / h->bpm;
            double beat     = (double)h->frame / spb;
            struct tl_pos p = { .has_frame     = true,
                                .has_bbt       = true,
                                .frame         = h->frame,
                                .speed         = h->rolling ? 1 : 0,
                                .bpm           = h->bpm,
                                .beats_per_bar = 4,
                                .bar           = (int64_t)(beat / 4),
                                .bar_beat      = fmod(beat, 4.0) };
            core_set_time(h->c, &p);
        }
        core_process(
          h->c, ctl, h->in + h->pos, h->in + h->pos, h->out_l + h->pos, h->out_r + h->pos, n);
        ctl->request = ctl->capture_last = false; /* triggers: one block */
        h->pos += n;
        if (h->rolling) h->frame += n;
        n_total -= n;
    }
}

static int64_t first_nonzero(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return i;
    return -1;
}

/* Record toggle with host tempo: start and end snap to bar lines; the riff is exactly the
 * input over those frames (mono downmix of identical channels = the input). The continuation
 * then plays from the riff's end frame. */
static void test_capture_and_placement(double rate)
{
    struct core_config cfg = {
        .rate = rate, .max_block = 8192, .riff_max_s = 20, .export_wait_s = 0
    };
    struct core *c = core_init(&cfg);
    CHECK(c != NULL);
    if (!c) return;
    int64_t bar   = (int64_t)llround(rate * 2.0); /* 120 BPM 4/4 */
    struct host h = {
        .c = c, .rate = rate, .frame = 0, .bpm = 120, .rolling = true, .send_time = true
    };
    h.len   = 10 * bar;
    h.in    = calloc((size_t)h.len, sizeof(float));
    h.out_l = calloc((size_t)h.len, sizeof(float));
    h.out_r = calloc((size_t)h.len, sizeof(float));
    for (int64_t i = 0; i < h.len; i++)
        h.in[i] = (float)((i % 1000) + 1) / 1000.0f; /* never zero: content identifies frame */
    struct core_controls ctl = { .capture_bars = 2, .candidate = 1, .mix = 0.5f };
    /* press record a bit after bar 1 and release a bit before bar 3 */
    host_run(&h, &ctl, bar + 100);
    ctl.record = true;
    host_run(&h, &ctl, 2 * bar - 200);
    ctl.record = false;
    host_run(&h, &ctl, 200 + 10);
    for (int k = 0; k < 8; k++) /* the riff is copied out of the history in pieces */
        host_run(&h, &ctl, 1);
    struct core_msg m;
    bool got = false;
    while (core_poll(c, &m))
        got |= m.type == CORE_MSG_RIFF;
    CHECK(got);
    const float *riff;
    int64_t n, start;
    core_riff_view(c, &riff, &n, &start);
    CHECK(start == bar);
    CHECK(n == 2 * bar);
    CHECK(core_riff_end(c) == 3 * bar);
    bool same = n == 2 * bar;
    for (int64_t i = 0; same && i < n; i++)
        same = riff[i] == h.in[start + i];
    CHECK(same);
    core_riff_release(c);

    /* a 1-candidate take of 1 bar placed at the riff end; locate to bar 0 and play through */
    struct core_take_set *t = core_takes_new(2, bar, core_riff_end(c));
    float *audio            = malloc(sizeof(float) * (size_t)bar);
    for (int64_t i = 0; i < bar; i++)
        audio[i] = 0.25f;
    CHECK(core_takes_write(t, 1, 2, 0, audio, bar));
    CHECK(core_publish_takes(c, t));
    memset(h.in, 0, sizeof(float) * (size_t)h.len);
    h.pos = 0, h.frame = 0;
    ctl.candidate = 2;
    ctl.mix       = 1.0f;
    host_run(&h, &ctl, 5 * bar);
    CHECK(first_nonzero(h.out_l, 5 * bar) == 3 * bar);
    CHECK(first_nonzero(h.out_r + 3 * bar + bar, 2 * bar) == -1); /* ends after one bar */
    CHECK(h.out_l[3 * bar] == 0.25f && h.out_r[4 * bar - 1] == 0.25f);
    /* refined audio replaces the preview where it has arrived */
    for (int64_t i = 0; i < bar / 2; i++)
        audio[i] = 0.5f;
    CHECK(core_takes_write(t, 1, 0, 0, audio, bar / 2));
    h.pos = 0, h.frame = 0;
    host_run(&h, &ctl, 5 * bar);
    CHECK(h.out_l[3 * bar] == 0.5f && h.out_l[3 * bar + bar / 2 - 1] == 0.5f);
    CHECK(h.out_l[3 * bar + bar / 2] == 0.25f);
    /* candidate 1 is silent so far; mix 0 is dry only */
    ctl.candidate = 1;
    h.pos = 0, h.frame = 0;
    host_run(&h, &ctl, 5 * bar);
    CHECK(first_nonzero(h.out_l, 5 * bar) == -1);
    /* transport stopped: nothing plays */
    ctl.candidate = 2;
    h.pos = 0, h.frame = 3 * bar, h.rolling = false;
    host_run(&h, &ctl, bar);
    CHECK(first_nonzero(h.out_l, bar) == -1);

    /* "last 2 bars" pressed just after bar 8: the riff is bars 6..8 */
    h.rolling = true, h.pos = 0, h.frame = 0;
    for (int64_t i = 0; i < h.len; i++)
        h.in[i] = (float)((i % 777) + 1);
    host_run(&h, &ctl, 8 * bar + 50);
    ctl.capture_last = true;
    host_run(&h, &ctl, 100);
    for (int k = 0; k < 8; k++)
        host_run(&h, &ctl, 1);
    got = false;
    while (core_poll(c, &m)) {
        got |= m.type == CORE_MSG_RIFF;
        if (m.type == CORE_MSG_RETIRED) core_takes_free(m.takes);
    }
    CHECK(got);
    core_riff_view(c, &riff, &n, &start);
    CHECK(start == 6 * bar && n == 2 * bar);
    CHECK(n == 2 * bar && riff[0] == h.in[6 * bar] && riff[n - 1] == h.in[8 * bar - 1]);
    core_riff_release(c);
    struct core_status st;
    core_status(c, &st);
    CHECK(st.n_candidates == 2 && st.dropped == 0);
    free(audio);
    free(h.in), free(h.out_l), free(h.out_r);
    core_free(c);
}

/* The host skips cycles (xruns) while the transport rolls on: capture continues over the gap
 * (silence there); a big jump is a locate and ends the capture where the history ends. */
static void test_xrun_gap(void)
{
    struct core_config cfg = { .rate = 48000, .max_block = 512, .riff_max_s = 10 };
    struct core *c         = core_init(&cfg);
    int64_t bar            = 96000;
    float in[512], out[512];
    for (int i = 0; i < 512; i++)
        in[i] = 1.0f;
    struct core_controls ctl = { .candidate = 1, .mix = 0.5f };
    int64_t frame            = 0;
    for (int k = 0; frame < 4 * bar; k++) {
        ctl.record = frame >= bar && frame < 3 * bar;
        if (k == 300) frame += 1024; /* two missed cycles */
        double beat     = (double)frame / 24000.0;
        struct tl_pos p = { .has_frame     = true,
                            .has_bbt       = true,
                            .frame         = frame,
                            .speed         = 1,
                            .bpm           = 120,
                            .beats_per_bar = 4,
                            .bar_beat      = fmod(beat, 4.0) };
        core_set_time(c, &p);
        core_process(c, &ctl, in, in, out, out, 512);
        frame += 512;
    }
    struct core_msg m;
    bool got = false;
    while (core_poll(c, &m))
        got |= m.type == CORE_MSG_RIFF;
    CHECK(got);
    const float *riff;
    int64_t n, start;
    core_riff_view(c, &riff, &n, &start);
    CHECK(start == bar && n == 2 * bar);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++)
        zeros += riff[i] == 0.0f;
    CHECK(zeros == 1024);
    core_riff_release(c);
    core_free(c);
}

/* Without host time the core runs its own clock; a request carries the resolved seconds. */
static void test_free_running(void)
{
    struct core_config cfg   = { .rate = 48000, .max_block = 256, .riff_max_s = 5 };
    struct core *c           = core_init(&cfg);
    struct host h            = { .c = c, .rate = 48000, .rolling = true, .send_time = false };
    h.len                    = 48000;
    h.in                     = calloc(48000, sizeof(float));
    h.out_l                  = calloc(48000, sizeof(float));
    h.out_r                  = calloc(48000, sizeof(float));
    struct core_controls ctl = { .candidate = 1, .mix = 0.5f, .capture_bars = 1 };
    ctl.params.add_bars      = 2;
    for (int k = 0; k < 100; k++) { /* blocks of <= 256 */
        uint32_t n = 1 + (uint32_t)(k * 37) % 256;
        core_process(c, &ctl, h.in, NULL, h.out_l, NULL, n);
    }
    ctl.request = true;
    core_process(c, &ctl, h.in, NULL, h.out_l, NULL, 10);
    struct core_msg m;
    bool got = false;
    while (core_poll(c, &m))
        if (m.type == CORE_MSG_REQUEST) got = fabs(m.params.seconds - 4.0) < 1e-9;
    CHECK(got);
    CHECK(core_init(&(struct core_config){ .rate = 48000, .max_block = 0, .riff_max_s = 5 }) ==
          NULL);
    CHECK(core_init(&(struct core_config){ .rate = 1, .max_block = 64, .riff_max_s = 5 }) == NULL);
    free(h.in), free(h.out_l), free(h.out_r);
    core_free(c);
}

/* Restore sets the riff and takes without a daemon; playback is the same as before. */
static void test_restore(void)
{
    struct core_config cfg = { .rate = 44100, .max_block = 512, .riff_max_s = 4 };
    struct core *c         = core_init(&cfg);
    float riff[1000];
    for (int i = 0; i < 1000; i++)
        riff[i] = (float)i;
    struct core_take_set *t = core_takes_new(1, 300, 5000);
    float a[300];
    for (int i = 0; i < 300; i++)
        a[i] = 1.0f + (float)i;
    core_takes_write(t, 0, 0, 0, a, 300);
    core_takes_set_complete(t);
    CHECK(core_restore(c, riff, 1000, 4000, t));
    CHECK(!core_restore(c, riff, 1000000, 0, NULL) || false);
    CHECK(core_riff_end(c) == 5000);
    float out[1000];
    struct core_controls ctl = { .candidate = 1, .mix = 1.0f };
    struct tl_pos p          = { .has_frame = true, .frame = 4900, .speed = 1 };
    core_set_time(c, &p);
    core_process(c, &ctl, NULL, NULL, out, NULL, 512);
    CHECK(first_nonzero(out, 512) == 100 && out[100] == 1.0f && out[399] == 300.0f &&
          out[400] == 0.0f);
    float r[300];
    core_takes_render(t, 0, r);
    CHECK(r[0] == 1.0f && r[299] == 300.0f);
    /* a write over audio already there is ignored; gaps are zero-filled */
    CHECK(core_takes_write(t, 0, 2, 10, a, 5) && core_takes_available(t, 0, 2) == 15);
    CHECK(!core_takes_write(t, 1, 2, 0, a, 5) && !core_takes_write(t, 0, 2, 400, a, 1));
    core_free(c);
}

/* ring: producer and consumer threads; every message arrives once, in order, intact */
#define RING_MSGS 200000
static struct ring tr;
static unsigned char tr_buf[1024];

static void *producer(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < RING_MSGS;) {
        uint32_t msg[3] = { i, i * 2654435761u, ~i }; /* 12 bytes: wraps at odd offsets */
        if (ring_write(&tr, msg, sizeof msg)) i++;
    }
    return NULL;
}

static void test_ring_threads(void)
{
    CHECK(ring_init(&tr, tr_buf, sizeof tr_buf));
    CHECK(!ring_init(&tr, tr_buf, 1000)); /* not a power of two */
    CHECK(ring_init(&tr, tr_buf, sizeof tr_buf));
    pthread_t th;
    pthread_create(&th, NULL, producer, NULL);
    uint32_t expect = 0, bad = 0;
    while (expect < RING_MSGS) {
        uint32_t msg[3];
        if (!ring_read(&tr, msg, sizeof msg)) continue;
        if (msg[0] != expect || msg[1] != expect * 2654435761u || msg[2] != ~expect) bad++;
        expect++;
    }
    pthread_join(th, NULL);
    CHECK(bad == 0);
    CHECK(ring_read_space(&tr) == 0 && ring_write_space(&tr) == sizeof tr_buf);
    uint32_t x = 0;
    CHECK(!ring_read(&tr, &x, sizeof x));
    CHECK(ring_pow2(1000) == 1024 && ring_pow2(1024) == 1024);
}

int main(void)
{
    test_snapping();
    test_request_states();
    test_capture_and_placement(44100);
    test_capture_and_placement(48000);
    test_capture_and_placement(96000);
    test_free_running();
    test_xrun_gap();
    test_restore();
    test_ring_threads();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("test_plugin_core: all checks passed\n");
    return 0;
}
