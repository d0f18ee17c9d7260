/* A raw HTTP/1.1 test client: see http_client.h. */
#include "http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (1u << 20)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(long long deadline)
{
    long long left = deadline - now_ms();
    return left > 0 ? (int)left : 0;
}

/* Waits for @events; returns revents, 0 on timeout, or -errno. */
static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int rc;
    do {
        rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return -errno;
    return rc == 0 ? 0 : p.revents;
}

int hd_http_conn_open(struct hd_http_conn *c, int port, int timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int err = 0;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            int ev = wait_fd(c->fd, POLLOUT, timeout_ms);
            socklen_t len = sizeof err;
            if (ev == 0)
                err = ETIMEDOUT;
            else if (ev < 0)
                err = -ev;
            else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
        }
    }
    if (err) {
        close(c->fd);
        c->fd = -1;
        return -err;
    }
    return 0;
}

void hd_http_conn_close(struct hd_http_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

void hd_http_conn_abort(struct hd_http_conn *c)
{
    if (c->fd >= 0) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    hd_http_conn_close(c);
}

/* Reads what is available into the buffer: >0 bytes, 0 at EOF, -EAGAIN. */
static int recv_some(struct hd_http_conn *c)
{
    if (c->cap - c->len < 16384) {
        c->cap = c->cap ? c->cap * 2 : 65536;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf)
            abort();
    }
    ssize_t n;
    do {
        n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        return (int)n;
    }
    if (n == 0 || errno == ECONNRESET || errno == EPIPE) {
        c->eof = true;
        return 0;
    }
    return -errno;
}

/* Waits up to @timeout_ms for bytes or EOF: >0, 0 at EOF, -ETIMEDOUT. */
static int fill(struct hd_http_conn *c, int timeout_ms)
{
    if (c->fd < 0 || c->eof)
        return 0;
    int ev = wait_fd(c->fd, POLLIN, timeout_ms);
    if (ev == 0)
        return -ETIMEDOUT;
    if (ev < 0)
        return ev;
    int rc = recv_some(c);
    return rc == -EAGAIN ? 1 : rc;
}

int hd_http_conn_send(struct hd_http_conn *c, const void *data, size_t len, int timeout_ms)
{
    const char *p = data;
    long long deadline = now_ms() + timeout_ms;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return errno == ECONNRESET ? -ECONNRESET : -EPIPE;
        /* after EOF the socket stays readable: then wait for room only */
        int ev = wait_fd(c->fd, c->eof ? POLLOUT : POLLOUT | POLLIN, remaining(deadline));
        if (ev == 0)
            return -ETIMEDOUT;
        if (ev > 0 && (ev & POLLIN) && !c->eof)
            recv_some(c);
    }
    return 0;
}

int hd_http_conn_send_str(struct hd_http_conn *c, const char *s)
{
    return hd_http_conn_send(c, s, strlen(s), 5000);
}

size_t hd_http_conn_send_slowly(struct hd_http_conn *c, const void *data, size_t len, int delay_ms)
{
    const char *p = data;
    for (size_t i = 0; i < len; i++) {
        if (c->eof || hd_http_conn_send(c, p + i, 1, 1000) != 0)
            return i;
        if (fill(c, delay_ms) != -ETIMEDOUT)
            return i + 1;
    }
    return len;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Parses the header block [head, head_len): status line and headers. */
static int parse_head(const char *head, size_t head_len, struct hd_http_response *r)
{
    if (sscanf(head, "HTTP/1.%d %3d", &r->minor_version, &r->status) != 2)
        return -EPROTO;
    const char *line = memchr(head, '\n', head_len);
    const char *end = head + head_len;
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon)
            return eol - line <= 1 ? 0 : -EPROTO;
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && isspace((unsigned char)ve[-1]))
            ve--;
        r->headers = realloc(r->headers, (r->n_headers + 1) * sizeof *r->headers);
        if (!r->headers)
            abort();
        r->headers[r->n_headers].name = dup_range(line, (size_t)(colon - line));
        r->headers[r->n_headers].value = dup_range(v, (size_t)(ve - v));
        r->n_headers++;
        line = eol;
    }
    return 0;
}

/* Decodes a chunked body from @p (@n bytes): bytes consumed, 0 when more is
 * needed, -EPROTO on a bad size line. */
