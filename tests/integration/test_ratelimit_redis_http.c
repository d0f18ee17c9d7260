/* Shared rate limits through Redis (redis.url): two herald processes on one
 * Redis share one budget per key, and without Redis they do not; Redis
 * stopped under them → the local fallback answers (never 5xx), /metrics and
 * /readyz say so, and once Redis is back the nodes share again without a
 * restart.
 *
 * Needs the Redis of scripts/services (HERALD_TEST_REDIS_URL; the test
 * fails, naming scripts/test, when it is unset). Redis keeps its keys
 * between tests and runs, so every test limits a fresh random client
 * address (X-Forwarded-For from a trusted 127.0.0.1). One test stops Redis:
 * the tests of this file take a file lock so they never overlap (Criterion
 * runs them in parallel), ctest keeps other Redis users away (RESOURCE_LOCK
 * redis in CMakeLists.txt), and Redis is started again in the outage's own
 * path, in .fini, and by a watchdog thread should the window hang. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "auth_client.h"
#include "harness.h"
#include "http_assert.h"
#include "http_client.h"
#include "outage.h"
#include "ratelimit_client.h"

/* login_ip: T = 5 s, 3 at once */
#define RULE     "12/min burst 2"
#define BURST    2
#define T_MS     5000
#define RETRY_S  5
#define N_ALTERN (2 * (BURST + 1) + 2)

#define REDIS_UP       "herald_ratelimit_redis_up"
#define FALLBACK_LOCAL "herald_ratelimit_redis_fallback_total{mode=\"local\"}"
#define UP_WITHIN_MS   12000 /* reconnect back-off tops out at 5 s */
#define WATCHDOG_S     45

#define WRONG_PASSWORD "not the password at all"

static int g_lock_fd = -1;

/* HERALD_TEST_REDIS_URL, or a failure naming how to get one. */
static const char *redis_url(void)
{
    const char *url = getenv("HERALD_TEST_REDIS_URL");
    cr_assert(url && *url, "HERALD_TEST_REDIS_URL is not set: run through scripts/test, or start "
                           "scripts/services and source the file `scripts/services env` prints");
    return url;
}

