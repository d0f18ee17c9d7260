/* Private to src/api: rate-limit policies attached to routes. A handler
 * collects the (policy, key) items of its request, runs them through the
 * rate-limit actor and continues when they are allowed; a denied request is
 * answered 429 rate_limited with Retry-After, and every answer of a limited
 * route carries the RateLimit-Policy and RateLimit fields of the IETF
 * httpapi draft (draft-ietf-httpapi-ratelimit-headers):
 *
 *   RateLimit-Policy: "login_ip";q=300;w=300, "login_ip_account";q=10;w=60
 *   RateLimit: "login_ip";r=30;t=1, "login_ip_account";r=5;t=6
 *
 * q is the policy's limit per window w (seconds); r the requests still
 * allowed at once right now; t the seconds until the key is back to a full
 * burst. I/O thread only, unless a function says otherwise. */
#ifndef HERALD_API_LIMIT_H
#define HERALD_API_LIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/gcra.h"
#include "herald/http.h"
#include "herald/ratelimit.h"

struct hd_api;
struct hd_config;
struct hd_exchange;
struct hd_ratelimit;
struct hd_server;

/** The policies of config section "ratelimit", one per key. */
enum hd_policy {
    HD_POLICY_LOGIN_IP,
    HD_POLICY_LOGIN_ACCOUNT, /* spent by failed logins only: peeked before, charged after */
    HD_POLICY_LOGIN_IP_ACCOUNT,
    HD_POLICY_REGISTER_IP,
    HD_POLICY_REFRESH_SESSION,
    HD_POLICY_REFRESH_IP,
    HD_POLICY_PASSWORD_USER,
    HD_POLICY_PUBLISH,
    HD_POLICY_STREAM_CONNECT_USER,
    HD_POLICY_STREAM_CONNECT_IP,
    HD_POLICY_AUTHENTICATED,
    HD_POLICY_COUNT
};

/** The rules in force; part of struct hd_api. */
struct hd_api_limits {
    struct hd_ratelimit *rl; /* NULL: every policy is off */
    bool on[HD_POLICY_COUNT];
    struct hd_gcra_rule rules[HD_POLICY_COUNT];
};

/** Fills @l from cfg->ratelimit (rules were validated at load): every policy
 * off when ratelimit.enabled is false or @rl is NULL. Main thread. */
void hd_api_limits_init(struct hd_api_limits *l, const struct hd_config *cfg,
                        struct hd_ratelimit *rl);

/** The config name of @p ("login_ip"): the metrics label and the header
 * field's policy name. Any thread. */
const char *hd_policy_name(enum hd_policy p);

/** One request's pending check; from hd_api_limit_new, consumed by
 * hd_api_limit_run. */
struct hd_api_limit;

/** A check for @x with no items yet. */
struct hd_api_limit *hd_api_limit_new(struct hd_exchange *x);

/**
 * Adds @key (@len bytes; keys longer than 64 bytes are replaced by their
 * BLAKE2b digest) under policy @p; nothing when @p is off. A @peek item is
 * only looked at: it denies when its budget is spent but charges nothing
 * (charge it later with hd_api_limit_charge). At most four items.
 */
void hd_api_limit_add(struct hd_api_limit *l, enum hd_policy p, const char *key, size_t len,
                      bool peek);

/** Continuation after an allowed check: the handler's state is in the exchange. */
typedef void (*hd_api_next_fn)(struct hd_exchange *x);

/**
 * Runs @l (takes it). With no items (every policy off) calls @next at once.
 * Otherwise parks @x, asks the rate-limit actor and, on the I/O thread:
 * all allowed → adds the RateLimit fields to the coming answer and calls
 * @next; any denied → answers 429 rate_limited with Retry-After (whole
 * seconds, at least 1) and the RateLimit fields. Every allowed non-peek item
 * has been charged either way.
 */
void hd_api_limit_run(struct hd_exchange *x, struct hd_api_limit *l, hd_api_next_fn next);

/**
 * For a check made elsewhere (the session actor's per-session refresh
 * limit): adds the RateLimit fields of @item to the coming answer and, when
 * it was denied, answers 429 rate_limited with Retry-After.
 */
void hd_api_limit_answer(struct hd_exchange *x, const struct hd_rl_item *item);

/** Charges one unit to @key under @p without waiting for the verdict (the
 * failed-login budget). Nothing when @p is off. */
void hd_api_limit_charge(struct hd_exchange *x, enum hd_policy p, const char *key, size_t len);

/**
 * Adds an API route. With @authenticated and the "authenticated" policy on,
 * the route first authenticates the caller (answering 401 itself when that
 * fails) and charges the caller's user id under that policy, then runs
 * @handler; otherwise @handler runs directly. @handler still authenticates
 * (a cached verify). Main thread, before the server starts. 0 or -EINVAL.
 */
int hd_api_route(struct hd_api *api, struct hd_server *s, const char *method, const char *pattern,
                 hd_handler_fn handler, bool authenticated);

#endif
