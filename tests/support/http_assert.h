/* Criterion checks of herald's response contract, shared by the HTTP
 * integration tests. Each one fails the running test with a message that
 * shows the response, so call them only from a test's thread. */
#ifndef HERALD_TEST_HTTP_ASSERT_H
#define HERALD_TEST_HTTP_ASSERT_H

#include <stdbool.h>

#include "http_client.h"

/**
 * Headers every herald response carries: X-Request-Id (1..128 characters of
 * [A-Za-z0-9._-]), X-Content-Type-Options: nosniff, and a Content-Length
 * equal to the body's length.
 */
void hd_assert_common_headers(const struct hd_http_response *r);

/**
 * A JSON response with status @status: the common headers, Content-Type
 * application/json, Cache-Control no-store, and a body that parses as JSON.
 */
void hd_assert_json_response(const struct hd_http_response *r, int status);

/**
 * A JSON error response: status @status and the body
 * {"error":{"code":@code,"message":"…"},"request_id":X-Request-Id}.
 * A NULL @code accepts any non-empty code.
 */
void hd_assert_error(const struct hd_http_response *r, int status, const char *code);

/** True when @id is a well-formed request id: 1..128 of [A-Za-z0-9._-]. */
bool hd_request_id_valid(const char *id);

/** The server answers GET /healthz 200 on a new connection. */
void hd_assert_healthy(int port);

#endif
