/* Auth flows that do not depend on the store backend (run on the harness's
 * SQLite store): validation errors name their field; failed logins answer
 * alike (security test 6); logout scopes; the sessions list and deleting a
 * session; refresh through the cookie and its CSRF defence; the cookie's
 * flags in a production config. The backend-sensitive flows are in
 * test_store_auth_flows.c and test_store_auth_races_mt.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <criterion/criterion.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

static void finish(struct hd_test_server *s)
{
    hd_assert_healthy(s->port);
    cr_assert_eq(hd_test_server_stop(s), 0, "herald did not exit 0");
}

static void new_user(int port, const char *tag, struct hd_test_auth_tokens *t)
{
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), tag);
    hd_test_auth_register(port, email, HD_TEST_AUTH_PASSWORD, NULL, t);
}

/* ---- validation -------------------------------------------------------------- */

/* POST @target with @json (and @access) → 400 validation_failed naming @field. */
static void expect_field(int port, const char *target, const char *json, const char *access,
                         const char *field)
{
    struct hd_http_response r;
    int rc = hd_test_auth_post(port, target, json, access, &r);
    cr_assert_eq(rc, 0, "%s %s: no response", target, json);
    cr_assert_eq(r.status, 400, "%s %s: status %d, want 400: %s", target, json, r.status, r.body);
    hd_assert_error(&r, 400, "validation_failed");
    json_t *j = hd_http_response_json(&r);
    const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "field"));
    cr_assert(got && strcmp(got, field) == 0, "%s %s: error.field '%s', want '%s'", target, json,
              got ? got : "(none)", field);
    json_decref(j);
    hd_http_response_free(&r);
}

Test(auth_sessions, validation_errors_name_their_field, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    const char *reg = "/api/auth/register";
    const char *pw = "\"password\":\"" HD_TEST_AUTH_PASSWORD "\"";
    char body[512];
    expect_field(s.port, reg, "{}", NULL, "email");
    snprintf(body, sizeof(body), "{%s}", pw);
    expect_field(s.port, reg, body, NULL, "email");
    snprintf(body, sizeof(body), "{\"email\":42,%s}", pw);
    expect_field(s.port, reg, body, NULL, "email");
    snprintf(body, sizeof(body), "{\"email\":\"not-an-email\",%s}", pw);
    expect_field(s.port, reg, body, NULL, "email");
    snprintf(body, sizeof(body), "{\"email\":\"a b@example.test\",%s}", pw);
    expect_field(s.port, reg, body, NULL, "email");
    expect_field(s.port, reg, "{\"email\":\"ok@example.test\"}", NULL, "password");
    expect_field(s.port, reg, "{\"email\":\"ok@example.test\",\"password\":\"short\"}", NULL,
                 "password");
    expect_field(s.port, reg, "{\"email\":\"ok@example.test\",\"password\":[\"x\"]}", NULL,
                 "password");
    expect_field(s.port, reg,
                 "{\"email\":\"same.as.password@example.test\","
                 "\"password\":\"same.as.password@example.test\"}",
                 NULL, "password");
    snprintf(body, sizeof(body), "{\"email\":\"ok@example.test\",%s,\"username\":\"a\"}", pw);
    expect_field(s.port, reg, body, NULL, "username");
    snprintf(body, sizeof(body), "{\"email\":\"ok@example.test\",%s,\"username\":\"bad name!\"}",
             pw);
    expect_field(s.port, reg, body, NULL, "username");
    snprintf(body, sizeof(body), "{\"email\":\"ok@example.test\",%s,\"display_name\":\"\"}", pw);
    expect_field(s.port, reg, body, NULL, "display_name");
    snprintf(body, sizeof(body), "{\"email\":\"ok@example.test\",%s,\"display_name\":7}", pw);
    expect_field(s.port, reg, body, NULL, "display_name");
    snprintf(body, sizeof(body), "{\"email\":\"ok@example.test\",%s,\"organization\":\"\"}", pw);
    expect_field(s.port, reg, body, NULL, "organization");

    expect_field(s.port, "/api/auth/login", "{}", NULL, "email");
    expect_field(s.port, "/api/auth/login", "{\"email\":\"ok@example.test\"}", NULL, "password");
    expect_field(s.port, "/api/auth/refresh", "{}", NULL, "refresh_token");
    expect_field(s.port, "/api/auth/refresh", "{\"refresh_token\":5}", NULL, "refresh_token");

    struct hd_test_auth_tokens t;
    new_user(s.port, "valid", &t);
    expect_field(s.port, "/api/auth/logout?scope=everything", NULL, t.access, "scope");

    /* not a JSON object, or not declared as JSON */
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_post(s.port, reg, "[1]", NULL, &r), 0);
    hd_assert_error(&r, 400, "validation_failed");
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_auth_post(s.port, reg, "{\"email\":", NULL, &r), 0);
    hd_assert_error(&r, 400, "validation_failed");
    hd_http_response_free(&r);
    const char *plain[] = {"Content-Type: text/plain", NULL};
    const char *ok = "{\"email\":\"ok@example.test\",\"password\":\"" HD_TEST_AUTH_PASSWORD "\"}";
    cr_assert_eq(hd_test_auth_request(s.port, "POST", reg, plain, ok, strlen(ok), &r), 0);
    hd_assert_error(&r, 415, "unsupported_media_type");
    hd_http_response_free(&r);
    /* none of the refused bodies created ok@example.test */
    struct hd_test_auth_tokens created;
    hd_test_auth_register(s.port, "ok@example.test", HD_TEST_AUTH_PASSWORD, NULL, &created);
    finish(&s);
}

