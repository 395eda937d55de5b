/*
 * backend/cpu/cpu.h - private interface of the CPU backend: its context and the kernels behind
 * the op wrappers of backend/ops.h.
 *
 * Threading: each CPU backend owns one thread pool (pool.h) of n_threads threads, the caller
 * included; every parallel loop of the kernels is a jb_pool_for on it. Nothing process-wide is
 * set per backend, so two backends in one process (a daemon serving two model sets) each keep
 * their own threads and thread count. A kernel called from inside one of the pool's own tasks
 * runs serially on that task's slot.
 *
 * OpenBLAS (only the portable kernels call it; the AVX2 / AVX-512 paths never do) must not start
 * threads of its own inside ours. OpenBLAS 0.3.21 (Debian 12) has no per-call thread count
 * (openblas_set_num_threads_local arrived in 0.3.22). Debian's serial build starts no threads,
 * but it is not safe for calls from several threads at once, which our pools make on the
 * portable level: with it, test_ops' portable checks got wrong sums in 2 of 6 runs. We therefore
 * use the default (pthread) build and do what the OpenBLAS FAQ prescribes for applications that
 * thread themselves: openblas_set_num_threads(1), once per process. That is one fixed value, the
 * same for every backend, never a backend's thread count; the pthread build's own workers then
 * never wake after the spin they start with when the library loads. The library is opened with
 * dlopen only when a backend runs at the portable level, or when a SIMD level's rare fallback
 * (more than 16 taps, transposed strides over 2) first needs it (blas.h), so processes on AVX2
 * machines running the released models never load it nor start those threads.
 *
 * Memory: every per-call temporary lives either in the caller's scratch (sized by the
 * *_scratch() functions of ops.h) or in a fixed per-slot arena reserved at backend init, so no
 * kernel ever allocates. A backend's kernels must be called from one thread at a time (the pool
 * serialises concurrent jobs, but the slot-0 arena belongs to the calling thread).
 *
 * ISA: the build targets x86-64-v2, so AVX2/F16C and AVX-512 kernels are compiled with target
 * attributes and selected at init from __builtin_cpu_supports(). The environment variable
 * ENCORE_CPU_ISA=portable|avx2|avx512|amx caps the level (tests use jb_cpu_set_isa()). The amx
 * level differs from avx512 only in the wide convolutions and the narrow ResConv1DBlocks
 * (cpu_amx.c), whose sums are bf16x3 tile products rather than fp32 FMAs: close to them, not the
 * same bits.
 */
#ifndef JB_BACKEND_CPU_CPU_H
#define JB_BACKEND_CPU_CPU_H

#include "backend/backend.h"
#include "backend/cpu/share_tuner.h"

#include <pthread.h>

#include <stdatomic.h>
#include <string.h>

/* JB_CPU_NO_SIMD builds the portable kernels only, as on other architectures (for testing). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(JB_CPU_NO_SIMD)
#define JB_CPU_X86 1
/* Every function using AVX-512 / AVX2 intrinsics carries one of these (helpers included, so that
 * they inline into each other). */
#define JB_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#define JB_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define JB_CPU_X86 0
#endif

#define JB_ALWAYS_INLINE inline __attribute__((always_inline))

enum jb_cpu_isa {
    JB_CPU_ISA_PORTABLE = 0, /* C + BLAS only */
    JB_CPU_ISA_AVX2     = 1, /* AVX2 + FMA + F16C */
    JB_CPU_ISA_AVX512   = 2, /* AVX-512 F/BW/DQ/VL + the above */
    JB_CPU_ISA_AMX      = 3, /* AVX-512 + AVX512_BF16 + AMX-BF16 tiles, granted by the OS */
};

/* Floats per thread in the arena: 4 MiB. It holds one tile at a time: a packed conv input tile
 * (Cin x ~64-160 floats), a packed 128 x 1024 matmul weight tile plus the partial sums, a VQ dot
 * block (2048 codes x 96 steps), or on the portable path an im2col block (Cin·k = 5760 rows of
 * the released models by 176 columns). */
