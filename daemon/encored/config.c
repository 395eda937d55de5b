/*
 * daemon/encored/config.c - encored's settings: documented defaults, a config file (inih) and
 * flags (flags win), and where model sets come from.
 */
#include "encored.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    c->lim.riff_seconds  = 60;
    c->lim.job_seconds   = 600;
    c->lim.candidates    = 16;
    c->lim.clients       = 64;
    c->lim.queued_jobs   = 256;
    c->lim.frame_bytes   = EP_MAX_FRAME_DEFAULT;
    c->lim.client_buffer = 64u << 20;
    c->lim.stall_seconds = 60;
    c->lim.takes_quota   = 0;
}

static int64_t dir_model_bytes(const char *dir)
{
    static const char *files[] = {
        "vqvae.gguf", "upsampler_level_0.gguf", "upsampler_level_1.gguf", "prior_level_2.gguf"
    };
    int64_t sum = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[1200];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (stat(p, &st) == 0) sum += (int64_t)st.st_size;
    }
    return sum;
}

static bool has_set_files(const char *dir)
{
    static const char *files[] = {
        "vqvae.gguf", "upsampler_level_0.gguf", "upsampler_level_1.gguf", "prior_level_2.gguf"
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (access(p, R_OK) != 0) return false;
    }
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct model_set *)a)->name, ((const struct model_set *)b)->name);
}

/* ENCORE_MODEL_DIR if set; else every complete set installed under the models root
 * (`encore models fetch`), by name; else the bundled default model. */
int models_default(struct model_set *sets, int cap)
{
    if (cap < 1) return 0;
    const char *env = getenv("ENCORE_MODEL_DIR");
    int n           = 0;
    char root[1024];
    if (!(env && *env) && jb_models_root(root, sizeof root) == JB_STATUS_OK) {
        DIR *d = opendir(root);
        struct dirent *e;
        while (d && n < cap && (e = readdir(d))) {
            char dir[1200];
            if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof sets[0].name) continue;
            snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
            if (strlen(dir) >= sizeof sets[0].dir || !has_set_files(dir)) continue;
            snprintf(sets[n].name, sizeof sets[n].name, "%s", e->d_name);
            snprintf(sets[n].dir, sizeof sets[n].dir, "%s", dir);
            sets[n].bytes = dir_model_bytes(dir);
            n++;
        }
        if (d) closedir(d);
        qsort(sets, (size_t)n, sizeof *sets, by_name);
    }
    if (n > 0) return n;
    snprintf(sets[0].name, sizeof sets[0].name, "default");
    snprintf(sets[0].dir, sizeof sets[0].dir, "%s", env && *env ? env : ENCORE_DEFAULT_MODEL_DIR);
    sets[0].bytes = dir_model_bytes(sets[0].dir);
    return 1;
}

static bool add_set(struct config *c, const char *name, const char *dir)
{
    if (c->n_sets >= ENCORED_MAX_SETS || !*name || strlen(name) >= sizeof c->sets[0].name ||
        strlen(dir) >= sizeof c->sets[0].dir) {
        fprintf(stderr, "encored: bad or too many model sets ('%s')\n", name);
        return false;
    }
    for (int i = 0; i < c->n_sets; i++)
        if (strcmp(c->sets[i].name, name) == 0) {
            fprintf(stderr, "encored: model set '%s' given twice\n", name);
            return false;
        }
    /* DIR may be a folder or the name of an installed set, as the CLI's --models */
    char resolved[1024];
    enum jb_models_source src;
    if (jb_models_resolve(dir, NULL, resolved, sizeof resolved, &src) != JB_STATUS_OK) {
        fprintf(stderr, "encored: model set '%s': %s\n", name, jb_last_error());
        return false;
    }
    struct model_set *s = &c->sets[c->n_sets++];
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->dir, sizeof s->dir, "%s", resolved);
    s->bytes = dir_model_bytes(dir);
    return true;
}

static bool parse_models_arg(struct config *c, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "encored: --models takes NAME=DIR, got '%s'\n", arg);
        return false;
    }
    char name[64];
    if ((size_t)(eq - arg) >= sizeof name) return add_set(c, "", eq + 1);
    memcpy(name, arg, (size_t)(eq - arg));
    name[eq - arg] = '\0';
    return add_set(c, name, eq + 1);
}

/* sizes: plain bytes or with a K/M/G suffix (powers of 1024) */
static bool parse_size(const char *s, int64_t *out)
{
    char *end;
    errno    = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) return false;
    double mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul > 9e18) return false;
    *out = (int64_t)(v * mul);
    return true;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    *out  = strtod(s, &end);
    return end != s && !*end && !errno && isfinite(*out) && *out >= lo && *out <= hi;
}

