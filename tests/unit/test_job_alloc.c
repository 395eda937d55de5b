/*
 * tests/unit/test_job_alloc.c - no allocation in the job loops: a continuation job on the default
 * model, with every heap allocation of the process counted (a malloc interposer) between each
 * level's first progress report (after the level's reservations) and its last (after its final
 * audio): the token loop, the window setup, the lyric encoder and the progressive decoding of
 * audio chunks must not allocate at all.
 *
 * One thread, so the CPU kernels never start a thread team of their own. Skips (77) under
 * AddressSanitizer, which replaces the allocator itself, and where the default model is absent.
 */
#include "encore/engine.h"
#include "test_common.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

/* ---- the interposer: glibc's allocator under our names ------------------------------------ */

#ifndef TEST_ASAN
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

static atomic_bool g_armed;
static atomic_long g_count, g_gomp;

/* Counts an allocation made while armed. Those the OpenMP runtime makes for itself (libgomp
 * allocates a team for each parallel region entered with one thread) are counted apart: they go
 * away with the backend's own thread pool (backend/cpu/pool.h) and are reported, not failed. */
__attribute__((noinline)) static void count(const void *caller)
{
    if (!atomic_load_explicit(&g_armed, memory_order_relaxed)) return;
    Dl_info info;
    if (dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, "libgomp"))
        atomic_fetch_add_explicit(&g_gomp, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
}
#define COUNT() count(__builtin_return_address(0))

void *malloc(size_t n)
{
    COUNT();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    COUNT();
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    COUNT();
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    COUNT();
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    COUNT();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    COUNT();
    void *p = __libc_memalign(align, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}

/* ---- the job -------------------------------------------------------------------------------- */

struct watch {
    long per_level[JB_JOB_MAX_LEVELS]; /* allocations inside each level's loops (-1: not seen) */
    long gomp[JB_JOB_MAX_LEVELS];      /* of the OpenMP runtime, apart */
    int64_t audio_pieces[JB_JOB_MAX_LEVELS];
    int64_t tokens[JB_JOB_MAX_LEVELS];
};

static void on_progress(const struct jb_job_progress *p, void *user)
{
    struct watch *w = user;
    if (p->level < 0 || p->level >= JB_JOB_MAX_LEVELS) return;
    if (p->done == 0 && !atomic_load(&g_armed)) { /* the level's loops start */
        atomic_store(&g_count, 0);
        atomic_store(&g_gomp, 0);
        atomic_store(&g_armed, true);
    } else if (p->done == p->total && atomic_load(&g_armed)) { /* and end */
        atomic_store(&g_armed, false);
        w->per_level[p->level] = atomic_load(&g_count);
        w->gomp[p->level]      = atomic_load(&g_gomp);
        w->tokens[p->level]    = p->total;
    }
}

static void on_audio(const struct jb_job_audio *a, void *user)
{
    struct watch *w = user;
    if (a->level >= 0 && a->level < JB_JOB_MAX_LEVELS) w->audio_pieces[a->level]++;
}

static bool should_stop(void *user)
{
    (void)user;
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_job_alloc MODEL_DIR\n");
        return 2;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/prior_level_2.gguf", argv[1]);
    if (access(path, R_OK) != 0) {
        printf("SKIP: no default model at %s (build the default_model target)\n", argv[1]);
        return 77;
    }
    printf("allocation counting on %s\n", argv[1]); /* stdout's buffer exists from here on */

    /* the interposer sees allocations at all */
    atomic_store(&g_count, 0);
    atomic_store(&g_armed, true);
    void *volatile probe  = malloc(24);
    void *volatile probe2 = calloc(3, 8);
    atomic_store(&g_armed, false);
    free(probe), free(probe2);
    tc_check(atomic_load(&g_count) == 2,
             "interposer counts malloc and calloc (%ld)",
             atomic_load(&g_count));

    struct jb_backend *be = jb_backend_init("cpu", 1);
    struct jb_session *s  = be ? jb_session_load(argv[1], be) : NULL;
    tc_check(s != NULL, "session loads %s", s ? "" : jb_last_error());
    if (!s) {
        jb_backend_free(be);
        return tc_summary();
    }
    snprintf(path, sizeof path, "%s/riff.wav", argv[1]);
    struct jb_audio riff = { 0 };
    tc_check(jb_audio_read(path, JB_SAMPLE_RATE, 0, &riff) == JB_STATUS_OK, "riff.wav readable");

    /* a take to continue: 1 s of riff + 1 s */
    struct jb_job_params p;
    jb_job_params_init(&p);
    p.mode               = JB_JOB_PRIMED;
    p.riff               = riff.samples;
    p.riff_samples       = riff.n_samples < 66150 ? riff.n_samples : 66150;
    p.seconds            = 1.0;
    p.seed               = 3;
    p.finest_level       = 2;
    struct jb_take *take = NULL;
    enum jb_status st    = riff.samples ? jb_job_run(s, &p, NULL, &take) : JB_STATUS_ERR_IO;
    tc_check(st == JB_STATUS_OK && take, "primed take %s", st ? jb_last_error() : "");

    /* the continuation, every level down to 0, two candidates, audio streamed */
    struct watch w;
    for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
        w.per_level[L] = -1, w.gomp[L] = 0, w.audio_pieces[L] = 0, w.tokens[L] = 0;
    struct jb_job_params c;
    jb_job_params_init(&c);
    c.mode                     = JB_JOB_CONTINUE;
    c.take                     = take;
    c.take_candidate           = 0;
    c.n_candidates             = 2;
    c.seconds                  = 1.0;
    c.seed                     = 5;
    c.finest_level             = 0;
    struct jb_job_callbacks cb = {
        .on_progress = on_progress, .on_audio = on_audio, .should_stop = should_stop, .user = &w
    };
    struct jb_take *out = NULL;
    st                  = take ? jb_job_run(s, &c, &cb, &out) : JB_STATUS_ERR_INVALID_ARG;
    atomic_store(&g_armed, false);
    tc_check(st == JB_STATUS_OK && out, "continuation job %s", st ? jb_last_error() : "");
    for (int L = 0; L < 3; L++)
        tc_check(w.per_level[L] == 0 && w.tokens[L] > 0 && w.audio_pieces[L] > 0,
                 "level %d: %ld allocations in its token and chunk loops (%lld tokens, %lld audio "
                 "chunks; OpenMP runtime: %ld)",
                 L,
                 w.per_level[L],
                 (long long)w.tokens[L],
                 (long long)w.audio_pieces[L],
                 w.gomp[L]);

    jb_take_free(out);
    jb_take_free(take);
    jb_audio_free(&riff);
    jb_session_free(s);
    jb_backend_free(be);
    return tc_summary();
}

#else

int main(void)
{
    printf("SKIP: AddressSanitizer replaces the allocator; the count runs in plain builds\n");
    return 77;
}

#endif
