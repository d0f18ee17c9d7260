/* A Server-Sent Events client for integration tests, over a raw socket.
 *
 * It connects to 127.0.0.1, sends one GET (with an optional Bearer token,
 * Last-Event-ID and extra header lines, or none of them: the target may
 * carry ?token= and ?last_event_id=), reads the status line and headers
 * into a struct hd_http_response (so http_client.h and http_assert.h work on
 * it), then parses the stream incrementally into blocks: the lines up to a
 * blank line (text/event-stream, WHATWG HTML "Server-sent events"). Unlike
 * a browser's EventSource it returns every block, comments (the keep-alive
 * ping ":") and a lone "retry:" included, each stamped with the time it was
 * complete, so tests can check the bytes and the timing herald sends.
 *
 * Slow clients: SO_RCVBUF can be shrunk before connecting, and a client can
 * be opened without reading anything at all, not even the headers.
 *
 * Errors are -errno: -ETIMEDOUT (nothing complete in time), -ECONNRESET
 * (the server closed, by FIN or RST, and no complete block is left),
 * -EPROTO (bytes that are not an HTTP/1.x response or an SSE stream).
 * No function asserts: any thread may use a client it owns. */
#ifndef HERALD_TEST_SSE_CLIENT_H
#define HERALD_TEST_SSE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_client.h"

#define HD_SSE_STREAM_PATH "/api/notifications/stream"

/* How to open a stream; zeroed fields take the defaults. */
struct hd_sse_opts {
    const char *target;         /* request target; NULL: HD_SSE_STREAM_PATH */
    const char *bearer;         /* "Authorization: Bearer <bearer>"; NULL: none */
    const char *last_event_id;  /* "Last-Event-ID: <value>" (sent as given); NULL: none */
    const char *const *headers; /* more "Name: value" lines, NULL-terminated; NULL: none */
    int rcvbuf;                 /* SO_RCVBUF set before connect(); 0: the kernel's default */
    bool no_read;               /* send the request and read nothing, not even the head */
    int timeout_ms;             /* connect, send and head; 0: 10000 */
};

/* One client. Fields are read-only for callers. */
struct hd_sse_client {
    int fd;                       /* -1 once closed */
    struct hd_http_response head; /* status and headers; body only when status != 200 */
    bool head_read;               /* head is filled */
    bool eof;                     /* the server closed (read returned 0, or a reset) */
    uint64_t eof_ms;              /* hd_sse_now_ms() when the client saw the end; 0 before */
    char *buf;                    /* received, not yet parsed */
    size_t len, cap;
    size_t n_blocks; /* blocks returned so far */
    bool _open;      /* hd_sse_open ran: there is something to close */
};

/* One block of the stream: the lines up to a blank line. */
struct hd_sse_event {
    char *id;          /* the last "id:" value; NULL when there was none */
    char *event;       /* the last "event:" value; NULL when there was none */
    char *data;        /* "data:" values joined with '\n'; NULL when there was none */
    size_t data_lines; /* how many "data:" lines */
    long retry;        /* the last "retry:" value; -1 when none (or not all digits) */
    size_t comments;   /* how many comment lines (starting with ':') */
    char *comment;     /* the text of the first comment, after ':'; NULL when none */
    size_t lines;      /* every line of the block, unknown fields included */
    uint64_t at_ms;    /* hd_sse_now_ms() when it was parsed (its bytes had arrived) */
};

/** Monotonic milliseconds (the clock of at_ms and eof_ms). Any thread. */
uint64_t hd_sse_now_ms(void);

/**
 * Connects @c to 127.0.0.1:@port and sends "GET <target> HTTP/1.1" with
 * Host, "Accept: text/event-stream" and what @o asks for (NULL: defaults).
 * Unless @o->no_read, then reads the response head: for status 200 only the
 * head (the stream follows), for any other status the whole response (its
 * body by Content-Length) into @c->head. Returns 0 once that is done
 * (whatever the status), or -errno; @c is always safe to hd_sse_close after.
 */
int hd_sse_open(struct hd_sse_client *c, int port, const struct hd_sse_opts *o);

/**
 * Reads the response head of a client opened with no_read, as hd_sse_open
 * would have. Returns 0, or -errno. Calling it when the head is read
 * already returns 0.
 */
int hd_sse_read_head(struct hd_sse_client *c, int timeout_ms);

/** The status of the head (0 before it is read). */
int hd_sse_status(const struct hd_sse_client *c);

/** Header @name of the head (case-insensitive), or NULL. Borrowed from @c. */
const char *hd_sse_header(const struct hd_sse_client *c, const char *name);

/**
 * Reads whatever the socket holds now, without waiting, into @c's buffer
 * (blocks are parsed later, by hd_sse_next or hd_sse_read_head). Returns
 * the bytes read (> 0), 0 when the server has closed, or -EAGAIN when
 * nothing was there. For tests that drive many clients with poll(2) on
 * their fds.
 */
int hd_sse_pump(struct hd_sse_client *c);

/**
 * The next block, waiting up to @timeout_ms for it (0: only what has
 * arrived). On 0 the caller owns @ev (hd_sse_event_free); otherwise @ev is
 * left empty. Returns -EPROTO before the head was read, -ETIMEDOUT, or
 * -ECONNRESET when the server closed and no complete block remains (bytes
 * of an unfinished block are then dropped: by the SSE rules a block without
 * its blank line is never dispatched).
 */
int hd_sse_next(struct hd_sse_client *c, struct hd_sse_event *ev, int timeout_ms);

/**
 * Like hd_sse_next, but skips blocks that carry neither data, event nor id
 * (keep-alive comments, a lone retry), counting them in *@skipped when it is
 * not NULL. @timeout_ms bounds the whole wait.
 */
int hd_sse_next_event(struct hd_sse_client *c, struct hd_sse_event *ev, size_t *skipped,
                      int timeout_ms);

/** True when a complete block is already buffered (hd_sse_next would not wait). */
bool hd_sse_has_block(const struct hd_sse_client *c);

/**
 * Waits up to @timeout_ms for the server to close, discarding what arrives
 * meanwhile (complete blocks are counted in *@discarded when not NULL).
 * Returns 0 once closed (c->eof_ms says when), or -ETIMEDOUT.
 */
int hd_sse_wait_closed(struct hd_sse_client *c, size_t *discarded, int timeout_ms);

/**
 * True when the server is known to have closed and every complete block has
 * been returned. Does not read: call after hd_sse_next or hd_sse_pump.
 */
bool hd_sse_closed(const struct hd_sse_client *c);

/** Closes the socket (if open) and frees what @c holds. Safe twice, and on a zeroed client. */
void hd_sse_close(struct hd_sse_client *c);

/** Frees what @ev holds; safe on a zeroed event. */
void hd_sse_event_free(struct hd_sse_event *ev);

/** True when @ev is a notification event: "event: notification" with an id and data. */
bool hd_sse_is_notification(const struct hd_sse_event *ev);

/** The "id:" of @ev as a number, or -1 when it has none or it is not all digits. */
long long hd_sse_event_id(const struct hd_sse_event *ev);

#endif
