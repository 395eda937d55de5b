/*
 * backend/cpu/cpu_conv.c - Conv1d and ConvTranspose1d (PyTorch semantics, one batch item).
 *
 * AVX2 / AVX-512 path: a direct convolution (jb_cpu_conv_items_*, cpu_x86.c) over tiles of 48
 * output columns: the tile's input windows are copied once into a small packed buffer (zero
 * padding materialised), then register tiles of 8 (4 with AVX2) output channels accumulate over
 * (c, tap) with broadcast weights. No im2col, y written once.
 *   - stride 1: one "tap" per kernel position j, source column t + d·j − p;
 *   - stride 2 with AVX-512: each tap reads one phase of x in place (the packing step
 *     deinterleaves), so the caller's scratch is never touched (no pass over it, no page faults);
 *   - other strides s > 1: x is first split into its s phases (x_r[c, u] = x[c, s·u + r], in the
 *     caller's scratch), after which every tap reads one phase at unit stride;
 *   - transposed, stride 1 or 2: each output phase (t mod s) is a stride-1 convolution over x with
 *     the taps j ≡ t + p (mod s); for stride 2 both phases are computed in one tile and
 *     interleaved in registers.
 * Portable path (no AVX2, more than 16 taps, stride > 2 transposed): blocked im2col + sgemm
 * (conv1d) and sgemm + ordered scatter (transposed), with the blocks in the thread's arena.
 *
 * Chunking guarantee: on the SIMD paths each output is one FMA chain over (c, tap) in a fixed
 * order from zero, plus the bias, whatever T, the tile position or the thread count (a tile leaves
 * out the taps that read only zero padding, which would add nothing), so a chunk of
 * the sequence reproduces the whole-sequence outputs bitwise wherever it sees the same inputs (and
 * AVX2 and AVX-512 agree bitwise). The portable path goes through OpenBLAS, whose kernels round
 * differently at different column positions: chunks then agree to ~1e-7 relative, not bitwise.
 */
#include "backend/cpu/blas.h"
#include "backend/cpu/cpu.h"
#include "backend/cpu/pool.h"
#include "backend/ops.h"

#include <string.h>

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return -floor_div(-a, b);
}

int64_t jb_conv1d_out_len(int64_t T, int k, int stride, int pad, int dil)
{
    int64_t num = T + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1;
    return num < 0 ? 0 : num / stride + 1;
}

size_t jb_cpu_conv1d_direct_scratch(int64_t Cin, int64_t T, int k, int stride, int pad, int dil)
{
    (void)k, (void)pad, (void)dil;
    if (stride <= 1) return 0;
    /* the s phases of x, each row ceil(T / s) long */
    return (size_t)stride * (size_t)Cin * (size_t)ceil_div(T, stride) + 16;
}

size_t jb_conv1d_scratch(int64_t Cin, int64_t Cout, int64_t T, int k, int stride, int pad, int dil)
{
    /* wide k = 3 "same" convs run by Winograd (cpu_winograd.c) in the scratch */
    if (jb_cpu_conv1d_winograd_pays(Cin, Cout, T, k, stride, pad, dil))
        return jb_cpu_winograd_work(Cin, Cout);
    return jb_cpu_conv1d_direct_scratch(Cin, T, k, stride, pad, dil);
}

int64_t jb_conv_transpose1d_out_len(int64_t T, int k, int stride, int pad)
{
    int64_t n = (T - 1) * stride - 2 * (int64_t)pad + k;
    return n < 0 ? 0 : n;
}

size_t jb_conv_transpose1d_scratch(int64_t Cin, int64_t Cout, int64_t T, int k, int stride, int pad)
{
    /* wide layers run by Winograd (cpu_winograd.c) in the scratch; the rest in the arena */
    return jb_cpu_convt_winograd_pays(Cin, Cout, T, k, stride, pad)
             ? jb_cpu_winograd_work(Cin, Cout)
             : 0;
}

