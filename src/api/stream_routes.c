/* GET /api/notifications/stream: the SSE stream of a user's notifications
 * (own and organization-wide), bound to the session it was opened with.
 *
 * Opening: authenticate (Authorization: Bearer, or ?token= for EventSource),
 * rate-limit (stream_connect_user, stream_connect_ip), reserve a slot with
 * the broadcaster (sse.max_streams_per_user: 429 too_many_streams), send the
 * headers and "retry:", register the stream, and only then — when a
 * Last-Event-ID asks for it — read the missed events from the store. Events
 * fanned out meanwhile are held and sent after the replay, skipping ids
 * already sent: no gap and no duplicate across the hand-off. Events are
 * fanned out in id order (the broadcaster commits one at a time), so a
 * stream only ever moves forward.
 *
 * The stream ends when its session does: at once when the session actor
 * reports the end (logout, revocation, disable, password change, eviction),
 * and at the latest on the next once-a-second tick otherwise (idle or
 * absolute expiry), with "event: session_ended" before the close. */
#include "api/api.h"
#include "api/routes.h"

#include "herald/broadcaster.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/notification.h"
#include "herald/server.h"
#include "herald/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_QUERY_MAX 4096

enum sse_state { SSE_OPENING, SSE_REPLAYING, SSE_LIVE };

/* One stream's SSE state; owned by its I/O thread (the stream's ctx). */
struct sse_client {
    struct hd_api *api;
    struct hd_bc_stream *bs; /* the broadcaster's record: released exactly once */
    char user_id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1];
    char session_id[HD_ID_LEN + 1];
    bool resume;     /* a Last-Event-ID was given */
    int64_t last_id; /* the highest event id the client has (sent or claimed) */
    enum sse_state state;
    struct hd_frame **held; /* live events that arrived before the replay ended */
    size_t n_held, cap_held, held_bytes;
    bool held_overflow; /* too many held: the client gets a reset instead */
};

static void client_free(struct sse_client *c)
{
    for (size_t i = 0; i < c->n_held; i++)
        hd_frame_unref(c->held[i]);
    free(c->held);
    if (c->bs)
        hd_broadcaster_release(c->api->broadcaster, c->bs);
    free(c);
}

static void client_free_state(void *p)
{
    client_free(p);
}

/* ---- frames shared by every stream (struct hd_api owns them) --------------------- */

static struct hd_frame *frame_text(const char *text)
{
    return hd_frame_new(0, text, strlen(text), 1);
}

void hd_api_sse_frames_init(struct hd_api *api)
{
    api->sse_ping = frame_text(":\n\n");
    api->sse_reset = frame_text("event: reset\ndata: {}\n\n");
    api->sse_session_ended = frame_text("event: session_ended\ndata: {}\n\n");
}

void hd_api_sse_frames_free(struct hd_api *api)
{
    hd_frame_unref(api->sse_ping);
    hd_frame_unref(api->sse_reset);
    hd_frame_unref(api->sse_session_ended);
}

static struct hd_frame *shared(struct hd_frame *f)
{
    hd_frame_ref(f, 1);
    return f;
}

/* ---- sending -------------------------------------------------------------------------- */

static void send_event(struct hd_stream *s, struct sse_client *c, struct hd_frame *f)
{
    if (f->id <= c->last_id) { /* already sent (replay / live overlap) */
        hd_frame_unref(f);
        return;
    }
    c->last_id = f->id;
    hd_stream_push(s, f); /* an overflow is counted by on_overflow */
}

static void hold(struct sse_client *c, struct hd_frame *f)
{
    if (c->held_overflow || c->held_bytes + f->len > c->api->cfg->sse.client_buffer_bytes) {
        c->held_overflow = true; /* the client will refetch: hold nothing more */
        hd_frame_unref(f);
        return;
    }
    if (c->n_held == c->cap_held) {
        c->cap_held = c->cap_held ? c->cap_held * 2 : 8;
        c->held = hd_realloc(c->held, c->cap_held * sizeof(*c->held));
    }
    c->held[c->n_held++] = f;
    c->held_bytes += f->len;
}

