/*
 * encore/engine.h - the Encore inference engine's public API.
 *
 * This is the only header the daemon, the command-line tools and the benchmarks include.
 * Everything else under engine/src/ is internal.
 *
 * Objects:
 *   jb_backend  where the arithmetic runs (CPU with OpenBLAS today; CUDA later).
 *   jb_model    one Encore model file (GGUF): the VQ-VAE or one prior, loaded on a backend.
 *   jb_audio    mono float audio at a known sample rate (file I/O and resampling helpers).
 *
 * Errors: functions that can fail on their input return enum jb_status (or NULL) and leave one
 * human-readable line in jb_last_error() (per thread). The engine never prints by itself; install
 * a log hook with jb_log_set().
 *
 * Threads: a jb_model may be used by one thread at a time. Progress and cancellation callbacks
 * are invoked on the calling thread, between units of work, so a job can be cancelled promptly
 * from another thread by making should_stop() return true.
 */
#ifndef ENCORE_ENGINE_H
#define ENCORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JB_SAMPLE_RATE 44100

/* ---------------------------------------------------------------------------------------- */
/* status, errors, logging                                                                   */

enum jb_status {
    JB_STATUS_OK = 0,
    JB_STATUS_ERR_INVALID_ARG, /* caller passed something out of range           */
    JB_STATUS_ERR_IO,          /* file could not be read or written                */
    JB_STATUS_ERR_FORMAT,      /* malformed, truncated or hostile input file       */
    JB_STATUS_ERR_MODEL,       /* model file does not match what the code expects  */
    JB_STATUS_ERR_UNSUPPORTED, /* valid but not implemented (e.g. an op on a device) */
    JB_STATUS_ERR_NOMEM,       /* allocation failed or a size would overflow       */
    JB_STATUS_ERR_CANCELLED,   /* should_stop() asked us to stop                   */
    JB_STATUS_ERR_DEVICE,      /* accelerator failure                              */
    JB_STATUS_ERR_LABEL,       /* unknown or ambiguous artist/genre                */
};

const char *jb_status_str(enum jb_status status);

/* The message of the last failure on this thread ("" if none). Valid until the next call. */
const char *jb_last_error(void);

enum jb_log_level {
    JB_LOG_DEBUG = 0,
    JB_LOG_INFO  = 1,
    JB_LOG_WARN  = 2,
    JB_LOG_ERROR = 3,
};

typedef void (*jb_log_fn)(enum jb_log_level level, const char *msg, void *user);

/* Install a log hook (NULL: silent, the default). Not thread-safe: call once at start-up.
 * Error and log messages are already escaped (see jb_text_escape). */
void jb_log_set(jb_log_fn fn, void *user);

/* Copies untrusted text (names from model or take files, paths) into out[len] with control
 * characters, C1 controls and invalid UTF-8 written as \xNN, so it can be shown on a terminal
 * or in a log without moving the cursor or forging lines. Truncates at a character boundary;
 * returns the length written. */
size_t jb_text_escape(const char *s, char *out, size_t len);

/* Element types of stored tensors. */
enum jb_dtype {
    JB_DTYPE_F32  = 0,
    JB_DTYPE_F16  = 1,
    JB_DTYPE_BF16 = 2,
    JB_DTYPE_I32  = 3,
    JB_DTYPE_COUNT
};

const char *jb_dtype_name(enum jb_dtype type);
/* Parse "f32", "fp32", "f16", "fp16", "bf16"; returns false if unknown. */
bool jb_dtype_parse(const char *s, enum jb_dtype *out);

/* ---------------------------------------------------------------------------------------- */
/* progress and cancellation (shared by every long operation)                                */

struct jb_progress {
    const char *stage; /* "encode", "decode", "import", "sample", ... (static string)   */
    int level;         /* VQ-VAE / prior level, -1 if not applicable                    */
    int64_t done;      /* units finished (samples, tokens, tensors)                     */
    int64_t total;     /* units in all                                                  */
    double elapsed;    /* seconds since the stage began                                 */
    double rate;       /* units per second so far                                       */
    double eta;        /* estimated seconds left (-1 if unknown)                        */
};

