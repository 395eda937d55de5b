/*
 * backend/cpu/cpu_winograd.c - Winograd F(6,3) and F(4,3) for the dilated k = 3 convolutions of
 * wide ResConv1DBlocks (the upsampler conditioner's 1024 channels, most of its FLOPs) and F(4,3)
 * for wide ConvTranspose1d(k 4, stride 2, pad 1) up-sampling (each of its two output phases is a
 * k = 3 conv with one zero tap, whose product is left out: 10 products per 8 outputs, not 16).
 *
 * A dilated conv computes y[t] = Σ_j g[j]·x[t + (j − 1)·d]. Four outputs d apart,
 * t0, t0 + d, t0 + 2d, t0 + 3d, read six inputs d apart from t0 − d; F(4,3) gets them from six
 * products instead of twelve (Lavin & Gray 2015, interpolation points 0, ±1, ±2, ∞):
 *   V = Bᵀ·(6 inputs) per input channel, U = G·g per (output, input) channel pair,
 *   M[k] = Σ_c U[k][o, c]·V[k][c]  (six matrix products: half the multiplies of the direct conv),
 *   (4 outputs) = Aᵀ·M + bias.
 * F(6,3) gets six outputs from eight inputs and eight products (points 0, ±1, ±2, ±1/2, ∞): 4/9
 * of the direct multiplies, 11% fewer than F(4,3). The k = 3 convs take whichever needs fewer
 * multiplies at their length and dilation (jb_cpu_winograd_split; F(6,3) at most), the transposed
 * convs F(4,3), for its zero tap. With m outputs per tile, tile (b, r), r < d, holds the outputs
 * b·m·d + r + i·d: for a fixed block b the tiles run over consecutive r, so both transforms read
 * and write contiguous runs wherever d is not tiny. Tiles are taken in chunks of WINO_CHUNK; the
 * products run on the direct kernel (jb_cpu_gemm_direct), whose sums do not depend on the ISA
 * level or the thread count, and the transforms are element-wise, the same expressions for every
 * ISA level (F(4,3)'s multipliers are powers of two, so a fused multiply-add rounds as the
 * separate operations would; F(6,3)'s input transform has 5.25, 4.25, 2.5 and 1.25, and test_ops
 * checks that AVX2 and AVX-512 give the same bits): the whole result is bitwise the same on AVX2
 * and AVX-512 and for any thread count. It is not the direct kernel's: rounding differs (see
 * docs/design.md for the size of the difference and why it is accepted).
 */
#include "backend/cpu/cpu.h"

#include <math.h>

/* tiles per pass: 10 column tiles of the direct kernel (960 ran no faster in the conditioner and
 * needs 34 MB more) */
#define WINO_CHUNK 480

static int64_t round16(int64_t n)
{
    return (n + 15) / 16 * 16;
}

/* Tiles of m outputs for length T at dilation d: every tile with at least one output inside
 * [0, T). */
static int64_t n_tiles(int64_t T, int64_t d, int64_t m)
{
    const int64_t span = m * d, nb = (T + span - 1) / span, rem = T - (nb - 1) * span;
    return (nb - 1) * d + (rem < d ? rem : d);
}

/* The direct kernel's multiplies per (output, input) channel pair for the outputs [t0, t1): the
 * taps that read something other than padding. */
static double direct_cost(int64_t T, int64_t d, int64_t t0, int64_t t1)
{
    const int64_t lo = t0 > d ? t0 : d, hi = t1 < T - d ? t1 : T - d;
    return (double)(t1 - t0) + (double)(t1 > lo ? t1 - lo : 0) + (double)(hi > t0 ? hi - t0 : 0);
}

/* Multiplies of Winograd with tiles of m outputs (m + 2 products each, and a margin for the
 * transforms) on every tile of [0, T) (all), or on the whole blocks of m·d outputs with the direct
 * kernel after them (split, at *full; INFINITY without a whole block). */
struct wino_cost {
    double all, split;
    int64_t full;
};

static struct wino_cost wino_cost(int64_t T, int64_t d, int64_t m)
{
    const double tile  = (double)(m + 2) / 0.75;
    const int64_t full = T / (m * d) * m * d;
    /* the direct kernel computes whole tiles of JB_CONV_TILE columns, each streaming all the
     * weights: a tail of a few columns costs as much as a whole tile (at T 2048, d 1, Winograd
     * on 2046 columns and the direct kernel on 2 took 3-4% longer than Winograd on all) */
    const int64_t tail = T - full, cols = (tail + JB_CONV_TILE - 1) / JB_CONV_TILE * JB_CONV_TILE;
    const double direct = tail ? direct_cost(T, d, full, T) * (double)cols / (double)tail : 0.0;
    return (struct wino_cost){ tile * (double)n_tiles(T, d, m),
                               full ? tile * (double)(full / m) + direct : INFINITY,
                               full };
}

/* Tiles of 6 (F(6,3)) or 4 (F(4,3)) outputs for Winograd on [0, t_end) of a length-T conv at
 * dilation d: over the whole length the one with fewer multiplies; on whole blocks the one whose
 * blocks end at t_end (F(6,3) where both do). */
