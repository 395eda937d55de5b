/*
 * core/tensor.h - a view of an n-dimensional array: element type, shape, data pointer.
 *
 * Shapes are written outermost first, as PyTorch prints them: a Conv1d weight is
 * shape = {Cout, Cin, k}; elements are row-major and contiguous (last index fastest).
 * A jb_tensor never owns its data: weights point into the memory-mapped model file (or a
 * backend buffer, see `backend`), activations into a work arena reserved before the hot loop.
 */
#ifndef JB_CORE_TENSOR_H
#define JB_CORE_TENSOR_H

#include "core/common.h"

#define JB_MAX_DIMS 4

struct jb_backend;

struct jb_tensor {
    enum jb_dtype type;
    int n_dims;
    int64_t shape[JB_MAX_DIMS];
    void *data;
    const char *name; /* points into the model file's string table, or NULL */
    /* Where data lives: NULL for host memory (the mapped file, a heap copy), else the backend
     * whose buffer holds it (backend/backend.h). */
    struct jb_backend *backend;
};

int64_t jb_tensor_nelements(const struct jb_tensor *t);
size_t jb_tensor_nbytes(const struct jb_tensor *t);
/* "[2048, 64]" into buf. */
const char *jb_shape_str(int n_dims, const int64_t *shape, char *buf, size_t len);

/* Converts n elements of a stored tensor (any dtype) to fp32. */
void jb_convert_to_f32(enum jb_dtype type, const void *src, float *dst, size_t n);
/* Converts n fp32 values to the storage dtype (round-to-nearest-even for f16/bf16). */
void jb_convert_from_f32(enum jb_dtype type, const float *src, void *dst, size_t n);

#endif
