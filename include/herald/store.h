/* The store: herald's persistent state behind one interface, on Postgres
 * (libpq) or embedded SQLite. Operations are named for what they do.
 *
 * Flow: a caller (I/O thread or actor) fills a struct hd_store_op, sets
 * `done`, and submits it to the store actor (hd_store_submit). A DB worker
 * thread runs it on its own connection, fills status and results, and calls
 * `done` on the worker thread; `done` must not block: it posts the op (or
 * what it needs from it) to the caller's inbox, e.g. with hd_reply_post.
 * Whoever ends up holding the op frees it with hd_store_op_free.
 *
 * Times are unix milliseconds. Public ids (users, organizations, sessions,
 * API keys) are random UUIDv4 strings made by the store. */
#ifndef HERALD_STORE_H
#define HERALD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/inbox.h"

#define HD_ID_LEN 36 /* UUID text, without the NUL */

enum hd_store_status {
    HD_STORE_OK = 0,
    HD_STORE_NOT_FOUND,   /* no such row (or not in the caller's organization) */
    HD_STORE_CONFLICT,    /* unique key: conflict_field says which ("email", "username") */
    HD_STORE_UNAVAILABLE, /* no connection to the database: 503 store_unavailable */
    HD_STORE_TIMEOUT,     /* store.query_timeout_ms passed: 503 */
    HD_STORE_ERROR,       /* anything else (logged by the worker): 500 */
};

enum hd_role { HD_ROLE_MEMBER = 0, HD_ROLE_ADMIN = 1 };

struct hd_user {
    char id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1];
    char *email;        /* as registered; unique ignoring case */
    char *username;     /* NULL when unset; unique ignoring case */
    char *display_name; /* NULL when unset */
    char *password_hash;
    enum hd_role role;
    bool disabled;
    int64_t created_at;
    int64_t updated_at;
};

struct hd_session {
    char id[HD_ID_LEN + 1];
    char user_id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1];
    char *user_agent; /* may be NULL */
    char *ip;         /* may be NULL */
    int64_t created_at;
    int64_t last_seen_at;
    int64_t expires_at; /* absolute end of life */
    int64_t revoked_at; /* 0 while live */
};

struct hd_refresh_token {
    char token_hash[65]; /* hex SHA-256 of the opaque token */
    char session_id[HD_ID_LEN + 1];
    int64_t created_at;
    int64_t rotated_at;      /* 0 while current */
    char successor_hash[65]; /* "" while current */
};

struct hd_api_key {
    char id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1];
    char *name;
    char *key_hash; /* hex SHA-256 of the secret; the secret is never stored */
    char *prefix;   /* first characters of the key, for display */
    char *scopes;   /* space-separated, e.g. "publish" */
    int64_t created_at;
    int64_t revoked_at; /* 0 while active */
};

struct hd_notification {
    int64_t id; /* monotonic per store: the SSE event id */
    char org_id[HD_ID_LEN + 1];
    char user_id[HD_ID_LEN + 1]; /* "" for organization-wide */
    char *type;
    char *title;
    char *body;
    char *data; /* JSON object text, or NULL */
    int64_t created_at;
    bool read; /* for the user the list was made for */
};

/* The largest page HD_OP_EVENTS_AFTER answers: sse.replay_max (at most
 * 100000) plus one, so a resume can tell "more were missed than it may
 * replay". Every other list op stays capped at 500. */
#define HD_EVENTS_AFTER_MAX 100001

