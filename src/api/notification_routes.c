/* Notifications over REST: POST /api/notifications (publish), GET
 * /api/notifications (history), POST /api/notifications/{id}/read and
 * POST /api/notifications/read-all.
 *
 * Publishing is for an administrator of the organization (a Bearer access
 * token with role admin) or a publisher API key with the "publish" scope
 * (`Authorization: Bearer hk_…` or `X-API-Key: hk_…`), and only inside the
 * caller's own organization: a target elsewhere is answered 404 exactly like
 * an unknown one, so ids of other organizations cannot be probed. A
 * validated notification goes through the publish rate limit to the
 * broadcaster, which commits it in the store and then fans it out; the 201
 * is sent only after the commit, with the notification as
 * hd_notification_json renders it everywhere (REST, live SSE, replay).
 *
 * The read routes act for the caller's user: their own notifications and
 * their organization's, newest first, with the per-user read flag. */
#include "api/api.h"
#include "api/routes.h"

#include "herald/broadcaster.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/notification.h"
#include "herald/server.h"
#include "herald/store_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TYPE_MAX      64
#define TITLE_MAX     200
#define BODY_MAX      4000
#define LIST_DEFAULT  50
#define LIST_MAX      100
#define QUERY_CAP     32
#define ID_DIGITS_MAX 18 /* every positive value of this many digits fits int64 */

/* ---- helpers ------------------------------------------------------------------ */

static void respond_json(struct hd_exchange *x, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text)
        hd_respond_error(x, 500, "internal_error", "could not render the answer", NULL);
    else
        hd_respond_json(x, status, text, strlen(text));
    free(text);
    json_decref(body);
}

static void not_found(struct hd_exchange *x, const char *what)
{
    hd_respond_error(x, 404, "not_found", what, NULL);
}

/* Answers a failed store status (no op at hand: a publish's). */
static void store_failure(struct hd_exchange *x, enum hd_store_status status)
{
    struct hd_store_op op = {.status = status};
    hd_store_respond_failure(x, &op);
}

/* True when @s (@len bytes) is UUID text: 8-4-4-4-12 hex digits. */
static bool uuid_text(const char *s, size_t len)
{
    if (len != HD_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (dash ? c != '-' : !hex)
            return false;
    }
    return true;
}

/* The positive decimal integer of @s (@len bytes, digits only, no sign, no
 * leading zero), or 0 when it is not one. */
static int64_t positive_id(const char *s, size_t len)
{
    if (len == 0 || len > ID_DIGITS_MAX || s[0] == '0')
        return 0;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* True when @scopes (space-separated) holds @want. */
static bool has_scope(const char *scopes, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = scopes ? scopes : ""; *p;) {
        size_t len = strcspn(p, " ");
        if (len == n && memcmp(p, want, n) == 0)
            return true;
        p += len;
        while (*p == ' ')
            p++;
    }
    return false;
}

/* ---- POST /api/notifications: the publish ---------------------------------------- */

/* A publish between its steps: who asks, then the notification to hand to
 * the broadcaster (owned here until then). */
struct publish_req {
    char org_id[HD_ID_LEN + 1]; /* the caller's organization */
    char key[HD_ID_LEN + 1];    /* the rate-limit key: API key id or user id */
    bool bearer;                /* an API key sent as a Bearer token */
    struct hd_publish *p;
};

static void publish_req_free(void *v)
{
    struct publish_req *r = v;
    hd_publish_free(r->p);
    free(r);
}

/* The reply that brings a committed (or failed) publish back to the I/O
 * thread, as hd_api_auth_call does for the auth pool. */
struct publish_call {
    struct hd_reply reply; /* first: posted as a message */
    struct hd_publish *p;
};

static void publish_resume(struct hd_exchange *x, struct hd_reply *r)
{
    struct hd_publish *p = ((struct publish_call *)r)->p;
    if (p->status == HD_STORE_NOT_FOUND) {
        not_found(x, "no such user in this organization");
        return;
    }
    if (p->status != HD_STORE_OK) {
        store_failure(x, p->status);
        return;
    }
    respond_json(x, 201, hd_notification_json(&p->n, 0));
}

static void publish_destroy(struct hd_reply *r)
{
    struct publish_call *c = (struct publish_call *)r;
    hd_publish_free(c->p);
    free(c);
}

/* Broadcaster thread: only post. */
static void publish_done(struct hd_publish *p)
{
    hd_reply_post(&((struct publish_call *)p->ctx)->reply);
}

