/* Auth helpers for integration tests: see auth_client.h. */
#include "auth_client.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "harness.h"
#include "http_assert.h"

#define REQUEST_HEAD_CAP 32768

/* ---- requests ------------------------------------------------------------------ */

/* Appends the request head to @out; returns its length, or -ENAMETOOLONG. */
static int build_head(char *out, size_t cap, const char *method, const char *target,
                      const char *const *headers, const char *body, size_t body_len)
{
    int n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method,
                     target);
    for (size_t i = 0; headers && headers[i] && n > 0 && (size_t)n < cap; i++)
        n += snprintf(out + n, cap - (size_t)n, "%s\r\n", headers[i]);
    if (body && n > 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    if (n > 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - (size_t)n, "\r\n");
    return n > 0 && (size_t)n < cap ? n : -ENAMETOOLONG;
}

int hd_test_auth_request(int port, const char *method, const char *target,
                         const char *const *headers, const char *body, size_t body_len,
                         struct hd_http_response *r)
{
    char *head = malloc(REQUEST_HEAD_CAP);
    if (!head)
        return -ENOMEM;
    int n = build_head(head, REQUEST_HEAD_CAP, method, target, headers, body, body_len);
    struct hd_http_conn c;
    int rc = n < 0 ? n : hd_http_conn_open(&c, port, HD_TEST_AUTH_TIMEOUT_MS);
    if (rc != 0) {
        free(head);
        return rc;
    }
    rc = hd_http_conn_send(&c, head, (size_t)n, HD_TEST_AUTH_TIMEOUT_MS);
    free(head);
    if (rc == 0 && body && body_len)
        rc = hd_http_conn_send(&c, body, body_len, HD_TEST_AUTH_TIMEOUT_MS);
    /* an early answer (413) and a close while we still send: read it */
    if (rc == 0 || rc == -EPIPE || rc == -ECONNRESET)
        rc = hd_http_conn_read_response(&c, r, HD_TEST_AUTH_TIMEOUT_MS);
    hd_http_conn_close(&c);
    return rc;
}

int hd_test_auth_post(int port, const char *target, const char *json, const char *access,
                      struct hd_http_response *r)
{
    char *auth = NULL;
    if (access && asprintf(&auth, "Authorization: Bearer %s", access) < 0)
        return -ENOMEM;
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    int rc = hd_test_auth_request(port, "POST", target, headers, json, json ? strlen(json) : 0, r);
    free(auth);
    return rc;
}

int hd_test_auth_call(int port, const char *method, const char *target, const char *access,
                      struct hd_http_response *r)
{
    char *auth = NULL;
    if (access && asprintf(&auth, "Authorization: Bearer %s", access) < 0)
        return -ENOMEM;
    const char *headers[] = {auth, NULL};
    int rc = hd_test_auth_request(port, method, target, headers, NULL, 0, r);
    free(auth);
    return rc;
}

int hd_test_auth_status(int port, const char *method, const char *target, const char *access)
{
    struct hd_http_response r;
    int rc = hd_test_auth_call(port, method, target, access, &r);
    if (rc != 0)
        return rc;
    int status = r.status;
    hd_http_response_free(&r);
    return status;
}

int hd_test_auth_refresh_raw(int port, const char *refresh, struct hd_http_response *r)
{
    json_t *j = json_pack("{s:s}", "refresh_token", refresh);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -ENOMEM;
    int rc = hd_test_auth_post(port, "/api/auth/refresh", text, NULL, r);
    free(text);
    return rc;
}

static int copy_str(char *out, size_t cap, json_t *v)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= cap)
        return -EPROTO;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

int hd_test_auth_tokens_parse(const struct hd_http_response *r, struct hd_test_auth_tokens *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = hd_http_response_json(r);
    if (!j)
        return -EPROTO;
    json_t *user = json_object_get(j, "user");
    int rc = copy_str(out->access, sizeof(out->access), json_object_get(j, "access_token"));
    rc |= copy_str(out->refresh, sizeof(out->refresh), json_object_get(j, "refresh_token"));
    rc |= copy_str(out->session_id, sizeof(out->session_id), json_object_get(j, "session_id"));
    rc |= copy_str(out->user_id, sizeof(out->user_id), json_object_get(user, "id"));
    rc |= copy_str(out->org_id, sizeof(out->org_id), json_object_get(user, "organization_id"));
    rc |= copy_str(out->email, sizeof(out->email), json_object_get(user, "email"));
    json_decref(j);
    return rc ? -EPROTO : 0;
}

void hd_test_auth_unique_email(char *out, size_t cap, const char *tag)
{
    static atomic_uint counter;
    uint32_t rnd = sodium_init() >= 0 ? randombytes_random() : (uint32_t)time(NULL);
    snprintf(out, cap, "%s-%d-%u-%08x@example.test", tag, (int)getpid(),
             atomic_fetch_add(&counter, 1), rnd);
}

