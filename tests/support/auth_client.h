/* Auth helpers for integration tests: requests to herald's /api/auth and
 * /api/me routes, the token bundle they answer with, JWT forging with the
 * harness's jwt.secret, and a fresh store (SQLite or a new Postgres
 * database) per test.
 *
 * Two kinds of function, as in harness.h:
 *   - "any thread": return a status or -errno and never assert, so client
 *     threads of a concurrency test may call them;
 *   - the rest report failures with Criterion asserts: test thread only. */
#ifndef HERALD_TEST_AUTH_CLIENT_H
#define HERALD_TEST_AUTH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "http_client.h"
#include "store_fixture.h" /* enum hd_test_backend */

/* A strong password for tests: 12..128 bytes, no NUL. */
#define HD_TEST_AUTH_PASSWORD "correct horse battery staple"

#define HD_TEST_AUTH_TIMEOUT_MS  15000
#define HD_TEST_AUTH_ID_CAP      40   /* a UUID and its NUL, rounded up */
#define HD_TEST_AUTH_REFRESH_CAP 64   /* a refresh token is 43 characters */
#define HD_TEST_AUTH_ACCESS_CAP  4200 /* herald refuses access tokens over 4096 bytes */

/* What register, login and refresh answer with. */
struct hd_test_auth_tokens {
    char access[HD_TEST_AUTH_ACCESS_CAP];
    char refresh[HD_TEST_AUTH_REFRESH_CAP];
    char session_id[HD_TEST_AUTH_ID_CAP];
    char user_id[HD_TEST_AUTH_ID_CAP];
    char org_id[HD_TEST_AUTH_ID_CAP];
    char email[256];
};

/* ---- requests (any thread) -------------------------------------------------- */

/**
 * Sends one request on a new connection and reads the response into @r
 * (caller frees with hd_http_response_free). Adds Host, "Connection: close"
 * and, when @body is not NULL, Content-Length (@body_len bytes, which may
 * hold NULs or invalid UTF-8). @headers: extra "Name: value" lines,
 * NULL-terminated, or NULL. No Content-Type is added: see hd_test_auth_post.
 * A peer that answers early and closes while the body is still being sent
 * is fine: the answer is read. Returns 0 or -errno. Any thread.
 */
int hd_test_auth_request(int port, const char *method, const char *target,
                         const char *const *headers, const char *body, size_t body_len,
                         struct hd_http_response *r);

/**
 * hd_test_auth_request with "Content-Type: application/json", the NUL-terminated
 * @json body (NULL: none) and, when @access is not NULL,
 * "Authorization: Bearer @access". Any thread.
 */
int hd_test_auth_post(int port, const char *target, const char *json, const char *access,
                      struct hd_http_response *r);

/** @method @target with "Authorization: Bearer @access" (NULL: none), no body. Any thread. */
int hd_test_auth_call(int port, const char *method, const char *target, const char *access,
                      struct hd_http_response *r);

/** Status of hd_test_auth_call, or -errno when no response came. Any thread. */
int hd_test_auth_status(int port, const char *method, const char *target, const char *access);

/** POST /api/auth/refresh {"refresh_token": @refresh}. Any thread. */
int hd_test_auth_refresh_raw(int port, const char *refresh, struct hd_http_response *r);

/**
 * Fills @out from a register/login/refresh response body. Returns 0, or
 * -EPROTO when a field is missing. Any thread.
 */
int hd_test_auth_tokens_parse(const struct hd_http_response *r, struct hd_test_auth_tokens *out);

/** Writes a unique address "<tag>-<pid>-<counter>-<random>@example.test" into @out. Any thread. */
void hd_test_auth_unique_email(char *out, size_t cap, const char *tag);

/* ---- flows (test thread) ----------------------------------------------------- */

/**
 * Registers @email with @password (and @username when not NULL); asserts
 * 201, the token bundle's shape (user, Bearer, expires_in, a 43-character
 * refresh token, session_id) and the refresh cookie; fills @out.
 */
void hd_test_auth_register(int port, const char *email, const char *password, const char *username,
                           struct hd_test_auth_tokens *out);

