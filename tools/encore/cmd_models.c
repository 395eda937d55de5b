/*
 * tools/encore/cmd_models.c - `encore models fetch|list|remove|path`: installs OpenAI's released
 * Jukebox checkpoints as Encore model sets.
 *
 * A set (5b, 5b_lyrics, 1b_lyrics) is one folder under the models root (jb_models_root) with the
 * four files jb_session_load reads and a manifest.json (set, source addresses, sizes, sha256 of
 * each download, dtype, date). The checkpoints come from the addresses the reference downloads
 * from (jukebox/hparams.py: REMOTE_PREFIX + jukebox/models/...); the VQ-VAE and the upsamplers
 * are the same for every set, so a file another installed set already has (same address, same
 * dtype) is hard-linked instead of downloaded again. Downloads go to ROOT/.downloads (resumable
 * .part files) and are deleted after import unless --keep.
 */
#include "args.h"
#include "cli.h"
#include "download.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BASE_URL "https://openaipublic.azureedge.net/"

static const char *const set_names[] = { "5b", "5b_lyrics", "1b_lyrics" };

struct set_file {
    const char *file; /* in the set folder */
    const char *kind; /* jb_import kind */
    char remote[128]; /* path below the base address */
    bool shared;      /* the same for every set */
};

/* The four checkpoints of a set, as jukebox/make_models.py's MODELS table and hparams.py's
 * restore_* addresses name them. */
static void set_files_of(const char *set, struct set_file f[4], char prior_kind[32])
{
    snprintf(prior_kind, 32, "prior_%s", set);
    f[0] = (struct set_file){ "vqvae.gguf", "vqvae", "jukebox/models/5b/vqvae.pth.tar", true };
    f[1] = (struct set_file){ "upsampler_level_0.gguf",
                              "upsampler_level_0",
                              "jukebox/models/5b/prior_level_0.pth.tar",
                              true };
    f[2] = (struct set_file){ "upsampler_level_1.gguf",
                              "upsampler_level_1",
                              "jukebox/models/5b/prior_level_1.pth.tar",
                              true };
    f[3] = (struct set_file){ "prior_level_2.gguf", prior_kind, "", false };
    snprintf(f[3].remote, sizeof f[3].remote, "jukebox/models/%s/prior_level_2.pth.tar", set);
}

static bool known_set(const char *name)
{
    for (size_t i = 0; i < sizeof set_names / sizeof set_names[0]; i++)
        if (strcmp(name, set_names[i]) == 0) return true;
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* small helpers                                                                             */

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
}

static bool mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

static void human(double bytes, char *buf, size_t len)
{
    const char *unit[] = { "B", "KB", "MB", "GB", "TB" };
    int u              = 0;
    while (bytes >= 1000 && u < 4)
        bytes /= 1000, u++;
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20); /* a manifest is a few hundred bytes */
    size_t n  = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!buf) return NULL;
    buf[n]   = '\0';
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    return j;
}

/* Atomic write of a small text file: temporary beside it, fsync, rename. */
static bool write_text_atomic(const char *path, const char *text)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return false;
    (void)fchmod(fd, 0644);
    size_t n = strlen(text);
    bool ok  = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    ok &= close(fd) == 0;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    return ok;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The manifest entry for `file` in a set manifest, or NULL. */
static cJSON *manifest_entry(const cJSON *m, const char *file)
{
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(m, "files");
    const cJSON *e;
    cJSON_ArrayForEach(e, files)
    {
        const char *f = str_of(e, "file");
        if (f && strcmp(f, file) == 0) return (cJSON *)e;
    }
    return NULL;
}