size_t jb_cpu_conv_prepare(struct jb_conv_job *job)
{
    /* one segment per run of taps reading the same input with overlapping windows */
    job->n_seg = 0;
    for (int p = 0; p < job->n_phase; p++)
        for (int i = 0; i < job->n_tap[p]; i++) {
            const struct jb_conv_tap *tp = &job->tap[p][i];
            struct jb_conv_seg *sg       = NULL;
            for (int s = 0; s < job->n_seg && !sg; s++) {
                struct jb_conv_seg *c = &job->seg[s];
                if (c->x == tp->x && c->len == tp->len && tp->q <= c->q0 + c->width &&
                    tp->q + JB_CONV_TILE >= c->q0)
                    sg = c;
            }
            if (!sg) {
                sg  = &job->seg[job->n_seg++];
                *sg = (struct jb_conv_seg){ tp->x, tp->len, tp->q, JB_CONV_TILE, 0 };
            } else {
                int64_t end = sg->q0 + sg->width > tp->q + JB_CONV_TILE ? sg->q0 + sg->width
                                                                        : tp->q + JB_CONV_TILE;
                sg->q0      = sg->q0 < tp->q ? sg->q0 : tp->q;
                sg->width   = end - sg->q0;
            }
        }
    int64_t off = 0;
    for (int s = 0; s < job->n_seg; s++) {
        job->seg[s].width = (job->seg[s].width + 15) / 16 * 16;
        job->seg[s].off   = off;
        off += job->seg[s].width;
    }
    for (int p = 0; p < job->n_phase; p++)
        for (int i = 0; i < job->n_tap[p]; i++) {
            const struct jb_conv_tap *tp = &job->tap[p][i];
            for (int s = 0; s < job->n_seg; s++) {
                const struct jb_conv_seg *sg = &job->seg[s];
                if (sg->x == tp->x && sg->len == tp->len && tp->q >= sg->q0 &&
                    tp->q + JB_CONV_TILE <= sg->q0 + sg->width) {
                    job->tap_off[p][i] = sg->off + tp->q - sg->q0;
                    break;
                }
            }
        }
    /* an odd number of cache lines per packed row, so rows spread over all cache sets */
    job->ld_pack = off % 32 == 0 ? off + 16 : off;
    job->n_oblk  = (job->cout + job->nr - 1) / job->nr;
    job->n_tile  = (job->n_m + JB_CONV_TILE - 1) / JB_CONV_TILE;
    return (size_t)(job->cin * job->ld_pack);
}

struct conv_task {
    const struct jb_cpu *cpu;
    const struct jb_conv_job *job;
};

static void conv_items(void *arg, int64_t a, int64_t b, int slot)
{
    const struct conv_task *t = arg;
    if (t->cpu->isa >= JB_CPU_ISA_AVX512)
        jb_cpu_conv_items_avx512(t->job, a, b, jb_cpu_arena(t->cpu, slot));
    else
        jb_cpu_conv_items_avx2(t->job, a, b, jb_cpu_arena(t->cpu, slot));
}

/* Runs the direct-convolution job over its work items, in contiguous ranges (so a thread's next
 * tile is usually the adjacent one, whose input the packing step prefetches); false when the
 * packed tile would not fit the arena (the caller then takes the portable path). */
/* amx: whether the job may run on AMX tiles at the amx level (not Winograd's products, whose
 * transforms would amplify the bf16x3 rounding) */
static bool run_conv_job(struct jb_cpu *cpu, struct jb_conv_job *job, double flops, bool amx)
{
    if (amx && jb_cpu_conv_amx(cpu, job, flops)) return true;
    if (jb_cpu_conv_prepare(job) > JB_CPU_ARENA_FLOATS) return false;
    int64_t items        = job->n_oblk * job->n_tile;
    struct conv_task arg = { cpu, job };
    jb_cpu_for(cpu, items, flops / (double)items, conv_items, &arg);
    return true;
}

/* --- Conv1d ----------------------------------------------------------------------------------- */

