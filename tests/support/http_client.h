/* A raw HTTP/1.1 client for integration tests, over plain sockets.
 *
 * It sends exactly the bytes a test gives it (malformed ones included) and
 * parses what comes back: one response at a time, in order, from a
 * per-connection buffer, so pipelined responses are read one by one. Every
 * call that waits takes a timeout in milliseconds and never blocks past it.
 *
 * Errors are -errno: -ETIMEDOUT (nothing complete in time), -ECONNRESET (the
 * peer closed, by FIN or RST, before a complete response), -EPROTO (bytes
 * that are not an HTTP/1.x response). */
#ifndef HERALD_TEST_HTTP_CLIENT_H
#define HERALD_TEST_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct hd_http_conn {
    int fd;    /* -1 when closed */
    char *buf; /* received, not yet parsed */
    size_t len;
    size_t cap;
    bool eof; /* the peer closed (read returned 0, or ECONNRESET) */
};

struct hd_http_header {
    char *name;
    char *value;
};

struct hd_http_response {
    int status;
    int minor_version; /* HTTP/1.x */
    struct hd_http_header *headers;
    size_t n_headers;
    char *body; /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
};

/** Connects to 127.0.0.1:@port within @timeout_ms. Returns 0 or -errno. */
int hd_http_conn_open(struct hd_http_conn *c, int port, int timeout_ms);

/** Closes the socket (if open) and frees the buffer. Safe to call twice. */
void hd_http_conn_close(struct hd_http_conn *c);

/**
 * Closes with an RST instead of a FIN (SO_LINGER 0): "the client vanished".
 * Frees like hd_http_conn_close.
 */
void hd_http_conn_abort(struct hd_http_conn *c);

/**
 * Sends all @len bytes within @timeout_ms. While the socket is full it keeps
 * reading into the buffer, so a large pipelined write cannot deadlock
 * against the responses. Returns 0, -ETIMEDOUT, or -EPIPE/-ECONNRESET.
 */
int hd_http_conn_send(struct hd_http_conn *c, const void *data, size_t len, int timeout_ms);

/** hd_http_conn_send of a NUL-terminated string, 5 s timeout. */
int hd_http_conn_send_str(struct hd_http_conn *c, const char *s);

/**
 * Sends @len bytes one at a time, waiting @delay_ms after each while
 * watching the socket. Stops early when the peer sends anything or closes.
 * Returns how many bytes were sent (== @len when it went all the way).
 */
size_t hd_http_conn_send_slowly(struct hd_http_conn *c, const void *data, size_t len, int delay_ms);

/**
 * Reads and parses the next response within @timeout_ms. Body framing:
 * Content-Length, chunked, or until close; none for 1xx/204/304. On success
 * the caller frees @r with hd_http_response_free. Returns 0 or -errno.
 */
int hd_http_conn_read_response(struct hd_http_conn *c, struct hd_http_response *r, int timeout_ms);

/**
 * Waits up to @timeout_ms for the peer to close. Bytes that arrive meanwhile
 * are kept in the buffer. Returns 0 once closed, or -ETIMEDOUT.
 */
int hd_http_conn_wait_closed(struct hd_http_conn *c, int timeout_ms);

/** First value of header @name (case-insensitive), or NULL. Borrowed. */
const char *hd_http_header(const struct hd_http_response *r, const char *name);

/** How many times header @name occurs. */
size_t hd_http_header_count(const struct hd_http_response *r, const char *name);

/**
 * True when the comma-separated header @name (all its occurrences) holds
 * @token, compared case-insensitively after trimming spaces.
 */
bool hd_http_header_has_token(const struct hd_http_response *r, const char *name,
                              const char *token);

/** The body parsed as JSON (new reference), or NULL when it is not JSON. */
json_t *hd_http_response_json(const struct hd_http_response *r);

/** Frees what a response holds; safe on a zeroed response. */
void hd_http_response_free(struct hd_http_response *r);

/**
 * Opens a connection, sends @raw, reads one response, closes. Returns 0 or
 * -errno as hd_http_conn_read_response.
 */
int hd_http_exchange(int port, const char *raw, struct hd_http_response *r, int timeout_ms);

/** GET @target with Host and "Connection: close" through hd_http_exchange. */
int hd_http_get(int port, const char *target, struct hd_http_response *r, int timeout_ms);

#endif
