/*
 * plugin/net/net.c - the non-realtime thread between the core and encored (see net.h).
 */
#include "net.h"
#include "curated.h"
#include "encore_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RIFF_CHUNK 262144 /* floats per riff message: 1 MiB, well under the 4 MiB frame */
#define POLL_MS 5

struct net {
    struct core *core;
    struct net_config cfg;
    char client_name[64];
    pthread_t thread;
    atomic_bool stop;

    pthread_mutex_t lock; /* settings, riff, take set pointer (for snapshots) */
    char str[NET_N_KEYS][NET_STR_MAX];
    float *riff;
    int64_t riff_frames, riff_start;
    struct core_take_set *takes; /* the set the core plays (or will, once published) */
    int64_t take_id;             /* the daemon's id of the finished take, -1 if none */

    /* job (net thread only) */
    enum req_state state;
    int fd;
    struct ep_reader rd;
    struct ep_writer wr;
    int64_t job;
    int n_cand;
    int64_t prefix; /* frames of the take before the new audio (riff, or riff + old take) */
    struct core_take_set *pending; /* set not yet accepted by the core's ring */
};

static const char *const key_names[NET_N_KEYS] = { "artist",
                                                   "genre",
                                                   "lyrics",
                                                   "socket",
                                                   "model_set" };

const char *net_key_name(enum net_key key)
{
    return (unsigned)key < NET_N_KEYS ? key_names[key] : "?";
}

static void say(struct net *n, int level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n->cfg.on_message) n->cfg.on_message(n->cfg.user, level, buf);
}

static void set_state(struct net *n, enum req_event ev, float progress, float eta)
{
    int next = req_next(n->state, ev);
    if (next >= 0) n->state = (enum req_state)next;
    core_set_request(n->core, n->state, progress, eta);
}

static void close_job(struct net *n)
{
    if (n->fd >= 0) close(n->fd);
    n->fd = -1;
    ep_reader_free(&n->rd);
    ep_writer_free(&n->wr);
    n->job = 0;
}

static void fail(struct net *n, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    close_job(n);
    pthread_mutex_lock(&n->lock);
    if (n->takes) core_takes_set_complete(n->takes); /* nothing more comes: export must not wait */
    pthread_mutex_unlock(&n->lock);
    set_state(n, REQ_EV_FAILED, 0.0f, -1.0f);
    if (n->state != REQ_ERROR) { /* failed before anything was busy */
        n->state = REQ_ERROR;
        core_set_request(n->core, REQ_ERROR, 0.0f, -1.0f);
    }
    say(n, 1, "%s", buf);
}

/* Hands a set to the core; the core gives the old one back as CORE_MSG_RETIRED. */
static void publish(struct net *n, struct core_take_set *t)
{
    pthread_mutex_lock(&n->lock);
    n->takes = t;
    pthread_mutex_unlock(&n->lock);
    if (!core_publish_takes(n->core, t)) n->pending = t;
}

