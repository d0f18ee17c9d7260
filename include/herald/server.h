/* The HTTP/1.1 server: N I/O threads, each with its own event_base,
 * SO_REUSEPORT listener, connections and reply inbox (see docs/architecture.md).
 * Lifecycle calls run on the main thread. */
#ifndef HERALD_SERVER_H
#define HERALD_SERVER_H

#include <stdbool.h>

#include "herald/http.h"

struct hd_config;
struct hd_server;

/** Creates a server for @cfg (borrowed; must outlive the server). */
struct hd_server *hd_server_new(const struct hd_config *cfg);

/**
 * Adds a route before hd_server_start. @pattern is a path whose segments may
 * be "{name}" parameters ("/api/keys/{id}"); the pattern labels the route in
 * logs and metrics. Static routes win over parameter routes. @ctx (borrowed)
 * is what hd_route_ctx returns inside @fn.
 * Returns 0, or -EINVAL for an unknown method or malformed pattern.
 */
int hd_server_route(struct hd_server *s, const char *method, const char *pattern, hd_handler_fn fn,
                    void *ctx);

/**
 * Binds the listeners and starts the I/O threads. Returns 0, or -errno (the
 * address in use, no permission…) after logging why; nothing is left running.
 */
int hd_server_start(struct hd_server *s);

/** The number of I/O threads (after hd_server_start). Any thread. */
int hd_server_io_count(const struct hd_server *s);

/** I/O thread @i (0 .. count-1), for posting hd_io_task messages (stream.h).
 * After hd_server_start; valid until hd_server_free. Any thread. */
struct hd_io *hd_server_io(struct hd_server *s, int i);

/** The bound port (useful when the config asked for port 0). */
int hd_server_port(const struct hd_server *s);

/** Stops accepting; idle connections close; in-flight requests finish and
 * their connections close. Any thread. */
void hd_server_drain(struct hd_server *s);

/** Waits up to @timeout_ms for every I/O thread to finish draining. Returns
 * true when they all have. */
bool hd_server_wait_drained(struct hd_server *s, int timeout_ms);

/** Closes whatever is still open, joins the threads and frees the server. */
void hd_server_free(struct hd_server *s);

#endif
