/*
 * daemon/encored/server.c - the event loop: one epoll over the listening socket, the clients,
 * a signalfd and the workers' eventfd. Requests are answered here; jobs run on the workers.
 *
 * Output is pulled, not pushed: a job keeps the audio it rendered (struct audio_log) and each
 * attached client has a cursor per (candidate, level) stream. The loop sends a client more
 * audio only while its output queue is below a high-water mark, so a client that stops reading
 * costs no memory and never slows the worker or the others; replaying to a client that
 * attaches later is the same code with cursors at 0. Audio is resampled per client and stream
 * with libsoxr to the client's rate.
 */
#include "encored.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <soxr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HIGH_WATER (1u << 20) /* bytes queued to a client before its audio waits */
#define AUDIO_CHUNK 44100     /* 44.1 kHz samples per audio event (1 s) */
#define MAX_LIST_JOBS 200

struct cursor {
    int64_t pos;     /* samples of the log already sent */
    int64_t out_pos; /* at the client's rate */
    soxr_t rs;
    bool started, done;
};

struct attach {
    struct job *job;
    int rate;
    bool stream;
    bool has_tag;
    int64_t tag;
    struct cursor *cur; /* [n_cand * n_levels] */
    int n_cur;
    int plevel;
    int64_t pdone;
    bool sent_end[JB_JOB_MAX_LEVELS];
    bool final_sent;
    struct attach *next;
};

struct upload {
    bool active;
    struct ep_msg *msg; /* the submit */
    struct submit sub;
    soxr_t rs;
    float *out;
    int64_t out_len, out_cap, frames_got;
};

struct client {
    int fd, id;
    uid_t uid;
    struct ep_reader r;
    struct ep_writer w;
    bool hello, closing, want_out;
    bool throttled;    /* the last pump stopped at HIGH_WATER with audio left to send */
    double last_drain; /* when its output queue was last empty or written to */
    struct upload up;
    struct attach *att;
    struct client *next;
};

static int epfd = -1, evfd = -1, sigfd = -1, sig_wfd = -1, lfd = -1;

static void on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved       = errno;
    if (write(sig_wfd, &b, 1) < 0) { /* pipe full: a stop is already pending */
    }
    errno = saved;
}
static struct client *clients;
static int n_clients, next_client_id = 1;
static double t_start;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void daemon_notify(void)
{
    uint64_t one = 1;
    if (evfd >= 0 && write(evfd, &one, sizeof one) < 0) { /* counter saturated: still woken */
    }
}

/* ---------------------------------------------------------------------------------------- */
/* sending                                                                                   */

static void send_msg(struct client *c, struct ep_msg *m)
{
    if (!m || c->closing) {
        ep_msg_free(m);
        return;
    }
    uint8_t *f = NULL;
    size_t n   = 0;
    if (!ep_msg_encode(m, g_cfg.lim.frame_bytes, &f, &n)) {
        /* a reply larger than a frame (e.g. the codes of a very long take) */
        ep_msg_free(m);
        m = ep_msg_new("error");
        ep_msg_set_str(m, "code", "limit");
        ep_msg_set_str(m, "message", "the reply would be larger than the frame limit");
        if (!ep_msg_encode(m, g_cfg.lim.frame_bytes, &f, &n)) f = NULL;
    }
    if (f && !ep_writer_push(&c->w, f, n)) {
        daemon_log(JB_LOG_WARN,
                   "client %d: output over %zu bytes queued: dropping it",
                   c->id,
                   g_cfg.lim.client_buffer);
        c->closing = true;
    }
    free(f);
    ep_msg_free(m);
}

static void send_error(struct client *c,
                       const char *code,
                       const char *msg,
                       int64_t job,
                       bool has_tag,
                       int64_t tag)
{
    struct ep_msg *m = ep_msg_new("error");
    ep_msg_set_str(m, "code", code);
    if (!ep_msg_set_str(m, "message", msg)) ep_msg_set_str(m, "message", "(unprintable)");
    if (job) ep_msg_set_int(m, "job", job);
    if (has_tag) ep_msg_set_int(m, "tag", tag);
    send_msg(c, m);
}

static struct ep_msg *reply(const char *type, const struct ep_msg *req)
{
    struct ep_msg *m = ep_msg_new(type);
    int64_t tag;
    if (m && req && ep_msg_get_int(req, "tag", &tag)) ep_msg_set_int(m, "tag", tag);
    return m;
}

/* ---------------------------------------------------------------------------------------- */
/* attachments: progress, audio and the end of a job, pulled from the job                    */

static void detach_all(struct client *c)
{
    pthread_mutex_lock(&g_mu);
    while (c->att) {
        struct attach *a = c->att;
        c->att           = a->next;
        a->job->refs--;
        for (int i = 0; i < a->n_cur; i++)
            if (a->cur[i].rs) soxr_delete(a->cur[i].rs);
        free(a->cur);
        free(a);
    }
    pthread_mutex_unlock(&g_mu);
}

static bool job_finished(const struct job *j)
{
    return j->state == JOB_DONE || j->state == JOB_FAILED || j->state == JOB_CANCELLED;
}

