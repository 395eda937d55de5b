/*
 * audio/audio.c - audio files in and out (libsndfile), downmix to mono, resampling (libsoxr),
 * and codes files (.npy).
 *
 * Reading mirrors what the reference feeds the VQ-VAE (jukebox-spec §3.1): float samples in
 * [-1, 1] (integer PCM divided by 2^(bits-1), which is libsndfile's float conversion), channels
 * averaged, resampled to 44.1 kHz if needed. Resampler parity with librosa/resampy is out of
 * scope; 44.1 kHz input is passed through untouched.
 */
#include "core/common.h"
#include "core/outfile.h"
#include "format/npy.h"

#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <string.h>
#include <unistd.h>

#define MAX_CHANNELS 64
#define MAX_RATE 768000

/* Appends frames [n, n + got) of frame_buf, downmixed, growing out->samples geometrically by what
 * is really decoded (never by what the header claims). */
static enum jb_status append_frames(struct jb_audio *out,
                                    int64_t *cap,
                                    const float *frame_buf,
                                    int64_t got,
                                    int channels)
{
    if (out->n_samples + got > *cap) {
        int64_t want = *cap ? *cap * 2 : 65536;
        while (want < out->n_samples + got)
            want *= 2;
        float *grown = realloc(out->samples, (size_t)want * sizeof(float));
        if (!grown)
            return jb_fail(
              JB_STATUS_ERR_NOMEM, "audio: out of memory for %lld samples", (long long)want);
        out->samples = grown;
        *cap         = want;
    }
    for (int64_t i = 0; i < got; i++) {
        float acc = 0;
        for (int c = 0; c < channels; c++)
            acc += frame_buf[i * channels + c];
        out->samples[out->n_samples++] = acc / (float)channels;
    }
    return JB_STATUS_OK;
}

enum jb_status jb_audio_read(const char *path,
                             int target_rate,
                             double max_seconds,
                             struct jb_audio *out)
{
    memset(out, 0, sizeof *out);
    if (target_rate <= 0 || target_rate > MAX_RATE)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "audio: bad target sample rate %d", target_rate);
    if (!(max_seconds > 0)) max_seconds = JB_AUDIO_DEFAULT_MAX_SECONDS;
    if (!(max_seconds <= JB_AUDIO_LIMIT_SECONDS))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "audio: length limit %g s is above %g s",
                       max_seconds,
                       (double)JB_AUDIO_LIMIT_SECONDS);
    SF_INFO info = { 0 };
    SNDFILE *sf  = sf_open(path, SFM_READ, &info);
    if (!sf)
        return jb_fail(JB_STATUS_ERR_IO, "audio: cannot read '%s': %s", path, sf_strerror(NULL));

    enum jb_status st = JB_STATUS_OK;
    float *frame_buf  = NULL;
    int64_t cap       = 0;
    if (info.channels < 1 || info.channels > MAX_CHANNELS || info.samplerate < 1000 ||
        info.samplerate > MAX_RATE) {
        st = jb_fail(JB_STATUS_ERR_FORMAT,
                     "audio: '%s' has %d channels at %d Hz (unsupported)",
                     path,
                     info.channels,
                     info.samplerate);
        goto done;
    }
    /* The header's frame count is only a claim (a FLAC's STREAMINFO may say 2^34): memory
     * grows with the frames actually decoded, up to the length limit. */
    const int64_t max_frames = (int64_t)(max_seconds * info.samplerate);
    frame_buf                = jb_malloc((size_t)4096 * (size_t)info.channels * sizeof(float));
    if (!frame_buf) {
        st = JB_STATUS_ERR_NOMEM;
        goto done;
    }
    for (;;) {
        sf_count_t got = sf_readf_float(sf, frame_buf, 4096);
        if (got <= 0) break;
        if (out->n_samples + got > max_frames) {
            st = jb_fail(JB_STATUS_ERR_INVALID_ARG,
                         "audio: '%s' is longer than the limit of %.1f s (see --max-seconds)",
                         path,
                         max_seconds);
            goto done;
        }
        if ((st = append_frames(out, &cap, frame_buf, got, info.channels))) goto done;
    }
    const int64_t n = out->n_samples;
    if (n == 0) {
        st = jb_fail(JB_STATUS_ERR_FORMAT, "audio: no samples could be decoded from '%s'", path);
        goto done;
    }
    if (info.frames > 0 && n < info.frames)
        jb_log(JB_LOG_WARN,
               "audio: '%s' ends early (damaged or cut): read %lld of the %lld frames its header "
               "announces (%.2f of %.2f s)",
               path,
               (long long)n,
               (long long)info.frames,
               (double)n / info.samplerate,
               (double)info.frames / info.samplerate);
    out->sample_rate = info.samplerate;
    if (cap > n) { /* give back the slack of the geometric growth */
        float *fit = realloc(out->samples, (size_t)n * sizeof(float));
        if (fit) out->samples = fit;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(out->samples[i])) {
            st = jb_fail(JB_STATUS_ERR_FORMAT, "audio: '%s' contains non-finite samples", path);
            goto done;
        }
    }
    st = jb_audio_resample(out, target_rate);

