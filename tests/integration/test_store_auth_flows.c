/* The auth flows on both store backends (issue 4): register → me → login →
 * refresh → logout, after which the old access token is refused by every
 * endpoint at once and the refresh token is dead (security test 8);
 * 409 email_taken for the same email in another case and 409
 * username_taken; refresh-token reuse inside and after the grace window,
 * and after logout (security test 7, sequential part; the parallel part is
 * in test_store_auth_races_mt.c).
 *
 * Each flow is one function run as NAME_sqlite (the harness's embedded
 * store) and NAME_postgres (a fresh database on $HERALD_TEST_DATABASE_URL,
 * dropped by the .fini; without that variable the test FAILS: run
 * scripts/test). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <criterion/criterion.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

/* Defines `static void NAME(enum hd_test_backend)` and runs it on both. */
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

/* Every authenticated endpoint refuses @access with 401 invalid_token. */
static void refused_everywhere(int port, const char *access, const char *sid, const char *what)
{
    static const char *const calls[][2] = {
        {"GET", "/api/me"},
        {"GET", "/api/auth/sessions"},
        {"POST", "/api/auth/logout"},
        {"POST", "/api/auth/logout?scope=global"},
        {"DELETE", NULL}, /* /api/auth/sessions/<sid> */
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        char target[128], label[256];
        if (calls[i][1])
            snprintf(target, sizeof(target), "%s", calls[i][1]);
        else
            snprintf(target, sizeof(target), "/api/auth/sessions/%s", sid);
        snprintf(label, sizeof(label), "%s: %s %s", what, calls[i][0], target);
        struct hd_http_response r;
        int rc = hd_test_auth_call(port, calls[i][0], target, access, &r);
        cr_assert_eq(rc, 0, "%s: no response (%d)", label, rc);
        hd_test_auth_assert_invalid_token(&r, label);
        hd_http_response_free(&r);
    }
}

/* POST /api/auth/refresh with @refresh is 401 @code. */
static void refresh_refused(int port, const char *refresh, const char *code, const char *what)
{
    struct hd_http_response r;
    int rc = hd_test_auth_refresh_raw(port, refresh, &r);
    cr_assert_eq(rc, 0, "%s: no response (%d)", what, rc);
    cr_assert_eq(r.status, 401, "%s: status %d, want 401: %s", what, r.status, r.body);
    hd_assert_error(&r, 401, code);
    hd_http_response_free(&r);
}

static void check_user(json_t *user, const char *email)
{
    cr_assert_str_eq(json_string_value(json_object_get(user, "email")), email);
    cr_assert_str_eq(json_string_value(json_object_get(user, "role")), "admin",
                     "the first user of an organization is its admin");
    cr_assert(json_is_false(json_object_get(user, "disabled")));
}

AUTH_BOTH(store_auth_flows, register_me_login_refresh_logout, .timeout = 90)
{
    struct hd_test_server s;
    start(&s, backend, NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "flow");
    struct hd_test_auth_tokens reg;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &reg);

    /* me: the registered user */
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_call(s.port, "GET", "/api/me", reg.access, &r), 0);
    hd_assert_json_response(&r, 200);
    json_t *me = hd_http_response_json(&r);
    check_user(me, email);
    cr_assert_str_eq(json_string_value(json_object_get(me, "id")), reg.user_id);
    cr_assert_str_eq(json_string_value(json_object_get(me, "organization_id")), reg.org_id);
    cr_assert_null(json_object_get(me, "password_hash"));
    json_decref(me);
    hd_http_response_free(&r);

    /* login: a second session of the same user */
    struct hd_test_auth_tokens log;
    hd_test_auth_login(s.port, email, HD_TEST_AUTH_PASSWORD, &log);
    cr_assert_str_eq(log.user_id, reg.user_id);
    cr_assert_str_neq(log.session_id, reg.session_id, "login reused the register session");
    cr_assert_str_neq(log.refresh, reg.refresh);
    hd_test_auth_assert_me(s.port, log.access, reg.user_id);

    /* refresh: same session, a new refresh token and a working access token */
    struct hd_test_auth_tokens ref;
    hd_test_auth_refresh(s.port, log.refresh, &ref);
    cr_assert_str_eq(ref.session_id, log.session_id, "refresh moved to another session");
    cr_assert_str_neq(ref.refresh, log.refresh, "the refresh token did not rotate");
    cr_assert_str_neq(ref.access, log.access);
    hd_test_auth_assert_me(s.port, ref.access, reg.user_id);

    /* logout (scope local by default): 204, the cookie cleared */
    cr_assert_eq(hd_test_auth_call(s.port, "POST", "/api/auth/logout", ref.access, &r), 0);
    cr_assert_eq(r.status, 204, "logout: %d %s", r.status, r.body);
    const char *cookie = hd_test_auth_refresh_cookie(&r);
    cr_assert(cookie && strncmp(cookie, "herald_refresh=;", 16) == 0 &&
                  strstr(cookie, "Max-Age=0") && strstr(cookie, "Path=/api/auth"),
              "logout does not clear the refresh cookie: %s", cookie ? cookie : "(none)");
    hd_http_response_free(&r);

    /* at once: both access tokens of that session refused everywhere, and
     * its refresh tokens dead */
    refused_everywhere(s.port, ref.access, ref.session_id, "after logout, the refreshed token");
    refused_everywhere(s.port, log.access, log.session_id, "after logout, the login token");
    refresh_refused(s.port, ref.refresh, "invalid_refresh_token", "the current refresh token");
    refresh_refused(s.port, log.refresh, NULL, "the rotated refresh token");

    /* the register session is another session: untouched */
    hd_test_auth_assert_me(s.port, reg.access, reg.user_id);
    struct hd_test_auth_tokens reg2;
    hd_test_auth_refresh(s.port, reg.refresh, &reg2);
    hd_test_auth_assert_me(s.port, reg2.access, reg.user_id);
    finish(&s);
}