/* Replay done (or skipped): the held events, then live. */
static void go_live(struct hd_stream *s, struct sse_client *c)
{
    if (c->held_overflow) {
        hd_stream_push(s, shared(c->api->sse_reset));
        hd_broadcaster_count(c->api->broadcaster, HD_SSE_RESETS_OVERFLOW, 1);
        for (size_t i = 0; i < c->n_held; i++)
            hd_frame_unref(c->held[i]);
    } else {
        for (size_t i = 0; i < c->n_held; i++)
            send_event(s, c, c->held[i]);
    }
    free(c->held);
    c->held = NULL;
    c->n_held = c->cap_held = c->held_bytes = 0;
    c->state = SSE_LIVE;
}

/* ---- the broadcaster's sink (I/O thread) -------------------------------------------- */

static void sink_deliver(struct hd_stream *s, struct hd_frame *f)
{
    struct sse_client *c = hd_stream_ctx(s);
    if (c->state == SSE_LIVE)
        send_event(s, c, f);
    else
        hold(c, f);
}

static void end_for_session(struct hd_stream *s, struct sse_client *c)
{
    hd_broadcaster_count(c->api->broadcaster, HD_SSE_SESSION_ENDS, 1);
    hd_stream_end(s, shared(c->api->sse_session_ended));
}

static void sink_session_ended(struct hd_stream *s)
{
    end_for_session(s, hd_stream_ctx(s));
}

const struct hd_broadcast_sink hd_api_sse_sink = {
    .deliver = sink_deliver,
    .session_ended = sink_session_ended,
};

/* ---- stream callbacks ------------------------------------------------------------------- */

/* Once a second: a session that expired (idle, absolute) or was revoked
 * without the broadcaster hearing of it yet ends its streams. */
static void on_tick(struct hd_stream *s, void *ctx)
{
    struct sse_client *c = ctx;
    if (!hd_session_alive(c->api->sessions, c->session_id, hd_wall_ms()))
        end_for_session(s, c);
}

static void on_overflow(struct hd_stream *s, void *ctx)
{
    struct sse_client *c = ctx;
    hd_broadcaster_count(c->api->broadcaster, HD_SSE_RESETS_OVERFLOW, 1);
}

static void on_close(struct hd_stream *s, void *ctx, enum hd_stream_close why)
{
    struct sse_client *c = ctx;
    if (why == HD_STREAM_CLOSED_WRITE_TIMEOUT)
        hd_broadcaster_count(c->api->broadcaster, HD_SSE_SLOW_CLOSES, 1);
    client_free(c);
}

/* ---- the replay --------------------------------------------------------------------------- */

struct replay_task {
    struct hd_io_task task;
    struct hd_stream_ref ref;
    struct hd_store_op *op;
};

static void replay_answered(struct hd_stream *s, struct sse_client *c, struct hd_store_op *op)
{
    struct hd_broadcaster *b = c->api->broadcaster;
    if (op->status != HD_STORE_OK) {
        hd_stream_end(s, NULL); /* the client reconnects and resumes later */
        return;
    }
    int64_t oldest = op->count; /* the smallest id still stored (0: none) */
    bool too_old = oldest > 0 && c->last_id + 1 < oldest;
    /* an id the store never issued (a restored or replaced database): the
     * client's history is not ours, and dedupe would drop what comes next */
    bool unknown = c->last_id > op->newest_id;
    if (too_old || unknown || op->n_notifications > (size_t)c->api->cfg->sse.replay_max) {
        c->last_id = 0;
        hd_stream_push(s, shared(c->api->sse_reset));
        hd_broadcaster_count(b, HD_SSE_RESETS_REPLAY, 1);
    } else {
        for (size_t i = 0; i < op->n_notifications; i++) {
            size_t len;
            char *text = hd_notification_sse(&op->notifications[i], &len);
            send_event(s, c, hd_frame_new(op->notifications[i].id, text, len, 1));
            free(text);
        }
        hd_broadcaster_count(b, HD_SSE_REPLAYS, 1);
    }
    go_live(s, c);
}

