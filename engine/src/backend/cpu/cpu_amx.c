/*
 * backend/cpu/cpu_amx.c - the wide convolutions' matrix products on Intel AMX tiles.
 *
 * AMX multiplies bf16, not fp32. Each fp32 operand is split into two bf16 numbers, hi = bf16(v)
 * and lo = bf16(v − hi) (both rounded to nearest), and a product is summed as hi·hi + lo·hi +
 * hi·lo ("bf16x3"), the sums in fp32. What is dropped (lo·lo, and v − hi − lo, at most 2^-18 of
 * |v|) leaves a relative error of ~4e-6 in a 900-term random dot product, where the FMA kernel's
 * is ~5e-7; Winograd's transforms would amplify it ~4x, so the amx level runs the wide convs
 * direct (cpu_resblock.c, cpu_conv.c), and still faster: a 1024-channel 1x1 conv over 4096 steps
 * ~2.5x the AVX-512 kernel, a window of the upsampler conditioner ~1.7x, a 20 s encode ~1.4x
 * (docs/design.md).
 *
 * A job (struct jb_conv_job: one phase, or the two of a stride-2 transposed conv; taps read at
 * step 1) runs in two parallel passes. First every tap's weights are packed once as bf16 tiles
 * (hi and lo) into the backend's amx_w buffer, 32 rows per item. Then each item is a block of 64
 * columns: its thread packs the input windows of the taps that read inside [0, len) (relu
 * applied, zero padding materialised) into its arena in the tiles' pair-interleaved layout, and
 * runs every 32 x 32 output tile over (tap, 32 channels); bias, relu and residual are applied as
 * each output tile is stored. A column's sums do not depend on where the blocks fall, so chunks
 * of a sequence give the whole's bits.
 *
 * The narrow ResConv1DBlock (the VQ-VAE's 32-64 channels) is one fused kernel per 64-column tile
 * (jb_cpu_resblock_amx), as the FMA one: both convs and their epilogues in L1/L2, one read of x
 * and one write of y per block.
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"

#include <stdint.h>
#include <string.h>

#if JB_CPU_X86
#include "backend/cpu/x86_lanes.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define JB_TARGET_AMX                                                                              \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,amx-tile,amx-bf16,"       \
                          "avx2,fma,f16c")))

/* Linux: a process asks once for the right to use the tile data state (arch/x86 uapi) */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

