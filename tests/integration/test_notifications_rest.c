/* Notifications over REST on a real herald: who may publish (an admin's
 * access token, an API key with the publish scope as Bearer or X-API-Key;
 * not a member, not a revoked key) and only inside their organization;
 * validation of every field; the history (own + organization-wide, newest
 * first, cursor pagination, unread filter), read and read-all; the publish
 * rate limit. Runs on SQLite, and on Postgres as the *_postgres variant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

#define KEY_CAP 64

static void finish(struct hd_test_server *s)
{
    hd_assert_healthy(s->port);
    cr_assert_eq(hd_test_server_stop(s), 0, "herald did not exit 0");
}

/* ---- requests ------------------------------------------------------------------ */

/* @method @target with @json (NULL: no body) and extra header lines @h1, @h2
 * (NULL: none); asserts an answer came. */
static struct hd_http_response send_req(int port, const char *method, const char *target,
                                        const char *json, const char *h1, const char *h2)
{
    const char *headers[4] = {NULL};
    int n = 0;
    if (json)
        headers[n++] = "Content-Type: application/json";
    if (h1)
        headers[n++] = h1;
    if (h2)
        headers[n++] = h2;
    struct hd_http_response r;
    int rc = hd_test_auth_request(port, method, target, headers, json, json ? strlen(json) : 0, &r);
    cr_assert_eq(rc, 0, "%s %s: no answer (%d)", method, target, rc);
    return r;
}

static char *bearer(const char *token)
{
    char *h = NULL;
    cr_assert(asprintf(&h, "Authorization: Bearer %s", token) > 0);
    return h;
}

/* POST /api/notifications with @json as the holder of @token (an access
 * token or an "hk_" key, as Bearer). */
static struct hd_http_response publish(int port, const char *token, const char *json)
{
    char *h = token ? bearer(token) : NULL;
    struct hd_http_response r = send_req(port, "POST", "/api/notifications", json, h, NULL);
    free(h);
    return r;
}

/* Same with the key in X-API-Key. */
static struct hd_http_response publish_x_api_key(int port, const char *key, const char *json)
{
    char h[128];
    snprintf(h, sizeof(h), "X-API-Key: %s", key);
    return send_req(port, "POST", "/api/notifications", json, h, NULL);
}

/* @method @target as @access, no body. */
static struct hd_http_response call(int port, const char *method, const char *target,
                                    const char *access)
{
    char *h = access ? bearer(access) : NULL;
    struct hd_http_response r = send_req(port, method, target, NULL, h, NULL);
    free(h);
    return r;
}

/* The JSON body of @r, asserting status @status and the JSON contract. */
static json_t *json_of(struct hd_http_response *r, int status)
{
    hd_assert_json_response(r, status);
    json_t *j = hd_http_response_json(r);
    hd_http_response_free(r);
    return j;
}

/* Asserts @r is the error @status / @code naming @field (NULL: no field check); frees @r. */
static void expect_error(struct hd_http_response *r, int status, const char *code,
                         const char *field, const char *what)
{
    cr_assert_eq(r->status, status, "%s: status %d, want %d: %s", what, r->status, status, r->body);
    hd_assert_error(r, status, code);
    if (field) {
        json_t *j = hd_http_response_json(r);
        const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "field"));
        cr_assert(got && strcmp(got, field) == 0, "%s: error.field '%s', want '%s': %s", what,
                  got ? got : "(none)", field, r->body);
        json_decref(j);
    }
    hd_http_response_free(r);
}

static void expect_status(struct hd_http_response *r, int status, const char *what)
{
    cr_assert_eq(r->status, status, "%s: status %d, want %d: %s", what, r->status, status, r->body);
    hd_http_response_free(r);
}

/* ---- people and keys ------------------------------------------------------------- */

/* A new API key of @admin's organization into @key; its id into @id. */
static void new_key(int port, const struct hd_test_auth_tokens *admin, char key[KEY_CAP],
                    char id[HD_TEST_AUTH_ID_CAP])
{
    char *h = bearer(admin->access);
    struct hd_http_response r =
        send_req(port, "POST", "/api/keys", "{\"name\":\"publisher\"}", h, NULL);
    free(h);
    json_t *j = json_of(&r, 201);
    snprintf(key, KEY_CAP, "%s", json_string_value(json_object_get(j, "key")));
    snprintf(id, HD_TEST_AUTH_ID_CAP, "%s", json_string_value(json_object_get(j, "id")));
    cr_assert_eq(strncmp(key, "hk_", 3), 0, "key %s", key);
    json_decref(j);
}

/* ---- notifications ----------------------------------------------------------------- */

/* Publishes {"user_id"|"organization_id": @target, "type":"test", "title":
 * @title} as @token; asserts 201 and returns the id. @to_org: @target is an
 * organization. */
