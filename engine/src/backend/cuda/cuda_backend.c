/*
 * backend/cuda/cuda_backend.c - the CUDA backend behind struct jb_backend: device buffers,
 * uploads at load, and the op slots filled with the kernels of this folder.
 */
#include "backend/backend.h"
#include "backend/cuda/cuda.h"

#include <stdlib.h>

/* Set once the op wrappers dispatch to this backend (the op table); until then selecting it
 * is refused rather than running model code on host pointers it cannot read. */
#define JB_CUDA_OPS_DISPATCHED 0

static void cuda_free_ctx(void *ctx)
{
    jb_cuda_close(ctx);
}

static void *cuda_buffer_alloc(void *ctx, size_t nbytes)
{
    void *p = NULL;
    return jb_cuda_malloc(ctx, nbytes, &p) == JB_STATUS_OK ? p : NULL;
}

static void cuda_buffer_free(void *ctx, void *buf)
{
    jb_cuda_free(ctx, buf);
}

static void cuda_set_tensor(void *ctx, void *dst, const void *src, size_t n)
{
    (void)jb_cuda_upload(ctx, dst, src, n);
}

static void cuda_get_tensor(void *ctx, void *dst, const void *src, size_t n)
{
    (void)jb_cuda_download(ctx, dst, src, n);
}

static void cuda_synchronize(void *ctx)
{
    (void)jb_cuda_synchronize(ctx);
}

static bool cuda_supports_op(void *ctx, enum jb_op op)
{
    (void)ctx, (void)op;
    return false;
}

static const struct jb_backend_i cuda_iface = {
    .name         = "cuda",
    .host_memory  = false,
    .free         = cuda_free_ctx,
    .supports_op  = cuda_supports_op,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free  = cuda_buffer_free,
    .set_tensor   = cuda_set_tensor,
    .get_tensor   = cuda_get_tensor,
    .synchronize  = cuda_synchronize,
};

struct jb_backend *jb_backend_cuda_init(int device, int n_threads)
{
    if (!JB_CUDA_OPS_DISPATCHED) {
        jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                "cuda:%d: the CUDA kernels are built but the models do not dispatch to them yet "
                "(use --device cpu)",
                device);
        return NULL;
    }
    struct jb_cuda *cu = NULL;
    if (jb_cuda_open(device, &cu) != JB_STATUS_OK) return NULL;
    struct jb_backend *be = calloc(1, sizeof *be);
    if (!be) {
        jb_cuda_close(cu);
        jb_fail(JB_STATUS_ERR_NOMEM, "cuda backend: out of host memory");
        return NULL;
    }
    be->iface     = &cuda_iface;
    be->ctx       = cu;
    be->n_threads = n_threads;
    return be;
}
