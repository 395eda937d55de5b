/*
 * tests/unit/test_backend_ops.c - every op of the op table on every compiled backend against the
 * CPU backend (in the spirit of ggml's test-backend-ops).
 *
 * Each case builds its inputs from a fixed seed, uploads them to the backend under test with
 * jb_backend_set (weights through a jb_weights object placed on the backend, as models do), runs
 * the op, reads the outputs back with jb_backend_get and compares them with the same case on the
 * CPU backend. A new backend is tested by nothing more than being compiled in: the list is
 * jb_backends_available() plus the test-only "check". The test fails if an op of the table has
 * no case, so a new op cannot go untested.
 *
 * It also proves that the check backend guards its memory: reading one of its buffers outside
 * an op kills a child process with SIGSEGV.
 */
#include "backend/ops.h"
#include "core/fp16.h"
#include "core/tensor.h"
#include "test_common.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL 1e-5 /* relative L2 error against the CPU backend */

/* ---- a case's environment on one backend ------------------------------------------------- */

#define MAX_BUFS 128
struct env {
    struct jb_backend *be;
    struct tc_weights *src; /* host tensors */
    struct jb_weights *w;   /* placed on be */
    void *bufs[MAX_BUFS];
    int n_bufs;
    uint64_t rng;
};

static void env_init(struct env *e, struct jb_backend *be)
{
    memset(e, 0, sizeof *e);
    e->be  = be;
    e->src = tc_weights_new(1234);
    e->rng = 42;
}

/* weights are added to e->src first; then env_weights places them all on the backend */
static struct jb_tensor *weight(struct env *e,
                                enum jb_dtype type,
                                int n_dims,
                                const int64_t *shape,
                                const char *name)
{
    return tc_weights_add(e->src, type, n_dims, shape, 1.0f, "%s", name);
}

static const struct jb_tensor *placed(struct env *e,
                                      const char *name,
                                      int n_dims,
                                      const int64_t *shape)
{
    if (!e->w) {
        struct jb_weights_source s = tc_weights_source(e->src);
        e->w                       = jb_weights_init(&s);
        jb_weights_set_backend(e->w, e->be);
    }
    return jb_weights_get(e->w, JB_WANT_ANY, n_dims, shape, "%s", name);
}

static void *dev(struct env *e, const void *host, size_t nbytes)
{
    void *p = jb_backend_alloc(e->be, nbytes ? nbytes : 4);
    JB_ASSERT(p && e->n_bufs < MAX_BUFS);
    e->bufs[e->n_bufs++] = p;
    if (host) jb_backend_set(e->be, p, host, nbytes);
    return p;
}

/* a random input of n floats on the backend (the host copy in *host if wanted) */
static float *rnd_dev(struct env *e, size_t n, float scale)
{
    float *h = malloc(n * sizeof *h);
    tc_rng_fill(&e->rng, h, n, scale);
    float *d = dev(e, h, n * sizeof *h);
    free(h);
    return d;
}

static void env_free(struct env *e)
{
    for (int i = 0; i < e->n_bufs; i++)
        jb_backend_free_buffer(e->be, e->bufs[i]);
    jb_weights_free(e->w);
    tc_weights_free(e->src);
}

/* ---- results ------------------------------------------------------------------------------- */

struct result {
    float *f;
    size_t nf;
    int32_t *i;
    size_t ni;
};

static void get_f(struct env *e, struct result *r, const float *d, size_t n)
{
    r->f = realloc(r->f, (r->nf + n) * sizeof *r->f);
    jb_backend_get(e->be, r->f + r->nf, d, n * sizeof *d);
    r->nf += n;
}

static void get_i(struct env *e, struct result *r, const int32_t *d, size_t n)
{
    r->i = realloc(r->i, (r->ni + n) * sizeof *r->i);
    jb_backend_get(e->be, r->i + r->ni, d, n * sizeof *d);
    r->ni += n;
}

/* ---- the cases: one function per op, run on a backend, outputs into r ---------------------- */

#define SHAPE(...)                                                                                 \
    (int)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)), (int64_t[])                       \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }

static void case_matmul(struct env *e, struct result *r)
{
    const int64_t M = 5, N = 70, K = 48;
    const enum jb_dtype types[3] = { JB_DTYPE_F32, JB_DTYPE_F16, JB_DTYPE_BF16 };
    weight(e, JB_DTYPE_F32, SHAPE(N), "b");
    for (int t = 0; t < 3; t++) {
        char nk[16], nn[16];
        snprintf(nk, sizeof nk, "wkn%d", t);
        snprintf(nn, sizeof nn, "wnk%d", t);
        weight(e, types[t], SHAPE(K, N), nk);
        weight(e, types[t], SHAPE(N, K), nn);
    }
    const float *x            = rnd_dev(e, (size_t)(M * K), 1.0f);
    float *y                  = rnd_dev(e, (size_t)(M * N), 1.0f);
    const struct jb_tensor *b = placed(e, "b", SHAPE(N));
    for (int t = 0; t < 3; t++) {
        char nk[16], nn[16];
        snprintf(nk, sizeof nk, "wkn%d", t);
        snprintf(nn, sizeof nn, "wnk%d", t);
        jb_matmul(e->be, M, N, K, x, K, placed(e, nk, SHAPE(K, N)), false, b, y, N, t == 1);
        get_f(e, r, y, (size_t)(M * N));
        jb_matmul(e->be, M, N, K, x, K, placed(e, nn, SHAPE(N, K)), true, NULL, y, N, false);
        get_f(e, r, y, (size_t)(M * N));
    }
}

