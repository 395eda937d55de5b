/*
 * backend/cpu/cpu_matmul.c - y[M, N] (+)= x[M, K] · W (+ bias) with F32, F16 or BF16 weights.
 *
 * The pool's threads split N into slices starting at multiples of 16 columns (and M too when N is
 * narrow), one slice per thread. A large product of few rows (a token step's GEMV) is also cut in
 * two over K (k_split): each thread then streams a contiguous half of W, whole rows, instead of a
 * column slice of every row, and the two halves' partial sums are added at the end.
 * Within a slice, with AVX2 or AVX-512 (cpu_x86.c):
 *   - W [K, N], M <= 4 (token by token): a GEMV that streams whole rows of W once, in the stored
 *     dtype, into fp32 partial sums in the arena;
 *   - W [K, N], M > 4: W converted to packed fp32 tiles of 128 rows in the arena, then a
 *     register-blocked kernel (4 rows x 96 columns) over all rows of x;
 *   - W [N, K], any M: dot products against groups of 4 rows of W kept in L1.
 * All compute acc = x·W from zero with each output's sum in a fixed order (sequential over k for
 * W [K, N], the same in the GEMV and the tiled kernel; with a K split, the two halves' sums
 * sequential each, then added, in both), then y = acc + init with
 * init = (accumulate ? y : 0) + bias: results do not depend on the thread count, nor on M. The K
 * split depends only on the shape and dtype of W.
 * Without SIMD: OpenBLAS (sgemv / sgemm on the slice, F16/BF16 through converted tiles, beta = 1
 * on a pre-filled y).
 */
#include "backend/cpu/blas.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/pool.h"

#include "core/fp16.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define TILE_K 256 /* rows of a converted weight tile (OpenBLAS path) */
#define PACK_K                                                                                     \
    128 /* rows of a packed weight tile (SIMD path): 128 x 1024 fp32 = 512 KiB, in L2              \
         */
#define PACK_N 1024
/* W of at least this many bytes is taken to stream from memory; smaller W stays in cache */
#define STREAMED_W_BYTES 1048576.0

/* [a, b) = part i of parts over [0, n), boundaries rounded down to multiples of align. */
static void split_range(int64_t n, int parts, int i, int64_t align, int64_t *a, int64_t *b)
{
    int64_t lo = n * i / parts, hi = n * (i + 1) / parts;
    *a = i == 0 ? 0 : lo / align * align;
    *b = i == parts - 1 ? n : hi / align * align;
}

/* Where a product over W [K, N] is cut in two over K: row kmid, or 0 for no cut. Only large W
 * streamed from memory are cut (>= 1 MiB, K >= 512), and only where both halves' partial sums of
 * every column slice fit one arena (for 4 rows and up to MAX_PN slices). With the column split
 * alone, each of 2 threads read half of every row: short runs of 1-4 KB that the prefetchers
 * start anew each time. Cut over K, each reads a contiguous half of W: the GEMVs of a w1920d72
 * token step in sequence (bench_ops' "token step" rows; 2 threads, M = 1) went from 55 to
 * 68-71 GB/s in fp32 and from 45 to 52 GB/s in fp16. Depends on W alone, so that results do not
 * depend on the thread count nor on M; kmid is a multiple of 16. */
#define MAX_PN 32
static int64_t k_split(int64_t K, int64_t N, enum jb_dtype type)
{
    double bytes = (double)K * (double)N * (double)jb_dtype_size(type);
    if (K < 512 || bytes < STREAMED_W_BYTES) return 0;
    if ((size_t)2 * JB_CPU_GEMV_MAX_M * (size_t)(N + 32 * MAX_PN) > JB_CPU_ARENA_FLOATS) return 0;
    return K / 2 / 16 * 16;
}

/* acc0[m, :nc] += acc1[m, :nc]: the two halves of a K split */
static void add_halves(int64_t M, float *acc0, const float *acc1, int64_t lda, int64_t nc)
{
    for (int64_t m = 0; m < M; m++) {
        float *restrict a       = acc0 + m * lda;
        const float *restrict b = acc1 + m * lda;
#pragma omp simd
        for (int64_t n = 0; n < nc; n++)
            a[n] = a[n] + b[n];
    }
}

