/* Postgres going away under the backend: after `scripts/services pg-stop`
 * an op on an open connection answers HD_STORE_UNAVAILABLE within seconds
 * (never hangs), usable() turns false, opening a connection fails with a
 * reason that shows no password; after `pg-start` a new connection works
 * and the data is still there.
 *
 * This stops the shared test Postgres: every Postgres outage test lives in
 * this one executable, as one Criterion test (Criterion runs the tests of an
 * executable in parallel), and ctest must not run this executable beside
 * any other test that uses Postgres (a RESOURCE_LOCK in CMakeLists.txt).
 * The outage window is kept short, and a watchdog thread starts Postgres
 * again should anything in the window hang. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "herald/core.h"
#include "herald/store.h"
#include "store/backend.h"
#include "outage.h"
#include "store_fixture.h"

#define UNAVAILABLE_WITHIN_MS 10000
#define WATCHDOG_S            30

struct observed {
    int stop_rc, start_rc;
    enum hd_store_status ping, find;
    uint64_t ping_ms, find_ms;
    bool usable_after;
    bool reopened;
    char open_err[512];
};

/* The outage window: no asserts in here, so Postgres always comes back. */
static void outage(struct hd_store_fixture *f, struct observed *o)
{
    struct hd_test_outage w;
    hd_test_outage_begin(&w, "pg-stop fast", "pg-start", WATCHDOG_S);
    uint64_t t0 = hd_test_now_ms();
    struct hd_store_op *op = hd_store_op_new(HD_OP_PING);
    o->ping = hd_test_store_exec(f, op);
    hd_store_op_free(op);
    o->ping_ms = hd_test_now_ms() - t0;
    t0 = hd_test_now_ms();
    op = hd_store_op_new(HD_OP_FIND_USER_BY_EMAIL);
    op->email = hd_strdup("outage@example.com");
    o->find = hd_test_store_exec(f, op);
    hd_store_op_free(op);
    o->find_ms = hd_test_now_ms() - t0;
    o->usable_after = f->b->usable(f->conn);
    struct hd_store_conn *c = hd_test_store_try_connect(f, o->open_err, sizeof o->open_err);
    o->reopened = c != NULL;
    if (c)
        f->b->close(c);

    hd_test_outage_end(&w);
    o->stop_rc = w.stop_rc;
    o->start_rc = w.start_rc;
}

static void outage_fini(void)
{
    hd_test_outage_fini();
    hd_test_store_fini();
}

Test(store_outage, postgres_stop_gives_unavailable_and_a_new_connection_recovers,
     .fini = outage_fini, .timeout = 180)
{
    const char *s = getenv("HERALD_SERVICES");
    cr_assert(s && *s,
              "HERALD_SERVICES is not set: run the store tests through scripts/test (it starts "
              "Postgres with scripts/services and exports its env file)");
    struct hd_store_fixture *f = hd_test_store_open(HD_TEST_POSTGRES);
    struct hd_user u;
    hd_test_store_register(f, "outage@example.com", NULL, &u);
    HD_STORE_EXPECT_FREE(f, hd_store_op_new(HD_OP_PING), HD_STORE_OK);
    cr_assert(f->b->usable(f->conn), "[postgres] connection not usable before the outage");

    struct observed o = {0};
    outage(f, &o);

    cr_assert_eq(o.stop_rc, 0, "pg-stop failed (%d)", o.stop_rc);
    cr_assert_eq(o.start_rc, 0, "pg-start failed (%d)", o.start_rc);
    cr_assert_eq(o.ping, HD_STORE_UNAVAILABLE, "[postgres] ping while down: %s",
                 hd_store_status_name(o.ping));
    cr_assert_lt(o.ping_ms, UNAVAILABLE_WITHIN_MS, "[postgres] ping took %llu ms",
                 (unsigned long long)o.ping_ms);
    cr_assert_eq(o.find, HD_STORE_UNAVAILABLE, "[postgres] find_user_by_email while down: %s",
                 hd_store_status_name(o.find));
    cr_assert_lt(o.find_ms, UNAVAILABLE_WITHIN_MS, "[postgres] find took %llu ms",
                 (unsigned long long)o.find_ms);
    cr_assert_not(o.usable_after, "[postgres] usable() still true after the server went away");
    cr_assert_not(o.reopened, "[postgres] open succeeded while Postgres was stopped");
    cr_assert(o.open_err[0], "[postgres] open failed without a reason");
    cr_assert_null(strchr(o.open_err, '\n'), "[postgres] reason is not one line: %s", o.open_err);
    const char *pw = getenv("HERALD_TEST_PG_PASSWORD");
    cr_assert(!pw || !*pw || !strstr(o.open_err, pw), "[postgres] the reason shows the password");

    /* a new connection works again, and the data survived */
    struct hd_store_conn *c = hd_test_store_connect(f);
    struct hd_store_op *op = hd_store_op_new(HD_OP_PING);
    cr_assert_eq(hd_test_store_exec_on(f, c, op), HD_STORE_OK, "[postgres] ping after restart");
    hd_store_op_free(op);
    op = hd_store_op_new(HD_OP_FIND_USER_BY_EMAIL);
    op->email = hd_strdup("outage@example.com");
    cr_assert_eq(hd_test_store_exec_on(f, c, op), HD_STORE_OK, "[postgres] find after restart: %s",
                 hd_store_status_name(op->status));
    cr_assert_str_eq(op->user.id, u.id);
    hd_store_op_free(op);
    cr_assert(f->b->usable(c));
    hd_user_clear(&u);
}
