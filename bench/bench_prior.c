/*
 * bench/bench_prior.c - prior sampling speed at three transformer shapes, against the
 * reference's CPU baselines (docs: reference-baseline.md, fp32, batch 1, t2b1), plus the time
 * to the first preview audio of a 5-second continuation on a model folder.
 *
 * usage: bench_prior [MODEL_DIR] [--threads N] [--quick]
 *
 * Each shape is an upsampler (n_ctx 8192, attn_order 2, blocks 128, m_attn 0.25, m_mlp 1,
 * labels (120, 4111)) with random fp32 weights built in memory behind a jb_weights_source:
 *   w256d8    width 256,  depth 8,  heads 2
 *   w1024d24  width 1024, depth 24, heads 4
 *   w1920d72  width 1920, depth 72, heads 1   (the released upsamplers' transformer)
 * (a one-stage conditioner stands in for the real one: it runs once per window, not per token).
 * For 1 and 4 candidates it primes a short context in chunks of 32, then samples token by token
 * and reports positions/s, tokens/s over all candidates, the weight bytes a step reads and the
 * effective weight bandwidth next to the machine's, measured here with a large copy and sum.
 */
#include "pipeline/pipeline.h"
#include "prior/prior.h"
#include "prior/sampler.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------------------------------- */
/* random weights in memory                                                                  */

#define MAX_TENSORS 2048

struct mem_model {
    int n;
    struct jb_tensor t[MAX_TENSORS];
    char *names[MAX_TENSORS];
    uint64_t rng;
};

static const struct jb_tensor *mm_find(void *ctx, const char *name)
{
    struct mem_model *m = ctx;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) return &m->t[i];
    return NULL;
}
static int64_t mm_count(void *ctx)
{
    return ((struct mem_model *)ctx)->n;
}
static const struct jb_tensor *mm_get(void *ctx, int64_t i)
{
    return &((struct mem_model *)ctx)->t[i];
}

/* Uniform values in [mean - scale, mean + scale]; false on OOM. */
static bool mm_add(struct mem_model *m,
                   float mean,
                   float scale,
                   int nd,
                   int64_t d0,
                   int64_t d1,
                   int64_t d2,
                   const char *fmt,
                   ...) JB_PRINTF(8, 9);
static bool mm_add(struct mem_model *m,
                   float mean,
                   float scale,
                   int nd,
                   int64_t d0,
                   int64_t d1,
                   int64_t d2,
                   const char *fmt,
                   ...)
{
    if (m->n >= MAX_TENSORS) return false;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    struct jb_tensor *t = &m->t[m->n];
    *t = (struct jb_tensor){ .type = JB_DTYPE_F32, .n_dims = nd, .shape = { d0, d1, d2 } };
    const int64_t n = jb_tensor_nelements(t);
    float *d        = jb_aligned_alloc((size_t)n * sizeof(float));
    if (!d) return false;
    uint64_t s = m->rng += 0x9e3779b97f4a7c15ULL;
    for (int64_t i = 0; i < n; i++) {
        s    = s * 6364136223846793005ULL + 1442695040888963407ULL;
        d[i] = mean + scale * ((float)(int32_t)(s >> 32) * (1.0f / 2147483648.0f));
    }
    t->data        = d;
    m->names[m->n] = strdup(name);
    t->name        = m->names[m->n];
    m->n++;
    return true;
}

static void mm_free(struct mem_model *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->t[i].data);
        free(m->names[i]);
    }
    free(m);
}

struct shape {
    const char *name;
    int width, depth, heads;
    const char *ref;          /* reference ancestral tok/s, batch 1, t2b1 */
    int n_prime, n_sample[2]; /* priming tokens; sampled tokens with 1 and 4 candidates */
};

static void upsampler_hparams(const struct shape *sh, struct jb_prior_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    hp->variant       = JB_PRIOR_UPSAMPLER;
    hp->level         = 1;
    hp->n_ctx         = 8192;
    hp->bins          = 2048;
    hp->raw_to_tokens = 32;
    hp->tr =
      (struct jb_transformer_hparams){ sh->width, sh->depth, sh->heads, 0.25f, 1.0f, 2, 128, 8192 };
    hp->n_genres                  = 120;
    hp->n_artists                 = 4111;
    hp->max_bow_genre_size        = 5;
    hp->t_bins                    = 128;
    hp->sr                        = 44100;
    hp->n_vocab                   = 80;
    hp->cond_width                = 8;
    hp->cond_depth                = 1;
    hp->cond_dilation_growth_rate = 3;
    hp->cond_dilation_cycle       = 8;
    hp->cond_m_conv               = 1.0f;
    hp->cond_downs                = 2;
    hp->cond_stride               = 2;
    hp->alignment_layer = hp->alignment_head = -1;
}

