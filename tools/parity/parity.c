/*
 * tools/parity/parity.c - encore-parity FIXTURE_DIR: compares the engine with reference outputs
 * of the original PyTorch code, for any fixture folder in the jukebox-ref format (a
 * manifest.json whose 'models' entries name checkpoints, hyper-parameters and .npy tensors).
 *
 * Every checkpoint is imported through the real importer (legacy and zip formats) into a
 * temporary folder and loaded like any model file. One line per tensor, then
 * "N passed, N failed"; the exit status is non-zero if anything failed.
 */
#include "parity.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

double parity_rel_err(const float *out, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)out[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    if (!isfinite(num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void report(struct parity_ctx *ctx, bool ok, const char *what, const char *fmt, va_list ap)
{
    printf("%s %-48s ", ok ? "PASS" : "FAIL", what);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    if (ok)
        ctx->passed++;
    else
        ctx->failed++;
}

void parity_pass(struct parity_ctx *ctx, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(ctx, true, what, fmt, ap);
    va_end(ap);
}

void parity_fail(struct parity_ctx *ctx, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(ctx, false, what, fmt, ap);
    va_end(ap);
}

void parity_check_f32(struct parity_ctx *ctx,
                      const char *what,
                      const float *out,
                      const float *ref,
                      int64_t n,
                      double tol)
{
    double err = parity_rel_err(out, ref, n);
    if (err <= tol)
        parity_pass(ctx, what, "rel_err %.2e (tol %.0e, n %lld)", err, tol, (long long)n);
    else
        parity_fail(ctx, what, "rel_err %.2e (tol %.0e, n %lld)", err, tol, (long long)n);
}

void parity_check_int(struct parity_ctx *ctx,
                      const char *what,
                      const int64_t *out,
                      const int64_t *ref,
                      int64_t n,
                      const bool *allow)
{
    int64_t bad = 0, tolerated = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        if (out[i] == ref[i]) continue;
        if (allow && allow[i]) {
            tolerated++;
            continue;
        }
        if (first < 0) first = i;
        bad++;
    }
    if (bad == 0)
        parity_pass(ctx,
                    what,
                    allow ? "identical (n %lld; %lld documented near-ties differ)"
                          : "identical (n %lld)",
                    (long long)n,
                    (long long)tolerated);
    else
        parity_fail(ctx,
                    what,
                    "%lld of %lld differ; first at %lld: got %lld, expected %lld",
                    (long long)bad,
                    (long long)n,
                    (long long)first,
                    (long long)out[first],
                    (long long)ref[first]);
}

bool parity_load_npy(struct parity_ctx *ctx,
                     const char *model_key,
                     const char *file,
                     struct jb_npy *out)
{
    char path[4096], what[256];
    snprintf(path, sizeof path, "%s/%s/%s", ctx->fixture_dir, model_key, file);
    if (jb_npy_read(path, out) == JB_STATUS_OK) return true;
    snprintf(what, sizeof what, "%s/%s", model_key, file);
    parity_fail(ctx, what, "cannot load: %s", jb_last_error());
    return false;
}

const cJSON *parity_model_entry(struct parity_ctx *ctx, const char *model_key)
{
    return cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(ctx->manifest, "models"), model_key);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

struct jb_model *parity_import_and_load(struct parity_ctx *ctx, const char *model_key, bool zip)
{
    char what[256], src[4096], dst[4096], hps_path[4096];
    const cJSON *entry = parity_model_entry(ctx, model_key);
    snprintf(what, sizeof what, "%s/import(%s)", model_key, zip ? "zip" : "legacy");
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(entry, "files");
    const cJSON *ckpt  = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(files, zip ? "checkpoint_zip" : "checkpoint_legacy"),
      "path");
    const cJSON *hps = cJSON_GetObjectItemCaseSensitive(entry, "hps");
    if (!cJSON_IsString(ckpt) || !cJSON_IsObject(hps)) {
        parity_fail(ctx,
                    what,
                    "manifest lacks files.%s.path or hps",
                    zip ? "checkpoint_zip" : "checkpoint_legacy");
        return NULL;
    }
    snprintf(src, sizeof src, "%s/%s", ctx->fixture_dir, ckpt->valuestring);
    snprintf(dst, sizeof dst, "%s/%s%s.gguf", ctx->work_dir, model_key, zip ? ".zip" : "");
    snprintf(hps_path, sizeof hps_path, "%s/%s.hps.json", ctx->work_dir, model_key);

    char *text = cJSON_PrintUnformatted(hps);
    FILE *f    = fopen(hps_path, "w");
    if (!text || !f || fputs(text, f) < 0) {
        if (f) fclose(f);
        free(text);
        parity_fail(ctx, what, "cannot write %s", hps_path);
        return NULL;
    }
    fclose(f);
    free(text);

    /* Priors embed the id tables of their label version when the tables are available. */
    char artists[4096], genres[4096];
    bool v3                   = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(hps, "labels_v3"));
    struct jb_import_params p = {
        .src_path = src, .dst_path = dst, .storage = JB_DTYPE_F32, .hps_json_path = hps_path
    };
    snprintf(artists, sizeof artists, "%s/%s_artist_ids.txt", ctx->ids_dir, v3 ? "v3" : "v2");
    snprintf(genres, sizeof genres, "%s/%s_genre_ids.txt", ctx->ids_dir, v3 ? "v3" : "v2");
    if (strcmp(model_key, "vqvae") != 0 && file_exists(artists) && file_exists(genres)) {
        p.artist_ids_path = artists;
        p.genre_ids_path  = genres;
    }
    double t0 = jb_time_now();
    if (jb_import(&p, NULL)) {
        parity_fail(ctx, what, "%s", jb_last_error());
        return NULL;
    }
    struct jb_model *m = jb_model_load(dst, ctx->backend);
    if (!m) {
        parity_fail(ctx, what, "load: %s", jb_last_error());
        return NULL;
    }
    parity_pass(ctx, what, "%s -> %s (%.2f s)", ckpt->valuestring, dst, jb_time_now() - t0);
    return m;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static cJSON *read_manifest(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = size > 0 && size < (64L << 20) ? malloc((size_t)size + 1) : NULL;
    cJSON *j   = NULL;
    if (text && fread(text, 1, (size_t)size, f) == (size_t)size) {
        text[size] = '\0';
        j          = cJSON_Parse(text);
    }
    free(text);
    fclose(f);
    return j;
}

static void usage(FILE *out)
{
    fprintf(
      out,
      "usage: encore-parity [options] FIXTURE_DIR\n"
      "\n"
      "Compares the engine with the reference outputs in FIXTURE_DIR (manifest.json +\n"
      "checkpoints + .npy tensors). Prints one line per tensor and 'N passed, N failed'.\n"
      "\n"
      "  --ids DIR           artist/genre id tables (default FIXTURE_DIR/../../data/jukebox-ids)\n"
      "  --only NAME         run only the manifest entry NAME (repeatable)\n"
      "  --skip-if-missing   exit 0 with a SKIP line if FIXTURE_DIR does not exist\n"
      "  --keep              keep the imported model files (printed path)\n"
      "  --kv-f16            run the KV-cached paths on fp16 caches (tolerance: docs/numerics.md)\n"
      "  --backend NAME      backend to run on: cpu (default), check (CPU kernels on buffers\n"
      "                      that fault when touched outside an op), or another compiled one\n"
      "  -h, --help          this text\n");
}

int main(int argc, char **argv)
{
    struct parity_ctx ctx = { 0 };
    const char *only[16];
    int n_only   = 0;
    bool skip_ok = false, keep = false;
    const char *ids = NULL, *backend = "cpu";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--kv-f16") == 0) {
            ctx.kv_f16 = true;
        } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            backend = argv[++i];
        } else if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc) {
            ids = argv[++i];
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc && n_only < 16) {
            only[n_only++] = argv[++i];
        } else if (strcmp(argv[i], "--skip-if-missing") == 0) {
            skip_ok = true;
        } else if (strcmp(argv[i], "--keep") == 0) {
            keep = true;
        } else if (argv[i][0] != '-' && !ctx.fixture_dir) {
            ctx.fixture_dir = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!ctx.fixture_dir) {
        usage(stderr);
        return 2;
    }
    struct stat st;
    if (stat(ctx.fixture_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (skip_ok) {
            printf("SKIP: fixture folder '%s' not found (../shared is absent on user machines)\n"
                   "0 passed, 0 failed, 1 skipped\n",
                   ctx.fixture_dir);
            return 0;
        }
        fprintf(stderr, "encore-parity: '%s' is not a folder\n", ctx.fixture_dir);
        return 2;
    }
    ctx.manifest = read_manifest(ctx.fixture_dir);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ctx.manifest, "models"))) {
        fprintf(stderr,
                "encore-parity: '%s/manifest.json' is missing or has no 'models'\n",
                ctx.fixture_dir);
        cJSON_Delete(ctx.manifest);
        return 2;
    }
    char ids_default[4096];
    snprintf(ids_default, sizeof ids_default, "%s/../../data/jukebox-ids", ctx.fixture_dir);
    ctx.ids_dir = ids ? ids : ids_default;
    snprintf(ctx.work_dir,
             sizeof ctx.work_dir,
             "%s/encore-parity-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(ctx.work_dir)) {
        fprintf(stderr, "encore-parity: cannot create a temporary folder\n");
        return 2;
    }
    ctx.backend = jb_backend_init(backend, 0);
    if (!ctx.backend) {
        fprintf(stderr, "encore-parity: %s\n", jb_last_error());
        return 2;
    }
    printf("encore-parity: %s (backend %s%s)\n",
           ctx.fixture_dir,
           jb_backend_name(ctx.backend),
           ctx.kv_f16 ? ", fp16 KV caches" : "");

    const cJSON *model;
    cJSON_ArrayForEach(model, cJSON_GetObjectItemCaseSensitive(ctx.manifest, "models"))
    {
        const char *key = model->string;
        bool wanted     = n_only == 0;
        for (int i = 0; i < n_only; i++)
            wanted |= strcmp(only[i], key) == 0;
        if (!wanted) continue;
        if (strcmp(key, "vqvae") == 0)
            parity_vqvae(&ctx);
        else if (strcmp(key, "labels") == 0)
            parity_labels(&ctx);
        else
            parity_prior(&ctx, key);
    }

    if (keep) {
        printf("imported models kept in %s\n", ctx.work_dir);
    } else {
        if (nftw(ctx.work_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
            fprintf(stderr, "encore-parity: could not remove %s\n", ctx.work_dir);
    }
    printf("%d passed, %d failed\n", ctx.passed, ctx.failed);
    jb_backend_free(ctx.backend);
    cJSON_Delete(ctx.manifest);
    return ctx.failed ? 1 : 0;
}
