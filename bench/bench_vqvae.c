/*
 * bench/bench_vqvae.c - VQ-VAE throughput on the released shape (width 32, depth 4, emb_width 64,
 * l_bins 2048, 3 levels, multipliers (2, 1, 1)) with random weights from a fixed seed.
 *
 * For each clip length: encode (all three levels, as the reference's VQVAE.encode), encoder 0
 * alone, and decoding from each level, whole and chunked, in seconds of 44.1 kHz audio per wall
 * second (x realtime), with the work memory each call reserves and the peak RSS.
 *
 * Every measurement runs in its own forked process (which builds the model, then runs the
 * operation), so that ru_maxrss is the peak of that operation alone; the parent process never
 * starts a thread pool before forking.
 *
 * Then a 10-minute clip is encoded (all levels, in chunks as `encore encode` does) to show that
 * the peak memory stays flat with the length (under 300 MB, the audio itself included).
 *
 * usage: bench_vqvae [--threads N] [--reps N] [--seconds S[,S...]] [--chunk CODES] [--long S]
 *   --threads  kernel threads (default: all cores)
 *   --reps     timed repetitions per operation, best reported (default 2)
 *   --seconds  clip lengths (default 5,20)
 *   --chunk    codes per chunk for chunked decoding (default: the larger of 4 x the level's
 *              margin and 131072 samples' worth of codes)
 *   --long     length of the flat-memory encode in seconds (default 600; 0 skips it)
 */
#include "format/presets.h"
#include "model_builders.h"
#include "vqvae/vqvae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* random released-shape model in memory: tests/common (model_builders.h) */
#define rng_next tc_rng_next
#define rng_uniform tc_rng_uniform

/* ---------------------------------------------------------------------------------------- */
/* one measurement, in a child process                                                       */

enum op { OP_ENCODE_ALL, OP_ENCODE_0, OP_DECODE };

struct job {
    enum op op;
    int level;       /* OP_DECODE */
    int64_t chunk;   /* codes per chunk, 0 = whole, -1 = the default (encode: per level) */
    int64_t samples; /* clip length */
};

struct result {
    int ok;
    double seconds; /* best of reps */
    double work_mb; /* work memory the call reserves */
    double rss_mb;  /* peak RSS of the process */
    double cpu_s;   /* user + system CPU seconds per repetition (all threads) */
    int64_t chunk;  /* effective chunk (decode) */
    char err[200];
};

static int g_threads, g_reps = 2;
static int64_t g_chunk = -1;
static double g_long   = 600; /* --long: seconds of the flat-memory encode (0: skip) */

