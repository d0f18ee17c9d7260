/* The embedded SQLite store backend: one connection per DB worker thread,
 * in WAL mode with synchronous=FULL, so a commit that returned is on disk
 * and survives kill -9 or a power cut. This file holds the connection,
 * the statement cache, error mapping and migrations; the SQL of each op
 * lives in sqlite_ops.c. */
#include "store/sqlite_internal.h"

#include "herald/core.h"
#include "herald/log.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* VM instructions between two looks at the clock: about a microsecond's
 * work each, so a statement overruns its deadline by well under 1 ms. */
#define PROGRESS_OPS 1000

#define CREATE_MIGRATIONS                                                                          \
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "                  \
    "name TEXT NOT NULL, applied_at INTEGER NOT NULL)"

int64_t hd__sq_now(const struct hd_store_op *op)
{
    return op->now ? op->now : hd_wall_ms();
}

/* ---- errors --------------------------------------------------------------- */

/* The file itself is in trouble: the worker should reopen it. */
static bool fatal_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        return true;
    default:
        return false;
    }
}

/* Which user field a unique violation is about: SQLite names an expression
 * index ("index 'users_email_lower_key'") and a plain one by its columns. */
static const char *conflict_field(const char *msg)
{
    if (strstr(msg, "users_email_lower_key") || strstr(msg, "users.email"))
        return "email";
    if (strstr(msg, "users_username_lower_key") || strstr(msg, "users.username"))
        return "username";
    return NULL;
}

int hd__sq_error(struct hd_store_op *op, const char *why)
{
    op->status = HD_STORE_ERROR;
    hd_log(HD_LOG_ERROR, "store query failed", "op", hd_store_op_name(op->kind), "backend",
           "sqlite", "error", why, NULL);
    return -1;
}

/* Constraint failures the contract gives a meaning; -1 for the rest. */
static int map_constraint(struct hd_store_op *op, int rc, const char *msg)
{
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        op->status = HD_STORE_NOT_FOUND; /* a referenced user/org/session is gone */
        return 0;
    }
    const char *field = conflict_field(msg);
    if ((rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) && field) {
        op->status = HD_STORE_CONFLICT;
        op->conflict_field = field;
        return 0;
    }
    return -1;
}

int hd__sq_fail(struct hd_store_conn *c, struct hd_store_op *op, int rc)
{
    const char *msg = sqlite3_errmsg(c->db);
    if ((rc & 0xff) == SQLITE_CONSTRAINT && map_constraint(op, rc, msg) == 0)
        return -1;
    if (rc == SQLITE_INTERRUPT || (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
        /* our deadline, or another writer held the lock for the whole busy timeout */
        op->status = HD_STORE_TIMEOUT;
        hd_log(HD_LOG_WARN, "store query timed out", "op", hd_store_op_name(op->kind), "backend",
               "sqlite", "error", c->timed_out ? "query_timeout_ms passed" : msg, NULL);
        return -1;
    }
    if (fatal_code(rc)) {
        c->broken = true;
        op->status = HD_STORE_UNAVAILABLE;
        hd_log(HD_LOG_ERROR, "store unusable", "op", hd_store_op_name(op->kind), "backend",
               "sqlite", "error", msg, NULL);
        return -1;
    }
    return hd__sq_error(op, msg);
}

/* ---- statements ------------------------------------------------------------ */

sqlite3_stmt *hd__sq_stmt(struct hd_store_conn *c, struct hd_store_op *op, enum hd__sq_stmt id)
{
    sqlite3_stmt *st = c->stmt[id];
    if (st) {
        HD_ASSERT(!sqlite3_stmt_busy(st)); /* every user releases what it stepped */
        return st;
    }
    int rc = sqlite3_prepare_v3(c->db, hd__sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        hd__sq_fail(c, op, sqlite3_extended_errcode(c->db));
        return NULL;
    }
    c->stmt[id] = st;
    return st;
}

void hd__sq_release(sqlite3_stmt *st)
{
    if (!st)
        return;
    sqlite3_reset(st); /* ends its read transaction; the step already reported any error */
    sqlite3_clear_bindings(st);
}

int hd__sq_row(struct hd_store_conn *c, struct hd_store_op *op, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    int out = rc == SQLITE_DONE ? 0 : hd__sq_fail(c, op, sqlite3_extended_errcode(c->db));
    hd__sq_release(st);
    return out;
}

int hd__sq_run(struct hd_store_conn *c, struct hd_store_op *op, sqlite3_stmt *st)
{
    int r;
    while ((r = hd__sq_row(c, op, st)) > 0)
        ;
    return r;
}

int hd__sq_simple(struct hd_store_conn *c, struct hd_store_op *op, enum hd__sq_stmt id)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, id);
    return st ? hd__sq_run(c, op, st) : -1;
}

