/*
 * tools/encore/args.h - the one strict parser for every numeric flag of `encore`.
 *
 * The whole string must be a number (no leading blanks, no trailing text), it must be in
 * [lo, hi] (reals: finite too), and a refusal prints one line naming the command and the flag:
 *   encore continue: --candidates: '4294967297' is not an integer in 1..64
 */
#ifndef ENCORE_ARGS_H
#define ENCORE_ARGS_H

#include <stdbool.h>
#include <stdio.h>

/* Most worker threads a command accepts (0 = all cores): each thread reserves scratch memory,
 * so a typo like 100000 must not try to allocate hundreds of gigabytes. */
#define CLI_MAX_THREADS 256
/* Longest audio (seconds) any length flag accepts; the models accept far less. */
#define CLI_MAX_SECONDS 86400.0

bool cli_parse_int(const char *cmd,
                   const char *flag,
                   const char *s,
                   long long lo,
                   long long hi,
                   long long *out);
/* As cli_parse_int, for an int. */
bool cli_parse_intv(const char *cmd, const char *flag, const char *s, int lo, int hi, int *out);
/* lo_open: the lower bound itself is excluded ((lo, hi] rather than [lo, hi]). */
bool cli_parse_real(const char *cmd,
                    const char *flag,
                    const char *s,
                    double lo,
                    bool lo_open,
                    double hi,
                    double *out);

/* Copies untrusted text (names from model or take files, paths, server messages) to `out`
 * with control characters and invalid UTF-8 shown as \xNN escapes, so it cannot move the
 * cursor, recolour or retitle a terminal. Returns out. */
const char *cli_sanitize(const char *s, char *out, size_t len);
/* fputs of cli_sanitize(s) without a length limit. */
void cli_fputs_safe(const char *s, FILE *f);

#endif