static bool start_job(struct net *n, const struct core_msg *m, const char *mode)
{
    char sock[NET_STR_MAX], artist[NET_STR_MAX], genre[NET_STR_MAX], lyrics[NET_STR_MAX],
      model[NET_STR_MAX];
    net_get_str(n, NET_SOCKET, sock, sizeof sock);
    net_get_str(n, NET_ARTIST, artist, sizeof artist);
    net_get_str(n, NET_GENRE, genre, sizeof genre);
    net_get_str(n, NET_LYRICS, lyrics, sizeof lyrics);
    net_get_str(n, NET_MODEL_SET, model, sizeof model);
    const char *menu_artist = curated_artist((float)m->params.artist_menu);
    const char *menu_genre  = curated_genre((float)m->params.genre_menu);
    if (menu_artist) snprintf(artist, sizeof artist, "%s", menu_artist);
    if (menu_genre) snprintf(genre, sizeof genre, "%s", menu_genre);

    bool extend = strcmp(mode, "primed") != 0;
    pthread_mutex_lock(&n->lock);
    int64_t riff_frames = n->riff_frames, take_id = n->take_id;
    int64_t old_frames = n->takes ? core_takes_frames(n->takes) : 0;
    pthread_mutex_unlock(&n->lock);
    if (req_busy(n->state)) {
        say(n, 1, "a job is running: cancel it first");
        return false;
    }
    if (riff_frames <= 0) {
        fail(n, "no riff captured yet: record one (or capture the last bars) first");
        return false;
    }
    if (extend && take_id < 0) {
        fail(n,
             "nothing to %s: no finished take from the daemon in this session",
             strcmp(mode, "continue") == 0 ? "extend" : "upsample");
        return false;
    }
    double seconds = m->params.seconds;
    if (strcmp(mode, "upsample") != 0 && !(seconds > 0.0 && seconds <= 600.0)) {
        fail(n, "length to add must be 0..600 s, got %.3g", seconds);
        return false;
    }
    set_state(n, REQ_EV_SUBMIT, 0.0f, -1.0f);

    char why[256] = "";
    n->fd         = ep_client_open(sock[0] ? sock : NULL, n->client_name, why, sizeof why);
    if (n->fd < 0) {
        char path[256] = "";
        ep_socket_path(sock[0] ? sock : NULL, path, sizeof path);
        fail(n, "cannot reach encored at %s: %s (start it, then press continue again)", path, why);
        return false;
    }
    fcntl(n->fd, F_SETFL, fcntl(n->fd, F_GETFL) | O_NONBLOCK);
    ep_reader_init(&n->rd, EP_MAX_FRAME_DEFAULT);
    ep_writer_init(&n->wr, (size_t)256 << 20);

    int n_cand       = m->params.n_candidates < 1                     ? 1
                       : m->params.n_candidates > CORE_MAX_CANDIDATES ? CORE_MAX_CANDIDATES
                                                                      : m->params.n_candidates;
    struct ep_msg *s = ep_msg_new("submit");
    bool ok          = s != NULL;
    ok               = ok && ep_msg_set_str(s, "mode", mode);
    if (model[0]) ok = ok && ep_msg_set_str(s, "model_set", model);
    if (strcmp(mode, "upsample") != 0) ok = ok && ep_msg_set_double(s, "seconds", seconds);
    ok = ok && ep_msg_set_str(s, "artist", artist[0] ? artist : "unknown");
    ok = ok && ep_msg_set_str(s, "genre", genre[0] ? genre : "unknown");
    if (lyrics[0]) ok = ok && ep_msg_set_str(s, "lyrics", lyrics);
    ok = ok && ep_msg_set_double(s, "temp", m->params.temperature);
    if (m->params.seed > 0) ok = ok && ep_msg_set_int(s, "seed", m->params.seed);
    ok = ok && ep_msg_set_int(s, "candidates", extend ? 1 : n_cand);
    ok = ok && ep_msg_set_int(s, "finest_level", n->cfg.finest_level);
    ok = ok && ep_msg_set_int(s, "rate", (int64_t)llround(n->cfg.rate));
    ok = ok && ep_msg_set_bool(s, "stream", true);
    if (extend) {
        ok = ok && ep_msg_set_int(s, "take", take_id);
        ok = ok && ep_msg_set_int(s, "take_candidate", m->candidate > 0 ? m->candidate - 1 : 0);
    } else {
        ok = ok && ep_msg_set_int(s, "riff_rate", (int64_t)llround(n->cfg.rate));
        ok = ok && ep_msg_set_int(s, "riff_channels", 1);
        ok = ok && ep_msg_set_int(s, "riff_frames", riff_frames);
    }
    ok = ok && ep_writer_push_msg(&n->wr, s, EP_MAX_FRAME_DEFAULT);
    ep_msg_free(s);
    pthread_mutex_lock(&n->lock);
    for (int64_t off = 0; ok && !extend && off < riff_frames; off += RIFF_CHUNK) {
        int64_t k        = riff_frames - off < RIFF_CHUNK ? riff_frames - off : RIFF_CHUNK;
        struct ep_msg *r = ep_msg_new("riff");
        ok               = r && ep_msg_set_f32(r, "pcm", n->riff + off, (size_t)k) &&
             ep_writer_push_msg(&n->wr, r, EP_MAX_FRAME_DEFAULT);
        ep_msg_free(r);
    }
    pthread_mutex_unlock(&n->lock);
    if (!ok) {
        fail(n, "out of memory building the request");
        return false;
    }

    /* the new take: new audio starts where the riff ends on the timeline */
    n->n_cand = extend ? 1 : n_cand;
    n->prefix = riff_frames;
    int64_t new_frames =
      strcmp(mode, "upsample") == 0 ? old_frames : (int64_t)ceil(seconds * n->cfg.rate);
    if (strcmp(mode, "continue") == 0) new_frames += old_frames;
    pthread_mutex_lock(&n->lock);
    int64_t start           = n->riff_start + n->riff_frames;
    struct core_take_set *t = new_frames > 0 ? core_takes_new(n->n_cand, new_frames, start) : NULL;
    if (t && extend && n->takes) {
        /* keep playing the chosen candidate while the daemon works on it */
        int cand =
          m->candidate > 0 && m->candidate <= core_takes_count(n->takes) ? m->candidate - 1 : 0;
        float *old = malloc(sizeof(float) * (size_t)(old_frames ? old_frames : 1));
        if (old) {
            core_takes_render(n->takes, cand, old);
            core_takes_write(t, 0, strcmp(mode, "continue") == 0 ? 0 : 2, 0, old, old_frames);
            free(old);
        }
    }
    pthread_mutex_unlock(&n->lock);
    if (!t) {
        fail(n, "out of memory for %lld frames of take", (long long)new_frames);
        return false;
    }
    publish(n, t);
    set_state(n, REQ_EV_CONNECTED, 0.0f, -1.0f);
    say(n, 0, "request sent: %s %.1f s, %s / %s", mode, seconds, artist, genre);
    return true;
}

