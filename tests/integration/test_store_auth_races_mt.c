/* Concurrent auth requests on both store backends (issue 4):
 *   - ten parallel refreshes with the same token inside the grace window
 *     all succeed and converge on one successor (security test 7);
 *   - concurrent registrations with the same email (or the same email in
 *     another case, or the same username): exactly one 201, the others 409
 *     from the unique index.
 * Client threads start together on a barrier, each on its own connection
 * opened beforehand; they only record what they got (no asserts off the
 * test's thread). NAME_postgres runs on a fresh database (see
 * test_store_auth_flows.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

#define AUTH_BOTH(suite, name, ...)                                                                \
    static void name(enum hd_test_backend backend);                                                \
    Test(suite, name##_sqlite, .fini = hd_test_auth_backend_fini, __VA_ARGS__)                     \
    {                                                                                              \
        name(HD_TEST_SQLITE);                                                                      \
    }                                                                                              \
    Test(suite, name##_postgres, .fini = hd_test_auth_backend_fini, __VA_ARGS__)                   \
    {                                                                                              \
        name(HD_TEST_POSTGRES);                                                                    \
    }                                                                                              \
    static void name(enum hd_test_backend backend)

#define MAX_CLIENTS 10

/* One client's request and what came back. */
struct client {
    int port;
    pthread_barrier_t *go;
    char *request; /* the whole request, sent in one write */
    int rc;        /* 0 or -errno */
    int status;
    char code[64]; /* error.code, or "" */
    char field[64];
    struct hd_test_auth_tokens tokens; /* on 200/201 */
    struct hd_http_conn conn;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    c->rc = hd_http_conn_open(&c->conn, c->port, HD_TEST_AUTH_TIMEOUT_MS);
    pthread_barrier_wait(c->go);
    if (c->rc == 0)
        c->rc =
            hd_http_conn_send(&c->conn, c->request, strlen(c->request), HD_TEST_AUTH_TIMEOUT_MS);
    struct hd_http_response r = {0};
    if (c->rc == 0)
        c->rc = hd_http_conn_read_response(&c->conn, &r, HD_TEST_AUTH_TIMEOUT_MS);
    hd_http_conn_close(&c->conn);
    if (c->rc != 0)
        return NULL;
    c->status = r.status;
    if (r.status == 200 || r.status == 201) {
        if (hd_test_auth_tokens_parse(&r, &c->tokens) != 0)
            c->rc = -EPROTO;
    } else {
        json_t *j = hd_http_response_json(&r);
        json_t *err = json_object_get(j, "error");
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *field = json_string_value(json_object_get(err, "field"));
        snprintf(c->code, sizeof(c->code), "%s", code ? code : "");
        snprintf(c->field, sizeof(c->field), "%s", field ? field : "");
        json_decref(j);
    }
    hd_http_response_free(&r);
    return NULL;
}

/* Runs @n clients at once, client i sending @requests[i]; asserts each got a
 * response. */
static void run_clients(int port, struct client *c, char **requests, int n)
{
    pthread_barrier_t go;
    pthread_t th[MAX_CLIENTS];
    cr_assert(n <= MAX_CLIENTS);
    cr_assert_eq(pthread_barrier_init(&go, NULL, (unsigned)n), 0);
    for (int i = 0; i < n; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].port = port;
        c[i].go = &go;
        c[i].request = requests[i];
        cr_assert_eq(pthread_create(&th[i], NULL, client_main, &c[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < n; i++)
        cr_assert_eq(c[i].rc, 0, "client %d: no response (%d: %s)", i, c[i].rc, strerror(-c[i].rc));
}

/* A complete POST @target request with the JSON @body (malloc'd). */
static char *post_request(const char *target, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    char *req = NULL;
    cr_assert(text && asprintf(&req,
                               "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                               "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                               target, strlen(text), text) > 0);
    free(text);
    return req;
}

static void start(struct hd_test_server *s, enum hd_test_backend backend)
{
    char *over = hd_test_auth_backend_overrides(backend, NULL);
    hd_test_server_start(s, over);
    free(over);
}

static void finish(struct hd_test_server *s)
{
    hd_assert_healthy(s->port);
    cr_assert_eq(hd_test_server_stop(s), 0, "herald did not exit 0");
}

/* Ten clients refresh @token at once: all 200, one successor. Fills @next. */
static void parallel_refresh(int port, const char *token, struct hd_test_auth_tokens *next,
                             int round)
{
    json_t *body = json_pack("{s:s}", "refresh_token", token);
    char *req = post_request("/api/auth/refresh", body);
    json_decref(body);
    char *requests[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++)
        requests[i] = req;
    struct client c[MAX_CLIENTS];
    run_clients(port, c, requests, MAX_CLIENTS);
    free(req);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        cr_assert_eq(c[i].status, 200, "round %d, client %d: %d %s", round, i, c[i].status,
                     c[i].code);
        cr_assert_str_eq(c[i].tokens.refresh, c[0].tokens.refresh,
                         "round %d: client %d got another successor", round, i);
        cr_assert_str_eq(c[i].tokens.session_id, c[0].tokens.session_id);
    }
    cr_assert_str_neq(c[0].tokens.refresh, token, "round %d: the token did not rotate", round);
    for (int i = 0; i < MAX_CLIENTS; i++) /* every answer's access token works */
        hd_test_auth_assert_me(port, c[i].tokens.access, c[i].tokens.user_id);
    *next = c[0].tokens;
}

AUTH_BOTH(store_auth_races, ten_parallel_refreshes_converge_on_one_successor, .timeout = 120)
{
    struct hd_test_server s;
    start(&s, backend);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "parallel");
    struct hd_test_auth_tokens t, next;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &t);
    for (int round = 0; round < 3; round++) {
        parallel_refresh(s.port, t.refresh, &next, round);
        cr_assert_str_eq(next.session_id, t.session_id);
        t = next;
    }
    /* the successor is live: one more ordinary rotation works */
    struct hd_test_auth_tokens last;
    hd_test_auth_refresh(s.port, t.refresh, &last);
    cr_assert_str_neq(last.refresh, t.refresh);
    hd_test_auth_assert_me(s.port, last.access, t.user_id);
    finish(&s);
}

