/*
 * tests/integration/test_fetch.c - `encore models fetch|list|remove` and --models resolution
 * against a local HTTP server (tests/integration/fetch_server.py on 127.0.0.1; nothing else is
 * contacted) serving the shared fixtures' tiny checkpoints in the released layout
 * (jukebox/models/5b/vqvae.pth.tar, ...):
 *   - a fetch installs a complete set whose four files load; a download cut mid-file resumes
 *     with a Range request; the manifest records the sha256 of what was downloaded;
 *   - a second set shares the VQ-VAE and upsamplers instead of downloading them again;
 *   - --models NAME, --models DIR and an unknown name; remove;
 *   - 404, 500, a corrupted checkpoint, a file the server never finishes, a server that
 *     announces more than it has, and too little disk space: clear errors, no model file left.
 * The tiny fixture models are not one consistent set (their codebooks differ), so "loadable"
 * is checked per file with jb_model_load, and the VQ-VAE by encoding through --models.
 * usage: test_fetch ENCORE FIXTURE_DIR SERVER_PY RIFF   (exit 77 without the fixtures)
 */
#include "encore/engine.h"
#include "test_common.h"

/* paths here are short temporary folders; gcc's worst-case guesses about them are noise */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmp[] = "/tmp/encore-fetch-XXXXXX";
static const char *encore, *server_py;

/* tests/common's reporting under this file's name */
#define check(ok, what) tc_check((ok), "%s", (what))

/* Runs `encore ARGS` with env, output (both streams) into *out (caller frees). */
static int run(const char *env, const char *args, char **out)
{
    char cmd[16384], log[4200];
    snprintf(log, sizeof log, "%s/out.txt", tmp);
    snprintf(cmd, sizeof cmd, "env %s %s %s", env, encore, args);
    return tc_run_logged(cmd, log, out);
}

struct server {
    pid_t pid;
    int port;
    char log[4200];
};

static bool server_start(struct server *s, const char *root, const char *name, const char *extra)
{
    char port_file[4200], cmd[8192];
    snprintf(port_file, sizeof port_file, "%s/%s.port", tmp, name);
    snprintf(s->log, sizeof s->log, "%s/%s.log", tmp, name);
    snprintf(cmd,
             sizeof cmd,
             "exec python3 %s --root %s --port-file %s --log %s %s",
             server_py,
             root,
             port_file,
             s->log,
             extra);
    s->pid = fork();
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && s->pid > 0; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &s->port);
            fclose(f);
            if (ok == 1) return true;
        }
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return false;
}

static void server_stop(struct server *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static bool copy_file(const char *src, const char *dst)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod u+w '%s'", src, dst, dst);
    return system(cmd) == 0;
}

/* A mirror laid out like https://openaipublic.azureedge.net/jukebox/models/... */
static bool make_mirror(const char *fx, const char *mirror)
{
    char a[4200], b[4200];
    snprintf(
      a, sizeof a, "mkdir -p %s/jukebox/models/5b %s/jukebox/models/5b_lyrics", mirror, mirror);
    if (system(a) != 0) return false;
    static const char *const map[][2] = {
        { "vqvae/vqvae.pth.tar", "5b/vqvae.pth.tar" },
        { "upsampler_level_0/prior_level_0.pth.tar", "5b/prior_level_0.pth.tar" },
        { "upsampler_level_1/prior_level_1.pth.tar", "5b/prior_level_1.pth.tar" },
        { "prior_5b/prior_level_2.pth.tar", "5b/prior_level_2.pth.tar" },
        { "prior_5b_lyrics/prior_level_2.pth.tar", "5b_lyrics/prior_level_2.pth.tar" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        snprintf(a, sizeof a, "%s/%s", fx, map[i][0]);
        snprintf(b, sizeof b, "%s/jukebox/models/%s", mirror, map[i][1]);
        if (!copy_file(a, b)) return false;
    }
    return true;
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int n  = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t l = strlen(e->d_name), k = strlen(suffix);
        if (e->d_name[0] != '.' || strcmp(suffix, "*") == 0)
            n += (l >= k && strcmp(e->d_name + l - k, suffix) == 0) ||
                 (strcmp(suffix, "*") == 0 && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."));
        else
            n += l >= k && strcmp(e->d_name + l - k, suffix) == 0;
    }
    if (d) closedir(d);
    return n;
}

static bool loads(const char *path)
{
    struct jb_backend *be = jb_backend_init("cpu", 1);
    struct jb_model *m    = be ? jb_model_load(path, be) : NULL;
    bool ok               = m != NULL;
    if (!ok) printf("  load %s: %s\n", path, jb_last_error());
    jb_model_free(m);
    jb_backend_free(be);
    return ok;
}

static void sha256_of(const char *path, char out[65])
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    out[0]  = '\0';
    if (p) {
        if (fscanf(p, "%64s", out) != 1) out[0] = '\0';
        pclose(p);
    }
}

