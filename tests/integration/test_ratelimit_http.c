/* Rate limits over HTTP with the local limiter (no Redis; the harness's
 * SQLite store): every policy limits at its rule's rate and burst and
 * recovers after Retry-After; the RateLimit / RateLimit-Policy / Retry-After
 * fields (src/api/limit.h); login_account spends only failed logins; the
 * client address behind trusted proxies; /metrics; a limited refresh keeps
 * its token and session; a bad rule fails check-config.
 *
 * GCRA: a rule "L/W burst B" allows B + 1 requests at once, then one every
 * T = W / L seconds. The rules below keep T small so waits stay short, but
 * long beside one request (an Argon2id hash is ~0.1 s), so that B + 1
 * requests in a row really are "at once" (each check says so if not). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"
#include "ratelimit_client.h"

/* Rules of the hashing routes (login, register, password): T = 5 s, 3 at once. */
#define HASHED_RULE  "12/min burst 2"
#define HASHED_LIMIT 12
#define HASHED_W     60
#define HASHED_BURST 2

#define WRONG_PASSWORD "not the password at all"

static void finish(struct hd_test_server *s)
{
    hd_assert_healthy(s->port);
    cr_assert_eq(hd_test_server_stop(s), 0, "herald did not exit 0");
}

/* Starts a server with rate limits on and @limits (the members of the
 * "ratelimit" object, e.g. "\"login_ip\":\"off\"") plus @extra top-level
 * members (NULL: none). */
static void start_limited(struct hd_test_server *s, const char *limits, const char *extra)
{
    char over[2048];
    snprintf(over, sizeof(over), "{\"ratelimit\":{\"enabled\":true%s%s}%s%s}", *limits ? "," : "",
             limits, extra ? "," : "", extra ? extra : "");
    hd_test_server_start(s, over);
}

static void new_user(int port, const char *tag, struct hd_test_auth_tokens *t)
{
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), tag);
    hd_test_auth_register(port, email, HD_TEST_AUTH_PASSWORD, NULL, t);
}

/* Parameter @param of @policy in @name; asserts it is there. */
static long field(const struct hd_http_response *r, const char *name, const char *policy,
                  const char *param)
{
    long v = hd_test_rl_param(r, name, policy, param);
    char *all = hd_test_rl_joined(r, name);
    cr_assert_geq(v, 0, "%s has no %s for %s: '%s'", name, param, policy, all);
    free(all);
    return v;
}

/* t (seconds to a full burst) after @k charges at T = @T s, @elapsed_ms
 * after the first: k*T minus the time gone by, rounded up. */
static void expect_reset(const struct hd_http_response *r, const char *policy, long k, long T,
                         uint64_t elapsed_ms)
{
    long t = field(r, "RateLimit", policy, "t");
    long slack = (long)((elapsed_ms + 999) / 1000);
    cr_assert(t <= k * T && t >= k * T - slack, "%s: t=%ld after %ld charges, want %ld..%ld",
              policy, t, k, k * T - slack, k * T);
}

/* ---- one policy: burst, then 429, then recovery ------------------------------------ */

/* Sends one request of the policy under test into @r (the caller frees it). */
typedef void (*send_fn)(void *ctx, struct hd_http_response *r);

struct policy_case {
    const char *policy;
    int limit, window_s, burst; /* the configured rule */
    bool peek;                  /* login_account: r is read before this request's own charge */
    int allowed_status;         /* what an allowed request answers */
    send_fn send;
    void *ctx;
};

static long interval_s(const struct policy_case *c)
{
    return (long)ceil((double)c->window_s / c->limit);
}

/* An allowed answer: @c's status, and the policy's RateLimit-Policy item
 * (q, w of the rule) and RateLimit item with r = @remaining. */
static void expect_allowed(const struct policy_case *c, const struct hd_http_response *r,
                           long remaining, const char *what)
{
    cr_assert_eq(r->status, c->allowed_status, "%s: status %d, want %d: %s", what, r->status,
                 c->allowed_status, r->body);
    long q = hd_test_rl_param(r, "RateLimit-Policy", c->policy, "q");
    long w = hd_test_rl_param(r, "RateLimit-Policy", c->policy, "w");
    char *pol = hd_test_rl_joined(r, "RateLimit-Policy");
    cr_assert(q == c->limit && w == c->window_s,
              "%s: RateLimit-Policy for %s has q=%ld;w=%ld, want q=%d;w=%d (%s)", what, c->policy,
              q, w, c->limit, c->window_s, pol);
    free(pol);
    long left = hd_test_rl_param(r, "RateLimit", c->policy, "r");
    char *state = hd_test_rl_joined(r, "RateLimit");
    cr_assert_eq(left, remaining, "%s: RateLimit for %s has r=%ld, want %ld (%s)", what, c->policy,
                 left, remaining, state);
    free(state);
    cr_assert_null(hd_http_header(r, "Retry-After"), "%s: an allowed answer with Retry-After",
                   what);
}

/* Exactly burst + 1 requests at once are allowed, counting r down; the next
 * is 429 rate_limited. Returns its Retry-After. */