bool jb_cpu_amx_usable(void)
{
    unsigned a, b, c, d;
    /* CPUID.7.0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE; CPUID.7.1: EAX bit 5 AVX512_BF16 */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return false;
    /* XCR0 bits 17 and 18 (tile config and data) enabled by the OS */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; /* OSXSAVE */
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false;
    /* granted once per process; asking again is harmless */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

enum {
    TILE_K  = 32,  /* channels per tile step (16 bf16 pairs) */
    TILE_B  = 512, /* bf16 per tile: 16 rows x 64 bytes */
    BLOCK_N = 64   /* columns per packed input block (a conditioner window: 128 ran 1.41 s, 64
                    * 1.37, 256 1.50; at 3 taps of 1024 channels 64 columns take 768 KiB) */
};

struct amx_shape {
    int64_t n_kc;                    /* channel steps of TILE_K */
    int64_t n_mb;                    /* 16-row blocks of the output rows, padded to an even count */
    int64_t block_n, n_nt;           /* columns per packed input block, and its 16-column tiles */
    int n_tap;                       /* of both phases */
    int phase[2 * JB_CONV_MAX_TAPS]; /* tap f is jb->tap[phase[f]][index[f]] */
    int index[2 * JB_CONV_MAX_TAPS];
};

static const struct jb_conv_tap *tap_of(const struct jb_conv_job *jb,
                                        const struct amx_shape *s,
                                        int f)
{
    return &jb->tap[s->phase[f]][s->index[f]];
}

/* 64-byte tile configuration: palette 1, tiles 0-7 all 16 rows x 64 bytes */
struct amx_config {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* Where the tile pair (hi, then lo) of tap j and channel step kc lies, in bf16 from the start:
 * among the packed weights the pair of row block mb (pack_a), in a packed input block the pair
 * of column tile nt (pack_b). Tap n_tap's start is the size. */
static size_t a_tile(const struct amx_shape *s, int j, int64_t kc, int64_t mb)
{
    return (size_t)(((j * s->n_kc + kc) * s->n_mb + mb) * 2) * TILE_B;
}

static size_t b_tile(const struct amx_shape *s, int j, int64_t kc, int64_t nt)
{
    return (size_t)(((j * s->n_kc + kc) * s->n_nt + nt) * 2) * TILE_B;
}

static size_t weights_bytes(const struct amx_shape *s)
{
    return a_tile(s, s->n_tap, 0, 0) * sizeof(uint16_t);
}

static size_t block_bytes(const struct amx_shape *s)
{
    return b_tile(s, s->n_tap, 0, 0) * sizeof(uint16_t);
}

static JB_ALWAYS_INLINE JB_TARGET_AMX __m512 bf16_up(__m256i h) /* bf16 -> fp32, exact */
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* hi and lo bf16 of the 32 floats a (first 16) and b: lanes in order a0..a15, b0..b15 */
static JB_ALWAYS_INLINE JB_TARGET_AMX void split2(__m512 a, __m512 b, __m512i *hi, __m512i *lo)
{
    __m512i h = (__m512i)_mm512_cvtne2ps_pbh(b, a);
    __m512 ra = _mm512_sub_ps(a, bf16_up(_mm512_castsi512_si256(h)));
    __m512 rb = _mm512_sub_ps(b, bf16_up(_mm512_extracti64x4_epi64(h, 1)));
    *hi       = h;
    *lo       = (__m512i)_mm512_cvtne2ps_pbh(rb, ra);
}

/* Rows [16·mb0, 16·mb1) of tap j's weights w[o·w_os + c·w_cs] (rows < rows, channels < cin)
 * as A tiles at a_tile(s, j, kc, mb): rows 16·mb.. and channels 32·kc.., hi then lo; rows and
 * channels past the end are 0. */
static JB_TARGET_AMX void pack_a(const float *w,
                                 int64_t rows,
                                 int64_t cin,
                                 int64_t w_os,
                                 int64_t w_cs,
                                 const struct amx_shape *s,
                                 int j,
                                 int64_t mb0,
                                 int64_t mb1,
                                 uint16_t *a)
{
    const __m512i idx =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32((int)w_cs));
    for (int64_t kc = 0; kc < s->n_kc; kc++)
        for (int64_t mb = mb0; mb < mb1; mb++) {
            uint16_t *t = a + a_tile(s, j, kc, mb);
            for (int r = 0; r < 16; r++) {
                const int64_t o = 16 * mb + r, c0 = kc * TILE_K;
                __m512 v[2];
                for (int h = 0; h < 2; h++) {
                    __mmask16 k    = o < rows ? lanes_below(cin - c0 - 16 * h) : (__mmask16)0;
                    const float *p = o < rows ? w + o * w_os + (c0 + 16 * h) * w_cs : w;
                    v[h]           = w_cs == 1 ? _mm512_maskz_loadu_ps(k, p)
                                               : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, p, 4);
                }
                __m512i hi, lo;
                split2(v[0], v[1], &hi, &lo);
                _mm512_storeu_si512(t + r * 32, hi);
                _mm512_storeu_si512(t + TILE_B + r * 32, lo);
            }
        }
}

/* Columns a0.. (16·n_nt of them) of rows x[c·ldx] (c < cin), zero outside [0, len), relu'd
 * if asked, as tap j's B tiles at b_tile(s, j, kc, nt): row r holds channels 32·kc + 2r and
 * + 2r + 1 of columns a0 + 16·nt.., interleaved pairwise, hi then lo. */
