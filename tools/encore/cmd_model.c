/* tools/encore/cmd_model.c - `encore import` and `encore info`. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void import_usage(FILE *out)
{
    fprintf(out,
            "usage: encore import [options] CHECKPOINT.pth.tar OUT.gguf\n"
            "\n"
            "Converts an OpenAI Jukebox checkpoint (legacy or zip torch format) to an Encore\n"
            "model file. No Python is run: only the 'model' state dict is read (training\n"
            "state such as optimizer moments and metrics is passed over, never executed).\n"
            "\n"
            "  --kind KIND        vqvae, upsampler_level_0, upsampler_level_1, prior_5b,\n"
            "                     prior_5b_lyrics or prior_1b_lyrics (default: detected)\n"
            "  --dtype T          storage of weight matrices: f32 (default), f16 or bf16\n"
            "  --artist-ids FILE  artist id table to embed (default: the installed table of\n"
            "                     the kind: v2 for 5b models and the upsamplers, v3 for\n"
            "                     1b_lyrics; $ENCORE_DATA_DIR/jukebox-ids overrides the folder)\n"
            "  --genre-ids FILE   genre id table to embed (default: installed, as above)\n"
            "  --hps FILE.json    hyper-parameters overriding the released preset\n"
            "  --ckpt-hps         take hyper-parameters from the checkpoint's 'hps' dict\n"
            "  --name NAME        name stored in the file\n"
            "  -h, --help         this text\n");
}

int cmd_import(int argc, char **argv)
{
    static const struct option opts[] = { { "kind", required_argument, 0, 'k' },
                                          { "dtype", required_argument, 0, 't' },
                                          { "artist-ids", required_argument, 0, 'a' },
                                          { "genre-ids", required_argument, 0, 'g' },
                                          { "hps", required_argument, 0, 'p' },
                                          { "ckpt-hps", no_argument, 0, 'c' },
                                          { "name", required_argument, 0, 'n' },
                                          { "help", no_argument, 0, 'h' },
                                          { 0, 0, 0, 0 } };
    struct jb_import_params p         = { .storage = JB_DTYPE_F32 };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            p.kind = optarg;
            break;
        case 't':
            if (!jb_dtype_parse(optarg, &p.storage) || p.storage == JB_DTYPE_I32) {
                fprintf(stderr, "encore import: --dtype must be f32, f16 or bf16\n");
                return 2;
            }
            break;
        case 'a':
            p.artist_ids_path = optarg;
            break;
        case 'g':
            p.genre_ids_path = optarg;
            break;
        case 'p':
            p.hps_json_path = optarg;
            break;
        case 'c':
            p.use_ckpt_hps = true;
            break;
        case 'n':
            p.name = optarg;
            break;
        case 'h':
            import_usage(stdout);
            return 0;
        default:
            import_usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        import_usage(stderr);
        return 2;
    }
    p.src_path             = argv[optind];
    p.dst_path             = argv[optind + 1];
    struct jb_callbacks cb = cli_callbacks();
    if (jb_import(&p, &cb)) return cli_error("import");
    cli_progress_done();
    fprintf(stderr, "encore import: wrote %s\n", p.dst_path);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = { { "tensors", no_argument, 0, 'v' },
                                          { "help", no_argument, 0, 'h' },
                                          { 0, 0, 0, 0 } };
    bool verbose                      = false;
    int c;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case 'v':
            verbose = true;
            break;
        case 'h':
            printf("usage: encore info [--tensors] MODEL.gguf...\n\n"
                   "Prints a model file's hyper-parameters, vocabularies and tensor totals;\n"
                   "--tensors lists every tensor.\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: encore info [--tensors] MODEL.gguf...\n");
        return 2;
    }
    int rc = 0;
    for (int i = optind; i < argc; i++)
        if (jb_model_file_describe(argv[i], stdout, verbose)) rc = cli_error("info");
    return rc;
}
