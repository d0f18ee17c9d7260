/* The SQLite backend's ops: the SQL of each store op (store.h) and the code
 * that binds its inputs and reads its results. Runs on the DB worker thread
 * that owns the connection. */
#include "store/sqlite_internal.h"

#include "herald/core.h"

#include <stdlib.h>
#include <string.h>

#define LIMIT_DEFAULT 50
#define LIMIT_MAX     500

#define USER_COLS                                                                                  \
    "id, org_id, email, username, display_name, password_hash, role, disabled, created_at, "       \
    "updated_at"
#define SESSION_COLS                                                                               \
    "id, user_id, org_id, user_agent, ip, created_at, last_seen_at, expires_at, "                  \
    "revoked_at"
#define KEY_COLS  "id, org_id, name, key_hash, prefix, scopes, created_at, revoked_at"
#define NOTE_COLS "n.id, n.org_id, n.user_id, n.type, n.title, n.body, n.data, n.created_at"

/* Visible to user ?1 of organization ?2: their own, or organization-wide. */
#define NOTE_OWN "n.user_id = ?1"
#define NOTE_ORG "n.user_id IS NULL AND n.org_id = ?2"
#define NOTE_IS_READ                                                                               \
    "EXISTS (SELECT 1 FROM notification_reads r "                                                  \
    "WHERE r.user_id = ?1 AND r.notification_id = n.id)"

/* One arm of a notification page: ?3 = id bound, ?4 = unread only, ?5 =
 * limit. Each arm walks its own index and stops at the limit, so a page
 * costs O(limit) however many notifications the user has. */
#define NOTE_PAGE_ARM(who)                                                                         \
    "SELECT * FROM (SELECT " NOTE_COLS ", " NOTE_IS_READ " AS is_read FROM notifications n "       \
    "WHERE " who " AND n.id < ?3 AND (?4 = 0 OR NOT " NOTE_IS_READ ") "                            \
    "ORDER BY n.id DESC LIMIT ?5)"
#define NOTE_AFTER_ARM(who)                                                                        \
    "SELECT * FROM (SELECT " NOTE_COLS ", " NOTE_IS_READ " AS is_read FROM notifications n "       \
    "WHERE " who " AND n.id > ?3 ORDER BY n.id LIMIT ?4)"

#define NOTE_AFTER_BOTH "(" NOTE_AFTER_ARM(NOTE_OWN) " UNION ALL " NOTE_AFTER_ARM(NOTE_ORG) ")"

