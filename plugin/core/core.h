/*
 * plugin/core/core.h - Encore's host-agnostic plugin core: capture, timeline, playback, mix.
 *
 * Shared by the LV2 plugin and the JACK client (as DPF shares one Plugin among wrappers); no
 * LV2, JACK or socket code here. Two sides:
 *
 *   realtime (the host's audio thread): core_set_time, core_process, core_status. These never
 *   allocate, lock, block or do I/O (the one exception: in freewheel export, core_process may
 *   sleep, bounded, for audio still being generated; see core_config.export_wait_s).
 *
 *   non-realtime (one thread, e.g. the network thread): core_poll, core_riff_view/release,
 *   core_publish_takes, core_set_request, and the core_takes_* functions.
 *
 * Audio and messages cross through preallocated SPSC rings (ring.h). Capture keeps a history
 * of the downmixed (mono) input on the timeline; a riff is a span [start, end) of timeline
 * frames, snapped to bar lines when the host sends tempo. A continuation (a "take" with up to
 * CORE_MAX_CANDIDATES candidates) is placed at the riff's end frame and plays whenever the
 * transport passes that span: refined audio where it has arrived, the preview elsewhere.
 *
 * Without host transport the core runs its own frame counter (always rolling), and a take that
 * arrives after its start frame has passed plays from the moment it is published.
 */
#ifndef ENCORE_PLUGIN_CORE_H
#define ENCORE_PLUGIN_CORE_H

#include "request.h"
#include "timeline.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_MAX_CANDIDATES 4
#define CORE_MAX_BLOCK 8192
#define CORE_LEVELS 3 /* Jukebox levels: 0 final quality, 1 and 2 previews */

struct core_config {
    double rate;          /* Hz, 8000..768000 */
    uint32_t max_block;   /* largest frame count per core_process call, 1..CORE_MAX_BLOCK */
    double riff_max_s;    /* longest riff kept, 1..120 s */
    double export_wait_s; /* freewheel: total time to wait for audio still generating, >= 0 */
};

/* What a continue/extend request asks for, copied from the controls when it is pressed. */
struct core_req_params {
    float add_seconds; /* seconds to add (used when add_bars == 0) */
    int add_bars;      /* bars to add (uses the host tempo; 2 s a bar without one) */
    float temperature; /* sampling temperature */
    int n_candidates;  /* 1..CORE_MAX_CANDIDATES */
    int seed;          /* 0 = let the daemon choose */
    int artist_menu;   /* curated.h menu value, 0 = custom string */
    int genre_menu;    /* curated.h menu value, 0 = custom string */
    double seconds;    /* add_seconds or add_bars resolved to seconds at press time */
};

/* Control values for one block. Triggers act on their rising edge. */
struct core_controls {
    bool record;       /* level: capturing while on (start and end snap to bar lines) */
    bool capture_last; /* trigger: the riff becomes the last capture_bars bars */
    int capture_bars;  /* 1..64 */
    bool request;      /* trigger: continue the riff */
    bool extend;       /* trigger: continue riff + chosen candidate */
    bool upsample;     /* trigger: render the chosen candidate's finer levels again */
    bool cancel;       /* trigger: stop the job */
    int candidate;     /* 1..n, the candidate heard */
    float mix;         /* 0 dry only, 0.5 both at unity, 1 continuation only */
    bool freewheel;    /* host is exporting faster than real time */
    struct core_req_params params;
};

/* Messages from the realtime side, read with core_poll. */
enum core_msg_type {
    CORE_MSG_RIFF = 1, /* a riff is ready: core_riff_view, then core_riff_release */
    CORE_MSG_REQUEST,  /* continue pressed: params */
    CORE_MSG_EXTEND,   /* extend pressed: params, candidate */
    CORE_MSG_UPSAMPLE, /* upsample pressed: params, candidate */
    CORE_MSG_CANCEL,   /* cancel pressed */
    CORE_MSG_RETIRED,  /* a take set the realtime side no longer uses: core_takes_free(takes) */
};

