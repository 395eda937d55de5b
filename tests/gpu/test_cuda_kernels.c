/*
 * tests/gpu/test_cuda_kernels.c - every CUDA kernel entry point against a plain double-precision
 * reference written here (independent of the CPU backend's code): matmul in every weight dtype
 * on both the GEMV (decode) and cuBLAS paths, layer norm, softmax, element-wise ops, embedding,
 * transpose, conv1d, conv_transpose1d, codebook search, attention of every kind in prefill
 * chunks and graph-free decode over the fp16 cache, and sampling with the shared Philox stream.
 * Tolerances (docs/cuda.md): fp32 arithmetic 1e-4 relative to the largest output; fp16
 * activations (cuBLAS half path) 5e-3; bf16 3e-2. Exits 77 without a CUDA device.
 */
#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_conv.cuh"
#include "backend/cuda/cuda_elementwise.cuh"
#include "backend/cuda/cuda_gemm.cuh"
#include "backend/cuda/cuda_norm.cuh"
#include "backend/cuda/cuda_sample.cuh"
#include "backend/cuda/cuda_vq.cuh"
#include "core/fp16.h"
#include "core/rng.h"
#include "gpu_util.h"

#define TOL_F32 1e-4
#define TOL_F16 5e-3
#define TOL_BF16 3e-2

static uint16_t to_half(enum jb_dtype t, float v)
{
    return t == JB_DTYPE_F16 ? jb_f32_to_f16(v) : jb_f32_to_bf16(v);
}
static float from_half(enum jb_dtype t, uint16_t v)
{
    return t == JB_DTYPE_F16 ? jb_f16_to_f32(v) : jb_bf16_to_f32(v);
}

