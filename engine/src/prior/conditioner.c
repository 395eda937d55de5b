/*
 * prior/conditioner.c - the upsamplers' audio conditioner (jukebox-spec §4.3), a conv stack
 * (nn/resnet.h) between an embedding lookup and a LayerNorm.
 */
#include "prior/conditioner.h"

#include "nn/resnet.h"

#include <math.h>
#include <string.h>

struct jb_upsampler_cond {
    struct jb_backend *be;
    int32_t bins, width; /* codebook size, prior_width */
    int64_t n_ctx, n_upper;
    const struct jb_tensor *x_emb; /* [bins, width] */
    struct jb_convstack cond;
    const struct jb_tensor *ln_w, *ln_b; /* [width] */

    void *mem; /* work memory for one window (backend) */
    struct jb_convstack_work work;
    int32_t *ids; /* the window's upper codes (backend) */
};

struct jb_upsampler_cond *jb_upsampler_cond_init(const struct jb_prior_hparams *hp,
                                                 struct jb_weights *w,
                                                 struct jb_backend *be)
{
    int64_t n_upper = hp->n_ctx;
    bool ok         = hp->n_ctx > 0 && hp->bins > 0 && hp->tr.width > 0 && hp->cond_width > 0 &&
              hp->cond_depth > 0 && hp->cond_downs > 0 && hp->cond_downs <= 16 &&
              hp->cond_stride >= 2 && hp->cond_stride % 2 == 0 && hp->cond_m_conv > 0.0f &&
              hp->cond_dilation_growth_rate > 0 && hp->cond_dilation_cycle >= 0;
    for (int i = 0; ok && i < hp->cond_downs; i++) {
        ok = n_upper % hp->cond_stride == 0;
        n_upper /= hp->cond_stride;
    }
    if (!ok) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "upsampler conditioner: bad hyper-parameters (n_ctx %d, bins %d, width %d, "
                "cond_width %d, cond_depth %d, cond_downs %d, cond_stride %d: n_ctx must be a "
                "multiple of cond_stride^cond_downs, strides even)",
                hp->n_ctx,
                hp->bins,
                hp->tr.width,
                hp->cond_width,
                hp->cond_depth,
                hp->cond_downs,
                hp->cond_stride);
        return NULL;
    }
    if (!be || !w) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "upsampler conditioner: no backend or weights");
        return NULL;
    }

    struct jb_upsampler_cond *c = jb_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->be      = be;
    c->bins    = hp->bins;
    c->width   = hp->tr.width;
    c->n_ctx   = hp->n_ctx;
    c->n_upper = n_upper;

    const int W = hp->tr.width, CW = hp->cond_width, s = hp->cond_stride;
    struct jb_resnet1d_params rp = {
        .n_in    = CW,
        .depth   = hp->cond_depth,
        .m_conv  = hp->cond_m_conv,
        .growth  = hp->cond_dilation_growth_rate,
        .cycle   = hp->cond_dilation_cycle,
        .reverse = false, /* the conditioner does not reverse its dilations */
        /* the reference multiplies by the Python float 1/sqrt(depth), cast to fp32 */
        .res_scale   = hp->cond_res_scale ? (float)(1.0 / sqrt((double)hp->cond_depth)) : 1.0f,
        .blocks_name = "blocks", /* cond_c_res = 1: ModuleList 'blocks' (spec §2.7) */
    };
    c->x_emb =
      jb_weights_get(w, JB_WANT_F32, JB_SHAPE2(hp->bins, W), "conditioner_blocks.0.x_emb.weight");
    if (!jb_convstack_conv1d(&c->cond, w, W, CW, 3, 1, 1, "conditioner_blocks.0.cond.model.0"))
        goto fail;
    for (int i = 0; i < hp->cond_downs; i++) {
        int c_out = i == hp->cond_downs - 1 ? W : CW;
        if (!jb_convstack_resnet1d(
              &c->cond, w, &rp, "conditioner_blocks.0.cond.model.%d.0", i + 1) ||
            !jb_convstack_conv_transpose1d(&c->cond,
                                           w,
                                           CW,
                                           c_out,
                                           2 * s,
                                           s,
                                           s / 2,
                                           "conditioner_blocks.0.cond.model.%d.1",
                                           i + 1))
            goto fail;
    }
    c->ln_w = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "conditioner_blocks.0.ln.weight");
    c->ln_b = jb_weights_get(w, JB_WANT_F32, JB_SHAPE1(W), "conditioner_blocks.0.ln.bias");
    if (!jb_weights_ok(w)) goto fail;
    if (jb_convstack_out_len(&c->cond, n_upper) != hp->n_ctx) {
        jb_fail(JB_STATUS_ERR_MODEL,
                "upsampler conditioner: %lld codes do not upsample to n_ctx %d",
                (long long)n_upper,
                hp->n_ctx);
        goto fail;
    }

    /* Work memory for one window, reserved once: the embedding staging (n_upper, W) fits in
     * an activation buffer (it holds the first conv's input). The resblocks' work and the
     * convolutions' scratch share one buffer (jb_convstack_work): at the released width both
     * hold Winograd's transformed weights and tiles: ~82 MB (a block at 4096 steps) and ~108 MB
     * (the 1920 -> 1024 input conv, F(6,3)'s eight products). */
    struct jb_convstack_mem m;
    if (!jb_convstack_mem(&c->cond, be, n_upper, &m)) goto fail;
    size_t act   = (m.act + 15) & ~(size_t)15;
    size_t inner = ((m.inner > m.scratch ? m.inner : m.scratch) + 15) & ~(size_t)15;
    size_t total;
    if (!jb_add_size(2 * act, inner, &total) || !jb_add_size(total, (size_t)n_upper, &total) ||
        !jb_mul_size(total, sizeof(float), &total)) {
        jb_fail(JB_STATUS_ERR_NOMEM, "upsampler conditioner: work size overflows");
        goto fail;
    }
    float *p = jb_backend_alloc(be, total);
    if (!p) goto fail;
    c->mem          = p;
    c->work.act[0]  = p;
    c->work.act[1]  = p + act;
    c->work.inner   = p + 2 * act;
    c->work.scratch = c->work.inner;
    c->ids          = (int32_t *)(p + 2 * act + inner); /* int32 in float slots */
    return c;

