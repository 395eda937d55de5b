/*
 * vqvae/resnet.c - Resnet1D and the conv stacks built from it (jukebox-spec §3.2, §3.7).
 *
 * A stack is a flat list of layers; the encoders, decoders and the audio conditioner differ only
 * in which layers they append. Geometry (lengths, memory, receptive fields) is derived from the
 * same list the forward pass runs, so the chunking margins cannot drift from the network.
 */
#include "vqvae/resnet.h"

#include "backend/cpu/cpu.h"
#include "backend/cpu/pool.h"

#include <stdio.h>
#include <string.h>

/* Resnet1D stacks whose convs are narrow (the VQ-VAE: 32-64 channels) run each block over time
 * tiles that stay in cache, with the ReLUs and the residual add fused into the tile loop: one
 * read of x and one write of y per block instead of about ten full-length passes. Wide stacks
 * (the released conditioner, 1024 channels) use whole-sequence kernel calls, which reuse their
 * large weights across the whole sequence. The choice depends on the layer's shape only, so a
 * chunk and the whole sequence always take the same path. */
#define TILED_MAX_CHANNELS 512         /* c_in + n_state */
#define TILE_BUDGET_FLOATS (96 * 1024) /* per thread: ~384 KiB, L2-resident */

/* ---------------------------------------------------------------------------------------- */
/* receptive fields                                                                          */

static int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static int64_t ceil_div(int64_t a, int64_t b) /* b > 0 */
{
    return -floor_div(-a, b);
}

struct jb_rf jb_rf_conv1d(struct jb_rf out, int k, int stride, int pad, int dil)
{
    /* y[t] reads x[s·t − p + d·j], j < k */
    return (struct jb_rf){ (int64_t)stride * out.lo - pad,
                           (int64_t)stride * out.hi - pad + (int64_t)dil * (k - 1) };
}

struct jb_rf jb_rf_conv_transpose1d(struct jb_rf out, int k, int stride, int pad)
{
    /* y[t] reads x[(t + p − j) / s] for the j < k that divide evenly */
    return (struct jb_rf){ ceil_div(out.lo + pad - k + 1, stride),
                           floor_div(out.hi + pad, stride) };
}

/* ---------------------------------------------------------------------------------------- */
/* building                                                                                  */

static struct jb_layer *push_layer(struct jb_convstack *s)
{
    if (s->n_layers == s->cap) {
        int cap            = s->cap ? 2 * s->cap : 16;
        struct jb_layer *l = realloc(s->layers, (size_t)cap * sizeof *l);
        if (!l) {
            jb_fail(JB_STATUS_ERR_NOMEM, "out of memory building a conv stack");
            return NULL;
        }
        s->layers = l;
        s->cap    = cap;
    }
    struct jb_layer *l = &s->layers[s->n_layers++];
    memset(l, 0, sizeof *l);
    return l;
}

static bool format_prefix(char *buf, size_t len, const char *fmt, va_list ap)
{
    int n = vsnprintf(buf, len, fmt, ap);
    if (n < 0 || (size_t)n >= len) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "tensor name prefix too long ('%s')", fmt);
        return false;
    }
    return true;
}

static bool add_conv(struct jb_convstack *s,
                     struct jb_weights *w,
                     enum jb_layer_kind kind,
                     int c_in,
                     int c_out,
                     int k,
                     int stride,
                     int pad,
                     const char *fmt,
                     va_list ap)
{
    char prefix[200];
    if (!format_prefix(prefix, sizeof prefix, fmt, ap)) return false;
    if (c_in < 1 || c_out < 1 || k < 1 || stride < 1 || pad < 0) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "%s: bad layer geometry (c_in %d, c_out %d, k %d, stride %d, pad %d)",
                prefix,
                c_in,
                c_out,
                k,
                stride,
                pad);
        return false;
    }
    struct jb_layer *l = push_layer(s);
    if (!l) return false;
    l->kind   = kind;
    l->c_in   = c_in;
    l->c_out  = c_out;
    l->k      = k;
    l->stride = stride;
    l->pad    = pad;
    l->dil    = 1;
    /* Conv1d weight is [Cout, Cin, k]; ConvTranspose1d weight is [Cin, Cout, k] (spec §2.4). */
    if (kind == JB_LAYER_CONV1D)
        l->w = jb_weights_get(w, JB_WANT_F32, JB_SHAPE3(c_out, c_in, k), "%s.weight", prefix);
    else
        l->w = jb_weights_get(w, JB_WANT_F32, JB_SHAPE3(c_in, c_out, k), "%s.weight", prefix);
    l->b = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(c_out), "%s.bias", prefix);
    return true;
}