static long expect_burst_then_limited(const struct policy_case *c)
{
    struct hd_http_response r;
    char what[96];
    uint64_t t0 = hd_test_now_ms();
    for (int k = 1; k <= c->burst + 1; k++) {
        snprintf(what, sizeof(what), "%s: request %d of %d at once", c->policy, k, c->burst + 1);
        c->send(c->ctx, &r);
        long remaining = c->burst + 1 - k + (c->peek ? 1 : 0);
        expect_allowed(c, &r, remaining, what);
        hd_http_response_free(&r);
    }
    uint64_t took = hd_test_now_ms() - t0;
    cr_assert_lt(took, (uint64_t)interval_s(c) * 1000,
                 "%s: %d requests took %llu ms, more than one interval (%ld s): the test cannot "
                 "tell a burst from the steady rate",
                 c->policy, c->burst + 1, (unsigned long long)took, interval_s(c));
    snprintf(what, sizeof(what), "%s: request %d (one over the burst)", c->policy, c->burst + 2);
    c->send(c->ctx, &r);
    long retry = hd_test_rl_assert_limited(&r, c->policy, interval_s(c), what);
    hd_http_response_free(&r);
    return retry;
}

/* After @retry seconds the request is allowed again. */
static void expect_recovers(const struct policy_case *c, long retry)
{
    hd_test_sleep_ms((int)retry * 1000);
    struct hd_http_response r;
    c->send(c->ctx, &r);
    cr_assert_eq(r.status, c->allowed_status,
                 "%s: after Retry-After (%ld s): status %d, want %d: %s", c->policy, retry,
                 r.status, c->allowed_status, r.body);
    cr_assert_geq(hd_test_rl_param(&r, "RateLimit", c->policy, "r"), 0,
                  "%s: the allowed answer after recovery has no RateLimit item", c->policy);
    hd_http_response_free(&r);
}

static void expect_policy_cycle(const struct policy_case *c)
{
    expect_recovers(c, expect_burst_then_limited(c));
}

/* ---- senders --------------------------------------------------------------------------- */

struct login_ctx {
    int port;
    const char *email; /* NULL: a new unknown address each time */
    const char *password;
    struct hd_test_rl_req req;
};

static void send_login(void *ctx, struct hd_http_response *r)
{
    struct login_ctx *l = ctx;
    char fresh[128];
    if (!l->email)
        hd_test_auth_unique_email(fresh, sizeof(fresh), "nobody");
    int rc = hd_test_rl_login(l->port, l->email ? l->email : fresh, l->password, &l->req, r);
    cr_assert_eq(rc, 0, "login: no response (%d)", rc);
}

static void send_register(void *ctx, struct hd_http_response *r)
{
    int *port = ctx;
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "reg");
    int rc = hd_test_rl_register(*port, email, HD_TEST_AUTH_PASSWORD, NULL, r);
    cr_assert_eq(rc, 0, "register: no response (%d)", rc);
}

struct refresh_ctx {
    int port;
    struct hd_test_auth_tokens t; /* the latest tokens; a 429 leaves them */
};

static void send_refresh(void *ctx, struct hd_http_response *r)
{
    struct refresh_ctx *f = ctx;
    int rc = hd_test_auth_refresh_raw(f->port, f->t.refresh, r);
    cr_assert_eq(rc, 0, "refresh: no response (%d)", rc);
    if (r->status == 200)
        cr_assert_eq(hd_test_auth_tokens_parse(r, &f->t), 0, "refresh: %s", r->body);
}

struct user_ctx {
    int port;
    const char *access;
};

/* POST /api/me/password with a wrong current password: 401 once checked. */
static void send_wrong_password_change(void *ctx, struct hd_http_response *r)
{
    struct user_ctx *u = ctx;
    const char *body = "{\"current_password\":\"" WRONG_PASSWORD "\","
                       "\"new_password\":\"a brand new passphrase 42\"}";
    int rc = hd_test_auth_post(u->port, "/api/me/password", body, u->access, r);
    cr_assert_eq(rc, 0, "password change: no response (%d)", rc);
}

static void send_me(void *ctx, struct hd_http_response *r)
{
    struct user_ctx *u = ctx;
    int rc = hd_test_auth_call(u->port, "GET", "/api/me", u->access, r);
    cr_assert_eq(rc, 0, "GET /api/me: no response (%d)", rc);
}

/* ---- 1. every policy at its rate and burst ------------------------------------------- */

Test(ratelimit_http, login_ip_limits_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"" HASHED_RULE "\",\"login_ip_account\":\"off\","
                  "\"login_account\":\"off\"",
                  NULL);
    struct login_ctx l = {s.port, NULL, WRONG_PASSWORD, {0}}; /* a new account each time */
    struct policy_case c = {"login_ip", HASHED_LIMIT, HASHED_W,   HASHED_BURST,
                            false,      401,          send_login, &l};
    expect_policy_cycle(&c);
    finish(&s);
}

