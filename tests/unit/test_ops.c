/*
 * tests/unit/test_ops.c - every kernel of backend/ops.h against a plain double-precision loop.
 *
 * Each case runs once per CPU kernel level the machine has (portable, avx2, avx512) and prints
 * one line; the error measure is the relative L2 error ‖got − ref‖ / ‖ref‖, which must be <= 1e-5
 * (fp16/bf16 weights: the reference uses the rounded weights). Chunking, thread-count,
 * M-independence and AVX2-vs-AVX-512 checks compare outputs bitwise on the SIMD levels; the
 * portable level goes through OpenBLAS, which rounds differently at different column positions,
 * so there they must agree to CHUNK_TOL (max |diff| / max |y|). Exit status 1 if any case fails.
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/pool.h"
#include "backend/ops.h"
#include "core/fp16.h"
#include "model_builders.h"
#include "prior/conditioner.h"
#include "test_common.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define TOL 1e-5

/* a bias vector as the matmul op takes it (NULL stays NULL) */
#define BIAS(p, n)                                                                                 \
    ((p) ? &(struct jb_tensor){ .type = JB_DTYPE_F32, .n_dims = 1, .shape = { (n) }, .data = (p) } \
         : NULL)
#define CHUNK_TOL 2e-6 /* portable level only */

static enum jb_cpu_isa g_isa;

/* --- helpers --------------------------------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static double rnd(void) /* uniform [-1, 1) */
{
    return tc_rng_uniform(&g_rng); /* tests/common's splitmix64 */
}

static float *rnd_buf(int64_t n, double scale)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(rnd() * scale);
    return p;
}

static double *dbuf(int64_t n)
{
    return calloc((size_t)(n > 0 ? n : 1), sizeof(double));
}

static struct jb_tensor tensor(enum jb_dtype type, int n_dims, const int64_t *shape, void *data)
{
    struct jb_tensor t = { .type = type, .n_dims = n_dims, .data = data };
    for (int i = 0; i < n_dims; i++)
        t.shape[i] = shape[i];
    return t;
}

/* tests/common's reporting under this file's name */
#define report tc_check

static double rel_err(int64_t n, const float *got, const double *ref)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
        if (!isfinite(got[i])) return INFINITY;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Bitwise on the SIMD levels, within CHUNK_TOL of the output scale on the portable one. */
static bool agree(double maxd, double scale)
{
    return g_isa >= JB_CPU_ISA_AVX2 ? maxd == 0.0 : maxd <= CHUNK_TOL * scale;
}

static const char *agree_what(void)
{
    return g_isa >= JB_CPU_ISA_AVX2 ? "bitwise" : "<= 2e-6 of max|y|";
}

static double max_abs(int64_t n, const float *y)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fabs((double)y[i]) > m ? fabs((double)y[i]) : m;
    return m;
}

/* --- conv1d ----------------------------------------------------------------------------------- */

/* conv1d in double precision: y[o, t] = b[o] + Σ_c,j w[o, c, j]·v(c, s·t − p + d·j), where inputs
 * past [0, T) are the zero padding and v is x, or relu(x) with relu_in. NaN inputs count as zero,
 * with reads_nan[o·Tout + t] (when not NULL) set where an output reads one. mass (when not NULL)
 * gets |b[o]| + Σ |w·v|, the scale an output's rounding error is proportional to, for the kernels
 * whose sums differ from the direct ones by rounding (Winograd). No output ReLU. */
static void ref_conv1d(const float *x,
                       int64_t T,
                       int64_t Cin,
                       int64_t Cout,
                       int k,
                       int s,
                       int p,
                       int d,
                       const float *w,
                       const float *b,
                       bool relu_in,
                       double *y,
                       double *mass,
                       bool *reads_nan,
                       int64_t Tout)
{
    for (int64_t o = 0; o < Cout; o++)
        for (int64_t t = 0; t < Tout; t++) {
            double acc = b ? b[o] : 0.0, mag = b ? fabs(b[o]) : 0.0;
            bool nan = false;
            for (int64_t c = 0; c < Cin; c++)
                for (int j = 0; j < k; j++) {
                    const int64_t src = s * t - p + (int64_t)d * j;
                    if (src < 0 || src >= T) continue;
                    double v = x[c * T + src];
                    if (isnan(v)) {
                        nan = true;
                        continue;
                    }
                    if (relu_in && v < 0) v = 0;
                    acc += (double)w[(o * Cin + c) * k + j] * v;
                    mag += fabs((double)w[(o * Cin + c) * k + j] * v);
                }
            y[o * Tout + t] = acc;
            if (mass) mass[o * Tout + t] = mag;
            if (reads_nan) reads_nan[o * Tout + t] = nan;
        }
}

static void test_conv1d(struct jb_backend *be,
                        int64_t Cin,
                        int64_t Cout,
                        int k,
                        int s,
                        int p,
                        int d,
                        int64_t T,
                        bool bias)
{
    int64_t Tout   = jb_conv1d_out_len(T, k, s, p, d);
    float *x       = rnd_buf(Cin * T, 1.0);
    float *w       = rnd_buf(Cout * Cin * k, 1.0 / sqrt((double)(Cin * k)));
    float *b       = rnd_buf(Cout, 0.5);
    float *y       = rnd_buf(Cout * Tout + 1, 1.0);
    y[Cout * Tout] = 12345.0f; /* guard */
    size_t ns      = jb_conv1d_scratch(Cin, Cout, T, k, s, p, d);
    float *scratch = ns ? malloc(ns * sizeof(float)) : NULL;
    double *ref    = dbuf(Cout * Tout);

    struct jb_tensor wt = tensor(JB_DTYPE_F32, 3, (int64_t[]){ Cout, Cin, k }, w);
    struct jb_tensor bt = tensor(JB_DTYPE_F32, 1, (int64_t[]){ Cout }, b);
    jb_conv1d(be, x, T, &wt, bias ? &bt : NULL, s, p, d, y, scratch);
    ref_conv1d(x, T, Cin, Cout, k, s, p, d, w, bias ? b : NULL, false, ref, NULL, NULL, Tout);
    double e = rel_err(Cout * Tout, y, ref);
    report(e <= TOL && y[Cout * Tout] == 12345.0f,
           "conv1d Cin=%lld Cout=%lld k=%d s=%d p=%d d=%d T=%lld%s -> Tout=%lld  relerr=%.2e",
           (long long)Cin,
           (long long)Cout,
           k,
           s,
           p,
           d,
           (long long)T,
           bias ? "" : " nobias",
           (long long)Tout,
           e);
    free(x), free(w), free(b), free(y), free(scratch), free(ref);
}

/* Chunk [a, b) of the sequence vs the whole: outputs whose receptive field lies inside the chunk
 * must agree bitwise. */
static void test_conv1d_chunk(struct jb_backend *be,
                              int64_t C,
                              int k,
                              int s,
                              int p,
                              int d,
                              int64_t T,
                              int64_t a,
                              int64_t b_)
{
    float *x = rnd_buf(C * T, 1.0), *w = rnd_buf(C * C * k, 0.1), *bias = rnd_buf(C, 0.5);
    int64_t Tout = jb_conv1d_out_len(T, k, s, p, d), Tc = b_ - a;
    int64_t Tcout = jb_conv1d_out_len(Tc, k, s, p, d);
    float *y = malloc((size_t)(C * Tout) * 4), *yc = malloc((size_t)(C * Tcout) * 4);
    float *xc = malloc((size_t)(C * Tc) * 4);
    for (int64_t c = 0; c < C; c++)
        memcpy(xc + c * Tc, x + c * T + a, (size_t)Tc * 4);
    size_t ns           = jb_conv1d_scratch(C, C, T, k, s, p, d);
    float *scratch      = ns ? malloc(ns * sizeof(float)) : NULL;
    struct jb_tensor wt = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, C, k }, w);
    struct jb_tensor bt = tensor(JB_DTYPE_F32, 1, (int64_t[]){ C }, bias);
    jb_conv1d(be, x, T, &wt, &bt, s, p, d, y, scratch);
    jb_conv1d(be, xc, Tc, &wt, &bt, s, p, d, yc, scratch);
    /* chunk output u is whole output u + a/s; it sees only real inputs when
     * 0 <= s·u − p and s·u − p + d(k−1) < Tc */
    double maxd = 0;
    int64_t n   = 0;
    for (int64_t u = 0; u < Tcout; u++) {
        if (s * u - p < 0 || s * u - p + (int64_t)d * (k - 1) >= Tc) continue;
        for (int64_t o = 0; o < C; o++) {
            double diff = fabs((double)yc[o * Tcout + u] - y[o * Tout + u + a / s]);
            maxd        = diff > maxd ? diff : maxd;
            n++;
        }
    }
    report(agree(maxd, max_abs(C * Tout, y)) && n > 0,
           "conv1d chunk [%lld,%lld) of T=%lld C=%lld k=%d s=%d d=%d: %lld interior outputs, "
           "max|diff|=%.3g (%s)",
           (long long)a,
           (long long)b_,
           (long long)T,
           (long long)C,
           k,
           s,
           d,
           (long long)n,
           maxd,
           agree_what());
    free(x), free(w), free(bias), free(y), free(yc), free(xc), free(scratch);
}

/* --- conv_transpose1d
 * ----------------------------------------------------------------------------- */

static void ref_convt(const float *x,
                      int64_t T,
                      int64_t Cin,
                      int64_t Cout,
                      int k,
                      int s,
                      int p,
                      const float *w,
                      const float *b,
                      double *y,
                      int64_t Tout)
{
    for (int64_t o = 0; o < Cout; o++)
        for (int64_t t = 0; t < Tout; t++)
            y[o * Tout + t] = b ? b[o] : 0.0;
    for (int64_t c = 0; c < Cin; c++)
        for (int64_t u = 0; u < T; u++)
            for (int64_t o = 0; o < Cout; o++)
                for (int j = 0; j < k; j++) {
                    int64_t t = s * u - p + j;
                    if (t >= 0 && t < Tout)
                        y[o * Tout + t] += (double)w[(c * Cout + o) * k + j] * x[c * T + u];
                }
}

