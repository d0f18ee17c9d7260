/* Keep-alive, connection close semantics and pipelining. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

Test(http_keepalive, several_requests_on_one_connection, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    static const char *const targets[] = {"/healthz", "/api/_echo?msg=a", "/nope", "/readyz",
                                          "/api/_echo?msg=b"};
    static const int want[] = {200, 200, 404, 200, 200};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char raw[256];
        snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", targets[i]);
        cr_assert_eq(hd_http_conn_send_str(&c, raw), 0, "send %zu", i);
        struct hd_http_response r;
        cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0, "no response to %s", targets[i]);
        cr_assert_eq(r.status, want[i], "%s: status %d", targets[i], r.status);
        cr_assert(!hd_http_header_has_token(&r, "Connection", "close"),
                  "%s: the server asked to close a keep-alive connection", targets[i]);
        hd_http_response_free(&r);
    }
    hd_http_conn_close(&c);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

static void expect_close_after_one(int port, const char *raw)
{
    struct hd_http_conn c;
    struct hd_http_response r;
    cr_assert_eq(hd_http_conn_open(&c, port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(&c, raw), 0);
    cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0, "no response to %s", raw);
    cr_assert_eq(r.status, 200, "status %d", r.status);
    hd_http_response_free(&r);
    cr_assert_eq(hd_http_conn_wait_closed(&c, 3000), 0, "still open after: %s", raw);
    cr_assert_eq(c.len, 0, "more bytes after the response: %.*s", (int)c.len, c.buf);
    hd_http_conn_close(&c);
}

Test(http_keepalive, http10_without_keepalive_closes, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    expect_close_after_one(s.port, "GET /healthz HTTP/1.0\r\n\r\n");
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_keepalive, connection_close_closes, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    expect_close_after_one(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    /* and requests pipelined behind it are not answered */
    expect_close_after_one(s.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                   "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_keepalive, http10_with_keepalive_stays_open, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    for (int i = 0; i < 2; i++) {
        struct hd_http_response r;
        cr_assert_eq(
            hd_http_conn_send_str(&c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            0);
        cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0, "request %d", i);
        cr_assert_eq(r.status, 200);
        hd_http_response_free(&r);
    }
    hd_http_conn_close(&c);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

#define N_PIPELINED 1000

/* 1,000 actor round trips written at once must come back all 200, in
 * order: echo i answers request i. */
Test(http_keepalive, pipelined_1000_requests_in_order, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    size_t cap = N_PIPELINED * 80, len = 0;
    char *raw = malloc(cap);
    for (int i = 0; i < N_PIPELINED; i++)
        len += (size_t)snprintf(raw + len, cap - len,
                                "GET /api/_echo?msg=m%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    /* A few large writes. */
    for (size_t off = 0; off < len; off += len / 4 + 1) {
        size_t part = len - off < len / 4 + 1 ? len - off : len / 4 + 1;
        cr_assert_eq(hd_http_conn_send(&c, raw + off, part, 20000), 0);
    }
    for (int i = 0; i < N_PIPELINED; i++) {
        struct hd_http_response r;
        int rc = hd_http_conn_read_response(&c, &r, 20000);
        cr_assert_eq(rc, 0, "response %d missing (%d)", i, rc);
        cr_assert_eq(r.status, 200, "response %d: status %d", i, r.status);
        char want[16];
        snprintf(want, sizeof want, "m%d", i);
        json_t *j = hd_http_response_json(&r);
        const char *got = json_string_value(json_object_get(j, "echo"));
        cr_assert(got && strcmp(got, want) == 0, "response %d echoes %s", i, r.body);
        json_decref(j);
        hd_http_response_free(&r);
    }
    struct hd_http_response extra;
    cr_assert_eq(hd_http_conn_read_response(&c, &extra, 200), -ETIMEDOUT, "an extra response");
    hd_http_conn_close(&c);
    free(raw);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* Pipelined requests mixing immediate answers and delayed actor answers
 * still come back in request order. */
Test(http_keepalive, pipelined_mixed_delays_in_order, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    const char *raw = "GET /api/_echo?msg=one&delay_ms=300 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /api/_echo?msg=three HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(&c, raw), 0);
    static const char *const want[] = {"\"one\"", "\"ok\"", "\"three\"", "not_found"};
    for (int i = 0; i < 4; i++) {
        struct hd_http_response r;
        cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0, "response %d missing", i);
        cr_assert(strstr(r.body, want[i]), "response %d is %s, want %s", i, r.body, want[i]);
        hd_http_response_free(&r);
    }
    hd_http_conn_close(&c);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
