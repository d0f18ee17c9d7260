/* Glue between libhttp-parser and an exchange: the callbacks copy the URL and
 * headers into the exchange's fixed arena (its size is the header limit, so
 * exceeding it is a 431), the body into a buffer bounded by the body limit,
 * and pause the parser at the end of each message so that requests on one
 * connection are served strictly one after the other. */
#include "net/net_internal.h"

#include "herald/core.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct hd_conn *conn_of(http_parser *p)
{
    return p->data;
}

struct hd_exchange *hd__exchange_get(struct hd_io *io)
{
    struct hd_exchange *x = io->free_exchanges;
    if (x) {
        io->free_exchanges = x->_next_free;
        io->n_free_exchanges--;
    } else {
        x = hd_calloc(1, sizeof(*x));
        x->arena_cap = io->cfg->server.max_header_bytes;
        x->arena = hd_malloc(x->arena_cap);
    }
    struct hd_buf body = x->body, resp = x->resp_headers;
    char *arena = x->arena;
    size_t cap = x->arena_cap;
    body.len = 0;
    resp.len = 0;
    /* Reset everything but the reusable storage. */
    memset(x, 0, offsetof(struct hd_exchange, request_id));
    x->arena = arena;
    x->arena_cap = cap;
    x->body = body;
    x->resp_headers = resp;
    x->request_id[0] = '\0';
    x->peer[0] = '\0';
    x->client_ip[0] = '\0';
    x->h_origin = x->h_request_id = -1;
    return x;
}

void hd__exchange_put(struct hd_io *io, struct hd_exchange *x)
{
    if (x->state && x->state_free)
        x->state_free(x->state);
    x->state = NULL;
    x->state_free = NULL;
    /* Keep a few warm exchanges per thread; give large buffers back. */
    if (io->n_free_exchanges >= 64) {
        free(x->arena);
        hd_buf_free(&x->body);
        hd_buf_free(&x->resp_headers);
        free(x);
        return;
    }
    if (x->body.cap > 64 * 1024)
        hd_buf_free(&x->body);
    x->_next_free = io->free_exchanges;
    io->free_exchanges = x;
    io->n_free_exchanges++;
}

/* Refuses the request being parsed: the callback returns non-zero, the
 * parser stops, and the connection answers @status and closes. */
static int refuse(struct hd_exchange *x, int status, const char *code)
{
    if (!x->error_status) {
        x->error_status = status;
        x->error_code = code;
    }
    return -1;
}

static int arena_append(struct hd_exchange *x, const char *at, size_t len)
{
    if (x->arena_cap - x->arena_len < len + 1)
        return refuse(x, 431, "header_too_large");
    memcpy(x->arena + x->arena_len, at, len);
    x->arena_len += len;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct hd_conn *c = conn_of(p);
    if (!c->x)
        c->x = hd__exchange_get(c->io);
    c->x->conn = c;
    c->x->start_us = hd_now_us();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct hd_exchange *x = conn_of(p)->x;
    if (!x->url)
        x->url = x->arena + x->arena_len;
    x->url_len += len;
    return arena_append(x, at, len);
}

/* Terminates the previous header's value with a NUL and notes the headers
 * the server itself needs. */
static void finish_header(struct hd_exchange *x)
{
    if (!x->in_value || x->n_headers == 0)
        return;
    struct hd_header_ref *h = &x->headers[x->n_headers - 1];
    x->arena[x->arena_len++] = '\0'; /* room reserved by arena_append */
    int i = x->n_headers - 1;
    if (h->name_len == 6 && strncasecmp(h->name, "origin", 6) == 0)
        x->h_origin = i;
    else if (h->name_len == 12 && strncasecmp(h->name, "x-request-id", 12) == 0)
        x->h_request_id = i;
    else if (h->name_len == 14 && strncasecmp(h->name, "content-length", 14) == 0)
        x->has_content_length = true;
    else if (h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0)
        x->has_transfer_encoding = true;
    else if (h->name_len == 6 && strncasecmp(h->name, "expect", 6) == 0)
        x->expect_continue = h->value_len == 12 && strncasecmp(h->value, "100-continue", 12) == 0;
    x->in_value = false;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct hd_exchange *x = conn_of(p)->x;
    if (x->in_value || x->n_headers == 0) {
        finish_header(x);
        if (x->n_headers == HD_MAX_HEADERS)
            return refuse(x, 431, "header_too_large");
        /* the URL, or the previous value, is complete: NUL-terminate it */
        if (x->n_headers == 0) {
            if (x->arena_len + 1 > x->arena_cap)
                return refuse(x, 431, "header_too_large");
            x->arena[x->arena_len++] = '\0';
        }
        x->headers[x->n_headers++] = (struct hd_header_ref){x->arena + x->arena_len, NULL, 0, 0};
    }
    x->headers[x->n_headers - 1].name_len += (uint32_t)len;
    return arena_append(x, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct hd_exchange *x = conn_of(p)->x;
    struct hd_header_ref *h = &x->headers[x->n_headers - 1];
    if (!x->in_value) {
        if (x->arena_len + 1 > x->arena_cap)
            return refuse(x, 431, "header_too_large");
        x->arena[x->arena_len++] = '\0'; /* end of the name */
        h->value = x->arena + x->arena_len;
        x->in_value = true;
    }
    h->value_len += (uint32_t)len;
    return arena_append(x, at, len);
}

/* Splits the URL into path and query. The parser already refused bytes that
 * are not allowed in a request target. */
static int split_url(struct hd_exchange *x)
{
    if (!x->url || x->url_len == 0 || x->url[0] != '/')
        return refuse(x, 400, "bad_request");
    const char *q = memchr(x->url, '?', x->url_len);
    const char *hash = memchr(x->url, '#', x->url_len);
    size_t end = hash ? (size_t)(hash - x->url) : x->url_len;
    x->path = x->url;
    x->path_len = q && q < x->url + end ? (size_t)(q - x->url) : end;
    x->query = q && q < x->url + end ? q + 1 : x->url + end;
    x->query_len = (size_t)(x->url + end - x->query);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct hd_conn *c = conn_of(p);
    struct hd_exchange *x = c->x;
    if (x->n_headers == 0) { /* no header at all: terminate the URL */
        if (x->arena_len + 1 > x->arena_cap)
            return refuse(x, 431, "header_too_large");
        x->arena[x->arena_len++] = '\0';
    }
    finish_header(x);
    x->method = p->method;
    x->headers_done = true;
    if (p->http_major != 1) /* HTTP/0.9 lines parse, but are not HTTP/1.x */
        return refuse(x, 400, "bad_request");
    if (split_url(x) != 0)
        return -1;
    /* Both framing headers: refuse rather than guess (request smuggling). */
    if (x->has_content_length && x->has_transfer_encoding)
        return refuse(x, 400, "bad_request");
    if (x->has_content_length && p->content_length > c->io->cfg->server.max_body_bytes)
        return refuse(x, 413, "body_too_large");
    /* curl and others wait for this before sending a body */
    if (x->expect_continue && p->http_major == 1 && p->http_minor == 1)
        hd_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct hd_conn *c = conn_of(p);
    struct hd_exchange *x = c->x;
    if (x->body.len + len > c->io->cfg->server.max_body_bytes)
        return refuse(x, 413, "body_too_large");
    hd_buf_append(&x->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct hd_exchange *x = conn_of(p)->x;
    x->complete = true;
    http_parser_pause(p, 1); /* serve this request before parsing the next */
    return 0;
}

const http_parser_settings hd__parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
