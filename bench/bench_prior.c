/*
 * bench/bench_prior.c - prior sampling speed at three transformer shapes, against the
 * reference's CPU baselines (docs: reference-baseline.md, fp32, batch 1, t2b1), plus the time
 * to the first preview audio of a 5-second continuation on a model folder.
 *
 * usage: bench_prior [MODEL_DIR] [--threads N] [--quick] [--repeat N] [--shape NAME] [--ref
 * JSON]...
 *                    [--prime N] [--no-cond | --cond-only]
 * (--cond-only prints only the real upsampler conditioner's table, for w1920d72. --prime N primes
 * N positions instead of the shape's 32-64, so that the prefill column times a long priming, its
 * attention included, as `refbench ... --prime N` does; decode then follows N positions.)
 *
 * Each shape is an upsampler (n_ctx 8192, attn_order 2, blocks 128, m_attn 0.25, m_mlp 1,
 * labels (120, 4111)) with random fp32 weights built in memory behind a jb_weights_source:
 *   w256d8    width 256,  depth 8,  heads 2
 *   w1024d24  width 1024, depth 24, heads 4
 *   w1920d72  width 1920, depth 72, heads 1   (the released upsamplers' transformer)
 * (a one-stage conditioner stands in for the real one: it runs once per window, not per token).
 * For 1 and 4 candidates it primes a short context in chunks of 32 (the prefill column times that
 * priming alone; at w256d8 a priming of 1024 positions, as its short one takes ~3 ms), then
 * samples token by token and reports positions/s, tokens/s over all candidates, the weight bytes a
 * step reads and the effective weight bandwidth next to the machine's, measured here with a large
 * copy and sum. The rows of a shape (1 thread, N threads, and fp16 weights at w1920d72) run in
 * rounds, back to back: each row shows its best run, and the ratios within each round (median and
 * range) are printed after the table, so that the machine's noise is visible next to them.
 */
#include "backend/backend.h"
#include "backend/cpu/pool.h"
#include "model_builders.h"
#include "pipeline/pipeline.h"
#include "prior/conditioner.h"
#include "prior/prior.h"
#include "prior/sampler.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* random weights in memory: tests/common (model_builders.h)                                 */

