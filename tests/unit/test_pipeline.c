/*
 * tests/unit/test_pipeline.c - the sampling pipeline (engine.h sessions, jobs, takes) on the
 * bundled default model: window schedules against jukebox-spec Appendix C, primed sampling
 * keeping the riff's codes, progress and audio-callback contracts, cancellation latency,
 * determinism, take files (round trip and hostile input), and the user-facing errors.
 *
 * usage: test_pipeline MODEL_DIR [LYRICS_MODEL_DIR...]
 *   MODEL_DIR: the default model (e.g. build/models/default; exits 77 if it is absent).
 *   LYRICS_MODEL_DIR (optional): folders whose top prior takes lyrics (5b_lyrics / 1b_lyrics
 *   layouts), for the lyric paths: the riff's codes kept, the lyrics conditioning the codes.
 * Prints one line per check and "N passed, M failed"; exit status 1 on any failure.
 */
#include "encore/engine.h"
#include "format/gguf.h"
#include "pipeline/pipeline.h"
#include "pipeline/schedule.h"
#include "test_common.h"
#include "vqvae/vqvae.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* tests/common's reporting under this file's name */
#define check tc_check

/* ---------------------------------------------------------------------------------------- */
/* schedules (Appendix C)                                                                    */

static bool starts_are(int64_t total, int64_t n_ctx, int64_t hop, const int64_t *want, int64_t n)
{
    int64_t got[256];
    int64_t count = jb_schedule_starts(total, n_ctx, hop, got, 256);
    if (count != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) return false;
    return true;
}

static void test_schedules(void)
{
    const int64_t sl20 = jb_schedule_round(20 * 44100, 128),
                  sl60 = jb_schedule_round(60 * 44100, 128);
    check(sl20 == 881920 && sl60 == 2645888,
          "sample lengths 20 s = 881920, 60 s = 2645888 (got %lld, %lld)",
          (long long)sl20,
          (long long)sl60);
    check(jb_schedule_hop(8192, 0.125) == 1024 && jb_schedule_hop(6144, 0.125) == 768 &&
            jb_schedule_hop(8192, 0.5) == 4096,
          "hops 1024 / 768 / 4096");

    /* 5b, 20 s: level 2 is one partial window of 6890 tokens */
    struct jb_window w[128];
    int64_t n = jb_schedule_level(sl20 / 128, 0, 8192, 1024, w, 128);
    check(n == 1 && w[0].start == 0 && w[0].n_known == 0 && w[0].n_tokens == 6890,
          "5b 20 s level 2: one partial window at 0 of 6890 tokens");

    /* level 1: 0, 4096, ..., 16384, 19368; first ancestral, then 4096 x4 and 5208 known */
    static const int64_t l1[]  = { 0, 4096, 8192, 12288, 16384, 19368 };
    static const int64_t l1p[] = { 0, 4096, 4096, 4096, 4096, 5208 };
    n                          = jb_schedule_level(sl20 / 32, 0, 8192, 4096, w, 128);
    bool ok                    = n == 6;
    for (int i = 0; ok && i < 6; i++)
        ok = w[i].start == l1[i] && w[i].n_known == l1p[i] && w[i].n_tokens == 8192;
    check(ok && starts_are(27560, 8192, 4096, l1, 6),
          "5b 20 s level 1: starts 0,4096,...,16384,19368 primed with 0,4096x4,5208");

    /* level 0: 26 windows, 0..98304 then 102048 */
    n  = jb_schedule_level(sl20 / 8, 0, 8192, 4096, w, 128);
    ok = n == 26 && w[24].start == 98304 && w[25].start == 102048 && w[25].n_known == 4448;
    for (int i = 0; ok && i < 25; i++)
        ok = w[i].start == 4096 * i;
    check(ok, "5b 20 s level 0: 26 windows, 25 at multiples of 4096, last at 102048");

    /* 1b_lyrics 20 s: 6890 >= 6144 -> windows 0 and 746 (hop 768), 5398 known in the second */
    n = jb_schedule_level(6890, 0, 6144, 768, w, 128);
    check(n == 2 && w[0].start == 0 && w[1].start == 746 && w[1].n_known == 5398,
          "1b_lyrics 20 s level 2: windows 0 and 746 (5398 known)");

    /* 60 s */
    int64_t s[256];
    n  = jb_schedule_starts(sl60 / 128, 8192, 1024, s, 256);
    ok = sl60 / 128 == 20671 && n == 14 && s[12] == 12288 && s[13] == 12479;
    check(ok, "5b 60 s level 2: 14 windows, ..., 12288, 12479");
    n = jb_schedule_starts(sl60 / 128, 6144, 768, s, 256);
    check(n == 20 && s[18] == 13824 && s[19] == 14527,
          "1b_lyrics 60 s level 2: 20 windows, ..., 13824, 14527");
    n = jb_schedule_starts(sl60 / 32, 8192, 4096, s, 256);
    check(n == 20 && s[18] == 73728 && s[19] == 74492,
          "60 s level 1: 20 windows, ..., 73728, 74492");
    n = jb_schedule_starts(sl60 / 8, 8192, 4096, s, 256);
    check(n == 80 && s[78] == 319488 && s[79] == 322544,
          "60 s level 0: 80 windows, ..., 319488, 322544");

    /* priming: windows fully inside the known prefix are skipped; exactly total - known new */
    n                  = jb_schedule_level(27560, 10000, 8192, 4096, w, 128);
    ok                 = n == 5 && w[0].start == 4096 && w[0].n_known == 5904;
    int64_t new_tokens = 0, cur = 10000;
    for (int i = 0; ok && i < n; i++) {
        ok = w[i].n_known == cur - w[i].start;
        new_tokens += w[i].n_tokens - w[i].n_known;
        cur = w[i].start + w[i].n_tokens;
    }
    check(ok && new_tokens == 17560 && cur == 27560,
          "primed level: known windows skipped, exactly total - known tokens sampled");
    n = jb_schedule_level(3000, 1000, 8192, 1024, w, 128);
    check(n == 1 && w[0].start == 0 && w[0].n_known == 1000 && w[0].n_tokens == 3000,
          "partial window with a prompt appends exactly total - known tokens");
    check(jb_schedule_level(100, 100, 8192, 1024, NULL, 0) == 0,
          "a fully known level has no windows");
}

