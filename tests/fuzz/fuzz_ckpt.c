/*
 * tests/fuzz/fuzz_ckpt.c - libFuzzer target for the checkpoint reader and the pickle VM.
 *
 * Any input is opened as an in-memory checkpoint (legacy or zip); when it opens, every entry of
 * up to 1<<22 elements is read as fp32 and looked up by name, and the hps dict is walked. The
 * same bytes are also run through the pickle VM directly. Seeds: tests/fuzz/corpus/ckpt/.
 *
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -Iengine/include -Iengine/src \
 *     $(ls engine/src/core/[a-z]*.c) engine/src/model/pickle.c engine/src/model/ckpt.c \
 *     tests/fuzz/fuzz_ckpt.c -lzip -lm -o fuzz_ckpt
 *   ./fuzz_ckpt -max_total_time=60 -max_len=65536 tests/fuzz/corpus/ckpt
 */
#include "model/ckpt.h"
#include "model/pickle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_ELEMS (1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every reachable value a bounded number of times (the graph may be cyclic). */
static void walk(const struct jb_pyval *v, int depth, int *budget)
{
    if (!v || depth > 16 || --*budget <= 0) return;
    (void)jb_pyval_int(v);
    (void)jb_pyval_float(v);
    const char *s = jb_pyval_str(v);
    if (s) (void)strlen(s);
    const uint8_t *b = jb_pyval_bytes(v);
    if (b && jb_pyval_len(v)) (void)b[jb_pyval_len(v) - 1];
    size_t n = jb_pyval_len(v);
    for (size_t i = 0; i<n && * budget> 0; i++) {
        walk(jb_pyval_dict_key(v, i), depth + 1, budget);
        walk(jb_pyval_item(v, i), depth + 1, budget);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jb_pickle *p = jb_pickle_load(data, size, NULL);
    if (p) {
        int budget = 10000;
        walk(jb_pickle_result(p), 0, &budget);
        jb_pickle_free(p);
    }

    struct jb_ckpt *c = jb_ckpt_open_memory(data, size);
    if (!c) return 0;
    for (int64_t i = 0; i < jb_ckpt_n_entries(c); i++) {
        const struct jb_ckpt_entry *e = jb_ckpt_entry(c, i);
        if (jb_ckpt_find(c, e->name) != e) __builtin_trap(); /* names are unique */
        int64_t numel = 1;
        for (int d = 0; d < e->n_dims; d++) {
            if (e->shape[d] < 0) __builtin_trap(); /* open must have refused it */
            if (e->shape[d] && numel > FUZZ_MAX_ELEMS / e->shape[d]) {
                numel = FUZZ_MAX_ELEMS + 1;
                break;
            }
            numel *= e->shape[d];
        }
        if (numel > FUZZ_MAX_ELEMS) continue;
        float *buf = malloc((size_t)(numel ? numel : 1) * sizeof(float));
        if (!buf) break;
        enum jb_status st = jb_ckpt_read_f32(c, e, buf);
        /* legacy bounds are all checked at open; zip data can still fail its CRC on read */
        if (st != JB_STATUS_OK && !jb_ckpt_is_zip(c)) __builtin_trap();
        free(buf);
    }
    int budget = 10000;
    walk(jb_ckpt_hps(c), 0, &budget);
    (void)jb_ckpt_step(c);
    jb_ckpt_close(c);
    return 0;
}
