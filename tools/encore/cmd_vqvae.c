/* tools/encore/cmd_vqvae.c - `encore encode` and `encore decode`. */
#include "args.h"
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* device: cpu, cuda or cuda:N; NULL: the first GPU if there is one, else the CPU */
static struct jb_model *load_vqvae(const char *path,
                                   struct jb_backend **be,
                                   int threads,
                                   const char *device)
{
    *be = jb_backend_init(device ? device : jb_backend_default_name(), threads);
    if (!*be) return NULL;
    struct jb_model *m = jb_model_load(path, *be);
    if (m && jb_model_get_kind(m) != JB_MODEL_VQVAE) {
        jb_model_free(m);
        m = NULL;
        fprintf(stderr, "encore: '%s' is not a VQ-VAE model file\n", path);
    }
    return m;
}

static void encode_usage(FILE *out)
{
    fprintf(out,
            "usage: encore encode [options] AUDIO -o OUT\n"
            "\n"
            "Encodes audio (any format libsndfile reads; stereo is downmixed, other rates are\n"
            "resampled to 44.1 kHz) to VQ-VAE codes. The audio is cut to a multiple of the\n"
            "top-level hop (128 samples). Codes are int32 .npy files of shape (n,).\n"
            "\n"
            "  -m, --model FILE   VQ-VAE model (default: <models>/vqvae.gguf)\n"
            "      --models SET|DIR  installed model set or model folder (default: %s)\n"
            "  -l, --level L      0, 1, 2 or 'all' (default: all)\n"
            "  -o, --output OUT   OUT.npy for one level; for all levels OUT is a prefix and\n"
            "                     OUT.level0.npy, OUT.level1.npy, ... are written\n"
            "      --max-seconds S  refuse audio longer than S seconds (default %.0f)\n"
            "  -t, --threads N    worker threads (default: all cores, at most %d)\n"
            "      --device D     cpu, cuda or cuda:N (default: the first GPU if there is one\n"
            "                     and this build has the CUDA backend, else cpu)\n"
            "  -h, --help         this text\n",
            cli_default_model_dir(),
            JB_AUDIO_DEFAULT_MAX_SECONDS,
            CLI_MAX_THREADS);
}

