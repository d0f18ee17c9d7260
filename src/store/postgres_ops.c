/* The Postgres backend's ops: one prepared statement (or a short
 * transaction of them) per op kind, text parameters, results read into the
 * op's structs. Runs on the DB worker thread that owns the connection. */
#include "store/postgres_internal.h"

#include "herald/core.h"
#include "herald/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USER_COLS                                                                                  \
    "id, org_id, email, username, display_name, password_hash, role, disabled, created_at, "       \
    "updated_at"
#define SESSION_COLS                                                                               \
    "id, user_id, org_id, user_agent, ip, created_at, last_seen_at, expires_at, revoked_at"
#define KEY_COLS "id, org_id, name, key_hash, prefix, scopes, created_at, revoked_at"
/* With "LEFT JOIN notification_reads r" for the read flag of the user. */
#define NOTE_COLS                                                                                  \
    "n.id, n.org_id, n.user_id, n.type, n.title, n.body, n.data, n.created_at, "                   \
    "r.notification_id IS NOT NULL AS is_read"
/* Own notifications and the organization-wide ones; $1 user, $2 org. */
#define NOTE_VISIBLE "(n.user_id = $1 OR (n.user_id IS NULL AND n.org_id = $2))"
#define NOTE_OWN     "n.user_id = $1"
#define NOTE_ORG     "n.user_id IS NULL AND n.org_id = $2"
#define NOTE_READS   "LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = $1"
/* A page is the merge of two arms, own and organization-wide, each walking
 * its own index ((user_id, id) / (org_id, id) WHERE user_id IS NULL) and
 * stopping at the limit: O(limit) however large the table. One OR instead
 * would walk the primary key backwards, filtering every tenant's rows. */
#define NOTE_ARM(who, cond, order, limit)                                                          \
    "(SELECT " NOTE_COLS " FROM notifications n " NOTE_READS " WHERE " who " AND " cond            \
    " ORDER BY n.id " order " LIMIT " limit ")"

#define STMT(slot_, name_, sql_)                                                                   \
    {                                                                                              \
        .slot = (slot_), .name = "hd_" name_, .sql = (sql_)                                        \
    }

/* ---- statements ---------------------------------------------------------- */

static const struct hd_pg_stmt ORG_INSERT =
    STMT(0, "org_insert", "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)");
static const struct hd_pg_stmt USER_INSERT =
    STMT(1, "user_insert",
         "INSERT INTO users (" USER_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)");
static const struct hd_pg_stmt USER_BY_EMAIL =
    STMT(2, "user_by_email", "SELECT " USER_COLS " FROM users WHERE lower(email) = lower($1)");
static const struct hd_pg_stmt USER_BY_ID =
    STMT(3, "user_by_id", "SELECT " USER_COLS " FROM users WHERE id = $1");
/* NULL keeps a field, "" clears it. */
static const struct hd_pg_stmt USER_PROFILE = STMT(
    4, "user_profile",
    "UPDATE users SET "
    "username = CASE WHEN $2::text IS NULL THEN username ELSE NULLIF($2::text, '') END, "
    "display_name = CASE WHEN $3::text IS NULL THEN display_name ELSE NULLIF($3::text, '') END, "
    "updated_at = $4 WHERE id = $1 RETURNING " USER_COLS);
static const struct hd_pg_stmt USER_PASSWORD =
    STMT(5, "user_password", "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1");
static const struct hd_pg_stmt USER_DISABLED =
    STMT(6, "user_disabled", "UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1");
static const struct hd_pg_stmt SESSION_INSERT =
    STMT(7, "session_insert",
         "INSERT INTO sessions (id, user_id, org_id, user_agent, ip, created_at, last_seen_at, "
         "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)");
static const struct hd_pg_stmt REFRESH_INSERT =
    STMT(8, "refresh_insert",
         "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)");
/* Never moves last_seen_at back (touches may arrive out of order). */
static const struct hd_pg_stmt SESSION_TOUCH =
    STMT(9, "session_touch",
         "UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $2) "
         "WHERE id = $1 AND revoked_at IS NULL");