static void now_iso(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool stop_requested(void *user)
{
    (void)user;
    struct jb_callbacks cb = cli_callbacks();
    return cb.should_stop && cb.should_stop(cb.user);
}

/* ---------------------------------------------------------------------------------------- */
/* fetch                                                                                      */

static void fetch_usage(FILE *out)
{
    fprintf(out,
            "usage: encore models fetch [options] SET\n"
            "\n"
            "Downloads OpenAI's released Jukebox checkpoints of SET (5b, 5b_lyrics or 1b_lyrics:\n"
            "the VQ-VAE, the two upsamplers and the top prior) from the addresses the original\n"
            "code uses, imports them into the models folder and deletes the downloads. An\n"
            "interrupted fetch resumes where it stopped when run again; files another installed\n"
            "set already has are shared, not downloaded again.\n"
            "\n"
            "  --dtype T        stored weights: f16 (default), bf16 or f32 (twice the size)\n"
            "  --keep           keep the downloaded checkpoints (in MODELS/.downloads)\n"
            "  --base-url URL   a mirror laid out like the original (default %s)\n"
            "  --ids DIR        folder with v2_/v3_artist_ids.txt and _genre_ids.txt (default:\n"
            "                   $ENCORE_IDS_DIR, else what import picks for the kind)\n"
            "  --ckpt-hps       import with the hyper-parameters stored in each checkpoint\n"
            "  --hps FILE.json  hyper-parameters overriding the presets, for every file imported\n"
            "  -h, --help       this text\n"
            "\n"
            "Models folder: $ENCORE_MODELS, else $XDG_DATA_HOME/encore/models, else\n"
            "~/.local/share/encore/models. Free space is checked before anything is downloaded\n"
            "(ENCORE_FETCH_FREE_BYTES pretends another amount, for tests).\n",
            DEFAULT_BASE_URL);
}

struct fetch_opts {
    enum jb_dtype dtype;
    bool keep, ckpt_hps;
    const char *base_url, *ids_dir, *hps;
};

enum action { ACT_SKIP, ACT_LINK, ACT_IMPORT_KEPT, ACT_DOWNLOAD };

struct plan_item {
    struct set_file f;
    enum action act;
    char url[1024];
    char ckpt[4200]; /* ROOT/.downloads/... */
    char dst[4200];  /* SET/file */
    char link_src[4200];
    int64_t size; /* download size (server), -1 unknown */
    int64_t have; /* bytes already in the .part or kept file */
    cJSON *reuse; /* (LINK) the other set's manifest entry, borrowed */
};

static void ids_for(const struct fetch_opts *fo,
                    const char *kind,
                    struct jb_import_params *p,
                    char *a,
                    char *g,
                    size_t len)
{
    const char *dir = fo->ids_dir ? fo->ids_dir : getenv("ENCORE_IDS_DIR");
    if (!dir || !*dir || strcmp(kind, "vqvae") == 0) return;
    const char *v = strcmp(kind, "prior_1b_lyrics") == 0 ? "v3" : "v2";
    snprintf(a, len, "%s/%s_artist_ids.txt", dir, v);
    snprintf(g, len, "%s/%s_genre_ids.txt", dir, v);
    p->artist_ids_path = a;
    p->genre_ids_path  = g;
}

/* Looks through the other installed sets for `remote` imported with `dtype`. */
static cJSON *find_shared(const char *root,
                          const char *set,
                          const char *remote,
                          const char *dtype,
                          const char *file,
                          char *src,
                          size_t len,
                          cJSON **owner)
{
    DIR *d = opendir(root);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, set) == 0) continue;
        char mp[4200];
        if (snprintf(mp, sizeof mp, "%s/%s/manifest.json", root, e->d_name) >= (int)sizeof mp)
            continue;
        cJSON *m      = read_json(mp);
        cJSON *x      = m ? manifest_entry(m, file) : NULL;
        const char *u = x ? str_of(x, "path") : NULL, *t = m ? str_of(m, "dtype") : NULL;
        if (snprintf(src, len, "%s/%s/%s", root, e->d_name, file) >= (int)len) {
            cJSON_Delete(m);
            continue;
        }
        if (u && t && strcmp(u, remote) == 0 && strcmp(t, dtype) == 0 && file_size(src) > 0) {
            closedir(d);
            *owner = m;
            return x;
        }
        cJSON_Delete(m);
    }
    if (d) closedir(d);
    return NULL;
}

