/* format/meta.c - field tables for hyper-parameters stored as GGUF metadata. */
#include "format/meta.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

enum field_type { F_I32, F_F32, F_F64, F_BOOL, F_I32x3 };

struct field {
    const char *key;
    enum field_type type;
    size_t offset;
    int64_t min, max; /* integer range (ignored for floats/bools) */
};

#define VQ(f) offsetof(struct jb_vqvae_hparams, f)
static const struct field vqvae_fields[] = {
    { "levels", F_I32, VQ(levels), 1, JB_MAX_LEVELS },
    { "downs_t", F_I32x3, VQ(downs_t), 0, 8 },
    { "strides_t", F_I32x3, VQ(strides_t), 1, 8 },
    { "multipliers", F_I32x3, VQ(multipliers), 1, 16 },
    { "width", F_I32, VQ(width), 1, 4096 },
    { "depth", F_I32, VQ(depth), 0, 64 },
    { "emb_width", F_I32, VQ(emb_width), 1, 4096 },
    { "l_bins", F_I32, VQ(l_bins), 1, 1 << 20 },
    { "dilation_growth_rate", F_I32, VQ(dilation_growth_rate), 1, 16 },
    { "dilation_cycle", F_I32, VQ(dilation_cycle), 0, 64 },
    { "reverse_decoder_dilation", F_BOOL, VQ(reverse_decoder_dilation), 0, 0 },
    { "m_conv", F_F32, VQ(m_conv), 0, 0 },
};

#define PR(f) offsetof(struct jb_prior_hparams, f)
static const struct field prior_fields[] = {
    { "variant", F_I32, PR(variant), 0, 3 },
    { "level", F_I32, PR(level), 0, JB_MAX_LEVELS - 1 },
    { "n_ctx", F_I32, PR(n_ctx), 1, 1 << 20 },
    { "bins", F_I32, PR(bins), 1, 1 << 20 },
    { "raw_to_tokens", F_I32, PR(raw_to_tokens), 1, 1 << 16 },
    { "width", F_I32, PR(tr.width), 1, 1 << 16 },
    { "depth", F_I32, PR(tr.depth), 1, 1024 },
    { "heads", F_I32, PR(tr.heads), 1, 1024 },
    { "m_attn", F_F32, PR(tr.m_attn), 0, 0 },
    { "m_mlp", F_F32, PR(tr.m_mlp), 0, 0 },
    { "attn_order", F_I32, PR(tr.attn_order), 0, 12 },
    { "blocks", F_I32, PR(tr.blocks), 1, 1 << 20 },
    { "seq_len", F_I32, PR(tr.seq_len), 1, 1 << 21 },
    { "merged_decoder", F_BOOL, PR(merged_decoder), 0, 0 },
    { "fp16_params", F_BOOL, PR(fp16_params), 0, 0 },
    { "labels_v3", F_BOOL, PR(labels_v3), 0, 0 },
    { "n_genres", F_I32, PR(n_genres), 1, 1 << 20 },
    { "n_artists", F_I32, PR(n_artists), 1, 1 << 20 },
    { "max_bow_genre_size", F_I32, PR(max_bow_genre_size), 1, 64 },
    { "timing", F_BOOL, PR(timing), 0, 0 },
    { "t_bins", F_I32, PR(t_bins), 1, 1 << 16 },
    { "min_duration", F_F64, PR(min_duration), 0, 0 },
    { "max_duration", F_F64, PR(max_duration), 0, 0 },
    { "sr", F_I32, PR(sr), 1, 1 << 20 },
    { "n_tokens", F_I32, PR(n_tokens), 0, 1 << 16 },
    { "n_vocab", F_I32, PR(n_vocab), 0, 1 << 16 },
    { "cond_width", F_I32, PR(cond_width), 0, 1 << 16 },
    { "cond_depth", F_I32, PR(cond_depth), 0, 1024 },
    { "cond_dilation_growth_rate", F_I32, PR(cond_dilation_growth_rate), 0, 16 },
    { "cond_dilation_cycle", F_I32, PR(cond_dilation_cycle), 0, 64 },
    { "cond_res_scale", F_BOOL, PR(cond_res_scale), 0, 0 },
    { "cond_m_conv", F_F32, PR(cond_m_conv), 0, 0 },
    { "cond_downs", F_I32, PR(cond_downs), 0, 16 },
    { "cond_stride", F_I32, PR(cond_stride), 0, 16 },
    { "prime.width", F_I32, PR(prime.width), 0, 1 << 16 },
    { "prime.depth", F_I32, PR(prime.depth), 0, 1024 },
    { "prime.heads", F_I32, PR(prime.heads), 0, 1024 },
    { "prime.m_attn", F_F32, PR(prime.m_attn), 0, 0 },
    { "prime.m_mlp", F_F32, PR(prime.m_mlp), 0, 0 },
    { "prime.attn_order", F_I32, PR(prime.attn_order), 0, 12 },
    { "prime.blocks", F_I32, PR(prime.blocks), 0, 1 << 20 },
    { "prime.seq_len", F_I32, PR(prime.seq_len), 0, 1 << 20 },
    { "alignment_layer", F_I32, PR(alignment_layer), -1, 1024 },
    { "alignment_head", F_I32, PR(alignment_head), -1, 1024 },
};

