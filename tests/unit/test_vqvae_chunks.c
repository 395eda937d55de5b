/*
 * tests/unit/test_vqvae_chunks.c - VQ-VAE chunking, margins and argument checks on random models
 * built in memory (no files needed).
 *
 *   - receptive-field margins of a released-shape model (width 32, depth 4, emb 64, bins 2048):
 *     decode 5742 / 80 / 82 codes, encode samples as in jukebox-spec §3.7;
 *   - on a small model of the released topology (width 8, depth 3, emb 16, bins 64): chunked
 *     decoding (chunk sizes 1, odd, around the margin, whole) and decode_range pieces equal the
 *     whole-sequence decode; a perturbed code changes no sample beyond its margin; chunked
 *     encoding equals whole encoding;
 *   - bad lengths, out-of-range codes and bad ranges are rejected with clear messages;
 *     should_stop() cancels encode and decode; progress is reported in order up to the total.
 *
 * Prints one line per check and "N passed, M failed"; exits non-zero on failure.
 */
#include "backend/cpu/cpu.h"
#include "format/presets.h"
#include "model_builders.h"
#include "test_common.h"
#include "vqvae/vqvae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* shared helpers (tests/common) under this file's names */
#define check tc_check
#define rng_next tc_rng_next
#define rng_uniform tc_rng_uniform

/* A VQ-VAE over random weights; the source and weights objects must outlive it. */
struct model {
    struct tc_weights *src;
    struct jb_weights *w;
    struct jb_vqvae *vq;
};

static bool model_init(struct model *m,
                       const struct jb_vqvae_hparams *hp,
                       struct jb_backend *be,
                       uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->src = tc_weights_new(seed);
    if (!m->src || !tc_build_vqvae(tc_weights_sink(m->src), hp)) return false;
    struct jb_weights_source src = tc_weights_source(m->src);
    m->w                         = jb_weights_init(&src);
    m->vq                        = m->w ? jb_vqvae_init(hp, m->w, be) : NULL;
    return m->vq != NULL;
}

static void model_free(struct model *m)
{
    jb_vqvae_free(m->vq);
    jb_weights_free(m->w);
    tc_weights_free(m->src);
    m->src = NULL;
}

static struct jb_vqvae_hparams released_topology(int width, int depth, int emb, int bins)
{
    struct jb_vqvae_hparams hp;
    jb_preset_vqvae(&hp); /* released topology; sizes overridden below */
    hp.width     = width;
    hp.depth     = depth;
    hp.emb_width = emb;
    hp.l_bins    = bins;
    return hp;
}

/* ---------------------------------------------------------------------------------------- */
/* helpers                                                                                   */

static double rel_err(const float *a, const float *ref, int64_t n, int64_t *n_diff)
{
    double num = 0, den = 0;
    *n_diff = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)ref[i];
        num += e * e;
        den += (double)ref[i] * (double)ref[i];
        *n_diff += a[i] != ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1.0));
}

struct stop_after {
    int calls, limit;
    int64_t last_done, last_total;
    bool monotonic;
};

static bool stop_after_fn(void *user)
{
    struct stop_after *s = user;
    return ++s->calls > s->limit;
}

static void progress_fn(const struct jb_progress *p, void *user)
{
    struct stop_after *s = user;
    if (p->done < s->last_done || p->done > p->total) s->monotonic = false;
    s->last_done  = p->done;
    s->last_total = p->total;
}