static void test_convt(struct jb_backend *be,
                       int64_t Cin,
                       int64_t Cout,
                       int k,
                       int s,
                       int p,
                       int64_t T,
                       bool bias)
{
    int64_t Tout        = jb_conv_transpose1d_out_len(T, k, s, p);
    float *x            = rnd_buf(Cin * T, 1.0);
    float *w            = rnd_buf(Cin * Cout * k, 1.0 / sqrt((double)(Cin * k)));
    float *b            = rnd_buf(Cout, 0.5);
    float *y            = rnd_buf(Cout * Tout + 1, 1.0);
    y[Cout * Tout]      = 12345.0f;
    size_t ns           = jb_conv_transpose1d_scratch(Cin, Cout, T, k, s, p);
    float *scratch      = ns ? malloc(ns * sizeof(float)) : NULL;
    double *ref         = dbuf(Cout * Tout);
    struct jb_tensor wt = tensor(JB_DTYPE_F32, 3, (int64_t[]){ Cin, Cout, k }, w);
    struct jb_tensor bt = tensor(JB_DTYPE_F32, 1, (int64_t[]){ Cout }, b);
    jb_conv_transpose1d(be, x, T, &wt, bias ? &bt : NULL, s, p, y, scratch);
    ref_convt(x, T, Cin, Cout, k, s, p, w, bias ? b : NULL, ref, Tout);
    double e = rel_err(Cout * Tout, y, ref);
    report(e <= TOL && y[Cout * Tout] == 12345.0f,
           "conv_transpose1d Cin=%lld Cout=%lld k=%d s=%d p=%d T=%lld%s -> Tout=%lld  relerr=%.2e",
           (long long)Cin,
           (long long)Cout,
           k,
           s,
           p,
           (long long)T,
           bias ? "" : " nobias",
           (long long)Tout,
           e);
    free(x), free(w), free(b), free(y), free(scratch), free(ref);
}

static void test_convt_chunk(struct jb_backend *be, int64_t C, int64_t T, int64_t a, int64_t b_)
{
    const int k = 4, s = 2, p = 1;
    float *x = rnd_buf(C * T, 1.0), *w = rnd_buf(C * C * k, 0.1), *bias = rnd_buf(C, 0.5);
    int64_t Tout = jb_conv_transpose1d_out_len(T, k, s, p), Tc = b_ - a;
    int64_t Tcout = jb_conv_transpose1d_out_len(Tc, k, s, p);
    float *y = malloc((size_t)(C * Tout) * 4), *yc = malloc((size_t)(C * Tcout) * 4);
    float *xc = malloc((size_t)(C * Tc) * 4);
    for (int64_t c = 0; c < C; c++)
        memcpy(xc + c * Tc, x + c * T + a, (size_t)Tc * 4);
    struct jb_tensor wt = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, C, k }, w);
    struct jb_tensor bt = tensor(JB_DTYPE_F32, 1, (int64_t[]){ C }, bias);
    jb_conv_transpose1d(be, x, T, &wt, &bt, s, p, y, NULL);
    jb_conv_transpose1d(be, xc, Tc, &wt, &bt, s, p, yc, NULL);
    /* chunk output t is whole output t + s·a; it sees only chunk inputs for 2 <= t < Tcout − 2 */
    double maxd = 0;
    int64_t n   = 0;
    for (int64_t t = 2; t < Tcout - 2; t++)
        for (int64_t o = 0; o < C; o++) {
            double diff = fabs((double)yc[o * Tcout + t] - y[o * Tout + t + s * a]);
            maxd        = diff > maxd ? diff : maxd;
            n++;
        }
    report(agree(maxd, max_abs(C * Tout, y)) && n > 0,
           "conv_transpose1d chunk [%lld,%lld) of T=%lld C=%lld: %lld interior outputs, "
           "max|diff|=%.3g (%s)",
           (long long)a,
           (long long)b_,
           (long long)T,
           (long long)C,
           (long long)n,
           maxd,
           agree_what());
    free(x), free(w), free(bias), free(y), free(yc), free(xc);
}

/* --- matmul
 * ---------------------------------------------------------------------------------------- */

static void test_matmul(struct jb_backend *be,
                        enum jb_dtype type,
                        bool w_trans,
                        int64_t M,
                        int64_t N,
                        int64_t K,
                        bool bias,
                        bool accumulate)
{
    int64_t ldx = K + 3, ldy = N + 5;
    float *x  = rnd_buf(M * ldx, 1.0);
    float *wf = rnd_buf(N * K, 1.0 / sqrt((double)K));
    float *b  = rnd_buf(N, 0.5);
    float *y  = rnd_buf(M * ldy, 1.0);
    float *y0 = malloc((size_t)(M * ldy) * 4);
    void *wq  = malloc((size_t)(N * K) * jb_dtype_size(type));
    memcpy(y0, y, (size_t)(M * ldy) * 4);
    jb_convert_from_f32(type, wf, wq, (size_t)(N * K));
    jb_convert_to_f32(type, wq, wf, (size_t)(N * K)); /* the reference uses the rounded weights */

    double *ref = dbuf(M * N);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = (accumulate ? y0[m * ldy + n] : 0.0) + (bias ? b[n] : 0.0);
            for (int64_t k = 0; k < K; k++)
                acc += (double)x[m * ldx + k] * (w_trans ? wf[n * K + k] : wf[k * N + n]);
            ref[m * N + n] = acc;
        }
    int64_t shape[2]    = { w_trans ? N : K, w_trans ? K : N };
    struct jb_tensor wt = tensor(type, 2, shape, wq);
    jb_matmul(be, M, N, K, x, ldx, &wt, w_trans, BIAS((bias ? b : NULL), N), y, ldy, accumulate);

    float *got = malloc((size_t)(M * N) * 4);
    bool pads  = true; /* the ldy padding must be untouched */
    for (int64_t m = 0; m < M; m++) {
        memcpy(got + m * N, y + m * ldy, (size_t)N * 4);
        for (int64_t n = N; n < ldy; n++)
            pads = pads && y[m * ldy + n] == y0[m * ldy + n];
    }
    double e = rel_err(M * N, got, ref);
    report(e <= TOL && pads,
           "matmul %-4s %s M=%lld N=%lld K=%lld%s%s  relerr=%.2e",
           jb_dtype_name(type),
           w_trans ? "W[N,K]" : "W[K,N]",
           (long long)M,
           (long long)N,
           (long long)K,
           bias ? " bias" : "",
           accumulate ? " accumulate" : "",
           e);
    free(x), free(wf), free(b), free(y), free(y0), free(wq), free(ref), free(got);
}

/* The same product on 1 and on 3 threads, bitwise. */
static void test_matmul_threads(struct jb_backend *be1,
                                struct jb_backend *be3,
                                enum jb_dtype type,
                                bool w_trans,
                                int64_t M,
                                int64_t N,
                                int64_t K)
{
    float *x = rnd_buf(M * K, 1.0), *wf = rnd_buf(N * K, 0.05), *b = rnd_buf(N, 0.5);
    float *y1 = malloc((size_t)(M * N) * 4), *y3 = malloc((size_t)(M * N) * 4);
    void *wq = malloc((size_t)(N * K) * jb_dtype_size(type));
    jb_convert_from_f32(type, wf, wq, (size_t)(N * K));
    int64_t shape[2]    = { w_trans ? N : K, w_trans ? K : N };
    struct jb_tensor wt = tensor(type, 2, shape, wq);
    jb_matmul(be1, M, N, K, x, K, &wt, w_trans, BIAS(b, N), y1, N, false);
    jb_matmul(be3, M, N, K, x, K, &wt, w_trans, BIAS(b, N), y3, N, false);
    double maxd = 0;
    for (int64_t i = 0; i < M * N; i++)
        maxd = fabs((double)y1[i] - y3[i]) > maxd ? fabs((double)y1[i] - y3[i]) : maxd;
    report(agree(maxd, max_abs(M * N, y1)),
           "matmul %-4s %s M=%lld N=%lld K=%lld: 1 thread vs 3 threads max|diff|=%.3g (%s)",
           jb_dtype_name(type),
           w_trans ? "W[N,K]" : "W[K,N]",
           (long long)M,
           (long long)N,
           (long long)K,
           maxd,
           agree_what());
    free(x), free(wf), free(b), free(y1), free(y3), free(wq);
}

/* Row m of an M-row product equals the same row computed alone (W [K, N], SIMD levels). */
static void test_matmul_rows(struct jb_backend *be,
                             enum jb_dtype type,
                             int64_t M,
                             int64_t N,
                             int64_t K)
{
    float *x = rnd_buf(M * K, 1.0), *wf = rnd_buf(N * K, 0.05), *b = rnd_buf(N, 0.5);
    float *y = malloc((size_t)(M * N) * 4), *y1 = malloc((size_t)N * 4);
    void *wq = malloc((size_t)(N * K) * jb_dtype_size(type));
    jb_convert_from_f32(type, wf, wq, (size_t)(N * K));
    struct jb_tensor wt = tensor(type, 2, (int64_t[]){ K, N }, wq);
    jb_matmul(be, M, N, K, x, K, &wt, false, BIAS(b, N), y, N, false);
    bool same = true;
    for (int64_t m = 0; m < M; m += 5) {
        jb_matmul(be, 1, N, K, x + m * K, K, &wt, false, BIAS(b, N), y1, N, false);
        same = same && memcmp(y1, y + m * N, (size_t)N * 4) == 0;
    }
    report(same,
           "matmul %-4s W[K,N] M=%lld N=%lld K=%lld: rows equal the M=1 products (bitwise)",
           jb_dtype_name(type),
           (long long)M,
           (long long)N,
           (long long)K);
    free(x), free(wf), free(b), free(y), free(y1), free(wq);
}

/* conv1d and conv_transpose1d on backends b1 and b2 (thread counts or ISA levels), bitwise. */
static void test_conv_same(struct jb_backend *b1, struct jb_backend *b2, const char *what)
{
    const int64_t C = 48, T = 1500;
    float *x = rnd_buf(C * T, 1.0), *w = rnd_buf(C * C * 4, 0.1), *bias = rnd_buf(C, 0.5);
    float *y1 = malloc((size_t)(C * 2 * T) * 4), *y2 = malloc((size_t)(C * 2 * T) * 4);
    float *sc           = malloc(jb_conv1d_scratch(C, C, T, 4, 2, 1, 1) * 4);
    struct jb_tensor w3 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, C, 3 }, w);
    struct jb_tensor w4 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, C, 4 }, w);
    struct jb_tensor bt = tensor(JB_DTYPE_F32, 1, (int64_t[]){ C }, bias);
    bool ok             = true;
    jb_conv1d(b1, x, T, &w3, &bt, 1, 9, 9, y1, NULL);
    jb_conv1d(b2, x, T, &w3, &bt, 1, 9, 9, y2, NULL);
    ok = ok && memcmp(y1, y2, (size_t)(C * T) * 4) == 0;
    /* a dilation near T: most tiles leave out one tap, whose window is all padding */
    jb_conv1d(b1, x, T, &w3, &bt, 1, 700, 700, y1, NULL);
    jb_conv1d(b2, x, T, &w3, &bt, 1, 700, 700, y2, NULL);
    ok = ok && memcmp(y1, y2, (size_t)(C * T) * 4) == 0;
    jb_conv1d(b1, x, T, &w4, &bt, 2, 1, 1, y1, sc);
    jb_conv1d(b2, x, T, &w4, &bt, 2, 1, 1, y2, sc);
    ok = ok && memcmp(y1, y2, (size_t)(C * (T / 2)) * 4) == 0;
    jb_conv_transpose1d(b1, x, T, &w4, &bt, 2, 1, y1, NULL);
    jb_conv_transpose1d(b2, x, T, &w4, &bt, 2, 1, y2, NULL);
    ok = ok && memcmp(y1, y2, (size_t)(C * 2 * T) * 4) == 0;
    report(ok, "conv1d (k3 d9, k3 d700, k4 s2) and conv_transpose1d: %s (bitwise)", what);
    free(x), free(w), free(bias), free(y1), free(y2), free(sc);
}

