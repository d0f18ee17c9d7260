/* Timeouts: slow and silent clients are cut off, idle keep-alive
 * connections are closed, and the server keeps serving. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

/* After the server stopped reading @c: a 408 (then close) or a bare close
 * must have come. */
static void expect_408_or_closed(struct hd_http_conn *c)
{
    struct hd_http_response r;
    int rc = hd_http_conn_read_response(c, &r, 2000);
    cr_assert(rc == 0 || rc == -ECONNRESET, "neither 408 nor close (%d)", rc);
    if (rc == 0) {
        hd_assert_error(&r, 408, "request_timeout");
        hd_http_response_free(&r);
        cr_assert_eq(hd_http_conn_wait_closed(c, 2000), 0, "not closed after 408");
    }
}

/* Slowloris: a header byte every 300 ms would take ~30 s; the header
 * timeout of 1 s must end it after about a second. */
Test(http_timeouts, slow_headers_are_cut_off, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"header_timeout_ms\":1000}}");
    char raw[256];
    int n = snprintf(raw, sizeof raw, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    memset(raw + n, 's', 60);
    n += 60;
    n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\n\r\n");
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    uint64_t t0 = hd_test_now_ms();
    size_t sent = hd_http_conn_send_slowly(&c, raw, (size_t)n, 300);
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert_lt(sent, (size_t)n, "the server let all %d bytes through, one per 300 ms", n);
    cr_assert_lt(took, 3500, "cut off only after %llu ms", (unsigned long long)took);
    cr_assert_geq(took, 700, "cut off after %llu ms, before the 1 s timeout",
                  (unsigned long long)took);
    expect_408_or_closed(&c);
    hd_http_conn_close(&c);
    hd_assert_healthy(s.port);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_timeouts, silent_client_is_closed, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"header_timeout_ms\":1000,\"idle_timeout_s\":30}}");
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    uint64_t t0 = hd_test_now_ms();
    cr_assert_eq(hd_http_conn_wait_closed(&c, 5000), 0, "a silent client is still connected");
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert_lt(took, 3500, "closed after %llu ms", (unsigned long long)took);
    cr_assert_geq(took, 700, "closed after only %llu ms", (unsigned long long)took);
    /* Either nothing or a 408 may have been written before the close. */
    cr_assert(c.len == 0 || strncmp(c.buf, "HTTP/1.1 408", 12) == 0, "unexpected bytes: %.*s",
              (int)c.len, c.buf);
    hd_http_conn_close(&c);
    hd_assert_healthy(s.port);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_timeouts, idle_keepalive_connection_is_closed, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"idle_timeout_s\":1,\"header_timeout_ms\":20000}}");
    struct hd_http_conn c;
    struct hd_http_response r;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0);
    cr_assert_eq(r.status, 200);
    hd_http_response_free(&r);
    uint64_t t0 = hd_test_now_ms();
    cr_assert_eq(hd_http_conn_wait_closed(&c, 5000), 0, "idle connection still open after 5 s");
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert_lt(took, 3500, "closed after %llu ms, want ~1000", (unsigned long long)took);
    cr_assert_geq(took, 700, "closed after only %llu ms", (unsigned long long)took);
    cr_assert_eq(c.len, 0, "bytes on an idle connection: %.*s", (int)c.len, c.buf);
    hd_http_conn_close(&c);
    hd_assert_healthy(s.port);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* Activity resets the idle timer: requests every 600 ms with a 1 s idle
 * timeout keep the connection for well past a second. */
Test(http_timeouts, active_keepalive_connection_stays_open, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"idle_timeout_s\":1,\"header_timeout_ms\":20000}}");
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    for (int i = 0; i < 5; i++) {
        struct hd_http_response r;
        cr_assert_eq(hd_http_conn_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 0,
                     "send %d", i);
        cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0, "request %d: no response", i);
        cr_assert_eq(r.status, 200);
        hd_http_response_free(&r);
        hd_test_sleep_ms(600);
    }
    hd_http_conn_close(&c);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
