/* The demo actor: answers GET /api/_echo?msg=…[&delay_ms=N] and
 * POST /api/_echo (body length) from its own thread, so the park → actor →
 * reply round trip is exercised by tests and the bench. */
#ifndef HERALD_ECHO_H
#define HERALD_ECHO_H

struct hd_server;
struct hd_echo;

/** Starts the echo actor. Returns NULL (errno set) on failure. Main thread. */
struct hd_echo *hd_echo_start(void);

/** Adds its routes to @s (before hd_server_start). Returns 0 or -EINVAL. */
int hd_echo_routes(struct hd_echo *e, struct hd_server *s);

/** Stops the actor after the I/O threads stopped posting. NULL is fine. */
void hd_echo_stop(struct hd_echo *e);

#endif
