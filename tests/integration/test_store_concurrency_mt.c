/* Concurrent registrations on both backends: THREADS threads, each with its
 * own connection, register the same email (in different cases) at the same
 * moment, ROUNDS times. Every round exactly one wins with HD_STORE_OK; every
 * other gets HD_STORE_CONFLICT "email" (never a busy error or a generic
 * failure), and the losers leave no organization behind. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "herald/store.h"
#include "store/backend.h"
#include "store_fixture.h"

#define THREADS 8
#define ROUNDS  20

struct racer {
    const struct hd_store_fixture *f;
    pthread_barrier_t *barrier;
    char (*emails)[128]; /* one per round, as this thread spells it */
    char err[512];       /* why the connection could not be opened */
    enum hd_store_status status[ROUNDS];
    char field[ROUNDS][16];
};

/* Mixed case, different per thread: the unique index is on lower(email). */
static void spell(char *dst, const char *src, int thread)
{
    size_t i = 0;
    for (; src[i]; i++) {
        char ch = src[i];
        if (ch >= 'a' && ch <= 'z' && ((i + (size_t)thread) % 3 == 0))
            ch = (char)(ch - 'a' + 'A');
        dst[i] = ch;
    }
    dst[i] = '\0';
}

/* Thread body: no asserts here (they belong to the test's thread). */
static void *race(void *arg)
{
    struct racer *r = arg;
    struct hd_store_conn *c = hd_test_store_try_connect(r->f, r->err, sizeof r->err);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(r->barrier);
        if (!c) {
            r->status[round] = HD_STORE_UNAVAILABLE;
            continue;
        }
        struct hd_store_op *op = hd_test_op_register("Race", r->emails[round], NULL);
        r->status[round] = hd_test_store_exec_on(r->f, c, op);
        snprintf(r->field[round], sizeof r->field[round], "%s",
                 op->conflict_field ? op->conflict_field : "");
        hd_store_op_free(op);
    }
    if (c)
        r->f->b->close(c);
    return NULL;
}

HD_STORE_TEST(store_concurrency, same_email_at_once_exactly_one_wins, .timeout = 180)
{
    static char emails[THREADS][ROUNDS][128];
    for (int round = 0; round < ROUNDS; round++) {
        char base[96];
        hd_test_unique_email(base, sizeof base, "race");
        for (int t = 0; t < THREADS; t++)
            spell(emails[t][round], base, t);
    }
    pthread_barrier_t barrier;
    cr_assert_eq(pthread_barrier_init(&barrier, NULL, THREADS), 0);
    static struct racer racers[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        racers[t] = (struct racer){.f = f, .barrier = &barrier, .emails = emails[t]};
        cr_assert_eq(pthread_create(&threads[t], NULL, race, &racers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&barrier);

    for (int t = 0; t < THREADS; t++)
        cr_assert(racers[t].err[0] == '\0', "[%s] thread %d could not connect: %s", f->name, t,
                  racers[t].err);
    for (int round = 0; round < ROUNDS; round++) {
        int ok = 0;
        for (int t = 0; t < THREADS; t++) {
            enum hd_store_status st = racers[t].status[round];
            if (st == HD_STORE_OK) {
                ok++;
                continue;
            }
            cr_assert_eq(st, HD_STORE_CONFLICT,
                         "[%s] round %d thread %d: %s (conflict_field \"%s\"), want ok or "
                         "conflict",
                         f->name, round, t, hd_store_status_name(st), racers[t].field[round]);
            cr_assert_str_eq(racers[t].field[round], "email",
                             "[%s] round %d thread %d: conflict on \"%s\"", f->name, round, t,
                             racers[t].field[round]);
        }
        cr_assert_eq(ok, 1, "[%s] round %d: %d winners", f->name, round, ok);
    }
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM users"), ROUNDS);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM organizations"), ROUNDS,
                 "[%s] losing registrations left organizations behind", f->name);
}
