/*
 * daemon/encored/encored.h - what the pieces of encored share: configuration, jobs (with the
 * audio they rendered, for replay to clients that attach later), workers and the store.
 *
 * Threads: the event loop (server.c) owns clients and sockets; one worker thread per model set
 * (worker.c) runs jobs through engine.h. Everything in `struct job` that both touch is guarded
 * by the one daemon mutex g_mu; workers wake the loop through an eventfd (daemon_notify).
 */
#ifndef ENCORED_H
#define ENCORED_H

#include "encore/engine.h"
#include "encore_proto.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define ENCORED_MAX_SETS 16
#define ENCORED_MAX_DEVICES 16
#define ENCORED_KEEP_FINISHED 16 /* finished jobs whose audio stays in memory for attach */

struct limits {
    double riff_seconds;  /* longest riff (s) */
    double job_seconds;   /* most new audio per job (s) */
    int candidates;       /* most candidates per job */
    int clients;          /* most connected clients */
    int queued_jobs;      /* most jobs waiting */
    size_t frame_bytes;   /* largest frame accepted */
    size_t client_buffer; /* queued output per client before it is dropped */
    double stall_seconds; /* a client that reads nothing of its queued output this long is
                             dropped (its jobs go on) */
    int64_t takes_quota;  /* bytes of take files kept (LRU eviction past it); 0: unlimited */
};

struct model_set {
    char name[64];
    char dir[1024];
    int64_t bytes; /* sum of its model files, for the memory budget */
};

struct config {
    char socket[256];
    char state[1024];
    int threads;           /* CPU threads per backend (0: all) */
    int64_t memory;        /* budget for loaded model sets per device (bytes, 0: unlimited) */
    char device_spec[256]; /* --device: comma-separated backends ("cuda" = every GPU) */
    char devices[ENCORED_MAX_DEVICES][32]; /* expanded: one worker per (set, device) */
    int n_devices;
    struct limits lim;
    struct model_set sets[ENCORED_MAX_SETS];
    int n_sets;
    bool foreground_log; /* log to stderr */
};

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED, JOB_INTERRUPTED };
const char *job_state_name(enum job_state s);

enum job_kind { JOB_GENERATE, JOB_DECODE };

/* Audio a job rendered for one (candidate, level), at 44.1 kHz, from sample `start`. */
struct audio_log {
    float *pcm;
    int64_t start, len, cap;
    int64_t end;   /* where the level's audio ends (known from the job's plan) */
    bool finished; /* the level's last piece arrived */
    bool used;
    bool final_role; /* the job's finest level (else a preview) */
};

struct job {
    int64_t id;
    int owner; /* client id for round robin (0: the daemon itself, resumed jobs) */
    int set;   /* index into config.sets */
    enum job_kind kind;
    enum job_state state;
    struct ep_msg *params; /* the submit message (owned) */
    float *riff;           /* PRIMED: mono 44.1 kHz (owned) */
    int64_t riff_n;
    int64_t src_take;                   /* continue/upsample/decode: the stored take */
    int decode_candidate, decode_level; /* JOB_DECODE */
    bool resume;
    int resume_level, resume_window;
    double created;
    int avoid_device;  /* a retry: not on this device index (-1: any) */
    bool retried;      /* made by a retry: no further retry */
    int64_t retry_job; /* this job failed on a device and was retried as that job (0: no) */
    char device[32];   /* where it ran (last) */
    int device_index;  /* its index in config.devices */

    /* progress and results (g_mu) */
    struct jb_job_progress prog;
    bool has_prog;
    struct jb_job_progress level_end[JB_JOB_MAX_LEVELS]; /* each level's final report */
    bool has_level_end[JB_JOB_MAX_LEVELS];
    int n_cand, n_levels;
    struct audio_log *audio; /* [n_cand * n_levels] once known */
    int64_t take_id;
    int take_candidates, finest_level;
    int64_t take_samples;
    char err_code[32], err_msg[512];
    int64_t tokens_sampled; /* by this process (resumed jobs: fewer than the job's total) */

