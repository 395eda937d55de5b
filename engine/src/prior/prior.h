/*
 * prior/prior.h - the Jukebox prior transformers (jukebox-spec §4, §5): conditioning,
 * teacher-forced forward, and the KV-cached incremental step the samplers are built on.
 *
 * Variants (enum jb_prior_variant, §4.1):
 *   A  upsampler          X = upper-level conditioner output; tied head, X re-added
 *   B  prior_5b           X = timing signal y_pos;            separate x_out
 *   C  prior_5b_lyrics    as B + encoder_kv from the lyric encoder, read by func-6 layers
 *   D  prior_1b_lyrics    one sequence [n_tokens lyric ids ; music ids + n_vocab];
 *                          X = [0 ; y_pos]; tied head over n_vocab + bins ids, X re-added
 *
 * Shapes: w = width, T = seq_len (window positions, incl. the lyric prefix for D), V = vocab
 * (logits per position: bins, or n_vocab + bins for D). Token ids given to the transformer are
 * "transformer ids": music codes for A-C, the merged ids for D. Every float array is fp32,
 * row-major, candidate-major ([N, T, w] means x[(n·T + t)·w + c]).
 *
 * Ownership and threads: a jb_prior borrows the weights (the jb_weights object and the model
 * file must outlive it) and the backend. A jb_prior_state belongs to one jb_prior and is used by
 * one thread at a time; several states of the same prior may run on different threads. The
 * conditioning arrays given to jb_prior_state_set_cond are borrowed, not copied: keep them alive
 * and unchanged until the state is reset with other conditioning or freed. Every array of this
 * interface is host memory; the prior keeps its weights, caches and activations in the backend's
 * memory and moves the rows it needs with jb_backend_set / jb_backend_get (X once per window, at
 * jb_prior_state_set_cond, where the backend's memory is not the host's). The conditioning
 * functions (start_emb, y_pos, x_timing, x_upsampler) use scratch of the prior object: call them
 * from one thread at a time per prior. Ops are multithreaded internally (the CPU backend's own
 * thread pool).
 *
 * Memory: jb_prior_state_init reserves every KV cache (per layer: func 1 B, func 3 2B, funcs 0
 * and 2 T, func 6 enc_len, func 7 P' positions of n_state floats for K and for V, per candidate),
 * all work buffers for chunks of up to max_chunk positions, the drawn tokens of a window and,
 * on a backend whose memory is not the host's, a copy of the window's X [N, T, w];
 * jb_prior_step and jb_prior_sample (sampler.h) allocate nothing.
 */
#ifndef JB_PRIOR_PRIOR_H
#define JB_PRIOR_PRIOR_H

#include "backend/backend.h"
#include "format/hparams.h"
#include "format/weights.h"

struct jb_prior;
struct jb_prior_state;
struct jb_sample_desc;

/* Builds the prior from its state-dict tensors (names as in the PyTorch checkpoint, §2.6-2.8):
 * checks every shape, takes matmul weights in their stored dtype (fp16 Conv1D weights of the
 * 5b priors are upcast inside jb_matmul), and marks the training-only prime_x_out.weight as
 * used. For the tied heads of A and D, x_emb serves both roles and a stored duplicate
 * prior.x_out.weight is accepted but not required.
 * Variant A also builds the upper-level conditioner when it is compiled in (prior/conditioner.h).
 * NULL on failure (jb_last_error()). */
struct jb_prior *jb_prior_init(const struct jb_prior_hparams *hp,
                               struct jb_weights *w,
                               struct jb_backend *be);
void jb_prior_free(struct jb_prior *p);

int32_t jb_prior_width(const struct jb_prior *p);      /* w */
int32_t jb_prior_seq_len(const struct jb_prior *p);    /* T */
int32_t jb_prior_vocab(const struct jb_prior *p);      /* V */
int32_t jb_prior_prefix_len(const struct jb_prior *p); /* lyric prefix of D (n_tokens), else 0 */
int32_t jb_prior_enc_len(const struct jb_prior *p);    /* encoder positions of C, else 0 */

/* ---- conditioning (§4.2-4.3, §4.9) -------------------------------------------------------- */

/* start_emb[w] = (Σ_g mask_g·GenreEmb[max(genre_g, 0)]) + ArtistEmb[artist], mask_g = genre_g ≥ 0;
 * genres has hp.max_bow_genre_size entries (−1 = unused slot). */
enum jb_status jb_prior_start_emb(struct jb_prior *p,
                                  int32_t artist,
                                  const int32_t *genres,
                                  float *start_emb);