static void test_matmul(struct jb_cuda *cu)
{
    const enum jb_dtype types[3] = { JB_DTYPE_F32, JB_DTYPE_F16, JB_DTYPE_BF16 };
    /* N % 8 and K % 8 pick the GEMV's 16-byte or scalar weight loads: both of each */
    const int64_t Ms[4] = { 1, 3, 8, 40 }, Ns[3] = { 200, 256, 203 }, Ks[3] = { 300, 320, 296 };
    for (int ti = 0; ti < 3; ti++)
        for (int wt = 0; wt < 2; wt++)
            for (int mi = 0; mi < 4; mi++)
                for (int ni = 0; ni < 3; ni++)
                    for (int flags = 0; flags < 4; flags++) {
                        const enum jb_dtype t = types[ti];
                        const int64_t M = Ms[mi], N = Ns[ni], K = Ks[ni], ldx = K + 3, ldy = N + 5;
                        const bool has_bias = flags & 1, acc = flags & 2;
                        float *x     = rand_vec((size_t)(M * ldx), 1.0f);
                        float *w     = rand_vec((size_t)(K * N), 0.1f);
                        float *b     = rand_vec((size_t)N, 0.5f);
                        float *y     = rand_vec((size_t)(M * ldy), 1.0f);
                        void *wst    = w;
                        uint16_t *wh = NULL;
                        if (t != JB_DTYPE_F32) {
                            wh = malloc((size_t)(K * N) * 2);
                            for (int64_t i = 0; i < K * N; i++) {
                                wh[i] = to_half(t, w[i]);
                                w[i]  = from_half(t, wh[i]); /* the reference sees stored values */
                            }
                            wst = wh;
                        }
                        float *ref = malloc((size_t)(M * ldy) * sizeof *ref);
                        memcpy(ref, y, (size_t)(M * ldy) * sizeof *ref);
                        for (int64_t m = 0; m < M; m++)
                            for (int64_t n = 0; n < N; n++) {
                                double s = has_bias ? b[n] : 0.0;
                                for (int64_t k = 0; k < K; k++)
                                    s += (double)x[m * ldx + k] *
                                         (double)(wt ? w[n * K + k] : w[k * N + n]);
                                ref[m * ldy + n] = (float)(acc ? ref[m * ldy + n] + s : s);
                            }
                        const size_t wbytes = (size_t)(K * N) * (t == JB_DTYPE_F32 ? 4 : 2);
                        float *dx           = dev_copy(cu, x, (size_t)(M * ldx) * 4);
                        void *dw            = dev_copy(cu, wst, wbytes);
                        float *db           = dev_copy(cu, b, (size_t)N * 4);
                        float *dy           = dev_copy(cu, y, (size_t)(M * ldy) * 4);
                        CHECK(jb_cuda_reserve(cu, jb_cuda_matmul_arena(M, N, K, t)) == JB_STATUS_OK,
                              "reserve: %s",
                              jb_last_error());
                        enum jb_status st = jb_cuda_matmul(
                          cu, M, N, K, dx, ldx, dw, t, wt, has_bias ? db : NULL, dy, ldy, acc);
                        CHECK(st == JB_STATUS_OK, "matmul: %s", jb_last_error());
                        float *got = host_copy(cu, dy, (size_t)(M * ldy) * 4);
                        /* the padding between rows must be untouched */
                        double e = 0.0;
                        for (int64_t m = 0; m < M; m++) {
                            double em = rel_err(got + m * ldy, ref + m * ldy, (size_t)N);
                            if (em > e) e = em;
                            for (int64_t n = N; n < ldy && m + 1 < M; n++)
                                CHECK(got[m * ldy + n] == y[m * ldy + n], "matmul wrote padding");
                        }
                        const double tol = t == JB_DTYPE_F32 || M <= JB_CUDA_GEMV_MAX_M
                                             ? TOL_F32
                                             : (t == JB_DTYPE_F16 ? TOL_F16 : TOL_BF16);
                        CHECK(
                          e <= tol,
                          "matmul %s w_trans %d M %lld N %lld bias %d acc %d: error %.3g > %.3g",
                          jb_dtype_name(t),
                          wt,
                          (long long)M,
                          (long long)N,
                          has_bias,
                          acc,
                          e,
                          tol);
                        jb_cuda_free(cu, dx), jb_cuda_free(cu, dw), jb_cuda_free(cu, db),
                          jb_cuda_free(cu, dy);
                        free(x), free(w), free(b), free(y), free(wh), free(ref), free(got);
                    }
    printf("matmul: f32/f16/bf16, both layouts, M 1..40, bias, accumulate\n");
}

