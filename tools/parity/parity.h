/*
 * tools/parity/parity.h - shared plumbing of encore-parity: the fixture folder, its manifest,
 * importing fixture checkpoints through the real importer, and the per-tensor report lines.
 *
 * Each section (parity_vqvae.c, parity_prior.c, parity_labels.c) compares engine outputs with
 * the reference tensors of one manifest entry and records one line per tensor:
 *   "PASS vqvae/prequant_level0  rel_err 3.1e-07 (tol 1e-04)"
 * main() prints "N passed, N failed" at the end and exits non-zero if anything failed.
 */
#ifndef ENCORE_PARITY_H
#define ENCORE_PARITY_H

#include "encore/engine.h"
#include "format/npy.h"

#include <cjson/cJSON.h>

struct parity_ctx {
    const char *fixture_dir; /* e.g. ../shared/fixtures/jukebox-ref */
    const char *ids_dir;     /* artist/genre id tables (FIXTURE_DIR/../../data/jukebox-ids) */
    char work_dir[512];      /* temporary folder for imported GGUF files */
    cJSON *manifest;
    struct jb_backend *backend;
    bool kv_f16; /* --kv-f16: the KV-cached paths run on fp16 caches (wider tolerance) */
    int passed, failed;
    bool verbose;
};

/* Relative L2 error ‖out − ref‖ / ‖ref‖ (ref all zero: ‖out‖). */
double parity_rel_err(const float *out, const float *ref, int64_t n);

/* One report line each; they count into ctx->passed / ctx->failed. */
void parity_check_f32(struct parity_ctx *ctx,
                      const char *what,
                      const float *out,
                      const float *ref,
                      int64_t n,
                      double tol);
/* Integer equality; `allow` (may be NULL) marks positions allowed to differ (near-ties). */
void parity_check_int(struct parity_ctx *ctx,
                      const char *what,
                      const int64_t *out,
                      const int64_t *ref,
                      int64_t n,
                      const bool *allow);
void parity_pass(struct parity_ctx *ctx, const char *what, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
void parity_fail(struct parity_ctx *ctx, const char *what, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

/* Loads FIXTURE_DIR/<model_key>/<file>; false (with a FAIL line) if missing or malformed. */
bool parity_load_npy(struct parity_ctx *ctx,
                     const char *model_key,
                     const char *file,
                     struct jb_npy *out);

/* The manifest entry models.<model_key> (NULL if absent). */
const cJSON *parity_model_entry(struct parity_ctx *ctx, const char *model_key);

/* Imports models.<model_key>'s checkpoint (legacy or zip) with `encore import`'s code path,
 * hyper-parameters from the manifest's hps, into work_dir, and loads it on ctx->backend.
 * NULL with a FAIL line on error. */
struct jb_model *parity_import_and_load(struct parity_ctx *ctx, const char *model_key, bool zip);

/* Sections. Each returns after recording its lines. */
void parity_vqvae(struct parity_ctx *ctx);
void parity_prior(struct parity_ctx *ctx, const char *model_key);
void parity_labels(struct parity_ctx *ctx);

#endif
