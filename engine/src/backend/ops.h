/*
 * backend/ops.h - the numerical kernels the models are written with.
 *
 * All activations are fp32 and row-major. Convolution activations use the PyTorch (C, T)
 * layout for one batch item: x[c * T + t]. Weights are struct jb_tensor views whose dtype may
 * be F32 (every kernel) or F16/BF16 (jb_matmul only, converted on the fly).
 *
 * Kernels never allocate: callers pass scratch memory sized with the *_scratch() functions,
 * reserved once before any loop. Kernels are multithreaded internally (the backend's own thread
 * pool) and are deterministic for a given thread count and shape; per-output accumulation order
 * does not depend on the sequence length T, so chunked and whole-sequence convolutions agree
 * bitwise on outputs that see the same inputs.
 */
#ifndef JB_BACKEND_OPS_H
#define JB_BACKEND_OPS_H

#include "backend/backend.h"

/* y[M, N] (+)= x[M, K] · W (+ bias[N]).
 * W is stored [K, N] when !w_trans (transformer Conv1D .w) or [N, K] when w_trans (nn.Linear /
 * x_out / embedding used as output matrix). ldx, ldy are row strides in elements.
 * accumulate: add into y instead of overwriting. */
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
               bool accumulate);

/* Conv1d, PyTorch semantics (cross-correlation, zero padding):
 *   y[o, t] = b[o] + Σ_c Σ_j w[o, c, j] · x[c, s·t − p + d·j],  t < Tout,
 *   Tout = (T + 2p − d(k−1) − 1) / s + 1.
 * x (Cin, T), w [Cout, Cin, k] F32, b [Cout] F32 or NULL, y (Cout, Tout); y must not alias x. */
void jb_conv1d(struct jb_backend *be,
               const float *x,
               int64_t T,
               const struct jb_tensor *w,
               const struct jb_tensor *b,
               int stride,
               int pad,
               int dil,
               float *y,
               float *scratch);
int64_t jb_conv1d_out_len(int64_t T, int k, int stride, int pad, int dil);
size_t jb_conv1d_scratch(int64_t Cin, int64_t T, int k, int stride, int pad, int dil); /* floats */

/* ConvTranspose1d, PyTorch semantics: w [Cin, Cout, k],
 *   Tout = (T − 1)·s − 2p + k. x (Cin, T), y (Cout, Tout). */
void jb_conv_transpose1d(struct jb_backend *be,
                         const float *x,
                         int64_t T,
                         const struct jb_tensor *w,
                         const struct jb_tensor *b,
                         int stride,
                         int pad,
                         float *y,
                         float *scratch);
int64_t jb_conv_transpose1d_out_len(int64_t T, int k, int stride, int pad);
size_t jb_conv_transpose1d_scratch(int64_t Cout, int64_t T); /* floats */

/* y = max(x, 0), n elements; y may equal x. */
void jb_relu(int64_t n, const float *x, float *y);
/* y += alpha · x */
void jb_axpy(int64_t n, float alpha, const float *x, float *y);
/* y = a + b elementwise (y may alias a or b) */
void jb_add(int64_t n, const float *a, const float *b, float *y);

/* LayerNorm over the last dim W of rows x[rows, W] (biased variance, eps inside the sqrt),
 * computed in fp32 as the reference does; gamma/beta [W] F32. y may equal x. */
void jb_layernorm(struct jb_backend *be,
                  int64_t rows,
                  int64_t W,
                  const float *x,
                  const struct jb_tensor *gamma,
                  const struct jb_tensor *beta,
                  float eps,
                  float *y);

/* In-place softmax over rows of length n (max-subtracted, fp32). */
void jb_softmax_rows(int64_t rows, int64_t n, float *x);

/* quick_gelu(v) = v · sigmoid(1.702 v), in place. */
void jb_quick_gelu(int64_t n, float *x);

/* Rows of an embedding table (F32/F16/BF16 [V, W]) gathered into out[n, W]; ids are checked
 * by the caller. */
void jb_embedding(const struct jb_tensor *table, const int32_t *ids, int64_t n, float *out);

/* Vector quantisation (jukebox-spec §3.4): x (emb, T) channel-major, codebook [bins, emb] F32.
 * codes[t] = argmin_j (‖x_t‖² − 2 x_t·k_j) + ‖k_j‖², first index on ties.
 * scratch: jb_vq_argmin_scratch(bins, T) floats. */
void jb_vq_argmin(struct jb_backend *be,
                  const float *x,
                  int64_t T,
                  const struct jb_tensor *codebook,
                  int32_t *codes,
                  float *scratch);
size_t jb_vq_argmin_scratch(int64_t bins, int64_t emb, int64_t T);

#endif