Test(ratelimit_http, login_ip_account_limits_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"off\",\"login_ip_account\":\"" HASHED_RULE "\","
                  "\"login_account\":\"off\"",
                  NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "ipacct");
    struct login_ctx l = {s.port, email, WRONG_PASSWORD, {0}};
    struct policy_case c = {
        "login_ip_account", HASHED_LIMIT, HASHED_W, HASHED_BURST, false, 401, send_login, &l};
    long retry = expect_burst_then_limited(&c);
    /* the key is IP + account: another account from the same IP still goes through */
    struct login_ctx other = {s.port, NULL, WRONG_PASSWORD, {0}};
    struct hd_http_response r;
    send_login(&other, &r);
    cr_assert_eq(r.status, 401, "another account from the same IP: status %d: %s", r.status,
                 r.body);
    hd_http_response_free(&r);
    /* the account part is the email in lower case: "ABC@x" is the same account */
    char upper[128];
    snprintf(upper, sizeof(upper), "%s", email);
    for (char *p = upper; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    struct login_ctx shouting = {s.port, upper, WRONG_PASSWORD, {0}};
    send_login(&shouting, &r);
    hd_test_rl_assert_limited(&r, "login_ip_account", 5, "the same email in upper case");
    hd_http_response_free(&r);
    expect_recovers(&c, retry);
    finish(&s);
}

Test(ratelimit_http, login_account_limits_failures_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"off\",\"login_ip_account\":\"off\","
                  "\"login_account\":\"" HASHED_RULE "\"",
                  NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "acct");
    struct login_ctx l = {s.port, email, WRONG_PASSWORD, {0}};
    /* peeked before the verify, charged after a failure: request k sees the
     * k - 1 failures before it */
    struct policy_case c = {
        "login_account", HASHED_LIMIT, HASHED_W, HASHED_BURST, true, 401, send_login, &l};
    expect_policy_cycle(&c);
    finish(&s);
}

Test(ratelimit_http, register_ip_limits_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "\"register_ip\":\"" HASHED_RULE "\"", NULL);
    int port = s.port;
    struct policy_case c = {"register_ip", HASHED_LIMIT, HASHED_W,      HASHED_BURST,
                            false,         201,          send_register, &port};
    expect_policy_cycle(&c);
    finish(&s);
}

Test(ratelimit_http, refresh_ip_limits_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "\"refresh_ip\":\"20/min burst 2\",\"refresh_session\":\"off\"", NULL);
    struct refresh_ctx f = {.port = s.port};
    new_user(s.port, "refip", &f.t);
    struct policy_case c = {"refresh_ip", 20, 60, 2, false, 200, send_refresh, &f};
    expect_policy_cycle(&c);
    hd_test_auth_assert_me(s.port, f.t.access, f.t.user_id);
    finish(&s);
}

Test(ratelimit_http, refresh_session_limits_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "\"refresh_session\":\"20/min burst 2\",\"refresh_ip\":\"off\"", NULL);
    struct refresh_ctx f = {.port = s.port};
    new_user(s.port, "refsess", &f.t);
    struct policy_case c = {"refresh_session", 20, 60, 2, false, 200, send_refresh, &f};
    expect_policy_cycle(&c);
    hd_test_auth_assert_me(s.port, f.t.access, f.t.user_id);
    finish(&s);
}

Test(ratelimit_http, password_user_limits_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "\"password_user\":\"" HASHED_RULE "\"", NULL);
    struct hd_test_auth_tokens t, other;
    new_user(s.port, "pw", &t);
    new_user(s.port, "pw-other", &other);
    struct user_ctx u = {s.port, t.access};
    struct policy_case c = {"password_user",
                            HASHED_LIMIT,
                            HASHED_W,
                            HASHED_BURST,
                            false,
                            401,
                            send_wrong_password_change,
                            &u};
    long retry = expect_burst_then_limited(&c);
    /* per user: another user is not limited */
    struct user_ctx o = {s.port, other.access};
    struct hd_http_response r;
    send_wrong_password_change(&o, &r);
    cr_assert_eq(r.status, 401, "another user: status %d: %s", r.status, r.body);
    hd_http_response_free(&r);
    /* after Retry-After (one request's worth) the right password goes through */
    hd_test_sleep_ms((int)retry * 1000);
    const char *body = "{\"current_password\":\"" HD_TEST_AUTH_PASSWORD "\","
                       "\"new_password\":\"a brand new passphrase 42\"}";
    cr_assert_eq(hd_test_auth_post(s.port, "/api/me/password", body, t.access, &r), 0);
    cr_assert_eq(r.status, 204, "password change after Retry-After (%ld s): status %d: %s", retry,
                 r.status, r.body);
    cr_assert_eq(field(&r, "RateLimit", "password_user", "r"), 0,
                 "the allowed change has no RateLimit item, or a wrong r");
    hd_http_response_free(&r);
    finish(&s);
}

Test(ratelimit_http, authenticated_limits_and_recovers, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "\"authenticated\":\"30/min burst 2\"", NULL); /* T = 2 s */
    struct hd_test_auth_tokens t;
    new_user(s.port, "authd", &t);
    struct user_ctx u = {s.port, t.access};
    struct policy_case c = {"authenticated", 30, 60, 2, false, 200, send_me, &u};
    expect_policy_cycle(&c);
    finish(&s);
}

Test(ratelimit_http, authenticated_is_off_by_default, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "", NULL); /* every rule at its default */
    struct hd_test_auth_tokens t;
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "default");
    struct hd_http_response r;
    cr_assert_eq(hd_test_rl_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &r), 0);
    hd_test_auth_assert_bundle(&r, 201);
    cr_assert_eq(hd_test_auth_tokens_parse(&r, &t), 0);
    /* limits are on: register carries its default rule "30/5min burst 10" */
    cr_assert_eq(hd_test_rl_param(&r, "RateLimit-Policy", "register_ip", "q"), 30,
                 "register: no default register_ip item");
    cr_assert_eq(hd_test_rl_param(&r, "RateLimit-Policy", "register_ip", "w"), 300);
    hd_http_response_free(&r);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(hd_test_auth_call(s.port, "GET", "/api/me", t.access, &r), 0);
        cr_assert_eq(r.status, 200, "GET /api/me #%d: status %d: %s", i + 1, r.status, r.body);
        hd_test_rl_assert_no_fields(&r, "GET /api/me with authenticated off");
        hd_http_response_free(&r);
    }
    finish(&s);
}

