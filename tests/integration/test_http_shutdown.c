/* Graceful shutdown: SIGTERM/SIGINT stop accepting, in-flight requests
 * finish within server.shutdown_grace_s, exit 0; a second signal exits at
 * once. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

static const char *const grace5 = "{\"server\":{\"shutdown_grace_s\":5}}";

static void send_delayed(struct hd_test_server *s, struct hd_http_conn *c, int delay_ms)
{
    char raw[256];
    snprintf(raw, sizeof raw, "GET /api/_echo?msg=inflight&delay_ms=%d HTTP/1.1\r\nHost: x\r\n\r\n",
             delay_ms);
    cr_assert_eq(hd_http_conn_open(c, s->port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(c, raw), 0);
    hd_test_sleep_ms(150); /* parked on the actor */
}

static void assert_shutdown_finishes_inflight(int sig)
{
    struct hd_test_server s;
    hd_test_server_start(&s, grace5);
    struct hd_http_conn c;
    send_delayed(&s, &c, 800);
    uint64_t t0 = hd_test_now_ms();
    cr_assert_eq(hd_test_server_signal(&s, sig), 0);
    struct hd_http_response r;
    int rc = hd_http_conn_read_response(&c, &r, 5000);
    cr_assert_eq(rc, 0, "the in-flight request got no response after the signal (%d)", rc);
    cr_assert_eq(r.status, 200, "in-flight request: %d %s", r.status, r.body);
    cr_assert(strstr(r.body, "inflight"), "body %s", r.body);
    hd_http_response_free(&r);
    int code = hd_test_server_wait(&s, 6000);
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert_eq(code, 0, "exit %d after signal %d", code, sig);
    cr_assert_lt(took, 5500, "exit took %llu ms, grace is 5 s", (unsigned long long)took);
    hd_http_conn_close(&c);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_shutdown, sigterm_lets_inflight_request_finish, .timeout = 30)
{
    assert_shutdown_finishes_inflight(SIGTERM);
}

Test(http_shutdown, sigint_lets_inflight_request_finish, .timeout = 30)
{
    assert_shutdown_finishes_inflight(SIGINT);
}

Test(http_shutdown, new_connections_refused_after_sigterm, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, grace5);
    struct hd_http_conn c;
    send_delayed(&s, &c, 1000);
    cr_assert_eq(hd_test_server_signal(&s, SIGTERM), 0);
    hd_test_sleep_ms(200);
    cr_assert_eq(hd_test_server_wait(&s, 0), -ETIMEDOUT, "exited before the request finished");
    struct hd_http_conn late;
    int rc = hd_http_conn_open(&late, s.port, 2000);
    if (rc == 0) {
        struct hd_http_response r;
        hd_http_conn_send_str(&late, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        rc = hd_http_conn_read_response(&late, &r, 3000);
        cr_assert(rc == -ECONNRESET || (rc == 0 && r.status == 503),
                  "a new connection during shutdown was served (%d, status %d)", rc, r.status);
        hd_http_response_free(&r);
        hd_http_conn_close(&late);
    } else {
        cr_assert_eq(rc, -ECONNREFUSED, "connect during shutdown: %d", rc);
    }
    struct hd_http_response r;
    cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0, "in-flight request lost");
    cr_assert_eq(r.status, 200);
    hd_http_response_free(&r);
    hd_http_conn_close(&c);
    cr_assert_eq(hd_test_server_wait(&s, 6000), 0, "exit status");
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_shutdown, idle_connections_do_not_hold_shutdown, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, grace5);
    struct hd_http_conn idle, keep;
    cr_assert_eq(hd_http_conn_open(&idle, s.port, 5000), 0); /* never sends */
    cr_assert_eq(hd_http_conn_open(&keep, s.port, 5000), 0); /* keep-alive, between requests */
    struct hd_http_response r;
    cr_assert_eq(hd_http_conn_send_str(&keep, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    cr_assert_eq(hd_http_conn_read_response(&keep, &r, 5000), 0);
    hd_http_response_free(&r);
    uint64_t t0 = hd_test_now_ms();
    cr_assert_eq(hd_test_server_signal(&s, SIGTERM), 0);
    int code = hd_test_server_wait(&s, 6000);
    cr_assert_eq(code, 0, "exit %d", code);
    cr_assert_lt(hd_test_now_ms() - t0, 5500, "idle connections held the shutdown");
    cr_assert_eq(hd_http_conn_wait_closed(&keep, 1000), 0, "keep-alive connection left open");
    hd_http_conn_close(&idle);
    hd_http_conn_close(&keep);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* A request stuck reading its body holds the shutdown at most the grace. */
Test(http_shutdown, stuck_request_is_cut_at_grace, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"shutdown_grace_s\":2,\"body_timeout_ms\":30000}}");
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(&c, "POST /api/_echo HTTP/1.1\r\nHost: x\r\n"
                                           "Content-Length: 100\r\n\r\npartial"),
                 0);
    hd_test_sleep_ms(150);
    uint64_t t0 = hd_test_now_ms();
    cr_assert_eq(hd_test_server_signal(&s, SIGTERM), 0);
    int code = hd_test_server_wait(&s, 6000);
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert_neq(code, -ETIMEDOUT, "still running 6 s after SIGTERM with a 2 s grace");
    cr_assert_lt(took, 3500, "exit took %llu ms with a 2 s grace", (unsigned long long)took);
    cr_assert(code >= 0 && code < 128, "killed by signal %d", code - 128);
    hd_http_conn_close(&c);
    hd_test_server_stop(&s);
    hd_test_remove_dir(s.dir); /* a non-zero exit is allowed here: no need to keep it */
}

Test(http_shutdown, second_signal_exits_at_once, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"shutdown_grace_s\":10,\"body_timeout_ms\":30000}}");
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(&c, "POST /api/_echo HTTP/1.1\r\nHost: x\r\n"
                                           "Content-Length: 100\r\n\r\npartial"),
                 0);
    hd_test_sleep_ms(150);
    cr_assert_eq(hd_test_server_signal(&s, SIGTERM), 0);
    hd_test_sleep_ms(300);
    cr_assert_eq(hd_test_server_wait(&s, 0), -ETIMEDOUT, "exited before the grace ran out");
    uint64_t t0 = hd_test_now_ms();
    cr_assert_eq(hd_test_server_signal(&s, SIGINT), 0);
    int code = hd_test_server_wait(&s, 5000);
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert_neq(code, -ETIMEDOUT, "a second signal did not end the process");
    cr_assert_lt(took, 1500, "the second signal took %llu ms", (unsigned long long)took);
    hd_http_conn_close(&c);
    hd_test_server_stop(&s);
    hd_test_remove_dir(s.dir); /* a non-zero exit is allowed here: no need to keep it */
}
