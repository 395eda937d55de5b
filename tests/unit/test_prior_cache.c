/*
 * tests/unit/test_prior_cache.c - the prior transformers on random small models built in memory:
 * KV-cached incremental path vs teacher-forced forward vs a plain double-precision reference
 * written straight from jukebox-spec §4 (explicit key sets, no cache), and the samplers.
 *
 * Four models cover every variant and attention type: A (upsampler, attn_order 9: funcs 1 2 3 0,
 * tied head, X re-added), B (attn_order 2, fp16 Conv1D weights, separate x_out), C (lyric encoder
 * + attn_order 6: cross-attention 6), D (single enc-dec, attn_order 12: prime attention 7 with its
 * P' = (n_tokens/blocks + 1)·blocks key limit). Each runs N = 2 candidates with different inputs;
 * the cached path goes token by token and with mixed chunks (1, 3, 5, 7, 11, 13, 16, 17, 30).
 * Errors are relative L2 ‖got − ref‖ / ‖ref‖ (limit 1e-5). Sampling checks: greedy determinism
 * and agreement with the forward argmax, seed repeatability, per-candidate streams independent of
 * N, top-k/top-p support and frequencies, cancellation within one token, argument checks.
 * Prints one line per check and "N passed, M failed"; exit status 1 on failure.
 */
#include "core/fp16.h"
#include "prior/prior.h"
#include "prior/prior_impl.h"
#include "backend/ops.h"
#include "backend/cpu/share_tuner.h"
#include "prior/sampler.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(TEST_ASAN)
#include <malloc.h> /* mallinfo2: heap in use (ASan replaces the allocator) */
#define HAVE_MALLINFO 1
#endif

#define TOL 1e-5

/* tests/common's reporting under this file's name */
#define report tc_check

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static double rnd(void) /* uniform [-1, 1) */
{
    return tc_rng_uniform(&g_rng); /* tests/common's splitmix64 */
}

static double rel_l2(const float *got, const double *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static double rel_l2_f(const float *got, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* ---- a state dict in memory ------------------------------------------------------------------ */

#define MAX_TENSORS 1024

/* the tensors (tests/common) plus the fp32 values the engine sees (fp16-rounded if stored so) */
struct tmodel {
    struct tc_weights *w;
    int n;
    float *ref[MAX_TENSORS];
};

/* Adds a tensor of N(mean, scale)-ish uniform values; `type` is its stored dtype. */
static void tm_add(struct tmodel *m,
                   enum jb_dtype type,
                   int nd,
                   int64_t d0,
                   int64_t d1,
                   int64_t d2,
                   double mean,
                   double scale,
                   const char *fmt,
                   ...) JB_PRINTF(9, 10);
static void tm_add(struct tmodel *m,
                   enum jb_dtype type,
                   int nd,
                   int64_t d0,
                   int64_t d1,
                   int64_t d2,
                   double mean,
                   double scale,
                   const char *fmt,
                   ...)
{
    JB_ASSERT(m->n < MAX_TENSORS);
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const int64_t shape[3] = { d0, d1, d2 };
    int64_t n              = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    float *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++)
        ref[i] = (float)(mean + scale * rnd());
    struct jb_tensor *t = tc_weights_add_values(m->w, type, nd, shape, ref, "%s", name);
    JB_ASSERT(t);
    jb_convert_to_f32(type, t->data, ref, (size_t)n); /* what the engine will see */
    m->ref[m->n++] = ref;
}

static const float *tm_ref(struct tmodel *m, const char *fmt, ...) JB_PRINTF(2, 3);
static const float *tm_ref(struct tmodel *m, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < m->n; i++)
        if (strcmp(tc_weights_tensor(m->w, i)->name, name) == 0) return m->ref[i];
    fprintf(stderr, "test model has no %s\n", name);
    abort();
}

static void tm_free(struct tmodel *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->ref[i]);
    tc_weights_free(m->w);
}

static void add_stack(struct tmodel *m,
                      const char *prefix,
                      enum jb_dtype wt,
                      int W,
                      int depth,
                      int attn_order)
{
    const int ns = W / 4;
    for (int d = 0; d < depth; d++) {
        bool cross = jb_attn_func(attn_order, d) == 6;
#define L(s) "%s.transformer._attn_mods.%d." s, prefix, d
        tm_add(m, JB_DTYPE_F32, 1, W, 0, 0, 1.0, 0.1, L("ln_0.weight"));
        tm_add(m, JB_DTYPE_F32, 1, W, 0, 0, 0.0, 0.1, L("ln_0.bias"));
        tm_add(m, wt, 2, W, cross ? ns : 3 * ns, 0, 0.0, 0.5, L("attn.c_attn.w"));
        tm_add(m, JB_DTYPE_F32, 1, cross ? ns : 3 * ns, 0, 0, 0.0, 0.1, L("attn.c_attn.b"));
        if (cross) {
            tm_add(m, wt, 2, W, 2 * ns, 0, 0.0, 0.5, L("attn.c_enc_kv.w"));
            tm_add(m, JB_DTYPE_F32, 1, 2 * ns, 0, 0, 0.0, 0.1, L("attn.c_enc_kv.b"));
        }
        tm_add(m, wt, 2, ns, W, 0, 0.0, 0.3, L("attn.c_proj.w"));
        tm_add(m, JB_DTYPE_F32, 1, W, 0, 0, 0.0, 0.05, L("attn.c_proj.b"));
        tm_add(m, JB_DTYPE_F32, 1, W, 0, 0, 1.0, 0.1, L("ln_1.weight"));
        tm_add(m, JB_DTYPE_F32, 1, W, 0, 0, 0.0, 0.1, L("ln_1.bias"));
        tm_add(m, wt, 2, W, W, 0, 0.0, 0.3, L("mlp.c_fc.w"));
        tm_add(m, JB_DTYPE_F32, 1, W, 0, 0, 0.0, 0.1, L("mlp.c_fc.b"));
        tm_add(m, wt, 2, W, W, 0, 0.0, 0.2, L("mlp.c_proj.w"));
        tm_add(m, JB_DTYPE_F32, 1, W, 0, 0, 0.0, 0.05, L("mlp.c_proj.b"));
#undef L
    }
}

struct tcase {
    const char *name;
    enum jb_prior_variant variant;
    int depth, attn_order;
    bool f16;
};

enum { W_ = 32, HEADS = 2, BLOCKS = 8, T_ = 64, BINS = 40, NVOCAB = 20, NTOK_D = 12, NTOK_C = 16 };
enum { PW = 16, PDEPTH = 3, PHEADS = 2, PBLOCKS = 4, G_ = 2, NG = 6, NA = 5, TB = 8, CW = 8 };

