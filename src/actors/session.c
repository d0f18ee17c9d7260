/* The session actor. It owns the live-session map (published through RCU),
 * the per-user index, and the refresh-rotation memory (grace window); every
 * change goes through the store first where it must be durable.
 *
 * Messages in its inbox: session requests (type REQ), store ops coming back
 * (type STORE_DONE, with a `struct step` in op->ctx saying what to do next),
 * and touches from I/O threads (type TOUCH). */
#include "herald/session.h"

#include "actors/session_map.h"

#include "herald/actor.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/health.h"
#include "herald/log.h"

#include <event2/event.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOUCH_EVERY_MS (60 * 1000) /* last-seen written at most once a minute */
#define SEEN_EVERY_MS  1000        /* readers move last_seen at most once a second */
#define SWEEP_EVERY_MS (15 * 1000)
#define MAX_LIST       1000

enum msg_type { MSG_REQ = 1, MSG_STORE_DONE, MSG_TOUCH, MSG_QUIESCE, MSG_LIMIT_DONE };

struct quiesce_msg {
    struct hd_msg msg;
    sem_t *done;
};

/* What to do when a store op comes back. */
enum step_kind {
    STEP_LOAD,
    STEP_CREATE,
    STEP_REVOKE,
    STEP_REVOKE_USER,
    STEP_LIST,
    STEP_REFRESH_FIND,
    STEP_ROTATE,
    STEP_REUSE_REVOKE,
    STEP_FORGET, /* fire and forget (touch, eviction) */
};

struct step {
    enum step_kind kind;
    struct hd_session_req *req; /* answered when the step ends; NULL for internal */
    char hash[65];              /* ROTATE: the token being rotated */
};

/* A rotation in flight or done, by the hash of the token it replaced. Requests
 * for the same token wait on it and get the same successor. Actor only. */
struct rotation {
    char old_hash[65];
    char successor[HD_REFRESH_TOKEN_LEN + 1];
    char session_id[HD_ID_LEN + 1];
    int64_t done_at; /* 0 while in flight */
    enum hd_session_status status;
    struct hd_rl_item limit; /* status RATE_LIMITED: the verdict, for the waiters */
    struct hd_session_req **waiters;
    int n_waiters;
    struct rotation *next;
};

/* When a user's sessions were last ended, so that a session created from a
 * user record read before that moment is ended as well (a login that
 * overlaps a disable or a password change). Actor only; pruned by the sweep. */
struct ended {
    char user_id[HD_ID_LEN + 1];
    int64_t at; /* wall-clock µs */
    struct ended *next;
};

#define ENDED_KEEP_MS (10 * 60 * 1000) /* far longer than any login takes */

struct touch_msg {
    struct hd_msg msg;
    char sid[HD_ID_LEN + 1];
    int64_t at;
};

struct hd_sessions {
    const struct hd_config *cfg;
    struct hd_store *store;
    struct hd_actor *actor;
    struct sess_map *map;
    /* actor thread only: */
    struct rotation *rotations;
    struct ended *ended;
    struct event *sweep;
    bool loaded; /* atomic: live sessions loaded; requests wait until then */
    struct hd_session_req *waiting_head, *waiting_tail;
    int in_store;                    /* store ops (and rate-limit checks) submitted, not back yet */
    struct hd_ratelimit *refresh_rl; /* hd_sessions_limit_refresh; NULL: unlimited */
    hd_session_ended_fn on_ended;    /* hd_sessions_on_ended; NULL: none */
    void *on_ended_ctx;
    char refresh_policy[HD_RL_POLICY_MAX];
    struct hd_gcra_rule refresh_rule;
    bool stopping;   /* quiesced: no new store op */
    sem_t *quiesced; /* posted once stopping and in_store == 0 */
};

void hd_token_hash_hex(const char *token, size_t len, char out[65])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, len);
    sodium_bin2hex(out, 65, h, sizeof(h));
}

static void new_refresh_token(char out[HD_REFRESH_TOKEN_LEN + 1])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(out, HD_REFRESH_TOKEN_LEN + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
}

/* ---- requests ------------------------------------------------------------ */

struct hd_session_req *hd_session_req_new(enum hd_session_req_kind kind)
{
    struct hd_session_req *r = hd_calloc(1, sizeof(*r));
    r->kind = kind;
    return r;
}

void hd_session_req_free(struct hd_session_req *req)
{
    if (!req)
        return;
    free(req->user_agent);
    free(req->ip);
    free(req->user_json);
    hd_user_clear(&req->user);
    for (size_t i = 0; i < req->n_sessions; i++)
        hd_session_clear(&req->sessions[i]);
    free(req->sessions);
    sodium_memzero(req->refresh_token, sizeof(req->refresh_token));
    free(req);
}