static long long publish_ok(int port, const char *token, bool to_org, const char *target,
                            const char *title)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"%s\":\"%s\",\"type\":\"test\",\"title\":\"%s\"}",
             to_org ? "organization_id" : "user_id", target, title);
    struct hd_http_response r = publish(port, token, body);
    json_t *j = json_of(&r, 201);
    long long id = (long long)json_integer_value(json_object_get(j, "id"));
    cr_assert_gt(id, 0, "publish: no id");
    json_decref(j);
    return id;
}

/* GET /api/notifications@query as @access: 200, the body (caller decrefs). */
static json_t *list(int port, const char *access, const char *query)
{
    char target[256];
    snprintf(target, sizeof(target), "/api/notifications%s", query ? query : "");
    struct hd_http_response r = call(port, "GET", target, access);
    json_t *j = json_of(&r, 200);
    cr_assert(json_is_array(json_object_get(j, "notifications")), "no notifications array");
    cr_assert(json_object_get(j, "next_cursor") != NULL, "no next_cursor member");
    return j;
}

/* The ids of a list answer, in order, into @ids (at most @cap); returns how many. */
static size_t ids_of(json_t *page, long long *ids, size_t cap)
{
    json_t *arr = json_object_get(page, "notifications"), *item;
    size_t i, n = 0;
    json_array_foreach(arr, i, item)
    {
        cr_assert_lt(n, cap, "more notifications than expected");
        ids[n++] = (long long)json_integer_value(json_object_get(item, "id"));
    }
    return n;
}

static void expect_ids(json_t *page, const long long *want, size_t n, const char *what)
{
    long long got[64];
    size_t k = ids_of(page, got, 64);
    char text[512] = "";
    for (size_t i = 0, len = 0; i < k && len < sizeof(text) - 24; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, " %lld", got[i]);
    cr_assert_eq(k, n, "%s: %zu notifications (%s), want %zu", what, k, text, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s: position %zu is %lld, want %lld (%s)", what, i, got[i],
                     want[i], text);
}

static json_t *item_by_id(json_t *page, long long id)
{
    json_t *arr = json_object_get(page, "notifications"), *item;
    size_t i;
    json_array_foreach(arr, i, item)
    {
        if (json_integer_value(json_object_get(item, "id")) == id)
            return item;
    }
    cr_assert_fail("notification %lld is not in the page", id);
    return NULL;
}

static void mark_read(int port, const char *access, long long id, int status)
{
    char target[128];
    snprintf(target, sizeof(target), "/api/notifications/%lld/read", id);
    struct hd_http_response r = call(port, "POST", target, access);
    if (status == 204) {
        cr_assert_eq(r.status, 204, "read %lld: status %d: %s", id, r.status, r.body);
        cr_assert_eq(r.body_len, 0);
        hd_http_response_free(&r);
    } else {
        expect_error(&r, status, "not_found", NULL, target);
    }
}

/* ---- who may publish ---------------------------------------------------------------- */

Test(notifications_rest, member_cannot_publish, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens admin, member;
    hd_test_auth_new_admin(s.port, "pub-admin", &admin);
    hd_test_auth_new_member(s.port, &admin, "pub-member", &member);
    char body[256];
    snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
             member.user_id);
    struct hd_http_response r = publish(s.port, member.access, body);
    expect_error(&r, 403, "forbidden", NULL, "a member publishes");
    snprintf(body, sizeof(body), "{\"organization_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
             member.org_id);
    r = publish(s.port, member.access, body);
    expect_error(&r, 403, "forbidden", NULL, "a member publishes to the organization");
    r = publish(s.port, NULL, body);
    expect_error(&r, 401, "missing_token", NULL, "no credentials");
    r = publish(s.port, "not.a.jwt", body);
    expect_error(&r, 401, "invalid_token", NULL, "a bad token");
    /* nothing was stored */
    json_t *page = list(s.port, member.access, NULL);
    expect_ids(page, NULL, 0, "member's list");
    json_decref(page);
    finish(&s);
}

