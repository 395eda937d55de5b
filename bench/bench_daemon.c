/*
 * bench/bench_daemon.c - what the daemon costs on top of the engine, on the bundled default
 * model: submit-to-accepted latency, audio event throughput to a client, the same job's time
 * in process and through encored, and the idle daemon's CPU use.
 *
 * It starts its own encored on a temporary socket and state folder.
 *
 * usage: bench_daemon [--encored PATH] [--models DIR] [--submits N]
 *   defaults: the encored beside this program, the bundled default model, 20 submits.
 */
#include "encore/engine.h"
#include "encore_proto.h"
#include "test_common.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char sock_path[300], state_dir[300];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* follows a job until done; counts audio bytes/events; returns seconds from send to done */
static double follow(int fd, double t_sent, double *t_accepted, int64_t *bytes, int *events)
{
    struct ep_reader r;
    ep_reader_init(&r, 0);
    double t_done = -1;
    for (;;) {
        struct ep_msg *m = NULL;
        char why[256];
        if (ep_recv_blocking(fd, &r, 120000, &m, why, sizeof why) != EP_READ_MSG) break;
        const char *t = ep_msg_type(m);
        if (!strcmp(t, "accepted") && t_accepted) *t_accepted = now_s() - t_sent;
        if (!strcmp(t, "audio")) {
            size_t n = 0;
            if (ep_msg_get_bytes(m, "pcm", &n)) *bytes += (int64_t)n;
            (*events)++;
        }
        const bool end = !strcmp(t, "done") || !strcmp(t, "error");
        if (!strcmp(t, "done")) t_done = now_s() - t_sent;
        ep_msg_free(m);
        if (end) break;
    }
    ep_reader_free(&r);
    return t_done;
}

static struct ep_msg *job_msg(double seconds, int finest, int rate)
{
    struct ep_msg *m = ep_msg_new("submit");
    ep_msg_set_str(m, "mode", "ancestral");
    ep_msg_set_double(m, "seconds", seconds);
    ep_msg_set_int(m, "finest_level", finest);
    ep_msg_set_int(m, "rate", rate);
    ep_msg_set_int(m, "seed", 1);
    return m;
}

int main(int argc, char **argv)
{
    char encored[1100], models[1024];
    snprintf(encored, sizeof encored, "%s", argv[0]);
    char *slash = strrchr(encored, '/');
    snprintf(slash ? slash + 1 : encored, 64, "encored");
    snprintf(models, sizeof models, "%s", ENCORE_DEFAULT_MODEL_DIR);
    int submits = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--encored"))
            snprintf(encored, sizeof encored, "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "--models"))
            snprintf(models, sizeof models, "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "--submits"))
            submits = atoi(argv[i + 1]);
    }
    if (submits < 1) submits = 1;
    signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/encore-bench-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    snprintf(sock_path, sizeof sock_path, "%s/encored.sock", tmpl);
    snprintf(state_dir, sizeof state_dir, "%s/state", tmpl);
    char set[1100];
    snprintf(set, sizeof set, "default=%s", models);

    /* the engine alone: the job the daemon will run, in process */
    const double job_seconds = 2.0;
    double t_engine          = -1;
    {
        struct jb_backend *be = jb_backend_init("cpu", 0);
        struct jb_session *s  = be ? jb_session_load(models, be) : NULL;
        if (!s) {
            fprintf(stderr, "bench_daemon: %s\n", jb_last_error());
            return 1;
        }
        struct jb_job_params p;
        jb_job_params_init(&p);
        p.mode            = JB_JOB_ANCESTRAL;
        p.seconds         = job_seconds;
        p.seed            = 1;
        struct jb_take *t = NULL;
        double t0         = now_s();
        if (jb_job_run(s, &p, NULL, &t) == JB_STATUS_OK) t_engine = now_s() - t0;
        jb_take_free(t);
        jb_session_free(s);
        jb_backend_free(be);
    }

    pid_t pid = fork();
    if (pid == 0) {
        execl(encored,
              encored,
              "--socket",
              sock_path,
              "--state",
              state_dir,
              "--models",
              set,
              (char *)NULL);
        _exit(127);
    }
    int fd = -1;
    char why[300];
    for (int i = 0; i < 200 && fd < 0; i++)
        if ((fd = ep_client_open(sock_path, "bench", why, sizeof why)) < 0) usleep(50000);
    if (fd < 0) {
        fprintf(stderr, "bench_daemon: cannot start %s: %s\n", encored, why);
        kill(pid, SIGKILL);
        return 1;
    }

    /* warm up: the first job loads the model set */
    int64_t bytes    = 0;
    int events       = 0;
    struct ep_msg *m = job_msg(0.75, 2, JB_SAMPLE_RATE);
    double t0        = now_s();
    ep_send_blocking(fd, m, 0);
    ep_msg_free(m);
    const double t_load = follow(fd, t0, NULL, &bytes, &events);

    /* submit-to-accepted latency (small top-level jobs, one at a time) */
    double *lat = calloc((size_t)submits, sizeof *lat);
    for (int i = 0; i < submits; i++) {
        m  = job_msg(0.75, 2, JB_SAMPLE_RATE);
        t0 = now_s();
        ep_send_blocking(fd, m, 0);
        ep_msg_free(m);
        follow(fd, t0, &lat[i], &bytes, &events);
    }
    tc_sort_doubles(lat, (size_t)submits);

    /* the engine's job through the daemon, audio streamed at 44.1 and 48 kHz */
    double t_daemon[2] = { -1, -1 };
    int64_t abytes[2]  = { 0, 0 };
    int aevents[2]     = { 0, 0 };
    const int rates[2] = { JB_SAMPLE_RATE, 48000 };
    for (int k = 0; k < 2; k++) {
        m  = job_msg(job_seconds, 0, rates[k]);
        t0 = now_s();
        ep_send_blocking(fd, m, 0);
        ep_msg_free(m);
        t_daemon[k] = follow(fd, t0, NULL, &abytes[k], &aevents[k]);
    }
    close(fd);

    /* idle */
    sleep(1);
    const double c0 = tc_cpu_seconds(pid);
    sleep(5);
    const double idle = tc_cpu_seconds(pid) - c0;
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);

    printf("bench_daemon: bundled default model (untrained), machine load affects every figure\n");
    printf("%-44s %12s\n", "measure", "value");
    printf("%-44s %10.1f s\n", "first job incl. model load (0.75 s, top level)", t_load);
    printf("%-44s %9.2f ms\n", "submit -> accepted, median", 1e3 * lat[submits / 2]);
    printf("%-44s %9.2f ms\n", "submit -> accepted, worst", 1e3 * lat[submits - 1]);
    printf("%-44s %10.2f s\n", "engine in process: 2 s ancestral, 3 levels", t_engine);
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "same job via encored, audio at %d Hz", rates[k]);
        printf("%-44s %10.2f s\n", name, t_daemon[k]);
        snprintf(name, sizeof name, "  audio events / MB sent");
        printf("%-44s %5d / %5.2f\n", name, aevents[k], (double)abytes[k] / 1e6);
        snprintf(name, sizeof name, "  audio throughput over the job");
        printf(
          "%-44s %7.2f MB/s\n", name, t_daemon[k] > 0 ? (double)abytes[k] / 1e6 / t_daemon[k] : 0);
    }
    printf("%-44s %10.3f s\n", "idle daemon CPU over 5 s", idle);
    printf("%-44s %10s\n",
           "SIGTERM exit status",
           WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "0" : "non-zero");
    free(lat);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0) fprintf(stderr, "bench_daemon: could not remove %s\n", tmpl);
    return 0;
}