#define N_FIELDS(a) (sizeof(a) / sizeof((a)[0]))

static void write_fields(struct jb_gguf_writer *w,
                         const char *prefix,
                         const struct field *fields,
                         size_t n,
                         const void *hp)
{
    char key[128];
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)hp + fields[i].offset;
        snprintf(key, sizeof key, "%s.%s", prefix, fields[i].key);
        switch (fields[i].type) {
        case F_I32: {
            int32_t v;
            memcpy(&v, p, sizeof v);
            jb_gguf_writer_set_i32(w, key, v);
            break;
        }
        case F_F32: {
            float v;
            memcpy(&v, p, sizeof v);
            jb_gguf_writer_set_f32(w, key, v);
            break;
        }
        case F_F64: {
            double v;
            memcpy(&v, p, sizeof v);
            jb_gguf_writer_set_f64(w, key, v);
            break;
        }
        case F_BOOL: {
            bool v;
            memcpy(&v, p, sizeof v);
            jb_gguf_writer_set_bool(w, key, v);
            break;
        }
        case F_I32x3: {
            int32_t v[3];
            memcpy(v, p, sizeof v);
            jb_gguf_writer_set_arr_i32(w, key, v, 3);
            break;
        }
        }
    }
}

static enum jb_status read_fields(const struct jb_gguf *g,
                                  const char *prefix,
                                  const struct field *fields,
                                  size_t n,
                                  void *hp)
{
    char key[128];
    for (size_t i = 0; i < n; i++) {
        char *p = (char *)hp + fields[i].offset;
        snprintf(key, sizeof key, "%s.%s", prefix, fields[i].key);
        int64_t iv;
        double fv;
        bool bv;
        switch (fields[i].type) {
        case F_I32:
            if (!jb_gguf_get_int(g, key, &iv))
                return jb_fail(JB_STATUS_ERR_MODEL, "model file lacks integer metadata '%s'", key);
            if (iv < fields[i].min || iv > fields[i].max)
                return jb_fail(JB_STATUS_ERR_MODEL,
                               "metadata '%s' = %lld is out of range [%lld, %lld]",
                               key,
                               (long long)iv,
                               (long long)fields[i].min,
                               (long long)fields[i].max);
            {
                int32_t v = (int32_t)iv;
                memcpy(p, &v, sizeof v);
            }
            break;
        case F_F32:
        case F_F64:
            if (!jb_gguf_get_float(g, key, &fv))
                return jb_fail(JB_STATUS_ERR_MODEL, "model file lacks float metadata '%s'", key);
            if (!(fv >= -1e9 && fv <= 1e9))
                return jb_fail(
                  JB_STATUS_ERR_MODEL, "metadata '%s' = %g is not a sane value", key, fv);
            if (fields[i].type == F_F32) {
                float v = (float)fv;
                memcpy(p, &v, sizeof v);
            } else {
                memcpy(p, &fv, sizeof fv);
            }
            break;
        case F_BOOL:
            if (!jb_gguf_get_bool(g, key, &bv))
                return jb_fail(JB_STATUS_ERR_MODEL, "model file lacks bool metadata '%s'", key);
            memcpy(p, &bv, sizeof bv);
            break;
        case F_I32x3:
            for (uint64_t k = 0; k < 3; k++) {
                if (!jb_gguf_get_arr_int(g, key, k, &iv))
                    return jb_fail(
                      JB_STATUS_ERR_MODEL, "model file lacks metadata '%s[%d]'", key, (int)k);
                if (iv < fields[i].min || iv > fields[i].max)
                    return jb_fail(JB_STATUS_ERR_MODEL,
                                   "metadata '%s[%d]' = %lld is out of range",
                                   key,
                                   (int)k,
                                   (long long)iv);
                int32_t v = (int32_t)iv;
                memcpy(p + k * sizeof v, &v, sizeof v);
            }
            break;
        }
    }
    return JB_STATUS_OK;
}

