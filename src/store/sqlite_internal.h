/* Private to the SQLite backend: sqlite.c (connection, statement cache,
 * errors, migrations) and sqlite_ops.c (the SQL of each op). A connection
 * belongs to one DB worker thread for its whole life (SQLITE_OPEN_NOMUTEX);
 * nothing here is shared between threads. */
#ifndef HERALD_STORE_SQLITE_INTERNAL_H
#define HERALD_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/backend.h"

/* Every statement the ops run, prepared at most once per connection. */
enum hd__sq_stmt {
    SQ_BEGIN,
    SQ_COMMIT,
    SQ_ORG_INSERT,
    SQ_USER_INSERT,
    SQ_USER_BY_EMAIL,
    SQ_USER_BY_ID,
    SQ_USER_UPDATE_PROFILE,
    SQ_USER_SET_PASSWORD,
    SQ_USER_SET_DISABLED,
    SQ_SESSION_INSERT,
    SQ_TOKEN_INSERT,
    SQ_SESSION_TOUCH,
    SQ_TOKEN_ROTATE,
    SQ_REFRESH_FIND,
    SQ_SESSION_REVOKE,
    SQ_SESSIONS_REVOKE_USER,
    SQ_SESSIONS_LIST,
    SQ_SESSIONS_LIVE,
    SQ_KEY_INSERT,
    SQ_KEY_REVOKE,
    SQ_KEY_FIND,
    SQ_KEYS_LIST,
    SQ_NOTE_INSERT,
    SQ_NOTES_LIST,
    SQ_NOTE_MARK_READ,
    SQ_NOTES_MARK_ALL_READ,
    SQ_EVENTS_AFTER,
    SQ_NOTES_PURGE,
    SQ_PING,
    SQ__COUNT
};

/* The text of each statement (sqlite_ops.c). */
extern const char *const hd__sq_sql[SQ__COUNT];

struct hd_store_conn {
    sqlite3 *db;
    int timeout_ms;
    uint64_t deadline_us; /* monotonic; 0 = none (migrations run unbounded) */
    bool timed_out;       /* the progress handler interrupted a statement */
    bool broken;          /* corrupt, not a database, or an I/O error seen */
    sqlite3_stmt *stmt[SQ__COUNT];
};

/* Runs one op kind on @c; leaves op->status HD_STORE_OK or sets it. */
typedef void (*hd__sq_op_fn)(struct hd_store_conn *c, struct hd_store_op *op);

/* Indexed by enum hd_store_op_kind (sqlite_ops.c). */
extern const hd__sq_op_fn hd__sq_ops[HD_OP__COUNT];

/**
 * The cached statement @id, reset and with no bindings, prepared on first
 * use. Returns NULL after setting op->status (and logging) when it cannot
 * be prepared. The statement stays owned by @c.
 */
sqlite3_stmt *hd__sq_stmt(struct hd_store_conn *c, struct hd_store_op *op, enum hd__sq_stmt id);

/** Resets @st and drops its bindings (borrowed strings). NULL is fine. */
void hd__sq_release(sqlite3_stmt *st);

/**
 * Steps @st once. Returns 1 with a row (the caller reads it, then steps
 * again or releases), 0 when done, -1 on error with op->status set; on 0
 * and -1 @st is already released.
 */
int hd__sq_row(struct hd_store_conn *c, struct hd_store_op *op, sqlite3_stmt *st);

/** Steps @st to the end, ignoring rows, and releases it. Returns 0 or -1
 * (op->status set). */
int hd__sq_run(struct hd_store_conn *c, struct hd_store_op *op, sqlite3_stmt *st);

/** Runs the cached statement @id, which takes no parameters. 0 or -1. */
int hd__sq_simple(struct hd_store_conn *c, struct hd_store_op *op, enum hd__sq_stmt id);

/** BEGIN IMMEDIATE / COMMIT: 0 or -1 (op->status set; a failed COMMIT is
 * rolled back). */
int hd__sq_begin(struct hd_store_conn *c, struct hd_store_op *op);
int hd__sq_commit(struct hd_store_conn *c, struct hd_store_op *op);

/** Rolls back the open transaction, if any, leaving op->status alone. */
void hd__sq_rollback(struct hd_store_conn *c);

/** Maps @rc (an extended SQLite code from @c's last call) to op->status,
 * logging what is not an expected outcome. Returns -1. */
int hd__sq_fail(struct hd_store_conn *c, struct hd_store_op *op, int rc);

/** Sets op->status HD_STORE_ERROR and logs @why. Returns -1. */
int hd__sq_error(struct hd_store_op *op, const char *why);

/** Binds @s as text without copying (it must outlive the step), or NULL
 * when @s is NULL; with @empty_is_null, "" binds NULL too. */
void hd__sq_bind_text(sqlite3_stmt *st, int i, const char *s, bool empty_is_null);

/** Column @i as a new string (hd_strdup), or NULL for SQL NULL. */
char *hd__sq_col_dup(sqlite3_stmt *st, int i);

/** Copies column @i into @buf (@cap bytes, truncating); "" for SQL NULL. */
void hd__sq_col_copy(sqlite3_stmt *st, int i, char *buf, size_t cap);

/** op->now when the caller set it, else the wall clock (unix ms). */
int64_t hd__sq_now(const struct hd_store_op *op);

#endif
