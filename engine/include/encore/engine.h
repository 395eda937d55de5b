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

/* Install a log hook (NULL: silent, the default). Not thread-safe: call once at start-up. */
void jb_log_set(jb_log_fn fn, void *user);

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
    const char *stage;   /* "encode", "decode", "import", "sample", ... (static string)   */
    int         level;   /* VQ-VAE / prior level, -1 if not applicable                    */
    int64_t     done;    /* units finished (samples, tokens, tensors)                     */
    int64_t     total;   /* units in all                                                  */
    double      elapsed; /* seconds since the stage began                                 */
    double      rate;    /* units per second so far                                       */
    double      eta;     /* estimated seconds left (-1 if unknown)                        */
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
void               jb_backend_free(struct jb_backend *backend);
const char        *jb_backend_name(const struct jb_backend *backend);
/* Comma-separated list of the backends compiled into this build, e.g. "cpu". */
const char *jb_backends_available(void);

/* ---------------------------------------------------------------------------------------- */
/* model files                                                                               */

enum jb_model_kind {
    JB_MODEL_VQVAE = 0,
    JB_MODEL_PRIOR = 1,
};

struct jb_model;

/* Memory-maps an Encore GGUF model file, validates it completely (metadata, tensor names,
 * shapes, types, bounds) and prepares it on the backend. NULL on failure (see jb_last_error). */
struct jb_model   *jb_model_load(const char *path, struct jb_backend *backend);
void               jb_model_free(struct jb_model *model);
enum jb_model_kind jb_model_get_kind(const struct jb_model *model);

/* Writes a human-readable description of a model file (hyper-parameters, vocabularies, tensor
 * counts and bytes per dtype) to out. With verbose, lists every tensor. */
enum jb_status jb_model_file_describe(const char *path, FILE *out, bool verbose);

/* ---------------------------------------------------------------------------------------- */
/* importing OpenAI checkpoints (.pth.tar, legacy or zip torch format)                        */

struct jb_import_params {
    const char   *src_path;      /* vqvae.pth.tar or prior_level_N.pth.tar                     */
    const char   *dst_path;      /* Encore GGUF file to write                                   */
    const char   *kind;          /* "vqvae", "upsampler_level_0", "upsampler_level_1",
                                    "prior_5b", "prior_5b_lyrics", "prior_1b_lyrics";
                                    NULL: detect from the tensor names and the stored hps      */
    enum jb_dtype storage;       /* dtype of the stored weights (F32, F16 or BF16)              */
    const char   *hps_json_path; /* (optional) JSON object of Jukebox hps overriding the preset */
    bool          use_ckpt_hps;  /* take hyper-parameters from the checkpoint's 'hps' dict       */
    const char   *artist_ids_path; /* (priors) id table "name;id" per line, e.g. v2_artist_ids.txt */
    const char   *genre_ids_path;  /* (priors) id table for genres                              */
    const char   *name;          /* (optional) general.name stored in the file                 */
    bool          untrained;     /* mark the file as random weights (the default model)        */
};

enum jb_status jb_import(const struct jb_import_params *params, const struct jb_callbacks *cb);

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
 * prequant (optional) receives the encoder output before quantisation, (emb_width, n_codes)
 * row-major. */
enum jb_status jb_vqvae_encode(struct jb_model *vqvae, int level, const float *audio,
                               int64_t n_samples, int32_t *codes, float *prequant,
                               const struct jb_callbacks *cb);

/* Decodes n_codes level-`level` codes to n_codes * hop(level) samples (unclamped).
 * chunk_codes > 0 decodes in pieces of that many codes with the receptive-field margins of the
 * level, bounding memory (the result equals whole-sequence decoding within fp32 rounding);
 * 0 decodes the whole sequence at once. */
enum jb_status jb_vqvae_decode(struct jb_model *vqvae, int level, const int32_t *codes,
                               int64_t n_codes, float *audio, int64_t chunk_codes,
                               const struct jb_callbacks *cb);

/* Codes of context a chunk needs on each side at `level` for exact chunked decoding. */
int64_t jb_vqvae_decode_margin(const struct jb_model *vqvae, int level);

/* ---------------------------------------------------------------------------------------- */
/* audio files                                                                               */

struct jb_audio {
    float  *samples;     /* mono, owned; free with jb_audio_free */
    int64_t n_samples;
    int     sample_rate;
};

/* Reads any libsndfile-readable file, downmixes to mono and resamples to target_rate with
 * libsoxr (very high quality) if the file's rate differs. max_seconds > 0 refuses longer files
 * before allocating. */
enum jb_status jb_audio_read(const char *path, int target_rate, double max_seconds,
                             struct jb_audio *out);
/* Resamples mono audio in place of *audio (no-op if the rate already matches). */
enum jb_status jb_audio_resample(struct jb_audio *audio, int target_rate);
/* Writes mono float audio as 16-bit PCM WAV (clamped to [-1, 1]) or, for .flac, FLAC. */
enum jb_status jb_audio_write(const char *path, const float *samples, int64_t n_samples,
                              int sample_rate);
void           jb_audio_free(struct jb_audio *audio);

/* ---------------------------------------------------------------------------------------- */
/* code files: .npy, int32 or int64, shape (n,) or (1, n)                                     */

enum jb_status jb_codes_read(const char *path, int32_t **codes, int64_t *n_codes);
enum jb_status jb_codes_write(const char *path, const int32_t *codes, int64_t n_codes);

#ifdef __cplusplus
}
#endif

#endif /* ENCORE_ENGINE_H */
