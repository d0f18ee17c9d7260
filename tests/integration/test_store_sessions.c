/* Sessions and refresh tokens on both backends: create, refresh_find,
 * touch, rotate (the old token keeps its successor; it cannot be rotated
 * twice), revoke, revoke_user (with except_id), list (live only, newest
 * first) and load_live (no expired, no revoked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "herald/store.h"
#include "store_fixture.h"

#define DAY_MS (24 * 3600 * 1000LL)

static struct hd_store_op *refresh_find(struct hd_store_fixture *f, const char *hash,
                                        enum hd_store_status want)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_REFRESH_FIND);
    snprintf(op->token_hash, sizeof op->token_hash, "%s", hash);
    return HD_STORE_EXPECT(f, op, want);
}

static void rotate(struct hd_store_fixture *f, const char *sid, const char *cur, const char *next,
                   int64_t now, enum hd_store_status want)
{
    struct hd_store_op *op = hd_test_op_id(HD_OP_SESSION_ROTATE, sid, now);
    snprintf(op->token_hash, sizeof op->token_hash, "%s", cur);
    snprintf(op->new_token_hash, sizeof op->new_token_hash, "%s", next);
    HD_STORE_EXPECT_FREE(f, op, want);
}

static void by_id(struct hd_store_fixture *f, enum hd_store_op_kind kind, const char *id,
                  int64_t now, enum hd_store_status want)
{
    HD_STORE_EXPECT_FREE(f, hd_test_op_id(kind, id, now), want);
}

static struct hd_store_op *list(struct hd_store_fixture *f, const char *user_id, int64_t now)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSIONS_LIST);
    snprintf(op->user_id, sizeof op->user_id, "%s", user_id);
    op->now = now;
    return HD_STORE_EXPECT(f, op, HD_STORE_OK);
}

static struct hd_store_op *load_live(struct hd_store_fixture *f, int64_t now)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSIONS_LOAD_LIVE);
    op->now = now;
    return HD_STORE_EXPECT(f, op, HD_STORE_OK);
}

static struct hd_store_op *revoke_user(struct hd_store_fixture *f, const char *user_id,
                                       const char *except_id, int64_t now)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_SESSIONS_REVOKE_USER);
    snprintf(op->user_id, sizeof op->user_id, "%s", user_id);
    snprintf(op->except_id, sizeof op->except_id, "%s", except_id);
    op->now = now;
    return HD_STORE_EXPECT(f, op, HD_STORE_OK);
}

/* True when the ids of @ss (in any order) are exactly @want[0..n). */
static bool same_ids(const struct hd_session *ss, size_t nss, const char *const *want, size_t n)
{
    if (nss != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t k = 0; k < nss && !found; k++)
            found = strcmp(ss[k].id, want[i]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* The session @id as sessions_list shows it (asserts it is there). */
static const struct hd_session *listed(const struct hd_store_op *op, const char *id)
{
    for (size_t i = 0; i < op->n_sessions; i++) {
        if (strcmp(op->sessions[i].id, id) == 0)
            return &op->sessions[i];
    }
    cr_assert_fail("session %s not listed", id);
    return NULL;
}

HD_STORE_TEST(store_sessions, create_then_refresh_find, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "s1@example.com", NULL, &u);
    int64_t t0 = hd_test_unix_ms(), expires = t0 + 7 * DAY_MS;
    char sid[HD_ID_LEN + 1], hash[65], sid2[HD_ID_LEN + 1];
    hd_test_store_new_session(f, &u, expires, sid, hash);
    hd_test_store_new_session(f, &u, expires, sid2, NULL);
    cr_assert_str_neq(sid, sid2, "[%s] two sessions share an id", f->name);

    struct hd_store_op *op = refresh_find(f, hash, HD_STORE_OK);
    cr_assert_str_eq(op->refresh.token_hash, hash);
    cr_assert_str_eq(op->refresh.session_id, sid);
    cr_assert_eq(op->refresh.rotated_at, 0, "[%s] a new token is rotated", f->name);
    cr_assert_str_eq(op->refresh.successor_hash, "");
    struct hd_session *s = &op->session;
    cr_assert_str_eq(s->id, sid);
    cr_assert_str_eq(s->user_id, u.id);
    cr_assert_str_eq(s->org_id, u.org_id);
    cr_assert(s->user_agent && strcmp(s->user_agent, "test-agent/1.0") == 0, "[%s] user_agent",
              f->name);
    cr_assert(s->ip && strcmp(s->ip, "127.0.0.1") == 0, "[%s] ip", f->name);
    cr_assert_eq(s->expires_at, expires, "[%s] expires_at %lld, want %lld", f->name,
                 (long long)s->expires_at, (long long)expires);
    cr_assert_eq(s->revoked_at, 0);
    cr_assert(s->created_at >= t0 - 60000 && s->created_at <= hd_test_unix_ms() + 60000,
              "[%s] created_at %lld", f->name, (long long)s->created_at);
    cr_assert_geq(s->last_seen_at, s->created_at);
    hd_store_op_free(op);

    char other[65];
    hd_test_random_hash(other);
    hd_store_op_free(refresh_find(f, other, HD_STORE_NOT_FOUND));
    hd_user_clear(&u);
}

HD_STORE_TEST(store_sessions, touch_sets_last_seen, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "touch@example.com", NULL, &u);
    int64_t now = hd_test_unix_ms();
    char sid[HD_ID_LEN + 1];
    hd_test_store_new_session(f, &u, now + DAY_MS, sid, NULL);
    by_id(f, HD_OP_SESSION_TOUCH, sid, now + 5000, HD_STORE_OK);
    struct hd_store_op *op = list(f, u.id, now + 6000);
    cr_assert_eq(listed(op, sid)->last_seen_at, now + 5000, "[%s] last_seen_at %lld", f->name,
                 (long long)listed(op, sid)->last_seen_at);
    hd_store_op_free(op);

    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    by_id(f, HD_OP_SESSION_TOUCH, random, now, HD_STORE_NOT_FOUND);
    by_id(f, HD_OP_SESSION_REVOKE, sid, now + 7000, HD_STORE_OK);
    by_id(f, HD_OP_SESSION_TOUCH, sid, now + 8000, HD_STORE_NOT_FOUND);
    hd_user_clear(&u);
}

