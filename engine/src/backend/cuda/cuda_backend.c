/*
 * backend/cuda/cuda_backend.c - the CUDA backend behind struct jb_backend: device buffers,
 * weights uploaded once at load (set_tensor), and every slot of the op table (backend/ops.def)
 * filled with the kernels of this folder, so no op falls back to the CPU (the device memory is
 * not host-readable).
 *
 * Ops return nothing: the first failure is kept in the context (jb_cuda_record), later ops do
 * nothing, and the job reads the status between steps through jb_backend_status().
 * Work memory: the ops that need some (GEMV partial sums, fp16 staging, im2col columns) take it
 * from the context's arena, reserved at init (JB_CUDA_ARENA_INIT) and grown by the first call of
 * a larger shape, i.e. before a job's steady state, never inside a captured graph (a graph
 * keeps the arena it was recorded with alive when a later op grows it).
 */
#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_conv.cuh"
#include "backend/cuda/cuda_elementwise.cuh"
#include "backend/cuda/cuda_gemm.cuh"
#include "backend/cuda/cuda_norm.cuh"
#include "backend/cuda/cuda_sample.cuh"
#include "backend/cuda/cuda_vq.cuh"
#include "backend/ops.h"

#include <stdlib.h>

#define JB_CUDA_ARENA_INIT ((size_t)64 << 20)

/* Runs one kernel entry point unless an earlier op failed; records its failure. */
#define RUN(cu, call)                                                                              \
    do {                                                                                           \
        if (jb_cuda_status(cu) != JB_STATUS_OK) return;                                            \
        const enum jb_status jb_st_ = (call);                                                      \
        if (jb_st_ != JB_STATUS_OK) jb_cuda_record(cu, jb_st_);                                    \
    } while (0)

static const float *f32_of(struct jb_cuda *cu, const struct jb_tensor *t, const char *what)
{
    if (!t) return NULL;
    if (t->type != JB_DTYPE_F32) {
        jb_cuda_record(cu,
                       jb_fail(JB_STATUS_ERR_UNSUPPORTED,
                               "cuda: %s '%s' must be F32 (got %s)",
                               what,
                               t->name ? t->name : "?",
                               jb_dtype_name(t->type)));
        return NULL;
    }
    return t->data;
}

/* ---- buffers -------------------------------------------------------------------------------- */

static void cuda_free_ctx(void *ctx)
{
    jb_cuda_close(ctx);
}

static void *cuda_buffer_alloc(void *ctx, size_t nbytes)
{
    void *p = NULL;
    return jb_cuda_malloc(ctx, nbytes, &p) == JB_STATUS_OK ? p : NULL;
}

static void cuda_buffer_free(void *ctx, void *buf)
{
    jb_cuda_free(ctx, buf);
}

static void cuda_set_tensor(void *ctx, void *dst, const void *src, size_t n)
{
    RUN(ctx, jb_cuda_upload(ctx, dst, src, n));
}

static void cuda_get_tensor(void *ctx, void *dst, const void *src, size_t n)
{
    RUN(ctx, jb_cuda_download(ctx, dst, src, n));
}

static void cuda_synchronize(void *ctx)
{
    RUN(ctx, jb_cuda_synchronize(ctx));
}

static enum jb_status cuda_memory_info(void *ctx, size_t *free_bytes, size_t *total)
{
    return jb_cuda_mem_info(ctx, free_bytes, total);
}

static enum jb_status cuda_status(void *ctx)
{
    return jb_cuda_status(ctx);
}

/* ---- ops ------------------------------------------------------------------------------------ */

static void op_matmul(void *ctx,
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
    struct jb_cuda *cu = ctx;
    const float *b     = f32_of(cu, bias, "bias");
    RUN(cu, jb_cuda_reserve(cu, jb_cuda_matmul_arena(M, N, K, w->type)));
    RUN(cu, jb_cuda_matmul(cu, M, N, K, x, ldx, w->data, w->type, w_trans, b, y, ldy, accumulate));
}

static void op_conv1d(void *ctx,
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
    struct jb_cuda *cu = ctx;
    const float *wd = f32_of(cu, w, "conv weight"), *bd = f32_of(cu, b, "conv bias");
    const int64_t Cout = w->shape[0], Cin = w->shape[1];
    const int k = (int)w->shape[2];
    (void)scratch; /* the im2col columns live in the arena */
    RUN(cu, jb_cuda_reserve(cu, jb_cuda_conv1d_arena(Cin, T, k, stride, pad, dil)));
    RUN(cu, jb_cuda_conv1d(cu, x, Cin, T, wd, Cout, k, bd, stride, pad, dil, y));
}