bool jb_convstack_conv1d(struct jb_convstack *s,
                         struct jb_weights *w,
                         int c_in,
                         int c_out,
                         int k,
                         int stride,
                         int pad,
                         const char *prefix_fmt,
                         ...)
{
    va_list ap;
    va_start(ap, prefix_fmt);
    bool ok = add_conv(s, w, JB_LAYER_CONV1D, c_in, c_out, k, stride, pad, prefix_fmt, ap);
    va_end(ap);
    return ok;
}

bool jb_convstack_conv_transpose1d(struct jb_convstack *s,
                                   struct jb_weights *w,
                                   int c_in,
                                   int c_out,
                                   int k,
                                   int stride,
                                   int pad,
                                   const char *prefix_fmt,
                                   ...)
{
    va_list ap;
    va_start(ap, prefix_fmt);
    bool ok =
      add_conv(s, w, JB_LAYER_CONV_TRANSPOSE1D, c_in, c_out, k, stride, pad, prefix_fmt, ap);
    va_end(ap);
    return ok;
}

/* growth^e, or -1 if it does not fit comfortably in an int (hostile hyper-parameters). */
static int int_pow(int growth, int e)
{
    int64_t v = 1;
    for (int i = 0; i < e; i++) {
        v *= growth;
        if (v > (1 << 24)) return -1;
    }
    return (int)v;
}

bool jb_convstack_resnet1d(struct jb_convstack *s,
                           struct jb_weights *w,
                           const struct jb_resnet1d_params *p,
                           const char *prefix_fmt,
                           ...)
{
    char prefix[200];
    va_list ap;
    va_start(ap, prefix_fmt);
    bool ok = format_prefix(prefix, sizeof prefix, prefix_fmt, ap);
    va_end(ap);
    if (!ok) return false;

    int n_state = (int)(p->m_conv * (float)p->n_in); /* int(m_conv * n_in), as the reference */
    if (p->n_in < 1 || p->depth < 1 || p->depth > 4096 || n_state < 1 || p->growth < 1 ||
        p->cycle < 0) {
        jb_fail(
          JB_STATUS_ERR_MODEL,
          "%s: bad Resnet1D hyper-parameters (width %d, depth %d, m_conv %g, growth %d, cycle %d)",
          prefix,
          p->n_in,
          p->depth,
          (double)p->m_conv,
          p->growth,
          p->cycle);
        return false;
    }
    struct jb_layer *l = push_layer(s);
    if (!l) return false;
    l->kind      = JB_LAYER_RESNET1D;
    l->c_in      = p->n_in;
    l->c_out     = p->n_in;
    l->n_state   = n_state;
    l->res_scale = p->res_scale;
    l->blocks    = jb_calloc((size_t)p->depth, sizeof *l->blocks);
    if (!l->blocks) return false;
    l->n_blocks = p->depth;

    for (int r = 0; r < p->depth; r++) {
        /* Block r was built with depth index d (reversed stacks run the list backwards, and
         * the stored index is the position in the executed list). */
        int d   = p->reverse ? p->depth - 1 - r : r;
        int dil = int_pow(p->growth, p->cycle ? d % p->cycle : d);
        if (dil < 0) {
            jb_fail(JB_STATUS_ERR_MODEL,
                    "%s: dilation %d^%d is too large",
                    prefix,
                    p->growth,
                    p->cycle ? d % p->cycle : d);
            return false;
        }
        struct jb_resblock *b = &l->blocks[r];
        b->dil                = dil;
        b->w1                 = jb_weights_get(w,
                               JB_WANT_F32,
                               JB_SHAPE3(n_state, p->n_in, 3),
                               "%s.%s.%d.model.1.weight",
                               prefix,
                               p->blocks_name,
                               r);
        b->b1                 = jb_weights_get(
          w, JB_WANT_F32, JB_SHAPE1(n_state), "%s.%s.%d.model.1.bias", prefix, p->blocks_name, r);
        b->w2 = jb_weights_get(w,
                               JB_WANT_F32,
                               JB_SHAPE3(p->n_in, n_state, 1),
                               "%s.%s.%d.model.3.weight",
                               prefix,
                               p->blocks_name,
                               r);
        b->b2 = jb_weights_get(
          w, JB_WANT_F32, JB_SHAPE1(p->n_in), "%s.%s.%d.model.3.bias", prefix, p->blocks_name, r);
    }
    return true;
}