/* Sends stream (c, L) of job j from the cursor, in chunks, while the client keeps up. g_mu. */
static void pump_stream(struct client *cl, struct attach *a, int cand, int L)
{
    struct job *j        = a->job;
    struct audio_log *lg = job_audio(j, cand, L);
    struct cursor *cu    = &a->cur[cand * j->n_levels + L];
    if (!lg || !lg->used || cu->done) return;
    if (!cu->started) {
        cu->started = true;
        cu->out_pos = (int64_t)llround((double)lg->start * a->rate / JB_SAMPLE_RATE);
        if (a->rate != JB_SAMPLE_RATE) {
            soxr_error_t err;
            soxr_io_spec_t io     = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
            soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
            cu->rs                = soxr_create(JB_SAMPLE_RATE, a->rate, 1, &err, &io, &q, NULL);
            if (!cu->rs) {
                cu->done = true;
                return;
            }
        }
    }
    float *buf = NULL;
    size_t cap = 0;
    for (;;) {
        if (cl->closing) break;
        if (ep_writer_pending(&cl->w) > HIGH_WATER) {
            /* nothing else may wake this client once its queue drains: settle keeps EPOLLOUT */
            if (lg->len > cu->pos || lg->finished) cl->throttled = true;
            break;
        }
        const int64_t avail = lg->len - cu->pos;
        const bool flush    = avail == 0 && lg->finished;
        if (avail == 0 && !flush) break;
        const int64_t n  = avail > AUDIO_CHUNK ? AUDIO_CHUNK : avail;
        const float *in  = lg->pcm ? lg->pcm + cu->pos : NULL; /* NULL + 0 is UB */
        size_t out_n     = (size_t)n;
        const float *out = in;
        if (cu->rs) {
            size_t want = (size_t)((double)n * a->rate / JB_SAMPLE_RATE) + 256;
            if (want > cap) {
                free(buf);
                cap = want;
                buf = malloc(cap * sizeof *buf);
                if (!buf) break;
            }
            size_t idone = 0;
            soxr_process(cu->rs, flush ? NULL : in, (size_t)n, &idone, buf, cap, &out_n);
            out = buf;
        }
        if (out_n > 0) {
            struct ep_msg *m = ep_msg_new("audio");
            ep_msg_set_int(m, "job", j->id);
            ep_msg_set_int(m, "candidate", cand);
            ep_msg_set_int(m, "level", L);
            ep_msg_set_str(m, "role", lg->final_role ? "final" : "preview");
            ep_msg_set_int(m, "first", cu->out_pos);
            ep_msg_set_int(m, "rate", a->rate);
            ep_msg_set_f32(m, "pcm", out, out_n);
            send_msg(cl, m);
            cu->out_pos += (int64_t)out_n;
        }
        cu->pos += n;
        if (flush) {
            if (!cu->rs || out_n == 0) { /* soxr drained (or nothing to drain) */
                cu->done = true;
                break;
            }
        }
    }
    free(buf);
}

static bool all_streams_done(const struct attach *a)
{
    const struct job *j = a->job;
    if (!a->stream || !j->audio) return true;
    for (int i = 0; i < j->n_cand * j->n_levels; i++) {
        if (!j->audio[i].used || a->cur[i].done) continue;
        /* a failed or cancelled job's levels never finish: what was rendered has been sent */
        if (j->state != JOB_DONE && a->cur[i].pos >= j->audio[i].len) continue;
        return false;
    }
    return true;
}

/* A job's progress report to one attached client. g_mu held. */
static void send_progress(struct client *cl, const struct job *j, const struct jb_job_progress *p)
{
    struct ep_msg *m = ep_msg_new("progress");
    ep_msg_set_int(m, "job", j->id);
    ep_msg_set_int(m, "level", p->level);
    ep_msg_set_int(m, "window", p->window);
    ep_msg_set_int(m, "n_windows", p->n_windows);
    ep_msg_set_int(m, "done", p->done);
    ep_msg_set_int(m, "total", p->total);
    ep_msg_set_double(m, "tokens_per_s", p->tokens_per_s);
    ep_msg_set_double(m, "elapsed", p->elapsed);
    ep_msg_set_double(m, "eta", p->done >= p->total ? 0 : p->eta);
    send_msg(cl, m);
}

