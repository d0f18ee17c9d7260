/* Users and organizations on both backends: create_org_and_user,
 * create_user, find by email / id, update_profile, set_password_hash,
 * set_user_disabled, with their NOT_FOUND cases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "herald/core.h"
#include "herald/store.h"
#include "store_fixture.h"

#define NEW_HASH "$argon2id$v=19$m=65536,t=3,p=1$bmV3c2FsdG5ld3NhbHQ$bmV3aGFzaG5ld2hhc2g"

static struct hd_store_op *find_by_id(struct hd_store_fixture *f, const char *id,
                                      enum hd_store_status want)
{
    return HD_STORE_EXPECT(f, hd_test_op_id(HD_OP_FIND_USER_BY_ID, id, 0), want);
}

static struct hd_store_op *find_by_email(struct hd_store_fixture *f, const char *email,
                                         enum hd_store_status want)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_FIND_USER_BY_EMAIL);
    op->email = hd_strdup(email);
    return HD_STORE_EXPECT(f, op, want);
}

static bool str_eq_or_null(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static struct hd_store_op *update_profile(struct hd_store_fixture *f, const char *id,
                                          const char *username, const char *display_name,
                                          enum hd_store_status want)
{
    struct hd_store_op *op = hd_test_op_id(HD_OP_UPDATE_PROFILE, id, hd_test_unix_ms());
    op->user.username = username ? hd_strdup(username) : NULL;
    op->user.display_name = display_name ? hd_strdup(display_name) : NULL;
    return HD_STORE_EXPECT(f, op, want);
}

/* Asserts the stored profile of @id. */
static void expect_profile(struct hd_store_fixture *f, const char *id, const char *username,
                           const char *display_name)
{
    struct hd_store_op *op = find_by_id(f, id, HD_STORE_OK);
    cr_assert(str_eq_or_null(op->user.username, username), "[%s] username %s, want %s", f->name,
              op->user.username ? op->user.username : "NULL", username ? username : "NULL");
    cr_assert(str_eq_or_null(op->user.display_name, display_name), "[%s] display_name %s, want %s",
              f->name, op->user.display_name ? op->user.display_name : "NULL",
              display_name ? display_name : "NULL");
    hd_store_op_free(op);
}

HD_STORE_TEST(store_users, create_org_and_user_makes_an_admin_with_random_ids, .timeout = 30)
{
    int64_t t0 = hd_test_unix_ms();
    struct hd_store_op *op =
        HD_STORE_EXPECT(f, hd_test_op_register("Acme", "Ada@Example.com", "ada"), HD_STORE_OK);
    cr_assert(hd_test_is_uuid_v4(op->user.id), "[%s] user id %s", f->name, op->user.id);
    cr_assert(hd_test_is_uuid_v4(op->user.org_id), "[%s] org id %s", f->name, op->user.org_id);
    cr_assert_str_neq(op->user.id, op->user.org_id, "[%s] user id == org id", f->name);
    char id[HD_ID_LEN + 1], org[HD_ID_LEN + 1];
    strcpy(id, op->user.id);
    strcpy(org, op->user.org_id);
    hd_store_op_free(op);

    struct hd_user other;
    hd_test_store_register(f, "bob@example.com", NULL, &other);
    cr_assert_str_neq(other.id, id);
    cr_assert_str_neq(other.org_id, org, "[%s] two registrations share an org", f->name);
    cr_assert_str_neq(other.id, other.org_id);

    op = find_by_id(f, id, HD_STORE_OK);
    struct hd_user *u = &op->user;
    cr_assert_str_eq(u->id, id);
    cr_assert_str_eq(u->org_id, org);
    cr_assert_str_eq(u->email, "Ada@Example.com", "[%s] email not kept as registered", f->name);
    cr_assert(str_eq_or_null(u->username, "ada"));
    cr_assert(str_eq_or_null(u->display_name, "Test User"));
    cr_assert_not_null(u->password_hash);
    cr_assert_eq(u->role, HD_ROLE_ADMIN, "[%s] the first user is not admin", f->name);
    cr_assert_not(u->disabled);
    cr_assert(u->created_at >= t0 - 60000 && u->created_at <= hd_test_unix_ms() + 60000,
              "[%s] created_at %lld is not unix ms near %lld", f->name, (long long)u->created_at,
              (long long)t0);
    cr_assert_geq(u->updated_at, u->created_at);
    hd_store_op_free(op);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM organizations"), 2);
    hd_user_clear(&other);
}

