/* A Postgres outage under a running herald, seen through the auth routes
 * (issue 4: "never a 500 on signup when the database is down"): register,
 * login and refresh answer 503 store_unavailable with Retry-After; once
 * Postgres is back they all work again by themselves, without a restart,
 * the refresh token that met the outage included.
 *
 * Alone in its file: it stops the shared Postgres (scripts/services
 * pg-stop), so no other test of this executable may run beside it, and its
 * test_store_ name gives it ctest's RESOURCE_LOCK postgres against the
 * other executables. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

static void start(struct hd_test_server *s, enum hd_test_backend backend, const char *extra)
{
    char *over = hd_test_auth_backend_overrides(backend, extra);
    hd_test_server_start(s, over);
    free(over);
}

static void finish(struct hd_test_server *s)
{
    hd_assert_healthy(s->port);
    cr_assert_eq(hd_test_server_stop(s), 0, "herald did not exit 0");
}

static bool g_pg_stopped;

static void services(const char *what)
{
    const char *script = getenv("HERALD_SERVICES");
    cr_assert(script && *script, "HERALD_SERVICES is not set: run via scripts/test");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "\"%s\" %s >/dev/null 2>&1", script, what);
    cr_assert_eq(system(cmd), 0, "scripts/services %s failed", what);
}

/* Postgres is started again even when an assert ended the test early. */
static void outage_fini(void)
{
    if (g_pg_stopped) {
        const char *script = getenv("HERALD_SERVICES");
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "\"%s\" pg-start >/dev/null 2>&1", script);
        if (system(cmd) != 0)
            fprintf(stderr, "could not restart Postgres\n");
        g_pg_stopped = false;
    }
    hd_test_auth_backend_fini();
}

/* @r is a well-formed 503 store_unavailable with Retry-After. */
static void expect_503(struct hd_http_response *r, const char *what)
{
    cr_assert_eq(r->status, 503, "%s during the outage: %d, want 503: %s", what, r->status,
                 r->body);
    hd_assert_error(r, 503, "store_unavailable");
    cr_assert_not_null(hd_http_header(r, "Retry-After"), "%s: no Retry-After", what);
    hd_http_response_free(r);
}

static char *credentials(const char *email)
{
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", HD_TEST_AUTH_PASSWORD);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cr_assert(text);
    return text;
}

Test(store_auth_outage, postgres_outage_answers_503_and_recovers, .fini = outage_fini,
     .timeout = 120)
{
    struct hd_test_server s;
    start(&s, HD_TEST_POSTGRES, "{\"store\":{\"query_timeout_ms\":2000}}");
    char email[128], fresh[128];
    hd_test_auth_unique_email(email, sizeof(email), "outage");
    hd_test_auth_unique_email(fresh, sizeof(fresh), "outage-new");
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &t);
    char *login_body = credentials(email), *register_body = credentials(fresh);

    services("pg-stop fast");
    g_pg_stopped = true;
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_post(s.port, "/api/auth/register", register_body, NULL, &r), 0);
    expect_503(&r, "register");
    cr_assert_eq(hd_test_auth_post(s.port, "/api/auth/login", login_body, NULL, &r), 0);
    expect_503(&r, "login");
    cr_assert_eq(hd_test_auth_refresh_raw(s.port, t.refresh, &r), 0);
    expect_503(&r, "refresh");
    /* me may answer from memory or need the store: never a 500 */
    cr_assert_eq(hd_test_auth_call(s.port, "GET", "/api/me", t.access, &r), 0);
    cr_assert(r.status == 200 || r.status == 503, "GET /api/me during the outage: %d %s", r.status,
              r.body);
    if (r.status == 503)
        hd_assert_error(&r, 503, "store_unavailable");
    hd_http_response_free(&r);
    hd_assert_healthy(s.port);

    services("pg-start");
    g_pg_stopped = false;
    uint64_t back = hd_test_now_ms();
    int status = 0;
    while (hd_test_now_ms() - back < 20000) {
        cr_assert_eq(hd_test_auth_post(s.port, "/api/auth/register", register_body, NULL, &r), 0);
        status = r.status;
        hd_http_response_free(&r);
        if (status == 201)
            break;
        hd_test_sleep_ms(250);
    }
    cr_assert_eq(status, 201, "register did not recover within 20 s of Postgres coming back");
    struct hd_test_auth_tokens again;
    hd_test_auth_login(s.port, email, HD_TEST_AUTH_PASSWORD, &again);
    /* the refresh token that met the outage was not spent: it works now */
    uint64_t ok_at = hd_test_now_ms();
    status = 0;
    char last[512] = "";
    while (hd_test_now_ms() - ok_at < 10000) {
        cr_assert_eq(hd_test_auth_refresh_raw(s.port, t.refresh, &r), 0);
        status = r.status;
        snprintf(last, sizeof(last), "%s", r.body);
        hd_http_response_free(&r);
        if (status == 200)
            break;
        hd_test_sleep_ms(250);
    }
    cr_assert_eq(status, 200,
                 "the refresh token that met the outage still fails 10 s after the store "
                 "recovered (register and login work): %d %s",
                 status, last);
    free(login_body);
    free(register_body);
    finish(&s);
}