/* ---- failed logins ------------------------------------------------------------ */

static char *credentials(const char *email, const char *password)
{
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", password);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cr_assert(text);
    return text;
}

/* The body of @r without its request_id, as canonical JSON (malloc'd). */
static char *body_without_request_id(const struct hd_http_response *r)
{
    json_t *j = hd_http_response_json(r);
    cr_assert(j, "not JSON: %s", r->body);
    json_object_del(j, "request_id");
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

/* Header names and values, except those that differ per response. */
static char *headers_of(const struct hd_http_response *r)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *name = r->headers[i].name;
        if (strcasecmp(name, "X-Request-Id") == 0 || strcasecmp(name, "Date") == 0)
            continue;
        fprintf(f, "%s: %s\n", name, r->headers[i].value);
    }
    fclose(f);
    return out;
}

static void login_response(int port, const char *email, const char *password,
                           struct hd_http_response *r)
{
    char *body = credentials(email, password);
    int rc = hd_test_auth_post(port, "/api/auth/login", body, NULL, r);
    free(body);
    cr_assert_eq(rc, 0, "login: no response (%d)", rc);
}

Test(auth_sessions, login_failures_answer_alike, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens t;
    new_user(s.port, "alike", &t);
    char unknown[128];
    hd_test_auth_unique_email(unknown, sizeof(unknown), "nobody");
    struct hd_http_response wrong, none;
    login_response(s.port, t.email, "not the password at all", &wrong);
    login_response(s.port, unknown, "not the password at all", &none);
    hd_assert_error(&wrong, 401, "invalid_credentials");
    hd_assert_error(&none, 401, "invalid_credentials");
    char *a = body_without_request_id(&wrong), *b = body_without_request_id(&none);
    cr_assert_str_eq(a, b, "bodies differ: wrong password %s, unknown email %s", a, b);
    char *ha = headers_of(&wrong), *hb = headers_of(&none);
    cr_assert_str_eq(ha, hb, "headers differ:\n--- wrong password\n%s--- unknown email\n%s", ha,
                     hb);
    cr_assert_null(hd_test_auth_refresh_cookie(&wrong), "a failed login sets the refresh cookie");
    free(a);
    free(b);
    free(ha);
    free(hb);
    hd_http_response_free(&wrong);
    hd_http_response_free(&none);
    /* the right password logs in, with the email in any case */
    char upper[256];
    snprintf(upper, sizeof(upper), "%s", t.email);
    for (char *p = upper; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    struct hd_test_auth_tokens again;
    hd_test_auth_login(s.port, upper, HD_TEST_AUTH_PASSWORD, &again);
    cr_assert_str_eq(again.user_id, t.user_id);
    finish(&s);
}

/* ---- logout scopes --------------------------------------------------------------- */

static void logout(int port, const char *access, const char *scope, struct hd_http_response *r)
{
    char target[64];
    snprintf(target, sizeof(target), "/api/auth/logout%s%s", scope ? "?scope=" : "",
             scope ? scope : "");
    cr_assert_eq(hd_test_auth_call(port, "POST", target, access, r), 0);
    cr_assert_eq(r->status, 204, "%s: %d %s", target, r->status, r->body);
}

static bool cookie_cleared(const struct hd_http_response *r)
{
    const char *c = hd_test_auth_refresh_cookie(r);
    return c && strncmp(c, "herald_refresh=;", 16) == 0 && strstr(c, "Max-Age=0");
}

static void refresh_fails(int port, const char *refresh, const char *what)
{
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_refresh_raw(port, refresh, &r), 0);
    cr_assert_eq(r.status, 401, "%s: refresh answered %d: %s", what, r.status, r.body);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);
}

