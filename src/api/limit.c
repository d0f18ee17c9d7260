/* Rate-limit policies on routes: items → rate-limit actor → continue, or 429.
 * See limit.h for the header fields and the policies. */
#include "api/limit.h"

#include "api/api.h"

#include "herald/buf.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/ratelimit.h"
#include "herald/server.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_DIGEST_OVER 64 /* longer keys are replaced by a digest */

static const char *const NAMES[HD_POLICY_COUNT] = {
    [HD_POLICY_LOGIN_IP] = "login_ip",
    [HD_POLICY_LOGIN_ACCOUNT] = "login_account",
    [HD_POLICY_LOGIN_IP_ACCOUNT] = "login_ip_account",
    [HD_POLICY_REGISTER_IP] = "register_ip",
    [HD_POLICY_REFRESH_SESSION] = "refresh_session",
    [HD_POLICY_REFRESH_IP] = "refresh_ip",
    [HD_POLICY_PASSWORD_USER] = "password_user",
    [HD_POLICY_PUBLISH] = "publish",
    [HD_POLICY_STREAM_CONNECT_USER] = "stream_connect_user",
    [HD_POLICY_STREAM_CONNECT_IP] = "stream_connect_ip",
    [HD_POLICY_AUTHENTICATED] = "authenticated",
};

const char *hd_policy_name(enum hd_policy p)
{
    return p >= 0 && p < HD_POLICY_COUNT ? NAMES[p] : "unknown";
}

static const char *rule_text(const struct hd_config *cfg, enum hd_policy p)
{
    switch (p) {
    case HD_POLICY_LOGIN_IP:
        return cfg->ratelimit.login_ip;
    case HD_POLICY_LOGIN_ACCOUNT:
        return cfg->ratelimit.login_account;
    case HD_POLICY_LOGIN_IP_ACCOUNT:
        return cfg->ratelimit.login_ip_account;
    case HD_POLICY_REGISTER_IP:
        return cfg->ratelimit.register_ip;
    case HD_POLICY_REFRESH_SESSION:
        return cfg->ratelimit.refresh_session;
    case HD_POLICY_REFRESH_IP:
        return cfg->ratelimit.refresh_ip;
    case HD_POLICY_PASSWORD_USER:
        return cfg->ratelimit.password_user;
    case HD_POLICY_PUBLISH:
        return cfg->ratelimit.publish;
    case HD_POLICY_STREAM_CONNECT_USER:
        return cfg->ratelimit.stream_connect_user;
    case HD_POLICY_STREAM_CONNECT_IP:
        return cfg->ratelimit.stream_connect_ip;
    case HD_POLICY_AUTHENTICATED:
        return cfg->ratelimit.authenticated;
    case HD_POLICY_COUNT:
        break;
    }
    return "off";
}

void hd_api_limits_init(struct hd_api_limits *l, const struct hd_config *cfg,
                        struct hd_ratelimit *rl)
{
    memset(l, 0, sizeof(*l));
    if (!rl || !cfg->ratelimit.enabled)
        return;
    l->rl = rl;
    for (int p = 0; p < HD_POLICY_COUNT; p++)
        l->on[p] = hd_gcra_rule_parse(rule_text(cfg, p), &l->rules[p], NULL) == 1;
}

/* ---- one request's check -------------------------------------------------- */

struct hd_api_limit {
    struct hd_reply reply; /* first: posted back to the I/O thread */
    struct hd_rl_check check;
    hd_api_next_fn next;
    const struct hd_api_limits *limits;
};

struct hd_api_limit *hd_api_limit_new(struct hd_exchange *x)
{
    struct hd_api_limit *l = hd_calloc(1, sizeof(*l));
    l->limits = &hd_api_of(x)->limits;
    l->check.cost = 1;
    return l;
}

static void set_key(struct hd_rl_item *it, const char *key, size_t len)
{
    if (len <= KEY_DIGEST_OVER) {
        memcpy(it->key, key, len);
        it->key_len = len;
        return;
    }
    unsigned char d[16];
    crypto_generichash(d, sizeof(d), (const unsigned char *)key, len, NULL, 0);
    memcpy(it->key, "#", 1);
    sodium_bin2hex(it->key + 1, sizeof(it->key) - 1, d, sizeof(d));
    it->key_len = 1 + 2 * sizeof(d);
}

void hd_api_limit_add(struct hd_api_limit *l, enum hd_policy p, const char *key, size_t len,
                      bool peek)
{
    if (!l->limits->on[p])
        return;
    HD_ASSERT(l->check.n < HD_RL_MAX_ITEMS);
    struct hd_rl_item *it = &l->check.items[l->check.n++];
    snprintf(it->policy, sizeof(it->policy), "%s", NAMES[p]);
    it->rule = l->limits->rules[p];
    it->peek = peek;
    set_key(it, key, len);
}

static long whole_seconds_up(double s)
{
    double c = ceil(s - 1e-9);
    return c < 0 ? 0 : (long)c;
}