/* One attachment: returns false once it is finished (and should be removed). g_mu held. */
static bool pump_attach(struct client *cl, struct attach *a)
{
    struct job *j = a->job;
    /* each finished level once (coarse first), then the latest report if it is news */
    for (int L = JB_JOB_MAX_LEVELS - 1; L >= 0; L--)
        if (j->has_level_end[L] && !a->sent_end[L]) {
            a->sent_end[L] = true;
            send_progress(cl, j, &j->level_end[L]);
            if (j->prog.level == L && j->prog.done == j->level_end[L].done)
                a->plevel = L, a->pdone = j->prog.done;
        }
    if (j->has_prog && (j->prog.level != a->plevel || j->prog.done != a->pdone) &&
        ep_writer_pending(&cl->w) <= HIGH_WATER) {
        a->plevel = j->prog.level;
        a->pdone  = j->prog.done;
        send_progress(cl, j, &j->prog);
    }
    if (a->stream && j->audio) {
        if (!a->cur) {
            a->n_cur = j->n_cand * j->n_levels;
            a->cur   = calloc((size_t)a->n_cur, sizeof *a->cur);
            if (!a->cur) return false;
        }
        for (int c = 0; c < j->n_cand; c++)
            for (int L = j->n_levels - 1; L >= 0; L--) /* coarse first, as the engine does */
                pump_stream(cl, a, c, L);
    }
    if (!job_finished(j) || !all_streams_done(a) || a->final_sent) return !a->final_sent;
    a->final_sent = true;
    if (j->state == JOB_DONE) {
        struct ep_msg *m = ep_msg_new("done");
        ep_msg_set_int(m, "job", j->id);
        ep_msg_set_int(m, "take", j->take_id);
        ep_msg_set_int(m, "candidates", j->take_candidates);
        ep_msg_set_int(m, "finest_level", j->finest_level);
        ep_msg_set_int(m, "samples", j->take_samples);
        ep_msg_set_int(m, "tokens_sampled", j->tokens_sampled);
        if (j->device[0]) ep_msg_set_str(m, "device", j->device);
        if (j->device[0]) ep_msg_set_int(m, "device_index", j->device_index);
        if (a->has_tag) ep_msg_set_int(m, "tag", a->tag);
        send_msg(cl, m);
    } else {
        struct ep_msg *m = ep_msg_new("error");
        ep_msg_set_str(m, "code", j->err_code[0] ? j->err_code : "internal");
        if (!ep_msg_set_str(m, "message", j->err_msg))
            ep_msg_set_str(m, "message", "(unprintable)");
        ep_msg_set_int(m, "job", j->id);
        if (j->device[0]) ep_msg_set_str(m, "device", j->device);
        if (j->device[0]) ep_msg_set_int(m, "device_index", j->device_index);
        if (j->retry_job) ep_msg_set_int(m, "retry_job", j->retry_job);
        if (a->has_tag) ep_msg_set_int(m, "tag", a->tag);
        send_msg(cl, m);
    }
    return false;
}

static void pump_client(struct client *c)
{
    pthread_mutex_lock(&g_mu);
    c->throttled       = false;
    struct attach **pp = &c->att;
    while (*pp) {
        struct attach *a = *pp;
        if (pump_attach(c, a)) {
            pp = &a->next;
            continue;
        }
        *pp = a->next;
        a->job->refs--;
        for (int i = 0; i < a->n_cur; i++)
            if (a->cur[i].rs) soxr_delete(a->cur[i].rs);
        free(a->cur);
        free(a);
    }
    pthread_mutex_unlock(&g_mu);
}

static void attach_job(struct client *c,
                       struct job *j,
                       int rate,
                       bool stream,
                       bool has_tag,
                       int64_t tag)
{
    struct attach *a = calloc(1, sizeof *a);
    if (!a) return;
    a->job     = j;
    a->rate    = rate;
    a->stream  = stream;
    a->has_tag = has_tag;
    a->tag     = tag;
    a->plevel  = -2;
    a->next    = c->att;
    c->att     = a;
    j->refs++;
}

/* Finished jobs beyond ENCORED_KEEP_FINISHED (newest kept) that nobody holds leave memory;
 * the database still lists them and their takes. g_mu held. */