static void case_conv1d(struct env *e, struct result *r)
{
    const int64_t Cin = 6, Cout = 5, T = 50;
    weight(e, JB_DTYPE_F32, SHAPE(Cout, Cin, 3), "w3");
    weight(e, JB_DTYPE_F32, SHAPE(Cout, Cin, 4), "w4");
    weight(e, JB_DTYPE_F32, SHAPE(Cout), "b");
    const float *x = rnd_dev(e, (size_t)(Cin * T), 1.0f);
    float *y       = dev(e, NULL, (size_t)(Cout * T) * sizeof(float));
    float *sc      = dev(e, NULL, jb_conv1d_scratch(Cin, Cout, T, 4, 2, 1, 1) * sizeof(float) + 64);
    const struct jb_tensor *b = placed(e, "b", SHAPE(Cout));
    jb_conv1d(e->be, x, T, placed(e, "w3", SHAPE(Cout, Cin, 3)), b, 1, 3, 3, y, sc);
    get_f(e, r, y, (size_t)(Cout * jb_conv1d_out_len(T, 3, 1, 3, 3)));
    jb_conv1d(e->be, x, T, placed(e, "w4", SHAPE(Cout, Cin, 4)), NULL, 2, 1, 1, y, sc);
    get_f(e, r, y, (size_t)(Cout * jb_conv1d_out_len(T, 4, 2, 1, 1)));
}

static void case_conv_transpose1d(struct env *e, struct result *r)
{
    const int64_t Cin = 6, Cout = 5, T = 40;
    weight(e, JB_DTYPE_F32, SHAPE(Cin, Cout, 4), "w");
    weight(e, JB_DTYPE_F32, SHAPE(Cout), "b");
    const float *x  = rnd_dev(e, (size_t)(Cin * T), 1.0f);
    const int64_t n = jb_conv_transpose1d_out_len(T, 4, 2, 1);
    float *y        = dev(e, NULL, (size_t)(Cout * n) * sizeof(float));
    float *sc =
      dev(e, NULL, jb_conv_transpose1d_scratch(Cin, Cout, T, 4, 2, 1) * sizeof(float) + 64);
    jb_conv_transpose1d(
      e->be, x, T, placed(e, "w", SHAPE(Cin, Cout, 4)), placed(e, "b", SHAPE(Cout)), 2, 1, y, sc);
    get_f(e, r, y, (size_t)(Cout * n));
}

static void case_resblock(struct env *e, struct result *r)
{
    /* a narrow block (tiled path; a chunk at column 7) and a wide one (whole-sequence path),
     * ρ = 1 and ρ ≠ 1 */
    const int64_t Cs[2] = { 8, 300 }, Ss[2] = { 16, 240 }, T = 150;
    for (int k = 0; k < 2; k++) {
        char n1[8], n2[8], nb1[8], nb2[8];
        snprintf(n1, sizeof n1, "w1_%d", k), snprintf(n2, sizeof n2, "w2_%d", k);
        snprintf(nb1, sizeof nb1, "b1_%d", k), snprintf(nb2, sizeof nb2, "b2_%d", k);
        weight(e, JB_DTYPE_F32, SHAPE(Ss[k], Cs[k], 3), n1);
        weight(e, JB_DTYPE_F32, SHAPE(Cs[k], Ss[k], 1), n2);
        weight(e, JB_DTYPE_F32, SHAPE(Ss[k]), nb1);
        weight(e, JB_DTYPE_F32, SHAPE(Cs[k]), nb2);
    }
    for (int k = 0; k < 2; k++) {
        char n1[8], n2[8], nb1[8], nb2[8];
        snprintf(n1, sizeof n1, "w1_%d", k), snprintf(n2, sizeof n2, "w2_%d", k);
        snprintf(nb1, sizeof nb1, "b1_%d", k), snprintf(nb2, sizeof nb2, "b2_%d", k);
        const int64_t C = Cs[k], S = Ss[k];
        const struct jb_tensor *w1 = placed(e, n1, SHAPE(S, C, 3));
        const float *x             = rnd_dev(e, (size_t)(C * T), 1.0f);
        float *y                   = dev(e, NULL, (size_t)(C * T) * sizeof(float));
        float *wk = dev(e, NULL, jb_resblock_work(e->be, w1, T) * sizeof(float) + 64);
        jb_resblock(e->be,
                    x,
                    y,
                    T,
                    k ? 0 : 7,
                    w1,
                    placed(e, nb1, SHAPE(S)),
                    k ? 9 : 27, /* narrow d 27: the CPU's Winograd pairs on AVX-512 */
                    placed(e, n2, SHAPE(C, S, 1)),
                    placed(e, nb2, SHAPE(C)),
                    k ? 0.5f : 1.0f,
                    wk);
        get_f(e, r, y, (size_t)(C * T));
    }
}

static void case_layernorm(struct env *e, struct result *r)
{
    const int64_t rows = 7, W = 333;
    weight(e, JB_DTYPE_F32, SHAPE(W), "g");
    weight(e, JB_DTYPE_F32, SHAPE(W), "b");
    float *x = rnd_dev(e, (size_t)(rows * W), 3.0f);
    float *y = dev(e, NULL, (size_t)(rows * W) * sizeof(float));
    jb_layernorm(e->be, rows, W, x, placed(e, "g", SHAPE(W)), placed(e, "b", SHAPE(W)), 1e-5f, y);
    get_f(e, r, y, (size_t)(rows * W));
    jb_layernorm(e->be, rows, W, x, placed(e, "g", SHAPE(W)), placed(e, "b", SHAPE(W)), 1e-5f, x);
    get_f(e, r, x, (size_t)(rows * W));
}

static void case_softmax(struct env *e, struct result *r)
{
    float *x = rnd_dev(e, 5 * 300, 8.0f);
    jb_softmax_rows(e->be, 5, 300, x);
    get_f(e, r, x, 5 * 300);
}

static void case_quick_gelu(struct env *e, struct result *r)
{
    float *x = rnd_dev(e, 1000, 6.0f);
    jb_quick_gelu(e->be, 1000, x);
    get_f(e, r, x, 1000);
}

