/* The rate-limit actor: the only owner of limiter state (a GCRA table, see
 * gcra.h). I/O threads post a check naming one or more (policy, key, rule)
 * items and continue the request when the verdict comes back through `done`.
 * Local state only for now; the Redis-shared mode (issue 5) will sit behind
 * the same check message. */
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

struct hd_rl_check;
/** Runs on the rate-limit actor's thread; must not block (it posts). */
typedef void (*hd_rl_done_fn)(struct hd_rl_check *check);

struct hd_rl_check {
    struct hd_msg _msg;
    int n; /* items used */
    struct hd_rl_item items[HD_RL_MAX_ITEMS];
    int cost;     /* units charged to every item; 1 for a request */
    bool allowed; /* out: every item allowed */
    int denied;   /* out: index of the first denied item, or -1 */
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
    size_t max_keys;       /* local table bound (ratelimit.max_keys) */
    const char *redis_url; /* redis://…; NULL or "" = local only. Borrowed for the call. */
    enum hd_rl_redis_down redis_down;
};

/** Starts the actor. Main thread. NULL on failure (a bad max_keys; an
 * unreachable Redis is not a failure: it is retried in the background). */
struct hd_ratelimit *hd_ratelimit_start(const struct hd_ratelimit_options *opts);

/** Posts @check (ownership until `done`). Items are checked in order; each
 * allowed item that is not a peek is charged @check->cost, so a denial on a
 * later item still counts the attempt against the earlier ones (an
 * attacker's tries are never free). Any thread. */
void hd_ratelimit_submit(struct hd_ratelimit *rl, struct hd_rl_check *check);

/** Stops the actor after the checks already posted. NULL is fine. */
void hd_ratelimit_stop(struct hd_ratelimit *rl);

#endif
