/*
 * backend/cuda/cuda.h - the CUDA backend as the rest of the engine (plain C) sees it.
 *
 * A struct jb_cuda is one device, one stream, one cuBLAS handle and one work arena. Every entry
 * point is asynchronous on that stream and returns JB_STATUS_OK, or JB_STATUS_ERR_DEVICE after
 * jb_fail() with the failing call, file and line (CUDA_CHECK / CUBLAS_CHECK in cuda_impl.cuh):
 * a device error fails the job, never the process. Pointers passed to the kernels are device
 * pointers (from jb_cuda_malloc) unless a parameter says host.
 *
 * Op families, one .cu/.cuh pair each, one entry point per op:
 *   cuda_gemm       matmul (cuBLAS; GEMV kernels for M <= 16 over half weights)
 *   cuda_norm       layernorm, softmax rows
 *   cuda_elementwise relu, add, axpy, quick_gelu, bias, embedding, transpose, dtype conversion
 *   cuda_attention  KV-cache store + attention of every kind, prefill and decode, fp16 cache
 *   cuda_conv       conv1d, conv_transpose1d (im2col / col2im + cuBLAS)
 *   cuda_vq         codebook search
 *   cuda_sample     temperature / top-k / top-p / inverse-CDF draw with core/rng.h
 */
#ifndef JB_BACKEND_CUDA_CUDA_H
#define JB_BACKEND_CUDA_CUDA_H

#include "encore/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct jb_cuda;
struct jb_cuda_graph;
struct jb_backend;

/* The CUDA backend for device N ("cuda:N" in jb_backend_init); NULL after jb_fail. */
struct jb_backend *jb_backend_cuda_init(int device, int n_threads);

/* Devices visible to this process; 0 when there is no driver, no device or no CUDA build
 * (never fails, never prints). why (optional) receives a sentence saying why there are none. */
int jb_cuda_device_count(const char **why);

/* Opens device `device` (0-based): stream, cuBLAS handle. */
enum jb_status jb_cuda_open(int device, struct jb_cuda **out);
void jb_cuda_close(struct jb_cuda *cu);
int jb_cuda_device(const struct jb_cuda *cu);
/* "NVIDIA H200 (cc 9.0, 139.8 GiB)" */
const char *jb_cuda_describe(const struct jb_cuda *cu);

/* Device memory. malloc reports ERR_NOMEM with the size and what is free on failure. */
enum jb_status jb_cuda_malloc(struct jb_cuda *cu, size_t nbytes, void **out);
void jb_cuda_free(struct jb_cuda *cu, void *p);
enum jb_status jb_cuda_mem_info(struct jb_cuda *cu, size_t *free_bytes, size_t *total_bytes);
/* Host -> device and device -> host copies; upload is synchronous (weights, at load). */
enum jb_status jb_cuda_upload(struct jb_cuda *cu, void *dst, const void *src, size_t n);
enum jb_status jb_cuda_download(struct jb_cuda *cu, void *dst, const void *src, size_t n);
enum jb_status jb_cuda_memset(struct jb_cuda *cu, void *dst, int value, size_t n);
enum jb_status jb_cuda_synchronize(struct jb_cuda *cu);

/* Programmatic dependent launch of the decode kernels (on by default where the device has
 * it, compute capability 9.0+); off for a comparison (bench_gpu --no-pdl). */
void jb_cuda_set_pdl(struct jb_cuda *cu, bool on);
/* The per-job work arena: reserved once (before any loop) for the im2col / col2im columns,
 * GEMV split-K partials and fp16 staging of the GEMMs; the kernels never allocate. Growing it
 * replaces it; one that live graphs were recorded with stays allocated until they are freed. */
enum jb_status jb_cuda_reserve(struct jb_cuda *cu, size_t nbytes);
size_t jb_cuda_reserved(const struct jb_cuda *cu);
/* Holds the next nbytes of the arena (an op that keeps buffers across the ops it is built of);
 * the ops it then runs take their work memory after it. Release with pop, in reverse order. */
enum jb_status jb_cuda_arena_push(struct jb_cuda *cu, size_t nbytes, void **out);
void jb_cuda_arena_pop(struct jb_cuda *cu, size_t nbytes);

/* Ops of the backend vtable return nothing: their first failure is kept here (sticky) and the
 * job reads it through jb_backend_status() between steps. While there is none, status also
 * makes the context's device current for the calling thread (every op calls it first). */
enum jb_status jb_cuda_status(struct jb_cuda *cu);
void jb_cuda_record(struct jb_cuda *cu, enum jb_status st);

/* Memory planning: refuses (ERR_NOMEM, clear message) a job whose model bytes plus
 * n_candidates x per_candidate bytes do not fit in what the device has free now, keeping
 * a margin for cuBLAS and the CUDA context. */
enum jb_status jb_cuda_check_fit(struct jb_cuda *cu,
                                 const char *what,
                                 size_t model_bytes,
                                 size_t per_candidate_bytes,
                                 int n_candidates);

/* CUDA graphs: everything launched between begin and end is recorded instead of run, and
 * launch replays it. Kernels that depend on the position read it from device memory, so one
 * captured decode step serves every token. */
enum jb_status jb_cuda_graph_begin(struct jb_cuda *cu);
enum jb_status jb_cuda_graph_end(struct jb_cuda *cu, struct jb_cuda_graph **out);
enum jb_status jb_cuda_graph_launch(struct jb_cuda *cu, struct jb_cuda_graph *g);
void jb_cuda_graph_free(struct jb_cuda_graph *g);
/* Nodes (kernels, copies) of a recording: what a replay launches (bench_gpu's breakdown). */
size_t jb_cuda_graph_nodes(const struct jb_cuda_graph *g);

#ifdef __cplusplus
}
#endif

#endif
