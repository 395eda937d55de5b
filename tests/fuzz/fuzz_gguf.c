/*
 * tests/fuzz/fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Opens the input with jb_gguf_open_memory and, when it is accepted, reads every KV through
 * the public getters and every byte of every tensor, so that any inconsistency between what
 * the validator accepted and what the accessors assume shows up under ASan/UBSan. Invariants
 * of an accepted file are checked with __builtin_trap().
 *
 * Build with clang -fsanitize=fuzzer,address,undefined from engine/src/core/ (all .c files),
 * engine/src/format/gguf.c and this file; seeds are in tests/fuzz/corpus/gguf (regenerate them
 * with `test_gguf --write-corpus DIR`). Fuzz a copy of the corpus so new inputs stay out of git.
 */
#include "format/gguf.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(x)                                                                             \
    do {                                                                                           \
        if (!(x)) __builtin_trap();                                                                \
    } while (0)

static volatile uint64_t sink; /* keeps the reads from being optimised away */

static void touch_kv(const struct jb_gguf *g, int64_t i)
{
    const char *key = jb_gguf_key(g, i);
    FUZZ_ASSERT(key && *key);
    FUZZ_ASSERT(jb_gguf_find_key(g, key) == i);
    sink += strlen(key);
    int64_t iv;
    double fv;
    bool bv;
    enum jb_gguf_type t = jb_gguf_kv_type(g, i);
    FUZZ_ASSERT(t < JB_GGUF_TYPE_COUNT);
    switch (t) {
    case JB_GGUF_TYPE_STRING: {
        const char *s = jb_gguf_get_str(g, key);
        FUZZ_ASSERT(s);
        sink += strlen(s);
        break;
    }
    case JB_GGUF_TYPE_BOOL:
        FUZZ_ASSERT(jb_gguf_get_bool(g, key, &bv));
        sink += bv;
        break;
    case JB_GGUF_TYPE_FLOAT32:
    case JB_GGUF_TYPE_FLOAT64:
        FUZZ_ASSERT(jb_gguf_get_float(g, key, &fv));
        sink += (fv == fv);
        break;
    case JB_GGUF_TYPE_ARRAY: {
        enum jb_gguf_type at = jb_gguf_arr_type(g, i);
        uint64_t n           = jb_gguf_arr_len(g, i);
        FUZZ_ASSERT(at < JB_GGUF_TYPE_COUNT && at != JB_GGUF_TYPE_ARRAY);
        for (uint64_t k = 0; k < n; k++) {
            if (at == JB_GGUF_TYPE_STRING) {
                const char *s = jb_gguf_get_arr_str(g, key, k);
                FUZZ_ASSERT(s);
                sink += strlen(s);
            } else if (at == JB_GGUF_TYPE_BOOL) {
                FUZZ_ASSERT(jb_gguf_get_arr_bool(g, key, k, &bv));
                sink += bv;
            } else if (at == JB_GGUF_TYPE_FLOAT32 || at == JB_GGUF_TYPE_FLOAT64) {
                FUZZ_ASSERT(jb_gguf_get_arr_float(g, key, k, &fv));
                sink += (fv == fv);
            } else if (jb_gguf_get_arr_int(g, key, k, &iv)) {
                sink += (uint64_t)iv;
            } else {
                FUZZ_ASSERT(at == JB_GGUF_TYPE_UINT64); /* only values > INT64_MAX may fail */
            }
        }
        /* one past the end must be refused by every getter */
        FUZZ_ASSERT(!jb_gguf_get_arr_str(g, key, n) && !jb_gguf_get_arr_int(g, key, n, &iv) &&
                    !jb_gguf_get_arr_float(g, key, n, &fv) &&
                    !jb_gguf_get_arr_bool(g, key, n, &bv));
        break;
    }
    default:
        if (jb_gguf_get_int(g, key, &iv))
            sink += (uint64_t)iv;
        else
            FUZZ_ASSERT(t == JB_GGUF_TYPE_UINT64);
        break;
    }
}

static void touch_tensor(const struct jb_gguf *g, int64_t i, const uint8_t *data, size_t size)
{
    const struct jb_tensor *t = jb_gguf_tensor(g, i);
    FUZZ_ASSERT(t && t->name && *t->name);
    FUZZ_ASSERT(jb_gguf_find_tensor(g, t->name) == t);
    FUZZ_ASSERT(t->n_dims >= 0 && t->n_dims <= JB_MAX_DIMS && t->type < JB_DTYPE_COUNT);
    size_t nbytes    = jb_tensor_nbytes(t);
    const uint8_t *p = t->data;
    FUZZ_ASSERT(p >= data && nbytes <= size && (size_t)(p - data) <= size - nbytes);
    FUZZ_ASSERT(jb_gguf_tensor_offset(g, i) % jb_gguf_alignment(g) == 0);
    uint64_t sum = 0;
    for (size_t k = 0; k < nbytes; k++)
        sum += p[k];
    sink += sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jb_gguf *g = jb_gguf_open_memory(data, size);
    if (!g) return 0;
    size_t align = jb_gguf_alignment(g);
    FUZZ_ASSERT(align && !(align & (align - 1)) && jb_gguf_data_offset(g) <= size);
    for (int64_t i = 0; i < jb_gguf_n_kv(g); i++)
        touch_kv(g, i);
    for (int64_t i = 0; i < jb_gguf_n_tensors(g); i++)
        touch_tensor(g, i, data, size);
    FUZZ_ASSERT(jb_gguf_key(g, jb_gguf_n_kv(g)) == NULL &&
                jb_gguf_tensor(g, jb_gguf_n_tensors(g)) == NULL);
    jb_gguf_close(g);
    return 0;
}
