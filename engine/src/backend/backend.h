/*
 * backend/backend.h - the backend interface: a vtable plus a context, as in ggml-backend.
 *
 * The op table (backend/ops.def) generates one slot per op in struct jb_backend_ops. A backend
 * fills the slots it implements; jb_backend_supports() (its supports_op, or "every filled slot"
 * when supports_op is NULL) says which it takes, and the op wrappers of backend/ops.h run the
 * CPU kernels for the rest. That fallback reads the backend's buffers directly, so it is only
 * available to backends whose memory the host can read (host_memory; be->cpu set).
 *
 * Data placement: buffers come from buffer_alloc (host memory for the CPU backend, device memory
 * for a device backend; ops receive pointers into them). Host data moves only through
 * jb_backend_set / jb_backend_get. Model weights reach a backend once, at load: the weights
 * object (format/weights.h, jb_weights_set_backend) copies each tensor into a backend buffer with
 * set_tensor, or hands out the memory-mapped host tensor itself (zero copy) when the backend
 * reads host memory (host_memory), except for tensors of at least weights_copy_min bytes, which
 * the CPU backend copies onto 2 MiB pages. A tensor's `backend` field says where its data lives.
 */
#ifndef JB_BACKEND_BACKEND_H
#define JB_BACKEND_BACKEND_H

#include "core/tensor.h"

struct jb_attn_desc;
struct jb_kv_cache;
struct jb_sample_desc;
struct jb_cpu;

#define JB_UNPAREN(...) __VA_ARGS__

enum jb_op {
#define JB_OP(ID, name, params, args) JB_OP_##ID,
#include "backend/ops.def"
#undef JB_OP
    JB_OP_COUNT
};

/* Name of an op ("matmul"), for tests and logs. */
const char *jb_op_name(enum jb_op op);

/* One slot per op; ctx is the backend's context. NULL: not implemented (CPU fallback). */
struct jb_backend_ops {
#define JB_OP(ID, name, params, args) void (*name)(void *ctx, JB_UNPAREN params);
#include "backend/ops.def"
#undef JB_OP
};

/* One group of candidates of a step cut into groups (jb_backend_run_groups). */
typedef void (*jb_group_fn)(void *arg, int group);

struct jb_backend_i {
    const char *name;
    bool host_memory; /* buffers are plain host pointers: CPU kernels may read them, weights are
                         used in place (zero copy) */

    void (*free)(void *ctx);
    bool (*supports_op)(void *ctx, enum jb_op op); /* (optional) NULL: every filled slot */

    void *(*buffer_alloc)(void *ctx, size_t nbytes); /* 64-byte aligned */
    void (*buffer_free)(void *ctx, void *buf);
    void (*set_tensor)(void *ctx, void *dst, const void *src, size_t n); /* host -> backend */
    void (*get_tensor)(void *ctx, void *dst, const void *src, size_t n); /* backend -> host */
    void (*synchronize)(void *ctx);                                      /* (optional) */
    /* (optional) the first failure of an op since the backend was made (ops return nothing;
     * a device backend records errors and skips later ops); NULL: ops cannot fail. */
    enum jb_status (*status)(void *ctx);
    /* (optional) memory the backend's buffers can still take and its total, in bytes, now:
     * a device's free/total, or for the host's memory MemAvailable/MemTotal (/proc/meminfo). */
    enum jb_status (*memory_info)(void *ctx, size_t *free_bytes, size_t *total_bytes);
    bool memory_is_host; /* buffers take host RAM (host-side job buffers share the budget) */

    /* (optional, all four or none) recording: the ops called between graph_begin and graph_end
     * are recorded instead of run, graph_end returns the recording, graph_launch runs it again
     * with the pointers and scalar arguments it was recorded with. Only ops may be called while
     * recording (no set/get_tensor, no buffers). graph_end returns NULL when recording failed:
     * with status still OK the backend could not record these ops (jb_last_error says why) and
     * none of them ran, so the caller runs them directly; otherwise the device failed (status).
     * NULL: the backend runs ops directly (the CPU). */
    enum jb_status (*graph_begin)(void *ctx);
    void *(*graph_end)(void *ctx);
    void (*graph_launch)(void *ctx, void *graph);
    void (*graph_free)(void *ctx, void *graph);