Test(notifications_rest, admin_publishes, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens admin, member;
    hd_test_auth_new_admin(s.port, "pub-admin", &admin);
    hd_test_auth_new_member(s.port, &admin, "pub-member", &member);
    char body[512];
    snprintf(
        body, sizeof(body),
        "{\"user_id\":\"%s\",\"type\":\"invoice.paid\",\"title\":\"Paid \\u2713\","
        "\"body\":\"Invoice #42 \\\"was\\\" paid\",\"data\":{\"invoice\":42,\"tags\":[\"a\"]}}",
        member.user_id);
    int64_t before = 0;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        before = (int64_t)ts.tv_sec * 1000 - 60000;
    }
    struct hd_http_response r = publish(s.port, admin.access, body);
    json_t *n = json_of(&r, 201);
    long long id = (long long)json_integer_value(json_object_get(n, "id"));
    cr_assert_gt(id, 0);
    cr_assert_str_eq(json_string_value(json_object_get(n, "organization_id")), admin.org_id);
    cr_assert_str_eq(json_string_value(json_object_get(n, "user_id")), member.user_id);
    cr_assert_str_eq(json_string_value(json_object_get(n, "type")), "invoice.paid");
    cr_assert_str_eq(json_string_value(json_object_get(n, "title")), "Paid \xe2\x9c\x93");
    cr_assert_str_eq(json_string_value(json_object_get(n, "body")), "Invoice #42 \"was\" paid");
    json_t *data = json_object_get(n, "data");
    cr_assert(json_is_object(data) && json_integer_value(json_object_get(data, "invoice")) == 42,
              "data is not the object sent");
    cr_assert(json_integer_value(json_object_get(n, "created_at")) > before);
    cr_assert_null(json_object_get(n, "read"), "a publish answer carries a read flag");
    json_decref(n);

    /* organization-wide, without body or data */
    snprintf(body, sizeof(body), "{\"organization_id\":\"%s\",\"type\":\"all\",\"title\":\"hi\"}",
             admin.org_id);
    r = publish(s.port, admin.access, body);
    n = json_of(&r, 201);
    long long wide = (long long)json_integer_value(json_object_get(n, "id"));
    cr_assert_gt(wide, id, "ids must increase");
    cr_assert(json_is_null(json_object_get(n, "user_id")));
    cr_assert(json_is_null(json_object_get(n, "data")));
    cr_assert_str_eq(json_string_value(json_object_get(n, "body")), "");
    json_decref(n);

    /* the member sees both, the same JSON plus "read" */
    json_t *page = list(s.port, member.access, NULL);
    long long want[] = {wide, id};
    expect_ids(page, want, 2, "member's list");
    json_t *item = item_by_id(page, id);
    cr_assert(json_is_false(json_object_get(item, "read")));
    cr_assert_str_eq(json_string_value(json_object_get(item, "type")), "invoice.paid");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(item, "data"), "invoice")), 42);
    json_decref(page);
    finish(&s);
}

Test(notifications_rest, api_key_publishes_both_header_forms, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens admin, member;
    hd_test_auth_new_admin(s.port, "key-admin", &admin);
    hd_test_auth_new_member(s.port, &admin, "key-member", &member);
    char key[KEY_CAP], key_id[HD_TEST_AUTH_ID_CAP];
    new_key(s.port, &admin, key, key_id);

    long long a = publish_ok(s.port, key, false, member.user_id, "by bearer key");
    char body[256];
    snprintf(body, sizeof(body), "{\"organization_id\":\"%s\",\"type\":\"k\",\"title\":\"by x\"}",
             admin.org_id);
    struct hd_http_response r = publish_x_api_key(s.port, key, body);
    json_t *n = json_of(&r, 201);
    long long b = (long long)json_integer_value(json_object_get(n, "id"));
    cr_assert_gt(b, a);
    cr_assert_str_eq(json_string_value(json_object_get(n, "organization_id")), admin.org_id);
    json_decref(n);

    json_t *page = list(s.port, member.access, NULL);
    long long want[] = {b, a};
    expect_ids(page, want, 2, "member's list");
    json_decref(page);
    /* a key is no access token for the other routes */
    r = call(s.port, "GET", "/api/notifications", key);
    expect_error(&r, 401, "invalid_token", NULL, "a key lists");
    finish(&s);
}

