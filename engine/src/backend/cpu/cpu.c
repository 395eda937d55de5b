/*
 * backend/cpu/cpu.c - the CPU backend: host buffers, its thread pool, ISA detection and the
 * per-slot arena the kernels use instead of allocating.
 */
#include "backend/cpu/blas.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/pool.h"

#include <malloc.h>
#if JB_CPU_X86
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int jb_cpu_team(const struct jb_cpu *cpu, double work)
{
    const int n_threads = cpu->n_threads;
    if (n_threads <= 1 || work < JB_CPU_SHARE_MIN_WORK || work < jb_pool_min_work(cpu->pool))
        return 1;
    /* a loop of a few microseconds: shared only with workers already awake (spinning from the
     * previous loop of a token step); waking a sleeping one costs more than the loop */
    double per_thread = work < 1048576.0 ? JB_CPU_SHARE_MIN_WORK / 2 : 524288.0;
    if (work < 1048576.0 && !jb_pool_ready(cpu->pool)) return 1;
    double max_useful = work / per_thread;
    return max_useful < (double)n_threads ? (int)max_useful : n_threads;
}

void jb_cpu_for(struct jb_cpu *cpu,
                int64_t n,
                double work_per_item,
                void (*fn)(void *arg, int64_t begin, int64_t end, int slot),
                void *arg)
{
    if (n <= 0) return;
    int nt = jb_cpu_team(cpu, (double)n * work_per_item);
    if (nt <= 1) {
        jb_pool_for(cpu->pool, n, n, fn, arg); /* inline, on the caller's slot */
        return;
    }
    int64_t grain = n / ((int64_t)nt * 4);
    int64_t min_g = work_per_item > 0 ? (int64_t)(4096.0 / work_per_item) : 1;
    if (grain < min_g) grain = min_g;
    if (grain < 1) grain = 1;
    if (grain > n / nt) grain = n / nt; /* at least nt chunks */
    jb_pool_for_work(cpu->pool, n, grain, (double)n * work_per_item, fn, arg);
}

float *jb_cpu_arena(const struct jb_cpu *cpu, int slot)
{
    JB_ASSERT(slot >= 0 && slot < cpu->n_threads);
    return cpu->arena + (size_t)slot * JB_CPU_ARENA_FLOATS;
}

const char *jb_cpu_isa_name(enum jb_cpu_isa isa)
{
    switch (isa) {
    case JB_CPU_ISA_PORTABLE:
        return "portable";
    case JB_CPU_ISA_AVX2:
        return "avx2";
    case JB_CPU_ISA_AVX512:
        return "avx512";
    case JB_CPU_ISA_AMX:
        return "amx";
    }
    return "?";
}

static enum jb_cpu_isa detect_isa(void)
{
#if JB_CPU_X86
    __builtin_cpu_init();
    /* clang has no "f16c" for __builtin_cpu_supports: CPUID.1:ECX bit 29 (the OS side is
     * covered by the avx2 check, which tests that YMM state is enabled) */
    unsigned a, b, c = 0, d;
    bool f16c   = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    bool avx2   = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (avx512 && jb_cpu_amx_usable()) return JB_CPU_ISA_AMX;
    return avx512 ? JB_CPU_ISA_AVX512 : avx2 ? JB_CPU_ISA_AVX2 : JB_CPU_ISA_PORTABLE;
#else
    return JB_CPU_ISA_PORTABLE;
#endif
}

/* --- vtable ---------------------------------------------------------------------------------- */

