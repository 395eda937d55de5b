/*
 * backend/cpu/cpu_matmul.c - y[M, N] (+)= x[M, K] · W (+ bias) with F32, F16 or BF16 weights.
 *
 * Threads split N into slices starting at multiples of 16 columns. Within a slice, with AVX2 or
 * AVX-512 (cpu_x86.c):
 *   - W [K, N], M <= 4 (token by token): a GEMV that streams whole rows of W once, in the stored
 *     dtype, into fp32 partial sums in the arena;
 *   - W [K, N], M > 4: W converted to packed fp32 tiles of 128 rows in the arena, then a
 *     register-blocked kernel (4 rows x 96 columns) over all rows of x;
 *   - W [N, K], any M: dot products against groups of 4 rows of W kept in L1.
 * All compute acc = x·W from zero with each output's sum in a fixed order (sequential over k for
 * W [K, N], the same in the GEMV and the tiled kernel), then y = acc + init with
 * init = (accumulate ? y : 0) + bias: results do not depend on the thread count, nor on M.
 * Without SIMD: OpenBLAS (sgemv / sgemm on the slice, F16/BF16 through converted tiles, beta = 1
 * on a pre-filled y).
 */
#include "backend/cpu/cpu.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#define TILE_K 256 /* rows of a converted weight tile (OpenBLAS path) */
#define PACK_K 128 /* rows of a packed weight tile (SIMD path): 128 x 1024 fp32 = 512 KiB, in L2 */
#define PACK_N 1024

/* [a, b) = part i of parts over [0, n), boundaries rounded down to multiples of align. */
static void split_range(int64_t n, int parts, int i, int64_t align, int64_t *a, int64_t *b)
{
    int64_t lo = n * i / parts, hi = n * (i + 1) / parts;
    *a         = i == 0 ? 0 : lo / align * align;
    *b         = i == parts - 1 ? n : hi / align * align;
}

/* y[:, n0:n1] = init (accumulate ? y : 0) + bias; returns false when init is all zero and y was
 * not written (sgemm can then use beta = 0). */
static bool fill_init(int64_t M, int64_t n0, int64_t n1, const float *bias, float *y, int64_t ldy,
                      bool accumulate)
{
    if (!accumulate && !bias) return false;
    for (int64_t m = 0; m < M; m++) {
        float *yr = y + m * ldy;
        if (!accumulate)
            memcpy(yr + n0, bias + n0, (size_t)(n1 - n0) * sizeof(float));
        else if (bias)
            for (int64_t n = n0; n < n1; n++) yr[n] += bias[n];
    }
    return true;
}

static void convert_f32(const struct jb_cpu *cpu, enum jb_dtype type, const void *src, float *dst,
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
    jb_convert_to_f32(type, src, dst, (size_t)n);
}

/* y[m, c0:c1] = acc + init */
static void store_acc(int64_t M, const float *acc, int64_t lda, const float *bias, float *y,
                      int64_t ldy, bool accumulate, int64_t c0, int64_t c1)
{
    for (int64_t m = 0; m < M; m++) {
        float       *yr = y + m * ldy;
        const float *ar = acc + m * lda - c0;
        for (int64_t n = c0; n < c1; n++) {
            float init = (accumulate ? yr[n] : 0.0f) + (bias ? bias[n] : 0.0f);
            yr[n]      = ar[n] + init;
        }
    }
}

/* GEMV (W [K, N], M <= 4) or dot products (W [N, K]) over the slice [n0, n1), in column chunks
 * whose M rows of partial sums fit the arena. */
