/*
 * tests/unit/test_import.c - `encore import` end to end: every fixture checkpoint (legacy and
 * zip) imports, loads, and round-trips bit-exactly in fp32 (and within rounding in fp16/bf16);
 * hostile or mismatching inputs are rejected with one clear message and leave no output file;
 * model files with a missing, extra or misshapen tensor are refused at load.
 *
 * Also (issues 10 and 11): training checkpoints (numpy scalars, Adam state, a Hyperparams
 * object; tests/data, made by gen_training_checkpoints.py) import and their optimizer storages
 * are never read; hyper-parameters out of range or of the wrong type are refused naming the
 * field; stride-0 and overlapping views are refused before anything is written; planted
 * symlinks are not followed; a failed import leaves the previous file byte for byte; hostile
 * files run through `encore import` are refused within seconds, under 1 GB of memory and
 * 200 MB of disk, with a message and an exit status (never a signal); the installed v2/v3 id
 * tables are picked by kind. With --memory, the peak memory of importing a generated
 * checkpoint of more than 400 MB is measured (below size/4 + 64 MB).
 *
 * usage: test_import FIXTURE_DIR [ENCORE_BIN DATA_DIR]
 *        test_import --memory ENCORE_BIN
 *        test_import --measure RESULT FSIZE_LIMIT PROGRAM ARGS...   (used by the above)
 * (the fixture part is skipped if the folder is absent)
 */
#include "format/ckpt.h"
#include "format/gguf.h"
#include "model/model.h"
#include "test_common.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

static char tmpdir[] = "/tmp/encore-import-XXXXXX";

/* tests/common's reporting under this file's name */
#define check tc_check