static void purge_jobs(void)
{
    int kept = 0;
    for (struct job **pp = &g_jobs; *pp;) {
        struct job *j  = *pp;
        const bool fin = job_finished(j) || j->state == JOB_INTERRUPTED;
        if (fin && ++kept > ENCORED_KEEP_FINISHED && j->refs == 0) {
            *pp = j->next;
            for (int i = 0; j->audio && i < j->n_cand * j->n_levels; i++)
                free(j->audio[i].pcm);
            free(j->audio);
            free(j->riff);
            ep_msg_free(j->params);
            free(j);
            continue;
        }
        pp = &j->next;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* requests                                                                                  */

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Queues a job (the riff, if any, already at 44.1 kHz mono). Takes params and riff. */
static void queue_job(struct client *c,
                      struct ep_msg *params,
                      struct submit *s,
                      float *riff,
                      int64_t riff_n)
{
    char code[32] = "", why[600] = "";
    pthread_mutex_lock(&g_mu);
    bool ok = worker_precheck(s, riff_n, code, why, sizeof why);
    if (ok && queued_count() >= g_cfg.lim.queued_jobs) {
        ok = false;
        snprintf(code, sizeof code, "busy");
        snprintf(why, sizeof why, "the queue is full (%d jobs)", g_cfg.lim.queued_jobs);
    }
    pthread_mutex_unlock(&g_mu);
    if (ok && s->take_id) { /* the take must exist now, not only when the job runs */
        struct jb_take *t = store_take_load(s->take_id);
        if (!t) {
            ok = false;
            snprintf(code, sizeof code, "not_found");
            snprintf(why, sizeof why, "no take %lld", (long long)s->take_id);
        }
        jb_take_free(t);
    }
    struct job *j = ok ? calloc(1, sizeof *j) : NULL;
    if (ok && !j) snprintf(code, sizeof code, "internal"), snprintf(why, sizeof why, "no memory");
    if (j) {
        j->owner    = c->id;
        j->set      = s->set;
        j->kind     = JOB_GENERATE;
        j->state    = JOB_QUEUED;
        j->params   = params;
        j->riff     = riff;
        j->riff_n   = riff_n;
        j->src_take = s->take_id;
        j->created  = unix_now();
        j->id       = store_job_insert(j);
        if (!j->id || (riff && !store_riff_save(j->id, riff, riff_n))) {
            snprintf(code, sizeof code, "io");
            snprintf(why, sizeof why, "cannot record the job in the state folder (disk full?)");
            if (j->id) {
                j->state = JOB_FAILED;
                snprintf(j->err_code, sizeof j->err_code, "io");
                snprintf(j->err_msg, sizeof j->err_msg, "%s", why);
                store_job_state(j);
            }
            free(j);
            j = NULL;
        }
    }
    if (!j) {
        send_error(c, code, why, 0, s->has_tag, s->tag);
        ep_msg_free(params);
        free(riff);
        return;
    }
    pthread_mutex_lock(&g_mu);
    j->next = g_jobs;
    g_jobs  = j;
    attach_job(c, j, s->rate, s->stream, s->has_tag, s->tag);
    struct ep_msg *m = ep_msg_new("accepted");
    ep_msg_set_int(m, "job", j->id);
    ep_msg_set_int(m, "position", queue_position(j));
    if (s->has_tag) ep_msg_set_int(m, "tag", s->tag);
    pthread_mutex_unlock(&g_mu);
    send_msg(c, m);
    workers_kick();
}

static void upload_free(struct upload *u)
{
    if (u->rs) soxr_delete(u->rs);
    ep_msg_free(u->msg);
    free(u->out);
    submit_free(&u->sub);
    memset(u, 0, sizeof *u);
}

static void upload_abort(struct client *c, const char *code, const char *why)
{
    send_error(c, code, why, 0, c->up.sub.has_tag, c->up.sub.tag);
    upload_free(&c->up);
}

static bool upload_append(struct upload *u, const float *x, size_t n, bool flush)
{
    if (!u->rs) {
        if ((int64_t)n > u->out_cap - u->out_len) return false;
        memcpy(u->out + u->out_len, x, n * sizeof *x);
        u->out_len += (int64_t)n;
        return true;
    }
    size_t idone = 0, odone = 0;
    do {
        const size_t room = (size_t)(u->out_cap - u->out_len);
        if (room == 0) return false;
        soxr_process(u->rs, flush ? NULL : x, n, &idone, u->out + u->out_len, room, &odone);
        u->out_len += (int64_t)odone;
        if (!flush) { /* flushing passes no input: x is NULL then */
            x += idone;
            n -= idone;
        }
    } while ((flush && odone > 0) || (!flush && n > 0));
    return true;
}

static void on_submit(struct client *c, struct ep_msg *m)
{
    struct submit s;
    char code[32], why[600];
    if (!submit_parse(m, &s, code, why, sizeof why)) {
        send_error(c, code, why, 0, s.has_tag, s.tag);
        submit_free(&s);
        ep_msg_free(m);
        return;
    }
    if (s.p.mode != JB_JOB_PRIMED) {
        queue_job(c, m, &s, NULL, 0);
        submit_free(&s);
        return;
    }
    if (c->up.active) {
        send_error(c, "busy", "a riff is still being sent on this connection", 0, s.has_tag, s.tag);
        submit_free(&s);
        ep_msg_free(m);
        return;
    }
    /* everything is sized from checked numbers: frames <= riff_seconds * rate */
    struct upload *u = &c->up;
    u->active        = true;
    u->msg           = m;
    u->sub           = s;
    u->out_cap       = (int64_t)ceil((double)s.riff_frames * JB_SAMPLE_RATE / s.riff_rate) + 4096;
    u->out           = malloc((size_t)u->out_cap * sizeof *u->out);
    if (s.riff_rate != JB_SAMPLE_RATE) {
        soxr_error_t err;
        soxr_io_spec_t io     = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        soxr_quality_spec_t q = soxr_quality_spec(SOXR_VHQ, 0); /* as jb_audio_read */
        u->rs                 = soxr_create(s.riff_rate, JB_SAMPLE_RATE, 1, &err, &io, &q, NULL);
    }
    if (!u->out || (s.riff_rate != JB_SAMPLE_RATE && !u->rs))
        upload_abort(c, "internal", "out of memory for the riff");
}

static void on_riff(struct client *c, struct ep_msg *m)
{
    struct upload *u = &c->up;
    if (!u->active) {
        send_error(c, "invalid_arg", "riff data without a primed submit", 0, false, 0);
        return;
    }
    const int ch       = u->sub.riff_channels;
    const int64_t left = u->sub.riff_frames - u->frames_got;
    size_t n           = 0;
    size_t len         = 0;
    const uint8_t *b   = ep_msg_get_bytes(m, "pcm", &len);
    if (!b || len % (4 * (size_t)ch)) {
        upload_abort(c, "invalid_arg", "riff pcm must be float32 frames of riff_channels");
        return;
    }
    if ((int64_t)(len / 4 / (size_t)ch) > left) {
        upload_abort(c, "limit", "more riff frames than riff_frames announced");
        return;
    }
    float *x = ep_msg_get_f32(m, "pcm", (size_t)left * (size_t)ch, &n);
    if (!x) {
        upload_abort(c, "internal", "out of memory for the riff");
        return;
    }
    const size_t frames = n / (size_t)ch;
    for (size_t i = 0; i < frames; i++) { /* downmix in place, refusing NaN and infinity */
        float sum = 0;
        for (int k = 0; k < ch; k++) {
            float v = x[i * (size_t)ch + (size_t)k];
            if (!isfinite(v)) {
                free(x);
                upload_abort(c, "invalid_arg", "the riff has NaN or infinite samples");
                return;
            }
            sum += v;
        }
        x[i] = sum / (float)ch;
    }
    bool ok = upload_append(u, x, frames, false);
    free(x);
    u->frames_got += (int64_t)frames;
    if (ok && u->frames_got == u->sub.riff_frames && u->rs) ok = upload_append(u, NULL, 0, true);
    if (!ok) {
        upload_abort(c, "internal", "riff resampling overflowed its buffer");
        return;
    }
    if (u->frames_got < u->sub.riff_frames) return;
    /* complete: the job takes the riff and the submit */
    struct ep_msg *params = u->msg;
    float *riff           = u->out;
    int64_t riff_n        = u->out_len;
    u->msg                = NULL;
    u->out                = NULL;
    struct submit s       = u->sub;
    memset(&u->sub, 0, sizeof u->sub);
    upload_free(u);
    queue_job(c, params, &s, riff, riff_n);
    submit_free(&s);
}

static void on_attach(struct client *c, struct ep_msg *m)
{
    int64_t id = 0, tag = 0;
    bool has_tag = ep_msg_get_int(m, "tag", &tag);
    double rate  = JB_SAMPLE_RATE;
    if (!ep_msg_get_int(m, "job", &id) ||
        (ep_msg_has(m, "rate") &&
         (!ep_msg_get_double(m, "rate", &rate) || !(rate >= 8000 && rate <= 192000)))) {
        send_error(
          c, "invalid_arg", "attach needs a job id and a rate of 8000..192000 Hz", 0, has_tag, tag);
        return;
    }
    pthread_mutex_lock(&g_mu);
    struct job *j = job_find(id);
    if (j) {
        struct ep_msg *r = reply("attached", m);
        ep_msg_set_int(r, "job", id);
        ep_msg_set_str(r, "state", job_state_name(j->state));
        ep_msg_set_int(r, "position", queue_position(j));
        attach_job(c, j, (int)rate, true, has_tag, tag);
        pthread_mutex_unlock(&g_mu);
        send_msg(c, r);
        return;
    }
    pthread_mutex_unlock(&g_mu);
    char state[32], err[512];
    int64_t take = 0;
    if (!store_job_lookup(id, state, sizeof state, &take, err, sizeof err)) {
        char why[64];
        snprintf(why, sizeof why, "no job %lld", (long long)id);
        send_error(c, "not_found", why, 0, has_tag, tag);
        return;
    }
    struct ep_msg *r = reply("attached", m);
    ep_msg_set_int(r, "job", id);
    ep_msg_set_str(r, "state", state);
    send_msg(c, r);
    if (!strcmp(state, "done")) {
        struct ep_msg *d = ep_msg_new("done");
        ep_msg_set_int(d, "job", id);
        ep_msg_set_int(d, "take", take);
        if (has_tag) ep_msg_set_int(d, "tag", tag);
        send_msg(c, d);
    } else {
        send_error(c,
                   "not_found",
                   err[0] ? err : "the job's audio is no longer in memory",
                   id,
                   has_tag,
                   tag);
    }
}

static void on_cancel(struct client *c, struct ep_msg *m)
{
    int64_t id = 0, tag = 0;
    bool has_tag = ep_msg_get_int(m, "tag", &tag);
    pthread_mutex_lock(&g_mu);
    struct job *j = ep_msg_get_int(m, "job", &id) ? job_find(id) : NULL;
    bool ok       = j && (j->state == JOB_QUEUED || j->state == JOB_RUNNING);
    if (ok && j->state == JOB_QUEUED) {
        j->state = JOB_CANCELLED;
        snprintf(j->err_code, sizeof j->err_code, "cancelled");
        snprintf(j->err_msg, sizeof j->err_msg, "job %lld cancelled", (long long)id);
        j->seq++;
    } else if (ok) {
        atomic_store(&j->cancel, true);
    }
    const bool was_queued = ok && j->state == JOB_CANCELLED;
    pthread_mutex_unlock(&g_mu);
    if (was_queued) store_job_state(j);
    if (!ok) {
        char why[80];
        snprintf(why, sizeof why, "no queued or running job %lld", (long long)id);
        send_error(c, "not_found", why, id, has_tag, tag);
        return;
    }
    struct ep_msg *r = reply("cancelled", m);
    ep_msg_set_int(r, "job", id);
    send_msg(c, r);
    daemon_notify();
}

static void on_fetch(struct client *c, struct ep_msg *m)
{
    int64_t take = 0, cand = 0, level = 0, tag = 0;
    bool has_tag  = ep_msg_get_int(m, "tag", &tag);
    char what[16] = "";
    double rate   = JB_SAMPLE_RATE;
    if (!ep_msg_get_int(m, "take", &take) || !ep_msg_get_strbuf(m, "what", what, sizeof what) ||
        (ep_msg_has(m, "candidate") && !ep_msg_get_int(m, "candidate", &cand)) ||
        (ep_msg_has(m, "level") && !ep_msg_get_int(m, "level", &level)) ||
        (ep_msg_has(m, "rate") &&
         (!ep_msg_get_double(m, "rate", &rate) || !(rate >= 8000 && rate <= 192000))) ||
        cand < 0 || cand >= JB_JOB_MAX_CANDIDATES || level < 0 || level >= JB_JOB_MAX_LEVELS) {
        send_error(c,
                   "invalid_arg",
                   "fetch needs take, what (codes, audio or take), candidate, level, rate",
                   0,
                   has_tag,
                   tag);
        ep_msg_free(m);
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "no take %lld", (long long)take);
    if (!strcmp(what, "take")) {
        size_t len     = 0;
        uint8_t *bytes = store_take_file(take, g_cfg.lim.frame_bytes - 1024, &len);
        if (!bytes) {
            send_error(c, "not_found", "no such take, or larger than a frame", 0, has_tag, tag);
        } else {
            struct ep_msg *r = reply("take_file", m);
            ep_msg_set_int(r, "take", take);
            ep_msg_set_bytes(r, "data", bytes, len);
            send_msg(c, r);
        }
        free(bytes);
        ep_msg_free(m);
        return;
    }
    if (!strcmp(what, "codes")) {
        struct jb_take *t    = store_take_load(take);
        const int32_t *codes = t ? jb_take_codes(t, (int)level, (int)cand) : NULL;
        if (!codes) {
            send_error(c, "not_found", t ? "no such candidate or level" : why, 0, has_tag, tag);
        } else {
            struct jb_take_info ti;
            jb_take_get_info(t, &ti);
            struct ep_msg *r = reply("codes", m);
            ep_msg_set_int(r, "take", take);
            ep_msg_set_int(r, "candidate", cand);
            ep_msg_set_int(r, "level", level);
            ep_msg_set_int(r, "candidates", ti.n_candidates);
            ep_msg_set_i32(r, "codes", codes, (size_t)ti.n_tokens[level]);
            send_msg(c, r);
        }
        jb_take_free(t);
        ep_msg_free(m);
        return;
    }
    if (strcmp(what, "audio") != 0) {
        send_error(c, "invalid_arg", "what must be codes, audio or take", 0, has_tag, tag);
        ep_msg_free(m);
        return;
    }
    struct jb_take *t = store_take_load(take);
    if (!t) {
        send_error(c, "not_found", why, 0, has_tag, tag);
        ep_msg_free(m);
        return;
    }
    jb_take_free(t);
    /* decoding needs the session: a job on the worker of the first set */
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        ep_msg_free(m);
        return;
    }
    j->owner            = c->id;
    j->kind             = JOB_DECODE;
    j->state            = JOB_QUEUED;
    j->params           = m;
    j->src_take         = take;
    j->decode_candidate = (int)cand;
    j->decode_level     = (int)level;
    j->created          = unix_now();
    j->id               = store_job_insert(j);
    if (!j->id) {
        send_error(c, "io", "cannot record the job", 0, has_tag, tag);
        ep_msg_free(m);
        free(j);
        return;
    }
    pthread_mutex_lock(&g_mu);
    j->next = g_jobs;
    g_jobs  = j;
    attach_job(c, j, (int)rate, true, has_tag, tag);
    struct ep_msg *r = reply("accepted", m);
    ep_msg_set_int(r, "job", j->id);
    ep_msg_set_int(r, "position", queue_position(j));
    pthread_mutex_unlock(&g_mu);
    send_msg(c, r);
    workers_kick();
}

static void on_delete(struct client *c, struct ep_msg *m)
{
    int64_t take = 0, tag = 0;
    bool has_tag = ep_msg_get_int(m, "tag", &tag);
    if (!ep_msg_get_int(m, "take", &take) || !store_take_delete(take)) {
        send_error(c, "not_found", "no such take", 0, has_tag, tag);
        return;
    }
    struct ep_msg *r = reply("deleted", m);
    ep_msg_set_int(r, "take", take);
    send_msg(c, r);
}

static void on_hello(struct client *c, struct ep_msg *m)
{
    int64_t v = 0;
    if (!ep_msg_get_int(m, "version", &v) || v != EP_PROTOCOL_VERSION) {
        char why[128];
        snprintf(why,
                 sizeof why,
                 "encored speaks protocol %d, the client %lld",
                 EP_PROTOCOL_VERSION,
                 (long long)v);
        send_error(c, "version", why, 0, false, 0);
        c->closing = true;
        return;
    }
    c->hello         = true;
    struct ep_msg *r = reply("hello", m);
    ep_msg_set_int(r, "version", EP_PROTOCOL_VERSION);
    ep_msg_set_str(r, "daemon", "encored " ENCORE_VERSION);
    static const char *caps[] = { "submit",      "riff",       "cancel", "attach",
                                  "jobs",        "models",     "status", "fetch_audio",
                                  "fetch_codes", "fetch_take", "delete", "resume" };
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        ep_msg_add_str(r, "capabilities", caps[i]);
    ep_msg_set_int(r, "max_frame", (int64_t)g_cfg.lim.frame_bytes);
    struct ep_msg *lim = ep_msg_new(NULL);
    ep_msg_set_double(lim, "riff_seconds", g_cfg.lim.riff_seconds);
    ep_msg_set_double(lim, "job_seconds", g_cfg.lim.job_seconds);
    ep_msg_set_int(lim, "candidates", g_cfg.lim.candidates);
    ep_msg_set_int(lim, "clients", g_cfg.lim.clients);
    ep_msg_set_int(lim, "queued_jobs", g_cfg.lim.queued_jobs);
    ep_msg_set_int(lim, "frame_bytes", (int64_t)g_cfg.lim.frame_bytes);
    ep_msg_add_item(r, "limits", lim);
    ep_msg_free(lim);
    send_msg(c, r);
}

static void on_status(struct client *c, struct ep_msg *m, bool models)
{
    struct ep_msg *r = reply(models ? "models" : "status", m);
    bool labels = false, load = false;
    ep_msg_get_bool(m, "labels", &labels);
    ep_msg_get_bool(m, "load", &load);
    pthread_mutex_lock(&g_mu);
    workers_describe(r, models && labels, load);
    if (!models) {
        ep_msg_set_str(r, "daemon", "encored " ENCORE_VERSION);
        ep_msg_set_int(r, "pid", (int64_t)getpid());
        ep_msg_set_double(r, "uptime", mono_now() - t_start);
        ep_msg_set_str(r, "backend", workers_backend());
        ep_msg_set_int(r, "clients", n_clients);
        ep_msg_set_int(r, "queued", queued_count());
        int64_t running = 0;
        for (struct job *j = g_jobs; j; j = j->next)
            if (j->state == JOB_RUNNING) running = j->id;
        ep_msg_set_int(r, "running", running);
        ep_msg_set_str(r, "state_dir", g_cfg.state);
        ep_msg_set_str(r, "socket", g_cfg.socket);
        ep_msg_set_int(r, "memory_budget", g_cfg.memory);
    }
    pthread_mutex_unlock(&g_mu);
    if (!models) {
        ep_msg_set_int(r, "takes_bytes", store_takes_bytes());
        ep_msg_set_int(r, "takes_quota", g_cfg.lim.takes_quota);
    }
    send_msg(c, r);
}

static void on_jobs(struct client *c, struct ep_msg *m)
{
    struct ep_msg *r = reply("jobs", m);
    pthread_mutex_lock(&g_mu);
    store_list_jobs(r, MAX_LIST_JOBS);
    pthread_mutex_unlock(&g_mu);
    send_msg(c, r);
}

/* Takes m. */
static void handle(struct client *c, struct ep_msg *m)
{
    const char *t = ep_msg_type(m);
    if (!c->hello) {
        if (!strcmp(t, "hello")) {
            on_hello(c, m);
        } else {
            send_error(c, "version", "the first message must be hello", 0, false, 0);
            c->closing = true;
        }
        ep_msg_free(m);
        return;
    }
    if (!strcmp(t, "submit")) {
        on_submit(c, m); /* takes m */
        return;
    }
    if (!strcmp(t, "fetch")) {
        on_fetch(c, m); /* takes m */
        return;
    }
    if (!strcmp(t, "riff"))
        on_riff(c, m);
    else if (!strcmp(t, "attach"))
        on_attach(c, m);
    else if (!strcmp(t, "cancel"))
        on_cancel(c, m);
    else if (!strcmp(t, "jobs"))
        on_jobs(c, m);
    else if (!strcmp(t, "status"))
        on_status(c, m, false);
    else if (!strcmp(t, "models"))
        on_status(c, m, true);
    else if (!strcmp(t, "delete"))
        on_delete(c, m);
    else if (!strcmp(t, "hello"))
        send_error(c, "invalid_arg", "hello was already sent", 0, false, 0);
    else {
        char why[128];
        snprintf(why, sizeof why, "unknown message type '%.60s'", t);
        send_error(c, "unknown_type", why, 0, false, 0);
    }
    ep_msg_free(m);
}

/* ---------------------------------------------------------------------------------------- */
/* connections                                                                               */

static void client_close(struct client *c)
{
    for (struct client **pp = &clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    detach_all(c);
    upload_free(&c->up);
    ep_reader_free(&c->r);
    ep_writer_free(&c->w);
    n_clients--;
    free(c);
}

static void on_accept(void)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or a transient error: epoll tells us again */
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cred.uid != getuid()) {
            daemon_log(JB_LOG_WARN, "refused a connection from uid %d", (int)cred.uid);
            close(fd);
            continue;
        }
        struct client *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd         = fd;
        c->id         = next_client_id++;
        c->uid        = cred.uid;
        c->last_drain = mono_now();
        ep_reader_init(&c->r, g_cfg.lim.frame_bytes);
        ep_writer_init(&c->w, g_cfg.lim.client_buffer);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = clients;
        clients = c;
        n_clients++;
        if (n_clients > g_cfg.lim.clients) {
            char why[64];
            snprintf(why, sizeof why, "too many clients (limit %d)", g_cfg.lim.clients);
            send_error(c, "busy", why, 0, false, 0);
            c->closing = true;
        }
    }
}

