/* Per-thread HTTP counters (no shared cache lines on the hot path) summed
 * at scrape time. The owner thread updates with relaxed atomic load+store:
 * a single writer needs no read-modify-write. */
#include "net/net_internal.h"

#include "herald/core.h"

#include <stdio.h>
#include <string.h>

static const int status_codes[HD_STATUS_SLOTS - 1] = {
    100, 200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 408,
    409, 410, 413, 415, 422, 429, 431, 500, 501, 503, 504,
};

/* Upper bounds in microseconds; the last slot is +Inf. */
static const uint64_t latency_bounds_us[HD_LATENCY_SLOTS - 1] = {
    100,   250,    500,    1000,   2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
};

static int status_slot(int status)
{
    for (int i = 0; i < HD_STATUS_SLOTS - 1; i++) {
        if (status_codes[i] == status)
            return i;
    }
    return HD_STATUS_SLOTS - 1; /* "other" */
}

static void bump(uint64_t *counter, uint64_t by)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

void hd__metrics_record(struct hd_http_metrics *m, int route_index, int status,
                        uint64_t duration_us)
{
    bump(&m->requests[route_index][status_slot(status)], 1);
    int b = 0;
    while (b < HD_LATENCY_SLOTS - 1 && duration_us > latency_bounds_us[b])
        b++;
    bump(&m->latency[route_index][b], 1);
    bump(&m->latency_sum_us[route_index], duration_us);
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void route_labels(const struct hd_server *s, int r, const char **method,
                         const char **pattern)
{
    if (r == HD_MAX_ROUTES) {
        *method = "";
        *pattern = "unmatched";
        return;
    }
    const struct hd_route *rt = hd__router_get(s->router, r);
    *method = http_method_str((enum http_method)rt->method);
    *pattern = rt->pattern;
}

static void collect_requests(const struct hd_server *s, struct hd_buf *out, int r)
{
    const char *method, *pattern;
    route_labels(s, r, &method, &pattern);
    for (int k = 0; k < HD_STATUS_SLOTS; k++) {
        uint64_t n = 0;
        for (int t = 0; t < s->n_io; t++)
            n += load(&s->ios[t].metrics.requests[r][k]);
        if (!n)
            continue;
        char status[8];
        if (k == HD_STATUS_SLOTS - 1)
            strcpy(status, "other");
        else
            snprintf(status, sizeof(status), "%d", status_codes[k]);
        hd_buf_appendf(out,
                       "herald_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} "
                       "%llu\n",
                       pattern, method, status, (unsigned long long)n);
    }
}

static void collect_latency(const struct hd_server *s, struct hd_buf *out, int r)
{
    const char *method, *pattern;
    route_labels(s, r, &method, &pattern);
    uint64_t counts[HD_LATENCY_SLOTS] = {0}, sum = 0, total = 0;
    for (int t = 0; t < s->n_io; t++) {
        for (int b = 0; b < HD_LATENCY_SLOTS; b++)
            counts[b] += load(&s->ios[t].metrics.latency[r][b]);
        sum += load(&s->ios[t].metrics.latency_sum_us[r]);
    }
    for (int b = 0; b < HD_LATENCY_SLOTS; b++)
        total += counts[b];
    if (!total)
        return;
    uint64_t cum = 0;
    for (int b = 0; b < HD_LATENCY_SLOTS; b++) {
        cum += counts[b];
        char le[24];
        if (b == HD_LATENCY_SLOTS - 1)
            strcpy(le, "+Inf");
        else
            snprintf(le, sizeof(le), "%g", (double)latency_bounds_us[b] / 1e6);
        hd_buf_appendf(out,
                       "herald_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                       "le=\"%s\"} %llu\n",
                       pattern, method, le, (unsigned long long)cum);
    }
    hd_buf_appendf(out,
                   "herald_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n"
                   "herald_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} "
                   "%llu\n",
                   pattern, method, (double)sum / 1e6, pattern, method, (unsigned long long)total);
}

static uint64_t sum_field(const struct hd_server *s, size_t offset)
{
    uint64_t n = 0;
    for (int t = 0; t < s->n_io; t++)
        n += load((const uint64_t *)((const char *)&s->ios[t].metrics + offset));
    return n;
}

void hd__metrics_collect(void *server, struct hd_buf *out)
{
    const struct hd_server *s = server;
    int n_routes = hd__router_count(s->router);
    hd_buf_puts(out, "# HELP herald_http_requests_total HTTP requests answered.\n"
                     "# TYPE herald_http_requests_total counter\n");
    for (int r = 0; r < n_routes; r++)
        collect_requests(s, out, r);
    collect_requests(s, out, HD_MAX_ROUTES);
    hd_buf_puts(out, "# HELP herald_http_request_duration_seconds Time from first byte to "
                     "answer.\n# TYPE herald_http_request_duration_seconds histogram\n");
    for (int r = 0; r < n_routes; r++)
        collect_latency(s, out, r);
    collect_latency(s, out, HD_MAX_ROUTES);
    hd_buf_appendf(
        out,
        "# HELP herald_connections_open Client connections open now.\n"
        "# TYPE herald_connections_open gauge\nherald_connections_open %u\n"
        "# HELP herald_connections_accepted_total Client connections accepted.\n"
        "# TYPE herald_connections_accepted_total counter\nherald_connections_accepted_total "
        "%llu\n"
        "# HELP herald_connections_refused_total Connections refused at server.max_connections.\n"
        "# TYPE herald_connections_refused_total counter\nherald_connections_refused_total "
        "%llu\n"
        "# HELP herald_http_timeouts_total Connections cut off by a header, body or idle "
        "timeout.\n# TYPE herald_http_timeouts_total counter\nherald_http_timeouts_total %llu\n"
        "# HELP herald_http_parse_errors_total Requests refused by the parser.\n"
        "# TYPE herald_http_parse_errors_total counter\nherald_http_parse_errors_total %llu\n",
        __atomic_load_n(&s->open_connections, __ATOMIC_RELAXED),
        (unsigned long long)sum_field(s, offsetof(struct hd_http_metrics, accepted)),
        (unsigned long long)sum_field(s, offsetof(struct hd_http_metrics, refused)),
        (unsigned long long)sum_field(s, offsetof(struct hd_http_metrics, timeouts)),
        (unsigned long long)sum_field(s, offsetof(struct hd_http_metrics, parse_errors)));
}