const char *const hd__sq_sql[SQ__COUNT] = {
    [SQ_BEGIN] = "BEGIN IMMEDIATE",
    [SQ_COMMIT] = "COMMIT",
    [SQ_ORG_INSERT] = "INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)",
    [SQ_USER_INSERT] = "INSERT INTO users (" USER_COLS ") "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    [SQ_USER_BY_EMAIL] = "SELECT " USER_COLS " FROM users WHERE lower(email) = lower(?1)",
    [SQ_USER_BY_ID] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    [SQ_USER_UPDATE_PROFILE] =
        "UPDATE users SET "
        "username = CASE WHEN ?2 IS NULL THEN username ELSE NULLIF(?2, '') END, "
        "display_name = CASE WHEN ?3 IS NULL THEN display_name ELSE NULLIF(?3, '') END, "
        "updated_at = ?4 WHERE id = ?1 RETURNING " USER_COLS,
    [SQ_USER_SET_PASSWORD] = "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
    [SQ_USER_SET_DISABLED] = "UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
    [SQ_SESSION_INSERT] = "INSERT INTO sessions (id, user_id, org_id, user_agent, ip, created_at, "
                          "last_seen_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    [SQ_TOKEN_INSERT] =
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?1, ?2, ?3)",
    /* never moves last_seen_at back: touches may arrive out of order */
    [SQ_SESSION_TOUCH] = "UPDATE sessions SET last_seen_at = max(last_seen_at, ?2) "
                         "WHERE id = ?1 AND revoked_at IS NULL",
    [SQ_TOKEN_ROTATE] = "UPDATE refresh_tokens SET rotated_at = ?3, successor_hash = ?4 "
                        "WHERE token_hash = ?2 AND session_id = ?1 AND rotated_at IS NULL "
                        "AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = ?1 "
                        "AND s.revoked_at IS NULL)",
    [SQ_REFRESH_FIND] = "SELECT t.token_hash, t.session_id, t.created_at, t.rotated_at, "
                        "t.successor_hash, s.id, s.user_id, s.org_id, s.user_agent, s.ip, "
                        "s.created_at, s.last_seen_at, s.expires_at, s.revoked_at "
                        "FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id "
                        "WHERE t.token_hash = ?1",
    [SQ_SESSION_REVOKE] =
        "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
    [SQ_SESSIONS_REVOKE_USER] = "UPDATE sessions SET revoked_at = ?3 WHERE user_id = ?1 "
                                "AND id <> ?2 AND revoked_at IS NULL AND expires_at > ?3 "
                                "RETURNING " SESSION_COLS,
    [SQ_SESSIONS_LIST] = "SELECT " SESSION_COLS " FROM sessions WHERE user_id = ?1 "
                         "AND revoked_at IS NULL AND expires_at > ?2 "
                         "ORDER BY created_at DESC, id DESC",
    [SQ_SESSIONS_LIVE] = "SELECT " SESSION_COLS " FROM sessions "
                         "WHERE revoked_at IS NULL AND expires_at > ?1 "
                         "ORDER BY created_at DESC, id DESC",
    [SQ_KEY_INSERT] = "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, scopes, "
                      "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SQ_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = ?3 WHERE id = ?1 AND org_id = ?2 "
                      "AND revoked_at IS NULL",
    [SQ_KEY_FIND] = "SELECT " KEY_COLS " FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
    [SQ_KEYS_LIST] = "SELECT " KEY_COLS " FROM api_keys WHERE org_id = ?1 "
                     "AND revoked_at IS NULL ORDER BY created_at DESC, id DESC",
    /* a user's notification must name a user of that organization */
    [SQ_NOTE_INSERT] = "INSERT INTO notifications (org_id, user_id, type, title, body, data, "
                       "created_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE ?2 IS NULL OR "
                       "EXISTS (SELECT 1 FROM users u WHERE u.id = ?2 AND u.org_id = ?1)",
    [SQ_NOTES_LIST] = "SELECT * FROM (" NOTE_PAGE_ARM(NOTE_OWN) " UNION ALL " NOTE_PAGE_ARM(
        NOTE_ORG) ") ORDER BY id DESC LIMIT ?5",
    /* already read stays read (and keeps its first read_at) but counts as a
     * change, so no change at all means "not visible" */
    [SQ_NOTE_MARK_READ] = "INSERT INTO notification_reads (notification_id, user_id, read_at) "
                          "SELECT n.id, ?1, ?4 FROM notifications n WHERE n.id = ?3 "
                          "AND (" NOTE_OWN " OR (" NOTE_ORG ")) "
                          "ON CONFLICT (user_id, notification_id) DO UPDATE SET read_at = read_at",
    [SQ_NOTES_MARK_ALL_READ] =
        "INSERT INTO notification_reads (notification_id, user_id, read_at) "
        "SELECT n.id, ?1, ?3 FROM notifications n WHERE (" NOTE_OWN " OR (" NOTE_ORG ")) "
        "AND NOT " NOTE_IS_READ " ON CONFLICT DO NOTHING",
    /* every row also carries the smallest id still stored (any user's; 0 for
     * none), read in the same statement, so a resume can tell that retention
     * removed what it missed; no event: one row of NULLs carrying it.
     * min(id) of the INTEGER PRIMARY KEY is O(log n) */
    [SQ_EVENTS_AFTER] =
        "SELECT e.*, m.min_id, m.max_id FROM (SELECT coalesce(min(id), 0) AS "
        "min_id, coalesce(max(id), 0) AS max_id FROM notifications) m LEFT JOIN " NOTE_AFTER_BOTH
        " e ON 1 "
        "ORDER BY e.id LIMIT ?4",
    [SQ_NOTES_PURGE] = "DELETE FROM notifications WHERE created_at < ?1",
    [SQ_PING] = "SELECT 1",
};

/* ---- helpers ------------------------------------------------------------ */

