/* Readiness of dependencies (store, Redis…) for /readyz. Each owner reports
 * its own component; /readyz reads them all. Not for hot paths. */
#ifndef HERALD_HEALTH_H
#define HERALD_HEALTH_H

#include <stdbool.h>

struct hd_buf;

/**
 * Sets component @name (a static string, e.g. "store") to @ok with a short
 * human @detail (copied; NULL = none). Registers it on first use; clears a
 * degraded mark set by hd_health_set_degraded. Any thread.
 */
void hd_health_set(const char *name, bool ok, const char *detail);

/**
 * Sets component @name to ok but degraded: the node still serves correctly
 * without it (e.g. Redis down while rate limits fall back to the local
 * table), so /readyz stays 200, but the body names it under "degraded" so
 * monitoring can tell. @detail as for hd_health_set. Any thread.
 */
void hd_health_set_degraded(const char *name, const char *detail);

/**
 * Appends the /readyz JSON body to @out: {"status":"ready"|"unavailable",
 * "down":[names],"degraded":[names],"checks":{name:{"ok":bool,
 * "degraded":bool,"detail":"…"}}}. A degraded component is ok. Returns true
 * when every component is ok (or none is registered). Any thread.
 */
bool hd_health_render(struct hd_buf *out);

#endif
