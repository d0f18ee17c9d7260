/* The inbox under many producers and one consumer: every message arrives
 * exactly once, in per-producer order, and the eventfd wake-up is never lost. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

#include "herald/actor.h"
#include "herald/core.h"
#include "herald/inbox.h"

#define PRODUCERS    8
#define PER_PRODUCER 20000

struct num_msg {
    struct hd_msg msg;
    int producer;
    int seq;
};

struct consumer {
    unsigned char *seen; /* PRODUCERS * PER_PRODUCER flags */
    int next_seq[PRODUCERS];
    long received;
    long duplicates;
    long out_of_order;
    struct event_base *base;
};

static void on_num(void *ctx, struct hd_msg *m)
{
    struct consumer *c = ctx;
    struct num_msg *n = (struct num_msg *)m;
    size_t idx = (size_t)n->producer * PER_PRODUCER + (size_t)n->seq;
    if (c->seen[idx])
        c->duplicates++;
    c->seen[idx] = 1;
    if (n->seq != c->next_seq[n->producer])
        c->out_of_order++;
    c->next_seq[n->producer] = n->seq + 1;
    c->received++;
    free(n);
    if (c->received == (long)PRODUCERS * PER_PRODUCER)
        event_base_loopbreak(c->base);
}

struct producer_arg {
    struct hd_inbox *inbox;
    int id;
};

static void *produce(void *arg)
{
    struct producer_arg *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct num_msg *m = hd_malloc(sizeof(*m));
        m->msg.type = 1;
        m->producer = p->id;
        m->seq = i;
        hd_inbox_post(p->inbox, &m->msg);
    }
    return NULL;
}

Test(inbox, many_producers_one_consumer_no_loss_no_duplicate, .timeout = 120)
{
    struct consumer c = {0};
    c.seen = hd_calloc(PRODUCERS * PER_PRODUCER, 1);
    c.base = event_base_new();
    struct hd_inbox *inbox = hd_inbox_new(c.base, "test", on_num, &c);
    cr_assert_not_null(inbox);

    pthread_t threads[PRODUCERS];
    struct producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (struct producer_arg){inbox, i};
        cr_assert_eq(pthread_create(&threads[i], NULL, produce, &args[i]), 0);
    }
    /* The consumer runs here, woken only through the eventfd. */
    event_base_dispatch(c.base);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(threads[i], NULL);

    cr_expect_eq(c.received, (long)PRODUCERS * PER_PRODUCER);
    cr_expect_eq(c.duplicates, 0);
    cr_expect_eq(c.out_of_order, 0);
    long missing = 0;
    for (size_t i = 0; i < (size_t)PRODUCERS * PER_PRODUCER; i++)
        missing += !c.seen[i];
    cr_expect_eq(missing, 0);
    cr_expect_eq(hd_inbox_depth(inbox), 0);
    hd_inbox_free(inbox);
    event_base_free(c.base);
    free(c.seen);
}

/* An actor thread drains messages posted from several threads, and stop
 * delivers everything posted before it. */
struct counter {
    long count;
};

static void on_count(void *ctx, struct hd_msg *m)
{
    struct counter *c = ctx;
    c->count++; /* actor thread only */
    free(m);
}

struct poster_arg {
    struct hd_actor *actor;
};

static void *post_many(void *arg)
{
    struct poster_arg *p = arg;
    for (int i = 0; i < 20000; i++) {
        struct hd_msg *m = hd_calloc(1, sizeof(*m));
        m->type = 7;
        hd_actor_post(p->actor, m);
    }
    return NULL;
}

Test(actor, stop_delivers_every_message_posted_before_it, .timeout = 60)
{
    struct counter c = {0};
    struct hd_actor_spec spec = {.name = "count", .on_message = on_count, .ctx = &c};
    struct hd_actor *a = hd_actor_start(&spec);
    cr_assert_not_null(a);
    pthread_t t[4];
    struct poster_arg arg = {a};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, post_many, &arg);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    hd_actor_stop(a); /* joins the actor thread: c.count is final */
    cr_expect_eq(c.count, 4 * 20000);
}

/* A wake-up that races with the consumer's drain is not lost: one message
 * posted at a time, each waited for, many times over. */
struct pingpong {
    struct event_base *base;
    long got;
};

static void on_ping(void *ctx, struct hd_msg *m)
{
    struct pingpong *p = ctx;
    if (m->type == 99) /* stop: sent through the inbox, the only cross-thread path */
        event_base_loopbreak(p->base);
    else
        __atomic_add_fetch(&p->got, 1, __ATOMIC_RELEASE);
    free(m);
}

static void *ping_loop(void *arg)
{
    struct pingpong *p = arg;
    event_base_dispatch(p->base);
    return NULL;
}

Test(inbox, single_posts_always_wake_the_consumer, .timeout = 60)
{
    struct pingpong p = {0};
    p.base = event_base_new();
    struct hd_inbox *inbox = hd_inbox_new(p.base, "ping", on_ping, &p);
    cr_assert_not_null(inbox);
    pthread_t t;
    pthread_create(&t, NULL, ping_loop, &p);
    for (long i = 1; i <= 20000; i++) {
        hd_inbox_post(inbox, hd_calloc(1, sizeof(struct hd_msg)));
        uint64_t deadline = hd_now_ms() + 5000;
        while (__atomic_load_n(&p.got, __ATOMIC_ACQUIRE) < i && hd_now_ms() < deadline)
            ;
        cr_assert_eq(__atomic_load_n(&p.got, __ATOMIC_ACQUIRE), i, "message %ld not delivered", i);
    }
    struct hd_msg *stop = hd_calloc(1, sizeof(*stop));
    stop->type = 99;
    hd_inbox_post(inbox, stop);
    pthread_join(t, NULL);
    hd_inbox_free(inbox);
    event_base_free(p.base);
}
