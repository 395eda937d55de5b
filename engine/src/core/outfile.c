/*
 * core/outfile.c - write-to-temporary, fsync, rename (see outfile.h).
 */
#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void reset(struct jb_outfile *f)
{
    free(f->path);
    free(f->tmp_path);
    f->path     = NULL;
    f->tmp_path = NULL;
    f->fd       = -1;
}

enum jb_status jb_outfile_open(struct jb_outfile *f, const char *path)
{
    f->fd       = -1;
    f->path     = NULL;
    f->tmp_path = NULL;
    size_t n    = strlen(path);
    if (n == 0) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "output path is empty");
    f->path     = strdup(path);
    f->tmp_path = malloc(n + 16);
    if (!f->path || !f->tmp_path) {
        reset(f);
        return jb_fail(JB_STATUS_ERR_NOMEM, "out of memory for an output path");
    }
    /* ".NAME.XXXXXX" in the same folder, so the rename stays on one file system. */
    const char *slash = strrchr(path, '/');
    size_t dir_len    = slash ? (size_t)(slash - path) + 1 : 0;
    snprintf(f->tmp_path, n + 16, "%.*s.%s.XXXXXX", (int)dir_len, path, path + dir_len);
    int fd = mkostemp(f->tmp_path, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        reset(f);
        return jb_fail(JB_STATUS_ERR_IO, "cannot create a file beside %s: %s", path, strerror(e));
    }
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
    f->fd = fd;
    return JB_STATUS_OK;
}

void jb_outfile_release_fd(struct jb_outfile *f)
{
    f->fd = -1;
}

static void sync_folder(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

enum jb_status jb_outfile_commit(struct jb_outfile *f)
{
    if (!f->tmp_path) return jb_fail(JB_STATUS_ERR_INVALID_ARG, "output file is not open");
    if (f->fd >= 0) {
        int bad = fsync(f->fd) != 0;
        int e   = errno;
        bad |= close(f->fd) != 0;
        if (!bad) e = 0;
        f->fd = -1;
        if (bad) {
            enum jb_status st =
              jb_fail(JB_STATUS_ERR_IO, "cannot write %s: %s", f->path, strerror(e ? e : errno));
            jb_outfile_abort(f);
            return st;
        }
    }
    if (rename(f->tmp_path, f->path) != 0) {
        enum jb_status st =
          jb_fail(JB_STATUS_ERR_IO, "cannot rename into %s: %s", f->path, strerror(errno));
        jb_outfile_abort(f);
        return st;
    }
    sync_folder(f->path);
    reset(f);
    return JB_STATUS_OK;
}

void jb_outfile_abort(struct jb_outfile *f)
{
    if (f->fd >= 0) close(f->fd);
    if (f->tmp_path) unlink(f->tmp_path);
    reset(f);
}