/* ---- 2. the header fields ------------------------------------------------------------- */

Test(ratelimit_http, login_fields_count_down, .timeout = 60)
{
    struct hd_test_server s;
    /* login_ip: T = 5 s, 5 at once; login_ip_account: T = 5 s, 4 at once;
     * login_account: T = 36 s, 11 at once (peeked, so it shows failures so far) */
    start_limited(&s,
                  "\"login_ip\":\"12/min burst 4\",\"login_ip_account\":\"6/30s burst 3\","
                  "\"login_account\":\"100/hour burst 10\"",
                  NULL);
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "fields");
    struct login_ctx l = {s.port, email, WRONG_PASSWORD, {0}};
    struct hd_http_response r;
    uint64_t t0 = hd_test_now_ms();
    for (long k = 1; k <= 4; k++) {
        send_login(&l, &r);
        uint64_t elapsed = hd_test_now_ms() - t0;
        cr_assert_eq(r.status, 401, "login %ld: status %d: %s", k, r.status, r.body);
        const char *pol = hd_http_header(&r, "RateLimit-Policy");
        cr_assert_eq(hd_http_header_count(&r, "RateLimit-Policy"), 1);
        cr_assert_str_eq(pol ? pol : "(none)",
                         "\"login_ip\";q=12;w=60, \"login_ip_account\";q=6;w=30, "
                         "\"login_account\";q=100;w=3600");
        cr_assert_eq(hd_test_rl_items(&r, "RateLimit"), 3, "RateLimit: %s",
                     hd_http_header(&r, "RateLimit"));
        cr_assert_eq(field(&r, "RateLimit", "login_ip", "r"), 5 - k, "login %ld", k);
        cr_assert_eq(field(&r, "RateLimit", "login_ip_account", "r"), 4 - k, "login %ld", k);
        cr_assert_eq(field(&r, "RateLimit", "login_account", "r"), 11 - (k - 1), "login %ld", k);
        expect_reset(&r, "login_ip", k, 5, elapsed);
        expect_reset(&r, "login_ip_account", k, 5, elapsed);
        cr_assert_null(hd_http_header(&r, "Retry-After"), "login %ld: Retry-After", k);
        hd_http_response_free(&r);
    }
    cr_assert_lt(hd_test_now_ms() - t0, 4000, "4 logins took more than 4 s: cannot judge r");
    /* the 5th: login_ip_account is spent (T = 5 s); login_ip, checked
     * before it, is charged all the same (ratelimit.h: an attacker's tries
     * are never free) */
    send_login(&l, &r);
    hd_test_rl_assert_limited(&r, "login_ip_account", 5, "login 5");
    cr_assert_eq(field(&r, "RateLimit", "login_ip", "r"), 0, "login 5: login_ip not charged");
    cr_assert_eq(field(&r, "RateLimit-Policy", "login_ip_account", "q"), 6);
    cr_assert_eq(field(&r, "RateLimit-Policy", "login_ip_account", "w"), 30);
    hd_http_response_free(&r);
    finish(&s);
}

Test(ratelimit_http, refresh_carries_both_policies, .timeout = 60)
{
    struct hd_test_server s;
    /* refresh_ip: T = 3 s, 3 at once; refresh_session: T = 2 s, 6 at once */
    start_limited(&s, "\"refresh_ip\":\"20/min burst 2\",\"refresh_session\":\"30/min burst 5\"",
                  NULL);
    struct refresh_ctx f = {.port = s.port};
    new_user(s.port, "both", &f.t);
    struct hd_http_response r;
    uint64_t t0 = hd_test_now_ms();
    for (long k = 1; k <= 3; k++) {
        send_refresh(&f, &r);
        uint64_t elapsed = hd_test_now_ms() - t0;
        cr_assert_eq(r.status, 200, "refresh %ld: status %d: %s", k, r.status, r.body);
        /* one item from the I/O thread's check, one from the session actor's */
        cr_assert_eq(hd_test_rl_items(&r, "RateLimit"), 2, "refresh %ld: RateLimit items", k);
        cr_assert_eq(hd_test_rl_items(&r, "RateLimit-Policy"), 2, "refresh %ld: policy items", k);
        cr_assert_eq(field(&r, "RateLimit-Policy", "refresh_ip", "q"), 20);
        cr_assert_eq(field(&r, "RateLimit-Policy", "refresh_ip", "w"), 60);
        cr_assert_eq(field(&r, "RateLimit-Policy", "refresh_session", "q"), 30);
        cr_assert_eq(field(&r, "RateLimit-Policy", "refresh_session", "w"), 60);
        cr_assert_eq(field(&r, "RateLimit", "refresh_ip", "r"), 3 - k, "refresh %ld", k);
        cr_assert_eq(field(&r, "RateLimit", "refresh_session", "r"), 6 - k, "refresh %ld", k);
        expect_reset(&r, "refresh_ip", k, 3, elapsed);
        expect_reset(&r, "refresh_session", k, 2, elapsed);
        hd_http_response_free(&r);
    }
    cr_assert_lt(hd_test_now_ms() - t0, 2000, "3 refreshes took more than 2 s: cannot judge r");
    /* refresh_ip denies before the session actor is asked: one item */
    send_refresh(&f, &r);
    hd_test_rl_assert_limited(&r, "refresh_ip", 3, "refresh 4");
    cr_assert_eq(hd_test_rl_items(&r, "RateLimit"), 1, "refresh 4: %s",
                 hd_http_header(&r, "RateLimit"));
    hd_http_response_free(&r);
    finish(&s);
}

