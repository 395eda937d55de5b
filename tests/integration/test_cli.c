/*
 * tests/integration/test_cli.c - the `encore` command end to end on the bundled default model:
 * encode the bundled riff at every level, decode each level back, and check that the audio has
 * the right length; plus the CLI's error paths (missing file, bad level, odd input).
 * usage: test_cli ENCORE_BINARY MODEL_DIR
 */
#include "encore/engine.h"
#include "test_common.h"

#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* tests/common's reporting under this file's name */
#define check(ok, what) tc_check((ok), "%s", (what))
#define run tc_run

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_cli ENCORE_BINARY MODEL_DIR\n");
        return 2;
    }
    const char *encore = argv[1], *models = argv[2];
    char dir[] = "/tmp/encore-cli-XXXXXX", cmd[16384], riff[4096], path[4096];
    if (!mkdtemp(dir)) return 2;
    snprintf(riff, sizeof riff, "%s/riff.wav", models);

    struct jb_audio in;
    check(jb_audio_read(riff, JB_SAMPLE_RATE, 0, &in) == JB_STATUS_OK, "bundled riff is readable");
    int64_t n = (in.n_samples / 128) * 128;

    snprintf(cmd, sizeof cmd, "%s encode --models %s %s -o %s/riff", encore, models, riff, dir);
    check(run(cmd) == 0, "encode all levels");
    for (int L = 0; L < 3; L++) {
        static const int hop[3] = { 8, 32, 128 };
        char codes[4200], out[4200], what[128];
        snprintf(codes, sizeof codes, "%s/riff.level%d.npy", dir, L);
        int32_t *c = NULL;
        int64_t nc = 0;
        snprintf(what, sizeof what, "level %d codes: %lld expected", L, (long long)(n / hop[L]));
        check(jb_codes_read(codes, &c, &nc) == JB_STATUS_OK && nc == n / hop[L], what);
        bool in_range = c != NULL;
        for (int64_t i = 0; c && i < nc; i++)
            in_range &= c[i] >= 0 && c[i] < 2048;
        check(in_range, "codes within the codebook");
        free(c);
        snprintf(out, sizeof out, "%s/level%d.wav", dir, L);
        snprintf(cmd,
                 sizeof cmd,
                 "%s decode --models %s --level %d %s -o %s%s",
                 encore,
                 models,
                 L,
                 codes,
                 out,
                 L == 0 ? " --chunk 30000" : "");
        snprintf(what, sizeof what, "decode level %d", L);
        check(run(cmd) == 0, what);
        struct jb_audio a;
        snprintf(
          what, sizeof what, "decoded level %d has %lld samples at 44.1 kHz", L, (long long)n);
        check(jb_audio_read(out, JB_SAMPLE_RATE, 0, &a) == JB_STATUS_OK && a.n_samples == n &&
                a.sample_rate == JB_SAMPLE_RATE,
              what);
        jb_audio_free(&a);
    }

    /* --device: the test-only check backend (device-like: buffers only ops may touch) gives the
     * CPU's codes and audio; an unknown device fails with a message */
    {
        char codes[4200], ref[4200];
        snprintf(cmd,
                 sizeof cmd,
                 "%s encode --device check --models %s --level 2 %s -o %s/dev.npy",
                 encore,
                 models,
                 riff,
                 dir);
        int32_t *a = NULL, *b = NULL;
        int64_t na = 0, nb = 0;
        snprintf(codes, sizeof codes, "%s/dev.npy", dir);
        snprintf(ref, sizeof ref, "%s/riff.level2.npy", dir);
        check(run(cmd) == 0 && jb_codes_read(codes, &a, &na) == JB_STATUS_OK &&
                jb_codes_read(ref, &b, &nb) == JB_STATUS_OK && na == nb && na > 0 &&
                !memcmp(a, b, (size_t)na * sizeof *a),
              "encode --device check: the CPU's codes");
        free(a);
        free(b);
        snprintf(cmd,
                 sizeof cmd,
                 "%s decode --device check --models %s --level 2 %s -o %s/dev.wav && cmp -s "
                 "%s/dev.wav %s/level2.wav",
                 encore,
                 models,
                 ref,
                 dir,
                 dir,
                 dir);
        check(run(cmd) == 0, "decode --device check: the CPU's audio file, byte for byte");
        snprintf(cmd,
                 sizeof cmd,
                 "%s decode --device nonsense --models %s %s -o %s/x.wav 2>%s/err.txt; test $? "
                 "-ne 0 && grep -q nonsense %s/err.txt && test ! -e %s/x.wav",
                 encore,
                 models,
                 ref,
                 dir,
                 dir,
                 dir,
                 dir);
        check(run(cmd) == 0, "decode --device nonsense fails, names it, writes nothing");
    }

    /* stereo at 48 kHz is downmixed and resampled */
    {
        float *st    = malloc((size_t)48000 * 2 * sizeof *st);
        SF_INFO info = { .samplerate = 48000,
                         .channels   = 2,
                         .format     = SF_FORMAT_WAV | SF_FORMAT_FLOAT };
        snprintf(path, sizeof path, "%s/stereo48k.wav", dir);
        SNDFILE *sf = st ? sf_open(path, SFM_WRITE, &info) : NULL;
        for (int i = 0; st && i < 48000; i++)
            st[2 * i] = st[2 * i + 1] = 0.2f * (float)((i % 109) - 54) / 54;
        bool wrote = sf && sf_writef_float(sf, st, 48000) == 48000;
        if (sf) sf_close(sf);
        free(st);
        snprintf(cmd,
                 sizeof cmd,
                 "%s encode --models %s --level 0 %s -o %s/stereo.npy",
                 encore,
                 models,
                 path,
                 dir);
        check(wrote && run(cmd) == 0, "encode a 48 kHz stereo file");
        int32_t *c = NULL;
        int64_t nc = 0;
        snprintf(path, sizeof path, "%s/stereo.npy", dir);
        /* 1 s at 48 kHz -> 44100 samples at 44.1 kHz -> 44032 (multiple of 128) -> 5504 codes */
        check(jb_codes_read(path, &c, &nc) == JB_STATUS_OK && nc == 5504,
              "48 kHz stereo is downmixed and resampled to 44.1 kHz (5504 level-0 codes)");
        free(c);
    }

    /* error paths: clear message, non-zero status, nothing written */
    snprintf(cmd,
             sizeof cmd,
             "%s encode --models %s %s/missing.wav -o %s/x 2>/dev/null",
             encore,
             models,
             dir,
             dir);
    check(run(cmd) != 0, "encode of a missing file fails");
    snprintf(path, sizeof path, "%s/x.level0.npy", dir);
    check(access(path, F_OK) != 0, "nothing written for a failed encode");
    snprintf(cmd,
             sizeof cmd,
             "%s decode --models %s --level 7 %s/riff.level0.npy -o %s/y.wav 2>/dev/null",
             encore,
             models,
             dir,
             dir);
    check(run(cmd) != 0, "decode with a bad level fails");
    snprintf(path, sizeof path, "%s/garbage.npy", dir);
    FILE *f = fopen(path, "wb");
    if (f) fputs("not a numpy file", f), fclose(f);
    snprintf(cmd,
             sizeof cmd,
             "%s decode --models %s %s -o %s/z.wav 2>/dev/null",
             encore,
             models,
             path,
             dir);
    check(run(cmd) != 0, "decode of a malformed codes file fails");
    snprintf(cmd,
             sizeof cmd,
             "%s --help >/dev/null && %s encode --help >/dev/null && %s decode "
             "--help >/dev/null && %s import --help >/dev/null && %s info --help >/dev/null",
             encore,
             encore,
             encore,
             encore,
             encore);
    check(run(cmd) == 0, "--help everywhere");
    snprintf(cmd, sizeof cmd, "%s info %s/vqvae.gguf | grep -q untrained", encore, models);
    check(run(cmd) == 0, "info labels the default model as untrained");

    jb_audio_free(&in);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tc_summary();
}
