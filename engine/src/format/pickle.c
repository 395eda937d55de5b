/*
 * format/pickle.c - a safe subset of the Python pickle virtual machine.
 *
 * The VM only builds values: it never imports or calls anything. GLOBAL and STACK_GLOBAL are
 * looked up in a fixed allow-list, and REDUCE/NEWOBJ are interpreted for the few callables a
 * torch checkpoint needs (OrderedDict(), _rebuild_tensor_v2(...), _rebuild_parameter(...), and
 * jukebox's Hyperparams, which is a dict subclass). Everything read from the input is bounded
 * (lengths against the bytes left, memo indices, stack and mark depth, value count) and every
 * failure is one jb_fail(JB_STATUS_ERR_FORMAT, ...) with the opcode's offset.
 *
 * Values live in blocks owned by the jb_pickle and are freed together; containers hold plain
 * pointers, so the memo can make the value graph a DAG or even cyclic (a list appended to
 * itself). Consumers must not recurse over values without a budget.
 */
#include "format/pickle.h"

#include <stdio.h>
#include <string.h>

#define PK_MAX_STACK (1u << 20)      /* values on the stack */
#define PK_MAX_MARKS (1u << 20)      /* open MARKs */
#define PK_MAX_MEMO (1u << 20)       /* memo slots (index bound) */
#define PK_MAX_VALUES (1u << 24)     /* values created by one pickle */
#define PK_MAX_LONG_BYTES (1u << 16) /* LONG4 payload */
#define PK_MAX_LINE 256              /* GLOBAL module/name line */
#define PK_BLOCK_VALUES 1024

/* What an allowed global is, so REDUCE/NEWOBJ/BUILD know what to do with it. */
enum pk_global {
    PK_G_ORDERED_DICT,
    PK_G_HPARAMS,
    PK_G_REBUILD_TENSOR_V2,
    PK_G_REBUILD_PARAMETER,
    PK_G_STORAGE,
    PK_G_DTYPE,
    PK_G_OPAQUE, /* not on the list: an inert placeholder (lenient loads) */
};

struct jb_pyval {
    enum jb_pyval_type type;
    enum pk_global global;   /* JB_PY_GLOBAL only */
    bool hparams;            /* a DICT made by jukebox.hparams.Hyperparams */
    int64_t i;               /* INT, BOOL */
    double f;                /* FLOAT */
    size_t len;              /* bytes (STR/BYTES/LONG/GLOBAL) or items (pairs for DICT) */
    size_t cap;              /* allocated item slots */
    char *s;                 /* STR/BYTES/LONG/GLOBAL payload, NUL-terminated */
    struct jb_pyval **items; /* LIST/TUPLE/PERSID/TENSOR items; DICT: key0, val0, key1, ... */
};

struct pk_block {
    struct pk_block *next;
    size_t used;
    struct jb_pyval vals[PK_BLOCK_VALUES];
};

struct jb_pickle {
    struct pk_block *blocks;
    size_t n_values;
    size_t n_items;   /* container item slots ever added */
    size_t bytes;     /* value blocks + strings + item arrays + persid list */
    size_t max_bytes; /* budget for bytes */
    const struct jb_pyval *result;
    const struct jb_pyval **persids;
    size_t n_persids, cap_persids;
};

/* Transient interpreter state for one jb_pickle_load call. */
struct pk_vm {
    struct jb_pickle *p;
    const uint8_t *data;
    size_t size;
    size_t pos;
    size_t op_pos;       /* offset of the opcode being run, for messages */
    const char *context; /* message prefix, e.g. "ckpt x.pth.tar: legacy object" */
    size_t base_offset;  /* added to offsets in messages */
    struct jb_pyval **stack;
    size_t n_stack, cap_stack;
    size_t *marks;
    size_t n_marks, cap_marks;
    struct jb_pyval **memo;
    size_t cap_memo, n_memo; /* n_memo = distinct slots set (MEMOIZE uses it) */
    bool opaque_globals;     /* unknown globals become placeholders */
};

/* ---- allow-list ------------------------------------------------------------------------- */

struct pk_allowed {
    const char *module;
    const char *name;
    enum pk_global kind;
};

static const struct pk_allowed pk_allowed_globals[] = {
    { "collections", "OrderedDict", PK_G_ORDERED_DICT },
    { "jukebox.hparams", "Hyperparams", PK_G_HPARAMS },
    { "torch._utils", "_rebuild_tensor_v2", PK_G_REBUILD_TENSOR_V2 },
    { "torch._utils", "_rebuild_parameter", PK_G_REBUILD_PARAMETER },
    { "torch", "UntypedStorage", PK_G_STORAGE },
    { "torch.storage", "UntypedStorage", PK_G_STORAGE },
};

/* Typed storage classes, valid under "torch" and "torch.cuda". */
static const char *const pk_storage_names[] = {
    "FloatStorage", "HalfStorage",  "BFloat16Storage", "DoubleStorage", "LongStorage",
    "IntStorage",   "ShortStorage", "CharStorage",     "ByteStorage",   "BoolStorage",
};

/* torch.<dtype> attributes, which may appear as plain values. */
static const char *const pk_dtype_names[] = {
    "float32", "float", "float16", "half",  "bfloat16", "float64", "double", "int64",
    "long",    "int32", "int",     "int16", "short",    "int8",    "uint8",  "bool",
};

static bool pk_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && (n == 0 || memcmp(s, lit, n) == 0);
}

