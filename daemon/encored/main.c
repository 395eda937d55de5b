/*
 * daemon/encored/main.c - encored: settings, the state folder (one daemon per folder, by a
 * lock), the listening socket (or the one systemd passes, sd_listen_fds), jobs left over from
 * the last run, then the event loop until SIGTERM.
 */
#include "encored.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
struct config g_cfg;
struct job *g_jobs;

const char *job_state_name(enum job_state s)
{
    static const char *names[] = {
        "queued", "running", "done", "failed", "cancelled", "interrupted"
    };
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

struct job *job_find(int64_t id)
{
    for (struct job *j = g_jobs; j; j = j->next)
        if (j->id == id) return j;
    return NULL;
}

static void log_line(enum jb_log_level level, const char *msg)
{
    static const char *names[] = { "debug", "info", "warning", "error" };
    if (!g_cfg.foreground_log && level < JB_LOG_WARN) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(stderr,
            "encored[%d] %lld.%03ld %s: %s\n",
            (int)getpid(),
            (long long)ts.tv_sec,
            ts.tv_nsec / 1000000,
            names[level & 3],
            msg);
}

void daemon_log(enum jb_log_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_line(level, buf);
}

static void engine_log(enum jb_log_level level, const char *msg, void *user)
{
    (void)user;
    log_line(level, msg);
}

/* mkdir -p of the socket's folder; folders we create are 0700 */
static bool make_parent(const char *path)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return true;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0700) != 0 && errno != EEXIST) return false;
            *p = '/';
        }
    return mkdir(dir, 0700) == 0 || errno == EEXIST;
}

static int listen_socket(bool *activated)
{
    *activated = false;
    int n      = sd_listen_fds(1);
    if (n > 1) {
        daemon_log(JB_LOG_ERROR, "systemd passed %d sockets, expected one", n);
        return -1;
    }
    if (n == 1) {
        int fd = SD_LISTEN_FDS_START;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
            daemon_log(JB_LOG_ERROR, "the socket systemd passed is not a listening Unix socket");
            return -1;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        *activated = true;
        return fd;
    }
    const char *path = g_cfg.socket;
    if (!make_parent(path)) {
        daemon_log(JB_LOG_ERROR, "cannot create the folder of %s: %s", path, strerror(errno));
        return -1;
    }
    /* a live daemon answers on the socket; a stale socket file is replaced */
    int probe = ep_connect(path, false);
    if (probe >= 0) {
        close(probe);
        daemon_log(JB_LOG_ERROR, "another encored is listening on %s", path);
        return -1;
    }
    unlink(path);
    int fd                 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path) {
        daemon_log(JB_LOG_ERROR, "socket path too long: %s", path);
        if (fd >= 0) close(fd);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    mode_t old = umask(0177); /* the socket is created 0600 */
    int rc     = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 128) != 0) {
        daemon_log(JB_LOG_ERROR, "cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    config_defaults(&g_cfg);
    int rc = config_parse(&g_cfg, argc, argv);
    if (rc) return rc == 2 ? 0 : 2;
    jb_log_set(engine_log, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit makes writes fail (EFBIG), not kill us */
    /* the loop takes SIGTERM/SIGINT through a signalfd: block them in every thread */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);

    if (!store_open(g_cfg.state)) return 1;
    char lock_path[1200];
    snprintf(lock_path, sizeof lock_path, "%s/encored.lock", g_cfg.state);
    int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        daemon_log(JB_LOG_ERROR, "another encored uses the state folder %s", g_cfg.state);
        return 1;
    }
    bool activated = false;
    int lfd        = listen_socket(&activated);
    if (lfd < 0) return 1;
    store_restore_jobs();
    if (!workers_start()) {
        daemon_log(JB_LOG_ERROR, "cannot start the worker threads");
        return 1;
    }
    daemon_log(JB_LOG_INFO,
               "listening on %s (%s), state in %s, %d model set(s)",
               activated ? "the socket from systemd" : g_cfg.socket,
               workers_backend(),
               g_cfg.state,
               g_cfg.n_sets);
    sd_notify(0, "READY=1");
    rc = server_run(lfd);
    sd_notify(0, "STOPPING=1");
    close(lfd);
    if (!activated) unlink(g_cfg.socket);
    store_close();
    close(lock_fd);
    return rc;
}
