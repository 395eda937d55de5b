/*
 * bench/bench_gpu.c - decode speed of the CUDA backend at the released transformer shapes.
 *
 * For the upsampler shape (width 1920, depth 72, 1 head of 480, attn_order 2, B = 64) and the
 * 5b top-level shape (width 4800, depth 72, 8 heads of 150) with 1 and 16 candidates, one
 * decode step (per layer: layer norm, QKV GEMV, KV append + attention of the layer's kind over
 * an fp16 cache at mid-window, projection, layer norm, MLP, residuals; then the 2048-way head and
 * the on-device draw) is captured as a CUDA graph and replayed. Weights are fp16, one distinct
 * copy per layer (so the L2 cache cannot hold them), initialised with a constant pattern (values
 * do not change the time).
 *
 * Timing: each graph is replayed untimed for WARM_S first (clocks ramp up from idle; the first
 * row used to be measured cold), then for at least MIN_S in one timed run.
 *
 * Columns: tokens/s (all candidates), bytes one step must read (weights + KV), the achieved
 * fraction of the device's copy bandwidth (measured here with a 2 GiB device-to-device copy,
 * read + write), and the roofline: the tokens/s a step reading those bytes at the measured
 * bandwidth would give. The last table: seconds of audio per GPU-hour for the three-level
 * pipeline (5b top level + two upsamplers) from the measured rates, counting decode steps only
 * (priming runs as batched GEMMs and the VQ-VAE decode is a few percent; docs/cuda.md).
 *
 * After the main table, for every row, where the step's time goes: each op family (layer norm,
 * the four matmuls of a layer, KV append, attention, quick_gelu, the head, the draw) recorded
 * alone as a graph of the same launches and replayed, with its graph nodes, µs per step and,
 * for the matmuls and attention, the bytes it reads and the rate; then a graph of as many
 * one-thread kernels as the step has nodes (the launch floor of a replay), and the draw with
 * top-k 40 and with top-p 0.9 (the sort and serial parts of the sampler the main step does not
 * use).
 *
 * Without a CUDA device it prints the analytic roofline for the H100 SXM (3.35 TB/s) and H200
 * (4.8 TB/s) datasheet bandwidths, says that nothing was measured, and exits 0.
 *
 * Comparisons within one run: --no-pdl launches every kernel the ordinary way (no programmatic
 * dependent launch), --attn-split-keys K splits decode attention into blocks of about K keys
 * (a large K: one block per query), --gemv-max-splits S caps a GEMV's K-splits at S.
 */
#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_elementwise.cuh"
#include "backend/cuda/cuda_gemm.cuh"
#include "backend/cuda/cuda_norm.cuh"
#include "backend/cuda/cuda_sample.cuh"
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shape {
    const char *name;
    int width, depth, heads, T, B, vocab;
};

static const struct shape shapes[2] = {
    { "upsampler w1920 d72", 1920, 72, 1, 8192, 64, 2048 },
    { "5b top w4800 d72", 4800, 72, 8, 8192, 64, 2048 },
};

/* Tokens of audio per second at each level (hops 8, 32, 128 at 44.1 kHz). */
static const double tok_per_s[3] = { 44100.0 / 8, 44100.0 / 32, 44100.0 / 128 };

/* Bytes one decode step reads: fp16 weights of every layer (c_attn w x 3ns, c_proj ns x w, two
 * w x w MLP matrices) and the head, plus each layer's fp16 keys and values at mid-window. */
static double step_bytes(const struct shape *s, int N)
{
    const double w = s->width, ns = w / 4, hd = ns / s->heads;
    double kv = 0.0;
    for (int d = 0; d < s->depth; d++) {
        const int f     = 1 + d % 3;
        const double nk = f == 1 ? s->B / 2.0 : f == 2 ? s->T / 2.0 / s->B : s->B;
        kv += 2.0 * nk * hd * s->heads * 2.0 * N;
    }
    return (double)s->depth * (3.0 * w * w) * 2.0 + (double)s->vocab * w * 2.0 + kv;
}

struct layer {
    void *attn, *proj, *fc, *out; /* fp16 */
    float *g, *b;                 /* layer norm */
    struct jb_cuda_attn a;
};

struct net {
    const struct shape *s;
    int N;
    struct layer *L;
    void *head;
    float *h, *u, *qkv, *att, *m, *logits;
    int32_t *tok, *pos;
};

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((x) != JB_STATUS_OK) return JB_STATUS_ERR_DEVICE;                                      \
    } while (0)