/* The resblock op on backends b1 and b2: on AVX-512 the narrow blocks run as one fused kernel,
 * elsewhere as gathered tap slices through the conv kernels; both sum in the same order, so they
 * agree bitwise, except where the AVX-512 kernel takes Winograd F(2,3) (dilation >= 16; within
 * rounding here, test_resblock_narrow checks it against double precision). Shapes: the VQ-VAE's
 * (64 and 32 channels), odd row counts, a length that ends mid-tile, ρ ≠ 1, a NaN that must stay
 * NaN, an input of exact zeros, and a dilation past the tile (300). */
static void test_resblock_same(struct jb_backend *b1, struct jb_backend *b2, const char *what)
{
    const int64_t Cs[6] = { 64, 32, 13, 8, 64, 32 }, Ss[6] = { 64, 32, 21, 16, 64, 32 }, T = 1001;
    const int dils[6] = { 9, 5, 1, 3, 27, 300 }; /* the last two: Winograd on AVX-512 */
    bool ok = true, wino_ok = true;
    for (int k = 0; k < 6 && ok && wino_ok; k++) {
        const int64_t C = Cs[k], S = Ss[k];
        float *x = rnd_buf(C * T, 1.0), *w1 = rnd_buf(S * C * 3, 0.2), *w2 = rnd_buf(C * S, 0.2);
        float *bb1 = rnd_buf(S, 0.5), *bb2 = rnd_buf(C, 0.5);
        float *y1 = malloc((size_t)(C * T) * 4), *y2 = malloc((size_t)(C * T) * 4);
        struct jb_tensor t1 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ S, C, 3 }, w1);
        struct jb_tensor t2 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, S, 1 }, w2);
        struct jb_tensor v1 = tensor(JB_DTYPE_F32, 1, (int64_t[]){ S }, bb1);
        struct jb_tensor v2 = tensor(JB_DTYPE_F32, 1, (int64_t[]){ C }, bb2);
        if (k == 2) x[5 * T + 500] = NAN;
        if (k == 3) memset(x, 0, (size_t)(C * T) * 4);
        size_t n1 = jb_resblock_work(b1, &t1, T), n2 = jb_resblock_work(b2, &t1, T);
        float *wk1 = malloc(n1 * 4), *wk2 = malloc(n2 * 4);
        float rho = k == 1 || k == 5 ? 0.7f : 1.0f;
        jb_resblock(b1, x, y1, T, 0, &t1, k == 3 ? NULL : &v1, dils[k], &t2, &v2, rho, wk1);
        jb_resblock(b2, x, y2, T, 0, &t1, k == 3 ? NULL : &v1, dils[k], &t2, &v2, rho, wk2);
        if (k >= 4) { /* Winograd on b2: within rounding of b1's direct sums */
            double *r = dbuf(C * T);
            for (int64_t i = 0; i < C * T; i++)
                r[i] = y1[i];
            wino_ok = memcmp(y1, y2, (size_t)(C * T) * 4) != 0 && rel_err(C * T, y2, r) <= 1e-6;
            free(r);
        } else {
            ok = memcmp(y1, y2, (size_t)(C * T) * 4) == 0;
        }
        if (k == 2) ok = ok && isnan(y1[5 * T + 500]);
        free(x), free(w1), free(w2), free(bb1), free(bb2), free(y1), free(y2), free(wk1), free(wk2);
    }
    report(ok, "resblock (C 64/32/13/8, d 9/5/1/3, ρ 1 and 0.7, NaN): %s (bitwise)", what);
    report(
      wino_ok, "resblock C 64/32, d 27/300: %s within 1e-6 (Winograd F(2,3) on AVX-512)", what);
}

/* The narrow blocks' Winograd F(2,3) path (AVX-512, d >= 16) against a double-precision block:
 * every output within TOL_N of its own scale (|x| + ρ·Σ_s |w2|·(|b1| + Σ |w1·relu(x)|) + |b2|,
 * what its rounding error is proportional to), a NaN input reaching exactly the outputs that
 * read it (columns p − d, p, p + d), and chunks of the sequence (the op's origin) giving the
 * whole's bits. Shapes: the minimum dilation, runs cut by the tiles' vectors, T = 4d exactly, a
 * last run of bases whose partners fall past T, the pairs anchored off column 0, odd channel
 * counts, ρ ≠ 1, no bias. On the other levels the same block runs on the direct sums. */
#define TOL_N 1e-6
static void test_resblock_narrow(struct jb_backend *be)
{
    struct {
        int64_t C, S, T;
        int d;
    } cases[] = {
        { 64, 64, 1001, 27 }, { 32, 32, 1500, 81 }, { 13, 21, 64, 16 }, { 8, 16, 333, 40 }
    };
    bool ok = true;
    for (int k = 0; k < 4 && ok; k++) {
        const int64_t C = cases[k].C, S = cases[k].S, T = cases[k].T, d = cases[k].d;
        const float rho = k == 1 ? 0.7f : 1.0f;
        float *x = rnd_buf(C * T, 1.0), *w1 = rnd_buf(S * C * 3, 0.2), *w2 = rnd_buf(C * S, 0.2);
        float *bb1 = rnd_buf(S, 0.5), *bb2 = rnd_buf(C, 0.5), *y = malloc((size_t)(C * T) * 4);
        const int64_t p     = T / 2 + 3;
        x[(C / 2) * T + p]  = NAN;
        struct jb_tensor t1 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ S, C, 3 }, w1);
        struct jb_tensor t2 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, S, 1 }, w2);
        struct jb_tensor v1 = tensor(JB_DTYPE_F32, 1, (int64_t[]){ S }, bb1);
        struct jb_tensor v2 = tensor(JB_DTYPE_F32, 1, (int64_t[]){ C }, bb2);
        float *wk           = malloc(jb_resblock_work(be, &t1, T) * 4);
        const int64_t org   = 5 * k; /* the whole sequence itself at a column != 0 */
        jb_resblock(be, x, y, T, org, &t1, k == 2 ? NULL : &v1, (int)d, &t2, &v2, rho, wk);
        /* chunks [lo, hi) at column org + lo: the columns whose inputs are all in the chunk
         * (lo + d <= t < hi - d) bitwise the whole's; chunks shorter than 2d and 4d too */
        const int64_t los[5]  = { 1, d - 1, d + 3, 2 * d + 1, T / 3 };
        const int64_t lens[5] = { T - 1, 3 * d + 7, 2 * d - 1, d + 5, T / 2 };
        for (int q = 0; q < 5 && ok; q++) {
            const int64_t lo = los[q], hi = lo + lens[q] < T ? lo + lens[q] : T, n = hi - lo;
            float *xc = malloc((size_t)(C * n) * 4), *yc = malloc((size_t)(C * n) * 4);
            float *wc = malloc(jb_resblock_work(be, &t1, n) * 4);
            for (int64_t c = 0; c < C; c++)
                memcpy(xc + c * n, x + c * T + lo, (size_t)n * 4);
            jb_resblock(
              be, xc, yc, n, org + lo, &t1, k == 2 ? NULL : &v1, (int)d, &t2, &v2, rho, wc);
            double maxd = 0, scale = 0;
            for (int64_t c = 0; c < C; c++)
                for (int64_t t = lo + d; t < hi - d; t++) {
                    const float a = yc[c * n + t - lo], e = y[c * T + t];
                    if (isnan(a) || isnan(e)) {
                        ok = ok && isnan(a) && isnan(e);
                        continue;
                    }
                    maxd  = fmax(maxd, fabs((double)a - e));
                    scale = fmax(scale, fabs((double)e));
                }
            ok = ok && agree(maxd, scale);
            free(xc), free(yc), free(wc);
        }
        double *b = dbuf(S * T), *bs = dbuf(S * T);
        ref_conv1d(x, T, C, S, 3, 1, d, d, w1, k == 2 ? NULL : bb1, true, b, bs, NULL, T);
        for (int64_t i = 0; i < S * T; i++)
            b[i] = b[i] > 0 ? b[i] : 0.0;
        for (int64_t c = 0; c < C && ok; c++)
            for (int64_t t = 0; t < T && ok; t++) {
                const bool reads_nan = t == p - d || t == p || t == p + d;
                if (reads_nan || isnan(y[c * T + t])) {
                    ok = reads_nan && isnan(y[c * T + t]);
                    continue;
                }
                double h = bb2[c], mag = fabs(bb2[c]);
                for (int64_t s = 0; s < S; s++) {
                    h += (double)w2[c * S + s] * b[s * T + t];
                    mag += fabs((double)w2[c * S + s]) * bs[s * T + t];
                }
                const double ref   = (double)x[c * T + t] + rho * h;
                const double scale = fabs((double)x[c * T + t]) + rho * mag;
                ok                 = fabs((double)y[c * T + t] - ref) <= TOL_N * scale;
            }
        free(x), free(w1), free(w2), free(bb1), free(bb2), free(y), free(wk), free(b), free(bs);
    }
    report(ok,
           "resblock narrow, d 27/81/16/40, T 1001/1500/64 (= 4d)/333, C 64/32/13/8, at columns "
           "0/5/10/15: within %.0e of each output's scale (%s), NaN reaches exactly p - d, p, "
           "p + d; chunks (some shorter than 2d) agree with the whole: %s",
           TOL_N,
           g_isa >= JB_CPU_ISA_AMX      ? "AMX bf16x3 at C 64/32"
           : g_isa >= JB_CPU_ISA_AVX512 ? "Winograd F(2,3)"
                                        : "direct sums",
           agree_what());
}

