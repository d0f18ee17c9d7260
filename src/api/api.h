/* Private to src/api: what the API route handlers share — the application
 * context, JSON body validation, bearer authentication, and continuations
 * across actor round trips (auth pool, session actor). I/O thread only,
 * unless a function says otherwise. */
#ifndef HERALD_API_H
#define HERALD_API_H

#include <jansson.h>
#include <stdbool.h>

#include "herald/auth.h"
#include "herald/http.h"
#include "herald/session.h"
#include "herald/store.h"
#include "herald/token.h"

#include "api/limit.h"

struct hd_broadcast_sink;
struct hd_broadcaster;
struct hd_frame;
struct hd_config;
struct hd_server;

/** Everything a handler may need; the route ctx of every API route. */
struct hd_api {
    const struct hd_config *cfg;
    struct hd_store *store;
    struct hd_sessions *sessions;
    struct hd_auth *auth;
    struct hd_token_keys *keys;
    struct hd_broadcaster *broadcaster;                        /* notifications and SSE streams */
    struct hd_frame *sse_ping, *sse_reset, *sse_session_ended; /* hd_api_sse_frames_init */
    struct hd_api_limits limits;                               /* hd_api_limits_init */
    struct hd_api_route *routes; /* added by hd_api_route; hd_api_routes_free */
};

/** The ctx of every route added with hd_api_route. */
struct hd_api_route {
    struct hd_api *api;
    hd_handler_fn handler;
    struct hd_api_route *next;
};

/** GET /api/notifications/stream (stream_routes.c). Main thread, before start. */
int hd_api_stream_routes(struct hd_api *api, struct hd_server *s);

/** The SSE control frames every stream shares (ping, reset, session_ended):
 * made before the routes, freed after the server. Main thread. */
void hd_api_sse_frames_init(struct hd_api *api);
void hd_api_sse_frames_free(struct hd_api *api);

/** What the broadcaster calls on I/O threads for SSE streams. */
extern const struct hd_broadcast_sink hd_api_sse_sink;

/** Frees what hd_api_route allocated, after the server is freed. Main thread. */
void hd_api_routes_free(struct hd_api *api);

/** Adds the authentication routes (register, login, refresh, logout,
 * sessions, me). Main thread, before the server starts. */
int hd_api_auth_routes(struct hd_api *api, struct hd_server *s);

/** The route's struct hd_api. */
static inline struct hd_api *hd_api_of(struct hd_exchange *x)
{
    return ((struct hd_api_route *)hd_route_ctx(x))->api;
}

/* ---- input ---------------------------------------------------------- */

/**
 * Parses the request body as a JSON object (Content-Type must be JSON;
 * duplicate keys, invalid UTF-8 and "\u0000" are refused). On failure
 * answers 400 (or 415) and returns NULL. The caller decrefs.
 */
json_t *hd_api_body(struct hd_exchange *x);

/**
 * Reads string field @name of @obj into *out (borrowed from @obj). Absent:
 * *out = NULL and true unless @required. Not a string, or its byte length
 * outside [@min, @max]: answers 400 validation_failed naming the field and
 * returns false.
 */
bool hd_api_string(struct hd_exchange *x, json_t *obj, const char *name, bool required, size_t min,
                   size_t max, const char **out);

/** The fields of a new user (register, admin create), borrowed from the body. */
struct hd_api_new_user {
    const char *email;
    const char *password;
    size_t password_len;
    const char *username;     /* NULL when absent */
    const char *display_name; /* NULL when absent */
};

/**
 * Reads and validates email, password (hd_password_check: before any
 * hashing), username? and display_name? from @body. On failure answers 400
 * validation_failed naming the field and returns false.
 */
bool hd_api_new_user_fields(struct hd_exchange *x, json_t *body, struct hd_api_new_user *out);

/** True when @email looks like local@domain.tld (no spaces, one '@'). */
bool hd_api_email_valid(const char *email);

/* ---- authentication -------------------------------------------------------- */

/** Who a request is, once authenticated. */
struct hd_api_caller {
    struct hd_token_claims claims;
    struct hd_session_info session;
};

/**
 * Authenticates @x by its bearer access token (Authorization header; a
 * single one): signature and claims (cached per I/O thread), then the
 * session must be alive. On failure answers 401 with WWW-Authenticate and
 * returns false.
 */
bool hd_api_authenticate(struct hd_exchange *x, struct hd_api_caller *out);

/** hd_api_authenticate for an access token given as @token (@len bytes) —
 * the SSE stream's ?token= for clients that cannot set headers. */
bool hd_api_authenticate_token(struct hd_exchange *x, const char *token, size_t len,
                               struct hd_api_caller *out);

/* ---- continuations ---------------------------------------------------- */

typedef void (*hd_auth_then_fn)(struct hd_exchange *x, struct hd_auth_job *job);
typedef void (*hd_session_then_fn)(struct hd_exchange *x, struct hd_session_req *req);

/** Parks @x, runs @job on the auth pool (takes it), then calls @then on the
 * I/O thread; the job is freed after @then returns (or if the client left). */
void hd_api_auth_call(struct hd_exchange *x, struct hd_auth_job *job, hd_auth_then_fn then);

/** Same for a session actor request. */
void hd_api_session_call(struct hd_exchange *x, struct hd_session_req *req,
                         hd_session_then_fn then);

/* ---- output ------------------------------------------------------------ */

/** Answers a failed session request (INVALID → 401 invalid_refresh_token…). */
void hd_api_session_failure(struct hd_exchange *x, const struct hd_session_req *req);

/**
 * Answers @status with the token bundle: {"user":…,"access_token","token_type":"Bearer",
 * "expires_in","refresh_token","session_id"} and sets the refresh cookie.
 * @user_json is a rendered user object (borrowed).
 */
void hd_api_respond_tokens(struct hd_exchange *x, int status, const struct hd_session_info *s,
                           const char *refresh_token, const char *user_json);

/** Renders the public view of @u (no hash) into a new JSON object. */
json_t *hd_api_user_json(const struct hd_user *u);

/** Sets (or, with NULL, clears) the HttpOnly refresh cookie. */
void hd_api_refresh_cookie(struct hd_exchange *x, const char *token);

/** The refresh token from the cookie, when the request passes the CSRF
 * check (an Origin on the allowlist, or X-CSRF-Token present); copies it
 * into @out. Returns false when there is none or it is refused. */
bool hd_api_refresh_from_cookie(struct hd_exchange *x, char *out, size_t cap);

#endif