static void answer(struct hd_session_req *req, enum hd_session_status status)
{
    req->status = status;
    req->done(req);
}

static enum hd_session_status from_store(enum hd_store_status st)
{
    switch (st) {
    case HD_STORE_OK:
        return HD_SESSION_OK;
    case HD_STORE_NOT_FOUND:
        return HD_SESSION_INVALID;
    case HD_STORE_UNAVAILABLE:
    case HD_STORE_TIMEOUT:
        return HD_SESSION_UNAVAILABLE;
    default:
        return HD_SESSION_ERROR;
    }
}

/* ---- store round trips ------------------------------------------------------ */

/* A step and the actor to post the finished op back to. */
struct step_box {
    struct step step;
    struct hd_actor *actor;
};

/* DB worker thread: hand the op back to the session actor. */
static void store_done(struct hd_store_op *op)
{
    struct step_box *box = op->ctx;
    op->_msg.type = MSG_STORE_DONE;
    hd_actor_post(box->actor, &op->_msg);
}

/* Sends @op to the store; its result comes back as step @kind for @req
 * (NULL: internal). @hash (or NULL) is the refresh token hash being rotated. */
static void on_store_done(struct hd_sessions *s, struct hd_store_op *op);

static void submit_step(struct hd_sessions *s, struct hd_store_op *op, enum step_kind kind,
                        struct hd_session_req *req, const char *hash)
{
    struct step_box *box = hd_calloc(1, sizeof(*box));
    box->step.kind = kind;
    box->step.req = req;
    if (hash)
        memcpy(box->step.hash, hash, sizeof(box->step.hash));
    box->actor = s->actor;
    op->ctx = box;
    op->done = store_done;
    if (s->stopping) { /* shutting down: the store may be gone */
        op->status = HD_STORE_UNAVAILABLE;
        s->in_store++;
        on_store_done(s, op);
        return;
    }
    s->in_store++;
    hd_store_submit(s->store, op);
}

static void submit(struct hd_sessions *s, struct hd_store_op *op, enum step_kind kind,
                   struct hd_session_req *req)
{
    submit_step(s, op, kind, req, NULL);
}

/* ---- the map ------------------------------------------------------------- */

static struct sess_node *node_from(const struct hd_session *row, enum hd_role role)
{
    struct sess_node *n = hd_calloc(1, sizeof(*n));
    memcpy(n->info.id, row->id, sizeof(n->info.id));
    memcpy(n->info.user_id, row->user_id, sizeof(n->info.user_id));
    memcpy(n->info.org_id, row->org_id, sizeof(n->info.org_id));
    n->info.role = role;
    n->info.created_at = row->created_at;
    n->info.expires_at = row->expires_at;
    n->last_seen_ms = row->last_seen_at;
    n->touch_posted_ms = row->last_seen_at;
    return n;
}

static bool node_alive(const struct hd_sessions *s, const struct sess_node *n, int64_t now)
{
    int64_t idle_ms = (int64_t)s->cfg->session.idle_timeout_s * 1000;
    return !__atomic_load_n(&n->revoked, __ATOMIC_ACQUIRE) && now < n->info.expires_at &&
           now < __atomic_load_n(&n->last_seen_ms, __ATOMIC_RELAXED) + idle_ms;
}

/* A live session ends (revoked, evicted, expired): tell the listener, then
 * unpublish it. */
static void end_node(struct hd_sessions *s, struct sess_node *n)
{
    if (s->on_ended)
        s->on_ended(s->on_ended_ctx, n->info.id, n->info.user_id);
    sess_map_unpublish(s->map, n);
}

static void unpublish_id(struct hd_sessions *s, const char *sid)
{
    rcu_read_lock();
    struct sess_node *n = sess_map_find(s->map, sid);
    rcu_read_unlock();
    if (n) /* only the actor unpublishes, so n stays valid here */
        end_node(s, n);
}

/* ---- ended users --------------------------------------------------------- */

static int64_t ended_at(struct hd_sessions *s, const char *user_id)
{
    for (struct ended *e = s->ended; e; e = e->next) {
        if (strcmp(e->user_id, user_id) == 0)
            return e->at;
    }
    return 0;
}