static size_t count_sessions(int port, const char *access)
{
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_call(port, "GET", "/api/auth/sessions", access, &r), 0);
    hd_assert_json_response(&r, 200);
    json_t *j = hd_http_response_json(&r);
    size_t n = json_array_size(json_object_get(j, "sessions"));
    json_decref(j);
    hd_http_response_free(&r);
    return n;
}

Test(auth_sessions, logout_scope_others_keeps_this_session_and_ends_the_rest, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, b, c, stranger;
    new_user(s.port, "others", &a);
    hd_test_auth_login(s.port, a.email, HD_TEST_AUTH_PASSWORD, &b);
    hd_test_auth_login(s.port, a.email, HD_TEST_AUTH_PASSWORD, &c);
    new_user(s.port, "stranger", &stranger);
    cr_assert_eq(count_sessions(s.port, a.access), 3);

    struct hd_http_response r;
    logout(s.port, a.access, "others", &r);
    cr_expect_not(cookie_cleared(&r),
                  "logout?scope=others keeps this session but clears its refresh cookie: %s",
                  hd_test_auth_refresh_cookie(&r));
    hd_http_response_free(&r);
    hd_test_auth_assert_me(s.port, a.access, a.user_id);
    hd_test_auth_assert_refused(s.port, b.access, "scope=others, session b");
    hd_test_auth_assert_refused(s.port, c.access, "scope=others, session c");
    refresh_fails(s.port, b.refresh, "scope=others, session b");
    refresh_fails(s.port, c.refresh, "scope=others, session c");
    cr_assert_eq(count_sessions(s.port, a.access), 1);
    struct hd_test_auth_tokens a2;
    hd_test_auth_refresh(s.port, a.refresh, &a2); /* the kept session still refreshes */
    hd_test_auth_assert_me(s.port, a2.access, a.user_id);
    hd_test_auth_assert_me(s.port, stranger.access, stranger.user_id);
    finish(&s);
}

Test(auth_sessions, logout_scope_global_ends_every_session, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, b, stranger;
    new_user(s.port, "global", &a);
    hd_test_auth_login(s.port, a.email, HD_TEST_AUTH_PASSWORD, &b);
    new_user(s.port, "stranger", &stranger);
    struct hd_http_response r;
    logout(s.port, b.access, "global", &r);
    cr_assert(cookie_cleared(&r), "global logout keeps the cookie: %s",
              hd_test_auth_refresh_cookie(&r) ? hd_test_auth_refresh_cookie(&r) : "(none)");
    hd_http_response_free(&r);
    hd_test_auth_assert_refused(s.port, a.access, "scope=global, session a");
    hd_test_auth_assert_refused(s.port, b.access, "scope=global, the caller's session");
    refresh_fails(s.port, a.refresh, "scope=global, session a");
    refresh_fails(s.port, b.refresh, "scope=global, the caller's session");
    hd_test_auth_assert_me(s.port, stranger.access, stranger.user_id);
    /* logging in again works */
    struct hd_test_auth_tokens fresh;
    hd_test_auth_login(s.port, a.email, HD_TEST_AUTH_PASSWORD, &fresh);
    cr_assert_eq(count_sessions(s.port, fresh.access), 1);
    finish(&s);
}