/* y[:, n0:n1] = init (accumulate ? y : 0) + bias; returns false when init is all zero and y was
 * not written (sgemm can then use beta = 0). */
static bool fill_init(int64_t M,
                      int64_t n0,
                      int64_t n1,
                      const float *bias,
                      float *y,
                      int64_t ldy,
                      bool accumulate)
{
    if (!accumulate && !bias) return false;
    for (int64_t m = 0; m < M; m++) {
        float *yr = y + m * ldy;
        if (!accumulate)
            memcpy(yr + n0, bias + n0, (size_t)(n1 - n0) * sizeof(float));
        else if (bias)
            for (int64_t n = n0; n < n1; n++)
                yr[n] += bias[n];
    }
    return true;
}

/* fp16 -> fp32 by table for the portable path (jb_f16_to_f32 per element is ~10x slower). */
static float g_f16_table[65536];
static pthread_once_t g_f16_once = PTHREAD_ONCE_INIT;

static void build_f16_table(void)
{
    for (uint32_t h = 0; h < 65536; h++)
        g_f16_table[h] = jb_f16_to_f32((uint16_t)h);
}

void jb_cpu_tables_init(void)
{
    pthread_once(&g_f16_once, build_f16_table);
}

void jb_cpu_to_f32(const struct jb_cpu *cpu,
                   enum jb_dtype type,
                   const void *src,
                   float *dst,
                   int64_t n)
{
#if JB_CPU_X86
    if (cpu->isa >= JB_CPU_ISA_AVX512) {
        jb_cpu_convert_avx512(type, src, dst, n);
        return;
    }
    if (cpu->isa >= JB_CPU_ISA_AVX2) {
        jb_cpu_convert_avx2(type, src, dst, n);
        return;
    }
#endif
    const uint16_t *h = src;
    if (type == JB_DTYPE_F16)
        for (int64_t i = 0; i < n; i++)
            dst[i] = g_f16_table[h[i]];
    else if (type == JB_DTYPE_BF16)
        for (int64_t i = 0; i < n; i++)
            dst[i] = jb_bf16_to_f32(h[i]);
    else
        memcpy(dst, src, (size_t)n * sizeof(float));
}

/* y[m, c0:c1] = acc + init. One branch-free loop per case, so that each vectorises: with the
 * conditional loads inside one loop GCC kept it scalar, 12.7 µs for 4 x 5760 outputs against
 * 1.9-2.6 µs now, ~2 ms of CPU time per 4-candidate w1920d72 step. Every case computes
 * acc + (init_y + init_b) as the one loop did, zeros included, so results keep their bits. */
static void store_acc(int64_t M,
                      const float *acc,
                      int64_t lda,
                      const float *bias,
                      float *y,
                      int64_t ldy,
                      bool accumulate,
                      int64_t c0,
                      int64_t c1)
{
    for (int64_t m = 0; m < M; m++) {
        float *restrict yr       = y + m * ldy;
        const float *restrict ar = acc + m * lda - c0;
        if (accumulate && bias) {
#pragma omp simd
            for (int64_t n = c0; n < c1; n++)
                yr[n] = ar[n] + (yr[n] + bias[n]);
        } else if (accumulate) {
#pragma omp simd
            for (int64_t n = c0; n < c1; n++)
                yr[n] = ar[n] + (yr[n] + 0.0f);
        } else if (bias) {
#pragma omp simd
            for (int64_t n = c0; n < c1; n++)
                yr[n] = ar[n] + (0.0f + bias[n]);
        } else {
#pragma omp simd
            for (int64_t n = c0; n < c1; n++)
                yr[n] = ar[n] + 0.0f;
        }
    }
}

