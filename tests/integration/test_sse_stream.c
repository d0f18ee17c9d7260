/* The SSE notification stream, GET /api/notifications/stream (DESIGN.md
 * section 3, issue 6): the handshake (headers, "retry:" first, Bearer or
 * ?token=, 401s, a malformed Last-Event-ID), who receives what (every device
 * of a user, every member of an organization, nobody else), the event's
 * lines and JSON, streams that end with their session (logout of one, of
 * the others, of all, a revoked device, a disabled user, a password change,
 * idle expiry) while the others stay open, resume with Last-Event-ID (exact
 * replay, then live without gap or duplicate; past sse.replay_max or older
 * than the oldest kept notification: one reset), keep-alive pings,
 * sse.max_streams_per_user, the stream_connect_user rate limit, the SSE
 * metrics, and no token in the log.
 *
 * "Nobody else got it" is checked by order, not by waiting: events are
 * fanned out in id order, so when a stream's next notification is a marker
 * published after event E, the stream did not get E. The heavier cases
 * (1,000 streams, clients that never read) are in test_sse_load.c. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <sqlite3.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"
#include "ratelimit_client.h"
#include "sse_client.h"

#define WAIT_MS      5000 /* for an event that must come */
#define END_BOUND_MS 1000 /* a pushed session end closes the stream within this (DESIGN.md) */

/* ---- users ---------------------------------------------------------------------------- */

static void expect_clean_exit(struct hd_test_server *s)
{
    hd_assert_healthy(s->port);
    cr_assert_eq(hd_test_server_stop(s), 0, "herald did not exit 0");
}

/* Another session (device) of @u. */
static void expect_device(int port, const struct hd_test_auth_tokens *u,
                          struct hd_test_auth_tokens *t)
{
    hd_test_auth_login(port, u->email, HD_TEST_AUTH_PASSWORD, t);
    cr_assert_str_eq(t->user_id, u->user_id);
    cr_assert_str_neq(t->session_id, u->session_id, "a login reused a session");
}

/* @method @target as @access; asserts @status. */
static void expect_status(int port, const char *method, const char *target, const char *access,
                          const char *json, int status)
{
    struct hd_http_response r;
    int rc = json ? hd_test_auth_post(port, target, json, access, &r)
                  : hd_test_auth_call(port, method, target, access, &r);
    cr_assert_eq(rc, 0, "%s %s: no response (%d)", method, target, rc);
    cr_assert_eq(r.status, status, "%s %s: %d, want %d: %s", method, target, r.status, status,
                 r.body);
    hd_http_response_free(&r);
}

/* ---- publishing ----------------------------------------------------------------------- */

/* The publish body: to @user_id, or to @org_id when @user_id is NULL. Malloc'd. */
static char *publish_body(const char *user_id, const char *org_id, const char *title, json_t *data)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "type", "test.sse", "title", title, "body",
                          "a notification from test_sse_stream");
    json_object_set_new(j, user_id ? "user_id" : "organization_id",
                        json_string(user_id ? user_id : org_id));
    if (data)
        json_object_set(j, "data", data);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}

/* POST /api/notifications as @admin: 201 and the notification, else NULL
 * (*status says what came: the HTTP status or -errno). Any thread. */
static json_t *try_publish(int port, const char *admin_access, const char *user_id,
                           const char *org_id, const char *title, int *status)
{
    char *body = publish_body(user_id, org_id, title, NULL);
    struct hd_http_response r;
    int rc = hd_test_auth_post(port, "/api/notifications", body, admin_access, &r);
    free(body);
    *status = rc ? rc : r.status;
    json_t *n = rc == 0 && r.status == 201 ? hd_http_response_json(&r) : NULL;
    if (rc == 0)
        hd_http_response_free(&r);
    return n;
}

/* Publishes as @admin to @user_id, or to the admin's whole organization when
 * @user_id is NULL, with @data (borrowed, may be NULL). Asserts 201 and an
 * id; returns the answer (new reference). */
static json_t *expect_published_data(int port, const struct hd_test_auth_tokens *admin,
                                     const char *user_id, const char *title, json_t *data)
{
    char *body = publish_body(user_id, admin->org_id, title, data);
    struct hd_http_response r;
    int rc = hd_test_auth_post(port, "/api/notifications", body, admin->access, &r);
    free(body);
    cr_assert_eq(rc, 0, "POST /api/notifications: no response (%d)", rc);
    cr_assert_eq(r.status, 201, "POST /api/notifications '%s': %d %s", title, r.status, r.body);
    json_t *n = hd_http_response_json(&r);
    cr_assert(json_integer_value(json_object_get(n, "id")) > 0, "no id in %s", r.body);
    hd_http_response_free(&r);
    return n;
}

static json_t *expect_published(int port, const struct hd_test_auth_tokens *admin,
                                const char *user_id, const char *title)
{
    return expect_published_data(port, admin, user_id, title, NULL);
}

static long long id_of(json_t *n)
{
    return (long long)json_integer_value(json_object_get(n, "id"));
}

static void id_text(json_t *n, char *out, size_t cap)
{
    snprintf(out, cap, "%lld", id_of(n));
}

/* ---- streams -------------------------------------------------------------------------- */

/* Opens a stream with @o; asserts 200 and the "retry:" block first. */
static void expect_stream(struct hd_sse_client *c, int port, const struct hd_sse_opts *o,
                          const char *who)
{
    int rc = hd_sse_open(c, port, o);
    cr_assert_eq(rc, 0, "%s: opening the stream failed (%d)", who, rc);
    cr_assert_eq(hd_sse_status(c), 200, "%s: status %d: %s", who, hd_sse_status(c), c->head.body);
    struct hd_sse_event ev;
    rc = hd_sse_next(c, &ev, WAIT_MS);
    cr_assert_eq(rc, 0, "%s: no first block (%d)", who, rc);
    cr_assert(ev.retry > 0 && ev.lines == 1, "%s: the first block is not a lone retry: line", who);
    hd_sse_event_free(&ev);
}

/* Opens a stream authenticated by @access (Authorization: Bearer). */
static void expect_stream_bearer(struct hd_sse_client *c, int port, const char *access,
                                 const char *who)
{
    struct hd_sse_opts o = {.bearer = access};
    expect_stream(c, port, &o, who);
}

/* The next notification on @c is @want (a publish answer): id line, event
 * line and a one-line JSON data equal to the answer. */
static void expect_event(struct hd_sse_client *c, json_t *want, const char *who)
{
    struct hd_sse_event ev;
    int rc = hd_sse_next_event(c, &ev, NULL, WAIT_MS);
    cr_assert_eq(rc, 0, "%s: no event (%d), want id %lld", who, rc, id_of(want));
    cr_assert(hd_sse_is_notification(&ev), "%s: got event '%s' data '%s', want notification %lld",
              who, ev.event ? ev.event : "(none)", ev.data ? ev.data : "", id_of(want));
    cr_assert_eq(hd_sse_event_id(&ev), id_of(want), "%s: got id %s, want %lld", who, ev.id,
                 id_of(want));
    cr_assert_eq(ev.data_lines, 1, "%s: data spans %zu lines", who, ev.data_lines);
    json_t *got = json_loads(ev.data, 0, NULL);
    cr_assert(got, "%s: data is not JSON: %s", who, ev.data);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert(json_equal(got, want), "%s: data %s, want %s", who, ev.data, w);
    free(w);
    json_decref(got);
    hd_sse_event_free(&ev);
}

/* The next block that is not a ping on @c is "event: reset". */
static void expect_reset(struct hd_sse_client *c, const char *who)
{
    struct hd_sse_event ev;
    int rc = hd_sse_next_event(c, &ev, NULL, WAIT_MS);
    cr_assert_eq(rc, 0, "%s: no event (%d), want reset", who, rc);
    cr_assert(ev.event && strcmp(ev.event, "reset") == 0, "%s: got event '%s' id %s, want reset",
              who, ev.event ? ev.event : "(none)", ev.id ? ev.id : "-");
    cr_assert_null(ev.id, "%s: a reset carries an id", who);
    hd_sse_event_free(&ev);
}