static void cancel_job(struct net *n)
{
    if (n->fd >= 0 && n->job > 0) {
        struct ep_msg *c = ep_msg_new("cancel");
        if (c && ep_msg_set_int(c, "job", n->job)) ep_send_blocking(n->fd, c, EP_MAX_FRAME_DEFAULT);
        ep_msg_free(c);
    }
    close_job(n);
    pthread_mutex_lock(&n->lock);
    if (n->takes) core_takes_set_complete(n->takes);
    pthread_mutex_unlock(&n->lock);
    if (req_busy(n->state)) set_state(n, REQ_EV_CANCEL, 0.0f, -1.0f);
    say(n, 0, "cancelled");
}

static void on_event(struct net *n, struct ep_msg *m)
{
    const char *type = ep_msg_type(m);
    int64_t v        = 0;
    double d         = 0;
    if (!strcmp(type, "hello")) {
        return;
    } else if (!strcmp(type, "accepted")) {
        ep_msg_get_int(m, "job", &n->job);
        int64_t pos = 0;
        ep_msg_get_int(m, "position", &pos);
        set_state(n, pos > 0 ? REQ_EV_QUEUED : REQ_EV_STARTED, 0.0f, -1.0f);
    } else if (!strcmp(type, "progress")) {
        double done = 0, total = 0, eta = -1;
        ep_msg_get_double(m, "done", &done);
        ep_msg_get_double(m, "total", &total);
        ep_msg_get_double(m, "eta", &eta);
        if (n->state != REQ_STREAMING) set_state(n, REQ_EV_STARTED, 0.0f, -1.0f);
        core_set_request(n->core, n->state, total > 0 ? (float)(done / total) : 0.0f, (float)eta);
    } else if (!strcmp(type, "audio")) {
        int64_t cand = 0, level = 0, first = 0;
        size_t k = 0;
        ep_msg_get_int(m, "candidate", &cand);
        ep_msg_get_int(m, "level", &level);
        ep_msg_get_int(m, "first", &first);
        if (ep_msg_get_double(m, "rate", &d) && fabs(d - n->cfg.rate) > 0.5) {
            fail(n, "daemon sent audio at %g Hz, asked for %g Hz", d, n->cfg.rate);
            return;
        }
        float *pcm = ep_msg_get_f32(m, "pcm", (size_t)1 << 26, &k);
        if (pcm && cand >= 0 && cand < n->n_cand && level >= 0 && level < CORE_LEVELS) {
            /* `first` counts from the riff's first sample; the take starts at the riff end */
            int64_t off = first - n->prefix, skip = 0;
            if (off < 0) skip = -off, off = 0;
            pthread_mutex_lock(&n->lock);
            if (skip < (int64_t)k && n->takes)
                core_takes_write(
                  n->takes, (int)cand, (int)level, off, pcm + skip, (int64_t)k - skip);
            pthread_mutex_unlock(&n->lock);
            if (n->state != REQ_STREAMING) {
                if (n->state == REQ_QUEUED) set_state(n, REQ_EV_STARTED, 0.0f, -1.0f);
                set_state(n, REQ_EV_AUDIO, 0.0f, -1.0f);
            }
        }
        free(pcm);
    } else if (!strcmp(type, "done")) {
        ep_msg_get_int(m, "take", &v);
        pthread_mutex_lock(&n->lock);
        n->take_id = v;
        if (n->takes) core_takes_set_complete(n->takes);
        pthread_mutex_unlock(&n->lock);
        if (n->state == REQ_QUEUED) set_state(n, REQ_EV_STARTED, 0.0f, -1.0f);
        set_state(n, REQ_EV_FINISHED, 1.0f, 0.0f);
        close_job(n);
        say(n, 0, "take %lld done", (long long)v);
    } else if (!strcmp(type, "error")) {
        char code[64] = "", msg[400] = "";
        ep_msg_get_strbuf(m, "code", code, sizeof code);
        ep_msg_get_strbuf(m, "message", msg, sizeof msg);
        if (!strcmp(code, "cancelled")) {
            close_job(n);
            return;
        }
        fail(n, "encored: %s (%s)", msg, code);
    }
}

