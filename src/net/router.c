/* Routes: method + path pattern with "{name}" segments. A linear scan: the
 * API has a few dozen routes, and comparing a few short strings costs less
 * than hashing. Static routes are tried before parameter routes. */
#include "net/net_internal.h"

#include "herald/core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct hd_router {
    struct hd_route routes[HD_MAX_ROUTES];
    int n;
    int order[HD_MAX_ROUTES]; /* static routes first, then parameter routes */
};

struct hd_router *hd__router_new(void)
{
    return hd_calloc(1, sizeof(struct hd_router));
}

void hd__router_free(struct hd_router *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        free(r->routes[i].pattern);
    free(r);
}

static bool pattern_valid(const char *p, int *segments, bool *has_params)
{
    if (p[0] != '/')
        return false;
    *segments = 0;
    *has_params = false;
    for (const char *s = p; *s;) {
        s++; /* skip '/' */
        const char *e = strchrnul(s, '/');
        (*segments)++;
        if (e > s && *s == '{') {
            if (e - s < 3 || e[-1] != '}')
                return false;
            *has_params = true;
        }
        s = e;
    }
    return true;
}

static void rebuild_order(struct hd_router *r)
{
    int k = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < r->n; i++) {
            if (r->routes[i].has_params == (pass == 1))
                r->order[k++] = i;
        }
    }
}

int hd__router_add(struct hd_router *r, int method, const char *pattern, hd_handler_fn fn,
                   void *ctx)
{
    int segments;
    bool has_params;
    if (r->n >= HD_MAX_ROUTES || !pattern_valid(pattern, &segments, &has_params))
        return -EINVAL;
    struct hd_route *rt = &r->routes[r->n];
    rt->method = method;
    rt->pattern = hd_strdup(pattern);
    rt->fn = fn;
    rt->ctx = ctx;
    rt->index = r->n;
    rt->n_segments = segments;
    rt->has_params = has_params;
    r->n++;
    rebuild_order(r);
    return 0;
}

/* Matches @path against @pattern segment by segment, collecting parameters. */
static bool path_matches(const struct hd_route *rt, const char *path, size_t len,
                         struct hd_param *params, int *n_params)
{
    const char *p = rt->pattern, *s = path, *end = path + len;
    int np = 0;
    while (*p && s < end) {
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        const char *pe = strchrnul(p, '/');
        const char *se = memchr(s, '/', (size_t)(end - s));
        if (!se)
            se = end;
        if (*p == '{') {
            if (se == s || np >= HD_MAX_PARAMS)
                return false;
            params[np++] = (struct hd_param){p + 1, (size_t)(pe - p - 2), s, (size_t)(se - s)};
        } else if (pe - p != se - s || memcmp(p, s, (size_t)(pe - p)) != 0) {
            return false;
        }
        p = pe;
        s = se;
    }
    if (*p || s != end)
        return false;
    *n_params = np;
    return true;
}

static void append_allow(char *allow, size_t cap, int method)
{
    const char *name = http_method_str((enum http_method)method);
    if (strstr(allow, name))
        return;
    size_t n = strlen(allow);
    snprintf(allow + n, cap - n, "%s%s", n ? ", " : "", name);
}

enum hd_match hd__router_match(const struct hd_router *r, int method, const char *path, size_t len,
                               const struct hd_route **route, struct hd_param *params,
                               int *n_params, char *allow, size_t allow_cap)
{
    bool path_found = false;
    if (allow_cap)
        allow[0] = '\0';
    for (int k = 0; k < r->n; k++) {
        const struct hd_route *rt = &r->routes[r->order[k]];
        struct hd_param tmp[HD_MAX_PARAMS];
        int nt = 0;
        if (!path_matches(rt, path, len, tmp, &nt))
            continue;
        /* HEAD is answered by the GET route. */
        if (rt->method == method || (method == HTTP_HEAD && rt->method == HTTP_GET)) {
            *route = rt;
            memcpy(params, tmp, sizeof(tmp[0]) * (size_t)nt);
            *n_params = nt;
            return HD_MATCH_FOUND;
        }
        path_found = true;
        if (allow_cap) {
            append_allow(allow, allow_cap, rt->method);
            if (rt->method == HTTP_GET)
                append_allow(allow, allow_cap, HTTP_HEAD);
        }
    }
    if (path_found && allow_cap)
        append_allow(allow, allow_cap, HTTP_OPTIONS);
    return path_found ? HD_MATCH_WRONG_METHOD : HD_MATCH_NOT_FOUND;
}

int hd__router_count(const struct hd_router *r)
{
    return r->n;
}

const struct hd_route *hd__router_get(const struct hd_router *r, int index)
{
    return &r->routes[index];
}