static JB_TARGET_AMX void pack_b(const float *x,
                                 int64_t ldx,
                                 int64_t cin,
                                 int64_t a0,
                                 int64_t len,
                                 bool relu,
                                 const struct amx_shape *s,
                                 int j,
                                 uint16_t *b)
{
    const __m512i ileave = _mm512_set_epi16(31,
                                            15,
                                            30,
                                            14,
                                            29,
                                            13,
                                            28,
                                            12,
                                            27,
                                            11,
                                            26,
                                            10,
                                            25,
                                            9,
                                            24,
                                            8,
                                            23,
                                            7,
                                            22,
                                            6,
                                            21,
                                            5,
                                            20,
                                            4,
                                            19,
                                            3,
                                            18,
                                            2,
                                            17,
                                            1,
                                            16,
                                            0);
    const __m512 zero    = _mm512_setzero_ps();
    for (int64_t kc = 0; kc < s->n_kc; kc++)
        for (int64_t nt = 0; nt < s->n_nt; nt++) {
            uint16_t *t       = b + b_tile(s, j, kc, nt);
            const int64_t a   = a0 + 16 * nt; /* source column of lane 0 */
            const __mmask16 k = lanes_in(len, a);
            for (int r = 0; r < 16; r++) {
                const int64_t c = kc * TILE_K + 2 * r;
                __m512 v[2];
                for (int h = 0; h < 2; h++)
                    v[h] =
                      c + h < cin ? _mm512_maskz_loadu_ps(k, addr_at(x, (c + h) * ldx + a)) : zero;
                if (relu) { /* max(0, v) keeps a NaN, as the relu op */
                    v[0] = _mm512_max_ps(zero, v[0]);
                    v[1] = _mm512_max_ps(zero, v[1]);
                }
                __m512i hi, lo;
                split2(v[0], v[1], &hi, &lo);
                _mm512_storeu_si512(t + r * 32, _mm512_permutexvar_epi16(ileave, hi));
                _mm512_storeu_si512(t + TILE_B + r * 32, _mm512_permutexvar_epi16(ileave, lo));
            }
        }
}

/* Rows 32·u.. of every tap's weights. */
static JB_TARGET_AMX void pack_weights(const struct jb_conv_job *jb,
                                       const struct amx_shape *s,
                                       int64_t u,
                                       uint16_t *a)
{
    for (int j = 0; j < s->n_tap; j++)
        pack_a(jb->w + tap_of(jb, s, j)->widx,
               jb->cout,
               jb->cin,
               jb->w_os,
               jb->w_cs,
               s,
               j,
               2 * u,
               2 * u + 2,
               a);
}

/* Whether tap j reads inside [0, len) for some column of the block at m0. */
static bool tap_live(const struct jb_conv_job *jb, const struct amx_shape *s, int j, int64_t m0)
{
    const struct jb_conv_tap *tp = tap_of(jb, s, j);
    return m0 + tp->q < tp->len && m0 + tp->q + s->block_n > 0;
}

/* The input columns [m0, m0 + block_n) of the live taps as B tiles. */
static JB_TARGET_AMX void pack_inputs(const struct jb_conv_job *jb,
                                      const struct amx_shape *s,
                                      int64_t m0,
                                      uint16_t *b)
{
    for (int j = 0; j < s->n_tap; j++) {
        if (!tap_live(jb, s, j, m0)) continue;
        const struct jb_conv_tap *tp = tap_of(jb, s, j);
        pack_b(tp->x, jb->ldx, jb->cin, m0 + tp->q, tp->len, jb->relu_in, s, j, b);
    }
}

/* Where a 32 x 32 tile of sums goes: y[o·ldy + t] for o < rows, t < cols, after the bias,
 * a relu and a residual y = res + ρ·out (res rows ldy apart, as y) */
struct amx_out {
    float *y;
    const float *res, *bias; /* or NULL */
    int64_t ldy, rows, cols;
    bool relu;
    float rho;
};

static struct amx_out job_out(const struct jb_conv_job *jb)
{
    return (struct amx_out){ jb->y,    jb->res,  jb->bias,     jb->ldy,
                             jb->cout, jb->tout, jb->relu_out, jb->rho };
}