int cmd_encode(int argc, char **argv)
{
    static const struct option opts[] = { { "model", required_argument, 0, 'm' },
                                          { "models", required_argument, 0, 'M' },
                                          { "level", required_argument, 0, 'l' },
                                          { "output", required_argument, 0, 'o' },
                                          { "threads", required_argument, 0, 't' },
                                          { "max-seconds", required_argument, 0, 'x' },
                                          { "device", required_argument, 0, 'V' },
                                          { "help", no_argument, 0, 'h' },
                                          { 0, 0, 0, 0 } };
    const char *model = NULL, *models = NULL, *output = NULL, *level_s = "all", *device = NULL;
    int threads        = 0, c;
    double max_seconds = JB_AUDIO_DEFAULT_MAX_SECONDS;
    while ((c = getopt_long(argc, argv, "m:l:o:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'M':
            models = optarg;
            break;
        case 'l':
            level_s = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 't':
            if (!cli_parse_intv("encode", "threads", optarg, 0, CLI_MAX_THREADS, &threads))
                return 2;
            break;
        case 'V':
            device = optarg;
            break;
        case 'x':
            if (!cli_parse_real(
                  "encode", "max-seconds", optarg, 0, true, JB_AUDIO_LIMIT_SECONDS, &max_seconds))
                return 2;
            break;
        case 'h':
            encode_usage(stdout);
            return 0;
        default:
            encode_usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1 || !output) {
        encode_usage(stderr);
        return 2;
    }
    int level_arg = -1;
    if (strcmp(level_s, "all") != 0 &&
        !cli_parse_intv("encode", "level", level_s, 0, JB_JOB_MAX_LEVELS - 1, &level_arg))
        return 2;
    char path[4096], dir[4096];
    if (!model) {
        if (!cli_models_dir("encode", models, dir, sizeof dir)) return 1;
        model = cli_model_path(dir, "vqvae.gguf", path, sizeof path);
    }

    int rc                = 1;
    struct jb_backend *be = NULL;
    struct jb_audio audio = { 0 };
    int32_t *codes        = NULL;
    struct jb_model *vq   = load_vqvae(model, &be, threads, device);
    if (!vq) {
        rc = cli_error("encode");
        goto done;
    }

    int levels = jb_vqvae_levels(vq), lo = 0, hi = levels - 1;
    if (level_arg >= 0) {
        if (level_arg >= levels) {
            fprintf(stderr, "encore encode: --level must be 0..%d or all\n", levels - 1);
            rc = 2;
            goto done;
        }
        lo = hi = level_arg;
    }
    if (jb_audio_read(argv[optind], JB_SAMPLE_RATE, max_seconds, &audio)) {
        rc = cli_error("encode");
        goto done;
    }
    int64_t top = jb_vqvae_hop(vq, levels - 1);
    int64_t n   = audio.n_samples / top * top;
    if (n == 0) {
        fprintf(stderr,
                "encore encode: '%s' is shorter than %lld samples\n",
                argv[optind],
                (long long)top);
        goto done;
    }
    if (n != audio.n_samples)
        fprintf(stderr,
                "encore encode: using the first %lld of %lld samples (a multiple of %lld)\n",
                (long long)n,
                (long long)audio.n_samples,
                (long long)top);
    codes                  = malloc((size_t)(n / jb_vqvae_hop(vq, 0)) * sizeof *codes);
    struct jb_callbacks cb = cli_callbacks();
    for (int l = lo; l <= hi && codes; l++) {
        int64_t n_codes = n / jb_vqvae_hop(vq, l);
        char out[4096];
        if (lo == hi)
            snprintf(out, sizeof out, "%s", output);
        else
            snprintf(out, sizeof out, "%s.level%d.npy", output, l);
        if (jb_vqvae_encode(vq, l, audio.samples, n, codes, NULL, &cb) ||
            jb_codes_write(out, codes, n_codes)) {
            rc = cli_error("encode");
            goto done;
        }
        cli_progress_done();
        fprintf(stderr, "encore encode: level %d: %lld codes -> %s\n", l, (long long)n_codes, out);
    }
    rc = codes ? 0 : 1;

done:
    free(codes);
    jb_audio_free(&audio);
    jb_model_free(vq);
    jb_backend_free(be);
    return rc;
}

static void decode_usage(FILE *out)
{
    fprintf(out,
            "usage: encore decode [options] CODES.npy -o OUT.wav\n"
            "\n"
            "Decodes one level's VQ-VAE codes to 44.1 kHz audio (16-bit WAV, or FLAC for .flac).\n"
            "\n"
            "  -m, --model FILE   VQ-VAE model (default: <models>/vqvae.gguf)\n"
            "      --models SET|DIR  installed model set or model folder (default: %s)\n"
            "  -l, --level L      level of the codes (default: 0)\n"
            "  -o, --output FILE  audio file to write\n"
            "  -c, --chunk N      decode N codes at a time with receptive-field margins, bounding\n"
            "                     memory (default: 0 = whole sequence at once)\n"
            "  -t, --threads N    worker threads (default: all cores, at most %d)\n"
            "      --device D     cpu, cuda or cuda:N (default: the first GPU if there is one\n"
            "                     and this build has the CUDA backend, else cpu)\n"
            "  -h, --help         this text\n",
            cli_default_model_dir(),
            CLI_MAX_THREADS);
}

int cmd_decode(int argc, char **argv)
{
    static const struct option opts[] = { { "model", required_argument, 0, 'm' },
                                          { "models", required_argument, 0, 'M' },
                                          { "level", required_argument, 0, 'l' },
                                          { "output", required_argument, 0, 'o' },
                                          { "chunk", required_argument, 0, 'c' },
                                          { "threads", required_argument, 0, 't' },
                                          { "device", required_argument, 0, 'V' },
                                          { "help", no_argument, 0, 'h' },
                                          { 0, 0, 0, 0 } };
    const char *model = NULL, *models = NULL, *output = NULL, *device = NULL;
    int level = 0, threads = 0, c;
    long long chunk = 0;
    while ((c = getopt_long(argc, argv, "m:l:o:c:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'M':
            models = optarg;
            break;
        case 'l':
            if (!cli_parse_intv("decode", "level", optarg, 0, JB_JOB_MAX_LEVELS - 1, &level))
                return 2;
            break;
        case 'o':
            output = optarg;
            break;
        case 'c':
            if (!cli_parse_int("decode", "chunk", optarg, 0, INT32_MAX, &chunk)) return 2;
            break;
        case 't':
            if (!cli_parse_intv("decode", "threads", optarg, 0, CLI_MAX_THREADS, &threads))
                return 2;
            break;
        case 'V':
            device = optarg;
            break;
        case 'h':
            decode_usage(stdout);
            return 0;
        default:
            decode_usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1 || !output || chunk < 0) {
        decode_usage(stderr);
        return 2;
    }
    char path[4096], dir[4096];
    if (!model) {
        if (!cli_models_dir("decode", models, dir, sizeof dir)) return 1;
        model = cli_model_path(dir, "vqvae.gguf", path, sizeof path);
    }

    int rc                = 1;
    struct jb_backend *be = NULL;
    int32_t *codes        = NULL;
    float *audio          = NULL;
    int64_t n_codes;
    struct jb_model *vq = load_vqvae(model, &be, threads, device);
    if (!vq) {
        rc = cli_error("decode");
        goto done;
    }
    if (level < 0 || level >= jb_vqvae_levels(vq)) {
        fprintf(stderr, "encore decode: --level must be 0..%d\n", jb_vqvae_levels(vq) - 1);
        rc = 2;
        goto done;
    }
    if (jb_codes_read(argv[optind], &codes, &n_codes)) {
        rc = cli_error("decode");
        goto done;
    }
    if (n_codes <= 0) {
        fprintf(stderr, "encore decode: '%s' holds no codes\n", argv[optind]);
        goto done;
    }
    int64_t n_samples      = n_codes * jb_vqvae_hop(vq, level);
    audio                  = malloc((size_t)n_samples * sizeof *audio);
    struct jb_callbacks cb = cli_callbacks();
    if (!audio || jb_vqvae_decode(vq, level, codes, n_codes, audio, chunk, &cb) ||
        jb_audio_write(output, audio, n_samples, JB_SAMPLE_RATE)) {
        rc = cli_error("decode");
        goto done;
    }
    cli_progress_done();
    fprintf(stderr,
            "encore decode: %lld codes -> %lld samples (%.2f s) -> %s\n",
            (long long)n_codes,
            (long long)n_samples,
            (double)n_samples / JB_SAMPLE_RATE,
            output);
    rc = 0;

done:
    free(codes);
    free(audio);
    jb_model_free(vq);
    jb_backend_free(be);
    return rc;
}
