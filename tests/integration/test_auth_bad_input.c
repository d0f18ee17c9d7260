/* Hostile input to the auth routes (issue 4, security test 10): a password
 * holding \u0000, one of 129 bytes, a 2 MB body, duplicate Authorization
 * headers, malformed JWT segments, invalid UTF-8 in JSON strings. Each gets
 * a clear 400, 401 or 413 with herald's error body, never a crash: the
 * server answers /healthz afterwards and exits 0 (under the ASan/UBSan
 * build a leak or a sanitizer report makes that exit non-zero). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* POSTs the raw JSON @body (@len bytes) to @target; asserts @status/@code and,
 * when @field is not NULL, error.field. */
static void expect_post(int port, const char *target, const char *body, size_t len, int status,
                        const char *code, const char *field, const char *what)
{
    const char *headers[] = {"Content-Type: application/json", NULL};
    struct hd_http_response r;
    int rc = hd_test_auth_request(port, "POST", target, headers, body, len, &r);
    cr_assert_eq(rc, 0, "%s: no response (%d: %s)", what, rc, strerror(-rc));
    cr_assert_eq(r.status, status, "%s: status %d, want %d: %s", what, r.status, status, r.body);
    hd_assert_error(&r, status, code);
    if (field) {
        json_t *j = hd_http_response_json(&r);
        const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "field"));
        cr_assert(got && strcmp(got, field) == 0, "%s: error.field '%s', want '%s'", what,
                  got ? got : "(none)", field);
        json_decref(j);
    }
    hd_http_response_free(&r);
}

/* {"email":@email,"password":@password} as JSON text; caller frees. */
static char *credentials(const char *email, const char *password)
{
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", password);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cr_assert(text);
    return text;
}

Test(auth_bad_input, a_password_holding_nul_is_400, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char email[128], body[512];
    hd_test_auth_unique_email(email, sizeof(email), "nul");
    int n =
        snprintf(body, sizeof(body),
                 "{\"email\":\"%s\",\"password\":\"correct horse\\u0000battery staple\"}", email);
    expect_post(s.port, "/api/auth/register", body, (size_t)n, 400, "validation_failed", NULL,
                "register, \\u0000 in the password");
    expect_post(s.port, "/api/auth/login", body, (size_t)n, 400, "validation_failed", NULL,
                "login, \\u0000 in the password");
    /* a raw NUL byte inside the string (not even JSON) */
    n = snprintf(body, sizeof(body),
                 "{\"email\":\"%s\",\"password\":\"correct horseXbattery staple\"}", email);
    *strchr(body, 'X') = '\0';
    expect_post(s.port, "/api/auth/register", body, (size_t)n, 400, "validation_failed", NULL,
                "register, a raw NUL byte in the password");
    /* nothing was created: the email is still free */
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &t);
    finish(&s);
}

Test(auth_bad_input, passwords_past_128_bytes_are_400_and_128_are_never_truncated, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char email[128], pw[200];
    hd_test_auth_unique_email(email, sizeof(email), "len");

    memset(pw, 'p', 129);
    pw[129] = '\0';
    char *body = credentials(email, pw);
    expect_post(s.port, "/api/auth/register", body, strlen(body), 400, "validation_failed",
                "password", "register, a 129-byte password");
    free(body);
    /* 129 bytes in 65 characters: the limit counts bytes */
    pw[0] = '\0';
    for (int i = 0; i < 64; i++)
        strcat(pw, "\xc3\xa9"); /* U+00E9 */
    strcat(pw, "a");
    cr_assert_eq(strlen(pw), 129);
    body = credentials(email, pw);
    expect_post(s.port, "/api/auth/register", body, strlen(body), 400, "validation_failed",
                "password", "register, a 129-byte password of 65 characters");
    free(body);
    body = credentials(email, "elevenbytes");
    expect_post(s.port, "/api/auth/register", body, strlen(body), 400, "validation_failed",
                "password", "register, an 11-byte password");
    free(body);

    /* 128 bytes is accepted, and all 128 count */
    for (int i = 0; i < 128; i++)
        pw[i] = (char)('a' + i % 26);
    pw[128] = '\0';
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, email, pw, NULL, &t);
    hd_test_auth_login(s.port, email, pw, &t);
    static const size_t prefixes[] = {72, 127};
    for (size_t i = 0; i < 2; i++) {
        char cut[200];
        memcpy(cut, pw, prefixes[i]);
        cut[prefixes[i]] = '\0';
        body = credentials(email, cut);
        char what[64];
        snprintf(what, sizeof(what), "login with the first %zu bytes", prefixes[i]);
        expect_post(s.port, "/api/auth/login", body, strlen(body), 401, "invalid_credentials", NULL,
                    what);
        free(body);
    }
    char longer[200];
    memcpy(longer, pw, 128);
    memcpy(longer + 128, "X", 2);
    body = credentials(email, longer);
    expect_post(s.port, "/api/auth/login", body, strlen(body), 401, "invalid_credentials", NULL,
                "login with the 128 bytes plus one");
    free(body);
    finish(&s);
}

