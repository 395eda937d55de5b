/*
 * backend/cuda/cuda_attention.cuh - factorised attention over the KV cache (F32 or F16), every kind
 * (jukebox-spec §4.6, §5.2), prefill (a chunk of C positions) and single-token decode
 * (C-callable; cuda.h).
 *
 * The cache layout is the engine's (struct jb_kv_cache, backend/ops.h), in F32 or F16: per
 * (candidate n, head h) keys transposed, k[((n·H + h)·hd + c)·cap + slot], values row-major,
 * v[((n·H + h)·cap + slot)·hd + c], the slot of position j
 *   func 0: j   1: j mod B   2: (j mod B)·rows + j div B   3: ((j div B) mod 2)·B + j mod B
 *   6: encoder position   7: j while j < cap (P')
 * so the key set of every query is one contiguous run of slots and no mask is needed (masked
 * logits of the reference are −1e9 and get exactly zero weight).
 *
 * Position: the absolute position of chunk row r is S + r, with S taken from *pos when pos is
 * non-NULL (device memory, read by the kernel): a captured CUDA graph of a decode step then
 * serves every token (advance it with jb_cuda_position_add).
 */
#ifndef JB_BACKEND_CUDA_ATTENTION_CUH
#define JB_BACKEND_CUDA_ATTENTION_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

struct jb_cuda_attn {
    int func;           /* attn_func: 0, 1, 2, 3, 6 or 7 */
    int64_t B;          /* block_ctx */
    int64_t rows;       /* func 2: ceil(T / B) (slots per column) */
    int64_t cap;        /* slots per (candidate, head) */
    int N, H, hd;       /* candidates, heads, head dim (n_state = H·hd) */
    float scale;        /* applied after the dot product */
    enum jb_dtype type; /* F32 or F16 */
    void *k, *v;        /* device */
};

/* Bytes of one of k / v. */
size_t jb_cuda_attn_cache_bytes(const struct jb_cuda_attn *a);

/* kv_append: keys k[(n·C + r)·ld + h·hd + c] and values v[...] of chunk rows [r0, r1) into
 * their slots (func 6: slot r). Rows a layer does not keep (func 7 past P') are skipped. */
enum jb_status jb_cuda_kv_append(struct jb_cuda *cu,
                                 const struct jb_cuda_attn *a,
                                 int C,
                                 int64_t S,
                                 const int32_t *pos,
                                 int r0,
                                 int r1,
                                 const float *k,
                                 const float *v,
                                 int64_t ld);

/* attention: out[(n·C + r)·ldo + h·hd ..] = softmax(scale · q·Kᵀ) V over the key set of
 * position S + r, for chunk rows [r0, r1), q at q[(n·C + r)·ldq + h·hd]. */
enum jb_status jb_cuda_attention(struct jb_cuda *cu,
                                 const struct jb_cuda_attn *a,
                                 int C,
                                 int64_t S,
                                 const int32_t *pos,
                                 int r0,
                                 int r1,
                                 const float *q,
                                 int64_t ldq,
                                 float *out,
                                 int64_t ldo);

/* A whole chunk of a self-attention layer from packed rows qkv [N·C, 3·ns] (Q | K | V): append
 * and attend in block-aligned segments for funcs 1 and 3 (a ring slot is reused only after its
 * readers are done), as the model code does; att [N·C, ns]. For func 6 qkv is q [N·C, ns]. */
enum jb_status jb_cuda_attention_chunk(struct jb_cuda *cu,
                                       const struct jb_cuda_attn *a,
                                       int64_t S,
                                       const int32_t *pos,
                                       int C,
                                       const float *qkv,
                                       float *att);

/* Decode queries are split over blocks of about `keys` keys each (while the blocks fit in one
 * wave); 0 restores the default. For tuning (bench_gpu --attn-split-keys). */
void jb_cuda_set_attn_split_keys(struct jb_cuda *cu, int keys);

/* *pos += by, on the stream (graph-capturable). */
enum jb_status jb_cuda_position_add(struct jb_cuda *cu, int32_t *pos, int32_t by);

#ifdef __cplusplus
}
#endif

#endif
