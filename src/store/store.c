/* The store actor: a pool of DB workers, each an actor (thread + event_base +
 * inbox) owning one connection. Ops are spread round-robin over the workers
 * that are up. A worker whose connection fails answers HD_STORE_UNAVAILABLE
 * at once (never queues work behind a dead connection), reconnects from a
 * timer with back-off, and pings its connection when idle so /readyz notices
 * an outage without traffic. */
#include "herald/store.h"

#include "store/backend.h"
#include "store/store_internal.h"

#include "herald/actor.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/health.h"
#include "herald/log.h"
#include "herald/metrics.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define IDLE_PING_MS   2000

struct store_worker {
    struct hd_store *st;
    int index;
    struct hd_actor *actor;
    /* worker thread only: */
    struct hd_store_conn *conn;
    int backoff_ms;
    struct event *reconnect;
    struct event *idle_ping;
    char last_error[160];
    /* any thread (atomic): */
    bool up;
};

struct hd_store {
    const struct hd_config *cfg;
    const struct hd_store_backend *backend;
    const char *target;
    struct store_worker *workers;
    int n_workers;
    uint32_t next; /* atomic: round-robin cursor */
    int n_up;      /* atomic */
    struct hd__store_metrics metrics;
};

/* ---- health ----------------------------------------------------------- */

static void report_health(struct hd_store *st, const char *error)
{
    int up = __atomic_load_n(&st->n_up, __ATOMIC_RELAXED);
    char detail[200];
    if (up == st->n_workers)
        snprintf(detail, sizeof(detail), "%s: %d/%d connections", st->backend->name, up,
                 st->n_workers);
    else
        snprintf(detail, sizeof(detail), "%s: %d/%d connections up%s%s", st->backend->name, up,
                 st->n_workers, error && error[0] ? "; " : "", error ? error : "");
    hd_health_set("store", up > 0, detail);
}

static void set_up(struct store_worker *w, bool up)
{
    if (__atomic_exchange_n(&w->up, up, __ATOMIC_RELAXED) == up)
        return;
    __atomic_add_fetch(&w->st->n_up, up ? 1 : -1, __ATOMIC_RELAXED);
    if (!up)
        hd_log(HD_LOG_WARN, "store connection lost", "backend", w->st->backend->name, "error",
               w->last_error, NULL);
    else
        hd_log(HD_LOG_INFO, "store connection up", "backend", w->st->backend->name, NULL);
    report_health(w->st, w->last_error);
}

/* ---- connection lifecycle (worker thread) ----------------------------- */