/* Locks the current token: a concurrent rotation waits, then finds it
 * rotated and gets no row. */
static const struct hd_pg_stmt REFRESH_LOCK =
    STMT(10, "refresh_lock",
         "SELECT t.session_id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id "
         "WHERE t.token_hash = $1 AND t.session_id = $2 AND t.rotated_at IS NULL "
         "AND s.revoked_at IS NULL FOR UPDATE OF t");
static const struct hd_pg_stmt REFRESH_ROTATED =
    STMT(11, "refresh_rotated",
         "UPDATE refresh_tokens SET rotated_at = $2, successor_hash = $3 WHERE token_hash = $1");
static const struct hd_pg_stmt REFRESH_FIND =
    STMT(12, "refresh_find",
         "SELECT t.token_hash, t.session_id, t.created_at, t.rotated_at, t.successor_hash, "
         "s.id, s.user_id, s.org_id, s.user_agent, s.ip, s.created_at, s.last_seen_at, "
         "s.expires_at, s.revoked_at "
         "FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = $1");
static const struct hd_pg_stmt SESSION_REVOKE =
    STMT(13, "session_revoke",
         "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL");
static const struct hd_pg_stmt SESSIONS_REVOKE_USER =
    STMT(14, "sessions_revoke_user",
         "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND id <> $2 "
         "AND revoked_at IS NULL AND expires_at > $3 RETURNING " SESSION_COLS);
static const struct hd_pg_stmt SESSIONS_LIST =
    STMT(15, "sessions_list",
         "SELECT " SESSION_COLS " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL "
         "AND expires_at > $2 ORDER BY created_at DESC, id COLLATE \"C\" DESC");
static const struct hd_pg_stmt SESSIONS_LIVE =
    STMT(16, "sessions_live",
         "SELECT " SESSION_COLS " FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 "
         "ORDER BY created_at DESC, id COLLATE \"C\" DESC");
static const struct hd_pg_stmt KEY_INSERT =
    STMT(17, "key_insert",
         "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, scopes, created_at) "
         "VALUES ($1, $2, $3, $4, $5, $6, $7)");
static const struct hd_pg_stmt KEY_REVOKE =
    STMT(18, "key_revoke",
         "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND org_id = $2 "
         "AND revoked_at IS NULL");
static const struct hd_pg_stmt KEY_FIND = STMT(
    19, "key_find", "SELECT " KEY_COLS " FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL");
static const struct hd_pg_stmt KEYS_LIST =
    STMT(20, "keys_list",
         "SELECT " KEY_COLS " FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL "
         "ORDER BY created_at DESC, id COLLATE \"C\" DESC");
/* A user-addressed notification must name a user of that organization. */
static const struct hd_pg_stmt NOTE_INSERT =
    STMT(21, "note_insert",
         "INSERT INTO notifications (org_id, user_id, type, title, body, data, created_at) "
         "SELECT $1::text, NULLIF($2::text, ''), $3, $4, $5, $6, $7 "
         "WHERE $2::text = '' OR EXISTS "
         "(SELECT 1 FROM users WHERE id = $2::text AND org_id = $1::text) RETURNING id");
#define NOTES_PAGE_COND "n.id < $3 AND (NOT $4::boolean OR r.notification_id IS NULL)"
static const struct hd_pg_stmt NOTES_LIST =
    STMT(22, "notes_list",
         "SELECT * FROM (" NOTE_ARM(NOTE_OWN, NOTES_PAGE_COND, "DESC", "$5") " UNION ALL " NOTE_ARM(
             NOTE_ORG, NOTES_PAGE_COND, "DESC", "$5") ") u ORDER BY id DESC LIMIT $5");
/* Every row also carries the smallest id still stored (any user's; 0 for
 * none), from the same snapshot as the events, so a resume can tell that
 * retention removed what it missed. No event: one row of NULLs carrying it.
 * min(id) walks the primary key: O(log n). */