/* Timing signal for the n_ctx music positions (B, C, D; bins from jb_labels_timing_bins):
 * y_pos[i] = (TotalEmb[k_tot] + AbsEmb[k_abs[i]]) + RelEmb[k_rel[i]], y_pos [n_ctx, w]. */
enum jb_status jb_prior_y_pos(struct jb_prior *p,
                              int32_t k_tot,
                              const int32_t *k_abs,
                              const int32_t *k_rel,
                              float *y_pos);

/* The window's X [T, w] for B, C, D: y_pos, with n_tokens zero rows in front for D. */
enum jb_status jb_prior_x_timing(struct jb_prior *p,
                                 int32_t k_tot,
                                 const int32_t *k_abs,
                                 const int32_t *k_rel,
                                 float *x);

/* The window's X [T, w] for A from the n_ctx/(cond_stride^cond_downs) upper-level codes of the
 * window (§4.3). ERR_UNSUPPORTED when the engine was built without the conditioner. */
enum jb_status jb_prior_x_upsampler(struct jb_prior *p, const int32_t *z_upper, float *x);

/* Variant C: runs the lyric encoder on lyric_ids [N, n_tokens] (ids < n_vocab) and writes
 * encoder_kv [N, n_tokens, w] = LN(acts·prime_state_proj + b). prime_acts (optional)
 * receives the encoder output [N, n_tokens, w_p]. Allocates its work memory per call (the job
 * loops use jb_prior_state_encoder_kv instead). */
enum jb_status jb_prior_encoder_kv(struct jb_prior *p,
                                   int N,
                                   const int32_t *lyric_ids,
                                   float *encoder_kv,
                                   float *prime_acts);
/* The same for one lyric window (N = 1) on the lyric-encoder state that a variant-C prior state
 * reserves with itself: allocates nothing. */
enum jb_status jb_prior_state_encoder_kv(struct jb_prior_state *st,
                                         const int32_t *lyric_ids,
                                         float *encoder_kv);

/* ---- forward --------------------------------------------------------------------------------- */

/* Observer of the residual stream: layer −1 is the transformer input h0 = (e + Pos) + X,
 * layer d ≥ 0 the output of block d; h is [n_batch, n_pos, width] for the positions of the
 * current chunk. Called on the calling thread. */
typedef void (
  *jb_prior_hook_fn)(void *user, int layer, int n_batch, int n_pos, int width, const float *h);

/* Teacher-forced forward of the first T ≤ seq_len positions (§4.4-4.8): tokens [N, T]
 * transformer ids (position t's input is tokens[t−1], position 0's is start_emb); start_emb
 * [N, w]; x [N, seq_len, w] the window's X; encoder_kv [N, enc_len, w] for C (else NULL);
 * logits [N, T, V] (optional). The same code as the cached path with one chunk of T positions
 * (blocked attention, never a T×T mask). Allocates a temporary state. */
enum jb_status jb_prior_forward(struct jb_prior *p,
                                int N,
                                int T,
                                const int32_t *tokens,
                                const float *start_emb,
                                const float *x,
                                const float *encoder_kv,
                                float *logits,
                                jb_prior_hook_fn hook,
                                void *hook_user);

/* ---- incremental (KV-cached) path, §5 -------------------------------------------------------- */

/* Reserves caches and buffers for n_batch candidates and chunks of up to max_chunk positions
 * (1 ≤ max_chunk ≤ seq_len; sampling needs max_chunk ≥ the priming chunk size). */
struct jb_prior_state *jb_prior_state_init(struct jb_prior *p, int n_batch, int max_chunk);
/* The same with the KV caches in kv_type: JB_DTYPE_F32, or JB_DTYPE_F16 (half the memory; keys
 * and values rounded to fp16 as the reference's fp16 inference does, all arithmetic fp32). */
struct jb_prior_state *jb_prior_state_init_ex(struct jb_prior *p,
                                              int n_batch,
                                              int max_chunk,
                                              enum jb_dtype kv_type);
/* The backend bytes jb_prior_state_init_ex(p, n_batch, max_chunk, kv_type) would reserve
 * (= jb_prior_state_bytes of the state it makes), computed without allocating: the memory plan
 * of a job. A double, as it may be far beyond what any machine has. */
double jb_prior_state_plan_bytes(const struct jb_prior *p,
                                 int n_batch,
                                 int max_chunk,
                                 enum jb_dtype kv_type);
void jb_prior_state_free(struct jb_prior_state *st);

