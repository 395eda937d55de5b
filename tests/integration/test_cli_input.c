/*
 * tests/integration/test_cli_input.c - the `encore` command against hostile or mistaken input
 * (issue 10): strict numbers on every flag, the minimum temperature, escaped terminal output,
 * lyrics that are not text, flags that do not apply, audio headers that lie or files cut
 * short, a length limit, outputs that survive a failed write (all candidates or none), and no
 * leak when a model does not load (meaningful under LeakSanitizer); error messages that name
 * their command once ("encore import: ...", never "encore import: import: ...").
 * usage: test_cli_input ENCORE_BINARY MODEL_DIR TEST_DATA_DIR
 */
#include "format/gguf.h"
#include "test_common.h"

#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static char dir[] = "/tmp/encore-input-XXXXXX";
static const char *encore, *models, *data;

/* tests/common's reporting under this file's name */
#define check(ok, what) tc_check((ok), "%s", (what))

/* Runs `encore ARGS` (prefix: shell words before it, e.g. ulimit); both streams into *out. */
static int run_in(const char *prefix, const char *args, char **out)
{
    char cmd[16384], log[4200];
    snprintf(log, sizeof log, "%s/out.txt", dir);
    snprintf(cmd, sizeof cmd, "%s %s %s", prefix, encore, args);
    return tc_run_logged(cmd, log, out);
}

static int run(const char *args, char **out)
{
    return run_in("", args, out);
}

/* Exit status 2 and a message naming `flag`. */
static void refused(const char *args, const char *flag, const char *what)
{
    char *out;
    int rc = run(args, &out);
    check(rc == 2 && strstr(out, flag) != NULL, what);
    free(out);
}

