/* tools/encore/cli.c - logging, progress bar, Ctrl-C handling and model paths for `encore`. */
#include "cli.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_interrupted;
static int g_bar_shown;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1; /* the job polls should_stop and unwinds cleanly */
}

static void log_to_stderr(enum jb_log_level level, const char *msg, void *user)
{
    (void)user;
    static const char *names[] = { "debug", "info", "warning", "error" };
    const char *env            = getenv("ENCORE_LOG");
    int min                    = env ? atoi(env) : JB_LOG_WARN;
    if ((int)level < min || level == JB_LOG_ERROR) return; /* errors are printed by the caller */
    if (g_bar_shown) fputc('\n', stderr), g_bar_shown = 0;
    fprintf(stderr, "encore: %s: %s\n", names[level], msg);
}

void cli_init_logging(void)
{
    jb_log_set(log_to_stderr, NULL);
    struct sigaction sa = { 0 };
    sa.sa_handler       = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

const char *cli_default_model_dir(void)
{
    const char *env = getenv("ENCORE_MODEL_DIR");
    return env && *env ? env : ENCORE_DEFAULT_MODEL_DIR;
}

const char *cli_models_dir(const char *cmd, const char *choice, char *buf, size_t len)
{
    enum jb_models_source src;
    if (jb_models_resolve(choice, cli_default_model_dir(), buf, len, &src)) {
        cli_error(cmd);
        return NULL;
    }
    if (src == JB_MODELS_FROM_DEFAULT) {
        const char *env = getenv("ENCORE_MODEL_DIR");
        if (env && *env)
            fprintf(stderr, "encore %s: using models from ENCORE_MODEL_DIR (%s)\n", cmd, buf);
        else
            fprintf(stderr,
                    "encore %s: no --models given: using the bundled default model (untrained); "
                    "`encore models fetch 5b_lyrics` installs the real ones\n",
                    cmd);
    }
    return buf;
}

const char *cli_model_path(const char *dir, const char *file, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", dir ? dir : cli_default_model_dir(), file);
    return buf;
}

static bool progress_enabled(void)
{
    const char *env = getenv("ENCORE_PROGRESS");
    if (env) return atoi(env) != 0;
    return isatty(STDERR_FILENO);
}

static void on_progress(const struct jb_progress *p, void *user)
{
    (void)user;
    if (!progress_enabled() || p->total <= 0) return;
    double frac  = (double)p->done / (double)p->total;
    int bar      = (int)(frac * 30);
    char eta[32] = "";
    if (p->eta >= 0) snprintf(eta, sizeof eta, " eta %.0fs", p->eta);
    fprintf(stderr, "\r%-8s", p->stage);
    if (p->level >= 0) fprintf(stderr, " L%d", p->level);
    fprintf(stderr,
            " [%.*s%*s] %5.1f%% %lld/%lld %.1f/s%s   ",
            bar,
            "##############################",
            30 - bar,
            "",
            100 * frac,
            (long long)p->done,
            (long long)p->total,
            p->rate,
            eta);
    g_bar_shown = 1;
    fflush(stderr);
}

static bool should_stop(void *user)
{
    (void)user;
    return g_interrupted != 0;
}

struct jb_callbacks cli_callbacks(void)
{
    return (struct jb_callbacks){ .on_progress = on_progress, .should_stop = should_stop };
}

void cli_progress_done(void)
{
    if (g_bar_shown) fputc('\n', stderr);
    g_bar_shown = 0;
}

const char *cli_message(const char *cmd, const char *msg)
{
    for (const char *w = cmd; *w;) {
        size_t n = strcspn(w, " ");
        if (n && strncmp(msg, w, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') return msg + n + 2;
        w += n;
        w += strspn(w, " ");
    }
    return msg;
}

int cli_error(const char *cmd)
{
    cli_progress_done();
    /* jb_last_error() is escaped by the engine (jb_fail) */
    const char *msg = jb_last_error()[0] ? jb_last_error() : "failed";
    fprintf(stderr, "encore %s: %s\n", cmd, cli_message(cmd, msg));
    return 1;
}