/* ---------------------------------------------------------------------------------------- */
/* a recording of one job's callbacks                                                        */

#define MAX_EVENTS 200000

struct piece {
    int cand, level, role;
    int64_t first, n;
    double t;
};

struct rec {
    /* progress */
    int n_progress;
    int last_level;
    int64_t last_done, last_total;
    bool monotonic, level_order_ok;
    int n_level_ends[JB_JOB_MAX_LEVELS];
    int64_t level_total[JB_JOB_MAX_LEVELS];
    double t_level_end[JB_JOB_MAX_LEVELS];
    /* audio */
    struct piece *pieces;
    int n_pieces;
    float *audio[4][JB_JOB_MAX_LEVELS]; /* per candidate, level: whole timeline */
    int64_t n_samples;
    /* cancel */
    int cancel_level; /* -1: never */
    double cancel_frac;
    bool flag;
    double t_flag;
    double t0;
};

static void rec_init(struct rec *r, int64_t n_samples, int n_cand)
{
    memset(r, 0, sizeof *r);
    r->last_level     = 99;
    r->monotonic      = true;
    r->level_order_ok = true;
    r->cancel_level   = -1;
    r->pieces         = calloc(MAX_EVENTS, sizeof *r->pieces);
    r->n_samples      = n_samples;
    for (int c = 0; c < n_cand && c < 4; c++)
        for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
            r->audio[c][L] = calloc((size_t)n_samples + 1, sizeof(float));
    for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
        r->t_level_end[L] = -1;
}

