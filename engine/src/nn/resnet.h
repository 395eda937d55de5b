/*
 * nn/resnet.h - the 1-D convolution stacks of Jukebox: Resnet1D / ResConv1DBlock
 * (jukebox-spec §3.2) and a flat list of layers (conv1d, conv_transpose1d, Resnet1D) from which
 * the VQ-VAE encoders and decoders (§3.3, §3.5) and the upsamplers' audio conditioner (§4.3) are
 * built.
 *
 * A stack knows its own geometry: output length, the work memory a forward pass needs for an
 * input length (so callers reserve it once per call, never per layer), and its receptive field,
 * computed by propagating index intervals backwards through every layer (§3.7). The forward
 * pass only writes to caller-provided memory.
 *
 * Activations use the (C, T) layout of backend/ops.h: x[c * T + t].
 *
 * Ownership: a jb_convstack owns its layer array; the weight tensors it points to belong to the
 * jb_weights object it was built from, which must outlive it. A built stack is read-only, so
 * several threads may run forward passes on one stack at once, each with its own work memory
 * (but a backend takes one caller at a time). A forward pass is a sequence of backend ops
 * (conv1d, conv_transpose1d, resblock) on backend memory: x, y and the work buffers are the
 * backend's.
 */
#ifndef JB_VQVAE_RESNET_H
#define JB_VQVAE_RESNET_H

#include "backend/ops.h"
#include "format/weights.h"

/* An inclusive index interval [lo, hi] on an unbounded axis (may be negative). */
struct jb_rf {
    int64_t lo, hi;
};

/* Input interval that the output interval `out` of a layer depends on. */
struct jb_rf jb_rf_conv1d(struct jb_rf out, int k, int stride, int pad, int dil);
struct jb_rf jb_rf_conv_transpose1d(struct jb_rf out, int k, int stride, int pad);

/* Resnet1D(n_in, depth, m_conv, growth, cycle, reverse, res_scale). */
struct jb_resnet1d_params {
    int n_in;                /* channels in and out */
    int depth;               /* number of ResConv1DBlocks */
    float m_conv;            /* inner width = (int)(m_conv * n_in) */
    int growth;              /* dilation_growth_rate */
    int cycle;               /* dilation_cycle; 0 = None (dilation growth^r) */
    bool reverse;            /* run the blocks in descending dilation order (VQ-VAE decoders) */
    float res_scale;         /* y = x + res_scale * block(x) */
    const char *blocks_name; /* "model" (VQ-VAE) or "blocks" (conditioner, checkpoint_res=1) */
};

enum jb_layer_kind {
    JB_LAYER_CONV1D,
    JB_LAYER_CONV_TRANSPOSE1D,
    JB_LAYER_RESNET1D,
};

/* One ResConv1DBlock: x + res_scale * conv1(relu(conv3_dilated(relu(x)))). */
struct jb_resblock {
    const struct jb_tensor *w1, *b1; /* [n_state, n_in, 3], [n_state]: k 3, dilation, pad = dil */
    const struct jb_tensor *w2, *b2; /* [n_in, n_state, 1], [n_in] */
    int dil;
};

struct jb_layer {
    enum jb_layer_kind kind;
    int c_in, c_out;
    /* conv1d / conv_transpose1d */
    int k, stride, pad, dil;
    const struct jb_tensor *w, *b;
    /* resnet1d: blocks in execution order (owned) */
    int n_state, n_blocks;
    float res_scale;
    struct jb_resblock *blocks;
    /* last layer of a level block: cancellation is polled and progress reported here */
    bool block_end;
};

struct jb_convstack {
    int n_layers, cap;
    struct jb_layer *layers;
};

/* Builders: append a layer whose tensors are '<prefix>.weight' / '<prefix>.bias' (convs) or
 * '<prefix>.<blocks_name>.<r>.model.{1,3}.{weight,bias}' (Resnet1D). They return false after
 * jb_fail() on bad hyper-parameters or OOM; a missing or mis-shaped tensor is recorded in `w`
 * (check jb_weights_ok() once at the end). The stack is left valid for jb_convstack_free. */
bool jb_convstack_conv1d(struct jb_convstack *s,
                         struct jb_weights *w,
                         int c_in,
                         int c_out,
                         int k,
                         int stride,
                         int pad,
                         const char *prefix_fmt,
                         ...) JB_PRINTF(8, 9);
bool jb_convstack_conv_transpose1d(struct jb_convstack *s,
                                   struct jb_weights *w,
                                   int c_in,
                                   int c_out,
                                   int k,
                                   int stride,
                                   int pad,
                                   const char *prefix_fmt,
                                   ...) JB_PRINTF(8, 9);
bool jb_convstack_resnet1d(struct jb_convstack *s,
                           struct jb_weights *w,
                           const struct jb_resnet1d_params *p,
                           const char *prefix_fmt,
                           ...) JB_PRINTF(4, 5);
/* Marks the last layer added as the end of a level block. */
void jb_convstack_end_block(struct jb_convstack *s);
void jb_convstack_free(struct jb_convstack *s); /* frees the layers; the struct may be reused */

int jb_convstack_c_in(const struct jb_convstack *s);
int jb_convstack_c_out(const struct jb_convstack *s);

/* Output length for input length T, or -1 if some layer would get an empty input. */
int64_t jb_convstack_out_len(const struct jb_convstack *s, int64_t T);

/* Input interval the output interval `out` depends on, for an unbounded sequence. */
struct jb_rf jb_convstack_rf(const struct jb_convstack *s, struct jb_rf out);

/* Work memory of a forward pass over T input frames on backend be, in floats (each buffer
 * 64-byte aligned by the caller): two activation buffers of `act` floats, `inner` for the
 * Resnet1D blocks (the resblock op's work) and kernel scratch of `scratch`. Returns false
 * (jb_fail NOMEM) on size overflow. */
struct jb_convstack_mem {
    size_t act, inner, scratch;
};
bool jb_convstack_mem(const struct jb_convstack *s,
                      const struct jb_backend *be,
                      int64_t T,
                      struct jb_convstack_mem *m);

struct jb_convstack_work {
    float *act[2];  /* each >= mem.act floats */
    float *inner;   /* >= mem.inner: the resblocks' work */
    float *scratch; /* >= mem.scratch: the convolutions'; may be inner (never used together) */
};

/* Progress of a forward pass, in caller units: at the k-th of n level-block ends, reports
 * done + units * k / n out of total (stage/level as given), after polling should_stop. */
struct jb_convstack_progress {
    const struct jb_callbacks *cb;
    const char *stage;
    int level;
    double t_start;
    int64_t done, units, total;
};

/* Runs the stack on x (c_in, T). x may be work->act[0] or [1] (it is then overwritten) or
 * other backend memory (only read). The result (c_out, out_len) is written to y if y != NULL (y
 * must not overlap the work memory), else left in one of work->act, returned in *result. prog may
 * be NULL. Returns JB_STATUS_ERR_CANCELLED if should_stop() fired at a block end.
 * origin: the column of x[0] in the whole input when x is a chunk of it, else 0 (each layer's
 * resblocks get theirs: see the resblock op). */
enum jb_status jb_convstack_forward(struct jb_backend *be,
                                    const struct jb_convstack *s,
                                    const float *x,
                                    int64_t T,
                                    int64_t origin,
                                    float *y,
                                    const struct jb_convstack_work *work,
                                    const struct jb_convstack_progress *prog,
                                    float **result);

#endif
