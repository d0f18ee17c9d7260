/* /healthz answers from the I/O thread with a constant; /readyz and /metrics
 * read state that owners publish (health components, atomic counters). */
#include "herald/ops.h"

#include "herald/buf.h"
#include "herald/health.h"
#include "herald/http.h"
#include "herald/metrics.h"
#include "herald/server.h"

static void handle_healthz(struct hd_exchange *x)
{
    static const char body[] = "{\"status\":\"ok\"}";
    hd_respond_json(x, 200, body, sizeof(body) - 1);
}

static void handle_readyz(struct hd_exchange *x)
{
    struct hd_buf b = {0};
    bool ready = hd_health_render(&b);
    if (!ready)
        hd_respond_header(x, "Retry-After", "5");
    hd_respond_json(x, ready ? 200 : 503, b.data, b.len);
    hd_buf_free(&b);
}

static void handle_metrics(struct hd_exchange *x)
{
    struct hd_buf b = {0};
    hd_metrics_render(&b);
    hd_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    hd_buf_free(&b);
}

int hd_ops_routes(struct hd_server *s)
{
    int rc = hd_server_route(s, "GET", "/healthz", handle_healthz, NULL);
    if (rc == 0)
        rc = hd_server_route(s, "GET", "/readyz", handle_readyz, NULL);
    if (rc == 0)
        rc = hd_server_route(s, "GET", "/metrics", handle_metrics, NULL);
    return rc;
}