/* The SIMD GEMV / dot-product kernel of the CPU's level (cpu_x86.c) */
static void gemv_kernel(const struct jb_cpu *cpu,
                        enum jb_dtype type,
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
    if (cpu->isa >= JB_CPU_ISA_AVX512) /* cpu_x86.c has stubs where there is no x86 */
        jb_cpu_gemv_avx512(type, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
    else
        jb_cpu_gemv_avx2(type, w_trans, M, K, x, ldx, w, ldw, n0, n1, acc, lda);
}

/* GEMV (W [K, N], M <= 4) or dot products (W [N, K]) over the slice [n0, n1), in column chunks
 * whose M rows of partial sums fit the arena. */
static void gemv_slice(const struct jb_cpu *cpu,
                       int slot,
                       int64_t M,
                       int64_t K,
                       const float *x,
                       int64_t ldx,
                       const struct jb_tensor *w,
                       bool w_trans,
                       int64_t ldw,
                       const float *bias,
                       float *y,
                       int64_t ldy,
                       bool accumulate,
                       int64_t n0,
                       int64_t n1)
{
    float *acc    = jb_cpu_arena(cpu, slot);
    int64_t mb    = M < 256 ? M : 256; /* rows of x per pass (W [N, K] only) */
    int64_t chunk = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)mb) / 16 * 16;
    for (int64_t m0 = 0; m0 < M; m0 += mb) {
        int64_t mm = M - m0 < mb ? M - m0 : mb;
        for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
            int64_t c1  = c0 + chunk < n1 ? c0 + chunk : n1;
            int64_t lda = (c1 - c0 + 15) / 16 * 16;
            gemv_kernel(
              cpu, w->type, w_trans, mm, K, x + m0 * ldx, ldx, w->data, ldw, c0, c1, acc, lda);
            store_acc(mm, acc, lda, bias, y + m0 * ldy, ldy, accumulate, c0, c1);
        }
    }
}

/* fp32 weights whose tile needs no zero padding are read in place (rows ldw apart) rather than
 * packed: the hardware prefetchers stream them during the FMAs, where packing read them in a burst
 * that overlapped nothing. Timed on a w1920d72 prefill chunk (M = 32, 72 layers), alternating:
 * 15% less time on one thread, more with the panel order of jb_cpu_gemm_tile_*; a software
 * prefetch of the rows was slower than none here. */
static bool tile_in_place(enum jb_dtype type, int64_t cc)
{
    return type == JB_DTYPE_F32 && cc % 16 == 0;
}

/* The weights of the tile after the one at rows [.., k1), columns [c0, c0 + cc): rows
 * [k1, k1 + PACK_K) of the same columns, or at the end of K the first rows of the next column
 * block below n1; nothing when that tile is read in place. Packing (converting) a tile reads its
 * rows in one burst, with nothing to overlap it; prefetched into L2 while the tile before is
 * computed, they arrive during its FMAs (fp16 prefill chunk as above: 17-30% less time on two
 * threads, 10-24% on one). */
static struct jb_cpu_prefetch next_tile(const struct jb_tensor *w,
                                        int64_t ldw,
                                        int64_t K,
                                        int64_t k1,
                                        int64_t c0,
                                        int64_t cc,
                                        int64_t n1)
{
    struct jb_cpu_prefetch pf = { 0 };
    if (k1 >= K) { /* the next column block, from its first row */
        c0 += PACK_N;
        if (c0 >= n1) return pf;
        cc = n1 - c0 < PACK_N ? n1 - c0 : PACK_N;
        k1 = 0;
    }
    if (tile_in_place(w->type, cc)) return pf;
    const int64_t k2 = k1 + PACK_K < K ? k1 + PACK_K : K;
    const size_t es  = jb_dtype_size(w->type);
    uintptr_t first  = (uintptr_t)w->data + ((size_t)k1 * (size_t)ldw + (size_t)c0) * es;
    uintptr_t start = first & ~(uintptr_t)63, end = first + (size_t)cc * es;
    pf.row   = start;
    pf.ld    = ldw * (int64_t)es;
    pf.lines = (int64_t)((end - start + 63) / 64);
    pf.end   = start + (uintptr_t)(k2 - k1) * (uintptr_t)pf.ld;
    return pf;
}

/* W [K, N], M > 4: fp32 tiles of PACK_K x (up to) PACK_N, packed or read in place (above), each
 * used by all rows of x. */
