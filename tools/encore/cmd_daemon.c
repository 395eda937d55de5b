/*
 * tools/encore/cmd_daemon.c - the CLI as a client of encored: `encore status`, `jobs`,
 * `cancel ID`, `attach ID -o OUT`, and continue / sample / upsample with --daemon (same flags
 * and outputs as in process; takes are the daemon's take ids).
 *
 * The socket: --socket PATH, else $ENCORE_SOCKET, else $XDG_RUNTIME_DIR/encore/encored.sock.
 */
#include "cli.h"
#include "encore_proto.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_sigint(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int open_daemon(const char *cmd, const char *socket)
{
    char why[600];
    int fd = ep_client_open(socket, "encore", why, sizeof why);
    if (fd < 0) fprintf(stderr, "encore %s: %s\n", cmd, why);
    return fd;
}

/* sends req, waits for the reply of type `want` (or an error); NULL after printing why */
static struct ep_msg *request(int fd, const char *cmd, struct ep_msg *req, const char *want)
{
    struct ep_reader r;
    ep_reader_init(&r, EP_MAX_FRAME_LIMIT);
    struct ep_msg *m = NULL;
    char why[300]    = "";
    bool ok          = ep_send_blocking(fd, req, 0);
    ep_msg_free(req);
    while (ok) {
        enum ep_read_result res = ep_recv_blocking(fd, &r, 30000, &m, why, sizeof why);
        if (res != EP_READ_MSG) {
            fprintf(stderr, "encore %s: %s\n", cmd, res == EP_READ_MORE ? "no reply" : why);
            m = NULL;
            break;
        }
        if (!strcmp(ep_msg_type(m), want)) break;
        if (!strcmp(ep_msg_type(m), "error")) {
            char msg[600] = "error";
            ep_msg_get_strbuf(m, "message", msg, sizeof msg);
            fprintf(stderr, "encore %s: %s\n", cmd, cli_message(cmd, msg));
            ep_msg_free(m);
            m = NULL;
            break;
        }
        ep_msg_free(m);
        m = NULL;
    }
    ep_reader_free(&r);
    return m;
}

/* --socket and --help for the small commands; returns optind or -1 (usage printed) */
static int simple_opts(int argc, char **argv, const char *usage, const char **socket)
{
    static const struct option opts[] = { { "socket", required_argument, 0, 'S' },
                                          { "help", no_argument, 0, 'h' },
                                          { 0, 0, 0, 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'S')
            *socket = optarg;
        else {
            fputs(usage, c == 'h' ? stdout : stderr);
            return c == 'h' ? -2 : -1;
        }
    }
    return optind;
}

static void print_sets(const struct ep_msg *m)
{
    for (size_t i = 0; i < ep_msg_list_len(m, "sets"); i++) {
        struct ep_msg *s = ep_msg_list_item(m, "sets", i);
        char name[64] = "", kind[64] = "-", err[600] = "";
        bool loaded = false, untrained = false, lyrics = false;
        int64_t bytes = 0, na = 0, ng = 0;
        ep_msg_get_strbuf(s, "name", name, sizeof name);
        ep_msg_get_strbuf(s, "kind", kind, sizeof kind);
        ep_msg_get_strbuf(s, "error", err, sizeof err);
        ep_msg_get_bool(s, "loaded", &loaded);
        ep_msg_get_bool(s, "untrained", &untrained);
        ep_msg_get_bool(s, "lyrics", &lyrics);
        ep_msg_get_int(s, "bytes", &bytes);
        ep_msg_get_int(s, "n_artists", &na);
        ep_msg_get_int(s, "n_genres", &ng);
        printf("  %-12s %-8s %-16s %7.1f MB",
               name,
               loaded ? "loaded" : "on disk",
               kind,
               (double)bytes / 1e6);
        if (loaded)
            printf("  %lld artists, %lld genres%s%s",
                   (long long)na,
                   (long long)ng,
                   lyrics ? ", lyrics" : "",
                   untrained ? ", UNTRAINED" : "");
        if (err[0]) printf("  (%s)", err);
        printf("\n");
        int64_t vq = 0, fr = 0, tot = 0;
        if (loaded && ep_msg_get_int(s, "vqvae_bytes", &vq)) {
            printf("    memory: vqvae %.1f MB", (double)vq / 1e6);
            for (size_t k = 0; k < ep_msg_list_len(s, "levels_memory"); k++) {
                struct ep_msg *lv = ep_msg_list_item(s, "levels_memory", k);
                int64_t L = 0, pb = 0, cb = 0;
                ep_msg_get_int(lv, "level", &L);
                ep_msg_get_int(lv, "prior_bytes", &pb);
                ep_msg_get_int(lv, "candidate_bytes", &cb);
                printf("; level %lld prior %.1f MB + %.1f MB per candidate",
                       (long long)L,
                       (double)pb / 1e6,
                       (double)cb / 1e6);
                ep_msg_free(lv);
            }
            printf("\n");
        }
        if (loaded && ep_msg_get_int(s, "backend_free", &fr) &&
            ep_msg_get_int(s, "backend_total", &tot))
            printf(
              "    backend memory: %.1f MB free of %.1f MB\n", (double)fr / 1e6, (double)tot / 1e6);
        ep_msg_free(s);
    }
}