static void note_ended(struct hd_sessions *s, const char *user_id, int64_t at)
{
    for (struct ended *e = s->ended; e; e = e->next) {
        if (strcmp(e->user_id, user_id) == 0) {
            e->at = at;
            return;
        }
    }
    struct ended *e = hd_calloc(1, sizeof(*e));
    snprintf(e->user_id, sizeof(e->user_id), "%s", user_id);
    e->at = at;
    e->next = s->ended;
    s->ended = e;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* True when the user's sessions were ended after the user record behind
 * @req was read: the new session must not live either. */
static bool superseded(struct hd_sessions *s, const struct hd_session_req *req)
{
    return req->basis_us && req->basis_us < ended_at(s, req->user.id);
}

/* ---- create ------------------------------------------------------------- */

static void evict(struct hd_sessions *s, struct sess_node *n)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSION_REVOKE);
    memcpy(op->id, n->info.id, sizeof(op->id));
    op->now = hd_wall_ms();
    end_node(s, n);
    submit(s, op, STEP_FORGET, NULL);
}

static void handle_create(struct hd_sessions *s, struct hd_session_req *req)
{
    if (superseded(s, req)) {
        answer(req, HD_SESSION_INVALID);
        return;
    }
    int max = s->cfg->session.max_per_user;
    while (sess_user_count(s->map, req->user.id) >= max) {
        if (strcmp(s->cfg->session.over_limit, "reject") == 0) {
            answer(req, HD_SESSION_LIMIT);
            return;
        }
        evict(s, sess_user_oldest(s->map, req->user.id));
    }
    int64_t now = hd_wall_ms();
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSION_CREATE);
    memcpy(op->session.user_id, req->user.id, sizeof(op->session.user_id));
    memcpy(op->session.org_id, req->user.org_id, sizeof(op->session.org_id));
    op->session.user_agent = req->user_agent ? hd_strdup(req->user_agent) : NULL;
    op->session.ip = req->ip ? hd_strdup(req->ip) : NULL;
    op->session.expires_at = now + (int64_t)s->cfg->session.lifetime_s * 1000;
    op->now = now;
    new_refresh_token(req->refresh_token);
    hd_token_hash_hex(req->refresh_token, strlen(req->refresh_token), op->token_hash);
    submit(s, op, STEP_CREATE, req);
}

static void created(struct hd_sessions *s, struct hd_store_op *op, struct hd_session_req *req)
{
    if (op->status != HD_STORE_OK) {
        sodium_memzero(req->refresh_token, sizeof(req->refresh_token));
        answer(req, from_store(op->status));
        return;
    }
    if (superseded(s, req)) { /* the user's sessions ended while this one was written */
        struct hd_store_op *revoke = hd_store_op_new(HD_OP_SESSION_REVOKE);
        memcpy(revoke->id, op->session.id, sizeof(revoke->id));
        revoke->now = hd_wall_ms();
        submit(s, revoke, STEP_FORGET, NULL);
        sodium_memzero(req->refresh_token, sizeof(req->refresh_token));
        answer(req, HD_SESSION_INVALID);
        return;
    }
    struct sess_node *n = node_from(&op->session, req->user.role);
    req->session = n->info;
    sess_map_publish(s->map, n);
    if (req->user_json)
        prof_publish(s->map, req->user.id, req->user_json, req->user.updated_at);
    answer(req, HD_SESSION_OK);
}

/* ---- rotate ------------------------------------------------------------- */

static struct rotation *rotation_find(struct hd_sessions *s, const char *hash)
{
    for (struct rotation *r = s->rotations; r; r = r->next) {
        if (strcmp(r->old_hash, hash) == 0)
            return r;
    }
    return NULL;
}

/* Answers a request from a finished rotation (same successor for all). */
static void answer_from_rotation(struct hd_sessions *s, struct rotation *r,
                                 struct hd_session_req *req)
{
    if (r->status == HD_SESSION_RATE_LIMITED) {
        req->limit_checked = true;
        req->limit = r->limit;
    }
    if (r->status != HD_SESSION_OK) {
        answer(req, r->status);
        return;
    }
    struct hd_session_info info;
    if (!hd_session_lookup(s, r->session_id, hd_wall_ms(), &info)) {
        answer(req, HD_SESSION_INVALID); /* logged out since */
        return;
    }
    req->session = info;
    memcpy(req->refresh_token, r->successor, sizeof(req->refresh_token));
    answer(req, HD_SESSION_OK);
}

static void rotation_finish(struct hd_sessions *s, struct rotation *r,
                            enum hd_session_status status)
{
    r->status = status;
    r->done_at = hd_wall_ms();
    for (int i = 0; i < r->n_waiters; i++)
        answer_from_rotation(s, r, r->waiters[i]);
    free(r->waiters);
    r->waiters = NULL;
    r->n_waiters = 0;
}