static int clamp_limit_to(int limit, int max)
{
    if (limit == 0)
        return LIMIT_DEFAULT;
    return limit < 1 ? 1 : limit > max ? max : limit;
}

static int clamp_limit(int limit)
{
    return clamp_limit_to(limit, LIMIT_MAX);
}

static int new_id(struct hd_store_op *op, char *out)
{
    return hd_uuid_v4(out) == 0 ? 0 : hd__sq_error(op, "no randomness for an id");
}

/* Runs a write meant to change one row; none changed → NOT_FOUND. */
static void run_change_one(struct hd_store_conn *c, struct hd_store_op *op, sqlite3_stmt *st)
{
    if (hd__sq_run(c, op, st) == 0 && sqlite3_changes(c->db) == 0)
        op->status = HD_STORE_NOT_FOUND;
}

/* Reads every remaining row of @st into a growing array of @size-byte
 * elements with @read. Returns 0 or -1 (op->status set; rows read so far
 * are kept in the array so that hd_store_op_free frees them). */
static int collect(struct hd_store_conn *c, struct hd_store_op *op, sqlite3_stmt *st, void **arr,
                   size_t *n, size_t size, void (*read)(sqlite3_stmt *, void *))
{
    size_t cap = 0;
    int r;
    while ((r = hd__sq_row(c, op, st)) > 0) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *arr = hd_realloc(*arr, cap * size);
        }
        void *el = (char *)*arr + *n * size;
        memset(el, 0, size);
        read(st, el);
        (*n)++;
    }
    return r;
}

static void read_user(sqlite3_stmt *st, void *out)
{
    struct hd_user *u = out;
    hd_user_clear(u);
    hd__sq_col_copy(st, 0, u->id, sizeof(u->id));
    hd__sq_col_copy(st, 1, u->org_id, sizeof(u->org_id));
    u->email = hd__sq_col_dup(st, 2);
    u->username = hd__sq_col_dup(st, 3);
    u->display_name = hd__sq_col_dup(st, 4);
    u->password_hash = hd__sq_col_dup(st, 5);
    const unsigned char *role = sqlite3_column_text(st, 6);
    u->role = role && strcmp((const char *)role, "admin") == 0 ? HD_ROLE_ADMIN : HD_ROLE_MEMBER;
    u->disabled = sqlite3_column_int(st, 7) != 0;
    u->created_at = sqlite3_column_int64(st, 8);
    u->updated_at = sqlite3_column_int64(st, 9);
}

/* SESSION_COLS starting at column @at. */
static void read_session_at(sqlite3_stmt *st, int at, struct hd_session *s)
{
    hd_session_clear(s);
    hd__sq_col_copy(st, at, s->id, sizeof(s->id));
    hd__sq_col_copy(st, at + 1, s->user_id, sizeof(s->user_id));
    hd__sq_col_copy(st, at + 2, s->org_id, sizeof(s->org_id));
    s->user_agent = hd__sq_col_dup(st, at + 3);
    s->ip = hd__sq_col_dup(st, at + 4);
    s->created_at = sqlite3_column_int64(st, at + 5);
    s->last_seen_at = sqlite3_column_int64(st, at + 6);
    s->expires_at = sqlite3_column_int64(st, at + 7);
    s->revoked_at = sqlite3_column_int64(st, at + 8); /* NULL reads as 0 */
}

static void read_session(sqlite3_stmt *st, void *out)
{
    read_session_at(st, 0, out);
}

static void read_key(sqlite3_stmt *st, void *out)
{
    struct hd_api_key *k = out;
    hd_api_key_clear(k);
    hd__sq_col_copy(st, 0, k->id, sizeof(k->id));
    hd__sq_col_copy(st, 1, k->org_id, sizeof(k->org_id));
    k->name = hd__sq_col_dup(st, 2);
    k->key_hash = hd__sq_col_dup(st, 3);
    k->prefix = hd__sq_col_dup(st, 4);
    k->scopes = hd__sq_col_dup(st, 5);
    k->created_at = sqlite3_column_int64(st, 6);
    k->revoked_at = sqlite3_column_int64(st, 7);
}

