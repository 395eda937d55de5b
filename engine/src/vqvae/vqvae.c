/*
 * vqvae/vqvae.c - the Jukebox VQ-VAE: encoders, bottleneck, decoders (jukebox-spec §2.5, §3).
 *
 * Each level is a pair of conv stacks (nn/resnet.h) built from the state-dict names of §2.5;
 * encode = encoder stack + nearest-codebook search, decode = codebook lookup + decoder stack.
 * Whole-sequence and chunked processing share one loop: a chunk [a, b) is run with
 * receptive-field margins of context on both sides and only its own outputs are kept.
 */
#include "vqvae/vqvae.h"

#include "nn/resnet.h"

#include <string.h>

/* Frames per nearest-code search call (an (emb, tile) copy of them in the work memory, 1 MB at
 * emb 64): large enough that the call's blocks keep every thread busy to the end. */
#define VQ_TILE 4096

struct jb_vqvae {
    struct jb_vqvae_hparams hp;
    struct jb_backend *be;
    struct jb_convstack enc[JB_MAX_LEVELS], dec[JB_MAX_LEVELS];
    const struct jb_tensor *codebook[JB_MAX_LEVELS];            /* [l_bins, emb_width] */
    int32_t hop[JB_MAX_LEVELS];                                 /* samples per code */
    int64_t dec_margin[JB_MAX_LEVELS];                          /* codes */
    int64_t enc_margin[JB_MAX_LEVELS];                          /* codes */
    int64_t enc_rf_lo[JB_MAX_LEVELS], enc_rf_hi[JB_MAX_LEVELS]; /* samples */
};

/* ---------------------------------------------------------------------------------------- */
/* construction                                                                              */

static enum jb_status check_hparams(const struct jb_vqvae_hparams *hp)
{
    if (hp->levels < 1 || hp->levels > JB_MAX_LEVELS)
        return jb_fail(
          JB_STATUS_ERR_MODEL, "vqvae: levels = %d, expected 1..%d", hp->levels, JB_MAX_LEVELS);
    if (hp->width < 1 || hp->depth < 1 || hp->emb_width < 1 || hp->l_bins < 1 ||
        hp->dilation_growth_rate < 1 || hp->dilation_cycle < 0 || !(hp->m_conv > 0.0f))
        return jb_fail(JB_STATUS_ERR_MODEL,
                       "vqvae: bad hyper-parameters (width %d, depth %d, emb_width %d, l_bins %d, "
                       "dilation_growth_rate %d, dilation_cycle %d, m_conv %g)",
                       hp->width,
                       hp->depth,
                       hp->emb_width,
                       hp->l_bins,
                       hp->dilation_growth_rate,
                       hp->dilation_cycle,
                       (double)hp->m_conv);
    int64_t hop = 1;
    for (int l = 0; l < hp->levels; l++) {
        /* k = 2s, p = s/2 maps lengths exactly by s only for even strides */
        if (hp->downs_t[l] < 1 || hp->downs_t[l] > 16 || hp->strides_t[l] < 2 ||
            hp->strides_t[l] % 2 != 0 || hp->multipliers[l] < 1 || hp->multipliers[l] > 64)
            return jb_fail(JB_STATUS_ERR_MODEL,
                           "vqvae: level %d has downs_t %d, strides_t %d, multiplier %d "
                           "(expected downs_t >= 1, an even stride >= 2, multiplier >= 1)",
                           l,
                           hp->downs_t[l],
                           hp->strides_t[l],
                           hp->multipliers[l]);
        for (int i = 0; i < hp->downs_t[l]; i++) {
            hop *= hp->strides_t[l];
            if (hop > (1 << 20))
                return jb_fail(
                  JB_STATUS_ERR_MODEL, "vqvae: hop length of level %d is too large", l);
        }
    }
    return JB_STATUS_OK;
}

static struct jb_resnet1d_params resnet_params(const struct jb_vqvae_hparams *hp,
                                               int level,
                                               bool reverse)
{
    return (struct jb_resnet1d_params){
        .n_in        = jb_vqvae_hp_width(hp, level),
        .depth       = jb_vqvae_hp_depth(hp, level),
        .m_conv      = hp->m_conv,
        .growth      = hp->dilation_growth_rate,
        .cycle       = hp->dilation_cycle,
        .reverse     = reverse,
        .res_scale   = 1.0f, /* res_scale False in the VQ-VAE */
        .blocks_name = "model",
    };
}

