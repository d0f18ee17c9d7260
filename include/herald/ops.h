/* Operations routes: GET /healthz, /readyz, /metrics. */
#ifndef HERALD_OPS_H
#define HERALD_OPS_H

struct hd_server;

/** Adds the operations routes to @s. Returns 0 or -EINVAL. Main thread. */
int hd_ops_routes(struct hd_server *s);

#endif