static void test_norm_elementwise(struct jb_cuda *cu)
{
    const int64_t R = 7, W = 1920, n = R * W;
    float *x = rand_vec((size_t)n, 3.0f), *g = rand_vec((size_t)W, 1.0f),
          *bt = rand_vec((size_t)W, 1.0f), *ref = malloc((size_t)n * 4);
    for (int64_t r = 0; r < R; r++) {
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < W; i++)
            mean += x[r * W + i];
        mean /= (double)W;
        for (int64_t i = 0; i < W; i++)
            var += (x[r * W + i] - mean) * (x[r * W + i] - mean);
        var /= (double)W;
        for (int64_t i = 0; i < W; i++)
            ref[r * W + i] = (float)((x[r * W + i] - mean) / sqrt(var + 1e-5) * g[i] + bt[i]);
    }
    float *dx = dev_copy(cu, x, (size_t)n * 4), *dg = dev_copy(cu, g, (size_t)W * 4),
          *db = dev_copy(cu, bt, (size_t)W * 4);
    CHECK(jb_cuda_layernorm(cu, R, W, dx, dg, db, 1e-5f, dx) == JB_STATUS_OK, "layernorm");
    float *got = host_copy(cu, dx, (size_t)n * 4);
    CHECK(rel_err(got, ref, (size_t)n) <= TOL_F32,
          "layernorm error %.3g",
          rel_err(got, ref, (size_t)n));
    free(got);

    /* softmax rows */
    jb_cuda_upload(cu, dx, x, (size_t)n * 4);
    for (int64_t r = 0; r < R; r++) {
        double m = -INFINITY, s = 0.0;
        for (int64_t i = 0; i < W; i++)
            m = x[r * W + i] > m ? x[r * W + i] : m;
        for (int64_t i = 0; i < W; i++)
            s += exp(x[r * W + i] - m);
        for (int64_t i = 0; i < W; i++)
            ref[r * W + i] = (float)(exp(x[r * W + i] - m) / s);
    }
    CHECK(jb_cuda_softmax_rows(cu, R, W, dx) == JB_STATUS_OK, "softmax");
    got = host_copy(cu, dx, (size_t)n * 4);
    CHECK(
      rel_err(got, ref, (size_t)n) <= TOL_F32, "softmax error %.3g", rel_err(got, ref, (size_t)n));
    free(got);

    /* relu, add, axpy, quick_gelu */
    float *y = rand_vec((size_t)n, 1.0f), *dy = dev_copy(cu, y, (size_t)n * 4);
    jb_cuda_upload(cu, dx, x, (size_t)n * 4);
    CHECK(jb_cuda_axpy(cu, n, 0.5f, dx, dy) == JB_STATUS_OK, "axpy");
    CHECK(jb_cuda_add(cu, n, dx, dy, dy) == JB_STATUS_OK, "add");
    CHECK(jb_cuda_relu(cu, n, dy, dy) == JB_STATUS_OK, "relu");
    CHECK(jb_cuda_quick_gelu(cu, n, dy) == JB_STATUS_OK, "quick_gelu");
    for (int64_t i = 0; i < n; i++) {
        double v = (double)y[i] + 0.5 * x[i];
        v        = fmax((double)x[i] + v, 0.0);
        ref[i]   = (float)(v / (1.0 + exp(-1.702 * v)));
    }
    got = host_copy(cu, dy, (size_t)n * 4);
    CHECK(rel_err(got, ref, (size_t)n) <= TOL_F32,
          "elementwise error %.3g",
          rel_err(got, ref, (size_t)n));
    free(got);

    /* embedding (f16 table) and transpose */
    const int64_t V = 50, E = 96, nid = 9;
    uint16_t *tab = malloc((size_t)(V * E) * 2);
    for (int64_t i = 0; i < V * E; i++)
        tab[i] = jb_f32_to_f16(frand());
    int32_t ids[9] = { 0, 49, 3, 3, 17, 8, 22, 1, 40 };
    void *dtab     = dev_copy(cu, tab, (size_t)(V * E) * 2);
    int32_t *dids  = dev_copy(cu, ids, sizeof ids);
    CHECK(jb_cuda_embedding(cu, dtab, JB_DTYPE_F16, E, dids, nid, dy) == JB_STATUS_OK, "embedding");
    got     = host_copy(cu, dy, (size_t)(nid * E) * 4);
    int bad = 0;
    for (int64_t i = 0; i < nid * E; i++)
        bad += got[i] != jb_f16_to_f32(tab[ids[i / E] * E + i % E]);
    CHECK(bad == 0, "embedding: %d wrong values", bad);
    free(got);
    CHECK(jb_cuda_transpose(cu, 37, 70, dx, dy) == JB_STATUS_OK, "transpose");
    got = host_copy(cu, dy, 37 * 70 * 4);
    bad = 0;
    for (int r = 0; r < 37; r++)
        for (int c = 0; c < 70; c++)
            bad += got[c * 37 + r] != x[r * 70 + c];
    CHECK(bad == 0, "transpose: %d wrong values", bad);
    free(got);
    jb_cuda_free(cu, dx), jb_cuda_free(cu, dg), jb_cuda_free(cu, db), jb_cuda_free(cu, dy),
      jb_cuda_free(cu, dtab), jb_cuda_free(cu, dids);
    free(x), free(g), free(bt), free(ref), free(y), free(tab);
    printf("layernorm, softmax, relu/add/axpy/quick_gelu, embedding, transpose\n");
}