static const struct hd_pg_stmt EVENTS_AFTER =
    STMT(23, "events_after",
         "SELECT u.*, m.min_id, m.max_id FROM (SELECT COALESCE(min(id), 0) AS min_id, "
         "COALESCE(max(id), 0) AS max_id FROM notifications) m "
         "LEFT JOIN (" NOTE_ARM(NOTE_OWN, "n.id > $3", "ASC", "$4") " UNION ALL " NOTE_ARM(
             NOTE_ORG, "n.id > $3", "ASC", "$4") ") u ON true ORDER BY u.id ASC LIMIT $4");
#define EVENTS_MIN_COL 9 /* after NOTE_COLS */
/* One row: 1 when the notification is visible to the user, else 0. */
static const struct hd_pg_stmt NOTE_MARK_READ =
    STMT(24, "note_mark_read",
         "WITH vis AS (SELECT n.id FROM notifications n WHERE n.id = $3 AND " NOTE_VISIBLE "), "
         "ins AS (INSERT INTO notification_reads (notification_id, user_id, read_at) "
         "SELECT id, $1, $4 FROM vis ON CONFLICT DO NOTHING) "
         "SELECT count(*) FROM vis");
static const struct hd_pg_stmt NOTES_MARK_ALL =
    STMT(25, "notes_mark_all",
         "INSERT INTO notification_reads (notification_id, user_id, read_at) "
         "SELECT n.id, $1, $3 FROM notifications n WHERE " NOTE_VISIBLE " ON CONFLICT DO NOTHING");
static const struct hd_pg_stmt NOTES_PURGE =
    STMT(26, "notes_purge", "DELETE FROM notifications WHERE created_at < $1");
static const struct hd_pg_stmt PING = STMT(27, "ping", "SELECT 1");

/* ---- reading rows -------------------------------------------------------- */

static char *get_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : hd_strdup(PQgetvalue(r, row, col));
}

static int64_t get_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static bool get_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

