/*
 * tests/unit/test_job_resume.c - checkpoints and resumed jobs (engine.h on_checkpoint,
 * jb_job_params.resume): a job resumed from any window checkpoint, after its partial take went
 * through a take file, gives exactly the codes of the uninterrupted job and samples fewer
 * tokens. Runs on the bundled default model.
 *
 * usage: test_job_resume MODEL_DIR
 */
#include "encore/engine.h"
#include "test_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* tests/common's reporting under this file's name */
#define check(ok, what) tc_check((ok), "%s", (what))

struct ck_state {
    int n_checkpoints, save_at; /* save the save_at-th checkpoint */
    int level, window;
    char path[256];
    int64_t tokens_first, tokens_last; /* progress "done" seen at the resumed level */
    int prog_level;
};

static void on_checkpoint(const struct jb_job_checkpoint *c, void *user)
{
    struct ck_state *s = user;
    if (s->n_checkpoints++ != s->save_at) return;
    s->level  = c->level;
    s->window = c->windows_done;
    if (jb_take_save(c->partial, s->path) != JB_STATUS_OK) s->level = -1;
}

static void on_progress(const struct jb_job_progress *p, void *user)
{
    struct ck_state *s = user;
    if (p->level != s->prog_level) return;
    if (s->tokens_first < 0) s->tokens_first = p->done;
    s->tokens_last = p->done;
}

static bool same_codes(const struct jb_take *a, const struct jb_take *b)
{
    struct jb_take_info ia, ib;
    jb_take_get_info(a, &ia);
    jb_take_get_info(b, &ib);
    if (ia.n_candidates != ib.n_candidates) return false;
    for (int L = 0; L < ia.n_levels; L++) {
        if (ia.n_tokens[L] != ib.n_tokens[L]) return false;
        for (int c = 0; c < ia.n_candidates; c++)
            if (memcmp(jb_take_codes(a, L, c),
                       jb_take_codes(b, L, c),
                       (size_t)ia.n_tokens[L] * sizeof(int32_t)))
                return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    char path[4200];
    snprintf(path, sizeof path, "%s/prior_level_2.gguf", argv[1]);
    if (access(path, R_OK) != 0) {
        printf("SKIP: no default model at %s\n", argv[1]);
        return 77;
    }
    struct jb_backend *be = jb_backend_init("cpu", 1);
    struct jb_session *s  = jb_session_load(argv[1], be);
    if (!s) {
        printf("FAIL session: %s\n", jb_last_error());
        return 1;
    }
    struct jb_audio riff = { 0 };
    snprintf(path, sizeof path, "%s/riff.wav", argv[1]);
    if (jb_audio_read(path, JB_SAMPLE_RATE, 0, &riff)) return 1;

    struct jb_job_params p;
    jb_job_params_init(&p);
    p.riff         = riff.samples;
    p.riff_samples = 2 * JB_SAMPLE_RATE;
    p.seconds      = 1.0;
    p.seed         = 42;
    p.n_candidates = 2;

    /* uninterrupted, counting checkpoints */
    struct ck_state all        = { .save_at = -1, .prog_level = -1 };
    struct jb_job_callbacks cb = { .on_checkpoint = on_checkpoint, .user = &all };
    struct jb_take *whole      = NULL;
    check(jb_job_run(s, &p, &cb, &whole) == JB_STATUS_OK, "uninterrupted job runs");
    printf("     %d checkpoints\n", all.n_checkpoints);
    check(all.n_checkpoints >= 3, "at least three window checkpoints");

    /* resume from the first, a middle and the last checkpoint */
    const int picks[3] = { 0, all.n_checkpoints / 2, all.n_checkpoints - 1 };
    for (int i = 0; i < 3 && whole; i++) {
        struct ck_state ck = { .save_at = picks[i], .level = -1 };
        snprintf(ck.path, sizeof ck.path, "/tmp/encore-resume-%d-%d.take", (int)getpid(), i);
        struct jb_take *first = NULL, *partial = NULL, *resumed = NULL;
        cb.user = &ck;
        jb_job_run(s, &p, &cb, &first); /* stands in for a run killed after save_at */
        check(ck.level >= 0 && jb_take_load(ck.path, &partial) == JB_STATUS_OK,
              "checkpoint saved and reloaded through a take file");
        struct jb_job_params q      = p;
        q.resume                    = partial;
        q.resume_level              = ck.level;
        q.resume_window             = ck.window;
        struct ck_state pr          = { .save_at = -1, .prog_level = ck.level, .tokens_first = -1 };
        struct jb_job_callbacks cb2 = { .on_progress = on_progress, .user = &pr };
        check(partial && jb_job_run(s, &q, &cb2, &resumed) == JB_STATUS_OK, "resumed job runs");
        char what[160];
        snprintf(what,
                 sizeof what,
                 "resumed at level %d window %d: codes equal uninterrupted",
                 ck.level,
                 ck.window);
        check(resumed && same_codes(resumed, whole), what);
        snprintf(what,
                 sizeof what,
                 "resumed at level %d starts with %lld tokens done",
                 ck.level,
                 (long long)pr.tokens_first);
        check(pr.tokens_first > 0, what);
        jb_take_free(first);
        jb_take_free(partial);
        jb_take_free(resumed);
        unlink(ck.path);
    }
    /* a checkpoint of another shape is refused */
    struct jb_job_params bad = p;
    bad.resume               = whole;
    bad.resume_level         = 2;
    bad.resume_window        = 0;
    bad.n_candidates         = 1;
    struct jb_take *t        = NULL;
    check(jb_job_run(s, &bad, NULL, &t) == JB_STATUS_ERR_INVALID_ARG && !t,
          "a resume take of another shape is refused");
    jb_take_free(whole);
    jb_audio_free(&riff);
    jb_session_free(s);
    jb_backend_free(be);
    return tc_summary();
}
