/*
 * backend/cpu/cpu_x86.c - AVX-512 and AVX2/F16C kernels: dtype conversions, the small-M fused
 * matmul (GEMV) kernels, the direct convolution tile kernel and the VQ argmin row scan.
 *
 * The engine is built for x86-64-v2, so each function here carries a target attribute and is
 * called only after cpu.c has checked the CPU (cpu->isa). Kernels are written as always_inline
 * templates whose shape parameters are compile-time constants at each call site, so the register
 * tiles stay in registers.
 */
#include "backend/cpu/cpu.h"

#if JB_CPU_X86

#include "backend/cpu/x86_lanes.h"
#include "core/fp16.h"

#include <immintrin.h>
#include <string.h>

/* ============================================================================================ */
/* AVX-512                                                                                       */
/* ============================================================================================ */

/* 16 weights at element index i of p, as fp32. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 __m512 ld16_512(enum jb_dtype type,
                                                         const void *p,
                                                         int64_t i)
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
static JB_ALWAYS_INLINE JB_TARGET_AVX512 __m512 ld16m_512(enum jb_dtype type,
                                                          const void *p,
                                                          int64_t i,
                                                          __mmask16 k)
{
    if (type == JB_DTYPE_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *)p + i));
    if (type == JB_DTYPE_BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)p + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(k, (const float *)p + i);
}

JB_TARGET_AVX512 void jb_cpu_convert_avx512(enum jb_dtype type,
                                            const void *src,
                                            float *dst,
                                            int64_t n)
{
    if (type == JB_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    if (type == JB_DTYPE_F16) {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, ld16_512(JB_DTYPE_F16, src, i));
        if (i < n) {
            __mmask16 k = lanes_below(n - i);
            _mm512_mask_storeu_ps(dst + i, k, ld16m_512(JB_DTYPE_F16, src, i, k));
        }
    } else {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, ld16_512(JB_DTYPE_BF16, src, i));
        if (i < n) {
            __mmask16 k = lanes_below(n - i);
            _mm512_mask_storeu_ps(dst + i, k, ld16m_512(JB_DTYPE_BF16, src, i, k));
        }
    }
}

/* --- GEMV, W [K, N], one row of x: acc[j] += Σ_{kk<KB} x[k+kk] · W[k+kk, n0+j], j < nc -------- */

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_n_step_512(enum jb_dtype type,
                                                              const int KB,
                                                              int64_t k,
                                                              const float *x,
                                                              const void *w,
                                                              int64_t ldw,
                                                              int64_t n0,
                                                              int64_t nc,
                                                              float *acc)
{
    __m512 bx[8];
#pragma GCC unroll 8
    for (int kk = 0; kk < KB; kk++)
        bx[kk] = _mm512_set1_ps(x[k + kk]);

    /* rows ahead, one prefetch per cache line: row blocks are short streams (one slice wide)
     * that the hardware prefetchers only pick up after they have started. fp32: 8 rows in flight
     * are enough memory parallelism without (prefetching cost ~8%); only the single-row steps at
     * the end of K prefetch the next row, into L1. bf16 (fp16 takes the AVX2 kernel, see
     * gemv_512): each cache line feeds twice the FMAs and conversions, so the loads
     * waiting on DRAM fill the out-of-order window at half the bandwidth; the rows two steps
     * ahead, into L2, keep the loads short (fp16, single thread from DRAM: 23 -> 30 GB/s). */
    const bool narrow = type != JB_DTYPE_F32;
    const int64_t es = narrow ? 2 : 4, pf = 64 / es;
    const char *wn = (const char *)w + ((k + (narrow ? 2 * KB : KB)) * ldw + n0) * es;
    int64_t j      = 0;
    for (; j + 16 <= nc; j += 16) {
        if ((KB < 8 || narrow) && j % pf == 0)
#pragma GCC unroll 8
            for (int kk = 0; kk < KB; kk++) {
                if (narrow)
                    _mm_prefetch(wn + (kk * ldw + j) * es, _MM_HINT_T1);
                else
                    _mm_prefetch(wn + (kk * ldw + j) * es, _MM_HINT_T0);
            }
        __m512 wv[8];
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++)
            wv[kk] = ld16_512(type, w, (k + kk) * ldw + n0 + j);
        __m512 a = _mm512_loadu_ps(acc + j);
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++)
            a = _mm512_fmadd_ps(bx[kk], wv[kk], a);
        _mm512_storeu_ps(acc + j, a);
    }
    if (j < nc) { /* acc rows are padded to 16, only the weights need the mask */
        __mmask16 km = lanes_below(nc - j);
        __m512 wv[8];
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++)
            wv[kk] = ld16m_512(type, w, (k + kk) * ldw + n0 + j, km);
        __m512 a = _mm512_loadu_ps(acc + j);
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++)
            a = _mm512_fmadd_ps(bx[kk], wv[kk], a);
        _mm512_storeu_ps(acc + j, a);
    }
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_n_512(enum jb_dtype type,
                                                         int64_t K,
                                                         const float *x,
                                                         const void *w,
                                                         int64_t ldw,
                                                         int64_t n0,
                                                         int64_t nc,
                                                         float *acc)
{
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        gemv_n_step_512(type, 8, k, x, w, ldw, n0, nc, acc);
    for (; k < K; k++)
        gemv_n_step_512(type, 1, k, x, w, ldw, n0, nc, acc);
}

/* --- GEMV, W [K, N], 2-4 rows of x: register tiles of M rows x 16 columns over KB rows ------- */

/* acc[m, 0..16) += Σ_{kk<KB} x[m, k+kk] · W[k+kk, col..col+16), lanes in km */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_tile_512(enum jb_dtype type,
                                                            const int M,
                                                            const int KB,
                                                            int64_t k,
                                                            const float *x,
                                                            int64_t ldx,
                                                            const void *w,
                                                            int64_t ldw,
                                                            int64_t col,
                                                            float *acc,
                                                            int64_t lda,
                                                            __mmask16 km)
{
    __m512 s[4];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
        s[m] = _mm512_loadu_ps(acc + m * lda);
#pragma GCC unroll 16
    for (int kk = 0; kk < KB; kk++) {
        const int64_t i = (k + kk) * ldw + col;
        __m512 wv = km == (__mmask16)0xffff ? ld16_512(type, w, i) : ld16m_512(type, w, i, km);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++)
            s[m] = _mm512_fmadd_ps(_mm512_set1_ps(x[m * ldx + k + kk]), wv, s[m]);
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
        _mm512_storeu_ps(acc + m * lda, s[m]);
}

/* Rows [k, k + KB) of W against all columns of the slice, 16 at a time, each 16-column tile
 * through all KB rows with its M sums in registers; rows [k + KB, k + 2 KB) prefetched into L2,
 * one line per row and cache line of columns. The kernel before it kept all broadcasts of a step
 * in registers (M x 8 for 8-row steps, M x 4 for fp16/bf16 at M = 3-4, which took 4-row steps;
 * for fp32 at M = 3-4 more than there are) and loaded and stored the sums once per row of x and
 * step; against it (w1920d72 token step's GEMVs, the two alternating in one process, 6 rounds on
 * 2 threads, 3 on 1) this takes 13-18% less time with 4 rows of fp32 x (1 thread 13-14%), 14-19%
 * with 3, 2-10% with 4 rows of fp16 (1 thread 8-13%), and -3 to +18% with 2 rows (fp16; fp32 -3
 * to +9%). 8, 12, 24 or 32 rows per step, 32 or 64 columns per tile,
 * and the rows two or three steps ahead were slower. One row of x gained nothing consistent (fp16:
 * 9% less time to 5% more) or lost ~15% (fp32), so it keeps gemv_n_step_512. The FMAs are those of
 * that kernel, in the same order: the same bits for any M. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_rows_step_512(enum jb_dtype type,
                                                                 const int M,
                                                                 const int KB,
                                                                 int64_t k,
                                                                 const float *x,
                                                                 int64_t ldx,
                                                                 const void *w,
                                                                 int64_t ldw,
                                                                 int64_t n0,
                                                                 int64_t nc,
                                                                 float *acc,
                                                                 int64_t lda)
{
    const int64_t es = type == JB_DTYPE_F32 ? 4 : 2, pf = 64 / es;
    const char *wn = (const char *)w + ((k + KB) * ldw + n0) * es;
    int64_t j      = 0;
    for (; j + 16 <= nc; j += 16) {
        if (j % pf == 0) /* a loop, as gemv_n_step_256: M = 4 fp16 1.00-1.11x, fp32 0.97-1.06x */
#pragma GCC unroll 1
            for (int kk = 0; kk < KB; kk++)
                _mm_prefetch(wn + (kk * ldw + j) * es, _MM_HINT_T1);
        gemv_tile_512(type, M, KB, k, x, ldx, w, ldw, n0 + j, acc + j, lda, (__mmask16)0xffff);
    }
    if (j < nc) /* acc rows are padded to 16, only the weights need the mask */
        gemv_tile_512(type, M, KB, k, x, ldx, w, ldw, n0 + j, acc + j, lda, lanes_below(nc - j));
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_rows_512(enum jb_dtype type,
                                                            const int M,
                                                            int64_t K,
                                                            const float *x,
                                                            int64_t ldx,
                                                            const void *w,
                                                            int64_t ldw,
                                                            int64_t n0,
                                                            int64_t nc,
                                                            float *acc,
                                                            int64_t lda)
{
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
        gemv_rows_step_512(type, M, 16, k, x, ldx, w, ldw, n0, nc, acc, lda);
    for (; k < K; k++)
        gemv_rows_step_512(type, M, 1, k, x, ldx, w, ldw, n0, nc, acc, lda);
}