/* Wide blocks (channels + inner channels > 512: the upsampler conditioner's 1024) fold the ReLUs
 * and the residual into the convolutions' packing and epilogues. Where the k = 3 conv runs on
 * the direct kernel (d 729: most taps read padding) they must give bitwise the separate ops'
 * results; where it takes Winograd F(6,3) (d 27; d 150 on its whole 6d blocks and the direct
 * kernel after them; SIMD levels) within TOL of them. All with ρ 1 and 0.7, in place (y = x)
 * bitwise as out of place, with a NaN that must stay NaN and columns of -0.0 and negatives. */
static void test_resblock_wide(struct jb_backend *be)
{
    const int64_t C = 272, S = 264, T = 1001;
    const int dils[3] = { 27, 150, 729 };
    bool ok           = true;
    for (int k = 0; k < 6 && ok; k++) {
        float *x = rnd_buf(C * T, 1.0), *w1 = rnd_buf(S * C * 3, 0.1), *w2 = rnd_buf(C * S, 0.1);
        float *bb1 = rnd_buf(S, 0.5), *bb2 = rnd_buf(C, 0.5);
        float *y = malloc((size_t)(C * T) * 4), *a = malloc((size_t)(C * T) * 4);
        float *b = malloc((size_t)(S * T) * 4), *ref = malloc((size_t)(C * T) * 4);
        x[7 * T + 100] = NAN;
        for (int64_t c = 0; c < C; c++)
            x[c * T + 3] = -0.0f, x[c * T + 4] = -fabsf(x[c * T + 4]);
        struct jb_tensor t1 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ S, C, 3 }, w1);
        struct jb_tensor t2 = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, S, 1 }, w2);
        struct jb_tensor v1 = tensor(JB_DTYPE_F32, 1, (int64_t[]){ S }, bb1);
        struct jb_tensor v2 = tensor(JB_DTYPE_F32, 1, (int64_t[]){ C }, bb2);
        const float rho     = k % 2 ? 0.7f : 1.0f; /* not a power of two: ρ·h rounds */
        const int dil       = dils[k / 2];
        /* the separate ops */
        jb_relu(be, C * T, x, a);
        jb_conv1d(be, a, T, &t1, &v1, 1, dil, dil, b, NULL);
        jb_relu(be, S * T, b, b);
        jb_conv1d(be, b, T, &t2, &v2, 1, 0, 1, a, NULL);
        memcpy(ref, x, (size_t)(C * T) * 4);
        if (rho == 1.0f)
            jb_add(be, C * T, x, a, ref);
        else
            jb_axpy(be, C * T, rho, a, ref);
        /* the op, into y, then in place on a copy of x */
        float *wk = malloc(jb_resblock_work(be, &t1, T) * 4);
        jb_resblock(be, x, y, T, 0, &t1, &v1, dil, &t2, &v2, rho, wk);
        /* d 27: Winograd, d 150: its whole blocks then direct, d 729: direct (AVX2, AVX-512; the
         * amx level runs them all direct) */
        const bool simd     = g_isa >= JB_CPU_ISA_AVX2 && g_isa < JB_CPU_ISA_AMX;
        const int64_t split = simd ? jb_cpu_winograd_split(T, dil) : 0;
        const bool wino     = split > 0;
        ok = wino == (dil != 729 && simd) && (dil != 150 || split < T) && isnan(y[7 * T + 100]);
        if (wino) {
            double *rd = dbuf(C * T);
            for (int64_t i = 0; i < C * T; i++)
                rd[i] = isnan(ref[i]) ? 0.0 : ref[i];
            for (int64_t i = 0; i < C * T; i++) /* the NaN's tiles: compared above */
                if (isnan(y[i]) && isnan(ref[i])) y[i] = 0.0f;
            for (int64_t c = 0; c < C; c++) /* NaN in Winograd's tiles around it only */
                for (int64_t t = 100 - 6 * dil; t <= 100 + 6 * dil; t++)
                    if (t >= 0 && t < T && isnan(y[c * T + t])) y[c * T + t] = (float)rd[c * T + t];
            ok = ok && rel_err(C * T, y, rd) <= TOL;
            free(rd);
        } else {
            ok = ok && memcmp(y, ref, (size_t)(C * T) * 4) == 0;
        }
        float *y_out = malloc((size_t)(C * T) * 4);
        jb_resblock(be, x, y_out, T, 0, &t1, &v1, dil, &t2, &v2, rho, wk);
        memcpy(y, x, (size_t)(C * T) * 4);
        jb_resblock(be, y, y, T, 0, &t1, &v1, dil, &t2, &v2, rho, wk);
        ok = ok && memcmp(y, y_out, (size_t)(C * T) * 4) == 0;
        free(y_out);
        free(x), free(w1), free(w2), free(bb1), free(bb2), free(y), free(a), free(b), free(ref);
        free(wk);
    }
    report(ok,
           "resblock C=272 S=264 T=1001 (whole-sequence convs), d 27 / 150 (Winograd, or its "
           "whole blocks then direct: within %.0e) / 729 (direct: bitwise; all direct at the amx "
           "level), ρ 1/0.7, in place: == separate ops",
           TOL);
}

/* Winograd F(6,3) (the wide blocks' k = 3 convs) against a double-precision conv of the same
 * relu(x), with the direct kernel's error alongside: the largest error of any output relative to
 * the output's own scale Σ|w·x| + |b| (its rounding error is proportional to that, not to |y|,
 * which cancellation can make small). Shapes: dilations 1 to 100, lengths ending mid-tile and
 * mid-block (tiles with 1-3 outputs in range), more than one chunk of tiles, ReLU in and out on
 * and off, a NaN input that must reach exactly the outputs that read it. */
static void test_winograd(struct jb_backend *be, int64_t C, int64_t S, int64_t T, int d, bool relu)
{
    struct jb_cpu *cpu = jb_cpu_of(be);
    float *x = rnd_buf(C * T, 1.0), *w = rnd_buf(S * C * 3, 1.0 / sqrt(3.0 * (double)C));
    float *b = rnd_buf(S, 0.5), *yw = malloc((size_t)(S * T) * 4),
          *yd                        = malloc((size_t)(S * T) * 4);
    float *work                      = malloc(jb_cpu_winograd_work(C, S) * 4);
    const int64_t nan_t              = T / 2;
    x[3 * T + nan_t]                 = NAN;
    struct jb_tensor wt              = tensor(JB_DTYPE_F32, 3, (int64_t[]){ S, C, 3 }, w);
    struct jb_tensor bt              = tensor(JB_DTYPE_F32, 1, (int64_t[]){ S }, b);
    const struct jb_conv_epilogue ep = { .relu_in = relu, .relu_out = relu };
    bool ran    = jb_cpu_conv3_winograd(cpu, x, T, &wt, &bt, d, relu, relu, yw, T, work);
    bool direct = jb_cpu_conv1d_fused(cpu, x, T, &wt, &bt, d, d, yd, &ep);
    if (!ran || !direct) { /* portable level: neither runs */
        report(!ran && !direct && g_isa < JB_CPU_ISA_AVX2,
               "winograd d=%d T=%lld: runs exactly where the direct kernels do",
               d,
               (long long)T);
        free(x), free(w), free(b), free(yw), free(yd), free(work);
        return;
    }
    double ew = 0, ed = 0, *sums = dbuf(S * T), *masses = dbuf(S * T);
    bool nan_ok = true, *nans = malloc((size_t)(S * T) * sizeof *nans);
    ref_conv1d(x, T, C, S, 3, 1, d, d, w, b, relu, sums, masses, nans, T);
    for (int64_t o = 0; o < S; o++)
        for (int64_t t = 0; t < T; t++) {
            double sum        = sums[o * T + t];
            const double mass = masses[o * T + t];
            if (relu && sum < 0) sum = 0;
            const float gw = yw[o * T + t], gd = yd[o * T + t];
            /* a NaN input spreads to the whole tile in Winograd, but never past it: a tile's
             * inputs and outputs span 7d and 5d, so its outputs are within 6d of the NaN */
            if (nans[o * T + t]) {
                nan_ok = nan_ok && isnan(gw) && isnan(gd);
                continue;
            }
            if (t >= nan_t - 6 * d && t <= nan_t + 6 * d && isnan(gw)) continue;
            const double rw = fabs(gw - sum) / mass, rd = fabs(gd - sum) / mass;
            if (!isfinite(gw) || rw > ew) ew = isfinite(gw) ? rw : INFINITY;
            if (!isfinite(gd) || rd > ed) ed = isfinite(gd) ? rd : INFINITY;
        }
    report(ew <= 4e-6 && nan_ok,
           "winograd C=%lld S=%lld T=%lld d=%d relu %s: max err / scale %.2e (direct %.2e), NaN "
           "reaches its outputs",
           (long long)C,
           (long long)S,
           (long long)T,
           d,
           relu ? "on" : "off",
           ew,
           ed);
    free(x), free(w), free(b), free(yw), free(yd), free(work), free(sums), free(masses), free(nans);
}

/* Winograd on backends b1 and b2 (ISA levels, thread counts), bitwise: rows not a multiple of
 * the register tile, more than one chunk of tiles, a short and a long dilation. */
static void test_winograd_same(struct jb_backend *b1, struct jb_backend *b2, const char *what)
{
    const int64_t C = 130, S = 70, T = 3001;
    float *x = rnd_buf(C * T, 1.0), *w = rnd_buf(S * C * 3, 0.1), *b = rnd_buf(S, 0.5);
    float *y1 = malloc((size_t)(S * T) * 4), *y2 = malloc((size_t)(S * T) * 4);
    float *work         = malloc(jb_cpu_winograd_work(C, S) * 4);
    struct jb_tensor wt = tensor(JB_DTYPE_F32, 3, (int64_t[]){ S, C, 3 }, w);
    struct jb_tensor bt = tensor(JB_DTYPE_F32, 1, (int64_t[]){ S }, b);
    bool ok             = true;
    const int dils[2]   = { 3, 81 };
    for (int i = 0; i < 2 && ok; i++) {
        ok =
          jb_cpu_conv3_winograd(jb_cpu_of(b1), x, T, &wt, &bt, dils[i], true, true, y1, T, work) &&
          jb_cpu_conv3_winograd(jb_cpu_of(b2), x, T, &wt, &bt, dils[i], true, true, y2, T, work) &&
          memcmp(y1, y2, (size_t)(S * T) * 4) == 0;
    }
    /* a wide transposed conv (Winograd in its scratch) */
    const int64_t Ci = 300, Co = 230;
    float *xt = rnd_buf(Ci * T, 1.0), *wt4 = rnd_buf(Ci * Co * 4, 0.05), *bt4 = rnd_buf(Co, 0.5);
    float *z1 = malloc((size_t)(Co * 2 * T) * 4), *z2 = malloc((size_t)(Co * 2 * T) * 4);
    float *sc           = malloc(jb_conv_transpose1d_scratch(Ci, Co, T, 4, 2, 1) * 4);
    struct jb_tensor tt = tensor(JB_DTYPE_F32, 3, (int64_t[]){ Ci, Co, 4 }, wt4);
    struct jb_tensor tb = tensor(JB_DTYPE_F32, 1, (int64_t[]){ Co }, bt4);
    jb_conv_transpose1d(b1, xt, T, &tt, &tb, 2, 1, z1, sc);
    jb_conv_transpose1d(b2, xt, T, &tt, &tb, 2, 1, z2, sc);
    ok = ok && memcmp(z1, z2, (size_t)(Co * 2 * T) * 4) == 0;
    report(ok, "winograd C=130 S=70 T=3001 d 3/81, conv_transpose1d 300->230: %s (bitwise)", what);
    free(x), free(w), free(b), free(y1), free(y2), free(work), free(xt), free(wt4), free(bt4),
      free(z1), free(z2), free(sc);
}