#define JB_CPU_ARENA_FLOATS ((size_t)1 << 20)

struct jb_pool;

struct jb_cpu {
    int n_threads;
    struct jb_pool *pool; /* n_threads threads, the caller included */
    enum jb_cpu_isa isa;
    enum jb_cpu_isa isa_max; /* what the machine supports */
    float *arena;            /* n_threads * JB_CPU_ARENA_FLOATS, 64-byte aligned; one per slot */
    void *amx_w;             /* amx level: JB_CPU_AMX_W_BYTES for a job's packed weights */
    /* token loops: how eagerly the pool shares small ops, measured per loop kind */
    pthread_mutex_t tuner_lock;
    struct jb_share_tuner tuner;
    int pinned_arm;        /* testing: the arm every step takes (-1: tuned) */
    int64_t step_end_ns;   /* when the last step of the current loop ended (0: none yet) */
    _Atomic int groups;    /* candidate groups of the next step (1: none; loop_groups) */
    _Atomic(void *) spare; /* the last large buffer freed, kept for the next (cpu.c) */
};

/* The loop hooks of jb_backend_i (backend.h) for a CPU context: a step of loop `key` ended /
 * the loop ended. They set the pool's minimum shared work for the next step (share_tuner.h), and
 * whether it runs in candidate groups: loop_groups says into how many, run_groups runs them, one
 * pool task each (their ops then run inline on the task's thread and arena slot). */
void jb_cpu_loop_step(struct jb_cpu *cpu, uintptr_t key, int max_groups);
void jb_cpu_loop_end(struct jb_cpu *cpu);
int jb_cpu_loop_groups(struct jb_cpu *cpu);
void jb_cpu_run_groups(struct jb_cpu *cpu, int n, jb_group_fn fn, void *arg);
/* Testing and benchmarking: every step of a token loop takes `arm` (share_tuner.h; the groups'
 * arm only in loops that can be cut), -1: tuned by measurement (the default). */
void jb_cpu_pin_loop_arm(struct jb_cpu *cpu, int arm);

/* The CPU context behind a backend (be->cpu: the CPU backend's own, or the host fallback of a
 * backend whose memory the host can read). */
struct jb_cpu *jb_cpu_of(struct jb_backend *be);

/* Testing and benchmarking: cap the ISA level used by the kernels (clamped to what the machine
 * has); returns the level now in effect. */
enum jb_cpu_isa jb_cpu_set_isa(struct jb_backend *be, enum jb_cpu_isa isa);
const char *jb_cpu_isa_name(enum jb_cpu_isa isa);

/* Threads worth using for `work` units (about one FMA or element each). Handing a loop to a
 * spinning worker costs ~0.2-2 µs, waking a sleeping one tens of µs: below
 * JB_CPU_SHARE_MIN_WORK units (~1-2 µs) always 1; up to ~1M units only while a worker is awake
 * (jb_pool_ready), at least half the minimum per thread; above, at least ~512k units per thread. */
#define JB_CPU_SHARE_MIN_WORK 32768.0
int jb_cpu_team(const struct jb_cpu *cpu, double work);
/* Runs fn over [0, n) items of about work_per_item units each on the backend's pool: inline on
 * the caller when the whole loop is too small to share (jb_cpu_team), otherwise in chunks of
 * at least ~4k units, up to 4 per thread so that a late or preempted thread's share is taken
 * by the others. */
void jb_cpu_for(struct jb_cpu *cpu,
                int64_t n,
                double work_per_item,
                void (*fn)(void *arg, int64_t begin, int64_t end, int slot),
                void *arg);
/* Arena of a pool slot (the `slot` argument of a pool task; 0 outside any). */
float *jb_cpu_arena(const struct jb_cpu *cpu, int slot);

/* --- kernels (cpu_matmul.c, cpu_conv.c, cpu_vq.c) ------------------------------------------ */