Test(notifications_rest, revoked_or_unknown_key_is_refused, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens admin;
    hd_test_auth_new_admin(s.port, "rev-admin", &admin);
    char key[KEY_CAP], key_id[HD_TEST_AUTH_ID_CAP], body[256];
    new_key(s.port, &admin, key, key_id);
    snprintf(body, sizeof(body), "{\"organization_id\":\"%s\",\"type\":\"k\",\"title\":\"x\"}",
             admin.org_id);
    struct hd_http_response r = publish(s.port, key, body);
    expect_status(&r, 201, "before the revoke");

    char target[128];
    snprintf(target, sizeof(target), "/api/keys/%s", key_id);
    r = call(s.port, "DELETE", target, admin.access);
    expect_status(&r, 204, "revoke");
    r = publish(s.port, key, body);
    expect_error(&r, 401, "invalid_api_key", NULL, "a revoked key (Bearer)");
    r = publish_x_api_key(s.port, key, body);
    expect_error(&r, 401, "invalid_api_key", NULL, "a revoked key (X-API-Key)");

    /* unknown, malformed, both credentials at once */
    char unknown[KEY_CAP];
    snprintf(unknown, sizeof(unknown), "%s", key);
    unknown[10] = unknown[10] == 'A' ? 'B' : 'A';
    r = publish(s.port, unknown, body);
    expect_error(&r, 401, "invalid_api_key", NULL, "an unknown key");
    r = publish_x_api_key(s.port, "hk_short", body);
    expect_error(&r, 401, "invalid_api_key", NULL, "a short key");
    char odd[KEY_CAP] = "hk_";
    memset(odd + 3, '.', 43); /* the right length, not base64url */
    odd[46] = '\0';
    r = publish_x_api_key(s.port, odd, body);
    expect_error(&r, 401, "invalid_api_key", NULL, "a key with bad characters");
    r = publish(s.port, odd, body);
    expect_error(&r, 401, "invalid_api_key", NULL, "a Bearer key with bad characters");
    r = publish_x_api_key(s.port, "", body);
    expect_error(&r, 401, "invalid_api_key", NULL, "an empty X-API-Key");
    char key2[KEY_CAP], id2[HD_TEST_AUTH_ID_CAP], h1[128];
    new_key(s.port, &admin, key2, id2);
    snprintf(h1, sizeof(h1), "X-API-Key: %s", key2);
    char *h2 = bearer(admin.access);
    r = send_req(s.port, "POST", "/api/notifications", body, h1, h2);
    free(h2);
    expect_error(&r, 401, "invalid_api_key", NULL, "a key and a token at once");

    json_t *page = list(s.port, admin.access, NULL);
    cr_assert_eq(json_array_size(json_object_get(page, "notifications")), 1,
                 "a refused publish was stored");
    json_decref(page);
    finish(&s);
}

Test(notifications_rest, only_inside_the_own_organization, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, b, b_member;
    hd_test_auth_new_admin(s.port, "org-a", &a);
    hd_test_auth_new_admin(s.port, "org-b", &b);
    hd_test_auth_new_member(s.port, &b, "org-b-member", &b_member);
    char key[KEY_CAP], key_id[HD_TEST_AUTH_ID_CAP], body[256];
    new_key(s.port, &a, key, key_id);

    const char *creds[] = {key, a.access};
    for (int i = 0; i < 2; i++) {
        const char *who = i == 0 ? "A's key" : "A's admin";
        snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
                 b_member.user_id);
        struct hd_http_response r = publish(s.port, creds[i], body);
        expect_error(&r, 404, "not_found", NULL, who);
        snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
                 b.user_id);
        r = publish(s.port, creds[i], body);
        expect_error(&r, 404, "not_found", NULL, who);
        snprintf(body, sizeof(body), "{\"organization_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
                 b.org_id);
        r = publish(s.port, creds[i], body);
        expect_error(&r, 404, "not_found", NULL, who);
        /* an id nobody has: answered the same */
        r = publish(s.port, creds[i],
                    "{\"user_id\":\"00000000-0000-4000-8000-000000000000\",\"type\":\"t\","
                    "\"title\":\"x\"}");
        expect_error(&r, 404, "not_found", NULL, who);
    }
    json_t *page = list(s.port, b_member.access, NULL);
    expect_ids(page, NULL, 0, "B's member after A's attempts");
    json_decref(page);
    page = list(s.port, b.access, NULL);
    expect_ids(page, NULL, 0, "B's admin after A's attempts");
    json_decref(page);
    /* and inside A it works, with the id in upper case too */
    char upper[HD_TEST_AUTH_ID_CAP];
    snprintf(upper, sizeof(upper), "%s", a.user_id);
    for (char *c = upper; *c; c++)
        *c = (char)(*c >= 'a' && *c <= 'f' ? *c - 'a' + 'A' : *c);
    long long id = publish_ok(s.port, key, false, upper, "upper");
    page = list(s.port, a.access, NULL);
    long long want[] = {id};
    expect_ids(page, want, 1, "A's list");
    json_decref(page);
    finish(&s);
}

/* ---- validation ------------------------------------------------------------------- */

/* Publishes @json (with "%s" replaced by @id) as @token: 400
 * validation_failed naming @field. */
static void expect_invalid(int port, const char *token, const char *fmt, const char *id,
                           const char *field)
{
    char body[16384];
    snprintf(body, sizeof(body), fmt, id);
    struct hd_http_response r = publish(port, token, body);
    char what[200];
    snprintf(what, sizeof(what), "%.150s", body);
    expect_error(&r, 400, "validation_failed", field, what);
}

