/* Readiness of dependencies (store, Redis…) for /readyz. Each owner reports
 * its own component; /readyz reads them all. Not for hot paths. */
#ifndef HERALD_HEALTH_H
#define HERALD_HEALTH_H

#include <stdbool.h>

struct hd_buf;

/**
 * Sets component @name (a static string, e.g. "store") to @ok with a short
 * human @detail (copied; NULL = none). Registers it on first use. Any thread.
 */
void hd_health_set(const char *name, bool ok, const char *detail);

/**
 * Appends the /readyz JSON body to @out: {"status":"ready"|"unavailable",
 * "down":[names],"checks":{name:{"ok":bool,"detail":"…"}}}. Returns true when
 * every component is ok (or none is registered). Any thread.
 */
bool hd_health_render(struct hd_buf *out);

#endif