/* --- GEMV, W [N, K]: acc[m, col + r] = x[m, :] · W[n + r, :] for r < R ------------------------ */

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_t_rows_512(enum jb_dtype type,
                                                              const int M,
                                                              const int R,
                                                              int64_t K,
                                                              const float *x,
                                                              int64_t ldx,
                                                              const void *w,
                                                              int64_t ldw,
                                                              int64_t n,
                                                              float *acc,
                                                              int64_t lda,
                                                              int64_t col)
{
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[m][r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = ld16_512(type, w, (n + r) * ldw + k);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 xv = _mm512_loadu_ps(x + m * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[m][r] = _mm512_fmadd_ps(xv, wv[r], a[m][r]);
        }
    }
    if (k < K) {
        __mmask16 km = lanes_below(K - k);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = ld16m_512(type, w, (n + r) * ldw + k, km);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 xv = _mm512_maskz_loadu_ps(km, x + m * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[m][r] = _mm512_fmadd_ps(xv, wv[r], a[m][r]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[m * lda + col + r] = _mm512_reduce_add_ps(a[m][r]);
}

/* rows [n0, n1) in groups of 4 (their 4 weight rows stay in L1), every group against all rows
 * of x, 4 at a time */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_t_512(enum jb_dtype type,
                                                         int64_t M,
                                                         int64_t K,
                                                         const float *x,
                                                         int64_t ldx,
                                                         const void *w,
                                                         int64_t ldw,
                                                         int64_t n0,
                                                         int64_t n1,
                                                         float *acc,
                                                         int64_t lda)
{
    for (int64_t n = n0; n < n1; n += 4) {
        bool full = n + 4 <= n1;
        for (int64_t m = 0; m < M; m += 4) {
            const float *xm = x + m * ldx;
            float *am       = acc + m * lda;
            int64_t c       = n - n0;
#define GEMV_T_CASE(MG)                                                                            \
    case MG:                                                                                       \
        if (full)                                                                                  \
            gemv_t_rows_512(type, MG, 4, K, xm, ldx, w, ldw, n, am, lda, c);                       \
        else                                                                                       \
            for (int64_t r = n; r < n1; r++)                                                       \
                gemv_t_rows_512(type, MG, 1, K, xm, ldx, w, ldw, r, am, lda, r - n0);              \
        break;
            switch (M - m < 4 ? M - m : 4) {
                GEMV_T_CASE(1)
                GEMV_T_CASE(2)
                GEMV_T_CASE(3)
                GEMV_T_CASE(4)
            default:
                break;
            }
#undef GEMV_T_CASE
        }
    }
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemv_512(enum jb_dtype type,
                                                       bool w_trans,
                                                       int64_t M,
                                                       int64_t K,
                                                       const float *x,
                                                       int64_t ldx,
                                                       const void *w,
                                                       int64_t ldw,
                                                       int64_t n0,
                                                       int64_t n1,
                                                       float *acc,
                                                       int64_t lda)
{
    if (w_trans) {
        gemv_t_512(type, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        return;
    }
    /* fp16 with one row of x (a 1-candidate token step) takes the AVX2 kernel: 8 columns per
     * iteration, the next step's 8 rows prefetched into L1. On a Zen 5 host it streamed a w1920d72
     * token step 3-18% faster on two threads (6 interleaved runs) and 4-12% on one (4) than the
     * 32-column kernel below; fp32 took 20-33% more time on it, and fp16 with 2 rows of x 6-18%
     * more (both before the register tiles of gemv_rows_512). The same FMAs in the same order, so
     * the same bits. Here rather than in jb_cpu_gemv_avx512, so that the fp16 instance of
     * gemv_n_512 is not compiled. */
    if (type == JB_DTYPE_F16 && M == 1) {
        jb_cpu_gemv_avx2(type, false, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        return;
    }
    for (int64_t m = 0; m < M; m++)
        memset(acc + m * lda, 0, (size_t)lda * sizeof(float));
    const int64_t nc = n1 - n0;
    switch (M) {
    case 1:
        gemv_n_512(type, K, x, w, ldw, n0, nc, acc);
        break;
    case 2:
        gemv_rows_512(type, 2, K, x, ldx, w, ldw, n0, nc, acc, lda);
        break;
    case 3:
        gemv_rows_512(type, 3, K, x, ldx, w, ldw, n0, nc, acc, lda);
        break;
    default:
        gemv_rows_512(type, 4, K, x, ldx, w, ldw, n0, nc, acc, lda);
        break;
    }
}

JB_TARGET_AVX512 void jb_cpu_gemv_avx512(enum jb_dtype type,
                                         bool w_trans,
                                         int64_t M,
                                         int64_t K,
                                         const float *x,
                                         int64_t ldx,
                                         const void *w,
                                         int64_t ldw,
                                         int64_t n0,
                                         int64_t n1,
                                         float *acc,
                                         int64_t lda)
{
    JB_ASSERT(M >= 1 && (w_trans || M <= JB_CPU_GEMV_MAX_M));
    switch (type) {
    case JB_DTYPE_F16:
        gemv_512(JB_DTYPE_F16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        break;
    case JB_DTYPE_BF16:
        gemv_512(JB_DTYPE_BF16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        break;
    default:
        gemv_512(JB_DTYPE_F32, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        break;
    }
}

/* --- GEMM on a packed fp32 tile --------------------------------------------------------------- */

/* Columns per panel of the GEMM tile: each panel (up to 128 rows x 96 columns, 48 KiB) serves
 * every row group of x before the next one starts, so it is read from memory (or L2) once and then
 * from L1, where sweeping the whole tile per row group re-read it from L2 each time (prefill chunk
 * of w1920d72, M = 32: 5-10% less time, alternating runs). */
#define GEMM_PANEL 96

/* One line of the next tile into L2 (struct jb_cpu_prefetch), then on to the next line */
static inline void prefetch_step(struct jb_cpu_prefetch *p)
{
    if (p->row >= p->end) return;
    _mm_prefetch((const char *)(p->row + 64 * (uintptr_t)p->col), _MM_HINT_T1);
    if (++p->col == p->lines) p->col = 0, p->row += (uintptr_t)p->ld;
}

/* The body of jb_cpu_gemm_tile_*: panel by panel, every row group of x (4 rows, fewer at the
 * end) through ROWS, the ISA's gemm_rows_* */
#define GEMM_TILE_PANELS(ROWS)                                                                     \
    do {                                                                                           \
        struct jb_cpu_prefetch none = { 0 };                                                       \
        if (!pf) pf = &none;                                                                       \
        for (int64_t j = 0; j < nc; j += GEMM_PANEL) {                                             \
            const int64_t ncj = nc - j < GEMM_PANEL ? nc - j : GEMM_PANEL;                         \
            for (int64_t m = 0; m < M; m += 4) {                                                   \
                const float *xm = x + m * ldx;                                                     \
                float *am       = acc + m * lda + j;                                               \
                switch (M - m < 4 ? M - m : 4) {                                                   \
                case 1:                                                                            \
                    ROWS(1, kb, xm, ldx, b + j, ldb, ncj, am, lda, first, pf);                     \
                    break;                                                                         \
                case 2:                                                                            \
                    ROWS(2, kb, xm, ldx, b + j, ldb, ncj, am, lda, first, pf);                     \
                    break;                                                                         \
                case 3:                                                                            \
                    ROWS(3, kb, xm, ldx, b + j, ldb, ncj, am, lda, first, pf);                     \
                    break;                                                                         \
                default:                                                                           \
                    ROWS(4, kb, xm, ldx, b + j, ldb, ncj, am, lda, first, pf);                     \
                    break;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemm_ukr_512(const int MR,
                                                           const int NV,
                                                           int64_t kb,
                                                           const float *x,
                                                           int64_t ldx,
                                                           const float *b,
                                                           int64_t ldb,
                                                           float *acc,
                                                           int64_t lda,
                                                           bool first,
                                                           struct jb_cpu_prefetch *pf)
{
    __m512 c[4][6];
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 6
        for (int v = 0; v < NV; v++)
            c[m][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + m * lda + 16 * v);
    struct jb_cpu_prefetch p = *pf; /* in registers through the loop */
    for (int64_t k = 0; k < kb; k++) {
        prefetch_step(&p);
        __m512 bv[6];
#pragma GCC unroll 6
        for (int v = 0; v < NV; v++)
            bv[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 4
        for (int m = 0; m < MR; m++) {
            __m512 a = _mm512_set1_ps(x[m * ldx + k]);
#pragma GCC unroll 6
            for (int v = 0; v < NV; v++)
                c[m][v] = _mm512_fmadd_ps(a, bv[v], c[m][v]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 6
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(acc + m * lda + 16 * v, c[m][v]);
    *pf = p;
}

/* Columns in chunks of 96, then one narrower kernel for the rest; it reads and writes up to the
 * next multiple of 16 columns, inside the padded tile and acc rows. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void gemm_rows_512(const int MR,
                                                            int64_t kb,
                                                            const float *x,
                                                            int64_t ldx,
                                                            const float *b,
                                                            int64_t ldb,
                                                            int64_t nc,
                                                            float *acc,
                                                            int64_t lda,
                                                            bool first,
                                                            struct jb_cpu_prefetch *pf)
{
    int64_t j = 0;
    for (; j + 96 <= nc; j += 96)
        gemm_ukr_512(MR, 6, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
    switch ((nc - j + 15) / 16) {
    case 1:
        gemm_ukr_512(MR, 1, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    case 2:
        gemm_ukr_512(MR, 2, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    case 3:
        gemm_ukr_512(MR, 3, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    case 4:
        gemm_ukr_512(MR, 4, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    case 5:
        gemm_ukr_512(MR, 5, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    case 6:
        gemm_ukr_512(MR, 6, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    default:
        break; /* 0: no tail */
    }
}

JB_TARGET_AVX512 void jb_cpu_gemm_tile_avx512(int64_t M,
                                              int64_t kb,
                                              const float *x,
                                              int64_t ldx,
                                              const float *b,
                                              int64_t ldb,
                                              int64_t nc,
                                              float *acc,
                                              int64_t lda,
                                              bool first,
                                              struct jb_cpu_prefetch *pf)
{
    GEMM_TILE_PANELS(gemm_rows_512);
}

/* --- direct convolution ----------------------------------------------------------------------- */

/* The taps of the tile at m0 whose source window [m0 + q, m0 + q + JB_CONV_TILE) meets [0, len):
 * the others read only zero padding (a dilated conv whose dilation approaches the sequence
 * length, 729 and 2187 in the upsampler conditioner), and their FMAs would add nothing but zeros.
 * Leaving them out keeps every sum (bar the sign of a zero), so chunks still agree bitwise. */
struct conv_live {
    int n[2];
    int64_t off[2][JB_CONV_MAX_TAPS];  /* column in the packed row */
    int64_t widx[2][JB_CONV_MAX_TAPS]; /* weight offset */
};

static void conv_live_taps(const struct jb_conv_job *jb, int64_t m0, struct conv_live *lv)
{
    for (int p = 0; p < jb->n_phase; p++) {
        lv->n[p] = 0;
        for (int i = 0; i < jb->n_tap[p]; i++) {
            const struct jb_conv_tap *tp = &jb->tap[p][i];
            if (m0 + tp->q >= tp->len || m0 + tp->q + JB_CONV_TILE <= 0) continue;
            lv->off[p][lv->n[p]]  = jb->tap_off[p][i];
            lv->widx[p][lv->n[p]] = tp->widx;
            lv->n[p]++;
        }
    }
}

/* conv_pack_512 for a job whose taps read every second column (step 2, a stride-2 conv1d read
 * in place instead of split into phases first): packed column u of a tap is x[c·ldx + 2u]. Full
 * vectors deinterleave two loads (the second never reads past the last needed column); vectors
 * at the sequence ends gather the lanes in range. */
static JB_TARGET_AVX512 void conv_pack2_512(const struct jb_conv_job *jb,
                                            int64_t m0,
                                            float *pack,
                                            int64_t dist)
{
    const __m512i even =
      _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (int s = 0; s < jb->n_seg; s++) {
        const struct jb_conv_seg *sg = &jb->seg[s];
        int64_t a                    = m0 + sg->q0;
        for (int64_t c = 0; c < jb->cin; c++) {
            const float *src = addr_at(sg->x, c * jb->ldx + 2 * a);
            float *dst       = pack + c * jb->ld_pack + sg->off;
            for (int64_t v = 0; v < sg->width; v += 16) {
                __mmask16 k    = (__mmask16)(lanes_below(sg->len - a - v) & ~lanes_below(-a - v));
                const float *p = addr_at(src, 2 * v);
                __m512 val;
                if (k == (__mmask16)0xffff)
                    val = _mm512_permutex2var_ps(
                      _mm512_loadu_ps(p), even, _mm512_maskz_loadu_ps((__mmask16)0x7fff, p + 16));
                else
                    val = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, even, p, 4);
                _mm512_storeu_ps(dst + v, val);
            }
            for (int64_t v = 0; v < 2 * JB_CONV_TILE; v += 16)
                _mm_prefetch(
                  (const char *)addr_at(src, 2 * (sg->width + (dist - 1) * JB_CONV_TILE) + v),
                  _MM_HINT_T0);
        }
    }
    int64_t t1 = m0 + JB_CONV_TILE;
    for (int64_t o = 0; o < jb->cout; o++)
        for (int64_t v = 0; v < JB_CONV_TILE; v += 16)
            _mm_prefetch((const char *)addr_at(jb->y, o * jb->ldy + t1 + v), _MM_HINT_T0);
}

/* Copies the input windows of the tile at m0 into pack (rows ld_pack apart), zeros outside
 * [0, len), and prefetches the input columns a later tile will need first; the distance grows
 * as the work per tile shrinks (few output rows), to cover the memory latency. */
static JB_TARGET_AVX512 void conv_pack_512(const struct jb_conv_job *jb, int64_t m0, float *pack)
{
    int64_t dist = jb->n_oblk >= 8 ? 1 : 8 / jb->n_oblk; /* tiles ahead */
    if (jb->step == 2) {
        conv_pack2_512(jb, m0, pack, dist);
        return;
    }
    for (int s = 0; s < jb->n_seg; s++) {
        const struct jb_conv_seg *sg = &jb->seg[s];
        int64_t a                    = m0 + sg->q0; /* source column of packed column 0 */
        for (int64_t c = 0; c < jb->cin; c++) {
            const float *src = addr_at(sg->x, c * jb->ldx + a);
            float *dst       = pack + c * jb->ld_pack + sg->off;
            for (int64_t v = 0; v < sg->width; v += 16) {
                __mmask16 k = (__mmask16)(lanes_below(sg->len - a - v) & ~lanes_below(-a - v));
                __m512 val  = _mm512_maskz_loadu_ps(k, addr_at(src, v));
                /* max(0, v) keeps a NaN (the second operand wins), as the relu op */
                if (jb->relu_in) val = _mm512_max_ps(_mm512_setzero_ps(), val);
                _mm512_storeu_ps(dst + v, val);
            }
            for (int64_t v = 0; v < JB_CONV_TILE; v += 16)
                _mm_prefetch((const char *)addr_at(src, sg->width + (dist - 1) * JB_CONV_TILE + v),
                             _MM_HINT_T0);
        }
    }
    /* and the next tile's output lines, which would otherwise miss one by one at the stores */
    int64_t t1 = jb->n_phase * (m0 + JB_CONV_TILE);
    for (int64_t o = 0; o < jb->cout; o++)
        for (int64_t v = 0; v < jb->n_phase * JB_CONV_TILE; v += 16)
            _mm_prefetch((const char *)addr_at(jb->y, o * jb->ldy + t1 + v), _MM_HINT_T0);
}

/* relu and residual (see struct jb_conv_job) of a register tile's nr rows: ep holds their sums
 * with the bias, JB_CONV_TILE columns from m0 per row; x + ρ·out unfused, as the add op (ρ = 1)
 * or axpy, then stored to y. Out of line, once per tile: inlined into each of the 32 register-tile
 * instances it made the ASan+UBSan build of this file several times slower, and called once per
 * vector it had the tile's accumulators spilled around every call. */
static JB_TARGET_AVX512 __attribute__((noinline)) void
conv_epilogue_512(const struct jb_conv_job *jb, const float *ep, int64_t o0, int nr, int64_t m0)
{
    for (int r = 0; r < nr; r++) {
        float *yr       = jb->y + (o0 + r) * jb->ldy;
        const float *xr = jb->res ? jb->res + (o0 + r) * jb->ldy : NULL;
        for (int v = 0; v < JB_CONV_TILE; v += 16) {
            const int64_t t   = m0 + v;
            const __mmask16 k = lanes_below(jb->tout - t);
            __m512 val        = _mm512_load_ps(ep + r * JB_CONV_TILE + v);
            if (jb->relu_out) val = _mm512_max_ps(_mm512_setzero_ps(), val);
            if (xr) {
                __m512 xv = _mm512_maskz_loadu_ps(k, addr_at(xr, t));
                val       = jb->rho == 1.0f
                              ? _mm512_add_ps(xv, val)
                              : _mm512_add_ps(xv, _mm512_mul_ps(_mm512_set1_ps(jb->rho), val));
            }
            _mm512_mask_storeu_ps((float *)addr_at(yr, t), k, val);
        }
    }
}

/* input channels ahead that conv_tile_512 prefetches transposed weights: at the conditioner's
 * 1024 -> 1920 up-sampling (one thread) 8 ran at 129 GFLOP/s, 16 at 147, 32 at 146-153, 64 at
 * 148; none 93 */
#define W_PF_DIST 32

/* Whether the register tiles prefetch their weights W_PF_DIST channels ahead: where consecutive
 * input channels' weights are a cache line or more apart (w_cs >= 16: the transposed convs'
 * [Cin, Cout, k], Cout·k floats), each channel's are a line of their own, a stride the hardware
 * prefetchers do not follow. Conv weights [Cout, Cin, k] (w_cs = k) and Winograd's S x C filters
 * (w_cs = 1) are read as contiguous streams. */
static inline bool prefetch_weights(const struct jb_conv_job *jb)
{
    return jb->w_cs >= 16;
}

/* One input channel's (and tap's) FMAs of a register tile: acc[r][·] += w[r·ws] · x[0 .. 48)
 * for r < NR, each row's weight broadcast against the same 3 input vectors. Shared by the direct
 * conv's loops and the fused resblock's; inlined with NR constant, as each loop was written. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void fma_rows_512(__m512 acc[8][JB_CONV_TILE / 16],
                                                           const float *x,
                                                           const float *w,
                                                           int64_t ws,
                                                           const int NR)
{
    enum { NV = JB_CONV_TILE / 16 };
    __m512 xv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        xv[v] = _mm512_loadu_ps(x + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) {
        __m512 wb = _mm512_set1_ps(w[r * ws]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_fmadd_ps(wb, xv[v], acc[r][v]);
    }
}

/* The input-channel loop of conv_tile_512 for one phase with one live tap (1x1 convs,
 * Winograd's products, the long dilations' centre-only tiles), without the general loop's tap
 * loop around each channel's 24 FMAs. One thread: a 1024 x 1024 x 480 product 1.0-1.2x the
 * general loop with AVX-512, 1.4-1.6x with AVX2 (conv_one_tap_256, where it reaches the FMA
 * peak); the conditioner 1.01-1.15x. Written for two and three taps as well, it made k=3 convs
 * 7-10% slower (AVX-512 at 64 channels, AVX2 at 64 and 1024): those stay on the general loop.
 * The same FMAs in the same order, so the same bits. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void conv_one_tap_512(const struct jb_conv_job *jb,
                                                               const struct conv_live *lv,
                                                               const float *pack,
                                                               const float *wo,
                                                               __m512 acc[8][JB_CONV_TILE / 16],
                                                               const int NR)
{
    const int64_t ldp = jb->ld_pack, wcs = jb->w_cs, wos = jb->w_os;
    const bool pf_w = prefetch_weights(jb);
    const float *xr = pack + lv->off[0][0];
    const float *wt = wo + lv->widx[0][0];
    for (int64_t c = 0; c < jb->cin; c++, xr += ldp, wt += wcs) {
        if (pf_w) _mm_prefetch((const char *)addr_at(wt, W_PF_DIST * wcs), _MM_HINT_T0);
        fma_rows_512(acc, xr, wt, wos, NR);
    }
}

/* conv_one_tap_512 for a full tile of 8 rows, out of line. Inlined into
 * jb_cpu_conv_items_avx512 among its many instances, the loop kept its row offsets and strides in
 * stack slots and a spare vector register: each channel reloaded four of them and moved one back
 * through a vector port that the FMAs use. Here they stay in registers, and the 24 sums are loaded
 * and stored once per tile. On an Intel Xeon host, alternating with the inlined loop: bench_ops
 * (one thread, five runs) a Winograd product 150-152 GFLOP/s against 144-149 and the
 * conditioner's 1x1 conv 135-143 against 129-138; a conditioner window (three rounds) 0.95-0.96x
 * the time on one thread and 0.94-0.99x on two. The same FMAs in the same order. */
static JB_TARGET_AVX512 __attribute__((noinline)) void conv_one_tap8_512(
  const struct jb_conv_job *jb,
  const struct conv_live *lv,
  const float *pack,
  const float *wo,
  __m512 acc[8][JB_CONV_TILE / 16])
{
    enum { NV = JB_CONV_TILE / 16 };
    __m512 a[8][NV];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            a[r][v] = acc[r][v];
    conv_one_tap_512(jb, lv, pack, wo, a, 8);
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = a[r][v];
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void conv_tile_512(const struct jb_conv_job *jb,
                                                            const struct conv_live *lv,
                                                            const float *pack,
                                                            int64_t o0,
                                                            int64_t m0,
                                                            const int P,
                                                            const int NR,
                                                            const bool TAIL)
{
    enum { NV = JB_CONV_TILE / 16 };
    __m512 acc[2][8][NV];
    float ep[8 * JB_CONV_TILE] __attribute__((aligned(64))); /* sums for conv_epilogue_512 */
    const bool epilogue = P == 1 && (jb->relu_out || jb->res);
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[p][r][v] = _mm512_setzero_ps();

    const float *wo = jb->w + o0 * jb->w_os;
    const bool pf_w = prefetch_weights(jb);
    if (P == 1 && NR == 8 && lv->n[0] == 1)
        conv_one_tap8_512(jb, lv, pack, wo, acc[0]);
    else if (P == 1 && lv->n[0] == 1)
        conv_one_tap_512(jb, lv, pack, wo, acc[0], NR);
    else
        for (int64_t c = 0; c < jb->cin; c++) {
            const float *wc = wo + c * jb->w_cs;
            const float *pc = pack + c * jb->ld_pack;
            if (pf_w) _mm_prefetch((const char *)addr_at(wc, W_PF_DIST * jb->w_cs), _MM_HINT_T0);
#pragma GCC unroll 2
            for (int p = 0; p < P; p++)
                for (int i = 0; i < lv->n[p]; i++)
                    fma_rows_512(acc[p], pc + lv->off[p][i], wc + lv->widx[p][i], jb->w_os, NR);
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
                int64_t t  = m0 + 16 * v;
                __m512 val = _mm512_add_ps(acc[0][r][v], b);
                if (epilogue)
                    _mm512_store_ps(ep + r * JB_CONV_TILE + 16 * v, val);
                else if (TAIL)
                    _mm512_mask_storeu_ps((float *)addr_at(yr, t), lanes_below(jb->tout - t), val);
                else
                    _mm512_storeu_ps(yr + t, val);
            } else { /* interleave the phases: y[2m] from phase 0, y[2m + 1] from phase 1 */
                int64_t t = 2 * (m0 + 16 * v);
                __m512 a0 = _mm512_add_ps(acc[0][r][v], b);
                __m512 a1 = _mm512_add_ps(acc[1][r][v], b);
                __m512 lo = _mm512_permutex2var_ps(a0, lo_idx, a1);
                __m512 hi = _mm512_permutex2var_ps(a0, hi_idx, a1);
                if (TAIL) {
                    _mm512_mask_storeu_ps((float *)addr_at(yr, t), lanes_below(jb->tout - t), lo);
                    _mm512_mask_storeu_ps(
                      (float *)addr_at(yr, t + 16), lanes_below(jb->tout - t - 16), hi);
                } else {
                    _mm512_storeu_ps(yr + t, lo);
                    _mm512_storeu_ps(yr + t + 16, hi);
                }
            }
        }
    }
    if (epilogue) conv_epilogue_512(jb, ep, o0, NR, m0);
}

#define CONV_CASE_ROWS(P, NR)                                                                      \
    case NR:                                                                                       \
        if (tail)                                                                                  \
            conv_tile_512(jb, &lv, pack, o0, m0, P, NR, true);                                     \
        else                                                                                       \
            conv_tile_512(jb, &lv, pack, o0, m0, P, NR, false);                                    \
        break;

JB_TARGET_AVX512 void jb_cpu_conv_items_avx512(const struct jb_conv_job *jb,
                                               int64_t item0,
                                               int64_t item1,
                                               float *pack)
{
    JB_ASSERT(jb->nr == (jb->n_phase == 1 ? 8 : 4));
    int64_t packed = -1; /* tile now in pack */
    struct conv_live lv;
    for (int64_t item = item0; item < item1; item++) {
        int64_t tile = item / jb->n_oblk, ob = item % jb->n_oblk;
        int64_t m0 = tile * JB_CONV_TILE, o0 = ob * jb->nr;
        if (tile != packed) {
            conv_pack_512(jb, m0, pack);
            conv_live_taps(jb, m0, &lv);
            packed = tile;
        }
        int64_t rows = jb->cout - o0 < jb->nr ? jb->cout - o0 : jb->nr;
        bool tail    = jb->n_phase * (m0 + JB_CONV_TILE) > jb->tout;
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
            default:
                break;
            }
        } else {
            switch (rows) {
                CONV_CASE_ROWS(2, 1)
                CONV_CASE_ROWS(2, 2)
                CONV_CASE_ROWS(2, 3)
                CONV_CASE_ROWS(2, 4)
            default:
                break;
            }
        }
    }
}

/* --- fused ResConv1DBlock --------------------------------------------------------------------- */

/* pack[(c·3 + j)·W + i] = relu(x[c, t0 + (j − 1)·dil + i]), zero outside [0, T); and prefetches
 * the windows and output lines of the tile after next (2 tiles ahead measured 5% faster at 64
 * channels and 15% at 32 than 1 ahead or no output prefetch: C·3 input streams and C output
 * streams are more than the hardware prefetchers follow). */
static JB_TARGET_AVX512 void rb_pack_512(const struct jb_resblock_job *jb, int64_t t0, float *pack)
{
    enum { W = JB_CONV_TILE };
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t c = 0; c < jb->C; c++) {
        const float *xr = jb->x + c * jb->T;
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) {
            const int64_t a = t0 + (j - 1) * jb->dil;
            float *dst      = pack + (c * 3 + j) * W;
#pragma GCC unroll 3
            for (int v = 0; v < W / 16; v++) {
                const int64_t i = a + 16 * v;
                __mmask16 k     = (__mmask16)(lanes_below(jb->T - i) & ~lanes_below(-i));
                /* max(0, v) keeps a NaN (the second operand wins), as torch.relu */
                _mm512_storeu_ps(dst + 16 * v,
                                 _mm512_max_ps(zero, _mm512_maskz_loadu_ps(k, addr_at(xr, i))));
            }
#pragma GCC unroll 3
            for (int v = 0; v < W / 16; v++)
                _mm_prefetch((const char *)addr_at(xr, a + 2 * W + 16 * v), _MM_HINT_T0);
        }
#pragma GCC unroll 3
        for (int v = 0; v < W / 16; v++)
            _mm_prefetch((const char *)addr_at(jb->y + c * jb->T, t0 + 2 * W + 16 * v),
                         _MM_HINT_T0);
    }
}

/* b[(o0 + r)·W ..] = relu(b1[o] + Σ_c Σ_j w1[o, c, j] · pack[c, j]) for NR rows from o0. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void rb_conv3_512(const struct jb_resblock_job *jb,
                                                           const float *pack,
                                                           float *b,
                                                           int64_t o0,
                                                           const int NR)
{
    enum { W = JB_CONV_TILE, NV = JB_CONV_TILE / 16 };
    __m512 acc[8][NV];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    const int64_t ws = jb->C * 3;
    const float *wo  = jb->w1 + o0 * ws;
    for (int64_t c = 0; c < jb->C; c++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++)
            fma_rows_512(acc, pack + (c * 3 + j) * W, wo + c * 3 + j, ws, NR);
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) {
        __m512 bias = jb->b1 ? _mm512_set1_ps(jb->b1[o0 + r]) : zero;
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(b + (o0 + r) * W + 16 * v,
                             _mm512_max_ps(zero, _mm512_add_ps(acc[r][v], bias)));
    }
}

/* y[o, t0 ..] = x[o, t0 ..] + ρ·(b2[o] + Σ_s w2[o, s] · b[s]) for NR rows from o0. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void rb_conv1_512(const struct jb_resblock_job *jb,
                                                           const float *b,
                                                           int64_t t0,
                                                           int64_t o0,
                                                           const int NR)
{
    enum { W = JB_CONV_TILE, NV = JB_CONV_TILE / 16 };
    __m512 acc[8][NV];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    const float *wo = jb->w2 + o0 * jb->S;
    for (int64_t s = 0; s < jb->S; s++)
        fma_rows_512(acc, b + s * W, wo + s, jb->S, NR);
    const __m512 rho = _mm512_set1_ps(jb->rho);
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) {
        const float *xr = jb->x + (o0 + r) * jb->T + t0;
        float *yr       = jb->y + (o0 + r) * jb->T + t0;
        __m512 bias     = jb->b2 ? _mm512_set1_ps(jb->b2[o0 + r]) : _mm512_setzero_ps();
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            __mmask16 k = lanes_below(jb->T - t0 - 16 * v); /* all lanes but at the end */
            __m512 h    = _mm512_add_ps(acc[r][v], bias);
            __m512 xv   = _mm512_maskz_loadu_ps(k, xr + 16 * v);
            __m512 out =
              jb->rho == 1.0f ? _mm512_add_ps(xv, h) : _mm512_add_ps(xv, _mm512_mul_ps(rho, h));
            _mm512_mask_storeu_ps(yr + 16 * v, k, out);
        }
    }
}

/* One step of a row loop over register tiles of 4, 2 and 1 rows (each row's sums are the same
 * whatever tile it is in), with `left` rows from o0 to go. */
#define ROW_TILE_STEP_421(CALL, left, o0)                                                          \
    if ((left) >= 4) {                                                                             \
        CALL(4);                                                                                   \
        (o0) += 4;                                                                                 \
    } else if ((left) >= 2) {                                                                      \
        CALL(2);                                                                                   \
        (o0) += 2;                                                                                 \
    } else {                                                                                       \
        CALL(1);                                                                                   \
        (o0) += 1;                                                                                 \
    }

/* Rows [o0, o0 + rows) in register tiles of 8, 4, 2 and 1 rows: 4 instantiations per kernel
 * instead of 8. */
#define RB_ROW_TILES(CALL, N)                                                                      \
    for (int64_t o0 = 0; o0 < (N);) {                                                              \
        const int64_t left = (N)-o0;                                                               \
        if (left >= 8) {                                                                           \
            CALL(8);                                                                               \
            o0 += 8;                                                                               \
        } else {                                                                                   \
            ROW_TILE_STEP_421(CALL, left, o0)                                                      \
        }                                                                                          \
    }

JB_TARGET_AVX512 void jb_cpu_resblock_tiles_avx512(const struct jb_resblock_job *jb,
                                                   int64_t tile0,
                                                   int64_t tile1,
                                                   float *mem)
{
    enum { W = JB_CONV_TILE };
    float *pack = mem;                 /* (C, 3, W) */
    float *b    = mem + jb->C * 3 * W; /* (S, W) */
    for (int64_t tile = tile0; tile < tile1; tile++) {
        const int64_t t0 = tile * W;
        rb_pack_512(jb, t0, pack);
#define RB_CONV3(NR) rb_conv3_512(jb, pack, b, o0, NR)
        RB_ROW_TILES(RB_CONV3, jb->S)
#undef RB_CONV3
#define RB_CONV1(NR) rb_conv1_512(jb, b, t0, o0, NR)
        RB_ROW_TILES(RB_CONV1, jb->C)
#undef RB_CONV1
    }
}

/* --- fused ResConv1DBlock, Winograd F(2,3) along the dilation --------------------------------- */

/* 16 bases: lanes below the run's end are columns t + l, the others t + dil + l (the next run of
 * bases starts dil columns after this one ends); lanes past the last base are in neither mask. */
struct wino_vec {
    int64_t t;
    __mmask16 ma, mb;
};

static inline float *addr_at_w(float *p, int64_t off)
{
    return (float *)((uintptr_t)p + (uintptr_t)off * sizeof(float));
}

/* Where a vector of the tile reads or writes at an offset from its columns: its two parts'
 * columns and lanes, the lanes outside [0, T) already off (the same for every channel). */
struct wino_at {
    int64_t pa, pb;
    __mmask16 ka, kb;
};

static struct wino_at wino_at(const struct wino_vec *v, int64_t T, int64_t dil, int64_t off)
{
    const int64_t pa = v->t + off, pb = v->t + dil + off;
    return (struct wino_at){ pa, pb, v->ma & lanes_in(T, pa), v->mb & lanes_in(T, pb) };
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 __m512 wino_load(const float *row, const struct wino_at *a)
{
    __m512 r = _mm512_maskz_loadu_ps(a->ka, addr_at(row, a->pa));
    return a->kb ? _mm512_mask_loadu_ps(r, a->kb, addr_at(row, a->pb)) : r;
}

static JB_ALWAYS_INLINE JB_TARGET_AVX512 void wino_store(float *row,
                                                         const struct wino_at *a,
                                                         __m512 val)
{
    _mm512_mask_storeu_ps(addr_at_w(row, a->pa), a->ka, val);
    if (a->kb) _mm512_mask_storeu_ps(addr_at_w(row, a->pb), a->kb, val);
}

/* The three vectors of the tile whose first base has index i0 (base i is virtual column
 * 2·dil·(i / dil) + i % dil, column that − phase), and where each reads its taps: at[k][j] at
 * offset (j − 1)·dil (so at[k][1] and at[k][2] are where its bases' and partners' outputs go). */
static void wino_vecs(const struct jb_resblock_job *jb,
                      int64_t n_bases,
                      int64_t i0,
                      struct wino_vec v[3],
                      struct wino_at at[3][4])
{
    const int64_t d = jb->dil;
    for (int k = 0; k < 3; k++) {
        const int64_t i = i0 + 16 * k, within = i % d;
        const __mmask16 valid = lanes_below(n_bases - i), run = lanes_below(d - within);
        v[k].t  = 2 * d * (i / d) + within - jb->phase;
        v[k].ma = valid & run;
        v[k].mb = valid & (__mmask16)~run;
        for (int j = 0; at && j < 4; j++)
            at[k][j] = wino_at(&v[k], jb->T, d, (j - 1) * d);
    }
}

/* V[(k·C + c)·W + lane] = the input transform of relu(x[c]) at the lane's base t: from
 * d0..d3 = relu(x) at t − dil, t, t + dil, t + 2·dil: d0 − d2, d1 + d2, d2 − d1, d1 − d3.
 * Prefetches what the tile `ahead` (two tiles on) reads and writes: the hardware prefetchers do
 * not follow its 5·C input and 3·C output streams. */
static JB_TARGET_AVX512 void rbw_pack_512(const struct jb_resblock_job *jb,
                                          const struct wino_at at[3][4],
                                          const struct wino_vec ahead[3],
                                          float *V)
{
    enum { W = JB_CONV_TILE };
    const __m512 zero = _mm512_setzero_ps();
    const int64_t d = jb->dil, T = jb->T, plane = jb->C * W;
    for (int64_t c = 0; c < jb->C; c++) {
        const float *xr = jb->x + c * T;
        const float *yr = jb->y + c * T;
#pragma GCC unroll 3
        for (int k = 0; k < 3; k++) {
            if (!(ahead[k].ma | ahead[k].mb)) continue;
#pragma GCC unroll 5
            for (int o = -1; o <= 3; o++)
                _mm_prefetch((const char *)addr_at(xr, ahead[k].t + o * d), _MM_HINT_T0);
#pragma GCC unroll 3
            for (int o = 0; o <= 2; o++)
                _mm_prefetch((const char *)addr_at(yr, ahead[k].t + o * d), _MM_HINT_T0);
        }
#pragma GCC unroll 3
        for (int k = 0; k < 3; k++) {
            /* max(0, v) keeps a NaN (the second operand wins), as torch.relu */
            const __m512 d0 = _mm512_max_ps(zero, wino_load(xr, &at[k][0]));
            const __m512 d1 = _mm512_max_ps(zero, wino_load(xr, &at[k][1]));
            const __m512 d2 = _mm512_max_ps(zero, wino_load(xr, &at[k][2]));
            const __m512 d3 = _mm512_max_ps(zero, wino_load(xr, &at[k][3]));
            float *o        = V + c * W + 16 * k;
            _mm512_storeu_ps(o, _mm512_sub_ps(d0, d2));
            _mm512_storeu_ps(o + plane, _mm512_add_ps(d1, d2));
            _mm512_storeu_ps(o + 2 * plane, _mm512_sub_ps(d2, d1));
            _mm512_storeu_ps(o + 3 * plane, _mm512_sub_ps(d1, d3));
        }
    }
}

/* Two products at once, NR <= 4 rows each: p[r] += Σ_c ua[o0 + r, c] · Va[c] and
 * q[r] += Σ_c ub[o0 + r, c] · Vb[c] (3 + 3 loads and 4 + 4 broadcasts per 24 FMAs). */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void rbw_two_512(__m512 p[4][JB_CONV_TILE / 16],
                                                          __m512 q[4][JB_CONV_TILE / 16],
                                                          const float *Va,
                                                          const float *ua,
                                                          const float *Vb,
                                                          const float *ub,
                                                          int64_t n,
                                                          int64_t ldv,
                                                          int64_t ldu,
                                                          const int NR)
{
    enum { NV = JB_CONV_TILE / 16 };
    for (int64_t c = 0; c < n; c++) {
        __m512 va[NV], vb[NV];
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            va[v] = _mm512_loadu_ps(Va + c * ldv + 16 * v);
            vb[v] = _mm512_loadu_ps(Vb + c * ldv + 16 * v);
        }
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m512 wa = _mm512_set1_ps(ua[r * ldu + c]);
            const __m512 wb = _mm512_set1_ps(ub[r * ldu + c]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) {
                p[r][v] = _mm512_fmadd_ps(wa, va[v], p[r][v]);
                q[r][v] = _mm512_fmadd_ps(wb, vb[v], q[r][v]);
            }
        }
    }
}

/* b[(o0 + r)·2W ..]: relu(b1[o] + y0) for the bases, then relu(b1[o] + y1) for their partners,
 * with Mk the products of plane k: y0 = (M1 + M2) + M0, y1 = (M1 − M2) + M3 (u3 = −g2). */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void rbw_conv3_512(const struct jb_resblock_job *jb,
                                                            const float *u,
                                                            const float *V,
                                                            float *b,
                                                            int64_t o0,
                                                            const int NR)
{
    enum { W = JB_CONV_TILE, NV = JB_CONV_TILE / 16 };
    const int64_t C = jb->C, plane = C * W, uplane = jb->S * C;
    const float *uo = u + o0 * C;
    __m512 p[4][NV], q[4][NV];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            p[r][v] = q[r][v] = _mm512_setzero_ps();
    rbw_two_512(p, q, V + plane, uo + uplane, V + 2 * plane, uo + 2 * uplane, C, W, C, NR);
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            const __m512 m1 = p[r][v];
            p[r][v]         = _mm512_add_ps(m1, q[r][v]);
            q[r][v]         = _mm512_sub_ps(m1, q[r][v]);
        }
    rbw_two_512(p, q, V, uo, V + 3 * plane, uo + 3 * uplane, C, W, C, NR);
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        const __m512 bias = jb->b1 ? _mm512_set1_ps(jb->b1[o0 + r]) : zero;
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            _mm512_storeu_ps(b + (o0 + r) * 2 * W + 16 * v,
                             _mm512_max_ps(zero, _mm512_add_ps(p[r][v], bias)));
            _mm512_storeu_ps(b + (o0 + r) * 2 * W + W + 16 * v,
                             _mm512_max_ps(zero, _mm512_add_ps(q[r][v], bias)));
        }
    }
}

/* y = x + ρ·(b2[o] + Σ_s w2[o, s] · b[s]) at the bases and at their partners */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void rbw_conv1_512(const struct jb_resblock_job *jb,
                                                            const float *b,
                                                            const struct wino_at at[3][4],
                                                            int64_t o0,
                                                            const int NR)
{
    enum { W = JB_CONV_TILE, NV = JB_CONV_TILE / 16 };
    __m512 p[4][NV], q[4][NV];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            p[r][v] = q[r][v] = _mm512_setzero_ps();
    const float *wo = jb->w2 + o0 * jb->S;
    rbw_two_512(p, q, b, wo, b + W, wo, jb->S, 2 * W, jb->S, NR);
    const bool unit  = jb->rho == 1.0f; /* a local: y's stores could alias jb->rho */
    const __m512 rho = _mm512_set1_ps(jb->rho);
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        const float *xr = jb->x + (o0 + r) * jb->T;
        float *yr       = jb->y + (o0 + r) * jb->T;
        __m512 bias     = jb->b2 ? _mm512_set1_ps(jb->b2[o0 + r]) : _mm512_setzero_ps();
#pragma GCC unroll 2
        for (int half = 0; half < 2; half++)
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) {
                __m512 h   = _mm512_add_ps(half ? q[r][v] : p[r][v], bias);
                __m512 xv  = wino_load(xr, &at[v][1 + half]);
                __m512 out = unit ? _mm512_add_ps(xv, h) : _mm512_add_ps(xv, _mm512_mul_ps(rho, h));
                wino_store(yr, &at[v][1 + half], out);
            }
    }
}