struct shape {
    const char *name;
    int width, depth, heads;
    const char *ref;          /* reference ancestral tok/s, batch 1, t2b1 */
    int n_prime, n_sample[2]; /* priming tokens; sampled tokens with 1 and 4 candidates */
    int round_mult;           /* rounds: this times --repeat */
    int n_prefill;            /* positions the prefill column primes (0: n_prime) */
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

/* The upsampler's weights (conditioner_only: labels and conditioner); NULL on OOM. */
static struct tc_weights *upsampler_weights(const struct jb_prior_hparams *hp, bool cond_only)
{
    struct tc_weights *m = tc_weights_new(0x9e3779b97f4a7c15ULL);
    if (m && !tc_build_prior(tc_weights_sink(m), hp, cond_only)) tc_weights_free(m), m = NULL;
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

struct sum_task {
    const uint64_t *u;
    _Atomic uint64_t sum;
};

/* integer sum over 64-bit words in 4 independent lanes: vectorises, never latency-bound (a float
 * sum would be, without -ffast-math) */
static void sum_words(void *arg, int64_t b, int64_t e, int slot)
{
    struct sum_task *t = arg;
    uint64_t sum       = 0;
    (void)slot;
    for (int64_t i = b * 4; i < e * 4; i += 4)
        sum += (t->u[i] + t->u[i + 1]) + (t->u[i + 2] + t->u[i + 3]);
    atomic_fetch_add(&t->sum, sum);
}

/* One timed parallel sum of nq groups of 4 words over the pool's `threads` threads (a pool like
 * the backend's, one contiguous share per thread): GB/s read, 0 if the sum came out wrong. */
static double read_sum_gbs(struct jb_pool *pool, int threads, const uint64_t *u, int64_t nq)
{
    struct sum_task st = { u, 0 };
    const double t0    = jb_time_now();
    jb_pool_for(pool, nq, (nq + threads - 1) / threads, sum_words, &st);
    const double dt = jb_time_now() - t0;
    return st.sum != 1 ? (double)nq * 32.0 / dt / 1e9 : 0.0;
}

/* Copy bandwidth on one thread; read bandwidth of a sum over `threads` threads. */
static void bandwidth(int threads, double *copy_gbs, double *read_gbs)
{
    const size_t n       = (size_t)1 << 27; /* 512 MiB per buffer */
    float *a             = jb_aligned_alloc(n * sizeof(float));
    float *b             = jb_aligned_alloc(n * sizeof(float));
    struct jb_pool *pool = jb_pool_new(threads);
    *copy_gbs = *read_gbs = 0;
    if (!a || !b || !pool) goto done;
    memset(a, 1, n * sizeof(float));
    memset(b, 0, n * sizeof(float));
    for (int rep = 0; rep < 3; rep++) {
        double t0 = jb_time_now();
        memcpy(b, a, n * sizeof(float));
        double dt = jb_time_now() - t0;
        double g  = 2.0 * (double)n * sizeof(float) / dt / 1e9; /* read + write */
        if (g > *copy_gbs) *copy_gbs = g;
        g = read_sum_gbs(pool, threads, (const uint64_t *)b, (int64_t)(n / 8));
        if (g > *read_gbs) *read_gbs = g;
    }
done:
    jb_pool_free(pool);
    free(a);
    free(b);
}

/* The parallel sum again, between the rows' runs: this host's bandwidth moves by a quarter within
 * minutes (46-59 GB/s in one session's runs), so a row's "% sum BW" is also taken against sums
 * made just before and after its own runs (a 256 MiB buffer, best of 2 passes, ~30 ms). */
struct sum_probe {
    uint64_t *u;
    int64_t nq; /* groups of 4 words */
    struct jb_pool *pool;
    int threads;
};

static bool sum_probe_init(struct sum_probe *p, int threads)
{
    const size_t bytes = (size_t)256 << 20;
    p->u               = jb_aligned_alloc(bytes);
    p->nq              = (int64_t)(bytes / 32);
    p->pool            = jb_pool_new(threads);
    p->threads         = threads;
    if (p->u) memset(p->u, 1, bytes);
    return p->u && p->pool;
}

static double sum_probe_gbs(struct sum_probe *p)
{
    double best = 0;
    for (int rep = 0; p->u && p->pool && rep < 2; rep++) {
        const double g = read_sum_gbs(p->pool, p->threads, p->u, p->nq);
        if (g > best) best = g;
    }
    return best;
}

static void sum_probe_free(struct sum_probe *p)
{
    jb_pool_free(p->pool);
    free(p->u);
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
    double kv_mb;        /* of which KV caches */
    double init_s;       /* making the state (its block-kind KV caches zeroed: their page faults) */
    long steps, grouped; /* timed decode steps, and how many ran cut into candidate groups */
    bool ok;
};

static struct result run_shape(struct jb_backend *be,
                               struct jb_prior *p,
                               const struct jb_prior_hparams *hp,
                               int N,
                               int n_prime,
                               int n_prefill,
                               int n_sample,
                               enum jb_dtype kv_type)
{
    struct result r = { 0 };
    const int64_t T = hp->tr.seq_len, W = hp->tr.width;
    const double t_init       = jb_time_now();
    struct jb_prior_state *st = jb_prior_state_init_ex(p, N, 32, kv_type);
    r.init_s                  = jb_time_now() - t_init;
    float *x                  = jb_aligned_alloc((size_t)N * (size_t)T * (size_t)W * sizeof(float));
    float *semb               = jb_aligned_alloc((size_t)N * (size_t)W * sizeof(float));
    if (n_prefill < n_prime) n_prefill = n_prime; /* a shape's 0: its decode priming */
    const int n_out = n_prime + n_sample > n_prefill + 1 ? n_prime + n_sample : n_prefill + 1;
    int32_t *ctx    = malloc((size_t)N * (size_t)n_prefill * sizeof(int32_t));
    int32_t *out    = malloc((size_t)N * (size_t)n_out * sizeof(int32_t));
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
    for (int i = 0; i < N * n_prefill; i++)
        ctx[i] = (i * 2654435761u) % (uint32_t)hp->bins;
    if (jb_prior_state_set_cond(st, semb, x, NULL)) goto done;