/* bias, relu and residual of the output tile at rows o0.., columns m0.., then stored;
 * acc[(column half)·512 + row·16 + column] */
static JB_TARGET_AMX void store_tile(const struct amx_out *out,
                                     const float *acc,
                                     int64_t o0,
                                     int64_t m0)
{
    const __m512 zero = _mm512_setzero_ps();
    for (int r = 0; r < 32 && o0 + r < out->rows; r++) {
        const int64_t o = o0 + r;
        float *yr       = out->y + o * out->ldy;
        const float *xr = out->res ? out->res + o * out->ldy : NULL;
        const __m512 bv = _mm512_set1_ps(out->bias ? out->bias[o] : 0.0f);
        for (int v = 0; v < 2; v++) {
            const int64_t t   = m0 + 16 * v;
            const __mmask16 k = lanes_below(out->cols - t);
            if (!k) break;
            /* the sum, then the bias, as the FMA kernels; the residual as the add op (ρ = 1) or
             * axpy */
            __m512 val = _mm512_add_ps(_mm512_load_ps(acc + r * 16 + v * 512), bv);
            if (out->relu) val = _mm512_max_ps(zero, val);
            if (xr) {
                __m512 xv = _mm512_maskz_loadu_ps(k, xr + t);
                val       = out->rho == 1.0f
                              ? _mm512_add_ps(xv, val)
                              : _mm512_add_ps(xv, _mm512_mul_ps(_mm512_set1_ps(out->rho), val));
            }
            _mm512_mask_storeu_ps(yr + t, k, val);
        }
    }
}

/* The same for a stride-2 transposed conv's two phases (bias only): y[o, 2m + p] from phase p's
 * column m */
static JB_TARGET_AMX void store_tile2(const struct jb_conv_job *jb,
                                      const float *acc0,
                                      const float *acc1,
                                      int64_t o0,
                                      int64_t m0)
{
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_idx =
      _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int r = 0; r < 32 && o0 + r < jb->cout; r++) {
        const int64_t o = o0 + r;
        float *yr       = jb->y + o * jb->ldy;
        const __m512 bv = _mm512_set1_ps(jb->bias ? jb->bias[o] : 0.0f);
        for (int v = 0; v < 2; v++) {
            const int64_t t = 2 * (m0 + 16 * v);
            if (t >= jb->tout) break;
            __m512 a0 = _mm512_add_ps(_mm512_load_ps(acc0 + r * 16 + v * 512), bv);
            __m512 a1 = _mm512_add_ps(_mm512_load_ps(acc1 + r * 16 + v * 512), bv);
            _mm512_mask_storeu_ps(
              yr + t, lanes_below(jb->tout - t), _mm512_permutex2var_ps(a0, lo_idx, a1));
            _mm512_mask_storeu_ps(
              yr + t + 16, lanes_below(jb->tout - t - 16), _mm512_permutex2var_ps(a0, hi_idx, a1));
        }
    }
}

/* The four 16 x 16 sums (tiles 0-3) += the two row tiles (4, 5) times the two column tiles
 * (6, 7); the tile numbers must be constants */
#define PRODUCTS_2X2()                                                                             \
    do {                                                                                           \
        _tile_dpbf16ps(0, 4, 6);                                                                   \
        _tile_dpbf16ps(1, 4, 7);                                                                   \
        _tile_dpbf16ps(2, 5, 6);                                                                   \
        _tile_dpbf16ps(3, 5, 7);                                                                   \
    } while (0)