static void on_readable(struct client *c)
{
    long n = ep_reader_read_fd(&c->r, c->fd);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        c->closing = true;
        ep_writer_free(&c->w); /* nobody to send to */
        ep_writer_init(&c->w, 1);
        return;
    }
    for (;;) {
        struct ep_msg *m        = NULL;
        char why[256]           = "";
        enum ep_read_result res = ep_reader_next(&c->r, &m, why, sizeof why);
        if (res == EP_READ_MORE) break;
        if (res == EP_READ_MSG) {
            handle(c, m);
        } else if (res == EP_READ_BAD_MSG) {
            send_error(c, "bad_message", why, 0, false, 0);
            if (!c->hello) c->closing = true;
        } else {
            send_error(c, "bad_message", why, 0, false, 0);
            c->closing = true;
        }
        if (c->closing) break;
    }
}

/* Flushes, updates interest in EPOLLOUT, closes finished connections. */
static void settle(struct client *c)
{
    const size_t before = ep_writer_pending(&c->w);
    int r               = ep_writer_flush(&c->w, c->fd);
    if (before == 0 || ep_writer_pending(&c->w) < before) c->last_drain = mono_now();
    if (r < 0 || (c->closing && r == 1)) {
        client_close(c);
        return;
    }
    if (c->closing && ep_writer_pending(&c->w) == 0) {
        client_close(c);
        return;
    }
    /* r == 0: bytes wait for the socket. throttled: audio waits for the queue, and a queue
     * that drained in this flush has no other event to bring the next pump (a finished job's
     * replay would stall); EPOLLOUT on a writable socket fires at once and pumps again. */
    const bool want = r == 0 || c->throttled;
    if (want != c->want_out) {
        c->want_out           = want;
        struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c };
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

int server_run(int listen_fd)
{
    t_start = mono_now();
    lfd     = listen_fd;
    epfd    = epoll_create1(EPOLL_CLOEXEC);
    evfd    = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* a self-pipe, not a signalfd: threads started by libraries before main (OpenBLAS) do not
     * block the signals, and the kernel may deliver SIGTERM to any of them */
    int sp[2];
    if (pipe2(sp, O_NONBLOCK | O_CLOEXEC) == 0) {
        sigfd               = sp[0];
        sig_wfd             = sp[1];
        struct sigaction sa = { .sa_handler = on_signal };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
    }
    if (epfd < 0 || evfd < 0 || sigfd < 0) {
        daemon_log(JB_LOG_ERROR, "epoll/eventfd/signalfd: %s", strerror(errno));
        return 1;
    }
    static int tag_listen, tag_ev, tag_sig;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_listen };
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &tag_ev;
    epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev);
    ev.data.ptr = &tag_sig;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &ev);

    bool stopping = false;
    while (!stopping) {
        /* idle: sleeps here without a timeout; a timer only while some client is behind */
        bool behind = false;
        for (struct client *c = clients; c; c = c->next)
            behind |= ep_writer_pending(&c->w) > 0;
        struct epoll_event evs[64];
        int n = epoll_wait(epfd, evs, 64, behind ? 1000 : -1);
        if (n < 0 && errno != EINTR) break;
        bool pump_all = false;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_listen) {
                on_accept();
            } else if (p == &tag_ev) {
                uint64_t v;
                if (read(evfd, &v, sizeof v) < 0) { /* EAGAIN: already drained */
                }
                pump_all = true;
            } else if (p == &tag_sig) {
                unsigned char sig;
                while (read(sigfd, &sig, 1) == 1)
                    if (sig == SIGTERM || sig == SIGINT) stopping = true;
            } else {
                struct client *c = p;
                bool alive       = false;
                for (struct client *k = clients; k; k = k->next)
                    alive |= k == c;
                if (!alive) continue; /* closed earlier in this batch */
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
                if (evs[i].events & EPOLLOUT) pump_all = true;
                if (!c->closing || ep_writer_pending(&c->w)) pump_client(c);
                settle(c);
            }
        }
        for (struct client *c = clients, *next; c; c = next) { /* stalled readers */
            next = c->next;
            if (ep_writer_pending(&c->w) > 0 &&
                mono_now() - c->last_drain > g_cfg.lim.stall_seconds) {
                daemon_log(JB_LOG_WARN,
                           "client %d read nothing for %.0f s: dropped (its jobs go on)",
                           c->id,
                           g_cfg.lim.stall_seconds);
                client_close(c);
            }
        }
        if (pump_all) {
            for (struct client *c = clients, *next; c; c = next) {
                next = c->next;
                pump_client(c);
                settle(c);
            }
            pthread_mutex_lock(&g_mu);
            purge_jobs();
            pthread_mutex_unlock(&g_mu);
        }
    }
    daemon_log(JB_LOG_INFO, "stopping: the running job keeps its last checkpoint");
    epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
    workers_stop();
    while (clients)
        client_close(clients);
    close(epfd);
    close(evfd);
    close(sigfd);
    close(sig_wfd);
    return 0;
}
