/* Notifications on both backends: insert (ids strictly increase), list (own
 * + organization-wide only, newest first, cursor pagination, unread filter,
 * per-user read flag), mark_read, mark_all_read, events_after, purge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "herald/core.h"
#include "herald/store.h"
#include "store_fixture.h"

/* Two organizations: A with u1 (admin) and u2, B with v1. */
struct world {
    struct hd_user u1, u2, v1;
};

static void world_init(struct hd_store_fixture *f, struct world *w)
{
    hd_test_store_register(f, "u1@example.com", NULL, &w->u1);
    hd_test_store_add_member(f, w->u1.org_id, "u2@example.com", &w->u2);
    hd_test_store_register(f, "v1@example.com", NULL, &w->v1);
}

static void world_clear(struct world *w)
{
    hd_user_clear(&w->u1);
    hd_user_clear(&w->u2);
    hd_user_clear(&w->v1);
}

static struct hd_store_op *list(struct hd_store_fixture *f, const struct hd_user *u,
                                int64_t before_id, int limit, bool unread_only)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATIONS_LIST);
    snprintf(op->user_id, sizeof op->user_id, "%s", u->id);
    snprintf(op->org_id, sizeof op->org_id, "%s", u->org_id);
    op->before_id = before_id;
    op->limit = limit;
    op->unread_only = unread_only;
    return HD_STORE_EXPECT(f, op, HD_STORE_OK);
}

static struct hd_store_op *events_after(struct hd_store_fixture *f, const struct hd_user *u,
                                        int64_t after_id, int limit)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_EVENTS_AFTER);
    snprintf(op->user_id, sizeof op->user_id, "%s", u->id);
    snprintf(op->org_id, sizeof op->org_id, "%s", u->org_id);
    op->after_id = after_id;
    op->limit = limit;
    return HD_STORE_EXPECT(f, op, HD_STORE_OK);
}

static void mark_read(struct hd_store_fixture *f, int64_t id, const struct hd_user *u,
                      enum hd_store_status want)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATION_MARK_READ);
    op->notification.id = id;
    snprintf(op->id, sizeof op->id, "%lld", (long long)id);
    snprintf(op->user_id, sizeof op->user_id, "%s", u->id);
    snprintf(op->org_id, sizeof op->org_id, "%s", u->org_id);
    op->now = hd_test_unix_ms();
    HD_STORE_EXPECT_FREE(f, op, want);
}

static int64_t mark_all_read(struct hd_store_fixture *f, const struct hd_user *u)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATIONS_MARK_ALL_READ);
    snprintf(op->user_id, sizeof op->user_id, "%s", u->id);
    snprintf(op->org_id, sizeof op->org_id, "%s", u->org_id);
    op->now = hd_test_unix_ms();
    HD_STORE_EXPECT(f, op, HD_STORE_OK);
    int64_t n = op->count;
    hd_store_op_free(op);
    return n;
}