/* The stream gets "event: session_ended" and then closes, within
 * @bound_ms of @since_ms (hd_sse_now_ms). Returns when it closed, in ms
 * after @since_ms. */
static uint64_t expect_session_ended(struct hd_sse_client *c, uint64_t since_ms, int bound_ms,
                                     const char *who)
{
    struct hd_sse_event ev;
    int rc = hd_sse_next_event(c, &ev, NULL, bound_ms + 2000);
    cr_assert_eq(rc, 0, "%s: no session_ended (%d)", who, rc);
    cr_assert(ev.event && strcmp(ev.event, "session_ended") == 0,
              "%s: got event '%s' (id %s), want session_ended", who, ev.event ? ev.event : "(none)",
              ev.id ? ev.id : "-");
    cr_assert_null(ev.id, "%s: session_ended carries an id", who);
    hd_sse_event_free(&ev);
    size_t after = 0;
    rc = hd_sse_wait_closed(c, &after, bound_ms + 2000);
    cr_assert_eq(rc, 0, "%s: the stream stayed open after session_ended", who);
    cr_assert_eq(after, 0, "%s: %zu blocks after session_ended", who, after);
    uint64_t took = c->eof_ms - since_ms;
    cr_assert_leq(took, (uint64_t)bound_ms, "%s: closed %llu ms after the end, bound %d ms", who,
                  (unsigned long long)took, bound_ms);
    return took;
}

/* An open stream answers a refused request: asserts @status and @code. */
static void expect_refused(int port, const struct hd_sse_opts *o, int status, const char *code,
                           const char *who)
{
    struct hd_sse_client c;
    int rc = hd_sse_open(&c, port, o);
    cr_assert_eq(rc, 0, "%s: no answer (%d)", who, rc);
    cr_assert_eq(hd_sse_status(&c), status, "%s: status %d, want %d: %s", who, hd_sse_status(&c),
                 status, c.head.body);
    hd_assert_error(&c.head, status, code);
    hd_sse_close(&c);
}

/* Polls /metrics until @series equals @want; asserts it does within 3 s. */
static void expect_metric(int port, const char *series, double want)
{
    double got = hd_test_rl_metric_wait(port, series, want, 3000);
    cr_assert_eq(got, want, "%s is %g, want %g", series, got, want);
}

/* ---- the handshake -------------------------------------------------------------------- */

Test(sse_stream, headers_and_retry_come_first, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"sse\":{\"retry_ms\":1750}}");
    struct hd_test_auth_tokens a;
    hd_test_auth_new_admin(s.port, "sse-head", &a);
    struct hd_sse_client c;
    struct hd_sse_opts o = {.bearer = a.access};
    cr_assert_eq(hd_sse_open(&c, s.port, &o), 0);
    cr_assert_eq(hd_sse_status(&c), 200, "status %d: %s", hd_sse_status(&c), c.head.body);
    const char *ct = hd_sse_header(&c, "Content-Type");
    cr_assert(ct && strncmp(ct, "text/event-stream", 17) == 0, "Content-Type %s", ct);
    cr_assert(hd_http_header_has_token(&c.head, "Cache-Control", "no-cache"), "Cache-Control: %s",
              hd_sse_header(&c, "Cache-Control"));
    const char *accel = hd_sse_header(&c, "X-Accel-Buffering");
    cr_assert(accel && strcmp(accel, "no") == 0, "X-Accel-Buffering: %s", accel);
    cr_assert_null(hd_sse_header(&c, "Content-Length"), "a stream with a Content-Length");
    cr_assert(hd_request_id_valid(hd_sse_header(&c, "X-Request-Id")), "no X-Request-Id");
    /* the very first bytes: "retry: 1750" and its blank line, nothing else */
    struct hd_sse_event ev;
    cr_assert_eq(hd_sse_next(&c, &ev, WAIT_MS), 0, "no first block");
    cr_assert_eq(ev.retry, 1750, "first block: retry %ld", ev.retry);
    cr_assert_eq(ev.lines, 1, "the first block has %zu lines", ev.lines);
    cr_assert(!ev.data && !ev.event && !ev.id, "the first block carries an event");
    hd_sse_event_free(&ev);
    /* and it is live: an event published now arrives */
    json_t *n = expect_published(s.port, &a, a.user_id, "after the head");
    expect_event(&c, n, "the stream");
    json_decref(n);
    hd_sse_close(&c);
    expect_clean_exit(&s);
}

/* The log of @s (after it stopped) holds none of @tokens, and holds the
 * access lines of the stream requests (so the check looked at something). */
static void expect_tokens_not_logged(struct hd_test_server *s, const char *const *tokens)
{
    char *log = hd_test_server_log(s);
    size_t stream_lines = 0, line_no = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        line_no++;
        for (const char *const *t = tokens; *t; t++) {
            /* any 40-byte piece of a token would do: its signature part */
            const char *sig = strrchr(*t, '.');
            cr_assert(!strstr(line, *t), "log line %zu holds a token: %s", line_no, line);
            cr_assert(!sig || strlen(sig) < 8 || !strstr(line, sig + 1),
                      "log line %zu holds a token's signature: %s", line_no, line);
        }
        stream_lines += strstr(line, HD_SSE_STREAM_PATH) != NULL;
    }
    free(log);
    cr_assert_geq(stream_lines, 4, "only %zu log lines name the stream route", stream_lines);
}

Test(sse_stream, tokens_missing_bad_and_in_the_query, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"log\":{\"level\":\"debug\"}}");
    struct hd_test_auth_tokens a, gone;
    hd_test_auth_new_admin(s.port, "sse-auth", &a);
    expect_device(s.port, &a, &gone);
    expect_status(s.port, "POST", "/api/auth/logout", gone.access, NULL, 204);

    struct hd_sse_opts o = {0};
    struct hd_sse_client c;
    cr_assert_eq(hd_sse_open(&c, s.port, &o), 0);
    hd_assert_error(&c.head, 401, "missing_token");
    cr_assert(hd_sse_header(&c, "WWW-Authenticate"), "401 without WWW-Authenticate");
    hd_sse_close(&c);
    o.bearer = "not.a.token";
    expect_refused(s.port, &o, 401, "invalid_token", "a bad Bearer token");
    o.bearer = gone.access;
    expect_refused(s.port, &o, 401, "invalid_token", "the token of a session that ended");
    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    struct hd_sse_opts ob = {.headers = basic};
    expect_refused(s.port, &ob, 401, "invalid_token", "Basic credentials");
    struct hd_sse_opts oq = {.target = HD_SSE_STREAM_PATH "?token=not.a.token"};
    expect_refused(s.port, &oq, 401, "invalid_token", "a bad ?token=");
    oq.target = HD_SSE_STREAM_PATH "?token=";
    expect_refused(s.port, &oq, 401, NULL, "an empty ?token=");

    /* ?token= works like the header, for clients that cannot set headers */
    char target[HD_TEST_AUTH_ACCESS_CAP + 64];
    snprintf(target, sizeof(target), "%s?token=%s", HD_SSE_STREAM_PATH, a.access);
    struct hd_sse_opts good = {.target = target};
    expect_stream(&c, s.port, &good, "?token=");
    json_t *n = expect_published(s.port, &a, a.user_id, "via the query token");
    expect_event(&c, n, "?token= stream");
    json_decref(n);
    hd_sse_close(&c);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    const char *tokens[] = {a.access, gone.access, a.refresh, gone.refresh, NULL};
    expect_tokens_not_logged(&s, tokens);
}

/* A Last-Event-ID that is not an event id: 400 validation_failed naming
 * last_event_id, whether it came as the header or the query parameter. */