static void test_conv(struct jb_cuda *cu)
{
    struct {
        int64_t cin, cout, T;
        int k, s, p, d;
    } cs[4] = { { 32, 48, 100, 3, 1, 3, 3 },
                { 32, 16, 101, 4, 2, 1, 1 },
                { 64, 64, 77, 1, 1, 0, 1 },
                { 8, 8, 5, 3, 1, 1, 1 } };
    for (int c = 0; c < 4; c++) {
        const int64_t Cin = cs[c].cin, Cout = cs[c].cout, T = cs[c].T;
        const int k = cs[c].k, s = cs[c].s, p = cs[c].p, d = cs[c].d;
        const int64_t To = (T + 2 * p - (int64_t)d * (k - 1) - 1) / s + 1;
        float *x = rand_vec((size_t)(Cin * T), 1.0f), *w = rand_vec((size_t)(Cout * Cin * k), 0.2f),
              *b = rand_vec((size_t)Cout, 1.0f), *ref = malloc((size_t)(Cout * To) * 4);
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t t = 0; t < To; t++) {
                double a = b[o];
                for (int64_t ci = 0; ci < Cin; ci++)
                    for (int j = 0; j < k; j++) {
                        const int64_t src = t * s - p + (int64_t)d * j;
                        if (src >= 0 && src < T)
                            a += (double)w[(o * Cin + ci) * k + j] * x[ci * T + src];
                    }
                ref[o * To + t] = (float)a;
            }
        float *dx = dev_copy(cu, x, (size_t)(Cin * T) * 4),
              *dw = dev_copy(cu, w, (size_t)(Cout * Cin * k) * 4),
              *db = dev_copy(cu, b, (size_t)Cout * 4),
              *dy = dev_copy(cu, NULL, (size_t)(Cout * To) * 4);
        CHECK(jb_cuda_reserve(cu, jb_cuda_conv1d_arena(Cin, T, k, s, p, d)) == JB_STATUS_OK,
              "reserve");
        CHECK(jb_cuda_conv1d(cu, dx, Cin, T, dw, Cout, k, db, s, p, d, dy) == JB_STATUS_OK,
              "conv1d: %s",
              jb_last_error());
        float *got     = host_copy(cu, dy, (size_t)(Cout * To) * 4);
        const double e = rel_err(got, ref, (size_t)(Cout * To));
        CHECK(e <= TOL_F32, "conv1d case %d: error %.3g", c, e);
        free(got), free(ref);
        jb_cuda_free(cu, dy);

        /* transposed: w [Cin, Cout, k], Tout = (T − 1)s − 2p + k */
        const int64_t Tt = (T - 1) * s - 2 * (int64_t)p + k;
        ref              = calloc((size_t)(Cout * Tt), 4);
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t t = 0; t < Tt; t++)
                ref[o * Tt + t] = b[o];
        double *acc = calloc((size_t)(Cout * Tt), sizeof *acc);
        for (int64_t ci = 0; ci < Cin; ci++)
            for (int64_t t = 0; t < T; t++)
                for (int64_t o = 0; o < Cout; o++)
                    for (int j = 0; j < k; j++) {
                        const int64_t to = t * s - p + j;
                        if (to >= 0 && to < Tt)
                            acc[o * Tt + to] += (double)w[(ci * Cout + o) * k + j] * x[ci * T + t];
                    }
        for (int64_t i = 0; i < Cout * Tt; i++)
            ref[i] = (float)(ref[i] + acc[i]);
        dy = dev_copy(cu, NULL, (size_t)(Cout * Tt) * 4);
        CHECK(jb_cuda_reserve(cu, jb_cuda_conv_transpose1d_arena(Cout, T, k)) == JB_STATUS_OK,
              "reserve");
        CHECK(jb_cuda_conv_transpose1d(cu, dx, Cin, T, dw, Cout, k, db, s, p, dy) == JB_STATUS_OK,
              "conv_transpose1d: %s",
              jb_last_error());
        got             = host_copy(cu, dy, (size_t)(Cout * Tt) * 4);
        const double et = rel_err(got, ref, (size_t)(Cout * Tt));
        CHECK(et <= TOL_F32, "conv_transpose1d case %d: error %.3g", c, et);
        free(got), free(ref), free(acc), free(x), free(w), free(b);
        jb_cuda_free(cu, dx), jb_cuda_free(cu, dw), jb_cuda_free(cu, db), jb_cuda_free(cu, dy);
    }
    printf("conv1d, conv_transpose1d (stride, padding, dilation, 1x1)\n");
}