/* Asserts the ids of @op's notifications are exactly @want, in that order. */
static void expect_ids(struct hd_store_fixture *f, const struct hd_store_op *op,
                       const int64_t *want, size_t n, const char *what)
{
    char got[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < op->n_notifications && len < sizeof got - 24; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, " %lld",
                                (long long)op->notifications[i].id);
    cr_assert_eq(op->n_notifications, n, "[%s] %s: %zu notifications (%s), want %zu", f->name, what,
                 op->n_notifications, got, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(op->notifications[i].id, want[i], "[%s] %s: position %zu is %lld, want %lld",
                     f->name, what, i, (long long)op->notifications[i].id, (long long)want[i]);
}

static const struct hd_notification *by_id(const struct hd_store_op *op, int64_t id)
{
    for (size_t i = 0; i < op->n_notifications; i++) {
        if (op->notifications[i].id == id)
            return &op->notifications[i];
    }
    cr_assert_fail("notification %lld not in the result", (long long)id);
    return NULL;
}

HD_STORE_TEST(store_notifications, insert_ids_strictly_increase, .timeout = 30)
{
    struct world w;
    world_init(f, &w);
    int64_t t0 = hd_test_unix_ms(), last = 0;
    for (int i = 0; i < 12; i++) {
        const struct hd_user *to = i % 3 == 0 ? &w.u1 : i % 3 == 1 ? &w.u2 : &w.v1;
        struct hd_store_op *op = HD_STORE_EXPECT(
            f, hd_test_op_notification(to->org_id, i % 4 == 0 ? "" : to->id, "t"), HD_STORE_OK);
        cr_assert_gt(op->notification.id, last, "[%s] id %lld after %lld", f->name,
                     (long long)op->notification.id, (long long)last);
        cr_assert(op->notification.created_at >= t0 - 60000 &&
                      op->notification.created_at <= hd_test_unix_ms() + 60000,
                  "[%s] created_at %lld", f->name, (long long)op->notification.created_at);
        last = op->notification.id;
        hd_store_op_free(op);
    }

    /* what was stored comes back: own with data, organization-wide without */
    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATION_INSERT);
    snprintf(op->notification.org_id, sizeof op->notification.org_id, "%s", w.u1.org_id);
    snprintf(op->notification.user_id, sizeof op->notification.user_id, "%s", w.u1.id);
    op->notification.type = hd_strdup("invoice.paid");
    op->notification.title = hd_strdup("Paid ✓");
    op->notification.body = hd_strdup("Invoice #42 \"was\" paid");
    op->notification.data = hd_strdup("{\"invoice\":42,\"tags\":[\"a\",\"b\"]}");
    HD_STORE_EXPECT(f, op, HD_STORE_OK);
    int64_t own = op->notification.id;
    hd_store_op_free(op);
    op = hd_test_op_notification(w.u1.org_id, NULL, "everyone");
    free(op->notification.data);
    op->notification.data = NULL;
    HD_STORE_EXPECT(f, op, HD_STORE_OK);
    int64_t wide = op->notification.id;
    cr_assert_gt(wide, own);
    hd_store_op_free(op);

    op = events_after(f, &w.u1, last, 10);
    int64_t both[] = {own, wide};
    expect_ids(f, op, both, 2, "events after the first batch");
    const struct hd_notification *n = by_id(op, own);
    cr_assert_str_eq(n->org_id, w.u1.org_id);
    cr_assert_str_eq(n->user_id, w.u1.id);
    cr_assert(n->type && strcmp(n->type, "invoice.paid") == 0, "[%s] type", f->name);
    cr_assert(n->title && strcmp(n->title, "Paid ✓") == 0, "[%s] title", f->name);
    cr_assert(n->body && strcmp(n->body, "Invoice #42 \"was\" paid") == 0, "[%s] body", f->name);
    cr_assert(n->data && strcmp(n->data, "{\"invoice\":42,\"tags\":[\"a\",\"b\"]}") == 0,
              "[%s] data %s", f->name, n->data ? n->data : "NULL");
    n = by_id(op, wide);
    cr_assert_str_eq(n->user_id, "", "[%s] organization-wide user_id is %s", f->name, n->user_id);
    cr_assert_null(n->data, "[%s] NULL data came back as %s", f->name, n->data);
    hd_store_op_free(op);
    world_clear(&w);
}

HD_STORE_TEST(store_notifications, list_shows_own_and_org_wide_newest_first, .timeout = 30)
{
    struct world w;
    world_init(f, &w);
    int64_t n1 = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "to u1");
    int64_t n2 = hd_test_store_notify(f, w.u1.org_id, NULL, "to org A");
    int64_t n3 = hd_test_store_notify(f, w.u2.org_id, w.u2.id, "to u2");
    int64_t n4 = hd_test_store_notify(f, w.v1.org_id, w.v1.id, "to v1");
    int64_t n5 = hd_test_store_notify(f, w.v1.org_id, "", "to org B");
    int64_t n6 = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "to u1 again");

    struct hd_store_op *op = list(f, &w.u1, 0, 50, false);
    int64_t want1[] = {n6, n2, n1};
    expect_ids(f, op, want1, 3, "u1's list");
    for (size_t i = 0; i < op->n_notifications; i++) {
        cr_assert_not(op->notifications[i].read);
        cr_assert_str_eq(op->notifications[i].org_id, w.u1.org_id);
    }
    cr_assert(by_id(op, n2)->title && strcmp(by_id(op, n2)->title, "to org A") == 0);
    cr_assert_str_eq(by_id(op, n2)->user_id, "");
    hd_store_op_free(op);

    op = list(f, &w.u2, 0, 50, false);
    int64_t want2[] = {n3, n2};
    expect_ids(f, op, want2, 2, "u2's list");
    hd_store_op_free(op);
    op = list(f, &w.v1, 0, 50, false);
    int64_t want3[] = {n5, n4};
    expect_ids(f, op, want3, 2, "v1's list");
    hd_store_op_free(op);

    /* limit keeps the newest */
    op = list(f, &w.u1, 0, 2, false);
    int64_t newest[] = {n6, n2};
    expect_ids(f, op, newest, 2, "u1's list, limit 2");
    hd_store_op_free(op);
    world_clear(&w);
}

