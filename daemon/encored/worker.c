/*
 * daemon/encored/worker.c - one worker thread per (model set, device): loads the set's session on
 * its device when first needed (within the memory budget), takes queued jobs of its set round
 * robin across clients (the workers of a set share its queue, so jobs spread over the devices),
 * runs them through engine.h, and records progress, audio, checkpoints and the result for the
 * event loop. A job that fails with a device error (ERR_DEVICE, or ERR_NOMEM from the device) is
 * retried once as a new job on another device where there is one; the worker drops its session
 * and backend after a device error (a failed CUDA context stays failed) and makes new ones for
 * its next job.
 *
 * An idle worker sleeps on a condition variable: no polling.
 */
#include "encored.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker {
    pthread_t th;
    bool started;
    int set, dev; /* model set, index into g_cfg.devices */
    pthread_cond_t cv;
    struct jb_backend *be;
    struct jb_session *s; /* g_mu guards the pointer; only this thread loads/frees it */
    struct jb_session_info info;
    bool want_load, want_unload;
    char load_err[600];
    struct job *current;
    int last_owner; /* round robin */
};

static struct worker workers[ENCORED_MAX_SETS * ENCORED_MAX_DEVICES];
static int n_workers; /* n_sets x n_devices; worker set·n_devices + dev */
static bool quitting;
static pthread_cond_t mem_cv = PTHREAD_COND_INITIALIZER;
static char device_list[ENCORED_MAX_DEVICES * 34];

/* "cuda:0,cuda:1": the devices jobs run on */
const char *workers_backend(void)
{
    return device_list;
}

/* ---------------------------------------------------------------------------------------- */
/* queue                                                                                     */

/* The next job of set `set`: the owner after the last one served, cyclically (round robin
 * across clients), its oldest job. g_mu held. */
static struct job *pick(struct worker *w)
{
    struct job *best = NULL, *first = NULL;
    for (struct job *j = g_jobs; j; j = j->next) {
        if (j->state != JOB_QUEUED || j->set != w->set) continue;
        if (j->retried && j->avoid_device == w->dev && g_cfg.n_devices > 1) continue;
        /* g_jobs is newest first: a later match is older, so prefer it on ties */
        if (j->owner > w->last_owner &&
            (!best || j->owner < best->owner || (j->owner == best->owner && j->id < best->id)))
            best = j;
        if (!first || j->owner < first->owner || (j->owner == first->owner && j->id < first->id))
            first = j;
    }
    return best ? best : first;
}

int queued_count(void)
{
    int n = 0;
    for (struct job *j = g_jobs; j; j = j->next)
        n += j->state == JOB_QUEUED;
    return n;
}

int queue_position(const struct job *j)
{
    if (j->state == JOB_RUNNING) return 0;
    if (j->state != JOB_QUEUED) return -1;
    int pos = 1;
    for (struct job *o = g_jobs; o; o = o->next)
        if (o != j && o->state == JOB_QUEUED && o->set == j->set && o->id < j->id) pos++;
    return pos;
}

/* ---------------------------------------------------------------------------------------- */
/* job callbacks                                                                             */

struct run {
    struct job *j;
    struct jb_job_plan plan;
    double last_checkpoint;
};

struct audio_log *job_audio(struct job *j, int candidate, int level)
{
    if (!j->audio || candidate < 0 || candidate >= j->n_cand || level < 0 || level >= j->n_levels)
        return NULL;
    return &j->audio[candidate * j->n_levels + level];
}