/* A whole upsampler conditioner wide enough for Winograd (272 channels: its k = 3 convs, two
 * stride-2 transposed convs, resblock work and conv scratch sharing one buffer) against the same
 * conditioner on the portable level (im2col + sgemm, no Winograd): within TOL after the final
 * LayerNorm. */
static void test_conditioner_wide(struct jb_backend *be)
{
    struct jb_prior_hparams hp = { 0 };
    hp.variant                 = JB_PRIOR_UPSAMPLER;
    hp.level                   = 1;
    hp.n_ctx                   = 1024;
    hp.bins                    = 64;
    hp.raw_to_tokens           = 32;
    hp.tr                 = (struct jb_transformer_hparams){ 300, 1, 1, 0.25f, 1.0f, 2, 128, 1024 };
    hp.n_genres           = 4;
    hp.n_artists          = 4;
    hp.max_bow_genre_size = 1;
    hp.t_bins             = 8;
    hp.sr                 = 44100;
    hp.cond_width         = 272;
    hp.cond_depth         = 4; /* dilations 1, 3, 9, 27 at 256 and 512 steps */
    hp.cond_dilation_growth_rate = 3;
    hp.cond_dilation_cycle       = 8;
    hp.cond_m_conv               = 1.0f;
    hp.cond_downs                = 2;
    hp.cond_stride               = 2;
    hp.alignment_layer = hp.alignment_head = -1;
    struct tc_weights *m                   = tc_weights_new(0);
    bool ok                                = m && tc_build_prior(tc_weights_sink(m), &hp, true);
    struct jb_weights_source src           = tc_weights_source(m);
    struct jb_weights *w                   = ok ? jb_weights_init(&src) : NULL;
    struct jb_backend *bp                  = jb_backend_init("cpu", 2);
    /* the portable level opens OpenBLAS (backend/cpu/blas.h); without it the level stays */
    const bool portable = bp && jb_cpu_set_isa(bp, JB_CPU_ISA_PORTABLE) == JB_CPU_ISA_PORTABLE;
    tc_check(portable,
             "a backend lowered to the portable level (it opens OpenBLAS)%s%s",
             portable ? "" : ": ",
             portable ? "" : jb_last_error());
    struct jb_upsampler_cond *u1 = w ? jb_upsampler_cond_init(&hp, w, be) : NULL;
    struct jb_upsampler_cond *u2 = w && bp ? jb_upsampler_cond_init(&hp, w, bp) : NULL;
    const int64_t n = (int64_t)hp.n_ctx * hp.tr.width, nu = u1 ? jb_upsampler_cond_n_upper(u1) : 0;
    float *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
    double *r  = dbuf(n);
    int32_t *z = malloc((size_t)(nu > 0 ? nu : 1) * 4);
    for (int64_t i = 0; i < nu; i++)
        z[i] = (int32_t)((i * 2654435761u) % (uint32_t)hp.bins);
    double e = INFINITY;
    if (u1 && u2 && jb_upsampler_cond_forward(u1, z, y1) == JB_STATUS_OK &&
        jb_upsampler_cond_forward(u2, z, y2) == JB_STATUS_OK) {
        for (int64_t i = 0; i < n; i++)
            r[i] = y2[i];
        e = rel_err(n, y1, r);
    }
    report(e <= TOL,
           "upsampler conditioner, width 272 (Winograd on AVX2 and AVX-512, AMX tiles at the amx "
           "level): %s == portable, relerr %.2e",
           jb_cpu_isa_name(jb_cpu_of(be)->isa),
           e);
    jb_upsampler_cond_free(u1);
    jb_upsampler_cond_free(u2);
    jb_backend_free(bp);
    jb_weights_free(w);
    tc_weights_free(m);
    free(y1), free(y2), free(r), free(z);
}

/* Codes from AVX2 (1x1 conv, then the scan) and AVX-512 (fused) must agree bitwise, also where
 * distances tie or nearly tie: random codebooks with repeated rows, bins not a multiple of the
 * register tile, T not a multiple of the column tile, and a chunk of the sequence (the codes of a
 * step do not depend on where the block starts). */
static void test_vq_same(struct jb_backend *b1, struct jb_backend *b2, const char *what)
{
    const int64_t binss[3] = { 2048, 77, 16 }, embs[3] = { 64, 32, 3 }, T = 1001;
    bool ok = true;
    for (int k = 0; k < 3 && ok; k++) {
        const int64_t bins = binss[k], emb = embs[k];
        float *x = rnd_buf(emb * T, 1.0), *kb = rnd_buf(bins * emb, 1.0);
        memcpy(kb + (bins / 2) * emb, kb, (size_t)(bins / 2 * emb) * 4); /* repeated rows */
        int32_t *c1 = malloc((size_t)T * 4), *c2 = malloc((size_t)T * 4), *c3 = malloc(400 * 4);
        float *sc   = malloc(jb_vq_argmin_scratch(bins, emb, T) * 4);
        float *part = malloc((size_t)(emb * 400) * 4);
        for (int64_t e = 0; e < emb; e++) /* steps [301, 701) as a sequence of their own */
            memcpy(part + e * 400, x + e * T + 301, 400 * 4);
        struct jb_tensor kt = tensor(JB_DTYPE_F32, 2, (int64_t[]){ bins, emb }, kb);
        jb_vq_argmin(b1, x, T, &kt, c1, sc);
        jb_vq_argmin(b2, x, T, &kt, c2, sc);
        jb_vq_argmin(b2, part, 400, &kt, c3, sc);
        ok = memcmp(c1, c2, (size_t)T * 4) == 0 && memcmp(c1 + 301, c3, 400 * 4) == 0;
        free(x), free(kb), free(c1), free(c2), free(c3), free(sc), free(part);
    }
    report(ok, "vq_argmin (bins 2048/77/16, emb 64/32/3, a chunk): %s (bitwise)", what);
}

struct nested_ctx {
    struct jb_backend *be;
    int64_t M, N, K, C, T;
    const float *x, *xc;
    const struct jb_tensor *wt, *ct;
    float *yp[4], *cp[4];
    _Atomic int slot_busy[4];
    _Atomic int clash;
};

/* One task per item: the products run nested, serially on the task's slot (and arena). */
static void nested_task(void *arg, int64_t i0, int64_t i1, int slot)
{
    struct nested_ctx *c = arg;
    if (c->slot_busy[slot]++) c->clash = 1; /* two tasks on one slot at once */
    for (int64_t i = i0; i < i1; i++)
        for (int rep = 0; rep < 5; rep++) {
            jb_matmul(
              c->be, c->M, c->N, c->K, c->x, c->K, c->wt, false, NULL, c->yp[i], c->N, false);
            jb_conv1d(c->be, c->xc, c->T, c->ct, NULL, 1, 3, 3, c->cp[i], NULL);
        }
    c->slot_busy[slot]--;
}

/* Kernels called from inside the backend's own pool tasks run serially on the task's slot: four
 * tasks doing products at once must get the serial results. */
static void test_nested(struct jb_backend *be)
{
    const int64_t M = 9, N = 300, K = 200, C = 16, T = 500;
    float *x = rnd_buf(M * K, 1.0), *wf = rnd_buf(N * K, 0.05), *xc = rnd_buf(C * T, 1.0);
    float *wc = rnd_buf(C * C * 3, 0.1);
    float *ys = malloc((size_t)(M * N) * 4), *cs = malloc((size_t)(C * T) * 4);
    uint16_t *wq = malloc((size_t)(N * K) * 2);
    jb_convert_from_f32(JB_DTYPE_F16, wf, wq, (size_t)(N * K));
    struct jb_tensor wt = tensor(JB_DTYPE_F16, 2, (int64_t[]){ K, N }, wq);
    struct jb_tensor ct = tensor(JB_DTYPE_F32, 3, (int64_t[]){ C, C, 3 }, wc);
    jb_matmul(be, M, N, K, x, K, &wt, false, NULL, ys, N, false);
    jb_conv1d(be, xc, T, &ct, NULL, 1, 3, 3, cs, NULL);
    struct nested_ctx c = { .be = be, .M = M, .N = N, .K = K, .C = C, .T = T, .x = x, .xc = xc };
    c.wt                = &wt;
    c.ct                = &ct;
    for (int i = 0; i < 4; i++) {
        c.yp[i] = malloc((size_t)(M * N) * 4);
        c.cp[i] = malloc((size_t)(C * T) * 4);
    }
    jb_pool_for(jb_cpu_of(be)->pool, 4, 1, nested_task, &c);
    bool ok = !c.clash;
    for (int i = 0; i < 4; i++)
        ok = ok && memcmp(c.yp[i], ys, (size_t)(M * N) * 4) == 0 &&
             memcmp(c.cp[i], cs, (size_t)(C * T) * 4) == 0;
    report(ok, "matmul and conv1d called from inside the backend's pool tasks (bitwise)");
    free(x), free(wf), free(xc), free(wc), free(ys), free(cs), free(wq);
    for (int i = 0; i < 4; i++)
        free(c.yp[i]), free(c.cp[i]);
}

struct two_ctx {
    struct jb_backend *be;
    const float *x;
    const struct jb_tensor *w;
    const float *expect;
    int64_t M, N, K;
    bool ok;
};

static void *two_main(void *p)
{
    struct two_ctx *c = p;
    float *y          = malloc((size_t)(c->M * c->N) * 4);
    c->ok             = y != NULL;
    for (int rep = 0; c->ok && rep < 30; rep++) {
        jb_matmul(c->be, c->M, c->N, c->K, c->x, c->K, c->w, false, NULL, y, c->N, false);
        c->ok = memcmp(y, c->expect, (size_t)(c->M * c->N) * 4) == 0;
    }
    free(y);
    return NULL;
}

