/*
 * plugin/core/curated.c - the menus (see curated.h). Append only: a saved session stores the
 * menu value, so reordering would change the artist of old sessions.
 */
#include "curated.h"

#include <math.h>

const char *const curated_artists[] = {
    "Alan Jackson",
    "Frank Sinatra",
    "Ella Fitzgerald",
    "Joe Bonamassa",
    "The Beatles",
    "Elvis Presley",
    "Johnny Cash",
    "Dolly Parton",
    "Willie Nelson",
    "Garth Brooks",
    "Louis Armstrong",
    "Billie Holiday",
    "Nat King Cole",
    "Dean Martin",
    "Bing Crosby",
    "Tony Bennett",
    "B.B. King",
    "Muddy Waters",
    "Stevie Ray Vaughan",
    "Eric Clapton",
    "Jimi Hendrix",
    "Led Zeppelin",
    "The Rolling Stones",
    "Queen",
    "David Bowie",
    "Elton John",
    "Billy Joel",
    "Madonna",
    "Michael Jackson",
    "Whitney Houston",
    "Mariah Carey",
    "Aretha Franklin",
    "Marvin Gaye",
    "Stevie Wonder",
    "Ray Charles",
    "Otis Redding",
    "James Brown",
    "Bob Marley",
    "Bob Dylan",
    "Neil Young",
    "Bruce Springsteen",
    "Fleetwood Mac",
    "ABBA",
    "Nirvana",
    "Metallica",
    "AC/DC",
    "Pink Floyd",
    "Duke Ellington",
    "Sarah Vaughan",
    "Nina Simone",
    "Etta James",
    "Patsy Cline",
    "Hank Williams",
    "Chuck Berry",
    "The Beach Boys",
};
const int curated_n_artists = (int)(sizeof curated_artists / sizeof curated_artists[0]);

const char *const curated_genres[] = {
    "Country",     "Pop",   "Jazz",       "Blues",      "Blues Rock",
    "Rock",        "Soul",  "Reggae",     "Classical",  "Folk",
    "Metal",       "Punk",  "Funk",       "Disco",      "Hip Hop",
    "Gospel",      "Swing", "Bluegrass",  "Electronic", "Dance",
    "Ambient",     "Latin", "Rockabilly", "Vocal",      "Singer Songwriter",
    "Alternative", "Indie", "New Wave",   "Hard Rock",  "Grunge",
    "Classic Pop",
};
const int curated_n_genres = (int)(sizeof curated_genres / sizeof curated_genres[0]);

static const char *pick(const char *const *names, int n, float v)
{
    if (!isfinite(v)) return 0;
    long k = lroundf(v);
    return (k >= 1 && k <= n) ? names[k - 1] : 0;
}

const char *curated_artist(float v)
{
    return pick(curated_artists, curated_n_artists, v);
}

const char *curated_genre(float v)
{
    return pick(curated_genres, curated_n_genres, v);
}
