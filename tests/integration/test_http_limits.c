/* server.max_connections: over the limit a client is refused cleanly (503
 * or a close), never left hanging, and the server recovers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

#define LIMIT 8

static const char *const limit_config =
    "{\"server\":{\"max_connections\":8,\"io_threads\":1,\"header_timeout_ms\":20000}}";

/* A connection over the limit: 503 too_many_connections, or closed. */
static void expect_refused(int port)
{
    struct hd_http_conn c;
    struct hd_http_response r;
    cr_assert_eq(hd_http_conn_open(&c, port, 5000), 0, "connect over the limit");
    int rc = hd_http_conn_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    rc = hd_http_conn_read_response(&c, &r, 5000);
    cr_assert(rc == 0 || rc == -ECONNRESET, "connection over the limit left hanging (%d)", rc);
    if (rc == 0) {
        hd_assert_error(&r, 503, "too_many_connections");
        hd_http_response_free(&r);
        cr_assert_eq(hd_http_conn_wait_closed(&c, 3000), 0, "not closed after the 503");
    }
    hd_http_conn_close(&c);
}

/* GET /healthz answers 200 within @ms (closes take a moment to be seen). */
static bool healthy_within(int port, int ms)
{
    uint64_t deadline = hd_test_now_ms() + (uint64_t)ms;
    do {
        struct hd_http_response r;
        if (hd_http_get(port, "/healthz", &r, 1000) == 0) {
            int status = r.status;
            hd_http_response_free(&r);
            if (status == 200)
                return true;
        }
        hd_test_sleep_ms(50);
    } while (hd_test_now_ms() < deadline);
    return false;
}

Test(http_limits, connections_over_the_limit_are_refused, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, limit_config);
    hd_test_sleep_ms(200); /* let the harness's probe connection be closed */
    struct hd_http_conn idle[LIMIT];
    for (int i = 0; i < LIMIT; i++)
        cr_assert_eq(hd_http_conn_open(&idle[i], s.port, 5000), 0, "connect %d", i);
    hd_test_sleep_ms(200); /* all accepted */
    for (int i = 0; i < 3; i++)
        expect_refused(s.port);

    /* The 8 admitted connections still work. */
    for (int i = 0; i < LIMIT; i++) {
        struct hd_http_response r;
        cr_assert_eq(hd_http_conn_send_str(&idle[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
        cr_assert_eq(hd_http_conn_read_response(&idle[i], &r, 5000), 0,
                     "admitted connection %d got no response", i);
        cr_assert_eq(r.status, 200, "admitted connection %d: %d", i, r.status);
        hd_http_response_free(&r);
    }
    for (int i = 0; i < LIMIT; i++)
        hd_http_conn_close(&idle[i]);
    cr_assert(healthy_within(s.port, 3000), "no 200 after the 8 connections closed");

    /* And the limit can be filled again. */
    for (int i = 0; i < LIMIT; i++)
        cr_assert_eq(hd_http_conn_open(&idle[i], s.port, 5000), 0, "reconnect %d", i);
    hd_test_sleep_ms(200);
    expect_refused(s.port);
    for (int i = 0; i < LIMIT; i++)
        hd_http_conn_close(&idle[i]);
    cr_assert(healthy_within(s.port, 3000), "no 200 after the second round");
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* A burst of refusals does not wedge the accept loop or leak slots. */
Test(http_limits, many_refusals_then_recovery, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, limit_config);
    hd_test_sleep_ms(200);
    struct hd_http_conn idle[LIMIT];
    for (int i = 0; i < LIMIT; i++)
        cr_assert_eq(hd_http_conn_open(&idle[i], s.port, 5000), 0, "connect %d", i);
    hd_test_sleep_ms(200);
    for (int i = 0; i < 50; i++) {
        struct hd_http_conn c;
        cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0, "connect over limit %d", i);
        cr_assert_eq(hd_http_conn_wait_closed(&c, 5000), 0, "over-limit connection %d hangs", i);
        hd_http_conn_close(&c);
    }
    for (int i = 0; i < LIMIT; i++)
        hd_http_conn_close(&idle[i]);
    cr_assert(healthy_within(s.port, 3000), "no 200 after the burst");
    /* All 8 slots are free again. */
    for (int i = 0; i < LIMIT; i++) {
        struct hd_http_response r;
        cr_assert_eq(hd_http_conn_open(&idle[i], s.port, 5000), 0);
        cr_assert_eq(hd_http_conn_send_str(&idle[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
        cr_assert_eq(hd_http_conn_read_response(&idle[i], &r, 5000), 0, "slot %d not free", i);
        cr_assert_eq(r.status, 200);
        hd_http_response_free(&r);
    }
    for (int i = 0; i < LIMIT; i++)
        hd_http_conn_close(&idle[i]);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
