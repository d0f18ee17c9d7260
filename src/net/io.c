/* I/O threads: each owns an event_base, an SO_REUSEPORT listener on the
 * shared port, its connections, and an inbox through which actors send
 * replies and the main thread sends drain/stop. */
#include "net/net_internal.h"

#include "herald/stream.h"

#include "herald/core.h"
#include "herald/log.h"

#include <errno.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu.h>

enum io_msg_type { IO_MSG_REPLY = 1, IO_MSG_DRAIN, IO_MSG_STOP, IO_MSG_TASK };

void hd__io_post(struct hd_io *io, struct hd_msg *m)
{
    hd_inbox_post(io->inbox, m);
}

void hd_reply_post(struct hd_reply *r)
{
    r->_msg.type = IO_MSG_REPLY;
    hd__io_post(r->to.io, &r->_msg);
}

struct hd_reply *hd_reply_new(struct hd_reply_to to, int status, const char *json, size_t len)
{
    struct hd_reply *r = hd_calloc(1, sizeof(*r));
    r->to = to;
    r->status = status;
    if (json) {
        r->body = hd_strndup(json, len);
        r->body_len = len;
    }
    return r;
}

static void drain_connections(struct hd_io *io)
{
    io->draining = true;
    if (io->listener) {
        evconnlistener_free(io->listener); /* the kernel stops queueing to us */
        io->listener = NULL;
    }
    for (uint32_t i = 0; i < io->n_slots; i++) {
        if (io->conns[i])
            hd__conn_drain(io->conns[i]);
    }
    if (io->n_open == 0)
        event_base_loopbreak(io->base);
}

static void on_message(void *ctx, struct hd_msg *m)
{
    struct hd_io *io = ctx;
    switch (m->type) {
    case IO_MSG_REPLY:
        hd__conn_deliver(io, (struct hd_reply *)m);
        return;
    case IO_MSG_DRAIN:
        free(m);
        drain_connections(io);
        return;
    case IO_MSG_STOP:
        free(m);
        event_base_loopbreak(io->base);
        return;
    case IO_MSG_TASK: {
        struct hd_io_task *t = (struct hd_io_task *)m;
        t->run(__atomic_load_n(&io->finished, __ATOMIC_ACQUIRE) ? NULL : io, t);
        return;
    }
    default:
        HD_ASSERT(!"unknown I/O message");
    }
}

static void post_control(struct hd_io *io, uint32_t type)
{
    struct hd_msg *m = hd_calloc(1, sizeof(*m));
    m->type = type;
    hd__io_post(io, m);
}

void hd_io_task_post(struct hd_io *io, struct hd_io_task *t)
{
    t->_msg.type = IO_MSG_TASK;
    hd__io_post(io, &t->_msg);
}

void hd__io_drain(struct hd_io *io)
{
    post_control(io, IO_MSG_DRAIN);
}

void hd__io_stop(struct hd_io *io)
{
    post_control(io, IO_MSG_STOP);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int len,
                      void *arg)
{
    hd__conn_accept(arg, fd, addr, len);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct hd_io *io = arg;
    if (io->listener)
        evconnlistener_enable(io->listener);
}

/* Out of file descriptors: pause accepting for a moment instead of spinning
 * on a listen socket that stays readable. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct hd_io *io = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        static const struct timeval pause = {0, 100000};
        evconnlistener_disable(l);
        event_add(io->accept_retry, &pause);
        hd_log(HD_LOG_WARN, "accept paused: out of file descriptors", "error", strerror(err), NULL);
    }
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    hd__access_log_flush(arg);
}

int hd__io_init(struct hd_io *io, struct hd_server *s, int index, int listen_fd)
{
    io->server = s;
    io->cfg = s->cfg;
    io->index = index;
    io->base = event_base_new();
    if (!io->base)
        return -ENOMEM;
    char name[32];
    snprintf(name, sizeof(name), "io-%d", index);
    io->inbox = hd_inbox_new(io->base, name, on_message, io);
    if (!io->inbox)
        return -errno;
    struct timeval idle = {s->cfg->server.idle_timeout_s, 0};
    struct timeval header = {s->cfg->server.header_timeout_ms / 1000,
                             (s->cfg->server.header_timeout_ms % 1000) * 1000};
    struct timeval body = {s->cfg->server.body_timeout_ms / 1000,
                           (s->cfg->server.body_timeout_ms % 1000) * 1000};
    io->tv_idle = event_base_init_common_timeout(io->base, &idle);
    io->tv_header = event_base_init_common_timeout(io->base, &header);
    io->tv_body = event_base_init_common_timeout(io->base, &body);
    io->scratch = hd_malloc(HD_READ_CHUNK);
    io->scratch_path = hd_malloc(HD_READ_CHUNK);
    unsigned char rnd[6];
    if (hd_random_bytes(rnd, sizeof(rnd)) != 0)
        return -EIO;
    for (int i = 0; i < 6; i++)
        snprintf(io->rid_prefix + 2 * i, 3, "%02x", rnd[i]);
    io->accept_retry = evtimer_new(io->base, on_accept_retry, io);
    io->log_flush = event_new(io->base, -1, EV_PERSIST, on_log_flush, io);
    static const struct timeval every = {0, 250000};
    event_add(io->log_flush, &every);
    io->listener = evconnlistener_new(io->base, on_accept, io,
                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
    if (!io->listener)
        return -ENOMEM;
    evconnlistener_set_error_cb(io->listener, on_accept_error);
    return 0;
}

static void *io_main(void *arg)
{
    struct hd_io *io = arg;
    rcu_register_thread(); /* I/O threads read RCU-published maps */
    hd_inbox_defer_wakes();
    hd_inbox_run_loop(io->base);
    for (uint32_t i = 0; i < io->n_slots; i++) {
        if (io->conns[i])
            hd__conn_close(io->conns[i]);
    }
    hd__access_log_flush(io);
    rcu_unregister_thread();
    __atomic_store_n(&io->finished, true, __ATOMIC_RELEASE);
    return NULL;
}

int hd__io_start(struct hd_io *io)
{
    return -pthread_create(&io->thread, NULL, io_main, io);
}

void hd__io_destroy(struct hd_io *io)
{
    if (io->inbox) {
        hd_inbox_drain(io->inbox); /* replies for closed connections are dropped */
        hd_inbox_free(io->inbox);
    }
    if (io->listener)
        evconnlistener_free(io->listener);
    if (io->accept_retry)
        event_free(io->accept_retry);
    if (io->log_flush)
        event_free(io->log_flush);
    hd__io_streams_destroy(io);
    while (io->free_exchanges) {
        struct hd_exchange *x = io->free_exchanges;
        io->free_exchanges = x->_next_free;
        free(x->arena);
        hd_buf_free(&x->body);
        hd_buf_free(&x->resp_headers);
        free(x);
    }
    free(io->conns);
    free(io->gens);
    free(io->free_slots);
    free(io->scratch);
    free(io->scratch_path);
    hd_buf_free(&io->access_log);
    if (io->base)
        event_base_free(io->base);
}
