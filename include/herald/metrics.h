/* /metrics in Prometheus text exposition format (version 0.0.4). Each module
 * registers a collector that appends its own families; the scrape calls them
 * in registration order. */
#ifndef HERALD_METRICS_H
#define HERALD_METRICS_H

struct hd_buf;

/** Appends metric families to @out. Runs on the scraping I/O thread: read
 * other threads' counters with relaxed atomic loads only. */
typedef void (*hd_metrics_collector_fn)(void *ctx, struct hd_buf *out);

/** Registers @fn (at start-up, before serving). @ctx is borrowed. */
void hd_metrics_register(hd_metrics_collector_fn fn, void *ctx);

/** Removes a collector registered with the same @fn and @ctx. */
void hd_metrics_unregister(hd_metrics_collector_fn fn, void *ctx);

/** Appends every registered collector's output to @out. Any thread. */
void hd_metrics_render(struct hd_buf *out);

#endif
