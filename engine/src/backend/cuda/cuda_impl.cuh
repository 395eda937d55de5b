/*
 * backend/cuda/cuda_impl.cuh - what the .cu files share: the context, the checked-call macros
 * and small device helpers. Included by .cu files only (CUDA C++).
 */
#ifndef JB_BACKEND_CUDA_IMPL_CUH
#define JB_BACKEND_CUDA_IMPL_CUH

#include "backend/cuda/cuda.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

extern "C" enum jb_status jb_fail(enum jb_status status, const char *fmt, ...);

/* cuBLAS is loaded with dlopen when the first device opens (cuda_device.cu): linking it would
 * map and relocate ~700 MB of libraries into every process using the engine, GPU or not. */
struct jb_cublas_api {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    decltype(&cublasSgemm_v2) sgemm;
    cublasStatus_t (*gemm_ex)(cublasHandle_t,
                              cublasOperation_t,
                              cublasOperation_t,
                              int,
                              int,
                              int,
                              const void *,
                              const void *,
                              cudaDataType,
                              int,
                              const void *,
                              cudaDataType,
                              int,
                              const void *,
                              void *,
                              cudaDataType,
                              int,
                              cublasComputeType_t,
                              cublasGemmAlgo_t); /* the C symbol */
    decltype(&cublasGetStatusString) status_string;
};
extern struct jb_cublas_api jb_cublas;
/* Loads it once (thread-safe); JB_STATUS_ERR_DEVICE with the reason when it cannot. */
enum jb_status jb_cublas_load(void);

/* An arena that recorded graphs point into (their GEMV partials, fp16 staging): a replay
 * writes where the capture saw the arena, so growing it must not free it while such a graph
 * lives. jb_cuda_reserve retires it instead, and the last of its graphs frees it. */
struct jb_cuda_arena_hold {
    void *mem;
    int device;
    int graphs;   /* live graphs recorded while it was the arena */
    bool retired; /* no longer cu->arena: freed with its last graph */
};

struct jb_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    /* cuBLAS's work memory, ours (cublasSetWorkspace): without it cuBLAS allocates its own,
     * which a stream capture cannot record. Allocated at open, freed at close. */
    void *blas_ws;
    size_t blas_ws_bytes;
    /* Arrival counters (JB_CUDA_GEMV_COUNTERS, zero between kernels) of the GEMV's column
     * tiles and of the split decode attention's queries: the last block to finish adds the
     * partials, so the decode step needs no separate reduction kernel per matmul or attention.
     * Kernels of one stream run in order, so they share them. Allocated and zeroed at open. */
    unsigned *gemv_count;
    /* Streaming multiprocessors, and how many blocks of each GEMV instance (half / bf16 weights,
     * 1..8 rows) one of them holds at once (0 = not asked yet): a GEMV's grid is sized to fit in
     * one wave of resident blocks (cuda_gemm.cu). */
    int sm_count;
    int gemv_per_sm[2][9];
    int attn_split_keys; /* keys per split of a decode query; 0: ATTN_SPLIT_KEYS (bench knob) */
    int gemv_max_splits; /* cap on a GEMV's K-splits; 0: none (bench knob) */
    /* Programmatic dependent launch (compute capability 9.0 and newer, and not switched off
     * with jb_cuda_set_pdl): see jb_cuda_launch. */
    bool pdl;
    void *arena; /* jb_cuda_reserve */
    size_t arena_bytes;
    struct jb_cuda_arena_hold *arena_hold; /* arena's, once a graph recorded into it */
    size_t arena_base; /* bytes of the arena held by an enclosing op (resblock) */
    bool capturing;
    enum jb_status err; /* first failure of an op (ops return void): jb_cuda_status */
    /* the first failure of an op while capturing: nothing ran, so it fails the recording
     * (jb_cuda_graph_end), not the device; the ops then run directly */
    enum jb_status capture_err;
    char capture_why[384];
    char desc[320];
};

#define JB_CUDA_GEMV_COUNTERS 16384

/* Records the failure (call, error string, file:line) and returns JB_STATUS_ERR_DEVICE. */
enum jb_status jb_cuda_fail_call(const char *file, int line, const char *call, const char *err);