/* Portable path: columns [t0, t0 + tb) of y = W[Cout, Cin·k] · B[Cin·k, tb] (+ bias), B the
 * im2col block (rows r0.. of it at a time when Cin·k is too tall for the arena). */
static void conv1d_block_portable(const struct jb_cpu *cpu,
                                  int slot,
                                  const float *x,
                                  int64_t T,
                                  int64_t Cin,
                                  int64_t Cout,
                                  int k,
                                  const float *w,
                                  const float *bias,
                                  int s,
                                  int p,
                                  int d,
                                  float *y,
                                  int64_t Tout,
                                  int64_t t0,
                                  int64_t tb)
{
    float *B   = jb_cpu_arena(cpu, slot);
    int64_t KK = Cin * k;
    int64_t rb = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)tb);
    if (rb > KK) rb = KK;
    for (int64_t r0 = 0; r0 < KK; r0 += rb) {
        int64_t nr = KK - r0 < rb ? KK - r0 : rb;
        for (int64_t rr = 0; rr < nr; rr++) {
            int64_t c = (r0 + rr) / k, j = (r0 + rr) % k;
            int64_t off     = s * t0 - p + d * j; /* source of column 0 */
            const float *xr = x + c * T;
            float *br       = B + rr * tb;
            /* columns tt with 0 <= off + s·tt < T */
            int64_t lo = off >= 0 ? 0 : ceil_div(-off, s);
            int64_t hi = off >= T ? 0 : ceil_div(T - off, s);
            if (lo > tb) lo = tb;
            if (hi > tb) hi = tb;
            if (hi < lo) hi = lo;
            for (int64_t tt = 0; tt < lo; tt++)
                br[tt] = 0.0f;
            if (s == 1)
                memcpy(br + lo, xr + off + lo, (size_t)(hi - lo) * sizeof(float));
            else
                for (int64_t tt = lo; tt < hi; tt++)
                    br[tt] = xr[off + s * tt];
            for (int64_t tt = hi; tt < tb; tt++)
                br[tt] = 0.0f;
        }
        jb_blas()->sgemm(CblasRowMajor,
                         CblasNoTrans,
                         CblasNoTrans,
                         (int)Cout,
                         (int)tb,
                         (int)nr,
                         1.0f,
                         w + r0,
                         (int)KK,
                         B,
                         (int)tb,
                         r0 ? 1.0f : 0.0f,
                         y + t0,
                         (int)Tout);
    }
    if (bias)
        for (int64_t o = 0; o < Cout; o++) {
            float *yr = y + o * Tout + t0;
            for (int64_t tt = 0; tt < tb; tt++)
                yr[tt] += bias[o];
        }
}

struct phase_task {
    const float *x;
    int64_t T;
    int stride;
    int64_t ld, Cin;
    float *dst;
};

/* Rows [c0, c1): phase r of x row c goes to dst[(r·Cin + c)·ld ..]. */
static void split_phases(void *arg, int64_t c0, int64_t c1, int slot)
{
    const struct phase_task *t = arg;
    (void)slot;
    for (int64_t c = c0; c < c1; c++) {
        const float *xr = t->x + c * t->T;
        if (t->stride == 2) { /* both phases in one pass (vectorises as a deinterleave) */
            float *d0 = t->dst + c * t->ld, *d1 = t->dst + (t->Cin + c) * t->ld;
            const int64_t h = t->T / 2;
#pragma omp simd
            for (int64_t u = 0; u < h; u++) {
                d0[u] = xr[2 * u];
                d1[u] = xr[2 * u + 1];
            }
            for (int64_t u = h; u < t->ld; u++) {
                d0[u] = 2 * u < t->T ? xr[2 * u] : 0.0f;
                d1[u] = 0.0f;
            }
            continue;
        }
        for (int r = 0; r < t->stride; r++) {
            float *dst = t->dst + ((int64_t)r * t->Cin + c) * t->ld;
            int64_t u  = 0;
            for (; u * t->stride + r < t->T; u++)
                dst[u] = xr[u * t->stride + r];
            for (; u < t->ld; u++)
                dst[u] = 0.0f;
        }
    }
}