static cJSON *load_manifest(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    char *s  = tc_read_file(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

/* Every GGUF tensor equals the checkpoint's tensor (converted back to f32). */
static void compare_tensors(const char *what,
                            const char *ckpt_path,
                            const char *gguf_path,
                            enum jb_dtype storage)
{
    struct jb_ckpt *c = jb_ckpt_open(ckpt_path);
    struct jb_gguf *g = jb_gguf_open(gguf_path);
    if (!c || !g) {
        check(false, "%s: reopen (%s)", what, jb_last_error());
        jb_ckpt_close(c);
        jb_gguf_close(g);
        return;
    }
    int64_t n_same = 0, n_bad = 0;
    double worst     = 0;
    bool fp16_params = false;
    jb_gguf_get_bool(g, "jukebox.prior.fp16_params", &fp16_params);
    for (int64_t i = 0; i < jb_gguf_n_tensors(g); i++) {
        const struct jb_tensor *t     = jb_gguf_tensor(g, i);
        const struct jb_ckpt_entry *e = jb_ckpt_find(c, t->name);
        size_t n                      = (size_t)jb_tensor_nelements(t);
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        if (!e || !a || !b || jb_ckpt_read_f32(c, e, a)) {
            n_bad++;
            free(a);
            free(b);
            continue;
        }
        jb_convert_to_f32(t->type, t->data, b, n);
        double num = 0, den = 0;
        for (size_t k = 0; k < n; k++) {
            num += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
            den += (double)a[k] * a[k];
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        if (rel > worst) worst = rel;
        if (num == 0) n_same++;
        free(a);
        free(b);
    }
    /* the tied duplicate output matrix is stored once */
    bool tied_ok                   = true;
    const struct jb_ckpt_entry *xo = jb_ckpt_find(c, "prior.x_out.weight");
    if (xo && !jb_gguf_find_tensor(g, "prior.x_out.weight")) {
        const struct jb_ckpt_entry *xe = jb_ckpt_find(c, "prior.x_emb.weight");
        tied_ok                        = xe && xe->storage == xo->storage;
    }
    double tol = storage == JB_DTYPE_F32   ? (fp16_params ? 1e-3 : 0.0)
                 : storage == JB_DTYPE_F16 ? 1e-3
                                           : 8e-3;
    check(n_bad == 0 && worst <= tol && tied_ok,
          "%s: %lld tensors, %lld bit-identical, worst rel err %.1e (tol %.0e)",
          what,
          (long long)jb_gguf_n_tensors(g),
          (long long)n_same,
          worst,
          tol);
    jb_ckpt_close(c);
    jb_gguf_close(g);
}

static void fixture_imports(const char *fixtures)
{
    cJSON *m = load_manifest(fixtures);
    if (!m) {
        printf("SKIP: fixtures not found at %s (../shared is absent)\n", fixtures);
        return;
    }
    const cJSON *model;
    cJSON_ArrayForEach(model, cJSON_GetObjectItemCaseSensitive(m, "models"))
    {
        const cJSON *files = cJSON_GetObjectItemCaseSensitive(model, "files");
        const cJSON *hps   = cJSON_GetObjectItemCaseSensitive(model, "hps");
        if (!cJSON_IsObject(hps)) continue;
        char hps_path[4200];
        snprintf(hps_path, sizeof hps_path, "%s/%s.json", tmpdir, model->string);
        char *text = cJSON_PrintUnformatted(hps);
        FILE *f    = fopen(hps_path, "w");
        if (f) fputs(text, f), fclose(f);
        free(text);
        static const char *const formats[] = { "checkpoint_legacy", "checkpoint_zip" };
        for (int k = 0; k < 2; k++) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(
              cJSON_GetObjectItemCaseSensitive(files, formats[k]), "path");
            if (!cJSON_IsString(p)) continue;
            static const enum jb_dtype storages[] = { JB_DTYPE_F32, JB_DTYPE_F16, JB_DTYPE_BF16 };
            for (int s = 0; s < 3; s++) {
                if (k == 1 && s > 0) continue; /* dtype conversion does not depend on format */
                char src[4200], dst[4200], what[256];
                snprintf(src, sizeof src, "%s/%s", fixtures, p->valuestring);
                snprintf(dst, sizeof dst, "%s/%s.%d.%d.gguf", tmpdir, model->string, k, s);
                snprintf(what,
                         sizeof what,
                         "%s %s %s",
                         model->string,
                         formats[k] + 11,
                         jb_dtype_name(storages[s]));
                struct jb_import_params ip = { .src_path      = src,
                                               .dst_path      = dst,
                                               .storage       = storages[s],
                                               .hps_json_path = hps_path };
                enum jb_status st          = jb_import(&ip, NULL);
                check(st == JB_STATUS_OK, "%s: import %s", what, st ? jb_last_error() : "");
                if (st) continue;
                compare_tensors(what, src, dst, storages[s]);
                /* the checkpoint's own hps dict works as well as the JSON */
                if (s == 0 && k == 0) {
                    snprintf(dst, sizeof dst, "%s/%s.ckpt-hps.gguf", tmpdir, model->string);
                    struct jb_import_params ip2 = { .src_path     = src,
                                                    .dst_path     = dst,
                                                    .storage      = JB_DTYPE_F32,
                                                    .use_ckpt_hps = true };
                    st                          = jb_import(&ip2, NULL);
                    check(st == JB_STATUS_OK,
                          "%s: import with --ckpt-hps %s",
                          model->string,
                          st ? jb_last_error() : "");
                }
            }
        }
    }
    cJSON_Delete(m);
}

/* Rewrites a model file with one change, to check that loading refuses it. */
enum edit { EDIT_EXTRA, EDIT_MISSING, EDIT_SHAPE };

static bool rewrite(const char *src, const char *dst, enum edit edit)
{
    struct jb_gguf *g = jb_gguf_open(src);
    if (!g) return false;
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    for (int64_t i = 0; i < jb_gguf_n_kv(g); i++) {
        const char *key = jb_gguf_key(g, i);
        int64_t iv;
        double fv;
        bool bv;
        switch (jb_gguf_kv_type(g, i)) {
        case JB_GGUF_TYPE_STRING:
            jb_gguf_writer_set_str(w, key, jb_gguf_get_str(g, key));
            break;
        case JB_GGUF_TYPE_BOOL:
            jb_gguf_get_bool(g, key, &bv);
            jb_gguf_writer_set_bool(w, key, bv);
            break;
        case JB_GGUF_TYPE_FLOAT32:
        case JB_GGUF_TYPE_FLOAT64:
            jb_gguf_get_float(g, key, &fv);
            jb_gguf_writer_set_f64(w, key, fv);
            break;
        case JB_GGUF_TYPE_ARRAY: {
            int32_t v[3] = { 0 };
            for (uint64_t k = 0; k < 3 && k < jb_gguf_arr_len(g, i); k++)
                if (jb_gguf_get_arr_int(g, key, k, &iv)) v[k] = (int32_t)iv;
            jb_gguf_writer_set_arr_i32(
              w, key, v, jb_gguf_arr_len(g, i) < 3 ? jb_gguf_arr_len(g, i) : 3);
            break;
        }
        default:
            if (jb_gguf_get_int(g, key, &iv)) jb_gguf_writer_set_i32(w, key, (int32_t)iv);
        }
    }
    int64_t n = jb_gguf_n_tensors(g);
    for (int64_t i = 0; i < n; i++) {
        const struct jb_tensor *t = jb_gguf_tensor(g, i);
        if (edit == EDIT_MISSING && i == n / 2) continue;
        int64_t shape[JB_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (edit == EDIT_SHAPE && i == n / 2 && t->n_dims == 1) shape[0] += 1;
        if (edit == EDIT_SHAPE && i == n / 2 && t->n_dims > 1) shape[0] += 1;
        jb_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, shape);
    }
    if (edit == EDIT_EXTRA)
        jb_gguf_writer_add_tensor(w, "encoders.9.unexpected", JB_DTYPE_F32, 1, (int64_t[]){ 4 });
    bool ok = jb_gguf_writer_begin(w, dst) == JB_STATUS_OK;
    for (int64_t i = 0; ok && i < n; i++) {
        const struct jb_tensor *t = jb_gguf_tensor(g, i);
        if (edit == EDIT_MISSING && i == n / 2) continue;
        size_t bytes = jb_tensor_nbytes(t);
        if (edit == EDIT_SHAPE && i == n / 2) {
            size_t row   = t->n_dims > 1 ? bytes / (size_t)t->shape[0] : jb_dtype_size(t->type);
            char *bigger = calloc(1, bytes + row);
            memcpy(bigger, t->data, bytes);
            ok = jb_gguf_writer_write_tensor(w, bigger, bytes + row) == JB_STATUS_OK;
            free(bigger);
            continue;
        }
        ok = jb_gguf_writer_write_tensor(w, t->data, bytes) == JB_STATUS_OK;
    }
    if (ok && edit == EDIT_EXTRA) {
        float z[4] = { 0 };
        ok         = jb_gguf_writer_write_tensor(w, z, sizeof z) == JB_STATUS_OK;
    }
    ok = ok && jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    jb_gguf_close(g);
    return ok;
}

static void strict_loading(const char *fixtures)
{
    char src[4200], dst[4200], hps[4200], bad[4200];
    snprintf(src, sizeof src, "%s/vqvae/vqvae.pth.tar", fixtures);
    snprintf(hps, sizeof hps, "%s/vqvae.json", tmpdir);
    snprintf(dst, sizeof dst, "%s/strict.gguf", tmpdir);
    if (!tc_exists(src) || !tc_exists(hps)) return;
    struct jb_import_params ip = { .src_path = src, .dst_path = dst, .hps_json_path = hps };
    if (jb_import(&ip, NULL)) return;
    struct jb_backend *be            = jb_backend_init("cpu", 1);
    static const char *const names[] = { "an extra tensor",
                                         "a missing tensor",
                                         "a misshapen tensor" };
    for (int e = 0; e < 3; e++) {
        snprintf(bad, sizeof bad, "%s/strict.%d.gguf", tmpdir, e);
        bool ok            = rewrite(dst, bad, (enum edit)e);
        struct jb_model *m = ok ? jb_model_load(bad, be) : NULL;
        check(ok && !m && jb_last_error()[0],
              "model file with %s is refused: %s",
              names[e],
              jb_last_error());
        jb_model_free(m);
    }
    jb_backend_free(be);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) fwrite(data, 1, n, f), fclose(f);
}

static void hostile_inputs(const char *fixtures)
{
    char path[4200], dst[4200];
    snprintf(dst, sizeof dst, "%s/hostile.gguf", tmpdir);

    /* legacy header, then a pickle that calls os.system('echo pwned') */
    static const uint8_t evil[]    = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20,
                                       0x6a, 0xa8, 0x50, 0x19, '.',  0x80, 0x02, 'M',  0xe9, 0x03,
                                       '.',  0x80, 0x02, '}',  '.',  0x80, 0x02, 'c',  'o',  's',
                                       '\n', 's',  'y',  's',  't',  'e',  'm',  '\n', 'X',  10,
                                       0,    0,    0,    'e',  'c',  'h',  'o',  ' ',  'p',  'w',
                                       'n',  'e',  'd',  0x85, 'R',  '.' };
    static const uint8_t garbage[] = "this is not a checkpoint at all";
    static const uint8_t zipjunk[] = { 'P', 'K', 3, 4, 0, 0, 0, 0, 1, 2, 3 };
    struct {
        const char *name;
        const uint8_t *data;
        size_t n;
    } cases[] = { { "a pickle calling os.system", evil, sizeof evil },
                  { "garbage bytes", garbage, sizeof garbage },
                  { "a broken zip", zipjunk, sizeof zipjunk },
                  { "an empty file", garbage, 0 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/hostile%zu.pth.tar", tmpdir, i);
        write_file(path, cases[i].data, cases[i].n);
        struct jb_import_params ip = { .src_path = path, .dst_path = dst };
        enum jb_status st          = jb_import(&ip, NULL);
        check(st != JB_STATUS_OK && jb_last_error()[0] && !tc_exists(dst),
              "import rejects %s: %s",
              cases[i].name,
              jb_last_error());
    }
    /* a real checkpoint cut short: tensor data past the end of the file */
    snprintf(path, sizeof path, "%s/vqvae/vqvae.pth.tar", fixtures);
    FILE *f = fopen(path, "rb");
    if (f) {
        static uint8_t buf[600000];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/truncated.pth.tar", tmpdir);
        write_file(path, buf, n);
        struct jb_import_params ip = { .src_path = path, .dst_path = dst, .kind = "vqvae" };
        enum jb_status st          = jb_import(&ip, NULL);
        check(st != JB_STATUS_OK && !tc_exists(dst),
              "import rejects a truncated checkpoint: %s",
              jb_last_error());
    }
    /* a prior checkpoint imported as the wrong kind */
    snprintf(path, sizeof path, "%s/prior_5b/prior_level_2.pth.tar", fixtures);
    if (tc_exists(path)) {
        struct jb_import_params ip = { .src_path = path, .dst_path = dst, .kind = "vqvae" };
        enum jb_status st          = jb_import(&ip, NULL);
        check(st != JB_STATUS_OK && !tc_exists(dst),
              "import rejects a prior passed as a vqvae: %s",
              jb_last_error());
    }
    struct jb_import_params ip = { .src_path = "/nonexistent/x.pth.tar", .dst_path = dst };
    check(
      jb_import(&ip, NULL) != JB_STATUS_OK, "import of a missing file fails: %s", jb_last_error());
}

/* ---------------------------------------------------------------------------------------- */
/* a legacy torch.save writer for generated checkpoints (streams the blobs: any size)        */

struct gt {
    char name[160];
    int n_dims;
    int64_t shape[4], stride[4];
    int64_t offset;
    int64_t storage_numel; /* own storage's element count (0: the view's numel) */
    int share;             /* -1: own storage; else the index of the tensor whose storage */
};

struct gen {
    struct gt *t;
    int n, cap;
    const char *hps_key; /* optional 'hps' dict entry hps_key: hps_val */
    int64_t hps_val;
    bool growth; /* put a BUILD-growth pickle under 'metrics' */
};

static struct gt *gen_add(struct gen *g, int n_dims, const int64_t *shape, const char *fmt, ...)
  JB_PRINTF(4, 5);
static struct gt *gen_add(struct gen *g, int n_dims, const int64_t *shape, const char *fmt, ...)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->t   = realloc(g->t, (size_t)g->cap * sizeof *g->t);
        if (!g->t) abort();
    }
    struct gt *t = &g->t[g->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->n_dims  = n_dims;
    t->share   = -1;
    int64_t st = 1;
    for (int d = n_dims - 1; d >= 0; d--) {
        t->shape[d]  = shape[d];
        t->stride[d] = st;
        st *= shape[d];
    }
    return t;
}