/* A rotation that failed for a passing reason (store down, error) is not
 * remembered: the client's retry must go to the store again. */
static void forget_if_transient(struct hd_sessions *s, struct rotation *r)
{
    if (r->status != HD_SESSION_UNAVAILABLE && r->status != HD_SESSION_ERROR &&
        r->status != HD_SESSION_RATE_LIMITED)
        return;
    for (struct rotation **p = &s->rotations; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            sodium_memzero(r->successor, sizeof(r->successor));
            free(r);
            return;
        }
    }
}

static void handle_rotate(struct hd_sessions *s, struct hd_session_req *req)
{
    char hash[65];
    size_t len = strnlen(req->refresh_token, sizeof(req->refresh_token));
    hd_token_hash_hex(req->refresh_token, len, hash);
    struct rotation *r = rotation_find(s, hash);
    if (r) {
        int64_t grace_ms = (int64_t)s->cfg->session.refresh_reuse_grace_s * 1000;
        if (!r->done_at) { /* in flight: wait for it */
            r->waiters = hd_realloc(r->waiters, sizeof(*r->waiters) * (size_t)(r->n_waiters + 1));
            r->waiters[r->n_waiters++] = req;
            return;
        }
        if (hd_wall_ms() - r->done_at <= grace_ms || r->status != HD_SESSION_OK) {
            answer_from_rotation(s, r, req);
            return;
        }
        /* past the grace window: fall through to the store, which sees a
         * rotated token and treats it as reuse */
    }
    r = hd_calloc(1, sizeof(*r));
    memcpy(r->old_hash, hash, sizeof(r->old_hash));
    r->next = s->rotations;
    s->rotations = r;
    struct hd_store_op *op = hd_store_op_new(HD_OP_REFRESH_FIND);
    memcpy(op->token_hash, hash, sizeof(op->token_hash));
    submit_step(s, op, STEP_REFRESH_FIND, req, hash);
}

static void revoke_for_reuse(struct hd_sessions *s, const char *sid, struct hd_session_req *req)
{
    hd_log(HD_LOG_WARN, "refresh token reused after the grace window: session revoked",
           "session_id", sid, NULL);
    unpublish_id(s, sid);
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSION_REVOKE);
    memcpy(op->id, sid, sizeof(op->id));
    op->now = hd_wall_ms();
    submit(s, op, STEP_REUSE_REVOKE, req);
}

static void rotate(struct hd_sessions *s, struct rotation *r, struct hd_session_req *req,
                   const char *hash);
static void check_refresh_limit(struct hd_sessions *s, struct rotation *r,
                                struct hd_session_req *req, const char *hash);

static void refresh_found(struct hd_sessions *s, struct hd_store_op *op, struct step *st)
{
    struct rotation *r = rotation_find(s, st->hash);
    struct hd_session_req *req = st->req;
    HD_ASSERT(r && !r->done_at);
    if (op->status != HD_STORE_OK) {
        rotation_finish(s, r, from_store(op->status));
        answer(req, from_store(op->status));
        forget_if_transient(s, r);
        return;
    }
    memcpy(r->session_id, op->refresh.session_id, sizeof(r->session_id));
    struct hd_session_info info;
    if (!hd_session_lookup(s, op->refresh.session_id, hd_wall_ms(), &info)) {
        rotation_finish(s, r, HD_SESSION_INVALID);
        answer(req, HD_SESSION_INVALID);
        return;
    }
    if (op->refresh.rotated_at != 0) { /* presented again after its rotation */
        rotation_finish(s, r, HD_SESSION_REUSED);
        revoke_for_reuse(s, op->refresh.session_id, req);
        return;
    }
    if (s->refresh_rl && !s->stopping) {
        check_refresh_limit(s, r, req, st->hash);
        return;
    }
    rotate(s, r, req, st->hash);
}

/* Writes the successor of the token hashed @hash (session r->session_id). */
static void rotate(struct hd_sessions *s, struct rotation *r, struct hd_session_req *req,
                   const char *hash)
{
    new_refresh_token(r->successor);
    struct hd_store_op *rot = hd_store_op_new(HD_OP_SESSION_ROTATE);
    memcpy(rot->id, r->session_id, sizeof(rot->id));
    memcpy(rot->token_hash, hash, sizeof(rot->token_hash));
    hd_token_hash_hex(r->successor, strlen(r->successor), rot->new_token_hash);
    rot->now = hd_wall_ms();
    submit_step(s, rot, STEP_ROTATE, req, hash);
}

/* ---- per-session refresh limit (a round trip to the rate-limit actor) ---- */