int cmd_status(int argc, char **argv)
{
    const char *socket = NULL;
    int i              = simple_opts(argc,
                        argv,
                        "usage: encore status [--socket PATH]\n\nThe daemon: version, model "
                                     "sets, backend, clients, queue and takes.\n",
                        &socket);
    if (i < 0) return i == -2 ? 0 : 2;
    int fd = open_daemon("status", socket);
    if (fd < 0) return 1;
    struct ep_msg *m = request(fd, "status", ep_msg_new("status"), "status");
    close(fd);
    if (!m) return 1;
    char daemon[64] = "", backend[64] = "", state[1024] = "", sock[256] = "";
    int64_t pid = 0, clients = 0, queued = 0, running = 0, tb = 0, tq = 0, mem = 0;
    double up = 0;
    ep_msg_get_strbuf(m, "daemon", daemon, sizeof daemon);
    ep_msg_get_strbuf(m, "backend", backend, sizeof backend);
    ep_msg_get_strbuf(m, "state_dir", state, sizeof state);
    ep_msg_get_strbuf(m, "socket", sock, sizeof sock);
    ep_msg_get_int(m, "pid", &pid);
    ep_msg_get_int(m, "clients", &clients);
    ep_msg_get_int(m, "queued", &queued);
    ep_msg_get_int(m, "running", &running);
    ep_msg_get_int(m, "takes_bytes", &tb);
    ep_msg_get_int(m, "takes_quota", &tq);
    ep_msg_get_int(m, "memory_budget", &mem);
    ep_msg_get_double(m, "uptime", &up);
    printf("%s, pid %lld, up %.0f s, socket %s\n", daemon, (long long)pid, up, sock);
    printf("device: %s backend; memory budget for model sets: ", backend);
    if (mem > 0)
        printf("%.1f MB\n", (double)mem / 1e6);
    else
        printf("none\n");
    printf("model sets:\n");
    print_sets(m);
    printf("queue: %lld waiting, running: %s", (long long)queued, running ? "job " : "nothing");
    if (running) printf("%lld", (long long)running);
    printf("; clients: %lld\n", (long long)clients);
    printf("takes: %.1f MB", (double)tb / 1e6);
    if (tq > 0) printf(" of a %.1f MB quota", (double)tq / 1e6);
    printf(" in %s\n", state);
    ep_msg_free(m);
    return 0;
}