static void make_hparams(const struct tcase *tc, struct jb_prior_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    const bool d           = tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC;
    hp->variant            = tc->variant;
    hp->level              = tc->variant == JB_PRIOR_UPSAMPLER ? 0 : 2;
    hp->n_tokens           = d ? NTOK_D : tc->variant == JB_PRIOR_TOP_LYRICS_ENC ? NTOK_C : 0;
    hp->n_ctx              = d ? T_ - NTOK_D : T_;
    hp->bins               = BINS;
    hp->raw_to_tokens      = 8;
    hp->tr                 = (struct jb_transformer_hparams){ W_,   tc->depth,      HEADS,  0.25f,
                                                              1.0f, tc->attn_order, BLOCKS, T_ };
    hp->merged_decoder     = tc->variant == JB_PRIOR_TOP || tc->variant == JB_PRIOR_TOP_LYRICS_ENC;
    hp->fp16_params        = tc->f16;
    hp->n_genres           = NG;
    hp->n_artists          = NA;
    hp->max_bow_genre_size = G_;
    hp->timing             = tc->variant != JB_PRIOR_UPSAMPLER;
    hp->t_bins             = TB;
    hp->sr                 = 44100;
    hp->n_vocab            = NVOCAB;
    hp->cond_width         = CW;
    hp->cond_depth         = 1;
    hp->cond_dilation_growth_rate = 3;
    hp->cond_dilation_cycle       = 8;
    hp->cond_m_conv               = 1.0f;
    hp->cond_downs                = 1;
    hp->cond_stride               = 2;
    hp->prime =
      (struct jb_transformer_hparams){ PW, PDEPTH, PHEADS, 0.25f, 1.0f, 2, PBLOCKS, NTOK_C };
    hp->alignment_layer = hp->alignment_head = -1;
}

static void make_model(const struct tcase *tc, const struct jb_prior_hparams *hp, struct tmodel *m)
{
    const enum jb_dtype wt = tc->f16 ? JB_DTYPE_F16 : JB_DTYPE_F32;
    const int V            = tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? NVOCAB + BINS : BINS;
    memset(m, 0, sizeof *m);
    m->w = tc_weights_new(0);
    JB_ASSERT(m->w);
    tm_add(m, JB_DTYPE_F32, 2, NG, W_, 0, 0.0, 0.5, "y_emb.bow_genre_emb.emb.weight");
    tm_add(m, JB_DTYPE_F32, 2, NA, W_, 0, 0.0, 0.5, "y_emb.artist_emb.emb.weight");
    if (hp->timing) {
        tm_add(m, JB_DTYPE_F32, 2, TB, W_, 0, 0.0, 0.3, "y_emb.total_length_emb.emb.weight");
        tm_add(m, JB_DTYPE_F32, 2, TB, W_, 0, 0.0, 0.3, "y_emb.absolute_pos_emb.emb.weight");
        tm_add(m, JB_DTYPE_F32, 2, TB, W_, 0, 0.0, 0.3, "y_emb.relative_pos_emb.emb.weight");
    }
    if (tc->variant == JB_PRIOR_UPSAMPLER) { /* conditioner_blocks.0 (one stage, depth 1) */
        tm_add(m, JB_DTYPE_F32, 2, BINS, W_, 0, 0.0, 0.5, "conditioner_blocks.0.x_emb.weight");
        tm_add(m, JB_DTYPE_F32, 3, CW, W_, 3, 0.0, 0.2, "conditioner_blocks.0.cond.model.0.weight");
        tm_add(m, JB_DTYPE_F32, 1, CW, 0, 0, 0.0, 0.1, "conditioner_blocks.0.cond.model.0.bias");
        tm_add(m,
               JB_DTYPE_F32,
               3,
               CW,
               CW,
               3,
               0.0,
               0.2,
               "conditioner_blocks.0.cond.model.1.0.blocks.0.model.1.weight");
        tm_add(m,
               JB_DTYPE_F32,
               1,
               CW,
               0,
               0,
               0.0,
               0.1,
               "conditioner_blocks.0.cond.model.1.0.blocks.0.model.1.bias");
        tm_add(m,
               JB_DTYPE_F32,
               3,
               CW,
               CW,
               1,
               0.0,
               0.2,
               "conditioner_blocks.0.cond.model.1.0.blocks.0.model.3.weight");
        tm_add(m,
               JB_DTYPE_F32,
               1,
               CW,
               0,
               0,
               0.0,
               0.1,
               "conditioner_blocks.0.cond.model.1.0.blocks.0.model.3.bias");
        tm_add(
          m, JB_DTYPE_F32, 3, CW, W_, 4, 0.0, 0.2, "conditioner_blocks.0.cond.model.1.1.weight");
        tm_add(m, JB_DTYPE_F32, 1, W_, 0, 0, 0.0, 0.1, "conditioner_blocks.0.cond.model.1.1.bias");
        tm_add(m, JB_DTYPE_F32, 1, W_, 0, 0, 1.0, 0.1, "conditioner_blocks.0.ln.weight");
        tm_add(m, JB_DTYPE_F32, 1, W_, 0, 0, 0.0, 0.1, "conditioner_blocks.0.ln.bias");
    }
    if (tc->variant == JB_PRIOR_TOP_LYRICS_ENC) {
        tm_add(m, JB_DTYPE_F32, 2, 1, PW, 0, 0.0, 0.5, "prime_prior.start_token");
        tm_add(m, JB_DTYPE_F32, 2, NVOCAB, PW, 0, 0.0, 0.5, "prime_prior.x_emb.weight");
        tm_add(m, JB_DTYPE_F32, 2, NTOK_C, PW, 0, 0.0, 0.3, "prime_prior.pos_emb.pos_emb");
        add_stack(m, "prime_prior", wt, PW, PDEPTH, 2);
        tm_add(m, wt, 2, PW, W_, 0, 0.0, 0.5, "prime_state_proj.w");
        tm_add(m, JB_DTYPE_F32, 1, W_, 0, 0, 0.0, 0.1, "prime_state_proj.b");
        tm_add(m, JB_DTYPE_F32, 1, W_, 0, 0, 1.0, 0.1, "prime_state_ln.weight");
        tm_add(m, JB_DTYPE_F32, 1, W_, 0, 0, 0.0, 0.1, "prime_state_ln.bias");
        tm_add(m, JB_DTYPE_F32, 2, NVOCAB, W_, 0, 0.0, 0.1, "prime_x_out.weight");
    }
    tm_add(m, JB_DTYPE_F32, 2, V, W_, 0, 0.0, 0.8, "prior.x_emb.weight");
    const int x_emb = m->n - 1;
    tm_add(m, JB_DTYPE_F32, 2, T_, W_, 0, 0.0, 0.3, "prior.pos_emb.pos_emb");
    add_stack(m, "prior", wt, W_, tc->depth, tc->attn_order);
    if (hp->merged_decoder) {
        tm_add(m, JB_DTYPE_F32, 2, V, W_, 0, 0.0, 0.8, "prior.x_out.weight");
    } else { /* tied: the same values under the second name, as in the checkpoints */
        tm_add(m, JB_DTYPE_F32, 2, V, W_, 0, 0.0, 0.0, "prior.x_out.weight");
        memcpy(tc_weights_tensor(m->w, m->n - 1)->data,
               tc_weights_tensor(m->w, x_emb)->data,
               (size_t)V * W_ * sizeof(float));
        memcpy(m->ref[m->n - 1], m->ref[x_emb], (size_t)V * W_ * sizeof(float));
    }
}

/* ---- plain reference of jukebox-spec §4 (double, explicit key sets) -------------------------- */

static void ref_layernorm(int64_t rows,
                          int W,
                          const double *x,
                          const float *g,
                          const float *b,
                          double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * W;
        double mu = 0, var = 0;
        for (int c = 0; c < W; c++)
            mu += xr[c];
        mu /= W;
        for (int c = 0; c < W; c++)
            var += (xr[c] - mu) * (xr[c] - mu);
        var /= W;
        for (int c = 0; c < W; c++)
            y[r * W + c] = (xr[c] - mu) / sqrt(var + 1e-5) * g[c] + b[c];
    }
}

