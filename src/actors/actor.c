#include "herald/actor.h"

#include "herald/core.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu.h>

#define ACTOR_MSG_STOP UINT32_MAX /* reserved; never a protocol message */

struct hd_actor {
    struct hd_actor_spec _spec;
    char _name[32]; /* _spec.name points here: the caller's may be on its stack */
    struct event_base *_base;
    struct hd_inbox *_inbox;
    pthread_t _thread;
    pthread_mutex_t _ready_lock; /* start-up hand-shake only */
    pthread_cond_t _ready;
    bool _started;
};

static void on_message(void *ctx, struct hd_msg *m)
{
    struct hd_actor *a = ctx;
    if (m->type == ACTOR_MSG_STOP) {
        free(m);
        event_base_loopbreak(a->_base);
        return;
    }
    a->_spec.on_message(a->_spec.ctx, m);
}

static void *actor_main(void *arg)
{
    struct hd_actor *a = arg;
    char name[16];
    snprintf(name, sizeof(name), "%s", a->_spec.name);
    pthread_setname_np(pthread_self(), name);
    rcu_register_thread();
    if (a->_spec.on_start)
        a->_spec.on_start(a);
    pthread_mutex_lock(&a->_ready_lock);
    a->_started = true;
    pthread_cond_signal(&a->_ready);
    pthread_mutex_unlock(&a->_ready_lock);
    hd_inbox_defer_wakes();
    hd_inbox_run_loop(a->_base);
    hd_inbox_drain(a->_inbox); /* messages posted before the stop */
    if (a->_spec.on_stop)
        a->_spec.on_stop(a);
    hd_inbox_flush_wakes(); /* replies posted by the last messages */
    rcu_unregister_thread();
    return NULL;
}

struct hd_actor *hd_actor_start(const struct hd_actor_spec *spec)
{
    struct hd_actor *a = hd_calloc(1, sizeof(*a));
    a->_spec = *spec;
    snprintf(a->_name, sizeof(a->_name), "%s", spec->name);
    a->_spec.name = a->_name;
    a->_base = event_base_new();
    if (!a->_base)
        goto err;
    a->_inbox = hd_inbox_new(a->_base, spec->name, on_message, a);
    if (!a->_inbox)
        goto err;
    pthread_mutex_init(&a->_ready_lock, NULL);
    pthread_cond_init(&a->_ready, NULL);
    int rc = pthread_create(&a->_thread, NULL, actor_main, a);
    if (rc != 0) {
        errno = rc;
        goto err;
    }
    pthread_mutex_lock(&a->_ready_lock);
    while (!a->_started)
        pthread_cond_wait(&a->_ready, &a->_ready_lock);
    pthread_mutex_unlock(&a->_ready_lock);
    return a;
err:
    hd_inbox_free(a->_inbox);
    if (a->_base)
        event_base_free(a->_base);
    free(a);
    return NULL;
}

void hd_actor_post(struct hd_actor *a, struct hd_msg *msg)
{
    hd_inbox_post(a->_inbox, msg);
}

struct event_base *hd_actor_base(struct hd_actor *a)
{
    return a->_base;
}

void *hd_actor_ctx(struct hd_actor *a)
{
    return a->_spec.ctx;
}

void hd_actor_stop(struct hd_actor *a)
{
    if (!a)
        return;
    struct hd_msg *stop = hd_calloc(1, sizeof(*stop));
    stop->type = ACTOR_MSG_STOP;
    hd_inbox_post(a->_inbox, stop);
    pthread_join(a->_thread, NULL);
    hd_inbox_free(a->_inbox);
    event_base_free(a->_base);
    pthread_mutex_destroy(&a->_ready_lock);
    pthread_cond_destroy(&a->_ready);
    free(a);
}
