/* POST /api/auth/register, /login, /refresh, /logout; GET /api/auth/sessions,
 * DELETE /api/auth/sessions/{id}; GET /api/me.
 *
 * Each handler validates its input, then continues across actor round trips
 * (auth pool → store → session actor) on its I/O thread, carrying what it
 * needs in the exchange's state. */
#include "api/api.h"
#include "api/routes.h"

#include "herald/client_ip.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/password.h"
#include "herald/server.h"
#include "herald/store_http.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a register or login carries between its steps. */
struct flow {
    char *email;
    char *username;
    char *display_name;
    char *org_name;
    char *password; /* login only; wiped */
    size_t password_len;
    char *account_key;        /* login: the email, lowercase (rate-limit key) */
    struct hd_auth_job *hash; /* register: the hash job, until the limits allow it */
    struct hd_user user;
    int64_t read_at; /* login: wall-clock µs just before the user record was read */
    char *user_json;
    char refresh_token[HD_REFRESH_TOKEN_LEN + 1];
    struct hd_session_info session;
};

static void flow_free(void *p)
{
    struct flow *f = p;
    free(f->email);
    free(f->username);
    free(f->display_name);
    free(f->org_name);
    if (f->password) {
        sodium_memzero(f->password, f->password_len);
        free(f->password);
    }
    free(f->account_key);
    hd_auth_job_free(f->hash);
    hd_user_clear(&f->user);
    free(f->user_json);
    sodium_memzero(f->refresh_token, sizeof(f->refresh_token));
    free(f);
}

static struct flow *flow_new(struct hd_exchange *x)
{
    struct flow *f = hd_calloc(1, sizeof(*f));
    hd_exchange_set_state(x, f, flow_free);
    return f;
}

static void copy_user(struct hd_user *dst, const struct hd_user *src)
{
    hd_user_clear(dst);
    *dst = *src;
    dst->email = hd_strdup_or_null(src->email);
    dst->username = hd_strdup_or_null(src->username);
    dst->display_name = hd_strdup_or_null(src->display_name);
    dst->password_hash = NULL; /* never kept beyond the verify */
}

static char *render_user(const struct hd_user *u)
{
    json_t *j = hd_api_user_json(u);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* Starts a session for f->user and answers with the tokens. */
static void session_created(struct hd_exchange *x, struct hd_session_req *req)
{
    struct flow *f = hd_exchange_state(x);
    if (req->status == HD_SESSION_INVALID) {
        /* the account's sessions were ended (disabled, password changed)
         * while this login was under way: the caller retries and learns why */
        hd_respond_error(x, 401, "invalid_credentials", "the account changed during login", NULL);
        return;
    }
    if (req->status != HD_SESSION_OK) {
        hd_api_session_failure(x, req);
        return;
    }
    int status = f->org_name ? 201 : 200; /* register creates, login does not */
    hd_api_respond_tokens(x, status, &req->session, req->refresh_token, f->user_json);
}

static void start_session(struct hd_exchange *x, struct flow *f)
{
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_CREATE);
    memcpy(req->user.id, f->user.id, sizeof(req->user.id));
    memcpy(req->user.org_id, f->user.org_id, sizeof(req->user.org_id));
    req->user.role = f->user.role;
    req->user.updated_at = f->user.updated_at;
    req->basis_us = f->read_at;
    size_t len;
    const char *ua = hd_req_header(x, "User-Agent", &len);
    if (ua)
        req->user_agent = hd_strndup(ua, len > 256 ? 256 : len);
    req->ip = hd_strdup(hd_req_client_ip(x));
    f->user_json = render_user(&f->user);
    req->user_json = hd_strdup(f->user_json);
    hd_api_session_call(x, req, session_created);
}

/* ---- register -------------------------------------------------------------- */

static void registered(struct hd_exchange *x, struct hd_store_op *op)
{
    struct flow *f = hd_exchange_state(x);
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op); /* 409 email_taken / username_taken, 503 */
        return;
    }
    copy_user(&f->user, &op->user);
    start_session(x, f);
}

