/* The store seen from outside: a request that needs it (GET /api/_store/ping,
 * a round trip to a DB worker), /readyz and /metrics, `herald migrate`, the
 * schema check at start, and a Postgres outage with recovery, no restart. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

/* GET @path on a fresh connection; the response is the caller's to free. */
static struct hd_http_response get(int port, const char *path)
{
    struct hd_http_response r;
    int rc = hd_http_get(port, path, &r, 10000);
    cr_assert_eq(rc, 0, "GET %s failed: %d", path, rc);
    return r;
}

static int status_of(int port, const char *path)
{
    struct hd_http_response r = get(port, path);
    int status = r.status;
    hd_http_response_free(&r);
    return status;
}

Test(store_http, ping_goes_through_a_db_worker_on_sqlite, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r = get(s.port, "/api/_store/ping");
    hd_assert_json_response(&r, 200);
    json_t *body = hd_http_response_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(body, "store")), "ok");
    json_decref(body);
    hd_http_response_free(&r);

    r = get(s.port, "/readyz");
    hd_assert_json_response(&r, 200);
    body = hd_http_response_json(&r);
    json_t *store = json_object_get(json_object_get(body, "checks"), "store");
    cr_assert(json_is_true(json_object_get(store, "ok")), "readyz: %s", r.body);
    cr_expect(strstr(json_string_value(json_object_get(store, "detail")), "sqlite") != NULL);
    json_decref(body);
    hd_http_response_free(&r);

    r = get(s.port, "/metrics");
    cr_assert_eq(r.status, 200);
    cr_expect(strstr(r.body, "herald_store_queries_total{op=\"ping\",status=\"ok\"}") != NULL, "%s",
              r.body);
    cr_expect(strstr(r.body, "herald_store_pool_size{backend=\"sqlite\"} 2") != NULL);
    cr_expect(strstr(r.body, "herald_store_query_duration_seconds_bucket{op=\"ping\"") != NULL);
    cr_expect(strstr(r.body, "herald_inbox_depth{inbox=\"store-0\"}") != NULL);
    hd_http_response_free(&r);

    struct stat st;
    char db[600];
    snprintf(db, sizeof(db), "%s/var/herald.db", s.dir);
    cr_assert_eq(stat(db, &st), 0, "the embedded store lives at %s", db);
    cr_expect_eq(st.st_mode & 0777, 0600, "it holds hashes: owner-only, not %o", st.st_mode & 0777);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* Writes a config into a fresh dir; returns the dir (caller removes it). */
static void write_config(char *dir, size_t cap, char *path, size_t pcap, const char *overrides)
{
    hd_test_make_dir(dir, cap);
    snprintf(path, pcap, "%s/herald.json", dir);
    json_t *cfg = hd_test_config(overrides);
    hd_test_write_json(path, cfg);
    json_decref(cfg);
}

Test(store_http, serve_refuses_an_outdated_schema_without_auto_migrate, .timeout = 30)
{
    char dir[256], path[300];
    write_config(dir, sizeof(dir), path, sizeof(path), "{\"store\":{\"auto_migrate\":false}}");
    const char *args[] = {"serve", "--config", path, "--listen", "127.0.0.1:0", NULL};
    char *out = NULL;
    int rc = hd_test_run_herald(args, dir, 15000, &out);
    cr_expect_eq(rc, 2, "serve exit %d: %s", rc, out);
    cr_expect(strstr(out, "herald migrate") != NULL, "no hint to migrate: %s", out);
    cr_expect(strstr(out, "\"listening\"") == NULL, "it listened: %s", out);
    free(out);
    hd_test_remove_dir(dir);
}

Test(store_http, migrate_status_apply_and_rerun, .timeout = 60)
{
    char dir[256], path[300];
    write_config(dir, sizeof(dir), path, sizeof(path), "{\"store\":{\"auto_migrate\":false}}");
    char *out = NULL;
    const char *status[] = {"migrate", "--config", path, "--status", NULL};
    cr_assert_eq(hd_test_run_herald(status, dir, 15000, &out), 0, "%s", out);
    cr_expect(strstr(out, "pending  0001_init") != NULL, "status before: %s", out);
    free(out);

    const char *apply[] = {"migrate", "--config", path, NULL};
    cr_assert_eq(hd_test_run_herald(apply, dir, 15000, &out), 0, "%s", out);
    cr_expect(strstr(out, "\"applied\":\"2\"") != NULL, "first run applies both: %s", out);
    free(out);
    cr_assert_eq(hd_test_run_herald(apply, dir, 15000, &out), 0, "%s", out);
    cr_expect(strstr(out, "\"applied\":\"0\"") != NULL, "re-run must be a no-op: %s", out);
    free(out);

    cr_assert_eq(hd_test_run_herald(status, dir, 15000, &out), 0, "%s", out);
    cr_expect(strstr(out, "applied  0001_init") != NULL, "status after: %s", out);
    cr_expect(strstr(out, "applied  0002_notification_reads_index") != NULL, "%s", out);
    cr_expect(strstr(out, "pending") == NULL, "still pending: %s", out);
    free(out);
    hd_test_remove_dir(dir);
}

