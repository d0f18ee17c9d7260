/* Bad input: each case gets a clean error (or a clean close), and the same
 * server goes on answering GET /healthz on a new connection. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "http_assert.h"
#include "http_client.h"

/* Sends @raw (@len bytes) on a new connection and reads one response.
 * Returns 0 with @r filled, or -errno (the server closed, or timed out). */
static int send_raw(int port, const char *raw, size_t len, struct hd_http_conn *c,
                    struct hd_http_response *r, int timeout_ms)
{
    cr_assert_eq(hd_http_conn_open(c, port, 5000), 0, "connect");
    int rc = hd_http_conn_send(c, raw, len, 5000);
    if (rc == 0 || rc == -EPIPE || rc == -ECONNRESET)
        rc = hd_http_conn_read_response(c, r, timeout_ms);
    return rc;
}

/* @raw must be answered with @status (error code @code, NULL for any). */
static void expect_error(int port, const char *raw, size_t len, int status, const char *code)
{
    struct hd_http_conn c;
    struct hd_http_response r;
    int rc = send_raw(port, raw, len, &c, &r, 5000);
    cr_assert_eq(rc, 0, "no response (%d: %s) to %.60s", rc, strerror(-rc), raw);
    hd_assert_error(&r, status, code);
    hd_http_response_free(&r);
    hd_http_conn_close(&c);
}

/* @raw gets @status (@code) or a close without response; never hangs. */
static void expect_error_or_close(int port, const char *raw, int status, const char *code)
{
    struct hd_http_conn c;
    struct hd_http_response r;
    int rc = send_raw(port, raw, strlen(raw), &c, &r, 5000);
    cr_assert(rc == 0 || rc == -ECONNRESET, "neither response nor close (%d) for %.60s", rc, raw);
    if (rc == 0) {
        hd_assert_error(&r, status, code);
        hd_http_response_free(&r);
    }
    hd_http_conn_close(&c);
}

#define START(s, over)                                                                             \
    struct hd_test_server s;                                                                       \
    hd_test_server_start(&s, over)

#define FINISH(s)                                                                                  \
    do {                                                                                           \
        hd_assert_healthy(s.port);                                                                 \
        cr_assert_eq(hd_test_server_stop(&s), 0, "herald did not exit 0");                         \
    } while (0)

Test(http_bad_input, garbage_request_line, .timeout = 30)
{
    START(s, NULL);
    expect_error(s.port, "GARBAGE\r\n\r\n", 11, 400, "bad_request");
    FINISH(s);
}

Test(http_bad_input, request_line_without_version, .timeout = 30)
{
    START(s, NULL);
    expect_error_or_close(s.port, "GET /\r\n\r\n", 400, "bad_request");
    FINISH(s);
}

Test(http_bad_input, request_line_with_bad_version, .timeout = 30)
{
    START(s, NULL);
    expect_error_or_close(s.port, "GET /healthz HTTP/9.x\r\nHost: x\r\n\r\n", 400, NULL);
    FINISH(s);
}

Test(http_bad_input, unknown_method, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    expect_error(s.port, raw, strlen(raw), 400, NULL);
    FINISH(s);
}

Test(http_bad_input, header_without_colon, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n";
    expect_error(s.port, raw, strlen(raw), 400, NULL);
    FINISH(s);
}

Test(http_bad_input, header_over_limit_is_431, .timeout = 30)
{
    START(s, "{\"server\":{\"max_header_bytes\":1024}}");
    char raw[8192];
    int n = snprintf(raw, sizeof raw, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(raw + n, 'a', 4096);
    n += 4096;
    n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\n\r\n");
    expect_error(s.port, raw, (size_t)n, 431, "header_too_large");
    FINISH(s);
}

Test(http_bad_input, many_headers_over_limit_is_431, .timeout = 30)
{
    START(s, "{\"server\":{\"max_header_bytes\":1024}}");
    char raw[8192];
    int n = snprintf(raw, sizeof raw, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 100; i++)
        n += snprintf(raw + n, sizeof raw - (size_t)n, "X-H%d: vvvvvvvvvvvvvvvvvvvv\r\n", i);
    n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\n");
    expect_error(s.port, raw, (size_t)n, 431, "header_too_large");
    FINISH(s);
}

Test(http_bad_input, body_over_limit_is_413, .timeout = 30)
{
    START(s, "{\"server\":{\"max_body_bytes\":1024}}");
    /* Only the headers: the answer must not wait for the 2 KiB body. */
    const char *raw = "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n";
    expect_error(s.port, raw, strlen(raw), 413, "body_too_large");
    FINISH(s);
}

Test(http_bad_input, chunked_body_over_limit_is_413, .timeout = 30)
{
    START(s, "{\"server\":{\"max_body_bytes\":1024}}");
    char raw[4096];
    int n = snprintf(raw, sizeof raw,
                     "POST /api/_echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        n += snprintf(raw + n, sizeof raw - (size_t)n, "200\r\n");
        memset(raw + n, 'c', 512);
        n += 512;
        n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\n");
    }
    n += snprintf(raw + n, sizeof raw - (size_t)n, "0\r\n\r\n");
    expect_error(s.port, raw, (size_t)n, 413, "body_too_large");
    FINISH(s);
}

/* The surplus " world" is read as the next request: 400, then close. */
Test(http_bad_input, content_length_smaller_than_body, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello world";
    struct hd_http_conn c;
    struct hd_http_response r;
    cr_assert_eq(send_raw(s.port, raw, strlen(raw), &c, &r, 5000), 0);
    hd_assert_json_response(&r, 200);
    json_t *j = hd_http_response_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "bytes")), 5, "body %s", r.body);
    json_decref(j);
    hd_http_response_free(&r);
    int rc = hd_http_conn_read_response(&c, &r, 5000);
    cr_assert_eq(rc, 0, "the surplus \" world\" got no 400 (%d)", rc);
    hd_assert_error(&r, 400, NULL);
    hd_http_response_free(&r);
    cr_assert_eq(hd_http_conn_wait_closed(&c, 3000), 0, "not closed after the bad request");
    hd_http_conn_close(&c);
    FINISH(s);
}