static bool link_or_copy(const char *src, const char *dst)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.link", dst);
    unlink(tmp);
    if (link(src, tmp) == 0) return rename(tmp, dst) == 0 || (unlink(tmp), false);
    /* another file system: copy */
    FILE *in = fopen(src, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
    bool ok = in && out;
    char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in) && fflush(out) == 0 && fsync(fileno(out)) == 0;
    if (in) fclose(in);
    if (out) ok &= fclose(out) == 0;
    ok = ok && rename(tmp, dst) == 0;
    if (!ok) unlink(tmp);
    return ok;
}

static int cmd_fetch(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dtype", required_argument, 0, 't' },    { "keep", no_argument, 0, 'k' },
        { "base-url", required_argument, 0, 'b' }, { "ids", required_argument, 0, 'i' },
        { "ckpt-hps", no_argument, 0, 'c' },       { "hps", required_argument, 0, 'p' },
        { "help", no_argument, 0, 'h' },           { 0, 0, 0, 0 }
    };
    struct fetch_opts fo = { .dtype = JB_DTYPE_F16, .base_url = DEFAULT_BASE_URL };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!jb_dtype_parse(optarg, &fo.dtype) || fo.dtype == JB_DTYPE_I32) {
                fprintf(stderr, "encore models fetch: --dtype must be f16, bf16 or f32\n");
                return 2;
            }
            break;
        case 'k':
            fo.keep = true;
            break;
        case 'b':
            fo.base_url = optarg;
            break;
        case 'i':
            fo.ids_dir = optarg;
            break;
        case 'c':
            fo.ckpt_hps = true;
            break;
        case 'p':
            fo.hps = optarg;
            break;
        case 'h':
            fetch_usage(stdout);
            return 0;
        default:
            fetch_usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fetch_usage(stderr);
        return 2;
    }
    const char *set = argv[optind];
    if (!known_set(set)) {
        char shown[256];
        fprintf(stderr,
                "encore models fetch: unknown set '%s' (5b, 5b_lyrics or 1b_lyrics)\n",
                cli_sanitize(set, shown, sizeof shown));
        return 2;
    }
    if (strncmp(fo.base_url, "http://", 7) != 0 && strncmp(fo.base_url, "https://", 8) != 0) {
        fprintf(stderr, "encore models fetch: --base-url must start with http:// or https://\n");
        return 2;
    }
    const char *dtype = jb_dtype_name(fo.dtype);

    char root[4096], set_dir[4200], dl_dir[4200], lock_path[4200], mpath[4300];
    if (jb_models_root(root, sizeof root)) return cli_error("models fetch");
    snprintf(set_dir, sizeof set_dir, "%s/%s", root, set);
    snprintf(dl_dir, sizeof dl_dir, "%s/.downloads", root);
    snprintf(lock_path, sizeof lock_path, "%s/.lock", root);
    snprintf(mpath, sizeof mpath, "%s/manifest.json", set_dir);
    if (!mkdir_p(set_dir) || !mkdir_p(dl_dir)) {
        fprintf(stderr, "encore models fetch: cannot create %s: %s\n", set_dir, strerror(errno));
        return 1;
    }
    int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "encore models fetch: another fetch is running in %s\n", root);
        if (lock_fd >= 0) close(lock_fd);
        return 1;
    }

    int rc = 1;
    struct set_file files[4];
    char prior_kind[32];
    set_files_of(set, files, prior_kind);
    struct plan_item items[4];
    cJSON *owners[4] = { 0 };
    memset(items, 0, sizeof items);
    cJSON *manifest = read_json(mpath);
    if (manifest && (!str_of(manifest, "dtype") || strcmp(str_of(manifest, "dtype"), dtype) != 0)) {
        cJSON_Delete(manifest); /* another dtype: everything is imported again */
        manifest = NULL;
    }
    if (!manifest) {
        manifest = cJSON_CreateObject();
        cJSON_AddStringToObject(manifest, "set", set);
        cJSON_AddStringToObject(manifest, "kind", prior_kind);
        cJSON_AddStringToObject(manifest, "dtype", dtype);
        cJSON_AddBoolToObject(manifest, "complete", false);
        cJSON_AddItemToObject(manifest, "files", cJSON_CreateArray());
    }
    struct dl_options dlo = dl_options_default();
    dlo.should_stop       = stop_requested;
    dl_global_init();

    /* 1. what each file needs */
    int64_t n_bytes_left = 0;
    for (int i = 0; i < 4; i++) {
        struct plan_item *it = &items[i];
        it->f                = files[i];
        const char *slash    = fo.base_url[strlen(fo.base_url) - 1] == '/' ? "" : "/";
        snprintf(it->url, sizeof it->url, "%s%s%s", fo.base_url, slash, it->f.remote);
        char flat[128];
        snprintf(flat, sizeof flat, "%s", it->f.remote);
        for (char *p = flat; *p; p++)
            if (*p == '/') *p = '_';
        if (snprintf(it->ckpt, sizeof it->ckpt, "%s/%s", dl_dir, flat) >= (int)sizeof it->ckpt ||
            snprintf(it->dst, sizeof it->dst, "%s/%s", set_dir, it->f.file) >=
              (int)sizeof it->dst) {
            fprintf(stderr, "encore models fetch: the models folder path is too long\n");
            goto done;
        }
        it->size           = -1;
        const cJSON *mine  = manifest_entry(manifest, it->f.file);
        const char *mine_u = mine ? str_of(mine, "path") : NULL;
        if (mine_u && strcmp(mine_u, it->f.remote) == 0 && file_size(it->dst) > 0) {
            it->act = ACT_SKIP;
            continue;
        }
        if (it->f.shared && (it->reuse = find_shared(root,
                                                     set,
                                                     it->f.remote,
                                                     dtype,
                                                     it->f.file,
                                                     it->link_src,
                                                     sizeof it->link_src,
                                                     &owners[i]))) {
            it->act = ACT_LINK;
            continue;
        }
        if (file_size(it->ckpt) > 0) {
            it->act  = ACT_IMPORT_KEPT;
            it->have = file_size(it->ckpt);
            continue;
        }
        it->act = ACT_DOWNLOAD;
        char part[4300];
        snprintf(part, sizeof part, "%s.part", it->ckpt);
        it->have = file_size(part) > 0 ? file_size(part) : 0;
        char err[1024];
        if (!dl_probe(it->url, &dlo, &it->size, err, sizeof err)) {
            fprintf(stderr, "encore models fetch: %s\n", err);
            goto done;
        }
        if (it->size >= 0 && it->have > it->size) it->have = 0;
        n_bytes_left += it->size >= 0 ? it->size - it->have : 0;
    }

    /* 2. free space, before anything is written */
    {
        double left = 0, largest_full = 0, models = 0, kept = 0;
        const double per_byte = fo.dtype == JB_DTYPE_F32 ? 2.0 : 1.0;
        for (int i = 0; i < 4; i++) {
            const struct plan_item *it = &items[i];
            if (it->act != ACT_DOWNLOAD && it->act != ACT_IMPORT_KEPT) continue;
            double full =
              it->act == ACT_DOWNLOAD ? (double)(it->size > 0 ? it->size : 0) : (double)it->have;
            if (it->act == ACT_DOWNLOAD) left += full - (double)it->have;
            if (full > largest_full) largest_full = full;
            models += full * per_byte;
            kept += full;
        }
        /* with --keep every checkpoint stays; otherwise at most one is on disk at a time
         * (plus the .part files already there, counted in full - have) */
        double need = models + (fo.keep ? left : (largest_full < left ? largest_full : left)) +
                      64e6; /* headroom: manifests, temporaries, the file system */
        struct statvfs vfs;
        double avail = statvfs(root, &vfs) == 0 ? (double)vfs.f_bavail * (double)vfs.f_frsize : -1;
        const char *force = getenv("ENCORE_FETCH_FREE_BYTES");
        if (force && *force) avail = strtod(force, NULL);
        (void)kept;
        if (left + models > 0 && avail >= 0 && avail < need) {
            char a[32], b[32], d[32], m[32];
            human(need, a, sizeof a);
            human(avail, b, sizeof b);
            human(left, d, sizeof d);
            human(models, m, sizeof m);
            fprintf(stderr,
                    "encore models fetch: not enough free space in %s: %s needed (%s to download, "
                    "up to %s of %s model files, one checkpoint at a time%s), %s free\n",
                    root,
                    a,
                    d,
                    m,
                    dtype,
                    fo.keep ? " - all kept with --keep" : "",
                    b);
            goto done;
        }
        char d[32];
        human((double)n_bytes_left, d, sizeof d);
        fprintf(
          stderr, "encore models fetch: %s (%s) into %s: %s to download\n", set, dtype, set_dir, d);
    }

    /* 3. each file: link, or download + hash + import */
    for (int i = 0; i < 4; i++) {
        struct plan_item *it = &items[i];
        cJSON *files_arr     = cJSON_GetObjectItemCaseSensitive(manifest, "files");
        if (it->act == ACT_SKIP) {
            fprintf(stderr, "encore models fetch: %s: already installed\n", it->f.file);
            continue;
        }
        /* the old entry goes; a new one is added once the file is in place */
        for (int k = cJSON_GetArraySize(files_arr) - 1; k >= 0; k--) {
            const char *f = str_of(cJSON_GetArrayItem(files_arr, k), "file");
            if (f && strcmp(f, it->f.file) == 0) cJSON_DeleteItemFromArray(files_arr, k);
        }
        cJSON *entry = NULL;
        if (it->act == ACT_LINK) {
            if (!link_or_copy(it->link_src, it->dst)) {
                fprintf(stderr,
                        "encore models fetch: cannot share %s into %s: %s\n",
                        it->link_src,
                        it->dst,
                        strerror(errno));
                goto done;
            }
            entry = cJSON_Duplicate(it->reuse, true);
            fprintf(stderr,
                    "encore models fetch: %s: shared with the installed %s\n",
                    it->f.file,
                    it->link_src);
        } else {
            char err[1024], sha[65];
            if (it->act == ACT_DOWNLOAD) {
                int64_t resumed = 0;
                dlo.label       = it->f.remote + strlen("jukebox/models/");
                if (it->have > 0)
                    fprintf(stderr,
                            "encore models fetch: resuming %s at %lld bytes\n",
                            it->url,
                            (long long)it->have);
                else
                    fprintf(stderr, "encore models fetch: downloading %s\n", it->url);
                if (!dl_fetch(it->url, it->ckpt, it->size, &dlo, &resumed, err, sizeof err)) {
                    fprintf(stderr, "encore models fetch: %s\n", err);
                    goto done;
                }
            }
            int64_t got = file_size(it->ckpt);
            if (!dl_sha256_file(it->ckpt, sha, err, sizeof err)) {
                fprintf(stderr, "encore models fetch: %s\n", err);
                goto done;
            }
            char a_ids[4200], g_ids[4200];
            struct jb_import_params ip = { .src_path      = it->ckpt,
                                           .dst_path      = it->dst,
                                           .kind          = it->f.kind,
                                           .storage       = fo.dtype,
                                           .hps_json_path = fo.hps,
                                           .use_ckpt_hps  = fo.ckpt_hps };
            ids_for(&fo, it->f.kind, &ip, a_ids, g_ids, sizeof a_ids);
            fprintf(stderr, "encore models fetch: importing %s as %s\n", it->f.remote, it->f.file);
            struct jb_callbacks cb = cli_callbacks();
            enum jb_status st      = jb_import(&ip, &cb);
            cli_progress_done();
            if (st == JB_STATUS_ERR_CANCELLED) {
                fprintf(stderr,
                        "encore models fetch: interrupted; the download is kept as %s for the "
                        "next run\n",
                        it->ckpt);
                rc = 130;
                goto done;
            }
            if (st) {
                fprintf(stderr,
                        "encore models fetch: %s (sha256 %s) is not a usable %s checkpoint: %s\n",
                        it->url,
                        sha,
                        it->f.kind,
                        jb_last_error());
                if (st == JB_STATUS_ERR_FORMAT && !fo.keep) {
                    unlink(it->ckpt); /* damaged: the next run downloads it again */
                    fprintf(stderr, "encore models fetch: the damaged download was removed\n");
                } else {
                    fprintf(stderr, "encore models fetch: the download is kept as %s\n", it->ckpt);
                }
                goto done;
            }
            if (!fo.keep) unlink(it->ckpt);
            entry = cJSON_CreateObject();
            cJSON_AddStringToObject(entry, "file", it->f.file);
            cJSON_AddStringToObject(entry, "kind", it->f.kind);
            cJSON_AddStringToObject(entry, "url", it->url);
            cJSON_AddStringToObject(entry, "path", it->f.remote); /* same on every mirror */
            cJSON_AddNumberToObject(entry, "download_bytes", (double)got);
            cJSON_AddStringToObject(entry, "sha256", sha);
            char date[32];
            now_iso(date, sizeof date);
            cJSON_AddStringToObject(entry, "date", date);
        }
        cJSON_DeleteItemFromObject(entry, "model_bytes");
        cJSON_AddNumberToObject(entry, "model_bytes", (double)file_size(it->dst));
        cJSON_AddItemToArray(files_arr, entry);
        char *text = cJSON_Print(manifest);
        bool ok    = text && write_text_atomic(mpath, text);
        free(text);
        if (!ok) {
            fprintf(stderr, "encore models fetch: cannot write %s\n", mpath);
            goto done;
        }
    }

    /* 4. complete */
    {
        char date[32];
        now_iso(date, sizeof date);
        cJSON_DeleteItemFromObject(manifest, "complete");
        cJSON_AddBoolToObject(manifest, "complete", true);
        cJSON_DeleteItemFromObject(manifest, "date");
        cJSON_AddStringToObject(manifest, "date", date);
        cJSON_DeleteItemFromObject(manifest, "encore_version");
        cJSON_AddStringToObject(manifest, "encore_version", ENCORE_VERSION);
        char *text = cJSON_Print(manifest);
        bool ok    = text && write_text_atomic(mpath, text);
        free(text);
        if (!ok) {
            fprintf(stderr, "encore models fetch: cannot write %s\n", mpath);
            goto done;
        }
    }
    fprintf(stderr, "encore models fetch: %s is installed; use it with --models %s\n", set, set);
    rc = 0;

