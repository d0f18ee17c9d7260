/* Shared pieces of the API handlers: JSON input, bearer authentication,
 * continuations across the auth pool and the session actor, token output. */
#include "api/api.h"

#include "api/routes.h"
#include "herald/config.h"
#include "herald/password.h"
#include "herald/core.h"
#include "herald/store_http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TOKEN_CACHE_CAPACITY 4096
#define REFRESH_COOKIE       "herald_refresh"

/* ---- input ------------------------------------------------------------- */

json_t *hd_api_body(struct hd_exchange *x)
{
    size_t clen = 0, blen = 0;
    const char *ctype = hd_req_header(x, "Content-Type", &clen);
    if (!ctype || clen < 16 || strncasecmp(ctype, "application/json", 16) != 0) {
        hd_respond_error(x, 415, "unsupported_media_type",
                         "send the body as Content-Type: application/json", NULL);
        return NULL;
    }
    const char *body = hd_req_body(x, &blen);
    json_error_t err;
    /* jansson refuses invalid UTF-8 and "\u0000" (no JSON_ALLOW_NUL). */
    json_t *j = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        hd_respond_error(x, 400, "validation_failed",
                         "the body must be one JSON object in UTF-8, without NUL characters", NULL);
        return NULL;
    }
    return j;
}

bool hd_api_string(struct hd_exchange *x, json_t *obj, const char *name, bool required, size_t min,
                   size_t max, const char **out)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (!required)
            return true;
        hd_respond_error(x, 400, "validation_failed", "this field is required", name);
        return false;
    }
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len < min || len > max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "must be a string of %zu to %zu bytes", min, max);
        hd_respond_error(x, 400, "validation_failed", msg, name);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

bool hd_api_new_user_fields(struct hd_exchange *x, json_t *body, struct hd_api_new_user *out)
{
    memset(out, 0, sizeof(*out));
    if (!hd_api_string(x, body, "email", true, 3, 254, &out->email) ||
        !hd_api_string(x, body, "password", true, 0, 4096, &out->password) ||
        !hd_api_string(x, body, "username", false, 3, 32, &out->username) ||
        !hd_api_string(x, body, "display_name", false, 1, 128, &out->display_name))
        return false;
    if (!hd_api_email_valid(out->email)) {
        hd_respond_error(x, 400, "validation_failed", "not an email address", "email");
        return false;
    }
    if (out->username && !hd__api_username_valid(out->username)) {
        hd_respond_error(x, 400, "validation_failed", "3 to 32 of A-Z a-z 0-9 _ . -", "username");
        return false;
    }
    out->password_len = json_string_length(json_object_get(body, "password"));
    enum hd_password_problem p = hd_password_check(out->password, out->password_len, out->email);
    if (p != HD_PASSWORD_OK) {
        hd_respond_error(x, 400, "validation_failed", hd_password_problem_message(p), "password");
        return false;
    }
    return true;
}

bool hd_api_email_valid(const char *email)
{
    const char *at = strchr(email, '@');
    if (!at || at == email || strchr(at + 1, '@'))
        return false;
    const char *dot = strrchr(at, '.');
    if (!dot || dot == at + 1 || dot[1] == '\0')
        return false;
    for (const char *p = email; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    }
    return true;
}

/* ---- authentication ----------------------------------------------------- */

/* One verified-token cache per I/O thread, freed when the thread exits. */
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *c)
{
    hd_token_cache_free(c);
}

static void cache_key_init(void)
{
    HD_ASSERT(pthread_key_create(&cache_key, cache_free) == 0);
}

static struct hd_token_cache *thread_cache(void)
{
    pthread_once(&cache_once, cache_key_init);
    struct hd_token_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = hd_token_cache_new(TOKEN_CACHE_CAPACITY);
        pthread_setspecific(cache_key, c);
    }
    return c;
}