/* The rate limit allowed it: hand the notification to the broadcaster. */
static void publish_allowed(struct hd_exchange *x)
{
    struct publish_req *r = hd_exchange_state(x);
    struct hd_broadcaster *b = hd_api_of(x)->broadcaster;
    if (!b) {
        hd_respond_error(x, 503, "unavailable", "notifications are not available", NULL);
        return;
    }
    struct publish_call *c = hd_calloc(1, sizeof(*c));
    c->reply.to = hd_exchange_park(x);
    c->reply.resume = publish_resume;
    c->reply.destroy = publish_destroy;
    c->p = r->p;
    r->p = NULL;
    c->p->done = publish_done;
    c->p->ctx = c;
    hd_broadcaster_publish(b, c->p);
}

/* Reads "type": 1 to 64 of a-z A-Z 0-9 . _ - */
static bool read_type(struct hd_exchange *x, json_t *body, const char **out)
{
    if (!hd_api_string(x, body, "type", true, 1, TYPE_MAX, out))
        return false;
    for (const char *p = *out; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            hd_respond_error(x, 400, "validation_failed", "1 to 64 of a-z A-Z 0-9 . _ -", "type");
            return false;
        }
    }
    return true;
}

/* Reads the optional "data" object into its compact text (*out, the caller
 * frees; NULL when absent or null), at most @max bytes. */
static bool read_data(struct hd_exchange *x, json_t *body, size_t max, char **out)
{
    json_t *v = json_object_get(body, "data");
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_object(v)) {
        hd_respond_error(x, 400, "validation_failed", "data must be a JSON object", "data");
        return false;
    }
    char *text = json_dumps(v, JSON_COMPACT);
    if (!text || strlen(text) > max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "data must be at most %zu bytes as compact JSON", max);
        hd_respond_error(x, 400, "validation_failed", msg, "data");
        free(text);
        return false;
    }
    *out = text;
    return true;
}

/* Reads the target: exactly one of "user_id" and "organization_id", each
 * UUID text. Fills @user_id ("" for the whole organization). An
 * organization other than @org answers 404. */
static bool read_target(struct hd_exchange *x, json_t *body, const char *org,
                        char user_id[HD_ID_LEN + 1])
{
    const char *user, *target_org;
    if (!hd_api_string(x, body, "user_id", false, 0, 64, &user) ||
        !hd_api_string(x, body, "organization_id", false, 0, 64, &target_org))
        return false;
    if (!user == !target_org) {
        hd_respond_error(x, 400, "validation_failed",
                         user ? "give user_id or organization_id, not both"
                              : "user_id or organization_id is required",
                         user ? "organization_id" : "user_id");
        return false;
    }
    const char *field = user ? "user_id" : "organization_id";
    const char *id = user ? user : target_org;
    if (!uuid_text(id, strlen(id))) {
        hd_respond_error(x, 400, "validation_failed", "not an id", field);
        return false;
    }
    if (target_org && strcasecmp(target_org, org) != 0) {
        not_found(x, "no such organization");
        return false;
    }
    snprintf(user_id, HD_ID_LEN + 1, "%s", user ? user : "");
    for (char *c = user_id; *c; c++) /* the store's ids are lower case */
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    return true;
}

/* Refuses members other than the known fields: a typo must not publish a
 * notification without the field the caller meant to send. */
static bool known_fields_only(struct hd_exchange *x, json_t *body)
{
    static const char *const known[] = {"user_id", "organization_id", "type", "title", "body",
                                        "data"};
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value)
    {
        bool ok = false;
        for (size_t i = 0; i < HD_ARRAY_LEN(known) && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            hd_respond_error(x, 400, "validation_failed", "unknown field", key);
            return false;
        }
    }
    return true;
}

/* Validates @body into a new publish for @r's organization, or answers. */
static struct hd_publish *read_publish(struct hd_exchange *x, json_t *body,
                                       const struct publish_req *r)
{
    const struct hd_config *cfg = hd_api_of(x)->cfg;
    char user_id[HD_ID_LEN + 1];
    const char *type, *title, *text;
    char *data = NULL;
    if (!known_fields_only(x, body) || !read_target(x, body, r->org_id, user_id) ||
        !read_type(x, body, &type) ||
        !hd_api_string(x, body, "title", true, 1, TITLE_MAX, &title) ||
        !hd_api_string(x, body, "body", false, 0, BODY_MAX, &text) ||
        !read_data(x, body, cfg->notifications.max_data_bytes, &data))
        return NULL;
    struct hd_publish *p = hd_publish_new();
    memcpy(p->n.org_id, r->org_id, sizeof(p->n.org_id));
    memcpy(p->n.user_id, user_id, sizeof(p->n.user_id));
    p->n.type = hd_strdup(type);
    p->n.title = hd_strdup(title);
    p->n.body = hd_strdup(text ? text : "");
    p->n.data = data;
    return p;
}