/* A 409 with @code and error.field @field for registering @email/@username. */
static void expect_conflict(int port, const char *email, const char *username, const char *code,
                            const char *field)
{
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", HD_TEST_AUTH_PASSWORD);
    if (username)
        json_object_set_new(j, "username", json_string(username));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_post(port, "/api/auth/register", text, NULL, &r), 0);
    free(text);
    cr_assert_eq(r.status, 409, "register %s / %s: %d, want 409: %s", email,
                 username ? username : "-", r.status, r.body);
    hd_assert_error(&r, 409, code);
    json_t *body = hd_http_response_json(&r);
    const char *got = json_string_value(json_object_get(json_object_get(body, "error"), "field"));
    cr_assert(got && strcmp(got, field) == 0, "error.field '%s', want '%s'", got ? got : "(none)",
              field);
    cr_assert_null(hd_test_auth_refresh_cookie(&r), "a 409 sets a refresh cookie");
    json_decref(body);
    hd_http_response_free(&r);
}

static void upcase(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 32);
}

AUTH_BOTH(store_auth_flows, email_taken_in_any_case_is_409, .timeout = 60)
{
    struct hd_test_server s;
    start(&s, backend, NULL);
    char email[128], upper[128];
    hd_test_auth_unique_email(email, sizeof(email), "taken");
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &t);
    expect_conflict(s.port, email, NULL, "email_taken", "email");
    snprintf(upper, sizeof(upper), "%s", email);
    upcase(upper);
    expect_conflict(s.port, upper, NULL, "email_taken", "email");
    upper[0] = email[0]; /* mixed case */
    expect_conflict(s.port, upper, NULL, "email_taken", "email");
    /* the first account is unharmed, and logs in with either case */
    hd_test_auth_assert_me(s.port, t.access, t.user_id);
    struct hd_test_auth_tokens again;
    hd_test_auth_login(s.port, upper, HD_TEST_AUTH_PASSWORD, &again);
    cr_assert_str_eq(again.user_id, t.user_id);
    finish(&s);
}

AUTH_BOTH(store_auth_flows, username_taken_is_409, .timeout = 60)
{
    struct hd_test_server s;
    start(&s, backend, NULL);
    char e1[128], e2[128], name[40], upper[40];
    hd_test_auth_unique_email(e1, sizeof(e1), "user1");
    hd_test_auth_unique_email(e2, sizeof(e2), "user2");
    snprintf(name, sizeof(name), "alice_%08x", (unsigned)hd_test_now_ms());
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, e1, HD_TEST_AUTH_PASSWORD, name, &t);
    expect_conflict(s.port, e2, name, "username_taken", "username");
    snprintf(upper, sizeof(upper), "%s", name);
    upcase(upper);
    expect_conflict(s.port, e2, upper, "username_taken", "username");
    /* the refused registration left nothing behind: e2 is free */
    struct hd_test_auth_tokens t2;
    hd_test_auth_register(s.port, e2, HD_TEST_AUTH_PASSWORD, NULL, &t2);
    cr_assert_str_neq(t2.user_id, t.user_id);
    finish(&s);
}

AUTH_BOTH(store_auth_flows, refresh_reuse_inside_and_after_the_grace_window, .timeout = 60)
{
    struct hd_test_server s;
    start(&s, backend, "{\"session\":{\"refresh_reuse_grace_s\":1}}");
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "reuse");
    struct hd_test_auth_tokens r0, r1, again, other;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &r0);
    hd_test_auth_login(s.port, email, HD_TEST_AUTH_PASSWORD, &other); /* a bystander session */

    hd_test_auth_refresh(s.port, r0.refresh, &r1);
    cr_assert_str_neq(r1.refresh, r0.refresh);
    /* inside the window: the same successor (a second tab) */
    hd_test_auth_refresh(s.port, r0.refresh, &again);
    cr_assert_str_eq(again.refresh, r1.refresh,
                     "a reuse inside the grace window must return the "
                     "same successor");
    cr_assert_str_eq(again.session_id, r1.session_id);
    hd_test_auth_assert_me(s.port, again.access, r0.user_id);

    /* after the window: refused, and the whole session is revoked */
    hd_test_sleep_ms(1500);
    refresh_refused(s.port, r0.refresh, "refresh_token_reused", "a replay after the window");
    refused_everywhere(s.port, r1.access, r1.session_id, "after reuse, the successor's token");
    hd_test_auth_assert_refused(s.port, r0.access, "after reuse, the first access token");
    hd_test_auth_assert_refused(s.port, again.access, "after reuse, the grace answer's token");
    refresh_refused(s.port, r1.refresh, NULL, "after reuse, the successor refresh token");

    /* the user's other session is not touched */
    hd_test_auth_assert_me(s.port, other.access, r0.user_id);

    /* a replay after logout fails too */
    struct hd_test_auth_tokens l1;
    hd_test_auth_refresh(s.port, other.refresh, &l1);
    cr_assert_eq(hd_test_auth_status(s.port, "POST", "/api/auth/logout", l1.access), 204);
    refresh_refused(s.port, l1.refresh, "invalid_refresh_token", "after logout, the current one");
    refresh_refused(s.port, other.refresh, NULL, "after logout, the rotated one (in the window)");
    hd_test_sleep_ms(1500);
    refresh_refused(s.port, other.refresh, NULL, "after logout, the rotated one (past it)");
    refresh_refused(s.port, l1.refresh, "invalid_refresh_token", "after logout, again");
    finish(&s);
}
