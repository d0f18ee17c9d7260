/* The actor round trip (/api/_echo): replies reach the right connection,
 * in time, and never reach a connection that has gone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

static json_t *json_of(const struct hd_http_response *r)
{
    json_t *j = hd_http_response_json(r);
    cr_assert(j, "body is not JSON: %s", r->body);
    return j;
}

static void assert_no_crash(const struct hd_test_server *s)
{
    static const char *const markers[] = {"AddressSanitizer", "LeakSanitizer",
                                          "runtime error:", "ThreadSanitizer", "Segmentation"};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++)
        cr_assert(!hd_test_log_contains(s, markers[i]), "the log shows %s", markers[i]);
}

Test(http_echo, get_is_answered_by_the_actor, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r;
    cr_assert_eq(hd_http_get(s.port, "/api/_echo?msg=hello", &r, 5000), 0);
    hd_assert_json_response(&r, 200);
    json_t *j = json_of(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "echo")), "hello", "body %s", r.body);
    json_decref(j);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_echo, delay_is_honoured, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_response r;
    uint64_t t0 = hd_test_now_ms();
    cr_assert_eq(hd_http_get(s.port, "/api/_echo?msg=late&delay_ms=300", &r, 5000), 0);
    uint64_t took = hd_test_now_ms() - t0;
    hd_assert_json_response(&r, 200);
    cr_assert_geq(took, 280, "answered after %llu ms, want >= 300", (unsigned long long)took);
    cr_assert_lt(took, 3000, "answered after %llu ms", (unsigned long long)took);
    json_t *j = json_of(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "echo")), "late");
    json_decref(j);
    hd_http_response_free(&r);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

static void assert_bytes(int port, const char *raw, long long want)
{
    struct hd_http_response r;
    cr_assert_eq(hd_http_exchange(port, raw, &r, 5000), 0, "no response to %s", raw);
    hd_assert_json_response(&r, 200);
    json_t *j = json_of(&r);
    cr_assert(json_is_integer(json_object_get(j, "bytes")), "body %s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(j, "bytes")), want, "body %s", r.body);
    json_decref(j);
    hd_http_response_free(&r);
}

Test(http_echo, post_counts_body_bytes, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    assert_bytes(s.port,
                 "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                 "Connection: close\r\n\r\nhello world",
                 11);
    assert_bytes(s.port,
                 "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n",
                 0);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_echo, post_counts_chunked_body_bytes, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    assert_bytes(s.port,
                 "POST /api/_echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\na\r\n0123456789\r\n"
                 "0\r\n\r\n",
                 21);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_echo, post_large_body_in_pieces, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    size_t n = 200000;
    char head[256];
    snprintf(head, sizeof head,
             "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    char *body = malloc(n);
    memset(body, 'z', n);
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(&c, head), 0);
    for (size_t off = 0; off < n; off += 50000) {
        cr_assert_eq(hd_http_conn_send(&c, body + off, 50000, 5000), 0);
        hd_test_sleep_ms(20);
    }
    struct hd_http_response r;
    cr_assert_eq(hd_http_conn_read_response(&c, &r, 5000), 0);
    hd_assert_json_response(&r, 200);
    json_t *j = json_of(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "bytes")), (long long)n, "body %s", r.body);
    json_decref(j);
    hd_http_response_free(&r);
    hd_http_conn_close(&c);
    free(body);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

#define N_CLIENTS 20

/* Replies come back in the reverse order of the requests (the first one
 * waits longest): each must still reach its own connection. */
Test(http_echo, concurrent_clients_get_their_own_replies, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_conn c[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        char raw[256];
        snprintf(raw, sizeof raw, "GET /api/_echo?msg=c%d&delay_ms=%d HTTP/1.1\r\nHost: x\r\n\r\n",
                 i, (N_CLIENTS - i) * 20);
        cr_assert_eq(hd_http_conn_open(&c[i], s.port, 5000), 0);
        cr_assert_eq(hd_http_conn_send_str(&c[i], raw), 0);
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        struct hd_http_response r;
        cr_assert_eq(hd_http_conn_read_response(&c[i], &r, 5000), 0, "client %d: no reply", i);
        cr_assert_eq(r.status, 200);
        char want[16];
        snprintf(want, sizeof want, "c%d", i);
        json_t *j = json_of(&r);
        cr_assert_str_eq(json_string_value(json_object_get(j, "echo")), want, "client %d got %s", i,
                         r.body);
        json_decref(j);
        hd_http_response_free(&r);
        hd_http_conn_close(&c[i]);
    }
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_echo, hangup_while_waiting_on_actor, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct hd_http_conn c;
    cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
    cr_assert_eq(hd_http_conn_send_str(&c, "GET /api/_echo?msg=x&delay_ms=500 HTTP/1.1\r\n"
                                           "Host: x\r\n\r\n"),
                 0);
    hd_http_conn_close(&c);
    hd_test_sleep_ms(800); /* the reply arrives for a connection that is gone */
    hd_assert_healthy(s.port);
    assert_no_crash(&s);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(http_echo, hangup_while_waiting_on_actor_50_times, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    for (int i = 0; i < 50; i++) {
        struct hd_http_conn c;
        char raw[256];
        snprintf(raw, sizeof raw, "GET /api/_echo?msg=x%d&delay_ms=500 HTTP/1.1\r\nHost: x\r\n\r\n",
                 i);
        cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0, "connect %d", i);
        cr_assert_eq(hd_http_conn_send_str(&c, raw), 0);
        if (i % 2)
            hd_http_conn_abort(&c); /* RST */
        else
            hd_http_conn_close(&c); /* FIN */
    }
    hd_assert_healthy(s.port);
    hd_test_sleep_ms(800);
    hd_assert_healthy(s.port);
    assert_no_crash(&s);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* The old connection's reply lands while a new connection (likely reusing
 * its fd) waits: the new one gets exactly its own reply. */
Test(http_echo, late_reply_never_reaches_a_new_connection, .timeout = 30)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"io_threads\":1}}");
    for (int round = 0; round < 5; round++) {
        struct hd_http_conn old, fresh;
        cr_assert_eq(hd_http_conn_open(&old, s.port, 5000), 0);
        cr_assert_eq(hd_http_conn_send_str(&old, "GET /api/_echo?msg=old&delay_ms=200 HTTP/1.1\r\n"
                                                 "Host: x\r\n\r\n"),
                     0);
        hd_http_conn_close(&old);
        hd_test_sleep_ms(30);
        cr_assert_eq(hd_http_conn_open(&fresh, s.port, 5000), 0);
        cr_assert_eq(hd_http_conn_send_str(&fresh, "GET /api/_echo?msg=new&delay_ms=400 HTTP/1.1"
                                                   "\r\nHost: x\r\n\r\n"),
                     0);
        struct hd_http_response r;
        cr_assert_eq(hd_http_conn_read_response(&fresh, &r, 5000), 0);
        json_t *j = json_of(&r);
        cr_assert_str_eq(json_string_value(json_object_get(j, "echo")), "new", "got %s", r.body);
        json_decref(j);
        hd_http_response_free(&r);
        cr_assert_eq(hd_http_conn_read_response(&fresh, &r, 300), -ETIMEDOUT,
                     "a second response arrived: %d %s", r.status, r.body);
        hd_http_conn_close(&fresh);
    }
    assert_no_crash(&s);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
