/*
 * backend/cpu/cpu_elementwise.c - LayerNorm, softmax, quick_gelu, relu, add, axpy, embedding.
 *
 * All fp32. Element loops carry JB_SIMD (`omp simd` under GCC, whose -O2 cost model leaves loops
 * of unknown trip count scalar; every iteration touches only index i, so y == x is fine; clang
 * vectorises them by itself). Reductions use 16 interleaved partial sums (what a vectorised
 * reduction does, and more accurate than one running sum over thousands of terms); the order is
 * fixed by the row length alone. LayerNorm rows are spread over the backend's pool only when there
 * is enough work to pay for waking it; the per-token calls of the sampler stay on the caller.
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_ops.h"
#include "core/fp16.h"

#include <math.h>
#include <string.h>

#define N_PART 16

#if defined(__GNUC__) && !defined(__clang__)
#define JB_SIMD _Pragma("omp simd")
#else
#define JB_SIMD
#endif

static float sum_f32(int64_t n, const float *x)
{
    float s[N_PART] = { 0 };
    int64_t i       = 0;
    for (; i + N_PART <= n; i += N_PART)
        for (int l = 0; l < N_PART; l++)
            s[l] += x[i + l];
    for (int l = 0; i < n; i++, l++)
        s[l] += x[i];
    for (int w = N_PART / 2; w > 0; w /= 2) /* pairwise fold */
        for (int l = 0; l < w; l++)
            s[l] += s[l + w];
    return s[0];
}