/* Builds the constant tables of the portable kernels (once per process; thread-safe). */
void jb_cpu_tables_init(void);

void jb_cpu_matmul(struct jb_cpu *cpu,
                   int64_t M,
                   int64_t N,
                   int64_t K,
                   const float *x,
                   int64_t ldx,
                   const struct jb_tensor *w,
                   bool w_trans,
                   const float *bias,
                   float *y,
                   int64_t ldy,
                   bool accumulate);

void jb_cpu_conv1d(struct jb_cpu *cpu,
                   const float *x,
                   int64_t T,
                   const struct jb_tensor *w,
                   const struct jb_tensor *b,
                   int stride,
                   int pad,
                   int dil,
                   float *y,
                   float *scratch);

/* A stride-1 conv1d with the epilogues of a ResConv1DBlock (see struct jb_conv_job): y =
 * res + ρ·relu?(conv(relu?(x)) + b), bitwise what the separate ops give. Runs only on the direct
 * kernels (AVX2 or AVX-512, k <= JB_CONV_MAX_TAPS); false (nothing done) where those do not
 * apply, and the caller runs the separate ops. */
struct jb_conv_epilogue {
    bool relu_in, relu_out;
    const float *res; /* or NULL */
    float rho;
};
bool jb_cpu_conv1d_fused(struct jb_cpu *cpu,
                         const float *x,
                         int64_t T,
                         const struct jb_tensor *w,
                         const struct jb_tensor *b,
                         int pad,
                         int dil,
                         float *y,
                         const struct jb_conv_epilogue *ep);
/* The same for the output columns [t0, t1) only (the same sums as in the whole). */
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
                              int64_t t1);

/* y[rows, n] = W · x[inner, n] on the direct kernel (a 1x1 convolution: W[r, i] at w[r·w_rs +
 * i·w_cs], x rows ldx apart, y rows ldy apart, no bias), with its order of summation; false below
 * AVX2. */
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
                        int64_t ldy);

/* Winograd F(6,3) or F(4,3) for the wide ResConv1DBlocks' dilated k = 3 convolutions
 * (cpu_winograd.c): y = relu?(conv(relu?(x)) + b), pad = dil, with 4/9 or 1/2 of the multiplies
 * of the direct kernel, for the outputs [0, t_end) (t_end = T or the end of whole blocks of 6·dil
 * or 4·dil outputs: jb_cpu_winograd_split). The tile size follows from T, dil and t_end. Its sums
 * are not the direct kernel's (nor chunk-invariant: tiles are anchored at column 0), but they
 * depend on nothing else, so every ISA level and thread count gives bitwise the same y. work:
 * jb_cpu_winograd_work floats. Returns false (nothing done) below AVX2.
 * jb_cpu_winograd_split: where it saves work at this length and dilation (at dilations near T
 * most taps read padding, which the direct kernel leaves out): 0 nowhere (all direct), T
 * everywhere, or t (the whole blocks before t by Winograd, the rest direct). */
int64_t jb_cpu_winograd_split(int64_t T, int dil);
size_t jb_cpu_winograd_work(int64_t C, int64_t S);
bool jb_cpu_conv3_winograd(struct jb_cpu *cpu,
                           const float *x,
                           int64_t T,
                           const struct jb_tensor *w,
                           const struct jb_tensor *b,
                           int dil,
                           bool relu_in,
                           bool relu_out,
                           float *y,
                           int64_t t_end,
                           float *work);
/* The same for a ConvTranspose1d(k 4, stride 2, pad 1) (the up-sampling of the VQ-VAE and the
 * conditioner): each output phase is a k = 3 conv of x with one tap zero, so 10 products where
 * the direct kernel does 16. Used on wide layers only (jb_cpu_convt_winograd_pays: Cin + Cout >
 * 512, T >= 64), with jb_cpu_winograd_work(Cin, Cout) floats of work (the op's scratch). */