static void pump_socket(struct net *n)
{
    struct pollfd p = { .fd = n->fd, .events = POLLIN };
    if (ep_writer_pending(&n->wr)) p.events |= POLLOUT;
    if (poll(&p, 1, POLL_MS) < 0) return;
    if (ep_writer_pending(&n->wr) && ep_writer_flush(&n->wr, n->fd) < 0) {
        fail(n, "connection to encored lost while sending (%s)", strerror(errno));
        return;
    }
    if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) return;
    for (int reads = 0; reads < 64 && n->fd >= 0; reads++) {
        long got = ep_reader_read_fd(&n->rd, n->fd);
        if (got == 0) {
            fail(n, "connection to encored lost (daemon stopped?); press continue to retry");
            return;
        }
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            fail(n, "connection to encored lost (%s)", strerror(errno));
            return;
        }
        for (;;) {
            struct ep_msg *m = NULL;
            char why[160];
            enum ep_read_result r = ep_reader_next(&n->rd, &m, why, sizeof why);
            if (r == EP_READ_MORE) break;
            if (r == EP_READ_BAD_FRAME) {
                fail(n, "bad frame from encored: %s", why);
                return;
            }
            if (r == EP_READ_MSG) {
                on_event(n, m);
                ep_msg_free(m);
                if (n->fd < 0) return;
            }
        }
    }
}

static void on_core(struct net *n, const struct core_msg *m)
{
    switch (m->type) {
    case CORE_MSG_RIFF: {
        const float *data;
        int64_t frames, start;
        core_riff_view(n->core, &data, &frames, &start);
        float *copy = frames > 0 ? malloc(sizeof(float) * (size_t)frames) : NULL;
        if (copy) memcpy(copy, data, sizeof(float) * (size_t)frames);
        core_riff_release(n->core);
        if (!copy) {
            say(n, 1, "out of memory keeping the riff");
            return;
        }
        pthread_mutex_lock(&n->lock);
        free(n->riff);
        n->riff        = copy;
        n->riff_frames = frames;
        n->riff_start  = start;
        pthread_mutex_unlock(&n->lock);
        say(n,
            0,
            "riff captured: %.3f s at frame %lld",
            (double)frames / n->cfg.rate,
            (long long)start);
        break;
    }
    case CORE_MSG_REQUEST:
        start_job(n, m, "primed");
        break;
    case CORE_MSG_EXTEND:
        start_job(n, m, "continue");
        break;
    case CORE_MSG_UPSAMPLE:
        start_job(n, m, "upsample");
        break;
    case CORE_MSG_CANCEL:
        cancel_job(n);
        break;
    case CORE_MSG_RETIRED:
        pthread_mutex_lock(&n->lock); /* snapshots may be reading it */
        core_takes_free(m->takes);
        pthread_mutex_unlock(&n->lock);
        break;
    }
}

