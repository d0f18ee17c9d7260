#include "herald/inbox.h"

#include "herald/core.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* liburcu 0.13 publishes queue nodes with inline-asm atomics that
 * ThreadSanitizer cannot see, so it would miss the happens-before edge from
 * a post to its delivery. State that edge explicitly; the queue's own
 * internal accesses are listed in tests/tsan.supp. */
#include "core/tsan.h"
#define HB_RELEASE(addr) HD_TSAN_RELEASE(addr)
#define HB_ACQUIRE(addr) HD_TSAN_ACQUIRE(addr)

struct hd_inbox {
    struct cds_wfcq_head _head;
    struct cds_wfcq_tail _tail;
    int _efd;
    struct event *_ev;
    hd_inbox_fn _fn;
    void *_ctx;
    size_t _depth; /* atomic: posted minus delivered */
    char _name[32];
    struct hd_inbox *_next; /* registry link, guarded by registry_lock */
};

/* Registry of live inboxes for /metrics. Touched at creation/free and by the
 * metrics scrape only: never on a hot path. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hd_inbox *registry;

/* Wake-ups deferred by this thread (hd_inbox_defer_wakes). */
#define MAX_DEFERRED 32
struct deferred_wakes {
    bool enabled;
    int n;
    struct hd_inbox *inboxes[MAX_DEFERRED];
};
static __thread struct deferred_wakes deferred;

static void wake(struct hd_inbox *inbox)
{
    uint64_t one = 1;
    ssize_t w = write(inbox->_efd, &one, sizeof(one));
    HD_ASSERT(w == sizeof(one)); /* an eventfd counter cannot overflow here */
}

void hd_inbox_defer_wakes(void)
{
    deferred.enabled = true;
}

void hd_inbox_flush_wakes(void)
{
    for (int i = 0; i < deferred.n; i++)
        wake(deferred.inboxes[i]);
    deferred.n = 0;
}

int hd_inbox_run_loop(struct event_base *base)
{
    for (;;) {
        int rc = event_base_loop(base, EVLOOP_ONCE);
        hd_inbox_flush_wakes();
        if (rc < 0)
            return -1;
        if (event_base_got_break(base) || rc == 1)
            return 0;
    }
}

static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct hd_inbox *inbox = arg;
    uint64_t n;
    /* Reset the eventfd before splicing: a post that lands after the splice
     * found the queue empty and writes the eventfd again. */
    ssize_t r = read(fd, &n, sizeof(n));
    (void)r; /* EAGAIN: a spurious wake-up, nothing to reset */
    hd_inbox_drain(inbox);
}

struct hd_inbox *hd_inbox_new(struct event_base *base, const char *name, hd_inbox_fn fn, void *ctx)
{
    struct hd_inbox *inbox = hd_calloc(1, sizeof(*inbox));
    cds_wfcq_init(&inbox->_head, &inbox->_tail);
    inbox->_fn = fn;
    inbox->_ctx = ctx;
    snprintf(inbox->_name, sizeof(inbox->_name), "%s", name);
    inbox->_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (inbox->_efd < 0)
        goto err;
    inbox->_ev = event_new(base, inbox->_efd, EV_READ | EV_PERSIST, on_wakeup, inbox);
    if (!inbox->_ev || event_add(inbox->_ev, NULL) < 0)
        goto err;
    pthread_mutex_lock(&registry_lock);
    inbox->_next = registry;
    registry = inbox;
    pthread_mutex_unlock(&registry_lock);
    return inbox;
err : {
    int saved = errno;
    if (inbox->_ev)
        event_free(inbox->_ev);
    if (inbox->_efd >= 0)
        close(inbox->_efd);
    free(inbox);
    errno = saved ? saved : ENOMEM;
    return NULL;
}
}

void hd_inbox_post(struct hd_inbox *inbox, struct hd_msg *msg)
{
    cds_wfcq_node_init(&msg->_node);
    __atomic_add_fetch(&inbox->_depth, 1, __ATOMIC_RELAXED);
    HB_RELEASE(inbox);
    if (cds_wfcq_enqueue(&inbox->_head, &inbox->_tail, &msg->_node))
        return; /* not empty before: a wake-up is already on its way */
    if (!deferred.enabled) {
        wake(inbox);
        return;
    }
    for (int i = 0; i < deferred.n; i++) {
        if (deferred.inboxes[i] == inbox)
            return;
    }
    if (deferred.n == MAX_DEFERRED)
        wake(inbox);
    else
        deferred.inboxes[deferred.n++] = inbox;
}

size_t hd_inbox_drain(struct hd_inbox *inbox)
{
    struct cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    struct cds_wfcq_node *node, *next;
    size_t n = 0;

    cds_wfcq_init(&head, &tail);
    /* Single consumer: the unlocked splice is safe. */
    __cds_wfcq_splice_blocking(&head, &tail, &inbox->_head, &inbox->_tail);
    HB_ACQUIRE(inbox);
    __cds_wfcq_for_each_blocking_safe(&head, &tail, node, next)
    {
        n++;
        __atomic_sub_fetch(&inbox->_depth, 1, __ATOMIC_RELAXED);
        inbox->_fn(inbox->_ctx, HD_CONTAINER_OF(node, struct hd_msg, _node));
    }
    return n;
}

size_t hd_inbox_depth(const struct hd_inbox *inbox)
{
    return __atomic_load_n(&inbox->_depth, __ATOMIC_RELAXED);
}

const char *hd_inbox_name(const struct hd_inbox *inbox)
{
    return inbox->_name;
}

void hd_inbox_free(struct hd_inbox *inbox)
{
    if (!inbox)
        return;
    pthread_mutex_lock(&registry_lock);
    for (struct hd_inbox **p = &registry; *p; p = &(*p)->_next) {
        if (*p == inbox) {
            *p = inbox->_next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    event_free(inbox->_ev);
    close(inbox->_efd);
    cds_wfcq_destroy(&inbox->_head, &inbox->_tail);
    free(inbox);
}

void hd_inbox_foreach(void (*fn)(void *arg, const struct hd_inbox *inbox), void *arg)
{
    pthread_mutex_lock(&registry_lock);
    for (struct hd_inbox *p = registry; p; p = p->_next)
        fn(arg, p);
    pthread_mutex_unlock(&registry_lock);
}
