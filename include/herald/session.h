/* The session actor: the only writer of session state. Sessions are
 * persisted through the store and mirrored in an RCU hash map that any I/O
 * thread reads (hd_session_lookup) to answer "is this sid alive?" without a
 * message round trip; the actor publishes and unpublishes entries.
 *
 * Requests (create, rotate a refresh token, revoke…) are posted as
 * struct hd_session_req; the actor answers by calling `done` on its own
 * thread, which must only post (e.g. hd_reply_post). */
#ifndef HERALD_SESSION_H
#define HERALD_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/inbox.h"
#include "herald/ratelimit.h"
#include "herald/store.h"

#define HD_REFRESH_TOKEN_LEN 43 /* 256 random bits, base64url without padding */

struct hd_sessions;
struct hd_config;

/** What a lookup returns: a copy, valid after the RCU read section. */
struct hd_session_info {
    char id[HD_ID_LEN + 1];
    char user_id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1];
    enum hd_role role; /* at creation (HD_ROLE_MEMBER for sessions loaded at start):
                          refresh re-reads the user for the current role */
    int64_t created_at;
    int64_t expires_at; /* absolute end */
};

enum hd_session_req_kind {
    HD_SESSION_CREATE,      /* in: user (id, org_id, role), user_agent?, ip?
                               out: session (id…), refresh_token; status LIMIT with reject */
    HD_SESSION_ROTATE,      /* in: refresh_token out: session, refresh_token (the successor);
                               a reuse inside the grace window returns the same successor;
                               after it: status REUSED and the session is revoked */
    HD_SESSION_REVOKE,      /* in: session_id (+ user_id: must own it) */
    HD_SESSION_REVOKE_USER, /* in: user_id, except_id ("" = none) out: count */
    HD_SESSION_LIST,        /* in: user_id out: sessions (live, newest first) */
    HD_SESSION_PROFILE,     /* in: user_id, user_json, user.updated_at (its version):
                               republish the user's profile (after a
                               change, or on first read after a restart) if it has a session */
};

enum hd_session_status {
    HD_SESSION_OK = 0,
    HD_SESSION_INVALID,      /* unknown, expired or revoked session / token */
    HD_SESSION_REUSED,       /* refresh token replayed after the grace window: revoked */
    HD_SESSION_LIMIT,        /* session.max_per_user reached and over_limit = reject */
    HD_SESSION_UNAVAILABLE,  /* the store is down or timed out: 503 */
    HD_SESSION_RATE_LIMITED, /* ROTATE: the session's refresh budget is spent: 429 */
    HD_SESSION_ERROR,        /* anything else: 500 */
};

struct hd_session_req;
typedef void (*hd_session_done_fn)(struct hd_session_req *req);

struct hd_session_req {
    struct hd_msg _msg;
    struct hd_session_req *_next; /* the actor's own queue (requests before the load) */
    enum hd_session_req_kind kind;
    hd_session_done_fn done; /* on the session actor's thread; must not block */
    void *ctx;
    /* in */
    struct hd_user user; /* CREATE: id, org_id, role (strings not needed) */
    char *user_json;     /* owned: CREATE/PROFILE, the user's public JSON for /api/me */
    int64_t basis_us;    /* CREATE: wall-clock µs before the user record it rests on was
                            read (0: none). If
                            the user's sessions were ended (disable, password change,
                            global logout) after that, the new session is refused too:
                            status INVALID */
    char *user_agent;    /* owned, may be NULL */
    char *ip;            /* owned, may be NULL */
    char session_id[HD_ID_LEN + 1];
    char user_id[HD_ID_LEN + 1];
    char except_id[HD_ID_LEN + 1];
    /* in (ROTATE) / out (CREATE, ROTATE) */
    char refresh_token[HD_REFRESH_TOKEN_LEN + 1];
    /* out */
    enum hd_session_status status;
    struct hd_session_info session;
    struct hd_session *sessions; /* LIST: owned array */
    size_t n_sessions;
    int64_t count;
    bool limit_checked;      /* ROTATE: the per-session limit was consulted */
    struct hd_rl_item limit; /* ... its policy, rule and verdict */
};