struct conv1d_portable_task {
    const struct jb_cpu *cpu;
    const float *x;
    int64_t T, Cin, Cout;
    int k;
    const float *w, *bias;
    int s, p, d;
    float *y;
    int64_t Tout, tb;
};

static void conv1d_blocks(void *arg, int64_t b0, int64_t b1, int slot)
{
    const struct conv1d_portable_task *t = arg;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t t0 = blk * t->tb;
        conv1d_block_portable(t->cpu,
                              slot,
                              t->x,
                              t->T,
                              t->Cin,
                              t->Cout,
                              t->k,
                              t->w,
                              t->bias,
                              t->s,
                              t->p,
                              t->d,
                              t->y,
                              t->Tout,
                              t0,
                              t->Tout - t0 < t->tb ? t->Tout - t0 : t->tb);
    }
}

/* A conv1d's direct-kernel job, up to its taps (and, stride 2, its step). */
static struct jb_conv_job conv1d_job(const struct jb_tensor *w,
                                     const struct jb_tensor *b,
                                     int64_t T,
                                     int64_t Tout,
                                     float *y)
{
    const int64_t Cout = w->shape[0], Cin = w->shape[1], k = w->shape[2];
    return (struct jb_conv_job){ .n_phase = 1,
                                 .n_tap   = { (int)k, 0 },
                                 .cin     = Cin,
                                 .ldx     = T,
                                 .w       = w->data,
                                 .w_os    = Cin * k,
                                 .w_cs    = k,
                                 .bias    = b ? b->data : NULL,
                                 .y       = y,
                                 .cout    = Cout,
                                 .ldy     = Tout,
                                 .tout    = Tout,
                                 .n_m     = Tout,
                                 .nr      = 8 };
}

void jb_cpu_conv1d(struct jb_cpu *cpu,
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
    JB_ASSERT(w->type == JB_DTYPE_F32 && w->n_dims == 3 && stride >= 1 && dil >= 1 && pad >= 0);
    JB_ASSERT(!b || (b->type == JB_DTYPE_F32 && jb_tensor_nelements(b) == w->shape[0]));
    const int64_t Cout = w->shape[0], Cin = w->shape[1];
    const int k        = (int)w->shape[2];
    const int64_t Tout = jb_conv1d_out_len(T, k, stride, pad, dil);
    const float *wd    = w->data;
    const float *bias  = b ? b->data : NULL;
    if (Tout <= 0 || Cout <= 0) return;
    double flops = (double)Cout * (double)Cin * k * (double)Tout;
    /* wide layers by Winograd, in the scratch (a caller that passes none gets the direct path);
     * not at the amx level, whose direct kernel is faster (see jb_cpu_op_resblock) */
    if (scratch && cpu->isa < JB_CPU_ISA_AMX &&
        jb_cpu_conv1d_winograd_pays(Cin, Cout, T, k, stride, pad, dil) &&
        jb_cpu_conv3_winograd(cpu, x, T, w, b, dil, false, false, y, T, scratch))
        return;

    if (cpu->isa >= JB_CPU_ISA_AVX2 && k <= JB_CONV_MAX_TAPS) {
        struct jb_conv_job job = conv1d_job(w, b, T, Tout, y);
        if (stride == 1) {
            for (int j = 0; j < k; j++)
                job.tap[0][j] = (struct jb_conv_tap){ x, (int64_t)dil * j - pad, T, j };
        } else if (stride == 2 && cpu->isa >= JB_CPU_ISA_AVX512) {
            /* read in place: tap j reads phase r = (d·j − p) mod 2, x[c, 2u + r] at u = t + q */
            job.step = 2;
            for (int j = 0; j < k; j++) {
                int64_t off = (int64_t)dil * j - pad;
                int64_t r = off - floor_div(off, 2) * 2, q = floor_div(off, 2);
                job.tap[0][j] = (struct jb_conv_tap){ x + r, q, ceil_div(T - r, 2), j };
            }
        } else {
            /* phase r holds x[c, s·u + r]; tap j reads phase (d·j − p) mod s at u = t + q */
            JB_ASSERT(scratch);
            const int64_t ld     = ceil_div(T, stride);
            struct phase_task pt = { x, T, stride, ld, Cin, scratch };
            jb_cpu_for(cpu, Cin, (double)T, split_phases, &pt);
            job.ldx = ld;
            for (int j = 0; j < k; j++) {
                int64_t off = (int64_t)dil * j - pad;
                int64_t r = off - floor_div(off, stride) * stride, q = floor_div(off, stride);
                job.tap[0][j] =
                  (struct jb_conv_tap){ scratch + r * Cin * ld, q, ceil_div(T - r, stride), j };
            }
        }
        if (run_conv_job(cpu, &job, flops, true)) return;
    }

    /* portable: column blocks of a fixed width (a function of Cin·k only, so chunked calls cut
     * the same blocks relative to their start; the sgemm per block has the same K) */
    int64_t KK = Cin * k;
    int64_t tb = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)KK) / 16 * 16;
    if (tb < 16) tb = 16;
    if (tb > 512) tb = 512;
    int64_t n_blk                   = (Tout + tb - 1) / tb;
    struct conv1d_portable_task job = { cpu,  x,      T,   Cin, Cout, k,    wd,
                                        bias, stride, pad, dil, y,    Tout, tb };
    jb_cpu_for(cpu, n_blk, flops / (double)n_blk, conv1d_blocks, &job);
}