/* ---- flows ---------------------------------------------------------------------- */

static bool is_uuid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
        if (dash ? s[i] != '-' : !hex)
            return false;
    }
    return true;
}

static bool is_b64url(const char *s, size_t want_len)
{
    if (!s || strlen(s) != want_len)
        return false;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

const char *hd_test_auth_refresh_cookie(const struct hd_http_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, "Set-Cookie") == 0 &&
            strncmp(r->headers[i].value, "herald_refresh=", 15) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

void hd_test_auth_assert_bundle(const struct hd_http_response *r, int status)
{
    hd_assert_json_response(r, status);
    json_t *j = hd_http_response_json(r);
    json_t *user = json_object_get(j, "user");
    cr_assert(json_is_object(user), "no user object: %s", r->body);
    cr_assert(is_uuid(json_string_value(json_object_get(user, "id"))), "user.id: %s", r->body);
    cr_assert(is_uuid(json_string_value(json_object_get(user, "organization_id"))),
              "user.organization_id: %s", r->body);
    cr_assert(json_is_string(json_object_get(user, "email")), "user.email: %s", r->body);
    const char *role = json_string_value(json_object_get(user, "role"));
    cr_assert(role && (strcmp(role, "admin") == 0 || strcmp(role, "member") == 0), "role: %s",
              r->body);
    cr_assert(json_is_boolean(json_object_get(user, "disabled")), "disabled: %s", r->body);
    cr_assert(json_is_integer(json_object_get(user, "created_at")), "created_at: %s", r->body);
    cr_assert(!json_object_get(user, "password_hash") && !strstr(r->body, "$argon2"),
              "the password hash leaks: %s", r->body);
    const char *type = json_string_value(json_object_get(j, "token_type"));
    cr_assert(type && strcmp(type, "Bearer") == 0, "token_type: %s", r->body);
    cr_assert(json_integer_value(json_object_get(j, "expires_in")) > 0, "expires_in: %s", r->body);
    const char *access = json_string_value(json_object_get(j, "access_token"));
    cr_assert(access && strlen(access) > 20 && strchr(access, '.'), "access_token: %s", r->body);
    const char *refresh = json_string_value(json_object_get(j, "refresh_token"));
    cr_assert(is_b64url(refresh, 43), "refresh_token is not 43 base64url characters: %s", r->body);
    cr_assert(is_uuid(json_string_value(json_object_get(j, "session_id"))), "session_id: %s",
              r->body);
    const char *cookie = hd_test_auth_refresh_cookie(r);
    cr_assert(cookie, "no herald_refresh Set-Cookie");
    cr_assert(strncmp(cookie + 15, refresh, 43) == 0 && cookie[15 + 43] == ';',
              "the cookie does not carry the refresh token: %s", cookie);
    json_decref(j);
}

void hd_test_auth_register(int port, const char *email, const char *password, const char *username,
                           struct hd_test_auth_tokens *out)
{
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", password);
    if (username)
        json_object_set_new(j, "username", json_string(username));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct hd_http_response r;
    int rc = hd_test_auth_post(port, "/api/auth/register", text, NULL, &r);
    cr_assert_eq(rc, 0, "register %s: no response (%d: %s)", email, rc, strerror(-rc));
    free(text);
    hd_test_auth_assert_bundle(&r, 201);
    cr_assert_eq(hd_test_auth_tokens_parse(&r, out), 0, "register: %s", r.body);
    cr_assert(strcasecmp(out->email, email) == 0, "registered %s, got %s", email, out->email);
    hd_http_response_free(&r);
}

void hd_test_auth_login(int port, const char *email, const char *password,
                        struct hd_test_auth_tokens *out)
{
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", password);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct hd_http_response r;
    int rc = hd_test_auth_post(port, "/api/auth/login", text, NULL, &r);
    free(text);
    cr_assert_eq(rc, 0, "login %s: no response (%d: %s)", email, rc, strerror(-rc));
    hd_test_auth_assert_bundle(&r, 200);
    cr_assert_eq(hd_test_auth_tokens_parse(&r, out), 0, "login: %s", r.body);
    hd_http_response_free(&r);
}

void hd_test_auth_refresh(int port, const char *refresh, struct hd_test_auth_tokens *out)
{
    struct hd_http_response r;
    int rc = hd_test_auth_refresh_raw(port, refresh, &r);
    cr_assert_eq(rc, 0, "refresh: no response (%d: %s)", rc, strerror(-rc));
    hd_test_auth_assert_bundle(&r, 200);
    cr_assert_eq(hd_test_auth_tokens_parse(&r, out), 0, "refresh: %s", r.body);
    hd_http_response_free(&r);
}

void hd_test_auth_assert_me(int port, const char *access, const char *user_id)
{
    struct hd_http_response r;
    int rc = hd_test_auth_call(port, "GET", "/api/me", access, &r);
    cr_assert_eq(rc, 0, "GET /api/me: no response (%d: %s)", rc, strerror(-rc));
    hd_assert_json_response(&r, 200);
    json_t *j = hd_http_response_json(&r);
    const char *id = json_string_value(json_object_get(j, "id"));
    cr_assert(id && strcmp(id, user_id) == 0, "GET /api/me is user %s, want %s: %s",
              id ? id : "(none)", user_id, r.body);
    json_decref(j);
    hd_http_response_free(&r);
}

void hd_test_auth_assert_invalid_token(const struct hd_http_response *r, const char *what)
{
    cr_assert_eq(r->status, 401, "%s: status %d, want 401: %s", what, r->status, r->body);
    hd_assert_error(r, 401, "invalid_token");
    const char *www = hd_http_header(r, "WWW-Authenticate");
    cr_assert(www && strncmp(www, "Bearer", 6) == 0 && strstr(www, "error=\"invalid_token\""),
              "%s: WWW-Authenticate is '%s'", what, www ? www : "(none)");
}

void hd_test_auth_assert_refused(int port, const char *access, const char *what)
{
    struct hd_http_response r;
    int rc = hd_test_auth_call(port, "GET", "/api/me", access, &r);
    cr_assert_eq(rc, 0, "%s: GET /api/me: no response (%d: %s)", what, rc, strerror(-rc));
    hd_test_auth_assert_invalid_token(&r, what);
    hd_http_response_free(&r);
}

/* ---- JWT forging ------------------------------------------------------------------ */

static char *b64url(const void *bin, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    if (out)
        sodium_bin2base64(out, cap, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

json_t *hd_test_auth_jwt_claims(const char *token)
{
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2 || sodium_init() < 0)
        return NULL;
    size_t n = (size_t)(dot2 - dot1 - 1), raw_len = 0;
    unsigned char *raw = malloc(n + 1);
    json_t *j = NULL;
    if (raw && sodium_base642bin(raw, n + 1, dot1 + 1, n, NULL, &raw_len, NULL,
                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0)
        j = json_loadb((const char *)raw, raw_len, 0, NULL);
    free(raw);
    return j;
}

/* base64url(HMAC-SHA-@bits(@key, @input)); "" for a NULL key. */
static char *mac_b64(const char *input, const void *key, size_t key_len, int bits)
{
    if (!key)
        return strdup("");
    if (bits == 512) {
        unsigned char mac[crypto_auth_hmacsha512_BYTES];
        crypto_auth_hmacsha512_state st;
        crypto_auth_hmacsha512_init(&st, key, key_len);
        crypto_auth_hmacsha512_update(&st, (const unsigned char *)input, strlen(input));
        crypto_auth_hmacsha512_final(&st, mac);
        return b64url(mac, sizeof(mac));
    }
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)input, strlen(input));
    crypto_auth_hmacsha256_final(&st, mac);
    return b64url(mac, sizeof(mac));
}

static char *sign(const char *header, const char *payload, const void *key, size_t key_len,
                  int bits)
{
    if (sodium_init() < 0)
        return NULL;
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    char *input = NULL, *sig = NULL, *token = NULL;
    if (!h || !p || asprintf(&input, "%s.%s", h, p) < 0)
        goto out;
    sig = mac_b64(input, key, key_len, bits);
    if (sig && asprintf(&token, "%s.%s", input, sig) < 0)
        token = NULL;
out:
    free(h);
    free(p);
    free(input);
    free(sig);
    return token;
}

char *hd_test_auth_jwt_sign(const char *header, const char *payload, const void *key,
                            size_t key_len)
{
    return sign(header, payload, key, key_len, 256);
}

char *hd_test_auth_jwt_sign_hs512(const char *header, const char *payload, const void *key,
                                  size_t key_len)
{
    return sign(header, payload, key, key_len, 512);
}

char *hd_test_auth_jwt_forge(json_t *claims)
{
    char *payload = json_dumps(claims, JSON_COMPACT);
    if (!payload)
        return NULL;
    const char *secret = hd_test_secret();
    char *t = hd_test_auth_jwt_sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, secret,
                                    strlen(secret));
    free(payload);
    return t;
}

