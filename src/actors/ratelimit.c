/* The rate-limit actor: owns the GCRA table, sweeps expired keys, counts
 * checks and denials per policy for /metrics. With a Redis URL it hands
 * every check to the Redis client (ratelimit_redis.c) and answers by the
 * redis_down fallback whenever Redis cannot. */
#include "herald/ratelimit.h"

#include "actors/ratelimit_redis.h"
#include "herald/actor.h"
#include "herald/buf.h"
#include "herald/core.h"
#include "herald/health.h"
#include "herald/log.h"
#include "herald/metrics.h"

#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SWEEP_EVERY_S 10

struct policy_stats {
    char name[HD_RL_POLICY_MAX]; /* written once, before `used` is published */
    bool used;                   /* atomic (release/acquire) */
    uint64_t checks;             /* atomic */
    uint64_t denied;             /* atomic */
};

static const char *const MODE_NAMES[] = {
    [HD_RL_REDIS_DOWN_LOCAL] = "local",
    [HD_RL_REDIS_DOWN_ALLOW] = "allow",
    [HD_RL_REDIS_DOWN_DENY] = "deny",
};
#define N_MODES HD_ARRAY_LEN(MODE_NAMES)

struct hd_ratelimit {
    struct hd_actor *actor;
    struct hd_gcra_table *table; /* actor thread only */
    struct event *sweep;
    struct hd__rl_redis *redis; /* NULL: local only; set before the actor starts */
    enum hd_rl_redis_down redis_down;
    bool outage; /* actor thread: Redis reported down, not back yet */
    struct policy_stats stats[HD_RL_MAX_POLICIES];
    size_t keys;                /* atomic: table count after the last check or sweep */
    uint64_t fallback[N_MODES]; /* atomic: checks answered by the fallback, by mode */
};

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Actor thread: the stats slot of @policy (the last slot absorbs overflow). */
static struct policy_stats *stats_of(struct hd_ratelimit *rl, const char *policy)
{
    for (int i = 0; i < HD_RL_MAX_POLICIES; i++) {
        struct policy_stats *p = &rl->stats[i];
        if (!__atomic_load_n(&p->used, __ATOMIC_ACQUIRE)) {
            snprintf(p->name, sizeof(p->name), "%s", policy);
            __atomic_store_n(&p->used, true, __ATOMIC_RELEASE);
            return p;
        }
        if (strcmp(p->name, policy) == 0)
            return p;
    }
    return &rl->stats[HD_RL_MAX_POLICIES - 1];
}

/* A zero-cost look, turned into "would one more unit be allowed now". */
static void peek(struct hd_gcra_table *t, const char *key, size_t len,
                 const struct hd_gcra_rule *rule, double now, struct hd_gcra_verdict *v)
{
    hd_gcra_check(t, key, len, rule, 0, now, v);
    v->allowed = v->remaining >= 1;
    if (!v->allowed) {
        /* remaining 0: the key is ahead by reset_s > T * burst; one unit
         * fits again once it is ahead by at most T * burst. */
        double T = (double)rule->window_s / rule->limit;
        double wait = v->reset_s - T * rule->burst;
        v->retry_after_s = wait > 1e-6 ? wait : 1e-6;
    }
}

static void check_item(struct hd_ratelimit *rl, struct hd_rl_item *it, int cost, double now)
{
    char key[HD_RL_POLICY_MAX + 1 + HD_RL_KEY_MAX];
    size_t plen = strnlen(it->policy, sizeof(it->policy));
    size_t klen = it->key_len < HD_RL_KEY_MAX ? it->key_len : HD_RL_KEY_MAX;
    memcpy(key, it->policy, plen); /* one key space per policy */
    key[plen] = ':';
    memcpy(key + plen + 1, it->key, klen);
    if (it->peek) {
        peek(rl->table, key, plen + 1 + klen, &it->rule, now, &it->verdict);
    } else {
        hd_gcra_check(rl->table, key, plen + 1 + klen, &it->rule, cost, now, &it->verdict);
    }
}

static void decide_local(struct hd_ratelimit *rl, struct hd_rl_check *c)
{
    double now = monotonic_s();
    for (int i = 0; i < c->n; i++)
        check_item(rl, &c->items[i], c->cost, now);
}

/* The verdicts of the allow and deny fallbacks: what a fresh key would
 * report after the charge, or a denial to retry in a second. */
static void decide_fixed(struct hd_rl_check *c, bool allow)
{
    for (int i = 0; i < c->n; i++) {
        struct hd_rl_item *it = &c->items[i];
        int left = it->rule.burst + 1 - (it->peek ? 0 : c->cost);
        it->verdict = (struct hd_gcra_verdict){
            .allowed = allow,
            .limit = it->rule.limit,
            .remaining = allow && left > 0 ? left : 0,
            .reset_s = allow ? 0 : 1,
            .retry_after_s = allow ? 0 : 1,
        };
    }
}