bool jb_cpu_conv1d_fused_cols(struct jb_cpu *cpu,
                              const float *x,
                              int64_t T,
                              const struct jb_tensor *w,
                              const struct jb_tensor *b,
                              int pad,
                              int dil,
                              float *y,
                              const struct jb_conv_epilogue *ep,
                              int64_t t0,
                              int64_t t1)
{
    JB_ASSERT(w->type == JB_DTYPE_F32 && w->n_dims == 3 && dil >= 1 && pad >= 0);
    JB_ASSERT(!b || (b->type == JB_DTYPE_F32 && jb_tensor_nelements(b) == w->shape[0]));
    const int64_t Cout = w->shape[0], Cin = w->shape[1];
    const int k        = (int)w->shape[2];
    const int64_t Tout = jb_conv1d_out_len(T, k, 1, pad, dil);
    if (cpu->isa < JB_CPU_ISA_AVX2 || k > JB_CONV_MAX_TAPS) return false;
    if (t0 < 0) t0 = 0;
    if (t1 > Tout) t1 = Tout;
    if (t1 <= t0 || Cout <= 0) return true;
    /* columns t0.. of y (and of the residual) as the job's columns 0.. */
    struct jb_conv_job job = conv1d_job(w, b, T, Tout, y + t0);
    job.tout               = t1 - t0;
    job.n_m                = t1 - t0;
    job.relu_in            = ep->relu_in;
    job.relu_out           = ep->relu_out;
    job.res                = ep->res ? ep->res + t0 : NULL;
    job.rho                = ep->rho;
    for (int j = 0; j < k; j++)
        job.tap[0][j] = (struct jb_conv_tap){ x, t0 + (int64_t)dil * j - pad, T, j };
    return run_conv_job(cpu, &job, (double)Cout * (double)Cin * k * (double)(t1 - t0), true);
}

bool jb_cpu_conv1d_fused(struct jb_cpu *cpu,
                         const float *x,
                         int64_t T,
                         const struct jb_tensor *w,
                         const struct jb_tensor *b,
                         int pad,
                         int dil,
                         float *y,
                         const struct jb_conv_epilogue *ep)
{
    return jb_cpu_conv1d_fused_cols(cpu, x, T, w, b, pad, dil, y, ep, 0, INT64_MAX);
}

