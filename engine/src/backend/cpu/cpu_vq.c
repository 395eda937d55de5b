/*
 * backend/cpu/cpu_vq.c - nearest-codebook-entry search of the VQ-VAE bottleneck (spec §3.4).
 *
 * dist[t, j] = (‖x_t‖² − 2·x_t·k_j) + ‖k_j‖² in fp32, evaluated in that order like the reference,
 * argmin with the first index on ties. ‖k_j‖² goes to the caller's scratch; the work of a block of
 * time steps to the thread's arena. Every dot product is the same FMA chain over emb from zero, so
 * equal codebook rows give bitwise equal distances (true ties), the codes of a time step do not
 * depend on T or on the block it falls in, and AVX2 and AVX-512 pick the same codes:
 *   - AVX-512: dot products and argmin fused per tile of time steps (jb_cpu_vq_fused_avx512), the
 *     dot block never stored, so the codebook stays in L2;
 *   - AVX2: a 1x1 convolution of x (emb, T) with the codebook [bins, emb, 1] through the direct
 *     conv kernel into dot (bins, tb), then the argmin, vectorised over time;
 *   - portable: one sgemm [tb, emb] x [emb, bins] per block (x read transposed in place).
 */
#include "backend/cpu/blas.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/pool.h"
#include "backend/ops.h"

#include <math.h>

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
                     int slot,
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
    /* arena: ‖x‖² [n], then the packed tile (AVX-512) or the dot block [bins, n] and the conv's
     * packed tile (AVX2) */
    float *xn  = jb_cpu_arena(cpu, slot);
    float *dot = xn + (n + 15) / 16 * 16;
    for (int64_t i = 0; i < n; i++)
        xn[i] = 0.0f;
    for (int64_t e = 0; e < emb; e++) /* sequential over e for every t, vectorised over t */
        for (int64_t i = 0; i < n; i++)
            xn[i] += x[e * T + t0 + i] * x[e * T + t0 + i];

    if (cpu->isa >= JB_CPU_ISA_AVX512) {
        JB_ASSERT((size_t)(dot - xn) + (size_t)(emb * JB_CONV_TILE) <= JB_CPU_ARENA_FLOATS);
        jb_cpu_vq_fused_avx512(x + t0, T, n, kb, bins, emb, kn, xn, codes + t0, dot);
        return;
    }
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
        JB_ASSERT((size_t)(dot - xn) + (size_t)(n * bins) + pack <= JB_CPU_ARENA_FLOATS);
        jb_cpu_conv_items_avx2(&job, 0, job.n_oblk * job.n_tile, dot + n * bins);
        jb_cpu_vq_block_avx2(xn, dot, n, kn, bins, n, codes + t0);
        return;
    }
    jb_blas()->sgemm(CblasRowMajor,
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

struct vq_task {
    const struct jb_cpu *cpu;
    const float *x;
    int64_t T;
    const float *kb;
    int64_t bins, emb;
    float *kn;
    int64_t tb;
    int32_t *codes;
};

static void codebook_norms(void *arg, int64_t j0, int64_t j1, int slot)
{
    const struct vq_task *t = arg;
    (void)slot;
    for (int64_t j = j0; j < j1; j++) {
        float s = 0.0f;
        for (int64_t e = 0; e < t->emb; e++)
            s += t->kb[j * t->emb + e] * t->kb[j * t->emb + e];
        t->kn[j] = s;
    }
}

static void vq_blocks(void *arg, int64_t b0, int64_t b1, int slot)
{
    const struct vq_task *t = arg;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t t0 = blk * t->tb;
        vq_block(t->cpu,
                 slot,
                 t->x,
                 t->T,
                 t->kb,
                 t->bins,
                 t->emb,
                 t->kn,
                 t0,
                 t->T - t0 < t->tb ? t->T - t0 : t->tb,
                 t->codes);
    }
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
    if (T <= 0 || bins <= 0) return;
    /* time steps per block: 96 keeps the dot tile (768 KiB at 2048 bins) in L2 for the argmin;
     * the arena holds dot [bins, tb] plus ‖x‖² [tb] */
    int64_t tb = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)(bins + 1));
    if (tb > 96) tb = 96;
    if (cpu->isa >= JB_CPU_ISA_AVX512) tb = JB_CONV_TILE; /* no dot block: one tile per block */
    JB_ASSERT(tb >= 1);
    struct vq_task t = { cpu, x, T, codebook->data, bins, emb, scratch, tb, codes };
    jb_cpu_for(cpu, bins, (double)emb, codebook_norms, &t);
    int64_t n_blk = (T + tb - 1) / tb;
    jb_cpu_for(cpu, n_blk, 2.0 * (double)tb * (double)bins * (double)emb, vq_blocks, &t);
}