int cmd_jobs(int argc, char **argv)
{
    const char *socket = NULL;
    int i              = simple_opts(
      argc, argv, "usage: encore jobs [--socket PATH]\n\nThe daemon's jobs.\n", &socket);
    if (i < 0) return i == -2 ? 0 : 2;
    int fd = open_daemon("jobs", socket);
    if (fd < 0) return 1;
    struct ep_msg *m = request(fd, "jobs", ep_msg_new("jobs"), "jobs");
    close(fd);
    if (!m) return 1;
    printf("%6s  %-11s %-9s %7s %5s  %-22s %s\n",
           "job",
           "state",
           "mode",
           "seconds",
           "cands",
           "progress",
           "take / error");
    for (size_t k = 0; k < ep_msg_list_len(m, "jobs"); k++) {
        struct ep_msg *j = ep_msg_list_item(m, "jobs", k);
        int64_t id = 0, cands = 1, take = 0, level = -1, done = 0, total = 0;
        double secs    = 0;
        char state[32] = "", mode[32] = "", err[600] = "", prog[32] = "";
        ep_msg_get_int(j, "job", &id);
        ep_msg_get_strbuf(j, "state", state, sizeof state);
        ep_msg_get_strbuf(j, "mode", mode, sizeof mode);
        ep_msg_get_double(j, "seconds", &secs);
        ep_msg_get_int(j, "candidates", &cands);
        ep_msg_get_int(j, "take", &take);
        ep_msg_get_strbuf(j, "error", err, sizeof err);
        if (ep_msg_get_int(j, "level", &level) && ep_msg_get_int(j, "done_tokens", &done) &&
            ep_msg_get_int(j, "total_tokens", &total) && total > 0)
            snprintf(prog,
                     sizeof prog,
                     "level %lld %5.1f%%",
                     (long long)level,
                     100.0 * (double)done / (double)total);
        printf("%6lld  %-11s %-9s %7.1f %5lld  %-22s ",
               (long long)id,
               state,
               mode,
               secs,
               (long long)cands,
               prog);
        if (take) printf("take %lld", (long long)take);
        if (err[0]) printf("%s", err);
        printf("\n");
        ep_msg_free(j);
    }
    ep_msg_free(m);
    return 0;
}

static bool parse_id(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v <= 0) return false;
    *out = v;
    return true;
}