done:
    free(frame_buf);
    sf_close(sf);
    if (st) jb_audio_free(out);
    return st;
}

enum jb_status jb_audio_resample(struct jb_audio *a, int target_rate)
{
    if (a->sample_rate == target_rate) return JB_STATUS_OK;
    if (target_rate <= 0 || target_rate > MAX_RATE || a->sample_rate <= 0)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "audio: cannot resample %d Hz to %d Hz",
                       a->sample_rate,
                       target_rate);
    double ratio  = (double)target_rate / a->sample_rate;
    int64_t n_out = (int64_t)ceil((double)a->n_samples * ratio);
    float *dst    = jb_malloc((size_t)(n_out > 0 ? n_out : 1) * sizeof(float));
    if (!dst) return JB_STATUS_ERR_NOMEM;
    size_t done_out       = 0;
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_VHQ, 0);
    soxr_io_spec_t io     = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_error_t err      = soxr_oneshot(a->sample_rate,
                                    target_rate,
                                    1,
                                    a->samples,
                                    (size_t)a->n_samples,
                                    NULL,
                                    dst,
                                    (size_t)n_out,
                                    &done_out,
                                    &io,
                                    &q,
                                    NULL);
    if (err) {
        free(dst);
        return jb_fail(JB_STATUS_ERR_FORMAT, "audio: resampling failed: %s", err);
    }
    free(a->samples);
    a->samples     = dst;
    a->n_samples   = (int64_t)done_out;
    a->sample_rate = target_rate;
    return JB_STATUS_OK;
}

/* An audio file being written: libsndfile on the descriptor of a unique temporary beside the
 * final path (core/outfile.h), renamed over it only by jb_audio_out_commit. */
struct jb_audio_out {
    struct jb_outfile file;
    SNDFILE *sf;
    bool failed; /* finishing failed: commit refuses */
};

enum jb_status jb_audio_out_begin(const char *path, int sample_rate, struct jb_audio_out **out)
{
    *out = NULL;
    if (!path || sample_rate <= 0 || sample_rate > MAX_RATE)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "audio: bad arguments writing '%s'", path);
    struct jb_audio_out *o = jb_calloc(1, sizeof *o);
    if (!o) return JB_STATUS_ERR_NOMEM;
    enum jb_status st = jb_outfile_open(&o->file, path);
    if (st) {
        free(o);
        return st;
    }
    const char *ext = strrchr(path, '.');
    SF_INFO info    = { .samplerate = sample_rate, .channels = 1 };
    info.format     = (ext && strcasecmp(ext, ".flac") == 0) ? (SF_FORMAT_FLAC | SF_FORMAT_PCM_16)
                                                             : (SF_FORMAT_WAV | SF_FORMAT_PCM_16);
    o->sf           = sf_open_fd(o->file.fd, SFM_WRITE, &info, SF_FALSE);
    if (!o->sf) {
        st = jb_fail(JB_STATUS_ERR_IO, "audio: cannot write '%s': %s", path, sf_strerror(NULL));
        jb_outfile_abort(&o->file);
        free(o);
        return st;
    }
    /* Clamp like the reference's save_wav; libsndfile then scales float by 32767. */
    sf_command(o->sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    *out = o;
    return JB_STATUS_OK;
}