/* Copies a text column into a fixed array; NULL becomes "". */
static void get_fixed(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

#define GET_FIXED(dst, r, row, col) get_fixed((dst), sizeof(dst), (r), (row), (col))

static void read_user(const PGresult *r, int row, struct hd_user *u)
{
    hd_user_clear(u);
    GET_FIXED(u->id, r, row, 0);
    GET_FIXED(u->org_id, r, row, 1);
    u->email = get_str(r, row, 2);
    u->username = get_str(r, row, 3);
    u->display_name = get_str(r, row, 4);
    u->password_hash = get_str(r, row, 5);
    u->role = strcmp(PQgetvalue(r, row, 6), "admin") == 0 ? HD_ROLE_ADMIN : HD_ROLE_MEMBER;
    u->disabled = get_bool(r, row, 7);
    u->created_at = get_i64(r, row, 8);
    u->updated_at = get_i64(r, row, 9);
}

/* Reads SESSION_COLS starting at column @c. */
static void read_session(const PGresult *r, int row, int c, struct hd_session *s)
{
    hd_session_clear(s);
    GET_FIXED(s->id, r, row, c);
    GET_FIXED(s->user_id, r, row, c + 1);
    GET_FIXED(s->org_id, r, row, c + 2);
    s->user_agent = get_str(r, row, c + 3);
    s->ip = get_str(r, row, c + 4);
    s->created_at = get_i64(r, row, c + 5);
    s->last_seen_at = get_i64(r, row, c + 6);
    s->expires_at = get_i64(r, row, c + 7);
    s->revoked_at = get_i64(r, row, c + 8);
}

static void read_key(const PGresult *r, int row, struct hd_api_key *k)
{
    hd_api_key_clear(k);
    GET_FIXED(k->id, r, row, 0);
    GET_FIXED(k->org_id, r, row, 1);
    k->name = get_str(r, row, 2);
    k->key_hash = get_str(r, row, 3);
    k->prefix = get_str(r, row, 4);
    k->scopes = get_str(r, row, 5);
    k->created_at = get_i64(r, row, 6);
    k->revoked_at = get_i64(r, row, 7);
}

static void read_note(const PGresult *r, int row, struct hd_notification *n)
{
    hd_notification_clear(n);
    n->id = get_i64(r, row, 0);
    GET_FIXED(n->org_id, r, row, 1);
    GET_FIXED(n->user_id, r, row, 2);
    n->type = get_str(r, row, 3);
    n->title = get_str(r, row, 4);
    n->body = get_str(r, row, 5);
    n->data = get_str(r, row, 6);
    n->created_at = get_i64(r, row, 7);
    n->read = get_bool(r, row, 8);
}

static void read_sessions(const PGresult *r, struct hd_store_op *op)
{
    int n = PQntuples(r);
    op->sessions = n ? hd_calloc((size_t)n, sizeof(*op->sessions)) : NULL;
    for (int i = 0; i < n; i++)
        read_session(r, i, 0, &op->sessions[i]);
    op->n_sessions = (size_t)n;
}

static void read_keys(const PGresult *r, struct hd_store_op *op)
{
    int n = PQntuples(r);
    op->api_keys = n ? hd_calloc((size_t)n, sizeof(*op->api_keys)) : NULL;
    for (int i = 0; i < n; i++)
        read_key(r, i, &op->api_keys[i]);
    op->n_api_keys = (size_t)n;
}

static void read_notes(const PGresult *r, struct hd_store_op *op)
{
    int n = PQntuples(r);
    op->notifications = n ? hd_calloc((size_t)n, sizeof(*op->notifications)) : NULL;
    for (int i = 0; i < n; i++)
        read_note(r, i, &op->notifications[i]);
    op->n_notifications = (size_t)n;
}

/* ---- helpers ------------------------------------------------------------- */

/* The op's time: op->now when the caller gave one, else the wall clock. */
static int64_t op_now(const struct hd_store_op *op)
{
    return op->now ? op->now : hd_wall_ms();
}

/* A page size: 0 means 50; at least 1, at most @max. */
static int64_t clamp_limit(int limit, int max)
{
    if (limit == 0)
        return 50;
    return limit < 1 ? 1 : limit > max ? max : limit;
}

/* The page size of a list: at most 500. */
static int64_t page_limit(int limit)
{
    return clamp_limit(limit, 500);
}

static bool new_id(struct hd_store_op *op, char *out)
{
    if (hd_uuid_v4(out) == 0)
        return true;
    hd_log(HD_LOG_ERROR, "store query failed", "op", hd_store_op_name(op->kind), "backend",
           "postgres", "error", "no randomness for an id", NULL);
    op->status = HD_STORE_ERROR;
    return false;
}

/* Runs a write whose zero affected rows means NOT_FOUND. */
static void write_one(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st,
                      const struct hd_pg_params *p)
{
    int64_t n = 0;
    if (hd__pg_cmd(c, op, st, p, &n) && n == 0)
        op->status = HD_STORE_NOT_FOUND;
}

/* "" is stored as NULL for these; the result says so too. */
static void null_if_empty(char **s)
{
    if (*s && !(*s)[0]) {
        free(*s);
        *s = NULL;
    }
}

/* ---- users --------------------------------------------------------------- */

/* Inserts op->user as @id in @org_id with @role at @now. */
static bool insert_user(struct hd_store_conn *c, struct hd_store_op *op, const char *id,
                        const char *org_id, enum hd_role role, int64_t now)
{
    const struct hd_user *u = &op->user;
    struct hd_pg_params p = {0};
    hd__pg_str(&p, id);
    hd__pg_str(&p, org_id);
    hd__pg_str(&p, u->email);
    hd__pg_opt(&p, u->username);
    hd__pg_opt(&p, u->display_name);
    hd__pg_str(&p, u->password_hash);
    hd__pg_str(&p, role == HD_ROLE_ADMIN ? "admin" : "member");
    hd__pg_bool(&p, u->disabled);
    hd__pg_i64(&p, now);
    return hd__pg_cmd(c, op, &USER_INSERT, &p, NULL);
}

static void user_created(struct hd_user *u, const char *id, const char *org_id, enum hd_role role,
                         int64_t now)
{
    /* memmove: a caller may pass u's own fields as @id / @org_id */
    memmove(u->id, id, strnlen(id, HD_ID_LEN) + 1);
    memmove(u->org_id, org_id, strnlen(org_id, HD_ID_LEN) + 1);
    u->role = role;
    u->created_at = u->updated_at = now;
    null_if_empty(&u->username);
    null_if_empty(&u->display_name);
}

static void create_org_and_user(struct hd_store_conn *c, struct hd_store_op *op)
{
    char org_id[HD_ID_LEN + 1], user_id[HD_ID_LEN + 1];
    if (!new_id(op, org_id) || !new_id(op, user_id))
        return;
    int64_t now = op_now(op);
    struct hd_pg_params p = {0};
    hd__pg_str(&p, org_id);
    hd__pg_str(&p, op->org_name ? op->org_name : "");
    hd__pg_i64(&p, now);
    op->user.disabled = false; /* a new organization's first admin */
    if (!hd__pg_begin(c, op) || !hd__pg_cmd(c, op, &ORG_INSERT, &p, NULL) ||
        !insert_user(c, op, user_id, org_id, HD_ROLE_ADMIN, now) || !hd__pg_commit(c, op))
        return;
    user_created(&op->user, user_id, org_id, HD_ROLE_ADMIN, now);
}

static void create_user(struct hd_store_conn *c, struct hd_store_op *op)
{
    char id[HD_ID_LEN + 1];
    if (!new_id(op, id))
        return;
    int64_t now = op_now(op);
    if (insert_user(c, op, id, op->user.org_id, op->user.role, now))
        user_created(&op->user, id, op->user.org_id, op->user.role, now);
}

/* Runs @st (one row of USER_COLS or none) into op->user. */
static void user_row(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st,
                     const struct hd_pg_params *p)
{
    PGresult *r = hd__pg_run(c, op, st, p);
    if (!r)
        return;
    if (PQntuples(r) == 0)
        op->status = HD_STORE_NOT_FOUND;
    else
        read_user(r, 0, &op->user);
    PQclear(r);
}

static void find_user_by_email(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->email);
    user_row(c, op, &USER_BY_EMAIL, &p);
}