static void expect_bad_last_event_id(int port, const char *access, const char *header,
                                     const char *query)
{
    char target[256], who[128];
    snprintf(target, sizeof(target), "%s%s%s", HD_SSE_STREAM_PATH, query ? "?last_event_id=" : "",
             query ? query : "");
    snprintf(who, sizeof(who), "Last-Event-ID '%s'", header ? header : query);
    struct hd_sse_opts o = {.target = target, .bearer = access, .last_event_id = header};
    struct hd_sse_client c;
    cr_assert_eq(hd_sse_open(&c, port, &o), 0, "%s: no answer", who);
    cr_assert_eq(hd_sse_status(&c), 400, "%s: status %d, want 400", who, hd_sse_status(&c));
    hd_assert_error(&c.head, 400, "validation_failed");
    json_t *j = hd_http_response_json(&c.head);
    const char *field = json_string_value(json_object_get(json_object_get(j, "error"), "field"));
    cr_assert(field && strcmp(field, "last_event_id") == 0, "%s: field %s", who, field);
    json_decref(j);
    hd_sse_close(&c);
}

Test(sse_stream, malformed_last_event_id_is_400, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a;
    hd_test_auth_new_admin(s.port, "sse-badid", &a);
    const char *bad[] = {
        "abc", "-1", "1.5", "12a", "+3", "0x10", "1234567890123456789", "99999999999999999999999",
        NULL};
    for (const char *const *b = bad; *b; b++)
        expect_bad_last_event_id(s.port, a.access, *b, NULL);
    expect_bad_last_event_id(s.port, a.access, NULL, "abc");
    expect_bad_last_event_id(s.port, a.access, NULL, "-5");
    expect_bad_last_event_id(s.port, a.access, NULL, "");
    expect_metric(s.port, "herald_sse_streams", 0);
    /* a well-formed one opens */
    struct hd_sse_client c;
    struct hd_sse_opts o = {.bearer = a.access, .last_event_id = "0"};
    expect_stream(&c, s.port, &o, "Last-Event-ID 0");
    hd_sse_close(&c);
    expect_clean_exit(&s);
}

/* ---- who gets what -------------------------------------------------------------------- */

Test(sse_stream, user_events_reach_every_device_of_that_user_only, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct hd_test_auth_tokens a1, a2, a3, b, c;
    hd_test_auth_new_admin(p, "sse-dev-a", &a1);
    expect_device(p, &a1, &a2);
    expect_device(p, &a1, &a3);
    hd_test_auth_new_member(p, &a1, "sse-dev-b", &b);
    hd_test_auth_new_admin(p, "sse-dev-c", &c);
    /* user A: three devices, the third with two streams (two tabs) */
    struct hd_sse_client sa[4], sb, sc;
    expect_stream_bearer(&sa[0], p, a1.access, "A device 1");
    expect_stream_bearer(&sa[1], p, a2.access, "A device 2");
    expect_stream_bearer(&sa[2], p, a3.access, "A device 3");
    expect_stream_bearer(&sa[3], p, a3.access, "A device 3, second tab");
    expect_stream_bearer(&sb, p, b.access, "B, same organization");
    expect_stream_bearer(&sc, p, c.access, "C, other organization");

    json_t *to_a = expect_published(p, &a1, a1.user_id, "for A");
    json_t *to_b = expect_published(p, &a1, b.user_id, "for B");
    json_t *mark1 = expect_published(p, &a1, NULL, "org 1 marker");
    json_t *mark2 = expect_published(p, &c, NULL, "org 2 marker");
    json_t *mark3 = expect_published(p, &a1, NULL, "org 1 marker after");
    cr_assert_str_eq(json_string_value(json_object_get(to_a, "user_id")), a1.user_id);
    for (int i = 0; i < 4; i++) {
        expect_event(&sa[i], to_a, "a stream of A");
        expect_event(&sa[i], mark1, "a stream of A, after its event");
        expect_event(&sa[i], mark3, "a stream of A, the other organization's marker skipped");
    }
    expect_event(&sb, to_b, "B: its own event only");
    expect_event(&sb, mark1, "B");
    expect_event(&sb, mark3, "B");
    expect_event(&sc, mark2, "C: nothing of organization 1");
    /* and a user-targeted event for C reaches C only */
    json_t *to_c = expect_published(p, &c, c.user_id, "for C");
    json_t *mark4 = expect_published(p, &a1, NULL, "org 1 last marker");
    expect_event(&sc, to_c, "C");
    expect_event(&sb, mark4, "B after C's event");
    expect_event(&sa[0], mark4, "A after C's event");
    json_t *all[] = {to_a, to_b, mark1, mark2, mark3, to_c, mark4};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        json_decref(all[i]);
    for (int i = 0; i < 4; i++)
        hd_sse_close(&sa[i]);
    hd_sse_close(&sb);
    hd_sse_close(&sc);
    expect_clean_exit(&s);
}

Test(sse_stream, organization_events_reach_every_member_only, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct hd_test_auth_tokens adm1, adm1b, m1, m2, adm2, n2;
    hd_test_auth_new_admin(p, "sse-org1", &adm1);
    expect_device(p, &adm1, &adm1b);
    hd_test_auth_new_member(p, &adm1, "sse-org1-m1", &m1);
    hd_test_auth_new_member(p, &adm1, "sse-org1-m2", &m2);
    hd_test_auth_new_admin(p, "sse-org2", &adm2);
    hd_test_auth_new_member(p, &adm2, "sse-org2-m", &n2);
    struct hd_sse_client org1[4], org2[2];
    const struct hd_test_auth_tokens *in1[] = {&adm1, &adm1b, &m1, &m2};
    const struct hd_test_auth_tokens *in2[] = {&adm2, &n2};
    for (int i = 0; i < 4; i++)
        expect_stream_bearer(&org1[i], p, in1[i]->access, "organization 1");
    for (int i = 0; i < 2; i++)
        expect_stream_bearer(&org2[i], p, in2[i]->access, "organization 2");

    json_t *wide1 = expect_published(p, &adm1, NULL, "to all of organization 1");
    json_t *wide2 = expect_published(p, &adm2, NULL, "to all of organization 2");
    json_t *after1 = expect_published(p, &adm1, NULL, "organization 1 again");
    cr_assert(json_is_null(json_object_get(wide1, "user_id")), "an org-wide event has a user_id");
    cr_assert_str_eq(json_string_value(json_object_get(wide1, "organization_id")), adm1.org_id);
    for (int i = 0; i < 4; i++) {
        expect_event(&org1[i], wide1, "a member of organization 1");
        expect_event(&org1[i], after1, "organization 1, the other organization's event skipped");
    }
    for (int i = 0; i < 2; i++)
        expect_event(&org2[i], wide2, "a member of organization 2");
    json_t *after2 = expect_published(p, &adm2, NULL, "organization 2 again");
    for (int i = 0; i < 2; i++)
        expect_event(&org2[i], after2, "organization 2, organization 1's second event skipped");
    json_decref(wide1);
    json_decref(wide2);
    json_decref(after1);
    json_decref(after2);
    for (int i = 0; i < 4; i++)
        hd_sse_close(&org1[i]);
    for (int i = 0; i < 2; i++)
        hd_sse_close(&org2[i]);
    expect_clean_exit(&s);
}