/* Encoder L: level blocks j = 0..L, each downs_t[j] x [strided conv, Resnet1D] + conv k3. */
static bool build_encoder(struct jb_convstack *s,
                          struct jb_weights *w,
                          const struct jb_vqvae_hparams *hp,
                          int L)
{
    int width                    = jb_vqvae_hp_width(hp, L);
    struct jb_resnet1d_params rp = resnet_params(hp, L, false);
    for (int j = 0; j <= L; j++) {
        int st = hp->strides_t[j];
        for (int i = 0; i < hp->downs_t[j]; i++) {
            int c_in = i > 0 ? width : j == 0 ? 1 : hp->emb_width;
            if (!jb_convstack_conv1d(s,
                                     w,
                                     c_in,
                                     width,
                                     2 * st,
                                     st,
                                     st / 2,
                                     "encoders.%d.level_blocks.%d.model.%d.0",
                                     L,
                                     j,
                                     i) ||
                !jb_convstack_resnet1d(
                  s, w, &rp, "encoders.%d.level_blocks.%d.model.%d.1", L, j, i))
                return false;
        }
        if (!jb_convstack_conv1d(s,
                                 w,
                                 width,
                                 hp->emb_width,
                                 3,
                                 1,
                                 1,
                                 "encoders.%d.level_blocks.%d.model.%d",
                                 L,
                                 j,
                                 hp->downs_t[j]))
            return false;
        jb_convstack_end_block(s);
    }
    return true;
}

/* Decoder L: level blocks j = L..0, each conv k3 + downs_t[j] x [Resnet1D, transposed conv],
 * then the output conv (emb_width -> 1). */
static bool build_decoder(struct jb_convstack *s,
                          struct jb_weights *w,
                          const struct jb_vqvae_hparams *hp,
                          int L)
{
    int width                    = jb_vqvae_hp_width(hp, L);
    struct jb_resnet1d_params rp = resnet_params(hp, L, hp->reverse_decoder_dilation);
    for (int j = L; j >= 0; j--) {
        int st = hp->strides_t[j], n = hp->downs_t[j];
        if (!jb_convstack_conv1d(
              s, w, hp->emb_width, width, 3, 1, 1, "decoders.%d.level_blocks.%d.model.0", L, j))
            return false;
        for (int i = 0; i < n; i++) {
            int c_out = i == n - 1 ? hp->emb_width : width;
            if (!jb_convstack_resnet1d(
                  s, w, &rp, "decoders.%d.level_blocks.%d.model.%d.0", L, j, i + 1) ||
                !jb_convstack_conv_transpose1d(s,
                                               w,
                                               width,
                                               c_out,
                                               2 * st,
                                               st,
                                               st / 2,
                                               "decoders.%d.level_blocks.%d.model.%d.1",
                                               L,
                                               j,
                                               i + 1))
                return false;
        }
        jb_convstack_end_block(s);
    }
    if (!jb_convstack_conv1d(s, w, hp->emb_width, 1, 3, 1, 1, "decoders.%d.out", L)) return false;
    jb_convstack_end_block(s);
    return true;
}