static void case_relu(struct env *e, struct result *r)
{
    float *x = rnd_dev(e, 1000, 1.0f), *y = dev(e, NULL, 4000);
    jb_relu(e->be, 1000, x, y);
    get_f(e, r, y, 1000);
    jb_relu(e->be, 1000, x, x);
    get_f(e, r, x, 1000);
}

static void case_add(struct env *e, struct result *r)
{
    float *a = rnd_dev(e, 1000, 1.0f), *b = rnd_dev(e, 1000, 1.0f), *y = dev(e, NULL, 4000);
    jb_add(e->be, 1000, a, b, y);
    get_f(e, r, y, 1000);
    jb_add(e->be, 1000, a, b, a);
    get_f(e, r, a, 1000);
}

static void case_axpy(struct env *e, struct result *r)
{
    float *x = rnd_dev(e, 1000, 1.0f), *y = rnd_dev(e, 1000, 1.0f);
    jb_axpy(e->be, 1000, 0.3f, x, y);
    get_f(e, r, y, 1000);
}

static void case_scale(struct env *e, struct result *r)
{
    float *x = rnd_dev(e, 1000, 1.0f), *y = dev(e, NULL, 4000);
    jb_scale(e->be, 1000, -1.5f, x, y);
    get_f(e, r, y, 1000);
}

static void case_fill(struct env *e, struct result *r)
{
    float *y = rnd_dev(e, 1000, 1.0f);
    jb_fill(e->be, 999, 2.5f, y);
    get_f(e, r, y, 1000);
}

static void case_embedding(struct env *e, struct result *r)
{
    const int64_t V = 37, W = 129;
    const enum jb_dtype types[3] = { JB_DTYPE_F32, JB_DTYPE_F16, JB_DTYPE_BF16 };
    const char *names[3]         = { "t32", "t16", "tb16" };
    for (int t = 0; t < 3; t++)
        weight(e, types[t], SHAPE(V, W), names[t]);
    const int32_t ids[9] = { 0, 36, 5, 5, 17, 1, 35, 0, 20 };
    int32_t *di          = dev(e, ids, sizeof ids);
    float *y             = dev(e, NULL, (size_t)(9 * W) * sizeof(float));
    for (int t = 0; t < 3; t++) {
        jb_embedding(e->be, placed(e, names[t], SHAPE(V, W)), di, 9, y);
        get_f(e, r, y, (size_t)(9 * W));
    }
}

static void case_transpose(struct env *e, struct result *r)
{
    float *x = rnd_dev(e, 37 * 70, 1.0f), *y = dev(e, NULL, 37 * 70 * 4);
    jb_transpose(e->be, x, 37, 70, y);
    get_f(e, r, y, 37 * 70);
}

static void case_copy(struct env *e, struct result *r)
{
    float *x = rnd_dev(e, 20 * 50, 1.0f), *y = rnd_dev(e, 20 * 30, 1.0f);
    jb_copy(e->be, 20, 17, x + 3, 50, y, 30);
    get_f(e, r, y, 20 * 30);
}

static void case_vq_argmin(struct env *e, struct result *r)
{
    const int64_t bins = 200, emb = 16, T = 90;
    weight(e, JB_DTYPE_F32, SHAPE(bins, emb), "k");
    float *x   = rnd_dev(e, (size_t)(emb * T), 1.0f);
    int32_t *c = dev(e, NULL, (size_t)T * sizeof(int32_t));
    float *sc  = dev(e, NULL, jb_vq_argmin_scratch(bins, emb, T) * sizeof(float) + 64);
    jb_vq_argmin(e->be, x, T, placed(e, "k", SHAPE(bins, emb)), c, sc);
    get_i(e, r, c, (size_t)T);
}

/* Attention of every kind over a window of T positions, fed as the priors do: a prefill chunk
 * (in block-aligned segments for the ring kinds), then single-token decode steps; fp32 and fp16
 * caches. Also covers kv_append (the attention reads what it stored). */
static void attention_kind(struct env *e,
                           struct result *r,
                           int func,
                           enum jb_dtype type,
                           bool at,
                           int hd)
{
    const int N = 2, H = 2, ns = H * hd, T = 24, B = 4, enc_len = 6, P = 9;
    const struct jb_attn_desc a = { H, hd, ns, T, B, 0.35f };
    struct jb_kv_cache c        = { .func = func, .type = type };
    c.cap                       = jb_kv_capacity(func, T, B, enc_len, P);
    c.rows                      = (T + B - 1) / B;
    const size_t es             = jb_dtype_size(type);
    c.k                         = dev(e, NULL, (size_t)N * (size_t)c.cap * ns * es);
    c.v                         = dev(e, NULL, (size_t)N * (size_t)c.cap * ns * es);
    const int64_t ldq           = func == 6 ? ns : 3 * ns;
    float *qkv                  = rnd_dev(e, (size_t)N * T * 3 * ns, 1.0f);
    float *att                  = dev(e, NULL, (size_t)N * T * ns * sizeof(float));
    if (func == 6) {
        float *kv = rnd_dev(e, (size_t)N * enc_len * 2 * ns, 1.0f);
        jb_kv_append(e->be, &a, &c, N, enc_len, 0, 0, enc_len, kv, kv + ns, 2 * ns);
    }
    /* prefill of the first 10 positions, then one at a time (at: the position in backend
     * memory, advanced by add_i32 as the priors' decode step does) */
    const int C0     = 10;
    int32_t pos_h[2] = { C0, C0 };
    int32_t *pos     = at ? dev(e, pos_h, sizeof pos_h) : NULL;
    for (int64_t S = 0; S < T;) {
        const int C = S == 0 ? C0 : 1;
        float *q    = qkv + S * 3 * ns; /* rows n·C + r of this chunk: a fresh slice per chunk */
        if (at && S > 0) {
            if (func != 6) jb_kv_append_at(e->be, &a, &c, N, pos, q + ns, q + 2 * ns, ldq);
            jb_attention_at(e->be, &a, &c, N, pos, q, ldq, att, ns);
            jb_add_i32(e->be, N, 1, pos);
            get_f(e, r, att, (size_t)N * ns);
            S++;
            continue;
        }
        for (int r0 = 0; r0 < C;) {
            int r1 = C;
            if (func == 1 || func == 3) {
                r1 = r0 + (int)(B - (S + r0) % B);
                if (r1 > C) r1 = C;
            }
            if (func != 6) jb_kv_append(e->be, &a, &c, N, C, S, r0, r1, q + ns, q + 2 * ns, ldq);
            jb_attention(e->be, &a, &c, N, C, S, r0, r1, q, ldq, att, ns);
            r0 = r1;
        }
        get_f(e, r, att, (size_t)N * C * ns);
        S += C;
    }
    if (at) get_i(e, r, pos, 2); /* T after T − C0 steps */
}

