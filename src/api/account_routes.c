/* PATCH /api/me (profile) and POST /api/me/password (change password, then
 * end every other session of the user).
 *
 * Username uniqueness is the store's unique index (lower(username)): the
 * handler writes and maps the conflict to 409, never checks first. Password
 * work (verify the current one, hash the new one) runs on the auth pool. */
#include "api/api.h"
#include "api/routes.h"

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

#define DISPLAY_NAME_MAX 128

/* ---- shared with admin_routes.c and admin_cli.c (routes.h) --------------- */

bool hd__api_username_valid(const char *u)
{
    size_t n = strlen(u);
    if (n < 3 || n > 32)
        return false;
    for (const char *p = u; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

void hd__api_respond_user(struct hd_exchange *x, int status, const struct hd_user *u)
{
    json_t *j = hd_api_user_json(u);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) {
        hd_respond_error(x, 500, "internal_error", "could not render the user", NULL);
        return;
    }
    hd_respond_json(x, status, text, strlen(text));
    free(text);
}

/* ---- PATCH /api/me --------------------------------------------------------- */

/* Reads optional profile field @name into *out: absent → NULL (keep);
 * null or "" → "" (clear); else the string (borrowed from @body). Answers
 * 400 and returns false when it is not a string of at most @max bytes. */
static bool profile_field(struct hd_exchange *x, json_t *body, const char *name, size_t max,
                          const char **out)
{
    json_t *v = json_object_get(body, name);
    if (v && json_is_null(v)) {
        *out = "";
        return true;
    }
    return hd_api_string(x, body, name, false, 0, max, out);
}

/* The new profile is published for GET /api/me: answer with it. */
static void profile_published(struct hd_exchange *x, struct hd_session_req *req)
{
    hd_respond_json(x, 200, req->user_json, strlen(req->user_json));
}

static void profile_updated(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op); /* 409 username_taken from the unique index */
        return;
    }
    json_t *j = hd_api_user_json(&op->user);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) {
        hd_respond_error(x, 500, "internal_error", "could not render the user", NULL);
        return;
    }
    /* GET /api/me answers from the profile the session actor publishes
     * beside the live sessions: replace it before answering, so a read
     * after this answer sees the change. */
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_PROFILE);
    memcpy(req->user_id, op->user.id, sizeof(req->user_id));
    req->user.updated_at = op->user.updated_at;
    req->user_json = text;
    hd_api_session_call(x, req, profile_published);
}

static void handle_patch_me(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    json_t *body = hd_api_body(x);
    if (!body)
        return;
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value)
    {
        if (strcmp(key, "username") != 0 && strcmp(key, "display_name") != 0) {
            hd_respond_error(x, 400, "validation_failed",
                             "only username and display_name can be changed here", key);
            goto out;
        }
    }
    const char *username, *display;
    if (!profile_field(x, body, "username", 32, &username) ||
        !profile_field(x, body, "display_name", DISPLAY_NAME_MAX, &display))
        goto out;
    if (username && username[0] && !hd__api_username_valid(username)) {
        hd_respond_error(x, 400, "validation_failed", "3 to 32 of A-Z a-z 0-9 _ . -", "username");
        goto out;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_UPDATE_PROFILE);
    memcpy(op->id, who.claims.sub, sizeof(op->id));
    op->user.username = username ? hd_strdup(username) : NULL;
    op->user.display_name = display ? hd_strdup(display) : NULL;
    hd_store_call(hd_api_of(x)->store, x, op, profile_updated);
out:
    json_decref(body);
}

/* ---- POST /api/me/password ------------------------------------------------- */

/* What a password change carries between its steps. The passwords are
 * wiped as soon as they were handed to the auth pool, and on free. */
struct pw_change {
    char *current;
    size_t current_len;
    char *next;
    size_t next_len;
    char session_id[HD_ID_LEN + 1];
    char user_id[HD_ID_LEN + 1];
};

static void wipe(char **p, size_t *len)
{
    if (*p) {
        sodium_memzero(*p, *len);
        free(*p);
    }
    *p = NULL;
    *len = 0;
}

static void pw_change_free(void *p)
{
    struct pw_change *c = p;
    wipe(&c->current, &c->current_len);
    wipe(&c->next, &c->next_len);
    free(c);
}

static void invalid_credentials(struct hd_exchange *x)
{
    hd_respond_error(x, 401, "invalid_credentials", "the current password is wrong",
                     "current_password");
}

static void busy(struct hd_exchange *x)
{
    hd_respond_error(x, 503, "busy", "could not hash the password now", NULL);
}

static void others_revoked(struct hd_exchange *x, struct hd_session_req *req)
{
    if (req->status != HD_SESSION_OK) {
        hd_api_session_failure(x, req);
        return;
    }
    hd_respond(x, 204, NULL, NULL, 0);
}