int cmd_cancel(int argc, char **argv)
{
    const char *socket = NULL;
    int i              = simple_opts(argc,
                        argv,
                        "usage: encore cancel [--socket PATH] JOB\n\nCancels a queued or "
                                     "running job of the daemon.\n",
                        &socket);
    if (i < 0) return i == -2 ? 0 : 2;
    int64_t id;
    if (argc - i != 1 || !parse_id(argv[i], &id)) {
        fprintf(stderr, "usage: encore cancel [--socket PATH] JOB\n");
        return 2;
    }
    int fd = open_daemon("cancel", socket);
    if (fd < 0) return 1;
    struct ep_msg *req = ep_msg_new("cancel");
    ep_msg_set_int(req, "job", id);
    struct ep_msg *m = request(fd, "cancel", req, "cancelled");
    close(fd);
    if (!m) return 1;
    fprintf(stderr, "encore cancel: job %lld cancelled\n", (long long)id);
    ep_msg_free(m);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* following a job: progress bar, final audio per candidate, done                             */

struct follow {
    float **audio; /* [n] final audio per candidate, grown as it arrives */
    int64_t *len;
    int n;
    int64_t job, take, samples;
    int candidates;
    struct cli_progress bar;
    double t0;
    bool cancel_sent;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool grow(struct follow *f, int c, int64_t need)
{
    if (c >= f->n) {
        int n     = c + 1;
        float **a = realloc(f->audio, (size_t)n * sizeof *a);
        if (!a) return false;
        f->audio   = a;
        int64_t *l = realloc(f->len, (size_t)n * sizeof *l);
        if (!l) return false;
        f->len = l;
        for (int i = f->n; i < n; i++)
            f->audio[i] = NULL, f->len[i] = 0;
        f->n = n;
    }
    if (need > f->len[c]) {
        float *b = realloc(f->audio[c], (size_t)need * sizeof *b);
        if (!b) return false;
        memset(b + f->len[c], 0, (size_t)(need - f->len[c]) * sizeof *b);
        f->audio[c] = b;
        f->len[c]   = need;
    }
    return true;
}

static void follow_free(struct follow *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->audio[i]);
    free(f->audio);
    free(f->len);
    memset(f, 0, sizeof *f);
}

/* Reads events until done (0), an error (1) or cancellation (130). want_final: keep the
 * final-role audio. */
static int follow_job(int fd, const char *cmd, struct follow *f, bool want_final)
{
    struct ep_reader r;
    ep_reader_init(&r, EP_MAX_FRAME_LIMIT);
    int rc = 1;
    for (;;) {
        if (g_stop && !f->cancel_sent && f->job) {
            struct ep_msg *c = ep_msg_new("cancel");
            ep_msg_set_int(c, "job", f->job);
            ep_send_blocking(fd, c, 0);
            ep_msg_free(c);
            f->cancel_sent = true;
        }
        struct ep_msg *m        = NULL;
        char why[300]           = "";
        enum ep_read_result res = ep_recv_blocking(fd, &r, 500, &m, why, sizeof why);
        if (res == EP_READ_MORE) continue;
        if (res != EP_READ_MSG) {
            cli_progress_end(&f->bar);
            fprintf(stderr, "encore %s: %s\n", cmd, why);
            break;
        }
        const char *t = ep_msg_type(m);
        int64_t job   = 0;
        ep_msg_get_int(m, "job", &job);
        if (!strcmp(t, "accepted") || !strcmp(t, "attached")) {
            int64_t pos = 0;
            ep_msg_get_int(m, "job", &f->job);
            ep_msg_get_int(m, "position", &pos);
            if (pos > 0)
                fprintf(stderr,
                        "encore %s: job %lld queued (position %lld)\n",
                        cmd,
                        (long long)f->job,
                        (long long)pos);
        } else if (!strcmp(t, "progress")) {
            int64_t level = 0, done = 0, total = 0;
            double tps = 0, eta = -1;
            ep_msg_get_int(m, "level", &level);
            ep_msg_get_int(m, "done", &done);
            ep_msg_get_int(m, "total", &total);
            ep_msg_get_double(m, "tokens_per_s", &tps);
            ep_msg_get_double(m, "eta", &eta);
            double elapsed = now_s() - f->t0; /* the level's own time when the daemon says */
            ep_msg_get_double(m, "elapsed", &elapsed);
            cli_progress_show(&f->bar, (int)level, done, total, tps, eta, elapsed);
        } else if (!strcmp(t, "audio") && want_final) {
            char role[16] = "";
            int64_t cand = 0, first = 0;
            size_t n = 0;
            ep_msg_get_strbuf(m, "role", role, sizeof role);
            ep_msg_get_int(m, "candidate", &cand);
            ep_msg_get_int(m, "first", &first);
            float *pcm = ep_msg_get_f32(m, "pcm", (size_t)1 << 24, &n);
            if (pcm && !strcmp(role, "final") && cand >= 0 && cand < JB_JOB_MAX_CANDIDATES &&
                first >= 0 && first < ((int64_t)1 << 40) && grow(f, (int)cand, first + (int64_t)n))
                memcpy(f->audio[cand] + first, pcm, n * sizeof *pcm);
            free(pcm);
        } else if (!strcmp(t, "done")) {
            int64_t cands = 1;
            ep_msg_get_int(m, "take", &f->take);
            ep_msg_get_int(m, "samples", &f->samples);
            ep_msg_get_int(m, "candidates", &cands);
            f->candidates = (int)cands;
            cli_progress_end(&f->bar);
            ep_msg_free(m);
            rc = 0;
            break;
        } else if (!strcmp(t, "error")) {
            char code[32] = "", msg[600] = "";
            ep_msg_get_strbuf(m, "code", code, sizeof code);
            ep_msg_get_strbuf(m, "message", msg, sizeof msg);
            cli_progress_end(&f->bar);
            if (!strcmp(code, "cancelled")) {
                fprintf(stderr, "encore %s: cancelled\n", cmd);
                rc = 130;
            } else {
                fprintf(stderr, "encore %s: %s\n", cmd, cli_message(cmd, msg));
            }
            ep_msg_free(m);
            break;
        }
        ep_msg_free(m);
    }
    ep_reader_free(&r);
    return rc;
}

static void output_name(const char *out, int i, int n, char *buf, size_t len)
{
    if (n == 1) {
        snprintf(buf, len, "%s", out);
        return;
    }
    const char *slash = strrchr(out, '/');
    const char *dot   = strrchr(out, '.');
    if (!dot || (slash && dot < slash)) dot = out + strlen(out);
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - out), out, i + 1, dot);
}