struct jb_vqvae *jb_vqvae_init(const struct jb_vqvae_hparams *hp,
                               struct jb_weights *w,
                               struct jb_backend *be)
{
    if (check_hparams(hp) != JB_STATUS_OK) return NULL;
    if (!be || !w) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "vqvae: no backend or weights");
        return NULL;
    }
    jb_weights_set_backend(w, be); /* every weight below lives where the ops run */
    struct jb_vqvae *vq = jb_calloc(1, sizeof *vq);
    if (!vq) return NULL;
    vq->hp = *hp;
    vq->be = be;

    for (int L = 0; L < hp->levels; L++) {
        if (!build_encoder(&vq->enc[L], w, hp, L) || !build_decoder(&vq->dec[L], w, hp, L))
            goto fail;
        vq->codebook[L] = jb_weights_get(
          w, JB_WANT_F32, JB_SHAPE2(hp->l_bins, hp->emb_width), "bottleneck.level_blocks.%d.k", L);
    }
    if (!jb_weights_ok(w)) goto fail;

    for (int L = 0; L < hp->levels; L++) {
        int64_t hop = jb_vqvae_hp_hop(hp, L);
        vq->hop[L]  = (int32_t)hop;

        /* Decode: the hop samples of code 0 depend on codes [lo, hi]. */
        struct jb_rf d    = jb_convstack_rf(&vq->dec[L], (struct jb_rf){ 0, hop - 1 });
        vq->dec_margin[L] = -d.lo > d.hi ? -d.lo : d.hi;

        /* Encode: code 0 depends on samples [lo, hi]. */
        struct jb_rf e   = jb_convstack_rf(&vq->enc[L], (struct jb_rf){ 0, 0 });
        vq->enc_rf_lo[L] = -e.lo;
        vq->enc_rf_hi[L] = e.hi;
        int64_t m = vq->enc_rf_lo[L] > vq->enc_rf_hi[L] ? vq->enc_rf_lo[L] : vq->enc_rf_hi[L];
        vq->enc_margin[L] = (m + hop - 1) / hop;
    }
    return vq;

fail:
    jb_vqvae_free(vq);
    return NULL;
}

void jb_vqvae_free(struct jb_vqvae *vq)
{
    if (!vq) return;
    for (int L = 0; L < JB_MAX_LEVELS; L++) {
        jb_convstack_free(&vq->enc[L]);
        jb_convstack_free(&vq->dec[L]);
    }
    free(vq);
}

const struct jb_vqvae_hparams *jb_vqvae_get_hparams(const struct jb_vqvae *vq)
{
    return &vq->hp;
}

int64_t jb_vqvae_decode_margin_level(const struct jb_vqvae *vq, int level)
{
    if (!vq || level < 0 || level >= vq->hp.levels) return -1;
    return vq->dec_margin[level];
}

int64_t jb_vqvae_encode_margin_level(const struct jb_vqvae *vq,
                                     int level,
                                     int64_t *lo_samples,
                                     int64_t *hi_samples)
{
    if (!vq || level < 0 || level >= vq->hp.levels) return -1;
    if (lo_samples) *lo_samples = vq->enc_rf_lo[level];
    if (hi_samples) *hi_samples = vq->enc_rf_hi[level];
    return vq->enc_margin[level];
}

/* ---------------------------------------------------------------------------------------- */
/* work memory: one backend allocation per call (or per job: jb_vqvae_work) */

struct work {
    void *mem; /* one backend buffer holding all of the below */
    struct jb_convstack_work cs;
    float *out;        /* decode: a chunk's samples with context */
    float *tile;       /* encode: (emb_width, VQ_TILE) frames */
    float *vq_scratch; /* encode: nearest-code search */
    int32_t *ids;      /* decode: the span's codes; encode: a tile's codes */
};

/* Work memory reserved by the caller for many decode_range calls (a job's chunk loop). */
struct jb_vqvae_work {
    struct jb_vqvae *vq;
    int level;
    int64_t span; /* longest context span it was sized for (codes) */
    struct work w;
};

static size_t round_up16(size_t n)
{
    return (n + 15) & ~(size_t)15; /* 16 floats = 64 bytes */
}

enum { N_BUFS = 8 };

/* Floats of each work buffer for a forward pass of stack s over T frames, plus `out` floats of
 * staging and the quantiser's buffers when `quantise`; returns the total in bytes (0 on
 * overflow, after jb_fail). */
static size_t work_layout(const struct jb_vqvae *vq,
                          const struct jb_convstack *s,
                          int64_t T,
                          size_t out,
                          bool quantise,
                          size_t sizes[N_BUFS])
{
    struct jb_convstack_mem m;
    if (!jb_convstack_mem(s, vq->be, T, &m)) return 0;
    size_t v[N_BUFS] = { m.act, m.act, m.inner, m.scratch, out, 0, 0, (size_t)T };
    if (quantise) {
        v[5] = (size_t)vq->hp.emb_width * VQ_TILE;
        v[6] = jb_vq_argmin_scratch(vq->hp.l_bins, vq->hp.emb_width, VQ_TILE);
        v[7] = VQ_TILE;
    }
    size_t total = 0;
    for (int i = 0; i < N_BUFS; i++) {
        sizes[i] = v[i];
        if (v[i] > SIZE_MAX / 8 || !jb_add_size(total, round_up16(v[i]), &total)) total = SIZE_MAX;
    }
    if (total == SIZE_MAX || !jb_mul_size(total, sizeof(float), &total)) {
        jb_fail(
          JB_STATUS_ERR_NOMEM, "vqvae: work memory size overflows for %lld frames", (long long)T);
        return 0;
    }
    return total;
}

