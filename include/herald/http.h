/* What a route handler sees: one request/response exchange, and the way to
 * answer it at once or park it until an actor replies.
 *
 * Threads: a struct hd_exchange belongs to the I/O thread that parsed it; all
 * functions taking one run on that thread only. hd_reply_post() is the one
 * call an actor makes, from any thread. */
#ifndef HERALD_HTTP_H
#define HERALD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/inbox.h"

struct hd_exchange;
struct hd_io;

/** A route handler. It must answer (hd_respond*) or park (hd_exchange_park)
 * before returning. */
typedef void (*hd_handler_fn)(struct hd_exchange *x);

/* ---- reading the request ------------------------------------------------ */

/** The method name ("GET"). */
const char *hd_req_method(const struct hd_exchange *x);
/** The raw path, without the query string; *len receives its length. */
const char *hd_req_path(const struct hd_exchange *x, size_t *len);
/** The raw query string (after '?', possibly empty); *len receives its length. */
const char *hd_req_query(const struct hd_exchange *x, size_t *len);
/** The value of header @name (case-insensitive), or NULL; *len its length. */
const char *hd_req_header(const struct hd_exchange *x, const char *name, size_t *len);
/** How many times header @name (case-insensitive) occurs. */
int hd_req_header_count(const struct hd_exchange *x, const char *name);
/** The request body (possibly empty); *len its length. */
const char *hd_req_body(const struct hd_exchange *x, size_t *len);
/** The raw value of path parameter @name ("{id}" in the pattern), or NULL. */
const char *hd_req_param(const struct hd_exchange *x, const char *name, size_t *len);
/**
 * Copies query parameter @name, percent-decoded ('+' as space), into @out
 * (capacity @cap, NUL-terminated). Returns its length, -ENOENT when absent,
 * -ENOSPC when it does not fit, -EINVAL when badly encoded.
 */
int hd_req_query_param(const struct hd_exchange *x, const char *name, char *out, size_t cap);
/** This request's id (taken from a well-formed X-Request-Id, else generated). */
const char *hd_req_id(const struct hd_exchange *x);
/** The client's socket address as text ("127.0.0.1"). */
const char *hd_req_peer(const struct hd_exchange *x);
/**
 * The client's address as text: the socket peer, or — only when the peer is
 * in server.trusted_proxies — the first untrusted hop of X-Forwarded-For read
 * right to left (all its lines, as one list; see hd_client_ip). Rate limits
 * and session records use it. Computed once per request.
 */
const char *hd_req_client_ip(const struct hd_exchange *x);
/** The ctx given to hd_server_route for the matched route (NULL if none). */
void *hd_route_ctx(const struct hd_exchange *x);
/**
 * Attaches per-request state to @x for handlers that continue across
 * several actor round trips. @free_fn (may be NULL) runs when the exchange
 * ends — answered, or its connection closed while parked. Replaces (and
 * frees) any earlier state.
 */
void hd_exchange_set_state(struct hd_exchange *x, void *state, void (*free_fn)(void *));
/** The state set with hd_exchange_set_state, or NULL. */
void *hd_exchange_state(const struct hd_exchange *x);
/** Detaches and returns the state without freeing it (the caller owns it now). */
void *hd_exchange_take_state(struct hd_exchange *x);
/** The I/O thread that owns @x. */
struct hd_io *hd_exchange_io(const struct hd_exchange *x);

/* ---- answering at once -------------------------------------------------- */

/** Adds a response header line; @name and @value are copied. Before hd_respond. */
void hd_respond_header(struct hd_exchange *x, const char *name, const char *value);

/**
 * Sends the response: status line, Date, Content-Type (@content_type, or none
 * when NULL), Content-Length, X-Request-Id, security and CORS headers, the
 * added headers, then @body (borrowed, copied). Ends the exchange.
 */
void hd_respond(struct hd_exchange *x, int status, const char *content_type, const char *body,
                size_t len);

/** hd_respond with Content-Type application/json. */
void hd_respond_json(struct hd_exchange *x, int status, const char *json, size_t len);

/**
 * Sends the error shape of DESIGN.md:
 * {"error":{"code":@code,"message":@message[,"field":@field]},"request_id":…}.
 * @field may be NULL.
 */
void hd_respond_error(struct hd_exchange *x, int status, const char *code, const char *message,
                      const char *field);

/* ---- parking until an actor answers ------------------------------------- */

/** Names a parked exchange: (I/O thread, connection slot, generation). Plain
 * data, safe to copy to any thread; never dereferenced off its thread. */
struct hd_reply_to {
    struct hd_io *io;
    uint32_t slot;
    uint32_t gen;
};

struct hd_reply;
/** Continues a parked exchange on its I/O thread (connection still open). It
 * must answer @x or park it again. Does not free @r. */
typedef void (*hd_resume_fn)(struct hd_exchange *x, struct hd_reply *r);

/** A reply message. Allocate with hd_reply_new (or embed it first in a larger
 * struct and set destroy). Posting gives it to the I/O thread. */
struct hd_reply {
    struct hd_msg _msg;
    struct hd_reply_to to;
    hd_resume_fn resume;                 /* NULL: send status/body below */
    void (*destroy)(struct hd_reply *r); /* NULL: free body, headers, r */
    int status;
    char *body; /* owned; JSON unless content_type says otherwise */
    size_t body_len;
    const char *content_type; /* static string; NULL = application/json */
    char *headers;            /* owned; extra "Name: value\r\n" lines, or NULL */
};

/**
 * Parks @x: the handler returns without answering, and the connection reads
 * no further request until a reply arrives. Returns the name to put in the
 * message for the actor. A reply for a connection closed meanwhile is dropped
 * (destroyed) without touching the connection.
 */
struct hd_reply_to hd_exchange_park(struct hd_exchange *x);

/** A zeroed reply to @to; the body (owned copy of @json) set when non-NULL. */
struct hd_reply *hd_reply_new(struct hd_reply_to to, int status, const char *json, size_t len);

/** Delivers @r to its I/O thread (takes ownership). Any thread; never blocks. */
void hd_reply_post(struct hd_reply *r);

#endif