static void op_conv_transpose1d(void *ctx,
                                const float *x,
                                int64_t T,
                                const struct jb_tensor *w,
                                const struct jb_tensor *b,
                                int stride,
                                int pad,
                                float *y,
                                float *scratch)
{
    struct jb_cuda *cu = ctx;
    const float *wd = f32_of(cu, w, "conv weight"), *bd = f32_of(cu, b, "conv bias");
    const int64_t Cin = w->shape[0], Cout = w->shape[1];
    const int k = (int)w->shape[2];
    (void)scratch;
    RUN(cu, jb_cuda_reserve(cu, jb_cuda_conv_transpose1d_arena(Cout, T, k)));
    RUN(cu, jb_cuda_conv_transpose1d(cu, x, Cin, T, wd, Cout, k, bd, stride, pad, y));
}

/* y = x + ρ·conv1(relu(conv3_d(relu(x)))): a = relu(x) and b = conv3_d(a) held in the arena,
 * the convolutions' columns after them. */
static void op_resblock(void *ctx,
                        const float *x,
                        float *y,
                        int64_t T,
                        int64_t origin,
                        const struct jb_tensor *w1,
                        const struct jb_tensor *b1,
                        int dil,
                        const struct jb_tensor *w2,
                        const struct jb_tensor *b2,
                        float res_scale,
                        float *work)
{
    struct jb_cuda *cu = ctx;
    const float *w1d = f32_of(cu, w1, "conv weight"), *b1d = f32_of(cu, b1, "conv bias");
    const float *w2d = f32_of(cu, w2, "conv weight"), *b2d = f32_of(cu, b2, "conv bias");
    const int64_t S = w1->shape[0], C = w1->shape[1];
    (void)work;
    (void)origin; /* the direct sums here do not depend on where a column falls */
    const size_t na = ((size_t)(C * T) * 4 + 255) & ~(size_t)255,
                 nb = ((size_t)(S * T) * 4 + 255) & ~(size_t)255;
    const size_t c1 = jb_cuda_conv1d_arena(C, T, 3, 1, dil, dil),
                 c2 = jb_cuda_conv1d_arena(S, T, 1, 1, 0, 1);
    RUN(cu, jb_cuda_reserve(cu, na + nb + (c1 > c2 ? c1 : c2)));
    void *a = NULL, *b = NULL;
    RUN(cu, jb_cuda_arena_push(cu, na, &a));
    enum jb_status st = jb_cuda_arena_push(cu, nb, &b);
    if (st == JB_STATUS_OK) st = jb_cuda_relu(cu, C * T, x, a);
    if (st == JB_STATUS_OK) st = jb_cuda_conv1d(cu, a, C, T, w1d, S, 3, b1d, 1, dil, dil, b);
    if (st == JB_STATUS_OK) st = jb_cuda_relu(cu, S * T, b, b);
    if (st == JB_STATUS_OK) st = jb_cuda_conv1d(cu, b, S, T, w2d, C, 1, b2d, 1, 0, 1, a);
    if (st == JB_STATUS_OK && res_scale != 1.0f) st = jb_cuda_scale(cu, C * T, res_scale, a, a);
    if (st == JB_STATUS_OK) st = jb_cuda_add(cu, C * T, x, a, y);
    if (b) jb_cuda_arena_pop(cu, nb);
    jb_cuda_arena_pop(cu, na);
    if (st != JB_STATUS_OK) jb_cuda_record(cu, st);
}

static void op_layernorm(void *ctx,
                         int64_t rows,
                         int64_t W,
                         const float *x,
                         const struct jb_tensor *gamma,
                         const struct jb_tensor *beta,
                         float eps,
                         float *y)
{
    struct jb_cuda *cu = ctx;
    const float *g = f32_of(cu, gamma, "layernorm weight"), *b = f32_of(cu, beta, "layernorm bias");
    RUN(cu, jb_cuda_layernorm(cu, rows, W, x, g, b, eps, y));
}

static void op_softmax_rows(void *ctx, int64_t rows, int64_t n, float *x)
{
    RUN(ctx, jb_cuda_softmax_rows(ctx, rows, n, x));
}

static void op_quick_gelu(void *ctx, int64_t n, float *x)
{
    RUN(ctx, jb_cuda_quick_gelu(ctx, n, x));
}