done:
    if (rc != 0) rmdir(set_dir); /* only if the failed fetch left it empty */
    for (int i = 0; i < 4; i++)
        cJSON_Delete(owners[i]);
    cJSON_Delete(manifest);
    dl_global_cleanup();
    close(lock_fd);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* list, remove, path                                                                        */

static const char *const model_files[] = { "vqvae.gguf",
                                           "upsampler_level_0.gguf",
                                           "upsampler_level_1.gguf",
                                           "prior_level_2.gguf" };

static int cmd_list(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: encore models list\n\nLists the installed model sets: name, kind, "
               "dtype, size on disk and whether the set is complete.\n");
        return strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? 0 : 2;
    }
    char root[4096];
    if (jb_models_root(root, sizeof root)) return cli_error("models list");
    DIR *d = opendir(root);
    printf("models folder: %s\n", root);
    printf("%-12s %-18s %-6s %10s  %s\n", "SET", "KIND", "DTYPE", "SIZE", "STATE");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char dir[4200], mp[4300];
        if (snprintf(dir, sizeof dir, "%s/%s", root, e->d_name) >= (int)sizeof dir) continue;
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        snprintf(mp, sizeof mp, "%s/manifest.json", dir);
        cJSON *m     = read_json(mp);
        int present  = 0;
        double bytes = 0;
        for (int i = 0; i < 4; i++) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, model_files[i]);
            int64_t sz = file_size(p);
            if (sz > 0) present++, bytes += (double)sz;
        }
        bool complete =
          present == 4 && m && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "complete"));
        char size[32], name[256], kind[64], dtype[32];
        human(bytes, size, sizeof size);
        cli_sanitize(e->d_name, name, sizeof name);
        cli_sanitize(m && str_of(m, "kind") ? str_of(m, "kind") : "?", kind, sizeof kind);
        cli_sanitize(m && str_of(m, "dtype") ? str_of(m, "dtype") : "?", dtype, sizeof dtype);
        char state[64];
        if (complete)
            snprintf(state, sizeof state, "complete");
        else
            snprintf(state, sizeof state, "INCOMPLETE (%d of 4 files)", present);
        printf("%-12s %-18s %-6s %10s  %s\n", name, kind, dtype, size, state);
        cJSON_Delete(m);
        n++;
    }
    if (d) closedir(d);
    if (n == 0)
        printf("(none: `encore models fetch 5b_lyrics` installs one)\n");
    else
        printf("(files shared between sets are stored once but counted in each)\n");
    return 0;
}

