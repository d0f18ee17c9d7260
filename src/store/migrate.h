/* Schema migrations: numbered SQL files in src/store/migrations/, named
 * NNNN_name.DIALECT.sql, compiled into the binary, applied in order. */
#ifndef HERALD_STORE_MIGRATE_H
#define HERALD_STORE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "store/backend.h"

struct hd_migration {
    int version;
    char name[64];   /* "0001_init" */
    const char *sql; /* embedded, NUL-terminated */
};

/** Fills @out with the embedded migrations of @dialect in version order
 * (at most @cap); returns how many there are. */
size_t hd__migrations_for(const char *dialect, struct hd_migration *out, size_t cap);

/** What the database has against what the binary carries. */
struct hd_migration_status {
    int latest;  /* highest version the binary carries */
    int applied; /* how many of them the database has */
    int pending; /* how many it lacks */
    int unknown; /* versions in the database this binary does not know */
};

/**
 * Reads the status on @c. With @print, writes one line per migration to
 * stdout ("applied 0001_init" / "pending 0002_x"). Returns 0 or -1 (@err).
 */
int hd__migration_status(const struct hd_store_backend *b, struct hd_store_conn *c, bool print,
                         struct hd_migration_status *st, char *err, size_t cap);

/** Applies every pending migration in order, each in its own transaction.
 * Returns how many were applied, or -1 with a reason in @err. */
int hd__migrate(const struct hd_store_backend *b, struct hd_store_conn *c, char *err, size_t cap);

#endif