void jb_meta_write_vqvae(struct jb_gguf_writer *w, const struct jb_vqvae_hparams *hp)
{
    write_fields(w, "jukebox.vqvae", vqvae_fields, N_FIELDS(vqvae_fields), hp);
}

void jb_meta_write_prior(struct jb_gguf_writer *w, const struct jb_prior_hparams *hp)
{
    write_fields(w, "jukebox.prior", prior_fields, N_FIELDS(prior_fields), hp);
}

enum jb_status jb_meta_read_vqvae(const struct jb_gguf *g, struct jb_vqvae_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    enum jb_status st = read_fields(g, "jukebox.vqvae", vqvae_fields, N_FIELDS(vqvae_fields), hp);
    return st ? st : jb_vqvae_hparams_validate(hp);
}

enum jb_status jb_meta_read_prior(const struct jb_gguf *g, struct jb_prior_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    enum jb_status st = read_fields(g, "jukebox.prior", prior_fields, N_FIELDS(prior_fields), hp);
    return st ? st : jb_prior_hparams_validate(hp);
}

/* Every integer field within its table range, named in the message; hyper-parameters come from
 * JSON files and checkpoints, so this runs before any of them is multiplied or divided by. */
static enum jb_status check_int_fields(const char *what,
                                       const struct field *fields,
                                       size_t n,
                                       const void *hp)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)hp + fields[i].offset;
        int count     = fields[i].type == F_I32 ? 1 : fields[i].type == F_I32x3 ? 3 : 0;
        for (int k = 0; k < count; k++) {
            int32_t v;
            memcpy(&v, p + (size_t)k * sizeof v, sizeof v);
            if (v < fields[i].min || v > fields[i].max) {
                char idx[8] = "";
                if (count > 1) snprintf(idx, sizeof idx, "[%d]", k);
                return jb_fail(JB_STATUS_ERR_MODEL,
                               "%s: %s%s = %d is out of range [%lld, %lld]",
                               what,
                               fields[i].key,
                               idx,
                               v,
                               (long long)fields[i].min,
                               (long long)fields[i].max);
            }
        }
    }
    return JB_STATUS_OK;
}

/* A real-valued field in [lo, hi] (lo excluded when open_lo); NaN fails. */
static enum jb_status check_real(const char *what,
                                 const char *key,
                                 double v,
                                 double lo,
                                 bool open_lo,
                                 double hi)
{
    if (v >= lo && v <= hi && !(open_lo && v == lo)) return JB_STATUS_OK;
    return jb_fail(JB_STATUS_ERR_MODEL,
                   "%s: %s = %g is out of range %c%g, %g]",
                   what,
                   key,
                   v,
                   open_lo ? '(' : '[',
                   lo,
                   hi);
}

/* Largest tensor the model code is asked to handle, in elements (the released 5b's largest
 * has 2.3e7): products of hyper-parameters beyond it are refused before anything is sized. */
#define MAX_TENSOR_ELEMS ((int64_t)1 << 31)

static enum jb_status check_elems(const char *what, const char *desc, int64_t a, int64_t b)
{
    if (a <= 0 || b <= 0 || a <= MAX_TENSOR_ELEMS / b) return JB_STATUS_OK;
    return jb_fail(JB_STATUS_ERR_MODEL,
                   "%s: %s = %lld x %lld elements is more than 2^31",
                   what,
                   desc,
                   (long long)a,
                   (long long)b);
}

