/*
 * backend/ops.h - the ops the models are written with: one wrapper per entry of the op table
 * (backend/ops.def), each taking the backend first, and the descriptor types some ops take.
 *
 * All activations are fp32 and row-major, in memory of the backend (see ops.def). Convolution
 * activations use the PyTorch (C, T) layout for one batch item: x[c * T + t]. Weights are
 * struct jb_tensor views whose dtype may be F32 (every op) or F16/BF16 (matmul and embedding,
 * converted on the fly).
 *
 * Ops never allocate: callers pass scratch memory sized with the *_scratch() functions,
 * reserved once before any loop. The CPU kernels are multithreaded internally (the backend's own
 * thread pool) and are deterministic for a given thread count and shape; per-output accumulation
 * order does not depend on the sequence length T, so chunked and whole-sequence convolutions agree
 * bitwise on outputs that see the same inputs.
 *
 * Op semantics (details beside each entry of ops.def):
 *   matmul            y[M, N] (+)= x[M, K]·W (+ bias[N]); W stored [K, N] when !w_trans
 *                     (transformer Conv1D .w) or [N, K] when w_trans (nn.Linear, x_out,
 *                     embedding as output matrix); ldx, ldy row strides; accumulate adds into y.
 *   conv1d            PyTorch Conv1d (cross-correlation, zero padding):
 *                     y[o, t] = b[o] + Σ_c Σ_j w[o, c, j] · x[c, s·t − p + d·j],
 *                     Tout = (T + 2p − d(k−1) − 1) / s + 1; y must not alias x.
 *   conv_transpose1d  PyTorch ConvTranspose1d, w [Cin, Cout, k], Tout = (T − 1)·s − 2p + k.
 *   resblock          ResConv1DBlock (jukebox-spec §3.2): y = x + ρ·conv1(relu(conv3_d(relu(x))))
 *                     with conv3_d: k 3, dilation d, pad d; x, y (C, T) must not overlap;
 *                     work: jb_resblock_work(be, w1, T) floats.
 *   layernorm         over the last dim W (biased variance, eps inside the sqrt), fp32.
 *   softmax_rows      max-subtracted, fp32, in place.
 *   vq_argmin         codes[t] = argmin_j (‖x_t‖² − 2 x_t·k_j) + ‖k_j‖², first index on ties;
 *                     scratch: jb_vq_argmin_scratch(bins, emb, T).
 *   kv_append, attention: the factorised attention of jukebox-spec §4.6 over the KV-cache
 *                     layouts below.
 *   sample            jukebox-spec §5.4 (see struct jb_sample_desc).
 */
#ifndef JB_BACKEND_OPS_H
#define JB_BACKEND_OPS_H

#include "backend/backend.h"

/* ---- descriptors --------------------------------------------------------------------------- */

/* The shape of one attention layer (what every kind needs besides its cache). */
struct jb_attn_desc {
    int32_t heads, head_dim, n_state; /* n_state = heads · head_dim */
    int32_t seq_len;                  /* T: positions of one window */
    int32_t block_ctx;                /* B */
    float scale;                      /* applied to q·k, after the dot product */
};

/* Keys and values of one attention layer for all candidates, one block per (candidate n, head
 * h): keys transposed, k[((n·H + h)·hd + c)·cap + slot], values row-major,
 * v[((n·H + h)·cap + slot)·hd + c], in `type` (F32, or F16 for the half-precision cache).
 * Only the backend's own ops read a cache, so a backend may lay out a kind its own way: the CPU
 * backend keeps the keys of funcs 1-3 row-major, as the values (their key runs are short, and a
 * transposed key's append touched hd cache lines, 4·cap bytes apart).
 * Slots (B = block_ctx, R = rows = ceil(T/B)), and the key set S(i) of query position i:
 *
 *   func  slot of position j            keys of query i                    capacity (§5.2)
 *   0     j                             slots [0, i]                       T
 *   1     j mod B                       slots [0, i mod B]                 B
 *   2     (j mod B)·R + j div B         column i mod B, rows [0, i div B]  R·B
 *   3     ((j div B) mod 2)·B + j mod B the B slots of block i div B − 1   2B
 *   6     encoder position (set once)   all enc_len                        enc_len
 *   7     j, only while j < P'          slots [0, min(i, P'−1)]            P'
 *
 * A func-1/3 ring slot is overwritten by kv_append: append and attend in block-aligned segments
 * (a slot is reused only after every query that reads it was answered).
 *
 * k and v each hold N candidates' caches one after another, cap·n_state elements apiece (their
 * layout inside is the backend's): k and v advanced by n0 such blocks are the cache of
 * candidates n0.. (the prior's candidate groups use that). */