static enum jb_status alloc_fill(struct jb_cuda *cu, size_t n, int byte, void **p)
{
    TRY(jb_cuda_malloc(cu, n, p));
    return jb_cuda_memset(cu, *p, byte, n);
}

static enum jb_status net_init(struct jb_cuda *cu, const struct shape *s, int N, struct net *n)
{
    memset(n, 0, sizeof *n);
    n->s = s, n->N = N;
    const size_t w = (size_t)s->width, ns = w / 4;
    n->L = calloc((size_t)s->depth, sizeof *n->L);
    if (!n->L) return JB_STATUS_ERR_NOMEM;
    for (int d = 0; d < s->depth; d++) {
        struct layer *l = &n->L[d];
        TRY(alloc_fill(cu, w * 3 * ns * 2, 0x11, &l->attn));
        TRY(alloc_fill(cu, ns * w * 2, 0x11, &l->proj));
        TRY(alloc_fill(cu, w * w * 2, 0x11, &l->fc));
        TRY(alloc_fill(cu, w * w * 2, 0x11, &l->out));
        TRY(alloc_fill(cu, w * 4, 0, (void **)&l->g));
        TRY(alloc_fill(cu, w * 4, 0, (void **)&l->b));
        const int f = 1 + d % 3;
        l->a        = (struct jb_cuda_attn){ .func  = f,
                                             .B     = s->B,
                                             .rows  = s->T / s->B,
                                             .cap   = f == 1   ? s->B
                                                      : f == 2 ? s->T
                                                               : 2 * s->B,
                                             .N     = N,
                                             .H     = s->heads,
                                             .hd    = (int)ns / s->heads,
                                             .scale = 0.05f,
                                             .type  = JB_DTYPE_F16 };
        TRY(alloc_fill(cu, jb_cuda_attn_cache_bytes(&l->a), 0x11, &l->a.k));
        TRY(alloc_fill(cu, jb_cuda_attn_cache_bytes(&l->a), 0x11, &l->a.v));
    }
    TRY(alloc_fill(cu, (size_t)s->vocab * w * 2, 0x11, &n->head));
    TRY(alloc_fill(cu, N * w * 4, 0, (void **)&n->h));
    TRY(alloc_fill(cu, N * w * 4, 0, (void **)&n->u));
    TRY(alloc_fill(cu, N * 3 * ns * 4, 0, (void **)&n->qkv));
    TRY(alloc_fill(cu, N * ns * 4, 0, (void **)&n->att));
    TRY(alloc_fill(cu, N * w * 4, 0, (void **)&n->m));
    TRY(alloc_fill(cu, (size_t)N * s->vocab * 4, 0, (void **)&n->logits));
    TRY(alloc_fill(cu, (size_t)N * 4, 0, (void **)&n->tok));
    const int32_t mid = s->T / 2 - 1;
    TRY(jb_cuda_malloc(cu, 4, (void **)&n->pos));
    TRY(jb_cuda_upload(cu, n->pos, &mid, 4));
    size_t arena = jb_cuda_matmul_arena(N, 3 * (int64_t)ns, (int64_t)w, JB_DTYPE_F16);
    size_t a2    = jb_cuda_matmul_arena(N, (int64_t)w, (int64_t)w, JB_DTYPE_F16);
    return jb_cuda_reserve(cu, arena > a2 ? arena : a2);
}

static void net_free(struct jb_cuda *cu, struct net *n)
{
    for (int d = 0; n->L && d < n->s->depth; d++) {
        struct layer *l = &n->L[d];
        jb_cuda_free(cu, l->attn), jb_cuda_free(cu, l->proj), jb_cuda_free(cu, l->fc);
        jb_cuda_free(cu, l->out), jb_cuda_free(cu, l->g), jb_cuda_free(cu, l->b);
        jb_cuda_free(cu, l->a.k), jb_cuda_free(cu, l->a.v);
    }
    free(n->L);
    jb_cuda_free(cu, n->head), jb_cuda_free(cu, n->h), jb_cuda_free(cu, n->u);
    jb_cuda_free(cu, n->qkv), jb_cuda_free(cu, n->att), jb_cuda_free(cu, n->m);
    jb_cuda_free(cu, n->logits), jb_cuda_free(cu, n->tok), jb_cuda_free(cu, n->pos);
}

