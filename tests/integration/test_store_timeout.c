/* A stuck statement on both backends: while another connection holds the
 * write lock (SQLite: BEGIN EXCLUSIVE; Postgres: LOCK TABLE users), a write
 * on a connection opened with a short query timeout ends with
 * HD_STORE_TIMEOUT after about that long (never hangs); the connection stays
 * usable and the same write succeeds once the lock is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "harness.h"
#include "herald/core.h"
#include "herald/store.h"
#include "store/backend.h"
#include "store_fixture.h"

#define SHORT_TIMEOUT_MS 500

struct lock_holder {
    sqlite3 *db;
    PGconn *pg;
};

static void lock_take(struct hd_store_fixture *f, struct lock_holder *l)
{
    memset(l, 0, sizeof *l);
    if (f->kind == HD_TEST_SQLITE) {
        cr_assert_eq(sqlite3_open_v2(f->target, &l->db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(l->db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK,
                     "BEGIN EXCLUSIVE: %s", sqlite3_errmsg(l->db));
        return;
    }
    l->pg = PQconnectdb(f->target);
    cr_assert_eq(PQstatus(l->pg), CONNECTION_OK, "%s", PQerrorMessage(l->pg));
    PGresult *r = PQexec(l->pg, "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    cr_assert(ok, "LOCK TABLE: %s", PQerrorMessage(l->pg));
}

static void lock_release(struct lock_holder *l)
{
    if (l->db) {
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(l->db);
    }
    if (l->pg)
        PQfinish(l->pg); /* ends the transaction, releasing the lock */
    memset(l, 0, sizeof *l);
}

static struct hd_store_op *disable(const char *id)
{
    struct hd_store_op *op = hd_test_op_id(HD_OP_SET_USER_DISABLED, id, hd_test_unix_ms());
    op->flag = true;
    return op;
}

HD_STORE_TEST(store_timeout, stuck_write_times_out_and_connection_survives, .timeout = 60)
{
    struct hd_user u;
    hd_test_store_register(f, "stuck@example.com", NULL, &u);
    char err[512] = "";
    struct hd_store_conn *c = f->b->open(f->target, SHORT_TIMEOUT_MS, err, sizeof err);
    cr_assert(c, "[%s] open: %s", f->name, err);
    struct hd_store_op *op = hd_store_op_new(HD_OP_PING);
    cr_assert_eq(hd_test_store_exec_on(f, c, op), HD_STORE_OK);
    hd_store_op_free(op);

    struct lock_holder l;
    lock_take(f, &l);
    uint64_t t0 = hd_test_now_ms();
    op = disable(u.id);
    enum hd_store_status st = hd_test_store_exec_on(f, c, op);
    uint64_t took = hd_test_now_ms() - t0;
    hd_store_op_free(op);
    bool usable = f->b->usable(c);
    lock_release(&l);

    cr_assert_eq(st, HD_STORE_TIMEOUT, "[%s] write under a held lock: %s after %llu ms", f->name,
                 hd_store_status_name(st), (unsigned long long)took);
    cr_assert_geq(took, SHORT_TIMEOUT_MS / 2, "[%s] gave up after %llu ms", f->name,
                  (unsigned long long)took);
    cr_assert_lt(took, SHORT_TIMEOUT_MS + 4000, "[%s] took %llu ms", f->name,
                 (unsigned long long)took);
    cr_assert(usable, "[%s] a timed-out statement broke the connection", f->name);

    op = disable(u.id);
    cr_assert_eq(hd_test_store_exec_on(f, c, op), HD_STORE_OK, "[%s] write after the lock: %s",
                 f->name, hd_store_status_name(op->status));
    hd_store_op_free(op);
    f->b->close(c);
    op = HD_STORE_EXPECT(f, hd_test_op_id(HD_OP_FIND_USER_BY_ID, u.id, 0), HD_STORE_OK);
    cr_assert(op->user.disabled, "[%s] the write after the timeout was not kept", f->name);
    hd_store_op_free(op);
    hd_user_clear(&u);
}