bool jb_cpu_convt_winograd_pays(int64_t Cin, int64_t Cout, int64_t T, int k, int stride, int pad);
bool jb_cpu_convt_winograd(struct jb_cpu *cpu,
                           const float *x,
                           int64_t T,
                           const struct jb_tensor *w,
                           const struct jb_tensor *b,
                           float *y,
                           float *work);
/* A plain conv1d(k 3, stride 1, pad = dil) takes Winograd on wide layers where Winograd over the
 * whole length saves work (the upsampler conditioner's first conv, 1920 -> 1024), with
 * jb_cpu_winograd_work(Cin, Cout) floats of work (the op's scratch, jb_conv1d_scratch). */
bool jb_cpu_conv1d_winograd_pays(int64_t Cin,
                                 int64_t Cout,
                                 int64_t T,
                                 int k,
                                 int stride,
                                 int pad,
                                 int dil);
/* The scratch of jb_cpu_conv1d on the direct kernel alone (the resblocks' own conv calls) */
size_t jb_cpu_conv1d_direct_scratch(int64_t Cin, int64_t T, int k, int stride, int pad, int dil);

void jb_cpu_conv_transpose1d(struct jb_cpu *cpu,
                             const float *x,
                             int64_t T,
                             const struct jb_tensor *w,
                             const struct jb_tensor *b,
                             int stride,
                             int pad,
                             float *y,
                             float *scratch);

void jb_cpu_layernorm(struct jb_cpu *cpu,
                      int64_t rows,
                      int64_t W,
                      const float *x,
                      const struct jb_tensor *gamma,
                      const struct jb_tensor *beta,
                      float eps,
                      float *y);

void jb_cpu_vq_argmin(struct jb_cpu *cpu,
                      const float *x,
                      int64_t T,
                      const struct jb_tensor *codebook,
                      int32_t *codes,
                      float *scratch);

/* --- SIMD kernels (cpu_x86.c); only called when cpu->isa says so ---------------------------- */

/* fp16 / bf16 -> fp32 conversion of n elements. */
void jb_cpu_convert_avx512(enum jb_dtype type, const void *src, float *dst, int64_t n);
void jb_cpu_convert_avx2(enum jb_dtype type, const void *src, float *dst, int64_t n);
/* fp16 / bf16 / fp32 -> fp32 of n elements with the best kernel cpu->isa allows (cpu_matmul.c;
 * the portable fp16 path reads a table that jb_cpu_tables_init fills). */
void jb_cpu_to_f32(const struct jb_cpu *cpu,
                   enum jb_dtype type,
                   const void *src,
                   float *dst,
                   int64_t n);
/* fp32 -> fp16 of n elements with F16C (part of the AVX2 level here): bitwise jb_f32_to_f16,
 * round to nearest even, NaNs quieted with their top payload bits, as the hardware does. */
void jb_cpu_to_f16_avx2(const float *src, uint16_t *dst, int64_t n);

/* Fused products over a slice of outputs [n0, n1), the weights read in their stored dtype:
 *   !w_trans: acc[m * lda + (n - n0)] = Σ_k x[m, k] · W[k, n], M <= JB_CPU_GEMV_MAX_M, streaming
 *             whole rows of W (the token-by-token case: W read once, from memory);
 *    w_trans: acc[m * lda + (n - n0)] = Σ_k x[m, k] · W[n, k], any M (16 or 8 lane partial
 *             sums over k, then a fixed reduction).
 * W has dtype `type` and row length ldw; acc is scratch with lda >= n1 - n0 rounded up to 16. */
#define JB_CPU_GEMV_MAX_M 4
void jb_cpu_gemv_avx512(enum jb_dtype type,
                        bool w_trans,
                        int64_t M,
                        int64_t K,
                        const float *x,
                        int64_t ldx,
                        const void *w,
                        int64_t ldw,
                        int64_t n0,
                        int64_t n1,
                        float *acc,
                        int64_t lda);
void jb_cpu_gemv_avx2(enum jb_dtype type,
                      bool w_trans,
                      int64_t M,
                      int64_t K,
                      const float *x,
                      int64_t ldx,
                      const void *w,
                      int64_t ldw,
                      int64_t n0,
                      int64_t n1,
                      float *acc,
                      int64_t lda);