static struct mem_model *upsampler_weights(const struct jb_prior_hparams *hp)
{
    struct mem_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    const int64_t W = hp->tr.width, ns = W / 4, CW = hp->cond_width;
    const float s = 0.5f / sqrtf((float)W);
    bool ok       = true;
    ok &= mm_add(m, 0, 0.02f, 2, hp->n_genres, W, 0, "y_emb.bow_genre_emb.emb.weight");
    ok &= mm_add(m, 0, 0.02f, 2, hp->n_artists, W, 0, "y_emb.artist_emb.emb.weight");
    ok &= mm_add(m, 0, 0.02f, 2, hp->bins, W, 0, "conditioner_blocks.0.x_emb.weight");
    ok &= mm_add(m, 0, 0.1f, 3, CW, W, 3, "conditioner_blocks.0.cond.model.0.weight");
    ok &= mm_add(m, 0, 0.01f, 1, CW, 0, 0, "conditioner_blocks.0.cond.model.0.bias");
    for (int i = 0; i < hp->cond_downs; i++) {
        const int64_t out = i == hp->cond_downs - 1 ? W : CW;
        ok &= mm_add(m,
                     0,
                     0.1f,
                     3,
                     CW,
                     CW,
                     3,
                     "conditioner_blocks.0.cond.model.%d.0.blocks.0.model.1.weight",
                     i + 1);
        ok &= mm_add(m,
                     0,
                     0.01f,
                     1,
                     CW,
                     0,
                     0,
                     "conditioner_blocks.0.cond.model.%d.0.blocks.0.model.1.bias",
                     i + 1);
        ok &= mm_add(m,
                     0,
                     0.1f,
                     3,
                     CW,
                     CW,
                     1,
                     "conditioner_blocks.0.cond.model.%d.0.blocks.0.model.3.weight",
                     i + 1);
        ok &= mm_add(m,
                     0,
                     0.01f,
                     1,
                     CW,
                     0,
                     0,
                     "conditioner_blocks.0.cond.model.%d.0.blocks.0.model.3.bias",
                     i + 1);
        ok &=
          mm_add(m, 0, 0.1f, 3, CW, out, 4, "conditioner_blocks.0.cond.model.%d.1.weight", i + 1);
        ok &= mm_add(m, 0, 0.01f, 1, out, 0, 0, "conditioner_blocks.0.cond.model.%d.1.bias", i + 1);
    }
    ok &= mm_add(m, 1, 0.01f, 1, W, 0, 0, "conditioner_blocks.0.ln.weight");
    ok &= mm_add(m, 0, 0.01f, 1, W, 0, 0, "conditioner_blocks.0.ln.bias");
    ok &= mm_add(m, 0, 0.02f, 2, hp->bins, W, 0, "prior.x_emb.weight");
    ok &= mm_add(m, 0, 0.01f, 2, hp->n_ctx, W, 0, "prior.pos_emb.pos_emb");
    ok &= mm_add(m, 0, 0.02f, 2, hp->bins, W, 0, "prior.x_out.weight");
    for (int d = 0; ok && d < hp->tr.depth; d++) {
#define B(s) "prior.transformer._attn_mods.%d." s, d
        ok &= mm_add(m, 1, 0.01f, 1, W, 0, 0, B("ln_0.weight"));
        ok &= mm_add(m, 0, 0.01f, 1, W, 0, 0, B("ln_0.bias"));
        ok &= mm_add(m, 0, s, 2, W, 3 * ns, 0, B("attn.c_attn.w"));
        ok &= mm_add(m, 0, 0.01f, 1, 3 * ns, 0, 0, B("attn.c_attn.b"));
        ok &= mm_add(m, 0, s, 2, ns, W, 0, B("attn.c_proj.w"));
        ok &= mm_add(m, 0, 0.01f, 1, W, 0, 0, B("attn.c_proj.b"));
        ok &= mm_add(m, 1, 0.01f, 1, W, 0, 0, B("ln_1.weight"));
        ok &= mm_add(m, 0, 0.01f, 1, W, 0, 0, B("ln_1.bias"));
        ok &= mm_add(m, 0, s, 2, W, W, 0, B("mlp.c_fc.w"));
        ok &= mm_add(m, 0, 0.01f, 1, W, 0, 0, B("mlp.c_fc.b"));
        ok &= mm_add(m, 0, s, 2, W, W, 0, B("mlp.c_proj.w"));
        ok &= mm_add(m, 0, 0.01f, 1, W, 0, 0, B("mlp.c_proj.b"));
#undef B
    }
    if (!ok) {
        mm_free(m);
        return NULL;
    }
    return m;
}