/* Every path ends here: the check's summary, the per-policy counts, done. */
static void finish(struct hd_ratelimit *rl, struct hd_rl_check *c, enum hd_rl_decided_by by)
{
    c->decided_by = by;
    c->allowed = true;
    c->denied = -1;
    for (int i = 0; i < c->n; i++) {
        struct hd_rl_item *it = &c->items[i];
        struct policy_stats *p = stats_of(rl, it->policy);
        __atomic_add_fetch(&p->checks, 1, __ATOMIC_RELAXED);
        if (it->verdict.allowed)
            continue;
        __atomic_add_fetch(&p->denied, 1, __ATOMIC_RELAXED);
        if (c->allowed) {
            c->allowed = false;
            c->denied = i;
        }
    }
    __atomic_store_n(&rl->keys, hd_gcra_table_count(rl->table), __ATOMIC_RELAXED);
    c->done(c);
}

static void answer_fallback(struct hd_ratelimit *rl, struct hd_rl_check *c)
{
    __atomic_add_fetch(&rl->fallback[rl->redis_down], 1, __ATOMIC_RELAXED);
    if (rl->redis_down == HD_RL_REDIS_DOWN_LOCAL)
        decide_local(rl, c);
    else
        decide_fixed(c, rl->redis_down == HD_RL_REDIS_DOWN_ALLOW);
    finish(rl, c, HD_RL_BY_FALLBACK);
}

static void on_check(void *ctx, struct hd_msg *m)
{
    struct hd_ratelimit *rl = ctx;
    struct hd_rl_check *c = HD_CONTAINER_OF(m, struct hd_rl_check, _msg);
    if (!rl->redis) {
        decide_local(rl, c);
        finish(rl, c, HD_RL_BY_LOCAL);
    } else if (!hd__rl_redis_submit(rl->redis, c)) {
        answer_fallback(rl, c); /* Redis down: never wait for it */
    }
}

/* The Redis client's answer to a check it accepted. */
static void on_redis_reply(void *ctx, struct hd_rl_check *c, bool ok)
{
    struct hd_ratelimit *rl = ctx;
    if (ok)
        finish(rl, c, HD_RL_BY_REDIS);
    else
        answer_fallback(rl, c);
}

/* /readyz: see the decision in ratelimit.h. */
static void report_health(struct hd_ratelimit *rl, bool up)
{
    char detail[160];
    const char *target = hd__rl_redis_target(rl->redis);
    if (up) {
        snprintf(detail, sizeof(detail), "connected to %s", target);
        hd_health_set("redis", true, detail);
        return;
    }
    switch (rl->redis_down) {
    case HD_RL_REDIS_DOWN_LOCAL:
        hd_health_set_degraded("redis", "unreachable: rate limits use the local fallback");
        break;
    case HD_RL_REDIS_DOWN_ALLOW:
        hd_health_set_degraded("redis", "unreachable: rate limits are not enforced (allow "
                                        "fallback)");
        break;
    default:
        hd_health_set("redis", false,
                      "unreachable: every rate-limited request is denied (deny fallback)");
        break;
    }
}

static void on_redis_state(void *ctx, bool up, const char *reason)
{
    struct hd_ratelimit *rl = ctx;
    const char *target = hd__rl_redis_target(rl->redis);
    if (up) {
        hd_log(HD_LOG_INFO,
               rl->outage ? "ratelimit: redis reachable again" : "ratelimit: redis connected",
               "redis", target, NULL);
        rl->outage = false;
    } else {
        char msg[80];
        snprintf(msg, sizeof(msg), "ratelimit: redis unreachable, using %s fallback",
                 MODE_NAMES[rl->redis_down]);
        hd_log(HD_LOG_WARN, msg, "redis", target, "reason", reason ? reason : "", NULL);
        rl->outage = true;
    }
    report_health(rl, up); /* the reason is in the log line */
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct hd_ratelimit *rl = arg;
    hd_gcra_table_sweep(rl->table, monotonic_s());
    __atomic_store_n(&rl->keys, hd_gcra_table_count(rl->table), __ATOMIC_RELAXED);
}

