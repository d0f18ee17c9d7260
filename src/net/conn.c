/* One HTTP/1.1 connection: read, parse, serve one request at a time (a parked
 * request holds the ones pipelined behind it), write, time out.
 *
 * Reads land in the I/O thread's scratch buffer and are parsed from there;
 * only bytes that cannot be parsed yet (a request is parked, or too much
 * output is unsent) are copied into the connection's pending_in, so an idle
 * connection holds no buffer at all. Responses gather in `out` and go out
 * with one write(2) per read batch. */
#include "net/net_internal.h"

#include "herald/core.h"
#include "herald/log.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static bool conn_flush(struct hd_conn *c);
static void conn_process(struct hd_conn *c);

static bool blocked(const struct hd_conn *c)
{
    return (c->x && c->x->parked) || c->out.len > HD_OUT_HIGH_WATER;
}

/* ---- slots ------------------------------------------------------------ */

static uint32_t slot_alloc(struct hd_io *io)
{
    if (io->n_free)
        return io->free_slots[--io->n_free];
    uint32_t n = io->n_slots ? io->n_slots * 2 : 64;
    io->conns = hd_realloc(io->conns, n * sizeof(*io->conns));
    io->gens = hd_realloc(io->gens, n * sizeof(*io->gens));
    io->free_slots = hd_realloc(io->free_slots, n * sizeof(*io->free_slots));
    for (uint32_t i = io->n_slots; i < n; i++) {
        io->conns[i] = NULL;
        io->gens[i] = 0;
    }
    for (uint32_t i = n; i > io->n_slots + 1; i--)
        io->free_slots[io->n_free++] = i - 1;
    uint32_t slot = io->n_slots;
    io->n_slots = n;
    return slot;
}

/* ---- accept / close --------------------------------------------------- */

/* Over server.max_connections: answer 503 and close, without a conn. */
static void refuse_connection(struct hd_io *io, int fd)
{
    char rid[HD_REQUEST_ID_MAX + 1];
    hd__request_id_generate(io, rid);
    hd__io_refresh_clock(io);
    char body[256], msg[768];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"server is at "
                     "its connection limit\"},\"request_id\":\"%s\"}",
                     rid);
    int m = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 503 Service Unavailable\r\n%sContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nX-Request-Id: %s\r\nRetry-After: 1\r\n"
                     "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
                     "Connection: close\r\n\r\n%s",
                     io->date_line, n, rid, body);
    ssize_t w = write(fd, msg, (size_t)m);
    (void)w; /* best effort: the client is refused either way */
    close(fd);
    __atomic_add_fetch(&io->metrics.refused, 1, __ATOMIC_RELAXED);
}

