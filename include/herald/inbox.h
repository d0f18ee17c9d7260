/* An inbox: a wait-free multi-producer queue (liburcu cds_wfcq) drained by
 * the one thread that runs its event_base, woken through an eventfd that is
 * written only when the queue goes from empty to non-empty, so a burst of
 * posts costs one wake-up. Actors and I/O threads each own one. */
#ifndef HERALD_INBOX_H
#define HERALD_INBOX_H

#include <stddef.h>
#include <stdint.h>
#include <urcu/wfcqueue.h>

struct event_base;

/** The header of every message. A message posted to an inbox belongs to the
 * receiver, which frees it (or hands it on). Embed as the first member. */
struct hd_msg {
    struct cds_wfcq_node _node;
    uint32_t type; /* meaning is private to the receiver's protocol */
};

/** Receives one message on the inbox's thread; takes ownership of @msg. */
typedef void (*hd_inbox_fn)(void *ctx, struct hd_msg *msg);

struct hd_inbox;

/**
 * Creates an inbox whose messages are handed to @fn on the thread that runs
 * @base (borrowed; must outlive the inbox). @name labels metrics. Returns NULL
 * when the eventfd cannot be created (errno set).
 */
struct hd_inbox *hd_inbox_new(struct event_base *base, const char *name, hd_inbox_fn fn, void *ctx);

/** Posts @msg (ownership passes to the receiver). Any thread; never blocks. */
void hd_inbox_post(struct hd_inbox *inbox, struct hd_msg *msg);

/**
 * Makes this thread's posts defer their eventfd wake-ups until
 * hd_inbox_flush_wakes(): a thread that posts many messages per event-loop
 * iteration (an I/O thread, an actor) then wakes each receiver once per
 * iteration instead of once per message. Call once on the thread.
 */
void hd_inbox_defer_wakes(void);

/** Writes the wake-ups this thread deferred. Call after every event-loop
 * iteration of a thread that called hd_inbox_defer_wakes. */
void hd_inbox_flush_wakes(void);

/**
 * Runs @base until event_base_loopbreak, flushing deferred wake-ups after
 * each iteration. The loop of every I/O and actor thread. Returns 0, or -1
 * when libevent failed.
 */
int hd_inbox_run_loop(struct event_base *base);

/** Messages posted and not yet handed to the receiver. Any thread. */
size_t hd_inbox_depth(const struct hd_inbox *inbox);

/** The @name given at creation. */
const char *hd_inbox_name(const struct hd_inbox *inbox);

/**
 * Hands every queued message to the receiver now. Owner thread only; used at
 * shutdown after producers have stopped. Returns how many were delivered.
 */
size_t hd_inbox_drain(struct hd_inbox *inbox);

/** Frees the inbox; call on the owner thread after producers have stopped and
 * the inbox was drained (undelivered messages would leak). NULL is fine. */
void hd_inbox_free(struct hd_inbox *inbox);

/** Calls @fn for every live inbox (for /metrics). Any thread. */
void hd_inbox_foreach(void (*fn)(void *arg, const struct hd_inbox *inbox), void *arg);

#endif