HD_STORE_TEST(store_notifications, cursor_pagination_covers_everything_once, .timeout = 60)
{
    struct world w;
    world_init(f, &w);
    enum { VISIBLE = 23, LIMIT = 5 };
    int64_t visible[VISIBLE];
    int nv = 0;
    for (int i = 0; nv < VISIBLE; i++) {
        switch (i % 4) {
        case 0:
            visible[nv++] = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "own");
            break;
        case 1:
            visible[nv++] = hd_test_store_notify(f, w.u1.org_id, NULL, "org-wide");
            break;
        case 2:
            hd_test_store_notify(f, w.u2.org_id, w.u2.id, "not u1's");
            visible[nv++] = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "own");
            break;
        default:
            hd_test_store_notify(f, w.v1.org_id, i % 8 == 3 ? NULL : w.v1.id, "other org");
        }
    }
    int64_t seen[VISIBLE + 10];
    size_t n_seen = 0;
    int64_t cursor = 0;
    for (int page = 0; page < 20; page++) {
        struct hd_store_op *op = list(f, &w.u1, cursor, LIMIT, false);
        cr_assert_leq(op->n_notifications, LIMIT, "[%s] page of %zu > limit", f->name,
                      op->n_notifications);
        size_t got = op->n_notifications;
        for (size_t i = 0; i < got; i++) {
            int64_t id = op->notifications[i].id;
            cr_assert(cursor == 0 || id < cursor, "[%s] id %lld not before cursor %lld", f->name,
                      (long long)id, (long long)cursor);
            cr_assert(n_seen == 0 || id < seen[n_seen - 1], "[%s] not newest first", f->name);
            cr_assert_lt(n_seen, HD_ARRAY_LEN(seen), "[%s] too many rows", f->name);
            seen[n_seen++] = id;
        }
        if (got)
            cursor = op->notifications[got - 1].id;
        hd_store_op_free(op);
        if (got < LIMIT)
            break;
    }
    cr_assert_eq(n_seen, VISIBLE, "[%s] pages held %zu notifications, want %d", f->name, n_seen,
                 VISIBLE);
    for (size_t i = 0; i < VISIBLE; i++)
        cr_assert_eq(seen[i], visible[VISIBLE - 1 - i], "[%s] page order at %zu", f->name, i);
    world_clear(&w);
}

HD_STORE_TEST(store_notifications, mark_read_and_unread_filter, .timeout = 30)
{
    struct world w;
    world_init(f, &w);
    int64_t n1 = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "1");
    int64_t n2 = hd_test_store_notify(f, w.u1.org_id, NULL, "2");
    int64_t n3 = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "3");
    int64_t n4 = hd_test_store_notify(f, w.u2.org_id, w.u2.id, "4");
    int64_t n5 = hd_test_store_notify(f, w.v1.org_id, NULL, "5");
    int64_t n6 = hd_test_store_notify(f, w.v1.org_id, w.v1.id, "6");

    mark_read(f, n1, &w.u1, HD_STORE_OK);
    mark_read(f, n2, &w.u1, HD_STORE_OK);
    mark_read(f, n1, &w.u1, HD_STORE_OK); /* again: still visible, still fine */

    struct hd_store_op *op = list(f, &w.u1, 0, 50, false);
    int64_t all[] = {n3, n2, n1};
    expect_ids(f, op, all, 3, "u1's list");
    cr_assert_not(by_id(op, n3)->read, "[%s] n3 read", f->name);
    cr_assert(by_id(op, n2)->read, "[%s] n2 (org-wide) not read", f->name);
    cr_assert(by_id(op, n1)->read, "[%s] n1 not read", f->name);
    hd_store_op_free(op);
    op = list(f, &w.u1, 0, 50, true);
    int64_t unread[] = {n3};
    expect_ids(f, op, unread, 1, "u1's unread");
    hd_store_op_free(op);

    /* the read flag belongs to the user: u2 still has n2 unread */
    op = list(f, &w.u2, 0, 50, true);
    int64_t u2_unread[] = {n4, n2};
    expect_ids(f, op, u2_unread, 2, "u2's unread");
    hd_store_op_free(op);

    /* not visible to u1: another user's, another org's, a missing id */
    mark_read(f, n4, &w.u1, HD_STORE_NOT_FOUND);
    mark_read(f, n5, &w.u1, HD_STORE_NOT_FOUND);
    mark_read(f, n6, &w.u1, HD_STORE_NOT_FOUND);
    mark_read(f, n6 + 1000, &w.u1, HD_STORE_NOT_FOUND);
    op = list(f, &w.u2, 0, 50, true);
    expect_ids(f, op, u2_unread, 2, "u2's unread after u1's attempts");
    hd_store_op_free(op);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM notification_reads"), 2);
    world_clear(&w);
}

