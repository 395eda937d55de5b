/*
 * tests/unit/test_import.c - `encore import` end to end: every fixture checkpoint (legacy and
 * zip) imports, loads, and round-trips bit-exactly in fp32 (and within rounding in fp16/bf16);
 * hostile or mismatching inputs are rejected with one clear message and leave no output file;
 * model files with a missing, extra or misshapen tensor are refused at load.
 * usage: test_import FIXTURE_DIR   (the fixture part is skipped if the folder is absent)
 */
#include "model/ckpt.h"
#include "model/gguf.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int passed, failed;
static char tmpdir[] = "/tmp/encore-import-XXXXXX";

static void check(bool ok, const char *fmt, ...) JB_PRINTF(2, 3);
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok)
        passed++;
    else
        failed++;
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static cJSON *load_manifest(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s  = malloc((size_t)n + 1);
    cJSON *j = NULL;
    if (s && fread(s, 1, (size_t)n, f) == (size_t)n) {
        s[n] = 0;
        j    = cJSON_Parse(s);
    }
    free(s);
    fclose(f);
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
    if (!exists(src) || !exists(hps)) return;
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
        check(st != JB_STATUS_OK && jb_last_error()[0] && !exists(dst),
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
        check(st != JB_STATUS_OK && !exists(dst),
              "import rejects a truncated checkpoint: %s",
              jb_last_error());
    }
    /* a prior checkpoint imported as the wrong kind */
    snprintf(path, sizeof path, "%s/prior_5b/prior_level_2.pth.tar", fixtures);
    if (exists(path)) {
        struct jb_import_params ip = { .src_path = path, .dst_path = dst, .kind = "vqvae" };
        enum jb_status st          = jb_import(&ip, NULL);
        check(st != JB_STATUS_OK && !exists(dst),
              "import rejects a prior passed as a vqvae: %s",
              jb_last_error());
    }
    struct jb_import_params ip = { .src_path = "/nonexistent/x.pth.tar", .dst_path = dst };
    check(
      jb_import(&ip, NULL) != JB_STATUS_OK, "import of a missing file fails: %s", jb_last_error());
}

int main(int argc, char **argv)
{
    const char *fixtures = argc > 1 ? argv[1] : "../shared/fixtures/jukebox-ref";
    if (!mkdtemp(tmpdir)) return 2;
    fixture_imports(fixtures);
    strict_loading(fixtures);
    hostile_inputs(fixtures);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
