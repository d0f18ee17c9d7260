/* Streams: connections that carry pushed frames after their headers (SSE).
 * Frames are queued by reference and written with one writev(2) per stream
 * at the end of the I/O thread's batch; a once-a-second tick per I/O thread
 * sends keep-alive pings, closes sockets unwritable for too long, and lets
 * the application check each stream (its session still alive). */
#include "net/net_internal.h"

#include "herald/core.h"
#include "herald/stream.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define INLINE_FRAMES 4
#define MAX_IOV       64

struct hd_stream {
    struct hd_conn *conn;
    struct hd_stream_config cfg;
    struct hd_stream *prev, *next;             /* io->streams */
    struct hd_stream *prev_dirty, *next_dirty; /* io->dirty */
    bool dirty;
    bool ending;
    enum hd_stream_close why;
    uint32_t n, cap;     /* frames queued, capacity of q */
    uint32_t head_off;   /* bytes of q[0] already written */
    size_t queued;       /* bytes still to write, q[0]'s remainder included */
    struct hd_frame **q; /* inline_q or the heap */
    struct hd_frame *inline_q[INLINE_FRAMES];
    uint64_t tick0;           /* io->ticks at start: the phase of its pings */
    int64_t blocked_since_ms; /* 0 while writable */
};

/* ---- frames --------------------------------------------------------------- */

struct hd_frame *hd_frame_new(int64_t id, const char *data, size_t len, uint32_t refs)
{
    HD_ASSERT(refs >= 1 && len <= UINT32_MAX);
    struct hd_frame *f = hd_malloc(sizeof(*f) + len);
    f->refs = refs;
    f->len = (uint32_t)len;
    f->id = id;
    memcpy(f->data, data, len);
    return f;
}

void hd_frame_ref(struct hd_frame *f, uint32_t n)
{
    __atomic_add_fetch(&f->refs, n, __ATOMIC_RELAXED);
}

void hd_frame_unref(struct hd_frame *f)
{
    if (f && __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(f);
}

/* ---- helpers ----------------------------------------------------------------- */

static void drop_queue(struct hd_stream *s, bool keep_partial_head)
{
    uint32_t keep = keep_partial_head && s->n > 0 && s->head_off > 0 ? 1 : 0;
    for (uint32_t i = keep; i < s->n; i++)
        hd_frame_unref(s->q[i]);
    s->n = keep;
    s->queued = keep ? s->q[0]->len - s->head_off : 0;
    if (!keep)
        s->head_off = 0;
}

static void shrink_queue(struct hd_stream *s)
{
    if (s->q != s->inline_q && s->n <= INLINE_FRAMES) {
        memcpy(s->inline_q, s->q, s->n * sizeof(*s->q));
        free(s->q);
        s->q = s->inline_q;
        s->cap = INLINE_FRAMES;
    }
}

static void append(struct hd_stream *s, struct hd_frame *f)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap * 2;
        struct hd_frame **q = hd_malloc(cap * sizeof(*q));
        memcpy(q, s->q, s->n * sizeof(*q));
        if (s->q != s->inline_q)
            free(s->q);
        s->q = q;
        s->cap = cap;
    }
    s->q[s->n++] = f;
    s->queued += f->len;
}

static void unlink_dirty(struct hd_io *io, struct hd_stream *s)
{
    if (!s->dirty)
        return;
    if (s->prev_dirty)
        s->prev_dirty->next_dirty = s->next_dirty;
    else
        io->dirty = s->next_dirty;
    if (s->next_dirty)
        s->next_dirty->prev_dirty = s->prev_dirty;
    s->prev_dirty = s->next_dirty = NULL;
    s->dirty = false;
}

static void mark_dirty(struct hd_stream *s)
{
    struct hd_io *io = s->conn->io;
    if (s->dirty)
        return;
    s->dirty = true;
    s->prev_dirty = NULL;
    s->next_dirty = io->dirty;
    if (io->dirty)
        io->dirty->prev_dirty = s;
    else
        event_active(io->stream_flush, EV_WRITE, 0); /* after this batch */
    io->dirty = s;
}

static void overflow(struct hd_stream *s);

/* Queued bytes behind the head frame: the head (often partly written) must
 * go out whole, so a stream holds at most one frame plus buffer_bytes. */
static size_t behind(const struct hd_stream *s)
{
    return s->n > 0 ? s->queued - (s->q[0]->len - s->head_off) : 0;
}

/* ---- writing --------------------------------------------------------------- */

