/* The session actor on a real store (embedded SQLite in a temp dir): the RCU
 * liveness map, refresh rotation with its grace window and reuse detection,
 * revocation that takes effect at once, the per-user limit, idle timeout,
 * and reloading live sessions after a restart. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu.h>

#include "harness.h"
#include "herald/config.h"
#include "herald/session.h"
#include "herald/store.h"

struct env {
    char dir[256];
    struct hd_config *cfg;
    struct hd_store *store;
    struct hd_sessions *sessions;
    struct hd_user user; /* an org and a user made through the store */
};

static struct env E;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- synchronous helpers over the asynchronous APIs ---------------------- */

static void post_sem(struct hd_store_op *op)
{
    sem_post(op->ctx);
}

static struct hd_store_op *store_run(struct hd_store_op *op)
{
    sem_t sem;
    sem_init(&sem, 0, 0);
    op->ctx = &sem;
    op->done = post_sem;
    hd_store_submit(E.store, op);
    sem_wait(&sem);
    sem_destroy(&sem);
    return op;
}

static void req_done(struct hd_session_req *req)
{
    sem_post(req->ctx);
}

/* Submits @req and waits for its answer; returns its status. */
static enum hd_session_status run(struct hd_session_req *req)
{
    sem_t sem;
    sem_init(&sem, 0, 0);
    req->ctx = &sem;
    req->done = req_done;
    hd_session_submit(E.sessions, req);
    sem_wait(&sem);
    sem_destroy(&sem);
    return req->status;
}

/* Creates a session for the test user; returns the request (caller frees). */
static struct hd_session_req *create(void)
{
    struct hd_session_req *r = hd_session_req_new(HD_SESSION_CREATE);
    memcpy(r->user.id, E.user.id, sizeof(r->user.id));
    memcpy(r->user.org_id, E.user.org_id, sizeof(r->user.org_id));
    r->user.role = HD_ROLE_ADMIN;
    r->user_agent = strdup("test-agent");
    r->ip = strdup("127.0.0.1");
    cr_assert_eq(run(r), HD_SESSION_OK, "create: %d", r->status);
    return r;
}

static struct hd_session_req *rotate(const char *token)
{
    struct hd_session_req *r = hd_session_req_new(HD_SESSION_ROTATE);
    snprintf(r->refresh_token, sizeof(r->refresh_token), "%s", token);
    run(r);
    return r;
}

static bool alive(const char *sid)
{
    return hd_session_lookup(E.sessions, sid, now_ms(), NULL);
}

/* ---- fixture ---------------------------------------------------------------- */

static void start_sessions(void)
{
    E.sessions = hd_sessions_start(E.cfg, E.store);
    cr_assert_not_null(E.sessions); /* requests wait for the load by themselves */
}

static void setup_with(const char *session_json)
{
    rcu_register_thread();
    cr_assert(sodium_init() >= 0);
    hd_test_make_dir(E.dir, sizeof(E.dir));
    char path[400], json[1024];
    snprintf(path, sizeof(path), "%s/herald.json", E.dir);
    snprintf(json, sizeof(json),
             "{\"dev_mode\":true,\"jwt\":{\"secret\":\"%s\"},\"store\":{\"sqlite_path\":"
             "\"%s/herald.db\",\"pool_size\":2},\"session\":%s}",
             hd_test_secret(), E.dir, session_json);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(json, f);
    fclose(f);
    struct hd_strlist problems = {0}, warnings = {0};
    char *envp[] = {NULL};
    E.cfg = hd_config_load(path, envp, NULL, 0, &problems, &warnings);
    cr_assert_not_null(E.cfg, "config: %s", problems.len ? problems.items[0] : "?");
    hd_strlist_clear(&problems);
    hd_strlist_clear(&warnings);
    cr_assert_eq(hd_store_schema(E.cfg, HD_SCHEMA_APPLY, 2000), HD_SCHEMA_OK);
    E.store = hd_store_start(E.cfg);
    cr_assert_not_null(E.store);

    struct hd_store_op *op = hd_store_op_new(HD_OP_CREATE_ORG_AND_USER);
    op->org_name = strdup("acme");
    op->user.email = strdup("ada@example.com");
    op->user.password_hash = strdup("$argon2id$v=19$m=65536,t=2,p=1$x$y");
    store_run(op);
    cr_assert_eq(op->status, HD_STORE_OK);
    memcpy(E.user.id, op->user.id, sizeof(E.user.id));
    memcpy(E.user.org_id, op->user.org_id, sizeof(E.user.org_id));
    hd_store_op_free(op);
    start_sessions();
}