struct limit_box {
    struct hd_rl_check check;
    struct hd_msg back; /* MSG_LIMIT_DONE, to this actor */
    struct hd_actor *actor;
    struct hd_session_req *req;
    char hash[65];
};

/* Rate-limit actor thread: hand the verdict back. */
static void limit_checked(struct hd_rl_check *c)
{
    struct limit_box *box = c->ctx;
    box->back.type = MSG_LIMIT_DONE;
    hd_actor_post(box->actor, &box->back);
}

static void check_refresh_limit(struct hd_sessions *s, struct rotation *r,
                                struct hd_session_req *req, const char *hash)
{
    struct limit_box *box = hd_calloc(1, sizeof(*box));
    box->actor = s->actor;
    box->req = req;
    memcpy(box->hash, hash, sizeof(box->hash));
    struct hd_rl_item *it = &box->check.items[0];
    memcpy(it->policy, s->refresh_policy, sizeof(it->policy));
    it->rule = s->refresh_rule;
    memcpy(it->key, r->session_id, HD_ID_LEN);
    it->key_len = HD_ID_LEN;
    box->check.n = 1;
    box->check.cost = 1;
    box->check.done = limit_checked;
    box->check.ctx = box;
    s->in_store++; /* quiesce waits for it like for a store op */
    hd_ratelimit_submit(s->refresh_rl, &box->check);
}

static void on_limit_done(struct hd_sessions *s, struct limit_box *box)
{
    struct rotation *r = rotation_find(s, box->hash);
    struct hd_session_req *req = box->req;
    HD_ASSERT(r && !r->done_at);
    req->limit_checked = true;
    req->limit = box->check.items[0];
    if (box->check.allowed && !s->stopping) {
        rotate(s, r, req, box->hash);
    } else {
        r->limit = box->check.items[0];
        enum hd_session_status st =
            box->check.allowed ? HD_SESSION_UNAVAILABLE : HD_SESSION_RATE_LIMITED;
        rotation_finish(s, r, st);
        answer(req, st);
        forget_if_transient(s, r);
    }
    free(box);
    if (--s->in_store == 0 && s->quiesced) {
        sem_post(s->quiesced);
        s->quiesced = NULL;
    }
}

static void rotated(struct hd_sessions *s, struct hd_store_op *op, struct step *st)
{
    struct rotation *r = rotation_find(s, st->hash);
    HD_ASSERT(r && !r->done_at);
    enum hd_session_status status = from_store(op->status);
    if (status != HD_SESSION_OK)
        sodium_memzero(r->successor, sizeof(r->successor));
    rotation_finish(s, r, status);
    answer_from_rotation(s, r, st->req);
    forget_if_transient(s, r);
}

/* ---- revoke and list ------------------------------------------------------- */

static void handle_revoke(struct hd_sessions *s, struct hd_session_req *req)
{
    struct hd_session_info info;
    bool live = hd_session_lookup(s, req->session_id, hd_wall_ms(), &info);
    if (!live || (req->user_id[0] && strcmp(info.user_id, req->user_id) != 0)) {
        answer(req, HD_SESSION_INVALID); /* someone else's session is not found */
        return;
    }
    unpublish_id(s, req->session_id); /* refused at once, before the store answers */
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSION_REVOKE);
    memcpy(op->id, req->session_id, sizeof(op->id));
    op->now = hd_wall_ms();
    submit(s, op, STEP_REVOKE, req);
}

static void handle_revoke_user(struct hd_sessions *s, struct hd_session_req *req)
{
    note_ended(s, req->user_id, wall_us());
    struct sess_node *nodes[MAX_LIST];
    int n = sess_user_nodes(s->map, req->user_id, nodes, MAX_LIST);
    for (int i = 0; i < n; i++) {
        if (strcmp(nodes[i]->info.id, req->except_id) != 0)
            end_node(s, nodes[i]);
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSIONS_REVOKE_USER);
    memcpy(op->user_id, req->user_id, sizeof(op->user_id));
    memcpy(op->except_id, req->except_id, sizeof(op->except_id));
    op->now = hd_wall_ms();
    submit(s, op, STEP_REVOKE_USER, req);
}

static void handle_profile(struct hd_sessions *s, struct hd_session_req *req)
{
    if (req->user_json && sess_user_count(s->map, req->user_id) > 0)
        prof_publish(s->map, req->user_id, req->user_json, req->user.updated_at);
    answer(req, HD_SESSION_OK);
}

static void handle_list(struct hd_sessions *s, struct hd_session_req *req)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSIONS_LIST);
    memcpy(op->user_id, req->user_id, sizeof(op->user_id));
    op->now = hd_wall_ms();
    submit(s, op, STEP_LIST, req);
}