/* Output rows 16·mb.. (32) and columns 16·np.. (32) of the block, phase p's taps, into acc. */
static JB_TARGET_AMX void tile_sums(const struct amx_shape *s,
                                    const bool *live,
                                    int p,
                                    const uint16_t *a,
                                    const uint16_t *b,
                                    int64_t mb,
                                    int np,
                                    float *acc)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int j = 0; j < s->n_tap; j++) {
        if (!live[j] || s->phase[j] != p) continue;
        for (int64_t kc = 0; kc < s->n_kc; kc++) {
            const uint16_t *ta = a + a_tile(s, j, kc, mb);
            const uint16_t *tb = b + b_tile(s, j, kc, np);
            /* hi·lo, hi·hi, then lo·hi: tiles 4, 5 the rows' A, 6, 7 the columns' B */
            _tile_loadd(4, ta, 64);
            _tile_loadd(5, ta + 2 * TILE_B, 64);
            _tile_loadd(6, tb + TILE_B, 64);
            _tile_loadd(7, tb + 3 * TILE_B, 64);
            PRODUCTS_2X2();
            _tile_loadd(6, tb, 64);
            _tile_loadd(7, tb + 2 * TILE_B, 64);
            PRODUCTS_2X2();
            _tile_loadd(4, ta + TILE_B, 64);
            _tile_loadd(5, ta + 3 * TILE_B, 64);
            PRODUCTS_2X2();
        }
    }
    _tile_stored(0, acc, 64);
    _tile_stored(1, acc + 512, 64);
    _tile_stored(2, acc + 256, 64);
    _tile_stored(3, acc + 512 + 256, 64);
}

/* Every output row against the packed column block at m0. */
static JB_TARGET_AMX void block_rows(const struct jb_conv_job *jb,
                                     const struct amx_shape *s,
                                     const uint16_t *a,
                                     const uint16_t *b,
                                     int64_t m0)
{
    bool live[2 * JB_CONV_MAX_TAPS];
    for (int j = 0; j < s->n_tap; j++)
        live[j] = tap_live(jb, s, j, m0);
    const struct amx_out out = job_out(jb);
    float acc[2][2 * 512] __attribute__((aligned(64)));
    for (int64_t mb = 0; mb < s->n_mb; mb += 2)
        for (int np = 0; np < s->n_nt && m0 + 16 * np < jb->n_m; np += 2) {
            for (int p = 0; p < jb->n_phase; p++)
                tile_sums(s, live, p, a, b, mb, np, acc[p]);
            if (jb->n_phase == 1)
                store_tile(&out, acc[0], 16 * mb, m0 + 16 * np);
            else
                store_tile2(jb, acc[0], acc[1], 16 * mb, m0 + 16 * np);
        }
}

struct amx_task {
    struct jb_cpu *cpu;
    const struct jb_conv_job *jb;
    struct amx_shape s;
};

static JB_TARGET_AMX void config_tiles(void)
{
    struct amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i]  = 16;
        cfg.colsb[i] = 64;
    }
    _tile_loadconfig(&cfg);
}

static JB_TARGET_AMX void amx_pack_rows(void *arg, int64_t u0, int64_t u1, int slot)
{
    (void)slot;
    const struct amx_task *t = arg;
    for (int64_t u = u0; u < u1; u++)
        pack_weights(t->jb, &t->s, u, t->cpu->amx_w);
}

static JB_TARGET_AMX void amx_blocks(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct amx_task *t = arg;
    uint16_t *b              = (uint16_t *)jb_cpu_arena(t->cpu, slot);
    config_tiles();
    for (int64_t i = i0; i < i1; i++) {
        pack_inputs(t->jb, &t->s, i * t->s.block_n, b);
        block_rows(t->jb, &t->s, t->cpu->amx_w, b, i * t->s.block_n);
    }
    _tile_release(); /* the tile state is large: not kept across context switches */
}