void jb_convstack_end_block(struct jb_convstack *s)
{
    if (s->n_layers > 0) s->layers[s->n_layers - 1].block_end = true;
}

void jb_convstack_free(struct jb_convstack *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_layers; i++)
        free(s->layers[i].blocks);
    free(s->layers);
    memset(s, 0, sizeof *s);
}

int jb_convstack_c_in(const struct jb_convstack *s)
{
    return s->n_layers ? s->layers[0].c_in : 0;
}

int jb_convstack_c_out(const struct jb_convstack *s)
{
    return s->n_layers ? s->layers[s->n_layers - 1].c_out : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* geometry                                                                                  */

static int64_t layer_out_len(const struct jb_layer *l, int64_t T)
{
    switch (l->kind) {
    case JB_LAYER_CONV1D: {
        int64_t num = T + 2 * (int64_t)l->pad - (int64_t)l->dil * (l->k - 1) - 1;
        return num < 0 ? 0 : num / l->stride + 1;
    }
    case JB_LAYER_CONV_TRANSPOSE1D:
        return (T - 1) * l->stride - 2 * (int64_t)l->pad + l->k;
    case JB_LAYER_RESNET1D:
        return T;
    }
    return -1;
}

int64_t jb_convstack_out_len(const struct jb_convstack *s, int64_t T)
{
    for (int i = 0; i < s->n_layers; i++) {
        if (T < 1) return -1;
        T = layer_out_len(&s->layers[i], T);
    }
    return T < 1 ? -1 : T;
}

struct jb_rf jb_convstack_rf(const struct jb_convstack *s, struct jb_rf out)
{
    for (int i = s->n_layers - 1; i >= 0; i--) {
        const struct jb_layer *l = &s->layers[i];
        switch (l->kind) {
        case JB_LAYER_CONV1D:
            out = jb_rf_conv1d(out, l->k, l->stride, l->pad, l->dil);
            break;
        case JB_LAYER_CONV_TRANSPOSE1D:
            out = jb_rf_conv_transpose1d(out, l->k, l->stride, l->pad);
            break;
        case JB_LAYER_RESNET1D:
            /* conv k3 (dilation d, pad d), then k1: the residual sum reads [lo − d, hi + d] */
            for (int r = l->n_blocks - 1; r >= 0; r--)
                out = jb_rf_conv1d(out, 3, 1, l->blocks[r].dil, l->blocks[r].dil);
            break;
        }
    }
    return out;
}

static bool resnet_is_tiled(const struct jb_layer *l)
{
    return l->c_in + l->n_state <= TILED_MAX_CHANNELS;
}

/* Columns per tile, and floats of one thread's tile memory: the three tap slices of relu(x)
 * (3·c_in), the inner activation (n_state) and the block output (c_in), then the kernels'
 * scratch for the two tile convolutions. */
static int64_t resnet_tile_cols(const struct jb_layer *l)
{
    int64_t t = TILE_BUDGET_FLOATS / (4 * (int64_t)l->c_in + l->n_state) / 16 * 16;
    return t < 16 ? 16 : t > 4096 ? 4096 : t;
}

static int64_t resnet_tile_act_floats(const struct jb_layer *l)
{
    return ((4 * (int64_t)l->c_in + l->n_state) * resnet_tile_cols(l) + 15) / 16 * 16;
}

static int64_t resnet_tile_floats(const struct jb_layer *l)
{
    int64_t tile = resnet_tile_cols(l);
    size_t s1    = jb_conv1d_scratch(l->c_in, 3 * tile, 3, 1, 0, (int)tile);
    size_t s2    = jb_conv1d_scratch(l->n_state, tile, 1, 1, 0, 1);
    return resnet_tile_act_floats(l) + (int64_t)((s1 > s2 ? s1 : s2) + 15) / 16 * 16;
}

static int n_threads_of(const struct jb_backend *be)
{
    return be && be->n_threads > 0 ? be->n_threads : 1;
}

static bool grow(size_t *m, int64_t a, int64_t b)
{
    size_t v;
    if (a < 0 || b < 0 || !jb_mul_size((size_t)a, (size_t)b, &v)) return false;
    if (v > *m) *m = v;
    return true;
}

bool jb_convstack_mem(const struct jb_convstack *s,
                      const struct jb_backend *be,
                      int64_t T,
                      struct jb_convstack_mem *m)
{
    memset(m, 0, sizeof *m);
    bool ok = T > 0;
    if (ok && s->n_layers) ok = grow(&m->act, s->layers[0].c_in, T); /* copy of x if needed */
    for (int i = 0; ok && i < s->n_layers; i++) {
        const struct jb_layer *l = &s->layers[i];
        int64_t to               = layer_out_len(l, T);
        ok = to > 0 && grow(&m->act, l->c_in, T) && grow(&m->act, l->c_out, to);
        switch (l->kind) {
        case JB_LAYER_CONV1D:
            if (ok) {
                size_t sc = jb_conv1d_scratch(l->c_in, T, l->k, l->stride, l->pad, l->dil);
                if (sc > m->scratch) m->scratch = sc;
            }
            break;
        case JB_LAYER_CONV_TRANSPOSE1D:
            /* pass the larger length: the kernel's scratch contract is per (Cout, T) */
            if (ok) {
                size_t sc = jb_conv_transpose1d_scratch(l->c_out, to > T ? to : T);
                if (sc > m->scratch) m->scratch = sc;
            }
            break;
        case JB_LAYER_RESNET1D:
            if (resnet_is_tiled(l)) {
                ok = ok && grow(&m->inner, resnet_tile_floats(l), n_threads_of(be));
                break;
            }
            ok = ok && grow(&m->inner, l->n_state, T);
            for (int r = 0; ok && r < l->n_blocks; r++) {
                int d     = l->blocks[r].dil;
                size_t s1 = jb_conv1d_scratch(l->c_in, T, 3, 1, d, d);
                size_t s2 = jb_conv1d_scratch(l->n_state, T, 1, 1, 0, 1);
                if (s1 > m->scratch) m->scratch = s1;
                if (s2 > m->scratch) m->scratch = s2;
            }
            break;
        }
        T = to;
    }
    if (!ok)
        jb_fail(
          JB_STATUS_ERR_NOMEM, "conv stack work size overflows for %lld frames", (long long)T);
    return ok;
}

/* ---------------------------------------------------------------------------------------- */
/* forward                                                                                   */

/* x (n_in, T) in place; a (n_in, T) and b (n_state, T) are work buffers. */
static void resnet1d_forward(struct jb_backend *be,
                             const struct jb_layer *l,
                             float *x,
                             int64_t T,
                             float *a,
                             float *b,
                             float *scratch)
{
    int64_t n = (int64_t)l->c_in * T;
    for (int r = 0; r < l->n_blocks; r++) {
        const struct jb_resblock *blk = &l->blocks[r];
        jb_relu(n, x, a);
        jb_conv1d(be, a, T, blk->w1, blk->b1, 1, blk->dil, blk->dil, b, scratch);
        jb_relu((int64_t)l->n_state * T, b, b);
        jb_conv1d(be, b, T, blk->w2, blk->b2, 1, 0, 1, a, scratch);
        /* residual: x + res_scale * h (the scale is exactly 1 in most stacks) */
        if (l->res_scale == 1.0f)
            jb_add(n, x, a, x);
        else
            jb_axpy(n, l->res_scale, a, x);
    }
}

/* dst[i] = relu(x[off + i]) for i < n, zero where off + i is outside [0, T). */
static void gather_relu(const float *x, int64_t T, int64_t off, int64_t n, float *dst)
{
    int64_t lo = off < 0 ? -off : 0;        /* first in-range i */
    int64_t hi = off + n > T ? T - off : n; /* end of the in-range i */
    if (hi < lo) hi = lo;
    for (int64_t i = 0; i < lo && i < n; i++)
        dst[i] = 0.0f;
    const float *src = x + off;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float v = src[i];
        dst[i]  = v < 0.0f ? 0.0f : v; /* NaN stays NaN, as torch.relu */
    }
    for (int64_t i = hi; i < n; i++)
        dst[i] = 0.0f;
}

