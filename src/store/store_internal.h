/* Private to src/store: pool metrics and accessors. */
#ifndef HERALD_STORE_INTERNAL_H
#define HERALD_STORE_INTERNAL_H

#include <stdint.h>

#include "herald/store.h"

#define HD_STORE_LATENCY_SLOTS 14
#define HD_STORE_STATUS_SLOTS  6

/* Written by the DB workers with atomic adds (several writers), read by the
 * /metrics scrape with relaxed loads. */
struct hd__store_metrics {
    const struct hd_store *store;
    uint64_t queries[HD_OP__COUNT][HD_STORE_STATUS_SLOTS];
    uint64_t latency[HD_OP__COUNT][HD_STORE_LATENCY_SLOTS];
    uint64_t latency_sum_us[HD_OP__COUNT];
    int in_use; /* workers running an op now */
};

void hd__store_metrics_init(struct hd__store_metrics *m, const struct hd_store *st);
void hd__store_metrics_fini(struct hd__store_metrics *m);
void hd__store_metrics_record(struct hd__store_metrics *m, enum hd_store_op_kind kind,
                              enum hd_store_status status, uint64_t elapsed_us);

const char *hd__store_backend_name(const struct hd_store *st);
int hd__store_pool_size(const struct hd_store *st);
int hd__store_workers_up(const struct hd_store *st);

#endif
