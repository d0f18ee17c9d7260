/* Calling the store from a route handler: park the request, run the op on a
 * DB worker, continue on the request's I/O thread with the result. */
#ifndef HERALD_STORE_HTTP_H
#define HERALD_STORE_HTTP_H

#include "herald/http.h"
#include "herald/store.h"

/** Continues a request on its I/O thread with the finished @op (borrowed:
 * freed after it returns). Must answer @x or park it again. */
typedef void (*hd_store_then_fn)(struct hd_exchange *x, struct hd_store_op *op);

/**
 * Parks @x, submits @op (takes ownership) and calls @then on @x's I/O thread
 * when the op is done. If the client went away meanwhile, @then never runs
 * and the op is freed. I/O thread only.
 */
void hd_store_call(struct hd_store *st, struct hd_exchange *x, struct hd_store_op *op,
                   hd_store_then_fn then);

/**
 * Answers @x for a failed op: UNAVAILABLE/TIMEOUT → 503 store_unavailable
 * with Retry-After; CONFLICT → 409 "<field>_taken" naming the field;
 * NOT_FOUND → 404 not_found; anything else → 500 internal_error.
 */
void hd_store_respond_failure(struct hd_exchange *x, const struct hd_store_op *op);

/** Adds GET /api/_store/ping (a round trip to a DB worker) to @s. */
struct hd_server;
int hd_store_routes(struct hd_store *st, struct hd_server *s);

#endif