HD_STORE_TEST(store_sessions, rotate_marks_old_token_with_its_successor, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "rot@example.com", NULL, &u);
    int64_t now = hd_test_unix_ms();
    char sid[HD_ID_LEN + 1], h1[65], h2[65], h3[65], h4[65];
    hd_test_store_new_session(f, &u, now + DAY_MS, sid, h1);
    hd_test_random_hash(h2);
    hd_test_random_hash(h3);
    hd_test_random_hash(h4);

    rotate(f, sid, h1, h2, now + 1000, HD_STORE_OK);
    struct hd_store_op *op = refresh_find(f, h1, HD_STORE_OK);
    cr_assert_eq(op->refresh.rotated_at, now + 1000, "[%s] old token rotated_at %lld", f->name,
                 (long long)op->refresh.rotated_at);
    cr_assert_str_eq(op->refresh.successor_hash, h2, "[%s] old token's successor", f->name);
    cr_assert_str_eq(op->refresh.session_id, sid);
    cr_assert_str_eq(op->session.id, sid);
    hd_store_op_free(op);
    op = refresh_find(f, h2, HD_STORE_OK);
    cr_assert_eq(op->refresh.rotated_at, 0, "[%s] the new token is not current", f->name);
    cr_assert_str_eq(op->refresh.successor_hash, "");
    cr_assert_str_eq(op->refresh.session_id, sid);
    hd_store_op_free(op);

    /* the old one is no longer current: rotating it again fails, changes nothing */
    rotate(f, sid, h1, h3, now + 2000, HD_STORE_NOT_FOUND);
    op = refresh_find(f, h1, HD_STORE_OK);
    cr_assert_str_eq(op->refresh.successor_hash, h2, "[%s] failed rotate changed it", f->name);
    hd_store_op_free(op);
    hd_store_op_free(refresh_find(f, h3, HD_STORE_NOT_FOUND));

    /* the chain goes on from the current one */
    rotate(f, sid, h2, h3, now + 3000, HD_STORE_OK);
    op = refresh_find(f, h2, HD_STORE_OK);
    cr_assert_str_eq(op->refresh.successor_hash, h3);
    hd_store_op_free(op);

    /* a token that was never issued, and another session's current token */
    char sid2[HD_ID_LEN + 1], other[65];
    hd_test_store_new_session(f, &u, now + DAY_MS, sid2, other);
    rotate(f, sid, h4, h4, now + 4000, HD_STORE_NOT_FOUND);
    rotate(f, sid, other, h4, now + 4000, HD_STORE_NOT_FOUND);
    op = refresh_find(f, other, HD_STORE_OK);
    cr_assert_eq(op->refresh.rotated_at, 0, "[%s] rotated another session's token", f->name);
    hd_store_op_free(op);
    hd_user_clear(&u);
}