/** A zeroed request of @kind. */
struct hd_session_req *hd_session_req_new(enum hd_session_req_kind kind);
/** Frees a request and what it owns (wipes the refresh token). */
void hd_session_req_free(struct hd_session_req *req);

/**
 * Starts the session actor on @store (borrowed) and loads every live
 * session from it; until loaded, /readyz reports "sessions" not ready.
 * Main thread. Returns NULL on failure.
 */
struct hd_sessions *hd_sessions_start(const struct hd_config *cfg, struct hd_store *store);

/**
 * Shutdown, step 1 (after the I/O threads stopped): the actor submits no
 * new store op and this returns once every op it submitted came back.
 * Then stop the store (its workers may still be waking this actor's inbox
 * until they are joined), then call hd_sessions_stop. NULL is fine.
 */
void hd_sessions_quiesce(struct hd_sessions *s);

/**
 * Limits refresh-token rotations per session: before rotating a valid token
 * the actor charges one unit to key = the session id under @rule (policy
 * name @policy) on @rl, and answers HD_SESSION_RATE_LIMITED with the
 * verdict in req->limit when it is denied (nothing rotates, so the client
 * may retry the same token later). A forged or stale token never reaches
 * the check, so nobody can spend another session's budget. Main thread,
 * before requests flow; @rl must outlive the actor (stop it after
 * hd_sessions_stop). Without this call rotations are not limited.
 */
void hd_sessions_limit_refresh(struct hd_sessions *s, struct hd_ratelimit *rl, const char *policy,
                               const struct hd_gcra_rule *rule);

/** Shutdown, step 3: stops the actor and frees the map. NULL is fine. */
void hd_sessions_stop(struct hd_sessions *s);

/** Posts @req to the actor (takes ownership until done). Any thread. */
void hd_session_submit(struct hd_sessions *s, struct hd_session_req *req);

/**
 * True when session @sid (NUL-terminated) is alive at @now_ms: published,
 * not revoked, not past its absolute lifetime or idle timeout. Fills @out
 * when given. Records activity: at most once a minute per session the
 * actor is asked to write last-seen. Any RCU-registered thread; no lock,
 * no allocation, no message unless a minute passed.
 */
bool hd_session_lookup(struct hd_sessions *s, const char *sid, int64_t now_ms,
                       struct hd_session_info *out);

/** Like hd_session_lookup without recording activity (a held SSE stream
 * does not keep its session from idling out). Any RCU-registered thread. */
bool hd_session_alive(struct hd_sessions *s, const char *sid, int64_t now_ms);

/** Called on the session actor's thread when a live session ends: revoked
 * (logout, device removal, disable, password change, refresh reuse),
 * evicted, or found expired by the sweep (every 15 s: an expired session is
 * refused at once by lookups anyway). Must only post. */
typedef void (*hd_session_ended_fn)(void *ctx, const char *session_id, const char *user_id);

/** Sets the listener of ended sessions (the broadcaster). Main thread,
 * before requests flow; @ctx must outlive the actor. */
void hd_sessions_on_ended(struct hd_sessions *s, hd_session_ended_fn fn, void *ctx);

/**
 * Copies the published profile JSON of @user_id into @buf (capacity @cap,
 * NUL-terminated) and returns its length; 0 when none is published (or it
 * does not fit). Any RCU-registered thread; no lock, no message.
 */
size_t hd_session_profile(struct hd_sessions *s, const char *user_id, char *buf, size_t cap);

/** Waits up to @timeout_ms for the live sessions to be loaded; true when
 * they are. Main thread, at start (before serving traffic). */
bool hd_sessions_wait_loaded(struct hd_sessions *s, int timeout_ms);

/** Number of sessions published now (for metrics and tests). Any thread. */
long hd_sessions_count(struct hd_sessions *s);

/** Hashes a refresh token (or API key) to lowercase hex SHA-256 (65 bytes
 * with the NUL). Any thread. */
void hd_token_hash_hex(const char *token, size_t len, char out[65]);

#endif
