/*
 * tests/unit/test_gguf.c - GGUF reader/writer tests.
 *
 * 1. Round trips through the writer and both readers (mmap and memory): every KV type, string
 *    arrays, f32/f16/bf16/i32 tensors, aligned offsets, byte-exact data.
 * 2. Writer API misuse: each error is reported and leaves no file behind.
 * 3. Handcrafted hostile files (in the style of llama.cpp's tests/test-gguf.cpp), one per
 *    check of the reader; each must fail with a message naming the problem.
 * 4. Every truncation of a small valid file must fail cleanly.
 *
 * Usage: test_gguf                      run the tests
 *        test_gguf --write-corpus DIR   write the fuzzing seed files (valid and corrupt) to DIR
 */
#include "core/fp16.h"
#include "format/gguf.h"
#include "test_common.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* tests/common's reporting and file reading under this file's names */
#define CHECK TC_REQUIRE
#define report tc_report
#define run_case tc_run_case
#define read_all(path, size) ((uint8_t *)tc_read_file((path), (size)))

static char tmp_dir[64];

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmp_dir, name);
}

/* ------------------------------------------------------------------------------------------ */
/* byte builder for handcrafted files                                                          */

struct bb {
    uint8_t *p;
    size_t n, cap;
};

static void bb_put(struct bb *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) abort();
        b->p   = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(struct bb *b, uint8_t v)
{
    bb_put(b, &v, 1);
}
static void bb_u32(struct bb *b, uint32_t v)
{
    bb_put(b, &v, 4);
}
static void bb_u64(struct bb *b, uint64_t v)
{
    bb_put(b, &v, 8);
}
static void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_pad(struct bb *b, size_t align)
{
    while (b->n % align)
        bb_u8(b, 0);
}
static void bb_fill(struct bb *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bb_u8(b, (uint8_t)(i * 7 + 1));
}

#define MAGIC 0x46554747u