static enum jb_status work_alloc(struct jb_vqvae *vq,
                                 const struct jb_convstack *s,
                                 int64_t T,
                                 size_t out,
                                 bool quantise,
                                 struct work *wk)
{
    memset(wk, 0, sizeof *wk);
    size_t sizes[N_BUFS];
    size_t total = work_layout(vq, s, T, out, quantise, sizes);
    if (!total) return JB_STATUS_ERR_NOMEM;
    float *p = jb_backend_alloc(vq->be, total);
    if (!p) return JB_STATUS_ERR_NOMEM;
    wk->mem                 = p;
    float **dst[N_BUFS - 1] = { &wk->cs.act[0], &wk->cs.act[1], &wk->cs.inner,  &wk->cs.scratch,
                                &wk->out,       &wk->tile,      &wk->vq_scratch };
    for (int i = 0; i < N_BUFS; i++) {
        if (i < N_BUFS - 1)
            *dst[i] = sizes[i] ? p : NULL;
        else
            wk->ids = (int32_t *)p; /* int32 in float-sized slots */
        p += round_up16(sizes[i]);
    }
    return JB_STATUS_OK;
}

static void work_free(struct jb_vqvae *vq, struct work *wk)
{
    if (wk->mem) jb_backend_free_buffer(vq->be, wk->mem);
    wk->mem = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* argument checks                                                                           */

static enum jb_status check_level(const struct jb_vqvae *vq, const char *fn, int level)
{
    if (!vq) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: no VQ-VAE", fn);
    if (level < 0 || level >= vq->hp.levels)
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "%s: level %d out of range [0, %d)", fn, level, vq->hp.levels);
    return JB_STATUS_OK;
}

static enum jb_status check_codes(const struct jb_vqvae *vq,
                                  const char *fn,
                                  int level,
                                  const int32_t *codes,
                                  int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (codes[i] < 0 || codes[i] >= vq->hp.l_bins)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "%s: code %d at position %lld is out of range [0, %d) for level %d",
                           fn,
                           codes[i],
                           (long long)i,
                           vq->hp.l_bins,
                           level);
    }
    return JB_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* decode                                                                                    */

/* Decoder `level` on codes[0, n) (host; code `origin` of the whole sequence first) into wk->out
 * (n * hop samples, backend). */
static enum jb_status decode_span(struct jb_vqvae *vq,
                                  int level,
                                  const int32_t *codes,
                                  int64_t n,
                                  int64_t origin,
                                  struct work *wk,
                                  const struct jb_convstack_progress *prog)
{
    /* x = K[z], (n, emb) -> (emb, n) */
    jb_backend_set(vq->be, wk->ids, codes, (size_t)n * sizeof *codes);
    jb_embedding(vq->be, vq->codebook[level], wk->ids, n, wk->cs.act[1]);
    jb_transpose(vq->be, wk->cs.act[1], n, vq->hp.emb_width, wk->cs.act[0]);
    return jb_convstack_forward(
      vq->be, &vq->dec[level], wk->cs.act[0], n, origin, wk->out, &wk->cs, prog, NULL);
}

/* Longest context span of a chunk: the chunk plus both margins, clipped to the sequence. */
static int64_t decode_span_len(const struct jb_vqvae *vq, int level, int64_t n, int64_t chunk)
{
    int64_t M = vq->dec_margin[level];
    return chunk + 2 * M < n ? chunk + 2 * M : n;
}

/* Decodes codes [begin, end) of codes[0, n) chunk codes at a time into audio (relative to
 * begin), with work memory wk sized for the span of a chunk. Every chunk [a, b) is decoded with
 * context [a − M, b + M) clipped to [0, n). */
