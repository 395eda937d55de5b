/*
 * model/modelsets.c - where installed model sets live and what a user's --models choice means
 * (engine.h: jb_models_root, jb_models_resolve). Only paths: downloading and importing sets is
 * the CLI's job (tools/encore/cmd_models.c); this is here so that the CLI and encored resolve a
 * name the same way.
 */
#include "core/common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const set_files[] = { "vqvae.gguf",
                                         "upsampler_level_0.gguf",
                                         "upsampler_level_1.gguf",
                                         "prior_level_2.gguf" };

enum jb_status jb_models_root(char *out, size_t len)
{
    const char *env = getenv("ENCORE_MODELS");
    int n;
    if (env && *env)
        n = snprintf(out, len, "%s", env);
    else if ((env = getenv("XDG_DATA_HOME")) && *env == '/') /* relative: ignored (XDG spec) */
        n = snprintf(out, len, "%s/encore/models", env);
    else if ((env = getenv("HOME")) && *env)
        n = snprintf(out, len, "%s/.local/share/encore/models", env);
    else
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "models: neither ENCORE_MODELS, XDG_DATA_HOME nor HOME is set");
    if (n < 0 || (size_t)n >= len)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "models: the models folder path is too long");
    return JB_STATUS_OK;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* How many of the four model files dir holds. */
static int files_present(const char *dir)
{
    int have = 0;
    for (size_t i = 0; i < sizeof set_files / sizeof set_files[0]; i++) {
        char p[4200];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, set_files[i]);
        have += stat(p, &st) == 0 && S_ISREG(st.st_mode);
    }
    return have;
}

/* "5b, 5b_lyrics" (complete sets under root) into buf. */
static void list_installed(const char *root, char *buf, size_t len)
{
    buf[0]   = '\0';
    DIR *d   = opendir(root);
    size_t o = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", root, e->d_name);
        if (!is_dir(p) || files_present(p) != 4) continue;
        int n = snprintf(buf + o, len - o, "%s%s", o ? ", " : "", e->d_name);
        if (n < 0 || (size_t)n >= len - o) break;
        o += (size_t)n;
    }
    if (d) closedir(d);
}

enum jb_status jb_models_resolve(const char *choice,
                                 const char *fallback_dir,
                                 char *out,
                                 size_t len,
                                 enum jb_models_source *source)
{
    enum jb_models_source src = JB_MODELS_FROM_FOLDER;
    const char *dir           = choice;
    char set_dir[4096]        = "";
    if (!choice || !*choice) {
        if (!fallback_dir || !*fallback_dir)
            return jb_fail(JB_STATUS_ERR_INVALID_ARG, "models: no model folder given");
        dir = fallback_dir;
        src = JB_MODELS_FROM_DEFAULT;
    } else if (!strchr(choice, '/') && strcmp(choice, ".") != 0 && strcmp(choice, "..") != 0) {
        char root[4096];
        if (jb_models_root(root, sizeof root) == JB_STATUS_OK &&
            snprintf(set_dir, sizeof set_dir, "%s/%s", root, choice) < (int)sizeof set_dir &&
            is_dir(set_dir)) {
            int have = files_present(set_dir);
            if (have != 4)
                return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                               "models: set '%s' is incomplete (%d of 4 model files in %s); run "
                               "`encore models fetch %s` to finish it",
                               choice,
                               have,
                               set_dir,
                               choice);
            dir = set_dir;
            src = JB_MODELS_FROM_SET;
        }
    }
    if (src != JB_MODELS_FROM_SET && !is_dir(dir)) {
        char root[4096], installed[512] = "";
        if (jb_models_root(root, sizeof root) == JB_STATUS_OK)
            list_installed(root, installed, sizeof installed);
        return jb_fail(JB_STATUS_ERR_INVALID_ARG,
                       "models: '%s' is neither an installed model set nor a folder (installed: "
                       "%s; `encore models fetch 5b_lyrics` installs one)",
                       dir,
                       installed[0] ? installed : "none");
    }
    if (strlen(dir) >= len)
        return jb_fail(JB_STATUS_ERR_INVALID_ARG, "models: folder path '%s' is too long", dir);
    memmove(out, dir, strlen(dir) + 1);
    if (source) *source = src;
    return JB_STATUS_OK;
}
