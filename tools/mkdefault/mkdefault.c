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
/* a model file under construction: tensors are declared with an init rule, then generated   */

enum init { INIT_ZERO, INIT_ONE, INIT_NORMAL };

struct decl {
    char name[160];
    int n_dims;
    int64_t shape[4];
    enum init init;
    float scale;
};

struct builder {
    struct jb_gguf_writer *w;
    struct decl *decls;
    size_t n, cap;
    bool failed;
};

static void add(struct builder *b,
                enum init init,
                float scale,
                int n_dims,
                const int64_t *shape,
                const char *fmt,
                ...) JB_PRINTF(6, 7);

static void add(struct builder *b,
                enum init init,
                float scale,
                int n_dims,
                const int64_t *shape,
                const char *fmt,
                ...)
{
    if (b->n == b->cap) {
        b->cap         = b->cap ? b->cap * 2 : 256;
        struct decl *d = realloc(b->decls, b->cap * sizeof *d);
        if (!d) {
            b->failed = true;
            return;
        }
        b->decls = d;
    }
    struct decl *d = &b->decls[b->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->name, sizeof d->name, fmt, ap);
    va_end(ap);
    d->n_dims = n_dims;
    memcpy(d->shape, shape, (size_t)n_dims * sizeof *shape);
    d->init  = init;
    d->scale = scale;
    if (jb_gguf_writer_add_tensor(b->w, d->name, JB_DTYPE_F32, n_dims, shape) < 0) b->failed = true;
}

#define S1(a)                                                                                      \
    1, (const int64_t[])                                                                           \
    {                                                                                              \
        (a)                                                                                        \
    }
#define S2(a, b)                                                                                   \
    2, (const int64_t[])                                                                           \
    {                                                                                              \
        (a), (b)                                                                                   \
    }
#define S3(a, b, c)                                                                                \
    3, (const int64_t[])                                                                           \
    {                                                                                              \
        (a), (b), (c)                                                                              \
    }

/* Conv weight N(0, 1/fan_in) + small bias: keeps activations O(1) through deep stacks. */
static void conv(struct builder *b,
                 int64_t cout,
                 int64_t cin,
                 int64_t k,
                 float gain,
                 const char *prefix)
{
    add(b, INIT_NORMAL, gain / sqrtf((float)(cin * k)), S3(cout, cin, k), "%s.weight", prefix);
    add(b, INIT_NORMAL, 0.01f, S1(cout), "%s.bias", prefix);
}

static void conv_t(struct builder *b, int64_t cin, int64_t cout, int64_t k, const char *prefix)
{
    add(b, INIT_NORMAL, 1.0f / sqrtf((float)(cin * 2)), S3(cin, cout, k), "%s.weight", prefix);
    add(b, INIT_NORMAL, 0.01f, S1(cout), "%s.bias", prefix);
}