static void test_vq(struct jb_cuda *cu)
{
    const int64_t emb = 64, bins = 512, T = 300;
    float *x = rand_vec((size_t)(emb * T), 1.0f), *kb = rand_vec((size_t)(bins * emb), 1.0f);
    memcpy(kb + 7 * emb, kb + 3 * emb, (size_t)emb * 4); /* a true tie: first index wins */
    for (int64_t e = 0; e < emb; e++)
        x[e * T + 5] = kb[3 * emb + e];
    float *dx   = dev_copy(cu, x, (size_t)(emb * T) * 4),
          *dk   = dev_copy(cu, kb, (size_t)(bins * emb) * 4);
    int32_t *dc = dev_copy(cu, NULL, (size_t)T * 4);
    CHECK(
      jb_cuda_vq_argmin(cu, dx, emb, T, dk, bins, dc) == JB_STATUS_OK, "vq: %s", jb_last_error());
    int32_t *codes = host_copy(cu, dc, (size_t)T * 4);
    int bad        = 0;
    for (int64_t t = 0; t < T; t++) {
        double best = INFINITY, second = INFINITY;
        int32_t bj = 0;
        for (int64_t j = 0; j < bins; j++) {
            double dd = 0.0;
            for (int64_t e = 0; e < emb; e++)
                dd += ((double)x[e * T + t] - kb[j * emb + e]) *
                      ((double)x[e * T + t] - kb[j * emb + e]);
            if (dd < best) {
                second = best, best = dd, bj = (int32_t)j;
            } else if (dd < second)
                second = dd;
        }
        /* fp32 distances can only reorder entries closer than their rounding */
        if (codes[t] != bj && !(second - best < 1e-3 * (1.0 + best))) bad++;
    }
    CHECK(codes[5] == 3, "vq: tie at t=5 gave %d, expected the first index 3", codes[5]);
    CHECK(bad == 0, "vq: %d codes differ from the exact nearest entry", bad);
    free(x), free(kb), free(codes);
    jb_cuda_free(cu, dx), jb_cuda_free(cu, dk), jb_cuda_free(cu, dc);
    printf("vq argmin (ties: first index)\n");
}

/* Attention: the key set of each query straight from jukebox-spec §4.6, over fp16-rounded keys
 * and values of every position so far. */
static bool in_key_set(int func, int64_t B, int64_t P, int64_t i, int64_t j)
{
    switch (func) {
    case 0:
        return j <= i;
    case 1:
        return j / B == i / B && j <= i;
    case 2:
        return j % B == i % B && j <= i;
    case 3:
        return i / B >= 1 && j / B == i / B - 1;
    case 7:
        return j < P && j <= i;
    default:
        return true; /* 6: every encoder position */
    }
}

