/*
 * format/weights.h - name -> tensor lookup with the checks every model constructor needs.
 *
 * Model code asks for each parameter by its original PyTorch state-dict name and the shape it
 * expects; a missing tensor, a wrong shape or an unsupported dtype is one clear error ("tensor
 * 'x' has shape [2, 3], expected [3, 2]"). Every tensor of the source must be requested exactly
 * once (jb_weights_check_all_used), mirroring the reference's strict load_state_dict.
 *
 * A source is anything with a find() function: an Encore GGUF file (model/model.c) or, in
 * tests, a set of arrays. When the kernel needs fp32 and the file stores fp16/bf16, the weights
 * object converts once and owns the converted copy.
 */
#ifndef JB_FORMAT_WEIGHTS_H
#define JB_FORMAT_WEIGHTS_H

#include "core/tensor.h"

struct jb_weights_source {
    /* returns the tensor named `name` or NULL */
    const struct jb_tensor *(*find)(void *ctx, const char *name);
    /* number of tensors and the i-th one (for the unused-tensor check) */
    int64_t (*count)(void *ctx);
    const struct jb_tensor *(*get)(void *ctx, int64_t i);
    /* (optional) a tensor of the source has been copied to the backend or converted to fp32: its
     * memory may leave the process (a mapped file's pages, which a later read brings back from
     * the page cache) */
    void (*copied)(void *ctx, const struct jb_tensor *t);
    void *ctx;
};

enum jb_weights_want {
    JB_WANT_F32, /* convert to fp32 if stored otherwise */
    JB_WANT_ANY, /* any float dtype is fine (matmul weights) */
};

struct jb_weights;

struct jb_weights *jb_weights_init(const struct jb_weights_source *src);
void jb_weights_free(struct jb_weights *w); /* frees converted copies */

/* Places every tensor returned from now on with backend `be` (backend/backend.h): where the
 * backend reads host memory the mapped tensor itself (zero copy), else a copy in a backend buffer
 * made once with set_tensor and freed with the weights object (which must then be freed before
 * the backend). NULL: host tensors (the default). */
void jb_weights_set_backend(struct jb_weights *w, struct jb_backend *be);

/* Returns the tensor or NULL after jb_fail(JB_STATUS_ERR_MODEL, ...). Once a lookup has failed,
 * later lookups return NULL too, so constructors can ask for everything and check once at the
 * end with jb_weights_ok(). */
const struct jb_tensor *jb_weights_get(struct jb_weights *w,
                                       enum jb_weights_want want,
                                       int n_dims,
                                       const int64_t *shape,
                                       const char *fmt,
                                       ...) JB_PRINTF(5, 6);
/* true if a tensor with this name exists (does not mark it used) */
bool jb_weights_has(struct jb_weights *w, const char *fmt, ...) JB_PRINTF(2, 3);
/* Marks a tensor as deliberately unused at inference (e.g. prime_x_out.weight). */
void jb_weights_skip(struct jb_weights *w, const char *name);
bool jb_weights_ok(const struct jb_weights *w);
/* Bytes of every tensor of the source (what the model keeps on its backend). */
double jb_weights_bytes(const struct jb_weights *w);

/* Moving a model off its backend between uses: offload frees every backend copy of the placed
 * tensors (their host source, the mapped file or a converted host copy, stays) and returns the
 * bytes given back; reload copies them in again with set_tensor (ERR_NOMEM if the backend is
 * full; tensors already reloaded stay). The struct jb_tensor of each stays where it is, only
 * its data moves: a model reads tensor->data at each op, so it works unchanged after a reload
 * (but anything recorded with the old pointers, a CUDA graph, must not outlive an offload).
 * placed_bytes: what the backend holds now (resident) or what a reload would bring back
 * (!resident). No-ops where the backend reads host memory. */
double jb_weights_offload(struct jb_weights *w);
enum jb_status jb_weights_reload(struct jb_weights *w);
double jb_weights_placed_bytes(const struct jb_weights *w, bool resident);
/* Fails if some tensor of the source was never requested ("unexpected tensor 'x'"). */
enum jb_status jb_weights_check_all_used(struct jb_weights *w);

/* Shorthand for shapes: JB_SHAPE(a, b, c) -> 3, (int64_t[]){a, b, c} */
#define JB_SHAPE1(a)                                                                               \
    1, (const int64_t[])                                                                           \
    {                                                                                              \
        (a)                                                                                        \
    }
#define JB_SHAPE2(a, b)                                                                            \
    2, (const int64_t[])                                                                           \
    {                                                                                              \
        (a), (b)                                                                                   \
    }
#define JB_SHAPE3(a, b, c)                                                                         \
    3, (const int64_t[])                                                                           \
    {                                                                                              \
        (a), (b), (c)                                                                              \
    }

#endif