/* The caller is known (@r in the exchange state): validate, then the rate
 * limit, then publish. */
static void publish_validate(struct hd_exchange *x, struct hd_api_caller *who)
{
    struct publish_req *r = hd_exchange_state(x);
    json_t *body = hd_api_body(x);
    if (!body)
        return;
    struct hd_publish *p = read_publish(x, body, r);
    json_decref(body);
    if (!p)
        return; /* answered: that freed @r with the exchange's state */
    r->p = p;
    struct hd_api_limit *l = hd_api_limit_new(x);
    if (who) /* registered without the route's own check: see hd_api_notification_routes */
        hd_api_limit_add(l, HD_POLICY_AUTHENTICATED, who->claims.sub, strlen(who->claims.sub),
                         false);
    hd_api_limit_add(l, HD_POLICY_PUBLISH, r->key, strlen(r->key), false);
    hd_api_limit_run(x, l, publish_allowed);
}

static void invalid_api_key(struct hd_exchange *x, bool bearer)
{
    if (bearer)
        hd_respond_header(x, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    hd_respond_error(x, 401, "invalid_api_key", "the API key is not valid", NULL);
}

static void key_found(struct hd_exchange *x, struct hd_store_op *op)
{
    struct publish_req *r = hd_exchange_state(x);
    if (op->status == HD_STORE_NOT_FOUND) {
        invalid_api_key(x, r->bearer); /* unknown or revoked */
        return;
    }
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    if (!has_scope(op->api_key.scopes, "publish")) {
        hd_respond_error(x, 403, "forbidden", "this API key has no publish scope", NULL);
        return;
    }
    memcpy(r->org_id, op->api_key.org_id, sizeof(r->org_id));
    memcpy(r->key, op->api_key.id, sizeof(r->key));
    publish_validate(x, NULL);
}

/* Looks up the API key @key (@len bytes); @bearer: it came as a Bearer
 * token (for the WWW-Authenticate of a refusal). */
static void publish_by_key(struct hd_exchange *x, const char *key, size_t len, bool bearer)
{
    size_t pre = strlen(HD_API_KEY_PREFIX);
    bool shaped = len == HD_API_KEY_LEN && memcmp(key, HD_API_KEY_PREFIX, pre) == 0;
    for (size_t i = pre; shaped && i < len; i++) {
        char c = key[i];
        shaped = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
    }
    if (!shaped) { /* cannot be a key: no need to ask the store */
        invalid_api_key(x, bearer);
        return;
    }
    struct publish_req *r = hd_calloc(1, sizeof(*r));
    r->bearer = bearer;
    hd_exchange_set_state(x, r, publish_req_free);
    struct hd_store_op *op = hd_store_op_new(HD_OP_API_KEY_FIND);
    hd_token_hash_hex(key, len, op->token_hash);
    hd_store_call(hd_api_of(x)->store, x, op, key_found);
}

static void handle_publish(struct hd_exchange *x)
{
    size_t klen = 0, alen = 0;
    const char *key = hd_req_header(x, "X-API-Key", &klen);
    const char *auth = hd_req_header(x, "Authorization", &alen);
    if (key) {
        if (auth || hd_req_header_count(x, "X-API-Key") != 1) {
            hd_respond_error(x, 401, "invalid_api_key",
                             "send one credential: one X-API-Key or one Authorization header",
                             NULL);
            return;
        }
        publish_by_key(x, key, klen, false);
        return;
    }
    size_t pre = strlen(HD_API_KEY_PREFIX);
    if (auth && hd_req_header_count(x, "Authorization") == 1 && alen > 7 + pre &&
        strncasecmp(auth, "Bearer ", 7) == 0 && memcmp(auth + 7, HD_API_KEY_PREFIX, pre) == 0) {
        publish_by_key(x, auth + 7, alen - 7, true);
        return;
    }
    struct hd_api_caller who;
    if (!hd__api_require_admin(x, &who))
        return;
    struct publish_req *r = hd_calloc(1, sizeof(*r));
    memcpy(r->org_id, who.claims.org, sizeof(r->org_id));
    memcpy(r->key, who.claims.sub, sizeof(r->key));
    hd_exchange_set_state(x, r, publish_req_free);
    publish_validate(x, &who);
}

/* ---- GET /api/notifications -------------------------------------------------------- */

/* Query parameter @name into @out (*len: its length; -1 when absent).
 * Answers 400 and returns false when it is there but cannot be read. */
static bool query_param(struct hd_exchange *x, const char *name, char out[QUERY_CAP], int *len)
{
    *len = hd_req_query_param(x, name, out, QUERY_CAP);
    if (*len >= 0 || *len == -ENOENT) {
        *len = *len < 0 ? -1 : *len;
        return true;
    }
    hd_respond_error(x, 400, "validation_failed", "not a valid value", name);
    return false;
}

/* Reads limit (1..100, default 50), before (a positive id) and unread
 * (true|false) into @op. Answers 400 naming the parameter otherwise. A
 * decoded value may hold a NUL ("%00"): lengths, never strlen. */
static bool read_list_query(struct hd_exchange *x, struct hd_store_op *op)
{
    char v[QUERY_CAP];
    int len;
    op->limit = LIST_DEFAULT;
    if (!query_param(x, "limit", v, &len))
        return false;
    if (len >= 0) {
        int64_t n = positive_id(v, (size_t)len);
        if (n < 1 || n > LIST_MAX) {
            hd_respond_error(x, 400, "validation_failed", "limit is 1 to 100", "limit");
            return false;
        }
        op->limit = (int)n;
    }
    if (!query_param(x, "before", v, &len))
        return false;
    if (len >= 0 && (op->before_id = positive_id(v, (size_t)len)) == 0) {
        hd_respond_error(x, 400, "validation_failed", "before is a cursor: a positive id",
                         "before");
        return false;
    }
    if (!query_param(x, "unread", v, &len))
        return false;
    bool yes = len == 4 && memcmp(v, "true", 4) == 0;
    if (len >= 0 && !yes && !(len == 5 && memcmp(v, "false", 5) == 0)) {
        hd_respond_error(x, 400, "validation_failed", "unread is true or false", "unread");
        return false;
    }
    op->unread_only = yes;
    return true;
}

static void listed(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < op->n_notifications; i++)
        json_array_append_new(list, hd_notification_json(&op->notifications[i], 1));
    /* A full page may have more behind it: the client asks for before=<last id>. */
    bool full = op->n_notifications > 0 && op->n_notifications >= (size_t)op->limit;
    json_t *next = full ? json_integer((json_int_t)op->notifications[op->n_notifications - 1].id)
                        : json_null();
    respond_json(x, 200, json_pack("{s:o, s:o}", "notifications", list, "next_cursor", next));
}