/* The raw cache bytes of the dense kind, whose layout every backend shares (ops.h). The block
 * kinds' key layouts are the backend's own: attention_kind checks them through what attention
 * reads back. */
static void case_kv_append(struct env *e, struct result *r)
{
    const int N = 2, H = 2, hd = 8, ns = H * hd, T = 16, B = 4;
    const struct jb_attn_desc a  = { H, hd, ns, T, B, 0.35f };
    const enum jb_dtype types[2] = { JB_DTYPE_F32, JB_DTYPE_F16 };
    for (int t = 0; t < 2; t++) {
        struct jb_kv_cache c = { .func = 0,
                                 .type = types[t],
                                 .cap  = jb_kv_capacity(0, T, B, 0, 0) };
        c.rows               = T / B;
        const size_t n       = (size_t)N * (size_t)c.cap * ns;
        c.k                  = dev(e, NULL, n * jb_dtype_size(c.type));
        c.v                  = dev(e, NULL, n * jb_dtype_size(c.type));
        float *kv            = rnd_dev(e, (size_t)N * T * 2 * ns, 1.0f);
        jb_kv_append(e->be, &a, &c, N, T, 0, 0, T, kv, kv + ns, 2 * ns);
        /* the raw cache bytes, as int32 words */
        get_i(e, r, c.k, n * jb_dtype_size(c.type) / 4);
        get_i(e, r, c.v, n * jb_dtype_size(c.type) / 4);
    }
}

static void case_attention(struct env *e, struct result *r)
{
    const int funcs[6] = { 0, 1, 2, 3, 6, 7 };
    for (int f = 0; f < 6; f++) {
        attention_kind(e, r, funcs[f], JB_DTYPE_F32, false, 8);
        attention_kind(e, r, funcs[f], JB_DTYPE_F16, false, 8);
    }
    /* heads wider than the CPU's append chunk (64 components) and its 16-lane dot products */
    for (int f = 0; f < 3; f++) {
        attention_kind(e, r, funcs[f], JB_DTYPE_F32, false, 72);
        attention_kind(e, r, funcs[f], JB_DTYPE_F16, false, 72);
    }
}

/* kv_append_at, attention_at and add_i32: the decode steps of case_attention at a position in
 * backend memory (check_reference: bitwise what the host-position ops give). */
static void case_decode_at(struct env *e, struct result *r)
{
    const int funcs[6] = { 0, 1, 2, 3, 6, 7 };
    for (int f = 0; f < 6; f++) {
        attention_kind(e, r, funcs[f], JB_DTYPE_F32, true, 8);
        attention_kind(e, r, funcs[f], JB_DTYPE_F16, true, 8);
    }
    for (int f = 0; f < 3; f++) {
        attention_kind(e, r, funcs[f], JB_DTYPE_F32, true, 72);
        attention_kind(e, r, funcs[f], JB_DTYPE_F16, true, 72);
    }
}

static void sample_cases(struct env *e, struct result *r, bool at)
{
    const int N                        = 3;
    const int64_t V                    = 300;
    const struct jb_sample_desc sds[4] = {
        { 1.0f, 0, 0.0f, 5, 0 },  /* plain */
        { 0.7f, 20, 0.0f, 6, 2 }, /* top-k, a batch slice */
        { 0.9f, 0, 0.8f, 7, 0 },  /* top-p */
        { 1.0f, 1, 0.0f, 8, 0 },  /* greedy */
    };
    float *l     = dev(e, NULL, (size_t)(N * V) * sizeof(float));
    int32_t *tk  = dev(e, NULL, N * sizeof(int32_t));
    float *h     = malloc((size_t)(N * V) * sizeof *h);
    int32_t *pos = dev(e, (int32_t[1]){ 0 }, sizeof(int32_t));
    for (int k = 0; k < 4; k++)
        for (int64_t t = 0; t < 20; t++) {
            tc_rng_fill(&e->rng, h, (size_t)(N * V), 4.0f);
            jb_backend_set(e->be, l, h, (size_t)(N * V) * sizeof *h);
            if (at) {
                jb_sample_at(e->be, &sds[k], N, V, l, V, pos, tk);
                jb_add_i32(e->be, 1, t == 19 ? -19 : 1, pos);
            } else {
                jb_sample(e->be, &sds[k], N, V, l, V, t, tk);
            }
            get_i(e, r, tk, N);
        }
    free(h);
}

static void case_sample(struct env *e, struct result *r)
{
    sample_cases(e, r, false);
}

static void case_sample_at(struct env *e, struct result *r)
{
    sample_cases(e, r, true);
}

/* store_i32_at: rows of ids stored at positions read from backend memory, the position advanced
 * by add_i32 between stores as the priors' decode step does (rows 0..3 and 6; 4, 5 untouched). */
