/* Store ops: allocation, freeing, names, ids; backend choice. */
#include "herald/store.h"

#include "store/backend.h"

#include "herald/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hd_store_op *hd_store_op_new(enum hd_store_op_kind kind)
{
    struct hd_store_op *op = hd_calloc(1, sizeof(*op));
    op->kind = kind;
    return op;
}

void hd_user_clear(struct hd_user *u)
{
    free(u->email);
    free(u->username);
    free(u->display_name);
    free(u->password_hash);
    u->email = u->username = u->display_name = u->password_hash = NULL;
}

void hd_session_clear(struct hd_session *s)
{
    free(s->user_agent);
    free(s->ip);
    s->user_agent = s->ip = NULL;
}

void hd_api_key_clear(struct hd_api_key *k)
{
    free(k->name);
    free(k->key_hash);
    free(k->prefix);
    free(k->scopes);
    k->name = k->key_hash = k->prefix = k->scopes = NULL;
}

void hd_notification_clear(struct hd_notification *n)
{
    free(n->type);
    free(n->title);
    free(n->body);
    free(n->data);
    n->type = n->title = n->body = n->data = NULL;
}

void hd_store_op_free(struct hd_store_op *op)
{
    if (!op)
        return;
    free(op->email);
    free(op->org_name);
    hd_user_clear(&op->user);
    hd_session_clear(&op->session);
    hd_api_key_clear(&op->api_key);
    hd_notification_clear(&op->notification);
    for (size_t i = 0; i < op->n_sessions; i++)
        hd_session_clear(&op->sessions[i]);
    free(op->sessions);
    for (size_t i = 0; i < op->n_api_keys; i++)
        hd_api_key_clear(&op->api_keys[i]);
    free(op->api_keys);
    for (size_t i = 0; i < op->n_notifications; i++)
        hd_notification_clear(&op->notifications[i]);
    free(op->notifications);
    free(op);
}

static const char *const op_names[HD_OP__COUNT] = {
    [HD_OP_CREATE_ORG_AND_USER] = "create_org_and_user",
    [HD_OP_CREATE_USER] = "create_user",
    [HD_OP_FIND_USER_BY_EMAIL] = "find_user_by_email",
    [HD_OP_FIND_USER_BY_ID] = "find_user_by_id",
    [HD_OP_UPDATE_PROFILE] = "update_profile",
    [HD_OP_SET_PASSWORD_HASH] = "set_password_hash",
    [HD_OP_SET_USER_DISABLED] = "set_user_disabled",
    [HD_OP_SESSION_CREATE] = "session_create",
    [HD_OP_SESSION_TOUCH] = "session_touch",
    [HD_OP_SESSION_ROTATE] = "session_rotate",
    [HD_OP_REFRESH_FIND] = "refresh_find",
    [HD_OP_SESSION_REVOKE] = "session_revoke",
    [HD_OP_SESSIONS_REVOKE_USER] = "sessions_revoke_user",
    [HD_OP_SESSIONS_LIST] = "sessions_list",
    [HD_OP_SESSIONS_LOAD_LIVE] = "sessions_load_live",
    [HD_OP_API_KEY_CREATE] = "api_key_create",
    [HD_OP_API_KEY_REVOKE] = "api_key_revoke",
    [HD_OP_API_KEY_FIND] = "api_key_find",
    [HD_OP_API_KEYS_LIST] = "api_keys_list",
    [HD_OP_NOTIFICATION_INSERT] = "notification_insert",
    [HD_OP_NOTIFICATIONS_LIST] = "notifications_list",
    [HD_OP_NOTIFICATION_MARK_READ] = "notification_mark_read",
    [HD_OP_NOTIFICATIONS_MARK_ALL_READ] = "notifications_mark_all_read",
    [HD_OP_EVENTS_AFTER] = "events_after",
    [HD_OP_NOTIFICATIONS_PURGE] = "notifications_purge",
    [HD_OP_PING] = "ping",
};

const char *hd_store_op_name(enum hd_store_op_kind kind)
{
    return kind < HD_OP__COUNT && op_names[kind] ? op_names[kind] : "unknown";
}

const char *hd_store_status_name(enum hd_store_status status)
{
    switch (status) {
    case HD_STORE_OK:
        return "ok";
    case HD_STORE_NOT_FOUND:
        return "not_found";
    case HD_STORE_CONFLICT:
        return "conflict";
    case HD_STORE_UNAVAILABLE:
        return "unavailable";
    case HD_STORE_TIMEOUT:
        return "timeout";
    case HD_STORE_ERROR:
        return "error";
    }
    return "unknown";
}

int hd_uuid_v4(char *out)
{
    unsigned char b[16];
    int rc = hd_random_bytes(b, sizeof(b));
    if (rc != 0)
        return rc;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
    return 0;
}

const struct hd_store_backend *hd__store_backend_for(const char *url, const char *sqlite_path,
                                                     const char **target)
{
    if (!url || !url[0]) {
        *target = sqlite_path;
        return &hd__store_sqlite;
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        *target = url;
        return &hd__store_postgres;
    }
    if (strncmp(url, "sqlite:", 7) == 0 && url[7]) {
        *target = url + 7;
        return &hd__store_sqlite;
    }
    return NULL;
}