bool hd__stream_flush(struct hd_conn *c)
{
    struct hd_stream *s = c->stream;
    struct hd_io *io = c->io;
    unlink_dirty(io, s);
    while (c->out.len || s->n) {
        struct iovec iov[MAX_IOV];
        int k = 0;
        if (c->out.len)
            iov[k++] = (struct iovec){c->out.data, c->out.len};
        for (uint32_t i = 0; i < s->n && k < MAX_IOV; i++) {
            uint32_t off = i == 0 ? s->head_off : 0;
            iov[k++] = (struct iovec){s->q[i]->data + off, s->q[i]->len - off};
        }
        ssize_t w = writev(c->fd, iov, k);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0) {
            s->why = HD_STREAM_CLOSED_PEER;
            hd__conn_close(c);
            return false;
        }
        size_t left = (size_t)w;
        size_t from_out = left < c->out.len ? left : c->out.len;
        hd_buf_consume(&c->out, from_out);
        left -= from_out;
        uint32_t done = 0;
        while (left && done < s->n) {
            size_t rest = s->q[done]->len - (done == 0 ? s->head_off : 0);
            if (left < rest) {
                s->head_off = (done == 0 ? s->head_off : 0) + (uint32_t)left;
                s->queued -= left;
                left = 0;
                break;
            }
            left -= rest;
            s->queued -= rest;
            s->head_off = 0;
            done++;
        }
        for (uint32_t i = 0; i < done; i++)
            hd_frame_unref(s->q[i]);
        memmove(s->q, s->q + done, (s->n - done) * sizeof(*s->q));
        s->n -= done;
    }
    shrink_queue(s);
    if (c->out.len == 0 && c->out.cap)
        hd_buf_free(&c->out); /* an idle stream holds no buffer */
    if (c->out.len || s->n) {
        if (behind(s) > s->cfg.buffer_bytes)
            overflow(s); /* a batch larger than the buffer did not go out */
        if (!c->writing) {
            event_add(&c->wr, NULL);
            c->writing = true;
        }
        if (!s->blocked_since_ms)
            s->blocked_since_ms = (int64_t)hd_now_ms();
        return true;
    }
    if (c->writing) {
        event_del(&c->wr);
        c->writing = false;
    }
    s->blocked_since_ms = 0;
    if (s->ending) {
        s->why = HD_STREAM_CLOSED_ENDED;
        hd__conn_close(c);
        return false;
    }
    return true;
}

/* End of an I/O batch: write every stream that got frames. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct hd_io *io = arg;
    while (io->dirty) {
        struct hd_stream *s = io->dirty;
        if (s->conn->writing)
            unlink_dirty(io, s); /* on_write will send it */
        else
            hd__stream_flush(s->conn); /* unlinks it, may close it */
    }
}

/* ---- the tick ------------------------------------------------------------------ */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct hd_io *io = arg;
    io->ticks++;
    int64_t now = (int64_t)hd_now_ms();
    struct hd_stream *next;
    for (struct hd_stream *s = io->streams; s; s = next) {
        next = s->next;
        if (s->blocked_since_ms && s->cfg.write_timeout_s > 0 &&
            now - s->blocked_since_ms >= (int64_t)s->cfg.write_timeout_s * 1000) {
            s->why = HD_STREAM_CLOSED_WRITE_TIMEOUT;
            hd__conn_close(s->conn);
            continue;
        }
        if (s->cfg.on_tick && !s->ending)
            s->cfg.on_tick(s, s->cfg.ctx); /* may end s; it closes after its flush */
    }
    /* pings after the callbacks: a stream closed there is no longer listed */
    for (struct hd_stream *s = io->streams; s; s = s->next) {
        int k = s->cfg.keepalive_s;
        if (k > 0 && !s->ending && s->cfg.ping && (io->ticks - s->tick0) % (uint64_t)k == 0) {
            hd_frame_ref(s->cfg.ping, 1);
            hd_stream_push(s, s->cfg.ping);
        }
    }
}

/* ---- lifecycle ------------------------------------------------------------------ */