/* One test of this file at a time (see the top comment). */
static void lock_init(void)
{
    char path[600];
    const char *dir = getenv("HERALD_SERVICES_DIR");
    const char *tmp = getenv("TMPDIR");
    if (dir && *dir)
        snprintf(path, sizeof(path), "%s/ratelimit-redis-tests.lock", dir);
    else
        snprintf(path, sizeof(path), "%s/herald-ratelimit-redis-tests.lock",
                 tmp && *tmp ? tmp : "/tmp");
    g_lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(g_lock_fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(flock(g_lock_fd, LOCK_EX), 0, "flock %s: %s", path, strerror(errno));
}

static void lock_fini(void)
{
    hd_test_outage_fini();
    if (g_lock_fd >= 0)
        close(g_lock_fd); /* releases the lock */
    g_lock_fd = -1;
}

/* Starts a node limiting login_ip by RULE behind a trusted 127.0.0.1, on
 * Redis when @shared. */
static void start_node(struct hd_test_server *s, bool shared)
{
    char over[1024];
    json_t *url = json_string(shared ? redis_url() : "");
    char *url_text = json_dumps(url, JSON_ENCODE_ANY);
    json_decref(url);
    snprintf(over, sizeof(over),
             "{\"ratelimit\":{\"enabled\":true,\"login_ip\":\"" RULE "\","
             "\"login_ip_account\":\"off\",\"login_account\":\"off\",\"register_ip\":\"off\"},"
             "\"server\":{\"trusted_proxies\":[\"127.0.0.1/32\"]},\"redis\":{\"url\":%s}}",
             url_text);
    free(url_text);
    hd_test_server_start(s, over);
}

static void finish(struct hd_test_server *s)
{
    hd_assert_healthy(s->port);
    cr_assert_eq(hd_test_server_stop(s), 0, "herald did not exit 0");
}

/* Asserts @s decides with Redis within @timeout_ms. */
static void expect_redis_up(const struct hd_test_server *s, int timeout_ms, const char *what)
{
    double up = hd_test_rl_metric_wait(s->port, REDIS_UP, 1, timeout_ms);
    cr_assert_eq(up, 1, "%s: %s is %g after %d ms (-1: not in /metrics)", what, REDIS_UP, up,
                 timeout_ms);
}

/* One failed login for client @ip on @port: its status, or -errno; *@left
 * (when not NULL) gets the login_ip r of its RateLimit field (-1: none).
 * Never asserts. */
static int login_status(int port, const char *ip, long *left)
{
    char email[128];
    hd_test_auth_unique_email(email, sizeof(email), "shared");
    struct hd_test_rl_req req = {.xff = ip};
    struct hd_http_response r;
    if (left)
        *left = -1;
    int rc = hd_test_rl_login(port, email, WRONG_PASSWORD, &req, &r);
    if (rc != 0)
        return rc;
    int status = r.status;
    if (left)
        *left = hd_test_rl_param(&r, "RateLimit", "login_ip", "r");
    hd_http_response_free(&r);
    return status;
}

struct tally {
    int allowed[2];      /* 401 answers, per node */
    long left[N_ALTERN]; /* r of each allowed answer, in order */
    int limited;         /* 429 answers */
    int other;           /* anything else (no answer, 5xx, ...) */
    int first_other;
    uint64_t took_ms;
};

/* N_ALTERN failed logins for client @ip, alternating between @a and @b. */
static void alternate(int a, int b, const char *ip, struct tally *t)
{
    memset(t, 0, sizeof(*t));
    uint64_t t0 = hd_test_now_ms();
    for (int i = 0; i < N_ALTERN; i++) {
        long left;
        int status = login_status(i % 2 ? b : a, ip, &left);
        if (status == 401) {
            t->left[t->allowed[0] + t->allowed[1]] = left;
            t->allowed[i % 2]++;
        } else if (status == 429) {
            t->limited++;
        } else if (!t->other++) {
            t->first_other = status;
        }
    }
    t->took_ms = hd_test_now_ms() - t0;
}

/* What one budget allows in @t->took_ms: the burst plus what refilled. */
static int shared_cap(const struct tally *t)
{
    return BURST + 1 + (int)(t->took_ms / T_MS);
}

static void expect_shared(const struct tally *t, const char *what)
{
    int total = t->allowed[0] + t->allowed[1];
    cr_assert_eq(t->other, 0, "%s: %d answers were neither 401 nor 429 (first: %d)", what, t->other,
                 t->first_other);
    cr_assert_leq(total, shared_cap(t),
                  "%s: the two nodes allowed %d + %d logins for one client in %llu ms; one "
                  "shared budget allows %d",
                  what, t->allowed[0], t->allowed[1], (unsigned long long)t->took_ms,
                  shared_cap(t));
    cr_assert_geq(total, BURST + 1, "%s: only %d allowed, want at least the burst %d", what, total,
                  BURST + 1);
    cr_assert(t->allowed[0] >= 1 && t->allowed[1] >= 1,
              "%s: a node allowed nothing (%d, %d): both must take part", what, t->allowed[0],
              t->allowed[1]);
    /* within one interval the nodes count one r down together: B, B-1, ..., 0 */
    for (int k = 0; t->took_ms < T_MS && k < total; k++)
        cr_assert_eq(t->left[k], BURST - k, "%s: allowed answer %d (alternating nodes) has r=%ld",
                     what, k + 1, t->left[k]);
}

/* ---- (a) one budget across nodes ----------------------------------------------------- */

Test(ratelimit_redis_http, two_nodes_share_one_budget, .init = lock_init, .fini = lock_fini,
     .timeout = 120)
{
    struct hd_test_server a, b;
    start_node(&a, true);
    start_node(&b, true);
    expect_redis_up(&a, UP_WITHIN_MS, "node a");
    expect_redis_up(&b, UP_WITHIN_MS, "node b");
    char ip[32];
    hd_test_rl_random_ip(ip, sizeof(ip));
    struct tally t;
    alternate(a.port, b.port, ip, &t);
    expect_shared(&t, "with redis.url");
    /* a 429 from either node says the same: the shared key is spent */
    struct hd_test_rl_req req = {.xff = ip};
    struct hd_http_response r;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(
            hd_test_rl_login(i ? b.port : a.port, "x@example.test", WRONG_PASSWORD, &req, &r), 0);
        hd_test_rl_assert_limited(&r, "login_ip", RETRY_S, i ? "node b" : "node a");
        hd_http_response_free(&r);
    }
    finish(&a);
    finish(&b);

    /* the same two nodes without Redis: each has its own budget, 2 × (B + 1) */
    start_node(&a, false);
    start_node(&b, false);
    cr_assert_eq(hd_test_rl_metric(a.port, REDIS_UP), -1, "%s without redis.url", REDIS_UP);
    hd_test_rl_random_ip(ip, sizeof(ip));
    alternate(a.port, b.port, ip, &t);
    cr_assert_eq(t.other, 0, "without redis: %d odd answers (first: %d)", t.other, t.first_other);
    cr_assert_lt(t.took_ms, T_MS, "without redis: %d logins took %llu ms", N_ALTERN,
                 (unsigned long long)t.took_ms);
    cr_assert(t.allowed[0] == BURST + 1 && t.allowed[1] == BURST + 1,
              "without redis: nodes allowed %d and %d, want %d each", t.allowed[0], t.allowed[1],
              BURST + 1);
    finish(&a);
    finish(&b);
}

