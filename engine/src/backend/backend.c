/*
 * backend/backend.c - backend selection, buffers, and the op wrappers of backend/ops.h.
 *
 * The wrappers below (generated from backend/ops.def) are the single dispatch point: the
 * backend's own op when it has one and supports_op agrees, else the CPU kernel (backend/cpu/) on
 * the backend's host-readable memory.
 */
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/ops.h"
#ifdef ENCORE_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

#include <stdio.h>
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

const char *jb_backend_default_name(void)
{
#ifdef ENCORE_HAVE_CUDA
    if (jb_cuda_device_count(NULL) > 0) return "cuda:0";
#endif
    return "cpu";
}

int jb_backend_device_count(const char *kind)
{
    if (!kind) return 0;
    if (strcmp(kind, "cpu") == 0) return 1;
#ifdef ENCORE_HAVE_CUDA
    if (strcmp(kind, "cuda") == 0) return jb_cuda_device_count(NULL);
#endif
    return 0;
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
    /* test-only: CPU kernels on buffers that fault when model code touches them */
    if (strcmp(name, "check") == 0) return jb_backend_check_init(n_threads);
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
    if (!be || op < 0 || op >= JB_OP_COUNT) return false;
    const struct jb_backend_i *i = be->iface;
    bool has                     = false;
    switch (op) {
#define JB_OP(ID, name, params, args)                                                              \
    case JB_OP_##ID:                                                                               \
        has = i->ops.name != NULL;                                                                 \
        break;
#include "backend/ops.def"
#undef JB_OP
    case JB_OP_COUNT:
        break;
    }
    return has && (!i->supports_op || i->supports_op(be->ctx, op));
}

void jb_backend_set(struct jb_backend *be, void *dst, const void *src, size_t n)
{
    if (n) be->iface->set_tensor(be->ctx, dst, src, n);
}

void jb_backend_get(struct jb_backend *be, void *dst, const void *src, size_t n)
{
    if (n) be->iface->get_tensor(be->ctx, dst, src, n);
}

void jb_backend_synchronize(struct jb_backend *be)
{
    if (be->iface->synchronize) be->iface->synchronize(be->ctx);
}

enum jb_status jb_backend_status(const struct jb_backend *be)
{
    return be && be->iface->status ? be->iface->status(be->ctx) : JB_STATUS_OK;
}

enum jb_status jb_backend_memory(const struct jb_backend *be, size_t *free_bytes, size_t *total)
{
    *free_bytes = *total = 0;
    if (!be || !be->iface->memory_info)
        return jb_fail(
          JB_STATUS_ERR_UNSUPPORTED, "backend %s does not report its memory", jb_backend_name(be));
    return be->iface->memory_info(be->ctx, free_bytes, total);
}

enum jb_status jb_host_memory(size_t *available, size_t *total)
{
    *available = *total = 0;
    FILE *f             = fopen("/proc/meminfo", "r");
    if (!f) return jb_fail(JB_STATUS_ERR_IO, "host memory: cannot read /proc/meminfo");
    char line[256];
    unsigned long long kb = 0;
    bool have_avail = false, have_total = false;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            *available = (size_t)kb * 1024;
            have_avail = true;
        } else if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
            *total     = (size_t)kb * 1024;
            have_total = true;
        }
    }
    fclose(f);
    if (!have_avail || !have_total)
        return jb_fail(JB_STATUS_ERR_IO, "host memory: no MemAvailable/MemTotal in /proc/meminfo");
    return JB_STATUS_OK;
}

void jb_backend_loop_step(struct jb_backend *be, uintptr_t key, int max_groups)
{
    if (be && be->iface->loop_step) be->iface->loop_step(be->ctx, key, max_groups);
}

void jb_backend_pin_loop_arm(struct jb_backend *be, int arm)
{
    if (be && be->iface->pin_loop_arm) be->iface->pin_loop_arm(be->ctx, arm);
}

long jb_backend_group_steps(const struct jb_backend *be)
{
    return be ? be->group_steps : 0;
}

void jb_backend_loop_end(struct jb_backend *be)
{
    if (be && be->iface->loop_end) be->iface->loop_end(be->ctx);
}

int jb_backend_loop_groups(struct jb_backend *be)
{
    return be && be->iface->loop_groups ? be->iface->loop_groups(be->ctx) : 1;
}

void jb_backend_run_groups(struct jb_backend *be, int n, jb_group_fn fn, void *arg)
{
    if (be && n > 1) be->group_steps++;
    if (be && be->iface->run_groups) {
        be->iface->run_groups(be->ctx, n, fn, arg);
        return;
    }
    for (int g = 0; g < n; g++)
        fn(arg, g);
}

bool jb_backend_has_graphs(const struct jb_backend *be)
{
    return be && be->iface->graph_begin && be->iface->graph_end && be->iface->graph_launch &&
           be->iface->graph_free;
}

enum jb_status jb_backend_graph_begin(struct jb_backend *be)
{
    return jb_backend_has_graphs(be) ? be->iface->graph_begin(be->ctx) : JB_STATUS_OK;
}

void *jb_backend_graph_end(struct jb_backend *be)
{
    return jb_backend_has_graphs(be) ? be->iface->graph_end(be->ctx) : NULL;
}

void jb_backend_graph_launch(struct jb_backend *be, void *graph)
{
    if (graph && jb_backend_has_graphs(be)) be->iface->graph_launch(be->ctx, graph);
}

void jb_backend_graph_free(struct jb_backend *be, void *graph)
{
    if (graph && jb_backend_has_graphs(be)) be->iface->graph_free(be->ctx, graph);
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

/* --- op wrappers (ops.h), generated from the op table ------------------------------------- */

const char *jb_op_name(enum jb_op op)
{
    static const char *const names[] = {
#define JB_OP(ID, name, params, args) #name,
#include "backend/ops.def"
#undef JB_OP
    };
    return op >= 0 && op < JB_OP_COUNT ? names[op] : "?";
}

/* The CPU context to run an op the backend does not take; the backend's memory must be
 * host-readable for that (a device backend implements every op its models use). */
static struct jb_cpu *fallback_cpu(struct jb_backend *be, enum jb_op op)
{
    JB_ASSERT(be->cpu != NULL && "op not supported by the backend and no host fallback");
    (void)op;
    return be->cpu;
}

#define JB_OP(ID, name, params, args)                                                              \
    void jb_##name(struct jb_backend *be, JB_UNPAREN params)                                       \
    {                                                                                              \
        const struct jb_backend_i *i = be->iface;                                                  \
        if (i->ops.name && (!i->supports_op || i->supports_op(be->ctx, JB_OP_##ID)))               \
            i->ops.name(be->ctx, JB_UNPAREN args);                                                 \
        else                                                                                       \
            jb_cpu_op_##name(fallback_cpu(be, JB_OP_##ID), JB_UNPAREN args);                       \
    }
#include "backend/ops.def"
#undef JB_OP