static void read_note(sqlite3_stmt *st, void *out)
{
    struct hd_notification *n = out;
    hd_notification_clear(n);
    n->id = sqlite3_column_int64(st, 0);
    hd__sq_col_copy(st, 1, n->org_id, sizeof(n->org_id));
    hd__sq_col_copy(st, 2, n->user_id, sizeof(n->user_id)); /* NULL → "" */
    n->type = hd__sq_col_dup(st, 3);
    n->title = hd__sq_col_dup(st, 4);
    n->body = hd__sq_col_dup(st, 5);
    n->data = hd__sq_col_dup(st, 6);
    n->created_at = sqlite3_column_int64(st, 7);
    n->read = sqlite3_column_int(st, 8) != 0;
}

/* Runs @st, which yields at most one row, into @out with @read; no row →
 * NOT_FOUND. */
static void find_one(struct hd_store_conn *c, struct hd_store_op *op, sqlite3_stmt *st,
                     void (*read)(sqlite3_stmt *, void *), void *out)
{
    int r = hd__sq_row(c, op, st);
    if (r == 0)
        op->status = HD_STORE_NOT_FOUND;
    if (r <= 0)
        return;
    read(st, out);
    hd__sq_run(c, op, st); /* to the end: a RETURNING write commits there */
}

/* ---- users and organizations ------------------------------------------------ */

static int insert_org(struct hd_store_conn *c, struct hd_store_op *op, int64_t now)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_ORG_INSERT);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, op->user.org_id, -1, SQLITE_STATIC);
    hd__sq_bind_text(st, 2, op->org_name ? op->org_name : "", false);
    sqlite3_bind_int64(st, 3, now);
    return hd__sq_run(c, op, st);
}

/* Inserts op->user (id already chosen); "" username/display_name → NULL. */
static int insert_user(struct hd_store_conn *c, struct hd_store_op *op, int64_t now)
{
    const struct hd_user *u = &op->user;
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_USER_INSERT);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, u->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, u->org_id, -1, SQLITE_STATIC);
    hd__sq_bind_text(st, 3, u->email, false);
    hd__sq_bind_text(st, 4, u->username, true);
    hd__sq_bind_text(st, 5, u->display_name, true);
    hd__sq_bind_text(st, 6, u->password_hash, false);
    sqlite3_bind_text(st, 7, u->role == HD_ROLE_ADMIN ? "admin" : "member", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 8, u->disabled);
    sqlite3_bind_int64(st, 9, now);
    return hd__sq_run(c, op, st);
}

/* What a created user reads like afterwards. */
static void finish_user(struct hd_user *u, int64_t now)
{
    if (u->username && !u->username[0]) {
        free(u->username);
        u->username = NULL;
    }
    if (u->display_name && !u->display_name[0]) {
        free(u->display_name);
        u->display_name = NULL;
    }
    u->created_at = u->updated_at = now;
}

static void op_create_org_and_user(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_user *u = &op->user;
    int64_t now = hd__sq_now(op);
    if (new_id(op, u->org_id) != 0 || new_id(op, u->id) != 0)
        return;
    u->role = HD_ROLE_ADMIN;
    u->disabled = false;
    if (hd__sq_begin(c, op) != 0)
        return;
    if (insert_org(c, op, now) != 0 || insert_user(c, op, now) != 0) {
        hd__sq_rollback(c);
        return;
    }
    if (hd__sq_commit(c, op) == 0)
        finish_user(u, now);
}

static void op_create_user(struct hd_store_conn *c, struct hd_store_op *op)
{
    int64_t now = hd__sq_now(op);
    if (new_id(op, op->user.id) == 0 && insert_user(c, op, now) == 0)
        finish_user(&op->user, now);
}

static void op_find_user_by_email(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_USER_BY_EMAIL);
    if (!st)
        return;
    hd__sq_bind_text(st, 1, op->email ? op->email : "", false);
    find_one(c, op, st, read_user, &op->user);
}

static void op_find_user_by_id(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_USER_BY_ID);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    find_one(c, op, st, read_user, &op->user);
}