struct jb_callbacks {
    /* (optional) called between units of work; keep it short. */
    void (*on_progress)(const struct jb_progress *p, void *user);
    /* (optional) polled between units of work; return true to stop with ERR_CANCELLED. */
    bool (*should_stop)(void *user);
    void *user;
};

/* ---------------------------------------------------------------------------------------- */
/* backends                                                                                  */

struct jb_backend;

/* name: "cpu", or NULL for the best available. n_threads <= 0: all cores. */
struct jb_backend *jb_backend_init(const char *name, int n_threads);
void jb_backend_free(struct jb_backend *backend);
const char *jb_backend_name(const struct jb_backend *backend);
/* Comma-separated list of the backends compiled into this build: "cpu" or "cpu,cuda". */
const char *jb_backends_available(void);
/* The backend a front end should use when the user names none: "cuda:0" where this build has
 * the CUDA backend and a device is visible, else "cpu". (jb_backend_init(NULL) stays "cpu", the
 * reference.) */
const char *jb_backend_default_name(void);
/* Devices of a backend kind visible to this process: "cuda" -> GPUs (0 without a driver, a
 * device or a CUDA build), "cpu" -> 1, anything else 0. Never fails. */
int jb_backend_device_count(const char *kind);

/* ---------------------------------------------------------------------------------------- */
/* model files                                                                               */

enum jb_model_kind {
    JB_MODEL_VQVAE = 0,
    JB_MODEL_PRIOR = 1,
};

struct jb_model;

/* Memory-maps an Encore GGUF model file, validates it completely (metadata, tensor names,
 * shapes, types, bounds) and prepares it on the backend. NULL on failure (see jb_last_error). */
struct jb_model *jb_model_load(const char *path, struct jb_backend *backend);
void jb_model_free(struct jb_model *model);
enum jb_model_kind jb_model_get_kind(const struct jb_model *model);

/* Writes a human-readable description of a model file (hyper-parameters, vocabularies, tensor
 * counts and bytes per dtype) to out. With verbose, lists every tensor. */
enum jb_status jb_model_file_describe(const char *path, FILE *out, bool verbose);

/* ---------------------------------------------------------------------------------------- */
/* importing OpenAI checkpoints (.pth.tar, legacy or zip torch format)                        */

struct jb_import_params {
    const char *src_path;        /* vqvae.pth.tar or prior_level_N.pth.tar                     */
    const char *dst_path;        /* Encore GGUF file to write                                   */
    const char *kind;            /* "vqvae", "upsampler_level_0", "upsampler_level_1",
                                    "prior_5b", "prior_5b_lyrics", "prior_1b_lyrics";
                                    NULL: detect from the tensor names and the stored hps      */
    enum jb_dtype storage;       /* dtype of the stored weights (F32, F16 or BF16)              */
    const char *hps_json_path;   /* (optional) JSON object of Jukebox hps overriding the preset */
    bool use_ckpt_hps;           /* take hyper-parameters from the checkpoint's 'hps' dict       */
    const char *artist_ids_path; /* (priors) id table "name;id" per line, e.g. v2_artist_ids.txt;
                                    NULL: the installed table of the kind's label version (v2
                                    for 5b, 5b_lyrics and the upsamplers, v3 for 1b_lyrics)   */
    const char *genre_ids_path;  /* (priors) id table for genres (NULL: installed, as above)  */
    const char *name;            /* (optional) general.name stored in the file                 */
    bool untrained;              /* mark the file as random weights (the default model)        */
    const char *ids_dir;         /* (optional) folder of v2_/v3_{artist,genre}_ids.txt used when
                                    the paths above are NULL; default: the installed tables
                                    ($ENCORE_DATA_DIR/jukebox-ids, PREFIX/share/encore/...) */
};