static void rec_free(struct rec *r)
{
    free(r->pieces);
    for (int c = 0; c < 4; c++)
        for (int L = 0; L < JB_JOB_MAX_LEVELS; L++)
            free(r->audio[c][L]);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void rec_progress(const struct jb_job_progress *p, void *user)
{
    struct rec *r = user;
    r->n_progress++;
    if (p->level != r->last_level) {
        /* a new level: the previous one must have ended, levels go top-down */
        if (r->last_level != 99 && (p->level >= r->last_level || r->last_done != r->last_total))
            r->level_order_ok = false;
        if (p->done != 0) r->monotonic = false;
        r->last_level = p->level;
        r->last_done  = 0;
    }
    if (p->done < r->last_done || p->done > p->total || p->total <= 0) r->monotonic = false;
    r->last_done  = p->done;
    r->last_total = p->total;
    if (p->level >= 0 && p->level < JB_JOB_MAX_LEVELS) {
        r->level_total[p->level] = p->total;
        if (p->done == p->total) {
            r->n_level_ends[p->level]++;
            r->t_level_end[p->level] = now();
        }
    }
    if (p->level == r->cancel_level && !r->flag &&
        p->done >= (int64_t)(r->cancel_frac * p->total)) {
        r->flag   = true;
        r->t_flag = now();
    }
}

static void rec_audio(const struct jb_job_audio *a, void *user)
{
    struct rec *r = user;
    if (r->n_pieces < MAX_EVENTS)
        r->pieces[r->n_pieces++] =
          (struct piece){ a->candidate, a->level, a->role, a->first_sample, a->n_samples, now() };
    if (a->candidate < 4 && a->first_sample >= 0 && a->first_sample + a->n_samples <= r->n_samples)
        memcpy(r->audio[a->candidate][a->level] + a->first_sample,
               a->samples,
               (size_t)a->n_samples * sizeof(float));
}

static bool rec_stop(void *user)
{
    return ((struct rec *)user)->flag;
}

static struct jb_job_callbacks rec_callbacks(struct rec *r)
{
    return (struct jb_job_callbacks){
        .on_progress = rec_progress, .on_audio = rec_audio, .should_stop = rec_stop, .user = r
    };
}

/* Pieces of (cand, level) are in order, contiguous, and cover exactly [from, to). */
static bool covers(const struct rec *r, int cand, int level, int64_t from, int64_t to, int role)
{
    int64_t at = from;
    for (int i = 0; i < r->n_pieces; i++) {
        const struct piece *p = &r->pieces[i];
        if (p->cand != cand || p->level != level) continue;
        if (p->first != at || p->n <= 0 || p->role != role) return false;
        at += p->n;
    }
    return at == to;
}

static bool same_codes(const struct jb_take *a,
                       int ca,
                       const struct jb_take *b,
                       int cb,
                       int level,
                       int64_t n)
{
    const int32_t *x = jb_take_codes(a, level, ca), *y = jb_take_codes(b, level, cb);
    return x && y && memcmp(x, y, (size_t)n * sizeof *x) == 0;
}

static bool takes_equal(const struct jb_take *a, const struct jb_take *b)
{
    struct jb_take_info ia, ib;
    jb_take_get_info(a, &ia);
    jb_take_get_info(b, &ib);
    if (ia.n_candidates != ib.n_candidates || ia.n_levels != ib.n_levels ||
        ia.riff_samples != ib.riff_samples || ia.total_length != ib.total_length ||
        ia.seed != ib.seed || ia.mode != ib.mode || ia.top_k != ib.top_k || ia.top_p != ib.top_p ||
        strcmp(ia.artist, ib.artist) || strcmp(ia.genre, ib.genre) || strcmp(ia.lyrics, ib.lyrics))
        return false;
    for (int L = 0; L < ia.n_levels; L++) {
        if (ia.n_tokens[L] != ib.n_tokens[L] || ia.hop[L] != ib.hop[L] || ia.temp[L] != ib.temp[L])
            return false;
        for (int c = 0; c < ia.n_candidates; c++)
            if (ia.n_tokens[L] && !same_codes(a, c, b, c, L, ia.n_tokens[L])) return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* jobs                                                                                      */

static struct jb_job_params primed_params(const float *riff, int64_t n)
{
    struct jb_job_params p;
    jb_job_params_init(&p);
    p.mode         = JB_JOB_PRIMED;
    p.riff         = riff;
    p.riff_samples = n;
    p.seconds      = 1.0;
    p.artist       = "ella fitzgerald";
    p.genre        = "jazz";
    p.seed         = 7;
    return p;
}

static void test_primed(struct jb_session *s, const float *riff, int64_t n_riff, const char *tmp)
{
    struct jb_job_params p = primed_params(riff, n_riff);
    p.n_candidates         = 2;
    struct jb_job_plan plan;
    enum jb_status st = jb_job_plan(s, &p, &plan);
    check(st == JB_STATUS_OK, "plan of a primed job %s", st ? jb_last_error() : "");
    if (st) return;
    const int64_t D = plan.riff_samples, SL = plan.sample_length;
    check(D == n_riff / 128 * 128 && SL == (D + 44100) / 128 * 128,
          "riff cut to a multiple of 128 (%lld), sample length D + 1 s rounded down (%lld)",
          (long long)D,
          (long long)SL);

    struct rec r;
    rec_init(&r, SL, 2);
    struct jb_job_callbacks cb = rec_callbacks(&r);
    struct jb_take *take       = NULL;
    r.t0                       = now();
    st                         = jb_job_run(s, &p, &cb, &take);
    const double elapsed       = now() - r.t0;
    check(st == JB_STATUS_OK && take,
          "primed job, 2 candidates, levels 2..0 (%.1f s) %s",
          elapsed,
          st ? jb_last_error() : "");
    if (!take) {
        rec_free(&r);
        return;
    }
    struct jb_take_info ti;
    jb_take_get_info(take, &ti);
    check(ti.n_candidates == 2 && ti.riff_samples == D && ti.finest_level == 0 &&
            ti.n_tokens[0] == SL / 8 && ti.n_tokens[1] == SL / 32 && ti.n_tokens[2] == SL / 128,
          "take: 2 candidates, riff %lld samples, every level covers %lld samples",
          (long long)D,
          (long long)SL);

    /* the riff's codes at every level are the VQ-VAE's, verbatim, for both candidates */
    for (int L = 0; L < 3; L++) {
        const int64_t k = D / s->hop[L];
        int32_t *codes  = malloc((size_t)k * sizeof *codes);
        bool ok = codes && jb_vqvae_encode_level(s->vqvae->vqvae, L, riff, D, codes, NULL, NULL) ==
                             JB_STATUS_OK;
        for (int c = 0; ok && c < 2; c++)
            ok = memcmp(jb_take_codes(take, L, c), codes, (size_t)k * 4) == 0;
        check(ok, "level %d: the riff's %lld codes are kept unchanged", L, (long long)k);
        free(codes);
    }
    bool differ = memcmp(jb_take_codes(take, 0, 0) + D / 8,
                         jb_take_codes(take, 0, 1) + D / 8,
                         (size_t)(SL - D) / 8 * 4) != 0;
    check(differ, "the two candidates differ after the riff");

    /* progress */
    check(r.monotonic && r.level_order_ok,
          "progress: levels 2, 1, 0 in order, done monotonic from 0");
    bool ends_ok = true;
    for (int L = 0; L < 3; L++)
        ends_ok &= r.n_level_ends[L] == 1 && r.level_total[L] == plan.n_new[L] * 2;
    check(ends_ok, "progress: each level ends exactly once with done == total (= new tokens x 2)");

    /* audio: every level's new span exactly once per candidate, finest FINAL, others PREVIEW */
    bool cov = true;
    for (int c = 0; c < 2; c++)
        for (int L = 0; L < 3; L++)
            cov &= covers(&r, c, L, D, SL, L == 0 ? JB_AUDIO_FINAL : JB_AUDIO_PREVIEW);
    check(cov, "audio: each level covers [D, sample_length) once per candidate, in order");
    double first_l2 = -1;
    int n_l2        = 0;
    for (int i = 0; i < r.n_pieces; i++) {
        if (r.pieces[i].level != 2) continue;
        if (first_l2 < 0) first_l2 = r.pieces[i].t;
        n_l2++;
    }
    check(first_l2 >= 0 && first_l2 < r.t_level_end[2] && n_l2 > 2,
          "preview: first level-2 audio %.3f s after start, before level 2 finished (%.3f s), %d "
          "pieces",
          first_l2 - r.t0,
          r.t_level_end[2] - r.t0,
          n_l2);

    /* streamed pieces equal decoding the finished codes */
    float *whole = malloc((size_t)SL * sizeof *whole);
    double maxd  = 0;
    for (int c = 0; c < 2 && whole; c++) {
        for (int L = 0; L < 3; L++) {
            if (jb_take_decode(s, take, c, L, whole, NULL) != JB_STATUS_OK) maxd = INFINITY;
            for (int64_t i = D; i < SL; i++)
                maxd = fmax(maxd, fabs((double)whole[i] - r.audio[c][L][i]));
        }
    }
    check(whole && maxd <= 1e-5,
          "streamed audio equals jb_take_decode of the take (max diff %.2g)",
          maxd);
    free(whole);

    /* take files: round trip */
    char path[4200];
    snprintf(path, sizeof path, "%s/take.gguf", tmp);
    struct jb_take *back = NULL;
    st                   = jb_take_save(take, path);
    check(st == JB_STATUS_OK, "take saved (%s)", st ? jb_last_error() : "ok");
    st = jb_take_load(path, &back);
    check(st == JB_STATUS_OK && back && takes_equal(take, back),
          "take load(save(take)) is identical: codes, labels, settings");
    jb_take_free(back);

    rec_free(&r);
    jb_take_free(take);
}

static struct jb_take *run_quiet(struct jb_session *s,
                                 const struct jb_job_params *p,
                                 enum jb_status *st)
{
    struct jb_take *t = NULL;
    *st               = jb_job_run(s, p, NULL, &t);
    return t;
}

static void test_determinism_and_modes(struct jb_session *s, const float *riff, int64_t n_riff)
{
    struct jb_job_params p = primed_params(riff, n_riff);
    p.finest_level         = 1;
    enum jb_status st1, st2, st3;
    struct jb_take *a = run_quiet(s, &p, &st1);
    struct jb_take *b = run_quiet(s, &p, &st2);
    p.seed            = 8;
    struct jb_take *c = run_quiet(s, &p, &st3);
    check(!st1 && !st2 && a && b && takes_equal(a, b), "same seed -> identical take");
    struct jb_take_info ia;
    jb_take_get_info(a, &ia);
    bool diff =
      c && memcmp(jb_take_codes(a, 2, 0), jb_take_codes(c, 2, 0), (size_t)ia.n_tokens[2] * 4) != 0;
    check(!st3 && diff, "different seed -> different codes");
    check(a && ia.finest_level == 1 && ia.n_tokens[0] == ia.riff_samples / 8,
          "finest level 1: level 0 keeps only the riff's codes (%lld)",
          (long long)ia.n_tokens[0]);

    /* candidates do not depend on batch slicing: 3 candidates in slices of 2 vs one batch */
    p.seed            = 9;
    p.finest_level    = 2;
    p.n_candidates    = 3;
    struct jb_take *d = run_quiet(s, &p, &st1);
    p.max_batch[2]    = 2;
    struct jb_take *e = run_quiet(s, &p, &st2);
    check(!st1 && !st2 && d && e && takes_equal(d, e),
          "3 candidates sampled as one batch or as slices of 2 give the same take");

    /* upsample a preview take's candidate 1: its top level is kept, levels 1 and 0 filled */
    struct jb_job_params u;
    jb_job_params_init(&u);
    u.mode            = JB_JOB_UPSAMPLE;
    u.take            = d;
    u.take_candidate  = 1;
    u.seed            = 3;
    struct jb_take *f = d ? run_quiet(s, &u, &st1) : NULL;
    struct jb_take_info id, iff;
    jb_take_get_info(d, &id);
    jb_take_get_info(f, &iff);
    check(!st1 && f && iff.n_candidates == 1 && iff.finest_level == 0 &&
            same_codes(f, 0, d, 1, 2, id.n_tokens[2]) &&
            same_codes(f, 0, d, 1, 1, id.n_tokens[1]) &&
            same_codes(f, 0, d, 1, 0, id.n_tokens[0]) && iff.n_tokens[0] == id.sample_length / 8,
          "upsample: top level and riff codes kept, levels 1 and 0 cover the take %s",
          st1 ? jb_last_error() : "");

    /* continue the upsampled take by 1 s at the top level only */
    struct jb_job_params k;
    jb_job_params_init(&k);
    k.mode            = JB_JOB_CONTINUE;
    k.take            = f;
    k.seconds         = 1.0;
    k.finest_level    = 2;
    struct jb_take *g = f ? run_quiet(s, &k, &st2) : NULL;
    struct jb_take_info ig;
    jb_take_get_info(g, &ig);
    check(!st2 && g && ig.sample_length == (iff.sample_length + 44100) / 128 * 128 &&
            same_codes(g, 0, f, 0, 2, iff.n_tokens[2]) &&
            same_codes(g, 0, f, 0, 0, iff.n_tokens[0]) && strcmp(ig.artist, "ella fitzgerald") == 0,
          "continue: a take extended by 1 s keeps its codes and labels %s",
          st2 ? jb_last_error() : "");

    /* ancestral preview */
    struct jb_job_params an;
    jb_job_params_init(&an);
    an.mode           = JB_JOB_ANCESTRAL;
    an.seconds        = 1.5;
    an.finest_level   = 2;
    an.genre          = "blues";
    struct jb_take *h = run_quiet(s, &an, &st3);
    struct jb_take_info ih;
    jb_take_get_info(h, &ih);
    check(!st3 && h && ih.riff_samples == 0 && ih.n_tokens[2] == (int64_t)(1.5 * 44100) / 128 &&
            strcmp(ih.artist, "unknown") == 0,
          "ancestral: 1.5 s at the top level, artist defaults to 'unknown' %s",
          st3 ? jb_last_error() : "");

    jb_take_free(a);
    jb_take_free(b);
    jb_take_free(c);
    jb_take_free(d);
    jb_take_free(e);
    jb_take_free(f);
    jb_take_free(g);
    jb_take_free(h);
}

static void test_cancel(struct jb_session *s, const float *riff, int64_t n_riff)
{
    for (int level = 2; level >= 0; level -= 2) {
        struct jb_job_params p = primed_params(riff, n_riff);
        p.n_candidates         = 2;
        struct jb_job_plan plan;
        jb_job_plan(s, &p, &plan);
        struct rec r;
        rec_init(&r, plan.sample_length, 2);
        r.cancel_level             = level;
        r.cancel_frac              = 0.5;
        struct jb_job_callbacks cb = rec_callbacks(&r);
        struct jb_take *out        = (struct jb_take *)&r; /* must be reset to NULL */
        enum jb_status st          = jb_job_run(s, &p, &cb, &out);
        const double lat           = now() - r.t_flag;
        check(r.flag && st == JB_STATUS_ERR_CANCELLED && out == NULL && lat < 1.0,
              "cancel in the middle of level %d: ERR_CANCELLED %.3f s after the flag, no take",
              level,
              lat);
        rec_free(&r);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* memory plan                                                                               */

/* The plan reads the backend's real memory (MemAvailable on the CPU), and a job beyond the budget
 * is refused before any work with the sizes and how many candidates would fit; in batches of that
 * many the same job then runs. The budget is lowered with the session's memory limit, since the
 * bundled model is far too small to exceed this machine's memory. */
static void test_memory(struct jb_session *s, const float *riff, int64_t n_riff)
{
    struct jb_job_params p = primed_params(riff, n_riff);
    p.n_candidates         = 4;
    p.finest_level         = 2; /* the top level only: quick on the check backend too */
    struct jb_job_memory m;
    enum jb_status st = jb_job_memory(s, &p, &m);
    size_t avail = 0, total = 0;
    jb_host_memory(&avail, &total);
    const bool host_ok = total > 0 && m.backend_total == (double)total &&
                         fabs(m.backend_free - (double)avail) < 0.1 * (double)total;
    check(st == JB_STATUS_OK && m.need > 0 && m.need_level >= 0 && m.need_level <= 2 &&
            m.batch[m.need_level] > 0 && m.per_candidate[m.need_level] > 0 &&
            m.budget <= m.backend_free && m.max_batch_fit >= 4 && host_ok,
          "memory plan: %.1f MB at level %d (%.1f MB per candidate); budget %.0f MB of %.0f MB "
          "available (MemAvailable %.0f MB)",
          m.need / 1e6,
          m.need_level,
          m.per_candidate[m.need_level] / 1e6,
          m.budget / 1e6,
          m.backend_free / 1e6,
          (double)avail / 1e6);
    struct jb_session_info si;
    jb_session_get_info(s, &si);
    check(si.vqvae_bytes > 0 && si.prior_bytes[0] > 0 && si.prior_bytes[2] > 0 &&
            si.candidate_bytes[2] > 0 && si.backend_total > 0,
          "session info: models %.1f / %.1f / %.1f / %.1f MB, %.1f MB per top-level candidate",
          si.vqvae_bytes / 1e6,
          si.prior_bytes[0] / 1e6,
          si.prior_bytes[1] / 1e6,
          si.prior_bytes[2] / 1e6,
          si.candidate_bytes[2] / 1e6);

    /* a budget for about 2.5 candidates at once: the 4-candidate job is refused up front */
    const int L        = m.need_level;
    const double fixed = m.need - 4 * m.per_candidate[L];
    jb_session_set_memory_limit(s, fixed + 2.5 * m.per_candidate[L]);
    struct jb_job_plan plan;
    jb_job_plan(s, &p, &plan);
    struct rec r;
    rec_init(&r, plan.sample_length, 4);
    struct jb_job_callbacks cb = rec_callbacks(&r);
    struct jb_take *out        = (struct jb_take *)&r; /* must be reset to NULL */
    st                         = jb_job_run(s, &p, &cb, &out);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", jb_last_error());
    struct jb_job_memory m2;
    jb_job_memory(s, &p, &m2);
    check(st == JB_STATUS_ERR_NOMEM && out == NULL && r.n_progress == 0 && r.n_pieces == 0 &&
            strstr(msg, "at most 2 candidates at once would fit") && m2.max_batch_fit == 2,
          "a job beyond the budget is refused before any work (%d progress, %d audio): %s",
          r.n_progress,
          r.n_pieces,
          msg);
    rec_free(&r);
    /* the same job in batches of what fits runs */
    for (int k = 0; k < JB_JOB_MAX_LEVELS; k++)
        p.max_batch[k] = m2.max_batch_fit;
    out = NULL;
    st  = jb_job_run(s, &p, NULL, &out);
    check(st == JB_STATUS_OK && out != NULL,
          "the same job in batches of %d runs %s",
          m2.max_batch_fit,
          st ? jb_last_error() : "");
    jb_take_free(out);
    jb_session_set_memory_limit(s, 0);
}

/* Offload: only the sampled level's prior stays on the backend, and takes are unchanged (on the
 * check backend the weights really leave and come back through set_tensor; on the CPU, whose
 * copies start at 1 MiB (weights_copy_min), the test model's tensors are all used in place and
 * nothing moves: test_backend_ops checks the CPU's copies). */
static void test_offload(struct jb_session *s, const float *riff, int64_t n_riff)
{
    struct jb_job_params p = primed_params(riff, n_riff);
    enum jb_status rst; /* one candidate, every level: weights move between all three */
    struct jb_take *a = run_quiet(s, &p, &rst);
    struct jb_job_memory m0, m1;
    jb_job_memory(s, &p, &m0);
    jb_session_set_offload(s, true);
    jb_job_memory(s, &p, &m1);
    struct jb_take *b = run_quiet(s, &p, &rst);
    struct jb_session_info si;
    jb_session_get_info(s, &si);
    struct jb_take *c = run_quiet(s, &p, &rst); /* offloaded at the start: reloads */
    jb_session_set_offload(s, false);
    struct jb_take *d = run_quiet(s, &p, &rst);
    struct jb_session_info so;
    jb_session_get_info(s, &so);
    const bool device = !s->backend->iface->host_memory;
    const bool moved  = device ? si.prior_resident[0] > 0 && si.prior_resident[1] == 0 &&
                                  si.prior_resident[2] == 0 && so.prior_resident[1] > 0 &&
                                  so.prior_resident[2] > 0 && m1.need < m0.need
                               : si.prior_resident[0] == 0 && m1.need == m0.need;
    check(a && b && c && d && takes_equal(a, b) && takes_equal(a, c) && takes_equal(a, d) && moved,
          "offload: takes unchanged (twice offloaded, then all back); resident after: %.1f / "
          "%.1f / %.1f MB; plan %.2f -> %.2f MB",
          si.prior_resident[0] / 1e6,
          si.prior_resident[1] / 1e6,
          si.prior_resident[2] / 1e6,
          m0.need / 1e6,
          m1.need / 1e6);
    jb_take_free(a);
    jb_take_free(b);
    jb_take_free(c);
    jb_take_free(d);
}

/* ---------------------------------------------------------------------------------------- */
/* errors                                                                                    */

static void expect_error(struct jb_session *s,
                         const struct jb_job_params *p,
                         enum jb_status want,
                         const char *needle,
                         const char *what)
{
    struct jb_job_plan plan;
    enum jb_status st = jb_job_plan(s, p, &plan);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", jb_last_error());
    struct jb_take *t  = NULL;
    enum jb_status st2 = jb_job_run(s, p, NULL, &t);
    check(st == want && st2 == want && !t && (!needle || strstr(msg, needle)),
          "%s -> %s: %s",
          what,
          jb_status_str(st),
          msg);
    jb_take_free(t);
}

static void test_errors(struct jb_session *s, const float *riff, int64_t n_riff)
{
    struct jb_job_params p = primed_params(riff, n_riff);
    p.artist               = "ella fitzgeral";
    expect_error(
      s, &p, JB_STATUS_ERR_LABEL, "ella_fitzgerald", "unknown artist lists close matches");
    p       = primed_params(riff, n_riff);
    p.genre = "jaz";
    expect_error(s, &p, JB_STATUS_ERR_LABEL, "jazz", "unknown genre lists close matches");
    p              = primed_params(riff, n_riff);
    p.riff_samples = 0;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "empty", "empty riff");
    p              = primed_params(riff, n_riff);
    p.riff_samples = 100;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, NULL, "riff shorter than one top-level code");

    struct jb_session_info si;
    jb_session_get_info(s, &si);
    const int64_t n_long = (int64_t)(si.max_duration * 44100) + 44100;
    float *lng           = calloc((size_t)n_long, sizeof *lng);
    p                    = primed_params(lng, n_long);
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "at most", "riff longer than the model allows");
    free(lng);
    p         = primed_params(riff, n_riff);
    p.seconds = si.max_duration;
    expect_error(
      s, &p, JB_STATUS_ERR_INVALID_ARG, "at most", "riff + seconds longer than the model allows");

    p         = primed_params(riff, n_riff);
    p.seconds = 0;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "seconds", "seconds 0");
    p.seconds = -2;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "seconds", "negative seconds");
    p.seconds = NAN;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "seconds", "NaN seconds");
    p              = primed_params(riff, n_riff);
    p.n_candidates = 0;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "candidates", "0 candidates");
    p.n_candidates = 65;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "candidates", "65 candidates");
    p        = primed_params(riff, n_riff);
    p.lyrics = "la la la";
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "lyrics", "lyrics for a model without lyrics");
    p         = primed_params(riff, 4096);
    p.seconds = 0.05;
    expect_error(s,
                 &p,
                 JB_STATUS_ERR_INVALID_ARG,
                 "at least",
                 "shorter than one level-1 window (minimum named)");
    p               = primed_params(riff, n_riff);
    p.total_seconds = 1.2;
    expect_error(
      s, &p, JB_STATUS_ERR_INVALID_ARG, "shorter", "song length shorter than riff + seconds");
    p         = primed_params(riff, n_riff);
    p.temp[1] = 0;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "temperature", "temperature 0");
    p       = primed_params(riff, n_riff);
    p.top_k = 5;
    p.top_p = 0.9f;
    expect_error(s, &p, JB_STATUS_ERR_INVALID_ARG, "top_k", "top_k with top_p");
    struct jb_job_params u;
    jb_job_params_init(&u);
    u.mode = JB_JOB_UPSAMPLE;
    expect_error(s, &u, JB_STATUS_ERR_INVALID_ARG, "take", "upsample without a take");
    check(jb_session_check_labels(s, "frank sinatra", "country") == JB_STATUS_OK &&
            jb_session_check_labels(s, "frank sinatr", NULL) == JB_STATUS_ERR_LABEL,
          "jb_session_check_labels resolves like a job");
}

