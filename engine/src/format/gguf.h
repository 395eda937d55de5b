/*
 * format/gguf.h - reader and writer for GGUF (v3), the file format of ggml/llama.cpp, which is
 * what Encore's model files are.
 *
 * Layout (little-endian): magic "GGUF", u32 version (3), u64 n_tensors, u64 n_kv, then n_kv
 * key/value pairs (gguf string key, u32 type, value), then n_tensors tensor infos (name, u32
 * n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset), padding to
 * general.alignment (default 32), then the data blob; every tensor offset is relative to the
 * blob and aligned.
 *
 * The reader treats the file as hostile: every count, length, offset and size is bounds- and
 * overflow-checked, keys and tensor names must be unique, types must be known, and any failure
 * is one jb_fail() message and a NULL result, never a crash. Tensor shapes are exposed
 * outermost-first (PyTorch order) in struct jb_tensor, reversed from GGUF's ne[] order.
 *
 * Threads: a reader is immutable after open and may be shared; a writer belongs to one thread.
 */
#ifndef JB_FORMAT_GGUF_H
#define JB_FORMAT_GGUF_H

#include "core/tensor.h"

enum jb_gguf_type {
    JB_GGUF_TYPE_UINT8   = 0,
    JB_GGUF_TYPE_INT8    = 1,
    JB_GGUF_TYPE_UINT16  = 2,
    JB_GGUF_TYPE_INT16   = 3,
    JB_GGUF_TYPE_UINT32  = 4,
    JB_GGUF_TYPE_INT32   = 5,
    JB_GGUF_TYPE_FLOAT32 = 6,
    JB_GGUF_TYPE_BOOL    = 7,
    JB_GGUF_TYPE_STRING  = 8,
    JB_GGUF_TYPE_ARRAY   = 9,
    JB_GGUF_TYPE_UINT64  = 10,
    JB_GGUF_TYPE_INT64   = 11,
    JB_GGUF_TYPE_FLOAT64 = 12,
    JB_GGUF_TYPE_COUNT
};

/* Limits applied by the reader (a file beyond them is rejected, not truncated). */
#define JB_GGUF_MAX_STRING (1u << 20) /* bytes in one string                */
#define JB_GGUF_MAX_TENSORS (1u << 16)
#define JB_GGUF_MAX_KV (1u << 16)
#define JB_GGUF_MAX_ARRAY (1u << 24) /* elements in one array value       */

struct jb_gguf;

/* Opens and validates a file (memory-mapped, read-only). */
struct jb_gguf *jb_gguf_open(const char *path);
/* Validates a buffer in memory (not copied: it must outlive the reader). For tests and fuzzing. */
struct jb_gguf *jb_gguf_open_memory(const void *data, size_t size);
void jb_gguf_close(struct jb_gguf *g);
/* Lets the pages of [p, p + n), within a file opened with jb_gguf_open, leave this process (its
 * resident memory): a tensor a backend has copied. They stay in the page cache, and a later read
 * brings them back. A no-op for a memory buffer. */
void jb_gguf_drop_pages(const struct jb_gguf *g, const void *p, size_t n);

uint32_t jb_gguf_version(const struct jb_gguf *g);
size_t jb_gguf_alignment(const struct jb_gguf *g);
/* Byte offset of the data section in the file (tensor offsets are relative to it). */
size_t jb_gguf_data_offset(const struct jb_gguf *g);
/* "u8", "string", "array", ... ("?" if out of range) */
const char *jb_gguf_type_name(enum jb_gguf_type type);

/* key/value access; -1 when absent */
int64_t jb_gguf_n_kv(const struct jb_gguf *g);
int64_t jb_gguf_find_key(const struct jb_gguf *g, const char *key);
const char *jb_gguf_key(const struct jb_gguf *g, int64_t i);
enum jb_gguf_type jb_gguf_kv_type(const struct jb_gguf *g, int64_t i);
enum jb_gguf_type jb_gguf_arr_type(const struct jb_gguf *g, int64_t i); /* for ARRAY values */
uint64_t jb_gguf_arr_len(const struct jb_gguf *g, int64_t i);

/* Typed getters by key: return false (and set nothing) when absent or of another type.
 * get_int accepts any integer type whose value fits in int64; get_float accepts f32/f64. */
bool jb_gguf_get_int(const struct jb_gguf *g, const char *key, int64_t *out);
bool jb_gguf_get_float(const struct jb_gguf *g, const char *key, double *out);
bool jb_gguf_get_bool(const struct jb_gguf *g, const char *key, bool *out);
/* String values are not NUL-terminated in the file: the returned pointer is to a NUL-terminated
 * copy owned by the reader. */