HD_STORE_TEST(store_notifications, mark_all_read_counts_and_is_per_user, .timeout = 30)
{
    struct world w;
    world_init(f, &w);
    int64_t n1 = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "1");
    int64_t n2 = hd_test_store_notify(f, w.u1.org_id, NULL, "2");
    hd_test_store_notify(f, w.u1.org_id, w.u1.id, "3");
    int64_t n4 = hd_test_store_notify(f, w.u2.org_id, w.u2.id, "4");
    hd_test_store_notify(f, w.v1.org_id, NULL, "5");
    int64_t n6 = hd_test_store_notify(f, w.u1.org_id, NULL, "6");
    mark_read(f, n1, &w.u1, HD_STORE_OK);

    int64_t count = mark_all_read(f, &w.u1);
    cr_assert_eq(count, 3, "[%s] mark_all_read counted %lld, want 3 (n2, n3, n6)", f->name,
                 (long long)count);
    struct hd_store_op *op = list(f, &w.u1, 0, 50, true);
    cr_assert_eq(op->n_notifications, 0, "[%s] unread left: %zu", f->name, op->n_notifications);
    hd_store_op_free(op);
    op = list(f, &w.u1, 0, 50, false);
    cr_assert_eq(op->n_notifications, 4);
    for (size_t i = 0; i < op->n_notifications; i++)
        cr_assert(op->notifications[i].read, "[%s] %lld not read", f->name,
                  (long long)op->notifications[i].id);
    hd_store_op_free(op);
    cr_assert_eq(mark_all_read(f, &w.u1), 0, "[%s] second mark_all_read", f->name);

    op = list(f, &w.u2, 0, 50, true);
    int64_t u2_unread[] = {n6, n4, n2};
    expect_ids(f, op, u2_unread, 3, "u2's unread after u1 read all");
    hd_store_op_free(op);
    op = list(f, &w.v1, 0, 50, true);
    cr_assert_eq(op->n_notifications, 1, "[%s] v1's unread touched", f->name);
    hd_store_op_free(op);
    cr_assert_eq(mark_all_read(f, &w.v1), 1);
    world_clear(&w);
}

HD_STORE_TEST(store_notifications, events_after_ascending_visible_limited, .timeout = 30)
{
    struct world w;
    world_init(f, &w);
    int64_t mine[8];
    int nm = 0;
    for (int i = 0; i < 8; i++) {
        hd_test_store_notify(f, w.u2.org_id, w.u2.id, "u2");
        hd_test_store_notify(f, w.v1.org_id, i % 2 ? NULL : w.v1.id, "B");
        mine[nm++] = hd_test_store_notify(f, w.u1.org_id, i % 2 ? NULL : w.u1.id, "mine");
    }
    struct hd_store_op *op = events_after(f, &w.u1, 0, 100);
    expect_ids(f, op, mine, 8, "events after 0");
    for (size_t i = 0; i < op->n_notifications; i++)
        cr_assert_str_eq(op->notifications[i].org_id, w.u1.org_id);
    hd_store_op_free(op);

    op = events_after(f, &w.u1, mine[3], 100);
    expect_ids(f, op, mine + 4, 4, "events after the 4th");
    hd_store_op_free(op);
    /* an after_id between two visible ones (an invisible id) */
    op = events_after(f, &w.u1, mine[3] + 1, 100);
    expect_ids(f, op, mine + 4, 4, "events after an invisible id");
    hd_store_op_free(op);
    op = events_after(f, &w.u1, mine[1], 3);
    expect_ids(f, op, mine + 2, 3, "events after the 2nd, limit 3");
    hd_store_op_free(op);
    op = events_after(f, &w.u1, mine[7], 100);
    expect_ids(f, op, NULL, 0, "events after the last");
    hd_store_op_free(op);

    /* u2 sees its own and the org-wide ones of A */
    op = events_after(f, &w.u2, 0, 100);
    cr_assert_eq(op->n_notifications, 8 + 4, "[%s] u2: %zu events", f->name, op->n_notifications);
    for (size_t i = 1; i < op->n_notifications; i++)
        cr_assert_gt(op->notifications[i].id, op->notifications[i - 1].id);
    hd_store_op_free(op);
    world_clear(&w);
}