enum jb_status jb_vqvae_hparams_validate(const struct jb_vqvae_hparams *hp)
{
    enum jb_status st = check_int_fields("vqvae", vqvae_fields, N_FIELDS(vqvae_fields), hp);
    if (st) return st;
    if ((st = check_real("vqvae", "m_conv", hp->m_conv, 0, true, 16)) ||
        (st = check_elems("vqvae", "codebook l_bins x emb_width", hp->l_bins, hp->emb_width)))
        return st;
    int64_t hop = 1;
    for (int l = 0; l < hp->levels; l++) {
        for (int i = 0; i < hp->downs_t[l]; i++)
            hop *= hp->strides_t[l];
        if (hop > (1 << 16))
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "vqvae: hop length %lld at level %d is too large",
                           (long long)hop,
                           l);
        if (hp->width * hp->multipliers[l] > 4096 || hp->depth * hp->multipliers[l] > 64)
            return jb_fail(JB_STATUS_ERR_MODEL, "vqvae: level %d width/depth too large", l);
    }
    if (hp->depth > 0) {
        /* dilation growth^(depth-1) must stay a sane int */
        double d = 1;
        int n    = hp->dilation_cycle ? hp->dilation_cycle : hp->depth * 2;
        for (int i = 1; i < n && i < 64; i++)
            d *= hp->dilation_growth_rate;
        if (d > 1e7) return jb_fail(JB_STATUS_ERR_MODEL, "vqvae: dilations grow too large");
    }
    return JB_STATUS_OK;
}

/* Sizes of one transformer stack's matrices within bounds (ranges already checked). */
static enum jb_status check_transformer(const char *what, const struct jb_transformer_hparams *t)
{
    int64_t ns  = (int64_t)(t->m_attn * (float)t->width),
            mlp = (int64_t)(t->m_mlp * (float)t->width);
    enum jb_status st;
    if ((st = check_elems(what, "c_attn width x 3*n_state", t->width, 3 * ns)) ||
        (st = check_elems(what, "c_fc width x m_mlp*width", t->width, mlp)) ||
        (st = check_elems(what, "pos_emb seq_len x width", t->seq_len, t->width)))
        return st;
    /* all layers together: the 5b prior has 5e9 parameters; 2^34 is far beyond any release */
    double total = (double)t->depth * (double)t->width * (double)(4 * ns + 2 * mlp);
    if (total > 17179869184.0)
        return jb_fail(JB_STATUS_ERR_MODEL,
                       "%s: depth %d x width %d makes %.3g parameters (more than 2^34)",
                       what,
                       t->depth,
                       t->width,
                       total);
    return JB_STATUS_OK;
}