/* acc[m, 0:nc] (+)= Σ_{k < kb} x[m, k] · b[k, 0:nc] for m < M, b an fp32 tile (rows ldb apart:
 * packed and zero-padded to a multiple of 16 columns, or fp32 weights read in place when nc is
 * such a multiple), in panels of 96 columns, each register-blocked 4 rows x 96 (AVX-512) or 24
 * (AVX2) columns for every row group; first: start from zero instead of acc. Each output is one FMA
 * chain over k in order, the same arithmetic as the !w_trans GEMV above, so results do not depend
 * on M. pf (or NULL): lines to prefetch meanwhile, see struct jb_cpu_prefetch below. */
struct jb_cpu_prefetch;
void jb_cpu_gemm_tile_avx512(int64_t M,
                             int64_t kb,
                             const float *x,
                             int64_t ldx,
                             const float *b,
                             int64_t ldb,
                             int64_t nc,
                             float *acc,
                             int64_t lda,
                             bool first,
                             struct jb_cpu_prefetch *pf);
void jb_cpu_gemm_tile_avx2(int64_t M,
                           int64_t kb,
                           const float *x,
                           int64_t ldx,
                           const float *b,
                           int64_t ldb,
                           int64_t nc,
                           float *acc,
                           int64_t lda,
                           bool first,
                           struct jb_cpu_prefetch *pf);

/* Weights to bring into L2 while a GEMM tile is computed: the next tile's rows, so that packing
 * it reads L2 rather than DRAM. Rows of `lines` cache lines, `ld` bytes apart, from `row` up to
 * `end`; the tile's micro-kernels issue one prefetch per step over k and advance `row`/`col`. */
struct jb_cpu_prefetch {
    uintptr_t row, end; /* addresses: the rows are never dereferenced, only prefetched */
    int64_t ld, lines, col;
};

/* Direct convolution (AVX2 / AVX-512). Output column m of phase ph (y column m when n_phase = 1,
 * 2m + ph when n_phase = 2) is
 *   y = bias[o] + Σ_c Σ_{taps i of ph} w[o·w_os + c·w_cs + tap.widx] · tap.x[c·ldx + m + tap.q],
 * reading zero where m + q is outside [0, tap.len). The sum runs over c, then taps in order, as
 * one fp32 FMA chain started from zero, then adds the bias: the order depends on nothing but the
 * weights' shape, so any column range of y comes out bitwise the same.
 * Each tile of 48 columns first copies the input windows its taps read (zero padding included)
 * into a packed buffer of rows ld_pack apart (not a power of two: the caller's rows usually are,
 * and 64 rows 2^k floats apart share a handful of cache sets). Taps reading the same input with
 * overlapping windows share one segment of the packed row. */
#define JB_CONV_MAX_TAPS 16
#define JB_CONV_TILE 48 /* output columns per phase per tile: 3 AVX-512 vectors */
struct jb_conv_tap {
    const float *x; /* row 0 of the input (or input phase) the tap reads */
    int64_t q;      /* source column offset */
    int64_t len;    /* valid source columns */
    int64_t widx;   /* weight offset of the tap */
};
struct jb_conv_seg { /* one window of the packed row */
    const float *x;
    int64_t len;
    int64_t q0, width; /* source columns m0 + q0 .. + width of the tile at m0 */
    int64_t off;       /* offset in the packed row */
};
struct jb_conv_job {
    int n_phase; /* 1, or 2 for a stride-2 transposed conv */
    int n_tap[2];
    struct jb_conv_tap tap[2][JB_CONV_MAX_TAPS];
    int64_t cin, ldx;
    const float *w;
    int64_t w_os, w_cs;
    const float *bias; /* or NULL */
    float *y;
    int64_t cout, ldy, tout;
    int64_t n_m; /* columns per phase */
    int nr;      /* register tile: nr rows x JB_CONV_TILE columns per phase */
    int step;    /* 0 or 1; 2 (AVX-512, n_phase 1): tap column u is tap.x[c·ldx + 2u] */
    /* epilogues of a ResConv1DBlock's convolutions (n_phase 1, step 0 or 1): relu of the input as
     * it is packed, relu of the output, and a residual y = res + ρ·out, all with the rounding of
     * the separate relu / add / axpy ops, so the results stay bitwise theirs */
    bool relu_in, relu_out;
    const float *res; /* or NULL; rows ldy apart, as y (may be y itself) */
    float rho;
    /* filled by jb_cpu_conv_prepare */
    int n_seg;
    struct jb_conv_seg seg[2 * JB_CONV_MAX_TAPS];
    int64_t tap_off[2][JB_CONV_MAX_TAPS]; /* column of each tap in the packed row */
    int64_t ld_pack;
    int64_t n_oblk, n_tile; /* work item i: tile i / n_oblk, row block i % n_oblk */
};
/* Groups the taps into packed segments and counts the work items; returns the floats of packed
 * buffer one thread needs (cin · ld_pack). */