HD_STORE_TEST(store_sessions, revoke_once_then_not_found, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "rev@example.com", NULL, &u);
    int64_t now = hd_test_unix_ms();
    char a[HD_ID_LEN + 1], b[HD_ID_LEN + 1], ha[65];
    hd_test_store_new_session(f, &u, now + DAY_MS, a, ha);
    hd_test_store_new_session(f, &u, now + DAY_MS, b, NULL);

    by_id(f, HD_OP_SESSION_REVOKE, a, now + 10, HD_STORE_OK);
    /* its refresh token no longer leads to a live session */
    struct hd_store_op *found = hd_store_op_new(HD_OP_REFRESH_FIND);
    snprintf(found->token_hash, sizeof found->token_hash, "%s", ha);
    enum hd_store_status st = hd_test_store_exec(f, found);
    cr_assert(st == HD_STORE_NOT_FOUND ||
                  (st == HD_STORE_OK && found->session.revoked_at == now + 10),
              "[%s] refresh_find after revoke: %s, revoked_at %lld", f->name,
              hd_store_status_name(st), (long long)found->session.revoked_at);
    hd_store_op_free(found);
    by_id(f, HD_OP_SESSION_REVOKE, a, now + 20, HD_STORE_NOT_FOUND);
    by_id(f, HD_OP_SESSION_TOUCH, a, now + 30, HD_STORE_NOT_FOUND);
    by_id(f, HD_OP_SESSION_TOUCH, b, now + 30, HD_STORE_OK);
    struct hd_store_op *op = list(f, u.id, now + 40);
    const char *want[] = {b};
    cr_assert(same_ids(op->sessions, op->n_sessions, want, 1), "[%s] list after revoke: %zu",
              f->name, op->n_sessions);
    hd_store_op_free(op);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM sessions WHERE revoked_at IS NOT "
                                          "NULL"),
                 1);

    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    by_id(f, HD_OP_SESSION_REVOKE, random, now, HD_STORE_NOT_FOUND);
    hd_user_clear(&u);
}

HD_STORE_TEST(store_sessions, revoke_user_keeps_except_id_and_other_users, .timeout = 30)
{
    struct hd_user u, v;
    hd_test_store_register(f, "ru@example.com", NULL, &u);
    hd_test_store_add_member(f, u.org_id, "rv@example.com", &v);
    int64_t now = hd_test_unix_ms();
    char a[HD_ID_LEN + 1], b[HD_ID_LEN + 1], c[HD_ID_LEN + 1], d[HD_ID_LEN + 1];
    hd_test_store_new_session(f, &u, now + DAY_MS, a, NULL);
    hd_test_store_new_session(f, &u, now + DAY_MS, b, NULL);
    hd_test_store_new_session(f, &u, now + DAY_MS, c, NULL);
    hd_test_store_new_session(f, &v, now + DAY_MS, d, NULL);

    struct hd_store_op *op = revoke_user(f, u.id, b, now + 100);
    const char *revoked[] = {a, c};
    cr_assert(same_ids(op->sessions, op->n_sessions, revoked, 2),
              "[%s] revoke_user returned %zu sessions, want a and c", f->name, op->n_sessions);
    for (size_t i = 0; i < op->n_sessions; i++)
        cr_assert_str_eq(op->sessions[i].user_id, u.id);
    hd_store_op_free(op);

    op = list(f, u.id, now + 200);
    const char *left[] = {b};
    cr_assert(same_ids(op->sessions, op->n_sessions, left, 1), "[%s] left after revoke_user",
              f->name);
    hd_store_op_free(op);
    op = list(f, v.id, now + 200);
    const char *others[] = {d};
    cr_assert(same_ids(op->sessions, op->n_sessions, others, 1), "[%s] other user touched",
              f->name);
    hd_store_op_free(op);
    by_id(f, HD_OP_SESSION_TOUCH, a, now + 300, HD_STORE_NOT_FOUND);

    op = revoke_user(f, u.id, "", now + 400);
    cr_assert(same_ids(op->sessions, op->n_sessions, left, 1), "[%s] revoke all: %zu", f->name,
              op->n_sessions);
    hd_store_op_free(op);
    op = revoke_user(f, u.id, "", now + 500);
    cr_assert_eq(op->n_sessions, 0, "[%s] revoked an already revoked session", f->name);
    hd_store_op_free(op);
    op = list(f, u.id, now + 600);
    cr_assert_eq(op->n_sessions, 0);
    hd_store_op_free(op);
    hd_user_clear(&u);
    hd_user_clear(&v);
}

