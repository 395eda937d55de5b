/*
 * plugin/core/audiofile.c - mono float WAV in and out (see audiofile.h).
 */
#include "audiofile.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>

bool audiofile_write(const char *path,
                     const float *data,
                     int64_t n,
                     double rate,
                     char *why,
                     size_t why_len)
{
    SF_INFO info = { .samplerate = (int)lround(rate),
                     .channels   = 1,
                     .format     = SF_FORMAT_WAV | SF_FORMAT_FLOAT };
    SNDFILE *f   = sf_open(path, SFM_WRITE, &info);
    if (!f) {
        snprintf(why, why_len, "cannot write %s: %s", path, sf_strerror(NULL));
        return false;
    }
    sf_count_t got = sf_writef_float(f, data, n);
    int err        = sf_close(f);
    if (got != n || err) {
        snprintf(why,
                 why_len,
                 "short write to %s (%lld of %lld frames)",
                 path,
                 (long long)got,
                 (long long)n);
        return false;
    }
    return true;
}

float *audiofile_read(const char *path,
                      double rate,
                      int64_t max_frames,
                      int64_t *n,
                      char *why,
                      size_t why_len)
{
    SF_INFO info = { 0 };
    SNDFILE *f   = sf_open(path, SFM_READ, &info);
    if (!f) {
        snprintf(why, why_len, "cannot read %s: %s", path, sf_strerror(NULL));
        return NULL;
    }
    if (info.samplerate != (int)lround(rate) || info.channels < 1 || info.channels > 8 ||
        info.frames < 0 || info.frames > max_frames) {
        snprintf(why,
                 why_len,
                 "%s: %d Hz, %d channels, %lld frames; expected %.0f Hz, 1..8 channels, "
                 "at most %lld frames",
                 path,
                 info.samplerate,
                 info.channels,
                 (long long)info.frames,
                 rate,
                 (long long)max_frames);
        sf_close(f);
        return NULL;
    }
    float *all = malloc(sizeof(float) * (size_t)(info.frames * info.channels + 1));
    float *out = malloc(sizeof(float) * (size_t)(info.frames + 1));
    if (!all || !out) {
        snprintf(why, why_len, "%s: out of memory", path);
        free(all), free(out), sf_close(f);
        return NULL;
    }
    sf_count_t got = sf_readf_float(f, all, info.frames);
    sf_close(f);
    for (sf_count_t i = 0; i < got; i++) {
        float s = 0.0f;
        for (int ch = 0; ch < info.channels; ch++)
            s += all[i * info.channels + ch];
        out[i] = s / (float)info.channels;
    }
    free(all);
    *n = got;
    return out;
}