static bool unauthorized(struct hd_exchange *x, const char *code, const char *message)
{
    hd_respond_header(x, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    hd_respond_error(x, 401, code, message, NULL);
    return false;
}

bool hd_api_authenticate(struct hd_exchange *x, struct hd_api_caller *out)
{
    size_t len;
    const char *h = hd_req_header(x, "Authorization", &len);
    if (!h) {
        hd_respond_header(x, "WWW-Authenticate", "Bearer");
        hd_respond_error(x, 401, "missing_token", "send Authorization: Bearer <access token>",
                         NULL);
        return false;
    }
    if (hd_req_header_count(x, "Authorization") != 1)
        return unauthorized(x, "invalid_token", "more than one Authorization header");
    if (len < 8 || strncasecmp(h, "Bearer ", 7) != 0)
        return unauthorized(x, "invalid_token", "the Authorization scheme must be Bearer");
    return hd_api_authenticate_token(x, h + 7, len - 7, out);
}

bool hd_api_authenticate_token(struct hd_exchange *x, const char *token, size_t len,
                               struct hd_api_caller *out)
{
    struct hd_api *api = hd_api_of(x);
    int64_t now = hd_wall_ms();
    enum hd_token_result r =
        hd_token_cache_verify(thread_cache(), api->keys, token, len, now / 1000, &out->claims);
    if (r != HD_TOKEN_OK)
        return unauthorized(x, "invalid_token", "the access token is not valid");
    if (!hd_session_lookup(api->sessions, out->claims.sid, now, &out->session) ||
        strcmp(out->session.user_id, out->claims.sub) != 0)
        return unauthorized(x, "invalid_token", "the session of this token has ended");
    return true;
}

/* ---- continuations -------------------------------------------------------- */

struct auth_call {
    struct hd_reply reply; /* first: posted as a message */
    struct hd_auth_job *job;
    hd_auth_then_fn then;
};

static void auth_resume(struct hd_exchange *x, struct hd_reply *r)
{
    struct auth_call *c = (struct auth_call *)r;
    c->then(x, c->job);
}

static void auth_destroy(struct hd_reply *r)
{
    struct auth_call *c = (struct auth_call *)r;
    hd_auth_job_free(c->job);
    free(c);
}

static void auth_done(struct hd_auth_job *job)
{
    hd_reply_post(&((struct auth_call *)job->ctx)->reply);
}

void hd_api_auth_call(struct hd_exchange *x, struct hd_auth_job *job, hd_auth_then_fn then)
{
    struct auth_call *c = hd_calloc(1, sizeof(*c));
    c->reply.to = hd_exchange_park(x);
    c->reply.resume = auth_resume;
    c->reply.destroy = auth_destroy;
    c->job = job;
    c->then = then;
    job->ctx = c;
    job->done = auth_done;
    hd_auth_submit(hd_api_of(x)->auth, job);
}

struct session_call {
    struct hd_reply reply;
    struct hd_session_req *req;
    hd_session_then_fn then;
};

static void session_resume(struct hd_exchange *x, struct hd_reply *r)
{
    struct session_call *c = (struct session_call *)r;
    c->then(x, c->req);
}

static void session_destroy(struct hd_reply *r)
{
    struct session_call *c = (struct session_call *)r;
    hd_session_req_free(c->req);
    free(c);
}

static void session_done(struct hd_session_req *req)
{
    hd_reply_post(&((struct session_call *)req->ctx)->reply);
}

void hd_api_session_call(struct hd_exchange *x, struct hd_session_req *req, hd_session_then_fn then)
{
    struct session_call *c = hd_calloc(1, sizeof(*c));
    c->reply.to = hd_exchange_park(x);
    c->reply.resume = session_resume;
    c->reply.destroy = session_destroy;
    c->req = req;
    c->then = then;
    req->ctx = c;
    req->done = session_done;
    hd_session_submit(hd_api_of(x)->sessions, req);
}

/* ---- output ---------------------------------------------------------------- */

void hd_api_session_failure(struct hd_exchange *x, const struct hd_session_req *req)
{
    switch (req->status) {
    case HD_SESSION_INVALID:
        hd_respond_error(x, 401, "invalid_refresh_token",
                         "the refresh token is not valid or its session has ended", NULL);
        return;
    case HD_SESSION_REUSED:
        hd_respond_error(x, 401, "refresh_token_reused",
                         "this refresh token was already used: the session has been ended", NULL);
        return;
    case HD_SESSION_LIMIT:
        hd_respond_error(x, 409, "too_many_sessions",
                         "the account has reached its number of sessions", NULL);
        return;
    case HD_SESSION_UNAVAILABLE:
        hd_respond_header(x, "Retry-After", "2");
        hd_respond_error(x, 503, "store_unavailable", "the store is unavailable", NULL);
        return;
    default:
        hd_respond_error(x, 500, "internal_error", "the session could not be handled", NULL);
        return;
    }
}

static const char *role_name(enum hd_role role)
{
    return role == HD_ROLE_ADMIN ? "admin" : "member";
}

json_t *hd_api_user_json(const struct hd_user *u)
{
    return json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s, s:b, s:I}", "id", u->id, "organization_id",
                     u->org_id, "email", u->email ? u->email : "", "username", u->username,
                     "display_name", u->display_name, "role", role_name(u->role), "disabled",
                     u->disabled, "created_at", (json_int_t)u->created_at);
}

