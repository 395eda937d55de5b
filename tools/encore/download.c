/* tools/encore/download.c - resumable downloads with libcurl (see download.h). */
#include "download.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "encore/engine.h"

static void set_err(char *err, size_t len, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t len, const char *fmt, ...)
{
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    jb_text_escape(raw, err, len); /* server text and addresses reach the terminal */
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct dl_options dl_options_default(void)
{
    struct dl_options o = { .max_attempts = 6, .first_delay_s = 2.0 };
    const char *env     = getenv("ENCORE_FETCH_RETRY_DELAY");
    if (env && *env) {
        char *end;
        double d = strtod(env, &end);
        if (!*end && d >= 0 && d <= 600) o.first_delay_s = d;
    }
    env        = getenv("ENCORE_PROGRESS");
    o.progress = env ? strcmp(env, "0") != 0 : isatty(STDERR_FILENO);
    return o;
}

void dl_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void dl_global_cleanup(void)
{
    curl_global_cleanup();
}

/* Options every request shares: only http(s), bounded redirects and stalls. */
static CURL *new_handle(const char *url, char *curl_err)
{
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L); /* bytes/s ... */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);    /* ... for a minute: stalled */
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "encore-models-fetch/1");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_err[0] = '\0';
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    return h;
}

/* Worth another try: the network or the server may recover. */
static bool transient(CURLcode rc, long http)
{
    if (rc == CURLE_HTTP_RETURNED_ERROR) return http >= 500 || http == 408 || http == 429;
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM;
}

static void describe(char *err, size_t len, const char *url, CURLcode rc, long http, const char *ce)
{
    if (rc == CURLE_HTTP_RETURNED_ERROR)
        set_err(err,
                len,
                "%s: the server answered HTTP %ld%s",
                url,
                http,
                http == 404 ? " (not found: check --base-url)" : "");
    else
        set_err(err, len, "%s: %s", url, ce[0] ? ce : curl_easy_strerror(rc));
}

/* Sleeps before retry `attempt` (1-based), waking early if asked to stop. */
static bool backoff(const struct dl_options *o, int attempt)
{
    double wait = o->first_delay_s;
    for (int i = 1; i < attempt && wait < 60; i++)
        wait *= 2;
    double until = now_s() + wait;
    while (now_s() < until) {
        if (o->should_stop && o->should_stop(o->user)) return false;
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return true;
}

bool dl_probe(const char *url, const struct dl_options *o, int64_t *size, char *err, size_t len)
{
    *size = -1;
    for (int attempt = 1;; attempt++) {
        char ce[CURL_ERROR_SIZE];
        CURL *h = new_handle(url, ce);
        if (!h) {
            set_err(err, len, "cannot start libcurl");
            return false;
        }
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        CURLcode rc   = curl_easy_perform(h);
        long http     = 0;
        curl_off_t cl = -1;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
        curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (rc == CURLE_OK || (rc == CURLE_HTTP_RETURNED_ERROR && (http == 405 || http == 501))) {
            curl_easy_cleanup(h); /* (a server without HEAD: the size is learnt from the GET) */
            *size = rc == CURLE_OK && cl >= 0 ? (int64_t)cl : -1;
            return true;
        }
        describe(err, len, url, rc, http, ce);
        curl_easy_cleanup(h);
        if (!transient(rc, http) || attempt >= o->max_attempts || !backoff(o, attempt))
            return false;
        fprintf(stderr, "encore models: %s; retrying\n", err);
    }
}

/* ---- one transfer into the .part file ---- */

struct xfer {
    CURL *h;
    int fd;
    int64_t offset;   /* bytes in the file when this try started (after any reset) */
    int64_t written;  /* bytes written by this try */
    int64_t expected; /* -1: unknown */
    bool checked;     /* response code looked at */
    bool overflow;    /* the server sent more than it announced */
    bool io_error;
    const struct dl_options *o;
    double t0, last_draw;
    bool drawn;
};

static size_t on_data(char *data, size_t size, size_t n, void *user)
{
    struct xfer *x = user;
    size_t bytes   = size * n;
    if (!x->checked) {
        long http = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &http);
        x->checked = true;
        if (x->offset > 0 && http == 200) { /* the server ignored the Range: start over */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
                x->io_error = true;
                return 0;
            }
            x->offset = 0;
        }
    }
    if (x->expected >= 0 && x->offset + x->written + (int64_t)bytes > x->expected) {
        x->overflow = true;
        return 0;
    }
    for (size_t done = 0; done < bytes;) {
        ssize_t w = write(x->fd, data + done, bytes - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            x->io_error = true;
            return 0;
        }
        done += (size_t)w;
    }
    x->written += (int64_t)bytes;
    return bytes;
}