static void op_update_profile(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_USER_UPDATE_PROFILE);
    if (!st)
        return;
    /* the inputs are bound without copies: keep them until the statement is done */
    char *username = op->user.username, *display_name = op->user.display_name;
    op->user.username = op->user.display_name = NULL;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    hd__sq_bind_text(st, 2, username, false);     /* NULL keeps, "" clears */
    hd__sq_bind_text(st, 3, display_name, false); /* the same */
    sqlite3_bind_int64(st, 4, hd__sq_now(op));
    find_one(c, op, st, read_user, &op->user);
    free(username);
    free(display_name);
}

static void op_set_password_hash(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_USER_SET_PASSWORD);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    hd__sq_bind_text(st, 2, op->user.password_hash, false);
    sqlite3_bind_int64(st, 3, hd__sq_now(op));
    run_change_one(c, op, st);
}

static void op_set_user_disabled(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_USER_SET_DISABLED);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, op->flag);
    sqlite3_bind_int64(st, 3, hd__sq_now(op));
    run_change_one(c, op, st);
}

/* ---- sessions and refresh tokens -------------------------------------------- */

static int insert_session(struct hd_store_conn *c, struct hd_store_op *op, int64_t now)
{
    const struct hd_session *s = &op->session;
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_SESSION_INSERT);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->org_id, -1, SQLITE_STATIC);
    hd__sq_bind_text(st, 4, s->user_agent, false);
    hd__sq_bind_text(st, 5, s->ip, false);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_int64(st, 7, s->expires_at);
    return hd__sq_run(c, op, st);
}

static int insert_token(struct hd_store_conn *c, struct hd_store_op *op, const char *session_id,
                        const char *hash, int64_t now)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_TOKEN_INSERT);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    return hd__sq_run(c, op, st);
}

static void op_session_create(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_session *s = &op->session;
    int64_t now = hd__sq_now(op);
    if (new_id(op, s->id) != 0)
        return;
    if (hd__sq_begin(c, op) != 0)
        return;
    if (insert_session(c, op, now) != 0 || insert_token(c, op, s->id, op->token_hash, now) != 0) {
        hd__sq_rollback(c);
        return;
    }
    if (hd__sq_commit(c, op) != 0)
        return;
    s->created_at = s->last_seen_at = now;
    s->revoked_at = 0;
}

static void op_session_touch(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_SESSION_TOUCH);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, hd__sq_now(op));
    run_change_one(c, op, st);
}

/* Marks the current token rotated; 1 when it was current, 0 when not. */
static int mark_rotated(struct hd_store_conn *c, struct hd_store_op *op, int64_t now)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_TOKEN_ROTATE);
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, op->new_token_hash, -1, SQLITE_STATIC);
    if (hd__sq_run(c, op, st) != 0)
        return -1;
    return sqlite3_changes(c->db) > 0;
}

static void op_session_rotate(struct hd_store_conn *c, struct hd_store_op *op)
{
    int64_t now = hd__sq_now(op);
    if (hd__sq_begin(c, op) != 0)
        return;
    int current = mark_rotated(c, op, now);
    if (current == 0)
        op->status = HD_STORE_NOT_FOUND;
    if (current <= 0 || insert_token(c, op, op->id, op->new_token_hash, now) != 0) {
        hd__sq_rollback(c);
        return;
    }
    hd__sq_commit(c, op);
}

static void read_refresh(sqlite3_stmt *st, void *out)
{
    struct hd_store_op *op = out;
    struct hd_refresh_token *t = &op->refresh;
    hd__sq_col_copy(st, 0, t->token_hash, sizeof(t->token_hash));
    hd__sq_col_copy(st, 1, t->session_id, sizeof(t->session_id));
    t->created_at = sqlite3_column_int64(st, 2);
    t->rotated_at = sqlite3_column_int64(st, 3);
    hd__sq_col_copy(st, 4, t->successor_hash, sizeof(t->successor_hash));
    read_session_at(st, 5, &op->session);
}

static void op_refresh_find(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_REFRESH_FIND);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->token_hash, -1, SQLITE_STATIC);
    find_one(c, op, st, read_refresh, op);
}

static void op_session_revoke(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_SESSION_REVOKE);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, hd__sq_now(op));
    run_change_one(c, op, st);
}