static enum jb_status finish(struct builder *b, const char *path)
{
    if (b->failed) return jb_fail(JB_STATUS_ERR_NOMEM, "mkdefault: building '%s' failed", path);
    enum jb_status st = jb_gguf_writer_begin(b->w, path);
    for (size_t i = 0; !st && i < b->n; i++) {
        struct decl *d = &b->decls[i];
        size_t n       = 1;
        for (int k = 0; k < d->n_dims; k++)
            n *= (size_t)d->shape[k];
        float *data = malloc(n * sizeof *data);
        if (!data) return jb_fail(JB_STATUS_ERR_NOMEM, "mkdefault: out of memory");
        for (size_t k = 0; k < n; k++)
            data[k] = d->init == INIT_ZERO  ? 0.0f
                      : d->init == INIT_ONE ? 1.0f + 0.01f * rng_normal()
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

static void resnet(struct builder *b,
                   int depth,
                   int64_t width,
                   const char *prefix,
                   const char *blocks)
{
    char name[200];
    for (int r = 0; r < depth; r++) {
        snprintf(name, sizeof name, "%s.%s.%d.model.1", prefix, blocks, r);
        conv(b, width, width, 3, 0.5f, name);
        snprintf(name, sizeof name, "%s.%s.%d.model.3", prefix, blocks, r);
        conv(b, width, width, 1, 0.5f, name);
    }
}

static enum jb_status make_vqvae(const char *path)
{
    struct jb_vqvae_hparams hp;
    jb_preset_vqvae(&hp);
    struct builder b = { .w = jb_gguf_writer_init() };
    if (!b.w) return JB_STATUS_ERR_NOMEM;
    common_meta(b.w, "vqvae", "vqvae");
    jb_meta_write_vqvae(b.w, &hp);
    char name[200];
    for (int L = 0; L < hp.levels; L++) {
        int64_t W = jb_vqvae_hp_width(&hp, L), D = jb_vqvae_hp_depth(&hp, L);
        for (int j = 0; j <= L; j++) {
            for (int i = 0; i < hp.downs_t[j]; i++) {
                int64_t cin = (i == 0) ? (j == 0 ? 1 : hp.emb_width) : W;
                snprintf(name, sizeof name, "encoders.%d.level_blocks.%d.model.%d.0", L, j, i);
                conv(&b, W, cin, 4, 1.0f, name);
                snprintf(name, sizeof name, "encoders.%d.level_blocks.%d.model.%d.1", L, j, i);
                resnet(&b, (int)D, W, name, "model");
            }
            snprintf(
              name, sizeof name, "encoders.%d.level_blocks.%d.model.%d", L, j, hp.downs_t[j]);
            conv(&b, hp.emb_width, W, 3, 1.0f, name);
        }
        for (int j = 0; j <= L; j++) {
            snprintf(name, sizeof name, "decoders.%d.level_blocks.%d.model.0", L, j);
            conv(&b, W, hp.emb_width, 3, 1.0f, name);
            for (int i = 0; i < hp.downs_t[j]; i++) {
                snprintf(name, sizeof name, "decoders.%d.level_blocks.%d.model.%d.0", L, j, i + 1);
                resnet(&b, (int)D, W, name, "model");
                snprintf(name, sizeof name, "decoders.%d.level_blocks.%d.model.%d.1", L, j, i + 1);
                conv_t(&b, W, i == hp.downs_t[j] - 1 ? hp.emb_width : W, 4, name);
            }
        }
        snprintf(name, sizeof name, "decoders.%d.out", L);
        conv(&b, 1, hp.emb_width, 3, 0.3f, name);
    }
    for (int L = 0; L < hp.levels; L++)
        add(&b, INIT_NORMAL, 1.0f, S2(hp.l_bins, hp.emb_width), "bottleneck.level_blocks.%d.k", L);
    return finish(&b, path);
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

static void transformer(struct builder *b,
                        const struct jb_transformer_hparams *tr,
                        const char *prefix)
{
    int64_t w = tr->width, ns = (int64_t)(tr->m_attn * (float)tr->width);
    int64_t hid = (int64_t)(tr->m_mlp * (float)tr->width);
    float s     = 0.5f / sqrtf((float)w);
    for (int d = 0; d < tr->depth; d++) {
        add(b,
            INIT_NORMAL,
            s,
            S2(w, 3 * ns),
            "%s.transformer._attn_mods.%d.attn.c_attn.w",
            prefix,
            d);
        add(b, INIT_ZERO, 0, S1(3 * ns), "%s.transformer._attn_mods.%d.attn.c_attn.b", prefix, d);
        add(b, INIT_NORMAL, s, S2(ns, w), "%s.transformer._attn_mods.%d.attn.c_proj.w", prefix, d);
        add(b, INIT_ZERO, 0, S1(w), "%s.transformer._attn_mods.%d.attn.c_proj.b", prefix, d);
        add(b, INIT_ONE, 0, S1(w), "%s.transformer._attn_mods.%d.ln_0.weight", prefix, d);
        add(b, INIT_ZERO, 0, S1(w), "%s.transformer._attn_mods.%d.ln_0.bias", prefix, d);
        add(b, INIT_NORMAL, s, S2(w, hid), "%s.transformer._attn_mods.%d.mlp.c_fc.w", prefix, d);
        add(b, INIT_ZERO, 0, S1(hid), "%s.transformer._attn_mods.%d.mlp.c_fc.b", prefix, d);
        add(b, INIT_NORMAL, s, S2(hid, w), "%s.transformer._attn_mods.%d.mlp.c_proj.w", prefix, d);
        add(b, INIT_ZERO, 0, S1(w), "%s.transformer._attn_mods.%d.mlp.c_proj.b", prefix, d);
        add(b, INIT_ONE, 0, S1(w), "%s.transformer._attn_mods.%d.ln_1.weight", prefix, d);
        add(b, INIT_ZERO, 0, S1(w), "%s.transformer._attn_mods.%d.ln_1.bias", prefix, d);
    }
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
    int64_t w = hp.tr.width;
    add(&b, INIT_NORMAL, 0.02f, S2(hp.n_genres, w), "y_emb.bow_genre_emb.emb.weight");
    add(&b, INIT_NORMAL, 0.02f, S2(hp.n_artists, w), "y_emb.artist_emb.emb.weight");
    if (hp.timing) {
        add(&b, INIT_NORMAL, 0.01f, S2(hp.t_bins, w), "y_emb.total_length_emb.emb.weight");
        add(&b, INIT_NORMAL, 0.01f, S2(hp.t_bins, w), "y_emb.absolute_pos_emb.emb.weight");
        add(&b, INIT_NORMAL, 0.01f, S2(hp.t_bins, w), "y_emb.relative_pos_emb.emb.weight");
    }
    if (hp.variant == JB_PRIOR_UPSAMPLER) {
        char name[200];
        add(&b, INIT_NORMAL, 0.02f, S2(hp.bins, w), "conditioner_blocks.0.x_emb.weight");
        conv(&b, hp.cond_width, w, 3, 1.0f, "conditioner_blocks.0.cond.model.0");
        for (int i = 0; i < hp.cond_downs; i++) {
            snprintf(name, sizeof name, "conditioner_blocks.0.cond.model.%d.0", i + 1);
            resnet(&b, hp.cond_depth, hp.cond_width, name, "blocks");
            snprintf(name, sizeof name, "conditioner_blocks.0.cond.model.%d.1", i + 1);
            conv_t(&b, hp.cond_width, i == hp.cond_downs - 1 ? w : hp.cond_width, 4, name);
        }
        add(&b, INIT_ONE, 0, S1(w), "conditioner_blocks.0.ln.weight");
        add(&b, INIT_ZERO, 0, S1(w), "conditioner_blocks.0.ln.bias");
    }
    add(&b, INIT_NORMAL, 0.02f, S2(hp.bins, w), "prior.x_emb.weight");
    add(&b, INIT_NORMAL, 0.01f, S2(hp.n_ctx, w), "prior.pos_emb.pos_emb");
    transformer(&b, &hp.tr, "prior");
    if (hp.merged_decoder) add(&b, INIT_NORMAL, 0.05f, S2(hp.bins, w), "prior.x_out.weight");
    return finish(&b, path);
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