Test(notifications_rest, validation_errors_name_their_field, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a;
    hd_test_auth_new_admin(s.port, "valid", &a);
    const char *u = a.user_id;
    int p = s.port;
    const char *tok = a.access;
    /* type */
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"title\":\"x\"}", u, "type");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"\",\"title\":\"x\"}", u, "type");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"a b\",\"title\":\"x\"}", u, "type");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"caf\\u00e9\",\"title\":\"x\"}", u,
                   "type");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":7,\"title\":\"x\"}", u, "type");
    expect_invalid(p, tok,
                   "{\"user_id\":\"%s\",\"type\":\"" /* 65 characters */
                   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                   "\"title\":\"x\"}",
                   u, "type");
    /* title */
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\"}", u, "title");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"\"}", u, "title");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":[\"x\"]}", u, "title");
    char fmt[16384], big[8200];
    memset(big, 'x', 201);
    big[201] = '\0';
    snprintf(fmt, sizeof(fmt), "{\"user_id\":\"%%s\",\"type\":\"t\",\"title\":\"%s\"}", big);
    expect_invalid(p, tok, fmt, u, "title");
    /* body */
    memset(big, 'x', 4001);
    big[4001] = '\0';
    snprintf(fmt, sizeof(fmt),
             "{\"user_id\":\"%%s\",\"type\":\"t\",\"title\":\"x\",\"body\":\"%s\"}", big);
    expect_invalid(p, tok, fmt, u, "body");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\",\"body\":{}}", u,
                   "body");
    /* data: not an object, too big (default notifications.max_data_bytes 8192) */
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\",\"data\":[1,2]}", u,
                   "data");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\",\"data\":\"{}\"}", u,
                   "data");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\",\"data\":42}", u,
                   "data");
    memset(big, 'y', 8190);
    big[8190] = '\0';
    snprintf(fmt, sizeof(fmt),
             "{\"user_id\":\"%%s\",\"type\":\"t\",\"title\":\"x\",\"data\":{\"k\":\"%s\"}}", big);
    expect_invalid(p, tok, fmt, u, "data");
    /* targets: neither, both, malformed */
    expect_invalid(p, tok, "{\"type\":\"t\",\"title\":\"x\"%s}", "", "user_id");
    expect_invalid(p, tok, "{\"user_id\":null,\"type\":\"t\",\"title\":\"x\"%s}", "", "user_id");
    char both[256];
    snprintf(both, sizeof(both),
             "{\"user_id\":\"%%s\",\"organization_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
             a.org_id);
    expect_invalid(p, tok, both, u, "organization_id");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}", "not-a-uuid",
                   "user_id");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
                   "0000000-00000-4000-8000-000000000000", "user_id");
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
                   "zzzzzzzz-0000-4000-8000-000000000000", "user_id");
    expect_invalid(p, tok, "{\"user_id\":%s,\"type\":\"t\",\"title\":\"x\"}", "42", "user_id");
    expect_invalid(p, tok, "{\"organization_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}", "org",
                   "organization_id");
    /* unknown members */
    expect_invalid(p, tok, "{\"user_id\":\"%s\",\"type\":\"t\",\"titel\":\"x\"}", u, "titel");
    /* not a JSON object at all */
    const char *bad[] = {"[]", "\"x\"", "{", "{\"user_id\":\"a\",\"user_id\":\"b\"}",
                         "{\"title\":\"\\u0000\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct hd_http_response r = publish(p, tok, bad[i]);
        expect_error(&r, 400, "validation_failed", NULL, bad[i]);
    }
    /* deep nesting inside data: refused or bounded, never a crash */
    char *deep = malloc(70000);
    cr_assert_not_null(deep);
    int n =
        snprintf(deep, 70000, "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\",\"data\":", u);
    for (int i = 0; i < 30000; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    struct hd_http_response r = publish(p, tok, deep);
    expect_error(&r, 400, "validation_failed", NULL, "deep nesting");
    free(deep);
    /* the right size of data is fine: 8192 bytes exactly */
    memset(big, 'z', 8184);
    big[8184] = '\0'; /* {"k":"…"} adds 8 bytes */
    snprintf(fmt, sizeof(fmt),
             "{\"user_id\":\"%s\",\"type\":\"t\",\"title\":\"x\",\"data\":{\"k\":\"%s\"}}", u, big);
    r = publish(p, tok, fmt);
    expect_status(&r, 201, "data of exactly max_data_bytes");
    r = send_req(p, "POST", "/api/notifications", NULL, NULL, NULL);
    expect_error(&r, 401, "missing_token", NULL, "no body, no token");

    json_t *page = list(p, tok, NULL);
    cr_assert_eq(json_array_size(json_object_get(page, "notifications")), 1,
                 "an invalid publish was stored");
    json_decref(page);
    finish(&s);
}

/* ---- history ------------------------------------------------------------------------- */