/* Two backends (2 threads each) used at the same time from two threads of the program, as a
 * daemon serving two model sets does: each keeps its own pool and gets the serial results. */
static void test_two_backends(void)
{
    const int64_t M = 64, N = 512, K = 384;
    struct jb_backend *b[2] = { jb_backend_init("cpu", 2), jb_backend_init("cpu", 2) };
    float *x = rnd_buf(M * K, 1.0), *wf = rnd_buf(N * K, 0.05);
    float *ys           = malloc((size_t)(M * N) * 4);
    struct jb_tensor wt = tensor(JB_DTYPE_F32, 2, (int64_t[]){ K, N }, wf);
    bool ok             = b[0] && b[1] && x && wf && ys;
    if (ok) {
        jb_cpu_set_isa(b[0], g_isa);
        jb_cpu_set_isa(b[1], g_isa);
        jb_matmul(b[0], M, N, K, x, K, &wt, false, NULL, ys, N, false);
        struct two_ctx c[2];
        pthread_t th[2];
        bool started[2] = { false, false };
        for (int i = 0; i < 2; i++) {
            c[i]       = (struct two_ctx){ b[i], x, &wt, ys, M, N, K, false };
            started[i] = pthread_create(&th[i], NULL, two_main, &c[i]) == 0;
            ok         = ok && started[i];
        }
        for (int i = 0; i < 2; i++)
            if (started[i]) pthread_join(th[i], NULL);
        ok = ok && c[0].ok && c[1].ok && jb_pool_threads(jb_cpu_of(b[0])->pool) == 2 &&
             jb_cpu_of(b[0])->pool != jb_cpu_of(b[1])->pool;
    }
    report(ok, "two 2-thread backends used at once from two threads: own pools, same results");
    jb_backend_free(b[0]);
    jb_backend_free(b[1]);
    free(x), free(wf), free(ys);
}

/* The W [K, N] products (GEMV for M <= 4, packed tiles above) on AVX2 and AVX-512, bitwise. */
static void test_matmul_isa(struct jb_backend *b2, struct jb_backend *b5, int64_t N, int64_t K)
{
    const int64_t Ms[] = { 1, 2, 3, 32 };
    float *x = rnd_buf(32 * K, 1.0), *wf = rnd_buf(N * K, 0.05), *b = rnd_buf(N, 0.5);
    float *y2 = malloc((size_t)(32 * N) * 4), *y5 = malloc((size_t)(32 * N) * 4);
    void *wq = malloc((size_t)(N * K) * 2);
    bool ok  = true;
    for (int t = 0; t < 2; t++) {
        enum jb_dtype type = t ? JB_DTYPE_F16 : JB_DTYPE_F32;
        if (t) jb_convert_from_f32(type, wf, wq, (size_t)(N * K));
        struct jb_tensor wt = tensor(type, 2, (int64_t[]){ K, N }, t ? wq : (void *)wf);
        for (int i = 0; i < 4; i++) {
            jb_matmul(b2, Ms[i], N, K, x, K, &wt, false, BIAS(b, N), y2, N, false);
            jb_matmul(b5, Ms[i], N, K, x, K, &wt, false, BIAS(b, N), y5, N, false);
            ok = ok && memcmp(y2, y5, (size_t)(Ms[i] * N) * 4) == 0;
        }
    }
    report(ok,
           "matmul f32/f16 W[K,N] M=1,2,3,32 N=%lld K=%lld: avx2 == avx512 (bitwise)",
           (long long)N,
           (long long)K);
    free(x), free(wf), free(b), free(y2), free(y5), free(wq);
}

/* --- elementwise ------------------------------------------------------------------------------ */

static void test_layernorm(struct jb_backend *be, int64_t rows, int64_t W, double offset)
{
    float *x = rnd_buf(rows * W, 2.0), *g = rnd_buf(W, 1.0), *bt = rnd_buf(W, 1.0);
    for (int64_t i = 0; i < rows * W; i++)
        x[i] += (float)offset;
    float *y    = malloc((size_t)(rows * W) * 4);
    double *ref = dbuf(rows * W);
    for (int64_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < W; i++)
            mean += x[r * W + i];
        mean /= (double)W;
        for (int64_t i = 0; i < W; i++)
            var += (x[r * W + i] - mean) * (x[r * W + i] - mean);
        var /= (double)W;
        for (int64_t i = 0; i < W; i++)
            ref[r * W + i] = (x[r * W + i] - mean) / sqrt(var + 1e-5) * g[i] + bt[i];
    }
    struct jb_tensor gt  = tensor(JB_DTYPE_F32, 1, (int64_t[]){ W }, g);
    struct jb_tensor btt = tensor(JB_DTYPE_F32, 1, (int64_t[]){ W }, bt);
    jb_layernorm(be, rows, W, x, &gt, &btt, 1e-5f, y);
    double e = rel_err(rows * W, y, ref);
    jb_layernorm(be, rows, W, x, &gt, &btt, 1e-5f, x); /* in place */
    bool same = memcmp(x, y, (size_t)(rows * W) * 4) == 0;
    report(e <= TOL && same,
           "layernorm rows=%lld W=%lld offset=%g  relerr=%.2e, in-place identical",
           (long long)rows,
           (long long)W,
           offset,
           e);
    free(x), free(g), free(bt), free(y), free(ref);
}

static void test_softmax(struct jb_backend *be, int64_t rows, int64_t n)
{
    float *x = rnd_buf(rows * n, 8.0);
    for (int64_t r = 0; r < rows; r++) /* causal-style mask: -1e9 past the diagonal */
        for (int64_t i = r % n + 1; i < n; i++)
            x[r * n + i] = x[r * n + i] * 1.0f - 1e9f;
    double *ref = dbuf(rows * n);
    for (int64_t r = 0; r < rows; r++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++)
            mx = x[r * n + i] > mx ? x[r * n + i] : mx;
        for (int64_t i = 0; i < n; i++)
            sum += exp(x[r * n + i] - mx);
        for (int64_t i = 0; i < n; i++)
            ref[r * n + i] = exp(x[r * n + i] - mx) / sum;
    }
    jb_softmax_rows(be, rows, n, x);
    double e = rel_err(rows * n, x, ref);
    report(e <= TOL,
           "softmax rows=%lld n=%lld (with -1e9 entries)  relerr=%.2e",
           (long long)rows,
           (long long)n,
           e);
    free(x), free(ref);
}

/* F16C's fp32 -> fp16 (the half KV cache's appends) against the scalar jb_f32_to_f16, bitwise:
 * a stride through all 2^32 bit patterns, and every pattern around the boundaries of the fp16
 * range (subnormals, overflow to inf, rounding ties) and NaN payloads. */
static void test_to_f16(void)
{
    enum { N = 1 << 20 };
    float *src    = malloc(N * sizeof *src);
    uint16_t *dst = malloc(N * sizeof *dst);
    int n         = 0;
    uint32_t u    = 0;
    for (; n < N / 2; n++, u += 8191u) /* 8191 is odd: a stride over every bit pattern */
        src[n] = jb_bits_f32(u);
    const uint32_t edges[] = { 0x00000000u, 0x33000000u, 0x387fc000u, 0x38800000u,
                               0x477fe000u, 0x477ff000u, 0x7f800000u, 0x7fc00000u };
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        for (uint32_t d = 0; d < 16384 && n + 1 < N; d++) {
            src[n++] = jb_bits_f32(edges[e] + d);
            src[n++] = jb_bits_f32((edges[e] + d) | 0x80000000u);
        }
    jb_cpu_to_f16_avx2(src, dst, n);
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++)
        if (dst[i] != jb_f32_to_f16(src[i])) bad = i;
    report(bad < 0,
           "F16C fp32->fp16 bitwise equal to jb_f32_to_f16 on %d bit patterns%s",
           n,
           bad < 0 ? "" : " (differs)");
    if (bad >= 0)
        fprintf(stderr,
                "  first difference: 0x%08x -> 0x%04x, want 0x%04x\n",
                (unsigned)jb_f32_bits(src[bad]),
                dst[bad],
                jb_f32_to_f16(src[bad]));
    free(src), free(dst);
}

/* quick_gelu element by element against x / (1 + e^t) in double, t = −1.702·x in fp32, over the
 * whole range where its exp overflows or underflows in fp32, and at ±0, ±inf and NaN. */
static void test_quick_gelu_edges(struct jb_backend *be)
{
    enum { N_GRID = 48001 };
    const float special[] = {
        0.0f, -0.0f, 1e-30f, -1e-30f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN
    };
    const int n_sp = (int)(sizeof special / sizeof special[0]);
    const int n    = N_GRID + n_sp;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    for (int i = 0; i < N_GRID; i++) /* -120 .. 120 in steps of 0.005 */
        x[i] = -120.0f + 0.005f * (float)i;
    memcpy(x + N_GRID, special, sizeof special);
    memcpy(y, x, (size_t)n * sizeof *y);
    jb_quick_gelu(be, n, y);
    double worst = 0;
    int bad      = -1;
    for (int i = 0; i < n && bad < 0; i++) {
        /* t in fp32, as the reference computes it (its rounding alone moves e^t by up to 40 ulp
         * at |t| ~ 80) */
        const float t    = -1.702f * x[i];
        const double ref = (double)x[i] / (1.0 + exp((double)t));
        if (isnan(ref) || isnan(y[i])) { /* NaN in, and -inf (-inf · 0), give NaN */
            if (isnan(ref) != isnan(y[i])) bad = i;
            continue;
        }
        if (isinf(ref) || isinf(y[i])) {
            if (ref != (double)y[i]) bad = i;
            continue;
        }
        /* 4 ulp of the result, or 1e-36 absolute where the reference is below fp32's normals */
        const double err = fabs((double)y[i] - ref) / fmax(fabs(ref) * 4.0 * FLT_EPSILON, 1e-36);
        if (err > worst) worst = err;
        if (err > 1.0) bad = i;
    }
    char where[64] = "";
    if (bad >= 0) snprintf(where, sizeof where, "; fails at x = %g", (double)x[bad]);
    report(bad < 0,
           "quick_gelu element-wise within 4 ulp over [-120, 120], ±0, ±inf, NaN (worst %.2f of "
           "the bound%s)",
           worst,
           where);
    free(x), free(y);
}

