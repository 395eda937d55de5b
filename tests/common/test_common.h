/*
 * tests/common/test_common.h - what the tests, benches and tools/mkdefault share: pass/fail
 * reporting, a seeded RNG, temporary folders, whole-file I/O, the backend a test runs on, and an
 * in-memory weights source with random-tensor builders (format/weights.h).
 */
#ifndef JB_TESTS_COMMON_TEST_COMMON_H
#define JB_TESTS_COMMON_TEST_COMMON_H

#include "backend/backend.h"
#include "core/common.h"
#include "format/hparams.h"
#include "format/weights.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* ---- reporting ------------------------------------------------------------------------------ */

/* Prints "ok   ..." or "FAIL ..." and counts it. */
void tc_check(bool ok, const char *fmt, ...) JB_PRINTF(2, 3);
int tc_passed(void);
int tc_failed(void);
/* Prints "N passed, N failed" and returns the exit status (1 if anything failed). */
int tc_summary(void);

/* Counts a condition but prints only a failure ("FAIL file:line: message"): for tests of many
 * small checks. */
#define TC_EXPECT(cond, ...) tc_expect((cond), __FILE__, __LINE__, __VA_ARGS__)
void tc_expect(bool ok, const char *file, int line, const char *fmt, ...) JB_PRINTF(4, 5);

/* Prints "ok   NAME" or "FAIL NAME: DETAIL" and counts it (DETAIL may be NULL or empty). */
void tc_report(const char *name, bool ok, const char *detail);

/* Cases written as `bool case(void)` that stop at the first failed TC_REQUIRE, which records
 * the line and the condition; tc_run_case clears the engine's error, runs and reports it. */
extern char tc_fail_where[256];
#define TC_REQUIRE(c)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            snprintf(tc_fail_where, sizeof tc_fail_where, "line %d: %s", __LINE__, #c);            \
            return false;                                                                          \
        }                                                                                          \
    } while (0)
void tc_run_case(const char *name, bool (*fn)(void));

/* ---- random numbers (splitmix64; the same sequence everywhere) --------------------------------
 */

uint64_t tc_rng_next(uint64_t *state);
float tc_rng_uniform(uint64_t *state); /* [-1, 1) */
/* n floats uniform in [-scale, scale) */
void tc_rng_fill(uint64_t *state, float *dst, size_t n, float scale);

/* ---- timings -------------------------------------------------------------------------------- */

/* Sorts v[0..n) ascending (the benches' medians and ranges). */
void tc_sort_doubles(double *v, size_t n);

/* ---- files and folders ---------------------------------------------------------------------- */

/* Creates $TMPDIR/encore-<tag>-XXXXXX into buf; false on failure. */
bool tc_tempdir(char *buf, size_t len, const char *tag);
/* Removes a folder and everything below it (no symlinks followed). */
void tc_rmtree(const char *dir);
/* The whole file (NUL-terminated, *n bytes without it); NULL on error. free() it. */
char *tc_read_file(const char *path, size_t *n);
bool tc_write_file(const char *path, const void *data, size_t n);
/* The whole file, or "" where it cannot be read (never NULL; free() it). */
char *tc_read_text(const char *path);
bool tc_exists(const char *path);
/* Temporaries ".NAME.XXXXXX" (core/outfile.h) left beside path; -1 if its folder cannot be read. */
int tc_count_temporaries(const char *path);

/* ---- commands -------------------------------------------------------------------------------- */

/* Runs `sh -c cmd` (echoed as "$ cmd"); its exit status, or 128 + the signal that killed it. */
int tc_run(const char *cmd);
/* The same with stdout and stderr into log_path; *out gets that output (never NULL; free() it),
 * which is also echoed. */
int tc_run_logged(const char *cmd, const char *log_path, char **out);
/* User + system CPU seconds a process has used so far (/proc/PID/stat); -1 if unreadable. */
double tc_cpu_seconds(pid_t pid);

/* ---- backend --------------------------------------------------------------------------------- */

/* The backend tests run on: $ENCORE_TEST_BACKEND (cpu, check, ...) or "cpu". */
const char *tc_backend_name(void);
struct jb_backend *tc_backend_init(int n_threads);

/* ---- in-memory weights ----------------------------------------------------------------------- */

/* Named tensors in memory, as a jb_weights_source: what tests and benches build models from. */
struct tc_weights;
struct tc_weights *tc_weights_new(uint64_t seed);
void tc_weights_free(struct tc_weights *w);
/* Adds a tensor of `type` filled with uniform values in [-scale, scale) (bias-like tensors:
 * pass a small scale; LayerNorm gains: tc_weights_add_const). NULL on OOM. The pointer returned
 * by an add is valid until the next add. */
struct jb_tensor *tc_weights_add(struct tc_weights *w,
                                 enum jb_dtype type,
                                 int n_dims,
                                 const int64_t *shape,
                                 float scale,
                                 const char *fmt,
                                 ...) JB_PRINTF(6, 7);
struct jb_tensor *tc_weights_add_const(struct tc_weights *w,
                                       int n_dims,
                                       const int64_t *shape,
                                       float value,
                                       const char *fmt,
                                       ...) JB_PRINTF(5, 6);
/* Adds a tensor of `type` holding `values` (n = the shape's product, converted to `type`). */
struct jb_tensor *tc_weights_add_values(struct tc_weights *w,
                                        enum jb_dtype type,
                                        int n_dims,
                                        const int64_t *shape,
                                        const float *values,
                                        const char *fmt,
                                        ...) JB_PRINTF(6, 7);
/* Removes the tensor added last (tests of a missing tensor). */
void tc_weights_drop_last(struct tc_weights *w);
/* Stores the F32 tensors of a prior as jb_import does with `storage` (jb_import_tensor_dtype:
 * every weight matrix, the embeddings and output head included; biases and norms stay F32), so
 * that an F16 model in memory is laid out as `encore models fetch` installs one. false on OOM.
 * Model layouts: model_builders.h. */
bool tc_weights_to_storage(struct tc_weights *w, enum jb_dtype storage);
struct jb_weights_source tc_weights_source(struct tc_weights *w);
int64_t tc_weights_count(const struct tc_weights *w);
const struct jb_tensor *tc_weights_tensor(const struct tc_weights *w, int64_t i);

#endif
