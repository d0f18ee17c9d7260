/* Reading a parsed request, and dispatching it: request id, path checks,
 * CORS preflight, routing, 404/405, then the route's handler. */
#include "net/net_internal.h"

#include "herald/core.h"
#include "herald/utf8.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

const char *hd_req_method(const struct hd_exchange *x)
{
    return http_method_str((enum http_method)x->method);
}

const char *hd_req_path(const struct hd_exchange *x, size_t *len)
{
    *len = x->path_len;
    return x->path;
}

const char *hd_req_query(const struct hd_exchange *x, size_t *len)
{
    *len = x->query_len;
    return x->query;
}

const char *hd_req_header(const struct hd_exchange *x, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (int i = 0; i < x->n_headers; i++) {
        const struct hd_header_ref *h = &x->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
            *len = h->value_len;
            return h->value ? h->value : "";
        }
    }
    return NULL;
}

int hd_req_header_count(const struct hd_exchange *x, const char *name)
{
    size_t n = strlen(name);
    int count = 0;
    for (int i = 0; i < x->n_headers; i++) {
        const struct hd_header_ref *h = &x->headers[i];
        count += h->name_len == n && strncasecmp(h->name, name, n) == 0;
    }
    return count;
}

const char *hd_req_body(const struct hd_exchange *x, size_t *len)
{
    *len = x->body.len;
    return x->body.data ? x->body.data : "";
}

const char *hd_req_param(const struct hd_exchange *x, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (int i = 0; i < x->n_params; i++) {
        if (x->params[i].name_len == n && memcmp(x->params[i].name, name, n) == 0) {
            *len = x->params[i].value_len;
            return x->params[i].value;
        }
    }
    return NULL;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes @in into @out (capacity @cap). Returns the decoded length,
 * -EINVAL for a bad escape, -ENOSPC when it does not fit. */
static int percent_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return -EINVAL;
            int hi = hex_value(in[i + 1]);
            int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        if (o + 1 >= cap)
            return -ENOSPC;
        out[o++] = ch;
    }
    out[o] = '\0';
    return (int)o;
}

int hd_req_query_param(const struct hd_exchange *x, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *p = x->query, *end = x->query + x->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *kend = eq ? eq : e;
        if ((size_t)(kend - p) == n && memcmp(p, name, n) == 0) {
            const char *v = eq ? eq + 1 : e;
            return percent_decode(v, (size_t)(e - v), true, out, cap);
        }
        p = e + (amp ? 1 : 0);
    }
    return -ENOENT;
}

const char *hd_req_id(const struct hd_exchange *x)
{
    return x->request_id;
}

const char *hd_req_peer(const struct hd_exchange *x)
{
    struct hd_exchange *mx = (struct hd_exchange *)x; /* lazily cached */
    if (!mx->peer[0]) {
        const struct sockaddr_storage *ss = &x->conn->peer;
        if (ss->ss_family == AF_INET) { /* inet_ntop would printf: once per request */
            const unsigned char *a =
                (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
            char *p = mx->peer;
            for (int i = 0; i < 4; i++) {
                if (a[i] >= 100)
                    *p++ = (char)('0' + a[i] / 100);
                if (a[i] >= 10)
                    *p++ = (char)('0' + a[i] / 10 % 10);
                *p++ = (char)('0' + a[i] % 10);
                *p++ = i < 3 ? '.' : '\0';
            }
        } else if (ss->ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, mx->peer,
                      sizeof(mx->peer));
        else
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, mx->peer,
                      sizeof(mx->peer));
    }
    return mx->peer;
}