/* y[rows, n] = x[rows, k] · w[k, n] + b */
static void
ref_linear(int64_t rows, int k, int n, const double *x, const float *w, const float *b, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            double s = b ? b[j] : 0.0;
            for (int i = 0; i < k; i++)
                s += x[r * k + i] * w[(int64_t)i * n + j];
            y[r * n + j] = s;
        }
}

/* Is key j in S(i) for attn_func f (§4.6)? */
static bool ref_allowed(int f, int i, int j, int B, int prime_lim)
{
    switch (f) {
    case 0:
        return j <= i;
    case 1:
        return j / B == i / B && j <= i;
    case 2:
        return j % B == i % B && j <= i;
    case 3:
        return j / B == i / B - 1;
    case 7:
        return j < prime_lim && j <= i;
    default:
        return false;
    }
}

static void ref_transformer(struct tmodel *m,
                            const char *prefix,
                            int W,
                            int depth,
                            int heads,
                            int attn_order,
                            int T,
                            int B,
                            int prime_len,
                            const double *enc,
                            int n_enc,
                            double *h)
{
    const int ns = W / 4, hd = ns / heads;
    const int plim = prime_len ? (prime_len / (T / B) + 1) * (T / B) : 0;
    double *u = calloc((size_t)T * W, 8), *qkv = calloc((size_t)T * 3 * ns, 8);
    double *a = calloc((size_t)T * ns, 8), *o = calloc((size_t)T * W, 8);
    double *kv = n_enc ? calloc((size_t)n_enc * 2 * ns, 8) : NULL;
    double *p  = calloc((size_t)(T > n_enc ? T : n_enc), 8);
    for (int d = 0; d < depth; d++) {
        const int f = jb_attn_func(attn_order, d);
#define R(s) tm_ref(m, "%s.transformer._attn_mods.%d." s, prefix, d)
        ref_layernorm(T, W, h, R("ln_0.weight"), R("ln_0.bias"), u);
        ref_linear(T, W, f == 6 ? ns : 3 * ns, u, R("attn.c_attn.w"), R("attn.c_attn.b"), qkv);
        if (f == 6)
            ref_linear(n_enc, W, 2 * ns, enc, R("attn.c_enc_kv.w"), R("attn.c_enc_kv.b"), kv);
        const double scale = 1.0 / sqrt((double)hd);
        for (int i = 0; i < T; i++) {
            for (int hh = 0; hh < heads; hh++) {
                const double *q = qkv + (int64_t)i * (f == 6 ? ns : 3 * ns) + hh * hd;
                double *ai      = a + (int64_t)i * ns + hh * hd;
                int nk          = f == 6 ? n_enc : T;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < nk; j++) {
                    bool ok = f == 6 || ref_allowed(f, i, j, B, plim);
                    if (!ok) {
                        p[j] = -INFINITY;
                        continue;
                    }
                    const double *k = f == 6 ? kv + (int64_t)j * 2 * ns + hh * hd
                                             : qkv + (int64_t)j * 3 * ns + ns + hh * hd;
                    double s        = 0;
                    for (int c = 0; c < hd; c++)
                        s += q[c] * k[c];
                    p[j] = s * scale;
                    mx   = p[j] > mx ? p[j] : mx;
                }
                for (int c = 0; c < hd; c++)
                    ai[c] = 0;
                if (mx == -INFINITY) continue; /* func 3, block 0: zero keys and values */
                for (int j = 0; j < nk; j++)
                    sum += p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
                for (int j = 0; j < nk; j++) {
                    if (p[j] == 0) continue;
                    const double *v = f == 6 ? kv + (int64_t)j * 2 * ns + ns + hh * hd
                                             : qkv + (int64_t)j * 3 * ns + 2 * ns + hh * hd;
                    for (int c = 0; c < hd; c++)
                        ai[c] += p[j] / sum * v[c];
                }
            }
        }
        ref_linear(T, ns, W, a, R("attn.c_proj.w"), R("attn.c_proj.b"), o);
        for (int64_t i = 0; i < (int64_t)T * W; i++)
            h[i] += o[i];
        ref_layernorm(T, W, h, R("ln_1.weight"), R("ln_1.bias"), u);
        ref_linear(T, W, W, u, R("mlp.c_fc.w"), R("mlp.c_fc.b"), o);
        for (int64_t i = 0; i < (int64_t)T * W; i++)
            o[i] = o[i] / (1.0 + exp(-1.702 * o[i]));
        ref_linear(T, W, W, o, R("mlp.c_proj.w"), R("mlp.c_proj.b"), u);
        for (int64_t i = 0; i < (int64_t)T * W; i++)
            h[i] += u[i];
#undef R
    }
    free(u);
    free(qkv);
    free(a);
    free(o);
    free(kv);
    free(p);
}

/* Logits [T, V] of one candidate. */
static void ref_prior(struct tmodel *m,
                      const struct tcase *tc,
                      const struct jb_prior_hparams *hp,
                      const int32_t *tok,
                      const float *start,
                      const float *x,
                      const float *enc,
                      double *logits)
{
    const int V      = tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? NVOCAB + BINS : BINS;
    double *h        = calloc((size_t)T_ * W_, 8);
    double *ed       = NULL;
    const float *emb = tm_ref(m, "prior.x_emb.weight"), *pos = tm_ref(m, "prior.pos_emb.pos_emb");
    for (int t = 0; t < T_; t++)
        for (int c = 0; c < W_; c++)
            h[t * W_ + c] =
              (double)(t ? emb[tok[t - 1] * W_ + c] : start[c]) + pos[t * W_ + c] + x[t * W_ + c];
    if (enc) {
        ed = calloc((size_t)NTOK_C * W_, 8);
        for (int i = 0; i < NTOK_C * W_; i++)
            ed[i] = enc[i];
    }
    ref_transformer(m,
                    "prior",
                    W_,
                    tc->depth,
                    HEADS,
                    tc->attn_order,
                    T_,
                    T_ / BLOCKS,
                    tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? NTOK_D : 0,
                    ed,
                    enc ? NTOK_C : 0,
                    h);
    const float *out = tm_ref(m, "prior.x_out.weight");
    for (int t = 0; t < T_; t++)
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int c = 0; c < W_; c++)
                s += (h[t * W_ + c] + (hp->merged_decoder ? 0.0 : x[t * W_ + c])) * out[v * W_ + c];
            logits[(int64_t)t * V + v] = s;
        }
    free(h);
    free(ed);
}

/* encoder_kv [NTOK_C, W] of one candidate. */
static void ref_encoder(struct tmodel *m, const int32_t *lyr, double *ekv)
{
    double *h = calloc((size_t)NTOK_C * PW, 8), *p = calloc((size_t)NTOK_C * W_, 8);
    const float *st  = tm_ref(m, "prime_prior.start_token");
    const float *emb = tm_ref(m, "prime_prior.x_emb.weight");
    const float *pos = tm_ref(m, "prime_prior.pos_emb.pos_emb");
    for (int t = 0; t < NTOK_C; t++)
        for (int c = 0; c < PW; c++)
            h[t * PW + c] = (double)(t ? emb[lyr[t - 1] * PW + c] : st[c]) + pos[t * PW + c];
    ref_transformer(
      m, "prime_prior", PW, PDEPTH, PHEADS, 2, NTOK_C, NTOK_C / PBLOCKS, 0, NULL, 0, h);
    ref_linear(
      NTOK_C, PW, W_, h, tm_ref(m, "prime_state_proj.w"), tm_ref(m, "prime_state_proj.b"), p);
    ref_layernorm(
      NTOK_C, W_, p, tm_ref(m, "prime_state_ln.weight"), tm_ref(m, "prime_state_ln.bias"), ekv);
    free(h);
    free(p);
}