HD_STORE_TEST(store_notifications, purge_removes_only_old_ones, .timeout = 30)
{
    struct world w;
    world_init(f, &w);
    int64_t old_max_created = 0, old_ids[5];
    for (int i = 0; i < 5; i++) {
        struct hd_store_op *op = HD_STORE_EXPECT(
            f, hd_test_op_notification(w.u1.org_id, i % 2 ? NULL : w.u1.id, "old"), HD_STORE_OK);
        old_ids[i] = op->notification.id;
        if (op->notification.created_at > old_max_created)
            old_max_created = op->notification.created_at;
        hd_store_op_free(op);
    }
    mark_read(f, old_ids[0], &w.u1, HD_STORE_OK); /* a read row must not block the purge */
    int64_t cut = old_max_created + 1;
    hd_test_sleep_ms(20);
    int64_t fresh[3];
    for (int i = 0; i < 3; i++) {
        struct hd_store_op *op = HD_STORE_EXPECT(
            f, hd_test_op_notification(w.u1.org_id, i % 2 ? NULL : w.u1.id, "new"), HD_STORE_OK);
        cr_assert_gt(op->notification.created_at, cut, "[%s] clock went backwards", f->name);
        fresh[i] = op->notification.id;
        hd_store_op_free(op);
    }

    struct hd_store_op *op = hd_store_op_new(HD_OP_NOTIFICATIONS_PURGE);
    op->before = cut;
    HD_STORE_EXPECT(f, op, HD_STORE_OK);
    cr_assert_eq(op->count, 5, "[%s] purge counted %lld, want 5", f->name, (long long)op->count);
    hd_store_op_free(op);

    op = events_after(f, &w.u1, 0, 100);
    expect_ids(f, op, fresh, 3, "after purge");
    hd_store_op_free(op);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM notifications"), 3);

    op = hd_store_op_new(HD_OP_NOTIFICATIONS_PURGE);
    op->before = cut;
    HD_STORE_EXPECT(f, op, HD_STORE_OK);
    cr_assert_eq(op->count, 0, "[%s] second purge counted %lld", f->name, (long long)op->count);
    hd_store_op_free(op);
    world_clear(&w);
}

/* events_after reports in count the smallest id still stored, whoever it
 * belongs to, with or without events for the caller: what a resume compares
 * its Last-Event-ID with to see that retention removed events. */