/* @n clients register at once with the emails and usernames given; asserts
 * exactly one 201 and n - 1 409 @code naming @field. Returns the winner. */
static int race_register(int port, const char *const *emails, const char *const *usernames, int n,
                         const char *code, const char *field, const char *what)
{
    char *requests[MAX_CLIENTS];
    for (int i = 0; i < n; i++) {
        json_t *body =
            json_pack("{s:s, s:s}", "email", emails[i], "password", HD_TEST_AUTH_PASSWORD);
        if (usernames)
            json_object_set_new(body, "username", json_string(usernames[i]));
        requests[i] = post_request("/api/auth/register", body);
        json_decref(body);
    }
    struct client c[MAX_CLIENTS];
    run_clients(port, c, requests, n);
    int winner = -1, created = 0;
    for (int i = 0; i < n; i++) {
        free(requests[i]);
        if (c[i].status == 201) {
            created++;
            winner = i;
            continue;
        }
        cr_assert_eq(c[i].status, 409, "%s: client %d got %d %s (want 201 or 409)", what, i,
                     c[i].status, c[i].code);
        cr_assert_str_eq(c[i].code, code, "%s: client %d", what, i);
        cr_assert_str_eq(c[i].field, field, "%s: client %d", what, i);
    }
    cr_assert_eq(created, 1, "%s: %d registrations succeeded, want exactly 1", what, created);
    hd_test_auth_assert_me(port, c[winner].tokens.access, c[winner].tokens.user_id);
    return winner;
}

AUTH_BOTH(store_auth_races, concurrent_registrations_with_one_email_or_username, .timeout = 120)
{
    struct hd_test_server s;
    start(&s, backend);
    for (int round = 0; round < 3; round++) {
        char email[128], upper[128];
        hd_test_auth_unique_email(email, sizeof(email), "race");
        const char *same[] = {email, email};
        race_register(s.port, same, NULL, 2, "email_taken", "email", "the same email twice");

        hd_test_auth_unique_email(email, sizeof(email), "racecase");
        snprintf(upper, sizeof(upper), "%s", email);
        for (char *p = upper; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        const char *cased[] = {email, upper};
        int w = race_register(s.port, cased, NULL, 2, "email_taken", "email",
                              "the same email in two cases");
        /* the loser's spelling logs in to the winner's account */
        struct hd_test_auth_tokens t;
        hd_test_auth_login(s.port, cased[1 - w], HD_TEST_AUTH_PASSWORD, &t);

        char e1[128], e2[128], name[40];
        hd_test_auth_unique_email(e1, sizeof(e1), "raceuser1");
        hd_test_auth_unique_email(e2, sizeof(e2), "raceuser2");
        snprintf(name, sizeof(name), "racer_%d_%08x", round, (unsigned)hd_test_now_ms());
        const char *emails[] = {e1, e2};
        const char *names[] = {name, name};
        w = race_register(s.port, emails, names, 2, "username_taken", "username",
                          "the same username twice");
        /* the loser's email was not taken by the failed attempt */
        struct hd_test_auth_tokens loser;
        hd_test_auth_register(s.port, emails[1 - w], HD_TEST_AUTH_PASSWORD, NULL, &loser);
    }
    /* four at once */
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "race4");
    const char *four[] = {email, email, email, email};
    race_register(s.port, four, NULL, 4, "email_taken", "email", "the same email four times");
    finish(&s);
}