const char *jb_gguf_get_str(const struct jb_gguf *g, const char *key);
/* Array element getters (index checked): */
bool jb_gguf_get_arr_int(const struct jb_gguf *g, const char *key, uint64_t i, int64_t *out);
bool jb_gguf_get_arr_float(const struct jb_gguf *g, const char *key, uint64_t i, double *out);
const char *jb_gguf_get_arr_str(const struct jb_gguf *g, const char *key, uint64_t i);
bool jb_gguf_get_arr_bool(const struct jb_gguf *g, const char *key, uint64_t i, bool *out);

/* tensors */
int64_t jb_gguf_n_tensors(const struct jb_gguf *g);
const struct jb_tensor *jb_gguf_tensor(const struct jb_gguf *g, int64_t i);
const struct jb_tensor *jb_gguf_find_tensor(const struct jb_gguf *g, const char *name);
/* Offset of tensor i's data relative to the data section (0 if i is out of range). Tensor
 * data pointers point into the read-only mapping: never write through them. */
uint64_t jb_gguf_tensor_offset(const struct jb_gguf *g, int64_t i);

/* --------------------------------------------------------------------------------------- */
/* writer: set metadata, declare tensors, then stream their data in declaration order.      */

struct jb_gguf_writer;

struct jb_gguf_writer *jb_gguf_writer_init(void);
void jb_gguf_writer_free(struct jb_gguf_writer *w);

/* Setting a key again replaces its value (keeping its position). general.alignment is preset
 * to 32; it may be overridden (a power of two <= 65536, written as u32 whichever integer
 * setter was used). An invalid argument
 * (bad key, NULL string, over a limit) poisons the writer: begin() then fails with the first
 * error's message. */
void jb_gguf_writer_set_u8(struct jb_gguf_writer *w, const char *key, uint8_t v);
void jb_gguf_writer_set_i8(struct jb_gguf_writer *w, const char *key, int8_t v);
void jb_gguf_writer_set_u16(struct jb_gguf_writer *w, const char *key, uint16_t v);
void jb_gguf_writer_set_i16(struct jb_gguf_writer *w, const char *key, int16_t v);
void jb_gguf_writer_set_u64(struct jb_gguf_writer *w, const char *key, uint64_t v);
void jb_gguf_writer_set_i64(struct jb_gguf_writer *w, const char *key, int64_t v);
void jb_gguf_writer_set_u32(struct jb_gguf_writer *w, const char *key, uint32_t v);
void jb_gguf_writer_set_i32(struct jb_gguf_writer *w, const char *key, int32_t v);
void jb_gguf_writer_set_f32(struct jb_gguf_writer *w, const char *key, float v);
void jb_gguf_writer_set_f64(struct jb_gguf_writer *w, const char *key, double v);
void jb_gguf_writer_set_bool(struct jb_gguf_writer *w, const char *key, bool v);
void jb_gguf_writer_set_str(struct jb_gguf_writer *w, const char *key, const char *v);
void jb_gguf_writer_set_arr_i32(struct jb_gguf_writer *w,
                                const char *key,
                                const int32_t *v,
                                size_t n);
void jb_gguf_writer_set_arr_f32(struct jb_gguf_writer *w,
                                const char *key,
                                const float *v,
                                size_t n);
void jb_gguf_writer_set_arr_str(struct jb_gguf_writer *w,
                                const char *key,
                                const char *const *v,
                                size_t n);
/* Array of any number or bool type (bools as uint8_t 0/1); v holds n elements of that type. */
void jb_gguf_writer_set_arr(struct jb_gguf_writer *w,
                            const char *key,
                            enum jb_gguf_type type,
                            const void *v,
                            size_t n);

/* Declares a tensor (shape outermost-first). Returns its index, or -1 (jb_fail) on a duplicate
 * name or bad arguments (which also poisons the writer). n_dims 0 is a scalar. */
int64_t jb_gguf_writer_add_tensor(struct jb_gguf_writer *w,
                                  const char *name,
                                  enum jb_dtype type,
                                  int n_dims,
                                  const int64_t *shape);

/* Writes header, metadata and tensor infos to path (to path.tmp, renamed in finish). */
enum jb_status jb_gguf_writer_begin(struct jb_gguf_writer *w, const char *path);
/* Writes the data of the next declared tensor; nbytes must equal its size. Any error from
 * begin() on (misuse: ERR_INVALID_ARG, I/O: ERR_IO) removes the temporary file. */
enum jb_status jb_gguf_writer_write_tensor(struct jb_gguf_writer *w,
                                           const void *data,
                                           size_t nbytes);
/* Checks that every tensor was written, flushes, fsyncs and renames into place. */
enum jb_status jb_gguf_writer_finish(struct jb_gguf_writer *w);

#endif