void jb_cpu_delete(struct jb_cpu *cpu)
{
    if (!cpu) return;
    jb_pool_free(cpu->pool);
    pthread_mutex_destroy(&cpu->tuner_lock);
    free(cpu->arena);
    free(cpu->amx_w);
    free(atomic_load(&cpu->spare));
    free(cpu);
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void jb_cpu_loop_step(struct jb_cpu *cpu, uintptr_t key, int max_groups)
{
    if (cpu->n_threads <= 1 || key == 0) return;
    const bool can_group = max_groups >= 2;
    const int64_t t      = monotonic_ns();
    int arm;
    pthread_mutex_lock(&cpu->tuner_lock);
    if (cpu->pinned_arm >= 0)
        arm = cpu->pinned_arm == JB_SHARE_ARM_GROUPS && !can_group ? 0 : cpu->pinned_arm;
    else
        arm = jb_share_tuner_step(&cpu->tuner, key, t, can_group);
    const int64_t step_ns = cpu->step_end_ns ? t - cpu->step_end_ns : 0;
    cpu->step_end_ns      = t;
    pthread_mutex_unlock(&cpu->tuner_lock);
    /* arm 0 is the pool's own policy (jb_cpu_team's thresholds alone) */
    jb_pool_set_min_work(cpu->pool, arm > 0 ? jb_share_arm_min_work(arm) : 0.0);
    /* On an arm that shares ops, the worker stays awake from one shared op to the next: asleep,
     * it would miss the small ones (they are shared only with an awake worker), or cost a
     * wake-up that takes longer than they do. Where only the output head is shared (arms 1-2 at
     * w256d8), the next shared op comes a whole step later, so the spin lasts 1.5 steps (the
     * pool keeps it within 20 µs .. 1 ms). w256d8, 1 candidate, 2 threads against 1, in-process
     * A/B: head only 0.86-0.91x with the pool's 20 µs spin, 1.06-1.11x with this. Arm 3 and the
     * groups' arm hand the worker nothing within a step: it sleeps as usual. Only in loops of
     * one candidate: with several, the longer spin brought the sharing arms level with the
     * groups' (in-process, pinned), and the tuner then chose among them by noise, 1.02-1.03x of
     * one thread in bench_prior where the groups alone gave 1.13-1.14x. */
    const bool shares = arm < JB_SHARE_ARMS - 1 && !can_group;
    jb_pool_set_spin(cpu->pool, shares ? step_ns + step_ns / 2 : 0);
    int groups = 1;
    if (arm == JB_SHARE_ARM_GROUPS)
        groups = max_groups < cpu->n_threads ? max_groups : cpu->n_threads;
    atomic_store_explicit(&cpu->groups, groups, memory_order_relaxed);
}

void jb_cpu_loop_end(struct jb_cpu *cpu)
{
    if (cpu->n_threads <= 1) return;
    pthread_mutex_lock(&cpu->tuner_lock);
    jb_share_tuner_end(&cpu->tuner);
    cpu->step_end_ns = 0;
    pthread_mutex_unlock(&cpu->tuner_lock);
    jb_pool_set_min_work(cpu->pool, 0.0);
    jb_pool_set_spin(cpu->pool, 0);
    atomic_store_explicit(&cpu->groups, 1, memory_order_relaxed);
}

int jb_cpu_loop_groups(struct jb_cpu *cpu)
{
    return atomic_load_explicit(&cpu->groups, memory_order_relaxed);
}

void jb_cpu_pin_loop_arm(struct jb_cpu *cpu, int arm)
{
    pthread_mutex_lock(&cpu->tuner_lock);
    cpu->pinned_arm = arm >= 0 && arm < JB_SHARE_MAX_ARMS ? arm : -1;
    pthread_mutex_unlock(&cpu->tuner_lock);
}

struct group_task {
    jb_group_fn fn;
    void *arg;
};

static void run_group_items(void *arg, int64_t b, int64_t e, int slot)
{
    const struct group_task *t = arg;
    (void)slot;
    for (int64_t g = b; g < e; g++)
        t->fn(t->arg, (int)g);
}

/* One pool item per group: a worker that wakes late finds its group taken by the caller, who
 * then runs both (correct, only slower; the tuner sees it in the step time). */
void jb_cpu_run_groups(struct jb_cpu *cpu, int n, jb_group_fn fn, void *arg)
{
    struct group_task t = { fn, arg };
    jb_pool_for(cpu->pool, n, 1, run_group_items, &t);
}

static void cpu_loop_step(void *ctx, uintptr_t key, int max_groups)
{
    jb_cpu_loop_step(ctx, key, max_groups);
}

static int cpu_loop_groups(void *ctx)
{
    return jb_cpu_loop_groups(ctx);
}

static void cpu_run_groups(void *ctx, int n, jb_group_fn fn, void *arg)
{
    jb_cpu_run_groups(ctx, n, fn, arg);
}

static void cpu_pin_loop_arm(void *ctx, int arm)
{
    jb_cpu_pin_loop_arm(ctx, arm);
}

static void cpu_loop_end(void *ctx)
{
    jb_cpu_loop_end(ctx);
}

static void cpu_free(void *ctx)
{
    jb_cpu_delete(ctx);
}

/* Work buffers of tens to hundreds of MB are written once per call: with 4 KiB pages the page
 * faults alone took ~15% of an encode (measured in a VM). Large buffers are therefore 2 MiB
 * aligned and marked for transparent huge pages (Debian's default THP mode is "madvise").
 *
 * Even with huge pages, mapping and zeroing fresh memory cost 5-10% of a three-level 20 s encode
 * (each level reserves its work, up to 324 MB, and would fault it in anew), and far more when the
 * VM's host has taken the pages back. So the last large buffer freed is kept as a spare, and the
 * next large allocation it can hold takes it with its pages still mapped:
 *   - one spare at most; a request it cannot hold frees it first, so the peak memory is what it
 *     was without it;
 *   - a reused spare returns its pages beyond the request to the kernel (MADV_DONTNEED), so it
 *     never holds more than a new buffer of that size could;
 *   - while it waits, its pages are MADV_FREE: the kernel may take them back under memory
 *     pressure (a later reuse then faults them in again, as a new buffer would), so an idle
 *     backend holds nothing the system needs. */
#define HUGE_MIN ((size_t)4 << 20)
#define HUGE_PAGE ((size_t)2 << 20)

static size_t page_floor(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return n / page * page;
}

static void *cpu_buffer_alloc(void *ctx, size_t nbytes)
{
    struct jb_cpu *cpu = ctx;
    if (nbytes < HUGE_MIN) return jb_aligned_alloc(nbytes);
    size_t rounded;
    if (!jb_add_size(nbytes, HUGE_PAGE - 1, &rounded)) return jb_aligned_alloc(nbytes);
    rounded &= ~(HUGE_PAGE - 1);
    char *spare = atomic_exchange(&cpu->spare, NULL);
    if (spare) {
        size_t have = malloc_usable_size(spare);
        if (have >= rounded) {
            size_t tail = page_floor(have - rounded);
            if (tail) (void)madvise(spare + rounded, tail, MADV_DONTNEED);
            return spare;
        }
        free(spare); /* too small: the new buffer takes its place */
    }
    void *p = aligned_alloc(HUGE_PAGE, rounded);
    if (!p) return jb_aligned_alloc(nbytes);  /* reports the failure */
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* advice only: fine if THP is off */
    return p;
}

static void cpu_buffer_free(void *ctx, void *buf)
{
    struct jb_cpu *cpu = ctx;
    if (!buf) return;
    size_t have = malloc_usable_size(buf);
    if (have < HUGE_MIN || ((uintptr_t)buf & (HUGE_PAGE - 1)) != 0) {
        free(buf);
        return;
    }
    (void)madvise(buf, page_floor(have), MADV_FREE); /* advice only */
    free(atomic_exchange(&cpu->spare, buf));
}

/* Copies of several MB (the weights copied at load) run on the pool in 2 MiB pieces: most of
 * their time is the first touch of the destination's pages, which the threads fault in side by
 * side. */
#define COPY_PIECE ((size_t)2 << 20)

struct copy_job {
    char *dst;
    const char *src;
    size_t n;
};

static void copy_pieces(void *arg, int64_t i0, int64_t i1, int slot)
{
    (void)slot;
    const struct copy_job *j = arg;
    const size_t b0 = (size_t)i0 * COPY_PIECE, b1 = (size_t)i1 * COPY_PIECE;
    memcpy(j->dst + b0, j->src + b0, (b1 < j->n ? b1 : j->n) - b0);
}

static void cpu_copy(void *ctx, void *dst, const void *src, size_t n)
{
    struct jb_cpu *cpu = ctx;
    if (n < 2 * COPY_PIECE) {
        if (n) memcpy(dst, src, n);
        return;
    }
    struct copy_job job = { .dst = dst, .src = src, .n = n };
    jb_pool_for(cpu->pool, (int64_t)((n + COPY_PIECE - 1) / COPY_PIECE), 1, copy_pieces, &job);
}

/* one slot per op of the table, each running the CPU kernel */
#define JB_OP(ID, name, params, args)                                                              \
    static void cpu_slot_##name(void *ctx, JB_UNPAREN params)                                      \
    {                                                                                              \
        jb_cpu_op_##name(ctx, JB_UNPAREN args);                                                    \
    }
#include "backend/ops.def"
#undef JB_OP

static enum jb_status cpu_memory_info(void *ctx, size_t *free_bytes, size_t *total)
{
    (void)ctx;
    return jb_host_memory(free_bytes, total);
}

static const struct jb_backend_i cpu_iface = {
    .name         = "cpu",
    .host_memory  = true,
    .memory_info    = cpu_memory_info,
    .memory_is_host = true,
    .free         = cpu_free,
    .supports_op  = NULL, /* every op */
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free  = cpu_buffer_free,
    .set_tensor   = cpu_copy,
    .get_tensor   = cpu_copy,
    .synchronize  = NULL,
    .loop_step    = cpu_loop_step,
    .loop_end     = cpu_loop_end,
    .loop_groups  = cpu_loop_groups,
    .run_groups   = cpu_run_groups,
    .pin_loop_arm = cpu_pin_loop_arm,
    .ops =
      {
#define JB_OP(ID, name, params, args) .name = cpu_slot_##name,
#include "backend/ops.def"
#undef JB_OP
      },
};

struct jb_cpu *jb_cpu_of(struct jb_backend *be)
{
    JB_ASSERT(be && be->cpu);
    return be->cpu;
}

enum jb_cpu_isa jb_cpu_set_isa(struct jb_backend *be, enum jb_cpu_isa isa)
{
    struct jb_cpu *cpu = jb_cpu_of(be);
    isa                = isa < cpu->isa_max ? isa : cpu->isa_max;
    /* the portable kernels need OpenBLAS: without it the backend keeps its level */
    if (isa != JB_CPU_ISA_PORTABLE || jb_blas_open()) cpu->isa = isa;
    return cpu->isa;
}

struct jb_cpu *jb_cpu_new(int n_threads)
{
    if (n_threads <= 0) {
        long n    = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)(n < 1024 ? n : 1024) : 1;
    }
    struct jb_cpu *cpu = jb_calloc(1, sizeof *cpu);
    size_t arena_bytes;
    if (!cpu) return NULL;
    pthread_mutex_init(&cpu->tuner_lock, NULL);
    jb_share_tuner_init(&cpu->tuner);
    cpu->pinned_arm = -1;
    atomic_init(&cpu->groups, 1);
    if (!jb_mul_size((size_t)n_threads, JB_CPU_ARENA_FLOATS * sizeof(float), &arena_bytes)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "%s: arena for %d threads overflows", __func__, n_threads);
        goto fail;
    }
    cpu->arena = jb_aligned_alloc(arena_bytes);
    if (!cpu->arena) goto fail;
    memset(cpu->arena, 0, arena_bytes); /* fault the pages in now, not in the first kernel */
    cpu->pool = jb_pool_new(n_threads);
    if (!cpu->pool) goto fail;

    cpu->n_threads = n_threads;
    cpu->isa_max   = detect_isa();
    cpu->isa       = cpu->isa_max;
    /* reserved now so that no job allocates; its pages are only touched by wide convolutions */
    if (cpu->isa_max >= JB_CPU_ISA_AMX) {
        cpu->amx_w = jb_aligned_alloc(JB_CPU_AMX_W_BYTES);
        if (!cpu->amx_w) goto fail;
    }
    const char *cap = getenv("ENCORE_CPU_ISA");
    if (cap) {
        for (int i = JB_CPU_ISA_PORTABLE; i <= JB_CPU_ISA_AMX; i++)
            if (strcmp(cap, jb_cpu_isa_name((enum jb_cpu_isa)i)) == 0 && i < (int)cpu->isa)
                cpu->isa = (enum jb_cpu_isa)i;
    }

    jb_cpu_tables_init();

    if (cpu->isa == JB_CPU_ISA_PORTABLE && !jb_blas_open()) goto fail;
    return cpu;

