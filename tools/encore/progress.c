/*
 * tools/encore/progress.c - the per-level progress bar of long commands, in process and through
 * the daemon: level, tokens, tokens/s and ETA on a terminal (or ENCORE_PROGRESS=1), nothing off
 * a terminal. A finished level says how long it took instead of an ETA.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

bool cli_progress_wanted(void)
{
    const char *env = getenv("ENCORE_PROGRESS");
    if (env) return atoi(env) != 0;
    return isatty(STDERR_FILENO);
}

static void format_seconds(double s, char *buf, size_t len)
{
    if (s < 0) {
        snprintf(buf, len, "?");
    } else if (s < 90) {
        snprintf(buf, len, "%.0fs", s);
    } else if (s < 5400) {
        const int m = (int)(s / 60);
        snprintf(buf, len, "%dm%02ds", m, (int)s - 60 * m);
    } else {
        snprintf(buf, len, "%.1fh", s / 3600);
    }
}

void cli_progress_show(struct cli_progress *bar,
                       int level,
                       int64_t done,
                       int64_t total,
                       double tokens_per_s,
                       double eta,
                       double elapsed)
{
    if (!bar->enabled || total <= 0) return;
    if (done > total) done = total;
    const double frac = (double)done / (double)total;
    const int width   = (int)(frac * 30);
    char tail[48];
    if (done == total) {
        char t[24];
        format_seconds(elapsed, t, sizeof t);
        snprintf(tail, sizeof tail, " done in %s", t);
    } else if (eta >= 0) {
        char t[24];
        format_seconds(eta, t, sizeof t);
        snprintf(tail, sizeof tail, " eta %s", t);
    } else {
        snprintf(tail, sizeof tail, " eta ?");
    }
    fprintf(stderr,
            "\rlevel %d [%.*s%*s] %5.1f%% %lld/%lld tokens %.0f tok/s%s   ",
            level,
            width,
            "##############################",
            30 - width,
            "",
            100 * frac,
            (long long)done,
            (long long)total,
            tokens_per_s,
            tail);
    if (done == total) fputc('\n', stderr);
    bar->shown = done != total;
    fflush(stderr);
}

void cli_progress_end(struct cli_progress *bar)
{
    if (bar->shown) fputc('\n', stderr);
    bar->shown = false;
}