static void hdr(struct bb *b, uint64_t n_tensors, uint64_t n_kv)
{
    bb_u32(b, MAGIC);
    bb_u32(b, 3);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void kv_u32(struct bb *b, const char *key, uint32_t v)
{
    bb_str(b, key);
    bb_u32(b, JB_GGUF_TYPE_UINT32);
    bb_u32(b, v);
}
static void kv_str(struct bb *b, const char *key, const char *v)
{
    bb_str(b, key);
    bb_u32(b, JB_GGUF_TYPE_STRING);
    bb_str(b, v);
}
static void tinfo(struct bb *b,
                  const char *name,
                  uint32_t n_dims,
                  const uint64_t *ne,
                  uint32_t type,
                  uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
/* padding to the data section, n bytes of data, padding after it */
static void data(struct bb *b, size_t align, size_t n)
{
    bb_pad(b, align);
    bb_fill(b, n);
    bb_pad(b, align);
}

#define NE(...)                                                                                    \
    (const uint64_t[])                                                                             \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }

/* --- valid handcrafted files --- */

static void f_valid_one(struct bb *b)
{
    hdr(b, 1, 1);
    kv_str(b, "general.name", "one");
    tinfo(b, "w", 1, NE(4), 0, 0);
    data(b, 32, 16);
}
static void f_valid_v2(struct bb *b)
{
    f_valid_one(b);
    b->p[4] = 2;
}
static void f_valid_meta_only(struct bb *b) /* no tensors, no padding */
{
    hdr(b, 0, 2);
    kv_str(b, "general.name", "meta");
    kv_u32(b, "x.count", 7);
}
static void f_valid_align64_unsorted(struct bb *b) /* infos out of offset order, scalar tensor */
{
    hdr(b, 3, 1);
    kv_u32(b, "general.alignment", 64);
    tinfo(b, "b", 2, NE(3, 2), 1, 64); /* f16 [2, 3] = 12 bytes */
    tinfo(b, "a", 1, NE(5), 26, 0);    /* i32 [5] = 20 bytes */
    tinfo(b, "s", 0, NULL, 30, 128);   /* bf16 scalar */
    bb_pad(b, 64);
    bb_fill(b, 20);
    bb_pad(b, 64);
    bb_fill(b, 12);
    bb_pad(b, 64);
    bb_fill(b, 2);
    bb_pad(b, 64);
}

/* --- corrupt files: one defect each --- */

static void f_empty(struct bb *b)
{
    (void)b;
}
static void f_bad_magic(struct bb *b)
{
    f_valid_one(b);
    memcpy(b->p, "GGUX", 4);
}
static void f_bad_version(struct bb *b)
{
    f_valid_one(b);
    b->p[4] = 4;
}
static void f_version1(struct bb *b)
{
    f_valid_one(b);
    b->p[4] = 1;
}
static void f_big_endian(struct bb *b)
{
    f_valid_one(b);
    b->p[4] = 0;
    b->p[7] = 3;
}
static void f_n_tensors_huge(struct bb *b)
{
    hdr(b, UINT64_MAX / 2, 0);
    bb_fill(b, 64);
}
static void f_n_kv_huge(struct bb *b)
{
    hdr(b, 0, (uint64_t)1 << 40);
    bb_fill(b, 64);
}
static void f_n_kv_past_end(struct bb *b)
{
    hdr(b, 0, 1000); /* under the limit but cannot fit in the bytes left */
    kv_u32(b, "a", 1);
}
static void f_key_past_end(struct bb *b)
{
    hdr(b, 0, 1);
    bb_u64(b, 1000);
    bb_put(b, "general.name", 12);
}
static void f_key_too_long(struct bb *b)
{
    hdr(b, 0, 1);
    bb_u64(b, (uint64_t)1 << 40);
    bb_fill(b, 32);
}
static void f_empty_key(struct bb *b)
{
    hdr(b, 0, 1);
    kv_u32(b, "", 1);
}
static void f_key_nul(struct bb *b)
{
    hdr(b, 0, 1);
    bb_u64(b, 3);
    bb_put(b, "a\0b", 3);
    bb_u32(b, JB_GGUF_TYPE_UINT8);
    bb_u8(b, 1);
}
static void f_dup_key(struct bb *b)
{
    hdr(b, 0, 3);
    kv_u32(b, "a.b", 1);
    kv_str(b, "c", "x");
    kv_u32(b, "a.b", 2);
}
static void f_kv_type_unknown(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "k");
    bb_u32(b, 13);
    bb_u32(b, 0);
}
static void f_value_past_end(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "k");
    bb_u32(b, JB_GGUF_TYPE_FLOAT64);
    bb_u32(b, 0); /* 4 of 8 bytes */
}
static void f_string_value_past_end(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "k");
    bb_u32(b, JB_GGUF_TYPE_STRING);
    bb_u64(b, 100);
    bb_put(b, "abc", 3);
}
static void f_bool_2(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "flag");
    bb_u32(b, JB_GGUF_TYPE_BOOL);
    bb_u8(b, 2);
}
static void f_bool_arr_2(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "flags");
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u32(b, JB_GGUF_TYPE_BOOL);
    bb_u64(b, 3);
    bb_u8(b, 1);
    bb_u8(b, 0);
    bb_u8(b, 2);
}
static void f_arr_of_arr(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "nested");
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u64(b, 1);
    bb_u32(b, JB_GGUF_TYPE_UINT8);
    bb_u64(b, 1);
    bb_u8(b, 1);
}
static void f_arr_type_unknown(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "arr");
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u32(b, 77);
    bb_u64(b, 0);
}
static void f_arr_too_long(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "arr");
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u32(b, JB_GGUF_TYPE_UINT8);
    bb_u64(b, (uint64_t)JB_GGUF_MAX_ARRAY + 1);
    bb_fill(b, 16);
}
static void f_arr_past_end(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "arr");
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u32(b, JB_GGUF_TYPE_FLOAT32);
    bb_u64(b, 1000);
    bb_fill(b, 16);
}
static void f_str_arr_past_end(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "vocab");
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u32(b, JB_GGUF_TYPE_STRING);
    bb_u64(b, 1000000);
    bb_str(b, "a");
    bb_str(b, "b");
}
static void f_str_arr_elem_past_end(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "vocab");
    bb_u32(b, JB_GGUF_TYPE_ARRAY);
    bb_u32(b, JB_GGUF_TYPE_STRING);
    bb_u64(b, 3);
    bb_str(b, "a");
    bb_str(b, "b");
    bb_u64(b, 50);
    bb_put(b, "c", 1);
    bb_fill(b, 16);
}
static void f_align_3(struct bb *b)
{
    hdr(b, 0, 1);
    kv_u32(b, "general.alignment", 3);
}
static void f_align_0(struct bb *b)
{
    hdr(b, 0, 1);
    kv_u32(b, "general.alignment", 0);
}
static void f_align_huge(struct bb *b)
{
    hdr(b, 0, 1);
    kv_u32(b, "general.alignment", 1u << 17);
}
static void f_align_type(struct bb *b)
{
    hdr(b, 0, 1);
    bb_str(b, "general.alignment");
    bb_u32(b, JB_GGUF_TYPE_INT32);
    bb_u32(b, 32);
}
static void f_dup_tensor(struct bb *b)
{
    hdr(b, 2, 0);
    tinfo(b, "w", 1, NE(4), 0, 0);
    tinfo(b, "w", 1, NE(4), 0, 32);
    data(b, 32, 48);
}
static void f_empty_tensor_name(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "", 1, NE(4), 0, 0);
    data(b, 32, 16);
}
static void f_tensor_name_long(struct bb *b)
{
    char name[257];
    memset(name, 'n', 256);
    name[256] = '\0';
    hdr(b, 1, 0);
    tinfo(b, name, 1, NE(4), 0, 0);
    data(b, 32, 16);
}
static void f_tensor_name_utf8(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w\xc0\xaf", 1, NE(4), 0, 0); /* overlong '/' */
    data(b, 32, 16);
}
static void f_n_dims_5(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 5, NE(1, 1, 1, 1, 4), 0, 0);
    data(b, 32, 16);
}
static void f_dim_0(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 2, NE(4, 0), 0, 0);
    data(b, 32, 16);
}
static void f_dim_negative(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 2, NE(4, (uint64_t)-3), 0, 0);
    data(b, 32, 16);
}
static void f_numel_overflow(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 3, NE((uint64_t)1 << 32, (uint64_t)1 << 32, 2), 0, 0);
    data(b, 32, 16);
}
static void f_nbytes_overflow(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 2, NE((uint64_t)1 << 31, (uint64_t)1 << 31), 0, 0); /* 2^62 f32 */
    data(b, 32, 16);
}
static void f_type_q4_0(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 1, NE(32), 2, 0);
    data(b, 32, 18);
}
static void f_type_unknown(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 1, NE(4), 99, 0);
    data(b, 32, 16);
}
static void f_unaligned(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 1, NE(4), 0, 4);
    data(b, 32, 32);
}
static void f_past_end(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 1, NE(16), 0, 0); /* 64 bytes, 32 present */
    data(b, 32, 32);
}
static void f_offset_overflow(struct bb *b)
{
    hdr(b, 1, 0);
    tinfo(b, "w", 1, NE(16), 0, UINT64_MAX & ~(uint64_t)31);
    data(b, 32, 64);
}
static void f_overlap(struct bb *b)
{
    hdr(b, 2, 0);
    tinfo(b, "a", 1, NE(16), 0, 0); /* [0, 64) */
    tinfo(b, "b", 1, NE(8), 0, 32); /* [32, 64) */
    data(b, 32, 64);
}
static void f_same_offset(struct bb *b)
{
    hdr(b, 2, 0);
    tinfo(b, "a", 1, NE(4), 0, 0);
    tinfo(b, "b", 1, NE(4), 0, 0);
    data(b, 32, 16);
}
static void f_no_data(struct bb *b) /* tensor infos end at EOF, not even padding */
{
    hdr(b, 1, 0);
    tinfo(b, "w", 1, NE(4), 0, 0);
}
static void f_unpadded_tail(struct bb *b) /* last tensor ends at EOF without its padding */
{
    hdr(b, 1, 0);
    tinfo(b, "w", 1, NE(4), 0, 0);
    bb_pad(b, 32);
    bb_fill(b, 16);
}

struct file_case {
    const char *name;
    void (*build)(struct bb *b);
    const char *expect; /* substring of the error message; NULL: the file is valid */
};

