/*
 * tools/encore/cmd_prior.c - `encore continue`, `encore sample` and `encore upsample`: the
 * sampling pipeline (engine.h jobs and takes) with a per-level progress bar, Ctrl-C cancel and
 * the finest rendered level written as audio.
 *
 * Output names: with one candidate the audio goes to OUT; with N candidates to OUT-1.ext ..
 * OUT-N.ext (the number before the extension, counting from 1).
 */
#include "args.h"
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum prior_cmd { CMD_CONTINUE, CMD_SAMPLE, CMD_UPSAMPLE };

static const char *cmd_name(enum prior_cmd c)
{
    return c == CMD_CONTINUE ? "continue" : c == CMD_SAMPLE ? "sample" : "upsample";
}

static void prior_usage(enum prior_cmd c, FILE *out)
{
    if (c == CMD_CONTINUE)
        fprintf(out,
                "usage: encore continue RIFF --seconds S [options] -o OUT.wav\n"
                "       encore continue --take TAKE --seconds S [options] -o OUT.wav\n"
                "\n"
                "Continues a riff (any format libsndfile reads; stereo is downmixed, other rates\n"
                "are resampled to 44.1 kHz, the length is cut to a multiple of 128 samples) by S\n"
                "seconds, or extends a saved take. Writes the riff followed by the new audio at\n"
                "the finest level rendered (with --take: the whole extended take).\n");
    else if (c == CMD_SAMPLE)
        fprintf(out,
                "usage: encore sample --seconds S [options] -o OUT.wav\n"
                "\n"
                "Generates S seconds from nothing (ancestral sampling).\n");
    else
        fprintf(out,
                "usage: encore upsample TAKE [options] -o OUT.wav\n"
                "\n"
                "Samples the levels below the top (1, then 0) from a saved take's top-level\n"
                "codes and writes the whole take decoded at the finest level.\n");
    fprintf(out, "\noptions:\n");
    if (c != CMD_UPSAMPLE)
        fprintf(
          out,
          "  -s, --seconds S        seconds of new audio (required)\n"
          "  -a, --artist NAME      artist label (default: unknown; --artist list shows the\n"
          "                         model's names)\n"
          "  -g, --genre NAME       genre label (default: unknown; --genre list)\n"
          "      --lyrics FILE      UTF-8 lyrics (lyrics models only)\n"
          "      --total-seconds S  length of the song the model is told about (default 180 s,\n"
          "                         or the generated length if longer)\n");
    if (c != CMD_SAMPLE)
        fprintf(out,
                "      --take FILE        (continue) extend this take instead of a riff\n"
                "  -c, --candidate I      take candidate to use, from 1 (default: all)\n");
    fprintf(out,
            "  -n, --candidates N     candidates to generate, 1..%d (default 1); with a take and\n"
            "                         --candidate, N variations of that candidate\n"
            "  -l, --levels L         finest level to render: 2 = top-level preview only, 1, or\n"
            "                         0 = full quality (default 0)\n"
            "      --seed N           random seed (default 0; same seed -> same take)\n"
            "  -T, --temp T           sampling temperature of every level, 0.001..100 (default\n"
            "                         0.99; 0.001 is in effect greedy)\n"
            "      --save-take FILE   save the codes, labels and settings (GGUF) for `encore\n"
            "                         continue --take` or `encore upsample`\n"
            "      --models SET|DIR   installed model set (encore models list) or model folder\n"
            "                         (default: %s)\n"
            "      --daemon           run the job in encored (takes are the daemon's take ids)\n"
            "      --socket PATH      encored's socket (default: $ENCORE_SOCKET, else\n"
            "                         $XDG_RUNTIME_DIR/encore/encored.sock)\n"
            "  -t, --threads N        worker threads (default: all cores, at most 256)\n"
            "      --device D         cpu, cuda or cuda:N (default: the first GPU if there is\n"
            "                         one and this build has the CUDA backend, else cpu)\n"
            "      --kv-f16           fp16 KV caches: half the sampling memory per candidate\n"
            "      --offload          keep only the sampled level's prior on the device\n"
            "  -o, --output OUT       audio file (.wav 16-bit, or .flac); OUT-1.wav .. OUT-N.wav\n"
            "                         for several candidates\n"
            "  -h, --help             this text\n",
            JB_JOB_MAX_CANDIDATES,
            cli_default_model_dir());
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------- */
/* callbacks: progress bar, cancel, and the finest level's audio gathered per candidate       */

struct cli_job {
    struct jb_callbacks base; /* cli.c's Ctrl-C flag */
    float **audio;            /* [n_candidates][n_samples] finest level */
    int n_candidates;
    int64_t n_samples;
    bool show;
    bool shown;
    double t0, t_first_audio;
};

static bool progress_wanted(void)
{
    const char *env = getenv("ENCORE_PROGRESS");
    if (env) return atoi(env) != 0;
    return isatty(STDERR_FILENO);
}

static void on_progress(const struct jb_job_progress *p, void *user)
{
    struct cli_job *cj      = user;
    struct cli_progress bar = { .enabled = cj->show, .shown = cj->shown };
    cli_progress_show(&bar, p->level, p->done, p->total, p->tokens_per_s, p->eta, p->elapsed);
    cj->shown = bar.shown;
}

static void on_audio(const struct jb_job_audio *a, void *user)
{
    struct cli_job *cj = user;
    if (cj->t_first_audio < 0) cj->t_first_audio = now_s() - cj->t0;
    if (a->role != JB_AUDIO_FINAL || !cj->audio || a->candidate >= cj->n_candidates) return;
    if (a->first_sample < 0 || a->first_sample + a->n_samples > cj->n_samples) return;
    memcpy(
      cj->audio[a->candidate] + a->first_sample, a->samples, (size_t)a->n_samples * sizeof(float));
}

static bool should_stop(void *user)
{
    struct cli_job *cj = user;
    return cj->base.should_stop && cj->base.should_stop(cj->base.user);
}

/* ---------------------------------------------------------------------------------------- */
/* helpers                                                                                   */

/* OUT for one candidate, OUT-<i+1>.ext otherwise. */
static void output_name(const char *out, int i, int n, char *buf, size_t len)
{
    if (n == 1) {
        snprintf(buf, len, "%s", out);
        return;
    }
    const char *slash = strrchr(out, '/');
    const char *dot   = strrchr(out, '.');
    if (!dot || (slash && dot < slash)) dot = out + strlen(out);
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - out), out, i + 1, dot);
}