/** Registers a new user with a unique email made from @tag: the admin of a
 * new organization. Asserts 201; fills @out. Test thread. */
void hd_test_auth_new_admin(int port, const char *tag, struct hd_test_auth_tokens *out);

/** @admin creates a member of its organization (POST /api/admin/users, a
 * unique email from @tag), who then logs in. Asserts each step and that the
 * member is in the admin's organization; fills @out. Test thread. */
void hd_test_auth_new_member(int port, const struct hd_test_auth_tokens *admin, const char *tag,
                             struct hd_test_auth_tokens *out);

/** Logs in; asserts 200 and the bundle's shape; fills @out. */
void hd_test_auth_login(int port, const char *email, const char *password,
                        struct hd_test_auth_tokens *out);

/** Refreshes with @refresh in the body; asserts 200 and the shape; fills @out. */
void hd_test_auth_refresh(int port, const char *refresh, struct hd_test_auth_tokens *out);

/** Asserts GET /api/me with @access answers 200 with user @user_id. */
void hd_test_auth_assert_me(int port, const char *access, const char *user_id);

/**
 * Asserts @r is 401 invalid_token (error body, request_id) with
 * WWW-Authenticate: Bearer error="invalid_token". @what names the case in
 * failure messages.
 */
void hd_test_auth_assert_invalid_token(const struct hd_http_response *r, const char *what);

/** Asserts GET /api/me with @access is refused as hd_test_auth_assert_invalid_token. */
void hd_test_auth_assert_refused(int port, const char *access, const char *what);

/** Asserts the token bundle @r carries (status @status) is well formed. */
void hd_test_auth_assert_bundle(const struct hd_http_response *r, int status);

/** The Set-Cookie header setting herald_refresh, or NULL. Borrowed from @r. */
const char *hd_test_auth_refresh_cookie(const struct hd_http_response *r);

/* ---- JWT forging (any thread) ------------------------------------------------ */

/** The payload of @token (its middle segment) as JSON; new reference, or NULL. */
json_t *hd_test_auth_jwt_claims(const char *token);

/**
 * Builds header.payload.signature from the JSON texts @header and @payload
 * (encoded as given, base64url without padding). The signature is
 * HMAC-SHA-256 over "header.payload" with @key (@key_len bytes); a NULL @key
 * gives an empty signature. Returns a malloc'd string. Any thread.
 */
char *hd_test_auth_jwt_sign(const char *header, const char *payload, const void *key,
                            size_t key_len);

/** hd_test_auth_jwt_sign with HMAC-SHA-512 (what an HS512 token carries). Any thread. */
char *hd_test_auth_jwt_sign_hs512(const char *header, const char *payload, const void *key,
                                  size_t key_len);

/**
 * hd_test_auth_jwt_sign with the header {"alg":"HS256","typ":"JWT"}, @claims
 * (borrowed) as the payload and the harness's jwt.secret as the key: what
 * herald itself would mint. Returns a malloc'd string. Any thread.
 */
char *hd_test_auth_jwt_forge(json_t *claims);

/**
 * The claims herald mints for @t's session, fresh (iat = nbf = now,
 * exp = now + 900, a new jti): new reference, for tests to alter and
 * forge.
 */
json_t *hd_test_auth_jwt_good_claims(const struct hd_test_auth_tokens *t);

/* ---- store backends (test thread) ------------------------------------------- */

/**
 * The server overrides for @backend merged with @extra (JSON object text, or
 * NULL): for Postgres, creates a fresh database on $HERALD_TEST_DATABASE_URL
 * and sets store.database_url to it (FAILS, naming scripts/test, when that
 * variable is unset). Returns a malloc'd JSON text. At most one Postgres
 * database per test process; hd_test_auth_backend_fini drops it.
 */
char *hd_test_auth_backend_overrides(enum hd_test_backend backend, const char *extra);

/**
 * Drops the database hd_test_auth_backend_overrides created (DROP DATABASE ...
 * WITH (FORCE)); safe with none and twice. Use as the test's .fini.
 */
void hd_test_auth_backend_fini(void);

#endif