Test(notifications_rest, list_shows_own_and_org_wide_newest_first, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, m, b;
    hd_test_auth_new_admin(s.port, "list-a", &a);
    hd_test_auth_new_member(s.port, &a, "list-m", &m);
    hd_test_auth_new_admin(s.port, "list-b", &b);
    long long n1 = publish_ok(s.port, a.access, false, m.user_id, "to m");
    long long n2 = publish_ok(s.port, a.access, true, a.org_id, "to A");
    long long n3 = publish_ok(s.port, a.access, false, a.user_id, "to a");
    long long n4 = publish_ok(s.port, b.access, true, b.org_id, "to B");
    long long n5 = publish_ok(s.port, b.access, false, b.user_id, "to b");
    long long n6 = publish_ok(s.port, a.access, false, m.user_id, "to m again");

    json_t *page = list(s.port, m.access, NULL);
    long long want_m[] = {n6, n2, n1};
    expect_ids(page, want_m, 3, "m's list");
    cr_assert(json_is_null(json_object_get(page, "next_cursor")), "a short page has a cursor");
    cr_assert_str_eq(json_string_value(json_object_get(item_by_id(page, n6), "title")),
                     "to m again");
    cr_assert(json_is_null(json_object_get(item_by_id(page, n2), "user_id")));
    json_decref(page);
    page = list(s.port, a.access, NULL);
    long long want_a[] = {n3, n2};
    expect_ids(page, want_a, 2, "a's list (not m's private ones)");
    json_decref(page);
    page = list(s.port, b.access, NULL);
    long long want_b[] = {n5, n4};
    expect_ids(page, want_b, 2, "b's list (nothing of A)");
    json_decref(page);

    struct hd_http_response r = call(s.port, "GET", "/api/notifications", NULL);
    expect_error(&r, 401, "missing_token", NULL, "list without a token");
    finish(&s);
}

Test(notifications_rest, pagination_with_next_cursor, .timeout = 180)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, m;
    hd_test_auth_new_admin(s.port, "page-a", &a);
    hd_test_auth_new_member(s.port, &a, "page-m", &m);
    enum { VISIBLE = 11, LIMIT = 4 };
    long long visible[VISIBLE];
    for (int i = 0; i < VISIBLE; i++) {
        if (i % 3 == 1)
            publish_ok(s.port, a.access, false, a.user_id, "not m's");
        visible[i] =
            publish_ok(s.port, a.access, i % 2 == 0, i % 2 == 0 ? a.org_id : m.user_id, "for m");
    }
    long long seen[VISIBLE + 4];
    size_t n_seen = 0;
    char query[96];
    long long cursor = 0;
    int pages = 0;
    for (;;) {
        if (cursor)
            snprintf(query, sizeof(query), "?limit=%d&before=%lld", LIMIT, cursor);
        else
            snprintf(query, sizeof(query), "?limit=%d", LIMIT);
        json_t *page = list(s.port, m.access, query);
        pages++;
        cr_assert_leq(pages, 5, "too many pages");
        long long ids[LIMIT + 1];
        size_t k = ids_of(page, ids, LIMIT + 1);
        cr_assert_leq(k, LIMIT);
        for (size_t i = 0; i < k; i++) {
            cr_assert_lt(n_seen, VISIBLE + 4);
            seen[n_seen++] = ids[i];
        }
        json_t *next = json_object_get(page, "next_cursor");
        if (k == LIMIT) {
            cr_assert(json_is_integer(next), "a full page without next_cursor");
            cr_assert_eq(json_integer_value(next), ids[k - 1], "next_cursor is not the last id");
            cursor = ids[k - 1];
            json_decref(page);
        } else {
            cr_assert(json_is_null(next), "a short page with a next_cursor");
            json_decref(page);
            break;
        }
    }
    cr_assert_eq(pages, 3);
    cr_assert_eq(n_seen, VISIBLE, "the pages held %zu notifications, want %d", n_seen, VISIBLE);
    for (size_t i = 0; i < VISIBLE; i++)
        cr_assert_eq(seen[i], visible[VISIBLE - 1 - i], "position %zu", i);

    /* default limit 50 holds all of them */
    json_t *page = list(s.port, m.access, NULL);
    cr_assert_eq(json_array_size(json_object_get(page, "notifications")), VISIBLE);
    json_decref(page);
    /* bad query values */
    const char *bad[][2] = {{"?limit=0", "limit"},     {"?limit=101", "limit"},
                            {"?limit=abc", "limit"},   {"?limit=-1", "limit"},
                            {"?limit=", "limit"},      {"?limit=5x", "limit"},
                            {"?before=0", "before"},   {"?before=-3", "before"},
                            {"?before=x", "before"},   {"?before=99999999999999999999", "before"},
                            {"?unread=yes", "unread"}, {"?unread=", "unread"},
                            {"?limit=%zz", "limit"},   {"?before=1%00", "before"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char target[128];
        snprintf(target, sizeof(target), "/api/notifications%s", bad[i][0]);
        struct hd_http_response r = call(s.port, "GET", target, m.access);
        expect_error(&r, 400, "validation_failed", bad[i][1], target);
    }
    finish(&s);
}