/* Op families of a step, for the breakdown. F_TOPK and F_TOPP are not part of the step: the
 * draw with top-k 40 or top-p 0.9 instead of temperature only. */
enum fam {
    F_NORM,
    F_QKV,
    F_KV,
    F_ATTN,
    F_PROJ,
    F_FC,
    F_GELU,
    F_OUT,
    F_HEAD,
    F_SAMPLE,
    F_TOPK,
    F_TOPP,
    F_N
};
static const char *const fam_name[F_N] = {
    "layer norm (2/layer)", "qkv matmul",    "kv append",         "attention",
    "proj matmul",          "mlp fc matmul", "quick_gelu",        "mlp out matmul",
    "head matmul",          "sample (temp)", "sample (top-k 40)", "sample (top-p 0.9)"
};
#define STEP_ALL ((1u << F_TOPK) - 1)

/* Bytes family f reads per step, where it is a stream of weights or cache (0: not counted). */
static double fam_bytes(const struct shape *s, int N, int f)
{
    const double w = s->width, ns = w / 4, d = s->depth;
    switch (f) {
    case F_QKV:
        return d * w * 3 * ns * 2;
    case F_PROJ:
        return d * ns * w * 2;
    case F_FC:
    case F_OUT:
        return d * w * w * 2;
    case F_HEAD:
        return (double)s->vocab * w * 2;
    case F_ATTN:
        return step_bytes(s, N) - d * 3 * w * w * 2 - (double)s->vocab * w * 2;
    default:
        return 0.0;
    }
}

/* The ops of one decode step whose family is in mask, at the position in *pos (which it does
 * not advance: every replay measures the same mid-window step). */
static enum jb_status net_step(struct jb_cuda *cu, struct net *n, unsigned mask)
{
#define OP(f, call)                                                                                \
    do {                                                                                           \
        if (mask & (1u << (f))) TRY(call);                                                         \
    } while (0)
    const int64_t N = n->N, w = n->s->width, ns = w / 4;
    for (int d = 0; d < n->s->depth; d++) {
        struct layer *l = &n->L[d];
        OP(F_NORM, jb_cuda_layernorm(cu, N, w, n->h, l->g, l->b, 1e-5f, n->u));
        OP(F_QKV,
           jb_cuda_matmul(
             cu, N, 3 * ns, w, n->u, w, l->attn, JB_DTYPE_F16, false, NULL, n->qkv, 3 * ns, false));
        /* jb_cuda_attention_chunk of a decode step (device position, C = 1), in its two ops */
        OP(F_KV,
           jb_cuda_kv_append(cu, &l->a, 1, 0, n->pos, 0, 1, n->qkv + ns, n->qkv + 2 * ns, 3 * ns));
        OP(F_ATTN, jb_cuda_attention(cu, &l->a, 1, 0, n->pos, 0, 1, n->qkv, 3 * ns, n->att, ns));
        OP(F_PROJ,
           jb_cuda_matmul(
             cu, N, w, ns, n->att, ns, l->proj, JB_DTYPE_F16, false, NULL, n->h, w, true));
        OP(F_NORM, jb_cuda_layernorm(cu, N, w, n->h, l->g, l->b, 1e-5f, n->u));
        OP(F_FC,
           jb_cuda_matmul(cu, N, w, w, n->u, w, l->fc, JB_DTYPE_F16, false, NULL, n->m, w, false));
        OP(F_GELU, jb_cuda_quick_gelu(cu, N * w, n->m));
        OP(F_OUT,
           jb_cuda_matmul(cu, N, w, w, n->m, w, l->out, JB_DTYPE_F16, false, NULL, n->h, w, true));
    }
    OP(F_HEAD,
       jb_cuda_matmul(cu,
                      N,
                      n->s->vocab,
                      w,
                      n->h,
                      w,
                      n->head,
                      JB_DTYPE_F16,
                      true,
                      NULL,
                      n->logits,
                      n->s->vocab,
                      false));
    const struct jb_cuda_sample_params sp = { .temp = 0.99f, .seed = 1 };
    OP(F_SAMPLE,
       jb_cuda_sample(
         cu, &sp, (int)N, n->s->vocab, n->logits, n->s->vocab, n->pos, 0, n->tok, NULL, 0));
    const struct jb_cuda_sample_params tk = { .temp = 0.99f, .top_k = 40, .seed = 1 };
    OP(F_TOPK,
       jb_cuda_sample(
         cu, &tk, (int)N, n->s->vocab, n->logits, n->s->vocab, n->pos, 0, n->tok, NULL, 0));
    const struct jb_cuda_sample_params tp = { .temp = 0.99f, .top_p = 0.9f, .seed = 1 };
    OP(F_TOPP,
       jb_cuda_sample(
         cu, &tp, (int)N, n->s->vocab, n->logits, n->s->vocab, n->pos, 0, n->tok, NULL, 0));
#undef OP
    return JB_STATUS_OK;
}

