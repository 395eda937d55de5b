/*
 * tools/encore/main.c - the `encore` command: import, info, encode, decode (and, with the
 * priors, continue / sample / upsample). Each subcommand lives in its own function with its
 * own --help; shared option handling and the progress bar are in cli.c.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct cli_command commands[] = {
    { "import", cmd_import, "convert an OpenAI .pth.tar checkpoint to an Encore model file" },
    { "info", cmd_info, "describe a model file" },
    { "encode", cmd_encode, "encode an audio file to VQ-VAE codes (.npy)" },
    { "decode", cmd_decode, "decode VQ-VAE codes (.npy) to an audio file" },
    { "continue", cmd_continue, "continue a riff (or extend a take) with the priors" },
    { "sample", cmd_sample, "generate audio from nothing (ancestral sampling)" },
    { "upsample", cmd_upsample, "render a take's lower levels (upsampling)" },
    { "status", cmd_status, "the daemon (encored): model sets, device, queue, takes" },
    { "jobs", cmd_jobs, "the daemon's jobs" },
    { "cancel", cmd_cancel, "cancel a daemon job" },
    { "attach", cmd_attach, "follow a daemon job and write its audio" },
    { "models",
      cmd_models,
      "fetch, list and remove installed model sets (encore models fetch 5b_lyrics)" },
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: encore <command> [options]\n"
            "\n"
            "Encore runs OpenAI Jukebox: encode a riff, continue it, decode audio.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out,
            "\n'encore <command> --help' describes each command.\n"
            "Default model folder: %s (override with ENCORE_MODEL_DIR or --models SET|DIR)\n",
            cli_default_model_dir());
}

int main(int argc, char **argv)
{
    cli_init_logging();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("encore %s\n", ENCORE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        /* getopt names the program by argv[0]: "encore import: unrecognized option ..." */
        static char prog[64];
        snprintf(prog, sizeof prog, "encore %s", commands[i].name);
        argv[1] = prog;
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "encore: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
