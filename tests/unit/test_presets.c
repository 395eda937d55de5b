/*
 * test_presets - every preset of encore.lv2 names an artist and a genre that
 *   (1) the released 5b tables know (v2_artist_ids.txt / v2_genre_ids.txt, ../shared),
 *   (2) the bundled default model's vocabulary knows (so presets work out of the box),
 *   (3) match the artist/genre menu values the preset sets (curated.h).
 * Also: at least 16 presets, including the four the product promises.
 * usage: test_presets LV2_DIR IDS_DIR DEFAULT_MODEL_DIR     (77 without ../shared)
 */
#include "core/common.h"
#include "curated.h"
#include "format/gguf.h"
#include "labels/labels.h"

#include <lilv/lilv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define URI "https://encore.invalid/lv2/encore"
#define NS URI "#"

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL: " __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

struct preset_info {
    char label[128], artist[128], genre[128];
    float artist_menu, genre_menu;
};

/* a URID map good enough for reading presets */
static char map_uris[512][256];
static int map_n;
static LV2_URID map_fn(LV2_URID_Map_Handle h, const char *u)
{
    (void)h;
    for (int i = 0; i < map_n; i++)
        if (!strcmp(map_uris[i], u)) return (LV2_URID)(i + 1);
    if (map_n == 512) return 0;
    snprintf(map_uris[map_n], sizeof map_uris[0], "%s", u);
    return (LV2_URID)++map_n;
}

static struct preset_info *cur;
static LilvWorld *world;

static void on_port(const char *sym, void *user, const void *value, uint32_t size, uint32_t type)
{
    (void)user, (void)size, (void)type;
    if (!strcmp(sym, "artist")) cur->artist_menu = *(const float *)value;
    if (!strcmp(sym, "genre")) cur->genre_menu = *(const float *)value;
}

static struct jb_label_vocab *model_vocab(struct jb_gguf *g,
                                          const char *names_key,
                                          const char *ids_key)
{
    int64_t k = jb_gguf_find_key(g, names_key);
    if (k < 0) return NULL;
    size_t n           = (size_t)jb_gguf_arr_len(g, k);
    const char **names = calloc(n, sizeof *names);
    int32_t *ids       = calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        int64_t id = 0;
        names[i]   = jb_gguf_get_arr_str(g, names_key, i);
        jb_gguf_get_arr_int(g, ids_key, i, &id);
        ids[i] = (int32_t)id;
    }
    struct jb_label_vocab *v = NULL;
    jb_label_vocab_from_arrays(names, ids, n, &v);
    free(names), free(ids);
    return v;
}