static void test_elementwise(struct jb_backend *be, int64_t n)
{
    float *a = rnd_buf(n, 6.0), *b = rnd_buf(n, 1.0), *y = malloc((size_t)n * 4);
    double *ref = dbuf(n);
    double e;

    for (int64_t i = 0; i < n; i++)
        ref[i] = a[i] / (1.0 + exp(-1.702 * a[i]));
    memcpy(y, a, (size_t)n * 4);
    jb_quick_gelu(be, n, y);
    e = rel_err(n, y, ref);
    report(e <= TOL, "quick_gelu n=%lld  relerr=%.2e", (long long)n, e);

    for (int64_t i = 0; i < n; i++)
        ref[i] = a[i] > 0 ? a[i] : 0.0;
    jb_relu(be, n, a, y);
    e = rel_err(n, y, ref);
    report(e == 0.0, "relu n=%lld  relerr=%.2e", (long long)n, e);

    for (int64_t i = 0; i < n; i++)
        ref[i] = (double)a[i] + b[i];
    jb_add(be, n, a, b, y);
    e = rel_err(n, y, ref);
    report(e <= TOL, "add n=%lld  relerr=%.2e", (long long)n, e);

    for (int64_t i = 0; i < n; i++)
        ref[i] = (double)b[i] + 0.25 * a[i];
    memcpy(y, b, (size_t)n * 4);
    jb_axpy(be, n, 0.25f, a, y);
    e = rel_err(n, y, ref);
    report(e <= TOL, "axpy n=%lld  relerr=%.2e", (long long)n, e);
    free(a), free(b), free(y), free(ref);
}

static void test_embedding(struct jb_backend *be, enum jb_dtype type)
{
    const int64_t V = 37, W = 1925, n = 9;
    float *tf = rnd_buf(V * W, 1.0);
    void *tq  = malloc((size_t)(V * W) * jb_dtype_size(type));
    jb_convert_from_f32(type, tf, tq, (size_t)(V * W));
    jb_convert_to_f32(type, tq, tf, (size_t)(V * W));
    int32_t ids[9]     = { 0, 36, 5, 5, 17, 1, 35, 0, 20 };
    float *out         = malloc((size_t)(n * W) * 4);
    struct jb_tensor t = tensor(type, 2, (int64_t[]){ V, W }, tq);
    jb_embedding(be, &t, ids, n, out);
    bool ok = true;
    for (int64_t i = 0; i < n; i++)
        ok = ok && memcmp(out + i * W, tf + ids[i] * W, (size_t)W * 4) == 0;
    report(ok,
           "embedding %s V=%lld W=%lld n=%lld (exact)",
           jb_dtype_name(type),
           (long long)V,
           (long long)W,
           (long long)n);
    free(tf), free(tq), free(out);
}

/* Exact: element (r, c) of every shape lands at (c, r), whatever the ISA level and threads. The
 * shapes cover whole 16 x 16 blocks, a band of fewer than 16 rows, columns after the last whole
 * block, a single row or column, and one large enough to be shared over the pool. */
static void test_transpose(struct jb_backend *be)
{
    const int64_t shapes[][2] = { { 37, 70 }, { 16, 16 }, { 15, 33 },    { 1, 40 },
                                  { 40, 1 },  { 64, 48 }, { 1030, 2050 } };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t rows = shapes[k][0], cols = shapes[k][1], n = rows * cols;
        float *x = rnd_buf(n, 1.0), *y = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++)
            y[i] = NAN;
        jb_transpose(be, x, rows, cols, y);
        int64_t bad = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                bad += memcmp(&y[c * rows + r], &x[r * cols + c], sizeof *y) != 0;
        report(bad == 0,
               "transpose (%lld, %lld): %lld elements misplaced (exact)",
               (long long)rows,
               (long long)cols,
               (long long)bad);
        free(x), free(y);
    }
}

/* --- vq_argmin
 * ------------------------------------------------------------------------------------- */

static double vq_dist(const float *x, int64_t T, int64_t t, const float *kb, int64_t emb, int64_t j)
{
    double d = 0;
    for (int64_t e = 0; e < emb; e++) {
        double v = (double)x[e * T + t] - kb[j * emb + e];
        d += v * v;
    }
    return d;
}

/* exact: entries are multiples of 1/8 in [-2, 2], so every product and partial sum is exact in
 * fp32 whatever the summation order, and equal codebook rows give exactly equal distances */
static void test_vq(struct jb_backend *be, int64_t T, int64_t bins, int64_t emb, bool exact)
{
    float *x = rnd_buf(emb * T, 1.0), *kb = rnd_buf(bins * emb, 1.0);
    if (exact) {
        for (int64_t i = 0; i < emb * T; i++)
            x[i] = roundf(x[i] * 16.0f) / 8.0f;
        for (int64_t i = 0; i < bins * emb; i++)
            kb[i] = roundf(kb[i] * 16.0f) / 8.0f;
    }
    /* forced ties: the second half of the codebook repeats the first, so every winner must be in
     * the first half; and x[:, 0] sits exactly on code 3 (repeated at 3 + bins/2) */
    int64_t half = bins / 2;
    memcpy(kb + half * emb, kb, (size_t)(half * emb) * 4);
    for (int64_t e = 0; e < emb; e++)
        x[e * T + 0] = kb[3 * emb + e];
    int32_t *codes      = malloc((size_t)T * 4);
    float *scratch      = malloc(jb_vq_argmin_scratch(bins, emb, T) * 4);
    struct jb_tensor kt = tensor(JB_DTYPE_F32, 2, (int64_t[]){ bins, emb }, kb);
    jb_vq_argmin(be, x, T, &kt, codes, scratch);

    /* each pick must be a true minimum up to fp32 rounding of the distance (|x|² + |k|² scale) */
    int64_t bad = 0, dup = 0;
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        double best = INFINITY, xn = 0;
        for (int64_t j = 0; j < bins; j++) {
            double d = vq_dist(x, T, t, kb, emb, j);
            best     = d < best ? d : best;
        }
        for (int64_t e = 0; e < emb; e++)
            xn += (double)x[e * T + t] * x[e * T + t];
        if (codes[t] < 0 || codes[t] >= bins) {
            bad++;
            continue;
        }
        double excess = (vq_dist(x, T, t, kb, emb, codes[t]) - best) / (xn + (double)emb);
        worst         = excess > worst ? excess : worst;
        bad += excess > (exact ? 0.0 : 1e-6);
        dup += codes[t] >= half;
    }
    /* with rounded dot products a duplicate may win by a rounding hair; with exact arithmetic (or
     * the direct kernel, where equal rows give equal dots) the first index must */
    bool need_first = exact || g_isa >= JB_CPU_ISA_AVX2;
    bool ok         = bad == 0 && (!need_first || (dup == 0 && codes[0] == 3));
    report(ok,
           "vq_argmin T=%lld bins=%lld emb=%lld%s: %lld bad picks, worst excess %.1e, %lld "
           "second-copy picks, tie at t=0 -> %d (want 3)",
           (long long)T,
           (long long)bins,
           (long long)emb,
           exact ? " exact" : "",
           (long long)bad,
           worst,
           (long long)dup,
           codes[0]);
    free(x), free(kb), free(codes), free(scratch);
}

/* --- backend API
 * ------------------------------------------------------------------------------------ */

static void test_backend_api(void)
{
    struct jb_backend *be = jb_backend_init("tpu", 0);
    report(be == NULL && strstr(jb_last_error(), "backend 'tpu' is not available in this build"),
           "jb_backend_init(\"tpu\") -> NULL, \"%s\"",
           jb_last_error());
#ifdef ENCORE_HAVE_CUDA
    report(strcmp(jb_backends_available(), "cpu,cuda") == 0,
           "jb_backends_available() -> %s",
           jb_backends_available());
    be = jb_backend_init("cuda:999", 0); /* no machine has that many GPUs */
    report(be == NULL && (strstr(jb_last_error(), "no such device") ||
                          strstr(jb_last_error(), "no CUDA device")),
           "jb_backend_init(\"cuda:999\") -> NULL, \"%s\"",
           jb_last_error());
#else
    report(strcmp(jb_backends_available(), "cpu") == 0,
           "jb_backends_available() -> %s",
           jb_backends_available());
    be = jb_backend_init("cuda", 0);
    report(be == NULL && strstr(jb_last_error(), "this build has no CUDA backend"),
           "jb_backend_init(\"cuda\") -> NULL, \"%s\"",
           jb_last_error());
#endif
    report(jb_backend_init("cuda:x", 0) == NULL && jb_backend_init("cudax", 0) == NULL,
           "malformed cuda names refused");
    be = jb_backend_init(NULL, 0);
    report(be && strcmp(jb_backend_name(be), "cpu") == 0 && be->n_threads >= 1 &&
             jb_backend_supports(be, JB_OP_CONV1D),
           "jb_backend_init(NULL, 0) -> %s with %d threads",
           jb_backend_name(be),
           be ? be->n_threads : 0);
    if (be) {
        void *buf = jb_backend_alloc(be, 1000);
        report(buf && ((uintptr_t)buf & 63) == 0, "jb_backend_alloc is 64-byte aligned");
        jb_backend_free_buffer(be, buf);
    }
    jb_backend_free(be);
    jb_backend_free(NULL);
}

/* --- main
 * ----------------------------------------------------------------------------------------- */