static void packed_slice(const struct jb_cpu *cpu,
                         int slot,
                         int64_t M,
                         int64_t K,
                         const float *x,
                         int64_t ldx,
                         const struct jb_tensor *w,
                         int64_t ldw,
                         const float *bias,
                         float *y,
                         int64_t ldy,
                         bool accumulate,
                         int64_t n0,
                         int64_t n1)
{
    float *tile        = jb_cpu_arena(cpu, slot);
    const uint8_t *wb  = w->data;
    size_t es          = jb_dtype_size(w->type);
    const int64_t kmid = k_split(K, ldw, w->type);
    for (int64_t c0 = n0; c0 < n1; c0 += PACK_N) {
        int64_t cc  = n1 - c0 < PACK_N ? n1 - c0 : PACK_N;
        int64_t ldc = (cc + 15) / 16 * 16;
        /* packed rows an odd number of cache lines apart: 1024 columns, 4 KiB apart, all fall in
         * the same L1 sets, and a 96-column panel of them did not stay there (fp16 prefill chunk:
         * 4% less time on 2 threads, ~10% on one) */
        int64_t ldt         = (ldc / 16) % 2 == 0 ? ldc + 16 : ldc;
        const bool in_place = tile_in_place(w->type, cc);
        float *acc          = tile + PACK_K * ldt;
        int64_t mb = (int64_t)((JB_CPU_ARENA_FLOATS - (size_t)(PACK_K * ldt)) / (size_t)ldc);
        if (kmid) mb /= 2; /* and as many for the first half's sums */
        float *acc0 = acc + mb * ldc;
        for (int64_t m0 = 0; m0 < M; m0 += mb) {
            int64_t mm = M - m0 < mb ? M - m0 : mb;
            for (int64_t k0 = 0; k0 < K; k0 += PACK_K) {
                int64_t kb = K - k0 < PACK_K ? K - k0 : PACK_K;
                if (kmid && k0 < kmid && k0 + kb > kmid) kb = kmid - k0; /* a tile ends there */
                if (kmid && k0 == kmid) /* the second half starts from zero */
                    for (int64_t m = 0; m < mm; m++)
                        memcpy(acc0 + m * ldc, acc + m * ldc, (size_t)cc * sizeof(float));
                for (int64_t k = 0; k < kb && !in_place; k++) {
                    float *row = tile + k * ldt;
                    jb_cpu_to_f32(cpu,
                                  w->type,
                                  wb + ((size_t)(k0 + k) * (size_t)ldw + (size_t)c0) * es,
                                  row,
                                  cc);
                    for (int64_t j = cc; j < ldc; j++)
                        row[j] = 0.0f;
                }
                const bool first  = k0 == 0 || k0 == kmid; /* each half sums from zero */
                const float *b    = in_place ? (const float *)w->data + k0 * ldw + c0 : tile;
                const int64_t ldb = in_place ? ldw : ldt;
                const float *xk   = x + m0 * ldx + k0;
                struct jb_cpu_prefetch pf = next_tile(w, ldw, K, k0 + kb, c0, cc, n1);
#if JB_CPU_X86
                if (cpu->isa >= JB_CPU_ISA_AVX512)
                    jb_cpu_gemm_tile_avx512(mm, kb, xk, ldx, b, ldb, cc, acc, ldc, first, &pf);
                else
                    jb_cpu_gemm_tile_avx2(mm, kb, xk, ldx, b, ldb, cc, acc, ldc, first, &pf);
#endif
                k0 += kb - PACK_K; /* a tile cut at kmid: the next starts there */
            }
            if (kmid) add_halves(mm, acc0, acc, ldc, cc); /* first half + second, as the GEMV */
            store_acc(mm, kmid ? acc0 : acc, ldc, bias, y + m0 * ldy, ldy, accumulate, c0, c0 + cc);
        }
    }
}

/* y[M, nn] = x[M, kk] · B + beta · y through OpenBLAS, B [kk, nn] (or [nn, kk] when b_trans)
 * with rows ldb apart; sgemv for M = 1 (OpenBLAS 0.3.21's sgemm does not forward to it). */
static void blas_f32(int64_t M,
                     int64_t nn,
                     int64_t kk,
                     const float *x,
                     int64_t ldx,
                     const float *b,
                     int64_t ldb,
                     bool b_trans,
                     float beta,
                     float *y,
                     int64_t ldy)
{
    if (M == 1)
        jb_blas()->sgemv(CblasRowMajor,
                         b_trans ? CblasNoTrans : CblasTrans,
                         (int)(b_trans ? nn : kk),
                         (int)(b_trans ? kk : nn),
                         1.0f,
                         b,
                         (int)ldb,
                         x,
                         1,
                         beta,
                         y,
                         1);
    else
        jb_blas()->sgemm(CblasRowMajor,
                         CblasNoTrans,
                         b_trans ? CblasTrans : CblasNoTrans,
                         (int)M,
                         (int)nn,
                         (int)kk,
                         1.0f,
                         x,
                         (int)ldx,
                         b,
                         (int)ldb,
                         beta,
                         y,
                         (int)ldy);
}

