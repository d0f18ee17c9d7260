/* CORS from an allowlist (cors.allowed_origins). Credentials are only ever
 * allowed for an origin listed by name, never for "*" (config refuses it). */
#include "net/net_internal.h"

#include "herald/core.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Request headers a browser may send cross-origin. */
static const char *const allowed_headers[] = {
    "authorization", "content-type", "x-request-id", "last-event-id", "x-csrf-token",
};

static bool cors_enabled(const struct hd_config *cfg)
{
    return cfg->cors.n_allowed_origins > 0;
}

static bool origin_allowed(const struct hd_exchange *x, const char **origin, size_t *len)
{
    if (x->h_origin < 0)
        return false;
    *origin = x->headers[x->h_origin].value;
    *len = x->headers[x->h_origin].value_len;
    return hd_config_origin_allowed(x->conn->io->cfg, *origin, *len);
}

static bool wildcard(const struct hd_config *cfg)
{
    for (size_t i = 0; i < cfg->cors.n_allowed_origins; i++) {
        if (strcmp(cfg->cors.allowed_origins[i], "*") == 0)
            return true;
    }
    return false;
}

void hd__cors_headers(const struct hd_exchange *x, struct hd_buf *out)
{
    const struct hd_config *cfg = x->conn->io->cfg;
    if (!cors_enabled(cfg))
        return;
    const char *origin;
    size_t len;
    hd_buf_puts(out, "Vary: Origin\r\n");
    if (!origin_allowed(x, &origin, &len))
        return;
    if (wildcard(cfg) && !cfg->cors.allow_credentials) {
        hd_buf_puts(out, "Access-Control-Allow-Origin: *\r\n");
    } else {
        hd_buf_puts(out, "Access-Control-Allow-Origin: ");
        hd_buf_append(out, origin, len);
        hd_buf_puts(out, "\r\n");
        if (cfg->cors.allow_credentials)
            hd_buf_puts(out, "Access-Control-Allow-Credentials: true\r\n");
    }
    hd_buf_puts(out, "Access-Control-Expose-Headers: X-Request-Id, Retry-After, RateLimit, "
                     "RateLimit-Policy\r\n");
}

/* Checks every comma-separated name in @req against allowed_headers. */
static bool request_headers_allowed(const char *req, size_t len)
{
    const char *p = req, *end = req + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ',' || *p == '\t'))
            p++;
        const char *s = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p == s)
            continue;
        bool ok = false;
        for (size_t i = 0; i < HD_ARRAY_LEN(allowed_headers); i++) {
            if (strlen(allowed_headers[i]) == (size_t)(p - s) &&
                strncasecmp(allowed_headers[i], s, (size_t)(p - s)) == 0)
                ok = true;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* True when @method (@len bytes) is one of the comma-separated names in @list. */
static bool method_listed(const char *list, const char *method, size_t len)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, method, len) == 0)
            return true;
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return false;
}

bool hd__cors_preflight(struct hd_exchange *x)
{
    size_t mlen, hlen, plen;
    const char *acrm = hd_req_header(x, "Access-Control-Request-Method", &mlen);
    const char *acrh = hd_req_header(x, "Access-Control-Request-Headers", &hlen);
    const char *path = hd_req_path(x, &plen);
    char allow[128];
    const struct hd_route *rt;
    struct hd_param params[HD_MAX_PARAMS];
    int np;
    /* The methods this path accepts, found by asking for one it never has. */
    enum hd_match m = hd__router_match(x->conn->io->server->router, HTTP_OPTIONS, path, plen, &rt,
                                       params, &np, allow, sizeof(allow));
    if (m == HD_MATCH_NOT_FOUND) {
        hd_respond_error(x, 404, "not_found", "no such route", NULL);
        return true;
    }
    if (x->h_origin < 0 || !acrm) { /* a plain OPTIONS request */
        hd_respond_header(x, "Allow", allow);
        hd_respond(x, 204, NULL, NULL, 0);
        return true;
    }
    const char *origin;
    size_t olen;
    if (!cors_enabled(x->conn->io->cfg) || !origin_allowed(x, &origin, &olen)) {
        hd_respond_error(x, 403, "cors_origin_denied", "origin not allowed", NULL);
        return true;
    }
    if (!method_listed(allow, acrm, mlen)) {
        hd_respond_error(x, 403, "cors_method_denied", "method not allowed for this route", NULL);
        return true;
    }
    if (acrh && !request_headers_allowed(acrh, hlen)) {
        hd_respond_error(x, 403, "cors_header_denied", "request header not allowed", NULL);
        return true;
    }
    char age[16];
    snprintf(age, sizeof(age), "%d", x->conn->io->cfg->cors.max_age_s);
    hd_respond_header(x, "Access-Control-Allow-Methods", allow);
    hd_respond_header(x, "Access-Control-Allow-Headers",
                      "Authorization, Content-Type, X-Request-Id, Last-Event-ID, X-CSRF-Token");
    hd_respond_header(x, "Access-Control-Max-Age", age);
    hd_respond(x, 204, NULL, NULL, 0);
    return true;
}
