/* Operations endpoints, routing errors and the headers on every response. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

static struct hd_http_response fetch(int port, const char *raw)
{
    struct hd_http_response r;
    int rc = hd_http_exchange(port, raw, &r, 5000);
    cr_assert_eq(rc, 0, "no response to %s: %d", raw, rc);
    return r;
}

static struct hd_http_response get(int port, const char *target)
{
    struct hd_http_response r;
    int rc = hd_http_get(port, target, &r, 5000);
    cr_assert_eq(rc, 0, "no response to GET %s: %d", target, rc);
    return r;
}

Test(http_endpoints, healthz_answers_ok, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r = get(s.port, "/healthz");
    hd_assert_json_response(&r, 200);
    json_t *j = hd_http_response_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_endpoints, readyz_answers_ready, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r = get(s.port, "/readyz");
    hd_assert_json_response(&r, 200);
    json_t *j = hd_http_response_json(&r);
    const char *status = json_string_value(json_object_get(j, "status"));
    cr_assert(status && strcmp(status, "ready") == 0, "readyz body: %s", r.body);
    json_decref(j);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* The value of the first sample line of @name carrying every label in
 * @labels (each "key=\"value\""), or -1 when there is none. */
static double sample(const char *text, const char *name, const char *const *labels)
{
    size_t nlen = strlen(name);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        if (len >= sizeof buf || strncmp(line, name, nlen) != 0 || line[nlen] != '{')
            continue;
        memcpy(buf, line, len);
        buf[len] = '\0';
        bool all = true;
        for (size_t i = 0; labels[i]; i++)
            all = all && strstr(buf, labels[i]);
        const char *sp = strrchr(buf, ' ');
        if (all && sp)
            return strtod(sp + 1, NULL);
    }
    return -1;
}

static double healthz_count(int port)
{
    static const char *const labels[] = {"route=\"/healthz\"", "status=\"200\"", NULL};
    struct hd_http_response r = get(port, "/metrics");
    double v = sample(r.body, "herald_http_requests_total", labels);
    hd_http_response_free(&r);
    return v;
}

Test(http_endpoints, metrics_exposition, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r = get(s.port, "/metrics");
    cr_assert_eq(r.status, 200, "metrics status %d", r.status);
    hd_assert_common_headers(&r);
    const char *ct = hd_http_header(&r, "Content-Type");
    cr_assert(ct && strstr(ct, "text/plain") && strstr(ct, "version=0.0.4"),
              "metrics Content-Type '%s'", ct ? ct : "(none)");
    static const char *const wanted[] = {"herald_http_requests_total{",
                                         "herald_http_request_duration_seconds_bucket",
                                         "herald_connections_open", "herald_inbox_depth{"};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
        cr_assert(strstr(r.body, wanted[i]), "metrics lack %s:\n%s", wanted[i], r.body);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_endpoints, metrics_count_requests_by_route_and_status, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    double before = healthz_count(s.port); /* the harness's own probe counted already */
    cr_assert_geq(before, 1, "no requests_total sample for route /healthz status 200");
    for (int i = 0; i < 3; i++) {
        struct hd_http_response r = get(s.port, "/healthz");
        hd_http_response_free(&r);
    }
    double after = healthz_count(s.port);
    cr_assert_geq(after, before + 3, "requests_total went from %g to %g after 3 requests", before,
                  after);

    static const char *const nf[] = {"status=\"404\"", NULL};
    struct hd_http_response r = get(s.port, "/no/such/path");
    hd_http_response_free(&r);
    r = get(s.port, "/metrics");
    cr_assert_geq(sample(r.body, "herald_http_requests_total", nf), 1,
                  "no 404 sample after a 404:\n%s", r.body);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_endpoints, unknown_path_is_404, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r = get(s.port, "/no/such/path");
    hd_assert_error(&r, 404, "not_found");
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_endpoints, wrong_method_is_405_with_allow, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r =
        fetch(s.port, "DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    hd_assert_error(&r, 405, "method_not_allowed");
    cr_assert(hd_http_header_has_token(&r, "Allow", "GET"), "Allow '%s' lacks GET",
              hd_http_header(&r, "Allow") ? hd_http_header(&r, "Allow") : "(none)");
    cr_assert(!hd_http_header_has_token(&r, "Allow", "DELETE"), "Allow lists DELETE");
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

static const char *request_id_of(int port, const char *header_line, char *out, size_t cap)
{
    char raw[1024];
    snprintf(raw, sizeof raw, "GET /healthz HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
             header_line);
    struct hd_http_response r = fetch(port, raw);
    cr_assert_eq(r.status, 200, "status %d for header %s", r.status, header_line);
    hd_assert_common_headers(&r);
    snprintf(out, cap, "%s", hd_http_header(&r, "X-Request-Id"));
    hd_http_response_free(&r);
    return out;
}

Test(http_endpoints, request_id_well_formed_is_echoed, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char id[256], line[512];
    request_id_of(s.port, "X-Request-Id: abc-123_DEF.xyz\r\n", id, sizeof id);
    cr_assert_str_eq(id, "abc-123_DEF.xyz");
    char max[129];
    memset(max, 'a', 128);
    max[128] = '\0';
    snprintf(line, sizeof line, "x-request-id: %s\r\n", max);
    request_id_of(s.port, line, id, sizeof id);
    cr_assert_str_eq(id, max, "a 128-character id was not echoed");
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_endpoints, request_id_generated_when_absent, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char a[256], b[256];
    request_id_of(s.port, "", a, sizeof a);
    request_id_of(s.port, "", b, sizeof b);
    cr_assert_str_neq(a, b, "two requests got the same generated id %s", a);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_endpoints, request_id_malformed_is_replaced, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    char long_id[200], line[512], id[256];
    memset(long_id, 'b', 129);
    long_id[129] = '\0';
    const char *bad[] = {"has space", "quo\"te", "semi;colon", "", long_id};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(line, sizeof line, "X-Request-Id: %s\r\n", bad[i]);
        request_id_of(s.port, line, id, sizeof id);
        cr_assert(strcmp(id, bad[i]) != 0, "malformed id '%s' was echoed", bad[i]);
        /* nor a truncated copy of it */
        cr_assert(strlen(bad[i]) < 3 || strncmp(id, bad[i], 3) != 0,
                  "id '%s' carries part of the malformed '%s'", id, bad[i]);
    }
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_endpoints, error_body_carries_the_echoed_request_id, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r = fetch(
        s.port,
        "GET /missing HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-42\r\nConnection: close\r\n\r\n");
    hd_assert_error(&r, 404, "not_found");
    json_t *j = hd_http_response_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "request_id")), "req-42");
    json_decref(j);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