static void run_job(const struct job *jb, struct result *r)
{
    struct jb_vqvae_hparams released;
    jb_preset_vqvae(&released);
    struct jb_backend *be       = jb_backend_cpu_init(g_threads);
    struct tc_weights *src      = tc_weights_new(20240601);
    bool built                  = src && tc_build_vqvae(tc_weights_sink(src), &released);
    struct jb_weights_source ws = tc_weights_source(src);
    struct jb_weights *w        = be && built ? jb_weights_init(&ws) : NULL;
    struct jb_vqvae *vq         = w ? jb_vqvae_init(&released, w, be) : NULL;
    if (!vq) {
        snprintf(r->err, sizeof r->err, "init: %s", jb_last_error());
        return;
    }
    const int64_t T = jb->samples;
    int64_t chunk   = jb->chunk;
    if (chunk < 0 && jb->op != OP_DECODE) {
        chunk = jb_vqvae_encode_chunk_default(vq, 0, T); /* per level below; level 0 shown */
    } else if (chunk <
               0) { /* default: 4 margins (1.5x the work of whole decoding), at least ~3 s */
        int64_t min = 131072 / jb_vqvae_hp_hop(&released, jb->level);
        chunk       = 4 * jb_vqvae_decode_margin_level(vq, jb->level);
        chunk       = chunk > min ? chunk : min;
    }
    float *x     = malloc((size_t)T * sizeof(float));
    int32_t *z   = malloc((size_t)(T / 8) * sizeof(int32_t));
    uint64_t rng = 7;
    for (int64_t i = 0; i < T; i++)
        x[i] = 0.3f * sinf(0.0314f * (float)i) + 0.05f * rng_uniform(&rng);
    for (int64_t i = 0; i < T / 8; i++)
        z[i] = (int32_t)(rng_next(&rng) % 2048);

    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    double best = INFINITY;
    for (int rep = 0; rep < g_reps; rep++) {
        enum jb_status st = JB_STATUS_OK;
        double t0         = jb_time_now();
        switch (jb->op) {
        case OP_ENCODE_ALL:
            for (int L = 0; L < released.levels && st == JB_STATUS_OK; L++)
                st = jb_vqvae_encode_level_chunked(
                  vq,
                  L,
                  x,
                  T,
                  z,
                  NULL,
                  jb->chunk ? jb_vqvae_encode_chunk_default(vq, L, T) : 0,
                  NULL);
            break;
        case OP_ENCODE_0:
            st = jb_vqvae_encode_level_chunked(
              vq, 0, x, T, z, NULL, jb->chunk ? jb_vqvae_encode_chunk_default(vq, 0, T) : 0, NULL);
            break;
        case OP_DECODE: {
            int64_t n = T / jb_vqvae_hp_hop(&released, jb->level);
            st        = jb_vqvae_decode_level(vq, jb->level, z, n, x, chunk, NULL);
            break;
        }
        }
        double dt = jb_time_now() - t0;
        if (st != JB_STATUS_OK) {
            snprintf(r->err, sizeof r->err, "%s", jb_last_error());
            return;
        }
        if (dt < best) best = dt;
    }
    size_t work = 0;
    if (jb->op == OP_DECODE) {
        int64_t n = T / jb_vqvae_hp_hop(&released, jb->level);
        work      = jb_vqvae_decode_work_bytes(vq, jb->level, n, chunk);
    } else {
        for (int L = 0; L < (jb->op == OP_ENCODE_ALL ? released.levels : 1); L++) {
            size_t b = jb_vqvae_encode_work_bytes(
              vq, L, T, jb->chunk ? jb_vqvae_encode_chunk_default(vq, L, T) : 0);
            if (b > work) work = b;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->ok      = 1;
    r->seconds = best;
    r->work_mb = (double)work / (1 << 20);
    r->rss_mb  = (double)ru.ru_maxrss / 1024.0;
    r->cpu_s   = ((double)(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                (double)(ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                1e-6 * (double)(ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
                1e-6 * (double)(ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) /
               g_reps;
    r->chunk = chunk;
    /* the process exits right after: no frees needed */
}

static void run_forked(const struct job *jb, struct result *r)
{
    memset(r, 0, sizeof *r);
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(r->err, sizeof r->err, "pipe failed");
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        struct result cr;
        memset(&cr, 0, sizeof cr);
        run_job(jb, &cr);
        ssize_t wr = write(fd[1], &cr, sizeof cr);
        _exit(wr == (ssize_t)sizeof cr ? 0 : 1);
    }
    close(fd[1]);
    if (pid < 0 || read(fd[0], r, sizeof *r) != (ssize_t)sizeof *r) {
        memset(r, 0, sizeof *r);
        snprintf(r->err, sizeof r->err, "measurement process failed");
    }
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
}

/* ---------------------------------------------------------------------------------------- */

static void print_row(const char *what, const char *mode, double clip_s, const struct result *r)
{
    char chunk[32] = "-";
    if (r->chunk > 0) snprintf(chunk, sizeof chunk, "%lld", (long long)r->chunk);
    if (!r->ok) {
        printf("| %-22s | %-7s | %8s | %8s | %8s | %8s | %9s | %9s | error: %s\n",
               what,
               mode,
               chunk,
               "",
               "",
               "",
               "",
               "",
               r->err);
        return;
    }
    printf("| %-22s | %-7s | %8s | %8.3f | %7.1fx | %8.3f | %9.1f | %9.1f |\n",
           what,
           mode,
           chunk,
           r->seconds,
           clip_s / r->seconds,
           r->cpu_s,
           r->work_mb,
           r->rss_mb);
}

int main(int argc, char **argv)
{
    double seconds[8] = { 5, 20 };
    int n_seconds     = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            g_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            g_reps = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 1;
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
            g_chunk = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--long") && i + 1 < argc)
            g_long = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            n_seconds = 0;
            for (char *s = argv[++i]; *s && n_seconds < 8;) {
                seconds[n_seconds++] = strtod(s, &s);
                if (*s == ',')
                    s++;
                else if (*s)
                    break;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--reps N] [--seconds S[,S...]] [--chunk CODES] "
                    "[--long S]\n",
                    argv[0]);
            return 2;
        }
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("VQ-VAE, released shape (width 32, depth 4, emb_width 64, l_bins 2048, downs (3,2,2), "
           "multipliers (2,1,1)), random weights, fp32, batch 1\n");
    printf("threads: %d (%ld cores online), best of %d, x realtime = seconds of 44.1 kHz audio per "
           "wall second\n",
           g_threads > 0 ? g_threads : (int)cores,
           cores,
           g_reps);
    printf("reference (openai/jukebox, torch 1.13 CPU, 2 threads t2b1, 2-vCPU Zen 5; "
           "reference-baseline.md):\n"
           "  5 s:  decode L0 9.1x, L1 26.9x, L2 27.3x, encode (3 levels) 4.3x, encoder 0 8.1x\n"
           "  20 s: decode L0 3.5x, L1 12.7x, L2 12.0x, encode (3 levels) 1.9x, encoder 0 3.4x\n"
           "seconds = wall time (best of reps); cpu s = user + system CPU time of all threads per "
           "rep;\nwork MB = memory the call reserves; RSS MB = peak of a process that builds the "
           "model and runs only that operation\n\n");

    for (int c = 0; c < n_seconds; c++) {
        int64_t T = (int64_t)(seconds[c] * 44100.0) / 128 * 128;
        if (T < 128) continue;
        double clip = (double)T / 44100.0;
        printf("clip %.2f s (%lld samples)\n", clip, (long long)T);
        printf("| %-22s | %-7s | %8s | %8s | %8s | %8s | %9s | %9s |\n",
               "operation",
               "mode",
               "chunk",
               "seconds",
               "realtime",
               "cpu s",
               "work MB",
               "RSS MB");
        printf("|------------------------|---------|----------|----------|----------|----------|"
               "-----------|-----------|\n");
        struct result r;
        run_forked(&(struct job){ OP_ENCODE_ALL, 0, 0, T }, &r);
        print_row("encode (all 3 levels)", "whole", clip, &r);
        run_forked(&(struct job){ OP_ENCODE_0, 0, 0, T }, &r);
        print_row("encoder 0 alone", "whole", clip, &r);
        for (int L = 0; L < 3; L++) {
            char what[64];
            snprintf(what, sizeof what, "decode from level %d", L);
            run_forked(&(struct job){ OP_DECODE, L, 0, T }, &r);
            print_row(what, "whole", clip, &r);
            run_forked(&(struct job){ OP_DECODE, L, g_chunk > 0 ? g_chunk : -1, T }, &r);
            print_row(what, "chunked", clip, &r);
        }
        printf("\n");
    }
    if (g_long > 0) { /* flat memory: a long clip, encoded as `encore encode` does (chunked) */
        int64_t T = (int64_t)(g_long * 44100.0) / 128 * 128;
        struct result r;
        int reps = g_reps;
        g_reps   = 1;
        run_forked(&(struct job){ OP_ENCODE_ALL, 0, -1, T }, &r);
        g_reps = reps;
        printf("clip %.0f s (%lld samples), encoded in chunks as encore encode does\n",
               g_long,
               (long long)T);
        printf("| %-22s | %-7s | %8s | %8s | %8s | %8s | %9s | %9s |\n",
               "operation",
               "mode",
               "chunk",
               "seconds",
               "realtime",
               "cpu s",
               "work MB",
               "RSS MB");
        printf("|------------------------|---------|----------|----------|----------|----------|"
               "-----------|-----------|\n");
        print_row("encode (all 3 levels)", "chunked", (double)T / 44100.0, &r);
        if (r.ok)
            printf("peak memory of encoding %.0f minutes: %.0f MB (RSS, audio buffer of %.0f MB "
                   "included; limit 300 MB): %s\n",
                   g_long / 60.0,
                   r.rss_mb,
                   (double)T * 4.0 / 1048576.0,
                   r.rss_mb < 300.0 ? "ok" : "OVER");
    }
    return 0;
}
