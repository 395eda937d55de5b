/*
 * backend/cpu/cpu_vq.c - nearest-codebook-entry search of the VQ-VAE bottleneck (spec §3.4).
 *
 * dist[t, j] = (‖x_t‖² − 2·x_t·k_j) + ‖k_j‖² in fp32, evaluated in that order like the reference,
 * argmin with the first index on ties. ‖k_j‖² goes to the caller's scratch; the dot products of a
 * block of time steps go to the thread's arena:
 *   - AVX2 / AVX-512: as a 1x1 convolution of x (emb, T) with the codebook [bins, emb, 1] through
 * the direct conv kernel, giving dot (bins, tb); every dot product is the same FMA chain over emb,
 *     so equal codebook rows give bitwise equal distances (true ties) and the codes of a time step
 *     do not depend on T or on the block it falls in. The argmin is vectorised over time.
 *   - portable: one sgemm [tb, emb] x [emb, bins] per block (x read transposed in place).
 */
#include "backend/cpu/cpu.h"
#include "backend/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

size_t jb_vq_argmin_scratch(int64_t bins, int64_t emb, int64_t T)
{
    (void)emb, (void)T; /* ‖k_j‖² only: the dot products use the arena, block by block */
    return (size_t)bins + 16;
}

static int32_t vq_row(float xn, const float *dot, const float *kn, int64_t bins)
{
    int32_t best_j = 0;
    float best     = INFINITY;
    for (int64_t j = 0; j < bins; j++) {
        float d = (xn - 2.0f * dot[j]) + kn[j];
        if (d < best) {
            best   = d;
            best_j = (int32_t)j;
        }
    }
    return best_j;
}

/* Codes of the time steps [t0, t0 + n). */
static void vq_block(const struct jb_cpu *cpu,
                     const float *x,
                     int64_t T,
                     const float *kb,
                     int64_t bins,
                     int64_t emb,
                     const float *kn,
                     int64_t t0,
                     int64_t n,
                     int32_t *codes)
{
    float *dot = jb_cpu_arena(cpu);
    float *xn  = dot + n * bins;
    for (int64_t i = 0; i < n; i++)
        xn[i] = 0.0f;
    for (int64_t e = 0; e < emb; e++) /* sequential over e for every t, vectorised over t */
        for (int64_t i = 0; i < n; i++)
            xn[i] += x[e * T + t0 + i] * x[e * T + t0 + i];

    if (cpu->isa >= JB_CPU_ISA_AVX2) {
        struct jb_conv_job job = { .n_phase = 1,
                                   .n_tap   = { 1, 0 },
                                   .cin     = emb,
                                   .ldx     = T,
                                   .w       = kb,
                                   .w_os    = emb,
                                   .w_cs    = 1,
                                   .y       = dot,
                                   .cout    = bins,
                                   .ldy     = n,
                                   .tout    = n,
                                   .n_m     = n,
                                   .nr      = 8 };
        job.tap[0][0]          = (struct jb_conv_tap){ x + t0, 0, T - t0, 0 };
        size_t pack            = jb_cpu_conv_prepare(&job);
        JB_ASSERT((size_t)(n * (bins + 1)) + pack <= JB_CPU_ARENA_FLOATS);
        if (cpu->isa >= JB_CPU_ISA_AVX512) {
            jb_cpu_conv_items_avx512(&job, 0, job.n_oblk * job.n_tile, xn + n);
            jb_cpu_vq_block_avx512(xn, dot, n, kn, bins, n, codes + t0);
        } else {
            jb_cpu_conv_items_avx2(&job, 0, job.n_oblk * job.n_tile, xn + n);
            jb_cpu_vq_block_avx2(xn, dot, n, kn, bins, n, codes + t0);
        }
        return;
    }
    cblas_sgemm(CblasRowMajor,
                CblasTrans,
                CblasTrans,
                (int)n,
                (int)bins,
                (int)emb,
                1.0f,
                x + t0,
                (int)T,
                kb,
                (int)emb,
                0.0f,
                dot,
                (int)bins);
    for (int64_t i = 0; i < n; i++)
        codes[t0 + i] = vq_row(xn[i], dot + i * bins, kn, bins);
}

void jb_cpu_vq_argmin(struct jb_cpu *cpu,
                      const float *x,
                      int64_t T,
                      const struct jb_tensor *codebook,
                      int32_t *codes,
                      float *scratch)
{
    JB_ASSERT(codebook->type == JB_DTYPE_F32 && codebook->n_dims == 2 && scratch);
    const int64_t bins = codebook->shape[0], emb = codebook->shape[1];
    const float *kb = codebook->data;
    float *kn       = scratch;
    if (T <= 0 || bins <= 0) return;

    int nt = jb_cpu_team(cpu->n_threads, (double)bins * (double)emb);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t j = 0; j < bins; j++) {
        float s = 0.0f;
        for (int64_t e = 0; e < emb; e++)
            s += kb[j * emb + e] * kb[j * emb + e];
        kn[j] = s;
    }

    /* time steps per block: 96 keeps the dot tile (768 KiB at 2048 bins) in L2 for the argmin;
     * the arena holds dot [bins, tb] plus ‖x‖² [tb] */
    int64_t tb = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)(bins + 1));
    if (tb > 96) tb = 96;
    JB_ASSERT(tb >= 1);
    int64_t n_blk = (T + tb - 1) / tb;
    nt            = jb_cpu_team(cpu->n_threads, 2.0 * (double)T * (double)bins * (double)emb);
    if (nt > n_blk) nt = (int)n_blk;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t blk = 0; blk < n_blk; blk++) {
        int64_t t0 = blk * tb;
        vq_block(cpu, x, T, kb, bins, emb, kn, t0, T - t0 < tb ? T - t0 : tb, codes);
    }
}