static void on_progress(const struct jb_job_progress *p, void *user)
{
    struct run *r = user;
    pthread_mutex_lock(&g_mu);
    struct job *j = r->j;
    if (p->level >= 0 && p->level < JB_JOB_MAX_LEVELS) {
        /* tokens sampled by this process: per level, last done minus the first done seen */
        const int pl = j->prog.level;
        if (j->has_prog && pl != p->level && pl >= 0 && pl < JB_JOB_MAX_LEVELS &&
            j->level_first_done[pl] >= 0)
            j->tokens_sampled += j->prog.done - j->level_first_done[pl];
        if (j->level_first_done[p->level] < 0) j->level_first_done[p->level] = p->done;
    }
    j->prog     = *p;
    j->has_prog = true;
    if (p->level >= 0 && p->level < JB_JOB_MAX_LEVELS && p->done >= p->total) {
        j->level_end[p->level]     = *p; /* sent even if the next level's reports follow fast */
        j->has_level_end[p->level] = true;
    }
    j->seq++;
    pthread_mutex_unlock(&g_mu);
    daemon_notify();
}

static bool append(struct audio_log *a, const float *pcm, int64_t first, int64_t n)
{
    if (!a->used) {
        a->used  = true;
        a->start = first;
    }
    if (first != a->start + a->len) return false; /* the engine promises no gaps */
    if (a->len + n > a->cap) {
        int64_t cap = a->cap ? a->cap : 65536;
        while (cap < a->len + n)
            cap *= 2;
        float *b = realloc(a->pcm, (size_t)cap * sizeof *b);
        if (!b) return false;
        a->pcm = b;
        a->cap = cap;
    }
    memcpy(a->pcm + a->len, pcm, (size_t)n * sizeof *pcm);
    a->len += n;
    if (a->start + a->len >= a->end) a->finished = true;
    return true;
}

static void on_audio(const struct jb_job_audio *au, void *user)
{
    struct run *r = user;
    pthread_mutex_lock(&g_mu);
    struct audio_log *a = job_audio(r->j, au->candidate, au->level);
    if (a) {
        a->final_role = au->role == JB_AUDIO_FINAL;
        if (!append(a, au->samples, au->first_sample, au->n_samples))
            daemon_log(
              JB_LOG_WARN, "job %lld: audio out of order or out of memory", (long long)r->j->id);
        r->j->seq++;
    }
    pthread_mutex_unlock(&g_mu);
    daemon_notify();
}

