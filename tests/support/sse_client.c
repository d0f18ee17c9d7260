/* A Server-Sent Events test client: see sse_client.h. */
#include "sse_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_HEAD_BYTES     65536
#define READ_CHUNK         65536

uint64_t hd_sse_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int remaining(uint64_t deadline)
{
    uint64_t now = hd_sse_now_ms();
    return now < deadline ? (int)(deadline - now) : 0;
}

/* Waits for @events on @fd: revents, 0 on timeout, or -errno. */
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

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        abort();
    return p;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---- the socket ------------------------------------------------------------------ */

static void mark_eof(struct hd_sse_client *c)
{
    if (!c->eof)
        c->eof_ms = hd_sse_now_ms();
    c->eof = true;
}

/* One recv into the buffer: > 0 bytes, 0 at EOF, -EAGAIN, or -errno. */
static int recv_once(struct hd_sse_client *c)
{
    if (c->fd < 0 || c->eof)
        return 0;
    if (c->cap - c->len < READ_CHUNK + 1) {
        c->cap = c->len + READ_CHUNK + 1;
        c->buf = xrealloc(c->buf, c->cap);
    }
    ssize_t n;
    do {
        n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        return (int)n;
    }
    if (n == 0 || errno == ECONNRESET || errno == EPIPE) {
        mark_eof(c);
        return 0;
    }
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* Waits up to @timeout_ms for bytes or EOF: > 0, 0 at EOF, -ETIMEDOUT, -errno. */
static int fill(struct hd_sse_client *c, int timeout_ms)
{
    if (c->fd < 0 || c->eof)
        return 0;
    int ev = wait_fd(c->fd, POLLIN, timeout_ms);
    if (ev == 0)
        return -ETIMEDOUT;
    if (ev < 0)
        return ev;
    int rc = recv_once(c);
    return rc == -EAGAIN ? 1 : rc;
}

static int connect_to(struct hd_sse_client *c, int port, int rcvbuf, int timeout_ms)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* before connect(): the window scale of the SYN follows the buffer */
    if (rcvbuf > 0 && setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    int ev = wait_fd(c->fd, POLLOUT, timeout_ms);
    if (ev <= 0)
        return ev == 0 ? -ETIMEDOUT : ev;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
    return -err;
}

static int send_all(struct hd_sse_client *c, const char *p, size_t len, int timeout_ms)
{
    uint64_t deadline = hd_sse_now_ms() + (uint64_t)timeout_ms;
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
            return -errno;
        int ev = wait_fd(c->fd, POLLOUT, remaining(deadline));
        if (ev <= 0)
            return ev == 0 ? -ETIMEDOUT : ev;
    }
    return 0;
}

/* The request text (malloc'd). */
static char *request_text(const struct hd_sse_opts *o)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        abort();
    fprintf(f, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n",
            o->target ? o->target : HD_SSE_STREAM_PATH);
    if (o->bearer)
        fprintf(f, "Authorization: Bearer %s\r\n", o->bearer);
    if (o->last_event_id)
        fprintf(f, "Last-Event-ID: %s\r\n", o->last_event_id);
    for (const char *const *h = o->headers; h && *h; h++)
        fprintf(f, "%s\r\n", *h);
    fputs("\r\n", f);
    fclose(f);
    return out;
}

/* ---- the head ----------------------------------------------------------------------- */

static int parse_head(const char *head, size_t head_len, struct hd_http_response *r)
{
    if (sscanf(head, "HTTP/1.%d %3d", &r->minor_version, &r->status) != 2)
        return -EPROTO;
    const char *end = head + head_len;
    const char *line = memchr(head, '\n', head_len);
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if (eol - line <= 1) /* the blank line */
            return 0;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon)
            return -EPROTO;
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && isspace((unsigned char)ve[-1]))
            ve--;
        r->headers = xrealloc(r->headers, (r->n_headers + 1) * sizeof(*r->headers));
        r->headers[r->n_headers].name = dup_range(line, (size_t)(colon - line));
        r->headers[r->n_headers].value = dup_range(v, (size_t)(ve - v));
        r->n_headers++;
        line = eol;
    }
    return 0;
}

/* The body of a non-200 answer, by Content-Length or until close: 1 when
 * complete (consumed from the buffer), 0 when more is needed, -EPROTO. */