enum jb_status jb_import(const struct jb_import_params *params, const struct jb_callbacks *cb);

/* The dtype jb_import stores a tensor in: `storage` for weight matrices (two or more dimensions),
 * output heads and embeddings included; F32 for biases, norms and (vqvae) the VQ-VAE's codebooks
 * (names under "bottleneck."). */
enum jb_dtype jb_import_tensor_dtype(const char *name,
                                     int n_dims,
                                     bool vqvae,
                                     enum jb_dtype storage);

/* ---------------------------------------------------------------------------------------- */
/* VQ-VAE                                                                                    */

/* Number of levels (3 for the released model). */
int jb_vqvae_levels(const struct jb_model *vqvae);
/* Audio samples per code at `level` (8, 32, 128 for the released model); 0 on bad level. */
int jb_vqvae_hop(const struct jb_model *vqvae, int level);
/* Codebook size (2048 for the released model) and code-vector width (64). */
int jb_vqvae_bins(const struct jb_model *vqvae);
int jb_vqvae_emb_width(const struct jb_model *vqvae);

/* Encodes mono 44.1 kHz audio to level-`level` codes. n_samples must be a positive multiple of
 * the top-level hop (jb_vqvae_hop(vq, levels-1)). codes receives n_samples / hop(level) values.
 * Audio over ~24 s is encoded in chunks with receptive-field margins: the codes are those of one
 * pass, and the work memory stays bounded (128 MiB) whatever the length.
 * prequant (optional) receives the encoder output before quantisation, (emb_width, n_codes)
 * row-major. */
enum jb_status jb_vqvae_encode(struct jb_model *vqvae,
                               int level,
                               const float *audio,
                               int64_t n_samples,
                               int32_t *codes,
                               float *prequant,
                               const struct jb_callbacks *cb);

/* Decodes n_codes level-`level` codes to n_codes * hop(level) samples (unclamped).
 * chunk_codes > 0 decodes in pieces of that many codes with the receptive-field margins of the
 * level, bounding memory (the result equals whole-sequence decoding within fp32 rounding);
 * 0 decodes the whole sequence at once. */
enum jb_status jb_vqvae_decode(struct jb_model *vqvae,
                               int level,
                               const int32_t *codes,
                               int64_t n_codes,
                               float *audio,
                               int64_t chunk_codes,
                               const struct jb_callbacks *cb);

/* Codes of context a chunk needs on each side at `level` for exact chunked decoding. */
int64_t jb_vqvae_decode_margin(const struct jb_model *vqvae, int level);

/* ---------------------------------------------------------------------------------------- */
/* audio files                                                                               */

struct jb_audio {
    float *samples; /* mono, owned; free with jb_audio_free */
    int64_t n_samples;
    int sample_rate;
};

/* Length limits of jb_audio_read: max_seconds <= 0 means the default (30 minutes); no call
 * accepts more than JB_AUDIO_LIMIT_SECONDS (a day). */
#define JB_AUDIO_DEFAULT_MAX_SECONDS 1800.0
#define JB_AUDIO_LIMIT_SECONDS 86400.0

/* Reads any libsndfile-readable file, downmixes to mono and resamples to target_rate with
 * libsoxr (very high quality) if the file's rate differs. Memory grows with the frames really
 * decoded (a header's frame count is not trusted); a file longer than max_seconds (at its own
 * rate) is refused. A file that ends before the length its header announces is read as far as
 * it goes, with a warning through the log hook saying how much was read. */
enum jb_status jb_audio_read(const char *path,
                             int target_rate,
                             double max_seconds,
                             struct jb_audio *out);