Test(auth_sessions, logout_local_ends_only_this_session, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, b;
    new_user(s.port, "local", &a);
    hd_test_auth_login(s.port, a.email, HD_TEST_AUTH_PASSWORD, &b);
    struct hd_http_response r;
    logout(s.port, b.access, "local", &r);
    cr_assert(cookie_cleared(&r), "logout keeps the cookie");
    hd_http_response_free(&r);
    hd_test_auth_assert_refused(s.port, b.access, "scope=local, the caller's session");
    refresh_fails(s.port, b.refresh, "scope=local, the caller's session");
    hd_test_auth_assert_me(s.port, a.access, a.user_id);
    cr_assert_eq(count_sessions(s.port, a.access), 1);
    finish(&s);
}

/* ---- sessions list and delete ----------------------------------------------------- */

/* Logs in with a User-Agent of @ua. */
static void login_as(int port, const char *email, const char *ua, struct hd_test_auth_tokens *out)
{
    char *body = credentials(email, HD_TEST_AUTH_PASSWORD);
    char ua_line[128];
    snprintf(ua_line, sizeof(ua_line), "User-Agent: %s", ua);
    const char *headers[] = {"Content-Type: application/json", ua_line, NULL};
    struct hd_http_response r;
    cr_assert_eq(
        hd_test_auth_request(port, "POST", "/api/auth/login", headers, body, strlen(body), &r), 0);
    free(body);
    hd_test_auth_assert_bundle(&r, 200);
    cr_assert_eq(hd_test_auth_tokens_parse(&r, out), 0);
    hd_http_response_free(&r);
}

static json_t *find_session(json_t *list, const char *id)
{
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *s = json_array_get(list, i);
        if (strcmp(json_string_value(json_object_get(s, "id")), id) == 0)
            return s;
    }
    return NULL;
}

Test(auth_sessions, sessions_list_marks_the_current_one, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, phone, stranger;
    new_user(s.port, "list", &a);
    login_as(s.port, a.email, "HeraldPhone/2.0 (test)", &phone);
    new_user(s.port, "stranger", &stranger);

    const struct hd_test_auth_tokens *callers[] = {&a, &phone};
    for (int k = 0; k < 2; k++) {
        struct hd_http_response r;
        cr_assert_eq(hd_test_auth_call(s.port, "GET", "/api/auth/sessions", callers[k]->access, &r),
                     0);
        hd_assert_json_response(&r, 200);
        json_t *j = hd_http_response_json(&r);
        json_t *list = json_object_get(j, "sessions");
        cr_assert_eq(json_array_size(list), 2, "two sessions, not another user's: %s", r.body);
        int current = 0;
        for (size_t i = 0; i < 2; i++) {
            json_t *e = json_array_get(list, i);
            json_t *cur = json_object_get(e, "current");
            cr_assert(json_is_boolean(cur), "current: %s", r.body);
            current += json_is_true(cur);
            json_int_t created = json_integer_value(json_object_get(e, "created_at"));
            json_int_t seen = json_integer_value(json_object_get(e, "last_seen_at"));
            json_int_t expires = json_integer_value(json_object_get(e, "expires_at"));
            cr_assert(created > 0 && seen >= created && expires > seen,
                      "created_at <= last_seen_at < expires_at: %s", r.body);
            const char *ip = json_string_value(json_object_get(e, "ip"));
            cr_assert(ip && strcmp(ip, "127.0.0.1") == 0, "ip: %s", r.body);
            cr_assert(json_object_get(e, "user_agent"), "no user_agent key: %s", r.body);
        }
        cr_assert_eq(current, 1, "exactly one current session: %s", r.body);
        json_t *me = find_session(list, callers[k]->session_id);
        cr_assert(me && json_is_true(json_object_get(me, "current")),
                  "the caller's session is not the current one: %s", r.body);
        json_t *ph = find_session(list, phone.session_id);
        cr_assert(ph, "the phone session is missing: %s", r.body);
        cr_assert_str_eq(json_string_value(json_object_get(ph, "user_agent")),
                         "HeraldPhone/2.0 (test)");
        cr_assert(!strstr(r.body, stranger.session_id), "another user's session is listed");
        cr_assert(!strstr(r.body, a.refresh) && !strstr(r.body, phone.refresh),
                  "a refresh token is listed");
        json_decref(j);
        hd_http_response_free(&r);
    }
    finish(&s);
}