HD_STORE_TEST(store_users, create_user_in_an_existing_org, .timeout = 30)
{
    struct hd_user admin;
    hd_test_store_register(f, "admin@example.com", "boss", &admin);
    struct hd_store_op *op = HD_STORE_EXPECT(
        f, hd_test_op_create_user(admin.org_id, "Member@Example.com", "mem", HD_ROLE_MEMBER),
        HD_STORE_OK);
    cr_assert(hd_test_is_uuid_v4(op->user.id), "[%s] id %s", f->name, op->user.id);
    cr_assert_str_neq(op->user.id, admin.id);
    char id[HD_ID_LEN + 1];
    strcpy(id, op->user.id);
    hd_store_op_free(op);

    op = find_by_id(f, id, HD_STORE_OK);
    cr_assert_str_eq(op->user.org_id, admin.org_id, "[%s] member in another org", f->name);
    cr_assert_str_eq(op->user.email, "Member@Example.com");
    cr_assert(str_eq_or_null(op->user.username, "mem"));
    cr_assert_eq(op->user.role, HD_ROLE_MEMBER);
    cr_assert_not(op->user.disabled);
    hd_store_op_free(op);

    op = HD_STORE_EXPECT(
        f, hd_test_op_create_user(admin.org_id, "admin2@example.com", NULL, HD_ROLE_ADMIN),
        HD_STORE_OK);
    strcpy(id, op->user.id);
    hd_store_op_free(op);
    op = find_by_id(f, id, HD_STORE_OK);
    cr_assert_eq(op->user.role, HD_ROLE_ADMIN, "[%s] role admin not kept", f->name);
    cr_assert_null(op->user.username);
    hd_store_op_free(op);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM organizations"), 1);
    hd_user_clear(&admin);
}

HD_STORE_TEST(store_users, find_by_email_ignores_case, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "Grace.Hopper@Example.COM", NULL, &u);
    const char *forms[] = {"Grace.Hopper@Example.COM", "grace.hopper@example.com",
                           "GRACE.HOPPER@EXAMPLE.COM"};
    for (size_t i = 0; i < 3; i++) {
        struct hd_store_op *op = find_by_email(f, forms[i], HD_STORE_OK);
        cr_assert_str_eq(op->user.id, u.id, "[%s] %s found another user", f->name, forms[i]);
        cr_assert_str_eq(op->user.org_id, u.org_id);
        cr_assert_str_eq(op->user.email, "Grace.Hopper@Example.COM");
        cr_assert_not_null(op->user.password_hash);
        hd_store_op_free(op);
    }
    hd_store_op_free(find_by_email(f, "grace.hopper@example.org", HD_STORE_NOT_FOUND));
    hd_store_op_free(find_by_email(f, "grace@example.com", HD_STORE_NOT_FOUND));
    hd_user_clear(&u);
}

HD_STORE_TEST(store_users, find_by_id_and_not_found, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "id@example.com", "idu", &u);
    struct hd_store_op *op = find_by_id(f, u.id, HD_STORE_OK);
    cr_assert_str_eq(op->user.email, "id@example.com");
    hd_store_op_free(op);
    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    hd_store_op_free(find_by_id(f, random, HD_STORE_NOT_FOUND));
    /* an organization id is not a user id */
    hd_store_op_free(find_by_id(f, u.org_id, HD_STORE_NOT_FOUND));
    hd_user_clear(&u);
}