#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t jb_e_ = (call);                                                                \
        if (jb_e_ != cudaSuccess)                                                                  \
            return jb_cuda_fail_call(__FILE__, __LINE__, #call, cudaGetErrorString(jb_e_));        \
    } while (0)

#define CUBLAS_CHECK(call)                                                                         \
    do {                                                                                           \
        cublasStatus_t jb_s_ = (call);                                                             \
        if (jb_s_ != CUBLAS_STATUS_SUCCESS)                                                        \
            return jb_cuda_fail_call(__FILE__, __LINE__, #call, jb_cublas.status_string(jb_s_));   \
    } while (0)

/* After a kernel launch: configuration errors show up here, faults at the next sync. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

/* Blocks of `threads` covering n elements, one thread each. Capped at the x-dimension's limit
 * (2^31 − 1 blocks from compute capability 3.0 on, so all of ours): kernels launched with it
 * handle one element per thread and must not be shortened (a lower cap left the elements past
 * 65535·32 blocks unwritten); those with grid-stride loops accept any grid. */
static inline unsigned jb_cuda_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : (b > 0x7fffffff ? 0x7fffffff : b));
}

/* A launch with one block per item (row, time step, query) of n items: the grid's x-dimension
 * takes at most 2^31 − 1. */
#define JB_CUDA_MAX_BLOCKS ((int64_t)0x7fffffff)

/* Work arena slices: the arena is reserved once per job; a kernel that needs more than was
 * reserved fails with a message rather than allocating. */
enum jb_status jb_cuda_arena(struct jb_cuda *cu, size_t nbytes, void **out);

/* Loads of the three weight dtypes as fp32. */
__device__ __forceinline__ float jb_ld(const float *p, int64_t i)
{
    return p[i];
}
__device__ __forceinline__ float jb_ld(const __half *p, int64_t i)
{
    return __half2float(p[i]);
}
__device__ __forceinline__ float jb_ld(const __nv_bfloat16 *p, int64_t i)
{
    return __bfloat162float(p[i]);
}

__device__ __forceinline__ float jb_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float jb_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Block-wide sum / max (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
 * red: 32 floats of shared memory. */
__device__ __forceinline__ float jb_block_sum(float v, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = jb_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return jb_warp_sum(v);
}
__device__ __forceinline__ float jb_block_max(float v, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = jb_warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return jb_warp_max(v);
}

/* Programmatic dependent launch (sm_90+). A decode step is ~650 small kernels in a row, each
 * paying a launch and a drain before the next may start (the bench's launch floor: ~0.8 µs a
 * node). Kernels launched with jb_cuda_launch may start while their predecessor still runs:
 * every such kernel calls jb_pdl_wait() before it touches memory that an earlier kernel writes
 * or reads (before any early return, so it never finishes ahead of its predecessor), and may
 * read what no kernel writes (weights) before it: the GEMV issues its first weight loads, layer
 * norm its gamma and beta, while the previous kernel drains. jb_pdl_trigger() lets the next
 * kernel launch early; a kernel that never calls it triggers when it completes. Both are no-ops
 * before sm_90 and in kernels launched the ordinary way. */
__device__ __forceinline__ void jb_pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cudaGridDependencySynchronize();
#endif
}
__device__ __forceinline__ void jb_pdl_trigger(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cudaTriggerProgrammaticLaunchCompletion();
#endif
}

/* kernel<<<grid, block, smem, cu->stream>>>(args), with programmatic stream serialisation where
 * cu->pdl; only for kernels that call jb_pdl_wait() as described above. */
template<typename... P, typename... A>
static inline cudaError_t jb_cuda_launch(const struct jb_cuda *cu,
                                         void (*kernel)(P...),
                                         dim3 grid,
                                         dim3 block,
                                         size_t smem,
                                         A... args)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim                                        = grid;
    cfg.blockDim                                       = block;
    cfg.dynamicSmemBytes                               = smem;
    cfg.stream                                         = cu->stream;
    cfg.attrs                                          = attr;
    cfg.numAttrs                                       = cu->pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

#endif