#define S1(a)                                                                                      \
    1, (const int64_t[])                                                                           \
    {                                                                                              \
        a                                                                                          \
    }
#define S2(a, b)                                                                                   \
    2, (const int64_t[])                                                                           \
    {                                                                                              \
        a, b                                                                                       \
    }

static int64_t gt_numel(const struct gt *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
        n *= t->shape[d];
    return n;
}

static void p_u8(FILE *f, unsigned x)
{
    fputc((int)(x & 0xff), f);
}
static void p_le(FILE *f, uint64_t x, int n)
{
    for (int i = 0; i < n; i++)
        p_u8(f, (unsigned)(x >> (8 * i)));
}
static void p_ops(FILE *f, const char *ops, size_t n)
{
    fwrite(ops, 1, n, f);
}
#define P_OPS(f, lit) p_ops((f), (lit), sizeof(lit) - 1)
static void p_str(FILE *f, const char *s)
{
    p_u8(f, 'X');
    p_le(f, strlen(s), 4);
    fputs(s, f);
}
static void p_int(FILE *f, int64_t x)
{
    if (x >= 0 && x < 256) {
        p_u8(f, 'K');
        p_u8(f, (unsigned)x);
    } else if (x >= INT32_MIN && x <= INT32_MAX) {
        p_u8(f, 'J');
        p_le(f, (uint64_t)x, 4);
    } else {
        p_u8(f, 0x8a);
        p_u8(f, 8);
        p_le(f, (uint64_t)x, 8);
    }
}
static void p_global(FILE *f, const char *mod, const char *name)
{
    fprintf(f, "c%s\n%s\n", mod, name);
}

/* Writes g as a legacy torch.save file; storage element values are small deterministic floats. */
static bool gen_write(const struct gen *g, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    static const uint8_t magic[] = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                     0x20, 0x6a, 0xa8, 0x50, 0x19, '.',  0x80, 0x02, 'M',
                                     0xe9, 0x03, '.',  0x80, 0x02, '}',  '.' };
    fwrite(magic, 1, sizeof magic, f);
    P_OPS(f, "\x80\x02}(");
    p_str(f, "model");
    p_global(f, "collections", "OrderedDict");
    P_OPS(f, ")R(");
    char key[32];
    for (int i = 0; i < g->n; i++) {
        const struct gt *t = &g->t[i];
        int own            = t->share >= 0 ? t->share : i;
        const struct gt *o = &g->t[own];
        p_str(f, t->name);
        p_global(f, "torch._utils", "_rebuild_tensor_v2");
        P_OPS(f, "((");
        p_str(f, "storage");
        p_global(f, "torch", "FloatStorage");
        snprintf(key, sizeof key, "%d", own);
        p_str(f, key);
        p_str(f, "cpu");
        p_int(f, o->storage_numel ? o->storage_numel : gt_numel(o));
        P_OPS(f, "tQ");
        p_int(f, t->offset);
        p_u8(f, '(');
        for (int d = 0; d < t->n_dims; d++)
            p_int(f, t->shape[d]);
        P_OPS(f, "t(");
        for (int d = 0; d < t->n_dims; d++)
            p_int(f, t->stride[d]);
        P_OPS(f, "t\x89");
        p_global(f, "collections", "OrderedDict");
        P_OPS(f, ")RtR");
    }
    p_u8(f, 'u');
    if (g->hps_key) {
        p_str(f, "hps");
        P_OPS(f, "}(");
        p_str(f, g->hps_key);
        p_int(f, g->hps_val);
        p_u8(f, 'u');
    }
    if (g->growth) { /* two Hyperparams dicts grown into each other by BUILD, 200 times */
        p_str(f, "metrics");
        p_global(f, "jukebox.hparams", "Hyperparams");
        P_OPS(f, "q\x00)\x81q\x01(");
        p_str(f, "a");
        P_OPS(f, "K\x01uh\x00)\x81q\x02(");
        p_str(f, "b");
        P_OPS(f, "K\x02u");
        for (int i = 0; i < 200; i++)
            P_OPS(f,
                  "h\x01h\x02"
                  "b0h\x02h\x01"
                  "b0");
        P_OPS(f, "0"); /* leaves A as the value */
    }
    p_str(f, "step");
    p_int(f, 5);
    P_OPS(f, "u.\x80\x02](");
    for (int i = 0; i < g->n; i++) {
        if (g->t[i].share >= 0) continue;
        snprintf(key, sizeof key, "%d", i);
        p_str(f, key);
    }
    P_OPS(f, "e.");
    static float chunk[1 << 14];
    for (int i = 0; i < g->n; i++) {
        const struct gt *t = &g->t[i];
        if (t->share >= 0) continue;
        int64_t n = t->storage_numel ? t->storage_numel : gt_numel(t);
        p_le(f, (uint64_t)n, 8);
        for (int64_t k = 0; k < n;) {
            int64_t m = n - k < (int64_t)(sizeof chunk / sizeof chunk[0])
                          ? n - k
                          : (int64_t)(sizeof chunk / sizeof chunk[0]);
            for (int64_t j = 0; j < m; j++)
                chunk[j] = (float)(((k + j + i) % 97) - 48) * 0.01f;
            fwrite(chunk, sizeof(float), (size_t)m, f);
            k += m;
        }
    }
    return fclose(f) == 0;
}