static void op_sessions_revoke_user(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_SESSIONS_REVOKE_USER);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->except_id, -1, SQLITE_STATIC); /* "" matches no session */
    sqlite3_bind_int64(st, 3, hd__sq_now(op));
    collect(c, op, st, (void **)&op->sessions, &op->n_sessions, sizeof(*op->sessions),
            read_session);
}

static void op_sessions_list(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_SESSIONS_LIST);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, hd__sq_now(op));
    collect(c, op, st, (void **)&op->sessions, &op->n_sessions, sizeof(*op->sessions),
            read_session);
}

static void op_sessions_load_live(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_SESSIONS_LIVE);
    if (!st)
        return;
    sqlite3_bind_int64(st, 1, hd__sq_now(op));
    collect(c, op, st, (void **)&op->sessions, &op->n_sessions, sizeof(*op->sessions),
            read_session);
}

/* ---- API keys ------------------------------------------------------------------ */

static void op_api_key_create(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_api_key *k = &op->api_key;
    int64_t now = hd__sq_now(op);
    sqlite3_stmt *st = new_id(op, k->id) == 0 ? hd__sq_stmt(c, op, SQ_KEY_INSERT) : NULL;
    if (!st)
        return;
    sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->org_id, -1, SQLITE_STATIC);
    hd__sq_bind_text(st, 3, k->name, false);
    hd__sq_bind_text(st, 4, k->key_hash, false);
    hd__sq_bind_text(st, 5, k->prefix, false);
    hd__sq_bind_text(st, 6, k->scopes, false);
    sqlite3_bind_int64(st, 7, now);
    if (hd__sq_run(c, op, st) != 0)
        return;
    k->created_at = now;
    k->revoked_at = 0;
}

static void op_api_key_revoke(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_KEY_REVOKE);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->org_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, hd__sq_now(op));
    run_change_one(c, op, st);
}

static void op_api_key_find(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_KEY_FIND);
    if (!st)
        return;
    /* the key is op->token_hash, or op->api_key.key_hash, which read_key
     * replaces: keep that one alive until the statement is done */
    char *hash = op->api_key.key_hash;
    op->api_key.key_hash = NULL;
    hd__sq_bind_text(st, 1, op->token_hash[0] || !hash ? op->token_hash : hash, false);
    find_one(c, op, st, read_key, &op->api_key);
    if (!op->api_key.key_hash) {
        op->api_key.key_hash = hash; /* not found: leave the input as it was */
        return;
    }
    free(hash);
}

static void op_api_keys_list(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_KEYS_LIST);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->org_id, -1, SQLITE_STATIC);
    collect(c, op, st, (void **)&op->api_keys, &op->n_api_keys, sizeof(*op->api_keys), read_key);
}

/* ---- notifications ---------------------------------------------------------- */

static void op_notification_insert(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_notification *n = &op->notification;
    int64_t now = hd__sq_now(op);
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_NOTE_INSERT);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, n->org_id, -1, SQLITE_STATIC);
    hd__sq_bind_text(st, 2, n->user_id, true); /* "" = organization-wide */
    hd__sq_bind_text(st, 3, n->type, false);
    hd__sq_bind_text(st, 4, n->title, false);
    hd__sq_bind_text(st, 5, n->body, false);
    hd__sq_bind_text(st, 6, n->data, false);
    sqlite3_bind_int64(st, 7, now);
    if (hd__sq_run(c, op, st) != 0)
        return;
    if (sqlite3_changes(c->db) == 0) {
        op->status = HD_STORE_NOT_FOUND; /* the user is not in that organization */
        return;
    }
    n->id = sqlite3_last_insert_rowid(c->db);
    n->created_at = now;
}

static void op_notifications_list(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_NOTES_LIST);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->org_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, op->before_id > 0 ? op->before_id : INT64_MAX);
    sqlite3_bind_int(st, 4, op->unread_only);
    sqlite3_bind_int(st, 5, clamp_limit(op->limit));
    collect(c, op, st, (void **)&op->notifications, &op->n_notifications,
            sizeof(*op->notifications), read_note);
}

/* The notification mark_read names: notification.id, or op->id in decimal
 * (store.h says "in: id", but ids of notifications are integers). */
static int64_t note_id(const struct hd_store_op *op)
{
    return op->notification.id ? op->notification.id : strtoll(op->id, NULL, 10);
}

