/*
 * tools/encore/cli.h - shared pieces of the `encore` subcommands.
 */
#ifndef ENCORE_CLI_H
#define ENCORE_CLI_H

#include "encore/engine.h"

struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

int cmd_import(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_continue(int argc, char **argv); /* cmd_prior.c */
int cmd_sample(int argc, char **argv);
int cmd_upsample(int argc, char **argv);
int cmd_models(int argc, char **argv); /* cmd_models.c */

void cli_init_logging(void);
const char *cli_default_model_dir(void);
/* The model folder for --models CHOICE (an installed set's name or a folder; NULL: the default
 * folder, said on stderr) via jb_models_resolve, into buf. Prints the error and returns NULL
 * when it cannot be resolved. */
const char *cli_models_dir(const char *cmd, const char *choice, char *buf, size_t len);
/* "<dir>/<file>" into buf */
const char *cli_model_path(const char *dir, const char *file, char *buf, size_t len);

/* Progress bar on stderr (only when stderr is a terminal or ENCORE_PROGRESS=1), and a
 * SIGINT handler that asks the running job to stop instead of killing the process. */
struct jb_callbacks cli_callbacks(void);
void cli_progress_done(void);

/* progress.c: the per-level bar of long jobs (in process and through the daemon). */
struct cli_progress {
    bool enabled; /* stderr is a terminal, or ENCORE_PROGRESS=1 */
    bool shown;   /* a line is open */
};
bool cli_progress_wanted(void);
void cli_progress_show(struct cli_progress *bar,
                       int level,
                       int64_t done,
                       int64_t total,
                       double tokens_per_s,
                       double eta,
                       double elapsed);
void cli_progress_end(struct cli_progress *bar);

/* cmd_daemon.c: the CLI as a client of encored (docs/protocol.md). */
int cmd_status(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_attach(int argc, char **argv);

/* continue / sample / upsample with --daemon: the parsed options of cmd_prior.c */
struct cli_job_opts {
    const char *cmd;  /* "continue", "sample", "upsample" */
    int mode;         /* enum jb_job_mode */
    const char *riff; /* PRIMED: the riff file */
    const char *take; /* CONTINUE / UPSAMPLE: the daemon's take id */
    double seconds, total_seconds, temp;
    const char *artist, *genre, *lyrics_path;
    long long candidate, candidates, levels, seed;
    const char *save_path, *output, *socket, *model_set;
};
int cli_daemon_job(const struct cli_job_opts *o);

/* Prints "encore <cmd>: <last error>" and returns 1. */
int cli_error(const char *cmd);
/* An engine or daemon message without its leading "<module>: " where that module is a word of
 * the command ("import: ..." under `encore import`), so each message says it once. */
const char *cli_message(const char *cmd, const char *msg);

#endif