/* `count` one-thread kernels: what replaying a graph of that many nodes costs at the least. */
static enum jb_status empty_step(struct jb_cuda *cu, struct net *n, size_t count)
{
    for (size_t i = 0; i < count; i++)
        TRY(jb_cuda_position_add(cu, n->tok, 0));
    return JB_STATUS_OK;
}

#define WARM_S 0.1 /* untimed replays first: clocks up, graph uploaded */
#define MIN_S 0.25 /* timed replays per row */

/* What a timed replay runs: the step's families in mask, or `empty` one-thread kernels. */
struct what {
    unsigned mask;
    size_t empty;
};

static enum jb_status run_once(struct jb_cuda *cu,
                               struct net *n,
                               struct what wh,
                               struct jb_cuda_graph *g)
{
    if (g) return jb_cuda_graph_launch(cu, g);
    return wh.empty ? empty_step(cu, n, wh.empty) : net_step(cu, n, wh.mask);
}

/* Records `wh` as a graph (direct launches when it cannot be recorded: *note says why), replays
 * it for warm s untimed, then at least min_s timed: seconds per replay in *dt, graph nodes in
 * *nodes (0 without a graph). */
static enum jb_status time_what(struct jb_cuda *cu,
                                struct net *n,
                                struct what wh,
                                double warm,
                                double min_s,
                                double *dt,
                                size_t *nodes,
                                char *note,
                                size_t note_len)
{
    struct jb_cuda_graph *g = NULL;
    enum jb_status st       = run_once(cu, n, wh, NULL); /* direct: grows nothing later */
    if (st == JB_STATUS_OK) st = jb_cuda_synchronize(cu);
    if (st == JB_STATUS_OK) st = jb_cuda_graph_begin(cu);
    if (st == JB_STATUS_OK) {
        const enum jb_status s2 = run_once(cu, n, wh, NULL);
        st                      = jb_cuda_graph_end(cu, &g);
        if (s2 != JB_STATUS_OK && st == JB_STATUS_OK) st = s2;
    }
    /* a step that cannot be recorded is timed with direct launches, as the engine then runs
     * it; the note says so */
    if (note_len) note[0] = '\0';
    if (st == JB_STATUS_ERR_UNSUPPORTED) {
        if (note_len) snprintf(note, note_len, "  (direct launches: %s)", jb_last_error());
        st = JB_STATUS_OK;
    }
    *nodes = jb_cuda_graph_nodes(g);
    /* warm-up in doubling batches; the last batch estimates the replay time */
    double est = 0.0, t_warm = 0.0;
    for (int batch = 1; st == JB_STATUS_OK && (t_warm < warm || batch <= 2); batch *= 2) {
        const double t0 = jb_time_now();
        for (int r = 0; r < batch && st == JB_STATUS_OK; r++)
            st = run_once(cu, n, wh, g);
        if (st == JB_STATUS_OK) st = jb_cuda_synchronize(cu);
        const double t = jb_time_now() - t0;
        t_warm += t;
        est = t / batch;
    }
    int reps = est > 0.0 ? (int)(min_s / est) + 1 : 10;
    if (reps < 10) reps = 10;
    const double t0 = jb_time_now();
    for (int r = 0; r < reps && st == JB_STATUS_OK; r++)
        st = run_once(cu, n, wh, g);
    if (st == JB_STATUS_OK) st = jb_cuda_synchronize(cu);
    *dt = (jb_time_now() - t0) / reps;
    jb_cuda_graph_free(g);
    return st;
}

