/* One JSON line per request, gathered per I/O thread and written in chunks
 * of whole lines no larger than PIPE_BUF, so lines from different threads
 * never interleave and a busy thread makes one write(2) per ~20 requests
 * instead of one each. Flushed by a 250 ms timer and at shutdown. The path
 * is logged without its query string, which may carry a token. */
#include "net/net_internal.h"

#include "herald/core.h"
#include "herald/log.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_AT (PIPE_BUF - 700) /* a full line still fits under PIPE_BUF */

void hd__access_log_flush(struct hd_io *io)
{
    struct hd_buf *b = &io->access_log;
    if (!b->len)
        return;
    ssize_t w = write(STDERR_FILENO, b->data, b->len);
    (void)w; /* a log write that fails has nowhere to be reported */
    b->len = 0;
}

static void append_escaped(struct hd_buf *b, const char *s, size_t n, size_t max)
{
    if (n > max)
        n = max;
    hd_buf_reserve(b, n * 6);
    b->len += hd_json_escape(b->data + b->len, n * 6, s, n);
}

void hd__access_log(struct hd_exchange *x, int status, uint64_t duration_us)
{
    struct hd_io *io = x->conn->io;
    if (!io->cfg->log.access || !hd_log_enabled(HD_LOG_INFO))
        return;
    struct hd_buf *b = &io->access_log;
    hd__io_refresh_clock(io);
    hd_buf_appendf(b,
                   "{\"time\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"request_id\":\"%s\","
                   "\"method\":\"%s\",\"route\":\"",
                   io->log_time, x->request_id,
                   x->headers_done ? http_method_str((enum http_method)x->method) : "");
    if (x->route)
        hd_buf_puts(b, x->route->pattern);
    hd_buf_puts(b, "\",\"path\":\"");
    if (x->path)
        append_escaped(b, x->path, x->path_len, 256);
    hd_buf_appendf(b, "\",\"status\":%d,\"duration_us\":%llu,\"peer\":\"%s\"}\n", status,
                   (unsigned long long)duration_us, hd_req_peer(x));
    if (b->len >= FLUSH_AT)
        hd__access_log_flush(io);
}