/* A prior_5b-shaped model (merged decoder, timing, no lyrics): width W (heads 8 => W % 32 == 0),
 * depth D, n_ctx T (a multiple of the preset's 128 blocks), B bins, 4 genres/artists/t_bins. */
static void gen_prior(struct gen *g, int64_t W, int D, int64_t T, int64_t B)
{
    int64_t ns = W / 4, mlp = W;
    gen_add(g, S2(4, W), "y_emb.bow_genre_emb.emb.weight");
    gen_add(g, S2(4, W), "y_emb.artist_emb.emb.weight");
    gen_add(g, S2(4, W), "y_emb.total_length_emb.emb.weight");
    gen_add(g, S2(4, W), "y_emb.absolute_pos_emb.emb.weight");
    gen_add(g, S2(4, W), "y_emb.relative_pos_emb.emb.weight");
    gen_add(g, S2(B, W), "prior.x_emb.weight");
    gen_add(g, S2(T, W), "prior.pos_emb.pos_emb");
    for (int d = 0; d < D; d++) {
        const char *p = "prior.transformer._attn_mods";
        gen_add(g, S2(W, 3 * ns), "%s.%d.attn.c_attn.w", p, d);
        gen_add(g, S1(3 * ns), "%s.%d.attn.c_attn.b", p, d);
        gen_add(g, S2(ns, W), "%s.%d.attn.c_proj.w", p, d);
        gen_add(g, S1(W), "%s.%d.attn.c_proj.b", p, d);
        gen_add(g, S1(W), "%s.%d.ln_0.weight", p, d);
        gen_add(g, S1(W), "%s.%d.ln_0.bias", p, d);
        gen_add(g, S2(W, mlp), "%s.%d.mlp.c_fc.w", p, d);
        gen_add(g, S1(mlp), "%s.%d.mlp.c_fc.b", p, d);
        gen_add(g, S2(mlp, W), "%s.%d.mlp.c_proj.w", p, d);
        gen_add(g, S1(W), "%s.%d.mlp.c_proj.b", p, d);
        gen_add(g, S1(W), "%s.%d.ln_1.weight", p, d);
        gen_add(g, S1(W), "%s.%d.ln_1.bias", p, d);
    }
    gen_add(g, S2(B, W), "prior.x_out.weight");
}

static struct gt *gen_find(struct gen *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}

/* With ENCORE_CKPT_SEED_DIR set, keeps a small generated checkpoint as a fuzz seed
 * (tests/fuzz/corpus/ckpt). */
