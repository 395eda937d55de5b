/*
 * backend/cpu/cpu_ops.c - the CPU kernels of the op table that are thin adapters to the kernels
 * of cpu_matmul.c, cpu_conv.c, cpu_elementwise.c and cpu_vq.c, plus the simple data-movement ops
 * (scale, fill, transpose, copy).
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"

#include <string.h>

void jb_cpu_op_matmul(struct jb_cpu *cpu,
                      int64_t M,
                      int64_t N,
                      int64_t K,
                      const float *x,
                      int64_t ldx,
                      const struct jb_tensor *w,
                      bool w_trans,
                      const struct jb_tensor *bias,
                      float *y,
                      int64_t ldy,
                      bool accumulate)
{
    jb_cpu_matmul(cpu,
                  M,
                  N,
                  K,
                  x,
                  ldx,
                  w,
                  w_trans,
                  bias ? (const float *)bias->data : NULL,
                  y,
                  ldy,
                  accumulate);
}

void jb_cpu_op_conv1d(struct jb_cpu *cpu,
                      const float *x,
                      int64_t T,
                      const struct jb_tensor *w,
                      const struct jb_tensor *b,
                      int stride,
                      int pad,
                      int dil,
                      float *y,
                      float *scratch)
{
    jb_cpu_conv1d(cpu, x, T, w, b, stride, pad, dil, y, scratch);
}

void jb_cpu_op_conv_transpose1d(struct jb_cpu *cpu,
                                const float *x,
                                int64_t T,
                                const struct jb_tensor *w,
                                const struct jb_tensor *b,
                                int stride,
                                int pad,
                                float *y,
                                float *scratch)
{
    jb_cpu_conv_transpose1d(cpu, x, T, w, b, stride, pad, y, scratch);
}

void jb_cpu_op_layernorm(struct jb_cpu *cpu,
                         int64_t rows,
                         int64_t W,
                         const float *x,
                         const struct jb_tensor *gamma,
                         const struct jb_tensor *beta,
                         float eps,
                         float *y)
{
    jb_cpu_layernorm(cpu, rows, W, x, gamma, beta, eps, y);
}

void jb_cpu_op_vq_argmin(struct jb_cpu *cpu,
                         const float *x,
                         int64_t T,
                         const struct jb_tensor *codebook,
                         int32_t *codes,
                         float *scratch)
{
    jb_cpu_vq_argmin(cpu, x, T, codebook, codes, scratch);
}

/* ---- data movement ----------------------------------------------------------------------- */

struct scale_args {
    float alpha;
    const float *x;
    float *y;
};

static void scale_range(void *arg, int64_t a, int64_t b, int slot)
{
    (void)slot;
    const struct scale_args *s = arg;
    for (int64_t i = a; i < b; i++)
        s->y[i] = s->alpha * s->x[i];
}

void jb_cpu_op_scale(struct jb_cpu *cpu, int64_t n, float alpha, const float *x, float *y)
{
    struct scale_args s = { alpha, x, y };
    /* memory-bound: on the caller unless the loop is big enough to pay for the pool (cpu.h) */
    jb_cpu_for(cpu, n, 0.25, scale_range, &s);
}

struct fill_args {
    float value;
    float *y;
};

static void fill_range(void *arg, int64_t a, int64_t b, int slot)
{
    (void)slot;
    const struct fill_args *f = arg;
    for (int64_t i = a; i < b; i++)
        f->y[i] = f->value;
}

void jb_cpu_op_fill(struct jb_cpu *cpu, int64_t n, float value, float *y)
{
    struct fill_args f = { value, y };
    /* as scale; a large fill (a fresh KV cache) is mostly first-touch page faults, which the
     * threads take in parallel */
    jb_cpu_for(cpu, n, 0.25, fill_range, &f);
}

struct transpose_task {
    const struct jb_cpu *cpu;
    const float *src;
    int64_t rows, cols;
    float *dst;
};

enum { TRANSPOSE_BAND = 16 }; /* source rows per work item: one vector of each output row */

/* Rows [r0, r1) by columns [c0, c1) one element at a time, in tiles of 32 columns (each source
 * row's part of a tile is two cache lines) */
static void transpose_elements(const struct transpose_task *t,
                               int64_t r0,
                               int64_t r1,
                               int64_t c0,
                               int64_t c1)
{
    enum { TILE = 32 };
    for (int64_t ct = c0; ct < c1; ct += TILE) {
        const int64_t ce = ct + TILE < c1 ? ct + TILE : c1;
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = ct; c < ce; c++)
                t->dst[c * t->rows + r] = t->src[r * t->cols + c];
    }
}

static void transpose_bands(void *arg, int64_t b0, int64_t b1, int slot)
{
    (void)slot;
    const struct transpose_task *t = arg;
    const int64_t r0               = b0 * TRANSPOSE_BAND,
                  r1               = b1 * TRANSPOSE_BAND < t->rows ? b1 * TRANSPOSE_BAND : t->rows;
    int64_t rb = r0, cb = 0; /* the whole blocks done: rows [r0, rb) by columns [0, cb) */
    if (t->cpu->isa >= JB_CPU_ISA_AVX512) {
        rb = r0 + (r1 - r0) / 16 * 16;
        cb = t->cols / 16 * 16;
        jb_cpu_transpose_avx512(t->src, t->rows, t->cols, t->dst, r0, rb);
    }
    transpose_elements(t, r0, rb, cb, t->cols); /* right of the blocks */
    transpose_elements(t, rb, r1, 0, t->cols);  /* a short last band, or all without AVX-512 */
}

/* Bands of source rows shared over the pool, 16 x 16 blocks in registers with AVX-512. As one
 * scalar loop of 32 x 32 tiles, the conditioner's two transposes took ~15 ms ((1920, 8192), its
 * output) and ~25 ms ((2048, 1920), its input: a tile's 32 rows of dst, 8 KiB apart, all fall
 * in one L1 set) per window; now ~4 and ~2.5 on two threads. */
void jb_cpu_op_transpose(struct jb_cpu *cpu,
                         const float *src,
                         int64_t rows,
                         int64_t cols,
                         float *dst)
{
    struct transpose_task t = { cpu, src, rows, cols, dst };
    jb_cpu_for(cpu,
               (rows + TRANSPOSE_BAND - 1) / TRANSPOSE_BAND,
               0.5 * TRANSPOSE_BAND * (double)cols,
               transpose_bands,
               &t);
}

void jb_cpu_op_copy(struct jb_cpu *cpu,
                    int64_t rows,
                    int64_t cols,
                    const float *src,
                    int64_t lds,
                    float *dst,
                    int64_t ldd)
{
    (void)cpu;
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * ldd, src + r * lds, (size_t)cols * sizeof *dst);
}