/* Resamples mono audio in place of *audio (no-op if the rate already matches). */
enum jb_status jb_audio_resample(struct jb_audio *audio, int target_rate);
/* Writes mono float audio as 16-bit PCM WAV (clamped to [-1, 1]) or, for .flac, FLAC. The file
 * appears whole or not at all: written to a unique temporary beside `path`, fsynced and renamed;
 * on failure (a full disk) the temporary is removed and an existing file at `path` is kept
 * unchanged. */
enum jb_status jb_audio_write(const char *path,
                              const float *samples,
                              int64_t n_samples,
                              int sample_rate);
/* The same in steps, for several outputs that must appear together (all candidates of a take
 * or none): begin and write each, finish each (header + fsync: everything that can fail on a
 * full disk), then commit each (only the rename into place) if every finish succeeded, or
 * abort them all. Commit and abort free the handle; commit finishes first if needed. */
struct jb_audio_out;
enum jb_status jb_audio_out_begin(const char *path, int sample_rate, struct jb_audio_out **out);
enum jb_status jb_audio_out_write(struct jb_audio_out *o, const float *samples, int64_t n_samples);
enum jb_status jb_audio_out_finish(struct jb_audio_out *o);
enum jb_status jb_audio_out_commit(struct jb_audio_out *o);
void jb_audio_out_abort(struct jb_audio_out *o);
void jb_audio_free(struct jb_audio *audio);

/* ---------------------------------------------------------------------------------------- */
/* code files: .npy, int32 or int64, shape (n,) or (1, n)                                     */

enum jb_status jb_codes_read(const char *path, int32_t **codes, int64_t *n_codes);
enum jb_status jb_codes_write(const char *path, const int32_t *codes, int64_t n_codes);

/* ---------------------------------------------------------------------------------------- */
/* sessions, jobs and takes: the windowed sampling pipeline (jukebox-spec §6) */
/*
 * A jb_session holds the four models of one Jukebox variant. A job (jb_job_run) turns a riff,
 * nothing, or an earlier take into a new jb_take: the codes of every level for 1..64 candidates,
 * plus the labels and settings used. Audio streams out while the job runs, coarse first: the top
 * level as a preview within seconds, replaced level by level by upsampled audio.
 *
 * Threads and ownership:
 *   - A session is used by one job at a time (jb_job_run and jb_take_decode share its model work
 *     memory). Run jobs on one worker thread per session; the jb_session_* queries are read-only
 *     and may be called from any thread while no job is loading or freeing the session.
 *   - Every callback of a job runs on the thread that called jb_job_run, between tokens or
 *     decoded chunks. Pointers handed to a callback are valid only during that call: copy what
 *     you keep. should_stop may be flipped from any thread (read it with an atomic); the job then
 *     returns JB_STATUS_ERR_CANCELLED within one token step and frees everything it allocated.
 *   - A jb_take is a plain value: owned by whoever received it, freed with jb_take_free, never
 *     modified by a job (continue/upsample produce a new take), safe to read from several
 *     threads and to move between threads.
 *   - The job borrows params (riff, strings, take) for the duration of jb_job_run only.
 */

#define JB_JOB_MAX_LEVELS 3 /* levels of the VQ-VAE and of a take */
/* Sampling temperatures accepted: [JB_JOB_MIN_TEMP, JB_JOB_MAX_TEMP]. Below 1e-3 the scaled
 * logits (logit / temp) can overflow float and every draw would degenerate to code 0; for
 * (near-)greedy decoding use 1e-3, which is already argmax for any realistic logit gap. */
#define JB_JOB_MIN_TEMP 0.001f
#define JB_JOB_MAX_TEMP 100.0f
#define JB_JOB_MAX_CANDIDATES 64 /* candidates of one job */

struct jb_session;
struct jb_take;

/* ---- installed model sets ---- */
/*
 * `encore models fetch SET` installs each set (5b, 5b_lyrics, 1b_lyrics) as one folder holding
 * the four files jb_session_load reads, plus manifest.json, under the models root:
 * $ENCORE_MODELS if set, else $XDG_DATA_HOME/encore/models, else ~/.local/share/encore/models.
 * Every program that takes a model choice from a user (the CLI's --models, encored) resolves it
 * with jb_models_resolve, so they all mean the same thing by a name.
 */
