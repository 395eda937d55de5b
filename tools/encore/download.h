/*
 * tools/encore/download.h - resumable HTTP(S) downloads with libcurl, for `encore models fetch`.
 *
 * A download goes to DST.part and is renamed to DST once it holds exactly the size the server
 * announced. An existing .part is resumed with an HTTP Range request; transient failures (a cut
 * connection, a timeout, a 5xx status) are retried with exponential backoff; a 4xx status is
 * final. Only http and https are followed (also on redirects).
 */
#ifndef ENCORE_DOWNLOAD_H
#define ENCORE_DOWNLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dl_options {
    int max_attempts;     /* tries per request (>= 1) */
    double first_delay_s; /* backoff before the 2nd try; doubles each time */
    bool progress;        /* draw a progress bar on stderr (callers pass isatty) */
    const char *label;    /* name shown on the bar */
    bool (*should_stop)(void *user);
    void *user;
};

/* Defaults: 6 attempts, 2 s first delay (ENCORE_FETCH_RETRY_DELAY overrides it, for tests),
 * progress bar when stderr is a terminal (ENCORE_PROGRESS=0/1 overrides). */
struct dl_options dl_options_default(void);

void dl_global_init(void);
void dl_global_cleanup(void);

/* Size in bytes the server announces for url (HEAD, redirects followed); -1 if it does not say.
 * Returns false with a message in err on failure (a 404, a refused connection, ...). */
bool dl_probe(const char *url, const struct dl_options *o, int64_t *size, char *err, size_t len);

/* Downloads url to dst via dst.part (resumed if present). expected >= 0 is the size the file
 * must have (from dl_probe); a body that ends short or runs long is an error. *resumed_from
 * (optional) receives the offset of the first Range request (0 if none). */
bool dl_fetch(const char *url,
              const char *dst,
              int64_t expected,
              const struct dl_options *o,
              int64_t *resumed_from,
              char *err,
              size_t len);

/* sha256 of a file as 64 lowercase hex digits into hex[65] (libcrypto). */
bool dl_sha256_file(const char *path, char hex[65], char *err, size_t len);

#endif
