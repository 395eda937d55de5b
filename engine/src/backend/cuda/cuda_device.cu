/*
 * backend/cuda/cuda_device.cu - device, stream, cuBLAS handle, memory, work arena, memory
 * planning and CUDA graphs. Every CUDA/cuBLAS call is checked; a failure becomes
 * JB_STATUS_ERR_DEVICE (or ERR_NOMEM for allocations) with file, line and call.
 */
#include "backend/cuda/cuda_impl.cuh"

#include <dlfcn.h>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>

struct jb_cublas_api jb_cublas;

template<typename F>
static bool sym(void *lib, const char *name, F *out)
{
    *out = reinterpret_cast<F>(dlsym(lib, name));
    return *out != nullptr;
}

enum jb_status jb_cublas_load(void)
{
    static std::once_flag once;
    static char why[512];
    static bool ok;
    std::call_once(once, [] {
        const char *names[] = { "libcublas.so." JB_CUBLAS_SOVERSION,
                                JB_CUBLAS_DIR "/libcublas.so." JB_CUBLAS_SOVERSION,
                                "libcublas.so",
                                JB_CUBLAS_DIR "/libcublas.so" };
        void *lib           = nullptr;
        for (const char *n : names)
            if ((lib = dlopen(n, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
        if (!lib) {
            snprintf(why, sizeof why, "cannot load cuBLAS (%s)", dlerror());
            return;
        }
        ok = sym(lib, "cublasCreate_v2", &jb_cublas.create) &&
             sym(lib, "cublasDestroy_v2", &jb_cublas.destroy) &&
             sym(lib, "cublasSetStream_v2", &jb_cublas.set_stream) &&
             sym(lib, "cublasSetMathMode", &jb_cublas.set_math_mode) &&
             sym(lib, "cublasSetWorkspace_v2", &jb_cublas.set_workspace) &&
             sym(lib, "cublasSgemm_v2", &jb_cublas.sgemm) &&
             sym(lib, "cublasGemmEx", &jb_cublas.gemm_ex) &&
             sym(lib, "cublasGetStatusString", &jb_cublas.status_string);
        if (!ok) snprintf(why, sizeof why, "cuBLAS lacks a symbol (%s)", dlerror());
    });
    return ok ? JB_STATUS_OK : jb_fail(JB_STATUS_ERR_DEVICE, "cuda: %s", why);
}

enum jb_status jb_cuda_fail_call(const char *file, int line, const char *call, const char *err)
{
    const char *base = file;
    for (const char *p = file; *p; p++)
        if (*p == '/') base = p + 1;
    return jb_fail(JB_STATUS_ERR_DEVICE, "CUDA: %s failed: %s (%s:%d)", call, err, base, line);
}

extern "C" int jb_cuda_device_count(const char **why)
{
    int n               = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky "no device" state */
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA device is visible";
    return n;
}

extern "C" enum jb_status jb_cuda_open(int device, struct jb_cuda **out)
{
    *out            = NULL;
    const char *why = NULL;
    const int n     = jb_cuda_device_count(&why);
    if (n == 0) return jb_fail(JB_STATUS_ERR_DEVICE, "cuda:%d: no CUDA device (%s)", device, why);
    if (device < 0 || device >= n)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "cuda:%d: no such device (%d visible, cuda:0..cuda:%d)",
                       device,
                       n,
                       n - 1);
    if (jb_cublas_load() != JB_STATUS_OK) return JB_STATUS_ERR_DEVICE;
    struct jb_cuda *cu = (struct jb_cuda *)calloc(1, sizeof *cu);
    if (!cu) return jb_fail(JB_STATUS_ERR_NOMEM, "cuda: out of host memory");
    cu->device        = device;
    enum jb_status st = JB_STATUS_OK;
    do {
        cudaDeviceProp prop;
        cudaError_t e = cudaSetDevice(device);
        if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, device);
        if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            st = jb_cuda_fail_call(__FILE__, __LINE__, "cuda device setup", cudaGetErrorString(e));
            break;
        }
        cu->sm_count = prop.multiProcessorCount;
        cu->pdl      = prop.major >= 9;
        snprintf(cu->desc,
                 sizeof cu->desc,
                 "%.200s (cc %d.%d, %.1f GiB)",
                 prop.name,
                 prop.major,
                 prop.minor,
                 (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
        const cublasStatus_t b = jb_cublas.create(&cu->blas);
        if (b != CUBLAS_STATUS_SUCCESS) {
            st = jb_cuda_fail_call(__FILE__, __LINE__, "cublasCreate", jb_cublas.status_string(b));
            break;
        }
        /* fp32 GEMMs stay fp32 (no TF32): the reference keeps those in fp32. */
        if (jb_cublas.set_stream(cu->blas, cu->stream) != CUBLAS_STATUS_SUCCESS ||
            jb_cublas.set_math_mode(cu->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
            st = jb_cuda_fail_call(__FILE__, __LINE__, "cublasSetStream", "failed");
            break;
        }
        /* Our own workspace, so a GEMM inside a stream capture allocates nothing (cuBLAS would
         * otherwise take its own, which cannot be recorded). Size: the cuBLAS documentation's
         * recommendation (cublasSetWorkspace): 32 MiB for Hopper and newer, 4 MiB (its default
         * pool) before; cudaMalloc's alignment exceeds the 256 bytes it asks for. After
         * cublasSetStream, which resets the handle to cuBLAS's own pool: never call it again. */
        cu->blas_ws_bytes = (size_t)(prop.major >= 9 ? 32 : 4) << 20;
        st                = jb_cuda_malloc(cu, cu->blas_ws_bytes, &cu->blas_ws);
        if (st != JB_STATUS_OK) break;
        const cublasStatus_t w = jb_cublas.set_workspace(cu->blas, cu->blas_ws, cu->blas_ws_bytes);
        if (w != CUBLAS_STATUS_SUCCESS) {
            st = jb_cuda_fail_call(
              __FILE__, __LINE__, "cublasSetWorkspace", jb_cublas.status_string(w));
            break;
        }
        st = jb_cuda_malloc(cu, JB_CUDA_GEMV_COUNTERS * sizeof(unsigned), (void **)&cu->gemv_count);
        if (st != JB_STATUS_OK) break;
        /* on our stream (non-blocking: the legacy stream's memset would not order with it) */
        e =
          cudaMemsetAsync(cu->gemv_count, 0, JB_CUDA_GEMV_COUNTERS * sizeof(unsigned), cu->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(cu->stream);
        if (e != cudaSuccess) {
            st = jb_cuda_fail_call(__FILE__, __LINE__, "cudaMemset", cudaGetErrorString(e));
            break;
        }
    } while (0);
    if (st != JB_STATUS_OK) {
        jb_cuda_close(cu);
        return st;
    }
    *out = cu;
    return JB_STATUS_OK;
}

/* Lets go of the current arena: freed now, or, while graphs recorded into it live, by the last
 * of them (jb_cuda_graph_free). The stream has been synchronised. */
static void arena_release(struct jb_cuda *cu)
{
    struct jb_cuda_arena_hold *h = cu->arena_hold;
    if (h && h->graphs > 0)
        h->retired = true;
    else if (cu->arena)
        cudaFree(cu->arena);
    if (h && !h->retired) free(h);
    cu->arena_hold  = NULL;
    cu->arena       = NULL;
    cu->arena_bytes = 0;
}

extern "C" void jb_cuda_close(struct jb_cuda *cu)
{
    if (!cu) return;
    cudaSetDevice(cu->device);
    if (cu->stream) cudaStreamSynchronize(cu->stream);
    arena_release(cu);
    if (cu->blas) jb_cublas.destroy(cu->blas);
    if (cu->blas_ws) cudaFree(cu->blas_ws); /* after the handle that used it */
    if (cu->gemv_count) cudaFree(cu->gemv_count);
    if (cu->stream) cudaStreamDestroy(cu->stream);
    free(cu);
}

extern "C" int jb_cuda_device(const struct jb_cuda *cu)
{
    return cu->device;
}

extern "C" const char *jb_cuda_describe(const struct jb_cuda *cu)
{
    return cu->desc;
}

extern "C" enum jb_status jb_cuda_mem_info(struct jb_cuda *cu, size_t *free_bytes, size_t *total)
{
    CUDA_CHECK(cudaSetDevice(cu->device));
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total));
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_malloc(struct jb_cuda *cu, size_t nbytes, void **out)
{
    *out = NULL;
    CUDA_CHECK(cudaSetDevice(cu->device));
    const cudaError_t e = cudaMalloc(out, nbytes ? nbytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        *out = NULL;
        return jb_fail(JB_STATUS_ERR_NOMEM,
                       "cuda:%d: cannot allocate %.1f MiB of device memory (%.1f MiB free of "
                       "%.1f MiB): %s",
                       cu->device,
                       (double)nbytes / 1048576.0,
                       (double)fr / 1048576.0,
                       (double)tot / 1048576.0,
                       cudaGetErrorString(e));
    }
    return JB_STATUS_OK;
}

extern "C" void jb_cuda_free(struct jb_cuda *cu, void *p)
{
    if (p) cudaFree(p);
}

extern "C" enum jb_status jb_cuda_upload(struct jb_cuda *cu, void *dst, const void *src, size_t n)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, cu->stream));
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_download(struct jb_cuda *cu, void *dst, const void *src, size_t n)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, cu->stream));
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_memset(struct jb_cuda *cu, void *dst, int value, size_t n)
{
    CUDA_CHECK(cudaMemsetAsync(dst, value, n, cu->stream));
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_synchronize(struct jb_cuda *cu)
{
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return JB_STATUS_OK;
}

extern "C" void jb_cuda_set_pdl(struct jb_cuda *cu, bool on)
{
    int major = 0;
    const cudaError_t e =
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, cu->device);
    cu->pdl = on && e == cudaSuccess && major >= 9;
}