/* Model folder of one scenario, with no model file and no temporary left in it. */
static bool nothing_left(const char *models, const char *set, const char *file)
{
    char dir[4200], p[4400];
    snprintf(dir, sizeof dir, "%s/%s", models, set);
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return !tc_exists(p) && count_files(dir, ".import") == 0 && count_files(dir, ".link") == 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: test_fetch ENCORE FIXTURE_DIR SERVER_PY RIFF\n");
        return 2;
    }
    encore           = argv[1];
    const char *fx   = argv[2];
    server_py        = argv[3];
    const char *riff = argv[4];
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/vqvae/vqvae.pth.tar", fx);
    if (!tc_exists(probe)) {
        printf("SKIP: fixtures not found at %s (../shared is absent)\n", fx);
        return 77;
    }
    if (system("python3 -c 'import http.server' 2>/dev/null") != 0) {
        printf("SKIP: python3 is not installed\n");
        return 77;
    }
    if (!mkdtemp(tmp)) return 2;
    char mirror[4200], models[4200], env[9000], args[9000], path[4400], path2[4400];
    snprintf(mirror, sizeof mirror, "%s/mirror", tmp);
    snprintf(models, sizeof models, "%s/models", tmp);
    check(make_mirror(fx, mirror), "mirror of the released layout");
    snprintf(env, sizeof env, "ENCORE_MODELS=%s ENCORE_FETCH_RETRY_DELAY=0.02", models);
    char *out = NULL;

    /* ---- a fetch whose first download is cut mid-file ---- */
    struct server s = { 0 };
    check(server_start(&s, mirror, "main", "--cut jukebox/models/5b/vqvae.pth.tar:300000"),
          "test server started on 127.0.0.1");
    snprintf(
      args, sizeof args, "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 5b", s.port);
    check(run(env, args, &out) == 0, "fetch 5b succeeds");
    check(strstr(out, "%]") == NULL && strstr(out, "/s") == NULL,
          "no progress bar when stderr is not a terminal");
    free(out);
    char *log = tc_read_text(s.log);
    check(strstr(log, "GET /jukebox/models/5b/vqvae.pth.tar range=bytes=300000-") != NULL,
          "the cut download resumed with a Range request from byte 300000");
    check(strstr(log, "/jukebox/models/5b/prior_level_2.pth.tar") != NULL,
          "the top prior came from the set's own address");
    free(log);
    static const char *const files[] = {
        "vqvae.gguf", "upsampler_level_0.gguf", "upsampler_level_1.gguf", "prior_level_2.gguf"
    };
    for (int i = 0; i < 4; i++) {
        char what[256];
        snprintf(path, sizeof path, "%s/5b/%s", models, files[i]);
        snprintf(what, sizeof what, "installed %s loads", files[i]);
        check(loads(path), what);
    }
    snprintf(path, sizeof path, "%s/5b/manifest.json", models);
    char *man = tc_read_text(path), sha[65];
    snprintf(path2, sizeof path2, "%s/jukebox/models/5b/vqvae.pth.tar", mirror);
    sha256_of(path2, sha);
    check(sha[0] && strstr(man, sha) != NULL, "manifest holds the sha256 of the VQ-VAE download");
    check(strstr(man, "\"complete\":\ttrue") && strstr(man, "\"dtype\":\t\"f16\"") &&
            strstr(man, "\"set\":\t\"5b\""),
          "manifest: set 5b, f16, complete");
    free(man);
    snprintf(path, sizeof path, "%s/.downloads", models);
    check(count_files(path, "*") == 0, "downloads deleted after import (no --keep)");
    check(run(env, "models list", &out) == 0 && strstr(out, "5b ") && strstr(out, "complete"),
          "models list shows 5b complete");
    free(out);

    /* ---- a second set shares the VQ-VAE and the upsamplers ---- */
    truncate(s.log, 0);
    snprintf(args,
             sizeof args,
             "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 5b_lyrics",
             s.port);
    char env_bar[9100];
    snprintf(env_bar, sizeof env_bar, "%s ENCORE_PROGRESS=1", env);
    check(run(env_bar, args, &out) == 0, "fetch 5b_lyrics succeeds");
    check(strstr(out, "100.0%") && strstr(out, "MB / 2.86 MB") && strstr(out, "/s"),
          "the progress bar shows bytes, total, rate (forced with ENCORE_PROGRESS=1)");
    free(out);
    log = tc_read_text(s.log);
    check(strstr(log, "5b/vqvae") == NULL && strstr(log, "5b/prior_level_0") == NULL &&
            strstr(log, "5b_lyrics/prior_level_2.pth.tar") != NULL,
          "only the 5b_lyrics prior was downloaded; shared files were reused");
    free(log);
    struct stat a, b;
    snprintf(path, sizeof path, "%s/5b/vqvae.gguf", models);
    snprintf(path2, sizeof path2, "%s/5b_lyrics/vqvae.gguf", models);
    check(stat(path, &a) == 0 && stat(path2, &b) == 0 && a.st_ino == b.st_ino,
          "the VQ-VAE file is shared (hard link), not copied");

    /* ---- --models resolution ---- */
    snprintf(args, sizeof args, "encode --models 5b_lyrics %s -o %s/enc", riff, tmp);
    check(run(env, args, &out) == 0, "encode --models 5b_lyrics (installed set by name)");
    free(out);
    snprintf(
      args, sizeof args, "encode --models %s/5b --level 2 %s -o %s/enc2.npy", models, riff, tmp);
    check(run(env, args, &out) == 0, "encode --models FOLDER");
    free(out);
    snprintf(args, sizeof args, "encode --models 1b_lyrics %s -o %s/enc3", riff, tmp);
    check(run(env, args, &out) != 0 && strstr(out, "models fetch") && strstr(out, "5b_lyrics"),
          "an uninstalled set is an error naming the installed ones and how to fetch");
    free(out);

    /* ---- remove ---- */
    check(run(env, "models remove 5b", &out) == 0, "models remove 5b");
    free(out);
    snprintf(path, sizeof path, "%s/5b", models);
    check(!tc_exists(path), "the 5b folder is gone");
    check(loads(path2), "5b_lyrics's shared VQ-VAE still loads after removing 5b");

    /* ---- 404: the mirror has no 1b_lyrics ---- */
    snprintf(args,
             sizeof args,
             "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 1b_lyrics",
             s.port);
    check(run(env, args, &out) != 0 && strstr(out, "404") && strstr(out, "1b_lyrics/prior_level_2"),
          "404 is a clear error naming the address");
    free(out);
    snprintf(path, sizeof path, "%s/1b_lyrics/prior_level_2.gguf", models);
    check(!tc_exists(path), "no model file after a 404");

    /* ---- too little disk space: refused before any download ---- */
    check(run(env, "models remove 5b_lyrics", &out) == 0, "models remove 5b_lyrics");
    free(out);
    truncate(s.log, 0);
    snprintf(env,
             sizeof env,
             "ENCORE_MODELS=%s ENCORE_FETCH_RETRY_DELAY=0.02 ENCORE_FETCH_FREE_BYTES=1000000",
             models);
    snprintf(
      args, sizeof args, "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 5b", s.port);
    check(run(env, args, &out) != 0 && strstr(out, "not enough free space") &&
            strstr(out, "needed"),
          "too little disk space is refused with what is needed");
    free(out);
    log = tc_read_text(s.log);
    check(strstr(log, "GET") == NULL, "nothing was downloaded before the space check");
    free(log);
    snprintf(env, sizeof env, "ENCORE_MODELS=%s ENCORE_FETCH_RETRY_DELAY=0.02", models);
    server_stop(&s);

    /* ---- 500 ---- */
    check(server_start(&s, mirror, "e500", "--status jukebox/models/5b/vqvae.pth.tar:500"),
          "server answering 500 started");
    snprintf(
      args, sizeof args, "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 5b", s.port);
    check(run(env, args, &out) != 0 && strstr(out, "HTTP 500"), "500 is a clear error");
    free(out);
    check(nothing_left(models, "5b", "vqvae.gguf"), "no model file after a 500");
    server_stop(&s);

    /* ---- a corrupted checkpoint (right size, wrong bytes) ---- */
    snprintf(path, sizeof path, "%s/jukebox/models/5b/prior_level_2.pth.tar", mirror);
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 100, SEEK_SET);
        for (int i = 0; i < 4096; i++)
            fputc((i * 7919) & 0xff, f);
        fclose(f);
    }
    check(server_start(&s, mirror, "corrupt", ""), "server with a corrupted prior started");
    snprintf(
      args, sizeof args, "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 5b", s.port);
    check(run(env, args, &out) != 0 && strstr(out, "not a usable") && strstr(out, "sha256"),
          "a corrupted checkpoint is refused with a clear error");
    free(out);
    check(nothing_left(models, "5b", "prior_level_2.gguf"),
          "no prior model file (nor temporary) after the corrupted import");
    check(run(env, "models list", &out) == 0 && strstr(out, "INCOMPLETE"),
          "models list shows the set incomplete");
    free(out);
    snprintf(args, sizeof args, "encode --models 5b %s -o %s/enc4", riff, tmp);
    check(run(env, args, &out) != 0 && strstr(out, "incomplete"),
          "an incomplete set is refused by name");
    free(out);
    server_stop(&s);

    /* ---- a server that never sends the whole file / announces more than it has ---- */
    check(run(env, "models remove 5b", &out) == 0, "models remove (incomplete) 5b");
    free(out);
    check(server_start(&s, mirror, "short", "--always-cut jukebox/models/5b/vqvae.pth.tar:200000"),
          "server cutting every download started");
    snprintf(
      args, sizeof args, "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 5b", s.port);
    check(run(env, args, &out) != 0 && strstr(out, "gave up") && strstr(out, "vqvae.pth.tar"),
          "a download that never completes is refused after retries");
    free(out);
    check(nothing_left(models, "5b", "vqvae.gguf"),
          "no VQ-VAE model file from a truncated download");
    server_stop(&s);
    snprintf(path, sizeof path, "%s/.downloads/jukebox_models_5b_vqvae.pth.tar.part", models);
    unlink(path);
    check(server_start(&s, mirror, "lie", "--lie jukebox/models/5b/vqvae.pth.tar:2000000"),
          "server announcing a wrong size started");
    snprintf(
      args, sizeof args, "models fetch --ckpt-hps --base-url http://127.0.0.1:%d 5b", s.port);
    check(run(env, args, &out) != 0 && strstr(out, "announced"),
          "a file shorter than the server announced is refused");
    free(out);
    check(nothing_left(models, "5b", "vqvae.gguf"), "no VQ-VAE model file from a short download");
    server_stop(&s);

    snprintf(args, sizeof args, "rm -rf %s", tmp);
    if (tc_failed() == 0 && system(args) != 0) printf("note: could not remove %s\n", tmp);
    return tc_summary();
}