static void find_user_by_id(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->id);
    user_row(c, op, &USER_BY_ID, &p);
}

static void update_profile(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->id);
    hd__pg_str(&p, op->user.username);
    hd__pg_str(&p, op->user.display_name);
    hd__pg_i64(&p, op_now(op));
    user_row(c, op, &USER_PROFILE, &p);
}

static void set_password_hash(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->id);
    hd__pg_str(&p, op->user.password_hash);
    hd__pg_i64(&p, op_now(op));
    write_one(c, op, &USER_PASSWORD, &p);
}

static void set_user_disabled(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->id);
    hd__pg_bool(&p, op->flag);
    hd__pg_i64(&p, op_now(op));
    write_one(c, op, &USER_DISABLED, &p);
}

/* ---- sessions and refresh tokens ----------------------------------------- */

static bool insert_refresh(struct hd_store_conn *c, struct hd_store_op *op, const char *hash,
                           const char *session_id, int64_t now)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, hash);
    hd__pg_str(&p, session_id);
    hd__pg_i64(&p, now);
    return hd__pg_cmd(c, op, &REFRESH_INSERT, &p, NULL);
}

static void session_create(struct hd_store_conn *c, struct hd_store_op *op)
{
    char id[HD_ID_LEN + 1];
    if (!new_id(op, id))
        return;
    struct hd_session *s = &op->session;
    int64_t now = op_now(op);
    struct hd_pg_params p = {0};
    hd__pg_str(&p, id);
    hd__pg_str(&p, s->user_id);
    hd__pg_str(&p, s->org_id);
    hd__pg_str(&p, s->user_agent);
    hd__pg_str(&p, s->ip);
    hd__pg_i64(&p, now);
    hd__pg_i64(&p, s->expires_at);
    if (!hd__pg_begin(c, op) || !hd__pg_cmd(c, op, &SESSION_INSERT, &p, NULL) ||
        !insert_refresh(c, op, op->token_hash, id, now) || !hd__pg_commit(c, op))
        return;
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->created_at = s->last_seen_at = now;
    s->revoked_at = 0;
}