/* Rows [o0, o0 + rows) in register tiles of 4, 2 and 1 rows (two products of up to 4 rows) */
#define RBW_ROW_TILES(CALL, N)                                                                     \
    for (int64_t o0 = 0; o0 < (N);) {                                                              \
        const int64_t left = (N)-o0;                                                               \
        ROW_TILE_STEP_421(CALL, left, o0)                                                          \
    }

JB_TARGET_AVX512 void jb_cpu_resblock_wino_avx512(const struct jb_resblock_job *jb,
                                                  const float *u,
                                                  int64_t tile0,
                                                  int64_t tile1,
                                                  float *mem)
{
    enum { W = JB_CONV_TILE };
    const int64_t n_bases = jb_cpu_resblock_wino_bases(jb->T + jb->phase, jb->dil);
    const int64_t first   = jb_cpu_resblock_wino_first(jb->dil, jb->phase);
    float *V              = mem;               /* (4, C, W) */
    float *b              = V + 4 * jb->C * W; /* (S, 2W): bases, then partners */
    for (int64_t tile = tile0; tile < tile1; tile++) {
        struct wino_vec vec[3], ahead[3];
        struct wino_at at[3][4];
        wino_vecs(jb, n_bases, first + tile * W, vec, at);
        wino_vecs(jb, n_bases, first + (tile + 2) * W, ahead, NULL);
        rbw_pack_512(jb, at, ahead, V);
#define RBW_CONV3(NR) rbw_conv3_512(jb, u, V, b, o0, NR)
        RBW_ROW_TILES(RBW_CONV3, jb->S)
#undef RBW_CONV3
#define RBW_CONV1(NR) rbw_conv1_512(jb, b, at, o0, NR)
        RBW_ROW_TILES(RBW_CONV1, jb->C)
#undef RBW_CONV1
    }
}
#undef RBW_ROW_TILES
#undef RB_ROW_TILES
#undef ROW_TILE_STEP_421

