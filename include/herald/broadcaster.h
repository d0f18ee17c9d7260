/* The broadcaster actor: publishes notifications (through the store, one at
 * a time, so events are committed and fanned out in id order) and owns the
 * registry of SSE streams.
 *
 * Registry. RCU hash maps (liburcu rculfhash) keyed by (user, I/O thread),
 * (organization, I/O thread) and (session, I/O thread), each holding an RCU
 * list of stream refs. Only the broadcaster writes them; I/O threads read
 * them without locks while fanning out. An event is rendered once into a
 * reference-counted frame and posted to each I/O thread that has a
 * matching key, which appends it to its own streams (sockets never leave
 * their I/O thread). A session that ends is posted the same way, and the
 * streams of that session get `event: session_ended` and close.
 *
 * Threads: hd_broadcaster_* calls post messages (any thread) unless said
 * otherwise; `done` callbacks run on the broadcaster's thread and must only
 * post. */
#ifndef HERALD_BROADCASTER_H
#define HERALD_BROADCASTER_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/inbox.h"
#include "herald/store.h"
#include "herald/stream.h"

struct hd_broadcaster;
struct hd_config;
struct hd_server;
struct hd_sessions;

/* ---- lifecycle (main thread) ---------------------------------------------- */

/** What the I/O threads do with what the broadcaster sends a stream: the
 * SSE layer's callbacks, run on the stream's I/O thread. */
struct hd_broadcast_sink {
    /** A notification event for @s (@f: one reference, the callee's). */
    void (*deliver)(struct hd_stream *s, struct hd_frame *f);
    /** @s's session ended: send session_ended and end the stream. */
    void (*session_ended)(struct hd_stream *s);
};

/** Starts the actor (publishing through @store, borrowed). NULL on failure. */
struct hd_broadcaster *hd_broadcaster_start(const struct hd_config *cfg, struct hd_store *store,
                                            const struct hd_broadcast_sink *sink);

/** The server whose I/O threads to fan out to: before hd_server_start (its
 * threads are looked up once it runs). Main thread. */
void hd_broadcaster_attach(struct hd_broadcaster *b, struct hd_server *s);

/** Makes @sessions report ended sessions to @b (hd_sessions_on_ended). */
void hd_broadcaster_follow_sessions(struct hd_broadcaster *b, struct hd_sessions *sessions);

/** Shutdown, before hd_server_free: from its return on, nothing more is
 * posted to the I/O threads. NULL is fine. */
void hd_broadcaster_detach(struct hd_broadcaster *b);

/** Stops publishing (waits for the insert in flight; queued publishes are
 * answered UNAVAILABLE) — before the store stops. NULL is fine. */
void hd_broadcaster_quiesce(struct hd_broadcaster *b);

/** Stops the actor and frees the registry; after the I/O threads and the
 * session actor stopped. NULL is fine. */
void hd_broadcaster_stop(struct hd_broadcaster *b);

/* ---- publishing ------------------------------------------------------------- */

struct hd_publish;
typedef void (*hd_publish_done_fn)(struct hd_publish *p);

/** A notification to persist and fan out. */
struct hd_publish {
    struct hd_msg _msg;
    /* in: org_id, user_id ("" = the whole organization), type, title, body,
     * data (JSON object text or NULL); owned strings (hd_publish_free).
     * out: id, created_at */
    struct hd_notification n;
    enum hd_store_status status; /* out: OK once committed; NOT_FOUND: the user
                                    is not in org_id; UNAVAILABLE/TIMEOUT/ERROR */
    hd_publish_done_fn done;     /* broadcaster thread; must only post */
    void *ctx;
    struct hd_publish *_next; /* the broadcaster's queue */
};

/** A zeroed publish. */
struct hd_publish *hd_publish_new(void);
/** Frees @p and its strings. NULL is fine. */
void hd_publish_free(struct hd_publish *p);

/** Persists @p->n through the store, then fans it out to the matching
 * streams; @done runs once the store answered (after the commit when OK),
 * before the fan-out is written. Publishes are committed in the order they
 * arrive. Takes @p until done. */
void hd_broadcaster_publish(struct hd_broadcaster *b, struct hd_publish *p);

/* ---- streams (the SSE layer, on I/O threads) ---------------------------------- */

/** The broadcaster's record of one stream, from reserve to unregister. */
struct hd_bc_stream;
typedef void (*hd_bc_done_fn)(struct hd_bc_stream *bs, bool ok, void *ctx);

/**
 * Reserves a stream slot for @user_id (at most sse.max_streams_per_user at
 * once) and returns the record that names it. @done(bs, ok, ctx) runs on
 * the broadcaster's thread; !ok: the user has too many streams (the record
 * is then already released: do not use it).
 */
struct hd_bc_stream *hd_broadcaster_reserve(struct hd_broadcaster *b, const char *user_id,
                                            const char *org_id, const char *session_id,
                                            hd_bc_done_fn done, void *ctx);

/**
 * Adds the reserved @bs, now stream @ref, to the registry: from then on,
 * events for its user and organization and the end of its session reach it.
 * @done(bs, true, ctx) runs on the broadcaster's thread once it is in (start
 * the resume replay only then, so no event falls between the replay and
 * live delivery).
 */
void hd_broadcaster_register(struct hd_broadcaster *b, struct hd_bc_stream *bs,
                             struct hd_stream_ref ref, hd_bc_done_fn done, void *ctx);

/** Releases @bs (registered or only reserved) — when its stream closes, or
 * when the request was abandoned after the reservation. */
void hd_broadcaster_release(struct hd_broadcaster *b, struct hd_bc_stream *bs);

/* ---- metrics the SSE layer counts (atomics; any thread) ------------------------- */

enum hd_sse_counter {
    HD_SSE_REPLAYS,         /* resumes answered with a replay */
    HD_SSE_RESETS_REPLAY,   /* resumes answered with reset (too many missed, too old) */
    HD_SSE_RESETS_OVERFLOW, /* slow clients whose backlog became a reset */
    HD_SSE_SLOW_CLOSES,     /* closed after sse.write_timeout_s unwritable */
    HD_SSE_SESSION_ENDS,    /* streams ended because their session ended */
    HD_SSE_DELIVERED,       /* events queued to streams */
    HD_SSE__COUNT
};

/** Adds @n to counter @c. */
void hd_broadcaster_count(struct hd_broadcaster *b, enum hd_sse_counter c, uint64_t n);

#endif