enum jb_status jb_models_root(char *out, size_t len);

enum jb_models_source {
    JB_MODELS_FROM_FOLDER  = 0, /* the choice named a folder */
    JB_MODELS_FROM_SET     = 1, /* the choice named an installed set */
    JB_MODELS_FROM_DEFAULT = 2, /* no choice: fallback_dir (callers tell the user) */
};

/* The folder for a user's model choice:
 *   NULL or ""                    -> fallback_dir (the bundled default model), FROM_DEFAULT;
 *   a name without '/' that is installed (root/NAME holds the four files) -> that, FROM_SET;
 *   an existing folder            -> that folder, FROM_FOLDER;
 *   an installed but incomplete set, or anything else -> JB_STATUS_ERR_INVALID_ARG with a
 *   message naming the installed sets and `encore models fetch NAME`.
 * out receives the folder (ERR_INVALID_ARG if it does not fit in len). */
enum jb_status jb_models_resolve(const char *choice,
                                 const char *fallback_dir,
                                 char *out,
                                 size_t len,
                                 enum jb_models_source *source);

/* Loads dir/vqvae.gguf, dir/upsampler_level_0.gguf, dir/upsampler_level_1.gguf and
 * dir/prior_level_2.gguf on `backend` (borrowed: free it after the session) and checks that they
 * belong together (levels, hops, codebook size, conditioner ratios). NULL + jb_last_error(). */
struct jb_session *jb_session_load(const char *dir, struct jb_backend *backend);
void jb_session_free(struct jb_session *session); /* NULL is a no-op */

struct jb_session_info {
    int n_levels;                 /* 3 */
    int hop[JB_JOB_MAX_LEVELS];   /* samples per code: 8, 32, 128 */
    int n_ctx[JB_JOB_MAX_LEVELS]; /* music tokens per sampling window */
    int bins;                     /* codebook size (2048) */
    const char *top_kind;         /* "prior_5b", "prior_5b_lyrics" or "prior_1b_lyrics" (static) */
    bool lyrics;                  /* the top prior is conditioned on lyrics */
    double min_duration, max_duration; /* song lengths (s) the top prior accepts */
    double min_seconds; /* shortest riff + new audio a job may produce: one full level-1
                           window of upper codes (5.94 s for the released models) */
    bool untrained;     /* any model file is marked untrained (random weights) */
    /* memory, bytes: the weights of each model (resident on the session's backend, or mapped
     * from the file on the CPU), and what each candidate of a sampling batch adds at level L
     * (KV caches and activations with the default chunk and KV type) */
    double vqvae_bytes;
    double prior_bytes[JB_JOB_MAX_LEVELS];
    double candidate_bytes[JB_JOB_MAX_LEVELS];
    /* the backend's memory now (0 when it does not say) */
    double backend_free, backend_total;
    /* bytes of each prior's weights on the backend now (0 after an offload, and always on the
     * CPU, which uses the mapped file in place) */
    double prior_resident[JB_JOB_MAX_LEVELS];
};
void jb_session_get_info(const struct jb_session *session, struct jb_session_info *info);

/* Keeps the priors' KV caches of this session's jobs in fp16 (true) or fp32 (false, the
 * default): half the per-candidate memory of sampling (e.g. 738 -> 369 MB per candidate at the
 * upsampler shape), as the reference's fp16 path (jukebox-spec 5.5) keeps them; all arithmetic
 * stays fp32. Tolerances and measured errors: docs/numerics.md. Takes effect for the next job. */
void jb_session_set_kv_f16(struct jb_session *session, bool f16);

/* Caps the memory a job of this session may take (bytes; 0, the default: what the backend has
 * free, less a margin). jb_job_run refuses a job beyond it before doing any work. */