Test(notifications_rest, unread_filter_read_and_read_all, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, m;
    hd_test_auth_new_admin(s.port, "read-a", &a);
    hd_test_auth_new_member(s.port, &a, "read-m", &m);
    long long n1 = publish_ok(s.port, a.access, false, m.user_id, "1");
    long long n2 = publish_ok(s.port, a.access, true, a.org_id, "2");
    long long n3 = publish_ok(s.port, a.access, false, m.user_id, "3");

    mark_read(s.port, m.access, n1, 204);
    mark_read(s.port, m.access, n2, 204);
    mark_read(s.port, m.access, n1, 204); /* twice is fine */
    json_t *page = list(s.port, m.access, NULL);
    long long all[] = {n3, n2, n1};
    expect_ids(page, all, 3, "m's list");
    cr_assert(json_is_true(json_object_get(item_by_id(page, n1), "read")));
    cr_assert(json_is_true(json_object_get(item_by_id(page, n2), "read")));
    cr_assert(json_is_false(json_object_get(item_by_id(page, n3), "read")));
    json_decref(page);
    page = list(s.port, m.access, "?unread=true");
    long long unread[] = {n3};
    expect_ids(page, unread, 1, "m's unread");
    json_decref(page);
    page = list(s.port, m.access, "?unread=false");
    expect_ids(page, all, 3, "unread=false");
    json_decref(page);

    /* the read flag is per user: the admin still has the org-wide one unread */
    page = list(s.port, a.access, "?unread=true");
    long long a_unread[] = {n2};
    expect_ids(page, a_unread, 1, "a's unread");
    json_decref(page);

    struct hd_http_response r = call(s.port, "POST", "/api/notifications/read-all", m.access);
    expect_status(&r, 204, "read-all");
    page = list(s.port, m.access, "?unread=true");
    expect_ids(page, NULL, 0, "m's unread after read-all");
    json_decref(page);
    page = list(s.port, a.access, "?unread=true");
    expect_ids(page, a_unread, 1, "a's unread after m's read-all");
    json_decref(page);
    r = call(s.port, "POST", "/api/notifications/read-all", a.access);
    expect_status(&r, 204, "a's read-all");
    r = call(s.port, "POST", "/api/notifications/read-all", a.access);
    expect_status(&r, 204, "a's read-all again");
    page = list(s.port, a.access, "?unread=true");
    expect_ids(page, NULL, 0, "a's unread after read-all");
    json_decref(page);
    r = call(s.port, "POST", "/api/notifications/read-all", NULL);
    expect_error(&r, 401, "missing_token", NULL, "read-all without a token");
    finish(&s);
}

Test(notifications_rest, read_of_an_invisible_id_is_not_found, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_test_auth_tokens a, m, b;
    hd_test_auth_new_admin(s.port, "nf-a", &a);
    hd_test_auth_new_member(s.port, &a, "nf-m", &m);
    hd_test_auth_new_admin(s.port, "nf-b", &b);
    long long of_b = publish_ok(s.port, b.access, true, b.org_id, "B's");
    long long of_b_user = publish_ok(s.port, b.access, false, b.user_id, "b's");
    long long of_a = publish_ok(s.port, a.access, false, a.user_id, "a's own");
    mark_read(s.port, m.access, of_b, 404);
    mark_read(s.port, m.access, of_b_user, 404);
    mark_read(s.port, m.access, of_a, 404); /* another user's private one */
    mark_read(s.port, m.access, of_a + 1000, 404);
    const char *bad[] = {"abc",
                         "0",
                         "-1",
                         "1.5",
                         "99999999999999999999",
                         "%31",
                         "1e3",
                         "00000000-0000-4000-8000-000000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char target[128];
        snprintf(target, sizeof(target), "/api/notifications/%s/read", bad[i]);
        struct hd_http_response r = call(s.port, "POST", target, m.access);
        expect_error(&r, 404, "not_found", NULL, target);
    }
    /* nothing changed for the owners */
    json_t *page = list(s.port, b.access, "?unread=true");
    long long b_unread[] = {of_b_user, of_b};
    expect_ids(page, b_unread, 2, "b's unread");
    json_decref(page);
    page = list(s.port, a.access, "?unread=true");
    long long a_unread[] = {of_a};
    expect_ids(page, a_unread, 1, "a's unread");
    json_decref(page);
    char target[96];
    snprintf(target, sizeof(target), "/api/notifications/%lld/read", of_a);
    struct hd_http_response r = call(s.port, "POST", target, NULL);
    expect_error(&r, 401, "missing_token", NULL, "read without a token");
    finish(&s);
}

