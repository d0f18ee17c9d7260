/* CORS from an allowlist: simple requests, preflights, wildcard. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

static const char *const listed =
    "{\"cors\":{\"allowed_origins\":[\"https://app.example\"],\"allow_credentials\":true}}";

static struct hd_http_response exchange(int port, const char *raw)
{
    struct hd_http_response r;
    int rc = hd_http_exchange(port, raw, &r, 5000);
    cr_assert_eq(rc, 0, "no response (%d) to %s", rc, raw);
    return r;
}

static struct hd_http_response preflight(int port, const char *path, const char *origin)
{
    char raw[1024];
    snprintf(raw, sizeof raw,
             "OPTIONS %s HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\n"
             "Access-Control-Request-Method: POST\r\n"
             "Access-Control-Request-Headers: content-type, x-request-id\r\n"
             "Connection: close\r\n\r\n",
             path, origin);
    return exchange(port, raw);
}

static void assert_header_eq(const struct hd_http_response *r, const char *name, const char *want)
{
    const char *got = hd_http_header(r, name);
    cr_assert(got && strcmp(got, want) == 0, "%s is '%s', want '%s'", name, got ? got : "(none)",
              want);
}

Test(http_cors, simple_request_from_listed_origin, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, listed);
    struct hd_http_response r =
        exchange(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                         "Connection: close\r\n\r\n");
    hd_assert_json_response(&r, 200);
    assert_header_eq(&r, "Access-Control-Allow-Origin", "https://app.example");
    assert_header_eq(&r, "Access-Control-Allow-Credentials", "true");
    cr_assert(hd_http_header_has_token(&r, "Vary", "Origin"), "Vary lacks Origin");
    cr_assert_eq(hd_http_header_count(&r, "Access-Control-Allow-Origin"), 1);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_cors, simple_request_from_unlisted_origin, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, listed);
    struct hd_http_response r =
        exchange(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
                         "Connection: close\r\n\r\n");
    hd_assert_json_response(&r, 200);
    cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Origin"), "ACAO '%s' for evil",
                   hd_http_header(&r, "Access-Control-Allow-Origin"));
    cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Credentials"));
    cr_assert(hd_http_header_has_token(&r, "Vary", "Origin"), "Vary lacks Origin");
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* Prefix and suffix look-alikes of a listed origin are not listed. */
Test(http_cors, lookalike_origins_are_not_listed, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, listed);
    static const char *const fakes[] = {"https://app.example.evil", "https://evilapp.example",
                                        "http://app.example", "null"};
    for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++) {
        char raw[512];
        snprintf(raw, sizeof raw,
                 "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\nConnection: close\r\n\r\n",
                 fakes[i]);
        struct hd_http_response r = exchange(s.port, raw);
        cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Origin"), "ACAO for %s", fakes[i]);
        hd_http_response_free(&r);
    }
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_cors, preflight_from_listed_origin, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, listed);
    struct hd_http_response r = preflight(s.port, "/api/_echo", "https://app.example");
    cr_assert_eq(r.status, 204, "preflight status %d: %s", r.status, r.body);
    cr_assert(hd_http_header(&r, "X-Request-Id"), "no X-Request-Id on the preflight");
    assert_header_eq(&r, "Access-Control-Allow-Origin", "https://app.example");
    assert_header_eq(&r, "Access-Control-Allow-Credentials", "true");
    cr_assert(hd_http_header_has_token(&r, "Access-Control-Allow-Methods", "POST"),
              "Allow-Methods '%s'", hd_http_header(&r, "Access-Control-Allow-Methods"));
    cr_assert(hd_http_header_has_token(&r, "Access-Control-Allow-Headers", "content-type"),
              "Allow-Headers '%s'", hd_http_header(&r, "Access-Control-Allow-Headers"));
    cr_assert(hd_http_header_has_token(&r, "Access-Control-Allow-Headers", "x-request-id"),
              "Allow-Headers '%s'", hd_http_header(&r, "Access-Control-Allow-Headers"));
    const char *age = hd_http_header(&r, "Access-Control-Max-Age");
    cr_assert(age && *age, "no Access-Control-Max-Age");
    cr_assert(hd_http_header_has_token(&r, "Vary", "Origin"), "Vary lacks Origin");
    cr_assert_eq(r.body_len, 0, "a 204 with a body");
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_cors, preflight_max_age_follows_config, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"cors\":{\"allowed_origins\":[\"https://app.example\"],"
                             "\"max_age_s\":123}}");
    struct hd_http_response r = preflight(s.port, "/api/_echo", "https://app.example");
    cr_assert_eq(r.status, 204);
    assert_header_eq(&r, "Access-Control-Max-Age", "123");
    cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Credentials"),
                   "credentials allowed without allow_credentials");
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_cors, preflight_from_unlisted_origin_is_403, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, listed);
    struct hd_http_response r = preflight(s.port, "/api/_echo", "https://evil.example");
    hd_assert_error(&r, 403, "cors_origin_denied");
    cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Origin"));
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_cors, preflight_for_unknown_path_is_404, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, listed);
    struct hd_http_response r = preflight(s.port, "/no/such/path", "https://app.example");
    hd_assert_error(&r, 404, "not_found");
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_cors, wildcard_without_credentials, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s,
                         "{\"cors\":{\"allowed_origins\":[\"*\"],\"allow_credentials\":false}}");
    struct hd_http_response r =
        exchange(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://anyone.example\r\n"
                         "Connection: close\r\n\r\n");
    hd_assert_json_response(&r, 200);
    assert_header_eq(&r, "Access-Control-Allow-Origin", "*");
    cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Credentials"),
                   "credentials header with a wildcard origin");
    hd_http_response_free(&r);

    r = preflight(s.port, "/api/_echo", "https://anyone.example");
    cr_assert_eq(r.status, 204, "wildcard preflight status %d", r.status);
    cr_assert(hd_http_header(&r, "Access-Control-Allow-Origin"), "no ACAO on wildcard preflight");
    cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Credentials"));
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_cors, no_origin_no_cors_headers, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, listed);
    struct hd_http_response r;
    cr_assert_eq(hd_http_get(s.port, "/healthz", &r, 5000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_null(hd_http_header(&r, "Access-Control-Allow-Origin"));
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
