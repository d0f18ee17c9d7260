/* Small local helpers of the test_account_* tests: JSON requests with a
 * bearer token, register and login, error checks. Kept here (static, one copy
 * per test executable) so those tests depend on nothing but harness.h,
 * http_client.h and http_assert.h.
 *
 * Also a fresh Postgres database per test (acct_pg_*).
 *
 * acct_fetch never asserts (any thread); the others assert (test thread
 * only). */
#ifndef HERALD_TEST_ACCOUNT_CLIENT_H
#define HERALD_TEST_ACCOUNT_CLIENT_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

#define ACCT_UNUSED     __attribute__((unused))
#define ACCT_PASSWORD   "correct horse battery staple"
#define ACCT_PASSWORD_2 "a different, longer passphrase"
#define ACCT_TIMEOUT_MS 20000

/* Who a register or login answered for. */
struct acct_user {
    char id[40];
    char org[40];
    char session[40];
    char email[128];
    char access[4200];
    char refresh[64];
};

/* Sends @method @path with an optional bearer @token and JSON @body on a new
 * connection; reads the response into @r. Returns 0 or -errno. Any thread. */
ACCT_UNUSED static int acct_fetch(int port, const char *method, const char *path, const char *token,
                                  const char *body, struct hd_http_response *r)
{
    size_t blen = body ? strlen(body) : 0;
    size_t cap = 1024 + blen + (token ? strlen(token) : 0);
    char *raw = malloc(cap);
    if (!raw)
        return -ENOMEM;
    int n = snprintf(raw, cap, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n", method, path);
    if (token)
        n += snprintf(raw + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", token);
    if (body)
        n += snprintf(raw + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    snprintf(raw + n, cap - (size_t)n, "\r\n%s", body ? body : "");
    int rc = hd_http_exchange(port, raw, r, ACCT_TIMEOUT_MS);
    free(raw);
    return rc;
}

/* acct_fetch that asserts a response came. Test thread. */
ACCT_UNUSED static struct hd_http_response acct_send(int port, const char *method, const char *path,
                                                     const char *token, const char *body)
{
    struct hd_http_response r;
    int rc = acct_fetch(port, method, path, token, body, &r);
    cr_assert_eq(rc, 0, "no response to %s %s: %d", method, path, rc);
    return r;
}

/* The status of a request; the response is dropped. Test thread. */
ACCT_UNUSED static int acct_status(int port, const char *method, const char *path,
                                   const char *token, const char *body)
{
    struct hd_http_response r = acct_send(port, method, path, token, body);
    int status = r.status;
    hd_http_response_free(&r);
    return status;
}

/* Asserts @r is the error @status/@code and, when @field is not NULL, that
 * error.field is @field. Frees @r. */
ACCT_UNUSED static void acct_expect_error(struct hd_http_response *r, int status, const char *code,
                                          const char *field)
{
    hd_assert_error(r, status, code);
    if (field) {
        json_t *j = hd_http_response_json(r);
        const char *f = json_string_value(json_object_get(json_object_get(j, "error"), "field"));
        cr_assert(f && strcmp(f, field) == 0, "error.field is not %s: %s", field, r->body);
        json_decref(j);
    }
    hd_http_response_free(r);
}

/* Asserts @method @path answers the error @status/@code (field @field). */
ACCT_UNUSED static void acct_expect(int port, const char *method, const char *path,
                                    const char *token, const char *body, int status,
                                    const char *code, const char *field)
{
    struct hd_http_response r = acct_send(port, method, path, token, body);
    acct_expect_error(&r, status, code, field);
}

ACCT_UNUSED static void acct_copy(char *dst, size_t cap, json_t *obj, const char *key,
                                  const char *what)
{
    const char *v = json_string_value(json_object_get(obj, key));
    cr_assert(v && strlen(v) < cap, "%s: no %s", what, key);
    snprintf(dst, cap, "%s", v);
}

/* Fills @u from a register/login answer (asserted @status). Frees @r. */
ACCT_UNUSED static void acct_tokens(struct hd_http_response *r, int status, struct acct_user *u)
{
    hd_assert_json_response(r, status);
    json_t *j = hd_http_response_json(r);
    json_t *user = json_object_get(j, "user");
    acct_copy(u->access, sizeof(u->access), j, "access_token", r->body);
    acct_copy(u->refresh, sizeof(u->refresh), j, "refresh_token", r->body);
    acct_copy(u->session, sizeof(u->session), j, "session_id", r->body);
    acct_copy(u->id, sizeof(u->id), user, "id", r->body);
    acct_copy(u->org, sizeof(u->org), user, "organization_id", r->body);
    acct_copy(u->email, sizeof(u->email), user, "email", r->body);
    json_decref(j);
    hd_http_response_free(r);
}

/* A unique email for @tag in this process. */
ACCT_UNUSED static void acct_email(char *out, size_t cap, const char *tag)
{
    static int counter;
    snprintf(out, cap, "%s-%d-%d-%lu@example.test", tag, (int)getpid(), ++counter,
             (unsigned long)hd_test_now_ms());
}

/* Registers a new user (and organization: the user is its admin). */
ACCT_UNUSED static void acct_register(int port, const char *tag, struct acct_user *u)
{
    char email[128], body[512];
    acct_email(email, sizeof(email), tag);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"organization\":\"%s\"}",
             email, ACCT_PASSWORD, tag);
    struct hd_http_response r = acct_send(port, "POST", "/api/auth/register", NULL, body);
    acct_tokens(&r, 201, u);
}

/* Logs in; returns the status, filling @u on 200 (the response is freed). */
ACCT_UNUSED static int acct_login(int port, const char *email, const char *password,
                                  struct acct_user *u)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    struct hd_http_response r = acct_send(port, "POST", "/api/auth/login", NULL, body);
    int status = r.status;
    if (status == 200 && u) {
        acct_tokens(&r, 200, u);
        return status;
    }
    hd_http_response_free(&r);
    return status;
}

/* The response body as JSON (asserted @status); the caller decrefs. Frees @r. */
ACCT_UNUSED static json_t *acct_json(struct hd_http_response *r, int status)
{
    hd_assert_json_response(r, status);
    json_t *j = hd_http_response_json(r);
    hd_http_response_free(r);
    return j;
}

/* String member @key of @obj, or "" (never NULL, for printing). */
ACCT_UNUSED static const char *acct_str(json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : "";
}

/* ---- Postgres: a fresh database per test on $HERALD_TEST_DATABASE_URL's
 * server (scripts/test starts one). Without it the test FAILS: a backend
 * test that did not run must never count as passed. */

ACCT_UNUSED static const char *acct_pg_url(void)
{
    const char *url = getenv("HERALD_TEST_DATABASE_URL");
    cr_assert(url && *url, "HERALD_TEST_DATABASE_URL is not set: run the suite with scripts/test "
                           "(it starts Postgres with scripts/services)");
    return url;
}

ACCT_UNUSED static void acct_pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(acct_pg_url());
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The database acct_pg_create made for this test process, until dropped. */
static char acct_pg_name[64];

/* Creates a new database (dropped by acct_pg_fini); its URL into @url. */
ACCT_UNUSED static void acct_pg_create(char *url, size_t ucap)
{
    const char *base = acct_pg_url();
    cr_assert(!acct_pg_name[0], "one database per test");
    snprintf(acct_pg_name, sizeof(acct_pg_name), "herald_acct_%d_%lu", (int)getpid(),
             (unsigned long)hd_test_now_ms());
    char sql[160];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", acct_pg_name);
    acct_pg_exec(sql);
    const char *slash = strrchr(base, '/');
    cr_assert(slash, "unexpected URL shape");
    const char *query = strchr(slash, '?');
    snprintf(url, ucap, "%.*s/%s%s", (int)(slash - base), base, acct_pg_name, query ? query : "");
}

/* Drops the test's database, if any: the Criterion .fini of tests that
 * call acct_pg_create, so a failed assert leaves nothing behind. */
ACCT_UNUSED static void acct_pg_fini(void)
{
    if (!acct_pg_name[0])
        return;
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", acct_pg_name);
    acct_pg_name[0] = '\0';
    acct_pg_exec(sql);
}

#endif