static const struct file_case file_cases[] = {
    { "valid_one", f_valid_one, NULL },
    { "valid_v2", f_valid_v2, NULL },
    { "valid_meta_only", f_valid_meta_only, NULL },
    { "valid_align64_unsorted", f_valid_align64_unsorted, NULL },
    { "empty_file", f_empty, "truncated" },
    { "bad_magic", f_bad_magic, "bad magic" },
    { "bad_version", f_bad_version, "unsupported version" },
    { "version_1", f_version1, "unsupported version" },
    { "big_endian", f_big_endian, "big-endian" },
    { "n_tensors_huge", f_n_tensors_huge, "too many tensors" },
    { "n_kv_huge", f_n_kv_huge, "too many KVs" },
    { "n_kv_past_end", f_n_kv_past_end, "cannot fit" },
    { "key_past_end", f_key_past_end, "past end" },
    { "key_too_long", f_key_too_long, "too long" },
    { "empty_key", f_empty_key, "is empty" },
    { "key_nul", f_key_nul, "NUL" },
    { "dup_key", f_dup_key, "duplicate key 'a.b', got it at KV 0 and KV 2" },
    { "kv_type_unknown", f_kv_type_unknown, "unknown value type" },
    { "value_past_end", f_value_past_end, "truncated" },
    { "string_value_past_end", f_string_value_past_end, "past end" },
    { "bool_2", f_bool_2, "bad bool" },
    { "bool_arr_2", f_bool_arr_2, "bad bool" },
    { "arr_of_arr", f_arr_of_arr, "nested arrays" },
    { "arr_type_unknown", f_arr_type_unknown, "unknown array element type" },
    { "arr_too_long", f_arr_too_long, "array too long" },
    { "arr_past_end", f_arr_past_end, "past end" },
    { "str_arr_past_end", f_str_arr_past_end, "past end" },
    { "str_arr_elem_past_end", f_str_arr_elem_past_end, "past end" },
    { "align_3", f_align_3, "general.alignment, got 3" },
    { "align_0", f_align_0, "general.alignment, got 0" },
    { "align_huge", f_align_huge, "power of two" },
    { "align_type", f_align_type, "expected u32" },
    { "dup_tensor", f_dup_tensor, "duplicate tensor name 'w'" },
    { "empty_tensor_name", f_empty_tensor_name, "is empty" },
    { "tensor_name_long", f_tensor_name_long, "too long" },
    { "tensor_name_utf8", f_tensor_name_utf8, "UTF-8" },
    { "n_dims_5", f_n_dims_5, "too many dimensions, got 5" },
    { "dim_0", f_dim_0, "got 0, expected >= 1" },
    { "dim_negative", f_dim_negative, "got -3" },
    { "numel_overflow", f_numel_overflow, "overflows" },
    { "nbytes_overflow", f_nbytes_overflow, "overflows" },
    { "type_q4_0", f_type_q4_0, "got 2 (Q4_0)" },
    { "type_unknown", f_type_unknown, "got 99" },
    { "unaligned_offset", f_unaligned, "unaligned" },
    { "data_past_end", f_past_end, "past end" },
    { "offset_overflow", f_offset_overflow, "past end" },
    { "overlap", f_overlap, "overlap" },
    { "same_offset", f_same_offset, "overlap" },
    { "no_data", f_no_data, "past end" },
    { "unpadded_tail", f_unpadded_tail, "truncated" },
};
#define N_FILE_CASES (sizeof file_cases / sizeof file_cases[0])

/* Runs the parser on an exact-size heap copy, so ASan sees any over-read. */
static struct jb_gguf *open_copy(const uint8_t *p, size_t n, uint8_t **keep)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) abort();
    if (n) memcpy(copy, p, n);
    struct jb_gguf *g = jb_gguf_open_memory(copy, n);
    if (g)
        *keep = copy;
    else
        free(copy);
    return g;
}

