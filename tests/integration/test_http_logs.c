/* Logs: one JSON object per line, an access line per request, and no
 * secrets (query strings, the JWT secret) in them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

static void request(int port, const char *target, const char *request_id, int want_status)
{
    char raw[1024];
    snprintf(raw, sizeof raw,
             "GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nConnection: close\r\n\r\n", target,
             request_id);
    struct hd_http_response r;
    cr_assert_eq(hd_http_exchange(port, raw, &r, 5000), 0, "no response to %s", target);
    cr_assert_eq(r.status, want_status, "%s: status %d", target, r.status);
    hd_http_response_free(&r);
}

/* A log field that may be written as a JSON number or a string. */
static long long number_field(json_t *line, const char *key)
{
    json_t *v = json_object_get(line, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    cr_assert(json_is_string(v), "log field %s missing or not a number", key);
    return strtoll(json_string_value(v), NULL, 10);
}

Test(http_logs, access_line_per_request, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    request(s.port, "/healthz", "log-test-1", 200);
    json_t *line = hd_test_log_find(&s, "request_id", "log-test-1", 3000);
    cr_assert(line, "no log line with request_id log-test-1");
    cr_assert_str_eq(json_string_value(json_object_get(line, "method")), "GET");
    cr_assert_str_eq(json_string_value(json_object_get(line, "route")), "/healthz");
    cr_assert_eq(number_field(line, "status"), 200);
    cr_assert_geq(number_field(line, "duration_us"), 0);
    cr_assert(json_object_get(line, "time"), "no time field");
    cr_assert(json_object_get(line, "level"), "no level field");
    json_decref(line);

    request(s.port, "/no/such/path", "log-test-2", 404);
    line = hd_test_log_find(&s, "request_id", "log-test-2", 3000);
    cr_assert(line, "no log line for the 404");
    cr_assert_eq(number_field(line, "status"), 404);
    json_decref(line);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_logs, query_string_is_never_logged, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    request(s.port, "/api/_echo?msg=hi&token=secret-looking-value", "log-q-1", 200);
    request(s.port, "/nope?token=secret-looking-value", "log-q-2", 404);
    request(s.port, "/healthz?access_token=secret-looking-value", "log-q-3", 200);
    json_t *line = hd_test_log_find(&s, "request_id", "log-q-1", 3000);
    cr_assert(line, "no log line with request_id log-q-1");
    cr_assert_str_eq(json_string_value(json_object_get(line, "route")), "/api/_echo");
    json_decref(line);
    json_t *found = hd_test_log_find(&s, "request_id", "log-q-3", 3000);
    cr_assert(found, "no line for log-q-3");
    json_decref(found);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    cr_assert(!hd_test_log_contains(&s, "secret-looking-value"),
              "a query-string token reached the log");
}

Test(http_logs, every_line_is_a_json_object, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    request(s.port, "/healthz", "log-j-1", 200);
    request(s.port, "/api/_echo?msg=x", "log-j-2", 200);
    struct hd_http_response r;
    cr_assert_eq(hd_http_exchange(s.port, "GARBAGE\r\n\r\n", &r, 5000), 0);
    hd_http_response_free(&r);
    json_t *found = hd_test_log_find(&s, "request_id", "log-j-2", 3000);
    cr_assert(found, "no line for log-j-2");
    json_decref(found);
    int code = hd_test_server_stop(&s);
    char *log = hd_test_server_log(&s);
    size_t lines = 0;
    for (char *l = strtok(log, "\n"); l; l = strtok(NULL, "\n")) {
        json_t *j = json_loads(l, 0, NULL);
        cr_assert(json_is_object(j), "log line is not a JSON object: %s", l);
        cr_assert(json_is_string(json_object_get(j, "msg")), "log line without msg: %s", l);
        cr_assert(json_is_string(json_object_get(j, "level")), "log line without level: %s", l);
        json_decref(j);
        lines++;
    }
    free(log);
    cr_assert_geq(lines, 3, "only %zu log lines", lines);
    cr_assert_eq(code, 0);
}

Test(http_logs, jwt_secret_is_never_logged, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"log\":{\"level\":\"debug\"}}");
    request(s.port, "/healthz", "log-s-1", 200);
    request(s.port, "/metrics", "log-s-2", 200);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    cr_assert(!hd_test_log_contains(&s, hd_test_secret()), "the jwt secret is in the log");
    cr_assert(hd_test_log_contains(&s, "log-s-2"), "no access line at all");
}

Test(http_logs, access_log_can_be_turned_off, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"log\":{\"access\":false}}");
    request(s.port, "/healthz", "log-off-1", 200);
    hd_test_sleep_ms(300);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    cr_assert(!hd_test_log_contains(&s, "log-off-1"), "an access line with log.access false");
}