/* --- VQ argmin -------------------------------------------------------------------------------- */

/* The dot products and the argmin in one pass: per tile of JB_CONV_TILE time steps (the lanes), x
 * is packed once, then each group of NR codes gets its dot products as register tiles (one FMA
 * chain over emb from zero, the 1x1 convolution's order) and goes straight into the argmin, codes
 * in ascending order with a strict compare, so each lane keeps the first index of its minimum.
 * Nothing of the (bins, n) dot matrix is stored: the codebook (512 KB at 2048 x 64) stays in L2,
 * where storing the dots first (768 KB per block of 96 steps) evicted it and the search ran at
 * 40% of the FMA rate. Same values, compares and order as the AVX2 path (the 1x1 conv, then
 * jb_cpu_vq_block_avx2), so the same codes bitwise. */
static JB_ALWAYS_INLINE JB_TARGET_AVX512 void vq_group_512(const float *pack,
                                                           const float *kb,
                                                           int64_t emb,
                                                           const float *kn,
                                                           int64_t j0,
                                                           const __m512 *vxn,
                                                           __m512 *best,
                                                           __m512i *bidx,
                                                           const int NR)
{
    enum { W = JB_CONV_TILE, NV = JB_CONV_TILE / 16 };
    __m512 acc[8][NV];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    const float *wo = kb + j0 * emb;
    for (int64_t e = 0; e < emb; e++)
        fma_rows_512(acc, pack + e * W, wo + e, emb, NR);
    const __m512 two = _mm512_set1_ps(2.0f);
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++) {
        const __m512 kj  = _mm512_set1_ps(kn[j0 + r]);
        const __m512i jj = _mm512_set1_epi32((int32_t)(j0 + r));
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            /* (‖x‖² − 2 x·k) + ‖k‖²; the conv added a zero bias to the dot, which can only turn
             * a −0 into +0: no distance compares differently */
            __m512 d     = _mm512_add_ps(_mm512_sub_ps(vxn[v], _mm512_mul_ps(two, acc[r][v])), kj);
            __mmask16 lt = _mm512_cmp_ps_mask(d, best[v], _CMP_LT_OQ);
            best[v]      = _mm512_mask_mov_ps(best[v], lt, d);
            bidx[v]      = _mm512_mask_mov_epi32(bidx[v], lt, jj);
        }
    }
}