size_t jb_cpu_conv_prepare(struct jb_conv_job *job);
/* Whether this CPU and OS can run AMX-BF16 tiles (asks Linux for the tile state once). */
bool jb_cpu_amx_usable(void);
/* Channels in from which a direct-convolution job runs on AMX at the amx level: the wide
 * conditioner's, not the VQ-VAE's 32-64 channel ones (its resblocks have their own AMX kernel). */
#define JB_CPU_AMX_MIN_CIN 128
/* Room for one job's weights as bf16 pairs: the conditioner's largest, 1920 x 1024 x 4 taps. */
#define JB_CPU_AMX_W_BYTES ((size_t)32 << 20)
/* Runs a job of at least JB_CPU_AMX_MIN_CIN channels, taps read at step 0 or 1, one phase or
 * the two of a stride-2 transposed conv (bias only), on AMX tiles (bf16x3 sums; cpu_amx.c) at
 * the amx level; false, having done nothing, for any other job or level. */
bool jb_cpu_conv_amx(struct jb_cpu *cpu, const struct jb_conv_job *job, double flops);
void jb_cpu_conv_items_avx512(const struct jb_conv_job *job,
                              int64_t item0,
                              int64_t item1,
                              float *pack);
/* The same with AVX2 (4 rows x 24 columns at a time): bitwise the same results. */
void jb_cpu_conv_items_avx2(const struct jb_conv_job *job,
                            int64_t item0,
                            int64_t item1,
                            float *pack);

/* One ResConv1DBlock (k = 3, dilation dil, then k = 1) fused over tiles of JB_CONV_TILE columns:
 * per tile, relu(x) at the three tap offsets is packed once (zero padding included), the dilated
 * conv, its bias and ReLU fill an S x tile buffer, and the 1x1 conv, its bias and the residual go
 * straight to y: x is read and y written once, with nothing in between leaving L1/L2. Every
 * output sums in the order of jb_cpu_conv1d (over c, then taps, from zero, then the bias), so the
 * results are bitwise those of the unfused convolutions on every ISA level. */
struct jb_resblock_job {
    const float *x; /* (C, T) */
    float *y;       /* (C, T), not x */
    int64_t T, C, S;
    int64_t dil;
    const float *w1, *b1; /* [S, C, 3], [S] or NULL */
    const float *w2, *b2; /* [C, S, 1], [C] or NULL */
    float rho;
    int64_t phase; /* Winograd: the origin (ops.def) modulo 2·dil */
};
/* The narrow block on AMX tiles (amx level; cpu_amx.c): 64-column tiles, both convs as bf16x3
 * tile products with the epilogues of the FMA kernel. Needs C and S multiples of 32; the packed
 * weights take 4·S·C floats (the room of Winograd's transformed weights), written once per call
 * by jb_cpu_resblock_amx_weights; each thread needs jb_cpu_resblock_amx_tile_floats of tile
 * memory. Its sums are not the FMA kernels' (rounding apart), but each column's are the same
 * wherever the tiles fall, so chunks still give the whole's bits. */