/* Each family alone, the launch floor, and what they add up to, against the whole step. */
static void breakdown(struct jb_cuda *cu, struct net *n, double step_dt, size_t step_nodes)
{
    const struct shape *s = n->s;
    printf("\n%s, %d candidate%s: %.1f us per step, %zu graph nodes\n",
           s->name,
           n->N,
           n->N > 1 ? "s" : "",
           step_dt * 1e6,
           step_nodes);
    printf("  %-26s %6s %10s %8s %10s %8s\n",
           "family alone",
           "nodes",
           "us/step",
           "of step",
           "MB/step",
           "GB/s");
    double sum = 0.0;
    for (int f = 0; f < F_N; f++) {
        double dt    = 0.0;
        size_t nodes = 0;
        char note[400];
        const struct what wh = { 1u << f, 0 };
        if (time_what(cu, n, wh, 0.03, 0.1, &dt, &nodes, note, sizeof note) != JB_STATUS_OK) {
            printf("  %-26s failed: %s\n", fam_name[f], jb_last_error());
            continue;
        }
        if (f < F_TOPK) sum += dt;
        const double by = fam_bytes(s, n->N, f);
        printf("  %-26s %6zu %10.1f %7.1f%%", fam_name[f], nodes, dt * 1e6, 100.0 * dt / step_dt);
        if (by > 0.0) printf(" %10.1f %8.0f", by / 1e6, by / dt / 1e9);
        printf("%s\n", note);
    }
    printf(
      "  %-26s %6s %10.1f %7.1f%%\n", "sum of the families", "", sum * 1e6, 100.0 * sum / step_dt);
    double dt            = 0.0;
    size_t nodes         = 0;
    const struct what wh = { 0, step_nodes ? step_nodes : 1 };
    if (time_what(cu, n, wh, 0.03, 0.1, &dt, &nodes, NULL, 0) == JB_STATUS_OK)
        printf("  %-26s %6zu %10.1f %7.1f%%  (%.2f us per node)\n",
               "launch floor (empty nodes)",
               nodes,
               dt * 1e6,
               100.0 * dt / step_dt,
               nodes ? dt * 1e6 / (double)nodes : 0.0);
    else
        printf("  launch floor: failed: %s\n", jb_last_error());
}

static double copy_bandwidth(struct jb_cuda *cu)
{
    const size_t bytes = (size_t)2 << 30;
    void *a = NULL, *b = NULL;
    double bw = 0.0;
    if (jb_cuda_malloc(cu, bytes, &a) == JB_STATUS_OK &&
        jb_cuda_malloc(cu, bytes, &b) == JB_STATUS_OK) {
        const int64_t n = (int64_t)(bytes / 4);
        jb_cuda_copy2d(cu, 1, n, a, n, b, n);
        jb_cuda_synchronize(cu);
        const double t0 = jb_time_now();
        for (int i = 0; i < 10; i++)
            jb_cuda_copy2d(cu, 1, n, a, n, b, n);
        if (jb_cuda_synchronize(cu) == JB_STATUS_OK)
            bw = 10.0 * 2.0 * (double)bytes / (jb_time_now() - t0);
    }
    jb_cuda_free(cu, a), jb_cuda_free(cu, b);
    return bw;
}

static void print_roofline(const char *device, double bw)
{
    printf("\nroofline on %s (%.2f TB/s): a decode step cannot beat reading its bytes once\n",
           device,
           bw / 1e12);
    printf("%-22s %5s %12s %14s\n", "shape", "cand", "MB/step", "tokens/s max");
    for (int si = 0; si < 2; si++)
        for (int N = 1; N <= 16; N += 15) {
            const double by = step_bytes(&shapes[si], N);
            printf("%-22s %5d %12.1f %14.1f\n", shapes[si].name, N, by / 1e6, N * bw / by);
        }
    double tps[2][2];
    for (int si = 0; si < 2; si++)
        for (int k = 0; k < 2; k++) {
            const int N = k ? 16 : 1;
            tps[si][k]  = N * bw / step_bytes(&shapes[si], N);
        }
    for (int k = 0; k < 2; k++) {
        const double sec = tok_per_s[2] / tps[1][k] + (tok_per_s[1] + tok_per_s[0]) / tps[0][k];
        printf("three-level pipeline, %2d candidates: at most %.0f s of audio per GPU-hour\n",
               k ? 16 : 1,
               3600.0 / sec);
    }
}