static void op_relu(void *ctx, int64_t n, const float *x, float *y)
{
    RUN(ctx, jb_cuda_relu(ctx, n, x, y));
}

static void op_add(void *ctx, int64_t n, const float *a, const float *b, float *y)
{
    RUN(ctx, jb_cuda_add(ctx, n, a, b, y));
}

static void op_axpy(void *ctx, int64_t n, float alpha, const float *x, float *y)
{
    RUN(ctx, jb_cuda_axpy(ctx, n, alpha, x, y));
}

static void op_scale(void *ctx, int64_t n, float alpha, const float *x, float *y)
{
    RUN(ctx, jb_cuda_scale(ctx, n, alpha, x, y));
}

static void op_fill(void *ctx, int64_t n, float value, float *y)
{
    RUN(ctx, jb_cuda_fill(ctx, n, value, y));
}

static void op_embedding(void *ctx,
                         const struct jb_tensor *table,
                         const int32_t *ids,
                         int64_t n,
                         float *out)
{
    RUN(ctx, jb_cuda_embedding(ctx, table->data, table->type, table->shape[1], ids, n, out));
}

static void op_transpose(void *ctx, const float *src, int64_t rows, int64_t cols, float *dst)
{
    RUN(ctx, jb_cuda_transpose(ctx, rows, cols, src, dst));
}

static void op_copy(void *ctx,
                    int64_t rows,
                    int64_t cols,
                    const float *src,
                    int64_t lds,
                    float *dst,
                    int64_t ldd)
{
    RUN(ctx, jb_cuda_copy2d(ctx, rows, cols, src, lds, dst, ldd));
}

static void op_vq_argmin(void *ctx,
                         const float *x,
                         int64_t T,
                         const struct jb_tensor *codebook,
                         int32_t *codes,
                         float *scratch)
{
    struct jb_cuda *cu = ctx;
    const float *kb    = f32_of(cu, codebook, "codebook");
    (void)scratch;
    RUN(cu, jb_cuda_vq_argmin(cu, x, codebook->shape[1], T, kb, codebook->shape[0], codes));
}

static struct jb_cuda_attn attn_of(const struct jb_attn_desc *a, const struct jb_kv_cache *c, int N)
{
    return (struct jb_cuda_attn){ .func  = c->func,
                                  .B     = a->block_ctx,
                                  .rows  = c->rows,
                                  .cap   = c->cap,
                                  .N     = N,
                                  .H     = a->heads,
                                  .hd    = a->head_dim,
                                  .scale = a->scale,
                                  .type  = c->type,
                                  .k     = c->k,
                                  .v     = c->v };
}

static void op_kv_append(void *ctx,
                         const struct jb_attn_desc *a,
                         struct jb_kv_cache *c,
                         int N,
                         int C,
                         int64_t S,
                         int r0,
                         int r1,
                         const float *k,
                         const float *v,
                         int64_t ld)
{
    const struct jb_cuda_attn g = attn_of(a, c, N);
    RUN(ctx, jb_cuda_kv_append(ctx, &g, C, S, NULL, r0, r1, k, v, ld));
}

static void op_attention(void *ctx,
                         const struct jb_attn_desc *a,
                         const struct jb_kv_cache *c,
                         int N,
                         int C,
                         int64_t S,
                         int r0,
                         int r1,
                         const float *q,
                         int64_t ldq,
                         float *out,
                         int64_t ldo)
{
    const struct jb_cuda_attn g = attn_of(a, c, N);
    RUN(ctx, jb_cuda_attention(ctx, &g, C, S, NULL, r0, r1, q, ldq, out, ldo));
}

/* The draw's parameters as the CUDA kernel takes them (shared by sample and sample_at). */
static struct jb_cuda_sample_params sample_params_of(const struct jb_sample_desc *sp)
{
    return (struct jb_cuda_sample_params){ .temp            = sp->temp,
                                           .top_k           = sp->top_k,
                                           .top_p           = sp->top_p,
                                           .seed            = sp->seed,
                                           .first_candidate = (uint64_t)sp->first_candidate };
}

static void op_sample(void *ctx,
                      const struct jb_sample_desc *sp,
                      int N,
                      int64_t V,
                      float *logits,
                      int64_t ldl,
                      int64_t t,
                      int32_t *tokens)
{
    const struct jb_cuda_sample_params p = sample_params_of(sp);
    RUN(ctx, jb_cuda_sample(ctx, &p, N, (int)V, logits, ldl, NULL, t, tokens, NULL, 0));
}