static void register_hashed(struct hd_exchange *x, struct hd_auth_job *job)
{
    struct flow *f = hd_exchange_state(x);
    if (job->error || !job->hash) {
        hd_respond_error(x, 503, "busy", "could not hash the password now", NULL);
        return;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_CREATE_ORG_AND_USER);
    op->org_name = hd_strdup(f->org_name);
    op->user.email = hd_strdup(f->email);
    op->user.username = hd_strdup_or_null(f->username);
    op->user.display_name = hd_strdup_or_null(f->display_name);
    op->user.password_hash = hd_strdup(job->hash);
    hd_store_call(hd_api_of(x)->store, x, op, registered);
}

static void register_allowed(struct hd_exchange *x)
{
    struct flow *f = hd_exchange_state(x);
    struct hd_auth_job *job = f->hash;
    f->hash = NULL;
    hd_api_auth_call(x, job, register_hashed);
}

static void handle_register(struct hd_exchange *x)
{
    json_t *body = hd_api_body(x);
    if (!body)
        return;
    struct hd_api_new_user nu;
    const char *org;
    if (!hd_api_new_user_fields(x, body, &nu) ||
        !hd_api_string(x, body, "organization", false, 1, 128, &org))
        goto out;
    struct flow *f = flow_new(x);
    f->email = hd_strdup(nu.email);
    f->username = hd_strdup_or_null(nu.username);
    f->display_name = hd_strdup_or_null(nu.display_name);
    f->org_name = hd_strdup(org ? org : nu.email);
    f->hash = hd_auth_job_new(HD_AUTH_HASH);
    hd_auth_job_set_password(f->hash, nu.password, nu.password_len);
    const char *ip = hd_req_client_ip(x);
    struct hd_api_limit *l = hd_api_limit_new(x);
    hd_api_limit_add(l, HD_POLICY_REGISTER_IP, ip, strlen(ip), false);
    hd_api_limit_run(x, l, register_allowed);
out:
    json_decref(body);
}

/* ---- login -------------------------------------------------------------------- */

static void invalid_credentials(struct hd_exchange *x)
{
    hd_respond_error(x, 401, "invalid_credentials", "the email or the password is wrong", NULL);
}

static void rehash_stored(struct hd_store_op *op)
{
    hd_store_op_free(op); /* best effort: the next login tries again */
}

static void login_verified(struct hd_exchange *x, struct hd_auth_job *job)
{
    struct flow *f = hd_exchange_state(x);
    if (job->error == -ECANCELED) {
        hd_respond_error(x, 503, "busy", "shutting down", NULL);
        return;
    }
    if (!job->ok || !f->user.id[0]) {
        /* only failures spend the account's budget (see limit.h) */
        hd_api_limit_charge(x, HD_POLICY_LOGIN_ACCOUNT, f->account_key, strlen(f->account_key));
        invalid_credentials(x);
        return;
    }
    if (f->user.disabled) {
        hd_respond_error(x, 403, "account_disabled", "this account is disabled", NULL);
        return;
    }
    if (job->needs_rehash && job->new_hash) {
        struct hd_store_op *op = hd_store_op_new(HD_OP_SET_PASSWORD_HASH);
        memcpy(op->id, f->user.id, sizeof(op->id));
        op->user.password_hash = hd_strdup(job->new_hash);
        op->done = rehash_stored;
        hd_store_submit(hd_api_of(x)->store, op);
    }
    start_session(x, f);
}

