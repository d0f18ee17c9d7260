/* Private to src/net: the I/O thread, connection and exchange structures.
 * Everything here is touched only by the I/O thread that owns it, except
 * where a field says otherwise. */
#ifndef HERALD_NET_INTERNAL_H
#define HERALD_NET_INTERNAL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "herald/buf.h"
#include "herald/config.h"
#include "herald/client_ip.h"
#include "herald/http.h"
#include "herald/inbox.h"

#define HD_MAX_HEADERS    64
#define HD_MAX_PARAMS     4
#define HD_MAX_ROUTES     64
#define HD_REQUEST_ID_MAX 128
#define HD_READ_CHUNK     (64 * 1024)
#define HD_OUT_HIGH_WATER (256 * 1024) /* stop parsing while more is unsent */
#define HD_PENDING_IN_MAX (64 * 1024)  /* unparsed input kept while blocked */

struct hd_server;
struct hd_stream;
struct hd_router;
struct evconnlistener;

/* ---- routing --------------------------------------------------------- */

struct hd_route {
    int method; /* enum http_method */
    char *pattern;
    hd_handler_fn fn;
    void *ctx;
    int index; /* position in the router: metrics slot */
    int n_segments;
    bool has_params;
};

enum hd_match { HD_MATCH_FOUND, HD_MATCH_NOT_FOUND, HD_MATCH_WRONG_METHOD };