int main(int argc, char **argv)
{
    int split_keys = 0;    /* --attn-split-keys K: keys per block of a split decode query */
    bool pdl       = true; /* --no-pdl: kernels wait for their predecessor to end */
    int max_splits = 0;    /* --gemv-max-splits S: at most S K-splits per GEMV */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--attn-split-keys") && i + 1 < argc) {
            split_keys = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--gemv-max-splits") && i + 1 < argc) {
            max_splits = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--no-pdl")) {
            pdl = false;
        } else {
            fprintf(stderr,
                    "usage: bench_gpu [--attn-split-keys K] [--gemv-max-splits S] [--no-pdl]\n");
            return 2;
        }
    }
    printf("bench_gpu: fp16 weights, fp16 KV cache, decode step as a CUDA graph\n");
    const char *why = NULL;
    if (jb_cuda_device_count(&why) == 0) {
        printf("no CUDA device (%s): nothing was measured on a GPU.\n", why ? why : "?");
        print_roofline("H100 SXM (datasheet)", 3.35e12);
        print_roofline("H200 (datasheet)", 4.8e12);
        return 0;
    }
    struct jb_cuda *cu = NULL;
    if (jb_cuda_open(0, &cu) != JB_STATUS_OK) {
        fprintf(stderr, "bench_gpu: %s\n", jb_last_error());
        return 1;
    }
    if (split_keys > 0) {
        jb_cuda_set_attn_split_keys(cu, split_keys);
        printf("decode attention split into blocks of about %d keys\n", split_keys);
    }
    if (max_splits > 0) {
        jb_cuda_set_gemv_max_splits(cu, max_splits);
        printf("GEMVs split K at most %d ways\n", max_splits);
    }
    if (!pdl) {
        jb_cuda_set_pdl(cu, false);
        printf("programmatic dependent launch off\n");
    }
    const double bw = copy_bandwidth(cu);
    printf("device: %s; copy bandwidth %.2f TB/s (2 GiB device-to-device, read + write)\n",
           jb_cuda_describe(cu),
           bw / 1e12);
    printf("%-22s %5s %12s %12s %10s %12s\n",
           "shape",
           "cand",
           "tokens/s",
           "MB/step",
           "of BW",
           "roofline/s");
    double tps[2][2] = { { 0 } }, step_dt[2][2] = { { 0 } };
    size_t step_nodes[2][2] = { { 0 } };
    for (int si = 0; si < 2; si++)
        for (int k = 0; k < 2; k++) {
            const int N = k ? 16 : 1;
            struct net n;
            char note[400]       = "";
            double dt            = 0.0;
            size_t nodes         = 0;
            enum jb_status st    = net_init(cu, &shapes[si], N, &n);
            const struct what wh = { STEP_ALL, 0 };
            if (st == JB_STATUS_OK)
                st = time_what(cu, &n, wh, WARM_S, MIN_S, &dt, &nodes, note, sizeof note);
            if (st != JB_STATUS_OK) {
                printf("%-22s %5d  failed: %s\n", shapes[si].name, N, jb_last_error());
            } else {
                const double by   = step_bytes(&shapes[si], N);
                tps[si][k]        = N / dt;
                step_dt[si][k]    = dt;
                step_nodes[si][k] = nodes;
                printf("%-22s %5d %12.1f %12.1f %9.1f%% %12.1f%s\n",
                       shapes[si].name,
                       N,
                       N / dt,
                       by / 1e6,
                       100.0 * by / dt / bw,
                       N * bw / by,
                       note);
            }
            net_free(cu, &n);
        }
    for (int k = 0; k < 2; k++) {
        if (tps[0][k] <= 0.0 || tps[1][k] <= 0.0) continue;
        const double sec = tok_per_s[2] / tps[1][k] + (tok_per_s[1] + tok_per_s[0]) / tps[0][k];
        printf(
          "three-level pipeline, %2d candidates: %.0f s of audio per GPU-hour (measured rates)\n",
          k ? 16 : 1,
          3600.0 / sec);
    }
    print_roofline("this device (measured copy bandwidth)", bw);
    printf("\nwhere the time goes: each op family of the step recorded alone and replayed\n");
    for (int si = 0; si < 2; si++)
        for (int k = 0; k < 2; k++) {
            if (step_dt[si][k] <= 0.0) continue;
            struct net n;
            if (net_init(cu, &shapes[si], k ? 16 : 1, &n) != JB_STATUS_OK) {
                printf("%s: %s\n", shapes[si].name, jb_last_error());
                net_free(cu, &n);
                continue;
            }
            breakdown(cu, &n, step_dt[si][k], step_nodes[si][k]);
            net_free(cu, &n);
        }
    jb_cuda_close(cu);
    return 0;
}