static bool write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)len);
    *n        = buf && fread(buf, 1, (size_t)len, f) == (size_t)len ? (size_t)len : 0;
    fclose(f);
    return buf;
}

static void test_take_files(const char *tmp, const char *models)
{
    char path[4200], bad[4200];
    snprintf(path, sizeof path, "%s/take.gguf", tmp);
    size_t n           = 0;
    unsigned char *buf = read_all(path, &n);
    check(buf && n > 0, "saved take is readable (%zu bytes)", n);
    if (!buf) return;
    struct jb_take *t = NULL;

    /* truncated at several points */
    bool all = true;
    for (int k = 1; k < 8; k++) {
        snprintf(bad, sizeof bad, "%s/trunc%d.gguf", tmp, k);
        write_file(bad, buf, n * (size_t)k / 8);
        enum jb_status st = jb_take_load(bad, &t);
        all &= st == JB_STATUS_ERR_FORMAT && t == NULL;
        jb_take_free(t);
        t = NULL;
    }
    check(all, "truncated take files (1/8 .. 7/8) are ERR_FORMAT");

    /* a code outside the codebook */
    struct jb_gguf *g = jb_gguf_open(path);
    int64_t ti        = -1;
    for (int64_t i = 0; g && i < jb_gguf_n_tensors(g); i++)
        if (strcmp(jb_gguf_tensor(g, i)->name, "codes.level1") == 0) ti = i;
    size_t off = g && ti >= 0 ? jb_gguf_data_offset(g) + jb_gguf_tensor_offset(g, ti) : 0;
    jb_gguf_close(g);
    if (off > 0 && off + 4 <= n) {
        unsigned char *cp = malloc(n);
        memcpy(cp, buf, n);
        int32_t v = 999999;
        memcpy(cp + off + 40, &v, 4);
        snprintf(bad, sizeof bad, "%s/badcode.gguf", tmp);
        write_file(bad, cp, n);
        enum jb_status st = jb_take_load(bad, &t);
        check(st == JB_STATUS_ERR_FORMAT && !t && strstr(jb_last_error(), "outside"),
              "take with a code outside the codebook -> ERR_FORMAT: %s",
              jb_last_error());
        jb_take_free(t);
        t = NULL;
        /* corrupt metadata: scribble over the first string after the header */
        memcpy(cp, buf, n);
        for (size_t i = 24; i < 200 && i < n; i++)
            cp[i] ^= 0x5a;
        snprintf(bad, sizeof bad, "%s/badmeta.gguf", tmp);
        write_file(bad, cp, n);
        st = jb_take_load(bad, &t);
        check(st == JB_STATUS_ERR_FORMAT && !t,
              "take with scrambled metadata -> ERR_FORMAT: %s",
              jb_last_error());
        jb_take_free(t);
        t = NULL;
        free(cp);
    } else {
        check(false, "found codes.level1 in the saved take");
    }

    /* random corruption anywhere: a clean error or a valid take, never a crash (ASan) */
    {
        unsigned char *cp = malloc(n);
        uint64_t x        = 42;
        int n_ok = 0, n_fmt = 0, n_other = 0;
        snprintf(bad, sizeof bad, "%s/fuzz.gguf", tmp);
        for (int it = 0; cp && it < 300; it++) {
            memcpy(cp, buf, n);
            for (int k = 0; k < 1 + it % 4; k++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                /* mostly the header and metadata, where the structure is */
                size_t at = (size_t)(x >> 33) % (it % 3 ? (n < 2048 ? n : 2048) : n);
                cp[at] ^= (unsigned char)(1u << ((x >> 20) & 7));
            }
            write_file(bad, cp, n);
            enum jb_status st = jb_take_load(bad, &t);
            if (st == JB_STATUS_OK) {
                struct jb_take_info info;
                jb_take_get_info(t, &info);
                n_ok += info.n_candidates >= 1 && info.n_candidates <= JB_JOB_MAX_CANDIDATES;
            } else if (st == JB_STATUS_ERR_FORMAT) {
                n_fmt += t == NULL;
            } else {
                n_other++;
            }
            jb_take_free(t);
            t = NULL;
        }
        check(cp && n_other == 0 && n_ok + n_fmt == 300,
              "300 randomly corrupted takes: %d rejected with ERR_FORMAT, %d still valid, %d other",
              n_fmt,
              n_ok,
              n_other);
        free(cp);
    }

    snprintf(bad, sizeof bad, "%s/garbage.gguf", tmp);
    write_file(bad, "GGUF\3\0\0\0garbage", 15);
    enum jb_status st = jb_take_load(bad, &t);
    check(st == JB_STATUS_ERR_FORMAT && !t, "garbage take -> ERR_FORMAT");
    snprintf(bad, sizeof bad, "%s/vqvae.gguf", models);
    st = jb_take_load(bad, &t);
    check(st == JB_STATUS_ERR_FORMAT && !t && strstr(jb_last_error(), "not an Encore take"),
          "a model file is not a take: %s",
          jb_last_error());
    snprintf(bad, sizeof bad, "%s/missing.gguf", tmp);
    st = jb_take_load(bad, &t);
    check(st == JB_STATUS_ERR_IO && !t, "missing take -> ERR_IO");
    free(buf);
}