json_t *hd_test_auth_jwt_good_claims(const struct hd_test_auth_tokens *t)
{
    json_t *c = hd_test_auth_jwt_claims(t->access);
    cr_assert(json_is_object(c), "the access token's payload is not JSON: %s", t->access);
    cr_assert(json_is_string(json_object_get(c, "sid")) &&
                  json_is_string(json_object_get(c, "sub")),
              "herald's token lacks sid/sub");
    unsigned char rnd[16];
    randombytes_buf(rnd, sizeof(rnd));
    char jti[33];
    sodium_bin2hex(jti, sizeof(jti), rnd, sizeof(rnd));
    json_int_t now = (json_int_t)time(NULL);
    json_object_set_new(c, "iat", json_integer(now));
    json_object_set_new(c, "nbf", json_integer(now));
    json_object_set_new(c, "exp", json_integer(now + 900));
    json_object_set_new(c, "jti", json_string(jti));
    return c;
}

/* ---- store backends ----------------------------------------------------------------- */

static char g_db_name[64];
static char g_admin_url[1024];

static const char *pg_url(void)
{
    const char *url = getenv("HERALD_TEST_DATABASE_URL");
    cr_assert(url && *url, "HERALD_TEST_DATABASE_URL is not set: run the suite with scripts/test "
                           "(it starts Postgres with scripts/services)");
    return url;
}