struct jb_kv_cache {
    int32_t func;
    int32_t cap;  /* slots per (candidate, head) */
    int32_t rows; /* func 2: slots per column = ceil(T / B) */
    enum jb_dtype type;
    void *k, *v; /* backend memory */
};

/* Slots per (candidate, head) that attention kind `func` needs for a whole window; 0 for an
 * unknown func. enc_len and prime_len (P') size funcs 6 and 7. */
int32_t jb_kv_capacity(int func, int32_t seq_len, int32_t block_ctx, int32_t enc_len, int32_t P);
/* Longest key set of any query of kind `func`. */
int64_t jb_attn_max_keys(int func, int32_t seq_len, int32_t block_ctx, int32_t cap);

/* The draw (jukebox-spec §5.4) for one candidate: ℓ ← ℓ / temp (fp32); top-k: entries strictly
 * below the k-th largest value become −∞ (ties survive); top-p: sort descending, drop entry r iff
 * the cumulative softmax of entries 0..r−1 exceeds top_p (the top entry always stays); then
 * inverse-CDF sampling of softmax(ℓ) with one uniform u. top_k == 1 is exact greedy (the first
 * index of the largest logit, no randomness). */
struct jb_sample_desc {
    float temp;              /* > 0 */
    int32_t top_k;           /* 0: off; 1: greedy */
    float top_p;             /* 0: off; else in (0, 1] */
    uint64_t seed;           /* RNG seed of the whole batch */
    int32_t first_candidate; /* stream index of candidate 0 (batch slices) */
};

/* The counter-based uniform of the sampler: Philox4x32-10 (Salmon et al., SC'11) keyed by seed,
 * counter (t, stream); 53 bits in [0, 1). Candidate `stream` draws the same number at
 * position t whatever the batch, slicing or backend. */
double jb_rng_u01(uint64_t seed, uint64_t stream, uint64_t t);

/* ---- the op wrappers (generated from ops.def) ---------------------------------------------- */

#define JB_OP(ID, name, params, args) void jb_##name(struct jb_backend *be, JB_UNPAREN params);
#include "backend/ops.def"
#undef JB_OP

/* ---- geometry and scratch sizes (floats) ----------------------------------------------------- */

int64_t jb_conv1d_out_len(int64_t T, int k, int stride, int pad, int dil);
int64_t jb_conv_transpose1d_out_len(int64_t T, int k, int stride, int pad);
/* The scratch of conv1d and conv_transpose1d: 0 where the op needs none; then NULL may be
 * passed. The CPU backend runs wide layers (Cin + Cout > 512; a conv1d only with k 3, stride 1,
 * pad = dil) by Winograd in it; given NULL, it takes the direct kernel. */
size_t jb_conv1d_scratch(int64_t Cin, int64_t Cout, int64_t T, int k, int stride, int pad, int dil);
size_t jb_conv_transpose1d_scratch(int64_t Cin,
                                   int64_t Cout,
                                   int64_t T,
                                   int k,
                                   int stride,
                                   int pad);
size_t jb_vq_argmin_scratch(int64_t bins, int64_t emb, int64_t T);
/* work of the resblock op over T columns (w1 [n_state, C, 3]); 0 on overflow */
size_t jb_resblock_work(const struct jb_backend *be, const struct jb_tensor *w1, int64_t T);

#endif
