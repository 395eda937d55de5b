/*
 * backend/cpu/cpu_resblock.c - the ResConv1DBlock op (jukebox-spec §3.2) on the CPU.
 *
 * Blocks whose convs are narrow (the VQ-VAE: 32-64 channels) run over time tiles that stay in
 * cache, with the ReLUs and the residual add fused into the tile loop: one read of x and one write
 * of y per block instead of about ten full-length passes. With AVX-512 the whole block is one
 * kernel per 48-column tile (jb_cpu_resblock_tiles_avx512: relu(x) packed once, both convs and
 * the epilogues in registers and L1); elsewhere each tile gathers its tap slices and calls the
 * conv kernels. Both sum every output in the same order, so they agree bitwise. At dilations >=
 * 16 the AVX-512 kernel is instead Winograd F(2,3) along the dilation
 * (jb_cpu_resblock_wino_avx512: a quarter fewer multiplies per block, 1.15-1.25x), whose sums
 * agree with the direct ones to rounding (at the amx level both convs run on AMX tiles instead,
 * jb_cpu_resblock_amx); its pairs of columns are anchored at `origin` in the
 * whole sequence, so chunks still compute the whole's sums bitwise. Wide blocks (the
 * released conditioner, 1024 channels) use whole-sequence convolutions, which reuse their large
 * weights across the whole sequence. Their k = 3 conv runs by Winograd F(6,3) or F(4,3)
 * (cpu_winograd.c: 4/9 or half the multiplies) where the dilation is short enough of T for that
 * to save work, else on the direct kernel; the ReLUs and the residual are done as the
 * convolutions read their input and store their output (jb_cpu_conv1d_fused, the Winograd
 * transforms). Narrow blocks take one path
 * whatever T, so a chunk of the sequence computes the whole sequence's sums (the VQ-VAE's
 * chunked encode relies on it); wide blocks are only run on whole windows (the conditioner), and
 * Winograd's sums depend on where its tiles fall, so there a chunk agrees to rounding only.
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/pool.h"

#include <string.h>

#define TILED_MAX_CHANNELS 512         /* c_in + n_state */
#define TILE_BUDGET_FLOATS (96 * 1024) /* per thread: ~384 KiB, L2-resident */

struct shape {
    int64_t C, S; /* channels in/out, inner channels */
};

static struct shape shape_of(const struct jb_tensor *w1)
{
    return (struct shape){ w1->shape[1], w1->shape[0] };
}

static bool is_tiled(struct shape s)
{
    return s.C + s.S <= TILED_MAX_CHANNELS;
}

/* Columns per tile, and floats of one thread's tile memory: the three tap slices of relu(x)
 * (3·C), the inner activation (S) and the block output (C), then the kernels' scratch for the
 * two tile convolutions. */
static int64_t tile_cols(struct shape s)
{
    int64_t t = TILE_BUDGET_FLOATS / (4 * s.C + s.S) / 16 * 16;
    return t < 16 ? 16 : t > 4096 ? 4096 : t;
}

static int64_t tile_act_floats(struct shape s)
{
    return ((4 * s.C + s.S) * tile_cols(s) + 15) / 16 * 16;
}

static int64_t tile_floats(struct shape s)
{
    int64_t tile = tile_cols(s);
    size_t s1    = jb_cpu_conv1d_direct_scratch(s.C, 3 * tile, 3, 1, 0, (int)tile);
    size_t s2    = jb_cpu_conv1d_direct_scratch(s.S, tile, 1, 1, 0, 1);
    return tile_act_floats(s) + (int64_t)((s1 > s2 ? s1 : s2) + 15) / 16 * 16;
}

/* Floats of one thread's slot: the tile memory of whichever tiled path runs. */
static int64_t slot_floats(struct shape s)
{
    const int64_t a = tile_floats(s), b = (JB_RESBLOCK_WINO_FLOATS(s.C, s.S) + 15) / 16 * 16;
    return a > b ? a : b;
}

/* The narrow blocks' dilated conv by Winograd F(2,3) (AVX-512 only) where the dilation is long
 * enough for runs of whole vectors. Whatever T: a chunk must take the path the whole sequence
 * takes, to come out the same. */