static void session_touch(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->id);
    hd__pg_i64(&p, op_now(op));
    write_one(c, op, &SESSION_TOUCH, &p);
}

/* Locks op->token_hash if it is the current token of live session op->id. */
static bool lock_current(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->token_hash);
    hd__pg_str(&p, op->id);
    PGresult *r = hd__pg_run(c, op, &REFRESH_LOCK, &p);
    if (!r)
        return false;
    bool found = PQntuples(r) > 0;
    PQclear(r);
    if (!found) {
        hd__pg_rollback(c);
        op->status = HD_STORE_NOT_FOUND;
    }
    return found;
}

static void session_rotate(struct hd_store_conn *c, struct hd_store_op *op)
{
    int64_t now = op_now(op);
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->token_hash);
    hd__pg_i64(&p, now);
    hd__pg_str(&p, op->new_token_hash);
    if (!hd__pg_begin(c, op) || !lock_current(c, op) ||
        !insert_refresh(c, op, op->new_token_hash, op->id, now) ||
        !hd__pg_cmd(c, op, &REFRESH_ROTATED, &p, NULL))
        return;
    hd__pg_commit(c, op);
}

static void refresh_find(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->token_hash);
    PGresult *r = hd__pg_run(c, op, &REFRESH_FIND, &p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        op->status = HD_STORE_NOT_FOUND;
    } else {
        struct hd_refresh_token *t = &op->refresh;
        GET_FIXED(t->token_hash, r, 0, 0);
        GET_FIXED(t->session_id, r, 0, 1);
        t->created_at = get_i64(r, 0, 2);
        t->rotated_at = get_i64(r, 0, 3);
        GET_FIXED(t->successor_hash, r, 0, 4);
        read_session(r, 0, 5, &op->session);
    }
    PQclear(r);
}

static void session_revoke(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->id);
    hd__pg_i64(&p, op_now(op));
    write_one(c, op, &SESSION_REVOKE, &p);
}

/* Runs @st (rows of SESSION_COLS) into op->sessions. */
static void session_rows(struct hd_store_conn *c, struct hd_store_op *op,
                         const struct hd_pg_stmt *st, const struct hd_pg_params *p)
{
    PGresult *r = hd__pg_run(c, op, st, p);
    if (!r)
        return;
    read_sessions(r, op);
    PQclear(r);
}

static void sessions_revoke_user(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->user_id);
    hd__pg_str(&p, op->except_id);
    hd__pg_i64(&p, op_now(op));
    session_rows(c, op, &SESSIONS_REVOKE_USER, &p);
}

static void sessions_list(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->user_id);
    hd__pg_i64(&p, op_now(op));
    session_rows(c, op, &SESSIONS_LIST, &p);
}

static void sessions_load_live(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_i64(&p, op_now(op));
    session_rows(c, op, &SESSIONS_LIVE, &p);
}

/* ---- API keys ------------------------------------------------------------ */

static void api_key_create(struct hd_store_conn *c, struct hd_store_op *op)
{
    char id[HD_ID_LEN + 1];
    if (!new_id(op, id))
        return;
    struct hd_api_key *k = &op->api_key;
    int64_t now = op_now(op);
    struct hd_pg_params p = {0};
    hd__pg_str(&p, id);
    hd__pg_str(&p, k->org_id);
    hd__pg_str(&p, k->name);
    hd__pg_str(&p, k->key_hash);
    hd__pg_str(&p, k->prefix);
    hd__pg_str(&p, k->scopes);
    hd__pg_i64(&p, now);
    if (!hd__pg_cmd(c, op, &KEY_INSERT, &p, NULL))
        return;
    snprintf(k->id, sizeof(k->id), "%s", id);
    k->created_at = now;
    k->revoked_at = 0;
}