static bool contains(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* tests                                                                                     */

static void test_released_margins(struct jb_backend *be)
{
    struct jb_vqvae_hparams hp = released_topology(32, 4, 64, 2048);
    struct model m;
    bool ok = model_init(&m, &hp, be, 7);
    check(ok,
          "released-shape VQ-VAE builds from %d spec-named tensors (%s)",
          (int)(m.src ? tc_weights_count(m.src) : 0),
          ok ? "" : jb_last_error());
    if (!ok) {
        model_free(&m);
        return;
    }
    check(jb_weights_check_all_used(m.w) == JB_STATUS_OK, "released-shape: every tensor used");

    static const int64_t dec[3] = { 5742, 80, 82 };
    static const int64_t lo[3] = { 45935, 2551, 10455 }, hi[3] = { 45942, 2582, 10582 };
    for (int L = 0; L < 3; L++) {
        int64_t M = jb_vqvae_decode_margin_level(m.vq, L);
        check(M == dec[L],
              "released decode margin level %d = %lld (spec %lld)",
              L,
              (long long)M,
              (long long)dec[L]);
        int64_t a, b, E = jb_vqvae_encode_margin_level(m.vq, L, &a, &b);
        int64_t hop = jb_vqvae_hp_hop(&hp, L);
        check(a == lo[L] && b == hi[L] && E == (hi[L] + hop - 1) / hop,
              "released encode field level %d = [%lld·c − %lld, %lld·c + %lld], margin %lld codes",
              L,
              (long long)hop,
              (long long)a,
              (long long)hop,
              (long long)b,
              (long long)E);
    }
    check(jb_vqvae_decode_margin_level(m.vq, 3) == -1 &&
            jb_vqvae_decode_margin_level(m.vq, -1) == -1,
          "margin of a bad level is -1");
    model_free(&m);
}

/* Decodes n random codes at level L whole, then in chunks of each size in chunks[] (0 = the
 * margin M, -1 = 2M + 1, -2 = n − 1, -3 = n, -4 = n + 5), then (if full) as decode_range
 * pieces and with one code perturbed. */
static void test_decode_chunks(struct model *m,
                               int L,
                               int64_t n,
                               const int64_t *chunks,
                               int n_chunks,
                               bool full)
{
    struct jb_vqvae *vq = m->vq;
    int64_t hop         = jb_vqvae_hp_hop(jb_vqvae_get_hparams(vq), L);
    int64_t M           = jb_vqvae_decode_margin_level(vq, L);
    int32_t *z          = malloc((size_t)n * sizeof *z);
    float *ref          = malloc((size_t)(n * hop) * sizeof(float));
    float *y            = malloc((size_t)(n * hop) * sizeof(float));
    if (!z || !ref || !y) {
        check(false, "level %d: out of memory", L);
        goto done;
    }
    uint64_t rng = 1234 + (uint64_t)L;
    int bins     = jb_vqvae_get_hparams(vq)->l_bins;
    for (int64_t i = 0; i < n; i++)
        z[i] = (int32_t)(rng_next(&rng) % (uint64_t)bins);

    enum jb_status st = jb_vqvae_decode_level(vq, L, z, n, ref, 0, NULL);
    check(st == JB_STATUS_OK,
          "level %d: whole decode of %lld codes (margin %lld)",
          L,
          (long long)n,
          (long long)M);
    if (st != JB_STATUS_OK) goto done;
    double rms = 0;
    for (int64_t i = 0; i < n * hop; i++)
        rms += (double)ref[i] * ref[i];
    rms = sqrt(rms / (double)(n * hop));
    check(isfinite(rms) && rms > 1e-6,
          "level %d: decoded audio is finite and non-zero (rms %.3g)",
          L,
          rms);

    for (int c = 0; c < n_chunks; c++) {
        int64_t ch = chunks[c];
        ch         = ch == 0    ? M
                     : ch == -1 ? 2 * M + 1
                     : ch == -2 ? n - 1
                     : ch == -3 ? n
                     : ch == -4 ? n + 5
                                : ch;
        memset(y, 0xff, (size_t)(n * hop) * sizeof(float)); /* NaNs: every sample must be written */
        st = jb_vqvae_decode_level(vq, L, z, n, y, ch, NULL);
        int64_t nd;
        double e = st == JB_STATUS_OK ? rel_err(y, ref, n * hop, &nd) : INFINITY;
        check(st == JB_STATUS_OK && e <= 1e-6,
              "level %d: chunked decode (chunk %lld) == whole: rel err %.3g, %lld of %lld samples "
              "not bit-identical",
              L,
              (long long)ch,
              e,
              (long long)(st == JB_STATUS_OK ? nd : -1),
              (long long)(n * hop));
    }

    if (!full) goto done;

    /* decode_range: irregular pieces, concatenated */
    {
        memset(y, 0xff, (size_t)(n * hop) * sizeof(float));
        int64_t a = 0;
        int k     = 0;
        st        = JB_STATUS_OK;
        /* odd pieces with their own work memory, long ones with work reserved once */
        struct jb_vqvae_work *wk = jb_vqvae_decode_work_init(vq, L, n, 2 * M + 50);
        while (a < n && st == JB_STATUS_OK && wk) {
            int64_t len = 1 + (int64_t)(rng_next(&rng) % (uint64_t)(k % 3 == 0 ? 5 : 2 * M + 50));
            int64_t b   = a + len < n ? a + len : n;
            st          = jb_vqvae_decode_range(vq, L, z, n, a, b, y + a * hop, k % 2 ? wk : NULL);
            a           = b;
            k++;
        }
        if (!wk) st = JB_STATUS_ERR_NOMEM;
        jb_vqvae_work_free(wk);
        int64_t nd;
        double e = st == JB_STATUS_OK ? rel_err(y, ref, n * hop, &nd) : INFINITY;
        check(st == JB_STATUS_OK && e <= 1e-6,
              "level %d: %d decode_range pieces concatenated == whole: rel err %.3g, %lld "
              "samples not bit-identical",
              L,
              k,
              e,
              (long long)(st == JB_STATUS_OK ? nd : -1));
    }

    /* a perturbed code changes samples within its margin only, and reaches close to it */
    {
        int64_t c     = n / 2;
        z[c]          = (z[c] + 1) % bins;
        st            = jb_vqvae_decode_level(vq, L, z, n, y, 0, NULL);
        z[c]          = (z[c] + bins - 1) % bins;
        int64_t first = -1, last = -1;
        for (int64_t i = 0; st == JB_STATUS_OK && i < n * hop; i++) {
            if (y[i] != ref[i]) {
                if (first < 0) first = i;
                last = i;
            }
        }
        int64_t reach_lo = first >= 0 ? c - first / hop : -1;
        int64_t reach_hi = last >= 0 ? last / hop - c : -1;
        check(st == JB_STATUS_OK && first >= 0 && reach_lo <= M && reach_hi <= M,
              "level %d: perturbing code %lld changes codes [c − %lld, c + %lld] of audio, within "
              "the margin %lld",
              L,
              (long long)c,
              (long long)reach_lo,
              (long long)reach_hi,
              (long long)M);
        /* The far edge is reached through one chain of edge taps; the change there can be
         * absorbed by fp32 rounding, so allow a few codes of slack. */
        int64_t slack = M / 50 > 3 ? M / 50 : 3;
        check(reach_lo >= M - slack || reach_hi >= M - slack,
              "level %d: the margin is tight (reach %lld / %lld vs %lld, slack %lld)",
              L,
              (long long)reach_lo,
              (long long)reach_hi,
              (long long)M,
              (long long)slack);
    }

done:
    free(z);
    free(ref);
    free(y);
}

static void test_encode(struct model *m, int64_t n_samples)
{
    struct jb_vqvae *vq               = m->vq;
    const struct jb_vqvae_hparams *hp = jb_vqvae_get_hparams(vq);
    float *x                          = malloc((size_t)n_samples * sizeof(float));
    uint64_t rng                      = 99;
    for (int64_t i = 0; i < n_samples; i++)
        x[i] = 0.5f * sinf(0.01f * (float)i) + 0.1f * rng_uniform(&rng);

    for (int L = 0; L < hp->levels; L++) {
        int64_t hop = jb_vqvae_hp_hop(hp, L), n = n_samples / hop;
        int64_t E  = jb_vqvae_encode_margin_level(vq, L, NULL, NULL);
        int32_t *z = malloc((size_t)n * sizeof *z), *z2 = malloc((size_t)n * sizeof *z);
        float *p          = malloc((size_t)(n * hp->emb_width) * sizeof(float));
        float *p2         = malloc((size_t)(n * hp->emb_width) * sizeof(float));
        enum jb_status st = jb_vqvae_encode_level(vq, L, x, n_samples, z, p, NULL);
        bool in_range     = st == JB_STATUS_OK;
        for (int64_t i = 0; in_range && i < n; i++)
            in_range = z[i] >= 0 && z[i] < hp->l_bins;
        check(in_range,
              "level %d: encode %lld samples -> %lld codes in range",
              L,
              (long long)n_samples,
              (long long)n);
        /* chunks of 1 and 13 only where the margin is small: each chunk encodes 2E + chunk */
        int64_t sizes[] = { E + 3, n / 2 + 1, 13, 1 };
        int n_sizes     = E < 100 ? 4 : 2;
        for (int s = 0; st == JB_STATUS_OK && s < n_sizes; s++) {
            enum jb_status st2 =
              jb_vqvae_encode_level_chunked(vq, L, x, n_samples, z2, p2, sizes[s], NULL);
            int64_t nd = -1, nz = 0;
            double e = st2 == JB_STATUS_OK ? rel_err(p2, p, n * hp->emb_width, &nd) : INFINITY;
            for (int64_t i = 0; st2 == JB_STATUS_OK && i < n; i++)
                nz += z[i] != z2[i];
            /* identical codes when the encoder output is bit-identical (the AVX-512 kernels);
             * otherwise a rare near-tie may flip */
            bool codes_ok = nd == 0 ? nz == 0 : nz <= 1 + n / 1000;
            check(st2 == JB_STATUS_OK && e <= 1e-6 && codes_ok,
                  "level %d: chunked encode (chunk %lld) == whole: prequant rel err %.3g (%lld not "
                  "bit-identical), %lld codes differ",
                  L,
                  (long long)sizes[s],
                  e,
                  (long long)(st2 == JB_STATUS_OK ? nd : -1),
                  (long long)nz);
        }
        free(z);
        free(z2);
        free(p);
        free(p2);
    }
    free(x);
}

/* The chunking `encore encode` uses for long audio (a work budget) gives the codes of one pass,
 * and its work stays within the budget. */
static void test_encode_budget(struct model *m, int64_t n_samples)
{
    struct jb_vqvae *vq               = m->vq;
    const struct jb_vqvae_hparams *hp = jb_vqvae_get_hparams(vq);
    float *x                          = malloc((size_t)n_samples * sizeof(float));
    uint64_t rng                      = 5;
    for (int64_t i = 0; i < n_samples; i++)
        x[i] = 0.4f * sinf(0.003f * (float)i) + 0.2f * rng_uniform(&rng);
    for (int L = 0; L < hp->levels; L++) {
        int64_t n    = n_samples / jb_vqvae_hp_hop(hp, L);
        size_t whole = jb_vqvae_encode_work_bytes(vq, L, n_samples, 0);
        size_t limit = whole / 3;
        int64_t c    = jb_vqvae_encode_chunk_for_budget(vq, L, n_samples, limit);
        int32_t *z = malloc((size_t)n * sizeof *z), *z2 = malloc((size_t)n * sizeof *z);
        float *p           = malloc((size_t)(n * hp->emb_width) * sizeof(float));
        float *p2          = malloc((size_t)(n * hp->emb_width) * sizeof(float));
        enum jb_status st  = jb_vqvae_encode_level(vq, L, x, n_samples, z, p, NULL);
        enum jb_status st2 = c > 0
                               ? jb_vqvae_encode_level_chunked(vq, L, x, n_samples, z2, p2, c, NULL)
                               : JB_STATUS_ERR_INVALID_ARG;
        int64_t nd = -1, nz = 0;
        double e = st == JB_STATUS_OK && st2 == JB_STATUS_OK
                     ? rel_err(p2, p, n * hp->emb_width, &nd)
                     : INFINITY;
        for (int64_t i = 0; st2 == JB_STATUS_OK && i < n; i++)
            nz += z[i] != z2[i];
        bool codes_ok = nd == 0 ? nz == 0 : nz <= 1 + n / 1000;
        size_t used   = c > 0 ? jb_vqvae_encode_work_bytes(vq, L, n_samples, c) : 0;
        check(c > 0 && c < n && used <= limit && e <= 1e-6 && codes_ok,
              "level %d: budget %zu of %zu bytes -> chunk %lld (work %zu): codes == one pass "
              "(%lld differ, %lld values not bit-identical)",
              L,
              limit,
              whole,
              (long long)c,
              used,
              (long long)nz,
              (long long)nd);
        check(jb_vqvae_encode_chunk_default(vq, L, n_samples) == 0 &&
                jb_vqvae_encode_chunk_for_budget(vq, L, n_samples, whole) == 0,
              "level %d: short audio, or a budget the whole pass fits, is encoded in one pass",
              L);
        free(z), free(z2), free(p), free(p2);
    }
    free(x);
}

static void test_errors(struct model *m)
{
    struct jb_vqvae *vq               = m->vq;
    const struct jb_vqvae_hparams *hp = jb_vqvae_get_hparams(vq);
    int64_t top                       = jb_vqvae_hp_hop(hp, hp->levels - 1);
    float x[1024]                     = { 0 };
    int32_t z[1024]                   = { 0 };
    float y[1024 * 8];

    enum jb_status st = jb_vqvae_encode_level(vq, 0, x, top + 1, z, NULL, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG && contains(jb_last_error(), "multiple"),
          "encode of %lld samples rejected: %s",
          (long long)(top + 1),
          jb_last_error());
    st = jb_vqvae_encode_level(vq, 0, x, 0, z, NULL, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG, "encode of 0 samples rejected: %s", jb_last_error());
    st = jb_vqvae_encode_level(vq, 3, x, top, z, NULL, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG && contains(jb_last_error(), "level"),
          "encode at level 3 rejected: %s",
          jb_last_error());

    z[5] = hp->l_bins;
    st   = jb_vqvae_decode_level(vq, 0, z, 100, y, 0, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG && contains(jb_last_error(), "out of range"),
          "decode of code %d rejected: %s",
          hp->l_bins,
          jb_last_error());
    z[5] = -1;
    st   = jb_vqvae_decode_level(vq, 1, z, 100, y, 7, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG && contains(jb_last_error(), "out of range"),
          "chunked decode of code -1 rejected: %s",
          jb_last_error());
    st = jb_vqvae_decode_range(vq, 2, z, 100, 0, 4, y, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG,
          "decode_range reading code -1 rejected: %s",
          jb_last_error());
    z[5] = 0;
    st   = jb_vqvae_decode_range(vq, 2, z, 100, 10, 10, y, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG, "empty decode_range rejected: %s", jb_last_error());
    st = jb_vqvae_decode_range(vq, 2, z, 100, 90, 101, y, NULL);
    check(
      st == JB_STATUS_ERR_INVALID_ARG, "decode_range past the end rejected: %s", jb_last_error());
    st = jb_vqvae_decode_level(vq, 0, z, 0, y, 0, NULL);
    check(st == JB_STATUS_ERR_INVALID_ARG, "decode of 0 codes rejected: %s", jb_last_error());
}

static void test_cancel_progress(struct model *m)
{
    struct jb_vqvae *vq = m->vq;
    int64_t n           = 600;
    int32_t *z          = calloc((size_t)n, sizeof *z);
    float *y            = malloc((size_t)(n * 128) * sizeof(float));

    struct stop_after s    = { .limit = 2, .monotonic = true };
    struct jb_callbacks cb = { progress_fn, stop_after_fn, &s };
    enum jb_status st      = jb_vqvae_decode_level(vq, 0, z, n, y, 50, &cb);
    check(
      st == JB_STATUS_ERR_CANCELLED, "chunked decode cancelled by should_stop (%d polls)", s.calls);

    s  = (struct stop_after){ .limit = 1, .monotonic = true };
    st = jb_vqvae_decode_level(vq, 2, z, n, y, 0, &cb);
    check(st == JB_STATUS_ERR_CANCELLED,
          "whole decode cancelled between level blocks (%d polls)",
          s.calls);

    s  = (struct stop_after){ .limit = 1, .monotonic = true };
    st = jb_vqvae_encode_level(vq, 2, y, n * 128, z, NULL, &cb);
    check(
      st == JB_STATUS_ERR_CANCELLED, "encode cancelled between level blocks (%d polls)", s.calls);

    s  = (struct stop_after){ .limit = 1 << 30, .monotonic = true };
    st = jb_vqvae_decode_level(vq, 1, z, n, y, 64, &cb);
    check(st == JB_STATUS_OK && s.monotonic && s.last_done == n && s.last_total == n,
          "progress in order, ends at %lld / %lld codes",
          (long long)s.last_done,
          (long long)s.last_total);
    free(z);
    free(y);
}

static void test_bad_models(struct jb_backend *be)
{
    struct jb_vqvae_hparams hp = released_topology(8, 1, 16, 64);
    struct model m;
    memset(&m, 0, sizeof m);
    m.src = tc_weights_new(0);
    tc_build_vqvae(tc_weights_sink(m.src), &hp);
    tc_weights_drop_last(m.src); /* drop one tensor */
    struct jb_weights_source src = tc_weights_source(m.src);
    m.w                          = jb_weights_init(&src);
    m.vq                         = jb_vqvae_init(&hp, m.w, be);
    check(!m.vq && contains(jb_last_error(), "bottleneck.level_blocks.2.k"),
          "missing tensor rejected: %s",
          jb_last_error());
    model_free(&m);

    hp.strides_t[1] = 3;
    memset(&m, 0, sizeof m);
    check(!model_init(&m, &hp, be, 7) && contains(jb_last_error(), "stride"),
          "odd stride rejected: %s",
          jb_last_error());
    model_free(&m);
}

/* The same decode on a backend with another thread count: chunked there == whole here, bitwise (the
 * kernels' per-output order does not depend on T, the tile or the thread count). */
static void test_threads(struct model *m, int n_threads, int n_threads_m)
{
    struct jb_backend *be2 = jb_backend_cpu_init(n_threads);
    struct model m2;
    bool ok = be2 && model_init(&m2, jb_vqvae_get_hparams(m->vq), be2, 42);
    check(ok, "second backend with %d threads (%s)", n_threads, ok ? "" : jb_last_error());
    if (ok) {
        const int64_t n = 1032;
        int32_t *z      = malloc((size_t)n * sizeof *z);
        float *a        = malloc((size_t)n * 32 * sizeof(float));
        float *b        = malloc((size_t)n * 32 * sizeof(float));
        uint64_t rng    = 5;
        for (int64_t i = 0; i < n; i++)
            z[i] = (int32_t)(rng_next(&rng) % 64);
        enum jb_status s1 = jb_vqvae_decode_level(m->vq, 1, z, n, a, 0, NULL);
        enum jb_status s2 = jb_vqvae_decode_level(m2.vq, 1, z, n, b, 333, NULL);
        int64_t nd;
        double e = s1 == JB_STATUS_OK && s2 == JB_STATUS_OK ? rel_err(b, a, n * 32, &nd) : INFINITY;
        check(e <= 1e-6,
              "level 1: chunked decode on %d threads == whole on %d: rel err %.3g, %lld "
              "samples not bit-identical",
              n_threads,
              n_threads_m,
              e,
              (long long)(e <= 1e-6 ? nd : -1));
        free(z);
        free(a);
        free(b);
    }
    if (ok) model_free(&m2);
    jb_backend_free(be2);
}

/* A model whose level-0 blocks reach dilation 27 (depth 2 x multiplier 2): on AVX-512 those take
 * Winograd F(2,3), whose pairs are anchored in the whole sequence (the resblock op's origin), so
 * chunked encoding and decoding must still give the whole's bits, as the direct sums do on every
 * SIMD level (the portable level's BLAS sums depend on the length). */
static void test_chunks_bitwise(struct jb_backend *be)
{
    struct jb_vqvae_hparams hp = released_topology(8, 2, 16, 64);
    struct model m;
    bool ok = model_init(&m, &hp, be, 44);
    check(ok, "VQ-VAE with dilation 27 (width 8, depth 2) builds (%s)", ok ? "" : jb_last_error());
    if (!ok) return;
    const bool simd       = jb_cpu_set_isa(be, JB_CPU_ISA_AVX512) >= JB_CPU_ISA_AVX2;
    const int64_t samples = 65536, hop = jb_vqvae_hp_hop(&hp, 0), n = samples / hop;
    const int64_t E = jb_vqvae_encode_margin_level(m.vq, 0, NULL, NULL);
    const int64_t M = jb_vqvae_decode_margin_level(m.vq, 0);
    float *x = malloc((size_t)samples * sizeof *x), *p = malloc((size_t)(n * 16) * sizeof *p);
    float *p2 = malloc((size_t)(n * 16) * sizeof *p2), *y = malloc((size_t)samples * sizeof *y);
    float *y2  = malloc((size_t)samples * sizeof *y2);
    int32_t *z = malloc((size_t)n * sizeof *z), *z2 = malloc((size_t)n * sizeof *z2);
    uint64_t rng = 5;
    for (int64_t i = 0; i < samples; i++)
        x[i] = 0.4f * sinf(0.02f * (float)i) + 0.1f * rng_uniform(&rng);
    enum jb_status st = jb_vqvae_encode_level(m.vq, 0, x, samples, z, p, NULL);
    if (st == JB_STATUS_OK) st = jb_vqvae_decode_level(m.vq, 0, z, n, y, 0, NULL);
    const int64_t sizes[2][2] = { { E + 3, n / 2 + 1 }, { M + 1, 333 } };
    for (int k = 0; k < 2 && st == JB_STATUS_OK; k++) {
        int64_t ne = -1, nz = 0, ny = -1;
        enum jb_status s1 =
          jb_vqvae_encode_level_chunked(m.vq, 0, x, samples, z2, p2, sizes[0][k], NULL);
        enum jb_status s2 = jb_vqvae_decode_level(m.vq, 0, z, n, y2, sizes[1][k], NULL);
        double ee         = s1 == JB_STATUS_OK ? rel_err(p2, p, n * 16, &ne) : INFINITY;
        double ey         = s2 == JB_STATUS_OK ? rel_err(y2, y, samples, &ny) : INFINITY;
        for (int64_t i = 0; s1 == JB_STATUS_OK && i < n; i++)
            nz += z[i] != z2[i];
        check(ee <= 1e-6 && ey <= 1e-6 && (!simd || (ne == 0 && nz == 0 && ny == 0)),
              "dilation 27, level 0: chunked encode (chunk %lld) and decode (chunk %lld) == whole "
              "(%s): prequant %lld and audio %lld values differ (rel %.3g, %.3g), %lld codes",
              (long long)sizes[0][k],
              (long long)sizes[1][k],
              simd ? "bitwise" : "to rounding",
              (long long)ne,
              (long long)ny,
              ee,
              ey,
              (long long)nz);
    }
    check(
      st == JB_STATUS_OK, "dilation 27: whole encode and decode (%s)", st ? jb_last_error() : "");
    free(x), free(p), free(p2), free(y), free(y2), free(z), free(z2);
    model_free(&m);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* One kernel thread by default: the results do not depend on it (checked once below with
     * more), and it keeps the test fast on a busy machine. argv[1] overrides. */
    int n_threads         = argc > 1 ? atoi(argv[1]) : 1;
    struct jb_backend *be = jb_backend_cpu_init(n_threads);
    if (!be) {
        printf("FAIL no backend: %s\n", jb_last_error());
        return 1;
    }
    test_released_margins(be);

    struct jb_vqvae_hparams hp = released_topology(8, 3, 16, 64);
    struct model m;
    bool ok = model_init(&m, &hp, be, 42);
    check(ok,
          "small VQ-VAE (width 8, depth 3, emb 16, bins 64) builds (%s)",
          ok ? "" : jb_last_error());
    if (ok) {
        check(jb_weights_check_all_used(m.w) == JB_STATUS_OK, "small model: every tensor used");
        /* About 3 s of audio (132096 samples = 1032 top-level codes) at levels 1 and 2, 0.75 s
         * at level 0, whose margin (639 codes here) makes small chunks expensive: each chunk
         * decodes 2M + chunk codes. Chunk size 1 on short sequences. */
        static const int64_t sizes[] = { 7, 333, 0, -1, -2, -3, -4 };
        test_decode_chunks(&m, 0, 132096 / 32, sizes + 1, 6, true);
        test_decode_chunks(&m, 1, 132096 / 32, sizes, 7, true);
        test_decode_chunks(&m, 2, 132096 / 128, sizes, 7, true);
        static const int64_t ones[] = { 1, 2, -3 };
        test_decode_chunks(&m, 1, 200, ones, 3, false);
        test_decode_chunks(&m, 2, 200, ones, 3, false);
        test_encode(&m, 32768);
        test_encode_budget(&m, 65536);
        test_errors(&m);
        test_cancel_progress(&m);
        test_threads(&m, n_threads > 1 ? 1 : 2, n_threads);
    }
    model_free(&m);

    /* level 0 with chunk sizes 1 and 7 on a shallower model (depth 1: margin in tens of codes) */
    hp = released_topology(8, 1, 16, 64);
    ok = model_init(&m, &hp, be, 43);
    check(ok, "shallow VQ-VAE (width 8, depth 1) builds (%s)", ok ? "" : jb_last_error());
    if (ok) {
        static const int64_t small[] = { 1, 7, 0, -3 };
        test_decode_chunks(&m, 0, 1000, small, 4, true);
    }
    model_free(&m);

    test_chunks_bitwise(be);
    test_bad_models(be);

    jb_backend_free(be);
    return tc_summary();
}