/* Tile `it` of one ResConv1DBlock, y = x + ρ·conv1(relu(conv3_d(relu(x)))). For a tile of n
 * columns starting at t0 the dilated conv reads relu(x) at t0 + i + (j − 1)·d, j < 3: the three
 * slices are gathered side by side, so the kernel runs with dilation n and no padding (the zero
 * padding is in the gathered slices) and computes exactly the sums of the whole-sequence conv.
 * mem: this thread's resnet_tile_floats(l). */
static void resblock_tile(struct jb_backend *be,
                          const struct jb_layer *l,
                          const struct jb_resblock *blk,
                          const float *x,
                          float *y,
                          int64_t T,
                          int64_t it,
                          float *mem)
{
    const int64_t C = l->c_in, S = l->n_state, d = blk->dil, tile = resnet_tile_cols(l);
    const int64_t t0 = it * tile, n = T - t0 < tile ? T - t0 : tile;
    float *a       = mem;                             /* (C, 3n): tap slices of relu(x) */
    float *b       = a + 3 * C * tile;                /* (S, n) */
    float *h       = b + S * tile;                    /* (C, n) */
    float *scratch = mem + resnet_tile_act_floats(l); /* kernel scratch */
    for (int64_t c = 0; c < C; c++)
        for (int j = 0; j < 3; j++)
            gather_relu(x + c * T, T, t0 + (j - 1) * d, n, a + (c * 3 + j) * n);
    jb_conv1d(be, a, 3 * n, blk->w1, blk->b1, 1, 0, (int)n, b, scratch);
#pragma omp simd
    for (int64_t i = 0; i < S * n; i++)
        b[i] = b[i] < 0.0f ? 0.0f : b[i];
    jb_conv1d(be, b, n, blk->w2, blk->b2, 1, 0, 1, h, scratch);
    const float rho = l->res_scale;
    for (int64_t c = 0; c < C; c++) {
        const float *xc = x + c * T + t0, *hc = h + c * n;
        float *yc = y + c * T + t0;
        if (rho == 1.0f) {
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                yc[i] = xc[i] + hc[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                yc[i] = xc[i] + rho * hc[i];
        }
    }
}

struct tiles_task {
    struct jb_backend *be;
    const struct jb_layer *l;
    const struct jb_resblock *blk;
    const float *x;
    float *y;
    int64_t T;
    float *tiles;
    size_t per;
};

static void resblock_tiles(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct tiles_task *t = arg;
    for (int64_t it = i0; it < i1; it++)
        resblock_tile(t->be, t->l, t->blk, t->x, t->y, t->T, it, t->tiles + (size_t)slot * t->per);
}

/* One block over all tiles; x and y (c_in, T) must not overlap. The tiles are shared out over the
 * backend's pool; the kernels, called from inside its tasks, run on the calling thread. */
static void resblock_tiled(struct jb_backend *be,
                           const struct jb_layer *l,
                           const struct jb_resblock *blk,
                           const float *x,
                           float *y,
                           int64_t T,
                           float *tiles)
{
    const int64_t tile = resnet_tile_cols(l), n_tiles = (T + tile - 1) / tile;
    struct tiles_task t = { be, l, blk, x, y, T, tiles, (size_t)resnet_tile_floats(l) };
    int nt              = n_threads_of(be);
    if (nt > n_tiles) nt = (int)n_tiles;
    /* one tile per chunk at most 4 chunks per thread: tiles are big enough to share */
    jb_pool_for(jb_cpu_of(be)->pool, n_tiles, nt > 1 ? 1 : n_tiles, resblock_tiles, &t);
}

enum jb_status jb_convstack_forward(struct jb_backend *be,
                                    const struct jb_convstack *s,
                                    const float *x,
                                    int64_t T,
                                    float *y,
                                    const struct jb_convstack_work *work,
                                    const struct jb_convstack_progress *prog,
                                    float **result)
{
    /* cur is the current activation; cur_buf is non-NULL when it lives in work->act. */
    const float *cur = x;
    float *cur_buf   = x == work->act[0] ? work->act[0] : x == work->act[1] ? work->act[1] : NULL;
    int n_ends = 0, ends = 0;
    for (int i = 0; i < s->n_layers; i++)
        n_ends += s->layers[i].block_end;

    for (int i = 0; i < s->n_layers; i++) {
        const struct jb_layer *l = &s->layers[i];
        bool last                = i == s->n_layers - 1;
        float *other             = cur_buf == work->act[0] ? work->act[1] : work->act[0];
        int64_t to               = layer_out_len(l, T);

        switch (l->kind) {
        case JB_LAYER_CONV1D: {
            float *dst = last && y ? y : other;
            jb_conv1d(be, cur, T, l->w, l->b, l->stride, l->pad, l->dil, dst, work->scratch);
            cur = cur_buf = dst;
            break;
        }
        case JB_LAYER_CONV_TRANSPOSE1D: {
            float *dst = last && y ? y : other;
            jb_conv_transpose1d(be, cur, T, l->w, l->b, l->stride, l->pad, dst, work->scratch);
            cur = cur_buf = dst;
            break;
        }
        case JB_LAYER_RESNET1D:
            if (resnet_is_tiled(l)) {
                /* block by block between the two activation buffers */
                for (int r = 0; r < l->n_blocks; r++) {
                    resblock_tiled(be, l, &l->blocks[r], cur, other, T, work->inner);
                    cur = cur_buf = other;
                    other         = cur_buf == work->act[0] ? work->act[1] : work->act[0];
                }
                if (last && y) {
                    memcpy(y, cur_buf, (size_t)l->c_out * (size_t)T * sizeof(float));
                    cur = cur_buf = y;
                }
                break;
            }
            if (!cur_buf) { /* in place: never write into the caller's input */
                memcpy(other, cur, (size_t)l->c_in * (size_t)T * sizeof(float));
                cur = cur_buf = other;
                other         = cur_buf == work->act[0] ? work->act[1] : work->act[0];
            }
            resnet1d_forward(be, l, cur_buf, T, other, work->inner, work->scratch);
            if (last && y) {
                memcpy(y, cur_buf, (size_t)l->c_out * (size_t)T * sizeof(float));
                cur = cur_buf = y;
            }
            break;
        }
        T = to;

        if (l->block_end && prog) {
            ends++;
            if (jb_should_stop(prog->cb))
                return jb_fail(JB_STATUS_ERR_CANCELLED, "%s cancelled", prog->stage);
            jb_progress_report(prog->cb,
                               prog->stage,
                               prog->level,
                               prog->done + prog->units * ends / (n_ends ? n_ends : 1),
                               prog->total,
                               prog->t_start);
        }
    }
    if (result) *result = cur_buf;
    return JB_STATUS_OK;
}

void jb_transpose_f32(const float *src, int64_t rows, int64_t cols, float *dst)
{
    enum { TILE = 32 }; /* cache blocking: both sides touch whole lines */
    for (int64_t r0 = 0; r0 < rows; r0 += TILE) {
        int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
        for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
            int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    dst[c * rows + r] = src[r * cols + c];
        }
    }
}