/* A top prior with lyrics: primed sampling keeps the riff, and the lyrics change the codes. */
static void test_lyrics_model(const char *dir, const float *riff, int64_t n_riff)
{
    struct jb_backend *be = tc_backend_init(1);
    struct jb_session *s  = be ? jb_session_load(dir, be) : NULL;
    check(s != NULL, "lyrics model loads from %s %s", dir, s ? "" : jb_last_error());
    if (!s) {
        jb_backend_free(be);
        return;
    }
    struct jb_session_info si;
    jb_session_get_info(s, &si);
    struct jb_job_params p = primed_params(riff, n_riff);
    p.artist               = "unknown";
    p.finest_level         = 2;
    p.n_candidates         = 2;
    p.lyrics               = "I got rhythm, I got music, I got my man\nWho could ask for more?";
    enum jb_status st1, st2;
    struct jb_take *a = run_quiet(s, &p, &st1);
    p.lyrics          = "Fly me to the moon, let me play among the stars";
    struct jb_take *b = run_quiet(s, &p, &st2);
    check(si.lyrics && !st1 && !st2 && a && b,
          "%s (%s): primed job with lyrics %s",
          dir,
          si.top_kind,
          st1 || st2 ? jb_last_error() : "");
    if (a && b) {
        struct jb_take_info ia;
        jb_take_get_info(a, &ia);
        const int64_t k = ia.riff_samples / 128;
        int32_t *rc     = malloc((size_t)k * sizeof *rc);
        bool ok =
          rc && jb_vqvae_encode_level(s->vqvae->vqvae, 2, riff, ia.riff_samples, rc, NULL, NULL) ==
                  JB_STATUS_OK;
        for (int c = 0; ok && c < 2; c++)
            ok = memcmp(jb_take_codes(a, 2, c), rc, (size_t)k * 4) == 0;
        bool in_range = true;
        for (int c = 0; c < 2; c++)
            for (int64_t i = 0; i < ia.n_tokens[2]; i++)
                in_range &= jb_take_codes(a, 2, c)[i] >= 0 && jb_take_codes(a, 2, c)[i] < 2048;
        check(ok && in_range, "%s: riff codes kept, every code a music code", si.top_kind);
        check(memcmp(jb_take_codes(a, 2, 0) + k,
                     jb_take_codes(b, 2, 0) + k,
                     (size_t)(ia.n_tokens[2] - k) * 4) != 0 &&
                strstr(ia.lyrics, "rhythm"),
              "%s: other lyrics, same seed -> other codes; the take keeps the lyrics",
              si.top_kind);
        free(rc);
    }
    jb_take_free(a);
    jb_take_free(b);
    jb_session_free(s);
    jb_backend_free(be);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_pipeline MODEL_DIR [LYRICS_MODEL_DIR...]\n");
        return 2;
    }
    const char *models = argv[1];
    char path[4200];
    snprintf(path, sizeof path, "%s/prior_level_2.gguf", models);
    if (access(path, R_OK) != 0) {
        printf("SKIP: no default model at %s (build the default_model target)\n", models);
        return 77;
    }
    test_schedules();

    struct jb_audio riff = { 0 };
    /* one thread: ctest runs suites in parallel, and the pipeline itself is single-threaded */
    struct jb_backend *be = tc_backend_init(1);
    struct jb_session *s  = be ? jb_session_load(models, be) : NULL;
    check(s != NULL, "session loads from %s %s", models, s ? "" : jb_last_error());
    if (!s) goto out;
    struct jb_session_info si;
    jb_session_get_info(s, &si);
    check(si.n_levels == 3 && si.hop[0] == 8 && si.hop[1] == 32 && si.hop[2] == 128 &&
            si.bins == 2048 && si.untrained && !si.lyrics && si.min_seconds > 0,
          "session info: 3 levels, hops 8/32/128, untrained, no lyrics, min %.2f s",
          si.min_seconds);

    snprintf(path, sizeof path, "%s/riff.wav", models);
    check(jb_audio_read(path, JB_SAMPLE_RATE, 0, &riff) == JB_STATUS_OK, "riff.wav readable");
    /* 1.5 s of the riff keeps the test quick (the model needs 0.74 s at least) */
    const int64_t n_riff = riff.n_samples < 66150 ? riff.n_samples : 66150;
    char tmp[]           = "/tmp/encore-pipeline-XXXXXX";
    if (!riff.samples || !mkdtemp(tmp)) goto out;

    test_errors(s, riff.samples, n_riff);
    test_memory(s, riff.samples, n_riff);
    test_offload(s, riff.samples, n_riff);
    test_primed(s, riff.samples, n_riff, tmp);
    test_take_files(tmp, models);
    test_determinism_and_modes(s, riff.samples, n_riff);
    test_cancel(s, riff.samples, n_riff);
    for (int i = 2; i < argc; i++)
        test_lyrics_model(argv[i], riff.samples, n_riff);

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
out:
    jb_audio_free(&riff);
    jb_session_free(s);
    jb_backend_free(be);
    printf("backend %s: ", tc_backend_name());
    return tc_summary();
}
