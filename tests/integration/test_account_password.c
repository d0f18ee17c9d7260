/* POST /api/me/password: a wrong current password is 401, a weak new one is
 * 400 naming new_password (before anything hashes); a change ends every
 * other session at once (their access tokens are refused, their refresh
 * tokens too) and keeps the current one; the old password stops working.
 * Part of security test 8. */
#include "test_account_client.h"

static const char *const path = "/api/me/password";

static void change_body(char *out, size_t cap, const char *current, const char *next)
{
    snprintf(out, cap, "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", current, next);
}

Test(account_password, refuses_bad_input, .timeout = 60)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    struct acct_user a;
    acct_register(s.port, "pw-bad", &a);
    int p = s.port;
    char body[512];

    change_body(body, sizeof(body), ACCT_PASSWORD, ACCT_PASSWORD_2);
    acct_expect(p, "POST", path, NULL, body, 401, "missing_token", NULL);
    /* the new password's rules come first, and cost no hash */
    change_body(body, sizeof(body), ACCT_PASSWORD, "short");
    acct_expect(p, "POST", path, a.access, body, 400, "validation_failed", "new_password");
    change_body(body, sizeof(body), ACCT_PASSWORD, "nul\\u0000inside-a-long-one");
    acct_expect(p, "POST", path, a.access, body, 400, "validation_failed", NULL);
    snprintf(body, sizeof(body), "{\"current_password\":\"%s\",\"new_password\":\"%0129d\"}",
             ACCT_PASSWORD, 0);
    acct_expect(p, "POST", path, a.access, body, 400, "validation_failed", "new_password");
    change_body(body, sizeof(body), ACCT_PASSWORD, a.email);
    acct_expect(p, "POST", path, a.access, body, 400, "validation_failed", "new_password");
    acct_expect(p, "POST", path, a.access, "{\"current_password\":\"x\"}", 400, "validation_failed",
                "new_password");
    acct_expect(p, "POST", path, a.access, "{\"new_password\":\"" ACCT_PASSWORD_2 "\"}", 400,
                "validation_failed", "current_password");
    /* a wrong current password (one that passes the rules: a real verify) */
    change_body(body, sizeof(body), "not the password at all", ACCT_PASSWORD_2);
    acct_expect(p, "POST", path, a.access, body, 401, "invalid_credentials", NULL);
    /* too short to be anyone's password: 401 without hashing */
    change_body(body, sizeof(body), "short", ACCT_PASSWORD_2);
    acct_expect(p, "POST", path, a.access, body, 401, "invalid_credentials", NULL);
    /* none of that changed anything or ended the session */
    cr_assert_eq(acct_status(p, "GET", "/api/me", a.access, NULL), 200);
    cr_assert_eq(acct_login(p, a.email, ACCT_PASSWORD, NULL), 200);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}

Test(account_password, change_ends_the_other_sessions_at_once, .timeout = 90)
{
    struct hd_test_server s;
    hd_test_server_start(&s, NULL);
    int p = s.port;
    struct acct_user here, there;
    acct_register(p, "pw-change", &here);
    cr_assert_eq(acct_login(p, here.email, ACCT_PASSWORD, &there), 200);
    cr_assert_str_neq(here.session, there.session);
    cr_assert_eq(acct_status(p, "GET", "/api/me", there.access, NULL), 200);

    char body[512];
    change_body(body, sizeof(body), ACCT_PASSWORD, ACCT_PASSWORD_2);
    struct hd_http_response r = acct_send(p, "POST", path, here.access, body);
    cr_assert_eq(r.status, 204, "%d %s", r.status, r.body);
    hd_http_response_free(&r);

    /* the other session is gone at once: its access token (not expired) is
     * refused, its refresh token too */
    r = acct_send(p, "GET", "/api/me", there.access, NULL);
    cr_assert_not_null(hd_http_header(&r, "WWW-Authenticate"));
    acct_expect_error(&r, 401, "invalid_token", NULL);
    acct_expect(p, "PATCH", "/api/me", there.access, "{\"display_name\":\"x\"}", 401,
                "invalid_token", NULL);
    acct_expect(p, "GET", "/api/auth/sessions", there.access, NULL, 401, "invalid_token", NULL);
    change_body(body, sizeof(body), ACCT_PASSWORD_2, ACCT_PASSWORD);
    acct_expect(p, "POST", path, there.access, body, 401, "invalid_token", NULL);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", there.refresh);
    acct_expect(p, "POST", "/api/auth/refresh", NULL, body, 401, NULL, NULL);
    /* this one stays */
    cr_assert_eq(acct_status(p, "GET", "/api/me", here.access, NULL), 200);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", here.refresh);
    cr_assert_eq(acct_status(p, "POST", "/api/auth/refresh", NULL, body), 200);

    /* the old password no longer logs in; the new one does */
    cr_assert_eq(acct_login(p, here.email, ACCT_PASSWORD, NULL), 401);
    cr_assert_eq(acct_login(p, here.email, ACCT_PASSWORD_2, NULL), 200);
    cr_assert_eq(hd_test_server_stop(&s), 0);
}