/* Keeps the rows that are live in memory too (idle ones are gone). */
static void listed(struct hd_sessions *s, struct hd_store_op *op, struct hd_session_req *req)
{
    if (op->status != HD_STORE_OK) {
        answer(req, from_store(op->status));
        return;
    }
    int64_t now = hd_wall_ms();
    req->sessions = hd_calloc(op->n_sessions ? op->n_sessions : 1, sizeof(*req->sessions));
    for (size_t i = 0; i < op->n_sessions; i++) {
        if (!hd_session_lookup(s, op->sessions[i].id, now, NULL))
            continue;
        req->sessions[req->n_sessions++] = op->sessions[i];
        memset(&op->sessions[i], 0, sizeof(op->sessions[i])); /* moved */
    }
    answer(req, HD_SESSION_OK);
}

/* ---- loading at start -------------------------------------------------- */

static void handle_request(struct hd_sessions *s, struct hd_session_req *req);

/* Requests that arrived before the load, in order. */
static void run_waiting(struct hd_sessions *s)
{
    while (s->waiting_head) {
        struct hd_session_req *req = s->waiting_head;
        s->waiting_head = req->_next;
        handle_request(s, req);
    }
    s->waiting_tail = NULL;
}

static void wait_for_load(struct hd_sessions *s, struct hd_session_req *req)
{
    req->_next = NULL;
    if (s->waiting_tail)
        s->waiting_tail->_next = req;
    else
        s->waiting_head = req;
    s->waiting_tail = req;
}

static void loaded(struct hd_sessions *s, struct hd_store_op *op)
{
    if (op->status != HD_STORE_OK) {
        hd_health_set("sessions", false, "loading from the store failed: retrying");
        struct hd_store_op *again = hd_store_op_new(HD_OP_SESSIONS_LOAD_LIVE);
        again->now = hd_wall_ms();
        submit(s, again, STEP_LOAD, NULL);
        return;
    }
    int64_t now = hd_wall_ms();
    long n = 0;
    for (size_t i = 0; i < op->n_sessions; i++) {
        /* The role is refreshed by the first login or profile read; a loaded
         * session starts as member until then (it only narrows access). */
        struct sess_node *node = node_from(&op->sessions[i], HD_ROLE_MEMBER);
        rcu_read_lock();
        bool known = sess_map_find(s->map, node->info.id) != NULL;
        rcu_read_unlock();
        if (known || !node_alive(s, node, now)) {
            free(node);
            continue;
        }
        sess_map_publish(s->map, node);
        n++;
    }
    char detail[64];
    snprintf(detail, sizeof(detail), "%ld live sessions loaded", n);
    hd_health_set("sessions", true, detail);
    __atomic_store_n(&s->loaded, true, __ATOMIC_RELEASE);
    run_waiting(s);
}

/* ---- sweeping and touching ------------------------------------------------ */

struct sweep_ctx {
    struct hd_sessions *s;
    int64_t now;
};

static void sweep_one(void *arg, struct sess_node *n)
{
    struct sweep_ctx *c = arg;
    if (!node_alive(c->s, n, c->now))
        end_node(c->s, n);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct hd_sessions *s = arg;
    struct sweep_ctx c = {s, hd_wall_ms()};
    sess_map_each(s->map, sweep_one, &c);
    for (struct ended **e = &s->ended; *e;) {
        if (c.now * 1000 - (*e)->at > (int64_t)ENDED_KEEP_MS * 1000) {
            struct ended *old = *e;
            *e = old->next;
            free(old);
        } else {
            e = &(*e)->next;
        }
    }
    int64_t keep_ms = (int64_t)s->cfg->session.refresh_reuse_grace_s * 1000 + 60000;
    for (struct rotation **p = &s->rotations; *p;) {
        struct rotation *r = *p;
        if (r->done_at && c.now - r->done_at > keep_ms) {
            *p = r->next;
            sodium_memzero(r->successor, sizeof(r->successor));
            free(r);
        } else {
            p = &r->next;
        }
    }
}

static void handle_touch(struct hd_sessions *s, struct touch_msg *t)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSION_TOUCH);
    memcpy(op->id, t->sid, sizeof(op->id));
    op->now = t->at;
    free(t);
    submit(s, op, STEP_FORGET, NULL);
}

/* ---- dispatch ------------------------------------------------------------ */