bool jb_cpu_conv_amx(struct jb_cpu *cpu, const struct jb_conv_job *jb, double flops)
{
    if (cpu->isa < JB_CPU_ISA_AMX || jb->n_phase > 2 || jb->step > 1 ||
        jb->cin < JB_CPU_AMX_MIN_CIN || jb->n_m <= 0 || jb->cout <= 0 ||
        (jb->n_phase == 2 && (jb->relu_in || jb->relu_out || jb->res)))
        return false;
    struct amx_task t   = { cpu, jb, { 0 } };
    struct amx_shape *s = &t.s;
    for (int p = 0; p < jb->n_phase; p++)
        for (int i = 0; i < jb->n_tap[p]; i++) {
            s->phase[s->n_tap] = p;
            s->index[s->n_tap] = i;
            s->n_tap++;
        }
    s->n_kc = (jb->cin + TILE_K - 1) / TILE_K;
    s->n_mb = 2 * ((jb->cout + 31) / 32);
    /* the packed input block in the arena, the packed weights in amx_w */
    s->block_n = BLOCK_N;
    s->n_nt    = BLOCK_N / 16;
    if (block_bytes(s) > JB_CPU_ARENA_FLOATS * sizeof(float) ||
        weights_bytes(s) > JB_CPU_AMX_W_BYTES)
        return false;
    /* the weights once, by all threads (32 rows per item), then the column blocks */
    jb_cpu_for(cpu, s->n_mb / 2, (double)(s->n_tap * s->n_kc) * 1024.0, amx_pack_rows, &t);
    const int64_t blocks = (jb->n_m + s->block_n - 1) / s->block_n;
    jb_cpu_for(cpu, blocks, flops / (double)blocks, amx_blocks, &t);
    return true;
}

/* --- narrow ResConv1DBlock --------------------------------------------------------------- */

enum { RB_N = 64 }; /* columns per tile */

/* The block's two convs as AMX shapes: the dilated k = 3 conv (S rows, 3 taps of C channels) and
 * the 1x1 conv (C rows, S channels), each over RB_N-column tiles. */
static struct amx_shape rb_shape(int64_t rows, int64_t cin, int n_tap)
{
    struct amx_shape s = { 0 };
    s.n_kc             = cin / TILE_K;
    s.n_mb             = rows / 16;
    s.block_n          = RB_N;
    s.n_nt             = RB_N / 16;
    s.n_tap            = n_tap;
    return s;
}

bool jb_cpu_resblock_amx_fits(int64_t C, int64_t S)
{
    return C % TILE_K == 0 && S % TILE_K == 0 && C > 0 && S > 0;
}

/* the three taps' input tiles, the inner activation (S x RB_N), its tiles */
size_t jb_cpu_resblock_amx_tile_floats(int64_t C, int64_t S)
{
    const struct amx_shape s1 = rb_shape(S, C, 3), s2 = rb_shape(C, S, 1);
    return (block_bytes(&s1) + block_bytes(&s2)) / sizeof(float) + (size_t)(S * RB_N);
}

JB_TARGET_AMX void jb_cpu_resblock_amx_weights(const struct jb_resblock_job *jb, uint16_t *wp)
{
    const int64_t C = jb->C, S = jb->S;
    const struct amx_shape s1 = rb_shape(S, C, 3), s2 = rb_shape(C, S, 1);
    for (int j = 0; j < 3; j++) /* w1 [S, C, 3] */
        pack_a(jb->w1 + j, S, C, 3 * C, 3, &s1, j, 0, s1.n_mb, wp);
    /* w2 [C, S, 1], after them */
    pack_a(jb->w2, C, S, S, 1, &s2, 0, 0, s2.n_mb, wp + a_tile(&s1, 3, 0, 0));
}

/* The input lines of the tile two ahead and the output lines of the next one: the 3·C input and
 * C output streams are more than the hardware prefetchers follow (as in the FMA kernels). */
static JB_TARGET_AMX void rb_prefetch(const struct jb_resblock_job *jb, int64_t t0)
{
    const int64_t C = jb->C, T = jb->T, d = jb->dil, ta = t0 + 2 * RB_N, tn = t0 + RB_N;
    const int64_t near = d < RB_N ? d : 0; /* taps this close: the centre's lines widened */
    for (int64_t c = 0; c < C; c++) {
        const float *xc = jb->x + c * T;
        for (int j = 0; j < 3; j++) {
            if (near && j != 1) continue;
            const int64_t a = ta + (j - 1) * d - (j == 1 ? near : 0);
            const int64_t e = ta + (j - 1) * d + RB_N + (j == 1 ? near : 0);
            for (int64_t u = a < 0 ? 0 : a; u < e && u < T; u += 16)
                _mm_prefetch((const char *)(xc + u), _MM_HINT_T0);
        }
        float *yc = jb->y + c * T;
        for (int64_t u = tn; u < tn + RB_N && u < T; u += 16)
            _mm_prefetch((const char *)(yc + u), _MM_HINT_T0);
    }
}