/* The take's audio at its finest level, decoded by the daemon, for candidate c. */
static int fetch_audio(int fd, const char *cmd, int64_t take, int c, int level, struct follow *f)
{
    struct ep_msg *req = ep_msg_new("fetch");
    ep_msg_set_int(req, "take", take);
    ep_msg_set_str(req, "what", "audio");
    ep_msg_set_int(req, "candidate", c);
    ep_msg_set_int(req, "level", level);
    ep_msg_set_int(req, "rate", JB_SAMPLE_RATE);
    bool ok = ep_send_blocking(fd, req, 0);
    ep_msg_free(req);
    if (!ok) return 1;
    struct follow g = { .t0 = now_s() };
    int rc          = follow_job(fd, cmd, &g, true);
    if (rc == 0 && c < g.n && g.audio[c] && grow(f, c, g.len[c]))
        memcpy(f->audio[c], g.audio[c], (size_t)g.len[c] * sizeof(float));
    follow_free(&g);
    return rc;
}

static int save_take(int fd, const char *cmd, int64_t take, const char *path)
{
    struct ep_msg *req = ep_msg_new("fetch");
    ep_msg_set_int(req, "take", take);
    ep_msg_set_str(req, "what", "take");
    struct ep_msg *m = request(fd, cmd, req, "take_file");
    if (!m) return 1;
    size_t len          = 0;
    const uint8_t *data = ep_msg_get_bytes(m, "data", &len);
    FILE *out           = data ? fopen(path, "wb") : NULL;
    bool ok             = out && fwrite(data, 1, len, out) == len;
    if (out) ok &= fclose(out) == 0;
    ep_msg_free(m);
    if (!ok) {
        fprintf(stderr, "encore %s: cannot write %s\n", cmd, path);
        return 1;
    }
    fprintf(stderr, "encore %s: take saved to %s\n", cmd, path);
    return 0;
}

static int write_outputs(const char *cmd, const char *output, struct follow *f, int n)
{
    for (int i = 0; i < n; i++) {
        char path[4096];
        output_name(output, i, n, path, sizeof path);
        if (i >= f->n || !f->audio[i]) {
            fprintf(stderr, "encore %s: no audio arrived for candidate %d\n", cmd, i + 1);
            return 1;
        }
        if (jb_audio_write(path, f->audio[i], f->len[i], JB_SAMPLE_RATE)) return cli_error(cmd);
        fprintf(
          stderr, "encore %s: wrote %s (%.2f s)\n", cmd, path, (double)f->len[i] / JB_SAMPLE_RATE);
    }
    return 0;
}