static int take_body(struct hd_sse_client *c)
{
    const char *cl = hd_http_header(&c->head, "Content-Length");
    size_t n = c->len;
    if (cl) {
        char *endp;
        unsigned long long want = strtoull(cl, &endp, 10);
        if (endp == cl || *endp)
            return -EPROTO;
        if (c->len < want)
            return c->eof ? -EPROTO : 0;
        n = (size_t)want;
    } else if (!c->eof) {
        return 0;
    }
    c->head.body = dup_range(c->buf, n);
    c->head.body_len = n;
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    return 1;
}

int hd_sse_read_head(struct hd_sse_client *c, int timeout_ms)
{
    if (c->head_read)
        return 0;
    uint64_t deadline = hd_sse_now_ms() + (uint64_t)timeout_ms;
    const char *hend;
    while (!(hend = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL)) {
        if (c->len > MAX_HEAD_BYTES)
            return -EPROTO;
        if (c->eof)
            return -ECONNRESET;
        int rc = fill(c, remaining(deadline));
        if (rc < 0)
            return rc;
    }
    size_t head_len = (size_t)(hend - c->buf) + 4;
    int rc = parse_head(c->buf, head_len, &c->head);
    if (rc != 0)
        return rc;
    memmove(c->buf, c->buf + head_len, c->len - head_len);
    c->len -= head_len;
    c->head_read = true;
    if (c->head.status == 200) {
        c->head.body = dup_range("", 0);
        return 0;
    }
    while ((rc = take_body(c)) == 0) {
        rc = fill(c, remaining(deadline));
        if (rc < 0)
            return rc;
    }
    return rc < 0 ? rc : 0;
}

int hd_sse_open(struct hd_sse_client *c, int port, const struct hd_sse_opts *o)
{
    static const struct hd_sse_opts none = {0};
    if (!o)
        o = &none;
    memset(c, 0, sizeof(*c));
    c->_open = true;
    int timeout = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    int rc = connect_to(c, port, o->rcvbuf, timeout);
    if (rc != 0)
        return rc;
    char *req = request_text(o);
    rc = send_all(c, req, strlen(req), timeout);
    free(req);
    if (rc != 0 || o->no_read)
        return rc;
    return hd_sse_read_head(c, timeout);
}

int hd_sse_status(const struct hd_sse_client *c)
{
    return c->head_read ? c->head.status : 0;
}

const char *hd_sse_header(const struct hd_sse_client *c, const char *name)
{
    return c->head_read ? hd_http_header(&c->head, name) : NULL;
}

int hd_sse_pump(struct hd_sse_client *c)
{
    int total = 0;
    for (;;) {
        int rc = recv_once(c);
        if (rc > 0) {
            total += rc;
            continue;
        }
        if (total > 0)
            return total;
        return rc;
    }
}

/* ---- blocks ------------------------------------------------------------------------- */

/* The end of the line starting at @p (before @end): its terminator's first
 * byte, or NULL when the line is not complete. CRLF and LF end lines. */
static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        return NULL;
    return nl > p && nl[-1] == '\r' ? nl - 1 : nl;
}

static const char *after_line(const char *eol)
{
    return *eol == '\r' ? eol + 2 : eol + 1;
}

/* Bytes of the first complete block (its blank line included), or 0. */
static size_t block_len(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *eol = line_end(p, end);
        if (!eol)
            return 0;
        bool blank = eol == p;
        p = after_line(eol);
        if (blank)
            return (size_t)(p - buf);
    }
    return 0;
}

bool hd_sse_has_block(const struct hd_sse_client *c)
{
    return block_len(c->buf, c->len) > 0;
}

static void set_str(char **slot, const char *v, size_t n)
{
    free(*slot);
    *slot = dup_range(v, n);
}

static void append_data(struct hd_sse_event *ev, const char *v, size_t n)
{
    size_t old = ev->data ? strlen(ev->data) : 0;
    bool more = ev->data_lines > 0; /* ev->data is set exactly then */
    ev->data = xrealloc(ev->data, old + (more ? 1 : 0) + n + 1);
    char *p = ev->data + old;
    if (more)
        *p++ = '\n';
    memcpy(p, v, n);
    p[n] = '\0';
    ev->data_lines++;
}