static int64_t wino_tile(int64_t T, int64_t d, int64_t t_end)
{
    if (t_end < T) return t_end % (6 * d) == 0 ? 6 : 4;
    return wino_cost(T, d, 6).all <= wino_cost(T, d, 4).all ? 6 : 4;
}

int64_t jb_cpu_winograd_split(int64_t T, int dil)
{
    if (T < 64 || dil < 1) return 0;
    const struct wino_cost c6 = wino_cost(T, dil, 6), c4 = wino_cost(T, dil, 4);
    const double direct = direct_cost(T, dil, 0, T);
    double best = direct, split = 0;
    const struct wino_cost *c[2] = { &c6, &c4 };
    for (int i = 0; i < 2; i++) {
        if (c[i]->all < best) best = c[i]->all, split = (double)T;
        if (c[i]->split < best) best = c[i]->split, split = (double)c[i]->full;
    }
    return (int64_t)split;
}

/* Channel counts Winograd takes: the products' packed input tile (C rows) must fit the arena,
 * and the work size stays far from overflow whatever a model file says. */
static bool wino_fits(int64_t C, int64_t S)
{
    return C >= 1 && S >= 1 && C <= 8192 && S <= 65536;
}

size_t jb_cpu_winograd_work(int64_t C, int64_t S)
{
    if (!wino_fits(C, S)) return 0;
    return (size_t)(round16(8 * S * C) + 8 * (C + S) * WINO_CHUNK + WINO_CHUNK);
}

bool jb_cpu_conv1d_winograd_pays(int64_t Cin,
                                 int64_t Cout,
                                 int64_t T,
                                 int k,
                                 int stride,
                                 int pad,
                                 int dil)
{
    if (k != 3 || stride != 1 || pad != dil || Cin + Cout <= 512 || !wino_fits(Cin, Cout) ||
        T < 64 || dil < 1)
        return false;
    /* no direct tail here: Winograd on every tile, where that beats the direct kernel */
    const double all = fmin(wino_cost(T, dil, 6).all, wino_cost(T, dil, 4).all);
    return all < direct_cost(T, dil, 0, T);
}

bool jb_cpu_convt_winograd_pays(int64_t Cin, int64_t Cout, int64_t T, int k, int stride, int pad)
{
    return k == 4 && stride == 2 && pad == 1 && T >= 64 && Cin + Cout > 512 && wino_fits(Cin, Cout);
}

/* What the filter transform reads: a conv1d's w [S, C, 3], or one output phase of a
 * ConvTranspose1d(k 4, stride 2, pad 1), w [C, S, 4]. Phase ph (outputs 2m + ph) is a k = 3,
 * pad 1 conv of x with one tap zero: y[2m] = w3·x[m − 1] + w1·x[m], y[2m + 1] = w2·x[m] +
 * w0·x[m + 1], so its product 5 (even) or 0 (odd) is zero and is not computed. */
enum wino_filter { WINO_CONV3, WINO_CONVT_EVEN, WINO_CONVT_ODD };

struct wino {
    struct jb_cpu *cpu;
    const float *x;
    int64_t T, C, S, d;
    bool relu_in, relu_out;
    enum wino_filter filter;
    const float *w, *bias;
    float *y;
    int64_t ldy, ys, yph; /* output i of the tile at p goes to y[o·ldy + (p + i·d)·ys + yph] */
    int skip;             /* the product that is zero (-1: none) */
    int m, np;            /* outputs per tile and products: F(6,3) 6, 8; F(4,3) 4, 6 */
    float *U;             /* np x S x C */
    float *V;             /* np x C x WINO_CHUNK */
    float *M;             /* np x S x WINO_CHUNK */
    const float *zero;    /* WINO_CHUNK zeros: product `skip` */
    int64_t j0, n;        /* the chunk's tiles */
    int64_t t_end;        /* outputs computed: the tiles of [0, t_end) */
};

/* --- filter transform: U[k][o, c] = (G·w[o, c, :])[k] ----------------------------------------- */

/* n consecutive (row, column) pairs of U from taps ga, gb, gc of w (-1: a zero tap), one pair
 * every ws floats of w: U[k] += 1 per pair; np (6: F(4,3), 8: F(6,3)) U matrices SC floats
 * apart. In double (the sums exact, the 1/6, 1/24, 2/9, 1/90 and 8/45 products to ~1e-16), then
 * one rounding to fp32. The taps are first copied out, FILTER_BLOCK pairs at a time, so that the
 * arithmetic runs on contiguous vectors.
 * Read in place at a stride of 3 (or 4S) floats, GCC left the whole loop scalar: a 1024 x 1024
 * filter in a conditioner window took 3.8-6.0 ms on one thread and 3.8-4.2 on two (31 per
 * window, ~5% of it on two threads); now 2.6-4.5 and 2.7-3.2, bound by reading w and writing U.
 * The same operations per pair, so the same bits. */