static void run_replay(struct hd_io *io, struct hd_io_task *t)
{
    struct replay_task *r = (struct replay_task *)t;
    struct hd_stream *s = io ? hd_stream_find(r->ref) : NULL;
    if (s)
        replay_answered(s, hd_stream_ctx(s), r->op);
    hd_store_op_free(r->op);
    free(r);
}

/* DB worker thread. */
static void replay_read(struct hd_store_op *op)
{
    struct replay_task *r = op->ctx;
    r->op = op;
    hd_io_task_post(r->ref.io, &r->task);
}

/* ---- registration -------------------------------------------------------------------------- */

struct registered_task {
    struct hd_io_task task;
    struct hd_stream_ref ref;
};

static void run_registered(struct hd_io *io, struct hd_io_task *t)
{
    struct registered_task *r = (struct registered_task *)t;
    struct hd_stream *s = io ? hd_stream_find(r->ref) : NULL;
    if (s) {
        struct sse_client *c = hd_stream_ctx(s);
        if (!c->resume) {
            go_live(s, c);
        } else {
            c->state = SSE_REPLAYING;
            struct hd_store_op *op = hd_store_op_new(HD_OP_EVENTS_AFTER);
            memcpy(op->user_id, c->user_id, sizeof(op->user_id));
            memcpy(op->org_id, c->org_id, sizeof(op->org_id));
            op->after_id = c->last_id;
            op->limit = c->api->cfg->sse.replay_max + 1;
            struct replay_task *rt = hd_calloc(1, sizeof(*rt));
            rt->task.run = run_replay;
            rt->ref = r->ref;
            op->ctx = rt;
            op->done = replay_read;
            hd_store_submit(c->api->store, op);
        }
    }
    free(r);
}

/* Broadcaster thread: the stream is in the registry. */
static void registered(struct hd_bc_stream *bs, bool ok, void *ctx)
{
    struct registered_task *r = ctx;
    hd_io_task_post(r->ref.io, &r->task);
}

static void start_stream(struct hd_exchange *x)
{
    struct sse_client *c = hd_exchange_take_state(x);
    struct hd_api *api = c->api;
    const struct hd_config *cfg = api->cfg;
    struct hd_stream_config sc = {
        .buffer_bytes = cfg->sse.client_buffer_bytes,
        .keepalive_s = cfg->sse.keepalive_s,
        .write_timeout_s = cfg->sse.write_timeout_s,
        .ping = api->sse_ping,
        .overflow = api->sse_reset,
        .on_tick = on_tick,
        .on_overflow = on_overflow,
        .on_close = on_close,
        .ctx = c,
    };
    char first[32];
    int n = snprintf(first, sizeof(first), "retry: %d\n\n", cfg->sse.retry_ms);
    struct hd_stream *s = hd_stream_start(x, "text/event-stream", first, (size_t)n, &sc);
    struct registered_task *r = hd_calloc(1, sizeof(*r));
    r->task.run = run_registered;
    r->ref = hd_stream_ref(s);
    hd_broadcaster_register(api->broadcaster, c->bs, r->ref, registered, r);
}

/* ---- reservation ------------------------------------------------------------------------------
 */

struct reserve_call {
    struct hd_reply reply; /* first: posted as a message */
    struct hd_broadcaster *b;
    struct hd_bc_stream *bs;
    bool ok;
    bool taken; /* resumed: the client owns bs now */
};

static void reserve_resume(struct hd_exchange *x, struct hd_reply *r)
{
    struct reserve_call *rc = (struct reserve_call *)r;
    rc->taken = true;
    if (!rc->ok) {
        hd_respond_error(x, 429, "too_many_streams",
                         "this user has sse.max_streams_per_user streams open", NULL);
        return;
    }
    struct sse_client *c = hd_exchange_state(x);
    c->bs = rc->bs;
    start_stream(x);
}

static void reserve_destroy(struct hd_reply *r)
{
    struct reserve_call *rc = (struct reserve_call *)r;
    if (!rc->taken && rc->ok) /* the client left while we waited */
        hd_broadcaster_release(rc->b, rc->bs);
    free(rc);
}