static char *read_text(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n  = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static void install_sigint(void)
{
    struct sigaction sa = { 0 };
    sa.sa_handler       = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int cli_daemon_job(const struct cli_job_opts *o)
{
    const char *cmd = o->cmd;
    int64_t take_id = 0;
    if (o->take && !parse_id(o->take, &take_id)) {
        fprintf(stderr,
                "encore %s: with --daemon, a take is the daemon's take id (a number: "
                "see `encore jobs`), got '%s'\n",
                cmd,
                o->take);
        return 2;
    }
    struct ep_msg *req         = ep_msg_new("submit");
    static const char *modes[] = { "primed", "ancestral", "continue", "upsample" };
    ep_msg_set_str(req, "mode", modes[o->mode]);
    if (o->mode != JB_JOB_UPSAMPLE) ep_msg_set_double(req, "seconds", o->seconds);
    if (o->total_seconds > 0) ep_msg_set_double(req, "total_seconds", o->total_seconds);
    if (o->artist) ep_msg_set_str(req, "artist", o->artist);
    if (o->genre) ep_msg_set_str(req, "genre", o->genre);
    if (o->model_set) ep_msg_set_str(req, "model_set", o->model_set);
    ep_msg_set_double(req, "temp", o->temp);
    ep_msg_set_int(req, "seed", o->seed);
    ep_msg_set_int(req, "candidates", o->candidates);
    ep_msg_set_int(req, "finest_level", o->levels);
    ep_msg_set_int(req, "rate", JB_SAMPLE_RATE);
    if (take_id) {
        ep_msg_set_int(req, "take", take_id);
        ep_msg_set_int(req, "take_candidate", o->candidate - 1);
    }
    if (o->lyrics_path) {
        char *lyr = read_text(o->lyrics_path, 256 * 1024);
        if (!lyr || !ep_msg_set_str(req, "lyrics", lyr)) {
            fprintf(stderr,
                    "encore %s: cannot read lyrics '%s' (UTF-8, at most 256 KiB)\n",
                    cmd,
                    o->lyrics_path);
            free(lyr);
            ep_msg_free(req);
            return 1;
        }
        free(lyr);
    }
    struct jb_audio riff = { 0 };
    if (o->mode == JB_JOB_PRIMED) {
        if (jb_audio_read(o->riff, JB_SAMPLE_RATE, 0, &riff)) {
            ep_msg_free(req);
            return cli_error(cmd);
        }
        ep_msg_set_int(req, "riff_rate", JB_SAMPLE_RATE);
        ep_msg_set_int(req, "riff_channels", 1);
        ep_msg_set_int(req, "riff_frames", riff.n_samples);
    }
    int fd = open_daemon(cmd, o->socket);
    if (fd < 0) {
        ep_msg_free(req);
        jb_audio_free(&riff);
        return 1;
    }
    install_sigint();
    bool ok = ep_send_blocking(fd, req, 0);
    ep_msg_free(req);
    for (int64_t at = 0; ok && at < riff.n_samples; at += 65536) {
        const int64_t n  = riff.n_samples - at < 65536 ? riff.n_samples - at : 65536;
        struct ep_msg *c = ep_msg_new("riff");
        ok = ep_msg_set_f32(c, "pcm", riff.samples + at, (size_t)n) && ep_send_blocking(fd, c, 0);
        ep_msg_free(c);
    }
    jb_audio_free(&riff);
    struct follow f = { .t0 = now_s() };
    f.bar.enabled   = cli_progress_wanted();
    int rc          = ok ? follow_job(fd, cmd, &f, true) : 1;
    if (rc == 0) {
        fprintf(stderr,
                "encore %s: job %lld done: take %lld (%.1f s)\n",
                cmd,
                (long long)f.job,
                (long long)f.take,
                now_s() - f.t0);
        if (o->mode == JB_JOB_CONTINUE || o->mode == JB_JOB_UPSAMPLE) {
            /* the whole take, as in process: decoded by the daemon */
            for (int c = 0; c < f.candidates && rc == 0; c++) {
                if (c < f.n) f.len[c] = 0;
                rc = fetch_audio(fd, cmd, f.take, c, (int)o->levels, &f);
            }
        }
        if (rc == 0 && o->save_path) rc = save_take(fd, cmd, f.take, o->save_path);
        if (rc == 0) rc = write_outputs(cmd, o->output, &f, f.candidates);
    }
    follow_free(&f);
    close(fd);
    return rc;
}

int cmd_attach(int argc, char **argv)
{
    static const struct option opts[] = { { "socket", required_argument, 0, 'S' },
                                          { "output", required_argument, 0, 'o' },
                                          { "help", no_argument, 0, 'h' },
                                          { 0, 0, 0, 0 } };
    static const char *usage =
      "usage: encore attach [--socket PATH] JOB -o OUT.wav\n\n"
      "Follows a daemon job (progress on a terminal) and writes its final audio, the audio\n"
      "already rendered first; OUT-1.wav .. OUT-N.wav for several candidates.\n";
    const char *socket = NULL, *output = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'S')
            socket = optarg;
        else if (c == 'o')
            output = optarg;
        else {
            fputs(usage, c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    int64_t id;
    if (argc - optind != 1 || !parse_id(argv[optind], &id) || !output) {
        fputs(usage, stderr);
        return 2;
    }
    int fd = open_daemon("attach", socket);
    if (fd < 0) return 1;
    install_sigint();
    struct ep_msg *req = ep_msg_new("attach");
    ep_msg_set_int(req, "job", id);
    ep_msg_set_int(req, "rate", JB_SAMPLE_RATE);
    bool ok = ep_send_blocking(fd, req, 0);
    ep_msg_free(req);
    struct follow f = { .t0 = now_s(), .job = id };
    f.bar.enabled   = cli_progress_wanted();
    int rc          = ok ? follow_job(fd, "attach", &f, true) : 1;
    if (rc == 0 && f.n == 0 && f.take) { /* finished earlier: the daemon decodes the take */
        int n = f.candidates > 0 ? f.candidates : 1;
        for (int k = 0; k < n && rc == 0; k++)
            rc = fetch_audio(fd, "attach", f.take, k, 0, &f);
        f.candidates = n;
    }
    if (rc == 0) rc = write_outputs("attach", output, &f, f.candidates > 0 ? f.candidates : f.n);
    follow_free(&f);
    close(fd);
    return rc;
}