/* ---- checks ---------------------------------------------------------------------------------- */

enum { N_ = 2, MAX_CHUNK = 30 };

struct tdata {
    int32_t tok[N_ * T_];
    float start[N_ * W_];
    float x[N_ * T_ * W_];
    float *enc; /* [N, NTOK_C, W] */
};

static void make_inputs(struct jb_prior *p,
                        const struct tcase *tc,
                        const struct jb_prior_hparams *hp,
                        struct tdata *in)
{
    const int V = jb_prior_vocab(p);
    for (int n = 0; n < N_; n++) {
        int32_t genres[G_] = { n % NG, n ? -1 : 3 };
        jb_prior_start_emb(p, n % NA, genres, in->start + n * W_);
        for (int t = 0; t < T_; t++) {
            int32_t v = (int32_t)((rnd() + 1.0) * 0.5 * V);
            if (tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC)
                v = t < NTOK_D ? v % NVOCAB : NVOCAB + v % BINS;
            in->tok[n * T_ + t] = v < V ? v : V - 1;
        }
        if (hp->timing) {
            int32_t k_abs[T_], k_rel[T_];
            for (int i = 0; i < hp->n_ctx; i++) {
                k_abs[i] = (i * TB) / hp->n_ctx;
                k_rel[i] = (n + i / 16) % TB;
            }
            jb_prior_x_timing(p, 3 + n, k_abs, k_rel, in->x + (int64_t)n * T_ * W_);
        } else {
            for (int64_t i = 0; i < (int64_t)T_ * W_; i++)
                in->x[n * T_ * W_ + i] = (float)(0.5 * rnd());
        }
    }
    in->enc = NULL;
    if (tc->variant == JB_PRIOR_TOP_LYRICS_ENC) {
        int32_t lyr[N_ * NTOK_C];
        for (int i = 0; i < N_ * NTOK_C; i++)
            lyr[i] = (int32_t)((rnd() + 1.0) * 0.5 * NVOCAB) % NVOCAB;
        in->enc          = malloc((size_t)N_ * NTOK_C * W_ * sizeof(float));
        enum jb_status s = jb_prior_encoder_kv(p, N_, lyr, in->enc, NULL);
        report(s == JB_STATUS_OK, "%s: jb_prior_encoder_kv", tc->name);
    }
}

static void check_model(const struct tcase *tc)
{
    struct jb_prior_hparams hp;
    make_hparams(tc, &hp);
    struct tmodel *m = calloc(1, sizeof *m);
    make_model(tc, &hp, m);
    struct jb_weights_source src = tc_weights_source(m->w);
    struct jb_weights *w         = jb_weights_init(&src);
    struct jb_backend *be        = jb_backend_init("cpu", 0);
    struct jb_prior *p           = jb_prior_init(&hp, w, be);
    report(p != NULL, "%s: jb_prior_init %s", tc->name, p ? "" : jb_last_error());
    if (!p) return;
    enum jb_status s = jb_weights_check_all_used(w);
    report(s == JB_STATUS_OK, "%s: every tensor used %s", tc->name, s ? jb_last_error() : "");
    const int V = jb_prior_vocab(p);

    /* cache capacities follow the retention rules of §5.2 */
    {
        const int B = T_ / BLOCKS, Pp = (NTOK_D / BLOCKS + 1) * BLOCKS;
        bool ok = jb_kv_cache_capacity(&p->tr, 0) == T_ && jb_kv_cache_capacity(&p->tr, 1) == B &&
                  jb_kv_cache_capacity(&p->tr, 2) == T_ && jb_kv_cache_capacity(&p->tr, 3) == 2 * B;
        if (tc->variant == JB_PRIOR_TOP_LYRICS_ENC)
            ok = ok && jb_kv_cache_capacity(&p->tr, 6) == NTOK_C;
        if (tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC)
            ok = ok && jb_kv_cache_capacity(&p->tr, 7) == Pp;
        report(ok,
               "%s: cache capacities (func 0/2: T, 1: B, 3: 2B, 6: enc_len, 7: P' = %d)",
               tc->name,
               Pp);
    }

    struct tdata *in = calloc(1, sizeof *in);
    make_inputs(p, tc, &hp, in);

    /* lyric encoder against the reference */
    if (in->enc) {
        int32_t lyr[NTOK_C];
        double ekv[NTOK_C * W_];
        float got[NTOK_C * W_];
        for (int i = 0; i < NTOK_C; i++)
            lyr[i] = (i * 7 + 3) % NVOCAB;
        jb_prior_encoder_kv(p, 1, lyr, got, NULL);
        ref_encoder(m, lyr, ekv);
        double e = rel_l2(got, ekv, NTOK_C * W_);
        report(e <= TOL, "%s: encoder_kv vs reference           rel_l2 %.2e", tc->name, e);
    }

    /* forward vs the plain reference, per candidate */
    float *fwd = malloc((size_t)N_ * T_ * V * sizeof *fwd);
    s          = jb_prior_forward(p, N_, T_, in->tok, in->start, in->x, in->enc, fwd, NULL, NULL);
    report(s == JB_STATUS_OK, "%s: jb_prior_forward", tc->name);
    double *ref = malloc((size_t)T_ * V * sizeof *ref);
    for (int n = 0; n < N_; n++) {
        ref_prior(m,
                  tc,
                  &hp,
                  in->tok + n * T_,
                  in->start + n * W_,
                  in->x + n * T_ * W_,
                  in->enc ? in->enc + n * NTOK_C * W_ : NULL,
                  ref);
        double e = rel_l2(fwd + (int64_t)n * T_ * V, ref, (int64_t)T_ * V);
        report(e <= TOL, "%s: forward vs reference, candidate %d rel_l2 %.2e", tc->name, n, e);
    }

    /* cached: token by token, then mixed chunks */
    struct jb_prior_state *st = jb_prior_state_init(p, N_, MAX_CHUNK);
    {
        /* the memory plan is exactly what a state reserves */
        struct jb_prior_state *h = jb_prior_state_init_ex(p, 3, 7, JB_DTYPE_F16);
        const double a           = jb_prior_state_plan_bytes(p, N_, MAX_CHUNK, JB_DTYPE_F32),
                     b           = jb_prior_state_plan_bytes(p, 3, 7, JB_DTYPE_F16);
        report(st && h && a == (double)jb_prior_state_bytes(st) &&
                 b == (double)jb_prior_state_bytes(h),
               "%s: planned state bytes = reserved (%.0f, %.0f)",
               tc->name,
               a,
               b);
        jb_prior_state_free(h);
    }
    float *lc                    = malloc((size_t)N_ * MAX_CHUNK * V * sizeof *lc);
    float *cached                = malloc((size_t)N_ * T_ * V * sizeof *cached);
    static const int sched[2][9] = { { 1, 1, 1, 1, 1, 1, 1, 1, 1 },
                                     { 1, 3, 5, 7, 11, 13, 16, 17, 30 } };
    static const char *sname[2]  = { "token by token", "chunks 1,3,5,7,11,13,16,17,30" };
    for (int k = 0; k < 2; k++) {
        jb_prior_state_set_cond(st, in->start, in->x, in->enc);
        bool ok = true;
        for (int a = 0, j = 0; a < T_; j++) {
            int C = sched[k][j % 9] < T_ - a ? sched[k][j % 9] : T_ - a;
            ok    = ok && jb_prior_step(st, C, in->tok, T_, lc) == JB_STATUS_OK;
            for (int n = 0; n < N_; n++)
                memcpy(cached + ((int64_t)n * T_ + a) * V,
                       lc + (int64_t)n * C * V,
                       (size_t)C * V * sizeof *lc);
            a += C;
        }
        double e = rel_l2_f(cached, fwd, (int64_t)N_ * T_ * V);
        report(ok && e <= TOL, "%s: cached %-30s vs forward rel_l2 %.2e", tc->name, sname[k], e);
    }
    /* a bad id leaves the state where it was */
    {
        jb_prior_state_set_cond(st, in->start, in->x, in->enc);
        jb_prior_step(st, 3, in->tok, T_, NULL);
        int32_t bad[N_ * T_];
        memcpy(bad, in->tok, sizeof bad);
        bad[T_ + 3] = V;
        s           = jb_prior_step(st, 2, bad, T_, NULL);
        report(s == JB_STATUS_ERR_INVALID_ARG && jb_prior_state_pos(st) == 3,
               "%s: out-of-range id rejected, state unchanged",
               tc->name);
        s = jb_prior_step(st, MAX_CHUNK + 1, in->tok, T_, NULL);
        report(s == JB_STATUS_ERR_INVALID_ARG, "%s: chunk > max_chunk rejected", tc->name);
    }

    /* greedy sampling: deterministic, and each drawn token is the forward argmax there */
    {
        const int P                = tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? NTOK_D + 5 : 0;
        struct jb_sample_params sp = jb_sample_params_default();
        sp.top_k                   = 1;
        sp.chunk_size              = 7;
        int32_t ctx[N_ * T_], out1[N_ * T_], out2[N_ * T_];
        for (int n = 0; n < N_; n++)
            memcpy(ctx + n * P, in->tok + n * T_, (size_t)P * 4);
        jb_prior_state_set_cond(st, in->start, in->x, in->enc);
        s = jb_prior_sample(st, ctx, P, T_, &sp, out1, NULL, NULL, NULL);
        jb_prior_sample(st, ctx, P, T_, &sp, out2, NULL, NULL, NULL);
        report(s == JB_STATUS_OK && memcmp(out1, out2, sizeof out1) == 0,
               "%s: greedy sampling is deterministic",
               tc->name);
        jb_prior_forward(p, N_, T_, out1, in->start, in->x, in->enc, fwd, NULL, NULL);
        int bad = 0, close = 0;
        for (int n = 0; n < N_; n++)
            for (int t = P; t < T_; t++) {
                const float *l = fwd + ((int64_t)n * T_ + t) * V;
                int am         = 0;
                for (int v = 1; v < V; v++)
                    am = l[v] > l[am] ? v : am;
                if (out1[n * T_ + t] == am) continue;
                if (fabsf(l[am] - l[out1[n * T_ + t]]) < 1e-4f)
                    close++;
                else
                    bad++;
            }
        report(bad == 0, "%s: greedy tokens = forward argmax (%d near-ties)", tc->name, close);
    }
    free(lc);
    free(cached);
    free(ref);
    free(fwd);
    jb_prior_state_free(st);
    free(in->enc);
    free(in);
    jb_prior_free(p);
    jb_weights_free(w);
    jb_backend_free(be);
    tm_free(m);
    free(m);
}

