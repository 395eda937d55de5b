/* tools/encore/args.c - strict numeric flags and terminal-safe text (see args.h). */
#include "args.h"

#include "encore/engine.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool cli_parse_int(const char *cmd,
                   const char *flag,
                   const char *s,
                   long long lo,
                   long long hi,
                   long long *out)
{
    char *end = NULL;
    errno     = 0;
    /* strtoll skips blanks and accepts a sign; we want the plain number the user typed */
    long long v = (s && *s && !isspace((unsigned char)*s)) ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || isspace((unsigned char)*s) || *end || errno == ERANGE || v < lo || v > hi) {
        char shown[128];
        fprintf(stderr,
                "encore %s: --%s: '%s' is not an integer in %lld..%lld\n",
                cmd,
                flag,
                cli_sanitize(s ? s : "", shown, sizeof shown),
                lo,
                hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_intv(const char *cmd, const char *flag, const char *s, int lo, int hi, int *out)
{
    long long v;
    if (!cli_parse_int(cmd, flag, s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

bool cli_parse_real(const char *cmd,
                    const char *flag,
                    const char *s,
                    double lo,
                    bool lo_open,
                    double hi,
                    double *out)
{
    char *end = NULL;
    errno     = 0;
    double v  = (s && *s && !isspace((unsigned char)*s)) ? strtod(s, &end) : NAN;
    bool ok   = s && *s && end && !*end && isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
    if (!ok) {
        char shown[128];
        fprintf(stderr,
                "encore %s: --%s: '%s' is not a number in %s%g, %g]\n",
                cmd,
                flag,
                cli_sanitize(s ? s : "", shown, sizeof shown),
                lo_open ? "(" : "[",
                lo,
                hi);
        return false;
    }
    *out = v;
    return true;
}

const char *cli_sanitize(const char *s, char *out, size_t len)
{
    jb_text_escape(s, out, len);
    return out;
}

void cli_fputs_safe(const char *s, FILE *f)
{
    char buf[1024];
    const unsigned char *p = (const unsigned char *)s;
    /* sanitise in pieces that end on a character boundary */
    while (*p) {
        size_t take = 0;
        while (p[take] && take < 200)
            take++;
        while (p[take] && take > 0 && (p[take] & 0xc0) == 0x80)
            take--; /* do not split a UTF-8 sequence */
        if (take == 0) take = 1;
        char piece[256];
        memcpy(piece, p, take);
        piece[take] = '\0';
        fputs(cli_sanitize(piece, buf, sizeof buf), f);
        p += take;
    }
}