bool jb_cpu_resblock_amx_fits(int64_t C, int64_t S);
size_t jb_cpu_resblock_amx_tile_floats(int64_t C, int64_t S);
void jb_cpu_resblock_amx_weights(const struct jb_resblock_job *job, uint16_t *wp);
void jb_cpu_resblock_amx(const struct jb_resblock_job *job,
                         const uint16_t *wp,
                         int64_t tile0,
                         int64_t tile1,
                         float *mem);
/* Floats of tile memory one thread needs (64-byte aligned). */
#define JB_RESBLOCK_TILE_FLOATS(C, S) ((3 * (C) + (S)) * (int64_t)JB_CONV_TILE)
void jb_cpu_resblock_tiles_avx512(const struct jb_resblock_job *job,
                                  int64_t tile0,
                                  int64_t tile1,
                                  float *mem);

/* The same block with its dilated conv by Winograd F(2,3) along the dilation (AVX-512, dil >=
 * JB_RESBLOCK_WINO_MIN_DIL): outputs pair up as (t, t + dil) for the t whose (t + phase) / dil
 * is even (the "bases"; phase anchors the pairs in the whole sequence), and each pair costs four
 * products per weight instead of six. Bases are numbered from the sequence's virtual start at
 * column −phase; tile i takes the 48 from jb_cpu_resblock_wino_first() + 48·i, in increasing
 * order (the first tile may start at a base before column 0 whose partner is in range): three
 * vectors of 16, each at most two runs of contiguous columns (the runs are dil >= 16 long), so
 * every load and store is a masked vector access. u: the transformed weights of
 * jb_cpu_resblock_wino_weights. The sums are not the direct kernel's: they agree to rounding
 * (docs/design.md, CPU convolution kernels); but they depend only on the column's place in the
 * whole sequence, so chunks agree with it bitwise. */
#define JB_RESBLOCK_WINO_MIN_DIL 16
#define JB_RESBLOCK_WINO_FLOATS(C, S) ((4 * (C) + 2 * (S)) * (int64_t)JB_CONV_TILE)
/* Bases among virtual columns [0, n); the index of the first base a sequence at `phase` needs;
 * its tiles. */
int64_t jb_cpu_resblock_wino_bases(int64_t n, int64_t dil);
int64_t jb_cpu_resblock_wino_first(int64_t dil, int64_t phase);
int64_t jb_cpu_resblock_wino_tiles(int64_t T, int64_t dil, int64_t phase);
/* u[k·S·C + o·C + c] (k < 4) from w1 [S, C, 3]: g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, −g2. */
void jb_cpu_resblock_wino_weights(const float *w1, int64_t S, int64_t C, float *u);
void jb_cpu_resblock_wino_avx512(const struct jb_resblock_job *job,
                                 const float *u,
                                 int64_t tile0,
                                 int64_t tile1,
                                 float *mem);

/* codes[t] = argmin_j (xn[t] − 2·x_t·k_j) + kn[j] for t < n, first index on ties, for x (emb, n)
 * with rows ldx apart and the codebook kb [bins, emb]: the dot products and the search in one
 * pass over tiles of JB_CONV_TILE steps. pack: emb·JB_CONV_TILE floats. */
void jb_cpu_vq_fused_avx512(const float *x,
                            int64_t ldx,
                            int64_t n,
                            const float *kb,
                            int64_t bins,
                            int64_t emb,
                            const float *kn,
                            const float *xn,
                            int32_t *codes,
                            float *pack);
/* codes[t] = argmin_j (xn[t] − 2·dot[j·ldd + t]) + kn[j] for t < n, first index on ties: the
 * same codes bitwise as jb_cpu_vq_fused_avx512 when dot holds the 1x1 conv of x by kb. */