/* ---- sampler ----------------------------------------------------------------------------------
 */

struct stop_ctx {
    int tokens, stop_after;
};
static bool stop_cb(void *user)
{
    struct stop_ctx *c = user;
    return c->tokens >= c->stop_after;
}
static void token_cb(void *user, int64_t t, int n_batch, const int32_t *seq, int64_t ld)
{
    ((struct stop_ctx *)user)->tokens++;
}

static void check_sampling(void)
{
    const struct tcase tc = { "D", JB_PRIOR_TOP_SINGLE_ENC_DEC, 16, 12, false };
    struct jb_prior_hparams hp;
    make_hparams(&tc, &hp);
    struct tmodel *m = calloc(1, sizeof *m);
    make_model(&tc, &hp, m);
    struct jb_weights_source src = tc_weights_source(m->w);
    struct jb_weights *w         = jb_weights_init(&src);
    struct jb_backend *be        = jb_backend_init("cpu", 0);
    struct jb_prior *p           = jb_prior_init(&hp, w, be);
    if (!p) {
        report(false, "sampling: init %s", jb_last_error());
        return;
    }
    struct tdata *in = calloc(1, sizeof *in);
    make_inputs(p, &tc, &hp, in);
    /* both candidates get candidate 0's conditioning and lyrics: only the RNG differs */
    memcpy(in->start + W_, in->start, W_ * sizeof(float));
    memcpy(in->x + T_ * W_, in->x, (size_t)T_ * W_ * sizeof(float));
    memcpy(in->tok + T_, in->tok, NTOK_D * sizeof(int32_t));
    int32_t ctx[N_ * NTOK_D];
    for (int n = 0; n < N_; n++)
        memcpy(ctx + n * NTOK_D, in->tok, NTOK_D * sizeof(int32_t));

    struct jb_prior_state *st = jb_prior_state_init(p, N_, 16);
    jb_prior_state_set_cond(st, in->start, in->x, NULL);
    struct jb_sample_params sp = jb_sample_params_default();
    sp.seed                    = 1234;
    sp.temp                    = 1.0f;
    int32_t a[N_ * T_], b[N_ * T_];
    enum jb_status s1 = jb_prior_sample(st, ctx, NTOK_D, T_, &sp, a, NULL, NULL, NULL);
    enum jb_status s2 = jb_prior_sample(st, ctx, NTOK_D, T_, &sp, b, NULL, NULL, NULL);
    report(s1 == JB_STATUS_OK && s2 == JB_STATUS_OK && memcmp(a, b, sizeof a) == 0,
           "sampling: same seed, same samples");
    report(memcmp(a, a + T_, T_ * sizeof(int32_t)) != 0,
           "sampling: candidates with equal inputs differ (own RNG streams)");
    report(memcmp(a, in->tok, NTOK_D * sizeof(int32_t)) == 0, "sampling: context returned as is");
    sp.seed = 1235;
    jb_prior_sample(st, ctx, NTOK_D, T_, &sp, b, NULL, NULL, NULL);
    report(memcmp(a, b, sizeof a) != 0, "sampling: another seed, other samples");

    /* candidate 1's stream does not depend on the batch: N = 1 with first_candidate = 1 */
    {
        struct jb_prior_state *s1st = jb_prior_state_init(p, 1, 16);
        jb_prior_state_set_cond(s1st, in->start, in->x, NULL);
        sp.seed            = 1234;
        sp.first_candidate = 1;
        int32_t one[T_];
        jb_prior_sample(s1st, ctx, NTOK_D, T_, &sp, one, NULL, NULL, NULL);
        report(memcmp(one, a + T_, sizeof one) == 0,
               "sampling: candidate 1 alone (first_candidate 1) = candidate 1 of a batch of 2");
        sp.first_candidate = 0;
        jb_prior_state_free(s1st);
    }

    /* cancellation within one token, and the token callback */
    {
        struct stop_ctx sc     = { 0, 5 };
        struct jb_callbacks cb = { NULL, stop_cb, &sc };
        enum jb_status s       = jb_prior_sample(st, ctx, NTOK_D, T_, &sp, b, &cb, token_cb, &sc);
        report(s == JB_STATUS_ERR_CANCELLED && sc.tokens == 5 &&
                 jb_prior_state_pos(st) == NTOK_D + 5,
               "sampling: should_stop -> ERR_CANCELLED after exactly 5 tokens (%d)",
               sc.tokens);
        sc.stop_after = 0;
        sc.tokens     = 0;
        s             = jb_prior_sample(st, ctx, NTOK_D, T_, &sp, b, &cb, token_cb, &sc);
        report(s == JB_STATUS_ERR_CANCELLED && jb_prior_state_pos(st) == 0,
               "sampling: should_stop before priming -> nothing done");
    }

    /* argument checks */
    {
        enum jb_status s = jb_prior_sample(st, ctx, NTOK_D - 1, T_, &sp, b, NULL, NULL, NULL);
        report(s == JB_STATUS_ERR_INVALID_ARG,
               "sampling: D without its full lyric prefix rejected");
        sp.top_k = 5;
        sp.top_p = 0.5f;
        s        = jb_prior_sample(st, ctx, NTOK_D, T_, &sp, b, NULL, NULL, NULL);
        report(s == JB_STATUS_ERR_INVALID_ARG, "sampling: top_k with top_p rejected");
        sp.top_p = 0.0f;
        s        = jb_prior_sample(st, ctx, NTOK_D, T_ + 1, &sp, b, NULL, NULL, NULL);
        report(s == JB_STATUS_ERR_INVALID_ARG, "sampling: more tokens than the window rejected");
        sp.top_k = 0;
    }

    /* no heap growth across a whole sampling call (after a warm-up call) */
#ifdef HAVE_MALLINFO
    {
        jb_prior_sample(st, ctx, NTOK_D, T_, &sp, b, NULL, NULL, NULL);
        struct mallinfo2 m0 = mallinfo2();
        jb_prior_sample(st, ctx, NTOK_D, T_, &sp, b, NULL, NULL, NULL);
        struct mallinfo2 m1 = mallinfo2();
        report(m0.uordblks == m1.uordblks && m0.hblkhd == m1.hblkhd,
               "sampling: no heap allocation in jb_prior_sample (%zu -> %zu bytes in use)",
               m0.uordblks,
               m1.uordblks);
    }
#endif
    jb_prior_state_free(st);
    free(in);
    jb_prior_free(p);
    jb_weights_free(w);
    jb_backend_free(be);
    tm_free(m);
    free(m);
}