JB_TARGET_AMX void jb_cpu_resblock_amx(const struct jb_resblock_job *jb,
                                       const uint16_t *wp,
                                       int64_t tile0,
                                       int64_t tile1,
                                       float *mem)
{
    const int64_t C = jb->C, S = jb->S, T = jb->T, d = jb->dil;
    const struct amx_shape s1 = rb_shape(S, C, 3), s2 = rb_shape(C, S, 1);
    uint16_t *b1       = (uint16_t *)mem;                        /* the three taps' input tiles */
    float *h           = mem + block_bytes(&s1) / sizeof(float); /* S x RB_N */
    uint16_t *b2       = (uint16_t *)(h + S * RB_N);
    const uint16_t *w2 = wp + a_tile(&s1, 3, 0, 0);
    /* h = relu(conv3 + b1); y = x + ρ·(conv1 + b2) */
    const struct amx_out out1 = { h, NULL, jb->b1, RB_N, S, RB_N, true, 1.0f };
    const struct amx_out out2 = { jb->y, jb->x, jb->b2, T, C, T, false, jb->rho };
    float acc[2 * 512] __attribute__((aligned(64)));
    const bool all[1] = { true };
    config_tiles();
    for (int64_t tile = tile0; tile < tile1; tile++) {
        const int64_t t0 = RB_N * tile;
        rb_prefetch(jb, t0);
        bool live[3];
        for (int j = 0; j < 3; j++) {
            const int64_t a0 = t0 + (j - 1) * d; /* relu(x) at t + (j − 1)·d, zero outside */
            live[j]          = a0 < T && a0 + RB_N > 0;
            if (live[j]) pack_b(jb->x, T, C, a0, T, true, &s1, j, b1);
        }
        for (int64_t mb = 0; mb < s1.n_mb; mb += 2)
            for (int np = 0; np < RB_N / 16; np += 2) {
                tile_sums(&s1, live, 0, wp, b1, mb, np, acc);
                store_tile(&out1, acc, 16 * mb, 16 * np);
            }
        pack_b(h, RB_N, S, 0, RB_N, false, &s2, 0, b2);
        for (int64_t mb = 0; mb < s2.n_mb; mb += 2)
            for (int np = 0; np < RB_N / 16; np += 2) {
                tile_sums(&s2, all, 0, w2, b2, mb, np, acc);
                store_tile(&out2, acc, 16 * mb, t0 + 16 * np);
            }
    }
    _tile_release();
}

#else

bool jb_cpu_amx_usable(void)
{
    return false;
}

bool jb_cpu_resblock_amx_fits(int64_t C, int64_t S)
{
    (void)C;
    (void)S;
    return false;
}

size_t jb_cpu_resblock_amx_tile_floats(int64_t C, int64_t S)
{
    (void)C;
    (void)S;
    return 0;
}

void jb_cpu_resblock_amx_weights(const struct jb_resblock_job *jb, uint16_t *wp)
{
    (void)jb;
    (void)wp;
}

void jb_cpu_resblock_amx(const struct jb_resblock_job *jb,
                         const uint16_t *wp,
                         int64_t tile0,
                         int64_t tile1,
                         float *mem)
{
    (void)jb, (void)wp, (void)tile0, (void)tile1, (void)mem;
}

bool jb_cpu_conv_amx(struct jb_cpu *cpu, const struct jb_conv_job *jb, double flops)
{
    (void)cpu;
    (void)jb;
    (void)flops;
    return false;
}

#endif