/* Forgets all positions (sample_t = 0); the conditioning stays. */
void jb_prior_state_reset(struct jb_prior_state *st);

/* Sets the window's conditioning and resets: start_emb [N, w], x [N, seq_len, w], encoder_kv
 * [N, enc_len, w] (C only, else NULL). The arrays are borrowed (see the top of this file); x is
 * copied into backend memory here where that is not the host's (the steps read it there), so a
 * window's X is moved once. The backend's status (a failed copy) is returned. */
enum jb_status jb_prior_state_set_cond(struct jb_prior_state *st,
                                       const float *start_emb,
                                       const float *x,
                                       const float *encoder_kv);

void jb_prior_state_set_hook(struct jb_prior_state *st, jb_prior_hook_fn hook, void *user);

int64_t jb_prior_state_pos(const struct jb_prior_state *st); /* positions processed */
int jb_prior_state_n_batch(const struct jb_prior_state *st);
int jb_prior_state_max_chunk(const struct jb_prior_state *st);
size_t jb_prior_state_bytes(const struct jb_prior_state *st);    /* reserved memory */
size_t jb_prior_state_kv_bytes(const struct jb_prior_state *st); /* of which KV caches */

/* Processes the C positions S..S+C−1 (S = jb_prior_state_pos) of every candidate, exactly as
 * §5.3: input row ((start_emb if i == 0 else TokEmb[seq[n·ld_seq + i − 1]]) + Pos[i]) + X[n, i].
 * seq holds each candidate's transformer ids by absolute position (only entries S−1..S+C−2
 * are read; may be NULL when S == 0 and C == 1). logits (optional) receives [N, C, V].
 * Allocates nothing. ERR_INVALID_ARG (state unchanged) on a bad id, C or missing conditioning. */
enum jb_status jb_prior_step(struct jb_prior_state *st,
                             int C,
                             const int32_t *seq,
                             int64_t ld_seq,
                             float *logits);

/* One sampled position: the step of position t = jb_prior_state_pos (C = 1, as above) and the
 * backend's sampling op on its logits; tokens [N] (host) receives the drawn ids. The previous
 * tokens are read from seq (entry t − 1), except right after jb_prior_step_draw (below). */
enum jb_status jb_prior_step_sample(struct jb_prior_state *st,
                                    const int32_t *seq,
                                    int64_t ld_seq,
                                    const struct jb_sample_desc *sd,
                                    int32_t *tokens);
/* The same step without reading the drawn ids back: they stay in backend memory, where the next
 * decode step takes them (after a jb_prior_step_draw, that step does not read seq's entry t − 1,
 * which may not be written yet), and each position's draw is kept there for
 * jb_prior_state_drawn. No host round trip in steady state (the sampler reads the tokens back
 * in batches). */
enum jb_status jb_prior_step_draw(struct jb_prior_state *st,
                                  const int32_t *seq,
                                  int64_t ld_seq,
                                  const struct jb_sample_desc *sd);
/* How many positions jb_prior_sample draws before it reads their tokens back (and runs their
 * callbacks): 1 reads each token right after its draw; more saves a host round trip per token.
 * 0 (default): 32 on a backend that records its decode step (a GPU), else 1. */
void jb_prior_state_set_token_batch(struct jb_prior_state *st, int n);
int jb_prior_state_token_batch(const struct jb_prior_state *st);
/* Copies the ids drawn at positions t0..t1−1 (decoded since the last chunk step, reset or
 * set_cond; t1 ≤ jb_prior_state_pos) into out[n·ld_out + (t − t0)], in one read. */
enum jb_status jb_prior_state_drawn(struct jb_prior_state *st,
                                    int64_t t0,
                                    int64_t t1,
                                    int32_t *out,
                                    int64_t ld_out);

/* The decode step (jb_prior_step_sample) reads its position and previous tokens from backend
 * memory, so on a backend that records (CUDA graphs) it is recorded once per state and replayed
 * for every later token (default on). Off: every step runs its ops directly (tests compare). */
void jb_prior_state_set_graphs(struct jb_prior_state *st, bool on);
/* Whether a recorded decode step exists (it was recorded and is being replayed). */
bool jb_prior_state_graph_live(const struct jb_prior_state *st);
/* Why the state stopped recording by itself (the backend could not record the step, e.g. a
 * CUDA stream capture that failed; the steps then run directly and give the same tokens), or
 * NULL when it did not. */
const char *jb_prior_state_graph_why(const struct jb_prior_state *st);

#endif
