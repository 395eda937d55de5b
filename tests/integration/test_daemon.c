/*
 * tests/integration/test_daemon.c - a real encored on a temporary socket and state folder,
 * driven through the protocol library, on the bundled default model:
 *   - a continuation through the daemon gives the in-process codes and audio (same seed);
 *   - audio at another client rate arrives resampled;
 *   - a client killed mid-stream, then a new one attaching by id, gets audio == uninterrupted;
 *   - kill -9 mid-job and a restart: the job resumes (fewer tokens sampled after the restart
 *     than the job's total) and its codes equal the uninterrupted run's;
 *   - cancel frees the worker within 1 s and the next queued job starts;
 *   - 32 clients at once all complete; 200 connections opened and dropped; a client that
 *     never reads does not stall the others;
 *   - hostile input answered by an error frame or a close while another client is served;
 *   - another uid is refused; an idle daemon uses < 0.1 s CPU in 10 s; SIGTERM exits 0.
 *
 * usage: test_daemon ENCORED MODEL_DIR ENCORE_CLI
 *   TEST_DAEMON_ONLY=word runs only the tests whose name holds it.
 */
#include "encore/engine.h"
#include "encore_proto.h"
#include "test_common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;
static char sock_path[256], state_dir[256], encored_bin[1024], model_dir[1024];
static pid_t daemon_pid;
static const char *only; /* run only the tests whose name holds this */
static char encore_cli[1024];
#define RUN(f)                                                                                     \
    if (!only || strstr(#f, only)) f()

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    ok ? passed++ : failed++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------- */
/* the daemon                                                                                */

static int try_open(void)
{
    char why[300];
    return ep_client_open(sock_path, "test", why, sizeof why);
}

static bool start_daemon(void)
{
    daemon_pid = fork();
    if (daemon_pid == 0) {
        char models[1100];
        snprintf(models, sizeof models, "default=%s", model_dir);
        execl(encored_bin,
              encored_bin,
              "--socket",
              sock_path,
              "--state",
              state_dir,
              "--models",
              models,
              "--threads",
              "1",
              "--riff-seconds",
              "10",
              "--job-seconds",
              "30",
              "--stall-seconds",
              "3",
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) { /* up to 20 s */
        int fd = try_open();
        if (fd >= 0) {
            close(fd);
            return true;
        }
        usleep(50000);
    }
    return false;
}

static int stop_daemon(int sig)
{
    kill(daemon_pid, sig);
    int status = 0;
    waitpid(daemon_pid, &status, 0);
    daemon_pid = 0;
    return status;
}

/* ---------------------------------------------------------------------------------------- */
/* a client following one job                                                                */

struct result {
    int64_t job, take, tokens_sampled;
    int64_t retry_job, device_index; /* from done/error (-1: not said) */
    char err_code[32], err_msg[512];
    float *audio[4]; /* final audio per candidate */
    int64_t len[4];
    int rate;
    int n_audio_events, n_progress;
    int64_t max_window, level_of_max;
    double t_first_progress;
    bool done;
};

static void result_free(struct result *r)
{
    for (int i = 0; i < 4; i++)
        free(r->audio[i]);
    memset(r, 0, sizeof *r);
}

static void take_audio(struct result *r, const struct ep_msg *m)
{
    char role[16] = "";
    int64_t c = 0, first = 0, rate = 0;
    size_t n = 0;
    ep_msg_get_strbuf(m, "role", role, sizeof role);
    ep_msg_get_int(m, "candidate", &c);
    ep_msg_get_int(m, "first", &first);
    ep_msg_get_int(m, "rate", &rate);
    r->rate    = (int)rate;
    float *pcm = ep_msg_get_f32(m, "pcm", 1 << 24, &n);
    r->n_audio_events++;
    if (pcm && !strcmp(role, "final") && c >= 0 && c < 4 && first >= 0) {
        if (first + (int64_t)n > r->len[c]) {
            r->audio[c] = realloc(r->audio[c], (size_t)(first + (int64_t)n) * sizeof(float));
            memset(
              r->audio[c] + r->len[c], 0, (size_t)(first + (int64_t)n - r->len[c]) * sizeof(float));
            r->len[c] = first + (int64_t)n;
        }
        memcpy(r->audio[c] + first, pcm, n * sizeof(float));
    }
    free(pcm);
}

/* Reads events until done/error, or until stop_after_final final-audio events (> 0) or a
 * progress at window >= stop_at_window of level 0 (>= 0). Returns false on timeout/close. */
static bool follow(int fd,
                   struct result *r,
                   double timeout,
                   int stop_after_final,
                   int stop_at_window)
{
    struct ep_reader rd;
    ep_reader_init(&rd, 0);
    const double t0 = now_s();
    bool ok         = false;
    int finals      = 0;
    while (now_s() - t0 < timeout) {
        struct ep_msg *m = NULL;
        char why[256];
        enum ep_read_result res = ep_recv_blocking(fd, &rd, 1000, &m, why, sizeof why);
        if (res == EP_READ_MORE) continue;
        if (res != EP_READ_MSG) break;
        const char *t = ep_msg_type(m);
        if (!strcmp(t, "accepted") || !strcmp(t, "attached")) ep_msg_get_int(m, "job", &r->job);
        if (!strcmp(t, "progress")) {
            int64_t level = 0, window = 0;
            ep_msg_get_int(m, "level", &level);
            ep_msg_get_int(m, "window", &window);
            if (!r->n_progress++) r->t_first_progress = now_s();
            if (level == 0 && window > r->max_window) r->max_window = window;
            if (stop_at_window >= 0 && level == 0 && window >= stop_at_window) {
                ep_msg_free(m);
                ok = true;
                break;
            }
        }
        if (!strcmp(t, "audio")) {
            char role[16] = "";
            ep_msg_get_strbuf(m, "role", role, sizeof role);
            take_audio(r, m);
            if (!strcmp(role, "final") && stop_after_final > 0 && ++finals >= stop_after_final) {
                ep_msg_free(m);
                ok = true;
                break;
            }
        }
        if (!strcmp(t, "done") || !strcmp(t, "error")) {
            r->device_index = -1;
            ep_msg_get_int(m, "device_index", &r->device_index);
            ep_msg_get_int(m, "retry_job", &r->retry_job);
        }
        if (!strcmp(t, "done")) {
            ep_msg_get_int(m, "take", &r->take);
            ep_msg_get_int(m, "tokens_sampled", &r->tokens_sampled);
            r->done = true;
            ok      = true;
        }
        if (!strcmp(t, "error")) {
            ep_msg_get_strbuf(m, "code", r->err_code, sizeof r->err_code);
            ep_msg_get_strbuf(m, "message", r->err_msg, sizeof r->err_msg);
            ok = true;
        }
        ep_msg_free(m);
        if (r->done || r->err_code[0]) break;
    }
    ep_reader_free(&rd);
    return ok;
}

/* Attaches fd to job (rate > 0 asks for that rate; 0 leaves the daemon's default) and follows
 * it until done/error; false on timeout/close. */
static bool attach_follow(int fd, int64_t job, int rate, struct result *r, double timeout)
{
    struct ep_msg *m = ep_msg_new("attach");
    ep_msg_set_int(m, "job", job);
    if (rate > 0) ep_msg_set_int(m, "rate", rate);
    bool ok = fd >= 0 && ep_send_blocking(fd, m, 0) && follow(fd, r, timeout, 0, -1);
    ep_msg_free(m);
    return ok;
}

/* the reference job: 1 s of the riff continued by 1 s, every level, one candidate */
static struct jb_audio riff;
static const int64_t RIFF_N = JB_SAMPLE_RATE;

static struct ep_msg *primed_submit(uint64_t seed, int rate, int finest)
{
    struct ep_msg *m = ep_msg_new("submit");
    ep_msg_set_str(m, "mode", "primed");
    ep_msg_set_double(m, "seconds", 1.0);
    ep_msg_set_int(m, "seed", (int64_t)seed);
    ep_msg_set_int(m, "finest_level", finest);
    ep_msg_set_int(m, "rate", rate);
    ep_msg_set_int(m, "riff_rate", JB_SAMPLE_RATE);
    ep_msg_set_int(m, "riff_channels", 1);
    ep_msg_set_int(m, "riff_frames", RIFF_N);
    return m;
}

static bool send_riff(int fd, const float *x, int64_t n, int chunk)
{
    for (int64_t at = 0; at < n; at += chunk) {
        struct ep_msg *c = ep_msg_new("riff");
        ep_msg_set_f32(c, "pcm", x + at, (size_t)(n - at < chunk ? n - at : chunk));
        bool ok = ep_send_blocking(fd, c, 0);
        ep_msg_free(c);
        if (!ok) return false;
    }
    return true;
}

static int submit_primed(uint64_t seed, int rate, int finest)
{
    int fd = try_open();
    if (fd < 0) return -1;
    struct ep_msg *m = primed_submit(seed, rate, finest);
    bool ok          = ep_send_blocking(fd, m, 0) && send_riff(fd, riff.samples, RIFF_N, 10000);
    ep_msg_free(m);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

static struct ep_msg *ask(int fd, struct ep_msg *req, const char *want)
{
    ep_send_blocking(fd, req, 0);
    ep_msg_free(req);
    struct ep_reader rd;
    ep_reader_init(&rd, 0);
    struct ep_msg *m = NULL;
    for (;;) {
        char why[256];
        if (ep_recv_blocking(fd, &rd, 20000, &m, why, sizeof why) != EP_READ_MSG) {
            m = NULL;
            break;
        }
        if (!strcmp(ep_msg_type(m), want) || !strcmp(ep_msg_type(m), "error")) break;
        ep_msg_free(m);
    }
    ep_reader_free(&rd);
    return m;
}

static bool codes_equal(int64_t take, const struct jb_take *ref)
{
    int fd = try_open();
    if (fd < 0) return false;
    struct jb_take_info ti;
    jb_take_get_info(ref, &ti);
    bool same = true;
    for (int L = 0; L < ti.n_levels && same; L++) {
        struct ep_msg *q = ep_msg_new("fetch");
        ep_msg_set_int(q, "take", take);
        ep_msg_set_str(q, "what", "codes");
        ep_msg_set_int(q, "level", L);
        ep_msg_set_int(q, "candidate", 0);
        struct ep_msg *m = ask(fd, q, "codes");
        size_t n         = 0;
        int32_t *codes   = m ? ep_msg_get_i32(m, "codes", 1 << 24, &n) : NULL;
        same             = codes && (int64_t)n == ti.n_tokens[L] &&
               !memcmp(codes, jb_take_codes(ref, L, 0), n * sizeof *codes);
        free(codes);
        ep_msg_free(m);
    }
    close(fd);
    return same;
}

/* ---------------------------------------------------------------------------------------- */

static struct jb_take *ref_take;
static float *ref_audio;
static int64_t ref_len, ref_tokens;

static void on_ref_audio(const struct jb_job_audio *a, void *user)
{
    (void)user;
    if (a->role == JB_AUDIO_FINAL && a->first_sample + a->n_samples <= ref_len)
        memcpy(ref_audio + a->first_sample, a->samples, (size_t)a->n_samples * sizeof(float));
}

static bool make_reference(void)
{
    struct jb_backend *be = jb_backend_init("cpu", 1);
    struct jb_session *s  = be ? jb_session_load(model_dir, be) : NULL;
    if (!s) return false;
    struct jb_job_params p;
    jb_job_params_init(&p);
    p.riff         = riff.samples;
    p.riff_samples = RIFF_N;
    p.seconds      = 1.0;
    p.seed         = 11;
    struct jb_job_plan plan;
    bool ok = jb_job_plan(s, &p, &plan) == JB_STATUS_OK;
    if (ok) {
        ref_len   = plan.sample_length;
        ref_audio = calloc((size_t)ref_len, sizeof *ref_audio);
        memcpy(ref_audio, riff.samples, (size_t)plan.riff_samples * sizeof(float));
        for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
            ref_tokens += plan.n_new[L] * plan.n_candidates;
        struct jb_job_callbacks cb = { .on_audio = on_ref_audio };
        ok                         = jb_job_run(s, &p, &cb, &ref_take) == JB_STATUS_OK;
    }
    jb_session_free(s);
    jb_backend_free(be);
    return ok;
}

static bool audio_equal(const struct result *r)
{
    return r->len[0] == ref_len && !memcmp(r->audio[0], ref_audio, (size_t)ref_len * 4);
}

static void test_parity(void)
{
    int fd          = submit_primed(11, JB_SAMPLE_RATE, 0);
    struct result r = { 0 };
    bool ok         = fd >= 0 && follow(fd, &r, 120, 0, -1);
    check(ok && r.done,
          "daemon continuation completes (job %lld, take %lld) %s",
          (long long)r.job,
          (long long)r.take,
          r.err_msg);
    check(r.done && audio_equal(&r),
          "its audio equals the in-process audio (%lld samples)",
          (long long)r.len[0]);
    check(r.done && codes_equal(r.take, ref_take), "its codes equal the in-process codes");
    if (fd >= 0) close(fd);
    result_free(&r);

    /* another client rate: resampled by the daemon */
    fd                = submit_primed(11, 48000, 2);
    ok                = fd >= 0 && follow(fd, &r, 120, 0, -1);
    const double want = (double)ref_len * 48000 / JB_SAMPLE_RATE;
    check(ok && r.done && r.rate == 48000 && fabs((double)r.len[0] - want) < 64,
          "audio at 48 kHz: %lld samples (expected about %.0f)",
          (long long)r.len[0],
          want);
    if (fd >= 0) close(fd);
    result_free(&r);
}

static void test_attach_after_kill(void)
{
    int fd          = submit_primed(11, JB_SAMPLE_RATE, 0);
    struct result a = { 0 }, b = { 0 };
    bool ok = fd >= 0 && follow(fd, &a, 120, 2, -1);
    if (fd >= 0) close(fd); /* the client dies mid-stream */
    check(ok && !a.done && a.job > 0,
          "first client got %d audio events, then disconnected",
          a.n_audio_events);
    int fd2 = try_open();
    ok      = attach_follow(fd2, a.job, JB_SAMPLE_RATE, &b, 120);
    /* joined: the first client's part, then the rest from the second (which replays it all) */
    bool prefix_same =
      a.len[0] > 0 && a.len[0] <= b.len[0] && !memcmp(a.audio[0], b.audio[0], (size_t)a.len[0] * 4);
    check(ok && b.done && prefix_same && audio_equal(&b),
          "attach by id replays then continues: joined audio equals the uninterrupted run");
    if (fd2 >= 0) close(fd2);
    result_free(&a);
    result_free(&b);
}

static void test_kill9_resume(void)
{
    int fd          = submit_primed(11, JB_SAMPLE_RATE, 0);
    struct result a = { 0 }, b = { 0 };
    bool ok     = fd >= 0 && follow(fd, &a, 120, 0, 2); /* level 0, window 2: checkpoints */
    int64_t job = a.job;
    stop_daemon(SIGKILL);
    if (fd >= 0) close(fd);
    check(ok && job > 0,
          "kill -9 at level 0 window %lld of job %lld",
          (long long)a.max_window,
          (long long)job);
    check(start_daemon(), "encored restarts on the same state folder");
    int fd2 = try_open();
    ok      = attach_follow(fd2, job, 0, &b, 120);
    check(ok && b.done, "the interrupted job finishes after the restart %s", b.err_msg);
    check(b.done && b.tokens_sampled > 0 && b.tokens_sampled < ref_tokens,
          "it resumed: %lld tokens sampled after the restart, of %lld",
          (long long)b.tokens_sampled,
          (long long)ref_tokens);
    check(b.done && codes_equal(b.take, ref_take), "resumed codes equal the uninterrupted run's");
    if (fd2 >= 0) close(fd2);
    result_free(&a);
    result_free(&b);
}

static struct ep_msg *small_job(int64_t seed)
{
    struct ep_msg *m = ep_msg_new("submit");
    ep_msg_set_str(m, "mode", "ancestral");
    ep_msg_set_double(m, "seconds", 0.75);
    ep_msg_set_int(m, "finest_level", 2);
    ep_msg_set_int(m, "seed", seed);
    return m;
}

static void test_cancel(void)
{
    int fa = try_open(), fb = try_open();
    struct ep_msg *m = ep_msg_new("submit");
    ep_msg_set_str(m, "mode", "ancestral");
    ep_msg_set_double(m, "seconds", 20);
    ep_msg_set_int(m, "finest_level", 0);
    ep_send_blocking(fa, m, 0);
    ep_msg_free(m);
    struct result a = { 0 }, b = { 0 };
    /* wait for A's first progress (it runs) */
    struct ep_reader rd;
    ep_reader_init(&rd, 0);
    bool running = false;
    for (double t0 = now_s(); !running && now_s() - t0 < 30;) {
        struct ep_msg *e = NULL;
        char why[256];
        if (ep_recv_blocking(fa, &rd, 1000, &e, why, sizeof why) != EP_READ_MSG) continue;
        if (!strcmp(ep_msg_type(e), "accepted")) ep_msg_get_int(e, "job", &a.job);
        running = !strcmp(ep_msg_type(e), "progress");
        ep_msg_free(e);
    }
    ep_reader_free(&rd);
    m = small_job(3);
    ep_send_blocking(fb, m, 0); /* queued behind A */
    ep_msg_free(m);
    const double t_cancel = now_s();
    int fc                = try_open();
    m                     = ep_msg_new("cancel");
    ep_msg_set_int(m, "job", a.job);
    struct ep_msg *rep = ask(fc, m, "cancelled");
    check(rep && !strcmp(ep_msg_type(rep), "cancelled"), "cancel is acknowledged");
    ep_msg_free(rep);
    follow(fa, &a, 10, 0, -1);
    const double freed = now_s() - t_cancel;
    check(!strcmp(a.err_code, "cancelled") && freed < 1.0,
          "the running job ends 'cancelled' %.3f s after the cancel (< 1 s)",
          freed);
    follow(fb, &b, 60, 0, -1);
    check(b.done && b.n_progress > 0, "the next queued job starts and completes");
    close(fa);
    close(fb);
    close(fc);
    result_free(&a);
    result_free(&b);
}

static void test_many_clients(void)
{
    enum { N = 32 };
    int fds[N];
    int opened = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = try_open();
        if (fds[i] < 0) continue;
        opened++;
        struct ep_msg *m = small_job(100 + i);
        ep_send_blocking(fds[i], m, 0);
        ep_msg_free(m);
    }
    int done = 0;
    for (int i = 0; i < N; i++) {
        if (fds[i] < 0) continue;
        struct result r = { 0 };
        follow(fds[i], &r, 120, 0, -1);
        done += r.done;
        close(fds[i]);
        result_free(&r);
    }
    check(opened == N && done == N,
          "32 clients at once: %d connected, %d jobs completed",
          opened,
          done);

    /* 200 connections opened and dropped (some mid-frame), then the daemon still answers */
    int refused = 0;
    for (int i = 0; i < 200; i++) {
        int fd = ep_connect(sock_path, false);
        if (fd < 0) {
            refused++;
            continue;
        }
        if (i % 3 == 1) {
            static const uint8_t half[6] = { 0, 0, 0, 50, 0xa1, 0x64 };
            if (write(fd, half, sizeof half) < 0) refused++;
        }
        close(fd);
    }
    /* dropped connections count against the client limit until the loop has seen them go */
    int fd = -1;
    for (int i = 0; i < 50 && fd < 0; i++)
        if ((fd = try_open()) < 0) usleep(100000);
    struct ep_msg *s = fd >= 0 ? ask(fd, ep_msg_new("status"), "status") : NULL;
    check(refused == 0 && s && !strcmp(ep_msg_type(s), "status"),
          "200 connections opened and dropped (%d failed); the daemon still answers (%s)",
          refused,
          s ? ep_msg_type(s) : "no reply");
    ep_msg_free(s);
    if (fd >= 0) close(fd);
}

static void test_slow_client(void)
{
    /* a client that submits a streamed job and never reads */
    int slow = submit_primed(12, 192000, 0);
    /* asks for lots of replies too, to fill its socket */
    for (int i = 0; slow >= 0 && i < 2000; i++) {
        struct ep_msg *m = ep_msg_new("jobs");
        struct ep_writer w;
        ep_writer_init(&w, 0);
        ep_writer_push_msg(&w, m, 0);
        bool sent = ep_writer_flush(&w, slow) == 1; /* non-blocking: stop when full */
        ep_writer_free(&w);
        ep_msg_free(m);
        if (!sent) break;
    }
    const double t0  = now_s();
    int fd           = try_open();
    struct ep_msg *m = small_job(7);
    ep_send_blocking(fd, m, 0);
    ep_msg_free(m);
    struct result r = { 0 };
    follow(fd, &r, 120, 0, -1);
    check(r.done,
          "a client that never reads does not stall another (its job done in %.1f s)",
          now_s() - t0);
    int st_fd        = try_open();
    struct ep_msg *s = st_fd >= 0 ? ask(st_fd, ep_msg_new("status"), "status") : NULL;
    check(s != NULL, "the daemon keeps answering with a non-reading client connected");
    ep_msg_free(s);
    /* it read nothing for longer than --stall-seconds 3: the daemon dropped it */
    sleep(5);
    bool eof = false;
    char junk[65536];
    for (double t1 = now_s(); slow >= 0 && !eof && now_s() - t1 < 20;) {
        ssize_t n = recv(slow, junk, sizeof junk, MSG_DONTWAIT);
        if (n == 0) eof = true;
        if (n < 0 && errno != EAGAIN) eof = true;
        if (n < 0 && errno == EAGAIN) usleep(10000);
    }
    check(eof, "a client that reads nothing for --stall-seconds is dropped");
    close(fd);
    if (st_fd >= 0) close(st_fd);
    if (slow >= 0) close(slow);
    result_free(&r);
}

/* one hostile exchange on a fresh connection: an error frame or a close must follow */
static void hostile(const char *name,
                    const uint8_t *bytes,
                    size_t n,
                    bool after_hello,
                    const char *want_code)
{
    int fd = after_hello ? try_open() : ep_connect(sock_path, false);
    if (fd < 0) {
        check(false, "%s: cannot connect", name);
        return;
    }
    ssize_t w = write(fd, bytes, n);
    (void)w;
    struct ep_reader rd;
    ep_reader_init(&rd, 0);
    struct ep_msg *m = NULL;
    char why[256] = "", code[32] = "";
    bool closed = false, answered = false;
    for (double t0 = now_s(); now_s() - t0 < 20 && !answered && !closed;) {
        enum ep_read_result res = ep_recv_blocking(fd, &rd, 2000, &m, why, sizeof why);
        if (res == EP_READ_MSG) {
            if (!strcmp(ep_msg_type(m), "error")) {
                answered = true;
                ep_msg_get_strbuf(m, "code", code, sizeof code);
            }
            ep_msg_free(m);
        } else if (res != EP_READ_MORE) {
            closed = true;
        } else if (!want_code) {
            break; /* a truncated frame: nothing to answer yet */
        }
    }
    ep_reader_free(&rd);
    close(fd);
    /* meanwhile another client is served */
    int g            = try_open();
    struct ep_msg *s = g >= 0 ? ask(g, ep_msg_new("status"), "status") : NULL;
    const bool alive = s && !strcmp(ep_msg_type(s), "status");
    ep_msg_free(s);
    if (g >= 0) close(g);
    bool ok =
      alive &&
      (want_code ? (answered && !strcmp(code, want_code)) || (closed && !*want_code) : true);
    check(ok,
          "hostile input '%s': %s%s, daemon still serving",
          name,
          answered ? "error "
          : closed ? "closed"
                   : "no answer",
          code);
}

static size_t frame_of(struct ep_msg *m, uint8_t *buf, size_t cap)
{
    uint8_t *f;
    size_t n = 0;
    if (ep_msg_encode(m, 0, &f, &n) && n <= cap)
        memcpy(buf, f, n);
    else
        n = 0;
    if (n) free(f);
    ep_msg_free(m);
    return n;
}

static void test_hostile(void)
{
    uint8_t buf[1 << 16];
    size_t n;
    static const uint8_t trunc[] = { 0, 0, 0, 100, 0xa1, 0x64, 't' };
    hostile("truncated frame", trunc, sizeof trunc, true, NULL);
    static const uint8_t huge[] = { 0x80, 0, 0, 0, 0xa1 };
    hostile("length 2^31", huge, sizeof huge, true, "bad_message");
    static const uint8_t garbage[] = { 0, 0, 0, 8, 0xff, 0x13, 0x99, 0x01, 0xde, 0xad, 0xbe, 0xef };
    hostile("garbage bytes", garbage, sizeof garbage, true, "bad_message");
    struct ep_msg *m = ep_msg_new("hello");
    ep_msg_set_int(m, "version", 99);
    n = frame_of(m, buf, sizeof buf);
    hostile("wrong version", buf, n, false, "version");
    n = frame_of(ep_msg_new("submit"), buf, sizeof buf);
    hostile("no hello first", buf, n, false, "version");
    n = frame_of(ep_msg_new("transmogrify"), buf, sizeof buf);
    hostile("unknown message type", buf, n, true, "unknown_type");
    /* lyrics with invalid UTF-8: hand-assembled CBOR (the library refuses to build it) */
    static const uint8_t bad_utf8[] = {
        0,   0,    0,   18,  0xa2, 0x64, 't', 'y', 'p',  'e',  0x61,
        'x', 0x66, 'l', 'y', 'r',  'i',  'c', 's', 0x62, 0xc3, 0x28
    };
    hostile("invalid UTF-8 lyrics", bad_utf8, sizeof bad_utf8, true, "bad_message");
    m = small_job(1);
    ep_msg_set_str(m, "artist", "no such artist anywhere");
    n = frame_of(m, buf, sizeof buf);
    hostile("unknown artist", buf, n, true, "unknown_label");
    m = primed_submit(1, JB_SAMPLE_RATE, 2);
    ep_msg_set_int(m, "riff_frames", 3600LL * JB_SAMPLE_RATE);
    n = frame_of(m, buf, sizeof buf);
    hostile("riff over the limit", buf, n, true, "limit");
    m = primed_submit(1, JB_SAMPLE_RATE, 2);
    ep_msg_set_int(m, "riff_frames", 0);
    n = frame_of(m, buf, sizeof buf);
    hostile("empty riff", buf, n, true, "invalid_arg");
    const int rates[2] = { 0, 1000000000 };
    for (int i = 0; i < 2; i++) {
        m = primed_submit(1, JB_SAMPLE_RATE, 2);
        ep_msg_set_int(m, "riff_rate", rates[i]);
        n = frame_of(m, buf, sizeof buf);
        hostile(i ? "riff rate 1e9" : "riff rate 0", buf, n, true, "invalid_arg");
    }
    const float bad_vals[2] = { NAN, INFINITY };
    for (int i = 0; i < 2; i++) {
        n                 = frame_of(primed_submit(1, JB_SAMPLE_RATE, 2), buf, sizeof buf);
        float pcm[256]    = { 0 };
        pcm[100]          = bad_vals[i];
        struct ep_msg *rf = ep_msg_new("riff");
        ep_msg_set_f32(rf, "pcm", pcm, 256);
        n += frame_of(rf, buf + n, sizeof buf - n);
        hostile(i ? "infinite samples" : "NaN samples", buf, n, true, "invalid_arg");
    }
}

static void test_other_uid(void)
{
    if (getuid() != 0) {
        printf("SKIP another uid: the test is not root, cannot drop to another uid\n");
        return;
    }
    for (int open_perms = 0; open_perms < 2; open_perms++) {
        if (open_perms) { /* let the file system allow it: SO_PEERCRED must still refuse */
            char dir[256];
            snprintf(dir, sizeof dir, "%s", sock_path);
            *strrchr(dir, '/') = '\0';
            chmod(dir, 0777);
            chmod(sock_path, 0777);
        }
        pid_t p = fork();
        if (p == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
            int fd = try_open();
            _exit(fd >= 0 ? 1 : 0); /* 0: refused */
        }
        int st = 0;
        waitpid(p, &st, 0);
        check(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "a connection from uid 65534 is refused (%s)",
              open_perms ? "socket made world-writable: SO_PEERCRED"
                         : "socket 0600 in a 0700 folder");
    }
}

/* A second daemon with its own socket and state, a file size limit (a disk that fills up) and
 * a takes quota of one byte (each new take evicts the older ones). */
/* Polls (up to 10 s) until a daemon just started on sock completes a handshake. */
static void wait_until_serving(const char *sock)
{
    for (int i = 0; i < 200; i++) {
        char why[300];
        int fd = ep_client_open(sock, "test", why, sizeof why);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(50000);
    }
}

static pid_t spawn_limited(const char *sock, const char *state, long fsize, const char *quota)
{
    pid_t p = fork();
    if (p == 0) {
        char models[1100];
        snprintf(models, sizeof models, "default=%s", model_dir);
        if (fsize > 0) {
            struct rlimit rl = { (rlim_t)fsize, (rlim_t)fsize };
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execl(encored_bin,
              encored_bin,
              "--socket",
              sock,
              "--state",
              state,
              "--models",
              models,
              "--threads",
              "1",
              "--takes-quota",
              quota,
              (char *)NULL);
        _exit(127);
    }
    wait_until_serving(sock);
    return p;
}

static int run_small(const char *sock, double seconds, int finest, int cands, struct result *r)
{
    char why[300];
    int fd = ep_client_open(sock, "test", why, sizeof why);
    if (fd < 0) return -1;
    struct ep_msg *m = small_job(5);
    ep_msg_set_double(m, "seconds", seconds);
    ep_msg_set_int(m, "finest_level", finest);
    ep_msg_set_int(m, "candidates", cands);
    ep_send_blocking(fd, m, 0);
    ep_msg_free(m);
    follow(fd, r, 120, 0, -1);
    close(fd);
    return 0;
}

static bool take_exists(const char *sock, int64_t take)
{
    char why[300];
    int fd = ep_client_open(sock, "test", why, sizeof why);
    if (fd < 0) return false;
    struct ep_msg *q = ep_msg_new("fetch");
    ep_msg_set_int(q, "take", take);
    ep_msg_set_str(q, "what", "codes");
    ep_msg_set_int(q, "level", 2); /* the small jobs render the top level only */
    struct ep_msg *m = ask(fd, q, "codes");
    bool ok          = m && !strcmp(ep_msg_type(m), "codes");
    ep_msg_free(m);
    close(fd);
    return ok;
}

static void test_disk_and_quota(void)
{
    char sock[320], state[320];
    /* quota: one byte keeps only the newest take */
    snprintf(sock, sizeof sock, "%s.quota", sock_path);
    snprintf(state, sizeof state, "%s.quota", state_dir);
    pid_t p         = spawn_limited(sock, state, 0, "1");
    struct result a = { 0 }, b = { 0 };
    run_small(sock, 0.75, 2, 1, &a);
    run_small(sock, 0.75, 2, 1, &b);
    const bool gone = !take_exists(sock, a.take), kept = take_exists(sock, b.take);
    check(a.done && b.done && gone && kept,
          "takes quota: the least recently used take is evicted (%s), the newest kept (%s)",
          gone ? "yes" : "no",
          kept ? "yes" : "no");
    kill(p, SIGTERM);
    waitpid(p, NULL, 0);
    result_free(&a);
    result_free(&b);

    /* a full disk: files may not grow past 200 KB; the checkpoint of a 3 s take of 4 candidates
     * (350 KB) does */
    snprintf(sock, sizeof sock, "%s.full", sock_path);
    snprintf(state, sizeof state, "%s.full", state_dir);
    p = spawn_limited(sock, state, 200 * 1024, "0");
    run_small(sock, 3.0, 0, 4, &a);
    check(
      !a.done && !strcmp(a.err_code, "io"), "a full disk fails the job with 'io': %s", a.err_msg);
    char why[300];
    int fd           = ep_client_open(sock, "test", why, sizeof why);
    struct ep_msg *s = fd >= 0 ? ask(fd, ep_msg_new("status"), "status") : NULL;
    check(s && !strcmp(ep_msg_type(s), "status"), "the daemon goes on after the full disk");
    ep_msg_free(s);
    if (fd >= 0) close(fd);
    /* nothing half-written is left among the takes */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s/takes')\"", state);
    check(system(cmd) == 0, "no partial take file is left behind");
    kill(p, SIGTERM);
    waitpid(p, NULL, 0);
    result_free(&a);
}

/* The encore CLI against the test's daemon; its exit status. Each run has CLI_LIMIT_S (coreutils'
 * timeout, then SIGKILL 10 s later), so a client that never returns fails its check with a message
 * instead of holding the test until ctest's limit. */
enum { CLI_LIMIT_S = 300 };

static int cli(const char *args)
{
    char cmd[4096];
    snprintf(cmd,
             sizeof cmd,
             "ENCORE_SOCKET='%s' ENCORE_PROGRESS=0 timeout -k 10 %d '%s' %s 2>>'%s.cli.log'",
             sock_path,
             (int)CLI_LIMIT_S,
             encore_cli,
             args,
             state_dir);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc == 124 || rc == 137)
        printf("# encore %s: still running after %d s, killed\n", args, (int)CLI_LIMIT_S);
    return rc;
}

static bool same_file(const char *a, const char *b)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* Replays of a finished job whose audio (two levels, the final one alone 1.6 MB) is more than
 * encored queues for a client at once (1 MiB): the rest must follow as the client drains it.
 * encored once lost that wakeup when one flush emptied the queue, and about 1 replay in 8 then
 * waited forever under ASan (one run of 30 replays in two hit it). */
static void replay_many(int64_t id)
{
    const int n_replays = 100;
    struct result first = { 0 };
    int n_done          = 0;
    bool same           = true;
    double worst        = 0;
    for (int i = 0; i < n_replays; i++) {
        int fd            = try_open();
        struct result r   = { 0 };
        const double t0   = now_s();
        const bool ok     = attach_follow(fd, id, 0, &r, 30) && r.done;
        const double took = now_s() - t0;
        if (fd >= 0) close(fd);
        if (took > worst) worst = took;
        if (!ok) {
            result_free(&r);
            break;
        }
        n_done++;
        if (i == 0) {
            first = r;
            continue;
        }
        same = same && r.len[0] == first.len[0] &&
               !memcmp(r.audio[0], first.audio[0], (size_t)first.len[0] * sizeof(float));
        result_free(&r);
    }
    check(n_done == n_replays && same && first.len[0] > JB_SAMPLE_RATE,
          "%d of %d replays of finished job %lld end with done, the same %lld final samples each "
          "(slowest %.2f s, 30 s allowed)",
          n_done,
          n_replays,
          (long long)id,
          (long long)first.len[0],
          worst);
    result_free(&first);
}

/* the CLI as a client: same files as in process; status, jobs, cancel, attach */
static void test_cli_client(void)
{
    char args[3000], a[400], b[400], ta[400], tb[400], c[400];
    snprintf(a, sizeof a, "%s.inproc.wav", state_dir);
    snprintf(b, sizeof b, "%s.daemon.wav", state_dir);
    snprintf(ta, sizeof ta, "%s.inproc.take", state_dir);
    snprintf(tb, sizeof tb, "%s.daemon.take", state_dir);
    snprintf(c, sizeof c, "%s.attach.wav", state_dir);
    const char *common = "--seconds 1 --levels 1 --seed 21 --threads 1";
    snprintf(args,
             sizeof args,
             "continue '%s/riff.wav' %s -o '%s' --save-take '%s'",
             model_dir,
             common,
             a,
             ta);
    const int rc_in = cli(args);
    snprintf(args,
             sizeof args,
             "continue --daemon '%s/riff.wav' %s -o '%s' --save-take '%s'",
             model_dir,
             common,
             b,
             tb);
    const int rc_d = cli(args);
    check(rc_in == 0 && rc_d == 0 && same_file(a, b) && same_file(ta, tb),
          "encore continue --daemon writes the same audio and take files as in process");
    check(cli("status > /dev/null") == 0 && cli("jobs > /dev/null") == 0,
          "encore status and encore jobs talk to the daemon");
    check(cli("cancel 999999") == 1, "encore cancel of an unknown job fails with a message");
    /* the newest job is the continuation above: attach replays its final audio */
    int fd            = try_open();
    struct ep_msg *j  = fd >= 0 ? ask(fd, ep_msg_new("jobs"), "jobs") : NULL;
    struct ep_msg *it = j ? ep_msg_list_item(j, "jobs", 0) : NULL;
    int64_t id        = 0;
    ep_msg_get_int(it, "job", &id);
    ep_msg_free(it);
    ep_msg_free(j);
    if (fd >= 0) close(fd);
    snprintf(args, sizeof args, "attach %lld -o '%s'", (long long)id, c);
    check(id > 0 && cli(args) == 0 && same_file(a, c),
          "encore attach %lld -o OUT writes the same audio",
          (long long)id);
    replay_many(id);
}

/* socket activation as systemd does it (LISTEN_FDS), through systemd-socket-activate */
static void test_socket_activation(void)
{
    const char *tool = "/usr/bin/systemd-socket-activate";
    if (access(tool, X_OK) != 0) {
        printf("SKIP socket activation: %s is not installed (package systemd)\n", tool);
        return;
    }
    char sock2[300], state2[300], models[1100];
    snprintf(sock2, sizeof sock2, "%s.activated", sock_path);
    snprintf(state2, sizeof state2, "%s.activated", state_dir);
    snprintf(models, sizeof models, "default=%s", model_dir);
    pid_t p = fork();
    if (p == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        execl(tool,
              tool,
              "-l",
              sock2,
              encored_bin,
              "--state",
              state2,
              "--models",
              models,
              (char *)NULL);
        _exit(127);
    }
    int fd        = -1;
    char why[300] = "";
    for (int i = 0; i < 100 && fd < 0; i++) {
        fd = ep_client_open(sock2, "test", why, sizeof why);
        if (fd < 0) usleep(100000);
    }
    struct ep_msg *s = fd >= 0 ? ask(fd, ep_msg_new("status"), "status") : NULL;
    char got[300]    = "";
    ep_msg_get_strbuf(s, "daemon", got, sizeof got);
    check(s && !strncmp(got, "encored", 7),
          "socket activation: encored serves the socket passed "
          "by systemd-socket-activate (%s)",
          fd < 0 ? why : got);
    ep_msg_free(s);
    if (fd >= 0) close(fd);
    kill(p, SIGTERM);
    int st = 0;
    waitpid(p, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "socket-activated encored exits 0 on SIGTERM");
}

/* status reports memory per model and per candidate, and the backend's (after jobs ran, so the
 * set is loaded). */
static void test_status_memory(void)
{
    int fd           = try_open();
    struct ep_msg *s = NULL, *set = NULL;
    bool loaded = false;
    for (int i = 0; i < 100 && fd >= 0 && !loaded; i++) { /* load the set if it is not yet */
        ep_msg_free(set);
        ep_msg_free(s);
        struct ep_msg *q = ep_msg_new("status");
        ep_msg_set_bool(q, "load", true);
        s   = ask(fd, q, "status");
        set = s && ep_msg_list_len(s, "sets") > 0 ? ep_msg_list_item(s, "sets", 0) : NULL;
        if (!set || !ep_msg_get_bool(set, "loaded", &loaded) || !loaded) usleep(100000);
    }
    int64_t vq = 0, fr = 0, tot = 0;
    bool ok = set && ep_msg_get_int(set, "vqvae_bytes", &vq) && vq > 0 &&
              ep_msg_get_int(set, "backend_free", &fr) &&
              ep_msg_get_int(set, "backend_total", &tot) && fr > 0 && fr <= tot &&
              ep_msg_list_len(set, "levels_memory") == 3;
    for (size_t k = 0; ok && k < 3; k++) {
        struct ep_msg *lv = ep_msg_list_item(set, "levels_memory", k);
        int64_t pb = 0, cb = 0;
        ok = lv && ep_msg_get_int(lv, "prior_bytes", &pb) &&
             ep_msg_get_int(lv, "candidate_bytes", &cb) && pb > 0 && cb > 0;
        ep_msg_free(lv);
    }
    check(ok,
          "status: memory of each model and per candidate, backend %.0f MB free of %.0f MB",
          (double)fr / 1e6,
          (double)tot / 1e6);
    ep_msg_free(set);
    ep_msg_free(s);
    if (fd >= 0) close(fd);
}

/* encored with two devices: "cpu,cpu" stands for two GPUs (the scheduling and the retry do not
 * depend on the backend); TEST_DAEMON_DEVICES names others (tools/gpu-check.sh: cuda:0,cuda:0). */
static pid_t spawn_devices(const char *sock, const char *state, const char *inject)
{
    const char *devices = getenv("TEST_DAEMON_DEVICES");
    if (!devices || !*devices) devices = "cpu,cpu";
    pid_t p = fork();
    if (p == 0) {
        char models[1100];
        snprintf(models, sizeof models, "default=%s", model_dir);
        if (inject) setenv("ENCORED_INJECT_DEVICE_FAILURE", inject, 1);
        execl(encored_bin,
              encored_bin,
              "--socket",
              sock,
              "--state",
              state,
              "--models",
              models,
              "--threads",
              "1",
              "--device",
              devices,
              (char *)NULL);
        _exit(127);
    }
    wait_until_serving(sock);
    return p;
}

/* SIGTERM to a two-device encored, which must exit 0; then its folder goes. */
static void stop_devices(pid_t p, const char *dir)
{
    kill(p, SIGTERM);
    int status = 0;
    waitpid(p, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "two-device encored exits 0");
    tc_rmtree(dir);
}

static void test_devices(void)
{
    char dir[] = "/tmp/encore-devices-XXXXXX";
    if (!mkdtemp(dir)) return;
    char sock[300], state[300], why[300];
    snprintf(sock, sizeof sock, "%s/s.sock", dir);
    snprintf(state, sizeof state, "%s/state", dir);

    /* jobs spread: two submitted at once run on both devices */
    pid_t p         = spawn_devices(sock, state, NULL);
    int fa          = ep_client_open(sock, "test", why, sizeof why),
        fb          = ep_client_open(sock, "test", why, sizeof why);
    struct result a = { 0 }, b = { 0 };
    struct ep_msg *m = small_job(21);
    ep_msg_set_double(m, "seconds", 3.0);
    if (fa >= 0) ep_send_blocking(fa, m, 0);
    ep_msg_free(m);
    m = small_job(22);
    ep_msg_set_double(m, "seconds", 3.0);
    if (fb >= 0) ep_send_blocking(fb, m, 0);
    ep_msg_free(m);
    bool ok = fa >= 0 && fb >= 0 && follow(fa, &a, 120, 0, -1) && follow(fb, &b, 120, 0, -1);
    check(ok && a.done && b.done && a.device_index + b.device_index == 1,
          "two devices: two jobs at once ran on devices %lld and %lld",
          (long long)a.device_index,
          (long long)b.device_index);
    if (fa >= 0) close(fa);
    if (fb >= 0) close(fb);
    result_free(&a);
    result_free(&b);
    stop_devices(p, dir);
}

#ifdef ENCORE_TEST_HOOKS
/* A device failure (injected: encored's ENCORED_INJECT_DEVICE_FAILURE, compiled in only with
 * ENCORE_TEST_HOOKS) fails the job with an error event, the daemon keeps serving and the job runs
 * again on the other device. */
static void test_device_retry(void)
{
    char dir[] = "/tmp/encore-retry-XXXXXX";
    if (!mkdtemp(dir)) return;
    char sock[300], state[300], why[300];
    snprintf(sock, sizeof sock, "%s/s.sock", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    pid_t p              = spawn_devices(sock, state, "first");
    int64_t retried_done = 0, dev_retry = -1;
    int fd           = ep_client_open(sock, "test", why, sizeof why);
    struct ep_msg *m = small_job(23);
    struct result r = { 0 }, s = { 0 };
    bool ok;
    if (fd >= 0) ep_send_blocking(fd, m, 0);
    ep_msg_free(m);
    ok = fd >= 0 && follow(fd, &r, 120, 0, -1);
    check(ok && !strcmp(r.err_code, "device") && r.device_index >= 0 && r.retry_job > 0,
          "injected failure on device %lld: error event '%s' (%s), retried as job %lld",
          (long long)r.device_index,
          r.err_code,
          r.err_msg,
          (long long)r.retry_job);
    if (r.retry_job > 0) {
        int fd2      = ep_client_open(sock, "test", why, sizeof why);
        ok           = attach_follow(fd2, r.retry_job, JB_SAMPLE_RATE, &s, 120);
        retried_done = s.done ? s.take : 0;
        dev_retry    = s.device_index;
        if (fd2 >= 0) close(fd2);
    }
    check(retried_done > 0 && dev_retry >= 0 && dev_retry != r.device_index,
          "the retry ran on the other device (%lld) and made take %lld",
          (long long)dev_retry,
          (long long)retried_done);
    struct ep_msg *st = fd >= 0 ? ask(fd, ep_msg_new("status"), "status") : NULL;
    struct ep_msg *set =
      st && ep_msg_list_len(st, "sets") > 0 ? ep_msg_list_item(st, "sets", 0) : NULL;
    check(set && ep_msg_list_len(set, "devices") == 2,
          "the daemon keeps serving: status lists %zu devices",
          set ? ep_msg_list_len(set, "devices") : 0);
    ep_msg_free(set);
    ep_msg_free(st);
    if (fd >= 0) close(fd);
    result_free(&r);
    result_free(&s);
    stop_devices(p, dir);
}
#endif

static void test_idle_cpu(void)
{
    const double a = tc_cpu_seconds(daemon_pid);
    sleep(10);
    const double b = tc_cpu_seconds(daemon_pid);
    check(a >= 0 && b - a < 0.1, "idle daemon (model loaded): %.3f s CPU in 10 s (< 0.1)", b - a);
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    snprintf(encored_bin, sizeof encored_bin, "%s", argv[1]);
    snprintf(model_dir, sizeof model_dir, "%s", argv[2]);
    only = getenv("TEST_DAEMON_ONLY");
    /* the injected device failure needs an encored built with ENCORE_TEST_HOOKS (never a
     * release); it runs only when asked for (its own ctest, registered with the option) */
    const bool retry_only = only && strcmp(only, "test_device_retry") == 0;
#ifndef ENCORE_TEST_HOOKS
    if (retry_only) {
        printf("SKIP test_device_retry: built without ENCORE_TEST_HOOKS, so encored has no "
               "injected device failure (configure with -DENCORE_TEST_HOOKS=ON)\n");
        return 77;
    }
#endif
    snprintf(encore_cli, sizeof encore_cli, "%s", argc > 3 ? argv[3] : "encore");
    char path[1200];
    snprintf(path, sizeof path, "%s/riff.wav", model_dir);
    if (access(path, R_OK) != 0) {
        printf("SKIP: no default model at %s\n", model_dir);
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    if (jb_audio_read(path, JB_SAMPLE_RATE, 0, &riff) || riff.n_samples < RIFF_N) return 1;
    char tmpl[] = "/tmp/encore-daemon-test-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    snprintf(sock_path, sizeof sock_path, "%s/run/encored.sock", tmpl);
    snprintf(state_dir, sizeof state_dir, "%s/state", tmpl);
    if (!only || strstr("test_parity test_attach_after_kill test_kill9_resume", only))
        check(make_reference(), "in-process reference job runs");
    check(start_daemon(), "encored starts on %s", sock_path);
    if (daemon_pid > 0) {
        struct stat st;
        char dir[256];
        snprintf(dir, sizeof dir, "%s/run", tmpl);
        check(stat(sock_path, &st) == 0 && (st.st_mode & 0777) == 0600 && stat(dir, &st) == 0 &&
                (st.st_mode & 0777) == 0700,
              "socket 0600 in a 0700 folder");
        RUN(test_parity);
        RUN(test_attach_after_kill);
        RUN(test_kill9_resume);
        RUN(test_cancel);
        RUN(test_many_clients);
        RUN(test_slow_client);
        RUN(test_hostile);
        RUN(test_status_memory);
        RUN(test_devices);
#ifdef ENCORE_TEST_HOOKS
        if (retry_only) test_device_retry();
#endif
        RUN(test_idle_cpu);
        RUN(test_other_uid);
        RUN(test_socket_activation);
        RUN(test_cli_client);
        RUN(test_disk_and_quota);
        int status = stop_daemon(SIGTERM);
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM: encored exits 0");
    }
    jb_take_free(ref_take);
    free(ref_audio);
    jb_audio_free(&riff);
    tc_rmtree(tmpl);
    if (tc_exists(tmpl)) printf("note: could not remove %s\n", tmpl);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