static void on_start(struct hd_actor *a)
{
    struct hd_ratelimit *rl = hd_actor_ctx(a);
    rl->sweep = event_new(hd_actor_base(a), -1, EV_PERSIST, on_sweep, rl);
    struct timeval every = {SWEEP_EVERY_S, 0};
    event_add(rl->sweep, &every);
    if (rl->redis) {
        /* hiredis writes with write(2): a peer that went away must give
         * EPIPE here, not kill a process that did not ignore SIGPIPE. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        hd__rl_redis_start(rl->redis, hd_actor_base(a));
    }
}

static void on_stop(struct hd_actor *a)
{
    struct hd_ratelimit *rl = hd_actor_ctx(a);
    if (rl->redis)
        hd__rl_redis_stop(rl->redis); /* pending checks answered by the fallback */
    event_free(rl->sweep);
}

static void collect_redis(struct hd_ratelimit *rl, struct hd_buf *out)
{
    hd__rl_redis_collect(rl->redis, out);
    hd_buf_puts(out, "# HELP herald_ratelimit_redis_fallback_total Rate-limit checks answered "
                     "by the redis_down fallback.\n"
                     "# TYPE herald_ratelimit_redis_fallback_total counter\n");
    for (size_t i = 0; i < N_MODES; i++)
        hd_buf_appendf(out, "herald_ratelimit_redis_fallback_total{mode=\"%s\"} %llu\n",
                       MODE_NAMES[i],
                       (unsigned long long)__atomic_load_n(&rl->fallback[i], __ATOMIC_RELAXED));
}

static void collect(void *ctx, struct hd_buf *out)
{
    struct hd_ratelimit *rl = ctx;
    hd_buf_puts(out, "# HELP herald_ratelimit_checks_total Rate-limit checks by policy and "
                     "result.\n# TYPE herald_ratelimit_checks_total counter\n");
    for (int i = 0; i < HD_RL_MAX_POLICIES; i++) {
        struct policy_stats *p = &rl->stats[i];
        if (!__atomic_load_n(&p->used, __ATOMIC_ACQUIRE))
            break;
        uint64_t checks = __atomic_load_n(&p->checks, __ATOMIC_RELAXED);
        uint64_t denied = __atomic_load_n(&p->denied, __ATOMIC_RELAXED);
        hd_buf_appendf(out,
                       "herald_ratelimit_checks_total{policy=\"%s\",result=\"allowed\"} %llu\n"
                       "herald_ratelimit_checks_total{policy=\"%s\",result=\"denied\"} %llu\n",
                       p->name, (unsigned long long)(checks - denied), p->name,
                       (unsigned long long)denied);
    }
    hd_buf_appendf(out,
                   "# HELP herald_ratelimit_keys Keys held by the local limiter.\n"
                   "# TYPE herald_ratelimit_keys gauge\nherald_ratelimit_keys %zu\n",
                   __atomic_load_n(&rl->keys, __ATOMIC_RELAXED));
    if (rl->redis)
        collect_redis(rl, out);
}

/* Main thread: the Redis client for opts->redis_url, or NULL with *bad set
 * when the URL is malformed (logged without the URL: it may hold a password). */
static struct hd__rl_redis *redis_new(struct hd_ratelimit *rl,
                                      const struct hd_ratelimit_options *opts, bool *bad)
{
    *bad = false;
    if (!opts->redis_url || !opts->redis_url[0])
        return NULL;
    struct hd__rl_redis_url url;
    const char *why = NULL;
    if (hd__rl_redis_url_parse(opts->redis_url, &url, &why) < 0) {
        hd_log(HD_LOG_ERROR, "ratelimit: bad redis URL", "key", "redis.url", "error", why, NULL);
        *bad = true;
        return NULL;
    }
    struct hd__rl_redis *r = hd__rl_redis_new(&url, on_redis_reply, on_redis_state, rl);
    explicit_bzero(url.password, sizeof(url.password));
    return r;
}

struct hd_ratelimit *hd_ratelimit_start(const struct hd_ratelimit_options *opts)
{
    struct hd_ratelimit *rl = hd_calloc(1, sizeof(*rl));
    bool bad_url;
    rl->redis_down = (size_t)opts->redis_down < N_MODES ? opts->redis_down : HD_RL_REDIS_DOWN_LOCAL;
    rl->table = hd_gcra_table_new(opts->max_keys);
    if (!rl->table)
        goto err;
    rl->redis = redis_new(rl, opts, &bad_url);
    if (bad_url)
        goto err;
    if (rl->redis)
        hd_health_set("redis", true, "connecting");
    struct hd_actor_spec spec = {.name = "ratelimit",
                                 .on_message = on_check,
                                 .on_start = on_start,
                                 .on_stop = on_stop,
                                 .ctx = rl};
    rl->actor = hd_actor_start(&spec);
    if (!rl->actor)
        goto err;
    hd_metrics_register(collect, rl);
    return rl;
err:
    hd__rl_redis_free(rl->redis);
    hd_gcra_table_free(rl->table);
    free(rl);
    return NULL;
}

bool hd_ratelimit_redis_up(const struct hd_ratelimit *rl)
{
    return rl->redis && hd__rl_redis_up(rl->redis);
}

void hd_ratelimit_submit(struct hd_ratelimit *rl, struct hd_rl_check *check)
{
    HD_ASSERT(check->done && check->n > 0 && check->n <= HD_RL_MAX_ITEMS);
    hd_actor_post(rl->actor, &check->_msg);
}

void hd_ratelimit_stop(struct hd_ratelimit *rl)
{
    if (!rl)
        return;
    hd_metrics_unregister(collect, rl);
    hd_actor_stop(rl->actor);
    hd__rl_redis_free(rl->redis);
    hd_gcra_table_free(rl->table);
    free(rl);
}