static bool pk_lookup_global(const char *mod,
                             size_t mod_len,
                             const char *name,
                             size_t name_len,
                             enum pk_global *kind)
{
    for (size_t i = 0; i < sizeof pk_allowed_globals / sizeof pk_allowed_globals[0]; i++) {
        if (pk_eq(mod, mod_len, pk_allowed_globals[i].module) &&
            pk_eq(name, name_len, pk_allowed_globals[i].name)) {
            *kind = pk_allowed_globals[i].kind;
            return true;
        }
    }
    if (pk_eq(mod, mod_len, "torch") || pk_eq(mod, mod_len, "torch.cuda")) {
        for (size_t i = 0; i < sizeof pk_storage_names / sizeof pk_storage_names[0]; i++) {
            if (pk_eq(name, name_len, pk_storage_names[i])) {
                *kind = PK_G_STORAGE;
                return true;
            }
        }
    }
    if (pk_eq(mod, mod_len, "torch")) {
        for (size_t i = 0; i < sizeof pk_dtype_names / sizeof pk_dtype_names[0]; i++) {
            if (pk_eq(name, name_len, pk_dtype_names[i])) {
                *kind = PK_G_DTYPE;
                return true;
            }
        }
    }
    return false;
}

/* ---- errors ------------------------------------------------------------------------------ */

static bool pk_err(const struct pk_vm *vm, const char *fmt, ...) JB_PRINTF(2, 3);

static bool pk_err(const struct pk_vm *vm, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jb_fail(JB_STATUS_ERR_FORMAT,
            "%s%spickle: %s at offset %zu",
            vm->context ? vm->context : "",
            vm->context ? ": " : "",
            msg,
            vm->base_offset + vm->op_pos);
    return false;
}