static void setup(void)
{
    setup_with("{\"refresh_reuse_grace_s\":1,\"max_per_user\":3}");
}

static void teardown(void)
{
    hd_sessions_quiesce(E.sessions);
    hd_store_stop(E.store);
    hd_sessions_stop(E.sessions);
    hd_config_free(E.cfg);
    hd_test_remove_dir(E.dir);
    rcu_unregister_thread();
    memset(&E, 0, sizeof(E));
}

/* ---- tests -------------------------------------------------------------- */

Test(session_actor, created_session_is_alive_and_persisted, .init = setup, .fini = teardown,
     .timeout = 60)
{
    struct hd_session_req *r = create();
    cr_expect_eq(strlen(r->refresh_token), HD_REFRESH_TOKEN_LEN);
    cr_expect(alive(r->session.id));
    struct hd_session_info info;
    cr_assert(hd_session_lookup(E.sessions, r->session.id, now_ms(), &info));
    cr_expect_str_eq(info.user_id, E.user.id);
    cr_expect_str_eq(info.org_id, E.user.org_id);
    cr_expect_eq(info.role, HD_ROLE_ADMIN);
    cr_expect_not(alive("00000000-0000-4000-8000-000000000000"));

    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSIONS_LIST);
    memcpy(op->user_id, E.user.id, sizeof(op->user_id));
    op->now = now_ms();
    store_run(op);
    cr_assert_eq(op->status, HD_STORE_OK);
    cr_expect_eq(op->n_sessions, 1);
    hd_store_op_free(op);
    hd_session_req_free(r);
}

Test(session_actor, rotation_returns_a_new_token_and_the_old_one_within_grace, .init = setup,
     .fini = teardown, .timeout = 60)
{
    struct hd_session_req *c = create();
    struct hd_session_req *r1 = rotate(c->refresh_token);
    cr_assert_eq(r1->status, HD_SESSION_OK);
    cr_expect_str_neq(r1->refresh_token, c->refresh_token);
    cr_expect_str_eq(r1->session.id, c->session.id);
    struct hd_session_req *r2 = rotate(c->refresh_token); /* a parallel tab, within grace */
    cr_assert_eq(r2->status, HD_SESSION_OK);
    cr_expect_str_eq(r2->refresh_token, r1->refresh_token, "same successor within grace");
    struct hd_session_req *r3 = rotate(r1->refresh_token); /* the successor rotates on */
    cr_expect_eq(r3->status, HD_SESSION_OK);
    cr_expect(alive(c->session.id));
    hd_session_req_free(c);
    hd_session_req_free(r1);
    hd_session_req_free(r2);
    hd_session_req_free(r3);
}

struct racer {
    const char *token;
    char got[HD_REFRESH_TOKEN_LEN + 1];
    enum hd_session_status status;
    pthread_barrier_t *barrier;
};

static void *race_rotate(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->barrier);
    struct hd_session_req *req = rotate(r->token);
    r->status = req->status;
    memcpy(r->got, req->refresh_token, sizeof(r->got));
    hd_session_req_free(req);
    return NULL;
}

Test(session_actor, ten_parallel_refreshes_converge_on_one_successor, .init = setup,
     .fini = teardown, .timeout = 60)
{
    struct hd_session_req *c = create();
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 10);
    struct racer racers[10];
    pthread_t t[10];
    for (int i = 0; i < 10; i++) {
        racers[i] = (struct racer){.token = c->refresh_token, .barrier = &barrier};
        pthread_create(&t[i], NULL, race_rotate, &racers[i]);
    }
    for (int i = 0; i < 10; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 10; i++) {
        cr_expect_eq(racers[i].status, HD_SESSION_OK, "racer %d: %d", i, racers[i].status);
        cr_expect_str_eq(racers[i].got, racers[0].got, "racer %d got another successor", i);
    }
    cr_expect(alive(c->session.id));
    hd_session_req_free(c);
}

