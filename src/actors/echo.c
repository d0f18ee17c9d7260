#include "herald/echo.h"

#include "herald/actor.h"
#include "herald/core.h"
#include "herald/http.h"
#include "herald/log.h"
#include "herald/server.h"
#include "herald/utf8.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_MAX_TEXT  256
#define ECHO_MAX_DELAY 1000 /* ms: bounds how long a demo request can be held */

enum { ECHO_TEXT = 1, ECHO_BYTES };

struct echo_msg {
    struct hd_msg msg;
    struct hd_reply_to to;
    int delay_ms;
    size_t bytes;
    char text[ECHO_MAX_TEXT + 1];
    struct event *timer; /* actor thread only, like the links below */
    struct echo_msg *prev, *next;
    struct hd_echo *owner;
};

struct hd_echo {
    struct hd_actor *actor;
    struct echo_msg *delayed; /* actor thread only: waiting on a timer */
};

static void unlink_delayed(struct hd_echo *e, struct echo_msg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else if (e->delayed == m)
        e->delayed = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

/* Actor thread: builds and posts the reply, frees the request. */
static void answer(struct echo_msg *m)
{
    char body[ECHO_MAX_TEXT * 6 + 64];
    size_t n;
    if (m->msg.type == ECHO_TEXT) {
        n = (size_t)snprintf(body, sizeof(body), "{\"echo\":\"");
        n += hd_json_escape(body + n, sizeof(body) - n - 3, m->text, strlen(m->text));
        n += (size_t)snprintf(body + n, sizeof(body) - n, "\"}");
    } else {
        n = (size_t)snprintf(body, sizeof(body), "{\"bytes\":%zu}", m->bytes);
    }
    hd_reply_post(hd_reply_new(m->to, 200, body, n));
    if (m->timer)
        event_free(m->timer);
    free(m);
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    struct echo_msg *m = arg;
    unlink_delayed(m->owner, m);
    answer(m);
}

/* Actor thread, at stop: requests still waiting are dropped (their
 * connections are gone or closing). */
static void on_stop(struct hd_actor *a)
{
    struct hd_echo *e = hd_actor_ctx(a);
    while (e->delayed) {
        struct echo_msg *m = e->delayed;
        unlink_delayed(e, m);
        event_free(m->timer);
        free(m);
    }
}

static void on_message(void *ctx, struct hd_msg *msg)
{
    struct hd_echo *e = ctx;
    struct echo_msg *m = (struct echo_msg *)msg;
    if (m->delay_ms <= 0) {
        answer(m);
        return;
    }
    struct timeval tv = {m->delay_ms / 1000, (m->delay_ms % 1000) * 1000};
    m->owner = e;
    m->timer = evtimer_new(hd_actor_base(e->actor), on_delay, m);
    evtimer_add(m->timer, &tv);
    m->next = e->delayed;
    if (e->delayed)
        e->delayed->prev = m;
    e->delayed = m;
}

/* I/O thread: GET /api/_echo?msg=…&delay_ms=N */
static void handle_get(struct hd_exchange *x)
{
    struct hd_echo *e = hd_route_ctx(x);
    struct echo_msg *m = hd_calloc(1, sizeof(*m));
    int n = hd_req_query_param(x, "msg", m->text, sizeof(m->text));
    if (n == -ENOENT) {
        m->text[0] = '\0';
    } else if (n < 0 || !hd_utf8_valid(m->text, (size_t)n)) {
        free(m);
        hd_respond_error(x, 400, "validation_failed",
                         "msg must be UTF-8, at most 256 bytes, percent-encoded", "msg");
        return;
    }
    char delay[16];
    n = hd_req_query_param(x, "delay_ms", delay, sizeof(delay));
    if (n >= 0) {
        char *end;
        long d = strtol(delay, &end, 10);
        if (n == 0 || *end || d < 0 || d > ECHO_MAX_DELAY) {
            free(m);
            hd_respond_error(x, 400, "validation_failed", "delay_ms must be 0..1000", "delay_ms");
            return;
        }
        m->delay_ms = (int)d;
    }
    m->msg.type = ECHO_TEXT;
    m->to = hd_exchange_park(x);
    hd_actor_post(e->actor, &m->msg);
}

/* I/O thread: POST /api/_echo answers the body length through the actor. */
static void handle_post(struct hd_exchange *x)
{
    struct hd_echo *e = hd_route_ctx(x);
    struct echo_msg *m = hd_calloc(1, sizeof(*m));
    hd_req_body(x, &m->bytes);
    m->msg.type = ECHO_BYTES;
    m->to = hd_exchange_park(x);
    hd_actor_post(e->actor, &m->msg);
}

struct hd_echo *hd_echo_start(void)
{
    struct hd_echo *e = hd_calloc(1, sizeof(*e));
    struct hd_actor_spec spec = {
        .name = "echo", .on_message = on_message, .on_stop = on_stop, .ctx = e};
    e->actor = hd_actor_start(&spec);
    if (!e->actor) {
        free(e);
        return NULL;
    }
    return e;
}

int hd_echo_routes(struct hd_echo *e, struct hd_server *s)
{
    int rc = hd_server_route(s, "GET", "/api/_echo", handle_get, e);
    if (rc == 0)
        rc = hd_server_route(s, "POST", "/api/_echo", handle_post, e);
    return rc;
}

void hd_echo_stop(struct hd_echo *e)
{
    if (!e)
        return;
    hd_actor_stop(e->actor);
    free(e);
}