/* ---- Postgres ------------------------------------------------------------ */

static const char *pg_url(void)
{
    const char *url = getenv("HERALD_TEST_DATABASE_URL");
    cr_assert(url && *url, "HERALD_TEST_DATABASE_URL is not set: run the suite with scripts/test "
                           "(it starts Postgres with scripts/services)");
    return url;
}

/* Runs one statement on the test database's maintenance connection. */
static void pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(pg_url());
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The URL of a fresh database @name on the test server. */
static void database_url(char *out, size_t cap, const char *name)
{
    const char *base = pg_url();
    const char *slash = strrchr(base, '/');
    cr_assert(slash, "unexpected URL shape");
    const char *query = strchr(slash, '?');
    snprintf(out, cap, "%.*s/%s%s", (int)(slash - base), base, name, query ? query : "");
}

static void services(const char *what)
{
    const char *script = getenv("HERALD_SERVICES");
    cr_assert(script && *script, "HERALD_SERVICES is not set: run via scripts/test");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "\"%s\" %s >/dev/null 2>&1", script, what);
    cr_assert_eq(system(cmd), 0, "scripts/services %s failed", what);
}

static bool wait_status(int port, const char *path, int want, int timeout_ms)
{
    uint64_t deadline = hd_test_now_ms() + (uint64_t)timeout_ms;
    while (hd_test_now_ms() < deadline) {
        if (status_of(port, path) == want)
            return true;
        hd_test_sleep_ms(100);
    }
    return false;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Stops Postgres under a running herald: requests that need the store get
 * 503 store_unavailable with Retry-After, /readyz turns 503 naming the
 * store; Postgres back: both recover by themselves. Shutdown then closes
 * every connection cleanly (no "unexpected EOF" in the Postgres log). */
Test(store_http, postgres_outage_answers_503_and_recovers_without_restart, .timeout = 120)
{
    char name[64], url[600], overrides[900];
    snprintf(name, sizeof(name), "herald_it_%d_%ld", (int)getpid(), (long)hd_test_now_ms());
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    pg_exec(sql);
    database_url(url, sizeof(url), name);
    snprintf(overrides, sizeof(overrides),
             "{\"store\":{\"database_url\":\"%s\",\"query_timeout_ms\":2000}}", url);

    struct hd_test_server s;
    hd_test_server_start(&s, overrides);
    cr_assert_eq(status_of(s.port, "/api/_store/ping"), 200);
    cr_assert_eq(status_of(s.port, "/readyz"), 200);

    services("pg-stop fast");
    struct hd_http_response r = get(s.port, "/api/_store/ping");
    if (r.status == 200) { /* the request raced the stop: the next one cannot */
        hd_http_response_free(&r);
        r = get(s.port, "/api/_store/ping");
    }
    hd_assert_error(&r, 503, "store_unavailable");
    cr_expect_not_null(hd_http_header(&r, "Retry-After"));
    hd_http_response_free(&r);
    cr_assert(wait_status(s.port, "/readyz", 503, 5000), "readyz did not turn 503");
    r = get(s.port, "/readyz");
    json_t *body = hd_http_response_json(&r);
    json_t *down = json_object_get(body, "down");
    cr_expect(json_is_array(down) && json_array_size(down) == 1 &&
                  strcmp(json_string_value(json_array_get(down, 0)), "store") == 0,
              "readyz body: %s", r.body);
    json_decref(body);
    hd_http_response_free(&r);
    cr_expect_eq(status_of(s.port, "/healthz"), 200, "the process itself stays healthy");

    services("pg-start");
    cr_assert(wait_status(s.port, "/api/_store/ping", 200, 15000), "store did not recover");
    cr_assert(wait_status(s.port, "/readyz", 200, 5000), "readyz did not recover");

    const char *dir = getenv("HERALD_SERVICES_DIR");
    char pglog[600];
    snprintf(pglog, sizeof(pglog), "%s/pg/postgres.log", dir ? dir : "");
    long before = file_size(pglog);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    hd_test_sleep_ms(300);
    FILE *f = fopen(pglog, "r");
    if (f) {
        fseek(f, before, SEEK_SET);
        char line[1024];
        while (fgets(line, sizeof(line), f))
            cr_expect(strstr(line, "unexpected EOF") == NULL, "postgres log: %s", line);
        fclose(f);
    }
    snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", name);
    pg_exec(sql);
}