/* Register, log in (right and wrong), refresh, GET /api/me and a password
 * change on @port: none carries a rate-limit field. */
static void expect_no_fields_anywhere(int port, const char *what)
{
    char email[128], msg[160];
    hd_test_auth_unique_email(email, sizeof(email), "nofields");
    struct hd_http_response r;
    struct hd_test_auth_tokens t;
    snprintf(msg, sizeof(msg), "%s: register", what);
    cr_assert_eq(hd_test_rl_register(port, email, HD_TEST_AUTH_PASSWORD, NULL, &r), 0);
    cr_assert_eq(r.status, 201, "%s: status %d", msg, r.status);
    cr_assert_eq(hd_test_auth_tokens_parse(&r, &t), 0);
    hd_test_rl_assert_no_fields(&r, msg);
    hd_http_response_free(&r);
    struct login_ctx good = {port, email, HD_TEST_AUTH_PASSWORD, {0}};
    struct login_ctx bad = {port, email, WRONG_PASSWORD, {0}};
    for (int i = 0; i < 4; i++) {
        snprintf(msg, sizeof(msg), "%s: login %d", what, i + 1);
        send_login(i % 2 ? &bad : &good, &r);
        cr_assert_eq(r.status, i % 2 ? 401 : 200, "%s: status %d: %s", msg, r.status, r.body);
        hd_test_rl_assert_no_fields(&r, msg);
        hd_http_response_free(&r);
    }
    struct refresh_ctx f = {port, t};
    snprintf(msg, sizeof(msg), "%s: refresh", what);
    send_refresh(&f, &r);
    cr_assert_eq(r.status, 200, "%s: status %d: %s", msg, r.status, r.body);
    hd_test_rl_assert_no_fields(&r, msg);
    hd_http_response_free(&r);
    struct user_ctx u = {port, f.t.access};
    snprintf(msg, sizeof(msg), "%s: GET /api/me", what);
    send_me(&u, &r);
    cr_assert_eq(r.status, 200, "%s: status %d: %s", msg, r.status, r.body);
    hd_test_rl_assert_no_fields(&r, msg);
    hd_http_response_free(&r);
    snprintf(msg, sizeof(msg), "%s: password change", what);
    send_wrong_password_change(&u, &r);
    cr_assert_eq(r.status, 401, "%s: status %d: %s", msg, r.status, r.body);
    hd_test_rl_assert_no_fields(&r, msg);
    hd_http_response_free(&r);
}

Test(ratelimit_http, routes_with_every_policy_off_carry_no_fields, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"off\",\"login_ip_account\":\"off\",\"login_account\":\"off\","
                  "\"register_ip\":\"off\",\"refresh_ip\":\"off\",\"refresh_session\":\"off\","
                  "\"password_user\":\"off\"",
                  NULL);
    expect_no_fields_anywhere(s.port, "every policy off");
    finish(&s);
}

Test(ratelimit_http, disabled_limits_carry_no_fields, .timeout = 60)
{
    struct hd_test_server s;
    /* the base config: ratelimit.enabled false, every rule at its default
     * (which would limit and show fields) and authenticated on as well */
    hd_test_server_start(&s, "{\"ratelimit\":{\"authenticated\":\"60/min burst 2\"}}");
    expect_no_fields_anywhere(s.port, "ratelimit.enabled false");
    struct hd_test_auth_tokens t;
    new_user(s.port, "disabled", &t);
    struct hd_http_response r;
    for (int i = 0; i < 10; i++) { /* over any default burst for one user */
        cr_assert_eq(hd_test_auth_call(s.port, "GET", "/api/me", t.access, &r), 0);
        cr_assert_eq(r.status, 200, "GET /api/me #%d: status %d", i + 1, r.status);
        hd_test_rl_assert_no_fields(&r, "GET /api/me, limits disabled");
        hd_http_response_free(&r);
    }
    finish(&s);
}

/* ---- 3. login_account counts failures only ------------------------------------------------- */

/* Trade-off: login_account is keyed on the email alone, from any IP, so
 * anyone who knows an address can spend its failed-login budget and then
 * even the right password is refused (429) until the budget refills. That
 * is the price of stopping a password spray spread over many IPs; the
 * per-IP limits keep a single attacker far below it, and successful logins
 * never spend it, so the owner logging in often costs nothing. */