int hd__sq_begin(struct hd_store_conn *c, struct hd_store_op *op)
{
    return hd__sq_simple(c, op, SQ_BEGIN);
}

void hd__sq_rollback(struct hd_store_conn *c)
{
    /* nothing open: SQLite may already have rolled back (after an interrupt) */
    if (sqlite3_get_autocommit(c->db))
        return;
    c->deadline_us = 0; /* the rollback itself must not be interrupted */
    char *msg = NULL;
    if (sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, &msg) != SQLITE_OK) {
        hd_log(HD_LOG_ERROR, "sqlite rollback failed", "error", msg ? msg : "", NULL);
        c->broken = true; /* a connection stuck in a transaction is no use */
    }
    sqlite3_free(msg);
}

int hd__sq_commit(struct hd_store_conn *c, struct hd_store_op *op)
{
    if (hd__sq_simple(c, op, SQ_COMMIT) == 0)
        return 0;
    hd__sq_rollback(c);
    return -1;
}

void hd__sq_bind_text(sqlite3_stmt *st, int i, const char *s, bool empty_is_null)
{
    if (!s || (empty_is_null && !s[0]))
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

char *hd__sq_col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? hd_strndup((const char *)s, (size_t)sqlite3_column_bytes(st, i)) : NULL;
}

void hd__sq_col_copy(sqlite3_stmt *st, int i, char *buf, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    snprintf(buf, cap, "%s", s ? (const char *)s : "");
}

/* ---- connection ------------------------------------------------------------ */

/* mkdir -p of the directory holding @path (0700: it holds secrets' hashes). */
static int make_parent_dirs(const char *path)
{
    char *p = hd_strdup(path);
    char *slash = strrchr(p, '/');
    int rc = 0;
    if (slash && slash != p) {
        *slash = '\0';
        for (char *q = p + 1; rc == 0; q++) {
            char ch = *q;
            if (ch != '/' && ch != '\0')
                continue;
            *q = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST)
                rc = -errno;
            *q = ch;
            if (ch == '\0')
                break;
        }
    }
    free(p);
    return rc;
}

/* Interrupts a statement past the op's deadline (SQLITE_INTERRUPT). */
static int progress(void *arg)
{
    struct hd_store_conn *c = arg;
    if (c->deadline_us && hd_now_us() > c->deadline_us) {
        c->timed_out = true;
        return 1;
    }
    return 0;
}

static int exec_sql(struct hd_store_conn *c, const char *sql, char *err, size_t cap)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, cap, "sqlite: %s", msg ? msg : sqlite3_errstr(rc));
        if (fatal_code(sqlite3_extended_errcode(c->db)))
            c->broken = true;
    }
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : -1;
}