void jb_cpu_vq_block_avx2(const float *xn,
                          const float *dot,
                          int64_t ldd,
                          const float *kn,
                          int64_t bins,
                          int64_t n,
                          int32_t *codes);

/* dst[c·rows + r] = src[r·cols + c] over the whole 16 x 16 blocks of the source rows [r0, r1) of
 * a (rows, cols) transpose: rows [r0, r0 + (r1 − r0) / 16 · 16) by columns [0, cols / 16 · 16). */
void jb_cpu_transpose_avx512(const float *src,
                             int64_t rows,
                             int64_t cols,
                             float *dst,
                             int64_t r0,
                             int64_t r1);

/* --- the vectorised exp of the attention, sampling and quick_gelu kernels ------------------- */

/* Kernels built for several ISA levels (the engine targets x86-64-v2; the dispatch picks AVX-512
 * / AVX2 at load time through an ifunc). */
#if defined(__x86_64__) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define JB_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JB_CPU_CLONES
#endif

/* GCC only vectorises the selects around the exp below when it may assume that floating-point
 * operations do not trap (they don't here: the engine never enables FP exceptions); clang
 * already assumes so. */
#if defined(__GNUC__) && !defined(__clang__)
#define JB_CPU_NO_TRAPPING_MATH __attribute__((optimize("no-trapping-math")))
#else
#define JB_CPU_NO_TRAPPING_MATH
#endif

/* GCC does not inline a plain inline function into one with other optimisation options (the
 * attribute above): the helpers of such loops are forced inline, or the call stops the
 * vectoriser. */
#if defined(__GNUC__)
#define JB_CPU_INLINE static inline __attribute__((always_inline))
#else
#define JB_CPU_INLINE static inline
#endif

/* e^x = 2^k · e^r, k = round(x / ln 2), r = x − k·ln 2 (Cody-Waite, in two parts, |r| ≤ ln 2 / 2):
 * returns e^r (Cephes expf's polynomial, ≤ 1e-7 relative error, about one ulp) and sets *kb to
 * k + 1.5·2^23, whose low mantissa bits hold k. x must lie in [−87.3, 88] (2^k stays a normal
 * float); callers clamp and select. No libm call, so loops around it vectorise. */
JB_CPU_INLINE float jb_cpu_exp_reduced(float x, float *kb)
{
    *kb           = x * 1.44269504088896341f + 0x1.8p23f;
    const float k = *kb - 0x1.8p23f;
    const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
    float p       = 1.9875691500e-4f;
    p             = p * r + 1.3981999507e-3f;
    p             = p * r + 8.3334519073e-3f;
    p             = p * r + 4.1665795894e-2f;
    p             = p * r + 1.6666665459e-1f;
    p             = p * r + 5.0000001201e-1f;
    return p * (r * r) + r + 1.0f;
}

/* The bits of 2^k from the bits of kb (jb_cpu_exp_reduced's *kb, read as an integer). */
JB_CPU_INLINE int32_t jb_cpu_exp2_bits(int32_t kb_bits)
{
    return (kb_bits - 0x4B400000 + 127) << 23;
}

/* 2^k from kb itself. */
JB_CPU_INLINE float jb_cpu_exp2_of(float kb)
{
    int32_t i;
    memcpy(&i, &kb, sizeof i);
    i = jb_cpu_exp2_bits(i);
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

/* A float's bits, for building 2^k in the vectorised exp (type punning through a union is
 * defined in C; an array of these keeps the pun out of the loop, where it would stop GCC from
 * vectorising). */
union jb_f32_bits {
    int32_t i;
    float f;
};

/* s[j] ← e^(s[j] − m) for j < n (every s[j] ≤ m; −∞ gives 0) and returns Σ s[j]: Cephes expf
 * (Cody-Waite reduction, degree-5 polynomial, ≤ 1e-7 relative error — about one ulp, like the
 * reference's vectorised exp), vectorised; u: n words of scratch. */
float jb_cpu_exp_shift_sum(float *s, int64_t n, float m, union jb_f32_bits *u);

#endif
