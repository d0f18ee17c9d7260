/* The rate-limit actor: verdicts come back once per check, from any number
 * of posting threads; a burst is allowed exactly, then denied with a retry
 * time; items of one check are independent keys per policy. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>

#include "herald/metrics.h"
#include "herald/buf.h"
#include "herald/ratelimit.h"

static void post_sem(struct hd_rl_check *c)
{
    sem_post(c->ctx);
}

/* Runs one check of @n items synchronously. */
static void run(struct hd_ratelimit *rl, struct hd_rl_check *c)
{
    sem_t sem;
    sem_init(&sem, 0, 0);
    c->ctx = &sem;
    c->done = post_sem;
    hd_ratelimit_submit(rl, c);
    sem_wait(&sem);
    sem_destroy(&sem);
}

static void item(struct hd_rl_check *c, const char *policy, const char *key, int limit, int window,
                 int burst)
{
    struct hd_rl_item *it = &c->items[c->n++];
    snprintf(it->policy, sizeof(it->policy), "%s", policy);
    snprintf(it->key, sizeof(it->key), "%s", key);
    it->key_len = strlen(key);
    it->rule = (struct hd_gcra_rule){limit, window, burst};
}

Test(ratelimit, burst_is_allowed_then_denied_with_retry_after, .timeout = 30)
{
    struct hd_ratelimit *rl = hd_ratelimit_start(&(struct hd_ratelimit_options){.max_keys = 1000});
    cr_assert_not_null(rl);
    int allowed = 0;
    double retry = 0;
    for (int i = 0; i < 10; i++) {
        struct hd_rl_check c = {.cost = 1};
        item(&c, "login_ip", "192.0.2.1", 10, 60, 5); /* 10/min, burst 5 */
        run(rl, &c);
        if (c.allowed)
            allowed++;
        else
            retry = c.items[0].verdict.retry_after_s;
        cr_expect_eq(c.denied, c.allowed ? -1 : 0);
        cr_expect_eq(c.decided_by, HD_RL_BY_LOCAL);
    }
    cr_expect_eq(allowed, 6, "burst 5 allows 6 at once, got %d", allowed);
    cr_expect(retry > 0 && retry <= 6.0, "retry after %f s", retry);
    hd_ratelimit_stop(rl);
}

Test(ratelimit, items_and_policies_are_separate_keys, .timeout = 30)
{
    struct hd_ratelimit *rl = hd_ratelimit_start(&(struct hd_ratelimit_options){.max_keys = 1000});
    cr_assert_not_null(rl);
    for (int i = 0; i < 2; i++) { /* burst 0: one each */
        struct hd_rl_check c = {.cost = 1};
        item(&c, "a", "k", 1, 60, 0);
        item(&c, "b", "k", 1, 60, 0); /* same key text, other policy */
        run(rl, &c);
        cr_expect_eq(c.allowed, i == 0, "round %d", i);
        cr_expect_eq(c.items[1].verdict.allowed, i == 0, "round %d", i);
    }
    struct hd_buf m = {0};
    hd_metrics_render(&m);
    cr_expect(strstr(m.data, "herald_ratelimit_checks_total{policy=\"a\",result=\"denied\"} 1"),
              "%s", m.data);
    cr_expect(strstr(m.data, "herald_ratelimit_keys 2"), "%s", m.data);
    cr_expect(!strstr(m.data, "herald_ratelimit_redis"), "no Redis, no Redis metrics: %s", m.data);
    cr_expect(!hd_ratelimit_redis_up(rl));
    hd_buf_free(&m);
    hd_ratelimit_stop(rl);
}

struct poster {
    struct hd_ratelimit *rl;
    int id;
    int allowed;
};

static void *post_many(void *arg)
{
    struct poster *p = arg;
    for (int i = 0; i < 200; i++) {
        struct hd_rl_check c = {.cost = 1};
        char key[32];
        snprintf(key, sizeof(key), "shared");
        item(&c, "stream_ip", key, 100, 3600, 49); /* at most 50 in total at once */
        run(p->rl, &c);
        p->allowed += c.allowed;
    }
    return NULL;
}

Test(ratelimit, posters_on_many_threads_share_one_budget, .timeout = 60)
{
    struct hd_ratelimit *rl = hd_ratelimit_start(&(struct hd_ratelimit_options){.max_keys = 1000});
    cr_assert_not_null(rl);
    pthread_t t[4];
    struct poster p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (struct poster){rl, i, 0};
        pthread_create(&t[i], NULL, post_many, &p[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += p[i].allowed;
    }
    /* 800 tries within far less than one emission interval (36 s): the
     * burst (50), maybe one more as time passes, never more. */
    cr_expect(total >= 50 && total <= 51, "allowed %d of 800", total);
    hd_ratelimit_stop(rl);
}

Test(ratelimit, peek_reports_without_charging, .timeout = 30)
{
    struct hd_ratelimit *rl = hd_ratelimit_start(&(struct hd_ratelimit_options){.max_keys = 1000});
    cr_assert_not_null(rl);
    /* Peeks never spend: 20 looks at a 1/min burst 1 budget are all allowed. */
    for (int i = 0; i < 20; i++) {
        struct hd_rl_check c = {.cost = 1};
        item(&c, "login_account", "a@example.com", 1, 60, 1);
        c.items[0].peek = true;
        run(rl, &c);
        cr_assert(c.allowed, "peek %d was denied", i);
        cr_assert_eq(c.items[0].verdict.remaining, 2);
    }
    /* Two charges use the burst; the next peek says no and when. */
    for (int i = 0; i < 2; i++) {
        struct hd_rl_check c = {.cost = 1};
        item(&c, "login_account", "a@example.com", 1, 60, 1);
        run(rl, &c);
        cr_assert(c.allowed);
    }
    struct hd_rl_check c = {.cost = 1};
    item(&c, "login_account", "a@example.com", 1, 60, 1);
    c.items[0].peek = true;
    run(rl, &c);
    cr_expect(!c.allowed);
    cr_expect_eq(c.denied, 0);
    double retry = c.items[0].verdict.retry_after_s;
    cr_expect(retry > 59.0 && retry <= 60.0, "retry after %f s, want ~60", retry);
    /* The matching charge is denied with the same wait. */
    struct hd_rl_check d = {.cost = 1};
    item(&d, "login_account", "a@example.com", 1, 60, 1);
    run(rl, &d);
    cr_expect(!d.allowed);
    cr_expect(d.items[0].verdict.retry_after_s > retry - 0.5 &&
                  d.items[0].verdict.retry_after_s <= retry,
              "charge retry %f vs peek %f", d.items[0].verdict.retry_after_s, retry);
    hd_ratelimit_stop(rl);
}
