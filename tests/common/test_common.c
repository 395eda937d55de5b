/* tests/common/test_common.c - shared test helpers (see test_common.h). */
#include "test_common.h"

#include <dirent.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_pass, g_fail;

void tc_check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (ok)
        g_pass++;
    else
        g_fail++;
}

void tc_expect(bool ok, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        g_pass++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    g_fail++;
}

void tc_report(const char *name, bool ok, const char *detail)
{
    bool has = detail && *detail;
    tc_check(ok, "%s%s%s", name, has ? ": " : "", has ? detail : "");
}

char tc_fail_where[256];

void tc_run_case(const char *name, bool (*fn)(void))
{
    tc_fail_where[0] = '\0';
    jb_clear_error();
    bool ok = fn();
    tc_report(name, ok, ok ? NULL : tc_fail_where);
}

int tc_passed(void)
{
    return g_pass;
}

int tc_failed(void)
{
    return g_fail;
}

int tc_summary(void)
{
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

uint64_t tc_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull); /* splitmix64 */
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float tc_rng_uniform(uint64_t *s)
{
    return (float)((double)(tc_rng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

void tc_rng_fill(uint64_t *s, float *dst, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = scale * tc_rng_uniform(s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void tc_sort_doubles(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
}

bool tc_tempdir(char *buf, size_t len, const char *tag)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int n           = snprintf(buf, len, "%s/encore-%s-XXXXXX", tmp, tag);
    return n > 0 && (size_t)n < len && mkdtemp(buf) != NULL;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void tc_rmtree(const char *dir)
{
    if (dir && dir[0]) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *tc_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf  = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap        = cap ? 2 * cap : 65536;
            char *nbuf = realloc(buf, cap);
            if (!nbuf) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nbuf;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    if (n) *n = len;
    return buf;
}

bool tc_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

char *tc_read_text(const char *path)
{
    char *s = tc_read_file(path, NULL);
    return s ? s : strdup("");
}

bool tc_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int tc_count_temporaries(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4200], prefix[512];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    snprintf(prefix, sizeof prefix, ".%s.", slash ? slash + 1 : path);
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static int exit_status(int rc)
{
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
}

int tc_run(const char *cmd)
{
    printf("$ %s\n", cmd);
    fflush(stdout);
    return exit_status(system(cmd));
}

int tc_run_logged(const char *cmd, const char *log_path, char **out)
{
    size_t n   = strlen(cmd) + strlen(log_path) + 32;
    char *line = malloc(n);
    int rc     = -1;
    if (line) {
        snprintf(line, n, "%s > %s 2>&1", cmd, log_path);
        rc = tc_run(line);
        free(line);
    }
    *out = tc_read_text(log_path);
    printf("%s", *out);
    return rc;
}

double tc_cpu_seconds(pid_t pid)
{
    char p[64], buf[2048];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n]           = '\0';
    const char *s    = strrchr(buf, ')');
    unsigned long ut = 0, stime = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime */
    if (!s ||
        sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime) != 2)
        return -1;
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

const char *tc_backend_name(void)
{
    const char *name = getenv("ENCORE_TEST_BACKEND");
    return name && name[0] ? name : "cpu";
}

struct jb_backend *tc_backend_init(int n_threads)
{
    struct jb_backend *be = jb_backend_init(tc_backend_name(), n_threads);
    if (!be) fprintf(stderr, "backend '%s': %s\n", tc_backend_name(), jb_last_error());
    return be;
}

/* ---- in-memory weights ----------------------------------------------------------------------- */

struct tc_tensor {
    struct jb_tensor t;
    char name[200];
};

struct tc_weights {
    struct tc_tensor *v;
    int64_t n, cap;
    uint64_t rng;
};

struct tc_weights *tc_weights_new(uint64_t seed)
{
    struct tc_weights *w = calloc(1, sizeof *w);
    if (w) w->rng = seed;
    return w;
}

void tc_weights_free(struct tc_weights *w)
{
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++)
        free(w->v[i].t.data);
    free(w->v);
    free(w);
}

static struct jb_tensor *add(struct tc_weights *w,
                             enum jb_dtype type,
                             int n_dims,
                             const int64_t *shape,
                             const char *fmt,
                             va_list ap)
{
    if (w->n == w->cap) {
        int64_t cap          = w->cap ? 2 * w->cap : 256;
        struct tc_tensor *nv = realloc(w->v, (size_t)cap * sizeof *nv);
        if (!nv) return NULL;
        for (int64_t i = 0; i < w->n; i++)
            nv[i].t.name = nv[i].name; /* the names moved with the array */
        w->v   = nv;
        w->cap = cap;
    }
    struct tc_tensor *t = &w->v[w->n];
    memset(t, 0, sizeof *t);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    t->t.type   = type;
    t->t.n_dims = n_dims;
    for (int i = 0; i < n_dims; i++)
        t->t.shape[i] = shape[i];
    t->t.name = t->name;
    t->t.data = jb_aligned_alloc(jb_tensor_nbytes(&t->t) + 64);
    if (!t->t.data) return NULL;
    w->n++;
    return &t->t;
}

struct jb_tensor *tc_weights_add(struct tc_weights *w,
                                 enum jb_dtype type,
                                 int n_dims,
                                 const int64_t *shape,
                                 float scale,
                                 const char *fmt,
                                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct jb_tensor *t = add(w, type, n_dims, shape, fmt, ap);
    va_end(ap);
    if (!t) return NULL;
    const size_t n = (size_t)jb_tensor_nelements(t);
    float *f       = malloc(n * sizeof *f);
    if (!f) return NULL;
    tc_rng_fill(&w->rng, f, n, scale);
    jb_convert_from_f32(type, f, t->data, n);
    free(f);
    return t;
}

struct jb_tensor *tc_weights_add_const(struct tc_weights *w,
                                       int n_dims,
                                       const int64_t *shape,
                                       float value,
                                       const char *fmt,
                                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct jb_tensor *t = add(w, JB_DTYPE_F32, n_dims, shape, fmt, ap);
    va_end(ap);
    if (!t) return NULL;
    float *f = t->data;
    for (int64_t i = 0; i < jb_tensor_nelements(t); i++)
        f[i] = value;
    return t;
}

struct jb_tensor *tc_weights_add_values(struct tc_weights *w,
                                        enum jb_dtype type,
                                        int n_dims,
                                        const int64_t *shape,
                                        const float *values,
                                        const char *fmt,
                                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct jb_tensor *t = add(w, type, n_dims, shape, fmt, ap);
    va_end(ap);
    if (t) jb_convert_from_f32(type, values, t->data, (size_t)jb_tensor_nelements(t));
    return t;
}

static const struct jb_tensor *src_find(void *ctx, const char *name)
{
    struct tc_weights *w = ctx;
    for (int64_t i = 0; i < w->n; i++)
        if (strcmp(w->v[i].name, name) == 0) return &w->v[i].t;
    return NULL;
}

static int64_t src_count(void *ctx)
{
    return ((struct tc_weights *)ctx)->n;
}

static const struct jb_tensor *src_get(void *ctx, int64_t i)
{
    struct tc_weights *w = ctx;
    return i >= 0 && i < w->n ? &w->v[i].t : NULL;
}

struct jb_weights_source tc_weights_source(struct tc_weights *w)
{
    return (
      struct jb_weights_source){ .find = src_find, .count = src_count, .get = src_get, .ctx = w };
}

int64_t tc_weights_count(const struct tc_weights *w)
{
    return w->n;
}

const struct jb_tensor *tc_weights_tensor(const struct tc_weights *w, int64_t i)
{
    return i >= 0 && i < w->n ? &w->v[i].t : NULL;
}

void tc_weights_drop_last(struct tc_weights *w)
{
    if (w->n > 0) free(w->v[--w->n].t.data);
}

bool tc_weights_to_storage(struct tc_weights *w, enum jb_dtype storage)
{
    for (int64_t i = 0; i < w->n; i++) {
        struct jb_tensor *t = &w->v[i].t;
        enum jb_dtype type  = jb_import_tensor_dtype(w->v[i].name, t->n_dims, false, storage);
        if (t->type != JB_DTYPE_F32 || type == JB_DTYPE_F32) continue;
        const int64_t n = jb_tensor_nelements(t);
        void *h         = jb_aligned_alloc((size_t)n * jb_dtype_size(type) + 64);
        if (!h) return false;
        jb_convert_from_f32(type, t->data, h, (size_t)n);
        free(t->data);
        t->data = h;
        t->type = type;
    }
    return true;
}
