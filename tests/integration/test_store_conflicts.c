/* Unique keys on both backends: an email taken in any case is CONFLICT
 * "email", a username taken in any case is CONFLICT "username", any number
 * of users may have no username, and a failed registration leaves nothing
 * behind (organization and user are one transaction). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "herald/core.h"
#include "herald/store.h"
#include "store_fixture.h"

/* Runs @op, asserts CONFLICT naming @field, frees it. */
static void expect_conflict(struct hd_store_fixture *f, struct hd_store_op *op, const char *field)
{
    HD_STORE_EXPECT(f, op, HD_STORE_CONFLICT);
    cr_assert(op->conflict_field && strcmp(op->conflict_field, field) == 0,
              "[%s] %s: conflict_field %s, want %s", f->name, hd_store_op_name(op->kind),
              op->conflict_field ? op->conflict_field : "NULL", field);
    hd_store_op_free(op);
}

HD_STORE_TEST(store_conflicts, same_email_in_another_case, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "Taken@Example.com", NULL, &u);
    expect_conflict(f, hd_test_op_register("Org 2", "taken@example.com", NULL), "email");
    expect_conflict(f, hd_test_op_register("Org 3", "TAKEN@EXAMPLE.COM", "fresh"), "email");
    expect_conflict(f, hd_test_op_register("Org 4", "Taken@Example.com", NULL), "email");
    /* also for a member added to an existing organization */
    expect_conflict(f, hd_test_op_create_user(u.org_id, "tAkEn@example.COM", NULL, HD_ROLE_MEMBER),
                    "email");
    /* nothing of the failed registrations remains */
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM organizations"), 1,
                 "[%s] a failed registration left its organization behind", f->name);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM users"), 1);
    /* the connection is fine after a conflict */
    struct hd_user v;
    hd_test_store_register(f, "another@example.com", NULL, &v);
    hd_user_clear(&u);
    hd_user_clear(&v);
}

HD_STORE_TEST(store_conflicts, same_username_in_any_case, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "first@example.com", "Morpheus", &u);
    expect_conflict(f, hd_test_op_register("Org 2", "second@example.com", "morpheus"), "username");
    expect_conflict(f, hd_test_op_register("Org 3", "third@example.com", "MORPHEUS"), "username");
    expect_conflict(f, hd_test_op_register("Org 4", "fourth@example.com", "Morpheus"), "username");
    expect_conflict(
        f, hd_test_op_create_user(u.org_id, "fifth@example.com", "mOrPhEuS", HD_ROLE_MEMBER),
        "username");
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM organizations"), 1,
                 "[%s] a failed registration left its organization behind", f->name);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM users"), 1);
    hd_user_clear(&u);
}

HD_STORE_TEST(store_conflicts, many_users_without_username, .timeout = 30)
{
    struct hd_user a, b, c;
    hd_test_store_register(f, "nouser1@example.com", NULL, &a);
    hd_test_store_register(f, "nouser2@example.com", NULL, &b);
    hd_test_store_add_member(f, a.org_id, "nouser3@example.com", &c);
    cr_assert_null(a.username);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM users WHERE username IS NULL"), 3,
                 "[%s] users without username", f->name);
    hd_user_clear(&a);
    hd_user_clear(&b);
    hd_user_clear(&c);
}

HD_STORE_TEST(store_conflicts, update_profile_to_a_taken_username, .timeout = 30)
{
    struct hd_user a, b;
    hd_test_store_register(f, "a@example.com", "Trinity", &a);
    hd_test_store_register(f, "b@example.com", "niobe", &b);

    struct hd_store_op *op = hd_test_op_id(HD_OP_UPDATE_PROFILE, b.id, hd_test_unix_ms());
    op->user.username = hd_strdup("TRINITY");
    op->user.display_name = hd_strdup("Should not be stored");
    expect_conflict(f, op, "username");

    op = HD_STORE_EXPECT(f, hd_test_op_id(HD_OP_FIND_USER_BY_ID, b.id, 0), HD_STORE_OK);
    cr_assert(op->user.username && strcmp(op->user.username, "niobe") == 0,
              "[%s] username changed by a failed update: %s", f->name,
              op->user.username ? op->user.username : "NULL");
    cr_assert(op->user.display_name && strcmp(op->user.display_name, "Test User") == 0,
              "[%s] display_name changed by a failed update", f->name);
    hd_store_op_free(op);

    /* once a clears it, b may take it */
    op = hd_test_op_id(HD_OP_UPDATE_PROFILE, a.id, hd_test_unix_ms());
    op->user.username = hd_strdup("");
    HD_STORE_EXPECT_FREE(f, op, HD_STORE_OK);
    op = hd_test_op_id(HD_OP_UPDATE_PROFILE, b.id, hd_test_unix_ms());
    op->user.username = hd_strdup("trinity");
    HD_STORE_EXPECT_FREE(f, op, HD_STORE_OK);
    /* and now a registration with it conflicts with b */
    expect_conflict(f, hd_test_op_register("Org", "c@example.com", "Trinity"), "username");
    hd_user_clear(&a);
    hd_user_clear(&b);
}
