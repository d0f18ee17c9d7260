/* API keys on both backends: create, find (active only), list (active,
 * newest first, own organization), revoke (NOT_FOUND for another
 * organization's key; find after revoke is NOT_FOUND). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "herald/core.h"
#include "herald/store.h"
#include "store_fixture.h"

static void create_key(struct hd_store_fixture *f, const char *org_id, const char *name,
                       char id[HD_ID_LEN + 1], char hash[65])
{
    hd_test_random_hash(hash);
    struct hd_store_op *op =
        HD_STORE_EXPECT(f, hd_test_op_api_key(org_id, name, hash), HD_STORE_OK);
    cr_assert(hd_test_is_uuid_v4(op->api_key.id), "[%s] api key id %s", f->name, op->api_key.id);
    snprintf(id, HD_ID_LEN + 1, "%s", op->api_key.id);
    hd_store_op_free(op);
}

static struct hd_store_op *find_key(struct hd_store_fixture *f, const char *hash,
                                    enum hd_store_status want)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_API_KEY_FIND);
    op->api_key.key_hash = hd_strdup(hash);
    snprintf(op->token_hash, sizeof op->token_hash, "%s", hash);
    return HD_STORE_EXPECT(f, op, want);
}

static struct hd_store_op *list_keys(struct hd_store_fixture *f, const char *org_id)
{
    struct hd_store_op *op = hd_store_op_new(HD_OP_API_KEYS_LIST);
    snprintf(op->org_id, sizeof op->org_id, "%s", org_id);
    return HD_STORE_EXPECT(f, op, HD_STORE_OK);
}

static void revoke_key(struct hd_store_fixture *f, const char *id, const char *org_id,
                       enum hd_store_status want)
{
    struct hd_store_op *op = hd_test_op_id(HD_OP_API_KEY_REVOKE, id, hd_test_unix_ms());
    snprintf(op->org_id, sizeof op->org_id, "%s", org_id);
    HD_STORE_EXPECT_FREE(f, op, want);
}

HD_STORE_TEST(store_api_keys, create_and_find, .timeout = 30)
{
    struct hd_user u;
    hd_test_store_register(f, "keys@example.com", NULL, &u);
    int64_t t0 = hd_test_unix_ms();
    char id[HD_ID_LEN + 1], hash[65], id2[HD_ID_LEN + 1], hash2[65];
    create_key(f, u.org_id, "publisher", id, hash);
    create_key(f, u.org_id, "second", id2, hash2);
    cr_assert_str_neq(id, id2);

    struct hd_store_op *op = find_key(f, hash, HD_STORE_OK);
    struct hd_api_key *k = &op->api_key;
    cr_assert_str_eq(k->id, id);
    cr_assert_str_eq(k->org_id, u.org_id);
    cr_assert(k->name && strcmp(k->name, "publisher") == 0, "[%s] name", f->name);
    cr_assert(k->key_hash && strcmp(k->key_hash, hash) == 0, "[%s] key_hash", f->name);
    cr_assert(k->prefix && strncmp(k->prefix, hash, 8) == 0 && strlen(k->prefix) == 8,
              "[%s] prefix", f->name);
    cr_assert(k->scopes && strcmp(k->scopes, "publish") == 0, "[%s] scopes", f->name);
    cr_assert_eq(k->revoked_at, 0);
    cr_assert(k->created_at >= t0 - 60000 && k->created_at <= hd_test_unix_ms() + 60000,
              "[%s] created_at %lld", f->name, (long long)k->created_at);
    hd_store_op_free(op);

    char unknown[65];
    hd_test_random_hash(unknown);
    hd_store_op_free(find_key(f, unknown, HD_STORE_NOT_FOUND));
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM api_keys"), 2);
    hd_user_clear(&u);
}

HD_STORE_TEST(store_api_keys, list_is_active_newest_first_in_own_org, .timeout = 30)
{
    struct hd_user u, v;
    hd_test_store_register(f, "lk@example.com", NULL, &u);
    hd_test_store_register(f, "lk2@example.com", NULL, &v);
    char ids[4][HD_ID_LEN + 1], hashes[4][65], other[HD_ID_LEN + 1], other_hash[65];
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "key%d", i);
        create_key(f, u.org_id, name, ids[i], hashes[i]);
        hd_test_sleep_ms(5);
    }
    create_key(f, v.org_id, "theirs", other, other_hash);
    revoke_key(f, ids[1], u.org_id, HD_STORE_OK);

    struct hd_store_op *op = list_keys(f, u.org_id);
    cr_assert_eq(op->n_api_keys, 3, "[%s] %zu keys listed, want 3", f->name, op->n_api_keys);
    const char *order[] = {ids[3], ids[2], ids[0]};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_str_eq(op->api_keys[i].id, order[i], "[%s] position %zu not newest first",
                         f->name, i);
        cr_assert_str_eq(op->api_keys[i].org_id, u.org_id);
        cr_assert_eq(op->api_keys[i].revoked_at, 0);
        cr_assert_not_null(op->api_keys[i].name);
        cr_assert_not_null(op->api_keys[i].prefix);
    }
    hd_store_op_free(op);

    op = list_keys(f, v.org_id);
    cr_assert_eq(op->n_api_keys, 1);
    cr_assert_str_eq(op->api_keys[0].id, other);
    hd_store_op_free(op);
    hd_user_clear(&u);
    hd_user_clear(&v);
}

HD_STORE_TEST(store_api_keys, revoke_is_org_scoped_and_final, .timeout = 30)
{
    struct hd_user u, v;
    hd_test_store_register(f, "rk@example.com", NULL, &u);
    hd_test_store_register(f, "rk2@example.com", NULL, &v);
    char id[HD_ID_LEN + 1], hash[65];
    create_key(f, u.org_id, "k", id, hash);

    /* another organization cannot revoke it, nor learn that it exists */
    revoke_key(f, id, v.org_id, HD_STORE_NOT_FOUND);
    hd_store_op_free(find_key(f, hash, HD_STORE_OK));

    revoke_key(f, id, u.org_id, HD_STORE_OK);
    hd_store_op_free(find_key(f, hash, HD_STORE_NOT_FOUND));
    struct hd_store_op *op = list_keys(f, u.org_id);
    cr_assert_eq(op->n_api_keys, 0, "[%s] revoked key still listed", f->name);
    hd_store_op_free(op);
    cr_assert_eq(hd_test_store_sql_int(f, "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT "
                                          "NULL"),
                 1, "[%s] revoke must keep the row with revoked_at", f->name);

    char random[HD_ID_LEN + 1];
    cr_assert_eq(hd_uuid_v4(random), 0);
    revoke_key(f, random, u.org_id, HD_STORE_NOT_FOUND);
    hd_user_clear(&u);
    hd_user_clear(&v);
}