Test(sse_stream, event_lines_and_json_match_the_publish_answer, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a;
    hd_test_auth_new_admin(s.port, "sse-format", &a);
    struct hd_sse_client c;
    expect_stream_bearer(&c, s.port, a.access, "the stream");
    /* text that would break an SSE frame if it were not escaped */
    json_t *data =
        json_pack("{s:s, s:{s:[i,i,i]}, s:s, s:b, s:n}", "text",
                  "line one\n\ndata: forged\nid: 999999\n\nevent: reset\r\n", "nested", "list", 1,
                  2, 3, "unicode", "\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x93\xa3", "flag", 1, "nothing");
    json_t *n = expect_published_data(s.port, &a, a.user_id, "title\nwith a newline", data);
    json_decref(data);
    struct hd_sse_event ev;
    cr_assert_eq(hd_sse_next_event(&c, &ev, NULL, WAIT_MS), 0, "no event");
    cr_assert_str_eq(ev.event, "notification");
    cr_assert_eq(hd_sse_event_id(&ev), id_of(n), "id %s, want %lld", ev.id, id_of(n));
    cr_assert_eq(ev.lines, 3, "the event has %zu lines, want id, event, data", ev.lines);
    cr_assert_eq(ev.data_lines, 1);
    cr_assert_eq(ev.comments, 0);
    json_t *got = json_loads(ev.data, 0, NULL);
    cr_assert(got && json_is_object(got), "data is not a JSON object: %s", ev.data);
    cr_assert(json_equal(got, n), "data %s differs from the publish answer", ev.data);
    const char *keys[] = {"id",   "organization_id", "user_id", "type", "title", "body",
                          "data", "created_at"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cr_assert(json_object_get(got, keys[i]), "data lacks %s: %s", keys[i], ev.data);
    cr_assert_str_eq(json_string_value(json_object_get(got, "title")), "title\nwith a newline");
    json_decref(got);
    hd_sse_event_free(&ev);
    /* ids grow with each event */
    json_t *n2 = expect_published(s.port, &a, NULL, "second");
    cr_assert_gt(id_of(n2), id_of(n));
    expect_event(&c, n2, "the second event");
    json_decref(n);
    json_decref(n2);
    hd_sse_close(&c);
    expect_clean_exit(&s);
}

/* ---- streams end with their session --------------------------------------------------- */

Test(sse_stream, logout_ends_that_sessions_streams_only, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct hd_test_auth_tokens a1, a2;
    hd_test_auth_new_admin(p, "sse-logout", &a1);
    expect_device(p, &a1, &a2);
    struct hd_sse_client one, one_b, two;
    expect_stream_bearer(&one, p, a1.access, "session 1");
    expect_stream_bearer(&one_b, p, a1.access, "session 1, second stream");
    expect_stream_bearer(&two, p, a2.access, "session 2");
    expect_status(p, "POST", "/api/auth/logout?scope=local", a1.access, NULL, 204);
    uint64_t t0 = hd_sse_now_ms();
    uint64_t took = expect_session_ended(&one, t0, END_BOUND_MS, "session 1");
    expect_session_ended(&one_b, t0, END_BOUND_MS, "session 1, second stream");
    cr_log_info("logout: stream closed %llu ms after the 204", (unsigned long long)took);
    /* session 2 is untouched: its stream still gets events */
    json_t *n = expect_published(p, &a2, a2.user_id, "still here");
    expect_event(&two, n, "session 2 after session 1 logged out");
    json_decref(n);
    cr_assert(!hd_sse_closed(&two));
    expect_metric(p, "herald_sse_session_ends_total", 2);
    expect_metric(p, "herald_sse_streams", 1);
    hd_sse_close(&one);
    hd_sse_close(&one_b);
    hd_sse_close(&two);
    expect_clean_exit(&s);
}

Test(sse_stream, logout_of_the_others_then_global_end_streams, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct hd_test_auth_tokens a1, a2, a3, b;
    hd_test_auth_new_admin(p, "sse-global", &a1);
    expect_device(p, &a1, &a2);
    expect_device(p, &a1, &a3);
    hd_test_auth_new_member(p, &a1, "sse-global-b", &b);
    struct hd_sse_client s1, s2, s3, sb;
    expect_stream_bearer(&s1, p, a1.access, "session 1");
    expect_stream_bearer(&s2, p, a2.access, "session 2");
    expect_stream_bearer(&s3, p, a3.access, "session 3");
    expect_stream_bearer(&sb, p, b.access, "another user");
    /* scope=others from session 3: sessions 1 and 2 end, 3 stays */
    expect_status(p, "POST", "/api/auth/logout?scope=others", a3.access, NULL, 204);
    uint64_t t0 = hd_sse_now_ms();
    expect_session_ended(&s1, t0, END_BOUND_MS, "session 1 (others)");
    expect_session_ended(&s2, t0, END_BOUND_MS, "session 2 (others)");
    json_t *n = expect_published(p, &a3, NULL, "after others");
    expect_event(&s3, n, "session 3 after scope=others");
    expect_event(&sb, n, "the other user after scope=others");
    json_decref(n);
    /* a new device, then a global logout from it: every stream of the user ends */
    struct hd_test_auth_tokens a4;
    expect_device(p, &a1, &a4);
    struct hd_sse_client s4;
    expect_stream_bearer(&s4, p, a4.access, "session 4");
    expect_status(p, "POST", "/api/auth/logout?scope=global", a4.access, NULL, 204);
    t0 = hd_sse_now_ms();
    expect_session_ended(&s3, t0, END_BOUND_MS, "session 3 (global)");
    expect_session_ended(&s4, t0, END_BOUND_MS, "session 4 (global)");
    /* the other user's stream stays: the admin logs in again to publish */
    struct hd_test_auth_tokens a5;
    expect_device(p, &a1, &a5);
    n = expect_published(p, &a5, NULL, "after global");
    expect_event(&sb, n, "the other user after a global logout");
    json_decref(n);
    expect_metric(p, "herald_sse_session_ends_total", 4);
    expect_metric(p, "herald_sse_streams", 1);
    struct hd_sse_client *all[] = {&s1, &s2, &s3, &s4, &sb};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        hd_sse_close(all[i]);
    expect_clean_exit(&s);
}

Test(sse_stream, revoking_a_device_ends_its_stream, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct hd_test_auth_tokens a1, a2;
    hd_test_auth_new_admin(p, "sse-revoke", &a1);
    expect_device(p, &a1, &a2);
    struct hd_sse_client s1, s2;
    expect_stream_bearer(&s1, p, a1.access, "session 1");
    expect_stream_bearer(&s2, p, a2.access, "session 2");
    char target[128];
    snprintf(target, sizeof(target), "/api/auth/sessions/%s", a2.session_id);
    expect_status(p, "DELETE", target, a1.access, NULL, 204);
    expect_session_ended(&s2, hd_sse_now_ms(), END_BOUND_MS, "the revoked device");
    json_t *n = expect_published(p, &a1, a1.user_id, "after the revocation");
    expect_event(&s1, n, "the device that revoked the other");
    json_decref(n);
    hd_sse_close(&s1);
    hd_sse_close(&s2);
    expect_clean_exit(&s);
}

Test(sse_stream, disabling_a_user_ends_their_streams_only, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct hd_test_auth_tokens adm, m1, m1b, m2;
    hd_test_auth_new_admin(p, "sse-disable", &adm);
    hd_test_auth_new_member(p, &adm, "sse-disable-m1", &m1);
    expect_device(p, &m1, &m1b);
    hd_test_auth_new_member(p, &adm, "sse-disable-m2", &m2);
    struct hd_sse_client sa, s1, s1b, s2;
    expect_stream_bearer(&sa, p, adm.access, "the admin");
    expect_stream_bearer(&s1, p, m1.access, "member 1");
    expect_stream_bearer(&s1b, p, m1b.access, "member 1, second device");
    expect_stream_bearer(&s2, p, m2.access, "member 2");
    char target[128];
    snprintf(target, sizeof(target), "/api/admin/users/%s/disable", m1.user_id);
    expect_status(p, "POST", target, adm.access, NULL, 204);
    uint64_t t0 = hd_sse_now_ms();
    expect_session_ended(&s1, t0, END_BOUND_MS, "member 1");
    expect_session_ended(&s1b, t0, END_BOUND_MS, "member 1, second device");
    json_t *n = expect_published(p, &adm, NULL, "after the disable");
    expect_event(&sa, n, "the admin");
    expect_event(&s2, n, "member 2");
    json_decref(n);
    hd_sse_close(&sa);
    hd_sse_close(&s1);
    hd_sse_close(&s1b);
    hd_sse_close(&s2);
    expect_clean_exit(&s);
}

Test(sse_stream, password_change_ends_the_other_sessions_streams, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct hd_test_auth_tokens a1, a2, a3;
    hd_test_auth_new_admin(p, "sse-password", &a1);
    expect_device(p, &a1, &a2);
    expect_device(p, &a1, &a3);
    struct hd_sse_client s1, s2, s3;
    expect_stream_bearer(&s1, p, a1.access, "session 1");
    expect_stream_bearer(&s2, p, a2.access, "session 2");
    expect_stream_bearer(&s3, p, a3.access, "session 3");
    expect_status(p, "POST", "/api/me/password", a1.access,
                  "{\"current_password\":\"" HD_TEST_AUTH_PASSWORD
                  "\",\"new_password\":\"another long passphrase for sse\"}",
                  204);
    uint64_t t0 = hd_sse_now_ms();
    expect_session_ended(&s2, t0, END_BOUND_MS, "session 2");
    expect_session_ended(&s3, t0, END_BOUND_MS, "session 3");
    /* the session that changed the password keeps its stream */
    json_t *n = expect_published(p, &a1, a1.user_id, "after the password change");
    expect_event(&s1, n, "session 1");
    json_decref(n);
    hd_sse_close(&s1);
    hd_sse_close(&s2);
    hd_sse_close(&s3);
    expect_clean_exit(&s);
}

/* session.idle_timeout_s 5 (its minimum). Session 1 opens a stream and is
 * then left alone; session 2 of the same user is used about every 0.7 s.
 * Session 1's last use is at most its stream's handshake, so it expires at
 * most 5 s after that: the stream must get session_ended by then plus the
 * once-a-second check (and a little scheduling slack), and not before 5 s
 * after session 1 was created. */
#define IDLE_S        5
#define IDLE_SLACK_MS 500

Test(sse_stream, idle_expiry_ends_the_stream_within_a_second, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"session\":{\"idle_timeout_s\":5}}");
    int p = s.port;
    struct hd_test_auth_tokens a0, a1, a2;
    hd_test_auth_new_admin(p, "sse-idle", &a0);
    uint64_t t_login = hd_sse_now_ms();
    expect_device(p, &a0, &a1); /* session 1: created after t_login */
    expect_device(p, &a0, &a2);
    hd_test_sleep_ms(1100); /* so the handshake counts as a use of session 1 */
    struct hd_sse_client idle, kept;
    expect_stream_bearer(&idle, p, a1.access, "the idle session");
    uint64_t t_head = hd_sse_now_ms();
    expect_stream_bearer(&kept, p, a2.access, "the session in use");
    struct hd_sse_event ev;
    int rc;
    while ((rc = hd_sse_next_event(&idle, &ev, NULL, 700)) == -ETIMEDOUT) {
        expect_status(p, "GET", "/api/me", a2.access, NULL, 200);
        cr_assert_lt(hd_sse_now_ms() - t_head, 15000, "no session_ended after 15 s");
    }
    cr_assert_eq(rc, 0, "the idle stream: %d", rc);
    cr_assert(ev.event && strcmp(ev.event, "session_ended") == 0,
              "got event %s, want session_ended", ev.event ? ev.event : "(none)");
    uint64_t t_end = ev.at_ms;
    hd_sse_event_free(&ev);
    cr_assert_eq(hd_sse_wait_closed(&idle, NULL, 2000), 0, "the idle stream stayed open");
    long after_expiry = (long)t_end - (long)(t_head + IDLE_S * 1000);
    cr_log_info("idle: session_ended %ld ms after the latest possible expiry, closed %llu ms later",
                after_expiry, (unsigned long long)(idle.eof_ms - t_end));
    cr_assert_geq(t_end, t_login + IDLE_S * 1000 - 50,
                  "session_ended %llu ms after login, before "
                  "the session could have expired",
                  (unsigned long long)(t_end - t_login));
    cr_assert_leq(after_expiry, 1000 + IDLE_SLACK_MS,
                  "session_ended %ld ms after the expiry: bound 1 s (+%d ms)", after_expiry,
                  IDLE_SLACK_MS);
    cr_assert_leq(idle.eof_ms - t_end, IDLE_SLACK_MS, "closed %llu ms after session_ended",
                  (unsigned long long)(idle.eof_ms - t_end));
    /* the session in use kept its stream */
    json_t *n = expect_published(p, &a2, a2.user_id, "after the idle expiry");
    expect_event(&kept, n, "the session in use");
    json_decref(n);
    expect_status(p, "GET", "/api/me", a1.access, NULL, 401);
    hd_sse_close(&idle);
    hd_sse_close(&kept);
    expect_clean_exit(&s);
}

