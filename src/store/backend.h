/* Private to src/store: what a database backend provides. A connection is
 * owned by one DB worker thread for its whole life; nothing here is shared
 * between threads. */
#ifndef HERALD_STORE_BACKEND_H
#define HERALD_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/store.h"

struct hd_store_conn; /* a backend's own connection struct */

struct hd_store_backend {
    const char *name;    /* "postgres" | "sqlite" */
    const char *dialect; /* migration file suffix: "pg" | "sqlite" */

    /**
     * Opens a connection to @target (a libpq URL, or a SQLite file path whose
     * directory is created). Every statement is bounded by @query_timeout_ms.
     * On failure returns NULL and writes a one-line reason into @err (never a
     * password).
     */
    struct hd_store_conn *(*open)(const char *target, int query_timeout_ms, char *err, size_t cap);

    /** Closes cleanly (Postgres sees a Terminate message, not an EOF). */
    void (*close)(struct hd_store_conn *c);

    /** False once the connection is broken; the worker then reopens it. */
    bool (*usable)(struct hd_store_conn *c);

    /**
     * Runs @op on @c: sets op->status (and conflict_field) and the results
     * its kind promises (store.h). A write returns HD_STORE_OK only after it
     * committed. A lost connection gives HD_STORE_UNAVAILABLE, a statement
     * past the timeout HD_STORE_TIMEOUT, a unique violation
     * HD_STORE_CONFLICT naming "email" or "username" (from the index name).
     */
    void (*exec)(struct hd_store_conn *c, struct hd_store_op *op);

    /**
     * Reads schema_migrations (creating it when missing) into *versions
     * (ascending; caller frees). Returns 0, or -1 with a reason in @err.
     */
    int (*applied_migrations)(struct hd_store_conn *c, int **versions, size_t *n, char *err,
                              size_t cap);

    /**
     * Runs migration @version (@sql may hold many statements) and records it
     * in schema_migrations, in one transaction; a version already recorded
     * (by a concurrent node) is a successful no-op. Returns 0, or -1 with a
     * reason in @err (nothing applied).
     */
    int (*apply_migration)(struct hd_store_conn *c, int version, const char *name, const char *sql,
                           char *err, size_t cap);
};

extern const struct hd_store_backend hd__store_postgres;
extern const struct hd_store_backend hd__store_sqlite;

/**
 * Chooses the backend for store.database_url: "postgres://…" or
 * "postgresql://…" → Postgres with the URL itself as *target; "sqlite:PATH"
 * → SQLite at PATH; "" → SQLite at @sqlite_path. Returns NULL for anything
 * else.
 */
const struct hd_store_backend *hd__store_backend_for(const char *url, const char *sqlite_path,
                                                     const char **target);

#endif