/* Weight bytes one token step reads: every transformer matmul plus the output head. */
static double step_weight_bytes(const struct jb_prior_hparams *hp)
{
    const double W = hp->tr.width, ns = W * hp->tr.m_attn, mlp = W * hp->tr.m_mlp;
    const double per_layer = W * 3 * ns + ns * W + W * mlp + mlp * W;
    return 4.0 * (per_layer * hp->tr.depth + (double)hp->bins * W);
}

/* ---------------------------------------------------------------------------------------- */
/* memory bandwidth                                                                          */

static void bandwidth(double *copy_gbs, double *read_gbs)
{
    const size_t n = (size_t)1 << 27; /* 512 MiB per buffer */
    float *a       = jb_aligned_alloc(n * sizeof(float));
    float *b       = jb_aligned_alloc(n * sizeof(float));
    *copy_gbs = *read_gbs = 0;
    if (!a || !b) goto done;
    memset(a, 1, n * sizeof(float));
    memset(b, 0, n * sizeof(float));
    for (int rep = 0; rep < 3; rep++) {
        double t0 = jb_time_now();
        memcpy(b, a, n * sizeof(float));
        double dt = jb_time_now() - t0;
        double g  = 2.0 * (double)n * sizeof(float) / dt / 1e9; /* read + write */
        if (g > *copy_gbs) *copy_gbs = g;
        /* integer sum over 64-bit words in 4 independent lanes: vectorises, never
         * latency-bound (a float sum would be, without -ffast-math) */
        const uint64_t *u = (const uint64_t *)b;
        const size_t nu   = n / 2;
        uint64_t sum      = 0;
        t0                = jb_time_now();
#pragma omp parallel for reduction(+ : sum)
        for (size_t i = 0; i < nu; i += 4)
            sum += (u[i] + u[i + 1]) + (u[i + 2] + u[i + 3]);
        dt = jb_time_now() - t0;
        g  = (double)n * sizeof(float) / dt / 1e9;
        if (g > *read_gbs && sum != 1) *read_gbs = g;
    }
done:
    free(a);
    free(b);
}

/* ---------------------------------------------------------------------------------------- */
/* sampling speed                                                                            */

struct tok_times {
    int64_t first_t, last_t;
    double first, last;
};

static void on_tok(void *user, int64_t t, int n_batch, const int32_t *seq, int64_t ld_seq)
{
    struct tok_times *tt = user;
    double now           = jb_time_now();
    if (tt->first_t < 0) tt->first_t = t, tt->first = now;
    tt->last_t = t;
    tt->last   = now;
}

struct result {
    double prefill_tps; /* priming positions per second (per candidate) */
    double decode_pps;  /* sampled positions per second (per candidate) */
    double decode_tps;  /* tokens per second, all candidates */
    double state_mb;
    double kv_mb; /* of which KV caches */
    bool ok;
};

static struct result run_shape(struct jb_prior *p,
                               const struct jb_prior_hparams *hp,
                               int N,
                               int n_prime,
                               int n_sample,
                               enum jb_dtype kv_type)
{
    struct result r = { 0 };
    const int64_t T = hp->tr.seq_len, W = hp->tr.width;
    struct jb_prior_state *st = jb_prior_state_init_ex(p, N, 32, kv_type);
    float *x                  = jb_aligned_alloc((size_t)N * (size_t)T * (size_t)W * sizeof(float));
    float *semb               = jb_aligned_alloc((size_t)N * (size_t)W * sizeof(float));
    int32_t *ctx              = malloc((size_t)N * (size_t)n_prime * sizeof(int32_t));
    int32_t *out              = malloc((size_t)N * (size_t)(n_prime + n_sample) * sizeof(int32_t));
    if (!st || !x || !semb || !ctx || !out) {
        fprintf(stderr, "bench_prior: out of memory (%d candidates): %s\n", N, jb_last_error());
        goto done;
    }
    r.state_mb = (double)jb_prior_state_bytes(st) / 1048576.0;
    r.kv_mb    = (double)jb_prior_state_kv_bytes(st) / 1048576.0;
    /* conditioning: any finite values do (the speed does not depend on them) */
    for (size_t i = 0; i < (size_t)N * (size_t)T * (size_t)W; i++)
        x[i] = 0.01f * (float)((i * 7919) % 13) - 0.06f;
    for (size_t i = 0; i < (size_t)N * (size_t)W; i++)
        semb[i] = 0.01f * (float)(i % 7);
    for (int i = 0; i < N * n_prime; i++)
        ctx[i] = (i * 2654435761u) % (uint32_t)hp->bins;
    if (jb_prior_state_set_cond(st, semb, x, NULL)) goto done;

