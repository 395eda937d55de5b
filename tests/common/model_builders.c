/* tests/common/model_builders.c - Jukebox state-dict layouts (see model_builders.h). */
#include "model_builders.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

/* One tensor named from a format; false once the sink refused one. */
static bool add(struct tc_sink s,
                enum tc_init init,
                float scale,
                int n_dims,
                const int64_t *shape,
                const char *fmt,
                ...) JB_PRINTF(6, 7);

static bool add(struct tc_sink s,
                enum tc_init init,
                float scale,
                int n_dims,
                const int64_t *shape,
                const char *fmt,
                ...)
{
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return s.add(s.ctx, name, n_dims, shape, init, scale);
}

#define S1(a)                                                                                      \
    1, (const int64_t[])                                                                           \
    {                                                                                              \
        (a)                                                                                        \
    }
#define S2(a, b)                                                                                   \
    2, (const int64_t[])                                                                           \
    {                                                                                              \
        (a), (b)                                                                                   \
    }
#define S3(a, b, c)                                                                                \
    3, (const int64_t[])                                                                           \
    {                                                                                              \
        (a), (b), (c)                                                                              \
    }

/* Conv1d weight [cout, cin, k] of scale gain/sqrt(fan-in), bias 0.01. */
static bool conv(struct tc_sink s, int64_t cout, int64_t cin, int64_t k, float gain, const char *p)
{
    return add(
             s, TC_INIT_RANDOM, gain / sqrtf((float)(cin * k)), S3(cout, cin, k), "%s.weight", p) &&
           add(s, TC_INIT_RANDOM, 0.01f, S1(cout), "%s.bias", p);
}

/* ConvTranspose1d weight [cin, cout, k] (stride `stride`: each output sees cin*k/stride inputs). */
static bool conv_t(struct tc_sink s,
                   int64_t cin,
                   int64_t cout,
                   int64_t k,
                   int64_t stride,
                   const char *p)
{
    return add(s,
               TC_INIT_RANDOM,
               1.0f / sqrtf((float)(cin * k / stride)),
               S3(cin, cout, k),
               "%s.weight",
               p) &&
           add(s, TC_INIT_RANDOM, 0.01f, S1(cout), "%s.bias", p);
}

/* Resnet1D: `depth` blocks of conv3 (width -> hidden) and conv1 (hidden -> width), gain 0.5. */
static bool resnet(struct tc_sink s,
                   int depth,
                   int64_t width,
                   float m_conv,
                   const char *prefix,
                   const char *blocks)
{
    const int64_t hidden = (int64_t)(m_conv * (float)width);
    char p[200];
    bool ok = true;
    for (int r = 0; ok && r < depth; r++) {
        snprintf(p, sizeof p, "%s.%s.%d.model.1", prefix, blocks, r);
        ok = conv(s, hidden, width, 3, 0.5f, p);
        snprintf(p, sizeof p, "%s.%s.%d.model.3", prefix, blocks, r);
        ok = ok && conv(s, width, hidden, 1, 0.5f, p);
    }
    return ok;
}

bool tc_build_vqvae(struct tc_sink s, const struct jb_vqvae_hparams *hp)
{
    const int64_t E = hp->emb_width;
    char p[200];
    bool ok = true;
    for (int L = 0; ok && L < hp->levels; L++) {
        const int64_t W = jb_vqvae_hp_width(hp, L);
        const int D     = jb_vqvae_hp_depth(hp, L);
        for (int j = 0; ok && j <= L; j++) {
            const int64_t k = 2 * hp->strides_t[j];
            for (int i = 0; ok && i < hp->downs_t[j]; i++) {
                const int64_t cin = i ? W : j ? E : 1;
                snprintf(p, sizeof p, "encoders.%d.level_blocks.%d.model.%d.0", L, j, i);
                ok = conv(s, W, cin, k, 1.0f, p);
                snprintf(p, sizeof p, "encoders.%d.level_blocks.%d.model.%d.1", L, j, i);
                ok = ok && resnet(s, D, W, hp->m_conv, p, "model");
            }
            snprintf(p, sizeof p, "encoders.%d.level_blocks.%d.model.%d", L, j, hp->downs_t[j]);
            ok = ok && conv(s, E, W, 3, 1.0f, p);
        }
        for (int j = 0; ok && j <= L; j++) {
            const int64_t k = 2 * hp->strides_t[j];
            const int n     = hp->downs_t[j];
            snprintf(p, sizeof p, "decoders.%d.level_blocks.%d.model.0", L, j);
            ok = conv(s, W, E, 3, 1.0f, p);
            for (int i = 0; ok && i < n; i++) {
                snprintf(p, sizeof p, "decoders.%d.level_blocks.%d.model.%d.0", L, j, i + 1);
                ok = resnet(s, D, W, hp->m_conv, p, "model");
                snprintf(p, sizeof p, "decoders.%d.level_blocks.%d.model.%d.1", L, j, i + 1);
                ok = ok && conv_t(s, W, i == n - 1 ? E : W, k, hp->strides_t[j], p);
            }
        }
        snprintf(p, sizeof p, "decoders.%d.out", L);
        ok = ok && conv(s, 1, E, 3, 0.3f, p);
    }
    for (int L = 0; ok && L < hp->levels; L++)
        ok = add(s, TC_INIT_RANDOM, 1.0f, S2(hp->l_bins, E), "bottleneck.level_blocks.%d.k", L);
    return ok;
}