fail:
    jb_cpu_delete(cpu);
    return NULL;
}

/* Transparent huge pages for madvise'd memory: THP "always" or "madvise", not "never" (or a
 * kernel without THP). */
static bool thp_usable(void)
{
    char mode[128] = "";
    FILE *f        = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f) return false;
    const bool got = fgets(mode, sizeof mode, f) != NULL;
    fclose(f);
    return got && (strstr(mode, "[always]") || strstr(mode, "[madvise]"));
}

struct jb_backend *jb_backend_cpu_init(int n_threads)
{
    struct jb_backend *be = jb_calloc(1, sizeof *be);
    struct jb_cpu *cpu    = be ? jb_cpu_new(n_threads) : NULL;
    if (!cpu) {
        free(be);
        return NULL;
    }
    n_threads     = cpu->n_threads;
    be->iface     = &cpu_iface;
    be->ctx       = cpu;
    be->cpu       = cpu;
    be->n_threads = n_threads;
    /* The weight matrices of 1 MiB and more (every GEMV of a token step) are copied onto
     * 2 MiB pages rather than read from the 4 KiB pages of the mapped file: a token step streams
     * each from 8-16 rows at once, and on 4 KiB pages its fp16 GEMVs took ~7% more time and a
     * whole decode step ~3% (w1920d72, 2 threads, Intel Xeon; fp32 the same). Costs a copy at
     * load; the file's pages stay in the page cache, which the kernel may reclaim. */
    be->weights_copy_min = thp_usable() ? (size_t)1 << 20 : 0;
    jb_log(JB_LOG_INFO,
           "cpu backend: %d threads, %s kernels, OpenBLAS %s",
           n_threads,
           jb_cpu_isa_name(cpu->isa),
           jb_blas_corename());
    return be;
}
