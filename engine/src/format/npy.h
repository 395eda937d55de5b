/*
 * format/npy.h - NumPy .npy files (format 1.0-3.0), little-endian, C order, for fixtures and
 * codes files. Supported dtypes: <f4 <f8 <i4 <i8 <f2 |u1 |b1. The header is parsed strictly and
 * the data size checked against the file size.
 */
#ifndef JB_FORMAT_NPY_H
#define JB_FORMAT_NPY_H

#include "core/common.h"

#define JB_NPY_MAX_DIMS 8

enum jb_npy_type {
    JB_NPY_F32,
    JB_NPY_F64,
    JB_NPY_I32,
    JB_NPY_I64,
    JB_NPY_F16,
    JB_NPY_U8,
    JB_NPY_BOOL
};

struct jb_npy {
    enum jb_npy_type type;
    int n_dims;
    int64_t shape[JB_NPY_MAX_DIMS];
    int64_t n;  /* elements */
    void *data; /* owned, malloc'd */
};

enum jb_status jb_npy_read(const char *path, struct jb_npy *out);
/* Parses a whole .npy file held in memory (the data is copied). For tests and fuzzing. */
enum jb_status jb_npy_read_memory(const void *buf, size_t size, struct jb_npy *out);
void jb_npy_free(struct jb_npy *a);
/* Element accessors with conversion (index < n). get_i truncates floats toward zero,
 * saturating, NaN -> 0. */
double jb_npy_get_f(const struct jb_npy *a, int64_t i);
int64_t jb_npy_get_i(const struct jb_npy *a, int64_t i);
/* Newly malloc'd converted copies (NULL on OOM). */
float *jb_npy_to_f32(const struct jb_npy *a);
int32_t *jb_npy_to_i32(const struct jb_npy *a); /* fails (NULL + jb_fail) if a value overflows */

enum jb_status jb_npy_write(const char *path,
                            enum jb_npy_type type,
                            int n_dims,
                            const int64_t *shape,
                            const void *data);

#endif