static void login_found(struct hd_exchange *x, struct hd_store_op *op)
{
    struct flow *f = hd_exchange_state(x);
    if (op->status != HD_STORE_OK && op->status != HD_STORE_NOT_FOUND) {
        hd_store_respond_failure(x, op);
        return;
    }
    struct hd_auth_job *job = hd_auth_job_new(HD_AUTH_VERIFY);
    hd_auth_job_set_password(job, f->password, f->password_len);
    if (op->status == HD_STORE_OK) {
        job->hash = hd_strdup(op->user.password_hash);
        copy_user(&f->user, &op->user);
    } /* unknown email: a NULL hash still pays one verify (no timing oracle) */
    hd_api_auth_call(x, job, login_verified);
}

static void login_allowed(struct hd_exchange *x)
{
    struct flow *f = hd_exchange_state(x);
    /* Taken before the read: a session-ending request after this moment
     * may not have been seen by the read, so it ends this login too. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    f->read_at = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    struct hd_store_op *op = hd_store_op_new(HD_OP_FIND_USER_BY_EMAIL);
    op->email = hd_strdup(f->email);
    hd_store_call(hd_api_of(x)->store, x, op, login_found);
}

static void handle_login(struct hd_exchange *x)
{
    json_t *body = hd_api_body(x);
    if (!body)
        return;
    const char *email, *password;
    if (!hd_api_string(x, body, "email", true, 1, 254, &email) ||
        !hd_api_string(x, body, "password", true, 0, 4096, &password))
        goto out;
    size_t plen = json_string_length(json_object_get(body, "password"));
    if (hd_password_check(password, plen, NULL) != HD_PASSWORD_OK) {
        invalid_credentials(x); /* cannot match any account: no hash needed */
        goto out;
    }
    struct flow *f = flow_new(x);
    f->email = hd_strdup(email);
    f->password = hd_strndup(password, plen);
    f->password_len = plen;
    f->account_key = hd_strdup(email);
    for (char *c = f->account_key; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + ('a' - 'A') : *c);
    /* per IP, per IP + account, and the account's failed-login budget */
    const char *ip = hd_req_client_ip(x);
    char pair[HD_CLIENT_IP_MAX + 1 + 256];
    int n = snprintf(pair, sizeof(pair), "%s %s", ip, f->account_key);
    struct hd_api_limit *l = hd_api_limit_new(x);
    hd_api_limit_add(l, HD_POLICY_LOGIN_IP, ip, strlen(ip), false);
    hd_api_limit_add(l, HD_POLICY_LOGIN_IP_ACCOUNT, pair, (size_t)n, false);
    hd_api_limit_add(l, HD_POLICY_LOGIN_ACCOUNT, f->account_key, strlen(f->account_key), true);
    hd_api_limit_run(x, l, login_allowed);
out:
    json_decref(body);
}

/* ---- refresh ---------------------------------------------------------------------- */

static void refresh_user(struct hd_exchange *x, struct hd_store_op *op)
{
    struct flow *f = hd_exchange_state(x);
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    if (op->user.disabled) {
        hd_respond_error(x, 403, "account_disabled", "this account is disabled", NULL);
        return;
    }
    f->session.role = op->user.role; /* the current role, not the one at login */
    f->user_json = render_user(&op->user);
    hd_api_respond_tokens(x, 200, &f->session, f->refresh_token, f->user_json);
}

static void refresh_rotated(struct hd_exchange *x, struct hd_session_req *req)
{
    if (req->limit_checked)
        hd_api_limit_answer(x, &req->limit); /* 429 when denied: the token stays valid */
    if (req->status == HD_SESSION_RATE_LIMITED)
        return;
    if (req->status != HD_SESSION_OK) {
        hd_api_refresh_cookie(x, NULL);
        hd_api_session_failure(x, req);
        return;
    }
    struct flow *f = flow_new(x);
    memcpy(f->refresh_token, req->refresh_token, sizeof(f->refresh_token));
    f->session = req->session;
    struct hd_store_op *op = hd_store_op_new(HD_OP_FIND_USER_BY_ID);
    memcpy(op->id, req->session.user_id, sizeof(op->id));
    hd_store_call(hd_api_of(x)->store, x, op, refresh_user);
}