/* --- ConvTranspose1d -------------------------------------------------------------------------- */

/* Portable path for the outputs [t0, t1): tmp[(o, j), u] = Σ_c w[c, o, j] · x[c, u] by sgemm over
 * blocks of u, then y[o, s·u − p + j] += tmp in ascending u, so each output sums its terms in the
 * same order wherever the blocks fall. */
static void convt_range_portable(const struct jb_cpu *cpu,
                                 int slot,
                                 const float *x,
                                 int64_t T,
                                 int64_t Cin,
                                 int64_t Cout,
                                 int k,
                                 const float *w,
                                 const float *bias,
                                 int s,
                                 int p,
                                 float *y,
                                 int64_t Tout,
                                 int64_t t0,
                                 int64_t t1)
{
    float *tmp = jb_cpu_arena(cpu, slot);
    int64_t ob = (int64_t)(JB_CPU_ARENA_FLOATS / ((size_t)k * 16)); /* rows per chunk */
    if (ob > Cout) ob = Cout;
    int64_t ub = (int64_t)(JB_CPU_ARENA_FLOATS / (size_t)(ob * k));
    if (ub > 256) ub = 256;
    int64_t u_lo = ceil_div(t0 + p - (k - 1), s), u_hi = floor_div(t1 - 1 + p, s) + 1;
    if (u_lo < 0) u_lo = 0;
    if (u_hi > T) u_hi = T;

    for (int64_t o = 0; o < Cout; o++)
        memset(y + o * Tout + t0, 0, (size_t)(t1 - t0) * sizeof(float));
    for (int64_t o0 = 0; o0 < Cout; o0 += ob) {
        int64_t no = Cout - o0 < ob ? Cout - o0 : ob;
        for (int64_t u0 = u_lo; u0 < u_hi; u0 += ub) {
            int64_t nu = u_hi - u0 < ub ? u_hi - u0 : ub;
            jb_blas()->sgemm(CblasRowMajor,
                             CblasTrans,
                             CblasNoTrans,
                             (int)(no * k),
                             (int)nu,
                             (int)Cin,
                             1.0f,
                             w + o0 * k,
                             (int)(Cout * k),
                             x + u0,
                             (int)T,
                             0.0f,
                             tmp,
                             (int)nu);
            for (int64_t o = 0; o < no; o++) {
                float *yr = y + (o0 + o) * Tout;
                for (int64_t u = 0; u < nu; u++)
                    for (int j = 0; j < k; j++) {
                        int64_t t = s * (u0 + u) - p + j;
                        if (t >= t0 && t < t1) yr[t] += tmp[(o * k + j) * nu + u];
                    }
            }
        }
    }
    if (bias)
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t t = t0; t < t1; t++)
                y[o * Tout + t] += bias[o];
}

struct convt_portable_task {
    const struct jb_cpu *cpu;
    const float *x;
    int64_t T, Cin, Cout;
    int k;
    const float *w, *bias;
    int s, p;
    float *y;
    int64_t Tout;
};

/* Output blocks [b0, b1) of 64 columns (the last one takes the rest). */
static void convt_blocks(void *arg, int64_t b0, int64_t b1, int slot)
{
    const struct convt_portable_task *t = arg;
    int64_t n_blk                       = t->Tout / 64 > 1 ? t->Tout / 64 : 1;
    int64_t t0 = b0 * 64, t1 = b1 == n_blk ? t->Tout : b1 * 64;
    convt_range_portable(t->cpu,
                         slot,
                         t->x,
                         t->T,
                         t->Cin,
                         t->Cout,
                         t->k,
                         t->w,
                         t->bias,
                         t->s,
                         t->p,
                         t->y,
                         t->Tout,
                         t0,
                         t1);
}