HD_STORE_TEST(store_notifications, events_after_reports_smallest_stored_id, .timeout = 30)
{
    struct world w;
    world_init(f, &w);
    struct hd_store_op *op = events_after(f, &w.u1, 0, 100);
    cr_assert_eq(op->n_notifications, 0);
    cr_assert_eq(op->count, 0, "[%s] empty table: smallest id %lld, want 0", f->name,
                 (long long)op->count);
    hd_store_op_free(op);

    /* the oldest belongs to another organization, then old ones of u1 */
    struct hd_store_op *ins =
        HD_STORE_EXPECT(f, hd_test_op_notification(w.v1.org_id, w.v1.id, "B, oldest"), HD_STORE_OK);
    int64_t oldest = ins->notification.id, oldest_created = ins->notification.created_at;
    hd_store_op_free(ins);
    int64_t a1 = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "u1 old");
    int64_t a2 = hd_test_store_notify(f, w.u1.org_id, NULL, "A old");
    hd_test_sleep_ms(20);
    int64_t a3 = hd_test_store_notify(f, w.u1.org_id, w.u1.id, "u1 new");
    int64_t a4 = hd_test_store_notify(f, w.u1.org_id, NULL, "A new");

    op = events_after(f, &w.u1, 0, 100);
    int64_t all[] = {a1, a2, a3, a4};
    expect_ids(f, op, all, 4, "u1's events with the smallest id");
    cr_assert_eq(op->count, oldest, "[%s] smallest id %lld, want %lld (another org's)", f->name,
                 (long long)op->count, (long long)oldest);
    hd_store_op_free(op);
    /* no event after the cursor: still reported */
    op = events_after(f, &w.u1, a4, 100);
    cr_assert_eq(op->n_notifications, 0);
    cr_assert_eq(op->count, oldest, "[%s] no events: smallest id %lld, want %lld", f->name,
                 (long long)op->count, (long long)oldest);
    hd_store_op_free(op);
    /* a user who sees none of them */
    op = events_after(f, &w.u2, a4, 100);
    cr_assert_eq(op->count, oldest);
    hd_store_op_free(op);
    /* the limit does not hide it */
    op = events_after(f, &w.u1, a1, 1);
    int64_t one[] = {a2};
    expect_ids(f, op, one, 1, "limit 1");
    cr_assert_eq(op->count, oldest);
    hd_store_op_free(op);

    /* retention removes the oldest ones: the smallest id moves up */
    struct hd_store_op *purge = hd_store_op_new(HD_OP_NOTIFICATIONS_PURGE);
    int64_t a2_created =
        hd_test_store_sql_int(f, "SELECT max(created_at) FROM notifications WHERE title = 'A old'");
    cr_assert_geq(a2_created, oldest_created);
    purge->before = a2_created + 1;
    HD_STORE_EXPECT(f, purge, HD_STORE_OK);
    cr_assert_eq(purge->count, 3, "[%s] purged %lld", f->name, (long long)purge->count);
    hd_store_op_free(purge);
    op = events_after(f, &w.u1, a1 - 1, 100);
    int64_t left[] = {a3, a4};
    expect_ids(f, op, left, 2, "after the purge");
    cr_assert_eq(op->count, a3, "[%s] smallest id after purge %lld, want %lld", f->name,
                 (long long)op->count, (long long)a3);
    hd_store_op_free(op);
    world_clear(&w);
}

/* events_after pages go up to HD_EVENTS_AFTER_MAX (a replay of
 * sse.replay_max + 1), while a list page stays capped at 500. */
HD_STORE_TEST(store_notifications, events_after_limit_above_500, .timeout = 120)
{
    struct world w;
    world_init(f, &w);
    enum { N = 520 };
    int64_t first = 0, last = 0;
    for (int i = 0; i < N; i++) {
        last = hd_test_store_notify(f, w.u1.org_id, i % 2 ? NULL : w.u1.id, "many");
        if (i == 0)
            first = last;
    }
    struct hd_store_op *op = events_after(f, &w.u1, 0, 510);
    cr_assert_eq(op->n_notifications, 510, "[%s] limit 510 gave %zu events", f->name,
                 op->n_notifications);
    cr_assert_eq(op->notifications[0].id, first);
    for (size_t i = 1; i < op->n_notifications; i++)
        cr_assert_gt(op->notifications[i].id, op->notifications[i - 1].id);
    hd_store_op_free(op);
    op = events_after(f, &w.u1, 0, HD_EVENTS_AFTER_MAX);
    cr_assert_eq(op->n_notifications, N, "[%s] limit max gave %zu events", f->name,
                 op->n_notifications);
    cr_assert_eq(op->notifications[N - 1].id, last);
    cr_assert_eq(op->count, first);
    hd_store_op_free(op);
    op = events_after(f, &w.u1, 0, HD_EVENTS_AFTER_MAX + 1000); /* clamped, not refused */
    cr_assert_eq(op->n_notifications, N);
    hd_store_op_free(op);

    /* the other lists keep their cap */
    op = list(f, &w.u1, 0, 510, false);
    cr_assert_eq(op->n_notifications, 500, "[%s] list limit 510 gave %zu", f->name,
                 op->n_notifications);
    hd_store_op_free(op);
    world_clear(&w);
}