static void parse_line(struct hd_sse_event *ev, const char *line, size_t n)
{
    ev->lines++;
    if (n > 0 && line[0] == ':') {
        if (ev->comments++ == 0)
            ev->comment = dup_range(line + 1, n - 1);
        return;
    }
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = (size_t)(line + n - v);
    if (vlen > 0 && *v == ' ') { /* one leading space is not part of the value */
        v++;
        vlen--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        append_data(ev, v, vlen);
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        set_str(&ev->event, v, vlen);
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
        set_str(&ev->id, v, vlen);
    } else if (name_len == 5 && memcmp(line, "retry", 5) == 0) {
        long ms = 0;
        bool digits = vlen > 0 && vlen < 10;
        for (size_t i = 0; i < vlen && digits; i++) {
            digits = isdigit((unsigned char)v[i]);
            ms = ms * 10 + (v[i] - '0');
        }
        if (digits)
            ev->retry = ms;
    }
}

/* Takes the first complete block off the buffer into @ev; false when none. */
static bool take_block(struct hd_sse_client *c, struct hd_sse_event *ev)
{
    size_t n = block_len(c->buf, c->len);
    if (n == 0)
        return false;
    memset(ev, 0, sizeof(*ev));
    ev->retry = -1;
    ev->at_ms = hd_sse_now_ms();
    const char *p = c->buf, *end = c->buf + n;
    for (;;) {
        const char *eol = line_end(p, end);
        if (eol == p)
            break;
        parse_line(ev, p, (size_t)(eol - p));
        p = after_line(eol);
    }
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->n_blocks++;
    return true;
}

int hd_sse_next(struct hd_sse_client *c, struct hd_sse_event *ev, int timeout_ms)
{
    uint64_t deadline = hd_sse_now_ms() + (uint64_t)timeout_ms;
    memset(ev, 0, sizeof(*ev));
    ev->retry = -1;
    if (!c->head_read)
        return -EPROTO;
    for (;;) {
        if (take_block(c, ev))
            return 0;
        if (c->eof || c->fd < 0)
            return -ECONNRESET;
        int rc = fill(c, remaining(deadline));
        if (rc < 0)
            return rc;
    }
}

static bool is_filler(const struct hd_sse_event *ev)
{
    return !ev->data && !ev->event && !ev->id;
}

int hd_sse_next_event(struct hd_sse_client *c, struct hd_sse_event *ev, size_t *skipped,
                      int timeout_ms)
{
    uint64_t deadline = hd_sse_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int rc = hd_sse_next(c, ev, remaining(deadline));
        if (rc != 0 || !is_filler(ev))
            return rc;
        if (skipped)
            (*skipped)++;
        hd_sse_event_free(ev);
    }
}

int hd_sse_wait_closed(struct hd_sse_client *c, size_t *discarded, int timeout_ms)
{
    uint64_t deadline = hd_sse_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        struct hd_sse_event ev;
        while (take_block(c, &ev)) {
            if (discarded)
                (*discarded)++;
            hd_sse_event_free(&ev);
        }
        if (c->eof || c->fd < 0)
            return 0;
        int rc = fill(c, remaining(deadline));
        if (rc == -ETIMEDOUT)
            return rc;
        if (rc < 0) { /* any other socket error: the connection is gone */
            mark_eof(c);
            return 0;
        }
    }
}

bool hd_sse_closed(const struct hd_sse_client *c)
{
    return c->eof && !hd_sse_has_block(c);
}

void hd_sse_close(struct hd_sse_client *c)
{
    if (!c->_open)
        return;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    hd_http_response_free(&c->head);
    c->head_read = false;
    c->_open = false;
}

void hd_sse_event_free(struct hd_sse_event *ev)
{
    free(ev->id);
    free(ev->event);
    free(ev->data);
    free(ev->comment);
    memset(ev, 0, sizeof(*ev));
    ev->retry = -1;
}

bool hd_sse_is_notification(const struct hd_sse_event *ev)
{
    return ev->event && strcmp(ev->event, "notification") == 0 && ev->id && ev->data;
}

long long hd_sse_event_id(const struct hd_sse_event *ev)
{
    if (!ev->id || !*ev->id || strlen(ev->id) > 18)
        return -1;
    for (const char *p = ev->id; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    return strtoll(ev->id, NULL, 10);
}