/* F32 weights through OpenBLAS on the slice [n0, n1). */
static void sgemm_slice(int64_t M,
                        int64_t K,
                        const float *x,
                        int64_t ldx,
                        const float *w,
                        bool w_trans,
                        int64_t ldw,
                        const float *bias,
                        float *y,
                        int64_t ldy,
                        bool accumulate,
                        int64_t n0,
                        int64_t n1)
{
    float beta = fill_init(M, n0, n1, bias, y, ldy, accumulate) ? 1.0f : 0.0f;
    blas_f32(
      M, n1 - n0, K, x, ldx, w_trans ? w + n0 * ldw : w + n0, ldw, w_trans, beta, y + n0, ldy);
}

/* F16/BF16 weights: fp32 tiles of TILE_K x nb (transposed layout: nb x TILE_K) in the arena. */
static void tiled_slice(const struct jb_cpu *cpu,
                        int slot,
                        int64_t M,
                        int64_t K,
                        const float *x,
                        int64_t ldx,
                        const struct jb_tensor *w,
                        bool w_trans,
                        int64_t ldw,
                        const float *bias,
                        float *y,
                        int64_t ldy,
                        bool accumulate,
                        int64_t n0,
                        int64_t n1)
{
    float *tile       = jb_cpu_arena(cpu, slot);
    const uint8_t *wb = w->data;
    size_t es         = jb_dtype_size(w->type);
    int64_t nb        = (int64_t)(JB_CPU_ARENA_FLOATS / TILE_K);
    float beta        = fill_init(M, n0, n1, bias, y, ldy, accumulate) ? 1.0f : 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += TILE_K) {
        int64_t kb = K - k0 < TILE_K ? K - k0 : TILE_K;
        for (int64_t c0 = n0; c0 < n1; c0 += nb) {
            int64_t cb = n1 - c0 < nb ? n1 - c0 : nb;
            if (!w_trans) {
                for (int64_t k = 0; k < kb; k++)
                    jb_cpu_to_f32(cpu,
                                  w->type,
                                  wb + ((size_t)(k0 + k) * (size_t)ldw + (size_t)c0) * es,
                                  tile + k * cb,
                                  cb);
                blas_f32(M, cb, kb, x + k0, ldx, tile, cb, false, beta, y + c0, ldy);
            } else {
                for (int64_t n = 0; n < cb; n++)
                    jb_cpu_to_f32(cpu,
                                  w->type,
                                  wb + ((size_t)(c0 + n) * (size_t)ldw + (size_t)k0) * es,
                                  tile + n * kb,
                                  kb);
                blas_f32(M, cb, kb, x + k0, ldx, tile, kb, true, beta, y + c0, ldy);
            }
        }
        beta = 1.0f;
    }
}

/* A GEMV cut over K: item i is half i / pn of K times column slice i % pn. Each item's partial
 * sums go to its own place in its slot's arena; the second of a slice's two items to finish adds
 * both halves and stores y, so no thread waits for another before the pool's join. */
struct gemv_split_job {
    const struct jb_cpu *cpu;
    int64_t M, N, K, kmid, ldx, ldy, ldc;
    const float *x;
    const struct jb_tensor *w;
    const float *bias;
    float *y;
    bool accumulate;
    int pn;
    float *part[2 * MAX_PN];
    atomic_int halves_done[MAX_PN];
};