Test(auth_bad_input, a_2mb_body_is_413, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    size_t size = 2u << 20;
    char *big = malloc(size + 1);
    cr_assert(big);
    int head = snprintf(big, size, "{\"email\":\"big@example.test\",\"password\":\"");
    memset(big + head, 'x', size - (size_t)head - 2);
    memcpy(big + size - 2, "\"}", 2);
    big[size] = '\0';
    static const char *const targets[] = {"/api/auth/register", "/api/auth/login",
                                          "/api/auth/refresh"};
    for (size_t i = 0; i < 3; i++)
        expect_post(s.port, targets[i], big, size, 413, "body_too_large", NULL, targets[i]);
    free(big);
    /* the server still registers users */
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "after-big");
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &t);
    finish(&s);
}

/* GET /api/me with the given header lines: 401 invalid_token. */
static void expect_refused_with(int port, const char *const *headers, const char *what)
{
    struct hd_http_response r;
    int rc = hd_test_auth_request(port, "GET", "/api/me", headers, NULL, 0, &r);
    cr_assert_eq(rc, 0, "%s: no response (%d)", what, rc);
    hd_test_auth_assert_invalid_token(&r, what);
    hd_http_response_free(&r);
}

Test(auth_bad_input, duplicate_authorization_headers_are_401, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "dup");
    struct hd_test_auth_tokens t, other;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &t);
    hd_test_auth_unique_email(email, sizeof(email), "dup-other");
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &other);
    char a[HD_TEST_AUTH_ACCESS_CAP + 32], b[HD_TEST_AUTH_ACCESS_CAP + 32];
    snprintf(a, sizeof(a), "Authorization: Bearer %s", t.access);
    snprintf(b, sizeof(b), "Authorization: Bearer %s", other.access);

    const char *same[] = {a, a, NULL};
    expect_refused_with(s.port, same, "the same valid token twice");
    const char *two_users[] = {a, b, NULL};
    expect_refused_with(s.port, two_users, "two users' valid tokens");
    const char *good_then_bad[] = {a, "Authorization: Bearer x.y.z", NULL};
    expect_refused_with(s.port, good_then_bad, "valid, then garbage");
    const char *bad_then_good[] = {"Authorization: Bearer x.y.z", a, NULL};
    expect_refused_with(s.port, bad_then_good, "garbage, then valid");
    const char *basic_then_good[] = {"Authorization: Basic dXNlcjpwYXNz", a, NULL};
    expect_refused_with(s.port, basic_then_good, "Basic, then a valid Bearer");
    const char *lower[] = {"authorization: Bearer x", a, NULL};
    expect_refused_with(s.port, lower, "two Authorization headers, names in different case");

    /* single headers that are not a Bearer token */
    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    expect_refused_with(s.port, basic, "Basic scheme");
    const char *empty[] = {"Authorization: Bearer ", NULL};
    expect_refused_with(s.port, empty, "Bearer without a token");
    const char *bare[] = {"Authorization: ", NULL};
    expect_refused_with(s.port, bare, "an empty Authorization header");

    /* no Authorization at all: 401 missing_token */
    struct hd_http_response r;
    cr_assert_eq(hd_test_auth_call(s.port, "GET", "/api/me", NULL, &r), 0);
    hd_assert_error(&r, 401, "missing_token");
    const char *www = hd_http_header(&r, "WWW-Authenticate");
    cr_assert(www && strncmp(www, "Bearer", 6) == 0, "WWW-Authenticate '%s'", www ? www : "");
    hd_http_response_free(&r);

    hd_test_auth_assert_me(s.port, t.access, t.user_id);
    hd_test_auth_assert_me(s.port, other.access, other.user_id);
    finish(&s);
}