/* ---- (b) Redis goes away and comes back ------------------------------------------------- */

#define FALLBACK_TRIES (BURST + 2)

/* What the outage window saw; asserted once Redis runs again. */
struct observed {
    int stop_rc, start_rc;
    int status_a[FALLBACK_TRIES], status_b[FALLBACK_TRIES];
    double up_a, up_b;           /* REDIS_UP once down */
    double fallback0, fallback1; /* FALLBACK_LOCAL on node a before / after */
    int readyz_status;
    char readyz[1024];
};

/* GET /readyz of @port into @o. Never asserts. */
static void read_readyz(int port, struct observed *o)
{
    struct hd_http_response r;
    o->readyz_status = hd_http_get(port, "/readyz", &r, 5000);
    if (o->readyz_status != 0)
        return;
    o->readyz_status = r.status;
    snprintf(o->readyz, sizeof(o->readyz), "%s", r.body);
    hd_http_response_free(&r);
}

/* /metrics value of @series on @port, -1 when absent, -2 without an answer.
 * Polls up to @timeout_ms for @want. Never asserts (unlike hd_test_rl_metric). */
static double metric_quiet(int port, const char *series, double want, int timeout_ms)
{
    uint64_t until = hd_test_now_ms() + (uint64_t)timeout_ms;
    double v = -2;
    for (;;) {
        struct hd_http_response r;
        if (hd_http_get(port, "/metrics", &r, 5000) == 0) {
            const char *at = r.status == 200 ? strstr(r.body, series) : NULL;
            size_t n = strlen(series);
            while (at && !((at == r.body || at[-1] == '\n') && at[n] == ' '))
                at = strstr(at + 1, series);
            v = at ? strtod(at + n + 1, NULL) : -1;
            hd_http_response_free(&r);
        }
        if (v == want || hd_test_now_ms() >= until)
            return v;
        hd_test_sleep_ms(50);
    }
}

/* The outage: no asserts in here, so Redis always comes back. */
static void outage(const struct hd_test_server *a, const struct hd_test_server *b,
                   struct observed *o)
{
    o->fallback0 = metric_quiet(a->port, FALLBACK_LOCAL, -3, 0);
    struct hd_test_outage w;
    hd_test_outage_begin(&w, "redis-stop", "redis-start", WATCHDOG_S);
    o->stop_rc = w.stop_rc;
    char ip[32];
    hd_test_rl_random_ip(ip, sizeof(ip));
    /* each node decides alone now: B + 1 each for the same client */
    for (int i = 0; i < FALLBACK_TRIES; i++)
        o->status_a[i] = login_status(a->port, ip, NULL);
    for (int i = 0; i < FALLBACK_TRIES; i++)
        o->status_b[i] = login_status(b->port, ip, NULL);
    o->up_a = metric_quiet(a->port, REDIS_UP, 0, 3000);
    o->up_b = metric_quiet(b->port, REDIS_UP, 0, 3000);
    o->fallback1 = metric_quiet(a->port, FALLBACK_LOCAL, -3, 0);
    read_readyz(a->port, o);

