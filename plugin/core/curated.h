/*
 * plugin/core/curated.h - the curated artist and genre menus.
 *
 * Generic host UIs show control ports, not strings, so artist and genre are also enumeration
 * control ports over these lists: value 0 means "custom" (the string patch:Parameter), value
 * k >= 1 picks entry k - 1. The TTL scale points are generated from the same tables at build
 * time, so the menus and the code cannot drift apart. Names are display names; the daemon
 * normalises them for the model's tables (every name is checked against the released 5b
 * tables by test_presets).
 */
#ifndef ENCORE_PLUGIN_CURATED_H
#define ENCORE_PLUGIN_CURATED_H

extern const char *const curated_artists[];
extern const int curated_n_artists;
extern const char *const curated_genres[];
extern const int curated_n_genres;

/* The name for menu value `v` (rounded), or NULL for custom / out of range. */
const char *curated_artist(float v);
const char *curated_genre(float v);

#endif
