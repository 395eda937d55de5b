/*
 * plugin/lv2/ttlgen.c - build tool: fills the artist and genre menus of ttl/encore.ttl.in from
 * the curated tables (plugin/core/curated.c), so the TTL and the code share one list.
 * usage: encore-ttlgen IN OUT VERSION   (VERSION "MAJOR.MINOR.MICRO")
 */
#include "curated.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void points(FILE *out, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        fprintf(out, ",\n\t\t\t[ rdfs:label \"");
        for (const char *s = names[i]; *s; s++) /* Turtle string escapes */
            fprintf(out, (*s == '"' || *s == '\\') ? "\\%c" : "%c", *s);
        fprintf(out, "\" ; rdf:value %d ]", i + 1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: encore-ttlgen IN OUT VERSION\n");
        return 2;
    }
    int major = 0, minor = 0, micro = 0;
    if (sscanf(argv[3], "%d.%d.%d", &major, &minor, &micro) != 3) {
        fprintf(stderr, "encore-ttlgen: bad version '%s'\n", argv[3]);
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    char line[4096];
    while (fgets(line, sizeof line, in)) {
        char *at = strchr(line, '@');
        if (!at) {
            fputs(line, out);
            continue;
        }
        static const char *const keys[] = { "@ARTIST_POINTS@",  "@GENRE_POINTS@", "@N_ARTISTS@",
                                            "@N_GENRES@",       "@MINOR@",        "@MICRO@",
                                            "@PROJECT_VERSION@" };
        int k                           = 0;
        while (k < 7 && !strstr(line, keys[k]))
            k++;
        if (k == 7) {
            fputs(line, out);
            continue;
        }
        char *p = strstr(line, keys[k]);
        fwrite(line, 1, (size_t)(p - line), out);
        switch (k) {
        case 0:
            points(out, curated_artists, curated_n_artists);
            break;
        case 1:
            points(out, curated_genres, curated_n_genres);
            break;
        case 2:
            fprintf(out, "%d", curated_n_artists);
            break;
        case 3:
            fprintf(out, "%d", curated_n_genres);
            break;
        /* LV2: an odd minor version marks a development release; releases are even */
        case 4:
            fprintf(out, "%d", minor * 2 + major * 100);
            break;
        case 5:
            fprintf(out, "%d", micro);
            break;
        case 6:
            fprintf(out, "%d.%d.%d", major, minor, micro);
            break;
        }
        fputs(p + strlen(keys[k]), out);
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 1;
}