static bool use_winograd(const struct jb_cpu *cpu, int64_t dil)
{
    return cpu->isa >= JB_CPU_ISA_AVX512 && dil >= JB_RESBLOCK_WINO_MIN_DIL;
}

int64_t jb_cpu_resblock_wino_bases(int64_t n, int64_t dil)
{
    if (n <= 0) return 0;
    const int64_t full = n / (2 * dil), rem = n % (2 * dil);
    return full * dil + (rem < dil ? rem : dil);
}

int64_t jb_cpu_resblock_wino_first(int64_t dil, int64_t phase)
{
    return jb_cpu_resblock_wino_bases(phase - dil, dil);
}

int64_t jb_cpu_resblock_wino_tiles(int64_t T, int64_t dil, int64_t phase)
{
    const int64_t n =
      jb_cpu_resblock_wino_bases(T + phase, dil) - jb_cpu_resblock_wino_first(dil, phase);
    return (n + JB_CONV_TILE - 1) / JB_CONV_TILE;
}

void jb_cpu_resblock_wino_weights(const float *w1, int64_t S, int64_t C, float *u)
{
    const int64_t n = S * C;
    for (int64_t i = 0; i < n; i++) {
        const float g0 = w1[3 * i], g1 = w1[3 * i + 1], g2 = w1[3 * i + 2];
        u[i]         = g0;
        u[n + i]     = 0.5f * (g0 + g1 + g2);
        u[2 * n + i] = 0.5f * (g0 - g1 + g2);
        u[3 * n + i] = -g2;
    }
}

static int threads_of(const struct jb_backend *be)
{
    if (be && be->cpu) return be->cpu->n_threads;
    return be && be->n_threads > 0 ? be->n_threads : 1;
}

size_t jb_resblock_work(const struct jb_backend *be, const struct jb_tensor *w1, int64_t T)
{
    const struct shape s = shape_of(w1);
    size_t n             = 0;
    if (T < 1) return 0;
    if (is_tiled(s)) {
        /* the slots, then Winograd's transformed weights (4·S·C) */
        if (!jb_mul_size((size_t)slot_floats(s), (size_t)threads_of(be), &n)) return 0;
        return n + (size_t)(4 * s.S * s.C);
    }
    size_t a, b, sc;
    const int dil = 1; /* the scratch of a k-3 conv does not depend on the dilation */
    size_t s1     = jb_cpu_conv1d_direct_scratch(s.C, T, 3, 1, dil, dil);
    size_t s2     = jb_cpu_conv1d_direct_scratch(s.S, T, 1, 1, 0, 1);
    sc            = ((s1 > s2 ? s1 : s2) + 15) & ~(size_t)15;
    if (!jb_mul_size((size_t)s.C, (size_t)T, &a) || !jb_mul_size((size_t)s.S, (size_t)T, &b))
        return 0;
    a = (a + 15) & ~(size_t)15;
    b = (b + 15) & ~(size_t)15;
    /* b, then a and the conv scratch, or Winograd's work in their place */
    if (!jb_add_size(a, sc, &n)) return 0;
    if (jb_cpu_winograd_split(T, 1) && jb_cpu_winograd_work(s.C, s.S) > n)
        n = jb_cpu_winograd_work(s.C, s.S);
    if (!jb_add_size(n, b, &n)) return 0;
    return n;
}

/* dst[i] = relu(x[off + i]) for i < n, zero where off + i is outside [0, T). */
static void gather_relu(const float *x, int64_t T, int64_t off, int64_t n, float *dst)
{
    int64_t lo = off < 0 ? -off : 0;        /* first in-range i */
    int64_t hi = off + n > T ? T - off : n; /* end of the in-range i */
    if (hi < lo) hi = lo;
    for (int64_t i = 0; i < lo && i < n; i++)
        dst[i] = 0.0f;
    const float *src = x + off;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float v = src[i];
        dst[i]  = v < 0.0f ? 0.0f : v; /* NaN stays NaN, as torch.relu */
    }
    for (int64_t i = hi; i < n; i++)
        dst[i] = 0.0f;
}

struct tile_job {
    struct jb_cpu *cpu;
    struct shape s;
    const float *x;
    float *y;
    int64_t T;
    const struct jb_tensor *w1, *b1, *w2, *b2;
    int dil;
    float rho;
    float *work;
};