static void gemv_split_items(void *arg, int64_t i0, int64_t i1, int slot)
{
    struct gemv_split_job *j = arg;
    const size_t es          = jb_dtype_size(j->w->type);
    for (int64_t i = i0; i < i1; i++) {
        const int half = (int)(i / j->pn), p = (int)(i % j->pn);
        int64_t n0, n1;
        split_range(j->N, j->pn, p, 16, &n0, &n1);
        const int64_t k0 = half ? j->kmid : 0, k1 = half ? j->K : j->kmid;
        float *acc    = jb_cpu_arena(j->cpu, slot) + i * JB_CPU_GEMV_MAX_M * j->ldc;
        const void *w = (const uint8_t *)j->w->data + (size_t)k0 * (size_t)j->N * es;
        gemv_kernel(j->cpu,
                    j->w->type,
                    false,
                    j->M,
                    k1 - k0,
                    j->x + k0,
                    j->ldx,
                    w,
                    j->N,
                    n0,
                    n1,
                    acc,
                    j->ldc);
        j->part[i] = acc;
        if (atomic_fetch_add(&j->halves_done[p], 1) == 0) continue; /* the other half adds */
        float *a0 = j->part[p];
        add_halves(j->M, a0, j->part[j->pn + p], j->ldc, n1 - n0);
        store_acc(j->M, a0, j->ldc, j->bias, j->y, j->ldy, j->accumulate, n0, n1);
    }
}

static void gemv_split(struct jb_cpu *cpu,
                       int nt,
                       double work,
                       int64_t M,
                       int64_t N,
                       int64_t K,
                       int64_t kmid,
                       const float *x,
                       int64_t ldx,
                       const struct jb_tensor *w,
                       const float *bias,
                       float *y,
                       int64_t ldy,
                       bool accumulate)
{
    int pn = (nt + 1) / 2;
    if (pn > N / 64) pn = N / 64 > 1 ? (int)(N / 64) : 1;
    if (pn > MAX_PN) pn = MAX_PN;
    struct gemv_split_job job = { .cpu        = cpu,
                                  .M          = M,
                                  .N          = N,
                                  .K          = K,
                                  .kmid       = kmid,
                                  .ldx        = ldx,
                                  .ldy        = ldy,
                                  .ldc        = (N / pn + 32) / 16 * 16, /* >= any slice, padded */
                                  .x          = x,
                                  .w          = w,
                                  .bias       = bias,
                                  .y          = y,
                                  .accumulate = accumulate,
                                  .pn         = pn };
    for (int p = 0; p < pn; p++)
        atomic_init(&job.halves_done[p], 0);
    if (nt <= 1) /* inline, on the caller's slot */
        jb_pool_for(cpu->pool, 2 * pn, 2 * pn, gemv_split_items, &job);
    else
        jb_pool_for_work(cpu->pool, 2 * pn, 1, work, gemv_split_items, &job);
}

struct matmul_job {
    const struct jb_cpu *cpu;
    int64_t M, N, K, ldx, ldw, ldy;
    const float *x;
    const struct jb_tensor *w;
    bool w_trans, accumulate, simd;
    const float *bias;
    float *y;
    int pn, pm; /* parts over N and over M */
};

/* Parts [p0, p1) of the pn x pm grid. */
static void matmul_parts(void *arg, int64_t p0, int64_t p1, int slot)
{
    const struct matmul_job *j = arg;
    for (int64_t p = p0; p < p1; p++) {
        int64_t n0, n1, m0 = j->M * (p / j->pn) / j->pm, m1 = j->M * (p / j->pn + 1) / j->pm;
        split_range(j->N, j->pn, (int)(p % j->pn), 16, &n0, &n1);
        const float *xm = j->x + m0 * j->ldx;
        float *ym       = j->y + m0 * j->ldy;
        int64_t mm = m1 - m0, K = j->K, ldx = j->ldx, ldw = j->ldw, ldy = j->ldy;
        if (n1 <= n0 || mm <= 0) continue;
        if (j->simd && (j->w_trans || mm <= JB_CPU_GEMV_MAX_M))
            gemv_slice(j->cpu,
                       slot,
                       mm,
                       K,
                       xm,
                       ldx,
                       j->w,
                       j->w_trans,
                       ldw,
                       j->bias,
                       ym,
                       ldy,
                       j->accumulate,
                       n0,
                       n1);
        else if (j->simd)
            packed_slice(
              j->cpu, slot, mm, K, xm, ldx, j->w, ldw, j->bias, ym, ldy, j->accumulate, n0, n1);
        else if (j->w->type == JB_DTYPE_F32)
            sgemm_slice(
              mm, K, xm, ldx, j->w->data, j->w_trans, ldw, j->bias, ym, ldy, j->accumulate, n0, n1);
        else
            tiled_slice(j->cpu,
                        slot,
                        mm,
                        K,
                        xm,
                        ldx,
                        j->w,
                        j->w_trans,
                        ldw,
                        j->bias,
                        ym,
                        ldy,
                        j->accumulate,
                        n0,
                        n1);
    }
}

