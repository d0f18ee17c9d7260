/* Server lifecycle: bind one SO_REUSEPORT listen socket per I/O thread on the
 * same address, start the threads, drain and stop them. */
#include "herald/server.h"

#include "net/net_internal.h"

#include "herald/config.h"
#include "herald/core.h"
#include "herald/log.h"
#include "herald/metrics.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct hd_server *hd_server_new(const struct hd_config *cfg)
{
    struct hd_server *s = hd_calloc(1, sizeof(*s));
    s->cfg = cfg;
    s->router = hd__router_new();
    s->max_connections = cfg->server.max_connections;
    /* validated at config load, so this cannot fail: an empty set if it did */
    (void)hd_cidr_set_init(&s->trusted_proxies, cfg->server.trusted_proxies,
                           cfg->server.n_trusted_proxies);
    return s;
}

static int method_from_name(const char *name)
{
    for (int m = 0; m < 64; m++) {
        const char *s = http_method_str((enum http_method)m);
        if (strcmp(s, "<unknown>") == 0)
            break;
        if (strcmp(s, name) == 0)
            return m;
    }
    return -1;
}

int hd_server_route(struct hd_server *s, const char *method, const char *pattern, hd_handler_fn fn,
                    void *ctx)
{
    int m = method_from_name(method);
    if (m < 0 || s->started)
        return -EINVAL;
    return hd__router_add(s->router, m, pattern, fn, ctx);
}

/* Resolves the configured host:port to one socket address. */
static int resolve(const struct hd_config *cfg, int port, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(cfg->server.listen_host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        hd_log(HD_LOG_ERROR, "cannot resolve listen address", "key", "server.listen", "error",
               gai_strerror(rc), NULL);
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int open_socket(const struct sockaddr_storage *ss, socklen_t len, bool reuseport,
                       int backlog)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || (backlog && listen(fd, backlog) < 0)) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* SO_REUSEPORT would let a second herald share the port silently. */
static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/* An explicit port: bind it once without SO_REUSEPORT, so a port another
 * process holds is reported as "address in use". */
static int probe_port(struct hd_server *s, struct sockaddr_storage *ss, socklen_t len)
{
    int fd = open_socket(ss, len, false, 0);
    if (fd < 0)
        return fd;
    s->port = bound_port(fd);
    close(fd);
    set_port(ss, s->port);
    return 0;
}

/* Keeps max_connections below the open-file limit, with room for the
 * listeners, inboxes, logs and store connections. */
static void fit_connection_limit(struct hd_server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    long room = (long)rl.rlim_cur - 64 - 4L * s->n_io;
    if (room < s->max_connections) {
        char have[24], want[24];
        snprintf(have, sizeof(have), "%ld", room);
        snprintf(want, sizeof(want), "%d", s->max_connections);
        hd_log(HD_LOG_WARN, "server.max_connections lowered to fit the open-file limit", "key",
               "server.max_connections", "configured", want, "effective", have, NULL);
        s->max_connections = room > 1 ? (int)room : 1;
    }
}

static void stop_started(struct hd_server *s, int started)
{
    for (int i = 0; i < started; i++)
        hd__io_stop(&s->ios[i]);
    for (int i = 0; i < started; i++)
        pthread_join(s->ios[i].thread, NULL);
}

int hd_server_start(struct hd_server *s)
{
    const struct hd_config *cfg = s->cfg;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = resolve(cfg, cfg->server.listen_port, &ss, &len);
    int first_fd = -1; /* port 0: the first listener, bound before the port is known */
    if (rc == 0 && cfg->server.listen_port == 0) {
        /* Binding port 0 and closing it to learn a port would leave a window
         * in which another process takes it: keep the first listener. */
        first_fd = open_socket(&ss, len, true, cfg->server.backlog);
        rc = first_fd < 0 ? first_fd : 0;
        if (rc == 0) {
            s->port = bound_port(first_fd);
            set_port(&ss, s->port);
        }
    } else if (rc == 0) {
        rc = probe_port(s, &ss, len);
    }
    if (rc != 0) {
        char addr[300];
        snprintf(addr, sizeof(addr), "%s:%d", cfg->server.listen_host, cfg->server.listen_port);
        hd_log(HD_LOG_ERROR, "cannot listen", "key", "server.listen", "addr", addr, "error",
               strerror(-rc), NULL);
        return rc;
    }
    s->n_io = cfg->server.io_threads > 0 ? cfg->server.io_threads : 1;
    s->ios = hd_calloc((size_t)s->n_io, sizeof(*s->ios));
    fit_connection_limit(s);
    int started = 0;
    for (int i = 0; i < s->n_io && rc == 0; i++) {
        int fd =
            i == 0 && first_fd >= 0 ? first_fd : open_socket(&ss, len, true, cfg->server.backlog);
        if (i == 0)
            first_fd = -1; /* owned by the I/O thread from here */
        rc = fd < 0 ? fd : hd__io_init(&s->ios[i], s, i, fd);
        if (rc == 0)
            rc = hd__io_start(&s->ios[i]);
        if (rc == 0)
            started++;
    }
    if (rc != 0) {
        hd_log(HD_LOG_ERROR, "cannot start I/O threads", "error", strerror(-rc), NULL);
        stop_started(s, started);
        for (int i = 0; i < s->n_io; i++)
            hd__io_destroy(&s->ios[i]);
        free(s->ios);
        s->ios = NULL;
        s->n_io = 0;
        return rc;
    }
    s->started = true;
    hd_metrics_register(hd__metrics_collect, s);
    char addr[300], threads[8];
    snprintf(addr, sizeof(addr), "%s:%d", cfg->server.listen_host, s->port);
    snprintf(threads, sizeof(threads), "%d", s->n_io);
    hd_log(HD_LOG_INFO, "listening", "addr", addr, "io_threads", threads, NULL);
    return 0;
}

int hd_server_io_count(const struct hd_server *s)
{
    return s->ios ? s->n_io : 0; /* set before the I/O threads start */
}

struct hd_io *hd_server_io(struct hd_server *s, int i)
{
    HD_ASSERT(s->ios && i >= 0 && i < s->n_io);
    return &s->ios[i];
}

int hd_server_port(const struct hd_server *s)
{
    return s->port;
}

void hd_server_drain(struct hd_server *s)
{
    for (int i = 0; i < s->n_io; i++)
        hd__io_drain(&s->ios[i]);
}

bool hd_server_wait_drained(struct hd_server *s, int timeout_ms)
{
    uint64_t deadline = hd_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        bool all = true;
        for (int i = 0; i < s->n_io; i++)
            all = all && __atomic_load_n(&s->ios[i].finished, __ATOMIC_ACQUIRE);
        if (all)
            return true;
        if (hd_now_ms() >= deadline)
            return false;
        usleep(10000);
    }
}

void hd_server_free(struct hd_server *s)
{
    if (!s)
        return;
    if (s->started) {
        hd_metrics_unregister(hd__metrics_collect, s);
        stop_started(s, s->n_io);
        for (int i = 0; i < s->n_io; i++)
            hd__io_destroy(&s->ios[i]);
    }
    free(s->ios);
    hd__router_free(s->router);
    hd_cidr_set_free(&s->trusted_proxies);
    free(s);
}