extern "C" enum jb_status jb_cuda_reserve(struct jb_cuda *cu, size_t nbytes)
{
    if (nbytes <= cu->arena_bytes) return JB_STATUS_OK;
    if (cu->arena_base)
        return jb_fail(JB_STATUS_ERR_DEVICE, "cuda: work arena grown while part of it is held");
    if (cu->capturing)
        return jb_fail(JB_STATUS_ERR_DEVICE, "cuda: work arena grown during graph capture");
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    arena_release(cu);
    enum jb_status st = jb_cuda_malloc(cu, nbytes, &cu->arena);
    if (st != JB_STATUS_OK) return st;
    cu->arena_bytes = nbytes;
    return JB_STATUS_OK;
}

extern "C" size_t jb_cuda_reserved(const struct jb_cuda *cu)
{
    return cu->arena_bytes;
}

enum jb_status jb_cuda_arena(struct jb_cuda *cu, size_t nbytes, void **out)
{
    if (cu->arena_base + nbytes > cu->arena_bytes)
        return jb_fail(JB_STATUS_ERR_NOMEM,
                       "cuda: an op needs %zu bytes of work memory, the job reserved %zu "
                       "(jb_cuda_reserve before the loop)",
                       cu->arena_base + nbytes,
                       cu->arena_bytes);
    *out = (char *)cu->arena + cu->arena_base;
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_arena_push(struct jb_cuda *cu, size_t nbytes, void **out)
{
    nbytes            = (nbytes + 255) & ~(size_t)255;
    enum jb_status st = jb_cuda_arena(cu, nbytes, out);
    if (st == JB_STATUS_OK) cu->arena_base += nbytes;
    return st;
}

extern "C" void jb_cuda_arena_pop(struct jb_cuda *cu, size_t nbytes)
{
    nbytes         = (nbytes + 255) & ~(size_t)255;
    cu->arena_base = nbytes < cu->arena_base ? cu->arena_base - nbytes : 0;
}

extern "C" enum jb_status jb_cuda_status(struct jb_cuda *cu)
{
    if (cu->capturing && cu->capture_err != JB_STATUS_OK) return cu->capture_err;
    if (cu->err == JB_STATUS_OK) {
        /* the calling thread may have another device current (a daemon with several GPUs) */
        int cur             = -1;
        const cudaError_t e = cudaGetDevice(&cur);
        if (e != cudaSuccess || (cur != cu->device && cudaSetDevice(cu->device) != cudaSuccess))
            cu->err = jb_cuda_fail_call(
              __FILE__, __LINE__, "cudaSetDevice", cudaGetErrorString(cudaGetLastError()));
    }
    return cu->err;
}

extern "C" void jb_cuda_record(struct jb_cuda *cu, enum jb_status st)
{
    if (st == JB_STATUS_OK) return;
    if (cu->capturing) { /* nothing ran: the recording fails, not the device */
        if (cu->capture_err == JB_STATUS_OK) {
            cu->capture_err = st;
            snprintf(cu->capture_why, sizeof cu->capture_why, "%s", jb_last_error());
        }
        return;
    }
    if (cu->err == JB_STATUS_OK) cu->err = st;
}

extern "C" enum jb_status jb_cuda_check_fit(struct jb_cuda *cu,
                                            const char *what,
                                            size_t model_bytes,
                                            size_t per_candidate_bytes,
                                            int n_candidates)
{
    size_t fr = 0, tot = 0;
    enum jb_status st = jb_cuda_mem_info(cu, &fr, &tot);
    if (st != JB_STATUS_OK) return st;
    /* cuBLAS workspaces, the graph and fragmentation: keep 256 MiB or 2% back */
    const double margin = (double)tot * 0.02 > 268435456.0 ? (double)tot * 0.02 : 268435456.0;
    const double need   = (double)model_bytes +
                        (double)per_candidate_bytes * (double)(n_candidates > 0 ? n_candidates : 0);
    if (need + margin > (double)fr) {
        const double gib = 1024.0 * 1024.0 * 1024.0;
        const double fit = per_candidate_bytes ? ((double)fr - margin - (double)model_bytes) /
                                                   (double)per_candidate_bytes
                                               : 0.0;
        return jb_fail(JB_STATUS_ERR_NOMEM,
                       "%s does not fit on cuda:%d: needs %.2f GiB (model %.2f GiB + %d "
                       "candidates x %.3f GiB) but %.2f GiB of %.2f GiB are free; at most %d "
                       "candidates would fit",
                       what ? what : "job",
                       cu->device,
                       need / gib,
                       (double)model_bytes / gib,
                       n_candidates,
                       (double)per_candidate_bytes / gib,
                       (double)fr / gib,
                       (double)tot / gib,
                       fit > 0.0 ? (int)fit : 0);
    }
    return JB_STATUS_OK;
}

/* ---- CUDA graphs ------------------------------------------------------------------------- */

struct jb_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    struct jb_cuda_arena_hold *arena; /* the arena its kernels were given (NULL: none) */
};