struct core_take_set;

struct core_msg {
    enum core_msg_type type;
    struct core_req_params params;
    int candidate;
    struct core_take_set *takes;
};

/* Feedback for output ports; filled from atomics, safe on the realtime side. */
struct core_status {
    enum req_state req_state;
    float progress; /* 0..1 */
    float eta_s;    /* seconds, < 0 unknown */
    int capture;    /* 0 idle, 1 recording, 2 waiting for the bar line, 3 copying */
    int64_t riff_start, riff_frames;
    int n_candidates; /* of the take set playing, 0 if none */
    uint32_t dropped; /* messages the non-realtime side did not take in time */
    uint32_t export_waited_ms;
    bool export_timed_out;
};

struct core;

/* Non-realtime: allocates and pre-touches every buffer. NULL on a bad config or no memory. */
struct core *core_init(const struct core_config *cfg);
void core_free(struct core *c); /* frees the take set it holds too */

/* --- realtime side ------------------------------------------------------------------------ */

/* The host's position at the next sample to be processed (NULL = no host transport). */
void core_set_time(struct core *c, const struct tl_pos *pos);

/* Processes n <= max_block frames. Any of the buffers may be NULL (unconnected port). */
void core_process(struct core *c,
                  const struct core_controls *ctl,
                  const float *in_l,
                  const float *in_r,
                  float *out_l,
                  float *out_r,
                  uint32_t n);

void core_status(struct core *c, struct core_status *st);
int64_t core_now(const struct core *c); /* timeline frame of the next sample */

/* --- non-realtime side -------------------------------------------------------------------- */

bool core_poll(struct core *c, struct core_msg *msg);

/* After CORE_MSG_RIFF: the captured mono riff, valid until core_riff_release. */
void core_riff_view(struct core *c, const float **data, int64_t *n_frames, int64_t *start);
void core_riff_release(struct core *c);
int64_t core_riff_end(const struct core *c); /* end frame of the last riff, -1 if none */

/* The request's state and progress, shown on the output ports. */
void core_set_request(struct core *c, enum req_state s, float progress, float eta_s);

/* Hands a take set to the realtime side; the previous one comes back as CORE_MSG_RETIRED.
 * false: the ring is full (try again later; the set stays the caller's). */
bool core_publish_takes(struct core *c, struct core_take_set *t);

/* Restore (not concurrent with core_process: LV2 restore, JACK before activation): sets the
 * riff and the take set directly. The core copies `riff`; it takes ownership of `t`. */
bool core_restore(struct core *c,
                  const float *riff,
                  int64_t n,
                  int64_t start,
                  struct core_take_set *t);

/* --- take sets (non-realtime; the realtime side only reads them) ------------------------- */

/* n_cand candidates of n_frames each at host rate, placed at timeline frame `start`. */
struct core_take_set *core_takes_new(int n_cand, int64_t n_frames, int64_t start);
void core_takes_free(struct core_take_set *t);

/* Appends audio of one candidate at one level (0 = final quality, replaces levels 1 and 2
 * where it has arrived; 1 replaces 2) at `offset` (>= what is there; gaps are zero-filled;
 * audio past n_frames is dropped). false: bad candidate, level or offset. */
bool core_takes_write(struct core_take_set *t,
                      int cand,
                      int level,
                      int64_t offset,
                      const float *data,
                      int64_t n);
void core_takes_set_complete(struct core_take_set *t); /* nothing more will arrive */
bool core_takes_complete(const struct core_take_set *t);

int core_takes_count(const struct core_take_set *t);
int64_t core_takes_frames(const struct core_take_set *t);
int64_t core_takes_start(const struct core_take_set *t);
/* The best audio of a candidate so far (finest level present per sample, else silence);
 * writes core_takes_frames(t) values to out. */
void core_takes_render(const struct core_take_set *t, int cand, float *out);
int64_t core_takes_available(const struct core_take_set *t, int cand, int level);

#endif