/* ---- resume --------------------------------------------------------------------------- */

/* The world of a resume test: organization 1 (admin P, members A and B)
 * and organization 2 (admin Q). */
struct world {
    struct hd_test_auth_tokens p, a, b, q;
};

static void expect_world(int port, struct world *w)
{
    hd_test_auth_new_admin(port, "sse-resume-p", &w->p);
    hd_test_auth_new_member(port, &w->p, "sse-resume-a", &w->a);
    hd_test_auth_new_member(port, &w->p, "sse-resume-b", &w->b);
    hd_test_auth_new_admin(port, "sse-resume-q", &w->q);
}

/* While A is away: events for A (2), for all of organization 1 (1), for B,
 * for organization 2, for P. Fills @mine with A's three, in id order. */
static void expect_published_while_away(int port, struct world *w, json_t *mine[3])
{
    mine[0] = expect_published(port, &w->p, w->a.user_id, "missed 1, for A");
    json_t *other[4];
    other[0] = expect_published(port, &w->p, w->b.user_id, "for B");
    mine[1] = expect_published(port, &w->p, NULL, "missed 2, organization 1");
    other[1] = expect_published(port, &w->q, NULL, "organization 2");
    other[2] = expect_published(port, &w->q, w->q.user_id, "for Q");
    mine[2] = expect_published(port, &w->p, w->a.user_id, "missed 3, for A");
    other[3] = expect_published(port, &w->p, w->p.user_id, "for P");
    for (int i = 0; i < 4; i++)
        json_decref(other[i]);
}

/* A's resumed stream: exactly @mine, then live events without a repeat. */
static void expect_replay_then_live(int port, struct world *w, struct hd_sse_client *c,
                                    json_t *mine[3], const char *how)
{
    char who[96];
    for (int i = 0; i < 3; i++) {
        snprintf(who, sizeof(who), "%s: missed event %d", how, i + 1);
        expect_event(c, mine[i], who);
    }
    json_t *live = expect_published(port, &w->p, w->a.user_id, "live after the replay");
    json_t *live2 = expect_published(port, &w->p, NULL, "live, organization 1");
    snprintf(who, sizeof(who), "%s: live after the replay", how);
    expect_event(c, live, who);
    expect_event(c, live2, who);
    json_decref(live);
    json_decref(live2);
}