void jb_cpu_matmul(struct jb_cpu *cpu,
                   int64_t M,
                   int64_t N,
                   int64_t K,
                   const float *x,
                   int64_t ldx,
                   const struct jb_tensor *w,
                   bool w_trans,
                   const float *bias,
                   float *y,
                   int64_t ldy,
                   bool accumulate)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t m = 0; m < M; m++)
            if (!fill_init(1, 0, N, bias, y + m * ldy, ldy, accumulate))
                memset(y + m * ldy, 0, (size_t)N * sizeof(float));
        return;
    }
    JB_ASSERT(w->type == JB_DTYPE_F32 || w->type == JB_DTYPE_F16 || w->type == JB_DTYPE_BF16);
    JB_ASSERT(jb_tensor_nelements(w) == N * K && ldx >= K && ldy >= N);
    /* a product with few rows streams its weights from memory: its time is that of the bytes
     * (~16 FMA-equivalents per weight from DRAM), not of its FMAs */
    double work = (double)M * (double)N * (double)K;
    double wb   = (double)N * (double)K * (double)jb_dtype_size(w->type);
    if (wb > STREAMED_W_BYTES && 16.0 * (double)N * (double)K > work)
        work = 16.0 * (double)N * (double)K;
    /* a small product of several rows (candidates) is not shared: its output rows, written in
     * the other core's cache, cost the next op more than the split saves (w256d8, 4 candidates:
     * 0.87x of one thread shared, 0.95x not) */
    int nt             = M > 1 && work < 1048576.0 ? 1 : jb_cpu_team(cpu, work);
    const int64_t kmid = k_split(K, N, w->type);
    if (kmid && !w_trans && M <= JB_CPU_GEMV_MAX_M && cpu->isa >= JB_CPU_ISA_AVX2) {
        gemv_split(cpu, nt, work, M, N, K, kmid, x, ldx, w, bias, y, ldy, accumulate);
        return;
    }
    /* threads over N (at least 64 columns each), and over M as well when N is too narrow for all
     * of them and there are rows enough (not in the GEMV case, which must see all of its rows) */
    int pn = N / 64 < nt ? (N / 64 > 1 ? (int)(N / 64) : 1) : nt;
    int pm = nt / pn;
    if (M <= JB_CPU_GEMV_MAX_M || M < 8 * pm) pm = 1;
    /* W small enough to stay in cache (not the transposed output head: not measured) and rows
     * enough: over M alone. Each thread then reads and writes only its own rows, where a split
     * over N sent all of x to the other core and half of every output row back, for the next op
     * to fetch again. Priming w256d8 (2 threads against 1, old and new builds alternating, three
     * rounds): 4 candidates 0.94-1.00x -> 1.14-1.20x, 1 candidate 0.83-0.91x -> 0.90-1.00x. With
     * W of 3-4 MiB (w1024d24) it lost (1.54-1.72x -> 1.37-1.58x): each thread then streams all
     * of W from memory. */
    if (wb < STREAMED_W_BYTES && !w_trans && M >= 16 * (int64_t)nt) pn = 1, pm = nt;
    struct matmul_job job = { .cpu        = cpu,
                              .M          = M,
                              .N          = N,
                              .K          = K,
                              .ldx        = ldx,
                              .ldw        = w_trans ? K : N,
                              .ldy        = ldy,
                              .x          = x,
                              .w          = w,
                              .w_trans    = w_trans,
                              .accumulate = accumulate,
                              .simd       = cpu->isa >= JB_CPU_ISA_AVX2,
                              .bias       = bias,
                              .y          = y,
                              .pn         = pn,
                              .pm         = pm };
    jb_pool_for_work(cpu->pool, (int64_t)pn * pm, 1, work, matmul_parts, &job);
}