static void seed_copy(const char *src, const char *name)
{
    const char *dir = getenv("ENCORE_CKPT_SEED_DIR");
    if (!dir) return;
    FILE *f = fopen(src, "rb");
    static uint8_t buf[64 * 1024];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    bool all = f && fgetc(f) == EOF;
    if (f) fclose(f);
    if (!all || !n) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *o = fopen(path, "wb");
    if (o) fwrite(buf, 1, n, o), fclose(o);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

/* ---------------------------------------------------------------------------------------- */

/* tests/data: training checkpoints around a tiny VQ-VAE (made by gen_training_checkpoints.py) */
static void training_checkpoints(const char *data)
{
    char src[4200], hps[4200], dst[4200], what[64];
    snprintf(hps, sizeof hps, "%s/train_vqvae_hps.json", data);
    static const char *const fmts[] = { "legacy", "zip" };
    for (int k = 0; k < 2; k++) {
        snprintf(src, sizeof src, "%s/train_vqvae_%s.pth.tar", data, fmts[k]);
        snprintf(dst, sizeof dst, "%s/train_%s.gguf", tmpdir, fmts[k]);
        snprintf(what, sizeof what, "training checkpoint (%s)", fmts[k]);
        if (!tc_exists(src)) {
            check(false, "%s: %s is missing", what, src);
            continue;
        }
        struct jb_import_params ip = {
            .src_path = src, .dst_path = dst, .storage = JB_DTYPE_F32, .hps_json_path = hps
        };
        enum jb_status st = jb_import(&ip, NULL);
        check(st == JB_STATUS_OK,
              "%s with numpy scalars, Adam state and a Hyperparams object imports: %s",
              what,
              st ? jb_last_error() : "ok");
        if (!st) compare_tensors(what, src, dst, JB_DTYPE_F32);
        struct jb_ckpt *c = jb_ckpt_open(src);
        check(c && jb_ckpt_n_entries(c) == 19 && jb_ckpt_step(c) == 1234 &&
                jb_pyval_int(jb_pyval_dict_get(jb_ckpt_hps(c), "width")) == 4,
              "%s: 19 model tensors, step 1234, hps read from the Hyperparams object",
              what);
        jb_ckpt_close(c);
        ip.hps_json_path = NULL;
        ip.use_ckpt_hps  = true;
        st               = jb_import(&ip, NULL);
        check(st == JB_STATUS_OK,
              "%s imports with --ckpt-hps (the Hyperparams object): %s",
              what,
              st ? jb_last_error() : "ok");
    }

    /* zip: the optimizer's storages are never read. Deleting any storage entry that 'model'
     * does not use leaves the import working; deleting one it uses breaks it. */
    snprintf(src, sizeof src, "%s/train_vqvae_zip.pth.tar", data);
    int err      = 0;
    zip_t *za    = zip_open(src, ZIP_RDONLY, &err);
    int n_unused = 0, n_used = 0, n_wrong = 0;
    zip_int64_t n_entries = za ? zip_get_num_entries(za, 0) : 0;
    char **names          = calloc((size_t)(n_entries ? n_entries : 1), sizeof *names);
    for (zip_int64_t i = 0; names && i < n_entries; i++)
        names[i] = strdup(zip_get_name(za, (zip_uint64_t)i, 0));
    if (za) zip_discard(za);
    for (zip_int64_t i = 0; names && i < n_entries; i++) {
        if (!strstr(names[i], "/data/")) continue;
        char copy[4200];
        snprintf(copy, sizeof copy, "%s/zip_minus.pth.tar", tmpdir);
        size_t n;
        FILE *f = fopen(src, "rb");
        static uint8_t buf[1 << 20];
        n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        write_file(copy, buf, n);
        zip_t *zw = zip_open(copy, 0, &err);
        if (!zw) continue;
        zip_delete(zw, (zip_uint64_t)i);
        if (zip_close(zw) != 0) {
            zip_discard(zw);
            continue;
        }
        struct jb_ckpt *c = jb_ckpt_open(copy);
        bool opens        = c != NULL;
        bool reads        = opens;
        for (int64_t e = 0; c && reads && e < jb_ckpt_n_entries(c); e++) {
            const struct jb_ckpt_entry *en = jb_ckpt_entry(c, e);
            float tmp[256];
            reads = jb_tensor_nelements(&(struct jb_tensor){ .n_dims = en->n_dims }) >= 0 &&
                    jb_ckpt_read_f32(c, en, tmp) == JB_STATUS_OK;
        }
        jb_ckpt_close(c);
        struct jb_import_params ip = {
            .src_path = copy, .dst_path = dst, .storage = JB_DTYPE_F32, .hps_json_path = hps
        };
        bool imports = jb_import(&ip, NULL) == JB_STATUS_OK;
        if (imports && reads)
            n_unused++;
        else if (!imports && !opens)
            n_used++;
        else
            n_wrong++;
    }
    for (zip_int64_t i = 0; names && i < n_entries; i++)
        free(names[i]);
    free(names);
    /* 19 model storages; Adam keeps exp_avg, exp_avg_sq (and a step tensor) per parameter */
    check(n_used == 19 && n_unused >= 38 && n_wrong == 0,
          "zip: %d storages only the optimizer uses are never opened, %d of 'model' are needed "
          "(%d inconsistent)",
          n_unused,
          n_used,
          n_wrong);
}

/* One hyper-parameter case: the import fails, names `field`, and leaves nothing behind. */
static void expect_hps_refusal(const char *what,
                               const char *src,
                               const char *json,
                               const char *field)
{
    char hps[4200], dst[4200];
    snprintf(hps, sizeof hps, "%s/bad_hps.json", tmpdir);
    snprintf(dst, sizeof dst, "%s/bad_hps.gguf", tmpdir);
    write_text(hps, json);
    struct jb_import_params ip = {
        .src_path = src, .dst_path = dst, .storage = JB_DTYPE_F32, .hps_json_path = hps
    };
    enum jb_status st = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), field) && !tc_exists(dst) &&
            tc_count_temporaries(dst) == 0,
          "%s %s is refused naming '%s': %s",
          what,
          json,
          field,
          jb_last_error());
}

static void hyper_parameters(const char *data)
{
    char prior[4200], vq[4200];
    snprintf(prior, sizeof prior, "%s/tiny_prior.pth.tar", tmpdir);
    struct gen g = { 0 };
    gen_prior(&g, 32, 1, 128, 16);
    check(gen_write(&g, prior), "generated a tiny prior_5b checkpoint");
    char dst[4200];
    snprintf(dst, sizeof dst, "%s/tiny_prior.gguf", tmpdir);
    struct jb_import_params ip = { .src_path = prior, .dst_path = dst, .storage = JB_DTYPE_F16 };
    enum jb_status st          = jb_import(&ip, NULL);
    check(st == JB_STATUS_OK, "the tiny prior imports: %s", st ? jb_last_error() : "ok");

    expect_hps_refusal("prior", prior, "{\"heads\": 0}", "heads");
    expect_hps_refusal("prior", prior, "{\"blocks\": 0}", "blocks");
    expect_hps_refusal("prior", prior, "{\"heads\": 3}", "heads");
    expect_hps_refusal("prior", prior, "{\"blocks\": 5}", "blocks");
    expect_hps_refusal("prior", prior, "{\"heads\": -8}", "heads");
    expect_hps_refusal("prior", prior, "{\"heads\": \"eight\"}", "heads");
    expect_hps_refusal("prior", prior, "{\"blocks\": 4294967297}", "blocks");
    expect_hps_refusal("prior", prior, "{\"heads\": 2.5}", "heads");
    expect_hps_refusal("prior", prior, "{\"m_mlp\": 0}", "m_mlp");
    expect_hps_refusal("prior", prior, "{\"m_mlp\": 1e300}", "m_mlp");
    expect_hps_refusal("prior", prior, "{\"max_bow_genre_size\": 0}", "max_bow_genre_size");
    expect_hps_refusal("prior", prior, "{\"attn_order\": 99}", "attn_order");
    expect_hps_refusal("prior", prior, "{\"max_duration\": -1}", "max_duration");

    snprintf(vq, sizeof vq, "%s/train_vqvae_legacy.pth.tar", data);
    if (tc_exists(vq)) {
        expect_hps_refusal("vqvae", vq, "{\"width\": 2147483647}", "width");
        expect_hps_refusal("vqvae", vq, "{\"width\": 0}", "width");
        expect_hps_refusal("vqvae", vq, "{\"downs_t\": [100000000, 1, 1]}", "downs_t");
        expect_hps_refusal("vqvae", vq, "{\"strides_t\": [2147483647, 2, 2]}", "strides_t");
        expect_hps_refusal("vqvae", vq, "{\"strides_t\": [0, 2, 2]}", "strides_t");
        expect_hps_refusal(
          "vqvae", vq, "{\"hvqvae_multipliers\": [1000000000, 1, 1]}", "multipliers");
        expect_hps_refusal("vqvae", vq, "{\"depth\": 1e10}", "depth");
        expect_hps_refusal("vqvae", vq, "{\"dilation_growth_rate\": 0}", "dilation_growth_rate");
        expect_hps_refusal("vqvae", vq, "{\"m_conv\": -1}", "m_conv");
        expect_hps_refusal("vqvae", vq, "{\"downs_t\": \"many\"}", "downs_t");
    }

    /* --ckpt-hps: the checkpoint's own hps dict goes through the same checks */
    g.hps_key = "heads";
    g.hps_val = 0;
    check(gen_write(&g, prior), "generated a prior whose hps says heads = 0");
    seed_copy(prior, "bad_hps_heads_0");
    ip.use_ckpt_hps = true;
    st              = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), "heads"),
          "--ckpt-hps with heads = 0 is refused: %s",
          jb_last_error());
    g.hps_key = "blocks";
    check(gen_write(&g, prior), "generated a prior whose hps says blocks = 0");
    seed_copy(prior, "bad_hps_blocks_0");
    st = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), "blocks"),
          "--ckpt-hps with blocks = 0 is refused: %s",
          jb_last_error());
    g.hps_key = NULL;

    /* a zero-width embedding (NaN in m_attn before) is refused at the shape check */
    struct gt *xe   = gen_find(&g, "prior.x_emb.weight");
    xe->shape[1]    = 0;
    xe->stride[0]   = 0;
    ip.use_ckpt_hps = false;
    check(gen_write(&g, prior), "generated a prior with a zero-width x_emb");
    seed_copy(prior, "bad_zero_width_embedding");
    st = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), "prior.x_emb.weight"),
          "a zero-width embedding is refused: %s",
          jb_last_error());
    free(g.t);
}

