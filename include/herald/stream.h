/* Long-lived responses (Server-Sent Events): after its headers, a stream's
 * connection carries only frames the server pushes, until either side ends
 * it. The net layer owns the socket and the queue; the application decides
 * what to push.
 *
 * Threads. A stream belongs to the I/O thread of its connection: every
 * function taking a struct hd_stream runs there. Frames are immutable and
 * reference counted, so one frame serialised once can be queued on streams
 * of every I/O thread. Other threads name a stream with a struct
 * hd_stream_ref and post an hd_io_task to its I/O thread.
 *
 * Writing. Pushed frames are queued (references, not copies) and written at
 * the end of the I/O thread's current batch of messages, all of a stream's
 * queued frames with one writev(2): a burst of events costs one syscall per
 * stream, not one per event. A stream whose socket refuses bytes and whose
 * queue would exceed buffer_bytes has its backlog replaced by the overflow
 * frame (SSE: "event: reset"). A socket that stays unwritable
 * write_timeout_s is closed.
 *
 * Memory. An idle stream holds its connection, the stream struct and no
 * buffer: the queue is inline for up to four frames. */
#ifndef HERALD_STREAM_H
#define HERALD_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/http.h"
#include "herald/inbox.h"

/* ---- frames ------------------------------------------------------------- */

/** Immutable bytes shared by many streams on many threads. */
struct hd_frame {
    uint32_t refs; /* atomic */
    uint32_t len;
    int64_t id; /* the application's (SSE: the event id; 0 for control frames) */
    char data[];
};

/** A frame holding a copy of @len bytes of @data, with @refs references
 * (>= 1). Any thread. */
struct hd_frame *hd_frame_new(int64_t id, const char *data, size_t len, uint32_t refs);

/** Adds @n references. Any thread. */
void hd_frame_ref(struct hd_frame *f, uint32_t n);

/** Drops one reference; frees @f with the last. NULL is fine. Any thread. */
void hd_frame_unref(struct hd_frame *f);

/* ---- streams ------------------------------------------------------------- */

struct hd_stream;

/** Names a stream from any thread; never dereferenced off its I/O thread. A
 * closed stream's ref finds nothing (the slot's generation moved on). */
struct hd_stream_ref {
    struct hd_io *io;
    uint32_t slot;
    uint32_t gen;
};

/** Why a stream's connection closed. */
enum hd_stream_close {
    HD_STREAM_CLOSED_PEER,          /* the client hung up (or the socket failed) */
    HD_STREAM_CLOSED_ENDED,         /* hd_stream_end, after its frames went out */
    HD_STREAM_CLOSED_WRITE_TIMEOUT, /* unwritable for write_timeout_s: a slow client */
    HD_STREAM_CLOSED_SERVER,        /* the server is stopping */
};

struct hd_stream_config {
    size_t buffer_bytes;       /* queued bytes above this: backlog replaced by overflow */
    int keepalive_s;           /* a ping frame every this many seconds (0: none) */
    int write_timeout_s;       /* unwritable this long: the connection is closed */
    struct hd_frame *ping;     /* borrowed, must outlive the stream (SSE: ":\n\n") */
    struct hd_frame *overflow; /* borrowed, likewise (SSE: "event: reset") */
    /** Once a second, on the I/O thread (it may call hd_stream_end on @s).
     * NULL: none. */
    void (*on_tick)(struct hd_stream *s, void *ctx);
    /** The backlog was replaced by the overflow frame (count it). NULL: none. */
    void (*on_overflow)(struct hd_stream *s, void *ctx);
    /** The connection closed. The stream and its ref are dead after this
     * returns; free @ctx here. */
    void (*on_close)(struct hd_stream *s, void *ctx, enum hd_stream_close why);
    void *ctx;
};

/**
 * Turns @x (not parked, not answered) into a stream: sends "200 OK" with
 * @content_type, no Content-Length, the headers added with
 * hd_respond_header, the usual security/CORS/request-id headers, then the
 * @first_len bytes of @first (SSE: "retry: 3000\n\n"). The exchange ends
 * (access log status 200); from now on the connection reads only to notice
 * a hang-up and discards what it reads. @cfg is copied. Never NULL.
 */
struct hd_stream *hd_stream_start(struct hd_exchange *x, const char *content_type,
                                  const char *first, size_t first_len,
                                  const struct hd_stream_config *cfg);

/** The stream's name for other threads. */
struct hd_stream_ref hd_stream_ref(const struct hd_stream *s);

/** The stream @ref names if it is still open, else NULL. On ref.io's thread. */
struct hd_stream *hd_stream_find(struct hd_stream_ref ref);

/** The ctx of its config. */
void *hd_stream_ctx(const struct hd_stream *s);

/**
 * Queues @f (takes one reference of the caller's). Written at the end of
 * the current batch, with everything else queued. A stream is "behind" only
 * when its socket refused bytes: then a frame that would take the queue
 * past buffer_bytes (or the end of a batch that left more than that
 * unwritten) replaces the backlog with the overflow frame, and on_overflow
 * runs; while that frame is still queued last, new frames are dropped.
 * The head frame, often partly written, is never dropped: a stream holds at
 * most one frame plus buffer_bytes.
 * Returns false when this push caused an overflow. After hd_stream_end:
 * drops @f and returns true.
 */
bool hd_stream_push(struct hd_stream *s, struct hd_frame *f);

/** Queues @last (reference taken; NULL: none), writes what is queued, then
 * closes the connection (on_close runs then). Idempotent. */
void hd_stream_end(struct hd_stream *s, struct hd_frame *last);

/** Bytes queued and not yet written (for tests and metrics). */
size_t hd_stream_queued_bytes(const struct hd_stream *s);

/* ---- tasks on I/O threads -------------------------------------------------- */

struct hd_io_task;
/** Runs on the I/O thread it was posted to; owns @t. */
typedef void (*hd_io_task_fn)(struct hd_io *io, struct hd_io_task *t);

/** A message to an I/O thread: embed it first in a larger struct. */
struct hd_io_task {
    struct hd_msg _msg;
    hd_io_task_fn run;
};

/** Posts @t to @io (ownership passes). Any thread; never blocks. A task
 * still queued when the I/O thread has stopped runs with @io NULL (on the
 * thread freeing the server): it must then only free itself. */
void hd_io_task_post(struct hd_io *io, struct hd_io_task *t);

/** The index of @io among the server's I/O threads (0 .. n-1). */
int hd_io_index(const struct hd_io *io);

#endif
