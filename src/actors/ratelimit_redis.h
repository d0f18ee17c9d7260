/* The rate-limit actor's Redis client (private to src/actors/ratelimit.c).
 *
 * One hiredis 0.14 async connection on the actor's event_base. On connect it
 * pipelines AUTH (when the URL has a password), SELECT (db != 0) and SCRIPT
 * LOAD of the limiter script; it is "up" once the script is loaded. A check
 * is one EVALSHA of that script carrying all the check's items; checks are
 * pipelined (never one round trip after another). A NOSCRIPT error re-sends
 * that check with EVAL.
 *
 * hiredis 0.14 has no timeouts: a 50 ms timer drops the connection when the
 * oldest pending reply is older than 250 ms (the connect itself included),
 * which runs the pending callbacks without a reply. A lost connection, a
 * missed deadline or an error reply (other than NOSCRIPT) marks Redis down:
 * the reply callback says "not answered" for every pending check, submit
 * refuses new checks at once, and a timer reconnects with back-off (100 ms
 * doubling to 5 s), until the script is loaded again.
 *
 * One Redis server (or a primary behind a failover address), not Redis
 * Cluster: one check's keys may live in different hash slots.
 *
 * Threads: everything runs on the actor thread except hd__rl_redis_new/free
 * (main thread, before the actor starts / after it stopped) and
 * hd__rl_redis_up/collect (any thread: relaxed atomics only).
 */
#ifndef HERALD_ACTORS_RATELIMIT_REDIS_H
#define HERALD_ACTORS_RATELIMIT_REDIS_H

#include <stdbool.h>

struct event_base;
struct hd_buf;
struct hd_rl_check;
struct hd__rl_redis;

/** A parsed redis:// URL. The password is a secret: never log it. */
struct hd__rl_redis_url {
    char host[256];     /* name or address (IPv6 without brackets) */
    int port;           /* 1..65535; default 6379 */
    int db;             /* >= 0; default 0 */
    char user[128];     /* "" = none (AUTH with the password only) */
    char password[256]; /* "" = no AUTH */
};

/**
 * How a check handed to hd__rl_redis_submit ended. @ok true: every item's
 * verdict was filled from Redis (limit = the item's rule limit). @ok false:
 * Redis did not answer (lost connection, deadline, error reply, shutdown);
 * the verdicts are untouched and the caller answers by its fallback. Called
 * exactly once per accepted check, on the actor thread.
 */
typedef void (*hd__rl_redis_reply_fn)(void *ctx, struct hd_rl_check *check, bool ok);

/**
 * Redis became usable (@up, @reason NULL) or unusable (@reason: short text,
 * never a password). Called on each transition, never from
 * hd__rl_redis_stop. Actor thread.
 */
typedef void (*hd__rl_redis_state_fn)(void *ctx, bool up, const char *reason);

/**
 * Parses @url: redis://[[user]:password@]host[:port][/db]. User and
 * password are percent-decoded; an IPv6 host goes in brackets. Returns 0, or
 * -EINVAL with a short static reason in *@why (may be NULL) that never
 * quotes the URL. Pure.
 */
int hd__rl_redis_url_parse(const char *url, struct hd__rl_redis_url *out, const char **why);

/**
 * A client for @url (copied) that reports through @reply and @state with
 * @ctx (borrowed). Does not connect yet. Main thread. Never NULL.
 */
struct hd__rl_redis *hd__rl_redis_new(const struct hd__rl_redis_url *url,
                                      hd__rl_redis_reply_fn reply, hd__rl_redis_state_fn state,
                                      void *ctx);

/** Starts connecting on @base (the actor's loop, borrowed). Actor thread. */
void hd__rl_redis_start(struct hd__rl_redis *r, struct event_base *base);

/**
 * Sends @check (borrowed until its reply callback) as one script call.
 * Returns false, without calling the reply callback, when Redis is down (or
 * too many checks are in flight): answer by the fallback at once. Before the
 * first connect has failed, checks are sent and wait for it (bounded by the
 * deadline). The items' rules must be valid (see hd_gcra_check). Actor
 * thread.
 */
bool hd__rl_redis_submit(struct hd__rl_redis *r, struct hd_rl_check *check);

/**
 * Closes the connection: every pending check gets its reply callback with
 * ok = false before this returns; no callback runs afterwards. Frees the
 * client's events. Actor thread (on_stop), before the event_base is freed.
 */
void hd__rl_redis_stop(struct hd__rl_redis *r);

/** Frees @r after hd__rl_redis_stop (or if never started). NULL is fine. Main thread. */
void hd__rl_redis_free(struct hd__rl_redis *r);

/** True while checks go to Redis (connected, script loaded). Any thread. */
bool hd__rl_redis_up(const struct hd__rl_redis *r);

/** "host:port/db" for logs and health: no user, no password. Any thread. */
const char *hd__rl_redis_target(const struct hd__rl_redis *r);

/**
 * Appends herald_ratelimit_redis_up, herald_ratelimit_redis_errors_total and
 * the herald_ratelimit_redis_seconds histogram to @out. Any thread.
 */
void hd__rl_redis_collect(struct hd__rl_redis *r, struct hd_buf *out);

#endif