/* one setting, from the file ([section] name = value) or a flag (section NULL) */
static bool apply(struct config *c, const char *name, const char *value)
{
    double d;
    int64_t sz;
    struct limits *l = &c->lim;
    if (!strcmp(name, "socket")) {
        if (strlen(value) >= sizeof c->socket) return false;
        snprintf(c->socket, sizeof c->socket, "%s", value);
    } else if (!strcmp(name, "state")) {
        if (strlen(value) >= sizeof c->state) return false;
        snprintf(c->state, sizeof c->state, "%s", value);
    } else if (!strcmp(name, "threads")) {
        if (!parse_num(value, 0, 1024, &d)) return false;
        c->threads = (int)d;
    } else if (!strcmp(name, "device")) {
        if (strlen(value) >= sizeof c->device_spec || !value[0]) return false;
        snprintf(c->device_spec, sizeof c->device_spec, "%s", value);
    } else if (!strcmp(name, "memory")) {
        if (!parse_size(value, &sz)) return false;
        c->memory = sz;
    } else if (!strcmp(name, "riff_seconds")) {
        if (!parse_num(value, 1, 3600, &l->riff_seconds)) return false;
    } else if (!strcmp(name, "job_seconds")) {
        if (!parse_num(value, 1, 36000, &l->job_seconds)) return false;
    } else if (!strcmp(name, "candidates")) {
        if (!parse_num(value, 1, JB_JOB_MAX_CANDIDATES, &d)) return false;
        l->candidates = (int)d;
    } else if (!strcmp(name, "clients")) {
        if (!parse_num(value, 1, 4096, &d)) return false;
        l->clients = (int)d;
    } else if (!strcmp(name, "queued_jobs")) {
        if (!parse_num(value, 1, 100000, &d)) return false;
        l->queued_jobs = (int)d;
    } else if (!strcmp(name, "frame_bytes")) {
        if (!parse_size(value, &sz) || sz < 4096 || sz > (int64_t)EP_MAX_FRAME_LIMIT) return false;
        l->frame_bytes = (size_t)sz;
    } else if (!strcmp(name, "client_buffer")) {
        if (!parse_size(value, &sz) || sz < 65536) return false;
        l->client_buffer = (size_t)sz;
    } else if (!strcmp(name, "stall_seconds")) {
        if (!parse_num(value, 0.1, 86400, &l->stall_seconds)) return false;
    } else if (!strcmp(name, "takes_quota")) {
        if (!parse_size(value, &sz)) return false;
        l->takes_quota = sz;
    } else {
        return false;
    }
    return true;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct config *c = user;
    if (!strcmp(section, "models")) return add_set(c, name, value);
    if (apply(c, name, value)) return 1;
    fprintf(stderr, "encored: config: bad setting [%s] %s = %s\n", section, name, value);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(
      out,
      "usage: encored [options]\n"
      "\n"
      "The Encore daemon: owns the models, runs jobs one at a time per model set, streams\n"
      "audio to clients over a Unix socket (docs/protocol.md), and keeps jobs and takes\n"
      "under the state folder so nothing is lost across restarts.\n"
      "\n"
      "options (the config file takes the same names under [daemon] and [limits], and\n"
      "model sets as NAME = DIR under [models]; flags win):\n"
      "  --config FILE          (default: $XDG_CONFIG_HOME/encore/encored.conf if present)\n"
      "  --socket PATH          (default: $ENCORE_SOCKET, else\n"
      "                         $XDG_RUNTIME_DIR/encore/encored.sock)\n"
      "  --state DIR            jobs, takes, settings (default: $XDG_STATE_HOME/encore,\n"
      "                         else ~/.local/state/encore)\n"
      "  --models NAME=DIR      a model set: a folder or an installed set's name\n"
      "                         (repeatable; default: $ENCORE_MODEL_DIR, else the sets\n"
      "                         installed by `encore models fetch`, else 'default' =\n"
      "                         %s)\n"
      "  --device LIST          backends to run jobs on, comma-separated: cpu, cuda (every\n"
      "                         visible GPU), cuda:N; one worker per device and model set,\n"
      "                         jobs go to the first free one (default: the first GPU if\n"
      "                         there is one, else cpu)\n"
      "  --memory SIZE          budget for loaded model sets per device, e.g. 12G (default:\n"
      "                         none)\n"
      "  --threads N            CPU threads per backend (default: all cores)\n"
      "  --riff-seconds S       longest riff (default 60)\n"
      "  --job-seconds S        most new audio per job (default 600)\n"
      "  --candidates N         most candidates per job (default 16)\n"
      "  --clients N            most clients at once (default 64)\n"
      "  --queued-jobs N        most jobs waiting (default 256)\n"
      "  --frame-bytes SIZE     largest frame (default 4M)\n"
      "  --client-buffer SIZE   output queued per client before it is dropped (default 64M)\n"
      "  --takes-quota SIZE     take files kept, least recently used evicted (default: none)\n"
      "  -v, --verbose          log to stderr\n"
      "  -h, --help\n",
      ENCORE_DEFAULT_MODEL_DIR);
}

static bool add_device(struct config *c, const char *name)
{
    if (c->n_devices == ENCORED_MAX_DEVICES) {
        fprintf(stderr, "encored: more than %d devices\n", ENCORED_MAX_DEVICES);
        return false;
    }
    snprintf(c->devices[c->n_devices++], sizeof c->devices[0], "%s", name);
    return true;
}