static bool should_stop(void *user)
{
    struct run *r = user;
    return atomic_load(&r->j->cancel) || atomic_load(&r->j->shutdown) ||
           atomic_load(&r->j->io_fail);
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every finished window of a real model takes seconds to minutes: each is saved. The tiny
 * default model finishes windows every few milliseconds, where a save per window (fsync'd take
 * file) would cost more than the sampling; so saves are at least CHECKPOINT_INTERVAL apart, and
 * a level's last window is always saved. */
#define CHECKPOINT_INTERVAL 0.25

static void on_checkpoint(const struct jb_job_checkpoint *c, void *user)
{
    struct run *r    = user;
    const double now = mono_now();
    if (c->windows_done < c->n_windows && now - r->last_checkpoint < CHECKPOINT_INTERVAL) return;
    r->last_checkpoint = now;
    if (!store_job_checkpoint(r->j->id, c->partial, c->level, c->windows_done)) {
        daemon_log(JB_LOG_ERROR,
                   "job %lld: cannot write a checkpoint (%s)",
                   (long long)r->j->id,
                   jb_last_error());
        atomic_store(&r->j->io_fail, true);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* running                                                                                   */

static const char *status_code(enum jb_status st)
{
    switch (st) {
    case JB_STATUS_ERR_LABEL:
        return "unknown_label";
    case JB_STATUS_ERR_INVALID_ARG:
        return "invalid_arg";
    case JB_STATUS_ERR_IO:
        return "io";
    case JB_STATUS_ERR_MODEL:
    case JB_STATUS_ERR_FORMAT:
        return "model";
    case JB_STATUS_ERR_CANCELLED:
        return "cancelled";
    default:
        return "internal";
    }
}

static void fail(struct job *j, const char *code, const char *msg)
{
    pthread_mutex_lock(&g_mu);
    j->state = JOB_FAILED;
    snprintf(j->err_code, sizeof j->err_code, "%s", code);
    snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
    j->seq++;
    pthread_mutex_unlock(&g_mu);
    store_job_state(j);
}

/* model bytes loaded on device dev */
static int64_t loaded_bytes(int dev)
{
    int64_t sum = 0;
    for (int i = 0; i < n_workers; i++)
        if (workers[i].s && workers[i].dev == dev) sum += g_cfg.sets[workers[i].set].bytes;
    return sum;
}

/* Loads the session on this thread, first asking idle workers to unload theirs if the memory
 * budget needs it. g_mu is NOT held on entry. */
static bool ensure_loaded(struct worker *w, char *why, size_t len)
{
    pthread_mutex_lock(&g_mu);
    if (w->s) {
        pthread_mutex_unlock(&g_mu);
        return true;
    }
    const int64_t need = g_cfg.sets[w->set].bytes;
    if (g_cfg.memory > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 30;
        while (loaded_bytes(w->dev) + need > g_cfg.memory) {
            bool any = false;
            for (int i = 0; i < n_workers; i++)
                if (&workers[i] != w && workers[i].dev == w->dev && workers[i].s) {
                    workers[i].want_unload = true;
                    pthread_cond_signal(&workers[i].cv);
                    any = true;
                }
            if (!any || pthread_cond_timedwait(&mem_cv, &g_mu, &until) == ETIMEDOUT) break;
        }
        if (loaded_bytes(w->dev) + need > g_cfg.memory) {
            snprintf(why,
                     len,
                     "model set '%s' needs %lld bytes: over the memory budget (%lld)",
                     g_cfg.sets[w->set].name,
                     (long long)need,
                     (long long)g_cfg.memory);
            pthread_mutex_unlock(&g_mu);
            return false;
        }
    }
    pthread_mutex_unlock(&g_mu);
    if (!w->be) w->be = jb_backend_init(g_cfg.devices[w->dev], g_cfg.threads);
    struct jb_session *s = w->be ? jb_session_load(g_cfg.sets[w->set].dir, w->be) : NULL;
    if (!s) {
        snprintf(why,
                 len,
                 "model set '%s' (%s) on %s: %s",
                 g_cfg.sets[w->set].name,
                 g_cfg.sets[w->set].dir,
                 g_cfg.devices[w->dev],
                 jb_last_error());
        return false;
    }
    pthread_mutex_lock(&g_mu);
    jb_session_get_info(s, &w->info);
    w->s = s;
    pthread_mutex_unlock(&g_mu);
    daemon_log(JB_LOG_INFO,
               "loaded model set '%s' from %s on %s (%s, %lld bytes)",
               g_cfg.sets[w->set].name,
               g_cfg.sets[w->set].dir,
               g_cfg.devices[w->dev],
               w->info.top_kind,
               (long long)g_cfg.sets[w->set].bytes);
    return true;
}

static void unload(struct worker *w)
{
    pthread_mutex_lock(&g_mu);
    struct jb_session *s = w->s;
    w->s                 = NULL;
    w->want_unload       = false;
    pthread_mutex_unlock(&g_mu);
    jb_session_free(s); /* no reader can be using it: they hold g_mu while they do */
    pthread_mutex_lock(&g_mu);
    pthread_cond_broadcast(&mem_cv);
    pthread_mutex_unlock(&g_mu);
    daemon_log(JB_LOG_INFO, "unloaded model set '%s'", g_cfg.sets[w->set].name);
}

/* Sizes the audio logs from the plan. g_mu not held. */
static bool prepare_audio(struct job *j, int n_cand, const int64_t *end_samples, int finest)
{
    struct audio_log *a = calloc((size_t)n_cand * JB_JOB_MAX_LEVELS, sizeof *a);
    if (!a) return false;
    for (int c = 0; c < n_cand; c++)
        for (int L = 0; L < JB_JOB_MAX_LEVELS; L++) {
            a[c * JB_JOB_MAX_LEVELS + L].end        = end_samples[L];
            a[c * JB_JOB_MAX_LEVELS + L].final_role = L == finest;
        }
    pthread_mutex_lock(&g_mu);
    j->audio    = a;
    j->n_cand   = n_cand;
    j->n_levels = JB_JOB_MAX_LEVELS;
    j->seq++;
    pthread_mutex_unlock(&g_mu);
    return true;
}

static void run_decode(struct worker *w, struct job *j, struct jb_take *take)
{
    struct jb_take_info ti;
    jb_take_get_info(take, &ti);
    const int c = j->decode_candidate, L = j->decode_level;
    if (c < 0 || c >= ti.n_candidates || L < ti.finest_level || L >= ti.n_levels) {
        char msg[160];
        snprintf(msg,
                 sizeof msg,
                 "take %lld has candidates 0..%d and levels %d..%d",
                 (long long)j->src_take,
                 ti.n_candidates - 1,
                 ti.finest_level,
                 ti.n_levels - 1);
        fail(j, "invalid_arg", msg);
        return;
    }
    const int64_t n                 = ti.n_tokens[L] * ti.hop[L];
    int64_t ends[JB_JOB_MAX_LEVELS] = { 0 };
    ends[L]                         = n;
    float *out                      = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    if (!out || !prepare_audio(j, ti.n_candidates, ends, L)) {
        free(out);
        fail(j, "internal", "out of memory");
        return;
    }
    struct run r           = { .j = j };
    struct jb_callbacks cb = { .should_stop = should_stop, .user = &r };
    enum jb_status st      = jb_take_decode(w->s, take, c, L, out, &cb);
    if (st) {
        free(out);
        fail(j, status_code(st), jb_last_error());
        return;
    }
    struct jb_job_audio au = { .candidate    = c,
                               .level        = L,
                               .role         = JB_AUDIO_FINAL,
                               .first_sample = 0,
                               .n_samples    = n,
                               .samples      = out };
    on_audio(&au, &r);
    free(out);
    pthread_mutex_lock(&g_mu);
    j->state           = JOB_DONE;
    j->take_id         = j->src_take;
    j->take_candidates = ti.n_candidates;
    j->finest_level    = L;
    j->take_samples    = n;
    j->seq++;
    pthread_mutex_unlock(&g_mu);
    store_job_state(j);
}

#ifdef ENCORED_TEST_HOOKS
/* A test hook, compiled in only with -DENCORE_TEST_HOOKS=ON (the test build; a release encored
 * has no such environment switch): ENCORED_INJECT_DEVICE_FAILURE=N makes every job on device
 * index N fail as a device failure would (ERR_DEVICE), =first the first attempt of every job on
 * any device, so the retry path can be tested without a failing GPU. */
static bool injected_failure(const struct worker *w, const struct job *j)
{
    const char *v = getenv("ENCORED_INJECT_DEVICE_FAILURE");
    if (!v || !*v) return false;
    if (!strcmp(v, "first")) return !j->retried;
    return atoi(v) == w->dev;
}
#endif

/* A job that failed on this worker's device runs again, once, as a new job with the same
 * parameters on another device (where there is one): j->retry_job names it in j's error event.
 * g_mu not held. */
static void retry_elsewhere(struct worker *w, struct job *j)
{
    if (g_cfg.n_devices < 2 || j->retried || j->kind != JOB_GENERATE) return;
    struct job *n         = calloc(1, sizeof *n);
    struct ep_msg *params = NULL;
    float *riff           = NULL;
    uint8_t *f            = NULL;
    size_t len            = 0;
    char why[128];
    if (n && ep_msg_encode(j->params, EP_MAX_FRAME_LIMIT, &f, &len))
        params = ep_msg_decode(f + EP_FRAME_HEADER, len - EP_FRAME_HEADER, why, sizeof why);
    free(f);
    if (j->riff && j->riff_n > 0 && (riff = malloc((size_t)j->riff_n * sizeof *riff)))
        memcpy(riff, j->riff, (size_t)j->riff_n * sizeof *riff);
    if (n && params && (!j->riff || riff)) {
        n->owner        = j->owner;
        n->set          = j->set;
        n->kind         = j->kind;
        n->state        = JOB_QUEUED;
        n->params       = params;
        n->riff         = riff;
        n->riff_n       = j->riff_n;
        n->src_take     = j->src_take;
        n->created      = (double)time(NULL);
        n->retried      = true;
        n->avoid_device = w->dev;
        n->id           = store_job_insert(n);
    }
    if (!n || !n->id || (riff && !store_riff_save(n->id, riff, n->riff_n))) {
        daemon_log(JB_LOG_ERROR, "job %lld: cannot queue its retry", (long long)j->id);
        ep_msg_free(params);
        free(riff);
        free(n);
        return;
    }
    pthread_mutex_lock(&g_mu);
    n->next      = g_jobs;
    g_jobs       = n;
    j->retry_job = n->id;
    pthread_mutex_unlock(&g_mu);
    daemon_log(JB_LOG_WARN,
               "job %lld failed on %s: retried as job %lld on another device",
               (long long)j->id,
               g_cfg.devices[w->dev],
               (long long)n->id);
}

static void run_job(struct worker *w, struct job *j)
{
    char why[600];
    if (!ensure_loaded(w, why, sizeof why)) {
        fail(j, "model", why);
        return;
    }
    struct jb_take *src = NULL, *resume = NULL;
    if (j->src_take && !(src = store_take_load(j->src_take))) {
        snprintf(why, sizeof why, "take %lld is gone (deleted or evicted)", (long long)j->src_take);
        fail(j, "not_found", why);
        return;
    }
    if (j->kind == JOB_DECODE) {
        run_decode(w, j, src);
        jb_take_free(src);
        return;
    }
    struct submit sub;
    char code[32];
    if (!submit_parse(j->params, &sub, code, why, sizeof why)) {
        jb_take_free(src);
        fail(j, code, why);
        return;
    }
    sub.p.take         = src;
    sub.p.riff         = j->riff;
    sub.p.riff_samples = j->riff_n;
    if (j->resume) {
        char ck[1200];
        snprintf(ck, sizeof ck, "%s/ckpt/%lld.take", g_cfg.state, (long long)j->id);
        if (jb_take_load(ck, &resume) == JB_STATUS_OK) {
            sub.p.resume        = resume;
            sub.p.resume_level  = j->resume_level;
            sub.p.resume_window = j->resume_window;
            daemon_log(JB_LOG_INFO,
                       "job %lld: resuming at level %d window %d",
                       (long long)j->id,
                       j->resume_level,
                       j->resume_window);
        }
    }
    struct run r      = { .j = j };
    enum jb_status st = jb_job_plan(w->s, &sub.p, &r.plan);
    int64_t ends[JB_JOB_MAX_LEVELS];
    for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
        ends[L] = r.plan.n_tokens[L] * w->info.hop[L];
    if (!st && !prepare_audio(j, r.plan.n_candidates, ends, r.plan.finest_level))
        st = JB_STATUS_ERR_NOMEM;
    if (!st && sub.p.mode == JB_JOB_PRIMED) { /* the final audio starts with the riff itself */
        pthread_mutex_lock(&g_mu);
        for (int c = 0; c < r.plan.n_candidates; c++) {
            struct audio_log *a = job_audio(j, c, r.plan.finest_level);
            if (a && !append(a, j->riff, 0, r.plan.riff_samples)) st = JB_STATUS_ERR_NOMEM;
        }
        pthread_mutex_unlock(&g_mu);
    }
    struct jb_take *take = NULL;
    char injected[160]   = "";
    if (!st) {
        struct jb_job_callbacks cb = { .on_progress   = on_progress,
                                       .on_audio      = on_audio,
                                       .should_stop   = should_stop,
                                       .on_checkpoint = on_checkpoint,
                                       .user          = &r };
#ifdef ENCORED_TEST_HOOKS
        if (injected_failure(w, j)) {
            st = JB_STATUS_ERR_DEVICE;
            snprintf(injected,
                     sizeof injected,
                     "%s: injected device failure (ENCORED_INJECT_DEVICE_FAILURE)",
                     g_cfg.devices[w->dev]);
        } else
#endif
        {
            st = jb_job_run(w->s, &sub.p, &cb, &take);
        }
    }
    pthread_mutex_lock(&g_mu);
    if (j->has_prog && j->prog.level >= 0 && j->level_first_done[j->prog.level] >= 0)
        j->tokens_sampled += j->prog.done - j->level_first_done[j->prog.level];
    pthread_mutex_unlock(&g_mu);
    const char *err = injected[0] ? injected : jb_last_error();
    if (st == JB_STATUS_OK) {
        int64_t id = store_take_save(take, j->id);
        if (!id) {
            snprintf(why, sizeof why, "cannot save the take (disk full?): %s", jb_last_error());
            fail(j, "io", why);
        } else {
            struct jb_take_info ti;
            jb_take_get_info(take, &ti);
            pthread_mutex_lock(&g_mu);
            for (int i = 0; i < j->n_cand * j->n_levels; i++)
                j->audio[i].finished = true;
            j->state           = JOB_DONE;
            j->take_id         = id;
            j->take_candidates = ti.n_candidates;
            j->finest_level    = ti.finest_level;
            j->take_samples    = ti.sample_length;
            j->seq++;
            pthread_mutex_unlock(&g_mu);
            store_job_state(j);
            store_enforce_quota(g_cfg.lim.takes_quota);
            daemon_log(JB_LOG_INFO,
                       "job %lld done: take %lld (%lld tokens sampled here)",
                       (long long)j->id,
                       (long long)id,
                       (long long)j->tokens_sampled);
        }
    } else if (st == JB_STATUS_ERR_CANCELLED && atomic_load(&j->io_fail)) {
        fail(j, "io", "cannot write the job's checkpoint (disk full?); the job stopped");
    } else if (st == JB_STATUS_ERR_CANCELLED && atomic_load(&j->shutdown) &&
               !atomic_load(&j->cancel)) {
        pthread_mutex_lock(&g_mu);
        j->state = JOB_INTERRUPTED;
        j->seq++;
        pthread_mutex_unlock(&g_mu);
        store_job_state(j);
    } else if (st == JB_STATUS_ERR_CANCELLED) {
        pthread_mutex_lock(&g_mu);
        j->state = JOB_CANCELLED;
        snprintf(j->err_code, sizeof j->err_code, "cancelled");
        snprintf(j->err_msg, sizeof j->err_msg, "job %lld cancelled", (long long)j->id);
        j->seq++;
        pthread_mutex_unlock(&g_mu);
        store_job_state(j);
    } else if (st == JB_STATUS_ERR_DEVICE || st == JB_STATUS_ERR_NOMEM) {
        char msg[sizeof j->err_msg];
        snprintf(msg, sizeof msg, "%s", err);
        retry_elsewhere(w, j);
        fail(j, st == JB_STATUS_ERR_DEVICE ? "device" : "memory", msg);
        if (st == JB_STATUS_ERR_DEVICE) { /* a failed device context stays failed: start over */
            unload(w);
            jb_backend_free(w->be);
            w->be = NULL;
        }
        workers_kick();
    } else {
        fail(j, status_code(st), err);
    }
    jb_take_free(take);
    jb_take_free(src);
    jb_take_free(resume);
    submit_free(&sub);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&g_mu);
    while (!quitting) {
        if (w->want_unload && w->s) {
            pthread_mutex_unlock(&g_mu);
            unload(w);
            pthread_mutex_lock(&g_mu);
            continue;
        }
        struct job *j = pick(w);
        if (!j && w->want_load && !w->s) {
            w->want_load = false;
            pthread_mutex_unlock(&g_mu);
            char why[600];
            if (!ensure_loaded(w, why, sizeof why)) {
                daemon_log(JB_LOG_ERROR, "%s", why);
                pthread_mutex_lock(&g_mu);
                snprintf(w->load_err, sizeof w->load_err, "%s", why);
            } else {
                pthread_mutex_lock(&g_mu);
            }
            continue;
        }
        if (!j) {
            pthread_cond_wait(&w->cv, &g_mu);
            continue;
        }
        j->state    = JOB_RUNNING;
        j->has_prog = false;
        for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
            j->level_first_done[L] = -1;
        w->current    = j;
        w->last_owner = j->owner;
        snprintf(j->device, sizeof j->device, "%s", g_cfg.devices[w->dev]);
        j->device_index = w->dev;
        j->refs++; /* the worker's reference */
        j->seq++;
        pthread_mutex_unlock(&g_mu);
        store_job_state(j);
        daemon_notify();
        run_job(w, j);
        pthread_mutex_lock(&g_mu);
        w->current = NULL;
        j->refs--;
        j->seq++;
        pthread_mutex_unlock(&g_mu);
        daemon_notify();
        pthread_mutex_lock(&g_mu);
    }
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

bool workers_start(void)
{
    device_list[0] = '\0';
    for (int d = 0; d < g_cfg.n_devices; d++)
        snprintf(device_list + strlen(device_list),
                 sizeof device_list - strlen(device_list),
                 "%s%s",
                 d ? "," : "",
                 g_cfg.devices[d]);
    n_workers = g_cfg.n_sets * g_cfg.n_devices;
    for (int i = 0; i < n_workers; i++) {
        struct worker *w = &workers[i];
        w->set           = i / g_cfg.n_devices;
        w->dev           = i % g_cfg.n_devices;
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) return false;
        w->started = true;
    }
    return true;
}

void workers_kick(void)
{
    for (int i = 0; i < n_workers; i++)
        pthread_cond_signal(&workers[i].cv);
}

void workers_stop(void)
{
    pthread_mutex_lock(&g_mu);
    quitting = true;
    for (int i = 0; i < n_workers; i++) {
        if (workers[i].current) atomic_store(&workers[i].current->shutdown, true);
        pthread_cond_signal(&workers[i].cv);
    }
    pthread_cond_broadcast(&mem_cv);
    pthread_mutex_unlock(&g_mu);
    for (int i = 0; i < n_workers; i++)
        if (workers[i].started) {
            pthread_join(workers[i].th, NULL);
            jb_session_free(workers[i].s);
            jb_backend_free(workers[i].be);
            workers[i].s  = NULL;
            workers[i].be = NULL;
        }
}

bool worker_precheck(const struct submit *s, int64_t riff_n, char *code, char *why, size_t len)
{
    struct worker *w = NULL; /* any loaded worker of the set */
    for (int d = 0; d < g_cfg.n_devices && !w; d++)
        if (workers[s->set * g_cfg.n_devices + d].s) w = &workers[s->set * g_cfg.n_devices + d];
    if (!w) return true;
    enum jb_status st = jb_session_check_labels(w->s, s->p.artist, s->p.genre);
    if (!st && s->p.mode != JB_JOB_CONTINUE && s->p.mode != JB_JOB_UPSAMPLE) {
        struct jb_job_params p = s->p;
        p.riff_samples         = riff_n;
        /* the plan only measures the riff; a stand-in pointer keeps it from being read */
        static const float zero[1];
        p.riff = riff_n > 0 ? zero : NULL;
        struct jb_job_plan plan;
        st = riff_n > 0 || p.mode == JB_JOB_ANCESTRAL ? jb_job_plan(w->s, &p, &plan) : 0;
    }
    if (st) {
        snprintf(code, 32, "%s", status_code(st));
        snprintf(why, len, "%s", jb_last_error());
        return false;
    }
    return true;
}

/* A set: its first loaded worker's session (else its first worker), and per device whether it
 * is loaded there, the backend's memory and the job running there. g_mu held. */
static void describe_set(struct ep_msg *it, int i, bool labels)
{
    struct worker *w = &workers[i * g_cfg.n_devices];
    for (int d = 0; d < g_cfg.n_devices; d++) {
        struct worker *x = &workers[i * g_cfg.n_devices + d];
        if (x->s && !w->s) w = x;
        struct ep_msg *dv = ep_msg_new(NULL);
        if (!dv) continue;
        ep_msg_set_str(dv, "device", g_cfg.devices[d]);
        ep_msg_set_bool(dv, "loaded", x->s != NULL);
        if (x->current) ep_msg_set_int(dv, "running", x->current->id);
        if (x->s) {
            struct jb_session_info in;
            jb_session_get_info(x->s, &in);
            if (in.backend_total > 0) {
                ep_msg_set_int(dv, "backend_free", (int64_t)in.backend_free);
                ep_msg_set_int(dv, "backend_total", (int64_t)in.backend_total);
            }
        }
        ep_msg_add_item(it, "devices", dv);
        ep_msg_free(dv);
    }
    ep_msg_set_str(it, "name", g_cfg.sets[i].name);
    ep_msg_set_bool(it, "loaded", w->s != NULL);
    ep_msg_set_int(it, "bytes", g_cfg.sets[i].bytes);
    if (w->load_err[0]) ep_msg_set_str(it, "error", w->load_err);
    if (!w->s) return;
    const struct jb_session_info *in = &w->info;
    ep_msg_set_str(it, "kind", in->top_kind);
    ep_msg_set_bool(it, "lyrics", in->lyrics);
    ep_msg_set_double(it, "min_duration", in->min_duration);
    ep_msg_set_double(it, "max_duration", in->max_duration);
    ep_msg_set_double(it, "min_seconds", in->min_seconds);
    ep_msg_set_int(it, "levels", in->n_levels);
    ep_msg_set_int(it, "bins", in->bins);
    ep_msg_set_bool(it, "untrained", in->untrained);
    ep_msg_set_str(it, "dtype", "as stored");
    /* memory: each model's weights, what a candidate adds per level, the backend now */
    struct jb_session_info now;
    jb_session_get_info(w->s, &now);
    ep_msg_set_int(it, "vqvae_bytes", (int64_t)now.vqvae_bytes);
    for (int L = 0; L < now.n_levels; L++) {
        struct ep_msg *lv = ep_msg_new(NULL);
        if (!lv) break;
        ep_msg_set_int(lv, "level", L);
        ep_msg_set_int(lv, "prior_bytes", (int64_t)now.prior_bytes[L]);
        ep_msg_set_int(lv, "candidate_bytes", (int64_t)now.candidate_bytes[L]);
        ep_msg_add_item(it, "levels_memory", lv);
        ep_msg_free(lv);
    }
    if (now.backend_total > 0) {
        ep_msg_set_int(it, "backend_free", (int64_t)now.backend_free);
        ep_msg_set_int(it, "backend_total", (int64_t)now.backend_total);
    }
    const int64_t na = jb_session_label_count(w->s, false), ng = jb_session_label_count(w->s, true);
    ep_msg_set_int(it, "n_artists", na);
    ep_msg_set_int(it, "n_genres", ng);
    if (labels) {
        for (int64_t k = 0; k < na; k++)
            ep_msg_add_str(it, "artists", jb_session_label_name(w->s, false, k));
        for (int64_t k = 0; k < ng; k++)
            ep_msg_add_str(it, "genres", jb_session_label_name(w->s, true, k));
    }
}

void workers_describe(struct ep_msg *reply, bool labels, bool load)
{
    for (int i = 0; i < g_cfg.n_sets; i++) {
        struct worker *first = &workers[i * g_cfg.n_devices];
        if (load && !first->s) {
            first->want_load = true;
            pthread_cond_signal(&first->cv);
        }
        struct ep_msg *it = ep_msg_new(NULL);
        if (!it) return;
        describe_set(it, i, labels);
        ep_msg_add_item(reply, "sets", it);
        ep_msg_free(it);
    }
}