/* Views that need more elements than the file stores are refused before a byte is written. */
static void broadcasts(void)
{
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/broadcast.pth.tar", tmpdir);
    snprintf(dst, sizeof dst, "%s/broadcast.gguf", tmpdir);
    struct jb_import_params ip = { .src_path = src, .dst_path = dst, .storage = JB_DTYPE_F32 };

    /* the example of issue 10: 8 x (2^26,) stride-0 views of one-element storages */
    struct gen g = { 0 };
    for (int i = 0; i < 8; i++) {
        struct gt *t     = gen_add(&g, S1((int64_t)1 << 26), "bottleneck.level_blocks.%d.k", i);
        t->stride[0]     = 0;
        t->storage_numel = 1;
    }
    check(gen_write(&g, src), "generated 8 stride-0 views of 2^26 elements");
    seed_copy(src, "bad_stride0_8x2p26");
    double t0         = jb_time_now();
    enum jb_status st = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), "stride-0") && !tc_exists(dst) &&
            tc_count_temporaries(dst) == 0 && jb_time_now() - t0 < 5,
          "stride-0 views are refused before writing (%.2f s): %s",
          jb_time_now() - t0,
          jb_last_error());
    free(g.t);

    /* a (2^34,) tensor over a one-element storage */
    memset(&g, 0, sizeof g);
    struct gt *t     = gen_add(&g, S1((int64_t)1 << 34), "bottleneck.level_blocks.0.k");
    t->stride[0]     = 0;
    t->storage_numel = 1;
    check(gen_write(&g, src), "generated a (2^34,) stride-0 tensor");
    seed_copy(src, "bad_stride0_2p34");
    st = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), "2^31") && !tc_exists(dst),
          "a (2^34,) tensor is refused before allocating: %s",
          jb_last_error());
    free(g.t);

    /* a model of the right names and shapes whose c_fc.w is a stride-0 view of one element */
    memset(&g, 0, sizeof g);
    gen_prior(&g, 32, 2, 128, 16);
    t                = gen_find(&g, "prior.transformer._attn_mods.1.mlp.c_fc.w");
    t->stride[0]     = 0;
    t->stride[1]     = 0;
    t->storage_numel = 1;
    check(gen_write(&g, src), "generated a prior with a broadcast c_fc.w");
    seed_copy(src, "bad_broadcast_weight");
    st = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), "c_fc.w") && !tc_exists(dst),
          "a broadcast model weight is refused: %s",
          jb_last_error());
    free(g.t);

    /* every layer's matrices are views of layer 0's storage (each fits, together they do not) */
    memset(&g, 0, sizeof g);
    gen_prior(&g, 32, 4, 128, 16);
    for (int d = 1; d < 4; d++) {
        char name[160];
        snprintf(name, sizeof name, "prior.transformer._attn_mods.%d.mlp.c_fc.w", d);
        gen_find(&g, name)->share =
          (int)(gen_find(&g, "prior.transformer._attn_mods.0.mlp.c_fc.w") - g.t);
    }
    check(gen_write(&g, src), "generated a prior whose layers share one storage");
    seed_copy(src, "bad_shared_storages");
    st = jb_import(&ip, NULL);
    check(st != JB_STATUS_OK && strstr(jb_last_error(), "not all stored") && !tc_exists(dst),
          "overlapping storages are refused: %s",
          jb_last_error());
    free(g.t);
}

static bool stop_after_two(void *user)
{
    return ++*(int *)user > 2;
}

/* Planted symlinks are never followed; a failed import keeps the previous file as it was. */
static void atomic_outputs(void)
{
    char src[4200], dst[4200], victim[4200], l1[4300], l2[4300];
    snprintf(src, sizeof src, "%s/tiny_prior.pth.tar", tmpdir);
    snprintf(dst, sizeof dst, "%s/atomic.gguf", tmpdir);
    snprintf(victim, sizeof victim, "%s/victim.txt", tmpdir);
    snprintf(l1, sizeof l1, "%s.import", dst);
    snprintf(l2, sizeof l2, "%s.tmp", dst);
    struct gen g = { 0 };
    gen_prior(&g, 32, 2, 128, 16);
    gen_write(&g, src);
    free(g.t);
    write_text(victim, "precious");
    bool planted               = symlink(victim, l1) == 0 && symlink(victim, l2) == 0;
    struct jb_import_params ip = { .src_path = src, .dst_path = dst, .storage = JB_DTYPE_F32 };
    enum jb_status st          = jb_import(&ip, NULL);
    size_t n                   = 0;
    char v[16]                 = { 0 };
    FILE *f                    = fopen(victim, "r");
    if (f) n = fread(v, 1, sizeof v, f), fclose(f);
    check(planted && st == JB_STATUS_OK && n == 8 && memcmp(v, "precious", 8) == 0 &&
            tc_count_temporaries(dst) == 0,
          "symlinks planted at OUT.import and OUT.tmp are not followed (%s)",
          st ? jb_last_error() : "import ok, victim unchanged");
    unlink(l1);
    unlink(l2);

    /* the good file from above survives a cancelled import byte for byte */
    struct stat before, after;
    uint8_t *old = NULL;
    size_t old_n = 0;
    if (stat(dst, &before) == 0 && (f = fopen(dst, "rb"))) {
        old   = malloc((size_t)before.st_size);
        old_n = old ? fread(old, 1, (size_t)before.st_size, f) : 0;
        fclose(f);
    }
    int polls              = 0;
    struct jb_callbacks cb = { .should_stop = stop_after_two, .user = &polls };
    ip.storage             = JB_DTYPE_F16; /* would write a different file */
    st                     = jb_import(&ip, &cb);
    bool same              = false;
    if (stat(dst, &after) == 0 && (size_t)after.st_size == old_n && (f = fopen(dst, "rb"))) {
        uint8_t *now = malloc(old_n ? old_n : 1);
        same         = now && fread(now, 1, old_n, f) == old_n && memcmp(now, old, old_n) == 0;
        free(now);
        fclose(f);
    }
    check(st == JB_STATUS_ERR_CANCELLED && same && tc_count_temporaries(dst) == 0,
          "an interrupted import leaves the previous file byte for byte and no temporary: %s",
          jb_last_error());
    free(old);
}