Test(sse_stream, resume_with_the_header_replays_exactly_the_missed_events, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct world w;
    expect_world(p, &w);
    struct hd_sse_client c;
    expect_stream_bearer(&c, p, w.a.access, "A, first connection");
    json_t *seen = expect_published(p, &w.p, w.a.user_id, "seen live");
    expect_event(&c, seen, "A, first connection");
    hd_sse_close(&c);
    expect_metric(p, "herald_sse_streams", 0);

    json_t *mine[3];
    expect_published_while_away(p, &w, mine);
    char last[32];
    id_text(seen, last, sizeof(last));
    struct hd_sse_opts o = {.bearer = w.a.access, .last_event_id = last};
    expect_stream(&c, p, &o, "A, resumed");
    expect_replay_then_live(p, &w, &c, mine, "Last-Event-ID header");
    expect_metric(p, "herald_sse_replays_total", 1);
    hd_sse_close(&c);
    /* resuming from the newest id replays nothing */
    json_t *newest = expect_published(p, &w.p, w.a.user_id, "newest");
    id_text(newest, last, sizeof(last));
    expect_stream(&c, p, &o, "A, resumed at the newest id");
    json_t *next = expect_published(p, &w.p, w.a.user_id, "next");
    expect_event(&c, next, "A, nothing to replay");
    hd_sse_close(&c);
    json_decref(seen);
    json_decref(newest);
    json_decref(next);
    for (int i = 0; i < 3; i++)
        json_decref(mine[i]);
    expect_clean_exit(&s);
}

Test(sse_stream, resume_with_the_query_parameter, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct world w;
    expect_world(p, &w);
    json_t *seen = expect_published(p, &w.p, w.a.user_id, "before");
    json_t *mine[3];
    expect_published_while_away(p, &w, mine);
    /* as an EventSource without headers: ?token= and ?last_event_id= */
    static char target[HD_TEST_AUTH_ACCESS_CAP + 128];
    snprintf(target, sizeof(target), "%s?token=%s&last_event_id=%lld", HD_SSE_STREAM_PATH,
             w.a.access, id_of(seen));
    struct hd_sse_opts o = {.target = target};
    struct hd_sse_client c;
    expect_stream(&c, p, &o, "A, ?last_event_id=");
    expect_replay_then_live(p, &w, &c, mine, "?last_event_id=");
    hd_sse_close(&c);
    /* ?last_event_id=0: everything A may see, from the start */
    snprintf(target, sizeof(target), "%s?last_event_id=0", HD_SSE_STREAM_PATH);
    struct hd_sse_opts all = {.target = target, .bearer = w.a.access};
    expect_stream(&c, p, &all, "A, ?last_event_id=0");
    expect_event(&c, seen, "?last_event_id=0: the first event");
    for (int i = 0; i < 3; i++)
        expect_event(&c, mine[i], "?last_event_id=0");
    hd_sse_close(&c);
    json_decref(seen);
    for (int i = 0; i < 3; i++)
        json_decref(mine[i]);
    expect_clean_exit(&s);
}

/* ---- the hand-off from replay to live under a stream of publishes --------------------- */

#define HANDOFF_N 100

struct publisher {
    int port;
    const char *access;  /* P's */
    const char *user_id; /* A */
    long long ids[HANDOFF_N];
    atomic_int count;         /* ids[0 .. count-1] are set */
    atomic_int failed_status; /* 0, or what a failed publish answered */
};

static void *publish_loop(void *arg)
{
    struct publisher *pub = arg;
    for (int i = 0; i < HANDOFF_N; i++) {
        char title[32];
        snprintf(title, sizeof(title), "handoff %d", i);
        int status;
        json_t *n = try_publish(pub->port, pub->access, pub->user_id, NULL, title, &status);
        if (!n) {
            atomic_store(&pub->failed_status, status);
            break;
        }
        pub->ids[i] = (long long)json_integer_value(json_object_get(n, "id"));
        json_decref(n);
        atomic_store(&pub->count, i + 1);
    }
    return NULL;
}

/* The next @n notifications on @c are exactly @want[0 .. n-1], in order. */
static void expect_ids(struct hd_sse_client *c, const long long *want, int n, const char *who)
{
    for (int i = 0; i < n; i++) {
        struct hd_sse_event ev;
        int rc = hd_sse_next_event(c, &ev, NULL, WAIT_MS);
        cr_assert_eq(rc, 0, "%s: event %d of %d missing (%d), want id %lld", who, i + 1, n, rc,
                     want[i]);
        cr_assert(hd_sse_is_notification(&ev), "%s: event '%s'", who, ev.event);
        cr_assert_eq(hd_sse_event_id(&ev), want[i], "%s: event %d is id %s, want %lld", who, i + 1,
                     ev.id, want[i]);
        hd_sse_event_free(&ev);
    }
}

Test(sse_stream, resume_while_publishing_has_no_gap_and_no_duplicate, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"sse\":{\"max_streams_per_user\":20}}");
    int p = s.port;
    struct world w;
    expect_world(p, &w);
    struct hd_sse_client live;
    expect_stream_bearer(&live, p, w.a.access, "A, live all along");
    static struct publisher pub;
    memset(&pub, 0, sizeof(pub));
    pub.port = p;
    pub.access = w.p.access;
    pub.user_id = w.a.user_id;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, publish_loop, &pub), 0);
    /* resumes at different points, each while publishes keep coming: the
     * more of them, the likelier an event lands between the registration and
     * the replay read, where a missing de-duplication would show */
    enum { N_RESUME = 10 };
    struct hd_sse_client r[N_RESUME];
    int from[N_RESUME];
    for (int k = 0; k < N_RESUME; k++) {
        int at = 6 + k * 9;
        uint64_t until = hd_sse_now_ms() + 30000;
        while (atomic_load(&pub.count) < at && !atomic_load(&pub.failed_status) &&
               hd_sse_now_ms() < until)
            hd_test_sleep_ms(2);
        cr_assert_geq(atomic_load(&pub.count), at, "publishing stalled (status %d)",
                      atomic_load(&pub.failed_status));
        from[k] = atomic_load(&pub.count) - 4; /* four of them to replay, then live */
        char last[32];
        snprintf(last, sizeof(last), "%lld", pub.ids[from[k]]);
        struct hd_sse_opts o = {.bearer = w.a.access, .last_event_id = last};
        expect_stream(&r[k], p, &o, "a resumed stream");
    }
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&pub.failed_status), 0, "a publish answered %d",
                 atomic_load(&pub.failed_status));
    cr_assert_eq(atomic_load(&pub.count), HANDOFF_N);
    expect_ids(&live, pub.ids, HANDOFF_N, "the live stream");
    for (int k = 0; k < N_RESUME; k++) {
        char who[64];
        snprintf(who, sizeof(who), "resume %d (after id %lld)", k + 1, pub.ids[from[k]]);
        expect_ids(&r[k], pub.ids + from[k] + 1, HANDOFF_N - from[k] - 1, who);
    }
    /* nothing after the last one: the next event is a fresh marker */
    json_t *mark = expect_published(p, &w.p, NULL, "marker");
    expect_event(&live, mark, "the live stream, after the run");
    for (int k = 0; k < N_RESUME; k++) {
        expect_event(&r[k], mark, "a resumed stream, after the run");
        hd_sse_close(&r[k]);
    }
    json_decref(mark);
    hd_sse_close(&live);
    expect_clean_exit(&s);
}

/* ---- reset instead of a partial replay ------------------------------------------------ */