static void case_store_i32_at(struct env *e, struct result *r)
{
    enum { N = 3, ROWS = 7 };
    int32_t init[ROWS * N], ids[N];
    for (int i = 0; i < ROWS * N; i++)
        init[i] = -1 - i;
    int32_t *dst = dev(e, init, sizeof init);
    int32_t *src = dev(e, NULL, sizeof ids);
    int32_t *pos = dev(e, (int32_t[N]){ 0, 0, 0 }, N * sizeof(int32_t));
    for (int s = 0; s < 5; s++) {
        for (int n = 0; n < N; n++)
            ids[n] = 100 * s + n;
        jb_backend_set(e->be, src, ids, sizeof ids);
        jb_store_i32_at(e->be, N, src, pos, N, dst);
        jb_add_i32(e->be, N, s == 3 ? 3 : 1, pos);
    }
    get_i(e, r, dst, ROWS * N);
}

typedef void (*case_fn)(struct env *e, struct result *r);
static const case_fn cases[JB_OP_COUNT] = {
    [JB_OP_MATMUL]           = case_matmul,
    [JB_OP_CONV1D]           = case_conv1d,
    [JB_OP_CONV_TRANSPOSE1D] = case_conv_transpose1d,
    [JB_OP_RESBLOCK]         = case_resblock,
    [JB_OP_LAYERNORM]        = case_layernorm,
    [JB_OP_SOFTMAX]          = case_softmax,
    [JB_OP_QUICK_GELU]       = case_quick_gelu,
    [JB_OP_RELU]             = case_relu,
    [JB_OP_ADD]              = case_add,
    [JB_OP_AXPY]             = case_axpy,
    [JB_OP_SCALE]            = case_scale,
    [JB_OP_FILL]             = case_fill,
    [JB_OP_EMBEDDING]        = case_embedding,
    [JB_OP_TRANSPOSE]        = case_transpose,
    [JB_OP_COPY]             = case_copy,
    [JB_OP_VQ_ARGMIN]        = case_vq_argmin,
    [JB_OP_KV_APPEND]        = case_kv_append,
    [JB_OP_ATTENTION]        = case_attention,
    [JB_OP_SAMPLE]           = case_sample,
    [JB_OP_KV_APPEND_AT]     = case_decode_at,
    [JB_OP_ATTENTION_AT]     = case_decode_at,
    [JB_OP_SAMPLE_AT]        = case_sample_at,
    [JB_OP_ADD_I32]          = case_decode_at,
    [JB_OP_STORE_I32_AT]     = case_store_i32_at,
};

static void run_case(struct jb_backend *be, enum jb_op op, struct result *r)
{
    struct env e;
    env_init(&e, be);
    memset(r, 0, sizeof *r);
    cases[op](&e, r);
    jb_backend_synchronize(be);
    env_free(&e);
}