static void on_store_done(struct hd_sessions *s, struct hd_store_op *op)
{
    struct step_box *box = op->ctx;
    struct step *st = &box->step;
    switch (st->kind) {
    case STEP_LOAD:
        loaded(s, op);
        break;
    case STEP_CREATE:
        created(s, op, st->req);
        break;
    case STEP_REFRESH_FIND:
        refresh_found(s, op, st);
        break;
    case STEP_ROTATE:
        rotated(s, op, st);
        break;
    case STEP_REUSE_REVOKE:
        answer(st->req, HD_SESSION_REUSED);
        break;
    case STEP_REVOKE:
        answer(st->req, op->status == HD_STORE_NOT_FOUND ? HD_SESSION_OK : from_store(op->status));
        break;
    case STEP_REVOKE_USER:
        st->req->count = (int64_t)op->n_sessions;
        answer(st->req, from_store(op->status));
        break;
    case STEP_LIST:
        listed(s, op, st->req);
        break;
    case STEP_FORGET:
        break;
    }
    free(box);
    hd_store_op_free(op);
    if (--s->in_store == 0 && s->quiesced) {
        sem_post(s->quiesced);
        s->quiesced = NULL;
    }
}

static void handle_quiesce(struct hd_sessions *s, struct quiesce_msg *q)
{
    s->stopping = true;
    if (s->in_store == 0)
        sem_post(q->done);
    else
        s->quiesced = q->done;
    free(q);
}

static void on_message(void *ctx, struct hd_msg *m)
{
    struct hd_sessions *s = ctx;
    if (m->type == MSG_STORE_DONE) {
        on_store_done(s, HD_CONTAINER_OF(m, struct hd_store_op, _msg));
        return;
    }
    if (m->type == MSG_TOUCH) {
        handle_touch(s, (struct touch_msg *)m);
        return;
    }
    if (m->type == MSG_QUIESCE) {
        handle_quiesce(s, (struct quiesce_msg *)m);
        return;
    }
    if (m->type == MSG_LIMIT_DONE) {
        on_limit_done(s, HD_CONTAINER_OF(m, struct limit_box, back));
        return;
    }
    struct hd_session_req *req = HD_CONTAINER_OF(m, struct hd_session_req, _msg);
    if (!s->loaded)
        wait_for_load(s, req);
    else
        handle_request(s, req);
}

static void handle_request(struct hd_sessions *s, struct hd_session_req *req)
{
    switch (req->kind) {
    case HD_SESSION_CREATE:
        handle_create(s, req);
        break;
    case HD_SESSION_ROTATE:
        handle_rotate(s, req);
        break;
    case HD_SESSION_REVOKE:
        handle_revoke(s, req);
        break;
    case HD_SESSION_REVOKE_USER:
        handle_revoke_user(s, req);
        break;
    case HD_SESSION_LIST:
        handle_list(s, req);
        break;
    case HD_SESSION_PROFILE:
        handle_profile(s, req);
        break;
    default:
        answer(req, HD_SESSION_ERROR);
        break;
    }
}

static void on_start(struct hd_actor *a)
{
    struct hd_sessions *s = hd_actor_ctx(a);
    s->sweep = event_new(hd_actor_base(a), -1, EV_PERSIST, on_sweep, s);
    struct timeval every = {SWEEP_EVERY_MS / 1000, 0};
    event_add(s->sweep, &every);
}

struct unpublish_all {
    struct hd_sessions *s;
};

static void drop_one(void *arg, struct sess_node *n)
{
    sess_map_unpublish(((struct unpublish_all *)arg)->s->map, n);
}

static void on_stop(struct hd_actor *a)
{
    struct hd_sessions *s = hd_actor_ctx(a);
    event_free(s->sweep);
    struct unpublish_all u = {s};
    sess_map_each(s->map, drop_one, &u);
    while (s->waiting_head) { /* never loaded: the store never answered */
        struct hd_session_req *req = s->waiting_head;
        s->waiting_head = req->_next;
        answer(req, HD_SESSION_UNAVAILABLE);
    }
    while (s->ended) {
        struct ended *e = s->ended;
        s->ended = e->next;
        free(e);
    }
    while (s->rotations) {
        struct rotation *r = s->rotations;
        s->rotations = r->next;
        for (int i = 0; i < r->n_waiters; i++)
            answer(r->waiters[i], HD_SESSION_UNAVAILABLE);
        free(r->waiters);
        free(r);
    }
}

/* ---- public ---------------------------------------------------------------- */