static int remove_set(const char *dir, const char *shown, const char *root);

static int cmd_remove(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: encore models remove SET\n\nDeletes an installed model set (files shared "
                "with other sets stay with them).\n");
        return argc == 2 ? 0 : 2;
    }
    const char *set = argv[1];
    char shown[256];
    cli_sanitize(set, shown, sizeof shown);
    if (!*set || strchr(set, '/') || set[0] == '.') {
        fprintf(stderr, "encore models remove: '%s' is not a set name\n", shown);
        return 2;
    }
    char root[4096], dir[4200];
    if (jb_models_root(root, sizeof root)) return cli_error("models remove");
    snprintf(dir, sizeof dir, "%s/%s", root, set);
    char lock_path[4200];
    snprintf(lock_path, sizeof lock_path, "%s/.lock", root);
    int lock_fd = open(lock_path, O_RDWR | O_CLOEXEC);
    if (lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(
          stderr, "encore models remove: a fetch is running in %s; try again after it\n", root);
        close(lock_fd);
        return 1;
    }
    int rc = remove_set(dir, shown, root);
    if (lock_fd >= 0) close(lock_fd);
    return rc;
}

static int remove_set(const char *dir, const char *shown, const char *root)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "encore models remove: no set '%s' in %s\n", shown, root);
        return 1;
    }
    /* only what fetch writes: the model files, the manifest, and temporaries of either */
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        bool ours =
          strcmp(e->d_name, "manifest.json") == 0 || strncmp(e->d_name, "manifest.json.", 14) == 0;
        for (int i = 0; i < 4; i++) {
            size_t n = strlen(model_files[i]);
            ours |= strncmp(e->d_name, model_files[i], n) == 0; /* file, .import, .link */
            ours |= e->d_name[0] == '.' && strncmp(e->d_name + 1, model_files[i], n) == 0;
        }
        if (!ours) continue;
        char p[4500];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    if (rmdir(dir) != 0) {
        fprintf(stderr,
                "encore models remove: removed the model files, but %s holds other files: kept\n",
                dir);
        return 1;
    }
    fprintf(stderr, "encore models remove: removed %s\n", dir);
    return 0;
}