    struct jb_sample_params sp = jb_sample_params_default();
    sp.temp                    = 0.99f;
    sp.chunk_size              = 32;
    struct tok_times tt        = { .first_t = -1 };
    /* priming alone, twice (the first run also faults in the caches): the faster counts */
    for (int rep = 0; rep < 2; rep++) {
        double t0 = jb_time_now();
        if (jb_prior_sample(st, ctx, n_prime, n_prime + 1, &sp, out, NULL, NULL, NULL)) goto done;
        double tps = n_prime / (jb_time_now() - t0); /* includes one sampled token */
        if (tps > r.prefill_tps) r.prefill_tps = tps;
    }
    if (jb_prior_sample(st, ctx, n_prime, n_prime + n_sample, &sp, out, NULL, on_tok, &tt))
        goto done;
    if (tt.last_t > tt.first_t) {
        r.decode_pps = (double)(tt.last_t - tt.first_t) / (tt.last - tt.first);
        r.decode_tps = r.decode_pps * N;
        r.ok         = true;
    }
done:
    jb_prior_state_free(st);
    free(x);
    free(semb);
    free(ctx);
    free(out);
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* time to the first preview on a model folder                                               */

struct preview {
    double t0, first_audio, level_end[JB_JOB_MAX_LEVELS];
    int last_level;
};

static void pv_audio(const struct jb_job_audio *a, void *user)
{
    struct preview *pv = user;
    if (pv->first_audio < 0) pv->first_audio = jb_time_now() - pv->t0;
}

static void pv_progress(const struct jb_job_progress *p, void *user)
{
    struct preview *pv = user;
    if (p->done == p->total && p->level >= 0 && p->level < JB_JOB_MAX_LEVELS)
        pv->level_end[p->level] = jb_time_now() - pv->t0;
}

static void bench_preview(const char *dir, int threads)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/riff.wav", dir);
    struct jb_audio riff  = { 0 };
    struct jb_take *take  = NULL;
    struct jb_backend *be = jb_backend_init("cpu", threads);
    double t_load         = jb_time_now();
    struct jb_session *s  = be ? jb_session_load(dir, be) : NULL;
    t_load                = jb_time_now() - t_load;
    if (!s || jb_audio_read(path, JB_SAMPLE_RATE, 0, &riff)) {
        printf("preview: cannot run on %s: %s\n", dir, jb_last_error());
        goto done;
    }
    struct jb_job_params p;
    jb_job_params_init(&p);
    p.riff            = riff.samples;
    p.riff_samples    = riff.n_samples;
    p.seconds         = 5.0;
    p.artist          = jb_session_label_name(s, false, 1); /* a name from the model's own table */
    p.genre           = jb_session_label_name(s, true, 1);
    struct preview pv = { .first_audio = -1, .level_end = { -1, -1, -1 } };
    struct jb_job_callbacks cb = { .on_progress = pv_progress, .on_audio = pv_audio, .user = &pv };
    pv.t0                      = jb_time_now();
    enum jb_status st          = jb_job_run(s, &p, &cb, &take);
    double total               = jb_time_now() - pv.t0;
    if (st) {
        printf("preview: job failed: %s\n", jb_last_error());
        goto done;
    }
    printf("\n5-second continuation of %s (%.1f s riff), 1 candidate, levels 2..0, %d thread(s):\n",
           path,
           (double)riff.n_samples / JB_SAMPLE_RATE,
           threads > 0 ? threads : be->n_threads);
    printf("  session load           %6.2f s\n", t_load);
    printf("  first preview audio    %6.2f s   <- time to first audible preview\n", pv.first_audio);
    printf("  level 2 done           %6.2f s\n", pv.level_end[2]);
    printf("  level 1 done           %6.2f s\n", pv.level_end[1]);
    printf("  level 0 done (final)   %6.2f s\n", pv.level_end[0]);
    printf("  whole job              %6.2f s\n", total);
done:
    jb_take_free(take);
    jb_audio_free(&riff);
    jb_session_free(s);
    jb_backend_free(be);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int threads     = 0;
    bool quick      = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (argv[i][0] != '-')
            dir = argv[i];
        else {
            fprintf(stderr, "usage: bench_prior [MODEL_DIR] [--threads N] [--quick]\n");
            return 2;
        }
    }
#ifdef _OPENMP
    int n_thr = threads > 0 ? threads : omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
#else
    int n_thr = 1;
