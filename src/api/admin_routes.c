/* Organization administration: POST /api/admin/users (create a user in the
 * admin's organization), POST /api/admin/users/{id}/disable and /enable.
 *
 * The caller's access token must carry role admin (else 403 forbidden); a
 * target user outside the caller's organization is answered exactly like an
 * unknown one (404 not_found), so ids of other organizations cannot be
 * probed. Disabling ends every session of the user at once (the session
 * actor unpublishes them before the store write), so their access tokens are
 * refused from then on and login answers 403 account_disabled. */
#include "api/api.h"
#include "api/routes.h"

#include "herald/core.h"
#include "herald/password.h"
#include "herald/server.h"
#include "herald/store_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool hd__api_require_admin(struct hd_exchange *x, struct hd_api_caller *who)
{
    if (!hd_api_authenticate(x, who))
        return false;
    if (who->claims.role != HD_ROLE_ADMIN) {
        hd_respond_error(x, 403, "forbidden", "this needs an administrator of the organization",
                         NULL);
        return false;
    }
    return true;
}

static void no_such_user(struct hd_exchange *x)
{
    hd_respond_error(x, 404, "not_found", "no such user", NULL);
}

/* ---- disable / enable --------------------------------------------------------- */

/* What a disable or enable carries between its steps. */
struct toggle {
    char user_id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1]; /* the admin's */
    bool disable;
};

static void sessions_ended(struct hd_exchange *x, struct hd_session_req *req)
{
    if (req->status != HD_SESSION_OK) {
        hd_api_session_failure(x, req);
        return;
    }
    hd_respond(x, 204, NULL, NULL, 0);
}

static void flag_stored(struct hd_exchange *x, struct hd_store_op *op)
{
    struct toggle *t = hd_exchange_state(x);
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    if (!t->disable) {
        hd_respond(x, 204, NULL, NULL, 0);
        return;
    }
    struct hd_session_req *req = hd_session_req_new(HD_SESSION_REVOKE_USER);
    memcpy(req->user_id, t->user_id, sizeof(req->user_id)); /* except_id "": all of them */
    hd_api_session_call(x, req, sessions_ended);
}

static void target_found(struct hd_exchange *x, struct hd_store_op *op)
{
    struct toggle *t = hd_exchange_state(x);
    if (op->status == HD_STORE_NOT_FOUND ||
        (op->status == HD_STORE_OK && strcmp(op->user.org_id, t->org_id) != 0)) {
        no_such_user(x);
        return;
    }
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    /* An organization never changes, so the check above stays true. */
    struct hd_store_op *set = hd_store_op_new(HD_OP_SET_USER_DISABLED);
    memcpy(set->id, t->user_id, sizeof(set->id));
    set->flag = t->disable;
    hd_store_call(hd_api_of(x)->store, x, set, flag_stored);
}

static void set_disabled(struct hd_exchange *x, bool disable)
{
    struct hd_api_caller who;
    if (!hd__api_require_admin(x, &who))
        return;
    size_t len;
    const char *id = hd_req_param(x, "id", &len);
    if (!id || len != HD_ID_LEN) {
        no_such_user(x);
        return;
    }
    if (disable && memcmp(id, who.claims.sub, HD_ID_LEN) == 0) {
        hd_respond_error(x, 400, "validation_failed", "an administrator cannot disable themselves",
                         "id");
        return;
    }
    struct toggle *t = hd_calloc(1, sizeof(*t));
    memcpy(t->user_id, id, HD_ID_LEN);
    memcpy(t->org_id, who.claims.org, sizeof(t->org_id));
    t->disable = disable;
    hd_exchange_set_state(x, t, free);
    struct hd_store_op *op = hd_store_op_new(HD_OP_FIND_USER_BY_ID);
    memcpy(op->id, t->user_id, sizeof(op->id));
    hd_store_call(hd_api_of(x)->store, x, op, target_found);
}

static void handle_disable(struct hd_exchange *x)
{
    set_disabled(x, true);
}

static void handle_enable(struct hd_exchange *x)
{
    set_disabled(x, false);
}

/* ---- create a user ------------------------------------------------------------- */

struct new_user {
    char *email;
    char *username;
    char *display_name;
    enum hd_role role;
    char org_id[HD_ID_LEN + 1];
};

static void new_user_free(void *p)
{
    struct new_user *u = p;
    free(u->email);
    free(u->username);
    free(u->display_name);
    free(u);
}

static void user_created(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op); /* 409 email_taken / username_taken */
        return;
    }
    hd__api_respond_user(x, 201, &op->user);
}

static void user_hashed(struct hd_exchange *x, struct hd_auth_job *job)
{
    struct new_user *u = hd_exchange_state(x);
    if (job->error || !job->hash) {
        hd_respond_error(x, 503, "busy", "could not hash the password now", NULL);
        return;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_CREATE_USER);
    memcpy(op->user.org_id, u->org_id, sizeof(op->user.org_id));
    op->user.email = hd_strdup(u->email);
    op->user.username = hd_strdup_or_null(u->username);
    op->user.display_name = hd_strdup_or_null(u->display_name);
    op->user.password_hash = hd_strdup(job->hash);
    op->user.role = u->role;
    hd_store_call(hd_api_of(x)->store, x, op, user_created);
}

/* Reads "role": absent → member; "member" | "admin"; else 400. */
static bool read_role(struct hd_exchange *x, json_t *body, enum hd_role *out)
{
    const char *role;
    if (!hd_api_string(x, body, "role", false, 1, 16, &role))
        return false;
    if (!role || strcmp(role, "member") == 0) {
        *out = HD_ROLE_MEMBER;
        return true;
    }
    if (strcmp(role, "admin") == 0) {
        *out = HD_ROLE_ADMIN;
        return true;
    }
    hd_respond_error(x, 400, "validation_failed", "role is member or admin", "role");
    return false;
}

static void handle_create_user(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd__api_require_admin(x, &who))
        return;
    json_t *body = hd_api_body(x);
    if (!body)
        return;
    struct hd_api_new_user nu;
    enum hd_role role;
    if (!hd_api_new_user_fields(x, body, &nu) || !read_role(x, body, &role))
        goto out;
    struct new_user *u = hd_calloc(1, sizeof(*u));
    u->email = hd_strdup(nu.email);
    u->username = hd_strdup_or_null(nu.username);
    u->display_name = hd_strdup_or_null(nu.display_name);
    u->role = role;
    memcpy(u->org_id, who.claims.org, sizeof(u->org_id));
    hd_exchange_set_state(x, u, new_user_free);
    struct hd_auth_job *job = hd_auth_job_new(HD_AUTH_HASH);
    hd_auth_job_set_password(job, nu.password, nu.password_len);
    hd_api_auth_call(x, job, user_hashed);
out:
    json_decref(body);
}

int hd_api_admin_routes(struct hd_api *api, struct hd_server *s)
{
    int rc = 0;
    rc |= hd_api_route(api, s, "POST", "/api/admin/users", handle_create_user, true);
    rc |= hd_api_route(api, s, "POST", "/api/admin/users/{id}/disable", handle_disable, true);
    rc |= hd_api_route(api, s, "POST", "/api/admin/users/{id}/enable", handle_enable, true);
    return rc ? -EINVAL : 0;
}
