/*
 * tools/mkdefault/mkdefault.c - writes the bundled default model: the four Jukebox model files
 * in the exact released tensor layout (jukebox-spec §2.5-§2.8) but UNTRAINED (random weights
 * from a fixed seed) and, for the priors, small; plus a synthetic riff to continue.
 *
 * It exists so that a fresh checkout can run the whole pipeline with nothing downloaded. The
 * files say so: encore.untrained = true, and `encore info` prints a warning. The audio such a
 * model produces is noise-like; that is expected.
 *
 * usage: encore-mkdefault OUT_DIR
 */
#include "format/gguf.h"
#include "format/meta.h"
#include "format/presets.h"
#include "labels/lyrics.h"
#include "model_builders.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------------------------- */
/* deterministic random numbers (splitmix64 + Box-Muller)                                    */

static uint64_t g_rng = 1234;

static uint64_t rng_next(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void)
{
    return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_normal(void)
{
    return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

/* ---------------------------------------------------------------------------------------- */
/* a model file under construction: the layouts (tests/common/model_builders.h) declare each  */
/* tensor with an init rule into this sink; finish() then draws and streams the values       */

struct decl {
    char name[160];
    int n_dims;
    int64_t shape[4];
    enum tc_init init;
    float scale;
};

struct builder {
    struct jb_gguf_writer *w;
    struct decl *decls;
    size_t n, cap;
};

static bool declare(void *ctx,
                    const char *name,
                    int n_dims,
                    const int64_t *shape,
                    enum tc_init init,
                    float scale)
{
    struct builder *b = ctx;
    if (b->n == b->cap) {
        b->cap         = b->cap ? b->cap * 2 : 256;
        struct decl *d = realloc(b->decls, b->cap * sizeof *d);
        if (!d) return false;
        b->decls = d;
    }
    struct decl *d = &b->decls[b->n++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n_dims = n_dims;
    memcpy(d->shape, shape, (size_t)n_dims * sizeof *shape);
    d->init  = init;
    d->scale = scale;
    return jb_gguf_writer_add_tensor(b->w, d->name, JB_DTYPE_F32, n_dims, shape) >= 0;
}

static enum jb_status finish(struct builder *b, bool built, const char *path)
{
    enum jb_status st = built ? jb_gguf_writer_begin(b->w, path)
                              : jb_fail(JB_STATUS_ERR_NOMEM, "building '%s' failed", path);
    for (size_t i = 0; !st && i < b->n; i++) {
        struct decl *d = &b->decls[i];
        size_t n       = 1;
        for (int k = 0; k < d->n_dims; k++)
            n *= (size_t)d->shape[k];
        float *data = malloc(n * sizeof *data);
        if (!data) {
            st = jb_fail(JB_STATUS_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t k = 0; k < n; k++)
            data[k] = d->init == TC_INIT_ZERO  ? 0.0f
                      : d->init == TC_INIT_ONE ? 1.0f + 0.01f * rng_normal()
                                               : d->scale * rng_normal();
        st = jb_gguf_writer_write_tensor(b->w, data, n * sizeof *data);
        free(data);
    }
    if (!st) st = jb_gguf_writer_finish(b->w);
    jb_gguf_writer_free(b->w);
    free(b->decls);
    return st;
}

static void common_meta(struct jb_gguf_writer *w, const char *kind, const char *preset)
{
    jb_gguf_writer_set_str(w, "general.architecture", JB_META_ARCH);
    jb_gguf_writer_set_str(w, "general.name", "encore-default-untrained");
    jb_gguf_writer_set_str(w,
                           "general.description",
                           "UNTRAINED Jukebox-layout model with random weights (seed 1234), "
                           "bundled so the pipeline runs with nothing downloaded");
    jb_gguf_writer_set_str(w, "encore.kind", kind);
    jb_gguf_writer_set_str(w, "encore.preset", preset);
    jb_gguf_writer_set_str(w, "encore.source", "encore-mkdefault");
    jb_gguf_writer_set_bool(w, "encore.untrained", true);
}

/* ---------------------------------------------------------------------------------------- */
/* VQ-VAE: the released shape (width 32, depth 4, emb 64, 2048 bins), spec §2.5              */

static enum jb_status make_vqvae(const char *path)
{
    struct jb_vqvae_hparams hp;
    jb_preset_vqvae(&hp);
    struct builder b = { .w = jb_gguf_writer_init() };
    if (!b.w) return JB_STATUS_ERR_NOMEM;
    common_meta(b.w, "vqvae", "vqvae");
    jb_meta_write_vqvae(b.w, &hp);
    return finish(&b, tc_build_vqvae((struct tc_sink){ declare, &b }, &hp), path);
}

/* ---------------------------------------------------------------------------------------- */
/* priors: released layout, small sizes                                                      */

/* v2 tables store names in their normalised form (lowercase, '_' between words). The list
 * covers every artist and genre word of the plugin's presets (presets/, checked by
 * test_presets), so presets work on the default model out of the box. */
static const char *const artist_names[] = {
    "unknown",         "ella_fitzgerald", "frank_sinatra",  "alan_jackson",  "the_beatles",
    "joe_bonamassa",   "celine_dion",     "nat_king_cole",  "elvis_presley", "johnny_cash",
    "dolly_parton",    "louis_armstrong", "billie_holiday", "b_b_king",      "muddy_waters",
    "aretha_franklin", "bob_marley",      "bob_dylan",      "ac_dc",         "michael_jackson",
    "james_brown",     "metallica",       "duke_ellington",
};
static const char *const genre_names[] = {
    "unknown", "jazz",       "country", "rock", "pop",  "blues", "soul",  "vocal",
    "classic", "rockabilly", "reggae",  "folk", "hard", "funk",  "metal", "swing",
};
#define N_ARTIST_NAMES ((int)(sizeof artist_names / sizeof artist_names[0]))
#define N_GENRE_NAMES ((int)(sizeof genre_names / sizeof genre_names[0]))

static void vocab(struct jb_gguf_writer *w)
{
    int32_t ids[64];
    for (int i = 0; i < 64; i++)
        ids[i] = i;
    jb_gguf_writer_set_arr_str(w, "jukebox.labels.artist_names", artist_names, N_ARTIST_NAMES);
    jb_gguf_writer_set_arr_i32(w, "jukebox.labels.artist_ids", ids, N_ARTIST_NAMES);
    jb_gguf_writer_set_arr_str(w, "jukebox.labels.genre_names", genre_names, N_GENRE_NAMES);
    jb_gguf_writer_set_arr_i32(w, "jukebox.labels.genre_ids", ids, N_GENRE_NAMES);
}

static void small_prior(enum jb_model_preset p, struct jb_prior_hparams *hp)
{
    jb_preset_prior(p, hp);
    hp->n_ctx       = 1024;
    hp->tr.width    = 64;
    hp->tr.depth    = 3;
    hp->tr.heads    = 2;
    hp->tr.blocks   = 16;
    hp->tr.seq_len  = hp->n_ctx;
    hp->n_artists   = N_ARTIST_NAMES;
    hp->n_genres    = N_GENRE_NAMES;
    hp->fp16_params = false;
    if (hp->variant == JB_PRIOR_UPSAMPLER) {
        hp->cond_width = 32;
        hp->cond_depth = 4;
    } else {
        hp->min_duration = 1.0; /* the real 5b prior wants songs of 60 s or more */
    }
}

static enum jb_status make_prior(enum jb_model_preset p, const char *path)
{
    struct jb_prior_hparams hp;
    small_prior(p, &hp);
    struct builder b = { .w = jb_gguf_writer_init() };
    if (!b.w) return JB_STATUS_ERR_NOMEM;
    common_meta(b.w, "prior", jb_preset_name(p));
    jb_meta_write_prior(b.w, &hp);
    jb_gguf_writer_set_str(
      b.w, "jukebox.lyrics.vocab", jb_lyrics_vocab(hp.labels_v3 ? JB_LABEL_V3 : JB_LABEL_V2));
    vocab(b.w);
    return finish(&b, tc_build_prior((struct tc_sink){ declare, &b }, &hp, false), path);
}

/* ---------------------------------------------------------------------------------------- */
/* the riff: 8 s of a plucked bass-and-chord figure (Karplus-Strong), 44.1 kHz mono          */

static enum jb_status make_riff(const char *path)
{
    const int sr = 44100, n = 8 * sr;
    float *x  = calloc((size_t)n, sizeof *x);
    float *ks = calloc(4096, sizeof *ks);
    if (!x || !ks) {
        free(x);
        free(ks);
        return JB_STATUS_ERR_NOMEM;
    }
    static const int notes[] = { 40, 47, 52, 55, 43, 50, 55, 59, 45, 52, 57, 60, 38, 45, 50, 54 };
    const double beat        = 0.5; /* 120 bpm */
    for (int k = 0; k < 16; k++) {
        double freq = 440.0 * pow(2.0, (notes[k] - 69) / 12.0);
        int len     = (int)(sr / freq);
        int start   = (int)(k * beat * sr);
        for (int i = 0; i < len; i++)
            ks[i] = (float)(rng_uniform() * 2 - 1);
        for (int t = 0; t < (int)(1.2 * sr) && start + t < n; t++) {
            int i      = t % len;
            float next = 0.996f * 0.5f * (ks[i] + ks[(i + 1) % len]);
            x[start + t] += 0.3f * ks[i];
            ks[i] = next;
        }
    }
    enum jb_status st = jb_audio_write(path, x, n, sr);
    free(x);
    free(ks);
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr,
                "usage: encore-mkdefault OUT_DIR\n"
                "Writes the untrained default model and a riff into OUT_DIR.\n");
        return 2;
    }
    const char *dir = argv[1];
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "encore-mkdefault: cannot create '%s'\n", dir);
        return 1;
    }
    struct {
        const char *file;
        int preset; /* -1: vqvae, -2: riff */
    } jobs[] = { { "vqvae.gguf", -1 },
                 { "upsampler_level_0.gguf", JB_PRESET_UPSAMPLER_LEVEL_0 },
                 { "upsampler_level_1.gguf", JB_PRESET_UPSAMPLER_LEVEL_1 },
                 { "prior_level_2.gguf", JB_PRESET_PRIOR_5B },
                 { "riff.wav", -2 } };
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, jobs[i].file);
        g_rng             = 1234 + i; /* each file has its own fixed stream */
        enum jb_status st = jobs[i].preset == -1   ? make_vqvae(path)
                            : jobs[i].preset == -2 ? make_riff(path)
                                                   : make_prior(jobs[i].preset, path);
        if (st) {
            fprintf(stderr, "encore-mkdefault: %s: %s\n", path, jb_last_error());
            return 1;
        }
    }
    return 0;
}
