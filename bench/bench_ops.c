/*
 * bench/bench_ops.c - micro-benchmark of the CPU kernels at the shapes that dominate Encore:
 * the VQ-VAE level-0 convolutions, the token-by-token matmuls of the priors (M = 1 and 4
 * candidates, weights streamed from memory or from cache: with 4 rows of fp16 x the in-cache
 * rate is the kernel's arithmetic ceiling), a prefill-sized matmul (M = 32), the GEMVs of a
 * w1920d72 token step in sequence, the same matmuls for a 32-position prefill chunk, and the
 * element-wise ops of a token step (quick_gelu, layer norm) for 1 and 4 candidates.
 *
 * usage: bench_ops [n_threads] [isa: portable|avx2|avx512] [seconds per case] [case filter]
 * (the filter: only the cases whose name contains it, e.g. "token step")
 * Prints one table row per case: the median time of repeated runs and GFLOP/s (convolutions,
 * M = 32) or GB/s of weights read (M = 1 and 4).
 */
#include "backend/cpu/cpu.h"
#include "backend/ops.h"
#include "test_common.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double g_min_seconds = 0.5;
static const char *g_only; /* run only the cases whose name contains this */

static bool wanted(const char *name)
{
    return !g_only || strstr(name, g_only) != NULL;
}

