/*
 * plugin/net/net.h - the plugin's link to encored, on a non-realtime thread the instance owns.
 *
 * Streamed job events do not fit one-shot LV2 worker calls, so each plugin instance (and the
 * JACK client) runs one thread here. It is the core's non-realtime side: it reads the core's
 * messages (riff ready, continue, extend, cancel, retired take sets), talks to the daemon over
 * daemon/proto (submit + riff, then accepted/progress/audio/done/error events), fills take
 * sets as audio streams in and publishes them to the core, and reports the request state.
 * Errors (no daemon, unknown artist, daemon gone mid-stream) go to the on_message callback,
 * called from this thread; audio keeps passing through meanwhile.
 *
 * The string settings (artist, genre, lyrics, socket, model set) are set from any non-RT
 * thread; riff and take snapshots for state saving are taken under the same lock.
 */
#ifndef ENCORE_PLUGIN_NET_H
#define ENCORE_PLUGIN_NET_H

#include "core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum net_key { NET_ARTIST = 0, NET_GENRE, NET_LYRICS, NET_SOCKET, NET_MODEL_SET, NET_N_KEYS };

#define NET_STR_MAX 4096 /* longest string setting (lyrics), bytes including NUL */

struct net_config {
    const char *client_name; /* for the daemon's log */
    double rate;             /* host rate: riff rate and the rate audio is asked for */
    int finest_level;        /* 0 full quality, 2 top-level preview only */
    /* error and info lines (level 0 info, 1 error), called from the net thread */
    void (*on_message)(void *user, int level, const char *text);
    void *user;
};

struct net;

/* Starts the thread. The core must outlive the net. NULL on failure. */
struct net *net_init(struct core *core, const struct net_config *cfg);
void net_free(struct net *n); /* stops the thread (cancels nothing on the daemon side) */

void net_set_str(struct net *n, enum net_key key, const char *value);
void net_get_str(struct net *n, enum net_key key, char *buf, size_t cap);
const char *net_key_name(enum net_key key);

/* Copies of what a session must keep. Free with net_snapshot_free. */
struct net_snapshot {
    float *riff;
    int64_t riff_frames, riff_start;
    int n_cand;
    int64_t take_frames, take_start, take_id;
    float *take[CORE_MAX_CANDIDATES]; /* best audio so far per candidate */
};
void net_snapshot(struct net *n, struct net_snapshot *s);
void net_snapshot_free(struct net_snapshot *s);

/* Restores riff and takes (not concurrently with core_process). Takes ownership of nothing:
 * the data is copied. take_frames may be 0 (no take). */
bool net_restore(struct net *n,
                 const float *riff,
                 int64_t riff_frames,
                 int64_t riff_start,
                 int n_cand,
                 const float *const *take,
                 int64_t take_frames,
                 int64_t take_id);

#endif