void jb_session_set_memory_limit(struct jb_session *session, double bytes);

/* Keeps only the prior of the level being sampled on the backend (false, the default: all
 * resident): before each level, jb_job_run moves the other priors' weights off the backend
 * (their host copies stay) and brings this level's back. Less device memory for a copy per
 * level; results are identical. The VQ-VAE stays (every level encodes and decodes with it). */
void jb_session_set_offload(struct jb_session *session, bool offload);

/* Checks an artist and a genre against every prior's own table, exactly as a job would: an
 * unknown name is JB_STATUS_ERR_LABEL whose message lists close matches. Either may be NULL. */
enum jb_status jb_session_check_labels(const struct jb_session *session,
                                       const char *artist,
                                       const char *genre);
/* The top prior's artist (genre == false) or genre table, in file order, for menus. The name is
 * owned by the session. jb_session_label_name returns NULL for i out of range. */
int64_t jb_session_label_count(const struct jb_session *session, bool genre);
const char *jb_session_label_name(const struct jb_session *session, bool genre, int64_t i);

enum jb_job_mode {
    JB_JOB_PRIMED    = 0, /* continue a riff: its codes are kept verbatim at every level */
    JB_JOB_ANCESTRAL = 1, /* from nothing */
    JB_JOB_CONTINUE  = 2, /* extend a take by `seconds` (all levels down to finest_level) */
    JB_JOB_UPSAMPLE  = 3, /* sample the levels below the top from a take's top-level codes */
};

struct jb_job_params {
    enum jb_job_mode mode;

    /* PRIMED: mono float audio at JB_SAMPLE_RATE (jb_audio_read resamples files). It is cut to
     * a multiple of the top-level hop (128 samples); that length D is the take's riff_samples. */
    const float *riff;
    int64_t riff_samples;

    /* CONTINUE / UPSAMPLE: the take to extend and which of its candidates (-1: every candidate,
     * each extended once; i >= 0: candidate i, forked into n_candidates new candidates). */
    const struct jb_take *take;
    int take_candidate;

    double seconds;       /* audio to add (> 0; PRIMED, ANCESTRAL, CONTINUE) */
    double total_seconds; /* song length told to the labels; 0: 180 s, or the length produced
                             if that is longer; CONTINUE/UPSAMPLE: 0 keeps the take's */

    /* Labels, UTF-8. NULL: "unknown" (PRIMED, ANCESTRAL) or the take's (CONTINUE, UPSAMPLE).
     * Names are resolved strictly in every prior's table: an unknown artist or genre fails the
     * job with JB_STATUS_ERR_LABEL listing close matches, never falls back to id 0. lyrics must
     * be NULL or empty unless the top prior takes lyrics (JB_STATUS_ERR_INVALID_ARG: the model
     * would silently ignore them). */
    const char *artist, *genre, *lyrics;

    float temp[JB_JOB_MAX_LEVELS]; /* per level, in [JB_JOB_MIN_TEMP, JB_JOB_MAX_TEMP] (default
                                      0.99, as the reference) */
    int top_k;                     /* 0: off (default) */
    float top_p;                   /* 0: off (default); exclusive with top_k */
    uint64_t seed;                 /* same seed + same params + same session -> same take */

    int n_candidates; /* 1..JB_JOB_MAX_CANDIDATES (default 1); ignored with take_candidate -1 */
    int finest_level; /* lowest level rendered: top level = preview only, 0 = full quality (0) */

    float hop_fraction[JB_JOB_MAX_LEVELS]; /* hop / n_ctx, levels 0,1,2: 0.5, 0.5, 0.125 */
    int chunk_size[JB_JOB_MAX_LEVELS];     /* priming chunk (32; top level 16 for 5b models) */
    int max_batch[JB_JOB_MAX_LEVELS];      /* candidates per batch (16; top level 3 for 5b) */