JB_TARGET_AVX512 void jb_cpu_vq_fused_avx512(const float *x,
                                             int64_t ldx,
                                             int64_t n,
                                             const float *kb,
                                             int64_t bins,
                                             int64_t emb,
                                             const float *kn,
                                             const float *xn,
                                             int32_t *codes,
                                             float *pack)
{
    enum { W = JB_CONV_TILE, NV = JB_CONV_TILE / 16 };
    for (int64_t t0 = 0; t0 < n; t0 += W) {
        __mmask16 km[NV];
        __m512 vxn[NV], best[NV];
        __m512i bidx[NV];
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            km[v]   = lanes_below(n - t0 - 16 * v);
            vxn[v]  = _mm512_maskz_loadu_ps(km[v], xn + t0 + 16 * v);
            best[v] = _mm512_set1_ps(__builtin_inff());
            bidx[v] = _mm512_setzero_si512();
        }
        for (int64_t e = 0; e < emb; e++)
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++)
                _mm512_storeu_ps(pack + e * W + 16 * v,
                                 _mm512_maskz_loadu_ps(km[v], x + e * ldx + t0 + 16 * v));
        int64_t j0 = 0;
        for (; j0 + 8 <= bins; j0 += 8)
            vq_group_512(pack, kb, emb, kn, j0, vxn, best, bidx, 8);
        for (; j0 < bins; j0++)
            vq_group_512(pack, kb, emb, kn, j0, vxn, best, bidx, 1);
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_epi32(codes + t0 + 16 * v, km[v], bidx[v]);
    }
}