fail:
    jb_upsampler_cond_free(c);
    return NULL;
}

void jb_upsampler_cond_free(struct jb_upsampler_cond *c)
{
    if (!c) return;
    if (c->mem) jb_backend_free_buffer(c->be, c->mem);
    jb_convstack_free(&c->cond);
    free(c);
}

int64_t jb_upsampler_cond_n_upper(const struct jb_upsampler_cond *c)
{
    return c->n_upper;
}

enum jb_status jb_upsampler_cond_forward(struct jb_upsampler_cond *c,
                                         const int32_t *z_upper,
                                         float *x_cond)
{
    if (!c || !z_upper || !x_cond)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: NULL argument", __func__);
    for (int64_t i = 0; i < c->n_upper; i++) {
        if (z_upper[i] < 0 || z_upper[i] >= c->bins)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "%s: upper-level code %d at position %lld is out of range [0, %d)",
                           __func__,
                           z_upper[i],
                           (long long)i,
                           c->bins);
    }
    /* u = x_emb[z], (T_u, W) -> (W, T_u) */
    jb_backend_set(c->be, c->ids, z_upper, (size_t)c->n_upper * sizeof *z_upper);
    jb_embedding(c->be, c->x_emb, c->ids, c->n_upper, c->work.act[1]);
    jb_transpose(c->be, c->work.act[1], c->n_upper, c->width, c->work.act[0]);

    float *u          = NULL; /* (W, n_ctx) */
    enum jb_status st = jb_convstack_forward(
      c->be, &c->cond, c->work.act[0], c->n_upper, 0, NULL, &c->work, NULL, &u);
    if (st != JB_STATUS_OK) return st;

    /* (W, n_ctx) -> (n_ctx, W), then LayerNorm over the width */
    float *xc = u == c->work.act[0] ? c->work.act[1] : c->work.act[0];
    jb_transpose(c->be, u, c->width, c->n_ctx, xc);
    jb_layernorm(c->be, c->n_ctx, c->width, xc, c->ln_w, c->ln_b, 1e-5f, xc);
    jb_backend_get(c->be, x_cond, xc, (size_t)(c->n_ctx * c->width) * sizeof *x_cond);
    return JB_STATUS_OK;
}