Test(session_actor, reuse_after_the_grace_window_revokes_the_session, .init = setup,
     .fini = teardown, .timeout = 60)
{
    struct hd_session_req *c = create();
    struct hd_session_req *r1 = rotate(c->refresh_token);
    cr_assert_eq(r1->status, HD_SESSION_OK);
    hd_test_sleep_ms(1300); /* grace is 1 s in this fixture */
    struct hd_session_req *replay = rotate(c->refresh_token);
    cr_expect_eq(replay->status, HD_SESSION_REUSED);
    cr_expect_not(alive(c->session.id), "the whole session ends");
    struct hd_session_req *next = rotate(r1->refresh_token);
    cr_expect_eq(next->status, HD_SESSION_INVALID, "the successor dies with it");
    hd_session_req_free(c);
    hd_session_req_free(r1);
    hd_session_req_free(replay);
    hd_session_req_free(next);
}

Test(session_actor, revoke_takes_effect_at_once_and_refresh_then_fails, .init = setup,
     .fini = teardown, .timeout = 60)
{
    struct hd_session_req *c = create();
    struct hd_session_req *r = hd_session_req_new(HD_SESSION_REVOKE);
    memcpy(r->session_id, c->session.id, sizeof(r->session_id));
    memcpy(r->user_id, E.user.id, sizeof(r->user_id));
    cr_assert_eq(run(r), HD_SESSION_OK);
    cr_expect_not(alive(c->session.id));
    struct hd_session_req *again = rotate(c->refresh_token);
    cr_expect_eq(again->status, HD_SESSION_INVALID);
    hd_session_req_free(c);
    hd_session_req_free(r);
    hd_session_req_free(again);
}

Test(session_actor, revoke_of_another_users_session_is_refused, .init = setup, .fini = teardown,
     .timeout = 60)
{
    struct hd_session_req *c = create();
    struct hd_session_req *r = hd_session_req_new(HD_SESSION_REVOKE);
    memcpy(r->session_id, c->session.id, sizeof(r->session_id));
    snprintf(r->user_id, sizeof(r->user_id), "%s", "00000000-0000-4000-8000-000000000001");
    cr_expect_eq(run(r), HD_SESSION_INVALID);
    cr_expect(alive(c->session.id));
    hd_session_req_free(c);
    hd_session_req_free(r);
}

Test(session_actor, revoke_user_keeps_only_the_excepted_session, .init = setup, .fini = teardown,
     .timeout = 60)
{
    struct hd_session_req *a = create(), *b = create(), *k = create();
    struct hd_session_req *r = hd_session_req_new(HD_SESSION_REVOKE_USER);
    memcpy(r->user_id, E.user.id, sizeof(r->user_id));
    memcpy(r->except_id, k->session.id, sizeof(r->except_id));
    cr_assert_eq(run(r), HD_SESSION_OK);
    cr_expect_eq(r->count, 2);
    cr_expect_not(alive(a->session.id));
    cr_expect_not(alive(b->session.id));
    cr_expect(alive(k->session.id));
    hd_session_req_free(a);
    hd_session_req_free(b);
    hd_session_req_free(k);
    hd_session_req_free(r);
}

Test(session_actor, over_the_limit_the_oldest_session_is_evicted, .init = setup, .fini = teardown,
     .timeout = 60)
{
    struct hd_session_req *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = create(); /* max_per_user is 3 */
    cr_expect_not(alive(s[0]->session.id), "the oldest was evicted");
    for (int i = 1; i < 4; i++)
        cr_expect(alive(s[i]->session.id));
    struct hd_session_req *list = hd_session_req_new(HD_SESSION_LIST);
    memcpy(list->user_id, E.user.id, sizeof(list->user_id));
    cr_assert_eq(run(list), HD_SESSION_OK);
    cr_expect_eq(list->n_sessions, 3);
    for (int i = 0; i < 4; i++)
        hd_session_req_free(s[i]);
    hd_session_req_free(list);
}

static void setup_reject(void)
{
    setup_with("{\"max_per_user\":1,\"over_limit\":\"reject\"}");
}