static void gemv_slice(const struct jb_cpu *cpu, int64_t M, int64_t K, const float *x, int64_t ldx,
                       const struct jb_tensor *w, bool w_trans, int64_t ldw, const float *bias,
                       float *y, int64_t ldy, bool accumulate, int64_t n0, int64_t n1)
{
    float  *acc = jb_cpu_arena(cpu);
    int64_t mb  = M < 256 ? M : 256; /* rows of x per pass (W [N, K] only) */
    int64_t chunk = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)mb) / 16 * 16;
    for (int64_t m0 = 0; m0 < M; m0 += mb) {
        int64_t mm = M - m0 < mb ? M - m0 : mb;
        for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
            int64_t c1  = c0 + chunk < n1 ? c0 + chunk : n1;
            int64_t lda = (c1 - c0 + 15) / 16 * 16;
#if JB_CPU_X86
            if (cpu->isa >= JB_CPU_ISA_AVX512)
                jb_cpu_gemv_avx512(w->type, w_trans, mm, K, x + m0 * ldx, ldx, w->data, ldw, c0, c1,
                                   acc, lda);
            else
                jb_cpu_gemv_avx2(w->type, w_trans, mm, K, x + m0 * ldx, ldx, w->data, ldw, c0, c1,
                                 acc, lda);
#endif
            store_acc(mm, acc, lda, bias, y + m0 * ldy, ldy, accumulate, c0, c1);
        }
    }
}

/* W [K, N], M > 4: packed fp32 tiles of PACK_K x (up to) PACK_N, each used by all rows of x. */
static void packed_slice(const struct jb_cpu *cpu, int64_t M, int64_t K, const float *x,
                         int64_t ldx, const struct jb_tensor *w, int64_t ldw, const float *bias,
                         float *y, int64_t ldy, bool accumulate, int64_t n0, int64_t n1)
{
    float         *tile = jb_cpu_arena(cpu);
    const uint8_t *wb   = w->data;
    size_t         es   = jb_dtype_size(w->type);
    for (int64_t c0 = n0; c0 < n1; c0 += PACK_N) {
        int64_t cc  = n1 - c0 < PACK_N ? n1 - c0 : PACK_N;
        int64_t ldc = (cc + 15) / 16 * 16;
        float  *acc = tile + PACK_K * ldc;
        int64_t mb  = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)ldc) - PACK_K; /* rows of acc */
        for (int64_t m0 = 0; m0 < M; m0 += mb) {
            int64_t mm = M - m0 < mb ? M - m0 : mb;
            for (int64_t k0 = 0; k0 < K; k0 += PACK_K) {
                int64_t kb = K - k0 < PACK_K ? K - k0 : PACK_K;
                for (int64_t k = 0; k < kb; k++) {
                    float *row = tile + k * ldc;
                    convert_f32(cpu, w->type, wb + ((size_t)(k0 + k) * (size_t)ldw + (size_t)c0) * es,
                                row, cc);
                    for (int64_t j = cc; j < ldc; j++) row[j] = 0.0f;
                }
#if JB_CPU_X86
                if (cpu->isa >= JB_CPU_ISA_AVX512)
                    jb_cpu_gemm_tile_avx512(mm, kb, x + m0 * ldx + k0, ldx, tile, ldc, cc, acc, ldc,
                                            k0 == 0);
                else
                    jb_cpu_gemm_tile_avx2(mm, kb, x + m0 * ldx + k0, ldx, tile, ldc, cc, acc, ldc,
                                          k0 == 0);
#endif
            }
            store_acc(mm, acc, ldc, bias, y + m0 * ldy, ldy, accumulate, c0, c0 + cc);
        }
    }
}

/* F32 weights through OpenBLAS on the slice [n0, n1). M == 1 uses sgemv. */
static void sgemm_slice(int64_t M, int64_t K, const float *x, int64_t ldx, const float *w,
                        bool w_trans, int64_t ldw, const float *bias, float *y, int64_t ldy,
                        bool accumulate, int64_t n0, int64_t n1)
{
    float        beta = fill_init(M, n0, n1, bias, y, ldy, accumulate) ? 1.0f : 0.0f;
    const float *wn   = w_trans ? w + n0 * ldw : w + n0;
    int64_t      nn   = n1 - n0;
    if (M == 1) {
        if (w_trans)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nn, (int)K, 1.0f, wn, (int)ldw, x, 1, beta,
                        y + n0, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)nn, 1.0f, wn, (int)ldw, x, 1, beta,
                        y + n0, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, w_trans ? CblasTrans : CblasNoTrans, (int)M, (int)nn,
                (int)K, 1.0f, x, (int)ldx, wn, (int)ldw, beta, y + n0, (int)ldy);
}