Test(sse_stream, more_missed_than_replay_max_gets_one_reset, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"sse\":{\"replay_max\":5}}");
    int p = s.port;
    struct world w;
    expect_world(p, &w);
    json_t *seen = expect_published(p, &w.p, w.a.user_id, "seen");
    json_t *missed[6];
    for (int i = 0; i < 6; i++) {
        char title[32];
        snprintf(title, sizeof(title), "missed %d", i + 1);
        missed[i] = expect_published(p, &w.p, i % 2 ? NULL : w.a.user_id, title);
        json_decref(expect_published(p, &w.p, w.b.user_id, "not A's: does not count"));
    }
    /* 6 missed > 5: one reset, no partial replay, then live */
    char last[32];
    id_text(seen, last, sizeof(last));
    struct hd_sse_opts o = {.bearer = w.a.access, .last_event_id = last};
    struct hd_sse_client c;
    expect_stream(&c, p, &o, "6 missed");
    expect_reset(&c, "6 missed");
    json_t *live = expect_published(p, &w.p, w.a.user_id, "live after the reset");
    expect_event(&c, live, "6 missed: the first event after the reset is live");
    hd_sse_close(&c);
    expect_metric(p, "herald_sse_resets_total{reason=\"replay\"}", 1);
    /* exactly replay_max missed (missed 3..6 and live): a replay */
    id_text(missed[1], last, sizeof(last));
    expect_stream(&c, p, &o, "5 missed");
    for (int i = 2; i < 6; i++)
        expect_event(&c, missed[i], "5 missed: replayed");
    expect_event(&c, live, "5 missed: replayed, the last");
    json_t *after = expect_published(p, &w.p, NULL, "live after the replay");
    expect_event(&c, after, "5 missed: then live");
    hd_sse_close(&c);
    expect_metric(p, "herald_sse_replays_total", 1);
    expect_metric(p, "herald_sse_resets_total{reason=\"replay\"}", 1);
    json_decref(seen);
    json_decref(live);
    json_decref(after);
    for (int i = 0; i < 6; i++)
        json_decref(missed[i]);
    expect_clean_exit(&s);
}

/* Deletes the notifications with an id up to @max_id from the SQLite store
 * at @path, as the retention job does with those past
 * notifications.retention_days (the test cannot wait days). */
static void expect_purged_up_to(const char *path, long long max_id)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    cr_assert_eq(rc, SQLITE_OK, "open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
    sqlite3_busy_timeout(db, 5000);
    char sql[96];
    snprintf(sql, sizeof(sql), "DELETE FROM notifications WHERE id <= %lld", max_id);
    char *err = NULL;
    rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "?");
    cr_assert_gt(sqlite3_changes(db), 0, "%s deleted nothing", sql);
    sqlite3_close(db);
}

Test(sse_stream, last_event_id_older_than_the_oldest_kept_gets_reset, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"store\":{\"sqlite_path\":\"var/sse.db\"}}");
    int p = s.port;
    struct world w;
    expect_world(p, &w);
    json_t *n[4];
    for (int i = 0; i < 4; i++)
        n[i] = expect_published(p, &w.p, i == 2 ? NULL : w.a.user_id, "kept for a while");
    char path[700];
    snprintf(path, sizeof(path), "%s/var/sse.db", s.dir);
    expect_purged_up_to(path, id_of(n[1])); /* n[0] and n[1] are gone: n[2] is the oldest kept */
    /* the client has n[0]: n[1] is gone, it cannot be replayed */
    char last[32];
    id_text(n[0], last, sizeof(last));
    struct hd_sse_opts o = {.bearer = w.a.access, .last_event_id = last};
    struct hd_sse_client c;
    expect_stream(&c, p, &o, "older than the oldest kept");
    expect_reset(&c, "older than the oldest kept");
    json_t *live = expect_published(p, &w.p, w.a.user_id, "live");
    expect_event(&c, live, "after the reset");
    hd_sse_close(&c);
    /* the client has n[1]: everything after it is still there */
    id_text(n[1], last, sizeof(last));
    expect_stream(&c, p, &o, "right before the oldest kept");
    expect_event(&c, n[2], "replay of the oldest kept");
    expect_event(&c, n[3], "replay");
    expect_event(&c, live, "replay, the last");
    hd_sse_close(&c);
    expect_metric(p, "herald_sse_resets_total{reason=\"replay\"}", 1);
    for (int i = 0; i < 4; i++)
        json_decref(n[i]);
    json_decref(live);
    expect_clean_exit(&s);
}

/* ---- keep-alive, limits, metrics ------------------------------------------------------ */

/* A tick of 1 s drives the pings. The mean gap must be the interval
 * (±100 ms over the run); a single gap may stray by 500 ms when a loaded
 * machine delays one tick (the next gap is then as much shorter), but two
 * pings in one tick or a skipped tick still fail. */
#define PING_MEAN_TOLERANCE_MS 100
#define PING_GAP_TOLERANCE_MS  500

Test(sse_stream, keepalive_pings_arrive_every_second, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"sse\":{\"keepalive_s\":1}}");
    struct hd_test_auth_tokens a;
    hd_test_auth_new_admin(s.port, "sse-ping", &a);
    struct hd_sse_client c;
    expect_stream_bearer(&c, s.port, a.access, "the stream");
    uint64_t at[16];
    size_t n = 0;
    uint64_t until = hd_sse_now_ms() + 5500;
    while (n < 16 && hd_sse_now_ms() < until) {
        struct hd_sse_event ev;
        int rc = hd_sse_next(&c, &ev, (int)(until - hd_sse_now_ms()));
        if (rc == -ETIMEDOUT)
            break;
        cr_assert_eq(rc, 0, "the stream failed (%d)", rc);
        cr_assert(ev.comments == 1 && ev.lines == 1 && ev.comment && !*ev.comment,
                  "a block that is not the ping \":\": %zu lines, event %s", ev.lines,
                  ev.event ? ev.event : "(none)");
        at[n++] = ev.at_ms;
        hd_sse_event_free(&ev);
    }
    cr_assert_geq(n, 4, "%zu pings in 5.5 s at sse.keepalive_s 1", n);
    for (size_t i = 1; i < n; i++) {
        long gap = (long)(at[i] - at[i - 1]);
        cr_log_info("ping gap %zu: %ld ms", i, gap);
        cr_assert(gap >= 1000 - PING_GAP_TOLERANCE_MS && gap <= 1000 + PING_GAP_TOLERANCE_MS,
                  "ping %zu came %ld ms after the one before, want 1000 ± %d", i, gap,
                  PING_GAP_TOLERANCE_MS);
    }
    long mean = (long)(at[n - 1] - at[0]) / (long)(n - 1);
    cr_assert(mean >= 1000 - PING_MEAN_TOLERANCE_MS && mean <= 1000 + PING_MEAN_TOLERANCE_MS,
              "pings %ld ms apart on average, want 1000 ± %d", mean, PING_MEAN_TOLERANCE_MS);
    /* events go out between pings as usual */
    json_t *e = expect_published(s.port, &a, a.user_id, "between pings");
    expect_event(&c, e, "the stream");
    json_decref(e);
    hd_sse_close(&c);
    expect_clean_exit(&s);
}

Test(sse_stream, max_streams_per_user_then_429_and_a_closed_one_frees_a_slot, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"sse\":{\"max_streams_per_user\":3}}");
    int p = s.port;
    struct hd_test_auth_tokens a1, a2, b;
    hd_test_auth_new_admin(p, "sse-max", &a1);
    expect_device(p, &a1, &a2);
    hd_test_auth_new_member(p, &a1, "sse-max-b", &b);
    struct hd_sse_client c[3], other;
    expect_stream_bearer(&c[0], p, a1.access, "stream 1");
    expect_stream_bearer(&c[1], p, a2.access, "stream 2");
    expect_stream_bearer(&c[2], p, a1.access, "stream 3");
    struct hd_sse_opts o = {.bearer = a2.access};
    expect_refused(p, &o, 429, "too_many_streams", "a 4th stream (any session of the user)");
    /* the limit is per user: another user still opens one */
    expect_stream_bearer(&other, p, b.access, "another user");
    expect_metric(p, "herald_sse_streams", 4);
    /* closing one frees a slot (once herald has seen the hang-up) */
    hd_sse_close(&c[1]);
    uint64_t until = hd_sse_now_ms() + 3000;
    struct hd_sse_client again;
    for (;;) {
        cr_assert_eq(hd_sse_open(&again, p, &o), 0);
        if (hd_sse_status(&again) == 200 || hd_sse_now_ms() > until)
            break;
        cr_assert_eq(hd_sse_status(&again), 429, "status %d", hd_sse_status(&again));
        hd_sse_close(&again);
        hd_test_sleep_ms(50);
    }
    cr_assert_eq(hd_sse_status(&again), 200, "a closed stream did not free its slot in 3 s");
    expect_refused(p, &o, 429, "too_many_streams", "a 4th stream again");
    /* the refused ones never became streams; the open ones all get events */
    json_t *n = expect_published(p, &a1, a1.user_id, "to the three");
    expect_event(&c[0], n, "stream 1");
    expect_event(&c[2], n, "stream 3");
    struct hd_sse_event ev;
    cr_assert_eq(hd_sse_next(&again, &ev, WAIT_MS), 0);
    cr_assert_geq(ev.retry, 0, "the reopened stream does not start with retry:");
    hd_sse_event_free(&ev);
    expect_event(&again, n, "the reopened stream");
    json_decref(n);
    expect_metric(p, "herald_sse_streams", 4);
    hd_sse_close(&c[0]);
    hd_sse_close(&c[2]);
    hd_sse_close(&again);
    hd_sse_close(&other);
    expect_clean_exit(&s);
}

