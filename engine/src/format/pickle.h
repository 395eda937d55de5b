/*
 * format/pickle.h - a safe subset of the Python pickle virtual machine (protocols 2-5).
 *
 * It builds a tree of plain values (None, bool, int, float, str, bytes, list, tuple, dict) and
 * three opaque kinds used by torch checkpoints: persistent ids (BINPERSID), tensors rebuilt by
 * torch._utils._rebuild_tensor_v2 (and _rebuild_parameter), and storage type markers. Nothing
 * is ever executed. GLOBAL/STACK_GLOBAL are accepted only for an allow-list:
 *   collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter,
 *   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage
 *   (and torch.cuda.* of the same), torch.UntypedStorage, torch.{float32,float16,...} dtypes,
 *   and jukebox.hparams.Hyperparams, which is built as a plain dict.
 * Any other global is an error naming it ("pickle: global 'posix.system' is not allowed"), or,
 * in a lenient load (training checkpoints hold numpy scalars, optimizer state, ...), an inert
 * JB_PY_OPAQUE placeholder: REDUCE/NEWOBJ/BUILD/SETITEMS/APPENDS on it make or leave another
 * placeholder, nothing is executed and the arguments are dropped. Consumers decide where a
 * placeholder is acceptable (ckpt.c: anywhere but inside 'model').
 * Memo indices, stack depth, the number of values, the number of container items (counted as
 * they are added, so BUILD merging two dicts into each other is bounded too) and the total
 * bytes of the value graph (values, strings, item arrays) are bounded: JB_PICKLE_MAX_*.
 *
 * The memo can share values, so the value graph may be a DAG or cyclic: walk it with a budget.
 * Dicts keep duplicate keys in insertion order (a real pickle has none); dict_get returns the
 * last. Integers that do not fit int64 (the legacy checkpoint magic) are JB_PY_LONG.
 */
#ifndef JB_FORMAT_PICKLE_H
#define JB_FORMAT_PICKLE_H

#include "core/common.h"

enum jb_pyval_type {
    JB_PY_NONE,
    JB_PY_BOOL,
    JB_PY_INT,
    JB_PY_FLOAT,
    JB_PY_STR,
    JB_PY_BYTES,
    JB_PY_LIST,
    JB_PY_TUPLE,
    JB_PY_DICT,   /* dict or OrderedDict; insertion order kept */
    JB_PY_GLOBAL, /* an allowed global (a storage class, a dtype, or a rebuild function) */
    JB_PY_PERSID, /* persistent id: its payload is item 0 */
    JB_PY_TENSOR, /* a rebuilt tensor: items = storage (persid), offset, size, stride */
    JB_PY_LONG,   /* an integer beyond int64: jb_pyval_bytes = little-endian two's complement */
    JB_PY_OPAQUE, /* (lenient loads only) an unknown global, or an object made from one:
                     jb_pyval_str = "module.name"; never called, its arguments are dropped */
};

struct jb_pyval;

/* Accessors tolerate NULL and the wrong type (they return 0, NULL or a length of 0). */
enum jb_pyval_type jb_pyval_type(const struct jb_pyval *v);
int64_t jb_pyval_int(const struct jb_pyval *v);     /* INT or BOOL */
double jb_pyval_float(const struct jb_pyval *v);    /* FLOAT or INT */
const char *jb_pyval_str(const struct jb_pyval *v); /* STR, BYTES or GLOBAL "mod.name" */
/* LIST/TUPLE/DICT/TENSOR/PERSID items, STR/BYTES/LONG bytes */
size_t jb_pyval_len(const struct jb_pyval *v);
const struct jb_pyval *jb_pyval_item(const struct jb_pyval *v, size_t i);
const struct jb_pyval *jb_pyval_dict_key(const struct jb_pyval *v, size_t i);
const struct jb_pyval *jb_pyval_dict_get(const struct jb_pyval *v, const char *key);
const uint8_t *jb_pyval_bytes(const struct jb_pyval *v); /* STR, BYTES or LONG payload */
const char *jb_pyval_type_name(enum jb_pyval_type type); /* "dict", "tensor", ... */

struct jb_pickle; /* owns every value it produced */

#define JB_PICKLE_MAX_ITEMS (1u << 22) /* container items, all containers (real files: ~1e5) */
#define JB_PICKLE_MAX_BYTES ((size_t)256 << 20) /* values + strings + item arrays */

/* Runs the pickle in data[0..size) up to STOP. On success *consumed is the number of bytes
 * read and the result is jb_pickle_result(). NULL on error (jb_fail). */
struct jb_pickle *jb_pickle_load(const uint8_t *data, size_t size, size_t *consumed);
/* The same, with messages prefixed by "<context>: " and offsets reported as base_offset + the
 * offset in data (for a pickle embedded in a file). */
struct jb_pickle *jb_pickle_load_ctx(const uint8_t *data,
                                     size_t size,
                                     size_t *consumed,
                                     const char *context,
                                     size_t base_offset);
/* Options of jb_pickle_load_opts (zero = the strict defaults of jb_pickle_load_ctx). */
struct jb_pickle_opts {
    const char *context; /* message prefix, as jb_pickle_load_ctx */
    size_t base_offset;
    bool opaque_globals; /* unknown globals become JB_PY_OPAQUE placeholders, not errors */
    size_t max_bytes;    /* 0: JB_PICKLE_MAX_BYTES; else a lower budget for the value graph */
};
struct jb_pickle *jb_pickle_load_opts(const uint8_t *data,
                                      size_t size,
                                      size_t *consumed,
                                      const struct jb_pickle_opts *opts);
const struct jb_pyval *jb_pickle_result(const struct jb_pickle *p);
/* Every persistent id the pickle made, in order (a checkpoint's storages, including those of
 * tensors outside 'model', e.g. an optimizer state's). */
size_t jb_pickle_n_persids(const struct jb_pickle *p);
const struct jb_pyval *jb_pickle_persid(const struct jb_pickle *p, size_t i);
/* Bytes the value graph of a finished load holds (for tests and limits). */
size_t jb_pickle_bytes(const struct jb_pickle *p);
void jb_pickle_free(struct jb_pickle *p);

#endif