static double rel_l2(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        if (isnan(a[i]) != isnan(ref[i])) return INFINITY;
        if (isnan(a[i])) continue;
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void compare_backend(const char *name, struct jb_backend *cpu)
{
    if (strcmp(name, "cuda") == 0 && strcmp(jb_backend_default_name(), "cpu") == 0) {
        /* compiled in, but this machine has no device: the gpu-labelled tests say so too */
        printf("skip   cuda: no CUDA device visible, its ops were not run\n");
        return;
    }
    struct jb_backend *be = jb_backend_init(name, 2);
    tc_check(be != NULL, "backend %s initialises %s", name, be ? "" : jb_last_error());
    if (!be) return;
    for (int op = 0; op < JB_OP_COUNT; op++) {
        struct result want, got;
        run_case(cpu, (enum jb_op)op, &want);
        run_case(be, (enum jb_op)op, &got);
        const double e  = got.nf == want.nf ? rel_l2(got.f, want.f, want.nf) : INFINITY;
        const bool ints = got.ni == want.ni &&
                          (want.ni == 0 || memcmp(got.i, want.i, want.ni * sizeof *got.i) == 0);
        tc_check(e <= TOL && ints && want.nf + want.ni > 0,
                 "%-6s %-17s %s (%zu floats: rel err %.2e; %zu ints %s)",
                 name,
                 jb_op_name((enum jb_op)op),
                 jb_backend_supports(be, (enum jb_op)op) ? "native" : "cpu fallback",
                 want.nf,
                 e,
                 want.ni,
                 ints ? "identical" : "DIFFER");
        free(want.f), free(want.i), free(got.f), free(got.i);
    }
    jb_backend_free(be);
}

/* The CPU reference itself: the cases compute what they claim (spot checks against plain C). */
static void check_reference(struct jb_backend *cpu)
{
    struct result r;
    run_case(cpu, JB_OP_FILL, &r);
    bool ok = r.nf == 1000 && r.f[0] == 2.5f && r.f[998] == 2.5f && r.f[999] != 2.5f;
    tc_check(ok, "cpu: fill writes exactly n values");
    free(r.f), free(r.i);
    run_case(cpu, JB_OP_SOFTMAX, &r);
    double worst = 0;
    for (int row = 0; row < 5; row++) {
        double s = 0;
        for (int i = 0; i < 300; i++)
            s += r.f[row * 300 + i];
        worst = fmax(worst, fabs(s - 1.0));
    }
    tc_check(worst < 1e-5, "cpu: softmax rows sum to 1 (worst %.1e)", worst);
    free(r.f), free(r.i);
    run_case(cpu, JB_OP_SAMPLE, &r);
    bool in_range = r.ni == 4 * 20 * 3, differ = false;
    for (size_t i = 0; i < r.ni; i++)
        in_range = in_range && r.i[i] >= 0 && r.i[i] < 300;
    for (size_t i = 1; i < 60; i++)
        differ = differ || r.i[i] != r.i[0];
    tc_check(in_range && differ, "cpu: sampled tokens in range and not constant");
    /* the device-position variants are their host-position ops: the same draws, bitwise */
    struct result ra;
    run_case(cpu, JB_OP_SAMPLE_AT, &ra);
    tc_check(ra.ni == r.ni && memcmp(ra.i, r.i, r.ni * sizeof *r.i) == 0,
             "cpu: sample_at draws what sample draws at the same positions");
    free(r.f), free(r.i), free(ra.f), free(ra.i);
    run_case(cpu, JB_OP_ATTENTION, &r);
    run_case(cpu, JB_OP_ATTENTION_AT, &ra);
    bool pos_ok = ra.ni == 2 * 18; /* 18 kinds, dtypes and widths, 2 positions each */
    for (size_t i = 0; pos_ok && i < ra.ni; i++)
        pos_ok = ra.i[i] == 24; /* T: every step advanced the position once */
    tc_check(ra.nf == r.nf && memcmp(ra.f, r.f, r.nf * sizeof *r.f) == 0 && pos_ok,
             "cpu: kv_append_at/attention_at equal kv_append/attention bitwise (%zu floats), "
             "add_i32 advanced the position to T",
             r.nf);
    free(r.f), free(r.i), free(ra.f), free(ra.i);
    run_case(cpu, JB_OP_STORE_I32_AT, &r);
    bool stored = r.ni == 7 * 3;
    for (int row = 0; stored && row < 7; row++)
        for (int n = 0; n < 3; n++) {
            const int s    = row < 4 ? row : row == 6 ? 4 : -1; /* store s landed in this row */
            const int want = s >= 0 ? 100 * s + n : -1 - (row * 3 + n);
            stored         = stored && r.i[row * 3 + n] == want;
        }
    tc_check(stored, "cpu: store_i32_at writes each row at the position, nothing else");
    free(r.f), free(r.i);
}

/* Touching a check buffer outside an op must fault (in a child, so the test survives). */
static void check_guard(void)
{
    struct jb_backend *be = jb_backend_init("check", 1);
    tc_check(be != NULL, "check backend initialises");
    if (!be) return;
    float *buf = jb_backend_alloc(be, 4096);
    float one = 1.0f, back = 0.0f;
    jb_backend_set(be, buf, &one, sizeof one);
    jb_backend_get(be, &back, buf, sizeof back);
    tc_check(back == 1.0f, "check: set_tensor / get_tensor round trip");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        volatile float v = buf[0]; /* must fault */
        (void)v;
        _exit(42); /* only reached when the read went through */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    /* SIGSEGV, or under AddressSanitizer its report of the SEGV (exit status 1) */
    const bool segv    = WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
    const bool through = WIFEXITED(status) && WEXITSTATUS(status) == 42;
    tc_check(pid > 0 && !through && (segv || WIFEXITED(status)),
             "check: reading a buffer outside an op faults (%s)",
             segv      ? "SIGSEGV"
             : through ? "NOT: the read went through"
                       : "sanitizer report");
    tc_check(!be->iface->host_memory && be->cpu == NULL, "check: no host memory, no CPU fallback");
    jb_backend_free_buffer(be, buf);
    jb_backend_free(be);
}

/* The CPU backend keeps the last large buffer freed and hands it to the next large allocation
 * it can hold (pages already mapped); one it cannot hold gets a new buffer. */
/* Attention of the kinds that keep a growing or ring cache (funcs 0-3), on the CPU backend,
 * against a plain double-precision evaluation of the key sets of ops.h: the cases above only
 * compare backends with each other, and the CPU's own cache layouts (row-major keys for funcs
 * 1-3, its append in chunks of 64 components) need a reference of their own. Heads of 8 and 72
 * (a partial chunk and a partial 16-lane dot product), fp32 and fp16 caches, a prefill of the
 * whole window (in block-aligned segments for the ring kinds) and then one position at a time. */
/* x as a cache of `type` holds it */
static double stored(enum jb_dtype type, float x)
{
    if (type != JB_DTYPE_F16) return x;
    float y;
    uint16_t h;
    jb_convert_from_f32(JB_DTYPE_F16, &x, &h, 1);
    jb_convert_to_f32(JB_DTYPE_F16, &h, &y, 1);
    return y;
}

static double naive_attention_err(struct jb_backend *be,
                                  int func,
                                  enum jb_dtype type,
                                  int hd,
                                  bool decode)
{
    const int N = 2, H = 2, ns = H * hd, T = 24, B = 4;
    const struct jb_attn_desc a = { H, hd, ns, T, B, 0.35f };
    struct jb_kv_cache c        = { .func = func, .type = type };
    c.cap                       = jb_kv_capacity(func, T, B, 0, 0);
    c.rows                      = (T + B - 1) / B;
    struct env e;
    env_init(&e, be);
    const size_t cache = (size_t)N * (size_t)c.cap * (size_t)ns * jb_dtype_size(type);
    c.k                = dev(&e, NULL, cache);
    c.v                = dev(&e, NULL, cache);
    /* qkv rows [N][T][3·ns] on the host; the backend gets each chunk's rows n·C + r */
    const size_t nq = (size_t)N * T * 3 * ns;
    float *qkv = malloc(nq * sizeof *qkv), *out = malloc((size_t)N * T * ns * sizeof *out);
    tc_rng_fill(&e.rng, qkv, nq, 1.0f);
    float *dq = dev(&e, NULL, nq * sizeof *qkv), *dat = dev(&e, NULL, (size_t)N * T * ns * 4);
    float *chunk = malloc(nq * sizeof *chunk), *got = malloc((size_t)N * T * ns * sizeof *got);
    for (int S = 0; S < T;) {
        const int C = decode ? 1 : T - S;
        for (int n = 0; n < N; n++)
            memcpy(chunk + (size_t)n * C * 3 * ns,
                   qkv + ((size_t)n * T + S) * 3 * ns,
                   (size_t)C * 3 * ns * sizeof *chunk);
        jb_backend_set(be, dq, chunk, (size_t)N * C * 3 * ns * sizeof *chunk);
        for (int r0 = 0; r0 < C;) {
            int r1 = C;
            if (func == 1 || func == 3) {
                r1 = r0 + (B - (S + r0) % B);
                if (r1 > C) r1 = C;
            }
            jb_kv_append(be, &a, &c, N, C, S, r0, r1, dq + ns, dq + 2 * ns, 3 * ns);
            jb_attention(be, &a, &c, N, C, S, r0, r1, dq, 3 * ns, dat, ns);
            r0 = r1;
        }
        jb_backend_get(be, got, dat, (size_t)N * C * ns * sizeof *got);
        for (int n = 0; n < N; n++)
            memcpy(out + ((size_t)n * T + S) * ns,
                   got + (size_t)n * C * ns,
                   (size_t)C * ns * sizeof *out);
        S += C;
    }
    /* the reference, over positions: keys and values rounded as the cache stores them */
    double d2 = 0, r2 = 0;
    double *sc = malloc((size_t)T * sizeof *sc), *o = malloc((size_t)hd * sizeof *o);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < T; i++)
            for (int h = 0; h < H; h++) {
                const float *q = qkv + ((size_t)n * T + i) * 3 * ns + (size_t)h * hd;
                int nk         = 0;
                int keys[24];
                for (int j = 0; j < T; j++) {
                    bool in = func == 0   ? j <= i
                              : func == 1 ? j / B == i / B && j <= i
                              : func == 2 ? j % B == i % B && j <= i
                                          : j / B == i / B - 1;
                    if (in) keys[nk++] = j;
                }
                double m = -INFINITY, sum = 0;
                for (int t = 0; t < nk; t++) {
                    const float *k = qkv + ((size_t)n * T + keys[t]) * 3 * ns + ns + (size_t)h * hd;
                    double dot     = 0;
                    for (int x = 0; x < hd; x++)
                        dot += (double)q[x] * stored(type, k[x]);
                    sc[t] = 0.35 * dot;
                    m     = sc[t] > m ? sc[t] : m;
                }
                for (int x = 0; x < hd; x++)
                    o[x] = 0;
                for (int t = 0; t < nk; t++) {
                    const double p = exp(sc[t] - m);
                    sum += p;
                    const float *v =
                      qkv + ((size_t)n * T + keys[t]) * 3 * ns + 2 * ns + (size_t)h * hd;
                    for (int x = 0; x < hd; x++)
                        o[x] += p * stored(type, v[x]);
                }
                const float *y = out + ((size_t)n * T + i) * ns + (size_t)h * hd;
                for (int x = 0; x < hd; x++) {
                    const double ref = nk > 0 ? o[x] / sum : 0.0;
                    d2 += (y[x] - ref) * (y[x] - ref);
                    r2 += ref * ref;
                }
            }
    free(qkv), free(out), free(chunk), free(got), free(sc), free(o);
    env_free(&e);
    return sqrt(d2 / (r2 > 0 ? r2 : 1));
}