/* Broadcaster thread. */
static void reserved(struct hd_bc_stream *bs, bool ok, void *ctx)
{
    struct reserve_call *rc = ctx;
    rc->bs = bs;
    rc->ok = ok;
    hd_reply_post(&rc->reply);
}

static void reserve(struct hd_exchange *x)
{
    struct sse_client *c = hd_exchange_state(x);
    struct reserve_call *rc = hd_calloc(1, sizeof(*rc));
    rc->reply.to = hd_exchange_park(x);
    rc->reply.resume = reserve_resume;
    rc->reply.destroy = reserve_destroy;
    rc->b = c->api->broadcaster;
    hd_broadcaster_reserve(rc->b, c->user_id, c->org_id, c->session_id, reserved, rc);
}

/* ---- the handshake ------------------------------------------------------------------------------
 */

/* Last-Event-ID (header, else ?last_event_id=): *out = the id, or -1 when
 * absent. False (after answering 400) when malformed. */
static bool last_event_id(struct hd_exchange *x, int64_t *out)
{
    char buf[32];
    size_t len = 0;
    const char *v = hd_req_header(x, "Last-Event-ID", &len);
    if (v) {
        if (len >= sizeof(buf))
            goto bad;
        memcpy(buf, v, len);
        buf[len] = '\0';
    } else {
        int n = hd_req_query_param(x, "last_event_id", buf, sizeof(buf));
        if (n == -ENOENT) {
            *out = -1;
            return true;
        }
        if (n < 0)
            goto bad;
        len = (size_t)n;
    }
    if (len == 0 || len > 18)
        goto bad;
    int64_t id = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            goto bad;
        id = id * 10 + (buf[i] - '0');
    }
    *out = id;
    return true;
bad:
    hd_respond_error(x, 400, "validation_failed",
                     "Last-Event-ID must be an event id (a non-negative integer)", "last_event_id");
    return false;
}

static void handle_stream(struct hd_exchange *x)
{
    struct hd_api *api = hd_api_of(x);
    struct hd_api_caller who;
    size_t hlen;
    if (hd_req_header(x, "Authorization", &hlen)) {
        if (!hd_api_authenticate(x, &who))
            return;
    } else {
        char *token = hd_malloc(TOKEN_QUERY_MAX);
        int n = hd_req_query_param(x, "token", token, TOKEN_QUERY_MAX);
        bool ok = n > 0 && hd_api_authenticate_token(x, token, (size_t)n, &who);
        if (n == -ENOSPC || n == -EINVAL || n == 0) {
            hd_respond_header(x, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
            hd_respond_error(x, 401, "invalid_token", "the access token is not valid", NULL);
        } else if (n < 0) {
            hd_respond_header(x, "WWW-Authenticate", "Bearer");
            hd_respond_error(x, 401, "missing_token",
                             "send Authorization: Bearer <access token>, or ?token=", NULL);
        }
        free(token);
        if (!ok)
            return;
    }
    int64_t last;
    if (!last_event_id(x, &last))
        return;
    struct sse_client *c = hd_calloc(1, sizeof(*c));
    c->api = api;
    memcpy(c->user_id, who.claims.sub, sizeof(c->user_id));
    memcpy(c->org_id, who.session.org_id, sizeof(c->org_id));
    memcpy(c->session_id, who.session.id, sizeof(c->session_id));
    c->resume = last >= 0;
    c->last_id = last > 0 ? last : 0;
    hd_exchange_set_state(x, c, client_free_state);
    const char *ip = hd_req_client_ip(x);
    struct hd_api_limit *l = hd_api_limit_new(x);
    hd_api_limit_add(l, HD_POLICY_STREAM_CONNECT_USER, c->user_id, strlen(c->user_id), false);
    hd_api_limit_add(l, HD_POLICY_STREAM_CONNECT_IP, ip, strlen(ip), false);
    hd_api_limit_run(x, l, reserve);
}

int hd_api_stream_routes(struct hd_api *api, struct hd_server *s)
{
    /* not `authenticated`: the route takes ?token= too and has its own limits */
    return hd_api_route(api, s, "GET", "/api/notifications/stream", handle_stream, false);
}