static void handle_list(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATIONS_LIST);
    if (!read_list_query(x, op)) {
        hd_store_op_free(op);
        return;
    }
    memcpy(op->user_id, who.claims.sub, sizeof(op->user_id));
    memcpy(op->org_id, who.claims.org, sizeof(op->org_id));
    hd_store_call(hd_api_of(x)->store, x, op, listed);
}

/* ---- POST /api/notifications/{id}/read, /read-all ------------------------------------ */

static void marked(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status == HD_STORE_NOT_FOUND) {
        not_found(x, "no such notification");
        return;
    }
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    hd_respond(x, 204, NULL, NULL, 0);
}

/* A mark op of @kind for the caller, or NULL after answering 401. */
static struct hd_store_op *mark_op(struct hd_exchange *x, enum hd_store_op_kind kind)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return NULL;
    struct hd_store_op *op = hd_store_op_new(kind);
    memcpy(op->user_id, who.claims.sub, sizeof(op->user_id));
    memcpy(op->org_id, who.claims.org, sizeof(op->org_id));
    return op;
}

static void handle_read(struct hd_exchange *x)
{
    struct hd_store_op *op = mark_op(x, HD_OP_NOTIFICATION_MARK_READ);
    if (!op)
        return;
    size_t len = 0;
    const char *id = hd_req_param(x, "id", &len);
    op->notification.id = id ? positive_id(id, len) : 0;
    if (op->notification.id == 0) {
        hd_store_op_free(op);
        not_found(x, "no such notification"); /* not an id: none has it */
        return;
    }
    snprintf(op->id, sizeof(op->id), "%lld", (long long)op->notification.id);
    hd_store_call(hd_api_of(x)->store, x, op, marked);
}

static void handle_read_all(struct hd_exchange *x)
{
    struct hd_store_op *op = mark_op(x, HD_OP_NOTIFICATIONS_MARK_ALL_READ);
    if (op)
        hd_store_call(hd_api_of(x)->store, x, op, marked);
}

int hd_api_notification_routes(struct hd_api *api, struct hd_server *s)
{
    int rc = 0;
    /* Not "authenticated": an API key is no access token, so the route's
     * own check would refuse it; publish charges that policy itself for
     * access tokens. */
    rc |= hd_api_route(api, s, "POST", "/api/notifications", handle_publish, false);
    rc |= hd_api_route(api, s, "GET", "/api/notifications", handle_list, true);
    rc |= hd_api_route(api, s, "POST", "/api/notifications/read-all", handle_read_all, true);
    rc |= hd_api_route(api, s, "POST", "/api/notifications/{id}/read", handle_read, true);
    return rc ? -EINVAL : 0;
}