#define FILTER_BLOCK 64
#define WINO_FILTER(sfx, target)                                                                   \
    static target void filter_run_##sfx(const float *restrict w,                                   \
                                        int64_t ws,                                                \
                                        int ga,                                                    \
                                        int gb,                                                    \
                                        int gc,                                                    \
                                        int64_t n,                                                 \
                                        int np,                                                    \
                                        float *restrict u,                                         \
                                        int64_t SC)                                                \
    {                                                                                              \
        float ta[FILTER_BLOCK], tb[FILTER_BLOCK], tc[FILTER_BLOCK];                                \
        for (int64_t i0 = 0; i0 < n; i0 += FILTER_BLOCK) {                                         \
            const int64_t nb = n - i0 < FILTER_BLOCK ? n - i0 : FILTER_BLOCK;                      \
            for (int64_t l = 0; l < nb; l++) {                                                     \
                const float *g = w + (i0 + l) * ws;                                                \
                ta[l]          = ga < 0 ? 0.0f : g[ga];                                            \
                tb[l]          = gb < 0 ? 0.0f : g[gb];                                            \
                tc[l]          = gc < 0 ? 0.0f : g[gc];                                            \
            }                                                                                      \
            float *restrict u0 = u + i0, *restrict u1 = u0 + SC, *restrict u2 = u0 + 2 * SC;       \
            float *restrict u3 = u0 + 3 * SC, *restrict u4 = u0 + 4 * SC;                          \
            float *restrict u5 = u0 + 5 * SC;                                                      \
            if (np == 8) { /* F(6,3): points 0, ±1, ±2, ±1/2, ∞ */                            \
                float *restrict u6 = u0 + 6 * SC, *restrict u7 = u0 + 7 * SC;                      \
                _Pragma("omp simd") for (int64_t l = 0; l < nb; l++)                               \
                {                                                                                  \
                    const double g0 = ta[l], g1 = tb[l], g2 = tc[l];                               \
                    u0[l] = (float)g0;                                                             \
                    u1[l] = (float)((g0 + g1 + g2) * (-2.0 / 9.0));                                \
                    u2[l] = (float)((g0 - g1 + g2) * (-2.0 / 9.0));                                \
                    u3[l] = (float)((g0 + 2.0 * g1 + 4.0 * g2) * (1.0 / 90.0));                    \
                    u4[l] = (float)((g0 - 2.0 * g1 + 4.0 * g2) * (1.0 / 90.0));                    \
                    u5[l] = (float)((4.0 * g0 + 2.0 * g1 + g2) * (8.0 / 45.0));                    \
                    u6[l] = (float)((4.0 * g0 - 2.0 * g1 + g2) * (8.0 / 45.0));                    \
                    u7[l] = (float)g2;                                                             \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            _Pragma("omp simd") for (int64_t l = 0; l < nb; l++) /* F(4,3): 0, ±1, ±2, ∞ */    \
            {                                                                                      \
                const double g0 = ta[l], g1 = tb[l], g2 = tc[l];                                   \
                u0[l] = (float)(g0 * 0.25);                                                        \
                u1[l] = (float)((g0 + g1 + g2) * (-1.0 / 6.0));                                    \
                u2[l] = (float)((g0 - g1 + g2) * (-1.0 / 6.0));                                    \
                u3[l] = (float)((g0 + 2.0 * g1 + 4.0 * g2) * (1.0 / 24.0));                        \
                u4[l] = (float)((g0 - 2.0 * g1 + 4.0 * g2) * (1.0 / 24.0));                        \
                u5[l] = (float)g2;                                                                 \
            }                                                                                      \
        }                                                                                          \
    }

#if JB_CPU_X86
WINO_FILTER(avx2, JB_TARGET_AVX2)
WINO_FILTER(avx512, JB_TARGET_AVX512)
#else
WINO_FILTER(avx2, )
#define filter_run_avx512 filter_run_avx2
#endif

/* Output channels [o0, o1): U[k] is S x C (rows o), whatever the layout of w: a conv1d's
 * w [S, C, 3] is read in order, a transposed conv's w [C, S, 4] a column at a time (one row of U
 * reads 16 bytes of C lines, which the next rows read on from L2). The products then read their
 * weights 8 rows per stream: stored C x S, one stream with a 4S-byte stride, they ran at
 * 155-160 GFLOP/s instead of ~210 (the stride defeats the prefetchers). */
static void filter_rows(void *arg, int64_t o0, int64_t o1, int slot)
{
    const struct wino *q = arg;
    const int64_t C = q->C, S = q->S;
    const bool conv3 = q->filter == WINO_CONV3, even = q->filter == WINO_CONVT_EVEN;
    const int64_t ws = conv3 ? 3 : 4 * S; /* floats from one input channel's taps to the next */
    const int ga = conv3 ? 0 : even ? 3 : -1, gb = conv3 ? 1 : even ? 1 : 2;
    const int gc = conv3 ? 2 : even ? -1 : 0;
    (void)slot;
    for (int64_t o = o0; o < o1; o++) {
        const float *w = q->w + o * (conv3 ? C * 3 : 4);
        float *u       = q->U + o * C;
        if (q->cpu->isa >= JB_CPU_ISA_AVX512)
            filter_run_avx512(w, ws, ga, gb, gc, C, q->np, u, S * C);
        else
            filter_run_avx2(w, ws, ga, gb, gc, C, q->np, u, S * C);
    }
}

/* --- input transform: V[k][c, tile] = (Bᵀ·relu?(x[c, t0 − d + i·d], i < 6))[k] -------------------
 */

/* The six transformed inputs of one tile from its six inputs e0..e5 (multipliers powers of two:
 * a contraction into a fused multiply-add rounds the same). */
#define WINO_IN(e0, e1, e2, e3, e4, e5, v0, v1, v2, v3, v4, v5)                                    \
    do {                                                                                           \
        const float a_ = (e4) - (e2), b_ = (e1) - (e3);                                            \
        v0 = a_ + 4.0f * ((e0) - (e2));                                                            \
        v1 = ((e4) + (e3)) - 4.0f * ((e1) + (e2));                                                 \
        v2 = ((e4) - (e3)) + 4.0f * ((e1) - (e2));                                                 \
        v3 = a_ - 2.0f * b_;                                                                       \
        v4 = a_ + 2.0f * b_;                                                                       \
        v5 = ((e5) - (e3)) + 4.0f * b_;                                                            \
    } while (0)

/* The four outputs of one tile from its six products m0..m5. */
#define WINO_OUT(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                           \
    do {                                                                                           \
        const float s12_ = (m1) + (m2), d12_ = (m1) - (m2);                                        \
        const float s34_ = (m3) + (m4), d34_ = (m3) - (m4);                                        \
        y0 = ((m0) + s12_) + s34_;                                                                 \
        y1 = d12_ + 2.0f * d34_;                                                                   \
        y2 = s12_ + 4.0f * s34_;                                                                   \
        y3 = (d12_ + 8.0f * d34_) + (m5);                                                          \
    } while (0)

/* F(6,3): the eight transformed inputs of one tile from its eight inputs (Bᵀ of Lavin & Gray,
 * factored as NNPACK does: pairs of rows share their even and odd parts). Its multipliers 5.25,
 * 4.25, 2.5, 1.25 are not powers of two: both ISA levels compile the same expressions, and
 * test_ops checks that they give the same bits. */
#define WINO_IN8(e0, e1, e2, e3, e4, e5, e6, e7, v0, v1, v2, v3, v4, v5, v6, v7)                   \
    do {                                                                                           \
        const float t1_ = ((e2) + (e6)) - 4.25f * (e4), t2_ = ((e1) + (e5)) - 4.25f * (e3);        \
        const float t3_ = ((e6) + 0.25f * (e2)) - 1.25f * (e4);                                    \
        const float t4_ = (0.5f * (e1)-2.5f * (e3)) + 2.0f * (e5);                                 \
        const float t5_ = (e6) + 4.0f * ((e2)-1.25f * (e4));                                       \
        const float t6_ = (2.0f * (e1)-2.5f * (e3)) + 0.5f * (e5);                                 \
        v0              = ((e0) - (e6)) + 5.25f * ((e4) - (e2));                                   \
        v1              = t1_ + t2_;                                                               \
        v2              = t1_ - t2_;                                                               \
        v3              = t3_ + t4_;                                                               \
        v4              = t3_ - t4_;                                                               \
        v5              = t5_ + t6_;                                                               \
        v6              = t5_ - t6_;                                                               \
        v7              = ((e7) - (e1)) + 5.25f * ((e3) - (e5));                                   \
    } while (0)

/* F(6,3): the six outputs of one tile from its eight products (multipliers powers of two). */
#define WINO_OUT6(m0, m1, m2, m3, m4, m5, m6, m7, y0, y1, y2, y3, y4, y5)                          \
    do {                                                                                           \
        const float s1_ = (m1) + (m2), d1_ = (m1) - (m2);                                          \
        const float s2_ = (m3) + (m4), d2_ = (m3) - (m4);                                          \
        const float s3_ = (m5) + (m6), d3_ = (m5) - (m6);                                          \
        y0 = (((m0) + s1_) + s2_) + s3_;                                                           \
        y1 = (d1_ + 2.0f * d2_) + 0.5f * d3_;                                                      \
        y2 = (s1_ + 4.0f * s2_) + 0.25f * s3_;                                                     \
        y3 = (d1_ + 8.0f * d2_) + 0.125f * d3_;                                                    \
        y4 = (s1_ + 16.0f * s2_) + 0.0625f * s3_;                                                  \
        y5 = ((d1_ + 32.0f * d2_) + 0.03125f * d3_) + (m7);                                        \
    } while (0)

#define RELU(v) ((v) < 0.0f ? 0.0f : (v)) /* NaN stays NaN, as torch.relu */

/* Runs of tiles whose inputs (outputs) all lie inside [0, T), vectorised: tile i of a run reads
 * s[i·st + k·d], k < np, and writes t[i·st + k·d], k < m (st 1: consecutive r of one block; st m:
 * d = 1, consecutive blocks). v, m: the run's column in the np V (M) matrices, ld apart. One
 * copy per ISA level: the same element-wise operations, so bitwise the same values.
 * The loops are written once (IN_LOOP, OUT_LOOP, around one tile's transform: F(4,3) or F(6,3))
 * and instantiated for st 1 and for st m at d 1 as constants, with the ReLU chosen outside the
 * loop. With `relu ? RELU(y) : y` inside (GCC at -O2 does not unswitch loops) the output loop ran
 * scalar, and with a variable stride the input loop assembled its vectors an element at a time.
 * In a conditioner window the output transform went from 3.0-3.5 to 2.6-2.9 ms per call on two
 * threads (5.1-6.0 to 3.2-5.0 on one). Outputs at other strides (the transposed convs'
 * interleaved phases) take a general loop. */
#define IN_LOOP(TILE, ST, D, R)                                                                    \
    _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                            \
    {                                                                                              \
        const float *e = s + i * (ST);                                                             \
        TILE(e, D, R, i);                                                                          \
    }
#define OUT_LOOP(TILE, ST, D, R)                                                                   \
    _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                                            \
    {                                                                                              \
        float *o = t + i * (ST);                                                                   \
        TILE(o, D, R, i);                                                                          \
    }
/* One tile of each transform: inputs e[k·D] into v0..[i]; products m0..[i] into o[k·D]. */
#define IN_TILE4(e, D, R, i)                                                                       \
    WINO_IN(R(e[0]),                                                                               \
            R(e[D]),                                                                               \
            R(e[2 * (D)]),                                                                         \
            R(e[3 * (D)]),                                                                         \
            R(e[4 * (D)]),                                                                         \
            R(e[5 * (D)]),                                                                         \
            v0[i],                                                                                 \
            v1[i],                                                                                 \
            v2[i],                                                                                 \
            v3[i],                                                                                 \
            v4[i],                                                                                 \
            v5[i])
#define IN_TILE6(e, D, R, i)                                                                       \
    WINO_IN8(R(e[0]),                                                                              \
             R(e[D]),                                                                              \
             R(e[2 * (D)]),                                                                        \
             R(e[3 * (D)]),                                                                        \
             R(e[4 * (D)]),                                                                        \
             R(e[5 * (D)]),                                                                        \
             R(e[6 * (D)]),                                                                        \
             R(e[7 * (D)]),                                                                        \
             v0[i],                                                                                \
             v1[i],                                                                                \
             v2[i],                                                                                \
             v3[i],                                                                                \
             v4[i],                                                                                \
             v5[i],                                                                                \
             v6[i],                                                                                \
             v7[i])
#define OUT_TILE4(o, D, R, i)                                                                      \
    do {                                                                                           \
        float y0, y1, y2, y3;                                                                      \
        WINO_OUT(m0[i], m1[i], m2[i], m3[i], m4[i], m5[i], y0, y1, y2, y3);                        \
        o[0]       = R(y0 + bias);                                                                 \
        o[D]       = R(y1 + bias);                                                                 \
        o[2 * (D)] = R(y2 + bias);                                                                 \
        o[3 * (D)] = R(y3 + bias);                                                                 \
    } while (0)
#define OUT_TILE6(o, D, R, i)                                                                      \
    do {                                                                                           \
        float y0, y1, y2, y3, y4, y5;                                                              \
        WINO_OUT6(m0[i], m1[i], m2[i], m3[i], m4[i], m5[i], m6[i], m7[i], y0, y1, y2, y3, y4, y5); \
        o[0]       = R(y0 + bias);                                                                 \
        o[D]       = R(y1 + bias);                                                                 \
        o[2 * (D)] = R(y2 + bias);                                                                 \
        o[3 * (D)] = R(y3 + bias);                                                                 \
        o[4 * (D)] = R(y4 + bias);                                                                 \
        o[5 * (D)] = R(y5 + bias);                                                                 \
    } while (0)
#define AS_IS(v) (v)
/* LOOP around TILE instantiated for stride ST and inputs D apart, with or without the ReLU (relu
 * in scope) */
#define WITH_RELU(LOOP, TILE, ST, D)                                                               \
    {                                                                                              \
        if (relu)                                                                                  \
            LOOP(TILE, ST, D, RELU)                                                                \
        else                                                                                       \
            LOOP(TILE, ST, D, AS_IS)                                                               \
    }
/* The np row pointers of V (v0..) and of M (m0..) that the tiles of each transform use */
#define ROWS_V6                                                                                    \
    float *restrict v0 = v, *restrict v1 = v + ld, *restrict v2 = v + 2 * ld;                      \
    float *restrict v3 = v + 3 * ld, *restrict v4 = v + 4 * ld, *restrict v5 = v + 5 * ld
#define ROWS_V8                                                                                    \
    ROWS_V6;                                                                                       \
    float *restrict v6 = v + 6 * ld, *restrict v7 = v + 7 * ld
#define ROWS_M6                                                                                    \
    const float *restrict m0 = mk[0], *restrict m1 = mk[1], *restrict m2 = mk[2];                  \
    const float *restrict m3 = mk[3], *restrict m4 = mk[4], *restrict m5 = mk[5]
#define ROWS_M8                                                                                    \
    ROWS_M6;                                                                                       \
    const float *restrict m6 = mk[6], *restrict m7 = mk[7]
/* The input and output runs of one transform (tiles of M outputs; in_name / out_name, suffixed
 * with the ISA level). The input runs come in the two strides only (d = 1: consecutive blocks,
 * st M; else, the edge runs' copies included, consecutive r, st 1), so the stride follows from
 * d. */
#define WINO_RUNS(sfx, target, in_name, out_name, M, IN_TILE, OUT_TILE, ROWS_V, ROWS_M)            \
    static target void in_name##_##sfx(                                                            \
      const float *restrict s, int64_t d, int64_t n, bool relu, float *restrict v, int64_t ld)     \
    {                                                                                              \
        ROWS_V;                                                                                    \
        if (d == 1)                                                                                \
            WITH_RELU(IN_LOOP, IN_TILE, M, 1)                                                      \
        else                                                                                       \
            WITH_RELU(IN_LOOP, IN_TILE, 1, d)                                                      \
    }                                                                                              \
    static target void out_name##_##sfx(const float *const *mk,                                    \
                                        int64_t n,                                                 \
                                        float bias,                                                \
                                        bool relu,                                                 \
                                        float *restrict t,                                         \
                                        int64_t st,                                                \
                                        int64_t d)                                                 \
    {                                                                                              \
        ROWS_M;                                                                                    \
        if (st == 1)                                                                               \
            WITH_RELU(OUT_LOOP, OUT_TILE, 1, d)                                                    \
        else if (st == (M) && d == 1)                                                              \
            WITH_RELU(OUT_LOOP, OUT_TILE, M, 1)                                                    \
        else /* the transposed convs' interleaved phases */                                        \
            WITH_RELU(OUT_LOOP, OUT_TILE, st, d)                                                   \
    }
