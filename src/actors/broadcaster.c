/* The broadcaster: the publish queue (one insert in flight, so events are
 * committed and fanned out in id order), the RCU registry of SSE streams,
 * fan-out to I/O threads, session ends, the retention purge and the SSE
 * metrics. See include/herald/broadcaster.h. */
#include "herald/broadcaster.h"

#include "core/tsan.h"
#include "herald/actor.h"
#include "herald/buf.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/log.h"
#include "herald/metrics.h"
#include "herald/notification.h"
#include "herald/server.h"
#include "herald/session.h"

#include <event2/event.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu.h>
#include <urcu/rculfhash.h>
#include <urcu/rculist.h>

#define KEY_LEN       (1 + HD_ID_LEN + 2 + 1) /* kind, id, I/O thread (2 hex), NUL */
#define MAX_IO        256
#define PURGE_EVERY_S 3600
#define PURGE_FIRST_S 5
#define N_BUCKETS     12

static const double FANOUT_BUCKETS[N_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                 0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

enum msg_type {
    MSG_PUBLISH = 1,
    MSG_STORE_DONE,
    MSG_RESERVE,
    MSG_REGISTER,
    MSG_RELEASE,
    MSG_SESSION_ENDED,
    MSG_SYNC, /* detach / quiesce: run a step, then post the semaphore */
};

/* ---- registry types ------------------------------------------------------- */

/* A key (kind + id + I/O thread) and the streams under it. Published in the
 * RCU hash; its entry list is an RCU list. Broadcaster writes; I/O threads read. */
struct reg_key {
    struct cds_lfht_node node;
    struct cds_list_head entries;
    uint32_t n; /* broadcaster only */
    char key[KEY_LEN];
    struct rcu_head rcu;
};

struct reg_entry {
    struct cds_list_head link;
    struct hd_stream_ref ref;
    struct reg_key *owner; /* broadcaster only */
    struct rcu_head rcu;
};

/* Streams per user, for sse.max_streams_per_user. Broadcaster only. */
struct user_count {
    struct cds_lfht_node node;
    char user_id[HD_ID_LEN + 1];
    int n;
    struct rcu_head rcu;
};

enum { KEY_USER, KEY_ORG, KEY_SESSION, N_KEYS };
static const char KIND[N_KEYS] = {'u', 'o', 's'};

struct hd_bc_stream {
    struct hd_msg msg;         /* reserve, then register */
    struct hd_msg release_msg; /* release: may follow a register still queued */
    char user_id[HD_ID_LEN + 1];
    char org_id[HD_ID_LEN + 1];
    char session_id[HD_ID_LEN + 1];
    struct hd_stream_ref ref;
    bool reserved, registered;
    struct reg_entry *entries[N_KEYS];
    hd_bc_done_fn done;
    void *ctx;
};

struct session_ended_msg {
    struct hd_msg msg;
    char session_id[HD_ID_LEN + 1];
};

struct sync_msg {
    struct hd_msg msg;
    void (*step)(struct hd_broadcaster *b);
    sem_t done;
};

/* A frame (or a session end) for the streams of one key on one I/O thread. */
struct fanout_task {
    struct hd_io_task task;
    struct hd_broadcaster *b;
    struct hd_frame *frame; /* NULL: the session ended */
    uint64_t posted_ns;
    char key[KEY_LEN];
};

struct hd_broadcaster {
    const struct hd_config *cfg;
    struct hd_store *store;
    struct hd_broadcast_sink sink;
    struct hd_actor *actor;
    struct cds_lfht *keys;  /* reg_key, RCU */
    struct cds_lfht *users; /* user_count, broadcaster only */
    struct hd_server *server;
    bool detached, quiesced;
    bool busy; /* step_quiesce: an insert was still in flight */
    /* publish queue: actor thread only */
    struct hd_publish *queue_head, *queue_tail;
    struct hd_publish *in_flight;
    struct event *purge;
    /* metrics (atomics) */
    uint64_t streams, published, publish_failed;
    uint64_t counters[HD_SSE__COUNT];
    uint64_t fanout_buckets[N_BUCKETS + 1];
    uint64_t fanout_count, fanout_sum_ns;
};

static void make_key(char out[KEY_LEN], int kind, const char *id, int io)
{
    snprintf(out, KEY_LEN, "%c%.*s%02x", KIND[kind], HD_ID_LEN, id, io & 0xff);
}

/* ---- registry (writes: actor thread only) ------------------------------------ */

static int match_key(struct cds_lfht_node *node, const void *key)
{
    return strcmp(caa_container_of(node, struct reg_key, node)->key, key) == 0;
}

/* Inside rcu_read_lock. */
static struct reg_key *find_key(struct cds_lfht *ht, const char *key)
{
    struct cds_lfht_iter it;
    cds_lfht_lookup(ht, hd_hash_str(key), match_key, key, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    struct reg_key *k = node ? caa_container_of(node, struct reg_key, node) : NULL;
    if (k)
        HD_TSAN_ACQUIRE(k);
    return k;
}

static void free_key(struct rcu_head *head)
{
    free(caa_container_of(head, struct reg_key, rcu));
}

static void free_entry(struct rcu_head *head)
{
    free(caa_container_of(head, struct reg_entry, rcu));
}

static struct reg_entry *add_entry(struct hd_broadcaster *b, const char *key,
                                   struct hd_stream_ref ref)
{
    rcu_read_lock();
    struct reg_key *k = find_key(b->keys, key);
    if (!k) {
        k = hd_calloc(1, sizeof(*k));
        snprintf(k->key, sizeof(k->key), "%s", key);
        CDS_INIT_LIST_HEAD(&k->entries);
        cds_lfht_node_init(&k->node);
        HD_TSAN_RELEASE(k);
        cds_lfht_add(b->keys, hd_hash_str(key), &k->node);
    }
    struct reg_entry *e = hd_calloc(1, sizeof(*e));
    e->ref = ref;
    e->owner = k;
    HD_TSAN_RELEASE(e);
    cds_list_add_rcu(&e->link, &k->entries);
    HD_TSAN_RELEASE(k);
    k->n++;
    rcu_read_unlock();
    return e;
}

static void remove_entry(struct hd_broadcaster *b, struct reg_entry *e)
{
    struct reg_key *k = e->owner;
    cds_list_del_rcu(&e->link);
    call_rcu(&e->rcu, free_entry);
    if (--k->n == 0) {
        rcu_read_lock();
        cds_lfht_del(b->keys, &k->node);
        rcu_read_unlock();
        call_rcu(&k->rcu, free_key);
    }
}

static int match_user(struct cds_lfht_node *node, const void *key)
{
    return strcmp(caa_container_of(node, struct user_count, node)->user_id, key) == 0;
}

static struct user_count *user_count(struct hd_broadcaster *b, const char *user_id, bool create)
{
    rcu_read_lock();
    struct cds_lfht_iter it;
    cds_lfht_lookup(b->users, hd_hash_str(user_id), match_user, user_id, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    struct user_count *u = node ? caa_container_of(node, struct user_count, node) : NULL;
    if (!u && create) {
        u = hd_calloc(1, sizeof(*u));
        snprintf(u->user_id, sizeof(u->user_id), "%s", user_id);
        cds_lfht_node_init(&u->node);
        cds_lfht_add(b->users, hd_hash_str(user_id), &u->node);
    }
    rcu_read_unlock();
    return u;
}

static void free_user(struct rcu_head *head)
{
    free(caa_container_of(head, struct user_count, rcu));
}

static void user_release(struct hd_broadcaster *b, const char *user_id)
{
    struct user_count *u = user_count(b, user_id, false);
    if (u && --u->n == 0) {
        rcu_read_lock();
        cds_lfht_del(b->users, &u->node);
        rcu_read_unlock();
        call_rcu(&u->rcu, free_user);
    }
}

/* ---- fan-out ------------------------------------------------------------------- */

static void observe_fanout(struct hd_broadcaster *b, uint64_t ns)
{
    double s = (double)ns / 1e9;
    int i = 0;
    while (i < N_BUCKETS && s > FANOUT_BUCKETS[i])
        i++;
    __atomic_add_fetch(&b->fanout_buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->fanout_count, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&b->fanout_sum_ns, ns, __ATOMIC_RELAXED);
}

/* I/O thread (or NULL once it stopped). */
static void run_fanout(struct hd_io *io, struct hd_io_task *t)
{
    struct fanout_task *f = (struct fanout_task *)t;
    struct hd_broadcaster *b = f->b;
    if (io) {
        uint64_t delivered = 0;
        rcu_read_lock();
        struct reg_key *k = find_key(b->keys, f->key);
        if (k) {
            struct reg_entry *e;
            cds_list_for_each_entry_rcu(e, &k->entries, link)
            {
                HD_TSAN_ACQUIRE(e);
                struct hd_stream *s = hd_stream_find(e->ref);
                if (!s)
                    continue; /* closed; its release is on its way */
                if (f->frame) {
                    hd_frame_ref(f->frame, 1);
                    b->sink.deliver(s, f->frame);
                    delivered++;
                } else {
                    b->sink.session_ended(s);
                }
            }
        }
        rcu_read_unlock();
        if (f->frame) {
            hd_broadcaster_count(b, HD_SSE_DELIVERED, delivered);
            observe_fanout(b, hd_now_us() * 1000u - f->posted_ns);
        }
    }
    hd_frame_unref(f->frame);
    free(f);
}

/* Posts @frame (NULL: a session end) to every I/O thread holding @kind/@id.
 * Takes one reference of @frame. Actor thread. */
static void fan_out(struct hd_broadcaster *b, int kind, const char *id, struct hd_frame *frame)
{
    uint64_t t0 = hd_now_us() * 1000u;
    /* Read here, not at attach: the I/O threads exist once the server has
     * started, and anything that reaches this actor came after that. */
    int n_io = b->server ? hd_server_io_count(b->server) : 0;
    HD_ASSERT(n_io <= MAX_IO);
    for (int i = 0; i < n_io && !b->detached; i++) {
        char key[KEY_LEN];
        make_key(key, kind, id, i);
        rcu_read_lock();
        bool any = find_key(b->keys, key) != NULL;
        rcu_read_unlock();
        if (!any)
            continue;
        struct fanout_task *f = hd_calloc(1, sizeof(*f));
        f->task.run = run_fanout;
        f->b = b;
        f->frame = frame;
        if (frame)
            hd_frame_ref(frame, 1);
        f->posted_ns = t0;
        memcpy(f->key, key, sizeof(key));
        hd_io_task_post(hd_server_io(b->server, i), &f->task);
    }
    hd_frame_unref(frame);
}

/* ---- publishing ------------------------------------------------------------------ */

struct hd_publish *hd_publish_new(void)
{
    return hd_calloc(1, sizeof(struct hd_publish));
}

void hd_publish_free(struct hd_publish *p)
{
    if (!p)
        return;
    hd_notification_clear(&p->n);
    free(p);
}

static void store_done(struct hd_store_op *op)
{
    op->_msg.type = MSG_STORE_DONE;
    hd_actor_post(((struct hd_broadcaster *)op->ctx)->actor, &op->_msg);
}

static void submit_next(struct hd_broadcaster *b)
{
    while (!b->in_flight && b->queue_head) {
        struct hd_publish *p = b->queue_head;
        b->queue_head = p->_next;
        if (!b->queue_head)
            b->queue_tail = NULL;
        p->_next = NULL;
        if (b->quiesced) {
            p->status = HD_STORE_UNAVAILABLE;
            p->done(p);
            continue;
        }
        struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATION_INSERT);
        struct hd_notification *n = &op->notification;
        memcpy(n->org_id, p->n.org_id, sizeof(n->org_id));
        memcpy(n->user_id, p->n.user_id, sizeof(n->user_id));
        n->type = hd_strdup_or_null(p->n.type);
        n->title = hd_strdup_or_null(p->n.title);
        n->body = hd_strdup_or_null(p->n.body);
        n->data = hd_strdup_or_null(p->n.data);
        op->now = hd_wall_ms();
        op->done = store_done;
        op->ctx = b;
        b->in_flight = p;
        hd_store_submit(b->store, op);
    }
}

static void on_store_done(struct hd_broadcaster *b, struct hd_store_op *op)
{
    if (op->kind != HD_OP_NOTIFICATION_INSERT) { /* the purge */
        if (op->status == HD_STORE_OK && op->count > 0) {
            char n[24];
            snprintf(n, sizeof(n), "%lld", (long long)op->count);
            hd_log(HD_LOG_INFO, "old notifications deleted", "count", n, NULL);
        }
        hd_store_op_free(op);
        return;
    }
    struct hd_publish *p = b->in_flight;
    b->in_flight = NULL;
    p->status = op->status;
    struct hd_frame *frame = NULL;
    int kind = p->n.user_id[0] ? KEY_USER : KEY_ORG;
    char target[HD_ID_LEN + 1];
    memcpy(target, kind == KEY_USER ? p->n.user_id : p->n.org_id, sizeof(target));
    if (op->status == HD_STORE_OK) {
        p->n.id = op->notification.id;
        p->n.created_at = op->notification.created_at;
        size_t len;
        char *text = hd_notification_sse(&p->n, &len);
        frame = hd_frame_new(p->n.id, text, len, 1);
        free(text);
        __atomic_add_fetch(&b->published, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_add_fetch(&b->publish_failed, 1, __ATOMIC_RELAXED);
    }
    hd_store_op_free(op);
    p->done(p); /* the publisher's 201 (p is theirs again) */
    if (frame)
        fan_out(b, kind, target, frame);
    submit_next(b);
}

void hd_broadcaster_publish(struct hd_broadcaster *b, struct hd_publish *p)
{
    HD_ASSERT(p->done);
    p->_msg.type = MSG_PUBLISH;
    hd_actor_post(b->actor, &p->_msg);
}

static void on_publish(struct hd_broadcaster *b, struct hd_publish *p)
{
    p->_next = NULL;
    if (b->queue_tail)
        b->queue_tail->_next = p;
    else
        b->queue_head = p;
    b->queue_tail = p;
    submit_next(b);
}

/* ---- the purge -------------------------------------------------------------------- */

static void on_purge(evutil_socket_t fd, short what, void *arg)
{
    struct hd_broadcaster *b = arg;
    if (b->quiesced)
        return;
    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATIONS_PURGE);
    op->before = hd_wall_ms() - (int64_t)b->cfg->notifications.retention_days * 86400 * 1000;
    op->done = store_done;
    op->ctx = b;
    hd_store_submit(b->store, op);
    static const struct timeval every = {PURGE_EVERY_S, 0};
    event_add(b->purge, &every);
}

/* ---- streams ------------------------------------------------------------------------ */

struct hd_bc_stream *hd_broadcaster_reserve(struct hd_broadcaster *b, const char *user_id,
                                            const char *org_id, const char *session_id,
                                            hd_bc_done_fn done, void *ctx)
{
    struct hd_bc_stream *bs = hd_calloc(1, sizeof(*bs));
    snprintf(bs->user_id, sizeof(bs->user_id), "%s", user_id);
    snprintf(bs->org_id, sizeof(bs->org_id), "%s", org_id);
    snprintf(bs->session_id, sizeof(bs->session_id), "%s", session_id);
    bs->done = done;
    bs->ctx = ctx;
    bs->msg.type = MSG_RESERVE;
    hd_actor_post(b->actor, &bs->msg);
    return bs;
}

static void on_reserve(struct hd_broadcaster *b, struct hd_bc_stream *bs)
{
    struct user_count *u = user_count(b, bs->user_id, true);
    bool ok = u->n < b->cfg->sse.max_streams_per_user && !b->detached;
    if (ok) {
        u->n++;
        bs->reserved = true;
    } else if (u->n == 0) {
        user_release(b, bs->user_id); /* created above only to look */
    }
    hd_bc_done_fn done = bs->done;
    void *ctx = bs->ctx;
    if (!ok)
        free(bs);
    done(ok ? bs : NULL, ok, ctx);
}

void hd_broadcaster_register(struct hd_broadcaster *b, struct hd_bc_stream *bs,
                             struct hd_stream_ref ref, hd_bc_done_fn done, void *ctx)
{
    bs->ref = ref;
    bs->done = done;
    bs->ctx = ctx;
    bs->msg.type = MSG_REGISTER;
    hd_actor_post(b->actor, &bs->msg);
}

static void on_register(struct hd_broadcaster *b, struct hd_bc_stream *bs)
{
    int io = hd_io_index(bs->ref.io);
    const char *ids[N_KEYS] = {bs->user_id, bs->org_id, bs->session_id};
    for (int k = 0; k < N_KEYS; k++) {
        char key[KEY_LEN];
        make_key(key, k, ids[k], io);
        bs->entries[k] = add_entry(b, key, bs->ref);
    }
    bs->registered = true;
    __atomic_add_fetch(&b->streams, 1, __ATOMIC_RELAXED);
    bs->done(bs, true, bs->ctx);
}

void hd_broadcaster_release(struct hd_broadcaster *b, struct hd_bc_stream *bs)
{
    bs->release_msg.type = MSG_RELEASE;
    hd_actor_post(b->actor, &bs->release_msg);
}

static void on_release(struct hd_broadcaster *b, struct hd_bc_stream *bs)
{
    if (bs->registered) {
        for (int k = 0; k < N_KEYS; k++)
            remove_entry(b, bs->entries[k]);
        __atomic_sub_fetch(&b->streams, 1, __ATOMIC_RELAXED);
    }
    if (bs->reserved)
        user_release(b, bs->user_id);
    free(bs);
}

/* ---- session ends ----------------------------------------------------------------------- */

/* Session actor thread. */
static void session_ended(void *ctx, const char *session_id, const char *user_id)
{
    struct hd_broadcaster *b = ctx;
    struct session_ended_msg *m = hd_calloc(1, sizeof(*m));
    snprintf(m->session_id, sizeof(m->session_id), "%s", session_id);
    m->msg.type = MSG_SESSION_ENDED;
    hd_actor_post(b->actor, &m->msg);
}

void hd_broadcaster_follow_sessions(struct hd_broadcaster *b, struct hd_sessions *sessions)
{
    hd_sessions_on_ended(sessions, session_ended, b);
}

/* ---- the actor -------------------------------------------------------------------------- */

static void on_message(void *ctx, struct hd_msg *m)
{
    struct hd_broadcaster *b = ctx;
    switch (m->type) {
    case MSG_PUBLISH:
        on_publish(b, HD_CONTAINER_OF(m, struct hd_publish, _msg));
        return;
    case MSG_STORE_DONE:
        on_store_done(b, HD_CONTAINER_OF(m, struct hd_store_op, _msg));
        return;
    case MSG_RESERVE:
        on_reserve(b, HD_CONTAINER_OF(m, struct hd_bc_stream, msg));
        return;
    case MSG_REGISTER:
        on_register(b, HD_CONTAINER_OF(m, struct hd_bc_stream, msg));
        return;
    case MSG_RELEASE:
        on_release(b, HD_CONTAINER_OF(m, struct hd_bc_stream, release_msg));
        return;
    case MSG_SESSION_ENDED: {
        struct session_ended_msg *s = (struct session_ended_msg *)m;
        fan_out(b, KEY_SESSION, s->session_id, NULL);
        free(s);
        return;
    }
    case MSG_SYNC: {
        struct sync_msg *s = (struct sync_msg *)m;
        s->step(b);
        sem_post(&s->done);
        return;
    }
    default:
        HD_ASSERT(!"unknown broadcaster message");
    }
}

static void sync_step(struct hd_broadcaster *b, void (*step)(struct hd_broadcaster *b))
{
    struct sync_msg m = {.msg.type = MSG_SYNC, .step = step};
    sem_init(&m.done, 0, 0);
    hd_actor_post(b->actor, &m.msg);
    while (sem_wait(&m.done) != 0)
        ;
    sem_destroy(&m.done);
}

static void step_detach(struct hd_broadcaster *b)
{
    b->detached = true;
}

static void step_quiesce(struct hd_broadcaster *b)
{
    b->quiesced = true;
    submit_next(b);                 /* answers the queued ones UNAVAILABLE */
    b->busy = b->in_flight != NULL; /* read by the main thread after the sync */
}

static void on_start(struct hd_actor *a)
{
    struct hd_broadcaster *b = hd_actor_ctx(a);
    b->purge = evtimer_new(hd_actor_base(a), on_purge, b);
    static const struct timeval first = {PURGE_FIRST_S, 0};
    event_add(b->purge, &first);
}

static void on_stop(struct hd_actor *a)
{
    struct hd_broadcaster *b = hd_actor_ctx(a);
    event_free(b->purge);
}

/* ---- metrics ------------------------------------------------------------------------------ */

static uint64_t load(const uint64_t *v)
{
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void collect(void *ctx, struct hd_buf *out)
{
    struct hd_broadcaster *b = ctx;
    hd_buf_appendf(out,
                   "# HELP herald_sse_streams Open SSE streams (registered).\n"
                   "# TYPE herald_sse_streams gauge\nherald_sse_streams %llu\n"
                   "# HELP herald_notifications_published_total Notifications committed and fanned "
                   "out.\n# TYPE herald_notifications_published_total counter\n"
                   "herald_notifications_published_total %llu\n"
                   "# HELP herald_notifications_publish_failed_total Publishes the store refused "
                   "or failed.\n# TYPE herald_notifications_publish_failed_total counter\n"
                   "herald_notifications_publish_failed_total %llu\n"
                   "# HELP herald_sse_delivered_total Events queued to SSE streams.\n"
                   "# TYPE herald_sse_delivered_total counter\nherald_sse_delivered_total %llu\n"
                   "# HELP herald_sse_replays_total Resumes answered with a replay.\n"
                   "# TYPE herald_sse_replays_total counter\nherald_sse_replays_total %llu\n"
                   "# HELP herald_sse_resets_total Streams told to refetch (event: reset).\n"
                   "# TYPE herald_sse_resets_total counter\n"
                   "herald_sse_resets_total{reason=\"replay\"} %llu\n"
                   "herald_sse_resets_total{reason=\"overflow\"} %llu\n"
                   "# HELP herald_sse_slow_closes_total Streams closed after sse.write_timeout_s "
                   "unwritable.\n# TYPE herald_sse_slow_closes_total counter\n"
                   "herald_sse_slow_closes_total %llu\n"
                   "# HELP herald_sse_session_ends_total Streams ended because their session "
                   "ended.\n# TYPE herald_sse_session_ends_total counter\n"
                   "herald_sse_session_ends_total %llu\n",
                   (unsigned long long)load(&b->streams), (unsigned long long)load(&b->published),
                   (unsigned long long)load(&b->publish_failed),
                   (unsigned long long)load(&b->counters[HD_SSE_DELIVERED]),
                   (unsigned long long)load(&b->counters[HD_SSE_REPLAYS]),
                   (unsigned long long)load(&b->counters[HD_SSE_RESETS_REPLAY]),
                   (unsigned long long)load(&b->counters[HD_SSE_RESETS_OVERFLOW]),
                   (unsigned long long)load(&b->counters[HD_SSE_SLOW_CLOSES]),
                   (unsigned long long)load(&b->counters[HD_SSE_SESSION_ENDS]));
    hd_buf_puts(out, "# HELP herald_sse_fanout_seconds From commit to the event queued on an "
                     "I/O thread's streams.\n# TYPE herald_sse_fanout_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < N_BUCKETS; i++) {
        cum += load(&b->fanout_buckets[i]);
        hd_buf_appendf(out, "herald_sse_fanout_seconds_bucket{le=\"%g\"} %llu\n", FANOUT_BUCKETS[i],
                       (unsigned long long)cum);
    }
    cum += load(&b->fanout_buckets[N_BUCKETS]);
    hd_buf_appendf(out,
                   "herald_sse_fanout_seconds_bucket{le=\"+Inf\"} %llu\n"
                   "herald_sse_fanout_seconds_sum %.6f\nherald_sse_fanout_seconds_count %llu\n",
                   (unsigned long long)cum, (double)load(&b->fanout_sum_ns) / 1e9,
                   (unsigned long long)load(&b->fanout_count));
}

void hd_broadcaster_count(struct hd_broadcaster *b, enum hd_sse_counter c, uint64_t n)
{
    if (n)
        __atomic_add_fetch(&b->counters[c], n, __ATOMIC_RELAXED);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

struct hd_broadcaster *hd_broadcaster_start(const struct hd_config *cfg, struct hd_store *store,
                                            const struct hd_broadcast_sink *sink)
{
    struct hd_broadcaster *b = hd_calloc(1, sizeof(*b));
    b->cfg = cfg;
    b->store = store;
    b->sink = *sink;
    b->keys = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    b->users = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    struct hd_actor_spec spec = {.name = "broadcaster",
                                 .on_message = on_message,
                                 .on_start = on_start,
                                 .on_stop = on_stop,
                                 .ctx = b};
    if (b->keys && b->users)
        b->actor = hd_actor_start(&spec);
    if (!b->actor) {
        if (b->keys)
            cds_lfht_destroy(b->keys, NULL);
        if (b->users)
            cds_lfht_destroy(b->users, NULL);
        free(b);
        return NULL;
    }
    hd_metrics_register(collect, b);
    return b;
}

void hd_broadcaster_attach(struct hd_broadcaster *b, struct hd_server *s)
{
    b->server = s; /* before the server starts: any message to the actor comes after */
}

void hd_broadcaster_detach(struct hd_broadcaster *b)
{
    if (b)
        sync_step(b, step_detach);
}

void hd_broadcaster_quiesce(struct hd_broadcaster *b)
{
    if (!b)
        return;
    /* the insert in flight comes back through the store, which still runs
     * (bounded by store.query_timeout_ms; give up after 60 s) */
    for (int i = 0; i < 6000; i++) {
        sync_step(b, step_quiesce);
        if (!b->busy)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Frees what is left in the maps: every stream released by now. */
static void drain_map(struct cds_lfht *ht, size_t node_off)
{
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    rcu_read_lock();
    cds_lfht_first(ht, &it);
    while ((node = cds_lfht_iter_get_node(&it)) != NULL) {
        cds_lfht_next(ht, &it);
        cds_lfht_del(ht, node);
        free((char *)node - node_off);
    }
    rcu_read_unlock();
}

void hd_broadcaster_stop(struct hd_broadcaster *b)
{
    if (!b)
        return;
    hd_metrics_unregister(collect, b);
    hd_actor_stop(b->actor);
    rcu_barrier(); /* entries and keys freed by call_rcu */
    drain_map(b->keys, offsetof(struct reg_key, node));
    drain_map(b->users, offsetof(struct user_count, node));
    cds_lfht_destroy(b->keys, NULL);
    cds_lfht_destroy(b->users, NULL);
    while (b->queue_head) { /* not reached after a quiesce */
        struct hd_publish *p = b->queue_head;
        b->queue_head = p->_next;
        hd_publish_free(p);
    }
    free(b);
}