/* The installed tables of the kind's label version are embedded without flags. */
static void id_tables(const char *fixtures)
{
    char dir[4200], path[4300], src[4200], dst[4200];
    snprintf(dir, sizeof dir, "%s/ids", tmpdir);
    mkdir(dir, 0700);
    static const char *const files[][2] = {
        { "v2_artist_ids.txt", "v2_artist_a;0\nv2_artist_b;1\n" },
        { "v2_genre_ids.txt", "v2_genre_a;0\n" },
        { "v3_artist_ids.txt", "v3_artist_a;0\nv3_artist_b;1\n" },
        { "v3_genre_ids.txt", "v3_genre_a;0\n" },
    };
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        write_text(path, files[i][1]);
    }
    struct {
        const char *what, *model, *src, *want; /* model: the fixture (its hps JSON) */
    } cases[] = {
        { "prior_5b (generated)", NULL, NULL, "v2_artist_a" },
        { "prior_1b_lyrics (fixture)",
          "prior_1b_lyrics",
          "prior_1b_lyrics/prior_level_2.pth.tar",
          "v3_artist_a" },
        { "upsampler_level_0 (fixture)",
          "upsampler_level_0",
          "upsampler_level_0/prior_level_0.pth.tar",
          "v2_artist_a" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].src)
            snprintf(src, sizeof src, "%s/%s", fixtures, cases[i].src);
        else
            snprintf(src, sizeof src, "%s/tiny_prior.pth.tar", tmpdir);
        if (!tc_exists(src)) {
            printf("SKIP: %s (no %s)\n", cases[i].what, src);
            continue;
        }
        char hps[4300]; /* written by fixture_imports */
        snprintf(hps, sizeof hps, "%s/%s.json", tmpdir, cases[i].model ? cases[i].model : "");
        snprintf(dst, sizeof dst, "%s/ids.gguf", tmpdir);
        struct jb_import_params ip = { .src_path      = src,
                                       .dst_path      = dst,
                                       .storage       = JB_DTYPE_F32,
                                       .hps_json_path = cases[i].model ? hps : NULL,
                                       .ids_dir       = dir };
        enum jb_status st          = jb_import(&ip, NULL);
        struct jb_gguf *g          = st ? NULL : jb_gguf_open(dst);
        const char *name           = jb_gguf_get_arr_str(g, "jukebox.labels.artist_names", 0);
        check(name && strcmp(name, cases[i].want) == 0,
              "%s: the %.2s id tables are picked without flags (%s)",
              cases[i].what,
              cases[i].want,
              st     ? jb_last_error()
              : name ? name
                     : "no artist names");
        jb_gguf_close(g);
    }
    /* and the installed (build-tree) tables are found without ids_dir */
    snprintf(src, sizeof src, "%s/tiny_prior.pth.tar", tmpdir);
    snprintf(dst, sizeof dst, "%s/ids2.gguf", tmpdir);
    struct jb_import_params ip = { .src_path = src, .dst_path = dst, .storage = JB_DTYPE_F32 };
    if (jb_import(&ip, NULL) == JB_STATUS_OK) {
        struct jb_gguf *g = jb_gguf_open(dst);
        int64_t k         = g ? jb_gguf_find_key(g, "jukebox.labels.artist_names") : -1;
        if (k < 0)
            printf(
              "SKIP: no installed id tables were found (ENCORE_IDS_DIR absent at configure)\n");
        else
            check(jb_gguf_arr_len(g, k) >= 1, "installed v2 tables found without flags");
        jb_gguf_close(g);
    }
}

extern char **environ;

/* ---------------------------------------------------------------------------------------- */
/* hostile files through the CLI: refused quickly, with bounded memory and disk, no signal    */

struct run_result {
    int status;
    double seconds;
    long maxrss_kb;
    char err[1024];
};

/* `test_import --measure RESULT FSIZE_LIMIT PROGRAM ARGS...`: runs PROGRAM (with a file-size
 * limit when FSIZE_LIMIT > 0: writing more raises SIGXFSZ) and writes "status maxrss_kb" to
 * RESULT. The test runs itself this way, freshly exec'd and small, because a child's ru_maxrss
 * counts the memory of whatever process it was forked from. */
static int measure_main(int argc, char **argv)
{
    if (argc < 5) return 2;
    long fsize_limit = strtol(argv[3], NULL, 10);
    pid_t pid        = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        struct rlimit fs = { (rlim_t)fsize_limit, (rlim_t)fsize_limit };
        if (fsize_limit > 0) setrlimit(RLIMIT_FSIZE, &fs);
        execv(argv[4], argv + 4);
        _exit(127);
    }
    struct rusage ru;
    int status = 0;
    if (wait4(pid, &status, 0, &ru) != pid) return 2;
    FILE *f = fopen(argv[2], "w");
    if (!f) return 2;
    fprintf(f, "%d %ld\n", status, ru.ru_maxrss);
    return fclose(f) == 0 ? 0 : 2;
}

static bool run_encore(const char *encore,
                       char *const argv_tail[],
                       long fsize_limit,
                       struct run_result *r)
{
    char errpath[4200], respath[4200], self[4096], limit[32];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", tmpdir);
    snprintf(respath, sizeof respath, "%s/measure.txt", tmpdir);
    snprintf(limit, sizeof limit, "%ld", fsize_limit);
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sn <= 0) return false;
    self[sn]       = '\0';
    char *argv[24] = { self, "--measure", respath, limit, (char *)encore, "import" };
    int n          = 6;
    for (int i = 0; argv_tail[i] && n < 23; i++)
        argv[n++] = argv_tail[i];
    argv[n] = NULL;
    unlink(respath);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    double t0 = jb_time_now();
    pid_t pid = 0;
    int rc    = posix_spawn(&pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return false;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return false;
    r->seconds = jb_time_now() - t0;
    FILE *f    = fopen(respath, "r");
    bool ok    = f && fscanf(f, "%d %ld", &r->status, &r->maxrss_kb) == 2;
    if (f) fclose(f);
    if (!ok) return false;
    r->err[0] = '\0';
    f         = fopen(errpath, "r");
    if (f) { /* the last lines: the error comes after any warnings */
        if (fseek(f, -(long)(sizeof r->err - 1), SEEK_END) != 0) rewind(f);
        size_t k  = fread(r->err, 1, sizeof r->err - 1, f);
        r->err[k] = '\0';
        fclose(f);
        char *nl = strchr(r->err, '\n');
        if (nl && nl[1] == '\0') *nl = '\0';
    }
    return true;
}

