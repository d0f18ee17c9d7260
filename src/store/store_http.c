#include "herald/store_http.h"

#include "herald/core.h"
#include "herald/server.h"

#include <stdio.h>
#include <stdlib.h>

/* The reply that carries a finished op back to its I/O thread. */
struct store_call {
    struct hd_reply reply; /* first: posted as a message */
    struct hd_store_op *op;
    hd_store_then_fn then;
};

static void call_resume(struct hd_exchange *x, struct hd_reply *r)
{
    struct store_call *call = (struct store_call *)r;
    call->then(x, call->op);
}

static void call_destroy(struct hd_reply *r)
{
    struct store_call *call = (struct store_call *)r;
    hd_store_op_free(call->op);
    free(call);
}

/* DB worker thread: hand the result to the request's I/O thread. */
static void call_done(struct hd_store_op *op)
{
    hd_reply_post(&((struct store_call *)op->ctx)->reply);
}

void hd_store_call(struct hd_store *st, struct hd_exchange *x, struct hd_store_op *op,
                   hd_store_then_fn then)
{
    struct store_call *call = hd_calloc(1, sizeof(*call));
    call->reply.to = hd_exchange_park(x);
    call->reply.resume = call_resume;
    call->reply.destroy = call_destroy;
    call->op = op;
    call->then = then;
    op->ctx = call;
    op->done = call_done;
    hd_store_submit(st, op);
}

void hd_store_respond_failure(struct hd_exchange *x, const struct hd_store_op *op)
{
    switch (op->status) {
    case HD_STORE_UNAVAILABLE:
    case HD_STORE_TIMEOUT:
        hd_respond_header(x, "Retry-After", "2");
        hd_respond_error(x, 503, "store_unavailable",
                         op->status == HD_STORE_TIMEOUT ? "the store did not answer in time"
                                                        : "the store is unavailable",
                         NULL);
        return;
    case HD_STORE_CONFLICT: {
        char code[48];
        const char *field = op->conflict_field ? op->conflict_field : "value";
        snprintf(code, sizeof(code), "%s_taken", field);
        hd_respond_error(x, 409, code, "already taken", field);
        return;
    }
    case HD_STORE_NOT_FOUND:
        hd_respond_error(x, 404, "not_found", "no such resource", NULL);
        return;
    default:
        hd_respond_error(x, 500, "internal_error", "the store failed", NULL);
        return;
    }
}

static void ping_done(struct hd_exchange *x, struct hd_store_op *op)
{
    if (op->status != HD_STORE_OK) {
        hd_store_respond_failure(x, op);
        return;
    }
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"store\":\"ok\",\"elapsed_us\":%llu}",
                     (unsigned long long)op->elapsed_us);
    hd_respond_json(x, 200, body, (size_t)n);
}

/* GET /api/_store/ping: the store's round trip, as /api/_echo is the actor's. */
static void handle_ping(struct hd_exchange *x)
{
    hd_store_call(hd_route_ctx(x), x, hd_store_op_new(HD_OP_PING), ping_done);
}

int hd_store_routes(struct hd_store *st, struct hd_server *s)
{
    return hd_server_route(s, "GET", "/api/_store/ping", handle_ping, st);
}