enum jb_status jb_audio_out_write(struct jb_audio_out *o, const float *samples, int64_t n_samples)
{
    if (!o || !o->sf || n_samples < 0 || (n_samples > 0 && !samples))
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "audio: bad arguments to jb_audio_out_write");
    float buf[4096];
    int64_t done = 0;
    while (done < n_samples) {
        int64_t n = n_samples - done < 4096 ? n_samples - done : 4096;
        for (int64_t i = 0; i < n; i++) {
            float v = samples[done + i];
            buf[i]  = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : (isfinite(v) ? v : 0.0f);
        }
        if (sf_writef_float(o->sf, buf, n) != n)
            return jb_fail(JB_STATUS_ERR_IO,
                           "audio: cannot write '%s' (disk full?): %s",
                           o->file.path,
                           sf_strerror(o->sf));
        done += n;
    }
    return JB_STATUS_OK;
}

enum jb_status jb_audio_out_finish(struct jb_audio_out *o)
{
    if (!o) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "audio: no output to finish");
    if (!o->sf) return JB_STATUS_OK;
    /* sf_close writes the final header: its failure means a bad file */
    int bad = sf_close(o->sf) != 0;
    o->sf   = NULL;
    if (bad || fsync(o->file.fd) != 0) {
        o->failed = true;
        return jb_fail(JB_STATUS_ERR_IO, "audio: cannot finish '%s' (disk full?)", o->file.path);
    }
    return JB_STATUS_OK;
}

enum jb_status jb_audio_out_commit(struct jb_audio_out *o)
{
    if (!o) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "audio: no output to finish");
    enum jb_status st = o->failed
                          ? jb_fail(JB_STATUS_ERR_IO, "audio: '%s' was not finished", o->file.path)
                          : jb_audio_out_finish(o);
    if (st)
        jb_outfile_abort(&o->file);
    else
        st = jb_outfile_commit(&o->file);
    free(o);
    return st;
}

void jb_audio_out_abort(struct jb_audio_out *o)
{
    if (!o) return;
    if (o->sf) sf_close(o->sf);
    jb_outfile_abort(&o->file);
    free(o);
}

enum jb_status jb_audio_write(const char *path,
                              const float *samples,
                              int64_t n_samples,
                              int sample_rate)
{
    if (n_samples < 0)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "audio: bad arguments writing '%s'", path);
    struct jb_audio_out *o;
    enum jb_status st = jb_audio_out_begin(path, sample_rate, &o);
    if (st) return st;
    if ((st = jb_audio_out_write(o, samples, n_samples))) {
        jb_audio_out_abort(o);
        return st;
    }
    return jb_audio_out_commit(o);
}

void jb_audio_free(struct jb_audio *a)
{
    if (!a) return;
    free(a->samples);
    a->samples   = NULL;
    a->n_samples = 0;
}

enum jb_status jb_codes_read(const char *path, int32_t **codes, int64_t *n_codes)
{
    struct jb_npy a;
    *codes            = NULL;
    *n_codes          = 0;
    enum jb_status st = jb_npy_read(path, &a);
    if (st) return st;
    if (a.type != JB_NPY_I32 && a.type != JB_NPY_I64) {
        jb_npy_free(&a);
        return jb_fail(JB_STATUS_ERR_FORMAT, "codes: '%s' must hold int32 or int64 values", path);
    }
    if (!(a.n_dims == 1 || (a.n_dims == 2 && a.shape[0] == 1))) {
        jb_npy_free(&a);
        return jb_fail(JB_STATUS_ERR_FORMAT, "codes: '%s' must have shape (n,) or (1, n)", path);
    }
    *codes = jb_npy_to_i32(&a);
    if (!*codes) {
        jb_npy_free(&a);
        return JB_STATUS_ERR_FORMAT;
    }
    *n_codes = a.n;
    jb_npy_free(&a);
    return JB_STATUS_OK;
}

enum jb_status jb_codes_write(const char *path, const int32_t *codes, int64_t n_codes)
{
    int64_t shape[1] = { n_codes };
    return jb_npy_write(path, JB_NPY_I32, 1, shape, codes);
}