#define WINO_RUNS_BOTH(sfx, target)                                                                \
    WINO_RUNS(sfx, target, in_run, out_run, 4, IN_TILE4, OUT_TILE4, ROWS_V6, ROWS_M6)              \
    WINO_RUNS(sfx, target, in_run8, out_run6, 6, IN_TILE6, OUT_TILE6, ROWS_V8, ROWS_M8)

#if JB_CPU_X86
WINO_RUNS_BOTH(avx2, JB_TARGET_AVX2)
WINO_RUNS_BOTH(avx512, JB_TARGET_AVX512)
#else
WINO_RUNS_BOTH(avx2, )
#define in_run_avx512 in_run_avx2
#define out_run_avx512 out_run_avx2
#define in_run8_avx512 in_run8_avx2
#define out_run6_avx512 out_run6_avx2
#endif

/* n tiles from s, their inputs d apart: consecutive blocks (m apart) at d = 1, else consecutive
 * r (1 apart) */
static void
in_run(const struct wino *q, const float *s, int64_t d, int64_t n, bool relu, float *v, int64_t ld)
{
    const bool avx512 = q->cpu->isa >= JB_CPU_ISA_AVX512;
    if (q->m == 6)
        (avx512 ? in_run8_avx512 : in_run8_avx2)(s, d, n, relu, v, ld);
    else
        (avx512 ? in_run_avx512 : in_run_avx2)(s, d, n, relu, v, ld);
}

