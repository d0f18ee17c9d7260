/* One JSON line per request, gathered per I/O thread and written in chunks
 * of whole lines no larger than PIPE_BUF, so lines from different threads
 * never interleave and a busy thread makes one write(2) per ~20 requests
 * instead of one each. Flushed by a 250 ms timer and at shutdown. The path
 * is logged without its query string, which may carry a token. */
#include "net/net_internal.h"

#include "herald/core.h"
#include "herald/log.h"

#include <limits.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_AT_PIPE (PIPE_BUF - 700) /* a full line still fits under PIPE_BUF */
#define FLUSH_AT_FILE (32 * 1024)      /* a file: O_APPEND writes do not interleave */

/* Chunk size for stderr: pipes (journald, a supervisor) only keep writes of
 * up to PIPE_BUF whole; a regular file or /dev/null takes bigger ones. */
static size_t flush_at(void)
{
    static size_t cached; /* set once; racing first calls compute the same value */
    size_t v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (!v) {
        struct stat st;
        bool file = fstat(STDERR_FILENO, &st) == 0 && (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode));
        v = file ? FLUSH_AT_FILE : FLUSH_AT_PIPE;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

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

/* Hand-rolled rather than printf: this runs once per request. */
void hd__access_log(struct hd_exchange *x, int status, uint64_t duration_us)
{
    struct hd_io *io = x->conn->io;
    if (!io->cfg->log.access || !hd_log_enabled(HD_LOG_INFO))
        return;
    struct hd_buf *b = &io->access_log;
    hd__io_refresh_clock(io);
    hd_buf_reserve(b, 512);
    hd_buf_puts(b, "{\"time\":\"");
    hd_buf_puts(b, io->log_time);
    hd_buf_puts(b, "\",\"level\":\"info\",\"msg\":\"request\",\"request_id\":\"");
    hd_buf_puts(b, x->request_id); /* validated: [A-Za-z0-9._-] only */
    hd_buf_puts(b, "\",\"method\":\"");
    if (x->headers_done)
        hd_buf_puts(b, http_method_str((enum http_method)x->method));
    hd_buf_puts(b, "\",\"route\":\"");
    if (x->route)
        hd_buf_puts(b, x->route->pattern);
    hd_buf_puts(b, "\",\"path\":\"");
    if (x->path)
        append_escaped(b, x->path, x->path_len, 256);
    hd_buf_puts(b, "\",\"status\":");
    hd_buf_append_uint(b, (unsigned long long)status);
    hd_buf_puts(b, ",\"duration_us\":");
    hd_buf_append_uint(b, (unsigned long long)duration_us);
    hd_buf_puts(b, ",\"peer\":\"");
    const char *peer = hd_req_peer(x), *client = hd_req_client_ip(x);
    hd_buf_puts(b, peer);
    if (client != peer) { /* behind a trusted proxy: who it forwarded for */
        hd_buf_puts(b, "\",\"client\":\"");
        hd_buf_puts(b, client);
    }
    hd_buf_puts(b, "\"}\n");
    if (b->len >= flush_at())
        hd__access_log_flush(io);
}