/* Copies at most 80 bytes of an untrusted name into buf, replacing anything unprintable. */
static const char *pk_printable(const char *s, size_t n, char *buf, size_t buf_len)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < buf_len && i < 80; i++)
        buf[k++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? s[i] : '?';
    if (n > 80 && k + 4 < buf_len) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

const char *jb_pyval_type_name(enum jb_pyval_type type)
{
    switch (type) {
    case JB_PY_NONE:
        return "None";
    case JB_PY_BOOL:
        return "bool";
    case JB_PY_INT:
        return "int";
    case JB_PY_FLOAT:
        return "float";
    case JB_PY_STR:
        return "str";
    case JB_PY_BYTES:
        return "bytes";
    case JB_PY_LIST:
        return "list";
    case JB_PY_TUPLE:
        return "tuple";
    case JB_PY_DICT:
        return "dict";
    case JB_PY_GLOBAL:
        return "global";
    case JB_PY_PERSID:
        return "persistent id";
    case JB_PY_TENSOR:
        return "tensor";
    case JB_PY_LONG:
        return "long int";
    case JB_PY_OPAQUE:
        return "object";
    }
    return "?";
}

/* ---- values ------------------------------------------------------------------------------ */

/* Charges n bytes of the value graph to the budget: memory is bounded by what the graph holds,
 * not only by how many values were made (containers can grow each other, see pk_op_build). */
static bool pk_charge(struct pk_vm *vm, size_t n)
{
    struct jb_pickle *p = vm->p;
    if (n > p->max_bytes - p->bytes)
        return pk_err(vm, "the pickled objects need more than %zu MiB", p->max_bytes >> 20);
    p->bytes += n;
    return true;
}

/* Counts n more container items against JB_PICKLE_MAX_ITEMS. */
static bool pk_count_items(struct pk_vm *vm, size_t n)
{
    struct jb_pickle *p = vm->p;
    if (n > JB_PICKLE_MAX_ITEMS - p->n_items)
        return pk_err(vm, "containers hold more than %u items in all", JB_PICKLE_MAX_ITEMS);
    p->n_items += n;
    return true;
}

static struct jb_pyval *pk_new(struct pk_vm *vm, enum jb_pyval_type type)
{
    struct jb_pickle *p = vm->p;
    if (p->n_values >= PK_MAX_VALUES) {
        pk_err(vm, "more than %u values", PK_MAX_VALUES);
        return NULL;
    }
    if (!p->blocks || p->blocks->used == PK_BLOCK_VALUES) {
        if (!pk_charge(vm, sizeof(struct pk_block))) return NULL;
        struct pk_block *b = jb_malloc(sizeof *b);
        if (!b) return NULL;
        b->next   = p->blocks;
        b->used   = 0;
        p->blocks = b;
    }
    struct jb_pyval *v = &p->blocks->vals[p->blocks->used++];
    memset(v, 0, sizeof *v);
    v->type = type;
    p->n_values++;
    return v;
}

static struct jb_pyval *pk_new_int(struct pk_vm *vm, enum jb_pyval_type type, int64_t i)
{
    struct jb_pyval *v = pk_new(vm, type);
    if (v) v->i = i;
    return v;
}

static struct jb_pyval *pk_new_bytes(struct pk_vm *vm,
                                     enum jb_pyval_type type,
                                     const void *s,
                                     size_t n)
{
    struct jb_pyval *v = pk_new(vm, type);
    if (!v) return NULL;
    size_t alloc;
    if (!jb_add_size(n, 1, &alloc)) {
        pk_err(vm, "string too long");
        return NULL;
    }
    if (!pk_charge(vm, alloc)) return NULL;
    v->s = jb_malloc(alloc);
    if (!v->s) return NULL;
    if (n) memcpy(v->s, s, n);
    v->s[n] = '\0';
    v->len  = n;
    return v;
}

/* Appends one item slot to a container; the caller owns the bound on how many. */
static bool pk_items_push(struct pk_vm *vm, struct jb_pyval *c, struct jb_pyval *item)
{
    if (!pk_count_items(vm, 1)) return false;
    if (c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        size_t bytes;
        if (!jb_mul_size(cap, sizeof *c->items, &bytes)) return pk_err(vm, "container too large");
        if (!pk_charge(vm, (cap - c->cap) * sizeof *c->items)) return false;
        struct jb_pyval **items = realloc(c->items, bytes);
        if (!items) {
            jb_fail(JB_STATUS_ERR_NOMEM, "pickle: out of memory growing a container");
            return false;
        }
        c->items = items;
        c->cap   = cap;
    }
    c->items[c->len++] = item;
    return true;
}

/* A tuple/list holding copies of n pointers. */
static struct jb_pyval *pk_new_seq(struct pk_vm *vm,
                                   enum jb_pyval_type type,
                                   struct jb_pyval *const *items,
                                   size_t n)
{
    struct jb_pyval *v = pk_new(vm, type);
    if (!v) return NULL;
    if (n) {
        if (!pk_count_items(vm, n) || !pk_charge(vm, n * sizeof *v->items)) return NULL;
        v->items = jb_calloc(n, sizeof *v->items);
        if (!v->items) return NULL;
        memcpy(v->items, items, n * sizeof *items);
        v->len = v->cap = n;
    }
    return v;
}

/* ---- stack, marks, memo ------------------------------------------------------------------ */

static size_t pk_base(const struct pk_vm *vm)
{
    return vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
}

static bool pk_push(struct pk_vm *vm, struct jb_pyval *v)
{
    if (!v) return false; /* the constructor already failed */
    if (vm->n_stack == vm->cap_stack) {
        if (vm->cap_stack >= PK_MAX_STACK) return pk_err(vm, "stack deeper than %u", PK_MAX_STACK);
        size_t cap          = vm->cap_stack ? vm->cap_stack * 2 : 64;
        struct jb_pyval **s = realloc(vm->stack, cap * sizeof *s);
        if (!s) {
            jb_fail(JB_STATUS_ERR_NOMEM, "pickle: out of memory growing the stack");
            return false;
        }
        vm->stack     = s;
        vm->cap_stack = cap;
    }
    vm->stack[vm->n_stack++] = v;
    return true;
}

/* Pops one value; like Python 3, values below the innermost MARK are out of reach. */
static struct jb_pyval *pk_pop(struct pk_vm *vm)
{
    if (vm->n_stack <= pk_base(vm)) {
        pk_err(vm, "stack underflow");
        return NULL;
    }
    return vm->stack[--vm->n_stack];
}

static struct jb_pyval *pk_top(struct pk_vm *vm)
{
    if (vm->n_stack <= pk_base(vm)) {
        pk_err(vm, "stack underflow");
        return NULL;
    }
    return vm->stack[vm->n_stack - 1];
}

static bool pk_mark(struct pk_vm *vm)
{
    if (vm->n_marks == vm->cap_marks) {
        if (vm->cap_marks >= PK_MAX_MARKS) return pk_err(vm, "more than %u marks", PK_MAX_MARKS);
        size_t cap = vm->cap_marks ? vm->cap_marks * 2 : 16;
        size_t *m  = realloc(vm->marks, cap * sizeof *m);
        if (!m) {
            jb_fail(JB_STATUS_ERR_NOMEM, "pickle: out of memory growing the mark stack");
            return false;
        }
        vm->marks     = m;
        vm->cap_marks = cap;
    }
    vm->marks[vm->n_marks++] = vm->n_stack;
    return true;
}

/* Closes the innermost MARK: the items above it are stack[*start .. n_stack). The caller
 * consumes them and then sets n_stack = *start. */
static bool pk_pop_mark(struct pk_vm *vm, size_t *start)
{
    if (!vm->n_marks) return pk_err(vm, "no MARK on the stack");
    *start = vm->marks[--vm->n_marks];
    return true;
}

static bool pk_memo_put(struct pk_vm *vm, uint64_t idx)
{
    struct jb_pyval *top = pk_top(vm);
    if (!top) return false;
    if (idx >= PK_MAX_MEMO) return pk_err(vm, "memo index %llu too large", (unsigned long long)idx);
    if (idx >= vm->cap_memo) {
        size_t cap = vm->cap_memo ? vm->cap_memo : 64;
        while (cap <= idx)
            cap *= 2;
        if (cap > PK_MAX_MEMO) cap = PK_MAX_MEMO;
        struct jb_pyval **m = realloc(vm->memo, cap * sizeof *m);
        if (!m) {
            jb_fail(JB_STATUS_ERR_NOMEM, "pickle: out of memory growing the memo");
            return false;
        }
        memset(m + vm->cap_memo, 0, (cap - vm->cap_memo) * sizeof *m);
        vm->memo     = m;
        vm->cap_memo = cap;
    }
    if (!vm->memo[idx]) vm->n_memo++;
    vm->memo[idx] = top;
    return true;
}

static bool pk_memo_get(struct pk_vm *vm, uint64_t idx)
{
    if (idx >= vm->cap_memo || !vm->memo[idx])
        return pk_err(vm, "memo key %llu not found", (unsigned long long)idx);
    return pk_push(vm, vm->memo[idx]);
}

/* ---- input ------------------------------------------------------------------------------- */

static const uint8_t *pk_read(struct pk_vm *vm, uint64_t n)
{
    if (n > vm->size - vm->pos) {
        pk_err(
          vm, "needs %llu bytes but only %zu are left", (unsigned long long)n, vm->size - vm->pos);
        return NULL;
    }
    const uint8_t *p = vm->data + vm->pos;
    vm->pos += (size_t)n;
    return p;
}

static uint64_t pk_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool pk_read_le(struct pk_vm *vm, int n, uint64_t *out)
{
    const uint8_t *p = pk_read(vm, (uint64_t)n);
    if (!p) return false;
    *out = pk_le(p, n);
    return true;
}

/* Reads a '\n'-terminated line of at most PK_MAX_LINE bytes (GLOBAL's operands). */
static bool pk_read_line(struct pk_vm *vm, const char **s, size_t *n)
{
    size_t left       = vm->size - vm->pos;
    size_t max        = left < PK_MAX_LINE + 1 ? left : PK_MAX_LINE + 1;
    const uint8_t *p  = vm->data + vm->pos;
    const uint8_t *nl = memchr(p, '\n', max);
    if (!nl) return pk_err(vm, "GLOBAL operand is not a line of at most %d bytes", PK_MAX_LINE);
    *s = (const char *)p;
    *n = (size_t)(nl - p);
    vm->pos += *n + 1;
    return true;
}

/* ---- opcode helpers ---------------------------------------------------------------------- */

static bool pk_op_global(struct pk_vm *vm,
                         const char *mod,
                         size_t mod_len,
                         const char *name,
                         size_t name_len)
{
    enum pk_global kind;
    if (!pk_lookup_global(mod, mod_len, name, name_len, &kind) && vm->opaque_globals) {
        char m[96], n[96], buf[200];
        int k              = snprintf(buf,
                         sizeof buf,
                         "%s.%s",
                         pk_printable(mod, mod_len, m, sizeof m),
                         pk_printable(name, name_len, n, sizeof n));
        struct jb_pyval *v = pk_new_bytes(vm, JB_PY_OPAQUE, buf, (size_t)k);
        if (!v) return false;
        v->global = PK_G_OPAQUE;
        return pk_push(vm, v);
    }
    if (!pk_lookup_global(mod, mod_len, name, name_len, &kind)) {
        char m[96], n[96];
        jb_fail(JB_STATUS_ERR_FORMAT,
                "%s%spickle: global '%s.%s' is not allowed (only torch tensor/storage and dict "
                "globals are)",
                vm->context ? vm->context : "",
                vm->context ? ": " : "",
                pk_printable(mod, mod_len, m, sizeof m),
                pk_printable(name, name_len, n, sizeof n));
        return false;
    }
    char buf[2 * PK_MAX_LINE + 2];
    int n = snprintf(buf, sizeof buf, "%.*s.%.*s", (int)mod_len, mod, (int)name_len, name);
    struct jb_pyval *v = pk_new_bytes(vm, JB_PY_GLOBAL, buf, (size_t)n);
    if (!v) return false;
    v->global = kind;
    return pk_push(vm, v);
}

static bool pk_op_long(struct pk_vm *vm, uint64_t n)
{
    if (n > PK_MAX_LONG_BYTES) return pk_err(vm, "LONG of %llu bytes", (unsigned long long)n);
    const uint8_t *p = pk_read(vm, n);
    if (!p) return false;
    /* Fits in int64 if every byte above the low 8 repeats the sign of byte 7. */
    bool neg  = n && (p[n - 1] & 0x80);
    bool fits = true;
    for (uint64_t k = 8; k < n; k++)
        fits &= p[k] == (neg ? 0xff : 0x00);
    if (n > 8) fits &= ((p[7] & 0x80) != 0) == neg;
    if (!fits) return pk_push(vm, pk_new_bytes(vm, JB_PY_LONG, p, (size_t)n));
    int k      = n < 8 ? (int)n : 8;
    uint64_t u = k ? pk_le(p, k) : 0;
    if (neg && k < 8) u |= ~(uint64_t)0 << (8 * k);
    return pk_push(vm, pk_new_int(vm, JB_PY_INT, (int64_t)u));
}

/* Length-prefixed string or bytes; BINSTRING's length is signed. */
static bool pk_op_str(struct pk_vm *vm, enum jb_pyval_type type, int len_bytes, bool len_signed)
{
    uint64_t n;
    if (!pk_read_le(vm, len_bytes, &n)) return false;
    if (len_signed && (n >> 31)) return pk_err(vm, "BINSTRING with negative length");
    const uint8_t *p = pk_read(vm, n);
    if (!p) return false;
    return pk_push(vm, pk_new_bytes(vm, type, p, (size_t)n));
}

static bool pk_op_tuple_n(struct pk_vm *vm, size_t n)
{
    struct jb_pyval *items[3];
    for (size_t k = n; k > 0; k--) {
        items[k - 1] = pk_pop(vm);
        if (!items[k - 1]) return false;
    }
    return pk_push(vm, pk_new_seq(vm, JB_PY_TUPLE, items, n));
}

/* TUPLE, LIST, DICT: build from the items above the innermost MARK. */
static bool pk_op_from_mark(struct pk_vm *vm, enum jb_pyval_type type)
{
    size_t start = 0;
    if (!pk_pop_mark(vm, &start)) return false;
    size_t n = vm->n_stack - start;
    if (type == JB_PY_DICT && n % 2) return pk_err(vm, "DICT with an odd number of items");
    struct jb_pyval *v = pk_new_seq(vm,
                                    type == JB_PY_DICT ? JB_PY_LIST : type,
                                    n ? vm->stack + start : NULL,
                                    n); /* stack may be NULL */
    if (!v) return false;
    if (type == JB_PY_DICT) {
        v->type = JB_PY_DICT;
        v->len /= 2;
        v->cap = n; /* slots, not pairs: keep cap in item units */
    }
    vm->n_stack = start;
    return pk_push(vm, v);
}

static bool pk_dict_set(struct pk_vm *vm,
                        struct jb_pyval *d,
                        struct jb_pyval *k,
                        struct jb_pyval *v)
{
    /* items holds 2*len pointers; reuse pk_items_push on a view counted in slots. */
    size_t pairs = d->len;
    d->len       = pairs * 2;
    bool ok      = pk_items_push(vm, d, k) && pk_items_push(vm, d, v);
    d->len       = ok ? pairs + 1 : pairs;
    return ok;
}

static bool pk_op_setitems(struct pk_vm *vm, bool from_mark)
{
    size_t start = 0;
    if (from_mark) {
        if (!pk_pop_mark(vm, &start)) return false;
    } else {
        if (vm->n_stack < pk_base(vm) + 2) return pk_err(vm, "stack underflow");
        start = vm->n_stack - 2;
    }
    size_t n = vm->n_stack - start;
    if (n % 2) return pk_err(vm, "SETITEMS with an odd number of items");
    if (start <= pk_base(vm)) return pk_err(vm, "stack underflow");
    struct jb_pyval *d = vm->stack[start - 1];
    if (d->type == JB_PY_OPAQUE) { /* a dict subclass we do not know: its items are dropped */
        vm->n_stack = start;
        return true;
    }
    if (d->type != JB_PY_DICT)
        return pk_err(vm, "SETITEM on a %s value", jb_pyval_type_name(d->type));
    for (size_t k = start; k < vm->n_stack; k += 2)
        if (!pk_dict_set(vm, d, vm->stack[k], vm->stack[k + 1])) return false;
    vm->n_stack = start;
    return true;
}

static bool pk_op_appends(struct pk_vm *vm, bool from_mark)
{
    size_t start = 0;
    if (from_mark) {
        if (!pk_pop_mark(vm, &start)) return false;
    } else {
        if (vm->n_stack < pk_base(vm) + 1) return pk_err(vm, "stack underflow");
        start = vm->n_stack - 1;
    }
    if (start <= pk_base(vm)) return pk_err(vm, "stack underflow");
    struct jb_pyval *l = vm->stack[start - 1];
    if (l->type == JB_PY_OPAQUE) {
        vm->n_stack = start;
        return true;
    }
    if (l->type != JB_PY_LIST)
        return pk_err(vm, "APPEND on a %s value", jb_pyval_type_name(l->type));
    for (size_t k = start; k < vm->n_stack; k++)
        if (!pk_items_push(vm, l, vm->stack[k])) return false;
    vm->n_stack = start;
    return true;
}

static bool pk_is_int(const struct jb_pyval *v)
{
    return v->type == JB_PY_INT;
}

static bool pk_is_int_tuple(const struct jb_pyval *v)
{
    if (v->type != JB_PY_TUPLE) return false;
    for (size_t k = 0; k < v->len; k++)
        if (!pk_is_int(v->items[k])) return false;
    return true;
}

/* A new placeholder standing for whatever calling (or instantiating) `of` would make. */
static struct jb_pyval *pk_new_opaque(struct pk_vm *vm, const struct jb_pyval *of)
{
    struct jb_pyval *v = pk_new_bytes(vm, JB_PY_OPAQUE, of->s, of->len);
    if (v) v->global = PK_G_OPAQUE;
    return v;
}

/* callable(*args) for the allowed callables; anything else is an error. */
static struct jb_pyval *pk_call(struct pk_vm *vm,
                                struct jb_pyval *fn,
                                struct jb_pyval *args,
                                const char *op)
{
    if (fn->type == JB_PY_OPAQUE) return pk_new_opaque(vm, fn); /* never called */
    if (fn->type != JB_PY_GLOBAL) {
        pk_err(vm, "%s on a %s value", op, jb_pyval_type_name(fn->type));
        return NULL;
    }
    if (args->type != JB_PY_TUPLE) {
        pk_err(vm, "%s arguments are a %s, not a tuple", op, jb_pyval_type_name(args->type));
        return NULL;
    }
    switch (fn->global) {
    case PK_G_ORDERED_DICT:
    case PK_G_HPARAMS: {
        if (args->len) {
            pk_err(vm, "%s of %s with arguments is not supported", op, fn->s);
            return NULL;
        }
        struct jb_pyval *d = pk_new(vm, JB_PY_DICT);
        if (d) d->hparams = fn->global == PK_G_HPARAMS;
        return d;
    }
    case PK_G_REBUILD_TENSOR_V2: {
        /* (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
        if (args->len != 6 && args->len != 7) {
            pk_err(vm, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", args->len);
            return NULL;
        }
        struct jb_pyval **a = args->items;
        if (a[0]->type != JB_PY_PERSID || !pk_is_int(a[1]) || !pk_is_int_tuple(a[2]) ||
            !pk_is_int_tuple(a[3]) || a[2]->len != a[3]->len) {
            pk_err(vm,
                   "_rebuild_tensor_v2 arguments are not (storage, int, size tuple, stride "
                   "tuple of the same length, ...)");
            return NULL;
        }
        return pk_new_seq(vm, JB_PY_TENSOR, a, 4);
    }
    case PK_G_REBUILD_PARAMETER:
        /* (tensor, requires_grad, backward_hooks): the parameter is the tensor */
        if (args->len != 3 || args->items[0]->type != JB_PY_TENSOR) {
            pk_err(vm, "_rebuild_parameter arguments are not (tensor, requires_grad, hooks)");
            return NULL;
        }
        return args->items[0];
    case PK_G_STORAGE:
    case PK_G_DTYPE:
    case PK_G_OPAQUE:
        break;
    }
    pk_err(vm, "%s on '%s' is not supported", op, fn->s);
    return NULL;
}

static bool pk_op_build(struct pk_vm *vm)
{
    struct jb_pyval *state = pk_pop(vm);
    struct jb_pyval *inst  = state ? pk_top(vm) : NULL;
    if (!inst) return false;
    if (inst->type == JB_PY_DICT) {
        /* OrderedDict gets {'_metadata': ...}: not needed. A Hyperparams' state is its items. */
        if (inst->hparams && state->type == JB_PY_DICT && state != inst) {
            size_t n = state->len;
            for (size_t k = 0; k < n; k++)
                if (!pk_dict_set(vm, inst, state->items[2 * k], state->items[2 * k + 1]))
                    return false;
        }
        return true;
    }
    if (inst->type == JB_PY_TENSOR) return true; /* tensor attributes are not needed */
    if (inst->type == JB_PY_OPAQUE) return true; /* __setstate__ is never run */
    return pk_err(vm, "BUILD on a %s value is not supported", jb_pyval_type_name(inst->type));
}

static const char *pk_opcode_name(uint8_t op)
{
    switch (op) {
    case 'F':
        return "FLOAT";
    case 'I':
        return "INT";
    case 'L':
        return "LONG";
    case 'P':
        return "PERSID";
    case 'S':
        return "STRING";
    case 'V':
        return "UNICODE";
    case 'g':
        return "GET";
    case 'p':
        return "PUT";
    case 'i':
        return "INST";
    case 'o':
        return "OBJ";
    case 0x82:
        return "EXT1";
    case 0x83:
        return "EXT2";
    case 0x84:
        return "EXT4";
    case 0x8f:
        return "EMPTY_SET";
    case 0x90:
        return "ADDITEMS";
    case 0x91:
        return "FROZENSET";
    case 0x92:
        return "NEWOBJ_EX";
    case 0x96:
        return "BYTEARRAY8";
    case 0x97:
        return "NEXT_BUFFER";
    case 0x98:
        return "READONLY_BUFFER";
    }
    return NULL;
}

/* Remembers a persistent id so that ckpt.c can size storages no tensor of 'model' uses. */
static bool pk_note_persid(struct pk_vm *vm, const struct jb_pyval *v)
{
    struct jb_pickle *p = vm->p;
    if (p->n_persids == p->cap_persids) {
        size_t cap = p->cap_persids ? p->cap_persids * 2 : 64;
        if (!pk_charge(vm, (cap - p->cap_persids) * sizeof *p->persids)) return false;
        const struct jb_pyval **a = realloc(p->persids, cap * sizeof *a);
        if (!a) {
            jb_fail(JB_STATUS_ERR_NOMEM, "pickle: out of memory for persistent ids");
            return false;
        }
        p->persids     = a;
        p->cap_persids = cap;
    }
    p->persids[p->n_persids++] = v;
    return true;
}

/* ---- the interpreter --------------------------------------------------------------------- */

static bool pk_run(struct pk_vm *vm)
{
    for (;;) {
        vm->op_pos = vm->pos;
        if (vm->pos >= vm->size) return pk_err(vm, "data ends before STOP");
        uint8_t op = vm->data[vm->pos++];
        uint64_t u;
        bool ok;
        switch (op) {
        case 0x80: /* PROTO */
            ok = pk_read_le(vm, 1, &u);
            if (ok && u > 5) ok = pk_err(vm, "unsupported protocol %llu", (unsigned long long)u);
            break;
        case 0x95: /* FRAME: framing is only a read-ahead hint */
            ok = pk_read_le(vm, 8, &u);
            if (ok && u > vm->size - vm->pos) ok = pk_err(vm, "FRAME past end of data");
            break;
        case '.': { /* STOP */
            struct jb_pyval *v = pk_pop(vm);
            if (!v) return false;
            vm->p->result = v;
            return true;
        }
        case '(':
            ok = pk_mark(vm);
            break;
        case '0': /* POP: Python 3 pops a mark when nothing is above it */
            if (vm->n_stack > pk_base(vm)) {
                vm->n_stack--;
                ok = true;
            } else {
                size_t start = 0;
                ok           = pk_pop_mark(vm, &start);
            }
            break;
        case '1': { /* POP_MARK */
            size_t start = 0;
            ok           = pk_pop_mark(vm, &start);
            if (ok) vm->n_stack = start;
            break;
        }
        case '2': { /* DUP */
            struct jb_pyval *v = pk_top(vm);
            ok                 = v && pk_push(vm, v);
            break;
        }
        case 'N':
            ok = pk_push(vm, pk_new(vm, JB_PY_NONE));
            break;
        case 0x88:
            ok = pk_push(vm, pk_new_int(vm, JB_PY_BOOL, 1));
            break; /* NEWTRUE */
        case 0x89:
            ok = pk_push(vm, pk_new_int(vm, JB_PY_BOOL, 0));
            break; /* NEWFALSE */
        case 'J':  /* BININT */
            ok = pk_read_le(vm, 4, &u) && pk_push(vm, pk_new_int(vm, JB_PY_INT, (int32_t)u));
            break;
        case 'K': /* BININT1 */
            ok = pk_read_le(vm, 1, &u) && pk_push(vm, pk_new_int(vm, JB_PY_INT, (int64_t)u));
            break;
        case 'M': /* BININT2 */
            ok = pk_read_le(vm, 2, &u) && pk_push(vm, pk_new_int(vm, JB_PY_INT, (int64_t)u));
            break;
        case 0x8a:
            ok = pk_read_le(vm, 1, &u) && pk_op_long(vm, u);
            break; /* LONG1 */
        case 0x8b:
            ok = pk_read_le(vm, 4, &u) && pk_op_long(vm, u);
            break;  /* LONG4 */
        case 'G': { /* BINFLOAT: big-endian double */
            const uint8_t *p = pk_read(vm, 8);
            ok               = p != NULL;
            if (ok) {
                uint64_t bits = 0;
                for (int k = 0; k < 8; k++)
                    bits = (bits << 8) | p[k];
                struct jb_pyval *v = pk_new(vm, JB_PY_FLOAT);
                if (v) memcpy(&v->f, &bits, 8);
                ok = pk_push(vm, v);
            }
            break;
        }
        case 'X':
            ok = pk_op_str(vm, JB_PY_STR, 4, false);
            break; /* BINUNICODE */
        case 0x8c:
            ok = pk_op_str(vm, JB_PY_STR, 1, false);
            break; /* SHORT_BINUNICODE */
        case 0x8d:
            ok = pk_op_str(vm, JB_PY_STR, 8, false);
            break; /* BINUNICODE8 */
        case 'T':
            ok = pk_op_str(vm, JB_PY_STR, 4, true);
            break; /* BINSTRING (decoded as str) */
        case 'U':
            ok = pk_op_str(vm, JB_PY_STR, 1, false);
            break; /* SHORT_BINSTRING */
        case 'B':
            ok = pk_op_str(vm, JB_PY_BYTES, 4, false);
            break; /* BINBYTES */
        case 'C':
            ok = pk_op_str(vm, JB_PY_BYTES, 1, false);
            break; /* SHORT_BINBYTES */
        case 0x8e:
            ok = pk_op_str(vm, JB_PY_BYTES, 8, false);
            break; /* BINBYTES8 */
        case '}':
            ok = pk_push(vm, pk_new(vm, JB_PY_DICT));
            break;
        case ']':
            ok = pk_push(vm, pk_new(vm, JB_PY_LIST));
            break;
        case ')':
            ok = pk_push(vm, pk_new(vm, JB_PY_TUPLE));
            break;
        case 't':
            ok = pk_op_from_mark(vm, JB_PY_TUPLE);
            break;
        case 'l':
            ok = pk_op_from_mark(vm, JB_PY_LIST);
            break;
        case 'd':
            ok = pk_op_from_mark(vm, JB_PY_DICT);
            break;
        case 0x85:
            ok = pk_op_tuple_n(vm, 1);
            break;
        case 0x86:
            ok = pk_op_tuple_n(vm, 2);
            break;
        case 0x87:
            ok = pk_op_tuple_n(vm, 3);
            break;
        case 's':
            ok = pk_op_setitems(vm, false);
            break;
        case 'u':
            ok = pk_op_setitems(vm, true);
            break;
        case 'a':
            ok = pk_op_appends(vm, false);
            break;
        case 'e':
            ok = pk_op_appends(vm, true);
            break;
        case 'c': { /* GLOBAL "module\nname\n" */
            const char *mod = NULL, *name = NULL;
            size_t mod_len = 0, name_len = 0;
            ok = pk_read_line(vm, &mod, &mod_len) && pk_read_line(vm, &name, &name_len) &&
                 pk_op_global(vm, mod, mod_len, name, name_len);
            break;
        }
        case 0x93: { /* STACK_GLOBAL */
            struct jb_pyval *name = pk_pop(vm);
            struct jb_pyval *mod  = name ? pk_pop(vm) : NULL;
            ok                    = mod != NULL;
            if (ok && (mod->type != JB_PY_STR || name->type != JB_PY_STR))
                ok = pk_err(vm, "STACK_GLOBAL operands are not strings");
            if (ok) ok = pk_op_global(vm, mod->s, mod->len, name->s, name->len);
            break;
        }
        case 'R': { /* REDUCE */
            struct jb_pyval *args = pk_pop(vm);
            struct jb_pyval *fn   = args ? pk_pop(vm) : NULL;
            ok                    = fn && pk_push(vm, pk_call(vm, fn, args, "REDUCE"));
            break;
        }
        case 0x81: { /* NEWOBJ: cls.__new__(cls, *args) */
            struct jb_pyval *args = pk_pop(vm);
            struct jb_pyval *cls  = args ? pk_pop(vm) : NULL;
            ok                    = cls != NULL;
            if (ok && cls->type != JB_PY_OPAQUE &&
                (cls->type != JB_PY_GLOBAL ||
                 (cls->global != PK_G_ORDERED_DICT && cls->global != PK_G_HPARAMS)))
                ok = pk_err(vm,
                            "NEWOBJ of a %s is not supported",
                            cls->type == JB_PY_GLOBAL ? cls->s : jb_pyval_type_name(cls->type));
            if (ok) ok = pk_push(vm, pk_call(vm, cls, args, "NEWOBJ"));
            break;
        }
        case 0x92: { /* NEWOBJ_EX: only of a placeholder class (kwargs are dropped) */
            struct jb_pyval *kw   = pk_pop(vm);
            struct jb_pyval *args = kw ? pk_pop(vm) : NULL;
            struct jb_pyval *cls  = args ? pk_pop(vm) : NULL;
            ok                    = cls != NULL;
            if (ok && cls->type != JB_PY_OPAQUE)
                ok = pk_err(vm, "opcode NEWOBJ_EX (0x92) is not supported");
            if (ok) ok = pk_push(vm, pk_new_opaque(vm, cls));
            break;
        }
        case 'b':
            ok = pk_op_build(vm);
            break;
        case 'Q': { /* BINPERSID */
            struct jb_pyval *pid = pk_pop(vm);
            struct jb_pyval *v   = pid ? pk_new_seq(vm, JB_PY_PERSID, &pid, 1) : NULL;
            ok                   = v && pk_note_persid(vm, v) && pk_push(vm, v);
            break;
        }
        case 'q':
            ok = pk_read_le(vm, 1, &u) && pk_memo_put(vm, u);
            break; /* BINPUT */
        case 'r':
            ok = pk_read_le(vm, 4, &u) && pk_memo_put(vm, u);
            break; /* LONG_BINPUT */
        case 0x94:
            ok = pk_memo_put(vm, vm->n_memo);
            break; /* MEMOIZE */
        case 'h':
            ok = pk_read_le(vm, 1, &u) && pk_memo_get(vm, u);
            break; /* BINGET */
        case 'j':
            ok = pk_read_le(vm, 4, &u) && pk_memo_get(vm, u);
            break; /* LONG_BINGET */
        default: {
            const char *name = pk_opcode_name(op);
            if (name)
                ok = pk_err(vm, "opcode %s (0x%02x) is not supported", name, op);
            else
                ok = pk_err(vm, "unknown opcode 0x%02x", op);
            break;
        }
        }
        if (!ok) return false;
    }
}

struct jb_pickle *jb_pickle_load(const uint8_t *data, size_t size, size_t *consumed)
{
    return jb_pickle_load_ctx(data, size, consumed, NULL, 0);
}

struct jb_pickle *jb_pickle_load_ctx(const uint8_t *data,
                                     size_t size,
                                     size_t *consumed,
                                     const char *context,
                                     size_t base_offset)
{
    struct jb_pickle_opts o = { .context = context, .base_offset = base_offset };
    return jb_pickle_load_opts(data, size, consumed, &o);
}

struct jb_pickle *jb_pickle_load_opts(const uint8_t *data,
                                      size_t size,
                                      size_t *consumed,
                                      const struct jb_pickle_opts *opts)
{
    static const struct jb_pickle_opts defaults = { 0 };
    if (!opts) opts = &defaults;
    const char *context = opts->context;
    size_t base_offset  = opts->base_offset;
    if (consumed) *consumed = 0;
    if (!data && size) {
        jb_fail(JB_STATUS_ERR_INVALID_ARG, "pickle: NULL data");
        return NULL;
    }
    struct jb_pickle *p = jb_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->max_bytes    = opts->max_bytes && opts->max_bytes < JB_PICKLE_MAX_BYTES ? opts->max_bytes
                                                                               : JB_PICKLE_MAX_BYTES;
    struct pk_vm vm = { .p              = p,
                        .data           = data,
                        .size           = size,
                        .context        = context,
                        .base_offset    = base_offset,
                        .opaque_globals = opts->opaque_globals };
    bool ok         = pk_run(&vm);
    free(vm.stack);
    free(vm.marks);
    free(vm.memo);
    if (!ok) {
        jb_pickle_free(p);
        return NULL;
    }
    if (consumed) *consumed = vm.pos;
    return p;
}

const struct jb_pyval *jb_pickle_result(const struct jb_pickle *p)
{
    return p ? p->result : NULL;
}

size_t jb_pickle_n_persids(const struct jb_pickle *p)
{
    return p ? p->n_persids : 0;
}

const struct jb_pyval *jb_pickle_persid(const struct jb_pickle *p, size_t i)
{
    return p && i < p->n_persids ? p->persids[i] : NULL;
}

size_t jb_pickle_bytes(const struct jb_pickle *p)
{
    return p ? p->bytes : 0;
}

void jb_pickle_free(struct jb_pickle *p)
{
    if (!p) return;
    struct pk_block *b = p->blocks;
    while (b) {
        for (size_t k = 0; k < b->used; k++) {
            free(b->vals[k].s);
            free(b->vals[k].items);
        }
        struct pk_block *next = b->next;
        free(b);
        b = next;
    }
    free(p->persids);
    free(p);
}

/* ---- accessors --------------------------------------------------------------------------- */

enum jb_pyval_type jb_pyval_type(const struct jb_pyval *v)
{
    return v ? v->type : JB_PY_NONE;
}

int64_t jb_pyval_int(const struct jb_pyval *v)
{
    return v && (v->type == JB_PY_INT || v->type == JB_PY_BOOL) ? v->i : 0;
}

double jb_pyval_float(const struct jb_pyval *v)
{
    if (!v) return 0.0;
    if (v->type == JB_PY_FLOAT) return v->f;
    if (v->type == JB_PY_INT || v->type == JB_PY_BOOL) return (double)v->i;
    return 0.0;
}

const char *jb_pyval_str(const struct jb_pyval *v)
{
    if (v && (v->type == JB_PY_STR || v->type == JB_PY_BYTES || v->type == JB_PY_GLOBAL ||
              v->type == JB_PY_OPAQUE))
        return v->s;
    return NULL;
}

const uint8_t *jb_pyval_bytes(const struct jb_pyval *v)
{
    if (v && (v->type == JB_PY_STR || v->type == JB_PY_BYTES || v->type == JB_PY_LONG))
        return (const uint8_t *)v->s;
    return NULL;
}

size_t jb_pyval_len(const struct jb_pyval *v)
{
    if (!v) return 0;
    switch (v->type) {
    case JB_PY_STR:
    case JB_PY_BYTES:
    case JB_PY_LONG:
    case JB_PY_LIST:
    case JB_PY_TUPLE:
    case JB_PY_DICT:
    case JB_PY_PERSID:
    case JB_PY_TENSOR:
        return v->len;
    default:
        return 0;
    }
}

const struct jb_pyval *jb_pyval_item(const struct jb_pyval *v, size_t i)
{
    if (!v || i >= v->len) return NULL;
    switch (v->type) {
    case JB_PY_LIST:
    case JB_PY_TUPLE:
    case JB_PY_PERSID:
    case JB_PY_TENSOR:
        return v->items[i];
    case JB_PY_DICT:
        return v->items[2 * i + 1];
    default:
        return NULL;
    }
}

const struct jb_pyval *jb_pyval_dict_key(const struct jb_pyval *v, size_t i)
{
    if (!v || v->type != JB_PY_DICT || i >= v->len) return NULL;
    return v->items[2 * i];
}

const struct jb_pyval *jb_pyval_dict_get(const struct jb_pyval *v, const char *key)
{
    if (!v || v->type != JB_PY_DICT || !key) return NULL;
    size_t n = strlen(key);
    for (size_t i = v->len; i-- > 0;) { /* last wins, as re-assignment would in Python */
        const struct jb_pyval *k = v->items[2 * i];
        if (k->type == JB_PY_STR && k->len == n && memcmp(k->s, key, n) == 0)
            return v->items[2 * i + 1];
    }
    return NULL;
}