static bool files_equal(const char *a, const char *b)
{
    size_t na, nb;
    char *x = tc_read_file(a, &na), *y = tc_read_file(b, &nb);
    bool eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

static int temporaries_in(const char *d)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c '^\\.' || true", d);
    FILE *p = popen(cmd, "r");
    int n   = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* `encore ARGS` fails with status 1 and prints exactly `want` (the whole output). */
static void says_exactly(const char *env, const char *args, const char *want, const char *what)
{
    char line[16500], log[4200], *out;
    snprintf(line, sizeof line, "env %s %s %s", env, encore, args);
    snprintf(log, sizeof log, "%s/out.txt", dir);
    int rc = tc_run_logged(line, log, &out);
    tc_check(rc == 1 && strcmp(out, want) == 0, "%s (exit %d)", what, rc);
    free(out);
}

/* Each message names its command once: the engine's own module prefix ("import: ...", "models:
 * ...") is not repeated after the command's, and getopt's complaints carry the command's name. */
static void messages_read_once(void)
{
    char args[16384], want[16384];
    snprintf(args,
             sizeof args,
             "import --hps %s/missing.json %s/train_vqvae_zip.pth.tar %s/x.gguf",
             dir,
             data,
             dir);
    snprintf(want, sizeof want, "encore import: cannot open hps file '%s/missing.json'\n", dir);
    says_exactly("", args, want, "import: the engine's 'import:' is not repeated");
    says_exactly("-u ENCORE_MODELS -u HOME -u XDG_DATA_HOME",
                 "models path",
                 "encore models path: neither ENCORE_MODELS, XDG_DATA_HOME nor HOME is set\n",
                 "models path: the engine's 'models:' is not repeated");
    char *out;
    int rc = run("info --bogus", &out);
    check(rc == 2 && strncmp(out, "encore info: unrecognized option '--bogus'\n", 43) == 0,
          "info: getopt's complaint names 'encore info'");
    free(out);
    rc = run("models fetch --bogus", &out);
    check(rc == 2 && strncmp(out, "encore models fetch: unrecognized option '--bogus'\n", 51) == 0,
          "models fetch: getopt's complaint names 'encore models fetch'");
    free(out);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_cli_input ENCORE_BINARY MODEL_DIR TEST_DATA_DIR\n");
        return 2;
    }
    encore = argv[1];
    models = argv[2];
    data   = argv[3];
    if (!mkdtemp(dir)) return 2;
    char riff[4200], args[16384], path[4200], path2[4200];
    char *out;
    snprintf(riff, sizeof riff, "%s/riff.wav", models);

    messages_read_once();

    /* ---- 7: one strict parser for every number ---- */
    snprintf(
      args, sizeof args, "continue %s --seconds 1 --candidates 4294967297 -o %s/o.wav", riff, dir);
    refused(args, "--candidates", "--candidates 4294967297 is refused (not wrapped to 1)");
    snprintf(args, sizeof args, "encode --models %s --level abc %s -o %s/e", models, riff, dir);
    refused(args, "--level", "--level abc is refused (not read as 0)");
    snprintf(
      args, sizeof args, "encode --models %s --threads 4294967297 %s -o %s/e", models, riff, dir);
    refused(args, "--threads", "--threads 4294967297 is refused");
    snprintf(
      args, sizeof args, "decode --models %s --threads 100000 x.npy -o %s/d.wav", models, dir);
    refused(args, "--threads", "--threads 100000 is refused before allocating anything");
    snprintf(
      args, sizeof args, "continue %s --seconds 1 --total-seconds 1e18 -o %s/o.wav", riff, dir);
    refused(args, "--total-seconds", "--total-seconds 1e18 is refused");
    snprintf(args, sizeof args, "upsample %s/t.gguf --candidate 2147483648 -o %s/o.wav", dir, dir);
    refused(args, "--candidate", "--candidate 2147483648 is refused");
    snprintf(args, sizeof args, "continue %s --seconds 5x -o %s/o.wav", riff, dir);
    refused(args, "--seconds", "--seconds 5x (trailing text) is refused");
    snprintf(args, sizeof args, "continue %s --seconds nan -o %s/o.wav", riff, dir);
    refused(args, "--seconds", "--seconds nan is refused");
    snprintf(args, sizeof args, "continue %s --seconds 1 --seed -1 -o %s/o.wav", riff, dir);
    refused(args, "--seed", "--seed -1 is refused");
    snprintf(args, sizeof args, "continue %s --seconds 1 --candidates ' 3' -o %s/o.wav", riff, dir);
    refused(args, "--candidates", "a number with a leading blank is refused");
    snprintf(args, sizeof args, "decode --models %s --chunk -5 x.npy -o %s/d.wav", models, dir);
    refused(args, "--chunk", "--chunk -5 is refused");
    snprintf(args, sizeof args, "encode --models %s --max-seconds 0 %s -o %s/e", models, riff, dir);
    refused(args, "--max-seconds", "--max-seconds 0 is refused");

    /* ---- 8: temperatures below the documented minimum ---- */
    snprintf(args, sizeof args, "continue %s --seconds 1 --temp 1e-45 -o %s/o.wav", riff, dir);
    refused(args, "--temp", "--temp 1e-45 is refused (below the minimum 0.001)");
    snprintf(args, sizeof args, "continue --help");
    check(run(args, &out) == 0 && strstr(out, "0.001"), "--help documents the minimum temperature");
    free(out);

    /* ---- 10: flags that do not apply, lyrics that are not text ---- */
    snprintf(args, sizeof args, "sample --seconds 1 --candidate 2 -o %s/o.wav", dir);
    refused(args, "does not apply", "sample --candidate is an error, not ignored");
    snprintf(args, sizeof args, "upsample %s/t.gguf --seconds 5 -o %s/o.wav", dir, dir);
    refused(args, "does not apply", "upsample --seconds is an error, not ignored");
    snprintf(args, sizeof args, "continue %s --seconds 1 --candidate 2 -o %s/o.wav", riff, dir);
    refused(args, "--take", "continue --candidate without --take is an error");
    snprintf(args, sizeof args, "continue %s --seconds 1 --lyrics %s -o %s/o.wav", riff, dir, dir);
    check(run(args, &out) != 0 && strstr(out, "not a readable file"),
          "--lyrics naming a folder is an error");
    free(out);
    snprintf(path, sizeof path, "%s/nul.txt", dir);
    FILE *f = fopen(path, "wb");
    if (f) fwrite("\0hello world\n", 1, 13, f), fclose(f);
    snprintf(args, sizeof args, "continue %s --seconds 1 --lyrics %s -o %s/o.wav", riff, path, dir);
    check(run(args, &out) != 0 && strstr(out, "NUL"),
          "--lyrics file starting with NUL is an error");
    free(out);

    /* ---- 9: control characters never reach the terminal ---- */
    snprintf(path, sizeof path, "%s/evil.gguf", dir);
    struct jb_gguf_writer *w = jb_gguf_writer_init();
    jb_gguf_writer_set_str(w, "general.name", "evil\x1b]0;pwned\x07\x1b[2J name");
    const char *names[] = { "ok", "bad\x1b[31m\xc2\x9b" }; /* ESC and a C1 CSI */
    jb_gguf_writer_set_arr_str(w, "encore.artists", names, 2);
    bool wrote =
      jb_gguf_writer_begin(w, path) == JB_STATUS_OK && jb_gguf_writer_finish(w) == JB_STATUS_OK;
    jb_gguf_writer_free(w);
    snprintf(args, sizeof args, "info %s", path);
    int rc = run(args, &out);
    check(wrote && rc == 0 && !strchr(out, '\x1b') && !strchr(out, '\x07') &&
            strstr(out, "\\x1b]0;pwned") && strstr(out, "\\xc2\\x9b"),
          "encore info shows GGUF strings with control characters escaped");
    free(out);
    snprintf(
      args,
      sizeof args,
      "continue %s --seconds 1 --levels 2 --artist \"$(printf 'x\\033[31mred\\a')\" -o %s/o.wav",
      riff,
      dir);
    rc = run(args, &out);
    check(rc != 0 && !strchr(out, '\x1b') && !strchr(out, '\a') && strstr(out, "\\x1b[31mred"),
          "an unknown artist is echoed with control characters escaped");
    free(out);

    /* ---- 6: audio whose header lies, a file cut short, a length limit ---- */
    {
        const int n = 44100 * 2;
        float *a    = malloc((size_t)n * sizeof *a);
        for (int i = 0; i < n; i++)
            a[i] = 0.3f * (float)((i % 101) - 50) / 50;
        snprintf(path, sizeof path, "%s/clip.flac", dir);
        check(a && jb_audio_write(path, a, n, 44100) == JB_STATUS_OK, "a 2 s FLAC written");
        free(a);
        size_t len;
        char *bytes = tc_read_file(path, &len);
        /* STREAMINFO total samples (36 bits at byte 21, low nibble, .. byte 25) := 2^34 */
        if (bytes && len > 26 && memcmp(bytes, "fLaC", 4) == 0) {
            bytes[21] = (char)((bytes[21] & 0xf0) | 0x04);
            bytes[22] = bytes[23] = bytes[24] = bytes[25] = 0;
            snprintf(path2, sizeof path2, "%s/liar.flac", dir);
            f = fopen(path2, "wb");
            if (f) fwrite(bytes, 1, len, f), fclose(f);
            snprintf(args,
                     sizeof args,
                     "encode --models %s --level 2 %s -o %s/liar.npy",
                     models,
                     path2,
                     dir);
            rc = run(args, &out);
            check(rc == 0 || (rc == 1 && strstr(out, "audio")),
                  "a FLAC claiming 2^34 frames is read by what it holds (no 64 GiB allocation)");
            free(out);
            /* the same file cut in half */
            snprintf(path2, sizeof path2, "%s/half.flac", dir);
            f = fopen(path2, "wb");
            if (f) fwrite(bytes, 1, len / 2, f), fclose(f);
            free(bytes);
            bytes = tc_read_file(path, &len);
            f     = fopen(path2, "wb");
            if (f) fwrite(bytes, 1, len / 2, f), fclose(f);
            snprintf(args,
                     sizeof args,
                     "encode --models %s --level 2 %s -o %s/half.npy",
                     models,
                     path2,
                     dir);
            rc = run(args, &out);
            check(rc == 0 && strstr(out, "ends early") && strstr(out, "of the 88200 frames"),
                  "a FLAC cut in half encodes with a warning saying how much was read");
            free(out);
        } else {
            check(false, "the FLAC has a STREAMINFO block");
        }
        free(bytes);
        snprintf(
          args, sizeof args, "encode --models %s --max-seconds 1 %s -o %s/lim", models, path, dir);
        check(run(args, &out) == 1 && strstr(out, "longer than the limit"),
              "--max-seconds refuses longer audio");
        free(out);
    }

    /* ---- 4/5: a failed write leaves the old outputs byte for byte ---- */
    snprintf(
      args, sizeof args, "encode --models %s --level 2 %s -o %s/riff2.npy", models, riff, dir);
    check(run(args, &out) == 0, "codes for the write tests");
    free(out);
    snprintf(path, sizeof path, "%s/out/take.wav", dir);
    snprintf(args, sizeof args, "mkdir -p %s/out", dir);
    if (system(args) != 0) return 2;
    f = fopen(path, "wb");
    if (f) fputs("RIFF an earlier good take, not to be lost\n", f), fclose(f);
    snprintf(path2, sizeof path2, "%s/take.orig", dir);
    f = fopen(path2, "wb");
    if (f) fputs("RIFF an earlier good take, not to be lost\n", f), fclose(f);
    /* RLIMIT_FSIZE (ulimit -f, 512-byte blocks) makes every write past 8 KiB fail with EFBIG, as
     * a full disk would; SIGXFSZ is ignored so the write call returns the error */
    const char *small_disk = "trap '' XFSZ; ulimit -f 16;";
    snprintf(
      args, sizeof args, "decode --models %s --level 2 %s/riff2.npy -o %s", models, dir, path);
    rc = run_in(small_disk, args, &out);
    check(rc == 1 && strstr(out, "write"), "decode onto a full disk fails with a message");
    free(out);
    check(files_equal(path, path2), "the existing output is byte-for-byte unchanged");
    snprintf(path2, sizeof path2, "%s/out", dir);
    check(temporaries_in(path2) == 0, "no temporary left beside it");
    rc = run(args, &out);
    check(rc == 0, "the same decode succeeds with room to write");
    free(out);
    struct jb_audio got = { 0 };
    check(jb_audio_read(path, 44100, 0, &got) == JB_STATUS_OK && got.n_samples > 0,
          "and replaces the file whole");
    jb_audio_free(&got);

    /* several candidates: all written or none replaced */
    snprintf(path, sizeof path, "%s/out/c-1.wav", dir);
    snprintf(path2, sizeof path2, "%s/out/c-2.wav", dir);
    f = fopen(path, "wb");
    if (f) fputs("old one", f), fclose(f);
    f = fopen(path2, "wb");
    if (f) fputs("old two", f), fclose(f);
    snprintf(args,
             sizeof args,
             "continue %s --models %s --seconds 1 --levels 2 --candidates 2 -o %s/out/c.wav",
             riff,
             models,
             dir);
    rc = run_in(small_disk, args, &out);
    free(out);
    size_t l1, l2;
    char *o1 = tc_read_file(path, &l1), *o2 = tc_read_file(path2, &l2);
    check(rc == 1 && o1 && o2 && strcmp(o1, "old one") == 0 && strcmp(o2, "old two") == 0,
          "a failed 2-candidate run leaves both old outputs as they were");
    free(o1);
    free(o2);
    snprintf(path2, sizeof path2, "%s/out", dir);
    check(temporaries_in(path2) == 0, "no temporaries left by the failed candidates");

    /* ---- 11: no leak when the model does not load (LeakSanitizer exits 23 otherwise) ---- */
    snprintf(args, sizeof args, "encode -m /nonexistent/vqvae.gguf %s -o %s/n", riff, dir);
    check(run(args, &out) == 1, "encode with a missing model: status 1, nothing leaked");
    free(out);
    snprintf(
      args, sizeof args, "decode -m /nonexistent/vqvae.gguf %s/riff2.npy -o %s/n.wav", dir, dir);
    check(run(args, &out) == 1, "decode with a missing model: status 1, nothing leaked");
    free(out);
    snprintf(args, sizeof args, "encode --models /nonexistent %s -o %s/n", riff, dir);
    check(run(args, &out) == 1 && strstr(out, "/nonexistent"),
          "--models /nonexistent is a clear error");
    free(out);

    snprintf(args, sizeof args, "rm -rf %s", dir);
    if (tc_failed() == 0 && system(args) != 0) printf("note: could not remove %s\n", dir);
    return tc_summary();
}