enum hd_store_op_kind {
    /* users and organizations */
    HD_OP_CREATE_ORG_AND_USER, /* in: org_name, user (email, username?, display_name?,
                                  password_hash); new org, user is its admin
                                  out: user (ids filled); CONFLICT email|username */
    HD_OP_CREATE_USER,         /* in: user (org_id, email, …, role) out: user; CONFLICT;
                                  NOT_FOUND for an unknown org */
    HD_OP_FIND_USER_BY_EMAIL,  /* in: email (any case) out: user; NOT_FOUND */
    HD_OP_FIND_USER_BY_ID,     /* in: id out: user; NOT_FOUND */
    HD_OP_UPDATE_PROFILE,      /* in: id, user.username / user.display_name (NULL = keep,
                                  "" = clear) out: user; CONFLICT username; NOT_FOUND */
    HD_OP_SET_PASSWORD_HASH,   /* in: id, user.password_hash; NOT_FOUND */
    HD_OP_SET_USER_DISABLED,   /* in: id, flag (true = disable); NOT_FOUND */
    /* sessions and refresh tokens */
    HD_OP_SESSION_CREATE,       /* in: session (user_id, org_id, user_agent, ip, expires_at),
                                   token_hash (first refresh token) out: session (id) */
    HD_OP_SESSION_TOUCH,        /* in: id, now: last_seen_at = now; NOT_FOUND if revoked */
    HD_OP_SESSION_ROTATE,       /* in: id, token_hash (current), new_token_hash, now: the current
                                   token becomes rotated with the new one as successor, in one
                                   transaction; NOT_FOUND if the current one is not current */
    HD_OP_REFRESH_FIND,         /* in: token_hash out: refresh, session; NOT_FOUND */
    HD_OP_SESSION_REVOKE,       /* in: id, now; NOT_FOUND if already revoked */
    HD_OP_SESSIONS_REVOKE_USER, /* in: user_id, except_id ("" = none), now
                                   out: sessions (the ones revoked) */
    HD_OP_SESSIONS_LIST,        /* in: user_id, now out: sessions (live, newest first) */
    HD_OP_SESSIONS_LOAD_LIVE,   /* in: now out: sessions (every live session) */
    /* API keys */
    HD_OP_API_KEY_CREATE, /* in: api_key (org_id, name, key_hash, prefix, scopes)
                             out: api_key (id) */
    HD_OP_API_KEY_REVOKE, /* in: id, org_id, now; NOT_FOUND (also other org) */
    HD_OP_API_KEY_FIND,   /* in: token_hash = the key's hash (or api_key.key_hash)
                             out: api_key (active only); NOT_FOUND */
    HD_OP_API_KEYS_LIST,  /* in: org_id out: api_keys (active, newest first) */
    /* notifications */
    HD_OP_NOTIFICATION_INSERT,         /* in: notification (org_id, user_id|"", type, title, body,
                                          data) out: notification (id, created_at) */
    HD_OP_NOTIFICATIONS_LIST,          /* in: user_id, org_id, before_id (0 = newest), limit,
                                          unread_only out: notifications (newest first, own +
                                          organization-wide, read flag for user_id) */
    HD_OP_NOTIFICATION_MARK_READ,      /* in: notification.id, user_id, org_id, now; NOT_FOUND
                                          if not visible; marking twice is OK */
    HD_OP_NOTIFICATIONS_MARK_ALL_READ, /* in: user_id, org_id, now out: count */
    HD_OP_EVENTS_AFTER,                /* in: user_id, org_id, after_id, limit (0 = 50; at most
                                          HD_EVENTS_AFTER_MAX) out: notifications (id
                                          ascending, own + organization-wide), count = the
                                          smallest notification id still stored, any user's
                                          (0: none), newest_id = the largest (0: none), read
                                          in the same snapshot */
    HD_OP_NOTIFICATIONS_PURGE,         /* in: before (created_at cut-off) out: count */
    HD_OP_PING,                        /* checks the connection */
    HD_OP__COUNT
};

struct hd_store_op;
/** Runs on the DB worker thread once the op has a status; must not block. */
typedef void (*hd_store_done_fn)(struct hd_store_op *op);

struct hd_store_op {
    struct hd_msg _msg; /* used while queued; then free for the caller's own posting */
    enum hd_store_op_kind kind;
    hd_store_done_fn done;
    void *ctx; /* the caller's; the store never touches it */