/* --- transpose -------------------------------------------------------------------------------- */

/* dst[c·rows + r] = src[r·cols + c] over the whole 16 x 16 blocks of the source rows [r0, r1)
 * (the caller does the rest): each block in registers (unpacks of pairs of floats, then of pairs
 * of doubles, then two rounds of 128-bit lane shuffles), read and written as 16 whole vectors. */
JB_TARGET_AVX512 void jb_cpu_transpose_avx512(const float *src,
                                              int64_t rows,
                                              int64_t cols,
                                              float *dst,
                                              int64_t r0,
                                              int64_t r1)
{
    for (int64_t r = r0; r + 16 <= r1; r += 16) {
        for (int64_t c = 0; c + 16 <= cols; c += 16) {
            __m512 a[16], t[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                a[i] = _mm512_loadu_ps(src + (r + i) * cols + c);
#pragma GCC unroll 8
            for (int i = 0; i < 16; i += 2) { /* rows i, i + 1 interleaved in each lane */
                t[i]     = _mm512_unpacklo_ps(a[i], a[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
            }
#pragma GCC unroll 4
            for (int i = 0; i < 16; i += 4) { /* u[i + j]: rows i .. i + 3 of columns j + 4q */
                __m512d p0 = _mm512_castps_pd(t[i]), p1 = _mm512_castps_pd(t[i + 1]);
                __m512d p2 = _mm512_castps_pd(t[i + 2]), p3 = _mm512_castps_pd(t[i + 3]);
                a[i]     = _mm512_castpd_ps(_mm512_unpacklo_pd(p0, p2));
                a[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(p0, p2));
                a[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(p1, p3));
                a[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(p1, p3));
            }
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) { /* lane q of a[4i + j]: column 4q + j, rows 4i .. */
                __m512 v0 = _mm512_shuffle_f32x4(a[j], a[4 + j], 0x88);
                __m512 v1 = _mm512_shuffle_f32x4(a[j], a[4 + j], 0xdd);
                __m512 w0 = _mm512_shuffle_f32x4(a[8 + j], a[12 + j], 0x88);
                __m512 w1 = _mm512_shuffle_f32x4(a[8 + j], a[12 + j], 0xdd);
                float *d  = dst + (c + j) * rows + r;
                _mm512_storeu_ps(d, _mm512_shuffle_f32x4(v0, w0, 0x88));
                _mm512_storeu_ps(d + 4 * rows, _mm512_shuffle_f32x4(v1, w1, 0x88));
                _mm512_storeu_ps(d + 8 * rows, _mm512_shuffle_f32x4(v0, w0, 0xdd));
                _mm512_storeu_ps(d + 12 * rows, _mm512_shuffle_f32x4(v1, w1, 0xdd));
            }
        }
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
static JB_ALWAYS_INLINE JB_TARGET_AVX2 __m256 ld8n_256(enum jb_dtype type,
                                                       const void *p,
                                                       int64_t i,
                                                       int64_t n)
{
    float buf[8] = { 0 };
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
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, ld8_256(JB_DTYPE_F16, src, i));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, ld8_256(JB_DTYPE_BF16, src, i));
    jb_convert_to_f32(type, (const uint16_t *)src + i, dst + i, (size_t)(n - i));
}

JB_TARGET_AVX2 void jb_cpu_to_f16_avx2(const float *src, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(
          (__m128i *)(dst + i),
          _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    jb_convert_from_f32(JB_DTYPE_F16, src + i, dst + i, (size_t)(n - i));
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_n_step_256(enum jb_dtype type,
                                                            const int KB,
                                                            int64_t k,
                                                            const float *x,
                                                            const void *w,
                                                            int64_t ldw,
                                                            int64_t n0,
                                                            int64_t nc,
                                                            float *acc)
{
    __m256 bx[8];
#pragma GCC unroll 8
    for (int kk = 0; kk < KB; kk++)
        bx[kk] = _mm256_set1_ps(x[k + kk]);
    const int64_t es = type == JB_DTYPE_F32 ? 4 : 2, pf = 64 / es; /* as gemv_n_step_512 */
    const char *wn = (const char *)w + ((k + KB) * ldw + n0) * es;
    for (int64_t j = 0; j < nc; j += 8) {
        /* the prefetches as a loop, not unrolled: the same lines, but with the unrolled burst
         * a w1920d72 token step's GEMVs ran slower (2 threads, the two alternating in one
         * process; rolled against unrolled, fp16 1.00-1.18x the speed over 19 runs, median
         * 1.06x; fp32 at ENCORE_CPU_ISA=avx2 1.10-1.15x). A stand-alone copy of this loop showed
         * the same with any compiler flags. Not a rule: gemv_rows_step_256 lost with it. */
        if (j % pf == 0)
#pragma GCC unroll 1
            for (int kk = 0; kk < KB; kk++)
                _mm_prefetch(wn + (kk * ldw + j) * es, _MM_HINT_T0);
        __m256 wv[8];
        if (j + 8 <= nc) {
#pragma GCC unroll 8
            for (int kk = 0; kk < KB; kk++)
                wv[kk] = ld8_256(type, w, (k + kk) * ldw + n0 + j);
        } else {
#pragma GCC unroll 8
            for (int kk = 0; kk < KB; kk++)
                wv[kk] = ld8n_256(type, w, (k + kk) * ldw + n0 + j, nc - j);
        }
        __m256 a = _mm256_loadu_ps(acc + j);
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; kk++)
            a = _mm256_fmadd_ps(bx[kk], wv[kk], a);
        _mm256_storeu_ps(acc + j, a);
    }
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_n_256(enum jb_dtype type,
                                                       int64_t K,
                                                       const float *x,
                                                       const void *w,
                                                       int64_t ldw,
                                                       int64_t n0,
                                                       int64_t nc,
                                                       float *acc)
{
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        gemv_n_step_256(type, 8, k, x, w, ldw, n0, nc, acc);
    for (; k < K; k++)
        gemv_n_step_256(type, 1, k, x, w, ldw, n0, nc, acc);
}

/* 2-4 rows of x: register tiles of M rows x 8 columns over 16 rows of W, as gemv_rows_512. On the
 * Zen 5 host (the AVX2 level chosen by ENCORE_CPU_ISA), against 2-4 rows of W per step with the
 * broadcasts in registers (w1920d72 token step, 2 threads, alternating in one process, 3 rounds):
 * 4 rows of fp32 x 31-37% less time, fp16 10-18%; 2 rows of fp32 3-9%, fp16 -6 to +9%. */
static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_tile_256(enum jb_dtype type,
                                                          const int M,
                                                          const int KB,
                                                          int64_t k,
                                                          const float *x,
                                                          int64_t ldx,
                                                          const void *w,
                                                          int64_t ldw,
                                                          int64_t col,
                                                          float *acc,
                                                          int64_t lda,
                                                          int64_t n)
{
    __m256 s[4];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
        s[m] = _mm256_loadu_ps(acc + m * lda);
#pragma GCC unroll 16
    for (int kk = 0; kk < KB; kk++) {
        const int64_t i = (k + kk) * ldw + col;
        __m256 wv       = n >= 8 ? ld8_256(type, w, i) : ld8n_256(type, w, i, n);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++)
            s[m] = _mm256_fmadd_ps(_mm256_set1_ps(x[m * ldx + k + kk]), wv, s[m]);
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
        _mm256_storeu_ps(acc + m * lda, s[m]);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_rows_step_256(enum jb_dtype type,
                                                               const int M,
                                                               const int KB,
                                                               int64_t k,
                                                               const float *x,
                                                               int64_t ldx,
                                                               const void *w,
                                                               int64_t ldw,
                                                               int64_t n0,
                                                               int64_t nc,
                                                               float *acc,
                                                               int64_t lda)
{
    const int64_t es = type == JB_DTYPE_F32 ? 4 : 2, pf = 64 / es;
    const char *wn = (const char *)w + ((k + KB) * ldw + n0) * es;
    int64_t j      = 0;
    for (; j + 8 <= nc; j += 8) {
        if (j % pf == 0) /* unrolled: as a loop, M = 4 ran at 0.89-1.06x the speed */
#pragma GCC unroll 16
            for (int kk = 0; kk < KB; kk++)
                _mm_prefetch(wn + (kk * ldw + j) * es, _MM_HINT_T1);
        gemv_tile_256(type, M, KB, k, x, ldx, w, ldw, n0 + j, acc + j, lda, 8);
    }
    if (j < nc) /* acc rows are padded to 16, only the weights need the bound */
        gemv_tile_256(type, M, KB, k, x, ldx, w, ldw, n0 + j, acc + j, lda, nc - j);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_rows_256(enum jb_dtype type,
                                                          const int M,
                                                          int64_t K,
                                                          const float *x,
                                                          int64_t ldx,
                                                          const void *w,
                                                          int64_t ldw,
                                                          int64_t n0,
                                                          int64_t nc,
                                                          float *acc,
                                                          int64_t lda)
{
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
        gemv_rows_step_256(type, M, 16, k, x, ldx, w, ldw, n0, nc, acc, lda);
    for (; k < K; k++)
        gemv_rows_step_256(type, M, 1, k, x, ldx, w, ldw, n0, nc, acc, lda);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 float hsum_256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s        = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s        = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_t_rows_256(enum jb_dtype type,
                                                            const int M,
                                                            const int R,
                                                            int64_t K,
                                                            const float *x,
                                                            int64_t ldx,
                                                            const void *w,
                                                            int64_t ldw,
                                                            int64_t n,
                                                            float *acc,
                                                            int64_t lda,
                                                            int64_t col)
{
    __m256 a[4][4];
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[m][r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
        __m256 wv[4], xv;
        bool full = k + 8 <= K;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = full ? ld8_256(type, w, (n + r) * ldw + k)
                         : ld8n_256(type, w, (n + r) * ldw + k, K - k);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            xv = full ? _mm256_loadu_ps(x + m * ldx + k)
                      : ld8n_256(JB_DTYPE_F32, x, m * ldx + k, K - k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[m][r] = _mm256_fmadd_ps(xv, wv[r], a[m][r]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[m * lda + col + r] = hsum_256(a[m][r]);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_t_256(enum jb_dtype type,
                                                       const int R,
                                                       int64_t M,
                                                       int64_t K,
                                                       const float *x,
                                                       int64_t ldx,
                                                       const void *w,
                                                       int64_t ldw,
                                                       int64_t n0,
                                                       int64_t n1,
                                                       float *acc,
                                                       int64_t lda)
{
    for (int64_t n = n0; n < n1; n += R) {
        bool full = n + R <= n1;
        for (int64_t m = 0; m < M; m += 2) {
            const float *xm = x + m * ldx;
            float *am       = acc + m * lda;
            if (M - m >= 2) {
                if (full)
                    gemv_t_rows_256(type, 2, R, K, xm, ldx, w, ldw, n, am, lda, n - n0);
                else
                    for (int64_t r = n; r < n1; r++)
                        gemv_t_rows_256(type, 2, 1, K, xm, ldx, w, ldw, r, am, lda, r - n0);
            } else {
                if (full)
                    gemv_t_rows_256(type, 1, R, K, xm, ldx, w, ldw, n, am, lda, n - n0);
                else
                    for (int64_t r = n; r < n1; r++)
                        gemv_t_rows_256(type, 1, 1, K, xm, ldx, w, ldw, r, am, lda, r - n0);
            }
        }
    }
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemv_256(enum jb_dtype type,
                                                     bool w_trans,
                                                     int64_t M,
                                                     int64_t K,
                                                     const float *x,
                                                     int64_t ldx,
                                                     const void *w,
                                                     int64_t ldw,
                                                     int64_t n0,
                                                     int64_t n1,
                                                     float *acc,
                                                     int64_t lda)
{
    /* 16 ymm registers: 2 x rows · 4 weight rows accumulators plus 4 weights (transposed); one
     * x row: 8 broadcasts plus 8 weights; 2-4 x rows: M accumulators, a weight, a broadcast */
    if (w_trans) {
        gemv_t_256(type, 4, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        return;
    }
    for (int64_t m = 0; m < M; m++)
        memset(acc + m * lda, 0, (size_t)lda * sizeof(float));
    int64_t nc = n1 - n0;
    switch (M) {
    case 1:
        gemv_n_256(type, K, x, w, ldw, n0, nc, acc);
        break;
    case 2:
        gemv_rows_256(type, 2, K, x, ldx, w, ldw, n0, nc, acc, lda);
        break;
    case 3:
        gemv_rows_256(type, 3, K, x, ldx, w, ldw, n0, nc, acc, lda);
        break;
    default:
        gemv_rows_256(type, 4, K, x, ldx, w, ldw, n0, nc, acc, lda);
        break;
    }
}

JB_TARGET_AVX2 void jb_cpu_gemv_avx2(enum jb_dtype type,
                                     bool w_trans,
                                     int64_t M,
                                     int64_t K,
                                     const float *x,
                                     int64_t ldx,
                                     const void *w,
                                     int64_t ldw,
                                     int64_t n0,
                                     int64_t n1,
                                     float *acc,
                                     int64_t lda)
{
    JB_ASSERT(M >= 1 && (w_trans || M <= JB_CPU_GEMV_MAX_M));
    switch (type) {
    case JB_DTYPE_F16:
        gemv_256(JB_DTYPE_F16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        break;
    case JB_DTYPE_BF16:
        gemv_256(JB_DTYPE_BF16, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        break;
    default:
        gemv_256(JB_DTYPE_F32, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
        break;
    }
}

/* --- direct convolution (AVX2) ---------------------------------------------------------------- */

static JB_ALWAYS_INLINE JB_TARGET_AVX2 __m256i lanes8_in(int64_t lo, int64_t hi)
{
    /* lanes l with lo <= l < hi, as a maskload/maskstore mask */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int32_t l         = (int32_t)(lo < -1 ? -1 : lo > 8 ? 8 : lo);
    int32_t h         = (int32_t)(hi < 0 ? 0 : hi > 8 ? 8 : hi);
    return _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(l - 1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(h), idx));
}

static JB_TARGET_AVX2 void conv_pack_256(const struct jb_conv_job *jb, int64_t m0, float *pack)
{
    int64_t dist = jb->n_oblk >= 8 ? 1 : 8 / jb->n_oblk;
    for (int s = 0; s < jb->n_seg; s++) {
        const struct jb_conv_seg *sg = &jb->seg[s];
        int64_t a                    = m0 + sg->q0;
        for (int64_t c = 0; c < jb->cin; c++) {
            const float *src = addr_at(sg->x, c * jb->ldx + a);
            float *dst       = pack + c * jb->ld_pack + sg->off;
            for (int64_t v = 0; v < sg->width; v += 8) {
                __m256i k  = lanes8_in(-a - v, sg->len - a - v);
                __m256 val = _mm256_maskload_ps(addr_at(src, v), k);
                if (jb->relu_in) val = _mm256_max_ps(_mm256_setzero_ps(), val); /* as 512 */
                _mm256_storeu_ps(dst + v, val);
            }
            for (int64_t v = 0; v < JB_CONV_TILE; v += 16)
                _mm_prefetch((const char *)addr_at(src, sg->width + (dist - 1) * JB_CONV_TILE + v),
                             _MM_HINT_T0);
        }
    }
    int64_t t1 = jb->n_phase * (m0 + JB_CONV_TILE);
    for (int64_t o = 0; o < jb->cout; o++)
        for (int64_t v = 0; v < jb->n_phase * JB_CONV_TILE; v += 16)
            _mm_prefetch((const char *)addr_at(jb->y, o * jb->ldy + t1 + v), _MM_HINT_T0);
}

/* conv_epilogue_512 with AVX2, for a tile of nr rows x 24 columns from column t0. */
static JB_TARGET_AVX2 __attribute__((noinline)) void conv_epilogue_256(const struct jb_conv_job *jb,
                                                                       const float *ep,
                                                                       int64_t o0,
                                                                       int nr,
                                                                       int64_t t0)
{
    for (int r = 0; r < nr; r++) {
        float *yr       = jb->y + (o0 + r) * jb->ldy;
        const float *xr = jb->res ? jb->res + (o0 + r) * jb->ldy : NULL;
        for (int v = 0; v < 24; v += 8) {
            const int64_t t = t0 + v;
            const __m256i k = lanes8_in(0, jb->tout - t);
            __m256 val      = _mm256_load_ps(ep + r * 24 + v);
            if (jb->relu_out) val = _mm256_max_ps(_mm256_setzero_ps(), val);
            if (xr) {
                __m256 xv = _mm256_maskload_ps(addr_at(xr, t), k);
                val       = jb->rho == 1.0f
                              ? _mm256_add_ps(xv, val)
                              : _mm256_add_ps(xv, _mm256_mul_ps(_mm256_set1_ps(jb->rho), val));
            }
            _mm256_maskstore_ps((float *)addr_at(yr, t), k, val);
        }
    }
}

/* fma_rows_512 with AVX2: acc[r][·] += w[r·ws] · x[0 .. 24) for r < NR (up to 4 rows) */
static JB_ALWAYS_INLINE JB_TARGET_AVX2 void fma_rows_256(__m256 acc[4][3],
                                                         const float *x,
                                                         const float *w,
                                                         int64_t ws,
                                                         const int NR)
{
    __m256 xv[3];
#pragma GCC unroll 3
    for (int v = 0; v < 3; v++)
        xv[v] = _mm256_loadu_ps(x + 8 * v);
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        __m256 wb = _mm256_broadcast_ss(w + r * ws);
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            acc[r][v] = _mm256_fmadd_ps(wb, xv[v], acc[r][v]);
    }
}

/* conv_one_tap_512 with AVX2 (a register tile of 4 rows x 24 columns) */
static JB_ALWAYS_INLINE JB_TARGET_AVX2 void conv_one_tap_256(const struct jb_conv_job *jb,
                                                             const struct conv_live *lv,
                                                             const float *pack,
                                                             const float *wo,
                                                             __m256 acc[4][3],
                                                             const int NR)
{
    const int64_t ldp = jb->ld_pack, wcs = jb->w_cs, wos = jb->w_os;
    const bool pf_w = prefetch_weights(jb);
    const float *xr = pack + lv->off[0][0];
    const float *wt = wo + lv->widx[0][0];
    for (int64_t c = 0; c < jb->cin; c++, xr += ldp, wt += wcs) {
        if (pf_w) _mm_prefetch((const char *)addr_at(wt, W_PF_DIST * wcs), _MM_HINT_T0);
        fma_rows_256(acc, xr, wt, wos, NR);
    }
}

/* conv_one_tap_256 for a full tile of 4 rows, out of line, as conv_one_tap8_512: inlined, the loop
 * reloaded four to five of its offsets from the stack per channel, next to 12 FMAs. On the Intel
 * host's AVX2 level (one thread, three runs alternating): a Winograd product 90-98 GFLOP/s
 * against 83-90, the 1x1 conv 83-86 against 78-83; a conditioner window 0.98-0.99x the time on one
 * and two threads (two rounds). */
static JB_TARGET_AVX2 __attribute__((noinline)) void conv_one_tap4_256(const struct jb_conv_job *jb,
                                                                       const struct conv_live *lv,
                                                                       const float *pack,
                                                                       const float *wo,
                                                                       __m256 acc[4][3])
{
    __m256 a[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            a[r][v] = acc[r][v];
    conv_one_tap_256(jb, lv, pack, wo, a, 4);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 3
        for (int v = 0; v < 3; v++)
            acc[r][v] = a[r][v];
}

/* NR rows x 24 columns (per phase) at packed column h of the tile at m0. */
static JB_ALWAYS_INLINE JB_TARGET_AVX2 void conv_tile_256(const struct jb_conv_job *jb,
                                                          const struct conv_live *lv,
                                                          const float *pack,
                                                          int64_t o0,
                                                          int64_t m0,
                                                          int64_t h,
                                                          const int P,
                                                          const int NR,
                                                          const bool TAIL)
{
    enum { NV = 3 };
    __m256 acc[2][4][NV];
    float ep[4 * 24] __attribute__((aligned(32))); /* sums for conv_epilogue_256 */
    const bool epilogue = P == 1 && (jb->relu_out || jb->res);
#pragma GCC unroll 2
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++)
                acc[p][r][v] = _mm256_setzero_ps();

    const float *wo = jb->w + o0 * jb->w_os;
    const bool pf_w = prefetch_weights(jb);
    if (P == 1 && NR == 4 && lv->n[0] == 1)
        conv_one_tap4_256(jb, lv, pack + h, wo, acc[0]);
    else if (P == 1 && lv->n[0] == 1)
        conv_one_tap_256(jb, lv, pack + h, wo, acc[0], NR);
    else
        for (int64_t c = 0; c < jb->cin; c++) {
            const float *wc = wo + c * jb->w_cs;
            const float *pc = pack + c * jb->ld_pack + h;
            if (pf_w) _mm_prefetch((const char *)addr_at(wc, W_PF_DIST * jb->w_cs), _MM_HINT_T0);
#pragma GCC unroll 2
            for (int p = 0; p < P; p++)
                for (int i = 0; i < lv->n[p]; i++)
                    fma_rows_256(acc[p], pc + lv->off[p][i], wc + lv->widx[p][i], jb->w_os, NR);
        }

#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        float *yr = jb->y + (o0 + r) * jb->ldy;
        __m256 b  = jb->bias ? _mm256_set1_ps(jb->bias[o0 + r]) : _mm256_setzero_ps();
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            if (P == 1) {
                int64_t t  = m0 + h + 8 * v;
                __m256 val = _mm256_add_ps(acc[0][r][v], b);
                if (epilogue)
                    _mm256_store_ps(ep + r * 24 + 8 * v, val);
                else if (TAIL)
                    _mm256_maskstore_ps((float *)addr_at(yr, t), lanes8_in(0, jb->tout - t), val);
                else
                    _mm256_storeu_ps(yr + t, val);
            } else {
                int64_t t = 2 * (m0 + h + 8 * v);
                __m256 a0 = _mm256_add_ps(acc[0][r][v], b);
                __m256 a1 = _mm256_add_ps(acc[1][r][v], b);
                __m256 lo = _mm256_unpacklo_ps(a0, a1); /* a0 b0 a1 b1 | a4 b4 a5 b5 */
                __m256 hi = _mm256_unpackhi_ps(a0, a1); /* a2 b2 a3 b3 | a6 b6 a7 b7 */
                __m256 o1 = _mm256_permute2f128_ps(lo, hi, 0x20);
                __m256 o2 = _mm256_permute2f128_ps(lo, hi, 0x31);
                if (TAIL) {
                    _mm256_maskstore_ps((float *)addr_at(yr, t), lanes8_in(0, jb->tout - t), o1);
                    _mm256_maskstore_ps(
                      (float *)addr_at(yr, t + 8), lanes8_in(0, jb->tout - t - 8), o2);
                } else {
                    _mm256_storeu_ps(yr + t, o1);
                    _mm256_storeu_ps(yr + t + 8, o2);
                }
            }
        }
    }
    if (epilogue) conv_epilogue_256(jb, ep, o0, NR, m0 + h);
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void conv_rows_256(const struct jb_conv_job *jb,
                                                          const struct conv_live *lv,
                                                          const float *pack,
                                                          int64_t o0,
                                                          int64_t m0,
                                                          const int P,
                                                          const int NR,
                                                          bool tail)
{
    for (int64_t h = 0; h < JB_CONV_TILE; h += 24) {
        if (tail)
            conv_tile_256(jb, lv, pack, o0, m0, h, P, NR, true);
        else
            conv_tile_256(jb, lv, pack, o0, m0, h, P, NR, false);
    }
}

JB_TARGET_AVX2 void jb_cpu_conv_items_avx2(const struct jb_conv_job *jb,
                                           int64_t item0,
                                           int64_t item1,
                                           float *pack)
{
    JB_ASSERT(jb->nr == (jb->n_phase == 1 ? 8 : 4));
    const int64_t rg = jb->n_phase == 1 ? 4 : 2; /* rows per register tile */
    int64_t packed   = -1;
    struct conv_live lv;
    for (int64_t item = item0; item < item1; item++) {
        int64_t tile = item / jb->n_oblk, ob = item % jb->n_oblk;
        int64_t m0 = tile * JB_CONV_TILE, o1 = ob * jb->nr + jb->nr;
        if (tile != packed) {
            conv_pack_256(jb, m0, pack);
            conv_live_taps(jb, m0, &lv);
            packed = tile;
        }
        if (o1 > jb->cout) o1 = jb->cout;
        bool tail = jb->n_phase * (m0 + JB_CONV_TILE) > jb->tout;
        for (int64_t o0 = ob * jb->nr; o0 < o1; o0 += rg) {
            int64_t rows = o1 - o0 < rg ? o1 - o0 : rg;
            if (jb->n_phase == 1) {
                switch (rows) {
                case 1:
                    conv_rows_256(jb, &lv, pack, o0, m0, 1, 1, tail);
                    break;
                case 2:
                    conv_rows_256(jb, &lv, pack, o0, m0, 1, 2, tail);
                    break;
                case 3:
                    conv_rows_256(jb, &lv, pack, o0, m0, 1, 3, tail);
                    break;
                default:
                    conv_rows_256(jb, &lv, pack, o0, m0, 1, 4, tail);
                    break;
                }
            } else {
                if (rows == 1)
                    conv_rows_256(jb, &lv, pack, o0, m0, 2, 1, tail);
                else
                    conv_rows_256(jb, &lv, pack, o0, m0, 2, 2, tail);
            }
        }
    }
}

JB_TARGET_AVX2 void jb_cpu_vq_block_avx2(const float *xn,
                                         const float *dot,
                                         int64_t ldd,
                                         const float *kn,
                                         int64_t bins,
                                         int64_t n,
                                         int32_t *codes)
{
    enum { NV = 4 };
    const __m256 two = _mm256_set1_ps(2.0f);
    for (int64_t t = 0; t < n; t += 8 * NV) {
        __m256i km[NV], bidx[NV];
        __m256 vxn[NV], best[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            km[v]   = lanes8_in(0, n - t - 8 * v);
            vxn[v]  = _mm256_maskload_ps(xn + t + 8 * v, km[v]);
            best[v] = _mm256_set1_ps(__builtin_inff());
            bidx[v] = _mm256_setzero_si256();
        }
        for (int64_t j = 0; j < bins; j++) {
            const float *dr  = dot + j * ldd + t;
            const __m256 kj  = _mm256_set1_ps(kn[j]);
            const __m256i jj = _mm256_set1_epi32((int32_t)j);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                __m256 dv = _mm256_maskload_ps(dr + 8 * v, km[v]);
                __m256 d  = _mm256_add_ps(_mm256_sub_ps(vxn[v], _mm256_mul_ps(two, dv)), kj);
                __m256 lt = _mm256_cmp_ps(d, best[v], _CMP_LT_OQ);
                best[v]   = _mm256_blendv_ps(best[v], d, lt);
                bidx[v]   = _mm256_castps_si256(
                  _mm256_blendv_ps(_mm256_castsi256_ps(bidx[v]), _mm256_castsi256_ps(jj), lt));
            }
        }
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm256_maskstore_epi32(codes + t + 8 * v, km[v], bidx[v]);
    }
}

static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemm_ukr_256(const int MR,
                                                         const int NV,
                                                         int64_t kb,
                                                         const float *x,
                                                         int64_t ldx,
                                                         const float *b,
                                                         int64_t ldb,
                                                         float *acc,
                                                         int64_t lda,
                                                         bool first,
                                                         struct jb_cpu_prefetch *pf)
{
    __m256 c[4][3];
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            c[m][v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + m * lda + 8 * v);
    struct jb_cpu_prefetch p = *pf; /* in registers through the loop */
    for (int64_t k = 0; k < kb; k++) {
        prefetch_step(&p);
        __m256 bv[3];
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            bv[v] = _mm256_loadu_ps(b + k * ldb + 8 * v);
#pragma GCC unroll 4
        for (int m = 0; m < MR; m++) {
            __m256 a = _mm256_set1_ps(x[m * ldx + k]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++)
                c[m][v] = _mm256_fmadd_ps(a, bv[v], c[m][v]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            _mm256_storeu_ps(acc + m * lda + 8 * v, c[m][v]);
    *pf = p;
}

/* Chunks of 24 columns, then up to 3 vectors of 8: j + 24 never passes the next multiple of 16
 * above nc (j is a multiple of 24), so the padded tile and acc rows hold them. */
static JB_ALWAYS_INLINE JB_TARGET_AVX2 void gemm_rows_256(const int MR,
                                                          int64_t kb,
                                                          const float *x,
                                                          int64_t ldx,
                                                          const float *b,
                                                          int64_t ldb,
                                                          int64_t nc,
                                                          float *acc,
                                                          int64_t lda,
                                                          bool first,
                                                          struct jb_cpu_prefetch *pf)
{
    int64_t j = 0;
    for (; j + 24 <= nc; j += 24)
        gemm_ukr_256(MR, 3, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
    switch ((nc - j + 7) / 8) {
    case 1:
        gemm_ukr_256(MR, 1, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    case 2:
        gemm_ukr_256(MR, 2, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    case 3:
        gemm_ukr_256(MR, 3, kb, x, ldx, b + j, ldb, acc + j, lda, first, pf);
        break;
    default:
        break; /* 0: no tail */
    }
}

JB_TARGET_AVX2 void jb_cpu_gemm_tile_avx2(int64_t M,
                                          int64_t kb,
                                          const float *x,
                                          int64_t ldx,
                                          const float *b,
                                          int64_t ldb,
                                          int64_t nc,
                                          float *acc,
                                          int64_t lda,
                                          bool first,
                                          struct jb_cpu_prefetch *pf)
{
    GEMM_TILE_PANELS(gemm_rows_256); /* GEMM_PANEL is a multiple of 24: see gemm_rows_256 */
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
void jb_cpu_to_f16_avx2(const float *src, uint16_t *dst, int64_t n)
{
    jb_convert_from_f32(JB_DTYPE_F16, src, dst, (size_t)n);
}
void jb_cpu_gemv_avx512(enum jb_dtype type,
                        bool w_trans,
                        int64_t M,
                        int64_t K,
                        const float *x,
                        int64_t ldx,
                        const void *w,
                        int64_t ldw,
                        int64_t n0,
                        int64_t n1,
                        float *acc,
                        int64_t lda)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_gemv_avx2(enum jb_dtype type,
                      bool w_trans,
                      int64_t M,
                      int64_t K,
                      const float *x,
                      int64_t ldx,
                      const void *w,
                      int64_t ldw,
                      int64_t n0,
                      int64_t n1,
                      float *acc,
                      int64_t lda)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_gemm_tile_avx512(int64_t M,
                             int64_t kb,
                             const float *x,
                             int64_t ldx,
                             const float *b,
                             int64_t ldb,
                             int64_t nc,
                             float *acc,
                             int64_t lda,
                             bool first,
                             struct jb_cpu_prefetch *pf)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_gemm_tile_avx2(int64_t M,
                           int64_t kb,
                           const float *x,
                           int64_t ldx,
                           const float *b,
                           int64_t ldb,
                           int64_t nc,
                           float *acc,
                           int64_t lda,
                           bool first,
                           struct jb_cpu_prefetch *pf)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_conv_items_avx512(const struct jb_conv_job *job,
                              int64_t item0,
                              int64_t item1,
                              float *pack)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_resblock_tiles_avx512(const struct jb_resblock_job *job,
                                  int64_t tile0,
                                  int64_t tile1,
                                  float *mem)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_resblock_wino_avx512(const struct jb_resblock_job *job,
                                 const float *u,
                                 int64_t tile0,
                                 int64_t tile1,
                                 float *mem)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_vq_fused_avx512(const float *x,
                            int64_t ldx,
                            int64_t n,
                            const float *kb,
                            int64_t bins,
                            int64_t emb,
                            const float *kn,
                            const float *xn,
                            int32_t *codes,
                            float *pack)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_vq_block_avx2(const float *xn,
                          const float *dot,
                          int64_t ldd,
                          const float *kn,
                          int64_t bins,
                          int64_t n,
                          int32_t *codes)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_conv_items_avx2(const struct jb_conv_job *job,
                            int64_t item0,
                            int64_t item1,
                            float *pack)
{
    JB_ASSERT(!"unreachable");
}
void jb_cpu_transpose_avx512(const float *src,
                             int64_t rows,
                             int64_t cols,
                             float *dst,
                             int64_t r0,
                             int64_t r1)
{
    JB_ASSERT(!"unreachable");
}

#endif