static void schedule_reconnect(struct store_worker *w)
{
    if (evtimer_pending(w->reconnect, NULL))
        return;
    struct timeval tv = {w->backoff_ms / 1000, (w->backoff_ms % 1000) * 1000};
    evtimer_add(w->reconnect, &tv);
    w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static void drop_connection(struct store_worker *w)
{
    if (w->conn) {
        w->st->backend->close(w->conn);
        w->conn = NULL;
    }
    set_up(w, false);
    schedule_reconnect(w);
}

static bool connect_now(struct store_worker *w)
{
    const struct hd_store *st = w->st;
    w->conn = st->backend->open(st->target, st->cfg->store.query_timeout_ms, w->last_error,
                                sizeof(w->last_error));
    if (!w->conn) {
        set_up(w, false);
        schedule_reconnect(w);
        return false;
    }
    w->backoff_ms = BACKOFF_MIN_MS;
    w->last_error[0] = '\0';
    set_up(w, true);
    return true;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct store_worker *w = arg;
    if (!w->conn)
        connect_now(w);
}

static void arm_idle_ping(struct store_worker *w)
{
    struct timeval tv = {IDLE_PING_MS / 1000, (IDLE_PING_MS % 1000) * 1000};
    evtimer_add(w->idle_ping, &tv);
}

/* Runs @op on this worker's connection, or answers UNAVAILABLE at once. */
static void run_op(struct store_worker *w, struct hd_store_op *op)
{
    uint64_t start = hd_now_us();
    if (!w->conn || !w->st->backend->usable(w->conn)) {
        if (w->conn) {
            snprintf(w->last_error, sizeof(w->last_error), "connection broken");
            drop_connection(w);
        }
        op->status = HD_STORE_UNAVAILABLE;
    } else {
        w->st->backend->exec(w->conn, op);
        if (op->status == HD_STORE_UNAVAILABLE || !w->st->backend->usable(w->conn)) {
            snprintf(w->last_error, sizeof(w->last_error), "%s failed: connection lost",
                     hd_store_op_name(op->kind));
            drop_connection(w);
        }
    }
    op->elapsed_us = hd_now_us() - start;
    hd__store_metrics_record(&w->st->metrics, op->kind, op->status, op->elapsed_us);
}

static void on_idle_ping(evutil_socket_t fd, short what, void *arg)
{
    struct store_worker *w = arg;
    if (w->conn) {
        struct hd_store_op ping = {.kind = HD_OP_PING};
        run_op(w, &ping);
    }
    arm_idle_ping(w);
}

/* ---- the worker actor ----------------------------------------------------- */

static void on_op(void *ctx, struct hd_msg *msg)
{
    struct store_worker *w = ctx;
    struct hd_store_op *op = HD_CONTAINER_OF(msg, struct hd_store_op, _msg);
    __atomic_add_fetch(&w->st->metrics.in_use, 1, __ATOMIC_RELAXED);
    run_op(w, op);
    __atomic_sub_fetch(&w->st->metrics.in_use, 1, __ATOMIC_RELAXED);
    arm_idle_ping(w); /* busy: no need to ping for a while */
    op->done(op);
}

static void on_start(struct hd_actor *a)
{
    struct store_worker *w = hd_actor_ctx(a);
    struct event_base *base = hd_actor_base(a);
    w->reconnect = evtimer_new(base, on_reconnect, w);
    w->idle_ping = evtimer_new(base, on_idle_ping, w);
    w->backoff_ms = BACKOFF_MIN_MS;
    connect_now(w);
    arm_idle_ping(w);
}

static void on_stop(struct hd_actor *a)
{
    struct store_worker *w = hd_actor_ctx(a);
    if (w->conn)
        w->st->backend->close(w->conn); /* a clean Terminate, not an EOF */
    w->conn = NULL;
    event_free(w->reconnect);
    event_free(w->idle_ping);
}

/* ---- public ------------------------------------------------------------- */

struct hd_store *hd_store_start(const struct hd_config *cfg)
{
    const char *target = NULL;
    const struct hd_store_backend *b =
        hd__store_backend_for(cfg->store.database_url, cfg->store.sqlite_path, &target);
    if (!b) {
        hd_log(HD_LOG_ERROR, "unsupported store.database_url", "key", "store.database_url", NULL);
        return NULL;
    }
    struct hd_store *st = hd_calloc(1, sizeof(*st));
    st->cfg = cfg;
    st->backend = b;
    st->target = target;
    st->n_workers = cfg->store.pool_size;
    st->workers = hd_calloc((size_t)st->n_workers, sizeof(*st->workers));
    report_health(st, "connecting");
    for (int i = 0; i < st->n_workers; i++) {
        struct store_worker *w = &st->workers[i];
        char name[24];
        snprintf(name, sizeof(name), "store-%d", i);
        w->st = st;
        w->index = i;
        struct hd_actor_spec spec = {
            .name = name, .on_message = on_op, .on_start = on_start, .on_stop = on_stop, .ctx = w};
        w->actor = hd_actor_start(&spec);
        if (!w->actor) {
            hd_log(HD_LOG_ERROR, "cannot start store worker", NULL);
            st->n_workers = i;
            hd_store_stop(st);
            return NULL;
        }
    }
    hd__store_metrics_init(&st->metrics, st);
    return st;
}

void hd_store_submit(struct hd_store *st, struct hd_store_op *op)
{
    HD_ASSERT(op->done);
    uint32_t start = __atomic_fetch_add(&st->next, 1, __ATOMIC_RELAXED);
    struct store_worker *pick = &st->workers[start % (uint32_t)st->n_workers];
    /* Prefer a worker that is up: its op does not fail for another's outage. */
    for (int k = 0; k < st->n_workers; k++) {
        struct store_worker *w = &st->workers[(start + (uint32_t)k) % (uint32_t)st->n_workers];
        if (__atomic_load_n(&w->up, __ATOMIC_RELAXED)) {
            pick = w;
            break;
        }
    }
    hd_actor_post(pick->actor, &op->_msg);
}

void hd_store_stop(struct hd_store *st)
{
    if (!st)
        return;
    hd__store_metrics_fini(&st->metrics);
    for (int i = 0; i < st->n_workers; i++)
        hd_actor_stop(st->workers[i].actor);
    free(st->workers);
    free(st);
}

const char *hd__store_backend_name(const struct hd_store *st)
{
    return st->backend->name;
}

int hd__store_pool_size(const struct hd_store *st)
{
    return st->n_workers;
}

int hd__store_workers_up(const struct hd_store *st)
{
    return __atomic_load_n(&st->n_up, __ATOMIC_RELAXED);
}