    uint64_t seq; /* bumped at every change (g_mu): the loop sends what is new */
    int64_t level_first_done[JB_JOB_MAX_LEVELS]; /* progress seen first per level (resume) */
    atomic_bool cancel;                          /* a client cancelled it */
    atomic_bool io_fail;                         /* a checkpoint could not be written (disk full) */
    atomic_bool shutdown;                        /* the daemon is stopping: keep it resumable */
    int refs;                                    /* clients attached (g_mu) */
    bool finished_at_load; /* restored from the database as done: no audio in memory */
    struct job *next;
};

/* ---- daemon.c: shared state ---- */
extern pthread_mutex_t g_mu;
extern struct config g_cfg;
extern struct job *g_jobs; /* every job in memory, newest first (g_mu) */
void daemon_notify(void);  /* wake the event loop (any thread) */
void daemon_log(enum jb_log_level level, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
struct job *job_find(int64_t id); /* g_mu held */
struct audio_log *job_audio(struct job *j, int candidate, int level);

/* ---- config.c ---- */
void config_defaults(struct config *c);
/* argv flags and the config file; returns 0 ok, 1 error (printed), 2 --help printed */
int config_parse(struct config *c, int argc, char **argv);
/* The model set folders used when no --models is given: one function so installed model
 * folders can be added in one place. Fills sets; returns how many. */
int models_default(struct model_set *sets, int cap);

/* ---- store.c: SQLite + files under the state folder ---- */
bool store_open(const char *dir);
void store_close(void);
int64_t store_job_insert(const struct job *j); /* returns the new id, 0 on failure */
void store_job_state(const struct job *j);     /* state, take, error */
bool store_job_checkpoint(int64_t id, const struct jb_take *partial, int level, int windows);
bool store_riff_save(int64_t id, const float *riff, int64_t n);
float *store_riff_load(int64_t id, int64_t *n);
/* saves a finished take; returns its id (0: failed, jb_last_error / errno say why) */
int64_t store_take_save(const struct jb_take *take, int64_t job_id);
struct jb_take *store_take_load(int64_t take_id); /* NULL if missing; touches last_used */
bool store_take_delete(int64_t take_id);
int64_t store_takes_bytes(void);
void store_enforce_quota(int64_t quota);
/* Jobs left queued or running by the previous process are put back in g_jobs (as queued,
 * resuming from their checkpoint); finished ones are listed from the database. */
void store_restore_jobs(void);
/* Appends every job in the database to msg's "jobs" array (newest first, at most max). */
void store_list_jobs(struct ep_msg *msg, int max);
/* A job not in memory (finished in an earlier run): its state, take and error. */
bool store_job_lookup(int64_t id,
                      char *state,
                      size_t state_len,
                      int64_t *take,
                      char *err,
                      size_t err_len);
/* The take file's bytes (malloc'd), for clients that keep takes themselves. */
uint8_t *store_take_file(int64_t take_id, size_t max, size_t *len);

/* ---- params.c: a submit message as engine job params ---- */
struct submit {
    struct jb_job_params p; /* strings point into the fields below */
    char *artist, *genre, *lyrics;
    int set;
    int64_t take_id;
    int rate; /* audio events' sample rate */
    bool stream;
    int riff_rate, riff_channels;
    int64_t riff_frames;
    bool has_tag;
    int64_t tag;
};
/* Checks every field against the limits; on failure fills code and why (one line). */
bool submit_parse(const struct ep_msg *m, struct submit *out, char *code, char *why, size_t len);
void submit_free(struct submit *s);

/* ---- worker.c ---- */
/* With g_mu held: checks labels and the plan on the set's session if it is loaded (true if not
 * loaded: the worker checks when it runs the job). */
bool worker_precheck(const struct submit *s, int64_t riff_n, char *code, char *why, size_t len);
bool workers_start(void);
void workers_stop(void);                 /* asks running jobs to stop resumably and joins */
void workers_kick(void);                 /* a job was queued */
int queue_position(const struct job *j); /* g_mu held; 0: running */
int queued_count(void);                  /* g_mu held */
/* model set info for `models` / `status` replies (loads the set if load is true) */
void workers_describe(struct ep_msg *reply, bool labels, bool load);
const char *workers_backend(void);
/* Expands c->device_spec (default: jb_backend_default_name()) into c->devices; false after
 * printing why (an unknown backend, "cuda" without a GPU, too many). */
bool config_devices(struct config *c);

/* ---- server.c ---- */
int server_run(int listen_fd); /* returns the exit status */

#endif