/* Runs one statement on @url; returns NULL or an error message (static). */
static const char *pg_exec(const char *url, const char *sql)
{
    static char err[512];
    PGconn *c = PQconnectdb(url);
    const char *res = NULL;
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, sizeof(err), "connect: %s", PQerrorMessage(c));
        res = err;
    } else {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(err, sizeof(err), "%s: %s", sql, PQerrorMessage(c));
            res = err;
        }
        PQclear(r);
    }
    PQfinish(c);
    return res;
}

/* @base with its database name replaced by @name (query string kept). */
static void url_with_db(char *out, size_t cap, const char *base, const char *name)
{
    const char *scheme = strstr(base, "://");
    const char *slash = strchr(scheme ? scheme + 3 : base, '/');
    cr_assert(slash, "HERALD_TEST_DATABASE_URL has no database part: %s", base);
    const char *query = strchr(slash, '?');
    snprintf(out, cap, "%.*s/%s%s", (int)(slash - base), base, name, query ? query : "");
}

char *hd_test_auth_backend_overrides(enum hd_test_backend backend, const char *extra)
{
    json_t *over = json_object();
    if (extra && *extra) {
        json_error_t err;
        json_decref(over);
        over = json_loads(extra, 0, &err);
        cr_assert(json_is_object(over), "extra overrides are not a JSON object (%s): %s", err.text,
                  extra);
    }
    if (backend == HD_TEST_POSTGRES) {
        cr_assert(!g_db_name[0], "one Postgres database per test process");
        const char *base = pg_url();
        snprintf(g_admin_url, sizeof(g_admin_url), "%s", base);
        snprintf(g_db_name, sizeof(g_db_name), "herald_auth_%d_%08x", (int)getpid(),
                 randombytes_random());
        char sql[128], url[1100];
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", g_db_name);
        const char *err = pg_exec(base, sql);
        if (err)
            g_db_name[0] = '\0';
        cr_assert(!err, "%s", err);
        url_with_db(url, sizeof(url), base, g_db_name);
        json_t *store = json_object_get(over, "store");
        if (!json_is_object(store)) {
            store = json_object();
            json_object_set_new(over, "store", store);
        }
        json_object_set_new(store, "database_url", json_string(url));
    }
    char *text = json_dumps(over, JSON_COMPACT);
    json_decref(over);
    cr_assert(text);
    return text;
}

void hd_test_auth_backend_fini(void)
{
    if (!g_db_name[0])
        return;
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_db_name);
    const char *err = pg_exec(g_admin_url, sql);
    if (err)
        fprintf(stderr, "auth_client: could not drop %s: %s\n", g_db_name, err);
    g_db_name[0] = '\0';
}

void hd_test_auth_new_admin(int port, const char *tag, struct hd_test_auth_tokens *out)
{
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), tag);
    hd_test_auth_register(port, email, HD_TEST_AUTH_PASSWORD, NULL, out);
}

void hd_test_auth_new_member(int port, const struct hd_test_auth_tokens *admin, const char *tag,
                             struct hd_test_auth_tokens *out)
{
    char email[128], body[384];
    hd_test_auth_unique_email(email, sizeof(email), tag);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email,
             HD_TEST_AUTH_PASSWORD);
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_post(port, "/api/admin/users", body, admin->access, &r), 0,
                 "POST /api/admin/users: no answer");
    cr_assert_eq(r.status, 201, "POST /api/admin/users: %d %s", r.status, r.body);
    hd_http_response_free(&r);
    hd_test_auth_login(port, email, HD_TEST_AUTH_PASSWORD, out);
    cr_assert_str_eq(out->org_id, admin->org_id, "the member is not in the admin's organization");
}