static void free_session_req(void *req)
{
    hd_session_req_free(req);
}

static void refresh_allowed(struct hd_exchange *x)
{
    struct hd_session_req *req = hd_exchange_take_state(x);
    hd_api_session_call(x, req, refresh_rotated);
}

static void handle_refresh(struct hd_exchange *x)
{
    char token[HD_REFRESH_TOKEN_LEN + 2] = "";
    size_t blen;
    hd_req_body(x, &blen);
    if (blen > 0) {
        json_t *body = hd_api_body(x);
        if (!body)
            return;
        const char *t;
        /* any string is parsed: one of the wrong length (an access token…)
         * is simply not a refresh token, answered 401 below, not 400 */
        bool ok = hd_api_string(x, body, "refresh_token", true, 1, 65536, &t);
        if (ok && strlen(t) == HD_REFRESH_TOKEN_LEN)
            memcpy(token, t, HD_REFRESH_TOKEN_LEN + 1);
        json_decref(body);
        if (!ok)
            return;
    } else if (!hd_api_refresh_from_cookie(x, token, sizeof(token))) {
        hd_respond_error(x, 401, "invalid_refresh_token",
                         "send refresh_token in the body, or the cookie with Origin or "
                         "X-CSRF-Token",
                         NULL);
        return;
    }
    if (strlen(token) != HD_REFRESH_TOKEN_LEN) {
        hd_respond_error(x, 401, "invalid_refresh_token", "the refresh token is not valid", NULL);
        return;
    }
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_ROTATE);
    memcpy(req->refresh_token, token, sizeof(req->refresh_token));
    sodium_memzero(token, sizeof(token));
    hd_exchange_set_state(x, req, free_session_req);
    const char *ip = hd_req_client_ip(x);
    struct hd_api_limit *l = hd_api_limit_new(x);
    hd_api_limit_add(l, HD_POLICY_REFRESH_IP, ip, strlen(ip), false);
    hd_api_limit_run(x, l, refresh_allowed);
}

/* ---- logout and sessions ------------------------------------------------------------ */

static void logged_out(struct hd_exchange *x, struct hd_session_req *req)
{
    if (req->status != HD_SESSION_OK && req->status != HD_SESSION_INVALID) {
        hd_api_session_failure(x, req);
        return;
    }
    if (!req->except_id[0]) /* scope=others keeps this session and its cookie */
        hd_api_refresh_cookie(x, NULL);
    hd_respond(x, 204, NULL, NULL, 0);
}

static void handle_logout(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    char scope[16] = "local";
    int n = hd_req_query_param(x, "scope", scope, sizeof(scope));
    if (n == -ENOENT)
        snprintf(scope, sizeof(scope), "local");
    else if (n < 0)
        scope[0] = '\0'; /* refused below */
    struct hd_session_req *req;
    if (strcmp(scope, "local") == 0) {
        req = hd_session_req_new(HD_SESSION_REVOKE);
        memcpy(req->session_id, who.session.id, sizeof(req->session_id));
        memcpy(req->user_id, who.session.user_id, sizeof(req->user_id));
    } else if (strcmp(scope, "others") == 0 || strcmp(scope, "global") == 0) {
        req = hd_session_req_new(HD_SESSION_REVOKE_USER);
        memcpy(req->user_id, who.session.user_id, sizeof(req->user_id));
        if (scope[0] == 'o')
            memcpy(req->except_id, who.session.id, sizeof(req->except_id));
    } else {
        hd_respond_error(x, 400, "validation_failed", "scope is local, others or global", "scope");
        return;
    }
    hd_api_session_call(x, req, logged_out);
}

