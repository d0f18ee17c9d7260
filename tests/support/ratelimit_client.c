#include "ratelimit_client.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <sodium.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"

/* ---- requests ------------------------------------------------------------------ */

int hd_test_rl_send(int port, const char *method, const char *target, const char *json,
                    const struct hd_test_rl_req *req, struct hd_http_response *r)
{
    char *lines[4] = {NULL, NULL, NULL, NULL};
    const char *headers[6];
    size_t n = 0;
    int rc = 0;
    if (json)
        headers[n++] = "Content-Type: application/json";
    if (req && req->xff && asprintf(&lines[0], "X-Forwarded-For: %s", req->xff) < 0)
        rc = -ENOMEM;
    if (req && req->request_id && asprintf(&lines[1], "X-Request-Id: %s", req->request_id) < 0)
        rc = -ENOMEM;
    if (req && req->access && asprintf(&lines[2], "Authorization: Bearer %s", req->access) < 0)
        rc = -ENOMEM;
    for (size_t i = 0; i < 3; i++)
        if (lines[i])
            headers[n++] = lines[i];
    headers[n] = NULL;
    if (rc == 0)
        rc = hd_test_auth_request(port, method, target, headers, json, json ? strlen(json) : 0, r);
    for (size_t i = 0; i < 3; i++)
        free(lines[i]);
    return rc;
}

static int post_credentials(int port, const char *target, const char *email, const char *password,
                            const struct hd_test_rl_req *req, struct hd_http_response *r)
{
    json_t *j = json_pack("{s:s, s:s}", "email", email, "password", password);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return -ENOMEM;
    int rc = hd_test_rl_send(port, "POST", target, text, req, r);
    free(text);
    return rc;
}

int hd_test_rl_login(int port, const char *email, const char *password,
                     const struct hd_test_rl_req *req, struct hd_http_response *r)
{
    return post_credentials(port, "/api/auth/login", email, password, req, r);
}

int hd_test_rl_register(int port, const char *email, const char *password,
                        const struct hd_test_rl_req *req, struct hd_http_response *r)
{
    return post_credentials(port, "/api/auth/register", email, password, req, r);
}

/* ---- header fields ----------------------------------------------------------------- */

char *hd_test_rl_joined(const struct hd_http_response *r, const char *name)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    bool first = true;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) != 0)
            continue;
        fprintf(f, "%s%s", first ? "" : ", ", r->headers[i].value);
        first = false;
    }
    fclose(f);
    return out;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* In one item `"name";k=v;k=v` (@item, @len bytes, leading spaces skipped):
 * the value of @param when the item is @policy's. */
static long item_param(const char *item, size_t len, const char *policy, const char *param)
{
    size_t plen = strlen(policy);
    if (len < plen + 2 || item[0] != '"' || strncmp(item + 1, policy, plen) != 0 ||
        item[plen + 1] != '"')
        return -ENOENT;
    const char *p = item + plen + 2, *end = item + len;
    size_t klen = strlen(param);
    while (p < end && *p == ';') {
        p++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq)
            return -EPROTO;
        const char *next = memchr(eq, ';', (size_t)(end - eq));
        if (!next)
            next = end;
        if ((size_t)(eq - p) == klen && strncmp(p, param, klen) == 0) {
            if (eq + 1 == next)
                return -EPROTO;
            long v = 0;
            for (const char *d = eq + 1; d < next; d++) {
                if (*d < '0' || *d > '9')
                    return *d == ' ' && skip_spaces(d) == next ? v : -EPROTO;
                v = v * 10 + (*d - '0');
            }
            return v;
        }
        p = next;
    }
    return -ENOENT;
}

long hd_test_rl_param(const struct hd_http_response *r, const char *name, const char *policy,
                      const char *param)
{
    char *all = hd_test_rl_joined(r, name);
    if (!all)
        return -ENOMEM;
    long found = -ENOENT;
    for (const char *p = all; *p && found == -ENOENT;) {
        p = skip_spaces(p);
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        found = item_param(p, len, policy, param);
        p = comma ? comma + 1 : p + strlen(p);
    }
    free(all);
    return found;
}

size_t hd_test_rl_items(const struct hd_http_response *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) != 0)
            continue;
        const char *v = skip_spaces(r->headers[i].value);
        if (!*v)
            continue;
        n++;
        for (; *v; v++)
            n += *v == ',';
    }
    return n;
}

/* ---- checks --------------------------------------------------------------------------- */

long hd_test_rl_assert_limited(const struct hd_http_response *r, const char *policy,
                               long max_retry_s, const char *what)
{
    cr_assert_eq(r->status, 429, "%s: status %d, want 429 (%s): %s", what, r->status, policy,
                 r->body);
    hd_assert_error(r, 429, "rate_limited");
    long left = hd_test_rl_param(r, "RateLimit", policy, "r");
    char *state = hd_test_rl_joined(r, "RateLimit");
    cr_assert_eq(left, 0, "%s: RateLimit for %s has r=%ld, want 0 (RateLimit: %s)", what, policy,
                 left, state);
    free(state);
    const char *ra = hd_http_header(r, "Retry-After");
    cr_assert(ra, "%s: a 429 without Retry-After", what);
    char *end;
    long secs = strtol(ra, &end, 10);
    cr_assert(end != ra && *end == '\0', "%s: Retry-After '%s' is not a whole number", what, ra);
    cr_assert(secs >= 1 && secs <= max_retry_s, "%s: Retry-After %ld, want 1..%ld", what, secs,
              max_retry_s);
    return secs;
}

void hd_test_rl_assert_no_fields(const struct hd_http_response *r, const char *what)
{
    static const char *const names[] = {"RateLimit", "RateLimit-Policy", "Retry-After"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = hd_http_header(r, names[i]);
        cr_assert_null(v, "%s: status %d carries %s: %s", what, r->status, names[i], v);
    }
}

double hd_test_rl_metric(int port, const char *series)
{
    struct hd_http_response r;
    cr_assert_eq(hd_http_get(port, "/metrics", &r, 5000), 0, "GET /metrics: no response");
    cr_assert_eq(r.status, 200, "GET /metrics: status %d", r.status);
    double value = -1;
    size_t n = strlen(series);
    for (const char *line = r.body; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            value = strtod(line + n + 1, NULL);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    hd_http_response_free(&r);
    return value;
}

double hd_test_rl_metric_wait(int port, const char *series, double want, int timeout_ms)
{
    uint64_t until = hd_test_now_ms() + (uint64_t)timeout_ms;
    double v = hd_test_rl_metric(port, series);
    while (v != want && hd_test_now_ms() < until) {
        hd_test_sleep_ms(50);
        v = hd_test_rl_metric(port, series);
    }
    return v;
}

/* ---- addresses and services ------------------------------------------------------------- */

void hd_test_rl_random_ip(char *out, size_t cap)
{
    uint32_t v = sodium_init() >= 0 ? randombytes_random() : (uint32_t)hd_test_now_ms();
    /* 10.a.b.c with c in 1..254: never a network or broadcast address */
    snprintf(out, cap, "10.%u.%u.%u", (v >> 16) & 0xff, (v >> 8) & 0xff, 1 + (v & 0xff) % 254);
}
