/* Admin routes: an admin creates users in its organization; disable ends the
 * user's sessions at once (access and refresh tokens refused, login 403
 * account_disabled), enable lets them log in again; members get 403; an
 * admin of another organization gets 404, as for an unknown user. Part of
 * security test 8. */
#include "test_account_client.h"

/* POST /api/admin/users as @admin; asserts @status; returns the body. */
static json_t *create_user(int port, const struct acct_user *admin, const char *body, int status)
{
    struct hd_http_response r = acct_send(port, "POST", "/api/admin/users", admin->access, body);
    return acct_json(&r, status);
}

static void toggle_path(char *out, size_t cap, const char *id, const char *what)
{
    snprintf(out, cap, "/api/admin/users/%s/%s", id, what);
}

Test(account_admin, create_user_in_own_organization, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user admin;
    acct_register(p, "admin-create", &admin);

    char email[128], body[512];
    acct_email(email, sizeof(email), "member");
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"%s\",\"username\":\"member_one\","
             "\"display_name\":\"Member One\"}",
             email, ACCT_PASSWORD);
    json_t *u = create_user(p, &admin, body, 201);
    cr_assert_str_eq(acct_str(u, "organization_id"), admin.org);
    cr_assert_str_eq(acct_str(u, "email"), email);
    cr_assert_str_eq(acct_str(u, "username"), "member_one");
    cr_assert_str_eq(acct_str(u, "display_name"), "Member One");
    cr_assert_str_eq(acct_str(u, "role"), "member", "role defaults to member");
    cr_assert(json_is_false(json_object_get(u, "disabled")));
    cr_assert_null(json_object_get(u, "password_hash"));
    json_decref(u);

    /* the same email in another case: 409 from the unique index */
    for (char *c = email; *c; c++)
        *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, ACCT_PASSWORD);
    struct hd_http_response r = acct_send(p, "POST", "/api/admin/users", admin.access, body);
    acct_expect_error(&r, 409, "email_taken", "email");
    /* and a username that is taken */
    acct_email(email, sizeof(email), "member2");
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"%s\",\"username\":\"MEMBER_ONE\"}", email,
             ACCT_PASSWORD);
    r = acct_send(p, "POST", "/api/admin/users", admin.access, body);
    acct_expect_error(&r, 409, "username_taken", "username");

    /* an admin made by an admin, who then logs in with role admin */
    acct_email(email, sizeof(email), "admin2");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"role\":\"admin\"}", email,
             ACCT_PASSWORD);
    u = create_user(p, &admin, body, 201);
    cr_assert_str_eq(acct_str(u, "role"), "admin");
    json_decref(u);
    struct acct_user second;
    cr_assert_eq(acct_login(p, email, ACCT_PASSWORD, &second), 200);
    cr_assert_str_eq(second.org, admin.org);
    cr_assert_eq(acct_status(p, "GET", "/api/keys", second.access, NULL), 200);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_admin, create_user_refuses_bad_input, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user admin;
    acct_register(p, "admin-bad", &admin);
    const char *path = "/api/admin/users";
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"x-%d@example.test\",\"password\":\"%s\"}",
             (int)getpid(), ACCT_PASSWORD);
    acct_expect(p, "POST", path, NULL, body, 401, "missing_token", NULL);
    acct_expect(p, "POST", path, admin.access, "{\"password\":\"" ACCT_PASSWORD "\"}", 400,
                "validation_failed", "email");
    acct_expect(p, "POST", path, admin.access,
                "{\"email\":\"not-an-email\",\"password\":\"" ACCT_PASSWORD "\"}", 400,
                "validation_failed", "email");
    acct_expect(p, "POST", path, admin.access, "{\"email\":\"a@example.test\"}", 400,
                "validation_failed", "password");
    acct_expect(p, "POST", path, admin.access,
                "{\"email\":\"a@example.test\",\"password\":\"short\"}", 400, "validation_failed",
                "password");
    acct_expect(p, "POST", path, admin.access,
                "{\"email\":\"a@example.test\",\"password\":\"A@EXAMPLE.TEST\"}", 400,
                "validation_failed", "password");
    acct_expect(p, "POST", path, admin.access,
                "{\"email\":\"a@example.test\",\"password\":\"" ACCT_PASSWORD
                "\",\"role\":\"owner\"}",
                400, "validation_failed", "role");
    acct_expect(p, "POST", path, admin.access,
                "{\"email\":\"a@example.test\",\"password\":\"" ACCT_PASSWORD
                "\",\"username\":\"no way\"}",
                400, "validation_failed", "username");
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_admin, disable_ends_sessions_and_blocks_login_enable_restores, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user admin, member;
    acct_register(p, "admin-disable", &admin);
    char email[128], body[512], path[128];
    acct_email(email, sizeof(email), "to-disable");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, ACCT_PASSWORD);
    json_t *u = create_user(p, &admin, body, 201);
    char id[40];
    snprintf(id, sizeof(id), "%s", acct_str(u, "id"));
    json_decref(u);
    cr_assert_eq(acct_login(p, email, ACCT_PASSWORD, &member), 200);
    cr_assert_eq(acct_status(p, "GET", "/api/me", member.access, NULL), 200);

    toggle_path(path, sizeof(path), id, "disable");
    cr_assert_eq(acct_status(p, "POST", path, admin.access, NULL), 204);
    /* at once, not at the token's expiry */
    struct hd_http_response r = acct_send(p, "GET", "/api/me", member.access, NULL);
    acct_expect_error(&r, 401, "invalid_token", NULL);
    acct_expect(p, "PATCH", "/api/me", member.access, "{\"display_name\":\"x\"}", 401,
                "invalid_token", NULL);
    acct_expect(p, "GET", "/api/auth/sessions", member.access, NULL, 401, "invalid_token", NULL);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", member.refresh);
    acct_expect(p, "POST", "/api/auth/refresh", NULL, body, 401, NULL, NULL);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, ACCT_PASSWORD);
    acct_expect(p, "POST", "/api/auth/login", NULL, body, 403, "account_disabled", NULL);
    /* disabling again is fine */
    cr_assert_eq(acct_status(p, "POST", path, admin.access, NULL), 204);
    /* the admin's own session is untouched */
    cr_assert_eq(acct_status(p, "GET", "/api/me", admin.access, NULL), 200);

    toggle_path(path, sizeof(path), id, "enable");
    cr_assert_eq(acct_status(p, "POST", path, admin.access, NULL), 204);
    cr_assert_eq(acct_login(p, email, ACCT_PASSWORD, &member), 200);
    cr_assert_eq(acct_status(p, "GET", "/api/me", member.access, NULL), 200);

    /* an admin cannot lock themselves out */
    toggle_path(path, sizeof(path), admin.id, "disable");
    acct_expect(p, "POST", path, admin.access, NULL, 400, "validation_failed", "id");
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_admin, members_get_403_other_organizations_404, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user admin_a, admin_b, member;
    acct_register(p, "org-a", &admin_a);
    acct_register(p, "org-b", &admin_b);
    char email[128], body[512], path[128];
    acct_email(email, sizeof(email), "member-a");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, ACCT_PASSWORD);
    json_decref(create_user(p, &admin_a, body, 201));
    cr_assert_eq(acct_login(p, email, ACCT_PASSWORD, &member), 200);

    /* a member: 403 on every admin route, even on a valid target */
    toggle_path(path, sizeof(path), admin_a.id, "disable");
    acct_expect(p, "POST", path, member.access, NULL, 403, "forbidden", NULL);
    toggle_path(path, sizeof(path), admin_a.id, "enable");
    acct_expect(p, "POST", path, member.access, NULL, 403, "forbidden", NULL);
    acct_expect(p, "POST", "/api/admin/users", member.access, body, 403, "forbidden", NULL);
    acct_expect(p, "POST", "/api/keys", member.access, "{\"name\":\"k\"}", 403, "forbidden", NULL);
    acct_expect(p, "GET", "/api/keys", member.access, NULL, 403, "forbidden", NULL);
    acct_expect(p, "DELETE", "/api/keys/00000000-0000-4000-8000-000000000000", member.access, NULL,
                403, "forbidden", NULL);

    /* admin of B on a user of A: as if it did not exist */
    toggle_path(path, sizeof(path), member.id, "disable");
    acct_expect(p, "POST", path, admin_b.access, NULL, 404, "not_found", NULL);
    toggle_path(path, sizeof(path), member.id, "enable");
    acct_expect(p, "POST", path, admin_b.access, NULL, 404, "not_found", NULL);
    toggle_path(path, sizeof(path), admin_a.id, "disable");
    acct_expect(p, "POST", path, admin_b.access, NULL, 404, "not_found", NULL);
    /* unknown and malformed ids */
    toggle_path(path, sizeof(path), "00000000-0000-4000-8000-000000000000", "disable");
    acct_expect(p, "POST", path, admin_b.access, NULL, 404, "not_found", NULL);
    toggle_path(path, sizeof(path), "nope", "disable");
    acct_expect(p, "POST", path, admin_b.access, NULL, 404, "not_found", NULL);
    /* and the member was not touched */
    cr_assert_eq(acct_status(p, "GET", "/api/me", member.access, NULL), 200);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