/* The sampling op on fixed logits: filters and frequencies (draw i at position t = i). */
static int32_t draw_one(struct jb_backend *be,
                        const struct jb_sample_params *sp,
                        float *l,
                        int V,
                        int64_t t)
{
    const struct jb_sample_desc sd = { sp->temp, sp->top_k, sp->top_p, sp->seed, 0 };
    int32_t tok                    = -1;
    jb_sample(be, &sd, 1, V, l, V, t, &tok);
    return tok;
}

static void check_draw(void)
{
    enum { V = 8, DRAWS = 40000 };
    const float base[V]   = { 1.0f, 3.0f, 2.5f, 3.0f, -1.0f, 0.0f, 2.5f, 0.5f };
    struct jb_backend *be = jb_backend_init("cpu", 1);
    float l[V];
    int cnt[V];

    struct {
        const char *name;
        int top_k;
        float top_p, temp;
    } cases[] = {
        { "plain, temp 1", 0, 0.0f, 1.0f },
        { "temp 0.5", 0, 0.0f, 0.5f },
        { "top_k 2 (2 kept)", 2, 0.0f, 1.0f },
        { "top_k 3 (tie at the 3rd value: 4 kept)", 3, 0.0f, 1.0f },
        { "top_p 0.5 (2 kept)", 0, 0.5f, 1.0f },
        { "top_p 0.8 (4 kept)", 0, 0.8f, 1.0f },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct jb_sample_params sp = jb_sample_params_default();
        sp.seed                    = 7;
        sp.top_k                   = cases[c].top_k;
        sp.top_p                   = cases[c].top_p;
        sp.temp                    = cases[c].temp;
        memset(cnt, 0, sizeof cnt);
        for (int i = 0; i < DRAWS; i++) {
            memcpy(l, base, sizeof l);
            cnt[draw_one(be, &sp, l, V, i)]++;
        }
        /* expected distribution, computed here independently */
        double e[V], z = 0;
        int order[V];
        for (int v = 0; v < V; v++)
            e[v] = base[v] / cases[c].temp, order[v] = v;
        for (int i = 0; i < V; i++) /* descending by value, stable */
            for (int j = i + 1; j < V; j++)
                if (e[order[j]] > e[order[i]]) {
                    int t    = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
        bool keep[V];
        for (int v = 0; v < V; v++)
            keep[v] = true;
        if (sp.top_k > 0)
            for (int v = 0; v < V; v++)
                keep[v] = e[v] >= e[order[sp.top_k - 1]];
        if (sp.top_p > 0) {
            double zz = 0, cum = 0;
            for (int v = 0; v < V; v++)
                zz += exp(e[v]);
            for (int r = 0; r < V; r++) {
                keep[order[r]] = cum <= sp.top_p;
                cum += exp(e[order[r]]) / zz;
            }
        }
        for (int v = 0; v < V; v++)
            z += keep[v] ? exp(e[v]) : 0.0;
        double worst = 0;
        bool ok      = true;
        for (int v = 0; v < V; v++) {
            double pe = keep[v] ? exp(e[v]) / z : 0.0, pf = (double)cnt[v] / DRAWS;
            if (!keep[v] && cnt[v]) ok = false;
            double sd = sqrt(pe * (1 - pe) / DRAWS) + 1e-9;
            if (fabs(pf - pe) / sd > worst) worst = fabs(pf - pe) / sd;
        }
        report(ok && worst < 5.0, "draw: %-40s worst deviation %.1f sigma", cases[c].name, worst);
    }
    {
        struct jb_sample_params sp = jb_sample_params_default();
        sp.top_k                   = 1;
        memcpy(l, base, sizeof l);
        report(draw_one(be, &sp, l, V, 0) == 1, "draw: top_k 1 = first index of the max");
    }
    {
        bool differ = false, range = true, same = true;
        double mean = 0, lag = 0;
        double prev = jb_rng_u01(42, 0, 0);
        for (int i = 0; i < 10000; i++) {
            double u = jb_rng_u01(42, 0, (uint64_t)i);
            range    = range && u >= 0.0 && u < 1.0;
            mean += u;
            lag += (u - 0.5) * (prev - 0.5);
            prev   = u;
            differ = differ || jb_rng_u01(42, 1, (uint64_t)i) != u;
            same   = same && jb_rng_u01(42, 0, (uint64_t)i) == u; /* stateless */
        }
        report(range && differ && same && fabs(mean / 10000 - 0.5) < 0.01 &&
                 fabs(lag / 10000) < 0.005,
               "rng: counter-based uniforms in [0,1), mean %.4f, lag-1 cov %.4f, streams differ",
               mean / 10000,
               lag / 10000);
    }
    {
        /* Philox4x32-10 known answer (Random123 kat_vectors: ctr 0, key 0 ->
         * 6627e8d5 e169c58d bc57ac4c 9b00dbd8): our u uses the first two words */
        const double u      = jb_rng_u01(0, 0, 0);
        const uint64_t bits = ((uint64_t)0x6627e8d5u << 32 | 0xe169c58du) >> 11;
        report(u == (double)bits * 0x1.0p-53, "rng: Philox4x32-10 known answer (%.17g)", u);
    }
    jb_backend_free(be);
}

/* The decode step recorded once (a CUDA graph on backends that record) and replayed per token
 * gives bitwise the tokens of the same steps run directly, over every variant and attention
 * kind, ancestral (the S = 0 step takes the start embedding) and primed, across two windows
 * (the second replays the recording of the first). Returns false when the backend is missing. */
/* What on_token saw: each position once, in order, with the token that ends up in out. */
struct token_log {
    int calls;
    int64_t next_t;
    bool in_order;
    int32_t seen[N_ * T_];
};
static void token_log_cb(void *user, int64_t t, int n_batch, const int32_t *seq, int64_t ld)
{
    struct token_log *l = user;
    l->in_order         = l->in_order && t == l->next_t && n_batch == N_ && t < T_;
    l->next_t           = t + 1;
    l->calls++;
    for (int n = 0; n < n_batch && n < N_ && t < T_; n++)
        l->seen[n * T_ + t] = seq[n * ld + t];
}

static const struct tcase g_cases[] = {
    { "A upsampler, order 9 (1 2 3 0)", JB_PRIOR_UPSAMPLER, 6, 9, false },
    { "B 5b-like, order 2, fp16 weights", JB_PRIOR_TOP, 6, 2, true },
    { "C lyric encoder, order 6 (1 2 3 6)", JB_PRIOR_TOP_LYRICS_ENC, 6, 6, false },
    { "D single enc-dec, order 12 (7 at 15)", JB_PRIOR_TOP_SINGLE_ENC_DEC, 16, 12, false },
};

/* The tokens the cpu backend drew for each case and context length: the check backend runs the
 * same kernels on its own buffers (and reads the tokens back in batches), so it must match. */
static int32_t g_cpu_tokens[4][2][N_ * T_];

static bool check_graph(const struct tcase *tc, const char *backend)
{
    g_rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(tc - g_cases); /* same model and inputs per case */
    struct jb_prior_hparams hp;
    make_hparams(tc, &hp);
    struct jb_backend *be = jb_backend_init(backend, 0);
    if (!be) return false;
    struct tmodel *m = calloc(1, sizeof *m);
    make_model(tc, &hp, m);
    struct jb_weights_source src = tc_weights_source(m->w);
    struct jb_weights *w         = jb_weights_init(&src);
    struct jb_prior *p           = jb_prior_init(&hp, w, be);
    report(p != NULL, "%s on %s: jb_prior_init %s", tc->name, backend, p ? "" : jb_last_error());
    if (p) {
        struct tdata *in = calloc(1, sizeof *in);
        make_inputs(p, tc, &hp, in);
        struct jb_prior_state *st  = jb_prior_state_init(p, N_, 16);
        struct jb_sample_params sp = jb_sample_params_default();
        sp.temp                    = 0.9f;
        sp.seed                    = 99;
        sp.chunk_size              = 7;
        const int P0               = tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? NTOK_D : 0;
        const int Ps[2]            = { P0, P0 + 9 };
        for (int k = 0; k < 2 && st; k++) {
            const int P = Ps[k];
            int32_t ctx[N_ * T_], direct[N_ * T_], rec[N_ * T_], again[N_ * T_];
            for (int n = 0; n < N_; n++)
                memcpy(ctx + n * P, in->tok + n * T_, (size_t)P * 4);
            jb_prior_state_set_cond(st, in->start, in->x, in->enc);
            /* The recording belongs to the state: the first window's stays live through the
             * second (which replays it), and turning graphs off does not drop it. So the direct
             * run must leave it as it was: none in the first window, still there in the second. */
            const bool live_before = jb_prior_state_graph_live(st);
            jb_prior_state_set_graphs(st, false);
            enum jb_status s1 = jb_prior_sample(st, ctx, P, T_, &sp, direct, NULL, NULL, NULL);
            const bool live0  = jb_prior_state_graph_live(st);
            jb_prior_state_set_graphs(st, true);
            jb_prior_state_set_token_batch(st, 7); /* read back in batches, the last partial */
            struct token_log *log = calloc(1, sizeof *log);
            log->next_t           = P;
            log->in_order         = true;
            enum jb_status s2 = jb_prior_sample(st, ctx, P, T_, &sp, rec, NULL, token_log_cb, log);
            bool cb_ok        = log->in_order && log->calls == T_ - P;
            for (int n = 0; n < N_ && cb_ok; n++)
                cb_ok = memcmp(log->seen + n * T_ + P, rec + n * T_ + P, (size_t)(T_ - P) * 4) == 0;
            report(
              cb_ok,
              "%s on %s: on_token once per position in order (%d calls), with the final tokens",
              tc->name,
              backend,
              log->calls);
            free(log);
            jb_prior_state_set_token_batch(st, 0);
            /* a stop: every token drawn before it reaches out and on_token, no more; read back
             * per token (the default here) the stop comes after exactly 5, in batches of 16 at
             * the end of the batch its callbacks ran in */
            for (int b = 0; b < 2; b++) {
                const int batch        = b ? 16 : 0;
                struct stop_ctx sc     = { 0, 5 };
                struct jb_callbacks cb = { NULL, stop_cb, &sc };
                int32_t part[N_ * T_];
                memset(part, 0xff, sizeof part);
                jb_prior_state_set_token_batch(st, batch);
                const enum jb_status sx =
                  jb_prior_sample(st, ctx, P, T_, &sp, part, &cb, token_cb, &sc);
                const int64_t drawn = jb_prior_state_pos(st) - P;
                bool same           = drawn == (b ? 16 : jb_backend_has_graphs(be) ? 32 : 5);
                for (int n = 0; n < N_ && same; n++)
                    same = memcmp(part + n * T_, direct + n * T_, (size_t)(P + drawn) * 4) == 0;
                report(sx == JB_STATUS_ERR_CANCELLED && sc.tokens == drawn && same,
                       "%s on %s: a stop after 5 callbacks, tokens read back %s: %lld drawn, %d "
                       "callbacks, out holds them",
                       tc->name,
                       backend,
                       b ? "16 at a time" : "by default",
                       (long long)drawn,
                       sc.tokens);
            }
            jb_prior_state_set_token_batch(st, 0);
            const int ci = (int)(tc - g_cases);
            if (strcmp(backend, "cpu") == 0)
                memcpy(g_cpu_tokens[ci][k], direct, sizeof direct);
            else if (strcmp(backend, "check") == 0)
                report(memcmp(g_cpu_tokens[ci][k], direct, sizeof direct) == 0,
                       "%s on check: %s tokens = the cpu backend's, bitwise",
                       tc->name,
                       P ? "primed" : "ancestral");
            enum jb_status s3 = jb_prior_sample(st, ctx, P, T_, &sp, again, NULL, NULL, NULL);
            { /* jb_prior_step_sample, token by token (each read back at once, fed from seq) */
                const struct jb_sample_desc sd = { sp.temp, sp.top_k, sp.top_p, sp.seed, 0 };
                jb_prior_state_reset(st);
                bool same = true;
                for (int a = 0; a < P && same; a += 16)
                    same =
                      jb_prior_step(st, P - a < 16 ? P - a : 16, direct, T_, NULL) == JB_STATUS_OK;
                for (int t = P; t < T_ && same; t++) {
                    int32_t tok[N_];
                    same = jb_prior_step_sample(st, direct, T_, &sd, tok) == JB_STATUS_OK;
                    for (int n = 0; n < N_ && same; n++)
                        same = tok[n] == direct[n * T_ + t];
                }
                report(same,
                       "%s on %s: jb_prior_step_sample token by token = jb_prior_sample",
                       tc->name,
                       backend);
            }
            const bool live = jb_prior_state_graph_live(st);
            const bool want = jb_backend_has_graphs(be);
            report(s1 == JB_STATUS_OK && s2 == JB_STATUS_OK && s3 == JB_STATUS_OK &&
                     memcmp(direct, rec, sizeof direct) == 0 &&
                     memcmp(direct, again, sizeof direct) == 0 && live0 == live_before &&
                     live_before == (k > 0 && want) && live == want,
                   "%s on %s: %s decode %s = direct, bitwise (%d tokens x %d)%s%s",
                   tc->name,
                   backend,
                   P ? "primed" : "ancestral",
                   want ? "replayed from one recording" : "(no recording on this backend)",
                   T_ - P,
                   N_,
                   jb_prior_state_graph_why(st) ? "; not recorded: " : "",
                   jb_prior_state_graph_why(st) ? jb_prior_state_graph_why(st) : "");
        }
        jb_prior_state_free(st);
        free(in->enc);
        free(in);
        jb_prior_free(p);
    }
    jb_weights_free(w);
    jb_backend_free(be);
    tm_free(m);
    free(m);
    return true;
}

/* A decode step cut into candidate groups (the CPU backend's groups arm, share_tuner.h: each of
 * two threads runs its candidates through the whole step) must give the tokens and the last
 * step's logits of the uncut step, bitwise: on the cpu backend with 2 threads (groups side by
 * side) and on the check backend (groups in turn, each op still guarded). */
static void check_groups(const struct tcase *tc)
{
    g_rng = 0x51ed2701a3c5b9e7ull ^ (uint64_t)(tc - g_cases);
    struct jb_prior_hparams hp;
    make_hparams(tc, &hp);
    struct tmodel *m = calloc(1, sizeof *m);
    make_model(tc, &hp, m);
    struct jb_weights_source src = tc_weights_source(m->w);
    struct tdata *in             = calloc(1, sizeof *in);
    struct jb_sample_params sp   = jb_sample_params_default();
    sp.temp                      = 0.9f;
    sp.seed                      = 7;
    sp.chunk_size                = 5;
    const int P                  = (tc->variant == JB_PRIOR_TOP_SINGLE_ENC_DEC ? NTOK_D : 0) + 3;
    static const struct {
        const char *backend;
        int arm;
    } runs[3] = { { "cpu", 3 }, { "cpu", JB_SHARE_ARM_GROUPS }, { "check", JB_SHARE_ARM_GROUPS } };
    int32_t tokens[3][N_ * T_];
    float *logits[3] = { NULL, NULL, NULL };
    long cut[3]      = { -1, -1, -1 };
    size_t nl        = 0;
    bool ok          = true;
    for (int r = 0; r < 3 && ok; r++) {
        struct jb_backend *be = jb_backend_init(runs[r].backend, 2);
        struct jb_weights *w  = jb_weights_init(&src); /* placed on this backend by the prior */
        struct jb_prior *p    = be && w ? jb_prior_init(&hp, w, be) : NULL;
        ok                    = p != NULL;
        if (ok && r == 0) make_inputs(p, tc, &hp, in);
        struct jb_prior_state *st = ok ? jb_prior_state_init(p, N_, 16) : NULL;
        ok                        = st != NULL;
        if (ok) {
            jb_backend_pin_loop_arm(be, runs[r].arm);
            int32_t ctx[N_ * T_];
            for (int n = 0; n < N_; n++)
                memcpy(ctx + n * P, in->tok + n * T_, (size_t)P * 4);
            jb_prior_state_set_cond(st, in->start, in->x, in->enc);
            ok = jb_prior_sample(st, ctx, P, T_, &sp, tokens[r], NULL, NULL, NULL) == JB_STATUS_OK;
            nl = (size_t)N_ * (size_t)jb_prior_vocab(p);
            logits[r] = malloc(nl * sizeof(float));
            if (ok) jb_backend_get(be, logits[r], st->logits, nl * sizeof(float));
            /* the arm cut every step but the loop's first (its choice comes at a step's end),
             * and only that loop's: back to uncut at its end */
            cut[r] = jb_backend_group_steps(be);
            ok     = ok && jb_backend_loop_groups(be) == 1;
        }
        jb_prior_state_free(st);
        jb_prior_free(p);
        jb_weights_free(w);
        jb_backend_free(be);
    }
    for (int r = 1; r < 3; r++)
        report(ok && cut[0] == 0 && cut[r] == T_ - P - 1 &&
                 memcmp(tokens[r], tokens[0], sizeof tokens[0]) == 0 &&
                 memcmp(logits[r], logits[0], nl * sizeof(float)) == 0,
               "%s: decode in candidate groups on %s (%ld of %d steps cut) = uncut, bitwise "
               "(tokens x %d, and the last step's logits)",
               tc->name,
               runs[r].backend,
               cut[r],
               T_ - P,
               N_);
    for (int r = 0; r < 3; r++)
        free(logits[r]);
    free(in->enc);
    free(in);
    tm_free(m);
    free(m);
}

int main(int argc, char **argv)
{
    const struct tcase *const cases = g_cases;
    const size_t n_cases            = sizeof g_cases / sizeof g_cases[0];
    if (argc == 3 && strcmp(argv[1], "--decode-graph") == 0) {
        /* the gpu test: only the recorded-vs-direct decode, on the named backend */
        for (size_t i = 0; i < n_cases; i++)
            if (!check_graph(&cases[i], argv[2])) {
                /* skipped only where there is no device at all; a device that fails is a failure */
                const bool no_device = strcmp(jb_backend_default_name(), "cpu") == 0;
                printf("%s: backend %s unavailable (%s)\n",
                       no_device ? "SKIP" : "FAIL",
                       argv[2],
                       jb_last_error());
                return no_device ? 77 : 1;
            }
        return tc_summary();
    }
    for (size_t i = 0; i < n_cases; i++)
        check_model(&cases[i]);
    check_sampling();
    check_draw();
    for (size_t i = 0; i < n_cases; i++) {
        report(check_graph(&cases[i], "cpu"), "cpu backend");
        report(check_graph(&cases[i], "check"), "check backend");
        check_groups(&cases[i]);
    }
    return tc_summary();
}