static void password_stored(struct hd_exchange *x, struct hd_store_op *op)
{
    struct pw_change *c = hd_exchange_state(x);
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_REVOKE_USER);
    memcpy(req->user_id, c->user_id, sizeof(req->user_id));
    memcpy(req->except_id, c->session_id, sizeof(req->except_id));
    hd_api_session_call(x, req, others_revoked);
}

static void new_hashed(struct hd_exchange *x, struct hd_auth_job *job)
{
    struct pw_change *c = hd_exchange_state(x);
    if (job->error || !job->hash) {
        busy(x);
        return;
    }
    /* Two hashes took a while: the session may have ended meanwhile (logout
     * everywhere, a disable). Then the change must not happen. */
    if (!hd_session_lookup(hd_api_of(x)->sessions, c->session_id, hd_wall_ms(), NULL)) {
        hd_respond_header(x, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        hd_respond_error(x, 401, "invalid_token", "the session of this token has ended", NULL);
        return;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_SET_PASSWORD_HASH);
    memcpy(op->id, c->user_id, sizeof(op->id));
    op->user.password_hash = hd_strdup(job->hash);
    hd_store_call(hd_api_of(x)->store, x, op, password_stored);
}

static void current_verified(struct hd_exchange *x, struct hd_auth_job *job)
{
    struct pw_change *c = hd_exchange_state(x);
    if (job->error == -ECANCELED) {
        busy(x);
        return;
    }
    if (!job->ok) {
        invalid_credentials(x);
        return;
    }
    struct hd_auth_job *hash = hd_auth_job_new(HD_AUTH_HASH);
    hd_auth_job_set_password(hash, c->next, c->next_len);
    wipe(&c->next, &c->next_len);
    hd_api_auth_call(x, hash, new_hashed);
}

static void user_found(struct hd_exchange *x, struct hd_store_op *op)
{
    struct pw_change *c = hd_exchange_state(x);
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    enum hd_password_problem p = hd_password_check(c->next, c->next_len, op->user.email);
    if (p != HD_PASSWORD_OK) {
        hd_respond_error(x, 400, "validation_failed", hd_password_problem_message(p),
                         "new_password");
        return;
    }
    struct hd_auth_job *job = hd_auth_job_new(HD_AUTH_VERIFY);
    hd_auth_job_set_password(job, c->current, c->current_len);
    job->hash = hd_strdup(op->user.password_hash ? op->user.password_hash : "");
    wipe(&c->current, &c->current_len);
    hd_api_auth_call(x, job, current_verified);
}

static void password_allowed(struct hd_exchange *x)
{
    struct pw_change *c = hd_exchange_state(x);
    struct hd_store_op *op = hd_store_op_new(HD_OP_FIND_USER_BY_ID);
    memcpy(op->id, c->user_id, sizeof(op->id));
    hd_store_call(hd_api_of(x)->store, x, op, user_found);
}

static void handle_password(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    json_t *body = hd_api_body(x);
    if (!body)
        return;
    const char *current, *next;
    if (!hd_api_string(x, body, "current_password", true, 0, 4096, &current) ||
        !hd_api_string(x, body, "new_password", true, 0, 4096, &next))
        goto out;
    size_t clen = json_string_length(json_object_get(body, "current_password"));
    size_t nlen = json_string_length(json_object_get(body, "new_password"));
    /* Every rule but "not the email" before anything hashes; that one once
     * the user is read. */
    enum hd_password_problem p = hd_password_check(next, nlen, NULL);
    if (p != HD_PASSWORD_OK) {
        hd_respond_error(x, 400, "validation_failed", hd_password_problem_message(p),
                         "new_password");
        goto out;
    }
    if (hd_password_check(current, clen, NULL) != HD_PASSWORD_OK) {
        invalid_credentials(x); /* cannot match any stored password: no hash needed */
        goto out;
    }
    struct pw_change *c = hd_calloc(1, sizeof(*c));
    c->current = hd_strndup(current, clen);
    c->current_len = clen;
    c->next = hd_strndup(next, nlen);
    c->next_len = nlen;
    memcpy(c->session_id, who.session.id, sizeof(c->session_id));
    memcpy(c->user_id, who.claims.sub, sizeof(c->user_id));
    hd_exchange_set_state(x, c, pw_change_free);
    struct hd_api_limit *l = hd_api_limit_new(x);
    hd_api_limit_add(l, HD_POLICY_PASSWORD_USER, c->user_id, strlen(c->user_id), false);
    hd_api_limit_run(x, l, password_allowed);
out:
    json_decref(body);
}

int hd_api_account_routes(struct hd_api *api, struct hd_server *s)
{
    int rc = 0;
    rc |= hd_api_route(api, s, "PATCH", "/api/me", handle_patch_me, true);
    rc |= hd_api_route(api, s, "POST", "/api/me/password", handle_password, true);
    return rc ? -EINVAL : 0;
}