#endif
    double copy_gbs, read_gbs;
    bandwidth(&copy_gbs, &read_gbs);
    printf("bench_prior: %d thread(s); memory bandwidth: copy %.1f GB/s (read+write), "
           "parallel sum %.1f GB/s (read)\n",
           n_thr,
           copy_gbs,
           read_gbs);
    printf("reference (openai/jukebox CPU, fp32, batch 1, t2b1, 2 vCPU Zen 5, ~43 GB/s): "
           "docs reference-baseline.md\n\n");

    static const struct shape shapes[] = {
        { "w256d8", 256, 8, 2, "632-684", 64, { 512, 256 } },
        { "w1024d24", 1024, 24, 4, "30.5-31.1", 64, { 128, 64 } },
        { "w1920d72", 1920, 72, 1, "3.44", 32, { 24, 12 } },
    };
    struct result kv32[3] = { 0 }, kv16[3] = { 0 };
    printf("| config   | cand | prefill pos/s | decode pos/s | tokens/s (all) | weights/step | "
           "eff. GB/s | %% of sum BW | ref tok/s (b1) | state MB |\n");
    printf("|----------|------|---------------|--------------|----------------|--------------|"
           "-----------|-------------|----------------|----------|\n");
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const struct shape *sh = &shapes[k];
        struct jb_prior_hparams hp;
        upsampler_hparams(sh, &hp);
        double t_build               = jb_time_now();
        struct mem_model *m          = upsampler_weights(&hp);
        struct jb_weights_source src = { mm_find, mm_count, mm_get, m };
        struct jb_weights *w         = m ? jb_weights_init(&src) : NULL;
        struct jb_backend *be        = w ? jb_backend_init("cpu", threads) : NULL;
        struct jb_prior *p           = be ? jb_prior_init(&hp, w, be) : NULL;
        t_build                      = jb_time_now() - t_build;
        if (!p) {
            printf("| %-8s | could not build the prior: %s |\n", sh->name, jb_last_error());
        } else {
            const double bytes = step_weight_bytes(&hp);
            for (int b = 0; b < 2; b++) {
                const int N  = b ? 4 : 1;
                int n_sample = sh->n_sample[b];
                if (quick) n_sample = n_sample / 4 > 8 ? n_sample / 4 : 8;
                struct result r = run_shape(p, &hp, N, sh->n_prime, n_sample, JB_DTYPE_F32);
                if (N == 1) {
                    kv32[k] = r;
                    kv16[k] = run_shape(p, &hp, N, sh->n_prime, n_sample, JB_DTYPE_F16);
                }
                if (!r.ok) {
                    printf("| %-8s | %4d | failed: %s |\n", sh->name, N, jb_last_error());
                    continue;
                }
                const double gbs = bytes * r.decode_pps / 1e9;
                printf("| %-8s | %4d | %13.1f | %12.2f | %14.2f | %9.1f MB | %9.2f | %10.0f%% | "
                       "%14s | %8.0f |\n",
                       sh->name,
                       N,
                       r.prefill_tps,
                       r.decode_pps,
                       r.decode_tps,
                       bytes / 1e6,
                       gbs,
                       100.0 * gbs / read_gbs,
                       N == 1 ? sh->ref : "-",
                       r.state_mb);
                fflush(stdout);
            }
        }
        jb_prior_free(p);
        jb_backend_free(be);
        jb_weights_free(w);
        if (m) mm_free(m);
        (void)t_build;
    }
    printf("\ndecode pos/s: sampled positions per second per candidate (after %s); tokens/s (all) "
           "= pos/s x candidates.\nweights/step: fp32 matmul weights one step streams "
           "(transformer + output head), shared by the candidates of a batch.\n",
           "priming in chunks of 32");
    printf("\nKV cache precision (1 candidate; jb_session_set_kv_f16 / encore --kv-f16):\n"
           "| config   | KV fp32 MB | KV fp16 MB | state fp32 MB | state fp16 MB | decode pos/s "
           "fp32 | decode pos/s fp16 |\n"
           "|----------|------------|------------|---------------|---------------|-------------"
           "-----|-------------------|\n");
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        if (kv32[k].ok && kv16[k].ok)
            printf("| %-8s | %10.0f | %10.0f | %13.0f | %13.0f | %17.2f | %17.2f |\n",
                   shapes[k].name,
                   kv32[k].kv_mb,
                   kv16[k].kv_mb,
                   kv32[k].state_mb,
                   kv16[k].state_mb,
                   kv32[k].decode_pps,
                   kv16[k].decode_pps);
    if (dir) bench_preview(dir, threads);
    return 0;
}
