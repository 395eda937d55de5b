/*
 * backend/cpu/cpu_x86.c - AVX-512 and AVX2/F16C kernels: dtype conversion, the small-M fused
 * matmul (GEMV) kernels, the direct convolution tile kernel and the VQ argmin row scan.
 *
 * The engine is built for x86-64-v2, so each function here carries a target attribute and is
 * called only after cpu.c has checked the CPU (cpu->isa). Kernels are written as always_inline
 * templates whose shape parameters are compile-time constants at each call site, so the register
 * tiles stay in registers.
 */
#include "backend/cpu/cpu.h"

#if JB_CPU_X86

#include "core/fp16.h"

#include <immintrin.h>
#include <string.h>

/* ============================================================================================ */
/* AVX-512                                                                                       */
/* ============================================================================================ */

/* 16 weights at element index i of p, as fp32. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 __m512 ld16_512(enum jb_dtype type, const void *p, int64_t i)
{
    if (type == JB_DTYPE_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
    if (type == JB_DTYPE_BF16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_loadu_ps((const float *)p + i);
}

/* The same for the lanes in k (others zero); never touches memory of masked-off lanes. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 __m512 ld16m_512(enum jb_dtype type, const void *p,
                                                          int64_t i, __mmask16 k)
{
    if (type == JB_DTYPE_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *)p + i));
    if (type == JB_DTYPE_BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)p + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(k, (const float *)p + i);
}

static inline __mmask16 lanes_below(int64_t n) /* lanes [0, n) of 16, n clamped to [0, 16] */
{
    return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

JB_TARGET_AVX512 void jb_cpu_convert_avx512(enum jb_dtype type, const void *src, float *dst,
                                            int64_t n)
{
    if (type == JB_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    if (type == JB_DTYPE_F16) {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, ld16_512(JB_DTYPE_F16, src, i));
        if (i < n) {
            __mmask16 k = lanes_below(n - i);
            _mm512_mask_storeu_ps(dst + i, k, ld16m_512(JB_DTYPE_F16, src, i, k));
        }
    } else {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, ld16_512(JB_DTYPE_BF16, src, i));
        if (i < n) {
            __mmask16 k = lanes_below(n - i);
            _mm512_mask_storeu_ps(dst + i, k, ld16m_512(JB_DTYPE_BF16, src, i, k));
        }
    }
}

/* --- GEMV, W [K, N]: acc[m, j] += Σ_{kk<KB} x[m, k+kk] · W[k+kk, n0+j], j < nc ----------------- */

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_n_step_512(enum jb_dtype type, const int M,
                                                             const int KB, int64_t k,
                                                             const float *x, int64_t ldx,
                                                             const void *w, int64_t ldw,
                                                             int64_t n0, int64_t nc, float *acc,
                                                             int64_t lda)
{
    __m512 bx[4][8];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++) bx[m][kk] = _mm512_set1_ps(x[m * ldx + k + kk]);

    int64_t j = 0;
    for (; j + 16 <= nc; j += 16) {
        __m512 wv[8];
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++) wv[kk] = ld16_512(type, w, (k + kk) * ldw + n0 + j);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 a = _mm512_loadu_ps(acc + m * lda + j);
#pragma GCC unroll 8
            for (int kk = 0; kk < KB; kk++) a = _mm512_fmadd_ps(bx[m][kk], wv[kk], a);
            _mm512_storeu_ps(acc + m * lda + j, a);
        }
    }
    if (j < nc) { /* acc rows are padded to 16, only the weights need the mask */
        __mmask16 km = lanes_below(nc - j);
        __m512    wv[8];
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++) wv[kk] = ld16m_512(type, w, (k + kk) * ldw + n0 + j, km);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 a = _mm512_loadu_ps(acc + m * lda + j);
#pragma GCC unroll 8
            for (int kk = 0; kk < KB; kk++) a = _mm512_fmadd_ps(bx[m][kk], wv[kk], a);
            _mm512_storeu_ps(acc + m * lda + j, a);
        }
    }
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_n_512(enum jb_dtype type, const int M,
                                                        const int KB, int64_t K, const float *x,
                                                        int64_t ldx, const void *w, int64_t ldw,
                                                        int64_t n0, int64_t nc, float *acc,
                                                        int64_t lda)
{
    int64_t k = 0;
    for (; k + KB <= K; k += KB) gemv_n_step_512(type, M, KB, k, x, ldx, w, ldw, n0, nc, acc, lda);
    for (; k < K; k++) gemv_n_step_512(type, M, 1, k, x, ldx, w, ldw, n0, nc, acc, lda);
}