HD_STORE_TEST(store_users, update_profile_sets_keeps_and_clears, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "neo@example.com", NULL, &u);

    struct hd_store_op *op = update_profile(f, u.id, "Neo", "Thomas A.", HD_STORE_OK);
    cr_assert(str_eq_or_null(op->user.username, "Neo"), "[%s] result username %s", f->name,
              op->user.username ? op->user.username : "NULL");
    cr_assert(str_eq_or_null(op->user.display_name, "Thomas A."));
    cr_assert_str_eq(op->user.id, u.id);
    cr_assert(op->user.email && strcmp(op->user.email, "neo@example.com") == 0,
              "[%s] the result is not the whole user", f->name);
    hd_store_op_free(op);
    expect_profile(f, u.id, "Neo", "Thomas A.");

    /* NULL keeps */
    hd_store_op_free(update_profile(f, u.id, NULL, NULL, HD_STORE_OK));
    expect_profile(f, u.id, "Neo", "Thomas A.");
    hd_store_op_free(update_profile(f, u.id, NULL, "Mr. Anderson", HD_STORE_OK));
    expect_profile(f, u.id, "Neo", "Mr. Anderson");
    hd_store_op_free(update_profile(f, u.id, "the_one", NULL, HD_STORE_OK));
    expect_profile(f, u.id, "the_one", "Mr. Anderson");

    /* its own username in another case is no conflict */
    hd_store_op_free(update_profile(f, u.id, "The_One", NULL, HD_STORE_OK));
    expect_profile(f, u.id, "The_One", "Mr. Anderson");

    /* "" clears */
    op = update_profile(f, u.id, "", "", HD_STORE_OK);
    cr_assert_null(op->user.username, "[%s] result username not cleared", f->name);
    cr_assert_null(op->user.display_name, "[%s] result display_name not cleared", f->name);
    hd_store_op_free(op);
    expect_profile(f, u.id, NULL, NULL);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM users WHERE username IS NULL AND "
                                          "display_name IS NULL"),
                 1, "[%s] cleared fields are not NULL in the table", f->name);

    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    hd_store_op_free(update_profile(f, random, "ghost", NULL, HD_STORE_NOT_FOUND));
    hd_user_clear(&u);
}

HD_STORE_TEST(store_users, set_password_hash, .timeout = 30)
{
    struct hd_user u, other;
    hd_test_store_register(f, "pw@example.com", NULL, &u);
    hd_test_store_register(f, "pw2@example.com", NULL, &other);
    struct hd_store_op *op = hd_test_op_id(HD_OP_SET_PASSWORD_HASH, u.id, hd_test_unix_ms());
    op->user.password_hash = hd_strdup(NEW_HASH);
    HD_STORE_EXPECT_FREE(f, op, HD_STORE_OK);

    op = find_by_id(f, u.id, HD_STORE_OK);
    cr_assert_str_eq(op->user.password_hash, NEW_HASH, "[%s] hash not stored", f->name);
    hd_store_op_free(op);
    op = find_by_id(f, other.id, HD_STORE_OK);
    cr_assert_str_eq(op->user.password_hash, other.password_hash, "[%s] other user changed",
                     f->name);
    hd_store_op_free(op);

    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    op = hd_test_op_id(HD_OP_SET_PASSWORD_HASH, random, hd_test_unix_ms());
    op->user.password_hash = hd_strdup(NEW_HASH);
    HD_STORE_EXPECT_FREE(f, op, HD_STORE_NOT_FOUND);
    hd_user_clear(&u);
    hd_user_clear(&other);
}

static void set_disabled(struct hd_store_fixture *f, const char *id, bool flag,
                         enum hd_store_status want)
{
    struct hd_store_op *op = hd_test_op_id(HD_OP_SET_USER_DISABLED, id, hd_test_unix_ms());
    op->flag = flag;
    HD_STORE_EXPECT_FREE(f, op, want);
}

static bool is_disabled(struct hd_store_fixture *f, const char *id)
{
    struct hd_store_op *op = find_by_id(f, id, HD_STORE_OK);
    bool d = op->user.disabled;
    hd_store_op_free(op);
    return d;
}

HD_STORE_TEST(store_users, set_user_disabled_disables_and_enables, .timeout = 30)
{
    struct hd_user u, other;
    hd_test_store_register(f, "dis@example.com", NULL, &u);
    hd_test_store_register(f, "dis2@example.com", NULL, &other);
    cr_assert_not(is_disabled(f, u.id));
    set_disabled(f, u.id, true, HD_STORE_OK);
    cr_assert(is_disabled(f, u.id), "[%s] not disabled", f->name);
    cr_assert_not(is_disabled(f, other.id), "[%s] another user disabled", f->name);
    set_disabled(f, u.id, true, HD_STORE_OK); /* again: still there, still disabled */
    cr_assert(is_disabled(f, u.id));
    set_disabled(f, u.id, false, HD_STORE_OK);
    cr_assert_not(is_disabled(f, u.id), "[%s] not enabled again", f->name);

    /* a disabled user is still found by email (login answers 403, not 401) */
    set_disabled(f, u.id, true, HD_STORE_OK);
    struct hd_store_op *op = find_by_email(f, "DIS@example.com", HD_STORE_OK);
    cr_assert(op->user.disabled);
    hd_store_op_free(op);

    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    set_disabled(f, random, true, HD_STORE_NOT_FOUND);
    set_disabled(f, random, false, HD_STORE_NOT_FOUND);
    hd_user_clear(&u);
    hd_user_clear(&other);
}