/* RateLimit-Policy and RateLimit for every item; Retry-After when denied. */
static void add_fields(struct hd_exchange *x, const struct hd_rl_item *items, int n, bool allowed)
{
    char policy[512], state[512];
    size_t pn = 0, sn = 0;
    double retry = 0;
    for (int i = 0; i < n; i++) {
        const struct hd_rl_item *it = &items[i];
        const char *sep = i ? ", " : "";
        int a = snprintf(policy + pn, sizeof(policy) - pn, "%s\"%s\";q=%d;w=%d", sep, it->policy,
                         it->rule.limit, it->rule.window_s);
        int b = snprintf(state + sn, sizeof(state) - sn, "%s\"%s\";r=%d;t=%ld", sep, it->policy,
                         it->verdict.remaining, whole_seconds_up(it->verdict.reset_s));
        if (a < 0 || b < 0 || (size_t)a >= sizeof(policy) - pn || (size_t)b >= sizeof(state) - sn)
            break; /* cannot happen with four items and 31-byte names */
        pn += (size_t)a;
        sn += (size_t)b;
        if (!it->verdict.allowed && it->verdict.retry_after_s > retry)
            retry = it->verdict.retry_after_s;
    }
    hd_respond_header(x, "RateLimit-Policy", policy);
    hd_respond_header(x, "RateLimit", state);
    if (!allowed) {
        char r[24];
        long secs = whole_seconds_up(retry);
        snprintf(r, sizeof(r), "%ld", secs < 1 ? 1 : secs);
        hd_respond_header(x, "Retry-After", r);
    }
}

static void respond_limited(struct hd_exchange *x)
{
    hd_respond_error(x, 429, "rate_limited", "too many requests; retry after Retry-After seconds",
                     NULL);
}

void hd_api_limit_answer(struct hd_exchange *x, const struct hd_rl_item *item)
{
    add_fields(x, item, 1, item->verdict.allowed);
    if (!item->verdict.allowed)
        respond_limited(x);
}

static void limit_resume(struct hd_exchange *x, struct hd_reply *r)
{
    struct hd_api_limit *l = (struct hd_api_limit *)r;
    add_fields(x, l->check.items, l->check.n, l->check.allowed);
    if (!l->check.allowed) {
        respond_limited(x);
        return;
    }
    l->next(x);
}

static void limit_destroy(struct hd_reply *r)
{
    free(r);
}

static void limit_done(struct hd_rl_check *c)
{
    hd_reply_post(&((struct hd_api_limit *)c->ctx)->reply);
}

void hd_api_limit_run(struct hd_exchange *x, struct hd_api_limit *l, hd_api_next_fn next)
{
    if (l->check.n == 0) {
        free(l);
        next(x);
        return;
    }
    l->reply.to = hd_exchange_park(x);
    l->reply.resume = limit_resume;
    l->reply.destroy = limit_destroy;
    l->next = next;
    l->check.ctx = l;
    l->check.done = limit_done;
    hd_ratelimit_submit(l->limits->rl, &l->check);
}

/* ---- fire and forget ------------------------------------------------------- */

static void charged(struct hd_rl_check *c)
{
    free(c);
}

void hd_api_limit_charge(struct hd_exchange *x, enum hd_policy p, const char *key, size_t len)
{
    const struct hd_api_limits *limits = &hd_api_of(x)->limits;
    if (!limits->on[p])
        return;
    struct hd_rl_check *c = hd_calloc(1, sizeof(*c));
    c->cost = 1;
    c->n = 1;
    snprintf(c->items[0].policy, sizeof(c->items[0].policy), "%s", NAMES[p]);
    c->items[0].rule = limits->rules[p];
    set_key(&c->items[0], key, len);
    c->done = charged;
    hd_ratelimit_submit(limits->rl, c);
}

/* ---- routes ------------------------------------------------------------------ */

static void authed_continue(struct hd_exchange *x)
{
    ((struct hd_api_route *)hd_route_ctx(x))->handler(x);
}

/* Authenticated routes while the "authenticated" policy is on. */
static void authed_entry(struct hd_exchange *x)
{
    struct hd_api_caller who;
    if (!hd_api_authenticate(x, &who))
        return;
    struct hd_api_limit *l = hd_api_limit_new(x);
    hd_api_limit_add(l, HD_POLICY_AUTHENTICATED, who.claims.sub, strlen(who.claims.sub), false);
    hd_api_limit_run(x, l, authed_continue);
}

int hd_api_route(struct hd_api *api, struct hd_server *s, const char *method, const char *pattern,
                 hd_handler_fn handler, bool authenticated)
{
    struct hd_api_route *r = hd_calloc(1, sizeof(*r));
    r->api = api;
    r->handler = handler;
    r->next = api->routes;
    api->routes = r;
    bool limited = authenticated && api->limits.on[HD_POLICY_AUTHENTICATED];
    return hd_server_route(s, method, pattern, limited ? authed_entry : handler, r);
}

void hd_api_routes_free(struct hd_api *api)
{
    while (api->routes) {
        struct hd_api_route *r = api->routes;
        api->routes = r->next;
        free(r);
    }
}