static void sessions_listed(struct hd_exchange *x, struct hd_session_req *req)
{
    if (req->status != HD_SESSION_OK) {
        hd_api_session_failure(x, req);
        return;
    }
    const char *current = hd_exchange_state(x);
    json_t *list = json_array();
    for (size_t i = 0; i < req->n_sessions; i++) {
        const struct hd_session *s = &req->sessions[i];
        json_array_append_new(
            list, json_pack("{s:s, s:s?, s:s?, s:I, s:I, s:I, s:b}", "id", s->id, "user_agent",
                            s->user_agent, "ip", s->ip, "created_at", (json_int_t)s->created_at,
                            "last_seen_at", (json_int_t)s->last_seen_at, "expires_at",
                            (json_int_t)s->expires_at, "current", strcmp(s->id, current) == 0));
    }
    json_t *body = json_pack("{s:o}", "sessions", list);
    char *text = json_dumps(body, JSON_COMPACT);
    hd_respond_json(x, 200, text, strlen(text));
    free(text);
    json_decref(body);
}

static void handle_sessions(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    hd_exchange_set_state(x, hd_strdup(who.session.id), free);
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_LIST);
    memcpy(req->user_id, who.session.user_id, sizeof(req->user_id));
    hd_api_session_call(x, req, sessions_listed);
}

static void session_deleted(struct hd_exchange *x, struct hd_session_req *req)
{
    if (req->status == HD_SESSION_INVALID) {
        hd_respond_error(x, 404, "not_found", "no such session", NULL);
        return;
    }
    if (req->status != HD_SESSION_OK) {
        hd_api_session_failure(x, req);
        return;
    }
    hd_respond(x, 204, NULL, NULL, 0);
}

static void handle_delete_session(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    size_t len;
    const char *id = hd_req_param(x, "id", &len);
    if (len != HD_ID_LEN) {
        hd_respond_error(x, 404, "not_found", "no such session", NULL);
        return;
    }
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_REVOKE);
    memcpy(req->session_id, id, HD_ID_LEN);
    memcpy(req->user_id, who.session.user_id, sizeof(req->user_id));
    hd_api_session_call(x, req, session_deleted);
}

/* ---- me ---------------------------------------------------------------------------- */

static void profile_done(struct hd_session_req *req)
{
    hd_session_req_free(req);
}

/* Not published (first read after a restart): read the store, answer, and
 * publish it for the next reads. */
static void me_found(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    char *text = render_user(&op->user);
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_PROFILE);
    memcpy(req->user_id, op->user.id, sizeof(req->user_id));
    req->user.updated_at = op->user.updated_at;
    req->user_json = hd_strdup(text);
    req->done = profile_done;
    hd_session_submit(hd_api_of(x)->sessions, req);
    hd_respond_json(x, 200, text, strlen(text));
    free(text);
}

/* GET /api/me: the hot path. The profile lives in memory beside the live
 * session (published by the session actor): no store, no actor round trip. */
static void handle_me(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    char buf[2048];
    size_t len = hd_session_profile(hd_api_of(x)->sessions, who.claims.sub, buf, sizeof(buf));
    if (len) {
        hd_respond_json(x, 200, buf, len);
        return;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_FIND_USER_BY_ID);
    memcpy(op->id, who.claims.sub, sizeof(op->id));
    hd_store_call(hd_api_of(x)->store, x, op, me_found);
}

int hd_api_auth_routes(struct hd_api *api, struct hd_server *s)
{
    int rc = 0;
    rc |= hd_api_route(api, s, "POST", "/api/auth/register", handle_register, false);
    rc |= hd_api_route(api, s, "POST", "/api/auth/login", handle_login, false);
    rc |= hd_api_route(api, s, "POST", "/api/auth/refresh", handle_refresh, false);
    rc |= hd_api_route(api, s, "POST", "/api/auth/logout", handle_logout, true);
    rc |= hd_api_route(api, s, "GET", "/api/auth/sessions", handle_sessions, true);
    rc |= hd_api_route(api, s, "DELETE", "/api/auth/sessions/{id}", handle_delete_session, true);
    rc |= hd_api_route(api, s, "GET", "/api/me", handle_me, true);
    return rc ? -EINVAL : 0;
}