struct hd_stream *hd_stream_start(struct hd_exchange *x, const char *content_type,
                                  const char *first, size_t first_len,
                                  const struct hd_stream_config *cfg)
{
    struct hd_conn *c = x->conn;
    struct hd_io *io = c->io;
    HD_ASSERT(!x->answered && !x->parked && !c->stream);
    hd__append_head(c, x, x->request_id, 200, content_type, 0, false, true);
    if (first_len)
        hd_buf_append(&c->out, first, first_len);
    hd__finish_exchange(c, x, 200);
    struct hd_stream *s = hd_calloc(1, sizeof(*s));
    s->conn = c;
    s->cfg = *cfg;
    s->q = s->inline_q;
    s->cap = INLINE_FRAMES;
    s->tick0 = io->ticks;
    s->why = HD_STREAM_CLOSED_PEER;
    c->stream = s;
    c->close_after = false; /* the stream decides when to close */
    s->next = io->streams;
    if (io->streams)
        io->streams->prev = s;
    io->streams = s;
    if (io->n_streams++ == 0) {
        if (!io->stream_flush) {
            io->stream_flush = event_new(io->base, -1, 0, on_flush, io);
            io->stream_tick = event_new(io->base, -1, EV_PERSIST, on_tick, io);
        }
        static const struct timeval second = {1, 0};
        event_add(io->stream_tick, &second);
    }
    mark_dirty(s);               /* the headers go out with this batch */
    if (!c->in_process) {        /* else the parse loop recycles it */
        hd__exchange_put(io, x); /* its header arena is not held for the stream's life */
        c->x = NULL;
        c->served_one = true;
    }
    return s;
}

struct hd_stream_ref hd_stream_ref(const struct hd_stream *s)
{
    return (struct hd_stream_ref){s->conn->io, s->conn->slot, s->conn->gen};
}

struct hd_stream *hd_stream_find(struct hd_stream_ref ref)
{
    struct hd_conn *c = hd__conn_find(ref.io, ref.slot, ref.gen);
    return c ? c->stream : NULL;
}

void *hd_stream_ctx(const struct hd_stream *s)
{
    return s->cfg.ctx;
}

size_t hd_stream_queued_bytes(const struct hd_stream *s)
{
    return s->queued;
}

/* The client is too far behind: its backlog (all but a partly written
 * frame, which must finish or the byte stream breaks) becomes one overflow
 * frame. Nothing new while that frame is still queued last. */
static void overflow(struct hd_stream *s)
{
    if (!s->cfg.overflow || (s->n > 0 && s->q[s->n - 1] == s->cfg.overflow))
        return;
    drop_queue(s, true);
    hd_frame_ref(s->cfg.overflow, 1);
    append(s, s->cfg.overflow);
    if (s->cfg.on_overflow)
        s->cfg.on_overflow(s, s->cfg.ctx);
}

bool hd_stream_push(struct hd_stream *s, struct hd_frame *f)
{
    if (s->ending) {
        hd_frame_unref(f);
        return true;
    }
    /* Only a socket that refused bytes makes a stream "behind": frames queued
     * within one batch are written together at its end, however many. */
    if (s->conn->writing && s->n > 0 &&
        (s->q[s->n - 1] == s->cfg.overflow || behind(s) + f->len > s->cfg.buffer_bytes)) {
        hd_frame_unref(f);
        bool fresh = s->q[s->n - 1] != s->cfg.overflow;
        overflow(s);
        return !fresh;
    }
    append(s, f);
    mark_dirty(s);
    return true;
}

void hd_stream_end(struct hd_stream *s, struct hd_frame *last)
{
    if (s->ending) {
        hd_frame_unref(last);
        return;
    }
    if (last)
        append(s, last);
    s->ending = true;
    mark_dirty(s);
}

void hd__stream_closed(struct hd_conn *c)
{
    struct hd_stream *s = c->stream;
    struct hd_io *io = c->io;
    c->stream = NULL;
    unlink_dirty(io, s);
    if (s->prev)
        s->prev->next = s->next;
    else
        io->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (--io->n_streams == 0 && io->stream_tick)
        event_del(io->stream_tick);
    drop_queue(s, false);
    if (s->q != s->inline_q)
        free(s->q);
    if (io->draining && s->why == HD_STREAM_CLOSED_PEER)
        s->why = HD_STREAM_CLOSED_SERVER;
    if (s->cfg.on_close)
        s->cfg.on_close(s, s->cfg.ctx, s->why);
    free(s);
}

void hd__io_streams_destroy(struct hd_io *io)
{
    if (io->stream_flush)
        event_free(io->stream_flush);
    if (io->stream_tick)
        event_free(io->stream_tick);
}

/* ---- tasks ------------------------------------------------------------------------ */

int hd_io_index(const struct hd_io *io)
{
    return io->index;
}