void hd_api_refresh_cookie(struct hd_exchange *x, const char *token)
{
    const struct hd_config *cfg = hd_api_of(x)->cfg;
    char cookie[256];
    snprintf(cookie, sizeof(cookie), "%s=%s; Path=/api/auth; HttpOnly; SameSite=%s; Max-Age=%d%s",
             REFRESH_COOKIE, token ? token : "", cfg->cookie.same_site,
             token ? cfg->session.lifetime_s : 0, cfg->cookie.secure ? "; Secure" : "");
    hd_respond_header(x, "Set-Cookie", cookie);
}

bool hd_api_refresh_from_cookie(struct hd_exchange *x, char *out, size_t cap)
{
    size_t len, olen;
    const char *cookie = hd_req_header(x, "Cookie", &len);
    if (!cookie)
        return false;
    /* CSRF: a browser adds Origin to cross-site POSTs, and cannot add a
     * custom header without a CORS preflight we would refuse. */
    const char *origin = hd_req_header(x, "Origin", &olen);
    bool origin_ok = origin && hd_config_origin_allowed(hd_api_of(x)->cfg, origin, olen);
    size_t clen;
    if (!origin_ok && !hd_req_header(x, "X-CSRF-Token", &clen))
        return false;
    const char *end = cookie + len;
    size_t nl = strlen(REFRESH_COOKIE);
    for (const char *p = cookie; p < end;) {
        while (p < end && (*p == ' ' || *p == ';'))
            p++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *e = semi ? semi : end;
        if ((size_t)(e - p) > nl && memcmp(p, REFRESH_COOKIE, nl) == 0 && p[nl] == '=') {
            size_t vlen = (size_t)(e - p) - nl - 1;
            if (vlen == 0 || vlen >= cap)
                return false;
            memcpy(out, p + nl + 1, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = e;
    }
    return false;
}

void hd_api_respond_tokens(struct hd_exchange *x, int status, const struct hd_session_info *s,
                           const char *refresh_token, const char *user_json)
{
    struct hd_api *api = hd_api_of(x);
    struct hd_token_claims claims = {0};
    memcpy(claims.sub, s->user_id, sizeof(claims.sub));
    memcpy(claims.sid, s->id, sizeof(claims.sid));
    memcpy(claims.org, s->org_id, sizeof(claims.org));
    claims.role = s->role;
    char *access = hd_token_mint(api->keys, &claims, hd_wall_ms() / 1000);
    if (!access) {
        hd_respond_error(x, 500, "internal_error", "could not sign the access token", NULL);
        return;
    }
    json_error_t err;
    json_t *user = json_loads(user_json, 0, &err);
    json_t *body =
        json_pack("{s:o, s:s, s:s, s:i, s:s, s:s}", "user", user ? user : json_null(),
                  "access_token", access, "token_type", "Bearer", "expires_in",
                  api->cfg->jwt.access_ttl_s, "refresh_token", refresh_token, "session_id", s->id);
    char *text = json_dumps(body, JSON_COMPACT);
    hd_api_refresh_cookie(x, refresh_token);
    hd_respond_json(x, status, text, strlen(text));
    free(text);
    json_decref(body);
    free(access);
}
