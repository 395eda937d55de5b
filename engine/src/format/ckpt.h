/*
 * format/ckpt.h - reads PyTorch checkpoints (.pth.tar) without Python and without running code.
 *
 * Both torch.save container formats are supported:
 *   legacy (what OpenAI published in 2020): five pickles (magic, protocol, sys info, object,
 *     storage keys) followed by the raw storages, each an int64 element count + data;
 *   zip (newer torch): archive/data.pkl plus one archive/data/<key> entry per storage.
 * See ../shared/docs/jukebox-spec.md §2.2.
 *
 * The pickle reader is a safe subset (format/pickle.h): it executes nothing. Released files are
 * training checkpoints: besides 'model' they hold 'hps', 'step', metrics (numpy scalars) and
 * optimizer state. Unknown globals become inert placeholders that are never called; inside
 * 'model' only tensor rebuilds are accepted, so a pickle that calls os.system (say) for a
 * state-dict entry or for the object itself is rejected with a clear error naming the global.
 * Storages that only objects outside 'model' use are never read (legacy blobs are stepped
 * over, zip entries never opened).
 *
 * The checkpoint object must be a dict with a 'model' state dict (name -> tensor). Keys with a
 * 'module.' prefix are stripped. An optional 'hps' dict of plain values (placeholders allowed)
 * and 'step' are exposed.
 *
 * Memory: a file is memory-mapped and the pages of each tensor are given back once read, so
 * reading every tensor once holds about one tensor of the file in memory, not all of it.
 *
 * Threads: immutable after open.
 */
#ifndef JB_FORMAT_CKPT_H
#define JB_FORMAT_CKPT_H

#include "core/common.h"
#include "format/pickle.h"

#define JB_CKPT_MAX_DIMS 8

enum jb_ckpt_dtype {
    JB_CKPT_F32,
    JB_CKPT_F16,
    JB_CKPT_BF16,
    JB_CKPT_F64,
    JB_CKPT_I64,
    JB_CKPT_I32,
    JB_CKPT_I16,
    JB_CKPT_I8,
    JB_CKPT_U8,
    JB_CKPT_BOOL,
};

struct jb_ckpt_entry {
    const char *name; /* 'module.' prefix stripped */
    enum jb_ckpt_dtype type;
    int n_dims;
    int64_t shape[JB_CKPT_MAX_DIMS];
    int64_t stride[JB_CKPT_MAX_DIMS]; /* in elements */
    int64_t storage_offset;           /* in elements */
    int64_t storage;                  /* index of its storage; equal = shared */
};

struct jb_ckpt;

struct jb_ckpt *jb_ckpt_open(const char *path);
/* For tests and fuzzing: parse a checkpoint held in memory (not copied). */
struct jb_ckpt *jb_ckpt_open_memory(const void *data, size_t size);
void jb_ckpt_close(struct jb_ckpt *c);

bool jb_ckpt_is_zip(const struct jb_ckpt *c);

int64_t jb_ckpt_n_entries(const struct jb_ckpt *c);
const struct jb_ckpt_entry *jb_ckpt_entry(const struct jb_ckpt *c, int64_t i);
const struct jb_ckpt_entry *jb_ckpt_find(const struct jb_ckpt *c, const char *name);

/* Elements its storage holds (what a view of it may use at most); 0 for a bad index. */
int64_t jb_ckpt_storage_numel(const struct jb_ckpt *c, int64_t storage);

/* Copies a tensor's elements (honouring storage offset and strides) converted to fp32 into dst
 * (numel floats). Fails cleanly if any element lies outside its storage. */
enum jb_status jb_ckpt_read_f32(const struct jb_ckpt *c, const struct jb_ckpt_entry *e, float *dst);

/* The 'hps' dict if the checkpoint has one (NULL otherwise), and 'step' (-1 if absent). */
const struct jb_pyval *jb_ckpt_hps(const struct jb_ckpt *c);
int64_t jb_ckpt_step(const struct jb_ckpt *c);

#endif