static void models_usage(FILE *out)
{
    fprintf(out,
            "usage: encore models <fetch|list|remove|path> ...\n"
            "\n"
            "  fetch SET    download and install a released model set (5b, 5b_lyrics, 1b_lyrics)\n"
            "  list         installed sets: kind, dtype, size, complete or not\n"
            "  remove SET   delete an installed set\n"
            "  path         print the models folder\n"
            "\n"
            "Installed sets are used by name: encore continue --models 5b_lyrics ...\n");
}

int cmd_models(int argc, char **argv)
{
    if (argc < 2) {
        models_usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    /* getopt names the program by argv[0]: "encore models fetch: unrecognized option ..." */
    static char prog[64];
    snprintf(prog, sizeof prog, "encore models %.20s", sub);
    argv[1] = prog;
    if (strcmp(sub, "fetch") == 0) return cmd_fetch(argc - 1, argv + 1);
    if (strcmp(sub, "list") == 0) return cmd_list(argc - 1, argv + 1);
    if (strcmp(sub, "remove") == 0) return cmd_remove(argc - 1, argv + 1);
    if (strcmp(sub, "path") == 0) {
        char root[4096];
        if (jb_models_root(root, sizeof root)) return cli_error("models path");
        printf("%s\n", root);
        return 0;
    }
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        models_usage(stdout);
        return 0;
    }
    char shown[256];
    fprintf(
      stderr, "encore models: unknown subcommand '%s'\n\n", cli_sanitize(sub, shown, sizeof shown));
    models_usage(stderr);
    return 2;
}