static enum jb_status decode_chunks(struct jb_vqvae *vq,
                                    int level,
                                    const int32_t *codes,
                                    int64_t n,
                                    int64_t begin,
                                    int64_t end,
                                    int64_t chunk,
                                    float *audio,
                                    struct work *wk,
                                    const struct jb_callbacks *cb)
{
    const int64_t hop = vq->hop[level], M = vq->dec_margin[level];
    enum jb_status st = JB_STATUS_OK;
    double t0         = jb_time_now();
    for (int64_t a = begin; a < end && st == JB_STATUS_OK; a += chunk) {
        if (jb_should_stop(cb)) {
            st = jb_fail(JB_STATUS_ERR_CANCELLED, "decode cancelled");
            break;
        }
        int64_t b                         = a + chunk < end ? a + chunk : end;
        int64_t lo                        = a - M > 0 ? a - M : 0;
        int64_t hi                        = b + M < n ? b + M : n;
        struct jb_convstack_progress prog = { .cb      = cb,
                                              .stage   = "decode",
                                              .level   = level,
                                              .t_start = t0,
                                              .done    = a - begin,
                                              .units   = b - a,
                                              .total   = end - begin };
        st = decode_span(vq, level, codes + lo, hi - lo, lo, wk, &prog);
        if (st == JB_STATUS_OK)
            jb_backend_get(vq->be,
                           audio + (a - begin) * hop,
                           wk->out + (a - lo) * hop,
                           (size_t)((b - a) * hop) * sizeof(float));
        if (st == JB_STATUS_OK) st = jb_backend_status(vq->be); /* a device op may have failed */
    }
    return st;
}

static enum jb_status decode_work_alloc(struct jb_vqvae *vq,
                                        int level,
                                        int64_t span,
                                        struct work *wk)
{
    return work_alloc(vq, &vq->dec[level], span, (size_t)(span * vq->hop[level]), false, wk);
}

struct jb_vqvae_work *jb_vqvae_decode_work_init(struct jb_vqvae *vq,
                                                int level,
                                                int64_t n_codes,
                                                int64_t chunk_codes)
{
    if (check_level(vq, __func__, level) != JB_STATUS_OK) return NULL;
    if (n_codes < 1 || chunk_codes < 1) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "%s: need n_codes, chunk_codes >= 1", __func__);
        return NULL;
    }
    struct jb_vqvae_work *wk = jb_calloc(1, sizeof *wk);
    if (!wk) return NULL;
    wk->vq    = vq;
    wk->level = level;
    wk->span  = decode_span_len(vq, level, n_codes, chunk_codes);
    if (decode_work_alloc(vq, level, wk->span, &wk->w) != JB_STATUS_OK) {
        free(wk);
        return NULL;
    }
    return wk;
}

void jb_vqvae_work_free(struct jb_vqvae_work *wk)
{
    if (!wk) return;
    work_free(wk->vq, &wk->w);
    free(wk);
}

enum jb_status jb_vqvae_decode_level(struct jb_vqvae *vq,
                                     int level,
                                     const int32_t *codes,
                                     int64_t n_codes,
                                     float *audio,
                                     int64_t chunk_codes,
                                     const struct jb_callbacks *cb)
{
    enum jb_status st = check_level(vq, __func__, level);
    if (st != JB_STATUS_OK) return st;
    if (n_codes < 1 || !codes || !audio || chunk_codes < 0)
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG,
          "%s: need n_codes >= 1 (got %lld), codes, audio and chunk_codes >= 0 (got %lld)",
          __func__,
          (long long)n_codes,
          (long long)chunk_codes);
    st = check_codes(vq, __func__, level, codes, n_codes);
    if (st != JB_STATUS_OK) return st;
    int64_t chunk = chunk_codes == 0 || chunk_codes > n_codes ? n_codes : chunk_codes;
    struct work wk;
    st = decode_work_alloc(vq, level, decode_span_len(vq, level, n_codes, chunk), &wk);
    if (st != JB_STATUS_OK) return st;
    st = decode_chunks(vq, level, codes, n_codes, 0, n_codes, chunk, audio, &wk, cb);
    work_free(vq, &wk);
    return st;
}