Test(ratelimit_http, login_account_spends_only_failed_logins, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"off\",\"login_ip_account\":\"off\","
                  "\"login_account\":\"1/hour burst 2\"",
                  NULL);
    struct hd_test_auth_tokens t, other;
    new_user(s.port, "owner", &t);
    new_user(s.port, "bystander", &other);
    struct login_ctx good = {s.port, t.email, HD_TEST_AUTH_PASSWORD, {0}};
    struct login_ctx bad = {s.port, t.email, WRONG_PASSWORD, {0}};
    struct hd_http_response r;
    for (int i = 0; i < 8; i++) { /* far more than the burst of 3 */
        send_login(&good, &r);
        cr_assert_eq(r.status, 200, "successful login %d: status %d: %s", i + 1, r.status, r.body);
        cr_assert_eq(field(&r, "RateLimit", "login_account", "r"), 3,
                     "successful login %d spent the failed-login budget", i + 1);
        cr_assert_eq(field(&r, "RateLimit-Policy", "login_account", "q"), 1);
        cr_assert_eq(field(&r, "RateLimit-Policy", "login_account", "w"), 3600);
        hd_http_response_free(&r);
    }
    for (int i = 0; i < 3; i++) {
        send_login(&bad, &r);
        cr_assert_eq(r.status, 401, "failed login %d: status %d: %s", i + 1, r.status, r.body);
        cr_assert_eq(field(&r, "RateLimit", "login_account", "r"), 3 - i, "failed login %d", i + 1);
        hd_http_response_free(&r);
    }
    /* the budget is spent: the right password is refused too */
    send_login(&good, &r);
    hd_test_rl_assert_limited(&r, "login_account", 3600, "right password after 3 failures");
    hd_http_response_free(&r);
    send_login(&bad, &r);
    hd_test_rl_assert_limited(&r, "login_account", 3600, "wrong password after 3 failures");
    hd_http_response_free(&r);
    /* another account is not affected */
    hd_test_auth_login(s.port, other.email, HD_TEST_AUTH_PASSWORD, &other);
    finish(&s);
}

Test(ratelimit_http, attacker_ip_does_not_lock_out_victim, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"off\",\"login_ip_account\":\"" HASHED_RULE "\","
                  "\"login_account\":\"1/hour burst 10\"",
                  "\"server\":{\"trusted_proxies\":[\"127.0.0.1/32\"]}");
    struct hd_test_auth_tokens victim;
    new_user(s.port, "victim", &victim);
    struct login_ctx attacker = {s.port, victim.email, WRONG_PASSWORD, {.xff = "198.51.100.66"}};
    struct hd_http_response r;
    for (int i = 0; i < HASHED_BURST + 1; i++) {
        send_login(&attacker, &r);
        cr_assert_eq(r.status, 401, "attacker try %d: status %d: %s", i + 1, r.status, r.body);
        hd_http_response_free(&r);
    }
    send_login(&attacker, &r);
    hd_test_rl_assert_limited(&r, "login_ip_account", 5, "attacker over login_ip_account");
    cr_assert_geq(field(&r, "RateLimit", "login_account", "r"), 1,
                  "the attacker's 429 came from login_account, not login_ip_account");
    hd_http_response_free(&r);
    /* the victim, from another address, with the right password */
    struct login_ctx owner = {s.port, victim.email, HD_TEST_AUTH_PASSWORD, {.xff = "203.0.113.10"}};
    send_login(&owner, &r);
    cr_assert_eq(r.status, 200, "victim from another IP: status %d: %s", r.status, r.body);
    cr_assert_eq(field(&r, "RateLimit", "login_ip_account", "r"), HASHED_BURST,
                 "the victim's IP + account bucket was touched by the attacker");
    /* 11 at once, 3 failures spent: 8 left */
    cr_assert_eq(field(&r, "RateLimit", "login_account", "r"), 8);
    hd_http_response_free(&r);
    finish(&s);
}

/* ---- 4. the client address ---------------------------------------------------------------- */

Test(ratelimit_http, untrusted_peer_cannot_rotate_x_forwarded_for, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"" HASHED_RULE "\",\"login_ip_account\":\"off\","
                  "\"login_account\":\"off\",\"register_ip\":\"" HASHED_RULE "\"",
                  NULL); /* no server.trusted_proxies */
    char xff[32], rid[32];
    struct login_ctx l = {s.port, NULL, WRONG_PASSWORD, {.xff = xff, .request_id = rid}};
    struct hd_http_response r;
    for (int i = 0; i <= HASHED_BURST + 1; i++) {
        snprintf(xff, sizeof(xff), "203.0.113.%d", 10 + i); /* a new address every time */
        snprintf(rid, sizeof(rid), "rl-untrusted-%d", i);
        send_login(&l, &r);
        if (i <= HASHED_BURST)
            cr_assert_eq(r.status, 401, "login %d: status %d: %s", i + 1, r.status, r.body);
        else
            hd_test_rl_assert_limited(&r, "login_ip", 5, "rotating X-Forwarded-For");
        hd_http_response_free(&r);
    }
    /* register_ip likewise */
    for (int i = 0; i <= HASHED_BURST + 1; i++) {
        char email[128];
        hd_test_auth_unique_email(email, sizeof(email), "rot");
        snprintf(xff, sizeof(xff), "198.51.100.%d", 10 + i);
        struct hd_test_rl_req req = {.xff = xff};
        cr_assert_eq(hd_test_rl_register(s.port, email, HD_TEST_AUTH_PASSWORD, &req, &r), 0);
        if (i <= HASHED_BURST)
            cr_assert_eq(r.status, 201, "register %d: status %d: %s", i + 1, r.status, r.body);
        else
            hd_test_rl_assert_limited(&r, "register_ip", 5, "register, rotating X-Forwarded-For");
        hd_http_response_free(&r);
    }
    /* the access line names the peer only: X-Forwarded-For was not read */
    json_t *line = hd_test_log_find(&s, "request_id", "rl-untrusted-3", 3000);
    cr_assert(line, "no access line for rl-untrusted-3");
    cr_assert_str_eq(json_string_value(json_object_get(line, "peer")), "127.0.0.1");
    cr_assert_null(json_object_get(line, "client"), "a client field from an untrusted peer");
    json_decref(line);
    finish(&s);
}