static void run_file_cases(void)
{
    for (size_t i = 0; i < N_FILE_CASES; i++) {
        const struct file_case *c = &file_cases[i];
        struct bb b               = { 0 };
        c->build(&b);
        jb_clear_error();
        uint8_t *keep     = NULL;
        struct jb_gguf *g = open_copy(b.p, b.n, &keep);
        char name[96], detail[1200];
        snprintf(name, sizeof name, "file %s", c->name);
        if (!c->expect) {
            snprintf(detail, sizeof detail, "%s", g ? "opened" : jb_last_error());
            report(name, g != NULL, detail);
        } else {
            const char *msg = jb_last_error();
            bool ok         = !g && strncmp(msg, "gguf: ", 6) == 0 && strstr(msg, c->expect);
            snprintf(detail,
                     sizeof detail,
                     "%s%s",
                     g ? "unexpectedly opened" : msg,
                     ok || g ? "" : " [expected the message to mention the defect]");
            report(name, ok, detail);
        }
        jb_gguf_close(g);
        free(keep);
        free(b.p);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* writer round trip                                                                           */

static const char *const vocab[] = { "", "a", "héllo", "with space", "日本語" };
#define N_VOCAB 5

static float t_f32[3 * 5];
static uint16_t t_f16[2 * 3 * 4];
static uint16_t t_bf16[7];
static int32_t t_i32[2 * 2 * 2 * 2];
static float t_scalar[1] = { 42.5f };

static void init_tensor_data(void)
{
    for (int i = 0; i < 15; i++)
        t_f32[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 24; i++)
        t_f16[i] = jb_f32_to_f16((float)i / 3.0f);
    for (int i = 0; i < 7; i++)
        t_bf16[i] = jb_f32_to_bf16((float)i * 1000.5f);
    for (int i = 0; i < 16; i++)
        t_i32[i] = i * i - 100;
}

/* Declares the full set of KVs and tensors on w. */
static bool fill_writer(struct jb_gguf_writer *w)
{
    jb_gguf_writer_set_str(w, "general.name", "round trip");
    jb_gguf_writer_set_u8(w, "t.u8", 250);
    jb_gguf_writer_set_i8(w, "t.i8", -100);
    jb_gguf_writer_set_u16(w, "t.u16", 65000);
    jb_gguf_writer_set_i16(w, "t.i16", -32000);
    jb_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    jb_gguf_writer_set_i32(w, "t.i32", -2000000000);
    jb_gguf_writer_set_u64(w, "t.u64", UINT64_MAX);
    jb_gguf_writer_set_u64(w, "t.u64_small", 123456789012345ull);
    jb_gguf_writer_set_i64(w, "t.i64", INT64_MIN);
    jb_gguf_writer_set_f32(w, "t.f32", 0.1f);
    jb_gguf_writer_set_f64(w, "t.f64", 0.1);
    jb_gguf_writer_set_bool(w, "t.true", true);
    jb_gguf_writer_set_bool(w, "t.false", false);
    jb_gguf_writer_set_str(w, "t.empty_str", "");
    jb_gguf_writer_set_str(w, "t.utf8", "Ünïcødé ♪");
    const int32_t ai[] = { 1, -2, 3, INT32_MAX, INT32_MIN };
    jb_gguf_writer_set_arr_i32(w, "t.arr_i32", ai, 5);
    const float af[] = { 1.5f, -2.25f, 3e38f };
    jb_gguf_writer_set_arr_f32(w, "t.arr_f32", af, 3);
    jb_gguf_writer_set_arr_str(w, "t.vocab", vocab, N_VOCAB);
    jb_gguf_writer_set_arr_str(w, "t.empty_arr", NULL, 0);
    const uint8_t au8[]   = { 0, 255, 7 };
    const int16_t ai16[]  = { -1, 2 };
    const uint64_t au64[] = { 1, UINT64_MAX };
    const double af64[]   = { 3.141592653589793, -0.0 };
    const uint8_t ab[]    = { 1, 0, 1, 1 };
    jb_gguf_writer_set_arr(w, "t.arr_u8", JB_GGUF_TYPE_UINT8, au8, 3);
    jb_gguf_writer_set_arr(w, "t.arr_i16", JB_GGUF_TYPE_INT16, ai16, 2);
    jb_gguf_writer_set_arr(w, "t.arr_u64", JB_GGUF_TYPE_UINT64, au64, 2);
    jb_gguf_writer_set_arr(w, "t.arr_f64", JB_GGUF_TYPE_FLOAT64, af64, 2);
    jb_gguf_writer_set_arr(w, "t.arr_bool", JB_GGUF_TYPE_BOOL, ab, 4);
    CHECK(jb_gguf_writer_add_tensor(w, "enc.w", JB_DTYPE_F32, 2, (const int64_t[]){ 3, 5 }) == 0);
    CHECK(jb_gguf_writer_add_tensor(w, "enc.h", JB_DTYPE_F16, 3, (const int64_t[]){ 2, 3, 4 }) ==
          1);
    CHECK(jb_gguf_writer_add_tensor(w, "dec.b", JB_DTYPE_BF16, 1, (const int64_t[]){ 7 }) == 2);
    CHECK(jb_gguf_writer_add_tensor(w, "codes", JB_DTYPE_I32, 4, (const int64_t[]){ 2, 2, 2, 2 }) ==
          3);
    CHECK(jb_gguf_writer_add_tensor(w, "gain", JB_DTYPE_F32, 0, NULL) == 4);
    return true;
}

static bool write_tensors(struct jb_gguf_writer *w)
{
    CHECK(jb_gguf_writer_write_tensor(w, t_f32, sizeof t_f32) == JB_STATUS_OK);
    CHECK(jb_gguf_writer_write_tensor(w, t_f16, sizeof t_f16) == JB_STATUS_OK);
    CHECK(jb_gguf_writer_write_tensor(w, t_bf16, sizeof t_bf16) == JB_STATUS_OK);
    CHECK(jb_gguf_writer_write_tensor(w, t_i32, sizeof t_i32) == JB_STATUS_OK);
    CHECK(jb_gguf_writer_write_tensor(w, t_scalar, sizeof t_scalar) == JB_STATUS_OK);
    return true;
}

static bool write_full_file(const char *path)
{
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    bool ok = fill_writer(w) && jb_gguf_writer_begin(w, path) == JB_STATUS_OK && write_tensors(w) &&
              jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    CHECK(ok);
    return true;
}

static bool check_tensor(const struct jb_gguf *g,
                         const char *name,
                         enum jb_dtype type,
                         int n_dims,
                         const int64_t *shape,
                         const void *data,
                         size_t nbytes)
{
    const struct jb_tensor *t = jb_gguf_find_tensor(g, name);
    CHECK(t);
    CHECK(strcmp(t->name, name) == 0);
    CHECK(t->type == type);
    CHECK(t->n_dims == n_dims);
    for (int i = 0; i < n_dims; i++)
        CHECK(t->shape[i] == shape[i]);
    CHECK(jb_tensor_nbytes(t) == nbytes);
    CHECK(memcmp(t->data, data, nbytes) == 0);
    return true;
}

static bool check_full_file(const struct jb_gguf *g)
{
    int64_t i;
    double f;
    bool b;
    CHECK(jb_gguf_version(g) == 3);
    CHECK(jb_gguf_alignment(g) == 32);
    CHECK(jb_gguf_n_kv(g) == 26); /* 25 set + general.alignment */
    CHECK(jb_gguf_find_key(g, "general.alignment") == 0);
    CHECK(jb_gguf_kv_type(g, 0) == JB_GGUF_TYPE_UINT32);
    CHECK(jb_gguf_get_int(g, "general.alignment", &i) && i == 32);
    CHECK(strcmp(jb_gguf_get_str(g, "general.name"), "round trip") == 0);
    CHECK(jb_gguf_get_int(g, "t.u8", &i) && i == 250);
    CHECK(jb_gguf_get_int(g, "t.i8", &i) && i == -100);
    CHECK(jb_gguf_get_int(g, "t.u16", &i) && i == 65000);
    CHECK(jb_gguf_get_int(g, "t.i16", &i) && i == -32000);
    CHECK(jb_gguf_get_int(g, "t.u32", &i) && i == 4000000000ll);
    CHECK(jb_gguf_get_int(g, "t.i32", &i) && i == -2000000000);
    CHECK(!jb_gguf_get_int(g, "t.u64", &i)); /* does not fit in int64 */
    CHECK(jb_gguf_kv_type(g, jb_gguf_find_key(g, "t.u64")) == JB_GGUF_TYPE_UINT64);
    CHECK(jb_gguf_get_int(g, "t.u64_small", &i) && i == 123456789012345ll);
    CHECK(jb_gguf_get_int(g, "t.i64", &i) && i == INT64_MIN);
    CHECK(jb_gguf_get_float(g, "t.f32", &f) && f == (double)0.1f);
    CHECK(jb_gguf_get_float(g, "t.f64", &f) && f == 0.1);
    CHECK(!jb_gguf_get_float(g, "t.i32", &f)); /* wrong type */
    CHECK(!jb_gguf_get_int(g, "t.f32", &i));
    CHECK(jb_gguf_get_bool(g, "t.true", &b) && b);
    CHECK(jb_gguf_get_bool(g, "t.false", &b) && !b);
    CHECK(!jb_gguf_get_bool(g, "t.u8", &b));
    CHECK(strcmp(jb_gguf_get_str(g, "t.empty_str"), "") == 0);
    CHECK(strcmp(jb_gguf_get_str(g, "t.utf8"), "Ünïcødé ♪") == 0);
    CHECK(!jb_gguf_get_str(g, "t.u8"));
    CHECK(!jb_gguf_get_str(g, "missing"));
    CHECK(jb_gguf_find_key(g, "missing") == -1);

    int64_t k = jb_gguf_find_key(g, "t.arr_i32");
    CHECK(jb_gguf_kv_type(g, k) == JB_GGUF_TYPE_ARRAY);
    CHECK(jb_gguf_arr_type(g, k) == JB_GGUF_TYPE_INT32 && jb_gguf_arr_len(g, k) == 5);
    CHECK(jb_gguf_get_arr_int(g, "t.arr_i32", 3, &i) && i == INT32_MAX);
    CHECK(jb_gguf_get_arr_int(g, "t.arr_i32", 4, &i) && i == INT32_MIN);
    CHECK(!jb_gguf_get_arr_int(g, "t.arr_i32", 5, &i)); /* index checked */
    CHECK(jb_gguf_get_arr_float(g, "t.arr_f32", 2, &f) && f == (double)3e38f);
    CHECK(!jb_gguf_get_arr_float(g, "t.arr_i32", 0, &f));
    k = jb_gguf_find_key(g, "t.vocab");
    CHECK(jb_gguf_arr_type(g, k) == JB_GGUF_TYPE_STRING && jb_gguf_arr_len(g, k) == N_VOCAB);
    for (uint64_t j = 0; j < N_VOCAB; j++)
        CHECK(strcmp(jb_gguf_get_arr_str(g, "t.vocab", j), vocab[j]) == 0);
    CHECK(!jb_gguf_get_arr_str(g, "t.vocab", N_VOCAB));
    CHECK(!jb_gguf_get_arr_int(g, "t.vocab", 0, &i));
    CHECK(!jb_gguf_get_arr_float(g, "t.vocab", 0, &f));
    k = jb_gguf_find_key(g, "t.empty_arr");
    CHECK(jb_gguf_arr_type(g, k) == JB_GGUF_TYPE_STRING && jb_gguf_arr_len(g, k) == 0);
    CHECK(!jb_gguf_get_arr_str(g, "t.empty_arr", 0));
    CHECK(jb_gguf_get_arr_int(g, "t.arr_u8", 1, &i) && i == 255);
    CHECK(jb_gguf_get_arr_int(g, "t.arr_i16", 0, &i) && i == -1);
    CHECK(!jb_gguf_get_arr_int(g, "t.arr_u64", 1, &i)); /* UINT64_MAX does not fit */
    CHECK(jb_gguf_get_arr_int(g, "t.arr_u64", 0, &i) && i == 1);
    CHECK(jb_gguf_get_arr_float(g, "t.arr_f64", 0, &f) && f == 3.141592653589793);
    CHECK(jb_gguf_get_arr_bool(g, "t.arr_bool", 1, &b) && !b);
    CHECK(jb_gguf_get_arr_bool(g, "t.arr_bool", 3, &b) && b);
    CHECK(!jb_gguf_get_arr_int(g, "t.arr_bool", 0, &i));
    CHECK(jb_gguf_arr_len(g, jb_gguf_find_key(g, "t.u8")) == 0);
    CHECK(jb_gguf_arr_type(g, jb_gguf_find_key(g, "t.u8")) == JB_GGUF_TYPE_COUNT);
    CHECK(jb_gguf_key(g, jb_gguf_n_kv(g)) == NULL);

    CHECK(jb_gguf_n_tensors(g) == 5);
    CHECK(strcmp(jb_gguf_tensor(g, 0)->name, "enc.w") == 0);
    CHECK(jb_gguf_tensor(g, 5) == NULL && jb_gguf_tensor(g, -1) == NULL);
    CHECK(jb_gguf_find_tensor(g, "nope") == NULL);
    CHECK(
      check_tensor(g, "enc.w", JB_DTYPE_F32, 2, (const int64_t[]){ 3, 5 }, t_f32, sizeof t_f32));
    CHECK(
      check_tensor(g, "enc.h", JB_DTYPE_F16, 3, (const int64_t[]){ 2, 3, 4 }, t_f16, sizeof t_f16));
    CHECK(
      check_tensor(g, "dec.b", JB_DTYPE_BF16, 1, (const int64_t[]){ 7 }, t_bf16, sizeof t_bf16));
    CHECK(check_tensor(
      g, "codes", JB_DTYPE_I32, 4, (const int64_t[]){ 2, 2, 2, 2 }, t_i32, sizeof t_i32));
    CHECK(check_tensor(g, "gain", JB_DTYPE_F32, 0, NULL, t_scalar, sizeof t_scalar));
    CHECK(jb_gguf_data_offset(g) % 32 == 0);
    for (int64_t j = 0; j < jb_gguf_n_tensors(g); j++) {
        CHECK(jb_gguf_tensor_offset(g, j) % 32 == 0);
        CHECK((const uint8_t *)jb_gguf_tensor(g, j)->data ==
              (const uint8_t *)jb_gguf_tensor(g, 0)->data + jb_gguf_tensor_offset(g, j));
    }
    /* offsets are packed in declaration order */
    CHECK(jb_gguf_tensor_offset(g, 0) == 0 && jb_gguf_tensor_offset(g, 1) == 64 &&
          jb_gguf_tensor_offset(g, 2) == 128 && jb_gguf_tensor_offset(g, 3) == 160 &&
          jb_gguf_tensor_offset(g, 4) == 224);
    return true;
}

static bool test_round_trip_mmap(void)
{
    char path[128];
    tmp_path(path, sizeof path, "full.gguf");
    CHECK(write_full_file(path));
    CHECK(tc_count_temporaries(path) == 0);
    struct jb_gguf *g = jb_gguf_open(path);
    CHECK(g);
    bool ok = check_full_file(g);
    /* mmap is page-aligned, so the data pointers are aligned too */
    for (int64_t j = 0; ok && j < jb_gguf_n_tensors(g); j++)
        ok = ((uintptr_t)jb_gguf_tensor(g, j)->data % 32) == 0;
    jb_gguf_close(g);
    return ok;
}

static bool test_round_trip_memory(void)
{
    char path[128];
    tmp_path(path, sizeof path, "full.gguf");
    size_t n;
    uint8_t *buf = read_all(path, &n);
    CHECK(buf);
    CHECK(n % 32 == 0); /* the last tensor is padded as well */
    struct jb_gguf *g = jb_gguf_open_memory(buf, n);
    bool ok           = g && check_full_file(g);
    jb_gguf_close(g);
    free(buf);
    return ok;
}

static bool test_replace_key(void)
{
    char path[128];
    tmp_path(path, sizeof path, "replace.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    jb_gguf_writer_set_u32(w, "a", 1);
    jb_gguf_writer_set_str(w, "b", "first");
    jb_gguf_writer_set_str(w, "a", "now a string");
    jb_gguf_writer_set_str(w, "b", "second");
    bool ok =
      jb_gguf_writer_begin(w, path) == JB_STATUS_OK && jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    CHECK(ok);
    struct jb_gguf *g = jb_gguf_open(path);
    CHECK(g);
    ok = jb_gguf_n_kv(g) == 3 && jb_gguf_n_tensors(g) == 0 &&
         strcmp(jb_gguf_get_str(g, "a"), "now a string") == 0 &&
         strcmp(jb_gguf_get_str(g, "b"), "second") == 0 && jb_gguf_find_key(g, "a") == 1;
    jb_gguf_close(g);
    return ok;
}

static bool test_alignment_64(void)
{
    char path[128];
    tmp_path(path, sizeof path, "align64.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    jb_gguf_writer_set_u32(w, "general.alignment", 64);
    float a[3] = { 1, 2, 3 }, b[5] = { 4, 5, 6, 7, 8 };
    bool ok = jb_gguf_writer_add_tensor(w, "a", JB_DTYPE_F32, 1, (const int64_t[]){ 3 }) == 0 &&
              jb_gguf_writer_add_tensor(w, "b", JB_DTYPE_F32, 1, (const int64_t[]){ 5 }) == 1 &&
              jb_gguf_writer_begin(w, path) == JB_STATUS_OK &&
              jb_gguf_writer_write_tensor(w, a, sizeof a) == JB_STATUS_OK &&
              jb_gguf_writer_write_tensor(w, b, sizeof b) == JB_STATUS_OK &&
              jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    CHECK(ok);
    struct jb_gguf *g = jb_gguf_open(path);
    CHECK(g);
    ok = jb_gguf_alignment(g) == 64 && jb_gguf_data_offset(g) % 64 == 0 &&
         jb_gguf_tensor_offset(g, 1) == 64 &&
         memcmp(jb_gguf_find_tensor(g, "b")->data, b, sizeof b) == 0;
    jb_gguf_close(g);
    return ok;
}

/* resident pages of this process (/proc/self/statm), or -1 */
static long resident_pages(void)
{
    long size = -1, resident = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident;
}

/* jb_gguf_drop_pages: a copied tensor's pages leave the process, and reading it again gives the
 * same values (from the page cache). Its neighbour's pages and values are untouched. */
static bool test_drop_pages(void)
{
    char path[128];
    tmp_path(path, sizeof path, "drop.gguf");
    const size_t n = (size_t)1 << 20; /* 4 MB of fp32 */
    float *a       = malloc(n * sizeof *a);
    CHECK(a);
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(i % 1000);
    float b[4]               = { 1, 2, 3, 4 };
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    bool ok =
      w &&
      jb_gguf_writer_add_tensor(w, "a", JB_DTYPE_F32, 1, (const int64_t[]){ (int64_t)n }) == 0 &&
      jb_gguf_writer_add_tensor(w, "b", JB_DTYPE_F32, 1, (const int64_t[]){ 4 }) == 1 &&
      jb_gguf_writer_begin(w, path) == JB_STATUS_OK &&
      jb_gguf_writer_write_tensor(w, a, n * sizeof *a) == JB_STATUS_OK &&
      jb_gguf_writer_write_tensor(w, b, sizeof b) == JB_STATUS_OK &&
      jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    struct jb_gguf *g          = ok ? jb_gguf_open(path) : NULL;
    const struct jb_tensor *ta = g ? jb_gguf_find_tensor(g, "a") : NULL;
    const struct jb_tensor *tb = g ? jb_gguf_find_tensor(g, "b") : NULL;
    ok = ta && tb && memcmp(ta->data, a, n * sizeof *a) == 0; /* every page read in */
    const long before = resident_pages();
    if (ok) jb_gguf_drop_pages(g, ta->data, n * sizeof *a);
    const long after = resident_pages(), page = sysconf(_SC_PAGESIZE);
    const long dropped = before - after;
    printf("    resident: %ld -> %ld pages (%ld dropped, the tensor spans %zu)\n",
           before,
           after,
           dropped,
           n * sizeof *a / (size_t)page);
    /* statm lags by up to 64 pages a thread (the kernel batches its RSS counters) */
    ok = ok && before > 0 && dropped >= (long)(n * sizeof *a / (size_t)page) * 3 / 4 &&
         memcmp(tb->data, b, sizeof b) == 0 && memcmp(ta->data, a, n * sizeof *a) == 0;
    jb_gguf_close(g);
    free(a);
    return ok;
}

/* --- writer misuse: each must fail with a message and leave neither file behind --- */

static bool no_files(const char *path)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    return !tc_exists(path) && !tc_exists(tmp) && tc_count_temporaries(path) == 0;
}

static bool test_writer_wrong_nbytes(void)
{
    char path[128];
    tmp_path(path, sizeof path, "wrong_nbytes.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    float x[4]               = { 0 };
    CHECK(w);
    CHECK(jb_gguf_writer_add_tensor(w, "x", JB_DTYPE_F32, 1, (const int64_t[]){ 4 }) == 0);
    CHECK(jb_gguf_writer_begin(w, path) == JB_STATUS_OK);
    enum jb_status st = jb_gguf_writer_write_tensor(w, x, 12);
    printf("     message: %s\n", jb_last_error());
    bool ok = st == JB_STATUS_ERR_INVALID_ARG && strstr(jb_last_error(), "got 12 bytes") &&
              jb_gguf_writer_finish(w) == JB_STATUS_ERR_INVALID_ARG && no_files(path);
    jb_gguf_writer_free(w);
    return ok;
}

static bool test_writer_missing_tensor(void)
{
    char path[128];
    tmp_path(path, sizeof path, "missing.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    float x[4]               = { 0 };
    CHECK(w);
    CHECK(jb_gguf_writer_add_tensor(w, "x", JB_DTYPE_F32, 1, (const int64_t[]){ 4 }) == 0);
    CHECK(jb_gguf_writer_add_tensor(w, "y", JB_DTYPE_F32, 1, (const int64_t[]){ 4 }) == 1);
    CHECK(jb_gguf_writer_begin(w, path) == JB_STATUS_OK);
    CHECK(jb_gguf_writer_write_tensor(w, x, sizeof x) == JB_STATUS_OK);
    enum jb_status st = jb_gguf_writer_finish(w);
    printf("     message: %s\n", jb_last_error());
    bool ok = st == JB_STATUS_ERR_INVALID_ARG && strstr(jb_last_error(), "'y'") && no_files(path);
    jb_gguf_writer_free(w);
    return ok;
}

static bool test_writer_too_many_writes(void)
{
    char path[128];
    tmp_path(path, sizeof path, "toomany.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    float x[4]               = { 0 };
    CHECK(w);
    CHECK(jb_gguf_writer_add_tensor(w, "x", JB_DTYPE_F32, 1, (const int64_t[]){ 4 }) == 0);
    CHECK(jb_gguf_writer_begin(w, path) == JB_STATUS_OK);
    CHECK(jb_gguf_writer_write_tensor(w, x, sizeof x) == JB_STATUS_OK);
    enum jb_status st = jb_gguf_writer_write_tensor(w, x, sizeof x);
    printf("     message: %s\n", jb_last_error());
    bool ok = st == JB_STATUS_ERR_INVALID_ARG && no_files(path);
    jb_gguf_writer_free(w);
    return ok;
}

static bool test_writer_free_midway(void)
{
    char path[128];
    tmp_path(path, sizeof path, "abandoned.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    CHECK(jb_gguf_writer_add_tensor(w, "x", JB_DTYPE_F32, 1, (const int64_t[]){ 4 }) == 0);
    CHECK(jb_gguf_writer_begin(w, path) == JB_STATUS_OK);
    CHECK(tc_count_temporaries(path) == 1 && !tc_exists(path));
    jb_gguf_writer_free(w);
    CHECK(no_files(path));
    return true;
}

/* Names planted where older versions wrote their temporaries (OUT.tmp, OUT.import) as symlinks
 * to a victim file: the writer must neither follow them nor touch the victim. */
static bool test_writer_ignores_planted_symlinks(void)
{
    char path[128], victim[128], link1[160], link2[160];
    tmp_path(path, sizeof path, "planted.gguf");
    tmp_path(victim, sizeof victim, "victim.txt");
    snprintf(link1, sizeof link1, "%s.tmp", path);
    snprintf(link2, sizeof link2, "%s.import", path);
    FILE *f = fopen(victim, "w");
    CHECK(f);
    fputs("precious", f);
    fclose(f);
    CHECK(symlink(victim, link1) == 0 && symlink(victim, link2) == 0);
    CHECK(write_full_file(path));
    size_t n;
    uint8_t *v = read_all(victim, &n);
    bool ok    = v && n == 8 && memcmp(v, "precious", 8) == 0 && tc_count_temporaries(path) == 0;
    free(v);
    unlink(link1);
    unlink(link2);
    unlink(victim);
    unlink(path);
    return ok;
}

static bool test_writer_dup_tensor(void)
{
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    CHECK(jb_gguf_writer_add_tensor(w, "x", JB_DTYPE_F32, 1, (const int64_t[]){ 4 }) == 0);
    CHECK(jb_gguf_writer_add_tensor(w, "x", JB_DTYPE_F16, 1, (const int64_t[]){ 2 }) == -1);
    printf("     message: %s\n", jb_last_error());
    CHECK(strstr(jb_last_error(), "duplicate tensor name 'x'"));
    char path[128];
    tmp_path(path, sizeof path, "dup.gguf");
    CHECK(jb_gguf_writer_begin(w, path) == JB_STATUS_ERR_INVALID_ARG); /* poisoned */
    CHECK(strstr(jb_last_error(), "duplicate tensor name 'x'"));
    CHECK(no_files(path));
    jb_gguf_writer_free(w);
    return true;
}

static bool test_writer_bad_tensor_args(void)
{
    static const struct {
        const char *name;
        enum jb_dtype type;
        int n_dims;
        int64_t shape[5];
        const char *expect;
    } bad[] = {
        { "zero", JB_DTYPE_F32, 2, { 3, 0 }, "bad dimension 1, got 0" },
        { "neg", JB_DTYPE_F32, 1, { -1 }, "bad dimension 0, got -1" },
        { "five", JB_DTYPE_F32, 5, { 1, 1, 1, 1, 1 }, "bad n_dims" },
        { "huge", JB_DTYPE_F32, 2, { INT64_MAX / 2, 4 }, "element count overflows" },
        { "bytes", JB_DTYPE_F32, 1, { INT64_MAX / 2 }, "byte size overflows" },
        { "type", JB_DTYPE_COUNT, 1, { 1 }, "bad dtype" },
        { "", JB_DTYPE_F32, 1, { 1 }, "is empty" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct jb_gguf_writer *w = jb_gguf_writer_init();
        CHECK(w);
        int64_t r =
          jb_gguf_writer_add_tensor(w, bad[i].name, bad[i].type, bad[i].n_dims, bad[i].shape);
        printf("     message: %s\n", jb_last_error());
        jb_gguf_writer_free(w);
        CHECK(r == -1 && strstr(jb_last_error(), bad[i].expect));
    }
    return true;
}

/* An alignment copied with another integer type (set_i32) is written as the u32 readers need. */
static bool test_writer_alignment_i32(void)
{
    char path[128];
    tmp_path(path, sizeof path, "align_i32.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    jb_gguf_writer_set_i32(w, "general.alignment", 16);
    float x[3] = { 1, 2, 3 };
    bool ok    = jb_gguf_writer_add_tensor(w, "x", JB_DTYPE_F32, 1, (const int64_t[]){ 3 }) == 0 &&
              jb_gguf_writer_begin(w, path) == JB_STATUS_OK &&
              jb_gguf_writer_write_tensor(w, x, sizeof x) == JB_STATUS_OK &&
              jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    CHECK(ok);
    struct jb_gguf *g = jb_gguf_open(path);
    CHECK(g);
    ok = jb_gguf_alignment(g) == 16 &&
         jb_gguf_kv_type(g, jb_gguf_find_key(g, "general.alignment")) == JB_GGUF_TYPE_UINT32;
    jb_gguf_close(g);
    return ok;
}

static bool test_writer_alignment_str(void)
{
    char path[128];
    tmp_path(path, sizeof path, "badalign2.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    jb_gguf_writer_set_str(w, "general.alignment", "32");
    enum jb_status st = jb_gguf_writer_begin(w, path);
    printf("     message: %s\n", jb_last_error());
    jb_gguf_writer_free(w);
    CHECK(st == JB_STATUS_ERR_INVALID_ARG && no_files(path));
    return true;
}

static bool test_writer_bad_alignment(void)
{
    char path[128];
    tmp_path(path, sizeof path, "badalign.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    jb_gguf_writer_set_u32(w, "general.alignment", 3);
    enum jb_status st = jb_gguf_writer_begin(w, path);
    printf("     message: %s\n", jb_last_error());
    jb_gguf_writer_free(w);
    CHECK(st == JB_STATUS_ERR_INVALID_ARG && no_files(path));
    return true;
}

static bool test_writer_set_after_begin(void)
{
    char path[128];
    tmp_path(path, sizeof path, "late.gguf");
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    CHECK(jb_gguf_writer_begin(w, path) == JB_STATUS_OK);
    jb_gguf_writer_set_u32(w, "late", 1);
    printf("     message: %s\n", jb_last_error());
    CHECK(strstr(jb_last_error(), "after begin"));
    CHECK(jb_gguf_writer_finish(w) == JB_STATUS_ERR_INVALID_ARG);
    jb_gguf_writer_free(w);
    CHECK(no_files(path));
    return true;
}

static bool test_writer_bad_dir(void)
{
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    CHECK(w);
    enum jb_status st = jb_gguf_writer_begin(w, "/nonexistent-dir/x/model.gguf");
    printf("     message: %s\n", jb_last_error());
    jb_gguf_writer_free(w);
    CHECK(st == JB_STATUS_ERR_IO);
    return true;
}

static bool test_open_missing(void)
{
    CHECK(jb_gguf_open("/nonexistent-dir/model.gguf") == NULL);
    printf("     message: %s\n", jb_last_error());
    CHECK(strstr(jb_last_error(), "cannot open"));
    CHECK(jb_gguf_open(tmp_dir) == NULL); /* a directory */
    printf("     message: %s\n", jb_last_error());
    char path[128];
    tmp_path(path, sizeof path, "empty.gguf");
    FILE *f = fopen(path, "wb");
    CHECK(f);
    fclose(f);
    CHECK(jb_gguf_open(path) == NULL);
    printf("     message: %s\n", jb_last_error());
    CHECK(strstr(jb_last_error(), path) && strstr(jb_last_error(), "truncated"));
    return true;
}

/* Every proper prefix of a valid file must be rejected; only the whole file opens. */
static bool test_truncation(void)
{
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    char path[128];
    tmp_path(path, sizeof path, "small.gguf");
    CHECK(w);
    jb_gguf_writer_set_str(w, "general.name", "small");
    jb_gguf_writer_set_bool(w, "b", true);
    jb_gguf_writer_set_arr_str(w, "v", (const char *const[]){ "x", "yz" }, 2);
    jb_gguf_writer_set_f64(w, "f", 2.5);
    float a[3]   = { 1, 2, 3 };
    int32_t c[2] = { 7, 8 };
    bool ok = jb_gguf_writer_add_tensor(w, "a", JB_DTYPE_F32, 1, (const int64_t[]){ 3 }) == 0 &&
              jb_gguf_writer_add_tensor(w, "c", JB_DTYPE_I32, 2, (const int64_t[]){ 1, 2 }) == 1 &&
              jb_gguf_writer_begin(w, path) == JB_STATUS_OK &&
              jb_gguf_writer_write_tensor(w, a, sizeof a) == JB_STATUS_OK &&
              jb_gguf_writer_write_tensor(w, c, sizeof c) == JB_STATUS_OK &&
              jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    CHECK(ok);
    size_t n;
    uint8_t *buf = read_all(path, &n);
    CHECK(buf);
    size_t opened = 0;
    for (size_t len = 0; len <= n; len++) {
        uint8_t *keep     = NULL;
        struct jb_gguf *g = open_copy(buf, len, &keep);
        if (g) {
            opened++;
            ok = ok && len == n;
        } else if (strncmp(jb_last_error(), "gguf: ", 6) != 0) {
            ok = false;
        }
        jb_gguf_close(g);
        free(keep);
    }
    free(buf);
    printf("     %zu prefixes of a %zu-byte file: %zu opened (the whole file)\n", n + 1, n, opened);
    CHECK(ok && opened == 1);
    return true;
}

/* Flipping each byte of a valid file must never crash (most flips are rejected). */
static bool test_bit_flips(void)
{
    char path[128];
    tmp_path(path, sizeof path, "small.gguf");
    size_t n;
    uint8_t *buf = read_all(path, &n);
    CHECK(buf);
    size_t rejected = 0;
    for (size_t pos = 0; pos < n; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[pos] ^= (uint8_t)(1u << bit);
            uint8_t *keep     = NULL;
            struct jb_gguf *g = open_copy(buf, n, &keep);
            if (!g) rejected++;
            jb_gguf_close(g);
            free(keep);
            buf[pos] ^= (uint8_t)(1u << bit);
        }
    }
    free(buf);
    printf("     %zu single-bit flips: %zu rejected, none crashed\n", n * 8, rejected);
    return true;
}

/* ------------------------------------------------------------------------------------------ */

static int write_corpus(const char *dir)
{
    char path[512];
    int n = 0;
    for (size_t i = 0; i < N_FILE_CASES; i++) {
        struct bb b = { 0 };
        file_cases[i].build(&b);
        snprintf(path,
                 sizeof path,
                 "%s/%s%s",
                 dir,
                 file_cases[i].expect ? "err_" : "",
                 file_cases[i].name);
        FILE *f = fopen(path, "wb");
        if (!f || (b.n && fwrite(b.p, 1, b.n, f) != b.n) || fclose(f) != 0) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        free(b.p);
        n++;
    }
    /* files from the writer; named without .gguf, which .gitignore excludes */
    snprintf(path, sizeof path, "%s/writer_full", dir);
    init_tensor_data();
    if (!write_full_file(path)) {
        fprintf(stderr, "cannot write %s: %s\n", path, jb_last_error());
        return 1;
    }
    n++;
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    snprintf(path, sizeof path, "%s/writer_meta_only", dir);
    jb_gguf_writer_set_str(w, "general.name", "meta");
    jb_gguf_writer_set_arr_str(w, "labels", (const char *const[]){ "rock", "jazz", "" }, 3);
    jb_gguf_writer_set_arr(w, "flags", JB_GGUF_TYPE_BOOL, (const uint8_t[]){ 1, 0 }, 2);
    if (jb_gguf_writer_begin(w, path) != JB_STATUS_OK || jb_gguf_writer_finish(w) != JB_STATUS_OK) {
        fprintf(stderr, "cannot write %s: %s\n", path, jb_last_error());
        return 1;
    }
    jb_gguf_writer_free(w);
    n++;
    printf("wrote %d seed files to %s\n", n, dir);
    return 0;
}

static void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        remove(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write-corpus DIR]\n", argv[0]);
        return 2;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_gguf_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    init_tensor_data();

    run_case("round trip (mmap): all KV types, f32/f16/bf16/i32/scalar tensors",
             test_round_trip_mmap);
    run_case("round trip (memory buffer)", test_round_trip_memory);
    run_case("writer: setting a key again replaces it", test_replace_key);
    run_case("writer: general.alignment 64", test_alignment_64);
    run_case("drop_pages: a copied tensor leaves the process and reads back the same",
             test_drop_pages);
    run_case("writer: write_tensor with wrong nbytes", test_writer_wrong_nbytes);
    run_case("writer: finish before every tensor is written", test_writer_missing_tensor);
    run_case("writer: more write_tensor calls than tensors", test_writer_too_many_writes);
    run_case("writer: free before finish removes the temporary file", test_writer_free_midway);
    run_case("writer: symlinks planted at OUT.tmp/OUT.import are not followed",
             test_writer_ignores_planted_symlinks);
    run_case("writer: duplicate tensor name", test_writer_dup_tensor);
    run_case("writer: bad tensor declarations", test_writer_bad_tensor_args);
    run_case("writer: general.alignment set as i32 is written as u32", test_writer_alignment_i32);
    run_case("writer: bad general.alignment", test_writer_bad_alignment);
    run_case("writer: general.alignment as a string", test_writer_alignment_str);
    run_case("writer: set after begin", test_writer_set_after_begin);
    run_case("writer: directory does not exist", test_writer_bad_dir);
    run_case("reader: missing file, directory, empty file", test_open_missing);
    run_file_cases();
    run_case("reader: every truncation of a valid file", test_truncation);
    run_case("reader: every single-bit flip of a valid file", test_bit_flips);

    remove_tmp_dir();
    return tc_summary();
}