/* The ResAttnBlocks of one transformer (Conv1D weights [in, out]). */
static bool transformer(struct tc_sink s,
                        const struct jb_transformer_hparams *tr,
                        const char *prefix)
{
    const int64_t w = tr->width, ns = (int64_t)(tr->m_attn * (float)tr->width);
    const int64_t hid = (int64_t)(tr->m_mlp * (float)tr->width);
    const float sc    = 0.5f / sqrtf((float)w);
    bool ok           = true;
    for (int d = 0; ok && d < tr->depth; d++) {
#define B(n) "%s.transformer._attn_mods.%d." n, prefix, d
        ok = add(s, TC_INIT_RANDOM, sc, S2(w, 3 * ns), B("attn.c_attn.w")) &&
             add(s, TC_INIT_ZERO, 0, S1(3 * ns), B("attn.c_attn.b")) &&
             add(s, TC_INIT_RANDOM, sc, S2(ns, w), B("attn.c_proj.w")) &&
             add(s, TC_INIT_ZERO, 0, S1(w), B("attn.c_proj.b")) &&
             add(s, TC_INIT_ONE, 0, S1(w), B("ln_0.weight")) &&
             add(s, TC_INIT_ZERO, 0, S1(w), B("ln_0.bias")) &&
             add(s, TC_INIT_RANDOM, sc, S2(w, hid), B("mlp.c_fc.w")) &&
             add(s, TC_INIT_ZERO, 0, S1(hid), B("mlp.c_fc.b")) &&
             add(s, TC_INIT_RANDOM, sc, S2(hid, w), B("mlp.c_proj.w")) &&
             add(s, TC_INIT_ZERO, 0, S1(w), B("mlp.c_proj.b")) &&
             add(s, TC_INIT_ONE, 0, S1(w), B("ln_1.weight")) &&
             add(s, TC_INIT_ZERO, 0, S1(w), B("ln_1.bias"));
#undef B
    }
    return ok;
}

bool tc_build_prior(struct tc_sink s, const struct jb_prior_hparams *hp, bool conditioner_only)
{
    const int64_t w = hp->tr.width;
    bool ok =
      add(s, TC_INIT_RANDOM, 0.02f, S2(hp->n_genres, w), "y_emb.bow_genre_emb.emb.weight") &&
      add(s, TC_INIT_RANDOM, 0.02f, S2(hp->n_artists, w), "y_emb.artist_emb.emb.weight");
    if (ok && hp->timing)
        ok =
          add(s, TC_INIT_RANDOM, 0.01f, S2(hp->t_bins, w), "y_emb.total_length_emb.emb.weight") &&
          add(s, TC_INIT_RANDOM, 0.01f, S2(hp->t_bins, w), "y_emb.absolute_pos_emb.emb.weight") &&
          add(s, TC_INIT_RANDOM, 0.01f, S2(hp->t_bins, w), "y_emb.relative_pos_emb.emb.weight");
    if (ok && hp->variant == JB_PRIOR_UPSAMPLER) {
        const int64_t cw = hp->cond_width;
        char p[200];
        ok = add(s, TC_INIT_RANDOM, 0.02f, S2(hp->bins, w), "conditioner_blocks.0.x_emb.weight") &&
             conv(s, cw, w, 3, 1.0f, "conditioner_blocks.0.cond.model.0");
        for (int i = 0; ok && i < hp->cond_downs; i++) {
            snprintf(p, sizeof p, "conditioner_blocks.0.cond.model.%d.0", i + 1);
            ok = resnet(s, hp->cond_depth, cw, hp->cond_m_conv, p, "blocks");
            snprintf(p, sizeof p, "conditioner_blocks.0.cond.model.%d.1", i + 1);
            ok =
              ok &&
              conv_t(
                s, cw, i == hp->cond_downs - 1 ? w : cw, 2 * hp->cond_stride, hp->cond_stride, p);
        }
        ok = ok && add(s, TC_INIT_ONE, 0, S1(w), "conditioner_blocks.0.ln.weight") &&
             add(s, TC_INIT_ZERO, 0, S1(w), "conditioner_blocks.0.ln.bias");
    }
    if (!ok || conditioner_only) return ok;
    ok = add(s, TC_INIT_RANDOM, 0.02f, S2(hp->bins, w), "prior.x_emb.weight") &&
         add(s, TC_INIT_RANDOM, 0.01f, S2(hp->n_ctx, w), "prior.pos_emb.pos_emb") &&
         transformer(s, &hp->tr, "prior");
    if (ok && hp->merged_decoder)
        ok = add(s, TC_INIT_RANDOM, 0.05f, S2(hp->bins, w), "prior.x_out.weight");
    return ok;
}

/* uniform in [-a, a) has standard deviation a/sqrt(3): scale the range so that `scale` is the
 * standard deviation, as for mkdefault's normal values */
#define SQRT3 1.7320508f

static bool weights_add(void *ctx,
                        const char *name,
                        int n_dims,
                        const int64_t *shape,
                        enum tc_init init,
                        float scale)
{
    struct tc_weights *w = ctx;
    struct jb_tensor *t =
      init == TC_INIT_ZERO ? tc_weights_add_const(w, n_dims, shape, 0.0f, "%s", name)
      : init == TC_INIT_ONE
        ? tc_weights_add(w, JB_DTYPE_F32, n_dims, shape, 0.01f * SQRT3, "%s", name)
        : tc_weights_add(w, JB_DTYPE_F32, n_dims, shape, scale * SQRT3, "%s", name);
    if (t && init == TC_INIT_ONE) {
        float *f = t->data;
        for (int64_t i = 0; i < jb_tensor_nelements(t); i++)
            f[i] += 1.0f;
    }
    return t != NULL;
}

struct tc_sink tc_weights_sink(struct tc_weights *w)
{
    return (struct tc_sink){ weights_add, w };
}
