/* Security test 9: two users PATCH /api/me with the same username at the
 * same moment; exactly one gets 200 and the other 409 username_taken, every
 * time. The unique index decides, never a check-then-write. Run on the
 * embedded SQLite store and on Postgres (a fresh database on
 * $HERALD_TEST_DATABASE_URL's server; scripts/test provides it). */
#include <pthread.h>

#include "test_account_client.h"

#define ROUNDS 25

struct racer {
    int port;
    const char *token;
    char body[128];
    pthread_barrier_t *start;
    int status; /* or -errno */
    char code[64];
};

/* Client thread: no asserts here (harness.h), only results. */
static void *race(void *arg)
{
    struct racer *r = arg;
    struct hd_http_response resp;
    pthread_barrier_wait(r->start);
    r->status = acct_fetch(r->port, "PATCH", "/api/me", r->token, r->body, &resp);
    if (r->status == 0) {
        r->status = resp.status;
        json_t *j = hd_http_response_json(&resp);
        const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
        snprintf(r->code, sizeof(r->code), "%s", code ? code : "");
        json_decref(j);
        hd_http_response_free(&resp);
    }
    return NULL;
}

static void run_rounds(int port)
{
    struct acct_user a, b;
    acct_register(port, "racer-a", &a);
    acct_register(port, "racer-b", &b);
    int wins_a = 0, wins_b = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        struct racer r[2] = {{.port = port, .token = a.access, .start = &start},
                             {.port = port, .token = b.access, .start = &start}};
        /* the same name; every other round in another case (the index
         * ignores case) */
        snprintf(r[0].body, sizeof(r[0].body), "{\"username\":\"race_%d_%d\"}", (int)getpid(),
                 round);
        snprintf(r[1].body, sizeof(r[1].body), "{\"username\":\"%s_%d_%d\"}",
                 round % 2 ? "RACE" : "race", (int)getpid(), round);
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
        int ok = (r[0].status == 200) + (r[1].status == 200);
        int taken = (r[0].status == 409 && strcmp(r[0].code, "username_taken") == 0) +
                    (r[1].status == 409 && strcmp(r[1].code, "username_taken") == 0);
        cr_assert(ok == 1 && taken == 1, "round %d: A %d %s, B %d %s", round, r[0].status,
                  r[0].code, r[1].status, r[1].code);
        wins_a += r[0].status == 200;
        wins_b += r[1].status == 200;
    }
    cr_log_info("username race: A won %d, B won %d of %d rounds\n", wins_a, wins_b, ROUNDS);
}

Test(account_username_race, exactly_one_wins_on_sqlite, .timeout = 120)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"store\":{\"pool_size\":4},\"server\":{\"io_threads\":2}}");
    run_rounds(s.port);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

/* ---- Postgres -------------------------------------------------------------- */

Test(account_username_race, exactly_one_wins_on_postgres, .timeout = 120, .fini = acct_pg_fini)
{
    char url[600], overrides[900];
    acct_pg_create(url, sizeof(url));
    snprintf(overrides, sizeof(overrides),
             "{\"store\":{\"database_url\":\"%s\",\"pool_size\":4},\"server\":{\"io_threads\":2}}",
             url);
    struct hd_test_server s;
    hd_test_server_start(&s, overrides);
    run_rounds(s.port);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