static void api_key_revoke(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->id);
    hd__pg_str(&p, op->org_id);
    hd__pg_i64(&p, op_now(op));
    write_one(c, op, &KEY_REVOKE, &p);
}

static void api_key_find(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->token_hash[0] ? op->token_hash : op->api_key.key_hash);
    PGresult *r = hd__pg_run(c, op, &KEY_FIND, &p);
    if (!r)
        return;
    if (PQntuples(r) == 0)
        op->status = HD_STORE_NOT_FOUND;
    else
        read_key(r, 0, &op->api_key);
    PQclear(r);
}

static void api_keys_list(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->org_id);
    PGresult *r = hd__pg_run(c, op, &KEYS_LIST, &p);
    if (!r)
        return;
    read_keys(r, op);
    PQclear(r);
}

/* ---- notifications ------------------------------------------------------- */

static void notification_insert(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_notification *n = &op->notification;
    int64_t now = op_now(op);
    struct hd_pg_params p = {0};
    hd__pg_str(&p, n->org_id);
    hd__pg_str(&p, n->user_id);
    hd__pg_str(&p, n->type);
    hd__pg_str(&p, n->title);
    hd__pg_str(&p, n->body);
    hd__pg_str(&p, n->data);
    hd__pg_i64(&p, now);
    PGresult *r = hd__pg_run(c, op, &NOTE_INSERT, &p);
    if (!r)
        return;
    if (PQntuples(r) == 0) {
        op->status = HD_STORE_NOT_FOUND; /* the user is not in that organization */
    } else {
        n->id = get_i64(r, 0, 0);
        n->created_at = now;
        n->read = false;
    }
    PQclear(r);
}

/* Runs @st (rows of NOTE_COLS) into op->notifications. */
static void note_rows(struct hd_store_conn *c, struct hd_store_op *op, const struct hd_pg_stmt *st,
                      const struct hd_pg_params *p)
{
    PGresult *r = hd__pg_run(c, op, st, p);
    if (!r)
        return;
    read_notes(r, op);
    PQclear(r);
}

static void notifications_list(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->user_id);
    hd__pg_str(&p, op->org_id);
    hd__pg_i64(&p, op->before_id > 0 ? op->before_id : INT64_MAX);
    hd__pg_bool(&p, op->unread_only);
    hd__pg_i64(&p, page_limit(op->limit));
    note_rows(c, op, &NOTES_LIST, &p);
}

/* Rows of EVENTS_AFTER: events, each with the smallest stored id, or one
 * row of NULLs with only that. */
static void read_events(const PGresult *r, struct hd_store_op *op)
{
    int rows = PQntuples(r);
    op->count = rows > 0 ? get_i64(r, 0, EVENTS_MIN_COL) : 0;
    op->newest_id = rows > 0 ? get_i64(r, 0, EVENTS_MIN_COL + 1) : 0;
    op->notifications = rows ? hd_calloc((size_t)rows, sizeof(*op->notifications)) : NULL;
    size_t n = 0;
    for (int i = 0; i < rows; i++) {
        if (!PQgetisnull(r, i, 0))
            read_note(r, i, &op->notifications[n++]);
    }
    if (n == 0) {
        free(op->notifications); /* the row of NULLs only */
        op->notifications = NULL;
    }
    op->n_notifications = n;
}

static void events_after(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->user_id);
    hd__pg_str(&p, op->org_id);
    hd__pg_i64(&p, op->after_id > 0 ? op->after_id : 0);
    hd__pg_i64(&p, clamp_limit(op->limit, HD_EVENTS_AFTER_MAX));
    PGresult *r = hd__pg_run(c, op, &EVENTS_AFTER, &p);
    if (!r)
        return;
    read_events(r, op);
    PQclear(r);
}

/* The notification mark_read names: notification.id, else op->id as a
 * decimal number; 0 when neither holds one. */
static int64_t notification_id_of(const struct hd_store_op *op)
{
    if (op->notification.id > 0)
        return op->notification.id;
    char *end;
    long long v = strtoll(op->id, &end, 10);
    return end != op->id && !*end && v > 0 ? (int64_t)v : 0;
}