Test(sse_stream, stream_connections_are_rate_limited_per_user, .timeout = 60)
{
    struct hd_test_server s;
    /* "1/min burst 2": three at once, then one a minute */
    hd_test_server_start(&s, "{\"ratelimit\":{\"enabled\":true,"
                             "\"stream_connect_user\":\"1/min burst 2\"}}");
    int p = s.port;
    struct hd_test_auth_tokens a, b;
    hd_test_auth_new_admin(p, "sse-rl-a", &a);
    hd_test_auth_new_admin(p, "sse-rl-b", &b);
    struct hd_sse_client c[3], other, refused;
    for (int i = 0; i < 3; i++)
        expect_stream_bearer(&c[i], p, a.access, "within the burst");
    struct hd_sse_opts o = {.bearer = a.access};
    cr_assert_eq(hd_sse_open(&refused, p, &o), 0);
    hd_test_rl_assert_limited(&refused.head, "stream_connect_user", 60, "a 4th connection");
    hd_sse_close(&refused);
    /* closing one does not give the budget back: it is about connecting */
    hd_sse_close(&c[0]);
    cr_assert_eq(hd_sse_open(&refused, p, &o), 0);
    hd_test_rl_assert_limited(&refused.head, "stream_connect_user", 60, "after a close");
    hd_sse_close(&refused);
    /* per user: another user connects */
    expect_stream_bearer(&other, p, b.access, "another user");
    expect_metric(p, "herald_sse_streams", 3);
    json_t *n = expect_published(p, &a, a.user_id, "to the limited user");
    expect_event(&c[1], n, "a stream within the burst");
    json_decref(n);
    hd_sse_close(&c[1]);
    hd_sse_close(&c[2]);
    hd_sse_close(&other);
    expect_clean_exit(&s);
}

Test(sse_stream, stream_connections_are_rate_limited_per_client_ip, .timeout = 60)
{
    struct hd_test_server s;
    /* "1/min burst 1": two at once per IP, whoever the user; the proxy on
     * 127.0.0.1 is trusted, so X-Forwarded-For names the client */
    hd_test_server_start(&s, "{\"server\":{\"trusted_proxies\":[\"127.0.0.1/32\"]},"
                             "\"ratelimit\":{\"enabled\":true,"
                             "\"stream_connect_ip\":\"1/min burst 1\"}}");
    int p = s.port;
    struct hd_test_auth_tokens a, b;
    hd_test_auth_new_admin(p, "sse-ip-a", &a);
    hd_test_auth_new_admin(p, "sse-ip-b", &b);
    static const char *const from_x[] = {"X-Forwarded-For: 198.51.100.7", NULL};
    static const char *const from_y[] = {"X-Forwarded-For: 198.51.100.8", NULL};
    struct hd_sse_client c[3], refused;
    struct hd_sse_opts oa = {.bearer = a.access, .headers = from_x};
    struct hd_sse_opts ob = {.bearer = b.access, .headers = from_x};
    cr_assert_eq(hd_sse_open(&c[0], p, &oa), 0);
    cr_assert_eq(hd_sse_status(&c[0]), 200, "first from 198.51.100.7");
    cr_assert_eq(hd_sse_open(&c[1], p, &ob), 0);
    cr_assert_eq(hd_sse_status(&c[1]), 200, "second from 198.51.100.7 (another user)");
    /* a third user-independent connection from that IP is refused */
    cr_assert_eq(hd_sse_open(&refused, p, &oa), 0);
    hd_test_rl_assert_limited(&refused.head, "stream_connect_ip", 60, "a 3rd from one IP");
    hd_sse_close(&refused);
    /* another client IP has its own budget, for the same user */
    struct hd_sse_opts oy = {.bearer = a.access, .headers = from_y};
    cr_assert_eq(hd_sse_open(&c[2], p, &oy), 0);
    cr_assert_eq(hd_sse_status(&c[2]), 200, "from 198.51.100.8");
    expect_metric(p, "herald_sse_streams", 3);
    for (int i = 0; i < 3; i++)
        hd_sse_close(&c[i]);
    expect_clean_exit(&s);
}

Test(sse_stream, metrics_count_streams_ends_replays_and_resets, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"sse\":{\"replay_max\":2}}");
    int p = s.port;
    struct world w;
    expect_world(p, &w);
    expect_metric(p, "herald_sse_streams", 0);
    struct hd_sse_client a, a_too, b;
    expect_stream_bearer(&a, p, w.a.access, "A");
    expect_stream_bearer(&a_too, p, w.a.access, "A again");
    expect_stream_bearer(&b, p, w.b.access, "B");
    expect_metric(p, "herald_sse_streams", 3);
    json_t *e = expect_published(p, &w.p, NULL, "to the organization");
    expect_event(&a, e, "A");
    expect_event(&a_too, e, "A again");
    expect_event(&b, e, "B");
    expect_metric(p, "herald_notifications_published_total", 1);
    expect_metric(p, "herald_sse_delivered_total", 3);
    hd_sse_close(&a_too);
    expect_metric(p, "herald_sse_streams", 2);
    /* B logs out: one session end */
    expect_status(p, "POST", "/api/auth/logout", w.b.access, NULL, 204);
    expect_session_ended(&b, hd_sse_now_ms(), END_BOUND_MS, "B");
    expect_metric(p, "herald_sse_session_ends_total", 1);
    expect_metric(p, "herald_sse_streams", 1);
    /* A resumes twice: 2 missed (a replay), then 3 missed (a reset) */
    hd_sse_close(&a);
    char last[32];
    id_text(e, last, sizeof(last));
    json_t *m1 = expect_published(p, &w.p, w.a.user_id, "m1");
    json_t *m2 = expect_published(p, &w.p, w.a.user_id, "m2");
    struct hd_sse_opts o = {.bearer = w.a.access, .last_event_id = last};
    expect_stream(&a, p, &o, "A resumes, 2 missed");
    expect_event(&a, m1, "A replay");
    expect_event(&a, m2, "A replay");
    hd_sse_close(&a);
    json_t *m3 = expect_published(p, &w.p, w.a.user_id, "m3");
    expect_stream(&a, p, &o, "A resumes, 3 missed");
    expect_reset(&a, "A, 3 missed");
    expect_metric(p, "herald_sse_replays_total", 1);
    expect_metric(p, "herald_sse_resets_total{reason=\"replay\"}", 1);
    expect_metric(p, "herald_sse_resets_total{reason=\"overflow\"}", 0);
    expect_metric(p, "herald_sse_slow_closes_total", 0);
    expect_metric(p, "herald_sse_streams", 1);
    cr_assert_geq(hd_test_rl_metric(p, "herald_sse_fanout_seconds_count"), 1,
                  "no fan-out observed");
    hd_sse_close(&a);
    expect_metric(p, "herald_sse_streams", 0);
    json_decref(e);
    json_decref(m1);
    json_decref(m2);
    json_decref(m3);
    expect_clean_exit(&s);
}