extern "C" enum jb_status jb_cuda_graph_begin(struct jb_cuda *cu)
{
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(cu->stream, &cs));
    if (cs != cudaStreamCaptureStatusNone)
        return jb_fail(JB_STATUS_ERR_DEVICE, "cuda:%d: a recording is already open", cu->device);
    /* ThreadLocal: a call this thread makes that a capture cannot record (cudaMalloc, a
     * synchronisation) invalidates the capture instead of silently running outside it */
    CUDA_CHECK(cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal));
    cu->capturing      = true;
    cu->capture_err    = JB_STATUS_OK;
    cu->capture_why[0] = '\0';
    return JB_STATUS_OK;
}

/* Ends the capture whatever happened in it (the stream must leave capture mode), then:
 * the instantiated graph; ERR_UNSUPPORTED with the reason when the step cannot be recorded but
 * the device is fine (the caller runs the ops directly: none of them ran); ERR_DEVICE when the
 * stream itself fails afterwards. */
extern "C" enum jb_status jb_cuda_graph_end(struct jb_cuda *cu, struct jb_cuda_graph **out)
{
    *out = NULL;
    char why[512];
    why[0]                     = '\0';
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    const cudaError_t qe       = cudaStreamIsCapturing(cu->stream, &cs);
    cu->capturing              = false;
    cudaGraph_t graph          = NULL;
    const cudaError_t ee       = cudaStreamEndCapture(cu->stream, &graph);
    cudaGraphExec_t exec       = NULL;
    if (cu->capture_err != JB_STATUS_OK)
        snprintf(why, sizeof why, "an op failed while recording: %s", cu->capture_why);
    else if (qe == cudaSuccess && cs == cudaStreamCaptureStatusInvalidated)
        snprintf(why,
                 sizeof why,
                 "the capture was invalidated (a call that cannot be captured, e.g. an allocation "
                 "or synchronisation, was made while recording): %s",
                 cudaGetErrorString(ee));
    else if (ee != cudaSuccess || !graph)
        snprintf(why, sizeof why, "cudaStreamEndCapture: %s", cudaGetErrorString(ee));
    else {
        const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
        if (ie != cudaSuccess)
            snprintf(why, sizeof why, "cudaGraphInstantiate: %s", cudaGetErrorString(ie));
    }
    cu->capture_err = JB_STATUS_OK;
    if (why[0]) {
        if (graph) cudaGraphDestroy(graph);
        (void)cudaGetLastError(); /* capture errors are not sticky; clear the last one */
        /* a sticky device error (an earlier fault) shows here: that one fails the job */
        CUDA_CHECK(cudaStreamSynchronize(cu->stream));
        return jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                       "cuda:%d: the step cannot be recorded as a CUDA graph (%s); it runs "
                       "directly",
                       cu->device,
                       why);
    }
    struct jb_cuda_graph *g = (struct jb_cuda_graph *)calloc(1, sizeof *g);
    if (g && cu->arena && !cu->arena_hold) {
        cu->arena_hold = (struct jb_cuda_arena_hold *)calloc(1, sizeof *cu->arena_hold);
        if (cu->arena_hold) {
            cu->arena_hold->mem    = cu->arena;
            cu->arena_hold->device = cu->device;
        }
    }
    if (!g || (cu->arena && !cu->arena_hold)) {
        free(g);
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        return jb_fail(JB_STATUS_ERR_NOMEM, "cuda: out of host memory");
    }
    g->graph = graph;
    g->exec  = exec;
    g->arena = cu->arena_hold; /* the arena outlives the graph (jb_cuda_reserve retires it) */
    if (g->arena) g->arena->graphs++;
    *out = g;
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_graph_launch(struct jb_cuda *cu, struct jb_cuda_graph *g)
{
    CUDA_CHECK(cudaGraphLaunch(g->exec, cu->stream));
    return JB_STATUS_OK;
}

extern "C" void jb_cuda_graph_free(struct jb_cuda_graph *g)
{
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    cudaGraphDestroy(g->graph);
    struct jb_cuda_arena_hold *h = g->arena;
    if (h && --h->graphs == 0 && h->retired) {
        /* its last user: a replay may still be running on the device that owns it */
        int prev = -1;
        cudaGetDevice(&prev);
        cudaSetDevice(h->device);
        cudaDeviceSynchronize();
        cudaFree(h->mem);
        if (prev >= 0 && prev != h->device) cudaSetDevice(prev);
        free(h);
    }
    free(g);
}

extern "C" size_t jb_cuda_graph_nodes(const struct jb_cuda_graph *g)
{
    size_t n = 0;
    if (g && cudaGraphGetNodes(g->graph, NULL, &n) != cudaSuccess) {
        (void)cudaGetLastError();
        n = 0;
    }
    return n;
}