static void *thread_main(void *arg)
{
    struct net *n = arg;
    while (!atomic_load(&n->stop)) {
        struct core_msg m;
        while (core_poll(n->core, &m))
            on_core(n, &m);
        if (n->pending && core_publish_takes(n->core, n->pending)) n->pending = NULL;
        if (n->fd >= 0) {
            pump_socket(n);
        } else {
            struct timespec ts = { 0, POLL_MS * 1000000L };
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

struct net *net_init(struct core *core, const struct net_config *cfg)
{
    if (!core || !cfg || !(cfg->rate >= 8000.0 && cfg->rate <= 192000.0)) return NULL;
    struct net *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->core = core;
    n->cfg  = *cfg;
    snprintf(n->client_name,
             sizeof n->client_name,
             "%s",
             cfg->client_name ? cfg->client_name : "encore-plugin");
    n->cfg.client_name = n->client_name;
    n->fd              = -1;
    n->take_id         = -1;
    atomic_init(&n->stop, false);
    pthread_mutex_init(&n->lock, NULL);
    if (pthread_create(&n->thread, NULL, thread_main, n) != 0) {
        pthread_mutex_destroy(&n->lock);
        free(n);
        return NULL;
    }
    return n;
}

void net_free(struct net *n)
{
    if (!n) return;
    atomic_store(&n->stop, true);
    pthread_join(n->thread, NULL);
    close_job(n);
    /* the core frees the set it holds; a set it never took is ours */
    if (n->pending) core_takes_free(n->pending);
    free(n->riff);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

void net_set_str(struct net *n, enum net_key key, const char *value)
{
    if ((unsigned)key >= NET_N_KEYS) return;
    pthread_mutex_lock(&n->lock);
    snprintf(n->str[key], NET_STR_MAX, "%s", value ? value : "");
    pthread_mutex_unlock(&n->lock);
}

void net_get_str(struct net *n, enum net_key key, char *buf, size_t cap)
{
    if (!cap) return;
    buf[0] = '\0';
    if ((unsigned)key >= NET_N_KEYS) return;
    pthread_mutex_lock(&n->lock);
    snprintf(buf, cap, "%s", n->str[key]);
    pthread_mutex_unlock(&n->lock);
}

void net_snapshot(struct net *n, struct net_snapshot *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&n->lock);
    if (n->riff_frames > 0 && (s->riff = malloc(sizeof(float) * (size_t)n->riff_frames))) {
        memcpy(s->riff, n->riff, sizeof(float) * (size_t)n->riff_frames);
        s->riff_frames = n->riff_frames;
        s->riff_start  = n->riff_start;
    }
    if (n->takes) {
        s->n_cand      = core_takes_count(n->takes);
        s->take_frames = core_takes_frames(n->takes);
        s->take_start  = core_takes_start(n->takes);
        for (int k = 0; k < s->n_cand; k++) {
            s->take[k] = malloc(sizeof(float) * (size_t)s->take_frames);
            if (s->take[k]) core_takes_render(n->takes, k, s->take[k]);
        }
    }
    s->take_id = n->take_id;
    pthread_mutex_unlock(&n->lock);
}

void net_snapshot_free(struct net_snapshot *s)
{
    free(s->riff);
    for (int k = 0; k < CORE_MAX_CANDIDATES; k++)
        free(s->take[k]);
    memset(s, 0, sizeof *s);
}

bool net_restore(struct net *n,
                 const float *riff,
                 int64_t riff_frames,
                 int64_t riff_start,
                 int n_cand,
                 const float *const *take,
                 int64_t take_frames,
                 int64_t take_id)
{
    float *copy = riff_frames > 0 ? malloc(sizeof(float) * (size_t)riff_frames) : NULL;
    if (riff_frames > 0 && !copy) return false;
    if (copy) memcpy(copy, riff, sizeof(float) * (size_t)riff_frames);
    struct core_take_set *t = NULL;
    if (take_frames > 0 && n_cand > 0) {
        t = core_takes_new(n_cand, take_frames, riff_start + riff_frames);
        if (!t) {
            free(copy);
            return false;
        }
        for (int k = 0; k < n_cand; k++)
            core_takes_write(t, k, 0, 0, take[k], take_frames);
        core_takes_set_complete(t);
    }
    pthread_mutex_lock(&n->lock); /* the net thread writes into the set being replaced */
    if (!core_restore(n->core, copy, riff_frames, riff_start, t)) {
        pthread_mutex_unlock(&n->lock);
        free(copy);
        core_takes_free(t);
        return false;
    }
    free(n->riff);
    n->riff        = copy;
    n->riff_frames = riff_frames;
    n->riff_start  = riff_start;
    n->takes       = t;
    n->take_id     = take_id;
    pthread_mutex_unlock(&n->lock);
    return true;
}
