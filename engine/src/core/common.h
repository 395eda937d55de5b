/*
 * core/common.h - error reporting, logging and checked arithmetic shared by every engine module.
 *
 * Convention: a function that fails because of its input calls jb_fail(status, fmt, ...) once,
 * which records the message for jb_last_error(), logs it at ERROR level and returns the status,
 * so `return jb_fail(JB_STATUS_ERR_FORMAT, "%s: tensor '%s' past end of file", __func__, n);`
 * is the usual idiom. JB_ASSERT is for programmer errors only, never for data from files.
 */
#ifndef JB_CORE_COMMON_H
#define JB_CORE_COMMON_H

#include "encore/engine.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define JB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define JB_PRINTF(a, b)
#endif

enum jb_status jb_fail(enum jb_status status, const char *fmt, ...) JB_PRINTF(2, 3);
void jb_log(enum jb_log_level level, const char *fmt, ...) JB_PRINTF(2, 3);
void jb_clear_error(void);

#define JB_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (!(x)) jb_abort(__FILE__, __LINE__, #x);                                                \
    } while (0)
_Noreturn void jb_abort(const char *file, int line, const char *what);

/* Checked size arithmetic: return false on overflow. */
static inline bool jb_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool jb_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* malloc/calloc that record ERR_NOMEM on failure (never abort). */
void *jb_malloc(size_t n);
void *jb_calloc(size_t n, size_t size);
/* 64-byte aligned allocation for kernel buffers; free with free(). */
void *jb_aligned_alloc(size_t n);

double jb_time_now(void); /* monotonic seconds */

/* Progress helper: rate and ETA from a start time. */
void jb_progress_report(const struct jb_callbacks *cb,
                        const char *stage,
                        int level,
                        int64_t done,
                        int64_t total,
                        double t_start);
static inline bool jb_should_stop(const struct jb_callbacks *cb)
{
    return cb && cb->should_stop && cb->should_stop(cb->user);
}

size_t jb_dtype_size(enum jb_dtype type);

#endif