static long parse_chunked(const char *p, size_t n, struct hd_http_response *r)
{
    size_t off = 0, out = 0;
    char *body = malloc(n + 1);
    if (!body)
        abort();
    for (;;) {
        const char *eol = memmem(p + off, n - off, "\r\n", 2);
        if (!eol)
            goto more;
        char *endp;
        unsigned long size = strtoul(p + off, &endp, 16);
        if (endp == p + off)
            goto bad;
        off = (size_t)(eol - p) + 2;
        if (size == 0) {
            const char *fin = memmem(p + off - 2, n - off + 2, "\r\n\r\n", 4);
            if (!fin)
                goto more;
            body[out] = '\0';
            r->body = body;
            r->body_len = out;
            return (long)((size_t)(fin - p) + 4);
        }
        if (n - off < size + 2)
            goto more;
        memcpy(body + out, p + off, size);
        out += size;
        off += size + 2;
    }
more:
    free(body);
    return 0;
bad:
    free(body);
    return -EPROTO;
}

static bool no_body_status(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* 1 with @r filled and the bytes consumed, 0 when more is needed, -EPROTO. */
static int try_parse(struct hd_http_conn *c, struct hd_http_response *r)
{
    const char *hend = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
    if (!hend)
        return c->len > MAX_HEAD_BYTES ? -EPROTO : 0;
    size_t head_len = (size_t)(hend - c->buf) + 4, total;
    memset(r, 0, sizeof *r);
    if (parse_head(c->buf, head_len, r) != 0)
        goto bad;
    const char *te = hd_http_header(r, "Transfer-Encoding");
    const char *cl = hd_http_header(r, "Content-Length");
    if (no_body_status(r->status)) {
        total = head_len;
        r->body = dup_range("", 0);
    } else if (te && strcasestr(te, "chunked")) {
        long used = parse_chunked(c->buf + head_len, c->len - head_len, r);
        if (used < 0)
            goto bad;
        if (used == 0)
            goto more;
        total = head_len + (size_t)used;
    } else if (cl) {
        char *endp;
        unsigned long long n = strtoull(cl, &endp, 10);
        if (endp == cl || *endp)
            goto bad;
        if (c->len - head_len < n)
            goto more;
        total = head_len + n;
        r->body = dup_range(c->buf + head_len, n);
        r->body_len = n;
    } else {
        if (!c->eof)
            goto more;
        total = c->len;
        r->body = dup_range(c->buf + head_len, total - head_len);
        r->body_len = total - head_len;
    }
    memmove(c->buf, c->buf + total, c->len - total);
    c->len -= total;
    return 1;
more:
    hd_http_response_free(r);
    return 0;
bad:
    hd_http_response_free(r);
    return -EPROTO;
}

int hd_http_conn_read_response(struct hd_http_conn *c, struct hd_http_response *r, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    memset(r, 0, sizeof *r);
    for (;;) {
        int rc = try_parse(c, r);
        if (rc != 0)
            return rc > 0 ? 0 : rc;
        if (c->eof || c->fd < 0)
            return -ECONNRESET;
        rc = fill(c, remaining(deadline));
        if (rc < 0 && rc != -EAGAIN)
            return rc;
    }
}

int hd_http_conn_wait_closed(struct hd_http_conn *c, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    while (!c->eof && c->fd >= 0) {
        int rc = fill(c, remaining(deadline));
        if (rc == -ETIMEDOUT)
            return rc;
        if (rc < 0 && rc != -EAGAIN)
            return 0; /* any other socket error: the connection is gone */
    }
    return 0;
}

const char *hd_http_header(const struct hd_http_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

size_t hd_http_header_count(const struct hd_http_response *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_headers; i++)
        n += strcasecmp(r->headers[i].name, name) == 0;
    return n;
}

static bool list_has_token(const char *list, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *te = e;
        while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - p) == tlen && strncasecmp(p, token, tlen) == 0)
            return true;
        p = e;
    }
    return false;
}

bool hd_http_header_has_token(const struct hd_http_response *r, const char *name, const char *token)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0 && list_has_token(r->headers[i].value, token))
            return true;
    return false;
}

json_t *hd_http_response_json(const struct hd_http_response *r)
{
    if (!r->body)
        return NULL;
    return json_loadb(r->body, r->body_len, 0, NULL);
}

void hd_http_response_free(struct hd_http_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int hd_http_exchange(int port, const char *raw, struct hd_http_response *r, int timeout_ms)
{
    struct hd_http_conn c;
    memset(r, 0, sizeof *r);
    int rc = hd_http_conn_open(&c, port, timeout_ms);
    if (rc != 0)
        return rc;
    rc = hd_http_conn_send(&c, raw, strlen(raw), timeout_ms);
    if (rc == 0 || rc == -EPIPE || rc == -ECONNRESET)
        rc = hd_http_conn_read_response(&c, r, timeout_ms);
    hd_http_conn_close(&c);
    return rc;
}

int hd_http_get(int port, const char *target, struct hd_http_response *r, int timeout_ms)
{
    char raw[4096];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             target);
    return hd_http_exchange(port, raw, r, timeout_ms);
}
