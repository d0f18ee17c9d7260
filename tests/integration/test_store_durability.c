/* kill -9 under write load on both backends: a forked writer inserts
 * notifications as fast as it can and reports every id the store
 * acknowledged (HD_STORE_OK) through a pipe; after about a second it is
 * killed with SIGKILL. A new connection must then find every acknowledged
 * id: nothing acknowledged is lost. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "herald/core.h"
#include "herald/store.h"
#include "store/backend.h"
#include "store_fixture.h"

#define LOAD_MS        1000
#define FIRST_WRITE_MS 20000

/* The child: never returns, never asserts; killed by the parent. */
static _Noreturn void writer(const struct hd_store_fixture *f, const struct hd_user *u, int wfd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char err[512];
    struct hd_store_conn *c = hd_test_store_try_connect(f, err, sizeof err);
    if (!c) {
        fprintf(stderr, "durability writer: open: %s\n", err);
        _exit(3);
    }
    for (long i = 0;; i++) {
        struct hd_store_op *op =
            hd_test_op_notification(u->org_id, i % 5 == 0 ? NULL : u->id, "durable");
        enum hd_store_status st = hd_test_store_exec_on(f, c, op);
        int64_t id = op->notification.id;
        hd_store_op_free(op);
        if (st != HD_STORE_OK) {
            fprintf(stderr, "durability writer: insert %ld: %s\n", i, hd_store_status_name(st));
            _exit(4);
        }
        if (write(wfd, &id, sizeof id) != (ssize_t)sizeof id)
            _exit(5);
    }
}

struct acks {
    int64_t *ids;
    size_t n, cap;
};

/* Reads whole ids from @fd for up to @ms (or until EOF); returns false at EOF. */
static bool read_acks(int fd, struct acks *a, int ms)
{
    uint64_t end = hd_test_now_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t now = hd_test_now_ms();
        if (now >= end)
            return true;
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, (int)(end - now));
        if (rc < 0 && errno == EINTR)
            continue;
        cr_assert_geq(rc, 0, "poll: %s", strerror(errno));
        if (rc == 0)
            return true;
        int64_t id;
        ssize_t got = read(fd, &id, sizeof id);
        if (got == 0)
            return false;
        if (got < 0 && errno == EINTR)
            continue;
        /* 8-byte writes to a pipe are atomic: never a partial id */
        cr_assert_eq(got, (ssize_t)sizeof id, "short read from the writer: %zd", got);
        if (a->n == a->cap) {
            a->cap = a->cap ? 2 * a->cap : 1024;
            a->ids = hd_realloc(a->ids, a->cap * sizeof *a->ids);
        }
        a->ids[a->n++] = id;
    }
}

/* Every notification id of @u's view, through the backend on @c. */
static size_t stored_ids(struct hd_store_fixture *f, struct hd_store_conn *c,
                         const struct hd_user *u, int64_t **out)
{
    size_t n = 0, cap = 0;
    int64_t *ids = NULL, after = 0;
    for (;;) {
        struct hd_store_op *op = hd_store_op_new(HD_OP_EVENTS_AFTER);
        snprintf(op->user_id, sizeof op->user_id, "%s", u->id);
        snprintf(op->org_id, sizeof op->org_id, "%s", u->org_id);
        op->after_id = after;
        op->limit = 1000;
        enum hd_store_status st = hd_test_store_exec_on(f, c, op);
        cr_assert_eq(st, HD_STORE_OK, "[%s] events_after %lld: %s", f->name, (long long)after,
                     hd_store_status_name(st));
        size_t got = op->n_notifications;
        for (size_t i = 0; i < got; i++) {
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                ids = hd_realloc(ids, cap * sizeof *ids);
            }
            ids[n++] = op->notifications[i].id;
        }
        if (got)
            after = op->notifications[got - 1].id;
        hd_store_op_free(op);
        if (got == 0)
            break;
    }
    *out = ids;
    return n;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

HD_STORE_TEST(store_durability, kill_9_under_write_load_loses_no_acknowledged_write, .timeout = 120)
{
    struct hd_user u;
    hd_test_store_register(f, "durable@example.com", NULL, &u);
    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        writer(f, &u, fds[1]);
    }
    close(fds[1]);

    struct acks a = {0};
    uint64_t start = hd_test_now_ms();
    bool open = true;
    while (open && a.n == 0 && hd_test_now_ms() - start < FIRST_WRITE_MS)
        open = read_acks(fds[0], &a, 100);
    if (open && a.n > 0)
        open = read_acks(fds[0], &a, LOAD_MS);
    kill(pid, SIGKILL);
    int wst = 0;
    cr_assert_eq(waitpid(pid, &wst, 0), pid);
    while (open)
        open = read_acks(fds[0], &a, 1000); /* ids written before the kill */
    close(fds[0]);
    cr_assert(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL,
              "[%s] the writer ended by itself (exit %d) after %zu acknowledged writes: see "
              "its stderr",
              f->name, WIFEXITED(wst) ? WEXITSTATUS(wst) : -1, a.n);
    cr_assert_gt(a.n, 0, "[%s] no write was acknowledged within %d ms", f->name, FIRST_WRITE_MS);
    for (size_t i = 1; i < a.n; i++)
        cr_assert_gt(a.ids[i], a.ids[i - 1], "[%s] acknowledged ids not increasing", f->name);

    /* a new connection, as after a restart */
    struct hd_store_conn *c = hd_test_store_connect(f);
    int64_t *ids = NULL;
    size_t n = stored_ids(f, c, &u, &ids);
    cr_assert_geq(n, a.n, "[%s] %zu rows stored, %zu acknowledged", f->name, n, a.n);
    size_t missing = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (!bsearch(&a.ids[i], ids, n, sizeof *ids, cmp_id)) {
            if (missing++ < 5)
                cr_log_warn("[%s] acknowledged id %lld is missing\n", f->name, (long long)a.ids[i]);
        }
    }
    cr_assert_eq(missing, 0, "[%s] %zu of %zu acknowledged writes lost", f->name, missing, a.n);
    cr_assert_geq(hd_test_store_sql_int(f, "SELECT count(*) FROM notifications"), (int64_t)a.n);
    /* the store takes writes again after the crash */
    int64_t next = hd_test_store_notify(f, u.org_id, u.id, "after the crash");
    cr_assert_gt(next, a.ids[a.n - 1]);
    cr_log_info("[%s] %zu writes acknowledged in ~%d ms, all present\n", f->name, a.n, LOAD_MS);
    free(ids);
    free(a.ids);
    hd_user_clear(&u);
}