enum jb_status jb_prior_hparams_validate(const struct jb_prior_hparams *hp)
{
    enum jb_status st = check_int_fields("prior", prior_fields, N_FIELDS(prior_fields), hp);
    if (st) return st;
    const struct jb_transformer_hparams *tr = &hp->tr;
    if ((st = check_real("prior", "m_attn", tr->m_attn, 0, true, 4)) ||
        (st = check_real("prior", "m_mlp", tr->m_mlp, 0, true, 16)) ||
        (st = check_real("prior", "min_duration", hp->min_duration, 0, false, 1e6)) ||
        (st = check_real("prior", "max_duration", hp->max_duration, 0, false, 1e6)) ||
        (hp->variant == JB_PRIOR_UPSAMPLER &&
         (st = check_real("prior", "cond_m_conv", hp->cond_m_conv, 0, true, 16))) ||
        (st = check_transformer("prior", tr)))
        return st;
    int64_t vocab =
      (int64_t)hp->bins + (hp->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? hp->n_vocab : 0);
    if ((st = check_elems("prior", "x_emb vocabulary x width", vocab, tr->width)) ||
        (st = check_elems("prior", "artist table n_artists x width", hp->n_artists, tr->width)) ||
        (st = check_elems("prior", "genre table n_genres x width", hp->n_genres, tr->width)) ||
        (st = check_elems("prior", "timing table t_bins x width", hp->t_bins, tr->width)) ||
        (st = check_elems(
           "prior", "conditioner cond_width^2 x 4", hp->cond_width, 4 * (int64_t)hp->cond_width)))
        return st;
    int ns = (int)(tr->m_attn * (float)tr->width);
    if (ns <= 0 || ns % tr->heads)
        return jb_fail(
          JB_STATUS_ERR_MODEL, "prior: n_state %d is not a multiple of heads %d", ns, tr->heads);
    if (tr->seq_len % tr->blocks)
        return jb_fail(JB_STATUS_ERR_MODEL,
                       "prior: sequence length %d is not a multiple of blocks %d",
                       tr->seq_len,
                       tr->blocks);
    int want_seq = hp->n_ctx + (hp->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? hp->n_tokens : 0);
    if (tr->seq_len != want_seq)
        return jb_fail(
          JB_STATUS_ERR_MODEL, "prior: seq_len %d, expected %d", tr->seq_len, want_seq);
    for (int d = 0; d < tr->depth; d++) {
        int f = jb_attn_func(tr->attn_order, d);
        if (f < 0 || f == 4 || f == 5)
            return jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                           "prior: attn_order %d (layer %d uses attn_func %d) is not supported",
                           tr->attn_order,
                           d,
                           f);
        if (f == 6 && hp->variant != JB_PRIOR_TOP_LYRICS_ENC)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "prior: cross-attention layer without a lyric encoder");
    }
    if (hp->variant == JB_PRIOR_UPSAMPLER) {
        if (hp->cond_width <= 0 || hp->cond_downs <= 0 || hp->cond_stride <= 0)
            return jb_fail(JB_STATUS_ERR_MODEL, "prior: upsampler without a conditioner");
        int64_t f = 1;
        for (int i = 0; i < hp->cond_downs && f <= hp->n_ctx; i++)
            f *= hp->cond_stride; /* <= 16 * 2^20: no overflow */
        if (f > hp->n_ctx || hp->n_ctx % f)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "prior: n_ctx %d not divisible by %lld",
                           hp->n_ctx,
                           (long long)f);
    }
    if (hp->variant == JB_PRIOR_TOP_LYRICS_ENC) {
        const struct jb_transformer_hparams *p = &hp->prime;
        if (p->width <= 0 || p->depth <= 0 || p->heads <= 0 || p->blocks <= 0)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "prior: lyric encoder prime.width/depth/heads/blocks must be positive");
        if ((st = check_real("prior", "prime.m_attn", p->m_attn, 0, true, 4)) ||
            (st = check_real("prior", "prime.m_mlp", p->m_mlp, 0, true, 16)) ||
            (st = check_transformer("prior lyric encoder", p)) ||
            (st = check_elems("prior", "prime x_emb n_vocab x prime.width", hp->n_vocab, p->width)))
            return st;
        int pns = (int)(p->m_attn * (float)p->width);
        if (pns <= 0 || pns % p->heads || p->blocks <= 0 || p->seq_len != hp->n_tokens ||
            p->seq_len % p->blocks)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "prior: inconsistent lyric encoder hyper-parameters");
        for (int d = 0; d < p->depth; d++) {
            int f = jb_attn_func(p->attn_order, d);
            if (f < 0 || f >= 4)
                return jb_fail(
                  JB_STATUS_ERR_UNSUPPORTED, "prior: lyric encoder attn_order %d", p->attn_order);
        }
    }
    if ((hp->variant == JB_PRIOR_TOP_LYRICS_ENC || hp->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC) &&
        (hp->n_tokens <= 0 || hp->n_vocab <= 0))
        return jb_fail(JB_STATUS_ERR_MODEL, "prior: lyric model without lyric tokens");
    if (hp->timing && !(hp->min_duration >= 0 && hp->max_duration > hp->min_duration))
        return jb_fail(JB_STATUS_ERR_MODEL, "prior: bad min/max duration");
    if (hp->max_bow_genre_size > 64) return jb_fail(JB_STATUS_ERR_MODEL, "prior: bad genre count");
    return JB_STATUS_OK;
}