Test(auth_sessions, deleting_a_session, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, b, stranger;
    new_user(s.port, "del", &a);
    hd_test_auth_login(s.port, a.email, HD_TEST_AUTH_PASSWORD, &b);
    new_user(s.port, "stranger", &stranger);
    char target[128];
    struct hd_http_response r;

    /* another user's session: 404, and it lives on */
    snprintf(target, sizeof(target), "/api/auth/sessions/%s", stranger.session_id);
    cr_assert_eq(hd_test_auth_call(s.port, "DELETE", target, a.access, &r), 0);
    hd_assert_error(&r, 404, "not_found");
    hd_http_response_free(&r);
    hd_test_auth_assert_me(s.port, stranger.access, stranger.user_id);

    /* unknown and malformed ids: 404 */
    static const char *const bad[] = {"/api/auth/sessions/00000000-0000-4000-8000-000000000000",
                                      "/api/auth/sessions/nope",
                                      "/api/auth/sessions/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(hd_test_auth_call(s.port, "DELETE", bad[i], a.access, &r), 0);
        hd_assert_error(&r, 404, "not_found");
        hd_http_response_free(&r);
    }

    /* one's own other device: 204, refused at once, refresh dead */
    snprintf(target, sizeof(target), "/api/auth/sessions/%s", b.session_id);
    cr_assert_eq(hd_test_auth_status(s.port, "DELETE", target, a.access), 204);
    hd_test_auth_assert_refused(s.port, b.access, "the deleted session's token");
    refresh_fails(s.port, b.refresh, "the deleted session");
    cr_assert_eq(hd_test_auth_call(s.port, "DELETE", target, a.access, &r), 0);
    hd_assert_error(&r, 404, "not_found");
    hd_http_response_free(&r);
    hd_test_auth_assert_me(s.port, a.access, a.user_id);

    /* one's own current session: 204, and this token is refused at once */
    snprintf(target, sizeof(target), "/api/auth/sessions/%s", a.session_id);
    cr_assert_eq(hd_test_auth_status(s.port, "DELETE", target, a.access), 204);
    hd_test_auth_assert_refused(s.port, a.access, "the token of the session that deleted itself");
    refresh_fails(s.port, a.refresh, "the session that deleted itself");

    /* without a token: 401 */
    cr_assert_eq(hd_test_auth_call(s.port, "DELETE", target, NULL, &r), 0);
    hd_assert_error(&r, 401, "missing_token");
    hd_http_response_free(&r);
    finish(&s);
}

/* ---- the refresh cookie ------------------------------------------------------------ */

/* POST /api/auth/refresh with the cookie @token and the extra header @extra. */
static void cookie_refresh(int port, const char *token, const char *extra,
                           struct hd_http_response *r)
{
    char cookie[128];
    snprintf(cookie, sizeof(cookie), "Cookie: theme=dark; herald_refresh=%s; other=1", token);
    const char *headers[] = {cookie, extra, NULL};
    cr_assert_eq(hd_test_auth_request(port, "POST", "/api/auth/refresh", headers, NULL, 0, r), 0);
}

Test(auth_sessions, refresh_by_cookie_needs_an_allowed_origin_or_a_csrf_header, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"cors\":{\"allowed_origins\":[\"https://app.example\"]}}");
    struct hd_test_auth_tokens a;
    new_user(s.port, "cookie", &a);
    struct hd_http_response r;

    cookie_refresh(s.port, a.refresh, NULL, &r);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);
    cookie_refresh(s.port, a.refresh, "Origin: https://evil.example", &r);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);
    cookie_refresh(s.port, a.refresh, "Origin: https://app.example.evil.example", &r);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);
    cookie_refresh(s.port, a.refresh, "Origin: null", &r);
    hd_assert_error(&r, 401, "invalid_refresh_token");
    hd_http_response_free(&r);

    /* the refused attempts did not spend the token: with the header it works */
    cookie_refresh(s.port, a.refresh, "X-CSRF-Token: 1", &r);
    hd_test_auth_assert_bundle(&r, 200);
    struct hd_test_auth_tokens b;
    cr_assert_eq(hd_test_auth_tokens_parse(&r, &b), 0);
    hd_http_response_free(&r);
    cr_assert_str_eq(b.session_id, a.session_id);
    cr_assert_str_neq(b.refresh, a.refresh);
    hd_test_auth_assert_me(s.port, b.access, a.user_id);

    /* and with an allowed Origin */
    cookie_refresh(s.port, b.refresh, "Origin: https://app.example", &r);
    hd_test_auth_assert_bundle(&r, 200);
    hd_http_response_free(&r);
    finish(&s);
}

