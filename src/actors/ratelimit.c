/* The rate-limit actor: owns the GCRA table, sweeps expired keys, counts
 * checks and denials per policy for /metrics. */
#include "herald/ratelimit.h"

#include "herald/actor.h"
#include "herald/buf.h"
#include "herald/core.h"
#include "herald/metrics.h"

#include <event2/event.h>
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

struct hd_ratelimit {
    struct hd_actor *actor;
    struct hd_gcra_table *table; /* actor thread only */
    struct event *sweep;
    struct policy_stats stats[HD_RL_MAX_POLICIES];
    size_t keys; /* atomic: table count after the last check or sweep */
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
    struct policy_stats *p = stats_of(rl, it->policy);
    __atomic_add_fetch(&p->checks, 1, __ATOMIC_RELAXED);
    if (!it->verdict.allowed)
        __atomic_add_fetch(&p->denied, 1, __ATOMIC_RELAXED);
}

static void on_check(void *ctx, struct hd_msg *m)
{
    struct hd_ratelimit *rl = ctx;
    struct hd_rl_check *c = HD_CONTAINER_OF(m, struct hd_rl_check, _msg);
    double now = monotonic_s();
    c->allowed = true;
    c->denied = -1;
    for (int i = 0; i < c->n && i < HD_RL_MAX_ITEMS; i++) {
        check_item(rl, &c->items[i], c->cost, now);
        if (!c->items[i].verdict.allowed && c->allowed) {
            c->allowed = false;
            c->denied = i;
        }
    }
    __atomic_store_n(&rl->keys, hd_gcra_table_count(rl->table), __ATOMIC_RELAXED);
    c->done(c);
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
}

static void on_stop(struct hd_actor *a)
{
    struct hd_ratelimit *rl = hd_actor_ctx(a);
    event_free(rl->sweep);
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
}

struct hd_ratelimit *hd_ratelimit_start(const struct hd_ratelimit_options *opts)
{
    struct hd_ratelimit *rl = hd_calloc(1, sizeof(*rl));
    rl->table = hd_gcra_table_new(opts->max_keys);
    if (!rl->table) {
        free(rl);
        return NULL;
    }
    struct hd_actor_spec spec = {.name = "ratelimit",
                                 .on_message = on_check,
                                 .on_start = on_start,
                                 .on_stop = on_stop,
                                 .ctx = rl};
    rl->actor = hd_actor_start(&spec);
    if (!rl->actor) {
        hd_gcra_table_free(rl->table);
        free(rl);
        return NULL;
    }
    hd_metrics_register(collect, rl);
    return rl;
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
    hd_gcra_table_free(rl->table);
    free(rl);
}