static void check_attention_naive(struct jb_backend *cpu)
{
    double worst[2] = { 0, 0 };
    for (int func = 0; func < 4; func++)
        for (int t = 0; t < 2; t++)
            for (int hd = 8; hd <= 72; hd += 64)
                for (int decode = 0; decode < 2; decode++) {
                    const double err =
                      naive_attention_err(cpu, func, t ? JB_DTYPE_F16 : JB_DTYPE_F32, hd, decode);
                    if (!(err <= worst[t])) worst[t] = err;
                }
    tc_check(worst[0] <= 1e-6 && worst[1] <= 1e-6,
             "cpu: attention of funcs 0-3, heads of 8 and 72, prefill and decode, equals a "
             "double-precision reference (relerr fp32 cache %.1e, fp16 cache %.1e)",
             worst[0],
             worst[1]);
}

static void check_cpu_spare(struct jb_backend *cpu)
{
    const size_t mb = (size_t)1 << 20;
    float *a        = jb_backend_alloc(cpu, 16 * mb);
    tc_check(a != NULL, "cpu: 16 MB buffer");
    if (!a) return;
    for (size_t i = 0; i < 16 * mb / sizeof *a; i++)
        a[i] = (float)i;
    jb_backend_free_buffer(cpu, a);
    float *b = jb_backend_alloc(cpu, 8 * mb); /* fits the spare: the same memory */
    tc_check(b == a, "cpu: a freed 16 MB buffer serves the next 8 MB request");
    float *c = jb_backend_alloc(cpu, 8 * mb); /* the spare is taken: a new buffer */
    tc_check(c != NULL && c != b, "cpu: the spare serves one request at a time");
    bool ok = b && c;
    for (size_t i = 0; ok && i < 8 * mb / sizeof *b; i++) {
        b[i] = 1.0f, c[i] = 2.0f;
        ok = b[i] == 1.0f && c[i] == 2.0f;
    }
    tc_check(ok, "cpu: both buffers hold their own values");
    jb_backend_free_buffer(cpu, b);            /* b is the spare again */
    float *d = jb_backend_alloc(cpu, 64 * mb); /* larger than the spare: a new buffer */
    tc_check(d != NULL, "cpu: a request larger than the spare gets a buffer of its own");
    ok = d != NULL;
    for (size_t i = 0; ok && i < 64 * mb / sizeof *d; i += 1024) { /* every page */
        d[i] = (float)i;
        ok   = d[i] == (float)i && c[i % (8 * mb / sizeof *c)] == 2.0f;
    }
    tc_check(ok, "cpu: the new buffer is writable throughout, the live one untouched");
    jb_backend_free_buffer(cpu, c);
    jb_backend_free_buffer(cpu, d);
}

