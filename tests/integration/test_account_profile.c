/* PATCH /api/me: set and clear username and display_name, validation, a
 * username another user holds (any case) answers 409 username_taken, and the
 * change is what GET /api/me returns afterwards. */
#include "test_account_client.h"

static json_t *patch_me(int port, const char *token, const char *body, int status)
{
    struct hd_http_response r = acct_send(port, "PATCH", "/api/me", token, body);
    return acct_json(&r, status);
}

static json_t *get_me(int port, const char *token)
{
    struct hd_http_response r = acct_send(port, "GET", "/api/me", token, NULL);
    return acct_json(&r, 200);
}

Test(account_profile, set_keep_and_clear_fields, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct acct_user a;
    acct_register(s.port, "profile", &a);

    json_t *u =
        patch_me(s.port, a.access, "{\"username\":\"Ada.L-1_x\",\"display_name\":\"Ada\"}", 200);
    cr_assert_str_eq(acct_str(u, "id"), a.id);
    cr_assert_str_eq(acct_str(u, "username"), "Ada.L-1_x");
    cr_assert_str_eq(acct_str(u, "display_name"), "Ada");
    cr_assert_str_eq(acct_str(u, "email"), a.email);
    cr_assert_null(json_object_get(u, "password_hash"), "never the hash");
    json_decref(u);

    /* an absent field keeps its value */
    u = patch_me(s.port, a.access, "{\"display_name\":\"Ada Lovelace\"}", 200);
    cr_assert_str_eq(acct_str(u, "username"), "Ada.L-1_x");
    cr_assert_str_eq(acct_str(u, "display_name"), "Ada Lovelace");
    json_decref(u);

    /* null clears one, "" clears the other */
    u = patch_me(s.port, a.access, "{\"username\":null,\"display_name\":\"\"}", 200);
    cr_assert(json_is_null(json_object_get(u, "username")) || !json_object_get(u, "username"),
              "username not cleared");
    cr_assert(!json_is_string(json_object_get(u, "display_name")), "display_name not cleared");
    json_decref(u);

    /* the store has it: GET /api/me reads the same */
    json_decref(patch_me(s.port, a.access, "{\"username\":\"grace\"}", 200));
    u = get_me(s.port, a.access);
    cr_assert_str_eq(acct_str(u, "username"), "grace");
    cr_assert(!json_is_string(json_object_get(u, "display_name")));
    json_decref(u);

    /* an empty object changes nothing */
    u = patch_me(s.port, a.access, "{}", 200);
    cr_assert_str_eq(acct_str(u, "username"), "grace");
    json_decref(u);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_profile, refuses_bad_input, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct acct_user a;
    acct_register(s.port, "profile-bad", &a);
    int p = s.port;
    const char *me = "/api/me";

    acct_expect(p, "PATCH", me, NULL, "{\"username\":\"nobody\"}", 401, "missing_token", NULL);
    acct_expect(p, "PATCH", me, "not.a.token", "{\"username\":\"nobody\"}", 401, "invalid_token",
                NULL);
    acct_expect(p, "PATCH", me, a.access, "{\"username\":\"ab\"}", 400, "validation_failed",
                "username");
    acct_expect(p, "PATCH", me, a.access, "{\"username\":\"has space\"}", 400, "validation_failed",
                "username");
    acct_expect(p, "PATCH", me, a.access, "{\"username\":\"\\u00e9t\\u00e9abc\"}", 400,
                "validation_failed", "username");
    acct_expect(p, "PATCH", me, a.access, "{\"username\":\"a123456789012345678901234567890123\"}",
                400, "validation_failed", "username");
    acct_expect(p, "PATCH", me, a.access, "{\"username\":42}", 400, "validation_failed",
                "username");
    char body[300];
    snprintf(body, sizeof(body), "{\"display_name\":\"%0129d\"}", 0);
    acct_expect(p, "PATCH", me, a.access, body, 400, "validation_failed", "display_name");
    acct_expect(p, "PATCH", me, a.access, "{\"email\":\"x@example.test\"}", 400,
                "validation_failed", "email");
    acct_expect(p, "PATCH", me, a.access, "{\"username\":\"dup\",\"username\":\"dup2\"}", 400,
                "validation_failed", NULL);
    acct_expect(p, "PATCH", me, a.access, "[]", 400, "validation_failed", NULL);
    /* nothing changed */
    json_t *u = get_me(p, a.access);
    cr_assert(!json_is_string(json_object_get(u, "username")), "%s", acct_str(u, "username"));
    json_decref(u);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_profile, username_of_another_user_is_409_in_any_case, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct acct_user a, b;
    acct_register(s.port, "owner", &a);
    acct_register(s.port, "other", &b);

    json_decref(patch_me(s.port, a.access, "{\"username\":\"Taken_Name\"}", 200));
    acct_expect(s.port, "PATCH", "/api/me", b.access, "{\"username\":\"taken_name\"}", 409,
                "username_taken", "username");
    acct_expect(s.port, "PATCH", "/api/me", b.access, "{\"username\":\"TAKEN_NAME\"}", 409,
                "username_taken", "username");
    /* the owner may re-set it (its own row), in another case too */
    json_decref(patch_me(s.port, a.access, "{\"username\":\"taken_NAME\"}", 200));
    /* once the owner clears it, it is free */
    json_decref(patch_me(s.port, a.access, "{\"username\":null}", 200));
    json_t *u = patch_me(s.port, b.access, "{\"username\":\"Taken_Name\"}", 200);
    cr_assert_str_eq(acct_str(u, "username"), "Taken_Name");
    json_decref(u);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