static void notification_mark_read(struct hd_store_conn *c, struct hd_store_op *op)
{
    int64_t id = notification_id_of(op);
    if (id == 0) {
        op->status = HD_STORE_NOT_FOUND;
        return;
    }
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->user_id);
    hd__pg_str(&p, op->org_id);
    hd__pg_i64(&p, id);
    hd__pg_i64(&p, op_now(op));
    PGresult *r = hd__pg_run(c, op, &NOTE_MARK_READ, &p);
    if (!r)
        return;
    if (get_i64(r, 0, 0) == 0)
        op->status = HD_STORE_NOT_FOUND; /* already read is fine: visible is what counts */
    PQclear(r);
}

static void notifications_mark_all_read(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_str(&p, op->user_id);
    hd__pg_str(&p, op->org_id);
    hd__pg_i64(&p, op_now(op));
    hd__pg_cmd(c, op, &NOTES_MARK_ALL, &p, &op->count);
}

static void notifications_purge(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    hd__pg_i64(&p, op->before);
    hd__pg_cmd(c, op, &NOTES_PURGE, &p, &op->count);
}

static void ping(struct hd_store_conn *c, struct hd_store_op *op)
{
    struct hd_pg_params p = {0};
    PQclear(hd__pg_run(c, op, &PING, &p));
}

/* ---- dispatch ------------------------------------------------------------ */

typedef void (*op_fn)(struct hd_store_conn *c, struct hd_store_op *op);

static const op_fn ops[HD_OP__COUNT] = {
    [HD_OP_CREATE_ORG_AND_USER] = create_org_and_user,
    [HD_OP_CREATE_USER] = create_user,
    [HD_OP_FIND_USER_BY_EMAIL] = find_user_by_email,
    [HD_OP_FIND_USER_BY_ID] = find_user_by_id,
    [HD_OP_UPDATE_PROFILE] = update_profile,
    [HD_OP_SET_PASSWORD_HASH] = set_password_hash,
    [HD_OP_SET_USER_DISABLED] = set_user_disabled,
    [HD_OP_SESSION_CREATE] = session_create,
    [HD_OP_SESSION_TOUCH] = session_touch,
    [HD_OP_SESSION_ROTATE] = session_rotate,
    [HD_OP_REFRESH_FIND] = refresh_find,
    [HD_OP_SESSION_REVOKE] = session_revoke,
    [HD_OP_SESSIONS_REVOKE_USER] = sessions_revoke_user,
    [HD_OP_SESSIONS_LIST] = sessions_list,
    [HD_OP_SESSIONS_LOAD_LIVE] = sessions_load_live,
    [HD_OP_API_KEY_CREATE] = api_key_create,
    [HD_OP_API_KEY_REVOKE] = api_key_revoke,
    [HD_OP_API_KEY_FIND] = api_key_find,
    [HD_OP_API_KEYS_LIST] = api_keys_list,
    [HD_OP_NOTIFICATION_INSERT] = notification_insert,
    [HD_OP_NOTIFICATIONS_LIST] = notifications_list,
    [HD_OP_NOTIFICATION_MARK_READ] = notification_mark_read,
    [HD_OP_NOTIFICATIONS_MARK_ALL_READ] = notifications_mark_all_read,
    [HD_OP_EVENTS_AFTER] = events_after,
    [HD_OP_NOTIFICATIONS_PURGE] = notifications_purge,
    [HD_OP_PING] = ping,
};

void hd__pg_exec_op(struct hd_store_conn *c, struct hd_store_op *op)
{
    if ((unsigned)op->kind >= HD_OP__COUNT || !ops[op->kind]) {
        hd_log(HD_LOG_ERROR, "store query failed", "op", hd_store_op_name(op->kind), "backend",
               "postgres", "error", "unknown op", NULL);
        op->status = HD_STORE_ERROR;
        return;
    }
    ops[op->kind](c, op);
}