/* base64url of @s (malloc'd). */
static char *b64(const char *s)
{
    /* hd_test_auth_jwt_sign encodes its header and payload: take its first segment */
    char *t = hd_test_auth_jwt_sign(s, "{}", NULL, 0);
    cr_assert(t);
    *strchr(t, '.') = '\0';
    return t;
}

Test(auth_bad_input, malformed_jwt_segments_are_401, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "seg");
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &t);
    const char *secret = hd_test_secret();
    const char *dot1 = strchr(t.access, '.');
    const char *dot2 = strchr(dot1 + 1, '.');
    int h_len = (int)(dot1 - t.access), p_len = (int)(dot2 - dot1 - 1);

    char *cases[40];
    size_t n = 0;
    cases[n++] = strdup("a");
    cases[n++] = strdup("a.b");
    cases[n++] = strdup("..");
    cases[n++] = strdup("...");
    cases[n++] = strdup("a..c");
    cases[n++] = strdup(".b.c");
    cr_assert(asprintf(&cases[n++], "%s.x", t.access) > 0); /* four segments */
    cr_assert(asprintf(&cases[n++], "%.*s", (int)(dot2 - t.access), t.access) > 0); /* two */
    cr_assert(asprintf(&cases[n++], "%s=", t.access) > 0);                          /* padding */
    cr_assert(asprintf(&cases[n++], "%s ", t.access) > 0); /* trailing space */
    cr_assert(asprintf(&cases[n++], "%.*s.%s", p_len, dot1 + 1, t.access) > 0);
    cr_assert(asprintf(&cases[n++], "%.*s+%s", h_len - 1, t.access, dot1) > 0); /* base64 '+' */
    cr_assert(asprintf(&cases[n++], "%.*sA%s", h_len, t.access, dot1) > 0);     /* 1 mod 4 length */
    cr_assert(asprintf(&cases[n++], "%.*s.%.*s.", h_len, t.access, p_len, dot1 + 1) > 0);
    cr_assert(asprintf(&cases[n++], ".%.*s.%s", p_len, dot1 + 1, dot2 + 1) > 0); /* no header */
    cr_assert(asprintf(&cases[n++], "%.*s..%s", h_len, t.access, dot2 + 1) > 0); /* no payload */
    /* header segments that decode to something other than our JSON object */
    static const char *const headers[] = {"not json",      "[\"HS256\"]",    "\"HS256\"",
                                          "{\"alg\":256}", "{\"alg\":null}", "{\"alg\":\"HS256\""};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *h = b64(headers[i]);
        cr_assert(asprintf(&cases[n++], "%s%s", h, dot1) > 0);
        free(h);
    }
    /* correctly signed, but the payload is not a JSON object */
    cases[n++] = hd_test_auth_jwt_sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "not json", secret,
                                       strlen(secret));
    cases[n++] = hd_test_auth_jwt_sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "[1,2,3]", secret,
                                       strlen(secret));
    cases[n++] =
        hd_test_auth_jwt_sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{}", secret, strlen(secret));
    /* a 5000-byte token */
    char *huge = malloc(5001);
    memset(huge, 'A', 5000);
    huge[1000] = '.';
    huge[2000] = '.';
    huge[5000] = '\0';
    cases[n++] = huge;
    /* a header nested 1000 deep (still under the 4096-byte token limit) */
    char *deep = malloc(2002);
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    deep[2000] = '\0';
    char *dh = b64(deep);
    free(deep);
    cr_assert(asprintf(&cases[n++], "%s%s", dh, dot1) > 0);
    free(dh);
    cr_assert(n <= sizeof(cases) / sizeof(cases[0]));

    for (size_t i = 0; i < n; i++) {
        char what[160];
        snprintf(what, sizeof(what), "malformed token #%zu '%.100s'", i, cases[i]);
        hd_test_auth_assert_refused(s.port, cases[i], what);
        free(cases[i]);
    }
    /* Bytes outside token68 in the header value: a clean 400 or 401. */
    static const char *const raw[] = {"Authorization: Bearer \xff\xfe.\xc3\x28.\x80",
                                      "Authorization: Bearer a.b.c\x7f",
                                      "Authorization: Bearer a\tb.c.d"};
    for (size_t i = 0; i < 3; i++) {
        const char *hdrs[] = {raw[i], NULL};
        struct hd_http_response r;
        int rc = hd_test_auth_request(s.port, "GET", "/api/me", hdrs, NULL, 0, &r);
        cr_assert_eq(rc, 0, "raw header #%zu: no response (%d)", i, rc);
        cr_assert(r.status == 400 || r.status == 401, "raw header #%zu: status %d: %s", i, r.status,
                  r.body);
        hd_assert_error(&r, r.status, NULL);
        hd_http_response_free(&r);
    }
    hd_test_auth_assert_me(s.port, t.access, t.user_id);
    finish(&s);
}