/* The CPU backend's own copies of large weights (weights_copy_min, where THP is on): a large
 * tensor of the source comes back as a copy with the same values, small and converted ones in
 * place; offload gives the copies' memory back and reload brings the same values again. Run with
 * the backend's own setting, then with 0 (a kernel without THP): everything in place. */
static void check_weights_copies(struct jb_backend *cpu)
{
    struct tc_weights *src = tc_weights_new(7);
    const int64_t big[2] = { 1024, 768 }, small[2] = { 64, 64 }; /* 1.5 MB and 8 KB in fp16 */
    struct jb_tensor *a         = tc_weights_add(src, JB_DTYPE_F16, 2, big, 1.0f, "a");
    struct jb_tensor *b         = tc_weights_add(src, JB_DTYPE_F16, 2, big, 1.0f, "b");
    struct jb_tensor *c         = tc_weights_add(src, JB_DTYPE_F16, 2, small, 1.0f, "c");
    struct jb_tensor *d         = tc_weights_add(src, JB_DTYPE_F16, 2, big, 1.0f, "d");
    struct jb_weights_source ws = tc_weights_source(src);
    struct jb_weights *w        = jb_weights_init(&ws);
    jb_weights_set_backend(w, cpu);
    const struct jb_tensor *pa = jb_weights_get(w, JB_WANT_ANY, 2, big, "a");
    const struct jb_tensor *pb = jb_weights_get(w, JB_WANT_ANY, 2, big, "b");
    const struct jb_tensor *pc = jb_weights_get(w, JB_WANT_ANY, 2, small, "c");
    const struct jb_tensor *pd = jb_weights_get(w, JB_WANT_F32, 2, big, "d"); /* converted */
    const size_t nb            = jb_tensor_nbytes(a);
    tc_check(pa && pb && pc && pd, "weights: every tensor placed");
    if (!(pa && pb && pc && pd)) goto out;
    const bool copies = cpu->weights_copy_min > 0 && nb >= cpu->weights_copy_min;
    bool same         = memcmp(pa->data, a->data, nb) == 0 && memcmp(pb->data, b->data, nb) == 0;
    same = same && ((const float *)pd->data)[5] == jb_f16_to_f32(((const uint16_t *)d->data)[5]);
    tc_check(same && pc->data == c->data && pd->type == JB_DTYPE_F32 && pd->backend == NULL,
             "weights: values kept; the small and the converted tensors in place");
    if (!copies) {
        tc_check(pa->data == a->data && jb_weights_placed_bytes(w, true) == 0,
                 "weights: used in place (weights_copy_min 0, as without THP)");
        goto out;
    }
    tc_check(pa->data != a->data && pb->data != b->data && pa->backend == cpu &&
               ((uintptr_t)pa->data | (uintptr_t)pb->data) % 64 == 0 &&
               jb_weights_placed_bytes(w, true) == 2.0 * (double)nb,
             "weights: the %.1f MB tensors copied (64-byte aligned), %.1f MB placed",
             nb / 1e6,
             jb_weights_placed_bytes(w, true) / 1e6);
    const double freed = jb_weights_offload(w);
    tc_check(freed == 2.0 * (double)nb && pa->data == NULL &&
               jb_weights_placed_bytes(w, true) == 0 &&
               jb_weights_placed_bytes(w, false) == 2.0 * (double)nb && pc->data == c->data,
             "weights: offload gives the copies back (%.1f MB)",
             freed / 1e6);
    const enum jb_status st = jb_weights_reload(w);
    same = st == JB_STATUS_OK && pa->data && pb->data && memcmp(pa->data, a->data, nb) == 0 &&
           memcmp(pb->data, b->data, nb) == 0;
    tc_check(same && jb_weights_placed_bytes(w, true) == 2.0 * (double)nb,
             "weights: reload brings the same values back");
    /* the same weights placed on a second backend as well: its copies are its own, and the
     * arena goes back to the backend that made it when the weights are freed (below) */
    struct jb_backend *dev = jb_backend_init("check", 1);
    if (dev) {
        jb_weights_set_backend(w, dev);
        const struct jb_tensor *qa = jb_weights_get(w, JB_WANT_ANY, 2, big, "a");
        tc_check(qa && qa != pa && qa->backend == dev && pa->data && pa->backend == cpu,
                 "weights: a second backend gets its own copy beside the first's");
    }
    jb_weights_free(w);
    w = NULL;
    jb_backend_free(dev);
out:
    jb_weights_free(w);
    tc_weights_free(src);
}

int main(void)
{
    int missing = 0;
    for (int op = 0; op < JB_OP_COUNT; op++)
        if (!cases[op]) {
            printf("op %s has no case\n", jb_op_name((enum jb_op)op));
            missing++;
        }
    tc_check(missing == 0, "every op of the table (%d) has a case", JB_OP_COUNT);

    struct jb_backend *cpu = jb_backend_init("cpu", 2);
    tc_check(cpu != NULL, "cpu backend");
    if (!cpu) return tc_summary();
    check_reference(cpu);
    check_cpu_spare(cpu);
    check_weights_copies(cpu);
    const size_t copy_min = cpu->weights_copy_min;
    cpu->weights_copy_min = 0;
    check_weights_copies(cpu);
    cpu->weights_copy_min = copy_min;
    check_attention_naive(cpu);
    check_guard();

    /* every compiled backend but the reference, plus the test-only check backend */
    char names[256];
    snprintf(names, sizeof names, "%s check", jb_backends_available());
    for (char *save = NULL, *n = strtok_r(names, " ,", &save); n; n = strtok_r(NULL, " ,", &save))
        if (strcmp(n, "cpu") != 0) compare_backend(n, cpu);
    jb_backend_free(cpu);
    return tc_summary();
}