    /* (optional) resume an interrupted job: `resume` is the partial take of a checkpoint
     * (jb_job_callbacks.on_checkpoint) of a job with exactly these params. Levels above
     * resume_level are taken from it, and level resume_level restarts at window resume_window
     * (the checkpoint's windows_done). Every window draws from its own random stream, so the
     * result equals the uninterrupted job's. PRIMED still needs `riff` for the levels below.
     * Audio of the resumed level is emitted again from its start; levels above emit none. */
    const struct jb_take *resume;
    int resume_level;
    int resume_window;
};

/* Defaults: PRIMED, total_seconds 0, temps 0.99, no top-k/p, seed 0, 1 candidate, finest level
 * 0, hop fractions 0.5, 0.5, 0.125 for levels 0, 1, 2 (sample.py); chunk_size and max_batch 0 = the
 * per-model defaults. */
void jb_job_params_init(struct jb_job_params *params);

/* The memory plan of a job (bytes), computed without allocating: levels are sampled one after
 * the other, so the job needs its largest level. jb_job_run calls it first and refuses a job
 * with need > budget with JB_STATUS_ERR_NOMEM (sizes, and how many candidates at once would
 * fit) before any work. */
struct jb_job_memory {
    double level_bytes[JB_JOB_MAX_LEVELS];   /* sampling level L (0: not sampled) */
    double per_candidate[JB_JOB_MAX_LEVELS]; /* of which each candidate of the batch adds */
    int batch[JB_JOB_MAX_LEVELS];            /* candidates resident at once (max_batch) */
    double need;                             /* the largest level's */
    int need_level;                          /* that level (-1: nothing is sampled) */
    double backend_free, backend_total;      /* the backend's memory now */
    double budget;     /* what the job may use: free less max(256 MiB, 2 % of total), capped
                          by jb_session_set_memory_limit */
    int max_batch_fit; /* most candidates at once that fit at need_level (≥ batch: it fits) */
};
enum jb_status jb_job_memory(const struct jb_session *session,
                             const struct jb_job_params *params,
                             struct jb_job_memory *memory);

/* What a job will do, computed without running it (every check jb_job_run makes). */
struct jb_job_plan {
    int64_t sample_length; /* samples covered when done */
    int64_t riff_samples;  /* prompt kept at the start */
    int64_t total_length;  /* song length in the labels (samples) */
    int n_candidates;
    int top_level, finest_level;          /* levels sampled: top_level..finest_level */
    int64_t n_tokens[JB_JOB_MAX_LEVELS];  /* codes per candidate at the end */
    int64_t n_new[JB_JOB_MAX_LEVELS];     /* of which sampled by this job (0 if skipped) */
    int64_t n_windows[JB_JOB_MAX_LEVELS]; /* sampling windows per level */
};
enum jb_status jb_job_plan(const struct jb_session *session,
                           const struct jb_job_params *params,
                           struct jb_job_plan *plan);

struct jb_job_progress {
    int level;             /* level being sampled */
    int window, n_windows; /* current window (0-based) and windows of this level */
    int64_t done, total;   /* tokens of this level, all candidates; starts at 0, never goes
                              back, ends with done == total */
    double elapsed;        /* seconds since this level began */
    double tokens_per_s;   /* done / elapsed */
    double eta;            /* seconds left for this level (-1 until known) */
};

enum jb_audio_role {
    JB_AUDIO_PREVIEW = 0, /* a level coarser than finest_level: a finer level will replace it */
    JB_AUDIO_FINAL   = 1, /* finest_level: the job's output */
};

/* A piece of decoded audio. For every sampled level L and candidate, the pieces arrive in order,
 * without gaps or overlaps, and cover exactly the samples whose level-L codes this job
 * generated: [known_L * hop_L, n_tokens_L * hop_L), where known_L is what the riff or take
 * already held (PRIMED: [D, sample_length)). A piece is emitted as soon as its codes and those
 * its decoder reads (the VQ-VAE's receptive-field margin) are sampled, so it never changes
 * afterwards; the level's last piece comes when the level finishes. A finer level's piece
 * replaces the coarser level's audio for the same samples. Samples are mono float at
 * JB_SAMPLE_RATE, unclamped (nominally [-1, 1]); index 0 is the start of the take/riff. */