    /* ---- inputs (owned by the op; freed by hd_store_op_free) ---- */
    char id[HD_ID_LEN + 1];
    char user_id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1];
    char except_id[HD_ID_LEN + 1];
    char token_hash[65];
    char new_token_hash[65];
    char *email;
    char *org_name;
    bool flag;
    bool unread_only;
    int64_t now;
    int64_t before_id;
    int64_t after_id;
    int64_t before;
    int limit;

    /* ---- inputs and/or outputs, per kind (see enum) ---- */
    struct hd_user user;
    struct hd_session session;
    struct hd_refresh_token refresh;
    struct hd_api_key api_key;
    struct hd_notification notification;

    /* ---- outputs ---- */
    enum hd_store_status status;
    const char *conflict_field; /* static string, with HD_STORE_CONFLICT */
    int64_t count;
    int64_t newest_id; /* EVENTS_AFTER */
    struct hd_session *sessions;
    size_t n_sessions;
    struct hd_api_key *api_keys;
    size_t n_api_keys;
    struct hd_notification *notifications;
    size_t n_notifications;
    uint64_t elapsed_us; /* time the worker spent on it */
};

/** A zeroed op of @kind. */
struct hd_store_op *hd_store_op_new(enum hd_store_op_kind kind);

/** Frees @op with every string and array it holds (inputs and results). */
void hd_store_op_free(struct hd_store_op *op);

/** Frees the strings inside one struct (not the struct itself). */
void hd_user_clear(struct hd_user *u);
void hd_session_clear(struct hd_session *s);
void hd_api_key_clear(struct hd_api_key *k);
void hd_notification_clear(struct hd_notification *n);

/** The operation's name, for logs and metrics ("create_org_and_user"). */
const char *hd_store_op_name(enum hd_store_op_kind kind);

/** The status's name ("ok", "conflict", "unavailable"…). */
const char *hd_store_status_name(enum hd_store_status status);

/** Fills @out (HD_ID_LEN + 1 bytes) with a random UUIDv4. Returns 0 or -errno. */
int hd_uuid_v4(char *out);

/* ---- schema (src/store/schema.c) ---------------------------------------- */

struct hd_config;

enum hd_schema_mode {
    HD_SCHEMA_CHECK,  /* fail when a migration is pending */
    HD_SCHEMA_APPLY,  /* apply what is pending */
    HD_SCHEMA_STATUS, /* print applied and pending migrations to stdout */
};

enum hd_schema_result {
    HD_SCHEMA_OK = 0,
    HD_SCHEMA_UNREACHABLE = 1, /* no connection within @wait_ms, or a migration failed */
    HD_SCHEMA_OUTDATED = 2,    /* CHECK found pending migrations */
};

/**
 * Opens one connection to the configured store (retrying for up to
 * @wait_ms), then checks, applies or prints the schema as @mode says, logs
 * the outcome (naming `herald migrate` when outdated) and closes it. Main
 * thread, before the store actor starts.
 */
enum hd_schema_result hd_store_schema(const struct hd_config *cfg, enum hd_schema_mode mode,
                                      int wait_ms);

/* ---- the store actor (src/store/store.c) ------------------------------- */

struct hd_store;

/**
 * Starts store.pool_size DB workers, each with its own connection to
 * store.database_url (or SQLite at store.sqlite_path when empty). Workers
 * that cannot connect keep retrying with back-off; meanwhile ops answer
 * HD_STORE_UNAVAILABLE and /readyz reports "store" down. Returns NULL
 * (after logging why) only for a configuration that can never work.
 * Main thread; @cfg is borrowed and must outlive the store.
 */
struct hd_store *hd_store_start(const struct hd_config *cfg);

/** Submits @op (ownership passes to the store until `done` runs). Any
 * thread; never blocks. */
void hd_store_submit(struct hd_store *st, struct hd_store_op *op);

/** Stops the workers after the ops already submitted; closes every
 * connection cleanly. NULL is fine. Main thread, after the I/O threads. */
void hd_store_stop(struct hd_store *st);

#endif