static void test_attention(struct jb_cuda *cu, enum jb_dtype type)
{
    const int funcs[6] = { 0, 1, 2, 3, 6, 7 };
    const int N = 2, H = 2, hd = 40, ns = H * hd;
    const int64_t B = 8, T = 64, P = 20, ENC = 24;
    const int chunks[4] = { 5, 11, 3, 16 }; /* priming to S = 35, then decode to T */
    for (int fi = 0; fi < 6; fi++) {
        const int f           = funcs[fi];
        struct jb_cuda_attn a = {
            .func = f, .B = B, .rows = T / B, .N = N, .H = H, .hd = hd, .type = type
        };
        a.cap   = f == 0 ? T : f == 1 ? B : f == 2 ? T : f == 3 ? 2 * B : f == 6 ? ENC : P;
        a.scale = 1.0f / sqrtf((float)hd);
        a.k     = dev_copy(cu, NULL, jb_cuda_attn_cache_bytes(&a));
        a.v     = dev_copy(cu, NULL, jb_cuda_attn_cache_bytes(&a));
        /* all positions' q|k|v (fp32), keys/values of the reference rounded to fp16 */
        const int64_t L = f == 6 ? ENC : T;
        float *all      = rand_vec((size_t)(N * T * 3 * ns), 1.0f);
        float *kr = malloc((size_t)(N * L * ns) * 4), *vr = malloc((size_t)(N * L * ns) * 4);
        float *enc = f == 6 ? rand_vec((size_t)(N * ENC * 2 * ns), 1.0f) : NULL;
        for (int n = 0; n < N; n++)
            for (int64_t j = 0; j < L; j++)
                for (int e = 0; e < ns; e++) {
                    const float kk =
                      f == 6 ? enc[(n * ENC + j) * 2 * ns + e] : all[(n * T + j) * 3 * ns + ns + e];
                    const float vv = f == 6 ? enc[(n * ENC + j) * 2 * ns + ns + e]
                                            : all[(n * T + j) * 3 * ns + 2 * ns + e];
                    const bool h16 =
                      type == JB_DTYPE_F16; /* the reference sees the cache's values */
                    kr[(n * L + j) * ns + e] = h16 ? jb_f16_to_f32(jb_f32_to_f16(kk)) : kk;
                    vr[(n * L + j) * ns + e] = h16 ? jb_f16_to_f32(jb_f32_to_f16(vv)) : vv;
                }
        if (f == 6) {
            float *denc = dev_copy(cu, enc, (size_t)(N * ENC * 2 * ns) * 4);
            CHECK(
              jb_cuda_kv_append(cu, &a, (int)ENC, 0, NULL, 0, (int)ENC, denc, denc + ns, 2 * ns) ==
                JB_STATUS_OK,
              "kv_append of the encoder");
            jb_cuda_synchronize(cu);
            jb_cuda_free(cu, denc);
        }
        float *dq     = dev_copy(cu, NULL, (size_t)(N * 16 * 3 * ns) * 4),
              *dat    = dev_copy(cu, NULL, (size_t)(N * 16 * ns) * 4);
        int32_t *dpos = dev_copy(cu, NULL, 4);
        float *chunk  = malloc((size_t)(N * 16 * 3 * ns) * 4);
        double worst  = 0.0;
        for (int64_t S = 0, step = 0; S < T; step++) {
            const int C       = step < 4 ? chunks[step] : 1;
            const int64_t ldq = f == 6 ? ns : 3 * ns;
            for (int n = 0; n < N; n++)
                for (int r = 0; r < C; r++)
                    memcpy(
                      chunk + (n * C + r) * ldq, all + (n * T + S + r) * 3 * ns, (size_t)ldq * 4);
            jb_cuda_upload(cu, dq, chunk, (size_t)(N * C * ldq) * 4);
            enum jb_status st;
            if (C > 1) {
                st = jb_cuda_attention_chunk(cu, &a, S, NULL, C, dq, dat);
            } else {
                const int32_t pos = (int32_t)S;
                jb_cuda_upload(cu, dpos, &pos, 4);
                st = jb_cuda_attention_chunk(cu, &a, 0, dpos, 1, dq, dat);
            }
            CHECK(st == JB_STATUS_OK,
                  "attention func %d at %lld: %s",
                  f,
                  (long long)S,
                  jb_last_error());
            float *got = host_copy(cu, dat, (size_t)(N * C * ns) * 4);
            for (int n = 0; n < N; n++)
                for (int r = 0; r < C; r++)
                    for (int h = 0; h < H; h++) {
                        const int64_t i = S + r;
                        const float *q  = all + (n * T + i) * 3 * ns + h * hd;
                        double w[64], m = -INFINITY, z = 0.0, ref[40] = { 0 };
                        for (int64_t j = 0; j < L; j++) {
                            w[j] = -INFINITY;
                            if (!in_key_set(f, B, P, i, j)) continue;
                            double dd = 0.0;
                            for (int c = 0; c < hd; c++)
                                dd += (double)q[c] * kr[(n * L + j) * ns + h * hd + c];
                            w[j] = dd * a.scale;
                            m    = w[j] > m ? w[j] : m;
                        }
                        for (int64_t j = 0; j < L; j++)
                            z += w[j] == -INFINITY ? 0.0 : exp(w[j] - m);
                        for (int64_t j = 0; j < L && z > 0.0; j++)
                            if (w[j] != -INFINITY)
                                for (int c = 0; c < hd; c++)
                                    ref[c] += exp(w[j] - m) / z * vr[(n * L + j) * ns + h * hd + c];
                        for (int c = 0; c < hd; c++) {
                            const double e = fabs(got[(n * C + r) * ns + h * hd + c] - ref[c]);
                            if (!(e <= worst)) worst = e;
                        }
                    }
            free(got);
            S += C;
        }
        CHECK(worst <= TOL_F32,
              "attention func %d, %s cache: max error %.3g (values in [-1, 1])",
              f,
              jb_dtype_name(type),
              worst);
        jb_cuda_free(cu, a.k), jb_cuda_free(cu, a.v), jb_cuda_free(cu, dq), jb_cuda_free(cu, dat),
          jb_cuda_free(cu, dpos);
        free(all), free(kr), free(vr), free(enc), free(chunk);
    }
    printf("attention funcs 0 1 2 3 6 7, %s cache: prefill chunks 5/11/3/16, then decode to T\n",
           jb_dtype_name(type));
}