void hd__conn_accept(struct hd_io *io, int fd, const struct sockaddr *addr, int addrlen)
{
    struct hd_server *s = io->server;
    uint32_t open = __atomic_add_fetch(&s->open_connections, 1, __ATOMIC_RELAXED);
    if (open > (uint32_t)s->max_connections || io->draining) {
        __atomic_sub_fetch(&s->open_connections, 1, __ATOMIC_RELAXED);
        refuse_connection(io, fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct hd_conn *c = hd_calloc(1, sizeof(*c));
    c->io = io;
    c->fd = fd;
    c->slot = slot_alloc(io);
    c->gen = io->gens[c->slot];
    io->conns[c->slot] = c;
    io->n_open++;
    memcpy(&c->peer, addr, (size_t)addrlen < sizeof(c->peer) ? (size_t)addrlen : sizeof(c->peer));
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    event_assign(&c->rd, io->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wr, io->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    evtimer_assign(&c->timer, io->base, on_timer, c);
    event_add(&c->rd, NULL);
    c->reading = true;
    c->phase = HD_PHASE_HEADER; /* a client that sends nothing is cut off */
    event_add(&c->timer, io->tv_header);
    __atomic_add_fetch(&io->metrics.accepted, 1, __ATOMIC_RELAXED);
}

void hd__conn_close(struct hd_conn *c)
{
    struct hd_io *io = c->io;
    if (c->stream)
        hd__stream_closed(c); /* tells the application first */
    event_del(&c->rd);
    event_del(&c->wr);
    event_del(&c->timer);
    close(c->fd);
    if (c->x)
        hd__exchange_put(io, c->x); /* a parked request's reply will be dropped */
    hd_buf_free(&c->out);
    hd_buf_free(&c->pending_in);
    io->gens[c->slot]++;
    io->conns[c->slot] = NULL;
    io->free_slots[io->n_free++] = c->slot;
    io->n_open--;
    __atomic_sub_fetch(&io->server->open_connections, 1, __ATOMIC_RELAXED);
    free(c);
    if (io->draining && io->n_open == 0)
        event_base_loopbreak(io->base);
}

void hd__conn_drain(struct hd_conn *c)
{
    if (c->stream || (!c->x && c->out.len == 0)) { /* streams resume elsewhere */
        hd__conn_close(c);
        return;
    }
    c->close_after = true;
}

/* ---- timers ----------------------------------------------------------- */

static void set_phase(struct hd_conn *c, enum hd_timer_phase phase)
{
    if (phase == c->phase && phase != HD_PHASE_IDLE)
        return;
    c->phase = phase;
    const struct timeval *tv = NULL;
    switch (phase) {
    case HD_PHASE_NONE:
        event_del(&c->timer);
        return;
    case HD_PHASE_IDLE:
        tv = c->served_one ? c->io->tv_idle : c->io->tv_header;
        break;
    case HD_PHASE_HEADER:
        tv = c->io->tv_header;
        break;
    case HD_PHASE_BODY:
        tv = c->io->tv_body;
        break;
    case HD_PHASE_WRITE:
        tv = c->io->tv_idle;
        break;
    }
    event_add(&c->timer, tv);
}

/* Chooses the timer for the connection's current state. */
static void update_timer(struct hd_conn *c)
{
    if (c->stream)
        set_phase(c, HD_PHASE_NONE); /* the stream tick keeps its time */
    else if (c->writing)
        set_phase(c, HD_PHASE_WRITE);
    else if (c->x && (c->x->parked || c->x->complete))
        set_phase(c, HD_PHASE_NONE);
    else if (c->x && c->x->headers_done)
        set_phase(c, HD_PHASE_BODY);
    else if (c->x || c->pending_in.len)
        set_phase(c, HD_PHASE_HEADER);
    else
        set_phase(c, HD_PHASE_IDLE);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct hd_conn *c = arg;
    __atomic_add_fetch(&c->io->metrics.timeouts, 1, __ATOMIC_RELAXED);
    if (c->phase == HD_PHASE_HEADER || c->phase == HD_PHASE_BODY) {
        if (c->x || c->served_one == false) {
            c->out.len = 0;
            hd__respond_raw_error(c, 408, "request_timeout", "request not received in time", c->x);
            if (conn_flush(c)) /* still open: the 408 did not fit */
                hd__conn_close(c);
            return;
        }
    }
    hd__conn_close(c);
}

/* ---- reading and parsing ---------------------------------------------- */

/* Answers a request the parser refused, then closes after flushing. */
static void parse_failed(struct hd_conn *c)
{
    struct hd_exchange *x = c->x;
    int status = 400;
    const char *code = "bad_request", *msg = "malformed HTTP request";
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (x && x->error_status) {
        status = x->error_status;
        code = x->error_code;
        msg = status == 431   ? "request headers too large"
              : status == 413 ? "request body too large"
                              : "malformed HTTP request";
    } else if (err == HPE_HEADER_OVERFLOW) {
        status = 431;
        code = "header_too_large";
        msg = "request headers too large";
    }
    __atomic_add_fetch(&c->io->metrics.parse_errors, 1, __ATOMIC_RELAXED);
    if (x && !x->request_id[0])
        hd__request_id_generate(c->io, x->request_id);
    hd__respond_raw_error(c, status, code, msg, x);
    if (x) {
        hd__exchange_put(c->io, x);
        c->x = NULL;
    }
}

/* Returns the exchange to the pool once answered. */
static void recycle_answered(struct hd_conn *c)
{
    if (c->x && c->x->answered) {
        hd__exchange_put(c->io, c->x);
        c->x = NULL;
        c->served_one = true;
    }
}

/* Parses @len bytes at @data; returns how many were consumed. Stops early
 * when a request is parked, output backs up, or the connection must close. */
static size_t feed(struct hd_conn *c, const char *data, size_t len)
{
    size_t used = 0;
    c->in_process = true;
    while (used < len && !blocked(c) && !c->close_after && !c->stream) {
        size_t n = http_parser_execute(&c->parser, &hd__parser_settings, data + used, len - used);
        used += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            hd__conn_dispatch(c);
            recycle_answered(c);
        } else if (err != HPE_OK) {
            parse_failed(c);
            used = len; /* nothing after a broken request is trusted */
        } else if (n == 0) {
            /* An Upgrade/CONNECT request stops the parser: herald speaks
             * only HTTP/1.1, so answer nothing more on this connection. */
            c->close_after = true;
            used = len;
        }
    }
    c->in_process = false;
    return used;
}

/* Parses what pending_in holds, if the connection can take requests now. */
static void conn_process(struct hd_conn *c)
{
    if (c->stream) { /* nothing after a stream's request is served */
        hd_buf_free(&c->pending_in);
        return;
    }
    if (c->pending_in.len == 0 || blocked(c) || c->close_after)
        return;
    size_t used = feed(c, c->pending_in.data, c->pending_in.len);
    hd_buf_consume(&c->pending_in, used);
    if (c->pending_in.len == 0 && c->pending_in.cap > HD_READ_CHUNK)
        hd_buf_free(&c->pending_in);
}

static void stop_reading(struct hd_conn *c)
{
    if (c->reading) {
        event_del(&c->rd);
        c->reading = false;
    }
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct hd_conn *c = arg;
    struct hd_io *io = c->io;
    bool hold = blocked(c) || c->pending_in.len > 0 || c->close_after;
    size_t room = HD_READ_CHUNK;
    if (hold && c->pending_in.len >= HD_PENDING_IN_MAX) {
        stop_reading(c); /* resumed when the backlog drains */
        return;
    }
    ssize_t n = read(fd, io->scratch, room);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        /* The peer is gone: a parked request's reply will be dropped. */
        hd__conn_close(c);
        return;
    }
    if (n < 0)
        return;
    if (c->close_after || c->stream)
        return; /* a refused connection or a stream: drop what follows */
    if (hold) {
        hd_buf_append(&c->pending_in, io->scratch, (size_t)n);
        conn_process(c);
    } else {
        size_t used = feed(c, io->scratch, (size_t)n);
        if (used < (size_t)n && !c->close_after)
            hd_buf_append(&c->pending_in, io->scratch + used, (size_t)n - used);
    }
    if (conn_flush(c))
        update_timer(c);
}

/* ---- writing ------------------------------------------------------------ */

/* Writes what it can. Returns false when the connection was closed. */
static bool conn_flush(struct hd_conn *c)
{
    if (c->stream)
        return hd__stream_flush(c);
    while (c->out.len) {
        ssize_t n = write(c->fd, c->out.data, c->out.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            hd__conn_close(c);
            return false;
        }
        hd_buf_consume(&c->out, (size_t)n);
    }
    if (c->out.len) {
        if (!c->writing) {
            event_add(&c->wr, NULL);
            c->writing = true;
        }
        return true;
    }
    if (c->writing) {
        event_del(&c->wr);
        c->writing = false;
    }
    if (c->out.cap > 64 * 1024)
        hd_buf_free(&c->out);
    if (c->close_after && !(c->x && !c->x->answered)) {
        hd__conn_close(c);
        return false;
    }
    return true;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct hd_conn *c = arg;
    if (!conn_flush(c))
        return;
    if (!c->writing)
        hd__conn_resume(c);
    else
        update_timer(c);
}

void hd__conn_resume(struct hd_conn *c)
{
    recycle_answered(c);
    conn_process(c);
    if (!conn_flush(c))
        return;
    if (!c->reading && !c->close_after && c->pending_in.len < HD_PENDING_IN_MAX) {
        event_add(&c->rd, NULL);
        c->reading = true;
    }
    update_timer(c);
}

/* ---- replies from actors ------------------------------------------------ */

struct hd_reply_to hd_exchange_park(struct hd_exchange *x)
{
    HD_ASSERT(!x->parked && !x->answered);
    x->parked = true;
    return (struct hd_reply_to){x->conn->io, x->conn->slot, x->conn->gen};
}

static void reply_destroy(struct hd_reply *r)
{
    if (r->destroy) {
        r->destroy(r);
        return;
    }
    free(r->body);
    free(r->headers);
    free(r);
}

struct hd_conn *hd__conn_find(struct hd_io *io, uint32_t slot, uint32_t gen)
{
    if (slot >= io->n_slots || io->gens[slot] != gen)
        return NULL;
    return io->conns[slot];
}

void hd__conn_deliver(struct hd_io *io, struct hd_reply *r)
{
    uint32_t slot = r->to.slot;
    struct hd_conn *c = hd__conn_find(io, slot, r->to.gen);
    if (!c || !c->x || !c->x->parked) {
        reply_destroy(r); /* its connection closed meanwhile */
        return;
    }
    struct hd_exchange *x = c->x;
    x->parked = false;
    if (r->resume) {
        uint32_t gen = r->to.gen;
        r->resume(x, r);
        /* A resume that neither answered nor parked would hang the client. */
        if (io->conns[slot] == c && io->gens[slot] == gen && c->x == x && !x->answered &&
            !x->parked)
            hd_respond_error(x, 500, "internal_error", "request was not answered", NULL);
    } else {
        if (r->headers)
            hd_buf_puts(&x->resp_headers, r->headers);
        hd_respond(x, r->status, r->content_type ? r->content_type : "application/json", r->body,
                   r->body_len);
    }
    reply_destroy(r);
}