/* n tiles from column i of the np products; outputs from t, tiles st apart, outputs d apart */
static void out_run(const struct wino *q,
                    const float *const *mk,
                    int64_t i,
                    int64_t n,
                    float bias,
                    float *t,
                    int64_t st,
                    int64_t d)
{
    const float *m[8];
    for (int k = 0; k < q->np; k++)
        m[k] = mk[k] + i;
    const bool avx512 = q->cpu->isa >= JB_CPU_ISA_AVX512;
    if (q->m == 6)
        (avx512 ? out_run6_avx512 : out_run6_avx2)(m, n, bias, q->relu_out, t, st, d);
    else
        (avx512 ? out_run_avx512 : out_run_avx2)(m, n, bias, q->relu_out, t, st, d);
}

/* Tile j's first output column (block j / d, residue j mod d), tiles of m outputs. */
static int64_t tile_pos(int64_t j, int64_t d, int64_t m)
{
    return j / d * m * d + j % d;
}

/* Tiles at the sequence's ends read padding. They come in runs of consecutive r within a block
 * (where d > 1, the first block's d tiles all read x[p − d] < 0: every tile at d >= T / m; at
 * d = 1 a run is one tile), so a run's np input segments are copied, zero outside [0, T), into
 * a small buffer, EDGE_RUN floats each, and transformed by the vectorised loop: the same
 * operations per tile as inside, so the same bits (at d = 243, one tile at a time through scalar
 * code took 6% of the conv). */