Test(ratelimit_http, trusted_proxy_keys_on_the_rightmost_untrusted_hop, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"" HASHED_RULE "\",\"login_ip_account\":\"off\","
                  "\"login_account\":\"off\"",
                  "\"server\":{\"trusted_proxies\":[\"127.0.0.1/32\"]}");
    struct login_ctx l = {s.port, NULL, WRONG_PASSWORD, {.xff = "203.0.113.7"}};
    struct hd_http_response r;
    for (int i = 0; i <= HASHED_BURST; i++) {
        send_login(&l, &r);
        cr_assert_eq(r.status, 401, "203.0.113.7 login %d: status %d: %s", i + 1, r.status, r.body);
        hd_http_response_free(&r);
    }
    /* a spoofed leftmost entry changes nothing: the proxy appended 203.0.113.7 */
    l.req.xff = "6.6.6.6, 203.0.113.7";
    l.req.request_id = "rl-spoofed-1";
    send_login(&l, &r);
    hd_test_rl_assert_limited(&r, "login_ip", 5, "spoofed leftmost entry");
    hd_http_response_free(&r);
    /* a port on the entry is dropped: the same address */
    l.req.xff = "203.0.113.7:8080";
    send_login(&l, &r);
    hd_test_rl_assert_limited(&r, "login_ip", 5, "the same address with a port");
    hd_http_response_free(&r);
    /* a trusted hop on the right is skipped */
    l.req.xff = "203.0.113.7, 127.0.0.1";
    l.req.request_id = NULL;
    send_login(&l, &r);
    hd_test_rl_assert_limited(&r, "login_ip", 5, "trusted hop on the right");
    hd_http_response_free(&r);
    /* other addresses have their own buckets, full */
    const char *others[] = {"198.51.100.1", "203.0.113.7, 198.51.100.2", NULL};
    for (size_t i = 0; others[i]; i++) {
        l.req.xff = others[i];
        send_login(&l, &r);
        cr_assert_eq(r.status, 401, "X-Forwarded-For %s: status %d: %s", others[i], r.status,
                     r.body);
        cr_assert_eq(field(&r, "RateLimit", "login_ip", "r"), HASHED_BURST,
                     "X-Forwarded-For %s shares a bucket", others[i]);
        hd_http_response_free(&r);
    }
    json_t *line = hd_test_log_find(&s, "request_id", "rl-spoofed-1", 3000);
    cr_assert(line, "no access line for rl-spoofed-1");
    cr_assert_str_eq(json_string_value(json_object_get(line, "peer")), "127.0.0.1");
    const char *client = json_string_value(json_object_get(line, "client"));
    cr_assert(client && strcmp(client, "203.0.113.7") == 0, "access line client '%s', want %s",
              client ? client : "(none)", "203.0.113.7");
    json_decref(line);
    finish(&s);
}

/* ---- 5. metrics ------------------------------------------------------------------------------ */

#define DENIED  "herald_ratelimit_checks_total{policy=\"login_ip\",result=\"denied\"}"
#define ALLOWED "herald_ratelimit_checks_total{policy=\"login_ip\",result=\"allowed\"}"

Test(ratelimit_http, metrics_count_denials, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s,
                  "\"login_ip\":\"" HASHED_RULE "\",\"login_ip_account\":\"off\","
                  "\"login_account\":\"off\"",
                  NULL);
    double denied0 = hd_test_rl_metric(s.port, DENIED),
           allowed0 = hd_test_rl_metric(s.port, ALLOWED);
    denied0 = denied0 < 0 ? 0 : denied0; /* not written before the first check */
    allowed0 = allowed0 < 0 ? 0 : allowed0;
    struct login_ctx l = {s.port, NULL, WRONG_PASSWORD, {0}};
    struct hd_http_response r;
    int n429 = 0, allowed = 0;
    for (int i = 0; i < HASHED_BURST + 1 + 4; i++) {
        send_login(&l, &r);
        cr_assert(r.status == 401 || r.status == 429, "login %d: status %d", i + 1, r.status);
        n429 += r.status == 429;
        allowed += r.status == 401;
        hd_http_response_free(&r);
    }
    cr_assert_eq(n429, 4, "%d answers were 429, want 4", n429);
    double denied = hd_test_rl_metric_wait(s.port, DENIED, denied0 + n429, 2000);
    cr_assert_eq(denied, denied0 + n429, "%s went from %g to %g after %d answers 429", DENIED,
                 denied0, denied, n429);
    double ok = hd_test_rl_metric_wait(s.port, ALLOWED, allowed0 + allowed, 2000);
    cr_assert_eq(ok, allowed0 + allowed, "%s went from %g to %g after %d allowed", ALLOWED,
                 allowed0, ok, allowed);
    finish(&s);
}