static void op_kv_append_at(void *ctx,
                            const struct jb_attn_desc *a,
                            struct jb_kv_cache *c,
                            int N,
                            const int32_t *pos,
                            const float *k,
                            const float *v,
                            int64_t ld)
{
    const struct jb_cuda_attn g = attn_of(a, c, N);
    RUN(ctx, jb_cuda_kv_append(ctx, &g, 1, 0, pos, 0, 1, k, v, ld));
}

static void op_attention_at(void *ctx,
                            const struct jb_attn_desc *a,
                            const struct jb_kv_cache *c,
                            int N,
                            const int32_t *pos,
                            const float *q,
                            int64_t ldq,
                            float *out,
                            int64_t ldo)
{
    const struct jb_cuda_attn g = attn_of(a, c, N);
    RUN(ctx, jb_cuda_attention(ctx, &g, 1, 0, pos, 0, 1, q, ldq, out, ldo));
}

static void op_sample_at(void *ctx,
                         const struct jb_sample_desc *sp,
                         int N,
                         int64_t V,
                         float *logits,
                         int64_t ldl,
                         const int32_t *pos,
                         int32_t *tokens)
{
    const struct jb_cuda_sample_params p = sample_params_of(sp);
    RUN(ctx, jb_cuda_sample(ctx, &p, N, (int)V, logits, ldl, pos, 0, tokens, NULL, 0));
}

static void op_add_i32(void *ctx, int64_t n, int32_t delta, int32_t *x)
{
    RUN(ctx, jb_cuda_add_i32(ctx, n, delta, x));
}

static void op_store_i32_at(void *ctx,
                            int64_t n,
                            const int32_t *src,
                            const int32_t *pos,
                            int64_t ld,
                            int32_t *dst)
{
    RUN(ctx, jb_cuda_store_i32_at(ctx, n, src, pos, ld, dst));
}

/* ---- graphs: a decode step recorded once and replayed per token ----------------------------- */

static enum jb_status cuda_graph_begin(void *ctx)
{
    enum jb_status st = jb_cuda_status(ctx);
    return st != JB_STATUS_OK ? st : jb_cuda_graph_begin(ctx);
}

/* NULL with the status still OK: the step cannot be recorded (jb_last_error says why) but the
 * device is fine, and the caller runs the ops directly; any other failure is the device's. */
static void *cuda_graph_end(void *ctx)
{
    struct jb_cuda_graph *g = NULL;
    const enum jb_status st = jb_cuda_graph_end(ctx, &g);
    if (st != JB_STATUS_OK && st != JB_STATUS_ERR_UNSUPPORTED) jb_cuda_record(ctx, st);
    return g;
}

static void cuda_graph_launch(void *ctx, void *graph)
{
    RUN(ctx, jb_cuda_graph_launch(ctx, graph));
}

static void cuda_graph_free(void *ctx, void *graph)
{
    (void)ctx;
    jb_cuda_graph_free(graph);
}

static const struct jb_backend_i cuda_iface = {
    .name         = "cuda",
    .host_memory  = false,
    .free         = cuda_free_ctx,
    .supports_op  = NULL, /* every slot below */
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free  = cuda_buffer_free,
    .set_tensor   = cuda_set_tensor,
    .get_tensor   = cuda_get_tensor,
    .synchronize  = cuda_synchronize,
    .status       = cuda_status,
    .memory_info  = cuda_memory_info,
    .graph_begin  = cuda_graph_begin,
    .graph_end    = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_free   = cuda_graph_free,
    .ops          = {
#define JB_OP(ID, name, params, args) .name = op_##name,
#include "backend/ops.def"
#undef JB_OP
    },
};

struct jb_backend *jb_backend_cuda_init(int device, int n_threads)
{
    struct jb_cuda *cu = NULL;
    if (jb_cuda_open(device, &cu) != JB_STATUS_OK) return NULL;
    struct jb_backend *be = calloc(1, sizeof *be);
    if (!be || jb_cuda_reserve(cu, JB_CUDA_ARENA_INIT) != JB_STATUS_OK) {
        if (!be) jb_fail(JB_STATUS_ERR_NOMEM, "cuda backend: out of host memory");
        free(be);
        jb_cuda_close(cu);
        return NULL;
    }
    be->iface     = &cuda_iface;
    be->ctx       = cu;
    be->n_threads = n_threads;
    be->cpu       = NULL; /* device memory: no host fallback */
    return be;
}