#define EDGE_RUN 64

static void in_edge_run(const struct wino *q,
                        const float *xc,
                        int64_t p,
                        int64_t n,
                        float *v,
                        int64_t ld)
{
    float e[8 * EDGE_RUN];
    for (int k = 0; k < q->np; k++) {
        const int64_t t0 = p + (k - 1) * q->d; /* tap k of the run's tiles: x[t0 .. t0 + n) */
        const int64_t lo = t0 < 0 ? -t0 : 0, hi = t0 + n > q->T ? q->T - t0 : n;
        float *ek = e + k * EDGE_RUN;
        if (hi <= lo) {
            memset(ek, 0, (size_t)n * sizeof *ek);
            continue;
        }
        memset(ek, 0, (size_t)lo * sizeof *ek);
        memcpy(ek + lo, xc + t0 + lo, (size_t)(hi - lo) * sizeof *ek);
        memset(ek + hi, 0, (size_t)(n - hi) * sizeof *ek);
    }
    in_run(q, e, EDGE_RUN, n, q->relu_in, v, ld);
}

/* Whether the tile of m outputs at p reads only inside [0, T): p − d >= 0 and p + m·d < T. */
static bool tile_inside(int64_t p, int64_t d, int64_t T, int64_t m)
{
    return p - d >= 0 && p + m * d < T;
}