/* The attributes of @cookie, as "; "-separated tokens: true when @attr is one. */
static bool has_attr(const char *cookie, const char *attr)
{
    size_t n = strlen(attr);
    for (const char *p = strchr(cookie, ';'); p; p = strchr(p + 1, ';')) {
        const char *q = p + 1;
        while (*q == ' ')
            q++;
        if (strncasecmp(q, attr, n) == 0 && (q[n] == ';' || q[n] == '\0'))
            return true;
    }
    return false;
}

Test(auth_sessions, refresh_cookie_flags_in_a_production_config, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"dev_mode\":false}");
    struct hd_test_auth_tokens a;
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "prodcookie");
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", HD_TEST_AUTH_PASSWORD);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_post(s.port, "/api/auth/register", body, NULL, &r), 0);
    free(body);
    hd_test_auth_assert_bundle(&r, 201);
    cr_assert_eq(hd_test_auth_tokens_parse(&r, &a), 0);
    const char *c = hd_test_auth_refresh_cookie(&r);
    cr_assert(has_attr(c, "HttpOnly"), "no HttpOnly: %s", c);
    cr_assert(has_attr(c, "Secure"), "no Secure in a production config: %s", c);
    cr_assert(has_attr(c, "Path=/api/auth"), "path not limited to the auth routes: %s", c);
    cr_assert(has_attr(c, "SameSite=Lax"), "SameSite is not Lax by default: %s", c);
    cr_assert(has_attr(c, "Max-Age=604800"), "Max-Age is not the session lifetime: %s", c);
    hd_http_response_free(&r);

    cr_assert_eq(hd_test_auth_call(s.port, "POST", "/api/auth/logout", a.access, &r), 0);
    cr_assert_eq(r.status, 204);
    c = hd_test_auth_refresh_cookie(&r);
    cr_assert(c && cookie_cleared(&r) && has_attr(c, "Path=/api/auth") && has_attr(c, "Secure") &&
                  has_attr(c, "HttpOnly"),
              "logout must clear the cookie with the same attributes: %s", c ? c : "(none)");
    hd_http_response_free(&r);
    finish(&s);
}

Test(auth_sessions, secure_cookie_off_only_in_dev_mode, .timeout = 60)
{
    /* dev_mode (the harness default) keeps Secure unless told otherwise */
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a;
    new_user(s.port, "devcookie", &a);
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_refresh_raw(s.port, a.refresh, &r), 0);
    hd_test_auth_assert_bundle(&r, 200);
    cr_assert(has_attr(hd_test_auth_refresh_cookie(&r), "Secure"),
              "dev_mode alone drops Secure: %s", hd_test_auth_refresh_cookie(&r));
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);

    hd_test_server_start(&s, "{\"cookie\":{\"secure\":false}}");
    new_user(s.port, "devcookie2", &a);
    cr_assert_eq(hd_test_auth_refresh_raw(s.port, a.refresh, &r), 0);
    hd_test_auth_assert_bundle(&r, 200);
    cr_assert(!has_attr(hd_test_auth_refresh_cookie(&r), "Secure"), "%s",
              hd_test_auth_refresh_cookie(&r));
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);

    /* and a production config with cookie.secure false does not start */
    char dir[512], path[600];
    hd_test_make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/herald.json", dir);
    json_t *cfg = hd_test_config("{\"dev_mode\":false,\"cookie\":{\"secure\":false}}");
    hd_test_write_json(path, cfg);
    json_decref(cfg);
    const char *args[] = {"serve", "--config", path, "--listen", "127.0.0.1:0", NULL};
    char *out = NULL;
    int rc = hd_test_run_herald(args, dir, 15000, &out);
    cr_assert_neq(rc, 0, "serve started with cookie.secure false outside dev_mode: %s", out);
    cr_assert(strstr(out, "cookie.secure"), "the refusal does not name cookie.secure: %s", out);
    cr_assert(!strstr(out, "\"listening\""), "it listened: %s", out);
    free(out);
    hd_test_remove_dir(dir);
}
