/*
 * backend/backend.h - the backend interface: a vtable plus a context, as in ggml-backend.
 *
 * The CPU backend (backend/cpu/) implements every op and is the reference. Another backend
 * (CUDA, backend/cuda/) fills in the ops it has and leaves the rest NULL; jb_backend_supports()
 * reports which, and the op wrappers in backend/ops.h fall back to the CPU kernels for the
 * others. Members marked (optional) may be NULL.
 *
 * Data placement: buffers come from buffer_alloc. For the CPU backend they are host memory;
 * for a device backend they are device memory and ops receive device pointers. Model weights
 * are uploaded once at load (set_tensor) and never moved during inference.
 */
#ifndef JB_BACKEND_BACKEND_H
#define JB_BACKEND_BACKEND_H

#include "core/tensor.h"

enum jb_op {
    JB_OP_MATMUL,
    JB_OP_CONV1D,
    JB_OP_CONV_TRANSPOSE1D,
    JB_OP_LAYERNORM,
    JB_OP_SOFTMAX,
    JB_OP_QUICK_GELU,
    JB_OP_VQ_ARGMIN,
    JB_OP_ATTENTION,
    JB_OP_COUNT
};

struct jb_backend_i {
    const char *name;
    bool host_memory; /* buffers are plain host pointers (CPU backend) */

    void (*free)(void *ctx);
    bool (*supports_op)(void *ctx, enum jb_op op); /* (optional) NULL: none of the ops below */

    void *(*buffer_alloc)(void *ctx, size_t nbytes); /* 64-byte aligned */
    void (*buffer_free)(void *ctx, void *buf);
    void (*set_tensor)(void *ctx, void *dst, const void *src, size_t n); /* (optional) host */
    void (*get_tensor)(void *ctx, void *dst, const void *src, size_t n); /* (optional) host */
    void (*synchronize)(void *ctx);                                      /* (optional)      */
};

struct jb_backend {
    const struct jb_backend_i *iface;
    void *ctx;
    int n_threads;
};

bool jb_backend_supports(const struct jb_backend *be, enum jb_op op);
void *jb_backend_alloc(struct jb_backend *be, size_t nbytes); /* jb_fail(NOMEM) on failure */
void jb_backend_free_buffer(struct jb_backend *be, void *buf);

/* backend/cpu/cpu.c */
struct jb_backend *jb_backend_cpu_init(int n_threads);

#endif