    /* (optional) a loop of repeated op sequences (a token loop): loop_step marks the end of one
     * iteration of the loop kind `key` (nonzero), loop_end the end of the loop. A backend may
     * tune itself across iterations (the CPU backend: which ops its threads share); what it
     * tunes applies only until loop_end. */
    void (*loop_step)(void *ctx, uintptr_t key, int max_groups);
    void (*loop_end)(void *ctx);
    /* (optional) candidate groups: a loop whose steps work on independent candidates says at
     * each loop_step how many groups a step could be cut into (max_groups; 1: it cannot be);
     * loop_groups tells the caller how many to cut the next step into (1: none), and run_groups
     * runs fn(arg, g) for every g < n, side by side where the backend can (the CPU backend: one
     * per thread, a tuning choice like its sharing; see share_tuner.h). Ops called from fn are
     * ordinary ops of this backend. */
    int (*loop_groups)(void *ctx);
    void (*run_groups)(void *ctx, int n, jb_group_fn fn, void *arg);
    /* (optional) testing and benchmarking: every step of a token loop takes the given tuning
     * choice (the CPU kernels' arm, share_tuner.h), -1: tuned by measurement */
    void (*pin_loop_arm)(void *ctx, int arm);

    struct jb_backend_ops ops;
};

struct jb_backend {
    const struct jb_backend_i *iface;
    void *ctx;
    int n_threads;
    /* The CPU kernels' context for the fallback (owned by the backend's ctx; for the CPU
     * backend it is ctx). NULL when the backend's memory is not host-readable. */
    struct jb_cpu *cpu;
    long group_steps; /* jb_backend_run_groups calls with n > 1 (tests, benchmarks) */
    /* A host_memory backend's own copies of large weights: tensors of the model file of at least
     * this many bytes are copied into its buffers once at load, as a device backend's all are
     * (format/weights.c); 0: all used in place. */
    size_t weights_copy_min;
};

bool jb_backend_supports(const struct jb_backend *be, enum jb_op op);
void *jb_backend_alloc(struct jb_backend *be, size_t nbytes); /* jb_fail(NOMEM) on failure */
void jb_backend_free_buffer(struct jb_backend *be, void *buf);
/* n bytes host -> backend buffer, backend buffer -> host (complete on return). */
void jb_backend_set(struct jb_backend *be, void *dst, const void *src, size_t n);
void jb_backend_get(struct jb_backend *be, void *dst, const void *src, size_t n);
void jb_backend_synchronize(struct jb_backend *be);
/* JB_STATUS_OK, or the error of a failed op (e.g. JB_STATUS_ERR_DEVICE, message in
 * jb_last_error() of the failing call): jobs check it between steps and fail with it. */
enum jb_status jb_backend_status(const struct jb_backend *be);

/* Recording of op sequences (graph_* of jb_backend_i): has_graphs says whether the backend
 * records; begin/end/launch/free are no-ops returning OK/NULL on one that does not. */
/* The backend's free and total memory (memory_info); ERR_UNSUPPORTED without the hook. */
enum jb_status jb_backend_memory(const struct jb_backend *be, size_t *free_bytes, size_t *total);
/* MemAvailable and MemTotal of /proc/meminfo (the CPU and check backends' memory_info). */
enum jb_status jb_host_memory(size_t *available, size_t *total);

/* Token loops (loop_* of jb_backend_i): no-ops on a backend without the hooks. loop_groups is
 * 1 without its hook; run_groups then calls fn for each group in order on the caller. */
void jb_backend_loop_step(struct jb_backend *be, uintptr_t key, int max_groups);
void jb_backend_loop_end(struct jb_backend *be);
int jb_backend_loop_groups(struct jb_backend *be);
void jb_backend_run_groups(struct jb_backend *be, int n, jb_group_fn fn, void *arg);
long jb_backend_group_steps(const struct jb_backend *be);     /* steps cut so far */
void jb_backend_pin_loop_arm(struct jb_backend *be, int arm); /* no-op without the hook */

bool jb_backend_has_graphs(const struct jb_backend *be);
enum jb_status jb_backend_graph_begin(struct jb_backend *be);
void *jb_backend_graph_end(struct jb_backend *be);
void jb_backend_graph_launch(struct jb_backend *be, void *graph);
void jb_backend_graph_free(struct jb_backend *be, void *graph);

/* backend/cpu/cpu.c */
struct jb_backend *jb_backend_cpu_init(int n_threads);
/* backend/check/check.c: CPU kernels on buffers that fault when touched outside an op. */
struct jb_backend *jb_backend_check_init(int n_threads);

#endif