Test(http_bad_input, content_length_larger_than_body_times_out, .timeout = 30)
{
    START(s, "{\"server\":{\"body_timeout_ms\":1000}}");
    const char *raw = "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-this";
    struct hd_http_conn c;
    struct hd_http_response r;
    uint64_t t0 = hd_test_now_ms();
    int rc = send_raw(s.port, raw, strlen(raw), &c, &r, 6000);
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert(rc == 0 || rc == -ECONNRESET, "neither 408 nor close within 6 s (%d)", rc);
    cr_assert_lt(took, 3500, "cut off after %llu ms, want ~1000", (unsigned long long)took);
    cr_assert_geq(took, 800, "cut off after only %llu ms", (unsigned long long)took);
    if (rc == 0) {
        hd_assert_error(&r, 408, "request_timeout");
        hd_http_response_free(&r);
        cr_assert_eq(hd_http_conn_wait_closed(&c, 3000), 0, "not closed after 408");
    }
    hd_http_conn_close(&c);
    FINISH(s);
}

/* Request smuggling: with both framings the request is refused and the
 * bytes after it are never answered as a second request. */
Test(http_bad_input, content_length_and_transfer_encoding, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    struct hd_http_conn c;
    struct hd_http_response r;
    int rc = send_raw(s.port, raw, strlen(raw), &c, &r, 5000);
    cr_assert_eq(rc, 0, "no response (%d)", rc);
    hd_assert_error(&r, 400, NULL);
    hd_http_response_free(&r);
    rc = hd_http_conn_read_response(&c, &r, 2000);
    cr_assert_neq(rc, 0, "the smuggled request was answered: %d %s", r.status, r.body);
    cr_assert_eq(hd_http_conn_wait_closed(&c, 3000), 0, "not closed after the 400");
    hd_http_conn_close(&c);
    FINISH(s);
}

Test(http_bad_input, duplicate_content_length, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      "Content-Length: 11\r\n\r\nhello world";
    expect_error(s.port, raw, strlen(raw), 400, NULL);
    FINISH(s);
}

Test(http_bad_input, negative_content_length, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "POST /api/_echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nhello";
    expect_error(s.port, raw, strlen(raw), 400, NULL);
    FINISH(s);
}

Test(http_bad_input, chunked_bad_size_line, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "POST /api/_echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "zz\r\nhello\r\n0\r\n\r\n";
    expect_error(s.port, raw, strlen(raw), 400, NULL);
    FINISH(s);
}

Test(http_bad_input, percent_encoded_non_utf8_path, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "GET /api/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    expect_error(s.port, raw, strlen(raw), 400, "bad_request");
    FINISH(s);
}

Test(http_bad_input, raw_non_utf8_path, .timeout = 30)
{
    START(s, NULL);
    const char *raw = "GET /api/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    expect_error(s.port, raw, strlen(raw), 400, "bad_request");
    FINISH(s);
}

/* Not in the path, so either answer is fine, but it must be valid JSON. */
Test(http_bad_input, non_utf8_query_value, .timeout = 30)
{
    START(s, NULL);
    const char *targets[] = {"/api/_echo?msg=%ff%fe", "/api/_echo?msg=\xff\xfe",
                             "/api/_echo?msg=%00", "/api/_echo?msg=%22%5c"};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        struct hd_http_response r;
        int rc = hd_http_get(s.port, targets[i], &r, 5000);
        cr_assert_eq(rc, 0, "no response to %s (%d)", targets[i], rc);
        cr_assert(r.status == 200 || r.status == 400, "%s: status %d", targets[i], r.status);
        hd_assert_json_response(&r, r.status);
        hd_http_response_free(&r);
    }
    FINISH(s);
}

Test(http_bad_input, hangup_mid_headers, .timeout = 30)
{
    START(s, NULL);
    for (int i = 0; i < 10; i++) {
        struct hd_http_conn c;
        cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
        cr_assert_eq(hd_http_conn_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Partial: ab"),
                     0);
        if (i % 2)
            hd_http_conn_abort(&c);
        else
            hd_http_conn_close(&c);
    }
    FINISH(s);
}

Test(http_bad_input, hangup_mid_body, .timeout = 30)
{
    START(s, NULL);
    for (int i = 0; i < 10; i++) {
        struct hd_http_conn c;
        cr_assert_eq(hd_http_conn_open(&c, s.port, 5000), 0);
        cr_assert_eq(hd_http_conn_send_str(&c, "POST /api/_echo HTTP/1.1\r\nHost: x\r\n"
                                               "Content-Length: 100\r\n\r\nfirst-bytes"),
                     0);
        if (i % 2)
            hd_http_conn_abort(&c);
        else
            hd_http_conn_close(&c);
    }
    FINISH(s);
}