static float sum_sq_dev_f32(int64_t n, const float *x, float mean)
{
    float s[N_PART] = { 0 };
    int64_t i       = 0;
    for (; i + N_PART <= n; i += N_PART)
        for (int l = 0; l < N_PART; l++) {
            float d = x[i + l] - mean;
            s[l] += d * d;
        }
    for (int l = 0; i < n; i++, l++) {
        float d = x[i] - mean;
        s[l] += d * d;
    }
    for (int w = N_PART / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            s[l] += s[l + w];
    return s[0];
}

static float max_f32(int64_t n, const float *x)
{
    float m = x[0];
    for (int64_t i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

struct ln_task {
    int64_t W;
    const float *x, *g, *bt;
    float eps;
    float *y;
};

static void layernorm_rows(void *arg, int64_t r0, int64_t r1, int slot)
{
    const struct ln_task *t = arg;
    const int64_t W         = t->W;
    (void)slot;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = t->x + r * W;
        float *yr       = t->y + r * W;
        float mean      = sum_f32(W, xr) / (float)W;
        float var       = sum_sq_dev_f32(W, xr, mean) / (float)W;
        float rstd      = 1.0f / sqrtf(var + t->eps);
        const float *g = t->g, *bt = t->bt;
        JB_SIMD
        for (int64_t i = 0; i < W; i++)
            yr[i] = (xr[i] - mean) * rstd * g[i] + bt[i];
    }
}

void jb_cpu_layernorm(struct jb_cpu *cpu,
                      int64_t rows,
                      int64_t W,
                      const float *x,
                      const struct jb_tensor *gamma,
                      const struct jb_tensor *beta,
                      float eps,
                      float *y)
{
    JB_ASSERT(gamma->type == JB_DTYPE_F32 && beta->type == JB_DTYPE_F32);
    if (rows <= 0 || W <= 0) return;
    struct ln_task t = { W, x, gamma->data, beta->data, eps, y };
    jb_cpu_for(cpu, rows, 4.0 * (double)W, layernorm_rows, &t);
}

/* The element-wise ops below are memory-bound (softmax and quick_gelu per-token sized in the
 * sampler): jb_cpu_for keeps them on the caller unless the loop is big enough to pay for waking
 * the pool. Each element (softmax: each row) is computed the same way whatever the split. */
struct rows_task {
    int64_t n;
    float alpha;
    const float *a, *b;
    float *y;
};

static void softmax_range(void *arg, int64_t r0, int64_t r1, int slot)
{
    const struct rows_task *t = arg;
    const int64_t n           = t->n;
    (void)slot;
    for (int64_t r = r0; r < r1; r++) {
        float *xr = t->y + r * n;
        float mx  = max_f32(n, xr);
        for (int64_t i = 0; i < n; i++)
            xr[i] = expf(xr[i] - mx);
        float inv = 1.0f / sum_f32(n, xr);
        JB_SIMD
        for (int64_t i = 0; i < n; i++)
            xr[i] *= inv;
    }
}

void jb_cpu_op_softmax_rows(struct jb_cpu *cpu, int64_t rows, int64_t n, float *x)
{
    if (rows <= 0 || n <= 0) return;
    struct rows_task t = { .n = n, .y = x };
    jb_cpu_for(cpu, rows, 8.0 * (double)n, softmax_range, &t);
}

/* x · σ(1.702·x) with σ(t) = 1 / (1 + e^−t), as the reference writes it; e^−t by the
 * vectorised exp (cpu.h), within an ulp of expf. Where e^−t would pass 2^128 (x < −51.7) σ is 0
 * as in fp32 (the reference's σ there is under 3e-39); −∞ gives NaN as in the reference. */
JB_CPU_CLONES JB_CPU_NO_TRAPPING_MATH static void quick_gelu_row(float *restrict x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float v  = x[i];
        const float t  = -1.702f * v;
        const float th = t < 88.0f ? t : 88.0f;
        const float tc = th > -87.3f ? th : -87.3f;
        float kb;
        const float p   = jb_cpu_exp_reduced(tc, &kb);
        const float e   = p * jb_cpu_exp2_of(kb);
        const float s   = 1.0f / (1.0f + e);
        const float sig = t < 88.0f ? s : 0.0f;
        x[i]            = v * sig; /* NaN stays NaN */
    }
}

static void quick_gelu_range(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct rows_task *t = arg;
    (void)slot;
    quick_gelu_row(t->y + i0, i1 - i0);
}

void jb_cpu_op_quick_gelu(struct jb_cpu *cpu, int64_t n, float *x)
{
    struct rows_task t = { .y = x };
    jb_cpu_for(cpu, n, 8.0, quick_gelu_range, &t);
}

static void relu_range(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct rows_task *t = arg;
    const float *x            = t->a;
    float *y                  = t->y;
    (void)slot;
    JB_SIMD
    for (int64_t i = i0; i < i1; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* NaN stays NaN */
}

void jb_cpu_op_relu(struct jb_cpu *cpu, int64_t n, const float *x, float *y)
{
    struct rows_task t = { .a = x, .y = y };
    jb_cpu_for(cpu, n, 0.25, relu_range, &t);
}

static void axpy_range(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct rows_task *t = arg;
    const float alpha         = t->alpha;
    const float *x            = t->a;
    float *y                  = t->y;
    (void)slot;
    JB_SIMD
    for (int64_t i = i0; i < i1; i++)
        y[i] += alpha * x[i];
}

void jb_cpu_op_axpy(struct jb_cpu *cpu, int64_t n, float alpha, const float *x, float *y)
{
    struct rows_task t = { .alpha = alpha, .a = x, .y = y };
    jb_cpu_for(cpu, n, 0.25, axpy_range, &t);
}

static void add_range(void *arg, int64_t i0, int64_t i1, int slot)
{
    const struct rows_task *t = arg;
    const float *a = t->a, *b = t->b;
    float *y = t->y;
    (void)slot;
    JB_SIMD
    for (int64_t i = i0; i < i1; i++)
        y[i] = a[i] + b[i];
}

void jb_cpu_op_add(struct jb_cpu *cpu, int64_t n, const float *a, const float *b, float *y)
{
    struct rows_task t = { .a = a, .b = b, .y = y };
    jb_cpu_for(cpu, n, 0.25, add_range, &t);
}

void jb_cpu_op_embedding(struct jb_cpu *cpu,
                         const struct jb_tensor *table,
                         const int32_t *ids,
                         int64_t n,
                         float *out)
{
    (void)cpu;
    JB_ASSERT(table->n_dims == 2);
    const int64_t W  = table->shape[1];
    const size_t es  = jb_dtype_size(table->type);
    const uint8_t *t = table->data;
    for (int64_t i = 0; i < n; i++)
        jb_convert_to_f32(table->type, t + (size_t)ids[i] * (size_t)W * es, out + i * W, (size_t)W);
}

void jb_cpu_op_add_i32(struct jb_cpu *cpu, int64_t n, int32_t delta, int32_t *x)
{
    (void)cpu;
    for (int64_t i = 0; i < n; i++)
        x[i] += delta;
}

void jb_cpu_op_store_i32_at(struct jb_cpu *cpu,
                            int64_t n,
                            const int32_t *src,
                            const int32_t *pos,
                            int64_t ld,
                            int32_t *dst)
{
    (void)cpu;
    for (int64_t i = 0; i < n; i++)
        dst[(int64_t)pos[i] * ld + i] = src[i];
}
