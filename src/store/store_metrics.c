/* Store metrics for /metrics: queries by operation and outcome, a latency
 * histogram per operation, pool size, connections up, workers busy. The
 * queue depth of each worker is herald_inbox_depth{inbox="store-N"}. */
#include "store/store_internal.h"

#include "herald/buf.h"
#include "herald/metrics.h"

#include <stdio.h>
#include <string.h>

static const uint64_t bounds_us[HD_STORE_LATENCY_SLOTS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
};

void hd__store_metrics_record(struct hd__store_metrics *m, enum hd_store_op_kind kind,
                              enum hd_store_status status, uint64_t elapsed_us)
{
    if (kind >= HD_OP__COUNT || (int)status >= HD_STORE_STATUS_SLOTS)
        return;
    int b = 0;
    while (b < HD_STORE_LATENCY_SLOTS - 1 && elapsed_us > bounds_us[b])
        b++;
    __atomic_add_fetch(&m->queries[kind][status], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->latency[kind][b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->latency_sum_us[kind], elapsed_us, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void collect_histogram(const struct hd__store_metrics *m, struct hd_buf *out, int k)
{
    const char *op = hd_store_op_name((enum hd_store_op_kind)k);
    uint64_t total = 0, cum = 0;
    for (int b = 0; b < HD_STORE_LATENCY_SLOTS; b++)
        total += load(&m->latency[k][b]);
    if (!total)
        return;
    for (int b = 0; b < HD_STORE_LATENCY_SLOTS; b++) {
        cum += load(&m->latency[k][b]);
        char le[24];
        if (b == HD_STORE_LATENCY_SLOTS - 1)
            strcpy(le, "+Inf");
        else
            snprintf(le, sizeof(le), "%g", (double)bounds_us[b] / 1e6);
        hd_buf_appendf(out,
                       "herald_store_query_duration_seconds_bucket{op=\"%s\",le=\"%s\"} %llu\n", op,
                       le, (unsigned long long)cum);
    }
    hd_buf_appendf(out,
                   "herald_store_query_duration_seconds_sum{op=\"%s\"} %.6f\n"
                   "herald_store_query_duration_seconds_count{op=\"%s\"} %llu\n",
                   op, (double)load(&m->latency_sum_us[k]) / 1e6, op, (unsigned long long)total);
}

static void collect(void *ctx, struct hd_buf *out)
{
    const struct hd__store_metrics *m = ctx;
    hd_buf_puts(out, "# HELP herald_store_queries_total Store operations by outcome.\n"
                     "# TYPE herald_store_queries_total counter\n");
    for (int k = 0; k < HD_OP__COUNT; k++) {
        for (int s = 0; s < HD_STORE_STATUS_SLOTS; s++) {
            uint64_t n = load(&m->queries[k][s]);
            if (n)
                hd_buf_appendf(out, "herald_store_queries_total{op=\"%s\",status=\"%s\"} %llu\n",
                               hd_store_op_name((enum hd_store_op_kind)k),
                               hd_store_status_name((enum hd_store_status)s),
                               (unsigned long long)n);
        }
    }
    hd_buf_puts(out, "# HELP herald_store_query_duration_seconds Time a DB worker spent on an "
                     "operation.\n# TYPE herald_store_query_duration_seconds histogram\n");
    for (int k = 0; k < HD_OP__COUNT; k++)
        collect_histogram(m, out, k);
    hd_buf_appendf(
        out,
        "# HELP herald_store_pool_size DB workers (one connection each).\n"
        "# TYPE herald_store_pool_size gauge\nherald_store_pool_size{backend=\"%s\"} %d\n"
        "# HELP herald_store_connections_up DB workers with a working connection.\n"
        "# TYPE herald_store_connections_up gauge\nherald_store_connections_up %d\n"
        "# HELP herald_store_pool_in_use DB workers running an operation now.\n"
        "# TYPE herald_store_pool_in_use gauge\nherald_store_pool_in_use %d\n",
        hd__store_backend_name(m->store), hd__store_pool_size(m->store),
        hd__store_workers_up(m->store), __atomic_load_n(&m->in_use, __ATOMIC_RELAXED));
}

void hd__store_metrics_init(struct hd__store_metrics *m, const struct hd_store *st)
{
    m->store = st;
    hd_metrics_register(collect, m);
}

void hd__store_metrics_fini(struct hd__store_metrics *m)
{
    if (m->store)
        hd_metrics_unregister(collect, m);
}