struct jb_job_audio {
    int candidate;
    int level;
    enum jb_audio_role role;
    int64_t first_sample;
    int64_t n_samples;
    const float *samples; /* valid during the call only */
};

/* A sampling window finished: `partial` holds every level above `level` complete and level
 * `level` up to the end of window windows_done - 1 (the other codes are 0). Save it (e.g.
 * jb_take_save) with level and windows_done to resume the job later (jb_job_params.resume). */
struct jb_job_checkpoint {
    int level;
    int windows_done, n_windows;
    const struct jb_take *partial; /* valid during the call only */
};

struct jb_job_callbacks {
    /* (optional) per-level progress, at most ~20 times per second plus each level's start/end */
    void (*on_progress)(const struct jb_job_progress *p, void *user);
    /* (optional) decoded audio as it becomes final */
    void (*on_audio)(const struct jb_job_audio *a, void *user);
    /* (optional) polled before every token and between chunks: true -> ERR_CANCELLED */
    bool (*should_stop)(void *user);
    void *user;
    /* (optional) after every finished sampling window */
    void (*on_checkpoint)(const struct jb_job_checkpoint *c, void *user);
};

/* Runs a job to completion. On success *out receives a new take (free with jb_take_free); on
 * failure or cancellation *out is NULL, the status says why, jb_last_error() has the message,
 * and nothing is left allocated. cb may be NULL. */
enum jb_status jb_job_run(struct jb_session *session,
                          const struct jb_job_params *params,
                          const struct jb_job_callbacks *cb,
                          struct jb_take **out);

/* ---- takes ---- */

struct jb_take_info {
    enum jb_job_mode mode; /* mode of the job that produced the take */
    int n_levels;
    int n_candidates;
    int hop[JB_JOB_MAX_LEVELS];
    int64_t n_tokens[JB_JOB_MAX_LEVELS]; /* codes per candidate per level */
    int64_t sample_length;               /* samples covered by the top level */
    int64_t riff_samples;                /* prompt at the start (0: ancestral) */
    int64_t total_length;                /* song length in the labels (samples) */
    int finest_level;                    /* lowest level whose codes cover sample_length */
    uint64_t seed;
    float temp[JB_JOB_MAX_LEVELS];
    int top_k;
    float top_p;
    const char *artist, *genre, *lyrics; /* owned by the take */
};

void jb_take_free(struct jb_take *take); /* NULL is a no-op */
void jb_take_get_info(const struct jb_take *take, struct jb_take_info *info);
/* Level-`level` codes of one candidate (n_tokens[level] values), owned by the take; NULL if out
 * of range. */
const int32_t *jb_take_codes(const struct jb_take *take, int level, int candidate);

/* A take file is GGUF: int32 tensors "codes.level{L}" [n_candidates, n_tokens] and "encore.take.*"
 * metadata (labels, settings, seed). Loading validates everything (hostile-file rules); a
 * truncated or inconsistent file is JB_STATUS_ERR_FORMAT. Saving writes path.tmp and renames. */
enum jb_status jb_take_save(const struct jb_take *take, const char *path);
enum jb_status jb_take_load(const char *path, struct jb_take **out);

/* Decodes one candidate's level-`level` codes to out[n_tokens[level] * hop[level]] samples
 * (unclamped), in chunks with receptive-field margins (bounded memory). cb may be NULL. */
enum jb_status jb_take_decode(struct jb_session *session,
                              const struct jb_take *take,
                              int candidate,
                              int level,
                              float *out,
                              const struct jb_callbacks *cb);

#ifdef __cplusplus
}
#endif

#endif /* ENCORE_ENGINE_H */
