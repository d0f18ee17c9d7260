/* Private to the Postgres backend (postgres.c: connection, statement runner,
 * error mapping, migrations; postgres_ops.c: the ops). Everything here is
 * used by the one DB worker thread that owns the connection. */
#ifndef HERALD_STORE_POSTGRES_INTERNAL_H
#define HERALD_STORE_POSTGRES_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/backend.h"

struct hd_store_conn {
    PGconn *pg;
    int timeout_ms;    /* store.query_timeout_ms; 0 = unbounded */
    bool broken;       /* a fatal error was seen: usable() is false for good */
    bool in_tx;        /* between BEGIN and COMMIT/ROLLBACK */
    uint64_t prepared; /* bit per hd_pg_stmt.slot, set once prepared on this connection */
};

/* A named statement, prepared on a connection the first time it runs
 * (the tables may not exist yet when the connection opens: migrate). */
struct hd_pg_stmt {
    int slot; /* unique, 0..63 */
    const char *name;
    const char *sql;
};

#define HD_PG_MAX_PARAMS 10

/* Text parameters for one statement; numbers are formatted into num[]. */
struct hd_pg_params {
    int n;
    const char *v[HD_PG_MAX_PARAMS];
    char num[HD_PG_MAX_PARAMS][24];
};

/** Appends @s (borrowed; NULL = SQL NULL). */
void hd__pg_str(struct hd_pg_params *p, const char *s);
/** Appends @s, with NULL and "" both meaning SQL NULL. */
void hd__pg_opt(struct hd_pg_params *p, const char *s);
void hd__pg_i64(struct hd_pg_params *p, int64_t x);
void hd__pg_bool(struct hd_pg_params *p, bool b);

/**
 * Runs @st with @p (borrowed) on @c for @op. Returns its result (the caller
 * PQclears it) when it succeeded; otherwise NULL with op->status set
 * (UNAVAILABLE, TIMEOUT, CONFLICT + conflict_field, NOT_FOUND for a
 * foreign key, ERROR logged), and an open transaction already rolled back.
 */
PGresult *hd__pg_run(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st,
                     const struct hd_pg_params *p);

/** Like hd__pg_run, for a statement that returns no rows; *affected gets
 * its row count (may be NULL). Returns true on success. */
bool hd__pg_cmd(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st,
                const struct hd_pg_params *p, int64_t *affected);

/** BEGIN / COMMIT for @op; false with op->status set (and rolled back). */
bool hd__pg_begin(struct hd_store_conn *c, struct hd_store_op *op);
bool hd__pg_commit(struct hd_store_conn *c, struct hd_store_op *op);

/** Ends an open transaction without keeping anything (best effort). */
void hd__pg_rollback(struct hd_store_conn *c);

/** Runs @op's kind (postgres_ops.c); @op->status starts at HD_STORE_OK. */
void hd__pg_exec_op(struct hd_store_conn *c, struct hd_store_op *op);

#endif
