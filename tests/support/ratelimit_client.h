/* Rate-limit helpers for integration tests: requests with a chosen client
 * address (X-Forwarded-For) and request id, the RateLimit / RateLimit-Policy
 * / Retry-After fields of an answer (draft-ietf-httpapi-ratelimit-headers,
 * see src/api/limit.h), counters from /metrics, and scripts/services.
 *
 * Two kinds of function, as in auth_client.h:
 *   - "any thread": return a value or -errno and never assert;
 *   - the rest report failures with Criterion asserts: test thread only. */
#ifndef HERALD_TEST_RATELIMIT_CLIENT_H
#define HERALD_TEST_RATELIMIT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "http_client.h"

/* What one request carries besides its target and body; NULL fields are left out. */
struct hd_test_rl_req {
    const char *xff;        /* X-Forwarded-For value */
    const char *request_id; /* X-Request-Id value */
    const char *access;     /* Authorization: Bearer value */
};

/* ---- requests (any thread) ---------------------------------------------------- */

/**
 * @method @target with @json as an application/json body (NULL: no body)
 * and the extra headers of @req (NULL: none), on a new connection. Reads the
 * answer into @r (caller frees). Returns 0 or -errno. Any thread.
 */
int hd_test_rl_send(int port, const char *method, const char *target, const char *json,
                    const struct hd_test_rl_req *req, struct hd_http_response *r);

/** POST /api/auth/login {"email","password"} with @req. Any thread. */
int hd_test_rl_login(int port, const char *email, const char *password,
                     const struct hd_test_rl_req *req, struct hd_http_response *r);

/** POST /api/auth/register {"email","password"} with @req. Any thread. */
int hd_test_rl_register(int port, const char *email, const char *password,
                        const struct hd_test_rl_req *req, struct hd_http_response *r);

/* ---- header fields (any thread) ------------------------------------------------ */

/**
 * Parameter @param ("r", "t", "q", "w") of the item named @policy in the
 * list field @name ("RateLimit", "RateLimit-Policy"), looking through every
 * line of that field. Returns its value (>= 0), -ENOENT when there is no
 * such item or parameter, -EPROTO when the value is not a whole number.
 */
long hd_test_rl_param(const struct hd_http_response *r, const char *name, const char *policy,
                      const char *param);

/** Items (policies) in all lines of list field @name; 0 when absent. */
size_t hd_test_rl_items(const struct hd_http_response *r, const char *name);

/** All lines of field @name joined with ", " (malloc'd; "" when absent). */
char *hd_test_rl_joined(const struct hd_http_response *r, const char *name);

/* ---- checks (test thread) -------------------------------------------------------- */

/**
 * Asserts @r is the 429 of a rate limit: the error body
 * {"error":{"code":"rate_limited",...},"request_id":...}, a RateLimit item
 * for @policy with r=0, and Retry-After a whole number in 1..@max_retry_s.
 * Returns the Retry-After seconds. @what names the case in messages.
 */
long hd_test_rl_assert_limited(const struct hd_http_response *r, const char *policy,
                               long max_retry_s, const char *what);

/** Asserts @r carries no RateLimit, RateLimit-Policy nor Retry-After field. */
void hd_test_rl_assert_no_fields(const struct hd_http_response *r, const char *what);

/**
 * The value of the series @series (the metric name with its labels, exactly
 * as herald writes it: `herald_x{a="b"}`) in GET /metrics of @port, or -1
 * when the series is absent. Asserts /metrics answers 200.
 */
double hd_test_rl_metric(int port, const char *series);

/**
 * Polls /metrics up to @timeout_ms until @series equals @want. Returns the
 * last value read (-1: absent).
 */
double hd_test_rl_metric_wait(int port, const char *series, double want, int timeout_ms);

/* ---- addresses and services --------------------------------------------------------- */

/** A random address in 10.0.0.0/8 (fresh per call), as text. Any thread. */
void hd_test_rl_random_ip(char *out, size_t cap);

#endif
