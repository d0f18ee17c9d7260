/* herald migrate / the schema check at serve start. */
#include "herald/store.h"

#include "store/backend.h"
#include "store/migrate.h"

#include "herald/config.h"
#include "herald/core.h"
#include "herald/log.h"

#include <stdio.h>
#include <unistd.h>

/* Opens a connection, retrying every 250 ms for up to @wait_ms. */
static struct hd_store_conn *open_with_retry(const struct hd_store_backend *b, const char *target,
                                             const struct hd_config *cfg, int wait_ms, char *err,
                                             size_t cap)
{
    uint64_t deadline = hd_now_ms() + (uint64_t)(wait_ms > 0 ? wait_ms : 0);
    for (;;) {
        struct hd_store_conn *c = b->open(target, cfg->store.query_timeout_ms, err, cap);
        if (c || hd_now_ms() >= deadline)
            return c;
        usleep(250000);
    }
}

static enum hd_schema_result run(const struct hd_store_backend *b, struct hd_store_conn *c,
                                 enum hd_schema_mode mode, char *err, size_t cap)
{
    struct hd_migration_status st;
    if (hd__migration_status(b, c, mode == HD_SCHEMA_STATUS, &st, err, cap) != 0)
        return HD_SCHEMA_UNREACHABLE;
    if (mode == HD_SCHEMA_STATUS)
        return HD_SCHEMA_OK;
    if (mode == HD_SCHEMA_CHECK) {
        if (st.pending == 0)
            return HD_SCHEMA_OK;
        char n[16];
        snprintf(n, sizeof(n), "%d", st.pending);
        hd_log(HD_LOG_ERROR,
               "the database schema is out of date: run `herald migrate --config FILE` "
               "(or set store.auto_migrate)",
               "key", "store.auto_migrate", "pending", n, NULL);
        return HD_SCHEMA_OUTDATED;
    }
    int applied = hd__migrate(b, c, err, cap);
    if (applied < 0)
        return HD_SCHEMA_UNREACHABLE;
    char n[16];
    snprintf(n, sizeof(n), "%d", applied);
    hd_log(HD_LOG_INFO, "schema up to date", "backend", b->name, "applied", n, NULL);
    return HD_SCHEMA_OK;
}

enum hd_schema_result hd_store_schema(const struct hd_config *cfg, enum hd_schema_mode mode,
                                      int wait_ms)
{
    const char *target = NULL;
    const struct hd_store_backend *b =
        hd__store_backend_for(cfg->store.database_url, cfg->store.sqlite_path, &target);
    if (!b) {
        hd_log(HD_LOG_ERROR, "unsupported store.database_url", "key", "store.database_url", NULL);
        return HD_SCHEMA_UNREACHABLE;
    }
    char err[256] = "";
    struct hd_store_conn *c = open_with_retry(b, target, cfg, wait_ms, err, sizeof(err));
    if (!c) {
        hd_log(HD_LOG_ERROR, "cannot connect to the store", "backend", b->name, "error", err, NULL);
        return HD_SCHEMA_UNREACHABLE;
    }
    enum hd_schema_result r = run(b, c, mode, err, sizeof(err));
    if (r == HD_SCHEMA_UNREACHABLE)
        hd_log(HD_LOG_ERROR, "migration failed", "backend", b->name, "error", err, NULL);
    b->close(c);
    return r;
}