/* The run of tiles of m outputs from j (before j1) whose reach, p + r·d for the tile at p, stays
 * below T, given that tile j's does: consecutive r of one block, or (d = 1) consecutive blocks.
 * r: m for the inputs a tile reads, m − 1 for the outputs it writes. */
static int64_t run_len(int64_t j, int64_t j1, int64_t p, int64_t d, int64_t T, int64_t r, int64_t m)
{
    int64_t n = d == 1 ? (T - 1 - r) / m + 1 - j : d - j % d;
    if (n > j1 - j) n = j1 - j;
    if (d > 1 && p + n - 1 + r * d >= T) n = T - r * d - p; /* >= 1 */
    return n;
}

static void input_rows(void *arg, int64_t c0, int64_t c1, int slot)
{
    const struct wino *q = arg;
    const int64_t T = q->T, d = q->d, ld = q->C * WINO_CHUNK, j1 = q->j0 + q->n;
    (void)slot;
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = q->x + c * T;
        float *v        = q->V + c * WINO_CHUNK; /* v[j - j0]: tile j's column */
        for (int64_t j = q->j0; j < j1;) {
            const int64_t p = tile_pos(j, d, q->m);
            if (!tile_inside(p, d, T, q->m)) { /* the sequence's ends */
                int64_t n = d - j % d;         /* the rest of the block's tiles */
                if (n > j1 - j) n = j1 - j;
                if (n > EDGE_RUN) n = EDGE_RUN;
                in_edge_run(q, xc, p, n, v + (j - q->j0), ld);
                j += n;
                continue;
            }
            const int64_t n = run_len(j, j1, p, d, T, q->m, q->m); /* tiles inside too */
            in_run(q, xc + p - d, d, n, q->relu_in, v + (j - q->j0), ld);
            j += n;
        }
    }
}

/* --- output transform: y[o, t0 + i·d] = relu?((Aᵀ·M[:][o, tile])[i] + bias[o]) ---------------- */

static void output_rows(void *arg, int64_t o0, int64_t o1, int slot)
{
    const struct wino *q = arg;
    const int64_t T = q->T, d = q->d, ys = q->ys, j1 = q->j0 + q->n;
    (void)slot;
    for (int64_t o = o0; o < o1; o++) {
        const float *mk[8]; /* row o of the np products (column j − j0: tile j) */
        for (int k = 0; k < q->np; k++)
            mk[k] = k == q->skip ? q->zero : q->M + ((int64_t)k * q->S + o) * WINO_CHUNK;
        const float bo = q->bias ? q->bias[o] : 0.0f;
        float *yo      = q->y + o * q->ldy + q->yph;
        for (int64_t j = q->j0; j < j1;) {
            const int64_t p = tile_pos(j, d, q->m), i = j - q->j0;
            if (p + (q->m - 1) * d >= T) { /* the sequence's end: outputs past it left out */
                float y[6];
                if (q->m == 6)
                    WINO_OUT6(mk[0][i],
                              mk[1][i],
                              mk[2][i],
                              mk[3][i],
                              mk[4][i],
                              mk[5][i],
                              mk[6][i],
                              mk[7][i],
                              y[0],
                              y[1],
                              y[2],
                              y[3],
                              y[4],
                              y[5]);
                else
                    WINO_OUT(mk[0][i],
                             mk[1][i],
                             mk[2][i],
                             mk[3][i],
                             mk[4][i],
                             mk[5][i],
                             y[0],
                             y[1],
                             y[2],
                             y[3]);
                for (int r = 0; r < q->m && p + r * d < T; r++)
                    yo[(p + r * d) * ys] = q->relu_out ? RELU(y[r] + bo) : y[r] + bo;
                j++;
                continue;
            }
            const int64_t n = run_len(j, j1, p, d, T, q->m - 1, q->m); /* all outputs in range */
            out_run(q, mk, i, n, bo, yo + p * ys, (d == 1 ? q->m : 1) * ys, d * ys);
            j += n;
        }
    }
}