static void check_names(const char *what,
                        const struct jb_label_vocab *artists,
                        const struct jb_label_vocab *genres,
                        const struct preset_info *p)
{
    int32_t id = 0, gids[JB_LABEL_MAX_GENRES];
    CHECK(jb_labels_artist_id(artists, JB_LABEL_V2, JB_LABEL_STRICT, p->artist, &id) ==
            JB_STATUS_OK,
          "%s: preset '%s': artist '%s' unknown: %s",
          what,
          p->label,
          p->artist,
          jb_last_error());
    CHECK(jb_labels_genre_ids(
            genres, JB_LABEL_V2, JB_LABEL_STRICT, p->genre, JB_LABEL_V2_GENRES, gids) ==
            JB_STATUS_OK,
          "%s: preset '%s': genre '%s' unknown: %s",
          what,
          p->label,
          p->genre,
          jb_last_error());
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_presets LV2_DIR IDS_DIR DEFAULT_MODEL_DIR\n");
        return 2;
    }
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/v2_artist_ids.txt", argv[2]);
    if (stat(path, &st) != 0) {
        printf("SKIP: %s is absent (../shared not present)\n", path);
        return 77;
    }
    struct jb_label_vocab *v2_artists = NULL, *v2_genres = NULL;
    CHECK(jb_label_vocab_load_file(path, &v2_artists) == JB_STATUS_OK, "load %s", path);
    snprintf(path, sizeof path, "%s/v2_genre_ids.txt", argv[2]);
    CHECK(jb_label_vocab_load_file(path, &v2_genres) == JB_STATUS_OK, "load %s", path);

    snprintf(path, sizeof path, "%s/prior_level_2.gguf", argv[3]);
    struct jb_gguf *g = jb_gguf_open(path);
    CHECK(g != NULL, "cannot open the default model's prior %s (build target default_model)", path);
    struct jb_label_vocab *m_artists =
      g ? model_vocab(g, "jukebox.labels.artist_names", "jukebox.labels.artist_ids") : NULL;
    struct jb_label_vocab *m_genres =
      g ? model_vocab(g, "jukebox.labels.genre_names", "jukebox.labels.genre_ids") : NULL;
    CHECK(!g || (m_artists && m_genres), "default model has no label vocabulary");

    char lv2dir[4096];
    if (!realpath(argv[1], lv2dir)) { /* lilv wants an absolute path */
        fprintf(stderr, "FAIL: %s does not exist\n", argv[1]);
        return 1;
    }
    setenv("LV2_PATH", lv2dir, 1);
    world = lilv_world_new();
    lilv_world_load_all(world);
    LilvNode *uri            = lilv_new_uri(world, URI);
    const LilvPlugin *plugin = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), uri);
    CHECK(plugin != NULL, "plugin %s not found under %s", URI, argv[1]);
    if (!plugin) return 1;
    LilvNode *pset_Preset = lilv_new_uri(world, "http://lv2plug.in/ns/ext/presets#Preset");
    LilvNode *rdfs_label  = lilv_new_uri(world, "http://www.w3.org/2000/01/rdf-schema#label");
    LilvNodes *presets    = lilv_plugin_get_related(plugin, pset_Preset);
    int n                 = 0;
    bool seen[4]          = { false };
    static const char *const want[] = { "Country / Alan Jackson",
                                        "Classic Pop / Frank Sinatra",
                                        "Jazz / Ella Fitzgerald",
                                        "Blues Rock / Joe Bonamassa" };
    LILV_FOREACH(nodes, i, presets)
    {
        const LilvNode *p = lilv_nodes_get(presets, i);
        lilv_world_load_resource(world, p);
        struct preset_info info = { .artist_menu = -1, .genre_menu = -1 };
        cur                     = &info;
        LilvNodes *labels       = lilv_world_find_nodes(world, p, rdfs_label, NULL);
        if (labels)
            snprintf(info.label,
                     sizeof info.label,
                     "%s",
                     lilv_node_as_string(lilv_nodes_get_first(labels)));
        lilv_nodes_free(labels);
        LV2_URID_Map um = { NULL, map_fn };
        LilvState *s    = lilv_state_new_from_world(world, &um, p);
        CHECK(s != NULL, "preset %s does not load as state", lilv_node_as_uri(p));
        if (!s) continue;
        lilv_state_emit_port_values(s, on_port, NULL);
        /* the strings: preset -> state:state [ encore:artist "..." ; encore:genre "..." ] */
        LilvNode *state_state = lilv_new_uri(world, "http://lv2plug.in/ns/ext/state#state");
        LilvNode *k_artist    = lilv_new_uri(world, NS "artist"),
                 *k_genre     = lilv_new_uri(world, NS "genre");
        LilvNode *body        = lilv_world_get(world, p, state_state, NULL);
        LilvNode *an          = body ? lilv_world_get(world, body, k_artist, NULL) : NULL;
        LilvNode *gnn         = body ? lilv_world_get(world, body, k_genre, NULL) : NULL;
        const char *a         = an ? lilv_node_as_string(an) : NULL;
        const char *gn        = gnn ? lilv_node_as_string(gnn) : NULL;
        snprintf(info.artist, sizeof info.artist, "%s", a ? a : "");
        snprintf(info.genre, sizeof info.genre, "%s", gn ? gn : "");
        lilv_state_free(s);
        lilv_node_free(an), lilv_node_free(gnn), lilv_node_free(body);
        lilv_node_free(state_state), lilv_node_free(k_artist), lilv_node_free(k_genre);
        CHECK(info.artist[0] && info.genre[0], "preset '%s' lacks artist or genre", info.label);
        const char *ma = curated_artist(info.artist_menu), *mg = curated_genre(info.genre_menu);
        CHECK(ma && !strcmp(ma, info.artist),
              "preset '%s': artist menu %g is '%s', state '%s'",
              info.label,
              info.artist_menu,
              ma ? ma : "custom",
              info.artist);
        CHECK(mg && !strcmp(mg, info.genre),
              "preset '%s': genre menu %g is '%s', state '%s'",
              info.label,
              info.genre_menu,
              mg ? mg : "custom",
              info.genre);
        check_names("v2 tables", v2_artists, v2_genres, &info);
        if (m_artists && m_genres) check_names("default model", m_artists, m_genres, &info);
        for (int k = 0; k < 4; k++)
            seen[k] |= !strcmp(info.label, want[k]);
        printf("preset %-32s artist %-20s genre %s\n", info.label, info.artist, info.genre);
        n++;
    }
    CHECK(n >= 16, "%d presets, want at least 16", n);
    for (int k = 0; k < 4; k++)
        CHECK(seen[k], "preset '%s' missing", want[k]);
    /* every curated menu name resolves in the released tables too */
    for (int k = 0; k < curated_n_artists; k++) {
        struct preset_info p = { .label = "menu" };
        snprintf(p.artist, sizeof p.artist, "%s", curated_artists[k]);
        snprintf(p.genre, sizeof p.genre, "%s", curated_genres[k % curated_n_genres]);
        check_names("v2 tables (menus)", v2_artists, v2_genres, &p);
    }
    lilv_nodes_free(presets);
    lilv_node_free(pset_Preset), lilv_node_free(rdfs_label), lilv_node_free(uri);
    lilv_world_free(world);
    jb_label_vocab_free(v2_artists), jb_label_vocab_free(v2_genres);
    jb_label_vocab_free(m_artists), jb_label_vocab_free(m_genres);
    if (g) jb_gguf_close(g);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("test_presets: %d presets, all names known to the 5b tables and the default model\n", n);
    return 0;
}