void jb_cpu_conv_transpose1d(struct jb_cpu *cpu,
                             const float *x,
                             int64_t T,
                             const struct jb_tensor *w,
                             const struct jb_tensor *b,
                             int stride,
                             int pad,
                             float *y,
                             float *scratch)
{
    JB_ASSERT(w->type == JB_DTYPE_F32 && w->n_dims == 3 && stride >= 1 && pad >= 0);
    JB_ASSERT(!b || (b->type == JB_DTYPE_F32 && jb_tensor_nelements(b) == w->shape[1]));
    const int64_t Cin = w->shape[0], Cout = w->shape[1];
    const int k        = (int)w->shape[2];
    const int64_t Tout = jb_conv_transpose1d_out_len(T, k, stride, pad);
    const float *wd    = w->data;
    const float *bias  = b ? b->data : NULL;
    if (Tout <= 0 || Cout <= 0 || T <= 0) return;
    double flops = (double)Cout * (double)Cin * k * (double)T;
    /* wide layers by Winograd, in the scratch (a caller that passes none gets the direct path);
     * not at the amx level, whose direct kernel is faster (see jb_cpu_op_resblock) */
    if (scratch && cpu->isa < JB_CPU_ISA_AMX &&
        jb_cpu_convt_winograd_pays(Cin, Cout, T, k, stride, pad) &&
        jb_cpu_convt_winograd(cpu, x, T, w, b, y, scratch))
        return;

    if (cpu->isa >= JB_CPU_ISA_AVX2 && stride <= 2 && k <= JB_CONV_MAX_TAPS) {
        /* output t = s·m + ph reads x[c, u] with u = m + (ph + p − j) / s for j ≡ ph + p (mod s) */
        struct jb_conv_job job = { .n_phase = stride,
                                   .cin     = Cin,
                                   .ldx     = T,
                                   .w       = wd,
                                   .w_os    = k,
                                   .w_cs    = Cout * k,
                                   .bias    = bias,
                                   .y       = y,
                                   .cout    = Cout,
                                   .ldy     = Tout,
                                   .tout    = Tout,
                                   .n_m     = ceil_div(Tout, stride),
                                   .nr      = stride == 1 ? 8 : 4 };
        for (int ph = 0; ph < stride; ph++)
            for (int j = 0; j < k; j++) {
                int64_t off = ph + pad - j;
                if (floor_div(off, stride) * stride != off) continue;
                job.tap[ph][job.n_tap[ph]++] = (struct jb_conv_tap){ x, off / stride, T, j };
            }
        if (run_conv_job(cpu, &job, flops, true)) return;
    }

    /* output ranges of at least 64 columns */
    struct convt_portable_task job = { cpu, x, T, Cin, Cout, k, wd, bias, stride, pad, y, Tout };
    int64_t n_blk                  = Tout / 64 > 1 ? Tout / 64 : 1;
    jb_cpu_for(cpu, n_blk, flops / (double)n_blk, convt_blocks, &job);
}

/* --- Matrix product on the direct kernel ------------------------------------------------------ */

bool jb_cpu_gemm_direct(struct jb_cpu *cpu,
                        const float *w,
                        int64_t w_rs,
                        int64_t w_cs,
                        int64_t rows,
                        int64_t inner,
                        const float *x,
                        int64_t ldx,
                        int64_t n,
                        float *y,
                        int64_t ldy)
{
    if (cpu->isa < JB_CPU_ISA_AVX2) return false;
    if (rows <= 0 || n <= 0) return true;
    /* a 1x1 convolution of x (inner channels, n columns) by w (rows x inner), its weights and
     * output at the given strides */
    const struct jb_tensor wt = {
        .type = JB_DTYPE_F32, .n_dims = 3, .shape = { rows, inner, 1 }, .data = (void *)w
    };
    struct jb_conv_job job = conv1d_job(&wt, NULL, ldx, n, y);
    job.w_os               = w_rs;
    job.w_cs               = w_cs;
    job.ldy                = ldy;
    job.tap[0][0]          = (struct jb_conv_tap){ x, 0, n, 0 };
    return run_conv_job(cpu, &job, (double)rows * (double)inner * (double)n, false);
}
