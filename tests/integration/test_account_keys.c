/* Publisher API keys: created by an admin and shown once; the list never
 * holds a secret nor its hash; revoke answers 204 once, then 404; another
 * organization neither sees nor revokes them; a key is not an access
 * token (security test 5, this direction). */
#include "test_account_client.h"

static json_t *create_key(int port, const char *token, const char *body, int status)
{
    struct hd_http_response r = acct_send(port, "POST", "/api/keys", token, body);
    if (status == 201)
        cr_assert(hd_http_header_has_token(&r, "Cache-Control", "no-store"), "%s", r.body);
    return acct_json(&r, status);
}

static json_t *list_keys(int port, const char *token)
{
    struct hd_http_response r = acct_send(port, "GET", "/api/keys", token, NULL);
    json_t *j = acct_json(&r, 200);
    cr_assert(json_is_array(json_object_get(j, "keys")));
    return j;
}

static bool base64url(const char *s)
{
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    }
    return true;
}

Test(account_keys, create_list_revoke, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user admin;
    acct_register(p, "keys", &admin);

    json_t *k = create_key(p, admin.access, "{\"name\":\"ci publisher\"}", 201);
    const char *key = acct_str(k, "key");
    cr_assert_eq(strlen(key), 46, "key: %s", key);
    cr_assert(strncmp(key, "hk_", 3) == 0 && base64url(key + 3), "key: %s", key);
    cr_assert_str_eq(acct_str(k, "name"), "ci publisher");
    cr_assert_eq(strlen(acct_str(k, "prefix")), 8);
    cr_assert(strncmp(acct_str(k, "prefix"), key + 3, 8) == 0);
    json_t *scopes = json_object_get(k, "scopes");
    cr_assert(json_is_array(scopes) && json_array_size(scopes) == 1);
    cr_assert_str_eq(json_string_value(json_array_get(scopes, 0)), "publish");
    cr_assert(json_integer_value(json_object_get(k, "created_at")) > 0);
    char id[40], secret[64];
    snprintf(id, sizeof(id), "%s", acct_str(k, "id"));
    snprintf(secret, sizeof(secret), "%s", key);
    json_decref(k);

    /* a second key, with scopes given (duplicates collapse) */
    k = create_key(p, admin.access, "{\"name\":\"second\",\"scopes\":[\"publish\",\"publish\"]}",
                   201);
    cr_assert_eq(json_array_size(json_object_get(k, "scopes")), 1);
    cr_assert_str_neq(acct_str(k, "key"), secret);
    json_decref(k);

    /* listed without the secret or its hash */
    struct hd_http_response r = acct_send(p, "GET", "/api/keys", admin.access, NULL);
    cr_assert(strstr(r.body, secret) == NULL, "the list shows the secret: %s", r.body);
    cr_assert(strstr(r.body, secret + 3) == NULL, "the list shows the secret: %s", r.body);
    json_t *list = acct_json(&r, 200);
    json_t *keys = json_object_get(list, "keys");
    cr_assert_eq(json_array_size(keys), 2, "keys: %zu", json_array_size(keys));
    bool seen = false;
    size_t i;
    json_t *item;
    json_array_foreach(keys, i, item)
    {
        cr_assert_null(json_object_get(item, "key"));
        cr_assert_null(json_object_get(item, "key_hash"));
        cr_assert_null(json_object_get(item, "hash"));
        cr_assert_not_null(json_object_get(item, "prefix"));
        seen = seen || strcmp(acct_str(item, "id"), id) == 0;
    }
    cr_assert(seen, "the first key is not listed");
    json_decref(list);

    /* a key is not an access token */
    r = acct_send(p, "GET", "/api/me", secret, NULL);
    acct_expect_error(&r, 401, "invalid_token", NULL);

    char path[128];
    snprintf(path, sizeof(path), "/api/keys/%s", id);
    cr_assert_eq(acct_status(p, "DELETE", path, admin.access, NULL), 204);
    acct_expect(p, "DELETE", path, admin.access, NULL, 404, "not_found", NULL);
    list = list_keys(p, admin.access);
    cr_assert_eq(json_array_size(json_object_get(list, "keys")), 1);
    json_decref(list);
    acct_expect(p, "DELETE", "/api/keys/00000000-0000-4000-8000-000000000000", admin.access, NULL,
                404, "not_found", NULL);
    acct_expect(p, "DELETE", "/api/keys/short", admin.access, NULL, 404, "not_found", NULL);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_keys, scoped_to_the_organization, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user a, b;
    acct_register(p, "keys-a", &a);
    acct_register(p, "keys-b", &b);
    json_t *k = create_key(p, a.access, "{\"name\":\"a's key\"}", 201);
    char path[128];
    snprintf(path, sizeof(path), "/api/keys/%s", acct_str(k, "id"));
    json_decref(k);

    json_t *list = list_keys(p, b.access);
    cr_assert_eq(json_array_size(json_object_get(list, "keys")), 0, "B sees A's keys");
    json_decref(list);
    acct_expect(p, "DELETE", path, b.access, NULL, 404, "not_found", NULL);
    /* still there for A, who can revoke it */
    list = list_keys(p, a.access);
    cr_assert_eq(json_array_size(json_object_get(list, "keys")), 1);
    json_decref(list);
    cr_assert_eq(acct_status(p, "DELETE", path, a.access, NULL), 204);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_keys, refuses_bad_input, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user a;
    acct_register(p, "keys-bad", &a);
    acct_expect(p, "POST", "/api/keys", NULL, "{\"name\":\"k\"}", 401, "missing_token", NULL);
    acct_expect(p, "GET", "/api/keys", NULL, NULL, 401, "missing_token", NULL);
    acct_expect(p, "POST", "/api/keys", a.access, "{}", 400, "validation_failed", "name");
    acct_expect(p, "POST", "/api/keys", a.access, "{\"name\":\"\"}", 400, "validation_failed",
                "name");
    acct_expect(p, "POST", "/api/keys", a.access, "{\"name\":\"k\",\"scopes\":[\"admin\"]}", 400,
                "validation_failed", "scopes");
    acct_expect(p, "POST", "/api/keys", a.access, "{\"name\":\"k\",\"scopes\":[]}", 400,
                "validation_failed", "scopes");
    acct_expect(p, "POST", "/api/keys", a.access, "{\"name\":\"k\",\"scopes\":\"publish\"}", 400,
                "validation_failed", "scopes");
    acct_expect(p, "POST", "/api/keys", a.access, "{\"name\":\"k\",\"scopes\":[1]}", 400,
                "validation_failed", "scopes");
    json_t *list = list_keys(p, a.access);
    cr_assert_eq(json_array_size(json_object_get(list, "keys")), 0, "a refused key was stored");
    json_decref(list);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