/* n uniform values in [-scale, scale) from tests/common's RNG */
static float *rnd_buf(size_t n, float scale)
{
    static uint64_t rng = 12345;
    float *p            = jb_aligned_alloc(n * sizeof(float));
    if (p) tc_rng_fill(&rng, p, n, scale);
    return p;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct timing {
    double median, best; /* wall seconds per call */
    double cpu;          /* process CPU seconds per call (all threads) */
};

/* Wall time per call of fn(ctx, i) over runs of at least g_min_seconds in total. On a shared
 * machine the best time and the CPU time show the kernel, the median what a user would see. */
static struct timing time_it(void (*fn)(void *ctx, int i), void *ctx)
{
    double t[1024];
    int n = 0;
    fn(ctx, 0); /* warm-up */
    double start = jb_time_now(), c0 = cpu_now();
    while (n < 1024 && (n < 5 || jb_time_now() - start < g_min_seconds)) {
        double t0 = jb_time_now();
        fn(ctx, n + 1);
        t[n++] = jb_time_now() - t0;
    }
    double cpu = (cpu_now() - c0) / n;
    tc_sort_doubles(t, (size_t)n);
    return (struct timing){ t[n / 2], t[0], cpu };
}

static int g_threads;

/* one table row; work is FLOPs (unit "GFLOP/s") or bytes (unit "GB/s") per call */
static void print_row(const char *name, struct timing tm, double work, const char *unit)
{
    printf("| %-44s | %9.3f | %9.3f | %8.1f | %8.1f | %8.1f | %-7s |\n",
           name,
           tm.median * 1e3,
           tm.best * 1e3,
           work / tm.median * 1e-9,
           work / tm.best * 1e-9,
           work / (tm.cpu / g_threads) * 1e-9,
           unit);
}

/* --- cases ----------------------------------------------------------------------------------- */

struct conv_case {
    struct jb_backend *be;
    float *x, *y, *scratch;
    int64_t T;
    struct jb_tensor w, b;
    int s, p, d;
    bool transpose;
    float
      *wino_work; /* non-NULL: the k = 3 conv by Winograd F(4,3), as the wide resblocks run it */
};

static void run_conv(void *ctx, int i)
{
    struct conv_case *c = ctx;
    (void)i;
    if (c->wino_work)
        jb_cpu_conv3_winograd(
          jb_cpu_of(c->be), c->x, c->T, &c->w, &c->b, c->d, true, true, c->y, c->T, c->wino_work);
    else if (c->transpose)
        jb_conv_transpose1d(c->be, c->x, c->T, &c->w, &c->b, c->s, c->p, c->y, c->scratch);
    else
        jb_conv1d(c->be, c->x, c->T, &c->w, &c->b, c->s, c->p, c->d, c->y, c->scratch);
}

static void bench_conv(struct jb_backend *be,
                       const char *name,
                       int64_t Cin,
                       int64_t Cout,
                       int k,
                       int64_t T,
                       int s,
                       int p,
                       int d,
                       bool transpose)
{
    if (!wanted(name)) return;
    /* Winograd runs on the SIMD levels only (elsewhere the call would do nothing) */
    if (strstr(name, "winograd") && jb_cpu_of(be)->isa < JB_CPU_ISA_AVX2) return;
    struct conv_case c = { .be = be, .T = T, .s = s, .p = p, .d = d, .transpose = transpose };
    int64_t Tout =
      transpose ? jb_conv_transpose1d_out_len(T, k, s, p) : jb_conv1d_out_len(T, k, s, p, d);
    size_t ns = transpose ? jb_conv_transpose1d_scratch(Cin, Cout, T, k, s, p)
                          : jb_conv1d_scratch(Cin, Cout, T, k, s, p, d);
    c.x       = rnd_buf((size_t)(Cin * T), 1.0f);
    c.y       = rnd_buf((size_t)(Cout * Tout), 1.0f);
    c.scratch = ns ? rnd_buf(ns, 0.0f) : NULL;
    c.w       = (struct jb_tensor){ .type   = JB_DTYPE_F32,
                                    .n_dims = 3,
                                    .shape  = { transpose ? Cin : Cout, transpose ? Cout : Cin, k },
                                    .data   = rnd_buf((size_t)(Cin * Cout * k), 0.1f) };
    c.b       = (struct jb_tensor){
              .type = JB_DTYPE_F32, .n_dims = 1, .shape = { Cout }, .data = rnd_buf((size_t)Cout, 0.1f)
    };
    if (strstr(name, "winograd")) c.wino_work = rnd_buf(jb_cpu_winograd_work(Cin, Cout), 0.0f);
    struct timing tm = time_it(run_conv, &c);
    double flops     = 2.0 * (double)Cin * (double)Cout * k * (double)(transpose ? T : Tout);
    print_row(name, tm, flops, "GFLOP/s");
    free(c.x), free(c.y), free(c.scratch), free(c.w.data), free(c.b.data), free(c.wino_work);
}

struct gemm_case {
    struct jb_backend *be;
    float *w, *x, *y;
    int64_t rows, inner, n, ld;
};

static void run_gemm(void *ctx, int i)
{
    struct gemm_case *c = ctx;
    (void)i;
    jb_cpu_gemm_direct(
      jb_cpu_of(c->be), c->w, c->inner, 1, c->rows, c->inner, c->x, c->ld, c->n, c->y, c->ld);
}

/* One product of the direct kernel as Winograd runs six per chunk of tiles (rows ld apart). */
static void bench_gemm(struct jb_backend *be,
                       const char *name,
                       int64_t rows,
                       int64_t inner,
                       int64_t n,
                       int64_t ld)
{
    if (!wanted(name) || jb_cpu_of(be)->isa < JB_CPU_ISA_AVX2) return; /* SIMD levels only */
    struct gemm_case c = { be,
                           rnd_buf((size_t)(rows * inner), 0.1f),
                           rnd_buf((size_t)(inner * ld), 1.0f),
                           rnd_buf((size_t)(rows * ld), 1.0f),
                           rows,
                           inner,
                           n,
                           ld };
    struct timing tm   = time_it(run_gemm, &c);
    print_row(name, tm, 2.0 * (double)rows * (double)inner * (double)n, "GFLOP/s");
    free(c.w), free(c.x), free(c.y);
}

struct mm_case {
    struct jb_backend *be;
    int64_t M, N, K;
    float *x, *y, *bias;
    struct jb_tensor w[16];
    int n_w;
};

static void run_mm(void *ctx, int i)
{
    struct mm_case *c  = ctx;
    struct jb_tensor b = { .type = JB_DTYPE_F32, .n_dims = 1, .shape = { c->N }, .data = c->bias };
    jb_matmul(c->be, c->M, c->N, c->K, c->x, c->K, &c->w[i % c->n_w], false, &b, c->y, c->N, false);
}

/* n_w distinct weight matrices used in turn: 1 = cache-resident, 16 = streamed from DRAM */
static void bench_matmul(struct jb_backend *be,
                         const char *name,
                         enum jb_dtype type,
                         int64_t M,
                         int64_t N,
                         int64_t K,
                         int n_w)
{
    if (!wanted(name)) return;
    struct mm_case c = { .be = be, .M = M, .N = N, .K = K, .n_w = n_w };
    c.x              = rnd_buf((size_t)(M * K), 1.0f);
    c.y              = rnd_buf((size_t)(M * N), 1.0f);
    c.bias           = rnd_buf((size_t)N, 1.0f);
    float *wf        = rnd_buf((size_t)(K * N), 0.05f);
    for (int i = 0; i < n_w; i++) {
        void *wq = jb_aligned_alloc((size_t)(K * N) * jb_dtype_size(type));
        jb_convert_from_f32(type, wf, wq, (size_t)(K * N));
        c.w[i] = (struct jb_tensor){ .type = type, .n_dims = 2, .shape = { K, N }, .data = wq };
    }
    struct timing tm = time_it(run_mm, &c);
    if (M <= 4)
        print_row(name, tm, (double)(K * N) * (double)jb_dtype_size(type), "GB/s");
    else
        print_row(name, tm, 2.0 * (double)(M * N * K), "GFLOP/s");
    for (int i = 0; i < n_w; i++)
        free(c.w[i].data);
    free(c.x), free(c.y), free(c.bias), free(wf);
}

/* The matmuls of a w1920d72 token step (the released upsamplers' transformer) for M rows (1 or 4
 * candidates; 32 for a prefill chunk), one layer after another as the prior runs them: per layer
 * x·[1920, 1440] (q, k, v), [480, 1920] (attention out), [1920, 1920] twice (MLP), for all 72
 * layers: 3.2 GB in fp32, 1.6 GB in fp16, the model's footprint. Unlike the single-shape rows
 * above, this mix is what a token step streams. */
#define STEP_LAYERS 72
struct step_case {
    struct jb_backend *be;
    int64_t M;
    float *x, *y, *bias;
    struct jb_tensor w[4 * STEP_LAYERS];
};

static const int64_t g_step_kn[4][2] = { { 1920, 1440 },
                                         { 480, 1920 },
                                         { 1920, 1920 },
                                         { 1920, 1920 } };

static void run_step(void *ctx, int i)
{
    struct step_case *c = ctx;
    (void)i;
    for (int l = 0; l < 4 * STEP_LAYERS; l++) {
        const int64_t K = g_step_kn[l % 4][0], N = g_step_kn[l % 4][1];
        struct jb_tensor b = { .type = JB_DTYPE_F32, .n_dims = 1, .shape = { N }, .data = c->bias };
        jb_matmul(c->be, c->M, N, K, c->x, K, &c->w[l], false, &b, c->y, N, false);
    }
}

static void bench_token_step(struct jb_backend *be, const char *name, enum jb_dtype type, int64_t M)
{
    if (!wanted(name)) return;
    struct step_case c = { .be = be, .M = M };
    c.x                = rnd_buf((size_t)(M * 1920), 1.0f);
    c.y                = rnd_buf((size_t)(M * 1920), 1.0f);
    c.bias             = rnd_buf(1920, 1.0f);
    float *wf          = rnd_buf(1920 * 1920, 0.05f);
    size_t bytes       = 0; /* the matrices back to back in one backend buffer, as the CPU backend
                               lays out a model's weights (format/weights.c: on 2 MiB pages) */
    for (int l = 0; l < 4; l++)
        bytes += (size_t)(g_step_kn[l][0] * g_step_kn[l][1]) * jb_dtype_size(type) * STEP_LAYERS;
    char *wall = jb_backend_alloc(be, bytes);
    bool ok    = c.x && c.y && c.bias && wf && wall;
    for (size_t l = 0, off = 0; l < 4 * STEP_LAYERS && ok; l++) {
        const int64_t K = g_step_kn[l % 4][0], N = g_step_kn[l % 4][1];
        jb_convert_from_f32(type, wf, wall + off, (size_t)(K * N));
        c.w[l] =
          (struct jb_tensor){ .type = type, .n_dims = 2, .shape = { K, N }, .data = wall + off };
        off += (size_t)(K * N) * jb_dtype_size(type); /* a multiple of 64 at these shapes */
    }
    if (ok)
        print_row(name, time_it(run_step, &c), (double)bytes, "GB/s");
    else
        printf("| %-44s | out of memory |\n", name);
    jb_backend_free_buffer(be, wall);
    free(c.x), free(c.y), free(c.bias), free(wf);
}

/* The element-wise ops of a token step, at the upsampler's width (1920, MLP 4 x 1920) for
 * `rows` candidates: what they cost besides the weights. Rate: bytes read and written. */
struct ew_case {
    struct jb_backend *be;
    int64_t rows, W;
    float *x, *x0, *y;
    struct jb_tensor g, b;
};

static void run_gelu(void *ctx, int i)
{
    struct ew_case *c = ctx;
    const int64_t n   = c->rows * 4 * c->W;
    /* in place, so the input drifts (small negative values about halve each call): restored every
     * 64 calls, before any reaches the subnormals; the median is a call without the copy */
    if (i % 64 == 0) memcpy(c->x, c->x0, (size_t)n * sizeof *c->x);
    jb_quick_gelu(c->be, n, c->x);
}

static void run_layernorm(void *ctx, int i)
{
    struct ew_case *c = ctx;
    (void)i;
    jb_layernorm(c->be, c->rows, c->W, c->x, &c->g, &c->b, 1e-5f, c->y);
}

static void bench_elementwise(struct jb_backend *be, int64_t rows)
{
    if (!wanted("quick_gelu layernorm")) return;
    const int64_t W  = 1920;
    struct ew_case c = { .be = be, .rows = rows, .W = W };
    c.x              = rnd_buf((size_t)(rows * 4 * W), 6.0f);
    c.x0             = jb_aligned_alloc((size_t)(rows * 4 * W) * sizeof(float));
    memcpy(c.x0, c.x, (size_t)(rows * 4 * W) * sizeof(float));
    c.y = rnd_buf((size_t)(rows * W), 1.0f);
    c.g = (struct jb_tensor){
        .type = JB_DTYPE_F32, .n_dims = 1, .shape = { W }, .data = rnd_buf((size_t)W, 1.0f)
    };
    c.b = (struct jb_tensor){
        .type = JB_DTYPE_F32, .n_dims = 1, .shape = { W }, .data = rnd_buf((size_t)W, 1.0f)
    };
    char name[64];
    snprintf(name, sizeof name, "quick_gelu %lld x 7680", (long long)rows);
    print_row(name, time_it(run_gelu, &c), 8.0 * (double)(rows * 4 * W), "GB/s");
    snprintf(name, sizeof name, "layernorm %lld x 1920", (long long)rows);
    print_row(name, time_it(run_layernorm, &c), 8.0 * (double)(rows * W), "GB/s");
    free(c.x), free(c.x0), free(c.y), free(c.g.data), free(c.b.data);
}

int main(int argc, char **argv)
{
    int n_threads = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 3) g_min_seconds = atof(argv[3]);
    if (argc > 4) g_only = argv[4];
    struct jb_backend *be = jb_backend_init("cpu", n_threads);
    if (!be) {
        fprintf(stderr, "bench_ops: %s\n", jb_last_error());
        return 1;
    }
    if (argc > 2)
        for (int i = JB_CPU_ISA_PORTABLE; i <= JB_CPU_ISA_AVX512; i++)
            if (strcmp(argv[2], jb_cpu_isa_name((enum jb_cpu_isa)i)) == 0)
                jb_cpu_set_isa(be, (enum jb_cpu_isa)i);
    g_threads = be->n_threads;
    printf(
      "cpu backend: %d threads, %s kernels. Rates from the median and the best wall time, and\n"
      "from CPU time per thread (what the kernel does when it has the cores to itself).\n\n",
      be->n_threads,
      jb_cpu_isa_name(jb_cpu_of(be)->isa));
    printf("| %-44s | %9s | %9s | %8s | %8s | %8s | %-7s |\n",
           "case",
           "med ms",
           "best ms",
           "rate med",
           "best",
           "cpu",
           "unit");
    printf("|----------------------------------------------|-----------|-----------|----------|"
           "----------|----------|---------|\n");

    bench_conv(be, "conv1d 64->64 k3 d1 T=65536", 64, 64, 3, 65536, 1, 1, 1, false);
    bench_conv(be, "conv1d 64->64 k3 d243 T=65536", 64, 64, 3, 65536, 1, 243, 243, false);
    bench_conv(be, "conv1d 64->64 k1 T=65536", 64, 64, 1, 65536, 1, 0, 1, false);
    bench_conv(be, "conv1d 64->64 k4 s2 T=65536 (down)", 64, 64, 4, 65536, 2, 1, 1, false);
    bench_conv(be, "conv1d 1->64 k4 s2 T=262144 (first)", 1, 64, 4, 262144, 2, 1, 1, false);
    bench_conv(be, "conv1d 64->1 k3 T=262144 (out)", 64, 1, 3, 262144, 1, 1, 1, false);
    bench_conv(be, "conv_transpose1d 64->64 k4 s2 T=32768", 64, 64, 4, 32768, 2, 1, 1, true);
    /* the upsampler conditioner's ops (a window: 2 x 16 blocks at T = 2048 and 4096). Rates count
     * every tap, as the reference computes them: with d = 2187 > T the kernel leaves out the two
     * taps that read only padding, hence a rate above the FMA peak. */
    bench_conv(be, "conv1d 1024->1024 k3 d27 T=2048 (cond)", 1024, 1024, 3, 2048, 1, 27, 27, false);
    bench_conv(be, "conv1d 1024->1024 k3 d1 T=4096 (cond)", 1024, 1024, 3, 4096, 1, 1, 1, false);
    /* the same by Winograd F(4,3) (ReLU in and out, as in the blocks): rates count the direct
     * conv's FLOPs, so they read as the equivalent direct rate */
    bench_conv(be, "winograd 1024 k3 d27 T=2048 (cond)", 1024, 1024, 3, 2048, 1, 27, 27, false);
    bench_conv(be, "winograd 1024 k3 d1 T=4096 (cond)", 1024, 1024, 3, 4096, 1, 1, 1, false);
    bench_conv(be, "winograd 1024 k3 d243 T=4096 (cond)", 1024, 1024, 3, 4096, 1, 243, 243, false);
    bench_conv(be, "winograd 1024 k3 d729 T=4096 (cond)", 1024, 1024, 3, 4096, 1, 729, 729, false);
    bench_conv(
      be, "conv1d 1024->1024 k3 d729 T=4096 (cond)", 1024, 1024, 3, 4096, 1, 729, 729, false);
    bench_gemm(be, "gemm 1024x1024 x 480 (a Winograd product)", 1024, 1024, 480, 480);
    bench_conv(
      be, "conv1d 1024->1024 k3 d2187 T=2048 (cond)", 1024, 1024, 3, 2048, 1, 2187, 2187, false);
    bench_conv(be, "conv1d 1024->1024 k1 T=4096 (cond)", 1024, 1024, 1, 4096, 1, 0, 1, false);
    bench_conv(be, "conv1d 1920->1024 k3 T=2048 (cond in)", 1920, 1024, 3, 2048, 1, 1, 1, false);
    bench_conv(
      be, "conv_transpose1d 1024->1024 s2 T=2048 (cond)", 1024, 1024, 4, 2048, 2, 1, 1, true);
    bench_conv(
      be, "conv_transpose1d 1024->1920 s2 T=4096 (cond)", 1024, 1920, 4, 4096, 2, 1, 1, true);
    bench_matmul(be, "matmul f32 M=1 K=N=1920 (in cache)", JB_DTYPE_F32, 1, 1920, 1920, 1);
    bench_matmul(be, "matmul f32 M=1 K=N=1920 (16 W, from DRAM)", JB_DTYPE_F32, 1, 1920, 1920, 16);
    bench_matmul(be, "matmul f16 M=1 K=N=1920 (in cache)", JB_DTYPE_F16, 1, 1920, 1920, 1);
    bench_matmul(be, "matmul f16 M=1 K=N=1920 (16 W, from DRAM)", JB_DTYPE_F16, 1, 1920, 1920, 16);
    bench_matmul(be, "matmul f32 M=4 K=N=1920 (in cache)", JB_DTYPE_F32, 4, 1920, 1920, 1);
    bench_matmul(be, "matmul f16 M=4 K=N=1920 (in cache)", JB_DTYPE_F16, 4, 1920, 1920, 1);
    bench_matmul(be, "matmul f32 M=4 K=N=1920 (16 W, from DRAM)", JB_DTYPE_F32, 4, 1920, 1920, 16);
    bench_matmul(be, "matmul f16 M=4 K=N=1920 (16 W, from DRAM)", JB_DTYPE_F16, 4, 1920, 1920, 16);
    bench_matmul(be, "matmul f32 M=32 K=N=1920", JB_DTYPE_F32, 32, 1920, 1920, 1);
    bench_matmul(be, "matmul f16 M=32 K=N=1920", JB_DTYPE_F16, 32, 1920, 1920, 1);
    bench_token_step(be, "token step w1920d72 f32 M=1 (72 layers)", JB_DTYPE_F32, 1);
    bench_token_step(be, "token step w1920d72 f16 M=1 (72 layers)", JB_DTYPE_F16, 1);
    bench_token_step(be, "token step w1920d72 f32 M=4 (72 layers)", JB_DTYPE_F32, 4);
    bench_token_step(be, "token step w1920d72 f16 M=4 (72 layers)", JB_DTYPE_F16, 4);
    bench_token_step(be, "prefill chunk w1920d72 f32 M=32 (72 layers)", JB_DTYPE_F32, 32);
    bench_token_step(be, "prefill chunk w1920d72 f16 M=32 (72 layers)", JB_DTYPE_F16, 32);
    bench_elementwise(be, 1);
    bench_elementwise(be, 4);
    jb_backend_free(be);
    return 0;
}