/* F16/BF16 weights: fp32 tiles of TILE_K x nb (transposed layout: nb x TILE_K) in the arena. */
static void tiled_slice(const struct jb_cpu *cpu, int64_t M, int64_t K, const float *x,
                        int64_t ldx, const struct jb_tensor *w, bool w_trans, int64_t ldw,
                        const float *bias, float *y, int64_t ldy, bool accumulate, int64_t n0,
                        int64_t n1)
{
    float         *tile = jb_cpu_arena(cpu);
    const uint8_t *wb   = w->data;
    size_t         es   = jb_dtype_size(w->type);
    int64_t        nb   = (int64_t)(JB_CPU_ARENA_FLOATS / TILE_K);
    float          beta = fill_init(M, n0, n1, bias, y, ldy, accumulate) ? 1.0f : 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += TILE_K) {
        int64_t kb = K - k0 < TILE_K ? K - k0 : TILE_K;
        for (int64_t c0 = n0; c0 < n1; c0 += nb) {
            int64_t cb = n1 - c0 < nb ? n1 - c0 : nb;
            if (!w_trans) {
                for (int64_t k = 0; k < kb; k++)
                    convert_f32(cpu, w->type, wb + ((size_t)(k0 + k) * (size_t)ldw + (size_t)c0) * es,
                                tile + k * cb, cb);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)cb, (int)kb,
                            1.0f, x + k0, (int)ldx, tile, (int)cb, beta, y + c0, (int)ldy);
            } else {
                for (int64_t n = 0; n < cb; n++)
                    convert_f32(cpu, w->type, wb + ((size_t)(c0 + n) * (size_t)ldw + (size_t)k0) * es,
                                tile + n * kb, kb);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)cb, (int)kb, 1.0f,
                            x + k0, (int)ldx, tile, (int)kb, beta, y + c0, (int)ldy);
            }
        }
        beta = 1.0f;
    }
}

void jb_cpu_matmul(struct jb_cpu *cpu, int64_t M, int64_t N, int64_t K, const float *x,
                   int64_t ldx, const struct jb_tensor *w, bool w_trans, const float *bias,
                   float *y, int64_t ldy, bool accumulate)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t m = 0; m < M; m++)
            if (!fill_init(1, 0, N, bias, y + m * ldy, ldy, accumulate))
                memset(y + m * ldy, 0, (size_t)N * sizeof(float));
        return;
    }
    JB_ASSERT(w->type == JB_DTYPE_F32 || w->type == JB_DTYPE_F16 || w->type == JB_DTYPE_BF16);
    int64_t ldw  = w_trans ? K : N;
    bool    simd = cpu->isa >= JB_CPU_ISA_AVX2;
    int     nt   = jb_cpu_team(cpu->n_threads, (double)M * (double)N * (double)K);
    /* at least 64 columns per thread */
    if (nt > 1 && N / 64 < nt) nt = N / 64 > 1 ? (int)(N / 64) : 1;

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int     parts = omp_get_num_threads(), i = omp_get_thread_num();
        int64_t n0, n1;
        split_range(N, parts, i, 16, &n0, &n1);
        if (n1 > n0) {
            if (simd && (w_trans || M <= JB_CPU_GEMV_MAX_M))
                gemv_slice(cpu, M, K, x, ldx, w, w_trans, ldw, bias, y, ldy, accumulate, n0, n1);
            else if (simd)
                packed_slice(cpu, M, K, x, ldx, w, ldw, bias, y, ldy, accumulate, n0, n1);
            else if (w->type == JB_DTYPE_F32)
                sgemm_slice(M, K, x, ldx, w->data, w_trans, ldw, bias, y, ldy, accumulate, n0, n1);
            else
                tiled_slice(cpu, M, K, x, ldx, w, w_trans, ldw, bias, y, ldy, accumulate, n0, n1);
        }
    }
}
