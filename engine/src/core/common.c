/* core/common.c - error recording, the log hook, checked allocation, timing. */
#include "core/common.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static _Thread_local char tls_error[1024];
static jb_log_fn g_log_fn;
static void *g_log_user;

void jb_log_set(jb_log_fn fn, void *user)
{
    g_log_fn   = fn;
    g_log_user = user;
}

/* Length of the printable UTF-8 character at p (1..4), or 0 for a control character, a C1
 * control (U+0080..U+009F, escapes on some terminals) or invalid UTF-8. */
static int printable_len(const unsigned char *p)
{
    if (p[0] < 0x20 || p[0] == 0x7f) return 0;
    if (p[0] < 0x80) return 1;
    int n = p[0] >= 0xf5 ? 0 : p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90) ||
        (n == 2 && p[0] == 0xc2 && p[1] < 0xa0))
        return 0; /* overlong, surrogate, beyond U+10FFFF, C1 */
    return n;
}

size_t jb_text_escape(const char *s, char *out, size_t len)
{
    if (len == 0) return 0;
    size_t o               = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        int n = printable_len(p);
        if (n > 0) {
            if (o + (size_t)n >= len) break;
            memcpy(out + o, p, (size_t)n);
            o += (size_t)n;
            p += n;
        } else {
            if (o + 4 >= len) break;
            snprintf(out + o, len - o, "\\x%02x", *p);
            o += 4;
            p++;
        }
    }
    out[o] = '\0';
    return o;
}

/* Messages carry names from files (artists, tensor names, paths): escaped before anyone sees
 * them, so a hostile file cannot drive the terminal or forge log lines. */
static void log_emit(enum jb_log_level level, const char *fmt, va_list ap)
{
    if (!g_log_fn) return;
    char raw[1024], buf[1024];
    vsnprintf(raw, sizeof raw, fmt, ap);
    jb_text_escape(raw, buf, sizeof buf);
    g_log_fn(level, buf, g_log_user);
}

void jb_log(enum jb_log_level level, const char *fmt, ...)
{
    if (!g_log_fn) return;
    va_list ap;
    va_start(ap, fmt);
    log_emit(level, fmt, ap);
    va_end(ap);
}

enum jb_status jb_fail(enum jb_status status, const char *fmt, ...)
{
    char raw[sizeof tls_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    jb_text_escape(raw, tls_error, sizeof tls_error);
    jb_log(JB_LOG_ERROR, "%s", tls_error);
    return status;
}

void jb_clear_error(void)
{
    tls_error[0] = '\0';
}

const char *jb_last_error(void)
{
    return tls_error;
}

_Noreturn void jb_abort(const char *file, int line, const char *what)
{
    fprintf(stderr, "encore: internal error at %s:%d: assertion '%s' failed\n", file, line, what);
    abort();
}

const char *jb_status_str(enum jb_status status)
{
    switch (status) {
    case JB_STATUS_OK:
        return "ok";
    case JB_STATUS_ERR_INVALID_ARG:
        return "invalid argument";
    case JB_STATUS_ERR_IO:
        return "i/o error";
    case JB_STATUS_ERR_FORMAT:
        return "malformed input";
    case JB_STATUS_ERR_MODEL:
        return "model mismatch";
    case JB_STATUS_ERR_UNSUPPORTED:
        return "unsupported";
    case JB_STATUS_ERR_NOMEM:
        return "out of memory";
    case JB_STATUS_ERR_CANCELLED:
        return "cancelled";
    case JB_STATUS_ERR_DEVICE:
        return "device error";
    case JB_STATUS_ERR_LABEL:
        return "unknown label";
    }
    return "unknown status";
}

void *jb_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) jb_fail(JB_STATUS_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *jb_calloc(size_t n, size_t size)
{
    size_t total;
    if (!jb_mul_size(n, size, &total)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "allocation size overflow (%zu x %zu)", n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) jb_fail(JB_STATUS_ERR_NOMEM, "out of memory allocating %zu bytes", total);
    return p;
}

void *jb_aligned_alloc(size_t n)
{
    size_t rounded;
    if (!jb_add_size(n, 63, &rounded)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "allocation size overflow (%zu)", n);
        return NULL;
    }
    rounded &= ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) jb_fail(JB_STATUS_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

double jb_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void jb_progress_report(const struct jb_callbacks *cb,
                        const char *stage,
                        int level,
                        int64_t done,
                        int64_t total,
                        double t_start)
{
    if (!cb || !cb->on_progress) return;
    struct jb_progress p = { .stage = stage, .level = level, .done = done, .total = total };
    p.elapsed            = jb_time_now() - t_start;
    p.rate               = p.elapsed > 0 ? (double)done / p.elapsed : 0.0;
    p.eta                = (p.rate > 0 && total >= done) ? (double)(total - done) / p.rate : -1.0;
    cb->on_progress(&p, cb->user);
}

size_t jb_dtype_size(enum jb_dtype type)
{
    switch (type) {
    case JB_DTYPE_F32:
        return 4;
    case JB_DTYPE_F16:
        return 2;
    case JB_DTYPE_BF16:
        return 2;
    case JB_DTYPE_I32:
        return 4;
    case JB_DTYPE_COUNT:
        break;
    }
    return 0;
}

const char *jb_dtype_name(enum jb_dtype type)
{
    switch (type) {
    case JB_DTYPE_F32:
        return "f32";
    case JB_DTYPE_F16:
        return "f16";
    case JB_DTYPE_BF16:
        return "bf16";
    case JB_DTYPE_I32:
        return "i32";
    case JB_DTYPE_COUNT:
        break;
    }
    return "?";
}

bool jb_dtype_parse(const char *s, enum jb_dtype *out)
{
    static const struct {
        const char *name;
        enum jb_dtype type;
    } names[] = { { "f32", JB_DTYPE_F32 },     { "fp32", JB_DTYPE_F32 },
                  { "float32", JB_DTYPE_F32 }, { "f16", JB_DTYPE_F16 },
                  { "fp16", JB_DTYPE_F16 },    { "float16", JB_DTYPE_F16 },
                  { "bf16", JB_DTYPE_BF16 },   { "bfloat16", JB_DTYPE_BF16 } };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].type;
            return true;
        }
    }
    return false;
}
