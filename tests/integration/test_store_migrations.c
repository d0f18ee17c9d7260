/* Schema migrations on both backends: from an empty database every embedded
 * migration is applied and recorded, the status then shows nothing pending,
 * a re-run applies nothing and changes nothing, and every table exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "herald/core.h"
#include "store/backend.h"
#include "store/migrate.h"
#include "store_fixture.h"

static const char *const tables[] = {
    "organizations", "users",         "sessions",           "refresh_tokens",
    "api_keys",      "notifications", "notification_reads", "schema_migrations",
};

static struct hd_migration_status status_of(struct hd_store_fixture *f)
{
    struct hd_migration_status st;
    char err[512] = "";
    cr_assert_eq(hd__migration_status(f->b, f->conn, false, &st, err, sizeof err), 0,
                 "[%s] migration status: %s", f->name, err);
    return st;
}

/* Every table and index of the test's schema, with its definition. */
static char *schema_snapshot(struct hd_store_fixture *f)
{
    if (f->kind == HD_TEST_SQLITE)
        return hd_test_store_sql_text(f, "SELECT type || ' ' || name || ' ' || coalesce(sql, '') "
                                         "FROM sqlite_master ORDER BY type, name");
    return hd_test_store_sql_text(
        f, "SELECT c.relkind::text || ' ' || c.relname FROM pg_class c JOIN pg_namespace n ON "
           "n.oid = c.relnamespace WHERE n.nspname = current_schema() ORDER BY 1");
}

static bool table_exists(struct hd_store_fixture *f, const char *table)
{
    char sql[256];
    if (f->kind == HD_TEST_SQLITE)
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", table);
    else
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                 "current_schema() AND table_name = '%s'",
                 table);
    return hd_test_store_sql_int(f, sql) == 1;
}

static void assert_from_empty_then_rerun(enum hd_test_backend kind)
{
    struct hd_store_fixture *f = hd_test_store_open_empty(kind);
    struct hd_migration ms[64];
    size_t n = hd__migrations_for(f->b->dialect, ms, 64);
    cr_assert_geq(n, 1, "[%s] no embedded migrations for dialect %s", f->name, f->b->dialect);
    cr_assert_eq(ms[0].version, 1, "[%s] first migration is %d", f->name, ms[0].version);
    cr_assert_str_eq(ms[0].name, "0001_init");

    struct hd_migration_status st = status_of(f);
    cr_assert_eq(st.applied, 0, "[%s] empty database: %d applied", f->name, st.applied);
    cr_assert_eq(st.pending, (int)n, "[%s] empty database: %d pending", f->name, st.pending);
    cr_assert_eq(st.latest, ms[n - 1].version);

    cr_assert_eq(hd_test_store_migrate(f, f->conn), (int)n, "[%s] first run", f->name);
    st = status_of(f);
    cr_assert_eq(st.applied, (int)n, "[%s] after migrate: %d applied", f->name, st.applied);
    cr_assert_eq(st.pending, 0, "[%s] after migrate: %d pending", f->name, st.pending);
    cr_assert_eq(st.unknown, 0);

    int *versions = NULL;
    size_t nv = 0;
    char err[512] = "";
    cr_assert_eq(f->b->applied_migrations(f->conn, &versions, &nv, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nv, n, "[%s] schema_migrations holds %zu versions", f->name, nv);
    cr_assert_eq(versions[0], 1, "[%s] 0001 not recorded", f->name);
    free(versions);
    for (size_t i = 0; i < HD_ARRAY_LEN(tables); i++)
        cr_assert(table_exists(f, tables[i]), "[%s] table %s missing", f->name, tables[i]);

    char *before = schema_snapshot(f);
    int64_t rows = hd_test_store_sql_int(f, "SELECT count(*) FROM schema_migrations");
    cr_assert_eq(rows, (int64_t)n);
    cr_assert_eq(hd_test_store_migrate(f, f->conn), 0, "[%s] re-run applied something", f->name);
    /* and from a second connection, as another node would */
    struct hd_store_conn *other = hd_test_store_connect(f);
    cr_assert_eq(hd_test_store_migrate(f, other), 0, "[%s] re-run (2nd conn)", f->name);
    char *after = schema_snapshot(f);
    cr_assert_str_eq(before, after, "[%s] re-run changed the schema", f->name);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM schema_migrations"), rows);
    st = status_of(f);
    cr_assert_eq(st.applied, (int)n);
    cr_assert_eq(st.pending, 0);
    free(before);
    free(after);
}

Test(store_migrations, from_empty_then_rerun_sqlite, .fini = hd_test_store_fini, .timeout = 60)
{
    assert_from_empty_then_rerun(HD_TEST_SQLITE);
}

Test(store_migrations, from_empty_then_rerun_postgres, .fini = hd_test_store_fini, .timeout = 60)
{
    assert_from_empty_then_rerun(HD_TEST_POSTGRES);
}

/* The store works on the migrated schema: a ping and one write. */
HD_STORE_TEST(store_migrations, migrated_schema_takes_writes, .timeout = 60)
{
    HD_STORE_EXPECT_FREE(f, hd_store_op_new(HD_OP_PING), HD_STORE_OK);
    struct hd_user u;
    hd_test_store_register(f, "first@example.com", NULL, &u);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM users"), 1);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM organizations"), 1);
    hd_user_clear(&u);
}