    hd_test_outage_end(&w);
    o->start_rc = w.start_rc;
}

/* Asserts the fallback answered @status like a local limiter: B + 1 allowed, then 429. */
static void expect_local_fallback(const int *status, const char *node)
{
    for (int i = 0; i < FALLBACK_TRIES; i++) {
        int want = i <= BURST ? 401 : 429;
        cr_assert_eq(status[i], want, "node %s, Redis down, login %d: status %d, want %d", node,
                     i + 1, status[i], want);
    }
}

/* /readyz of @port: 200, and the "redis" check degraded as @degraded. */
static void expect_readyz(const char *body, int status, bool degraded, const char *what)
{
    cr_assert_eq(status, 200, "%s: /readyz status %d: %s", what, status, body);
    json_t *j = json_loads(body, 0, NULL);
    cr_assert(j, "%s: /readyz is not JSON: %s", what, body);
    json_t *check = json_object_get(json_object_get(j, "checks"), "redis");
    cr_assert(json_is_object(check), "%s: /readyz has no redis check: %s", what, body);
    cr_assert(json_is_true(json_object_get(check, "ok")), "%s: redis not ok: %s", what, body);
    cr_assert_eq(json_is_true(json_object_get(check, "degraded")), degraded,
                 "%s: redis degraded should be %d: %s", what, degraded, body);
    const char *detail = json_string_value(json_object_get(check, "detail"));
    cr_assert(!degraded || (detail && *detail), "%s: a degraded redis check without detail: %s",
              what, body);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ready", "%s", body);
    json_decref(j);
}

Test(ratelimit_redis_http, redis_outage_falls_back_and_recovers, .init = lock_init,
     .fini = lock_fini, .timeout = 150)
{
    struct hd_test_server a, b;
    start_node(&a, true);
    start_node(&b, true);
    expect_redis_up(&a, UP_WITHIN_MS, "node a");
    expect_redis_up(&b, UP_WITHIN_MS, "node b");
    struct hd_http_response r;
    cr_assert_eq(hd_http_get(a.port, "/readyz", &r, 5000), 0);
    expect_readyz(r.body, r.status, false, "Redis up");
    hd_http_response_free(&r);

    struct observed o = {0};
    outage(&a, &b, &o);

    cr_assert_eq(o.stop_rc, 0, "redis-stop failed (%d)", o.stop_rc);
    cr_assert_eq(o.start_rc, 0, "redis-start failed (%d)", o.start_rc);
    expect_local_fallback(o.status_a, "a");
    expect_local_fallback(o.status_b, "b");
    cr_assert_eq(o.up_a, 0, "node a: %s is %g while Redis is stopped", REDIS_UP, o.up_a);
    cr_assert_eq(o.up_b, 0, "node b: %s is %g while Redis is stopped", REDIS_UP, o.up_b);
    cr_assert_geq(o.fallback0, 0, "%s missing before the outage", FALLBACK_LOCAL);
    cr_assert_geq(o.fallback1, o.fallback0 + FALLBACK_TRIES,
                  "%s went from %g to %g over %d checks answered while Redis was down",
                  FALLBACK_LOCAL, o.fallback0, o.fallback1, FALLBACK_TRIES);
    expect_readyz(o.readyz, o.readyz_status, true, "Redis down");

    /* back without a restart: up again, and one budget again */
    expect_redis_up(&a, UP_WITHIN_MS, "node a after redis-start");
    expect_redis_up(&b, UP_WITHIN_MS, "node b after redis-start");
    char ip[32];
    hd_test_rl_random_ip(ip, sizeof(ip));
    struct tally t;
    alternate(a.port, b.port, ip, &t);
    expect_shared(&t, "after Redis came back");
    cr_assert_eq(hd_http_get(b.port, "/readyz", &r, 5000), 0);
    expect_readyz(r.body, r.status, false, "Redis back");
    hd_http_response_free(&r);
    finish(&a);
    finish(&b);
}
