/*
 * plugin/core/audiofile.h - mono float WAV files for riffs and takes (libsndfile).
 *
 * Non-realtime only. Takes are written as 32-bit float WAV so a DAW can import them as
 * regions and a reopened session plays exactly what was saved.
 */
#ifndef ENCORE_PLUGIN_AUDIOFILE_H
#define ENCORE_PLUGIN_AUDIOFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes n mono frames; false with a reason in why. */
bool audiofile_write(const char *path,
                     const float *data,
                     int64_t n,
                     double rate,
                     char *why,
                     size_t why_len);

/* Reads a mono file (other channel counts are downmixed) of at most max_frames frames into a
 * malloc'd buffer. The file's rate must equal `rate`. NULL with a reason in why. */
float *audiofile_read(const char *path,
                      double rate,
                      int64_t max_frames,
                      int64_t *n,
                      char *why,
                      size_t why_len);

#endif