    struct jb_sample_params sp = jb_sample_params_default();
    sp.temp                    = 0.99f;
    sp.chunk_size              = 32;
    struct tok_times tt        = { .first_t = -1 };
    /* priming alone, n_prefill positions, twice (the first run also faults in the caches): the
     * faster counts (the decode below primes n_prime of the same ids, read as [N, n_prime]: any
     * ids do) */
    for (int rep = 0; rep < 2; rep++) {
        double t0 = jb_time_now();
        if (jb_prior_sample(st, ctx, n_prefill, n_prefill + 1, &sp, out, NULL, NULL, NULL))
            goto done;
        double tps = n_prefill / (jb_time_now() - t0); /* includes one sampled token */
        if (tps > r.prefill_tps) r.prefill_tps = tps;
    }
    const long cut0 = jb_backend_group_steps(be);
    if (jb_prior_sample(st, ctx, n_prime, n_prime + n_sample, &sp, out, NULL, on_tok, &tt))
        goto done;
    r.steps   = n_sample;
    r.grouped = jb_backend_group_steps(be) - cut0;
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

/* The real upsampler conditioner (cond_width 1024, cond_depth 16, 2 stages of stride 2, prior
 * width 1920) on one 8192-token window, with 1 and `threads` threads: seconds per window, best of
 * 2, against the reference's get_cond time for the same shape (refbench conditioning_seconds). */
static void bench_conditioner(const struct shape *sh, int threads, double ref_s)
{
    struct jb_prior_hparams hp;
    upsampler_hparams(sh, &hp);
    hp.cond_width                = 1024;
    hp.cond_depth                = 16;
    hp.cond_downs                = 2;
    hp.cond_stride               = 2;
    struct tc_weights *m         = upsampler_weights(&hp, true);
    struct jb_weights_source src = tc_weights_source(m);
    struct jb_weights *w         = m ? jb_weights_init(&src) : NULL;
    float *x_cond    = jb_aligned_alloc((size_t)hp.n_ctx * (size_t)hp.tr.width * sizeof(float));
    double best[2]   = { INFINITY, INFINITY };
    const int thr[2] = { 1, threads };
    struct jb_backend *be[2]        = { NULL, NULL };
    struct jb_upsampler_cond *uc[2] = { NULL, NULL };
    int32_t *z                      = NULL;
    for (int t = 0; t < 2 && w && x_cond; t++) {
        be[t] = jb_backend_init("cpu", thr[t]);
        uc[t] = be[t] ? jb_upsampler_cond_init(&hp, w, be[t]) : NULL;
        if (!uc[t]) printf("conditioner: cannot build: %s\n", jb_last_error());
    }
    const int64_t nu = uc[0] ? jb_upsampler_cond_n_upper(uc[0]) : 0;
    z                = nu > 0 ? malloc((size_t)nu * sizeof *z) : NULL;
    for (int64_t i = 0; z && i < nu; i++)
        z[i] = (int32_t)((i * 2654435761u) % (uint32_t)hp.bins);
    /* A B A B: 1 and N threads interleaved, best of 2 each */
    for (int rep = 0; z && uc[0] && uc[1] && rep < 4; rep++) {
        const int t = rep % 2;
        double t0   = jb_time_now();
        if (jb_upsampler_cond_forward(uc[t], z, x_cond)) break;
        double dt = jb_time_now() - t0;
        if (dt < best[t]) best[t] = dt;
    }
    free(z);
    for (int t = 0; t < 2; t++) {
        jb_upsampler_cond_free(uc[t]);
        jb_backend_free(be[t]);
    }
    printf("\nupsampler conditioner (cond_width 1024, depth 16, 2 x stride 2, width 1920), one "
           "8192-token window:\n");
    printf("| threads | seconds/window | vs 1 thr | ref s/window | x ref |\n");
    printf("|---------|----------------|----------|--------------|-------|\n");
    for (int t = 0; t < 2; t++) {
        char r1[32] = "-", rr[32] = "-", rx[32] = "-";
        if (t) snprintf(r1, sizeof r1, "%.2fx", best[0] / best[1]);
        if (ref_s > 0) {
            snprintf(rr, sizeof rr, "%.2f", ref_s);
            snprintf(rx, sizeof rx, "%.1fx", ref_s / best[t]);
        }
        printf("| %7d | %14.3f | %8s | %12s | %5s |\n", thr[t], best[t], r1, rr, rx);
    }
    free(x_cond);
    jb_weights_free(w);
    tc_weights_free(m);
}

/* Reference ancestral tokens/s for `name` from refbench JSON files (bench_baseline.py prior NAME
 * --json FILE), 0 if none was given for it. */
static double ref_tps(char **files,
                      int n_files,
                      const char *name,
                      double *other_cores,
                      double *cond_s)
{
    for (int i = 0; i < n_files; i++) {
        size_t len = 0;
        char *txt  = NULL;
        FILE *f    = fopen(files[i], "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, 0, SEEK_SET);
            txt = sz > 0 ? malloc((size_t)sz + 1) : NULL;
            if (txt) len = fread(txt, 1, (size_t)sz, f);
            fclose(f);
        }
        if (!txt) {
            fprintf(stderr, "bench_prior: cannot read %s\n", files[i]);
            continue;
        }
        txt[len]       = 0;
        cJSON *j       = cJSON_Parse(txt);
        const cJSON *c = cJSON_GetObjectItem(j, "config");
        const cJSON *t = cJSON_GetObjectItem(j, "ancestral_decode_tokens_per_s");
        const cJSON *o = cJSON_GetObjectItem(j, "other_processes_cpu_cores_avg");
        double v       = 0;
        if (cJSON_IsString(c) && strcmp(c->valuestring, name) == 0 && cJSON_IsNumber(t)) {
            v = t->valuedouble;
            if (other_cores) *other_cores = cJSON_IsNumber(o) ? o->valuedouble : -1;
            const cJSON *cs = cJSON_GetObjectItem(j, "conditioning_seconds");
            if (cond_s) *cond_s = cJSON_IsNumber(cs) ? cs->valuedouble : 0;
        }
        cJSON_Delete(j);
        free(txt);
        if (v > 0) return v;
    }
    return 0;
}

/* Ratios of the rows' runs within each round (run back to back): median and range, printed
 * after the table, so that the noise of the machine shows next to the best-of figures. */
#define MAX_ROUNDS 32
static char g_rounds[8][300];
static int g_n_rounds;

static int spread(char *out, size_t size, const char *what, double *v, int n)
{
    if (n < 1) return 0;
    tc_sort_doubles(v, (size_t)n);
    double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return snprintf(
      out, size, "%s%s%.2fx (%.2f-%.2f)", what, what[0] ? " " : "", med, v[0], v[n - 1]);
}

static void round_summary(const char *shape,
                          int N,
                          int threads,
                          double *thr_ratio,
                          double *pre_ratio,
                          int n_thr,
                          double *f16_ratio,
                          int n_f16,
                          double *bw_share,
                          int n_bw,
                          const long cut[2],
                          const long steps[2])
{
    if (g_n_rounds >= 8 || (n_thr < 1 && n_f16 < 1)) return;
    char *line  = g_rounds[g_n_rounds++];
    size_t size = sizeof g_rounds[0];
    int len     = snprintf(line, size, "  %-8s %d cand, %d rounds: ", shape, N, n_thr);
    char what[48];
    snprintf(what, sizeof what, "%d thr / 1 thr", threads);
    len += spread(line + len, size - (size_t)len, what, thr_ratio, n_thr);
    if (n_thr > 0 && len < (int)size - 2) {
        len += snprintf(line + len, size - (size_t)len, ", ");
        len += spread(line + len, size - (size_t)len, "prefill", pre_ratio, n_thr);
    }
    if (n_f16 > 0 && len < (int)size - 2) {
        len += snprintf(line + len, size - (size_t)len, ", ");
        len += spread(line + len, size - (size_t)len, "fp16 / fp32", f16_ratio, n_f16);
    }
    if (n_bw > 0 && len < (int)size - 2) {
        len += snprintf(line + len, size - (size_t)len, ", ");
        snprintf(what, sizeof what, "%d thr eff / round's sum", threads);
        len += spread(line + len, size - (size_t)len, what, bw_share, n_bw);
    }
    /* the share tuner's candidate groups (share_tuner.h): how many timed steps ran cut */
    for (int i = 0; i < 2 && len < (int)size - 2; i++)
        if (steps[i] > 0 && N > 1)
            len += snprintf(line + len,
                            size - (size_t)len,
                            ", %s steps in groups %.0f%%",
                            i ? "fp16" : "fp32",
                            100.0 * (double)cut[i] / (double)steps[i]);
}

static struct result best_of(struct result a, struct result b)
{
    if (!a.ok) return b;
    if (!b.ok) return a;
    if (b.decode_tps > a.decode_tps) a.decode_pps = b.decode_pps, a.decode_tps = b.decode_tps;
    if (b.prefill_tps > a.prefill_tps) a.prefill_tps = b.prefill_tps;
    if (b.init_s < a.init_s) a.init_s = b.init_s;
    return a;
}

static void print_row(const struct shape *sh,
                      const char *wt,
                      int N,
                      int thr,
                      const struct result *r,
                      double vs1,
                      double bytes,
                      double read_gbs,
                      double ref,
                      double fp16_ratio)
{
    if (!r->ok) {
        printf("| %-8s | %s | %4d | %3d | failed: %s |\n", sh->name, wt, N, thr, jb_last_error());
        return;
    }
    const double gbs = bytes * r->decode_pps / 1e9;
    char s_vs1[32] = "-", s_ref[32] = "-", s_xref[32] = "-", s_f16[32] = "-";
    if (vs1 > 0) snprintf(s_vs1, sizeof s_vs1, "%.2fx", vs1);
    if (N == 1 && ref > 0) {
        snprintf(s_ref, sizeof s_ref, "%.2f", ref);
        snprintf(s_xref, sizeof s_xref, "%.1fx", r->decode_tps / ref);
    } else if (N == 1) {
        snprintf(s_ref, sizeof s_ref, "%s", sh->ref);
    }
    if (fp16_ratio > 0) snprintf(s_f16, sizeof s_f16, "%.2fx", fp16_ratio);
    printf("| %-8s | %s | %4d | %3d | %13.1f | %12.2f | %9.2f | %8s | %9.1f MB | %8.2f | %7.0f%% | "
           "%9s | %6s | %7s | %8.0f |\n",
           sh->name,
           wt,
           N,
           thr,
           r->prefill_tps,
           r->decode_pps,
           r->decode_tps,
           s_vs1,
           bytes / 1e6,
           gbs,
           100.0 * gbs / read_gbs,
           s_ref,
           s_xref,
           s_f16,
           r->state_mb);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *dir  = NULL;
    const char *only = NULL;
    int threads      = 0;
    bool quick       = false;
    int repeats      = 2; /* interleaved runs per thread count, the best counts */
    bool no_cond     = false;
    bool cond_only   = false; /* only the upsampler conditioner table */
    int prime        = 0;     /* --prime: positions to prime, else the shape's */
    char *refs[8]    = { 0 };
    int n_refs       = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            repeats = atoi(argv[++i]);
            if (repeats < 1) repeats = 2;
        } else if (strcmp(argv[i], "--no-cond") == 0)
            no_cond = true;
        else if (strcmp(argv[i], "--cond-only") == 0)
            cond_only = true;
        else if (strcmp(argv[i], "--prime") == 0 && i + 1 < argc) {
            prime = atoi(argv[++i]);
            if (prime < 1 || prime > 4096) {
                fprintf(stderr, "bench_prior: --prime takes 1 to 4096 positions\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--ref") == 0 && i + 1 < argc && n_refs < 8)
            refs[n_refs++] = argv[++i];
        else if (argv[i][0] != '-')
            dir = argv[i];
        else {
            fprintf(
              stderr,
              "usage: bench_prior [MODEL_DIR] [--threads N] [--quick] [--repeat N] "
              "[--shape NAME] [--ref REFBENCH.json]... [--prime N] [--no-cond | --cond-only]\n");
            return 2;
        }
    }
    if (threads <= 0) {
        long n  = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)(n < 64 ? n : 64) : 1;
    }
    double copy_gbs, read_gbs;
    bandwidth(threads, &copy_gbs, &read_gbs);
    double load[3] = { 0 };
    getloadavg(load, 3);
    printf("bench_prior: 1 and %d thread(s); memory bandwidth: copy %.1f GB/s (read+write, 1 "
           "thread), parallel sum %.1f GB/s (read, %d threads); load average %.2f\n",
           threads,
           copy_gbs,
           read_gbs,
           threads,
           load[0]);
    printf("reference: refbench JSON given with --ref (same run), else reference-baseline.md "
           "(openai/jukebox CPU, fp32, batch 1, t2b1)\n\n");

