/* core/tensor.c - tensor sizes and dtype conversion. */
#include "core/tensor.h"
#include "core/fp16.h"

#include <stdio.h>
#include <string.h>

int64_t jb_tensor_nelements(const struct jb_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++)
        n *= t->shape[i];
    return n;
}

size_t jb_tensor_nbytes(const struct jb_tensor *t)
{
    return (size_t)jb_tensor_nelements(t) * jb_dtype_size(t->type);
}

const char *jb_shape_str(int n_dims, const int64_t *shape, char *buf, size_t len)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf + pos, len - pos, "[");
    for (int i = 0; i < n_dims && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (pos < len) snprintf(buf + pos, len - pos, "]");
    return buf;
}

void jb_convert_to_f32(enum jb_dtype type, const void *src, float *dst, size_t n)
{
    switch (type) {
    case JB_DTYPE_F32:
        memcpy(dst, src, n * 4);
        break;
    case JB_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = jb_f16_to_f32(s[i]);
        break;
    }
    case JB_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = jb_bf16_to_f32(s[i]);
        break;
    }
    case JB_DTYPE_I32: {
        const int32_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        break;
    }
    case JB_DTYPE_COUNT:
        break;
    }
}

void jb_convert_from_f32(enum jb_dtype type, const float *src, void *dst, size_t n)
{
    switch (type) {
    case JB_DTYPE_F32:
        memcpy(dst, src, n * 4);
        break;
    case JB_DTYPE_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = jb_f32_to_f16(src[i]);
        break;
    }
    case JB_DTYPE_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = jb_f32_to_bf16(src[i]);
        break;
    }
    case JB_DTYPE_I32: {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = (int32_t)src[i];
        break;
    }
    case JB_DTYPE_COUNT:
        break;
    }
}