/* Switches to WAL; an in-memory database (tests) has no journal file. */
static int set_wal(struct hd_store_conn *c, const char *target, char *err, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    bool ok = mode && (strcmp((const char *)mode, "wal") == 0 || strcmp(target, ":memory:") == 0);
    if (!ok)
        snprintf(err, cap, "sqlite: cannot use WAL for %s: %s", target,
                 mode ? (const char *)mode : sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

static int configure(struct hd_store_conn *c, const char *target, char *err, size_t cap)
{
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, c->timeout_ms); /* writers of other workers wait, not fail */
    sqlite3_progress_handler(c->db, PROGRESS_OPS, progress, c);
    if (set_wal(c, target, err, cap) != 0)
        return -1;
    return exec_sql(c, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", err, cap);
}

static struct hd_store_conn *sq_open(const char *target, int query_timeout_ms, char *err,
                                     size_t cap)
{
    if (!sqlite3_threadsafe()) {
        snprintf(err, cap, "sqlite: the library was built without thread support");
        return NULL;
    }
    int rc = make_parent_dirs(target);
    if (rc != 0) {
        snprintf(err, cap, "sqlite: cannot create the directory of %s: %s", target, strerror(-rc));
        return NULL;
    }
    /* Create the file owner-only before SQLite does (it would use 0644 less
     * the umask): it holds password and token hashes. The -wal and -shm
     * files SQLite makes take the main file's permissions. */
    int fd = open(target, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    struct hd_store_conn *c = hd_calloc(1, sizeof(*c));
    c->timeout_ms = query_timeout_ms;
    rc = sqlite3_open_v2(target, &c->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, cap, "sqlite: cannot open %s: %s", target,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto fail;
    }
    if (configure(c, target, err, cap) != 0)
        goto fail;
    return c;
fail:
    sqlite3_close(c->db); /* NULL is a no-op */
    free(c);
    return NULL;
}

static void sq_close(struct hd_store_conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < SQ__COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK)
        hd_log(HD_LOG_ERROR, "sqlite close failed", "error", sqlite3_errstr(rc), NULL);
    free(c);
}

static bool sq_usable(struct hd_store_conn *c)
{
    return c && !c->broken;
}

static void sq_exec(struct hd_store_conn *c, struct hd_store_op *op)
{
    op->status = HD_STORE_OK;
    op->conflict_field = NULL;
    if ((unsigned)op->kind >= HD_OP__COUNT || !hd__sq_ops[op->kind]) {
        hd__sq_error(op, "unknown op kind");
        return;
    }
    c->timed_out = false;
    c->deadline_us = hd_now_us() + (uint64_t)c->timeout_ms * 1000u;
    hd__sq_ops[op->kind](c, op);
    if (!sqlite3_get_autocommit(c->db)) { /* an op must never leave one open */
        hd__sq_rollback(c);
        if (op->status == HD_STORE_OK)
            hd__sq_error(op, "transaction left open");
    }
    c->deadline_us = 0;
}

/* ---- migrations ------------------------------------------------------------ */

static int sq_applied_migrations(struct hd_store_conn *c, int **versions, size_t *n, char *err,
                                 size_t cap)
{
    *versions = NULL;
    *n = 0;
    if (exec_sql(c, CREATE_MIGRATIONS, err, cap) != 0)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "SELECT version FROM schema_migrations ORDER BY version", -1,
                                &st, NULL);
    size_t len = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *versions = hd_realloc(*versions, (len + 1) * sizeof(**versions));
        (*versions)[len++] = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE)
        snprintf(err, cap, "sqlite: reading schema_migrations: %s", sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*versions);
        *versions = NULL;
        return -1;
    }
    *n = len;
    return 0;
}

/* 1 when @version is recorded, 0 when not, -1 on error. */
static int migration_recorded(struct hd_store_conn *c, int version, char *err, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "SELECT 1 FROM schema_migrations WHERE version = ?1", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, version);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        snprintf(err, cap, "sqlite: reading schema_migrations: %s", sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int record_migration(struct hd_store_conn *c, int version, const char *name, char *err,
                            size_t cap)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        c->db, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)", -1,
        &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, version);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, hd_wall_ms());
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE)
        snprintf(err, cap, "sqlite: recording migration %s: %s", name, sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Inside the transaction: runs @sql unless @version is already there. */
static int apply_in_tx(struct hd_store_conn *c, int version, const char *name, const char *sql,
                       char *err, size_t cap)
{
    if (exec_sql(c, CREATE_MIGRATIONS, err, cap) != 0)
        return -1;
    int recorded = migration_recorded(c, version, err, cap);
    if (recorded != 0)
        return recorded > 0 ? 0 : -1; /* a concurrent migrator got there first */
    if (exec_sql(c, sql, err, cap) != 0) {
        size_t len = strlen(err);
        snprintf(err + len, cap > len ? cap - len : 0, " (in %s)", name);
        return -1;
    }
    return record_migration(c, version, name, err, cap);
}

static int sq_apply_migration(struct hd_store_conn *c, int version, const char *name,
                              const char *sql, char *err, size_t cap)
{
    if (exec_sql(c, "BEGIN IMMEDIATE", err, cap) != 0)
        return -1;
    if (apply_in_tx(c, version, name, sql, err, cap) == 0 && exec_sql(c, "COMMIT", err, cap) == 0)
        return 0;
    hd__sq_rollback(c);
    return -1;
}

const struct hd_store_backend hd__store_sqlite = {
    .name = "sqlite",
    .dialect = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .usable = sq_usable,
    .exec = sq_exec,
    .applied_migrations = sq_applied_migrations,
    .apply_migration = sq_apply_migration,
};