static void run_all(struct jb_backend *be, struct jb_backend *be1, struct jb_backend *be3)
{
    /* conv1d: the VQ-VAE residual convs (dilations up to 2187, with padding longer than the
     * sequence), the strided down-sampling conv, k = 1, Cin = 1, Cout = 1 */
    const int dils[] = { 1, 3, 9, 27, 2187 };
    for (size_t i = 0; i < sizeof dils / sizeof dils[0]; i++) {
        test_conv1d(be, 32, 32, 3, 1, dils[i], dils[i], 50, true);
        test_conv1d(be, 64, 64, 3, 1, dils[i], dils[i], 3000, true);
    }
    test_conv1d(be, 7, 13, 3, 1, 27, 27, 5, true);
    test_conv1d(be, 64, 64, 3, 1, 243, 243, 1, true);
    test_conv1d(be, 64, 64, 4, 2, 1, 1, 1001, true);
    test_conv1d(be, 64, 32, 4, 2, 1, 1, 8, true);
    test_conv1d(be, 64, 32, 4, 2, 1, 1, 3, false);
    test_conv1d(be, 1, 64, 4, 2, 1, 1, 4000, true);
    test_conv1d(be, 1, 64, 4, 2, 1, 1, 2, true);
    test_conv1d(be, 16, 24, 3, 2, 3, 2, 777, true); /* stride 2: odd pad, dilated taps */
    test_conv1d(be, 8, 9, 5, 2, 0, 3, 100, false);
    test_conv1d(be, 64, 64, 1, 1, 0, 1, 777, true);
    test_conv1d(be, 64, 1, 3, 1, 1, 1, 2049, true);
    test_conv1d(be, 19, 21, 5, 3, 2, 2, 301, true);
    test_conv1d(be, 130, 70, 3, 1, 1, 1, 200, false);
    test_conv1d(be, 64, 64, 20, 1, 5, 1, 100, true); /* more taps than the direct kernel takes */
    /* wide "same" k = 3 convs (the conditioner's first conv): by Winograd where it pays over the
     * whole length (two chunks of tiles at d 1, T = 3001; d 3 at T = 1008), else direct (d 400,
     * T = 1001: most taps read padding) */
    test_conv1d(be, 300, 240, 3, 1, 1, 1, 3001, true);
    test_conv1d(be3, 300, 240, 3, 1, 3, 3, 1008, false);
    test_conv1d(be, 300, 240, 3, 1, 400, 400, 1001, true);
    for (int64_t co = 1; co <= 12; co++) /* every row-tail width of the register tiles */
        test_conv1d(be, 5, co, 3, 1, 2, 2, 61, co % 2);

    test_transpose(be);
    test_transpose(be1);
    test_transpose(be3);
    test_resblock_wide(be);
    test_resblock_narrow(be);
    if (g_isa >= JB_CPU_ISA_AVX2) test_conditioner_wide(be);
    test_winograd(be, 40, 24, 301, 1, true);
    test_winograd(be, 40, 24, 302, 3, false);
    test_winograd(be, 40, 24, 97, 9, true);
    test_winograd(be, 40, 24, 1001, 27, true);
    test_winograd(be, 40, 24, 1001, 100, false);
    test_winograd(be, 33, 17, 64, 5, true);
    test_winograd(be3, 130, 70, 3001, 1, true); /* two chunks of tiles, 3 threads */
    test_conv1d_chunk(be, 32, 3, 1, 1, 1, 3000, 517, 2100);
    test_conv1d_chunk(be, 32, 3, 1, 27, 27, 3000, 300, 1500);
    test_conv1d_chunk(be, 32, 3, 1, 243, 243, 3000, 1, 2999);
    test_conv1d_chunk(be, 32, 3, 1, 729, 729, 3000, 100, 2900);
    test_conv1d_chunk(be, 160, 3, 1, 27, 27, 1000, 301, 777);  /* wide: AMX tiles at that level */
    test_conv1d_chunk(be, 160, 3, 1, 729, 729, 1500, 2, 1499); /* edge blocks: taps on padding */
    test_conv1d_chunk(be, 32, 4, 2, 1, 1, 3000, 602, 2222);

    /* conv_transpose1d: the VQ-VAE / conditioner up-sampling (k4 s2 p1), odd/even T, T = 1 */
    const int64_t Ts[] = { 1, 2, 7, 8, 100, 1001 };
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++)
        test_convt(be, 32, 64, 4, 2, 1, Ts[i], true);
    test_convt(be, 64, 64, 4, 2, 1, 4096, true);
    test_convt(be, 96, 40, 4, 2, 1, 300, true); /* weights prefetched 32 input channels ahead */
    /* wide: by Winograd (two chunks of tiles at T = 4001), where the op is given its scratch */
    test_convt(be, 300, 240, 4, 2, 1, 64, true);
    test_convt(be, 257, 300, 4, 2, 1, 301, false);
    test_convt(be3, 300, 240, 4, 2, 1, 4001, true);
    test_convt(be, 64, 1, 4, 2, 1, 33, false);
    test_convt(be, 5, 9, 3, 1, 1, 40, true);
    test_convt(be, 5, 9, 5, 2, 2, 40, true);
    test_convt(be, 6, 10, 7, 3, 2, 41, true);
    test_convt(be, 6, 10, 4, 2, 0, 17, true);
    for (int64_t co = 1; co <= 6; co++)
        test_convt(be, 3, co, 4, 2, 1, 29, co % 2);
    test_convt_chunk(be, 32, 2000, 333, 1500);

    /* matmul: every dtype and layout, the token-by-token M = 1..4, the prefill sizes */
    const enum jb_dtype types[] = { JB_DTYPE_F32, JB_DTYPE_F16, JB_DTYPE_BF16 };
    const int64_t Ms[]          = { 1, 2, 3, 4, 7, 64 };
    for (int ti = 0; ti < 3; ti++)
        for (int tr = 0; tr < 2; tr++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                test_matmul(be, types[ti], tr, Ms[mi], 300, 257, true, false);
                test_matmul(be, types[ti], tr, Ms[mi], 77, 1000, mi % 2, true);
            }
    test_matmul(be, JB_DTYPE_F16, false, 1, 1920, 1920, true, false);
    test_matmul(be, JB_DTYPE_F16, true, 1, 2048, 1920, false, false);
    test_matmul(be, JB_DTYPE_F16, false, 32, 1920, 1920, true, false);
    test_matmul(be, JB_DTYPE_F32, false, 2, 3, 5, true, true);
    test_matmul(be, JB_DTYPE_F16, true, 5, 1, 600, true, false);
    test_matmul(be, JB_DTYPE_BF16, false, 1, 4800, 600, false, false);
    test_matmul(be, JB_DTYPE_F32, false, 3, 40, 0, true, true);
    test_matmul(be3, JB_DTYPE_F16, false, 200, 40, 64, true, false); /* threads over M */
    test_matmul(be3, JB_DTYPE_F32, true, 100, 17, 33, false, true);
    for (int64_t n = 1; n <= 100; n += 3) /* every tail width of the column loops, one slice */
        test_matmul(be1, (enum jb_dtype)(n % 3), n % 2, 5 + n % 3, n, 40, true, n % 5 == 0);
    for (int64_t n = 181; n <= 200; n++)
        test_matmul(be1, JB_DTYPE_F32, false, 6, n, 17, false, false);
    /* W of >= 1 MiB and K >= 512: a token step's GEMV cut in two over K (cpu_matmul.c) */
    for (int ti = 0; ti < 3; ti++)
        for (int64_t m = 1; m <= 4; m++)
            test_matmul(be, types[ti], false, m, 601, 1000, m % 2, m > 2);
    test_matmul(be, JB_DTYPE_F32, false, 2, 77, 20000, true, true);
    test_matmul(be3, JB_DTYPE_F16, false, 3, 1920, 1920, true, false);
    /* M > 4 on fp32 tiles read in place (two column blocks, cut over K) and on converted tiles
     * prefetched while the one before is computed */
    test_matmul(be, JB_DTYPE_F32, false, 37, 1040, 600, true, true);
    test_matmul(be3, JB_DTYPE_F16, false, 37, 1040, 600, true, false);
    test_matmul(be3, JB_DTYPE_F32, false, 9, 1030, 130, false, true);
    for (int ti = 0; ti < 3; ti++) {
        test_matmul_threads(be1, be3, types[ti], false, 1, 1000, 300);
        test_matmul_threads(be1, be3, types[ti], true, 3, 1000, 300);
        test_matmul_threads(be1, be3, types[ti], false, 1, 1000, 600);
        test_matmul_threads(be1, be3, types[ti], false, 4, 601, 1000);
        /* W small enough for cache and rows enough: the threads split M, not N */
        test_matmul_threads(be1, be3, types[ti], false, 97, 256, 256);
    }

    if (g_isa >= JB_CPU_ISA_AVX2) {
        for (int ti = 0; ti < 3; ti++) {
            test_matmul_rows(be, types[ti], 37, 500, 300);
            test_matmul_rows(be, types[ti], 37, 601, 1000);
            /* fp32 tiles read in place (N a multiple of 16), then a padded one after them */
            test_matmul_rows(be, types[ti], 37, 512, 300);
            test_matmul_rows(be, types[ti], 37, 1030, 1000);
        }
        test_conv_same(be1, be3, "1 thread == 3 threads");
        test_winograd_same(be1, be3, "1 thread == 3 threads");
    }

    test_nested(be);
    test_two_backends();

    test_layernorm(be, 3, 1920, 0.0);
    test_layernorm(be, 64, 64, 0.0);
    test_layernorm(be, 200, 333, 100.0);
    test_softmax(be, 64, 64);
    test_softmax(be, 3, 8192);
    test_softmax(be, 40, 1);
    test_elementwise(be, 1000);
    test_elementwise(be, 300000);
    test_quick_gelu_edges(be);
    for (int ti = 0; ti < 3; ti++)
        test_embedding(be, types[ti]);

    test_vq(be, 300, 512, 64, false);
    test_vq(be, 37, 2048, 64, false);
    test_vq(be, 500, 2048, 64, true);
    test_vq(be, 1, 16, 3, true);
}

int main(void)
{
    test_backend_api();

    struct jb_backend *be  = jb_backend_init("cpu", 2);
    struct jb_backend *be1 = jb_backend_init("cpu", 1);
    struct jb_backend *be3 = jb_backend_init("cpu", 3);
    if (!be || !be1 || !be3) {
        fprintf(stderr, "backend init failed: %s\n", jb_last_error());
        return 1;
    }
    enum jb_cpu_isa top = jb_cpu_set_isa(be, JB_CPU_ISA_AMX);
    for (int isa = JB_CPU_ISA_PORTABLE; isa <= (int)top; isa++) {
        g_isa = jb_cpu_set_isa(be, (enum jb_cpu_isa)isa);
        tc_check(g_isa == (enum jb_cpu_isa)isa, "backend at the %s level", jb_cpu_isa_name(g_isa));
        jb_cpu_set_isa(be1, g_isa);
        jb_cpu_set_isa(be3, g_isa);
        run_all(be, be1, be3);
    }
    if (top >= JB_CPU_ISA_AVX2) test_to_f16();
    if (top >= JB_CPU_ISA_AVX512) { /* the AVX2 and AVX-512 kernels do the same arithmetic */
        jb_cpu_set_isa(be1, JB_CPU_ISA_AVX2);
        jb_cpu_set_isa(be3, JB_CPU_ISA_AVX512);
        g_isa = JB_CPU_ISA_AVX512;
        test_conv_same(be1, be3, "avx2 == avx512");
        test_resblock_same(be1, be3, "avx2 == avx512");
        test_winograd_same(be1, be3, "avx2 == avx512");
        test_vq_same(be1, be3, "avx2 == avx512");
        test_matmul_isa(be1, be3, 333, 257);
        test_matmul_isa(be1, be3, 600, 1000);
        test_matmul_isa(be1, be3, 1040, 600);
    }
    jb_backend_free(be);
    jb_backend_free(be1);
    jb_backend_free(be3);

    return tc_summary();
}