struct hd_sessions *hd_sessions_start(const struct hd_config *cfg, struct hd_store *store)
{
    struct hd_sessions *s = hd_calloc(1, sizeof(*s));
    s->cfg = cfg;
    s->store = store;
    s->map = sess_map_new();
    if (!s->map) {
        free(s);
        return NULL;
    }
    hd_health_set("sessions", false, "loading from the store");
    struct hd_actor_spec spec = {.name = "session",
                                 .on_message = on_message,
                                 .on_start = on_start,
                                 .on_stop = on_stop,
                                 .ctx = s};
    s->actor = hd_actor_start(&spec);
    if (!s->actor) {
        sess_map_free(s->map);
        free(s);
        return NULL;
    }
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSIONS_LOAD_LIVE);
    op->now = hd_wall_ms();
    submit(s, op, STEP_LOAD, NULL);
    return s;
}

void hd_sessions_limit_refresh(struct hd_sessions *s, struct hd_ratelimit *rl, const char *policy,
                               const struct hd_gcra_rule *rule)
{
    s->refresh_rl = rl;
    snprintf(s->refresh_policy, sizeof(s->refresh_policy), "%s", policy);
    s->refresh_rule = *rule;
}

void hd_sessions_quiesce(struct hd_sessions *s)
{
    if (!s)
        return;
    sem_t done;
    sem_init(&done, 0, 0);
    struct quiesce_msg *q = hd_calloc(1, sizeof(*q));
    q->msg.type = MSG_QUIESCE;
    q->done = &done;
    hd_actor_post(s->actor, &q->msg);
    sem_wait(&done);
    sem_destroy(&done);
}

void hd_sessions_stop(struct hd_sessions *s)
{
    if (!s)
        return;
    hd_actor_stop(s->actor); /* on_stop unpublished every node */
    rcu_barrier();           /* their call_rcu frees have run */
    sess_map_free(s->map);
    free(s);
}

void hd_session_submit(struct hd_sessions *s, struct hd_session_req *req)
{
    HD_ASSERT(req->done);
    req->_msg.type = MSG_REQ;
    hd_actor_post(s->actor, &req->_msg);
}

/* Asks the actor to write last-seen, at most once a minute per session. */
static void maybe_touch(struct hd_sessions *s, struct sess_node *n, int64_t now)
{
    int64_t seen = __atomic_load_n(&n->last_seen_ms, __ATOMIC_RELAXED);
    if (now - seen >= SEEN_EVERY_MS)
        __atomic_store_n(&n->last_seen_ms, now, __ATOMIC_RELAXED);
    int64_t posted = __atomic_load_n(&n->touch_posted_ms, __ATOMIC_RELAXED);
    if (now - posted < TOUCH_EVERY_MS ||
        !__atomic_compare_exchange_n(&n->touch_posted_ms, &posted, now, false, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    struct touch_msg *t = hd_calloc(1, sizeof(*t));
    t->msg.type = MSG_TOUCH;
    memcpy(t->sid, n->info.id, sizeof(t->sid));
    t->at = now;
    hd_actor_post(s->actor, &t->msg);
}

bool hd_session_alive(struct hd_sessions *s, const char *sid, int64_t now_ms)
{
    rcu_read_lock();
    struct sess_node *n = sess_map_find(s->map, sid);
    bool alive = n && node_alive(s, n, now_ms);
    rcu_read_unlock();
    return alive;
}

void hd_sessions_on_ended(struct hd_sessions *s, hd_session_ended_fn fn, void *ctx)
{
    s->on_ended = fn;
    s->on_ended_ctx = ctx;
}

bool hd_session_lookup(struct hd_sessions *s, const char *sid, int64_t now_ms,
                       struct hd_session_info *out)
{
    bool alive = false;
    rcu_read_lock();
    struct sess_node *n = sess_map_find(s->map, sid);
    if (n && node_alive(s, n, now_ms)) {
        alive = true;
        if (out)
            *out = n->info;
        maybe_touch(s, n, now_ms);
    }
    rcu_read_unlock();
    return alive;
}

size_t hd_session_profile(struct hd_sessions *s, const char *user_id, char *buf, size_t cap)
{
    size_t len = 0;
    rcu_read_lock();
    struct prof_node *p = prof_find(s->map, user_id);
    if (p && p->len < cap) {
        memcpy(buf, p->json, p->len + 1);
        len = p->len;
    }
    rcu_read_unlock();
    return len;
}

bool hd_sessions_wait_loaded(struct hd_sessions *s, int timeout_ms)
{
    uint64_t deadline = hd_now_ms() + (uint64_t)timeout_ms;
    while (!__atomic_load_n(&s->loaded, __ATOMIC_ACQUIRE)) {
        if (hd_now_ms() >= deadline)
            return false;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

long hd_sessions_count(struct hd_sessions *s)
{
    return sess_map_count(s->map);
}