/* The draw of jukebox-spec §5.4 in double on the host with the same uniform. */
static int32_t host_draw(const float *logits, int V, float temp, int top_k, float top_p, double u)
{
    float *l = malloc((size_t)V * 4), *s = malloc((size_t)V * 4);
    int32_t j_best = 0;
    for (int j = 0; j < V; j++)
        l[j] = logits[j] / temp;
    if (top_k == 1) {
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[j_best]) j_best = j;
        free(l), free(s);
        return j_best;
    }
    if (top_k > 0 || top_p > 0.0f) {
        int *ord = malloc((size_t)V * sizeof *ord);
        for (int j = 0; j < V; j++)
            ord[j] = j;
        for (int a = 1; a < V; a++) { /* insertion sort: descending value, ascending index */
            int v = ord[a], b = a - 1;
            while (b >= 0 && (l[ord[b]] < l[v] || (l[ord[b]] == l[v] && ord[b] > v))) {
                ord[b + 1] = ord[b];
                b--;
            }
            ord[b + 1] = v;
        }
        if (top_k > 0) {
            const float tau = l[ord[(top_k < V ? top_k : V) - 1]];
            for (int j = 0; j < V; j++)
                if (l[j] < tau) l[j] = -INFINITY;
        } else {
            double z = 0.0, mass = 0.0;
            for (int r = 0; r < V; r++)
                z += exp((double)l[ord[r]] - l[ord[0]]);
            int r = 0;
            while (r < V && mass <= (double)top_p)
                mass += exp((double)l[ord[r++]] - l[ord[0]]) / z;
            for (; r < V; r++)
                l[ord[r]] = -INFINITY;
        }
        free(ord);
    }
    float m = -INFINITY;
    for (int j = 0; j < V; j++)
        m = l[j] > m ? l[j] : m;
    double total = 0.0;
    for (int j = 0; j < V; j++)
        total += l[j] == -INFINITY ? 0.0 : exp((double)l[j] - m);
    const double target = u * total;
    double cum          = 0.0;
    j_best              = -1;
    for (int j = 0; j < V && j_best < 0; j++) {
        if (l[j] == -INFINITY) continue;
        cum += exp((double)l[j] - m);
        if (cum > target) j_best = j;
    }
    free(l), free(s);
    return j_best;
}

