/*
 * backend/cuda/cuda_attention.cuh - factorised attention over an fp16 KV cache, every kind
 * (jukebox-spec §4.6, §5.2), prefill (a chunk of C positions) and single-token decode
 * (C-callable; cuda.h).
 *
 * The cache layout is the CPU one (prior/attention.c) with fp16 elements and keys stored
 * row-major: per (candidate n, head h) a block of cap slots of hd halves, the slot of position j
 *   func 0: j   1: j mod B   2: (j mod B)·rows + j div B   3: ((j div B) mod 2)·B + j mod B
 *   6: encoder position   7: j while j < cap (P')
 * so the key set of every query is one contiguous run of slots and no mask is needed (masked
 * logits of the reference are −1e9 and get exactly zero weight).
 */
#ifndef JB_BACKEND_CUDA_ATTENTION_CUH
#define JB_BACKEND_CUDA_ATTENTION_CUH

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

struct jb_cuda_attn {
    int func;     /* attn_func: 0, 1, 2, 3, 6 or 7 */
    int64_t B;    /* block_ctx */
    int64_t rows; /* func 2: ceil(T / B) (slots per column) */
    int64_t cap;  /* slots per (candidate, head): jb_kv_cache_capacity() of the CPU code */
    int N, H, hd; /* candidates, heads, head dim (n_state = H·hd) */
    float scale;  /* fl32(1/sqrt(hd)), applied after the dot product */
    void *k, *v;  /* device, fp16 [N][H][cap][hd] each */
};

/* Bytes of one of k / v. */
size_t jb_cuda_attn_cache_bytes(const struct jb_cuda_attn *a);

/* Priming: C new positions starting at absolute position S (host). qkv [N·C rows, 3·ns]
 * (Q | K | V) fp32, or for func 6 q [N·C, ns]; att [N·C, ns] fp32 receives the heads'
 * outputs (head-major), before c_proj. New keys/values are stored as fp16 in block-aligned
 * segments for funcs 1 and 3 (a ring slot is reused only after its readers are done). */
enum jb_status jb_cuda_attention_chunk(struct jb_cuda *cu,
                                       const struct jb_cuda_attn *a,
                                       int64_t S,
                                       int C,
                                       const float *qkv,
                                       float *att);

/* Decode: one position per candidate, its index read on the device from *pos, so a captured
 * CUDA graph of the step replays correctly for every token (advance with jb_cuda_position_add). */
enum jb_status jb_cuda_attention_decode(struct jb_cuda *cu,
                                        const struct jb_cuda_attn *a,
                                        const int32_t *pos,
                                        const float *qkv,
                                        float *att);

/* Cross-attention (func 6): keys/values from encoder_kv [N][cap][2·ns] fp32 (K | V), once per
 * window. */
enum jb_status jb_cuda_attention_set_encoder(struct jb_cuda *cu,
                                             const struct jb_cuda_attn *a,
                                             const float *kv);

/* *pos += by, on the stream (graph-capturable). */
enum jb_status jb_cuda_position_add(struct jb_cuda *cu, int32_t *pos, int32_t by);

#ifdef __cplusplus
}
#endif

#endif
