/*
 * backend/backend.c - backend selection, buffers, and the op wrappers of backend/ops.h.
 *
 * The wrappers below are the single dispatch point: today every op runs the CPU kernels
 * (backend/cpu/); a device backend will be tried first here, through jb_backend_supports(), with
 * the CPU kernels as the fallback.
 */
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/ops.h"
#ifdef ENCORE_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

#include <stdlib.h>
#include <string.h>

/* --- public API (engine.h) ------------------------------------------------------------------ */

const char *jb_backends_available(void)
{
#ifdef ENCORE_HAVE_CUDA
    return "cpu,cuda";
#else
    return "cpu";
#endif
}

/* "cuda" is "cuda:0"; *device receives N of "cuda:N". */
static bool parse_cuda_name(const char *name, int *device)
{
    if (strncmp(name, "cuda", 4) != 0) return false;
    if (name[4] == '\0') {
        *device = 0;
        return true;
    }
    if (name[4] != ':' || name[5] < '0' || name[5] > '9') return false;
    char *end = NULL;
    long n    = strtol(name + 5, &end, 10);
    if (*end != '\0' || n > 1024) return false;
    *device = (int)n;
    return true;
}

struct jb_backend *jb_backend_init(const char *name, int n_threads)
{
    if (name == NULL || strcmp(name, "cpu") == 0) return jb_backend_cpu_init(n_threads);
    int device = 0;
    if (parse_cuda_name(name, &device)) {
#ifdef ENCORE_HAVE_CUDA
        return jb_backend_cuda_init(device, n_threads);
#else
        jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                "backend '%s': this build has no CUDA backend (available: %s; configure with a "
                "CUDA toolkit and -DENCORE_CUDA=ON)",
                name,
                jb_backends_available());
        return NULL;
#endif
    }
    jb_fail(JB_STATUS_ERR_UNSUPPORTED,
            "backend '%s' is not available in this build (available: %s)",
            name,
            jb_backends_available());
    return NULL;
}

void jb_backend_free(struct jb_backend *backend)
{
    if (!backend) return;
    if (backend->iface && backend->iface->free) backend->iface->free(backend->ctx);
    free(backend);
}

const char *jb_backend_name(const struct jb_backend *backend)
{
    return backend && backend->iface ? backend->iface->name : "none";
}

/* --- internal API (backend.h) ----------------------------------------------------------------- */

bool jb_backend_supports(const struct jb_backend *be, enum jb_op op)
{
    return be && be->iface->supports_op && be->iface->supports_op(be->ctx, op);
}

void *jb_backend_alloc(struct jb_backend *be, size_t nbytes)
{
    void *p = be->iface->buffer_alloc(be->ctx, nbytes);
    if (!p)
        jb_fail(JB_STATUS_ERR_NOMEM,
                "%s: %s backend could not allocate %zu bytes",
                __func__,
                be->iface->name,
                nbytes);
    return p;
}

void jb_backend_free_buffer(struct jb_backend *be, void *buf)
{
    if (buf) be->iface->buffer_free(be->ctx, buf);
}

/* --- op wrappers (ops.h) ---------------------------------------------------------------------- */

void jb_matmul(struct jb_backend *be,
               int64_t M,
               int64_t N,
               int64_t K,
               const float *x,
               int64_t ldx,
               const struct jb_tensor *w,
               bool w_trans,
               const float *bias,
               float *y,
               int64_t ldy,
               bool accumulate)
{
    jb_cpu_matmul(jb_cpu_of(be), M, N, K, x, ldx, w, w_trans, bias, y, ldy, accumulate);
}

void jb_conv1d(struct jb_backend *be,
               const float *x,
               int64_t T,
               const struct jb_tensor *w,
               const struct jb_tensor *b,
               int stride,
               int pad,
               int dil,
               float *y,
               float *scratch)
{
    jb_cpu_conv1d(jb_cpu_of(be), x, T, w, b, stride, pad, dil, y, scratch);
}

void jb_conv_transpose1d(struct jb_backend *be,
                         const float *x,
                         int64_t T,
                         const struct jb_tensor *w,
                         const struct jb_tensor *b,
                         int stride,
                         int pad,
                         float *y,
                         float *scratch)
{
    jb_cpu_conv_transpose1d(jb_cpu_of(be), x, T, w, b, stride, pad, y, scratch);
}

void jb_layernorm(struct jb_backend *be,
                  int64_t rows,
                  int64_t W,
                  const float *x,
                  const struct jb_tensor *gamma,
                  const struct jb_tensor *beta,
                  float eps,
                  float *y)
{
    jb_cpu_layernorm(jb_cpu_of(be), rows, W, x, gamma, beta, eps, y);
}

void jb_vq_argmin(struct jb_backend *be,
                  const float *x,
                  int64_t T,
                  const struct jb_tensor *codebook,
                  int32_t *codes,
                  float *scratch)
{
    jb_cpu_vq_argmin(jb_cpu_of(be), x, T, codebook, codes, scratch);
}