Test(auth_bad_input, invalid_utf8_in_json_strings_is_400, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "utf8");
    /* each goes into a JSON string as raw bytes */
    static const char *const bad[] = {
        "\xff",             /* never valid */
        "\xc3\x28",         /* bad continuation */
        "\xc0\xaf",         /* overlong "/" */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xed\xa0\x80",     /* a UTF-16 surrogate, encoded */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xe2\x82",         /* truncated at the end of the string */
        "\x80",             /* a lone continuation byte */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512], what[96];
        int n =
            snprintf(body, sizeof(body),
                     "{\"email\":\"%s\",\"password\":\"correct horse %s battery\"}", email, bad[i]);
        snprintf(what, sizeof(what), "register, invalid UTF-8 #%zu in the password", i);
        expect_post(s.port, "/api/auth/register", body, (size_t)n, 400, "validation_failed", NULL,
                    what);
        n = snprintf(body, sizeof(body), "{\"email\":\"x%s@example.test\",\"password\":\"%s\"}",
                     bad[i], HD_TEST_AUTH_PASSWORD);
        snprintf(what, sizeof(what), "register, invalid UTF-8 #%zu in the email", i);
        expect_post(s.port, "/api/auth/register", body, (size_t)n, 400, "validation_failed", NULL,
                    what);
        snprintf(what, sizeof(what), "login, invalid UTF-8 #%zu in the email", i);
        expect_post(s.port, "/api/auth/login", body, (size_t)n, 400, "validation_failed", NULL,
                    what);
        n = snprintf(body, sizeof(body), "{\"refresh_token\":\"abc%sdef\"}", bad[i]);
        snprintf(what, sizeof(what), "refresh, invalid UTF-8 #%zu in the token", i);
        expect_post(s.port, "/api/auth/refresh", body, (size_t)n, 400, "validation_failed", NULL,
                    what);
    }
    /* escapes that name no character: a lone surrogate */
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"email\":\"%s\",\"password\":\"correct horse \\ud800 battery\"}", email);
    expect_post(s.port, "/api/auth/register", body, (size_t)n, 400, "validation_failed", NULL,
                "register, a lone surrogate escape");
    /* the email is still free, and valid UTF-8 passwords work */
    struct hd_test_auth_tokens t;
    hd_test_auth_register(s.port, email, "correct horse \xc3\xa9 battery \xf0\x9f\x90\x8e", NULL,
                          &t);
    finish(&s);
}