static void test_sample(struct jb_cuda *cu)
{
    const int N = 4, V = 2127;
    struct {
        float temp;
        int top_k;
        float top_p;
    } cases[4]    = { { 1.0f, 1, 0.0f }, { 0.99f, 0, 0.0f }, { 0.9f, 5, 0.0f }, { 1.0f, 0, 0.8f } };
    float *logits = rand_vec((size_t)(N * V), 4.0f);
    logits[10] = logits[20] = 9.0f; /* a tie at the max of candidate 0: greedy takes 10 */
    float *dl               = dev_copy(cu, NULL, (size_t)(N * V) * 4);
    int32_t *dtok           = dev_copy(cu, NULL, (size_t)N * 4);
    int mismatches = 0, draws = 0;
    for (int c = 0; c < 4; c++)
        for (int t = 0; t < 50; t++) {
            struct jb_cuda_sample_params sp = { .temp            = cases[c].temp,
                                                .top_k           = cases[c].top_k,
                                                .top_p           = cases[c].top_p,
                                                .seed            = 1234 + (uint64_t)c,
                                                .first_candidate = 5 };
            jb_cuda_upload(cu, dl, logits, (size_t)(N * V) * 4);
            CHECK(jb_cuda_sample(cu, &sp, N, V, dl, V, NULL, t, dtok, NULL, 0) == JB_STATUS_OK,
                  "sample: %s",
                  jb_last_error());
            int32_t *tok = host_copy(cu, dtok, (size_t)N * 4);
            for (int n = 0; n < N; n++) {
                const double u     = jb_rng_uniform53(sp.seed, 5 + (uint64_t)n, (uint64_t)t);
                const int32_t want = host_draw(logits + n * V, V, sp.temp, sp.top_k, sp.top_p, u);
                draws++;
                mismatches += tok[n] != want;
            }
            if (c == 0) CHECK(tok[0] == 10, "greedy with a tie took %d, expected 10", tok[0]);
            free(tok);
        }
    /* expf on the device and exp on the host can move a boundary by an ulp: allow 1 in 500 */
    CHECK(mismatches * 500 <= draws,
          "sample: %d of %d draws differ from the host reference",
          mismatches,
          draws);
    /* a wrong vocabulary size is refused, not run */
    struct jb_cuda_sample_params sp = { .temp = 1.0f };
    CHECK(jb_cuda_sample(cu, &sp, 1, JB_CUDA_SAMPLE_MAX_VOCAB + 1, dl, 1, NULL, 0, dtok, NULL, 0) ==
            JB_STATUS_ERR_INVALID_ARG,
          "oversized vocabulary accepted");
    free(logits);
    jb_cuda_free(cu, dl), jb_cuda_free(cu, dtok);
    printf("sample: greedy (ties), temperature, top-k, top-p: %d/%d draws equal the host\n",
           draws - mismatches,
           draws);
}

int main(void)
{
    struct jb_cuda *cu = gpu_open_or_skip("test_cuda_kernels");
    test_matmul(cu);
    test_norm_elementwise(cu);
    test_conv(cu);
    test_vq(cu);
    /* the default key splits (func 0 splits in two), one block per query, and splits of 4
     * keys (up to 16 per query, empty ones at the first positions) */
    const int split_keys[3] = { 0, 1 << 20, 4 };
    for (int i = 0; i < 3; i++) {
        jb_cuda_set_attn_split_keys(cu, split_keys[i]);
        printf("attention with decode queries split every %d keys (0: default)\n", split_keys[i]);
        test_attention(cu, JB_DTYPE_F16);
        test_attention(cu, JB_DTYPE_F32);
    }
    jb_cuda_set_attn_split_keys(cu, 0);
    test_sample(cu);
    CHECK(jb_cuda_synchronize(cu) == JB_STATUS_OK, "device error: %s", jb_last_error());
    jb_cuda_close(cu);
    printf("%s\n", g_failures ? "FAILED" : "all CUDA kernels agree with the references");
    return g_failures ? 1 : 0;
}
