/*
 * nn/resnet.c - Resnet1D and the conv stacks built from it (jukebox-spec §3.2, §3.7).
 *
 * A stack is a flat list of layers; the encoders, decoders and the audio conditioner differ only
 * in which layers they append. Geometry (lengths, memory, receptive fields) is derived from the
 * same list the forward pass runs, so the chunking margins cannot drift from the network.
 */
#include "nn/resnet.h"

#include <stdio.h>
#include <string.h>

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
                size_t sc =
                  jb_conv1d_scratch(l->c_in, l->c_out, T, l->k, l->stride, l->pad, l->dil);
                if (sc > m->scratch) m->scratch = sc;
            }
            break;
        case JB_LAYER_CONV_TRANSPOSE1D:
            if (ok) {
                size_t sc =
                  jb_conv_transpose1d_scratch(l->c_in, l->c_out, T, l->k, l->stride, l->pad);
                if (sc > m->scratch) m->scratch = sc;
            }
            break;
        case JB_LAYER_RESNET1D:
            for (int r = 0; ok && r < l->n_blocks; r++) {
                size_t wk = jb_resblock_work(be, l->blocks[r].w1, T);
                ok        = wk > 0;
                if (wk > m->inner) m->inner = wk;
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

enum jb_status jb_convstack_forward(struct jb_backend *be,
                                    const struct jb_convstack *s,
                                    const float *x,
                                    int64_t T,
                                    int64_t origin,
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
            origin /= l->stride; /* whole: chunks start at multiples of the hop */
            break;
        }
        case JB_LAYER_CONV_TRANSPOSE1D: {
            float *dst = last && y ? y : other;
            jb_conv_transpose1d(be, cur, T, l->w, l->b, l->stride, l->pad, dst, work->scratch);
            cur = cur_buf = dst;
            origin *= l->stride;
            break;
        }
        case JB_LAYER_RESNET1D:
            /* block by block between the two activation buffers (the last into y) */
            for (int r = 0; r < l->n_blocks; r++) {
                const struct jb_resblock *blk = &l->blocks[r];
                float *dst                    = last && y && r == l->n_blocks - 1 ? y : other;
                jb_resblock(be,
                            cur,
                            dst,
                            T,
                            origin,
                            blk->w1,
                            blk->b1,
                            blk->dil,
                            blk->w2,
                            blk->b2,
                            l->res_scale,
                            work->inner);
                cur = cur_buf = dst;
                other         = cur_buf == work->act[0] ? work->act[1] : work->act[0];
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
