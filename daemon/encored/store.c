/*
 * daemon/encored/store.c - nothing is lost: jobs, settings and take bookkeeping in SQLite
 * (state/encored.db, WAL), take files (state/takes/ID.take, written by jb_take_save: temporary
 * + rename), riffs of queued jobs (state/riffs/JOB.f32, raw float32 at 44.1 kHz through the
 * engine's atomic output files) and checkpoints (state/ckpt/JOB.take).
 *
 * One connection in serialized mode: the event loop and the workers share it.
 */
#include "core/outfile.h"
#include "encored.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static sqlite3 *db;
static char state_dir[1024];

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool mkdirs(const char *path)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return false;
            *p = '/';
        }
    return mkdir(tmp, 0700) == 0 || errno == EEXIST;
}

static void file_path(char *buf, size_t len, const char *sub, int64_t id, const char *ext)
{
    snprintf(buf, len, "%s/%s/%lld%s", state_dir, sub, (long long)id, ext);
}

static bool exec(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        daemon_log(JB_LOG_ERROR, "sqlite: %s (%s)", err ? err : "?", sql);
        sqlite3_free(err);
        return false;
    }
    return true;
}

bool store_open(const char *dir)
{
    snprintf(state_dir, sizeof state_dir, "%s", dir);
    char p[1200];
    static const char *subs[] = { "", "/takes", "/riffs", "/ckpt" };
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", dir, subs[i]);
        if (!mkdirs(p)) {
            daemon_log(JB_LOG_ERROR, "cannot create %s: %s", p, strerror(errno));
            return false;
        }
    }
    snprintf(p, sizeof p, "%s/encored.db", dir);
    if (sqlite3_open_v2(
          p, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        daemon_log(JB_LOG_ERROR, "cannot open %s: %s", p, db ? sqlite3_errmsg(db) : "?");
        return false;
    }
    sqlite3_busy_timeout(db, 5000);
    return exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") &&
           exec("CREATE TABLE IF NOT EXISTS jobs(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " kind INTEGER, state TEXT, model_set INTEGER, params BLOB, src_take INTEGER,"
                " decode_candidate INTEGER, decode_level INTEGER, take_id INTEGER DEFAULT 0,"
                " err_code TEXT DEFAULT '', err_msg TEXT DEFAULT '', created REAL,"
                " ck_level INTEGER DEFAULT -1, ck_windows INTEGER DEFAULT 0);"
                "CREATE TABLE IF NOT EXISTS takes(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " job INTEGER, bytes INTEGER DEFAULT 0, created REAL, last_used REAL);"
                "CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT);");
}

void store_close(void)
{
    if (db) sqlite3_close(db);
    db = NULL;
}

/* params are stored as the submit message's CBOR payload */
int64_t store_job_insert(const struct job *j)
{
    uint8_t *frame = NULL;
    size_t len     = 0;
    if (!ep_msg_encode(j->params, EP_MAX_FRAME_LIMIT, &frame, &len)) return 0;
    sqlite3_stmt *st = NULL;
    int64_t id       = 0;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO jobs(kind, state, model_set, params, src_take,"
                           " decode_candidate, decode_level, created) VALUES(?,?,?,?,?,?,?,?)",
                           -1,
                           &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, (int)j->kind);
        sqlite3_bind_text(st, 2, job_state_name(j->state), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, j->set);
        sqlite3_bind_blob(
          st, 4, frame + EP_FRAME_HEADER, (int)(len - EP_FRAME_HEADER), SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, j->src_take);
        sqlite3_bind_int(st, 6, j->decode_candidate);
        sqlite3_bind_int(st, 7, j->decode_level);
        sqlite3_bind_double(st, 8, j->created);
        if (sqlite3_step(st) == SQLITE_DONE) id = sqlite3_last_insert_rowid(db);
    }
    if (!id) daemon_log(JB_LOG_ERROR, "sqlite: cannot record a job: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    free(frame);
    return id;
}

void store_job_state(const struct job *j)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "UPDATE jobs SET state=?, take_id=?, err_code=?, err_msg=? WHERE id=?",
                           -1,
                           &st,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, job_state_name(j->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, j->take_id);
    sqlite3_bind_text(st, 3, j->err_code, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, j->err_msg, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, j->id);
    if (sqlite3_step(st) != SQLITE_DONE)
        daemon_log(JB_LOG_ERROR, "sqlite: job %lld: %s", (long long)j->id, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (j->state == JOB_DONE || j->state == JOB_FAILED || j->state == JOB_CANCELLED) {
        char p[1200];
        file_path(p, sizeof p, "riffs", j->id, ".f32");
        unlink(p);
        file_path(p, sizeof p, "ckpt", j->id, ".take");
        unlink(p);
    }
}

