/* Building responses into a connection's output buffer: one contiguous
 * head + body, written with one write(2) per read batch by conn.c. */
#include "net/net_internal.h"

#include "herald/core.h"
#include "herald/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *hd__status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

void hd__io_refresh_clock(struct hd_io *io)
{
    struct timeval tv;
    event_base_gettimeofday_cached(io->base, &tv);
    if (tv.tv_sec == io->date_sec)
        return;
    io->date_sec = tv.tv_sec;
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    strftime(io->date_line, sizeof(io->date_line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    strftime(io->log_time, sizeof(io->log_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void hd__request_id_generate(struct hd_io *io, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++io->rid_counter;
    memcpy(out, io->rid_prefix, 12);
    for (int i = 23; i >= 12; i--, n >>= 4) /* no printf: once per request */
        out[i] = hex[n & 15];
    out[24] = '\0';
}

static void append_status_line(struct hd_buf *b, int status)
{
    hd_buf_puts(b, "HTTP/1.1 ");
    hd_buf_append_uint(b, (size_t)status);
    hd_buf_puts(b, " ");
    hd_buf_puts(b, hd__status_reason(status));
    hd_buf_puts(b, "\r\n");
}

/* Whether the connection stays open after answering @x. */
static bool keep_alive(struct hd_conn *c, struct hd_exchange *x)
{
    if (c->close_after || c->io->draining || !x || x->error_status)
        return false;
    return x->complete && http_should_keep_alive(&c->parser);
}

void hd__append_head(struct hd_conn *c, struct hd_exchange *x, const char *request_id, int status,
                     const char *content_type, size_t len, bool keep, bool stream)
{
    struct hd_buf *b = &c->out;
    hd__io_refresh_clock(c->io);
    hd_buf_reserve(b, 384 + (x ? x->resp_headers.len : 0));
    append_status_line(b, status);
    hd_buf_puts(b, c->io->date_line);
    if (content_type) {
        hd_buf_puts(b, "Content-Type: ");
        hd_buf_puts(b, content_type);
        hd_buf_puts(b, "\r\n");
    }
    if (status != 204 && status >= 200 && !stream) {
        hd_buf_puts(b, "Content-Length: ");
        hd_buf_append_uint(b, len);
        hd_buf_puts(b, "\r\n");
    }
    if (request_id[0]) {
        hd_buf_puts(b, "X-Request-Id: ");
        hd_buf_puts(b, request_id);
        hd_buf_puts(b, "\r\n");
    }
    if (stream) /* the body ends when the connection does; proxies must not buffer it */
        hd_buf_puts(b, "X-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\n"
                       "X-Accel-Buffering: no\r\n");
    else
        hd_buf_puts(b, "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n");
    if (x) {
        hd__cors_headers(x, b);
        hd_buf_append(b, x->resp_headers.data, x->resp_headers.len);
    }
    if (!keep)
        hd_buf_puts(b, "Connection: close\r\n");
    else if (c->parser.http_minor == 0)
        hd_buf_puts(b, "Connection: keep-alive\r\n");
    hd_buf_puts(b, "\r\n");
}

void hd_respond_header(struct hd_exchange *x, const char *name, const char *value)
{
    hd_buf_puts(&x->resp_headers, name);
    hd_buf_puts(&x->resp_headers, ": ");
    hd_buf_puts(&x->resp_headers, value);
    hd_buf_puts(&x->resp_headers, "\r\n");
}

void hd__finish_exchange(struct hd_conn *c, struct hd_exchange *x, int status)
{
    uint64_t took = hd_now_us() - x->start_us;
    hd__metrics_record(&c->io->metrics, x->route ? x->route->index : HD_MAX_ROUTES, status, took);
    hd__access_log(x, status, took);
    x->answered = true;
    x->status = status;
}

void hd_respond(struct hd_exchange *x, int status, const char *content_type, const char *body,
                size_t len)
{
    struct hd_conn *c = x->conn;
    HD_ASSERT(!x->answered);
    bool keep = keep_alive(c, x);
    hd__append_head(c, x, x->request_id, status, content_type, len, keep, false);
    if (x->method != HTTP_HEAD && len)
        hd_buf_append(&c->out, body, len);
    if (!keep)
        c->close_after = true;
    hd__finish_exchange(c, x, status);
    if (!c->in_process)
        hd__conn_resume(c);
}

void hd_respond_json(struct hd_exchange *x, int status, const char *json, size_t len)
{
    hd_respond(x, status, "application/json", json, len);
}

/* Formats the error body of DESIGN.md into @out. */
static size_t format_error(char *out, size_t cap, const char *code, const char *message,
                           const char *field, const char *request_id)
{
    size_t o = (size_t)snprintf(out, cap, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    o += hd_json_escape(out + o, cap - o - 200, message, strlen(message));
    if (field) {
        o += (size_t)snprintf(out + o, cap - o, "\",\"field\":\"");
        o += hd_json_escape(out + o, cap - o - 160, field, strlen(field));
    }
    o += (size_t)snprintf(out + o, cap - o, "\"},\"request_id\":\"%s\"}", request_id);
    return o < cap ? o : cap - 1;
}

void hd_respond_error(struct hd_exchange *x, int status, const char *code, const char *message,
                      const char *field)
{
    char body[1024];
    size_t n = format_error(body, sizeof(body), code, message, field, x->request_id);
    hd_respond(x, status, "application/json", body, n);
}

void hd__respond_raw_error(struct hd_conn *c, int status, const char *code, const char *message,
                           struct hd_exchange *x)
{
    char rid[HD_REQUEST_ID_MAX + 1];
    const char *id = x && x->request_id[0] ? x->request_id : rid;
    if (id == rid)
        hd__request_id_generate(c->io, rid);
    char body[512];
    size_t n = format_error(body, sizeof(body), code, message, NULL, id);
    if (x && !x->request_id[0])
        memcpy(x->request_id, rid, sizeof(rid));
    hd__append_head(c, x, id, status, "application/json", n, false, false);
    hd_buf_append(&c->out, body, n);
    c->close_after = true;
    if (x) {
        hd__finish_exchange(c, x, status);
    } else {
        hd__metrics_record(&c->io->metrics, HD_MAX_ROUTES, status, 0);
    }
}
