/*
 * tests/fuzz/fuzz_ckpt.c - libFuzzer target for the checkpoint reader and the pickle VM.
 *
 * Any input is opened as an in-memory checkpoint (legacy or zip); when it opens, every entry of
 * up to 1<<22 elements is read as fp32 and looked up by name, and the hps dict is walked. The
 * same bytes are also run through the pickle VM directly, strict and lenient (placeholders for
 * unknown globals). Seeds: tests/fuzz/corpus/ckpt/ (bad_hparams_build_growth, bad_stride0_*,
 * bad_hps_*, bad_zero_width_embedding: issue 10 items 1-3; ok_training_*: a torch training
 * checkpoint with numpy scalars, an Adam state and a Hyperparams object).
 *
 * Memory is part of the contract: LLVMFuzzerInitialize adds -rss_limit_mb=1024 and
 * -malloc_limit_mb=512 unless given, so an input that makes the reader hold more fails (the
 * corpus replay test checks the same peak with RSS_LIMIT_MB).
 *
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -Iengine/include -Iengine/src \
 *     $(ls engine/src/core/[a-z]*.c) engine/src/format/pickle.c engine/src/format/ckpt.c \
 *     tests/fuzz/fuzz_ckpt.c -lzip -lm -o fuzz_ckpt
 *   ./fuzz_ckpt -max_total_time=60 -max_len=65536 tests/fuzz/corpus/ckpt
 *   (or build/bin/fuzz_ckpt from a -DENCORE_FUZZ=ON build)
 */
#include "format/ckpt.h"
#include "format/pickle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_ELEMS (1 << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Default memory limits, appended to the command line unless it sets them. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char rss[] = "-rss_limit_mb=1024", mal[] = "-malloc_limit_mb=512";
    static char *args[256];
    bool has_rss = false, has_mal = false;
    int n = *argc < 250 ? *argc : 250;
    for (int i = 0; i < n; i++) {
        args[i] = (*argv)[i];
        has_rss |= strncmp(args[i], "-rss_limit_mb=", 14) == 0;
        has_mal |= strncmp(args[i], "-malloc_limit_mb=", 17) == 0;
    }
    if (!has_rss) args[n++] = rss;
    if (!has_mal) args[n++] = mal;
    args[n] = NULL;
    *argc   = n;
    *argv   = args;
    return 0;
}

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
    struct jb_pickle_opts lenient = { .opaque_globals = true };
    p                             = jb_pickle_load_opts(data, size, NULL, &lenient);
    if (p) {
        if (jb_pickle_bytes(p) > JB_PICKLE_MAX_BYTES) __builtin_trap(); /* over its budget */
        int budget = 10000;
        walk(jb_pickle_result(p), 0, &budget);
        for (size_t i = 0; i < jb_pickle_n_persids(p); i++)
            if (jb_pyval_type(jb_pickle_persid(p, i)) != JB_PY_PERSID) __builtin_trap();
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