/* Lyrics must be a regular text file: a folder, a device or a file holding NUL bytes (a binary
 * file given by mistake) is refused rather than read as empty or cut lyrics. */
static char *read_text(const char *cmd, const char *path, size_t max)
{
    char shown[512];
    cli_sanitize(path, shown, sizeof shown);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr,
                "encore %s: --lyrics: '%s' is not a readable file%s\n",
                cmd,
                shown,
                f ? " (a folder or a device?)" : "");
        if (f) fclose(f);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n  = buf ? fread(buf, 1, max + 1, f) : 0;
    bool err  = ferror(f);
    fclose(f);
    if (!buf) return NULL;
    if (err || n > max || memchr(buf, '\0', n)) {
        fprintf(stderr,
                "encore %s: --lyrics: '%s' %s\n",
                cmd,
                shown,
                err       ? "could not be read"
                : n > max ? "is longer than 256 KiB"
                          : "holds NUL bytes: not a text file");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static void list_labels(const struct jb_session *s, bool genre)
{
    int64_t n = jb_session_label_count(s, genre);
    printf("%s names of this model (%lld):\n", genre ? "genre" : "artist", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        char shown[1024]; /* names come from the model file */
        printf("  %s\n", cli_sanitize(jb_session_label_name(s, genre, i), shown, sizeof shown));
    }
}

/* ---------------------------------------------------------------------------------------- */
/* the three commands                                                                        */

static int run_prior(enum prior_cmd cmd, int argc, char **argv)
{
    static const struct option opts[] = { { "seconds", required_argument, 0, 's' },
                                          { "artist", required_argument, 0, 'a' },
                                          { "genre", required_argument, 0, 'g' },
                                          { "lyrics", required_argument, 0, 'L' },
                                          { "total-seconds", required_argument, 0, 'S' },
                                          { "take", required_argument, 0, 'k' },
                                          { "candidate", required_argument, 0, 'c' },
                                          { "candidates", required_argument, 0, 'n' },
                                          { "levels", required_argument, 0, 'l' },
                                          { "seed", required_argument, 0, 'r' },
                                          { "temp", required_argument, 0, 'T' },
                                          { "save-take", required_argument, 0, 'K' },
                                          { "models", required_argument, 0, 'M' },
                                          { "threads", required_argument, 0, 't' },
                                          { "device", required_argument, 0, 'V' },
                                          { "kv-f16", no_argument, 0, 'H' },
                                          { "offload", no_argument, 0, 'F' },
                                          { "output", required_argument, 0, 'o' },
                                          { "help", no_argument, 0, 'h' },
                                          { "daemon", no_argument, 0, 'D' },
                                          { "socket", required_argument, 0, 'P' },
                                          { 0, 0, 0, 0 } };
    const char *name                  = cmd_name(cmd);
    bool use_daemon                   = false;
    const char *socket_path           = NULL;
    const char *artist = NULL, *genre = NULL, *lyrics_path = NULL, *take_path = NULL;
    const char *save_path = NULL, *models = NULL, *output = NULL, *device = NULL;
    double seconds = 0, total_seconds = 0, temp = 0.99;
    long long candidate = 0, candidates = 1, levels = 0, seed = 0, threads = 0;
    bool have_seconds = false, kv_f16 = false, offload = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:a:g:c:n:l:T:t:o:h", opts, NULL)) != -1) {
        bool ok = true;
        /* flags the help of this command does not offer are refused, not ignored */
        const char *not_here = NULL;
        if (cmd == CMD_SAMPLE && (c == 'c' || c == 'k')) not_here = c == 'c' ? "candidate" : "take";
        if (cmd == CMD_UPSAMPLE && c > 0 && strchr("sagLSk", c))
            not_here = c == 's'   ? "seconds"
                       : c == 'a' ? "artist"
                       : c == 'g' ? "genre"
                       : c == 'L' ? "lyrics"
                       : c == 'S' ? "total-seconds"
                                  : "take";
        if (not_here) {
            fprintf(stderr,
                    "encore %s: --%s does not apply to this command (see encore %s --help)\n",
                    name,
                    not_here,
                    name);
            return 2;
        }
        switch (c) {
        case 's':
            ok = cli_parse_real(name, "seconds", optarg, 0, true, CLI_MAX_SECONDS, &seconds);
            have_seconds = true;
            break;
        case 'a':
            artist = optarg;
            break;
        case 'g':
            genre = optarg;
            break;
        case 'L':
            lyrics_path = optarg;
            break;
        case 'S':
            ok = cli_parse_real(
              name, "total-seconds", optarg, 0, true, CLI_MAX_SECONDS, &total_seconds);
            break;
        case 'k':
            take_path = optarg;
            break;
        case 'c':
            ok = cli_parse_int(name, "candidate", optarg, 1, JB_JOB_MAX_CANDIDATES, &candidate);
            break;
        case 'n':
            ok = cli_parse_int(name, "candidates", optarg, 1, JB_JOB_MAX_CANDIDATES, &candidates);
            break;
        case 'l':
            ok = cli_parse_int(name, "levels", optarg, 0, JB_JOB_MAX_LEVELS - 1, &levels);
            break;
        case 'r':
            ok = cli_parse_int(name, "seed", optarg, 0, INT64_MAX, &seed);
            break;
        case 'T':
            ok =
              cli_parse_real(name, "temp", optarg, JB_JOB_MIN_TEMP, false, JB_JOB_MAX_TEMP, &temp);
            break;
        case 'K':
            save_path = optarg;
            break;
        case 'M':
            models = optarg;
            break;
        case 't':
            ok = cli_parse_int(name, "threads", optarg, 0, CLI_MAX_THREADS, &threads);
            break;
        case 'V':
            device = optarg;
            break;
        case 'H':
            kv_f16 = true;
            break;
        case 'F':
            offload = true;
            break;
        case 'o':
            output = optarg;
            break;
        case 'D':
            use_daemon = true;
            break;
        case 'P':
            socket_path = optarg;
            break;
        case 'h':
            prior_usage(cmd, stdout);
            return 0;
        default:
            prior_usage(cmd, stderr);
            return 2;
        }
        if (!ok) return 2;
    }
    const bool listing =
      (artist && strcmp(artist, "list") == 0) || (genre && strcmp(genre, "list") == 0);
    const int n_pos = argc - optind;
    if (cmd == CMD_UPSAMPLE && n_pos == 1) take_path = argv[optind];
    bool usage_ok = listing || output;
    if (cmd == CMD_CONTINUE) usage_ok &= listing || (take_path ? n_pos == 0 : n_pos == 1);
    if (cmd == CMD_SAMPLE) usage_ok &= n_pos == 0;
    if (cmd == CMD_UPSAMPLE) usage_ok &= n_pos == 1;
    if (cmd != CMD_UPSAMPLE) usage_ok &= listing || have_seconds;
    if (!usage_ok) {
        prior_usage(cmd, stderr);
        return 2;
    }
    if (cmd == CMD_CONTINUE && candidate && !take_path) {
        fprintf(
          stderr, "encore %s: --candidate picks a candidate of --take; there is none\n", name);
        return 2;
    }

    if (use_daemon && !listing) { /* the same job, run by encored (cmd_daemon.c) */
        struct cli_job_opts o = { .cmd     = name,
                                  .mode    = take_path ? (cmd == CMD_UPSAMPLE ? JB_JOB_UPSAMPLE
                                                                              : JB_JOB_CONTINUE)
                                             : cmd == CMD_CONTINUE ? JB_JOB_PRIMED
                                                                   : JB_JOB_ANCESTRAL,
                                  .riff    = take_path ? NULL : argv[optind],
                                  .take    = take_path,
                                  .seconds = seconds,
                                  .total_seconds = total_seconds,
                                  .temp          = temp,
                                  .artist        = artist,
                                  .genre         = genre,
                                  .lyrics_path   = lyrics_path,
                                  .candidate     = candidate,
                                  .candidates    = take_path && candidate == 0 ? 1 : candidates,
                                  .levels        = levels,
                                  .seed          = seed,
                                  .save_path     = save_path,
                                  .output        = output,
                                  .socket        = socket_path };
        return cli_daemon_job(&o);
    }

    int rc                = 1;
    struct jb_backend *be = NULL;
    struct jb_session *s  = NULL;
    struct jb_take *src = NULL, *take = NULL;
    struct jb_audio riff       = { 0 };
    char *lyrics               = NULL;
    struct cli_job cj          = { .base = cli_callbacks(), .t_first_audio = -1 };
    struct jb_audio_out **outs = NULL;
    int n_outs                 = 0;

    /* the lyrics file is checked before the (slow) model load */
    if (lyrics_path && !(lyrics = read_text(name, lyrics_path, 256 * 1024))) return 1;
    char models_dir[4096];
    if (!cli_models_dir(name, models, models_dir, sizeof models_dir)) {
        free(lyrics);
        return 1;
    }
    be = jb_backend_init(device ? device : jb_backend_default_name(), (int)threads);
    if (!be) {
        free(lyrics);
        return cli_error(name);
    }
    s = jb_session_load(models_dir, be);
    if (!s) {
        rc = cli_error(name);
        goto done;
    }
    jb_session_set_kv_f16(s, kv_f16);
    jb_session_set_offload(s, offload);
    struct jb_session_info si;
    jb_session_get_info(s, &si);
    if (listing) {
        if (artist && strcmp(artist, "list") == 0) list_labels(s, false);
        if (genre && strcmp(genre, "list") == 0) list_labels(s, true);
        rc = 0;
        goto done;
    }
    if (si.untrained)
        fprintf(
          stderr, "encore %s: note: the model is UNTRAINED (random weights): expect noise\n", name);

    struct jb_job_params p;
    jb_job_params_init(&p);
    p.seconds       = seconds;
    p.total_seconds = total_seconds;
    p.artist        = artist;
    p.genre         = genre;
    p.seed          = (uint64_t)seed;
    p.finest_level  = (int)levels;
    p.n_candidates  = (int)candidates;
    for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
        p.temp[L] = (float)temp;
    p.lyrics = lyrics;
    if (take_path) {
        if (jb_take_load(take_path, &src)) {
            rc = cli_error(name);
            goto done;
        }
        p.mode           = cmd == CMD_UPSAMPLE ? JB_JOB_UPSAMPLE : JB_JOB_CONTINUE;
        p.take           = src;
        p.take_candidate = (int)candidate - 1; /* 0 (not given) -> -1: all */
        if (candidate == 0) p.n_candidates = 1;
    } else if (cmd == CMD_CONTINUE) {
        if (jb_audio_read(argv[optind], JB_SAMPLE_RATE, si.max_duration, &riff)) {
            rc = cli_error(name);
            goto done;
        }
        p.mode         = JB_JOB_PRIMED;
        p.riff         = riff.samples;
        p.riff_samples = riff.n_samples;
    } else {
        p.mode = JB_JOB_ANCESTRAL;
    }

    /* everything is checked before the bar starts: bad labels and lengths fail here */
    struct jb_job_plan plan;
    if (jb_job_plan(s, &p, &plan)) {
        rc = cli_error(name);
        goto done;
    }
    const bool streamed = p.mode == JB_JOB_PRIMED || p.mode == JB_JOB_ANCESTRAL;
    cj.n_candidates     = plan.n_candidates;
    cj.n_samples        = plan.sample_length;
    cj.show             = progress_wanted();
    if (streamed) {
        cj.audio = calloc((size_t)cj.n_candidates, sizeof *cj.audio);
        for (int i = 0; cj.audio && i < cj.n_candidates; i++) {
            cj.audio[i] = calloc((size_t)cj.n_samples, sizeof(float));
            if (!cj.audio[i]) break;
            if (p.mode == JB_JOB_PRIMED) /* the riff itself, then the new audio */
                memcpy(cj.audio[i], riff.samples, (size_t)plan.riff_samples * sizeof(float));
        }
        if (!cj.audio || !cj.audio[cj.n_candidates - 1]) {
            fprintf(stderr, "encore %s: out of memory for the output audio\n", name);
            goto done;
        }
    }
    int64_t from = 0; /* samples before the job */
    if (p.mode == JB_JOB_PRIMED) from = plan.riff_samples;
    if (src) {
        struct jb_take_info si_src;
        jb_take_get_info(src, &si_src);
        from = si_src.sample_length;
    }
    fprintf(stderr,
            "encore %s: %.2f s -> %.2f s, %d candidate%s, levels %d..%d, song length %.0f s\n",
            name,
            (double)from / JB_SAMPLE_RATE,
            (double)plan.sample_length / JB_SAMPLE_RATE,
            plan.n_candidates,
            plan.n_candidates == 1 ? "" : "s",
            plan.top_level,
            plan.finest_level,
            (double)plan.total_length / JB_SAMPLE_RATE);

    struct jb_job_callbacks cb = {
        .on_progress = on_progress, .on_audio = on_audio, .should_stop = should_stop, .user = &cj
    };
    cj.t0                = now_s();
    enum jb_status st    = jb_job_run(s, &p, &cb, &take);
    const double elapsed = now_s() - cj.t0;
    if (cj.shown) fputc('\n', stderr);
    if (st == JB_STATUS_ERR_CANCELLED) {
        fprintf(stderr, "encore %s: cancelled\n", name);
        rc = 130;
        goto done;
    }
    if (st) {
        rc = cli_error(name);
        goto done;
    }
    if (save_path) {
        if (jb_take_save(take, save_path)) {
            rc = cli_error(name);
            goto done;
        }
        fprintf(stderr, "encore %s: take saved to %s\n", name, save_path);
    }

    /* the finest level: streamed for riffs and ancestral samples, decoded whole for takes */
    struct jb_take_info ti;
    jb_take_get_info(take, &ti);
    const int64_t n_out = ti.n_tokens[plan.finest_level] * ti.hop[plan.finest_level];
    float *whole        = streamed ? NULL : malloc((size_t)n_out * sizeof(float));
    if (!streamed && !whole) {
        fprintf(stderr, "encore %s: out of memory for the output audio\n", name);
        goto done;
    }
    /* every candidate goes to a temporary first; they replace existing files together, only
     * once all were written (a full disk leaves every old output as it was) */
    outs = calloc((size_t)ti.n_candidates, sizeof *outs);
    if (!outs) {
        free(whole);
        goto done;
    }
    n_outs = ti.n_candidates;
    for (int i = 0; i < ti.n_candidates; i++) {
        char path[4096];
        output_name(output, i, ti.n_candidates, path, sizeof path);
        if ((!streamed && jb_take_decode(s, take, i, plan.finest_level, whole, NULL)) ||
            jb_audio_out_begin(path, JB_SAMPLE_RATE, &outs[i]) ||
            jb_audio_out_write(
              outs[i], streamed ? cj.audio[i] : whole, streamed ? cj.n_samples : n_out)) {
            free(whole);
            rc = cli_error(name);
            goto done;
        }
    }
    for (int i = 0; i < ti.n_candidates; i++)
        if (jb_audio_out_finish(outs[i])) {
            free(whole);
            rc = cli_error(name);
            goto done;
        }
    for (int i = 0; i < ti.n_candidates; i++) {
        char path[4096], shown[4096];
        output_name(output, i, ti.n_candidates, path, sizeof path);
        enum jb_status st_commit = jb_audio_out_commit(outs[i]);
        outs[i]                  = NULL;
        if (st_commit) {
            free(whole);
            rc = cli_error(name);
            goto done;
        }
        fprintf(stderr,
                "encore %s: wrote %s (%.2f s)\n",
                name,
                cli_sanitize(path, shown, sizeof shown),
                (double)(streamed ? cj.n_samples : n_out) / JB_SAMPLE_RATE);
    }
    free(whole);
    fprintf(stderr,
            "encore %s: done in %.1f s (first audio after %.1f s)\n",
            name,
            elapsed,
            cj.t_first_audio);
    rc = 0;

done:
    for (int i = 0; i < n_outs; i++)
        jb_audio_out_abort(outs[i]);
    free(outs);
    if (cj.audio)
        for (int i = 0; i < cj.n_candidates; i++)
            free(cj.audio[i]);
    free(cj.audio);
    free(lyrics);
    jb_take_free(take);
    jb_take_free(src);
    jb_audio_free(&riff);
    jb_session_free(s);
    jb_backend_free(be);
    return rc;
}

int cmd_continue(int argc, char **argv)
{
    return run_prior(CMD_CONTINUE, argc, argv);
}

int cmd_sample(int argc, char **argv)
{
    return run_prior(CMD_SAMPLE, argc, argv);
}

int cmd_upsample(int argc, char **argv)
{
    return run_prior(CMD_UPSAMPLE, argc, argv);
}