    /* w256d8 samples 2048 / 1024 tokens: a job samples thousands per window, and at this width
     * a run's first ~hundred steps after a 2-thread priming cost more (2 thr / 1 thr at 4
     * candidates: 0.97-0.98 over 256 steps, 1.00 with nothing shared at all, 0.99 over 2048).
     * It runs three times the rounds: its runs take about a second, and its 2 thr / 1 thr ratio
     * swings by up to ±15% from one run to the next (the vCPUs' round trip), so the median of
     * two rounds could not tell 0.95 from 1.00 (05 Dec, one build, 4 candidates: medians of
     * 0.90-1.02x over 2 rounds, 0.99-1.00x over 6).
     * Its prefill column primes 1024 positions (the decode still follows 64): a 64-position
     * priming takes ~3 ms, and its 2 thr / 1 thr medians were 0.91-1.03x at 1 candidate where
     * 256, 512 and 2048 positions gave 1.22x, 1.22x and 1.42x (07 Dec, an Intel Xeon host, 6
     * rounds each): a figure of the first chunks' start, not of priming. */
    static const struct shape shapes[] = {
        { "w256d8", 256, 8, 2, "632-684", 64, { 2048, 1024 }, 3, 1024 },
        { "w1024d24", 1024, 24, 4, "30.5-31.1", 64, { 128, 64 }, 1, 0 },
        { "w1920d72", 1920, 72, 1, "3.44", 32, { 24, 12 }, 1, 0 },
    };
    struct result kv32[3] = { 0 }, kv16[3] = { 0 };
    double kv_ratio[3][MAX_ROUNDS]; /* per round: fp16 KV decode pos/s over fp32 KV, same round */
    int n_kv[3]         = { 0 };
    double init_s[3][2] = { { 0 } }; /* state set-up, 1 and 4 candidates, `threads` */
    if (!cond_only) {
        printf("| config   | wt   | cand | thr | prefill pos/s | decode pos/s |  tokens/s "
               "| vs 1 thr | weights/step | eff GB/s | %% sum BW | ref tok/s | x ref  | fp16/32 "
               "| state MB |\n");
        printf("|----------|------|------|-----|---------------|--------------|-----------"
               "|----------|--------------|----------|----------|-----------|--------|---------"
               "|----------|\n");
    }
    struct jb_backend *be1 = jb_backend_init("cpu", 1);
    struct jb_backend *beT = jb_backend_init("cpu", threads);
    struct sum_probe probe = { 0 };
    if (!be1 || !beT) {
        fprintf(stderr, "bench_prior: cpu backend: %s\n", jb_last_error());
        return 1;
    }
    if (!cond_only && !sum_probe_init(&probe, threads)) { /* the token tables' bandwidth probe */
        fprintf(stderr, "bench_prior: cannot reserve the 256 MiB bandwidth probe or its pool\n");
        return 1;
    }
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const struct shape *sh = &shapes[k];
        if (only && strcmp(only, sh->name) != 0) continue;
        const int n_prime   = prime > 0 ? prime : sh->n_prime;
        const int n_prefill = prime > 0 ? prime : sh->n_prefill; /* run_shape: >= n_prime */
        struct jb_prior_hparams hp;
        upsampler_hparams(sh, &hp);
        double other = -1, ref_cond = 0;
        const double ref = ref_tps(refs, n_refs, sh->name, &other, &ref_cond);
        if (cond_only) {
            if (k == 2) bench_conditioner(sh, threads, ref_cond);
            continue;
        }
        const double bytes = step_weight_bytes(&hp);
        /* fp32 weights at 1 and `threads` threads, and for the real upsampler shape the same
         * weights stored fp16 (as jb_import stores them) at `threads`: all built first, then run
         * interleaved (A B C A B C ...), so that the thread and fp16/32 ratios compare runs made
         * under the same load */
        const int n_wt          = k == 2 ? 2 : 1;
        struct tc_weights *m[2] = { NULL, NULL };
        struct jb_weights *w[2] = { NULL, NULL };
        struct jb_prior *p1 = NULL, *pT[2] = { NULL, NULL };
        bool built = true;
        for (int t = 0; t < n_wt && built; t++) {
            m[t] = upsampler_weights(&hp, false);
            if (m[t] && t == 1 && !tc_weights_to_storage(m[t], JB_DTYPE_F16))
                tc_weights_free(m[t]), m[t] = NULL;
            struct jb_weights_source src = tc_weights_source(m[t]);
            w[t]                         = m[t] ? jb_weights_init(&src) : NULL;
            if (w[t] && t == 0) p1 = jb_prior_init(&hp, w[t], be1);
            pT[t] = w[t] ? jb_prior_init(&hp, w[t], beT) : NULL;
            built = pT[t] && (t > 0 || p1);
        }
        struct result r16[2] = { { 0 } }, r32[2] = { { 0 } };
        for (int b = 0; b < 2 && built; b++) {
            const int N  = b ? 4 : 1;
            int n_sample = sh->n_sample[b];
            if (quick) n_sample = n_sample / 4 > 8 ? n_sample / 4 : 8;
            /* each row the best of `repeats` runs (--repeat, default 2), times the shape's
             * round_mult */
            struct result r1 = { 0 }, rT = { 0 };
            double thr_ratio[MAX_ROUNDS], pre_ratio[MAX_ROUNDS], f16_ratio[MAX_ROUNDS];
            double bw_share[MAX_ROUNDS];
            int n_thr = 0, n_f16 = 0, n_bw = 0;
            long cut[2] = { 0, 0 }, steps[2] = { 0, 0 }; /* threaded runs, fp32 and fp16 */
            for (int rep = 0; rep < repeats * sh->round_mult; rep++) {
                struct result a =
                  run_shape(be1, p1, &hp, N, n_prime, n_prefill, n_sample, JB_DTYPE_F32);
                const double sum0 = sum_probe_gbs(&probe);
                struct result c =
                  run_shape(beT, pT[0], &hp, N, n_prime, n_prefill, n_sample, JB_DTYPE_F32);
                const double sum1 = sum_probe_gbs(&probe);
                struct result h   = { 0 };
                if (n_wt == 2)
                    h = run_shape(beT, pT[1], &hp, N, n_prime, n_prefill, n_sample, JB_DTYPE_F32);
                if (N == 1) { /* KV cache precision, at `threads`, right after the fp32 KV run */
                    struct result q =
                      run_shape(beT, pT[0], &hp, N, n_prime, n_prefill, n_sample, JB_DTYPE_F16);
                    kv16[k] = best_of(kv16[k], q);
                    if (c.ok && q.ok && n_kv[k] < MAX_ROUNDS)
                        kv_ratio[k][n_kv[k]++] = q.decode_pps / c.decode_pps;
                }
                if (c.ok) cut[0] += c.grouped, steps[0] += c.steps;
                if (h.ok) cut[1] += h.grouped, steps[1] += h.steps;
                r1     = best_of(r1, a);
                rT     = best_of(rT, c);
                r16[b] = best_of(r16[b], h);
                if (a.ok && c.ok && n_thr < MAX_ROUNDS) {
                    pre_ratio[n_thr]   = c.prefill_tps / a.prefill_tps;
                    thr_ratio[n_thr++] = c.decode_tps / a.decode_tps;
                }
                if (c.ok && h.ok && n_f16 < MAX_ROUNDS)
                    f16_ratio[n_f16++] = h.decode_tps / c.decode_tps;
                if (c.ok && sum0 > 0 && sum1 > 0 && n_bw < MAX_ROUNDS)
                    bw_share[n_bw++] = bytes * c.decode_pps / 1e9 / (0.5 * (sum0 + sum1));
            }
            round_summary(sh->name,
                          N,
                          threads,
                          thr_ratio,
                          pre_ratio,
                          n_thr,
                          f16_ratio,
                          n_f16,
                          bw_share,
                          n_bw,
                          cut,
                          steps);
            print_row(sh, "fp32", N, 1, &r1, 0, bytes, read_gbs, ref, 0);
            print_row(sh,
                      "fp32",
                      N,
                      threads,
                      &rT,
                      r1.ok && rT.ok ? rT.decode_tps / r1.decode_tps : 0,
                      bytes,
                      read_gbs,
                      ref,
                      0);
            r32[b]       = rT;
            init_s[k][b] = rT.ok ? rT.init_s : 0;
            if (N == 1) kv32[k] = rT;
        }
        for (int b = 0; b < 2 && built && n_wt == 2; b++)
            print_row(sh,
                      "fp16",
                      b ? 4 : 1,
                      threads,
                      &r16[b],
                      0,
                      bytes / 2, /* the output head is fp16 too */
                      read_gbs,
                      0,
                      r16[b].ok && r32[b].ok ? r16[b].decode_tps / r32[b].decode_tps : 0);
        if (!built) printf("| %-8s | could not build the prior: %s |\n", sh->name, jb_last_error());
        jb_prior_free(p1);
        for (int t = 0; t < 2; t++) {
            jb_prior_free(pT[t]);
            jb_weights_free(w[t]);
            tc_weights_free(m[t]);
        }
        if (k == 2 && !no_cond) bench_conditioner(sh, threads, ref_cond);
        if (ref > 0)
            printf("| %-8s | reference measured in this run: %.2f tok/s (other processes: %.2f "
                   "cores) |\n",
                   sh->name,
                   ref,
                   other);
    }
    jb_backend_free(be1);
    jb_backend_free(beT);
    sum_probe_free(&probe);
    if (cond_only) return 0; /* the decode legends and tables below have no rows */
    getloadavg(load, 3);
    printf("\ndecode pos/s: sampled positions per second per candidate (after %s); tokens/s = "
           "pos/s x candidates.\nvs 1 thr: tokens/s against the same row with one thread (same "
           "run; best of %d interleaved runs each, w256d8 three times as many, the fp16 rows' runs "
           "interleaved with them too). "
           "weights/step: matmul "
           "weights one step streams "
           "(transformer + output head), "
           "shared by the candidates of a batch. %% sum BW: eff. GB/s against the parallel "
           "sum measured at the start.\nx ref: tokens/s against the reference's ancestral tokens/s "
           "(batch 1). fp16/32: "
           "tokens/s with the weights stored fp16 (as `encore models fetch` installs them: every "
           "matrix, output head included) against fp32, same threads.\nload average "
           "at the end: %.2f (the machine is shared: figures are noisy)\n",
           prime > 0 ? "priming --prime positions in chunks of 32" : "priming in chunks of 32",
           repeats,
           load[0]);
    if (g_n_rounds > 0)
        printf("\nratios within each round (the rows' runs back to back): median (min-max); "
               "prefill: the same for the priming rate; eff / round's sum: the threaded fp32 "
               "run's eff. GB/s against the parallel sum measured just before and after it; "
               "steps in groups: the threaded runs' timed steps that the CPU backend's tuner cut "
               "into candidate groups, one per thread (docs/design.md, Threads)\n");
    for (int i = 0; i < g_n_rounds; i++)
        printf("%s\n", g_rounds[i]);
    printf(
      "\nstate set-up (jb_prior_state_init_ex, fp32 KV, %d thread(s); the block-kind KV caches "
      "are zeroed there, so their first-touch page faults are not in the token loop):\n",
      threads);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        if (init_s[k][0] > 0)
            printf("  %-8s  1 candidate %.2f s, 4 candidates %.2f s\n",
                   shapes[k].name,
                   init_s[k][0],
                   init_s[k][1]);
    printf("\nKV cache precision (1 candidate, %d threads; jb_session_set_kv_f16 / encore "
           "--kv-f16; each round's fp16 KV run right after its fp32 KV run, best of the rounds; "
           "fp16 / fp32: the rounds' ratios, median (min-max)):\n"
           "| config   | KV fp32 MB | KV fp16 MB | state fp32 MB | state fp16 MB | decode pos/s "
           "fp32 | decode pos/s fp16 | fp16 / fp32        |\n"
           "|----------|------------|------------|---------------|---------------|--------------"
           "-----|-------------------|--------------------|\n",
           threads);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        if (kv32[k].ok && kv16[k].ok) {
            char rs[64] = "-";
            if (n_kv[k] > 0) spread(rs, sizeof rs, "", kv_ratio[k], n_kv[k]);
            printf("| %-8s | %10.0f | %10.0f | %13.0f | %13.0f | %17.2f | %17.2f | %-18s |\n",
                   shapes[k].name,
                   kv32[k].kv_mb,
                   kv16[k].kv_mb,
                   kv32[k].state_mb,
                   kv16[k].state_mb,
                   kv32[k].decode_pps,
                   kv16[k].decode_pps,
                   rs);
        }
    if (dir) bench_preview(dir, threads);
    return 0;
}