HD_STORE_TEST(store_sessions, list_is_live_only_newest_first, .timeout = 30)
{
    struct hd_user u, v;
    hd_test_store_register(f, "list@example.com", NULL, &u);
    hd_test_store_add_member(f, u.org_id, "list2@example.com", &v);
    int64_t now = hd_test_unix_ms();
    char s[5][HD_ID_LEN + 1], other[HD_ID_LEN + 1];
    hd_test_store_new_session(f, &u, now + DAY_MS, s[0], NULL);
    hd_test_sleep_ms(5);
    hd_test_store_new_session(f, &u, now + 60000, s[1], NULL); /* expires in a minute */
    hd_test_sleep_ms(5);
    hd_test_store_new_session(f, &u, now + DAY_MS, s[2], NULL);
    hd_test_sleep_ms(5);
    hd_test_store_new_session(f, &u, now + DAY_MS, s[3], NULL); /* revoked below */
    hd_test_sleep_ms(5);
    hd_test_store_new_session(f, &u, now + DAY_MS, s[4], NULL);
    hd_test_store_new_session(f, &v, now + DAY_MS, other, NULL);
    by_id(f, HD_OP_SESSION_REVOKE, s[3], now + 10, HD_STORE_OK);

    struct hd_store_op *op = list(f, u.id, now + 1000);
    cr_assert_eq(op->n_sessions, 4, "[%s] %zu sessions listed, want 4", f->name, op->n_sessions);
    const char *order[] = {s[4], s[2], s[1], s[0]};
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(op->sessions[i].id, order[i], "[%s] position %zu is not newest first",
                         f->name, i);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(op->sessions[i].user_id, u.id);
        cr_assert_eq(op->sessions[i].revoked_at, 0);
    }
    hd_store_op_free(op);

    /* two minutes later s[1] has expired */
    op = list(f, u.id, now + 120000);
    const char *later[] = {s[4], s[2], s[0]};
    cr_assert_eq(op->n_sessions, 3, "[%s] expired session still listed (%zu)", f->name,
                 op->n_sessions);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(op->sessions[i].id, later[i]);
    hd_store_op_free(op);

    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    op = list(f, random, now);
    cr_assert_eq(op->n_sessions, 0);
    hd_store_op_free(op);
    hd_user_clear(&u);
    hd_user_clear(&v);
}

HD_STORE_TEST(store_sessions, load_live_excludes_expired_and_revoked, .timeout = 30)
{
    struct hd_user u, v;
    hd_test_store_register(f, "live@example.com", NULL, &u);
    hd_test_store_register(f, "live2@example.com", NULL, &v);
    int64_t now = hd_test_unix_ms();
    char a[HD_ID_LEN + 1], b[HD_ID_LEN + 1], c[HD_ID_LEN + 1], d[HD_ID_LEN + 1], e[HD_ID_LEN + 1];
    hd_test_store_new_session(f, &u, now + DAY_MS, a, NULL);
    hd_test_store_new_session(f, &u, now + 60000, b, NULL);
    hd_test_store_new_session(f, &u, now + DAY_MS, c, NULL);
    hd_test_store_new_session(f, &v, now + DAY_MS, d, NULL);
    hd_test_store_new_session(f, &v, now - 1000, e, NULL); /* already expired */
    by_id(f, HD_OP_SESSION_REVOKE, c, now + 1, HD_STORE_OK);

    struct hd_store_op *op = load_live(f, now + 1000);
    const char *live[] = {a, b, d};
    cr_assert(same_ids(op->sessions, op->n_sessions, live, 3),
              "[%s] load_live returned %zu sessions, want a, b, d", f->name, op->n_sessions);
    for (size_t i = 0; i < op->n_sessions; i++) {
        const struct hd_session *s = &op->sessions[i];
        cr_assert_str_eq(s->org_id, strcmp(s->id, d) == 0 ? v.org_id : u.org_id);
        cr_assert_str_eq(s->user_id, strcmp(s->id, d) == 0 ? v.id : u.id);
        cr_assert_gt(s->expires_at, now);
    }
    hd_store_op_free(op);

    op = load_live(f, now + 120000);
    const char *later[] = {a, d};
    cr_assert(same_ids(op->sessions, op->n_sessions, later, 2),
              "[%s] load_live two minutes later: %zu sessions, want a, d", f->name, op->n_sessions);
    hd_store_op_free(op);
    hd_user_clear(&u);
    hd_user_clear(&v);
}