struct hd_param {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct hd_router *hd__router_new(void);
void hd__router_free(struct hd_router *r);
/** Adds a route; returns 0 or -EINVAL. */
int hd__router_add(struct hd_router *r, int method, const char *pattern, hd_handler_fn fn,
                   void *ctx);
/** Matches @path; on FOUND fills *route and params. On WRONG_METHOD, @allow
 * (capacity @allow_cap) receives the allowed methods ("GET, HEAD"). */
enum hd_match hd__router_match(const struct hd_router *r, int method, const char *path, size_t len,
                               const struct hd_route **route, struct hd_param *params,
                               int *n_params, char *allow, size_t allow_cap);
/** Routes in index order (for metrics labels). */
int hd__router_count(const struct hd_router *r);
const struct hd_route *hd__router_get(const struct hd_router *r, int index);

/* ---- per-thread HTTP metrics ------------------------------------------ */

#define HD_STATUS_SLOTS  24
#define HD_LATENCY_SLOTS 16

/* Written by the owning I/O thread with relaxed atomic stores, read by any
 * scraping thread with relaxed loads. Row HD_MAX_ROUTES is "unmatched". */
struct hd_http_metrics {
    uint64_t requests[HD_MAX_ROUTES + 1][HD_STATUS_SLOTS];
    uint64_t latency[HD_MAX_ROUTES + 1][HD_LATENCY_SLOTS];
    uint64_t latency_sum_us[HD_MAX_ROUTES + 1];
    uint64_t accepted;
    uint64_t refused;
    uint64_t timeouts;
    uint64_t parse_errors;
};

void hd__metrics_record(struct hd_http_metrics *m, int route_index, int status,
                        uint64_t duration_us);
void hd__metrics_collect(void *server, struct hd_buf *out);

/* ---- exchange --------------------------------------------------------- */

enum hd_timer_phase {
    HD_PHASE_NONE,
    HD_PHASE_IDLE,
    HD_PHASE_HEADER,
    HD_PHASE_BODY,
    HD_PHASE_WRITE
};

struct hd_header_ref {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
};

struct hd_exchange {
    struct hd_conn *conn;
    struct hd_exchange *_next_free;
    /* header arena: URL and header bytes, fixed capacity = max_header_bytes */
    char *arena;
    size_t arena_len;
    size_t arena_cap;
    const char *url;
    size_t url_len;
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
    struct hd_header_ref headers[HD_MAX_HEADERS];
    int n_headers;
    bool in_value; /* last header callback was a value */
    struct hd_buf body;
    struct hd_buf resp_headers; /* extra response header lines */
    const struct hd_route *route;
    void *state; /* a handler's, across round trips */
    void (*state_free)(void *);
    struct hd_param params[HD_MAX_PARAMS];
    int n_params;
    int method;
    int status; /* response status once answered */
    uint64_t start_us;
    int error_status; /* set by a parser callback that refuses the request */
    const char *error_code;
    bool headers_done; /* headers parsed: the body phase */
    bool complete;     /* whole message received */
    bool parked;
    bool answered;
    bool has_content_length;
    bool has_transfer_encoding;
    bool expect_continue;
    int h_origin, h_request_id; /* indexes into headers[], -1 when absent */
    char request_id[HD_REQUEST_ID_MAX + 1];
    char peer[48];
    char client_ip[HD_CLIENT_IP_MAX]; /* hd_req_client_ip, lazily; "" = not yet */
};

/* ---- connection ------------------------------------------------------- */

struct hd_conn {
    struct hd_io *io;
    int fd;
    uint32_t slot;
    uint32_t gen;
    struct event rd;
    struct event wr;
    struct event timer;
    http_parser parser;
    struct hd_buf out;        /* response bytes not yet written */
    struct hd_buf pending_in; /* bytes received but not parsed yet */
    struct hd_exchange *x;    /* request being read or served, or NULL */
    enum hd_timer_phase phase;
    bool reading;             /* rd is added */
    bool writing;             /* wr is added */
    bool close_after;         /* close once out is flushed */
    bool served_one;          /* at least one request answered (idle vs header timer) */
    bool in_process;          /* inside conn_process: replies must not re-enter */
    struct hd_stream *stream; /* a stream (SSE) once its headers went out */
    struct sockaddr_storage peer;
};

/* ---- I/O thread --------------------------------------------------------- */

struct hd_io {
    struct hd_server *server; /* read-only after start */
    const struct hd_config *cfg;
    int index;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener *listener;
    struct hd_inbox *inbox; /* replies and control messages; any thread posts */
    struct event *log_flush;
    const struct timeval *tv_idle, *tv_header, *tv_body; /* common timeouts */
    struct event *accept_retry;
    /* connection table: slot -> conn; gen[slot] bumps at every close */
    struct hd_conn **conns;
    uint32_t *gens;
    uint32_t n_slots;
    uint32_t *free_slots;
    uint32_t n_free;
    uint32_t n_open;
    struct hd_exchange *free_exchanges;
    uint32_t n_free_exchanges;
    /* streams (stream.c) */
    struct hd_stream *streams;  /* every open stream: the tick walks them */
    struct hd_stream *dirty;    /* streams with frames to write this batch */
    struct event *stream_flush; /* active while dirty is not empty */
    struct event *stream_tick;  /* once a second while streams exist */
    uint32_t n_streams;
    uint64_t ticks;
    char *scratch;      /* HD_READ_CHUNK bytes for reads */
    char *scratch_path; /* HD_READ_CHUNK bytes for decoding a path */
    bool draining;
    bool finished; /* atomic: loop exited */
    /* request ids: 12 hex of per-thread randomness + counter */
    char rid_prefix[13];
    uint64_t rid_counter;
    /* cached time strings, refreshed per read batch */
    time_t date_sec;
    char date_line[64]; /* "Date: …\r\n" */
    char log_time[32];  /* "2026-11-23T02:31:04" */
    struct hd_buf access_log;
    struct hd_http_metrics metrics;
};

struct hd_server {
    const struct hd_config *cfg;
    struct hd_router *router;
    struct hd_io *ios;
    int n_io;
    int port;
    int probe_fd;                       /* holds the port between bind and listen */
    struct hd_cidr_set trusted_proxies; /* server.trusted_proxies; read-only */
    uint32_t open_connections;          /* atomic, all threads */
    int max_connections;
    bool started;
};

/* conn.c */
/** Routes and runs the handler of a complete request (dispatch.c). */
void hd__conn_dispatch(struct hd_conn *c);
void hd__conn_accept(struct hd_io *io, int fd, const struct sockaddr *addr, int addrlen);
void hd__conn_close(struct hd_conn *c);
/** The open connection at (@slot, @gen) of @io, or NULL once it closed
 * (its slot's generation moved on). I/O thread. */
struct hd_conn *hd__conn_find(struct hd_io *io, uint32_t slot, uint32_t gen);
/** Delivers a reply to the parked exchange it names (I/O thread). */
void hd__conn_deliver(struct hd_io *io, struct hd_reply *r);
/** After an answer outside conn_process: flush, then parse what is pending. */
void hd__conn_resume(struct hd_conn *c);
/** Drain: close the connection if idle, else let it finish and close. */
void hd__conn_drain(struct hd_conn *c);

/* parse.c */
extern const http_parser_settings hd__parser_settings;
struct hd_exchange *hd__exchange_get(struct hd_io *io);
void hd__exchange_put(struct hd_io *io, struct hd_exchange *x);

/* respond.c */
/** Refreshes the cached Date and log time strings (once per second). */
void hd__io_refresh_clock(struct hd_io *io);
/** Appends a complete error response (Connection: close) for a request that
 * could not be parsed; no exchange needed. */
/** Appends the status line and headers of @x's answer to c->out. @stream:
 * an open-ended body (no Content-Length, Connection: close, SSE cache
 * headers) instead of @len bytes. */
void hd__append_head(struct hd_conn *c, struct hd_exchange *x, const char *request_id, int status,
                     const char *content_type, size_t len, bool keep, bool stream);
/** Records, logs and marks answered an exchange. */
void hd__finish_exchange(struct hd_conn *c, struct hd_exchange *x, int status);

/* stream.c */
/** Writes a stream connection's pending output. Returns false when the
 * connection was closed. */
bool hd__stream_flush(struct hd_conn *c);
/** The connection of a stream is closing: release the queue, unlink, tell
 * the application. */
void hd__stream_closed(struct hd_conn *c);
/** Frees the I/O thread's stream events (at destroy). */
void hd__io_streams_destroy(struct hd_io *io);

void hd__respond_raw_error(struct hd_conn *c, int status, const char *code, const char *message,
                           struct hd_exchange *x);
/** Status reason phrase. */
const char *hd__status_reason(int status);
/** Generates a request id into @out (HD_REQUEST_ID_MAX + 1 bytes). */
void hd__request_id_generate(struct hd_io *io, char *out);

/* cors.c */
/** Answers an OPTIONS request (preflight or plain); true when answered. */
bool hd__cors_preflight(struct hd_exchange *x);
/** Appends CORS response headers for the request's Origin, if any. */
void hd__cors_headers(const struct hd_exchange *x, struct hd_buf *out);

/* access log */
void hd__access_log(struct hd_exchange *x, int status, uint64_t duration_us);
void hd__access_log_flush(struct hd_io *io);

/* io.c */
/** Sends a message to an I/O thread's inbox (any thread). */
void hd__io_post(struct hd_io *io, struct hd_msg *m);
/** Sets up @io around an already listening socket (takes ownership of it). */
int hd__io_init(struct hd_io *io, struct hd_server *s, int index, int listen_fd);
int hd__io_start(struct hd_io *io);
/** Asks the thread to drain / to stop at once (any thread). */
void hd__io_drain(struct hd_io *io);
void hd__io_stop(struct hd_io *io);
/** Frees what hd__io_init made; after the thread was joined (or never ran). */
void hd__io_destroy(struct hd_io *io);

#endif