static void op_notification_mark_read(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_NOTE_MARK_READ);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->org_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, note_id(op));
    sqlite3_bind_int64(st, 4, hd__sq_now(op));
    run_change_one(c, op, st);
}

static void op_notifications_mark_all_read(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_NOTES_MARK_ALL_READ);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->org_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, hd__sq_now(op));
    if (hd__sq_run(c, op, st) == 0)
        op->count = sqlite3_changes(c->db);
}

#define EVENTS_MIN_COL 9 /* after NOTE_COLS and is_read */

static void op_events_after(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_EVENTS_AFTER);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, op->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->org_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, op->after_id);
    sqlite3_bind_int(st, 4, clamp_limit_to(op->limit, HD_EVENTS_AFTER_MAX));
    size_t cap = 0;
    int r;
    while ((r = hd__sq_row(c, op, st)) > 0) {
        op->count = sqlite3_column_int64(st, EVENTS_MIN_COL);
        op->newest_id = sqlite3_column_int64(st, EVENTS_MIN_COL + 1);
        if (sqlite3_column_type(st, 0) == SQLITE_NULL)
            continue; /* no event: the row of NULLs */
        if (op->n_notifications == cap) {
            cap = cap ? cap * 2 : 8;
            op->notifications = hd_realloc(op->notifications, cap * sizeof(*op->notifications));
        }
        struct hd_notification *n = &op->notifications[op->n_notifications++];
        memset(n, 0, sizeof(*n));
        read_note(st, n);
    }
}

static void op_notifications_purge(struct hd_store_conn *c, struct hd_store_op *op)
{
    sqlite3_stmt *st = hd__sq_stmt(c, op, SQ_NOTES_PURGE);
    if (!st)
        return;
    sqlite3_bind_int64(st, 1, op->before);
    if (hd__sq_run(c, op, st) == 0)
        op->count = sqlite3_changes(c->db); /* the cascaded reads are not counted */
}

static void op_ping(struct hd_store_conn *c, struct hd_store_op *op)
{
    hd__sq_simple(c, op, SQ_PING);
}

const hd__sq_op_fn hd__sq_ops[HD_OP__COUNT] = {
    [HD_OP_CREATE_ORG_AND_USER] = op_create_org_and_user,
    [HD_OP_CREATE_USER] = op_create_user,
    [HD_OP_FIND_USER_BY_EMAIL] = op_find_user_by_email,
    [HD_OP_FIND_USER_BY_ID] = op_find_user_by_id,
    [HD_OP_UPDATE_PROFILE] = op_update_profile,
    [HD_OP_SET_PASSWORD_HASH] = op_set_password_hash,
    [HD_OP_SET_USER_DISABLED] = op_set_user_disabled,
    [HD_OP_SESSION_CREATE] = op_session_create,
    [HD_OP_SESSION_TOUCH] = op_session_touch,
    [HD_OP_SESSION_ROTATE] = op_session_rotate,
    [HD_OP_REFRESH_FIND] = op_refresh_find,
    [HD_OP_SESSION_REVOKE] = op_session_revoke,
    [HD_OP_SESSIONS_REVOKE_USER] = op_sessions_revoke_user,
    [HD_OP_SESSIONS_LIST] = op_sessions_list,
    [HD_OP_SESSIONS_LOAD_LIVE] = op_sessions_load_live,
    [HD_OP_API_KEY_CREATE] = op_api_key_create,
    [HD_OP_API_KEY_REVOKE] = op_api_key_revoke,
    [HD_OP_API_KEY_FIND] = op_api_key_find,
    [HD_OP_API_KEYS_LIST] = op_api_keys_list,
    [HD_OP_NOTIFICATION_INSERT] = op_notification_insert,
    [HD_OP_NOTIFICATIONS_LIST] = op_notifications_list,
    [HD_OP_NOTIFICATION_MARK_READ] = op_notification_mark_read,
    [HD_OP_NOTIFICATIONS_MARK_ALL_READ] = op_notifications_mark_all_read,
    [HD_OP_EVENTS_AFTER] = op_events_after,
    [HD_OP_NOTIFICATIONS_PURGE] = op_notifications_purge,
    [HD_OP_PING] = op_ping,
};
