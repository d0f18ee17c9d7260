/* The rate-limit actor: the only owner of limiter state (a GCRA table, see
 * gcra.h). I/O threads post a check naming one or more (policy, key, rule)
 * items and continue the request when the verdict comes back through `done`.
 *
 * Shared mode. With a Redis URL, every check is decided by one Lua script in
 * Redis (the same GCRA semantics as gcra.c, on Redis's clock), so the nodes
 * behind a load balancer share one budget per key. The actor pipelines the
 * script calls on one connection and never blocks on Redis: a reply that
 * takes longer than 250 ms, a lost connection or an error reply marks Redis
 * down, and until it is back (reconnect with back-off 100 ms .. 5 s) every
 * check is answered at once by the `redis_down` fallback.
 *
 * /readyz ("redis" component). With redis_down = local or allow the node
 * still serves correctly while Redis is down (limits are per node, or not
 * enforced), so Redis down does not make /readyz 503: the component is ok
 * and "degraded" (hd_health_set_degraded) with a detail saying which
 * fallback is in use. With redis_down = deny the node would refuse every
 * rate-limited request, so Redis down is reported not ok (503) and a load
 * balancer can send traffic to nodes that still reach Redis. */
#ifndef HERALD_RATELIMIT_H
#define HERALD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/gcra.h"
#include "herald/inbox.h"

#define HD_RL_MAX_ITEMS    4
#define HD_RL_KEY_MAX      200
#define HD_RL_POLICY_MAX   32
#define HD_RL_MAX_POLICIES 16 /* distinct policy names counted in /metrics */

struct hd_rl_item {
    char policy[HD_RL_POLICY_MAX]; /* "login_ip", … (metrics label; prefixes the key) */
    struct hd_gcra_rule rule;
    char key[HD_RL_KEY_MAX]; /* e.g. the client IP or the account */
    size_t key_len;
    /* true: only look. The verdict says whether one more unit would be
     * allowed now (allowed = remaining >= 1, retry_after_s until it would
     * be) and nothing is charged. For budgets charged after the fact, e.g.
     * the per-account login budget that only failed logins spend. */
    bool peek;
    struct hd_gcra_verdict verdict; /* out */
};

/** Which path decided a check (an out field of hd_rl_check). */
enum hd_rl_decided_by {
    HD_RL_BY_LOCAL,    /* the local table: no Redis configured */
    HD_RL_BY_REDIS,    /* the shared limiter in Redis */
    HD_RL_BY_FALLBACK, /* Redis unreachable: the redis_down mode decided */
};

struct hd_rl_check;
/** Runs on the rate-limit actor's thread; must not block (it posts). */
typedef void (*hd_rl_done_fn)(struct hd_rl_check *check);

struct hd_rl_check {
    struct hd_msg _msg;
    int n; /* items used */
    struct hd_rl_item items[HD_RL_MAX_ITEMS];
    int cost;                         /* units charged to every item; 1 for a request */
    bool allowed;                     /* out: every item allowed */
    int denied;                       /* out: index of the first denied item, or -1 */
    enum hd_rl_decided_by decided_by; /* out */
    hd_rl_done_fn done;
    void *ctx;
};

struct hd_ratelimit;

/** What to answer while the shared limiter (Redis) is unreachable. */
enum hd_rl_redis_down {
    HD_RL_REDIS_DOWN_LOCAL, /* decide with this node's local table (default) */
    HD_RL_REDIS_DOWN_ALLOW, /* allow every check */
    HD_RL_REDIS_DOWN_DENY,  /* deny every check */
};

struct hd_ratelimit_options {
    size_t max_keys; /* local table bound (ratelimit.max_keys) */
    /* redis://[[user]:password@]host[:port][/db] (port 6379, db 0; user and
     * password percent-decoded); NULL or "" = local only. Borrowed for the
     * call. A host name is resolved (blocking) on the actor thread at each
     * connect: prefer an address. */
    const char *redis_url;
    enum hd_rl_redis_down redis_down;
};

/** Starts the actor. Main thread. NULL on failure (a bad max_keys, a
 * malformed redis_url: logged without its password; an unreachable Redis is
 * not a failure: it is retried in the background and the fallback answers
 * meanwhile). */
struct hd_ratelimit *hd_ratelimit_start(const struct hd_ratelimit_options *opts);

/** True while checks are decided by Redis (connected, script loaded); false
 * without a Redis URL or while the fallback answers. Any thread. */
bool hd_ratelimit_redis_up(const struct hd_ratelimit *rl);

/** Posts @check (ownership until `done`). Items are checked in order; each
 * allowed item that is not a peek is charged @check->cost, so a denial on a
 * later item still counts the attempt against the earlier ones (an
 * attacker's tries are never free). Any thread. */
void hd_ratelimit_submit(struct hd_ratelimit *rl, struct hd_rl_check *check);

/** Stops the actor after the checks already posted. NULL is fine. */
void hd_ratelimit_stop(struct hd_ratelimit *rl);

#endif