/* ---- 6. a limited refresh keeps the token and the session -------------------------------------
 */

Test(ratelimit_http, limited_refresh_keeps_token_and_session, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "\"refresh_session\":\"20/min burst 1\",\"refresh_ip\":\"off\"", NULL);
    struct refresh_ctx f = {.port = s.port}, second = {.port = s.port};
    new_user(s.port, "keep", &f.t);
    hd_test_auth_login(s.port, f.t.email, HD_TEST_AUTH_PASSWORD, &second.t);
    struct hd_http_response r;
    for (int i = 0; i < 2; i++) { /* burst 1: two at once */
        send_refresh(&f, &r);
        cr_assert_eq(r.status, 200, "refresh %d: status %d: %s", i + 1, r.status, r.body);
        hd_http_response_free(&r);
    }
    struct hd_test_auth_tokens before = f.t;
    send_refresh(&f, &r);
    long retry = hd_test_rl_assert_limited(&r, "refresh_session", 3, "third refresh");
    cr_assert_null(hd_test_auth_refresh_cookie(&r), "a limited refresh touched the cookie");
    hd_http_response_free(&r);
    /* the session lives on: its access token still works */
    hd_test_auth_assert_me(s.port, before.access, before.user_id);
    /* per session: the user's other session refreshes fine */
    send_refresh(&second, &r);
    cr_assert_eq(r.status, 200, "the other session: status %d: %s", r.status, r.body);
    hd_http_response_free(&r);
    /* after Retry-After the same refresh token rotates */
    hd_test_sleep_ms((int)retry * 1000);
    send_refresh(&f, &r);
    cr_assert_eq(r.status, 200, "the limited token after Retry-After: status %d: %s", r.status,
                 r.body);
    hd_http_response_free(&r);
    cr_assert_str_neq(f.t.refresh, before.refresh, "the token did not rotate");
    cr_assert_str_eq(f.t.session_id, before.session_id, "the refresh moved to another session");
    hd_test_auth_assert_me(s.port, f.t.access, f.t.user_id);
    hd_test_auth_assert_me(s.port, before.access, before.user_id);
    finish(&s);
}

/* A refresh token that is not a live session's never reaches the
 * per-session check (session.h): it cannot spend anyone's budget, and it is
 * answered 401, not 429, however often it comes. */
Test(ratelimit_http, invalid_refresh_tokens_never_spend_the_session_budget, .timeout = 60)
{
    struct hd_test_server s;
    start_limited(&s, "\"refresh_session\":\"20/min burst 1\",\"refresh_ip\":\"off\"", NULL);
    struct refresh_ctx f = {.port = s.port};
    new_user(s.port, "forged", &f.t);
    struct hd_http_response r;
    for (int i = 0; i < 6; i++) { /* three times the burst */
        char forged[64];
        memset(forged, 'A' + i, 43);
        forged[43] = '\0';
        cr_assert_eq(hd_test_auth_refresh_raw(s.port, forged, &r), 0);
        hd_assert_error(&r, 401, "invalid_refresh_token");
        hd_test_rl_assert_no_fields(&r, "a forged refresh token");
        hd_http_response_free(&r);
    }
    /* the real session still has its whole burst: 2 at once */
    for (long k = 1; k <= 2; k++) {
        send_refresh(&f, &r);
        cr_assert_eq(r.status, 200, "refresh %ld: status %d: %s", k, r.status, r.body);
        cr_assert_eq(field(&r, "RateLimit", "refresh_session", "r"), 2 - k, "refresh %ld", k);
        hd_http_response_free(&r);
    }
    finish(&s);
}

/* ---- 7. a bad rule ------------------------------------------------------------------------------
 */

Test(ratelimit_http, bad_rule_fails_check_config, .timeout = 60)
{
    char dir[512], path[600];
    hd_test_make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/herald.json", dir);
    json_t *cfg =
        hd_test_config("{\"ratelimit\":{\"enabled\":true,\"login_ip\":\"10 per minute\"}}");
    hd_test_write_json(path, cfg);
    json_decref(cfg);
    const char *args[] = {"check-config", "--config", path, NULL};
    char *out = NULL;
    int code = hd_test_run_herald(args, dir, 15000, &out);
    cr_assert_neq(code, 0, "check-config accepted login_ip \"10 per minute\":\n%s", out);
    cr_assert_gt(code, 0, "check-config did not run (%d)", code);
    bool named = strncmp(out, "ratelimit.login_ip", 18) == 0 || strstr(out, "\nratelimit.login_ip");
    cr_assert(named, "no line starts with ratelimit.login_ip:\n%s", out);
    cr_assert(!strstr(out, "ratelimit.login_ip_account"), "another key was blamed:\n%s", out);
    free(out);
    /* the same file with a good rule passes: the test can tell */
    cfg = hd_test_config("{\"ratelimit\":{\"enabled\":true,\"login_ip\":\"10/min burst 5\"}}");
    hd_test_write_json(path, cfg);
    json_decref(cfg);
    code = hd_test_run_herald(args, dir, 15000, &out);
    cr_assert_eq(code, 0, "check-config refused a good rule:\n%s", out);
    free(out);
    hd_test_remove_dir(dir);
}