bool config_devices(struct config *c)
{
    char spec[256];
    snprintf(
      spec, sizeof spec, "%s", c->device_spec[0] ? c->device_spec : jb_backend_default_name());
    c->n_devices = 0;
    for (char *save = NULL, *d = strtok_r(spec, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
        if (!strcmp(d, "cuda")) { /* every visible GPU */
            const int n = jb_backend_device_count("cuda");
            if (n == 0) {
                fprintf(stderr,
                        "encored: --device cuda: no CUDA device visible (backends in this "
                        "build: %s)\n",
                        jb_backends_available());
                return false;
            }
            for (int i = 0; i < n; i++) {
                char name[32];
                snprintf(name, sizeof name, "cuda:%d", i);
                if (!add_device(c, name)) return false;
            }
        } else if (!strcmp(d, "cpu") || !strncmp(d, "cuda:", 5)) {
            if (strlen(d) >= sizeof c->devices[0] || !add_device(c, d)) return false;
        } else {
            fprintf(stderr,
                    "encored: --device: unknown backend '%s' (cpu, cuda, cuda:N; this build "
                    "has %s)\n",
                    d,
                    jb_backends_available());
            return false;
        }
    }
    if (c->n_devices == 0) {
        fprintf(stderr, "encored: --device: no device given\n");
        return false;
    }
    return true;
}

int config_parse(struct config *c, int argc, char **argv)
{
    static const struct option opts[] = { { "config", required_argument, 0, 'c' },
                                          { "socket", required_argument, 0, 1 },
                                          { "state", required_argument, 0, 1 },
                                          { "models", required_argument, 0, 'm' },
                                          { "memory", required_argument, 0, 1 },
                                          { "device", required_argument, 0, 1 },
                                          { "threads", required_argument, 0, 1 },
                                          { "riff-seconds", required_argument, 0, 1 },
                                          { "job-seconds", required_argument, 0, 1 },
                                          { "candidates", required_argument, 0, 1 },
                                          { "clients", required_argument, 0, 1 },
                                          { "queued-jobs", required_argument, 0, 1 },
                                          { "frame-bytes", required_argument, 0, 1 },
                                          { "client-buffer", required_argument, 0, 1 },
                                          { "takes-quota", required_argument, 0, 1 },
                                          { "stall-seconds", required_argument, 0, 1 },
                                          { "verbose", no_argument, 0, 'v' },
                                          { "help", no_argument, 0, 'h' },
                                          { 0, 0, 0, 0 } };
    /* first pass: --config and --help */
    const char *config_path = NULL;
    int ch, idx;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "c:m:vh", opts, &idx)) != -1) {
        if (ch == 'c') config_path = optarg;
        if (ch == 'h') {
            usage(stdout);
            return 2;
        }
    }
    char def_path[1200];
    if (!config_path) {
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(def_path, sizeof def_path, "%s/encore/encored.conf", xdg);
        else
            snprintf(
              def_path, sizeof def_path, "%s/.config/encore/encored.conf", home ? home : "/");
        if (access(def_path, R_OK) == 0) config_path = def_path;
    }
    if (config_path) {
        int line = ini_parse(config_path, on_ini, c);
        if (line != 0) {
            if (line < 0)
                fprintf(stderr, "encored: cannot read config file %s\n", config_path);
            else
                fprintf(stderr, "encored: config file %s: error on line %d\n", config_path, line);
            return 1;
        }
    }
    /* second pass: flags override the file */
    optind         = 1;
    opterr         = 1;
    bool file_sets = c->n_sets > 0, flag_sets = false;
    while ((ch = getopt_long(argc, argv, "c:m:vh", opts, &idx)) != -1) {
        if (ch == 'c' || ch == 'h') continue;
        if (ch == 'v') {
            c->foreground_log = true;
            continue;
        }
        if (ch == 'm') {
            if (file_sets && !flag_sets) c->n_sets = 0; /* flags replace the file's sets */
            flag_sets = true;
            if (!parse_models_arg(c, optarg)) return 1;
            continue;
        }
        if (ch != 1) {
            usage(stderr);
            return 1;
        }
        char name[64];
        snprintf(name, sizeof name, "%s", opts[idx].name);
        for (char *p = name; *p; p++)
            if (*p == '-') *p = '_';
        if (!apply(c, name, optarg)) {
            fprintf(stderr, "encored: bad value '%s' for --%s\n", optarg, opts[idx].name);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "encored: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    if (c->n_sets == 0) c->n_sets = models_default(c->sets, ENCORED_MAX_SETS);
    if (!config_devices(c)) return 1;
    if (!c->socket[0] && !ep_socket_path(NULL, c->socket, sizeof c->socket)) {
        fprintf(stderr, "encored: socket path too long\n");
        return 1;
    }
    if (!c->state[0]) {
        const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(c->state, sizeof c->state, "%s/encore", xdg);
        else
            snprintf(c->state, sizeof c->state, "%s/.local/state/encore", home ? home : "/tmp");
    }
    return 0;
}