static void hostile_cli(const char *encore, const char *data)
{
    char src[4200], dst[4200], hps[4200];
    snprintf(dst, sizeof dst, "%s/cli.gguf", tmpdir);
    struct gen g = { 0 };
    struct {
        const char *name;
        const char *json; /* --hps, or NULL */
        int kind;         /* 0 growth, 1 stride-0, 2 2^34, 3 tiny prior, 4 vqvae */
    } cases[] = {
        { "BUILD growth under 'metrics'", NULL, 0 },
        { "8 x (2^26,) stride-0", NULL, 1 },
        { "(2^34,) tensor", NULL, 2 },
        { "{\"heads\": 0}", "{\"heads\": 0}", 3 },
        { "{\"blocks\": 0}", "{\"blocks\": 0}", 3 },
        { "{\"m_mlp\": 0}", "{\"m_mlp\": 0}", 3 },
        { "vqvae width 2^31-1", "{\"width\": 2147483647}", 4 },
        { "vqvae strides 2^31-1", "{\"strides_t\": [2147483647, 2147483647, 2147483647]}", 4 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&g, 0, sizeof g);
        snprintf(src, sizeof src, "%s/cli%zu.pth.tar", tmpdir, i);
        if (cases[i].kind == 0) {
            gen_prior(&g, 32, 1, 128, 16);
            g.growth = true;
        } else if (cases[i].kind == 1) {
            for (int k = 0; k < 8; k++) {
                struct gt *t     = gen_add(&g, S1((int64_t)1 << 26), "t%d", k);
                t->stride[0]     = 0;
                t->storage_numel = 1;
            }
        } else if (cases[i].kind == 2) {
            struct gt *t     = gen_add(&g, S1((int64_t)1 << 34), "bottleneck.level_blocks.0.k");
            t->stride[0]     = 0;
            t->storage_numel = 1;
        } else if (cases[i].kind == 3) {
            gen_prior(&g, 32, 2, 128, 16);
        }
        if (cases[i].kind == 4)
            snprintf(src, sizeof src, "%s/train_vqvae_legacy.pth.tar", data);
        else
            gen_write(&g, src);
        if (cases[i].kind == 0) seed_copy(src, "bad_build_growth_in_metrics");
        free(g.t);
        char *tail[8] = { 0 };
        int n         = 0;
        if (cases[i].json) {
            snprintf(hps, sizeof hps, "%s/cli%zu.json", tmpdir, i);
            write_text(hps, cases[i].json);
            tail[n++] = "--hps";
            tail[n++] = hps;
        }
        tail[n++] = src;
        tail[n++] = dst;
        struct run_result r;
        bool ran    = run_encore(encore, tail, 200l << 20, &r);
        bool exited = ran && WIFEXITED(r.status);
        check(exited && WEXITSTATUS(r.status) != 0 && r.err[0] && r.seconds < 20 &&
                r.maxrss_kb < (1l << 20) && !tc_exists(dst) && tc_count_temporaries(dst) == 0,
              "encore import refuses %s: exit %d%s, %.2f s, %ld MB peak: %s",
              cases[i].name,
              exited ? WEXITSTATUS(r.status) : -1,
              ran && WIFSIGNALED(r.status) ? " (KILLED BY A SIGNAL)" : "",
              ran ? r.seconds : -1.0,
              ran ? r.maxrss_kb / 1024 : -1l,
              ran ? r.err : "could not run");
    }
}

/* ---------------------------------------------------------------------------------------- */
/* peak memory of a streamed import (issue 11 item 5)                                         */

static int memory_test(const char *encore)
{
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/big.pth.tar", tmpdir);
    snprintf(dst, sizeof dst, "%s/big.gguf", tmpdir);
    /* width 1024, 32 layers: 3.1e6 parameters a layer, ~420 MB in fp32; 4 artists and genres */
    struct gen g = { 0 };
    gen_prior(&g, 1024, 32, 128, 2048);
    double t0 = jb_time_now();
    bool ok   = gen_write(&g, src);
    free(g.t);
    struct stat st;
    ok = ok && stat(src, &st) == 0;
    check(ok && st.st_size >= 400l << 20,
          "generated a %.0f MB checkpoint in %.1f s",
          ok ? (double)st.st_size / 1048576.0 : 0.0,
          jb_time_now() - t0);
    if (!ok) return 1;
    char *tail[] = { "--dtype", "f16", src, dst, NULL };
    struct run_result r;
    bool ran      = run_encore(encore, tail, 0, &r);
    long limit_kb = (long)(st.st_size / 4 / 1024) + 64 * 1024;
    check(ran && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
          "encore import of %.0f MB: %.1f s, status %d%s",
          (double)st.st_size / 1048576.0,
          ran ? r.seconds : -1.0,
          ran ? r.status : -1,
          ran && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 ? "" : r.err);
    check(ran && r.maxrss_kb < limit_kb,
          "peak memory %.1f MB < size/4 + 64 MB = %.1f MB",
          ran ? (double)r.maxrss_kb / 1024.0 : -1.0,
          (double)limit_kb / 1024.0);
    struct jb_gguf *gg = jb_gguf_open(dst);
    check(gg && jb_gguf_n_tensors(gg) == 7 + 32 * 12 + 1, "the imported model has every tensor");
    jb_gguf_close(gg);

    /* Ctrl-C in the middle of the stream: a clean exit, nothing under the final name, no
     * temporary left beside it */
    char dst2[4200];
    snprintf(dst2, sizeof dst2, "%s/interrupted.gguf", tmpdir);
    char *argv[] = { (char *)encore, "import", "--dtype", "f16", src, dst2, NULL };
    pid_t pid    = 0;
    int status   = 0;
    t0           = jb_time_now();
    if (posix_spawn(&pid, encore, NULL, NULL, argv, environ) == 0) {
        /* once the temporary exists the stream has begun (and the handler is installed) */
        for (int k = 0; k < 4000 && tc_count_temporaries(dst2) == 0; k++)
            usleep(5000);
        kill(pid, SIGINT);
        waitpid(pid, &status, 0);
    }
    check(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) != 0 && !tc_exists(dst2) &&
            tc_count_temporaries(dst2) == 0,
          "an import interrupted after %.1f s exits %d and leaves no file or temporary",
          jb_time_now() - t0,
          WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--measure") == 0) return measure_main(argc, argv);
    if (!mkdtemp(tmpdir)) return 2;
    if (argc > 2 && strcmp(argv[1], "--memory") == 0) {
        memory_test(argv[2]);
    } else {
        const char *fixtures = argc > 1 ? argv[1] : "../shared/fixtures/jukebox-ref";
        const char *encore   = argc > 2 ? argv[2] : NULL;
        const char *data     = argc > 3 ? argv[3] : "tests/data";
        fixture_imports(fixtures);
        strict_loading(fixtures);
        hostile_inputs(fixtures);
        training_checkpoints(data);
        hyper_parameters(data);
        broadcasts();
        atomic_outputs();
        id_tables(fixtures);
        if (encore)
            hostile_cli(encore, data);
        else
            printf("SKIP: no encore binary given: the CLI cases did not run\n");
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return tc_summary();
}