enum jb_status jb_vqvae_decode_range(struct jb_vqvae *vq,
                                     int level,
                                     const int32_t *codes,
                                     int64_t n_codes,
                                     int64_t a,
                                     int64_t b,
                                     float *audio,
                                     struct jb_vqvae_work *work)
{
    enum jb_status st = check_level(vq, __func__, level);
    if (st != JB_STATUS_OK) return st;
    if (!codes || !audio || a < 0 || b <= a || b > n_codes)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "%s: range [%lld, %lld) is not a non-empty part of [0, %lld)",
                       __func__,
                       (long long)a,
                       (long long)b,
                       (long long)n_codes);
    /* only the codes the decoder reads need to be valid */
    int64_t M  = vq->dec_margin[level];
    int64_t lo = a - M > 0 ? a - M : 0, hi = b + M < n_codes ? b + M : n_codes;
    st = check_codes(vq, __func__, level, codes + lo, hi - lo);
    if (st != JB_STATUS_OK) return st;
    if (work) {
        if (work->vq != vq || work->level != level || hi - lo > work->span)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                           "%s: work memory for level %d, spans of %lld codes, used for level %d, "
                           "%lld codes",
                           __func__,
                           work->level,
                           (long long)work->span,
                           level,
                           (long long)(hi - lo));
        return decode_chunks(vq, level, codes, n_codes, a, b, b - a, audio, &work->w, NULL);
    }
    struct work wk;
    st = decode_work_alloc(vq, level, hi - lo, &wk);
    if (st != JB_STATUS_OK) return st;
    st = decode_chunks(vq, level, codes, n_codes, a, b, b - a, audio, &wk, NULL);
    work_free(vq, &wk);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* encode                                                                                    */

/* Nearest codebook entries of frames [t0, t1) of x (emb, T), in tiles. */
static void quantise(struct jb_vqvae *vq,
                     int level,
                     const float *x,
                     int64_t T,
                     int64_t t0,
                     int64_t t1,
                     int32_t *codes,
                     struct work *wk)
{
    const int64_t emb = vq->hp.emb_width;
    for (int64_t a = t0; a < t1; a += VQ_TILE) {
        int64_t n = t1 - a < VQ_TILE ? t1 - a : VQ_TILE;
        jb_copy(vq->be, emb, n, x + a, T, wk->tile, n);
        jb_vq_argmin(vq->be, wk->tile, n, vq->codebook[level], wk->ids, wk->vq_scratch);
        jb_backend_get(vq->be, codes + (a - t0), wk->ids, (size_t)n * sizeof *codes);
    }
}

enum jb_status jb_vqvae_encode_level_chunked(struct jb_vqvae *vq,
                                             int level,
                                             const float *audio,
                                             int64_t n_samples,
                                             int32_t *codes,
                                             float *prequant,
                                             int64_t chunk_codes,
                                             const struct jb_callbacks *cb)
{
    enum jb_status st = check_level(vq, __func__, level);
    if (st != JB_STATUS_OK) return st;
    const int64_t top = vq->hop[vq->hp.levels - 1];
    if (n_samples < 1 || n_samples % top != 0)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "%s: n_samples = %lld is not a positive multiple of the top-level hop %lld "
                       "(pad or trim the audio)",
                       __func__,
                       (long long)n_samples,
                       (long long)top);
    if (!audio || !codes || chunk_codes < 0)
        return jb_fail(
          JB_STATUS_ERR_INVALID_ARG, "%s: need audio, codes and chunk_codes >= 0", __func__);

    const int64_t hop = vq->hop[level], M = vq->enc_margin[level], emb = vq->hp.emb_width;
    const int64_t n     = n_samples / hop;
    const int64_t chunk = chunk_codes == 0 || chunk_codes > n ? n : chunk_codes;
    const int64_t span  = chunk + 2 * M < n ? chunk + 2 * M : n;
    struct work wk;
    st = work_alloc(vq, &vq->enc[level], span * hop, 0, true, &wk);
    if (st != JB_STATUS_OK) return st;

    double t0 = jb_time_now();
    for (int64_t a = 0; a < n && st == JB_STATUS_OK; a += chunk) {
        if (jb_should_stop(cb)) {
            st = jb_fail(JB_STATUS_ERR_CANCELLED, "encode cancelled");
            break;
        }
        int64_t b                         = a + chunk < n ? a + chunk : n;
        int64_t lo                        = a - M > 0 ? a - M : 0;
        int64_t hi                        = b + M < n ? b + M : n;
        struct jb_convstack_progress prog = { .cb      = cb,
                                              .stage   = "encode",
                                              .level   = level,
                                              .t_start = t0,
                                              .done    = a,
                                              .units   = b - a,
                                              .total   = n };
        float *x                          = NULL; /* (emb, hi − lo) */
        jb_backend_set(vq->be,
                       wk.cs.act[0],
                       audio + lo * hop,
                       (size_t)((hi - lo) * hop) * sizeof(float)); /* c_in = 1 */
        st = jb_convstack_forward(vq->be,
                                  &vq->enc[level],
                                  wk.cs.act[0],
                                  (hi - lo) * hop,
                                  lo * hop,
                                  NULL,
                                  &wk.cs,
                                  &prog,
                                  &x);
        if (st != JB_STATUS_OK) break;
        quantise(vq, level, x, hi - lo, a - lo, b - lo, codes + a, &wk);
        if (prequant)
            for (int64_t c = 0; c < emb; c++)
                jb_backend_get(vq->be,
                               prequant + c * n + a,
                               x + c * (hi - lo) + (a - lo),
                               (size_t)(b - a) * sizeof(float));
        if ((st = jb_backend_status(vq->be)) != JB_STATUS_OK) break; /* a device op failed */
    }
    work_free(vq, &wk);
    return st;
}

