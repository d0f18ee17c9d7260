/* An actor: one thread with its own event_base (timers, sockets) and an
 * inbox. It owns its state; other threads reach it only by posting
 * messages. The thread is registered with RCU for its whole life. */
#ifndef HERALD_ACTOR_H
#define HERALD_ACTOR_H

#include "herald/inbox.h"

struct event_base;
struct hd_actor;

struct hd_actor_spec {
    const char *name;                     /* thread and metrics name */
    hd_inbox_fn on_message;               /* on the actor thread; owns msg */
    void (*on_start)(struct hd_actor *a); /* on the actor thread, before messages; may be NULL */
    void (*on_stop)(struct hd_actor *a);  /* on the actor thread, after the last message */
    void *ctx;                            /* borrowed; passed to on_message */
};

/**
 * Creates and starts an actor. Returns NULL (errno set) when the thread or
 * its event_base cannot be created. @spec is copied.
 */
struct hd_actor *hd_actor_start(const struct hd_actor_spec *spec);

/** Posts @msg to the actor (ownership passes to it). Any thread. */
void hd_actor_post(struct hd_actor *a, struct hd_msg *msg);

/** The actor's event_base: only for use on the actor's own thread. */
struct event_base *hd_actor_base(struct hd_actor *a);

/** The ctx from the spec. */
void *hd_actor_ctx(struct hd_actor *a);

/**
 * Stops the actor: messages already posted are still delivered, then
 * on_stop runs and the thread exits; joins it and frees the actor. Producers
 * must have stopped posting. NULL is fine. Not from the actor's own thread.
 */
void hd_actor_stop(struct hd_actor *a);

#endif