/* The filter transform, then per chunk of tiles: the input transform, the products, the output
 * transform. */
static void run(struct wino *q, float *work)
{
    const int64_t S = q->S, C = q->C, np = q->np;
    q->U     = work;
    q->V     = q->U + round16(np * S * C);
    q->M     = q->V + np * C * WINO_CHUNK;
    float *z = q->M + np * S * WINO_CHUNK;
    memset(z, 0, WINO_CHUNK * sizeof *z);
    q->zero = z;
    jb_cpu_for(q->cpu, S, 20.0 * (double)C, filter_rows, q);
    const int64_t nt = n_tiles(q->t_end, q->d, q->m);
    for (q->j0 = 0; q->j0 < nt; q->j0 += WINO_CHUNK) {
        q->n = nt - q->j0 < WINO_CHUNK ? nt - q->j0 : WINO_CHUNK;
        jb_cpu_for(q->cpu, C, 30.0 * (double)q->n, input_rows, q);
        for (int k = 0; k < np; k++) {
            if (k == q->skip) continue;
            bool ok = jb_cpu_gemm_direct(q->cpu,
                                         q->U + k * S * C,
                                         C,
                                         1,
                                         S,
                                         C,
                                         q->V + k * C * WINO_CHUNK,
                                         WINO_CHUNK,
                                         q->n,
                                         q->M + k * S * WINO_CHUNK,
                                         WINO_CHUNK);
            JB_ASSERT(ok);
        }
        jb_cpu_for(q->cpu, S, 30.0 * (double)q->n, output_rows, q);
    }
}

bool jb_cpu_conv3_winograd(struct jb_cpu *cpu,
                           const float *x,
                           int64_t T,
                           const struct jb_tensor *w,
                           const struct jb_tensor *b,
                           int dil,
                           bool relu_in,
                           bool relu_out,
                           float *y,
                           int64_t t_end,
                           float *work)
{
    JB_ASSERT(w->type == JB_DTYPE_F32 && w->n_dims == 3 && w->shape[2] == 3 && dil >= 1);
    JB_ASSERT(!b || (b->type == JB_DTYPE_F32 && jb_tensor_nelements(b) == w->shape[0]));
    const int64_t S = w->shape[0], C = w->shape[1];
    if (cpu->isa < JB_CPU_ISA_AVX2 || !wino_fits(C, S)) return false;
    if (T <= 0 || S <= 0) return true;
    struct wino q = { .cpu      = cpu,
                      .x        = x,
                      .T        = T,
                      .C        = C,
                      .S        = S,
                      .d        = dil,
                      .relu_in  = relu_in,
                      .relu_out = relu_out,
                      .filter   = WINO_CONV3,
                      .w        = w->data,
                      .bias     = b ? b->data : NULL,
                      .y        = y,
                      .ldy      = T,
                      .ys       = 1,
                      .yph      = 0,
                      .skip     = -1,
                      .t_end    = t_end < T ? t_end : T };
    q.m           = (int)wino_tile(T, dil, q.t_end);
    q.np          = q.m + 2;
    run(&q, work);
    return true;
}

bool jb_cpu_convt_winograd(struct jb_cpu *cpu,
                           const float *x,
                           int64_t T,
                           const struct jb_tensor *w,
                           const struct jb_tensor *b,
                           float *y,
                           float *work)
{
    JB_ASSERT(w->type == JB_DTYPE_F32 && w->n_dims == 3 && w->shape[2] == 4);
    JB_ASSERT(!b || (b->type == JB_DTYPE_F32 && jb_tensor_nelements(b) == w->shape[1]));
    const int64_t C = w->shape[0], S = w->shape[1];
    if (cpu->isa < JB_CPU_ISA_AVX2 || !wino_fits(C, S)) return false;
    if (T <= 0 || S <= 0) return true;
    /* the two output phases in turn, each a k = 3 conv with one zero tap (enum wino_filter) */
    for (int ph = 0; ph < 2; ph++) {
        struct wino q = { .cpu    = cpu,
                          .x      = x,
                          .T      = T,
                          .C      = C,
                          .S      = S,
                          .d      = 1,
                          .filter = ph ? WINO_CONVT_ODD : WINO_CONVT_EVEN,
                          .w      = w->data,
                          .bias   = b ? b->data : NULL,
                          .y      = y,
                          .ldy    = 2 * T,
                          .ys     = 2,
                          .yph    = ph,
                          .skip   = ph ? 0 : 5,
                          .m      = 4,
                          .np     = 6,
                          .t_end  = T };
        run(&q, work);
    }
    return true;
}