Test(session_actor, over_the_limit_with_reject_refuses_the_new_session, .init = setup_reject,
     .fini = teardown, .timeout = 60)
{
    struct hd_session_req *a = create();
    struct hd_session_req *b = hd_session_req_new(HD_SESSION_CREATE);
    memcpy(b->user.id, E.user.id, sizeof(b->user.id));
    memcpy(b->user.org_id, E.user.org_id, sizeof(b->user.org_id));
    cr_expect_eq(run(b), HD_SESSION_LIMIT);
    cr_expect(alive(a->session.id));
    hd_session_req_free(a);
    hd_session_req_free(b);
}

Test(session_actor, idle_and_absolute_expiry_end_a_session, .init = setup, .fini = teardown,
     .timeout = 60)
{
    struct hd_session_req *c = create();
    int64_t now = now_ms();
    int64_t idle = (int64_t)E.cfg->session.idle_timeout_s * 1000;
    cr_expect(hd_session_lookup(E.sessions, c->session.id, now + idle - 1000, NULL));
    cr_expect_not(hd_session_lookup(E.sessions, c->session.id, now + 2 * idle + 1000, NULL),
                  "idle past the timeout");
    cr_expect_not(hd_session_lookup(E.sessions, c->session.id, c->session.expires_at, NULL),
                  "past the absolute lifetime");
    hd_session_req_free(c);
}

Test(session_actor, live_sessions_survive_a_restart, .init = setup, .fini = teardown, .timeout = 60)
{
    struct hd_session_req *keep = create(), *gone = create();
    struct hd_session_req *r = hd_session_req_new(HD_SESSION_REVOKE);
    memcpy(r->session_id, gone->session.id, sizeof(r->session_id));
    cr_assert_eq(run(r), HD_SESSION_OK);
    hd_sessions_quiesce(E.sessions); /* the store stays up: a restart of the actor only */
    hd_sessions_stop(E.sessions);
    start_sessions();
    bool loaded = false;
    for (int i = 0; i < 300 && !loaded; i++) {
        loaded = alive(keep->session.id);
        if (!loaded)
            hd_test_sleep_ms(10);
    }
    cr_expect(loaded, "the live session was loaded again");
    cr_expect_not(alive(gone->session.id), "the revoked one stays revoked");
    struct hd_session_req *rot = rotate(keep->refresh_token);
    cr_expect_eq(rot->status, HD_SESSION_OK, "its refresh token still works");
    hd_session_req_free(keep);
    hd_session_req_free(gone);
    hd_session_req_free(r);
    hd_session_req_free(rot);
}

/* A login that read the user before the user's sessions were ended (disable,
 * password change, global logout) must not get a live session out of it. */
Test(session_actor, a_session_based_on_a_record_read_before_an_end_all_is_refused, .init = setup,
     .fini = teardown, .timeout = 60)
{
    int64_t read_at = now_ms() * 1000 - 5000; /* µs: the login read the user here… */
    struct hd_session_req *end = hd_session_req_new(HD_SESSION_REVOKE_USER);
    memcpy(end->user_id, E.user.id, sizeof(end->user_id)); /* …then the account was disabled */
    cr_assert_eq(run(end), HD_SESSION_OK);

    struct hd_session_req *late = hd_session_req_new(HD_SESSION_CREATE);
    memcpy(late->user.id, E.user.id, sizeof(late->user.id));
    memcpy(late->user.org_id, E.user.org_id, sizeof(late->user.org_id));
    late->basis_us = read_at;
    cr_expect_eq(run(late), HD_SESSION_INVALID);
    cr_expect_eq(hd_sessions_count(E.sessions), 0, "nothing was published");

    struct hd_session_req *fresh = hd_session_req_new(HD_SESSION_CREATE);
    memcpy(fresh->user.id, E.user.id, sizeof(fresh->user.id));
    memcpy(fresh->user.org_id, E.user.org_id, sizeof(fresh->user.org_id));
    fresh->basis_us = now_ms() * 1000 + 5000; /* a login that read the user afterwards */
    cr_expect_eq(run(fresh), HD_SESSION_OK);
    hd_session_req_free(end);
    hd_session_req_free(late);
    hd_session_req_free(fresh);
}