static void human(double bytes, char *buf, size_t len)
{
    const char *unit[] = { "B", "KB", "MB", "GB", "TB" };
    int u              = 0;
    while (bytes >= 1000 && u < 4)
        bytes /= 1000, u++;
    snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

static void draw(struct xfer *x, bool final)
{
    double t = now_s();
    if (!final && t - x->last_draw < 0.1) return;
    x->last_draw = t;
    int64_t have = x->offset + x->written;
    double rate  = x->written / (t - x->t0 > 1e-3 ? t - x->t0 : 1e-3);
    char h[32], tot[32] = "?", r[32];
    human((double)have, h, sizeof h);
    if (x->expected >= 0) human((double)x->expected, tot, sizeof tot);
    human(rate, r, sizeof r);
    double frac  = x->expected > 0 ? (double)have / (double)x->expected : 0;
    int bar      = (int)(frac * 24);
    char eta[32] = "";
    if (x->expected > 0 && rate > 0 && have < x->expected) {
        long s = (long)((double)(x->expected - have) / rate);
        snprintf(eta, sizeof eta, " eta %ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    }
    fprintf(stderr,
            "\r  %-24s [%.*s%*s] %5.1f%% %s / %s  %s/s%s   ",
            x->o->label ? x->o->label : "",
            bar,
            "########################",
            24 - bar,
            "",
            100 * frac,
            h,
            tot,
            r,
            eta);
    x->drawn = true;
    fflush(stderr);
}

static int on_xfer(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ult, curl_off_t uln)
{
    (void)dltotal, (void)dlnow, (void)ult, (void)uln;
    struct xfer *x = user;
    if (x->o->should_stop && x->o->should_stop(x->o->user)) return 1;
    if (x->o->progress) draw(x, false);
    return 0;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

bool dl_fetch(const char *url,
              const char *dst,
              int64_t expected,
              const struct dl_options *o,
              int64_t *resumed_from,
              char *err,
              size_t len)
{
    char part[4200];
    snprintf(part, sizeof part, "%s.part", dst);
    if (resumed_from) *resumed_from = 0;
    bool first_request = true;
    for (int attempt = 1;; attempt++) {
        int64_t have = file_size(part);
        if (have < 0) have = 0;
        if (expected >= 0 && have > expected) { /* a stale part of another file: restart */
            if (truncate(part, 0) != 0) {
                set_err(err, len, "cannot reset %s: %s", part, strerror(errno));
                return false;
            }
            have = 0;
        }
        if (expected >= 0 && have == expected) break;
        int fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 || lseek(fd, have, SEEK_SET) != have) {
            set_err(err, len, "cannot write %s: %s", part, strerror(errno));
            if (fd >= 0) close(fd);
            return false;
        }
        if (first_request && resumed_from) *resumed_from = have;
        first_request = false;
        char ce[CURL_ERROR_SIZE];
        struct xfer x = { .fd = fd, .offset = have, .expected = expected, .o = o, .t0 = now_s() };
        x.h           = new_handle(url, ce);
        if (!x.h) {
            close(fd);
            set_err(err, len, "cannot start libcurl");
            return false;
        }
        if (have > 0) curl_easy_setopt(x.h, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
        curl_easy_setopt(x.h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(x.h, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(x.h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(x.h, CURLOPT_XFERINFOFUNCTION, on_xfer);
        curl_easy_setopt(x.h, CURLOPT_XFERINFODATA, &x);
        CURLcode rc = curl_easy_perform(x.h);
        long http   = 0;
        curl_easy_getinfo(x.h, CURLINFO_RESPONSE_CODE, &http);
        if (o->progress && x.drawn) draw(&x, true), fputc('\n', stderr);
        bool synced = fsync(fd) == 0;
        close(fd);
        curl_easy_cleanup(x.h);
        int64_t now_have = file_size(part);

        if (x.overflow) {
            unlink(part);
            set_err(err,
                    len,
                    "%s: the server sent more than the %lld bytes it announced; refused",
                    url,
                    (long long)expected);
            return false;
        }
        if (x.io_error || !synced) {
            set_err(err, len, "cannot write %s: %s", part, strerror(errno));
            return false;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
            set_err(err,
                    len,
                    "interrupted; %lld bytes kept in %s: run the same command to resume",
                    (long long)now_have,
                    part);
            return false;
        }
        if (rc == CURLE_HTTP_RETURNED_ERROR && http == 416 && expected >= 0 && now_have == expected)
            break; /* nothing left to send: the part was already whole */
        if (rc == CURLE_OK && (expected < 0 || now_have == expected)) break;
        if (rc == CURLE_HTTP_RETURNED_ERROR && http == 416) {
            set_err(err,
                    len,
                    "%s: the server has no bytes past %lld, but announced %lld: refused (the "
                    "partial download was removed)",
                    url,
                    (long long)now_have,
                    (long long)expected);
            unlink(part);
            return false;
        }
        if (rc == CURLE_OK) /* the body ended early although the transfer "succeeded" */
            set_err(err,
                    len,
                    "%s: download ended at %lld of %lld bytes",
                    url,
                    (long long)now_have,
                    (long long)expected);
        else
            describe(err, len, url, rc, http, ce);
        bool retry = rc == CURLE_OK || transient(rc, http);
        if (x.written >= (16 << 20)) attempt = 0; /* real progress: the budget starts again */
        if (!retry || attempt >= o->max_attempts) {
            if (retry)
                set_err(err + strlen(err),
                        len - strlen(err),
                        " (gave up after %d tries; %lld bytes kept in %s for the next run)",
                        o->max_attempts,
                        (long long)now_have,
                        part);
            return false;
        }
        fprintf(stderr, "encore models: %s; retrying\n", err);
        if (!backoff(o, attempt > 0 ? attempt : 1)) {
            set_err(err, len, "interrupted; run the same command to resume");
            return false;
        }
    }
    if (rename(part, dst) != 0) {
        set_err(err, len, "cannot rename %s: %s", part, strerror(errno));
        return false;
    }
    return true;
}

bool dl_sha256_file(const char *path, char hex[65], char *err, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, len, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    EVP_MD_CTX *ctx    = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20);
    bool ok            = ctx && buf && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    size_t n;
    while (ok && (n = fread(buf, 1, 1 << 20, f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    unsigned char md[32];
    unsigned int md_len = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 32;
    if (ok)
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    else
        set_err(err, len, "cannot hash %s", path);
    free(buf);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return ok;
}