/* Tile `it`: for a tile of n columns starting at t0 the dilated conv reads relu(x) at
 * t0 + i + (j − 1)·d, j < 3: the three slices are gathered side by side, so the kernel runs with
 * dilation n and no padding (the zero padding is in the gathered slices) and computes exactly the
 * sums of the whole-sequence conv. mem: this slot's tile_floats. */
static void resblock_tile(const struct tile_job *j, int64_t it, float *mem)
{
    const int64_t C = j->s.C, S = j->s.S, d = j->dil, tile = tile_cols(j->s), T = j->T;
    const int64_t t0 = it * tile, n = T - t0 < tile ? T - t0 : tile;
    float *a       = mem;                         /* (C, 3n): tap slices of relu(x) */
    float *b       = a + 3 * C * tile;            /* (S, n) */
    float *h       = b + S * tile;                /* (C, n) */
    float *scratch = mem + tile_act_floats(j->s); /* kernel scratch */
    for (int64_t c = 0; c < C; c++)
        for (int k = 0; k < 3; k++)
            gather_relu(j->x + c * T, T, t0 + (k - 1) * d, n, a + (c * 3 + k) * n);
    jb_cpu_conv1d(j->cpu, a, 3 * n, j->w1, j->b1, 1, 0, (int)n, b, scratch);
#pragma omp simd
    for (int64_t i = 0; i < S * n; i++)
        b[i] = b[i] < 0.0f ? 0.0f : b[i];
    jb_cpu_conv1d(j->cpu, b, n, j->w2, j->b2, 1, 0, 1, h, scratch);
    const float rho = j->rho;
    for (int64_t c = 0; c < C; c++) {
        const float *xc = j->x + c * T + t0, *hc = h + c * n;
        float *yc = j->y + c * T + t0;
        if (rho == 1.0f) {
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                yc[i] = xc[i] + hc[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                yc[i] = xc[i] + rho * hc[i];
        }
    }
}

struct fused_job {
    struct jb_resblock_job rb;
    float *work;
    int64_t stride; /* floats of work per slot */
    const float *u; /* Winograd's transformed weights, the AMX kernel's packed ones, or NULL */
};

static void amx_range(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct fused_job *j = arg;
    float *mem                = j->work + (size_t)slot * (size_t)j->stride;
    jb_cpu_resblock_amx(&j->rb, (const uint16_t *)j->u, i0, i1, mem);
}

static void fused_range(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct fused_job *j = arg;
    float *mem                = j->work + (size_t)slot * (size_t)j->stride;
    if (j->u)
        jb_cpu_resblock_wino_avx512(&j->rb, j->u, i0, i1, mem);
    else
        jb_cpu_resblock_tiles_avx512(&j->rb, i0, i1, mem);
}

static void tile_range(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct tile_job *j = arg;
    float *mem               = j->work + (size_t)slot * (size_t)slot_floats(j->s);
    for (int64_t it = i0; it < i1; it++)
        resblock_tile(j, it, mem);
}

void jb_cpu_op_resblock(struct jb_cpu *cpu,
                        const float *x,
                        float *y,
                        int64_t T,
                        int64_t origin,
                        const struct jb_tensor *w1,
                        const struct jb_tensor *b1,
                        int dil,
                        const struct jb_tensor *w2,
                        const struct jb_tensor *b2,
                        float res_scale,
                        float *work)
{
    const struct shape s = shape_of(w1);
    if (is_tiled(s) && cpu->isa >= JB_CPU_ISA_AVX512) {
        /* tile_floats() >= JB_RESBLOCK_TILE_FLOATS: the fused kernel fits the same work */
        JB_ASSERT(w1->type == JB_DTYPE_F32 && w2->type == JB_DTYPE_F32);
        struct fused_job job = { { x,
                                   y,
                                   T,
                                   s.C,
                                   s.S,
                                   dil,
                                   w1->data,
                                   b1 ? b1->data : NULL,
                                   w2->data,
                                   b2 ? b2->data : NULL,
                                   res_scale,
                                   0 },
                                 work,
                                 slot_floats(s),
                                 NULL };
        if (cpu->isa >= JB_CPU_ISA_AMX && jb_cpu_resblock_amx_fits(s.C, s.S)) {
            JB_ASSERT(jb_cpu_resblock_amx_tile_floats(s.C, s.S) <= (size_t)slot_floats(s));
            uint16_t *wp = (uint16_t *)(work + (size_t)slot_floats(s) * (size_t)cpu->n_threads);
            jb_cpu_resblock_amx_weights(&job.rb, wp);
            job.u                 = (const float *)wp;
            const int64_t n_tiles = (T + 63) / 64;
            jb_cpu_for(cpu, n_tiles, (double)(4 * s.C * s.S * 64), amx_range, &job);
            return;
        }
        if (use_winograd(cpu, dil)) {
            float *u = work + (size_t)slot_floats(s) * (size_t)cpu->n_threads;
            jb_cpu_resblock_wino_weights(w1->data, s.S, s.C, u);
            job.u                 = u;
            job.rb.phase          = (origin % (2 * dil) + 2 * dil) % (2 * dil);
            const int64_t n_tiles = jb_cpu_resblock_wino_tiles(T, dil, job.rb.phase);
            jb_cpu_for(cpu, n_tiles, (double)(6 * s.C * s.S * JB_CONV_TILE), fused_range, &job);
            return;
        }
        const int64_t n_tiles = (T + JB_CONV_TILE - 1) / JB_CONV_TILE;
        jb_cpu_for(cpu, n_tiles, (double)(4 * s.C * s.S * JB_CONV_TILE), fused_range, &job);
        return;
    }
    if (is_tiled(s)) {
        const int64_t n_tiles = (T + tile_cols(s) - 1) / tile_cols(s);
        struct tile_job job   = { cpu, s, x, y, T, w1, b1, w2, b2, dil, res_scale, work };
        jb_pool_for(cpu->pool, n_tiles, 1, tile_range, &job);
        return;
    }
    /* whole sequence: a = relu(x); b = relu(conv3_d(a)); a = conv1(b); y = x + ρ·a */
    const int64_t n = s.C * T;
    float *b        = work;
    float *a        = b + ((s.S * T + 15) & ~(int64_t)15);
    float *scratch  = a + ((n + 15) & ~(int64_t)15);
    /* on the direct kernels the ReLUs and the residual are the convolutions' packing and
     * epilogues (three passes over (C, T) fewer, the same roundings); the separate ops where
     * those do not run */
    const struct jb_conv_epilogue ep1 = { .relu_in = true, .relu_out = true };
    const struct jb_conv_epilogue ep2 = { .res = x, .rho = res_scale };
    /* the k = 3 conv by Winograd where that saves work, the rest on the direct kernel; at the
     * amx level all of it direct (AMX tiles: faster than Winograd there, and Winograd's transforms
     * would amplify the bf16x3 products' rounding, see cpu_amx.c) */
    const int64_t split = cpu->isa >= JB_CPU_ISA_AMX ? 0 : jb_cpu_winograd_split(T, dil);
    bool fused = split ? jb_cpu_conv3_winograd(cpu, x, T, w1, b1, dil, true, true, b, split, a)
                       : jb_cpu_conv1d_fused(cpu, x, T, w1, b1, dil, dil, b, &ep1);
    if (fused && split && split < T)
        fused = jb_cpu_conv1d_fused_cols(cpu, x, T, w1, b1, dil, dil, b, &ep1, split, T);
    if (!fused) {
        jb_cpu_op_relu(cpu, n, x, a);
        jb_cpu_conv1d(cpu, a, T, w1, b1, 1, dil, dil, b, scratch);
        jb_cpu_op_relu(cpu, s.S * T, b, b);
    }
    if (fused && jb_cpu_conv1d_fused(cpu, b, T, w2, b2, 0, 1, y, &ep2)) return;
    jb_cpu_conv1d(cpu, b, T, w2, b2, 1, 0, 1, a, scratch);
    if (res_scale == 1.0f) {
        jb_cpu_op_add(cpu, n, x, a, y);
    } else {
        if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
        jb_cpu_op_axpy(cpu, n, res_scale, a, y);
    }
}