bool store_job_checkpoint(int64_t id, const struct jb_take *partial, int level, int windows)
{
    char p[1200];
    file_path(p, sizeof p, "ckpt", id, ".take");
    if (jb_take_save(partial, p) != JB_STATUS_OK) return false;
    sqlite3_stmt *st = NULL;
    bool ok          = false;
    if (sqlite3_prepare_v2(
          db, "UPDATE jobs SET ck_level=?, ck_windows=? WHERE id=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, level);
        sqlite3_bind_int(st, 2, windows);
        sqlite3_bind_int64(st, 3, id);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return ok;
}

bool store_riff_save(int64_t id, const float *riff, int64_t n)
{
    char p[1200];
    file_path(p, sizeof p, "riffs", id, ".f32");
    struct jb_outfile f;
    if (jb_outfile_open(&f, p) != JB_STATUS_OK) return false;
    const char *b = (const char *)riff;
    size_t left   = (size_t)n * sizeof(float);
    while (left > 0) {
        ssize_t w = write(f.fd, b, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            jb_outfile_abort(&f);
            return false;
        }
        b += w;
        left -= (size_t)w;
    }
    return jb_outfile_commit(&f) == JB_STATUS_OK;
}

float *store_riff_load(int64_t id, int64_t *n)
{
    char p[1200];
    file_path(p, sizeof p, "riffs", id, ".f32");
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    struct stat st;
    float *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && st.st_size % 4 == 0 &&
        st.st_size <= (off_t)(g_cfg.lim.riff_seconds * JB_SAMPLE_RATE * 4 + 4096)) {
        buf = malloc((size_t)st.st_size);
        if (buf && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
        }
        *n = st.st_size / 4;
    }
    fclose(f);
    return buf;
}

int64_t store_take_save(const struct jb_take *take, int64_t job_id)
{
    sqlite3_stmt *st = NULL;
    int64_t id       = 0;
    const double now = now_unix();
    if (sqlite3_prepare_v2(
          db, "INSERT INTO takes(job, created, last_used) VALUES(?,?,?)", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_double(st, 2, now);
        sqlite3_bind_double(st, 3, now);
        if (sqlite3_step(st) == SQLITE_DONE) id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    if (!id) return 0;
    char p[1200];
    file_path(p, sizeof p, "takes", id, ".take");
    struct stat sb;
    if (jb_take_save(take, p) != JB_STATUS_OK || stat(p, &sb) != 0) {
        char del[64];
        snprintf(del, sizeof del, "DELETE FROM takes WHERE id=%lld", (long long)id);
        exec(del);
        return 0;
    }
    char upd[128];
    snprintf(upd,
             sizeof upd,
             "UPDATE takes SET bytes=%lld WHERE id=%lld",
             (long long)sb.st_size,
             (long long)id);
    exec(upd);
    return id;
}

struct jb_take *store_take_load(int64_t take_id)
{
    char p[1200];
    file_path(p, sizeof p, "takes", take_id, ".take");
    struct jb_take *t = NULL;
    if (jb_take_load(p, &t) != JB_STATUS_OK) return NULL;
    char upd[128];
    snprintf(upd,
             sizeof upd,
             "UPDATE takes SET last_used=%.6f WHERE id=%lld",
             now_unix(),
             (long long)take_id);
    exec(upd);
    return t;
}

bool store_take_delete(int64_t take_id)
{
    char p[1200];
    file_path(p, sizeof p, "takes", take_id, ".take");
    bool existed = unlink(p) == 0;
    char del[64];
    snprintf(del, sizeof del, "DELETE FROM takes WHERE id=%lld", (long long)take_id);
    exec(del);
    return existed && sqlite3_changes(db) >= 0;
}

int64_t store_takes_bytes(void)
{
    sqlite3_stmt *st = NULL;
    int64_t sum      = 0;
    if (sqlite3_prepare_v2(db, "SELECT COALESCE(SUM(bytes),0) FROM takes", -1, &st, NULL) ==
          SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        sum = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return sum;
}

void store_enforce_quota(int64_t quota)
{
    if (quota <= 0) return;
    while (store_takes_bytes() > quota) {
        sqlite3_stmt *st = NULL;
        int64_t victim   = 0;
        /* the least recently used take that is not the newest one */
        if (sqlite3_prepare_v2(db,
                               "SELECT id FROM takes WHERE id <> (SELECT MAX(id) FROM takes)"
                               " ORDER BY last_used ASC LIMIT 1",
                               -1,
                               &st,
                               NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            victim = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (!victim) break;
        daemon_log(JB_LOG_INFO, "takes over quota: evicting take %lld", (long long)victim);
        store_take_delete(victim);
    }
}

void store_restore_jobs(void)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, kind, model_set, params, src_take, decode_candidate,"
                           " decode_level, created, ck_level, ck_windows FROM jobs WHERE state IN"
                           " ('queued','running','interrupted') ORDER BY id",
                           -1,
                           &st,
                           NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct job *j = calloc(1, sizeof *j);
        if (!j) break;
        j->id               = sqlite3_column_int64(st, 0);
        j->kind             = (enum job_kind)sqlite3_column_int(st, 1);
        j->set              = sqlite3_column_int(st, 2);
        j->src_take         = sqlite3_column_int64(st, 4);
        j->decode_candidate = sqlite3_column_int(st, 5);
        j->decode_level     = sqlite3_column_int(st, 6);
        j->created          = sqlite3_column_double(st, 7);
        const int ck_level  = sqlite3_column_int(st, 8);
        char why[128]       = "";
        const void *blob    = sqlite3_column_blob(st, 3);
        int blen            = sqlite3_column_bytes(st, 3);
        j->params           = blob ? ep_msg_decode(blob, (size_t)blen, why, sizeof why) : NULL;
        j->state            = JOB_QUEUED;
        char mode[16]       = "";
        if (j->params) ep_msg_get_strbuf(j->params, "mode", mode, sizeof mode);
        if (j->kind == JOB_GENERATE && !strcmp(mode, "primed"))
            j->riff = store_riff_load(j->id, &j->riff_n);
        if (!j->params || j->set < 0 || j->set >= g_cfg.n_sets || j->kind == JOB_DECODE ||
            (!strcmp(mode, "primed") && !j->riff)) {
            j->state = JOB_FAILED;
            snprintf(j->err_code, sizeof j->err_code, "internal");
            snprintf(j->err_msg, sizeof j->err_msg, "interrupted and cannot be resumed");
        } else if (ck_level >= 0) {
            j->resume        = true;
            j->resume_level  = ck_level;
            j->resume_window = sqlite3_column_int(st, 9);
        }
        if (j->state == JOB_FAILED) store_job_state(j);
        daemon_log(JB_LOG_INFO,
                   "job %lld from the last run: %s%s",
                   (long long)j->id,
                   j->state == JOB_FAILED ? "failed: " : "queued again",
                   j->state == JOB_FAILED ? j->err_msg : (j->resume ? " (resuming)" : ""));
        j->finished_at_load = j->state == JOB_FAILED;
        j->next             = g_jobs;
        g_jobs              = j;
    }
    sqlite3_finalize(st);
}

void store_list_jobs(struct ep_msg *msg, int max)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, state, params, take_id, err_code, err_msg, created, kind"
                           " FROM jobs ORDER BY id DESC LIMIT ?",
                           -1,
                           &st,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int(st, 1, max);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ep_msg *it = ep_msg_new(NULL);
        if (!it) break;
        const int64_t id = sqlite3_column_int64(st, 0);
        ep_msg_set_int(it, "job", id);
        const char *state = (const char *)sqlite3_column_text(st, 1);
        /* live state wins (the row is updated at transitions only) */
        struct job *live = job_find(id);
        ep_msg_set_str(it, "state", live ? job_state_name(live->state) : state ? state : "?");
        struct ep_msg *p = NULL;
        if (sqlite3_column_blob(st, 2))
            p = ep_msg_decode(
              sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2), NULL, 0);
        char buf[64];
        double d;
        int64_t i;
        if (ep_msg_get_strbuf(p, "mode", buf, sizeof buf)) ep_msg_set_str(it, "mode", buf);
        if (sqlite3_column_int(st, 7) == JOB_DECODE) ep_msg_set_str(it, "mode", "decode");
        if (ep_msg_get_double(p, "seconds", &d)) ep_msg_set_double(it, "seconds", d);
        if (ep_msg_get_int(p, "candidates", &i)) ep_msg_set_int(it, "candidates", i);
        if (ep_msg_get_strbuf(p, "model_set", buf, sizeof buf))
            ep_msg_set_str(it, "model_set", buf);
        ep_msg_free(p);
        if (live && live->has_prog) {
            ep_msg_set_int(it, "level", live->prog.level);
            ep_msg_set_int(it, "done_tokens", live->prog.done);
            ep_msg_set_int(it, "total_tokens", live->prog.total);
        }
        const int64_t take = live ? live->take_id : sqlite3_column_int64(st, 3);
        if (take) ep_msg_set_int(it, "take", take);
        const char *em = (const char *)sqlite3_column_text(st, 5);
        if (live && live->err_msg[0])
            ep_msg_set_str(it, "error", live->err_msg);
        else if (em && *em)
            ep_msg_set_str(it, "error", em);
        ep_msg_set_double(it, "created", sqlite3_column_double(st, 6));
        ep_msg_add_item(msg, "jobs", it);
        ep_msg_free(it);
    }
    sqlite3_finalize(st);
}

bool store_job_lookup(int64_t id,
                      char *state,
                      size_t state_len,
                      int64_t *take,
                      char *err,
                      size_t err_len)
{
    sqlite3_stmt *st = NULL;
    bool found       = false;
    if (sqlite3_prepare_v2(
          db, "SELECT state, take_id, err_msg FROM jobs WHERE id=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            found         = true;
            const char *s = (const char *)sqlite3_column_text(st, 0);
            const char *e = (const char *)sqlite3_column_text(st, 2);
            snprintf(state, state_len, "%s", s ? s : "");
            *take = sqlite3_column_int64(st, 1);
            snprintf(err, err_len, "%s", e ? e : "");
        }
    }
    sqlite3_finalize(st);
    return found;
}

uint8_t *store_take_file(int64_t take_id, size_t max, size_t *len)
{
    char p[1200];
    file_path(p, sizeof p, "takes", take_id, ".take");
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && (size_t)st.st_size <= max) {
        buf = malloc((size_t)st.st_size);
        if (buf && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)st.st_size;
    }
    fclose(f);
    return buf;
}
