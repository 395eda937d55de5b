/*
 * core/outfile.h - output files that appear whole or not at all.
 *
 * jb_outfile_open creates a unique temporary file beside the final path (mkostemp: O_EXCL, so a
 * planted symlink or file is never followed or reused). The caller writes through f->fd (or
 * fdopen/sf_open_fd on it), then jb_outfile_commit fsyncs, closes and renames it over the final
 * path (and fsyncs the folder); on any failure jb_outfile_abort removes the temporary and the old
 * file at the final path stays byte for byte as it was.
 */
#ifndef JB_CORE_OUTFILE_H
#define JB_CORE_OUTFILE_H

#include "core/common.h"

struct jb_outfile {
    int fd;         /* -1 once closed or handed over (see jb_outfile_release_fd) */
    char *path;     /* final path */
    char *tmp_path; /* the unique temporary beside it */
};

/* Creates the temporary for `path` with mode 0666 & ~umask. */
enum jb_status jb_outfile_open(struct jb_outfile *f, const char *path);
/* The caller closed f->fd itself (e.g. fclose of an fdopen'ed stream after fflush+fsync). */
void jb_outfile_release_fd(struct jb_outfile *f);
/* fsync + close (if still open) + rename + fsync of the folder. On failure removes the
 * temporary. Either way f is reset. */
enum jb_status jb_outfile_commit(struct jb_outfile *f);
/* Closes and removes the temporary; f is reset. Safe on a zeroed or already-finished f. */
void jb_outfile_abort(struct jb_outfile *f);

#endif