const char *hd_req_client_ip(const struct hd_exchange *x)
{
    struct hd_exchange *mx = (struct hd_exchange *)x; /* lazily cached */
    const struct hd_cidr_set *trusted = &x->conn->io->server->trusted_proxies;
    if (mx->client_ip[0])
        return mx->client_ip;
    if (!hd_cidr_set_contains(trusted, (const struct sockaddr *)&x->conn->peer))
        return hd_req_peer(x); /* X-Forwarded-For is not read at all */
    /* several X-Forwarded-For lines count as one list, joined with "," */
    char joined[1024];
    size_t used = 0;
    for (int i = 0; i < x->n_headers; i++) {
        const struct hd_header_ref *h = &x->headers[i];
        if (h->name_len != 15 || strncasecmp(h->name, "X-Forwarded-For", 15) != 0)
            continue;
        size_t need = h->value_len + (used ? 1 : 0);
        if (used + need >= sizeof(joined)) { /* keep the rightmost hops: they matter */
            used = 0;
            need = h->value_len;
            if (need >= sizeof(joined))
                break;
        }
        if (used)
            joined[used++] = ',';
        memcpy(joined + used, h->value, h->value_len);
        used += h->value_len;
    }
    int n = hd_client_ip(trusted, (const struct sockaddr *)&x->conn->peer, joined, used,
                         mx->client_ip, sizeof(mx->client_ip));
    if (n <= 0)
        return hd_req_peer(x);
    return mx->client_ip;
}

void *hd_exchange_take_state(struct hd_exchange *x)
{
    void *state = x->state;
    x->state = NULL;
    x->state_free = NULL;
    return state;
}

void hd_exchange_set_state(struct hd_exchange *x, void *state, void (*free_fn)(void *))
{
    if (x->state && x->state_free)
        x->state_free(x->state);
    x->state = state;
    x->state_free = free_fn;
}

void *hd_exchange_state(const struct hd_exchange *x)
{
    return x->state;
}

void *hd_route_ctx(const struct hd_exchange *x)
{
    return x->route ? x->route->ctx : NULL;
}

struct hd_io *hd_exchange_io(const struct hd_exchange *x)
{
    return x->conn->io;
}

/* ---- dispatch ----------------------------------------------------------- */

static bool request_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > HD_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void assign_request_id(struct hd_conn *c, struct hd_exchange *x)
{
    if (x->h_request_id >= 0) {
        const struct hd_header_ref *h = &x->headers[x->h_request_id];
        if (request_id_valid(h->value, h->value_len)) {
            memcpy(x->request_id, h->value, h->value_len);
            x->request_id[h->value_len] = '\0';
            return;
        }
    }
    hd__request_id_generate(c->io, x->request_id);
}

/* The path must percent-decode to UTF-8 without NUL. */
static bool path_valid(struct hd_io *io, const char *path, size_t len)
{
    if (len >= HD_READ_CHUNK)
        return false;
    int n = percent_decode(path, len, false, io->scratch_path, HD_READ_CHUNK);
    return n >= 0 && hd_utf8_valid(io->scratch_path, (size_t)n);
}

void hd__conn_dispatch(struct hd_conn *c)
{
    struct hd_exchange *x = c->x;
    struct hd_io *io = c->io;
    assign_request_id(c, x);
    if (!path_valid(io, x->path, x->path_len)) {
        hd_respond_error(x, 400, "bad_request", "request path is not valid UTF-8", NULL);
        return;
    }
    if (x->method == HTTP_OPTIONS) {
        hd__cors_preflight(x);
        return;
    }
    char allow[128];
    const struct hd_route *rt = NULL;
    switch (hd__router_match(io->server->router, x->method, x->path, x->path_len, &rt, x->params,
                             &x->n_params, allow, sizeof(allow))) {
    case HD_MATCH_NOT_FOUND:
        hd_respond_error(x, 404, "not_found", "no such route", NULL);
        return;
    case HD_MATCH_WRONG_METHOD:
        hd_respond_header(x, "Allow", allow);
        hd_respond_error(x, 405, "method_not_allowed", "method not allowed for this route", NULL);
        return;
    case HD_MATCH_FOUND:
        break;
    }
    x->route = rt;
    if (c->parser.upgrade) /* no protocol switch: answer, then close */
        c->close_after = true;
    rt->fn(x);
    if (!x->answered && !x->parked) /* a handler bug must not hang the client */
        hd_respond_error(x, 500, "internal_error", "request was not answered", NULL);
}