/* --- GEMV, W [N, K]: acc[m, col + r] = x[m, :] · W[n + r, :] for r < R ------------------------ */

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_t_rows_512(enum jb_dtype type, const int M,
                                                             const int R, int64_t K,
                                                             const float *x, int64_t ldx,
                                                             const void *w, int64_t ldw, int64_t n,
                                                             float *acc, int64_t lda, int64_t col)
{
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) a[m][r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = ld16_512(type, w, (n + r) * ldw + k);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 xv = _mm512_loadu_ps(x + m * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) a[m][r] = _mm512_fmadd_ps(xv, wv[r], a[m][r]);
        }
    }
    if (k < K) {
        __mmask16 km = lanes_below(K - k);
        __m512    wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = ld16m_512(type, w, (n + r) * ldw + k, km);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 xv = _mm512_maskz_loadu_ps(km, x + m * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) a[m][r] = _mm512_fmadd_ps(xv, wv[r], a[m][r]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[m * lda + col + r] = _mm512_reduce_add_ps(a[m][r]);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_t_512(enum jb_dtype type, const int M, int64_t K,
                                                        const float *x, int64_t ldx, const void *w,
                                                        int64_t ldw, int64_t n0, int64_t n1,
                                                        float *acc, int64_t lda)
{
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) gemv_t_rows_512(type, M, 4, K, x, ldx, w, ldw, n, acc, lda, n - n0);
    for (; n < n1; n++) gemv_t_rows_512(type, M, 1, K, x, ldx, w, ldw, n, acc, lda, n - n0);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_512(enum jb_dtype type, bool w_trans, int64_t M,
                                                      int64_t K, const float *x, int64_t ldx,
                                                      const void *w, int64_t ldw, int64_t n0,
                                                      int64_t n1, float *acc, int64_t lda)
{
    if (w_trans) {
        switch (M) {
        case 1: gemv_t_512(type, 1, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        case 2: gemv_t_512(type, 2, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        case 3: gemv_t_512(type, 3, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        default: gemv_t_512(type, 4, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        }
        return;
    }
    for (int64_t m = 0; m < M; m++) memset(acc + m * lda, 0, (size_t)lda * sizeof(float));
    int64_t nc = n1 - n0;
    switch (M) { /* 16 broadcast registers: 8 rows of W per step for M <= 2, else 4 */
    case 1: gemv_n_512(type, 1, 8, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    case 2: gemv_n_512(type, 2, 8, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    case 3: gemv_n_512(type, 3, 4, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    default: gemv_n_512(type, 4, 4, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    }
}

JB_TARGET_AVX512 void jb_cpu_gemv_avx512(enum jb_dtype type, bool w_trans, int64_t M, int64_t K,
                                         const float *x, int64_t ldx, const void *w, int64_t ldw,
                                         int64_t n0, int64_t n1, float *acc, int64_t lda)
{
    JB_ASSERT(M >= 1 && M <= JB_CPU_GEMV_MAX_M);
    switch (type) {
    case JB_DTYPE_F16: gemv_512(JB_DTYPE_F16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
    case JB_DTYPE_BF16: gemv_512(JB_DTYPE_BF16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
    default: gemv_512(JB_DTYPE_F32, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
    }
}

/* --- direct convolution ------------------------------------------------------------------------ */

/* Address of element off of row base p, computed in integers: off may lie before the row when
 * the tile overlaps the zero padding (those lanes are masked off and never read). */
static inline const float *addr_at(const float *p, int64_t off)
{
    return (const float *)((uintptr_t)p + (uintptr_t)off * sizeof(float));
}

/* Copies the input windows of the tile at m0 into pack (rows ld_pack apart), zeros outside
 * [0, len), and prefetches the part of the next tile's windows not covered by this one. */
static JB_TARGET_AVX512 void conv_pack_512(const struct jb_conv_job *jb, int64_t m0, float *pack)
{
    for (int s = 0; s < jb->n_seg; s++) {
        const struct jb_conv_seg *sg = &jb->seg[s];
        int64_t                   a  = m0 + sg->q0; /* source column of packed column 0 */
        for (int64_t c = 0; c < jb->cin; c++) {
            const float *src = addr_at(sg->x, c * jb->ldx + a);
            float       *dst = pack + c * jb->ld_pack + sg->off;
            for (int64_t v = 0; v < sg->width; v += 16) {
                __mmask16 k = (__mmask16)(lanes_below(sg->len - a - v) & ~lanes_below(-a - v));
                _mm512_storeu_ps(dst + v, _mm512_maskz_loadu_ps(k, addr_at(src, v)));
            }
            for (int64_t v = sg->width; v < sg->width + JB_CONV_TILE; v += 16)
                _mm_prefetch((const char *)addr_at(src, v), _MM_HINT_T0);
        }
    }
    /* and the next tile's output lines, which would otherwise miss one by one at the stores */
    int64_t t1 = jb->n_phase * (m0 + JB_CONV_TILE);
    for (int64_t o = 0; o < jb->cout; o++)
        for (int64_t v = 0; v < jb->n_phase * JB_CONV_TILE; v += 16)
            _mm_prefetch((const char *)addr_at(jb->y, o * jb->ldy + t1 + v), _MM_HINT_T0);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void conv_tile_512(const struct jb_conv_job *jb,
                                                           const float *pack, int64_t o0,
                                                           int64_t m0, const int P, const int NR,
                                                           const bool TAIL)
{
    enum { NV = JB_CONV_TILE / 16 };
    __m512 acc[2][8][NV];
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[p][r][v] = _mm512_setzero_ps();

    const float *wo = jb->w + o0 * jb->w_os;
    for (int64_t c = 0; c < jb->cin; c++) {
        const float *wc = wo + c * jb->w_cs;
        const float *pc = pack + c * jb->ld_pack;
#pragma GCC unroll 2
        for (int p = 0; p < P; p++) {
            for (int i = 0; i < jb->n_tap[p]; i++) {
                const float *xr = pc + jb->tap_off[p][i];
                __m512       xv[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) xv[v] = _mm512_loadu_ps(xr + 16 * v);
                const float *wt = wc + jb->tap[p][i].widx;
#pragma GCC unroll 8
                for (int r = 0; r < NR; r++) {
                    __m512 wb = _mm512_set1_ps(wt[r * jb->w_os]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; v++) acc[p][r][v] = _mm512_fmadd_ps(wb, xv[v], acc[p][r][v]);
                }
            }
        }
    }

    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_idx =
        _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) {
        float *yr = jb->y + (o0 + r) * jb->ldy;
        __m512 b  = jb->bias ? _mm512_set1_ps(jb->bias[o0 + r]) : _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (P == 1) {
                int64_t t   = m0 + 16 * v;
                __m512  val = _mm512_add_ps(acc[0][r][v], b);
                if (TAIL)
                    _mm512_mask_storeu_ps((float *)addr_at(yr, t), lanes_below(jb->tout - t), val);
                else
                    _mm512_storeu_ps(yr + t, val);
            } else { /* interleave the phases: y[2m] from phase 0, y[2m + 1] from phase 1 */
                int64_t t  = 2 * (m0 + 16 * v);
                __m512  a0 = _mm512_add_ps(acc[0][r][v], b);
                __m512  a1 = _mm512_add_ps(acc[1][r][v], b);
                __m512  lo = _mm512_permutex2var_ps(a0, lo_idx, a1);
                __m512  hi = _mm512_permutex2var_ps(a0, hi_idx, a1);
                if (TAIL) {
                    _mm512_mask_storeu_ps((float *)addr_at(yr, t), lanes_below(jb->tout - t), lo);
                    _mm512_mask_storeu_ps((float *)addr_at(yr, t + 16),
                                          lanes_below(jb->tout - t - 16), hi);
                } else {
                    _mm512_storeu_ps(yr + t, lo);
                    _mm512_storeu_ps(yr + t + 16, hi);
                }
            }
        }
    }
}

#define CONV_CASE_ROWS(P, NR)                                                                     \
    case NR:                                                                                      \
        if (tail)                                                                                 \
            conv_tile_512(jb, pack, o0, m0, P, NR, true);                                         \
        else                                                                                      \
            conv_tile_512(jb, pack, o0, m0, P, NR, false);                                        \
        break;

JB_TARGET_AVX512 void jb_cpu_conv_items_avx512(const struct jb_conv_job *jb, int64_t item0,
                                               int64_t item1, float *pack)
{
    JB_ASSERT(jb->nr == (jb->n_phase == 1 ? 8 : 4));
    int64_t packed = -1; /* tile now in pack */
    for (int64_t item = item0; item < item1; item++) {
        int64_t tile = item / jb->n_oblk, ob = item % jb->n_oblk;
        int64_t m0 = tile * JB_CONV_TILE, o0 = ob * jb->nr;
        if (tile != packed) {
            conv_pack_512(jb, m0, pack);
            packed = tile;
        }
        int64_t rows = jb->cout - o0 < jb->nr ? jb->cout - o0 : jb->nr;
        bool    tail = jb->n_phase * (m0 + JB_CONV_TILE) > jb->tout;
        if (jb->n_phase == 1) {
            switch (rows) {
                CONV_CASE_ROWS(1, 1)
                CONV_CASE_ROWS(1, 2)
                CONV_CASE_ROWS(1, 3)
                CONV_CASE_ROWS(1, 4)
                CONV_CASE_ROWS(1, 5)
                CONV_CASE_ROWS(1, 6)
                CONV_CASE_ROWS(1, 7)
                CONV_CASE_ROWS(1, 8)
            default: break;
            }
        } else {
            switch (rows) {
                CONV_CASE_ROWS(2, 1)
                CONV_CASE_ROWS(2, 2)
                CONV_CASE_ROWS(2, 3)
                CONV_CASE_ROWS(2, 4)
            default: break;
            }
        }
    }
}

/* --- VQ argmin --------------------------------------------------------------------------------- */

/* Vectorised over time: lanes are time steps, codes are scanned in ascending order with a strict
 * compare, so each lane keeps the first index of its minimum. */
JB_TARGET_AVX512 void jb_cpu_vq_block_avx512(const float *xn, const float *dot, int64_t ldd,
                                             const float *kn, int64_t bins, int64_t n,
                                             int32_t *codes)
{
    enum { NV = 3 };
    const __m512 two = _mm512_set1_ps(2.0f);
    for (int64_t t = 0; t < n; t += 16 * NV) {
        __mmask16 km[NV];
        __m512    vxn[NV], best[NV];
        __m512i   bidx[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            km[v]   = lanes_below(n - t - 16 * v);
            vxn[v]  = _mm512_maskz_loadu_ps(km[v], xn + t + 16 * v);
            best[v] = _mm512_set1_ps(__builtin_inff());
            bidx[v] = _mm512_setzero_si512();
        }
        for (int64_t j = 0; j < bins; j++) {
            const float  *dr = dot + j * ldd + t;
            const __m512  kj = _mm512_set1_ps(kn[j]);
            const __m512i jj = _mm512_set1_epi32((int32_t)j);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                /* (‖x‖² − 2 x·k) + ‖k‖², as the reference */
                __m512 dv = _mm512_maskz_loadu_ps(km[v], dr + 16 * v);
                __m512 d  = _mm512_add_ps(_mm512_sub_ps(vxn[v], _mm512_mul_ps(two, dv)), kj);
                __mmask16 lt = _mm512_cmp_ps_mask(d, best[v], _CMP_LT_OQ);
                best[v]      = _mm512_mask_mov_ps(best[v], lt, d);
                bidx[v]      = _mm512_mask_mov_epi32(bidx[v], lt, jj);
            }
        }
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_mask_storeu_epi32(codes + t + 16 * v, km[v], bidx[v]);
    }
}

/* ============================================================================================ */
/* AVX2 + FMA + F16C                                                                             */
/* ============================================================================================ */

static JB_ALWAYS_INLINE JB_TARGET_AVX2 __m256 ld8_256(enum jb_dtype type, const void *p, int64_t i)
{
    if (type == JB_DTYPE_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    if (type == JB_DTYPE_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)p + i);
}

/* n < 8 elements at index i, zero-padded (AVX2 has no masked 16-bit loads). */
static JB_ALWAYS_INLINE JB_TARGET_AVX2 __m256 ld8n_256(enum jb_dtype type, const void *p, int64_t i,
                                                      int64_t n)
{
    float buf[8] = {0};
    for (int64_t l = 0; l < n; l++) {
        if (type == JB_DTYPE_F16)
            buf[l] = jb_f16_to_f32(((const uint16_t *)p)[i + l]);
        else if (type == JB_DTYPE_BF16)
            buf[l] = jb_bf16_to_f32(((const uint16_t *)p)[i + l]);
        else
            buf[l] = ((const float *)p)[i + l];
    }
    return _mm256_loadu_ps(buf);
}

JB_TARGET_AVX2 void jb_cpu_convert_avx2(enum jb_dtype type, const void *src, float *dst, int64_t n)
{
    if (type == JB_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    if (type == JB_DTYPE_F16)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ld8_256(JB_DTYPE_F16, src, i));
    else
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ld8_256(JB_DTYPE_BF16, src, i));
    jb_convert_to_f32(type, (const uint16_t *)src + i, dst + i, (size_t)(n - i));
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_n_step_256(enum jb_dtype type, const int M,
                                                           const int KB, int64_t k,
                                                           const float *x, int64_t ldx,
                                                           const void *w, int64_t ldw, int64_t n0,
                                                           int64_t nc, float *acc, int64_t lda)
{
    __m256 bx[4][4];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int kk = 0; kk < KB; kk++) bx[m][kk] = _mm256_set1_ps(x[m * ldx + k + kk]);
    for (int64_t j = 0; j < nc; j += 8) {
        __m256 wv[4];
        if (j + 8 <= nc) {
#pragma GCC unroll 4
            for (int kk = 0; kk < KB; kk++) wv[kk] = ld8_256(type, w, (k + kk) * ldw + n0 + j);
        } else {
#pragma GCC unroll 4
            for (int kk = 0; kk < KB; kk++) wv[kk] = ld8n_256(type, w, (k + kk) * ldw + n0 + j, nc - j);
        }
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m256 a = _mm256_loadu_ps(acc + m * lda + j);
#pragma GCC unroll 4
            for (int kk = 0; kk < KB; kk++) a = _mm256_fmadd_ps(bx[m][kk], wv[kk], a);
            _mm256_storeu_ps(acc + m * lda + j, a);
        }
    }
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_n_256(enum jb_dtype type, const int M, const int KB,
                                                      int64_t K, const float *x, int64_t ldx,
                                                      const void *w, int64_t ldw, int64_t n0,
                                                      int64_t nc, float *acc, int64_t lda)
{
    int64_t k = 0;
    for (; k + KB <= K; k += KB) gemv_n_step_256(type, M, KB, k, x, ldx, w, ldw, n0, nc, acc, lda);
    for (; k < K; k++) gemv_n_step_256(type, M, 1, k, x, ldx, w, ldw, n0, nc, acc, lda);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 float hsum_256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s        = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s        = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_t_rows_256(enum jb_dtype type, const int M,
                                                           const int R, int64_t K,
                                                           const float *x, int64_t ldx,
                                                           const void *w, int64_t ldw, int64_t n,
                                                           float *acc, int64_t lda, int64_t col)
{
    __m256 a[4][4];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) a[m][r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
        __m256 wv[4], xv;
        bool   full = k + 8 <= K;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = full ? ld8_256(type, w, (n + r) * ldw + k)
                         : ld8n_256(type, w, (n + r) * ldw + k, K - k);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            xv = full ? _mm256_loadu_ps(x + m * ldx + k)
                      : ld8n_256(JB_DTYPE_F32, x, m * ldx + k, K - k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) a[m][r] = _mm256_fmadd_ps(xv, wv[r], a[m][r]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[m * lda + col + r] = hsum_256(a[m][r]);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_t_256(enum jb_dtype type, const int M, const int R,
                                                      int64_t K, const float *x, int64_t ldx,
                                                      const void *w, int64_t ldw, int64_t n0,
                                                      int64_t n1, float *acc, int64_t lda)
{
    int64_t n = n0;
    for (; n + R <= n1; n += R) gemv_t_rows_256(type, M, R, K, x, ldx, w, ldw, n, acc, lda, n - n0);
    for (; n < n1; n++) gemv_t_rows_256(type, M, 1, K, x, ldx, w, ldw, n, acc, lda, n - n0);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_256(enum jb_dtype type, bool w_trans, int64_t M,
                                                    int64_t K, const float *x, int64_t ldx,
                                                    const void *w, int64_t ldw, int64_t n0,
                                                    int64_t n1, float *acc, int64_t lda)
{
    /* 16 ymm registers: M·R accumulators plus R weights (transposed), M·KB broadcasts plus KB
     * weights (not transposed) */
    if (w_trans) {
        switch (M) {
        case 1: gemv_t_256(type, 1, 4, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        case 2: gemv_t_256(type, 2, 4, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        case 3: gemv_t_256(type, 3, 2, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        default: gemv_t_256(type, 4, 2, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
        }
        return;
    }
    for (int64_t m = 0; m < M; m++) memset(acc + m * lda, 0, (size_t)lda * sizeof(float));
    int64_t nc = n1 - n0;
    switch (M) {
    case 1: gemv_n_256(type, 1, 4, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    case 2: gemv_n_256(type, 2, 4, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    case 3: gemv_n_256(type, 3, 2, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    default: gemv_n_256(type, 4, 2, K, x, ldx, w, ldw, n0, nc, acc, lda); break;
    }
}

JB_TARGET_AVX2 void jb_cpu_gemv_avx2(enum jb_dtype type, bool w_trans, int64_t M, int64_t K,
                                     const float *x, int64_t ldx, const void *w, int64_t ldw,
                                     int64_t n0, int64_t n1, float *acc, int64_t lda)
{
    JB_ASSERT(M >= 1 && M <= JB_CPU_GEMV_MAX_M);
    switch (type) {
    case JB_DTYPE_F16: gemv_256(JB_DTYPE_F16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
    case JB_DTYPE_BF16: gemv_256(JB_DTYPE_BF16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
    default: gemv_256(JB_DTYPE_F32, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda); break;
    }
}

#else /* !JB_CPU_X86: never called (cpu->isa stays portable), defined so the build links */

void jb_cpu_convert_avx512(enum jb_dtype type, const void *src, float *dst, int64_t n)
{
    jb_convert_to_f32(type, src, dst, (size_t)n);
}
void jb_cpu_convert_avx2(enum jb_dtype type, const void *src, float *dst, int64_t n)
{
    jb_convert_to_f32(type, src, dst, (size_t)n);
}
void jb_cpu_gemv_avx512(enum jb_dtype type, bool w_trans, int64_t M, int64_t K, const float *x,
                        int64_t ldx, const void *w, int64_t ldw, int64_t n0, int64_t n1,
                        float *acc, int64_t lda)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_gemv_avx2(enum jb_dtype type, bool w_trans, int64_t M, int64_t K, const float *x,
                      int64_t ldx, const void *w, int64_t ldw, int64_t n0, int64_t n1, float *acc,
                      int64_t lda)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_conv_items_avx512(const struct jb_conv_job *job, int64_t item0, int64_t item1,
                              float *pack)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_vq_block_avx512(const float *xn, const float *dot, int64_t ldd, const float *kn,
                            int64_t bins, int64_t n, int32_t *codes)
{
    JB_ASSERT(!"unreachable");
}

#endif