/* ---- rate limit ------------------------------------------------------------------------ */

Test(notifications_rest, publish_rate_limit_answers_429, .timeout = 120)
{
    struct hd_test_server s;
    /* "6/min burst 1": two at once, then one every 10 s */
    hd_test_server_start(&s, "{\"ratelimit\":{\"enabled\":true,\"publish\":\"6/min burst 1\"}}");
    struct hd_test_auth_tokens a;
    hd_test_auth_new_admin(s.port, "rl-a", &a);
    char key[KEY_CAP], key_id[HD_TEST_AUTH_ID_CAP], key2[KEY_CAP], id2[HD_TEST_AUTH_ID_CAP];
    new_key(s.port, &a, key, key_id);
    new_key(s.port, &a, key2, id2);
    char body[256];
    snprintf(body, sizeof(body), "{\"organization_id\":\"%s\",\"type\":\"t\",\"title\":\"x\"}",
             a.org_id);
    for (int i = 0; i < 2; i++) {
        struct hd_http_response r = publish(s.port, key, body);
        cr_assert_eq(r.status, 201, "publish %d: %d %s", i, r.status, r.body);
        cr_assert_not_null(hd_http_header(&r, "RateLimit"), "no RateLimit field");
        hd_http_response_free(&r);
    }
    struct hd_http_response r = publish(s.port, key, body);
    cr_assert_eq(r.status, 429, "third publish: %d %s", r.status, r.body);
    const char *retry = hd_http_header(&r, "Retry-After");
    cr_assert(retry && atoi(retry) >= 1, "Retry-After '%s'", retry ? retry : "(none)");
    expect_error(&r, 429, "rate_limited", NULL, "third publish");
    /* the budget is per key: another key, and the admin, still publish */
    r = publish_x_api_key(s.port, key2, body);
    expect_status(&r, 201, "another key");
    r = publish(s.port, a.access, body);
    expect_status(&r, 201, "the admin");
    r = publish(s.port, a.access, body);
    expect_status(&r, 201, "the admin again");
    r = publish(s.port, a.access, body);
    expect_error(&r, 429, "rate_limited", NULL, "the admin's third");
    /* a limited publish was not stored */
    json_t *page = list(s.port, a.access, NULL);
    cr_assert_eq(json_array_size(json_object_get(page, "notifications")), 5);
    json_decref(page);
    finish(&s);
}

/* ---- retention ------------------------------------------------------------------ */

/* Moves notification @id's created_at @days into the past, straight in the
 * server's SQLite file (the test cannot wait days). */
static void expect_backdated(const struct hd_test_server *s, const char *db, long long id, int days)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", s->dir, db);
    sqlite3 *h = NULL;
    int rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL);
    cr_assert_eq(rc, SQLITE_OK, "open %s: %s", path, h ? sqlite3_errmsg(h) : "no memory");
    sqlite3_busy_timeout(h, 5000);
    char sql[160];
    snprintf(sql, sizeof(sql),
             "UPDATE notifications SET created_at = created_at - %lld WHERE id = %lld",
             (long long)days * 86400 * 1000, id);
    char *err = NULL;
    rc = sqlite3_exec(h, sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "?");
    cr_assert_eq(sqlite3_changes(h), 1, "%s changed nothing", sql);
    sqlite3_close(h);
}

Test(notifications_rest, the_retention_job_deletes_only_old_notifications, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"store\":{\"sqlite_path\":\"var/retention.db\"},"
                             "\"notifications\":{\"retention_days\":1}}");
    struct hd_test_auth_tokens a;
    hd_test_auth_new_admin(s.port, "retention", &a);
    long long old_id = publish_ok(s.port, a.access, false, a.user_id, "old");
    long long new_id = publish_ok(s.port, a.access, false, a.user_id, "new");
    expect_backdated(&s, "var/retention.db", old_id, 2);
    /* the job runs a few seconds after start, then hourly */
    uint64_t until = hd_test_now_ms() + 30000;
    long long ids[8];
    size_t n = 0;
    for (;;) {
        json_t *page = list(s.port, a.access, NULL);
        n = ids_of(page, ids, 8);
        json_decref(page);
        if (n == 1 || hd_test_now_ms() > until)
            break;
        hd_test_sleep_ms(200);
    }
    cr_assert_eq(n, 1, "%zu notifications left, want only the new one", n);
    cr_assert_eq(ids[0], new_id, "left id %lld, want %lld (old %lld)", ids[0], new_id, old_id);
    cr_assert(hd_test_log_contains(&s, "old notifications deleted"), "the purge is not logged");
    finish(&s);
}