int64_t jb_vqvae_encode_chunk_for_budget(const struct jb_vqvae *vq,
                                         int level,
                                         int64_t n_samples,
                                         size_t work_bytes)
{
    if (!vq || level < 0 || level >= vq->hp.levels || n_samples < vq->hop[level]) return -1;
    int64_t chunk = n_samples / vq->hop[level];
    if (jb_vqvae_encode_work_bytes(vq, level, n_samples, 0) <= work_bytes) return 0;
    while (chunk > 1 && jb_vqvae_encode_work_bytes(vq, level, n_samples, chunk) > work_bytes)
        chunk = chunk * 7 / 8;
    return chunk;
}

int64_t jb_vqvae_encode_chunk_default(const struct jb_vqvae *vq, int level, int64_t n_samples)
{
    if (!vq || level < 0 || level >= vq->hp.levels) return -1;
    if (n_samples <= ((int64_t)1 << 20)) return 0;
    return jb_vqvae_encode_chunk_for_budget(vq, level, n_samples, (size_t)128 << 20);
}

size_t jb_vqvae_decode_work_bytes(const struct jb_vqvae *vq,
                                  int level,
                                  int64_t n_codes,
                                  int64_t chunk_codes)
{
    if (!vq || level < 0 || level >= vq->hp.levels || n_codes < 1 || chunk_codes < 0) return 0;
    int64_t chunk = chunk_codes == 0 || chunk_codes > n_codes ? n_codes : chunk_codes;
    int64_t span  = decode_span_len(vq, level, n_codes, chunk);
    size_t sizes[N_BUFS];
    return work_layout(vq, &vq->dec[level], span, (size_t)(span * vq->hop[level]), false, sizes);
}

size_t jb_vqvae_encode_work_bytes(const struct jb_vqvae *vq,
                                  int level,
                                  int64_t n_samples,
                                  int64_t chunk_codes)
{
    if (!vq || level < 0 || level >= vq->hp.levels || n_samples < 1 || chunk_codes < 0) return 0;
    const int64_t hop = vq->hop[level], M = vq->enc_margin[level], n = n_samples / hop;
    if (n < 1) return 0;
    int64_t chunk = chunk_codes == 0 || chunk_codes > n ? n : chunk_codes;
    int64_t span  = chunk + 2 * M < n ? chunk + 2 * M : n;
    size_t sizes[N_BUFS];
    return work_layout(vq, &vq->enc[level], span * hop, 0, true, sizes);
}

enum jb_status jb_vqvae_encode_level(struct jb_vqvae *vq,
                                     int level,
                                     const float *audio,
                                     int64_t n_samples,
                                     int32_t *codes,
                                     float *prequant,
                                     const struct jb_callbacks *cb)
{
    return jb_vqvae_encode_level_chunked(vq, level, audio, n_samples, codes, prequant, 0, cb);
}
